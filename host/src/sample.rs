//! Samples, their output forms, the recording format, and run statistics.
//!
//! The recording format is JSON lines: one self-contained object per sample, written with a
//! single `write` and flushed, so a crash can at worst leave one partial last line, which
//! readers skip ([`read_recording`]). Files can be appended to across runs. Each line:
//!
//! ```json
//! {"t_ns":1700000000000000000,"mark":"marks_demo/counter","cause":"trigger",
//!  "triggers":12,"folded":3,"consistent":true,"retries":0,"seq":24,
//!  "latency_ns":41000,"value":{...}}
//! ```
//!
//! - `t_ns`: host wall clock (Unix ns) when the sample was taken;
//! - `cause`: `timer`, `trigger` or `read`;
//! - `triggers`: the mark's guest-side trigger counter; `folded`: triggers since the
//!   previous sample of the mark (so a trigger sample that folded N guest triggers says N);
//! - `consistent`/`retries`/`seq`: the write-sequence check (see `reader`);
//! - `latency_ns`: for trigger samples, host wake-up to sample taken;
//! - `value`: the decoded mark (see `decode`).
//!
//! Events that are not samples (a mark withdrawn or back, the domain gone) are lines with
//! an `event` key instead of `value`.

use crate::decode::{FieldPath, Leaf};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, Write};
use std::time::{SystemTime, UNIX_EPOCH};

/// Why a sample was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Cause {
    /// The `--every` timer.
    Timer,
    /// A guest trigger (event channel).
    Trigger,
    /// A one-off read.
    Read,
}

/// One sample's metadata (the value is rendered separately, straight from the bytes).
#[derive(Debug, Clone, PartialEq)]
pub struct SampleMeta {
    /// Host wall clock, Unix ns.
    pub t_ns: u64,
    /// `module/mark`.
    pub mark: String,
    /// Why.
    pub cause: Cause,
    /// Guest trigger counter.
    pub triggers: u64,
    /// Triggers since this mark's previous sample.
    pub folded: u64,
    /// Write-sequence check passed.
    pub consistent: bool,
    /// Retries needed.
    pub retries: u32,
    /// Sequence value.
    pub seq: u32,
    /// Wake-up to sample, for trigger samples.
    pub latency_ns: Option<u64>,
    /// Time the domain was paused for this read (`--pause`).
    pub paused_ns: Option<u64>,
}

/// Host wall clock now, Unix ns.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

impl SampleMeta {
    /// The sample as one JSON line (no newline), with `value_json` as its value.
    pub fn to_json_line(&self, value_json: &str) -> String {
        let mut s = String::with_capacity(value_json.len() + 200);
        s.push_str(&format!(
            "{{\"t_ns\":{},\"mark\":{},\"cause\":\"{}\",\"triggers\":{},\"folded\":{},\"consistent\":{},\"retries\":{},\"seq\":{}",
            self.t_ns,
            serde_json::Value::String(self.mark.clone()),
            match self.cause {
                Cause::Timer => "timer",
                Cause::Trigger => "trigger",
                Cause::Read => "read",
            },
            self.triggers,
            self.folded,
            self.consistent,
            self.retries,
            self.seq
        ));
        if let Some(l) = self.latency_ns {
            s.push_str(&format!(",\"latency_ns\":{l}"));
        }
        if let Some(p) = self.paused_ns {
            s.push_str(&format!(",\"paused_ns\":{p}"));
        }
        s.push_str(",\"value\":");
        s.push_str(value_json);
        s.push('}');
        s
    }
}

/// A Unix-ns host time as `HH:MM:SS.mmm` (UTC), for people reading a live view.
pub fn clock_text(t_ns: u64) -> String {
    let secs = t_ns / 1_000_000_000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        (secs / 3600) % 24,
        (secs / 60) % 60,
        secs % 60,
        (t_ns / 1_000_000) % 1000
    )
}

/// An event line (not a sample).
pub fn event_line(kind: &str, mark: &str, detail: &str) -> String {
    serde_json::json!({"t_ns": now_ns(), "event": kind, "mark": mark, "detail": detail}).to_string()
}

/// Appends lines to a recording, one `write_all` + flush per line.
pub struct Recorder {
    file: std::fs::File,
    path: std::path::PathBuf,
    /// Lines written.
    pub lines: u64,
}

impl Recorder {
    /// Opens (creating or appending) a recording.
    pub fn open(path: &std::path::Path) -> std::io::Result<Recorder> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Recorder {
            file,
            path: path.to_path_buf(),
            lines: 0,
        })
    }

    /// Where it writes.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Appends one line. A partial last line left by an earlier crash is first terminated
    /// so this line stays whole (readers skip the broken one).
    pub fn append(&mut self, line: &str) -> std::io::Result<()> {
        let mut buf = Vec::with_capacity(line.len() + 2);
        if self.lines == 0 {
            if let Ok(meta) = self.file.metadata() {
                if meta.len() > 0 && !ends_with_newline(&self.path) {
                    buf.push(b'\n');
                }
            }
        }
        buf.extend_from_slice(line.as_bytes());
        buf.push(b'\n');
        self.file.write_all(&buf)?;
        self.file.flush()?;
        self.lines += 1;
        Ok(())
    }
}

fn ends_with_newline(path: &std::path::Path) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else {
        return true;
    };
    let mut b = [0u8; 1];
    f.seek(SeekFrom::End(-1)).is_ok() && f.read_exact(&mut b).is_ok() && b[0] == b'\n'
}

/// A recorded sample line, as read back.
#[derive(Debug, Clone, Deserialize)]
pub struct RecordedSample {
    /// Host time, Unix ns.
    pub t_ns: u64,
    /// `module/mark`.
    pub mark: String,
    /// Why.
    pub cause: Cause,
    /// Trigger counter.
    #[serde(default)]
    pub triggers: u64,
    /// Folded triggers.
    #[serde(default)]
    pub folded: u64,
    /// Consistency.
    #[serde(default)]
    pub consistent: bool,
    /// Latency.
    #[serde(default)]
    pub latency_ns: Option<u64>,
    /// The decoded value.
    pub value: serde_json::Value,
}

/// Reads a recording's samples, skipping event lines and a torn last line. Returns the
/// samples and how many lines were skipped as unreadable.
pub fn read_recording(path: &std::path::Path) -> std::io::Result<(Vec<RecordedSample>, usize)> {
    let f = std::io::BufReader::new(std::fs::File::open(path)?);
    let mut out = Vec::new();
    let mut bad = 0;
    for line in f.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<serde_json::Value>(&line) {
            Ok(v) if v.get("event").is_some() => {}
            Ok(v) => match serde_json::from_value::<RecordedSample>(v) {
                Ok(s) => out.push(s),
                Err(_) => bad += 1,
            },
            Err(_) => bad += 1,
        }
    }
    Ok((out, bad))
}

/// Looks up a dotted field path (`a.b`, `arr[2]`) in a decoded JSON value.
pub fn json_field<'a>(value: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    let mut cur = value;
    for seg in path.split('.') {
        let (name, idx) = match seg.find('[') {
            Some(i) => (&seg[..i], Some(&seg[i..])),
            None => (seg, None),
        };
        if !name.is_empty() {
            cur = cur.get(name)?;
        }
        if let Some(mut rest) = idx {
            while let Some(s) = rest.strip_prefix('[') {
                let end = s.find(']')?;
                cur = cur.get(s[..end].parse::<usize>().ok()?)?;
                rest = &s[end + 1..];
            }
        }
    }
    Some(cur)
}

/// Renders one leaf for CSV and pretty columns.
pub fn leaf_text(leaf: Option<Leaf>) -> String {
    match leaf {
        Some(Leaf::Int(v)) => v.to_string(),
        Some(Leaf::UInt(v)) => v.to_string(),
        Some(Leaf::Bool(b)) => b.to_string(),
        Some(Leaf::Float(f)) => f.to_string(),
        None => String::new(),
    }
}

/// The CSV header for `fields`.
pub fn csv_header(fields: &[FieldPath]) -> String {
    let mut s = String::from("t_ns,mark,cause,triggers,folded,consistent,retries");
    for f in fields {
        s.push(',');
        s.push_str(&f.path);
    }
    s
}

/// One CSV row.
pub fn csv_row(meta: &SampleMeta, fields: &[FieldPath], bytes: &[u8]) -> String {
    let mut s = format!(
        "{},{},{},{},{},{},{}",
        meta.t_ns,
        meta.mark,
        match meta.cause {
            Cause::Timer => "timer",
            Cause::Trigger => "trigger",
            Cause::Read => "read",
        },
        meta.triggers,
        meta.folded,
        meta.consistent,
        meta.retries
    );
    for f in fields {
        s.push(',');
        s.push_str(&leaf_text(f.read(bytes)));
    }
    s
}

/// Percentiles of a set of latencies (ns), by nearest rank.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Counters of a watch run, for its closing summary.
#[derive(Debug, Default, Clone)]
pub struct RunStats {
    /// Event-channel notifications received.
    pub notifications: u64,
    /// Samples taken, by cause.
    pub timer_samples: u64,
    /// Samples taken on triggers.
    pub trigger_samples: u64,
    /// Samples that stayed torn after retries.
    pub torn: u64,
    /// Guest triggers accounted for (sum of `folded` over trigger-capable marks).
    pub folded_triggers: u64,
    /// Trigger-to-sample latencies of trigger samples (ns).
    pub latencies: Vec<u64>,
    /// Round trip of the clock calibration, when the guest's clock could be calibrated
    /// (latencies then run from the guest's trigger); `None`: host wake-up to sample only.
    pub clock_rtt_ns: Option<u64>,
}

impl RunStats {
    /// A human summary.
    pub fn summary(&mut self) -> String {
        self.latencies.sort_unstable();
        let us =
            |v: Option<u64>| v.map_or("-".to_string(), |v| format!("{:.1} µs", v as f64 / 1000.0));
        format!(
            "notifications received: {}\nsamples: {} on triggers, {} on the timer ({} torn)\nguest triggers accounted for: {}\ntrigger→sample latency: p50 {}, p99 {} (n = {}; {})",
            self.notifications,
            self.trigger_samples,
            self.timer_samples,
            self.torn,
            self.folded_triggers,
            us(percentile(&self.latencies, 50.0)),
            us(percentile(&self.latencies, 99.0)),
            self.latencies.len(),
            match self.clock_rtt_ns {
                Some(rtt) => format!("from the guest's trigger, clocks calibrated to ±{}", us(Some(rtt / 2))),
                None => "host wake-up to sample only: guest clock not calibrated".to_string(),
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_text_is_utc_time_of_day() {
        // 2026-11-23 12:29:29.602 UTC
        assert_eq!(clock_text(1_795_436_969_602_146_938), "12:29:29.602");
        assert_eq!(clock_text(0), "00:00:00.000");
    }

    fn meta() -> SampleMeta {
        SampleMeta {
            t_ns: 5,
            mark: "m/x".into(),
            cause: Cause::Trigger,
            triggers: 4,
            folded: 2,
            consistent: true,
            retries: 0,
            seq: 8,
            latency_ns: Some(100),
            paused_ns: None,
        }
    }

    #[test]
    fn recordings_survive_a_torn_last_line_and_append() {
        let dir = std::env::temp_dir().join(format!("vmark-rec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("r.jsonl");
        let _ = std::fs::remove_file(&path);
        let mut r = Recorder::open(&path).unwrap();
        r.append(&meta().to_json_line("{\"a\":1}")).unwrap();
        drop(r);
        // A crash mid-write leaves half a line.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"t_ns\":9,\"mark\":")
            .unwrap();
        let mut r = Recorder::open(&path).unwrap();
        r.append(&event_line("withdrawn", "m/x", "module unloaded"))
            .unwrap();
        r.append(&meta().to_json_line("{\"a\":2}")).unwrap();
        let (samples, bad) = read_recording(&path).unwrap();
        assert_eq!(samples.len(), 2);
        assert_eq!(bad, 1);
        assert_eq!(samples[1].value["a"], 2);
        assert_eq!(samples[0].folded, 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), Some(50));
        assert_eq!(percentile(&v, 99.0), Some(99));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn json_fields_by_path() {
        let v = serde_json::json!({"a": {"b": [1, {"c": 3}]}});
        assert_eq!(json_field(&v, "a.b[1].c"), Some(&serde_json::json!(3)));
        assert_eq!(json_field(&v, "a.x"), None);
    }
}
