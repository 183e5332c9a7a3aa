//! Generic introspection from the command line, with no offsets to configure — what
//! XenAccess, LibVMI and Rekall users do: `vmark ps`, `modules`, `sym`, `read-va`,
//! `read-pa` on a memory dump or a live Xen domain, and the marks of a guest found in its
//! memory without xenstore (`vmark list --source`, `vmark read --source`), with pointer
//! following (`--path 'a.b->c'`).
//!
//! A thin layer over [`crate::introspect`] and [`crate::guest`]:
//!
//! - **Sources.** A file is a raw image, a QEMU `dump-guest-memory` ELF (PT_LOAD
//!   segments), an `xl dump-core` file (ELF with a `.xen_pages` section) or a QEMU
//!   shared-RAM file; the format is detected ([`detect_format`]) or forced (`--format`).
//!   `xen:NAME` (or `xen:ID`) is a live domain (feature `xen`).
//! - **Live domains.** Frames are mapped with Xen foreign mappings. For HVM/PVH guests
//!   the physical space is guest frames (GFN = PFN). For PV guests it is *machine* frames:
//!   their page tables hold MFNs and foreign mappings of a PV domain take MFNs, so the
//!   walker reads page tables straight from machine frames with no M2P at all
//!   ([`crate::introspect::phys::FrameKind::Physical`] over machine addresses), and a
//!   translated address is a machine address, which is again what the mapper takes.
//!   The kernel is found through a vCPU's CR3 (`xc_vcpu_getcontext`) by searching
//!   kallsyms in the kernel image's virtual range
//!   ([`Kernel::locate_with_root`]): machine memory is neither scanned nor owned.
//! - **Kernel files.** `--btf`, `--system-map` and `--vmlinux` ([`KernelFiles`]) give the
//!   types or symbols a kernel's memory lacks; each is checked against the kernel found
//!   in memory ([`crate::introspect::files`]) and refused when it is another kernel's.
//! - **Marks.** Records and manifests are found from the modules' symbols and checked as
//!   published ones are ([`guest::open_all_in_memory`]).

use crate::decode::{DecodeError, FieldPath, Plan};
use crate::follow;
use crate::frames::FrameMapper;
use crate::guest::{self, GuestError, GuestMarks, OpenMark};
use crate::introspect::kernel::{HelperRegistry, Kernel, KernelError, ListWalk, Module, Process};
use crate::introspect::paging::TranslateError;
use crate::introspect::phys::elfcore::ElfCore;
use crate::introspect::phys::qemu_shm::{MachineType, QemuShm};
use crate::introspect::phys::raw::RawImage;
use crate::introspect::phys::xencore::{self, XenCore};
use crate::introspect::phys::{CopyMapper, MemError, PhysicalMemory};
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use vmark_proto::text::{escape, escape_bytes, escape_controls};
use vmark_proto::{Type, TypeId, TypeTable};

/// Most bytes `read-va`/`read-pa` read at once.
pub const MAX_READ: u64 = 64 << 20;
/// `sym --near` names no symbol farther below an address than this.
pub const MAX_SYMBOL_DISTANCE: u64 = 16 << 20;
/// Most pointers one `--path` follows.
pub const MAX_FOLLOW: usize = 16;

/// Why an introspection command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The memory source could not be opened or read.
    #[error(transparent)]
    Memory(#[from] MemError),
    /// The kernel could not be located or walked.
    #[error(transparent)]
    Kernel(#[from] KernelError),
    /// A virtual address did not translate.
    #[error(transparent)]
    Translate(#[from] TranslateError),
    /// A mark could not be opened.
    #[error(transparent)]
    Guest(#[from] GuestError),
    /// A type or field could not be decoded.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A `--path` could not be followed.
    #[error("--path {path:?}: {reason}")]
    Path {
        /// The path.
        path: String,
        /// Why.
        reason: String,
    },
    /// Output failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Something asked for that does not fit.
    #[error("{0}")]
    Usage(String),
    /// A snapshot could not be written.
    #[error(transparent)]
    Snapshot(#[from] crate::snapshot::SnapshotError),
    /// From Xen's libraries.
    #[cfg(feature = "xen")]
    #[error(transparent)]
    Xen(#[from] crate::xen::XenError),
}

/// Formats of memory files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SourceFormat {
    /// Flat image: byte n is physical address n.
    Raw,
    /// QEMU `dump-guest-memory` (ELF core with PT_LOAD segments).
    QemuElf,
    /// `xl dump-core` (ELF with a `.xen_pages` section).
    XenCore,
    /// A running QEMU guest's shared RAM file (`memory-backend-file,share=on`, pc machine).
    QemuShm,
}

/// Detects a memory file's format from its headers: an ELF64 with a `.xen_pages`
/// section is `xl dump-core`, an ELF64 with PT_LOAD segments a QEMU dump; anything else
/// (including an ELF with neither) is a raw image.
pub fn detect_format(path: &Path) -> Result<SourceFormat, CliError> {
    use object::elf::{FileHeader64, PT_LOAD};
    use object::read::elf::{FileHeader, ProgramHeader, SectionHeader};
    let file = std::fs::File::open(path)
        .map_err(|e| MemError::Format(format!("{}: {e}", path.display())))?;
    let cache = object::read::ReadCache::new(file);
    let data = &cache;
    let Ok(header) = FileHeader64::<object::Endianness>::parse(data) else {
        return Ok(SourceFormat::Raw);
    };
    let Ok(endian) = header.endian() else {
        return Ok(SourceFormat::Raw);
    };
    if let Ok(sections) = header.sections(endian, data) {
        let xen = sections.iter().any(|s| {
            sections
                .section_name(endian, s)
                .is_ok_and(|n| n == xencore::SEC_PAGES)
                && s.sh_size(endian) > 0
        });
        if xen {
            return Ok(SourceFormat::XenCore);
        }
    }
    if let Ok(phdrs) = header.program_headers(endian, data) {
        if phdrs.iter().any(|p| p.p_type(endian) == PT_LOAD) {
            return Ok(SourceFormat::QemuElf);
        }
    }
    Ok(SourceFormat::Raw)
}

/// Where memory comes from, as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// A memory file, in a forced format or detected.
    File(PathBuf, Option<SourceFormat>),
    /// A live Xen domain, by name or id.
    Domain(String),
}

impl SourceSpec {
    /// `xen:NAME` or `xen:ID` is a live domain; anything else a file.
    pub fn parse(source: &str, format: Option<SourceFormat>) -> Result<Self, CliError> {
        match source.strip_prefix("xen:") {
            Some("") => Err(CliError::Usage("xen: needs a domain name or id".into())),
            Some(_) if format.is_some() => Err(CliError::Usage(
                "--format is for files, not live domains".into(),
            )),
            Some(d) => Ok(SourceSpec::Domain(d.to_string())),
            None => Ok(SourceSpec::File(PathBuf::from(source), format)),
        }
    }
}

/// Kernel symbol and type files for a guest whose own kallsyms or BTF cannot be read from
/// memory (`--btf`, `--system-map`, `--vmlinux` of every command that takes a source).
/// Each is checked against the kernel in memory ([`crate::introspect::files`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct KernelFiles {
    /// Kernel types from this file instead of the guest's own BTF: a raw BTF blob (the
    /// same kernel's /sys/kernel/btf/vmlinux), any ELF with a .BTF section (a vmlinux), or
    /// an ELF with DWARF (the -dbg package's vmlinux, or the kernel-types probe built
    /// against the kernel's headers: make -C buildmacros/kernel-types KDIR=...). Checked
    /// against the guest's init_task.
    #[arg(long, value_name = "FILE", requires = "source")]
    pub btf: Option<PathBuf>,
    /// Kernel symbols from this System.map (Debian's real one is in linux-image-RELEASE-dbg:
    /// /usr/lib/debug/boot/System.map-RELEASE) instead of the guest's kallsyms, moved by
    /// the KASLR slide found in memory. Refused unless the guest's banner (and the RELEASE
    /// of a System.map-RELEASE name) and its kallsyms, when readable, agree.
    #[arg(long = "system-map", value_name = "FILE", requires = "source")]
    pub system_map: Option<PathBuf>,
    /// An ELF vmlinux of the guest's kernel: its symbol table (or, stripped as in a
    /// vmlinuz, its kallsyms tables) for symbols unless --system-map, and its .BTF
    /// section (else its DWARF) for types unless --btf; its banner must be the guest's.
    #[arg(long, value_name = "FILE", requires = "source")]
    pub vmlinux: Option<PathBuf>,
}

/// An opened memory source.
pub struct Target {
    /// What it is, for messages (file name or domain).
    pub label: String,
    mem: Arc<dyn PhysicalMemory>,
    mapper: Arc<dyn FrameMapper>,
    /// A page-table root to locate the kernel through instead of scanning memory.
    root: Option<(u64, crate::introspect::paging::PagingMode)>,
    files: KernelFiles,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("label", &self.label)
            .finish()
    }
}

impl Target {
    /// Opens a source.
    pub fn open(spec: &SourceSpec) -> Result<Self, CliError> {
        match spec {
            SourceSpec::File(path, format) => Self::open_file(path, *format),
            SourceSpec::Domain(d) => Self::open_domain(d),
        }
    }

    fn open_file(path: &Path, format: Option<SourceFormat>) -> Result<Self, CliError> {
        let format = match format {
            Some(f) => f,
            None => detect_format(path)?,
        };
        let mem: Arc<dyn PhysicalMemory> = match format {
            SourceFormat::Raw => Arc::new(RawImage::open(path)?),
            SourceFormat::QemuElf => Arc::new(ElfCore::open(path)?),
            SourceFormat::XenCore => Arc::new(XenCore::open(path)?),
            SourceFormat::QemuShm => Arc::new(QemuShm::open(path, MachineType::Pc)?),
        };
        Ok(Target {
            label: path.file_name().map_or_else(
                || path.display().to_string(),
                |n| n.to_string_lossy().into(),
            ),
            mapper: Arc::new(CopyMapper::new(mem.clone())),
            mem,
            root: None,
            files: KernelFiles::default(),
        })
    }

    #[cfg(feature = "xen")]
    fn open_domain(spec: &str) -> Result<Self, CliError> {
        /// Reads of one vCPU's context before its failure counts.
        const VCPU_CONTEXT_ATTEMPTS: usize = 3;
        use crate::introspect::paging::PagingMode;
        use crate::introspect::phys::live::{LiveFrames, DEFAULT_MAPPED_FRAMES};
        use crate::xen::{self, DomainMapper, ForeignMemory, XenControl, XenStore};
        let store = XenStore::open()?;
        let domain = xen::resolve_domain(&store, spec)?;
        let ctrl = XenControl::open()?;
        let info = ctrl.domain_info(domain.id)?;
        // A vCPU's context is read again when Xen does not give it at once (a busy
        // domain, seen once under emulation); what failed is said if none has paging on.
        let mut failures = Vec::new();
        let vcpu = (0..=info.max_vcpu_id)
            .find_map(|v| {
                for _ in 0..VCPU_CONTEXT_ATTEMPTS {
                    match ctrl.vcpu_state(domain.id, v) {
                        Ok(s) if s.cr3 != 0 => return Some(s),
                        Ok(_) => break,
                        Err(e) => {
                            let failure = format!("vCPU {v}: {e}");
                            if failures.last() != Some(&failure) {
                                failures.push(failure);
                            }
                        }
                    }
                }
                None
            })
            .ok_or_else(|| {
                failures.truncate(4);
                CliError::Usage(format!(
                    "domain {spec}: no vCPU has paging on{}",
                    if failures.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", failures.join("; "))
                    }
                ))
            })?;
        let mapper: Arc<dyn FrameMapper> =
            Arc::new(DomainMapper::new(ForeignMemory::open()?, domain.id));
        // HVM/PVH: guest frames. PV: machine frames (see the module documentation); any
        // frame the domain does not own is refused by Xen and reads as not present.
        let max_address = if info.hvm {
            info.max_gpfn.saturating_add(1) * crate::publish::PAGE_SIZE
        } else {
            (crate::publish::MAX_FRAME + 1) * crate::publish::PAGE_SIZE
        };
        let mem: Arc<dyn PhysicalMemory> = Arc::new(LiveFrames::new(
            mapper.clone(),
            max_address,
            DEFAULT_MAPPED_FRAMES,
        ));
        Ok(Target {
            label: domain.name.clone(),
            mem,
            mapper,
            root: Some((
                vcpu.cr3,
                PagingMode::from_registers(vcpu.cr4, vcpu.efer, true),
            )),
            files: KernelFiles::default(),
        })
    }

    #[cfg(not(feature = "xen"))]
    fn open_domain(spec: &str) -> Result<Self, CliError> {
        Err(CliError::Usage(format!(
            "xen:{spec}: this vmark was built without Xen support; rebuild with `cargo build --release -p vmark-host --features xen`"
        )))
    }

    /// The physical memory.
    pub fn memory(&self) -> &Arc<dyn PhysicalMemory> {
        &self.mem
    }

    /// The frames of the source, mapped: foreign mappings of a live domain, copies of a
    /// dump's pages.
    pub fn mapper(&self) -> &Arc<dyn FrameMapper> {
        &self.mapper
    }

    /// Uses these kernel symbol and type files instead of what memory holds.
    pub fn with_files(mut self, files: KernelFiles) -> Self {
        self.files = files;
        self
    }

    /// Locates the kernel (with the symbols of `--system-map` or `--vmlinux` when given);
    /// with `btf`, also reads its BTF (needed for processes, modules and marks) from the
    /// guest, or from `--btf` / the vmlinux's `.BTF`.
    pub fn kernel(&self, btf: bool) -> Result<Kernel, CliError> {
        use crate::introspect::files;
        let (vmlinux_symbols, vmlinux_btf) = match &self.files.vmlinux {
            Some(path) => {
                let (symbols, types) = files::vmlinux(path)?;
                (Some(symbols), types.map(|t| (t, path)))
            }
            None => (None, None),
        };
        let link = match &self.files.system_map {
            Some(path) => {
                let mut map = files::system_map(path)?;
                // The vmlinux knows the exact banner; the map only its file name's release.
                if let Some(v) = &vmlinux_symbols {
                    map.banner = v.banner.clone();
                }
                Some(map)
            }
            None => vmlinux_symbols,
        };
        let mut k = match (&link, self.root) {
            (Some(link), root) => files::locate(self.mem.clone(), root, link)?,
            (None, Some((root, mode))) => Kernel::locate_with_root(self.mem.clone(), root, mode)?,
            (None, None) => Kernel::locate(self.mem.clone())?,
        };
        if !btf {
            return Ok(k);
        }
        let from_file = match &self.files.btf {
            Some(path) => Some((files::btf_file(path)?, path)),
            None => vmlinux_btf,
        };
        match from_file {
            Some((types, path)) => {
                k.set_btf(Arc::new(types));
                files::check_types(&k, &path.display().to_string())?;
            }
            // The guest's own BTF; without that, a --vmlinux's DWARF (read only now: a -dbg
            // vmlinux's is large).
            None => match (&self.files.vmlinux, k.load_btf()) {
                (_, Ok(_)) => {}
                (
                    Some(path),
                    Err(e @ (KernelError::NoKernelBtf | KernelError::KernelBtf { .. })),
                ) => {
                    let types = files::dwarf_types(path).map_err(|d| {
                        CliError::Usage(format!(
                            "{e}. (The --vmlinux file has no .BTF section, and its DWARF: {d})"
                        ))
                    })?;
                    k.set_btf(Arc::new(types));
                    files::check_types(&k, &path.display().to_string())?;
                }
                (_, Err(e)) => return Err(e.into()),
            },
        }
        Ok(k)
    }

    /// The guest's marks, found in its memory (no xenstore).
    pub fn marks(&self, kernel: &Kernel) -> Result<GuestMarks, CliError> {
        Ok(guest::open_all_in_memory(kernel, self.mapper.as_ref())?)
    }
}

/// Every module's symbols, read once. They need struct layouts (the kernel's BTF): a
/// kernel without any is an "unread" row of the answer, and its own symbols still answer.
fn module_symbols(k: &mut Kernel) -> Result<HelperRegistry, CliError> {
    if k.btf().is_err() {
        if let Err(e) = k.load_btf() {
            return Ok(HelperRegistry {
                symbols: Vec::new(),
                errors: vec![("module symbols".into(), e)],
            });
        }
    }
    Ok(k.all_module_symbols(&|_| true)?)
}

/// Parses an address: `0x…` hex, decimal, or `symbol[+offset]` resolved with `kernel`.
pub fn parse_address(s: &str, kernel: Option<&Kernel>) -> Result<u64, CliError> {
    fn number(s: &str) -> Option<u64> {
        match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
            Some(h) => u64::from_str_radix(&h.replace('_', ""), 16).ok(),
            None => s.replace('_', "").parse().ok(),
        }
    }
    let s = s.trim();
    if let Some(n) = number(s) {
        return Ok(n);
    }
    let (name, off) = match s.split_once('+') {
        Some((n, o)) => (
            n.trim(),
            number(o.trim()).ok_or_else(|| CliError::Usage(format!("{s:?}: bad offset {o:?}")))?,
        ),
        None => (s, 0),
    };
    let k = kernel.ok_or_else(|| CliError::Usage(format!("{s:?} is not a number")))?;
    Ok(k.symbol(name)?.wrapping_add(off))
}

fn check_len(len: u64) -> Result<usize, CliError> {
    if len == 0 || len > MAX_READ {
        return Err(CliError::Usage(format!(
            "length {len} outside 1..={MAX_READ}"
        )));
    }
    Ok(len as usize)
}

/// How `read-va`/`read-pa` print bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dump {
    /// `xxd`-style lines: address, 16 bytes in hex, ASCII.
    #[default]
    Canonical,
    /// One line of hex digits.
    Hex,
    /// The bytes themselves.
    Raw,
}

fn write_bytes(out: &mut dyn Write, at: u64, bytes: &[u8], how: Dump) -> std::io::Result<()> {
    match how {
        Dump::Raw => out.write_all(bytes),
        Dump::Hex => {
            let mut s = String::with_capacity(bytes.len() * 2 + 1);
            for b in bytes {
                s.push_str(&format!("{b:02x}"));
            }
            writeln!(out, "{s}")
        }
        Dump::Canonical => {
            for (i, line) in bytes.chunks(16).enumerate() {
                let mut hex = String::new();
                for (j, b) in line.iter().enumerate() {
                    hex.push_str(&format!("{b:02x}"));
                    if j % 2 == 1 {
                        hex.push(' ');
                    }
                }
                let text: String = line
                    .iter()
                    .map(|&b| {
                        if b.is_ascii_graphic() || b == b' ' {
                            b as char
                        } else {
                            '.'
                        }
                    })
                    .collect();
                writeln!(
                    out,
                    "{:016x}: {hex:<40} {text}",
                    at.wrapping_add(16 * i as u64)
                )?;
            }
            Ok(())
        }
    }
}

/// `vmark read-pa SOURCE ADDR LEN`.
pub fn read_pa(
    t: &Target,
    addr: &str,
    len: u64,
    how: Dump,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let addr = parse_address(addr, None)?;
    let mut buf = vec![0u8; check_len(len)?];
    t.mem.read(addr, &mut buf)?;
    Ok(write_bytes(out, addr, &buf, how)?)
}

/// `vmark read-va SOURCE ADDR LEN`: kernel virtual memory, or a process's with `pid`.
pub fn read_va(
    t: &Target,
    addr: &str,
    len: u64,
    pid: Option<i32>,
    how: Dump,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let k = t.kernel(pid.is_some())?;
    let addr = parse_address(addr, Some(&k))?;
    let mut buf = vec![0u8; check_len(len)?];
    match pid {
        None => k.read(addr, &mut buf)?,
        Some(pid) => {
            // Tasks that do not read are skipped: the one asked for may still be there.
            let walk = k.walk_processes()?;
            let p = walk.ok().find(|p| p.pid == pid).ok_or_else(|| {
                let unread = walk.items.iter().filter(|i| i.is_err()).count();
                let mut msg = format!("no process with pid {pid}");
                if unread > 0 || walk.end.is_some() {
                    msg.push_str(&format!(
                        " ({unread} task(s) could not be read{})",
                        walk.end.as_ref().map_or(String::new(), |e| format!(
                            "; the task list ended early: {e}"
                        ))
                    ));
                }
                CliError::Usage(msg)
            })?;
            let dtb = p.dtb.ok_or_else(|| {
                CliError::Usage(format!(
                    "pid {pid} ({}) has no address space",
                    escape(&p.name)
                ))
            })?;
            k.space().translator().read(dtb, addr, &mut buf)?;
        }
    }
    Ok(write_bytes(out, addr, &buf, how)?)
}

/// `vmark ps SOURCE`. A task that cannot be read is a row with its error (JSON: an object
/// with `error`), and a task list that breaks ends with the tasks before it and a last row
/// saying why; neither fails the command.
pub fn ps(t: &Target, json: bool, out: &mut dyn Write) -> Result<(), CliError> {
    let k = t.kernel(true)?;
    Ok(write_processes(&k.walk_processes()?, json, out)?)
}

/// Prints a task walk as `vmark ps` does: a table (guest names escaped) or a JSON array.
pub fn write_processes(
    walk: &ListWalk<Process>,
    json: bool,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    if json {
        let mut rows: Vec<serde_json::Value> = walk
            .items
            .iter()
            .map(|item| match item {
                Ok(p) => serde_json::json!({
                    "pid": p.pid, "tgid": p.tgid, "ppid": p.parent_pid, "name": p.name,
                    "task": format!("{:#x}", p.task), "mm": format!("{:#x}", p.mm),
                    "dtb": p.dtb.map(|d| format!("{d:#x}")),
                }),
                Err(e) => serde_json::json!({
                    "task": format!("{:#x}", e.addr), "error": e.error.to_string(),
                }),
            })
            .collect();
        if let Some(e) = &walk.end {
            rows.push(serde_json::json!({"list": "tasks", "error": e.to_string()}));
        }
        writeln!(out, "{}", serde_json::Value::Array(rows))?;
        return Ok(());
    }
    writeln!(
        out,
        "{:>7} {:>7}  {:<18}  {:<12}  COMM",
        "PID", "PPID", "TASK", "DTB"
    )?;
    for item in &walk.items {
        match item {
            Ok(p) => writeln!(
                out,
                "{:>7} {:>7}  {:#018x}  {:<12}  {}",
                p.pid,
                p.parent_pid.map_or("-".into(), |x| x.to_string()),
                p.task,
                p.dtb.map_or("-".into(), |d| format!("{d:#x}")),
                escape(&p.name)
            )?,
            Err(e) => writeln!(
                out,
                "{:>7} {:>7}  {:#018x}  {:<12}  (unreadable: {})",
                "?",
                "?",
                e.addr,
                "-",
                escape_controls(&e.error.to_string())
            )?,
        }
    }
    if let Some(e) = &walk.end {
        writeln!(
            out,
            "-- the task list ends early: {}",
            escape_controls(&e.to_string())
        )?;
    }
    Ok(())
}

/// `vmark modules SOURCE`. As `ps`: a bad module is a row with its error, a broken list
/// ends with the modules before it.
pub fn modules(t: &Target, json: bool, out: &mut dyn Write) -> Result<(), CliError> {
    let k = t.kernel(true)?;
    Ok(write_modules(&k.walk_modules()?, json, out)?)
}

/// Prints a module walk as `vmark modules` does: a table (guest names escaped) or JSON.
pub fn write_modules(
    walk: &ListWalk<Module>,
    json: bool,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    if json {
        let mut rows: Vec<serde_json::Value> = walk
            .items
            .iter()
            .map(|item| match item {
                Ok(m) => serde_json::json!({
                    "name": m.name, "base": format!("{:#x}", m.base), "size": m.size,
                    "module": format!("{:#x}", m.addr),
                }),
                Err(e) => serde_json::json!({
                    "module": format!("{:#x}", e.addr), "error": e.error.to_string(),
                }),
            })
            .collect();
        if let Some(e) = &walk.end {
            rows.push(serde_json::json!({"list": "modules", "error": e.to_string()}));
        }
        writeln!(out, "{}", serde_json::Value::Array(rows))?;
        return Ok(());
    }
    writeln!(out, "{:<24} {:<18} {:>10}  STRUCT", "NAME", "BASE", "SIZE")?;
    for item in &walk.items {
        match item {
            Ok(m) => writeln!(
                out,
                "{:<24} {:#018x} {:>10}  {:#x}",
                escape(&m.name),
                m.base,
                m.size,
                m.addr
            )?,
            Err(e) => writeln!(
                out,
                "{:<24} {:<18} {:>10}  {:#x} (unreadable: {})",
                "?",
                "-",
                "-",
                e.addr,
                escape_controls(&e.error.to_string())
            )?,
        }
    }
    if let Some(e) = &walk.end {
        writeln!(
            out,
            "-- the module list ends early: {}",
            escape_controls(&e.to_string())
        )?;
    }
    Ok(())
}

/// `vmark sym SOURCE NAME... [--near ADDR]...`: kernel symbols to addresses (module
/// symbols too, when the kernel has none of that name), and addresses to
/// `symbol+offset`.
pub fn sym(
    t: &Target,
    names: &[String],
    near: &[String],
    json: bool,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    // Types given as a file are the user's word that module symbols need them: loaded
    // (and checked) now; else the guest's own BTF is tried when a module symbol is asked.
    let mut k = t.kernel(t.files.btf.is_some())?;
    let mut rows = Vec::new();
    let mut missing = Vec::new();
    let mut module_syms: Option<HelperRegistry> = None;
    for name in names {
        if let Some(s) = k.symbols().get(name) {
            rows.push(serde_json::json!({"name": s.name, "addr": format!("{:#x}", s.addr), "kind": s.kind.to_string()}));
            continue;
        }
        if module_syms.is_none() {
            module_syms = Some(module_symbols(&mut k)?);
        }
        match module_syms
            .iter()
            .flat_map(|r| &r.symbols)
            .find(|s| &s.name == name)
        {
            Some(s) => rows.push(serde_json::json!({"name": s.name, "addr": format!("{:#x}", s.addr), "module": s.module, "size": s.size})),
            None => missing.push(name.clone()),
        }
    }
    // Past the kernel's last symbol (module space), module symbols are looked at too.
    let kernel_top = k.symbols().iter().map(|s| s.addr).max().unwrap_or(0);
    for a in near {
        let addr = parse_address(a, Some(&k))?;
        if addr > kernel_top && module_syms.is_none() {
            module_syms = Some(module_symbols(&mut k)?);
        }
        let in_kernel = k
            .symbols()
            .nearest(addr)
            .filter(|&(_, off)| off < MAX_SYMBOL_DISTANCE);
        let in_module = module_syms
            .iter()
            .flat_map(|r| &r.symbols)
            .filter(|s| !s.name.is_empty() && s.addr != 0 && s.addr <= addr)
            .map(|s| (s, addr - s.addr))
            .filter(|&(_, off)| off < MAX_SYMBOL_DISTANCE)
            .min_by_key(|&(_, off)| off);
        match (in_kernel, in_module) {
            (Some((s, off)), m) if m.is_none_or(|(_, moff)| off <= moff) => {
                rows.push(serde_json::json!({
                    "addr": format!("{addr:#x}"), "symbol": s.name, "offset": off,
                    "near": format!("{}+{off:#x}", s.name),
                }))
            }
            (_, Some((s, off))) => rows.push(serde_json::json!({
                "addr": format!("{addr:#x}"), "symbol": s.name, "offset": off,
                "near": format!("{}+{off:#x}", s.name), "module": s.module,
            })),
            _ => missing.push(a.clone()),
        }
    }
    // Modules whose symbols could not be read: shown, so a name missing from them is explained.
    let unread: Vec<(String, String)> = module_syms
        .iter()
        .flat_map(|r| &r.errors)
        .map(|(item, e)| (item.clone(), e.to_string()))
        .collect();
    if json {
        for (item, e) in &unread {
            rows.push(serde_json::json!({"item": item, "error": e}));
        }
        writeln!(out, "{}", serde_json::Value::Array(rows))?;
    } else {
        for (item, e) in &unread {
            writeln!(out, "-- {}: {}", escape(item), escape(e))?;
        }
        for r in &rows {
            let s = |k: &str| escape(r[k].as_str().unwrap_or("")).into_owned();
            if r.get("near").is_some() && r.get("module").is_some() {
                writeln!(out, "{:<18}  {} [{}]", s("addr"), s("near"), s("module"))?;
            } else if r.get("near").is_some() {
                writeln!(out, "{:<18}  {}", s("addr"), s("near"))?;
            } else if r.get("module").is_some() {
                writeln!(out, "{:<18}  {} [{}]", s("addr"), s("name"), s("module"))?;
            } else {
                writeln!(out, "{:<18} {} {}", s("addr"), s("kind"), s("name"))?;
            }
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(CliError::Usage(format!(
            "not found: {}",
            missing.join(", ")
        )))
    }
}

/// `vmark list --source SOURCE`: the marks found in the guest's memory.
pub fn list_marks(t: &Target, json: bool, out: &mut dyn Write) -> Result<(), CliError> {
    let k = t.kernel(true)?;
    let marks = t.marks(&k)?;
    let mut origin = serde_json::Map::new();
    origin.insert("domain".into(), t.label.clone().into());
    guest::write_list(
        guest::list_rows(&origin, &marks),
        json,
        "no marks in this guest's memory (no module with vmark records is loaded)",
        out,
    )?;
    Ok(())
}

/// Reads guest virtual memory (translating addresses): what [`follow_path`] dereferences
/// pointers with.
pub use crate::follow::ReadVirtual;

/// A value reached by following a `--path`.
#[derive(Debug, Clone)]
pub struct Reached {
    /// Its type in the manifest's table.
    pub ty: TypeId,
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// Its guest virtual address.
    pub addr: u64,
    /// The pointers followed, in order: (path so far, pointer value).
    pub hops: Vec<(String, u64)>,
}

/// Follows `path` from a value of type `ty` at `addr` holding `bytes`: members separated
/// by `.`, array elements as `[i]`, and `->` dereferencing a pointer member (read through
/// `read`, which translates guest virtual addresses), its target decoded with `types`.
/// A leading segment equal to `self_name` that is not a member names the value itself, so
/// `demo_tp->snd_cwnd` works on a mark `demo_tp` that is itself a pointer. Null, opaque
/// (beyond the manifest's pointer depth), unreadable and cyclic pointers are errors;
/// at most [`MAX_FOLLOW`] pointers are followed.
pub fn follow_path(
    types: &TypeTable,
    ty: TypeId,
    addr: u64,
    bytes: Vec<u8>,
    path: &str,
    self_name: &str,
    read: &ReadVirtual<'_>,
) -> Result<Reached, CliError> {
    let fail = |reason: String| CliError::Path {
        path: path.to_string(),
        reason,
    };
    let segments: Vec<&str> = path.split("->").map(str::trim).collect();
    if segments.len() > MAX_FOLLOW + 1 {
        return Err(fail(format!("follows more than {MAX_FOLLOW} pointers")));
    }
    let mut cur = Reached {
        ty,
        bytes,
        addr,
        hops: Vec::new(),
    };
    let mut seen: HashSet<u64> = HashSet::from([addr]);
    let mut so_far = String::new();
    for (i, &written) in segments.iter().enumerate() {
        let seg =
            if i == 0 && written == self_name && FieldPath::member(types, cur.ty, written).is_err()
            {
                ""
            } else {
                written
            };
        let (off, member) = FieldPath::member(types, cur.ty, seg)?;
        if i > 0 {
            so_far.push_str("->");
        }
        so_far.push_str(if seg.is_empty() { self_name } else { seg });
        let size = types.size_of(member).unwrap_or(0);
        let start = usize::try_from(off).map_err(|_| fail("offset too large".into()))?;
        let end = start
            .checked_add(usize::try_from(size).unwrap_or(usize::MAX))
            .filter(|&e| e <= cur.bytes.len())
            .ok_or_else(|| fail(format!("{so_far} lies outside the value read")))?;
        if i + 1 == segments.len() {
            return Ok(Reached {
                ty: member,
                bytes: cur.bytes[start..end].to_vec(),
                addr: cur
                    .addr
                    .checked_add(off)
                    .ok_or_else(|| fail(format!("{so_far}'s address overflows")))?,
                hops: cur.hops,
            });
        }
        let Some(&Type::Pointer {
            target,
            size: width,
        }) = types.get(types.resolve(member))
        else {
            return Err(fail(format!(
                "{so_far} is {}, not a pointer",
                types.type_name(member)
            )));
        };
        let target = types.resolve(target);
        // 8 bytes on 64-bit guests, 4 on 32-bit ones.
        let ptr = u8::try_from(width)
            .ok()
            .and_then(|w| crate::follow::pointer_at(&cur.bytes[start..end], 0, w))
            .ok_or_else(|| fail(format!("{so_far} is not a 4- or 8-byte pointer")))?;
        if ptr == 0 {
            return Err(fail(format!("{so_far} is NULL")));
        }
        let tsize = match types.get(target) {
            Some(Type::Void | Type::Opaque { .. } | Type::Function { .. }) | None => {
                return Err(fail(format!(
                    "{so_far} points to {}, which the manifest does not describe (beyond its pointer depth)",
                    types.type_name(target)
                )))
            }
            _ => types.size_of(target).unwrap_or(0),
        };
        if tsize == 0 || tsize > crate::publish::MAX_MARK_SIZE {
            return Err(fail(format!("{so_far} points to a type of size {tsize}")));
        }
        if !seen.insert(ptr) {
            return Err(fail(format!("{so_far} = {ptr:#x} loops back (cycle)")));
        }
        let mut bytes = vec![0u8; tsize as usize];
        read(ptr, &mut bytes).map_err(|e| fail(format!("{so_far} = {ptr:#x}: {e}")))?;
        cur.hops.push((so_far.clone(), ptr));
        cur = Reached {
            ty: target,
            bytes,
            addr: ptr,
            hops: cur.hops,
        };
    }
    Err(fail("empty path".into()))
}

/// How `vmark read --source` reads a mark.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadOptions<'a> {
    /// Members and pointers to follow to the value shown (`--path`).
    pub path: Option<&'a str>,
    /// Levels of pointers to decode besides the value (`--follow N`).
    pub follow: u32,
    /// One JSON object instead of a tree.
    pub json: bool,
    /// Retries of a read a guest write overlapped.
    pub retries: u32,
}

/// `vmark read --source SOURCE MARK [--path P] [--follow N]`.
pub fn read_mark(
    t: &Target,
    mark: &str,
    opts: &ReadOptions<'_>,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let k = t.kernel(true)?;
    let marks = t.marks(&k)?;
    let m: &OpenMark = match marks.find(mark) {
        Ok(m) => m,
        Err(e) => {
            if let Some((item, err)) = marks.errors.iter().find(|(i, _)| i.contains(mark)) {
                return Err(CliError::Usage(format!(
                    "{}: {}",
                    escape(item),
                    escape_controls(&err.to_string())
                )));
            }
            return Err(e.into());
        }
    };
    let mut buf = Vec::new();
    let info = m.mapped.read(&mut buf, opts.retries);
    let key = format!("{}/{}", m.module, m.mark.name);
    let read_va = |va: u64, b: &mut [u8]| {
        k.read(va, b).map_err(|e| match e {
            KernelError::Translate(t) => t,
            other => TranslateError::Memory(MemError::Format(other.to_string())),
        })
    };
    let types = &m.manifest.types;
    let (ty, plan, bytes, at, hops) = match opts.path {
        None => (m.mark.ty, m.plan.clone(), buf, m.entry.var.gva, Vec::new()),
        Some(p) => {
            let r = follow_path(
                types,
                m.mark.ty,
                m.entry.var.gva,
                buf,
                p,
                &m.mark.name,
                &read_va,
            )?;
            let plan = Arc::new(Plan::compile(types, r.ty)?);
            (r.ty, plan, r.bytes, r.addr, r.hops)
        }
    };
    let shown_as = opts.path.unwrap_or(&m.mark.name);
    let (pointees, cut) = follow::follow(types, ty, shown_as, at, &bytes, opts.follow, &read_va);
    let mut plans: HashMap<TypeId, Arc<Plan>> = HashMap::new();
    let mut decoded = Vec::with_capacity(pointees.len());
    for p in &pointees {
        let plan = match plans.get(&p.ty) {
            Some(plan) => Some(plan.clone()),
            None => Plan::compile(types, p.ty).ok().map(|plan| {
                let plan = Arc::new(plan);
                plans.insert(p.ty, plan.clone());
                plan
            }),
        };
        decoded.push(PointeeView::new(types, p, plan.as_deref()));
    }
    if opts.json {
        let hops: Vec<serde_json::Value> = hops
            .iter()
            .map(|(p, a)| serde_json::json!({"path": p, "addr": format!("{a:#x}")}))
            .collect();
        let value: serde_json::Value =
            serde_json::from_str(&plan.to_json(&bytes)).unwrap_or(serde_json::Value::Null);
        let mut obj = serde_json::json!({
            "source": t.label, "mark": key, "path": opts.path, "type": plan.type_name(),
            "addr": format!("{at:#x}"), "consistent": info.consistent,
            "followed": hops, "value": value,
        });
        if opts.follow > 0 {
            obj["pointees"] = decoded.iter().map(PointeeView::to_json).collect();
            obj["pointees_cut"] = cut.into();
        }
        writeln!(out, "{obj}")?;
    } else {
        write!(out, "{}", plan.to_pretty(&bytes))?;
        // Module, mark, member and type names come from the guest: escaped.
        let via: String = hops
            .iter()
            .map(|(p, a)| format!(", {} = {a:#x}", escape(p)))
            .collect();
        writeln!(
            out,
            "-- {}{} ({}) at {at:#x} in {}{via}{}",
            escape(&key),
            opts.path
                .map_or(String::new(), |p| format!(" {}", escape(p))),
            escape(plan.type_name()),
            escape(&t.label),
            if info.consistent {
                ""
            } else {
                ", TORN (a write overlapped every retry)"
            }
        )?;
        for p in &decoded {
            p.write_pretty(out)?;
        }
        if cut {
            writeln!(
                out,
                "-- (stopped at a limit: {} values or {} MiB read)",
                follow::MAX_POINTEES,
                follow::MAX_BYTES >> 20
            )?;
        }
    }
    Ok(())
}

/// A followed pointer, decoded for printing.
struct PointeeView {
    path: String,
    addr: u64,
    depth: u32,
    type_name: String,
    /// Decoded JSON text, pretty text, or why there is none.
    decoded: Result<(String, String), String>,
}

impl PointeeView {
    fn new(types: &TypeTable, p: &follow::Pointee, plan: Option<&Plan>) -> Self {
        let decoded = match (&p.bytes, plan) {
            (Err(e), _) => Err(e.clone()),
            (Ok(b), _) if p.is_string(types) => {
                let s = String::from_utf8_lossy(b).into_owned();
                Ok((
                    serde_json::Value::from(s).to_string(),
                    format!("\"{}\"\n", escape_bytes(b).replace('"', "\\\"")),
                ))
            }
            (Ok(b), Some(plan)) => Ok((plan.to_json(b), plan.to_pretty(b))),
            (Ok(_), None) => Err(format!("{} cannot be decoded", types.type_name(p.ty))),
        };
        PointeeView {
            path: p.path.clone(),
            addr: p.addr,
            depth: p.depth,
            type_name: types.type_name(p.ty),
            decoded,
        }
    }

    fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "path": self.path, "addr": format!("{:#x}", self.addr), "depth": self.depth,
            "type": self.type_name,
        });
        match &self.decoded {
            Ok((json, _)) => {
                v["value"] = serde_json::from_str(json).unwrap_or(serde_json::Value::Null)
            }
            Err(e) => v["error"] = e.clone().into(),
        }
        v
    }

    fn write_pretty(&self, out: &mut dyn Write) -> std::io::Result<()> {
        match &self.decoded {
            Ok((_, pretty)) => {
                writeln!(
                    out,
                    "-- {} -> ({}) at {:#x}",
                    escape(&self.path),
                    escape(&self.type_name),
                    self.addr
                )?;
                write!(out, "{pretty}")
            }
            Err(e) => writeln!(
                out,
                "-- {} -> ({}) at {:#x}: {}",
                escape(&self.path),
                escape(&self.type_name),
                self.addr,
                escape(e)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmark_proto::{AggregateKind, BaseEncoding, Member};

    fn elf(sections: bool, load: bool) -> Vec<u8> {
        // ELF64 little-endian header; one PT_LOAD program header and/or a section table
        // with a `.xen_pages` section.
        let mut f = vec![0u8; 0x200];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 2; // 64-bit
        f[5] = 1; // little-endian
        f[6] = 1;
        f[16..18].copy_from_slice(&4u16.to_le_bytes()); // ET_CORE
        f[18..20].copy_from_slice(&62u16.to_le_bytes()); // x86-64
        f[20..24].copy_from_slice(&1u32.to_le_bytes());
        f[52..54].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
        f[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
        f[58..60].copy_from_slice(&64u16.to_le_bytes()); // e_shentsize
        if load {
            f[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
            f[56..58].copy_from_slice(&1u16.to_le_bytes()); // e_phnum
            f[64..68].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
        }
        if sections {
            let shoff = 0x100usize;
            f[40..48].copy_from_slice(&(shoff as u64).to_le_bytes());
            f[60..62].copy_from_slice(&3u16.to_le_bytes()); // e_shnum
            f[62..64].copy_from_slice(&2u16.to_le_bytes()); // e_shstrndx
            let strtab = b"\0.xen_pages\0.shstrtab\0";
            f[0x1c0..0x1c0 + strtab.len()].copy_from_slice(strtab);
            // [1] .xen_pages, PROGBITS, 4096 bytes at 0x200 (past the end: not read).
            let s1 = shoff + 64;
            f[s1..s1 + 4].copy_from_slice(&1u32.to_le_bytes());
            f[s1 + 4..s1 + 8].copy_from_slice(&1u32.to_le_bytes());
            f[s1 + 24..s1 + 32].copy_from_slice(&0x1c0u64.to_le_bytes());
            f[s1 + 32..s1 + 40].copy_from_slice(&16u64.to_le_bytes());
            // [2] .shstrtab
            let s2 = shoff + 128;
            f[s2..s2 + 4].copy_from_slice(&12u32.to_le_bytes());
            f[s2 + 4..s2 + 8].copy_from_slice(&3u32.to_le_bytes());
            f[s2 + 24..s2 + 32].copy_from_slice(&0x1c0u64.to_le_bytes());
            f[s2 + 32..s2 + 40].copy_from_slice(&(strtab.len() as u64).to_le_bytes());
        }
        f
    }

    fn detect(bytes: &[u8]) -> SourceFormat {
        let dir = std::env::temp_dir().join(format!("vmark-detect-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(format!(
            "{:x}",
            bytes.len() ^ bytes.iter().map(|&b| b as usize).sum::<usize>()
        ));
        std::fs::write(&p, bytes).unwrap();
        let f = detect_format(&p).unwrap();
        std::fs::remove_file(&p).ok();
        f
    }

    #[test]
    fn formats_are_detected_from_headers() {
        assert_eq!(detect(&elf(true, false)), SourceFormat::XenCore);
        assert_eq!(detect(&elf(false, true)), SourceFormat::QemuElf);
        // .xen_pages wins over segments; an ELF with neither is raw memory.
        assert_eq!(detect(&elf(true, true)), SourceFormat::XenCore);
        assert_eq!(detect(&elf(false, false)), SourceFormat::Raw);
        assert_eq!(detect(&[0u8; 8192]), SourceFormat::Raw);
        assert_eq!(detect(b"\x7fELF"), SourceFormat::Raw);
        assert!(detect_format(Path::new("/nonexistent/vmark")).is_err());
    }

    #[test]
    fn sources_and_addresses_parse() {
        assert_eq!(
            SourceSpec::parse("xen:guest1", None).unwrap(),
            SourceSpec::Domain("guest1".into())
        );
        assert_eq!(
            SourceSpec::parse("d.elf", Some(SourceFormat::Raw)).unwrap(),
            SourceSpec::File("d.elf".into(), Some(SourceFormat::Raw))
        );
        assert!(SourceSpec::parse("xen:", None).is_err());
        assert!(SourceSpec::parse("xen:g", Some(SourceFormat::Raw)).is_err());
        assert_eq!(parse_address("0x1000", None).unwrap(), 0x1000);
        assert_eq!(parse_address("4096", None).unwrap(), 4096);
        assert_eq!(parse_address("0xffff_ffff", None).unwrap(), 0xffff_ffff);
        assert!(parse_address("init_task", None).is_err());
        assert!(parse_address("0xzz", None).is_err());
    }

    /// `struct node { int v; struct node *next; }` and `struct node *` at id 2.
    fn node_types() -> (TypeTable, TypeId) {
        let mut t = TypeTable::new();
        let int = t.push(Type::Base {
            name: "int".into(),
            size: 4,
            encoding: BaseEncoding::Signed,
        });
        let node = t.push(Type::Void);
        let ptr = t.push(Type::Pointer {
            target: node,
            size: 8,
        });
        let member = |name: &str, ty, offset| Member {
            name: Some(name.into()),
            ty,
            offset,
            bitfield: None,
        };
        t.set(
            node,
            Type::Aggregate {
                kind: AggregateKind::Struct,
                name: Some("node".into()),
                size: 16,
                members: vec![member("v", int, 0), member("next", ptr, 8)],
            },
        );
        (t, node)
    }

    fn node(v: i32, next: u64) -> Vec<u8> {
        let mut b = vec![0u8; 16];
        b[..4].copy_from_slice(&v.to_le_bytes());
        b[8..].copy_from_slice(&next.to_le_bytes());
        b
    }

    #[test]
    fn paths_follow_pointers_and_stop_on_cycles_and_nulls() {
        let (t, node_t) = node_types();
        // 0x1000 -> 0x2000 -> 0x1000 (a cycle); 0x3000 -> NULL.
        let mem = |va: u64, b: &mut [u8]| -> Result<(), TranslateError> {
            let n = match va {
                0x1000 => node(1, 0x2000),
                0x2000 => node(2, 0x1000),
                0x3000 => node(3, 0),
                _ => {
                    return Err(TranslateError::NotPresent {
                        vaddr: va,
                        level: 4,
                    })
                }
            };
            b.copy_from_slice(&n[..b.len()]);
            Ok(())
        };
        let r = follow_path(&t, node_t, 0x1000, node(1, 0x2000), "next->v", "n", &mem).unwrap();
        assert_eq!(r.bytes, 2i32.to_le_bytes());
        assert_eq!(r.addr, 0x2000);
        assert_eq!(r.hops, vec![("next".to_string(), 0x2000)]);
        // The value's own name stands for the value; a pointer's target is reached by `->`.
        let (t2, ptr) = (t.clone(), TypeId(2));
        let r = follow_path(
            &t2,
            ptr,
            0x5000,
            0x1000u64.to_le_bytes().to_vec(),
            "p->v",
            "p",
            &mem,
        )
        .unwrap();
        assert_eq!(
            (r.bytes, r.hops),
            (1i32.to_le_bytes().to_vec(), vec![("p".to_string(), 0x1000)])
        );
        let whole = follow_path(&t, node_t, 0x1000, node(1, 0x2000), "next", "n", &mem).unwrap();
        assert_eq!(whole.bytes, 0x2000u64.to_le_bytes());
        let e = follow_path(
            &t,
            node_t,
            0x1000,
            node(1, 0x2000),
            "next->next->v",
            "n",
            &mem,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("cycle"), "{e}");
        let e = follow_path(&t, node_t, 0x3000, node(3, 0), "next->v", "n", &mem)
            .unwrap_err()
            .to_string();
        assert!(e.contains("NULL"), "{e}");
        let e = follow_path(&t, node_t, 0x3000, node(3, 0x9000), "next->v", "n", &mem)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not mapped"), "{e}");
        let e = follow_path(&t, node_t, 0x1000, node(1, 0x2000), "v->x", "n", &mem)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a pointer"), "{e}");
        assert!(follow_path(&t, node_t, 0x1000, node(1, 0x2000), "nope", "n", &mem).is_err());
        let long = vec!["next"; MAX_FOLLOW + 2].join("->");
        assert!(follow_path(&t, node_t, 0x1000, node(1, 0x2000), &long, "n", &mem).is_err());
    }

    #[test]
    fn guest_names_are_escaped_in_text_and_json_stays_valid() {
        use crate::introspect::kernel::{ItemError, ListWalk, Module, Process};
        let evil = "sh\x1b]0;owned\x07\u{202e}";
        let walk = ListWalk {
            items: vec![
                Ok(Process {
                    task: 0xffff_8880_0000_1000,
                    pid: 7,
                    tgid: 7,
                    name: evil.into(),
                    parent_pid: Some(1),
                    mm: 0,
                    pgd: None,
                    dtb: None,
                }),
                Err(ItemError {
                    what: "task",
                    addr: 0xffff_8880_0000_2000,
                    error: KernelError::MissingSymbol("x\ny".into()),
                }),
            ],
            end: Some(KernelError::CorruptList {
                head: 1,
                reason: "node repeats".into(),
            }),
        };
        let mut text = Vec::new();
        write_processes(&walk, false, &mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(text.contains("sh\\x1b]0;owned\\x07\\u{202e}"), "{text}");
        assert!(!text
            .chars()
            .any(|c| c != '\n' && vmark_proto::text::is_unsafe_char(c)));
        assert!(
            text.contains("unreadable") && text.contains("ends early"),
            "{text}"
        );
        let mut json = Vec::new();
        write_processes(&walk, true, &mut json).unwrap();
        let rows: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(rows[0]["name"], evil);
        assert!(rows[1]["error"].is_string() && rows[2]["error"].is_string());

        let mods = ListWalk {
            items: vec![Ok(Module {
                addr: 1,
                name: evil.into(),
                base: 2,
                size: 3,
                regions: vec![(2, 3)],
            })],
            end: None,
        };
        let mut text = Vec::new();
        write_modules(&mods, false, &mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(!text
            .chars()
            .any(|c| c != '\n' && vmark_proto::text::is_unsafe_char(c)));
        let mut json = Vec::new();
        write_modules(&mods, true, &mut json).unwrap();
        let rows: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(rows[0]["name"], evil);
    }
}
