//! Comparing `vmark ps` and `vmark modules` with the guest's own lists, as the guest
//! printed them (`ps -o pid,ppid,comm` and `/proc/modules`). Shared by the QEMU-dump test
//! and the nested-Xen end to end (live domains and `xl dump-core` files).

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// Workqueue workers that may end between the guest's listing and vmark's, and that may
/// appear unlisted (each way).
pub const MAX_GONE_WORKERS: usize = 2;

/// The guest's `ps -o pid,ppid,comm`: pid → (parent, name), without the `ps` process
/// itself (`ps_pid`), which has exited by the time vmark looks.
#[derive(Debug)]
pub struct GuestPs {
    /// pid → (ppid, name as `ps` printed it).
    pub procs: BTreeMap<i64, (i64, String)>,
    /// The pid of the `ps` that listed them.
    pub ps_pid: i64,
}

impl GuestPs {
    /// Parses `ps` lines (header first) and the `ps=<pid>` note printed after them.
    pub fn parse(lines: &[&str], ps_note: &str) -> Result<Self, String> {
        let ps_pid = ps_note
            .trim()
            .strip_prefix("ps=")
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| format!("no ps pid in {ps_note:?}"))?;
        let mut procs = BTreeMap::new();
        for l in lines.iter().skip(1) {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (Some(pid), Some(ppid)) = (
                f.first().and_then(|p| p.parse::<i64>().ok()),
                f.get(1).and_then(|p| p.parse::<i64>().ok()),
            ) else {
                return Err(format!("unreadable ps line {l:?}"));
            };
            if f.len() < 3 {
                return Err(format!("ps line without a name: {l:?}"));
            }
            if pid != ps_pid {
                procs.insert(pid, (ppid, f[2..].join(" ")));
            }
        }
        Ok(GuestPs { procs, ps_pid })
    }

    /// Checks `vmark ps --json` against this list: every process the guest listed is
    /// there with the same parent and name; vmark may add pid 0 (not in /proc) and
    /// processes started after the listing (higher pids), nothing else. A workqueue worker
    /// (`kworker/...`) may have gone in between (the kernel ends idle workers; seen once
    /// under emulation between the listing and an `xl dump-core`), or be there with a
    /// pid below the listing's newest that the listing lacks (seen once: a worker the
    /// kernel was still creating, its pid taken but not yet in /proc, while `ps` read
    /// it): up to [`MAX_GONE_WORKERS`] of them each way, no other process.
    pub fn compare(&self, vmark_ps: &Value) -> Result<(), String> {
        let rows = vmark_ps
            .as_array()
            .ok_or_else(|| format!("vmark ps --json is not an array: {vmark_ps}"))?;
        let mut ours = BTreeMap::new();
        for p in rows {
            let pid = p["pid"]
                .as_i64()
                .ok_or_else(|| format!("row without pid: {p}"))?;
            let name = p["name"]
                .as_str()
                .ok_or_else(|| format!("row without name: {p}"))?;
            ours.insert(pid, (p["ppid"].as_i64().unwrap_or(-1), name.to_string()));
        }
        let mut problems = Vec::new();
        let mut gone_workers = Vec::new();
        for (pid, (ppid, name)) in &self.procs {
            let Some((our_ppid, our_name)) = ours.get(pid) else {
                if name.starts_with("kworker/") {
                    gone_workers.push(format!("pid {pid} ({name})"));
                } else {
                    problems.push(format!("pid {pid} ({name}) missing"));
                }
                continue;
            };
            // /proc shows a workqueue worker as `kworker/0:0-<workqueue>`; its comm is
            // `kworker/0:0`. A rescuer's comm is `kworker/R-<workqueue>` itself (6.12).
            let theirs = match name.split_once('-') {
                Some((comm, _)) if name.starts_with("kworker/") && our_name != name => comm,
                _ => name,
            };
            if our_name != theirs {
                problems.push(format!(
                    "pid {pid}: name {our_name:?}, guest says {theirs:?}"
                ));
            }
            if our_ppid != ppid {
                problems.push(format!("pid {pid}: parent {our_ppid}, guest says {ppid}"));
            }
        }
        let newest = self
            .procs
            .keys()
            .max()
            .copied()
            .unwrap_or(0)
            .max(self.ps_pid);
        let mut new_workers = Vec::new();
        for (pid, (_, name)) in &ours {
            if *pid != 0 && !self.procs.contains_key(pid) && *pid <= newest {
                if name.starts_with("kworker/") {
                    new_workers.push(format!("pid {pid} ({name})"));
                } else {
                    problems.push(format!("pid {pid} ({name}) was not listed by the guest"));
                }
            }
        }
        if new_workers.len() > MAX_GONE_WORKERS {
            problems.push(format!(
                "workers the guest did not list: {}",
                new_workers.join(", ")
            ));
        }
        match ours.get(&0) {
            Some((_, n)) if n == "swapper/0" => {}
            other => problems.push(format!("pid 0 is {other:?}, not swapper/0")),
        }
        if gone_workers.len() > MAX_GONE_WORKERS {
            problems.push(format!("workers missing: {}", gone_workers.join(", ")));
        }
        if self.procs.len() < 10 {
            problems.push(format!(
                "the guest listed only {} processes",
                self.procs.len()
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

/// Module names of `/proc/modules` lines.
pub fn proc_modules(lines: &[&str]) -> BTreeSet<String> {
    lines
        .iter()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// Checks `vmark modules --json` against the guest's `/proc/modules`: the same names.
pub fn compare_modules(guest: &BTreeSet<String>, vmark_modules: &Value) -> Result<(), String> {
    let rows = vmark_modules
        .as_array()
        .ok_or_else(|| format!("vmark modules --json is not an array: {vmark_modules}"))?;
    let ours: BTreeSet<String> = rows
        .iter()
        .filter_map(|m| m["name"].as_str().map(str::to_string))
        .collect();
    if guest.is_empty() {
        return Err("the guest listed no modules".into());
    }
    if &ours == guest {
        Ok(())
    } else {
        Err(format!("vmark lists {ours:?}, the guest {guest:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn guest() -> GuestPs {
        let mut lines = vec!["PID   PPID  COMMAND", "1 0 init", "2 0 kthreadd"];
        let extra: Vec<String> = (3..12)
            .map(|p| format!("{p} 2 kworker/0:{p}-events"))
            .collect();
        lines.extend(extra.iter().map(String::as_str));
        lines.push("40 1 ps");
        GuestPs::parse(&lines, "ps=40").unwrap()
    }

    fn ours(extra: &[(i64, i64, &str)]) -> Value {
        let mut rows = vec![
            json!({"pid": 0, "ppid": 0, "name": "swapper/0"}),
            json!({"pid": 1, "ppid": 0, "name": "init"}),
            json!({"pid": 2, "ppid": 0, "name": "kthreadd"}),
        ];
        for p in 3..12 {
            rows.push(json!({"pid": p, "ppid": 2, "name": format!("kworker/0:{p}")}));
        }
        for (pid, ppid, name) in extra {
            rows.push(json!({"pid": pid, "ppid": ppid, "name": name}));
        }
        Value::Array(rows)
    }

    #[test]
    fn matching_lists_pass_and_later_processes_are_allowed() {
        let g = guest();
        assert_eq!(g.ps_pid, 40);
        assert!(!g.procs.contains_key(&40));
        g.compare(&ours(&[])).unwrap();
        g.compare(&ours(&[(41, 1, "sh")])).unwrap();
    }

    #[test]
    fn differences_are_reported() {
        let g = guest();
        let e = g.compare(&ours(&[(20, 1, "ghost")])).unwrap_err();
        assert!(e.contains("pid 20"), "{e}");
        let mut wrong = ours(&[]);
        wrong[1]["name"] = json!("sh");
        assert!(g.compare(&wrong).unwrap_err().contains("pid 1"));
        let mut missing = ours(&[]);
        missing.as_array_mut().unwrap().remove(2);
        assert!(g.compare(&missing).unwrap_err().contains("missing"));
        // A worker that ended meanwhile is no difference; many are.
        let mut worker_gone = ours(&[]);
        worker_gone.as_array_mut().unwrap().remove(5);
        g.compare(&worker_gone).unwrap();
        let mut workers_gone = ours(&[]);
        workers_gone.as_array_mut().unwrap().drain(5..9);
        assert!(g
            .compare(&workers_gone)
            .unwrap_err()
            .contains("workers missing"));
        assert!(GuestPs::parse(&["PID PPID COMMAND", "x y z"], "ps=3").is_err());
        // A worker the listing lacks, below its newest pid: tolerated, a few at most.
        g.compare(&ours(&[(20, 2, "kworker/0:2")])).unwrap();
        let e = g
            .compare(&ours(&[
                (20, 2, "kworker/0:2"),
                (21, 2, "kworker/0:3"),
                (22, 2, "kworker/u2:3"),
            ]))
            .unwrap_err();
        assert!(e.contains("workers the guest did not list"), "{e}");
    }

    #[test]
    fn modules_compare_by_name() {
        let g = proc_modules(&["a 16384 0 - Live 0x0", "b 4096 1 a, Live 0x0"]);
        compare_modules(&g, &json!([{"name": "a"}, {"name": "b"}])).unwrap();
        assert!(compare_modules(&g, &json!([{"name": "a"}])).is_err());
    }
}
