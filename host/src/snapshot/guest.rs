//! What a Linux guest's snapshot holds, learnt from the guest kernel: its memory map
//! (which frames to map) and its `VMCOREINFO` (how drgn and crash identify the kernel).
//!
//! Both are guest data, read through the located kernel and checked: the map's entries
//! are bounded by the array's own length and clipped by the caller to the domain's size
//! (the hypervisor still refuses any frame the domain does not own, so a lying map can
//! only leave memory out of the snapshot); the `VMCOREINFO` text must be `KEY=VALUE` lines
//! of printable ASCII within [`super::MAX_VMCOREINFO`] bytes, or vmark writes its own from
//! what it found.

use crate::introspect::kernel::{Kernel, KernelError};
use crate::introspect::paging::PagingMode;
use crate::publish::PAGE_SIZE;
use std::ops::Range;

/// e820 types whose frames a snapshot includes: usable RAM, ACPI tables and NVS,
/// persistent memory. Reserved ranges (firmware, MMIO windows) are left out.
const E820_SNAPSHOT_TYPES: [u32; 6] = [1, 3, 4, 7, 12, 128];
/// `__START_KERNEL_map` on x86-64: `phys_base` is the kernel image's load offset from it.
const START_KERNEL_MAP: u64 = 0xffff_ffff_8000_0000;

/// The frames of the guest's memory map (`e820_table`) that hold memory, unsorted.
pub fn memory_frames(k: &Kernel) -> Result<Vec<Range<u64>>, KernelError> {
    let table_t = k.type_id("e820_table")?;
    let off = |p: &str| k.offset(table_t, "e820_table", p);
    let nr_off = off("nr_entries")?;
    let addr_off = off("entries[0].addr")?;
    let size_off = off("entries[0].size")?;
    let type_off = off("entries[0].type")?;
    // The types are the guest's too (its BTF): an entry is at least its three members
    // (20 bytes, packed), and the array's length is bounded by vmark, not by them.
    let stride = off("entries[1].addr")?
        .checked_sub(addr_off)
        .filter(|&s| s >= 20)
        .ok_or_else(|| {
            KernelError::MissingType("e820_table.entries: entries under 20 bytes".into())
        })?;
    let capacity = k
        .btf()?
        .member_count(table_t, "entries")
        .ok_or_else(|| KernelError::MissingType("e820_table.entries".into()))?
        .min(vmark_proto::limits::SNAPSHOT_MAX_E820_ENTRIES);
    let table = k.read_ptr(k.data_symbol("e820_table")?)?;
    let at = |o: u64| {
        table
            .checked_add(o)
            .ok_or_else(|| KernelError::Overflow(format!("e820_table {table:#x} + {o:#x}")))
    };
    let mut n = [0u8; 4];
    k.read(at(nr_off)?, &mut n)?;
    let n = u64::from(u32::from_le_bytes(n)).min(capacity);
    let mut ranges = Vec::new();
    for i in 0..n {
        // i < 8192 and stride is a member offset difference of a type under 64 MiB: no
        // overflow, but checked all the same.
        let e = |o: u64| {
            i.checked_mul(stride)
                .and_then(|e| e.checked_add(o))
                .ok_or_else(|| KernelError::Overflow(format!("e820 entry {i}")))
                .and_then(at)
        };
        let (mut a, mut s, mut t) = ([0u8; 8], [0u8; 8], [0u8; 4]);
        k.read(e(addr_off)?, &mut a)?;
        k.read(e(size_off)?, &mut s)?;
        k.read(e(type_off)?, &mut t)?;
        let (addr, size) = (u64::from_le_bytes(a), u64::from_le_bytes(s));
        if !E820_SNAPSHOT_TYPES.contains(&u32::from_le_bytes(t)) {
            continue;
        }
        let end = addr.saturating_add(size);
        ranges.push(addr / PAGE_SIZE..end.div_ceil(PAGE_SIZE));
    }
    if ranges.is_empty() {
        return Err(KernelError::MissingType(
            "e820_table: no memory in the guest's memory map".into(),
        ));
    }
    Ok(ranges)
}

/// Most entries of a PV guest's P2M read.
pub const MAX_P2M_ENTRIES: u64 = vmark_proto::limits::SNAPSHOT_MAX_P2M_ENTRIES;

/// A Linux Xen PV guest's P2M: `xen_p2m_addr[pfn]` for pfn below `xen_p2m_size` and
/// `limit`, the machine frame of each pseudo-physical frame ([`super::NO_FRAME`] for
/// invalid, foreign and identity entries). Guest data: a lying P2M can name only frames
/// Xen lets the domain map (the writer bounds how many), or leave frames out.
pub fn pv_p2m(k: &Kernel, limit: u64) -> Result<Vec<u64>, KernelError> {
    use crate::introspect::m2p::{FOREIGN_FRAME_BIT, IDENTITY_FRAME_BIT};
    let addr = k.read_ptr(k.data_symbol("xen_p2m_addr")?)?;
    let size = k.read_ptr(k.data_symbol("xen_p2m_size")?)?;
    let n = size.min(limit).min(MAX_P2M_ENTRIES);
    let mut out = Vec::with_capacity(n as usize);
    // A page of entries at a time: the list is virtually contiguous, not physically.
    let mut chunk = vec![0u8; PAGE_SIZE as usize];
    let per_page = PAGE_SIZE / 8;
    let mut pfn = 0;
    while pfn < n {
        let take = (n - pfn).min(per_page);
        let at = addr
            .checked_add(pfn * 8)
            .ok_or_else(|| KernelError::Overflow(format!("xen_p2m_addr {addr:#x} + {pfn}")))?;
        let bytes = &mut chunk[..(take * 8) as usize];
        match k.read(at, bytes) {
            Ok(()) => out.extend(bytes.chunks_exact(8).map(|c| {
                let e = u64::from_le_bytes(c.try_into().expect("8 bytes"));
                if e & (FOREIGN_FRAME_BIT | IDENTITY_FRAME_BIT) != 0 {
                    super::NO_FRAME
                } else {
                    e
                }
            })),
            // Linux maps the list's runs of invalid entries to one shared page, or not at
            // all: a page that does not read is a run of frames without memory.
            Err(_) => out.extend(std::iter::repeat_n(super::NO_FRAME, take as usize)),
        }
        pfn += take;
    }
    Ok(out)
}

/// Where a snapshot's `VMCOREINFO` came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmcoreinfoOrigin {
    /// The guest's own (`vmcoreinfo_data`).
    Guest,
    /// Written by vmark, because the guest's could not be used (why).
    Vmark(String),
}

/// The guest's `VMCOREINFO` text, or one vmark writes from the located kernel (the
/// release, page size, KASLR offset, page-table root and `phys_base`: enough for drgn with
/// the kernel's debug info; without it drgn also needs the kallsyms entries, which only the
/// guest's own text has).
pub fn vmcoreinfo(k: &Kernel) -> (Vec<u8>, VmcoreinfoOrigin) {
    match guest_vmcoreinfo(k) {
        Ok(text) => (text, VmcoreinfoOrigin::Guest),
        Err(why) => (synthesised_vmcoreinfo(k), VmcoreinfoOrigin::Vmark(why)),
    }
}

fn guest_vmcoreinfo(k: &Kernel) -> Result<Vec<u8>, String> {
    let read_u64 = |va: u64| -> Result<u64, String> {
        let mut b = [0u8; 8];
        k.read(va, &mut b).map_err(|e| e.to_string())?;
        Ok(u64::from_le_bytes(b))
    };
    let sym = |n: &str| k.symbol(n).map_err(|e| e.to_string());
    let data = read_u64(sym("vmcoreinfo_data")?)?;
    let size = read_u64(sym("vmcoreinfo_size")?)?;
    if size == 0 || size > super::MAX_VMCOREINFO as u64 {
        return Err(format!("the guest's vmcoreinfo_size is {size}"));
    }
    let mut text = vec![0u8; size as usize];
    k.read(data, &mut text).map_err(|e| e.to_string())?;
    while text.last() == Some(&0) {
        text.pop();
    }
    check_vmcoreinfo(&text)?;
    Ok(text)
}

/// `KEY=VALUE` lines of printable ASCII, with the keys drgn cannot do without.
fn check_vmcoreinfo(text: &[u8]) -> Result<(), String> {
    if let Some(b) = text
        .iter()
        .find(|&&b| b != b'\n' && !(0x20..0x7f).contains(&b))
    {
        return Err(format!("the guest's VMCOREINFO holds byte {b:#04x}"));
    }
    let s = std::str::from_utf8(text).map_err(|e| e.to_string())?;
    if let Some(line) = s.lines().find(|l| !l.is_empty() && !l.contains('=')) {
        return Err(format!(
            "the guest's VMCOREINFO has a line without '=': {:?}",
            vmark_proto::text::escape(line)
        ));
    }
    for key in ["OSRELEASE=", "PAGESIZE=", "KERNELOFFSET="] {
        if !s.lines().any(|l| l.starts_with(key)) {
            return Err(format!("the guest's VMCOREINFO has no {key}"));
        }
    }
    Ok(())
}

/// The release in a `linux_banner` ("Linux version RELEASE ...").
fn release(k: &Kernel) -> Option<String> {
    let mut b = [0u8; 160];
    k.read(k.symbol("linux_banner").ok()?, &mut b).ok()?;
    let s = String::from_utf8_lossy(&b);
    let r = s.strip_prefix("Linux version ")?.split(' ').next()?;
    r.bytes()
        .all(|c| c.is_ascii_graphic())
        .then(|| r.to_string())
}

fn synthesised_vmcoreinfo(k: &Kernel) -> Vec<u8> {
    let base = k.base();
    let mut s = String::new();
    if let Some(r) = release(k) {
        s += &format!("OSRELEASE={r}\n");
    }
    s += &format!("PAGESIZE={PAGE_SIZE}\n");
    if let Some(a) = crate::introspect::kernel::page_directory_symbol(k.symbols()) {
        s += &format!("SYMBOL(swapper_pg_dir)={a:x}\n");
    }
    // phys_base = _text's physical address - (its virtual one - __START_KERNEL_map), in
    // two's complement as the kernel keeps it (it may be "negative"), printed as Linux's
    // `%ld` does.
    let phys_base = base
        .text_phys
        .wrapping_sub(base.text_virt.wrapping_sub(START_KERNEL_MAP)) as i64;
    s += &format!("NUMBER(phys_base)={phys_base}\n");
    let l5 = u8::from(base.mode == PagingMode::Long5);
    s += &format!("NUMBER(pgtable_l5_enabled)={l5}\n");
    s += &format!("KERNELOFFSET={:x}\n", base.kaslr_offset);
    s.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vmcoreinfo_text_is_checked() {
        let good = b"OSRELEASE=6.1.0\nPAGESIZE=4096\nKERNELOFFSET=3a000000\n";
        assert!(check_vmcoreinfo(good).is_ok());
        assert!(check_vmcoreinfo(b"OSRELEASE=6.1.0\nPAGESIZE=4096\n").is_err());
        assert!(check_vmcoreinfo(b"OSRELEASE=6\x1b[2J\nPAGESIZE=4096\nKERNELOFFSET=0\n").is_err());
        assert!(check_vmcoreinfo(b"OSRELEASE=6\nnonsense\nPAGESIZE=1\nKERNELOFFSET=0\n").is_err());
    }
}
