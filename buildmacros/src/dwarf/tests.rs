//! Tests on real objects compiled by gcc in the test (DWARF 3, 4 and 5; gcc 12 writes
//! `DW_AT_data_bit_offset` for DWARF 5 and the old `DW_AT_bit_offset` + `DW_AT_byte_size`
//! for DWARF 3 and 4). A failed compile fails the test.

use super::*;
use object::{Object, ObjectSection, ObjectSymbol};
use std::path::PathBuf;
use std::process::Command;
use vmark_proto::{ArrayBound, BaseEncoding, Bitfield, Type};

const SOURCE: &str = r#"
struct list_head { struct list_head *next, *prev; };
enum neg { NEG_MIN = -2147483647 - 1, NEG_ONE = -1, NEG_TWO = 2 };
enum big { BIG_ONE = 1, BIG_HUGE = 0xfedcba9876543210ULL };
struct opaque_decl;
struct bits {
    unsigned a:3;
    unsigned b:5;
    int c:7;
    unsigned long long wide:40;
    unsigned short straddle:9;
    char tail;
};
struct zoo {
    struct list_head link;
    union {
        unsigned long long raw;
        struct { unsigned lo; unsigned hi:20; unsigned flags:12; };
    };
    int grid[2][3][4];
    int (*cb)(struct zoo *, const char *, ...);
    void (*plain)(void);
    void *vp;
    const volatile unsigned long *cvp;
    struct opaque_decl *od;
    enum neg n;
    enum big g;
    struct bits bits;
    _Bool flag;
    char zero[0];
    unsigned long flex[];
};
typedef struct zoo zoo_t;
struct zoo the_zoo;
zoo_t *zoo_alias;
static struct bits some_bits __attribute__((used));
int filler = 3;
int counter;
"#;

fn compile(flags: &[&str], tag: &str) -> Vec<u8> {
    let dir = std::env::temp_dir().join(format!("vmark-dwarf-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let c = dir.join("t.c");
    let o: PathBuf = dir.join("t.o");
    std::fs::write(&c, SOURCE).unwrap();
    let out = Command::new("gcc")
        .args(flags)
        .arg("-c")
        .arg(&c)
        .arg("-o")
        .arg(&o)
        .output()
        .expect("gcc must be installed (tests/install-deps.sh)");
    assert!(
        out.status.success(),
        "gcc {flags:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let data = std::fs::read(&o).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    data
}

fn member<'a>(t: &'a TypeTable, agg: TypeId, name: &str) -> &'a vmark_proto::Member {
    let Some(Type::Aggregate { members, .. }) = t.get(t.resolve(agg)) else {
        panic!("not an aggregate")
    };
    members
        .iter()
        .find(|m| m.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no member {name}"))
}

fn check(data: &[u8], what: &str) {
    let di = DebugInfo::parse(data).unwrap_or_else(|e| panic!("{what}: {e}"));

    // Bitfields: same little-endian positions whichever DWARF form carried them.
    let (t, bits) = di.aggregate("struct bits", 0).unwrap();
    let bf = |n: &str| member(&t, bits, n).bitfield;
    assert_eq!(
        bf("a"),
        Some(Bitfield {
            bit_offset: 0,
            bit_size: 3
        }),
        "{what}"
    );
    assert_eq!(
        bf("b"),
        Some(Bitfield {
            bit_offset: 3,
            bit_size: 5
        }),
        "{what}"
    );
    assert_eq!(
        bf("c"),
        Some(Bitfield {
            bit_offset: 8,
            bit_size: 7
        }),
        "{what}"
    );
    assert_eq!(
        bf("wide"),
        Some(Bitfield {
            bit_offset: 15,
            bit_size: 40
        }),
        "{what}"
    );
    // Bits 55..64 fit the 16-bit unit at bit 48, so gcc packs it right after `wide`.
    assert_eq!(
        bf("straddle"),
        Some(Bitfield {
            bit_offset: 55,
            bit_size: 9
        }),
        "{what}"
    );
    assert_eq!(member(&t, bits, "straddle").offset, 6, "{what}");
    assert_eq!(member(&t, bits, "tail").offset, 8, "{what}");
    assert_eq!(member(&t, bits, "tail").bitfield, None, "{what}");

    // The whole zoo, by typedef name, pointer depth 0.
    let (t, zoo) = di.aggregate("zoo_t", 0).unwrap();
    assert_eq!(t.type_name(zoo), "struct zoo", "{what}");
    let grid = member(&t, zoo, "grid");
    assert_eq!(grid.offset, 24, "{what}");
    assert!(
        matches!(t.get(grid.ty), Some(Type::Array { dims, .. })
            if dims == &[ArrayBound::Count(2), ArrayBound::Count(3), ArrayBound::Count(4)]),
        "{what}: {:?}",
        t.get(grid.ty)
    );
    assert_eq!(
        t.declare(member(&t, zoo, "zero").ty, "zero"),
        "char zero[0]"
    );
    assert_eq!(
        t.declare(member(&t, zoo, "flex").ty, "flex"),
        "long unsigned int flex[]"
    );
    assert_eq!(
        t.declare(member(&t, zoo, "cb").ty, "cb"),
        "int (*cb)(struct zoo *, const char *, ...)"
    );
    assert_eq!(
        t.declare(member(&t, zoo, "plain").ty, "plain"),
        "void (*plain)(void)"
    );
    assert_eq!(t.type_name(member(&t, zoo, "vp").ty), "void *");
    let cvp = t.type_name(member(&t, zoo, "cvp").ty);
    assert!(
        cvp.contains("const") && cvp.contains("volatile"),
        "{what}: {cvp}"
    );
    // Declared-only struct: opaque without size.
    let od = member(&t, zoo, "od").ty;
    let Some(Type::Pointer { target, .. }) = t.get(od) else {
        panic!()
    };
    assert!(
        matches!(t.get(*target), Some(Type::Opaque { size: None, .. })),
        "{what}"
    );
    // Anonymous union with an anonymous struct with bitfields.
    let anon = t
        .get(zoo)
        .and_then(|z| match z {
            Type::Aggregate { members, .. } => members.iter().find(|m| m.name.is_none()),
            _ => None,
        })
        .expect("anonymous member");
    assert_eq!(anon.offset, 16);
    let Some(Type::Aggregate {
        kind: AggregateKind::Union,
        members: um,
        ..
    }) = t.get(anon.ty)
    else {
        panic!("{what}: anonymous union")
    };
    let inner = um
        .iter()
        .find(|m| m.name.is_none())
        .expect("anonymous struct");
    assert_eq!(
        member(&t, inner.ty, "flags").bitfield,
        Some(Bitfield {
            bit_offset: 52,
            bit_size: 12
        })
    );
    // Enums: negative and 64-bit values, signedness.
    let Some(Type::Enum {
        signed,
        enumerators,
        ..
    }) = t.get(t.resolve(member(&t, zoo, "n").ty))
    else {
        panic!()
    };
    assert!(*signed, "{what}");
    let vals: Vec<i128> = enumerators.iter().map(|e| e.value).collect();
    assert_eq!(vals, vec![-2147483648, -1, 2], "{what}");
    let Some(Type::Enum {
        signed,
        enumerators,
        size,
        ..
    }) = t.get(t.resolve(member(&t, zoo, "g").ty))
    else {
        panic!()
    };
    assert!(!*signed && *size == 8, "{what}");
    assert_eq!(enumerators[1].value, 0xfedc_ba98_7654_3210, "{what}");
    let Some(Type::Base { encoding, .. }) = t.get(t.resolve(member(&t, zoo, "flag").ty)) else {
        panic!()
    };
    assert_eq!(*encoding, BaseEncoding::Bool);
    // Pointer depth 0: the list_head behind `next` is opaque with its size; by value it is full.
    let link = member(&t, zoo, "link").ty;
    assert!(
        matches!(t.get(link), Some(Type::Aggregate { .. })),
        "{what}"
    );
    let next = member(&t, link, "next").ty;
    let Some(Type::Pointer { target, .. }) = t.get(next) else {
        panic!()
    };
    // struct list_head is reached by value (link) first, so its one id is complete.
    assert_eq!(
        *target, link,
        "{what}: recursion through pointers keeps one id"
    );

    // Depth 1 expands what pointers reach: struct zoo behind cb's parameter stays one id.
    let (t1, zoo1) = di.aggregate("struct zoo", 1).unwrap();
    assert_eq!(
        t1.iter()
            .filter(|(_, ty)| matches!(ty, Type::Aggregate { name: Some(n), .. } if n == "zoo"))
            .count(),
        1
    );
    assert!(t1.len() >= t.len(), "{what}");
    let _ = zoo1;

    // Variables: by name, and by (section, offset) through the relocations.
    let v = di.variable_named("the_zoo").expect("the_zoo");
    assert_eq!(v.size, Some(t.size_of(zoo).unwrap()), "{what}");
    let file = object::File::parse(data).unwrap();
    for name in ["the_zoo", "some_bits", "filler", "counter"] {
        let sym = file
            .symbols()
            .find(|s| s.name() == Ok(name))
            .unwrap_or_else(|| panic!("{what}: symbol {name}"));
        let sec = sym.section_index().expect("defined");
        let found = di.variable_at(sec, sym.address()).unwrap_or_else(|| {
            panic!(
                "{what}: variable_at for {name} ({:?})",
                file.section_by_index(sec).unwrap().name()
            )
        });
        assert_eq!(found.name, name, "{what}");
        let (tt, ids) = di.type_closure(&[found.ty], 0).unwrap();
        assert_eq!(tt.size_of(ids[0]), found.size, "{what}: {name}");
    }
    assert!(di.aggregate("struct nonexistent", 0).is_err());
    assert!(di.aggregate_names().contains(&"struct zoo".to_string()));

    // Several roots in one table: each found one complete, shared with what the others
    // reach (struct bits is a member of struct zoo), a missing one None.
    let (tm, ids) = di
        .aggregates(&["struct zoo", "struct nonexistent", "struct bits"], 0)
        .unwrap();
    let (zoo_m, bits_m) = (ids[0].expect("zoo"), ids[2].expect("bits"));
    assert!(ids[1].is_none(), "{what}");
    assert_eq!(
        member(&tm, zoo_m, "bits").ty,
        bits_m,
        "{what}: one id for struct bits"
    );
    assert_eq!(tm.size_of(zoo_m), t.size_of(zoo), "{what}");
}

#[test]
fn dwarf5_data_bit_offset() {
    check(&compile(&["-g", "-gdwarf-5"], "5"), "DWARF 5");
}

#[test]
fn dwarf4_old_bit_offset() {
    check(&compile(&["-gdwarf-4"], "4"), "DWARF 4");
}

#[test]
fn dwarf3_strict() {
    check(&compile(&["-gdwarf-3", "-gstrict-dwarf"], "3"), "DWARF 3");
}

#[test]
fn dwarf5_optimised_with_data_sections() {
    // -fdata-sections puts every variable in its own section: variable_at must use the
    // relocation's section, not assume .data/.bss.
    check(
        &compile(&["-g", "-O2", "-fdata-sections"], "5o"),
        "DWARF 5 -O2 -fdata-sections",
    );
}

#[test]
fn missing_debug_info_names_the_fix() {
    let data = compile(&[], "nodebug");
    let e = DebugInfo::parse(&data).unwrap_err();
    let msg = e.with_path("t.o").to_string();
    assert!(
        msg.contains("CONFIG_DEBUG_INFO=y") && msg.contains("-g") && msg.contains("t.o"),
        "{msg}"
    );
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    assert!(DebugInfo::parse(b"not an elf").is_err());
    let mut data = compile(&["-g"], "garbage");
    // Corrupt .debug_info and .debug_abbrev in many ways; none may panic.
    let file = object::File::parse(&*data).unwrap();
    let ranges: Vec<(usize, usize)> = [".debug_info", ".debug_abbrev"]
        .iter()
        .filter_map(|n| file.section_by_name(n))
        .filter_map(|s| s.file_range())
        .map(|(o, l)| (o as usize, l as usize))
        .collect();
    drop(file);
    let mut seed = 0x1234_5678u64;
    for round in 0..200 {
        let mut d = data.clone();
        for _ in 0..(1 + round % 8) {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let (o, l) = ranges[(seed >> 33) as usize % ranges.len()];
            let at = o + (seed >> 40) as usize % l.max(1);
            d[at] = (seed >> 24) as u8;
        }
        if let Ok(di) = DebugInfo::parse(&d) {
            for n in di.aggregate_names() {
                let _ = di.aggregate(&n, 2);
            }
        }
    }
    data.truncate(data.len() / 2);
    let _ = DebugInfo::parse(&data);
}

#[test]
fn types_are_shared_across_units() {
    // Two compilation units linked with `ld -r` (as Kbuild does for multi-file modules).
    let dir = std::env::temp_dir().join(format!("vmark-dwarf-{}-cu", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("a.c"), SOURCE).unwrap();
    std::fs::write(
        dir.join("b.c"),
        "struct list_head { struct list_head *next, *prev; };\nstruct zoo;\nstruct list_head other_head;\nstruct zoo *zoo_ref;\n",
    )
    .unwrap();
    for f in ["a", "b"] {
        let st = Command::new("gcc")
            .args(["-g", "-c"])
            .arg(dir.join(format!("{f}.c")))
            .arg("-o")
            .arg(dir.join(format!("{f}.o")))
            .status()
            .expect("gcc");
        assert!(st.success());
    }
    let st = Command::new("ld")
        .arg("-r")
        .arg(dir.join("a.o"))
        .arg(dir.join("b.o"))
        .arg("-o")
        .arg(dir.join("ab.o"))
        .status()
        .expect("ld");
    assert!(st.success());
    let data = std::fs::read(dir.join("ab.o")).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let di = DebugInfo::parse(&data).unwrap();
    let a = di.variable_named("the_zoo").unwrap();
    let b = di.variable_named("other_head").unwrap();
    let c = di.variable_named("zoo_ref").unwrap();
    let (t, ids) = di.type_closure(&[a.ty, b.ty, c.ty], 1).unwrap();
    // `struct list_head` of unit b is the one of unit a.
    let link = member(&t, ids[0], "link").ty;
    assert_eq!(ids[1], link);
    // `struct zoo;` declared in unit b resolves to unit a's definition.
    let Some(Type::Pointer { target, .. }) = t.get(ids[2]) else {
        panic!()
    };
    assert_eq!(*target, ids[0]);
    // The relocations of the second unit were applied too.
    let file = object::File::parse(&*data).unwrap();
    let sym = file
        .symbols()
        .find(|s| s.name() == Ok("other_head"))
        .unwrap();
    assert_eq!(
        di.variable_at(sym.section_index().unwrap(), sym.address())
            .map(|v| v.name),
        Some("other_head".to_string())
    );
}
