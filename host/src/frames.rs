//! Mapping guest frames into the host.
//!
//! [`FrameMapper`] is the one operation the live path needs from a hypervisor: map a list of
//! guest frames read-only, contiguously. The Xen implementation uses foreign memory mappings
//! (one batched call per mark); [`BufferMapper`] serves tests and memory images.
//!
//! A [`Mapping`] is shared memory that the guest may write at any time, so it is only ever
//! copied out with volatile reads ([`Mapping::copy_out`]); nothing hands out a `&[u8]` into it.

use crate::publish::PAGE_SIZE;
use std::sync::Arc;

/// Most frames mapped in one call (a 16 MiB mark).
pub const MAX_FRAMES_PER_MAPPING: usize = 4096;

/// Why frames could not be mapped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    /// The hypervisor refused a frame (not owned by the domain, not RAM, ...).
    #[error("frame {frame:#x} cannot be mapped: {reason}")]
    Frame {
        /// The frame.
        frame: u64,
        /// The error as the hypervisor library reported it.
        reason: String,
    },
    /// The whole mapping call failed.
    #[error("mapping {count} frames of domain {domid} failed: {reason}")]
    Map {
        /// Domain.
        domid: u32,
        /// Frames requested.
        count: usize,
        /// OS error.
        reason: String,
    },
    /// More frames than [`MAX_FRAMES_PER_MAPPING`], or none.
    #[error("refusing to map {0} frames")]
    Count(usize),
}

/// Backing memory of a mapping. Implementations guarantee `base()` is valid for reads of
/// `len()` bytes until they are dropped.
pub trait MappedMemory: Send + Sync {
    /// Start of the mapping.
    fn base(&self) -> *const u8;
    /// Length in bytes.
    fn len(&self) -> usize;
    /// Whether the mapping is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A read-only view of guest frames, contiguous in the host.
#[derive(Clone)]
pub struct Mapping {
    mem: Arc<dyn MappedMemory>,
}

impl std::fmt::Debug for Mapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Mapping({} bytes)", self.mem.len())
    }
}

impl Mapping {
    /// Wraps backing memory.
    pub fn new(mem: Arc<dyn MappedMemory>) -> Self {
        Mapping { mem }
    }

    /// A mapping that holds a copy of `bytes` (for sources that do not change: dumps).
    pub fn copied(bytes: Vec<u8>) -> Self {
        Mapping::new(Arc::new(OwnedPages(bytes)))
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.mem.len()
    }

    /// Whether the mapping is empty.
    pub fn is_empty(&self) -> bool {
        self.mem.len() == 0
    }

    /// Copies `out.len()` bytes starting at `offset` out of the mapping. Returns `false`
    /// (copying nothing) when the range is outside the mapping.
    pub fn copy_out(&self, offset: usize, out: &mut [u8]) -> bool {
        let Some(end) = offset.checked_add(out.len()) else {
            return false;
        };
        if end > self.mem.len() {
            return false;
        }
        // SAFETY: `base()..base()+len()` is readable for the life of `self.mem` (MappedMemory
        // contract) and `offset..end` lies inside it. The guest may write concurrently, so
        // every byte is read with a volatile load: the compiler may neither elide nor tear
        // the copy into assumptions about stable memory.
        unsafe {
            let src = self.mem.base().add(offset);
            // Bytes up to 8-byte alignment, then whole words, then the tail: word loads
            // copy a tcp_sock-sized mark about eight times faster than byte loads.
            let head = (src.align_offset(8)).min(out.len());
            for (i, b) in out[..head].iter_mut().enumerate() {
                *b = std::ptr::read_volatile(src.add(i));
            }
            let words = (out.len() - head) / 8;
            for w in 0..words {
                let at = head + w * 8;
                let v = std::ptr::read_volatile(src.add(at) as *const u64);
                out[at..at + 8].copy_from_slice(&v.to_ne_bytes());
            }
            let tail = head + words * 8;
            for (i, b) in out[tail..].iter_mut().enumerate() {
                *b = std::ptr::read_volatile(src.add(tail + i));
            }
        }
        true
    }

    /// Reads a little-endian `u32` at `offset` with a single aligned volatile load when
    /// possible (sequence counters must be read atomically).
    pub fn read_u32(&self, offset: usize) -> Option<u32> {
        if !offset.is_multiple_of(4) || offset.checked_add(4)? > self.mem.len() {
            let mut b = [0u8; 4];
            return self.copy_out(offset, &mut b).then(|| u32::from_le_bytes(b));
        }
        // SAFETY: in bounds (checked above) and 4-byte aligned within a page-aligned
        // mapping, so a single volatile u32 load is valid and not torn.
        Some(unsafe { std::ptr::read_volatile(self.mem.base().add(offset) as *const u32) })
    }

    /// Reads a little-endian `u64` at `offset` (single load when aligned).
    pub fn read_u64(&self, offset: usize) -> Option<u64> {
        if !offset.is_multiple_of(8) || offset.checked_add(8)? > self.mem.len() {
            let mut b = [0u8; 8];
            return self.copy_out(offset, &mut b).then(|| u64::from_le_bytes(b));
        }
        // SAFETY: in bounds and 8-byte aligned; see `read_u32`.
        Some(unsafe { std::ptr::read_volatile(self.mem.base().add(offset) as *const u64) })
    }
}

/// Frames mapped where the hypervisor allowed, with holes where it refused: what a
/// memory snapshot maps, in large batches, over a guest's physical address space.
pub struct SparseMapping {
    mapping: Option<Mapping>,
    present: Vec<bool>,
}

impl SparseMapping {
    /// A mapping of `present.len()` frames, of which those marked present may be read.
    /// `mapping` must span them all (or be `None` when none is present).
    pub fn new(mapping: Option<Mapping>, present: Vec<bool>) -> Self {
        SparseMapping { mapping, present }
    }

    /// Which frames were mapped.
    pub fn present(&self) -> &[bool] {
        &self.present
    }

    /// Copies frame `index` (one page) into `out`. Returns `false` for a hole, which is
    /// never touched: a hole in a foreign mapping faults when read.
    pub fn copy_frame(&self, index: usize, out: &mut [u8]) -> bool {
        let page = PAGE_SIZE as usize;
        match (&self.mapping, self.present.get(index)) {
            (Some(m), Some(true)) if out.len() == page => m.copy_out(index * page, out),
            _ => false,
        }
    }

    /// Copies `out.len()` bytes at `offset` in frame `index` into `out`. Returns `false`
    /// (copying nothing) for a hole or a range that leaves the frame.
    pub fn copy_out(&self, index: usize, offset: usize, out: &mut [u8]) -> bool {
        let page = PAGE_SIZE as usize;
        let in_frame = offset.checked_add(out.len()).is_some_and(|end| end <= page);
        match (&self.mapping, self.present.get(index)) {
            (Some(m), Some(true)) if in_frame => m.copy_out(index * page + offset, out),
            _ => false,
        }
    }
}

/// Maps guest frames of one domain.
pub trait FrameMapper: Send + Sync {
    /// Maps `frames` read-only and contiguously, in order. Fails as a whole if any frame
    /// fails (naming the first bad one).
    fn map(&self, frames: &[u64]) -> Result<Mapping, MapError>;

    /// Maps `frames` like [`FrameMapper::map`], except that a frame the hypervisor refuses
    /// is a hole rather than a failure of the call. The default maps the batch, and frame
    /// by frame only when that fails; the Xen mapper does one call either way.
    fn map_sparse(&self, frames: &[u64]) -> Result<SparseMapping, MapError> {
        map_sparse_by_frames(self, frames)
    }
}

/// [`FrameMapper::map_sparse`] made of [`FrameMapper::map`] calls: the batch, and frame
/// by frame (copied) only when that fails. The trait's default; for mappers that wrap it.
pub fn map_sparse_by_frames<M: FrameMapper + ?Sized>(
    mapper: &M,
    frames: &[u64],
) -> Result<SparseMapping, MapError> {
    if frames.is_empty() || frames.len() > MAX_FRAMES_PER_MAPPING {
        return Err(MapError::Count(frames.len()));
    }
    if let Ok(m) = mapper.map(frames) {
        return Ok(SparseMapping::new(Some(m), vec![true; frames.len()]));
    }
    let page = PAGE_SIZE as usize;
    let mut bytes = vec![0u8; frames.len() * page];
    let mut present = vec![false; frames.len()];
    for (i, &f) in frames.iter().enumerate() {
        if let Ok(m) = mapper.map(&[f]) {
            present[i] = m.copy_out(0, &mut bytes[i * page..(i + 1) * page]);
        }
    }
    Ok(SparseMapping::new(Some(Mapping::copied(bytes)), present))
}

/// Guest "memory" held in a buffer: frame `n` is bytes `n*4096..(n+1)*4096`. For tests and
/// for raw memory images.
#[derive(Clone)]
pub struct BufferMapper {
    memory: Arc<Vec<u8>>,
}

impl BufferMapper {
    /// Memory made of `bytes` (padded to whole pages).
    pub fn new(mut bytes: Vec<u8>) -> Self {
        let pages = bytes.len().div_ceil(PAGE_SIZE as usize);
        bytes.resize(pages * PAGE_SIZE as usize, 0);
        BufferMapper {
            memory: Arc::new(bytes),
        }
    }
}

struct OwnedPages(Vec<u8>);

impl MappedMemory for OwnedPages {
    fn base(&self) -> *const u8 {
        self.0.as_ptr()
    }
    fn len(&self) -> usize {
        self.0.len()
    }
}

impl FrameMapper for BufferMapper {
    fn map(&self, frames: &[u64]) -> Result<Mapping, MapError> {
        if frames.is_empty() || frames.len() > MAX_FRAMES_PER_MAPPING {
            return Err(MapError::Count(frames.len()));
        }
        let page = PAGE_SIZE as usize;
        let mut out = Vec::with_capacity(frames.len() * page);
        for &f in frames {
            let start = usize::try_from(f)
                .ok()
                .and_then(|f| f.checked_mul(page))
                .filter(|s| s + page <= self.memory.len())
                .ok_or_else(|| MapError::Frame {
                    frame: f,
                    reason: "not in this domain's memory".into(),
                })?;
            out.extend_from_slice(&self.memory[start..start + page]);
        }
        Ok(Mapping::copied(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_out_matches_the_bytes_at_every_alignment() {
        let mem: Vec<u8> = (0..8192u32).map(|i| (i * 7 % 251) as u8).collect();
        let map = BufferMapper::new(mem.clone()).map(&[0, 1]).unwrap();
        for off in 0..17 {
            for len in [0, 1, 7, 8, 9, 31, 100] {
                let mut out = vec![0u8; len];
                assert!(map.copy_out(off, &mut out));
                assert_eq!(out, mem[off..off + len], "offset {off} len {len}");
            }
        }
    }

    #[test]
    fn buffer_mapper_maps_frames_in_order_and_refuses_foreign_ones() {
        let mut mem = vec![0u8; 3 * 4096];
        mem[4096] = 1;
        mem[2 * 4096] = 2;
        let m = BufferMapper::new(mem);
        let map = m.map(&[2, 1]).unwrap();
        let mut b = [0u8; 1];
        assert!(map.copy_out(0, &mut b));
        assert_eq!(b[0], 2);
        assert!(map.copy_out(4096, &mut b));
        assert_eq!(b[0], 1);
        assert!(!map.copy_out(8192, &mut b));
        assert!(matches!(m.map(&[3]), Err(MapError::Frame { frame: 3, .. })));
        assert!(matches!(m.map(&[]), Err(MapError::Count(0))));
        assert!(matches!(m.map(&[u64::MAX]), Err(MapError::Frame { .. })));
    }

    #[test]
    fn sparse_mappings_leave_refused_frames_as_holes() {
        let mut mem = vec![0u8; 2 * 4096];
        mem[4096] = 7;
        let m = BufferMapper::new(mem);
        let sparse = m.map_sparse(&[1, 5, 0]).unwrap();
        assert_eq!(sparse.present(), &[true, false, true]);
        let mut page = vec![0u8; 4096];
        assert!(sparse.copy_frame(0, &mut page));
        assert_eq!(page[0], 7);
        assert!(!sparse.copy_frame(1, &mut page));
        assert!(!sparse.copy_frame(3, &mut page));
        assert!(!sparse.copy_frame(0, &mut page[..100]));
        assert!(matches!(m.map_sparse(&[]), Err(MapError::Count(0))));
    }
}
