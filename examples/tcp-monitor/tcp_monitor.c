// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * tcp_monitor - TCP state for vmark, without patching the kernel.
 *
 * Marks a copy of the struct tcp_sock of the connection that most recently
 * received a segment (last_tp) and counters (stats), and fires a vmark
 * trigger on every segment, so a host in dom0 samples the TCP state as
 * packets arrive.
 *
 * The hook is a kretprobe on tcp_rcv_established(), the receive path of
 * established TCP connections, IPv4 (tcp_v4_do_rcv()) and IPv6
 * (tcp_v6_do_rcv()) alike, whether the segment comes from the softirq or
 * from the socket's backlog:
 *
 *  - the return handler runs after the segment was processed, so the
 *    congestion window, RTT estimate, sequence numbers and byte counters
 *    already account for it;
 *  - the caller holds the socket lock (bh_lock_sock() in the softirq, or the
 *    owner's lock when release_sock() drains the backlog) and a reference
 *    until tcp_rcv_established() has returned, so the copy made in the
 *    return handler is of one coherent state of a live socket;
 *  - no kernel patch, tracepoint or BPF is needed.  The tcp:tcp_probe
 *    tracepoint fires before the segment is processed; a netfilter hook
 *    runs before TCP without the socket lock, so neither gives a coherent,
 *    up-to-date copy.
 *
 * Segments of connections in other states (handshake, closing) take
 * tcp_rcv_state_process() instead and are not seen.  Per segment the hook
 * does O(1) work besides copying the struct tcp_sock (about 2 KiB).
 *
 * The guest's own view, for comparison with the host's decode:
 *
 *   cat /sys/kernel/debug/tcp_monitor/values
 *
 * prints "MARK.PATH=value" lines, PATH being what `vmark --fields` takes
 * (e.g. last_tp.snd_cwnd=10, last_tp.rx_opt.snd_wscale=7).
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/debugfs.h>
#include <linux/in6.h>
#include <linux/kprobes.h>
#include <linux/module.h>
#include <linux/seq_file.h>
#include <linux/slab.h>
#include <linux/sock_diag.h>
#include <linux/spinlock.h>
#include <linux/string.h>
#include <net/inet_sock.h>
#include <net/ipv6.h>
#include <net/tcp.h>
#include <vmark.h>

/* Counters of the segments the hook saw, and the last connection's ends. */
struct tcp_monitor_stats {
	u64 segments;		/* segments seen: one VMARK_TRIGGER() each */
	u64 bytes;		/* TCP payload bytes of those segments,
				 * retransmitted ones included
				 */
	u64 conn_switches;	/* segments whose connection (cookie) differs
				 * from the previous segment's
				 */
	u64 last_cookie;	/* socket cookie of the last connection */
	u16 last_family;	/* AF_INET (2) or AF_INET6 (10) */
	u16 last_sport;		/* local port, host byte order */
	u16 last_dport;		/* remote port, host byte order */
	u16 reserved;
	/*
	 * Local and remote addresses.  IPv4 ones are IPv4-mapped
	 * (::ffff:a.b.c.d), as an IPv6 socket's IPv4 peers are.
	 */
	struct in6_addr last_saddr;
	struct in6_addr last_daddr;
};

static struct tcp_sock last_tp;
static struct tcp_monitor_stats stats;
VMARK(last_tp);
VMARK(stats);

/*
 * Serialises writers of the two marks: several CPUs may receive segments
 * at once, and vmark.h requires one writer at a time per mark.
 */
static DEFINE_SPINLOCK(marks_lock);

static unsigned short port;
module_param(port, ushort, 0444);
MODULE_PARM_DESC(port,
		 "Only connections whose local or remote port is this (0: all, the default)");

static int maxactive;
module_param(maxactive, int, 0444);
MODULE_PARM_DESC(maxactive,
		 "Probe instances for concurrent receives (0: the kretprobe default, 2 per CPU)");

/* Taken from the segment on entry, used on return. */
struct probe_data {
	struct sock *sk;
	unsigned int payload;
};

static int rcv_entry(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	struct probe_data *d = (struct probe_data *)ri->data;
	struct sock *sk = (struct sock *)regs_get_kernel_argument(regs, 0);
	struct sk_buff *skb = (struct sk_buff *)regs_get_kernel_argument(regs, 1);
	const struct inet_sock *inet;
	unsigned int hdr;

	/* Not ours to watch: the return handler will not run. */
	if (!sk || !skb || sk->sk_protocol != IPPROTO_TCP ||
	    sk->sk_type != SOCK_STREAM)
		return 1;
	inet = inet_sk(sk);
	if (port && inet->inet_num != port && ntohs(inet->inet_dport) != port)
		return 1;
	/* skb->data is at the TCP header here. */
	hdr = tcp_hdr(skb)->doff * 4;
	d->sk = sk;
	d->payload = skb->len > hdr ? skb->len - hdr : 0;
	return 0;
}

static void note_addresses(struct tcp_monitor_stats *s, const struct sock *sk)
{
#if IS_ENABLED(CONFIG_IPV6)
	if (sk->sk_family == AF_INET6) {
		s->last_saddr = sk->sk_v6_rcv_saddr;
		s->last_daddr = sk->sk_v6_daddr;
		return;
	}
#endif
	ipv6_addr_set_v4mapped(sk->sk_rcv_saddr, &s->last_saddr);
	ipv6_addr_set_v4mapped(sk->sk_daddr, &s->last_daddr);
}

static int rcv_return(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	struct probe_data *d = (struct probe_data *)ri->data;
	struct sock *sk = d->sk;
	u32 c[2];
	u64 cookie;
	unsigned long flags;

	/* The same cookie as ss -e shows ("sk:<hex>"); O(1). */
	sock_diag_save_cookie(sk, c);
	cookie = (u64)c[1] << 32 | c[0];

	spin_lock_irqsave(&marks_lock, flags);
	VMARK_WRITE_BEGIN(last_tp);
	memcpy(&last_tp, tcp_sk(sk), sizeof(last_tp));
	VMARK_WRITE_END(last_tp);

	VMARK_WRITE_BEGIN(stats);
	stats.segments++;
	stats.bytes += d->payload;
	if (cookie != stats.last_cookie) {
		stats.conn_switches++;
		stats.last_cookie = cookie;
		stats.last_family = sk->sk_family;
		stats.last_sport = inet_sk(sk)->inet_num;
		stats.last_dport = ntohs(inet_sk(sk)->inet_dport);
		note_addresses(&stats, sk);
	}
	VMARK_WRITE_END(stats);
	spin_unlock_irqrestore(&marks_lock, flags);

	VMARK_TRIGGER(last_tp);
	return 0;
}

static struct kretprobe rcv_probe = {
	.kp.symbol_name = "tcp_rcv_established",
	.entry_handler = rcv_entry,
	.handler = rcv_return,
	.data_size = sizeof(struct probe_data),
};

/*
 * Reads both marks the way the host does: lock-free, under their write
 * sequences, retrying a read that overlapped a write.  After many torn
 * reads in a row (a flood of segments) it takes the writers' lock instead.
 * Returns the number of retries.
 */
static unsigned int read_marks(struct tcp_sock *tp, struct tcp_monitor_stats *s)
{
	struct vmark_record *rtp = &__VMARK_REC(last_tp);
	struct vmark_record *rst = &__VMARK_REC(stats);
	unsigned int tries;
	unsigned long flags;
	u32 seq_tp, seq_st;

	for (tries = 0; tries < 100; tries++) {
		seq_tp = READ_ONCE(rtp->seq);
		seq_st = READ_ONCE(rst->seq);
		if ((seq_tp | seq_st) & 1) {
			cpu_relax();
			continue;
		}
		/* Pairs with the smp_wmb() after an odd seq in vmark.h. */
		smp_rmb();
		memcpy(tp, &last_tp, sizeof(*tp));
		memcpy(s, &stats, sizeof(*s));
		/* Pairs with the smp_wmb() before seq turns even again. */
		smp_rmb();
		if (READ_ONCE(rtp->seq) == seq_tp &&
		    READ_ONCE(rst->seq) == seq_st)
			return tries;
	}
	spin_lock_irqsave(&marks_lock, flags);
	memcpy(tp, &last_tp, sizeof(*tp));
	memcpy(s, &stats, sizeof(*s));
	spin_unlock_irqrestore(&marks_lock, flags);
	return tries;
}

/*
 * The guest's own view of the marks, for comparison with the host's.  Lines
 * "MARK.PATH=value" are values of the marks (PATH as vmark --fields takes
 * it); the addresses are printed as addresses (IPv4 as ::ffff:a.b.c.d).
 * Lines without a mark name are about the module: triggers (VMARK_TRIGGER()
 * calls so far), missed (segments the probe missed: no free instance),
 * read_retries (torn reads of this printout).
 */
static int values_show(struct seq_file *m, void *unused)
{
	struct tcp_monitor_stats s;
	struct tcp_sock *tp;
	unsigned int retries;

	tp = kmalloc(sizeof(*tp), GFP_KERNEL);
	if (!tp)
		return -ENOMEM;
	retries = read_marks(tp, &s);

	seq_printf(m, "stats.segments=%llu\n", s.segments);
	seq_printf(m, "stats.bytes=%llu\n", s.bytes);
	seq_printf(m, "stats.conn_switches=%llu\n", s.conn_switches);
	seq_printf(m, "stats.last_cookie=%llu\n", s.last_cookie);
	seq_printf(m, "stats.last_family=%u\n", s.last_family);
	seq_printf(m, "stats.last_sport=%u\n", s.last_sport);
	seq_printf(m, "stats.last_dport=%u\n", s.last_dport);
	seq_printf(m, "stats.last_saddr=%pI6c\n", &s.last_saddr);
	seq_printf(m, "stats.last_daddr=%pI6c\n", &s.last_daddr);

	seq_printf(m, "last_tp.inet_conn.icsk_inet.sk.__sk_common.skc_state=%u\n",
		   tp->inet_conn.icsk_inet.sk.sk_state);
	seq_printf(m, "last_tp.inet_conn.icsk_ca_state=%u\n",
		   tp->inet_conn.icsk_ca_state);
	seq_printf(m, "last_tp.snd_cwnd=%u\n", tp->snd_cwnd);
	seq_printf(m, "last_tp.snd_ssthresh=%u\n", tp->snd_ssthresh);
	seq_printf(m, "last_tp.srtt_us=%u\n", tp->srtt_us);
	seq_printf(m, "last_tp.mdev_us=%u\n", tp->mdev_us);
	seq_printf(m, "last_tp.rcv_nxt=%u\n", tp->rcv_nxt);
	seq_printf(m, "last_tp.snd_nxt=%u\n", tp->snd_nxt);
	seq_printf(m, "last_tp.snd_una=%u\n", tp->snd_una);
	seq_printf(m, "last_tp.bytes_received=%llu\n", tp->bytes_received);
	seq_printf(m, "last_tp.bytes_acked=%llu\n", tp->bytes_acked);
	seq_printf(m, "last_tp.segs_in=%u\n", tp->segs_in);
	seq_printf(m, "last_tp.segs_out=%u\n", tp->segs_out);
	seq_printf(m, "last_tp.data_segs_in=%u\n", tp->data_segs_in);
	seq_printf(m, "last_tp.data_segs_out=%u\n", tp->data_segs_out);
	seq_printf(m, "last_tp.rcv_wnd=%u\n", tp->rcv_wnd);
	seq_printf(m, "last_tp.snd_wnd=%u\n", tp->snd_wnd);
	seq_printf(m, "last_tp.mss_cache=%u\n", tp->mss_cache);
	seq_printf(m, "last_tp.rx_opt.snd_wscale=%u\n", tp->rx_opt.snd_wscale);
	seq_printf(m, "last_tp.rx_opt.rcv_wscale=%u\n", tp->rx_opt.rcv_wscale);
	seq_printf(m, "last_tp.total_retrans=%u\n", tp->total_retrans);

	seq_printf(m, "triggers=%llu\n",
		   (u64)READ_ONCE(__VMARK_REC(last_tp).triggers));
	seq_printf(m, "missed=%d\n", READ_ONCE(rcv_probe.nmissed));
	seq_printf(m, "read_retries=%u\n", retries);
	kfree(tp);
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(values);

static struct dentry *dir;

static int __init tcp_monitor_init(void)
{
	int err;

	if (maxactive < 0)
		return -EINVAL;
	rcv_probe.maxactive = maxactive;
	/* debugfs errors are not fatal: the marks work without it. */
	dir = debugfs_create_dir("tcp_monitor", NULL);
	debugfs_create_file("values", 0444, dir, NULL, &values_fops);
	err = register_kretprobe(&rcv_probe);
	if (err) {
		pr_err("cannot probe tcp_rcv_established: %d\n", err);
		debugfs_remove_recursive(dir);
		return err;
	}
	pr_info("watching %s (port %u)\n", port ? "one port" : "all ports",
		port);
	return 0;
}

static void __exit tcp_monitor_exit(void)
{
	unregister_kretprobe(&rcv_probe);
	if (rcv_probe.nmissed)
		pr_info("%d segments missed (no free probe instance)\n",
			rcv_probe.nmissed);
	debugfs_remove_recursive(dir);
}

module_init(tcp_monitor_init);
module_exit(tcp_monitor_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("vmark example: the TCP state of the last receiving connection");
