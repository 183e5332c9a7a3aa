//! The bodies of vmark's fuzz targets, one plain function each.
//!
//! Each function takes the fuzzer's bytes, drives one guest-facing parser or walker with
//! them and checks invariants beyond "no panic": rendered JSON parses, the fast JSON
//! renderer agrees byte for byte with the reference one, text meant for a terminal holds no
//! control characters, counted work stays under vmark's own limits, round trips are exact.
//! A violated invariant panics, which libFuzzer reports as a crash.
//!
//! The same functions run in two places: the libFuzzer targets in `tests/fuzz/fuzz_targets/`
//! (nightly, `tests/fuzz/run`) and `tests/fuzz_replay.rs` (stable, the ordinary test suite),
//! which replays every committed corpus and regression input through [`TARGETS`].
//!
//! Seeds: [`synthetic_seeds`] builds the inputs that need no fixture (xenstore values,
//! kallsyms tables, page-table chains, kernel lists, dump headers, BTF blobs, recordings);
//! the ones from real fixtures (manifests and `.ko` files of the example modules, the
//! Debian kernel's BTF) are added by `tests/fuzz/seed.sh`.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arbitrary::{Arbitrary, Unstructured};
use vmark_host::decode::{FieldPath, Plan};
use vmark_host::frames::BufferMapper;
use vmark_host::guest::{self, Store};
use vmark_host::introspect::btf::Btf;
use vmark_host::introspect::kernel::{self, Kernel};
use vmark_host::introspect::m2p::{MachineToPhys, P2mTable};
use vmark_host::introspect::paging::{self, FrameMap, PagingMode};
use vmark_host::introspect::phys::elfcore::ElfCore;
use vmark_host::introspect::phys::qemu_shm::QemuShm;
use vmark_host::introspect::phys::segments::{Segment, SegmentMap};
use vmark_host::introspect::phys::xencore::XenCore;
use vmark_host::introspect::phys::{FrameKind, PhysicalMemory, VecMemory};
use vmark_host::introspect::symbols::{Symbol, SymbolTable};
use vmark_host::introspect::vmem::Translator;
use vmark_host::introspect::{kallsyms, paging::TranslateError};
use vmark_host::publish::{PublishedManifest, PublishedMark};
use vmark_host::{follow, layout, sample};
use vmark_proto::{
    AggregateKind, ArrayBound, BaseEncoding, Bitfield, Enumerator, Manifest, Mark, MarkFlags,
    Member, Qualifier, Type, TypeId, TypeTable,
};

/// One fuzz target: its name (the directory of its corpus) and its body.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// Name, as in `cargo fuzz run NAME` and `tests/fuzz/corpus/NAME/`.
    pub name: &'static str,
    /// The body.
    pub run: fn(&[u8]),
}

/// Every target, in the order `tests/fuzz/run` runs them.
pub const TARGETS: &[Target] = &[
    Target {
        name: "manifest",
        run: fuzz_manifest,
    },
    Target {
        name: "manifest_types",
        run: fuzz_manifest_types,
    },
    Target {
        name: "xenstore",
        run: fuzz_xenstore,
    },
    Target {
        name: "btf",
        run: fuzz_btf,
    },
    Target {
        name: "kallsyms",
        run: fuzz_kallsyms,
    },
    Target {
        name: "paging",
        run: fuzz_paging,
    },
    Target {
        name: "kernel_lists",
        run: fuzz_kernel_lists,
    },
    Target {
        name: "dumps",
        run: fuzz_dumps,
    },
    Target {
        name: "recording",
        run: fuzz_recording,
    },
    Target {
        name: "object",
        run: fuzz_object,
    },
];

/// The target called `name`.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

// ---------------------------------------------------------------------------------------
// Invariants shared by the targets.

/// Most type ids of one table exercised per input (keeps an input's cost bounded so the
/// fuzzer's per-input timeout measures vmark's own budgets, not this harness).
const MAX_ROOTS: usize = 12;
/// Once one input's renderings add up to this, its remaining types are skipped (vmark's
/// own budget is per sample; this keeps the harness's cost per input near vmark's).
const MAX_RENDERED_PER_INPUT: usize = 8 << 20;
/// Renderings up to this size are also checked cut short and against the reference.
const SMALL_RENDERING: usize = 256 << 10;
/// Base address the sample bytes are placed at for `--follow`-style pointer walks.
const SAMPLE_VA: u64 = 0xffff_8880_0000_0000;

/// Panics unless `s` is valid JSON (checked without building a value tree: a bounded
/// but large rendering must not make the check itself the slow part).
fn assert_json(what: &str, s: &str) {
    if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(s) {
        panic!("{what}: invalid JSON ({e}): {}", preview(s));
    }
}

/// Panics if text meant for a terminal carries a character that could steer it (anything
/// [`vmark_proto::text::is_unsafe_char`] refuses, except the line breaks and tabs of the
/// text's own layout).
fn assert_terminal_safe(what: &str, s: &str) {
    if let Some(c) = s
        .chars()
        .find(|&c| c != '\n' && c != '\t' && vmark_proto::text::is_unsafe_char(c))
    {
        panic!("{what}: unescaped {c:?} in text output: {}", preview(s));
    }
}

fn preview(s: &str) -> String {
    s.chars()
        .take(400)
        .collect::<String>()
        .escape_debug()
        .to_string()
}

/// `len` bytes of sample data made from `seed` (repeated), so rendering sees guest-like
/// bytes of the input's own choosing; capped so a huge type costs a bounded sample.
fn sample_bytes(seed: &[u8], len: u64) -> Vec<u8> {
    let len = len.min(16 << 10) as usize;
    if seed.is_empty() {
        return vec![0xa5; len];
    }
    seed.iter().copied().cycle().take(len).collect()
}

/// Everything the host does with one type of a guest's manifest: its name, a decoding
/// plan rendered as JSON (fast and reference renderers must agree and parse) and as a
/// tree, the pahole-style layout, field paths into it and a bounded pointer walk.
/// Returns the bytes of JSON rendered, so callers can bound one input's total work.
fn exercise_type(types: &TypeTable, ty: TypeId, seed: &[u8]) -> usize {
    let name = types.type_name(ty);
    let decl = types.declare(ty, "v");
    // Spelling a type is budgeted: long or deep names are cut (and marked as cut).
    let bound = vmark_proto::limits::TYPE_NAME_MAX_LEN + 16;
    assert!(name.len() <= bound, "type name of {} bytes", name.len());
    assert!(decl.len() <= bound, "declaration of {} bytes", decl.len());
    assert_terminal_safe("escaped type name", &vmark_proto::text::escape(&name));
    assert_terminal_safe("escaped declaration", &vmark_proto::text::escape(&decl));
    let _ = types.size_of(ty);

    let mut rendered = 0;
    if let Ok(plan) = Plan::compile(types, ty) {
        let bytes = sample_bytes(seed, plan.size());
        let full = plan.to_json(&bytes);
        rendered = full.len();
        // Short samples and the reference renderer only where the rendering is small:
        // the budgets allow tens of MiB of output, which the slow reference would turn
        // into a timeout of this harness rather than of vmark.
        let cuts: &[usize] = if full.len() <= SMALL_RENDERING {
            &[bytes.len(), bytes.len() / 2, 0]
        } else {
            &[bytes.len()]
        };
        for &cut in cuts {
            let part = &bytes[..cut];
            let json = if cut == bytes.len() {
                full.clone()
            } else {
                plan.to_json(part)
            };
            assert_json("decoded sample", &json);
            if full.len() <= SMALL_RENDERING {
                let reference = plan.to_json_reference(part);
                assert!(
                    json == reference,
                    "fast and reference JSON differ for {}:\n fast: {}\n  ref: {}",
                    preview(&name),
                    preview(&json),
                    preview(&reference)
                );
            }
            let pretty = plan.to_pretty(part);
            assert_terminal_safe("pretty sample", &pretty);
        }
        if let Ok(slots) = follow::pointer_slots(types, ty, "v") {
            assert!(slots.len() <= follow::MAX_POINTERS_PER_VALUE);
        }
        let read = |va: u64, buf: &mut [u8]| -> Result<(), TranslateError> {
            let at = va.wrapping_sub(SAMPLE_VA) as usize;
            match bytes.get(at..at.saturating_add(buf.len())) {
                Some(src) if at < bytes.len() => {
                    buf.copy_from_slice(src);
                    Ok(())
                }
                _ => Err(TranslateError::BadAddress(va)),
            }
        };
        let (pointees, _cut) = follow::follow(types, ty, "v", SAMPLE_VA, &bytes, 3, &read);
        assert!(pointees.len() <= follow::MAX_POINTEES);
        let read_total: usize = pointees
            .iter()
            .map(|p| p.bytes.as_ref().map_or(0, |b| b.len()))
            .sum();
        assert!(
            read_total as u64 <= follow::MAX_BYTES,
            "follow read {read_total} bytes"
        );
    }

    if let Ok(flat) = layout::flatten(types, ty) {
        let text = flat.render(types);
        assert_terminal_safe("layout", &text);
        let json = flat.to_json().to_string();
        assert_json("layout JSON", &json);
        for m in flat.members.iter().take(8) {
            if let Ok(field) = FieldPath::resolve(types, ty, &m.path) {
                let _ = field.read(seed);
            }
            let _ = FieldPath::member(types, ty, &m.path);
        }
    }
    rendered
}

/// Exercises the marks of a decoded manifest, then the first other types of its table.
fn exercise_manifest(m: &Manifest, seed: &[u8]) {
    let mut roots: Vec<TypeId> = m.marks.iter().map(|k| k.ty).take(MAX_ROOTS / 2).collect();
    let extra = MAX_ROOTS - roots.len();
    roots.extend((0..m.types.len().min(extra)).map(|i| TypeId(i as u32)));
    roots.sort();
    roots.dedup();
    let mut rendered = 0;
    for ty in roots {
        if rendered > MAX_RENDERED_PER_INPUT {
            break;
        }
        rendered += exercise_type(&m.types, ty, seed);
    }
    // What `vmark list` prints for the module.
    let mut line = format!("{} {} ", m.module, m.build_id_hex());
    for k in &m.marks {
        line.push_str(&format!("{} {} {}", k.name, k.flags.describe(), k.size));
    }
    assert_terminal_safe("escaped list line", &vmark_proto::text::escape(&line));
}

// ---------------------------------------------------------------------------------------
// manifest: the wire format and everything after it.

/// Manifest decode → naming → plan → JSON/pretty rendering → layout → field paths →
/// pointer walk. The input is a manifest blob; it is decoded as it is, then again with
/// its header's size and checksum fixed to match the payload, so mutations reach the
/// postcard decoder and the type checks behind the CRC.
pub fn fuzz_manifest(data: &[u8]) {
    let header = vmark_proto::abi::MANIFEST_HEADER_SIZE;
    if let Ok(m) = vmark_proto::decode(data) {
        exercise_manifest(&m, data);
    }
    if data.len() < header {
        return;
    }
    let mut fixed = data.to_vec();
    let payload_len = (data.len() - header) as u32;
    fixed[..8].copy_from_slice(&vmark_proto::abi::VMARK_MANIFEST_MAGIC.to_le_bytes());
    fixed[8..10].copy_from_slice(&vmark_proto::FORMAT_VERSION.to_le_bytes());
    fixed[10..12].copy_from_slice(&(header as u16).to_le_bytes());
    fixed[12..16].copy_from_slice(&payload_len.to_le_bytes());
    let crc = crc32(&fixed[header..]);
    fixed[16..20].copy_from_slice(&crc.to_le_bytes());
    match vmark_proto::decode(&fixed) {
        Ok(m) => {
            // What decodes re-encodes to the same manifest.
            let again = vmark_proto::encode(&m).expect("a decoded manifest encodes");
            let back = vmark_proto::decode(&again).expect("a re-encoded manifest decodes");
            assert_eq!(back, m, "manifest round trip");
            exercise_manifest(&m, &data[header..]);
        }
        Err(e) => {
            assert_terminal_safe("manifest error", &vmark_proto::text::escape(&e.to_string()))
        }
    }
}

/// CRC-32 (IEEE), as the manifest header uses; computed here so the harness needs no
/// extra dependency.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xedb8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

// ---------------------------------------------------------------------------------------
// manifest_types: structure-aware, type tables built directly.

/// Names the structure-aware builder picks from: ordinary ones, empty, and hostile ones.
const NAMES: &[&str] = &[
    "int",
    "char",
    "unsigned char",
    "long",
    "_Bool",
    "double",
    "s",
    "list_head",
    "x",
    "",
    "next",
    "a b",
    "\u{1b}[2J\u{1b}]0;owned\u{7}",
    "new\nline",
    "\u{202e}rtl",
    "\\",
    "\"q\"",
    "tab\there",
    "\u{0}nul",
    "\u{9b}31m",
    "ünï",
    "arr[2]",
    "p->q",
    "a.b",
];

fn pick_name(i: u8) -> String {
    NAMES[usize::from(i) % NAMES.len()].to_string()
}

/// An arbitrary type: ids are indices taken modulo the table size (so most are valid,
/// and the rest are still possible through `raw_id`).
#[derive(Debug, Arbitrary)]
enum ArbType {
    Void,
    Base {
        name: u8,
        size: u8,
        encoding: u8,
    },
    Aggregate {
        union: bool,
        name: Option<u8>,
        size: u16,
        members: Vec<ArbMember>,
    },
    Opaque {
        union: bool,
        name: Option<u8>,
        size: Option<u16>,
    },
    Array {
        element: u16,
        dims: Vec<Option<u16>>,
    },
    Pointer {
        target: u16,
    },
    Function {
        ret: u16,
        params: Vec<u16>,
        variadic: bool,
    },
    Enum {
        name: Option<u8>,
        size: u8,
        signed: bool,
        enumerators: Vec<(u8, i64)>,
    },
    Typedef {
        name: u8,
        target: u16,
    },
    Qualified {
        qualifier: u8,
        target: u16,
    },
}

#[derive(Debug, Arbitrary)]
struct ArbMember {
    name: Option<u8>,
    ty: u16,
    offset: u16,
    bitfield: Option<(u16, u8)>,
}

#[derive(Debug, Arbitrary)]
struct ArbTable {
    types: Vec<ArbType>,
    /// Ids beyond the table (dangling references) are produced when this is set.
    raw_id: bool,
    marks: Vec<(u8, u16)>,
    sample: Vec<u8>,
}

fn build_table(arb: &ArbTable) -> TypeTable {
    let n = arb.types.len().max(1) as u32;
    let id = |i: u16| {
        if arb.raw_id {
            TypeId(u32::from(i))
        } else {
            TypeId(u32::from(i) % n)
        }
    };
    let kind = |union: bool| {
        if union {
            AggregateKind::Union
        } else {
            AggregateKind::Struct
        }
    };
    let mut t = TypeTable::new();
    for a in &arb.types {
        t.push(match a {
            ArbType::Void => Type::Void,
            ArbType::Base {
                name,
                size,
                encoding,
            } => Type::Base {
                name: pick_name(*name),
                size: u64::from(*size % 17),
                encoding: [
                    BaseEncoding::Signed,
                    BaseEncoding::Unsigned,
                    BaseEncoding::SignedChar,
                    BaseEncoding::UnsignedChar,
                    BaseEncoding::Bool,
                    BaseEncoding::Float,
                ][usize::from(*encoding) % 6],
            },
            ArbType::Aggregate {
                union,
                name,
                size,
                members,
            } => Type::Aggregate {
                kind: kind(*union),
                name: name.map(pick_name),
                size: u64::from(*size),
                members: members
                    .iter()
                    .map(|m| Member {
                        name: m.name.map(pick_name),
                        ty: id(m.ty),
                        offset: u64::from(m.offset),
                        bitfield: m.bitfield.map(|(bit_offset, bit_size)| Bitfield {
                            bit_offset: u64::from(bit_offset),
                            bit_size,
                        }),
                    })
                    .collect(),
            },
            ArbType::Opaque { union, name, size } => Type::Opaque {
                kind: kind(*union),
                name: name.map(pick_name),
                size: size.map(u64::from),
            },
            ArbType::Array { element, dims } => Type::Array {
                element: id(*element),
                dims: dims
                    .iter()
                    .map(|d| d.map_or(ArrayBound::Flexible, |c| ArrayBound::Count(u64::from(c))))
                    .collect(),
            },
            ArbType::Pointer { target } => Type::Pointer {
                target: id(*target),
                size: 8,
            },
            ArbType::Function {
                ret,
                params,
                variadic,
            } => Type::Function {
                ret: id(*ret),
                params: params.iter().map(|p| id(*p)).collect(),
                variadic: *variadic,
            },
            ArbType::Enum {
                name,
                size,
                signed,
                enumerators,
            } => Type::Enum {
                name: name.map(pick_name),
                size: u64::from(*size % 9),
                signed: *signed,
                enumerators: enumerators
                    .iter()
                    .map(|(n, v)| Enumerator {
                        name: pick_name(*n),
                        value: i128::from(*v),
                    })
                    .collect(),
            },
            ArbType::Typedef { name, target } => Type::Typedef {
                name: pick_name(*name),
                target: id(*target),
            },
            ArbType::Qualified { qualifier, target } => Type::Qualified {
                qualifier: [
                    Qualifier::Const,
                    Qualifier::Volatile,
                    Qualifier::Restrict,
                    Qualifier::Atomic,
                ][usize::from(*qualifier) % 4],
                target: id(*target),
            },
        });
    }
    t
}

/// Structure-aware: `arbitrary` builds a type table directly (cycles through pointers and
/// functions, anonymous members, bitfields, flexible and huge arrays, hostile names), then
/// validation; a table that validates goes through naming, plans, rendering and layouts,
/// and, wrapped in a manifest, through an exact encode/decode round trip.
pub fn fuzz_manifest_types(data: &[u8]) {
    let Ok(arb) = ArbTable::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let types = build_table(&arb);
    if types.validate().is_err() {
        return;
    }
    let marks: Vec<Mark> = arb
        .marks
        .iter()
        .take(8)
        .filter_map(|&(name, ty)| {
            let ty = TypeId(u32::from(ty) % types.len().max(1) as u32);
            types.get(ty)?;
            Some(Mark {
                name: format!("m{name}"),
                symbol: format!("m{name}"),
                ty,
                size: types.size_of(ty).unwrap_or(0),
                flags: MarkFlags(MarkFlags::SEQ),
            })
        })
        .collect();
    let manifest = Manifest {
        module: "fuzz".into(),
        kernel_release: "6.1.0-fuzz".into(),
        build_id: vec![1, 2, 3, 4],
        pointer_depth: 1,
        marks,
        types,
    };
    let blob = vmark_proto::encode(&manifest).expect("a validated manifest encodes");
    let back = vmark_proto::decode(&blob).expect("a validated manifest decodes");
    assert_eq!(back, manifest, "manifest round trip");
    exercise_manifest(&manifest, &arb.sample);
}

// ---------------------------------------------------------------------------------------
// xenstore: what the guest helper publishes, parsed and opened.

/// A xenstore in memory.
#[derive(Debug, Default)]
struct MapStore(BTreeMap<String, String>);

impl Store for MapStore {
    fn read(&self, path: &str) -> std::io::Result<Option<String>> {
        Ok(self.0.get(path).cloned())
    }
    fn directory(&self, path: &str) -> std::io::Result<Vec<String>> {
        let prefix = format!("{path}/");
        let mut kids: Vec<String> = self
            .0
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| {
                k[prefix.len()..]
                    .split('/')
                    .next()
                    .unwrap_or("")
                    .to_string()
            })
            .collect();
        kids.dedup();
        Ok(kids)
    }
}

/// The domain id the xenstore target publishes under.
const FUZZ_DOMID: u32 = 5;

/// The xenstore value parsers and the listing/opening on top of them. Input: text lines
/// `key=value` (keys relative to the domain's vmark root), then a line `--memory--`,
/// then the guest memory the published frames index (frame `n` = bytes `n*4096..`).
/// Every value is also fed to each parser directly.
pub fn fuzz_xenstore(data: &[u8]) {
    match open_xenstore_input(data) {
        Ok(marks) => {
            let mut origin = serde_json::Map::new();
            origin.insert("domain".into(), "fuzz".into());
            let rows = guest::list_rows(&origin, &marks);
            let mut out = Vec::new();
            guest::write_list(rows.clone(), true, "none", &mut out).expect("write to a Vec");
            assert_json("list --json", &String::from_utf8_lossy(&out));
            out.clear();
            guest::write_list(rows, false, "none", &mut out).expect("write to a Vec");
            assert_terminal_safe("vmark list", &String::from_utf8_lossy(&out));
            for m in marks.marks.values().take(8) {
                let mut sample = Vec::new();
                let _info = m.mapped.read(&mut sample, 4);
                assert_json("read --json", &m.plan.to_json(&sample));
                assert_terminal_safe("read", &m.plan.to_pretty(&sample));
            }
        }
        Err(e) => assert_terminal_safe("list error", &vmark_proto::text::escape(&e.to_string())),
    }
}

/// Parses a xenstore-target input (see [`fuzz_xenstore`]) into a store and guest memory,
/// runs every value through the parsers and the listing, and opens every published mark.
pub fn open_xenstore_input(data: &[u8]) -> Result<guest::GuestMarks, guest::GuestError> {
    let split = find(data, b"\n--memory--\n");
    let (text, memory) = match split {
        Some(i) => (&data[..i], &data[i + 12..]),
        None => (data, &[][..]),
    };
    let text = String::from_utf8_lossy(text);
    let root = guest::root(FUZZ_DOMID);
    let mut store = MapStore::default();
    for line in text.lines().take(256) {
        let (k, v) = line.split_once('=').unwrap_or((line, ""));
        let _ = PublishedMark::parse(v);
        let _ = PublishedManifest::parse(v);
        let _ = vmark_host::publish::parse_number("fuzz", v);
        let _ = vmark_host::publish::parse_name(v);
        store.0.insert(format!("{root}/{k}"), v.to_string());
    }
    let _ = guest::helper_info(&store, FUZZ_DOMID);
    if let Ok(modules) = guest::list(&store, FUZZ_DOMID) {
        for m in &modules {
            assert!(m.marks.len() <= vmark_host::publish::MAX_MARKS_PER_MODULE);
        }
    }
    let mapper = BufferMapper::new(memory.iter().copied().take(1 << 20).collect());
    guest::open_all(&store, &mapper, FUZZ_DOMID)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

// ---------------------------------------------------------------------------------------
// btf

/// Member paths the kernel walkers look up, tried on every parsed BTF.
const BTF_LOOKUPS: &[(&str, &str)] = &[
    ("task_struct", "tasks"),
    ("task_struct", "comm"),
    ("task_struct", "se.vruntime"),
    ("mm_struct", "pgd"),
    ("module", "list"),
    ("module", "mem.base"),
    ("module", "core_layout.size"),
    ("mod_kallsyms", "strtab"),
    ("list_head", "next"),
];

/// BTF parsing, then name lookup and member paths, validation, and the layout and naming
/// of the first types.
pub fn fuzz_btf(data: &[u8]) {
    let Ok(btf) = Btf::parse(data) else {
        return;
    };
    for (ty, path) in BTF_LOOKUPS {
        if let Some(id) = btf.find(ty) {
            if let Some((off, member)) = btf.member_offset(id, path) {
                assert!(
                    btf.types().get(member).is_some(),
                    "member type in the table"
                );
                let _ = off;
            }
        }
    }
    let types = btf.types();
    // The host validates every table before walking it with the decoder.
    if types.validate().is_ok() {
        for i in 0..types.len().min(MAX_ROOTS) {
            let _ = exercise_type(types, TypeId(i as u32), data);
        }
    } else {
        for i in 0..types.len().min(MAX_ROOTS) {
            let _ = types.type_name(TypeId(i as u32));
        }
    }
}

// ---------------------------------------------------------------------------------------
// kallsyms

/// The kallsyms finder and decoder over fuzzed physical memory (the input, from address
/// 0), then the symbol lookups the kernel locator does.
pub fn fuzz_kallsyms(data: &[u8]) {
    let mem = VecMemory::new(data.to_vec());
    if let Ok(k) = kallsyms::find(&mem) {
        assert!(k.symbols.len() <= vmark_host::introspect::symbols::MAX_SYMBOLS);
        for name in ["_text", "linux_banner", "init_top_pgt", "init_task"] {
            if let Some(a) = k.symbols.lookup(name) {
                let (s, off) = k
                    .symbols
                    .nearest(a)
                    .expect("a found address has a nearest symbol");
                assert!(off == a - s.addr);
            }
        }
        let _ = k.symbols.nearest(0xffff_ffff_8100_1234);
        let _ = kallsyms::scan(&mem, b"Linux version ", 64);
    }
}

// ---------------------------------------------------------------------------------------
// paging

/// A machine-to-physical map for the paging target's Xen PV walks.
struct FuzzM2p(P2mTable);

impl MachineToPhys for FuzzM2p {
    fn m2p(&self, mfn: u64) -> Option<u64> {
        self.0.m2p(mfn)
    }
}

/// The page-table walker in every paging mode, identity and Xen PV (machine frames through
/// an M2P), uncached and through the translation cache (which must agree), and virtual
/// reads across pages. Input: `cr3` (8 bytes), `cr4` (8), `efer` (8), a count of M2P
/// pairs (1) and the pairs (16 each), 8 virtual addresses (8 each), then physical memory.
pub fn fuzz_paging(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let (Ok(cr3), Ok(cr4), Ok(efer), Ok(npairs)) = (
        u.arbitrary::<u64>(),
        u.arbitrary::<u64>(),
        u.arbitrary::<u64>(),
        u.arbitrary::<u8>(),
    ) else {
        return;
    };
    let mut pairs = Vec::new();
    for _ in 0..npairs % 32 {
        let (Ok(pfn), Ok(mfn)) = (u.arbitrary::<u64>(), u.arbitrary::<u64>()) else {
            return;
        };
        pairs.push((pfn, mfn));
    }
    let mut vaddrs = Vec::new();
    for _ in 0..8 {
        let Ok(v) = u.arbitrary::<u64>() else { return };
        vaddrs.push(v);
    }
    let memory: Vec<u8> = u.take_rest().iter().copied().take(4 << 20).collect();
    let mem: Arc<dyn PhysicalMemory> = Arc::new(VecMemory::new(memory));
    let m2p = FuzzM2p(P2mTable::from_pairs(pairs.iter().copied()));
    let m2p_arc: Arc<dyn MachineToPhys> = Arc::new(FuzzM2p(P2mTable::from_pairs(pairs)));
    let registers = PagingMode::from_registers(cr4, efer, cr3 & 1 != 0);
    for mode in [
        registers,
        PagingMode::Legacy32,
        PagingMode::Pae,
        PagingMode::Long4,
        PagingMode::Long5,
    ] {
        let plain = Arc::new(Translator::new(mem.clone(), mode).with_tlb_entries(64));
        let pv = Arc::new(
            Translator::new(mem.clone(), mode)
                .with_m2p(m2p_arc.clone())
                .with_tlb_entries(64),
        );
        for &va in &vaddrs {
            for pv_walk in [false, true] {
                let frames = if pv_walk {
                    FrameMap::xen_pv(&m2p)
                } else {
                    FrameMap::identity()
                };
                let walked = paging::walk(mem.as_ref(), mode, frames, cr3, va);
                let t = if pv_walk { &pv } else { &plain };
                let uncached = t.translate_uncached(cr3, va);
                let cached = t.translate(cr3, va);
                let again = t.translate(cr3, va);
                assert_eq!(
                    uncached.as_ref().map(|t| t.paddr).ok(),
                    cached.as_ref().ok().copied(),
                    "cached and uncached translation of {va:#x} differ ({mode:?}, pv {pv_walk})"
                );
                assert_eq!(cached, again, "translation cache is stable");
                if let (Ok(w), Ok(u)) = (&walked, &uncached) {
                    assert_eq!(w.paddr, u.paddr);
                }
                // Identity walks take frames from entries (52 bits); PV walks take them
                // from the M2P, which may name any frame.
                if let (Ok(w), false) = (walked, pv_walk) {
                    assert!(
                        w.paddr < 1 << 52,
                        "physical address {:#x} beyond 52 bits",
                        w.paddr
                    );
                }
                let mut buf = [0u8; 64];
                let _ = t.read(cr3, va.wrapping_sub(32), &mut buf);
                if let Ok(s) = t.read_cstring(cr3, va, 64) {
                    assert!(s.len() <= 64 * 3, "a 64-byte C string of {} bytes", s.len());
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// kernel_lists: the task, module and module-symbol walkers over fuzzed memory.

/// Virtual base of the kernel image in the synthetic kernel (the x86-64 default).
pub const KERNEL_VA: u64 = 0xffff_ffff_8000_0000;
/// Physical (and image-relative) offset of the fuzzed data region.
pub const KERNEL_DATA: u64 = 0x4000;
/// Offset of the `modules` list head inside the data region.
pub const MODULES_HEAD: u64 = 0x40;
/// Most fuzzed bytes placed in the data region.
const KERNEL_DATA_MAX: usize = 1 << 20;

/// The small BTF the synthetic kernel's walkers read offsets from.
pub fn kernel_btf() -> Vec<u8> {
    let mut b = BtfWriter::new();
    let int = b.int("int", 4, true); // 1
    let uint = b.int("unsigned int", 4, false); // 2
    let ulong = b.int("long unsigned int", 8, false); // 3
    let ch = b.int("char", 1, true); // 4
    let voidp = b.ptr(0); // 5
    let lh = b.reserve(); // 6: struct list_head
    let lhp = b.ptr(lh); // 7
    b.structure(lh, "list_head", 16, &[("next", lhp, 0), ("prev", lhp, 64)]);
    let comm = b.array(ch, uint, 16); // 8
    let name = b.array(ch, uint, 56); // 9
    let mm = b.reserve(); // 10
    b.structure(mm, "mm_struct", 8, &[("pgd", voidp, 0)]);
    let mmp = b.ptr(mm); // 11
    let task = b.reserve(); // 12
    let taskp = b.ptr(task); // 13
    b.structure(
        task,
        "task_struct",
        56,
        &[
            ("tasks", lh, 0),
            ("pid", int, 128),
            ("tgid", int, 160),
            ("comm", comm, 192),
            ("mm", mmp, 320),
            ("real_parent", taskp, 384),
        ],
    );
    let layout = b.reserve();
    b.structure(
        layout,
        "module_layout",
        16,
        &[("base", voidp, 0), ("size", uint, 64)],
    );
    let mk = b.reserve();
    b.structure(
        mk,
        "mod_kallsyms",
        24,
        &[
            ("symtab", voidp, 0),
            ("num_symtab", uint, 64),
            ("strtab", voidp, 128),
        ],
    );
    let mkp = b.ptr(mk);
    let module = b.reserve();
    b.structure(
        module,
        "module",
        96,
        &[
            ("list", lh, 0),
            ("name", name, 128),
            ("core_layout", layout, 576),
            ("kallsyms", mkp, 704),
        ],
    );
    let _ = ulong;
    b.finish()
}

/// Physical memory of the synthetic kernel: page tables mapping the image's first 2 MiB
/// (one large page) at [`KERNEL_VA`] onto physical 0, a banner, then `data` at
/// [`KERNEL_DATA`].
pub fn kernel_memory(data: &[u8]) -> VecMemory {
    const P_RW: u64 = 3;
    let mut mem = VecMemory::new(vec![0; KERNEL_DATA as usize]);
    mem.put_u64(511 * 8, 0x1000 | P_RW); // PML4[511] -> PDPT
    mem.put_u64(0x1000 + 510 * 8, 0x2000 | P_RW); // PDPT[510] -> PD
    mem.put_u64(0x2000, P_RW | 0x80); // PD[0]: 2 MiB page at physical 0
    mem.put(0x3000, b"Linux version 6.1.0-fuzz (vmark) #1 SMP\n\0");
    mem.put(KERNEL_DATA, &data[..data.len().min(KERNEL_DATA_MAX)]);
    mem
}

/// The synthetic kernel's symbols.
pub fn kernel_symbols() -> SymbolTable {
    let sym = |name: &str, off: u64, kind: char| Symbol {
        name: name.into(),
        addr: KERNEL_VA + off,
        kind,
    };
    SymbolTable::new(vec![
        sym("init_top_pgt", 0, 'D'),
        sym("_text", 0, 'T'),
        sym("linux_banner", 0x3000, 'R'),
        sym("init_task", KERNEL_DATA, 'D'),
        sym("modules", KERNEL_DATA + MODULES_HEAD, 'd'),
    ])
    .expect("a valid symbol table")
}

fn kernel_btf_parsed() -> Arc<Btf> {
    static BTF: std::sync::OnceLock<Arc<Btf>> = std::sync::OnceLock::new();
    BTF.get_or_init(|| Arc::new(Btf::parse(&kernel_btf()).expect("the harness BTF parses")))
        .clone()
}

/// The task, module and module-symbol list walkers (`ps`, `modules`, the helper-registry
/// search) over a synthetic kernel whose data region is the input: every pointer, count
/// and string in the lists is the fuzzer's.
pub fn fuzz_kernel_lists(data: &[u8]) {
    let mem: Arc<dyn PhysicalMemory> = Arc::new(kernel_memory(data));
    let mut k = Kernel::with_symbols(mem, kernel_symbols(), None)
        .expect("the synthetic kernel's page tables map its banner");
    k.set_btf(kernel_btf_parsed());
    if let Ok(procs) = k.processes() {
        assert!(procs.len() <= kernel::MAX_TASKS + 1);
        for p in &procs {
            assert!(p.name.len() <= 16 * 4, "comm of {} bytes", p.name.len());
            assert_terminal_safe("escaped comm", &vmark_proto::text::escape(&p.name));
        }
    }
    if let Ok(mods) = k.modules() {
        assert!(mods.len() <= kernel::MAX_MODULES);
        for m in mods.iter().take(4) {
            if let Ok(syms) = k.module_symbols(m, &|_| true) {
                assert!(syms.len() as u64 <= kernel::MAX_MODULE_SYMBOLS);
            }
        }
    }
    let _ = k.find_helper_registry();
}

// ---------------------------------------------------------------------------------------
// dumps: ELF cores, `xl dump-core`, QEMU shared RAM, segment maps.

static TEMP_SERIAL: AtomicU64 = AtomicU64::new(0);

/// A file holding `data`, removed when dropped (the dump readers take paths).
struct TempFile(PathBuf);

impl TempFile {
    fn new(data: &[u8]) -> TempFile {
        let dir = if std::path::Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let n = TEMP_SERIAL.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("vmark-fuzz-{}-{n}", std::process::id()));
        std::fs::write(&path, data).expect("write the fuzz input to a temporary file");
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Reads a few things from an opened dump the way the introspection commands do.
fn exercise_memory(mem: &dyn PhysicalMemory) {
    let regions = mem.regions();
    let max = mem.max_address();
    for r in regions.iter().take(16) {
        assert!(r.end() <= max.max(r.end()), "region beyond max_address");
        let mut buf = [0u8; 64];
        let _ = mem.read(r.start, &mut buf);
        let _ = mem.read(r.end().saturating_sub(32), &mut buf);
        let _ = mem.read(r.end().saturating_sub(1), &mut buf[..1]);
    }
    let mut buf = [0u8; 16];
    let _ = mem.read(u64::MAX - 4, &mut buf);
    let _ = mem.vcpus();
    if mem.frame_kind() == FrameKind::XenPv {
        if let Some(m2p) = mem.machine_to_phys() {
            let _ = m2p.m2p(0);
            let _ = m2p.m2p(u64::MAX);
        }
    }
    if let Some(v) = mem.vcpus().first() {
        let mode = PagingMode::from_registers(v.cr4, v.efer, true);
        let _ = paging::walk(mem, mode, FrameMap::identity(), v.cr3, v.rip);
        if let Some(m2p) = mem.machine_to_phys() {
            let _ = paging::walk(mem, mode, FrameMap::xen_pv(m2p.as_ref()), v.cr3, v.rip);
        }
    }
}

/// The dump readers: the input is opened as a QEMU ELF core, as an `xl dump-core` file
/// and as a QEMU shared-RAM file, and its first bytes also describe a segment map.
pub fn fuzz_dumps(data: &[u8]) {
    let file = TempFile::new(data);
    if let Ok(core) = ElfCore::open(&file.0) {
        let segs = core.segments();
        for w in segs.windows(2) {
            assert!(
                w[0].paddr + w[0].len <= w[1].paddr,
                "segments sorted, disjoint"
            );
        }
        exercise_memory(&core);
    }
    if let Ok(core) = XenCore::open(&file.0) {
        exercise_memory(&core);
    }
    if let Ok(shm) =
        QemuShm::with_split(&file.0, u64::from(data.first().copied().unwrap_or(0)) << 12)
    {
        exercise_memory(&shm);
    }
    let mut u = Unstructured::new(data);
    let mut segments = Vec::new();
    for _ in 0..8 {
        let (Ok(paddr), Ok(len), Ok(file_offset)) = (
            u.arbitrary::<u64>(),
            u.arbitrary::<u64>(),
            u.arbitrary::<u64>(),
        ) else {
            break;
        };
        segments.push(Segment {
            paddr,
            len,
            file_offset,
        });
    }
    if let Ok(map) = SegmentMap::new(segments, data.len() as u64) {
        for r in map.regions() {
            if let Some((off, _)) = map.locate(r.start) {
                assert!(
                    off <= data.len() as u64,
                    "located file offset beyond the file"
                );
            }
        }
        let _ = map.max_address();
        if let Ok(f) = std::fs::File::open(&file.0) {
            // Mapped, as dumps are read; segments past the file are refused above.
            let bytes = vmark_host::introspect::phys::mapped::FileBytes::new(f, data.len() as u64);
            let mut buf = [0u8; 32];
            for r in map.regions().iter().take(4) {
                let _ = map.read(&bytes, r.start, &mut buf);
                let _ = map.with_bytes(&bytes, r.start, 64, &mut |b| {
                    assert_eq!(b.len(), 64);
                });
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// recording

/// The recording reader (`vmark plot`'s input): JSON lines of samples and events, torn
/// lines, bad UTF-8; then the series of a few field paths.
pub fn fuzz_recording(data: &[u8]) {
    let file = TempFile::new(data);
    let Ok((samples, bad)) = sample::read_recording(&file.0) else {
        return;
    };
    assert!(
        samples.len() + bad <= data.len() + 1,
        "more lines than bytes"
    );
    for s in samples.iter().take(64) {
        for path in ["x", "a.b", "arr[1]", "a[0][1].c", "[2]", "."] {
            let _ = sample::json_field(&s.value, path);
        }
    }
    let fields: Vec<String> = ["x", "snd_cwnd", "a.b", "arr[0]"]
        .map(String::from)
        .to_vec();
    if let Ok(series) = vmark_host::plot::series(&file.0, &fields, None) {
        for s in &series {
            for (t, _) in s {
                assert!(*t >= 0.0, "time before the first sample");
            }
        }
    }
    let _ = vmark_host::plot::series(&file.0, &fields[..1], Some("m"));
}

// ---------------------------------------------------------------------------------------
// object: vmark-build's ELF, relocation and DWARF readers.

/// `vmark-build` on a fuzzed relocatable object: marks and their relocations, DWARF
/// types and their closure, the manifest, and reading an embedded manifest back. A built
/// manifest must encode, decode to itself and embed into the object.
pub fn fuzz_object(data: &[u8]) {
    let _ = vmark_build::find_marks(data);
    let _ = vmark_build::extract_blob(data);
    let _ = vmark_build::extract(data);
    let opts = vmark_build::BuildOptions {
        fallback_module_name: Some("fuzz".into()),
        ..Default::default()
    };
    if let Ok(m) = vmark_build::build_manifest(data, &opts) {
        m.types
            .validate()
            .expect("vmark-build emits only valid type tables");
        let blob = vmark_proto::encode(&m).expect("a built manifest encodes");
        let back = vmark_proto::decode(&blob).expect("a built manifest decodes");
        assert_eq!(back, m, "manifest round trip");
        if let Ok(out) = vmark_build::embed(data, &blob) {
            let read = vmark_build::extract(&out).expect("an embedded manifest reads back");
            assert_eq!(
                read.as_ref(),
                Some(&m),
                "embedded manifest reads back unchanged"
            );
        }
        for mark in m.marks.iter().take(4) {
            let _ = m.types.type_name(mark.ty);
        }
    }
    if let Ok(info) = vmark_build::dwarf::DebugInfo::parse(data) {
        for name in info.aggregate_names().into_iter().take(8) {
            if let Ok((types, ty)) = info.aggregate(&name, 1) {
                let _ = types.type_name(ty);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Seed builders.

/// Writes small little-endian BTF blobs.
#[derive(Debug, Default)]
pub struct BtfWriter {
    types: Vec<Vec<u8>>,
    strings: Vec<u8>,
    names: HashMap<String, u32>,
}

const BTF_INT: u32 = 1;
const BTF_PTR: u32 = 2;
const BTF_ARRAY: u32 = 3;
const BTF_STRUCT: u32 = 4;

impl BtfWriter {
    /// An empty writer (string 0 is the empty name).
    pub fn new() -> Self {
        BtfWriter {
            strings: vec![0],
            ..Default::default()
        }
    }

    fn name(&mut self, s: &str) -> u32 {
        if s.is_empty() {
            return 0;
        }
        if let Some(&o) = self.names.get(s) {
            return o;
        }
        let o = self.strings.len() as u32;
        self.strings.extend_from_slice(s.as_bytes());
        self.strings.push(0);
        self.names.insert(s.to_string(), o);
        o
    }

    fn push(&mut self, name: &str, kind: u32, vlen: u32, size_or_type: u32, extra: &[u8]) -> u32 {
        let mut rec = Vec::new();
        let n = self.name(name);
        rec.extend_from_slice(&n.to_le_bytes());
        rec.extend_from_slice(&((kind << 24) | vlen).to_le_bytes());
        rec.extend_from_slice(&size_or_type.to_le_bytes());
        rec.extend_from_slice(extra);
        self.types.push(rec);
        self.types.len() as u32
    }

    /// A placeholder filled later by [`BtfWriter::structure`] (for recursive types).
    pub fn reserve(&mut self) -> u32 {
        self.types.push(Vec::new());
        self.types.len() as u32
    }

    /// An integer type.
    pub fn int(&mut self, name: &str, size: u32, signed: bool) -> u32 {
        let enc: u32 = if signed { 1 } else { 0 };
        let extra = ((enc << 24) | (size * 8)).to_le_bytes();
        self.push(name, BTF_INT, 0, size, &extra)
    }

    /// A pointer to `target` (0: void).
    pub fn ptr(&mut self, target: u32) -> u32 {
        self.push("", BTF_PTR, 0, target, &[])
    }

    /// An array of `n` elements.
    pub fn array(&mut self, element: u32, index: u32, n: u32) -> u32 {
        let mut extra = Vec::new();
        for v in [element, index, n] {
            extra.extend_from_slice(&v.to_le_bytes());
        }
        self.push("", BTF_ARRAY, 0, 0, &extra)
    }

    /// Fills placeholder `id` with a struct; member offsets are in bits.
    pub fn structure(&mut self, id: u32, name: &str, size: u32, members: &[(&str, u32, u32)]) {
        let n = self.name(name);
        let mut rec = Vec::new();
        rec.extend_from_slice(&n.to_le_bytes());
        rec.extend_from_slice(&((BTF_STRUCT << 24) | members.len() as u32).to_le_bytes());
        rec.extend_from_slice(&size.to_le_bytes());
        for (mname, ty, bits) in members {
            let mn = self.name(mname);
            for v in [mn, *ty, *bits] {
                rec.extend_from_slice(&v.to_le_bytes());
            }
        }
        self.types[id as usize - 1] = rec;
    }

    /// The blob: header, types, strings.
    pub fn finish(self) -> Vec<u8> {
        let types: Vec<u8> = self.types.concat();
        let mut out = Vec::new();
        out.extend_from_slice(&0xeb9fu16.to_le_bytes());
        out.extend_from_slice(&[1, 0]);
        for v in [
            24u32,
            0,
            types.len() as u32,
            types.len() as u32,
            self.strings.len() as u32,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&types);
        out.extend_from_slice(&self.strings);
        out
    }
}

/// Compressed kallsyms tables (Linux 6.1 layout, 4-byte markers) for `symbols`
/// (`(type, name, address)`, sorted by address, at least 256 of them), preceded by
/// `lead` zero bytes: the token table maps every byte to itself, so names are stored
/// as their own bytes.
pub fn kallsyms_image(symbols: &[(char, String, u64)], lead: usize) -> Vec<u8> {
    let base = symbols.first().map_or(KERNEL_VA, |s| s.2);
    let num = symbols.len();
    let mut out = vec![0u8; lead];
    let align = |out: &mut Vec<u8>| {
        while out.len() & 7 != 0 {
            out.push(0);
        }
    };
    align(&mut out);
    for s in symbols {
        out.extend_from_slice(&((s.2 - base) as u32).to_le_bytes());
    }
    align(&mut out);
    out.extend_from_slice(&base.to_le_bytes());
    out.extend_from_slice(&(num as u32).to_le_bytes());
    align(&mut out);
    let mut markers = Vec::new();
    let names_start = out.len();
    for (i, s) in symbols.iter().enumerate() {
        if i % 256 == 0 {
            markers.push((out.len() - names_start) as u32);
        }
        let body: Vec<u8> = std::iter::once(s.0 as u8).chain(s.1.bytes()).collect();
        out.push(body.len() as u8);
        out.extend_from_slice(&body);
    }
    // The markers start at the next 8-aligned label; the token table at the one after.
    align(&mut out);
    for m in &markers {
        out.extend_from_slice(&m.to_le_bytes());
    }
    align(&mut out);
    let table_at = out.len();
    let mut index = Vec::new();
    for i in 0..=255u8 {
        index.push((out.len() - table_at) as u16);
        if i == 0 {
            // Three bytes, so that the digit tokens (the signature) start at an even offset.
            out.extend_from_slice(b"~~0");
        } else {
            out.push(i);
        }
        out.push(0);
    }
    align(&mut out);
    for v in index {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// The symbols of the synthetic kallsyms seeds.
pub fn seed_symbols(n: usize) -> Vec<(char, String, u64)> {
    let mut v = vec![
        ('T', "_text".to_string(), KERNEL_VA + 0x100_0000),
        ('T', "_stext".to_string(), KERNEL_VA + 0x100_0000),
    ];
    for i in 0..n {
        v.push((
            't',
            format!("fn_{i:04}"),
            KERNEL_VA + 0x100_1000 + 16 * i as u64,
        ));
    }
    v.push(('R', "linux_banner".into(), KERNEL_VA + 0x180_0000));
    v.push(('D', "init_task".into(), KERNEL_VA + 0x200_0000));
    v
}

/// An ELF64 file with the given sections (`name`, contents, `sh_entsize`) and program
/// headers (`p_type`, `p_paddr`, contents): what QEMU's and Xen's dumps look like.
pub fn elf_image(sections: &[(&str, Vec<u8>, u64)], segments: &[(u32, u64, Vec<u8>)]) -> Vec<u8> {
    let mut out = vec![0u8; 64];
    let phoff = out.len();
    out.resize(phoff + 56 * segments.len(), 0);
    let mut ph = Vec::new();
    for (ty, paddr, data) in segments {
        let off = out.len().next_multiple_of(8);
        out.resize(off, 0);
        out.extend_from_slice(data);
        ph.push((*ty, *paddr, off as u64, data.len() as u64));
    }
    for (i, (ty, paddr, off, len)) in ph.into_iter().enumerate() {
        let at = phoff + 56 * i;
        out[at..at + 4].copy_from_slice(&ty.to_le_bytes());
        out[at + 8..at + 16].copy_from_slice(&off.to_le_bytes());
        out[at + 16..at + 24].copy_from_slice(&paddr.to_le_bytes());
        out[at + 24..at + 32].copy_from_slice(&paddr.to_le_bytes());
        out[at + 32..at + 40].copy_from_slice(&len.to_le_bytes());
        out[at + 40..at + 48].copy_from_slice(&len.to_le_bytes());
    }
    let mut shstrtab = vec![0u8];
    let mut shdrs = vec![[0u8; 64]];
    let mut all: Vec<(&str, Vec<u8>, u64, u32)> = sections
        .iter()
        .map(|(n, d, e)| (*n, d.clone(), *e, 1))
        .collect();
    all.push((".shstrtab", Vec::new(), 0, 3));
    let count = all.len();
    for (i, (name, data, entsize, ty)) in all.into_iter().enumerate() {
        let name_off = shstrtab.len() as u32;
        shstrtab.extend_from_slice(name.as_bytes());
        shstrtab.push(0);
        let data = if i + 1 == count {
            shstrtab.clone()
        } else {
            data
        };
        let off = out.len().next_multiple_of(8);
        out.resize(off, 0);
        out.extend_from_slice(&data);
        let mut h = [0u8; 64];
        h[0..4].copy_from_slice(&name_off.to_le_bytes());
        h[4..8].copy_from_slice(&ty.to_le_bytes());
        h[24..32].copy_from_slice(&(off as u64).to_le_bytes());
        h[32..40].copy_from_slice(&(data.len() as u64).to_le_bytes());
        h[48..56].copy_from_slice(&1u64.to_le_bytes());
        h[56..64].copy_from_slice(&entsize.to_le_bytes());
        shdrs.push(h);
    }
    let shoff = out.len().next_multiple_of(8);
    out.resize(shoff, 0);
    for h in &shdrs {
        out.extend_from_slice(h);
    }
    out[0..4].copy_from_slice(b"\x7fELF");
    out[4] = 2; // 64-bit
    out[5] = 1; // little-endian
    out[6] = 1;
    out[16..18].copy_from_slice(&4u16.to_le_bytes()); // ET_CORE
    out[18..20].copy_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    out[20..24].copy_from_slice(&1u32.to_le_bytes());
    out[32..40]
        .copy_from_slice(&(if segments.is_empty() { 0 } else { phoff as u64 }).to_le_bytes());
    out[40..48].copy_from_slice(&(shoff as u64).to_le_bytes());
    out[52..54].copy_from_slice(&64u16.to_le_bytes());
    out[54..56].copy_from_slice(&56u16.to_le_bytes());
    out[56..58].copy_from_slice(&(segments.len() as u16).to_le_bytes());
    out[58..60].copy_from_slice(&64u16.to_le_bytes());
    out[60..62].copy_from_slice(&(shdrs.len() as u16).to_le_bytes());
    out[62..64].copy_from_slice(&((shdrs.len() - 1) as u16).to_le_bytes());
    out
}

/// The kernel-lists seed: three tasks, two modules with symbols (one a vmark mark).
pub fn kernel_lists_seed() -> Vec<u8> {
    let va = |off: u64| KERNEL_VA + KERNEL_DATA + off;
    let mut d = VecMemory::new(vec![0; 0x1000]);
    let tasks = [0x000u64, 0x100, 0x200];
    for (i, &t) in tasks.iter().enumerate() {
        let next = tasks[(i + 1) % 3];
        let prev = tasks[(i + 2) % 3];
        d.put_u64(t, va(next));
        d.put_u64(t + 8, va(prev));
        d.put_u32(t + 16, i as u32);
        d.put_u32(t + 20, i as u32);
        d.put(t + 24, format!("task{i}\0").as_bytes());
        d.put_u64(t + 48, va(0));
    }
    d.put_u64(0x100 + 40, va(0x300)); // task1.mm
    d.put_u64(0x300, KERNEL_VA); // mm.pgd
    let mods = [MODULES_HEAD, 0x400, 0x500];
    for (i, &m) in mods.iter().enumerate() {
        d.put_u64(m, va(mods[(i + 1) % 3]));
        d.put_u64(m + 8, va(mods[(i + 2) % 3]));
    }
    for (m, name) in [(0x400u64, "demo\0"), (0x500, "crc8\0")] {
        d.put(m + 16, name.as_bytes());
        d.put_u64(m + 72, va(0x800));
        d.put_u32(m + 80, 0x1000);
        d.put_u64(m + 88, va(0x600));
    }
    d.put_u64(0x600, va(0x700)); // symtab
    d.put_u32(0x608, 3);
    d.put_u64(0x610, va(0x800)); // strtab
    let strtab = b"\0__vmark_rec_x\0__vmark_manifest\0foo\0";
    let mut off = 1u32;
    for (i, s) in ["__vmark_rec_x", "__vmark_manifest", "foo"]
        .iter()
        .enumerate()
    {
        let sym = 0x700 + 24 * i as u64;
        d.put_u32(sym, off);
        d.put_u64(sym + 8, va(0x800 + u64::from(off)));
        d.put_u64(sym + 16, 8);
        off += s.len() as u32 + 1;
    }
    d.put(0x800, strtab);
    let mut out = vec![0u8; 0x1000];
    d.read(0, &mut out).expect("seed memory");
    out
}

fn page_table_seed(mode: u8) -> Vec<u8> {
    // Header: cr3, cr4, efer, m2p pair count and pairs, 8 vaddrs; then memory.
    let mut mem = VecMemory::new(vec![0; 0x8000]);
    let (cr3, cr4, efer, vaddrs): (u64, u64, u64, [u64; 8]) = match mode {
        0 => {
            // 4-level: 4 KiB page, 2 MiB page, 1 GiB page.
            mem.put_u64(0x1000 + 511 * 8, 0x2000 | 3);
            mem.put_u64(0x2000 + 510 * 8, 0x3000 | 3);
            mem.put_u64(0x2000 + 511 * 8, 0x4000_0000 | 0x83);
            mem.put_u64(0x3000, 0x4000 | 3);
            mem.put_u64(0x3000 + 8, 0x20_0000 | 0x83);
            mem.put_u64(0x4000, 0x5000 | 3 | (1 << 63));
            mem.put(0x5000, b"hello from a 4 KiB page\0");
            let k = 0xffff_ffff_8000_0000;
            (
                0x1000,
                1 << 5,
                1 << 10,
                [
                    k,
                    k + 0x10,
                    k + 0x20_0000,
                    0xffff_ffff_c000_0000,
                    0,
                    k + 0xfff,
                    0x7fff_ffff_f000,
                    1 << 47,
                ],
            )
        }
        1 => {
            // PAE: PDPT at 0x1000 (32-byte aligned), PD, PT.
            mem.put_u64(0x1000, 0x2000 | 1);
            mem.put_u64(0x2000, 0x3000 | 3);
            mem.put_u64(0x2000 + 8, 0x20_0000 | 0x83);
            mem.put_u64(0x3000, 0x5000 | 3);
            mem.put(0x5000, b"pae\0");
            (
                0x1000,
                1 << 5,
                0,
                [
                    0,
                    0x10,
                    0x20_0000,
                    0x4000_0000,
                    0xc000_0000,
                    0xffff_ffff,
                    1 << 33,
                    0x3000,
                ],
            )
        }
        2 => {
            // 32-bit: PD with a 4 MiB page and a page table.
            mem.put_u32(0x1000, 0x2000 | 3);
            mem.put_u32(0x1000 + 4, 0x40_0000 | 0x83);
            mem.put_u32(0x2000, 0x5000 | 3);
            mem.put(0x5000, b"legacy\0");
            (
                0x1000,
                0,
                0,
                [
                    0,
                    0x40_0010,
                    0x8000_0000,
                    0xffff_ffff,
                    0x123,
                    0x40_0000,
                    0x7f_ffff,
                    1 << 32,
                ],
            )
        }
        _ => {
            // 5-level.
            mem.put_u64(0x1000 + 511 * 8, 0x2000 | 3);
            mem.put_u64(0x2000 + 511 * 8, 0x3000 | 3);
            mem.put_u64(0x3000 + 511 * 8, 0x4000 | 3);
            mem.put_u64(0x4000 + 511 * 8, 0x5000 | 3);
            mem.put_u64(0x5000 + 511 * 8, 0x6000 | 3);
            let k: u64 = !0xfff;
            (
                0x1000,
                (1 << 5) | (1 << 12),
                1 << 10,
                [k, k + 8, 1 << 56, 0xff00_0000_0000_0000, 0, 1, 2, 3],
            )
        }
    };
    let mut out = Vec::new();
    out.extend_from_slice(&cr3.to_le_bytes());
    out.extend_from_slice(&cr4.to_le_bytes());
    out.extend_from_slice(&efer.to_le_bytes());
    // Xen PV: machine frames = physical frames + 0x100.
    let pairs: Vec<(u64, u64)> = (0..8).map(|pfn| (pfn, pfn + 0x100)).collect();
    out.push(pairs.len() as u8);
    for (p, m) in pairs {
        out.extend_from_slice(&p.to_le_bytes());
        out.extend_from_slice(&m.to_le_bytes());
    }
    for v in vaddrs {
        out.extend_from_slice(&v.to_le_bytes());
    }
    let mut bytes = vec![0u8; 0x8000];
    mem.read(0, &mut bytes).expect("seed memory");
    out.extend_from_slice(&bytes);
    out
}

fn manifest_seed_synthetic() -> Vec<u8> {
    let mut types = TypeTable::new();
    let int = types.push(Type::Base {
        name: "int".into(),
        size: 4,
        encoding: BaseEncoding::Signed,
    });
    let ch = types.push(Type::Base {
        name: "char".into(),
        size: 1,
        encoding: BaseEncoding::SignedChar,
    });
    let node = types.push(Type::Void);
    let nodep = types.push(Type::Pointer {
        target: node,
        size: 8,
    });
    let name = types.push(Type::Array {
        element: ch,
        dims: vec![ArrayBound::Count(8)],
    });
    let e = types.push(Type::Enum {
        name: Some("state".into()),
        size: 4,
        signed: false,
        enumerators: vec![
            Enumerator {
                name: "IDLE".into(),
                value: 0,
            },
            Enumerator {
                name: "BUSY".into(),
                value: 1,
            },
        ],
    });
    let f = types.push(Type::Function {
        ret: int,
        params: vec![nodep],
        variadic: false,
    });
    let fp = types.push(Type::Pointer { target: f, size: 8 });
    types.set(
        node,
        Type::Aggregate {
            kind: AggregateKind::Struct,
            name: Some("node".into()),
            size: 40,
            members: vec![
                Member {
                    name: Some("next".into()),
                    ty: nodep,
                    offset: 0,
                    bitfield: None,
                },
                Member {
                    name: Some("name".into()),
                    ty: name,
                    offset: 8,
                    bitfield: None,
                },
                Member {
                    name: Some("state".into()),
                    ty: e,
                    offset: 16,
                    bitfield: None,
                },
                Member {
                    name: Some("flag".into()),
                    ty: int,
                    offset: 20,
                    bitfield: Some(Bitfield {
                        bit_offset: 160,
                        bit_size: 3,
                    }),
                },
                Member {
                    name: Some("cb".into()),
                    ty: fp,
                    offset: 24,
                    bitfield: None,
                },
                Member {
                    name: None,
                    ty: int,
                    offset: 32,
                    bitfield: None,
                },
            ],
        },
    );
    let m = Manifest {
        module: "seed".into(),
        kernel_release: "6.1.0".into(),
        build_id: vec![0xab; 20],
        pointer_depth: 1,
        marks: vec![Mark {
            name: "n".into(),
            symbol: "n".into(),
            ty: node,
            size: 40,
            flags: MarkFlags(MarkFlags::SEQ),
        }],
        types,
    };
    vmark_proto::encode(&m).expect("seed manifest encodes")
}

/// A xenstore seed: a domain publishing one module with one mark (as the helper writes
/// them; see `host/src/publish.rs`), its manifest and record in the memory part.
fn xenstore_seed() -> Vec<u8> {
    let blob = manifest_seed_synthetic();
    let gva: u64 = 0xffff_ffff_c000_0000;
    let mut mem = vec![0u8; 4 * 4096];
    mem[4096..4096 + blob.len()].copy_from_slice(&blob);
    let rec = 2 * 4096 + 64;
    mem[rec..rec + 4].copy_from_slice(&vmark_proto::abi::VMARK_RECORD_MAGIC.to_le_bytes());
    mem[rec + 4..rec + 6]
        .copy_from_slice(&(vmark_proto::abi::VMARK_ABI_VERSION as u16).to_le_bytes());
    mem[rec + 8..rec + 16].copy_from_slice(&(gva + 0x3010).to_le_bytes());
    mem[rec + 16..rec + 24].copy_from_slice(&40u64.to_le_bytes());
    let mut text = String::new();
    text.push_str("abi=1\nevent-channel=7\ncontrol-gref=8\ngeneration=3\n");
    text.push_str(&format!(
        "modules/seed/manifest={:x} {} 1\n",
        gva + 0x1000,
        blob.len()
    ));
    text.push_str(&format!(
        "modules/seed/marks/0=n 1 {:x} 2 {:x} 40 3\n",
        gva + 0x2040,
        gva + 0x3010
    ));
    text.push_str("modules/bad\u{1b}[0m/manifest=zz\n");
    let mut out = text.into_bytes();
    out.extend_from_slice(b"--memory--\n");
    out.extend_from_slice(&mem);
    out
}

fn dump_seeds() -> Vec<(String, Vec<u8>)> {
    let mut page = vec![0u8; 4096];
    page[..8].copy_from_slice(&0x1003u64.to_le_bytes());
    let mut qemu_note = Vec::new();
    let desc_len = 8 + 18 * 8 + 10 * 24 + 5 * 8;
    let mut desc = vec![0u8; desc_len];
    desc[0..4].copy_from_slice(&1u32.to_le_bytes());
    desc[8 + 18 * 8 + 10 * 24 + 24..][..8].copy_from_slice(&0x1000u64.to_le_bytes()); // cr3
    desc[8 + 18 * 8 + 10 * 24 + 32..][..8].copy_from_slice(&0x20u64.to_le_bytes()); // cr4
    for v in [5u32, desc_len as u32, 0] {
        qemu_note.extend_from_slice(&v.to_le_bytes());
    }
    qemu_note.extend_from_slice(b"QEMU\0\0\0\0");
    qemu_note.extend_from_slice(&desc);
    let elf = elf_image(
        &[],
        &[
            (4, 0, qemu_note),
            (1, 0, page.clone()),
            (1, 0x1000, page.clone()),
            (1, 0x10_0000, vec![7; 4096]),
        ],
    );
    let mut p2m = Vec::new();
    let mut pfn = Vec::new();
    for (p, m) in [(7u64, 0x107u64), (2, 0x102), (5, 0x105)] {
        p2m.extend_from_slice(&p.to_le_bytes());
        p2m.extend_from_slice(&m.to_le_bytes());
        pfn.extend_from_slice(&p.to_le_bytes());
    }
    let pages = [page.clone(), vec![1; 4096], vec![2; 4096]].concat();
    let ctx = vec![0u8; 5168];
    let xen_pv = elf_image(
        &[
            (".note.Xen", vec![0; 16], 0),
            (".xen_prstatus", ctx.clone(), ctx.len() as u64),
            (".xen_pages", pages.clone(), 4096),
            (".xen_p2m", p2m, 16),
        ],
        &[],
    );
    let xen_hvm = elf_image(&[(".xen_pages", pages, 4096), (".xen_pfn", pfn, 8)], &[]);
    vec![
        ("qemu_elf".into(), elf),
        ("xen_pv".into(), xen_pv),
        ("xen_hvm".into(), xen_hvm),
    ]
}

fn recording_seed() -> Vec<u8> {
    let mut s = String::new();
    for i in 0..5u64 {
        s.push_str(&format!(
            "{{\"t_ns\":{},\"mark\":\"demo/m\",\"cause\":\"{}\",\"triggers\":{i},\"folded\":0,\"consistent\":true,\"latency_ns\":1200,\"value\":{{\"x\":{i},\"snd_cwnd\":10,\"a\":{{\"b\":true}},\"arr\":[1,2,3]}}}}\n",
            1_700_000_000_000_000_000u64 + i * 1_000_000,
            ["timer", "trigger", "read"][i as usize % 3]
        ));
    }
    s.push_str("{\"event\":\"gone\",\"mark\":\"demo/m\"}\n");
    s.push_str("{\"t_ns\":1,\"mark\":\"m\",\"cause\":\"timer\",\"value\":{\"x\":1e308}}\n");
    s.push_str("{\"t_ns\":2,\"mark\":\"m\",\"cau");
    s.into_bytes()
}

/// The seeds that need no fixture, per target: `(target, name, bytes)`.
pub fn synthetic_seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out: Vec<(&'static str, String, Vec<u8>)> = vec![
        ("manifest", "synthetic".into(), manifest_seed_synthetic()),
        ("xenstore", "one_mark".into(), xenstore_seed()),
        ("btf", "kernel_lists".into(), kernel_btf()),
        (
            "kernel_lists",
            "three_tasks_two_modules".into(),
            kernel_lists_seed(),
        ),
        ("recording", "samples".into(), recording_seed()),
        (
            "kallsyms",
            "tables_300".into(),
            kallsyms_image(&seed_symbols(300), 0x1000),
        ),
        (
            "kallsyms",
            "tables_600".into(),
            kallsyms_image(&seed_symbols(600), 24),
        ),
    ];
    for (i, name) in ["long4", "pae", "legacy32", "long5"].iter().enumerate() {
        out.push(("paging", (*name).into(), page_table_seed(i as u8)));
    }
    for (name, bytes) in dump_seeds() {
        out.push(("dumps", name, bytes));
    }
    // Structure-aware target: a few byte strings `arbitrary` turns into tables.
    for (i, seed) in [
        &b"\x08\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c"[..],
        &[0x42; 64][..],
        &[7; 300][..],
    ]
    .iter()
    .enumerate()
    {
        out.push(("manifest_types", format!("bytes_{i}"), seed.to_vec()));
    }
    out
}
