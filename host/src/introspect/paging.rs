//! x86 page-table walks: 32-bit (with 4 MiB pages), PAE, 4-level and 5-level long mode
//! (with 2 MiB and 1 GiB pages), and Xen PV, where entries hold machine frames.
//!
//! A walk reads at most one entry per level (at most five reads), so a hostile page table
//! can neither make it loop nor allocate: it is a straight line of bounded length. Frames
//! named by entries are checked by the memory source on read.

use super::m2p::MachineToPhys;
use super::phys::{MemError, PhysicalMemory, PAGE_SIZE};

/// Paging mode, as selected by CR0.PG, CR4.PAE, EFER.LMA and CR4.LA57.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PagingMode {
    /// 32-bit paging: two levels of 4-byte entries, 4 MiB pages (PSE, with PSE-36 bits).
    Legacy32,
    /// PAE: 4-entry PDPT, then two levels of 8-byte entries, 2 MiB pages.
    Pae,
    /// x86-64 4-level paging (48-bit addresses): 2 MiB and 1 GiB pages.
    Long4,
    /// x86-64 5-level paging (57-bit addresses, LA57).
    Long5,
}

const CR4_PAE: u64 = 1 << 5;
const CR4_LA57: u64 = 1 << 12;
const EFER_LMA: u64 = 1 << 10;

impl PagingMode {
    /// The mode selected by CR4 and EFER (CR0.PG assumed set). Without EFER (0), PAE with
    /// CR4.PAE set is ambiguous with long mode; `long_mode_hint` decides.
    pub fn from_registers(cr4: u64, efer: u64, long_mode_hint: bool) -> Self {
        let long = efer & EFER_LMA != 0 || (efer == 0 && long_mode_hint);
        match (long, cr4 & CR4_PAE != 0, cr4 & CR4_LA57 != 0) {
            (true, _, true) => PagingMode::Long5,
            (true, _, false) => PagingMode::Long4,
            (false, true, _) => PagingMode::Pae,
            (false, false, _) => PagingMode::Legacy32,
        }
    }

    /// Whether `vaddr` is a valid linear address in this mode (canonical in long mode,
    /// below 4 GiB otherwise).
    pub fn is_valid_address(self, vaddr: u64) -> bool {
        let bits = match self {
            PagingMode::Legacy32 | PagingMode::Pae => return vaddr <= u32::MAX as u64,
            PagingMode::Long4 => 48,
            PagingMode::Long5 => 57,
        };
        let sign = (vaddr as i64) >> (bits - 1);
        sign == 0 || sign == -1
    }
}

/// Why a virtual address did not translate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TranslateError {
    /// Not a valid linear address in this paging mode.
    #[error("{0:#x} is not a canonical address in this paging mode")]
    BadAddress(u64),
    /// An entry on the way is not present.
    #[error("{vaddr:#x} is not mapped (entry not present at level {level})")]
    NotPresent {
        /// The address.
        vaddr: u64,
        /// Paging level of the non-present entry (1 = page table).
        level: u8,
    },
    /// An entry sets a bit that must be zero at its level (PS in a PML4E/PML5E).
    #[error("{vaddr:#x}: reserved bit set in the level {level} entry {entry:#x}")]
    Reserved {
        /// The address.
        vaddr: u64,
        /// Level.
        level: u8,
        /// The entry.
        entry: u64,
    },
    /// An address range wraps around the address space, or a frame number read from the
    /// tables (or the M2P) names no representable address.
    #[error("{vaddr:#x} (+{len:#x}): address arithmetic overflows")]
    Overflow {
        /// The address.
        vaddr: u64,
        /// Bytes from it.
        len: u64,
    },
    /// Xen PV: an entry names a machine frame the guest does not own.
    #[error("machine frame {0:#x} is not in the guest's M2P")]
    UnknownMachineFrame(u64),
    /// Reading a table or the data failed.
    #[error(transparent)]
    Memory(#[from] MemError),
}

/// A successful translation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Translation {
    /// The physical address `vaddr` maps to.
    pub paddr: u64,
    /// Size of the mapping page (4 KiB, 2 MiB, 1 GiB or 4 MiB). For Xen PV large pages
    /// this is 4 KiB: contiguous machine frames need not be contiguous pseudo-physically.
    pub page_size: u64,
    /// Writable at every level.
    pub writable: bool,
    /// User-accessible at every level.
    pub user: bool,
    /// Executable (no NX bit on the way).
    pub executable: bool,
}

const P: u64 = 1 << 0;
const RW: u64 = 1 << 1;
const US: u64 = 1 << 2;
const PS: u64 = 1 << 7;
const NX: u64 = 1 << 63;
/// Physical address bits 12..51 of a 64-bit entry.
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

/// Converts frame numbers read from page tables into pseudo-physical frame numbers.
#[derive(Clone, Copy)]
pub struct FrameMap<'a> {
    m2p: Option<&'a dyn MachineToPhys>,
}

impl<'a> FrameMap<'a> {
    /// Frames are physical (no translation).
    pub fn identity() -> Self {
        FrameMap { m2p: None }
    }
    /// Frames are machine frames translated by `m2p` (Xen PV).
    pub fn xen_pv(m2p: &'a dyn MachineToPhys) -> Self {
        FrameMap { m2p: Some(m2p) }
    }
    /// Whether frames are machine frames.
    pub fn is_pv(&self) -> bool {
        self.m2p.is_some()
    }
    fn frame(&self, frame: u64) -> Result<u64, TranslateError> {
        match self.m2p {
            None => Ok(frame),
            Some(m) => m
                .m2p(frame)
                .ok_or(TranslateError::UnknownMachineFrame(frame)),
        }
    }
    /// Physical address of an address named in a page-table entry or CR3.
    fn addr(&self, addr: u64) -> Result<u64, TranslateError> {
        frame_addr(self.frame(addr / PAGE_SIZE)?, addr % PAGE_SIZE)
    }
}

/// `frame * PAGE_SIZE + offset`, checked: an M2P (or a guest value) may name any frame.
fn frame_addr(frame: u64, offset: u64) -> Result<u64, TranslateError> {
    frame
        .checked_mul(PAGE_SIZE)
        .and_then(|a| a.checked_add(offset))
        .ok_or(TranslateError::Overflow {
            vaddr: frame,
            len: offset,
        })
}

/// `table + index * entry_size`, checked.
fn entry_addr(table: u64, index: u64, entry_size: u64) -> Result<u64, TranslateError> {
    index
        .checked_mul(entry_size)
        .and_then(|o| table.checked_add(o))
        .ok_or(TranslateError::Overflow {
            vaddr: table,
            len: index,
        })
}

fn read_entry(mem: &dyn PhysicalMemory, addr: u64, wide: bool) -> Result<u64, MemError> {
    if wide {
        let mut b = [0u8; 8];
        mem.read(addr, &mut b)?;
        Ok(u64::from_le_bytes(b))
    } else {
        let mut b = [0u8; 4];
        mem.read(addr, &mut b)?;
        Ok(u64::from(u32::from_le_bytes(b)))
    }
}

struct Rights {
    writable: bool,
    user: bool,
    executable: bool,
}

impl Rights {
    fn new() -> Self {
        Rights {
            writable: true,
            user: true,
            executable: true,
        }
    }
    fn apply(&mut self, e: u64, has_nx: bool) {
        self.writable &= e & RW != 0;
        self.user &= e & US != 0;
        if has_nx {
            self.executable &= e & NX == 0;
        }
    }
}

/// Finishes a translation at a leaf entry mapping a page of `size` bytes at `base`.
fn leaf(
    frames: FrameMap<'_>,
    base: u64,
    size: u64,
    vaddr: u64,
    rights: Rights,
) -> Result<Translation, TranslateError> {
    let offset = vaddr & (size - 1);
    let (paddr, page_size) = if frames.is_pv() {
        // Translate the one 4 KiB machine frame holding vaddr.
        let mfn = base / PAGE_SIZE + offset / PAGE_SIZE;
        (
            frame_addr(frames.frame(mfn)?, vaddr % PAGE_SIZE)?,
            PAGE_SIZE,
        )
    } else {
        let paddr = base.checked_add(offset).ok_or(TranslateError::Overflow {
            vaddr: base,
            len: offset,
        })?;
        (paddr, size)
    };
    Ok(Translation {
        paddr,
        page_size,
        writable: rights.writable,
        user: rights.user,
        executable: rights.executable,
    })
}

/// Walks the page tables rooted at `cr3` for `vaddr`.
///
/// `cr3` is the register value (low flag/PCID bits are ignored; for Xen PV it holds a
/// machine address). No caching: see [`super::vmem::Translator`] for that.
pub fn walk(
    mem: &dyn PhysicalMemory,
    mode: PagingMode,
    frames: FrameMap<'_>,
    cr3: u64,
    vaddr: u64,
) -> Result<Translation, TranslateError> {
    if !mode.is_valid_address(vaddr) {
        return Err(TranslateError::BadAddress(vaddr));
    }
    let mut rights = Rights::new();
    match mode {
        PagingMode::Long4 | PagingMode::Long5 => {
            let levels: u8 = if mode == PagingMode::Long5 { 5 } else { 4 };
            let mut table = frames.addr(cr3 & ADDR_MASK)?;
            for level in (1..=levels).rev() {
                let shift = 12 + 9 * u32::from(level - 1);
                let index = (vaddr >> shift) & 0x1ff;
                let e = read_entry(mem, entry_addr(table, index, 8)?, true)?;
                if e & P == 0 {
                    return Err(TranslateError::NotPresent { vaddr, level });
                }
                rights.apply(e, true);
                if level == 1 {
                    return leaf(frames, e & ADDR_MASK, PAGE_SIZE, vaddr, rights);
                }
                if e & PS != 0 {
                    if level > 3 {
                        return Err(TranslateError::Reserved {
                            vaddr,
                            level,
                            entry: e,
                        });
                    }
                    let size = 1u64 << shift;
                    return leaf(frames, e & ADDR_MASK & !(size - 1), size, vaddr, rights);
                }
                table = frames.addr(e & ADDR_MASK)?;
            }
            unreachable!("the loop returns at level 1")
        }
        PagingMode::Pae => {
            let pdpt = frames.addr(cr3 & 0xffff_ffe0)?;
            let e = read_entry(mem, entry_addr(pdpt, (vaddr >> 30) & 3, 8)?, true)?;
            if e & P == 0 {
                return Err(TranslateError::NotPresent { vaddr, level: 3 });
            }
            // PDPTEs carry no access rights in PAE mode.
            let pd = frames.addr(e & ADDR_MASK)?;
            let e = read_entry(mem, entry_addr(pd, (vaddr >> 21) & 0x1ff, 8)?, true)?;
            if e & P == 0 {
                return Err(TranslateError::NotPresent { vaddr, level: 2 });
            }
            rights.apply(e, true);
            if e & PS != 0 {
                let size = 1 << 21;
                return leaf(frames, e & ADDR_MASK & !(size - 1), size, vaddr, rights);
            }
            let pt = frames.addr(e & ADDR_MASK)?;
            let e = read_entry(mem, entry_addr(pt, (vaddr >> 12) & 0x1ff, 8)?, true)?;
            if e & P == 0 {
                return Err(TranslateError::NotPresent { vaddr, level: 1 });
            }
            rights.apply(e, true);
            leaf(frames, e & ADDR_MASK, PAGE_SIZE, vaddr, rights)
        }
        PagingMode::Legacy32 => {
            let pd = frames.addr(cr3 & 0xffff_f000)?;
            let e = read_entry(mem, entry_addr(pd, (vaddr >> 22) & 0x3ff, 4)?, false)?;
            if e & P == 0 {
                return Err(TranslateError::NotPresent { vaddr, level: 2 });
            }
            rights.apply(e, false);
            if e & PS != 0 {
                // PSE-36: bits 13..20 of the PDE are physical address bits 32..39.
                let base = (e & 0xffc0_0000) | (((e >> 13) & 0xff) << 32);
                return leaf(frames, base, 1 << 22, vaddr, rights);
            }
            let pt = frames.addr(e & 0xffff_f000)?;
            let e = read_entry(mem, entry_addr(pt, (vaddr >> 12) & 0x3ff, 4)?, false)?;
            if e & P == 0 {
                return Err(TranslateError::NotPresent { vaddr, level: 1 });
            }
            rights.apply(e, false);
            leaf(frames, e & 0xffff_f000, PAGE_SIZE, vaddr, rights)
        }
    }
}
