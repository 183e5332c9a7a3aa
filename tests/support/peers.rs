//! The peer tools vmark's snapshots must open in: drgn and volatility3, from PyPI, in the
//! clone's `target/peers` (`tests/install-peers.sh`, which `tests/run` calls). Missing,
//! they fail the test that needs them, naming the script.

use crate::kmod::{vmark, vmark_json, workspace_root};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// An executable of the peers' virtual environment.
pub fn peer_bin(name: &str) -> PathBuf {
    let p = workspace_root().join("target/peers/bin").join(name);
    assert!(
        p.exists(),
        "{} is missing: run tests/install-peers.sh (tests/run does)",
        p.display()
    );
    p
}

fn run(cmd: &mut Command, what: &str) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("{what}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The DWARF of kernel `release` (its vmlinux from Debian's `-dbg` package), which
/// `tests/install-peers.sh` extracts for the kernel the tests' guests run.
pub fn debug_vmlinux(release: &str) -> PathBuf {
    let p = workspace_root()
        .join("target/peers/debug")
        .join(format!("vmlinux-{release}"));
    assert!(
        p.exists(),
        "{} is missing: run tests/install-peers.sh (tests/run does)",
        p.display()
    );
    p
}

/// Checks that drgn and volatility3 open the snapshot `core` of a kernel of `release`,
/// and that what they read is what vmark reads from it: drgn's kernel (from VMCOREINFO),
/// its banner, and its symbols' addresses and bytes through the page tables; with the
/// kernel's DWARF, drgn's process list equal to `vmark ps`'s; the banners volatility3
/// finds by physical offset through its ELF layer. Returns a line of what each found.
pub fn check_snapshot(core: &Path, release: &str) -> Result<String, String> {
    let core_s = core.to_str().ok_or("non-UTF-8 path")?;
    let symbols = ["init_task", "jiffies", "linux_banner"];
    let script = workspace_root().join("tests/peers/drgn_snapshot.py");
    let text = run(
        Command::new(peer_bin("python"))
            .arg(&script)
            .arg("--vmlinux")
            .arg(debug_vmlinux(release))
            .arg(core)
            .args(symbols),
        "drgn",
    )?;
    let drgn: Value = serde_json::from_str(&text).map_err(|e| format!("drgn: {e}: {text}"))?;
    if drgn["linux_kernel"] != true {
        return Err(format!("drgn did not see a Linux kernel: {drgn}"));
    }
    let banner = drgn["banner"].as_str().unwrap_or("");
    if !banner.starts_with(&format!("Linux version {release} ")) {
        return Err(format!("drgn read the banner {banner:?}, not {release}'s"));
    }
    for name in symbols {
        let vmark_addr = vmark_json(&["sym", core_s, name, "--json"])[0]["addr"]
            .as_str()
            .and_then(|a| u64::from_str_radix(a.trim_start_matches("0x"), 16).ok());
        let d = &drgn["symbols"][name];
        if d["address"].as_u64() != vmark_addr {
            return Err(format!(
                "{name}: drgn says {:?}, vmark {vmark_addr:?}",
                d["address"]
            ));
        }
        // jiffies moves while a live guest runs, but not in a snapshot.
        let bytes = vmark(&["read-va", core_s, name, "64", "--hex"]);
        if d["bytes"].as_str() != Some(bytes.trim()) {
            return Err(format!(
                "{name}: drgn read {:?}, vmark {:?}",
                d["bytes"],
                bytes.trim()
            ));
        }
    }
    // Processes: drgn through the DWARF's types, vmark through BTF, from the same file.
    let pairs = |rows: &Value, what: &str| -> Result<Vec<(u64, String)>, String> {
        let mut out: Vec<(u64, String)> = rows
            .as_array()
            .ok_or(format!("{what}: no process list: {rows}"))?
            .iter()
            .filter(|r| r.get("pid").is_some())
            .map(|r| {
                (
                    r["pid"].as_u64().unwrap_or(u64::MAX),
                    r["name"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        out.sort();
        Ok(out)
    };
    let drgn_ps = pairs(&drgn["processes"], "drgn")?;
    let vmark_ps = pairs(&vmark_json(&["ps", core_s, "--json"]), "vmark ps")?;
    if drgn_ps != vmark_ps || drgn_ps.len() < 10 {
        return Err(format!(
            "processes: drgn lists {} {drgn_ps:?}, vmark {} {vmark_ps:?}",
            drgn_ps.len(),
            vmark_ps.len()
        ));
    }
    let vol = run(
        Command::new(peer_bin("vol"))
            .args(["-q", "-r", "json", "-f"])
            .arg(core)
            .arg("banners.Banners"),
        "volatility3 banners",
    )?;
    let rows: Value = serde_json::from_str(&vol).map_err(|e| format!("vol: {e}: {vol}"))?;
    let rows = rows.as_array().cloned().unwrap_or_default();
    let ours: Vec<u64> = rows
        .iter()
        .filter(|r| {
            r["Banner"]
                .as_str()
                .is_some_and(|b| b.starts_with(&format!("Linux version {release} ")))
        })
        .filter_map(|r| r["Offset"].as_u64())
        .collect();
    if ours.is_empty() {
        return Err(format!("volatility3 found no {release} banner: {vol}"));
    }
    // The offsets are physical addresses (volatility3 stacked its ELF layer on the core),
    // not file offsets: vmark reads the banner at each.
    for off in &ours {
        let at = vmark(&["read-pa", core_s, &format!("{off:#x}"), "14", "--raw"]);
        if at != "Linux version " {
            return Err(format!(
                "volatility3's banner offset {off:#x} is not a physical address of it: \
                 vmark reads {at:?} there"
            ));
        }
    }
    Ok(format!(
        "drgn {} read {} symbols and listed {} processes as vmark does; volatility3 found {} \
         banner(s) of {release}",
        drgn["drgn"].as_str().unwrap_or("?"),
        symbols.len(),
        drgn_ps.len(),
        ours.len()
    ))
}
