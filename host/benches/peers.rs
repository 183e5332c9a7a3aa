//! vmark's half of the side-by-side benchmark (`tests/bench-peers` runs it with drgn and
//! volatility3 and prints the table): the operations of the peers' table on one dump, and
//! the machine's own limit for each (a copy out of the same mapping, a hash probe, four
//! dependent loads). Prints one JSON object per line:
//! `{"tool":"vmark","op":"read_va_8","ns":12.3,"runs":11}` and, first,
//! `{"dump":PATH,"root":CR3,"va":VA,"pa":PA}` for the peers to read the same bytes.
//!
//! ```text
//! cargo bench -p vmark-host --features test-fixtures --bench peers -- [--vmcoreinfo | DUMP]
//! ```
//!
//! With no dump, the QEMU dump fixture of the host's kernel is used; `--vmcoreinfo` takes
//! (building it on first use) the fixture whose dump carries a VMCOREINFO note, which drgn
//! needs to open a QEMU dump.

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use vmark_host::introspect::fixture;
use vmark_host::introspect::kernel::Kernel;
use vmark_host::introspect::phys::elfcore::ElfCore;
use vmark_host::introspect::phys::PhysicalMemory;
use vmark_host::introspect::vmem::Translator;

/// Batches per operation; the median batch is reported.
const BATCHES: usize = 11;
/// Each batch lasts about this long (iterations are calibrated to it).
const BATCH_NS: f64 = 20e6;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Median nanoseconds per call of `f`.
fn time_ns(mut f: impl FnMut()) -> f64 {
    let t = Instant::now();
    f();
    let once = t.elapsed().as_nanos().max(1) as f64;
    let iters = ((BATCH_NS / once) as usize).clamp(1, 50_000_000);
    let batches = (0..BATCHES)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..iters {
                f();
            }
            t.elapsed().as_nanos() as f64 / iters as f64
        })
        .collect();
    median(batches)
}

fn report(op: &str, ns: f64) {
    report_runs(op, ns, BATCHES);
}

fn report_runs(op: &str, ns: f64, runs: usize) {
    println!(
        "{}",
        serde_json::json!({"tool": "vmark", "op": op, "ns": ns, "runs": runs})
    );
}

/// Opens of the dump timed (each one whole: file, kernel, symbols).
const OPENS: usize = 5;

fn dump_path() -> PathBuf {
    let arg = std::env::args().skip(1).find(|a| !a.starts_with("--bench"));
    match arg.as_deref() {
        Some("--vmcoreinfo") => {
            let kernel = fixture::Kernel::host().expect("host kernel");
            let fw_cfg = kernel
                .modules
                .join("kernel/drivers/firmware/qemu_fw_cfg.ko");
            let machine = fixture::Machine {
                vmcoreinfo: true,
                ..Default::default()
            };
            fixture::build_for(&kernel, machine, &[fw_cfg])
                .expect("the VMCOREINFO fixture")
                .dump
        }
        Some(path) => PathBuf::from(path),
        None => fixture::dump().to_path_buf(),
    }
}

fn open(path: &std::path::Path) -> Kernel {
    let core: Arc<dyn PhysicalMemory> = Arc::new(ElfCore::open(path).expect("dump"));
    let mut k = Kernel::locate(core).expect("kernel");
    k.load_btf().expect("BTF");
    k
}

fn main() {
    let path = dump_path();
    let k = open(&path);
    let root = k.base().root;
    let va = k.symbols().lookup("init_task").expect("init_task");
    let translator: &Arc<Translator> = k.space().translator();
    let pa = translator.translate(root, va).expect("translate");
    let mem = translator.memory().clone();
    println!(
        "{}",
        serde_json::json!({"dump": path, "root": root, "va": va, "pa": pa})
    );

    // Open: the file, the kernel (kallsyms, page tables) to a first answer; then types.
    report_runs(
        "open",
        median(
            (0..OPENS)
                .map(|_| {
                    let t = Instant::now();
                    let core: Arc<dyn PhysicalMemory> =
                        Arc::new(ElfCore::open(&path).expect("dump"));
                    let k = Kernel::locate(core).expect("kernel");
                    black_box(k.symbols().lookup("init_task"));
                    t.elapsed().as_nanos() as f64
                })
                .collect(),
        ),
        OPENS,
    );
    report_runs(
        "open_types",
        median(
            (0..OPENS)
                .map(|_| {
                    let t = Instant::now();
                    black_box(open(&path));
                    t.elapsed().as_nanos() as f64
                })
                .collect(),
        ),
        OPENS,
    );

    report(
        "symbol",
        time_ns(|| {
            black_box(k.symbols().lookup(black_box("init_task")));
        }),
    );
    report(
        "v2p_cached",
        time_ns(|| {
            black_box(translator.translate(root, black_box(va)).ok());
        }),
    );
    report(
        "v2p_uncached",
        time_ns(|| {
            black_box(translator.translate_uncached(root, black_box(va)).ok());
        }),
    );
    let mut small = [0u8; 8];
    let mut page = vec![0u8; 4096];
    let page_va = va & !0xfff;
    let page_pa = pa & !0xfff;
    report(
        "read_va_8",
        time_ns(|| {
            black_box(translator.read(root, black_box(va), &mut small).ok());
        }),
    );
    report(
        "read_va_4k",
        time_ns(|| {
            black_box(translator.read(root, black_box(page_va), &mut page).ok());
        }),
    );
    report(
        "read_pa_8",
        time_ns(|| {
            black_box(mem.read(black_box(pa), &mut small).ok());
        }),
    );
    report(
        "read_pa_4k",
        time_ns(|| {
            black_box(mem.read(black_box(page_pa), &mut page).ok());
        }),
    );
    report(
        "ps",
        time_ns(|| {
            black_box(k.processes().ok());
        }),
    );
    report(
        "modules",
        time_ns(|| {
            black_box(k.modules().ok());
        }),
    );
    machine_limits(&k, &path, pa, root, va);
}

/// What the machine itself takes for each kind of operation, on the same bytes.
fn machine_limits(k: &Kernel, path: &std::path::Path, pa: u64, root: u64, va: u64) {
    let translator = k.space().translator();
    // The dump's own mapping, read by file offset: the copy a mapped read cannot avoid.
    let file = std::fs::File::open(path).expect("dump");
    // SAFETY: a read-only mapping of a fixture nothing truncates while the benchmark runs.
    let map = unsafe { memmap2::Mmap::map(&file) }.expect("map");
    let core = ElfCore::open(path).expect("dump");
    // Physical address to file offset: a binary search of the segments, as any reader of
    // a segmented dump must do.
    let segments = core.segments().to_vec();
    let offset_of = |paddr: u64| {
        let i = segments.partition_point(|s| s.paddr <= paddr) - 1;
        let s = &segments[i];
        debug_assert!(paddr - s.paddr < s.len);
        (s.file_offset + (paddr - s.paddr)) as usize
    };
    let off = offset_of(pa);
    let page_off = offset_of(pa & !0xfff);
    let mut small = [0u8; 8];
    let mut page = vec![0u8; 4096];
    report(
        "limit_copy_8",
        time_ns(|| {
            small.copy_from_slice(&map[black_box(off)..off + 8]);
            black_box(&small);
        }),
    );
    report(
        "limit_copy_4k",
        time_ns(|| {
            page.copy_from_slice(&map[black_box(page_off)..page_off + 4096]);
            black_box(&page);
        }),
    );
    // A hash probe: one u64 key in a table as large as the translation cache (the limit
    // of a cached translation); one name in a table of the kernel's symbol names (of a
    // symbol lookup).
    let table: hashbrown::HashMap<u64, u64> = (0..8192u64).map(|i| (i * 4096, i)).collect();
    report(
        "limit_hash",
        time_ns(|| {
            black_box(table.get(&black_box(0x123 * 4096)));
        }),
    );
    let names: hashbrown::HashMap<&str, u64> =
        k.symbols().iter().map(|s| (s.name, s.addr)).collect();
    report(
        "limit_hash_name",
        time_ns(|| {
            black_box(names.get(black_box("init_task")));
        }),
    );
    // Four dependent loads: a bare 4-level walk straight from the mapping, each entry's
    // frame naming the next table, as any page walk must (stopping at a large page).
    const FRAME: u64 = 0x000f_ffff_ffff_f000;
    let bare_walk = |va: u64| -> u64 {
        let mut table = root & FRAME;
        for shift in [39u32, 30, 21, 12] {
            let at = offset_of(table + ((va >> shift) & 511) * 8);
            let e = u64::from_le_bytes(map[at..at + 8].try_into().expect("8 bytes"));
            if shift != 12 && e & 0x80 != 0 {
                let size = 1u64 << shift;
                return (e & FRAME & !(size - 1)) | (va & (size - 1));
            }
            table = e & FRAME;
        }
        table | (va & 0xfff)
    };
    assert_eq!(
        bare_walk(va),
        translator.translate_uncached(root, va).expect("walk").paddr
    );
    report(
        "limit_walk",
        time_ns(|| {
            black_box(bare_walk(black_box(va)));
        }),
    );
}
