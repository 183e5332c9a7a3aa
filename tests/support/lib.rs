//! Support code for the integration tests.

pub mod fuzz_entry;
pub mod guest_lists;
pub mod kbuild;
pub mod kmod;
pub mod matrix;
pub mod nested;
pub mod pahole;
pub mod peers;
