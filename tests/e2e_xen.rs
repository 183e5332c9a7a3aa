//! End to end on real Xen: boots Xen 4.17 with a Debian dom0 under QEMU (TCG), one PV and
//! one PVH guest running `vmark_helper.ko` and `examples/marks-demo`, and checks from dom0
//! with the real `vmark` binary that
//!
//! (a) `vmark list` shows the 5 marks of marks_demo in each guest;
//! (b) `vmark read --json` decodes what the guest itself reports (its debugfs `values`):
//!     the counter, the struct's fields (bitfields, anonymous union, enum, char array),
//!     the array, fields of the `struct tcp_sock` copy and the pointer to it;
//! (c) a value the guest changes (`bump 5`) is read changed;
//! (d) 50 triggers fired in 5 bursts under `vmark watch --on-trigger` are all accounted
//!     for by the samples' `folded` counts, as the helper's own counters say;
//! (e) `rmmod marks_demo` makes the running watch report `withdrawn`, `insmod` `back`,
//!     and the triggers after that are counted;
//! (f) a watch killed and started again sees the triggers fired after its start;
//! and, on the PV guest, the faults of issue 8 (`check_faults`): (g) the helper reloaded
//! under a watch (triggers resume, counts add up), (h) the guest rewriting its published
//! tree in a loop (the watch's CPU stays bounded, sampling goes on), (i) a recording onto a
//! small full tmpfs (the file ends on a whole line, the watch carries on), (j) SIGTERM to a
//! `--pause` watch (the guest is running afterwards), (k) the guest destroyed mid-watch (a
//! clear status, a complete recording);
//! and, for generic introspection, that `vmark ps` and `vmark modules` live (`xen:GUEST`)
//! and on the PV guest's `xl dump-core` match the guest's own `ps` and `/proc/modules`,
//! and a mark is read from the dump without xenstore. `e2e_pvh_xl_dump_core` does the
//! same on an `xl dump-core` of a PVH guest, in a run of its own (it takes minutes), beside
//! a PV guest running another kernel than dom0's (issue 9: the newest bookworm-backports
//! kernel, 6.12 today, with the helper and marks_demo built against its headers): its
//! marks list and read, triggers add up under a watch, and its lists match, live and from
//! its `xl dump-core`.
//!
//! It also measures the trigger→sample latency (the watch summaries) and the guest-side
//! cost of `VMARK_TRIGGER` with a listener, without one, and without the helper, and prints
//! the figures. The scripts are in `tests/e2e/` (boot.sh boots, dom0-scenario.sh drives the
//! guests from dom0 and leaves every output in `target/e2e/run/out/`); this file builds
//! what they need, runs them with a time limit and asserts on what they left.
//!
//! A missing prerequisite (QEMU, Xen, the kernel or its headers, busybox) fails the test,
//! naming `tests/install-deps.sh`. Every log stays under `target/e2e/run/`.
//!
//! A guest that dies before its console works is diagnosed from dom0: an HVM-exit trace of
//! the guests' first seconds (`out/xentrace.bin`, decoded into `out/xentrace-exits.txt`)
//! (symbols: `kallsyms-finder` from PyPI's vmlinux-to-elf on the decompressed vmlinuz).
//!
//! Environment: `VMARK_E2E_GUESTS=pv` (or `pvh`) runs one kind of guest only;
//! `VMARK_E2E_CHECK_ONLY=1` checks what the last run left without booting again.

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use vmark_tests::guest_lists::{compare_modules, proc_modules, GuestPs};
use vmark_tests::kmod::{self, workspace_root};
use vmark_tests::matrix;
use vmark_tests::nested::{
    boot, build_helper, kernel_release, progress, require_tools, xen_vmark_binary,
};
use vmark_tests::peers;

/// QEMU's own limit (boot.sh kills it then; ours is a minute later). A run takes about
/// 410 s on an idle 2-core machine (it took 660 s while each live open mapped frames one
/// at a time, and ran out of this limit once); the PVH guest slows down many times over
/// when another process holds one of the cores (nested SVM emulation), hence the margin.
const QEMU_TIMEOUT: Duration = Duration::from_secs(840);
/// The same for the PVH dump-core run.
const PVH_DUMP_TIMEOUT: Duration = Duration::from_secs(1200);
/// Triggers fired under watch4 (dom0-scenario.sh's BURST_N): their folded counts must
/// add up to exactly this.
const BURST_TRIGGERS: u64 = 100_000;
const ALL_GUESTS: [(&str, &str); 2] = [("vm-pv", "pv"), ("vm-pvh", "pvh")];

/// The guests to run: both, or those `VMARK_E2E_GUESTS` names (`pv`, `pvh`; for working
/// on one kind).
fn guests() -> Vec<(&'static str, &'static str)> {
    let only = std::env::var("VMARK_E2E_GUESTS").unwrap_or_default();
    ALL_GUESTS
        .into_iter()
        .filter(|(_, ty)| only.is_empty() || only.split([' ', ',']).any(|o| o == *ty))
        .collect()
}
const MARKS: [&str; 5] = ["counter", "demo_state", "demo_hist", "demo_tcp", "demo_tp"];

// ---- reading what dom0 left -------------------------------------------------------------

fn read_text(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok()
}

/// `name=value` lines (the guest's debugfs values, tagged by dom0).
fn guest_values(p: &Path) -> Option<BTreeMap<String, String>> {
    let t = read_text(p)?;
    let m: BTreeMap<String, String> = t
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    (!m.is_empty()).then_some(m)
}

fn json_line(p: &Path) -> Result<Value, String> {
    let t = read_text(p).ok_or_else(|| format!("{} is missing", p.display()))?;
    serde_json::from_str(t.trim()).map_err(|e| {
        let err = read_text(&p.with_extension("err")).unwrap_or_default();
        format!("{}: not JSON ({e}): {t:?} stderr: {err}", p.display())
    })
}

fn json_lines(p: &Path) -> Vec<Value> {
    read_text(p)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// A decoded value by dotted path (`addr.port`), or by index (`3`) into arrays.
fn at<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, k| match v {
        Value::Array(a) => a.get(k.parse::<usize>().ok()?),
        _ => v.get(k),
    })
}

/// A JSON scalar as the guest's `%u`/`%d`/`%s` prints it.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Values printed by a watch's closing summary (stderr).
fn summary_line(err: &str, prefix: &str) -> Option<String> {
    err.lines()
        .find(|l| l.starts_with(prefix))
        .map(|l| l.trim().to_string())
}

fn folded_sum(samples: &[Value]) -> u64 {
    samples
        .iter()
        .filter(|v| v.get("event").is_none())
        .filter_map(|v| v.get("folded")?.as_u64())
        .sum()
}

/// `triggers N` of the helper's debugfs status.
fn status_triggers(p: &Path) -> Option<u64> {
    read_text(p)?
        .lines()
        .find_map(|l| l.strip_prefix("triggers ")?.trim().parse().ok())
}

/// ns per trigger from marks_demo's "N in T ns" line.
fn cost_per_trigger(p: &Path) -> Option<f64> {
    let t = read_text(p)?;
    let w: Vec<&str> = t.split_whitespace().collect();
    let n: f64 = w.first()?.parse().ok()?;
    let ns: f64 = w.get(2)?.parse().ok()?;
    Some(ns / n)
}

/// (a) `vmark list GUEST --json` (list.json) shows marks_demo's five marks, with their
/// types, sizes and flags, and no error rows.
fn check_list(d: &Path, guest: &str, bad: &mut impl FnMut(String)) {
    match json_line(&d.join("list.json")) {
        Ok(Value::Array(rows)) => {
            let expect = [
                ("counter", "u64", 8, true),
                ("demo_state", "struct demo_state", 40, false),
                ("demo_hist", "u32[8]", 32, false),
                ("demo_tcp", "struct tcp_sock", 0, false),
                ("demo_tp", "struct tcp_sock *", 8, false),
            ];
            for (mark, ty, size, trig) in expect {
                let row = rows.iter().find(|r| {
                    r["mark"] == mark && r["module"] == "marks_demo" && r["domain"] == guest
                });
                let Some(row) = row else {
                    bad(format!(
                        "(a) vmark list does not show marks_demo/{mark}: {rows:?}"
                    ));
                    continue;
                };
                if row["type"] != ty {
                    bad(format!("(a) {mark}: type {} (want {ty})", row["type"]));
                }
                if size != 0 && row["size"] != size {
                    bad(format!("(a) {mark}: size {} (want {size})", row["size"]));
                }
                let flags = row["flags"].as_str().unwrap_or("");
                if trig != flags.contains("trigger") {
                    bad(format!("(a) {mark}: flags {flags:?}"));
                }
            }
            let errors: Vec<&Value> = rows.iter().filter(|r| r.get("error").is_some()).collect();
            if !errors.is_empty() {
                bad(format!("(a) vmark list reports errors: {errors:?}"));
            }
        }
        Ok(other) => bad(format!("(a) vmark list --json is no array: {other}")),
        Err(e) => bad(format!("(a) {e}")),
    }
    // The table: a header, then a row per mark naming domain, module, mark and type.
    let table = read_text(&d.join("list.txt")).unwrap_or_default();
    let rows: Vec<&str> = table.lines().collect();
    let header_ok = rows.first().is_some_and(|h| {
        ["DOMAIN", "MODULE", "MARK", "TYPE", "SIZE"]
            .iter()
            .all(|c| h.contains(c))
    });
    for mark in MARKS {
        let row = rows.iter().any(|r| {
            let w: Vec<&str> = r.split_whitespace().collect();
            w.first() == Some(&guest) && w.get(1) == Some(&"marks_demo") && w.get(2) == Some(&mark)
        });
        if !header_ok || !row {
            bad(format!(
                "(a) the vmark list table lacks marks_demo/{mark}:\n{table}"
            ));
            break;
        }
    }
}

/// (b), (c): the host's decode (read-TAG-MARK.json) against the guest's own values
/// (val-TAG.txt) for each of `tags`; returns the guest's counter at each.
fn check_reads(
    d: &Path,
    tags: &[&str],
    bad: &mut impl FnMut(String),
    figures: &mut Vec<String>,
) -> Vec<String> {
    // (b), (c): the host's decode against the guest's own values, before and after bump 5.
    let demo_tcp_gva = read_text(&d.join("status-S0.txt")).and_then(|s| {
        s.lines().find_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w.first() == Some(&"mark") && w.get(2) == Some(&"demo_tcp"))
                .then(|| w.get(6).map(|s| s.to_string()))
                .flatten()
        })
    });
    let mut counters = Vec::new();
    for &tag in tags {
        let what = if tag == "A" { "(b)" } else { "(c)" };
        let Some(vals) = guest_values(&d.join(format!("val-{tag}.txt"))) else {
            bad(format!("{what} the guest's values {tag} are missing"));
            continue;
        };
        let mut reads = BTreeMap::new();
        for m in MARKS {
            match json_line(&d.join(format!("read-{tag}-{m}.json"))) {
                Ok(v) => {
                    if v["consistent"] != true {
                        bad(format!("{what} read {m}: not consistent: {v}"));
                    }
                    reads.insert(m, v["value"].clone());
                }
                Err(e) => bad(format!("{what} vmark read {m}: {e}")),
            }
        }
        let mut compared = 0;
        for (key, want) in &vals {
            let host = if let Some(f) = key.strip_prefix("demo_state.") {
                reads.get("demo_state").and_then(|v| at(v, f))
            } else if let Some(f) = key.strip_prefix("demo_tcp.") {
                reads.get("demo_tcp").and_then(|v| at(v, f))
            } else if let Some(i) = key
                .strip_prefix("demo_hist[")
                .and_then(|r| r.strip_suffix(']'))
            {
                reads.get("demo_hist").and_then(|v| at(v, i))
            } else if key == "counter" {
                reads.get("counter")
            } else {
                continue;
            };
            match host {
                Some(h) if text(h) == *want => compared += 1,
                Some(h) => bad(format!(
                    "{what} {key}: vmark read {} but the guest says {want}",
                    text(h)
                )),
                None => bad(format!("{what} {key}: not in vmark's decode")),
            }
        }
        if compared < 25 {
            bad(format!(
                "{what} only {compared} values compared (want ≥ 25)"
            ));
        }
        // The pointer: the guest says it points at demo_tcp; the helper published where
        // demo_tcp lives.
        if vals.get("demo_tp_is_demo_tcp").map(String::as_str) == Some("1") {
            let tp = reads.get("demo_tp").map(text).unwrap_or_default();
            match &demo_tcp_gva {
                Some(gva) if tp.trim_start_matches("0x") == gva.trim_start_matches("0x") => {
                    compared += 1
                }
                Some(gva) => bad(format!(
                    "{what} demo_tp reads {tp}, but demo_tcp is at {gva}"
                )),
                None => bad(format!("{what} demo_tcp's address missing from status S0")),
            }
        }
        counters.push(vals.get("counter").cloned().unwrap_or_default());
        figures.push(format!("{what} {compared} values equal to the guest's"));
    }
    counters
}

/// Checks of one guest; pushes failures, returns measured figures for the report.
fn check_guest(out: &Path, guest: &str, fail: &mut Vec<String>) -> Vec<String> {
    let d = out.join(guest);
    let mut figures = Vec::new();
    let mut bad = |m: String| fail.push(format!("[{guest}] {m}"));
    if !d.join("domid").is_file() {
        let why = read_text(&d.join("xl-create.txt")).unwrap_or_default();
        bad(format!(
            "the guest never came up (xl create said: {}); see {}/diagnosis.txt, console.log and {}/xentrace-exits.txt, whose last HVM exits are:\n      {}",
            why.trim(),
            d.display(),
            out.display(),
            read_text(&out.join("xentrace-exits.txt"))
                .map(|t| {
                    let l: Vec<&str> = t.lines().filter(|l| !l.starts_with("event")).collect();
                    l[l.len().saturating_sub(14)..].join("\n      ")
                })
                .unwrap_or_else(|| "(no trace)".into())
        ));
        return figures;
    }

    check_list(&d, guest, &mut bad);
    let counters = check_reads(&d, &["A", "B"], &mut bad, &mut figures);
    if counters.len() == 2 {
        let (a, b) = (
            counters[0].parse::<u64>().unwrap_or(0),
            counters[1].parse::<u64>().unwrap_or(0),
        );
        if b != a + 5 {
            bad(format!("(c) counter went {a} -> {b} after bump 5"));
        }
    }

    // (d), (e): one watch across the bursts, the rmmod and the insmod.
    let w1 = json_lines(&d.join("watch1.jsonl"));
    let w1err = read_text(&d.join("watch1.err")).unwrap_or_default();
    let withdrawn = w1.iter().position(|v| v["event"] == "withdrawn");
    let back = w1.iter().position(|v| v["event"] == "back");
    let before = &w1[..withdrawn.unwrap_or(w1.len())];
    let n_before = folded_sum(before);
    let helper_d = status_triggers(&d.join("status-S1.txt"))
        .zip(status_triggers(&d.join("status-S0.txt")))
        .map(|(b, a)| b.saturating_sub(a));
    if w1.is_empty() {
        bad(format!(
            "(d) watch1 recorded nothing; its stderr: {}",
            w1err.trim()
        ));
    } else {
        if n_before != 50 {
            bad(format!(
                "(d) 50 triggers fired; the samples' folded counts add up to {n_before}"
            ));
        }
        if helper_d != Some(50) {
            bad(format!(
                "(d) the helper counted {helper_d:?} triggers between status S0 and S1 (want 50)"
            ));
        }
        let samples = before.iter().filter(|v| v.get("event").is_none()).count();
        if samples == 0 || samples > 50 {
            bad(format!("(d) {samples} samples for 50 triggers"));
        }
        for v in before.iter().filter(|v| v.get("event").is_none()) {
            if v["cause"] != "trigger" || v["consistent"] != true {
                bad(format!("(d) odd sample: {v}"));
            }
        }
        figures.push(format!(
            "(d) 50 triggers → {samples} samples, folded sum {n_before}, helper counted {helper_d:?}"
        ));
    }
    match (withdrawn, back) {
        (Some(w), Some(b)) if w < b => {
            let after = folded_sum(&w1[b..]);
            if after != 7 {
                bad(format!(
                    "(e) 7 triggers after the re-insmod; folded counts add up to {after}"
                ));
            }
        }
        _ => bad(format!(
            "(e) watch1 should report withdrawn then back; events: {:?}",
            w1.iter().filter_map(|v| v.get("event")).collect::<Vec<_>>()
        )),
    }
    if let Some(l) = summary_line(&w1err, "trigger→sample latency") {
        figures.push(format!("watch1 {l}"));
    } else {
        bad(format!("(d) watch1 printed no summary: {}", w1err.trim()));
    }

    // (f): killed and restarted.
    let w2 = json_lines(&d.join("watch2.jsonl"));
    if folded_sum(&w2) != 5 {
        bad(format!(
            "(f) watch2 (killed later) saw {} of the 5 triggers",
            folded_sum(&w2)
        ));
    }
    let w3 = json_lines(&d.join("watch3.jsonl"));
    let w3err = read_text(&d.join("watch3.err")).unwrap_or_default();
    if folded_sum(&w3) != 30 {
        bad(format!(
            "(f) the restarted watch saw {} of the 30 triggers fired after its start (stderr: {})",
            folded_sum(&w3),
            w3err.trim()
        ));
    }
    if let Some(l) = summary_line(&w3err, "trigger→sample latency") {
        figures.push(format!("watch3 {l}"));
    }

    // Costs and the burst of BURST_TRIGGERS under watch4.
    let w4 = json_lines(&d.join("watch4.jsonl"));
    let w4err = read_text(&d.join("watch4.err")).unwrap_or_default();
    let fired = read_text(&d.join("cost-listener.txt"))
        .and_then(|t| t.split_whitespace().next()?.parse::<u64>().ok());
    if fired != Some(BURST_TRIGGERS) {
        bad(format!(
            "the guest did not report firing {BURST_TRIGGERS} triggers under watch4 (it said {fired:?}; commands.log has the timing)"
        ));
    }
    if folded_sum(&w4) != BURST_TRIGGERS {
        bad(format!(
            "{BURST_TRIGGERS} triggers under watch4: folded counts add up to {} (stderr: {})",
            folded_sum(&w4),
            w4err.trim()
        ));
    }
    let notif = summary_line(&w4err, "notifications received").unwrap_or_default();
    if let Some(l) = summary_line(&w4err, "trigger→sample latency") {
        figures.push(format!("watch4 ({BURST_TRIGGERS} triggers, {notif}) {l}"));
    }
    let costs: Vec<String> = [
        ("with a listener", "cost-listener.txt"),
        ("helper, no listener", "cost-nolistener.txt"),
        ("no helper", "cost-nohelper.txt"),
    ]
    .iter()
    .map(|(what, f)| match cost_per_trigger(&d.join(f)) {
        Some(ns) => format!("{what} {ns:.1} ns"),
        None => {
            bad(format!("cost {what}: {f} missing or unreadable"));
            format!("{what} ?")
        }
    })
    .collect();
    figures.push(format!("VMARK_TRIGGER cost per call: {}", costs.join(", ")));

    // The helper loaded after marks_demo finds it.
    match json_line(&d.join("list-end.json")) {
        Ok(Value::Array(rows))
            if rows.iter().filter(|r| r["module"] == "marks_demo").count() == 5 => {}
        other => bad(format!(
            "the helper reloaded after marks_demo should publish its 5 marks again: {other:?}"
        )),
    }

    // dom0-scenario.sh dumps the PV guest here; the PVH one in a run of its own.
    let pv = read_text(&d.join("type")).as_deref().map(str::trim) == Some("pv");
    check_options(&d, pv, &mut bad, &mut figures);
    check_consistency(&d, &mut bad, &mut figures);
    check_introspection(&d, pv, &mut bad);
    if pv {
        figures.extend(check_faults(&d, &mut bad));
    }

    // The guest's kernel stayed healthy.
    let console = read_text(&d.join("console.log")).unwrap_or_default();
    for bad_word in ["BUG:", "Oops", "WARNING:", "Call Trace", "VMARK-FAIL"] {
        if let Some(l) = console.lines().find(|l| l.contains(bad_word)) {
            bad(format!("guest console: {l}"));
        }
    }
    if !console.contains("VMARK-GUEST done") {
        bad("the guest did not finish its scenario (no VMARK-GUEST done)".into());
    }
    figures
}

/// The exit status a script recorded.
fn rc(p: &Path) -> Option<i32> {
    read_text(p)?.trim().parse().ok()
}

/// Every line of a recording is whole JSON and the file ends on a newline.
fn whole_lines(p: &Path) -> Result<Vec<Value>, String> {
    let t = read_text(p).ok_or_else(|| format!("{} is missing", p.display()))?;
    if !t.is_empty() && !t.ends_with('\n') {
        return Err(format!("{} ends on a partial line", p.display()));
    }
    t.lines()
        .map(|l| serde_json::from_str(l).map_err(|e| format!("{}: {e}: {l:?}", p.display())))
        .collect()
}

/// Issue 8's faults on a running watch (dom0-scenario.sh's `faults`).
fn check_faults(d: &Path, bad: &mut impl FnMut(String)) -> Vec<String> {
    let mut figures = Vec::new();
    let err = |f: &str| read_text(&d.join(f)).unwrap_or_default();
    // (g) helper reloaded: 5 triggers before, 7 after; the watch bound again.
    let w5 = json_lines(&d.join("watch5.jsonl"));
    let events: Vec<&str> = w5.iter().filter_map(|v| v["event"].as_str()).collect();
    if !events.contains(&"rebound") {
        bad(format!(
            "(g) the watch did not bind again after the helper reloaded: events {events:?}; stderr {}",
            err("watch5.err").trim()
        ));
    }
    if folded_sum(&w5) != 12 {
        bad(format!(
            "(g) 5 + 7 triggers around a helper reload; folded counts add up to {}",
            folded_sum(&w5)
        ));
    }
    // (h) a tree rewritten in a loop: CPU bounded, refreshes bounded, sampling on.
    let churn = read_text(&d.join("churn-cpu.txt")).unwrap_or_default();
    let word = |k: &str| -> Option<f64> {
        let w: Vec<&str> = churn.split_whitespace().collect();
        w.iter().position(|x| *x == k)?;
        w.get(w.iter().position(|x| *x == k)? + 1)?.parse().ok()
    };
    let writes = read_text(&d.join("churn-6.txt"))
        .and_then(|t| t.split_whitespace().nth(1)?.parse::<u64>().ok());
    match (word("ticks"), word("hz"), word("seconds"), word("samples")) {
        (Some(t), Some(hz), Some(secs), Some(n)) if secs > 0.0 => {
            let cpu = t / hz / secs;
            figures.push(format!(
                "(h) guest rewrote its tree {writes:?} times in {secs:.1} s: watch CPU {:.0} %, {n} samples at 100 ms",
                cpu * 100.0
            ));
            if cpu > 0.5 {
                bad(format!(
                    "(h) the watch used {:.0} % of a CPU while the guest churned",
                    cpu * 100.0
                ));
            }
            if n < secs * 10.0 * 0.5 {
                bad(format!(
                    "(h) sampling starved: {n} samples in {secs:.1} s at 100 ms"
                ));
            }
        }
        _ => bad(format!("(h) no churn figures: {churn:?}")),
    }
    if writes.is_none_or(|w| w < 20) {
        bad(format!(
            "(h) the guest did not churn its tree: {writes:?} writes"
        ));
    }
    let cerr = err("churn.err");
    let refreshes = cerr
        .lines()
        .find_map(|l| l.strip_prefix("xenstore: "))
        .and_then(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            Some((
                w.first()?.parse::<u64>().ok()?,
                w.get(2)?.parse::<u64>().ok()?,
            ))
        });
    match refreshes {
        Some((events, refreshes)) => {
            figures.push(format!(
                "(h) {events} xenstore events → {refreshes} refreshes"
            ));
            // At most 2 a second (WATCH_REFRESH_MIN_INTERVAL_MS) while the guest churned,
            // and a few around it (the watch's start, the last burst).
            let churned = word("seconds").unwrap_or(20.0).ceil() as u64;
            if refreshes > 2 * (churned + 3) + 4 {
                bad(format!("(h) {refreshes} refreshes for {events} events"));
            }
        }
        None => bad(format!(
            "(h) no xenstore line in the summary: {}",
            cerr.trim()
        )),
    }
    // (i) recording onto a full tmpfs.
    let ferr = err("full.err");
    if rc(&d.join("full.rc")) != Some(3) {
        bad(format!(
            "(i) a recording that hit a full disk: exit {:?} (want 3); stderr {}",
            rc(&d.join("full.rc")),
            ferr.trim()
        ));
    }
    if !ferr.contains("No space left on device") || !ferr.contains("last complete line") {
        bad(format!(
            "(i) the full disk is not reported: {}",
            ferr.trim()
        ));
    }
    match whole_lines(&d.join("full-rec.jsonl")) {
        Ok(lines) if !lines.is_empty() => figures.push(format!(
            "(i) full tmpfs: {} whole lines recorded",
            lines.len()
        )),
        Ok(_) => bad("(i) nothing recorded before the disk filled".into()),
        Err(e) => bad(format!("(i) {e}")),
    }
    let shown = json_lines(&d.join("full.out"))
        .iter()
        .filter(|v| v.get("event").is_none())
        .count();
    if shown != 60 {
        bad(format!(
            "(i) the watch should carry on to its 60 samples: {shown}"
        ));
    }
    // (j) SIGTERM while sampling with --pause.
    let perr = err("pause.err");
    if rc(&d.join("pause.rc")) != Some(0) || !perr.contains("stopped by SIGTERM") {
        bad(format!(
            "(j) SIGTERM to a --pause watch: exit {:?}, stderr {}",
            rc(&d.join("pause.rc")),
            perr.trim()
        ));
    }
    let state = read_text(&d.join("pause-xl-list.txt"))
        .and_then(|t| Some(t.lines().nth(1)?.split_whitespace().nth(4)?.to_string()));
    match &state {
        Some(s) if !s.contains('p') => {}
        other => bad(format!(
            "(j) after SIGTERM the guest's xl list state is {other:?} (paused?)"
        )),
    }
    if guest_values(&d.join("val-P.txt")).is_none() {
        bad("(j) the guest did not answer after the --pause watch ended".into());
    }
    let paused = json_lines(&d.join("pause.out"))
        .iter()
        .filter(|v| v.get("paused_ns").is_some())
        .count();
    figures.push(format!(
        "(j) {paused} paused samples, then SIGTERM: guest state {state:?}"
    ));
    // (k) destroyed mid-watch.
    let derr = err("destroy.err");
    if rc(&d.join("destroy.rc")) != Some(2) || !derr.contains("watch ended: the domain is gone") {
        bad(format!(
            "(k) the guest destroyed mid-watch: exit {:?} (want 2), stderr {}",
            rc(&d.join("destroy.rc")),
            derr.trim()
        ));
    }
    match whole_lines(&d.join("destroy-rec.jsonl")) {
        Ok(lines) => {
            let samples = lines.iter().filter(|v| v.get("event").is_none()).count();
            if samples < 5 || lines.last().map(|v| v["event"].clone()) != Some("domain-gone".into())
            {
                bad(format!(
                    "(k) the recording should hold the samples and end with domain-gone: {samples} samples, last {:?}",
                    lines.last()
                ));
            }
        }
        Err(e) => bad(format!("(k) {e}")),
    }
    figures
}

/// `vmark ps` and `vmark modules`, live (`xen:GUEST`) and on the guest's `xl dump-core`,
/// against the guest's own `ps` and `/proc/modules` (taken just before); and a mark read
/// from the dump without xenstore.
/// The median time (ns) between consecutive samples' `t_ns`; 0 with fewer than two.
fn median_spacing_ns(samples: &[Value]) -> u64 {
    let mut gaps: Vec<u64> = samples
        .windows(2)
        .filter_map(|w| {
            Some(
                w[1]["t_ns"]
                    .as_u64()?
                    .saturating_sub(w[0]["t_ns"].as_u64()?),
            )
        })
        .collect();
    gaps.sort_unstable();
    gaps.get(gaps.len() / 2).copied().unwrap_or(0)
}

/// The documented commands and options only a live domain exercises (dom0-scenario.sh
/// `options`): each against the guest's own view (kinfo-K.txt, val-O.txt) or another way
/// to the same bytes.
fn check_options(d: &Path, pv: bool, bad: &mut impl FnMut(String), figures: &mut Vec<String>) {
    let o = d.join("opt");
    let out = |name: &str| std::fs::read(o.join(format!("{name}.out"))).unwrap_or_default();
    let err = |name: &str| read_text(&o.join(format!("{name}.err"))).unwrap_or_default();
    let ok = |name: &str, bad: &mut dyn FnMut(String)| {
        let rc = read_text(&o.join(format!("{name}.rc"))).unwrap_or_default();
        let fine = rc.trim() == "0";
        if !fine {
            bad(format!(
                "(o) vmark {name}: exit {} {}",
                rc.trim(),
                err(name).trim()
            ));
        }
        fine
    };
    let k = guest_values(&d.join("kinfo-K.txt")).unwrap_or_default();
    let v = guest_values(&d.join("val-O.txt")).unwrap_or_default();
    if k.is_empty() || v.is_empty() {
        bad("(o) the guest's kinfo K or values O are missing".into());
        return;
    }
    let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok();
    // A value the guest did not print is empty, and the comparison with it fails.
    let k = |key: &str| k.get(key).map_or("", String::as_str).to_string();
    let v = |key: &str| v.get(key).map_or("", String::as_str).to_string();
    let banner_prefix = format!("Linux version {} ", k("release"));
    // sym: linux_banner where the guest's kallsyms says.
    if ok("sym", bad) {
        let rows: Vec<Value> = serde_json::from_slice(&out("sym")).unwrap_or_default();
        let at = rows
            .iter()
            .find(|r| r["name"] == "linux_banner")
            .and_then(|r| r["addr"].as_str().and_then(hex));
        if at.is_none() || at != hex(&k("banner")) {
            bad(format!(
                "(o) sym linux_banner: {rows:?}, the guest says {}",
                k("banner")
            ));
        }
    }
    // read-va by symbol, symbol+offset, address (hex); read-pa; a process's memory.
    if ok("read-va", bad) && !out("read-va").starts_with(banner_prefix.as_bytes()) {
        bad(format!(
            "(o) read-va linux_banner: {:?}, want {banner_prefix:?}…",
            String::from_utf8_lossy(&out("read-va"))
        ));
    }
    if ok("read-va-off", bad) && out("read-va-off") != b"version" {
        bad(format!(
            "(o) read-va linux_banner+6 7: {:?}",
            out("read-va-off")
        ));
    }
    let want_hex: String = banner_prefix
        .bytes()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect();
    if ok("read-va-hex", bad) && String::from_utf8_lossy(&out("read-va-hex")).trim() != want_hex {
        bad(format!(
            "(o) read-va 0x{} 16 --hex: {:?}",
            k("banner"),
            out("read-va-hex")
        ));
    }
    let addr = read_text(&o.join("read-pa.addr")).unwrap_or_default();
    if ok("read-pa", bad) && out("read-pa") != out("read-va") {
        bad(format!(
            "(o) read-pa at linux_banner's {}address ({}): {:?}",
            if pv { "machine " } else { "physical " },
            addr.trim(),
            String::from_utf8_lossy(&out("read-pa"))
        ));
    }
    if ok("read-va-pid", bad) && out("read-va-pid") != b"\x7fELF" {
        bad(format!(
            "(o) read-va --pid 1 at init's vDSO: {:?}",
            out("read-va-pid")
        ));
    }
    // Marks found in the live domain's memory, without xenstore; --path and --follow.
    if ok("list-src", bad) {
        let rows: Vec<Value> = serde_json::from_slice(&out("list-src")).unwrap_or_default();
        for m in MARKS {
            if !rows
                .iter()
                .any(|r| r["mark"] == *m && r["module"] == "marks_demo")
            {
                bad(format!("(o) list --source xen: lacks {m}: {rows:?}"));
            }
        }
    }
    if ok("read-src-path", bad) {
        let r: Value = serde_json::from_slice(&out("read-src-path")).unwrap_or_default();
        if text(&r["value"]) != v("demo_tp.snd_cwnd") {
            bad(format!(
                "(o) read --source xen: --path demo_tp->snd_cwnd: {r}"
            ));
        }
    }
    if ok("read-src-follow", bad) {
        let r: Value = serde_json::from_slice(&out("read-src-follow")).unwrap_or_default();
        let p = &r["pointees"][0];
        for f in ["snd_cwnd", "bytes_received"] {
            if text(&p["value"][f]) != v(&format!("demo_tcp.{f}")) {
                bad(format!("(o) read --source xen: --follow 1: {f} in {p}"));
            }
        }
    }
    // read's pretty tree; read --pause.
    let pretty = String::from_utf8_lossy(&out("read-pretty")).into_owned();
    if ok("read-pretty", bad)
        && !(pretty.contains("-- marks_demo/demo_state in ")
            && pretty.contains("marks-demo")
            && pretty.contains(&v("demo_state.level")))
    {
        bad(format!("(o) read demo_state (pretty): {pretty}"));
    }
    if ok("read-pause", bad) {
        let r: Value = serde_json::from_slice(&out("read-pause")).unwrap_or_default();
        if text(&r["value"]) != v("counter") || r["paused_ns"].as_u64().unwrap_or(0) == 0 {
            bad(format!("(o) read --pause: {r}"));
        }
    }
    // watch --every: the count asked for, spaced as asked.
    let lines = |name: &str| -> Vec<Value> {
        String::from_utf8_lossy(&out(name))
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    if ok("watch-every", bad) {
        let s = lines("watch-every");
        let median = median_spacing_ns(&s);
        if s.len() != 10 || !(150_000_000..=300_000_000).contains(&median) {
            bad(format!(
                "(o) watch --every 200ms --count 10: {} samples, median spacing {} ms",
                s.len(),
                median / 1_000_000
            ));
        }
        figures.push(format!(
            "(o) watch --every 200ms: median spacing {:.1} ms",
            median as f64 / 1e6
        ));
    }
    // --pause: each sample says how long the guest was paused (at most).
    if ok("watch-pause", bad) {
        let s = lines("watch-pause");
        let mut p: Vec<u64> = s.iter().filter_map(|x| x["paused_ns"].as_u64()).collect();
        p.sort_unstable();
        if s.len() != 10 || p.len() != 10 || p[5] == 0 {
            bad(format!(
                "(o) watch --pause: {} samples, paused_ns {p:?}",
                s.len()
            ));
        }
    }
    // --max-rate 20 over --every 10ms: rounds 50 ms apart at least, on the median.
    if ok("watch-rate", bad) {
        let s = lines("watch-rate");
        let median = median_spacing_ns(&s);
        if s.len() != 10 || median < 45_000_000 {
            bad(format!(
                "(o) watch --max-rate 20: {} samples, median spacing {} ms",
                s.len(),
                median / 1_000_000
            ));
        }
    }
    // --record-limit: the recording stops with a closing line, the watch carries on.
    if ok("watch-limit", bad) {
        let rec = read_text(&o.join("limited.jsonl")).unwrap_or_default();
        let last: Value = rec
            .lines()
            .last()
            .and_then(|l| serde_json::from_str(l).ok())
            .unwrap_or_default();
        if rec.len() > 30 * 1024
            || last["event"] != "recording-stopped"
            || !err("watch-limit").contains("recording")
        {
            bad(format!(
                "(o) watch --record-limit 30K: {} bytes, last line {last}; stderr {}",
                rec.len(),
                err("watch-limit").trim()
            ));
        }
    }
    // A domain by its id.
    if ok("read-id", bad) {
        let r: Value = serde_json::from_slice(&out("read-id")).unwrap_or_default();
        if text(&r["value"]) != v("counter") {
            bad(format!("(o) read DOMID counter: {r}"));
        }
    }
    if ok("watch-duration", bad) {
        let ms: u64 = read_text(&o.join("watch-duration.ms"))
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0);
        let n = lines("watch-duration").len();
        if !(2_000..30_000).contains(&ms)
            || n < 3
            || !err("watch-duration").contains("the requested duration passed")
        {
            bad(format!(
                "(o) watch --duration 2s: {ms} ms, {n} samples; stderr: {}",
                err("watch-duration").trim()
            ));
        }
    }
    // The pretty live view of two marks: a line per sample, each mark named, no JSON.
    if ok("watch-pretty", bad) {
        let t = String::from_utf8_lossy(&out("watch-pretty")).into_owned();
        let l: Vec<&str> = t.lines().collect();
        if l.len() < 2
            || !t.contains("marks_demo/counter")
            || !t.contains("marks_demo/demo_state")
            || l.iter().any(|x| x.starts_with('{'))
        {
            bad(format!("(o) watch counter demo_state (pretty): {t}"));
        }
    }
    // CSV of three marks of three types: each field resolves in its own mark.
    if ok("watch-csv", bad) {
        let t = String::from_utf8_lossy(&out("watch-csv")).into_owned();
        let mut l = t.lines();
        let header = l.next().unwrap_or("");
        let want =
            "t_ns,mark,cause,triggers,folded,consistent,retries,counter,demo_hist[1],level (steps)";
        if header != want {
            bad(format!(
                "(o) watch --format csv header: {header:?}, want {want:?}"
            ));
        }
        let mut seen = BTreeMap::new();
        for row in l {
            let c: Vec<&str> = row.split(',').collect();
            let (mark, cells) = (c.get(1).copied().unwrap_or(""), c.get(7..).unwrap_or(&[]));
            let (col, key) = match mark {
                "marks_demo/counter" => (0, "counter"),
                "marks_demo/demo_hist" => (1, "demo_hist[1]"),
                "marks_demo/demo_state" => (2, "demo_state.level"),
                _ => {
                    bad(format!("(o) csv row of another mark: {row}"));
                    continue;
                }
            };
            let filled: Vec<usize> = (0..cells.len()).filter(|&i| !cells[i].is_empty()).collect();
            if cells.len() != 3 || filled != [col] || cells[col] != v(key) {
                bad(format!(
                    "(o) csv row {row:?}: want only column {col} = {}",
                    v(key)
                ));
            }
            *seen.entry(mark).or_insert(0) += 1;
        }
        if seen.len() != 3 {
            bad(format!("(o) csv rows of {seen:?}, want all three marks"));
        }
    }
    // A real recording plotted: the SVG holds every point, the PNG is one.
    if ok("watch-record", bad) && ok("plot", bad) {
        let n = json_lines(&o.join("rec.jsonl")).len();
        let svg = read_text(&o.join("plot.svg")).unwrap_or_default();
        let points = svg
            .lines()
            .find(|l| l.contains("<polyline") && l.contains("#0000FF"))
            .and_then(|l| l.split("points=\"").nth(1))
            .map_or(0, |p| {
                p.split('"').next().unwrap_or("").split_whitespace().count()
            });
        let png = std::fs::read(o.join("plot.png")).unwrap_or_default();
        if n != 8 || points != 8 || !png.starts_with(b"\x89PNG") || !svg.contains("twice (n)") {
            bad(format!("(o) plot of an 8-sample recording ({n} lines): {points} points in the SVG, PNG {} bytes", png.len()));
        }
    }
}

/// (p) Captures of `counter` and `demo_state` while the guest bumps both in one write
/// section: under `--pause` every capture holds the invariant (demo_state.lo - counter =
/// 0x55667788 mod 2^32), each sample says how long the guest was paused, the counter moved
/// during the watch; read one after the other, how often the pair was seen broken is a figure.
fn check_consistency(d: &Path, bad: &mut impl FnMut(String), figures: &mut Vec<String>) {
    let o = d.join("opt");
    let pairs = |name: &str| -> Vec<(Value, Value)> {
        let lines = json_lines(&o.join(format!("{name}.out")));
        lines
            .chunks(2)
            .filter_map(|p| match p {
                [c, s]
                    if c["mark"] == "marks_demo/counter"
                        && s["mark"] == "marks_demo/demo_state" =>
                {
                    Some((c.clone(), s.clone()))
                }
                _ => None,
            })
            .collect()
    };
    let holds = |(c, s): &(Value, Value)| -> bool {
        match (c["value"].as_u64(), s["value"]["lo"].as_u64()) {
            (Some(c), Some(lo)) => lo.wrapping_sub(c) & 0xffff_ffff == 0x5566_7788,
            _ => false,
        }
    };
    for name in ["cons-free", "cons-paused"] {
        let rc = read_text(&o.join(format!("{name}.rc"))).unwrap_or_default();
        if rc.trim() != "0" {
            let err = read_text(&o.join(format!("{name}.err"))).unwrap_or_default();
            bad(format!("(p) {name}: exit {} {}", rc.trim(), err.trim()));
        }
    }
    let paused = pairs("cons-paused");
    let whole = |(c, s): &&(Value, Value)| c["consistent"] == true && s["consistent"] == true;
    // A write still open after every re-pause is reported torn (the guest's vCPU may not
    // have run in between, under emulation): a few of those are allowed, never a whole
    // capture that is broken.
    let torn = paused.iter().filter(|p| !whole(p)).count();
    let broken: Vec<&(Value, Value)> = paused.iter().filter(|p| whole(p) && !holds(p)).collect();
    let same_pause = paused
        .iter()
        .all(|(c, s)| c["paused_ns"].as_u64().is_some() && c["paused_ns"] == s["paused_ns"]);
    let moved = match (paused.first(), paused.last()) {
        (Some(a), Some(b)) => b.0["value"].as_u64() > a.0["value"].as_u64(),
        _ => false,
    };
    if paused.len() != 60 || !broken.is_empty() || torn > 2 || !same_pause || !moved {
        bad(format!(
            "(p) --pause captures: {} pairs, {} broken (first: {:?}), {torn} torn, one pause per capture: {same_pause}, counter moved: {moved}",
            paused.len(),
            broken.len(),
            broken.first()
        ));
    }
    // read --pause of the two marks: one pause, one instant.
    let read = json_lines(&o.join("cons-read.out"));
    let read_ok = match read.as_slice() {
        [c, s] => {
            let pair = (c.clone(), s.clone());
            c["mark"] == "marks_demo/counter"
                && s["mark"] == "marks_demo/demo_state"
                && c["paused_ns"].as_u64().is_some()
                && c["paused_ns"] == s["paused_ns"]
                && (!whole(&&pair) || holds(&pair))
        }
        _ => false,
    };
    if !read_ok || rc(&o.join("cons-read.rc")) != Some(0) {
        bad(format!(
            "(p) read --pause counter demo_state: exit {:?}, {read:?} {}",
            rc(&o.join("cons-read.rc")),
            read_text(&o.join("cons-read.err")).unwrap_or_default()
        ));
    }
    let free = pairs("cons-free");
    let free_broken = free.iter().filter(|p| !holds(p)).count();
    let err = read_text(&o.join("cons-paused.err")).unwrap_or_default();
    figures.push(format!(
        "(p) two marks while the guest bumps: {free_broken} of {} unpaused captures saw the pair broken, 0 of {} under --pause; {}",
        free.len(),
        paused.len(),
        summary_line(&err, "pause per capture").unwrap_or_else(|| "no pause summary".into())
    ));
    if summary_line(&err, "pause per capture").is_none() {
        bad(format!(
            "(p) the --pause watch's summary has no pause figures: {err}"
        ));
    }
}

/// The guest's own `ps` as the harness grabbed it (`ps-TAG.txt`: its lines, then an
/// `END ps=PID` note).
fn guest_ps(path: &Path) -> Result<GuestPs, String> {
    let text = read_text(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with("END ")).collect();
    let note = text
        .lines()
        .find_map(|l| l.strip_prefix("END "))
        .unwrap_or("");
    GuestPs::parse(&lines, note)
}

fn check_introspection(d: &Path, with_dump: bool, bad: &mut impl FnMut(String)) {
    let lines = |f: &str| read_text(&d.join(f)).unwrap_or_default();
    let guest_ps = match guest_ps(&d.join("ps-L.txt")) {
        Ok(g) => Some(g),
        Err(e) => {
            bad(format!("the guest's ps (ps-L.txt): {e}"));
            None
        }
    };
    let mod_text = lines("mod-L.txt");
    let guest_mods = proc_modules(&mod_text.lines().collect::<Vec<_>>());
    for want in ["vmark_helper", "marks_demo"] {
        if !guest_mods.contains(want) {
            bad(format!(
                "the guest's /proc/modules lacks {want}: {guest_mods:?}"
            ));
        }
    }
    let sources: &[&str] = if with_dump {
        &["live", "dump"]
    } else {
        &["live"]
    };
    for &source in sources {
        if let Some(g) = &guest_ps {
            match json_line(&d.join(format!("{source}-ps.json"))) {
                Ok(v) => {
                    if let Err(e) = g.compare(&v) {
                        bad(format!(
                            "vmark ps ({source}) differs from the guest's ps: {e}"
                        ));
                    }
                }
                Err(e) => bad(format!("vmark ps ({source}): {e}")),
            }
        }
        match json_line(&d.join(format!("{source}-modules.json"))) {
            Ok(v) => {
                if let Err(e) = compare_modules(&guest_mods, &v) {
                    bad(format!("vmark modules ({source}): {e}"));
                }
            }
            Err(e) => bad(format!("vmark modules ({source}): {e}")),
        }
    }
    if sources.len() == 1 {
        return;
    }
    let counter = guest_values(&d.join("val-Z.txt")).and_then(|v| v.get("counter").cloned());
    match json_line(&d.join("dump-counter.json")) {
        Ok(v) if v["consistent"] == true && Some(text(&v["value"])) == counter => {}
        other => bad(format!(
            "vmark read --source DUMP counter: {other:?}, the guest says {counter:?}"
        )),
    }
}

/// Seconds in a "... took S s" line of the harness.
fn took_seconds(text: &str, what: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{what} took ")))
        .and_then(|l| l.trim_end_matches(" s").parse().ok())
}

/// `vmark snapshot` of the PVH guest while it bumped its marks: vmark reads the guest's
/// processes and modules (as the guest listed them during the same load) and its marks
/// (the pair that moves together seen together, one instant) from the file; drgn and
/// volatility3 open it and read what vmark reads; the time against `xl dump-core` of the
/// same guest, the pause, the bytes written; `watch --snapshot-dir` wrote its snapshots,
/// each a file vmark reads the mark from. With `peers` (an HVM/PVH guest's snapshot),
/// drgn and volatility3 too. Returns the figures.
fn check_snapshot(d: &Path, peers: bool, bad: &mut impl FnMut(String)) -> String {
    let text = |f: &str| read_text(&d.join(f)).unwrap_or_default();
    if rc(&d.join("snapshot.rc")) != Some(0) {
        bad(format!(
            "vmark snapshot failed (exit {:?}): {}",
            rc(&d.join("snapshot.rc")),
            text("snapshot.err")
        ));
        return "no snapshot".into();
    }
    let report = json_line(&d.join("snapshot.json")).unwrap_or_default();
    let frames_from = match peers {
        true => "the guest's memory map",
        false => "the guest's P2M",
    };
    if report["vmcoreinfo"] != "the guest's" || report["frames_from"] != frames_from {
        bad(format!("vmark snapshot: {report}"));
    }
    // --snapshot-dir: two snapshots (--max-snapshots 2) of the three captures, each
    // announced and each a file vmark reads.
    let events: Vec<Value> = json_lines(&d.join("snapwatch.out"))
        .into_iter()
        .filter(|l| l["event"] == "snapshot")
        .collect();
    let files = text("snapwatch-files.txt");
    let readable = files
        .lines()
        .filter(|l| l.contains("\"consistent\":true"))
        .count();
    if rc(&d.join("snapwatch.rc")) != Some(0) || events.len() != 2 || readable != 2 {
        bad(format!(
            "watch --snapshot-dir --max-snapshots 2: exit {:?}, {} snapshot events, files: {files}{}",
            rc(&d.join("snapwatch.rc")),
            events.len(),
            text("snapwatch.err")
        ));
    }
    match (
        guest_ps(&d.join("ps-S.txt")),
        json_line(&d.join("snap-ps.json")),
    ) {
        (Ok(g), Ok(v)) => {
            if let Err(e) = g.compare(&v) {
                bad(format!(
                    "vmark ps on the snapshot differs from the guest's ps: {e}"
                ));
            }
        }
        (g, v) => bad(format!(
            "the snapshot's ps: guest {:?}, vmark {:?}",
            g.err(),
            v.err()
        )),
    }
    let mods = proc_modules(&text("mod-S.txt").lines().collect::<Vec<_>>());
    match json_line(&d.join("snap-modules.json")) {
        Ok(v) => {
            if let Err(e) = compare_modules(&mods, &v) {
                bad(format!("vmark modules on the snapshot: {e}"));
            }
        }
        Err(e) => bad(format!("vmark modules on the snapshot: {e}")),
    }
    let (c, s) = (
        json_line(&d.join("snap-counter.json")).unwrap_or_default(),
        json_line(&d.join("snap-demo_state.json")).unwrap_or_default(),
    );
    // A write open at the instant of the pause is reported torn; two whole marks that
    // move together must agree.
    let pair = match (c["value"].as_u64(), s["value"]["lo"].as_u64()) {
        (Some(c0), Some(lo)) if c["consistent"] == true && s["consistent"] == true => {
            if lo.wrapping_sub(c0) & 0xffff_ffff != 0x5566_7788 {
                bad(format!(
                    "the snapshot's counter and demo_state disagree: {c} {s}"
                ));
            }
            "the moving pair whole and together"
        }
        _ if c["consistent"] == false || s["consistent"] == false => "a write open at the pause",
        _ => {
            bad(format!("the snapshot's marks: {c} {s}"));
            "no marks"
        }
    };
    let peers = if peers {
        let kver = kernel_release().unwrap_or_else(|e| panic!("{e}"));
        match peers::check_snapshot(&d.join("snapshot.core"), &kver) {
            Ok(line) => line,
            Err(e) => {
                bad(format!("the snapshot in the peers: {e}"));
                String::new()
            }
        }
    } else {
        "read by vmark through its P2M note".to_string()
    };
    let ours = took_seconds(&text("snapshot.txt"), "vmark snapshot");
    let xl = took_seconds(&text("dump-core.txt"), "xl dump-core");
    let ratio = match (ours, xl) {
        // A figure, not a pass mark: a timed assertion would fail with a busy core.
        (Some(o), Some(x)) if o > 0.0 => {
            format!("{:.1}x the speed of xl dump-core ({x:.1} s)", x / o)
        }
        _ => {
            bad(format!("no times: {ours:?} {xl:?}"));
            String::new()
        }
    };
    format!(
        "vmark snapshot {:.1} s, {ratio}, paused {:.0} ms, {} frames ({} zero, not written), {} segments; {pair}; {peers}",
        ours.unwrap_or(0.0),
        report["paused_ms"].as_f64().unwrap_or(-1.0),
        report["frames_present"],
        report["frames_zero"],
        report["segments"],
    )
}

/// What one nested run left: its work directory, its `out/`, the failures of the run
/// itself (timeout, unclean end) and where the logs are.
struct Run {
    w: PathBuf,
    out: PathBuf,
    fail: Vec<String>,
    logs: String,
}

/// Builds vmark, the helper and marks_demo, then boots Xen with guests of `types`
/// (dom0-scenario.sh's TYPE arguments) in `target/e2e/NAME`, under `qemu_timeout`.
fn nested_run(name: &str, types: &[&str], what: &str, qemu_timeout: Duration) -> Run {
    nested_run_with(name, types, what, qemu_timeout, &|_| {})
}

/// [`nested_run`], with `prepare(W)` run once the work directory is fresh (files for
/// dom0 to find there).
fn nested_run_with(
    name: &str,
    types: &[&str],
    what: &str,
    qemu_timeout: Duration,
    prepare: &dyn Fn(&Path),
) -> Run {
    let root = workspace_root();
    if let Err(e) = require_tools() {
        panic!("{e}");
    }
    let kver = kernel_release().unwrap_or_else(|e| panic!("{e}"));
    let kdir = PathBuf::from(format!("/lib/modules/{kver}/build"));
    progress(&format!(
        "kernel {kver}; building vmark, vmark_helper.ko, marks_demo.ko"
    ));
    let vmark = xen_vmark_binary().unwrap_or_else(|e| panic!("{e}"));
    let build = root.join("target/e2e/build");
    let helper = build_helper(&build, &kdir).unwrap_or_else(|e| panic!("{e}"));
    let demo = kmod::make_marked_module(
        &root.join("examples/marks-demo"),
        &build.join("marks-demo"),
        "marks_demo",
        &[],
    )
    .unwrap_or_else(|e| panic!("{e}"));

    let w = root.join("target/e2e").join(name);
    // VMARK_E2E_CHECK_ONLY=1: check what the last run left (for working on the checks).
    let check_only = std::env::var_os("VMARK_E2E_CHECK_ONLY").is_some();
    let attempt = || {
        nested_attempt(
            &w,
            check_only,
            types,
            what,
            qemu_timeout,
            prepare,
            (
                vmark.as_path(),
                helper.as_path(),
                demo.as_path(),
                kver.as_str(),
            ),
        )
    };
    let run = attempt();
    // QEMU's emulated SVM now and then crashes a PVH guest mid-scenario (a triple fault
    // on the instruction after a VMMCALL, seen once in about four runs while vmark paused
    // the domain 50 times a second): not something a read-only observer in dom0 can
    // cause, and the rest of the run is then lost. The run is made again, once, and the
    // crashed one kept beside it.
    let (false, Some(crash)) = (check_only, emulation_crash(&w)) else {
        return run;
    };
    let kept = w.with_file_name(format!("{name}-crashed"));
    let _ = std::fs::remove_dir_all(&kept);
    if let Err(e) = std::fs::rename(&w, &kept) {
        let mut run = run;
        run.fail.push(format!(
            "{crash}; not run again: keeping its logs failed ({e})"
        ));
        return run;
    }
    progress(&format!(
        "{crash}; running the scenario again (the crashed run is in {})",
        kept.display()
    ));
    let mut again = attempt();
    if let Some(crash) = emulation_crash(&again.w) {
        again
            .fail
            .push(format!("the emulated CPU crashed a guest again: {crash}"));
    }
    again
}

/// The Xen line of a guest's triple fault after the scenario saw that guest up and then
/// gone (dom0-scenario.sh's `alive`), if the run in `w` had one.
fn emulation_crash(w: &Path) -> Option<String> {
    let console = std::fs::read(w.join("console.log")).ok()?;
    let console = String::from_utf8_lossy(&console);
    let (gone, was) = console.lines().find_map(|l| {
        let rest = l.strip_prefix("E2E ")?;
        let (_, after) = rest.split_once(": the domain is gone or was restarted (domain ")?;
        let (was, _) = after.split_once(" -> ")?;
        Some((l, was.parse::<u32>().ok()?))
    })?;
    let fault = console
        .lines()
        .find(|l| l.contains(&format!(" d{was}v")) && l.contains("Triple fault"))?;
    Some(format!("{} ({})", gone.trim(), fault.trim()))
}

/// One boot of [`nested_run_with`] in `w` (made afresh unless `check_only`), with the
/// binaries built.
fn nested_attempt(
    w: &Path,
    check_only: bool,
    types: &[&str],
    what: &str,
    qemu_timeout: Duration,
    prepare: &dyn Fn(&Path),
    (vmark, helper, demo, kver): (&Path, &Path, &Path, &str),
) -> Run {
    let root = workspace_root();
    let w = w.to_path_buf();
    if !check_only {
        let _ = std::fs::remove_dir_all(&w);
    }
    std::fs::create_dir_all(&w).unwrap();
    if !check_only {
        prepare(&w);
    }
    // One a line: the paths may hold spaces (boot.sh).
    let guest_files = format!("{}\n{}", helper.display(), demo.display());
    let init = root.join("tests/e2e/guest-init.sh");
    let scenario = root.join("tests/e2e/dom0-scenario.sh");
    let kernel = format!("/boot/vmlinuz-{kver}");
    let ramdisk = w.join("guest.cpio.gz");
    let timeout = qemu_timeout.as_secs().to_string();
    progress(&format!(
        "booting Xen, dom0 and {what} under QEMU (logs: {})",
        w.display()
    ));
    let mut args: Vec<&std::ffi::OsStr> = vec![
        w.as_os_str(),
        timeout.as_ref(),
        scenario.as_os_str(),
        vmark.as_os_str(),
        kernel.as_ref(),
        ramdisk.as_os_str(),
    ];
    for ty in types {
        args.push(ty.as_ref());
    }
    let rc = if check_only {
        Ok(0)
    } else {
        boot(
            &args,
            &[
                ("VMARK_GUEST_FILES", guest_files.as_ref()),
                ("VMARK_GUEST_INIT", init.as_os_str()),
                ("VMARK_KVER", kver.as_ref()),
            ],
            qemu_timeout + Duration::from_secs(60),
        )
    };
    let out = w.join("out");
    let logs = format!(
        "logs: {}/console.log (Xen serial + dom0), {}/<guest>/ (guest console, vmark outputs)",
        w.display(),
        out.display()
    );
    let mut fail = Vec::new();
    match rc {
        Err(e) => fail.push(e),
        Ok(124) => fail.push(format!(
            "QEMU was killed after {} s (timeout)",
            qemu_timeout.as_secs()
        )),
        Ok(0) => {}
        Ok(c) => fail.push(format!(
            "the dom0 scenario did not finish cleanly (boot.sh exit {c})"
        )),
    }
    // What a dead PVH guest did: its exits from the trace dom0 took.
    let trace = out.join("xentrace.bin");
    if trace.is_file() {
        if let Ok(o) = Command::new(root.join("tests/e2e/xentrace-exits.py"))
            .arg(&trace)
            .args(["--last", "400"])
            .output()
        {
            let _ = std::fs::write(out.join("xentrace-exits.txt"), &o.stdout);
        }
    }
    Run { w, out, fail, logs }
}

#[test]
fn e2e_nested_xen() {
    let t0 = Instant::now();
    let guests = guests();
    let types: Vec<&str> = guests.iter().map(|(_, ty)| *ty).collect();
    let Run {
        w,
        out,
        mut fail,
        logs,
    } = nested_run("run", &types, "a PV and a PVH guest", QEMU_TIMEOUT);
    let mut report = Vec::new();
    for &(guest, _) in &guests {
        for f in check_guest(&out, guest, &mut fail) {
            report.push(format!("[{guest}] {f}"));
        }
    }
    let all = json_line(&out.join("list-all.json")).ok();
    for &(guest, _) in &guests {
        let n = all
            .as_ref()
            .and_then(Value::as_array)
            .map(|rows| rows.iter().filter(|r| r["domain"] == guest).count())
            .unwrap_or(0);
        if n != 5 {
            fail.push(format!(
                "[{guest}] (a) `vmark list` (all domains) shows {n} marks for it (want 5)"
            ));
        }
    }
    eprintln!(
        "e2e: figures ({} s in all):\n  {}",
        t0.elapsed().as_secs(),
        report.join("\n  ")
    );
    let _ = std::fs::write(w.join("figures.txt"), report.join("\n") + "\n");
    assert!(
        fail.is_empty(),
        "nested Xen end to end: {} failure(s):\n  {}\n{logs}",
        fail.len(),
        fail.join("\n  ")
    );
}

/// The kernel of the `pv-other` guest: the newest of bookworm-backports (discovered by
/// `tests/fetch-kernels.sh`; 6.12 today), where Debian 12's dom0 runs 6.1.
const OTHER_KERNEL: (&str, &str, &str) = ("bookworm-backports", "amd64", "amd64");

/// Puts dom0-scenario.sh's `pv-other` guest in `W/other/`: the other kernel's image and a
/// ramdisk (busybox, guest-init.sh, and vmark_helper and marks_demo built against that
/// kernel's own headers). Returns its release.
fn prepare_other_kernel(w: &Path) -> String {
    let (suite, arch, flavour) = OTHER_KERNEL;
    let k = matrix::fetch(suite, arch, flavour).unwrap_or_else(|e| panic!("{e}"));
    let kdir = k.kdir();
    let root = workspace_root();
    let build = root.join("target/e2e/build-other");
    let helper = build_helper(&build, &kdir).unwrap_or_else(|e| panic!("{e}"));
    let demo = kmod::make_marked_module_in(
        &kdir,
        &root.join("examples/marks-demo"),
        &build.join("marks-demo"),
        "marks_demo",
        &[],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let other = w.join("other");
    let guest = other.join("root");
    for dir in ["bin", "proc", "sys", "dev"] {
        std::fs::create_dir_all(guest.join(dir)).unwrap();
    }
    let copy = |from: &Path, to: PathBuf| {
        std::fs::copy(from, &to)
            .unwrap_or_else(|e| panic!("{} -> {}: {e}", from.display(), to.display()));
    };
    copy(Path::new("/bin/busybox"), guest.join("bin/busybox"));
    copy(&helper, guest.join("vmark_helper.ko"));
    copy(&demo, guest.join("marks_demo.ko"));
    copy(&root.join("tests/e2e/guest-init.sh"), guest.join("init"));
    copy(
        &k.root.join(format!("boot/vmlinuz-{}", k.release)),
        other.join("vmlinuz"),
    );
    let st = Command::new("sh")
        .arg("-c")
        .arg(r#"cd "$1" && find . | cpio -o -H newc --quiet | gzip -1 > "$2""#)
        .arg("sh")
        .arg(&guest)
        .arg(other.join("guest.cpio.gz"))
        .status()
        .unwrap_or_else(|e| panic!("cpio: {e}"));
    assert!(
        st.success(),
        "building the other kernel's ramdisk failed: {st}"
    );
    std::fs::write(other.join("release"), &k.release).unwrap();
    k.release
}

/// The `pv-other` guest: it runs the other kernel; its marks list and read as the guest
/// sees them; triggers under `watch --on-trigger` add up; `ps` and `modules` live and
/// from its `xl dump-core` equal its own lists; a mark reads from the dump.
fn check_other_kernel(out: &Path, w: &Path, fail: &mut Vec<String>) -> Vec<String> {
    let guest = "vm-pv-other";
    let d = out.join(guest);
    let mut figures = Vec::new();
    let mut bad = |m: String| fail.push(format!("[{guest}] {m}"));
    let release = read_text(&w.join("other/release")).unwrap_or_default();
    if !d.join("domid").is_file() {
        bad(format!(
            "the guest (kernel {release}) never came up; see {}/diagnosis.txt and console.log",
            d.display()
        ));
        return figures;
    }
    let uname = read_text(&d.join("uname-X.txt")).unwrap_or_default();
    if uname.trim() != release.trim() || release.is_empty() {
        bad(format!(
            "the guest runs {:?}, not the other kernel {release:?}",
            uname.trim()
        ));
    }
    figures.push(format!("kernel {}", uname.trim()));
    check_list(&d, guest, &mut bad);
    check_reads(&d, &["A"], &mut bad, &mut figures);
    let helper = status_triggers(&d.join("status-S1.txt"))
        .zip(status_triggers(&d.join("status-S0.txt")))
        .map(|(b, a)| b.saturating_sub(a));
    let folded = folded_sum(&json_lines(&d.join("watch1.jsonl")));
    if helper != Some(30) || folded != 30 {
        bad(format!(
            "watch --on-trigger: the helper counted {helper:?} triggers, the watch folded \
             {folded} (want 30 and 30)"
        ));
    }
    figures.push(format!("watch folded {folded} of 30 triggers"));
    // watch --every --count --format csv --fields with a derived column.
    let csv = read_text(&d.join("csv.txt")).unwrap_or_default();
    let mut lines = csv.lines();
    let header_ok = lines
        .next()
        .is_some_and(|h| h.starts_with("t_ns,mark,") && h.ends_with(",counter,twice (n)"));
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    let derived_ok = rows.iter().all(|r| {
        let n = r.len();
        n >= 2
            && matches!(
                (r[n - 2].parse::<u64>(), r[n - 1].parse::<u64>()),
                (Ok(c), Ok(t)) if c * 2 == t
            )
    });
    if !header_ok || rows.len() != 5 || !derived_ok || rc(&d.join("csv.rc")) != Some(0) {
        bad(format!(
            "watch --every 100ms --count 5 --format csv --fields 'counter,twice=counter*2:n': \
             exit {:?}, output:\n{csv}{}",
            rc(&d.join("csv.rc")),
            read_text(&d.join("csv.err")).unwrap_or_default()
        ));
    }
    check_introspection(&d, true, &mut bad);
    figures
}

/// The guests of the dump-core run: both, or those `VMARK_E2E_DUMP_GUESTS` names
/// (`pv-other`, `pvh-dump`; for working on one, the other's checks then fail).
fn dump_guests() -> Vec<&'static str> {
    let only = std::env::var("VMARK_E2E_DUMP_GUESTS").unwrap_or_default();
    let guests: Vec<&str> = ["pv-other", "pvh-dump"]
        .into_iter()
        .filter(|g| only.is_empty() || only.split([' ', ',']).any(|o| o == *g))
        .collect();
    assert!(
        !guests.is_empty(),
        "VMARK_E2E_DUMP_GUESTS={only:?} names no guest"
    );
    guests
}

/// Issue 5's PVH fixture: an `xl dump-core` of a PVH guest (an HVM-style core file: guest
/// frames listed in `.xen_pfn`), taken while the guest's own `ps` and `/proc/modules`
/// were captured; `vmark ps`, `vmark modules` and a mark read on it must match. A run of
/// its own because libxenguest walks the PVH guest's whole gpfn range below its special
/// pages one mapping call at a time: minutes under TCG.
#[test]
fn e2e_pvh_xl_dump_core() {
    let t0 = Instant::now();
    let Run {
        w,
        out,
        mut fail,
        logs,
    } = nested_run_with(
        // The other kernel's guest first: it is done and powered off before the long PVH
        // dump, which an idle guest beside it would slow down (TCG).
        "pvh-dump",
        &dump_guests(),
        "a PVH guest to dump and a PV guest running another kernel",
        PVH_DUMP_TIMEOUT,
        &|w| {
            let release = prepare_other_kernel(w);
            progress(&format!("the pv-other guest runs {release}"));
        },
    );
    let d = out.join("vm-pvh-dump");
    check_introspection(&d, true, &mut |m| fail.push(format!("[vm-pvh-dump] {m}")));
    let took = read_text(&d.join("dump-core.txt")).unwrap_or_default();
    let snapshot = check_snapshot(&d, true, &mut |m| fail.push(format!("[vm-pvh-dump] {m}")));
    let pv_snapshot = check_snapshot(&out.join("vm-pv-other"), false, &mut |m| {
        fail.push(format!("[vm-pv-other] {m}"))
    });
    let other = check_other_kernel(&out, &w, &mut fail);
    eprintln!(
        "e2e: PVH xl dump-core ({} s in all): {}; PVH: {snapshot}; PV: {pv_snapshot}; other kernel: {}",
        t0.elapsed().as_secs(),
        took.lines().last().unwrap_or("no dump"),
        other.join(", ")
    );
    assert!(
        fail.is_empty(),
        "PVH xl dump-core: {} failure(s):\n  {}\n{logs}",
        fail.len(),
        fail.join("\n  ")
    );
}

#[test]
fn an_emulation_crash_is_a_guest_gone_mid_scenario_after_a_triple_fault() {
    let w = std::env::temp_dir().join(format!("vmark-e2e-crash-{}", std::process::id()));
    std::fs::create_dir_all(&w).unwrap();
    let up = "E2E vm-pvh is up (domain 2)\n";
    let fault = "(XEN) d2v0 Triple fault - invoking HVM shutdown action 1\n";
    let gone =
        "E2E vm-pvh: the domain is gone or was restarted (domain 2 -> 3); its scenario ends here\n";
    let crash = |console: &str| {
        std::fs::write(w.join("console.log"), console).unwrap();
        emulation_crash(&w)
    };
    // A fault at boot that Xen's restart absorbed, a guest gone for another reason, or
    // another domain's fault: the run stands as it is.
    assert_eq!(crash(&format!("{fault}{up}")), None);
    assert_eq!(crash(&format!("{up}{gone}")), None);
    assert_eq!(
        crash(&format!("{up}{}{gone}", fault.replace("d2v0", "d12v0"))),
        None
    );
    let found = crash(&format!("{up}{fault}{gone}")).expect("a crash");
    assert!(
        found.contains("domain 2 -> 3") && found.contains("Triple fault"),
        "{found}"
    );
    let _ = std::fs::remove_dir_all(&w);
}
