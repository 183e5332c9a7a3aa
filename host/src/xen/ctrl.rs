//! libxenctrl: pausing a domain around a read (`--pause`), and what introspecting a live
//! domain needs to know about it (its kind, size and vCPU control registers).

use super::{last_error, XenError};
use crate::introspect::phys::VcpuState;
use crate::snapshot::Registers;
use xenctrl_sys as sys;

/// An open libxenctrl interface.
pub struct XenControl {
    xch: *mut sys::xc_interface,
}

// SAFETY: an xc_interface wraps a privcmd descriptor; libxenctrl serialises its own
// hypercall buffers. The host uses it from one task at a time.
unsafe impl Send for XenControl {}

impl XenControl {
    /// Opens libxenctrl.
    pub fn open() -> Result<Self, XenError> {
        // SAFETY: null loggers, no flags.
        let xch = unsafe { sys::xc_interface_open(std::ptr::null_mut(), std::ptr::null_mut(), 0) };
        if xch.is_null() {
            return Err(last_error("xc_interface_open"));
        }
        Ok(XenControl { xch })
    }

    /// Pauses `domid`.
    pub fn pause(&self, domid: u32) -> Result<(), XenError> {
        // SAFETY: `xch` is open; Xen validates the domain id.
        if unsafe { sys::xc_domain_pause(self.xch, domid) } != 0 {
            return Err(last_error("xc_domain_pause"));
        }
        Ok(())
    }

    /// Unpauses `domid`.
    pub fn unpause(&self, domid: u32) -> Result<(), XenError> {
        // SAFETY: as `pause`.
        if unsafe { sys::xc_domain_unpause(self.xch, domid) } != 0 {
            return Err(last_error("xc_domain_unpause"));
        }
        Ok(())
    }
}

/// What introspection needs to know about a domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DomainInfo {
    /// HVM or PVH (page tables hold guest frames) rather than PV (machine frames).
    pub hvm: bool,
    /// Highest vCPU id.
    pub max_vcpu_id: u32,
    /// Highest guest frame number the domain has mapped (`xc_domain_maximum_gpfn`).
    pub max_gpfn: u64,
    /// Being destroyed.
    pub dying: bool,
    /// Pages the domain holds.
    pub tot_pages: u64,
}

impl XenControl {
    /// Kind and size of `domid`.
    pub fn domain_info(&self, domid: u32) -> Result<DomainInfo, XenError> {
        let mut info = sys::xc_domaininfo_t::default();
        // SAFETY: `xch` is open and `info` is one writable xc_domaininfo_t, as asked for.
        let n = unsafe { sys::xc_domain_getinfolist(self.xch, domid, 1, &mut info) };
        if n != 1 || u32::from(info.domain) != domid {
            return Err(last_error("xc_domain_getinfolist"));
        }
        let mut gpfns: sys::xen_pfn_t = 0;
        // SAFETY: `xch` is open; `gpfns` is one writable xen_pfn_t.
        if unsafe { sys::xc_domain_maximum_gpfn(self.xch, domid, &mut gpfns) } < 0 {
            return Err(last_error("xc_domain_maximum_gpfn"));
        }
        Ok(DomainInfo {
            hvm: info.flags & sys::XEN_DOMINF_hvm_guest != 0,
            max_vcpu_id: info.max_vcpu_id,
            max_gpfn: gpfns as u64,
            dying: info.flags & sys::XEN_DOMINF_dying != 0,
            tot_pages: info.tot_pages,
        })
    }

    /// Whether `domid` exists and is not being destroyed.
    pub fn domain_alive(&self, domid: u32) -> bool {
        let mut info = sys::xc_domaininfo_t::default();
        // SAFETY: `xch` is open and `info` is one writable xc_domaininfo_t.
        let n = unsafe { sys::xc_domain_getinfolist(self.xch, domid, 1, &mut info) };
        n == 1 && u32::from(info.domain) == domid && info.flags & sys::XEN_DOMINF_dying == 0
    }

    /// Whether this domain's event-channel port `local_port` is still connected to port
    /// `remote_port` of `domid` (after the guest closes its end, ours is left unbound).
    pub fn evtchn_connected(&self, local_port: u32, domid: u32, remote_port: u32) -> bool {
        /// DOMID_SELF of xen.h.
        const DOMID_SELF: u16 = 0x7ff0;
        let mut st = sys::evtchn_status {
            dom: DOMID_SELF,
            port: local_port,
            ..Default::default()
        };
        // SAFETY: `xch` is open; `st` is one evtchn_status with its in-fields set.
        if unsafe { sys::xc_evtchn_status(self.xch, &mut st) } != 0 {
            return false;
        }
        if st.status != sys::EVTCHNSTAT_interdomain {
            return false;
        }
        // SAFETY: for an interdomain channel, Xen filled in the `interdomain` member.
        let peer = unsafe { st.u.interdomain };
        u32::from(peer.dom) == domid && peer.port == remote_port
    }

    /// Control registers of vCPU `vcpu` of a 64-bit domain. CR3 holds a guest frame for
    /// HVM/PVH and a machine frame for PV guests: what a foreign mapping takes either way.
    pub fn vcpu_state(&self, domid: u32, vcpu: u32) -> Result<VcpuState, XenError> {
        let mut ctx = sys::vcpu_guest_context_any_t::default();
        // SAFETY: `xch` is open and `ctx` is a writable vcpu_guest_context_any_t, the size
        // libxenctrl writes for any guest width.
        if unsafe { sys::xc_vcpu_getcontext(self.xch, domid, vcpu, &mut ctx) } != 0 {
            return Err(last_error("xc_vcpu_getcontext"));
        }
        // SAFETY: every field of the x86-64 view is a plain integer, so any bytes
        // libxenctrl wrote (or the zeroes of `default`) are a valid value of it.
        let x64 = unsafe { ctx.x64 };
        Ok(VcpuState {
            cr0: x64.ctrlreg[0],
            cr3: x64.ctrlreg[3],
            cr4: x64.ctrlreg[4],
            ..VcpuState::default()
        })
    }
}

impl XenControl {
    /// Every register of vCPU `vcpu` of a 64-bit domain that a core file records
    /// (`NT_PRSTATUS` and the control registers), for `vmark snapshot`.
    pub fn vcpu_registers(&self, domid: u32, vcpu: u32) -> Result<Registers, XenError> {
        let mut ctx = sys::vcpu_guest_context_any_t::default();
        // SAFETY: as in `vcpu_state`.
        if unsafe { sys::xc_vcpu_getcontext(self.xch, domid, vcpu, &mut ctx) } != 0 {
            return Err(last_error("xc_vcpu_getcontext"));
        }
        // SAFETY: every field of the x86-64 view, and every member of the register unions
        // (each a u64 overlaid with its narrower names), is a plain integer: any bytes
        // libxenctrl wrote are a valid value of each.
        let (x64, r) = unsafe {
            let x64 = ctx.x64;
            let u = x64.user_regs;
            let r = [
                u.__bindgen_anon_1.r15,
                u.__bindgen_anon_2.r14,
                u.__bindgen_anon_3.r13,
                u.__bindgen_anon_4.r12,
                u.__bindgen_anon_5.rbp,
                u.__bindgen_anon_6.rbx,
                u.__bindgen_anon_7.r11,
                u.__bindgen_anon_8.r10,
                u.__bindgen_anon_9.r9,
                u.__bindgen_anon_10.r8,
                u.__bindgen_anon_11.rax,
                u.__bindgen_anon_12.rcx,
                u.__bindgen_anon_13.rdx,
                u.__bindgen_anon_14.rsi,
                u.__bindgen_anon_15.rdi,
                u.__bindgen_anon_16.rip,
                u.__bindgen_anon_17.rflags,
                u.__bindgen_anon_18.rsp,
            ];
            (x64, r)
        };
        let u = x64.user_regs;
        Ok(Registers {
            r15: r[0],
            r14: r[1],
            r13: r[2],
            r12: r[3],
            rbp: r[4],
            rbx: r[5],
            r11: r[6],
            r10: r[7],
            r9: r[8],
            r8: r[9],
            rax: r[10],
            rcx: r[11],
            rdx: r[12],
            rsi: r[13],
            rdi: r[14],
            rip: r[15],
            rflags: r[16],
            rsp: r[17],
            cs: u.cs.into(),
            ss: u.ss.into(),
            ds: u.ds.into(),
            es: u.es.into(),
            fs: u.fs.into(),
            gs: u.gs.into(),
            fs_base: x64.fs_base,
            // The GS base in use: the user one while the vCPU runs in user mode.
            gs_base: if u.cs & 3 != 0 {
                x64.gs_base_user
            } else {
                x64.gs_base_kernel
            },
            cr0: x64.ctrlreg[0],
            cr2: x64.ctrlreg[2],
            cr3: x64.ctrlreg[3],
            cr4: x64.ctrlreg[4],
        })
    }
}

impl Drop for XenControl {
    fn drop(&mut self) {
        // SAFETY: closing the interface opened in `open`, once.
        unsafe {
            sys::xc_interface_close(self.xch);
        }
    }
}
