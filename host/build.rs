//! With the `xen` feature, generates bindings to libxengnttab (Xen's LGPL grant-table
//! library), which no published crate wraps; the other Xen libraries come from their -sys
//! crates.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_XEN").is_none() {
        return;
    }
    println!("cargo:rustc-link-lib=dylib=xengnttab");
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    bindgen::Builder::default()
        .header_contents("gnttab.h", "#include <xengnttab.h>\n")
        .allowlist_function("xengnttab_(open|close|map_grant_ref|unmap)")
        .generate()
        .expect("bindgen could not read xengnttab.h (install libxen-dev and libclang-dev)")
        .write_to_file(out.join("xengnttab.rs"))
        .expect("writing xengnttab bindings");
}
