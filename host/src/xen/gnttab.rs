//! The control page the guest helper grants to the host: the only guest memory the host
//! writes (to clear the pending flag that coalesces trigger notifications).

use super::{last_error, XenError};
use std::mem::offset_of;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use vmark_proto::abi::{vmark_control, VMARK_ABI_VERSION, VMARK_CONTROL_MAGIC};

#[allow(non_camel_case_types, non_upper_case_globals, dead_code, clippy::all)]
mod sys {
    include!(concat!(env!("OUT_DIR"), "/xengnttab.rs"));
}

/// The mapped control page of one guest.
pub struct ControlPage {
    handle: *mut sys::xengnttab_handle,
    addr: *mut std::ffi::c_void,
}

// SAFETY: the page is shared memory accessed only through atomics; the handle is a
// /dev/xen/gntdev descriptor without thread-affine state.
unsafe impl Send for ControlPage {}
// SAFETY: as above.
unsafe impl Sync for ControlPage {}

impl ControlPage {
    /// Maps grant `gref` of `domid` read-write and checks its header.
    pub fn map(domid: u32, gref: u32) -> Result<Self, XenError> {
        // SAFETY: null logger, no flags.
        let handle = unsafe { sys::xengnttab_open(std::ptr::null_mut(), 0) };
        if handle.is_null() {
            return Err(last_error("xengnttab_open"));
        }
        // SAFETY: `handle` is open; Xen checks that `gref` is a grant from `domid` to us.
        let addr = unsafe {
            sys::xengnttab_map_grant_ref(
                handle,
                domid,
                gref,
                (libc::PROT_READ | libc::PROT_WRITE) as _,
            )
        };
        if addr.is_null() {
            let err = last_error("xengnttab_map_grant_ref");
            // SAFETY: closing the handle opened above.
            unsafe { sys::xengnttab_close(handle) };
            return Err(err);
        }
        let page = ControlPage { handle, addr };
        if page
            .u32_at(offset_of!(vmark_control, magic))
            .load(Ordering::Relaxed)
            != VMARK_CONTROL_MAGIC
        {
            return Err(XenError::ControlPage("bad magic".into()));
        }
        let abi = page
            .u32_at(offset_of!(vmark_control, abi_version))
            .load(Ordering::Relaxed)
            & 0xffff;
        if abi != VMARK_ABI_VERSION {
            return Err(XenError::ControlPage(format!(
                "ABI {abi}, expected {VMARK_ABI_VERSION}"
            )));
        }
        Ok(page)
    }

    fn u32_at(&self, off: usize) -> &AtomicU32 {
        // SAFETY: `off` is a 4-aligned field offset of vmark_control, which lies within the
        // mapped page; the page stays mapped while `self` lives; the guest accesses the same
        // words atomically (xchg/WRITE_ONCE).
        unsafe { &*((self.addr as *const u8).add(off) as *const AtomicU32) }
    }

    fn u64_at(&self, off: usize) -> &AtomicU64 {
        // SAFETY: as `u32_at`, for 8-aligned fields.
        unsafe { &*((self.addr as *const u8).add(off) as *const AtomicU64) }
    }

    /// Clears the pending flag so the guest's next trigger notifies again. Returns whether
    /// it was set.
    pub fn clear_pending(&self) -> bool {
        self.u32_at(offset_of!(vmark_control, pending))
            .swap(0, Ordering::AcqRel)
            != 0
    }

    /// Triggers the helper has seen, all marks.
    pub fn triggers(&self) -> u64 {
        self.u64_at(offset_of!(vmark_control, triggers))
            .load(Ordering::Acquire)
    }

    /// Notifications the helper has sent.
    pub fn notifications(&self) -> u64 {
        self.u64_at(offset_of!(vmark_control, notifications))
            .load(Ordering::Acquire)
    }

    /// Guest clock of the last trigger.
    pub fn last_trigger_ns(&self) -> u64 {
        self.u64_at(offset_of!(vmark_control, last_trigger_ns))
            .load(Ordering::Acquire)
    }

    /// Starts a clock-calibration round: stores the host's clock for the guest to echo.
    pub fn ping(&self, host_ns: u64) {
        self.u64_at(offset_of!(vmark_control, ping_host_ns))
            .store(host_ns, Ordering::Release);
    }

    /// The guest's answer to the ping carrying `host_ns`: its clock when it answered.
    pub fn pong(&self, host_ns: u64) -> Option<u64> {
        let echoed = self
            .u64_at(offset_of!(vmark_control, pong_host_ns))
            .load(Ordering::Acquire);
        (echoed == host_ns).then(|| {
            self.u64_at(offset_of!(vmark_control, pong_guest_ns))
                .load(Ordering::Acquire)
        })
    }

    /// Generation of the published marks.
    pub fn generation(&self) -> u64 {
        self.u64_at(offset_of!(vmark_control, generation))
            .load(Ordering::Acquire)
    }
}

impl Drop for ControlPage {
    fn drop(&mut self) {
        // SAFETY: unmapping the one page mapped in `map`, then closing its handle.
        unsafe {
            sys::xengnttab_unmap(self.handle, self.addr, 1);
            sys::xengnttab_close(self.handle);
        }
    }
}
