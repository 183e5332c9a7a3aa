//! Memory snapshots: a guest's memory and vCPU registers written as an ELF core file.
//!
//! The format is the kind of ELF core QEMU's `dump-guest-memory` writes, which vmark, drgn
//! and volatility3 open: an `ET_CORE` ELF64 whose `PT_LOAD` segments place the guest's pages
//! by physical address (`p_paddr`), and a `PT_NOTE` with each vCPU's `NT_PRSTATUS` and
//! `QEMUCPUState` and, for a Linux guest, its `VMCOREINFO` ([`notes`]). Unlike QEMU's, its
//! program headers and notes are at the end of the file (found through `e_phoff`, as the
//! ELF specification has it); `crash`, which looks for them right after the ELF header,
//! does not open it.
//!
//! Writing is built for speed ([`write_core`]): frames are mapped in batches of
//! [`BATCH_FRAMES`] (one hypervisor call each, where `xl dump-core` maps one frame per
//! call), frames the hypervisor refuses are holes between segments, and pages of zeroes are
//! not written at all: they are holes of a sparse file, present in their segment, that read
//! back as the zeroes they are. Program headers and notes go at the end of the file (known
//! only once the memory is written); the data starts at the second page.
//!
//! What to write is a [`Contents`]: ranges of frames to try (for a live guest, its memory
//! map, [`guest::ranges`]), the registers and the `VMCOREINFO` text.

pub mod guest;
pub mod notes;

use crate::frames::{FrameMapper, MapError};
use crate::publish::PAGE_SIZE;
use object::elf;
use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use vmark_proto::limits;

/// Frames mapped per call.
pub const BATCH_FRAMES: usize = limits::SNAPSHOT_BATCH_FRAMES;
/// Most `PT_LOAD` segments (runs of present frames) a snapshot has.
pub const MAX_SEGMENTS: usize = limits::SNAPSHOT_MAX_SEGMENTS;
/// Most vCPUs recorded.
pub const MAX_VCPUS: usize = limits::SNAPSHOT_MAX_VCPUS;
/// Longest `VMCOREINFO` text kept.
pub const MAX_VMCOREINFO: usize = limits::SNAPSHOT_MAX_VMCOREINFO;
/// Where the memory starts in the file.
const DATA_START: u64 = PAGE_SIZE;

/// One vCPU's registers as a core file records them.
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Registers {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub rbp: u64,
    pub rbx: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rax: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rip: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub cs: u64,
    pub ss: u64,
    pub ds: u64,
    pub es: u64,
    pub fs: u64,
    pub gs: u64,
    pub fs_base: u64,
    pub gs_base: u64,
    pub cr0: u64,
    pub cr2: u64,
    pub cr3: u64,
    pub cr4: u64,
}

/// What a snapshot holds.
#[derive(Debug, Clone, Default)]
pub struct Contents {
    /// Frames to try, sorted and disjoint (see [`normalise`]).
    pub frames: Vec<Range<u64>>,
    /// Registers of each vCPU, in vCPU order.
    pub vcpus: Vec<Registers>,
    /// The `VMCOREINFO` text (`KEY=VALUE` lines), empty for none.
    pub vmcoreinfo: Vec<u8>,
    /// Xen PV: the machine frame behind each pseudo-physical frame (index: the frame in
    /// [`Contents::frames`]; [`NO_FRAME`]: none). The segments are then laid out by
    /// pseudo-physical address, the mapper is given machine frames, and the pairs are kept
    /// in a `VMARK` note ([`notes::NT_VMARK_XEN_P2M`]) so that the page tables, which hold
    /// machine frames, can be walked in the file.
    pub p2m: Option<Vec<u64>>,
    /// Most frames to write: the pages the domain holds (`tot_pages`). The frames to try
    /// come from the guest (its memory map, its P2M); this bound, from Xen, keeps a guest
    /// that names frames many times over or far apart from making the copy (done while it
    /// is paused) larger or longer than its memory. `None`: no bound (dumps).
    pub max_present: Option<u64>,
}

/// A pseudo-physical frame with no machine frame behind it.
pub const NO_FRAME: u64 = u64::MAX;

/// Why a snapshot could not be written.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Mapping a batch failed as a whole.
    #[error("mapping frames {first:#x}..+{count}: {error}")]
    Map {
        /// First frame of the batch.
        first: u64,
        /// Frames in it.
        count: usize,
        /// Why.
        error: MapError,
    },
    /// Writing the file failed.
    #[error("writing the snapshot: {0}")]
    Io(#[from] std::io::Error),
    /// The memory is in more runs than a core file can list.
    #[error("the present memory is in more than {MAX_SEGMENTS} runs")]
    TooFragmented,
    /// Nothing to write.
    #[error("no frame of the guest could be mapped")]
    Empty,
    /// A termination signal arrived while the domain was paused: the copy was given up
    /// (and the domain unpaused).
    #[error("interrupted by a signal")]
    Interrupted,
    /// More frames were tried than [`limits::SNAPSHOT_MAX_FRAMES_TRIED`].
    #[error("more than {} frames to try", limits::SNAPSHOT_MAX_FRAMES_TRIED)]
    TooManyFrames,
}

/// What was written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Frames asked for.
    pub frames_tried: u64,
    /// Frames mapped (in the file's segments).
    pub frames_present: u64,
    /// Of those, pages of zeroes left as holes of the file.
    pub frames_zero: u64,
    /// `PT_LOAD` segments.
    pub segments: u64,
    /// Mapping calls made.
    pub map_calls: u64,
    /// Length of the file (its apparent size; zero pages take no disk space).
    pub file_len: u64,
    /// Bytes of memory actually written.
    pub bytes_written: u64,
}

/// Sorts, clips to `0..limit` frames, and merges frame ranges.
pub fn normalise(mut ranges: Vec<Range<u64>>, limit: u64) -> Vec<Range<u64>> {
    for r in &mut ranges {
        r.end = r.end.min(limit);
    }
    ranges.retain(|r| r.start < r.end);
    ranges.sort_by_key(|r| r.start);
    let mut out: Vec<Range<u64>> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match out.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

/// A run of present frames and where its bytes are in the file.
#[derive(Debug, Clone, Copy)]
struct Segment {
    first_frame: u64,
    frames: u64,
    offset: u64,
}

/// Writes a snapshot of the frames `contents` names, mapped through `mapper`, to `file`
/// (which should be empty: it is written at offsets and set to its final length).
/// `interrupted` is asked between batches; when it says so, the copy is given up.
pub fn write_core(
    mapper: &dyn FrameMapper,
    contents: &Contents,
    file: &File,
    interrupted: &dyn Fn() -> bool,
) -> Result<Stats, SnapshotError> {
    let tried: u64 = contents.frames.iter().map(|r| r.end - r.start).sum();
    if tried > limits::SNAPSHOT_MAX_FRAMES_TRIED {
        return Err(SnapshotError::TooManyFrames);
    }
    let max_present = contents.max_present.unwrap_or(u64::MAX);
    let page = PAGE_SIZE as usize;
    let mut stats = Stats::default();
    let mut segments: Vec<Segment> = Vec::new();
    let mut offset = DATA_START;
    let mut buf = vec![0u8; BATCH_FRAMES * page];
    // Pages of the current batch still to be written, as one contiguous write.
    let mut pending: Option<(u64, Range<usize>)> = None;
    // PV: the (pfn, mfn) of every frame written, for the note.
    let mut written: Option<Vec<(u64, u64)>> = contents.p2m.as_ref().map(|_| Vec::new());
    for range in &contents.frames {
        let mut first = range.start;
        while first < range.end && stats.frames_present < max_present {
            if interrupted() {
                return Err(SnapshotError::Interrupted);
            }
            let count = (range.end - first).min(BATCH_FRAMES as u64) as usize;
            // The batch's frames (pseudo-physical for PV) and what the mapper is given.
            let (frames, mapped): (Vec<u64>, Vec<u64>) = (first..first + count as u64)
                .filter_map(|f| match &contents.p2m {
                    None => Some((f, f)),
                    Some(p2m) => p2m
                        .get(usize::try_from(f).ok()?)
                        .filter(|&&m| m != NO_FRAME)
                        .map(|&m| (f, m)),
                })
                .unzip();
            stats.frames_tried += count as u64;
            first += count as u64;
            if frames.is_empty() {
                continue;
            }
            let sparse = mapper
                .map_sparse(&mapped)
                .map_err(|error| SnapshotError::Map {
                    first: mapped[0],
                    count: mapped.len(),
                    error,
                })?;
            stats.map_calls += 1;
            for (i, &frame) in frames.iter().enumerate() {
                let chunk = &mut buf[i * page..(i + 1) * page];
                if stats.frames_present == max_present || !sparse.copy_frame(i, chunk) {
                    continue;
                }
                if let Some(p2m) = &mut written {
                    p2m.push((frame, mapped[i]));
                }
                stats.frames_present += 1;
                match segments.last_mut() {
                    Some(s) if s.first_frame + s.frames == frame => s.frames += 1,
                    _ => {
                        if segments.len() == MAX_SEGMENTS {
                            return Err(SnapshotError::TooFragmented);
                        }
                        segments.push(Segment {
                            first_frame: frame,
                            frames: 1,
                            offset,
                        });
                    }
                }
                let at = offset;
                offset += PAGE_SIZE;
                if chunk.iter().all(|&b| b == 0) {
                    stats.frames_zero += 1;
                    flush(file, &buf, &mut pending, &mut stats)?;
                    continue;
                }
                let extends = matches!(&pending, Some((start, bytes))
                    if bytes.end == i * page && start + bytes.len() as u64 == at);
                match &mut pending {
                    Some((_, bytes)) if extends => bytes.end = (i + 1) * page,
                    _ => {
                        flush(file, &buf, &mut pending, &mut stats)?;
                        pending = Some((at, i * page..(i + 1) * page));
                    }
                }
            }
            flush(file, &buf, &mut pending, &mut stats)?;
        }
    }
    if segments.is_empty() {
        return Err(SnapshotError::Empty);
    }
    stats.segments = segments.len() as u64;
    let notes = build_notes(contents, written.as_deref());
    let notes_at = offset;
    let phdrs_at = (notes_at + notes.len() as u64).next_multiple_of(8);
    file.write_all_at(&notes, notes_at)?;
    let phdrs = program_headers(&segments, notes_at, notes.len() as u64);
    file.write_all_at(&phdrs, phdrs_at)?;
    stats.file_len = phdrs_at + phdrs.len() as u64;
    file.write_all_at(&file_header(phdrs_at, segments.len() + 1), 0)?;
    file.set_len(stats.file_len)?;
    Ok(stats)
}

fn flush(
    file: &File,
    buf: &[u8],
    pending: &mut Option<(u64, Range<usize>)>,
    stats: &mut Stats,
) -> Result<(), SnapshotError> {
    if let Some((at, bytes)) = pending.take() {
        file.write_all_at(&buf[bytes.clone()], at)?;
        stats.bytes_written += bytes.len() as u64;
    }
    Ok(())
}

fn build_notes(contents: &Contents, p2m: Option<&[(u64, u64)]>) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some(pairs) = p2m {
        let desc: Vec<u8> = pairs
            .iter()
            .flat_map(|(p, m)| p.to_le_bytes().into_iter().chain(m.to_le_bytes()))
            .collect();
        notes::push_note(
            &mut out,
            notes::VMARK_NOTE_NAME,
            notes::NT_VMARK_XEN_P2M,
            &desc,
        );
    }
    for (i, r) in contents.vcpus.iter().take(MAX_VCPUS).enumerate() {
        notes::push_note(
            &mut out,
            b"CORE",
            notes::NT_PRSTATUS,
            &notes::prstatus(i as u32, r),
        );
        notes::push_note(&mut out, b"QEMU", 0, &notes::qemu_cpu_state(r));
    }
    if !contents.vmcoreinfo.is_empty() {
        let text = &contents.vmcoreinfo[..contents.vmcoreinfo.len().min(MAX_VMCOREINFO)];
        notes::push_note(&mut out, b"VMCOREINFO", 0, text);
    }
    out
}

fn file_header(phoff: u64, phnum: usize) -> Vec<u8> {
    let le = object::LittleEndian;
    let h = elf::FileHeader64::<object::LittleEndian> {
        e_ident: elf::Ident {
            magic: elf::ELFMAG,
            class: elf::ELFCLASS64,
            data: elf::ELFDATA2LSB,
            version: elf::EV_CURRENT,
            os_abi: elf::ELFOSABI_NONE,
            abi_version: 0,
            padding: [0; 7],
        },
        e_type: object::U16::new(le, elf::ET_CORE),
        e_machine: object::U16::new(le, elf::EM_X86_64),
        e_version: object::U32::new(le, u32::from(elf::EV_CURRENT)),
        e_entry: object::U64::new(le, 0),
        e_phoff: object::U64::new(le, phoff),
        e_shoff: object::U64::new(le, 0),
        e_flags: object::U32::new(le, 0),
        e_ehsize: object::U16::new(le, 64),
        e_phentsize: object::U16::new(le, 56),
        e_phnum: object::U16::new(le, phnum as u16),
        e_shentsize: object::U16::new(le, 64),
        e_shnum: object::U16::new(le, 0),
        e_shstrndx: object::U16::new(le, 0),
    };
    object::pod::bytes_of(&h).to_vec()
}

fn program_header(p_type: u32, offset: u64, paddr: u64, len: u64, align: u64) -> Vec<u8> {
    let le = object::LittleEndian;
    let h = elf::ProgramHeader64::<object::LittleEndian> {
        p_type: object::U32::new(le, p_type),
        p_flags: object::U32::new(le, elf::PF_R | elf::PF_W | elf::PF_X),
        p_offset: object::U64::new(le, offset),
        p_vaddr: object::U64::new(le, 0),
        p_paddr: object::U64::new(le, paddr),
        p_filesz: object::U64::new(le, len),
        p_memsz: object::U64::new(le, len),
        p_align: object::U64::new(le, align),
    };
    object::pod::bytes_of(&h).to_vec()
}

fn program_headers(segments: &[Segment], notes_at: u64, notes_len: u64) -> Vec<u8> {
    let mut out = program_header(elf::PT_NOTE, notes_at, 0, notes_len, 4);
    for s in segments {
        out.extend(program_header(
            elf::PT_LOAD,
            s.offset,
            s.first_frame * PAGE_SIZE,
            s.frames * PAGE_SIZE,
            PAGE_SIZE,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frames::BufferMapper;
    use crate::introspect::phys::elfcore::ElfCore;
    use crate::introspect::phys::PhysicalMemory;
    use std::fs::File;

    #[test]
    fn ranges_are_clipped_sorted_and_merged() {
        assert_eq!(
            normalise(vec![10..20, 0..5, 4..8, 30..40, 19..25], 35),
            vec![0..8, 10..25, 30..35]
        );
        assert!(normalise(std::iter::once(50..60).collect(), 40).is_empty());
    }

    #[test]
    fn a_snapshot_reads_back_as_the_memory_it_was_taken_from() {
        // Frames 0..6: 0 and 3 hold data, 1 is zeroes, 2 holds data; 4.. are beyond the
        // buffer (refused): one segment of frames 0..4 and holes after it.
        let mut mem = vec![0u8; 4 * 4096];
        mem[5] = 0xaa;
        mem[2 * 4096 + 100] = 0xbb;
        mem[3 * 4096 + 4095] = 0xcc;
        let mapper = BufferMapper::new(mem.clone());
        let path = scratch("readback");
        let file = File::create(&path).unwrap();
        let regs = Registers {
            cr3: 0x2000,
            cr4: 0x20,
            ..Registers::default()
        };
        let contents = Contents {
            frames: vec![0..2, 2..6],
            vcpus: vec![regs],
            vmcoreinfo: b"OSRELEASE=test\nPAGESIZE=4096\n".to_vec(),
            p2m: None,
            max_present: None,
        };
        let stats = write_core(&mapper, &contents, &file, &|| false).unwrap();
        assert_eq!(stats.frames_tried, 6);
        assert_eq!(stats.frames_present, 4);
        assert_eq!(stats.frames_zero, 1);
        assert_eq!(stats.segments, 1);
        assert_eq!(stats.bytes_written, 3 * 4096);
        let core = ElfCore::open(&path).unwrap();
        let mut back = vec![0u8; 4 * 4096];
        core.read(0, &mut back).unwrap();
        assert_eq!(back, mem);
        assert!(core.read(4 * 4096, &mut [0u8; 1]).is_err());
        assert_eq!(core.vcpus()[0].cr3, 0x2000);
        let raw = std::fs::read(&path).unwrap();
        assert!(raw.windows(14).any(|w| w == b"OSRELEASE=test"));
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn holes_split_segments_and_nothing_mapped_is_an_error() {
        struct Odd;
        impl FrameMapper for Odd {
            fn map(&self, frames: &[u64]) -> Result<crate::frames::Mapping, MapError> {
                if frames.iter().any(|f| f % 2 == 1) {
                    return Err(MapError::Frame {
                        frame: frames[0],
                        reason: "odd".into(),
                    });
                }
                Ok(crate::frames::Mapping::copied(vec![
                    1u8;
                    frames.len() * 4096
                ]))
            }
        }
        let path = scratch("holes");
        let file = File::create(&path).unwrap();
        let contents = Contents {
            frames: std::iter::once(0..5).collect(),
            ..Contents::default()
        };
        let stats = write_core(&Odd, &contents, &file, &|| false).unwrap();
        assert_eq!((stats.frames_present, stats.segments), (3, 3));
        let none = Contents {
            frames: std::iter::once(1..2).collect(),
            ..Contents::default()
        };
        assert!(matches!(
            write_core(&Odd, &none, &file, &|| false),
            Err(SnapshotError::Empty)
        ));
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_pv_snapshot_is_laid_out_by_pseudo_physical_frame_with_its_p2m() {
        // Machine frames 0..4; the guest's frames 0, 1, 2 are machine frames 3, 0, 2, and
        // its frame 3 has none.
        let mut mem = vec![0u8; 4 * 4096];
        for (mfn, b) in [(0usize, 0x10u8), (2, 0x12), (3, 0x13)] {
            mem[mfn * 4096] = b;
        }
        let path = scratch("pv");
        let file = File::create(&path).unwrap();
        let contents = Contents {
            frames: std::iter::once(0..4).collect(),
            p2m: Some(vec![3, 0, 2, NO_FRAME]),
            ..Contents::default()
        };
        let stats = write_core(&BufferMapper::new(mem), &contents, &file, &|| false).unwrap();
        assert_eq!((stats.frames_present, stats.segments), (3, 1));
        let core = ElfCore::open(&path).unwrap();
        let mut b = [0u8; 1];
        for (pfn, want) in [(0u64, 0x13u8), (1, 0x10), (2, 0x12)] {
            core.read(pfn * 4096, &mut b).unwrap();
            assert_eq!(b[0], want, "pfn {pfn}");
        }
        assert_eq!(core.frame_kind(), crate::introspect::phys::FrameKind::XenPv);
        let m2p = core.machine_to_phys().expect("the note's p2m");
        assert_eq!(
            (m2p.m2p(3), m2p.m2p(0), m2p.m2p(1)),
            (Some(0), Some(1), None)
        );
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn the_copy_stops_at_the_frames_the_domain_holds_and_on_a_signal() {
        // A P2M that names machine frame 0 at every pfn: the copy stops at max_present.
        let path = scratch("bounded");
        let file = File::create(&path).unwrap();
        let contents = Contents {
            frames: std::iter::once(0..5000).collect(),
            p2m: Some(vec![0; 5000]),
            max_present: Some(3),
            ..Contents::default()
        };
        let mapper = BufferMapper::new(vec![1u8; 4096]);
        let stats = write_core(&mapper, &contents, &file, &|| false).unwrap();
        assert_eq!(stats.frames_present, 3);
        assert_eq!(stats.map_calls, 1, "no batch after the bound");
        assert!(matches!(
            write_core(&mapper, &contents, &file, &|| true),
            Err(SnapshotError::Interrupted)
        ));
        let too_many = Contents {
            frames: std::iter::once(0..limits::SNAPSHOT_MAX_FRAMES_TRIED + 1).collect(),
            ..Contents::default()
        };
        assert!(matches!(
            write_core(&mapper, &too_many, &file, &|| false),
            Err(SnapshotError::TooManyFrames)
        ));
        std::fs::remove_file(&path).unwrap();
    }

    fn scratch(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("vmark-snapshot-{}-{name}", std::process::id()))
    }
}
