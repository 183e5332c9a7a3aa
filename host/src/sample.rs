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

use crate::decode::{DecodeError, FieldPath, Leaf};
use crate::expr::{FieldExpr, Num};
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
    /// A packet to or from the guest, captured on the host (`--on-packet`).
    Packet,
}

impl Cause {
    /// Its name in recordings, CSV and the pretty view.
    pub fn name(self) -> &'static str {
        match self {
            Cause::Timer => "timer",
            Cause::Trigger => "trigger",
            Cause::Read => "read",
            Cause::Packet => "packet",
        }
    }
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
            self.cause.name(),
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

/// Where a recording's bytes go: a file, or (in tests) a sink that fills up.
pub trait RecordSink: Send {
    /// Appends `buf` (a short write is an error, possibly after part of `buf` landed).
    fn append(&mut self, buf: &[u8]) -> std::io::Result<()>;
    /// Cuts the sink back to `len` bytes (after a failed append).
    fn truncate(&mut self, len: u64) -> std::io::Result<()>;
    /// Current size in bytes.
    fn size(&mut self) -> std::io::Result<u64>;
    /// Whether the last byte is a newline (or the sink is empty).
    fn ends_with_newline(&mut self) -> bool;
}

struct FileSink {
    file: std::fs::File,
    path: std::path::PathBuf,
}

impl RecordSink for FileSink {
    fn append(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.file.write_all(buf)?;
        self.file.flush()
    }
    fn truncate(&mut self, len: u64) -> std::io::Result<()> {
        self.file.set_len(len)
    }
    fn size(&mut self) -> std::io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }
    fn ends_with_newline(&mut self) -> bool {
        ends_with_newline(&self.path)
    }
}

/// Why a recording stopped before the watch did.
#[derive(Debug)]
pub enum RecordingStopped {
    /// The next line would have passed the cap (`--record-limit`).
    Full {
        /// The cap, bytes.
        cap: u64,
    },
    /// A write failed (disk full, I/O error): the file was cut back to its last complete
    /// line.
    Failed {
        /// The write error.
        error: std::io::Error,
        /// Length the file was cut back to.
        truncated_to: u64,
        /// Why cutting back failed, if it did (the file may then end on a partial line,
        /// which readers skip).
        truncate_error: Option<std::io::Error>,
    },
}

impl std::fmt::Display for RecordingStopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecordingStopped::Full { cap } => {
                write!(f, "reached its size limit of {cap} bytes (--record-limit)")
            }
            RecordingStopped::Failed {
                error,
                truncated_to,
                truncate_error: None,
            } => write!(
                f,
                "write failed ({error}); the file ends on its last complete line ({truncated_to} bytes)"
            ),
            RecordingStopped::Failed {
                error,
                truncate_error: Some(t),
                ..
            } => write!(
                f,
                "write failed ({error}) and cutting back the partial line failed too ({t})"
            ),
        }
    }
}

/// What [`Recorder::append`] did with a line.
#[derive(Debug)]
pub enum Appended {
    /// The line is in the recording.
    Written,
    /// This line stopped the recording (it is not in it): report it, once.
    Stopped,
    /// The recording had stopped before; the line is counted as not recorded.
    Off,
}

/// Appends lines to a recording, one write per line, and keeps the file ending on a whole
/// line: a write that fails (disk full) is cut back to the last complete line and stops the
/// recording; so does reaching the cap. Either way the watch goes on and the lines not
/// recorded are counted ([`Recorder::not_recorded`]).
pub struct Recorder {
    sink: Box<dyn RecordSink>,
    path: std::path::PathBuf,
    /// Length of the recording up to its last complete line.
    committed: u64,
    cap: u64,
    stopped: Option<RecordingStopped>,
    not_recorded: u64,
    /// Lines written.
    pub lines: u64,
}

impl Recorder {
    /// Opens (creating or appending) a recording capped at
    /// [`vmark_proto::limits::RECORDING_DEFAULT_MAX_BYTES`].
    pub fn open(path: &std::path::Path) -> std::io::Result<Recorder> {
        Self::open_capped(path, vmark_proto::limits::RECORDING_DEFAULT_MAX_BYTES)
    }

    /// Opens a recording that stops at `cap` bytes.
    pub fn open_capped(path: &std::path::Path, cap: u64) -> std::io::Result<Recorder> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        let sink = FileSink {
            file,
            path: path.to_path_buf(),
        };
        Self::with_sink(Box::new(sink), path, cap)
    }

    /// A recording into any sink (tests: a disk that fills up).
    pub fn with_sink(
        mut sink: Box<dyn RecordSink>,
        path: &std::path::Path,
        cap: u64,
    ) -> std::io::Result<Recorder> {
        let mut committed = sink.size()?;
        // A partial last line left by an earlier crash is terminated so the next line
        // stays whole (readers skip the broken one).
        if committed > 0 && !sink.ends_with_newline() {
            sink.append(b"\n")?;
            committed += 1;
        }
        Ok(Recorder {
            sink,
            path: path.to_path_buf(),
            committed,
            cap,
            stopped: None,
            not_recorded: 0,
            lines: 0,
        })
    }

    /// Where it writes.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Why the recording stopped, if it did.
    pub fn stopped(&self) -> Option<&RecordingStopped> {
        self.stopped.as_ref()
    }

    /// Lines the watch produced after the recording stopped.
    pub fn not_recorded(&self) -> u64 {
        self.not_recorded
    }

    /// Bytes in the recording (complete lines).
    pub fn bytes(&self) -> u64 {
        self.committed
    }

    /// Appends one line. Never fails: a failure stops the recording (see [`Appended`]).
    pub fn append(&mut self, line: &str) -> Appended {
        if self.stopped.is_some() {
            self.not_recorded += 1;
            return Appended::Off;
        }
        let len = line.len() as u64 + 1;
        let reserve = vmark_proto::limits::RECORDING_EVENT_RESERVE;
        if self.committed.saturating_add(len) > self.cap.saturating_sub(reserve) {
            let closing = event_line(
                "recording-stopped",
                "",
                &format!("the recording reached its limit of {} bytes", self.cap),
            );
            if self.committed + (closing.len() as u64) < self.cap {
                let _ = self.write_line(&closing);
            }
            self.stopped = Some(RecordingStopped::Full { cap: self.cap });
            self.not_recorded += 1;
            return Appended::Stopped;
        }
        match self.write_line(line) {
            Ok(()) => {
                self.lines += 1;
                Appended::Written
            }
            Err(stop) => {
                self.stopped = Some(stop);
                self.not_recorded += 1;
                Appended::Stopped
            }
        }
    }

    fn write_line(&mut self, line: &str) -> Result<(), RecordingStopped> {
        let mut buf = Vec::with_capacity(line.len() + 1);
        buf.extend_from_slice(line.as_bytes());
        buf.push(b'\n');
        match self.sink.append(&buf) {
            Ok(()) => {
                self.committed += buf.len() as u64;
                Ok(())
            }
            Err(error) => {
                let truncate_error = self.sink.truncate(self.committed).err();
                Err(RecordingStopped::Failed {
                    error,
                    truncated_to: self.committed,
                    truncate_error,
                })
            }
        }
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

/// Reads a recording's samples (JSON lines, or a binary recording decoded), skipping
/// event lines and a torn last line. Returns the samples and how many lines (frames) were
/// skipped as unreadable.
pub fn read_recording(path: &std::path::Path) -> std::io::Result<(Vec<RecordedSample>, usize)> {
    if crate::binrec::is_binary(path) {
        return crate::binrec::read_samples(path).map_err(|e| std::io::Error::other(e.to_string()));
    }
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

/// One `--fields` column of a watched mark: a field, or a derived expression over fields
/// ([`crate::expr`]), resolved against the mark's type.
#[derive(Debug, Clone)]
pub struct Column {
    expr: FieldExpr,
    paths: Vec<FieldPath>,
}

impl Column {
    /// Parses `spec` and resolves the fields it reads in type `ty`, the type of the mark
    /// named `mark`. A field path may start with the mark's own name (as `--path` may):
    /// `counter` is the value of a scalar mark `counter`, `demo_hist[3]` an element of an
    /// array mark `demo_hist`.
    pub fn resolve(
        types: &vmark_proto::TypeTable,
        ty: vmark_proto::TypeId,
        mark: &str,
        spec: &str,
    ) -> Result<Column, DecodeError> {
        let expr = FieldExpr::parse(spec)?;
        let paths = expr
            .fields
            .iter()
            .map(|f| {
                FieldPath::resolve(types, ty, f).or_else(|e| {
                    let rest = f
                        .strip_prefix(mark)
                        .filter(|r| r.is_empty() || r.starts_with('.') || r.starts_with('['));
                    match rest {
                        Some(r) => FieldPath::resolve(types, ty, r.trim_start_matches('.'))
                            .map(|p| p.named(f)),
                        None => Err(e),
                    }
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Column { expr, paths })
    }

    /// A column that a mark does not have (watching several marks, a field may belong to
    /// one of them): its header is `spec`'s, its value always empty.
    pub fn absent(spec: &str) -> Result<Column, DecodeError> {
        Ok(Column {
            expr: FieldExpr::parse(spec)?,
            paths: Vec::new(),
        })
    }

    /// Whether this mark lacks the column ([`Column::absent`]).
    pub fn is_absent(&self) -> bool {
        self.paths.len() != self.expr.fields.len()
    }

    /// Its header: the field, or the expression's label and unit.
    pub fn title(&self) -> String {
        self.expr.title()
    }

    /// `label=value unit`, for the pretty live view (`srtt_ms=13.073 ms`).
    pub fn pretty(&self, bytes: &[u8]) -> String {
        let value = self.text(bytes);
        match &self.expr.unit {
            Some(u) if !value.is_empty() => format!("{}={value} {u}", self.expr.label),
            _ => format!("{}={value}", self.expr.label),
        }
    }

    /// Its value in one sample's bytes: a field's leaf as [`leaf_text`] renders it, an
    /// expression's result; empty when a field does not read or the arithmetic fails.
    pub fn text(&self, bytes: &[u8]) -> String {
        if self.is_absent() {
            return String::new();
        }
        if self.expr.as_field().is_some() {
            return leaf_text(self.paths[0].read(bytes));
        }
        let value = self.expr.eval(&|i| match self.paths[i].read(bytes)? {
            Leaf::Int(v) => Some(Num::Int(v)),
            Leaf::UInt(v) => i128::try_from(v).ok().map(Num::Int),
            Leaf::Bool(b) => Some(Num::Int(i128::from(b))),
            Leaf::Float(f) => Some(Num::Float(f)),
        });
        match value {
            Ok(Num::Float(f)) if !f.is_finite() => String::new(),
            Ok(v) => v.to_string(),
            Err(_) => String::new(),
        }
    }
}

/// The CSV header for `columns`.
pub fn csv_header(columns: &[Column]) -> String {
    let mut s = String::from("t_ns,mark,cause,triggers,folded,consistent,retries");
    for c in columns {
        s.push(',');
        s.push_str(&csv_text(&c.title()));
    }
    s
}

/// A guest-supplied name as one CSV cell: escaped for the terminal
/// ([`vmark_proto::text::escape`]) and quoted when it holds a comma or a quote.
pub fn csv_text(s: &str) -> String {
    let e = vmark_proto::text::escape(s);
    if e.contains([',', '"']) {
        format!("\"{}\"", e.replace('"', "\"\""))
    } else {
        e.into_owned()
    }
}

/// One CSV row.
pub fn csv_row(meta: &SampleMeta, columns: &[Column], bytes: &[u8]) -> String {
    let mut s = format!(
        "{},{},{},{},{},{},{}",
        meta.t_ns,
        csv_text(&meta.mark),
        meta.cause.name(),
        meta.triggers,
        meta.folded,
        meta.consistent,
        meta.retries
    );
    for c in columns {
        s.push(',');
        s.push_str(&c.text(bytes));
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

/// Latencies in bounded memory: a log-linear histogram (16 sub-buckets per power of two,
/// [`vmark_proto::limits::LATENCY_SUB_BUCKETS`]), so percentiles are within 6.25 % of the
/// exact value whatever the number of samples: a guest that notifies in a loop costs the
/// host a counter increment per sample, not a kept value.
#[derive(Debug, Clone)]
pub struct LatencyHistogram {
    counts: Vec<u64>,
    n: u64,
    max: u64,
}

const SUB_BITS: u32 = vmark_proto::limits::LATENCY_SUB_BUCKETS.trailing_zeros();
const SUB: u64 = vmark_proto::limits::LATENCY_SUB_BUCKETS as u64;
/// Buckets: the values below SUB one each, then SUB per power of two up to 2^63.
const BUCKETS: usize = (SUB + (64 - SUB_BITS as u64) * SUB) as usize;

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            counts: vec![0; BUCKETS],
            n: 0,
            max: 0,
        }
    }
}

impl LatencyHistogram {
    fn bucket(v: u64) -> usize {
        if v < SUB {
            return v as usize;
        }
        let exp = 63 - v.leading_zeros(); // >= SUB_BITS
        let shift = exp - SUB_BITS;
        let sub = (v >> shift) & (SUB - 1);
        (SUB + u64::from(shift) * SUB + sub) as usize
    }

    /// Middle of a bucket's range: what a percentile in it reports.
    fn value_of(bucket: usize) -> u64 {
        let b = bucket as u64;
        if b < SUB {
            return b;
        }
        let shift = (b - SUB) / SUB;
        let sub = (b - SUB) % SUB;
        let low = (SUB + sub) << shift;
        low + ((1u64 << shift) >> 1)
    }

    /// Counts one latency (ns).
    pub fn record(&mut self, v: u64) {
        if let Some(c) = self.counts.get_mut(Self::bucket(v)) {
            *c += 1;
        }
        self.n += 1;
        self.max = self.max.max(v);
    }

    /// Latencies counted.
    pub fn len(&self) -> u64 {
        self.n
    }

    /// Whether none was counted.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// The `p`-th percentile by nearest rank, within one bucket (6.25 %).
    pub fn percentile(&self, p: f64) -> Option<u64> {
        if self.n == 0 {
            return None;
        }
        let rank = ((p / 100.0) * self.n as f64)
            .ceil()
            .clamp(1.0, self.n as f64) as u64;
        let mut seen = 0;
        for (b, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(Self::value_of(b).min(self.max));
            }
        }
        Some(self.max)
    }
}

/// Counters of a watch run, for its closing summary. Bounded whatever the guest does.
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
    pub latency: LatencyHistogram,
    /// Time the domain was paused per capture (`--pause`; ns).
    pub pauses: LatencyHistogram,
    /// Pauses repeated for a write found open (`--pause`).
    pub repauses: u64,
    /// Round trip of the clock calibration, when the guest's clock could be calibrated
    /// (latencies then run from the guest's trigger); `None`: host wake-up to sample only.
    pub clock_rtt_ns: Option<u64>,
    /// Wake-ups (notifications or ticks) over `--max-rate`, folded into a later round.
    pub rate_limited: u64,
    /// The rate limit in force (rounds per second).
    pub max_rate: u32,
    /// Refreshes of the published tree done / xenstore events that asked for one.
    pub refreshes: u64,
    /// xenstore watch events received.
    pub store_events: u64,
    /// Times the event channel and control page were bound again (helper reloaded).
    pub rebinds: u64,
    /// Times a lost xenstore watch was re-established.
    pub resubscribed: u64,
    /// How the recording ended early, if it did, and the lines it lost.
    pub recording: Option<String>,
    /// Memory snapshots written (`--snapshot-dir`), and the time the domain was paused
    /// for each (ns).
    pub snapshots: LatencyHistogram,
    /// Snapshots that failed.
    pub snapshots_failed: u64,
    /// Interfaces packets were captured on (`--on-packet`).
    pub packet_interfaces: Vec<String>,
    /// Packets the captures read (those the filter passed).
    pub packets_captured: u64,
    /// Packets the watch took (logged, and folded into a round).
    pub packets: u64,
    /// Samples taken on packets.
    pub packet_samples: u64,
    /// Packet-to-sample latencies of packet samples (ns), from the kernel's stamp.
    pub packet_latency: LatencyHistogram,
    /// Packets dropped because the watch's queue was full.
    pub packets_queue_dropped: u64,
    /// Packets the kernel dropped (its capture buffer was full).
    pub packets_kernel_dropped: u64,
    /// How the `--pcap` file went.
    pub pcap: Option<String>,
}

impl RunStats {
    /// A human summary.
    pub fn summary(&self) -> String {
        let us =
            |v: Option<u64>| v.map_or("-".to_string(), |v| format!("{:.1} µs", v as f64 / 1000.0));
        let mut s = format!(
            "notifications received: {}\nsamples: {} on triggers, {} on the timer ({} torn)\nguest triggers accounted for: {}\ntrigger→sample latency: p50 {}, p99 {} (n = {}; {})",
            self.notifications,
            self.trigger_samples,
            self.timer_samples,
            self.torn,
            self.folded_triggers,
            us(self.latency.percentile(50.0)),
            us(self.latency.percentile(99.0)),
            self.latency.len(),
            match self.clock_rtt_ns {
                Some(rtt) => format!("from the guest's trigger, clocks calibrated to ±{}", us(Some(rtt / 2))),
                None => "host wake-up to sample only: guest clock not calibrated".to_string(),
            }
        );
        if !self.pauses.is_empty() {
            s.push_str(&format!(
                "\npause per capture: p50 {}, p99 {}, max {} (n = {}; paused again for a write found open: {})",
                us(self.pauses.percentile(50.0)),
                us(self.pauses.percentile(99.0)),
                us(self.pauses.percentile(100.0)),
                self.pauses.len(),
                self.repauses
            ));
        }
        if !self.packet_interfaces.is_empty() {
            s.push_str(&format!(
                "\npackets: {} captured on {}, {} taken into {} samples (dropped: {} by a full queue, {} by the kernel); packet→sample latency: p50 {}, p99 {} (n = {}; from the kernel's receive stamp)",
                self.packets_captured,
                self.packet_interfaces.join(" "),
                self.packets,
                self.packet_samples,
                self.packets_queue_dropped,
                self.packets_kernel_dropped,
                us(self.packet_latency.percentile(50.0)),
                us(self.packet_latency.percentile(99.0)),
                self.packet_latency.len(),
            ));
        }
        if let Some(p) = &self.pcap {
            s.push_str(&format!("\npcap: {p}"));
        }
        if !self.snapshots.is_empty() || self.snapshots_failed > 0 {
            let ms =
                |v: Option<u64>| v.map_or("-".to_string(), |v| format!("{:.1} ms", v as f64 / 1e6));
            s.push_str(&format!(
                "\nsnapshots: {} written ({} failed), the domain paused p50 {}, max {} for each",
                self.snapshots.len(),
                self.snapshots_failed,
                ms(self.snapshots.percentile(50.0)),
                ms(self.snapshots.percentile(100.0)),
            ));
        }
        s.push_str(&format!(
            "\nrate limit: {} rounds/s; wake-ups folded into a later round by it: {}",
            self.max_rate, self.rate_limited
        ));
        s.push_str(&format!(
            "\nxenstore: {} events, {} refreshes, {} re-bindings of the event channel, {} re-established watches",
            self.store_events, self.refreshes, self.rebinds, self.resubscribed
        ));
        if let Some(r) = &self.recording {
            s.push_str(&format!("\nrecording: {r}"));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_fields_or_derived_expressions() {
        use vmark_proto::{AggregateKind, BaseEncoding, Member, Type, TypeTable};
        let mut t = TypeTable::new();
        t.push(Type::Void);
        let u32t = t.push(Type::Base {
            name: "unsigned int".into(),
            size: 4,
            encoding: BaseEncoding::Unsigned,
        });
        let m = |name: &str, offset| Member {
            name: Some(name.into()),
            ty: u32t,
            offset,
            bitfield: None,
        };
        let tp = t.push(Type::Aggregate {
            kind: AggregateKind::Struct,
            name: Some("tp".into()),
            size: 8,
            members: vec![m("srtt_us", 0), m("snd_una", 4)],
        });
        let bytes = [12000u32.to_le_bytes(), 100u32.to_le_bytes()].concat();
        let plain = Column::resolve(&t, tp, "tp", "srtt_us").unwrap();
        assert_eq!(
            (plain.title(), plain.text(&bytes)),
            ("srtt_us".into(), "12000".into())
        );
        let rtt = Column::resolve(&t, tp, "tp", "srtt_ms=(srtt_us>>3)/1000:ms").unwrap();
        assert_eq!(
            (rtt.title(), rtt.text(&bytes)),
            ("srtt_ms (ms)".into(), "1.5".into())
        );
        // The mark's own name may start a path.
        let own = Column::resolve(&t, tp, "tp", "tp.snd_una").unwrap();
        assert_eq!(own.text(&bytes), "100");
        // Division by zero in one sample: an empty cell, not an error for the watch.
        let zero = Column::resolve(&t, tp, "tp", "srtt_us/(snd_una-100)").unwrap();
        assert_eq!(zero.text(&bytes), "");
        assert!(matches!(
            Column::resolve(&t, tp, "tp", "nope+1"),
            Err(DecodeError::NoSuchField(..))
        ));
        assert!(matches!(
            Column::resolve(&t, tp, "tp", "srtt_us+"),
            Err(DecodeError::BadExpression(_))
        ));
        assert!(csv_header(&[plain, rtt.clone()]).ends_with(",srtt_us,srtt_ms (ms)"));
        // A scalar mark's value is its own name.
        let counter = Column::resolve(&t, u32t, "counter", "twice=counter*2").unwrap();
        assert_eq!(counter.text(&bytes), "24000");
        assert!(Column::resolve(&t, u32t, "counter", "other").is_err());
        assert_eq!(rtt.pretty(&bytes), "srtt_ms=1.5 ms");
        assert_eq!(counter.pretty(&bytes), "twice=24000");
    }

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
        assert!(matches!(
            r.append(&meta().to_json_line("{\"a\":1}")),
            Appended::Written
        ));
        drop(r);
        // A crash mid-write leaves half a line.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"t_ns\":9,\"mark\":")
            .unwrap();
        let mut r = Recorder::open(&path).unwrap();
        r.append(&event_line("withdrawn", "m/x", "module unloaded"));
        r.append(&meta().to_json_line("{\"a\":2}"));
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
    /// A disk that holds `room` more bytes, then fails like a full one (after writing
    /// what fits, as a real short write does).
    struct FullDisk {
        data: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
        room: usize,
    }

    impl RecordSink for FullDisk {
        fn append(&mut self, buf: &[u8]) -> std::io::Result<()> {
            let mut d = self.data.lock().unwrap();
            let fits = buf.len().min(self.room);
            d.extend_from_slice(&buf[..fits]);
            self.room -= fits;
            if fits < buf.len() {
                return Err(std::io::Error::from_raw_os_error(28)); // ENOSPC
            }
            Ok(())
        }
        fn truncate(&mut self, len: u64) -> std::io::Result<()> {
            self.data.lock().unwrap().truncate(len as usize);
            Ok(())
        }
        fn size(&mut self) -> std::io::Result<u64> {
            Ok(self.data.lock().unwrap().len() as u64)
        }
        fn ends_with_newline(&mut self) -> bool {
            self.data.lock().unwrap().last().is_none_or(|&b| b == b'\n')
        }
    }

    #[test]
    fn a_full_disk_leaves_whole_lines_and_stops_the_recording() {
        let data = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let disk = FullDisk {
            data: data.clone(),
            room: 1000,
        };
        let mut r = Recorder::with_sink(Box::new(disk), "full.jsonl".as_ref(), u64::MAX).unwrap();
        let line = meta().to_json_line("{\"a\":1}");
        let mut written = 0;
        let mut stopped = 0;
        for _ in 0..50 {
            match r.append(&line) {
                Appended::Written => written += 1,
                Appended::Stopped => stopped += 1,
                Appended::Off => {}
            }
        }
        assert_eq!(stopped, 1, "the stop is reported once");
        assert_eq!(written, 1000 / (line.len() + 1));
        assert_eq!(r.not_recorded(), 50 - written as u64);
        let bytes = data.lock().unwrap().clone();
        assert!(bytes.ends_with(b"\n"), "the file ends on a complete line");
        assert_eq!(bytes.len(), written * (line.len() + 1));
        for l in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            serde_json::from_slice::<serde_json::Value>(l).unwrap();
        }
        let why = r.stopped().unwrap().to_string();
        assert!(why.contains("last complete line"), "{why}");
    }

    #[test]
    fn a_recording_stops_at_its_cap_with_a_closing_line() {
        let data = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let disk = FullDisk {
            data: data.clone(),
            room: usize::MAX,
        };
        let cap = 8192;
        let mut r = Recorder::with_sink(Box::new(disk), "cap.jsonl".as_ref(), cap).unwrap();
        let line = meta().to_json_line("{\"a\":1}");
        for _ in 0..1000 {
            r.append(&line);
        }
        let bytes = data.lock().unwrap().clone();
        assert!(bytes.len() as u64 <= cap);
        assert!(matches!(r.stopped(), Some(RecordingStopped::Full { .. })));
        let last = bytes[..bytes.len() - 1]
            .rsplit(|&b| b == b'\n')
            .next()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(last).unwrap();
        assert_eq!(v["event"], "recording-stopped");
        assert_eq!(r.lines + r.not_recorded(), 1000);
    }

    #[test]
    fn latency_percentiles_in_bounded_memory() {
        let mut h = LatencyHistogram::default();
        for v in 1..=100_000u64 {
            h.record(v * 1000);
        }
        let within = |got: u64, want: u64| (got as f64 - want as f64).abs() <= want as f64 / 16.0;
        assert!(within(h.percentile(50.0).unwrap(), 50_000_000));
        assert!(within(h.percentile(99.0).unwrap(), 99_000_000));
        assert_eq!(h.len(), 100_000);
        // A million more samples cost no memory.
        let before = h.counts.len();
        for _ in 0..1_000_000 {
            h.record(7);
        }
        assert_eq!(h.counts.len(), before);
        assert_eq!(h.percentile(50.0), Some(7));
        assert_eq!(LatencyHistogram::default().percentile(50.0), None);
        let mut big = LatencyHistogram::default();
        big.record(u64::MAX);
        let top = big.percentile(99.0).unwrap();
        assert!(top >= u64::MAX - u64::MAX / 16, "{top}");
    }

    #[test]
    fn csv_cells_of_guest_names_are_escaped_and_quoted() {
        assert_eq!(csv_text("m/x"), "m/x");
        assert_eq!(csv_text("a,b"), "\"a,b\"");
        assert_eq!(csv_text("e\x1b[2J"), "e\\x1b[2J");
    }
}
