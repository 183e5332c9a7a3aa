//! Kernel objects the kernel's symbols do not name, found by their structure.
//!
//! A kernel built without `CONFIG_KALLSYMS_ALL` (Debian's i386 kernels) keeps only text
//! symbols in kallsyms: no `init_task`, no `modules` list head, and its modules' tables
//! name none of vmark's records. With the kernel's struct layouts (BTF, or DWARF from a
//! file) each of these is recognisable by properties that need no offset written by hand,
//! only the layouts:
//! - `init_task` is the task named `swapper` (`swapper/0` once SMP boots) with pid 0 on a
//!   consistent `tasks` list, in the kernel's data after its text;
//! - the `modules` head is a list node in that data whose `next` is the `list` of a
//!   `struct module` that points to itself (`mkobj.mod`), and whose neighbours point back;
//! - a module's vmark records and manifest carry magics and are checked as published ones
//!   are; they lie in the module's own memory (`struct module`'s core area, or on 6.4+ its
//!   `mem[]` regions).
//!
//! Every scan is bounded by vmark's budgets ([`vmark_proto::limits`]), not by the guest.

use super::kernel::{Kernel, KernelError, Module, ModuleSymbol};
use memchr::memmem;
use vmark_proto::abi;
use vmark_proto::limits;
use vmark_proto::text::escape;

const PAGE: u64 = 4096;

/// Where the kernel's data starts: the end of its text (`_etext`, else the highest text
/// symbol below the init text, which the linker puts after the data), page-aligned.
fn data_start(kernel: &Kernel) -> Result<u64, KernelError> {
    let syms = kernel.symbols();
    let init = syms.lookup("_sinittext").unwrap_or(u64::MAX);
    let end = syms.lookup("_etext").or_else(|| {
        syms.iter()
            .filter(|s| matches!(s.kind, 'T' | 't') && s.addr < init)
            .map(|s| s.addr)
            .max()
    });
    end.map(|e| e & !(PAGE - 1))
        .ok_or_else(|| KernelError::MissingSymbol("_etext (or any text symbol)".into()))
}

/// Visits the kernel's data page by page (pages that do not translate are skipped), from
/// [`data_start`] for [`limits::KERNEL_MAX_DATA_SCAN_BYTES`], with the previous page's last
/// `overlap` bytes before each page so a match may straddle two pages. `visit(va, bytes)`
/// gets the address of `bytes[0]`; it returns `Some` to stop.
fn scan_data<T>(
    kernel: &Kernel,
    overlap: usize,
    visit: &mut dyn FnMut(u64, &[u8]) -> Option<T>,
) -> Result<Option<T>, KernelError> {
    let start = data_start(kernel)?;
    let mut buf = vec![0u8; overlap + PAGE as usize];
    let mut have_prev = false;
    for i in 0..limits::KERNEL_MAX_DATA_SCAN_BYTES / PAGE {
        let Some(va) = start.checked_add(i * PAGE) else {
            break;
        };
        if kernel.read(va, &mut buf[overlap..]).is_err() {
            have_prev = false;
            continue;
        }
        let found = if have_prev {
            visit(va - overlap as u64, &buf)
        } else {
            visit(va, &buf[overlap..])
        };
        if found.is_some() {
            return Ok(found);
        }
        buf.copy_within(PAGE as usize.., 0);
        have_prev = true;
    }
    Ok(None)
}

/// Offsets of `task_struct` fields that identify the idle task.
pub(crate) struct IdleTaskLayout {
    pub comm: u64,
    pub pid: u64,
    pub tasks: u64,
}

impl IdleTaskLayout {
    /// From the kernel's loaded types.
    pub(crate) fn of(kernel: &Kernel) -> Result<Self, KernelError> {
        let task = kernel.type_id("task_struct")?;
        let off = |m: &str| kernel.offset(task, "task_struct", m);
        Ok(IdleTaskLayout {
            comm: off("comm")?,
            pid: off("pid")?,
            tasks: off("tasks")?,
        })
    }
}

/// Whether `task` reads, with `layout`, as the idle task `init_task`: `comm` `swapper…`,
/// `pid` 0, and `tasks` a node whose `next` points back to it. Says why not.
pub(crate) fn check_idle_task(
    kernel: &Kernel,
    task: u64,
    layout: &IdleTaskLayout,
) -> Result<(), String> {
    let at = |off: u64| {
        task.checked_add(off)
            .ok_or_else(|| format!("{task:#x} + {off:#x} overflows"))
    };
    let mut comm = [0u8; 16];
    kernel
        .read(at(layout.comm)?, &mut comm)
        .map_err(|e| format!("comm does not read: {e}"))?;
    let name = &comm[..comm.iter().position(|&b| b == 0).unwrap_or(16)];
    let mut pid = [0u8; 4];
    kernel
        .read(at(layout.pid)?, &mut pid)
        .map_err(|e| format!("pid does not read: {e}"))?;
    if !name.starts_with(b"swapper") || pid != [0; 4] {
        return Err(format!(
            "it reads as comm \"{}\" pid {} (comm at {:#x}), not the idle task swapper with \
             pid 0",
            escape(&String::from_utf8_lossy(name)),
            i32::from_le_bytes(pid),
            layout.comm
        ));
    }
    let head = at(layout.tasks)?;
    let word = kernel.pointer_size() as u64;
    let next = kernel.read_ptr(head).map_err(|e| e.to_string())?;
    let back = next.checked_add(word).and_then(|a| kernel.read_ptr(a).ok());
    if next == head || back != Some(head) {
        return Err(format!(
            "its tasks (at {:#x}) is not a node of a list of tasks: next {next:#x} points \
             back to {back:x?}, not {head:#x}",
            layout.tasks
        ));
    }
    Ok(())
}

/// `init_task`, found in the kernel's data as the idle task ([`check_idle_task`]).
pub(crate) fn find_init_task(kernel: &Kernel) -> Result<u64, KernelError> {
    let layout = IdleTaskLayout::of(kernel)?;
    let finder = memmem::Finder::new(b"swapper");
    let mut checked = 0u64;
    let mut over = false;
    let found = scan_data(kernel, b"swapper".len() - 1, &mut |va, bytes| {
        for hit in finder.find_iter(bytes) {
            checked += 1;
            if checked > limits::KERNEL_MAX_DATA_SCAN_CANDIDATES {
                over = true;
                return Some(None);
            }
            let Some(task) = (va + hit as u64).checked_sub(layout.comm) else {
                continue;
            };
            if check_idle_task(kernel, task, &layout).is_ok() {
                return Some(Some(task));
            }
        }
        None
    })?;
    match found.flatten() {
        Some(t) => Ok(t),
        None => Err(not_found(
            "init_task",
            "task named swapper with pid 0 on a consistent tasks list",
            over,
            checked,
        )),
    }
}

fn not_found(what: &str, looked_for: &str, over: bool, checked: u64) -> KernelError {
    KernelError::MissingSymbol(format!(
        "{what} (the kernel's symbols do not name it: no CONFIG_KALLSYMS_ALL; no {looked_for} \
         in the {} MiB of kernel data after its text, {checked} candidates checked{}: the \
         types may be of another kernel, or a System.map gives the symbol)",
        limits::KERNEL_MAX_DATA_SCAN_BYTES >> 20,
        if over { ", then over the budget" } else { "" }
    ))
}

/// The `modules` list head, found in the kernel's data: a node whose `next` is the `list`
/// of a self-referencing `struct module` (`mkobj.mod`) that points back to it, and whose
/// `prev` points back too. An empty module list cannot be told from any other empty list:
/// it is not found.
pub(crate) fn find_module_list(kernel: &Kernel) -> Result<u64, KernelError> {
    let module_t = kernel.type_id("module")?;
    let o_list = kernel.offset(module_t, "module", "list")?;
    let o_self = kernel.offset(module_t, "module", "mkobj.mod")?;
    let word = kernel.pointer_size();
    // Where a struct module can be: x86-64 puts modules (and the image) in the top 2 GiB;
    // i386 puts them above PAGE_OFFSET (3, 2 or 1 GiB: the data's own top bits say which).
    let lowest: u64 = if word == 8 {
        0xffff_ffff_8000_0000
    } else {
        data_start(kernel)? & 0xc000_0000
    };
    let mut checked = 0u64;
    let mut over = false;
    let is_module = |node: u64| -> bool {
        let Some(m) = node.checked_sub(o_list) else {
            return false;
        };
        m.checked_add(o_self)
            .and_then(|a| kernel.read_ptr(a).ok())
            .is_some_and(|p| p == m)
    };
    let found = scan_data(kernel, 0, &mut |va, bytes| {
        for (i, w) in bytes.chunks_exact(word).enumerate() {
            let head = va + (i * word) as u64;
            let mut next = [0u8; 8];
            next[..word].copy_from_slice(w);
            let next = u64::from_le_bytes(next);
            if next == head || next % word as u64 != 0 || next < lowest {
                continue;
            }
            // Every word that could point into the kernel costs a read: counted.
            checked += 1;
            if checked > limits::KERNEL_MAX_DATA_SCAN_CANDIDATES {
                over = true;
                return Some(None);
            }
            // next->prev must be this node: one read rejects nearly every other word.
            let back = next
                .checked_add(word as u64)
                .and_then(|a| kernel.read_ptr(a).ok());
            if back != Some(head) {
                continue;
            }
            if !is_module(next) {
                continue;
            }
            let prev = head
                .checked_add(word as u64)
                .and_then(|a| kernel.read_ptr(a).ok());
            let prev_ok = prev.is_some_and(|p| {
                p == next || (is_module(p) && kernel.read_ptr(p).ok() == Some(head))
            });
            if prev_ok {
                return Some(Some(head));
            }
        }
        None
    })?;
    match found.flatten() {
        Some(h) => Ok(h),
        None => Err(not_found(
            "modules",
            "list head whose neighbours are self-referencing struct modules (an empty module \
             list cannot be found)",
            over,
            checked,
        )),
    }
}

/// What one search for vmark's records may still scan ([`scan_module_marks`]): bytes of
/// module memory, and magic hits examined (each costs a read or two).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ModuleScanBudget {
    /// Bytes of module memory.
    pub bytes: u64,
    /// Words with a record's or the manifest's magic.
    pub hits: u64,
}

impl Default for ModuleScanBudget {
    fn default() -> Self {
        ModuleScanBudget {
            bytes: limits::KERNEL_MAX_MODULE_SCAN_TOTAL,
            hits: limits::KERNEL_MAX_MODULE_SCAN_HITS,
        }
    }
}

/// vmark's records (`__vmark_rec_<name>`, their name read through the record) and manifest
/// (`__vmark_manifest`) in `module`'s own memory (each of its regions), found by their
/// magics: for modules whose kallsyms does not name them. A record is reported only with
/// its ABI version and flags valid; everything else is checked when it is opened, as for
/// published records. `budget` counts across modules.
pub(crate) fn scan_module_marks(
    kernel: &Kernel,
    module: &Module,
    budget: &mut ModuleScanBudget,
) -> Result<Vec<ModuleSymbol>, KernelError> {
    let over = |limit: u64, unit: &'static str| KernelError::OverBudget {
        what: format!(
            "memory of modules scanned for vmark records, at module {}",
            escape(&module.name)
        ),
        limit,
        unit,
    };
    let manifest_magic = abi::VMARK_MANIFEST_MAGIC.to_le_bytes();
    let record_magic = abi::VMARK_RECORD_MAGIC.to_le_bytes();
    let mut out = Vec::new();
    let mut page = vec![0u8; PAGE as usize];
    let mut left_in_module = limits::KERNEL_MAX_MODULE_SCAN_BYTES;
    for &(base, size) in &module.regions {
        let size = size.min(left_in_module);
        left_in_module -= size;
        budget.bytes = budget
            .bytes
            .checked_sub(size)
            .ok_or_else(|| over(limits::KERNEL_MAX_MODULE_SCAN_TOTAL, "bytes"))?;
        let end = base.saturating_add(size);
        let mut va = base & !(PAGE - 1);
        while va < end {
            if kernel.read(va, &mut page).is_ok() {
                for off in (0..PAGE as usize).step_by(8) {
                    let at = va + off as u64;
                    if at < base || at >= end {
                        continue;
                    }
                    let w = &page[off..off + 8];
                    let is_manifest = w == manifest_magic;
                    if !is_manifest && w[..4] != record_magic {
                        continue;
                    }
                    budget.hits = budget
                        .hits
                        .checked_sub(1)
                        .ok_or_else(|| over(limits::KERNEL_MAX_MODULE_SCAN_HITS, "magic hits"))?;
                    let found = if is_manifest {
                        manifest_at(kernel, module, at)
                    } else {
                        record_at(kernel, module, at)
                    };
                    out.extend(found);
                }
            }
            va = match va.checked_add(PAGE) {
                Some(v) => v,
                None => break,
            };
        }
    }
    Ok(out)
}

fn manifest_at(kernel: &Kernel, module: &Module, at: u64) -> Option<ModuleSymbol> {
    let mut hdr = [0u8; abi::MANIFEST_HEADER_SIZE];
    kernel.read(at, &mut hdr).ok()?;
    let header_size = u16::from_le_bytes([hdr[10], hdr[11]]);
    let payload = u32::from_le_bytes([hdr[12], hdr[13], hdr[14], hdr[15]]);
    if usize::from(header_size) != abi::MANIFEST_HEADER_SIZE
        || payload > abi::VMARK_MANIFEST_MAX_PAYLOAD
    {
        return None;
    }
    Some(ModuleSymbol {
        module: module.name.clone(),
        name: manifest_symbol().to_string(),
        addr: at,
        size: abi::MANIFEST_HEADER_SIZE as u64 + u64::from(payload),
    })
}

fn record_at(kernel: &Kernel, module: &Module, at: u64) -> Option<ModuleSymbol> {
    let mut rec = [0u8; abi::RECORD_SIZE];
    kernel.read(at, &mut rec).ok()?;
    let version = u16::from_le_bytes([rec[4], rec[5]]);
    let flags = u16::from_le_bytes([rec[6], rec[7]]);
    if u32::from(version) != abi::VMARK_ABI_VERSION || u32::from(flags) & !abi::VMARK_F_ALL != 0 {
        return None;
    }
    let name_va = u64::from_le_bytes(rec[24..32].try_into().ok()?);
    let name = kernel
        .space()
        .read_cstring(name_va, crate::publish::MAX_NAME_LEN + 1)
        .ok()?;
    if name.is_empty() || name.len() > crate::publish::MAX_NAME_LEN {
        return None;
    }
    let prefix = record_prefix();
    Some(ModuleSymbol {
        module: module.name.clone(),
        name: format!("{prefix}{name}"),
        addr: at,
        size: abi::RECORD_SIZE as u64,
    })
}

fn c_str(s: &'static [u8]) -> &'static str {
    std::str::from_utf8(s.strip_suffix(b"\0").unwrap_or(s)).unwrap_or("")
}

fn manifest_symbol() -> &'static str {
    c_str(abi::VMARK_MANIFEST_SYMBOL)
}

fn record_prefix() -> &'static str {
    c_str(abi::VMARK_RECORD_PREFIX)
}

#[cfg(test)]
mod tests {
    //! A synthetic kernel without data symbols: `init_task`, the module list and a
    //! module's records must be found by structure, decoys rejected.
    use super::*;
    use crate::introspect::btf::Btf;
    use crate::introspect::paging::PagingMode;
    use crate::introspect::phys::VecMemory;
    use crate::introspect::symbols::{Symbol, SymbolTable};
    use crate::introspect::vmem::Translator;
    use std::sync::Arc;
    use vmark_proto::{AggregateKind, ArrayBound, BaseEncoding, Member, Type, TypeId, TypeTable};

    const KBASE: u64 = 0xffff_8880_0000_0000;
    const ETEXT: u64 = 0x10000;
    const INIT: u64 = 0x20000;
    const TASK1: u64 = 0x21000;
    const HEAD: u64 = 0x30000;
    const MODULE: u64 = 0x80000;
    const MOD_BASE: u64 = 0x90000;

    fn va(pa: u64) -> u64 {
        KBASE + pa
    }

    /// The same physical memory in the top 2 GiB, where x86-64 puts modules.
    fn top(pa: u64) -> u64 {
        0xffff_ffff_8000_0000 + pa
    }

    /// `task_struct { i32 pid @0; list_head tasks @8; char comm[16] @24 }`,
    /// `module { list_head list @0; module_kobject mkobj @16 { module *mod @8 } }`.
    fn types() -> Btf {
        types_with_comm_at(24)
    }

    fn types_with_comm_at(comm_at: u64) -> Btf {
        let mut t = TypeTable::new();
        t.push(Type::Void);
        let int = t.push(Type::Base {
            name: "int".into(),
            size: 4,
            encoding: BaseEncoding::Signed,
        });
        let chr = t.push(Type::Base {
            name: "char".into(),
            size: 1,
            encoding: BaseEncoding::SignedChar,
        });
        let ptr = t.push(Type::Pointer {
            target: TypeId(0),
            size: 8,
        });
        let comm = t.push(Type::Array {
            element: chr,
            dims: vec![ArrayBound::Count(16)],
        });
        let m = |name: &str, ty, offset| Member {
            name: Some(name.into()),
            ty,
            offset,
            bitfield: None,
        };
        let mut agg = |name: &str, size, members| {
            t.push(Type::Aggregate {
                kind: AggregateKind::Struct,
                name: Some(name.into()),
                size,
                members,
            })
        };
        let list = agg("list_head", 16, vec![m("next", ptr, 0), m("prev", ptr, 8)]);
        agg(
            "task_struct",
            40,
            vec![
                m("pid", int, 0),
                m("tasks", list, 8),
                m("comm", comm, comm_at),
            ],
        );
        let kobj = agg("module_kobject", 16, vec![m("mod", ptr, 8)]);
        agg("module", 32, vec![m("list", list, 0), m("mkobj", kobj, 16)]);
        Btf::from_types(t).unwrap()
    }

    fn memory() -> VecMemory {
        let mut mem = VecMemory::new(vec![0; 0x10_0000]);
        // 4-level tables at 0x1000/0x2000: KBASE onto physical 0 with a 1 GiB page.
        mem.put_u64(0x1000 + ((KBASE >> 39) & 0x1ff) * 8, 0x2000 | 3);
        mem.put_u64(0x2000 + ((KBASE >> 30) & 0x1ff) * 8, 0x83);
        // And the top 2 GiB onto physical 0 too (PML4 511, PDPT 510).
        mem.put_u64(0x1000 + 511 * 8, 0x3000 | 3);
        mem.put_u64(0x3000 + 510 * 8, 0x83);
        // A decoy: "swapper" in the data with a nonzero pid before it.
        mem.put(0x10100, b"swapper\0");
        mem.put(0x10100 - 24, &7u32.to_le_bytes());
        // init_task and one task on its list.
        for (task, next) in [(INIT, TASK1), (TASK1, INIT)] {
            mem.put_u64(task + 8, va(next + 8));
            mem.put_u64(task + 16, va(next + 8));
        }
        mem.put(INIT + 24, b"swapper/0\0");
        mem.put(TASK1, &1u32.to_le_bytes());
        mem.put(TASK1 + 24, b"init\0");
        // A decoy list head whose neighbour (in module space) points back but is no module.
        mem.put_u64(HEAD - 0x100, top(0x40000));
        mem.put_u64(0x40000 + 8, va(HEAD - 0x100));
        // The module list: the head and one module (in module space) that points to itself.
        mem.put_u64(HEAD, top(MODULE));
        mem.put_u64(HEAD + 8, top(MODULE));
        mem.put_u64(MODULE, va(HEAD));
        mem.put_u64(MODULE + 8, va(HEAD));
        mem.put_u64(MODULE + 16 + 8, top(MODULE));
        // The module's memory: a manifest header, a record, a record of another ABI.
        let mut hdr = abi::VMARK_MANIFEST_MAGIC.to_le_bytes().to_vec();
        hdr.extend(1u16.to_le_bytes()); // format version
        hdr.extend((abi::MANIFEST_HEADER_SIZE as u16).to_le_bytes());
        hdr.extend(10u32.to_le_bytes()); // payload bytes
        mem.put(MOD_BASE + 0x100, &hdr);
        let record = |version: u16| {
            let mut r = vec![0u8; abi::RECORD_SIZE];
            r[..4].copy_from_slice(&abi::VMARK_RECORD_MAGIC.to_le_bytes());
            r[4..6].copy_from_slice(&version.to_le_bytes());
            r[6..8].copy_from_slice(&1u16.to_le_bytes());
            r[24..32].copy_from_slice(&va(MOD_BASE + 0x1800).to_le_bytes());
            r
        };
        mem.put(MOD_BASE + 0x1000, &record(abi::VMARK_ABI_VERSION as u16));
        mem.put(MOD_BASE + 0x1040, &record(99));
        mem.put(MOD_BASE + 0x1800, b"counter\0");
        mem
    }

    fn kernel(symbols: &[(&str, u64, char)]) -> Kernel {
        let symbols = symbols
            .iter()
            .map(|&(name, addr, kind)| Symbol {
                name: name.into(),
                addr,
                kind,
            })
            .collect();
        let t = Arc::new(Translator::new(Arc::new(memory()), PagingMode::Long4));
        let mut k = Kernel::from_parts(t.space(0x1000), SymbolTable::new(symbols).unwrap());
        k.set_btf(Arc::new(types()));
        k
    }

    #[test]
    fn init_task_and_the_module_list_are_found_by_structure() {
        let k = kernel(&[("_etext", va(ETEXT), 'T')]);
        assert!(!k.has_data_symbols());
        assert_eq!(k.data_symbol("init_task").unwrap(), va(INIT));
        assert_eq!(k.data_symbol("modules").unwrap(), va(HEAD));
        assert!(k.data_symbol("jiffies").is_err());
    }

    #[test]
    fn a_kernel_with_data_symbols_is_not_scanned() {
        let k = kernel(&[("_etext", va(ETEXT), 'T'), ("jiffies", va(0x50000), 'D')]);
        assert!(matches!(
            k.data_symbol("init_task"),
            Err(KernelError::MissingSymbol(n)) if n == "init_task"
        ));
    }

    #[test]
    fn without_an_idle_task_the_error_says_what_was_looked_for() {
        let mut k = kernel(&[("_etext", va(ETEXT), 'T')]);
        // Types whose comm is elsewhere: nothing passes as the idle task.
        k.set_btf(Arc::new(types_with_comm_at(28)));
        let e = k.data_symbol("init_task").unwrap_err().to_string();
        assert!(e.contains("swapper") && e.contains("candidates"), "{e}");
    }

    #[test]
    fn records_and_manifest_are_found_in_the_module_memory() {
        let k = kernel(&[("_etext", va(ETEXT), 'T')]);
        let module = Module {
            addr: va(MODULE),
            name: "demo".into(),
            base: va(MOD_BASE),
            size: 0x2000,
            // Two regions, as 6.4+ modules have (text, then data elsewhere).
            regions: vec![(va(MOD_BASE), 0x1000), (va(MOD_BASE + 0x1000), 0x1000)],
        };
        let mut budget = ModuleScanBudget::default();
        let syms = scan_module_marks(&k, &module, &mut budget).unwrap();
        let names: Vec<(&str, u64)> = syms.iter().map(|s| (s.name.as_str(), s.addr)).collect();
        assert_eq!(
            names,
            [
                ("__vmark_manifest", va(MOD_BASE + 0x100)),
                ("__vmark_rec_counter", va(MOD_BASE + 0x1000)),
            ]
        );
        assert_eq!(syms[0].size, abi::MANIFEST_HEADER_SIZE as u64 + 10);
        assert_eq!(budget.bytes, limits::KERNEL_MAX_MODULE_SCAN_TOTAL - 0x2000);
        // Three magic hits: the manifest, the record, the record of another ABI.
        assert_eq!(budget.hits, limits::KERNEL_MAX_MODULE_SCAN_HITS - 3);
        // The budgets are vmark's: a module beyond what is left is an error for it.
        let mut little = ModuleScanBudget {
            bytes: 0x1000,
            hits: 100,
        };
        assert!(matches!(
            scan_module_marks(&k, &module, &mut little),
            Err(KernelError::OverBudget { unit: "bytes", .. })
        ));
        let mut few = ModuleScanBudget {
            bytes: 1 << 20,
            hits: 2,
        };
        assert!(matches!(
            scan_module_marks(&k, &module, &mut few),
            Err(KernelError::OverBudget {
                unit: "magic hits",
                ..
            })
        ));
    }
}
