//! Live guests through a [`FrameMapper`] (Xen foreign mappings), with a bounded cache of
//! mapped frames.
//!
//! Frames are mapped [`CHUNK_FRAMES`] at a time, aligned, in one call of the mapper
//! ([`FrameMapper::map_sparse`]): a foreign mapping costs a hypercall, a `mmap` and a
//! `munmap` with its TLB flush whatever its size, and what reads a live kernel (its kallsyms
//! tables found in the image, lists walked, a snapshot's page tables) reads neighbouring
//! frames. Which frames of a chunk the hypervisor refused (not the domain's, not RAM) is
//! kept with the chunk, so they are not asked for again until [`PhysicalMemory::flush`].
//! Remembering refusals also bounds what a guest whose page tables point at frames it does
//! not own can make vmark do: one mapping call per chunk, not one per read. A guest's
//! frame is mapped only when it or a frame of its chunk is read (what a snapshot does to
//! every frame); for a guest with populate-on-demand memory, mapping a frame not yet
//! populated makes Xen populate it, as any read of it would.
//! The chunks stay mapped while they stay in the cache; reads copy out with the volatile
//! loads of [`Mapping::copy_out`](crate::frames::Mapping::copy_out), so they see the guest's
//! current bytes (the cache holds mappings, not copies). `flush` unmaps everything, which
//! matters after the guest balloons or remaps memory.

use super::{checked_end, FrameKind, MemError, PhysicalMemory, PAGE_SIZE};
use crate::frames::{FrameMapper, SparseMapping};
use crate::introspect::cache::ClockCache;
use crate::introspect::m2p::{MachineToPhys, PhysToMachine};
use std::sync::{Arc, Mutex};

/// Default number of frames kept mapped (16 MiB of the host's address space).
pub const DEFAULT_MAPPED_FRAMES: usize = 4096;

/// Frames mapped by one call of the mapper (128 KiB, aligned to its size).
pub const CHUNK_FRAMES: u64 = 32;

/// Marks a frame of a chunk that was not asked for (no machine frame in the P2M, or
/// beyond the guest's memory).
const NOT_ASKED: u8 = u8::MAX;

/// One mapped chunk: the frames asked for, and where each frame of the chunk is in it.
struct Chunk {
    mapping: SparseMapping,
    slot: [u8; CHUNK_FRAMES as usize],
}

/// A live domain's memory.
pub struct LiveFrames {
    mapper: Arc<dyn FrameMapper>,
    max_address: u64,
    kind: FrameKind,
    p2m: Option<Arc<dyn PhysToMachine>>,
    m2p: Option<Arc<dyn MachineToPhys>>,
    mapped: Mutex<ClockCache<u64, Arc<Chunk>>>,
}

impl LiveFrames {
    /// An HVM/PVH guest (frames mapped by guest-physical number) of `max_address` bytes,
    /// with about `cache_frames` frames kept mapped.
    pub fn new(mapper: Arc<dyn FrameMapper>, max_address: u64, cache_frames: usize) -> Self {
        LiveFrames {
            mapper,
            max_address,
            kind: FrameKind::Physical,
            p2m: None,
            m2p: None,
            mapped: Mutex::new(ClockCache::new(
                cache_frames.div_ceil(CHUNK_FRAMES as usize),
            )),
        }
    }

    /// A Xen PV guest: foreign mappings take machine frames, so physical reads go through
    /// `p2m`, and page-table walks translate MFNs back with `m2p`.
    pub fn xen_pv(
        mapper: Arc<dyn FrameMapper>,
        max_address: u64,
        cache_frames: usize,
        p2m: Arc<dyn PhysToMachine>,
        m2p: Arc<dyn MachineToPhys>,
    ) -> Self {
        LiveFrames {
            kind: FrameKind::XenPv,
            p2m: Some(p2m),
            m2p: Some(m2p),
            ..LiveFrames::new(mapper, max_address, cache_frames)
        }
    }

    /// The chunk holding frame `pfn`, mapped when not cached.
    fn chunk(&self, pfn: u64) -> Result<Arc<Chunk>, MemError> {
        let index = pfn / CHUNK_FRAMES;
        if let Ok(mut c) = self.mapped.lock() {
            if let Some(chunk) = c.get(&index) {
                return Ok(chunk.clone());
            }
        }
        let first = index * CHUNK_FRAMES;
        let max_frames = self.max_address.div_ceil(PAGE_SIZE);
        let mut frames = Vec::with_capacity(CHUNK_FRAMES as usize);
        let mut slot = [NOT_ASKED; CHUNK_FRAMES as usize];
        for (i, pfn) in (first..first + CHUNK_FRAMES).enumerate() {
            if pfn >= max_frames {
                break;
            }
            let frame = match &self.p2m {
                Some(p2m) => match p2m.p2m(pfn) {
                    Some(mfn) => mfn,
                    None => continue,
                },
                None => pfn,
            };
            slot[i] = frames.len() as u8;
            frames.push(frame);
        }
        if frames.is_empty() {
            return Err(MemError::NotPresent(pfn * PAGE_SIZE));
        }
        let mapping = self.mapper.map_sparse(&frames).map_err(|e| MemError::Map {
            frame: match slot[(pfn % CHUNK_FRAMES) as usize] {
                NOT_ASKED => pfn,
                i => frames[usize::from(i)],
            },
            reason: e.to_string(),
        })?;
        let chunk = Arc::new(Chunk { mapping, slot });
        if let Ok(mut c) = self.mapped.lock() {
            c.insert(index, chunk.clone());
        }
        Ok(chunk)
    }
}

impl PhysicalMemory for LiveFrames {
    fn read(&self, paddr: u64, buf: &mut [u8]) -> Result<(), MemError> {
        let end = checked_end(paddr, buf.len())?;
        if end > self.max_address {
            return Err(MemError::NotPresent(paddr.max(self.max_address)));
        }
        let mut done = 0usize;
        while done < buf.len() {
            let addr = paddr + done as u64;
            let pfn = addr / PAGE_SIZE;
            let off = (addr % PAGE_SIZE) as usize;
            let n = (buf.len() - done).min(PAGE_SIZE as usize - off);
            let chunk = self.chunk(pfn)?;
            let slot = chunk.slot[(pfn % CHUNK_FRAMES) as usize];
            if slot == NOT_ASKED {
                return Err(MemError::NotPresent(addr));
            }
            if !chunk
                .mapping
                .copy_out(slot as usize, off, &mut buf[done..done + n])
            {
                return Err(MemError::Map {
                    frame: self.p2m.as_ref().and_then(|p| p.p2m(pfn)).unwrap_or(pfn),
                    reason: "the hypervisor did not map it (not the domain's, or not RAM)".into(),
                });
            }
            done += n;
        }
        Ok(())
    }
    fn max_address(&self) -> u64 {
        self.max_address
    }
    fn frame_kind(&self) -> FrameKind {
        self.kind
    }
    fn machine_to_phys(&self) -> Option<Arc<dyn MachineToPhys>> {
        self.m2p.clone()
    }
    fn flush(&self) {
        if let Ok(mut c) = self.mapped.lock() {
            c.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frames::BufferMapper;

    #[test]
    fn reads_across_frames_through_a_mapper() {
        let mem: Vec<u8> = (0..3 * 4096u32).map(|i| (i % 253) as u8).collect();
        let live = LiveFrames::new(Arc::new(BufferMapper::new(mem.clone())), 3 * 4096, 2);
        let mut buf = vec![0u8; 6000];
        live.read(3000, &mut buf).unwrap();
        assert_eq!(buf, mem[3000..9000]);
        live.read(100, &mut buf[..10]).unwrap();
        assert_eq!(buf[..10], mem[100..110]);
        assert!(matches!(
            live.read(3 * 4096, &mut [0u8; 1]),
            Err(MemError::NotPresent(_))
        ));
        live.flush();
        live.read(8000, &mut buf[..8]).unwrap();
        assert_eq!(buf[..8], mem[8000..8008]);
    }

    /// A mapper over a buffer that counts its calls and refuses some frames, as Xen
    /// refuses frames a domain does not own.
    struct Refusing {
        inner: BufferMapper,
        refused: Vec<u64>,
        calls: std::sync::atomic::AtomicUsize,
        asked: Mutex<Vec<u64>>,
    }

    impl FrameMapper for Refusing {
        fn map(&self, frames: &[u64]) -> Result<crate::frames::Mapping, crate::frames::MapError> {
            if let Some(&f) = frames.iter().find(|f| self.refused.contains(f)) {
                return Err(crate::frames::MapError::Frame {
                    frame: f,
                    reason: "refused".into(),
                });
            }
            self.inner.map(frames)
        }
        fn map_sparse(&self, frames: &[u64]) -> Result<SparseMapping, crate::frames::MapError> {
            self.calls
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.asked.lock().unwrap().extend_from_slice(frames);
            crate::frames::map_sparse_by_frames(self, frames)
        }
    }

    fn refusing(frames: u64, refused: Vec<u64>) -> (Vec<u8>, Arc<Refusing>) {
        let mem: Vec<u8> = (0..frames * PAGE_SIZE).map(|i| (i % 251) as u8).collect();
        let mapper = Arc::new(Refusing {
            inner: BufferMapper::new(mem.clone()),
            refused,
            calls: Default::default(),
            asked: Default::default(),
        });
        (mem, mapper)
    }

    #[test]
    fn a_chunk_is_mapped_in_one_call_and_a_refused_frame_fails_alone() {
        let frames = 2 * CHUNK_FRAMES + 5;
        let (mem, mapper) = refusing(frames, vec![3]);
        let live = LiveFrames::new(mapper.clone(), frames * PAGE_SIZE, 4096);
        // Every frame of the first chunk but the refused one reads, with one call.
        let mut page = vec![0u8; PAGE_SIZE as usize];
        for pfn in (0..CHUNK_FRAMES).filter(|&p| p != 3) {
            live.read(pfn * PAGE_SIZE, &mut page).unwrap();
            assert_eq!(page[..], mem[(pfn * PAGE_SIZE) as usize..][..page.len()]);
        }
        assert_eq!(mapper.calls.load(std::sync::atomic::Ordering::Relaxed), 1);
        let err = live.read(3 * PAGE_SIZE + 8, &mut [0u8; 8]).unwrap_err();
        assert!(matches!(err, MemError::Map { frame: 3, .. }), "{err}");
        // A read across a chunk boundary maps the next chunk; the last chunk is short and
        // nothing past the guest's memory is asked for.
        let at = CHUNK_FRAMES * PAGE_SIZE - 100;
        let mut buf = vec![0u8; 300];
        live.read(at, &mut buf).unwrap();
        assert_eq!(buf[..], mem[at as usize..][..300]);
        live.read((frames - 1) * PAGE_SIZE, &mut page).unwrap();
        assert_eq!(mapper.calls.load(std::sync::atomic::Ordering::Relaxed), 3);
        assert!(mapper.asked.lock().unwrap().iter().all(|&f| f < frames));
        assert!(matches!(
            live.read(frames * PAGE_SIZE, &mut [0u8; 1]),
            Err(MemError::NotPresent(_))
        ));
        // Refused frames are not asked for again until a flush.
        let _ = live.read(3 * PAGE_SIZE, &mut [0u8; 8]);
        assert_eq!(mapper.calls.load(std::sync::atomic::Ordering::Relaxed), 3);
        live.flush();
        live.read(0, &mut [0u8; 8]).unwrap();
        assert_eq!(mapper.calls.load(std::sync::atomic::Ordering::Relaxed), 4);
    }

    struct HalfP2m;
    impl PhysToMachine for HalfP2m {
        /// Even pfns only, backed by machine frames in reverse order.
        fn p2m(&self, pfn: u64) -> Option<u64> {
            (pfn.is_multiple_of(2) && pfn < 2 * CHUNK_FRAMES).then(|| 2 * CHUNK_FRAMES - 1 - pfn)
        }
    }

    #[test]
    fn a_pv_chunk_asks_only_for_the_machine_frames_its_p2m_names() {
        let frames = 2 * CHUNK_FRAMES;
        let (mem, mapper) = refusing(frames, vec![]);
        let m2p = Arc::new(crate::introspect::m2p::P2mTable::default());
        let live = LiveFrames::xen_pv(
            mapper.clone(),
            frames * PAGE_SIZE,
            64,
            Arc::new(HalfP2m),
            m2p,
        );
        let mut buf = [0u8; 16];
        live.read(4 * PAGE_SIZE + 10, &mut buf).unwrap();
        let mfn = 2 * CHUNK_FRAMES - 1 - 4;
        assert_eq!(buf[..], mem[(mfn * PAGE_SIZE + 10) as usize..][..16]);
        assert!(matches!(
            live.read(5 * PAGE_SIZE, &mut buf),
            Err(MemError::NotPresent(_))
        ));
        assert_eq!(
            mapper.asked.lock().unwrap().len(),
            CHUNK_FRAMES as usize / 2
        );
    }
}
