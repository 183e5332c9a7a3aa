//! `vmark inspect` as a command: exit codes and messages on objects gcc compiles here.

use std::path::PathBuf;
use std::process::Command;

fn compile(tag: &str, flags: &[&str]) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("inspect-cli-{tag}"));
    std::fs::create_dir_all(&dir).unwrap();
    let c = dir.join("t.c");
    std::fs::write(
        &c,
        "struct s { unsigned a:3, b:5; union { int i; char c; }; void (*f)(void); } g;\n",
    )
    .unwrap();
    let o = dir.join("t.o");
    let st = Command::new("gcc")
        .args(flags)
        .arg("-c")
        .arg(&c)
        .arg("-o")
        .arg(&o)
        .status()
        .expect("gcc must be installed (tests/install-deps.sh)");
    assert!(st.success(), "gcc failed");
    o
}

fn vmark(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_vmark"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn layout_as_json_and_text() {
    let o = compile("g", &["-g"]);
    let o = o.to_str().unwrap();
    let out = vmark(&["inspect", o, "--type", "struct s", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["name"], "struct s");
    assert_eq!(v["size"], 16);
    assert_eq!(v["members"][1]["bit_offset"], 3);
    assert_eq!(v["members"][3]["path"], "i");
    let out = vmark(&["inspect", o, "--type", "s"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("/* size: 16, cachelines: 1, members: 4 */"),
        "{text}"
    );
    let out = vmark(&["inspect", o]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("not marked"));
    let out = vmark(&["inspect", o, "--type", "struct nope"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
}

#[test]
fn missing_debug_info_fails_with_the_fix() {
    let o = compile("nog", &[]);
    let out = vmark(&["inspect", o.to_str().unwrap(), "--type", "struct s"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("CONFIG_DEBUG_INFO=y") && err.contains("-g"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    let out = vmark(&["inspect", "/nonexistent.ko"]);
    assert!(!out.status.success());
}
