//! Live guests through a [`FrameMapper`] (Xen foreign mappings), with a bounded cache of
//! mapped frames.
//!
//! Each page is mapped once and kept mapped while it stays in the cache; reads copy out
//! with the volatile loads of [`Mapping::copy_out`], so they see the guest's current bytes
//! (the cache holds mappings, not copies). [`PhysicalMemory::flush`] unmaps everything,
//! which matters after the guest balloons or remaps memory.

use super::{checked_end, FrameKind, MemError, PhysicalMemory, PAGE_SIZE};
use crate::frames::{FrameMapper, Mapping};
use crate::introspect::cache::ClockCache;
use crate::introspect::m2p::{MachineToPhys, PhysToMachine};
use std::sync::{Arc, Mutex};

/// Default number of frames kept mapped.
pub const DEFAULT_MAPPED_FRAMES: usize = 1024;

/// A live domain's memory.
pub struct LiveFrames {
    mapper: Arc<dyn FrameMapper>,
    max_address: u64,
    kind: FrameKind,
    p2m: Option<Arc<dyn PhysToMachine>>,
    m2p: Option<Arc<dyn MachineToPhys>>,
    mapped: Mutex<ClockCache<u64, Mapping>>,
}

impl LiveFrames {
    /// An HVM/PVH guest (frames mapped by guest-physical number) of `max_address` bytes.
    pub fn new(mapper: Arc<dyn FrameMapper>, max_address: u64, cache_frames: usize) -> Self {
        LiveFrames {
            mapper,
            max_address,
            kind: FrameKind::Physical,
            p2m: None,
            m2p: None,
            mapped: Mutex::new(ClockCache::new(cache_frames)),
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

    fn mapping(&self, pfn: u64) -> Result<Mapping, MemError> {
        if let Ok(mut c) = self.mapped.lock() {
            if let Some(m) = c.get(&pfn) {
                return Ok(m.clone());
            }
        }
        let frame = match &self.p2m {
            Some(p2m) => p2m.p2m(pfn).ok_or(MemError::NotPresent(pfn * PAGE_SIZE))?,
            None => pfn,
        };
        let m = self.mapper.map(&[frame]).map_err(|e| MemError::Map {
            frame,
            reason: e.to_string(),
        })?;
        if let Ok(mut c) = self.mapped.lock() {
            c.insert(pfn, m.clone());
        }
        Ok(m)
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
            let off = (addr % PAGE_SIZE) as usize;
            let n = (buf.len() - done).min(PAGE_SIZE as usize - off);
            let m = self.mapping(addr / PAGE_SIZE)?;
            if !m.copy_out(off, &mut buf[done..done + n]) {
                return Err(MemError::NotPresent(addr));
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
}
