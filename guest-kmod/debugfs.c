// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Exposes /sys/kernel/debug/vmark/status: what the helper publishes, for
 * debugging and tests inside the guest.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/debugfs.h>
#include <linux/seq_file.h>
#include "vmark_helper.h"

static struct dentry *vmark_dir;

static void show_chan(struct seq_file *m)
{
	struct vmark_chan *c;

	c = rcu_dereference_protected(vmark_chan, lockdep_is_held(&vmark_lock));
	seq_printf(m, "monitor-domid %u\ngeneration %llu\n", monitor_domid,
		   vmark_generation);
	if (!c) {
		seq_puts(m, "channel none\n");
		return;
	}
	seq_printf(m, "event-channel %u\nirq %d\ncontrol-gref %u\n",
		   c->port, c->irq, c->gref);
	seq_printf(m, "triggers %llu\nnotifications %llu\npending %u\n",
		   READ_ONCE(c->ctl->triggers), READ_ONCE(c->ctl->notifications),
		   READ_ONCE(c->ctl->pending));
	seq_printf(m, "pongs %llu\n", c->pongs);
}

static void show_mod(struct seq_file *m, struct vmark_mod *vm)
{
	unsigned int i;

	seq_printf(m, "module %s published %d hooked %d marks %u\n", vm->name,
		   vm->published, vm->hooked, vm->nr_recs);
	seq_printf(m, "  manifest %s\n",
		   vm->manifest_value ? vm->manifest_value : "-");
	for (i = 0; i < vm->nr_recs; i++)
		seq_printf(m, "  mark %u %s triggers %llu seq %u\n", i,
			   vm->values[i] ? vm->values[i] : "-",
			   READ_ONCE(vm->recs[i]->triggers),
			   READ_ONCE(vm->recs[i]->seq));
}

static int status_show(struct seq_file *m, void *unused)
{
	struct vmark_mod *vm;

	mutex_lock(&vmark_lock);
	show_chan(m);
	list_for_each_entry(vm, &vmark_mods, list)
		show_mod(m, vm);
	mutex_unlock(&vmark_lock);
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(status);

void vmark_debugfs_init(void)
{
	vmark_dir = debugfs_create_dir("vmark", NULL);
	debugfs_create_file("status", 0400, vmark_dir, NULL, &status_fops);
}

void vmark_debugfs_exit(void)
{
	debugfs_remove(vmark_dir);
}
