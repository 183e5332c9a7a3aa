//! One pass over every DIE of every unit, keeping what the type model needs in a compact,
//! owned form. Everything later (closures, lookups) works on this index, so a
//! [`super::DebugInfo`] owns no borrowed DWARF and later queries never re-read sections.

use super::elf::{AddrTarget, Sections};
use super::DwarfError;
use gimli::{constants, AttributeValue, EndianSlice, Reader, RunTimeEndian, Section};
use std::collections::HashMap;
use vmark_proto::{AggregateKind, BaseEncoding, Qualifier};

type R<'a> = EndianSlice<'a, RunTimeEndian>;

/// A reference to a DIE: its `.debug_info` offset, or a type signature (DWARF 5 type units,
/// `DW_FORM_ref_sig8`) resolved through [`Index::signatures`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Ref {
    Off(u64),
    Sig(u64),
}

/// An enumerator's value as encoded: sign is only known once the enum's underlying type is.
#[derive(Debug, Clone, Copy)]
pub(crate) enum RawValue {
    Signed(i64),
    /// A `DW_FORM_dataN` (N bytes) or `udata` value.
    Unsigned(u64, u8),
}

/// A struct or union member as DWARF states it.
#[derive(Debug, Clone, Default)]
pub(crate) struct RawMember {
    pub name: Option<String>,
    pub ty: Option<Ref>,
    pub location: Option<u64>,
    pub data_bit_offset: Option<u64>,
    /// `DW_AT_bit_offset` (DWARF 2/3/4 form): counted from the storage unit's MSB.
    pub bit_offset: Option<u64>,
    pub byte_size: Option<u64>,
    pub bit_size: Option<u64>,
}

#[derive(Debug, Clone)]
pub(crate) enum Kind {
    Base(BaseEncoding),
    Aggregate(AggregateKind, Vec<RawMember>),
    Enum(Vec<(String, RawValue)>, Option<bool>),
    /// Dimensions; `None` = flexible.
    Array(Vec<Option<u64>>),
    Pointer,
    Function(Vec<Option<Ref>>, bool),
    Typedef,
    Qualified(Qualifier),
    Void,
}

/// A type DIE.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub kind: Kind,
    pub name: Option<String>,
    pub size: Option<u64>,
    /// `DW_AT_type`.
    pub ty: Option<Ref>,
    pub declaration: bool,
    /// The unit's address size (for pointers without `DW_AT_byte_size`).
    pub address_size: u8,
}

/// A variable DIE.
#[derive(Debug, Clone)]
pub(crate) struct Var {
    pub name: Option<String>,
    pub ty: Option<Ref>,
    /// `DW_AT_specification` / `DW_AT_abstract_origin`: where name and type may live instead.
    pub origin: Option<Ref>,
    pub addr: Option<AddrTarget>,
}

#[derive(Default)]
pub(crate) struct Index {
    pub nodes: Vec<Node>,
    pub by_offset: HashMap<u64, u32>,
    pub signatures: HashMap<u64, u64>,
    pub vars: Vec<Var>,
    pub var_by_offset: HashMap<u64, u32>,
}

impl Index {
    /// The node a reference names, if it is a type DIE we kept.
    pub fn node(&self, r: Ref) -> Option<u32> {
        let off = match r {
            Ref::Off(o) => o,
            Ref::Sig(s) => *self.signatures.get(&s)?,
        };
        self.by_offset.get(&off).copied()
    }
}

/// What the enclosing DIE is, for attaching children.
#[derive(Clone, Copy)]
enum Parent {
    Node(u32),
    Other,
}

/// Attributes we care about, read generically from any DIE.
#[derive(Default)]
struct Attrs<'a> {
    name: Option<AttributeValue<R<'a>>>,
    ty: Option<Ref>,
    byte_size: Option<u64>,
    bit_size: Option<u64>,
    data_bit_offset: Option<u64>,
    bit_offset: Option<u64>,
    location_member: Option<u64>,
    declaration: bool,
    encoding: Option<constants::DwAte>,
    count: Option<AttributeValue<R<'a>>>,
    upper_bound: Option<AttributeValue<R<'a>>>,
    lower_bound: Option<AttributeValue<R<'a>>>,
    const_value: Option<RawValue>,
    location: Option<AttributeValue<R<'a>>>,
    origin: Option<Ref>,
}

pub(crate) fn build(secs: &Sections) -> Result<Index, DwarfError> {
    let endian = if secs.little_endian {
        RunTimeEndian::Little
    } else {
        RunTimeEndian::Big
    };
    let dwarf = secs
        .sections
        .borrow(|s| EndianSlice::new(s.as_slice(), endian));
    let info_start = *dwarf.debug_info.reader();
    let mut index = Index::default();
    let mut units = dwarf.units();
    while let Some(header) = units.next()? {
        if let gimli::UnitType::Type {
            type_signature,
            type_offset,
        }
        | gimli::UnitType::SplitType {
            type_signature,
            type_offset,
        } = header.type_()
        {
            if let Some(o) = type_offset.to_debug_info_offset(&header) {
                index.signatures.insert(type_signature.0, o.0 as u64);
            }
        }
        let unit = dwarf.unit(header)?;
        read_unit(&dwarf, &unit, &info_start, secs, &mut index)?;
    }
    Ok(index)
}

fn read_unit<'a>(
    dwarf: &gimli::Dwarf<R<'a>>,
    unit: &gimli::Unit<R<'a>>,
    info_start: &R<'a>,
    secs: &Sections,
    index: &mut Index,
) -> Result<(), DwarfError> {
    let address_size = unit.header.address_size();
    let mut entries = unit.entries_raw(None)?;
    let mut stack: Vec<(isize, Parent)> = Vec::new();
    while !entries.is_empty() {
        let depth = entries.next_depth();
        let offset = entries.next_offset();
        let Some(abbrev) = entries.read_abbreviation()? else {
            continue;
        };
        while stack.last().is_some_and(|&(d, _)| d >= depth) {
            stack.pop();
        }
        let parent = match stack.last() {
            Some(&(d, p)) if d == depth - 1 => p,
            _ => Parent::Other,
        };
        let tag = abbrev.tag();
        let wanted = matches!(
            tag,
            constants::DW_TAG_base_type
                | constants::DW_TAG_structure_type
                | constants::DW_TAG_union_type
                | constants::DW_TAG_class_type
                | constants::DW_TAG_enumeration_type
                | constants::DW_TAG_array_type
                | constants::DW_TAG_pointer_type
                | constants::DW_TAG_reference_type
                | constants::DW_TAG_rvalue_reference_type
                | constants::DW_TAG_subroutine_type
                | constants::DW_TAG_typedef
                | constants::DW_TAG_const_type
                | constants::DW_TAG_volatile_type
                | constants::DW_TAG_restrict_type
                | constants::DW_TAG_atomic_type
                | constants::DW_TAG_unspecified_type
                | constants::DW_TAG_member
                | constants::DW_TAG_subrange_type
                | constants::DW_TAG_enumerator
                | constants::DW_TAG_formal_parameter
                | constants::DW_TAG_unspecified_parameters
                | constants::DW_TAG_variable
        );
        if !wanted {
            entries.skip_attributes(abbrev.attributes())?;
            if abbrev.has_children() {
                stack.push((depth, Parent::Other));
            }
            continue;
        }
        let mut a = Attrs::default();
        for spec in abbrev.attributes() {
            let attr = entries.read_attribute(*spec)?;
            read_attr(unit, &attr, &mut a);
        }
        let die = offset
            .to_debug_info_offset(&unit.header)
            .map(|o| o.0 as u64)
            .unwrap_or(u64::MAX);
        let name = match a.name.take() {
            Some(v) => Some(dwarf.attr_string(unit, v)?.to_string_lossy().into_owned()),
            None => None,
        };
        let parent_node = match parent {
            Parent::Node(n) => index.nodes.get_mut(n as usize),
            Parent::Other => None,
        };
        let mut this = Parent::Other;
        let node_kind = match tag {
            constants::DW_TAG_member => {
                if let Some(Node {
                    kind: Kind::Aggregate(_, members),
                    ..
                }) = parent_node
                {
                    members.push(RawMember {
                        name,
                        ty: a.ty,
                        location: a.location_member,
                        data_bit_offset: a.data_bit_offset,
                        bit_offset: a.bit_offset,
                        byte_size: a.byte_size,
                        bit_size: a.bit_size,
                    });
                }
                None
            }
            constants::DW_TAG_subrange_type => {
                if let Some(Node {
                    kind: Kind::Array(dims),
                    ..
                }) = parent_node
                {
                    dims.push(subrange_count(&a));
                }
                None
            }
            constants::DW_TAG_enumerator => {
                if let (
                    Some(Node {
                        kind: Kind::Enum(list, _),
                        ..
                    }),
                    Some(n),
                    Some(v),
                ) = (parent_node, name, a.const_value)
                {
                    list.push((n, v));
                }
                None
            }
            constants::DW_TAG_formal_parameter => {
                if let Some(Node {
                    kind: Kind::Function(params, _),
                    ..
                }) = parent_node
                {
                    params.push(a.ty);
                }
                None
            }
            constants::DW_TAG_unspecified_parameters => {
                if let Some(Node {
                    kind: Kind::Function(_, variadic),
                    ..
                }) = parent_node
                {
                    *variadic = true;
                }
                None
            }
            constants::DW_TAG_variable => {
                let addr = a
                    .location
                    .and_then(|loc| static_address(unit, &loc, info_start, secs));
                // Locals without a static address are of no use; keep the rest (globals,
                // statics, declarations that a definition's DW_AT_specification names).
                if addr.is_some() || a.origin.is_some() || matches!(parent, Parent::Other) {
                    let id = index.vars.len() as u32;
                    index.vars.push(Var {
                        name,
                        ty: a.ty,
                        origin: a.origin,
                        addr,
                    });
                    index.var_by_offset.insert(die, id);
                }
                None
            }
            constants::DW_TAG_base_type => {
                Some((Kind::Base(base_encoding(a.encoding, a.byte_size)), name))
            }
            constants::DW_TAG_structure_type | constants::DW_TAG_class_type => {
                Some((Kind::Aggregate(AggregateKind::Struct, Vec::new()), name))
            }
            constants::DW_TAG_union_type => {
                Some((Kind::Aggregate(AggregateKind::Union, Vec::new()), name))
            }
            constants::DW_TAG_enumeration_type => {
                let signed = a
                    .encoding
                    .map(|e| matches!(e, constants::DW_ATE_signed | constants::DW_ATE_signed_char));
                Some((Kind::Enum(Vec::new(), signed), name))
            }
            constants::DW_TAG_array_type => Some((Kind::Array(Vec::new()), name)),
            constants::DW_TAG_pointer_type
            | constants::DW_TAG_reference_type
            | constants::DW_TAG_rvalue_reference_type => Some((Kind::Pointer, name)),
            constants::DW_TAG_subroutine_type => Some((Kind::Function(Vec::new(), false), name)),
            constants::DW_TAG_typedef => Some((Kind::Typedef, name)),
            constants::DW_TAG_const_type => Some((Kind::Qualified(Qualifier::Const), name)),
            constants::DW_TAG_volatile_type => Some((Kind::Qualified(Qualifier::Volatile), name)),
            constants::DW_TAG_restrict_type => Some((Kind::Qualified(Qualifier::Restrict), name)),
            constants::DW_TAG_atomic_type => Some((Kind::Qualified(Qualifier::Atomic), name)),
            constants::DW_TAG_unspecified_type => Some((Kind::Void, name)),
            _ => None,
        };
        if let Some((kind, name)) = node_kind {
            let id = index.nodes.len() as u32;
            index.nodes.push(Node {
                kind,
                name,
                size: a.byte_size,
                ty: a.ty,
                declaration: a.declaration,
                address_size,
            });
            index.by_offset.insert(die, id);
            this = Parent::Node(id);
        }
        if abbrev.has_children() {
            stack.push((depth, this));
        }
    }
    Ok(())
}

fn read_attr<'a>(unit: &gimli::Unit<R<'a>>, attr: &gimli::Attribute<R<'a>>, a: &mut Attrs<'a>) {
    let value = attr.value();
    match attr.name() {
        constants::DW_AT_name => a.name = Some(value),
        constants::DW_AT_type => a.ty = reference(unit, &value),
        constants::DW_AT_specification | constants::DW_AT_abstract_origin => {
            a.origin = reference(unit, &value)
        }
        constants::DW_AT_byte_size => a.byte_size = value.udata_value(),
        constants::DW_AT_bit_size => a.bit_size = value.udata_value(),
        constants::DW_AT_data_bit_offset => a.data_bit_offset = value.udata_value(),
        constants::DW_AT_bit_offset => a.bit_offset = value.udata_value(),
        constants::DW_AT_data_member_location => {
            a.location_member = match &value {
                AttributeValue::Exprloc(e) => simple_constant_expr(e.0),
                AttributeValue::Block(b) => simple_constant_expr(*b),
                // DWARF 2/3 data4/data8 is read by gimli as a location list pointer; for a
                // member location it is a plain constant.
                AttributeValue::LocationListsRef(o) => Some(o.0 as u64),
                v => v.udata_value(),
            }
        }
        constants::DW_AT_declaration => a.declaration = matches!(value, AttributeValue::Flag(true)),
        constants::DW_AT_encoding => {
            if let AttributeValue::Encoding(e) = value {
                a.encoding = Some(e)
            }
        }
        constants::DW_AT_count => a.count = Some(value),
        constants::DW_AT_upper_bound => a.upper_bound = Some(value),
        constants::DW_AT_lower_bound => a.lower_bound = Some(value),
        constants::DW_AT_const_value => {
            a.const_value = match value {
                AttributeValue::Sdata(v) => Some(RawValue::Signed(v)),
                AttributeValue::Udata(v) => Some(RawValue::Unsigned(v, 8)),
                AttributeValue::Data1(v) => Some(RawValue::Unsigned(v.into(), 1)),
                AttributeValue::Data2(v) => Some(RawValue::Unsigned(v.into(), 2)),
                AttributeValue::Data4(v) => Some(RawValue::Unsigned(v.into(), 4)),
                AttributeValue::Data8(v) => Some(RawValue::Unsigned(v, 8)),
                _ => None,
            }
        }
        constants::DW_AT_location => a.location = Some(value),
        _ => {}
    }
}

fn reference(unit: &gimli::Unit<R<'_>>, value: &AttributeValue<R<'_>>) -> Option<Ref> {
    match value {
        AttributeValue::UnitRef(o) => o
            .to_debug_info_offset(&unit.header)
            .map(|o| Ref::Off(o.0 as u64)),
        AttributeValue::DebugInfoRef(o) => Some(Ref::Off(o.0 as u64)),
        AttributeValue::DebugTypesRef(s) => Some(Ref::Sig(s.0)),
        _ => None,
    }
}

/// Evaluates the constant member locations compilers emit: `DW_OP_plus_uconst N`,
/// `DW_OP_constu N`, `DW_OP_litN`.
fn simple_constant_expr(mut r: R<'_>) -> Option<u64> {
    let op = r.read_u8().ok()?;
    let v = match constants::DwOp(op) {
        constants::DW_OP_plus_uconst | constants::DW_OP_constu => r.read_uleb128().ok()?,
        o if (constants::DW_OP_lit0.0..=constants::DW_OP_lit31.0).contains(&o.0) => {
            u64::from(o.0 - constants::DW_OP_lit0.0)
        }
        _ => return None,
    };
    r.is_empty().then_some(v)
}

/// `DW_AT_count`, else `DW_AT_upper_bound - lower + 1`; `None` when neither is given
/// (a flexible array member).
fn subrange_count(a: &Attrs<'_>) -> Option<u64> {
    if let Some(c) = &a.count {
        return match c {
            AttributeValue::Sdata(v) => Some((*v).max(0) as u64),
            v => v.udata_value(),
        };
    }
    let upper = a.upper_bound.as_ref()?;
    // All-ones in the attribute's width is -1: `[0]` as older compilers encode it.
    let upper: i128 = match *upper {
        AttributeValue::Sdata(v) => v.into(),
        AttributeValue::Data1(v) => (v as i8).into(),
        AttributeValue::Data2(v) => (v as i16).into(),
        AttributeValue::Data4(v) => (v as i32).into(),
        AttributeValue::Data8(v) => (v as i64).into(),
        AttributeValue::Udata(v) => v.into(),
        _ => return None,
    };
    let lower: i128 = match a.lower_bound.as_ref() {
        Some(AttributeValue::Sdata(v)) => (*v).into(),
        Some(v) => v.udata_value().unwrap_or(0).into(),
        None => 0,
    };
    Some(u64::try_from((upper - lower + 1).max(0)).unwrap_or(0))
}

fn base_encoding(e: Option<constants::DwAte>, size: Option<u64>) -> BaseEncoding {
    match e {
        Some(constants::DW_ATE_signed) => BaseEncoding::Signed,
        Some(constants::DW_ATE_signed_char) => BaseEncoding::SignedChar,
        Some(constants::DW_ATE_unsigned_char) => BaseEncoding::UnsignedChar,
        Some(constants::DW_ATE_boolean) => BaseEncoding::Bool,
        Some(
            constants::DW_ATE_float
            | constants::DW_ATE_complex_float
            | constants::DW_ATE_decimal_float,
        ) => BaseEncoding::Float,
        // unsigned, UTF, address, and anything unknown: raw bits.
        _ if size == Some(1) && e.is_none() => BaseEncoding::UnsignedChar,
        _ => BaseEncoding::Unsigned,
    }
}

/// Resolves a location that is exactly one `DW_OP_addr A` (or `DW_OP_addrx i`) to the
/// section and offset its relocation names.
fn static_address(
    unit: &gimli::Unit<R<'_>>,
    loc: &AttributeValue<R<'_>>,
    info_start: &R<'_>,
    secs: &Sections,
) -> Option<AddrTarget> {
    let expr = match loc {
        AttributeValue::Exprloc(e) => e.0,
        AttributeValue::Block(b) => *b,
        _ => return None,
    };
    let mut r = expr;
    let op = constants::DwOp(r.read_u8().ok()?);
    let address_size = unit.header.address_size();
    match op {
        constants::DW_OP_addr => {
            let operand_at = r.offset_from(*info_start) as u64;
            r.skip(usize::from(address_size)).ok()?;
            if !r.is_empty() {
                return None;
            }
            secs.info_addrs.get(&operand_at).copied()
        }
        constants::DW_OP_addrx | constants::DW_OP_GNU_addr_index => {
            let i = r.read_uleb128().ok()?;
            if !r.is_empty() {
                return None;
            }
            let at = unit.addr_base.0.checked_add(
                usize::try_from(i)
                    .ok()?
                    .checked_mul(usize::from(address_size))?,
            )?;
            secs.addr_addrs.get(&(at as u64)).copied()
        }
        _ => None,
    }
}
