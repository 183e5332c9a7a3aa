//! Every C file of the project (the helper module, the header module authors include, the
//! shared ABI header, the examples) passes the kernel's `checkpatch.pl --no-tree` with no
//! error and no warning.
//!
//! Debian ships checkpatch.pl only inside the kernel source package, so the test takes it
//! from `linux-source-6.1` (downloaded with `apt-get download`, extracted once into
//! `target/checkpatch/`). A machine that cannot get it fails the test, naming the fix.

use std::path::{Path, PathBuf};
use std::process::Command;
use vmark_tests::kmod::workspace_root;

/// The checkpatch files a `--no-tree` run reads.
const FILES: &[&str] = &[
    "scripts/checkpatch.pl",
    "scripts/spelling.txt",
    "scripts/const_structs.checkpatch",
];

fn run(cmd: &mut Command, what: &str) -> Result<(), String> {
    let out = cmd
        .output()
        .map_err(|e| format!("{what}: cannot run: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Extracts checkpatch.pl from Debian's linux-source package into `dir` (once).
fn checkpatch(dir: &Path) -> Result<PathBuf, String> {
    let script = dir.join("scripts/checkpatch.pl");
    if script.is_file() {
        return Ok(script);
    }
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let hint = "checkpatch.pl comes from Debian's linux-source-6.1 package (needs `apt-get update` and network access to Debian's mirror)";
    run(
        Command::new("apt-get")
            .args(["download", "linux-source-6.1"])
            .current_dir(dir),
        &format!("apt-get download linux-source-6.1 ({hint})"),
    )?;
    let deb = std::fs::read_dir(dir)
        .map_err(|e| e.to_string())?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or_else(|| format!("no linux-source .deb downloaded; {hint}"))?;
    let sh = format!(
        "dpkg-deb --fsys-tarfile '{}' | tar -xO --wildcards '*/linux-source-*.tar.xz' | tar -xJ --strip-components=1 --wildcards {}",
        deb.display(),
        FILES
            .iter()
            .map(|f| format!("'*/{f}'"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    run(
        Command::new("sh").arg("-c").arg(&sh).current_dir(dir),
        "extracting checkpatch.pl from linux-source",
    )?;
    let _ = std::fs::remove_file(&deb);
    if script.is_file() {
        Ok(script)
    } else {
        Err(format!("checkpatch.pl not found after extraction; {hint}"))
    }
}

/// The project's C sources and headers, found in the directories that hold C.
fn c_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![
        root.join("guest-kmod"),
        root.join("buildmacros/include"),
        root.join("buildmacros/kernel-types"),
        root.join("shared-proto/include"),
        root.join("examples"),
    ];
    while let Some(d) = dirs.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "c" || x == "h")
                && !p.to_string_lossy().ends_with(".mod.c")
            {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn c_sources_are_checkpatch_clean() {
    let root = workspace_root();
    let script = checkpatch(&root.join("target/checkpatch")).unwrap_or_else(|e| panic!("{e}"));
    // The checker must be able to fail: a file with a style error is reported.
    let bad = root.join("target/checkpatch/bad.c");
    std::fs::write(
        &bad,
        "// SPDX-License-Identifier: GPL-2.0\nint f(int a){return a;}\n",
    )
    .unwrap();
    let out = Command::new("perl")
        .arg(&script)
        .args(["--no-tree", "--terse", "-f"])
        .arg(&bad)
        .output()
        .expect("perl runs");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("ERROR"),
        "checkpatch found nothing wrong in a badly styled file: is it working?"
    );
    let files = c_files(&root);
    assert!(
        files.len() >= 8,
        "expected the helper module, headers and examples, found {files:?}"
    );
    let mut failures = Vec::new();
    for f in &files {
        let out = Command::new("perl")
            .arg(&script)
            .args(["--no-tree", "--terse", "--show-types", "-f"])
            .arg(f)
            .output()
            .expect("perl runs");
        let text = String::from_utf8_lossy(&out.stdout);
        let findings: Vec<&str> = text
            .lines()
            .filter(|l| l.contains(": ERROR:") || l.contains(": WARNING:"))
            .collect();
        if !findings.is_empty() {
            failures.push(format!("{}:\n  {}", f.display(), findings.join("\n  ")));
        }
    }
    assert!(
        failures.is_empty(),
        "checkpatch findings:\n{}",
        failures.join("\n")
    );
}
