//! A bounded page cache in front of any [`PhysicalMemory`].

use super::{checked_end, FrameKind, MemError, PhysicalMemory, Region, VcpuState, PAGE_SIZE};
use crate::introspect::cache::ClockCache;
use crate::introspect::m2p::MachineToPhys;
use std::sync::{Arc, Mutex};

/// Default number of cached pages (16 MiB).
pub const DEFAULT_PAGES: usize = 4096;

type Page = Arc<[u8; PAGE_SIZE as usize]>;

/// Caches whole 4 KiB pages of an inner source (clock eviction, fixed capacity).
/// Live sources change underneath: call [`PhysicalMemory::flush`] before each consistent
/// snapshot you want to see.
pub struct PageCached<M> {
    inner: M,
    pages: Mutex<ClockCache<u64, Page>>,
}

impl<M: PhysicalMemory> PageCached<M> {
    /// Wraps `inner` with room for `pages` pages.
    pub fn new(inner: M, pages: usize) -> Self {
        PageCached {
            inner,
            pages: Mutex::new(ClockCache::new(pages)),
        }
    }

    /// The wrapped source.
    pub fn inner(&self) -> &M {
        &self.inner
    }

    /// (hits, misses) of the cache.
    pub fn stats(&self) -> (u64, u64) {
        self.pages.lock().map(|c| c.stats()).unwrap_or_default()
    }

    fn page(&self, frame: u64) -> Result<Page, MemError> {
        if let Ok(mut c) = self.pages.lock() {
            if let Some(p) = c.get(&frame) {
                return Ok(p.clone());
            }
        }
        let mut buf = [0u8; PAGE_SIZE as usize];
        self.inner.read(frame * PAGE_SIZE, &mut buf)?;
        let page: Page = Arc::new(buf);
        if let Ok(mut c) = self.pages.lock() {
            c.insert(frame, page.clone());
        }
        Ok(page)
    }
}

impl<M: PhysicalMemory> PhysicalMemory for PageCached<M> {
    fn read(&self, paddr: u64, buf: &mut [u8]) -> Result<(), MemError> {
        checked_end(paddr, buf.len())?;
        let mut done = 0usize;
        while done < buf.len() {
            let addr = paddr + done as u64;
            let off = (addr % PAGE_SIZE) as usize;
            let n = (buf.len() - done).min(PAGE_SIZE as usize - off);
            let page = self.page(addr / PAGE_SIZE)?;
            buf[done..done + n].copy_from_slice(&page[off..off + n]);
            done += n;
        }
        Ok(())
    }
    fn max_address(&self) -> u64 {
        self.inner.max_address()
    }
    fn regions(&self) -> Vec<Region> {
        self.inner.regions()
    }
    fn frame_kind(&self) -> FrameKind {
        self.inner.frame_kind()
    }
    fn machine_to_phys(&self) -> Option<Arc<dyn MachineToPhys>> {
        self.inner.machine_to_phys()
    }
    fn vcpus(&self) -> Vec<VcpuState> {
        self.inner.vcpus()
    }
    fn vmcoreinfo(&self) -> Option<Arc<str>> {
        self.inner.vmcoreinfo()
    }
    fn phys_to_machine(&self) -> Option<Arc<dyn crate::introspect::m2p::PhysToMachine>> {
        self.inner.phys_to_machine()
    }
    fn flush(&self) {
        if let Ok(mut c) = self.pages.lock() {
            c.clear();
        }
        self.inner.flush();
    }
}
