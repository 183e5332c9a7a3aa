//! Binary recordings: each recorded mark's manifest once, then every sample's metadata
//! and raw bytes.
//!
//! What `watch --record FILE --record-format binary` writes when decoding every sample to
//! JSON costs too much (microseconds for a `struct tcp_sock`, against a fraction of one to
//! frame its bytes): decoding happens later, by `vmark convert` (the JSON lines `--record`
//! writes) or `vmark plot`, with the manifest the recording carries.
//!
//! ```text
//! header   "VMARKREC" | version u32 (1) | reserved u32
//! frame    kind u8 | payload length u32 | CRC-32 of the payload u32 | payload
//!   kind 1 mark    postcard MarkFrame { id, key, mark, manifest (its wire format) }
//!   kind 2 sample  id u32 | t_ns u64 | cause u8 | triggers u64 | folded u64 | flags u8
//!                  | retries u32 | seq u32 | latency_ns u64 | paused_ns u64 | bytes
//!                  (flags: 1 consistent, 2 latency present, 4 paused present)
//!   kind 3 event   its JSON line
//! ```
//! All little-endian. Crash-safe and appendable: frames are appended whole and carry a
//! checksum; a reader stops at the first frame that is torn or fails its checksum and says
//! so, and a writer reopening the file cuts such a tail off and numbers its marks after
//! those already there. Frames are buffered (at most [`BUFFER_BYTES`]) and written by
//! [`BinaryRecorder::flush`], which the watch calls after each round (an event is written
//! at once): a crash loses at most the round in progress. A recording is a file anyone may hand vmark: every frame is
//! bounded ([`MAX_FRAME`]), every manifest decoded with the bounds of a guest's.

use crate::decode::Plan;
use crate::sample::{Appended, Cause, RecordedSample, RecordingStopped, SampleMeta};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use vmark_proto::Manifest;

/// The first bytes of a binary recording.
pub const MAGIC: &[u8; 8] = b"VMARKREC";
/// The format version this module writes and reads.
pub const VERSION: u32 = 1;
const HEADER_LEN: u64 = 16;
const FRAME_HEADER: usize = 9;
/// Largest frame payload accepted (a manifest with its types, or one sample).
pub const MAX_FRAME: usize = 16 << 20;
/// Frames held before they are written.
pub const BUFFER_BYTES: usize = 256 << 10;
const SAMPLE_FIXED: usize = 4 + 8 + 1 + 8 + 8 + 1 + 4 + 4 + 8 + 8;

/// Manifest bytes a reader decodes at most, in all mark frames (each compiled to a plan).
const MAX_MANIFEST_BYTES: usize = 64 << 20;
/// Longest `module/mark` name a mark frame may give its samples.
const MAX_KEY: usize = 1024;

const KIND_MARK: u8 = 1;
const KIND_SAMPLE: u8 = 2;
const KIND_EVENT: u8 = 3;

/// Why a binary recording could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum BinrecError {
    /// The file could not be opened, read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Not a binary recording, or one of another version.
    #[error("{path}: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// A mark frame: which mark the samples of `id` are, and how to decode them.
#[derive(Debug, Serialize, Deserialize)]
struct MarkFrame {
    id: u32,
    /// `module/mark`, as sample lines name it.
    key: String,
    /// The mark's name in the manifest.
    mark: String,
    /// The module's manifest in its wire format ([`vmark_proto::codec`]).
    manifest: Vec<u8>,
}

fn frame(kind: u8, payload: &[u8], out: &mut Vec<u8>) {
    out.push(kind);
    // Payloads are bounded by MAX_FRAME (< 4 GiB) where they are made.
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

fn header() -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h
}

/// Writes a binary recording (see the module documentation).
pub struct BinaryRecorder {
    file: std::fs::File,
    path: PathBuf,
    /// Bytes of whole frames in the file.
    committed: u64,
    cap: u64,
    buf: Vec<u8>,
    ids: HashMap<(String, Vec<u8>), u32>,
    next_id: u32,
    stopped: Option<RecordingStopped>,
    not_recorded: u64,
    /// Sample frames recorded (written or buffered).
    pub samples: u64,
    /// Of those, the ones still in the buffer.
    buffered_samples: u64,
}

impl BinaryRecorder {
    /// Creates `path`, or appends to the binary recording there (after cutting off a torn
    /// last frame), stopping at `cap` bytes.
    pub fn open_capped(path: &Path, cap: u64) -> Result<BinaryRecorder, BinrecError> {
        let io = |source| BinrecError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let (committed, next_id) = if len == 0 {
            file.write_all(&header()).map_err(io)?;
            (HEADER_LEN, 0)
        } else {
            let scan = scan_existing(&mut file, path)?;
            if scan.whole < len {
                file.set_len(scan.whole).map_err(io)?;
            }
            (scan.whole, scan.next_id)
        };
        Ok(BinaryRecorder {
            file,
            path: path.to_path_buf(),
            committed,
            cap,
            buf: Vec::with_capacity(BUFFER_BYTES),
            ids: HashMap::new(),
            next_id,
            stopped: None,
            not_recorded: 0,
            samples: 0,
            buffered_samples: 0,
        })
    }

    /// Where it writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Why the recording stopped, if it did.
    pub fn stopped(&self) -> Option<&RecordingStopped> {
        self.stopped.as_ref()
    }

    /// Frames produced after the recording stopped.
    pub fn not_recorded(&self) -> u64 {
        self.not_recorded
    }

    /// Bytes in the recording, written and buffered.
    pub fn bytes(&self) -> u64 {
        self.committed + self.buf.len() as u64
    }

    /// Appends a sample of mark `key` (its module's `manifest`, its name `mark` there):
    /// the manifest goes in once per mark and build, before the first sample.
    pub fn sample(
        &mut self,
        key: &str,
        mark: &str,
        manifest: &Manifest,
        meta: &SampleMeta,
        bytes: &[u8],
    ) -> Appended {
        if self.stopped.is_some() {
            self.not_recorded += 1;
            return Appended::Off;
        }
        let id_key = (key.to_string(), manifest.build_id.clone());
        let id = match self.ids.get(&id_key) {
            Some(&id) => id,
            None => {
                let id = self.next_id;
                // A manifest or sample vmark cannot frame is one sample not recorded; the
                // recording goes on.
                let Ok(wire) = vmark_proto::codec::encode(manifest) else {
                    self.not_recorded += 1;
                    return Appended::Off;
                };
                let m = MarkFrame {
                    id,
                    key: key.to_string(),
                    mark: mark.to_string(),
                    manifest: wire,
                };
                let payload = match postcard::to_allocvec(&m) {
                    Ok(p) if p.len() <= MAX_FRAME && key.len() <= MAX_KEY => p,
                    _ => {
                        self.not_recorded += 1;
                        return Appended::Off;
                    }
                };
                if let Some(stop) = self.push(KIND_MARK, &payload) {
                    return stop;
                }
                self.ids.insert(id_key, id);
                self.next_id = id.saturating_add(1);
                id
            }
        };
        if bytes.len() > MAX_FRAME - SAMPLE_FIXED {
            self.not_recorded += 1;
            return Appended::Off;
        }
        let mut payload = Vec::with_capacity(SAMPLE_FIXED + bytes.len());
        encode_sample(id, meta, bytes, &mut payload);
        match self.push(KIND_SAMPLE, &payload) {
            Some(stop) => stop,
            None => {
                self.samples += 1;
                self.buffered_samples += 1;
                Appended::Written
            }
        }
    }

    /// Appends an event line.
    pub fn event(&mut self, line: &str) -> Appended {
        if self.stopped.is_some() {
            self.not_recorded += 1;
            return Appended::Off;
        }
        let payload = &line.as_bytes()[..line.len().min(MAX_FRAME)];
        // Events are rare and may come between rounds (a snapshot, the helper gone): each
        // is written at once, with whatever the round left buffered.
        match self.push(KIND_EVENT, payload) {
            Some(stop) => stop,
            None => self.flush(),
        }
    }

    /// Buffers one frame (writing the buffer first when it would overflow); `Some` when
    /// this stopped the recording.
    fn push(&mut self, kind: u8, payload: &[u8]) -> Option<Appended> {
        let len = (FRAME_HEADER + payload.len()) as u64;
        let reserve = vmark_proto::limits::RECORDING_EVENT_RESERVE;
        if self.bytes().saturating_add(len) > self.cap.saturating_sub(reserve) {
            let closing = crate::sample::event_line(
                "recording-stopped",
                "",
                &format!("the recording reached its limit of {} bytes", self.cap),
            );
            // The closing line only when it fits under the cap (a file reopened near it).
            if self.bytes() + (FRAME_HEADER + closing.len()) as u64 <= self.cap {
                frame(KIND_EVENT, closing.as_bytes(), &mut self.buf);
            }
            let _ = self.flush();
            // A failed flush has said why it stopped; otherwise it is full.
            if self.stopped.is_none() {
                self.stopped = Some(RecordingStopped::Full { cap: self.cap });
                self.not_recorded += 1;
            }
            return Some(Appended::Stopped);
        }
        if self.buf.len() + len as usize > BUFFER_BYTES {
            if let Err(e) = self.write_buffer() {
                return Some(self.fail(e));
            }
        }
        frame(kind, payload, &mut self.buf);
        None
    }

    fn fail(&mut self, error: std::io::Error) -> Appended {
        // The buffered samples are lost with the buffer: not recorded after all.
        self.samples = self.samples.saturating_sub(self.buffered_samples);
        self.not_recorded += self.buffered_samples;
        self.buffered_samples = 0;
        self.buf.clear();
        let truncate_error = self.file.set_len(self.committed).err();
        self.stopped = Some(RecordingStopped::Failed {
            error,
            truncated_to: self.committed,
            truncate_error,
        });
        self.not_recorded += 1;
        Appended::Stopped
    }

    fn write_buffer(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.file.write_all(&self.buf)?;
        self.committed += self.buf.len() as u64;
        self.buf.clear();
        self.buffered_samples = 0;
        Ok(())
    }

    /// Writes what is buffered (after each round, and at the end). A failed write stops
    /// the recording, cut back to its last whole frame.
    pub fn flush(&mut self) -> Appended {
        if self.stopped.is_some() && self.buf.is_empty() {
            return Appended::Off;
        }
        match self.write_buffer() {
            Ok(()) => Appended::Written,
            Err(e) => self.fail(e),
        }
    }
}

impl Drop for BinaryRecorder {
    fn drop(&mut self) {
        let _ = self.write_buffer();
    }
}

/// The form of a recording.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RecordFormat {
    /// JSON lines, each sample decoded ([`crate::sample::Recorder`]).
    #[default]
    Lines,
    /// Manifests once, raw samples after ([`BinaryRecorder`]).
    Binary,
}

/// A watch's recording, in either form.
pub enum Recording {
    /// JSON lines.
    Lines(crate::sample::Recorder),
    /// Binary.
    Binary(BinaryRecorder),
}

impl Recording {
    /// Opens `path` in `format`, capped at `cap` bytes.
    pub fn open(path: &Path, cap: u64, format: RecordFormat) -> std::io::Result<Recording> {
        Ok(match format {
            RecordFormat::Lines if is_binary(path) => {
                return Err(std::io::Error::other(format!(
                    "{} is a binary recording: record to it with --record-format binary",
                    path.display()
                )))
            }
            RecordFormat::Lines => {
                Recording::Lines(crate::sample::Recorder::open_capped(path, cap)?)
            }
            RecordFormat::Binary => Recording::Binary(
                BinaryRecorder::open_capped(path, cap)
                    .map_err(|e| std::io::Error::other(e.to_string()))?,
            ),
        })
    }

    /// Whether samples are recorded as JSON lines (the caller then renders the line).
    pub fn wants_lines(&self) -> bool {
        matches!(self, Recording::Lines(_))
    }

    /// Appends a sample: its JSON `line` for a lines recording (made by the caller only
    /// when [`Self::wants_lines`]), its bytes for a binary one.
    pub fn sample(
        &mut self,
        line: Option<&str>,
        key: &str,
        mark: &str,
        manifest: &Manifest,
        meta: &SampleMeta,
        bytes: &[u8],
    ) -> Appended {
        match self {
            Recording::Lines(r) => r.append(line.unwrap_or_default()),
            Recording::Binary(r) => r.sample(key, mark, manifest, meta, bytes),
        }
    }

    /// Appends an event line.
    pub fn event(&mut self, line: &str) -> Appended {
        match self {
            Recording::Lines(r) => r.append(line),
            Recording::Binary(r) => r.event(line),
        }
    }

    /// Writes what is buffered (binary recordings buffer a round's frames).
    pub fn flush(&mut self) -> Appended {
        match self {
            Recording::Lines(_) => Appended::Written,
            Recording::Binary(r) => r.flush(),
        }
    }

    /// Why the recording stopped, if it did.
    pub fn stopped(&self) -> Option<&RecordingStopped> {
        match self {
            Recording::Lines(r) => r.stopped(),
            Recording::Binary(r) => r.stopped(),
        }
    }

    /// Where it writes.
    pub fn path(&self) -> &Path {
        match self {
            Recording::Lines(r) => r.path(),
            Recording::Binary(r) => r.path(),
        }
    }

    /// What the summary says of it.
    pub fn summary(&self) -> String {
        let path = self.path().display();
        match (self.stopped(), self) {
            (Some(why), Recording::Lines(r)) => format!(
                "{path} stopped early: {why}; {} lines not recorded",
                r.not_recorded()
            ),
            (Some(why), Recording::Binary(r)) => format!(
                "{path} stopped early: {why}; {} frames not recorded",
                r.not_recorded()
            ),
            (None, Recording::Lines(r)) => {
                format!("{path}: {} lines, {} bytes", r.lines, r.bytes())
            }
            (None, Recording::Binary(r)) => format!(
                "{path}: {} samples, {} bytes (binary; vmark convert writes its JSON lines)",
                r.samples,
                r.bytes()
            ),
        }
    }
}

fn encode_sample(id: u32, meta: &SampleMeta, bytes: &[u8], out: &mut Vec<u8>) {
    let cause = match meta.cause {
        Cause::Timer => 0u8,
        Cause::Trigger => 1,
        Cause::Read => 2,
        Cause::Packet => 3,
    };
    let flags = u8::from(meta.consistent)
        | if meta.latency_ns.is_some() { 2 } else { 0 }
        | if meta.paused_ns.is_some() { 4 } else { 0 };
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&meta.t_ns.to_le_bytes());
    out.push(cause);
    out.extend_from_slice(&meta.triggers.to_le_bytes());
    out.extend_from_slice(&meta.folded.to_le_bytes());
    out.push(flags);
    out.extend_from_slice(&meta.retries.to_le_bytes());
    out.extend_from_slice(&meta.seq.to_le_bytes());
    out.extend_from_slice(&meta.latency_ns.unwrap_or(0).to_le_bytes());
    out.extend_from_slice(&meta.paused_ns.unwrap_or(0).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// A sample frame read back: its mark id, metadata (with an empty mark name) and bytes.
fn decode_sample(p: &[u8]) -> Option<(u32, SampleMeta, &[u8])> {
    let (fixed, bytes) = (p.get(..SAMPLE_FIXED)?, p.get(SAMPLE_FIXED..)?);
    let u32_at = |at: usize| u32::from_le_bytes(fixed[at..at + 4].try_into().expect("4"));
    let u64_at = |at: usize| u64::from_le_bytes(fixed[at..at + 8].try_into().expect("8"));
    let cause = match fixed[12] {
        0 => Cause::Timer,
        1 => Cause::Trigger,
        2 => Cause::Read,
        3 => Cause::Packet,
        _ => return None,
    };
    let flags = fixed[29];
    let meta = SampleMeta {
        t_ns: u64_at(4),
        mark: String::new(),
        cause,
        triggers: u64_at(13),
        folded: u64_at(21),
        consistent: flags & 1 != 0,
        retries: u32_at(30),
        seq: u32_at(34),
        latency_ns: (flags & 2 != 0).then(|| u64_at(38)),
        paused_ns: (flags & 4 != 0).then(|| u64_at(46)),
    };
    Some((u32_at(0), meta, bytes))
}

/// Whether `path` starts like a binary recording.
pub fn is_binary(path: &Path) -> bool {
    let mut m = [0u8; 8];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut m))
        .is_ok()
        && &m == MAGIC
}

/// One frame read back.
enum Frame {
    Mark(Vec<u8>),
    Sample(Vec<u8>),
    Event(Vec<u8>),
}

/// Why reading frames stopped early.
#[derive(Debug)]
enum FrameError {
    /// The file ends inside a frame (a crash while writing it): the frames before are
    /// whole, and an appending writer may cut this tail off.
    Torn,
    /// A frame that is whole but wrong (a bad checksum, an unknown kind, an impossible
    /// length): the file was damaged, not cut short; nothing after it is trusted.
    Corrupt(String),
    /// Reading failed.
    Io(std::io::Error),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Torn => write!(f, "a torn frame (the file ends inside it)"),
            FrameError::Corrupt(why) => write!(f, "{why}"),
            FrameError::Io(e) => write!(f, "{e}"),
        }
    }
}

/// Reads frames in order from after the header; stops at the end or at the first torn or
/// corrupt frame (`Err` with its offset and why; `at` stays at that frame's start).
struct Frames<R> {
    r: R,
    at: u64,
}

impl<R: Read> Frames<R> {
    fn next_frame(&mut self) -> Option<Result<Frame, (u64, FrameError)>> {
        let start = self.at;
        let mut h = [0u8; FRAME_HEADER];
        match read_full(&mut self.r, &mut h) {
            Ok(0) => return None,
            Ok(n) if n < FRAME_HEADER => return Some(Err((start, FrameError::Torn))),
            Ok(_) => {}
            Err(e) => return Some(Err((start, FrameError::Io(e)))),
        }
        let corrupt = |why: String| Some(Err((start, FrameError::Corrupt(why))));
        if !matches!(h[0], KIND_MARK | KIND_SAMPLE | KIND_EVENT) {
            // Zeros (a crash's preallocated tail) are caught here too: kind 0 is none.
            return corrupt(format!("a frame of unknown kind {}", h[0]));
        }
        let len = u32::from_le_bytes(h[1..5].try_into().expect("4")) as usize;
        let crc = u32::from_le_bytes(h[5..9].try_into().expect("4"));
        if len > MAX_FRAME {
            return corrupt(format!("a frame of {len} bytes (most: {MAX_FRAME})"));
        }
        let mut payload = vec![0u8; len];
        match read_full(&mut self.r, &mut payload) {
            Ok(n) if n == len => {}
            Ok(_) => return Some(Err((start, FrameError::Torn))),
            Err(e) => return Some(Err((start, FrameError::Io(e)))),
        }
        if crc32fast::hash(&payload) != crc {
            return corrupt("a frame whose checksum fails".into());
        }
        self.at += (FRAME_HEADER + len) as u64;
        Some(Ok(match h[0] {
            KIND_MARK => Frame::Mark(payload),
            KIND_SAMPLE => Frame::Sample(payload),
            _ => Frame::Event(payload),
        }))
    }
}

/// Reads until `buf` is full or the input ends; the count read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn open_frames(path: &Path) -> Result<Frames<std::io::BufReader<std::fs::File>>, BinrecError> {
    let io = |source| BinrecError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::File::open(path).map_err(io)?;
    check_header(&mut f, path)?;
    Ok(Frames {
        r: std::io::BufReader::with_capacity(1 << 20, f),
        at: HEADER_LEN,
    })
}

fn check_header(f: &mut std::fs::File, path: &Path) -> Result<(), BinrecError> {
    let mut h = [0u8; HEADER_LEN as usize];
    let bad = |reason: &str| BinrecError::Format {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    if read_full(f, &mut h).map_err(|source| BinrecError::Io {
        path: path.to_path_buf(),
        source,
    })? < h.len()
        || &h[..8] != MAGIC
    {
        return Err(bad("not a vmark binary recording"));
    }
    let version = u32::from_le_bytes(h[8..12].try_into().expect("4"));
    if version != VERSION {
        return Err(bad(&format!(
            "a binary recording of format {version}; this vmark reads {VERSION}"
        )));
    }
    Ok(())
}

struct Existing {
    /// Length up to the last whole frame.
    whole: u64,
    next_id: u32,
}

fn scan_existing(file: &mut std::fs::File, path: &Path) -> Result<Existing, BinrecError> {
    let io = |source| BinrecError::Io {
        path: path.to_path_buf(),
        source,
    };
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    check_header(file, path)?;
    let mut frames = Frames {
        r: std::io::BufReader::new(&mut *file),
        at: HEADER_LEN,
    };
    let mut next_id = 0u32;
    loop {
        match frames.next_frame() {
            None | Some(Err((_, FrameError::Torn))) => break,
            Some(Err((_, FrameError::Io(e)))) => return Err(io(e)),
            Some(Err((at, FrameError::Corrupt(_)))) if zeros_from(frames.r.get_mut(), at) => {
                // Only zeros from there (a crash's preallocated tail): cut off like a torn
                // frame.
                break;
            }
            Some(Err((at, FrameError::Corrupt(why)))) => {
                return Err(BinrecError::Format {
                    path: path.to_path_buf(),
                    reason: format!(
                        "damaged at byte {at} ({why}): vmark does not append to it \
                         (vmark convert reads the frames before)"
                    ),
                })
            }
            Some(Ok(Frame::Mark(p))) => {
                if let Ok(m) = postcard::from_bytes::<MarkFrame>(&p) {
                    next_id = next_id.max(m.id.saturating_add(1));
                }
            }
            Some(Ok(_)) => {}
        }
    }
    Ok(Existing {
        whole: frames.at,
        next_id,
    })
}

/// Whether everything in `file` from `at` is zero bytes (read in pieces; false on error).
fn zeros_from(file: &mut std::fs::File, at: u64) -> bool {
    if file.seek(SeekFrom::Start(at)).is_err() {
        return false;
    }
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match file.read(&mut buf) {
            Ok(0) => return true,
            Ok(n) if buf[..n].iter().all(|&b| b == 0) => {}
            Ok(_) => return false,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}

/// A recorded mark, ready to decode its samples.
struct RecordedMark {
    key: String,
    plan: Plan,
}

fn recorded_mark(payload: &[u8]) -> Result<(u32, RecordedMark), String> {
    let m: MarkFrame = postcard::from_bytes(payload).map_err(|e| e.to_string())?;
    let manifest = vmark_proto::codec::decode(&m.manifest).map_err(|e| e.to_string())?;
    let mark = manifest
        .mark(&m.mark)
        .ok_or_else(|| format!("its manifest has no mark {:?}", m.mark))?;
    // Every sample line carries this name: a frame cannot make each carry megabytes.
    if m.key.len() > MAX_KEY {
        return Err(format!(
            "mark frame {} has a name of {} bytes",
            m.id,
            m.key.len()
        ));
    }
    let plan = Plan::compile(&manifest.types, mark.ty).map_err(|e| e.to_string())?;
    Ok((m.id, RecordedMark { key: m.key, plan }))
}

/// What [`convert`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Converted {
    /// Sample lines written.
    pub samples: u64,
    /// Event lines written.
    pub events: u64,
    /// Frames that could not be decoded (an unknown mark, a bad manifest, a size that is
    /// not the type's), skipped.
    pub skipped: u64,
    /// Where reading stopped early, and why (a torn or corrupt tail).
    pub stopped: Option<String>,
}

/// Decodes a binary recording to the JSON lines `watch --record` writes, one per frame,
/// calling `line` with each.
pub fn for_each_line(
    path: &Path,
    line: &mut dyn FnMut(&str) -> std::io::Result<()>,
) -> Result<Converted, BinrecError> {
    let mut frames = open_frames(path)?;
    let mut marks: HashMap<u32, RecordedMark> = HashMap::new();
    let mut manifest_bytes = 0usize;
    let mut out = Converted::default();
    let mut json = Vec::new();
    let io = |source| BinrecError::Io {
        path: path.to_path_buf(),
        source,
    };
    while let Some(f) = frames.next_frame() {
        match f {
            Err((at, why)) => {
                out.stopped = Some(format!("at byte {at}: {why}"));
                break;
            }
            // Past the cap of marks or of manifest bytes: skipped unread.
            Ok(Frame::Mark(p))
                if marks.len() >= vmark_proto::limits::BINREC_MAX_MARKS
                    || manifest_bytes.saturating_add(p.len()) > MAX_MANIFEST_BYTES =>
            {
                out.skipped += 1;
            }
            Ok(Frame::Mark(p)) => {
                manifest_bytes += p.len();
                match recorded_mark(&p) {
                    Ok((id, m)) => {
                        marks.insert(id, m);
                    }
                    Err(_) => out.skipped += 1,
                }
            }
            Ok(Frame::Sample(p)) => {
                let Some((id, mut meta, bytes)) = decode_sample(&p) else {
                    out.skipped += 1;
                    continue;
                };
                let Some(m) = marks
                    .get(&id)
                    .filter(|m| m.plan.size() == bytes.len() as u64)
                else {
                    out.skipped += 1;
                    continue;
                };
                meta.mark = m.key.clone();
                json.clear();
                m.plan.write_json(bytes, &mut json);
                line(&meta.to_json_line(&String::from_utf8_lossy(&json))).map_err(io)?;
                out.samples += 1;
            }
            Ok(Frame::Event(p)) => {
                // Re-serialised: whatever the file holds comes out as escaped JSON.
                match serde_json::from_slice::<serde_json::Value>(&p) {
                    Ok(v) if v.get("event").is_some() => {
                        line(&v.to_string()).map_err(io)?;
                        out.events += 1;
                    }
                    _ => out.skipped += 1,
                }
            }
        }
    }
    Ok(out)
}

/// Writes a binary recording's JSON lines to `w`.
pub fn convert(path: &Path, w: &mut dyn Write) -> Result<Converted, BinrecError> {
    for_each_line(path, &mut |l| writeln!(w, "{l}"))
}

/// A binary recording's samples, as [`crate::sample::read_recording`] returns a JSON one's,
/// and how many frames were skipped or unreadable.
pub fn read_samples(path: &Path) -> Result<(Vec<RecordedSample>, usize), BinrecError> {
    let mut samples = Vec::new();
    let mut bad = 0usize;
    let done = for_each_line(path, &mut |l| {
        match serde_json::from_str::<serde_json::Value>(l) {
            Ok(v) if v.get("event").is_some() => {}
            Ok(v) => match serde_json::from_value::<RecordedSample>(v) {
                Ok(s) => samples.push(s),
                Err(_) => bad += 1,
            },
            Err(_) => bad += 1,
        }
        Ok(())
    })?;
    Ok((
        samples,
        bad + done.skipped as usize + usize::from(done.stopped.is_some()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmark_proto::types::{BaseEncoding, Type, TypeTable};
    use vmark_proto::{MarkFlags, TypeId};

    fn manifest() -> Manifest {
        let mut types = TypeTable::new();
        types.push(Type::Void);
        types.push(Type::Base {
            name: "unsigned int".into(),
            size: 4,
            encoding: BaseEncoding::Unsigned,
        });
        Manifest {
            module: "demo".into(),
            kernel_release: "6.1.0".into(),
            build_id: vec![1, 2, 3],
            pointer_depth: 1,
            marks: vec![vmark_proto::Mark {
                name: "counter".into(),
                symbol: "counter".into(),
                ty: TypeId(1),
                size: 4,
                flags: MarkFlags(0),
            }],
            types,
        }
    }

    fn meta(t_ns: u64, latency: Option<u64>) -> SampleMeta {
        SampleMeta {
            t_ns,
            mark: "demo/counter".into(),
            cause: Cause::Trigger,
            triggers: 7,
            folded: 1,
            consistent: true,
            retries: 0,
            seq: 2,
            latency_ns: latency,
            paused_ns: None,
        }
    }

    fn lines(path: &Path) -> (Vec<String>, Converted) {
        let mut out = Vec::new();
        let c = for_each_line(path, &mut |l| {
            out.push(l.to_string());
            Ok(())
        })
        .unwrap();
        (out, c)
    }

    /// One recording session of `demo/counter` samples (t_ns, value), then closed.
    fn session(path: &Path, m: &Manifest, samples: &[(u64, u32)]) {
        let mut r = BinaryRecorder::open_capped(path, 1 << 20).unwrap();
        for &(t, v) in samples {
            r.sample(
                "demo/counter",
                "counter",
                m,
                &meta(t, None),
                &v.to_le_bytes(),
            );
        }
    }

    fn temp(name: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("vmark-binrec-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&p);
        p
    }

    #[test]
    fn samples_convert_to_the_json_lines_watch_writes_and_appending_keeps_them() {
        let path = temp("roundtrip");
        let m = manifest();
        {
            let mut r = BinaryRecorder::open_capped(&path, 1 << 20).unwrap();
            for i in 0..3u32 {
                let s = meta(1000 + u64::from(i), Some(50));
                assert!(matches!(
                    r.sample("demo/counter", "counter", &m, &s, &(i + 40).to_le_bytes()),
                    Appended::Written
                ));
            }
            r.event(&crate::sample::event_line(
                "helper-gone",
                "demo",
                "unloaded",
            ));
            assert!(matches!(r.flush(), Appended::Written));
        }
        // A second session appends, with its own mark frame.
        {
            let mut r = BinaryRecorder::open_capped(&path, 1 << 20).unwrap();
            let s = meta(2000, None);
            r.sample("demo/counter", "counter", &m, &s, &99u32.to_le_bytes());
        }
        let (out, c) = lines(&path);
        assert_eq!((c.samples, c.events, c.skipped, c.stopped), (4, 1, 0, None));
        let want = meta(1001, Some(50)).to_json_line("41");
        assert_eq!(out[1], want);
        assert!(out[3].contains("\"event\":\"helper-gone\""), "{}", out[3]);
        assert_eq!(out[4], meta(2000, None).to_json_line("99"));
        let (samples, bad) = read_samples(&path).unwrap();
        assert_eq!((samples.len(), bad), (4, 0));
        assert_eq!(samples[3].value, serde_json::json!(99));
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_torn_or_corrupt_tail_is_reported_and_cut_off_on_reopen() {
        let path = temp("torn");
        let m = manifest();
        {
            let mut r = BinaryRecorder::open_capped(&path, 1 << 20).unwrap();
            for i in 0..2u32 {
                r.sample(
                    "demo/counter",
                    "counter",
                    &m,
                    &meta(1, None),
                    &i.to_le_bytes(),
                );
            }
        }
        let whole = std::fs::metadata(&path).unwrap().len();
        // A crash in the middle of a frame: half a sample frame at the end.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(&[KIND_SAMPLE, 60, 0, 0, 0, 1, 2]).unwrap();
        drop(f);
        let (out, c) = lines(&path);
        assert_eq!(out.len(), 2);
        assert!(c.stopped.as_deref().unwrap().contains("torn"), "{c:?}");
        // Reopening cuts the torn frame off, and the next sample is readable.
        session(&path, &m, &[(5, 9)]);
        let (out, c) = lines(&path);
        assert_eq!((out.len(), c.stopped), (3, None));
        assert!(out[2].ends_with("\"value\":9}"), "{}", out[2]);
        // A flipped byte in the second sample frame fails its checksum: reading stops there.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[whole as usize - 1] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let (out, c) = lines(&path);
        assert_eq!(out.len(), 1);
        assert!(c.stopped.as_deref().unwrap().contains("checksum"), "{c:?}");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_zero_filled_tail_is_cut_a_damaged_middle_is_never_appended_to() {
        let path = temp("zeros");
        let m = manifest();
        session(&path, &m, &[(1, 1)]);
        let whole = std::fs::metadata(&path).unwrap().len();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(&[0u8; 4096]).unwrap();
        drop(f);
        session(&path, &m, &[(2, 2)]);
        let (out, c) = lines(&path);
        assert_eq!((out.len(), c.stopped), (2, None), "{out:?}");
        // A bad byte in the first sample frame, with a good frame after it: refused.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[whole as usize - 2] ^= 0x55;
        std::fs::write(&path, &bytes).unwrap();
        let before = std::fs::metadata(&path).unwrap().len();
        let e = BinaryRecorder::open_capped(&path, 1 << 20)
            .err()
            .expect("refused");
        assert!(e.to_string().contains("damaged"), "{e}");
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            before,
            "left as it was"
        );
        // Nor may a JSON-lines recording be appended to it.
        assert!(Recording::open(&path, 1 << 20, RecordFormat::Lines).is_err());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), before);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn the_cap_stops_the_recording_and_other_files_are_refused() {
        let path = temp("cap");
        let m = manifest();
        let mut r = BinaryRecorder::open_capped(&path, 4096).unwrap();
        let mut written = 0;
        for i in 0..10_000u32 {
            match r.sample(
                "demo/counter",
                "counter",
                &m,
                &meta(1, None),
                &i.to_le_bytes(),
            ) {
                Appended::Written => written += 1,
                Appended::Stopped => break,
                Appended::Off => unreachable!("stopped is returned once first"),
            }
        }
        drop(r);
        assert!(std::fs::metadata(&path).unwrap().len() <= 4096);
        let (out, c) = lines(&path);
        assert_eq!(c.samples, written);
        assert!(out.last().unwrap().contains("recording-stopped"));
        std::fs::write(&path, b"{\"t_ns\":1}\n").unwrap();
        assert!(!is_binary(&path));
        assert!(matches!(
            BinaryRecorder::open_capped(&path, 4096),
            Err(BinrecError::Format { .. })
        ));
        std::fs::remove_file(&path).unwrap();
    }
}
