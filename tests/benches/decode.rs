//! Decoding a `struct tcp_sock`-sized mark to the JSON form, with the real type of the
//! Debian kernel (from the DWARF of a module built with Kbuild, `tests/fixtures/typezoo`).
//!
//! `cargo bench -p vmark-tests --bench decode`
//!
//! Reports time per sample; samples/s = 1 / time. Also the pretty tree and a single field,
//! and the whole host path of a recorded sample: a read of a `struct tcp_sock`-sized mark
//! from a buffer-backed mapping (the code that reads a Xen foreign mapping) and its
//! recording, binary (`--record-format binary`: framed raw bytes) or as a JSON line, both
//! written to `/dev/null` (the host's cost, not the disk's).

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
    record(c, &types, tcp, &plan);
    let json = plan.to_json(&bytes);
    eprintln!(
        "struct tcp_sock: {size} bytes, JSON sample {} bytes",
        json.len()
    );
    if let Ok(p) = std::env::var("VMARK_BENCH_DUMP") {
        std::fs::write(p, json).expect("dump");
    }
}

fn record(
    c: &mut Criterion,
    types: &vmark_proto::types::TypeTable,
    ty: vmark_proto::TypeId,
    plan: &Plan,
) {
    use vmark_host::binrec::BinaryRecorder;
    use vmark_host::frames::{BufferMapper, FrameMapper};
    use vmark_host::reader::MappedMark;
    use vmark_host::sample::{Cause, Recorder, SampleMeta};
    let size = plan.size() as usize;
    let pages = size.div_ceil(4096) + 1;
    let mapper = BufferMapper::new((0..pages * 4096).map(|i| (i * 37 % 251) as u8).collect());
    let frames: Vec<u64> = (0..pages as u64 - 1).collect();
    let var = mapper.map(&frames).expect("map");
    let rec = mapper.map(&[pages as u64 - 1]).expect("map");
    let mark = MappedMark::new(var, 0, size, rec, 0, false).expect("mark");
    let manifest = vmark_proto::Manifest {
        module: "bench".into(),
        kernel_release: "bench".into(),
        build_id: vec![0; 20],
        pointer_depth: 1,
        marks: vec![vmark_proto::Mark {
            name: "tcp".into(),
            symbol: "tcp".into(),
            ty,
            size: size as u64,
            flags: vmark_proto::MarkFlags(0),
        }],
        types: types.clone(),
    };
    let meta = |t_ns| SampleMeta {
        t_ns,
        mark: "bench/tcp".into(),
        cause: Cause::Timer,
        triggers: 0,
        folded: 0,
        consistent: true,
        retries: 0,
        seq: 0,
        latency_ns: None,
        paused_ns: None,
    };
    let null = std::path::Path::new("/dev/null");
    let mut buf = Vec::with_capacity(size);
    let mut g = c.benchmark_group("record_tcp_sock");
    g.throughput(Throughput::Elements(1));
    let mut binary = BinaryRecorder::open_capped(null, u64::MAX).expect("/dev/null");
    let mut t = 0u64;
    g.bench_function("read_and_record_binary", |b| {
        b.iter(|| {
            t += 1;
            let _ = mark.read(&mut buf, 0);
            black_box(binary.sample("bench/tcp", "tcp", &manifest, &meta(t), &buf))
        })
    });
    let mut lines = Recorder::open_capped(null, u64::MAX).expect("/dev/null");
    g.bench_function("read_and_record_json", |b| {
        b.iter(|| {
            t += 1;
            let _ = mark.read(&mut buf, 0);
            let line = meta(t).to_json_line(&plan.to_json(&buf));
            black_box(lines.append(&line))
        })
    });
    g.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
