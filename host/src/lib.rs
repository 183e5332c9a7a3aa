//! vmark's host side: finds a guest's marks, maps their frames read-only and decodes them
//! with the types the module's build exported.
//!
//! - [`decode`]: compiled decoding plans (JSON, pretty tree, single fields);
//! - [`layout`]: struct layouts (pahole-style text, JSON) from a type table;
//! - [`inspect`]: `vmark inspect`, marks and layouts from a built module's own files;
//! - [`introspect`]: offset-free introspection of dumps and live guests (processes,
//!   modules, symbols, memory), and [`cli_introspect`], the commands on top of it;
//! - [`publish`]: the xenstore layout the guest helper publishes, parsed and validated;
//! - [`guest`]: a guest's published marks opened, manifests shared by content;
//! - [`watch`]: what keeps `vmark watch` bounded and safe whatever the guest does;
//! - [`capture`]: several marks read in one pause of the domain (`--pause`);
//! - [`pcapng`]: packet files (`watch --pcap`, `plot --packets`);
//! - `packet_tap` (feature `xen`): packet triggers on a domain's backend interfaces;
//! - `xen` (feature `xen`): live access through Xen's libraries.

#![warn(missing_docs)]

pub mod binrec;
pub mod capture;
pub mod cli_introspect;
pub mod cli_snapshot;
pub mod decode;
pub mod expr;
pub mod follow;
pub mod frames;
pub mod guest;
pub mod inspect;
pub mod introspect;
pub mod layout;
#[cfg(feature = "xen")]
pub mod live;
#[cfg(feature = "xen")]
pub mod packet_tap;
pub mod pcapng;
pub mod plot;
pub mod private_file;
pub mod publish;
pub mod reader;
pub mod sample;
pub mod snapshot;
pub mod watch;
#[cfg(feature = "xen")]
pub mod xen;
