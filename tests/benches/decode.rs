//! Decoding a `struct tcp_sock`-sized mark to the JSON form, with the real type of the
//! Debian kernel (from the DWARF of a module built with Kbuild, `tests/fixtures/typezoo`).
//!
//! `cargo bench -p vmark-tests --bench decode`
//!
//! Reports time per sample; samples/s = 1 / time. Also the pretty tree and a single field.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use vmark_build::dwarf::DebugInfo;
use vmark_host::decode::{FieldPath, Plan};

fn decode(c: &mut Criterion) {
    let root = vmark_tests::kmod::workspace_root();
    let ko = vmark_tests::kbuild::build_module(
        &root.join("tests/fixtures/typezoo"),
        &root.join("target/tmp/bench-typezoo"),
        "typezoo",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let info = DebugInfo::parse_file(&ko).expect("typezoo.ko has DWARF");
    let (types, tcp) = info
        .aggregate("struct tcp_sock", 1)
        .expect("struct tcp_sock");
    let plan = Plan::compile(&types, tcp).expect("plan");
    let size = plan.size() as usize;
    // A plausible sample: every byte differs, so integers are non-trivial to format.
    let bytes: Vec<u8> = (0..size).map(|i| (i * 37 % 251) as u8).collect();
    let mut json = Vec::with_capacity(64 * 1024);
    let mut out = String::with_capacity(64 * 1024);
    let mut g = c.benchmark_group("decode_tcp_sock");
    g.throughput(Throughput::Elements(1));
    g.bench_function("json", |b| {
        b.iter(|| {
            json.clear();
            plan.write_json(black_box(&bytes), &mut json);
            black_box(json.len())
        })
    });
    g.bench_function("pretty", |b| {
        b.iter(|| {
            out.clear();
            plan.write_pretty(black_box(&bytes), &mut out);
            black_box(out.len())
        })
    });
    let cwnd = FieldPath::resolve(&types, tcp, "snd_cwnd").expect("snd_cwnd");
    g.bench_function("one_field", |b| {
        b.iter(|| black_box(cwnd.read(black_box(&bytes))))
    });
    g.finish();
    let json = plan.to_json(&bytes);
    eprintln!(
        "struct tcp_sock: {size} bytes, JSON sample {} bytes",
        json.len()
    );
    if let Ok(p) = std::env::var("VMARK_BENCH_DUMP") {
        std::fs::write(p, json).expect("dump");
    }
}

criterion_group!(benches, decode);
criterion_main!(benches);
