// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * vmark-peek: dom0-side checks of what vmark_helper publishes, using the Xen
 * libraries directly (independent of the Rust host):
 *
 *   vmark-peek mem DOMID OFFSET LEN FRAME[,FRAME...]  hex-dump guest memory
 *   vmark-peek ctl DOMID GREF                         print the control page
 *   vmark-peek evt DOMID PORT GREF SECONDS            bind, clear pending,
 *                                                     wait for a notification
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <xenevtchn.h>
#include <xenforeignmemory.h>
#include <xengnttab.h>
#include "vmark_abi.h"

static int mem(int dom, long off, long len, char *list)
{
	xen_pfn_t frames[64];
	int errs[64], n = 0, i;
	xenforeignmemory_handle *h = xenforeignmemory_open(NULL, 0);
	unsigned char *p;

	for (char *t = strtok(list, ","); t && n < 64; t = strtok(NULL, ","))
		frames[n++] = strtoull(t, NULL, 16);
	p = xenforeignmemory_map(h, dom, PROT_READ, n, frames, errs);
	if (!p) {
		perror("xenforeignmemory_map");
		return 1;
	}
	for (i = 0; i < n; i++)
		if (errs[i]) {
			fprintf(stderr, "frame %d: error %d\n", i, errs[i]);
			return 1;
		}
	for (i = 0; i < len; i++)
		printf("%02x%s", p[off + i], (i % 16 == 15) ? "\n" : "");
	printf("\n");
	return 0;
}

static struct vmark_control *map_ctl(xengnttab_handle **g, int dom, int gref)
{
	struct vmark_control *c;

	*g = xengnttab_open(NULL, 0);
	c = xengnttab_map_grant_ref(*g, dom, gref, PROT_READ | PROT_WRITE);
	if (!c)
		perror("xengnttab_map_grant_ref");
	return c;
}

static void show(struct vmark_control *c)
{
	printf("magic %08x abi %u pending %u triggers %llu notifications %llu generation %llu last_trigger_ns %llu\n",
	       c->magic, c->abi_version, c->pending,
	       (unsigned long long)c->triggers,
	       (unsigned long long)c->notifications,
	       (unsigned long long)c->generation,
	       (unsigned long long)c->last_trigger_ns);
}

static int evt(int dom, int port, int gref, int secs)
{
	xengnttab_handle *g;
	struct vmark_control *c = map_ctl(&g, dom, gref);
	xenevtchn_handle *e = xenevtchn_open(NULL, 0);
	xenevtchn_port_or_error_t local;
	struct pollfd pfd;

	if (!c || !e)
		return 1;
	local = xenevtchn_bind_interdomain(e, dom, port);
	if (local < 0) {
		perror("xenevtchn_bind_interdomain");
		return 1;
	}
	__atomic_store_n(&c->pending, 0, __ATOMIC_SEQ_CST);
	printf("bound port %d as %d, waiting\n", port, local);
	fflush(stdout);
	pfd.fd = xenevtchn_fd(e);
	pfd.events = POLLIN;
	if (poll(&pfd, 1, secs * 1000) <= 0) {
		printf("no notification\n");
		return 1;
	}
	printf("notified on %d\n", xenevtchn_pending(e));
	show(c);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 6 && !strcmp(argv[1], "mem"))
		return mem(atoi(argv[2]), atol(argv[3]), atol(argv[4]), argv[5]);
	if (argc == 4 && !strcmp(argv[1], "ctl")) {
		xengnttab_handle *g;
		struct vmark_control *c = map_ctl(&g, atoi(argv[2]), atoi(argv[3]));

		if (!c)
			return 1;
		show(c);
		return 0;
	}
	if (argc == 6 && !strcmp(argv[1], "evt"))
		return evt(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]),
			   atoi(argv[5]));
	fprintf(stderr, "usage: see the top of vmark-peek.c\n");
	return 2;
}
