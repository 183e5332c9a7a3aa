//! Deserialization under a memory budget: what keeps a small hostile manifest from
//! expanding into a huge in-memory model.
//!
//! A postcard payload announces every list's length and every string's length before its
//! contents, and an element can be as small as one byte while its in-memory form takes 64.
//! The fields of the type model and the manifest therefore deserialize through the
//! functions below, which refuse a list longer than its limit (from [`crate::limits`]) or
//! a name longer than its limit *before* allocating, and charge every allocation (the
//! `size_of` of each element, the bytes of each string) against the budget of the current
//! *scope*. [`crate::codec::decode`] opens a scope sized from the payload (a constant
//! factor of its length, under an absolute cap); deserializing a [`crate::TypeTable`] or a
//! [`crate::Manifest`] any other way opens one with the absolute cap.
//!
//! The budget lives in a thread-local because serde's derived code gives no other way to
//! carry state into nested fields; a scope is only ever open for the duration of one
//! deserialization call on its own thread, and is closed by a drop guard even on unwind.

use crate::limits;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use std::cell::RefCell;
use std::fmt;
use std::marker::PhantomData;

/// What a decoded model was refused for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitHit {
    /// A list longer than its limit.
    Count {
        /// What the list holds.
        what: &'static str,
        /// Its limit.
        limit: usize,
    },
    /// A string longer than its limit.
    Name {
        /// What the string names.
        what: &'static str,
        /// Its limit.
        limit: usize,
    },
    /// The model would take more memory than its budget.
    Memory {
        /// The budget, in bytes.
        limit: u64,
    },
}

impl fmt::Display for LimitHit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LimitHit::Count { what, limit } => write!(f, "more than {limit} {what}"),
            LimitHit::Name { what, limit } => write!(f, "a {what} longer than {limit} bytes"),
            LimitHit::Memory { limit } => {
                write!(f, "its decoded form would take more than {limit} bytes")
            }
        }
    }
}

/// What a closed scope used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The limit that refused the input, if one did.
    pub hit: Option<LimitHit>,
    /// Bytes charged.
    pub used: u64,
}

struct Scope {
    limit: u64,
    used: u64,
    hit: Option<LimitHit>,
}

thread_local! {
    static SCOPE: RefCell<Option<Scope>> = const { RefCell::new(None) };
}

/// Memory an allocation costs besides its bytes (the allocator's header and rounding).
const ALLOC_OVERHEAD: u64 = 16;

/// Runs `f` with a budget of `limit` bytes for the model it deserializes. When a scope is
/// already open on this thread, `f` draws on that one and the outcome is empty (the outer
/// scope reports).
pub(crate) fn scope<R>(limit: u64, f: impl FnOnce() -> R) -> (R, Outcome) {
    let opened = SCOPE.with(|s| {
        let mut s = s.borrow_mut();
        if s.is_some() {
            return false;
        }
        *s = Some(Scope {
            limit,
            used: 0,
            hit: None,
        });
        true
    });
    if !opened {
        return (f(), Outcome::default());
    }
    struct Close;
    impl Drop for Close {
        fn drop(&mut self) {
            SCOPE.with(|s| s.borrow_mut().take());
        }
    }
    let close = Close;
    let r = f();
    let outcome = SCOPE.with(|s| {
        s.borrow()
            .as_ref()
            .map(|s| Outcome {
                hit: s.hit,
                used: s.used,
            })
            .unwrap_or_default()
    });
    drop(close);
    (r, outcome)
}

/// Records why the input is refused and makes the deserializer's error for it.
fn refuse<E: de::Error>(hit: LimitHit) -> E {
    SCOPE.with(|s| {
        if let Some(s) = s.borrow_mut().as_mut() {
            s.hit.get_or_insert(hit);
        }
    });
    E::custom(format_args!("manifest refused: {hit}"))
}

/// Charges `bytes` to the open scope (none open: nothing to charge).
fn charge<E: de::Error>(bytes: u64) -> Result<(), E> {
    let over = SCOPE.with(|s| match s.borrow_mut().as_mut() {
        Some(s) => {
            s.used = s.used.saturating_add(bytes);
            (s.used > s.limit).then_some(s.limit)
        }
        None => None,
    });
    match over {
        Some(limit) => Err(refuse(LimitHit::Memory { limit })),
        None => Ok(()),
    }
}

fn size_of<T>() -> u64 {
    std::mem::size_of::<T>() as u64
}

struct ListVisitor<T> {
    limit: usize,
    what: &'static str,
    element: PhantomData<T>,
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for ListVisitor<T> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a list of at most {} {}", self.limit, self.what)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        let announced = seq.size_hint().unwrap_or(0);
        if announced > self.limit {
            return Err(refuse(LimitHit::Count {
                what: self.what,
                limit: self.limit,
            }));
        }
        // Charged before the allocation: a length the payload cannot back is refused here.
        charge((announced as u64).saturating_mul(size_of::<T>()) + ALLOC_OVERHEAD)?;
        let mut v = Vec::with_capacity(announced);
        while let Some(x) = seq.next_element()? {
            if v.len() >= self.limit {
                return Err(refuse(LimitHit::Count {
                    what: self.what,
                    limit: self.limit,
                }));
            }
            if v.len() >= announced {
                // More than announced (not postcard): growth may double the capacity.
                charge(2 * size_of::<T>())?;
            }
            v.push(x);
        }
        Ok(v)
    }
}

/// A list of at most `limit` elements, charged before it is allocated.
fn list<'de, D, T>(d: D, limit: usize, what: &'static str) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    d.deserialize_seq(ListVisitor {
        limit,
        what,
        element: PhantomData,
    })
}

struct StrVisitor {
    limit: usize,
    what: &'static str,
}

impl<'de> Visitor<'de> for StrVisitor {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a {} of at most {} bytes", self.what, self.limit)
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<String, E> {
        if s.len() > self.limit {
            return Err(refuse(LimitHit::Name {
                what: self.what,
                limit: self.limit,
            }));
        }
        charge(s.len() as u64 + ALLOC_OVERHEAD)?;
        Ok(s.to_owned())
    }
}

/// A string of at most `limit` bytes, charged before it is allocated.
fn string<'de, D: Deserializer<'de>>(
    d: D,
    limit: usize,
    what: &'static str,
) -> Result<String, D::Error> {
    d.deserialize_string(StrVisitor { limit, what })
}

struct OptStrVisitor(StrVisitor);

impl<'de> Visitor<'de> for OptStrVisitor {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.expecting(f)
    }

    fn visit_none<E: de::Error>(self) -> Result<Option<String>, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Option<String>, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Option<String>, D::Error> {
        d.deserialize_string(self.0).map(Some)
    }
}

// The fields of the model, each with its limit (used as `deserialize_with`).

/// A type, member or enumerator name.
pub(crate) fn type_name<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    string(d, limits::TYPE_MAX_NAME_LEN, "type or member name")
}

/// An optional type or member name (anonymous ones are `None`).
pub(crate) fn opt_type_name<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    d.deserialize_option(OptStrVisitor(StrVisitor {
        limit: limits::TYPE_MAX_NAME_LEN,
        what: "type or member name",
    }))
}

/// The types of a table.
pub(crate) fn types<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    list(d, limits::MANIFEST_MAX_TYPES, "types")
}

/// The members of a struct or union.
pub(crate) fn members<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    list(d, limits::TYPE_MAX_MEMBERS, "members in one type")
}

/// The constants of an enum.
pub(crate) fn enumerators<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    list(d, limits::TYPE_MAX_ENUMERATORS, "enumerators in one enum")
}

/// The parameters of a function type.
pub(crate) fn params<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    list(
        d,
        limits::TYPE_MAX_PARAMS,
        "parameters in one function type",
    )
}

/// The dimensions of an array type.
pub(crate) fn dims<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    list(d, limits::TYPE_MAX_DIMS, "dimensions in one array type")
}

/// The marks of a manifest.
pub(crate) fn marks<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    list(d, limits::MANIFEST_MAX_MARKS, "marks")
}

/// A module name, kernel release, mark name or symbol.
pub(crate) fn manifest_name<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    string(
        d,
        limits::MANIFEST_MAX_NAME_LEN,
        "module, mark or symbol name",
    )
}

/// A build id.
pub(crate) fn build_id<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    list(d, limits::MANIFEST_MAX_BUILD_ID_LEN, "bytes of build id")
}
