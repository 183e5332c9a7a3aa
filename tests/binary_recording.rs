//! Binary recordings (`watch --record-format binary`) against JSON-lines ones: the same
//! samples of a real `struct tcp_sock` (the Debian kernel's type, from the DWARF of a module
//! built with Kbuild, `tests/fixtures/typezoo`) recorded both ways must give the same JSON
//! lines through `vmark convert` and the same plot through `vmark plot`; a crash's torn
//! frame costs only that frame.

use std::path::Path;
use vmark_build::dwarf::DebugInfo;
use vmark_host::binrec::BinaryRecorder;
use vmark_host::decode::Plan;
use vmark_host::sample::{Cause, Recorder, SampleMeta};
use vmark_tests::kmod::{vmark, workspace_root};

#[test]
fn binary_and_json_recordings_convert_and_plot_alike() {
    let root = workspace_root();
    let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join("binary_recording");
    let ko = vmark_tests::kbuild::build_module(
        &root.join("tests/fixtures/typezoo"),
        &work.join("typezoo"),
        "typezoo",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let info = DebugInfo::parse_file(&ko).expect("typezoo.ko has DWARF");
    let (types, tcp) = info
        .aggregate("struct tcp_sock", 1)
        .expect("struct tcp_sock");
    let plan = Plan::compile(&types, tcp).expect("plan");
    let size = plan.size() as usize;
    let manifest = vmark_proto::Manifest {
        module: "typezoo".into(),
        kernel_release: "test".into(),
        build_id: vec![7; 20],
        pointer_depth: 1,
        marks: vec![vmark_proto::Mark {
            name: "tcp".into(),
            symbol: "tcp".into(),
            ty: tcp,
            size: size as u64,
            flags: vmark_proto::MarkFlags(0),
        }],
        types,
    };
    let (bin, json) = (work.join("run.vmrec"), work.join("run.jsonl"));
    let _ = std::fs::remove_file(&bin);
    let _ = std::fs::remove_file(&json);
    let mut b = BinaryRecorder::open_capped(&bin, 1 << 30).expect("binary recording");
    let mut j = Recorder::open_capped(&json, 1 << 30).expect("JSON recording");
    for i in 0..200u64 {
        let bytes: Vec<u8> = (0..size).map(|k| (k as u64 * 31 + i * 7) as u8).collect();
        let meta = SampleMeta {
            t_ns: 1_700_000_000_000_000_000 + i * 1_000_000,
            mark: "typezoo/tcp".into(),
            cause: if i % 3 == 0 {
                Cause::Trigger
            } else {
                Cause::Timer
            },
            triggers: i / 3,
            folded: u64::from(i % 3 == 0),
            consistent: i != 17,
            retries: u32::from(i == 17),
            seq: 2 * i as u32,
            latency_ns: (i % 3 == 0).then_some(40_000 + i),
            paused_ns: None,
        };
        b.sample("typezoo/tcp", "tcp", &manifest, &meta, &bytes);
        j.append(&meta.to_json_line(&plan.to_json(&bytes)));
        if i % 50 == 49 {
            b.flush();
        }
    }
    drop(b);
    let converted = work.join("converted.jsonl");
    vmark(&[
        "convert",
        bin.to_str().unwrap(),
        "-o",
        converted.to_str().unwrap(),
    ]);
    let (got, want) = (
        std::fs::read_to_string(&converted).unwrap(),
        std::fs::read_to_string(&json).unwrap(),
    );
    assert_eq!(got.lines().count(), 200);
    assert!(got == want, "vmark convert differs from the JSON recording");
    let plot = |rec: &Path, out: &str| {
        let svg = work.join(out);
        let summary = vmark(&[
            "plot",
            rec.to_str().unwrap(),
            "snd_cwnd",
            "srtt_ms=(srtt_us>>3)/1000:ms",
            "-o",
            svg.to_str().unwrap(),
        ]);
        // The recording's own name may be in either; nothing else may differ.
        let name = rec.file_name().unwrap().to_str().unwrap();
        let same = |t: String| t.replace(svg.to_str().unwrap(), "OUT").replace(name, "REC");
        (same(summary), same(std::fs::read_to_string(&svg).unwrap()))
    };
    let (from_bin, svg_bin) = plot(&bin, "bin.svg");
    let (from_json, svg_json) = plot(&json, "json.svg");
    assert_eq!(from_bin, from_json);
    assert!(svg_bin == svg_json, "the plots differ");
    // A crash mid-frame: the torn frame is reported, the 200 samples before it kept.
    let mut bytes = std::fs::read(&bin).unwrap();
    bytes.extend_from_slice(&[2, 0xff, 0xff, 0, 0, 1, 2, 3]);
    std::fs::write(&bin, &bytes).unwrap();
    let out = vmark_tests::kmod::run_vmark(&["convert", bin.to_str().unwrap()]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("200 samples") && stderr.contains("reading stopped"),
        "{stderr}"
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 200);
}
