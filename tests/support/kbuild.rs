//! Building real kernel modules with Kbuild against the installed kernel headers.
//!
//! Sources are copied into a work directory first, so no build product ever lands in the
//! source tree. Failures are errors naming `tests/install-deps.sh`: the integration tests
//! that need a kernel build must fail, not skip, on a machine that lacks the packages.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The hint every "missing prerequisite" error carries.
pub const INSTALL_HINT: &str =
    "run `sudo tests/install-deps.sh` (installs linux-headers-amd64, build-essential, dwarves)";

/// The kernel build directory of the installed headers: `/lib/modules/REL/build` for any
/// installed release, else `/usr/src/linux-headers-*-amd64`. Never a hard-coded release.
pub fn kernel_build_dir() -> Result<PathBuf, String> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/lib/modules") {
        for e in rd.flatten() {
            candidates.push(e.path().join("build"));
        }
    }
    if let Ok(rd) = std::fs::read_dir("/usr/src") {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("linux-headers-") && name.ends_with("-amd64") {
                candidates.push(e.path());
            }
        }
    }
    // Newest release first (lexical order is good enough within one Debian series).
    candidates.sort();
    candidates.reverse();
    candidates
        .into_iter()
        .find(|p| p.join("Makefile").is_file())
        .ok_or_else(|| {
            format!("no kernel headers found (/lib/modules/*/build or /usr/src/linux-headers-*-amd64); {INSTALL_HINT}")
        })
}

/// Copies the regular files of `src` (sources, Kbuild) into `work`, replacing its contents.
pub fn copy_sources(src: &Path, work: &Path) -> Result<(), String> {
    if work.exists() {
        std::fs::remove_dir_all(work).map_err(|e| format!("clearing {}: {e}", work.display()))?;
    }
    std::fs::create_dir_all(work).map_err(|e| format!("creating {}: {e}", work.display()))?;
    let rd = std::fs::read_dir(src).map_err(|e| format!("reading {}: {e}", src.display()))?;
    for e in rd.flatten() {
        let p = e.path();
        // Sources only: a build in the source tree (the showcase builds there) leaves
        // objects and Kbuild's hidden .cmd files, which are not this build's.
        let name = e.file_name().to_string_lossy().into_owned();
        let product = name.starts_with('.')
            || [".o", ".ko", ".mod", ".mod.c", ".symvers", ".order", ".o.d"]
                .iter()
                .any(|x| name.ends_with(x));
        if p.is_file() && !product {
            let dest = work.join(e.file_name());
            std::fs::copy(&p, &dest).map_err(|e| format!("copying {}: {e}", p.display()))?;
        }
    }
    Ok(())
}

/// Builds the module whose sources are in `src` in the work directory `work` and returns
/// the path of `work/NAME.ko`.
pub fn build_module(src: &Path, work: &Path, name: &str) -> Result<PathBuf, String> {
    let kdir = kernel_build_dir()?;
    copy_sources(src, work)?;
    let out = Command::new("make")
        .arg("-C")
        .arg(&kdir)
        .arg(format!("M={}", work.display()))
        .arg("modules")
        .output()
        .map_err(|e| format!("running make: {e}; {INSTALL_HINT}"))?;
    let ko = work.join(format!("{name}.ko"));
    if !out.status.success() || !ko.is_file() {
        return Err(format!(
            "building {name}.ko with Kbuild ({}) failed ({}):\n{}\n{}\n{INSTALL_HINT}",
            kdir.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(ko)
}
