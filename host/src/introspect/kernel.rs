//! A guest Linux kernel found in physical memory, with no offsets configured anywhere:
//! symbols from its kallsyms, the kernel page-table root and KASLR slide from those
//! symbols, struct layouts from its BTF, and the process and module lists walked with them.

use super::btf::{Btf, BtfError};
use super::kallsyms::{self, Kallsyms, KallsymsError};
use super::paging::{PagingMode, TranslateError};
use super::phys::{FrameKind, MemError, PhysicalMemory};
use super::symbols::{SymbolTable, X86_64_DEFAULT_TEXT};
use super::vmem::{AddressSpace, Translator, VirtualWindow};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use vmark_proto::text::escape;
use vmark_proto::{limits, TypeId};

/// Most tasks walked ([`vmark_proto::limits::KERNEL_MAX_TASKS`]).
pub const MAX_TASKS: usize = limits::KERNEL_MAX_TASKS;
/// Most modules walked ([`vmark_proto::limits::KERNEL_MAX_MODULES`]).
pub const MAX_MODULES: usize = limits::KERNEL_MAX_MODULES;
/// Most symbols read from one module's kallsyms.
pub const MAX_MODULE_SYMBOLS: u64 = limits::KERNEL_MAX_MODULE_SYMBOLS;
/// Start of the x86-64 kernel image mapping (`__START_KERNEL_map`); KASLR moves the
/// kernel within the next [`KERNEL_IMAGE_SIZE`] bytes.
pub const KERNEL_IMAGE_START: u64 = 0xffff_ffff_8000_0000;
/// Size of the kernel image mapping (`KERNEL_IMAGE_SIZE` with KASLR).
pub const KERNEL_IMAGE_SIZE: u64 = 1 << 30;
/// Largest BTF blob read from guest memory.
pub const MAX_BTF_BYTES: u64 = limits::KERNEL_MAX_BTF_BYTES;
/// i386 link-time address of `_text` (`PAGE_OFFSET` 0xc0000000 + 16 MiB).
pub const I386_DEFAULT_TEXT: u64 = 0xc100_0000;
/// Size of an `Elf64_Sym`.
const ELF64_SYM_SIZE: u64 = 24;
/// Size of an `Elf32_Sym`.
const ELF32_SYM_SIZE: u64 = 16;

/// Why the kernel could not be located or walked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KernelError {
    /// Physical memory read failed.
    #[error(transparent)]
    Memory(#[from] MemError),
    /// A virtual address did not translate.
    #[error(transparent)]
    Translate(#[from] TranslateError),
    /// kallsyms not found or inconsistent.
    #[error(transparent)]
    Kallsyms(#[from] KallsymsError),
    /// BTF not parseable.
    #[error(transparent)]
    Btf(#[from] BtfError),
    /// A symbol the operation needs is missing.
    #[error("kernel symbol {0} not found")]
    MissingSymbol(String),
    /// A type or member the operation needs is missing from BTF.
    #[error("kernel type/member {0} not found in BTF")]
    MissingType(String),
    /// No BTF loaded (call [`Kernel::load_btf`] or [`Kernel::set_btf`]).
    #[error("no BTF loaded")]
    NoBtf,
    /// The guest kernel carries no BTF of its own (no `__start_BTF` in its kallsyms).
    #[error(
        "the guest kernel has no BTF (built without CONFIG_DEBUG_INFO_BTF): process and \
         module lists need its struct layouts; symbols (`vmark sym`) and `read-va` work without. \
         Give the same kernel's types as a file: --btf FILE (a BTF blob, an ELF with a .BTF \
         section, or an ELF with DWARF: the -dbg package's vmlinux, or the kernel-types probe \
         built against the kernel's headers: make -C buildmacros/kernel-types KDIR=...)"
    )]
    NoKernelBtf,
    /// The kernel's own BTF (between `__start_BTF` and `__stop_BTF`) does not parse.
    #[error(
        "the guest kernel's BTF (__start_BTF at {start:#x}, {len} bytes) does not parse: \
         {source}; process and module lists need the struct layouts of a kernel built with \
         CONFIG_DEBUG_INFO_BTF, or the same kernel's types as a file: --btf FILE (a BTF blob, \
         an ELF with a .BTF section, or an ELF with DWARF: the -dbg package's vmlinux, or the \
         kernel-types probe built against the kernel's headers: make -C \
         buildmacros/kernel-types KDIR=...)"
    )]
    KernelBtf {
        /// `__start_BTF`.
        start: u64,
        /// Bytes.
        len: u64,
        /// Why.
        source: BtfError,
    },
    /// A kernel file given by the user (`--btf`, `--system-map`, `--vmlinux`) could not be
    /// read or used.
    #[error("{0}")]
    KernelFile(String),
    /// A kernel file given by the user is not of the kernel found in memory.
    #[error("{file} does not match the kernel in memory: {reason}")]
    FileMismatch {
        /// The file.
        file: String,
        /// What differs.
        reason: String,
    },
    /// No candidate page-table root translates the kernel's own banner correctly.
    #[error("cannot find the kernel page tables: {0}")]
    NoPageTables(String),
    /// A list is corrupt: a cycle not through its head, or a `next` that does not read.
    #[error("list at {head:#x} is corrupt: {reason}")]
    CorruptList {
        /// List head address.
        head: u64,
        /// What happened.
        reason: String,
    },
    /// A walk went over one of vmark's budgets ([`vmark_proto::limits`]).
    #[error("{what}: over the budget of {limit} {unit}")]
    OverBudget {
        /// The item walked (a list, a module's symbol table).
        what: String,
        /// The budget.
        limit: u64,
        /// What is counted.
        unit: &'static str,
    },
    /// Address arithmetic on guest values overflows.
    #[error("address arithmetic overflows: {0}")]
    Overflow(String),
    /// One item (a task, a module) could not be read.
    #[error("{item}: {source}")]
    Item {
        /// The item, e.g. `module at 0xffff...` or `module ext4`.
        item: String,
        /// Why.
        source: Box<KernelError>,
    },
}

/// `base + off`, or an error naming `what`.
fn add(base: u64, off: u64, what: &str) -> Result<u64, KernelError> {
    base.checked_add(off)
        .ok_or_else(|| KernelError::Overflow(format!("{what}: {base:#x} + {off:#x}")))
}

/// `base - off`, or an error naming `what`.
fn sub(base: u64, off: u64, what: &str) -> Result<u64, KernelError> {
    base.checked_sub(off)
        .ok_or_else(|| KernelError::Overflow(format!("{what}: {base:#x} - {off:#x}")))
}

/// The items of a guest list, in list order, each read or failed, and why the walk stopped
/// before it closed, if it did (the items before that point are kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListWalk<T> {
    /// Every item reached: read, or why not (with its address).
    pub items: Vec<Result<T, ItemError>>,
    /// Why the walk ended early: a `next` that does not read, a cycle, a budget.
    pub end: Option<KernelError>,
}

/// An item of a guest list that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} at {addr:#x}: {error}")]
pub struct ItemError {
    /// What the item is (`task`, `module`).
    pub what: &'static str,
    /// Its address.
    pub addr: u64,
    /// Why it could not be read.
    pub error: KernelError,
}

impl<T> ListWalk<T> {
    /// The items that were read.
    pub fn ok(&self) -> impl Iterator<Item = &T> {
        self.items.iter().filter_map(|r| r.as_ref().ok())
    }

    /// All items, or the first error (of an item or of the walk).
    pub fn into_result(self) -> Result<Vec<T>, KernelError> {
        let mut out = Vec::with_capacity(self.items.len());
        for item in self.items {
            match item {
                Ok(v) => out.push(v),
                Err(e) => {
                    return Err(KernelError::Item {
                        item: format!("{} at {:#x}", e.what, e.addr),
                        source: Box::new(e.error),
                    })
                }
            }
        }
        match self.end {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }
}

/// What [`Kernel::helper_registry`] found: the mark records and manifests of every module
/// that could be read, and what could not.
#[derive(Debug, Clone, Default)]
pub struct HelperRegistry {
    /// `__vmark_rec_*` and `__vmark_manifest` symbols of every readable module.
    pub symbols: Vec<ModuleSymbol>,
    /// Modules (or the module list) that could not be read, with why.
    pub errors: Vec<(String, KernelError)>,
}

/// A process (task) of the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    /// Address of its `task_struct`.
    pub task: u64,
    /// `pid` (thread id).
    pub pid: i32,
    /// `tgid` (process id).
    pub tgid: i32,
    /// `comm`.
    pub name: String,
    /// `real_parent->pid`, when readable.
    pub parent_pid: Option<i32>,
    /// `mm` (0 for kernel threads).
    pub mm: u64,
    /// `mm->pgd` (virtual), when the task has an mm.
    pub pgd: Option<u64>,
    /// Physical address of the page-table root (the task's CR3 without PCID bits).
    pub dtb: Option<u64>,
}

/// A loaded module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    /// Address of its `struct module`.
    pub addr: u64,
    /// `name`.
    pub name: String,
    /// Base of its core text/data (`core_layout.base`, or `mem[MOD_TEXT].base` on ≥ 6.4).
    pub base: u64,
    /// Size of its core area (`core_layout.size`; on ≥ 6.4 the sum of its `mem[].size`).
    pub size: u64,
    /// Its memory regions, (base, size): the core area, or on ≥ 6.4 each `mem[]` region
    /// (text, data, rodata, ... are allocations of their own there).
    pub regions: Vec<(u64, u64)>,
}

/// A symbol of a module, from its `struct mod_kallsyms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleSymbol {
    /// Module name.
    pub module: String,
    /// Symbol name.
    pub name: String,
    /// Address.
    pub addr: u64,
    /// `st_size`.
    pub size: u64,
}

/// Where the kernel is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelBase {
    /// Virtual address of `_text`.
    pub text_virt: u64,
    /// Physical address of `_text`.
    pub text_phys: u64,
    /// KASLR slide of the virtual base against the default `0xffffffff81000000`.
    pub kaslr_offset: i64,
    /// Kernel page-table root, as a CR3 value (a machine address for Xen PV).
    pub root: u64,
    /// Paging mode.
    pub mode: PagingMode,
}

/// A guest kernel.
pub struct Kernel {
    space: AddressSpace,
    symbols: SymbolTable,
    kallsyms: Option<Kallsyms>,
    base: KernelBase,
    btf: Option<Arc<Btf>>,
    /// Data symbols found by structure ([`Kernel::data_symbol`]) with the loaded types, or
    /// why not (a failed scan is not repeated).
    found: std::sync::Mutex<HashMap<&'static str, Result<u64, KernelError>>>,
}

impl std::fmt::Debug for Kernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kernel")
            .field("base", &self.base)
            .field("symbols", &self.symbols.len())
            .field("btf", &self.btf.is_some())
            .finish()
    }
}

impl Kernel {
    /// Finds the kernel in `mem`: scans for kallsyms, then the page tables.
    /// When the source carries the kernel's VMCOREINFO, the kallsyms tables it names are
    /// tried first (no scan); they are checked as found ones are, and a wrong hint costs a
    /// bounded amount of work before the scan.
    pub fn locate(mem: Arc<dyn PhysicalMemory>) -> Result<Self, KernelError> {
        let ks = match kallsyms_from_vmcoreinfo(&mem) {
            Some(ks) => ks,
            None => kallsyms::find(mem.as_ref())?,
        };
        let symbols = ks.symbols.clone();
        Self::with_symbols(mem, symbols, Some(ks))
    }

    /// Uses runtime (KASLR-applied) `symbols` to find the kernel page tables: the virtual
    /// address of `linux_banner` must translate to a physical copy of the banner.
    /// Candidate roots: `init_top_pgt` as a recorded vCPU's page tables translate it (no
    /// scan), then `init_top_pgt` at the banner's virtual-to-physical delta (from a scan of
    /// memory for banners), then every recorded vCPU's CR3. Xen PV roots are machine
    /// addresses: the vCPUs' first, then `init_top_pgt`'s through the source's P2M.
    pub fn with_symbols(
        mem: Arc<dyn PhysicalMemory>,
        symbols: SymbolTable,
        kallsyms: Option<Kallsyms>,
    ) -> Result<Self, KernelError> {
        let Some(banner) = symbols.lookup("linux_banner") else {
            // Kernels without CONFIG_KALLSYMS_ALL (Debian's i386 ones) list no data symbols.
            return match &kallsyms {
                Some(ks) => Self::with_kallsyms_anchor(mem, symbols.clone(), ks.clone()),
                None => Err(KernelError::MissingSymbol("linux_banner".into())),
            };
        };
        let pgt = page_directory_symbol(&symbols);
        let vcpus = mem.vcpus();
        // The vCPUs' modes first; dumps rarely record EFER, so CR4.PAE is ambiguous
        // between long mode and PAE: the word size kallsyms shows decides which comes first,
        // and every mode is tried (the banner check tells the right one).
        let word32 =
            kallsyms.as_ref().is_some_and(|k| k.word.bytes == 4) || banner <= u64::from(u32::MAX);
        let mut modes: Vec<PagingMode> = vcpus
            .iter()
            .filter(|v| v.cr3 != 0)
            .map(|v| PagingMode::from_registers(v.cr4, v.efer, !word32))
            .collect();
        if word32 {
            modes.extend([PagingMode::Pae, PagingMode::Legacy32]);
        } else {
            modes.extend([PagingMode::Long4, PagingMode::Long5]);
        }
        let mut seen_modes = HashSet::new();
        modes.retain(|m| seen_modes.insert(*m));
        // First without scanning memory for banners: a vCPU's page tables map the kernel
        // image, so they give init_top_pgt's physical address, the root the scan below
        // would derive; it must map linux_banner onto a banner, as there.
        if let (Some(pgt), FrameKind::Physical) = (pgt, mem.frame_kind()) {
            for &mode in &modes {
                let translator = Arc::new(Translator::new(mem.clone(), mode));
                let found = vcpus
                    .iter()
                    .filter(|v| v.cr3 != 0)
                    .find_map(|v| kernel_page_directory(&translator, v.cr3, pgt, banner));
                if let Some(root) = found {
                    return Ok(Self::assemble(translator.space(root), symbols, kallsyms));
                }
            }
        }
        let hits = kallsyms::scan(
            mem.as_ref(),
            b"Linux version ",
            limits::KERNEL_MAX_BANNER_HITS,
        )?;
        let mut roots: Vec<u64> = Vec::new();
        if mem.frame_kind() == FrameKind::Physical {
            if let Some(pgt) = pgt {
                for &hit in hits.iter().filter(|&&h| h & 0xfff == banner & 0xfff) {
                    // init_top_pgt's physical address, at the banner's virt-to-phys delta.
                    if let Some(root) = banner.checked_sub(hit).and_then(|d| pgt.checked_sub(d)) {
                        roots.push(root);
                    }
                }
            }
        }
        roots.extend(vcpus.iter().map(|v| v.cr3).filter(|&c| c != 0));
        // Xen PV: whatever page table a vCPU was on when the dump was taken, init_top_pgt
        // is at the banner's virtual-to-pseudo-physical distance too, and the source's P2M
        // gives its machine address (what PV page walks start from).
        if let (FrameKind::XenPv, Some(pgt), Some(p2m)) =
            (mem.frame_kind(), pgt, mem.phys_to_machine())
        {
            for &hit in hits.iter().filter(|&&h| h & 0xfff == banner & 0xfff) {
                let root = banner
                    .checked_sub(hit)
                    .and_then(|d| pgt.checked_sub(d))
                    .and_then(|pa| {
                        p2m.p2m(pa >> 12)?
                            .checked_mul(4096)?
                            .checked_add(pa & 0xfff)
                    });
                if let Some(root) = root.filter(|r| !roots.contains(r)) {
                    roots.push(root);
                }
            }
        }
        for &mode in &modes {
            let translator = Arc::new(Translator::new(mem.clone(), mode));
            for &root in &roots {
                let Ok(pa) = translator.translate_uncached(root, banner) else {
                    continue;
                };
                if !hits.contains(&pa.paddr) {
                    continue;
                }
                return Ok(Self::assemble(translator.space(root), symbols, kallsyms));
            }
        }
        Err(KernelError::NoPageTables(format!(
            "{} banner copies, {} candidate roots, none maps linux_banner={banner:#x} onto a banner",
            hits.len(),
            roots.len()
        )))
    }

    /// Finds the page tables of a kernel whose kallsyms lists no `linux_banner` (built
    /// without `CONFIG_KALLSYMS_ALL`): a vCPU's CR3, in each paging mode, must map `_text`
    /// and map the kallsyms tables vmark decoded at the same virtual-to-physical distance
    /// (the kernel image is mapped as one piece).
    fn with_kallsyms_anchor(
        mem: Arc<dyn PhysicalMemory>,
        symbols: SymbolTable,
        ks: Kallsyms,
    ) -> Result<Self, KernelError> {
        let text = symbols
            .lookup("_text")
            .or_else(|| symbols.lookup("_stext"))
            .ok_or_else(|| KernelError::MissingSymbol("linux_banner, _text".into()))?;
        let vcpus = mem.vcpus();
        let word32 = ks.word.bytes == 4;
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
        let mut seen = HashSet::new();
        modes.retain(|m| seen.insert(*m));
        let roots: Vec<u64> = vcpus.iter().map(|v| v.cr3).filter(|&c| c != 0).collect();
        // Whether `root` maps _text and the kallsyms tables vmark decoded at one
        // virtual-to-physical distance.
        let maps_image = |translator: &Translator, root: u64| -> bool {
            let Ok(t) = translator.translate_uncached(root, text) else {
                return false;
            };
            let Some(delta) = text.checked_sub(t.paddr) else {
                return false;
            };
            let maps = |pa: u64| {
                pa.checked_add(delta)
                    .and_then(|va| translator.translate_uncached(root, va).ok())
                    .is_some_and(|t| t.paddr == pa)
            };
            maps(ks.token_table_paddr) && maps(ks.names_paddr)
        };
        for &mode in &modes {
            let translator = Arc::new(Translator::new(mem.clone(), mode));
            for &root in &roots {
                if maps_image(&translator, root) {
                    return Ok(Self::assemble(translator.space(root), symbols, Some(ks)));
                }
            }
        }
        // No vCPU state (a shared-RAM file) or none that fits: the kernel's own page
        // directory (swapper_pg_dir) is a page of its image, after the kallsyms tables
        // (rodata) in its data or bss. Every page there is a candidate root in each mode;
        // boot-time tables (initial_page_table) pass the image test too, so the candidate
        // that maps the most of the kernel half wins: the running kernel's.
        let mut best: Option<(u32, u64, PagingMode)> = None;
        if mem.frame_kind() == FrameKind::Physical {
            let start = ks.names_paddr & !0xfff;
            let translators: Vec<(PagingMode, Translator)> = modes
                .iter()
                .map(|&m| (m, Translator::new(mem.clone(), m)))
                .collect();
            for i in 0..limits::KERNEL_MAX_ROOT_SCAN_BYTES / 4096 {
                let Some(root) = start.checked_add(i * 4096) else {
                    break;
                };
                for (mode, translator) in &translators {
                    let mode = *mode;
                    if !maps_image(translator, root) {
                        continue;
                    }
                    let score = kernel_half_entries(mem.as_ref(), root, mode);
                    if best.is_none_or(|(s, _, _)| score > s) {
                        best = Some((score, root, mode));
                    }
                }
            }
        }
        if let Some((_, root, mode)) = best {
            let translator = Arc::new(Translator::new(mem.clone(), mode));
            return Ok(Self::assemble(translator.space(root), symbols, Some(ks)));
        }
        Err(KernelError::NoPageTables(format!(
            "no linux_banner symbol (a kernel without CONFIG_KALLSYMS_ALL), and none of {} \
             vCPU page-table roots, nor any page in the {} MiB of the image after its kallsyms \
             tables, maps _text={text:#x} and the kallsyms tables as one image",
            roots.len(),
            limits::KERNEL_MAX_ROOT_SCAN_BYTES >> 20
        )))
    }

    /// Finds the kernel through a known page-table root (a vCPU's CR3, as a register
    /// value: for Xen PV a machine address) instead of scanning physical memory: kallsyms
    /// is searched in the kernel image's virtual range ([`KERNEL_IMAGE_START`], 1 GiB)
    /// through `root`, and `linux_banner` must read as a banner there. For sources whose
    /// physical space is too large or sparse to scan (live Xen PV guests, whose frames
    /// are machine frames). A CR3 of a user page table under PTI is tried as the kernel
    /// one too (the kernel's is the page below).
    ///
    /// The kernel found reads through its own page directory (`init_top_pgt`, or
    /// `swapper_pg_dir`), as `root` translates it, when that maps the banner too: a vCPU's
    /// CR3 is most often some process's page table, which is freed and reused when the
    /// process exits, while the kernel's lives as long as the kernel (a live domain is
    /// read for as long as vmark runs).
    pub fn locate_with_root(
        mem: Arc<dyn PhysicalMemory>,
        root: u64,
        mode: PagingMode,
    ) -> Result<Self, KernelError> {
        let translator = Arc::new(Translator::new(mem, mode));
        let mut last = KernelError::NoPageTables(format!("root {root:#x} maps no kernel image"));
        for root in cr3_roots(root, mode) {
            let space = translator.space(root);
            let window = VirtualWindow::new(space.clone(), KERNEL_IMAGE_START, KERNEL_IMAGE_SIZE);
            let ks = match kallsyms::find(&window) {
                Ok(ks) => ks,
                Err(e) => {
                    last = e.into();
                    continue;
                }
            };
            let banner = ks
                .symbols
                .lookup("linux_banner")
                .ok_or_else(|| KernelError::MissingSymbol("linux_banner".into()))?;
            let mut text = [0u8; 14];
            if space.read(banner, &mut text).is_ok() && &text == b"Linux version " {
                let symbols = ks.symbols.clone();
                let space = match page_directory_symbol(&symbols)
                    .and_then(|pgd| kernel_page_directory(&translator, root, pgd, banner))
                {
                    Some(pgd) => translator.space(pgd),
                    None => space,
                };
                return Ok(Self::assemble(space, symbols, Some(ks)));
            }
            last = KernelError::NoPageTables(format!(
                "root {root:#x} does not map linux_banner={banner:#x} onto a banner"
            ));
        }
        Err(last)
    }

    /// A kernel whose address space and symbols are already known (a page-table root
    /// found elsewhere, synthetic memory in tests and fuzzing): nothing is searched or
    /// checked, the walks read through `space` with `symbols`.
    pub fn from_parts(space: AddressSpace, symbols: SymbolTable) -> Self {
        Self::assemble(space, symbols, None)
    }

    /// A kernel whose address space and symbols the caller has checked (the kernel files
    /// of [`super::files`]).
    pub(crate) fn from_checked_parts(
        space: AddressSpace,
        symbols: SymbolTable,
        kallsyms: Option<Kallsyms>,
    ) -> Self {
        Self::assemble(space, symbols, kallsyms)
    }

    /// A kernel whose address space has been checked.
    fn assemble(space: AddressSpace, symbols: SymbolTable, kallsyms: Option<Kallsyms>) -> Self {
        let text_virt = symbols
            .lookup("_text")
            .or_else(|| symbols.lookup("_stext"))
            .or_else(|| symbols.lookup("linux_banner"))
            .unwrap_or(X86_64_DEFAULT_TEXT);
        let translator = space.translator();
        // The link-time _text KASLR moves from: x86-64's, or i386's (PAGE_OFFSET 3 GiB +
        // CONFIG_PHYSICAL_START 16 MiB).
        let default_text = match translator.mode() {
            PagingMode::Long4 | PagingMode::Long5 => X86_64_DEFAULT_TEXT,
            PagingMode::Pae | PagingMode::Legacy32 => I386_DEFAULT_TEXT,
        };
        let base = KernelBase {
            text_virt,
            text_phys: translator
                .translate_uncached(space.root(), text_virt)
                .map(|t| t.paddr)
                .unwrap_or(0),
            // A signed distance: two's complement of the difference is the slide.
            kaslr_offset: text_virt.wrapping_sub(default_text) as i64,
            root: space.root(),
            mode: translator.mode(),
        };
        Kernel {
            space,
            symbols,
            kallsyms,
            base,
            btf: None,
            found: Default::default(),
        }
    }

    /// Kernel base, KASLR slide and page-table root.
    pub fn base(&self) -> KernelBase {
        self.base
    }

    /// The symbols.
    pub fn symbols(&self) -> &SymbolTable {
        &self.symbols
    }

    /// Where kallsyms was found, when it was.
    pub fn kallsyms(&self) -> Option<&Kallsyms> {
        self.kallsyms.as_ref()
    }

    /// The kernel address space.
    pub fn space(&self) -> &AddressSpace {
        &self.space
    }

    /// Address of a kernel symbol.
    pub fn symbol(&self, name: &str) -> Result<u64, KernelError> {
        self.symbols
            .lookup(name)
            .ok_or_else(|| KernelError::MissingSymbol(name.to_string()))
    }

    /// Address of a kernel data object the walks start from (`init_task`, `modules`): its
    /// symbol, or, for a kernel whose kallsyms has no data symbols (no
    /// `CONFIG_KALLSYMS_ALL`), the object found by its structure with the loaded types.
    pub fn data_symbol(&self, name: &'static str) -> Result<u64, KernelError> {
        if let Some(a) = self.symbols.lookup(name) {
            return Ok(a);
        }
        if self.has_data_symbols() {
            return Err(KernelError::MissingSymbol(name.to_string()));
        }
        if let Some(found) = self.found_lock().get(name) {
            return found.clone();
        }
        let found = match name {
            "init_task" => super::anchors::find_init_task(self),
            "modules" => super::anchors::find_module_list(self),
            _ => return Err(KernelError::MissingSymbol(name.to_string())),
        };
        self.found_lock().insert(name, found.clone());
        found
    }

    fn found_lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<&'static str, Result<u64, KernelError>>> {
        self.found.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the kernel's symbols name data (kallsyms built with `CONFIG_KALLSYMS_ALL`,
    /// or a System.map), not only text: data every kernel has is named. (Kinds alone do
    /// not tell: a text-only kallsyms still holds a few data symbols inside the text.)
    pub fn has_data_symbols(&self) -> bool {
        ["linux_banner", "jiffies", "init_task"]
            .iter()
            .any(|n| self.symbols.lookup(n).is_some())
    }

    /// Reads kernel virtual memory.
    pub fn read(&self, vaddr: u64, buf: &mut [u8]) -> Result<(), KernelError> {
        Ok(self.space.read(vaddr, buf)?)
    }

    /// Reads the kernel's own BTF (`__start_BTF..__stop_BTF`) and keeps it.
    pub fn load_btf(&mut self) -> Result<Arc<Btf>, KernelError> {
        let (Ok(start), Ok(stop)) = (self.symbol("__start_BTF"), self.symbol("__stop_BTF")) else {
            return Err(KernelError::NoKernelBtf);
        };
        let len = stop
            .checked_sub(start)
            .filter(|&l| l > 0 && l <= MAX_BTF_BYTES)
            .ok_or_else(|| {
                BtfError::Header(format!(
                    "__start_BTF..__stop_BTF spans {:#x} bytes",
                    stop.wrapping_sub(start)
                ))
            })?;
        let mut data = vec![0u8; len as usize];
        self.read(start, &mut data)?;
        let btf = Arc::new(Btf::parse(&data).map_err(|source| KernelError::KernelBtf {
            start,
            len,
            source,
        })?);
        self.btf = Some(btf.clone());
        self.found_lock().clear();
        Ok(btf)
    }

    /// Uses `btf` (e.g. from a file) for layouts.
    pub fn set_btf(&mut self, btf: Arc<Btf>) {
        self.btf = Some(btf);
        self.found_lock().clear();
    }

    /// The loaded BTF.
    pub fn btf(&self) -> Result<&Arc<Btf>, KernelError> {
        self.btf.as_ref().ok_or(KernelError::NoBtf)
    }

    pub(crate) fn type_id(&self, name: &str) -> Result<TypeId, KernelError> {
        self.btf()?
            .find(name)
            .ok_or_else(|| KernelError::MissingType(name.to_string()))
    }

    pub(crate) fn offset(&self, ty: TypeId, ty_name: &str, path: &str) -> Result<u64, KernelError> {
        self.btf()?
            .member_offset(ty, path)
            .map(|(o, _)| o)
            .ok_or_else(|| KernelError::MissingType(format!("{ty_name}.{path}")))
    }

    /// Walks the circular `list_head` list at `head` (the head itself excluded), following
    /// `next`, for at most `max` nodes, with cycle detection. Returns the nodes reached and,
    /// when the walk did not come back to the head, why: a `next` that does not read, a node
    /// that repeats (a cycle not through the head), or more than `max` nodes.
    pub fn walk_list(&self, head: u64, max: usize, what: &str) -> (Vec<u64>, Option<KernelError>) {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        let corrupt = |reason: String| KernelError::CorruptList { head, reason };
        let mut node = match self.read_ptr(head) {
            Ok(n) => n,
            Err(e) => {
                return (
                    out,
                    Some(corrupt(format!("{what}: head does not read: {e}"))),
                )
            }
        };
        while node != head {
            if !seen.insert(node) {
                return (
                    out,
                    Some(corrupt(format!("{what}: node {node:#x} repeats (a cycle)"))),
                );
            }
            if out.len() >= max {
                let e = KernelError::OverBudget {
                    what: format!("{what} (list at {head:#x})"),
                    limit: max as u64,
                    unit: "entries",
                };
                return (out, Some(e));
            }
            out.push(node);
            node = match self.read_ptr(node) {
                Ok(n) => n,
                Err(e) => {
                    let reason = format!("{what}: next of node {node:#x} does not read: {e}");
                    return (out, Some(corrupt(reason)));
                }
            };
        }
        (out, None)
    }

    /// The nodes of the circular `list_head` list at `head` (the head itself excluded),
    /// following `next`. Stops at the head; fails on a cycle elsewhere, a `next` that does
    /// not read, or past `max` (see [`Kernel::walk_list`] to keep the nodes before that).
    pub fn list_nodes(&self, head: u64, max: usize) -> Result<Vec<u64>, KernelError> {
        match self.walk_list(head, max, "list") {
            (nodes, None) => Ok(nodes),
            (_, Some(e)) => Err(e),
        }
    }

    /// Bytes of a kernel pointer: 4 under 32-bit and PAE paging, 8 in long mode.
    pub fn pointer_size(&self) -> usize {
        match self.base.mode {
            PagingMode::Pae | PagingMode::Legacy32 => 4,
            PagingMode::Long4 | PagingMode::Long5 => 8,
        }
    }

    /// Reads a kernel pointer (of [`Kernel::pointer_size`] bytes).
    pub fn read_ptr(&self, va: u64) -> Result<u64, TranslateError> {
        if self.pointer_size() == 4 {
            self.space.read_u32(va).map(u64::from)
        } else {
            self.space.read_u64(va)
        }
    }

    fn read_i32(&self, va: u64) -> Result<i32, KernelError> {
        Ok(self.space.read_u32(va)? as i32)
    }

    /// All tasks on `init_task.tasks` (thread group leaders), `init_task` first; fails on
    /// the first task or list node that does not read (see [`Kernel::walk_processes`]).
    pub fn processes(&self) -> Result<Vec<Process>, KernelError> {
        self.walk_processes()?.into_result()
    }

    /// All tasks on `init_task.tasks`, `init_task` first, each read or failed on its own;
    /// a broken list ends the walk with the tasks before it. Fails only when the layout
    /// (BTF) or `init_task` is missing.
    pub fn walk_processes(&self) -> Result<ListWalk<Process>, KernelError> {
        let task_t = self.type_id("task_struct")?;
        let off = |p: &str| self.offset(task_t, "task_struct", p);
        let o = TaskOffsets {
            tasks: off("tasks")?,
            pid: off("pid")?,
            tgid: off("tgid")?,
            comm: off("comm")?,
            mm: off("mm")?,
            parent: off("real_parent")?,
            pgd: {
                let mm_t = self.type_id("mm_struct")?;
                self.offset(mm_t, "mm_struct", "pgd")?
            },
        };
        let init = self.data_symbol("init_task")?;
        let head = add(init, o.tasks, "init_task.tasks")?;
        let (nodes, end) = self.walk_list(head, MAX_TASKS, "tasks");
        let mut items = Vec::with_capacity(nodes.len() + 1);
        items.push(self.process(init, &o).map_err(|error| ItemError {
            what: "task",
            addr: init,
            error,
        }));
        for node in nodes {
            // Named by its task_struct when that is computable, else by the list node.
            let task = node.checked_sub(o.tasks);
            let item = sub(node, o.tasks, "task of list node")
                .and_then(|task| self.process(task, &o))
                .map_err(|error| ItemError {
                    what: "task",
                    addr: task.unwrap_or(node),
                    error,
                });
            items.push(item);
        }
        Ok(ListWalk { items, end })
    }

    fn process(&self, task: u64, o: &TaskOffsets) -> Result<Process, KernelError> {
        let at = |off: u64, what: &str| add(task, off, what);
        let mm = self.read_ptr(at(o.mm, "task.mm")?)?;
        let pgd = if mm != 0 {
            mm.checked_add(o.pgd).and_then(|a| self.read_ptr(a).ok())
        } else {
            None
        };
        let parent = self.read_ptr(at(o.parent, "task.real_parent")?)?;
        Ok(Process {
            task,
            pid: self.read_i32(at(o.pid, "task.pid")?)?,
            tgid: self.read_i32(at(o.tgid, "task.tgid")?)?,
            name: self.space.read_cstring(at(o.comm, "task.comm")?, 16)?,
            parent_pid: parent
                .checked_add(o.pid)
                .and_then(|a| self.read_i32(a).ok()),
            mm,
            pgd,
            dtb: pgd.and_then(|p| self.space.translate(p).ok()),
        })
    }

    /// Where a module's core area (base, size) is: `core_layout` up to Linux 6.3, the
    /// `mem[]` array of `struct module_memory` from 6.4 (base of `mem[MOD_TEXT]`, size the
    /// sum of every `mem[i].size`, as `/proc/modules` shows it).
    fn module_area(&self, module_t: TypeId) -> Result<ModuleArea, KernelError> {
        let btf = self.btf()?;
        let width = |st: TypeId| (btf.types().size_of(st).unwrap_or(4) as usize).clamp(1, 8);
        if let (Some(n), Some((base, _))) = (
            btf.member_count(module_t, "mem"),
            btf.member_offset(module_t, "mem[0].base"),
        ) {
            let (mut bases, mut sizes) = (vec![base], Vec::new());
            let mut w = 4;
            for i in 0..n.min(16) {
                let (off, st) = btf
                    .member_offset(module_t, &format!("mem[{i}].size"))
                    .ok_or_else(|| KernelError::MissingType(format!("module.mem[{i}].size")))?;
                sizes.push(off);
                w = width(st);
                if i > 0 {
                    let (b, _) = btf
                        .member_offset(module_t, &format!("mem[{i}].base"))
                        .ok_or_else(|| KernelError::MissingType(format!("module.mem[{i}].base")))?;
                    bases.push(b);
                }
            }
            return Ok(ModuleArea {
                bases,
                sizes,
                size_width: w,
            });
        }
        if let (Some((base, _)), Some((size, st))) = (
            btf.member_offset(module_t, "core_layout.base"),
            btf.member_offset(module_t, "core_layout.size"),
        ) {
            return Ok(ModuleArea {
                bases: vec![base],
                sizes: vec![size],
                size_width: width(st),
            });
        }
        Err(KernelError::MissingType("module.core_layout/mem".into()))
    }

    /// Loaded modules, in list order; fails on the first module or list node that does
    /// not read (see [`Kernel::walk_modules`]).
    pub fn modules(&self) -> Result<Vec<Module>, KernelError> {
        self.walk_modules()?.into_result()
    }

    /// Loaded modules, in list order, each read or failed on its own; a broken list ends
    /// the walk with the modules before it. Fails only when the layout (BTF) or the
    /// `modules` symbol is missing.
    pub fn walk_modules(&self) -> Result<ListWalk<Module>, KernelError> {
        let module_t = self.type_id("module")?;
        let o_list = self.offset(module_t, "module", "list")?;
        let o_name = self.offset(module_t, "module", "name")?;
        let area = self.module_area(module_t)?;
        let head = self.data_symbol("modules")?;
        let (nodes, end) = self.walk_list(head, MAX_MODULES, "modules");
        let items = nodes
            .into_iter()
            .map(|node| {
                let read = |m: u64| -> Result<Module, KernelError> {
                    let mut total = 0u64;
                    let mut regions = Vec::with_capacity(area.sizes.len());
                    for (&o_base, &o_size) in area.bases.iter().zip(&area.sizes) {
                        let mut size = [0u8; 8];
                        self.read(add(m, o_size, "module size")?, &mut size[..area.size_width])?;
                        let size = u64::from_le_bytes(size);
                        total = add(total, size, "module size")?;
                        regions.push((self.read_ptr(add(m, o_base, "module base")?)?, size));
                    }
                    Ok(Module {
                        addr: m,
                        name: self
                            .space
                            .read_cstring(add(m, o_name, "module name")?, 56)?,
                        base: regions.first().map_or(0, |r| r.0),
                        size: total,
                        regions,
                    })
                };
                sub(node, o_list, "module of list node")
                    .and_then(read)
                    .map_err(|error| ItemError {
                        what: "module",
                        addr: node.checked_sub(o_list).unwrap_or(node),
                        error,
                    })
            })
            .collect();
        Ok(ListWalk { items, end })
    }

    /// Symbols of a loaded module from its `struct mod_kallsyms` (`symtab` of `Elf64_Sym`,
    /// `num_symtab`, `strtab`), keeping those for which `keep(name)` holds. A table of
    /// more than [`MAX_MODULE_SYMBOLS`] symbols is an error for this module.
    pub fn module_symbols(
        &self,
        module: &Module,
        keep: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<ModuleSymbol>, KernelError> {
        let mut budget = limits::KERNEL_MAX_MODULE_SYMBOLS_TOTAL;
        self.module_symbols_within(module, keep, &mut budget)
    }

    /// [`Kernel::module_symbols`], counting symbols read against `budget`.
    fn module_symbols_within(
        &self,
        module: &Module,
        keep: &dyn Fn(&str) -> bool,
        budget: &mut u64,
    ) -> Result<Vec<ModuleSymbol>, KernelError> {
        let module_t = self.type_id("module")?;
        let o_kallsyms = self.offset(module_t, "module", "kallsyms")?;
        let mk_t = self.type_id("mod_kallsyms")?;
        let off = |p: &str| self.offset(mk_t, "mod_kallsyms", p);
        let (o_symtab, o_num, o_strtab) = (off("symtab")?, off("num_symtab")?, off("strtab")?);
        let mk = self.read_ptr(add(module.addr, o_kallsyms, "module.kallsyms")?)?;
        let symtab = self.read_ptr(add(mk, o_symtab, "mod_kallsyms.symtab")?)?;
        let num = u64::from(
            self.space
                .read_u32(add(mk, o_num, "mod_kallsyms.num_symtab")?)?,
        );
        let strtab = self.read_ptr(add(mk, o_strtab, "mod_kallsyms.strtab")?)?;
        let over = |limit: u64, what: String| KernelError::OverBudget {
            what,
            limit,
            unit: "symbols",
        };
        if num > MAX_MODULE_SYMBOLS {
            return Err(over(
                MAX_MODULE_SYMBOLS,
                format!(
                    "symbol table of module {} ({num} symbols)",
                    escape(&module.name)
                ),
            ));
        }
        *budget = budget.checked_sub(num).ok_or_else(|| {
            over(
                limits::KERNEL_MAX_MODULE_SYMBOLS_TOTAL,
                format!(
                    "module symbols of all modules, at module {}",
                    escape(&module.name)
                ),
            )
        })?;
        // Elf64_Sym { u32 name; u8 info, other; u16 shndx; u64 value, size } or
        // Elf32_Sym { u32 name, value, size; u8 info, other; u16 shndx }.
        let wide = self.pointer_size() == 8;
        let sym_size = if wide { ELF64_SYM_SIZE } else { ELF32_SYM_SIZE };
        let bytes = num * sym_size; // at most 24 MiB (num is bounded above)
        add(symtab, bytes, "module symtab")?;
        let mut table = vec![0u8; bytes as usize];
        self.read(symtab, &mut table)?;
        let mut out = Vec::new();
        for sym in table.chunks_exact(sym_size as usize) {
            let le = |r: std::ops::Range<usize>| {
                let mut b = [0u8; 8];
                b[..r.len()].copy_from_slice(&sym[r]);
                u64::from_le_bytes(b)
            };
            let (st_name, value, size) = if wide {
                (le(0..4), le(8..16), le(16..24))
            } else {
                (le(0..4), le(4..8), le(8..12))
            };
            let name = self.space.read_cstring(
                add(strtab, st_name, "module strtab")?,
                limits::KERNEL_MAX_SYMBOL_NAME,
            )?;
            if keep(&name) {
                out.push(ModuleSymbol {
                    module: module.name.clone(),
                    name,
                    addr: value,
                    size,
                });
            }
        }
        Ok(out)
    }

    /// The symbols of every module for which `keep(name)` holds, each module read on its
    /// own: a module that cannot be read (or the module list breaking) is an error in the
    /// result and the others are still read. All modules together read at most
    /// [`vmark_proto::limits::KERNEL_MAX_MODULE_SYMBOLS_TOTAL`] symbols.
    pub fn all_module_symbols(
        &self,
        keep: &dyn Fn(&str) -> bool,
    ) -> Result<HelperRegistry, KernelError> {
        let walk = self.walk_modules()?;
        let mut out = HelperRegistry::default();
        let mut budget = limits::KERNEL_MAX_MODULE_SYMBOLS_TOTAL;
        for item in walk.items {
            match item {
                Ok(m) => match self.module_symbols_within(&m, keep, &mut budget) {
                    Ok(syms) => out.symbols.extend(syms),
                    Err(e) => out.errors.push((format!("module {}", escape(&m.name)), e)),
                },
                Err(e) => out
                    .errors
                    .push((format!("module at {:#x}", e.addr), e.error)),
            }
        }
        if let Some(e) = walk.end {
            out.errors.push(("module list".into(), e));
        }
        Ok(out)
    }

    /// Finds vmark's helper registry without xenstore: walks every module's kallsyms for
    /// the `__vmark_rec_*` mark records and the `__vmark_manifest` symbol, module by
    /// module (see [`Kernel::all_module_symbols`]).
    ///
    /// A kernel without data symbols (no `CONFIG_KALLSYMS_ALL`) keeps none of these in its
    /// modules' tables: there each module's memory is scanned for the records' and the
    /// manifest's magics instead, within vmark's budgets.
    pub fn helper_registry(&self) -> Result<HelperRegistry, KernelError> {
        let mut out = self.all_module_symbols(&|n: &str| {
            n.starts_with("__vmark_rec_") || n == "__vmark_manifest"
        })?;
        if self.has_data_symbols() {
            return Ok(out);
        }
        let named: HashSet<String> = out.symbols.iter().map(|s| s.module.clone()).collect();
        let mut budget = super::anchors::ModuleScanBudget::default();
        for m in self.walk_modules()?.items.into_iter().flatten() {
            if named.contains(&m.name) {
                continue;
            }
            match super::anchors::scan_module_marks(self, &m, &mut budget) {
                Ok(syms) => out.symbols.extend(syms),
                Err(e) => out.errors.push((format!("module {}", escape(&m.name)), e)),
            }
        }
        Ok(out)
    }

    /// [`Kernel::helper_registry`]'s symbols; fails on the first module that cannot be
    /// read.
    pub fn find_helper_registry(&self) -> Result<Vec<ModuleSymbol>, KernelError> {
        let r = self.helper_registry()?;
        match r.errors.into_iter().next() {
            Some((item, e)) => Err(KernelError::Item {
                item,
                source: Box::new(e),
            }),
            None => Ok(r.symbols),
        }
    }
}

/// The value of `SYMBOL(name)=HEX` in VMCOREINFO text.
fn vmcoreinfo_symbol(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let v = l
            .strip_prefix("SYMBOL(")?
            .strip_prefix(name)?
            .strip_prefix(")=")?;
        u64::from_str_radix(v.trim(), 16).ok()
    })
}

/// Hint addresses tried at most (distinct vCPU roots and paging modes): a dump may record
/// any number of vCPUs.
const VMCOREINFO_MAX_HINTS: usize = 8;

/// The page-table roots a CR3 value may name in `mode`. A PAE CR3 is 32-byte aligned (Linux
/// allocates processes' directories from a slab of 32-byte objects), the others a page;
/// under PTI a CR3 may be a user page table, the kernel's being the page below (an 8 KiB
/// pair).
pub(crate) fn cr3_roots(cr3: u64, mode: PagingMode) -> Vec<u64> {
    let pair = cr3 & !0x1fff;
    let mut roots = match mode {
        PagingMode::Pae => vec![cr3 & 0xffff_ffe0, pair & 0xffff_ffff],
        PagingMode::Legacy32 => vec![cr3 & 0xffff_f000, pair & 0xffff_ffff],
        PagingMode::Long4 | PagingMode::Long5 => vec![cr3 & !0xfff, pair],
    };
    roots.dedup();
    roots
}

/// The kernel's own top page directory: `init_top_pgt` (x86-64; `init_level4_pgt` before
/// Linux 4.13) or `swapper_pg_dir` (32-bit), when `symbols` list one.
pub(crate) fn page_directory_symbol(symbols: &SymbolTable) -> Option<u64> {
    ["init_top_pgt", "init_level4_pgt", "swapper_pg_dir"]
        .into_iter()
        .find_map(|name| symbols.lookup(name))
}

/// Where the kernel's page directory at virtual `pgd` is, as `root` translates it (a
/// physical address; for a live Xen PV guest, whose "physical" space is machine memory, a
/// machine address), if it maps `banner` where `root` does and onto a banner. A vCPU's CR3
/// is most often some process's page table, freed and reused when the process exits; the
/// kernel's lives as long as the kernel.
pub(crate) fn kernel_page_directory(
    translator: &Translator,
    root: u64,
    pgd: u64,
    banner: u64,
) -> Option<u64> {
    // A Xen PV source with its own P2M walks to pseudo-physical addresses, which are not
    // roots; the live one (machine memory as its physical space) walks to machine ones.
    if translator.memory().frame_kind() == FrameKind::XenPv {
        return None;
    }
    let pgd = translator.translate_uncached(root, pgd).ok()?.paddr;
    // The kernel's directory is a page of its own (a PAE one too).
    if pgd & 0xfff != 0 {
        return None;
    }
    let there = translator.translate_uncached(root, banner).ok()?.paddr;
    let at = translator.translate_uncached(pgd, banner).ok()?.paddr;
    let mut text = [0u8; 14];
    translator.memory().read(at, &mut text).ok()?;
    (at == there && &text == b"Linux version ").then_some(pgd)
}

/// The kallsyms tables at VMCOREINFO's `kallsyms_token_table` (Linux 6.0+ lists it),
/// translated through the recorded vCPUs' page tables; None when there is no such hint or
/// it leads nowhere consistent. At most [`VMCOREINFO_MAX_HINTS`] distinct physical
/// addresses are tried, on one read budget: a wrong hint costs a bounded amount before
/// the scan it was meant to save.
fn kallsyms_from_vmcoreinfo(mem: &Arc<dyn PhysicalMemory>) -> Option<Kallsyms> {
    let text = mem.vmcoreinfo()?;
    let va = vmcoreinfo_symbol(&text, "kallsyms_token_table")?;
    let mut roots: Vec<(PagingMode, u64)> = Vec::new();
    for v in mem.vcpus().iter().filter(|v| v.cr3 != 0) {
        let first = PagingMode::from_registers(v.cr4, v.efer, true);
        for mode in [first, PagingMode::Long4, PagingMode::Long5, PagingMode::Pae] {
            if !roots.contains(&(mode, v.cr3)) {
                roots.push((mode, v.cr3));
            }
        }
        if roots.len() >= 4 * VMCOREINFO_MAX_HINTS {
            break;
        }
    }
    let mut tried: Vec<u64> = Vec::new();
    let mut read_budget = limits::KALLSYMS_MAX_READ_BYTES;
    for (mode, cr3) in roots {
        let translator = Translator::uncached(mem.clone(), mode);
        let Ok(t) = translator.translate_uncached(cr3, va) else {
            continue;
        };
        if tried.contains(&t.paddr) {
            continue;
        }
        if tried.len() >= VMCOREINFO_MAX_HINTS {
            break;
        }
        tried.push(t.paddr);
        if let Ok(ks) = kallsyms::find_at(mem.as_ref(), t.paddr, &mut read_budget) {
            return Some(ks);
        }
    }
    None
}

/// How much of the kernel half the page-table root maps: present entries of the table
/// that covers it (PAE: the page directory behind the fourth PDPT entry; 32-bit: the
/// directory's entries from 3 GiB; 4/5-level: the upper half of the top table).
fn kernel_half_entries(mem: &dyn PhysicalMemory, root: u64, mode: PagingMode) -> u32 {
    let count = |table: u64, from: usize, entries: usize, width: usize| -> u32 {
        let mut buf = vec![0u8; entries * width];
        if mem.read(table + (from * width) as u64, &mut buf).is_err() {
            return 0;
        }
        buf.chunks_exact(width).filter(|e| e[0] & 1 == 1).count() as u32
    };
    match mode {
        PagingMode::Pae => {
            let mut pdpte = [0u8; 8];
            if mem.read(root + 24, &mut pdpte).is_err() || pdpte[0] & 1 == 0 {
                return 0;
            }
            let pd = u64::from_le_bytes(pdpte) & 0x000f_ffff_ffff_f000;
            count(pd, 0, 512, 8)
        }
        PagingMode::Legacy32 => count(root, 768, 256, 4),
        PagingMode::Long4 | PagingMode::Long5 => count(root, 256, 256, 8),
    }
}

/// Offsets of a module's core area in `struct module`.
struct ModuleArea {
    /// Offsets of each memory region's base (`core_layout.base`, or every `mem[i].base`).
    bases: Vec<u64>,
    /// Offsets of the size fields summed into the module's size, one per region.
    sizes: Vec<u64>,
    size_width: usize,
}

/// Offsets in `task_struct` (and `mm_struct.pgd`) from BTF.
struct TaskOffsets {
    tasks: u64,
    pid: u64,
    tgid: u64,
    comm: u64,
    mm: u64,
    parent: u64,
    pgd: u64,
}

#[cfg(test)]
mod vmcoreinfo_tests {
    use super::vmcoreinfo_symbol;

    #[test]
    fn vmcoreinfo_symbols_are_read_by_exact_name() {
        let text = "OSRELEASE=6.1.0\nSYMBOL(kallsyms_token_table_x)=1\n\
                    SYMBOL(kallsyms_token_table)=ffffffffbd32ddd8\nSYMBOL(bad)=zz\n";
        assert_eq!(
            vmcoreinfo_symbol(text, "kallsyms_token_table"),
            Some(0xffff_ffff_bd32_ddd8)
        );
        assert_eq!(vmcoreinfo_symbol(text, "bad"), None);
        assert_eq!(vmcoreinfo_symbol(text, "OSRELEASE"), None);
    }
}

#[cfg(test)]
mod cr3_tests {
    use super::cr3_roots;
    use crate::introspect::paging::PagingMode;

    #[test]
    fn a_cr3_names_its_mode_s_roots() {
        // A PAE process directory from the 32-byte slab keeps its offset in the page.
        assert_eq!(
            cr3_roots(0x1234_5a60, PagingMode::Pae),
            [0x1234_5a60, 0x1234_4000]
        );
        assert_eq!(
            cr3_roots(0x1234_5a78, PagingMode::Legacy32),
            [0x1234_5000, 0x1234_4000]
        );
        // Long mode: PCID bits dropped; a PTI user table's kernel twin is the page below.
        assert_eq!(
            cr3_roots(0x4862_1801, PagingMode::Long4),
            [0x4862_1000, 0x4862_0000]
        );
        assert_eq!(cr3_roots(0x4862_0000, PagingMode::Long5), [0x4862_0000]);
    }
}
