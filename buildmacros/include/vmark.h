/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vmark.h - mark kernel variables for observation from outside the VM.
 *
 *   static struct my_state state;
 *   VMARK(state);                     mark it (the mark is named "state")
 *   VMARK_NAMED(counter, "rx_count");  mark under another name
 *
 *   VMARK_WRITE_BEGIN(state);         open a write: the host sees reads that
 *   state.x = ...;                    overlap it as torn and retries them
 *   VMARK_WRITE_END(state);
 *
 *   VMARK_TRIGGER(state);             ask the host for a capture now
 *
 * A mark emits a 64-byte record (struct vmark_record, see vmark_abi.h; aligned
 * so it never straddles a page; the same layout in 32- and 64-bit kernels)
 * into the section VMARK_RECORD_SECTION; vmark-build finds the records in the
 * built module, resolves each variable's C type from DWARF and embeds the
 * manifest.
 * The helper module (vmark_helper.ko) finds the records of every loaded
 * module; nothing here depends on it, and no registration call is needed.
 *
 * Writers of one mark must be serialised by the caller (as for seqcount_t);
 * VMARK_TRIGGER() may be called from any context and never sleeps.
 */
#ifndef VMARK_H
#define VMARK_H

#include <linux/atomic.h>
#include <linux/compiler.h>
#include <linux/stringify.h>
#include <linux/rcupdate.h>
#include <linux/timekeeping.h>
#include <linux/types.h>
#include <asm/barrier.h>
#include "vmark_abi.h"

/*
 * Installed by the helper in vmark_record.hook while it listens.  The helper
 * clears it and waits for an RCU grace period before it goes away.
 */
struct vmark_hook {
	void (*fire)(struct vmark_record *rec);
};

#define __VMARK_REC(var) __vmark_rec_##var

/*
 * Records a use of a mark feature, so vmark-build can set the manifest's
 * flags; it costs nothing at run time.  Each use is an ELF note (owner
 * "vmark", type VMARK_NOTE_USE, descriptor "seq VAR" or "trigger VAR") in a
 * non-allocated note section: modpost accepts non-allocated sections only
 * if they are debug, comment or note sections, and the assembler insists
 * that a ".note" section has the note type.
 */
#define VMARK_USES_SECTION ".note.vmark.uses"
#define VMARK_NOTE_USE 1
#define __VMARK_NOTE_USE(what, var)					\
	({								\
		asm volatile(".pushsection " VMARK_USES_SECTION		\
			     ",\"\",@note\n\t"				\
			     ".balign 4\n\t"				\
			     ".long 6, 2f - 1f, "				\
			     __stringify(VMARK_NOTE_USE) "\n\t"		\
			     ".asciz \"vmark\"\n\t"			\
			     ".balign 4\n"					\
			     "1:\t.asciz \"" what " " #var "\"\n"		\
			     "2:\t.balign 4\n\t"				\
			     ".popsection");				\
	})

/**
 * VMARK_NAMED() - mark @var, a variable of any type, under @mark_name
 * @var: a variable defined (or declared) in this translation unit
 * @mark_name: string literal naming the mark
 *
 * Use at file scope.  The record is global (not exported), so other files of
 * the module can use VMARK_WRITE_*() and VMARK_TRIGGER() after VMARK_EXTERN().
 */
#define VMARK_NAMED(var, mark_name)					\
	struct vmark_record __VMARK_REC(var)				\
	__used __section(VMARK_RECORD_SECTION) __aligned(64) = {	\
		.magic = VMARK_RECORD_MAGIC,				\
		.abi_version = VMARK_ABI_VERSION,			\
		.addr = (unsigned long)&(var),				\
		.size = sizeof(var),					\
		.name = (unsigned long)(mark_name),			\
	}

/** VMARK() - mark @var under its own name */
#define VMARK(var) VMARK_NAMED(var, #var)

/** VMARK_EXTERN() - use a mark made in another file of the same module */
#define VMARK_EXTERN(var) extern struct vmark_record __VMARK_REC(var)

static __always_inline void __vmark_write_begin(struct vmark_record *rec)
{
	WRITE_ONCE(rec->seq, rec->seq + 1);
	/* Odd seq is visible before the variable's new bytes (host: smp_rmb). */
	smp_wmb();
}

static __always_inline void __vmark_write_end(struct vmark_record *rec)
{
	/* The variable's new bytes are visible before seq turns even again. */
	smp_wmb();
	WRITE_ONCE(rec->seq, rec->seq + 1);
}

/** VMARK_WRITE_BEGIN() - open a write of a marked variable */
#define VMARK_WRITE_BEGIN(var)						\
	do {								\
		__VMARK_NOTE_USE("seq", var);				\
		__vmark_write_begin(&__VMARK_REC(var));			\
	} while (0)

/** VMARK_WRITE_END() - close the write opened by VMARK_WRITE_BEGIN() */
#define VMARK_WRITE_END(var) __vmark_write_end(&__VMARK_REC(var))

/*
 * *@counter += 1, atomically: the ABI's counters are 64-bit on every guest.
 * Also used by the helper module.
 */
static __always_inline void __vmark_inc64(__u64 *counter)
{
#ifdef CONFIG_64BIT
	__atomic_add_fetch(counter, 1, __ATOMIC_RELAXED);
#else
	/*
	 * 32-bit x86 has no 64-bit add and the compiler would call libatomic,
	 * which the kernel lacks: cmpxchg8b in a loop.  A torn first read only
	 * costs one more round.
	 */
	u64 old, seen = READ_ONCE(*counter);

	do {
		old = seen;
		seen = cmpxchg64(counter, old, old + 1);
	} while (seen != old);
#endif
}

static __always_inline void __vmark_trigger(struct vmark_record *rec)
{
	struct vmark_hook *hook;

	/* The counter lets the host count triggers folded into one event. */
	__vmark_inc64(&rec->triggers);
	/* Two stores on 32-bit guests: the host reads it as advisory. */
	WRITE_ONCE(rec->last_trigger_ns, ktime_get_mono_fast_ns());
	if (likely(!READ_ONCE(rec->hook)))
		return;
	rcu_read_lock();
	hook = (struct vmark_hook *)(unsigned long)READ_ONCE(rec->hook);
	if (hook)
		hook->fire(rec);
	rcu_read_unlock();
}

/**
 * VMARK_TRIGGER() - ask the host to capture now
 *
 * O(1), never sleeps, safe in process, softirq and hardirq context.  Without
 * a helper it only counts; with one, at most one notification is pending.
 */
#define VMARK_TRIGGER(var)						\
	do {								\
		__VMARK_NOTE_USE("trigger", var);			\
		__vmark_trigger(&__VMARK_REC(var));			\
	} while (0)

#endif /* VMARK_H */
