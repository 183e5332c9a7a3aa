// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * vmark_kernel_types.c - the struct layouts vmark's introspection reads, as
 * DWARF, for kernels that carry no BTF of their own.
 *
 * Built against a kernel's headers, this object's debug info describes
 * task_struct, mm_struct, module and mod_kallsyms exactly as that kernel lays
 * them out: the same headers, configuration and compiler flags.  vmark reads
 * them from here (--btf FILE takes DWARF too); nobody writes an offset.  The
 * module does nothing and is never loaded.
 */
#include <linux/module.h>
#include <linux/sched.h>
#include <linux/mm_types.h>

/* Held by value, so that each struct is complete in the debug info. */
struct vmark_kernel_types {
	struct task_struct task;
	struct mm_struct mm;
	struct module module;
#ifdef CONFIG_KALLSYMS
	struct mod_kallsyms kallsyms;
#endif
	struct list_head list;
};

static struct vmark_kernel_types vmark_kernel_types __used;

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("vmark: kernel struct layouts as DWARF (never loaded)");
