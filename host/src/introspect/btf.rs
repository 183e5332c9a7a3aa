//! BTF (BPF Type Format) into a [`TypeTable`].
//!
//! A kernel built with `CONFIG_DEBUG_INFO_BTF` carries its own types in the `.BTF` section,
//! loaded into kernel memory between `__start_BTF` and `__stop_BTF` and exported as
//! `/sys/kernel/btf/vmlinux`. Parsing it gives every struct layout the introspection needs,
//! with no offsets in any configuration file.
//!
//! Input is untrusted (guest memory): the header, every section range, every count and
//! every string offset are checked, type references are checked against the type count,
//! chains of modifiers are bounded, and the result is checked with
//! [`TypeTable::validate`]. BTF type id `n` becomes [`TypeId`] `n` for kinds the model
//! has; kinds it has no use for (FUNC, VAR, DATASEC, DECL_TAG) become `void` placeholders
//! and TYPE_TAG is transparent (its id maps to what it tags).

use hashbrown::HashMap;
use std::collections::HashSet;
use vmark_proto::limits;
use vmark_proto::{
    AggregateKind, ArrayBound, BaseEncoding, Bitfield, Enumerator, Member, Qualifier, Type, TypeId,
    TypeTable,
};

/// BTF magic (little-endian bytes 9f eb).
pub const BTF_MAGIC: u16 = 0xeb9f;
/// Most types accepted ([`vmark_proto::limits::BTF_MAX_TYPES`]).
const MAX_TYPES: usize = limits::BTF_MAX_TYPES;
/// Longest modifier/typedef chain followed while folding arrays or resolving tags.
const MAX_CHAIN: usize = limits::BTF_MAX_CHAIN;

/// Why BTF could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BtfError {
    /// Too short, bad magic or version, or sections outside the data.
    #[error("bad BTF header: {0}")]
    Header(String),
    /// A type record is truncated or malformed.
    #[error("bad BTF type {id}: {reason}")]
    Type {
        /// BTF type id.
        id: u32,
        /// What is wrong.
        reason: String,
    },
    /// A string offset outside the string section.
    #[error("BTF string offset {0} is outside the string section")]
    String(u32),
    /// The resulting table failed validation.
    #[error("BTF types are inconsistent: {0}")]
    Invalid(#[from] vmark_proto::TypeError),
}

/// BTF kinds.
mod kind {
    pub const INT: u32 = 1;
    pub const PTR: u32 = 2;
    pub const ARRAY: u32 = 3;
    pub const STRUCT: u32 = 4;
    pub const UNION: u32 = 5;
    pub const ENUM: u32 = 6;
    pub const FWD: u32 = 7;
    pub const TYPEDEF: u32 = 8;
    pub const VOLATILE: u32 = 9;
    pub const CONST: u32 = 10;
    pub const RESTRICT: u32 = 11;
    pub const FUNC: u32 = 12;
    pub const FUNC_PROTO: u32 = 13;
    pub const VAR: u32 = 14;
    pub const DATASEC: u32 = 15;
    pub const FLOAT: u32 = 16;
    pub const DECL_TAG: u32 = 17;
    pub const TYPE_TAG: u32 = 18;
    pub const ENUM64: u32 = 19;
}

/// One raw BTF type record: the common header and its trailing data.
#[derive(Debug, Clone)]
struct Raw<'a> {
    name_off: u32,
    kind: u32,
    vlen: usize,
    kflag: bool,
    size_or_type: u32,
    extra: &'a [u8],
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

/// Parsed BTF: the type table plus a name index.
#[derive(Debug, Clone)]
pub struct Btf {
    types: TypeTable,
    by_name: HashMap<String, TypeId>,
}

impl Btf {
    /// Parses a `.BTF` blob (little-endian).
    pub fn parse(data: &[u8]) -> Result<Self, BtfError> {
        let hdr = |m: &str| BtfError::Header(m.to_string());
        if data.len() < 24 {
            return Err(hdr("shorter than the 24-byte header"));
        }
        let magic = u16::from_le_bytes([data[0], data[1]]);
        if magic == BTF_MAGIC.swap_bytes() {
            return Err(hdr("big-endian BTF is not supported"));
        }
        if magic != BTF_MAGIC {
            return Err(BtfError::Header(format!(
                "bad magic {magic:#06x} (BTF starts with 0xeb9f)"
            )));
        }
        if data[2] != 1 {
            return Err(hdr("unsupported version"));
        }
        let hdr_len = u32_at(data, 4) as usize;
        if !(24..=data.len()).contains(&hdr_len) {
            return Err(hdr("header length out of range"));
        }
        let section = |off: u32, len: u32| -> Result<&[u8], BtfError> {
            let start = hdr_len
                .checked_add(off as usize)
                .ok_or_else(|| hdr("overflow"))?;
            let end = start
                .checked_add(len as usize)
                .ok_or_else(|| hdr("overflow"))?;
            data.get(start..end)
                .ok_or_else(|| hdr("section lies outside the data"))
        };
        let type_sec = section(u32_at(data, 8), u32_at(data, 12))?;
        let strings = section(u32_at(data, 16), u32_at(data, 20))?;
        let raws = split_types(type_sec)?;
        let conv = Converter {
            raws: &raws,
            strings,
            pointer_size: pointer_size(&raws, strings),
        };
        conv.build()
    }

    /// A `Btf` over an already built type table (validated, then indexed by name): for
    /// types from another source, tests and fuzzing.
    pub fn from_types(types: TypeTable) -> Result<Self, BtfError> {
        types.validate()?;
        let mut by_name: HashMap<String, TypeId> = HashMap::new();
        for i in 0..types.len() {
            let id = TypeId(i as u32);
            index_name(&types, &mut by_name, id);
        }
        Ok(Btf { types, by_name })
    }

    /// Reads and parses a BTF file such as `/sys/kernel/btf/vmlinux`.
    pub fn from_file(path: &std::path::Path) -> Result<Self, BtfError> {
        let data = std::fs::read(path)
            .map_err(|e| BtfError::Header(format!("{}: {e}", path.display())))?;
        Self::parse(&data)
    }

    /// The types.
    pub fn types(&self) -> &TypeTable {
        &self.types
    }

    /// Consumes into the table.
    pub fn into_types(self) -> TypeTable {
        self.types
    }

    /// A named struct or union (`"task_struct"`, `"struct task_struct"`, `"union x"`),
    /// a typedef or an enum. Complete aggregates win over forward declarations.
    pub fn find(&self, name: &str) -> Option<TypeId> {
        let bare = name
            .strip_prefix("struct ")
            .or_else(|| name.strip_prefix("union "))
            .or_else(|| name.strip_prefix("enum "))
            .unwrap_or(name)
            .trim();
        self.by_name.get(bare).copied()
    }

    /// Byte offset of a member path (`"mm"`, `"se.vruntime"`, anonymous members looked
    /// through) inside struct or union `ty`, with the member's type. Each step visits every
    /// aggregate at most once and at most [`limits::BTF_MAX_MEMBER_VISITS`] members, so a
    /// crafted blob (anonymous members nested many times over) cannot make it slow; a
    /// lookup over that budget finds nothing.
    ///
    /// A part may index an array member: `mem[1].size` (Linux 6.4's `struct module`).
    pub fn member_offset(&self, ty: TypeId, path: &str) -> Option<(u64, TypeId)> {
        let mut cur = ty;
        let mut offset = 0u64;
        for part in path.split('.') {
            let (name, index) = match part.split_once('[') {
                Some((n, rest)) => (n, Some(rest.strip_suffix(']')?.parse::<u64>().ok()?)),
                None => (part, None),
            };
            let mut search = MemberSearch {
                types: &self.types,
                name,
                searched: HashSet::new(),
                visits: limits::BTF_MAX_MEMBER_VISITS,
            };
            let (o, t) = search.find(self.types.resolve(cur), 0)?;
            offset = offset.checked_add(o)?;
            cur = t;
            if let Some(i) = index {
                let array = self.types.resolve(cur);
                let Some(Type::Array { element, dims }) = self.types.get(array) else {
                    return None;
                };
                let count = match dims.first()? {
                    ArrayBound::Count(n) if i < *n => *n,
                    _ => return None,
                };
                // One element of the outer dimension: the whole array's size over its count.
                let stride = self.types.size_of(array)? / count;
                offset = offset.checked_add(i.checked_mul(stride)?)?;
                cur = if dims.len() == 1 {
                    *element
                } else {
                    return None;
                };
            }
        }
        Some((offset, cur))
    }

    /// Number of elements of the array member at `path` in `ty` (outer dimension).
    pub fn member_count(&self, ty: TypeId, path: &str) -> Option<u64> {
        let (_, t) = self.member_offset(ty, path)?;
        match self.types.get(self.types.resolve(t)) {
            Some(Type::Array { dims, .. }) => match dims.first()? {
                ArrayBound::Count(n) => Some(*n),
                ArrayBound::Flexible => None,
            },
            _ => None,
        }
    }
}

/// Adds type `id` of `types` to the name index: the first definition wins, except that a
/// complete struct/union/enum replaces a forward declaration or typedef of the same name.
fn index_name(types: &TypeTable, by_name: &mut HashMap<String, TypeId>, id: TypeId) {
    let Some(ty) = types.get(id) else {
        return;
    };
    let complete = matches!(ty, Type::Aggregate { .. } | Type::Enum { .. });
    let name = match ty {
        Type::Aggregate { name: Some(n), .. }
        | Type::Opaque { name: Some(n), .. }
        | Type::Enum { name: Some(n), .. } => n,
        Type::Typedef { name, .. } => name,
        _ => return,
    };
    let existing_complete = by_name.get(name).is_some_and(|t| {
        matches!(
            types.get(*t),
            Some(Type::Aggregate { .. } | Type::Enum { .. })
        )
    });
    if !by_name.contains_key(name) || (complete && !existing_complete) {
        by_name.insert(name.clone(), id);
    }
}

/// One by-name member lookup: depth-first through anonymous members, remembering the
/// aggregates already searched (a second visit of one cannot find what the first did not).
struct MemberSearch<'a> {
    types: &'a TypeTable,
    name: &'a str,
    searched: HashSet<TypeId>,
    visits: usize,
}

impl MemberSearch<'_> {
    /// Finds the member in aggregate `agg`, descending into anonymous struct/union members.
    fn find(&mut self, agg: TypeId, depth: usize) -> Option<(u64, TypeId)> {
        if depth > MAX_CHAIN || !self.searched.insert(agg) {
            return None;
        }
        let types = self.types;
        let Some(Type::Aggregate { members, .. }) = types.get(agg) else {
            return None;
        };
        for m in members {
            self.visits = self.visits.checked_sub(1)?;
            match &m.name {
                Some(n) if n == self.name => return Some((m.offset, m.ty)),
                None => {
                    if let Some((o, t)) = self.find(types.resolve(m.ty), depth + 1) {
                        return Some((m.offset.checked_add(o)?, t));
                    }
                }
                _ => {}
            }
        }
        None
    }
}

/// Splits the type section into records; record `i` is BTF type id `i + 1`.
fn split_types(sec: &[u8]) -> Result<Vec<Raw<'_>>, BtfError> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < sec.len() {
        let id = out.len() as u32 + 1;
        if out.len() >= MAX_TYPES {
            return Err(BtfError::Type {
                id,
                reason: "too many types".into(),
            });
        }
        let bad = |r: &str| BtfError::Type {
            id,
            reason: r.to_string(),
        };
        let head = sec
            .get(at..at.saturating_add(12))
            .ok_or_else(|| bad("truncated header"))?;
        let info = u32_at(head, 4);
        let kind = (info >> 24) & 0x1f;
        let vlen = (info & 0xffff) as usize;
        let extra_len = match kind {
            kind::INT | kind::VAR | kind::DECL_TAG => 4,
            kind::ARRAY => 12,
            kind::STRUCT | kind::UNION | kind::DATASEC | kind::ENUM64 => vlen * 12,
            kind::ENUM | kind::FUNC_PROTO => vlen * 8,
            kind::PTR
            | kind::FWD
            | kind::TYPEDEF
            | kind::VOLATILE
            | kind::CONST
            | kind::RESTRICT
            | kind::FUNC
            | kind::FLOAT
            | kind::TYPE_TAG => 0,
            other => return Err(bad(&format!("unknown kind {other}"))),
        };
        let extra_start = at + 12; // at + 12 <= sec.len(): the header was read
        let extra = extra_start
            .checked_add(extra_len)
            .and_then(|end| sec.get(extra_start..end))
            .ok_or_else(|| bad("truncated data"))?;
        out.push(Raw {
            name_off: u32_at(head, 0),
            kind,
            vlen,
            kflag: info >> 31 != 0,
            size_or_type: u32_at(head, 8),
            extra,
        });
        at = extra_start + extra_len;
    }
    Ok(out)
}

struct Converter<'a> {
    raws: &'a [Raw<'a>],
    strings: &'a [u8],
    /// Bytes of a pointer: BTF does not say, `long` does (it is pointer-sized on every
    /// Linux ABI), so a 32-bit kernel's BTF gets 4-byte pointers.
    pointer_size: u64,
}

/// The size of C `long` in `raws` (an INT named `long int` or `long unsigned int`), 8
/// when there is none.
fn pointer_size(raws: &[Raw<'_>], strings: &[u8]) -> u64 {
    for r in raws.iter().filter(|r| r.kind == kind::INT) {
        let name = strings
            .get(r.name_off as usize..)
            .and_then(|t| t.get(..t.len().min(32)))
            .and_then(|t| t.split(|&b| b == 0).next());
        if matches!(name, Some(b"long int" | b"long unsigned int"))
            && matches!(r.size_or_type, 4 | 8)
        {
            return u64::from(r.size_or_type);
        }
    }
    8
}

impl<'a> Converter<'a> {
    fn raw(&self, id: u32) -> Option<&Raw<'a>> {
        self.raws.get((id as usize).checked_sub(1)?)
    }

    /// The NUL-terminated string at `off`, at most [`limits::BTF_MAX_NAME_LEN`] bytes: the
    /// search for its NUL is bounded, so many names pointing into one long run cost
    /// linear time, not quadratic.
    fn string(&self, off: u32) -> Result<&'a str, BtfError> {
        let tail = self
            .strings
            .get(off as usize..)
            .ok_or(BtfError::String(off))?;
        let tail = &tail[..tail.len().min(limits::BTF_MAX_NAME_LEN + 1)];
        let end = tail
            .iter()
            .position(|&b| b == 0)
            .ok_or(BtfError::String(off))?;
        std::str::from_utf8(&tail[..end]).map_err(|_| BtfError::String(off))
    }

    fn opt_name(&self, off: u32) -> Result<Option<String>, BtfError> {
        let s = self.string(off)?;
        Ok((!s.is_empty()).then(|| s.to_string()))
    }

    /// The TypeId a BTF reference maps to: TYPE_TAGs are looked through.
    fn target(&self, from: u32, mut id: u32) -> Result<TypeId, BtfError> {
        for _ in 0..MAX_CHAIN {
            if id as usize > self.raws.len() {
                return Err(BtfError::Type {
                    id: from,
                    reason: format!("refers to type {id} of {}", self.raws.len()),
                });
            }
            match self.raw(id) {
                Some(r) if r.kind == kind::TYPE_TAG => id = r.size_or_type,
                _ => return Ok(TypeId(id)),
            }
        }
        Err(BtfError::Type {
            id: from,
            reason: "type tag chain too long".into(),
        })
    }

    fn build(&self) -> Result<Btf, BtfError> {
        let mut types = TypeTable::new();
        types.push(Type::Void);
        let mut by_name: HashMap<String, TypeId> = HashMap::new();
        for (i, r) in self.raws.iter().enumerate() {
            let id = i as u32 + 1;
            let ty = self.convert(id, r)?;
            types.push(ty);
            index_name(&types, &mut by_name, TypeId(id));
        }
        types.validate()?;
        Ok(Btf { types, by_name })
    }

    fn convert(&self, id: u32, r: &Raw<'a>) -> Result<Type, BtfError> {
        let bad = |m: String| BtfError::Type { id, reason: m };
        let size = u64::from(r.size_or_type);
        Ok(match r.kind {
            kind::INT => {
                let enc = u32_at(r.extra, 0);
                let bits = enc & 0xff;
                let signed = (enc >> 24) & 1 != 0;
                let is_char = (enc >> 24) & 2 != 0;
                let is_bool = (enc >> 24) & 4 != 0;
                if !matches!(size, 1 | 2 | 4 | 8 | 16) || bits as u64 > size * 8 {
                    return Err(bad(format!("integer of {size} bytes, {bits} bits")));
                }
                let name = self.string(r.name_off)?.to_string();
                let encoding = if is_bool {
                    BaseEncoding::Bool
                } else if is_char || (size == 1 && name.contains("char")) {
                    if signed || name == "signed char" {
                        BaseEncoding::SignedChar
                    } else {
                        BaseEncoding::UnsignedChar
                    }
                } else if signed {
                    BaseEncoding::Signed
                } else {
                    BaseEncoding::Unsigned
                };
                Type::Base {
                    name,
                    size,
                    encoding,
                }
            }
            kind::FLOAT => Type::Base {
                name: self.string(r.name_off)?.to_string(),
                size,
                encoding: BaseEncoding::Float,
            },
            kind::PTR => Type::Pointer {
                target: self.target(id, r.size_or_type)?,
                size: self.pointer_size,
            },
            kind::ARRAY => {
                let mut dims = vec![ArrayBound::Count(u64::from(u32_at(r.extra, 8)))];
                let mut elem = u32_at(r.extra, 0);
                // Fold directly nested arrays into one multi-dimensional array.
                for _ in 0..MAX_CHAIN {
                    let t = self.target(id, elem)?;
                    match self.raw(t.0) {
                        Some(inner) if inner.kind == kind::ARRAY => {
                            dims.push(ArrayBound::Count(u64::from(u32_at(inner.extra, 8))));
                            elem = u32_at(inner.extra, 0);
                        }
                        _ => break,
                    }
                }
                let element = self.target(id, elem)?;
                if matches!(self.raw(element.0), Some(x) if x.kind == kind::ARRAY) {
                    return Err(bad("array nesting too deep".into()));
                }
                Type::Array { element, dims }
            }
            kind::STRUCT | kind::UNION => {
                let mut members = Vec::with_capacity(r.vlen);
                for m in r.extra.chunks_exact(12) {
                    let ty = self.target(id, u32_at(m, 4))?;
                    let raw_off = u32_at(m, 8);
                    let (bit_offset, mut bit_size) = if r.kflag {
                        (u64::from(raw_off & 0x00ff_ffff), (raw_off >> 24) as u8)
                    } else {
                        (u64::from(raw_off), 0)
                    };
                    let mut bit_offset = bit_offset;
                    if !r.kflag {
                        // Old encoding: a bitfield's width and extra offset live in its INT.
                        if let Some(int) = self.int_of(ty) {
                            let (bits, off, sz) = int;
                            if bits as u64 != sz * 8 || off != 0 {
                                bit_size = bits as u8;
                                bit_offset += u64::from(off);
                            }
                        }
                    }
                    let bitfield = (bit_size > 0).then_some(Bitfield {
                        bit_offset,
                        bit_size,
                    });
                    if bitfield.is_none() && bit_offset % 8 != 0 {
                        return Err(bad(format!(
                            "member at bit {bit_offset} is not byte aligned"
                        )));
                    }
                    members.push(Member {
                        name: self.opt_name(u32_at(m, 0))?,
                        ty,
                        offset: bit_offset / 8,
                        bitfield,
                    });
                }
                Type::Aggregate {
                    kind: if r.kind == kind::STRUCT {
                        AggregateKind::Struct
                    } else {
                        AggregateKind::Union
                    },
                    name: self.opt_name(r.name_off)?,
                    size,
                    members,
                }
            }
            kind::ENUM | kind::ENUM64 => {
                let wide = r.kind == kind::ENUM64;
                let step = if wide { 12 } else { 8 };
                let mut enumerators = Vec::with_capacity(r.vlen);
                for e in r.extra.chunks_exact(step) {
                    let value: i128 = if wide {
                        let v = u64::from(u32_at(e, 4)) | (u64::from(u32_at(e, 8)) << 32);
                        if r.kflag {
                            i128::from(v as i64)
                        } else {
                            i128::from(v)
                        }
                    } else {
                        let v = u32_at(e, 4);
                        if r.kflag {
                            i128::from(v as i32)
                        } else {
                            i128::from(v)
                        }
                    };
                    enumerators.push(Enumerator {
                        name: self.string(u32_at(e, 0))?.to_string(),
                        value,
                    });
                }
                if !matches!(size, 1 | 2 | 4 | 8) {
                    return Err(bad(format!("enum of {size} bytes")));
                }
                Type::Enum {
                    name: self.opt_name(r.name_off)?,
                    size,
                    signed: r.kflag,
                    enumerators,
                }
            }
            kind::FWD => Type::Opaque {
                kind: if r.kflag {
                    AggregateKind::Union
                } else {
                    AggregateKind::Struct
                },
                name: self.opt_name(r.name_off)?,
                size: None,
            },
            kind::TYPEDEF => Type::Typedef {
                name: self.string(r.name_off)?.to_string(),
                target: self.target(id, r.size_or_type)?,
            },
            kind::VOLATILE | kind::CONST | kind::RESTRICT => Type::Qualified {
                qualifier: match r.kind {
                    kind::VOLATILE => Qualifier::Volatile,
                    kind::CONST => Qualifier::Const,
                    _ => Qualifier::Restrict,
                },
                target: self.target(id, r.size_or_type)?,
            },
            kind::FUNC_PROTO => {
                let mut params = Vec::with_capacity(r.vlen);
                let mut variadic = false;
                for (i, p) in r.extra.chunks_exact(8).enumerate() {
                    let t = u32_at(p, 4);
                    if t == 0 && i + 1 == r.vlen {
                        variadic = true;
                    } else {
                        params.push(self.target(id, t)?);
                    }
                }
                Type::Function {
                    ret: self.target(id, r.size_or_type)?,
                    params,
                    variadic,
                }
            }
            // TYPE_TAG ids are never referenced (looked through); the others are not types.
            _ => Type::Void,
        })
    }

    /// (bits, bit offset, size) when `ty` (through typedefs and qualifiers) is a BTF INT.
    fn int_of(&self, mut ty: TypeId) -> Option<(u32, u32, u64)> {
        for _ in 0..MAX_CHAIN {
            let r = self.raw(ty.0)?;
            match r.kind {
                kind::INT => {
                    let enc = u32_at(r.extra, 0);
                    return Some((enc & 0xff, (enc >> 16) & 0xff, u64::from(r.size_or_type)));
                }
                kind::TYPEDEF | kind::VOLATILE | kind::CONST | kind::RESTRICT | kind::TYPE_TAG => {
                    ty = TypeId(r.size_or_type)
                }
                _ => return None,
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

    /// Offset of `field` in `struct name` as pahole prints it from the same BTF.
    fn pahole_offset(name: &str, field: &str) -> Option<u64> {
        let out = std::process::Command::new("pahole")
            .args(["-C", name, VMLINUX])
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        for line in text.lines() {
            let l = line.trim();
            // e.g. "pid_t                      pid;                  /*  2464     4 */"
            let Some((decl, comment)) = l.split_once("/*") else {
                continue;
            };
            let decl = decl.trim().trim_end_matches(';');
            let last = decl.rsplit([' ', '*']).next().unwrap_or("");
            let last = last.split('[').next().unwrap_or("");
            if last == field {
                let num = comment.split_whitespace().next()?;
                return num.split(':').next()?.parse().ok();
            }
        }
        None
    }

    #[test]
    fn parses_this_machines_kernel_btf_like_pahole() {
        let btf =
            Btf::from_file(std::path::Path::new(VMLINUX)).expect("parse /sys/kernel/btf/vmlinux");
        assert!(btf.types().len() > 10_000);
        let task = btf.find("task_struct").expect("struct task_struct");
        assert!(matches!(
            btf.types().get(task),
            Some(Type::Aggregate { .. })
        ));
        for field in ["pid", "tgid", "tasks", "comm", "mm", "real_parent"] {
            let (ours, _) = btf.member_offset(task, field).expect(field);
            let theirs = pahole_offset("task_struct", field)
                .unwrap_or_else(|| panic!("pahole has no offset for task_struct.{field}"));
            assert_eq!(ours, theirs, "task_struct.{field}");
        }
        let module = btf.find("struct module").expect("struct module");
        let (name_off, name_ty) = btf.member_offset(module, "name").unwrap();
        assert_eq!(Some(name_off), pahole_offset("module", "name"));
        assert_eq!(btf.types().type_name(name_ty), "char[56]");
        let mm = btf.find("mm_struct").unwrap();
        assert!(btf.member_offset(mm, "pgd").is_some());
        let (_, list_ty) = btf.member_offset(task, "tasks").unwrap();
        assert_eq!(btf.types().type_name(list_ty), "struct list_head");
        assert_eq!(btf.types().size_of(list_ty), Some(16));
    }

    #[test]
    fn rejects_truncated_and_hostile_blobs() {
        let data = std::fs::read(VMLINUX).unwrap();
        assert!(matches!(Btf::parse(&data[..10]), Err(BtfError::Header(_))));
        let mut bad = data[..4096].to_vec();
        assert!(Btf::parse(&bad).is_err()); // sections beyond the data
        bad[0] = 0;
        assert!(matches!(Btf::parse(&bad), Err(BtfError::Header(_))));
        // A minimal blob: one pointer type that points at a type that does not exist.
        let mut blob = vec![0x9f, 0xeb, 1, 0];
        blob.extend_from_slice(&24u32.to_le_bytes());
        blob.extend_from_slice(&0u32.to_le_bytes()); // type_off
        blob.extend_from_slice(&12u32.to_le_bytes()); // type_len
        blob.extend_from_slice(&12u32.to_le_bytes()); // str_off
        blob.extend_from_slice(&1u32.to_le_bytes()); // str_len
        blob.extend_from_slice(&0u32.to_le_bytes());
        blob.extend_from_slice(&(2u32 << 24).to_le_bytes());
        blob.extend_from_slice(&7u32.to_le_bytes());
        blob.push(0);
        assert!(matches!(
            Btf::parse(&blob),
            Err(BtfError::Type { id: 1, .. })
        ));
        // A pointer to itself is fine (cycles through pointers are allowed).
        let n = blob.len();
        blob[n - 5..n - 1].copy_from_slice(&1u32.to_le_bytes());
        assert!(Btf::parse(&blob).is_ok());
    }

    /// A minimal blob: `types` records (already encoded) and `strings`.
    fn blob(types: &[u8], strings: &[u8]) -> Vec<u8> {
        let mut b = vec![0x9f, 0xeb, 1, 0];
        b.extend_from_slice(&24u32.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&(types.len() as u32).to_le_bytes());
        b.extend_from_slice(&(types.len() as u32).to_le_bytes());
        b.extend_from_slice(&(strings.len() as u32).to_le_bytes());
        b.extend_from_slice(types);
        b.extend_from_slice(strings);
        b
    }

    #[test]
    fn names_are_bounded_and_many_names_into_one_run_stay_linear() {
        // An INT type named by offset 1 of a 2000-byte run without NUL: refused.
        let mut int = Vec::new();
        int.extend_from_slice(&1u32.to_le_bytes()); // name_off
        int.extend_from_slice(&(kind::INT << 24).to_le_bytes());
        int.extend_from_slice(&4u32.to_le_bytes()); // size
        int.extend_from_slice(&32u32.to_le_bytes()); // 32 bits
        let mut strings = vec![0u8];
        strings.extend(vec![b'a'; 2000]);
        strings.push(0);
        assert_eq!(
            Btf::parse(&blob(&int, &strings)).err(),
            Some(BtfError::String(1))
        );
        // 100k types all named by one 200-byte name: accepted.
        let mut strings = vec![0u8];
        strings.extend(vec![b'a'; 200]);
        strings.push(0);
        let many: Vec<u8> = int
            .iter()
            .copied()
            .cycle()
            .take(int.len() * 100_000)
            .collect();
        let btf = Btf::parse(&blob(&many, &strings)).unwrap();
        assert_eq!(btf.types().len(), 100_001);
    }

    #[test]
    fn member_lookup_through_nested_anonymous_members_is_linear() {
        // S0 { int x; }, union S(k+1) { S(k); S(k); } (both anonymous): 2^30 paths lead
        // to S0 in S30; each aggregate is searched once.
        let mut t = TypeTable::new();
        t.push(Type::Void);
        let int = t.push(Type::Base {
            name: "int".into(),
            size: 4,
            encoding: BaseEncoding::Signed,
        });
        let member = |name: Option<&str>, ty, offset| Member {
            name: name.map(Into::into),
            ty,
            offset,
            bitfield: None,
        };
        let mut cur = t.push(Type::Aggregate {
            kind: AggregateKind::Struct,
            name: Some("s0".into()),
            size: 4,
            members: vec![member(Some("x"), int, 0)],
        });
        for k in 1..=30 {
            cur = t.push(Type::Aggregate {
                kind: AggregateKind::Union,
                name: Some(format!("s{k}")),
                size: 4,
                members: vec![member(None, cur, 0), member(None, cur, 0)],
            });
        }
        let btf = Btf::from_types(t).unwrap();
        let top = btf.find("union s30").unwrap();
        assert_eq!(btf.member_offset(top, "x"), Some((0, int)));
        assert_eq!(btf.member_offset(top, "missing"), None);
    }

    #[test]
    fn array_members_are_indexed() {
        let btf =
            Btf::from_file(std::path::Path::new(VMLINUX)).expect("parse /sys/kernel/btf/vmlinux");
        let task = btf.find("task_struct").unwrap();
        let (comm, _) = btf.member_offset(task, "comm").unwrap();
        assert_eq!(
            btf.member_offset(task, "comm[3]").map(|(o, _)| o),
            Some(comm + 3)
        );
        assert_eq!(btf.member_count(task, "comm"), Some(16));
        assert_eq!(btf.member_offset(task, "comm[16]"), None);
        assert_eq!(btf.member_offset(task, "pid[0]"), None);
    }

    #[test]
    fn pointers_are_as_wide_as_long() {
        // INT "long int" of 4 bytes (a 32-bit kernel), then a pointer to it.
        let mut types = Vec::new();
        types.extend_from_slice(&1u32.to_le_bytes());
        types.extend_from_slice(&(kind::INT << 24).to_le_bytes());
        types.extend_from_slice(&4u32.to_le_bytes());
        types.extend_from_slice(&((1u32 << 24) | 32).to_le_bytes());
        types.extend_from_slice(&0u32.to_le_bytes());
        types.extend_from_slice(&(kind::PTR << 24).to_le_bytes());
        types.extend_from_slice(&1u32.to_le_bytes());
        let btf = Btf::parse(&blob(&types, b"\0long int\0")).unwrap();
        assert_eq!(btf.types().size_of(TypeId(2)), Some(4));
        let btf = Btf::from_file(std::path::Path::new(VMLINUX)).unwrap();
        let task = btf.find("task_struct").unwrap();
        let (_, mm) = btf.member_offset(task, "mm").unwrap();
        assert_eq!(btf.types().size_of(mm), Some(8));
    }
}
