//! `vmark inspect --type NAME --json` must agree with pahole, member for member, on real
//! kernel structs: builds `tests/fixtures/typezoo` with Kbuild against the installed
//! kernel headers and compares the layouts of 30 structs (names, offsets, sizes, bitfield
//! positions and widths, anonymous struct/union nesting).
//!
//! Fails (never skips) when the kernel headers or pahole are missing, naming
//! `tests/install-deps.sh`.

use std::path::{Path, PathBuf};
use vmark_host::inspect::{inspect, InspectOptions};
use vmark_tests::matrix::TYPEZOO_STRUCTS;
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

/// Every difference between pahole's and vmark's view of one struct.
fn compare(name: &str, p: &pahole::PaholeLayout, v: &serde_json::Value) -> Vec<String> {
    let mut bad = Vec::new();
    if v["size"].as_u64() != Some(p.size) {
        bad.push(format!(
            "struct {name}: size pahole {} vmark {}",
            p.size, v["size"]
        ));
    }
    let vm = v["members"].as_array().cloned().unwrap_or_default();
    if vm.len() != p.members.len() {
        bad.push(format!(
            "struct {name}: {} members (incl. anonymous) in pahole, {} in vmark",
            p.members.len(),
            vm.len()
        ));
    }
    for (i, (pm, m)) in p.members.iter().zip(vm.iter()).enumerate() {
        let vname = m["name"].as_str().map(str::to_string);
        let where_ = format!(
            "struct {name} member #{i} ({})",
            pm.name.as_deref().unwrap_or("<anonymous>")
        );
        if vname != pm.name {
            bad.push(format!(
                "{where_}: name pahole {:?} vmark {:?}",
                pm.name, vname
            ));
            // Later members would all be reported; one misalignment is enough.
            break;
        }
        if m["size"].as_u64() != Some(pm.size) {
            bad.push(format!(
                "{where_}: size pahole {} vmark {}",
                pm.size, m["size"]
            ));
        }
        if m["depth"].as_u64() != Some(pm.depth as u64) {
            bad.push(format!(
                "{where_}: depth pahole {} vmark {}",
                pm.depth, m["depth"]
            ));
        }
        match pm.bits {
            Some((_, width)) => {
                if m["bit_offset"].as_u64() != pm.absolute_bit()
                    || m["bit_size"].as_u64() != Some(width)
                {
                    bad.push(format!(
                        "{where_}: bitfield pahole {}:{} (bit {:?}) width {width}, vmark bit {} width {}",
                        pm.offset,
                        pm.bits.map(|b| b.0).unwrap_or(0),
                        pm.absolute_bit(),
                        m["bit_offset"],
                        m["bit_size"]
                    ));
                }
            }
            None => {
                if m.get("bit_offset").is_some() {
                    bad.push(format!("{where_}: vmark says bitfield, pahole does not"));
                }
                if m["offset"].as_u64() != Some(pm.offset) {
                    bad.push(format!(
                        "{where_}: offset pahole {} vmark {}",
                        pm.offset, m["offset"]
                    ));
                }
            }
        }
        if pm.container != m.get("expanded").is_some() {
            bad.push(format!(
                "{where_}: expanded inline: pahole {} vmark {}",
                pm.container, !pm.container
            ));
        }
    }
    bad
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
