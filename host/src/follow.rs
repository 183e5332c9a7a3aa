//! `--follow N`: the values a decoded value's pointers point to, N levels deep.
//!
//! The pointers are found from the manifest's types (members of structs and unions, the
//! elements of arrays, never through a pointer), read through a caller's translating
//! reader and decoded with their target's type. Everything comes from a hostile guest, so
//! the walk is bounded everywhere: pointers per value, values in all, array elements
//! looked at, nesting; a pointer already shown is not read again (cycles), and an
//! unreadable one is reported with its error while the others go on.
//!
//! Finding a value's pointers walks its type, which the guest describes: the walk visits at
//! most [`limits::FOLLOW_MAX_SLOT_VISITS`] types, members and elements (a type that nests
//! others by value many times over holds no more work than that), builds a pointer's path
//! only when it finds one, and computes offsets with checked arithmetic. Over budget, the
//! value's pointers are reported as not followed; the other values go on.

use std::collections::{HashMap, VecDeque};

use vmark_proto::limits;
use vmark_proto::text::escape;
use vmark_proto::{ArrayBound, Type, TypeId, TypeTable};

use crate::introspect::paging::TranslateError;

/// Most pointers taken from one value.
pub const MAX_POINTERS_PER_VALUE: usize = limits::FOLLOW_MAX_POINTERS_PER_VALUE;
/// Most values read in one follow.
pub const MAX_POINTEES: usize = limits::FOLLOW_MAX_POINTEES;
/// Most bytes read in one follow, all values together (a hostile manifest may describe
/// huge types).
pub const MAX_BYTES: u64 = limits::FOLLOW_MAX_BYTES;
/// Most elements of one array looked at for pointers.
const MAX_ARRAY_ELEMENTS: u64 = limits::FOLLOW_MAX_ARRAY_ELEMENTS;
/// Deepest nesting of structs and arrays looked into (types are validated acyclic
/// without pointers, this only bounds the work).
const MAX_NESTING: u32 = limits::FOLLOW_MAX_NESTING;
/// Most bytes read behind a `char *` (the string stops at its NUL or at the page end).
const MAX_STRING: usize = limits::FOLLOW_MAX_STRING;
const PAGE: u64 = 4096;

/// Why the pointers of a value were not collected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FollowError {
    /// The walk over the value's type visited more than its budget.
    #[error(
        "finding its pointers visits more than {} members and elements",
        limits::FOLLOW_MAX_SLOT_VISITS
    )]
    TooMuchWork,
    /// A member's or element's offset does not fit in 64 bits.
    #[error("a member's offset overflows")]
    Overflow,
}

/// A pointer inside a value: where it is and what it points to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PointerSlot {
    /// C-like path of the pointer, e.g. `state.sk` or `demo_tp`.
    pub path: String,
    /// Byte offset in the value.
    pub offset: u64,
    /// The pointer's own size: 8, or 4 in a 32-bit guest's types.
    pub size: u8,
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
/// not describe are left out (there is nothing to decode behind them). The walk is bounded
/// by [`limits::FOLLOW_MAX_SLOT_VISITS`].
pub fn pointer_slots(
    types: &TypeTable,
    ty: TypeId,
    name: &str,
) -> Result<Vec<PointerSlot>, FollowError> {
    let mut c = Collector {
        types,
        base: name,
        path: Vec::new(),
        slots: Vec::new(),
        visits: 0,
    };
    c.collect(ty, 0, 0)?;
    Ok(c.slots)
}

/// One step of a pointer's path below the value.
enum Segment<'a> {
    Member(&'a str),
    Index(u64),
}

/// The walk that finds a value's pointers.
struct Collector<'a> {
    types: &'a TypeTable,
    /// The value's own path.
    base: &'a str,
    /// The members and elements from the value to where the walk is.
    path: Vec<Segment<'a>>,
    slots: Vec<PointerSlot>,
    /// Types, members and elements visited.
    visits: usize,
}

impl<'a> Collector<'a> {
    /// The C-like path of where the walk is: `base.a.b[2]`, `base->a` after a `->` base.
    fn path(&self) -> String {
        let mut s = self.base.to_string();
        for seg in &self.path {
            match seg {
                Segment::Member(n) if s.ends_with("->") || s.is_empty() => s.push_str(n),
                Segment::Member(n) => {
                    s.push('.');
                    s.push_str(n);
                }
                Segment::Index(i) => {
                    s.push('[');
                    s.push_str(itoa::Buffer::new().format(*i));
                    s.push(']');
                }
            }
        }
        s
    }

    fn collect(&mut self, ty: TypeId, offset: u64, nesting: u32) -> Result<(), FollowError> {
        if self.slots.len() >= MAX_POINTERS_PER_VALUE || nesting > MAX_NESTING {
            return Ok(());
        }
        self.visits += 1;
        if self.visits > limits::FOLLOW_MAX_SLOT_VISITS {
            return Err(FollowError::TooMuchWork);
        }
        let types = self.types;
        match types.get(types.resolve(ty)) {
            Some(Type::Pointer { target, size }) => {
                let target = types.resolve(*target);
                // A pointer of another size than a guest's word is not followed.
                let size = match size {
                    4 => 4,
                    8 => 8,
                    _ => return Ok(()),
                };
                if describable(types, target) {
                    self.slots.push(PointerSlot {
                        path: self.path(),
                        offset,
                        size,
                        target,
                    });
                }
            }
            Some(Type::Aggregate { members, .. }) => {
                for m in members {
                    if m.bitfield.is_some() {
                        continue;
                    }
                    let at = offset.checked_add(m.offset).ok_or(FollowError::Overflow)?;
                    // Anonymous struct or union: its members read as the parent's.
                    let named = m
                        .name
                        .as_deref()
                        .map(|n| self.path.push(Segment::Member(n)));
                    let r = self.collect(m.ty, at, nesting + 1);
                    if named.is_some() {
                        self.path.pop();
                    }
                    r?;
                }
            }
            Some(Type::Array { element, dims }) => {
                let count = dims.iter().try_fold(1u64, |n, d| match d {
                    ArrayBound::Count(c) => n.checked_mul(*c),
                    ArrayBound::Flexible => Some(0),
                });
                let Some(size) = types.size_of(*element).filter(|&s| s > 0) else {
                    return Ok(());
                };
                for i in 0..count.unwrap_or(0).min(MAX_ARRAY_ELEMENTS) {
                    let at = i
                        .checked_mul(size)
                        .and_then(|d| offset.checked_add(d))
                        .ok_or(FollowError::Overflow)?;
                    self.path.push(Segment::Index(i));
                    let r = self.collect(*element, at, nesting + 1);
                    self.path.pop();
                    r?;
                }
            }
            _ => {}
        }
        Ok(())
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
    // Queues the pointers of a value; when its type is too costly to search, says so in
    // the value's place and the walk goes on with the others.
    let push_slots = |queue: &mut VecDeque<_>,
                      out: &mut Vec<Pointee>,
                      (ty, name, addr): (TypeId, &str, u64),
                      bytes: &[u8],
                      level: u32| {
        match pointer_slots(types, ty, name) {
            Ok(slots) => {
                for s in slots {
                    let Some(ptr) = pointer_at(bytes, s.offset, s.size) else {
                        continue;
                    };
                    if ptr != 0 {
                        queue.push_back((s.path, ptr, level, s.target));
                    }
                }
                true
            }
            Err(e) => {
                out.push(Pointee {
                    path: name.trim_end_matches("->").to_string(),
                    addr,
                    depth: level - 1,
                    ty,
                    bytes: Err(format!("its pointers were not followed: {e}")),
                });
                false
            }
        }
    };
    if depth == 0 {
        return (out, false);
    }
    if !push_slots(&mut queue, &mut out, (ty, name, addr), bytes, 1) {
        cut = true;
    }
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
                // An error message is text: the guest's member names in it are escaped.
                bytes: Err(format!("already shown as {}", escape(first))),
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
        // The value first, then (should its type be too costly to search) why its pointers
        // were not followed.
        let value = Pointee {
            path,
            addr: ptr,
            depth: level,
            ty: target,
            bytes,
        };
        let mut not_followed = Vec::new();
        if let Ok(b) = &value.bytes {
            if level < depth
                && !is_char(types, target)
                && !push_slots(
                    &mut queue,
                    &mut not_followed,
                    (target, &format!("{}->", value.path), ptr),
                    b,
                    level + 1,
                )
            {
                cut = true;
            }
        }
        out.push(value);
        out.append(&mut not_followed);
    }
    (out, cut)
}

/// The little-endian pointer of `size` (4 or 8) bytes at `offset`, zero-extended.
pub(crate) fn pointer_at(bytes: &[u8], offset: u64, size: u8) -> Option<u64> {
    let start = usize::try_from(offset).ok()?;
    let b = bytes.get(start..start.checked_add(usize::from(size))?)?;
    match *b {
        [a, b, c, d] => Some(u32::from_le_bytes([a, b, c, d]).into()),
        [a, b, c, d, e, f, g, h] => Some(u64::from_le_bytes([a, b, c, d, e, f, g, h])),
        _ => None,
    }
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
        .ok_or_else(|| format!("{} has no readable size", escape(&types.type_name(target))))?;
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
            .unwrap()
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
    fn a_32_bit_guests_pointers_are_four_bytes() {
        // struct node32 { struct node32 *next; int v; }: what an i386 module's DWARF says.
        let mut t = TypeTable::default();
        let int = t.push(Type::Base {
            name: "int".into(),
            size: 4,
            encoding: BaseEncoding::Signed,
        });
        let node = TypeId(t.len() as u32);
        let pnode = TypeId(t.len() as u32 + 1);
        t.push(Type::Aggregate {
            kind: AggregateKind::Struct,
            name: Some("node32".into()),
            size: 8,
            members: vec![
                Member {
                    name: Some("next".into()),
                    ty: pnode,
                    offset: 0,
                    bitfield: None,
                },
                Member {
                    name: Some("v".into()),
                    ty: int,
                    offset: 4,
                    bitfield: None,
                },
            ],
        });
        t.push(Type::Pointer {
            target: node,
            size: 4,
        });
        let slots = pointer_slots(&t, node, "n").unwrap();
        assert_eq!((slots[0].offset, slots[0].size), (0, 4));
        // next = 0xc8000010; v = -1 right after it must not leak into the address.
        let node32 = |next: u32, v: i32| [next.to_le_bytes(), v.to_le_bytes()].concat();
        let mem = HashMap::from([(0xc800_0010u64, node32(0, 7))]);
        let read = reader(&mem);
        let (got, cut) = follow(&t, node, "n", 0x1000, &node32(0xc800_0010, -1), 3, &read);
        assert!(!cut);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].addr, 0xc800_0010);
        assert_eq!(got[0].bytes.as_deref().unwrap(), &node32(0, 7)[..]);
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

    /// `struct s0 { struct s1 a; struct s1 b; }` ... 30 levels, `s30` a pointer-free leaf:
    /// 2^30 members to look at for no pointer.
    fn doubled_chain(n: usize) -> (TypeTable, TypeId) {
        let mut t = TypeTable::default();
        let int = t.push(Type::Base {
            name: "int".into(),
            size: 4,
            encoding: BaseEncoding::Signed,
        });
        let mut cur = int;
        for _ in 0..n {
            let m = |name: &str| Member {
                name: Some(name.into()),
                ty: cur,
                offset: 0,
                bitfield: None,
            };
            cur = t.push(Type::Aggregate {
                kind: AggregateKind::Union,
                name: None,
                size: 4,
                members: vec![m("a"), m("b")],
            });
        }
        t.validate().unwrap();
        (t, cur)
    }

    #[test]
    fn finding_pointers_in_types_nested_twice_by_value_is_bounded() {
        let (t, root) = doubled_chain(30);
        assert_eq!(pointer_slots(&t, root, "v"), Err(FollowError::TooMuchWork));
        let mut c = Collector {
            types: &t,
            base: "v",
            path: Vec::new(),
            slots: Vec::new(),
            visits: 0,
        };
        assert!(c.collect(root, 0, 0).is_err());
        assert!(c.visits <= limits::FOLLOW_MAX_SLOT_VISITS + 1);
        // follow() reports it in the value's place and says the walk was cut.
        let read = |_: u64, _: &mut [u8]| Ok(());
        let (got, cut) = follow(&t, root, "v", 0x1000, &[0; 4], 3, &read);
        assert!(cut);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].path, "v");
        assert!(got[0].bytes.as_ref().unwrap_err().contains("not followed"));
        // A small one has no pointer and no error.
        let (t, root) = doubled_chain(5);
        assert_eq!(pointer_slots(&t, root, "v"), Ok(vec![]));
    }

    #[test]
    fn offsets_that_would_wrap_are_errors() {
        // Not a validated table: a member near 2^64 holding a pointer further on.
        let (mut t, node) = node_types();
        let outer = t.push(Type::Aggregate {
            kind: AggregateKind::Struct,
            name: Some("outer".into()),
            size: u64::MAX,
            members: vec![Member {
                name: Some("inner".into()),
                ty: node,
                offset: u64::MAX - 4,
                bitfield: None,
            }],
        });
        assert_eq!(pointer_slots(&t, outer, "o"), Err(FollowError::Overflow));
    }
}
