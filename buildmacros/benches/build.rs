//! vmark-build's cost on the example module `examples/marks-demo` (5 marks, one of them a
//! `struct tcp_sock *`, one a `struct tcp_sock` copy):
//!
//! ```text
//! cargo bench -p vmark-build --bench build
//! ```
//!
//! Builds the example with Kbuild against the newest installed `/lib/modules/*-amd64/build`
//! (or `$VMARK_BENCH_KDIR`) into `target/tmp`, or uses `$VMARK_BENCH_KO` if set. Prints the
//! encoded manifest size at pointer depths 0..=2, then times manifest building (ELF +
//! DWARF + type closure) and the whole embed (build + encode + ELF rewrite), without file
//! I/O.

use criterion::{criterion_group, criterion_main, Criterion};
use std::path::{Path, PathBuf};
use std::process::Command;
use vmark_build::{build_manifest, embed, BuildOptions};

fn kdir() -> PathBuf {
    if let Some(k) = std::env::var_os("VMARK_BENCH_KDIR") {
        return PathBuf::from(k);
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/lib/modules")
        .expect("/lib/modules: run tests/install-deps.sh")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with("-amd64"))
        .map(|e| e.path().join("build"))
        .filter(|p| p.join("Makefile").is_file())
        .collect();
    dirs.sort();
    dirs.pop()
        .expect("no /lib/modules/*-amd64/build: run tests/install-deps.sh")
}

fn example_ko() -> PathBuf {
    if let Some(ko) = std::env::var_os("VMARK_BENCH_KO") {
        return PathBuf::from(ko);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let root = root.canonicalize().expect("workspace root");
    let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bench-marks-demo");
    std::fs::create_dir_all(&work).expect("work dir");
    for f in ["Makefile", "marks_demo.c"] {
        std::fs::copy(root.join("examples/marks-demo").join(f), work.join(f)).expect("copy");
    }
    // The Kbuild pass only: the bench embeds by itself.
    let status = Command::new("make")
        .arg("-C")
        .arg(kdir())
        .arg(format!("M={}", work.display()))
        .arg(format!("VMARK={}", root.display()))
        .arg("modules")
        .stdout(std::process::Stdio::null())
        .status()
        .expect("make");
    assert!(status.success(), "building the example failed");
    work.join("marks_demo.ko")
}

fn bench(c: &mut Criterion) {
    let ko = example_ko();
    let data = std::fs::read(&ko).expect("read .ko");
    for depth in 0..=2 {
        let opts = BuildOptions {
            pointer_depth: depth,
            ..Default::default()
        };
        let m = build_manifest(&data, &opts).expect("manifest");
        let size = vmark_proto::encode(&m).expect("encode").len();
        eprintln!(
            "manifest of {} at pointer depth {depth}: {} types, {size} bytes",
            ko.display(),
            m.types.len()
        );
    }
    let opts = BuildOptions::default();
    c.bench_function("build_manifest marks_demo.ko", |b| {
        b.iter(|| build_manifest(&data, &opts).expect("manifest"))
    });
    c.bench_function("embed marks_demo.ko (build+encode+rewrite)", |b| {
        b.iter(|| {
            let m = build_manifest(&data, &opts).expect("manifest");
            let blob = vmark_proto::encode(&m).expect("encode");
            embed(&data, &blob).expect("embed")
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = bench
}
criterion_main!(benches);
