// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * The xenstore layout of vmark_abi.h, under
 * /local/domain/<self>/data/vmark/ (xenbus paths are relative to it).
 *
 * Each change (a module's marks appear or go) is one xenstore transaction
 * that also writes the new generation, so a host that watches the tree and
 * re-reads it never sees half a module.  xenbus sleeps: everything here runs
 * in process context with vmark_lock held.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/kernel.h>
#include <linux/slab.h>
#include <xen/xenbus.h>
#include "vmark_helper.h"

#define VMARK_XS_TRIES 8

typedef int (*xs_body_t)(struct xenbus_transaction xbt, void *arg);

/* Runs @body and the generation update in one transaction, with retries. */
static int xs_commit(xs_body_t body, void *arg)
{
	struct xenbus_transaction xbt;
	int err = -EAGAIN;
	int tries;

	for (tries = 0; tries < VMARK_XS_TRIES && err == -EAGAIN; tries++) {
		err = xenbus_transaction_start(&xbt);
		if (err)
			return err;
		err = body(xbt, arg);
		if (!err)
			err = xenbus_printf(xbt, VMARK_XS_ROOT, "generation",
					    "%llu", vmark_generation + 1);
		if (err) {
			xenbus_transaction_end(xbt, 1);
			return err;
		}
		err = xenbus_transaction_end(xbt, 0);
	}
	if (!err)
		vmark_bump_generation();
	return err;
}

static int root_body(struct xenbus_transaction xbt, void *arg)
{
	struct vmark_chan *c = arg;
	int err;

	err = xenbus_printf(xbt, VMARK_XS_ROOT, "event-channel", "%u",
			    c->port);
	if (!err)
		err = xenbus_printf(xbt, VMARK_XS_ROOT, "control-gref", "%u",
				    c->gref);
	if (!err)
		err = xenbus_printf(xbt, VMARK_XS_ROOT, "abi", "%u",
				    VMARK_ABI_VERSION);
	return err;
}

/**
 * vmark_publish_root() - (re)write abi, event-channel and control-gref
 *
 * Whatever a previous instance (or a previous life of this domain, before a
 * migration) left under data/vmark is removed first.
 *
 * Return: 0 or a negative errno.
 */
int vmark_publish_root(void)
{
	struct vmark_chan *c;

	c = rcu_dereference_protected(vmark_chan, lockdep_is_held(&vmark_lock));
	if (!c)
		return -ENODEV;
	vmark_remove_root();
	return xs_commit(root_body, c);
}

/* Removes the whole data/vmark tree; a missing tree is not an error. */
void vmark_remove_root(void)
{
	int err = xenbus_rm(XBT_NIL, VMARK_XS_ROOT, "");

	if (err && err != -ENOENT)
		pr_warn("removing %s from xenstore: %d\n", VMARK_XS_ROOT, err);
}

/*
 * "<name> <flags> <record-gva> <record-frame> <var-gva> <size> <frames>",
 * or NULL when the mark cannot be published (logged).
 */
static char *format_mark(struct vmark_mod *vm, unsigned int i)
{
	struct vmark_record *rec = vm->recs[i];
	char name[VMARK_MAX_NAME + 1];
	unsigned long addr = READ_ONCE(rec->addr);
	unsigned long size = READ_ONCE(rec->size);
	char rec_frame[24];
	char *buf;
	int n, err;

	if (vmark_mark_name(vm, rec, name)) {
		pr_warn("%s: record %u has a bad name, not published\n",
			vm->name, i);
		return NULL;
	}
	/* Records are 64-byte aligned: one frame holds all of it. */
	err = vmark_range_frames((unsigned long)rec, sizeof(*rec), rec_frame,
				 sizeof(rec_frame));
	if (err < 0)
		goto bad;
	buf = kmalloc(VMARK_XS_VALUE_MAX, GFP_KERNEL);
	if (!buf)
		return NULL;
	n = scnprintf(buf, VMARK_XS_VALUE_MAX, "%s %u %lx %s %lx %lu ", name,
		      READ_ONCE(rec->flags) & VMARK_F_ALL, (unsigned long)rec,
		      rec_frame, addr, size);
	err = vmark_range_frames(addr, size, buf + n, VMARK_XS_VALUE_MAX - n);
	if (err >= 0)
		return buf;
	kfree(buf);
bad:
	pr_warn("%s: mark %s (%lu bytes at 0x%lx) not published: %d\n",
		vm->name, name, size, addr, err);
	return NULL;
}

/* "<gva> <size> <frames>" of the manifest blob, or NULL (logged). */
static char *format_manifest(struct vmark_mod *vm)
{
	char *buf;
	int n, err;

	if (!vm->manifest)
		return NULL;
	buf = kmalloc(VMARK_XS_VALUE_MAX, GFP_KERNEL);
	if (!buf)
		return NULL;
	n = scnprintf(buf, VMARK_XS_VALUE_MAX, "%lx %u ", vm->manifest,
		      vm->manifest_size);
	err = vmark_range_frames(vm->manifest, vm->manifest_size, buf + n,
				 VMARK_XS_VALUE_MAX - n);
	if (err >= 0)
		return buf;
	pr_warn("%s: manifest (%u bytes) not published: %d\n", vm->name,
		vm->manifest_size, err);
	kfree(buf);
	return NULL;
}

static int module_body(struct xenbus_transaction xbt, void *arg)
{
	struct vmark_mod *vm = arg;
	char dir[96];
	char idx[12];
	unsigned int i;
	int err;

	snprintf(dir, sizeof(dir), "%s/modules/%s", VMARK_XS_ROOT, vm->name);
	err = xenbus_rm(xbt, dir, "");
	if (err && err != -ENOENT)
		return err;
	if (vm->manifest_value) {
		err = xenbus_write(xbt, dir, "manifest", vm->manifest_value);
		if (err)
			return err;
	}
	strlcat(dir, "/marks", sizeof(dir));
	for (i = 0; i < vm->nr_recs; i++) {
		if (!vm->values[i])
			continue;
		snprintf(idx, sizeof(idx), "%u", i);
		err = xenbus_write(xbt, dir, idx, vm->values[i]);
		if (err)
			return err;
	}
	return 0;
}

/*
 * Frames are computed afresh on every publication: a PV guest's machine
 * frames change when it migrates.
 */
static void format_module(struct vmark_mod *vm)
{
	unsigned int i;

	for (i = 0; i < vm->nr_recs; i++) {
		kfree(vm->values[i]);
		vm->values[i] = format_mark(vm, i);
	}
	kfree(vm->manifest_value);
	vm->manifest_value = format_manifest(vm);
}

/**
 * vmark_publish_module() - write modules/<mod>/ for @vm
 * @vm: a scanned module, alive
 *
 * Return: 0 or a negative errno (logged); on error nothing of @vm is left.
 */
int vmark_publish_module(struct vmark_mod *vm)
{
	int err;

	format_module(vm);
	err = xs_commit(module_body, vm);
	if (err) {
		pr_err("%s: publishing marks in xenstore failed: %d\n",
		       vm->name, err);
		return err;
	}
	vm->published = true;
	return 0;
}

static int withdraw_body(struct xenbus_transaction xbt, void *arg)
{
	struct vmark_mod *vm = arg;
	char dir[96];
	int err;

	snprintf(dir, sizeof(dir), "%s/modules/%s", VMARK_XS_ROOT, vm->name);
	err = xenbus_rm(xbt, dir, "");
	return err == -ENOENT ? 0 : err;
}

/**
 * vmark_withdraw_module() - remove modules/<mod>/ (hooks already cleared)
 * @vm: a published module
 */
void vmark_withdraw_module(struct vmark_mod *vm)
{
	int err;

	if (!vm->published)
		return;
	err = xs_commit(withdraw_body, vm);
	if (err)
		pr_warn("%s: withdrawing marks from xenstore failed: %d\n",
			vm->name, err);
	vm->published = false;
}
