//! `--follow N`: the values a decoded value's pointers point to, N levels deep.
//!
//! The pointers are found from the manifest's types (members of structs and unions, the
//! elements of arrays, never through a pointer), read through a caller's translating
//! reader and decoded with their target's type. Everything comes from a hostile guest, so
//! the walk is bounded everywhere: pointers per value, values in all, array elements
//! looked at, nesting; a pointer already shown is not read again (cycles), and an
//! unreadable one is reported with its error while the others go on.

use std::collections::{HashMap, VecDeque};

use vmark_proto::{ArrayBound, Type, TypeId, TypeTable};

use crate::introspect::paging::TranslateError;

/// Most pointers taken from one value.
pub const MAX_POINTERS_PER_VALUE: usize = 64;
/// Most values read in one follow.
pub const MAX_POINTEES: usize = 256;
/// Most bytes read in one follow, all values together (a hostile manifest may describe
/// huge types).
pub const MAX_BYTES: u64 = 16 << 20;
/// Most elements of one array looked at for pointers.
const MAX_ARRAY_ELEMENTS: u64 = 64;
/// Deepest nesting of structs and arrays looked into (types are validated acyclic
/// without pointers, this only bounds the work).
const MAX_NESTING: u32 = 32;
/// Most bytes read behind a `char *` (the string stops at its NUL or at the page end).
const MAX_STRING: usize = 256;
const PAGE: u64 = 4096;

/// A pointer inside a value: where it is and what it points to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PointerSlot {
    /// C-like path of the pointer, e.g. `state.sk` or `demo_tp`.
    pub path: String,
    /// Byte offset in the value.
    pub offset: u64,
    /// Its target type (typedefs and qualifiers resolved).
    pub target: TypeId,
}

/// What one followed pointer led to.
#[derive(Debug, Clone, PartialEq)]
pub struct Pointee {
    /// Path of the pointer (`a.b` in the value, `a->c` further down).
    pub path: String,
    /// The pointer's value (a guest virtual address).
    pub addr: u64,
    /// Levels of pointers from the value (1: a pointer in the value itself).
    pub depth: u32,
    /// The target's type.
    pub ty: TypeId,
    /// The target's bytes (a C string's bytes, without the NUL, for `char *`), or why
    /// there are none.
    pub bytes: Result<Vec<u8>, String>,
}

impl Pointee {
    /// Whether the target is a C string (`char *`): `bytes` then hold the text.
    pub fn is_string(&self, types: &TypeTable) -> bool {
        is_char(types, self.ty)
    }
}

/// Reads guest virtual memory, translating: what the pointers are read with.
pub type ReadVirtual<'a> = dyn Fn(u64, &mut [u8]) -> Result<(), TranslateError> + 'a;

/// Pointer members of a value of type `ty` named `name`, at most
/// [`MAX_POINTERS_PER_VALUE`]; pointers to `void`, functions and types the manifest does
/// not describe are left out (there is nothing to decode behind them).
pub fn pointer_slots(types: &TypeTable, ty: TypeId, name: &str) -> Vec<PointerSlot> {
    let mut slots = Vec::new();
    collect(types, ty, name, 0, 0, &mut slots);
    slots
}

fn collect(
    types: &TypeTable,
    ty: TypeId,
    path: &str,
    offset: u64,
    nesting: u32,
    slots: &mut Vec<PointerSlot>,
) {
    if slots.len() >= MAX_POINTERS_PER_VALUE || nesting > MAX_NESTING {
        return;
    }
    match types.get(types.resolve(ty)) {
        Some(Type::Pointer { target, .. }) => {
            let target = types.resolve(*target);
            if describable(types, target) {
                slots.push(PointerSlot {
                    path: path.to_string(),
                    offset,
                    target,
                });
            }
        }
        Some(Type::Aggregate { members, .. }) => {
            for m in members {
                if m.bitfield.is_some() {
                    continue;
                }
                let sub = match &m.name {
                    Some(n) if path.ends_with("->") || path.is_empty() => format!("{path}{n}"),
                    Some(n) => format!("{path}.{n}"),
                    // Anonymous struct or union: its members read as the parent's.
                    None => path.to_string(),
                };
                collect(
                    types,
                    m.ty,
                    &sub,
                    offset.saturating_add(m.offset),
                    nesting + 1,
                    slots,
                );
            }
        }
        Some(Type::Array { element, dims }) => {
            let count = dims.iter().try_fold(1u64, |n, d| match d {
                ArrayBound::Count(c) => n.checked_mul(*c),
                ArrayBound::Flexible => Some(0),
            });
            let Some(size) = types.size_of(*element).filter(|&s| s > 0) else {
                return;
            };
            for i in 0..count.unwrap_or(0).min(MAX_ARRAY_ELEMENTS) {
                collect(
                    types,
                    *element,
                    &format!("{path}[{i}]"),
                    offset.saturating_add(i.saturating_mul(size)),
                    nesting + 1,
                    slots,
                );
            }
        }
        _ => {}
    }
}

/// Whether a pointer's target can be read and decoded: a described type of known size.
fn describable(types: &TypeTable, target: TypeId) -> bool {
    match types.get(target) {
        Some(Type::Void | Type::Opaque { .. } | Type::Function { .. }) | None => false,
        _ => {
            is_char(types, target)
                || types
                    .size_of(target)
                    .is_some_and(|s| s > 0 && s <= crate::publish::MAX_MARK_SIZE)
        }
    }
}

/// `char *` points to text (not `u8 *`, which is bytes).
fn is_char(types: &TypeTable, ty: TypeId) -> bool {
    types.is_text_char(types.resolve(ty))
}

/// Follows the pointers of a value (type `ty`, named `name`, holding `bytes`, read from
/// `addr`) `depth` levels deep, breadth first, reading through `read`. At most
/// [`MAX_POINTEES`] values and [`MAX_BYTES`] bytes are read; a pointer to an address
/// already shown (the value itself included) is not read again. The second result says
/// whether a limit cut the walk short.
pub fn follow(
    types: &TypeTable,
    ty: TypeId,
    name: &str,
    addr: u64,
    bytes: &[u8],
    depth: u32,
    read: &ReadVirtual<'_>,
) -> (Vec<Pointee>, bool) {
    let mut shown: HashMap<u64, String> = HashMap::from([(addr, name.to_string())]);
    let mut out = Vec::new();
    let mut cut = false;
    let mut budget = MAX_BYTES;
    // (pointer path, pointer value, depth, target type)
    let mut queue: VecDeque<(String, u64, u32, TypeId)> = VecDeque::new();
    let push_slots = |queue: &mut VecDeque<_>, ty, name: &str, bytes: &[u8], level: u32| {
        for s in pointer_slots(types, ty, name) {
            let Some(ptr) = pointer_at(bytes, s.offset) else {
                continue;
            };
            if ptr != 0 {
                queue.push_back((s.path, ptr, level, s.target));
            }
        }
    };
    if depth == 0 {
        return (out, false);
    }
    push_slots(&mut queue, ty, name, bytes, 1);
    while let Some((path, ptr, level, target)) = queue.pop_front() {
        if out.len() >= MAX_POINTEES {
            cut = true;
            break;
        }
        if let Some(first) = shown.get(&ptr) {
            out.push(Pointee {
                path,
                addr: ptr,
                depth: level,
                ty: target,
                bytes: Err(format!("already shown as {first}")),
            });
            continue;
        }
        let need = if is_char(types, target) {
            MAX_STRING as u64
        } else {
            types.size_of(target).unwrap_or(0)
        };
        if need > budget {
            cut = true;
            break;
        }
        budget -= need;
        shown.insert(ptr, path.clone());
        let bytes = read_target(types, target, ptr, read);
        if let Ok(b) = &bytes {
            if level < depth && !is_char(types, target) {
                push_slots(&mut queue, target, &format!("{path}->"), b, level + 1);
            }
        }
        out.push(Pointee {
            path,
            addr: ptr,
            depth: level,
            ty: target,
            bytes,
        });
    }
    (out, cut)
}

fn pointer_at(bytes: &[u8], offset: u64) -> Option<u64> {
    let start = usize::try_from(offset).ok()?;
    let b = bytes.get(start..start.checked_add(8)?)?;
    Some(u64::from_le_bytes(b.try_into().ok()?))
}

fn read_target(
    types: &TypeTable,
    target: TypeId,
    ptr: u64,
    read: &ReadVirtual<'_>,
) -> Result<Vec<u8>, String> {
    if is_char(types, target) {
        // A C string: up to its NUL, never past the page (the next may not be mapped).
        let room = (PAGE - ptr % PAGE).min(MAX_STRING as u64) as usize;
        let mut b = vec![0u8; room];
        read(ptr, &mut b).map_err(|e| e.to_string())?;
        let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
        b.truncate(end);
        return Ok(b);
    }
    let size = types
        .size_of(target)
        .filter(|&s| s > 0 && s <= crate::publish::MAX_MARK_SIZE)
        .ok_or_else(|| format!("{} has no readable size", types.type_name(target)))?;
    let mut b = vec![0u8; size as usize];
    read(ptr, &mut b).map_err(|e| e.to_string())?;
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmark_proto::{AggregateKind, BaseEncoding, Member};

    /// struct node { int v; struct node *next; const char *name; void *opaque;
    ///               struct node *kids[2]; }
    fn node_types() -> (TypeTable, TypeId) {
        let mut t = TypeTable::default();
        let int = t.push(Type::Base {
            name: "int".into(),
            size: 4,
            encoding: BaseEncoding::Signed,
        });
        let ch = t.push(Type::Base {
            name: "char".into(),
            size: 1,
            encoding: BaseEncoding::SignedChar,
        });
        let cch = t.push(Type::Qualified {
            qualifier: vmark_proto::Qualifier::Const,
            target: ch,
        });
        let pch = t.push(Type::Pointer {
            target: cch,
            size: 8,
        });
        let void = t.push(Type::Void);
        let pvoid = t.push(Type::Pointer {
            target: void,
            size: 8,
        });
        let node = TypeId(t.len() as u32);
        let pnode = TypeId(t.len() as u32 + 1);
        let kids = TypeId(t.len() as u32 + 2);
        let m = |name: &str, ty, offset| Member {
            name: Some(name.into()),
            ty,
            offset,
            bitfield: None,
        };
        t.push(Type::Aggregate {
            kind: AggregateKind::Struct,
            name: Some("node".into()),
            size: 48,
            members: vec![
                m("v", int, 0),
                m("next", pnode, 8),
                m("name", pch, 16),
                m("opaque", pvoid, 24),
                m("kids", kids, 32),
            ],
        });
        t.push(Type::Pointer {
            target: node,
            size: 8,
        });
        t.push(Type::Array {
            element: pnode,
            dims: vec![ArrayBound::Count(2)],
        });
        (t, node)
    }

    fn node_bytes(v: i32, next: u64, name: u64, kids: [u64; 2]) -> Vec<u8> {
        let mut b = vec![0u8; 48];
        b[..4].copy_from_slice(&v.to_le_bytes());
        b[8..16].copy_from_slice(&next.to_le_bytes());
        b[16..24].copy_from_slice(&name.to_le_bytes());
        b[24..32].copy_from_slice(&0xdead_0000u64.to_le_bytes());
        b[32..40].copy_from_slice(&kids[0].to_le_bytes());
        b[40..48].copy_from_slice(&kids[1].to_le_bytes());
        b
    }

    fn memory() -> HashMap<u64, Vec<u8>> {
        HashMap::from([
            (0x1000, node_bytes(1, 0x2000, 0x5ff8, [0x3000, 0])),
            (0x2000, node_bytes(2, 0x1000, 0, [0, 0x9000])), // next loops back; kid unreadable
            (0x3000, node_bytes(3, 0, 0, [0, 0])),
            (0x5ff8, b"abcdefgh".to_vec()), // a name running to the page end
        ])
    }

    fn reader(
        mem: &HashMap<u64, Vec<u8>>,
    ) -> impl Fn(u64, &mut [u8]) -> Result<(), TranslateError> + '_ {
        move |va, buf| {
            let src = mem.get(&va).ok_or(TranslateError::NotPresent {
                vaddr: va,
                level: 1,
            })?;
            let n = buf.len().min(src.len());
            buf[..n].copy_from_slice(&src[..n]);
            Ok(())
        }
    }

    #[test]
    fn slots_cover_members_and_arrays_but_not_void_or_functions() {
        let (t, node) = node_types();
        let paths: Vec<String> = pointer_slots(&t, node, "n")
            .into_iter()
            .map(|s| format!("{}@{}", s.path, s.offset))
            .collect();
        assert_eq!(
            paths,
            ["n.next@8", "n.name@16", "n.kids[0]@32", "n.kids[1]@40"]
        );
    }

    #[test]
    fn follows_breadth_first_with_cycles_strings_and_errors() {
        let (t, node) = node_types();
        let mem = memory();
        let read = reader(&mem);
        let (got, cut) = follow(&t, node, "n", 0x1000, &mem[&0x1000], 2, &read);
        assert!(!cut);
        let summary: Vec<(String, u32, bool)> = got
            .iter()
            .map(|p| (p.path.clone(), p.depth, p.bytes.is_ok()))
            .collect();
        assert_eq!(
            summary,
            [
                ("n.next".to_string(), 1, true),
                ("n.name".to_string(), 1, true),
                ("n.kids[0]".to_string(), 1, true),
                ("n.next->next".to_string(), 2, false), // the value itself: not read again
                ("n.next->kids[1]".to_string(), 2, false), // unreadable
            ]
        );
        assert!(got[1].is_string(&t));
        assert_eq!(got[1].bytes.as_deref().unwrap(), b"abcdefgh");
        assert_eq!(got[3].bytes.as_ref().unwrap_err(), "already shown as n");
        assert!(
            got[4].bytes.as_ref().unwrap_err().contains("not mapped"),
            "{:?}",
            got[4]
        );
        // Depth 1 stops after the value's own pointers; depth 0 reads nothing.
        assert_eq!(
            follow(&t, node, "n", 0x1000, &mem[&0x1000], 1, &read)
                .0
                .len(),
            3
        );
        assert!(follow(&t, node, "n", 0x1000, &mem[&0x1000], 0, &read)
            .0
            .is_empty());
    }

    #[test]
    fn a_long_chain_is_cut_at_the_limit() {
        let (t, node) = node_types();
        // Every node points to the next one: far more than MAX_POINTEES.
        let read = |va: u64, buf: &mut [u8]| {
            buf.copy_from_slice(&node_bytes(0, va + 0x100, 0, [0, 0])[..buf.len()]);
            Ok(())
        };
        let first = node_bytes(0, 0x100, 0, [0, 0]);
        let (got, cut) = follow(&t, node, "n", 0, &first, u32::MAX, &read);
        assert!(cut);
        assert_eq!(got.len(), MAX_POINTEES);
    }

    #[test]
    fn a_huge_target_type_stops_the_walk_at_the_byte_budget() {
        let mut t = TypeTable::default();
        let int = t.push(Type::Base {
            name: "int".into(),
            size: 4,
            encoding: BaseEncoding::Signed,
        });
        // int big[3M] (12 MiB, under the per-value limit) and a struct of two pointers
        // to it: the second read would pass MAX_BYTES.
        let big = t.push(Type::Array {
            element: int,
            dims: vec![ArrayBound::Count(3 << 20)],
        });
        let pbig = t.push(Type::Pointer {
            target: big,
            size: 8,
        });
        let pair = t.push(Type::Aggregate {
            kind: AggregateKind::Struct,
            name: Some("pair".into()),
            size: 16,
            members: vec![
                Member {
                    name: Some("a".into()),
                    ty: pbig,
                    offset: 0,
                    bitfield: None,
                },
                Member {
                    name: Some("b".into()),
                    ty: pbig,
                    offset: 8,
                    bitfield: None,
                },
            ],
        });
        let mut value = 0x1000u64.to_le_bytes().to_vec();
        value.extend(0x2000u64.to_le_bytes());
        let read = |_: u64, _: &mut [u8]| Ok(());
        let (got, cut) = follow(&t, pair, "p", 0, &value, 1, &read);
        assert!(cut);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].bytes.as_ref().unwrap().len(), 12 << 20);
    }

    #[test]
    fn a_short_value_yields_no_pointer_past_its_end() {
        let (t, node) = node_types();
        let mem = memory();
        let (got, _) = follow(&t, node, "n", 0x1000, &mem[&0x1000][..12], 3, &reader(&mem));
        assert!(got.is_empty());
    }
}
