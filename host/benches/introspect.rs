//! Introspection benchmarks, per call: symbol → virtual address, virtual → physical
//! (cached and uncached walks), and reads of 4 bytes and 8 KiB by physical and by virtual
//! address.
//!
//! `cargo bench -p vmark-host --bench introspect`
//!
//! Runs on a synthetic 64 MiB image with 4-level page tables (4 KiB pages) in memory, and,
//! when the QEMU dump fixture built by the introspection tests exists
//! (`target/introspect-fixtures/*.elf`), on that real dump (read through its mapping, and
//! through the bounded page cache).

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;
use vmark_host::introspect::kernel::Kernel;
use vmark_host::introspect::paging::PagingMode;
use vmark_host::introspect::phys::cached::PageCached;
use vmark_host::introspect::phys::elfcore::ElfCore;
use vmark_host::introspect::phys::{PhysicalMemory, VecMemory};
use vmark_host::introspect::symbols::{Symbol, SymbolTable};
use vmark_host::introspect::vmem::Translator;

const BASE_VA: u64 = 0xffff_8880_0000_0000;
const MAPPED: u64 = 32 << 20;

/// 64 MiB of memory; virtual BASE_VA + n maps to physical 32 MiB + n for n < 32 MiB.
fn synthetic() -> (Arc<VecMemory>, u64) {
    let mut m = VecMemory::new(vec![0u8; 64 << 20]);
    let (pml4, pdpt, pd, pt0) = (0x1000u64, 0x2000u64, 0x3000u64, 0x10_0000u64);
    m.put_u64(pml4 + ((BASE_VA >> 39) & 0x1ff) * 8, pdpt | 3);
    m.put_u64(pdpt + ((BASE_VA >> 30) & 0x1ff) * 8, pd | 3);
    for i in 0..MAPPED / (2 << 20) {
        let pt = pt0 + i * 4096;
        m.put_u64(pd + i * 8, pt | 3);
        for j in 0..512 {
            m.put_u64(pt + j * 8, (MAPPED + (i * 512 + j) * 4096) | 3);
        }
    }
    (Arc::new(m), pml4)
}

fn symbols() -> SymbolTable {
    let syms = (0..100_000u64)
        .map(|i| Symbol {
            name: format!("sym_{i}"),
            addr: 0xffff_ffff_8100_0000 + i * 64,
            kind: 'T',
        })
        .collect();
    SymbolTable::new(syms).expect("symbols")
}

fn group(
    c: &mut Criterion,
    name: &str,
    mem: Arc<dyn PhysicalMemory>,
    (root, mode): (u64, PagingMode),
    va: u64,
    syms: &SymbolTable,
    sym: &str,
) {
    let t = Translator::new(mem.clone(), mode);
    let pa = t.translate(root, va).expect("translate");
    let mut g = c.benchmark_group(name);
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    g.bench_function("symbol_to_virtual", |b| {
        b.iter(|| black_box(syms.lookup(black_box(sym))))
    });
    g.bench_function("v2p_cached", |b| {
        b.iter(|| black_box(t.translate(root, black_box(va))))
    });
    g.bench_function("v2p_uncached", |b| {
        b.iter(|| black_box(t.translate_uncached(root, black_box(va))))
    });
    let mut small = [0u8; 4];
    let mut big = vec![0u8; 8192];
    g.bench_function("read_phys_4B", |b| {
        b.iter(|| black_box(mem.read(black_box(pa), &mut small)))
    });
    g.bench_function("read_phys_8KiB", |b| {
        b.iter(|| black_box(mem.read(black_box(pa), &mut big)))
    });
    g.bench_function("read_virt_4B", |b| {
        b.iter(|| black_box(t.read(root, black_box(va), &mut small)))
    });
    g.bench_function("read_virt_8KiB", |b| {
        b.iter(|| black_box(t.read(root, black_box(va), &mut big)))
    });
    g.finish();
}

fn synthetic_image(c: &mut Criterion) {
    let (mem, root) = synthetic();
    group(
        c,
        "synthetic",
        mem,
        (root, PagingMode::Long4),
        BASE_VA + 0x12_3458,
        &symbols(),
        "sym_77777",
    );
}

fn real_dump(c: &mut Criterion) {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/introspect-fixtures");
    let Some(path) = std::fs::read_dir(&dir).ok().and_then(|d| {
        d.filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|x| x == "elf"))
    }) else {
        eprintln!(
            "no QEMU dump fixture in {}: run the introspect tests first",
            dir.display()
        );
        return;
    };
    let core: Arc<dyn PhysicalMemory> = Arc::new(ElfCore::open(&path).expect("dump"));
    let k = Kernel::locate(core.clone()).expect("kernel");
    let root = k.base().root;
    let va = k.symbols().lookup("init_task").expect("init_task");
    group(
        c,
        "qemu_dump_mapped",
        core.clone(),
        (root, k.base().mode),
        va,
        k.symbols(),
        "init_task",
    );
    let cached: Arc<dyn PhysicalMemory> =
        Arc::new(PageCached::new(ElfCore::open(&path).expect("dump"), 4096));
    group(
        c,
        "qemu_dump_page_cache",
        cached,
        (root, k.base().mode),
        va,
        k.symbols(),
        "init_task",
    );
}

criterion_group!(benches, synthetic_image, real_dump);
criterion_main!(benches);
