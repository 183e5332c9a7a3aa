//! The live commands on a running Xen guest: `list`, `read`, `watch`.
//!
//! `watch` runs one tokio task that waits on several sources at once: the `--every` timer,
//! the guest's event channel (`--on-trigger`), a xenstore watch on the guest's vmark tree
//! and one on `@releaseDomain`, and the termination signals. Mappings are made once per
//! mark and reused for every sample; they are dropped when the mark is withdrawn and remade
//! when it returns. What keeps it bounded against a hostile guest:
//!
//! - xenstore events only mark the tree dirty; a refresh runs at most once per
//!   [`limits::WATCH_REFRESH_MIN_INTERVAL_MS`], after [`limits::WATCH_REFRESH_DEBOUNCE_MS`],
//!   on a blocking thread (off the sampling path), and does work only for what changed
//!   ([`Refresher`]);
//! - sampling rounds are rate limited ([`RateLimiter`]); wake-ups over the limit are folded
//!   into a later round and counted;
//! - the helper reloaded (another port, generation back to the start, or our channel no
//!   longer connected) is bound again, the old port and page released ([`binding_after`]);
//! - a lost xenstore watch is re-established with backoff ([`StoreWatch`]);
//! - `--pause` reads hold a [`PauseGuard`]; termination signals are handled from the start,
//!   so the guest is always left running;
//! - the recording caps its size and survives a full disk ([`crate::sample::Recorder`],
//!   [`crate::binrec::BinaryRecorder`]).

use crate::binrec::{RecordFormat, Recording};
use crate::capture;
use crate::frames::FrameMapper;
use crate::guest::{
    self, GuestError, GuestMarks, MarkSpec, MarkUpdate, OpenMark, Refresher, Store,
};
use crate::packet_tap::{PacketTap, TapEvent};
use crate::pcapng::PacketLog;
use crate::reader::ReadInfo;
use crate::sample::{self, Appended, Cause, RunStats, SampleMeta};
use crate::watch::{
    apply_refresh, binding_after, check_fields_resolve, resolve_fields, BackendError, Binding,
    Bound, EndReason, HelperEpoch, Pauser, RateLimiter, Resubscribe, StoreEvent, StoreWatch,
    Subscribe, Watched,
};
use crate::xen::{
    self, ControlPage, DomainMapper, EventChannel, ForeignMemory, XenControl, XenStore,
};
use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::unix::AsyncFd;
use vmark_proto::limits;
use vmark_proto::text::escape;

/// Errors of the live commands.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// From Xen's libraries.
    #[error(transparent)]
    Xen(#[from] xen::XenError),
    /// From the guest's published state.
    #[error(transparent)]
    Guest(#[from] GuestError),
    /// Output or recording.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A field that cannot be read.
    #[error(transparent)]
    Decode(#[from] crate::decode::DecodeError),
    /// Pausing or unpausing the domain failed.
    #[error("--pause: {0}")]
    Pause(BackendError),
    /// Something the user asked for that does not fit.
    #[error("{0}")]
    Usage(String),
    /// Packets cannot be captured (`--on-packet`).
    #[error("--on-packet: {0}")]
    Packets(#[from] crate::packet_tap::TapError),
    /// The packet file cannot be written (`--pcap`).
    #[error("--pcap: {0}")]
    Pcap(#[from] crate::pcapng::PcapError),
}

impl Pauser for XenControl {
    fn pause(&self, domid: u32) -> Result<(), BackendError> {
        XenControl::pause(self, domid).map_err(Into::into)
    }
    fn unpause(&self, domid: u32) -> Result<(), BackendError> {
        XenControl::unpause(self, domid).map_err(Into::into)
    }
}

/// A guest opened for reading.
pub struct LiveGuest {
    /// Domain.
    pub domain: xen::Domain,
    store: XenStore,
    mapper: DomainMapper,
}

impl LiveGuest {
    /// Opens a domain given by name or id.
    pub fn open(spec: &str) -> Result<Self, LiveError> {
        let store = XenStore::open()?;
        let domain = xen::resolve_domain(&store, spec)?;
        let mapper = DomainMapper::new(ForeignMemory::open()?, domain.id);
        Ok(LiveGuest {
            domain,
            store,
            mapper,
        })
    }

    /// Opens every published mark (errors per item).
    pub fn marks(&self) -> Result<GuestMarks, LiveError> {
        Ok(guest::open_all(&self.store, &self.mapper, self.domain.id)?)
    }

    /// The store.
    pub fn store(&self) -> &dyn Store {
        &self.store
    }
}

/// Output form of samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Indented tree per sample.
    Pretty,
    /// One JSON object per line (the recording format).
    Json,
    /// Comma-separated values of `--fields`.
    Csv,
}

/// `vmark list [DOMAIN]`: one domain's bad entries are a row with its error; the other
/// domains are listed.
pub fn list(spec: Option<&str>, json: bool, out: &mut dyn Write) -> Result<(), LiveError> {
    let store = XenStore::open()?;
    let fm = ForeignMemory::open()?;
    let domains: Vec<(u32, String)> = match spec {
        Some(s) => vec![xen::resolve_domain(&store, s)?],
        None => xen::domains(&store)?,
    }
    .into_iter()
    .map(|d| (d.id, d.name))
    .collect();
    let mapper_for =
        |id: u32| -> Box<dyn FrameMapper> { Box::new(DomainMapper::new(fm.clone(), id)) };
    let rows = guest::list_domains(&store, &mapper_for, &domains, spec.is_some());
    guest::write_list(
        rows,
        json,
        "no domain publishes vmark marks (load vmark_helper.ko in the guest)",
        out,
    )?;
    Ok(())
}

/// Samples one mark now (with retries while a write overlaps the copy).
fn take(
    m: &OpenMark,
    buf: &mut Vec<u8>,
    retries: u32,
    cause: Cause,
    last_triggers: &mut BTreeMap<String, u64>,
) -> SampleMeta {
    let info = m.mapped.read(buf, retries);
    sample_meta(m, info, cause, last_triggers, None)
}

/// A sample's metadata from what its read found.
fn sample_meta(
    m: &OpenMark,
    info: ReadInfo,
    cause: Cause,
    last_triggers: &mut BTreeMap<String, u64>,
    paused_ns: Option<u64>,
) -> SampleMeta {
    let key = format!("{}/{}", m.module, m.mark.name);
    let prev = last_triggers.insert(key.clone(), info.triggers);
    SampleMeta {
        t_ns: sample::now_ns(),
        mark: key,
        cause,
        triggers: info.triggers,
        folded: prev.map_or(0, |p| folded_since(p, info.triggers)),
        consistent: info.consistent,
        retries: info.retries,
        seq: info.seq,
        latency_ns: None,
        paused_ns,
    }
}

/// Triggers fired since the counter read `prev`. A counter that went backwards belongs
/// to a new instance of the module (reloaded), whose counter started from 0.
fn folded_since(prev: u64, now: u64) -> u64 {
    if now >= prev {
        now - prev
    } else {
        now
    }
}

/// Records the current trigger counter of `m` as the baseline its next sample's `folded`
/// counts from, so the first sample of a watch (or after a mark comes back) accounts for
/// the triggers fired since, not 0.
fn baseline(m: &OpenMark, retries: u32, last_triggers: &mut BTreeMap<String, u64>) {
    let mut scratch = Vec::new();
    let info = m.mapped.read(&mut scratch, retries);
    last_triggers.insert(format!("{}/{}", m.module, m.mark.name), info.triggers);
}

/// `vmark read DOMAIN MARK...`: with `pause`, every mark in one pause of the domain.
pub fn read(
    spec: &str,
    names: &[String],
    json: bool,
    retries: u32,
    pause: bool,
    out: &mut dyn Write,
) -> Result<(), LiveError> {
    let g = LiveGuest::open(spec)?;
    let marks = g.marks()?;
    let mut found: Vec<&OpenMark> = Vec::with_capacity(names.len());
    for name in names {
        match marks.find(name) {
            Ok(m) => found.push(m),
            Err(e) => {
                // Say why when the mark exists but is unusable.
                if let Some((item, err)) = marks.errors.iter().find(|(k, _)| k.contains(name)) {
                    return Err(LiveError::Usage(format!("{}: {err}", escape(item))));
                }
                return Err(e.into());
            }
        }
    }
    let mut bufs: Vec<Vec<u8>> = vec![Vec::new(); found.len()];
    let metas: Vec<SampleMeta> = if pause {
        let ctl = XenControl::open()?;
        let mapped: Vec<&crate::reader::MappedMark> = found.iter().map(|m| &m.mapped).collect();
        let c =
            capture::capture(&ctl, g.domain.id, &mapped, &mut bufs).map_err(LiveError::Pause)?;
        let t_ns = sample::now_ns();
        found
            .iter()
            .zip(c.reads)
            .map(|(m, info)| {
                let mut meta = sample_meta(
                    m,
                    info,
                    Cause::Read,
                    &mut BTreeMap::new(),
                    Some(c.paused_ns),
                );
                meta.t_ns = t_ns;
                meta
            })
            .collect()
    } else {
        found
            .iter()
            .zip(bufs.iter_mut())
            .map(|(m, buf)| take(m, buf, retries, Cause::Read, &mut BTreeMap::new()))
            .collect()
    };
    for ((m, meta), buf) in found.iter().zip(&metas).zip(&bufs) {
        if json {
            writeln!(out, "{}", meta.to_json_line(&m.plan.to_json(buf)))?;
            continue;
        }
        write!(out, "{}", m.plan.to_pretty(buf))?;
        writeln!(
            out,
            "-- {}/{} in {} ({}), {}{}",
            escape(&m.module),
            escape(&m.mark.name),
            escape(&g.domain.name),
            g.domain.id,
            if meta.consistent {
                "consistent"
            } else {
                "TORN (a write overlapped every retry)"
            },
            meta.paused_ns.map_or(String::new(), |p| format!(
                ", paused {:.1} µs{}",
                p as f64 / 1000.0,
                if found.len() > 1 {
                    " (one pause for all the marks)"
                } else {
                    ""
                }
            ))
        )?;
    }
    Ok(())
}

/// Options of `vmark watch`.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// Domain name or id.
    pub domain: String,
    /// Marks (`module/mark` or `mark`).
    pub marks: Vec<String>,
    /// Timer period.
    pub every: Option<Duration>,
    /// Sample on guest triggers.
    pub on_trigger: bool,
    /// Sample on packets to or from the guest (`--on-packet`).
    pub on_packet: Option<PacketTrigger>,
    /// Output form.
    pub format: Format,
    /// Fields for CSV (and a compact pretty form).
    pub fields: Vec<String>,
    /// Recording file.
    pub record: Option<PathBuf>,
    /// Its form: JSON lines, or binary (manifests once, raw samples).
    pub record_format: RecordFormat,
    /// Largest recording, bytes.
    pub record_limit: u64,
    /// Stop after this many samples.
    pub count: Option<u64>,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Torn-read retries.
    pub retries: u32,
    /// Pause around reads.
    pub pause: bool,
    /// Print nothing per sample (the recording and summary still happen).
    pub quiet: bool,
    /// Sampling rounds per second at most.
    pub max_rate: u32,
    /// Write a memory snapshot of the domain into this directory after each capture.
    pub snapshot_dir: Option<PathBuf>,
    /// Snapshots at most (`--snapshot-dir`).
    pub max_snapshots: u64,
}

/// `--on-packet`: where packets are captured, which, and where they are kept.
#[derive(Debug, Clone, Default)]
pub struct PacketTrigger {
    /// The interface; the domain's netback interfaces when `None`.
    pub interface: Option<String>,
    /// A tcpdump-style filter expression.
    pub filter: Option<String>,
    /// A pcapng file for the packets.
    pub pcap: Option<PathBuf>,
}

/// How a watch went.
#[derive(Debug)]
pub struct WatchOutcome {
    /// Its counters.
    pub stats: RunStats,
    /// Why it ended.
    pub end: EndReason,
    /// The recording stopped on a write error (the file ends on its last complete line).
    pub recording_failed: bool,
}

impl WatchOutcome {
    /// The exit status (see [`EndReason::exit_code`]; 3 when the recording failed).
    pub fn exit_code(&self) -> u8 {
        match self.end.exit_code() {
            0 if self.recording_failed => 3,
            c => c,
        }
    }
}

/// `vmark watch`.
pub fn watch(opts: &WatchOptions, out: &mut dyn Write) -> Result<WatchOutcome, LiveError> {
    if opts.every.is_none() && !opts.on_trigger && opts.on_packet.is_none() {
        return Err(LiveError::Usage(
            "give --every PERIOD, --on-trigger, --on-packet, or several of them".into(),
        ));
    }
    for f in &opts.fields {
        crate::expr::FieldExpr::parse(f).map_err(|e| LiveError::Usage(e.to_string()))?;
    }
    if opts.format == Format::Csv && opts.fields.is_empty() {
        return Err(LiveError::Usage("--format csv needs --fields a,b,c".into()));
    }
    if let (Some(pcap), Some(record)) = (
        opts.on_packet.as_ref().and_then(|p| p.pcap.as_ref()),
        &opts.record,
    ) {
        if same_file(pcap, record) {
            return Err(LiveError::Usage(
                "--pcap and --record name the same file".into(),
            ));
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = rt.block_on(watch_loop(opts, out));
    // xenstore-rs reads the xenbus device from a blocking task that only returns with the
    // next message; dropping the runtime would wait for it forever.
    rt.shutdown_background();
    result
}

/// The bound event channel and mapped control page of one helper instance. Dropping it
/// unbinds the port and unmaps the page.
struct Triggers {
    channel: AsyncFd<EventChannel>,
    control: Option<ControlPage>,
    bound: Bound,
}

fn bind_triggers(domid: u32, bound: Bound) -> Result<Triggers, LiveError> {
    let ch = EventChannel::bind(domid, bound.port)?;
    // SAFETY: the fd is the event channel handle's own descriptor, open until the
    // EventChannel (owned by the AsyncFd) is dropped, and always the same one.
    let channel = unsafe { AsyncFd::register_with_interest(ch, tokio::io::Interest::READABLE) }
        .map_err(|e| LiveError::Io(e.into()))?;
    let control = match bound.gref {
        Some(gref) => {
            let page = ControlPage::map(domid, gref)?;
            // A previous host may have left a notification unacknowledged.
            page.clear_pending();
            Some(page)
        }
        None => None,
    };
    Ok(Triggers {
        channel,
        control,
        bound,
    })
}

/// A xenstore watch stream with the connection it came from.
struct XsWatch {
    stream: std::pin::Pin<Box<dyn futures_core::Stream<Item = Box<str>>>>,
    _xs: xenstore_rs::tokio::XsTokio,
}

impl futures_core::Stream for XsWatch {
    type Item = Box<str>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Box<str>>> {
        self.stream.as_mut().poll_next(cx)
    }
}

/// Subscribes to `path` on a new xenstore connection (a lost watch often means a lost
/// connection).
fn subscriber(path: String) -> Subscribe<XsWatch> {
    Box::new(move || {
        let path = path.clone();
        Box::pin(async move {
            use xenstore_rs::AsyncWatch;
            let xs = xenstore_rs::tokio::XsTokio::new().await?;
            let stream = xs.watch(&path).await?;
            Ok(XsWatch {
                stream: Box::pin(stream),
                _xs: xs,
            })
        })
    })
}

async fn store_watch(path: &str) -> Result<StoreWatch<XsWatch>, LiveError> {
    let mut subscribe = subscriber(path.to_string());
    let first = subscribe()
        .await
        .map_err(|e| LiveError::Usage(format!("xenstore watch {path}: {e}")))?;
    Ok(StoreWatch::new(
        first,
        subscribe,
        Resubscribe::new(
            Duration::from_millis(limits::WATCH_RESUBSCRIBE_BACKOFF_MS),
            limits::WATCH_RESUBSCRIBE_ATTEMPTS,
        ),
    ))
}

/// The state of a running watch that sampling and refreshes share.
struct Session<'a> {
    opts: &'a WatchOptions,
    out: &'a mut dyn Write,
    domid: u32,
    watched: BTreeMap<String, Watched>,
    last_triggers: BTreeMap<String, u64>,
    stats: RunStats,
    recorder: Option<Recording>,
    recording_failed: bool,
    taken: u64,
    /// One buffer per mark of a round, kept between rounds.
    bufs: Vec<Vec<u8>>,
    xc: XenControl,
    clock: Option<ClockOffset>,
    /// `--snapshot-dir`: the snapshotter, and the snapshots written so far.
    snapshots: Option<(crate::cli_snapshot::DomainSnapshotter, u64)>,
    /// `--pcap`: the packets captured.
    packet_log: Option<PacketLog>,
    /// The kernel stamp (Unix ns) of the earliest packet taken since the last round: a
    /// packet round's latency runs from it, so `t_ns - latency_ns` is that packet's time
    /// in the pcapng.
    packet_ns: Option<u64>,
}

/// A round could not complete because the domain is gone.
struct Gone;

impl Session<'_> {
    /// Appends an event line to the recording; says once on stderr when it stops.
    fn record(&mut self, line: &str) {
        let Some(r) = self.recorder.as_mut() else {
            return;
        };
        let appended = r.event(line);
        self.recording_result(appended);
    }

    /// Says once on stderr when the recording stopped.
    fn recording_result(&mut self, appended: Appended) {
        let Some(r) = self.recorder.as_ref() else {
            return;
        };
        if let Appended::Stopped = appended {
            if let Some(why) = r.stopped() {
                self.recording_failed |= matches!(why, sample::RecordingStopped::Failed { .. });
                eprintln!(
                    "vmark: recording {} stopped: {why}; the watch goes on without recording",
                    r.path().display()
                );
            }
        }
    }

    /// An event line (not a sample): recorded and shown.
    fn note(&mut self, kind: &str, mark: &str, detail: &str) -> Result<(), LiveError> {
        let line = sample::event_line(kind, mark, detail);
        self.record(&line);
        if self.opts.format == Format::Json {
            writeln!(self.out, "{line}")?;
        } else {
            writeln!(self.out, "** {}: {kind}: {}", escape(mark), escape(detail))?;
        }
        self.out.flush()?;
        Ok(())
    }

    /// Takes the packets `first` and those queued behind it (at most a queue's worth): each
    /// goes to the `--pcap` log; together they trigger one round, as of the earliest
    /// packet's time. False when no packet came (only a capture's end).
    fn packets(&mut self, first: TapEvent, tap: &mut PacketTap) -> Result<bool, LiveError> {
        let mut earliest: Option<u64> = None;
        let mut next = Some(first);
        let mut taken = 0;
        while let Some(event) = next.take() {
            match event {
                TapEvent::Packet(p) => {
                    self.stats.packets += 1;
                    if let Some(log) = self.packet_log.as_mut() {
                        let was_writing = log.stopped().is_none();
                        log.append(p.interface, p.t_ns, p.original_len, &p.data);
                        if let (true, Some(why)) = (was_writing, log.stopped()) {
                            let detail = format!(
                                "{} stopped: {why}; the watch goes on without it",
                                log.path().display()
                            );
                            self.note("pcap-stopped", "", &detail)?;
                        }
                    }
                    earliest = Some(earliest.map_or(p.t_ns, |t| t.min(p.t_ns)));
                }
                TapEvent::Ended { interface, why } => {
                    self.note("packet-capture-ended", &interface, &why)?
                }
            }
            taken += 1;
            if taken < limits::PACKET_QUEUE {
                next = tap.try_recv();
            }
        }
        if let Some(log) = self.packet_log.as_mut() {
            log.flush();
        }
        if let Some(t) = earliest {
            self.packet_ns = Some(self.packet_ns.map_or(t, |p| p.min(t)));
        }
        Ok(earliest.is_some())
    }

    /// Samples every open mark once: with `--pause`, all of them in one pause (one capture).
    fn round(
        &mut self,
        cause: Cause,
        woke: Option<Instant>,
        control: Option<&ControlPage>,
    ) -> Result<Result<(), Gone>, LiveError> {
        // Packets taken before this round are this round's, whatever its cause and whether
        // it samples anything: a later round's latency never runs from them.
        let packet_ns = self.packet_ns.take();
        let several = self.watched.len() > 1;
        let left = self
            .opts
            .count
            .map_or(u64::MAX, |c| c.saturating_sub(self.taken));
        let keys: Vec<String> = self
            .watched
            .iter()
            .filter(|(_, w)| {
                w.open.as_ref().is_some_and(|m| {
                    cause != Cause::Trigger || m.mark.flags.can_trigger() || !several
                })
            })
            .map(|(k, _)| k.clone())
            .take(usize::try_from(left).unwrap_or(usize::MAX))
            .collect();
        if keys.is_empty() {
            return Ok(Ok(()));
        }
        let open = |k: &String| self.watched.get(k).and_then(|w| w.open.as_ref());
        // Each mark's read and bytes; in one pause of the domain with --pause.
        let mut bufs = std::mem::take(&mut self.bufs);
        if bufs.len() < keys.len() {
            bufs.resize_with(keys.len(), Vec::new);
        }
        let (reads, paused_ns): (Vec<ReadInfo>, Option<u64>) = if self.opts.pause {
            let marks: Vec<&crate::reader::MappedMark> = keys
                .iter()
                .filter_map(|k| open(k).map(|m| &m.mapped))
                .collect();
            match capture::capture(&self.xc, self.domid, &marks, &mut bufs) {
                Ok(c) => {
                    self.stats.pauses.record(c.paused_ns);
                    self.stats.repauses += u64::from(c.repauses);
                    (c.reads, Some(c.paused_ns))
                }
                Err(_) if !self.xc.domain_alive(self.domid) => return Ok(Err(Gone)),
                Err(e) => return Err(LiveError::Pause(e)),
            }
        } else {
            let reads = keys
                .iter()
                .zip(bufs.iter_mut())
                .filter_map(|(k, buf)| Some(open(k)?.mapped.read(buf, self.opts.retries)))
                .collect();
            (reads, None)
        };
        // The capture's time and latency: the same for every mark read in it, not counting
        // the output of the marks before.
        let t_ns = sample::now_ns();
        let latency = if cause == Cause::Packet {
            packet_ns.map(|p| t_ns.saturating_sub(p))
        } else {
            woke.map(|at| {
                // Trigger to sample on the host's clock when the clocks are calibrated;
                // otherwise only the host's part (wake-up to sample).
                match (cause, &self.clock, control) {
                    (Cause::Trigger, Some(c), Some(page)) => c.since_guest(page.last_trigger_ns()),
                    _ => None,
                }
                .unwrap_or_else(|| at.elapsed().as_nanos() as u64)
            })
        };
        let mut result: Result<(), LiveError> = Ok(());
        for ((k, info), buf) in keys.iter().zip(reads).zip(&bufs) {
            let Some(m) = self.watched.get(k).and_then(|w| w.open.as_ref()) else {
                continue;
            };
            let can_trigger = m.mark.flags.can_trigger();
            let mut meta = sample_meta(m, info, cause, &mut self.last_triggers, paused_ns);
            meta.t_ns = t_ns;
            if let Some(l) = latency {
                meta.latency_ns = Some(l);
                if cause == Cause::Packet {
                    self.stats.packet_latency.record(l);
                    self.stats.packet_samples += 1;
                } else {
                    self.stats.latency.record(l);
                    self.stats.trigger_samples += 1;
                }
            } else {
                self.stats.timer_samples += 1;
            }
            if can_trigger {
                self.stats.folded_triggers += meta.folded;
            }
            if !meta.consistent {
                self.stats.torn += 1;
            }
            if let Err(e) = self.emit(k, &meta, buf) {
                result = Err(e);
                break;
            }
            self.taken += 1;
        }
        // The buffers stay for the next round (no allocation per sample).
        self.bufs = bufs;
        // A binary recording writes a round's frames at once.
        if let Some(r) = self.recorder.as_mut() {
            let appended = r.flush();
            self.recording_result(appended);
        }
        result?;
        self.snapshot(t_ns)?;
        Ok(Ok(()))
    }

    /// `--snapshot-dir`: after a capture, a memory snapshot (its own pause), named by the
    /// capture's time, until `--max-snapshots`; an event line says where it is or why not.
    fn snapshot(&mut self, t_ns: u64) -> Result<(), LiveError> {
        let (Some(dir), Some((snapshotter, taken))) =
            (self.opts.snapshot_dir.as_ref(), self.snapshots.as_mut())
        else {
            return Ok(());
        };
        if *taken >= self.opts.max_snapshots {
            return Ok(());
        }
        *taken += 1;
        let path = dir.join(format!("{}-{t_ns}.core", self.domid));
        let (kind, detail) = match snapshotter.take(&path, false) {
            Ok((stats, paused)) => {
                let paused = paused.unwrap_or(0);
                self.stats.snapshots.record(paused);
                (
                    "snapshot",
                    format!(
                        "{} ({} frames, the domain paused {:.1} ms)",
                        path.display(),
                        stats.frames_present,
                        paused as f64 / 1e6
                    ),
                )
            }
            Err(e) => {
                self.stats.snapshots_failed += 1;
                ("snapshot-failed", format!("{}: {e}", path.display()))
            }
        };
        self.note(kind, "", &detail)
    }

    fn emit(&mut self, key: &str, meta: &SampleMeta, bytes: &[u8]) -> Result<(), LiveError> {
        let Some(w) = self.watched.get(key) else {
            return Ok(());
        };
        let Some(m) = &w.open else { return Ok(()) };
        // The JSON line only when shown or recorded as lines: a binary recording takes the
        // bytes as they are.
        let wants_line = self.opts.format == Format::Json
            || self.recorder.as_ref().is_some_and(|r| r.wants_lines());
        let line = if wants_line {
            meta.to_json_line(&m.plan.to_json(bytes))
        } else {
            String::new()
        };
        let text = if self.opts.quiet {
            None
        } else {
            Some(match self.opts.format {
                Format::Json => line.clone(),
                Format::Csv => sample::csv_row(meta, &w.fields, bytes),
                Format::Pretty if !w.fields.is_empty() => {
                    // A column another watched mark has is not this mark's to show.
                    let cols: Vec<String> = w
                        .fields
                        .iter()
                        .filter(|c| !c.is_absent())
                        .map(|c| escape(&c.pretty(bytes)).into_owned())
                        .collect();
                    format!(
                        "{} {:<7} {} triggers={} (+{}) {}",
                        sample::clock_text(meta.t_ns),
                        meta.cause.name(),
                        escape(&meta.mark),
                        meta.triggers,
                        meta.folded,
                        cols.join(" ")
                    )
                }
                Format::Pretty => format!(
                    "── {} {} {} triggers={} (+{}){}\n{}",
                    sample::clock_text(meta.t_ns),
                    meta.cause.name(),
                    escape(&meta.mark),
                    meta.triggers,
                    meta.folded,
                    if meta.consistent { "" } else { " TORN" },
                    m.plan.to_pretty(bytes).trim_end_matches('\n')
                ),
            })
        };
        if let Some(r) = self.recorder.as_mut() {
            let appended = r.sample(
                wants_line.then_some(line.as_str()),
                key,
                &m.mark.name,
                &m.manifest,
                meta,
                bytes,
            );
            self.recording_result(appended);
        }
        if let Some(t) = text {
            writeln!(self.out, "{t}")?;
            self.out.flush()?;
        }
        Ok(())
    }
}

fn signal(kind: tokio::signal::unix::SignalKind) -> Result<tokio::signal::unix::Signal, LiveError> {
    Ok(tokio::signal::unix::signal(kind)?)
}

async fn watch_loop(opts: &WatchOptions, out: &mut dyn Write) -> Result<WatchOutcome, LiveError> {
    use tokio::signal::unix::SignalKind;
    let g = LiveGuest::open(&opts.domain)?;
    let domid = g.domain.id;
    let xc = XenControl::open()?;
    let recorder = match &opts.record {
        Some(p) => Some(Recording::open(p, opts.record_limit, opts.record_format)?),
        None => None,
    };
    let specs: Vec<MarkSpec> = opts.marks.iter().map(|m| MarkSpec::parse(m)).collect();
    let mapper: Arc<dyn FrameMapper> = Arc::new(g.mapper.clone());
    let mut refresher = Refresher::new(Box::new(XenStore::open()?), mapper, domid, specs);
    let first = refresher.refresh();
    // The helper instance that published what is watched now is instance 0.
    let mut helpers = HelperEpoch::default();
    helpers.observe(&first.helper);
    let mut watched: BTreeMap<String, Watched> = BTreeMap::new();
    let several = first.marks.len() > 1;
    for (spec, update) in first.marks {
        let m = match update {
            MarkUpdate::Opened(m) => *m,
            MarkUpdate::Gone(e) => return Err(e.into()),
            MarkUpdate::Unchanged => return Err(GuestError::NoSuchMark(spec).into()),
        };
        let fields = resolve_fields(&m, &opts.fields, several)?;
        watched.insert(spec, Watched::new(m, fields));
    }
    check_fields_resolve(&watched, &opts.fields)?;
    // --snapshot-dir: the guest's kernel located and its memory map read once, now.
    let snapshots = match &opts.snapshot_dir {
        Some(dir) => {
            // Snapshots hold the guest's memory: a directory made for them is its owner's.
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
            let s = crate::cli_snapshot::DomainSnapshotter::prepare(&domid.to_string())
                .map_err(|e| LiveError::Usage(format!("--snapshot-dir: {e}")))?;
            Some((s, 0))
        }
        None => None,
    };
    let mut s = Session {
        opts,
        out,
        domid,
        watched,
        last_triggers: BTreeMap::new(),
        stats: RunStats {
            max_rate: opts.max_rate,
            ..RunStats::default()
        },
        recorder,
        recording_failed: false,
        taken: 0,
        bufs: Vec::new(),
        xc,
        clock: None,
        snapshots,
        packet_log: None,
        packet_ns: None,
    };
    // Event channel and control page (only with --on-trigger).
    let mut triggers: Option<Triggers> = None;
    if opts.on_trigger {
        let info = first.helper?;
        let port = info
            .event_channel
            .ok_or_else(|| LiveError::Usage("the guest offers no event channel".into()))?;
        let t = bind_triggers(
            domid,
            Bound {
                port,
                gref: info.control_gref,
                generation: info.generation,
            },
        )?;
        if let Some(page) = &t.control {
            s.clock = calibrate(&t.channel, page).await?;
            page.clear_pending();
        }
        triggers = Some(t);
    }
    s.stats.clock_rtt_ns = s.clock.map(|c| c.rtt_ns);
    // Packet captures (only with --on-packet), open before the readiness line: a script
    // may send as soon as it reads it.
    let mut tap: Option<PacketTap> = None;
    if let Some(p) = &opts.on_packet {
        let interfaces = match &p.interface {
            Some(i) => vec![i.clone()],
            None => crate::packet_tap::backend_interfaces(&XenStore::open()?, domid)?,
        };
        let snaplen = if p.pcap.is_some() {
            limits::PACKET_MAX_SNAPLEN
        } else {
            limits::PACKET_TRIGGER_SNAPLEN
        };
        let t = PacketTap::open(&interfaces, p.filter.as_deref(), snaplen)?;
        if let Some(path) = &p.pcap {
            s.packet_log = Some(PacketLog::create(
                path,
                t.interfaces(),
                t.snaplen,
                opts.record_limit,
            )?);
        }
        s.stats.packet_interfaces = t.interfaces().to_vec();
        tap = Some(t);
    }
    let mut changes = store_watch(&guest::root(domid)).await?;
    let mut released = store_watch("@releaseDomain").await?;
    let mut timer = opts.every.map(|p| {
        let mut t = tokio::time::interval(p);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    let deadline = opts.duration.map(|d| tokio::time::Instant::now() + d);
    // Trigger counters from now on: taken after the pending flag was cleared, so every
    // trigger that raises a notification from here on is counted once.
    for w in s.watched.values() {
        if let Some(m) = &w.open {
            baseline(m, opts.retries, &mut s.last_triggers);
        }
    }
    // The termination signals are ours from here on: none ends the process at an arbitrary
    // point (between a pause and its unpause, or in the middle of a recording line). Taken
    // before the readiness line (a script may signal as soon as it reads it), and not
    // earlier, so that one during the set-up (calibration, subscribing) still ends it.
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sighup = signal(SignalKind::hangup())?;
    let mut sigquit = signal(SignalKind::quit())?;
    if opts.format == Format::Csv {
        let fields = s
            .watched
            .values()
            .next()
            .map(|w| w.fields.clone())
            .unwrap_or_default();
        writeln!(s.out, "{}", sample::csv_header(&fields))?;
    }
    eprintln!(
        "vmark: watching {} mark(s) of {} (domain {domid}){}{}{}",
        s.watched.len(),
        escape(&g.domain.name),
        if opts.on_trigger { ", on triggers" } else { "" },
        match &tap {
            Some(t) => format!(", on packets at {}", t.interfaces().join(" ")),
            None => String::new(),
        },
        opts.every
            .map_or(String::new(), |p| format!(", every {p:?}"))
    );
    let mut limiter = RateLimiter::new(opts.max_rate, Instant::now());
    // A round the rate limit postponed: when it is due and why.
    let mut deferred: Option<(tokio::time::Instant, Cause, Option<Instant>)> = None;
    let mut dirty_since: Option<tokio::time::Instant> = None;
    let mut last_refresh = tokio::time::Instant::now();
    let mut refreshing: Option<tokio::task::JoinHandle<(Refresher, guest::Refresh)>> = None;
    let mut idle_refresher = Some(refresher);
    let debounce = Duration::from_millis(limits::WATCH_REFRESH_DEBOUNCE_MS);
    let min_interval = Duration::from_millis(limits::WATCH_REFRESH_MIN_INTERVAL_MS);
    enum Wake {
        Round(Cause, Option<Instant>),
        Changed,
        Released,
        RefreshDue,
        Refreshed(Box<(Refresher, guest::Refresh)>),
        Packets(Option<TapEvent>),
        End(EndReason),
    }
    let end = loop {
        if opts.count.is_some_and(|c| s.taken >= c) {
            break EndReason::Count;
        }
        let refresh_at = match (dirty_since, &refreshing) {
            (Some(d), None) => Some((d + debounce).max(last_refresh + min_interval)),
            _ => None,
        };
        let wake = tokio::select! {
            _ = async { timer.as_mut().unwrap().tick().await }, if timer.is_some() => Wake::Round(Cause::Timer, None),
            r = async { triggers.as_ref().unwrap().channel.readable().await }, if triggers.is_some() => {
                let mut guard = r?;
                let at = Instant::now();
                let ours = guard.get_inner().take_pending();
                guard.clear_ready();
                match ours {
                    Ok(true) => {
                        // Acknowledge before sampling: triggers from here on raise a new
                        // notification, so none is lost between this sample and the next.
                        // A notification without the pending flag is no trigger: a late
                        // answer to a calibration ping, or one a previous host left.
                        let t = triggers.as_ref().unwrap();
                        if t.control.as_ref().is_some_and(|c| !c.clear_pending()) {
                            continue;
                        }
                        s.stats.notifications += 1;
                        Wake::Round(Cause::Trigger, Some(at))
                    }
                    Ok(false) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            ev = async { tap.as_mut().unwrap().recv().await }, if tap.is_some() => Wake::Packets(ev),
            _ = async { tokio::time::sleep_until(deferred.unwrap().0).await }, if deferred.is_some() => {
                let (_, cause, at) = deferred.take().unwrap();
                Wake::Round(cause, at)
            }
            e = changes.next() => match e {
                StoreEvent::Changed => Wake::Changed,
                StoreEvent::GaveUp(why) => Wake::End(EndReason::StoreLost(why)),
            },
            e = released.next() => match e {
                StoreEvent::Changed => Wake::Released,
                StoreEvent::GaveUp(why) => Wake::End(EndReason::StoreLost(why)),
            },
            _ = async { tokio::time::sleep_until(refresh_at.unwrap()).await }, if refresh_at.is_some() => Wake::RefreshDue,
            r = async { refreshing.as_mut().unwrap().await }, if refreshing.is_some() => {
                refreshing = None;
                match r {
                    Ok(done) => Wake::Refreshed(Box::new(done)),
                    Err(e) => return Err(LiveError::Usage(format!("refreshing the published marks: {e}"))),
                }
            }
            _ = async { tokio::time::sleep_until(deadline.unwrap()).await }, if deadline.is_some() => Wake::End(EndReason::Duration),
            _ = sigint.recv() => Wake::End(EndReason::Signal("SIGINT")),
            _ = sigterm.recv() => Wake::End(EndReason::Signal("SIGTERM")),
            _ = sighup.recv() => Wake::End(EndReason::Signal("SIGHUP")),
            _ = sigquit.recv() => Wake::End(EndReason::Signal("SIGQUIT")),
        };
        // Packets are taken (logged, counted) as they come; what they trigger is a round.
        let wake = match (wake, tap.as_mut()) {
            (Wake::Packets(Some(first)), Some(t)) => match s.packets(first, t)? {
                true => Wake::Round(Cause::Packet, None),
                false => continue,
            },
            (Wake::Packets(_), _) => {
                if let Some(t) = tap.take() {
                    close_tap(&mut s, t)?;
                }
                s.note(
                    "packets-ended",
                    &g.domain.name,
                    "every packet capture has ended",
                )?;
                continue;
            }
            (w, _) => w,
        };
        match wake {
            Wake::Packets(_) => unreachable!("taken above"),
            Wake::End(reason) => break reason,
            Wake::Round(cause, woke) => {
                if let Err(next) = limiter.try_take(Instant::now()) {
                    // Over the rate: one round later folds this wake-up's triggers in.
                    s.stats.rate_limited += 1;
                    let due = tokio::time::Instant::now()
                        + next.saturating_duration_since(Instant::now());
                    deferred = Some(match deferred {
                        // A postponed trigger round stays a trigger round, a packet round
                        // one at least.
                        Some(d) if precedence(d.1) >= precedence(cause) => d,
                        _ => (due, cause, woke),
                    });
                    continue;
                }
                let control = triggers.as_ref().and_then(|t| t.control.as_ref());
                if s.round(cause, woke, control)?.is_err() {
                    break domain_gone(&mut s, &g.domain)?;
                }
            }
            Wake::Changed => {
                s.stats.store_events += 1;
                dirty_since.get_or_insert_with(tokio::time::Instant::now);
            }
            Wake::Released => {
                s.stats.store_events += 1;
                if !s.xc.domain_alive(domid) {
                    break domain_gone(&mut s, &g.domain)?;
                }
            }
            Wake::RefreshDue => {
                dirty_since = None;
                last_refresh = tokio::time::Instant::now();
                if let Some(mut r) = idle_refresher.take() {
                    refreshing = Some(tokio::task::spawn_blocking(move || {
                        let done = r.refresh();
                        (r, done)
                    }));
                }
            }
            Wake::Refreshed(done) => {
                let (r, refresh) = *done;
                idle_refresher = Some(r);
                s.stats.refreshes += 1;
                // Under --on-trigger a bound channel the guest closed is looked at even when
                // the published entries read the same: a helper reloaded between two
                // refreshes may publish the same port and generation again.
                let channel_lost = opts.on_trigger
                    && triggers.as_ref().is_some_and(|t| {
                        !s.xc.evtchn_connected(
                            t.channel.get_ref().local_port(),
                            domid,
                            t.bound.port,
                        )
                    });
                if refresh.same_generation && !channel_lost {
                    continue;
                }
                if !s.xc.domain_alive(domid) {
                    break domain_gone(&mut s, &g.domain)?;
                }
                if opts.on_trigger {
                    let connected = triggers.as_ref().is_some_and(|t| {
                        s.xc.evtchn_connected(t.channel.get_ref().local_port(), domid, t.bound.port)
                    });
                    match binding_after(
                        triggers.as_ref().map(|t| t.bound),
                        &refresh.helper,
                        connected,
                    ) {
                        Binding::Keep => {}
                        Binding::Release => {
                            triggers = None;
                            s.note("helper-gone", &g.domain.name, "the helper module is gone; event channel and control page released")?;
                        }
                        Binding::Bind(b) => {
                            // The old port and page are released before binding the new.
                            triggers = None;
                            match bind_triggers(domid, b) {
                                Ok(t) => {
                                    triggers = Some(t);
                                    s.stats.rebinds += 1;
                                    s.note(
                                        "rebound",
                                        &g.domain.name,
                                        &format!(
                                            "bound to the helper's event channel {} again",
                                            b.port
                                        ),
                                    )?;
                                }
                                Err(e) => s.note(
                                    "unbound",
                                    &g.domain.name,
                                    &format!("cannot bind the helper's event channel: {e}"),
                                )?,
                            }
                        }
                    }
                }
                let notes = apply_refresh(
                    &mut s.watched,
                    refresh,
                    &opts.fields,
                    &mut s.last_triggers,
                    &mut helpers,
                );
                for (kind, spec, detail) in notes {
                    s.note(kind, &spec, &detail)?;
                }
            }
        }
    };
    // Triggers the rate limit postponed are still accounted for.
    if let (Some((_, cause, at)), EndReason::Count | EndReason::Duration | EndReason::Signal(_)) =
        (deferred.take(), &end)
    {
        let control = triggers.as_ref().and_then(|t| t.control.as_ref());
        let _ = s.round(cause, at, control)?;
    }
    // The packets captured until the end are logged and counted, those the threads still
    // had included.
    if let Some(t) = tap.take() {
        close_tap(&mut s, t)?;
    }
    if let Some(log) = s.packet_log.as_mut() {
        log.flush();
        s.stats.pcap = Some(log.summary());
    }
    if let EndReason::StoreLost(why) = &end {
        s.note("store-lost", &g.domain.name, why)?;
    }
    s.stats.resubscribed = changes.resubscribed + released.resubscribed;
    if let Some(r) = s.recorder.as_mut() {
        let appended = r.flush();
        s.recording_result(appended);
    }
    if let Some(r) = &s.recorder {
        s.stats.recording = Some(r.summary());
    }
    Ok(WatchOutcome {
        stats: s.stats,
        end,
        recording_failed: s.recording_failed,
    })
}

/// Stops the packet captures and takes what they still queued (logged and counted, not
/// sampled: the watch is ending or the captures are); their counters go to the summary.
fn close_tap(s: &mut Session<'_>, mut tap: PacketTap) -> Result<(), LiveError> {
    let stats = tap.finish();
    while let Some(event) = tap.try_recv() {
        let _ = s.packets(event, &mut tap)?;
    }
    s.stats.packets_captured = stats.received;
    s.stats.packets_queue_dropped = stats.queue_dropped;
    s.stats.packets_kernel_dropped = stats.kernel_dropped;
    Ok(())
}

/// Whether `a` and `b` are one file: the same existing file (device and inode), or the
/// same path once made absolute.
fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => match (std::path::absolute(a), std::path::absolute(b)) {
            (Ok(x), Ok(y)) => x.components().eq(y.components()),
            _ => a == b,
        },
    }
}

/// Which cause a postponed round keeps when another wake-up is folded into it: the guest's
/// trigger (it carries the guest's stamp), then a packet, then the timer.
fn precedence(c: Cause) -> u8 {
    match c {
        Cause::Trigger => 2,
        Cause::Packet => 1,
        Cause::Timer | Cause::Read => 0,
    }
}

/// Says the domain is gone (the recording's last line) and ends the watch.
fn domain_gone(s: &mut Session<'_>, d: &xen::Domain) -> Result<EndReason, LiveError> {
    s.note("domain-gone", &d.name, "the domain no longer exists")?;
    Ok(EndReason::DomainGone)
}

/// The guest's clock as seen from the host's, from the best of several ping rounds.
#[derive(Debug, Clone, Copy)]
struct ClockOffset {
    /// guest clock minus host clock, ns.
    offset_ns: i128,
    /// Round trip of the best round (twice the offset's error bound).
    rtt_ns: u64,
}

impl ClockOffset {
    /// Host-clock ns elapsed since the guest-clock instant `guest_ns`, if plausible.
    fn since_guest(&self, guest_ns: u64) -> Option<u64> {
        let host_then = guest_ns as i128 - self.offset_ns;
        let d = xen::monotonic_ns() as i128 - host_then;
        // Outside 0..60 s the stamp is not the trigger we woke for (or the guest lies).
        (0..60_000_000_000).contains(&d).then_some(d as u64)
    }
}

/// Measures the guest's clock offset by ping-pong through the control page and event
/// channel (as NTP does): offset = guest − (send + receive) / 2, error ≤ RTT / 2.
async fn calibrate(
    channel: &AsyncFd<EventChannel>,
    page: &ControlPage,
) -> Result<Option<ClockOffset>, LiveError> {
    let mut best: Option<ClockOffset> = None;
    for _ in 0..8 {
        let sent = xen::monotonic_ns();
        page.ping(sent);
        channel.get_ref().notify()?;
        let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
        let answer = loop {
            let ready = tokio::time::timeout_at(deadline, channel.readable()).await;
            let Ok(guard) = ready else { break None };
            let mut guard = guard?;
            let _ = guard.get_inner().take_pending()?;
            guard.clear_ready();
            if let Some(g) = page.pong(sent) {
                break Some(g);
            }
        };
        let Some(guest) = answer else {
            // A helper without calibration support never answers: stop asking.
            break;
        };
        let received = xen::monotonic_ns();
        let rtt = received.saturating_sub(sent);
        let offset = guest as i128 - (sent as i128 + received as i128) / 2;
        if best.is_none_or(|b| rtt < b.rtt_ns) {
            best = Some(ClockOffset {
                offset_ns: offset,
                rtt_ns: rtt,
            });
        }
    }
    Ok(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_file_is_one_file_however_it_is_named() {
        let dir = std::env::temp_dir().join(format!("vmark-same-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let a = dir.join("a");
        std::fs::write(&a, b"x").unwrap();
        let link = dir.join("link");
        std::os::unix::fs::symlink(&a, &link).unwrap();
        assert!(same_file(&a, &link));
        assert!(same_file(&dir.join("./a"), &a));
        // Not there yet: the same path once absolute.
        let new = dir.join("new.pcapng");
        assert!(same_file(&new, &dir.join(".").join("new.pcapng")));
        assert!(!same_file(&new, &a));
        assert!(!same_file(&dir.join("b"), &dir.join("c")));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
