//! ELF core dumps with physical addresses: QEMU `dump-guest-memory` (and `virsh dump
//! --memory-only`, which uses it).
//!
//! Memory is the PT_LOAD segments, placed by `p_paddr`. Registers come from the notes:
//! QEMU writes, per vCPU, a `CORE`/`NT_PRSTATUS` note and a `QEMU` note holding its
//! `QEMUCPUState` (version 1: general registers, segments, then `cr[5]`), from which the
//! page-table root (CR3) and paging mode (CR4) are taken. `vmark snapshot` writes the same
//! format, and for a Xen PV guest a `VMARK` note of its (pfn, mfn) pairs: the page tables
//! hold machine frames, translated back through it.

use super::mapped::FileBytes;
use super::segments::{Segment, SegmentMap};
use super::{FrameKind, MemError, PhysicalMemory, Region, VcpuState};
use crate::introspect::m2p::{MachineToPhys, P2mTable, PhysToMachine};
use crate::snapshot::notes::NT_VMARK_XEN_P2M;
use object::elf::{FileHeader64, PT_LOAD, PT_NOTE};
use object::read::elf::{FileHeader, ProgramHeader};
use object::read::ReadCache;
use object::Endianness;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

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
    file: FileBytes,
    map: SegmentMap,
    vcpus: Vec<VcpuState>,
    /// A Xen PV guest's frames, from a `vmark snapshot`'s `VMARK` note.
    p2m: Option<Arc<P2mTable>>,
    /// The `VMCOREINFO` note's text (QEMU with `-device vmcoreinfo`, vmark snapshots), at
    /// most [`vmark_proto::limits::SNAPSHOT_MAX_VMCOREINFO`] bytes of it.
    vmcoreinfo: Option<Arc<str>>,
}

/// Most bytes of notes read.
const MAX_NOTES: u64 = vmark_proto::limits::CORE_MAX_NOTES_BYTES;
/// Most bytes of the VMCOREINFO note kept (the kernel's is one page).
const MAX_VMCOREINFO: usize = vmark_proto::limits::SNAPSHOT_MAX_VMCOREINFO;

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
        let mut p2m = None;
        let mut vmcoreinfo = None;
        let mut notes_read = 0u64;
        for ph in phdrs {
            match ph.p_type(endian) {
                PT_LOAD => segments.push(Segment {
                    paddr: ph.p_paddr(endian),
                    // Bytes past p_filesz are not in the file: treat them as absent.
                    len: ph.p_filesz(endian).min(ph.p_memsz(endian)),
                    file_offset: ph.p_offset(endian),
                }),
                // Notes are read whole: crafted sizes must not add up to a huge allocation.
                PT_NOTE => {
                    notes_read = notes_read.saturating_add(ph.p_filesz(endian));
                    if notes_read > MAX_NOTES {
                        return Err(fmt_err(path, "its notes are larger than vmark reads"));
                    }
                    if let Ok(Some(mut notes)) = ph.notes(endian, data) {
                        while let Ok(Some(note)) = notes.next() {
                            match note.name() {
                                b"QEMU" => vcpus.extend(parse_qemu_cpu_state(note.desc())),
                                // The guest's text: kept as a hint, every use checks it.
                                b"VMCOREINFO" => {
                                    let d = note.desc();
                                    let d = &d[..d.len().min(MAX_VMCOREINFO)];
                                    vmcoreinfo = Some(Arc::from(String::from_utf8_lossy(d)))
                                }
                                b"VMARK" if note.n_type(endian) == NT_VMARK_XEN_P2M => {
                                    p2m = Some(Arc::new(P2mTable::from_pairs(
                                        note.desc().chunks_exact(16).map(|c| {
                                            let w = |b: &[u8]| {
                                                u64::from_le_bytes(b.try_into().expect("8 bytes"))
                                            };
                                            (w(&c[..8]), w(&c[8..]))
                                        }),
                                    )));
                                }
                                _ => {}
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
        Ok(ElfCore {
            file: FileBytes::new(file, file_len),
            map,
            vcpus,
            p2m,
            vmcoreinfo,
        })
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
pub(crate) fn parse_qemu_cpu_state(desc: &[u8]) -> Option<VcpuState> {
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
    fn with_bytes(&self, paddr: u64, len: usize, f: &mut dyn FnMut(&[u8])) -> Result<(), MemError> {
        self.map.with_bytes(&self.file, paddr, len, f)
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
    fn frame_kind(&self) -> FrameKind {
        match self.p2m {
            Some(_) => FrameKind::XenPv,
            None => FrameKind::Physical,
        }
    }
    fn machine_to_phys(&self) -> Option<Arc<dyn MachineToPhys>> {
        self.p2m.clone().map(|p| p as Arc<dyn MachineToPhys>)
    }
    fn phys_to_machine(&self) -> Option<Arc<dyn PhysToMachine>> {
        self.p2m.clone().map(|p| p as Arc<dyn PhysToMachine>)
    }
    fn vmcoreinfo(&self) -> Option<Arc<str>> {
        self.vmcoreinfo.clone()
    }
}
