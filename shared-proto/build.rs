//! Generates the Rust view of `include/vmark_abi.h` with bindgen, so the layouts that C and
//! Rust share have exactly one definition.

use std::{env, path::PathBuf};

fn main() {
    let header = "include/vmark_abi.h";
    println!("cargo:rerun-if-changed={header}");
    let bindings = bindgen::Builder::default()
        .header(header)
        .use_core()
        .allowlist_type("vmark_.*")
        .allowlist_var("VMARK_.*")
        .derive_default(true)
        .derive_eq(true)
        .layout_tests(true)
        .generate()
        .expect("bindgen could not read include/vmark_abi.h (is libclang-dev installed?)");
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    bindings
        .write_to_file(out.join("vmark_abi.rs"))
        .expect("writing the generated ABI bindings");
}
