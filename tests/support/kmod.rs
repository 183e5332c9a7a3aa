//! Building marked modules the way a module author does: the module's own Makefile with
//! `buildmacros/vmark.mk` (Kbuild, then `vmark-build embed`), in a work directory.

use crate::kbuild::{copy_sources, kernel_build_dir, INSTALL_HINT};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The workspace root (where `buildmacros/`, `examples/` and `target/` are).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// The `vmark-build` binary: `$VMARK_BUILD` if set, else built now with the running
/// Cargo (`cargo build -p vmark-build`), so the test never runs a stale binary.
pub fn vmark_build_binary() -> Result<PathBuf, String> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| cargo_binary("VMARK_BUILD", "vmark-build", "vmark-build", &[]))
        .clone()
}

/// The `vmark` binary: `$VMARK_BIN` if set, else built now with the running Cargo, with
/// the features the workspace tests build `vmark-host` with (`xen`, `test-fixtures`), so
/// the build reuses the test build's artifacts.
pub fn vmark_binary() -> Result<PathBuf, String> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| {
        cargo_binary(
            "VMARK_BIN",
            "vmark-host",
            "vmark",
            &["--features", "xen,test-fixtures"],
        )
    })
    .clone()
}

/// Runs the `vmark` binary ([`vmark_binary`]) with `args`; its whole output.
pub fn run_vmark(args: &[&str]) -> std::process::Output {
    let bin = vmark_binary().unwrap_or_else(|e| panic!("{e}"));
    Command::new(&bin)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", bin.display()))
}

/// `vmark ARGS`, which must succeed: its standard output.
pub fn vmark(args: &[&str]) -> String {
    let out = run_vmark(args);
    assert!(
        out.status.success(),
        "vmark {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// `vmark ARGS`, which must succeed and print JSON: the value.
pub fn vmark_json(args: &[&str]) -> serde_json::Value {
    let text = vmark(args);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("vmark {args:?}: {e}: {text}"))
}

/// `$env` if set, else `cargo build -p PACKAGE --bin BIN EXTRA...` and the path of the
/// executable Cargo reports.
fn cargo_binary(env: &str, package: &str, bin: &str, extra: &[&str]) -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os(env) {
        return Ok(PathBuf::from(p));
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(workspace_root())
        .args(["build", "--quiet", "-p", package, "--bin", bin])
        .args(extra)
        .arg("--message-format=json")
        .output()
        .map_err(|e| format!("running cargo build -p {package}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo build -p {package} failed:\n{}\n{INSTALL_HINT}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    // The last compiler-artifact message with an executable is the binary.
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v.get("executable")?.as_str().map(PathBuf::from))
        .next_back()
        .ok_or_else(|| format!("cargo build reported no {bin} executable"))
}

/// Checks that the tools a Kbuild module build needs are present.
pub fn require_build_tools() -> Result<PathBuf, String> {
    for tool in ["make", "gcc"] {
        let ok = Command::new(tool)
            .arg("--version")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !ok {
            return Err(format!("`{tool}` is missing; {INSTALL_HINT}"));
        }
    }
    kernel_build_dir()
}

/// Copies the module sources in `src` to `work` and runs `make` there with the module's
/// own Makefile (which includes `vmark.mk`), against the discovered kernel headers, with
/// `VMARK` pointing at this workspace (the copy is outside it) and `VMARK_BUILD` at a
/// fresh `vmark-build`. Extra `make` arguments (e.g. `VMARK_FLAGS=--pointer-depth 2`) are
/// passed on. Returns `work/NAME.ko`.
pub fn make_marked_module(
    src: &Path,
    work: &Path,
    name: &str,
    extra: &[&str],
) -> Result<PathBuf, String> {
    let kdir = require_build_tools()?;
    make_marked_module_in(&kdir, src, work, name, extra)
}

/// [`make_marked_module`] against the kernel build tree `kdir` (e.g. the headers of a
/// kernel unpacked by `tests/fetch-kernels.sh`).
pub fn make_marked_module_in(
    kdir: &Path,
    src: &Path,
    work: &Path,
    name: &str,
    extra: &[&str],
) -> Result<PathBuf, String> {
    require_build_tools()?;
    let bin = vmark_build_binary()?;
    copy_sources(src, work)?;
    let out = Command::new("make")
        .current_dir(work)
        .arg(format!("KDIR={}", kdir.display()))
        .arg(format!("VMARK={}", workspace_root().display()))
        .arg(format!("VMARK_BUILD={}", bin.display()))
        .args(extra)
        .output()
        .map_err(|e| format!("running make: {e}; {INSTALL_HINT}"))?;
    let ko = work.join(format!("{name}.ko"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() || !ko.is_file() {
        return Err(format!(
            "make (Kbuild against {} + vmark.mk) failed ({}):\n{stdout}\n{stderr}\n{INSTALL_HINT}",
            kdir.display(),
            out.status
        ));
    }
    // The example must build warning-free with the kernel's own flags.
    let warnings: Vec<&str> = stdout
        .lines()
        .chain(stderr.lines())
        .filter(|l| l.contains("warning:") || l.contains("WARNING:") || l.contains("Warning:"))
        .collect();
    if !warnings.is_empty() {
        return Err(format!(
            "{name} built with warnings:\n{}",
            warnings.join("\n")
        ));
    }
    Ok(ko)
}

/// Runs the `vmark-build` binary with `args`; returns stdout, or an error with stderr.
pub fn run_vmark_build(args: &[&std::ffi::OsStr]) -> Result<String, String> {
    let out = Command::new(vmark_build_binary()?)
        .args(args)
        .output()
        .map_err(|e| format!("running vmark-build: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}
