//! vmark's shared data model, used by the build tool, the host and (through the C header
//! `include/vmark_abi.h`) the guest:
//!
//! - [`types`]: a C type model complete for kernel C, with ids so recursive types are natural;
//! - [`manifest`]: a marked module's marks and the closure of their types;
//! - [`codec`]: the manifest's versioned, checksummed wire format (serde + postcard);
//! - [`abi`]: the in-memory layouts C and Rust share, generated from the C header;
//! - [`text`]: guest-supplied names escaped for terminals;
//! - [`limits`]: every budget on guest-described work, in one place.

#![warn(missing_docs)]

pub mod abi;
mod bounded;
pub mod codec;
pub mod limits;
pub mod manifest;
pub mod text;
pub mod types;

pub use codec::{decode, encode, ManifestError, FORMAT_VERSION};
pub use manifest::{Manifest, Mark, MarkFlags};
pub use types::{
    AggregateKind, ArrayBound, BaseEncoding, Bitfield, Enumerator, Member, Qualifier, Type,
    TypeError, TypeId, TypeTable,
};
