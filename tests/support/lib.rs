//! Support code for the integration tests.

pub mod kbuild;
pub mod kmod;
pub mod pahole;
