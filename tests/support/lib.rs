//! Support code for the integration tests.

pub mod guest_lists;
pub mod kbuild;
pub mod kmod;
pub mod nested;
pub mod pahole;
