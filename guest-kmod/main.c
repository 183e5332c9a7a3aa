// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * vmark_helper - publishes the vmark marks of loaded modules to a monitoring
 * domain through xenstore, a granted control page and an event channel.
 *
 * Marked modules are found as they load (module notifier) and, at load time,
 * by walking the module list.  Everything is synchronous under vmark_lock:
 * the GOING notification of a module takes that lock too, so a module the
 * helper works on cannot be freed meanwhile, and the helper keeps no module
 * references (which would make rmmod of a marked module fail).
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/kernel.h>
#include <linux/module.h>
#include <linux/rculist.h>
#include <linux/slab.h>
#include <linux/workqueue.h>
#include <xen/xen.h>
#include <xen/xen-ops.h>
#include "vmark_helper.h"

ushort monitor_domid;
module_param(monitor_domid, ushort, 0444);
MODULE_PARM_DESC(monitor_domid, "domain that monitors the marks (default 0)");

/* Serialises the module list, xenstore writes, hooks and the channel. */
DEFINE_MUTEX(vmark_lock);
LIST_HEAD(vmark_mods);

/* Loaded modules looked at when the helper starts. */
#define VMARK_SCAN_MAX 1024

static struct vmark_mod *find_tracked(struct module *mod)
{
	struct vmark_mod *vm;

	list_for_each_entry(vm, &vmark_mods, list)
		if (vm->mod == mod)
			return vm;
	return NULL;
}

/* Called with vmark_lock held; @mod stays alive until we drop it. */
static void vmark_add(struct module *mod)
{
	struct vmark_mod *vm;
	unsigned int i, n = 0;

	if (mod == THIS_MODULE || find_tracked(mod))
		return;
	vm = vmark_scan_module(mod);
	if (!vm)
		return;
	/* Tracked even if publishing fails, so a resume retries it. */
	list_add_tail(&vm->list, &vmark_mods);
	if (vmark_publish_module(vm))
		return;
	vmark_install_hooks(vm);
	for (i = 0; i < vm->nr_recs; i++)
		n += !!vm->values[i];
	pr_info("%s: published %u of %u marks, %s manifest\n", vm->name, n,
		vm->nr_recs, vm->manifest_value ? "with" : "no");
}

/* Called with vmark_lock held, before @mod is freed. */
static void vmark_remove(struct module *mod)
{
	struct vmark_mod *vm = find_tracked(mod);

	if (!vm)
		return;
	vmark_clear_hooks(vm);
	synchronize_rcu();	/* no trigger of @mod is inside vmark_fire() */
	vmark_withdraw_module(vm);
	list_del(&vm->list);
	pr_info("%s: marks withdrawn\n", vm->name);
	vmark_free_mod(vm);
}

static int vmark_module_event(struct notifier_block *nb, unsigned long action,
			      void *data)
{
	mutex_lock(&vmark_lock);
	if (action == MODULE_STATE_COMING)
		vmark_add(data);
	else if (action == MODULE_STATE_GOING)
		vmark_remove(data);
	mutex_unlock(&vmark_lock);
	/* Never fail a module's load because of the helper. */
	return NOTIFY_DONE;
}

static struct notifier_block vmark_module_nb = {
	.notifier_call = vmark_module_event,
};

/*
 * The kernel's module list is not exported, but our own entry is on it: walk
 * from there, skipping the list head (the `modules` variable, the only entry
 * outside module space).  Modules are pinned while collected under RCU and
 * scanned afterwards; vmark_lock (held) keeps their GOING notification, and
 * so their freeing, waiting until we are done.
 */
static void vmark_add_loaded(void)
{
	struct module **mods;
	struct list_head *pos;
	unsigned int i, n = 0, skipped = 0;

	/* Their records are data symbols, gone from live modules (see scan.c). */
	if (!IS_ENABLED(CONFIG_KALLSYMS_ALL))
		pr_info("kernel without CONFIG_KALLSYMS_ALL: only modules loaded after the helper have their marks found\n");
	mods = kcalloc(VMARK_SCAN_MAX, sizeof(*mods), GFP_KERNEL);
	if (!mods)
		return;
	rcu_read_lock();
	list_for_each_rcu(pos, &THIS_MODULE->list) {
		struct module *mod = list_entry(pos, struct module, list);

		if ((unsigned long)pos < MODULES_VADDR ||
		    (unsigned long)pos >= MODULES_END ||
		    READ_ONCE(mod->state) == MODULE_STATE_UNFORMED)
			continue;
		if (n == VMARK_SCAN_MAX)
			skipped++;
		else if (try_module_get(mod))
			mods[n++] = mod;
	}
	rcu_read_unlock();

	for (i = 0; i < n; i++) {
		vmark_add(mods[i]);
		module_put(mods[i]);
	}
	kfree(mods);
	if (skipped)
		pr_warn("%u loaded modules not looked at\n", skipped);
}

/*
 * After a migration the event channel, the grant and our xenstore nodes
 * belong to the old domain, and a PV guest's machine frames have changed:
 * start over with a new channel and publish everything again.
 */
static void vmark_resume_fn(struct work_struct *work)
{
	struct vmark_mod *vm;

	mutex_lock(&vmark_lock);
	if (!vmark_chan_stale())
		goto out;
	vmark_chan_destroy(true);
	if (vmark_chan_create() || vmark_publish_root()) {
		pr_err("resume: cannot publish again, marks unavailable\n");
		goto out;
	}
	list_for_each_entry(vm, &vmark_mods, list)
		if (!vmark_publish_module(vm) && !vm->hooked)
			vmark_install_hooks(vm);
out:
	mutex_unlock(&vmark_lock);
}

static DECLARE_WORK(vmark_resume_work, vmark_resume_fn);

/* Runs right after a suspend returns, processes still frozen: defer. */
static int vmark_resume_event(struct notifier_block *nb, unsigned long action,
			      void *data)
{
	if (vmark_chan_stale())
		queue_work(system_freezable_wq, &vmark_resume_work);
	return NOTIFY_DONE;
}

static struct notifier_block vmark_resume_nb = {
	.notifier_call = vmark_resume_event,
};

static void vmark_release_all(void)
{
	struct vmark_mod *vm, *tmp;

	list_for_each_entry(vm, &vmark_mods, list)
		vmark_clear_hooks(vm);
	synchronize_rcu();
	vmark_remove_root();
	list_for_each_entry_safe(vm, tmp, &vmark_mods, list) {
		list_del(&vm->list);
		vmark_free_mod(vm);
	}
	vmark_chan_destroy(false);
}

static int __init vmark_init(void)
{
	struct vmark_chan *c;
	int err;

	if (!xen_domain()) {
		pr_err("not running on Xen, refusing to load\n");
		return -ENODEV;
	}
	mutex_lock(&vmark_lock);
	err = vmark_chan_create();
	if (!err) {
		err = vmark_publish_root();
		if (err)
			vmark_chan_destroy(false);
	}
	mutex_unlock(&vmark_lock);
	if (err) {
		pr_err("cannot set up for domain %u: %d\n", monitor_domid, err);
		return err;
	}

	err = register_module_notifier(&vmark_module_nb);
	if (err) {
		mutex_lock(&vmark_lock);
		vmark_release_all();
		mutex_unlock(&vmark_lock);
		return err;
	}
	xen_resume_notifier_register(&vmark_resume_nb);

	mutex_lock(&vmark_lock);
	vmark_add_loaded();
	c = rcu_dereference_protected(vmark_chan, lockdep_is_held(&vmark_lock));
	pr_info("ready for domain %u: event channel %u, control grant %u\n",
		monitor_domid, c->port, c->gref);
	mutex_unlock(&vmark_lock);
	vmark_debugfs_init();
	return 0;
}

static void __exit vmark_exit(void)
{
	vmark_debugfs_exit();
	unregister_module_notifier(&vmark_module_nb);
	xen_resume_notifier_unregister(&vmark_resume_nb);
	cancel_work_sync(&vmark_resume_work);

	mutex_lock(&vmark_lock);
	vmark_release_all();
	mutex_unlock(&vmark_lock);
	pr_info("unloaded, everything withdrawn\n");
}

module_init(vmark_init);
module_exit(vmark_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("vmark");
MODULE_DESCRIPTION("Publishes vmark marks to a monitoring Xen domain");
