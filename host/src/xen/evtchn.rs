//! The event channel the guest helper offers: bound here, it wakes the host on triggers.

use super::{last_error, XenError};
use std::os::fd::{AsRawFd, RawFd};
use xenevtchn_sys as sys;

/// A bound interdomain event channel.
pub struct EventChannel {
    handle: *mut sys::xenevtchn_handle,
    local_port: u32,
}

// SAFETY: the handle wraps a /dev/xen/evtchn descriptor; calls on it are ioctls and reads
// with no thread-affine state. The host uses it from one task at a time.
unsafe impl Send for EventChannel {}

impl EventChannel {
    /// Binds to `remote_port` of `domid`.
    pub fn bind(domid: u32, remote_port: u32) -> Result<Self, XenError> {
        // SAFETY: null logger, no flags.
        let handle = unsafe { sys::xenevtchn_open(std::ptr::null_mut(), 0) };
        if handle.is_null() {
            return Err(last_error("xenevtchn_open"));
        }
        // SAFETY: `handle` is open; the port number is only a number to Xen, which checks
        // that it is an unbound port of `domid` offered to us.
        let port = unsafe { sys::xenevtchn_bind_interdomain(handle, domid, remote_port) };
        if port < 0 {
            let err = last_error("xenevtchn_bind_interdomain");
            // SAFETY: closing the handle opened above.
            unsafe { sys::xenevtchn_close(handle) };
            return Err(err);
        }
        Ok(EventChannel {
            handle,
            local_port: port as u32,
        })
    }

    /// Collects a pending notification (after the fd polled readable) and re-enables
    /// delivery. Returns whether it was ours.
    pub fn take_pending(&self) -> Result<bool, XenError> {
        // SAFETY: `handle` is open; xenevtchn_pending reads one port number from the fd.
        let port = unsafe { sys::xenevtchn_pending(self.handle) };
        if port < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::WouldBlock {
                return Ok(false);
            }
            return Err(XenError::Call {
                call: "xenevtchn_pending",
                source: e,
            });
        }
        // SAFETY: unmasking the port we were notified on.
        if unsafe { sys::xenevtchn_unmask(self.handle, port as u32) } < 0 {
            return Err(last_error("xenevtchn_unmask"));
        }
        Ok(port as u32 == self.local_port)
    }

    /// Notifies the guest (clock calibration pings).
    pub fn notify(&self) -> Result<(), XenError> {
        // SAFETY: `handle` is open and `local_port` is bound.
        if unsafe { sys::xenevtchn_notify(self.handle, self.local_port) } < 0 {
            return Err(last_error("xenevtchn_notify"));
        }
        Ok(())
    }

    /// The local port.
    pub fn local_port(&self) -> u32 {
        self.local_port
    }
}

impl AsRawFd for EventChannel {
    fn as_raw_fd(&self) -> RawFd {
        // SAFETY: `handle` is open for the life of self.
        unsafe { sys::xenevtchn_fd(self.handle) }
    }
}

impl Drop for EventChannel {
    fn drop(&mut self) {
        // SAFETY: unbinding our own port and closing our handle, once. The guest's port
        // returns to unbound, so a later host can bind it again.
        unsafe {
            sys::xenevtchn_unbind(self.handle, self.local_port);
            sys::xenevtchn_close(self.handle);
        }
    }
}
