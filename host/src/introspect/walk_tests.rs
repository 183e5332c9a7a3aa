//! Task, module and module-symbol walks over synthetic guest memory built to break them:
//! cycles, lists of ten million entries, corrupt items, absurd counts, addresses that
//! would wrap.

use super::btf::Btf;
use super::kernel::{Kernel, KernelError, MAX_MODULES};
use super::paging::{PagingMode, TranslateError};
use super::phys::{MemError, PhysicalMemory, VecMemory};
use super::symbols::{Symbol, SymbolTable};
use super::vmem::Translator;
use std::sync::Arc;
use vmark_proto::{AggregateKind, ArrayBound, BaseEncoding, Member, Type, TypeId, TypeTable};

/// Kernel virtual address of physical address 0 (the direct map).
const KBASE: u64 = 0xffff_8880_0000_0000;
/// Size of the byte-backed part of memory.
const MEM: u64 = 1 << 20;
/// Where the endless list starts (physical), and its node stride.
const ENDLESS: u64 = 1 << 24;
const STRIDE: u64 = 0x40;
/// Nodes the endless list claims to have.
const CLAIMED: u64 = 10_000_000;

fn va(pa: u64) -> u64 {
    KBASE + pa
}

/// Memory: bytes for the first MiB (page tables at 0x1000/0x2000 mapping both VA 0 and
/// `KBASE` onto physical 0..4 GiB with 1 GiB pages), and optionally a procedural list of
/// [`CLAIMED`] nodes from [`ENDLESS`]: node `i`'s first 8 bytes point at node `i + 1`
/// (the last back at `head`), every other byte is zero.
struct Synth {
    bytes: VecMemory,
    endless_head: Option<u64>,
}

impl Synth {
    fn new() -> Self {
        let mut bytes = VecMemory::new(vec![0; MEM as usize]);
        let (pml4, pdpt) = (0x1000u64, 0x2000u64);
        bytes.put_u64(pml4, pdpt | 3);
        bytes.put_u64(pml4 + ((KBASE >> 39) & 0x1ff) * 8, pdpt | 3);
        for g in 0..4u64 {
            bytes.put_u64(pdpt + g * 8, (g << 30) | 0x83); // present, writable, 1 GiB
        }
        Synth {
            bytes,
            endless_head: None,
        }
    }

    fn kernel(self, symbols: &[(&str, u64)]) -> Kernel {
        let symbols = symbols
            .iter()
            .map(|&(name, addr)| Symbol {
                name: name.into(),
                addr,
                kind: 'D',
            })
            .collect();
        let t = Arc::new(Translator::new(Arc::new(self), PagingMode::Long4));
        let mut k = Kernel::from_parts(t.space(0x1000), SymbolTable::new(symbols).unwrap());
        k.set_btf(Arc::new(btf()));
        k
    }
}

impl PhysicalMemory for Synth {
    fn read(&self, paddr: u64, buf: &mut [u8]) -> Result<(), MemError> {
        let Some(head) = self.endless_head.filter(|_| paddr >= ENDLESS) else {
            return self.bytes.read(paddr, buf);
        };
        let end = ENDLESS + CLAIMED * STRIDE;
        if paddr.saturating_add(buf.len() as u64) > end {
            return Err(MemError::NotPresent(paddr));
        }
        for (i, b) in buf.iter_mut().enumerate() {
            let a = paddr + i as u64;
            let (node, at) = ((a - ENDLESS) / STRIDE, (a - ENDLESS) % STRIDE);
            let next = if node + 1 == CLAIMED {
                head
            } else {
                va(ENDLESS + (node + 1) * STRIDE)
            };
            *b = if at < 8 {
                next.to_le_bytes()[at as usize]
            } else {
                0
            };
        }
        Ok(())
    }
    fn max_address(&self) -> u64 {
        4 << 30
    }
}

/// Layouts (offsets in bytes):
/// `task_struct { i32 pid @0; i32 tgid @4; list_head tasks @8; char comm[16] @24;
/// mm_struct *mm @40; task_struct *real_parent @48 }` (56 bytes),
/// `mm_struct { void *pgd @0 }`,
/// `module { list_head list @0; char name[56] @16; module_layout core_layout @72;
/// mod_kallsyms *kallsyms @88 }` (96), `module_layout { void *base @0; u32 size @8 }`,
/// `mod_kallsyms { void *symtab @0; u32 num_symtab @8; char *strtab @16 }`.
mod off {
    pub const PID: u64 = 0;
    pub const TGID: u64 = 4;
    pub const TASKS: u64 = 8;
    pub const COMM: u64 = 24;
    pub const MM: u64 = 40;
    pub const PARENT: u64 = 48;
    pub const TASK_SIZE: u64 = 56;
    pub const NAME: u64 = 16;
    pub const BASE: u64 = 72;
    pub const SIZE: u64 = 80;
    pub const KALLSYMS: u64 = 88;
}

fn btf() -> Btf {
    let mut t = TypeTable::new();
    t.push(Type::Void);
    let base = |t: &mut TypeTable, name: &str, size, encoding| {
        t.push(Type::Base {
            name: name.into(),
            size,
            encoding,
        })
    };
    let int = base(&mut t, "int", 4, BaseEncoding::Signed);
    let uint = base(&mut t, "unsigned int", 4, BaseEncoding::Unsigned);
    let chr = base(&mut t, "char", 1, BaseEncoding::SignedChar);
    let void_ptr = t.push(Type::Pointer {
        target: TypeId(0),
        size: 8,
    });
    let chars = |t: &mut TypeTable, n| {
        t.push(Type::Array {
            element: chr,
            dims: vec![ArrayBound::Count(n)],
        })
    };
    let comm = chars(&mut t, 16);
    let name = chars(&mut t, 56);
    let m = |name: &str, ty, offset| Member {
        name: Some(name.into()),
        ty,
        offset,
        bitfield: None,
    };
    let agg = |t: &mut TypeTable, name: &str, size, members| {
        t.push(Type::Aggregate {
            kind: AggregateKind::Struct,
            name: Some(name.into()),
            size,
            members,
        })
    };
    let list = agg(
        &mut t,
        "list_head",
        16,
        vec![m("next", void_ptr, 0), m("prev", void_ptr, 8)],
    );
    agg(&mut t, "mm_struct", 8, vec![m("pgd", void_ptr, 0)]);
    agg(
        &mut t,
        "task_struct",
        off::TASK_SIZE,
        vec![
            m("pid", int, off::PID),
            m("tgid", int, off::TGID),
            m("tasks", list, off::TASKS),
            m("comm", comm, off::COMM),
            m("mm", void_ptr, off::MM),
            m("real_parent", void_ptr, off::PARENT),
        ],
    );
    let layout = agg(
        &mut t,
        "module_layout",
        16,
        vec![m("base", void_ptr, 0), m("size", uint, 8)],
    );
    agg(
        &mut t,
        "mod_kallsyms",
        24,
        vec![
            m("symtab", void_ptr, 0),
            m("num_symtab", uint, 8),
            m("strtab", void_ptr, 16),
        ],
    );
    agg(
        &mut t,
        "module",
        96,
        vec![
            m("list", list, 0),
            m("name", name, off::NAME),
            m("core_layout", layout, off::BASE),
            m("kallsyms", void_ptr, off::KALLSYMS),
        ],
    );
    Btf::from_types(t).expect("valid synthetic BTF")
}

/// Writes a task at physical `pa` whose `tasks.next` is the list node at physical `next`.
fn task(mem: &mut VecMemory, pa: u64, pid: i32, comm: &[u8], next: u64) {
    mem.put_u32(pa + off::PID, pid as u32);
    mem.put_u32(pa + off::TGID, pid as u32);
    mem.put_u64(pa + off::TASKS, next);
    mem.put(pa + off::COMM, comm);
    mem.put_u64(pa + off::PARENT, va(0x10000));
}

const INIT: u64 = 0x10000;

#[test]
fn a_task_list_that_cycles_ends_with_an_error_and_keeps_the_tasks_before_it() {
    let mut s = Synth::new();
    let (a, b) = (0x10100, 0x10200);
    task(&mut s.bytes, INIT, 0, b"swapper/0", va(a + off::TASKS));
    task(&mut s.bytes, a, 1, b"init\x1b[2J", va(b + off::TASKS));
    task(&mut s.bytes, b, 2, b"kthreadd", va(a + off::TASKS)); // back to a: a cycle
    let k = s.kernel(&[("init_task", va(INIT))]);
    let walk = k.walk_processes().unwrap();
    let pids: Vec<i32> = walk.ok().map(|p| p.pid).collect();
    assert_eq!(pids, [0, 1, 2]);
    assert_eq!(walk.ok().nth(1).unwrap().name, "init\x1b[2J");
    assert_eq!(walk.ok().nth(2).unwrap().parent_pid, Some(0));
    match &walk.end {
        Some(KernelError::CorruptList { reason, .. }) => assert!(reason.contains("repeats")),
        other => panic!("{other:?}"),
    }
    assert!(k.processes().is_err(), "the strict form reports the cycle");
}

#[test]
fn one_unreadable_task_is_an_error_and_the_rest_still_read() {
    let mut s = Synth::new();
    // Task c's list node sits in the last bytes of memory: its comm lies beyond it.
    let c = MEM - off::TASKS - 8;
    let d = 0x10300;
    task(&mut s.bytes, INIT, 0, b"swapper/0", va(c + off::TASKS));
    s.bytes.put_u64(c + off::TASKS, va(d + off::TASKS));
    task(&mut s.bytes, d, 7, b"sh", va(INIT + off::TASKS));
    let k = s.kernel(&[("init_task", va(INIT))]);
    let walk = k.walk_processes().unwrap();
    assert!(walk.end.is_none());
    assert_eq!(walk.items.len(), 3);
    let bad = walk.items[1].as_ref().unwrap_err();
    assert_eq!(bad.addr, va(c));
    assert!(matches!(bad.error, KernelError::Translate(_)), "{bad}");
    assert_eq!(walk.items[2].as_ref().unwrap().pid, 7);
}

#[test]
fn a_module_list_claiming_ten_million_entries_stops_at_the_budget() {
    let mut s = Synth::new();
    let head = va(0x20000);
    s.bytes.put_u64(0x20000, va(ENDLESS));
    s.endless_head = Some(head);
    let k = s.kernel(&[("modules", head)]);
    let walk = k.walk_modules().unwrap();
    assert_eq!(walk.items.len(), MAX_MODULES);
    assert!(walk.items.iter().all(|m| m.is_ok()));
    match &walk.end {
        Some(KernelError::OverBudget { limit, unit, .. }) => {
            assert_eq!((*limit, *unit), (MAX_MODULES as u64, "entries"))
        }
        other => panic!("{other:?}"),
    }
    // The registry walk reports the list as an error and keeps what it read.
    let r = k.helper_registry().unwrap();
    assert!(r.errors.iter().any(|(item, _)| item == "module list"));
}

/// A module at physical `pa` named `name`, whose mod_kallsyms (at `pa + 0x100`) claims
/// `num` symbols of the table at `pa + 0x200` (strings at `pa + 0x400`).
fn module(mem: &mut VecMemory, pa: u64, name: &[u8], next: u64, num: u32, syms: &[&str]) {
    mem.put_u64(pa, next);
    mem.put(pa + off::NAME, name);
    mem.put_u64(pa + off::BASE, 0xffff_ffff_c000_0000);
    mem.put_u32(pa + off::SIZE, 0x1000);
    let (mk, symtab, strtab) = (pa + 0x100, pa + 0x200, pa + 0x400);
    mem.put_u64(pa + off::KALLSYMS, va(mk));
    mem.put_u64(mk, va(symtab));
    mem.put_u32(mk + 8, num);
    mem.put_u64(mk + 16, va(strtab));
    let mut at = 1u32;
    for (i, s) in syms.iter().enumerate() {
        let sym = symtab + 24 * i as u64;
        mem.put_u32(sym, at);
        mem.put_u64(sym + 8, 0xffff_ffff_c000_0000 + i as u64 * 8);
        mem.put(strtab + u64::from(at), s.as_bytes());
        at += s.len() as u32 + 1;
    }
}

#[test]
fn a_module_claiming_two_billion_symbols_is_an_error_for_that_module_only() {
    let mut s = Synth::new();
    let (head, m1, m2) = (0x30000u64, 0x31000u64, 0x32000u64);
    s.bytes.put_u64(head, va(m1));
    module(&mut s.bytes, m1, b"liar", va(m2), 1 << 31, &[]);
    let syms = ["__vmark_rec_counter", "other", "__vmark_manifest"];
    module(&mut s.bytes, m2, b"demo", va(head), 3, &syms);
    let k = s.kernel(&[("modules", va(head))]);
    let r = k.helper_registry().unwrap();
    let names: Vec<&str> = r.symbols.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["__vmark_rec_counter", "__vmark_manifest"]);
    assert_eq!(r.errors.len(), 1, "{:?}", r.errors);
    let (item, e) = &r.errors[0];
    assert_eq!(item, "module liar");
    assert!(
        matches!(
            e,
            KernelError::OverBudget {
                unit: "symbols",
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("liar"));
    assert!(k.find_helper_registry().is_err(), "the strict form fails");
}

#[test]
fn address_arithmetic_on_guest_values_does_not_wrap() {
    let mut s = Synth::new();
    // A list node at virtual 0x4: its task_struct would start below address 0.
    task(&mut s.bytes, INIT, 0, b"swapper/0", 0x4);
    s.bytes.put_u64(0x4, va(INIT + off::TASKS));
    let k = s.kernel(&[("init_task", va(INIT))]);
    let walk = k.walk_processes().unwrap();
    assert!(walk.end.is_none(), "{:?}", walk.end);
    let bad = walk.items[1].as_ref().unwrap_err();
    assert!(matches!(bad.error, KernelError::Overflow(_)), "{bad}");
    // A read that would run past the top of the address space.
    let mut buf = [0u8; 8];
    assert!(matches!(
        k.space().read(u64::MAX - 3, &mut buf),
        Err(TranslateError::Overflow { .. })
    ));
    assert!(matches!(
        k.space().read_cstring(u64::MAX - 3, 64),
        Err(TranslateError::Overflow { .. })
    ));
}

#[test]
fn a_32_bit_kernel_reads_4_byte_pointers() {
    // 32-bit paging: the PD at 0x1000 maps 0xc0000000.. onto physical 0.. (4 MiB pages).
    const PAGE_OFFSET: u64 = 0xc000_0000;
    let mut mem = VecMemory::new(vec![0; MEM as usize]);
    for i in 0..4u64 {
        mem.put_u32(0x1000 + (0x300 + i) * 4, ((i << 22) | 0x83) as u32);
    }
    // task_struct { i32 pid @0; i32 tgid @4; list_head tasks @8 (4-byte next, prev);
    // char comm[16] @16; mm_struct *mm @32; task_struct *real_parent @36 } (40 bytes)
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
        size: 4,
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
    let list = t.push(Type::Aggregate {
        kind: AggregateKind::Struct,
        name: Some("list_head".into()),
        size: 8,
        members: vec![m("next", ptr, 0), m("prev", ptr, 4)],
    });
    t.push(Type::Aggregate {
        kind: AggregateKind::Struct,
        name: Some("mm_struct".into()),
        size: 4,
        members: vec![m("pgd", ptr, 0)],
    });
    t.push(Type::Aggregate {
        kind: AggregateKind::Struct,
        name: Some("task_struct".into()),
        size: 40,
        members: vec![
            m("pid", int, 0),
            m("tgid", int, 4),
            m("tasks", list, 8),
            m("comm", comm, 16),
            m("mm", ptr, 32),
            m("real_parent", ptr, 36),
        ],
    });
    let (init, a) = (0x10000u64, 0x10100u64);
    let v = |pa: u64| (PAGE_OFFSET + pa) as u32;
    for (at, pid, name, next) in [(init, 0, &b"swapper"[..], a), (a, 1, b"init", init)] {
        mem.put_u32(at, pid);
        mem.put_u32(at + 4, pid);
        mem.put_u32(at + 8, v(next + 8));
        // The upper half of a 64-bit read would be this: garbage that must not be used.
        mem.put_u32(at + 12, 0xdead_beef);
        mem.put(at + 16, name);
        mem.put_u32(at + 36, v(init));
    }
    let tr = Arc::new(Translator::new(Arc::new(mem), PagingMode::Legacy32));
    let symbols = SymbolTable::new(vec![Symbol {
        name: "init_task".into(),
        addr: PAGE_OFFSET + init,
        kind: 'D',
    }])
    .unwrap();
    let mut k = Kernel::from_parts(tr.space(0x1000), symbols);
    k.set_btf(Arc::new(Btf::from_types(t).unwrap()));
    assert_eq!(k.pointer_size(), 4);
    let procs = k.processes().unwrap();
    let got: Vec<(i32, &str, Option<i32>)> = procs
        .iter()
        .map(|p| (p.pid, p.name.as_str(), p.parent_pid))
        .collect();
    assert_eq!(got, [(0, "swapper", Some(0)), (1, "init", Some(0))]);
}
