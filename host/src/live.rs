//! The live commands on a running Xen guest: `list`, `read`, `watch`.
//!
//! `watch` runs one tokio task that waits on three sources at once: the `--every` timer,
//! the guest's event channel (`--on-trigger`) and a xenstore watch on the guest's vmark tree
//! (marks withdrawn or back, the domain gone). Mappings are made once per mark and reused
//! for every sample; they are dropped when the mark is withdrawn and remade when it returns.

use crate::guest::{self, GuestError, GuestMarks, OpenMark, Store};
use crate::sample::{self, Cause, Recorder, RunStats, SampleMeta};
use crate::xen::{
    self, ControlPage, DomainMapper, EventChannel, ForeignMemory, XenControl, XenStore,
};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::io::unix::AsyncFd;

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
    /// Something the user asked for that does not fit.
    #[error("{0}")]
    Usage(String),
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

/// `vmark list [DOMAIN]`.
pub fn list(spec: Option<&str>, json: bool, out: &mut dyn Write) -> Result<(), LiveError> {
    let store = XenStore::open()?;
    let fm = ForeignMemory::open()?;
    let domains = match spec {
        Some(s) => vec![xen::resolve_domain(&store, s)?],
        None => xen::domains(&store)?,
    };
    let mut rows = Vec::new();
    for d in domains {
        let mapper = DomainMapper::new(fm.clone(), d.id);
        let marks = match guest::open_all(&store, &mapper, d.id) {
            Ok(m) => m,
            Err(GuestError::NotPublished(_)) if spec.is_none() => continue,
            Err(e) => return Err(e.into()),
        };
        let mut origin = serde_json::Map::new();
        origin.insert("domain".into(), d.name.clone().into());
        origin.insert("domid".into(), d.id.into());
        rows.extend(guest::list_rows(&origin, &marks));
    }
    guest::write_list(
        rows,
        json,
        "no domain publishes vmark marks (load vmark_helper.ko in the guest)",
        out,
    )?;
    Ok(())
}

/// Samples one mark now.
fn take(
    m: &OpenMark,
    buf: &mut Vec<u8>,
    retries: u32,
    cause: Cause,
    last_triggers: &mut BTreeMap<String, u64>,
    ctl: Option<(&XenControl, u32)>,
) -> Result<SampleMeta, LiveError> {
    let paused_at = match ctl {
        Some((x, domid)) => {
            x.pause(domid)?;
            Some(Instant::now())
        }
        None => None,
    };
    let info = m.mapped.read(buf, retries);
    let paused_ns = match (ctl, paused_at) {
        (Some((x, domid)), Some(t)) => {
            x.unpause(domid)?;
            Some(t.elapsed().as_nanos() as u64)
        }
        _ => None,
    };
    let key = format!("{}/{}", m.module, m.mark.name);
    let prev = last_triggers.insert(key.clone(), info.triggers);
    Ok(SampleMeta {
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
    })
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

/// `vmark read DOMAIN MARK`.
pub fn read(
    spec: &str,
    mark: &str,
    json: bool,
    retries: u32,
    pause: bool,
    out: &mut dyn Write,
) -> Result<(), LiveError> {
    let g = LiveGuest::open(spec)?;
    let marks = g.marks()?;
    let m = match marks.find(mark) {
        Ok(m) => m,
        Err(e) => {
            // Say why when the mark exists but is unusable.
            if let Some((item, err)) = marks.errors.iter().find(|(k, _)| k.contains(mark)) {
                return Err(LiveError::Usage(format!("{item}: {err}")));
            }
            return Err(e.into());
        }
    };
    let ctl = if pause {
        Some(XenControl::open()?)
    } else {
        None
    };
    let mut buf = Vec::new();
    let meta = take(
        m,
        &mut buf,
        retries,
        Cause::Read,
        &mut BTreeMap::new(),
        ctl.as_ref().map(|c| (c, g.domain.id)),
    )?;
    if json {
        writeln!(out, "{}", meta.to_json_line(&m.plan.to_json(&buf)))?;
    } else {
        write!(out, "{}", m.plan.to_pretty(&buf))?;
        writeln!(
            out,
            "-- {}/{} in {} ({}), {}{}",
            m.module,
            m.mark.name,
            g.domain.name,
            g.domain.id,
            if meta.consistent {
                "consistent"
            } else {
                "TORN (a write overlapped every retry)"
            },
            meta.paused_ns.map_or(String::new(), |p| format!(
                ", paused {:.1} µs",
                p as f64 / 1000.0
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
    /// Output form.
    pub format: Format,
    /// Fields for CSV (and a compact pretty form).
    pub fields: Vec<String>,
    /// Recording file.
    pub record: Option<PathBuf>,
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
}

/// State of one watched mark.
struct Watched {
    open: Option<OpenMark>,
    fields: Vec<crate::decode::FieldPath>,
}

/// `vmark watch`.
pub fn watch(opts: &WatchOptions, out: &mut dyn Write) -> Result<RunStats, LiveError> {
    if opts.every.is_none() && !opts.on_trigger {
        return Err(LiveError::Usage(
            "give --every PERIOD, --on-trigger, or both".into(),
        ));
    }
    if opts.format == Format::Csv && opts.fields.is_empty() {
        return Err(LiveError::Usage("--format csv needs --fields a,b,c".into()));
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

fn open_watched(marks: &GuestMarks, name: &str, fields: &[String]) -> Result<Watched, LiveError> {
    let m = marks.find(name)?.clone();
    let fields = fields
        .iter()
        .map(|f| crate::decode::FieldPath::resolve(&m.manifest.types, m.mark.ty, f))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Watched {
        open: Some(m),
        fields,
    })
}

async fn watch_loop(opts: &WatchOptions, out: &mut dyn Write) -> Result<RunStats, LiveError> {
    use xenstore_rs::AsyncWatch;
    let g = LiveGuest::open(&opts.domain)?;
    let domid = g.domain.id;
    let mut stats = RunStats::default();
    let mut recorder = match &opts.record {
        Some(p) => Some(Recorder::open(p)?),
        None => None,
    };
    let ctl = if opts.pause {
        Some(XenControl::open()?)
    } else {
        None
    };
    let marks = g.marks()?;
    let mut watched: BTreeMap<String, Watched> = BTreeMap::new();
    for name in &opts.marks {
        watched.insert(name.clone(), open_watched(&marks, name, &opts.fields)?);
    }
    // Event channel and control page (only with --on-trigger).
    let info = guest::helper_info(g.store(), domid)?;
    let mut channel = None;
    let mut control = None;
    if opts.on_trigger {
        let port = info
            .event_channel
            .ok_or_else(|| LiveError::Usage("the guest offers no event channel".into()))?;
        let bound = EventChannel::bind(domid, port)?;
        // SAFETY: the fd is the event channel handle's own descriptor, open until the
        // EventChannel (owned by the AsyncFd) is dropped, and always the same one.
        let registered =
            unsafe { AsyncFd::register_with_interest(bound, tokio::io::Interest::READABLE) };
        channel = Some(registered.map_err(|e| LiveError::Io(e.into()))?);
        if let Some(gref) = info.control_gref {
            let page = ControlPage::map(domid, gref)?;
            // A previous host may have left a notification unacknowledged.
            page.clear_pending();
            control = Some(page);
        }
    }
    let clock = match (&channel, &control) {
        (Some(ch), Some(page)) => calibrate(ch, page).await?,
        _ => None,
    };
    if let Some(c) = &clock {
        stats.clock_rtt_ns = Some(c.rtt_ns);
    }
    if let Some(page) = &control {
        page.clear_pending();
    }
    let xs = xenstore_rs::tokio::XsTokio::new()
        .await
        .map_err(|e| LiveError::Usage(format!("xenstore: {e}")))?;
    let mut changes = xs
        .watch(&guest::root(domid))
        .await
        .map_err(|e| LiveError::Usage(format!("xenstore watch: {e}")))?;
    let mut released = xs
        .watch("@releaseDomain")
        .await
        .map_err(|e| LiveError::Usage(format!("xenstore watch: {e}")))?;
    let mut timer = opts.every.map(|p| {
        let mut t = tokio::time::interval(p);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    let deadline = opts.duration.map(|d| tokio::time::Instant::now() + d);
    // Trigger counters from now on: taken after the pending flag was cleared, so every
    // trigger that raises a notification from here on is counted once.
    let mut last_triggers = BTreeMap::new();
    for w in watched.values() {
        if let Some(m) = &w.open {
            baseline(m, opts.retries, &mut last_triggers);
        }
    }
    let mut buf = Vec::new();
    let mut taken = 0u64;
    if opts.format == Format::Csv {
        let fields = watched
            .values()
            .next()
            .map(|w| w.fields.clone())
            .unwrap_or_default();
        writeln!(out, "{}", sample::csv_header(&fields))?;
    }
    let emit = |meta: &SampleMeta,
                w: &Watched,
                buf: &[u8],
                out: &mut dyn Write,
                rec: &mut Option<Recorder>|
     -> Result<(), LiveError> {
        let Some(m) = &w.open else { return Ok(()) };
        let json = m.plan.to_json(buf);
        let line = meta.to_json_line(&json);
        if let Some(r) = rec.as_mut() {
            r.append(&line)?;
        }
        if !opts.quiet {
            match opts.format {
                Format::Json => writeln!(out, "{line}")?,
                Format::Csv => writeln!(out, "{}", sample::csv_row(meta, &w.fields, buf))?,
                Format::Pretty if !w.fields.is_empty() => {
                    let cols: Vec<String> = w
                        .fields
                        .iter()
                        .map(|f| format!("{}={}", f.path, sample::leaf_text(f.read(buf))))
                        .collect();
                    writeln!(
                        out,
                        "{} {:<7} {} triggers={} (+{}) {}",
                        sample::clock_text(meta.t_ns),
                        format!("{:?}", meta.cause).to_lowercase(),
                        meta.mark,
                        meta.triggers,
                        meta.folded,
                        cols.join(" ")
                    )?
                }
                Format::Pretty => {
                    writeln!(
                        out,
                        "── {} {} {} triggers={} (+{}){}",
                        sample::clock_text(meta.t_ns),
                        format!("{:?}", meta.cause).to_lowercase(),
                        meta.mark,
                        meta.triggers,
                        meta.folded,
                        if meta.consistent { "" } else { " TORN" }
                    )?;
                    write!(out, "{}", m.plan.to_pretty(buf))?
                }
            }
            out.flush()?;
        }
        Ok(())
    };
    let note = |kind: &str,
                mark: &str,
                detail: &str,
                out: &mut dyn Write,
                rec: &mut Option<Recorder>|
     -> Result<(), LiveError> {
        let line = sample::event_line(kind, mark, detail);
        if let Some(r) = rec.as_mut() {
            r.append(&line)?;
        }
        if opts.format == Format::Json {
            writeln!(out, "{line}")?;
        } else {
            writeln!(out, "** {mark}: {kind}: {detail}")?;
        }
        out.flush()?;
        Ok(())
    };
    loop {
        if opts.count.is_some_and(|c| taken >= c) {
            break;
        }
        enum Wake {
            Tick,
            Trigger(Instant),
            Changed,
            Released,
            Done,
        }
        let wake = tokio::select! {
            _ = async { timer.as_mut().unwrap().tick().await }, if timer.is_some() => Wake::Tick,
            r = async { channel.as_ref().unwrap().readable().await }, if channel.is_some() => {
                let mut guard = r?;
                let at = Instant::now();
                let ours = guard.get_inner().take_pending();
                guard.clear_ready();
                match ours { Ok(true) => Wake::Trigger(at), Ok(false) => continue, Err(e) => return Err(e.into()) }
            }
            c = futures_next(&mut changes) => { if c.is_none() { Wake::Released } else { Wake::Changed } }
            _ = futures_next(&mut released) => Wake::Released,
            _ = async { tokio::time::sleep_until(deadline.unwrap()).await }, if deadline.is_some() => Wake::Done,
            _ = tokio::signal::ctrl_c() => Wake::Done,
        };
        match wake {
            Wake::Done => break,
            Wake::Tick | Wake::Trigger(_) => {
                let (cause, woke) = match wake {
                    Wake::Trigger(at) => {
                        // Acknowledge before sampling: triggers from here on raise a new
                        // notification, so none is lost between this sample and the next.
                        // A notification without the pending flag is no trigger: a late
                        // answer to a calibration ping, or one a previous host left.
                        if let Some(c) = &control {
                            if !c.clear_pending() {
                                continue;
                            }
                        }
                        stats.notifications += 1;
                        (Cause::Trigger, Some(at))
                    }
                    _ => (Cause::Timer, None),
                };
                for w in watched.values() {
                    let Some(m) = &w.open else { continue };
                    if cause == Cause::Trigger && !m.mark.flags.can_trigger() && watched.len() > 1 {
                        continue;
                    }
                    let mut meta = take(
                        m,
                        &mut buf,
                        opts.retries,
                        cause,
                        &mut last_triggers,
                        ctl.as_ref().map(|c| (c, domid)),
                    )?;
                    if let Some(at) = woke {
                        // Trigger to sample on the host's clock when the clocks are
                        // calibrated; otherwise only the host's part (wake-up to sample).
                        let l = match (&clock, &control) {
                            (Some(c), Some(page)) => c.since_guest(page.last_trigger_ns()),
                            _ => None,
                        }
                        .unwrap_or_else(|| at.elapsed().as_nanos() as u64);
                        meta.latency_ns = Some(l);
                        stats.latencies.push(l);
                        stats.trigger_samples += 1;
                    } else {
                        stats.timer_samples += 1;
                    }
                    if m.mark.flags.can_trigger() {
                        stats.folded_triggers += meta.folded;
                    }
                    if !meta.consistent {
                        stats.torn += 1;
                    }
                    emit(&meta, w, &buf, out, &mut recorder)?;
                    taken += 1;
                }
            }
            Wake::Changed | Wake::Released => {
                // Re-read what the guest publishes; drop mappings of withdrawn marks and
                // remake those that came back.
                let alive = xen::domains(g.store())?.iter().any(|d| d.id == domid);
                if !alive {
                    note(
                        "domain-gone",
                        &g.domain.name,
                        "the domain no longer exists",
                        out,
                        &mut recorder,
                    )?;
                    break;
                }
                let now = g.marks().unwrap_or_default();
                for (name, w) in watched.iter_mut() {
                    match (&w.open, now.find(name)) {
                        (Some(_), Err(_)) => {
                            w.open = None;
                            note(
                                "withdrawn",
                                name,
                                "the mark is no longer published (module unloaded?)",
                                out,
                                &mut recorder,
                            )?;
                        }
                        (None, Ok(m)) => {
                            if let Ok(fresh) = open_watched(&now, name, &opts.fields) {
                                *w = fresh;
                                // A reloaded module's counter restarts from 0: count all
                                // of its triggers (folded_since); a republished one
                                // continues from the last value seen.
                                last_triggers
                                    .entry(format!("{}/{}", m.module, m.mark.name))
                                    .or_insert(0);
                                note(
                                    "back",
                                    name,
                                    "the mark is published again",
                                    out,
                                    &mut recorder,
                                )?;
                            }
                        }
                        (Some(old), Ok(m)) if old.entry != m.entry => {
                            if let Ok(fresh) = open_watched(&now, name, &opts.fields) {
                                *w = fresh;
                                note(
                                    "moved",
                                    name,
                                    "the mark was republished; remapped",
                                    out,
                                    &mut recorder,
                                )?;
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
    }
    Ok(stats)
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

/// Next item of a stream, without pulling in a futures dependency for one call.
async fn futures_next<S: futures_core_stream::Stream + Unpin>(s: &mut S) -> Option<S::Item> {
    std::future::poll_fn(|cx| std::pin::Pin::new(&mut *s).poll_next(cx)).await
}

/// Re-export so the stream trait bound above has a short name.
mod futures_core_stream {
    pub use futures_core::Stream;
}
