//! The generic-introspection commands on a real QEMU dump: `vmark ps`, `modules`, `sym`,
//! `read-va`, `read-pa`, and marks found without xenstore (`list --source`,
//! `read --source`, `--path`).
//!
//! The guest (the host's Debian kernel with a busybox initramfs, see
//! `vmark_host::introspect::fixture`) loads `examples/marks-demo` built with Kbuild and
//! `vmark.mk`, and prints its own `ps`, `/proc/modules` and the demo's debugfs values to
//! the serial console before the dump is taken; every command's answer is compared with
//! what the guest said. Missing prerequisites fail the test, naming
//! `tests/install-deps.sh`.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;
use vmark_host::introspect::fixture::{self, Fixture};
use vmark_tests::guest_lists::{compare_modules, proc_modules, GuestPs};
use vmark_tests::kmod::{make_marked_module, vmark, vmark_binary, vmark_json, workspace_root};

fn fixture() -> &'static Fixture {
    static F: OnceLock<Result<Fixture, String>> = OnceLock::new();
    F.get_or_init(|| {
        let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join("introspect_cli/marks-demo");
        let ko = make_marked_module(
            &workspace_root().join("examples/marks-demo"),
            &work,
            "marks_demo",
            &[],
        )?;
        fixture::build_with(&[ko])
    })
    .as_ref()
    .unwrap_or_else(|e| panic!("{e}"))
}

fn dump() -> &'static str {
    fixture().dump.to_str().expect("UTF-8 path")
}

fn section(part: &str) -> (Vec<&'static str>, &'static str) {
    fixture()
        .section(part)
        .unwrap_or_else(|| panic!("the guest printed no {part} section:\n{}", fixture().serial))
}

#[test]
fn ps_matches_the_guests_own_ps() {
    let (lines, end) = section("PS");
    let guest = GuestPs::parse(&lines, end).unwrap_or_else(|e| panic!("{e}"));
    assert!(guest.procs.len() > 20, "{guest:?}");
    if let Err(e) = guest.compare(&vmark_json(&["ps", dump(), "--json"])) {
        panic!("vmark ps on the dump differs from the guest's ps: {e}");
    }
    assert_eq!(guest.procs[&1].1, "busybox");
    // The table says the same.
    let table = vmark(&["ps", dump()]);
    assert!(table
        .lines()
        .any(|l| l.trim_start().starts_with("1 ") && l.ends_with("busybox")));
}

/// The guest's RAM as QEMU kept it in its shared memory-backend file (LibVMI's KVM row:
/// a live QEMU guest), read with `--format qemu-shm`: the same processes, modules and
/// marks as the dump says.
#[test]
fn a_qemu_shared_ram_file_is_a_source_too() {
    let ram = fixture().ram.to_str().expect("UTF-8 path");
    let src = ["--format", "qemu-shm"];
    let (lines, end) = section("PS");
    let guest = GuestPs::parse(&lines, end).unwrap_or_else(|e| panic!("{e}"));
    let ps = vmark_json(&[&["ps", ram, "--json"][..], &src].concat());
    if let Err(e) = guest.compare(&ps) {
        panic!("vmark ps on the shared RAM file differs from the guest's ps: {e}");
    }
    let (lines, _) = section("MODULES");
    let modules = vmark_json(&[&["modules", ram, "--json"][..], &src].concat());
    if let Err(e) = compare_modules(&proc_modules(&lines), &modules) {
        panic!("{e}");
    }
    let v = vmark_json(&[&["read", "--source", ram, "counter", "--json"][..], &src].concat());
    assert_eq!(v["consistent"], true, "{v}");
    assert_eq!(num(&v["value"]), guest_values()["counter"]);
}

/// `vmark snapshot` of the dump: a core file with the guest's VMCOREINFO, sparse, that
/// vmark reads as the guest was (processes, modules, a mark) and that drgn and
/// volatility3 open (what they read is what vmark reads).
#[test]
fn a_snapshot_of_the_dump_opens_in_vmark_drgn_and_volatility3() {
    let snap = Path::new(env!("CARGO_TARGET_TMPDIR")).join("introspect_cli/snapshot.core");
    let snap_s = snap.to_str().expect("UTF-8 path");
    let report = vmark_json(&["snapshot", dump(), snap_s, "--json"]);
    assert_eq!(report["vmcoreinfo"], "the guest's", "{report}");
    let present = report["frames_present"].as_u64().unwrap_or(0);
    let zero = report["frames_zero"].as_u64().unwrap_or(0);
    // The guest uses a fraction of its RAM: most pages are zeroes, not written.
    assert!(present > 0 && zero > 0 && zero < present, "{report}");
    assert_eq!(
        report["bytes_written"].as_u64(),
        Some((present - zero) * 4096),
        "{report}"
    );
    let meta = std::fs::metadata(&snap).expect("the snapshot exists");
    use std::os::unix::fs::MetadataExt;
    assert!(
        meta.blocks() * 512 < meta.len() * 3 / 4,
        "the snapshot is not sparse: {} bytes on disk of {}",
        meta.blocks() * 512,
        meta.len()
    );
    let (lines, end) = section("PS");
    let guest = GuestPs::parse(&lines, end).unwrap_or_else(|e| panic!("{e}"));
    if let Err(e) = guest.compare(&vmark_json(&["ps", snap_s, "--json"])) {
        panic!("vmark ps on the snapshot differs from the guest's ps: {e}");
    }
    let (lines, _) = section("MODULES");
    if let Err(e) = compare_modules(
        &proc_modules(&lines),
        &vmark_json(&["modules", snap_s, "--json"]),
    ) {
        panic!("vmark modules on the snapshot: {e}");
    }
    let v = vmark_json(&["read", "--source", snap_s, "counter", "--json"]);
    assert_eq!(num(&v["value"]), guest_values()["counter"], "{v}");
    match vmark_tests::peers::check_snapshot(&snap, &fixture().release) {
        Ok(line) => eprintln!("snapshot of the dump: {line}"),
        Err(e) => panic!("the snapshot in the peers: {e}"),
    }
    std::fs::remove_file(&snap).expect("remove the snapshot");
}

#[test]
fn modules_match_proc_modules() {
    let (lines, _) = section("MODULES");
    let guest = proc_modules(&lines);
    assert!(guest.contains("marks_demo"), "{guest:?}");
    for m in fixture::MODULES {
        assert!(guest.contains(m), "{m} in {guest:?}");
    }
    if let Err(e) = compare_modules(&guest, &vmark_json(&["modules", dump(), "--json"])) {
        panic!("{e}");
    }
}

#[test]
fn symbols_and_memory_reads() {
    let syms = vmark_json(&[
        "sym",
        dump(),
        "linux_banner",
        "__vmark_rec_demo_counter",
        "--near",
        "init_task+0x10",
        "--json",
    ]);
    let banner = syms[0]["addr"]
        .as_str()
        .expect("banner address")
        .to_string();
    assert_eq!(syms[1]["module"], "marks_demo", "{syms}");
    assert_eq!(syms[2]["near"], "init_task+0x10", "{syms}");
    // Reading by symbol and by address agree, and say what the kernel is.
    let by_name = vmark(&["read-va", dump(), "linux_banner", "14", "--raw"]);
    assert_eq!(by_name, "Linux version ");
    assert_eq!(vmark(&["read-va", dump(), &banner, "14", "--raw"]), by_name);
    let hex = vmark(&["read-va", dump(), "linux_banner", "4", "--hex"]);
    assert_eq!(hex.trim(), "4c696e75");
    let canonical = vmark(&["read-va", dump(), "linux_banner", "32"]);
    assert!(canonical.contains("Linux version"), "{canonical}");
    // Physical: the zero page of a PC starts with the real-mode interrupt vector table,
    // and read-pa of the banner's physical copy reads the same bytes.
    assert_eq!(
        vmark(&["read-pa", dump(), "0x1000", "8", "--hex"])
            .trim()
            .len(),
        16
    );
    let missing = Command::new(vmark_binary().unwrap())
        .args(["sym", dump(), "no_such_symbol_anywhere"])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("not found"));
}

/// The guest's own values: `name=value` lines of `/sys/kernel/debug/vmark_demo/values`.
fn guest_values() -> BTreeMap<&'static str, &'static str> {
    let (lines, _) = section("VALUES");
    let v: BTreeMap<_, _> = lines.iter().filter_map(|l| l.split_once('=')).collect();
    assert!(v.contains_key("counter"), "{lines:?}");
    v
}

fn read_mark(mark: &str, path: Option<&str>) -> Value {
    let mut args = vec!["read", "--source", dump(), mark, "--json"];
    if let Some(p) = path {
        args.extend(["--path", p]);
    }
    let v = vmark_json(&args);
    assert_eq!(v["consistent"], true, "{v}");
    v["value"].clone()
}

fn num(v: &Value) -> String {
    match v {
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => u8::from(*b).to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[test]
fn marks_are_found_in_the_dump_without_xenstore() {
    let listed = vmark_json(&["list", "--source", dump(), "--json"]);
    let names: BTreeSet<String> = listed
        .as_array()
        .expect("array")
        .iter()
        .map(|r| {
            assert!(r.get("error").is_none(), "{r}");
            assert_eq!(r["module"], "marks_demo");
            r["mark"].as_str().expect("mark").to_string()
        })
        .collect();
    let want: BTreeSet<String> = ["counter", "demo_hist", "demo_state", "demo_tcp", "demo_tp"]
        .map(String::from)
        .into();
    assert_eq!(names, want);
    let table = vmark(&["list", "--source", dump()]);
    assert!(table.contains("struct demo_state"), "{table}");

    let g = guest_values();
    assert_eq!(num(&read_mark("counter", None)), g["counter"]);
    let state = read_mark("marks_demo/demo_state", None);
    for field in [
        "id", "mode", "enabled", "level", "delta", "raw", "lo", "hi", "phase",
    ] {
        let ours = state
            .get(field)
            .or_else(|| {
                state
                    .as_object()
                    .and_then(|o| o.values().find_map(|v| v.get(field)))
            })
            .unwrap_or_else(|| panic!("no {field} in {state}"));
        let ours = match ours {
            Value::Object(e) if e.contains_key("value") => num(&e["value"]),
            v => num(v),
        };
        assert_eq!(
            ours,
            g[format!("demo_state.{field}").as_str()],
            "demo_state.{field}: {state}"
        );
    }
    assert_eq!(state["label"], g["demo_state.label"]);
    assert_eq!(num(&state["addr"]["port"]), g["demo_state.addr.port"]);
    let hist = read_mark("demo_hist", None);
    for i in 0..8 {
        assert_eq!(
            num(&hist[i]),
            g[format!("demo_hist[{i}]").as_str()],
            "{hist}"
        );
    }
    let tcp = read_mark("demo_tcp", None);
    for f in [
        "snd_cwnd",
        "srtt_us",
        "mss_cache",
        "rcv_nxt",
        "bytes_received",
    ] {
        assert_eq!(
            num(&tcp[f]),
            g[format!("demo_tcp.{f}").as_str()],
            "demo_tcp.{f}"
        );
    }
}

#[test]
fn paths_follow_guest_pointers() {
    let g = guest_values();
    assert_eq!(g["demo_tp_is_demo_tcp"], "1");
    // demo_tp points at demo_tcp: follow it through the guest's page tables.
    let cwnd = read_mark("demo_tp", Some("demo_tp->snd_cwnd"));
    assert_eq!(num(&cwnd), g["demo_tp.snd_cwnd"]);
    let v = vmark_json(&[
        "read",
        "--source",
        dump(),
        "demo_tp",
        "--path=->bytes_received",
        "--json",
    ]);
    assert_eq!(num(&v["value"]), g["demo_tcp.bytes_received"]);
    let tcp_addr = vmark_json(&["sym", dump(), "demo_tcp", "--json"])[0]["addr"].clone();
    assert_eq!(v["followed"][0]["addr"], tcp_addr, "{v}");
    // A member path without pointers, and errors that say why.
    assert_eq!(
        num(&read_mark("demo_state", Some("addr.port"))),
        g["demo_state.addr.port"]
    );
    let bad = Command::new(vmark_binary().unwrap())
        .args(["read", "--source", dump(), "demo_state", "--path", "id->x"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("not a pointer"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}

/// `vmark read --source DUMP MARK --follow DEPTH --json`.
fn follow_json(mark: &str, depth: u32) -> Value {
    let depth = depth.to_string();
    vmark_json(&[
        "read",
        "--source",
        dump(),
        mark,
        "--follow",
        &depth,
        "--json",
    ])
}

#[test]
fn follow_decodes_what_pointers_point_to() {
    let g = guest_values();
    // demo_tp -> demo_tcp, one level: the pointee is the guest's tcp_sock copy.
    assert_eq!(g["demo_tp_is_demo_tcp"], "1");
    let v = follow_json("demo_tp", 1);
    let pointees = v["pointees"].as_array().expect("pointees");
    assert_eq!(pointees.len(), 1, "{v}");
    let p = &pointees[0];
    assert_eq!(p["path"], "demo_tp");
    assert_eq!(p["type"], "struct tcp_sock");
    assert_eq!(p["depth"], 1);
    let tcp_addr = vmark_json(&["sym", dump(), "demo_tcp", "--json"])[0]["addr"].clone();
    assert_eq!(p["addr"], tcp_addr);
    for f in ["snd_cwnd", "srtt_us", "bytes_received"] {
        assert_eq!(
            num(&p["value"][f]),
            g[format!("demo_tcp.{f}").as_str()],
            "{f}"
        );
    }
    assert_eq!(v["pointees_cut"], false);
    // Two levels: the tcp_sock's own pointers (NULL in this static copy, or into the
    // kernel) are followed or reported, each under its path, within the limits.
    let v = follow_json("demo_tp", 2);
    let pointees = v["pointees"].as_array().expect("pointees");
    assert!(!pointees.is_empty() && pointees.len() <= 256, "{v}");
    for p in &pointees[1..] {
        assert_eq!(p["depth"], 2, "{p}");
        assert!(p["path"].as_str().unwrap().starts_with("demo_tp->"), "{p}");
        assert!(p.get("value").is_some() || p.get("error").is_some(), "{p}");
    }
    // Pretty output names each pointee; a value without pointers has none.
    let pretty = vmark(&["read", "--source", dump(), "demo_tp", "--follow", "1"]);
    assert!(
        pretty.contains("-- demo_tp -> (struct tcp_sock) at"),
        "{pretty}"
    );
    let v = follow_json("counter", 3);
    assert_eq!(v["pointees"], serde_json::json!([]), "{v}");
}
