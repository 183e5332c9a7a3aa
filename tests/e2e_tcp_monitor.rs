//! The main job's example on real Xen: `examples/tcp-monitor/check` boots Xen 4.17 with a
//! Debian dom0 under QEMU (TCG) and a PV guest running `vmark_helper.ko` and
//! `tcp_monitor.ko` with a netfront interface, sends TCP from dom0 into the guest over
//! IPv4 and IPv6 (`traffic.py`), and compares, on the idle connection:
//!
//! - the host's decode (`vmark read last_tp` / `stats`) with the module's own debugfs view,
//!   field by field;
//! - the marked `tcp_sock` copy with `ss -ti` in the guest (cwnd, mss, rtt, wscale,
//!   bytes_received, segs_in, ...);
//! - the triggers `vmark watch --on-trigger` accounted for with the segments the guest saw;
//!
//! and that the module works without the helper and reloads cleanly.
//! `check-compare.py` prints one `ok`/`FAIL` line per comparison; this test builds what the
//! run needs, runs it under a time limit and fails on any `FAIL` or a run that did not end.
//! Everything it left is under `target/e2e/tcp-monitor/`.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use vmark_tests::kmod::{make_marked_module, workspace_root};
use vmark_tests::nested::{
    build_helper, kernel_release, require_tools, run_bounded, xen_vmark_binary,
};

/// check's own QEMU limit (TIMEOUT) and ours, a little later.
const QEMU_TIMEOUT: Duration = Duration::from_secs(600);
const HARD_TIMEOUT: Duration = Duration::from_secs(660);

#[test]
fn e2e_tcp_monitor_matches_the_guests_view_and_ss() {
    let t0 = Instant::now();
    let root = workspace_root();
    require_tools().unwrap_or_else(|e| panic!("{e}"));
    let kver = kernel_release().unwrap_or_else(|e| panic!("{e}"));
    let kdir = PathBuf::from(format!("/lib/modules/{kver}/build"));
    eprintln!("e2e tcp-monitor: kernel {kver}; building vmark, vmark_helper.ko, tcp_monitor.ko");
    let vmark = xen_vmark_binary().unwrap_or_else(|e| panic!("{e}"));
    let build = root.join("target/e2e/tcp-monitor-build");
    let helper = build_helper(&build, &kdir).unwrap_or_else(|e| panic!("{e}"));
    let tcpmon = make_marked_module(
        &root.join("examples/tcp-monitor"),
        &build.join("tcp-monitor"),
        "tcp_monitor",
        &[],
    )
    .unwrap_or_else(|e| panic!("{e}"));

    let w = root.join("target/e2e/tcp-monitor");
    let _ = std::fs::remove_dir_all(&w);
    std::fs::create_dir_all(&w).expect("creating the work directory");
    // Beside the work directory, which `check` empties when it starts.
    let verdict = root.join("target/e2e/tcp-monitor-verdict.txt");
    let mut cmd = Command::new(root.join("examples/tcp-monitor/check"));
    cmd.arg(&w)
        .env("VMARK_BIN", &vmark)
        .env("VMARK_HELPER_KO", &helper)
        .env("TCP_MONITOR_KO", &tcpmon)
        .env("VMARK_KVER", &kver)
        .env("TIMEOUT", QEMU_TIMEOUT.as_secs().to_string())
        .stdout(Stdio::from(
            std::fs::File::create(&verdict).expect("creating verdict.txt"),
        ));
    eprintln!(
        "e2e tcp-monitor: booting Xen, dom0 and a PV guest with a vif (logs: {})",
        w.display()
    );
    let rc = run_bounded(cmd, HARD_TIMEOUT);
    let text = std::fs::read_to_string(&verdict).unwrap_or_default();
    let oks = text.lines().filter(|l| l.starts_with("ok ")).count();
    let fails: Vec<&str> = text.lines().filter(|l| l.starts_with("FAIL")).collect();
    for l in text.lines().filter(|l| l.starts_with("note ")) {
        eprintln!("e2e tcp-monitor: {l}");
    }
    eprintln!(
        "e2e tcp-monitor: {oks} checks passed, {} failed, {} s in all",
        fails.len(),
        t0.elapsed().as_secs()
    );
    let logs = format!(
        "logs: {0}/console.log (Xen + dom0), {0}/out/ (guest console, vmark outputs), {1}",
        w.display(),
        verdict.display()
    );
    assert!(
        matches!(rc, Ok(0)) && fails.is_empty() && text.contains("all checks passed"),
        "tcp-monitor on nested Xen: {rc:?}, failed checks:\n  {}\n{logs}",
        fails.join("\n  ")
    );
    // Enough of the run happened to mean something: the comparisons with ss and the
    // host's decode ran for both connections.
    assert!(oks >= 25, "only {oks} checks ran:\n{text}\n{logs}");
}
