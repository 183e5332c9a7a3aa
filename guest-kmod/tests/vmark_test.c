// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * A small marked module for testing vmark_helper: a counter, a renamed mark
 * and a structure that spans three pages.  Writing to
 * /sys/module/vmark_test/parameters/poke bumps the marks and triggers.
 */
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <vmark.h>

struct vmark_test_big {
	u32 magic;
	u8 fill[9000];
	u64 pokes;
};

static u64 counter;
static u64 rx;
static struct vmark_test_big big = { .magic = 0x76746573 };

VMARK(counter);
VMARK_NAMED(rx, "rx_count");
VMARK(big);

static int poke_set(const char *val, const struct kernel_param *kp)
{
	VMARK_WRITE_BEGIN(counter);
	counter++;
	VMARK_WRITE_END(counter);
	rx += 2;
	big.pokes++;
	VMARK_TRIGGER(counter);
	return 0;
}

static int poke_get(char *buf, const struct kernel_param *kp)
{
	return sysfs_emit(buf, "%llu\n", counter);
}

static const struct kernel_param_ops poke_ops = {
	.set = poke_set,
	.get = poke_get,
};
module_param_cb(poke, &poke_ops, NULL, 0644);
MODULE_PARM_DESC(poke, "write anything: bump the marks and trigger");

static int __init vmark_test_init(void)
{
	counter = 42;
	return 0;
}

static void __exit vmark_test_exit(void)
{
}

module_init(vmark_test_init);
module_exit(vmark_test_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("vmark helper test module");
