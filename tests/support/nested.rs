//! The nested-Xen harness shared by the end-to-end tests: prerequisites, the `vmark`
//! binary with Xen support, the helper module, and `tests/e2e/boot.sh` under a time limit.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use crate::kbuild::{copy_sources, kernel_build_dir};
use crate::kmod::workspace_root;

/// What to run when a prerequisite is missing.
pub const INSTALL: &str = "run `sudo tests/install-deps.sh` (QEMU, Xen 4.17, the Debian kernel and headers, busybox-static, cpio)";

/// A progress line of the nested runs on stderr.
pub fn progress(msg: &str) {
    eprintln!("e2e: {msg}");
}

/// The Debian kernel release the guests and dom0 run: the one whose headers the modules
/// are built against, with its vmlinuz in /boot.
pub fn kernel_release() -> Result<String, String> {
    let build = kernel_build_dir()?;
    let canon = std::fs::canonicalize(&build).unwrap_or(build.clone());
    let rel = build
        .strip_prefix("/lib/modules")
        .ok()
        .and_then(|p| p.components().next())
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .or_else(|| {
            canon.file_name().map(|n| {
                n.to_string_lossy()
                    .trim_start_matches("linux-headers-")
                    .to_string()
            })
        })
        .ok_or_else(|| format!("cannot tell the kernel release of {}", build.display()))?;
    for f in [
        format!("/boot/vmlinuz-{rel}"),
        format!("/lib/modules/{rel}/kernel/fs/9p/9p.ko"),
    ] {
        if !Path::new(&f).exists() {
            return Err(format!("{f} is missing (kernel {rel}); {INSTALL}"));
        }
    }
    Ok(rel)
}

/// The tools and files the nested-Xen runs need; an error naming what is missing.
pub fn require_tools() -> Result<(), String> {
    let mut missing = Vec::new();
    for tool in [
        "qemu-system-x86_64",
        "cpio",
        "gzip",
        "make",
        "gcc",
        "python3",
        // the tcp-monitor check: dom0 (the host's root) turns offloads off; the pcapng's judge
        "ethtool",
        "tshark",
    ] {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
            .unwrap_or(false);
        if !found {
            missing.push(tool.to_string());
        }
    }
    for f in [
        "/usr/lib/xen-4.17/bin/xl",
        "/bin/busybox",
        "/usr/sbin/xentrace",
    ] {
        if !Path::new(f).exists() {
            missing.push(f.to_string());
        }
    }
    let xen = std::fs::read_dir("/boot")
        .map(|rd| {
            rd.flatten().any(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                n.starts_with("xen-4.17") && n.ends_with("-amd64.gz")
            })
        })
        .unwrap_or(false);
    if !xen {
        missing.push("/boot/xen-4.17-amd64.gz".into());
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("missing: {}; {INSTALL}", missing.join(", ")))
    }
}

/// Newest modification time of the files under `dir` (recursively).
fn newest(dir: &Path) -> SystemTime {
    let mut t = SystemTime::UNIX_EPOCH;
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            let m = if p.is_dir() {
                newest(&p)
            } else {
                e.metadata()
                    .and_then(|m| m.modified())
                    .unwrap_or(SystemTime::UNIX_EPOCH)
            };
            t = t.max(m);
        }
    }
    t
}

/// The release `vmark` with Xen support: `target/release/vmark` when `tests/run` (or a
/// developer) built it after the last change of its sources and it has Xen support; else
/// built now in a target directory of its own, so this never waits on the build lock of
/// the `cargo test` that runs it.
pub fn xen_vmark_binary() -> Result<PathBuf, String> {
    let root = workspace_root();
    let sources = ["host", "shared-proto", "Cargo.lock", "Cargo.toml"]
        .iter()
        .map(|p| {
            let p = root.join(p);
            if p.is_dir() {
                newest(&p)
            } else {
                p.metadata()
                    .and_then(|m| m.modified())
                    .unwrap_or(SystemTime::UNIX_EPOCH)
            }
        })
        .max()
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let has_xen = |bin: &Path| {
        // Without the feature every live command says so; with it, it tries Xen.
        Command::new(bin)
            .args(["list", "--json"])
            .output()
            .map(|o| !String::from_utf8_lossy(&o.stderr).contains("without Xen support"))
            .unwrap_or(false)
    };
    for cand in [
        root.join("target/release/vmark"),
        root.join("target/e2e/release/vmark"),
    ] {
        let fresh = cand
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| t >= sources);
        if fresh && has_xen(&cand) {
            return Ok(cand);
        }
    }
    progress("building vmark (release, Xen support) in target/e2e");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let st = Command::new(cargo)
        .current_dir(&root)
        .args([
            "build",
            "--release",
            "--target-dir",
            "target/e2e",
            "-p",
            "vmark-host",
            "--features",
            "xen",
        ])
        .status()
        .map_err(|e| format!("running cargo build: {e}"))?;
    let bin = root.join("target/e2e/release/vmark");
    if !st.success() || !bin.is_file() {
        return Err(format!(
            "cargo build --release -p vmark-host --features xen failed ({st}); libxen-dev and libclang-dev come from {INSTALL}"
        ));
    }
    Ok(bin)
}

/// vmark_helper.ko, built with Kbuild in a copy of guest-kmod/ (its includes are relative:
/// the copy sits beside links to shared-proto/ and buildmacros/).
pub fn build_helper(build: &Path, kdir: &Path) -> Result<PathBuf, String> {
    let root = workspace_root();
    let _ = std::fs::create_dir_all(build);
    for d in ["shared-proto", "buildmacros"] {
        let link = build.join(d);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(root.join(d), &link)
                .map_err(|e| format!("linking {}: {e}", link.display()))?;
        }
    }
    let work = build.join("guest-kmod");
    copy_sources(&root.join("guest-kmod"), &work)?;
    let out = Command::new("make")
        .current_dir(&work)
        .arg(format!("KDIR={}", kdir.display()))
        .output()
        .map_err(|e| format!("running make: {e}; {INSTALL}"))?;
    let ko = work.join("vmark_helper.ko");
    if !out.status.success() || !ko.is_file() {
        return Err(format!(
            "building vmark_helper.ko failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(ko)
}

/// Runs `tests/e2e/boot.sh ARGS` (see there) with `env`, its progress lines on our
/// stderr, under [`run_bounded`].
pub fn boot(
    args: &[&std::ffi::OsStr],
    env: &[(&str, &std::ffi::OsStr)],
    hard_timeout: Duration,
) -> Result<i32, String> {
    let mut cmd = Command::new(workspace_root().join("tests/e2e/boot.sh"));
    cmd.args(args).stdout(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    run_bounded(cmd, hard_timeout)
}

/// Runs `cmd` (stdin closed, stderr inherited unless set) in a process group of its
/// own and returns its exit code; kills the whole group (QEMU included) if it outlives
/// `hard_timeout`.
pub fn run_bounded(mut cmd: Command, hard_timeout: Duration) -> Result<i32, String> {
    cmd.stdin(Stdio::null()).process_group(0);
    let what = format!("{:?}", cmd.get_program());
    let mut child = cmd.spawn().map_err(|e| format!("running {what}: {e}"))?;
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait().map_err(|e| e.to_string())? {
            return Ok(st.code().unwrap_or(-1));
        }
        if start.elapsed() > hard_timeout {
            // SAFETY: plain kill(2) of the process group we created for the child.
            unsafe { kill(-(child.id() as i32), 9) };
            let _ = child.wait();
            return Err(format!(
                "{what} did not end within {} s: killed with its process group (QEMU included)",
                hard_timeout.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}
