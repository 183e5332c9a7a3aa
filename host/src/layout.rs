//! Struct and union layouts from a [`TypeTable`]: a flat member list with absolute offsets,
//! a pahole-style text rendering and a documented JSON form.
//!
//! Works on the type model only, so it serves `vmark inspect` (types from DWARF) as well as
//! anything that holds a manifest's table.
//!
//! # JSON form (`vmark inspect FILE --type NAME --json`)
//!
//! ```text
//! {
//!   "name": "struct tcp_sock",      C spelling of the type
//!   "kind": "struct" | "union",
//!   "size": 2240,                   sizeof, bytes
//!   "members": [ MEMBER, ... ]      pre-order, in declaration order
//! }
//! MEMBER = {
//!   "name":   "snd_cwnd" | null,    null for an anonymous struct/union member
//!   "path":   "a.b",                C access path from the outermost type (anonymous
//!                                   levels add nothing; "" for a top-level anonymous member)
//!   "type":   "u32",                C spelling of the member's type ("union {...}" for an
//!                                   anonymous one)
//!   "decl":   "u32 snd_cwnd",       the C declaration (shows arrays, function pointers)
//!   "offset": 1540,                 bytes from the start of the OUTERMOST type; for a
//!                                   bitfield, the byte holding its first bit
//!   "size":   4 | null,             sizeof the member's type (for a bitfield: of its declared
//!                                   type, the storage unit); null when unknown (flexible
//!                                   arrays are 0)
//!   "depth":  0,                    nesting level: members of an expanded struct/union
//!                                   follow it with depth + 1
//!   "bit_offset": 12345,            bitfields only: first bit, counted from bit 0 of the
//!                                   OUTERMOST type, little-endian bit numbering
//!   "bit_size": 3,                  bitfields only: width in bits
//!   "anonymous": true,              only on anonymous struct/union members
//!   "expanded": true                only on members whose struct/union type is anonymous:
//!                                   their members follow (as pahole prints them inline)
//! }
//! ```

//!
//! The table may come from a hostile module or guest: flattening emits at most
//! [`limits::LAYOUT_MAX_ROWS`] rows (anonymous types nested by value many times over
//! cannot make it exponential), offsets are computed with checked arithmetic, rendering is
//! linear in the rows, and every name in the text form is escaped
//! ([`vmark_proto::text::escape`]).

use serde_json::{json, Value};
use vmark_proto::limits;
use vmark_proto::text::escape;
use vmark_proto::types::MAX_TYPE_DEPTH;
use vmark_proto::{AggregateKind, Type, TypeId, TypeTable};

/// Cache line size used for pahole-style annotations (x86-64).
pub const CACHELINE: u64 = 64;

/// Why a layout cannot be produced.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    /// The id is not a struct or union with members.
    #[error("type {} is not a struct or union with known members", escape(.0))]
    NotAggregate(String),
    /// Anonymous members nest deeper than the table limit.
    #[error("anonymous members nest more than {MAX_TYPE_DEPTH} levels")]
    TooDeep,
    /// The layout has more rows than its limit (anonymous types nested many times over).
    #[error("type {} has more than {} members, anonymous ones expanded", escape(.0), limits::LAYOUT_MAX_ROWS)]
    TooLarge(String),
    /// A member's offset does not fit in 64 bits.
    #[error("an offset in type {} overflows", escape(.0))]
    Overflow(String),
}

/// One member in a flattened layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlatMember {
    /// Member name, `None` for anonymous struct/union members.
    pub name: Option<String>,
    /// C access path from the outermost type.
    pub path: String,
    /// The member's type.
    pub ty: TypeId,
    /// C spelling of the type.
    pub type_name: String,
    /// C declaration of the member.
    pub decl: String,
    /// Byte offset from the start of the outermost type (bitfields: byte of the first bit).
    pub offset: u64,
    /// `sizeof` the member's type.
    pub size: Option<u64>,
    /// Bitfields: (first bit from the start of the outermost type, width).
    pub bits: Option<(u64, u8)>,
    /// Nesting level of inline expansion.
    pub depth: usize,
    /// Whether the member's aggregate type is anonymous and expanded after it.
    pub expanded: bool,
}

/// A struct or union flattened pahole-style.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// C spelling, e.g. `struct sock`.
    pub name: String,
    /// Struct or union.
    pub kind: AggregateKind,
    /// Size in bytes.
    pub size: u64,
    /// Members in pre-order.
    pub members: Vec<FlatMember>,
}

/// The anonymous struct/union a member's type is (through qualifiers), if any.
fn anonymous_aggregate(table: &TypeTable, id: TypeId) -> Option<TypeId> {
    let mut cur = id;
    for _ in 0..MAX_TYPE_DEPTH {
        match table.get(cur)? {
            Type::Qualified { target, .. } => cur = *target,
            Type::Aggregate { name: None, .. } => return Some(cur),
            _ => return None,
        }
    }
    None
}

/// The enumerators of an anonymous enum a member's type is (through qualifiers), if any.
fn anonymous_enum(table: &TypeTable, id: TypeId) -> Option<Vec<(String, i128)>> {
    let mut cur = id;
    for _ in 0..MAX_TYPE_DEPTH {
        match table.get(cur)? {
            Type::Qualified { target, .. } => cur = *target,
            Type::Enum {
                name: None,
                enumerators,
                ..
            } => {
                return Some(
                    enumerators
                        .iter()
                        .map(|e| (e.name.clone(), e.value))
                        .collect(),
                )
            }
            _ => return None,
        }
    }
    None
}

/// Flattens the struct or union `id` (typedefs and qualifiers are followed).
pub fn flatten(table: &TypeTable, id: TypeId) -> Result<Layout, LayoutError> {
    let root = table.resolve(id);
    let Some(Type::Aggregate { kind, size, .. }) = table.get(root) else {
        return Err(LayoutError::NotAggregate(table.type_name(id)));
    };
    let mut members = Vec::new();
    // Explicit stack of (aggregate, base offset, path prefix, depth, next member index).
    let mut stack: Vec<(TypeId, u64, String, usize, usize)> = vec![(root, 0, String::new(), 0, 0)];
    while let Some((agg, base, prefix, depth, next)) = stack.pop() {
        let Some(Type::Aggregate { members: ms, .. }) = table.get(agg) else {
            continue;
        };
        let Some(m) = ms.get(next) else { continue };
        if members.len() >= limits::LAYOUT_MAX_ROWS {
            return Err(LayoutError::TooLarge(table.type_name(root)));
        }
        stack.push((agg, base, prefix.clone(), depth, next + 1));
        let overflow = || LayoutError::Overflow(table.type_name(root));
        let offset = base.checked_add(m.offset).ok_or_else(overflow)?;
        let bits = match m.bitfield {
            Some(b) => Some((
                base.checked_mul(8)
                    .and_then(|bits| bits.checked_add(b.bit_offset))
                    .ok_or_else(overflow)?,
                b.bit_size,
            )),
            None => None,
        };
        let path = match &m.name {
            Some(n) if prefix.is_empty() => n.clone(),
            Some(n) => format!("{prefix}.{n}"),
            None => prefix.clone(),
        };
        let anon = anonymous_aggregate(table, m.ty);
        members.push(FlatMember {
            name: m.name.clone(),
            path: path.clone(),
            ty: m.ty,
            type_name: table.type_name(m.ty),
            decl: table.declare(m.ty, m.name.as_deref().unwrap_or("")),
            offset,
            size: table.size_of(m.ty),
            bits,
            depth,
            expanded: anon.is_some(),
        });
        if let Some(inner) = anon {
            if depth + 1 >= MAX_TYPE_DEPTH {
                return Err(LayoutError::TooDeep);
            }
            stack.push((inner, offset, path, depth + 1, 0));
        }
    }
    Ok(Layout {
        name: table.type_name(root),
        kind: *kind,
        size: *size,
        members,
    })
}

impl Layout {
    /// The documented JSON form (see the module documentation).
    pub fn to_json(&self) -> Value {
        let members: Vec<Value> = self
            .members
            .iter()
            .map(|m| {
                let mut v = json!({
                    "name": m.name,
                    "path": m.path,
                    "type": m.type_name,
                    "decl": m.decl,
                    "offset": m.offset,
                    "size": m.size,
                    "depth": m.depth,
                });
                let o = v.as_object_mut().expect("object");
                if let Some((bit, width)) = m.bits {
                    o.insert("bit_offset".into(), json!(bit));
                    o.insert("bit_size".into(), json!(width));
                }
                if m.name.is_none() {
                    o.insert("anonymous".into(), json!(true));
                }
                if m.expanded {
                    o.insert("expanded".into(), json!(true));
                }
                v
            })
            .collect();
        json!({
            "name": self.name,
            "kind": self.kind.keyword(),
            "size": self.size,
            "members": members,
        })
    }

    /// Text in the style of `pahole -C NAME`: members with `/* offset size */` (bitfields
    /// `/* offset:bit size */` with pahole's storage-unit convention), holes, cache line
    /// boundaries and the size/cachelines/members footer. Anonymous structs and unions
    /// are expanded inline at absolute offsets.
    pub fn render(&self, table: &TypeTable) -> String {
        let mut out = format!("{} {{\n", escape(&self.name));
        let mut i = 0;
        let stats = self.render_level(table, &mut i, 0, 0, self.kind, &mut out);
        let cachelines = self.size.div_ceil(CACHELINE);
        out.push_str(&format!(
            "\n\t/* size: {}, cachelines: {cachelines}, members: {} */\n",
            self.size, stats.members
        ));
        if stats.holes > 0 {
            out.push_str(&format!(
                "\t/* sum members: {}, holes: {}, sum holes: {} */\n",
                stats.sum_members, stats.holes, stats.sum_holes
            ));
        } else {
            out.push_str(&format!("\t/* sum members: {} */\n", stats.sum_members));
        }
        if self.kind == AggregateKind::Struct && self.size > stats.end {
            out.push_str(&format!("\t/* padding: {} */\n", self.size - stats.end));
        }
        let last = self.size % CACHELINE;
        if last != 0 {
            out.push_str(&format!("\t/* last cacheline: {last} bytes */\n"));
        }
        out.push_str("};\n");
        out
    }

    /// Renders the members from `*i` on that sit at `depth`, in the struct or union at
    /// absolute offset `base`, returning level statistics. Each row is looked at once.
    fn render_level(
        &self,
        table: &TypeTable,
        i: &mut usize,
        depth: usize,
        base: u64,
        kind: AggregateKind,
        out: &mut String,
    ) -> LevelStats {
        let mut st = LevelStats::default();
        // End of the previous member: bit position, and for bitfields the storage unit end.
        let mut prev_end_bits: Option<u64> = None;
        let mut prev_unit_end: Option<u64> = None;
        let indent = "\t".repeat(depth + 1);
        let mut last_line = 0;
        while let Some(m) = self.members.get(*i) {
            if m.depth < depth {
                break;
            }
            *i += 1;
            let start_bits = m.bits.map(|b| b.0).unwrap_or(m.offset.saturating_mul(8));
            if kind == AggregateKind::Struct {
                if let Some(end) = prev_end_bits {
                    let unit_end = prev_unit_end.unwrap_or(end).max(end);
                    if start_bits > end && m.bits.is_none() || start_bits >= unit_end {
                        let bit_hole = unit_end.min(start_bits).saturating_sub(end);
                        if bit_hole > 0 && prev_unit_end.is_some() {
                            out.push_str(&format!(
                                "\n{indent}/* XXX {bit_hole} bits hole, try to pack */\n"
                            ));
                        }
                        let from = if prev_unit_end.is_some() {
                            unit_end
                        } else {
                            end
                        };
                        let hole = start_bits.saturating_sub(from) / 8;
                        if hole > 0 {
                            st.holes += 1;
                            st.sum_holes += hole;
                            out.push_str(&format!(
                                "\n{indent}/* XXX {hole} bytes hole, try to pack */\n"
                            ));
                        }
                        if bit_hole > 0 || hole > 0 {
                            out.push('\n');
                        }
                    }
                }
            }
            if depth == 0 && m.offset / CACHELINE > last_line {
                last_line = m.offset / CACHELINE;
                let boundary = last_line * CACHELINE;
                if m.offset == boundary {
                    out.push_str(&format!(
                        "{indent}/* --- cacheline {last_line} boundary ({boundary} bytes) --- */\n"
                    ));
                } else {
                    out.push_str(&format!(
                        "{indent}/* --- cacheline {last_line} boundary ({boundary} bytes) was {} bytes ago --- */\n",
                        m.offset - boundary
                    ));
                }
            }
            let size = m.size.unwrap_or(0);
            if m.expanded {
                let inner_kind = match table.get(table.resolve(m.ty)) {
                    Some(Type::Aggregate { kind, .. }) => *kind,
                    _ => AggregateKind::Struct,
                };
                out.push_str(&format!("{indent}{} {{\n", inner_kind.keyword()));
                self.render_level(table, i, depth + 1, m.offset, inner_kind, out);
                let closing = match &m.name {
                    Some(n) => format!("}} {n};"),
                    None => "};".to_string(),
                };
                out.push_str(&comment_line(
                    &indent,
                    &closing,
                    &format!("/* {:5} {:5} */", m.offset, size),
                ));
            } else {
                let decl = match m.bits {
                    Some((_, w)) => format!("{}:{w};", m.decl),
                    None => format!("{};", m.decl),
                };
                let decl = match anonymous_enum(table, m.ty) {
                    // pahole spells anonymous enums out inline.
                    Some(values) => {
                        out.push_str(&format!("{indent}enum {{\n"));
                        for (name, value) in values {
                            let name = escape(&name);
                            out.push_str(&format!("{indent}\t{name} = {value},\n"));
                        }
                        decl.replacen("enum {...}", "}", 1)
                    }
                    None => align_decl(&decl, m.name.as_deref(), depth),
                };
                let comment = match m.bits {
                    Some((bit, _)) => {
                        // pahole: the storage unit (sizeof the declared type) holding the
                        // field, aligned down to its size, and the bit within it.
                        let unit = size.max(1).saturating_mul(8);
                        let rel = bit.saturating_sub(base.saturating_mul(8));
                        let unit_start = rel / unit * unit;
                        format!(
                            "/* {:5}:{:2} {:2} */",
                            base.saturating_add(unit_start / 8),
                            rel - unit_start,
                            size
                        )
                    }
                    None => format!("/* {:5} {:5} */", m.offset, size),
                };
                out.push_str(&comment_line(&indent, &decl, &comment));
            }
            st.members += 1;
            match m.bits {
                Some((bit, w)) => {
                    let end = bit.saturating_add(u64::from(w));
                    let unit = size.max(1).saturating_mul(8);
                    prev_unit_end = Some((bit / unit).saturating_add(1).saturating_mul(unit));
                    prev_end_bits = Some(end);
                    st.end = st.end.max(end.div_ceil(8));
                }
                None => {
                    st.sum_members = st.sum_members.saturating_add(size);
                    prev_unit_end = None;
                    let end = m.offset.saturating_add(size);
                    prev_end_bits = Some(end.saturating_mul(8));
                    st.end = st.end.max(end);
                }
            }
        }
        st
    }
}

#[derive(Default)]
struct LevelStats {
    members: usize,
    sum_members: u64,
    holes: usize,
    sum_holes: u64,
    end: u64,
}

/// pahole's columns: the type specifier in a 26-column field (less 8 per nesting level),
/// then the declarator (`*name`, `(*fn)(void)`, `name[4]`).
fn align_decl(decl: &str, name: Option<&str>, depth: usize) -> String {
    let width = 26usize.saturating_sub(8 * depth).max(1);
    let at = name
        .filter(|n| !n.is_empty())
        .and_then(|n| find_word(decl, n))
        .unwrap_or(decl.len());
    let head = decl[..at].trim_end_matches(['*', '(', ' ']);
    let tail = decl[head.len()..].trim_start();
    if tail.is_empty() {
        head.to_string()
    } else {
        format!("{head:<width$} {tail}")
    }
}

/// Byte index of `word` in `s` as a whole identifier.
fn find_word(s: &str, word: &str) -> Option<usize> {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut from = 0;
    while let Some(p) = s[from..].find(word) {
        let i = from + p;
        let before = s[..i].chars().next_back().is_none_or(|c| !ident(c));
        let after = s[i + word.len()..].chars().next().is_none_or(|c| !ident(c));
        if before && after {
            return Some(i);
        }
        from = i + word.len();
    }
    None
}

/// A line with its `/* ... */` comment at pahole's column (57, tabs counted as 8). `text`
/// holds guest names: it is escaped.
fn comment_line(indent: &str, text: &str, comment: &str) -> String {
    let text = escape(text);
    let used = indent.len() * 8 + text.chars().count();
    let pad = if used < 57 { 57 - used } else { 1 };
    format!("{indent}{text}{}{comment}\n", " ".repeat(pad))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmark_proto::{BaseEncoding, Bitfield, Member};

    fn base(t: &mut TypeTable, name: &str, size: u64) -> TypeId {
        t.push(Type::Base {
            name: name.into(),
            size,
            encoding: BaseEncoding::Unsigned,
        })
    }

    fn member(name: Option<&str>, ty: TypeId, offset: u64) -> Member {
        Member {
            name: name.map(Into::into),
            ty,
            offset,
            bitfield: None,
        }
    }

    /// struct outer { u32 a:3; u32 b:5; u64 x; union { u32 u; struct { u16 lo; u16 hi:4; }; }; struct { char c; } named; };
    fn sample() -> (TypeTable, TypeId) {
        let mut t = TypeTable::new();
        let u32_ = base(&mut t, "unsigned int", 4);
        let u64_ = base(&mut t, "long unsigned int", 8);
        let u16_ = base(&mut t, "short unsigned int", 2);
        let ch = base(&mut t, "char", 1);
        let inner = t.push(Type::Aggregate {
            kind: AggregateKind::Struct,
            name: None,
            size: 4,
            members: vec![
                member(Some("lo"), u16_, 0),
                Member {
                    name: Some("hi".into()),
                    ty: u16_,
                    offset: 2,
                    bitfield: Some(Bitfield {
                        bit_offset: 16,
                        bit_size: 4,
                    }),
                },
            ],
        });
        let un = t.push(Type::Aggregate {
            kind: AggregateKind::Union,
            name: None,
            size: 4,
            members: vec![member(Some("u"), u32_, 0), member(None, inner, 0)],
        });
        let named = t.push(Type::Aggregate {
            kind: AggregateKind::Struct,
            name: None,
            size: 1,
            members: vec![member(Some("c"), ch, 0)],
        });
        let outer = t.push(Type::Aggregate {
            kind: AggregateKind::Struct,
            name: Some("outer".into()),
            size: 24,
            members: vec![
                Member {
                    name: Some("a".into()),
                    ty: u32_,
                    offset: 0,
                    bitfield: Some(Bitfield {
                        bit_offset: 0,
                        bit_size: 3,
                    }),
                },
                Member {
                    name: Some("b".into()),
                    ty: u32_,
                    offset: 0,
                    bitfield: Some(Bitfield {
                        bit_offset: 3,
                        bit_size: 5,
                    }),
                },
                member(Some("x"), u64_, 8),
                member(None, un, 16),
                member(Some("named"), named, 20),
            ],
        });
        t.validate().unwrap();
        (t, outer)
    }

    #[test]
    fn flattens_anonymous_members_at_absolute_offsets() {
        let (t, outer) = sample();
        let l = flatten(&t, outer).unwrap();
        type Row = (String, u64, usize, Option<(u64, u8)>);
        let rows: Vec<Row> = l
            .members
            .iter()
            .map(|m| (m.path.clone(), m.offset, m.depth, m.bits))
            .collect();
        assert_eq!(
            rows,
            vec![
                ("a".into(), 0, 0, Some((0, 3))),
                ("b".into(), 0, 0, Some((3, 5))),
                ("x".into(), 8, 0, None),
                ("".into(), 16, 0, None),
                ("u".into(), 16, 1, None),
                ("".into(), 16, 1, None),
                ("lo".into(), 16, 2, None),
                ("hi".into(), 18, 2, Some((144, 4))),
                ("named".into(), 20, 0, None),
                ("named.c".into(), 20, 1, None),
            ]
        );
        let j = l.to_json();
        assert_eq!(j["name"], "struct outer");
        assert_eq!(j["size"], 24);
        assert_eq!(j["members"][7]["bit_offset"], 144);
        assert_eq!(j["members"][3]["anonymous"], true);
        assert_eq!(j["members"][3]["type"], "union {...}");
        assert!(j["members"][2].get("bit_offset").is_none());
    }

    #[test]
    fn renders_like_pahole() {
        let (t, outer) = sample();
        let text = flatten(&t, outer).unwrap().render(&t);
        assert!(text.starts_with("struct outer {\n"), "{text}");
        assert!(text.contains("b:5;"), "{text}");
        assert!(text.contains("/*     0: 3  4 */"), "{text}");
        assert!(text.contains("XXX 24 bits hole"), "{text}");
        assert!(text.contains("XXX 4 bytes hole"), "{text}");
        // Bitfield in the anonymous struct: pahole's unit offset 18, bit 0.
        assert!(text.contains("/*    18: 0  2 */"), "{text}");
        assert!(text.contains("} named;"), "{text}");
        assert!(
            text.contains("/* size: 24, cachelines: 1, members: 5 */"),
            "{text}"
        );
        assert!(text.contains("/* padding: 3 */"), "{text}");
    }

    #[test]
    fn rejects_non_aggregates() {
        let mut t = TypeTable::new();
        let i = base(&mut t, "int", 4);
        assert!(matches!(flatten(&t, i), Err(LayoutError::NotAggregate(_))));
    }

    #[test]
    fn flattening_anonymous_types_nested_twice_by_value_is_bounded() {
        // union { union {...}; union {...}; } 30 levels deep: 2^31 rows without a limit.
        let mut t = TypeTable::new();
        let mut cur = base(&mut t, "int", 4);
        for _ in 0..30 {
            cur = t.push(Type::Aggregate {
                kind: AggregateKind::Union,
                name: None,
                size: 4,
                members: vec![member(None, cur, 0), member(None, cur, 0)],
            });
        }
        let root = t.push(Type::Aggregate {
            kind: AggregateKind::Struct,
            name: Some("bomb".into()),
            size: 4,
            members: vec![member(Some("u"), cur, 0)],
        });
        t.validate().unwrap();
        assert!(matches!(flatten(&t, root), Err(LayoutError::TooLarge(_))));
    }

    #[test]
    fn offsets_that_would_wrap_are_errors() {
        // Not a validated table: an anonymous member near 2^64 holding one further on.
        let mut t = TypeTable::new();
        let int = base(&mut t, "int", 4);
        let inner = t.push(Type::Aggregate {
            kind: AggregateKind::Struct,
            name: None,
            size: 16,
            members: vec![member(Some("x"), int, 8)],
        });
        let outer = t.push(Type::Aggregate {
            kind: AggregateKind::Struct,
            name: Some("o".into()),
            size: u64::MAX,
            members: vec![member(None, inner, u64::MAX - 4)],
        });
        assert!(matches!(flatten(&t, outer), Err(LayoutError::Overflow(_))));
    }

    #[test]
    fn guest_names_are_escaped_in_the_text_layout() {
        let mut t = TypeTable::new();
        let int = base(&mut t, "int", 4);
        let e = t.push(Type::Enum {
            name: None,
            size: 4,
            signed: false,
            enumerators: vec![vmark_proto::Enumerator {
                name: "A\x1b[2J".into(),
                value: 1,
            }],
        });
        let s = t.push(Type::Aggregate {
            kind: AggregateKind::Struct,
            name: Some("s\x1b]0;t\x07".into()),
            size: 8,
            members: vec![member(Some("m\u{202e}\r"), int, 0), member(Some("e"), e, 4)],
        });
        t.validate().unwrap();
        let l = flatten(&t, s).unwrap();
        let text = l.render(&t);
        assert!(
            !text
                .chars()
                .any(|c| c != '\n' && c != '\t' && vmark_proto::text::is_unsafe_char(c)),
            "{text:?}"
        );
        assert!(text.starts_with("struct s\\x1b]0;t\\x07 {"), "{text}");
        assert!(text.contains("m\\u{202e}\\r;"), "{text}");
        assert!(text.contains("A\\x1b[2J = 1,"), "{text}");
        // The JSON form keeps the exact names.
        assert_eq!(l.to_json()["members"][0]["name"], "m\u{202e}\r");
    }
}
