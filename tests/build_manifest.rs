//! Builds `examples/marks-demo` the way a module author does (its 2-line Makefile with
//! `vmark.mk`, Kbuild against the installed Debian headers, `vmark-build embed`), then
//! checks the module's embedded manifest: section and symbol, every mark's type name,
//! size (against the compiler's own `sizeof` stored in each record), bitfields, pointer
//! closure, flags, and that embedding again changes nothing.
//!
//! Needs gcc, make and the kernel headers: without them the tests fail, naming
//! `tests/install-deps.sh`.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use vmark_build::object;
use vmark_proto::{AggregateKind, Manifest, MarkFlags, Type, TypeTable};
use vmark_tests::kmod;

/// The example built once for all tests of this file.
fn demo_ko() -> &'static PathBuf {
    static KO: OnceLock<PathBuf> = OnceLock::new();
    KO.get_or_init(|| {
        let src = kmod::workspace_root().join("examples/marks-demo");
        let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join("build_manifest/marks-demo");
        kmod::make_marked_module(&src, &work, "marks_demo", &[]).unwrap_or_else(|e| panic!("{e}"))
    })
}

fn embedded(ko: &Path) -> Manifest {
    let data = std::fs::read(ko).unwrap();
    vmark_build::extract(&data)
        .unwrap_or_else(|e| panic!("{}: {e}", ko.display()))
        .unwrap_or_else(|| panic!("{}: no embedded manifest", ko.display()))
}

fn member<'a>(
    types: &'a TypeTable,
    agg: vmark_proto::TypeId,
    name: &str,
) -> &'a vmark_proto::Member {
    match types.get(types.resolve(agg)) {
        Some(Type::Aggregate { members, .. }) => members
            .iter()
            .find(|m| m.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("no member {name}")),
        other => panic!("not an aggregate: {other:?}"),
    }
}

#[test]
fn ko_carries_allocated_manifest_section_and_symbol() {
    use object::read::{Object, ObjectSection, ObjectSymbol};
    let data = std::fs::read(demo_ko()).unwrap();
    let file = object::File::parse(&*data).unwrap();
    let sec = file
        .section_by_name(".vmark.manifest")
        .expect(".vmark.manifest section");
    let object::SectionFlags::Elf { sh_flags } = sec.flags() else {
        panic!("not ELF flags")
    };
    let alloc = u64::from(object::elf::SHF_ALLOC);
    let write = u64::from(object::elf::SHF_WRITE);
    let exec = u64::from(object::elf::SHF_EXECINSTR);
    assert_eq!(
        sh_flags & (alloc | write | exec),
        alloc,
        "read-only allocated data"
    );
    assert!(sec.align() >= 8);
    let sym = file
        .symbols()
        .find(|s| s.name() == Ok("__vmark_manifest"))
        .expect("__vmark_manifest symbol");
    assert_eq!(sym.kind(), object::SymbolKind::Data);
    assert_eq!(sym.section_index(), Some(sec.index()));
    assert_eq!(sym.address(), 0);
    assert_eq!(sym.size(), sec.size());
    let blob = sec.data().unwrap();
    assert_eq!(vmark_proto::codec::encoded_len(blob).unwrap(), blob.len());
    // The rest of the module is intact: modinfo still reads.
    assert!(file.section_by_name(".modinfo").is_some());
    assert!(file.section_by_name(".gnu.linkonce.this_module").is_some());
}

#[test]
fn every_mark_has_its_type_size_and_flags() {
    let ko = demo_ko();
    let m = embedded(ko);
    assert_eq!(m.module, "marks_demo");
    let kdir = vmark_tests::kbuild::kernel_build_dir().unwrap();
    let release = std::fs::canonicalize(&kdir)
        .ok()
        .and_then(|_| kdir.parent()?.file_name()?.to_str().map(String::from));
    if let Some(release) = release.filter(|r| r.ends_with("-amd64")) {
        assert_eq!(m.kernel_release, release);
    }
    assert!(!m.kernel_release.is_empty());
    assert_eq!(m.build_id.len(), 20, "GNU build-id of the .ko");
    assert_eq!(m.pointer_depth, 1);

    // The compiler's sizeof of each variable, as stored in its record.
    let data = std::fs::read(ko).unwrap();
    let found = vmark_build::find_marks(&data).unwrap();
    let sizeof = |var: &str| found.iter().find(|f| f.var == var).unwrap().size;

    let expect = [
        (
            "counter",
            "demo_counter",
            "u64",
            MarkFlags::SEQ | MarkFlags::TRIGGER,
        ),
        ("demo_tp", "demo_tp", "struct tcp_sock *", 0),
        ("demo_tcp", "demo_tcp", "struct tcp_sock", 0),
        ("demo_hist", "demo_hist", "u32[8]", 0),
        ("demo_state", "demo_state", "struct demo_state", 0),
    ];
    assert_eq!(m.marks.len(), expect.len(), "marks: {:?}", m.marks);
    for (name, symbol, ty, flags) in expect {
        let mark = m
            .mark(name)
            .unwrap_or_else(|| panic!("mark {name} missing"));
        assert_eq!(mark.symbol, symbol);
        assert_eq!(m.types.type_name(mark.ty), ty, "type of {name}");
        assert_eq!(mark.size, sizeof(symbol), "size of {name}");
        assert_eq!(
            m.types.size_of(mark.ty),
            Some(mark.size),
            "DWARF size of {name}"
        );
        assert_eq!(mark.flags, MarkFlags(flags), "flags of {name}");
    }
    assert_eq!(m.mark("counter").unwrap().size, 8);
    assert_eq!(m.mark("demo_hist").unwrap().size, 32);
    assert_eq!(m.mark("demo_state").unwrap().size, 40);
    assert!(m.mark("demo_tcp").unwrap().size > 2000);
}

#[test]
fn bitfields_and_anonymous_members_are_described() {
    let m = embedded(demo_ko());
    let st = m.mark("demo_state").unwrap().ty;
    let t = &m.types;
    for (name, bits) in [("mode", 3), ("enabled", 1), ("level", 12), ("delta", 7)] {
        let bf = member(t, st, name)
            .bitfield
            .unwrap_or_else(|| panic!("{name} is not a bitfield"));
        assert_eq!(bf.bit_size, bits, "{name}");
    }
    assert_eq!(member(t, st, "mode").bitfield.unwrap().bit_offset, 32);
    let Some(Type::Aggregate { members, .. }) = t.get(t.resolve(st)) else {
        panic!()
    };
    // The anonymous union holding `raw` and the anonymous struct {lo, hi}.
    let anon = members
        .iter()
        .find(|mm| mm.name.is_none())
        .expect("anonymous member");
    assert_eq!(anon.offset, 8);
    assert!(matches!(
        t.get(t.resolve(anon.ty)),
        Some(Type::Aggregate {
            kind: AggregateKind::Union,
            name: None,
            ..
        })
    ));
    let addr = member(t, st, "addr");
    assert!(matches!(
        t.get(t.resolve(addr.ty)),
        Some(Type::Aggregate {
            kind: AggregateKind::Struct,
            name: None,
            size: 4,
            ..
        })
    ));
    assert_eq!(t.type_name(member(t, st, "label").ty), "char[16]");
    assert!(matches!(
        t.get(t.resolve(member(t, st, "phase").ty)),
        Some(Type::Enum { enumerators, .. }) if enumerators.iter().any(|e| e.name == "DEMO_DRAINING" && e.value == 7)
    ));
}

#[test]
fn pointer_depth_one_covers_tcp_sock_and_its_embedded_structs() {
    let m = embedded(demo_ko());
    let t = &m.types;
    let tp = m.mark("demo_tp").unwrap().ty;
    let Some(Type::Pointer { target, .. }) = t.get(t.resolve(tp)) else {
        panic!("demo_tp is not a pointer")
    };
    let tcp = t.resolve(*target);
    assert!(
        matches!(t.get(tcp), Some(Type::Aggregate { name: Some(n), .. }) if n == "tcp_sock"),
        "struct tcp_sock behind the pointer must be complete, got {:?}",
        t.get(tcp)
    );
    // Embedded by value: tcp_sock → inet_connection_sock → inet_sock → sock → sock_common.
    let icsk = member(t, tcp, "inet_conn").ty;
    let inet = member(t, icsk, "icsk_inet").ty;
    let sk = member(t, inet, "sk").ty;
    let common = member(t, sk, "__sk_common").ty;
    assert!(matches!(
        t.get(t.resolve(common)),
        Some(Type::Aggregate { .. })
    ));
    for field in [
        "snd_cwnd",
        "srtt_us",
        "rcv_nxt",
        "bytes_received",
        "mss_cache",
    ] {
        member(t, tcp, field);
    }
    let size = vmark_proto::encode(&m).unwrap().len();
    assert!(size < 64 * 1024, "manifest is {size} bytes, aim < 64 KiB");
}

#[test]
fn embedding_again_is_idempotent_and_replaces() {
    let ko = demo_ko();
    let work = ko.parent().unwrap();
    let before = std::fs::read(ko).unwrap();

    // In place, same options: the file is left exactly as it was.
    let out = kmod::run_vmark_build(&["embed".as_ref(), ko.as_os_str()]).unwrap();
    assert!(out.contains("unchanged"), "{out}");
    assert_eq!(std::fs::read(ko).unwrap(), before);

    // Another depth replaces the manifest (one section), and back gives the same bytes.
    let copy = work.join("depth0.ko");
    let opts0 = vmark_build::BuildOptions {
        pointer_depth: 0,
        ..Default::default()
    };
    let o = vmark_build::embed_file(ko, &copy, &opts0).unwrap();
    assert_eq!(o.manifest.pointer_depth, 0);
    let data0 = std::fs::read(&copy).unwrap();
    let m0 = vmark_build::extract(&data0).unwrap().unwrap();
    assert_eq!(m0.pointer_depth, 0);
    assert!(m0.types.len() < embedded(ko).types.len());
    let sections = |d: &[u8]| {
        use object::read::{Object, ObjectSection};
        object::File::parse(d)
            .unwrap()
            .sections()
            .filter(|s| s.name() == Ok(".vmark.manifest"))
            .count()
    };
    assert_eq!(sections(&data0), 1);
    let back = work.join("back.ko");
    vmark_build::embed_file(&copy, &back, &Default::default()).unwrap();
    assert_eq!(std::fs::read(&back).unwrap(), before);
}

#[test]
fn cli_manifest_and_extract_agree() {
    let ko = demo_ko();
    let built =
        kmod::run_vmark_build(&["manifest".as_ref(), ko.as_os_str(), "--json".as_ref()]).unwrap();
    let extracted =
        kmod::run_vmark_build(&["extract".as_ref(), ko.as_os_str(), "--json".as_ref()]).unwrap();
    assert_eq!(built, extracted);
    let text = kmod::run_vmark_build(&["extract".as_ref(), ko.as_os_str()]).unwrap();
    assert!(text.contains("struct tcp_sock *"), "{text}");
    assert!(text.contains("seq,trigger"), "{text}");
}
