/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vmark_abi.h - the memory layouts that the guest (C) and the host (Rust)
 * must agree on.  This is the only definition: the kernel side includes it,
 * the host's Rust view is generated from it with bindgen, so the two cannot
 * drift.  Every structure has fixed-width fields and explicit padding, and
 * the same layout in 32-bit (i386) and 64-bit (x86-64) guests; all values
 * are little-endian.
 *
 * Nothing here is trusted by the host: every field read from guest memory is
 * validated before use.
 */
#ifndef VMARK_ABI_H
#define VMARK_ABI_H

#ifdef __KERNEL__
#include <linux/types.h>
#else
#include <stdint.h>
typedef uint8_t __u8;
typedef uint16_t __u16;
typedef uint32_t __u32;
typedef uint64_t __u64;
#endif

/* Bumped on any incompatible change of the structures below. */
#define VMARK_ABI_VERSION 1

/* ------------------------------------------------------------------------
 * Mark records: one per VMARK() in a marked module, emitted by vmark.h into
 * VMARK_RECORD_SECTION under a symbol named VMARK_RECORD_PREFIX + name.
 * The module loader relocates @addr and @name, so the helper module reads
 * the variable's address straight from the record.
 */
#define VMARK_RECORD_MAGIC 0x4b52414dU /* "MARK" */
#define VMARK_RECORD_SECTION ".vmark.records"
#define VMARK_RECORD_PREFIX "__vmark_rec_"

/* The mark is written under VMARK_WRITE_BEGIN()/VMARK_WRITE_END(). */
#define VMARK_F_SEQ 0x0001U
/* The module calls VMARK_TRIGGER() on the mark. */
#define VMARK_F_TRIGGER 0x0002U
#define VMARK_F_ALL (VMARK_F_SEQ | VMARK_F_TRIGGER)

/*
 * Guest addresses (addr, name, hook) take 64-bit slots.  A 32-bit guest's
 * module loader fills an address with a 32-bit relocation, which cannot
 * initialise a __u64, so in a 32-bit build each slot is the address (the low
 * half, little-endian) and an explicit high half that stays zero.  64-bit
 * builds, the host's included, see one __u64: the layout and the value are
 * the same for every guest.
 */
struct vmark_record {
	__u32 magic;		/* VMARK_RECORD_MAGIC */
	__u16 abi_version;	/* VMARK_ABI_VERSION */
	__u16 flags;		/* VMARK_F_* */
#if __SIZEOF_POINTER__ == 4
	__u32 addr;		/* guest virtual address of the variable */
	__u32 addr_high;
#else
	__u64 addr;		/* guest virtual address of the variable */
#endif
	__u64 size;		/* sizeof(variable) */
#if __SIZEOF_POINTER__ == 4
	__u32 name;		/* guest virtual address of the mark's name */
	__u32 name_high;
#else
	__u64 name;		/* guest virtual address of the mark's name */
#endif
	__u32 seq;		/* write sequence: odd while a write is open */
	__u32 reserved;
	__u64 triggers;		/* VMARK_TRIGGER() calls so far */
	__u64 last_trigger_ns;	/* guest clock of the last trigger */
#if __SIZEOF_POINTER__ == 4
	__u32 hook;		/* helper-owned; 0 when no helper listens */
	__u32 hook_high;
#else
	__u64 hook;		/* helper-owned; 0 when no helper listens */
#endif
};

/* The host reads records at these offsets, whatever the guest's word size. */
_Static_assert(sizeof(struct vmark_record) == 64, "vmark_record is 64 bytes");
_Static_assert(__builtin_offsetof(struct vmark_record, addr) == 8,
	       "vmark_record.addr at 8");
_Static_assert(__builtin_offsetof(struct vmark_record, name) == 24,
	       "vmark_record.name at 24");
_Static_assert(__builtin_offsetof(struct vmark_record, seq) == 32,
	       "vmark_record.seq at 32");
_Static_assert(__builtin_offsetof(struct vmark_record, hook) == 56,
	       "vmark_record.hook at 56");

/* ------------------------------------------------------------------------
 * The manifest: the marks' names, symbols and C types, built by vmark-build
 * and embedded in the .ko as an allocated section, so it is in guest memory
 * once the module is loaded.  A fixed header precedes the postcard payload.
 */
#define VMARK_MANIFEST_SECTION ".vmark.manifest"
#define VMARK_MANIFEST_SYMBOL "__vmark_manifest"
#define VMARK_MANIFEST_MAGIC 0x464d4b4d524d56ULL /* "VMRMKMF" */
/* The host refuses larger manifests without reading them. */
#define VMARK_MANIFEST_MAX_PAYLOAD (4U << 20)

struct vmark_manifest_header {
	__u64 magic;		/* VMARK_MANIFEST_MAGIC */
	__u16 format_version;	/* version of the postcard payload's schema */
	__u16 header_size;	/* sizeof(struct vmark_manifest_header) */
	__u32 payload_size;	/* bytes of postcard payload that follow */
	__u32 payload_crc32;	/* CRC-32 (IEEE) of the payload */
	__u32 reserved;
};

/* ------------------------------------------------------------------------
 * The control page: one per guest, allocated by the helper module and
 * granted (read-write) to the monitoring domain.  It is the only memory the
 * host writes; the marks themselves are mapped read-only.
 *
 * Trigger coalescing: a trigger sets @pending and sends an event only when
 * @pending was clear, so at most one notification is outstanding.  The host
 * clears @pending before it samples; triggers that arrive in between are
 * folded into the next notification, and each mark's record counts them.
 */
#define VMARK_CONTROL_MAGIC 0x4c52544bU /* "KTRL" */

struct vmark_control {
	__u32 magic;		/* VMARK_CONTROL_MAGIC */
	__u16 abi_version;	/* VMARK_ABI_VERSION */
	__u16 reserved0;
	__u32 pending;		/* guest sets to 1, host clears to 0 */
	__u32 reserved1;
	__u64 triggers;		/* triggers seen by the helper, all marks */
	__u64 notifications;	/* event-channel notifications sent */
	__u64 last_trigger_ns;	/* guest clock of the trigger that notified last */
	__u64 generation;	/* bumped on every change of the published marks */
	/*
	 * Clock calibration, so the host can put guest trigger times on its own
	 * clock: the host writes its clock to @ping_host_ns and notifies the
	 * guest; the helper answers by copying it to @pong_host_ns, storing its
	 * own clock (the one VMARK_TRIGGER() stamps) in @pong_guest_ns and
	 * notifying back.  The round trip bounds the offset's error.
	 */
	__u64 ping_host_ns;
	__u64 pong_host_ns;
	__u64 pong_guest_ns;
};

/* ------------------------------------------------------------------------
 * Xenstore layout, under /local/domain/<domid>/data/vmark/ (all values are
 * short ASCII strings; numbers are decimal unless said otherwise):
 *
 *   abi                   VMARK_ABI_VERSION
 *   event-channel         unbound port offered to the monitoring domain
 *   control-gref          grant reference of the control page
 *   generation            same as vmark_control.generation
 *   modules/<mod>/manifest  "<gva-hex> <size> <frame-hex>,<frame-hex>,..."
 *   modules/<mod>/marks/<i> "<name> <flags> <record-gva-hex> <record-frame-hex>
 *                            <var-gva-hex> <size> <frame-hex>,<frame-hex>,..."
 *
 * Frames are the numbers a foreign mapping takes: machine frames for PV
 * guests, guest frames for PVH/HVM guests.
 */
#define VMARK_XS_ROOT "data/vmark"

#endif /* VMARK_ABI_H */
