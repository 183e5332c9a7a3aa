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
//!
//! The second test runs the showcase as the README says (`examples/tcp-monitor/showcase`):
//! the guest sends a bulk transfer to dom0 while dom0 changes the path with `tc netem` (a
//! delay, then loss), and checks what a protocol researcher would look for in its recording:
//! the RTT rising with the delay, retransmissions and a smaller window with the loss, every
//! guest trigger accounted for, the plot written as SVG and PNG with the phases on it.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use vmark_host::plot::{phase_stats, read_phases, series_from, PhaseStats};
use vmark_tests::kmod::{make_marked_module, workspace_root};
use vmark_tests::nested::{
    build_helper, kernel_release, require_tools, run_bounded, xen_vmark_binary,
};

/// check's own QEMU limit (TIMEOUT) and ours, a little later.
const QEMU_TIMEOUT: Duration = Duration::from_secs(600);
const HARD_TIMEOUT: Duration = Duration::from_secs(660);

/// One nested Xen at a time: two at once on two cores slow each other past their limits.
static ONE_XEN: Mutex<()> = Mutex::new(());

#[test]
fn e2e_tcp_monitor_matches_the_guests_view_and_ss() {
    let _one = ONE_XEN.lock().unwrap_or_else(|e| e.into_inner());
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

/// The showcase's QEMU limit is its own (900 s); ours comes a little after.
const SHOWCASE_TIMEOUT: Duration = Duration::from_secs(960);

#[test]
fn e2e_showcase_shows_tcp_reacting_to_delay_then_loss() {
    let _one = ONE_XEN.lock().unwrap_or_else(|e| e.into_inner());
    let t0 = Instant::now();
    let root = workspace_root();
    require_tools().unwrap_or_else(|e| panic!("{e}"));
    let out = root.join("target/showcase/out");
    let log = root.join("target/e2e/showcase.log");
    std::fs::create_dir_all(log.parent().unwrap()).expect("creating target/e2e");
    let mut cmd = Command::new(root.join("examples/tcp-monitor/showcase"));
    let file = std::fs::File::create(&log).expect("creating showcase.log");
    cmd.stdout(Stdio::from(file.try_clone().expect("log")))
        .stderr(Stdio::from(file));
    eprintln!(
        "e2e showcase: running examples/tcp-monitor/showcase (log: {})",
        log.display()
    );
    let rc = run_bounded(cmd, SHOWCASE_TIMEOUT);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let tail: Vec<&str> = text.lines().rev().take(12).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    assert!(
        matches!(rc, Ok(0)),
        "the showcase: {rc:?}; its last lines:\n  {}\nlog: {}",
        tail.join("\n  "),
        log.display()
    );
    let summary = std::fs::read_to_string(out.join("summary.txt")).expect("summary.txt");
    eprintln!(
        "e2e showcase: {} s; summary:\n{summary}",
        t0.elapsed().as_secs()
    );

    // Every guest trigger is accounted for by the recorded samples.
    let number_after = |key: &str| -> u64 {
        let line = summary
            .lines()
            .find(|l| l.starts_with(key))
            .unwrap_or_else(|| panic!("no {key:?} in the summary:\n{summary}"));
        let rest = line[key.len()..].trim_start_matches([' ', ':']);
        rest.split(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no number in {line:?}"))
    };
    let segments = number_after("segments the guest received (ACKs; read by vmark)");
    let folded = number_after("triggers accounted for by the samples");
    let sent = number_after("bytes the guest sent to dom0");
    assert!(segments > 1000, "only {segments} segments:\n{summary}");
    assert_eq!(
        folded, segments,
        "triggers lost between guest and recording:\n{summary}"
    );
    assert!(
        sent > 10_000_000,
        "the bulk transfer moved only {sent} bytes"
    );

    // The phases, as announced, and what TCP did in each.
    let phases = read_phases(&out.join("phases.txt")).expect("phases.txt");
    let labels: Vec<&str> = phases.iter().map(|p| p.label.as_str()).collect();
    assert_eq!(labels, ["clean path", "+40 ms delay", "+40 ms, 2% loss"]);
    let fields: Vec<String> = [
        "snd_cwnd",
        "srtt_ms=(srtt_us>>3)/1000:ms",
        "retransmitted=total_retrans",
    ]
    .map(String::from)
    .to_vec();
    let rec = out.join("showcase.jsonl");
    let (series, t_start) = series_from(&rec, &fields, Some("last_tp")).expect("the recording");
    let stats = phase_stats(&series, &fields, &phases, t_start).expect("per-phase figures");
    let of = |field: &str, phase: &str| -> &PhaseStats {
        stats
            .iter()
            .find(|s| s.field == field && s.phase == phase)
            .unwrap_or_else(|| panic!("no {field} samples in phase {phase:?}: {stats:#?}"))
    };
    let (clean, delay, loss) = (labels[0], labels[1], labels[2]);
    for p in [clean, delay, loss] {
        assert!(
            of("snd_cwnd", p).points >= 20,
            "few samples in {p:?}: {stats:#?}"
        );
    }
    // 40 ms more delay: the smoothed RTT's median rises by most of it.
    let (rtt_clean, rtt_delay) = (
        of("srtt_ms (ms)", clean).median,
        of("srtt_ms (ms)", delay).median,
    );
    assert!(
        rtt_delay >= rtt_clean + 25.0,
        "srtt median {rtt_clean} ms on the clean path, {rtt_delay} ms with 40 ms delay"
    );
    // 2% loss: segments retransmitted, none before, and the window cut below its peak.
    let retrans = |p| of("retransmitted", p).change;
    assert!(
        retrans(loss) >= 5.0 && retrans(clean) + retrans(delay) < retrans(loss),
        "retransmissions: {} clean, {} delay, {} loss",
        retrans(clean),
        retrans(delay),
        retrans(loss)
    );
    let (cwnd_peak, cwnd_loss) = (of("snd_cwnd", delay).max, of("snd_cwnd", loss).min);
    assert!(
        cwnd_loss < cwnd_peak / 2.0,
        "snd_cwnd: peak {cwnd_peak} before the loss, lowest {cwnd_loss} with it"
    );

    // The plot: SVG with the phases on it, and the same as PNG.
    let svg = std::fs::read_to_string(out.join("showcase.svg")).expect("showcase.svg");
    for l in labels {
        assert!(svg.contains(l), "the plot does not mark phase {l:?}");
    }
    let png = std::fs::read(out.join("showcase.png")).expect("showcase.png");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 50_000,
        "showcase.png"
    );
    // The per-phase table the summary shows.
    assert!(
        summary.contains("per phase") && summary.contains("+40 ms, 2% loss"),
        "{summary}"
    );
}
