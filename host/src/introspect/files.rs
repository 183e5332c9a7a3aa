//! Kernel symbols and types from files the user gives (`--system-map`, `--vmlinux`,
//! `--btf`), for kernels whose own kallsyms or BTF cannot be read from memory, as drgn and
//! volatility take them.
//!
//! A file is never trusted to be of the kernel in memory:
//! - link-time symbols (a System.map or a vmlinux's symbol table) are relocated by the
//!   KASLR slide that puts their `linux_banner` onto a `Linux version ` banner readable
//!   through the guest's page tables; the banner must be the file's own (a vmlinux's
//!   exact banner bytes, or the release in a `System.map-<release>` name); the image
//!   symbols must translate; and when the guest's kallsyms can be read too, every symbol
//!   both name once must agree;
//! - types (BTF) must describe `init_task` as the guest holds it: `comm` reads
//!   `swapper…`, `pid` is 0 and `tasks` is a consistent list node.
//!
//! Messages hold guest bytes lossily decoded; the command line escapes what it prints.
//!
//! Types come from BTF or, without a `.BTF` section, from DWARF ([`dwarf_types`]).

use super::btf::Btf;
use super::kallsyms::{self, Kallsyms};
use super::kernel::{cr3_roots, kernel_page_directory, page_directory_symbol, Kernel, KernelError};
use super::paging::PagingMode;
use super::phys::{FrameKind, PhysicalMemory};
use super::symbols::{Symbol, SymbolTable};
use super::vmem::{AddressSpace, Translator};
use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use vmark_proto::limits;

/// The step KASLR moves the x86 kernel image by (`CONFIG_PHYSICAL_ALIGN`'s default).
const KASLR_ALIGN: u64 = 2 << 20;
/// The start of every banner.
const BANNER_PREFIX: &[u8] = b"Linux version ";
/// Longest banner compared (`linux_banner` is one line of about 150 bytes).
const MAX_BANNER: usize = 512;
/// Fewer symbols than this make a System.map a placeholder, not a kernel's.
const PLACEHOLDER_SYMBOLS: usize = 16;
/// BTF's magic, little-endian.
const BTF_MAGIC: [u8; 2] = [0x9f, 0xeb];

/// How the banner in memory must read for a symbol file to be of that kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BannerCheck {
    /// Exactly these bytes (a vmlinux's own `linux_banner`, without the NUL).
    Exact(Vec<u8>),
    /// `Linux version <release> ` (from a `System.map-<release>` file name).
    Release(String),
    /// Nothing known beyond the `Linux version ` prefix.
    Prefix,
}

/// Link-time (unrelocated) kernel symbols from a file.
#[derive(Debug, Clone)]
pub struct LinkSymbols {
    /// The symbols at their link-time addresses.
    pub symbols: SymbolTable,
    /// The file, for messages.
    pub file: String,
    /// What the banner must say.
    pub banner: BannerCheck,
}

fn file_error(path: &Path, what: impl std::fmt::Display) -> KernelError {
    KernelError::KernelFile(format!("{}: {what}", path.display()))
}

/// 64-bit per-CPU symbols are offsets from zero, not image addresses: marked absolute
/// (as the kernel's own kallsyms shows them) so relocation leaves them.
fn mark_percpu_absolute(symbols: &mut [Symbol]) {
    let is64 = symbols.iter().any(|s| s.addr > u64::from(u32::MAX));
    if is64 {
        for s in symbols.iter_mut().filter(|s| s.addr <= u64::from(u32::MAX)) {
            s.kind = if s.kind.is_ascii_uppercase() {
                'A'
            } else {
                'a'
            };
        }
    }
}

/// Reads a System.map (`<hex address> <type> <name>` lines).
pub fn system_map(path: &Path) -> Result<LinkSymbols, KernelError> {
    let file = std::fs::File::open(path).map_err(|e| file_error(path, e))?;
    let mut text = String::new();
    file.take(limits::KERNEL_MAX_SYSTEM_MAP_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| file_error(path, e))?;
    if text.len() as u64 > limits::KERNEL_MAX_SYSTEM_MAP_BYTES {
        return Err(file_error(
            path,
            format!(
                "larger than {} bytes: not a System.map",
                limits::KERNEL_MAX_SYSTEM_MAP_BYTES
            ),
        ));
    }
    let table = SymbolTable::from_system_map(&text).map_err(|e| file_error(path, e))?;
    let mut symbols: Vec<Symbol> = table.iter().map(|s| s.to_symbol()).collect();
    mark_percpu_absolute(&mut symbols);
    let symbols = SymbolTable::new(symbols).map_err(|e| file_error(path, e))?;
    let banner = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("System.map-"))
        .filter(|r| !r.is_empty())
        .map_or(BannerCheck::Prefix, |r| BannerCheck::Release(r.to_string()));
    Ok(LinkSymbols {
        symbols,
        file: path.display().to_string(),
        banner,
    })
}

/// An ELF file opened for reading sections and symbols without loading it whole.
fn with_elf<T>(
    path: &Path,
    f: impl FnOnce(&object::File<'_, &object::ReadCache<std::fs::File>>) -> Result<T, KernelError>,
) -> Result<T, KernelError> {
    let file = std::fs::File::open(path).map_err(|e| file_error(path, e))?;
    let cache = object::ReadCache::new(file);
    let elf = object::File::parse(&cache).map_err(|e| file_error(path, e))?;
    f(&elf)
}

/// The `.BTF` section of an ELF file, if it has one.
fn elf_btf<'a>(
    path: &Path,
    elf: &object::File<'a, &'a object::ReadCache<std::fs::File>>,
) -> Result<Option<Vec<u8>>, KernelError> {
    use object::{Object, ObjectSection};
    let Some(section) = elf.section_by_name(".BTF") else {
        return Ok(None);
    };
    if section.size() > limits::KERNEL_MAX_BTF_BYTES {
        return Err(file_error(
            path,
            format!(
                "its .BTF section is larger than {} bytes",
                limits::KERNEL_MAX_BTF_BYTES
            ),
        ));
    }
    let data = section.data().map_err(|e| file_error(path, e))?;
    Ok(Some(data.to_vec()))
}

/// The kernel structs the introspection reads (processes, modules, module symbols), taken
/// from DWARF with what they hold by value. Only the first is required.
pub const KERNEL_TYPES: &[&str] = &[
    "struct task_struct",
    "struct mm_struct",
    "struct module",
    "struct mod_kallsyms",
    "struct list_head",
];

/// Kernel types from a file: a raw BTF blob (`/sys/kernel/btf/vmlinux`), any ELF with a
/// `.BTF` section (a vmlinux), or an ELF with DWARF: a `-dbg` package's vmlinux, or any
/// object built against the kernel's own headers, such as the kernel-types probe
/// (`buildmacros/kernel-types`), whose struct layouts are the kernel's exactly because the
/// compiler laid them out from the same headers and configuration.
pub fn btf_file(path: &Path) -> Result<Btf, KernelError> {
    let mut head = [0u8; 4];
    let mut file = std::fs::File::open(path).map_err(|e| file_error(path, e))?;
    let n = file.read(&mut head).map_err(|e| file_error(path, e))?;
    let data = if n >= 4 && head == *b"\x7fELF" {
        // A module (relocatable object) may carry a .BTF that is split BTF, meaningless
        // without the kernel's base BTF: its DWARF is what describes it.
        let btf = with_elf(path, |elf| {
            use object::Object;
            if elf.kind() == object::ObjectKind::Relocatable {
                Ok(None)
            } else {
                elf_btf(path, elf)
            }
        })?;
        match btf {
            Some(data) => data,
            None => return dwarf_types(path),
        }
    } else if n >= 2 && head[..2] == BTF_MAGIC {
        let mut data = Vec::new();
        std::fs::File::open(path)
            .map_err(|e| file_error(path, e))?
            .take(limits::KERNEL_MAX_BTF_BYTES + 1)
            .read_to_end(&mut data)
            .map_err(|e| file_error(path, e))?;
        if data.len() as u64 > limits::KERNEL_MAX_BTF_BYTES {
            return Err(file_error(
                path,
                format!("larger than {} bytes", limits::KERNEL_MAX_BTF_BYTES),
            ));
        }
        data
    } else {
        return Err(file_error(
            path,
            "neither a BTF blob (magic 0xeb9f) nor an ELF (with a .BTF section or DWARF)",
        ));
    };
    Btf::parse(&data).map_err(|e| file_error(path, format!("BTF does not parse: {e}")))
}

/// [`KERNEL_TYPES`] from the DWARF of an ELF file.
pub fn dwarf_types(path: &Path) -> Result<Btf, KernelError> {
    use vmark_build::dwarf::DebugInfo;
    let size = std::fs::metadata(path)
        .map_err(|e| file_error(path, e))?
        .len();
    if size > limits::KERNEL_MAX_DWARF_FILE_BYTES {
        return Err(file_error(
            path,
            format!(
                "larger than {} bytes, the most read for DWARF",
                limits::KERNEL_MAX_DWARF_FILE_BYTES
            ),
        ));
    }
    let di = DebugInfo::parse_file(path).map_err(|e| {
        file_error(
            path,
            format!("an ELF with no .BTF section and no readable DWARF: {e}"),
        )
    })?;
    let (table, ids) = di
        .aggregates(KERNEL_TYPES, 0)
        .map_err(|e| file_error(path, format!("its DWARF types do not convert: {e}")))?;
    if ids.first().copied().flatten().is_none() {
        return Err(file_error(
            path,
            "its DWARF has no struct task_struct: give the kernel's -dbg vmlinux, or the \
             kernel-types probe built against the kernel's headers \
             (make -C buildmacros/kernel-types KDIR=...)",
        ));
    }
    Btf::from_types(table)
        .map_err(|e| file_error(path, format!("its DWARF types are inconsistent: {e}")))
}

/// A vmlinux: its symbol table (link-time) and banner, and its `.BTF` if it has one (its
/// DWARF, if it has only that, is read by [`dwarf_types`] when types are needed).
pub fn vmlinux(path: &Path) -> Result<(LinkSymbols, Option<Btf>), KernelError> {
    use object::{Object, ObjectSection, ObjectSymbol, SymbolKind, SymbolSection};
    with_elf(path, |elf| {
        let mut symbols = Vec::new();
        for s in elf.symbols() {
            if symbols.len() >= super::symbols::MAX_SYMBOLS {
                return Err(file_error(path, "too many symbols"));
            }
            let Ok(name) = s.name() else { continue };
            if name.is_empty() || matches!(s.kind(), SymbolKind::File | SymbolKind::Section) {
                continue;
            }
            let text = s.kind() == SymbolKind::Text;
            let absolute = s.section() == SymbolSection::Absolute;
            let kind = match (absolute, text) {
                (true, _) => 'A',
                (_, true) => 'T',
                _ => 'D',
            };
            symbols.push(Symbol {
                name: name.to_string(),
                addr: s.address(),
                kind: if s.is_global() {
                    kind
                } else {
                    kind.to_ascii_lowercase()
                },
            });
        }
        if symbols.is_empty() {
            // A stripped vmlinux (as in a vmlinuz) still holds its kallsyms tables, at
            // link-time addresses.
            let image = super::phys::raw::RawImage::open(path).map_err(|e| file_error(path, e))?;
            symbols = kallsyms::find(&image)
                .map_err(|e| {
                    file_error(
                        path,
                        format!("no symbol table, and no kallsyms tables in its image: {e}"),
                    )
                })?
                .symbols
                .iter()
                .map(|s| s.to_symbol())
                .collect();
        }
        symbols.sort_by_key(|s| s.addr);
        mark_percpu_absolute(&mut symbols);
        let table = SymbolTable::new(symbols).map_err(|e| file_error(path, e))?;
        // The banner's own bytes, from the section holding linux_banner.
        let banner = table
            .lookup("linux_banner")
            .and_then(|addr| {
                let section = elf
                    .sections()
                    .find(|s| addr >= s.address() && addr < s.address() + s.size())?;
                let data = section.data().ok()?;
                let start = usize::try_from(addr - section.address()).ok()?;
                let rest = data.get(start..)?;
                let rest = &rest[..rest.len().min(MAX_BANNER)];
                let end = rest.iter().position(|&b| b == 0)?;
                Some(rest[..end].to_vec())
            })
            .filter(|b| b.starts_with(BANNER_PREFIX))
            .map_or(BannerCheck::Prefix, BannerCheck::Exact);
        // Without .BTF its DWARF is read only when types are needed ([`dwarf_types`]).
        let btf = elf_btf(path, elf)?
            .map(|d| Btf::parse(&d))
            .transpose()
            .map_err(|e| file_error(path, format!("its .BTF does not parse: {e}")))?;
        Ok((
            LinkSymbols {
                symbols: table,
                file: path.display().to_string(),
                banner,
            },
            btf,
        ))
    })
}

/// Finds the kernel described by `link` in `mem` (through `root` when given, e.g. a live
/// domain's CR3, else the dump's vCPUs and the physical banner copies), relocated by the
/// KASLR slide that maps its `linux_banner` onto the banner, and checks the match.
pub fn locate(
    mem: Arc<dyn PhysicalMemory>,
    root: Option<(u64, PagingMode)>,
    link: &LinkSymbols,
) -> Result<Kernel, KernelError> {
    let mismatch = |reason: String| KernelError::FileMismatch {
        file: link.file.clone(),
        reason,
    };
    let banner_link = link.symbols.lookup("linux_banner").ok_or_else(|| {
        KernelError::KernelFile(if link.symbols.len() < PLACEHOLDER_SYMBOLS {
            format!(
                "{}: no linux_banner symbol, and only {} symbols: a placeholder (Debian's \
                 /boot/System.map-* says the real one is in the linux-image-RELEASE-dbg \
                 package, as /usr/lib/debug/boot/System.map-RELEASE)",
                link.file,
                link.symbols.len()
            )
        } else {
            format!("{}: no linux_banner symbol", link.file)
        })
    })?;
    let word32 = banner_link <= u64::from(u32::MAX);
    // A dump's kallsyms is found by scanning its physical memory, as `Kernel::locate`
    // does; a live domain's is not scanned.
    let scan_kallsyms = root.is_none();
    let mut candidates: Vec<(u64, PagingMode)> = Vec::new();
    if let Some((root, mode)) = root {
        candidates.extend(cr3_roots(root, mode).into_iter().map(|r| (r, mode)));
    } else {
        let vcpus = mem.vcpus();
        let mut modes: Vec<PagingMode> = vcpus
            .iter()
            .filter(|v| v.cr3 != 0)
            .map(|v| PagingMode::from_registers(v.cr4, v.efer, !word32))
            .collect();
        modes.extend(if word32 {
            [PagingMode::Pae, PagingMode::Legacy32]
        } else {
            [PagingMode::Long4, PagingMode::Long5]
        });
        let mut roots: Vec<u64> = Vec::new();
        // The page-table root is in the image: at the same distance from the banner's
        // physical copy as in the file (the image is physically contiguous).
        let pgt = page_directory_symbol(&link.symbols);
        if let (Some(pgt), FrameKind::Physical) = (pgt, mem.frame_kind()) {
            let hits = kallsyms::scan(mem.as_ref(), BANNER_PREFIX, limits::KERNEL_MAX_BANNER_HITS)?;
            for hit in hits
                .into_iter()
                .filter(|h| h & 0xfff == banner_link & 0xfff)
            {
                if let Some(r) = pgt
                    .checked_sub(banner_link)
                    .and_then(|d| hit.checked_add(d))
                {
                    roots.push(r);
                }
            }
        }
        let mut seen = HashSet::new();
        for mode in modes {
            // The vCPUs' registers name roots as each mode reads them (a PAE CR3 is
            // 32-byte aligned, a long-mode one carries a PCID).
            let vcpu_roots = vcpus
                .iter()
                .filter(|v| v.cr3 != 0)
                .flat_map(|v| cr3_roots(v.cr3, mode));
            for r in roots.iter().copied().chain(vcpu_roots) {
                if seen.insert((r, mode)) {
                    candidates.push((r, mode));
                }
            }
        }
    }
    let mut wrong_banner: Option<String> = None;
    for &(root, mode) in &candidates {
        let space = Arc::new(Translator::new(mem.clone(), mode)).space(root);
        for slot in 0..limits::KERNEL_MAX_KASLR_SLOTS {
            let Some(banner) = banner_link.checked_add(slot * KASLR_ALIGN) else {
                break;
            };
            let mut prefix = [0u8; BANNER_PREFIX.len()];
            if space.read(banner, &mut prefix).is_err() || prefix != BANNER_PREFIX {
                continue;
            }
            let text = read_banner(&space, banner);
            if let Err(reason) = check_banner(&link.banner, &text) {
                wrong_banner.get_or_insert(reason);
                continue;
            }
            // A live kernel reads through its own page directory, not a process's.
            let space = match page_directory_symbol(&link.symbols) {
                Some(pgd) if !scan_kallsyms => pgd
                    .checked_add(slot * KASLR_ALIGN)
                    .and_then(|pgd| kernel_page_directory(space.translator(), root, pgd, banner))
                    .map_or(space.clone(), |pgd| space.translator().space(pgd)),
                _ => space,
            };
            return relocated_kernel(mem, scan_kallsyms, space, link, slot * KASLR_ALIGN).map_err(
                |e| match e {
                    KernelError::FileMismatch { .. } | KernelError::KernelFile(_) => e,
                    other => mismatch(other.to_string()),
                },
            );
        }
    }
    Err(mismatch(wrong_banner.unwrap_or_else(|| {
        format!(
            "no KASLR slide (of {} tried) maps its linux_banner ({banner_link:#x}) onto a \
             `Linux version` banner through {} candidate page-table roots",
            limits::KERNEL_MAX_KASLR_SLOTS,
            candidates.len()
        )
    })))
}

fn read_banner(space: &AddressSpace, banner: u64) -> Vec<u8> {
    space
        .read_cstring(banner, MAX_BANNER)
        .map(String::into_bytes)
        .unwrap_or_default()
}

fn check_banner(want: &BannerCheck, got: &[u8]) -> Result<(), String> {
    let ok = match want {
        BannerCheck::Exact(b) => got == b.as_slice(),
        BannerCheck::Release(r) => got.starts_with(format!("Linux version {r} ").as_bytes()),
        BannerCheck::Prefix => true,
    };
    if ok {
        return Ok(());
    }
    let want = match want {
        BannerCheck::Exact(b) => String::from_utf8_lossy(b).into_owned(),
        BannerCheck::Release(r) => format!("Linux version {r} …"),
        BannerCheck::Prefix => String::new(),
    };
    Err(format!(
        "the guest's banner is \"{}\", the file's \"{want}\"",
        String::from_utf8_lossy(got).trim_end()
    ))
}

/// The symbols relocated by `slide`, checked: the image symbols translate at one
/// virtual-to-physical distance, and agree with the guest's kallsyms when it has one.
fn relocated_kernel(
    mem: Arc<dyn PhysicalMemory>,
    scan_kallsyms: bool,
    space: AddressSpace,
    link: &LinkSymbols,
    slide: u64,
) -> Result<Kernel, KernelError> {
    let mismatch = |reason: String| KernelError::FileMismatch {
        file: link.file.clone(),
        reason,
    };
    let symbols = link
        .symbols
        .relocated(slide as i64)
        .map_err(|e| mismatch(e.to_string()))?;
    for name in ["_text", "_stext", "init_task", "_etext", "__start_rodata"] {
        if let Some(va) = symbols.lookup(name) {
            if space
                .translator()
                .translate_uncached(space.root(), va)
                .is_err()
            {
                return Err(mismatch(format!(
                    "{name} at {va:#x} (KASLR slide {slide:#x}) is not mapped: not in the kernel image"
                )));
            }
        }
    }
    let ks = if scan_kallsyms && mem.frame_kind() == FrameKind::Physical {
        kallsyms::find(mem.as_ref()).ok()
    } else {
        None
    };
    if let Some(ks) = &ks {
        compare_with_kallsyms(&symbols, ks).map_err(mismatch)?;
    }
    Ok(Kernel::from_checked_parts(space, symbols, ks))
}

/// Every symbol named once in both tables (per-CPU offsets aside) must have the same
/// address.
fn compare_with_kallsyms(file: &SymbolTable, ks: &Kallsyms) -> Result<(), String> {
    fn count(t: &SymbolTable) -> HashMap<&str, u32> {
        let mut c: HashMap<&str, u32> = HashMap::new();
        for s in t.iter() {
            *c.entry(s.name).or_default() += 1;
        }
        c
    }
    let (in_file, in_ks) = (count(file), count(&ks.symbols));
    let mut differ = Vec::new();
    let mut compared = 0usize;
    for s in ks.symbols.iter() {
        if s.kind.eq_ignore_ascii_case(&'a')
            || in_ks.get(s.name) != Some(&1)
            || in_file.get(s.name) != Some(&1)
        {
            continue;
        }
        let Some(f) = file.get(s.name) else { continue };
        if f.kind.eq_ignore_ascii_case(&'a') {
            continue;
        }
        compared += 1;
        if f.addr != s.addr {
            differ.push((s.name.to_string(), f.addr, s.addr));
        }
    }
    if differ.is_empty() {
        return Ok(());
    }
    let shown: Vec<String> = differ
        .iter()
        .take(limits::KERNEL_MAX_REPORTED_MISMATCHES)
        .map(|(n, f, k)| format!("{n} is {f:#x} here, {k:#x} in the guest's kallsyms"))
        .collect();
    Err(format!(
        "{} of {compared} symbols differ from the guest's kallsyms ({})",
        differ.len(),
        shown.join("; ")
    ))
}

/// Checks that the types `kernel` has loaded (from `file`) describe the kernel in memory:
/// `init_task` read with their layout is the idle task (`comm` `swapper…`, `pid` 0) on a
/// consistent `tasks` list. A kernel whose symbols do not name `init_task` (no
/// `CONFIG_KALLSYMS_ALL`) has it found by exactly that property, so there finding it is the
/// check.
pub fn check_types(kernel: &Kernel, file: &str) -> Result<(), KernelError> {
    let mismatch = |reason: String| KernelError::FileMismatch {
        file: file.to_string(),
        reason,
    };
    // A list node is two pointers: the types' pointer size must be the guest's.
    let btf = kernel.btf()?;
    let word = kernel.pointer_size() as u64;
    if let Some(size) = btf.find("list_head").and_then(|t| btf.types().size_of(t)) {
        if size != 2 * word {
            return Err(mismatch(format!(
                "its pointers are {} bytes (struct list_head is {size}), the guest kernel's \
                 {word}: its types are of another architecture",
                size / 2
            )));
        }
    }
    let layout = super::anchors::IdleTaskLayout::of(kernel).map_err(|e| match e {
        KernelError::MissingType(t) => mismatch(format!("its types have no {t}")),
        other => other,
    })?;
    let init = kernel.data_symbol("init_task").map_err(|e| match e {
        KernelError::MissingSymbol(what) => mismatch(format!("with its types no {what}")),
        other => other,
    })?;
    super::anchors::check_idle_task(kernel, init, &layout).map_err(|why| {
        mismatch(format!(
            "with its layout init_task at {init:#x}: {why}: its types are of another kernel"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sym(name: &str, addr: u64, kind: char) -> Symbol {
        Symbol {
            name: name.into(),
            addr,
            kind,
        }
    }

    #[test]
    fn banners_are_checked_exactly_or_by_release() {
        let banner = b"Linux version 6.1.0-57-amd64 (debian-kernel@lists.debian.org) #1 SMP";
        assert!(check_banner(&BannerCheck::Exact(banner.to_vec()), banner).is_ok());
        let other = b"Linux version 6.1.0-57-amd64 (debian-kernel@lists.debian.org) #2 SMP";
        assert!(check_banner(&BannerCheck::Exact(banner.to_vec()), other).is_err());
        assert!(check_banner(&BannerCheck::Release("6.1.0-57-amd64".into()), banner).is_ok());
        // A release that is a prefix of the guest's is not the guest's.
        let err = check_banner(&BannerCheck::Release("6.1.0-5".into()), banner).unwrap_err();
        assert!(err.contains("6.1.0-5 "), "{err}");
        assert!(check_banner(&BannerCheck::Prefix, banner).is_ok());
    }

    #[test]
    fn percpu_offsets_of_a_64_bit_kernel_are_not_relocated() {
        let mut symbols = vec![
            sym("fixed_percpu_data", 0, 'D'),
            sym("runqueues", 0x2e000, 'd'),
            sym("_text", 0xffff_ffff_8100_0000, 'T'),
        ];
        mark_percpu_absolute(&mut symbols);
        let kinds: Vec<char> = symbols.iter().map(|s| s.kind).collect();
        assert_eq!(kinds, ['A', 'a', 'T']);
        let table = SymbolTable::new(symbols)
            .unwrap()
            .relocated(0x2000_0000)
            .unwrap();
        assert_eq!(table.lookup("runqueues"), Some(0x2e000));
        assert_eq!(table.lookup("_text"), Some(0xffff_ffff_a100_0000));
        // A 32-bit kernel has no zero-based per-CPU symbols to keep.
        let mut symbols = vec![sym("_text", 0xc100_0000, 'T'), sym("x", 0x1000, 'D')];
        mark_percpu_absolute(&mut symbols);
        assert_eq!(symbols[1].kind, 'D');
    }

    #[test]
    fn system_map_files_give_the_release_and_placeholders_are_named() {
        let dir = std::env::temp_dir().join(format!("vmark-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let map = dir.join("System.map-6.1.0-57-amd64");
        std::fs::write(
            &map,
            "ffffffff81000000 T _text\nffffffff82162900 D linux_banner\n",
        )
        .unwrap();
        let link = system_map(&map).unwrap();
        assert_eq!(link.banner, BannerCheck::Release("6.1.0-57-amd64".into()));
        assert_eq!(
            link.symbols.lookup("linux_banner"),
            Some(0xffff_ffff_8216_2900)
        );
        let placeholder = dir.join("System.map-placeholder");
        std::fs::write(
            &placeholder,
            "ffffffffffffffff B The real System.map is in the linux-image-<version>-dbg package\n",
        )
        .unwrap();
        let link = system_map(&placeholder).unwrap();
        let mem: Arc<dyn PhysicalMemory> =
            Arc::new(super::super::phys::VecMemory::new(vec![0; 4096]));
        let err = locate(mem, None, &link).unwrap_err().to_string();
        assert!(err.contains("placeholder") && err.contains("-dbg"), "{err}");
        // Neither BTF nor ELF.
        let err = btf_file(&map).unwrap_err().to_string();
        assert!(err.contains("neither a BTF blob"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
