//! The closure of types reachable from some roots, as a [`TypeTable`].
//!
//! Two phases, both iterative. Phase 1 finds every reachable type DIE with the fewest
//! pointer hops it takes to reach it (a 0-1 breadth-first search: by-value edges cost 0,
//! pointer and function-signature edges cost 1); a struct or union first reached beyond
//! `pointer_depth` hops is not expanded and becomes opaque. Because each node is expanded
//! once, at its smallest depth, a struct reached both by value and through a pointer is
//! emitted once, complete. Phase 2 numbers the nodes in discovery order and converts them.

use super::index::{Kind, Node, RawValue, Ref};
use super::{DebugInfo, DwarfError};
use std::collections::{HashMap, VecDeque};
use vmark_proto::types::MAX_TYPE_DEPTH;
use vmark_proto::{
    ArrayBound, BaseEncoding, Bitfield, Enumerator, Member, Type, TypeId, TypeTable,
};

pub(super) fn build(
    di: &DebugInfo,
    roots: &[Ref],
    depth: u32,
) -> Result<(TypeTable, Vec<TypeId>), DwarfError> {
    let nodes: Vec<Option<u32>> = roots.iter().map(|r| di.canon_of(*r)).collect();
    build_opt(di, &nodes, depth)
}

pub(super) fn build_nodes(
    di: &DebugInfo,
    roots: &[u32],
    depth: u32,
) -> Result<(TypeTable, Vec<TypeId>), DwarfError> {
    let nodes: Vec<Option<u32>> = roots.iter().map(|&n| Some(n)).collect();
    build_opt(di, &nodes, depth)
}

struct Walk<'a> {
    di: &'a DebugInfo,
    depth: u32,
    /// Node → pointer hops at which it was first reached (final once popped).
    level: HashMap<u32, u32>,
    order: Vec<u32>,
}

impl Walk<'_> {
    fn node(&self, n: u32) -> &Node {
        &self.di.index.nodes[n as usize]
    }

    fn resolve(&self, r: Option<Ref>) -> Option<u32> {
        self.di.canon_of(r?)
    }

    /// The innermost element of an array, skipping directly nested arrays (folded into
    /// the outer array's dimensions).
    fn array_element(&self, n: u32) -> (Option<u32>, Vec<ArrayBound>) {
        let mut dims = Vec::new();
        let mut cur = n;
        for _ in 0..MAX_TYPE_DEPTH {
            let node = self.node(cur);
            match &node.kind {
                Kind::Array(d) => {
                    dims.extend(d.iter().map(|c| match c {
                        Some(c) => ArrayBound::Count(*c),
                        None => ArrayBound::Flexible,
                    }));
                    match self.resolve(node.ty) {
                        Some(next) => cur = next,
                        None => return (None, dims),
                    }
                }
                _ => break,
            }
        }
        if dims.is_empty() {
            // `DW_TAG_array_type` without subranges: an array of unknown length.
            dims.push(ArrayBound::Flexible);
        }
        (Some(cur), dims)
    }

    /// Edges out of node `n` reached at `level`: (target, extra pointer hops).
    fn edges(&self, n: u32, level: u32) -> Vec<(Option<u32>, u32)> {
        let node = self.node(n);
        match &node.kind {
            Kind::Aggregate(_, members) => {
                if level > self.depth || node.declaration {
                    return Vec::new();
                }
                members.iter().map(|m| (self.resolve(m.ty), 0)).collect()
            }
            Kind::Array(_) => vec![(self.array_element(n).0, 0)],
            Kind::Typedef | Kind::Qualified(_) => vec![(self.resolve(node.ty), 0)],
            Kind::Pointer => vec![(self.resolve(node.ty), 1)],
            Kind::Function(params, _) => std::iter::once(node.ty)
                .chain(params.iter().copied())
                .map(|r| (self.resolve(r), 1))
                .collect(),
            Kind::Base(_) | Kind::Enum(..) | Kind::Void => Vec::new(),
        }
    }
}

fn build_opt(
    di: &DebugInfo,
    roots: &[Option<u32>],
    depth: u32,
) -> Result<(TypeTable, Vec<TypeId>), DwarfError> {
    let mut w = Walk {
        di,
        depth,
        level: HashMap::new(),
        order: Vec::new(),
    };
    // Phase 1: 0-1 BFS.
    let mut queue: VecDeque<(u32, u32)> = roots.iter().flatten().map(|&n| (n, 0)).collect();
    let mut done: HashMap<u32, ()> = HashMap::new();
    while let Some((n, level)) = queue.pop_front() {
        if done.insert(n, ()).is_some() {
            continue;
        }
        w.level.insert(n, level);
        w.order.push(n);
        for (target, cost) in w.edges(n, level) {
            let Some(t) = target else { continue };
            if done.contains_key(&t) {
                continue;
            }
            if cost == 0 {
                queue.push_front((t, level));
            } else {
                queue.push_back((t, level.saturating_add(cost)));
            }
        }
    }

    // Phase 2: number and convert.
    let ids: HashMap<u32, TypeId> = w
        .order
        .iter()
        .enumerate()
        .map(|(i, &n)| (n, TypeId(i as u32)))
        .collect();
    let void_id = TypeId(w.order.len() as u32);
    let used_void = std::cell::Cell::new(false);
    let id_of = |n: Option<u32>| -> TypeId {
        match n.and_then(|n| ids.get(&n)) {
            Some(id) => *id,
            None => {
                used_void.set(true);
                void_id
            }
        }
    };
    let mut table = TypeTable::new();
    for &n in &w.order {
        let node = w.node(n);
        let level = w.level.get(&n).copied().unwrap_or(0);
        let ty = match &node.kind {
            Kind::Void => Type::Void,
            Kind::Base(enc) => Type::Base {
                name: node.name.clone().unwrap_or_else(|| "?".into()),
                size: node.size.unwrap_or(0),
                encoding: *enc,
            },
            Kind::Aggregate(kind, members) => {
                if node.declaration || node.size.is_none() {
                    Type::Opaque {
                        kind: *kind,
                        name: node.name.clone(),
                        size: None,
                    }
                } else if level > depth {
                    Type::Opaque {
                        kind: *kind,
                        name: node.name.clone(),
                        size: node.size,
                    }
                } else {
                    let members = members
                        .iter()
                        .map(|m| {
                            let target = w.resolve(m.ty);
                            let bitfield = m.bit_size.map(|bits| {
                                let storage = m
                                    .byte_size
                                    .or_else(|| m.ty.and_then(|t| di.size_of_ref(t)))
                                    .unwrap_or(0);
                                Bitfield {
                                    bit_offset: bit_position(m, storage, bits),
                                    bit_size: u8::try_from(bits).unwrap_or(0),
                                }
                            });
                            let offset = match (&bitfield, m.location, m.data_bit_offset) {
                                (Some(bf), _, _) => bf.bit_offset / 8,
                                (None, Some(loc), _) => loc,
                                (None, None, Some(bits)) => bits / 8,
                                (None, None, None) => 0,
                            };
                            Member {
                                name: m.name.clone(),
                                ty: id_of(target),
                                offset,
                                bitfield,
                            }
                        })
                        .collect();
                    Type::Aggregate {
                        kind: *kind,
                        name: node.name.clone(),
                        size: node.size.unwrap_or(0),
                        members,
                    }
                }
            }
            Kind::Enum(values, attr_signed) => {
                let signed = enum_signed(&w, node, *attr_signed, values);
                let size = node.size.unwrap_or(4);
                Type::Enum {
                    name: node.name.clone(),
                    size,
                    signed,
                    enumerators: values
                        .iter()
                        .map(|(name, v)| Enumerator {
                            name: name.clone(),
                            value: enum_value(*v, signed, size),
                        })
                        .collect(),
                }
            }
            Kind::Array(_) => {
                let (element, dims) = w.array_element(n);
                Type::Array {
                    element: id_of(element),
                    dims,
                }
            }
            Kind::Pointer => Type::Pointer {
                target: id_of(w.resolve(node.ty)),
                size: node.size.unwrap_or(u64::from(node.address_size)),
            },
            Kind::Function(params, variadic) => Type::Function {
                ret: id_of(w.resolve(node.ty)),
                params: params.iter().map(|p| id_of(w.resolve(*p))).collect(),
                variadic: *variadic,
            },
            Kind::Typedef => Type::Typedef {
                name: node.name.clone().unwrap_or_else(|| "?".into()),
                target: id_of(w.resolve(node.ty)),
            },
            Kind::Qualified(q) => Type::Qualified {
                qualifier: *q,
                target: id_of(w.resolve(node.ty)),
            },
        };
        table.push(ty);
    }
    let root_ids = roots.iter().map(|r| id_of(*r)).collect();
    if used_void.get() {
        table.push(Type::Void);
    }
    Ok((table, root_ids))
}

/// A bitfield's first bit, little-endian numbering, from the start of the enclosing type.
fn bit_position(m: &super::index::RawMember, storage_bytes: u64, bits: u64) -> u64 {
    if let Some(d) = m.data_bit_offset {
        return d;
    }
    let loc_bits = m.location.unwrap_or(0).saturating_mul(8);
    match m.bit_offset {
        // DW_AT_bit_offset counts from the most significant bit of the storage unit at
        // DW_AT_data_member_location (of DW_AT_byte_size bytes). On little-endian targets
        // (all vmark supports) the MSB is the unit's last bit.
        Some(bo) => {
            (loc_bits + storage_bytes.saturating_mul(8)).saturating_sub(bo.saturating_add(bits))
        }
        None => loc_bits,
    }
}

fn enum_signed(
    w: &Walk<'_>,
    node: &Node,
    attr_signed: Option<bool>,
    values: &[(String, RawValue)],
) -> bool {
    // The underlying type (DW_AT_type, DWARF 3+ in gcc) is authoritative.
    let mut cur = w.resolve(node.ty);
    for _ in 0..MAX_TYPE_DEPTH {
        let Some(c) = cur else { break };
        let n = w.node(c);
        match &n.kind {
            Kind::Typedef | Kind::Qualified(_) => cur = w.resolve(n.ty),
            Kind::Base(enc) => {
                return matches!(enc, BaseEncoding::Signed | BaseEncoding::SignedChar)
            }
            _ => break,
        }
    }
    if let Some(s) = attr_signed {
        return s;
    }
    values
        .iter()
        .any(|(_, v)| matches!(v, RawValue::Signed(x) if *x < 0))
}

fn enum_value(v: RawValue, signed: bool, size: u64) -> i128 {
    match v {
        RawValue::Signed(x) => i128::from(x),
        RawValue::Unsigned(x, width) => {
            // gcc writes negative constants as sdata, but other producers use dataN for
            // a signed enum's values: sign-extend from the narrower of the form and the enum.
            let width = u64::from(width).min(size.max(1)).min(8);
            if signed {
                let shift = 64 - 8 * width as u32;
                i128::from(((x << shift) as i64) >> shift)
            } else {
                i128::from(x)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_values_sign_extend_only_when_signed() {
        assert_eq!(enum_value(RawValue::Unsigned(0xff, 1), true, 4), -1);
        assert_eq!(enum_value(RawValue::Unsigned(0xff, 1), false, 4), 255);
        assert_eq!(enum_value(RawValue::Unsigned(0xffff_ffff, 4), true, 4), -1);
        assert_eq!(
            enum_value(RawValue::Unsigned(0xfedc_ba98_7654_3210, 8), false, 8),
            0xfedc_ba98_7654_3210
        );
        assert_eq!(enum_value(RawValue::Signed(-5), true, 4), -5);
    }
}
