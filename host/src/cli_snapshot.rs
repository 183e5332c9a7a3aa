//! `vmark snapshot SOURCE FILE`: a live domain's memory and vCPU registers (or a dump's,
//! re-written) as an ELF core file that vmark, drgn, volatility3 and crash open
//! ([`crate::snapshot`]).
//!
//! For a live domain, the kernel is located and its memory map and `VMCOREINFO`
//! read *before* the pause (they do not change while it runs); the domain is paused only
//! for the registers and the memory, so the snapshot is one instant of the guest. Without
//! a kernel vmark can read, every frame up to the domain's highest is tried (slower: Xen
//! refuses the absent ones one by one). A Xen PV guest's memory is machine frames: which
//! ones, and in what pseudo-physical order, its own P2M says ([`guest::pv_p2m`]); the
//! file keeps them ([`crate::snapshot`]'s `VMARK` note), so vmark walks its page tables.

use crate::cli_introspect::{CliError, KernelFiles, SourceSpec, Target};
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
    let target = Target::open(spec)?.with_files(files.clone());
    let types = match spec {
        SourceSpec::File(..) => false,
        #[cfg(feature = "xen")]
        SourceSpec::Domain(d) => needs_types(d)?,
        #[cfg(not(feature = "xen"))]
        SourceSpec::Domain(_) => false,
    };
    let kernel = target.kernel(types);
    let (stats, paused_ns, frames_from, vmcoreinfo_note) = match spec {
        SourceSpec::File(..) => {
            let (vmcoreinfo, origin) = match &kernel {
                Ok(k) => guest::vmcoreinfo(k),
                Err(e) => (Vec::new(), VmcoreinfoOrigin::Vmark(e.to_string())),
            };
            let note = origin_note(&origin, &vmcoreinfo);
            let mem = target.memory();
            if mem.frame_kind() != crate::introspect::phys::FrameKind::Physical {
                return Err(CliError::Usage(
                    "this dump is of a Xen PV guest: vmark reads it as it is (its page tables \
                     hold machine frames, which a re-written file would not map)"
                        .into(),
                ));
            }
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
            };
            let file = std::fs::File::create(path)?;
            let stats = snapshot::write_core(target.mapper().as_ref(), &contents, &file)?;
            (stats, None, "the dump's memory", note)
        }
        SourceSpec::Domain(d) => domain(&target, d, kernel.ok(), path, opts)?,
    };
    let report = Report {
        stats,
        seconds: t0.elapsed().as_secs_f64(),
        paused_ns,
        vmcoreinfo: vmcoreinfo_note,
        frames_from,
    };
    write_report(&target.label, path, &report, opts.json, out)
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

/// A live HVM/PVH domain ready to be snapshotted, as often as asked: what to map and the
/// `VMCOREINFO`, learnt once from its kernel (before any pause).
#[cfg(feature = "xen")]
pub struct DomainSnapshotter {
    domid: u32,
    mapper: std::sync::Arc<dyn crate::frames::FrameMapper>,
    frames: Vec<std::ops::Range<u64>>,
    frames_from: &'static str,
    vmcoreinfo: Vec<u8>,
    vmcoreinfo_note: String,
    max_vcpu_id: u32,
    p2m: Option<Vec<u64>>,
}

#[cfg(feature = "xen")]
impl DomainSnapshotter {
    /// Locates `spec`'s kernel and reads its memory map and `VMCOREINFO`.
    pub fn prepare(spec: &str) -> Result<Self, CliError> {
        let target = Target::open(&SourceSpec::Domain(spec.to_string()))?;
        let kernel = target.kernel(needs_types(spec)?);
        Self::from_target(&target, spec, kernel.as_ref().ok())
    }

    fn from_target(target: &Target, spec: &str, kernel: Option<&Kernel>) -> Result<Self, CliError> {
        use crate::xen::{self, XenControl, XenStore};
        let store = XenStore::open()?;
        let domain = xen::resolve_domain(&store, spec)?;
        let info = XenControl::open()?.domain_info(domain.id)?;
        let limit = info.max_gpfn.saturating_add(1);
        let mut p2m = None;
        let (frames, frames_from) = if info.hvm {
            match kernel.map(guest::memory_frames) {
                Some(Ok(frames)) => (frames, "the guest's memory map"),
                _ => (
                    std::iter::once(0..limit).collect(),
                    "every frame up to the domain's highest",
                ),
            }
        } else {
            // PV: the mapper takes machine frames; which ones, only the guest's P2M says.
            let k = kernel.ok_or_else(|| {
                CliError::Usage(format!(
                    "{spec} is a PV domain and its kernel was not found: its P2M (which \
                     machine frames are its memory) cannot be read"
                ))
            })?;
            // Xen's maximum gpfn of a PV domain is what the guest says in its shared info;
            // the P2M's own size, bounded, is the limit.
            let table = guest::pv_p2m(k, guest::MAX_P2M_ENTRIES)?;
            let frames = std::iter::once(0..table.len() as u64).collect();
            p2m = Some(table);
            (frames, "the guest's P2M")
        };
        let (vmcoreinfo, origin) = match kernel {
            Some(k) => guest::vmcoreinfo(k),
            None => (
                Vec::new(),
                VmcoreinfoOrigin::Vmark("no kernel found".into()),
            ),
        };
        Ok(DomainSnapshotter {
            domid: domain.id,
            mapper: target.mapper().clone(),
            frames: snapshot::normalise(frames, limit),
            frames_from,
            vmcoreinfo_note: origin_note(&origin, &vmcoreinfo),
            vmcoreinfo,
            max_vcpu_id: info.max_vcpu_id.min(snapshot::MAX_VCPUS as u32 - 1),
            p2m,
        })
    }

    /// Writes one snapshot to `path`, the domain paused for it unless `no_pause`; returns
    /// what was written and how long the domain was paused.
    pub fn take(
        &self,
        ctrl: &crate::xen::XenControl,
        path: &Path,
        no_pause: bool,
    ) -> Result<(Stats, Option<u64>), CliError> {
        use crate::watch::{PauseGuard, Pauser};
        let file = std::fs::File::create(path)?;
        let pauser: &dyn Pauser = ctrl;
        let guard = match no_pause {
            true => None,
            false => Some(
                PauseGuard::pause(pauser, self.domid)
                    .map_err(|e| CliError::Usage(format!("pausing the domain: {e}")))?,
            ),
        };
        let contents = Contents {
            frames: self.frames.clone(),
            vcpus: (0..=self.max_vcpu_id)
                .filter_map(|v| ctrl.vcpu_registers(self.domid, v).ok())
                .collect(),
            vmcoreinfo: self.vmcoreinfo.clone(),
            p2m: self.p2m.clone(),
        };
        let stats = snapshot::write_core(self.mapper.as_ref(), &contents, &file)?;
        let paused = match guard {
            Some(g) => Some(
                g.resume()
                    .map_err(|e| CliError::Usage(format!("unpausing the domain: {e}")))?,
            ),
            None => None,
        };
        Ok((stats, paused))
    }
}

/// Whether snapshotting domain `spec` needs the kernel's types: an HVM/PVH guest's memory
/// map is read with them; a PV guest's P2M and any guest's `VMCOREINFO` need only symbols
/// (and the types take a while to read).
#[cfg(feature = "xen")]
pub fn needs_types(spec: &str) -> Result<bool, CliError> {
    use crate::xen::{self, XenControl, XenStore};
    let domain = xen::resolve_domain(&XenStore::open()?, spec)?;
    Ok(XenControl::open()?.domain_info(domain.id)?.hvm)
}

#[cfg(feature = "xen")]
fn domain(
    target: &Target,
    spec: &str,
    kernel: Option<Kernel>,
    path: &Path,
    opts: SnapshotOptions,
) -> Result<(Stats, Option<u64>, &'static str, String), CliError> {
    let s = DomainSnapshotter::from_target(target, spec, kernel.as_ref())?;
    let ctrl = crate::xen::XenControl::open()?;
    let (stats, paused) = s.take(&ctrl, path, opts.no_pause)?;
    Ok((stats, paused, s.frames_from, s.vmcoreinfo_note))
}

#[cfg(not(feature = "xen"))]
fn domain(
    _: &Target,
    spec: &str,
    _: Option<Kernel>,
    _: &Path,
    _: SnapshotOptions,
) -> Result<(Stats, Option<u64>, &'static str, String), CliError> {
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
