//! The README's "Monitor your own module" steps 2 and 3, followed as a module author would:
//! the C snippet and the Makefile lines are taken from README.md itself (so the README
//! cannot drift from what works), put in a fresh directory outside the workspace, built with
//! plain `make` (the make fragment finding `vmark-build` on its own, as step 1 built it), and
//! the result inspected with the `vmark` binary. Steps 4 and 5 (the guest and dom0) are what
//! `tests/e2e_xen.rs` runs with `examples/marks-demo`: `list`, `read` (pretty and JSON),
//! `watch --every`, `watch --on-trigger --record` and `plot` of a recording.

use std::path::Path;
use std::process::Command;
use vmark_tests::kbuild::kernel_build_dir;
use vmark_tests::kmod::{vmark, workspace_root};

/// The body of the first fenced block of `lang` in the README's section `heading`.
fn fenced(readme: &str, heading: &str, lang: &str) -> String {
    let section = readme
        .split("\n## ")
        .find(|s| s.starts_with(heading))
        .unwrap_or_else(|| panic!("README has no section {heading:?}"));
    let open = format!("```{lang}\n");
    let start = section
        .find(&open)
        .unwrap_or_else(|| panic!("no ```{lang} block in README section {heading:?}"));
    let body = &section[start + open.len()..];
    let end = body.find("```").expect("an unclosed fenced block");
    // A block under a list item is indented as its fence is: as written, without that.
    let indent = section[..start].len() - section[..start].trim_end_matches(' ').len();
    body[..end]
        .lines()
        .map(|l| {
            let spaces = l.len() - l.trim_start_matches(' ').len();
            &l[spaces.min(indent)..]
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_readmes_own_module_steps_build_and_inspect_as_written() {
    let root = workspace_root();
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let c = fenced(&readme, "Monitor your own module", "c");
    let make = fenced(&readme, "Monitor your own module", "make");
    assert!(
        c.contains("VMARK(state);") && make.contains("vmark.mk"),
        "{c}\n{make}"
    );
    // Step 1 built vmark-build where the make fragment looks for it.
    let release = root.join("target/release/vmark-build");
    assert!(
        release.is_file(),
        "{} is missing: step 1 (`cargo build --release -p vmark-build ...`; tests/run does it)",
        release.display()
    );

    let dir = std::env::temp_dir().join(format!("vmark-readme-module-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // The snippet, verbatim, in the smallest module around it: the type it marks, and a
    // caller for update() (the kernel's flags make an unused static function a warning).
    let module = format!(
        "// SPDX-License-Identifier: GPL-2.0\n#include <linux/module.h>\n\n\
         struct my_state {{\n\tint x;\n}};\n\n{c}\n\n\
         static int __init mymod_init(void)\n{{\n\tupdate();\n\treturn 0;\n}}\n\n\
         static void __exit mymod_exit(void)\n{{\n}}\n\n\
         module_init(mymod_init);\nmodule_exit(mymod_exit);\nMODULE_LICENSE(\"GPL\");\n"
    );
    std::fs::write(dir.join("mymod.c"), module).unwrap();
    let makefile = make.replace("/path/to/vmark", root.to_str().expect("a UTF-8 path"));
    std::fs::write(dir.join("Makefile"), format!("{makefile}\n")).unwrap();

    // Step 3: `make`, with KDIR for the installed headers (this machine may run another
    // kernel than the one it has headers for); nothing else from the test's environment.
    let kdir = kernel_build_dir().unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new("make")
        .current_dir(&dir)
        .arg(format!("KDIR={}", kdir.display()))
        .env_remove("VMARK_BUILD")
        .env_remove("VMARK")
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .expect("running make");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "make failed:\n{log}");
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.to_ascii_lowercase().contains("warning:"))
        .collect();
    assert!(warnings.is_empty(), "warnings:\n{}", warnings.join("\n"));
    assert!(
        log.contains(&release.display().to_string()),
        "the make fragment did not use step 1's vmark-build:\n{log}"
    );

    // `vmark inspect mymod.ko` lists the mark and its type.
    let ko = dir.join("mymod.ko");
    let listing = vmark(&["inspect", ko.to_str().unwrap()]);
    assert!(
        listing.contains("state") && listing.contains("struct my_state"),
        "{listing}"
    );
    let layout = vmark(&["inspect", ko.to_str().unwrap(), "--type", "struct my_state"]);
    assert!(layout.contains("int") && layout.contains('x'), "{layout}");
    remove(&dir);
}

fn remove(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
}
