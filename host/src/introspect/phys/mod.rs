//! Sources of guest physical memory.
//!
//! Every source implements [`PhysicalMemory`]: reads by guest (pseudo-)physical address.
//! Sources differ in where the bytes come from:
//!
//! - [`raw::RawImage`]: a flat file, byte `n` is physical address `n`;
//! - [`elfcore::ElfCore`]: QEMU `dump-guest-memory` ELF cores (PT_LOAD by `p_paddr`);
//! - [`xencore::XenCore`]: `xl dump-core` files (`.xen_pages` with `.xen_p2m`/`.xen_pfn`);
//! - [`qemu_shm::QemuShm`]: a running QEMU guest's shared RAM backend file;
//! - [`live::LiveFrames`]: any [`crate::frames::FrameMapper`] (live Xen) with a page cache;
//! - [`cached::PageCached`]: a bounded page cache in front of any other source.
//!
//! Guest memory is hostile input: every read is bounds-checked and reports holes as
//! [`MemError::NotPresent`] rather than inventing zeroes.

pub mod cached;
pub mod elfcore;
pub mod live;
pub mod mapped;
pub mod qemu_shm;
pub mod raw;
pub mod segments;
pub mod xencore;

use super::m2p::{MachineToPhys, PhysToMachine};
use crate::frames::{FrameMapper, MapError, Mapping, MAX_FRAMES_PER_MAPPING};
use std::sync::Arc;

/// Size of a page and of the frames sources are organised in.
pub const PAGE_SIZE: u64 = 4096;

/// Why a physical read failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MemError {
    /// The address is beyond the source or in a hole (not backed by any page).
    #[error("physical address {0:#x} is not present in this memory source")]
    NotPresent(u64),
    /// The read would wrap around the address space.
    #[error("read of {len} bytes at {addr:#x} overflows the address space")]
    Overflow {
        /// Start address.
        addr: u64,
        /// Length.
        len: usize,
    },
    /// The underlying file or device failed.
    #[error("I/O error at physical address {addr:#x}: {reason}")]
    Io {
        /// Address being read.
        addr: u64,
        /// OS error text.
        reason: String,
    },
    /// Mapping a live frame failed.
    #[error("mapping frame {frame:#x} failed: {reason}")]
    Map {
        /// The frame.
        frame: u64,
        /// The mapper's error.
        reason: String,
    },
    /// The source could not be opened or parsed.
    #[error("bad memory source: {0}")]
    Format(String),
}

/// What frame numbers in the guest's page tables mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// Guest-physical frames (bare metal, HVM, PVH, QEMU): page tables hold what
    /// [`PhysicalMemory::read`] takes.
    Physical,
    /// Xen PV: page tables hold machine frames (MFNs), translated to guest pseudo-physical
    /// frames through a [`MachineToPhys`] before reading.
    XenPv,
}

/// Registers of one virtual CPU found in a dump (whatever the format records).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VcpuState {
    /// Instruction pointer.
    pub rip: u64,
    /// Stack pointer.
    pub rsp: u64,
    /// CR0.
    pub cr0: u64,
    /// CR3: the page-table root (a machine address for Xen PV guests).
    pub cr3: u64,
    /// CR4 (bit 5 PAE, bit 12 LA57).
    pub cr4: u64,
    /// EFER (bit 10 LMA), when recorded (0 otherwise).
    pub efer: u64,
}

/// A contiguous range of present guest-physical memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    /// First address.
    pub start: u64,
    /// Length in bytes.
    pub len: u64,
}

impl Region {
    /// One past the last address.
    pub fn end(&self) -> u64 {
        self.start.saturating_add(self.len)
    }
}

/// Guest physical memory, read by address.
pub trait PhysicalMemory: Send + Sync {
    /// Fills `buf` with the bytes at `paddr..paddr+buf.len()`. Fails as a whole if any
    /// byte is not present.
    fn read(&self, paddr: u64, buf: &mut [u8]) -> Result<(), MemError>;

    /// One past the highest present address.
    fn max_address(&self) -> u64;

    /// Present ranges, sorted (for scanning). Defaults to one range `0..max_address()`.
    fn regions(&self) -> Vec<Region> {
        vec![Region {
            start: 0,
            len: self.max_address(),
        }]
    }

    /// What page-table entries hold.
    fn frame_kind(&self) -> FrameKind {
        FrameKind::Physical
    }

    /// The machine-to-physical map for Xen PV sources that carry one (dump-core `.xen_p2m`).
    fn machine_to_phys(&self) -> Option<Arc<dyn MachineToPhys>> {
        None
    }

    /// The physical-to-machine map of Xen PV sources that carry one (the other direction
    /// of [`Self::machine_to_phys`]).
    fn phys_to_machine(&self) -> Option<Arc<dyn PhysToMachine>> {
        None
    }

    /// vCPU registers recorded by the source (dumps); empty for live sources.
    fn vcpus(&self) -> Vec<VcpuState> {
        Vec::new()
    }

    /// The kernel's `VMCOREINFO` text when the source carries it (an ELF note). Guest
    /// data: a hint where to look, never trusted for what is found there.
    fn vmcoreinfo(&self) -> Option<Arc<str>> {
        None
    }

    /// Drops cached copies of guest memory (live sources change under us).
    fn flush(&self) {}

    /// Runs `f` on the bytes at `paddr..paddr+len`, in place where the source can (a
    /// mapped dump: scanning without a copy), else on a copy made by [`Self::read`].
    fn with_bytes(&self, paddr: u64, len: usize, f: &mut dyn FnMut(&[u8])) -> Result<(), MemError> {
        let mut buf = vec![0u8; len];
        self.read(paddr, &mut buf)?;
        f(&buf);
        Ok(())
    }
}

/// Little-endian scalar reads on top of [`PhysicalMemory::read`].
pub trait PhysicalMemoryExt: PhysicalMemory {
    /// Reads a little-endian `u64`.
    fn read_u64(&self, paddr: u64) -> Result<u64, MemError> {
        let mut b = [0u8; 8];
        self.read(paddr, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    /// Reads a little-endian `u32`.
    fn read_u32(&self, paddr: u64) -> Result<u32, MemError> {
        let mut b = [0u8; 4];
        self.read(paddr, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }
}

impl<T: PhysicalMemory + ?Sized> PhysicalMemoryExt for T {}

impl<T: PhysicalMemory + ?Sized> PhysicalMemory for Arc<T> {
    fn read(&self, paddr: u64, buf: &mut [u8]) -> Result<(), MemError> {
        (**self).read(paddr, buf)
    }
    fn max_address(&self) -> u64 {
        (**self).max_address()
    }
    fn regions(&self) -> Vec<Region> {
        (**self).regions()
    }
    fn frame_kind(&self) -> FrameKind {
        (**self).frame_kind()
    }
    fn machine_to_phys(&self) -> Option<Arc<dyn MachineToPhys>> {
        (**self).machine_to_phys()
    }
    fn vcpus(&self) -> Vec<VcpuState> {
        (**self).vcpus()
    }
    fn phys_to_machine(&self) -> Option<Arc<dyn PhysToMachine>> {
        (**self).phys_to_machine()
    }
    fn vmcoreinfo(&self) -> Option<Arc<str>> {
        (**self).vmcoreinfo()
    }
    fn flush(&self) {
        (**self).flush()
    }
    fn with_bytes(&self, paddr: u64, len: usize, f: &mut dyn FnMut(&[u8])) -> Result<(), MemError> {
        (**self).with_bytes(paddr, len, f)
    }
}

/// A [`FrameMapper`] over any physical source: frame `n` is the page at `n * PAGE_SIZE`,
/// copied out (dumps and files do not change under the reader). What the marks model
/// needs to open marks found in a dump.
pub struct CopyMapper {
    mem: Arc<dyn PhysicalMemory>,
}

impl CopyMapper {
    /// Maps frames of `mem`.
    pub fn new(mem: Arc<dyn PhysicalMemory>) -> Self {
        CopyMapper { mem }
    }
}

impl FrameMapper for CopyMapper {
    fn map(&self, frames: &[u64]) -> Result<Mapping, MapError> {
        if frames.is_empty() || frames.len() > MAX_FRAMES_PER_MAPPING {
            return Err(MapError::Count(frames.len()));
        }
        let page = PAGE_SIZE as usize;
        let mut out = vec![0u8; frames.len() * page];
        for (chunk, &f) in out.chunks_mut(page).zip(frames) {
            let read = f
                .checked_mul(PAGE_SIZE)
                .ok_or(MemError::Overflow { addr: f, len: page })
                .and_then(|pa| self.mem.read(pa, chunk));
            read.map_err(|e| MapError::Frame {
                frame: f,
                reason: e.to_string(),
            })?;
        }
        Ok(Mapping::copied(out))
    }
}

/// Checks that `addr..addr+len` does not wrap and returns its end.
pub fn checked_end(addr: u64, len: usize) -> Result<u64, MemError> {
    addr.checked_add(len as u64)
        .ok_or(MemError::Overflow { addr, len })
}

/// Memory held in a byte vector: address `n` is byte `n`. For tests, benchmarks and small
/// images already in memory.
#[derive(Debug, Clone, Default)]
pub struct VecMemory {
    bytes: Vec<u8>,
}

impl VecMemory {
    /// Memory made of `bytes`.
    pub fn new(bytes: Vec<u8>) -> Self {
        VecMemory { bytes }
    }

    /// Mutable access (to build synthetic page tables).
    pub fn bytes_mut(&mut self) -> &mut Vec<u8> {
        &mut self.bytes
    }

    /// Writes a little-endian `u64` (growing the buffer if needed). For building fixtures.
    pub fn put_u64(&mut self, addr: u64, v: u64) {
        self.put(addr, &v.to_le_bytes());
    }

    /// Writes a little-endian `u32` (growing the buffer if needed).
    pub fn put_u32(&mut self, addr: u64, v: u32) {
        self.put(addr, &v.to_le_bytes());
    }

    /// Writes bytes (growing the buffer if needed).
    pub fn put(&mut self, addr: u64, data: &[u8]) {
        let a = addr as usize;
        if self.bytes.len() < a + data.len() {
            self.bytes.resize(a + data.len(), 0);
        }
        self.bytes[a..a + data.len()].copy_from_slice(data);
    }
}

impl PhysicalMemory for VecMemory {
    fn read(&self, paddr: u64, buf: &mut [u8]) -> Result<(), MemError> {
        let end = checked_end(paddr, buf.len())?;
        if end > self.bytes.len() as u64 {
            return Err(MemError::NotPresent(paddr.max(self.bytes.len() as u64)));
        }
        buf.copy_from_slice(&self.bytes[paddr as usize..end as usize]);
        Ok(())
    }
    fn max_address(&self) -> u64 {
        self.bytes.len() as u64
    }
}
