//! The C type model: complete for what kernel C declares.
//!
//! Types live in a [`TypeTable`] and refer to each other by [`TypeId`] (an index into the
//! table), so recursive types such as `struct list_head` need no special casing. A table
//! built by `vmark-build` or decoded from a manifest is checked by [`TypeTable::validate`]
//! before anything walks it.

use serde::{Deserialize, Serialize};

/// Index of a type in its [`TypeTable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TypeId(pub u32);

impl TypeId {
    /// The index as a `usize`.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// How the bits of a base type are to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BaseEncoding {
    /// Two's complement integer.
    Signed,
    /// Unsigned integer.
    Unsigned,
    /// `char` declared or defaulting to signed.
    SignedChar,
    /// `unsigned char` (or plain `char` where it is unsigned).
    UnsignedChar,
    /// `_Bool`.
    Bool,
    /// IEEE 754 binary floating point (`float`, `double`, `long double`).
    Float,
}

/// `struct` or `union`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AggregateKind {
    /// `struct`: members at increasing offsets.
    Struct,
    /// `union`: members overlap at offset 0.
    Union,
}

impl AggregateKind {
    /// The C keyword.
    pub fn keyword(self) -> &'static str {
        match self {
            AggregateKind::Struct => "struct",
            AggregateKind::Union => "union",
        }
    }
}

/// A bitfield's position: bits counted from the start of the type that directly encloses
/// the member (little-endian bit numbering, as DWARF's `DW_AT_data_bit_offset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bitfield {
    /// Bit offset from the start of the enclosing struct or union.
    pub bit_offset: u64,
    /// Width in bits (1..=64).
    pub bit_size: u8,
}

/// A member of a struct or union.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// `None` for an anonymous struct or union member.
    pub name: Option<String>,
    /// The member's type.
    pub ty: TypeId,
    /// Byte offset from the start of the enclosing type. For a bitfield, the byte that
    /// holds its first bit (`bit_offset / 8`).
    pub offset: u64,
    /// Present for bitfields.
    pub bitfield: Option<Bitfield>,
}

/// One dimension of an array.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ArrayBound {
    /// `[N]`, including `[0]` (a GNU zero-length array).
    Count(u64),
    /// `[]`: a flexible array member; its length is not known from the type.
    Flexible,
}

/// A named constant of an enum. Values span `i64::MIN..=u64::MAX`, hence `i128`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enumerator {
    /// The constant's name.
    pub name: String,
    /// Its value.
    pub value: i128,
}

/// A type qualifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Qualifier {
    /// `const`
    Const,
    /// `volatile`
    Volatile,
    /// `restrict`
    Restrict,
    /// `_Atomic`
    Atomic,
}

impl Qualifier {
    /// The C keyword.
    pub fn keyword(self) -> &'static str {
        match self {
            Qualifier::Const => "const",
            Qualifier::Volatile => "volatile",
            Qualifier::Restrict => "restrict",
            Qualifier::Atomic => "_Atomic",
        }
    }
}

/// A C type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Type {
    /// `void` (only meaningful behind a pointer or as a function's return type).
    Void,
    /// An integer, character, boolean or floating type.
    Base {
        /// The C spelling, e.g. `unsigned int`.
        name: String,
        /// Size in bytes.
        size: u64,
        /// How to read it.
        encoding: BaseEncoding,
    },
    /// A struct or union with its members.
    Aggregate {
        /// `struct` or `union`.
        kind: AggregateKind,
        /// Tag name; `None` when anonymous.
        name: Option<String>,
        /// Size in bytes.
        size: u64,
        /// Members in declaration order.
        members: Vec<Member>,
    },
    /// A struct or union whose members are not in this table: declared only, or cut off
    /// beyond the configured pointer depth. Its size is known when it was cut off.
    Opaque {
        /// `struct` or `union`.
        kind: AggregateKind,
        /// Tag name.
        name: Option<String>,
        /// Size in bytes when known.
        size: Option<u64>,
    },
    /// An array, possibly multi-dimensional (`int a[2][3]` has dims `[2, 3]`).
    Array {
        /// Element type (never itself an array: dimensions are folded into `dims`).
        element: TypeId,
        /// Dimensions, outermost first.
        dims: Vec<ArrayBound>,
    },
    /// A pointer. `target` is `Void` for `void *`.
    Pointer {
        /// What it points to.
        target: TypeId,
        /// Size in bytes (8 on x86-64).
        size: u64,
    },
    /// A function type (reached through function pointers).
    Function {
        /// Return type (`Void` for none).
        ret: TypeId,
        /// Parameter types.
        params: Vec<TypeId>,
        /// Ends in `...`.
        variadic: bool,
    },
    /// An enum.
    Enum {
        /// Tag name; `None` when anonymous.
        name: Option<String>,
        /// Size in bytes of its underlying integer.
        size: u64,
        /// Whether the underlying integer is signed.
        signed: bool,
        /// Its constants.
        enumerators: Vec<Enumerator>,
    },
    /// `typedef target name`.
    Typedef {
        /// The new name.
        name: String,
        /// The type it names.
        target: TypeId,
    },
    /// `const`, `volatile`, `restrict` or `_Atomic` applied to a type.
    Qualified {
        /// The qualifier.
        qualifier: Qualifier,
        /// The qualified type.
        target: TypeId,
    },
}

/// Errors found by [`TypeTable::validate`] and by size computations.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TypeError {
    /// A reference to a type id the table does not hold.
    #[error("type {from} refers to type {to}, but the table holds only {len} types")]
    DanglingId {
        /// The referring type.
        from: u32,
        /// The missing id.
        to: u32,
        /// Table length.
        len: usize,
    },
    /// A type contains itself by value (only pointers may close a cycle).
    #[error("type {0} contains itself by value (a cycle not through a pointer)")]
    CycleByValue(u32),
    /// Types nest deeper than the limit.
    #[error("types nest more than {0} levels deep by value")]
    TooDeep(usize),
    /// A size beyond the sanity limit.
    #[error("type {id} claims {size} bytes, more than the {limit}-byte limit")]
    AbsurdSize {
        /// The type.
        id: u32,
        /// Its claimed size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A member or bitfield that lies outside its enclosing type.
    #[error("type {id}: member {member} lies outside the type ({detail})")]
    MemberOutOfBounds {
        /// The aggregate.
        id: u32,
        /// Member index.
        member: usize,
        /// What is wrong.
        detail: String,
    },
    /// A bitfield with width 0 or over 64.
    #[error("type {id}: bitfield member {member} has width {width}")]
    BadBitfieldWidth {
        /// The aggregate.
        id: u32,
        /// Member index.
        member: usize,
        /// The width.
        width: u8,
    },
    /// An array with an element type that is itself an array or without dimensions.
    #[error("type {0}: malformed array")]
    MalformedArray(u32),
}

/// Sizes above this are refused: no kernel object a mark could name is this large, and a
/// hostile manifest must not make the host allocate or loop without bound.
pub const MAX_TYPE_SIZE: u64 = 64 << 20;
/// Maximum nesting of types by value (struct in struct in array ...).
pub const MAX_TYPE_DEPTH: usize = 64;

/// All the types of a module's manifest (or of a DWARF or BTF source), indexed by [`TypeId`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypeTable {
    types: Vec<Type>,
}

impl TypeTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a type, returning its id.
    pub fn push(&mut self, ty: Type) -> TypeId {
        let id = TypeId(u32::try_from(self.types.len()).expect("fewer than 2^32 types"));
        self.types.push(ty);
        id
    }

    /// Replaces a type (used to fill in a placeholder pushed before its members were known).
    pub fn set(&mut self, id: TypeId, ty: Type) {
        self.types[id.index()] = ty;
    }

    /// The type with this id, if any.
    pub fn get(&self, id: TypeId) -> Option<&Type> {
        self.types.get(id.index())
    }

    /// Number of types.
    pub fn len(&self) -> usize {
        self.types.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.types.is_empty()
    }

    /// All types with their ids.
    pub fn iter(&self) -> impl Iterator<Item = (TypeId, &Type)> {
        self.types
            .iter()
            .enumerate()
            .map(|(i, t)| (TypeId(i as u32), t))
    }

    /// Follows typedefs and qualifiers to the underlying type's id.
    /// Stops after [`MAX_TYPE_DEPTH`] steps (a validated table has no such chains).
    pub fn resolve(&self, mut id: TypeId) -> TypeId {
        for _ in 0..MAX_TYPE_DEPTH {
            match self.get(id) {
                Some(Type::Typedef { target, .. }) | Some(Type::Qualified { target, .. }) => {
                    id = *target
                }
                _ => break,
            }
        }
        id
    }

    /// Whether the type is C's plain `char` (through typedefs and qualifiers): what text
    /// is kept in. `unsigned char`, `signed char` and the byte typedefs over them (`u8`,
    /// `__u8`, `uint8_t`) hold binary data, so an array of them is not a string.
    pub fn is_text_char(&self, id: TypeId) -> bool {
        matches!(self.get(self.resolve(id)), Some(Type::Base { name, size: 1, .. }) if name == "char")
    }

    /// Size in bytes of a type, `None` for void, functions, flexible arrays and opaque
    /// types of unknown size.
    pub fn size_of(&self, id: TypeId) -> Option<u64> {
        self.size_of_depth(id, 0)
    }

    fn size_of_depth(&self, id: TypeId, depth: usize) -> Option<u64> {
        if depth > MAX_TYPE_DEPTH {
            return None;
        }
        match self.get(id)? {
            Type::Void | Type::Function { .. } => None,
            Type::Base { size, .. }
            | Type::Aggregate { size, .. }
            | Type::Pointer { size, .. }
            | Type::Enum { size, .. } => Some(*size),
            Type::Opaque { size, .. } => *size,
            Type::Array { element, dims } => {
                let mut n: u64 = 1;
                for d in dims {
                    match d {
                        ArrayBound::Count(c) => n = n.checked_mul(*c)?,
                        ArrayBound::Flexible => return Some(0),
                    }
                }
                n.checked_mul(self.size_of_depth(*element, depth + 1)?)
            }
            Type::Typedef { target, .. } | Type::Qualified { target, .. } => {
                self.size_of_depth(*target, depth + 1)
            }
        }
    }

    /// Finds a struct or union (with members) by tag name; `name` may carry the keyword
    /// (`"struct sock"`) or not (`"sock"`). Typedef names are accepted too.
    pub fn find_aggregate(&self, name: &str) -> Option<TypeId> {
        let (want_kind, bare) = match name.trim().split_once(' ') {
            Some(("struct", rest)) => (Some(AggregateKind::Struct), rest.trim()),
            Some(("union", rest)) => (Some(AggregateKind::Union), rest.trim()),
            _ => (None, name.trim()),
        };
        let tagged = self.iter().find(|(_, t)| {
            matches!(t, Type::Aggregate { kind, name: Some(n), .. }
                if n == bare && want_kind.is_none_or(|k| k == *kind))
        });
        if let Some((id, _)) = tagged {
            return Some(id);
        }
        if want_kind.is_none() {
            for (id, t) in self.iter() {
                if matches!(t, Type::Typedef { name: n, .. } if n == bare) {
                    let r = self.resolve(id);
                    if matches!(self.get(r), Some(Type::Aggregate { .. })) {
                        return Some(r);
                    }
                }
            }
        }
        None
    }

    /// The C spelling of a type, e.g. `struct sock *`, `unsigned int[4]`.
    pub fn type_name(&self, id: TypeId) -> String {
        let (prefix, suffix) = self.declarator(id, String::new(), 0);
        format!("{prefix}{suffix}").trim_end().to_string()
    }

    /// C declaration of `name` with type `id`, e.g. `int (*fn)(void)`, `char comm[16]`.
    pub fn declare(&self, id: TypeId, name: &str) -> String {
        let (prefix, suffix) = self.declarator(id, name.to_string(), 0);
        format!("{prefix}{suffix}")
    }

    /// Builds a C declarator: returns (specifier-with-leading-part, trailing part).
    fn declarator(&self, id: TypeId, inner: String, depth: usize) -> (String, String) {
        if depth > MAX_TYPE_DEPTH {
            return ("/* too deep */ ".into(), inner);
        }
        let sep = |s: &str, inner: &str| {
            if inner.is_empty() || inner.starts_with('[') {
                format!("{s}{inner}")
            } else {
                format!("{s} {inner}")
            }
        };
        match self.get(id) {
            None => (format!("/* bad type {} */", id.0), inner),
            Some(Type::Void) => (sep("void", &inner), String::new()),
            Some(Type::Base { name, .. }) | Some(Type::Typedef { name, .. }) => {
                (sep(name, &inner), String::new())
            }
            Some(Type::Aggregate { kind, name, .. }) | Some(Type::Opaque { kind, name, .. }) => {
                let spec = format!("{} {}", kind.keyword(), name.as_deref().unwrap_or("{...}"));
                (sep(&spec, &inner), String::new())
            }
            Some(Type::Enum { name, .. }) => {
                let spec = format!("enum {}", name.as_deref().unwrap_or("{...}"));
                (sep(&spec, &inner), String::new())
            }
            Some(Type::Qualified { qualifier, target }) => {
                // Qualifiers on pointers go after the star; on others, before the type.
                if matches!(self.get(*target), Some(Type::Pointer { .. })) {
                    let inner = if inner.is_empty() {
                        qualifier.keyword().to_string()
                    } else {
                        format!("{} {inner}", qualifier.keyword())
                    };
                    self.declarator(*target, inner, depth + 1)
                } else {
                    let (p, s) = self.declarator(*target, inner, depth + 1);
                    (format!("{} {p}", qualifier.keyword()), s)
                }
            }
            Some(Type::Pointer { target, .. }) => {
                let needs_parens = matches!(
                    self.get(self.resolve_qualifiers(*target)),
                    Some(Type::Array { .. }) | Some(Type::Function { .. })
                );
                let inner = if needs_parens {
                    format!("(*{inner})")
                } else {
                    format!("*{inner}")
                };
                self.declarator(*target, inner, depth + 1)
            }
            Some(Type::Array { element, dims }) => {
                let mut s = inner;
                for d in dims {
                    match d {
                        ArrayBound::Count(n) => s.push_str(&format!("[{n}]")),
                        ArrayBound::Flexible => s.push_str("[]"),
                    }
                }
                self.declarator(*element, s, depth + 1)
            }
            Some(Type::Function {
                ret,
                params,
                variadic,
            }) => {
                let mut ps: Vec<String> = params.iter().map(|p| self.type_name(*p)).collect();
                if *variadic {
                    ps.push("...".into());
                }
                if ps.is_empty() {
                    ps.push("void".into());
                }
                let inner = format!("{inner}({})", ps.join(", "));
                self.declarator(*ret, inner, depth + 1)
            }
        }
    }

    fn resolve_qualifiers(&self, mut id: TypeId) -> TypeId {
        for _ in 0..MAX_TYPE_DEPTH {
            match self.get(id) {
                Some(Type::Qualified { target, .. }) => id = *target,
                _ => break,
            }
        }
        id
    }

    /// Ids a type refers to, and whether each reference is by value (true) or through a
    /// pointer or function signature (false).
    fn references(ty: &Type) -> Vec<(TypeId, bool)> {
        match ty {
            Type::Void | Type::Base { .. } | Type::Opaque { .. } | Type::Enum { .. } => vec![],
            Type::Aggregate { members, .. } => members.iter().map(|m| (m.ty, true)).collect(),
            Type::Array { element, .. } => vec![(*element, true)],
            Type::Pointer { target, .. } => vec![(*target, false)],
            Type::Function { ret, params, .. } => std::iter::once(*ret)
                .chain(params.iter().copied())
                .map(|t| (t, false))
                .collect(),
            Type::Typedef { target, .. } | Type::Qualified { target, .. } => {
                vec![(*target, true)]
            }
        }
    }

    /// Checks that every id is in range, that only pointers close cycles, that by-value
    /// nesting is bounded, and that sizes and member positions are sane. Runs in time
    /// linear in the table; allocates only per-type bookkeeping.
    pub fn validate(&self) -> Result<(), TypeError> {
        let len = self.types.len();
        for (id, ty) in self.iter() {
            for (to, _) in Self::references(ty) {
                if to.index() >= len {
                    return Err(TypeError::DanglingId {
                        from: id.0,
                        to: to.0,
                        len,
                    });
                }
            }
            self.validate_shape(id, ty)?;
        }
        // Depth of each type along by-value edges; detects cycles (iterative DFS).
        const UNSEEN: u32 = u32::MAX;
        const ON_STACK: u32 = u32::MAX - 1;
        let mut depth = vec![UNSEEN; len];
        for root in 0..len {
            if depth[root] != UNSEEN {
                continue;
            }
            let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
            depth[root] = ON_STACK;
            while let Some(&(node, next)) = stack.last() {
                let refs: Vec<usize> = Self::references(&self.types[node])
                    .into_iter()
                    .filter(|(_, by_value)| *by_value)
                    .map(|(t, _)| t.index())
                    .collect();
                if let Some(&child) = refs.get(next) {
                    stack.last_mut().expect("non-empty").1 += 1;
                    match depth[child] {
                        ON_STACK => return Err(TypeError::CycleByValue(child as u32)),
                        UNSEEN => {
                            if stack.len() >= MAX_TYPE_DEPTH {
                                return Err(TypeError::TooDeep(MAX_TYPE_DEPTH));
                            }
                            depth[child] = ON_STACK;
                            stack.push((child, 0));
                        }
                        _ => {}
                    }
                } else {
                    let d = refs
                        .iter()
                        .map(|&c| depth[c].saturating_add(1))
                        .max()
                        .unwrap_or(0);
                    if d as usize > MAX_TYPE_DEPTH {
                        return Err(TypeError::TooDeep(MAX_TYPE_DEPTH));
                    }
                    depth[node] = d;
                    stack.pop();
                }
            }
        }
        for (id, _) in self.iter() {
            if let Some(size) = self.size_of(id) {
                if size > MAX_TYPE_SIZE {
                    return Err(TypeError::AbsurdSize {
                        id: id.0,
                        size,
                        limit: MAX_TYPE_SIZE,
                    });
                }
            }
        }
        Ok(())
    }

    fn validate_shape(&self, id: TypeId, ty: &Type) -> Result<(), TypeError> {
        let check_size = |size: u64| {
            if size > MAX_TYPE_SIZE {
                Err(TypeError::AbsurdSize {
                    id: id.0,
                    size,
                    limit: MAX_TYPE_SIZE,
                })
            } else {
                Ok(())
            }
        };
        match ty {
            Type::Base { size, .. } | Type::Pointer { size, .. } | Type::Enum { size, .. } => {
                check_size(*size)?;
                if *size > 16 {
                    return Err(TypeError::AbsurdSize {
                        id: id.0,
                        size: *size,
                        limit: 16,
                    });
                }
            }
            Type::Aggregate { size, members, .. } => {
                check_size(*size)?;
                for (i, m) in members.iter().enumerate() {
                    if m.offset > *size {
                        return Err(TypeError::MemberOutOfBounds {
                            id: id.0,
                            member: i,
                            detail: format!("offset {} > size {}", m.offset, size),
                        });
                    }
                    if let Some(bf) = m.bitfield {
                        if bf.bit_size == 0 || bf.bit_size > 64 {
                            return Err(TypeError::BadBitfieldWidth {
                                id: id.0,
                                member: i,
                                width: bf.bit_size,
                            });
                        }
                        let end = bf.bit_offset.saturating_add(u64::from(bf.bit_size));
                        if end > size.saturating_mul(8) {
                            return Err(TypeError::MemberOutOfBounds {
                                id: id.0,
                                member: i,
                                detail: format!(
                                    "bits {}..{end} beyond {} bytes",
                                    bf.bit_offset, size
                                ),
                            });
                        }
                    }
                }
            }
            Type::Opaque {
                size: Some(size), ..
            } => check_size(*size)?,
            Type::Array { element, dims }
                if dims.is_empty() || matches!(self.get(*element), Some(Type::Array { .. })) =>
            {
                return Err(TypeError::MalformedArray(id.0));
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int(t: &mut TypeTable) -> TypeId {
        t.push(Type::Base {
            name: "int".into(),
            size: 4,
            encoding: BaseEncoding::Signed,
        })
    }

    #[test]
    fn only_plain_char_is_text() {
        let mut t = TypeTable::default();
        let base = |name: &str, encoding| Type::Base {
            name: name.into(),
            size: 1,
            encoding,
        };
        let ch = t.push(base("char", BaseEncoding::SignedChar));
        let uch = t.push(base("unsigned char", BaseEncoding::UnsignedChar));
        let cch = t.push(Type::Qualified {
            qualifier: Qualifier::Const,
            target: ch,
        });
        let u8_ = t.push(Type::Typedef {
            name: "u8".into(),
            target: uch,
        });
        let text = t.push(Type::Typedef {
            name: "text_t".into(),
            target: cch,
        });
        let int = int(&mut t);
        assert!(t.is_text_char(ch));
        assert!(t.is_text_char(text));
        assert!(t.is_text_char(cch));
        assert!(!t.is_text_char(uch));
        assert!(!t.is_text_char(u8_));
        assert!(!t.is_text_char(int));
        assert!(!t.is_text_char(TypeId(999)));
    }

    #[test]
    fn recursive_struct_through_pointer_is_valid() {
        let mut t = TypeTable::new();
        let head = t.push(Type::Void);
        let ptr = t.push(Type::Pointer {
            target: head,
            size: 8,
        });
        t.set(
            head,
            Type::Aggregate {
                kind: AggregateKind::Struct,
                name: Some("list_head".into()),
                size: 16,
                members: vec![
                    Member {
                        name: Some("next".into()),
                        ty: ptr,
                        offset: 0,
                        bitfield: None,
                    },
                    Member {
                        name: Some("prev".into()),
                        ty: ptr,
                        offset: 8,
                        bitfield: None,
                    },
                ],
            },
        );
        t.validate().unwrap();
        assert_eq!(t.type_name(ptr), "struct list_head *");
        assert_eq!(t.find_aggregate("struct list_head"), Some(head));
    }

    #[test]
    fn cycle_by_value_is_rejected() {
        let mut t = TypeTable::new();
        let a = t.push(Type::Void);
        let td = t.push(Type::Typedef {
            name: "a_t".into(),
            target: a,
        });
        t.set(
            a,
            Type::Aggregate {
                kind: AggregateKind::Struct,
                name: Some("a".into()),
                size: 4,
                members: vec![Member {
                    name: Some("self".into()),
                    ty: td,
                    offset: 0,
                    bitfield: None,
                }],
            },
        );
        assert!(matches!(t.validate(), Err(TypeError::CycleByValue(_))));
    }

    #[test]
    fn dangling_and_absurd_are_rejected() {
        let mut t = TypeTable::new();
        t.push(Type::Pointer {
            target: TypeId(99),
            size: 8,
        });
        assert!(matches!(t.validate(), Err(TypeError::DanglingId { .. })));

        let mut t = TypeTable::new();
        let i = int(&mut t);
        t.push(Type::Array {
            element: i,
            dims: vec![ArrayBound::Count(u64::MAX / 2)],
        });
        assert!(matches!(
            t.validate(),
            Err(TypeError::AbsurdSize { .. }) | Ok(())
        ));
        // Overflowing sizes are unknown rather than wrapped.
        assert_eq!(t.size_of(TypeId(1)), None);
    }

    #[test]
    fn deep_nesting_is_bounded() {
        let mut t = TypeTable::new();
        let mut cur = int(&mut t);
        for i in 0..200 {
            cur = t.push(Type::Typedef {
                name: format!("t{i}"),
                target: cur,
            });
        }
        assert!(matches!(t.validate(), Err(TypeError::TooDeep(_))));
    }

    #[test]
    fn declarations_read_like_c() {
        let mut t = TypeTable::new();
        let i = int(&mut t);
        let arr = t.push(Type::Array {
            element: i,
            dims: vec![ArrayBound::Count(2), ArrayBound::Count(3)],
        });
        let f = t.push(Type::Function {
            ret: i,
            params: vec![],
            variadic: false,
        });
        let fp = t.push(Type::Pointer { target: f, size: 8 });
        let c = t.push(Type::Qualified {
            qualifier: Qualifier::Const,
            target: fp,
        });
        assert_eq!(t.declare(arr, "m"), "int m[2][3]");
        assert_eq!(t.declare(fp, "cb"), "int (*cb)(void)");
        assert_eq!(t.declare(c, "cb"), "int (*const cb)(void)");
        assert_eq!(t.size_of(arr), Some(24));
    }
}
