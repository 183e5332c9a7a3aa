//! Decoding guest bytes with a manifest's types.
//!
//! A type is compiled once into a [`Plan`]: a flat list of operations with byte offsets,
//! scalar kinds and pre-escaped JSON keys, from which the compact JSON form is compiled
//! further into specialized steps (the `json` module: constant text merged, each leaf's
//! width, signedness and bitfield position fixed). Rendering a sample then walks those
//! steps over the sample's bytes with no allocation besides the output, which is what
//! makes sampling a `struct tcp_sock` hundreds of thousands of times a second possible.
//! The same plan renders the pretty tree, and [`FieldPath`] extracts single leaves for CSV
//! columns and plots.
//!
//! Guest bytes are untrusted but cannot hurt here: every read is bounds-checked against the
//! sample, and a short sample renders the missing leaves as `null`.
//!
//! Guest *types* are untrusted too (a manifest is the guest's to write), and compiling walks
//! them: [`Plan::compile`] is safe on any table, validated or not. Every type, member
//! (anonymous ones and skipped bitfields included) and array element it visits is charged
//! against [`limits::PLAN_MAX_VISITS`], every op and its keys against [`limits::PLAN_MAX_OPS`]
//! and [`limits::PLAN_MAX_BYTES`], nesting against [`limits::PLAN_MAX_DEPTH`], and every
//! offset is computed with checked arithmetic; going over is a [`DecodeError`] for that
//! type. The budgets are spent once, at compile time: rendering a sample walks the compiled
//! ops, whose offsets were all checked to fit. Member lookup ([`FieldPath`]) has its own
//! budget, [`limits::MEMBER_LOOKUP_MAX_VISITS`] per path segment. Names in the pretty tree
//! and in error messages are escaped ([`vmark_proto::text::escape`]); JSON escapes every
//! control character.

mod json;
#[cfg(any(test, feature = "test-fixtures"))]
mod reference;

use std::collections::HashMap;
use std::fmt::Write as _;
use vmark_proto::limits;
use vmark_proto::text::escape;
use vmark_proto::{AggregateKind, ArrayBound, BaseEncoding, Member, Type, TypeId, TypeTable};

/// Limits that keep a hostile or huge type from producing an unbounded plan.
const MAX_OPS: usize = limits::PLAN_MAX_OPS;
/// Arrays of scalars longer than this render their first elements and a count.
const MAX_ARRAY_ELEMENTS: u64 = limits::PLAN_MAX_ARRAY_ELEMENTS;
/// Nesting limit while compiling.
const MAX_DEPTH: usize = limits::PLAN_MAX_DEPTH;
/// Memory an op costs besides its keys: the op, its compiled JSON step and bookkeeping.
const OP_COST: usize = std::mem::size_of::<Op>() + 96;

/// Why a type cannot be compiled into a plan.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The type id is not in the table.
    #[error("type {0} is not in the manifest")]
    NoSuchType(u32),
    /// The plan would exceed its size limit.
    #[error("type is too large to decode (more than {MAX_OPS} fields)")]
    TooManyFields,
    /// Nesting too deep.
    #[error("type nests more than {MAX_DEPTH} levels")]
    TooDeep,
    /// Compiling visits more types, members and elements than its budget (a type that
    /// holds other types by value many times over).
    #[error(
        "type takes more than {} steps to compile (it nests types by value too many times over)",
        limits::PLAN_MAX_VISITS
    )]
    TooMuchWork,
    /// The plan would take more memory than its budget.
    #[error("type's plan would take more than {} bytes", limits::PLAN_MAX_BYTES)]
    TooLarge,
    /// One decoded sample could render to more text than its budget (a small manifest
    /// can describe a value whose every sample would be tens of MiB of output).
    #[error(
        "a sample of this type could render to more than {} bytes",
        limits::PLAN_MAX_OUTPUT_BYTES
    )]
    OutputTooLarge,
    /// A member's or element's offset does not fit in 64 bits (or a bitfield's in 32).
    #[error("an offset in type {0} overflows")]
    Overflow(String),
    /// A type the validation would have refused (e.g. a bitfield of width 0).
    #[error("type {0} is malformed")]
    Malformed(String),
    /// Looking a member up visits more members than its budget.
    #[error(
        "looking up {} visits more than {} members",
        escape(.0),
        limits::MEMBER_LOOKUP_MAX_VISITS
    )]
    LookupTooLong(String),
    /// A field path names no member.
    #[error("no field \"{}\" in {}", escape(.0), escape(.1))]
    NoSuchField(String, String),
    /// A field path ends at an aggregate rather than a scalar.
    #[error("field \"{}\" is not a scalar (it is {})", escape(.0), escape(.1))]
    NotScalar(String, String),
    /// A derived field's expression does not parse ([`crate::expr`]).
    #[error(transparent)]
    BadExpression(#[from] crate::expr::ExprError),
}

/// How a leaf's bytes are interpreted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scalar {
    /// Signed integer of 1, 2, 4, 8 or 16 bytes.
    Int(u8),
    /// Unsigned integer of 1, 2, 4, 8 or 16 bytes.
    UInt(u8),
    /// `_Bool`.
    Bool,
    /// `float`.
    F32,
    /// `double`.
    F64,
    /// A pointer of 4 (32-bit guests) or 8 bytes, rendered in hex.
    Ptr(u8),
    /// An enum: underlying size, signedness and index into the plan's enum table.
    Enum(u8, bool, u32),
    /// A floating type of another size (`long double`): rendered as hex bytes.
    RawFloat(u8),
}

impl Scalar {
    fn size(self) -> u64 {
        match self {
            Scalar::Int(n)
            | Scalar::UInt(n)
            | Scalar::Enum(n, _, _)
            | Scalar::RawFloat(n)
            | Scalar::Ptr(n) => u64::from(n),
            Scalar::Bool => 1,
            Scalar::F32 => 4,
            Scalar::F64 => 8,
        }
    }
}

/// A decoded leaf value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Leaf {
    /// Signed integer (also signed enums and bitfields).
    Int(i128),
    /// Unsigned integer (also pointers, unsigned enums and bitfields).
    UInt(u128),
    /// Boolean.
    Bool(bool),
    /// Floating point.
    Float(f64),
}

impl Leaf {
    /// The value as `f64`, for plots.
    pub fn as_f64(self) -> f64 {
        match self {
            Leaf::Int(v) => v as f64,
            Leaf::UInt(v) => v as f64,
            Leaf::Bool(b) => f64::from(u8::from(b)),
            Leaf::Float(f) => f,
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    /// `{` (object) or `[` (array), with the key in the enclosing object.
    Open {
        key: Key,
        array: bool,
    },
    Close {
        array: bool,
    },
    Scalar {
        key: Key,
        offset: u64,
        scalar: Scalar,
        bits: Option<(u32, u8)>,
    },
    /// A run of scalars of one kind (large arrays stay one op).
    ScalarRun {
        key: Key,
        offset: u64,
        scalar: Scalar,
        count: u64,
        total: u64,
    },
    /// `char[N]`: rendered as a string up to the first NUL.
    Chars {
        key: Key,
        offset: u64,
        len: u64,
    },
    /// Bytes of a type the manifest does not describe (opaque, flexible array).
    Opaque {
        key: Key,
        offset: u64,
        size: u64,
    },
}

/// A member's name, pre-rendered for both outputs.
#[derive(Debug, Clone, Default)]
struct Key {
    /// `"name":` or empty for array elements and the root.
    json: Box<str>,
    /// `name` or `[i]` for the pretty tree.
    pretty: Box<str>,
}

impl Key {
    fn named(name: &str) -> Key {
        let mut json = Vec::with_capacity(name.len() + 3);
        push_json_str(&mut json, name.as_bytes());
        json.push(b':');
        Key {
            // Valid UTF-8 by construction: the fallback is never taken.
            json: String::from_utf8(json)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
                .into(),
            // The pretty tree is text for a terminal: the guest's name escaped.
            pretty: escape(name).into(),
        }
    }

    fn index(i: u64) -> Key {
        Key {
            json: "".into(),
            pretty: format!("[{i}]").into(),
        }
    }
}

/// An enum's constants for the pretty tree: (value, escaped name), sorted by value (the
/// first declared of equal values first), so a sample's value is found by binary search.
type EnumNames = Vec<(i128, Box<str>)>;

/// A type compiled for fast rendering of samples. Immutable once compiled and `Send + Sync`,
/// so one plan can be shared (`Arc<Plan>`) by every mark and thread that decodes the type.
#[derive(Debug, Clone)]
pub struct Plan {
    ops: Vec<Op>,
    json: json::Program,
    enums: Vec<EnumNames>,
    size: u64,
    type_name: String,
    /// `type_name` escaped, for the pretty tree.
    pretty_name: Box<str>,
}

impl Plan {
    /// Compiles the type `ty` of `types`. Safe on any table, validated or not: the walk is
    /// bounded by the budgets in [`vmark_proto::limits`] (see the module documentation) and
    /// going over one is an error for this type only.
    pub fn compile(types: &TypeTable, ty: TypeId) -> Result<Plan, DecodeError> {
        if types.get(ty).is_none() {
            return Err(DecodeError::NoSuchType(ty.0));
        }
        let mut c = Compiler::new(types);
        c.value(Key::default(), ty, 0, 0)?;
        let json = json::Program::new(&c.ops)?;
        let type_name = types.type_name(ty);
        Ok(Plan {
            json,
            ops: c.ops,
            enums: c.enums,
            size: types.size_of(ty).unwrap_or(0),
            pretty_name: escape(&type_name).into(),
            type_name,
        })
    }

    /// How many ops the plan has (what the budgets count).
    #[cfg(test)]
    fn op_count(&self) -> usize {
        self.ops.len()
    }

    /// Bytes a complete sample has.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The C spelling of the compiled type.
    pub fn type_name(&self) -> &str {
        &self.type_name
    }

    /// Appends the sample as compact JSON (UTF-8) to `out`. Reusing `out` across samples
    /// avoids any allocation: this is the fast path for rendering many samples.
    pub fn write_json(&self, bytes: &[u8], out: &mut Vec<u8>) {
        self.json.write(bytes, out, |i, out| {
            if let Some(op) = self.ops.get(i) {
                write_json_value(op, bytes, out);
            }
        });
    }

    /// The sample as a JSON string.
    pub fn to_json(&self, bytes: &[u8]) -> String {
        let mut out = Vec::with_capacity(self.json.reserve());
        self.write_json(bytes, &mut out);
        // The writer only emits UTF-8; the fallback is never taken.
        String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into())
    }

    /// Renders the sample as an indented tree, one member a line, as a person reads it.
    pub fn write_pretty(&self, bytes: &[u8], out: &mut String) {
        let mut depth = 0usize;
        let indent = |out: &mut String, depth: usize| {
            for _ in 0..depth {
                out.push_str("  ");
            }
        };
        for op in &self.ops {
            match op {
                Op::Open { key, array } => {
                    indent(out, depth);
                    let name = if key.pretty.is_empty() {
                        &*self.pretty_name
                    } else {
                        &*key.pretty
                    };
                    let _ = writeln!(out, "{name} = {}", if *array { "[" } else { "{" });
                    depth += 1;
                }
                Op::Close { array } => {
                    depth = depth.saturating_sub(1);
                    indent(out, depth);
                    out.push_str(if *array { "]\n" } else { "}\n" });
                }
                Op::Scalar {
                    key,
                    offset,
                    scalar,
                    bits,
                } => {
                    indent(out, depth);
                    let _ = write!(out, "{} = ", display_key(&key.pretty));
                    match read_scalar(bytes, *offset, *scalar, *bits) {
                        Some(leaf) => self.write_leaf_pretty(out, leaf, *scalar),
                        None => out.push_str("<unavailable>"),
                    }
                    out.push('\n');
                }
                Op::ScalarRun {
                    key,
                    offset,
                    scalar,
                    count,
                    total,
                } => {
                    indent(out, depth);
                    let _ = write!(out, "{} = [", display_key(&key.pretty));
                    for_each_element(bytes, *offset, *scalar, *count, out, |out, i, leaf| {
                        if i > 0 {
                            out.push_str(", ");
                        }
                        match leaf {
                            Some(leaf) => self.write_leaf_pretty(out, leaf, *scalar),
                            None => out.push('?'),
                        }
                    });
                    if total > count {
                        let _ = write!(out, ", ... {} more", total - count);
                    }
                    out.push_str("]\n");
                }
                Op::Chars { key, offset, len } => {
                    indent(out, depth);
                    let _ = write!(out, "{} = ", display_key(&key.pretty));
                    match chars(bytes, *offset, *len) {
                        Some(b) => {
                            let _ = write!(out, "{:?}", String::from_utf8_lossy(b));
                        }
                        None => out.push_str("<unavailable>"),
                    }
                    out.push('\n');
                }
                Op::Opaque { key, offset, size } => {
                    indent(out, depth);
                    let _ = write!(out, "{} = ", display_key(&key.pretty));
                    match opaque(bytes, *offset, *size) {
                        Some(b) => {
                            out.push('<');
                            push_hex(out, &b[..b.len().min(32)]);
                            if b.len() > 32 {
                                let _ = write!(out, "... {} bytes", b.len());
                            }
                            out.push('>');
                        }
                        None => out.push_str("<no data>"),
                    }
                    out.push('\n');
                }
            }
        }
    }

    fn write_leaf_pretty(&self, out: &mut String, leaf: Leaf, scalar: Scalar) {
        match (leaf, scalar) {
            (Leaf::UInt(v), Scalar::Ptr(_)) => {
                let _ = write!(out, "{v:#x}");
            }
            (_, Scalar::Enum(_, _, idx)) => {
                let value = match leaf {
                    Leaf::Int(v) => v,
                    Leaf::UInt(v) => v as i128,
                    _ => 0,
                };
                let _ = write!(out, "{value}");
                if let Some(es) = self.enums.get(idx as usize) {
                    let at = es.partition_point(|(v, _)| *v < value);
                    if let Some((_, name)) = es.get(at).filter(|(v, _)| *v == value) {
                        let _ = write!(out, " ({name})");
                    }
                }
            }
            _ => write_leaf_json(out, leaf, scalar),
        }
    }

    /// Renders the sample as an indented tree.
    pub fn to_pretty(&self, bytes: &[u8]) -> String {
        let mut s = String::new();
        self.write_pretty(bytes, &mut s);
        s
    }
}

/// Where rendered text goes: the JSON writer fills a `Vec<u8>`, the pretty tree a `String`.
trait Sink {
    fn put(&mut self, s: &str);
    fn put_fmt(&mut self, args: std::fmt::Arguments<'_>);
}

impl Sink for String {
    fn put(&mut self, s: &str) {
        self.push_str(s);
    }

    fn put_fmt(&mut self, args: std::fmt::Arguments<'_>) {
        let _ = self.write_fmt(args);
    }
}

impl Sink for Vec<u8> {
    fn put(&mut self, s: &str) {
        self.extend_from_slice(s.as_bytes());
    }

    fn put_fmt(&mut self, args: std::fmt::Arguments<'_>) {
        // Writing to a `Vec` cannot fail.
        let _ = std::io::Write::write_fmt(self, args);
    }
}

/// Calls `f` with the index and value of each element of a run of scalars (`None` beyond
/// the sample).
fn for_each_element<S>(
    bytes: &[u8],
    offset: u64,
    scalar: Scalar,
    count: u64,
    out: &mut S,
    mut f: impl FnMut(&mut S, u64, Option<Leaf>),
) {
    let step = scalar.size();
    for i in 0..count {
        // Compiling checked that the run's end fits in 64 bits; `None` reads as missing.
        let at = i.checked_mul(step).and_then(|d| offset.checked_add(d));
        f(
            out,
            i,
            at.and_then(|at| read_scalar(bytes, at, scalar, None)),
        );
    }
}

/// The bytes of a `char[len]` up to its first NUL, if the sample has the array.
fn chars(bytes: &[u8], offset: u64, len: u64) -> Option<&[u8]> {
    let b = slice(bytes, offset, len)?;
    Some(&b[..b.iter().position(|&c| c == 0).unwrap_or(b.len())])
}

/// The bytes of an undescribed value, if the sample has them and there are any.
fn opaque(bytes: &[u8], offset: u64, size: u64) -> Option<&[u8]> {
    slice(bytes, offset, size).filter(|b| !b.is_empty())
}

/// Writes the JSON value of a leaf op through the generic path: the fallback of the
/// compiled JSON writer for the kinds it does not specialize.
fn write_json_value(op: &Op, bytes: &[u8], out: &mut Vec<u8>) {
    match op {
        Op::Scalar {
            offset,
            scalar,
            bits,
            ..
        } => match read_scalar(bytes, *offset, *scalar, *bits) {
            Some(leaf) => write_leaf_json(out, leaf, *scalar),
            None => out.put("null"),
        },
        Op::ScalarRun {
            offset,
            scalar,
            count,
            ..
        } => {
            out.push(b'[');
            for_each_element(bytes, *offset, *scalar, *count, out, |out, i, leaf| {
                if i > 0 {
                    out.push(b',');
                }
                match leaf {
                    Some(leaf) => write_leaf_json(out, leaf, *scalar),
                    None => out.put("null"),
                }
            });
            out.push(b']');
        }
        Op::Chars { offset, len, .. } => match chars(bytes, *offset, *len) {
            Some(b) => push_json_str(out, b),
            None => out.put("null"),
        },
        Op::Opaque { offset, size, .. } => match opaque(bytes, *offset, *size) {
            Some(b) => {
                out.push(b'"');
                push_hex(out, b);
                out.push(b'"');
            }
            None => out.put("null"),
        },
        Op::Open { .. } | Op::Close { .. } => {}
    }
}

/// A leaf as JSON: integers in decimal, pointers as `"0x…"`, non-finite floats as `null`.
fn write_leaf_json<S: Sink>(out: &mut S, leaf: Leaf, scalar: Scalar) {
    match leaf {
        Leaf::Int(v) => match i64::try_from(v) {
            Ok(v) => out.put(itoa::Buffer::new().format(v)),
            Err(_) => out.put(itoa::Buffer::new().format(v)),
        },
        Leaf::UInt(v) if matches!(scalar, Scalar::Ptr(_)) => {
            out.put("\"0x");
            push_hex_u64(out, v as u64);
            out.put("\"");
        }
        Leaf::UInt(v) => match u64::try_from(v) {
            Ok(v) => out.put(itoa::Buffer::new().format(v)),
            Err(_) => out.put(itoa::Buffer::new().format(v)),
        },
        Leaf::Bool(b) => out.put(if b { "true" } else { "false" }),
        Leaf::Float(f) if f.is_finite() => out.put_fmt(format_args!("{f}")),
        Leaf::Float(_) => out.put("null"),
    }
}

fn display_key(k: &str) -> &str {
    if k.is_empty() {
        "value"
    } else {
        k
    }
}

fn slice(bytes: &[u8], offset: u64, len: u64) -> Option<&[u8]> {
    let start = usize::try_from(offset).ok()?;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    bytes.get(start..end)
}

/// Reads one scalar (optionally a bitfield) from a sample; `None` when out of bounds.
fn read_scalar(bytes: &[u8], offset: u64, scalar: Scalar, bits: Option<(u32, u8)>) -> Option<Leaf> {
    if let Some((bit_offset, width)) = bits {
        // Bitfields: read the bytes that cover the field (at most 9 for a 64-bit field at an
        // odd bit position) as one little-endian integer, then shift and mask.
        let first = offset.checked_add(u64::from(bit_offset / 8))?;
        let shift = bit_offset % 8;
        if width == 0 || width > 64 {
            return None; // never compiled so; no shift below may overflow
        }
        let nbytes = (u64::from(shift) + u64::from(width)).div_ceil(8);
        let b = slice(bytes, first, nbytes)?;
        let mut raw: u128 = 0;
        for (i, byte) in b.iter().enumerate() {
            raw |= u128::from(*byte) << (8 * i);
        }
        let v = (raw >> shift) & ((1u128 << width) - 1);
        let signed = matches!(scalar, Scalar::Int(_)) || matches!(scalar, Scalar::Enum(_, true, _));
        return Some(if signed && width > 0 && (v >> (width - 1)) & 1 == 1 {
            Leaf::Int((v as i128) - (1i128 << width))
        } else if signed {
            Leaf::Int(v as i128)
        } else if scalar == Scalar::Bool {
            Leaf::Bool(v != 0)
        } else {
            Leaf::UInt(v)
        });
    }
    let size = scalar.size();
    let b = slice(bytes, offset, size)?;
    if size <= 8 {
        // The common case: one load into a u64, sign-extended by shifts.
        let mut raw = [0u8; 8];
        raw[..b.len()].copy_from_slice(b);
        let u = u64::from_le_bytes(raw);
        let shift = 64 - 8 * b.len() as u32;
        return Some(match scalar {
            Scalar::Int(_) | Scalar::Enum(_, true, _) => {
                Leaf::Int(i128::from(((u << shift) as i64) >> shift))
            }
            Scalar::UInt(_) | Scalar::Ptr(_) | Scalar::Enum(_, false, _) | Scalar::RawFloat(_) => {
                Leaf::UInt(u128::from(u))
            }
            Scalar::Bool => Leaf::Bool(u != 0),
            Scalar::F32 => Leaf::Float(f64::from(f32::from_bits(u as u32))),
            Scalar::F64 => Leaf::Float(f64::from_bits(u)),
        });
    }
    let mut raw = [0u8; 16];
    raw[..b.len()].copy_from_slice(b);
    let u = u128::from_le_bytes(raw);
    let n = b.len() as u32;
    Some(match scalar {
        Scalar::Int(_) | Scalar::Enum(_, true, _) => {
            let shift = 128 - 8 * n;
            Leaf::Int(((u << shift) as i128) >> shift)
        }
        _ => Leaf::UInt(u),
    })
}

/// `s` as a JSON string: invalid UTF-8 becomes U+FFFD, `"`, `\` and control characters
/// are escaped.
fn push_json_str(out: &mut Vec<u8>, s: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    for chunk in s.utf8_chunks() {
        for &b in chunk.valid().as_bytes() {
            match b {
                b'"' | b'\\' => out.extend_from_slice(&[b'\\', b]),
                0..=0x1f => out.extend_from_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(b >> 4)],
                    HEX[usize::from(b & 15)],
                ]),
                _ => out.push(b),
            }
        }
        if !chunk.invalid().is_empty() {
            out.extend_from_slice("\u{fffd}".as_bytes());
        }
    }
    out.push(b'"');
}

/// `v` in lowercase hex without leading zeros (at least one digit).
fn push_hex_u64<S: Sink>(out: &mut S, v: u64) {
    out.put_fmt(format_args!("{v:x}"));
}

/// Bytes in lowercase hex, two digits each.
fn push_hex<S: Sink>(out: &mut S, b: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 64];
    for chunk in b.chunks(32) {
        for (i, byte) in chunk.iter().enumerate() {
            buf[2 * i] = HEX[usize::from(byte >> 4)];
            buf[2 * i + 1] = HEX[usize::from(byte & 15)];
        }
        out.put(std::str::from_utf8(&buf[..2 * chunk.len()]).unwrap_or(""));
    }
}

struct Compiler<'a> {
    types: &'a TypeTable,
    ops: Vec<Op>,
    enums: Vec<EnumNames>,
    /// Index in `enums` of each enum type met (an enum used a thousand times is one table).
    enum_index: HashMap<TypeId, u32>,
    /// Types, members and elements visited (budget: [`limits::PLAN_MAX_VISITS`]).
    visits: usize,
    /// Memory charged to the plan (budget: [`limits::PLAN_MAX_BYTES`]).
    bytes: usize,
    /// The most text one sample can render to, JSON or pretty (budget:
    /// [`limits::PLAN_MAX_OUTPUT_BYTES`]).
    output: u64,
}

impl<'a> Compiler<'a> {
    fn new(types: &'a TypeTable) -> Self {
        Compiler {
            types,
            ops: Vec::new(),
            enums: Vec::new(),
            enum_index: HashMap::new(),
            visits: 0,
            bytes: 0,
            output: 0,
        }
    }

    /// Charges one step of the walk at nesting `depth`.
    fn visit(&mut self, depth: usize) -> Result<(), DecodeError> {
        self.visits += 1;
        if self.visits > limits::PLAN_MAX_VISITS {
            return Err(DecodeError::TooMuchWork);
        }
        if depth > MAX_DEPTH {
            return Err(DecodeError::TooDeep);
        }
        Ok(())
    }

    /// Charges `bytes` of plan memory.
    fn charge(&mut self, bytes: usize) -> Result<(), DecodeError> {
        self.bytes = self.bytes.saturating_add(bytes);
        if self.bytes > limits::PLAN_MAX_BYTES {
            return Err(DecodeError::TooLarge);
        }
        Ok(())
    }

    fn push(&mut self, op: Op) -> Result<(), DecodeError> {
        if self.ops.len() >= MAX_OPS {
            return Err(DecodeError::TooManyFields);
        }
        let keys = match &op {
            Op::Open { key, .. }
            | Op::Scalar { key, .. }
            | Op::ScalarRun { key, .. }
            | Op::Chars { key, .. }
            | Op::Opaque { key, .. } => 2 * key.json.len() + key.pretty.len(),
            Op::Close { .. } => 0,
        };
        self.charge(OP_COST + keys)?;
        self.charge_output(&op)?;
        self.ops.push(op);
        Ok(())
    }

    /// Charges the most text `op` can render to in one sample, in the larger of the two
    /// outputs: its keys, the pretty tree's indentation, and its value at its widest (a
    /// scalar or an enum's name, a string with every byte escaped, opaque bytes in hex).
    fn charge_output(&mut self, op: &Op) -> Result<(), DecodeError> {
        const LINE: u64 = 2 * MAX_DEPTH as u64 + 8;
        // The widest number (a 128-bit integer, a float, a bitfield) with its separators;
        // an enum's value is shown with its constant's name.
        let widest = |scalar: &Scalar| match scalar {
            Scalar::Enum(..) => 48 + limits::TYPE_MAX_NAME_LEN as u64,
            _ => 48,
        };
        let key = |k: &Key| (k.json.len() + k.pretty.len()) as u64;
        let cost = match op {
            Op::Open { key: k, .. } => Some(key(k) + LINE),
            Op::Close { .. } => Some(LINE),
            Op::Scalar { key: k, scalar, .. } => Some(key(k) + LINE + widest(scalar)),
            Op::ScalarRun {
                key: k,
                count,
                scalar,
                ..
            } => count
                .checked_mul(LINE + widest(scalar))
                .and_then(|v| v.checked_add(key(k))),
            Op::Chars { key: k, len, .. } => len
                .checked_mul(6)
                .and_then(|v| v.checked_add(key(k) + LINE)),
            Op::Opaque { key: k, size, .. } => size
                .checked_mul(2)
                .and_then(|v| v.checked_add(key(k) + LINE)),
        };
        self.output = cost
            .and_then(|c| self.output.checked_add(c))
            .ok_or(DecodeError::OutputTooLarge)?;
        if self.output > limits::PLAN_MAX_OUTPUT_BYTES {
            return Err(DecodeError::OutputTooLarge);
        }
        Ok(())
    }

    /// The scalar kind of a type, if it is one.
    fn scalar(&mut self, ty: TypeId) -> Result<Option<Scalar>, DecodeError> {
        let types = self.types;
        let rty = types.resolve(ty);
        Ok(match types.get(rty) {
            Some(Type::Base { size, encoding, .. }) => {
                let n = u8::try_from(*size)
                    .ok()
                    .filter(|n| [1, 2, 4, 8, 16].contains(n));
                match encoding {
                    BaseEncoding::Signed | BaseEncoding::SignedChar => n.map(Scalar::Int),
                    BaseEncoding::Unsigned | BaseEncoding::UnsignedChar => n.map(Scalar::UInt),
                    BaseEncoding::Bool => Some(Scalar::Bool),
                    BaseEncoding::Float => match size {
                        4 => Some(Scalar::F32),
                        8 => Some(Scalar::F64),
                        _ => u8::try_from(*size)
                            .ok()
                            .map(|n| Scalar::RawFloat(n.min(16))),
                    },
                }
            }
            // 8 bytes on 64-bit guests, 4 on 32-bit ones; other sizes are opaque bytes.
            Some(Type::Pointer { size, .. }) => match size {
                4 => Some(Scalar::Ptr(4)),
                8 => Some(Scalar::Ptr(8)),
                _ => None,
            },
            Some(Type::Enum {
                size,
                signed,
                enumerators,
                ..
            }) => {
                let Some(n) = u8::try_from(*size)
                    .ok()
                    .filter(|n| [1, 2, 4, 8].contains(n))
                else {
                    return Ok(None);
                };
                let idx = match self.enum_index.get(&rty) {
                    Some(&idx) => idx,
                    None => {
                        let cost = enumerators
                            .iter()
                            .map(|e| 48 + e.name.len())
                            .fold(0usize, usize::saturating_add);
                        self.charge(cost)?;
                        let mut names: EnumNames = enumerators
                            .iter()
                            .map(|e| (e.value, Box::from(escape(&e.name))))
                            .collect();
                        // Stable: of equal values, the first declared stays first.
                        names.sort_by_key(|(v, _)| *v);
                        let idx = u32::try_from(self.enums.len())
                            .map_err(|_| DecodeError::TooManyFields)?;
                        self.enums.push(names);
                        self.enum_index.insert(rty, idx);
                        idx
                    }
                };
                Some(Scalar::Enum(n, *signed, idx))
            }
            _ => None,
        })
    }

    /// Arrays of plain `char` are text; of `u8`/`unsigned char`, bytes (numbers).
    fn is_char(&self, ty: TypeId) -> bool {
        self.types.is_text_char(ty)
    }

    /// An error naming the type whose offsets overflow.
    fn overflow(&self, ty: TypeId) -> DecodeError {
        DecodeError::Overflow(self.types.type_name(ty))
    }

    fn value(
        &mut self,
        key: Key,
        ty: TypeId,
        offset: u64,
        depth: usize,
    ) -> Result<(), DecodeError> {
        self.visit(depth)?;
        let types = self.types;
        let rty = types.resolve(ty);
        if let Some(scalar) = self.scalar(rty)? {
            offset
                .checked_add(scalar.size())
                .ok_or_else(|| self.overflow(ty))?;
            return self.push(Op::Scalar {
                key,
                offset,
                scalar,
                bits: None,
            });
        }
        match types.get(rty).ok_or(DecodeError::NoSuchType(rty.0))? {
            Type::Aggregate { members, kind, .. } => {
                self.push(Op::Open { key, array: false })?;
                self.members(rty, members, *kind, offset, depth)?;
                self.push(Op::Close { array: false })
            }
            Type::Array { element, dims } => self.array(key, *element, dims, offset, depth),
            Type::Opaque { size, .. } => {
                let size = size.unwrap_or(0);
                offset.checked_add(size).ok_or_else(|| self.overflow(ty))?;
                self.push(Op::Opaque { key, offset, size })
            }
            _ => self.push(Op::Opaque {
                key,
                offset,
                size: 0,
            }),
        }
    }

    fn members(
        &mut self,
        owner: TypeId,
        members: &[Member],
        _kind: AggregateKind,
        base: u64,
        depth: usize,
    ) -> Result<(), DecodeError> {
        for m in members {
            // Every member counts, those that emit nothing (anonymous, padding) too.
            self.visit(depth)?;
            match (&m.name, m.bitfield) {
                (_, Some(bf)) => {
                    let Some(scalar) = self.scalar(m.ty)? else {
                        continue;
                    };
                    let name = m.name.as_deref().unwrap_or("");
                    if name.is_empty() {
                        continue; // unnamed padding bitfield
                    }
                    if !(1..=64).contains(&bf.bit_size) {
                        return Err(DecodeError::Malformed(self.types.type_name(owner)));
                    }
                    // The bytes that cover the field must be addressable.
                    let bit_offset = u32::try_from(bf.bit_offset)
                        .ok()
                        .filter(|b| {
                            base.checked_add(u64::from(*b / 8) + 9).is_some()
                                && b.checked_add(u32::from(bf.bit_size)).is_some()
                        })
                        .ok_or_else(|| self.overflow(owner))?;
                    self.push(Op::Scalar {
                        key: Key::named(name),
                        offset: base,
                        scalar,
                        bits: Some((bit_offset, bf.bit_size)),
                    })?;
                }
                (Some(name), None) => {
                    let at = base
                        .checked_add(m.offset)
                        .ok_or_else(|| self.overflow(owner))?;
                    self.value(Key::named(name), m.ty, at, depth + 1)?;
                }
                (None, None) => {
                    // Anonymous struct/union: its members belong to the enclosing object, as
                    // in C (`s.field` reaches through the anonymous member).
                    let r = self.types.resolve(m.ty);
                    if let Some(Type::Aggregate { members, kind, .. }) = self.types.get(r) {
                        let at = base
                            .checked_add(m.offset)
                            .ok_or_else(|| self.overflow(owner))?;
                        self.members(r, members, *kind, at, depth + 1)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn array(
        &mut self,
        key: Key,
        element: TypeId,
        dims: &[ArrayBound],
        offset: u64,
        depth: usize,
    ) -> Result<(), DecodeError> {
        self.visit(depth)?;
        let Some((first, rest)) = dims.split_first() else {
            return self.value(key, element, offset, depth + 1);
        };
        let count = match first {
            ArrayBound::Count(n) => *n,
            ArrayBound::Flexible => {
                return self.push(Op::Opaque {
                    key,
                    offset,
                    size: 0,
                })
            }
        };
        if rest.is_empty() && self.is_char(element) {
            offset
                .checked_add(count)
                .ok_or_else(|| self.overflow(element))?;
            return self.push(Op::Chars {
                key,
                offset,
                len: count,
            });
        }
        let elem_size = {
            let inner = rest
                .iter()
                .map(|d| match d {
                    ArrayBound::Count(n) => *n,
                    ArrayBound::Flexible => 0,
                })
                .try_fold(1u64, |a, b| a.checked_mul(b));
            inner
                .and_then(|n| n.checked_mul(self.types.size_of(element).unwrap_or(0)))
                .ok_or_else(|| self.overflow(element))?
        };
        let shown = count.min(MAX_ARRAY_ELEMENTS);
        // The last element shown must be addressable: every offset below then is.
        shown
            .checked_mul(elem_size)
            .and_then(|n| offset.checked_add(n))
            .ok_or_else(|| self.overflow(element))?;
        if rest.is_empty() {
            if let Some(scalar) = self.scalar(element)? {
                shown
                    .checked_mul(scalar.size())
                    .and_then(|n| offset.checked_add(n))
                    .ok_or_else(|| self.overflow(element))?;
                return self.push(Op::ScalarRun {
                    key,
                    offset,
                    scalar,
                    count: shown,
                    total: count,
                });
            }
        }
        self.push(Op::Open { key, array: true })?;
        for i in 0..shown {
            // In range: checked above for the last element shown.
            let at = offset + i * elem_size;
            self.array(Key::index(i), element, rest, at, depth + 1)?;
        }
        self.push(Op::Close { array: true })
    }
}

/// A path to one scalar leaf of a type, e.g. `icsk.icsk_ca_state` or `srtt_us`, resolved to
/// its offset and kind once so reading it from each sample is a bounds-checked load.
#[derive(Debug, Clone)]
pub struct FieldPath {
    /// The path as written.
    pub path: String,
    offset: u64,
    scalar: Scalar,
    bits: Option<(u32, u8)>,
}

impl FieldPath {
    /// Resolves `path` (members separated by `.`, array elements as `[i]`; anonymous
    /// members are searched through) in type `ty`.
    pub fn resolve(types: &TypeTable, ty: TypeId, path: &str) -> Result<FieldPath, DecodeError> {
        let (offset, cur, bits) = Self::walk(types, ty, path)?;
        let mut c = Compiler::new(types);
        let scalar = c
            .scalar(cur)?
            .ok_or_else(|| DecodeError::NotScalar(path.to_string(), types.type_name(cur)))?;
        if let Some((_, width)) = bits {
            if !(1..=64).contains(&width) {
                return Err(DecodeError::Malformed(types.type_name(ty)));
            }
        }
        Ok(FieldPath {
            path: path.to_string(),
            offset,
            scalar,
            bits,
        })
    }

    /// Resolves `path` (as [`FieldPath::resolve`]) to any member, scalar or not: its byte
    /// offset in `ty` and its type. Bitfields have no byte offset and are refused.
    pub fn member(types: &TypeTable, ty: TypeId, path: &str) -> Result<(u64, TypeId), DecodeError> {
        match Self::walk(types, ty, path)? {
            (offset, member, None) => Ok((offset, member)),
            (_, member, Some(_)) => Err(DecodeError::NotScalar(
                path.to_string(),
                format!("a bitfield of {}", types.type_name(member)),
            )),
        }
    }

    /// Offset, type and bitfield position of the member at `path`.
    fn walk(types: &TypeTable, ty: TypeId, path: &str) -> Result<FoundMember, DecodeError> {
        let mut offset = 0u64;
        let mut cur = ty;
        let mut bits = None;
        for part in split_path(path) {
            let part = part.map_err(|p| DecodeError::NoSuchField(p, types.type_name(ty)))?;
            match part {
                PathPart::Index(i) => {
                    let r = types.resolve(cur);
                    let Some(Type::Array { element, dims }) = types.get(r) else {
                        return Err(DecodeError::NoSuchField(
                            format!("[{i}]"),
                            types.type_name(cur),
                        ));
                    };
                    let count = match dims.first() {
                        Some(ArrayBound::Count(n)) => *n,
                        _ => 0,
                    };
                    if i >= count {
                        return Err(DecodeError::NoSuchField(
                            format!("[{i}]"),
                            types.type_name(cur),
                        ));
                    }
                    // Peel one dimension: the element of `T[a][b]` at `[i]` is `T[b]`.
                    let overflow = || DecodeError::Overflow(types.type_name(cur));
                    let inner = dims[1..]
                        .iter()
                        .map(|d| match d {
                            ArrayBound::Count(n) => *n,
                            ArrayBound::Flexible => 0,
                        })
                        .try_fold(1u64, |a, b| a.checked_mul(b))
                        .ok_or_else(overflow)?;
                    let esize = inner
                        .checked_mul(types.size_of(*element).unwrap_or(0))
                        .ok_or_else(overflow)?;
                    offset = i
                        .checked_mul(esize)
                        .and_then(|d| offset.checked_add(d))
                        .ok_or_else(overflow)?;
                    if dims.len() > 1 {
                        // Walk into a synthesized view: keep the array type but offset; a
                        // second index resolves against the remaining dimensions.
                        return Self::resolve_rest(types, *element, &dims[1..], offset, path);
                    }
                    cur = *element;
                }
                PathPart::Member(name) => {
                    let (m_off, m_ty, m_bits) =
                        find_member(types, cur, &name)?.ok_or_else(|| {
                            DecodeError::NoSuchField(name.clone(), types.type_name(cur))
                        })?;
                    offset = offset
                        .checked_add(m_off)
                        .ok_or_else(|| DecodeError::Overflow(types.type_name(cur)))?;
                    cur = m_ty;
                    bits = m_bits;
                }
            }
        }
        Ok((offset, cur, bits))
    }

    fn resolve_rest(
        _types: &TypeTable,
        _element: TypeId,
        _dims: &[ArrayBound],
        _offset: u64,
        path: &str,
    ) -> Result<FoundMember, DecodeError> {
        Err(DecodeError::NotScalar(
            path.to_string(),
            "a multi-dimensional array (index every dimension in one field per column)".into(),
        ))
    }

    /// Reads the leaf from a sample.
    pub fn read(&self, bytes: &[u8]) -> Option<Leaf> {
        read_scalar(bytes, self.offset, self.scalar, self.bits)
    }

    /// The same field, under another name (as the user wrote it).
    pub fn named(mut self, path: &str) -> Self {
        self.path = path.to_string();
        self
    }

    /// Byte offset of the leaf in its mark (for bitfields, of the enclosing storage).
    pub fn offset(&self) -> u64 {
        self.offset
    }
}

enum PathPart {
    Member(String),
    Index(u64),
}

fn split_path(path: &str) -> Vec<Result<PathPart, String>> {
    let mut out = Vec::new();
    for seg in path.split(['.']).filter(|s| !s.is_empty()) {
        let seg = seg.trim();
        let (name, mut rest) = match seg.find('[') {
            Some(i) => (&seg[..i], &seg[i..]),
            None => (seg, ""),
        };
        let name = name.trim_start_matches("->");
        if !name.is_empty() {
            out.push(Ok(PathPart::Member(name.to_string())));
        }
        while let Some(stripped) = rest.strip_prefix('[') {
            match stripped.find(']') {
                Some(end) => {
                    match stripped[..end].trim().parse::<u64>() {
                        Ok(i) => out.push(Ok(PathPart::Index(i))),
                        Err(_) => out.push(Err(seg.to_string())),
                    }
                    rest = &stripped[end + 1..];
                }
                None => {
                    out.push(Err(seg.to_string()));
                    break;
                }
            }
        }
    }
    out
}

/// A member found by name: byte offset, type, and for bitfields (bit offset, width).
type FoundMember = (u64, TypeId, Option<(u32, u8)>);

/// Finds a member by name, searching through anonymous members; returns its offset from
/// the start of `ty`, its type, and for bitfields (bit offset from that start, width).
///
/// The search visits at most [`limits::MEMBER_LOOKUP_MAX_VISITS`] members (anonymous members
/// nested by value can make it exponential otherwise) and computes offsets with checked
/// arithmetic; either going wrong is an error, not a miss.
fn find_member(
    types: &TypeTable,
    ty: TypeId,
    name: &str,
) -> Result<Option<FoundMember>, DecodeError> {
    struct Search<'a> {
        types: &'a TypeTable,
        name: &'a str,
        visits: usize,
    }
    impl Search<'_> {
        fn search(&mut self, ty: TypeId, depth: usize) -> Result<Option<FoundMember>, DecodeError> {
            let types = self.types;
            if depth > MAX_DEPTH {
                return Err(DecodeError::TooDeep);
            }
            let Some(Type::Aggregate { members, .. }) = types.get(types.resolve(ty)) else {
                return Ok(None);
            };
            let overflow = || DecodeError::Overflow(types.type_name(ty));
            for m in members {
                self.visits += 1;
                if self.visits > limits::MEMBER_LOOKUP_MAX_VISITS {
                    return Err(DecodeError::LookupTooLong(self.name.to_string()));
                }
                match &m.name {
                    Some(n) if n == self.name => {
                        return Ok(Some(match m.bitfield {
                            Some(bf) => (
                                0,
                                m.ty,
                                Some((
                                    u32::try_from(bf.bit_offset).map_err(|_| overflow())?,
                                    bf.bit_size,
                                )),
                            ),
                            None => (m.offset, m.ty, None),
                        }));
                    }
                    None => {
                        if let Some((off, t, bits)) = self.search(m.ty, depth + 1)? {
                            return Ok(Some(match bits {
                                Some((b, w)) => {
                                    let base = m
                                        .offset
                                        .checked_mul(8)
                                        .and_then(|bits| u32::try_from(bits).ok())
                                        .and_then(|bits| bits.checked_add(b))
                                        .ok_or_else(overflow)?;
                                    (0, t, Some((base, w)))
                                }
                                None => (m.offset.checked_add(off).ok_or_else(overflow)?, t, None),
                            }));
                        }
                    }
                    _ => {}
                }
            }
            Ok(None)
        }
    }
    Search {
        types,
        name,
        visits: 0,
    }
    .search(ty, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmark_proto as vproto;
    use vmark_proto::{Bitfield, Enumerator, Member};

    fn table() -> (TypeTable, TypeId) {
        let mut t = TypeTable::new();
        let u32t = t.push(Type::Base {
            name: "unsigned int".into(),
            size: 4,
            encoding: BaseEncoding::Unsigned,
        });
        let i16t = t.push(Type::Base {
            name: "short".into(),
            size: 2,
            encoding: BaseEncoding::Signed,
        });
        let ch = t.push(Type::Base {
            name: "char".into(),
            size: 1,
            encoding: BaseEncoding::SignedChar,
        });
        let comm = t.push(Type::Array {
            element: ch,
            dims: vec![ArrayBound::Count(8)],
        });
        let arr = t.push(Type::Array {
            element: u32t,
            dims: vec![ArrayBound::Count(2)],
        });
        let anon = t.push(Type::Aggregate {
            kind: AggregateKind::Union,
            name: None,
            size: 4,
            members: vec![
                Member {
                    name: Some("as_u32".into()),
                    ty: u32t,
                    offset: 0,
                    bitfield: None,
                },
                Member {
                    name: Some("low".into()),
                    ty: i16t,
                    offset: 0,
                    bitfield: None,
                },
            ],
        });
        let s = t.push(Type::Aggregate {
            kind: AggregateKind::Struct,
            name: Some("demo".into()),
            size: 24,
            members: vec![
                Member {
                    name: Some("flag".into()),
                    ty: u32t,
                    offset: 0,
                    bitfield: Some(Bitfield {
                        bit_offset: 0,
                        bit_size: 1,
                    }),
                },
                Member {
                    name: Some("level".into()),
                    ty: i16t,
                    offset: 0,
                    bitfield: Some(Bitfield {
                        bit_offset: 1,
                        bit_size: 3,
                    }),
                },
                Member {
                    name: None,
                    ty: anon,
                    offset: 4,
                    bitfield: None,
                },
                Member {
                    name: Some("comm".into()),
                    ty: comm,
                    offset: 8,
                    bitfield: None,
                },
                Member {
                    name: Some("vals".into()),
                    ty: arr,
                    offset: 16,
                    bitfield: None,
                },
            ],
        });
        t.validate().unwrap();
        (t, s)
    }

    fn sample() -> Vec<u8> {
        let mut b = vec![0u8; 24];
        b[0] = 0b1011; // flag = 1, level = 0b101 = -3 as signed 3-bit
        b[4..8].copy_from_slice(&0xffff_fffeu32.to_le_bytes());
        b[8..13].copy_from_slice(b"bash\0");
        b[16..20].copy_from_slice(&7u32.to_le_bytes());
        b[20..24].copy_from_slice(&9u32.to_le_bytes());
        b
    }

    #[test]
    fn json_has_every_member_with_anonymous_members_flattened() {
        let (t, s) = table();
        let plan = Plan::compile(&t, s).unwrap();
        let json = plan.to_json(&sample());
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["flag"], 1);
        assert_eq!(v["level"], -3);
        assert_eq!(v["as_u32"], 0xffff_fffeu32);
        assert_eq!(v["low"], -2);
        assert_eq!(v["comm"], "bash");
        assert_eq!(v["vals"], serde_json::json!([7, 9]));
    }

    #[test]
    fn short_samples_render_nulls_not_panics() {
        let (t, s) = table();
        let plan = Plan::compile(&t, s).unwrap();
        for n in 0..24 {
            let json = plan.to_json(&sample()[..n]);
            serde_json::from_str::<serde_json::Value>(&json).unwrap();
            let _ = plan.to_pretty(&sample()[..n]);
        }
    }

    #[test]
    fn field_paths_reach_bitfields_and_anonymous_members() {
        let (t, s) = table();
        let b = sample();
        let read = |p: &str| FieldPath::resolve(&t, s, p).unwrap().read(&b).unwrap();
        assert_eq!(read("level"), Leaf::Int(-3));
        assert_eq!(read("low"), Leaf::Int(-2));
        assert_eq!(read("vals[1]"), Leaf::UInt(9));
        assert!(FieldPath::resolve(&t, s, "vals[2]").is_err());
        assert!(matches!(
            FieldPath::resolve(&t, s, "comm"),
            Err(DecodeError::NotScalar(..))
        ));
        assert!(FieldPath::resolve(&t, s, "nope").is_err());
    }

    #[test]
    fn byte_arrays_are_numbers_and_char_arrays_text() {
        let mut t = TypeTable::new();
        let ch = t.push(Type::Base {
            name: "char".into(),
            size: 1,
            encoding: BaseEncoding::SignedChar,
        });
        let uch = t.push(Type::Base {
            name: "unsigned char".into(),
            size: 1,
            encoding: BaseEncoding::UnsignedChar,
        });
        let u8_ = t.push(Type::Typedef {
            name: "u8".into(),
            target: uch,
        });
        let text = t.push(Type::Array {
            element: ch,
            dims: vec![ArrayBound::Count(4)],
        });
        let bytes = t.push(Type::Array {
            element: u8_,
            dims: vec![ArrayBound::Count(4)],
        });
        let member = |name: &str, ty, offset| Member {
            name: Some(name.into()),
            ty,
            offset,
            bitfield: None,
        };
        let s = t.push(Type::Aggregate {
            kind: AggregateKind::Struct,
            name: Some("addr".into()),
            size: 8,
            members: vec![member("name", text, 0), member("a8", bytes, 4)],
        });
        let plan = Plan::compile(&t, s).unwrap();
        // An IPv6-style address starting with 0 stays visible as bytes.
        assert_eq!(
            plan.to_json(b"ab\0\0\0\x09\xfd\x01"),
            r#"{"name":"ab","a8":[0,9,253,1]}"#
        );
    }

    #[test]
    fn pretty_reads_like_c() {
        let (t, s) = table();
        let plan = Plan::compile(&t, s).unwrap();
        let text = plan.to_pretty(&sample());
        assert!(text.starts_with("struct demo = {"), "{text}");
        assert!(text.contains("  comm = \"bash\""), "{text}");
        assert!(text.contains("  vals = [7, 9]"), "{text}");
    }

    /// A struct with a member of every kind the decoder knows: integers, enums and floats
    /// of every size, pointers, bitfields of every width (some straddling 8 bytes), runs,
    /// strings, opaque bytes, nested and anonymous aggregates, odd names.
    fn zoo() -> (TypeTable, TypeId) {
        let mut t = TypeTable::new();
        let base = |t: &mut TypeTable, name: &str, size: u64, encoding| {
            t.push(Type::Base {
                name: name.into(),
                size,
                encoding,
            })
        };
        let mut scalars = Vec::new();
        for size in [1, 2, 4, 8, 16] {
            scalars.push(base(&mut t, "int", size, BaseEncoding::Signed));
            scalars.push(base(&mut t, "unsigned", size, BaseEncoding::Unsigned));
        }
        scalars.push(base(&mut t, "char", 1, BaseEncoding::SignedChar));
        scalars.push(base(&mut t, "unsigned char", 1, BaseEncoding::UnsignedChar));
        scalars.push(base(&mut t, "_Bool", 1, BaseEncoding::Bool));
        for size in [4, 8, 16, 10, 2] {
            scalars.push(base(&mut t, "float", size, BaseEncoding::Float));
        }
        let void = t.push(Type::Void);
        scalars.push(t.push(Type::Pointer {
            target: void,
            size: 8,
        }));
        // A 32-bit guest's pointer.
        scalars.push(t.push(Type::Pointer {
            target: void,
            size: 4,
        }));
        for (size, signed) in [
            (1, true),
            (2, false),
            (4, true),
            (4, false),
            (8, true),
            (8, false),
        ] {
            scalars.push(t.push(Type::Enum {
                name: Some("e".into()),
                size,
                signed,
                enumerators: vec![Enumerator {
                    name: "ONE".into(),
                    value: 1,
                }],
            }));
        }
        let mut members = Vec::new();
        let mut offset = 0u64;
        fn add(members: &mut Vec<Member>, offset: &mut u64, name: String, ty: TypeId, size: u64) {
            members.push(Member {
                name: Some(name),
                ty,
                offset: *offset,
                bitfield: None,
            });
            *offset += size;
        }
        for (i, &ty) in scalars.iter().enumerate() {
            let size = t.size_of(ty).unwrap();
            add(&mut members, &mut offset, format!("s{i}"), ty, size);
            for n in [0, 1, 3] {
                let arr = t.push(Type::Array {
                    element: ty,
                    dims: vec![ArrayBound::Count(n)],
                });
                add(
                    &mut members,
                    &mut offset,
                    format!("a{i}_{n}"),
                    arr,
                    size * n,
                );
            }
            let grid = t.push(Type::Array {
                element: ty,
                dims: vec![ArrayBound::Count(2), ArrayBound::Count(3)],
            });
            add(&mut members, &mut offset, format!("g{i}"), grid, size * 6);
        }
        // Longer than the rendering limit.
        let long = t.push(Type::Array {
            element: scalars[1],
            dims: vec![ArrayBound::Count(MAX_ARRAY_ELEMENTS + 10)],
        });
        add(
            &mut members,
            &mut offset,
            "long".into(),
            long,
            MAX_ARRAY_ELEMENTS + 10,
        );
        let opaque = t.push(Type::Opaque {
            kind: AggregateKind::Struct,
            name: Some("hidden".into()),
            size: Some(40),
        });
        add(&mut members, &mut offset, "opaque".into(), opaque, 40);
        let unsized_opaque = t.push(Type::Opaque {
            kind: AggregateKind::Struct,
            name: Some("declared".into()),
            size: None,
        });
        add(
            &mut members,
            &mut offset,
            "declared".into(),
            unsized_opaque,
            0,
        );
        add(
            &mut members,
            &mut offset,
            "we\"ird\\nämé\u{1}".into(),
            scalars[2],
            4,
        );
        // Bitfields of every width at several positions, for every scalar kind.
        let bits_start = offset;
        let mut bit = 0u64;
        for (k, &ty) in scalars.iter().enumerate() {
            for width in [1u8, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 40, 57, 63, 64] {
                members.push(Member {
                    name: Some(format!("b{k}_{width}_{bit}")),
                    ty,
                    offset: bits_start + bit / 8,
                    bitfield: Some(vproto::Bitfield {
                        bit_offset: bits_start * 8 + bit,
                        bit_size: width,
                    }),
                });
                bit += u64::from(width) + (bit % 5);
            }
        }
        members.push(Member {
            name: None,
            ty: scalars[4],
            offset: bits_start + bit / 8,
            bitfield: Some(vproto::Bitfield {
                bit_offset: bits_start * 8 + bit,
                bit_size: 3,
            }),
        });
        offset = bits_start + bit.div_ceil(8) + 8;
        let inner = t.push(Type::Aggregate {
            kind: AggregateKind::Union,
            name: None,
            size: 8,
            members: vec![
                Member {
                    name: Some("u64".into()),
                    ty: scalars[7],
                    offset: 0,
                    bitfield: None,
                },
                Member {
                    name: Some("hi".into()),
                    ty: scalars[4],
                    offset: 4,
                    bitfield: None,
                },
            ],
        });
        members.push(Member {
            name: None,
            ty: inner,
            offset,
            bitfield: None,
        });
        let nested = t.push(Type::Array {
            element: inner,
            dims: vec![ArrayBound::Count(2)],
        });
        add(&mut members, &mut offset, "nested".into(), nested, 16);
        add(&mut members, &mut offset, "named_union".into(), inner, 8);
        let flexible = t.push(Type::Array {
            element: scalars[0],
            dims: vec![ArrayBound::Flexible],
        });
        members.push(Member {
            name: Some("flex".into()),
            ty: flexible,
            offset,
            bitfield: None,
        });
        let s = t.push(Type::Aggregate {
            kind: AggregateKind::Struct,
            name: Some("zoo".into()),
            size: offset + 8,
            members,
        });
        t.validate().unwrap();
        (t, s)
    }

    /// Samples that hit the interesting values: zeros, all ones, the extremes of signed
    /// integers, NaN and infinite floats, random bytes.
    fn patterns(size: usize) -> Vec<Vec<u8>> {
        let mut out = vec![
            vec![0u8; size],
            vec![0xff; size],
            vec![0x80; size],
            vec![0x7f; size],
        ];
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..6 {
            out.push(
                (0..size)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        x as u8
                    })
                    .collect(),
            );
        }
        out.push((0..size).map(|i| (i * 37 % 251) as u8).collect());
        out.push(
            (0..size)
                .map(|i| if i % 3 == 0 { b'"' } else { b'\\' })
                .collect(),
        );
        out
    }

    #[test]
    fn fast_json_matches_the_reference_byte_for_byte() {
        let (t, s) = zoo();
        let plan = Plan::compile(&t, s).unwrap();
        let size = plan.size() as usize;
        let mut out = Vec::new();
        for bytes in patterns(size) {
            let fast = plan.to_json(&bytes);
            assert_eq!(fast, plan.to_json_reference(&bytes));
            serde_json::from_str::<serde_json::Value>(&fast).unwrap();
            // Appends, reusing the buffer.
            out.clear();
            out.extend_from_slice(b"prefix ");
            plan.write_json(&bytes, &mut out);
            assert_eq!(out, format!("prefix {fast}").as_bytes());
            // Short samples: every length near the bitfields, then a stride.
            let lens = (0..size).step_by(61).chain(size.saturating_sub(200)..size);
            for n in lens {
                assert_eq!(
                    plan.to_json(&bytes[..n]),
                    plan.to_json_reference(&bytes[..n]),
                    "sample cut to {n} bytes"
                );
            }
        }
    }

    #[test]
    fn a_32_bit_guests_pointer_is_four_bytes() {
        // struct { void *p; u32 after; } of an i386 module: 8 bytes, `after` at 4.
        let mut t = TypeTable::new();
        let void = t.push(Type::Void);
        let ptr = t.push(Type::Pointer {
            target: void,
            size: 4,
        });
        let u = t.push(Type::Base {
            name: "unsigned int".into(),
            size: 4,
            encoding: BaseEncoding::Unsigned,
        });
        let member = |name: &str, ty, offset| Member {
            name: Some(name.into()),
            ty,
            offset,
            bitfield: None,
        };
        let s = t.push(Type::Aggregate {
            kind: AggregateKind::Struct,
            name: Some("p32".into()),
            size: 8,
            members: vec![member("p", ptr, 0), member("after", u, 4)],
        });
        let plan = Plan::compile(&t, s).unwrap();
        let bytes = [0x10, 0x00, 0x80, 0xc8, 0xff, 0xff, 0xff, 0xff];
        let json = r#"{"p":"0xc8800010","after":4294967295}"#;
        assert_eq!(plan.to_json(&bytes), json);
        assert_eq!(plan.to_json_reference(&bytes), json);
        assert!(plan.to_pretty(&bytes).contains("p = 0xc8800010"));
    }

    #[test]
    fn slow_path_when_out_of_room_matches_the_reference() {
        let (t, s) = zoo();
        let mut plan = Plan::compile(&t, s).unwrap();
        plan.json.starve();
        for bytes in patterns(plan.size() as usize) {
            assert_eq!(plan.to_json(&bytes), plan.to_json_reference(&bytes));
            assert_eq!(
                plan.to_json(&bytes[..100]),
                plan.to_json_reference(&bytes[..100])
            );
        }
        let (t, s) = table();
        let mut plan = Plan::compile(&t, s).unwrap();
        plan.json.starve();
        assert_eq!(plan.to_json(&sample()), plan.to_json_reference(&sample()));
    }

    #[test]
    fn scalars_and_empty_types_render_like_the_reference() {
        let mut t = TypeTable::new();
        let u = t.push(Type::Base {
            name: "unsigned int".into(),
            size: 4,
            encoding: BaseEncoding::Unsigned,
        });
        let empty = t.push(Type::Aggregate {
            kind: AggregateKind::Struct,
            name: Some("empty".into()),
            size: 0,
            members: vec![],
        });
        for ty in [u, empty] {
            let plan = Plan::compile(&t, ty).unwrap();
            for n in 0..=4 {
                let b = [1, 2, 3, 4];
                assert_eq!(plan.to_json(&b[..n]), plan.to_json_reference(&b[..n]));
            }
        }
    }

    /// `struct s0 { struct s1; struct s1; }` ... `struct s{n-1} { struct sn; struct sn; }`,
    /// all anonymous members, `sn` empty: 2^n paths to walk that emit nothing. Valid.
    fn doubled_chain(n: usize, named: bool) -> (TypeTable, TypeId) {
        let mut t = TypeTable::new();
        let mut cur = t.push(Type::Aggregate {
            kind: AggregateKind::Struct,
            name: Some("leaf".into()),
            size: 0,
            members: vec![],
        });
        for _ in 0..n {
            let member = |i: &str| Member {
                name: named.then(|| i.to_string()),
                ty: cur,
                offset: 0,
                bitfield: None,
            };
            cur = t.push(Type::Aggregate {
                kind: AggregateKind::Union,
                name: None,
                size: 0,
                members: vec![member("a"), member("b")],
            });
        }
        t.validate().unwrap();
        (t, cur)
    }

    #[test]
    fn compiling_types_nested_twice_by_value_is_bounded() {
        // 2^30 anonymous descents that emit no op: the op limit never fires, the visit
        // budget does.
        let (t, root) = doubled_chain(30, false);
        let mut c = Compiler::new(&t);
        assert_eq!(
            c.value(Key::default(), root, 0, 0),
            Err(DecodeError::TooMuchWork)
        );
        assert!(c.visits <= limits::PLAN_MAX_VISITS + 1);
        assert_eq!(
            Plan::compile(&t, root).unwrap_err(),
            DecodeError::TooMuchWork
        );
        // Named members emit ops: one of the plan's limits stops it.
        let (t, root) = doubled_chain(30, true);
        let err = Plan::compile(&t, root).unwrap_err();
        assert!(
            matches!(
                err,
                DecodeError::TooMuchWork
                    | DecodeError::TooLarge
                    | DecodeError::TooManyFields
                    | DecodeError::OutputTooLarge
            ),
            "{err}"
        );
        // A small one compiles as before.
        let (t, root) = doubled_chain(4, true);
        let plan = Plan::compile(&t, root).unwrap();
        assert_eq!(plan.op_count(), 2 * ((1 << 5) - 1));
    }

    #[test]
    fn member_lookup_through_nested_anonymous_members_is_bounded() {
        let (t, root) = doubled_chain(30, false);
        assert_eq!(
            FieldPath::resolve(&t, root, "missing").unwrap_err(),
            DecodeError::LookupTooLong("missing".into())
        );
        let (t, root) = doubled_chain(5, false);
        assert!(matches!(
            FieldPath::resolve(&t, root, "missing"),
            Err(DecodeError::NoSuchField(..))
        ));
    }

    #[test]
    fn arrays_of_arrays_of_structs_are_bounded() {
        // struct a { struct b x[4096]; } struct b { struct c y[4096]; } ...: 4096^k elements.
        let mut t = TypeTable::new();
        let mut cur = t.push(Type::Aggregate {
            kind: AggregateKind::Struct,
            name: Some("leaf".into()),
            size: 0,
            members: vec![],
        });
        for _ in 0..4 {
            let arr = t.push(Type::Array {
                element: cur,
                dims: vec![ArrayBound::Count(4096)],
            });
            cur = t.push(Type::Aggregate {
                kind: AggregateKind::Struct,
                name: Some("s".into()),
                size: 0,
                members: vec![Member {
                    name: Some("x".into()),
                    ty: arr,
                    offset: 0,
                    bitfield: None,
                }],
            });
        }
        t.validate().unwrap();
        assert!(Plan::compile(&t, cur).is_err());
    }

    #[test]
    fn a_sample_that_would_render_to_tens_of_mib_is_refused_at_compile_time() {
        // struct big { unsigned char raw[60 MiB]; }: small to describe, valid, and every
        // sample would be 120 MiB of hex (the opaque run) without an output budget.
        let mut t = TypeTable::new();
        let opaque = t.push(Type::Opaque {
            kind: AggregateKind::Struct,
            name: Some("blob".into()),
            size: Some(60 << 20),
        });
        let big = t.push(Type::Aggregate {
            kind: AggregateKind::Struct,
            name: Some("big".into()),
            size: 60 << 20,
            members: vec![Member {
                name: Some("raw".into()),
                ty: opaque,
                offset: 0,
                bitfield: None,
            }],
        });
        t.validate().unwrap();
        assert!(matches!(
            Plan::compile(&t, big),
            Err(DecodeError::OutputTooLarge)
        ));
        // Many scalars in nested arrays are counted at their widest as well.
        let int = t.push(Type::Base {
            name: "int".into(),
            size: 4,
            encoding: BaseEncoding::Signed,
        });
        let row = t.push(Type::Array {
            element: int,
            dims: vec![ArrayBound::Count(4096)],
        });
        let rows = t.push(Type::Aggregate {
            kind: AggregateKind::Struct,
            name: Some("row".into()),
            size: 4 * 4096,
            members: vec![Member {
                name: Some("v".into()),
                ty: row,
                offset: 0,
                bitfield: None,
            }],
        });
        let table = t.push(Type::Array {
            element: rows,
            dims: vec![ArrayBound::Count(1024)],
        });
        assert!(matches!(
            Plan::compile(&t, table),
            Err(DecodeError::OutputTooLarge)
        ));
    }

    /// Tables validation refuses, handed to the compiler anyway.
    fn hostile_tables() -> Vec<(TypeTable, TypeId)> {
        let int = || Type::Base {
            name: "int".into(),
            size: 4,
            encoding: BaseEncoding::Signed,
        };
        let agg = |size, members| Type::Aggregate {
            kind: AggregateKind::Struct,
            name: Some("h".into()),
            size,
            members,
        };
        let member = |name: Option<&str>, ty, offset, bitfield| Member {
            name: name.map(Into::into),
            ty: TypeId(ty),
            offset,
            bitfield,
        };
        let mut out = Vec::new();
        // Anonymous self-containment; named self-containment; typedef cycle.
        for name in [None, Some("me")] {
            let mut t = TypeTable::new();
            t.push(agg(4, vec![member(name, 0, 0, None)]));
            out.push((t, TypeId(0)));
        }
        let mut t = TypeTable::new();
        t.push(Type::Typedef {
            name: "a".into(),
            target: TypeId(1),
        });
        t.push(Type::Typedef {
            name: "b".into(),
            target: TypeId(0),
        });
        out.push((t, TypeId(0)));
        // An array of itself; an array of a huge number of dimensions.
        let mut t = TypeTable::new();
        t.push(Type::Array {
            element: TypeId(0),
            dims: vec![ArrayBound::Count(2)],
        });
        out.push((t, TypeId(0)));
        let mut t = TypeTable::new();
        t.push(int());
        t.push(Type::Array {
            element: TypeId(0),
            dims: vec![ArrayBound::Count(1); 100_000],
        });
        out.push((t, TypeId(1)));
        // Dangling ids; bitfields of width 0 and 200 and at absurd offsets; offsets near
        // 2^64; array sizes that overflow.
        let mut t = TypeTable::new();
        t.push(int());
        t.push(agg(
            u64::MAX,
            vec![
                member(Some("dangling"), 99, 0, None),
                member(
                    Some("w0"),
                    0,
                    0,
                    Some(vmark_proto::Bitfield {
                        bit_offset: 0,
                        bit_size: 0,
                    }),
                ),
            ],
        ));
        out.push((t, TypeId(1)));
        for (bit_offset, bit_size) in [(0, 200), (u64::MAX - 3, 3), (u64::from(u32::MAX), 8)] {
            let mut t = TypeTable::new();
            t.push(int());
            t.push(agg(
                8,
                vec![member(
                    Some("b"),
                    0,
                    0,
                    Some(vmark_proto::Bitfield {
                        bit_offset,
                        bit_size,
                    }),
                )],
            ));
            out.push((t, TypeId(1)));
        }
        let mut t = TypeTable::new();
        t.push(int());
        t.push(agg(
            u64::MAX,
            vec![member(Some("x"), 2, u64::MAX - 2, None)],
        ));
        t.push(agg(
            u64::MAX,
            vec![member(Some("y"), 0, u64::MAX - 2, None)],
        ));
        out.push((t, TypeId(1)));
        let mut t = TypeTable::new();
        t.push(int());
        t.push(Type::Array {
            element: TypeId(0),
            dims: vec![ArrayBound::Count(3), ArrayBound::Count(u64::MAX / 2)],
        });
        t.push(agg(u64::MAX, vec![member(Some("a"), 1, 16, None)]));
        out.push((t, TypeId(2)));
        let mut t = TypeTable::new();
        t.push(int());
        t.push(Type::Array {
            element: TypeId(0),
            dims: vec![ArrayBound::Count(8)],
        });
        t.push(agg(u64::MAX, vec![member(None, 3, u64::MAX - 8, None)]));
        t.push(agg(64, vec![member(Some("inner"), 1, 4, None)]));
        out.push((t, TypeId(2)));
        out
    }

    #[test]
    fn compiling_any_table_never_panics_nor_wraps() {
        for (i, (t, ty)) in hostile_tables().into_iter().enumerate() {
            assert!(t.validate().is_err(), "table {i} is valid");
            match Plan::compile(&t, ty) {
                Ok(plan) => {
                    for n in [0, 3, 64] {
                        let b = vec![0xa5u8; n];
                        let json = plan.to_json(&b);
                        serde_json::from_str::<serde_json::Value>(&json)
                            .unwrap_or_else(|e| panic!("table {i}: {e}: {json}"));
                        assert_eq!(json, plan.to_json_reference(&b));
                        let _ = plan.to_pretty(&b);
                    }
                }
                Err(e) => assert!(!e.to_string().is_empty()),
            }
            let _ = FieldPath::resolve(&t, ty, "b");
            let _ = FieldPath::resolve(&t, ty, "inner[7]");
            let _ = FieldPath::member(&t, ty, "x.y");
        }
    }

    #[test]
    fn offsets_that_would_wrap_are_errors() {
        let tables = hostile_tables();
        let n = tables.len();
        // The member at 2^64 - 2 holding another at 2^64 - 2.
        let (t, ty) = &tables[n - 3];
        assert!(matches!(
            Plan::compile(t, *ty),
            Err(DecodeError::Overflow(_))
        ));
        assert!(matches!(
            FieldPath::member(t, *ty, "x.y"),
            Err(DecodeError::Overflow(_))
        ));
        // Dimensions whose product overflows.
        let (t, ty) = &tables[n - 2];
        assert!(matches!(
            Plan::compile(t, *ty),
            Err(DecodeError::Overflow(_))
        ));
        // An anonymous member near 2^64 holding an array.
        let (t, ty) = &tables[n - 1];
        assert!(matches!(
            Plan::compile(t, *ty),
            Err(DecodeError::Overflow(_))
        ));
        assert!(matches!(
            FieldPath::resolve(t, *ty, "inner[7]"),
            Err(DecodeError::Overflow(_))
        ));
    }

    #[test]
    fn an_enum_used_many_times_is_one_table() {
        let mut t = TypeTable::new();
        let e = t.push(Type::Enum {
            name: Some("state".into()),
            size: 4,
            signed: false,
            enumerators: (0..10_000)
                .rev()
                .map(|v| Enumerator {
                    name: format!("S{v}"),
                    value: v,
                })
                .chain([Enumerator {
                    name: "DUP".into(),
                    value: 7,
                }])
                .collect(),
        });
        let members = (0..1000)
            .map(|i| Member {
                name: Some(format!("m{i}")),
                ty: e,
                offset: 4 * i,
                bitfield: None,
            })
            .collect();
        let s = t.push(Type::Aggregate {
            kind: AggregateKind::Struct,
            name: Some("many".into()),
            size: 4000,
            members,
        });
        t.validate().unwrap();
        let plan = Plan::compile(&t, s).unwrap();
        assert_eq!(plan.enums.len(), 1);
        let mut b = vec![0u8; 4000];
        b[..4].copy_from_slice(&7u32.to_le_bytes());
        b[4..8].copy_from_slice(&20_000u32.to_le_bytes());
        let text = plan.to_pretty(&b);
        // The first declared of equal values, as before.
        assert!(text.contains("m0 = 7 (S7)\n"), "{}", &text[..200]);
        assert!(text.contains("m1 = 20000\n"), "{}", &text[..200]);
        assert!(text.contains("m2 = 0 (S0)\n"));
    }

    #[test]
    fn guest_names_are_escaped_in_the_pretty_tree_and_exact_in_json() {
        let mut t = TypeTable::new();
        let e = t.push(Type::Enum {
            name: None,
            size: 4,
            signed: false,
            enumerators: vec![Enumerator {
                name: "ON\x1b]0;pwned\x07".into(),
                value: 1,
            }],
        });
        let evil: String = (0u8..0x20)
            .map(char::from)
            .chain("\"\\\u{7f}\u{202e}".chars())
            .collect();
        let s = t.push(Type::Aggregate {
            kind: AggregateKind::Struct,
            name: Some("x\x1b[2Jy".into()),
            size: 8,
            members: vec![
                Member {
                    name: Some(evil.clone()),
                    ty: e,
                    offset: 0,
                    bitfield: None,
                },
                Member {
                    name: Some("ok\r".into()),
                    ty: e,
                    offset: 4,
                    bitfield: None,
                },
            ],
        });
        t.validate().unwrap();
        let plan = Plan::compile(&t, s).unwrap();
        let b = [1u8, 0, 0, 0, 1, 0, 0, 0];
        let text = plan.to_pretty(&b);
        assert!(
            !text
                .chars()
                .any(|c| c != '\n' && vmark_proto::text::is_unsafe_char(c)),
            "{text:?}"
        );
        assert!(text.starts_with("struct x\\x1b[2Jy = {"), "{text}");
        assert!(text.contains("(ON\\x1b]0;pwned\\x07)"), "{text}");
        // JSON: every control character escaped, the names exactly the guest's.
        let json = plan.to_json(&b);
        assert!(!json.bytes().any(|c| c < 0x20), "{json:?}");
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v[evil.as_str()], 1);
        assert_eq!(v["ok\r"], 1);
        assert_eq!(json, plan.to_json_reference(&b));
        // Errors quoting names escape them.
        let err = FieldPath::resolve(&t, s, "no\x1bpe")
            .unwrap_err()
            .to_string();
        assert!(
            !err.chars().any(vmark_proto::text::is_unsafe_char),
            "{err:?}"
        );
    }

    #[test]
    fn plans_can_be_shared_between_threads() {
        fn shareable<T: Send + Sync + 'static>() {}
        shareable::<Plan>();
        shareable::<std::sync::Arc<Plan>>();
        shareable::<FieldPath>();
    }
}
