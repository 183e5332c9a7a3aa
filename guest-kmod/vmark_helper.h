/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Shared state of the vmark guest helper module.
 *
 * One mutex (vmark_lock) serialises everything that sleeps: scanning modules,
 * xenstore writes, hook installation and the event-channel/control-page
 * transport.  The trigger path (vmark_fire) takes no lock: it only reads the
 * RCU-published channel.
 */
#ifndef VMARK_HELPER_H
#define VMARK_HELPER_H

#include <linux/list.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/types.h>
#include <xen/grant_table.h>
#include <xen/interface/event_channel.h>
#include "vmark_abi.h"
#include "vmark.h"

#ifndef CONFIG_XEN
#error "vmark_helper talks to Xen (xenstore, event channels, grants): the kernel has no CONFIG_XEN"
#endif

/* Marks published per module; more are ignored with a warning. */
#define VMARK_MAX_MARKS 256
/* Longest mark name the host accepts (publish.rs MAX_NAME_LEN). */
#define VMARK_MAX_NAME 64
/*
 * Longest xenstore value written.  xenstored refuses unprivileged nodes of
 * 2048 bytes or more (quota_max_entry_size, header included), so stay
 * clearly below: about 230 frames, i.e. ~900 KiB per mark or manifest.
 */
#define VMARK_XS_VALUE_MAX 1900

/* The event channel and granted control page shared with the monitor. */
struct vmark_chan {
	struct vmark_control *ctl;
	struct page *page;
	evtchn_port_t port;
	int irq;
	grant_ref_t gref;
	/* Set when a resume invalidated the port; fire() stops notifying. */
	bool dead;
	u64 pongs;
};

/* One tracked marked module. */
struct vmark_mod {
	struct list_head list;
	struct module *mod;		/* valid until its GOING notification */
	char name[MODULE_NAME_LEN];
	unsigned int nr_recs;
	struct vmark_record **recs;	/* records in the module's memory */
	char **values;			/* published marks/<i> values (or NULL) */
	unsigned long manifest;		/* address of the manifest, 0 if none */
	u32 manifest_size;		/* header + payload */
	char *manifest_value;		/* published manifest value (or NULL) */
	bool published;
	bool hooked;
};

extern struct mutex vmark_lock;
extern struct list_head vmark_mods;
extern ushort monitor_domid;
extern struct vmark_chan __rcu *vmark_chan;
extern u64 vmark_generation;

/* scan.c: finding records and manifests in a loaded module */
struct vmark_mod *vmark_scan_module(struct module *mod);
void vmark_free_mod(struct vmark_mod *vm);
int vmark_mark_name(const struct vmark_mod *vm,
		    const struct vmark_record *rec, char *buf);
int vmark_range_frames(unsigned long addr, unsigned long size,
		       char *buf, size_t len);

/* publish.c: the xenstore layout of vmark_abi.h */
int vmark_publish_root(void);
int vmark_publish_module(struct vmark_mod *vm);
void vmark_withdraw_module(struct vmark_mod *vm);
void vmark_remove_root(void);

/* channel.c: event channel, control page, trigger hook */
int vmark_chan_create(void);
void vmark_chan_destroy(bool dead);
bool vmark_chan_stale(void);
void vmark_bump_generation(void);
void vmark_install_hooks(struct vmark_mod *vm);
void vmark_clear_hooks(struct vmark_mod *vm);

/* debugfs.c */
void vmark_debugfs_init(void);
void vmark_debugfs_exit(void);

#endif /* VMARK_HELPER_H */
