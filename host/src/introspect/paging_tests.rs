//! Page-table walks over synthetic page tables for every paging mode.

use super::m2p::{MachineToPhys, P2mTable};
use super::paging::*;
use super::phys::{FrameKind, MemError, PhysicalMemory, VecMemory};
use super::vmem::Translator;
use std::sync::Arc;

const P: u64 = 1;
const RW: u64 = 2;
const US: u64 = 4;
const PS: u64 = 0x80;
const NX: u64 = 1 << 63;

/// Builds 8-byte-entry page tables in a VecMemory; table pages are handed out from 1 MiB.
struct Builder {
    mem: VecMemory,
    next: u64,
    /// Added to physical frames written into entries (Xen PV: mfn = pfn + delta).
    mfn_delta: u64,
}

impl Builder {
    fn new(mfn_delta: u64) -> Self {
        Builder {
            mem: VecMemory::new(vec![0; 8 << 20]),
            next: 0x10_0000,
            mfn_delta,
        }
    }
    fn table(&mut self) -> u64 {
        let t = self.next;
        self.next += 4096;
        t
    }
    fn entry_addr(&self, phys: u64) -> u64 {
        phys + (self.mfn_delta << 12)
    }
    fn get(&self, addr: u64) -> u64 {
        let mut b = [0u8; 8];
        self.mem.read(addr, &mut b).unwrap();
        u64::from_le_bytes(b)
    }
    /// Maps `va` with a long-mode walk of `levels` levels down to `leaf_level`.
    fn map_long(&mut self, root: u64, levels: u8, va: u64, pa: u64, leaf_level: u8, flags: u64) {
        let mut table = root;
        for level in (leaf_level + 1..=levels).rev() {
            let shift = 12 + 9 * u32::from(level - 1);
            let slot = table + ((va >> shift) & 0x1ff) * 8;
            let e = self.get(slot);
            table = if e & P != 0 {
                (e & 0x000f_ffff_ffff_f000) - (self.mfn_delta << 12)
            } else {
                let t = self.table();
                self.mem.put_u64(slot, self.entry_addr(t) | P | RW | US);
                t
            };
        }
        let shift = 12 + 9 * u32::from(leaf_level - 1);
        let ps = if leaf_level > 1 { PS } else { 0 };
        self.mem.put_u64(
            table + ((va >> shift) & 0x1ff) * 8,
            self.entry_addr(pa) | flags | ps | P,
        );
    }
}

fn translator(mem: VecMemory, mode: PagingMode) -> Translator {
    Translator::new(Arc::new(mem), mode)
}

#[test]
fn long4_small_large_huge_pages_and_rights() {
    let mut b = Builder::new(0);
    let root = b.table();
    let va4k = 0xffff_8880_0012_3456u64;
    b.map_long(root, 4, va4k, 0x5000, 1, RW | US | NX);
    let va2m = 0x0000_7f00_0040_0000u64;
    b.map_long(root, 4, va2m, 0x60_0000, 2, RW | US);
    let va1g = 0xffff_ffff_8000_0000u64;
    b.map_long(root, 4, va1g, 0x4000_0000, 3, 0);
    let t = translator(b.mem, PagingMode::Long4);
    let cr3 = root | 0x18; // PCD/PWT bits must be ignored

    let r = t.translate_uncached(cr3, va4k).unwrap();
    assert_eq!(r.paddr, 0x5456);
    assert_eq!(r.page_size, 4096);
    assert!(r.writable && !r.executable && r.user);

    let r = t.translate_uncached(cr3, va2m + 0x1_2345).unwrap();
    assert_eq!(r.paddr, 0x61_2345);
    assert_eq!(r.page_size, 2 << 20);
    assert!(r.executable && r.user);

    let r = t.translate_uncached(cr3, va1g + 0x1234_5678).unwrap();
    assert_eq!(r.paddr, 0x5234_5678);
    assert_eq!(r.page_size, 1 << 30);
    assert!(!r.writable);

    // Non-present at the top level, at the PT level, and a non-canonical address.
    assert!(matches!(
        t.translate_uncached(cr3, 0x0000_1000_0000_0000),
        Err(TranslateError::NotPresent { level: 4, .. })
    ));
    assert!(matches!(
        t.translate_uncached(cr3, va4k + 0x1000),
        Err(TranslateError::NotPresent { level: 1, .. })
    ));
    assert!(matches!(
        t.translate_uncached(cr3, 0x0000_8000_0000_0000),
        Err(TranslateError::BadAddress(_))
    ));
}

#[test]
fn long5_walks_five_levels() {
    let mut b = Builder::new(0);
    let root = b.table();
    let va = 0xff11_2233_4455_6000u64; // canonical for 57 bits
    b.map_long(root, 5, va, 0x7000, 1, RW);
    let va2m = 0x00ff_0000_0020_0000u64;
    b.map_long(root, 5, va2m, 0x80_0000, 2, 0);
    let t = translator(b.mem, PagingMode::Long5);
    assert_eq!(t.translate_uncached(root, va + 0x10).unwrap().paddr, 0x7010);
    assert_eq!(
        t.translate_uncached(root, va2m + 5).unwrap().paddr,
        0x80_0005
    );
    assert!(!PagingMode::Long4.is_valid_address(va));
    assert!(matches!(
        t.translate_uncached(root, 0x0100_0000_0000_0000),
        Err(TranslateError::BadAddress(_))
    ));
}

#[test]
fn pae_4k_and_2m_pages() {
    let mut mem = VecMemory::new(vec![0; 4 << 20]);
    let pdpt = 0x1000_u64 + 0x20; // 32-byte aligned, not page aligned
    let pd = 0x2000;
    let pt = 0x3000;
    mem.put_u64(pdpt + 3 * 8, pd | P);
    mem.put_u64(pd, pt | P | RW);
    mem.put_u64(pt + 5 * 8, 0x9000 | P | NX);
    // va 0xc020_0000: PDPT 3, PD index 1: a 2 MiB page at 0x20_0000.
    mem.put_u64(pd + 8, 0x20_0000 | P | PS | RW);
    let t = translator(mem, PagingMode::Pae);
    let r = t.translate_uncached(pdpt, 0xc000_5abc).unwrap();
    assert_eq!(r.paddr, 0x9abc);
    assert!(!r.executable && !r.writable);
    let r = t.translate_uncached(pdpt, 0xc021_0000).unwrap();
    assert_eq!((r.paddr, r.page_size), (0x21_0000, 2 << 20));
    assert!(matches!(
        t.translate_uncached(pdpt, 0x4000_0000),
        Err(TranslateError::NotPresent { level: 3, .. })
    ));
    assert!(matches!(
        t.translate_uncached(pdpt, 1 << 32),
        Err(TranslateError::BadAddress(_))
    ));
}

#[test]
fn legacy32_4k_and_4m_pages_with_pse36() {
    let mut mem = VecMemory::new(vec![0; 1 << 20]);
    let pd = 0x1000u64;
    let pt = 0x2000u64;
    mem.put_u32(pd + 0x300 * 4, (pt | P | RW) as u32); // va 0xc000_0000
    mem.put_u32(pt + 2 * 4, (0x7000 | P) as u32);
    // va 0x0040_0000 (PDE 1): 4 MiB page at physical 0x3_0080_0000 (PSE-36 bits 32..39 = 3).
    mem.put_u32(pd + 4, (0x0080_0000 | (3 << 13) | PS | P | US) as u32);
    let t = translator(mem, PagingMode::Legacy32);
    assert_eq!(t.translate_uncached(pd, 0xc000_2123).unwrap().paddr, 0x7123);
    let r = t.translate_uncached(pd, 0x0041_2345).unwrap();
    assert_eq!((r.paddr, r.page_size), (0x3_0081_2345, 4 << 20));
    assert!(r.user && r.executable);
    assert!(matches!(
        t.translate_uncached(pd, 0x0080_0000),
        Err(TranslateError::NotPresent { level: 2, .. })
    ));
}

/// A PV guest's memory: indexed by PFN, page tables hold MFN = PFN + 0x1000.
struct PvMem {
    mem: VecMemory,
    m2p: Arc<P2mTable>,
}

impl PhysicalMemory for PvMem {
    fn read(&self, paddr: u64, buf: &mut [u8]) -> Result<(), MemError> {
        self.mem.read(paddr, buf)
    }
    fn max_address(&self) -> u64 {
        self.mem.max_address()
    }
    fn frame_kind(&self) -> FrameKind {
        FrameKind::XenPv
    }
    fn machine_to_phys(&self) -> Option<Arc<dyn MachineToPhys>> {
        Some(self.m2p.clone())
    }
}

#[test]
fn xen_pv_entries_hold_machine_frames() {
    const DELTA: u64 = 0x1000;
    let mut b = Builder::new(DELTA);
    let root = b.table();
    let va = 0xffff_8880_0000_1000u64;
    b.map_long(root, 4, va, 0x5000, 1, RW);
    // A 2 MiB machine-contiguous page whose frames are scattered pseudo-physically.
    let va2m = 0xffff_c900_0000_0000u64;
    b.map_long(root, 4, va2m, 0x20_0000, 2, RW);
    let frames = (b.mem.max_address() / 4096) as usize;
    let mut pairs: Vec<(u64, u64)> = (0..frames as u64).map(|p| (p, p + DELTA)).collect();
    // Machine frame 0x200+DELTA+3 (4th frame of the large page) is pfn 0x10 instead.
    pairs.retain(|&(p, _)| p != 0x203);
    pairs.push((0x10, 0x203 + DELTA));
    pairs.retain(|&(p, m)| !(p == 0x10 && m == 0x10 + DELTA));
    let m2p = Arc::new(P2mTable::from_pairs(pairs));
    let mem = Arc::new(PvMem { mem: b.mem, m2p });
    let t = Translator::new(mem, PagingMode::Long4);
    let cr3 = (root / 4096 + DELTA) * 4096; // machine address of the root
    let r = t.translate_uncached(cr3, va + 0x42).unwrap();
    assert_eq!(r.paddr, 0x5042);
    assert_eq!(
        t.translate_uncached(cr3, va2m + 0x1234).unwrap().paddr,
        0x20_1234
    );
    let r = t.translate_uncached(cr3, va2m + 0x3123).unwrap();
    assert_eq!((r.paddr, r.page_size), (0x10_123, 4096));
    // The pseudo-physical root is not a machine frame the guest owns.
    assert!(matches!(
        t.translate_uncached(0x7fff_f000, va),
        Err(TranslateError::UnknownMachineFrame(_))
    ));
}

#[test]
fn hostile_tables_terminate_without_panicking() {
    // A PML4 whose every entry points at itself (recursive mapping) and entries with all
    // bits set: walks end after at most 4 levels with an answer or an error.
    let mut mem = VecMemory::new(vec![0; 2 << 20]);
    let root = 0x1000u64;
    for i in 0..512 {
        mem.put_u64(root + i * 8, root | P | RW);
    }
    mem.put_u64(root + 8, u64::MAX);
    let t = translator(mem, PagingMode::Long4);
    for va in [
        0u64,
        0x1234_5678,
        0x0000_7fff_ffff_f000,
        0xffff_ffff_ffff_f000,
    ] {
        let _ = t.translate_uncached(root, va);
    }
    // Self-map: va with all indices 0 resolves to the root page itself.
    assert_eq!(t.translate_uncached(root, 0x10).unwrap().paddr, root + 0x10);
    // Entry 1 is all ones: PS at level 4 is reserved.
    assert!(matches!(
        t.translate_uncached(root, 1 << 39),
        Err(TranslateError::Reserved { level: 4, .. })
    ));
    // A table beyond memory is a memory error, not a panic.
    let mut mem = VecMemory::new(vec![0; 8192]);
    mem.put_u64(0, 0x000f_ffff_ffff_f000 | P);
    let t = translator(mem, PagingMode::Long4);
    assert!(matches!(
        t.translate_uncached(0, 0),
        Err(TranslateError::Memory(MemError::NotPresent(_)))
    ));
}

/// Memory the test can change after handing it to a translator.
#[derive(Clone)]
struct SharedMem(Arc<std::sync::RwLock<VecMemory>>);

impl PhysicalMemory for SharedMem {
    fn read(&self, paddr: u64, buf: &mut [u8]) -> Result<(), MemError> {
        self.0.read().unwrap().read(paddr, buf)
    }
    fn max_address(&self) -> u64 {
        self.0.read().unwrap().max_address()
    }
}

#[test]
fn translation_cache_is_bounded_and_flushable() {
    let mut b = Builder::new(0);
    let root = b.table();
    for i in 0..64u64 {
        b.map_long(root, 4, 0x40_0000 + i * 4096, 0x20_0000 + i * 4096, 1, RW);
    }
    let pdpt = b.get(root) & !0xfff;
    let pd = b.get(pdpt) & !0xfff;
    let pt = b.get(pd + 2 * 8) & !0xfff;
    let mut mem = b.mem;
    mem.put(0x20_0ffe, &[1, 2, 3, 4]);
    let shared = SharedMem(Arc::new(std::sync::RwLock::new(mem)));
    let t = Translator::new(Arc::new(shared.clone()), PagingMode::Long4).with_tlb_entries(16);
    for i in 0..64u64 {
        let va = 0x40_0000 + i * 4096 + 8;
        assert_eq!(t.translate(root, va).unwrap(), 0x20_0008 + i * 4096);
        assert_eq!(
            t.translate(root, va).unwrap(),
            t.translate_uncached(root, va).unwrap().paddr
        );
    }
    assert_eq!(t.tlb_stats(), (64, 64));
    // Reads cross pages.
    let mut buf = [0u8; 4];
    t.read(root, 0x40_0ffe, &mut buf).unwrap();
    assert_eq!(buf, [1, 2, 3, 4]);
    // A cached translation outlives a page-table change until flush().
    assert_eq!(t.translate(root, 0x40_0000).unwrap(), 0x20_0000);
    shared.0.write().unwrap().put_u64(pt, 0x30_0000 | P);
    assert_eq!(t.translate(root, 0x40_0000).unwrap(), 0x20_0000);
    t.flush();
    assert_eq!(t.translate(root, 0x40_0000).unwrap(), 0x30_0000);
}

/// An M2P that maps every machine frame to a frame number no address can hold.
struct WildM2p;

impl MachineToPhys for WildM2p {
    fn m2p(&self, _mfn: u64) -> Option<u64> {
        Some(u64::MAX >> 4)
    }
}

#[test]
fn frames_past_the_address_space_are_an_error_not_a_wrapped_address() {
    // Xen PV: the M2P names a frame whose address overflows (frame * 4096).
    let mem = VecMemory::new(vec![0; 8192]);
    let walk = walk(
        &mem,
        PagingMode::Long4,
        FrameMap::xen_pv(&WildM2p),
        0x1000,
        0xffff_8880_0000_0000,
    );
    assert!(
        matches!(walk, Err(TranslateError::Overflow { .. })),
        "{walk:?}"
    );
    // A read whose range wraps around the top of the address space.
    let t = translator(VecMemory::new(vec![0; 8192]), PagingMode::Long4);
    assert!(matches!(
        t.read(0x1000, u64::MAX - 1, &mut [0u8; 4]),
        Err(TranslateError::Overflow { .. })
    ));
}
