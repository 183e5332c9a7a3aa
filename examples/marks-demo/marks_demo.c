// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * marks_demo - a module whose marked variables cover the C type shapes vmark
 * must decode: bitfields, anonymous unions and structs, arrays, enums, a
 * pointer to a struct tcp_sock and a copy of one, and a counter written under
 * the mark's write sequence and triggered on demand.
 *
 * The guest's own view of the values, for comparison with the host's decode:
 *
 *   cat /sys/kernel/debug/vmark_demo/values     name=value lines
 *   echo bump > /sys/kernel/debug/vmark_demo/ctl       counter++, state moves
 *   echo 'bump 5' > /sys/kernel/debug/vmark_demo/ctl   five bumps
 *   echo 'trigger 3' > /sys/kernel/debug/vmark_demo/ctl  VMARK_TRIGGER() x3
 *   echo 'bump_for 5000' > /sys/kernel/debug/vmark_demo/ctl  bumps for 5 s
 *
 * A bump changes the counter and the other marks in one write section of the
 * counter, so demo_state.lo - counter stays 0x55667788 (mod 2^32) whenever no
 * write is open: a host that pauses the guest once and reads both marks sees
 * it hold, a host that reads the two marks one after the other while bumps go
 * on may not.  "bump_for" bumps with a pause between bumps, so the guest stays
 * responsive and a write is open only a small part of the time.
 *
 * Each ctl write logs how long its loop took ("trigger 3 in 850 ns"): the
 * end-to-end test measures the cost of VMARK_TRIGGER with it.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/debugfs.h>
#include <linux/delay.h>
#include <linux/fs.h>
#include <linux/kernel.h>
#include <linux/ktime.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/sched/signal.h>
#include <linux/seq_file.h>
#include <linux/string.h>
#include <linux/tcp.h>
#include <linux/uaccess.h>
#include <vmark.h>

#define DEMO_HIST_LEN 8
/* Upper bound of one "bump N" or "trigger N" write, so a write stays short. */
#define DEMO_MAX_REPEAT 1000000U
/* Upper bound of one "bump_for MS" write, in ms. */
#define DEMO_MAX_BUMP_MS 60000U
/* Between two bumps of "bump_for", in microseconds. */
#define DEMO_BUMP_GAP_US 50

enum demo_phase {
	DEMO_IDLE,
	DEMO_RUNNING,
	DEMO_DRAINING = 7,
};

struct demo_state {
	u32 id;
	unsigned int mode:3;
	unsigned int enabled:1;
	unsigned int level:12;
	int delta:7;
	union {
		u64 raw;
		struct {
			u32 lo;
			u32 hi;
		};
	};
	struct {
		u16 port;
		u8 proto;
	} addr;
	enum demo_phase phase;
	char label[16];
};

static struct demo_state demo_state = {
	.id = 42,
	.mode = 5,
	.enabled = 1,
	.level = 1000,
	.delta = -3,
	.raw = 0x1122334455667788ULL,
	.addr = { .port = 8080, .proto = 6 },
	.phase = DEMO_RUNNING,
	.label = "marks-demo",
};
VMARK(demo_state);

static u32 demo_hist[DEMO_HIST_LEN] = { 1, 2, 3, 5, 8, 13, 21, 34 };
VMARK(demo_hist);

/* A copy of a socket's state, as a module that samples a connection keeps. */
static struct tcp_sock demo_tcp;
VMARK(demo_tcp);

/* Points at demo_tcp: the host follows it (pointer depth 1). */
static struct tcp_sock *demo_tp;
VMARK(demo_tp);

static u64 demo_counter;
VMARK_NAMED(demo_counter, "counter");

/* Serialises writers of the marks, as vmark.h requires. */
static DEFINE_MUTEX(demo_lock);
static struct dentry *demo_dir;

static void demo_bump(void)
{
	/*
	 * The unsequenced marks change too, so a host sees them move, and in the
	 * counter's write section: the counter's sequence covers them all.
	 */
	VMARK_WRITE_BEGIN(demo_counter);
	demo_counter++;
	demo_hist[demo_counter % DEMO_HIST_LEN]++;
	demo_state.level = (demo_state.level + 1) & 0xfff;
	demo_state.delta = demo_state.delta == 63 ? -64 : demo_state.delta + 1;
	demo_state.lo++;
	demo_tcp.bytes_received += 1000;
	demo_tcp.snd_cwnd++;
	VMARK_WRITE_END(demo_counter);
}

/*
 * Bumps until @ms milliseconds have passed (or the writer is killed), sleeping
 * between bumps; returns how many bumps.
 */
static unsigned int demo_bump_for(unsigned int ms)
{
	u64 end = ktime_get_ns() + (u64)ms * NSEC_PER_MSEC;
	unsigned int n = 0;

	while (ktime_get_ns() < end) {
		mutex_lock(&demo_lock);
		demo_bump();
		mutex_unlock(&demo_lock);
		n++;
		if (fatal_signal_pending(current))
			break;
		usleep_range(DEMO_BUMP_GAP_US, 2 * DEMO_BUMP_GAP_US);
	}
	return n;
}

static int demo_values_show(struct seq_file *m, void *v)
{
	int i;

	mutex_lock(&demo_lock);
	seq_printf(m, "counter=%llu\n", demo_counter);
	seq_printf(m, "demo_state.id=%u\n", demo_state.id);
	seq_printf(m, "demo_state.mode=%u\n", demo_state.mode);
	seq_printf(m, "demo_state.enabled=%u\n", demo_state.enabled);
	seq_printf(m, "demo_state.level=%u\n", demo_state.level);
	seq_printf(m, "demo_state.delta=%d\n", demo_state.delta);
	seq_printf(m, "demo_state.raw=%llu\n", demo_state.raw);
	seq_printf(m, "demo_state.lo=%u\n", demo_state.lo);
	seq_printf(m, "demo_state.hi=%u\n", demo_state.hi);
	seq_printf(m, "demo_state.addr.port=%u\n", demo_state.addr.port);
	seq_printf(m, "demo_state.addr.proto=%u\n", demo_state.addr.proto);
	seq_printf(m, "demo_state.phase=%d\n", demo_state.phase);
	seq_printf(m, "demo_state.label=%s\n", demo_state.label);
	for (i = 0; i < DEMO_HIST_LEN; i++)
		seq_printf(m, "demo_hist[%d]=%u\n", i, demo_hist[i]);
	seq_printf(m, "demo_tcp.snd_cwnd=%u\n", demo_tcp.snd_cwnd);
	seq_printf(m, "demo_tcp.srtt_us=%u\n", demo_tcp.srtt_us);
	seq_printf(m, "demo_tcp.mss_cache=%u\n", demo_tcp.mss_cache);
	seq_printf(m, "demo_tcp.rcv_nxt=%u\n", demo_tcp.rcv_nxt);
	seq_printf(m, "demo_tcp.bytes_received=%llu\n", demo_tcp.bytes_received);
	seq_printf(m, "demo_tp.snd_cwnd=%u\n", demo_tp ? demo_tp->snd_cwnd : 0);
	seq_printf(m, "demo_tp_is_demo_tcp=%d\n", demo_tp == &demo_tcp);
	seq_printf(m, "triggers=%llu\n", READ_ONCE(__vmark_rec_demo_counter.triggers));
	mutex_unlock(&demo_lock);
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(demo_values);

static ssize_t demo_ctl_write(struct file *file, const char __user *ubuf,
			      size_t len, loff_t *ppos)
{
	char buf[32], *arg;
	unsigned int n = 1, i;
	bool bump;
	u64 t0;

	if (len >= sizeof(buf))
		return -EINVAL;
	if (copy_from_user(buf, ubuf, len))
		return -EFAULT;
	buf[len] = '\0';
	arg = strim(buf);
	if (str_has_prefix(arg, "bump_for ")) {
		if (kstrtouint(skip_spaces(arg + strlen("bump_for ")), 0, &n) ||
		    n > DEMO_MAX_BUMP_MS)
			return -EINVAL;
		pr_info("bump_for %u ms: %u bumps\n", n, demo_bump_for(n));
		return len;
	}
	/* "bump" / "trigger" take an optional repeat count. */
	bump = str_has_prefix(arg, "bump");
	if (bump)
		arg += strlen("bump");
	else if (str_has_prefix(arg, "trigger"))
		arg += strlen("trigger");
	else
		return -EINVAL;
	if (*arg && (*arg != ' ' || kstrtouint(skip_spaces(arg), 0, &n) ||
		     n > DEMO_MAX_REPEAT))
		return -EINVAL;

	mutex_lock(&demo_lock);
	t0 = ktime_get_ns();
	for (i = 0; i < n; i++) {
		if (bump)
			demo_bump();
		else
			VMARK_TRIGGER(demo_counter);
	}
	t0 = ktime_get_ns() - t0;
	mutex_unlock(&demo_lock);
	pr_info("%s %u in %llu ns\n", bump ? "bump" : "trigger", n, t0);
	return len;
}

static const struct file_operations demo_ctl_fops = {
	.owner = THIS_MODULE,
	.open = simple_open,
	.write = demo_ctl_write,
	.llseek = noop_llseek,
};

static int __init demo_init(void)
{
	demo_tcp.snd_cwnd = 10;
	demo_tcp.srtt_us = 8 * 250;
	demo_tcp.mss_cache = 1448;
	demo_tcp.rcv_nxt = 0xdeadbeef;
	demo_tcp.bytes_received = 123456789;
	demo_tp = &demo_tcp;

	/* debugfs failures are not fatal: the marks work without it. */
	demo_dir = debugfs_create_dir("vmark_demo", NULL);
	debugfs_create_file("values", 0444, demo_dir, NULL, &demo_values_fops);
	debugfs_create_file("ctl", 0200, demo_dir, NULL, &demo_ctl_fops);
	pr_info("loaded\n");
	return 0;
}

static void __exit demo_exit(void)
{
	debugfs_remove_recursive(demo_dir);
	pr_info("unloaded\n");
}

module_init(demo_init);
module_exit(demo_exit);

MODULE_DESCRIPTION("vmark example: marks of many C type shapes");
MODULE_AUTHOR("vmark developers");
MODULE_LICENSE("GPL");
