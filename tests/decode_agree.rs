//! The compiled JSON writer must render real kernel types byte for byte like the reference
//! renderer (the straightforward one it replaced): builds `tests/fixtures/typezoo` with
//! Kbuild against the installed kernel headers and compares the two on every struct and
//! union in its DWARF (`struct tcp_sock`, the benchmark's type, among them), with full,
//! patterned and truncated samples.
//!
//! Fails (never skips) when the kernel headers are missing, naming `tests/install-deps.sh`.

use std::path::Path;
use vmark_build::dwarf::DebugInfo;
use vmark_host::decode::Plan;

/// Samples of `size` bytes: all zeros, all ones, the benchmark's pattern, pseudo-random.
fn samples(size: usize) -> Vec<(&'static str, Vec<u8>)> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ size as u64;
    let random = (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    vec![
        ("zeros", vec![0; size]),
        ("ones", vec![0xff; size]),
        ("pattern", (0..size).map(|i| (i * 37 % 251) as u8).collect()),
        ("random", random),
    ]
}

#[test]
fn fast_json_matches_the_reference_on_every_typezoo_type() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join("decode_agree-typezoo");
    let ko =
        vmark_tests::kbuild::build_module(&root.join("tests/fixtures/typezoo"), &work, "typezoo")
            .unwrap_or_else(|e| panic!("{e}"));
    let info = DebugInfo::parse_file(&ko).expect("typezoo.ko has DWARF");
    let names = info.aggregate_names();
    assert!(
        names.iter().any(|n| n == "struct tcp_sock"),
        "no struct tcp_sock"
    );
    let mut out = Vec::new();
    let mut compared = 0;
    for name in &names {
        let (types, ty) = info
            .aggregate(name, 1)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let plan = Plan::compile(&types, ty).unwrap_or_else(|e| panic!("{name}: {e}"));
        let size = plan.size() as usize;
        for (what, bytes) in samples(size) {
            // Full samples, and cut short at a few places (the tail renders as nulls).
            for n in [size, size.saturating_sub(1), size / 2, size.min(3), 0] {
                let reference = plan.to_json_reference(&bytes[..n]);
                out.clear();
                plan.write_json(&bytes[..n], &mut out);
                if out != reference.as_bytes() {
                    let (fast, reference) = (&out[..], reference.as_bytes());
                    let at = fast
                        .iter()
                        .zip(reference)
                        .position(|(a, b)| a != b)
                        .unwrap_or(fast.len().min(reference.len()));
                    let around = |s: &[u8]| {
                        String::from_utf8_lossy(&s[at.saturating_sub(80)..(at + 80).min(s.len())])
                            .into_owned()
                    };
                    panic!(
                        "{name}, {what} sample cut to {n} of {size} bytes: fast and reference \
                         JSON differ at byte {at}:\n fast: {}\n  ref: {}",
                        around(fast),
                        around(reference),
                    );
                }
            }
        }
        compared += 1;
    }
    assert!(compared > 100, "only {compared} types compared");
}
