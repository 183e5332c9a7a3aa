//! The C type model: complete for what kernel C declares.
//!
//! Types live in a [`TypeTable`] and refer to each other by [`TypeId`] (an index into the
//! table), so recursive types such as `struct list_head` need no special casing. A table
//! built by `vmark-build` or decoded from a manifest is checked by [`TypeTable::validate`]
//! before anything walks it.

use crate::bounded;
use crate::limits;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

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
    #[serde(deserialize_with = "bounded::opt_type_name")]
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
    #[serde(deserialize_with = "bounded::type_name")]
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
        #[serde(deserialize_with = "bounded::type_name")]
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
        #[serde(deserialize_with = "bounded::opt_type_name")]
        name: Option<String>,
        /// Size in bytes.
        size: u64,
        /// Members in declaration order.
        #[serde(deserialize_with = "bounded::members")]
        members: Vec<Member>,
    },
    /// A struct or union whose members are not in this table: declared only, or cut off
    /// beyond the configured pointer depth. Its size is known when it was cut off.
    Opaque {
        /// `struct` or `union`.
        kind: AggregateKind,
        /// Tag name.
        #[serde(deserialize_with = "bounded::opt_type_name")]
        name: Option<String>,
        /// Size in bytes when known.
        size: Option<u64>,
    },
    /// An array, possibly multi-dimensional (`int a[2][3]` has dims `[2, 3]`).
    Array {
        /// Element type (never itself an array: dimensions are folded into `dims`).
        element: TypeId,
        /// Dimensions, outermost first.
        #[serde(deserialize_with = "bounded::dims")]
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
        #[serde(deserialize_with = "bounded::params")]
        params: Vec<TypeId>,
        /// Ends in `...`.
        variadic: bool,
    },
    /// An enum.
    Enum {
        /// Tag name; `None` when anonymous.
        #[serde(deserialize_with = "bounded::opt_type_name")]
        name: Option<String>,
        /// Size in bytes of its underlying integer.
        size: u64,
        /// Whether the underlying integer is signed.
        signed: bool,
        /// Its constants.
        #[serde(deserialize_with = "bounded::enumerators")]
        enumerators: Vec<Enumerator>,
    },
    /// `typedef target name`.
    Typedef {
        /// The new name.
        #[serde(deserialize_with = "bounded::type_name")]
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
    /// A size that does not fit in 64 bits (array dimensions whose product overflows).
    #[error("type {0}: its size overflows 64 bits")]
    SizeOverflow(u32),
    /// A list (members, enumerators, parameters, dimensions) longer than its limit.
    #[error("type {id} has {count} {what}, more than the limit of {limit}")]
    TooMany {
        /// The type.
        id: u32,
        /// What the list holds.
        what: &'static str,
        /// Its length.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// A name (of the type, a member or an enumerator) longer than
    /// [`limits::TYPE_MAX_NAME_LEN`].
    #[error(
        "type {id} has a name of {len} bytes, more than the limit of {}",
        limits::TYPE_MAX_NAME_LEN
    )]
    NameTooLong {
        /// The type.
        id: u32,
        /// The name's length.
        len: usize,
    },
}

/// Sizes above this are refused: no kernel object a mark could name is this large, and a
/// hostile manifest must not make the host allocate or loop without bound.
pub const MAX_TYPE_SIZE: u64 = limits::TYPE_MAX_SIZE;
/// Maximum nesting of types by value (struct in struct in array ...).
pub const MAX_TYPE_DEPTH: usize = limits::TYPE_MAX_DEPTH;

/// All the types of a module's manifest (or of a DWARF or BTF source), indexed by [`TypeId`].
///
/// Deserializing one is bounded (see the `bounded` module): at most
/// [`limits::MANIFEST_MAX_TYPES`] types, every list and name within its limit, and the
/// whole model within a memory budget charged before each allocation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TypeTable {
    types: Vec<Type>,
}

impl<'de> Deserialize<'de> for TypeTable {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        /// The same shape as the derived `Serialize` of [`TypeTable`].
        #[derive(Deserialize)]
        struct Wire {
            #[serde(deserialize_with = "bounded::types")]
            types: Vec<Type>,
        }
        // Inside `codec::decode` this draws on its scope; on its own, on the absolute cap.
        let (wire, _) = bounded::scope(limits::MANIFEST_MAX_MODEL_BYTES, || Wire::deserialize(d));
        Ok(TypeTable { types: wire?.types })
    }
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
    ///
    /// Naming walks the type graph (pointer targets, function return and parameter types),
    /// which a guest's manifest chooses: the whole walk, parameters included, draws on one
    /// budget of [`limits::TYPE_NAME_MAX_STEPS`] types and the result is at most
    /// [`limits::TYPE_NAME_MAX_LEN`] bytes (plus a marker); past either, the name ends in
    /// `/* ... */`. Works on any table, validated or not.
    pub fn type_name(&self, id: TypeId) -> String {
        let mut namer = Namer::new(self);
        let (prefix, suffix) = namer.declarator(id, String::new(), 0);
        namer.finish(format!("{prefix}{suffix}").trim_end().to_string())
    }

    /// C declaration of `name` with type `id`, e.g. `int (*fn)(void)`, `char comm[16]`.
    /// Bounded as [`TypeTable::type_name`].
    pub fn declare(&self, id: TypeId, name: &str) -> String {
        let mut namer = Namer::new(self);
        let inner = namer.clip(name).to_string();
        let (prefix, suffix) = namer.declarator(id, inner, 0);
        namer.finish(format!("{prefix}{suffix}"))
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

    /// The `k`-th type `ty` holds by value (members, array element, typedef and qualifier
    /// targets; never a pointer's target or a function's signature), in O(1).
    fn by_value_child(ty: &Type, k: usize) -> Option<TypeId> {
        match ty {
            Type::Aggregate { members, .. } => members.get(k).map(|m| m.ty),
            Type::Array { element, .. } if k == 0 => Some(*element),
            Type::Typedef { target, .. } | Type::Qualified { target, .. } if k == 0 => {
                Some(*target)
            }
            _ => None,
        }
    }

    /// Calls `f` with every id `ty` refers to, by value or not.
    fn for_each_reference(
        ty: &Type,
        mut f: impl FnMut(TypeId) -> Result<(), TypeError>,
    ) -> Result<(), TypeError> {
        match ty {
            Type::Void | Type::Base { .. } | Type::Opaque { .. } | Type::Enum { .. } => Ok(()),
            Type::Aggregate { members, .. } => members.iter().try_for_each(|m| f(m.ty)),
            Type::Array { element, .. } => f(*element),
            Type::Pointer { target, .. }
            | Type::Typedef { target, .. }
            | Type::Qualified { target, .. } => f(*target),
            Type::Function { ret, params, .. } => {
                f(*ret)?;
                params.iter().try_for_each(|p| f(*p))
            }
        }
    }

    /// Checks that every id is in range, that only pointers close cycles, that by-value
    /// nesting is bounded, that sizes (array sizes included) are computed without overflow
    /// and sane, that member positions are inside their types, and that names and lists
    /// are within [`limits`].
    ///
    /// Runs in time linear in the size of the table (types plus members, enumerators,
    /// parameters and dimensions): each type's own checks look at it once, and one
    /// depth-first walk over the by-value edges visits every edge once, taking each type's
    /// `k`-th child in O(1) and computing depth and size in post-order from its children's.
    /// Allocates only per-type bookkeeping (a few words per type).
    pub fn validate(&self) -> Result<(), TypeError> {
        self.validate_counted().map(|_| ())
    }

    /// [`TypeTable::validate`], returning the number of elementary steps it took (for the
    /// tests that check validation stays linear).
    fn validate_counted(&self) -> Result<u64, TypeError> {
        let len = self.types.len();
        let mut work = 0u64;
        for (id, ty) in self.iter() {
            Self::for_each_reference(ty, |to| {
                work += 1;
                if to.index() >= len {
                    return Err(TypeError::DanglingId {
                        from: id.0,
                        to: to.0,
                        len,
                    });
                }
                Ok(())
            })?;
            work += self.validate_shape(id, ty)?;
        }
        // Depth of each type along by-value edges and its size, in post-order; detects
        // cycles (iterative DFS, so no recursion whatever the table).
        const UNSEEN: u32 = u32::MAX;
        const ON_STACK: u32 = u32::MAX - 1;
        let mut depth = vec![UNSEEN; len];
        let mut size: Vec<Option<u64>> = vec![None; len];
        let mut stack: Vec<(usize, usize)> = Vec::new();
        for root in 0..len {
            if depth[root] != UNSEEN {
                continue;
            }
            depth[root] = ON_STACK;
            stack.push((root, 0));
            while let Some(&(node, next)) = stack.last() {
                work += 1;
                let ty = &self.types[node];
                if let Some(child) = Self::by_value_child(ty, next) {
                    if let Some(top) = stack.last_mut() {
                        top.1 += 1;
                    }
                    let child = child.index();
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
                    continue;
                }
                // Every child is done: this type's depth and size follow from theirs.
                let mut d = 0u32;
                let mut k = 0;
                while let Some(child) = Self::by_value_child(ty, k) {
                    work += 1;
                    d = d.max(depth[child.index()].saturating_add(1));
                    k += 1;
                }
                if d as usize > MAX_TYPE_DEPTH {
                    return Err(TypeError::TooDeep(MAX_TYPE_DEPTH));
                }
                depth[node] = d;
                let id = node as u32;
                let s = match ty {
                    Type::Void | Type::Function { .. } => None,
                    Type::Base { size, .. }
                    | Type::Aggregate { size, .. }
                    | Type::Pointer { size, .. }
                    | Type::Enum { size, .. } => Some(*size),
                    Type::Opaque { size, .. } => *size,
                    Type::Array { element, dims } => {
                        work += dims.len() as u64;
                        let mut n: u64 = 1;
                        let mut flexible = false;
                        for dim in dims {
                            match dim {
                                ArrayBound::Count(c) => {
                                    n = n.checked_mul(*c).ok_or(TypeError::SizeOverflow(id))?
                                }
                                ArrayBound::Flexible => flexible = true,
                            }
                        }
                        match size[element.index()] {
                            _ if flexible => Some(0),
                            Some(e) => Some(n.checked_mul(e).ok_or(TypeError::SizeOverflow(id))?),
                            None => None,
                        }
                    }
                    Type::Typedef { target, .. } | Type::Qualified { target, .. } => {
                        size[target.index()]
                    }
                };
                if let Some(s) = s {
                    if s > MAX_TYPE_SIZE {
                        return Err(TypeError::AbsurdSize {
                            id,
                            size: s,
                            limit: MAX_TYPE_SIZE,
                        });
                    }
                }
                size[node] = s;
                stack.pop();
            }
        }
        Ok(work)
    }

    /// The checks of one type on its own; returns the steps taken.
    fn validate_shape(&self, id: TypeId, ty: &Type) -> Result<u64, TypeError> {
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
        let check_name = |name: &str| {
            if name.len() > limits::TYPE_MAX_NAME_LEN {
                Err(TypeError::NameTooLong {
                    id: id.0,
                    len: name.len(),
                })
            } else {
                Ok(())
            }
        };
        let check_count = |what: &'static str, count: usize, limit: usize| {
            if count > limit {
                Err(TypeError::TooMany {
                    id: id.0,
                    what,
                    count,
                    limit,
                })
            } else {
                Ok(())
            }
        };
        let mut work = 1u64;
        match ty {
            Type::Base { name, size, .. } => {
                check_name(name)?;
                check_size(*size)?;
                if *size > 16 {
                    return Err(TypeError::AbsurdSize {
                        id: id.0,
                        size: *size,
                        limit: 16,
                    });
                }
            }
            Type::Pointer { size, .. } => {
                if *size > 16 {
                    return Err(TypeError::AbsurdSize {
                        id: id.0,
                        size: *size,
                        limit: 16,
                    });
                }
            }
            Type::Enum {
                name,
                size,
                enumerators,
                ..
            } => {
                check_name(name.as_deref().unwrap_or(""))?;
                check_count(
                    "enumerators",
                    enumerators.len(),
                    limits::TYPE_MAX_ENUMERATORS,
                )?;
                for e in enumerators {
                    check_name(&e.name)?;
                }
                work += enumerators.len() as u64;
                if *size > 16 {
                    return Err(TypeError::AbsurdSize {
                        id: id.0,
                        size: *size,
                        limit: 16,
                    });
                }
            }
            Type::Aggregate {
                name,
                size,
                members,
                ..
            } => {
                check_name(name.as_deref().unwrap_or(""))?;
                check_size(*size)?;
                check_count("members", members.len(), limits::TYPE_MAX_MEMBERS)?;
                work += members.len() as u64;
                for (i, m) in members.iter().enumerate() {
                    check_name(m.name.as_deref().unwrap_or(""))?;
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
                        let end = bf.bit_offset.checked_add(u64::from(bf.bit_size));
                        if end.is_none_or(|end| end > size.saturating_mul(8)) {
                            return Err(TypeError::MemberOutOfBounds {
                                id: id.0,
                                member: i,
                                detail: format!(
                                    "bits {}..+{} beyond {} bytes",
                                    bf.bit_offset, bf.bit_size, size
                                ),
                            });
                        }
                    }
                }
            }
            Type::Opaque { name, size, .. } => {
                check_name(name.as_deref().unwrap_or(""))?;
                if let Some(size) = size {
                    check_size(*size)?;
                }
            }
            Type::Array { element, dims } => {
                check_count("dimensions", dims.len(), limits::TYPE_MAX_DIMS)?;
                if dims.is_empty() || matches!(self.get(*element), Some(Type::Array { .. })) {
                    return Err(TypeError::MalformedArray(id.0));
                }
            }
            Type::Function { params, .. } => {
                check_count("parameters", params.len(), limits::TYPE_MAX_PARAMS)?;
            }
            Type::Typedef { name, .. } => check_name(name)?,
            Type::Void | Type::Qualified { .. } => {}
        }
        Ok(work)
    }
}

/// What a name cut short by its budget ends in.
const CUT: &str = "/* ... */";

/// One naming walk: the budget every part of a type's spelling draws on, so that types
/// recursing through pointers and function parameters cannot recurse without end nor
/// produce unbounded text.
struct Namer<'a> {
    table: &'a TypeTable,
    /// Types visited so far.
    steps: usize,
    /// Bytes of text produced so far (names, keywords, punctuation).
    len: usize,
    /// Whether a budget cut the name short.
    cut: bool,
}

impl<'a> Namer<'a> {
    fn new(table: &'a TypeTable) -> Self {
        Namer {
            table,
            steps: 0,
            len: 0,
            cut: false,
        }
    }

    /// Most types one walk visits: the spine of each declarator (pointer, array, qualifier
    /// and return types, at most [`MAX_TYPE_DEPTH`] deep) is always completed, so that a
    /// cut name still reads as C; only starting another parameter needs the step budget.
    const MAX_VISITS: usize = limits::TYPE_NAME_MAX_STEPS * (MAX_TYPE_DEPTH + 2);

    /// Charges a visit; false once the walk is too deep (and marks the name cut).
    fn visit(&mut self, depth: usize) -> bool {
        self.steps += 1;
        if depth > MAX_TYPE_DEPTH || self.steps > Self::MAX_VISITS {
            self.cut = true;
            return false;
        }
        true
    }

    /// Whether another parameter may be spelled out.
    fn may_start_parameter(&self) -> bool {
        self.steps < limits::TYPE_NAME_MAX_STEPS && self.len <= limits::TYPE_NAME_MAX_LEN
    }

    /// `text` charged against the length budget, cut to what is left of it.
    fn clip<'s>(&mut self, text: &'s str) -> &'s str {
        let room = limits::TYPE_NAME_MAX_LEN.saturating_sub(self.len);
        let text = if text.len() > room {
            self.cut = true;
            let mut end = room;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            &text[..end]
        } else {
            text
        };
        self.len += text.len();
        text
    }

    /// The complete spelling, cut to the length limit and marked if a budget ran out.
    fn finish(&self, mut s: String) -> String {
        if s.len() > limits::TYPE_NAME_MAX_LEN {
            let mut end = limits::TYPE_NAME_MAX_LEN;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            s.truncate(end);
        }
        if self.cut && !s.ends_with(CUT) {
            if !s.is_empty() && !s.ends_with(' ') {
                s.push(' ');
            }
            s.push_str(CUT);
        }
        s
    }

    /// Builds a C declarator: returns (specifier-with-leading-part, trailing part).
    fn declarator(&mut self, id: TypeId, inner: String, depth: usize) -> (String, String) {
        if !self.visit(depth) {
            return (format!("{CUT} "), inner);
        }
        let sep = |s: &str, inner: &str| {
            if inner.is_empty() || inner.starts_with('[') {
                format!("{s}{inner}")
            } else {
                format!("{s} {inner}")
            }
        };
        let table = self.table;
        match table.get(id) {
            None => (format!("/* bad type {} */", id.0), inner),
            Some(Type::Void) => (sep("void", &inner), String::new()),
            Some(Type::Base { name, .. }) | Some(Type::Typedef { name, .. }) => {
                let name = self.clip(name);
                (sep(name, &inner), String::new())
            }
            Some(Type::Aggregate { kind, name, .. }) | Some(Type::Opaque { kind, name, .. }) => {
                let name = self.clip(name.as_deref().unwrap_or("{...}"));
                let spec = format!("{} {name}", kind.keyword());
                (sep(&spec, &inner), String::new())
            }
            Some(Type::Enum { name, .. }) => {
                let name = self.clip(name.as_deref().unwrap_or("{...}"));
                let spec = format!("enum {name}");
                (sep(&spec, &inner), String::new())
            }
            Some(Type::Qualified { qualifier, target }) => {
                self.len += qualifier.keyword().len() + 1;
                // Qualifiers on pointers go after the star; on others, before the type.
                if matches!(table.get(*target), Some(Type::Pointer { .. })) {
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
                    table.get(table.resolve_qualifiers(*target)),
                    Some(Type::Array { .. }) | Some(Type::Function { .. })
                );
                let inner = if needs_parens {
                    self.len += 3;
                    format!("(*{inner})")
                } else {
                    self.len += 1;
                    format!("*{inner}")
                };
                self.declarator(*target, inner, depth + 1)
            }
            Some(Type::Array { element, dims }) => {
                let mut s = inner;
                for d in dims {
                    if self.len > limits::TYPE_NAME_MAX_LEN {
                        self.cut = true;
                        break;
                    }
                    let before = s.len();
                    match d {
                        ArrayBound::Count(n) => {
                            let _ = write!(s, "[{n}]");
                        }
                        ArrayBound::Flexible => s.push_str("[]"),
                    }
                    self.len += s.len() - before;
                }
                self.declarator(*element, s, depth + 1)
            }
            Some(Type::Function {
                ret,
                params,
                variadic,
            }) => {
                let mut ps = String::new();
                for (i, p) in params.iter().enumerate() {
                    if i > 0 {
                        ps.push_str(", ");
                        self.len += 2;
                    }
                    if !self.may_start_parameter() {
                        self.cut = true;
                        ps.push_str(CUT);
                        break;
                    }
                    // The same walk, one level deeper: a parameter whose type leads back
                    // here draws on the same budget.
                    let (prefix, suffix) = self.declarator(*p, String::new(), depth + 1);
                    ps.push_str(format!("{prefix}{suffix}").trim_end());
                }
                if *variadic {
                    ps.push_str(if params.is_empty() { "..." } else { ", ..." });
                }
                if ps.is_empty() {
                    ps.push_str("void");
                }
                self.len += 2;
                let inner = format!("{inner}({ps})");
                self.declarator(*ret, inner, depth + 1)
            }
        }
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
        // 2^63 ints: the size overflows and the table is refused (it used to pass).
        assert_eq!(t.validate(), Err(TypeError::SizeOverflow(1)));
        // Overflowing sizes are unknown rather than wrapped.
        assert_eq!(t.size_of(TypeId(1)), None);
    }

    #[test]
    fn array_dimensions_whose_product_overflows_are_rejected() {
        let mut t = TypeTable::new();
        let ch = t.push(Type::Base {
            name: "char".into(),
            size: 1,
            encoding: BaseEncoding::SignedChar,
        });
        // 2^33 * 2^33 overflows even with one-byte elements.
        let arr = t.push(Type::Array {
            element: ch,
            dims: vec![ArrayBound::Count(1 << 33), ArrayBound::Count(1 << 33)],
        });
        assert_eq!(t.validate(), Err(TypeError::SizeOverflow(arr.0)));
        // Through a typedef and a struct member too.
        let mut t = TypeTable::new();
        let e = t.push(Type::Aggregate {
            kind: AggregateKind::Struct,
            name: Some("empty".into()),
            size: 0,
            members: vec![],
        });
        let arr = t.push(Type::Array {
            element: e,
            dims: vec![ArrayBound::Count(u64::MAX), ArrayBound::Count(3)],
        });
        t.push(Type::Typedef {
            name: "t".into(),
            target: arr,
        });
        assert_eq!(t.validate(), Err(TypeError::SizeOverflow(arr.0)));
    }

    #[test]
    fn bitfield_end_that_overflows_is_rejected() {
        let mut t = TypeTable::new();
        let i = int(&mut t);
        t.push(Type::Aggregate {
            kind: AggregateKind::Struct,
            name: Some("s".into()),
            size: 8,
            members: vec![Member {
                name: Some("b".into()),
                ty: i,
                offset: 0,
                bitfield: Some(Bitfield {
                    bit_offset: u64::MAX - 1,
                    bit_size: 4,
                }),
            }],
        });
        assert!(matches!(
            t.validate(),
            Err(TypeError::MemberOutOfBounds { .. })
        ));
    }

    /// `void (*)(P)` where `P` is that very function pointer type: valid (the cycle goes
    /// through a pointer), and naming it used to recurse until the stack overflowed.
    fn self_referential_function_pointer() -> (TypeTable, TypeId) {
        let mut t = TypeTable::new();
        let void = t.push(Type::Void);
        let fp = TypeId(2);
        let f = t.push(Type::Function {
            ret: void,
            params: vec![fp, fp],
            variadic: false,
        });
        assert_eq!(t.push(Type::Pointer { target: f, size: 8 }), fp);
        t.validate().unwrap();
        (t, fp)
    }

    #[test]
    fn naming_a_type_that_recurses_through_its_parameters_is_bounded() {
        let (t, fp) = self_referential_function_pointer();
        for name in [t.type_name(fp), t.declare(fp, "cb")] {
            assert!(name.ends_with(CUT), "{name}");
            assert!(name.len() <= limits::TYPE_NAME_MAX_LEN + CUT.len() + 1);
            assert!(name.starts_with("void (*"), "{name}");
        }
    }

    #[test]
    fn naming_a_wide_recursive_signature_is_bounded() {
        // A function of 1000 parameters, each a pointer to the function itself: the
        // budget is shared by every parameter, so this is not 1000^depth work.
        let mut t = TypeTable::new();
        let long = "n".repeat(limits::TYPE_MAX_NAME_LEN);
        let ret = t.push(Type::Typedef {
            name: long,
            target: TypeId(0),
        });
        t.set(ret, Type::Void);
        let fp = TypeId(2);
        let f = t.push(Type::Function {
            ret,
            params: vec![fp; 1000],
            variadic: true,
        });
        t.push(Type::Pointer { target: f, size: 8 });
        t.validate().unwrap();
        let mut namer = Namer::new(&t);
        let _ = namer.declarator(fp, String::new(), 0);
        assert!(namer.cut);
        assert!(namer.steps <= Namer::MAX_VISITS + 1, "{}", namer.steps);
        let name = t.type_name(fp);
        assert!(name.len() <= limits::TYPE_NAME_MAX_LEN + CUT.len() + 1);
    }

    #[test]
    fn names_within_budget_are_unchanged() {
        let mut t = TypeTable::new();
        let i = int(&mut t);
        let sock = t.push(Type::Opaque {
            kind: AggregateKind::Struct,
            name: Some("sock".into()),
            size: None,
        });
        let psock = t.push(Type::Pointer {
            target: sock,
            size: 8,
        });
        let f = t.push(Type::Function {
            ret: i,
            params: vec![psock, i, psock],
            variadic: true,
        });
        let fp = t.push(Type::Pointer { target: f, size: 8 });
        let cfp = t.push(Type::Qualified {
            qualifier: Qualifier::Const,
            target: fp,
        });
        assert_eq!(
            t.declare(cfp, "cb"),
            "int (*const cb)(struct sock *, int, struct sock *, ...)"
        );
        let v = t.push(Type::Function {
            ret: i,
            params: vec![],
            variadic: true,
        });
        assert_eq!(t.type_name(v), "int (...)");
    }

    #[test]
    fn naming_an_unvalidated_table_never_fails() {
        // A typedef cycle (rejected by validation) and dangling ids still name.
        let mut t = TypeTable::new();
        t.push(Type::Typedef {
            name: "a".into(),
            target: TypeId(1),
        });
        t.push(Type::Qualified {
            qualifier: Qualifier::Volatile,
            target: TypeId(0),
        });
        t.push(Type::Pointer {
            target: TypeId(99),
            size: 8,
        });
        assert!(t.validate().is_err());
        assert_eq!(t.type_name(TypeId(0)), "a");
        assert!(t.type_name(TypeId(1)).starts_with("volatile a"));
        assert!(t.type_name(TypeId(2)).contains("bad type 99"));
    }

    #[test]
    fn validation_is_linear_in_the_members_of_an_aggregate() {
        // One struct of 60 000 members: counting the steps, validation takes a small
        // constant per member (it used to rebuild the member list at every step of its
        // walk: 3.6 * 10^9 copies).
        let mut t = TypeTable::new();
        let i = int(&mut t);
        let n = 60_000u64;
        let members = (0..n)
            .map(|k| Member {
                name: None,
                ty: i,
                offset: k * 4,
                bitfield: None,
            })
            .collect();
        t.push(Type::Aggregate {
            kind: AggregateKind::Struct,
            name: Some("wide".into()),
            size: n * 4,
            members,
        });
        let work = t.validate_counted().unwrap();
        assert!(work <= 5 * (n + 2), "{work} steps for {n} members");
    }

    #[test]
    fn validation_is_linear_with_many_types_sharing_a_wide_array() {
        // Many typedefs of one array of many dimensions: sizes are computed once per type.
        let mut t = TypeTable::new();
        let i = int(&mut t);
        let arr = t.push(Type::Array {
            element: i,
            dims: vec![ArrayBound::Count(1); limits::TYPE_MAX_DIMS],
        });
        let n = 10_000;
        for k in 0..n {
            t.push(Type::Typedef {
                name: format!("t{k}"),
                target: arr,
            });
        }
        let work = t.validate_counted().unwrap();
        assert!(
            work <= 6 * (n as u64 + 2 + limits::TYPE_MAX_DIMS as u64),
            "{work}"
        );
    }

    #[test]
    fn lists_and_names_over_their_limits_are_rejected() {
        let mut t = TypeTable::new();
        t.push(Type::Enum {
            name: None,
            size: 4,
            signed: false,
            enumerators: vec![
                Enumerator {
                    name: "A".into(),
                    value: 0
                };
                limits::TYPE_MAX_ENUMERATORS + 1
            ],
        });
        assert!(matches!(t.validate(), Err(TypeError::TooMany { .. })));
        let mut t = TypeTable::new();
        t.push(Type::Typedef {
            name: "x".repeat(limits::TYPE_MAX_NAME_LEN + 1),
            target: TypeId(0),
        });
        assert!(matches!(t.validate(), Err(TypeError::NameTooLong { .. })));
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
