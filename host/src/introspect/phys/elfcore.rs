//! ELF core dumps with physical addresses: QEMU `dump-guest-memory` (and `virsh dump
//! --memory-only`, which uses it).
//!
//! Memory is the PT_LOAD segments, placed by `p_paddr`. Registers come from the notes:
//! QEMU writes, per vCPU, a `CORE`/`NT_PRSTATUS` note and a `QEMU` note holding its
//! `QEMUCPUState` (version 1: general registers, segments, then `cr[5]`), from which the
//! page-table root (CR3) and paging mode (CR4) are taken.

use super::segments::{Segment, SegmentMap};
use super::{MemError, PhysicalMemory, Region, VcpuState};
use object::elf::{FileHeader64, PT_LOAD, PT_NOTE};
use object::read::elf::{FileHeader, ProgramHeader};
use object::read::ReadCache;
use object::Endianness;
use std::fs::File;
use std::path::Path;

/// Offsets in QEMU's `QEMUCPUState` (dump/dump.c, version 1).
mod qemu_state {
    pub const VERSION: usize = 0;
    pub const RSP: usize = 8 + 6 * 8;
    pub const RIP: usize = 8 + 16 * 8;
    /// 8-byte header, 16 GPRs, rip, rflags, then ten 24-byte segment descriptors.
    pub const CR: usize = 8 + 18 * 8 + 10 * 24;
    pub const MIN_SIZE: usize = CR + 5 * 8;
}

/// A QEMU ELF memory dump.
#[derive(Debug)]
pub struct ElfCore {
    file: File,
    map: SegmentMap,
    vcpus: Vec<VcpuState>,
}

fn fmt_err(path: &Path, what: impl std::fmt::Display) -> MemError {
    MemError::Format(format!("{}: {what}", path.display()))
}

impl ElfCore {
    /// Opens and indexes a dump (reads only its headers and notes).
    pub fn open(path: &Path) -> Result<Self, MemError> {
        let file = File::open(path).map_err(|e| fmt_err(path, e))?;
        let file_len = file.metadata().map_err(|e| fmt_err(path, e))?.len();
        let reader = file.try_clone().map_err(|e| fmt_err(path, e))?;
        let cache = ReadCache::new(reader);
        let data = &cache;
        let header = FileHeader64::<Endianness>::parse(data).map_err(|e| fmt_err(path, e))?;
        let endian = header.endian().map_err(|e| fmt_err(path, e))?;
        let phdrs = header
            .program_headers(endian, data)
            .map_err(|e| fmt_err(path, e))?;
        let mut segments = Vec::new();
        let mut vcpus = Vec::new();
        for ph in phdrs {
            match ph.p_type(endian) {
                PT_LOAD => segments.push(Segment {
                    paddr: ph.p_paddr(endian),
                    // Bytes past p_filesz are not in the file: treat them as absent.
                    len: ph.p_filesz(endian).min(ph.p_memsz(endian)),
                    file_offset: ph.p_offset(endian),
                }),
                PT_NOTE => {
                    if let Ok(Some(mut notes)) = ph.notes(endian, data) {
                        while let Ok(Some(note)) = notes.next() {
                            if note.name() == b"QEMU" {
                                if let Some(v) = parse_qemu_cpu_state(note.desc()) {
                                    vcpus.push(v);
                                }
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        if segments.is_empty() {
            return Err(fmt_err(path, "no PT_LOAD segments: not a memory dump"));
        }
        let map = SegmentMap::new(segments, file_len)?;
        Ok(ElfCore { file, map, vcpus })
    }

    /// The memory segments.
    pub fn segments(&self) -> &[Segment] {
        self.map.segments()
    }
}

fn le_u64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Parses a `QEMUCPUState` note descriptor.
fn parse_qemu_cpu_state(desc: &[u8]) -> Option<VcpuState> {
    let version = u32::from_le_bytes(desc.get(qemu_state::VERSION..4)?.try_into().ok()?);
    if version != 1 || desc.len() < qemu_state::MIN_SIZE {
        return None;
    }
    let cr = |i: usize| le_u64(desc, qemu_state::CR + 8 * i);
    Some(VcpuState {
        rip: le_u64(desc, qemu_state::RIP)?,
        rsp: le_u64(desc, qemu_state::RSP)?,
        cr0: cr(0)?,
        cr3: cr(3)?,
        cr4: cr(4)?,
        efer: 0,
    })
}

impl PhysicalMemory for ElfCore {
    fn read(&self, paddr: u64, buf: &mut [u8]) -> Result<(), MemError> {
        self.map.read(&self.file, paddr, buf)
    }
    fn max_address(&self) -> u64 {
        self.map.max_address()
    }
    fn regions(&self) -> Vec<Region> {
        self.map.regions()
    }
    fn vcpus(&self) -> Vec<VcpuState> {
        self.vcpus.clone()
    }
}
