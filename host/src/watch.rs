//! The parts of `vmark watch` that must hold whatever the guest (or the machine) does,
//! apart from Xen so they can be tested with fakes:
//!
//! - [`PauseGuard`]: a paused domain is unpaused on every exit path (errors, panics) and a
//!   termination signal cannot land between pause and unpause;
//! - [`RateLimiter`]: sampling rounds per second are bounded; wake-ups over the limit are
//!   folded into a later round (their triggers stay accounted for) and counted;
//! - [`Resubscribe`] and `StoreWatch`: a xenstore watch that ends is re-established with
//!   backoff, then the watch ends with a clear status, never a busy loop;
//! - [`apply_refresh`]: what a refresh of the published tree changes for the watched marks;
//! - [`binding_after`]: when the event channel and control page must be bound again (the
//!   helper module reloaded) or released;
//! - [`EndReason`]: why a watch ended, and its exit status.

use crate::decode::DecodeError;
use crate::guest::{GuestError, HelperInfo, MarkUpdate, OpenMark, Refresh};
use crate::sample::Column;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// An error of a backend (Xen's libraries, or a fake).
pub type BackendError = Box<dyn std::error::Error + Send + Sync>;

/// Pauses and unpauses a domain (libxenctrl, or a fake in tests).
pub trait Pauser {
    /// Pauses `domid`.
    fn pause(&self, domid: u32) -> Result<(), BackendError>;
    /// Unpauses `domid`.
    fn unpause(&self, domid: u32) -> Result<(), BackendError>;
}

/// A paused domain. Dropping the guard unpauses it, so every way out of a read (an error
/// returned with `?`, a panic unwinding) leaves the guest running; [`PauseGuard::resume`]
/// unpauses and reports the time paused. While the guard lives, SIGINT, SIGTERM, SIGHUP and
/// SIGQUIT are blocked in this thread: one that arrives is delivered only after the unpause.
pub struct PauseGuard<'a> {
    pauser: &'a dyn Pauser,
    domid: u32,
    at: Instant,
    resumed: bool,
    _signals: SignalsHeld,
}

impl<'a> PauseGuard<'a> {
    /// Pauses `domid` (signals blocked first, so none can end the process in between).
    pub fn pause(pauser: &'a dyn Pauser, domid: u32) -> Result<Self, BackendError> {
        let signals = SignalsHeld::block();
        // From the request on: the guest may stop as soon as the hypercall starts.
        let at = Instant::now();
        pauser.pause(domid)?;
        Ok(PauseGuard {
            pauser,
            domid,
            at,
            resumed: false,
            _signals: signals,
        })
    }

    /// Unpauses; returns how long the domain was paused at most (ns): from the pause
    /// request to the unpause's return, both hypercalls included.
    pub fn resume(mut self) -> Result<u64, BackendError> {
        self.pauser.unpause(self.domid)?;
        let paused = self.at.elapsed().as_nanos() as u64;
        // Only once the unpause worked: after a failed one, drop tries again.
        self.resumed = true;
        Ok(paused)
    }
}

impl Drop for PauseGuard<'_> {
    fn drop(&mut self) {
        if !self.resumed {
            // Nothing to report to on this path; the unpause is what matters.
            let _ = self.pauser.unpause(self.domid);
        }
        // `_signals` is dropped after this: a held signal arrives with the guest running.
    }
}

/// Termination signals blocked in this thread until drop (then the previous mask is back,
/// and a signal that arrived meanwhile is delivered).
struct SignalsHeld {
    #[cfg(feature = "xen")]
    old: Option<libc::sigset_t>,
}

impl SignalsHeld {
    #[cfg(feature = "xen")]
    fn block() -> Self {
        // SAFETY: sigset_t is plain data, initialised by sigemptyset/sigaddset before use;
        // pthread_sigmask only changes this thread's mask and writes the old one to `old`.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
                libc::sigaddset(&mut set, s);
            }
            let ok = libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old) == 0;
            SignalsHeld {
                old: ok.then_some(old),
            }
        }
    }

    #[cfg(not(feature = "xen"))]
    fn block() -> Self {
        SignalsHeld {}
    }
}

impl Drop for SignalsHeld {
    fn drop(&mut self) {
        #[cfg(feature = "xen")]
        if let Some(old) = self.old {
            // SAFETY: restoring the mask saved in `block`, in the same thread.
            unsafe {
                libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
            }
        }
    }
}

/// A token bucket of sampling rounds: `rate` per second on average, bursts of a twentieth
/// of a second's worth (at least one).
#[derive(Debug, Clone)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl RateLimiter {
    /// `rate` rounds per second (clamped to 1..=[`vmark_proto::limits::WATCH_MAX_RATE`]).
    pub fn new(rate: u32, now: Instant) -> Self {
        let rate = f64::from(rate.clamp(1, vmark_proto::limits::WATCH_MAX_RATE));
        let burst = (rate / 20.0).max(1.0);
        RateLimiter {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Takes a round now, or says when the next one is allowed.
    pub fn try_take(&mut self, now: Instant) -> Result<(), Instant> {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - self.tokens) / self.rate;
            Err(now + Duration::from_secs_f64(wait))
        }
    }
}

/// When to re-establish a lost xenstore watch: after a backoff that doubles from `first`,
/// at most `attempts` times in a row; an event on a watch that has lived
/// [`Resubscribe::STABLE`] starts the count again.
#[derive(Debug, Clone)]
pub struct Resubscribe {
    first: Duration,
    attempts: u32,
    failed: u32,
    since: Option<Instant>,
}

impl Resubscribe {
    /// A watch that delivered events for this long counts as established again.
    pub const STABLE: Duration = Duration::from_secs(10);

    /// The policy of [`vmark_proto::limits`] (or another, for tests).
    pub fn new(first: Duration, attempts: u32) -> Self {
        Resubscribe {
            first,
            attempts,
            failed: 0,
            since: None,
        }
    }

    /// The watch was (re-)established now.
    pub fn established(&mut self, now: Instant) {
        self.since = Some(now);
    }

    /// An event arrived.
    pub fn event(&mut self, now: Instant) {
        if self
            .since
            .is_some_and(|s| now.saturating_duration_since(s) >= Self::STABLE)
        {
            self.failed = 0;
        }
    }

    /// The watch was lost (or re-establishing failed): the delay before the next attempt,
    /// or `None` when the attempts are used up.
    pub fn lost(&mut self) -> Option<Duration> {
        if self.failed >= self.attempts {
            return None;
        }
        let d = self.first.saturating_mul(1u32 << self.failed.min(16));
        self.failed += 1;
        Some(d)
    }
}

/// A xenstore watch that survives its stream ending: the stream is re-established with
/// [`Resubscribe`] backoff; every re-establishment counts as a change (events may have been
/// missed). Cancel-safe: it can be polled from `select!` (the backoff deadline and a
/// re-subscription under way are kept in the struct, so a call dropped mid-way loses
/// neither, and no attempt is spent twice).
#[cfg(feature = "xen")]
pub struct StoreWatch<S> {
    stream: Option<S>,
    subscribe: Subscribe<S>,
    policy: Resubscribe,
    retry_at: Option<tokio::time::Instant>,
    /// A re-subscription started and not finished yet.
    pending: Option<SubscribeFuture<S>>,
    last_error: String,
    /// Times the watch was re-established.
    pub resubscribed: u64,
}

/// A watch stream being made.
#[cfg(feature = "xen")]
pub type SubscribeFuture<S> =
    std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<S>>>>;

/// Makes a new watch stream.
#[cfg(feature = "xen")]
pub type Subscribe<S> = Box<dyn FnMut() -> SubscribeFuture<S>>;

/// What a [`StoreWatch`] saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreEvent {
    /// Something changed (or may have: the watch was re-established).
    Changed,
    /// The watch is lost for good; why.
    GaveUp(String),
}

#[cfg(feature = "xen")]
impl<S: futures_core::Stream<Item = Box<str>> + Unpin> StoreWatch<S> {
    /// Watches with `stream`, re-established through `subscribe`.
    pub fn new(stream: S, subscribe: Subscribe<S>, policy: Resubscribe) -> Self {
        let mut policy = policy;
        policy.established(Instant::now());
        StoreWatch {
            stream: Some(stream),
            subscribe,
            policy,
            retry_at: None,
            pending: None,
            last_error: "the watch stream ended".into(),
            resubscribed: 0,
        }
    }

    /// The next change.
    pub async fn next(&mut self) -> StoreEvent {
        loop {
            if let Some(s) = self.stream.as_mut() {
                let item =
                    std::future::poll_fn(|cx| std::pin::Pin::new(&mut *s).poll_next(cx)).await;
                match item {
                    Some(_) => {
                        self.policy.event(Instant::now());
                        return StoreEvent::Changed;
                    }
                    None => {
                        self.stream = None;
                        self.last_error = "the watch stream ended".into();
                    }
                }
            }
            if self.pending.is_none() {
                let at = match self.retry_at {
                    Some(at) => at,
                    None => match self.policy.lost() {
                        Some(d) => {
                            let at = tokio::time::Instant::now() + d;
                            self.retry_at = Some(at);
                            at
                        }
                        None => return StoreEvent::GaveUp(self.last_error.clone()),
                    },
                };
                tokio::time::sleep_until(at).await;
                self.retry_at = None;
                self.pending = Some((self.subscribe)());
            }
            let Some(subscribing) = self.pending.as_mut() else {
                continue;
            };
            let result = subscribing.as_mut().await;
            self.pending = None;
            match result {
                Ok(s) => {
                    self.stream = Some(s);
                    self.policy.established(Instant::now());
                    self.resubscribed += 1;
                    return StoreEvent::Changed;
                }
                Err(e) => self.last_error = format!("re-establishing the watch: {e}"),
            }
        }
    }
}

/// A watched mark: open (mapped) or not published right now, and its `--fields`.
#[derive(Debug)]
pub struct Watched {
    /// The open mark, while it is published.
    pub open: Option<OpenMark>,
    /// `--fields` columns resolved against its type.
    pub fields: Vec<Column>,
    /// The helper instance ([`HelperEpoch`]) that last published or withdrew it.
    pub epoch: u64,
    /// It was withdrawn because it is no longer published (its module unloaded), not for a
    /// passing error.
    pub unpublished: bool,
    /// Where its record was when last open: a record does not move while its module is
    /// loaded.
    pub record: Option<u64>,
}

impl Watched {
    /// An open mark with its columns, published by helper instance 0.
    pub fn new(open: OpenMark, fields: Vec<Column>) -> Self {
        Watched {
            record: Some(open.entry.record_gva),
            open: Some(open),
            fields,
            epoch: 0,
            unpublished: false,
        }
    }
}

/// Numbers the helper instances a watch sees: a new one when the helper is gone, offers
/// another event channel or control page, or its generation goes backwards (a reloaded
/// helper counts from 0 again). A mark that one helper instance withdraws and publishes
/// again (or republishes at another place) is a new instance of its module, whose trigger
/// counter started from 0; one that comes back through another helper instance may be the
/// same module instance, whose counter went on.
#[derive(Debug, Default, Clone)]
pub struct HelperEpoch {
    epoch: u64,
    /// Port, grant and generation last read.
    last: Option<(Option<u32>, Option<u32>, u64)>,
    /// The helper was not there at the last read (its absence is an epoch of its own).
    absent: bool,
}

impl HelperEpoch {
    /// Takes in what a refresh read of the helper; returns the current instance number.
    pub fn observe(&mut self, helper: &Result<crate::guest::HelperInfo, GuestError>) -> u64 {
        match helper {
            Ok(h) => {
                let now = (h.event_channel, h.control_gref, h.generation);
                let changed = self.last.is_some_and(|(port, gref, generation)| {
                    port != now.0 || gref != now.1 || now.2 < generation
                });
                if self.absent || changed {
                    self.epoch += 1;
                }
                self.absent = false;
                self.last = Some(now);
            }
            Err(_) => {
                if !self.absent {
                    self.epoch += 1;
                    self.absent = true;
                }
                self.last = None;
            }
        }
        self.epoch
    }
}

/// A change a refresh made to the watched marks: (event kind, spec, detail), for the
/// recording and the live output.
pub type Note = (&'static str, String, String);

/// Resolves `--fields` (fields or derived expressions) against an open mark's type. With
/// `several` marks watched, a field this mark lacks is an absent column (an empty cell in
/// its rows; [`check_fields_resolve`] makes sure some mark has it); with one, an error.
pub fn resolve_fields(
    m: &OpenMark,
    fields: &[String],
    several: bool,
) -> Result<Vec<Column>, GuestError> {
    fields
        .iter()
        .map(
            |f| match Column::resolve(&m.manifest.types, m.mark.ty, &m.mark.name, f) {
                Err(DecodeError::NoSuchField(..)) if several => Column::absent(f),
                other => other,
            },
        )
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| GuestError::Decode {
            mark: m.mark.name.clone(),
            source,
        })
}

/// Every `--fields` column belongs to at least one watched mark; else the error of
/// resolving it in the first mark.
pub fn check_fields_resolve(
    watched: &BTreeMap<String, Watched>,
    fields: &[String],
) -> Result<(), GuestError> {
    for (i, f) in fields.iter().enumerate() {
        let some = watched
            .values()
            .any(|w| w.fields.get(i).is_some_and(|c| !c.is_absent()));
        if some {
            continue;
        }
        if let Some(m) = watched.values().find_map(|w| w.open.as_ref()) {
            Column::resolve(&m.manifest.types, m.mark.ty, &m.mark.name, f).map_err(|source| {
                GuestError::Decode {
                    mark: m.mark.name.clone(),
                    source,
                }
            })?;
        }
    }
    Ok(())
}

/// Applies a refresh to the watched marks: withdrawn marks are dropped (their mappings
/// released), marks that came back or moved are replaced by their new mapping. Returns what
/// changed. `last_triggers` gets a baseline for a mark that comes back, so the triggers it
/// fired meanwhile are counted: 0 for a new instance of its module (its counter started
/// from 0, whatever it reads by the next sample): the same helper instance unpublished it
/// and published it again, or publishes its record at another address; else the old
/// baseline (a passing error, or another helper instance that may serve the same module;
/// a counter that went backwards is still taken as a new instance's).
pub fn apply_refresh(
    watched: &mut BTreeMap<String, Watched>,
    refresh: Refresh,
    fields: &[String],
    last_triggers: &mut BTreeMap<String, u64>,
    helpers: &mut HelperEpoch,
) -> Vec<Note> {
    let mut notes = Vec::new();
    let several = watched.len() > 1;
    let epoch = helpers.observe(&refresh.helper);
    for (spec, update) in refresh.marks {
        let Some(w) = watched.get_mut(&spec) else {
            continue;
        };
        match update {
            MarkUpdate::Unchanged => {}
            MarkUpdate::Gone(e) => {
                if w.open.take().is_some() {
                    w.epoch = epoch;
                    w.unpublished =
                        matches!(e, GuestError::NoSuchMark(_) | GuestError::NotPublished(_));
                    notes.push((
                        "withdrawn",
                        spec,
                        format!("the mark is no longer published ({e})"),
                    ));
                }
            }
            MarkUpdate::Opened(m) => {
                let fresh = match resolve_fields(&m, fields, several) {
                    Ok(f) => f,
                    Err(e) => {
                        if w.open.take().is_some() {
                            w.epoch = epoch;
                            w.unpublished = false;
                            notes.push(("withdrawn", spec, e.to_string()));
                        }
                        continue;
                    }
                };
                let kind = if w.open.is_some() { "moved" } else { "back" };
                let key = format!("{}/{}", m.module, m.mark.name);
                let record = m.entry.record_gva;
                let new_instance = w.epoch == epoch && (w.unpublished || w.record != Some(record));
                if new_instance {
                    last_triggers.insert(key, 0);
                } else {
                    last_triggers.entry(key).or_insert(0);
                }
                w.open = Some(*m);
                w.fields = fresh;
                w.epoch = epoch;
                w.unpublished = false;
                w.record = Some(record);
                let detail = if kind == "back" {
                    "the mark is published again"
                } else {
                    "the mark was republished; remapped"
                };
                notes.push((kind, spec, detail.into()));
            }
        }
    }
    notes
}

/// The event channel and control page bound to, identified by what the helper published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bound {
    /// The guest's port.
    pub port: u32,
    /// The control page's grant, if any.
    pub gref: Option<u32>,
    /// The generation published when bound.
    pub generation: u64,
}

/// What to do with the trigger binding after a refresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    /// It still works.
    Keep,
    /// The helper is gone: unbind the port and unmap the page.
    Release,
    /// Bind (again) to what is published now; the old binding, if any, is released first.
    Bind(Bound),
}

/// Whether the binding must change: the helper is gone (release), or it publishes another
/// port or grant, its generation went backwards (a new instance counts from 0), or the bound
/// channel is no longer connected (`connected` false: the guest closed its end): bind again.
pub fn binding_after(
    bound: Option<Bound>,
    helper: &Result<HelperInfo, GuestError>,
    connected: bool,
) -> Binding {
    let Ok(info) = helper else {
        return if bound.is_some() {
            Binding::Release
        } else {
            Binding::Keep
        };
    };
    let Some(port) = info.event_channel else {
        return if bound.is_some() {
            Binding::Release
        } else {
            Binding::Keep
        };
    };
    let want = Bound {
        port,
        gref: info.control_gref,
        generation: info.generation,
    };
    match bound {
        Some(b)
            if b.port == want.port
                && b.gref == want.gref
                && info.generation >= b.generation
                && connected =>
        {
            Binding::Keep
        }
        _ => Binding::Bind(want),
    }
}

/// Why a watch ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndReason {
    /// `--count` samples taken.
    Count,
    /// `--duration` passed.
    Duration,
    /// A signal (SIGINT, SIGTERM, SIGHUP).
    Signal(&'static str),
    /// The domain was destroyed (or is dying).
    DomainGone,
    /// The xenstore watch was lost and could not be re-established.
    StoreLost(String),
}

impl EndReason {
    /// Exit status of `vmark watch`: 0 when it ended as asked (count, duration, signal),
    /// 2 when the domain went away, 4 when xenstore was lost. (3: the recording stopped on
    /// a write error, decided by the caller; 1: any other error.)
    pub fn exit_code(&self) -> u8 {
        match self {
            EndReason::Count | EndReason::Duration | EndReason::Signal(_) => 0,
            EndReason::DomainGone => 2,
            EndReason::StoreLost(_) => 4,
        }
    }
}

impl std::fmt::Display for EndReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EndReason::Count => write!(f, "the requested number of samples was taken"),
            EndReason::Duration => write!(f, "the requested duration passed"),
            EndReason::Signal(s) => write!(f, "stopped by {s}"),
            EndReason::DomainGone => write!(f, "the domain is gone (destroyed)"),
            EndReason::StoreLost(why) => {
                write!(
                    f,
                    "the xenstore watch was lost and could not be re-established: {why}"
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    /// A pause backend that records the domain's state.
    #[derive(Default)]
    struct FakeXen {
        paused: Cell<bool>,
        pauses: Cell<u32>,
        fail_unpause: Cell<bool>,
    }

    impl Pauser for FakeXen {
        fn pause(&self, _: u32) -> Result<(), BackendError> {
            self.paused.set(true);
            self.pauses.set(self.pauses.get() + 1);
            Ok(())
        }
        fn unpause(&self, _: u32) -> Result<(), BackendError> {
            if self.fail_unpause.get() {
                return Err("unpause refused".into());
            }
            self.paused.set(false);
            Ok(())
        }
    }

    fn read_paused(x: &FakeXen, fail: bool) -> Result<u64, BackendError> {
        let guard = PauseGuard::pause(x, 3)?;
        assert!(x.paused.get());
        if fail {
            return Err("the read failed".into());
        }
        guard.resume()
    }

    #[test]
    fn every_exit_path_unpauses() {
        let x = FakeXen::default();
        read_paused(&x, false).unwrap();
        assert!(!x.paused.get());
        assert!(read_paused(&x, true).is_err());
        assert!(!x.paused.get(), "an error path left the domain paused");
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _g = PauseGuard::pause(&x, 3).unwrap();
            panic!("a bug while paused");
        }));
        assert!(r.is_err());
        assert!(!x.paused.get(), "a panic left the domain paused");
        x.fail_unpause.set(true);
        let g = PauseGuard::pause(&x, 3).unwrap();
        assert!(g.resume().is_err(), "a failed unpause is reported");
        assert_eq!(x.pauses.get(), 4);
    }

    #[cfg(feature = "xen")]
    #[test]
    fn a_termination_signal_while_paused_arrives_after_the_unpause() {
        use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
        static PAUSED: AtomicBool = AtomicBool::new(false);
        static DELIVERED: AtomicU32 = AtomicU32::new(0);
        static DELIVERED_PAUSED: AtomicBool = AtomicBool::new(false);
        struct Flagged;
        impl Pauser for Flagged {
            fn pause(&self, _: u32) -> Result<(), BackendError> {
                PAUSED.store(true, Ordering::SeqCst);
                Ok(())
            }
            fn unpause(&self, _: u32) -> Result<(), BackendError> {
                PAUSED.store(false, Ordering::SeqCst);
                Ok(())
            }
        }
        extern "C" fn on_signal(_: libc::c_int) {
            DELIVERED.fetch_add(1, Ordering::SeqCst);
            if PAUSED.load(Ordering::SeqCst) {
                DELIVERED_PAUSED.store(true, Ordering::SeqCst);
            }
        }
        // SIGHUP stands for any termination signal (the guard holds SIGINT, SIGTERM, SIGHUP
        // and SIGQUIT alike); it is raised to this thread only.
        // SAFETY: installing a handler that only touches atomics, then restoring the old one.
        unsafe {
            let mut act: libc::sigaction = std::mem::zeroed();
            let mut old: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = on_signal as *const () as usize;
            libc::sigaction(libc::SIGHUP, &act, &mut old);
            {
                let g = PauseGuard::pause(&Flagged, 1).unwrap();
                libc::pthread_kill(libc::pthread_self(), libc::SIGHUP);
                assert_eq!(
                    DELIVERED.load(Ordering::SeqCst),
                    0,
                    "delivered while paused"
                );
                drop(g);
            }
            assert_eq!(DELIVERED.load(Ordering::SeqCst), 1);
            assert!(!DELIVERED_PAUSED.load(Ordering::SeqCst));
            libc::sigaction(libc::SIGHUP, &old, std::ptr::null_mut());
        }
    }

    #[test]
    fn the_rate_limit_bounds_rounds_and_says_when_the_next_is_due() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(100, t0);
        // A guest notifying in a tight loop for one second: 10_000 wake-ups.
        let mut taken = 0;
        let mut refused = 0;
        for i in 0..10_000u64 {
            let now = t0 + Duration::from_micros(i * 100);
            match r.try_take(now) {
                Ok(()) => taken += 1,
                Err(next) => {
                    assert!(next > now && next <= now + Duration::from_millis(10));
                    refused += 1;
                }
            }
        }
        assert!(
            (100..=106).contains(&taken),
            "{taken} rounds in 1 s at 100/s"
        );
        assert_eq!(taken + refused, 10_000);
    }

    #[test]
    fn resubscribing_backs_off_then_gives_up() {
        let mut p = Resubscribe::new(Duration::from_millis(10), 3);
        p.established(Instant::now());
        assert_eq!(p.lost(), Some(Duration::from_millis(10)));
        assert_eq!(p.lost(), Some(Duration::from_millis(20)));
        // An event right after re-establishing does not reset: a stream that delivers its
        // first event and ends again cannot keep the watch resubscribing for ever.
        p.event(Instant::now());
        assert_eq!(p.lost(), Some(Duration::from_millis(40)));
        assert_eq!(p.lost(), None);
        // A watch that stayed up resets the count.
        let mut p = Resubscribe::new(Duration::from_millis(10), 1);
        let t = Instant::now();
        p.established(t);
        assert!(p.lost().is_some());
        p.event(t + Resubscribe::STABLE);
        assert!(p.lost().is_some());
    }

    #[cfg(feature = "xen")]
    #[test]
    fn a_watch_stream_that_ends_is_re_established_with_backoff_then_ends_clearly() {
        use std::pin::Pin;
        use std::rc::Rc;
        use std::task::{Context, Poll};
        /// A xenstore watch stream with `events` events, then its end.
        struct Ending(u32);
        impl futures_core::Stream for Ending {
            type Item = Box<str>;
            fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Box<str>>> {
                if self.0 == 0 {
                    return Poll::Ready(None);
                }
                self.0 -= 1;
                Poll::Ready(Some("/local/domain/1/data/vmark".into()))
            }
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let subscribed = Rc::new(Cell::new(0u32));
            let s = subscribed.clone();
            let subscribe: Subscribe<Ending> = Box::new(move || {
                s.set(s.get() + 1);
                let n = s.get();
                Box::pin(async move {
                    if n == 2 {
                        Err(std::io::Error::other("xenstored restarting"))
                    } else {
                        Ok(Ending(1))
                    }
                })
            });
            let policy = Resubscribe::new(Duration::from_millis(5), 4);
            let mut w = StoreWatch::new(Ending(2), subscribe, policy);
            let t0 = Instant::now();
            let mut events = Vec::new();
            loop {
                let e = w.next().await;
                let end = matches!(e, StoreEvent::GaveUp(_));
                events.push(e);
                if end || events.len() > 100 {
                    break;
                }
            }
            // 2 events, then (ended) a failed attempt, then 3 re-established streams of one
            // event each: each re-establishment and each event is a change; then it gives up.
            assert!(
                events.len() < 20,
                "the watch loop spun: {} events",
                events.len()
            );
            assert!(
                matches!(events.last(), Some(StoreEvent::GaveUp(_))),
                "{events:?}"
            );
            assert_eq!(subscribed.get(), 4, "one subscription per allowed attempt");
            assert_eq!(w.resubscribed, 3);
            // Backoff: 5 + 10 + 20 + 40 ms at least.
            assert!(
                t0.elapsed() >= Duration::from_millis(75),
                "{:?}",
                t0.elapsed()
            );
        });
    }

    #[test]
    fn a_failed_unpause_is_tried_again_before_the_guard_goes() {
        /// Refuses the first unpause only.
        #[derive(Default)]
        struct RefusesOnce {
            unpauses: Cell<u32>,
            paused: Cell<bool>,
        }
        impl Pauser for RefusesOnce {
            fn pause(&self, _: u32) -> Result<(), BackendError> {
                self.paused.set(true);
                Ok(())
            }
            fn unpause(&self, _: u32) -> Result<(), BackendError> {
                self.unpauses.set(self.unpauses.get() + 1);
                if self.unpauses.get() == 1 {
                    return Err("unpause refused".into());
                }
                self.paused.set(false);
                Ok(())
            }
        }
        let x = RefusesOnce::default();
        let g = PauseGuard::pause(&x, 3).unwrap();
        assert!(g.resume().is_err(), "the failed unpause is reported");
        assert_eq!(x.unpauses.get(), 2, "and tried again when the guard went");
        assert!(!x.paused.get(), "the guest was left paused");
    }

    #[cfg(feature = "xen")]
    #[test]
    fn a_re_subscription_interrupted_by_other_wake_ups_spends_one_attempt() {
        use std::pin::Pin;
        use std::rc::Rc;
        use std::task::{Context, Poll};
        /// A stream that has ended (the xenstore connection dropped).
        struct Ended;
        impl futures_core::Stream for Ended {
            type Item = Box<str>;
            fn poll_next(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Box<str>>> {
                Poll::Ready(None)
            }
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let subscribed = Rc::new(Cell::new(0u32));
            let s = subscribed.clone();
            // Subscribing takes 50 ms; the watch loop is woken every millisecond meanwhile
            // (a timer, triggers), which drops the `next()` future each time.
            let subscribe: Subscribe<Ended> = Box::new(move || {
                s.set(s.get() + 1);
                Box::pin(async move {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Ok(Ended)
                })
            });
            let mut w = StoreWatch::new(Ended, subscribe, Resubscribe::new(Duration::ZERO, 3));
            let mut interrupted = 0u32;
            let event = loop {
                tokio::select! {
                    e = w.next() => break e,
                    _ = tokio::time::sleep(Duration::from_millis(1)) => interrupted += 1,
                }
                assert!(interrupted < 10_000, "the re-subscription never finished");
            };
            assert_eq!(event, StoreEvent::Changed);
            assert!(interrupted > 5, "the select never interrupted it");
            assert_eq!(
                subscribed.get(),
                1,
                "one subscription, however often interrupted"
            );
            assert_eq!(w.resubscribed, 1);
        });
    }

    fn info(port: u32, gref: u32, generation: u64) -> Result<HelperInfo, GuestError> {
        Ok(HelperInfo {
            event_channel: Some(port),
            control_gref: Some(gref),
            generation,
        })
    }

    #[test]
    fn a_reloaded_helper_is_bound_again_and_a_gone_one_released() {
        let b = Bound {
            port: 7,
            gref: Some(8),
            generation: 5,
        };
        assert_eq!(binding_after(Some(b), &info(7, 8, 6), true), Binding::Keep);
        // The helper was reloaded: another port, or the same numbers with the generation
        // counting from the start again, or the guest closed the channel we hold.
        assert!(matches!(
            binding_after(Some(b), &info(9, 8, 6), true),
            Binding::Bind(Bound { port: 9, .. })
        ));
        assert!(matches!(
            binding_after(Some(b), &info(7, 8, 1), true),
            Binding::Bind(_)
        ));
        assert!(matches!(
            binding_after(Some(b), &info(7, 8, 6), false),
            Binding::Bind(_)
        ));
        assert_eq!(
            binding_after(Some(b), &Err(GuestError::NotPublished(1)), true),
            Binding::Release
        );
        assert_eq!(
            binding_after(None, &Err(GuestError::NotPublished(1)), true),
            Binding::Keep
        );
        assert!(matches!(
            binding_after(None, &info(7, 8, 1), false),
            Binding::Bind(_)
        ));
    }

    #[test]
    fn exit_codes_say_how_the_watch_ended() {
        assert_eq!(EndReason::Signal("SIGTERM").exit_code(), 0);
        assert_eq!(EndReason::DomainGone.exit_code(), 2);
        assert_eq!(EndReason::StoreLost("x".into()).exit_code(), 4);
        assert!(EndReason::DomainGone.to_string().contains("gone"));
    }
}
