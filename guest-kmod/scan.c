// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Finding a loaded module's vmark records and manifest, and the frames
 * that hold them.
 *
 * Marked modules register nothing: their records are found through the
 * module's own symbol table (mod->kallsyms), which with CONFIG_KALLSYMS_ALL
 * keeps data symbols such as __vmark_rec_<var> and __vmark_manifest.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/ctype.h>
#include <linux/kernel.h>
#include <linux/mm.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/vmalloc.h>
#include <xen/features.h>
#include <asm/xen/page.h>
#include "vmark_helper.h"

/*
 * Without CONFIG_KALLSYMS_ALL (Debian's i386 kernels) a live module keeps
 * only its function symbols; its full symbol table, data symbols included,
 * is there only while it is coming (MODULE_STATE_COMING).  The helper then
 * finds the marks of the modules loaded after it only (main.c says so).
 */

/* Highest frame number the host accepts (publish.rs MAX_FRAME). */
#define VMARK_MAX_FRAME ((1ULL << 40) - 1)

static bool in_core(const struct module *mod, unsigned long addr,
		    unsigned long size)
{
	return size && addr + size > addr &&
	       within_module_core(addr, mod) &&
	       within_module_core(addr + size - 1, mod);
}

/*
 * The frame a foreign mapping of @addr's page takes: the MFN for PV guests,
 * the GFN (== PFN) for auto-translated (PVH/HVM) guests.  Module memory is
 * vmalloc'd, so it is translated page by page; a mark may also name a
 * variable of the kernel image or the direct map.
 */
static int addr_to_frame(unsigned long addr, u64 *frame)
{
	unsigned long pfn;

	if (is_vmalloc_addr((void *)addr) ||
	    (addr >= MODULES_VADDR && addr < MODULES_END)) {
		struct page *page = vmalloc_to_page((void *)addr);

		if (!page)
			return -EFAULT;
		pfn = page_to_pfn(page);
	} else if (virt_addr_valid(addr)) {
		pfn = PHYS_PFN(__pa(addr));
	} else {
		return -EFAULT;	/* e.g. a per-CPU offset, not an address */
	}

	if (!xen_feature(XENFEAT_auto_translated_physmap) &&
	    __pfn_to_mfn(pfn) == INVALID_P2M_ENTRY)
		return -EFAULT;
	*frame = pfn_to_gfn(pfn);
	if (*frame > VMARK_MAX_FRAME)
		return -ERANGE;
	return 0;
}

/**
 * vmark_range_frames() - format the frames of [@addr, @addr + @size)
 * @addr: first byte
 * @size: length in bytes, non-zero
 * @buf: output, "<frame-hex>,<frame-hex>,..."
 * @len: size of @buf
 *
 * Return: the string's length, -E2BIG if it does not fit (the mark is too
 * large for one xenstore value), -EFAULT if a page is not mapped.
 */
int vmark_range_frames(unsigned long addr, unsigned long size,
		       char *buf, size_t len)
{
	unsigned long page = addr & PAGE_MASK;
	unsigned long last = (addr + size - 1) & PAGE_MASK;
	size_t pos = 0;
	u64 frame;
	int err;

	if (!size || addr + size < addr)
		return -EINVAL;
	for (; page <= last; page += PAGE_SIZE) {
		err = addr_to_frame(page, &frame);
		if (err)
			return err;
		pos += scnprintf(buf + pos, len - pos, "%s%llx",
				 pos ? "," : "", frame);
		if (pos >= len - 1)
			return -E2BIG;
		if (page == last)	/* last may be the top page */
			break;
	}
	return pos;
}

/* A record is trusted only after its symbol, place and header check out. */
static bool record_ok(const struct module *mod, const Elf_Sym *sym)
{
	const struct vmark_record *rec = (const void *)sym->st_value;

	if (sym->st_size != sizeof(*rec) ||
	    !IS_ALIGNED(sym->st_value, 64) ||
	    !in_core(mod, sym->st_value, sizeof(*rec)))
		return false;
	return READ_ONCE(rec->magic) == VMARK_RECORD_MAGIC &&
	       READ_ONCE(rec->abi_version) == VMARK_ABI_VERSION;
}

/*
 * Walks the module's symbol table.  mod->kallsyms switches from the full to
 * the core table (and the full one is freed after an RCU grace period) when
 * the module finishes init, so the walk is an RCU-sched read section and
 * only collects pointers into the module's core memory.
 */
static void collect_symbols(struct vmark_mod *vm, struct module *mod)
{
	const size_t plen = strlen(VMARK_RECORD_PREFIX);
	struct mod_kallsyms *ks;
	unsigned int i, extra = 0;

	preempt_disable();
	ks = rcu_dereference_sched(mod->kallsyms);
	for (i = 0; ks && i < ks->num_symtab; i++) {
		const Elf_Sym *sym = &ks->symtab[i];
		const char *name = ks->strtab + sym->st_name;

		if (sym->st_shndx == SHN_UNDEF)
			continue;
		if (!strcmp(name, VMARK_MANIFEST_SYMBOL)) {
			vm->manifest = sym->st_value;
			continue;
		}
		if (strncmp(name, VMARK_RECORD_PREFIX, plen) ||
		    !record_ok(mod, sym))
			continue;
		if (vm->nr_recs < VMARK_MAX_MARKS)
			vm->recs[vm->nr_recs++] = (void *)sym->st_value;
		else
			extra++;
	}
	preempt_enable();

	if (extra)
		pr_warn("%s: %u marks beyond the first %d ignored\n",
			vm->name, extra, VMARK_MAX_MARKS);
}

/* Validates the manifest header in guest memory and sets its total size. */
static void check_manifest(struct vmark_mod *vm, struct module *mod)
{
	const struct vmark_manifest_header *h = (const void *)vm->manifest;
	u32 payload;

	if (!vm->manifest)
		return;
	if (!in_core(mod, vm->manifest, sizeof(*h)) ||
	    READ_ONCE(h->magic) != VMARK_MANIFEST_MAGIC ||
	    READ_ONCE(h->header_size) != sizeof(*h)) {
		pr_warn("%s: bad manifest header, manifest not published\n",
			vm->name);
		vm->manifest = 0;
		return;
	}
	payload = READ_ONCE(h->payload_size);
	if (payload > VMARK_MANIFEST_MAX_PAYLOAD ||
	    !in_core(mod, vm->manifest, sizeof(*h) + payload)) {
		pr_warn("%s: manifest payload of %u bytes refused\n",
			vm->name, payload);
		vm->manifest = 0;
		return;
	}
	vm->manifest_size = sizeof(*h) + payload;
}

void vmark_free_mod(struct vmark_mod *vm)
{
	unsigned int i;

	if (!vm)
		return;
	for (i = 0; vm->values && i < vm->nr_recs; i++)
		kfree(vm->values[i]);
	kfree(vm->values);
	kfree(vm->recs);
	kfree(vm->manifest_value);
	kfree(vm);
}

/**
 * vmark_scan_module() - find the marks of @mod
 * @mod: a module in state COMING or LIVE that cannot go away meanwhile
 *
 * Return: a new vmark_mod, or NULL if @mod has no records and no manifest
 * (or memory ran out, which is logged).
 */
struct vmark_mod *vmark_scan_module(struct module *mod)
{
	struct vmark_mod *vm;

	vm = kzalloc(sizeof(*vm), GFP_KERNEL);
	if (!vm)
		return NULL;
	vm->mod = mod;
	strscpy(vm->name, mod->name, sizeof(vm->name));
	vm->recs = kcalloc(VMARK_MAX_MARKS, sizeof(*vm->recs), GFP_KERNEL);
	if (!vm->recs)
		goto nomem;

	collect_symbols(vm, mod);
	check_manifest(vm, mod);
	if (!vm->nr_recs && !vm->manifest) {
		vmark_free_mod(vm);
		return NULL;
	}
	vm->values = kcalloc(vm->nr_recs, sizeof(*vm->values), GFP_KERNEL);
	if (vm->nr_recs && !vm->values)
		goto nomem;
	return vm;

nomem:
	pr_err("%s: out of memory, marks not published\n", mod->name);
	vmark_free_mod(vm);
	return NULL;
}

static bool name_char_ok(char c)
{
	return isalnum(c) || c == '_' || c == '.' || c == ':' || c == '-';
}

/**
 * vmark_mark_name() - copy a record's name, checked as the host checks it
 * @vm: the record's module (alive)
 * @rec: the record
 * @buf: VMARK_MAX_NAME + 1 bytes
 *
 * The name is a string literal of the marked module; it is read only inside
 * the module's core memory and must be 1..VMARK_MAX_NAME of [A-Za-z0-9_.:-].
 *
 * Return: 0 or -EINVAL.
 */
int vmark_mark_name(const struct vmark_mod *vm,
		    const struct vmark_record *rec, char *buf)
{
	unsigned long p = READ_ONCE(rec->name);
	unsigned int i;

	for (i = 0; i <= VMARK_MAX_NAME; i++) {
		char c;

		if (!in_core(vm->mod, p + i, 1))
			return -EINVAL;
		c = *(const char *)(p + i);
		buf[i] = c;
		if (!c)
			return i ? 0 : -EINVAL;
		if (!name_char_ok(c))
			return -EINVAL;
	}
	return -EINVAL;
}
