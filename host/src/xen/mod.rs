//! Live access to Xen guests (feature `xen`), through Xen's own libraries:
//! libxenforeignmemory (read-only mappings of guest frames), libxenevtchn (trigger events),
//! libxengnttab (the control page the guest grants), libxenctrl (pause/unpause) and
//! xenstore (what the guest publishes).
//!
//! Every handle is an RAII type: mappings are unmapped, ports unbound and handles closed on
//! drop, so a restarted or interrupted host leaves nothing behind in dom0 or Xen.

mod ctrl;
mod evtchn;
mod foreign;
mod gnttab;
mod store;

pub use ctrl::{DomainInfo, XenControl};
pub use evtchn::EventChannel;
pub use foreign::{DomainMapper, ForeignMemory};
pub use gnttab::ControlPage;
pub use store::{domains, resolve_domain, Domain, XenStore};

/// Errors from Xen's libraries.
#[derive(Debug, thiserror::Error)]
pub enum XenError {
    /// A library call failed.
    #[error("{call} failed: {source} (are you root in dom0 with the Xen tools running?)")]
    Call {
        /// The C function.
        call: &'static str,
        /// errno.
        source: std::io::Error,
    },
    /// No domain with that name or id.
    #[error("no running domain {0:?} (see `xl list`)")]
    NoSuchDomain(String),
    /// The guest granted something unusable.
    #[error("control page: {0}")]
    ControlPage(String),
}

/// The host's CLOCK_MONOTONIC in ns: the clock guest trigger times are mapped onto.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The error of the last failed call, by errno.
fn last_error(call: &'static str) -> XenError {
    XenError::Call {
        call,
        source: std::io::Error::last_os_error(),
    }
}
