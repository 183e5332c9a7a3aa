//! `vmark snapshot SOURCE FILE`: a live domain's memory and vCPU registers (or a dump's,
//! re-written) as an ELF core file that vmark, drgn and volatility3 open
//! ([`crate::snapshot`]).
//!
//! For a live domain, the kernel is located and its memory map (or P2M) and `VMCOREINFO`
//! read *before* the pause; the domain is paused only for the registers and the memory, so
//! the snapshot is one instant of the guest, and for at most as many frames as it holds
//! (`tot_pages`, from Xen), whatever the guest's map says. The file is its owner's only. Without
//! a kernel vmark can read, every frame up to the domain's highest is tried (slower: Xen
//! refuses the absent ones one by one). A Xen PV guest's memory is machine frames: which
//! ones, and in what pseudo-physical order, its own P2M says ([`guest::pv_p2m`]); the
//! file keeps them ([`crate::snapshot`]'s `VMARK` note), so vmark walks its page tables.

use crate::cli_introspect::{CliError, KernelFiles, SourceSpec, Target};
#[cfg(feature = "xen")]
use crate::introspect::kernel::Kernel;
use crate::introspect::phys::PAGE_SIZE;
use crate::snapshot::guest::{self, VmcoreinfoOrigin};
use crate::snapshot::{self, Contents, Registers, Stats};
use std::io::Write;
use std::path::Path;
use std::time::Instant;

/// How `vmark snapshot` runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct SnapshotOptions {
    /// Do not pause a live domain (the snapshot is then not one instant).
    pub no_pause: bool,
    /// One JSON object instead of a sentence.
    pub json: bool,
}

/// What a snapshot did, for the report.
struct Report {
    stats: Stats,
    seconds: f64,
    paused_ns: Option<u64>,
    vmcoreinfo: String,
    frames_from: &'static str,
}

/// Writes a snapshot of `spec` to `path` and reports it on `out`.
pub fn snapshot(
    spec: &SourceSpec,
    files: &KernelFiles,
    path: &Path,
    opts: SnapshotOptions,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let t0 = Instant::now();
    let (label, stats, paused_ns, frames_from, vmcoreinfo_note) = match spec {
        SourceSpec::File(source, _) => {
            refuse_overwriting(source, path)?;
            let target = Target::open(spec)?.with_files(files.clone());
            let mem = target.memory();
            if mem.frame_kind() != crate::introspect::phys::FrameKind::Physical {
                return Err(CliError::Usage(
                    "this dump is of a Xen PV guest: vmark reads it as it is (its page tables \
                     hold machine frames, which a re-written file would not map)"
                        .into(),
                ));
            }
            let (vmcoreinfo, origin) = match target.kernel(false) {
                Ok(k) => guest::vmcoreinfo(&k),
                Err(e) => (Vec::new(), VmcoreinfoOrigin::Vmark(e.to_string())),
            };
            let note = origin_note(&origin, &vmcoreinfo);
            let frames = mem
                .regions()
                .iter()
                .map(|r| r.start / PAGE_SIZE..r.end().div_ceil(PAGE_SIZE))
                .collect();
            let contents = Contents {
                frames: snapshot::normalise(frames, mem.max_address().div_ceil(PAGE_SIZE)),
                vcpus: mem.vcpus().iter().map(registers_of).collect(),
                vmcoreinfo,
                p2m: None,
                max_present: None,
            };
            let stats = write_file(path, |file| {
                Ok(snapshot::write_core(
                    target.mapper().as_ref(),
                    &contents,
                    file,
                    &|| false,
                )?)
            })?;
            (target.label.clone(), stats, None, "the dump's memory", note)
        }
        SourceSpec::Domain(d) => domain(d, path, opts)?,
    };
    let report = Report {
        stats,
        seconds: t0.elapsed().as_secs_f64(),
        paused_ns,
        vmcoreinfo: vmcoreinfo_note,
        frames_from,
    };
    write_report(&label, path, &report, opts.json, out)
}

/// Refuses to write the snapshot over the dump it is made from.
fn refuse_overwriting(source: &Path, path: &Path) -> Result<(), CliError> {
    use std::os::unix::fs::MetadataExt;
    if let (Ok(a), Ok(b)) = (std::fs::metadata(source), std::fs::metadata(path)) {
        if (a.dev(), a.ino()) == (b.dev(), b.ino()) {
            return Err(CliError::Usage(format!(
                "{} is the dump being read: write the snapshot elsewhere",
                path.display()
            )));
        }
    }
    Ok(())
}

/// Creates `path` readable by its owner only (it holds a guest's whole memory), never
/// through a symbolic link, has `write` fill it, and removes it when that fails: no
/// partial snapshot is left under a snapshot's name.
fn write_file<T>(
    path: &Path,
    write: impl FnOnce(&std::fs::File) -> Result<T, CliError>,
) -> Result<T, CliError> {
    let file = crate::private_file::create(path)?;
    match write(&file) {
        Ok(done) => Ok(done),
        Err(e) => {
            drop(file);
            let _ = std::fs::remove_file(path);
            Err(e)
        }
    }
}

fn registers_of(v: &crate::introspect::phys::VcpuState) -> Registers {
    Registers {
        rip: v.rip,
        rsp: v.rsp,
        cr0: v.cr0,
        cr3: v.cr3,
        cr4: v.cr4,
        ..Registers::default()
    }
}

/// A live domain ready to be snapshotted, as often as asked: its kernel located once, what
/// to map learnt before each pause.
#[cfg(feature = "xen")]
pub struct DomainSnapshotter {
    domid: u32,
    label: String,
    target: Target,
    kernel: Option<Kernel>,
    hvm: bool,
    /// HVM/PVH: the frames of the guest's memory map (it does not change while it runs).
    frames: Vec<std::ops::Range<u64>>,
    frames_from: &'static str,
    vmcoreinfo: Vec<u8>,
    vmcoreinfo_note: String,
    max_vcpu_id: u32,
    ctrl: crate::xen::XenControl,
}

#[cfg(feature = "xen")]
impl DomainSnapshotter {
    /// Locates `spec`'s kernel and reads its memory map and `VMCOREINFO`.
    pub fn prepare(spec: &str) -> Result<Self, CliError> {
        use crate::xen::{self, XenControl, XenStore};
        let target = Target::open(&SourceSpec::Domain(spec.to_string()))?;
        let domain = xen::resolve_domain(&XenStore::open()?, spec)?;
        let ctrl = XenControl::open()?;
        let info = ctrl.domain_info(domain.id)?;
        // An HVM/PVH guest's memory map is read with the kernel's types; a PV guest's P2M
        // and any guest's VMCOREINFO need only symbols (and the types take a while).
        let kernel = target.kernel(info.hvm).ok();
        let limit = info.max_gpfn.saturating_add(1);
        let (frames, frames_from) = match (info.hvm, kernel.as_ref().map(guest::memory_frames)) {
            (true, Some(Ok(frames))) => (frames, "the guest's memory map"),
            (true, _) => (
                std::iter::once(0..limit).collect(),
                "every frame up to the domain's highest",
            ),
            (false, _) => (Vec::new(), "the guest's P2M"),
        };
        if !info.hvm && kernel.is_none() {
            return Err(CliError::Usage(format!(
                "{spec} is a PV domain and its kernel was not found: its P2M (which machine \
                 frames are its memory) cannot be read"
            )));
        }
        let (vmcoreinfo, origin) = match &kernel {
            Some(k) => guest::vmcoreinfo(k),
            None => (
                Vec::new(),
                VmcoreinfoOrigin::Vmark("no kernel found".into()),
            ),
        };
        Ok(DomainSnapshotter {
            domid: domain.id,
            label: domain.name.clone(),
            hvm: info.hvm,
            frames: snapshot::normalise(frames, limit),
            frames_from,
            vmcoreinfo_note: origin_note(&origin, &vmcoreinfo),
            vmcoreinfo,
            max_vcpu_id: info.max_vcpu_id.min(snapshot::MAX_VCPUS as u32 - 1),
            target,
            kernel,
            ctrl,
        })
    }

    /// Where the frames come from, for reports.
    pub fn frames_from(&self) -> &'static str {
        self.frames_from
    }

    /// Writes one snapshot to `path`, the domain paused for it unless `no_pause`; returns
    /// what was written and how long the domain was paused. A termination signal during
    /// the pause gives the copy up (the domain runs again, the file is removed).
    pub fn take(&self, path: &Path, no_pause: bool) -> Result<(Stats, Option<u64>), CliError> {
        use crate::watch::{PauseGuard, Pauser};
        // PV: the P2M changes as the guest balloons, so it is read again each time (before
        // the pause: the guest's own list, through its page tables), clipped to what
        // vmark reads.
        let (frames, p2m) = match (&self.kernel, self.hvm) {
            (Some(k), false) => {
                // What was cached of the guest's memory may be stale by now: its mappings
                // and which of its frames Xen maps both change as it balloons.
                k.space().translator().flush();
                let table = guest::pv_p2m(k, guest::MAX_P2M_ENTRIES)?;
                (
                    std::iter::once(0..table.len() as u64).collect(),
                    Some(table),
                )
            }
            _ => (self.frames.clone(), None),
        };
        let max_present = self.ctrl.domain_info(self.domid)?.tot_pages;
        let pauser: &dyn Pauser = &self.ctrl;
        let guard = match no_pause {
            true => None,
            false => Some(
                PauseGuard::pause(pauser, self.domid)
                    .map_err(|e| CliError::Usage(format!("pausing the domain: {e}")))?,
            ),
        };
        // Written (or removed) while the guard holds the termination signals: one that
        // arrived is delivered after the unpause, with no partial file left.
        let written = write_file(path, |file| {
            let contents = Contents {
                frames,
                vcpus: (0..=self.max_vcpu_id)
                    .filter_map(|v| self.ctrl.vcpu_registers(self.domid, v).ok())
                    .collect(),
                vmcoreinfo: self.vmcoreinfo.clone(),
                p2m,
                max_present: Some(max_present),
            };
            Ok(snapshot::write_core(
                self.target.mapper().as_ref(),
                &contents,
                file,
                &termination_pending,
            )?)
        });
        let paused = match guard {
            Some(g) => Some(
                g.resume()
                    .map_err(|e| CliError::Usage(format!("unpausing the domain: {e}")))?,
            ),
            None => None,
        };
        Ok((written?, paused))
    }
}

/// Whether SIGINT, SIGTERM, SIGHUP or SIGQUIT is pending (they are blocked while the
/// domain is paused, so that none ends the process with the guest paused).
#[cfg(feature = "xen")]
fn termination_pending() -> bool {
    // SAFETY: `set` is a sigset_t owned here, filled by sigpending and only read by
    // sigismember; both are plain libc calls with no other memory involved.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        if libc::sigpending(&mut set) != 0 {
            return false;
        }
        [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT]
            .iter()
            .any(|&sig| libc::sigismember(&set, sig) == 1)
    }
}

#[cfg(feature = "xen")]
type DomainReport = (String, Stats, Option<u64>, &'static str, String);

#[cfg(feature = "xen")]
fn domain(spec: &str, path: &Path, opts: SnapshotOptions) -> Result<DomainReport, CliError> {
    let s = DomainSnapshotter::prepare(spec)?;
    let (stats, paused) = s.take(path, opts.no_pause)?;
    Ok((
        s.label.clone(),
        stats,
        paused,
        s.frames_from,
        s.vmcoreinfo_note.clone(),
    ))
}

#[cfg(not(feature = "xen"))]
fn domain(
    spec: &str,
    _: &Path,
    _: SnapshotOptions,
) -> Result<(String, Stats, Option<u64>, &'static str, String), CliError> {
    Err(CliError::Usage(format!(
        "xen:{spec}: this vmark was built without Xen support"
    )))
}

fn origin_note(origin: &VmcoreinfoOrigin, text: &[u8]) -> String {
    match origin {
        VmcoreinfoOrigin::Guest => "the guest's".to_string(),
        VmcoreinfoOrigin::Vmark(why) if !text.is_empty() => format!("vmark's ({why})"),
        VmcoreinfoOrigin::Vmark(why) => format!("none ({why})"),
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 20) as f64
}

fn write_report(
    label: &str,
    path: &Path,
    r: &Report,
    json: bool,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let s = &r.stats;
    if json {
        let v = serde_json::json!({
            "source": label,
            "file": path.display().to_string(),
            "frames_from": r.frames_from,
            "frames_tried": s.frames_tried,
            "frames_present": s.frames_present,
            "frames_zero": s.frames_zero,
            "segments": s.segments,
            "map_calls": s.map_calls,
            "bytes_written": s.bytes_written,
            "file_len": s.file_len,
            "seconds": r.seconds,
            "paused_ms": r.paused_ns.map(|n| n as f64 / 1e6),
            "vmcoreinfo": r.vmcoreinfo,
        });
        writeln!(out, "{v}")?;
        return Ok(());
    }
    let paused = match r.paused_ns {
        Some(n) => format!("the domain paused {:.3} s", n as f64 / 1e9),
        None => "not paused".to_string(),
    };
    writeln!(
        out,
        "snapshot of {} written to {}: {:.1} MiB of memory from {} ({} of {} frames \
         present, in {} segments; {} pages of zeroes left as holes, {:.1} MiB written) in \
         {:.2} s, {paused}; VMCOREINFO: {}",
        vmark_proto::text::escape(label),
        path.display(),
        mib(s.frames_present * PAGE_SIZE),
        r.frames_from,
        s.frames_present,
        s.frames_tried,
        s.segments,
        s.frames_zero,
        mib(s.bytes_written),
        r.seconds,
        vmark_proto::text::escape(&r.vmcoreinfo),
    )?;
    Ok(())
}
