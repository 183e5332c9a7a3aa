//! Virtual memory: page-table walks with a bounded translation cache, and reads by
//! virtual address that cross page boundaries.

use super::cache::ClockCache;
use super::m2p::MachineToPhys;
use super::paging::{walk, FrameMap, PagingMode, TranslateError, Translation};
use super::phys::{checked_end, FrameKind, MemError, PhysicalMemory, Region, PAGE_SIZE};
use std::sync::{Arc, Mutex};

/// Default number of cached translations.
pub const DEFAULT_TLB_ENTRIES: usize = 8192;

/// Most bytes [`Translator::read_cstring`] reads
/// ([`vmark_proto::limits::VMEM_MAX_CSTRING`]).
pub const MAX_CSTRING: usize = vmark_proto::limits::VMEM_MAX_CSTRING;

/// Translates and reads virtual addresses of any address space (page-table root) of one
/// guest. Translations are cached per (root, virtual page) in a fixed-size clock cache;
/// call [`Translator::flush`] when the guest may have changed its page tables.
pub struct Translator {
    mem: Arc<dyn PhysicalMemory>,
    mode: PagingMode,
    m2p: Option<Arc<dyn MachineToPhys>>,
    tlb: Mutex<ClockCache<(u64, u64), u64>>,
}

impl std::fmt::Debug for Translator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Translator")
            .field("mode", &self.mode)
            .field("xen_pv", &self.m2p.is_some())
            .finish()
    }
}

impl Translator {
    /// A translator over `mem` in `mode`. Xen PV sources (see
    /// [`PhysicalMemory::frame_kind`]) bring their own M2P; without one, PV walks fail with
    /// [`TranslateError::UnknownMachineFrame`] until [`Translator::with_m2p`] provides it.
    pub fn new(mem: Arc<dyn PhysicalMemory>, mode: PagingMode) -> Self {
        Translator::new_with_tlb(mem, mode, DEFAULT_TLB_ENTRIES)
    }

    /// A translator for walks only ([`Translator::translate_uncached`]): its cache has one
    /// entry, so making one for a probe costs no allocation to speak of.
    pub fn uncached(mem: Arc<dyn PhysicalMemory>, mode: PagingMode) -> Self {
        Translator::new_with_tlb(mem, mode, 1)
    }

    fn new_with_tlb(mem: Arc<dyn PhysicalMemory>, mode: PagingMode, entries: usize) -> Self {
        let m2p = match mem.frame_kind() {
            FrameKind::XenPv => mem.machine_to_phys(),
            FrameKind::Physical => None,
        };
        Translator {
            mem,
            mode,
            m2p,
            tlb: Mutex::new(ClockCache::new(entries)),
        }
    }

    /// Uses `m2p` to translate page-table frames (Xen PV).
    pub fn with_m2p(mut self, m2p: Arc<dyn MachineToPhys>) -> Self {
        self.m2p = Some(m2p);
        self
    }

    /// Sets the translation cache's capacity (drops its contents).
    pub fn with_tlb_entries(self, entries: usize) -> Self {
        Translator {
            tlb: Mutex::new(ClockCache::new(entries)),
            ..self
        }
    }

    /// The physical memory underneath.
    pub fn memory(&self) -> &Arc<dyn PhysicalMemory> {
        &self.mem
    }

    /// The paging mode.
    pub fn mode(&self) -> PagingMode {
        self.mode
    }

    fn frames(&self) -> FrameMap<'_> {
        match &self.m2p {
            Some(m) => FrameMap::xen_pv(m.as_ref()),
            None if self.mem.frame_kind() == FrameKind::XenPv => FrameMap::xen_pv(&NoMachineFrames),
            None => FrameMap::identity(),
        }
    }

    /// Walks the tables without the cache.
    pub fn translate_uncached(&self, root: u64, vaddr: u64) -> Result<Translation, TranslateError> {
        walk(self.mem.as_ref(), self.mode, self.frames(), root, vaddr)
    }

    /// Physical address of `vaddr` in the address space rooted at `root` (cached).
    pub fn translate(&self, root: u64, vaddr: u64) -> Result<u64, TranslateError> {
        let vpage = vaddr / PAGE_SIZE;
        if let Ok(mut tlb) = self.tlb.lock() {
            if let Some(&page) = tlb.get(&(root, vpage)) {
                // page is 4 KiB aligned (made so on insert): the sum cannot overflow.
                return Ok(page | (vaddr % PAGE_SIZE));
            }
        }
        let t = self.translate_uncached(root, vaddr)?;
        let page = t.paddr & !(PAGE_SIZE - 1);
        if let Ok(mut tlb) = self.tlb.lock() {
            tlb.insert((root, vpage), page);
        }
        Ok(t.paddr)
    }

    /// Drops cached translations and the source's cached pages.
    pub fn flush(&self) {
        if let Ok(mut tlb) = self.tlb.lock() {
            tlb.clear();
        }
        self.mem.flush();
    }

    /// (hits, misses) of the translation cache.
    pub fn tlb_stats(&self) -> (u64, u64) {
        self.tlb.lock().map(|t| t.stats()).unwrap_or_default()
    }

    /// Reads `buf.len()` bytes at `vaddr`, page by page. A range that wraps around the
    /// address space is an error, not a read of address 0.
    pub fn read(&self, root: u64, vaddr: u64, buf: &mut [u8]) -> Result<(), TranslateError> {
        if vaddr.checked_add(buf.len() as u64).is_none() {
            return Err(TranslateError::Overflow {
                vaddr,
                len: buf.len() as u64,
            });
        }
        let mut done = 0usize;
        while done < buf.len() {
            let va = vaddr + done as u64;
            let n = (buf.len() - done).min((PAGE_SIZE - va % PAGE_SIZE) as usize);
            let pa = self.translate(root, va)?;
            self.mem.read(pa, &mut buf[done..done + n])?;
            done += n;
        }
        Ok(())
    }

    /// Reads a little-endian `u64`.
    pub fn read_u64(&self, root: u64, vaddr: u64) -> Result<u64, TranslateError> {
        let mut b = [0u8; 8];
        self.read(root, vaddr, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Reads a little-endian `u32`.
    pub fn read_u32(&self, root: u64, vaddr: u64) -> Result<u32, TranslateError> {
        let mut b = [0u8; 4];
        self.read(root, vaddr, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    /// Reads a NUL-terminated string of at most `max` (≤ [`MAX_CSTRING`]) bytes; invalid
    /// UTF-8 is replaced.
    pub fn read_cstring(
        &self,
        root: u64,
        vaddr: u64,
        max: usize,
    ) -> Result<String, TranslateError> {
        let max = max.min(MAX_CSTRING);
        let mut out = Vec::new();
        let mut va = vaddr;
        while out.len() < max {
            let n = (max - out.len()).min((PAGE_SIZE - va % PAGE_SIZE) as usize);
            let mut chunk = vec![0u8; n];
            self.read(root, va, &mut chunk)?;
            if let Some(z) = chunk.iter().position(|&b| b == 0) {
                out.extend_from_slice(&chunk[..z]);
                break;
            }
            out.extend_from_slice(&chunk);
            va = va.checked_add(n as u64).ok_or(TranslateError::Overflow {
                vaddr,
                len: out.len() as u64,
            })?;
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    /// The address space rooted at `root`.
    pub fn space(self: &Arc<Self>, root: u64) -> AddressSpace {
        AddressSpace {
            translator: self.clone(),
            root,
        }
    }
}

struct NoMachineFrames;

impl MachineToPhys for NoMachineFrames {
    fn m2p(&self, _mfn: u64) -> Option<u64> {
        None
    }
}

/// One address space: a translator and a page-table root (CR3).
#[derive(Debug, Clone)]
pub struct AddressSpace {
    translator: Arc<Translator>,
    root: u64,
}

impl AddressSpace {
    /// The page-table root.
    pub fn root(&self) -> u64 {
        self.root
    }
    /// The translator.
    pub fn translator(&self) -> &Arc<Translator> {
        &self.translator
    }
    /// See [`Translator::translate`].
    pub fn translate(&self, vaddr: u64) -> Result<u64, TranslateError> {
        self.translator.translate(self.root, vaddr)
    }
    /// See [`Translator::read`].
    pub fn read(&self, vaddr: u64, buf: &mut [u8]) -> Result<(), TranslateError> {
        self.translator.read(self.root, vaddr, buf)
    }
    /// See [`Translator::read_u64`].
    pub fn read_u64(&self, vaddr: u64) -> Result<u64, TranslateError> {
        self.translator.read_u64(self.root, vaddr)
    }
    /// See [`Translator::read_u32`].
    pub fn read_u32(&self, vaddr: u64) -> Result<u32, TranslateError> {
        self.translator.read_u32(self.root, vaddr)
    }
    /// See [`Translator::read_cstring`].
    pub fn read_cstring(&self, vaddr: u64, max: usize) -> Result<String, TranslateError> {
        self.translator.read_cstring(self.root, vaddr, max)
    }
}

/// A window of virtual addresses seen as physical memory: address `n` of the window is
/// virtual address `base + n` of an address space. Lets physical-memory scanners (such as
/// [`super::kallsyms::find`]) search a virtual range; its regions are the mapped pages.
#[derive(Debug, Clone)]
pub struct VirtualWindow {
    space: AddressSpace,
    base: u64,
    len: u64,
}

impl VirtualWindow {
    /// The `len` bytes of `space` from `base`.
    pub fn new(space: AddressSpace, base: u64, len: u64) -> Self {
        VirtualWindow { space, base, len }
    }
}

impl PhysicalMemory for VirtualWindow {
    fn read(&self, paddr: u64, buf: &mut [u8]) -> Result<(), MemError> {
        let end = checked_end(paddr, buf.len())?;
        if end > self.len {
            return Err(MemError::NotPresent(paddr.max(self.len)));
        }
        let va = self.base.checked_add(paddr).ok_or(MemError::Overflow {
            addr: paddr,
            len: buf.len(),
        })?;
        self.space.read(va, buf).map_err(|e| match e {
            TranslateError::Memory(m) => m,
            _ => MemError::NotPresent(paddr),
        })
    }
    fn max_address(&self) -> u64 {
        self.len
    }
    /// The mapped pages, merged into runs (one translation per page).
    fn regions(&self) -> Vec<Region> {
        let mut out: Vec<Region> = Vec::new();
        let mut off = 0u64;
        while off < self.len {
            let Some(va) = self.base.checked_add(off) else {
                break;
            };
            if self.space.translate(va).is_ok() {
                match out.last_mut() {
                    Some(r) if r.end() == off => r.len += PAGE_SIZE,
                    _ => out.push(Region {
                        start: off,
                        len: PAGE_SIZE,
                    }),
                }
            }
            off += PAGE_SIZE;
        }
        out
    }
}
