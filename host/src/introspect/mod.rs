//! Virtual machine introspection without offsets: what XenAccess, LibVMI and Rekall do,
//! over vmark's memory sources.
//!
//! Layers, bottom up:
//! - [`phys`]: guest-physical memory sources (raw images, QEMU ELF dumps, `xl dump-core`,
//!   QEMU shared-RAM files, live Xen frames) behind one trait, [`phys::PhysicalMemory`];
//! - [`paging`] and [`vmem`]: x86 page-table walks (32-bit, PAE, 4- and 5-level, Xen PV
//!   machine frames via [`m2p`]) with a bounded translation cache;
//! - [`kallsyms`] and [`symbols`]: kernel symbols from the guest's own compressed kallsyms
//!   (or a System.map) and the KASLR offset;
//! - [`btf`]: kernel types from BTF (in guest memory or a file) into a
//!   [`vmark_proto::TypeTable`];
//! - [`files`]: a System.map, vmlinux or BTF file given by the user, checked against
//!   the kernel in memory;
//! - [`kernel`]: a guest kernel located in memory, with process and module lists walked
//!   through BTF offsets; `anchors` finds what a kernel without data symbols does not name
//!   (`init_task`, the module list, vmark's records) by structure.

mod anchors;
pub mod btf;
pub mod cache;
pub mod files;
pub mod kallsyms;
pub mod kernel;
pub mod m2p;
pub mod paging;
pub mod phys;
pub mod symbols;
pub mod vmem;

#[cfg(test)]
mod dump_tests;
#[cfg(any(test, feature = "test-fixtures"))]
pub mod fixture;
#[cfg(test)]
mod paging_tests;
#[cfg(test)]
mod walk_tests;
