//! Marks in 32-bit (i386) kernel modules: `examples/marks-demo` and
//! `tests/fixtures/typezoo` built with Kbuild against Debian's own i386 kernel headers
//! (686-pae and 686, unpacked by `tests/fetch-kernels.sh` into `target/kernels/`), the way
//! a module author builds them (`vmark.mk`, then `vmark-build embed`).
//!
//! Checks that the module is ELF32 for i386, that its embedded manifest is what the host
//! reads (`vmark inspect`'s decode of it, every mark's size equal to the compiler's
//! `sizeof` in its record, pointers and `long` 4 bytes), and that `vmark inspect --type`
//! agrees with pahole member for member on the marks' structs and on typezoo's 31.
//!
//! Needs gcc, make, pahole and network access to Debian's archive on the first run (the
//! unpacked kernels are cached); fails, never skips, without them.

use std::path::{Path, PathBuf};
use vmark_host::inspect::{inspect, InspectOptions};
use vmark_proto::{Manifest, Type};
use vmark_tests::kmod::{make_marked_module_in, workspace_root};
use vmark_tests::matrix::{build_module_in, compare_layouts, fetch, Unpacked, TYPEZOO_STRUCTS};
use vmark_tests::pahole;

fn work_dir(flavour: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("marks_i386")
        .join(flavour)
}

/// The i386 kernel of `flavour` and marks-demo built against its headers.
fn demo(flavour: &str) -> (Unpacked, PathBuf) {
    let kernel = fetch("bookworm", "i386", flavour).unwrap_or_else(|e| panic!("{e}"));
    let ko = make_marked_module_in(
        &kernel.kdir(),
        &workspace_root().join("examples/marks-demo"),
        &work_dir(flavour).join("marks-demo"),
        "marks_demo",
        &[],
    )
    .unwrap_or_else(|e| panic!("marks-demo for {}: {e}", kernel.release));
    (kernel, ko)
}

/// The manifest as the host reads it from the module (`vmark inspect FILE --json`) and
/// as vmark-build wrote it.
fn manifests(ko: &Path) -> (serde_json::Value, Manifest) {
    let opts = InspectOptions {
        type_name: None,
        json: true,
        pointer_depth: 0,
    };
    let mut out = Vec::new();
    inspect(ko, &opts, &mut out).unwrap_or_else(|e| panic!("vmark inspect {}: {e}", ko.display()));
    let shown: serde_json::Value = serde_json::from_slice(&out).expect("inspect --json is JSON");
    let data = std::fs::read(ko).unwrap();
    let embedded = vmark_build::extract(&data)
        .unwrap_or_else(|e| panic!("{}: {e}", ko.display()))
        .unwrap_or_else(|| panic!("{}: no embedded manifest", ko.display()));
    (shown, embedded)
}

/// `vmark inspect --type 'struct NAME' --json` of `ko` compared with `pahole -C NAME`;
/// returns the differences and the number of members compared.
fn against_pahole(ko: &Path, names: &[&str]) -> (Vec<String>, usize) {
    let mut bad = Vec::new();
    let mut members = 0;
    for name in names {
        let p = match pahole::layout(ko, name) {
            Ok(p) => p,
            Err(e) => {
                bad.push(format!("struct {name}: {e}"));
                continue;
            }
        };
        let opts = InspectOptions {
            type_name: Some(format!("struct {name}")),
            json: true,
            pointer_depth: 0,
        };
        let mut out = Vec::new();
        if let Err(e) = inspect(ko, &opts, &mut out) {
            bad.push(format!("vmark inspect --type 'struct {name}': {e}"));
            continue;
        }
        let v: serde_json::Value = serde_json::from_slice(&out).expect("inspect --json is JSON");
        members += p.members.len();
        bad.extend(compare_layouts(name, &p, &v));
    }
    (bad, members)
}

fn marks_demo_is_a_32_bit_module_the_host_reads(flavour: &str) {
    let (kernel, ko) = demo(flavour);
    let data = std::fs::read(&ko).unwrap();
    // ELFCLASS32, little-endian, e_machine EM_386 (3).
    assert_eq!(
        (&data[..6], &data[18..20]),
        (&b"\x7fELF\x01\x01"[..], &[3u8, 0][..]),
        "{} is not an i386 ELF32 module",
        ko.display()
    );

    let (shown, m) = manifests(&ko);
    assert_eq!(m.kernel_release, kernel.release);
    assert_eq!(shown["module"], "marks_demo", "{shown}");
    let names: Vec<&str> = m.marks.iter().map(|k| k.name.as_str()).collect();
    assert_eq!(
        names,
        ["counter", "demo_tp", "demo_tcp", "demo_hist", "demo_state"]
    );
    // What the host shows is the embedded manifest, mark for mark.
    let host_marks = shown["marks"].as_array().expect("inspect lists the marks");
    assert_eq!(host_marks.len(), m.marks.len(), "{shown}");
    for (h, k) in host_marks.iter().zip(&m.marks) {
        assert_eq!(h["name"], k.name.as_str());
        assert_eq!(h["symbol"], k.symbol.as_str());
        assert_eq!(h["size"], k.size, "{}", k.name);
        assert_eq!(h["type"], m.types.type_name(k.ty).as_str());
        // Every mark's DWARF size is the compiler's sizeof in the record (vmark-build
        // checks it while building; the host's type table must say the same).
        assert_eq!(m.types.size_of(k.ty), Some(k.size), "{}", k.name);
    }
    let mark = |name: &str| m.mark(name).unwrap();
    let tp = mark("demo_tp");
    assert_eq!(m.types.type_name(tp.ty), "struct tcp_sock *");
    assert_eq!(tp.size, 4, "a pointer is 4 bytes on i386");
    match m.types.get(m.types.resolve(tp.ty)) {
        Some(Type::Pointer { size, .. }) => assert_eq!(*size, 4),
        other => panic!("demo_tp is {other:?}, not a pointer"),
    }
    assert_eq!(mark("counter").size, 8, "u64 stays 8 bytes");
    assert_eq!(mark("demo_hist").size, 32);
    assert!(mark("counter").flags.has_seq() && mark("counter").flags.can_trigger());
    // No pointer of the closure is 8 bytes: the whole table is the 32-bit guest's.
    let wide: Vec<String> = (0..m.types.len())
        .map(|i| vmark_proto::TypeId(i as u32))
        .filter(|&id| matches!(m.types.get(id), Some(Type::Pointer { size, .. }) if *size != 4))
        .map(|id| m.types.type_name(id))
        .collect();
    assert!(wide.is_empty(), "pointers not 4 bytes: {wide:?}");
    // `long` is 4 bytes in the 32-bit kernel's types.
    let long = (0..m.types.len())
        .map(|i| vmark_proto::TypeId(i as u32))
        .find_map(|id| match m.types.get(id) {
            Some(Type::Base { name, size, .. }) if name == "long int" => Some(*size),
            _ => None,
        });
    assert_eq!(long, Some(4), "long int in the closure");

    // The marks' structs, laid out as pahole reads the same DWARF.
    let (bad, members) = against_pahole(&ko, &["demo_state", "tcp_sock", "sock_common"]);
    assert!(bad.is_empty(), "{}:\n{}", ko.display(), bad.join("\n"));
    assert!(members > 100, "only {members} members compared");

    // The host decodes the 32-bit guest's values: the initialisers in the module's .data
    // are what a guest shows before any bump.
    let decoded = |mark: &str| {
        let k = m.mark(mark).unwrap();
        let bytes = initial_bytes(&data, &k.symbol, k.size);
        vmark_host::decode::Plan::compile(&m.types, k.ty)
            .unwrap_or_else(|e| panic!("{mark}: {e}"))
            .to_json(&bytes)
    };
    let state: serde_json::Value = serde_json::from_str(&decoded("demo_state")).unwrap();
    assert_eq!(
        (
            &state["id"],
            &state["mode"],
            &state["enabled"],
            &state["level"],
            &state["delta"]
        ),
        (
            &serde_json::json!(42),
            &serde_json::json!(5),
            &serde_json::json!(1),
            &serde_json::json!(1000),
            &serde_json::json!(-3)
        ),
        "{state}"
    );
    assert_eq!(state["raw"], 0x1122_3344_5566_7788u64, "{state}");
    assert_eq!(state["addr"]["port"], 8080, "{state}");
    assert_eq!(state["label"], "marks-demo", "{state}");
    assert_eq!(decoded("demo_hist"), "[1,2,3,5,8,13,21,34]");
}

/// The `size` bytes a defined data symbol starts with in the object file.
fn initial_bytes(data: &[u8], symbol: &str, size: u64) -> Vec<u8> {
    use vmark_build::object::{Object, ObjectSection, ObjectSymbol};
    let file = vmark_build::object::File::parse(data).unwrap();
    let sym = file
        .symbols()
        .find(|s| s.name() == Ok(symbol))
        .unwrap_or_else(|| panic!("no symbol {symbol}"));
    let section = file
        .section_by_index(sym.section_index().expect("a defined symbol"))
        .unwrap();
    let bytes = section.data().unwrap();
    let start = usize::try_from(sym.address()).unwrap();
    bytes[start..start + usize::try_from(size).unwrap()].to_vec()
}

#[test]
fn marks_demo_builds_and_reads_on_686_pae() {
    marks_demo_is_a_32_bit_module_the_host_reads("686-pae");
}

#[test]
fn marks_demo_builds_and_reads_on_686() {
    marks_demo_is_a_32_bit_module_the_host_reads("686");
}

#[test]
fn inspect_agrees_with_pahole_on_i386_typezoo() {
    let kernel = fetch("bookworm", "i386", "686-pae").unwrap_or_else(|e| panic!("{e}"));
    let ko = build_module_in(
        &kernel.kdir(),
        &workspace_root().join("tests/fixtures/typezoo"),
        &work_dir("686-pae").join("typezoo"),
        "typezoo",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let (bad, members) = against_pahole(&ko, TYPEZOO_STRUCTS);
    assert!(
        bad.is_empty(),
        "{}: vmark inspect disagrees with pahole {}:\n{}",
        ko.display(),
        pahole::version().unwrap_or_default(),
        bad.join("\n")
    );
    assert!(
        TYPEZOO_STRUCTS.len() >= 20 && members > 500,
        "only {members} members compared"
    );
}

/// The guest helper builds for the i386 kernel with Xen (686-pae); against one without
/// (686) it stops at once, naming `CONFIG_XEN`, instead of failing in modpost.
#[test]
fn guest_helper_builds_for_i386_xen_kernels_only() {
    let pae = fetch("bookworm", "i386", "686-pae").unwrap_or_else(|e| panic!("{e}"));
    let ko = vmark_tests::nested::build_helper(&work_dir("686-pae").join("helper"), &pae.kdir())
        .unwrap_or_else(|e| panic!("{}: {e}", pae.release));
    let data = std::fs::read(&ko).unwrap();
    assert_eq!(&data[..5], b"\x7fELF\x01", "{} is not ELF32", ko.display());

    let plain = fetch("bookworm", "i386", "686").unwrap_or_else(|e| panic!("{e}"));
    let err = vmark_tests::nested::build_helper(&work_dir("686").join("helper"), &plain.kdir())
        .expect_err("the 686 kernel has no CONFIG_XEN");
    assert!(err.contains("no CONFIG_XEN"), "{err}");
}
