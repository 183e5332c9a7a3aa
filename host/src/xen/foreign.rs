//! Read-only foreign mappings of guest frames.

use super::{last_error, XenError};
use crate::frames::{
    FrameMapper, MapError, MappedMemory, Mapping, SparseMapping, MAX_FRAMES_PER_MAPPING,
};
use std::sync::Arc;
use xenforeignmemory_sys as sys;

/// An open libxenforeignmemory handle.
pub struct ForeignMemory {
    handle: *mut sys::xenforeignmemory_handle,
}

// SAFETY: libxenforeignmemory handles wrap a privcmd file descriptor and carry no
// thread-affine state; map and unmap calls may be made from any thread.
unsafe impl Send for ForeignMemory {}
// SAFETY: as above; concurrent map/unmap on one handle are independent ioctls.
unsafe impl Sync for ForeignMemory {}

impl ForeignMemory {
    /// Opens the library (needs /dev/xen/privcmd, i.e. root in dom0).
    pub fn open() -> Result<Arc<Self>, XenError> {
        // SAFETY: FFI call with a null logger (the library then logs to stderr) and no flags.
        let handle = unsafe { sys::xenforeignmemory_open(std::ptr::null_mut(), 0) };
        if handle.is_null() {
            return Err(last_error("xenforeignmemory_open"));
        }
        Ok(Arc::new(ForeignMemory { handle }))
    }
}

impl Drop for ForeignMemory {
    fn drop(&mut self) {
        // SAFETY: the handle came from xenforeignmemory_open and every mapping holds an Arc
        // to this handle, so none is still mapped when it is closed.
        unsafe {
            sys::xenforeignmemory_close(self.handle);
        }
    }
}

/// Maps frames of one domain.
#[derive(Clone)]
pub struct DomainMapper {
    fm: Arc<ForeignMemory>,
    domid: u32,
}

impl DomainMapper {
    /// A mapper for `domid`.
    pub fn new(fm: Arc<ForeignMemory>, domid: u32) -> Self {
        DomainMapper { fm, domid }
    }
}

struct ForeignPages {
    fm: Arc<ForeignMemory>,
    addr: *mut std::ffi::c_void,
    pages: usize,
}

// SAFETY: the mapping is plain memory owned by this value until drop; reads go through
// `Mapping::copy_out` with volatile loads.
unsafe impl Send for ForeignPages {}
// SAFETY: as above; the mapping is read-only, so shared references only read.
unsafe impl Sync for ForeignPages {}

impl MappedMemory for ForeignPages {
    fn base(&self) -> *const u8 {
        self.addr as *const u8
    }
    fn len(&self) -> usize {
        self.pages * crate::publish::PAGE_SIZE as usize
    }
}

impl Drop for ForeignPages {
    fn drop(&mut self) {
        // SAFETY: `addr`/`pages` are exactly what xenforeignmemory_map returned and were
        // asked for, and the handle is kept alive by `fm`.
        unsafe {
            sys::xenforeignmemory_unmap(self.fm.handle, self.addr, self.pages as _);
        }
    }
}

impl DomainMapper {
    /// One `xenforeignmemory_map` call for `frames`: the mapping (holes where Xen refused
    /// a frame) and each frame's error (0 when mapped).
    fn map_batch(&self, frames: &[u64]) -> Result<(Mapping, Vec<i32>), MapError> {
        if frames.is_empty() || frames.len() > MAX_FRAMES_PER_MAPPING {
            return Err(MapError::Count(frames.len()));
        }
        let arr: Vec<sys::xen_pfn_t> = frames.iter().map(|&f| f as sys::xen_pfn_t).collect();
        let mut errs = vec![0i32; frames.len()];
        // SAFETY: `arr` and `errs` hold `frames.len()` elements each and outlive the call;
        // PROT_READ makes the mapping read-only, so the guest's memory cannot be changed
        // through it. Xen itself refuses frames the domain does not own.
        let addr = unsafe {
            sys::xenforeignmemory_map(
                self.fm.handle,
                self.domid,
                libc::PROT_READ,
                frames.len(),
                arr.as_ptr(),
                errs.as_mut_ptr(),
            )
        };
        if addr.is_null() {
            return Err(MapError::Map {
                domid: self.domid,
                count: frames.len(),
                reason: std::io::Error::last_os_error().to_string(),
            });
        }
        let pages = ForeignPages {
            fm: self.fm.clone(),
            addr,
            pages: frames.len(),
        };
        Ok((Mapping::new(Arc::new(pages)), errs))
    }
}

impl FrameMapper for DomainMapper {
    fn map(&self, frames: &[u64]) -> Result<Mapping, MapError> {
        let (mapping, errs) = self.map_batch(frames)?;
        // Per-frame failures still return a mapping (with holes): refuse it as a whole.
        if let Some((i, e)) = errs.iter().enumerate().find(|(_, e)| **e != 0) {
            return Err(MapError::Frame {
                frame: frames[i],
                reason: std::io::Error::from_raw_os_error(e.abs()).to_string(),
            });
        }
        Ok(mapping)
    }

    fn map_sparse(&self, frames: &[u64]) -> Result<SparseMapping, MapError> {
        let (mapping, errs) = self.map_batch(frames)?;
        let present = errs.iter().map(|&e| e == 0).collect();
        Ok(SparseMapping::new(Some(mapping), present))
    }
}
