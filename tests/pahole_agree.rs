//! `vmark inspect --type NAME --json` must agree with pahole, member for member, on real
//! kernel structs: builds `tests/fixtures/typezoo` with Kbuild against the installed
//! kernel headers and compares the layouts of 30 structs (names, offsets, sizes, bitfield
//! positions and widths, anonymous struct/union nesting).
//!
//! Fails (never skips) when the kernel headers or pahole are missing, naming
//! `tests/install-deps.sh`.

use std::path::{Path, PathBuf};
use vmark_host::inspect::{inspect, InspectOptions};
use vmark_tests::matrix::{compare_layouts as compare, TYPEZOO_STRUCTS};
use vmark_tests::{kbuild, pahole};

/// Structs compared: typezoo's, the bitfield-heavy ones first.
const STRUCTS: &[&str] = TYPEZOO_STRUCTS;

fn build_typezoo() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join("pahole_agree-typezoo");
    kbuild::build_module(&root.join("tests/fixtures/typezoo"), &work, "typezoo")
        .unwrap_or_else(|e| panic!("{e}"))
}

fn vmark_json(ko: &Path, name: &str) -> serde_json::Value {
    let opts = InspectOptions {
        type_name: Some(format!("struct {name}")),
        json: true,
        pointer_depth: 0,
    };
    let mut out = Vec::new();
    inspect(ko, &opts, &mut out)
        .unwrap_or_else(|e| panic!("vmark inspect --type 'struct {name}': {e}"));
    serde_json::from_slice(&out).expect("vmark inspect --json prints JSON")
}

#[test]
fn vmark_inspect_agrees_with_pahole() {
    let version = pahole::version().unwrap_or_else(|e| panic!("{e}"));
    let ko = build_typezoo();
    let mut mismatches = Vec::new();
    let mut members = 0;
    let mut bitfields = 0;
    for name in STRUCTS {
        let p = match pahole::layout(&ko, name) {
            Ok(p) => p,
            Err(e) => {
                mismatches.push(format!("struct {name}: {e}"));
                continue;
            }
        };
        let v = vmark_json(&ko, name);
        members += p.members.len();
        bitfields += p.members.iter().filter(|m| m.bits.is_some()).count();
        mismatches.extend(compare(name, &p, &v));
    }
    assert!(
        mismatches.is_empty(),
        "vmark inspect disagrees with pahole {version} on {}:\n{}",
        ko.display(),
        mismatches.join("\n")
    );
    eprintln!(
        "pahole {version} and vmark agree on {} structs ({members} members, {bitfields} bitfields)",
        STRUCTS.len()
    );
    assert!(STRUCTS.len() >= 20 && bitfields > 50, "too little compared");
}

/// The comparison itself must notice wrong offsets, sizes and bit positions.
#[test]
fn comparison_reports_mismatches() {
    let p = pahole::parse(
        "struct x {\n\tunsigned int a:3; /* 0: 0 4 */\n\tint b; /* 4 4 */\n\t/* size: 8, cachelines: 1, members: 2 */\n};\n",
    )
    .unwrap();
    let good = serde_json::json!({"size": 8, "members": [
        {"name": "a", "offset": 0, "size": 4, "depth": 0, "bit_offset": 0, "bit_size": 3},
        {"name": "b", "offset": 4, "size": 4, "depth": 0}]});
    assert!(compare("x", &p, &good).is_empty());
    let bad = serde_json::json!({"size": 8, "members": [
        {"name": "a", "offset": 0, "size": 4, "depth": 0, "bit_offset": 1, "bit_size": 3},
        {"name": "b", "offset": 5, "size": 2, "depth": 0}]});
    assert_eq!(
        compare("x", &p, &bad).len(),
        3,
        "{:?}",
        compare("x", &p, &bad)
    );
}
