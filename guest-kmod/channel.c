// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * The event channel and control page shared with the monitor,
 * and the trigger hook installed in mark records.
 *
 * The port is allocated unbound for monitor_domid.  While no host listens,
 * notifications on it are dropped by Xen; a host binds it (interdomain) when
 * it starts, and when it closes its end Xen returns the port to the unbound
 * state, so a restarted host binds it again: nothing changes guest-side.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/atomic.h>
#include <linux/interrupt.h>
#include <linux/mm.h>
#include <linux/slab.h>
#include <linux/timekeeping.h>
#include <xen/events.h>
#include <xen/grant_table.h>
#include <xen/page.h>
#include <asm/xen/hypercall.h>
#include "vmark_helper.h"

struct vmark_chan __rcu *vmark_chan;
u64 vmark_generation;

/*
 * Called by VMARK_TRIGGER() inside rcu_read_lock(), from any context but
 * NMI: O(1), no locks, no sleeping.  At most one notification is
 * outstanding; the host clears @pending before it samples.
 */
static void vmark_fire(struct vmark_record *rec)
{
	struct vmark_chan *c = rcu_dereference(vmark_chan);
	struct vmark_control *ctl;

	if (!c || READ_ONCE(c->dead))
		return;
	ctl = c->ctl;
	__vmark_inc64(&ctl->triggers);
	if (xchg(&ctl->pending, 1))
		return;
	/* The host measures trigger-to-sample latency from this stamp. */
	WRITE_ONCE(ctl->last_trigger_ns, READ_ONCE(rec->last_trigger_ns));
	__vmark_inc64(&ctl->notifications);
	notify_remote_via_evtchn(c->port);
}

static struct vmark_hook vmark_hook = { .fire = vmark_fire };

void vmark_install_hooks(struct vmark_mod *vm)
{
	unsigned int i;

	for (i = 0; i < vm->nr_recs; i++)
		if (vm->values[i])
			WRITE_ONCE(vm->recs[i]->hook,
				   (unsigned long)&vmark_hook);
	vm->hooked = true;
}

/* The caller waits for an RCU grace period before vmark_hook may go. */
void vmark_clear_hooks(struct vmark_mod *vm)
{
	unsigned int i;

	if (!vm->hooked)
		return;
	for (i = 0; i < vm->nr_recs; i++)
		WRITE_ONCE(vm->recs[i]->hook, 0);
	vm->hooked = false;
}

/*
 * A notification from the host is a clock-calibration ping: echo the host's
 * stamp with ours (the clock VMARK_TRIGGER() uses) and notify back.  The
 * host matches the echo, so our stamp is written first.
 */
static irqreturn_t vmark_ping(int irq, void *dev_id)
{
	struct vmark_chan *c = dev_id;
	struct vmark_control *ctl = c->ctl;
	u64 ping = READ_ONCE(ctl->ping_host_ns);

	if (!ping || ping == READ_ONCE(ctl->pong_host_ns))
		return IRQ_HANDLED;
	WRITE_ONCE(ctl->pong_guest_ns, ktime_get_mono_fast_ns());
	/* The host reads pong_host_ns, then pong_guest_ns. */
	smp_wmb();
	WRITE_ONCE(ctl->pong_host_ns, ping);
	c->pongs++;
	notify_remote_via_evtchn(c->port);
	return IRQ_HANDLED;
}

static int alloc_port(evtchn_port_t *port)
{
	struct evtchn_alloc_unbound op = {
		.dom = DOMID_SELF,
		.remote_dom = monitor_domid,
	};
	int err;

	err = HYPERVISOR_event_channel_op(EVTCHNOP_alloc_unbound, &op);
	if (!err)
		*port = op.port;
	return err;
}

static void close_port(evtchn_port_t port)
{
	struct evtchn_close op = { .port = port };

	if (HYPERVISOR_event_channel_op(EVTCHNOP_close, &op))
		pr_warn("closing event channel %u failed\n", port);
}

/* Page, port, irq and grant, in that order; undone in reverse on error. */
static int chan_setup(struct vmark_chan *c)
{
	int err;

	c->page = alloc_page(GFP_KERNEL | __GFP_ZERO);
	if (!c->page)
		return -ENOMEM;
	c->ctl = page_address(c->page);
	c->ctl->magic = VMARK_CONTROL_MAGIC;
	c->ctl->abi_version = VMARK_ABI_VERSION;
	c->ctl->generation = vmark_generation;

	err = alloc_port(&c->port);
	if (err) {
		pr_err("allocating an event channel for domain %u: %d\n",
		       monitor_domid, err);
		goto free_page;
	}
	c->irq = bind_evtchn_to_irqhandler(c->port, vmark_ping, 0, "vmark", c);
	if (c->irq < 0) {
		err = c->irq;
		pr_err("binding event channel %u: %d\n", c->port, err);
		close_port(c->port);
		goto free_page;
	}
	err = gnttab_grant_foreign_access(monitor_domid,
					  xen_page_to_gfn(c->page), 0);
	if (err < 0) {
		pr_err("granting the control page to domain %u: %d\n",
		       monitor_domid, err);
		unbind_from_irqhandler(c->irq, c);	/* closes the port */
		goto free_page;
	}
	c->gref = err;
	return 0;

free_page:
	__free_page(c->page);
	return err;
}

/**
 * vmark_chan_create() - allocate and publish (RCU) a new channel
 *
 * Return: 0 or a negative errno.  Called with vmark_lock held.
 */
int vmark_chan_create(void)
{
	struct vmark_chan *c;
	int err;

	c = kzalloc(sizeof(*c), GFP_KERNEL);
	if (!c)
		return -ENOMEM;
	err = chan_setup(c);
	if (err) {
		kfree(c);
		return err;
	}
	rcu_assign_pointer(vmark_chan, c);
	return 0;
}

/**
 * vmark_chan_destroy() - unpublish and release the channel
 * @dead: a resume invalidated it; its port and grant are no longer ours
 *
 * After a migration the old port number may belong to another binding, so
 * it is not closed; unbinding the irq is still needed and closes nothing,
 * since the resume code already zapped the irq's port.  Ending the stale
 * grant only returns the reference to the (fresh) grant table's free list.
 */
void vmark_chan_destroy(bool dead)
{
	struct vmark_chan *c;

	c = rcu_dereference_protected(vmark_chan, lockdep_is_held(&vmark_lock));
	if (!c)
		return;
	WRITE_ONCE(c->dead, true);
	RCU_INIT_POINTER(vmark_chan, NULL);
	synchronize_rcu();	/* no vmark_fire() uses @c any more */

	unbind_from_irqhandler(c->irq, c);
	if (dead)
		pr_info("event channel %u lost in resume, replacing it\n",
			c->port);
	/* Frees the page once the host has unmapped it (maybe later). */
	gnttab_end_foreign_access(c->gref, c->page);
	kfree(c);
}

/**
 * vmark_chan_stale() - whether a resume from suspend/migration zapped our port
 *
 * Resuming in a new domain clears every event-channel-to-irq binding
 * (xen_irq_resume), whereas a cancelled suspend keeps them: compare.
 * Safe in any context; marks the channel dead so triggers stop notifying.
 */
bool vmark_chan_stale(void)
{
	struct vmark_chan *c;
	bool stale = false;

	rcu_read_lock();
	c = rcu_dereference(vmark_chan);
	if (c && irq_from_evtchn(c->port) != c->irq) {
		WRITE_ONCE(c->dead, true);
		stale = true;
	}
	rcu_read_unlock();
	return stale;
}

/* Called with vmark_lock held after each committed xenstore change. */
void vmark_bump_generation(void)
{
	struct vmark_chan *c;

	vmark_generation++;
	c = rcu_dereference_protected(vmark_chan, lockdep_is_held(&vmark_lock));
	if (c)
		WRITE_ONCE(c->ctl->generation, vmark_generation);
}
