//! Packet triggers from the host side of the split network driver (`watch --on-packet`):
//! the domain's netback interfaces (`vifD.N`) are captured in dom0 with libpcap (an
//! `AF_PACKET` socket with the kernel filter compiled from a tcpdump-style expression), so
//! every packet to or from the guest can trigger a capture with no guest cooperation.
//!
//! Each interface has a thread blocked in libpcap that hands packets (time, length, the
//! first `snaplen` bytes) to the watch over a bounded queue; when the queue is full a
//! packet is counted as dropped instead of held, so a guest flooding its interface costs
//! the host a fixed amount of memory. The time is the kernel's receive stamp in Unix
//! nanoseconds, the recording's own clock.

use crate::guest::Store;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;
use vmark_proto::limits;

/// Why packets cannot be captured.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    /// The domain has no network backend interface in this domain.
    #[error("domain {0} has no network interface backed here (no vif in /local/domain/0/backend/vif/{0}); name one with --on-packet IFACE")]
    NoInterface(u32),
    /// An interface name is not one.
    #[error("{0:?} is not a network interface name")]
    BadName(String),
    /// The interface does not exist.
    #[error("no network interface {0} in this domain")]
    NoSuchInterface(String),
    /// libpcap refused (permissions, a filter that does not compile).
    #[error("{what} {iface}: {why}")]
    Pcap {
        /// What was being done.
        what: &'static str,
        /// Interface.
        iface: String,
        /// libpcap's message.
        why: String,
    },
    /// xenstore could not be read.
    #[error("xenstore: {0}")]
    Store(#[from] std::io::Error),
    /// A capture thread could not be started.
    #[error("starting the capture thread: {0}")]
    Spawn(std::io::Error),
}

/// One captured packet.
#[derive(Debug, Clone)]
pub struct Packet {
    /// Index of its interface in [`PacketTap::interfaces`].
    pub interface: u32,
    /// When the kernel received it, Unix ns.
    pub t_ns: u64,
    /// Its length on the wire.
    pub original_len: u32,
    /// Its first bytes (at most the tap's snaplen).
    pub data: Vec<u8>,
}

/// What a capture thread reports.
#[derive(Debug)]
pub enum TapEvent {
    /// A packet.
    Packet(Packet),
    /// The interface's capture ended (the interface went away, or libpcap failed).
    Ended {
        /// Its name.
        interface: String,
        /// Why.
        why: String,
    },
}

/// Counters of a tap, shared with its threads.
#[derive(Debug, Default)]
struct Counters {
    received: AtomicU64,
    queue_dropped: AtomicU64,
    kernel_dropped: AtomicU64,
}

/// What a tap saw, for the watch's summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TapStats {
    /// Packets the filter passed and the threads read.
    pub received: u64,
    /// Packets dropped because the watch's queue was full.
    pub queue_dropped: u64,
    /// Packets the kernel dropped (its capture buffer was full).
    pub kernel_dropped: u64,
}

/// Captures on one or more interfaces.
pub struct PacketTap {
    rx: mpsc::Receiver<TapEvent>,
    stop: Arc<AtomicBool>,
    /// Wakes each thread out of libpcap's wait (`pcap_breakloop`).
    breaks: Vec<pcap::BreakLoop>,
    threads: Vec<std::thread::JoinHandle<()>>,
    counters: Arc<Counters>,
    interfaces: Vec<String>,
    /// The bytes kept of each packet.
    pub snaplen: u32,
}

/// The netback interfaces of domain `domid`, as dom0's toolstack set them up: for each
/// device under `/local/domain/0/backend/vif/DOMID/`, its `vifname` if set, else
/// `vifDOMID.DEVID`; with the `-emu` twin an HVM guest's emulated NIC has. Only names that
/// are interface names and exist here (`/sys/class/net`) are returned, at most
/// [`limits::PACKET_MAX_INTERFACES`].
pub fn backend_interfaces(store: &dyn Store, domid: u32) -> Result<Vec<String>, TapError> {
    backend_interfaces_in(store, domid, &|name| {
        std::path::Path::new("/sys/class/net").join(name).exists()
    })
}

fn backend_interfaces_in(
    store: &dyn Store,
    domid: u32,
    exists: &dyn Fn(&str) -> bool,
) -> Result<Vec<String>, TapError> {
    let base = format!("/local/domain/0/backend/vif/{domid}");
    let mut devids: Vec<u32> = store
        .directory(&base)?
        .iter()
        .filter_map(|d| d.parse().ok())
        .collect();
    devids.sort_unstable();
    let mut out = Vec::new();
    for devid in devids {
        let name = store
            .read(&format!("{base}/{devid}/vifname"))?
            .filter(|n| valid_name(n))
            .unwrap_or_else(|| format!("vif{domid}.{devid}"));
        for candidate in [name.clone(), format!("{name}-emu")] {
            if valid_name(&candidate) && exists(&candidate) && !out.contains(&candidate) {
                out.push(candidate);
            }
        }
        if out.len() >= limits::PACKET_MAX_INTERFACES {
            out.truncate(limits::PACKET_MAX_INTERFACES);
            break;
        }
    }
    if out.is_empty() {
        return Err(TapError::NoInterface(domid));
    }
    Ok(out)
}

/// Whether `name` can be a Linux interface name: 1 to 15 bytes of letters, digits and
/// `.-_`, not `.` or `..` (the kernel's `dev_valid_name` is laxer; nothing vmark captures
/// on needs more).
pub fn valid_name(name: &str) -> bool {
    (1..16).contains(&name.len())
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

impl PacketTap {
    /// Opens a capture on each of `interfaces` with `filter` (tcpdump syntax; every packet
    /// without one), keeping the first `snaplen` bytes of each packet, and starts its
    /// thread. Fails as a whole when one interface cannot be opened.
    pub fn open(
        interfaces: &[String],
        filter: Option<&str>,
        snaplen: u32,
    ) -> Result<PacketTap, TapError> {
        let snaplen = snaplen.clamp(64, limits::PACKET_MAX_SNAPLEN);
        let mut captures = Vec::new();
        for name in interfaces {
            if !valid_name(name) {
                return Err(TapError::BadName(name.clone()));
            }
            if !std::path::Path::new("/sys/class/net").join(name).exists() {
                return Err(TapError::NoSuchInterface(name.clone()));
            }
            captures.push(open_one(name, filter, snaplen)?);
        }
        let (tx, rx) = mpsc::channel(limits::PACKET_QUEUE);
        // The tap exists before its threads, so that one failing to start stops and joins
        // those already running (its Drop).
        let mut tap = PacketTap {
            rx,
            stop: Arc::new(AtomicBool::new(false)),
            breaks: Vec::new(),
            threads: Vec::new(),
            counters: Arc::new(Counters::default()),
            interfaces: interfaces.to_vec(),
            snaplen,
        };
        for (i, mut cap) in captures.into_iter().enumerate() {
            tap.breaks.push(cap.breakloop_handle());
            let (tx, stop, counters) = (tx.clone(), tap.stop.clone(), tap.counters.clone());
            let name = interfaces[i].clone();
            let index = u32::try_from(i).unwrap_or(u32::MAX);
            let thread = std::thread::Builder::new()
                .name(format!("vmark-tap-{name}"))
                .spawn(move || capture_loop(cap, index, name, tx, stop, counters))
                .map_err(TapError::Spawn)?;
            tap.threads.push(thread);
        }
        Ok(tap)
    }

    /// The captured interfaces, in the order packets' `interface` indexes.
    pub fn interfaces(&self) -> &[String] {
        &self.interfaces
    }

    /// The next event; `None` when every capture has ended.
    pub async fn recv(&mut self) -> Option<TapEvent> {
        self.rx.recv().await
    }

    /// An event already queued, without waiting.
    pub fn try_recv(&mut self) -> Option<TapEvent> {
        self.rx.try_recv().ok()
    }

    /// What the tap has seen so far.
    pub fn stats(&self) -> TapStats {
        TapStats {
            received: self.counters.received.load(Ordering::Relaxed),
            queue_dropped: self.counters.queue_dropped.load(Ordering::Relaxed),
            kernel_dropped: self.counters.kernel_dropped.load(Ordering::Relaxed),
        }
    }

    /// Stops the captures and waits for their threads (each woken out of libpcap's wait);
    /// returns the final counters. What they queued can still be taken with
    /// [`PacketTap::try_recv`].
    pub fn finish(&mut self) -> TapStats {
        self.shut();
        self.stats()
    }

    fn shut(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for b in &self.breaks {
            b.breakloop();
        }
        // The threads never wait for room in the queue, so they end on their own; what
        // they queue on the way out can still be received.
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        self.rx.close();
    }
}

impl Drop for PacketTap {
    fn drop(&mut self) {
        self.shut();
    }
}

fn pcap_error<'a>(what: &'static str, iface: &'a str) -> impl Fn(pcap::Error) -> TapError + 'a {
    move |e| TapError::Pcap {
        what,
        iface: iface.to_string(),
        why: e.to_string(),
    }
}

fn open_one(
    name: &str,
    filter: Option<&str>,
    snaplen: u32,
) -> Result<pcap::Capture<pcap::Active>, TapError> {
    let mut cap = pcap::Capture::from_device(name)
        .map_err(pcap_error("opening", name))?
        .snaplen(i32::try_from(snaplen).unwrap_or(i32::MAX))
        .promisc(false)
        // Each packet handed over as it arrives, not batched. pcap_breakloop ends a wait;
        // the timeout is a backstop for a libpcap whose waits it cannot end.
        .immediate_mode(true)
        .timeout(limits::PACKET_POLL_MS)
        .buffer_size(limits::PACKET_KERNEL_BUFFER)
        .precision(pcap::Precision::Nano)
        .open()
        .map_err(pcap_error("opening", name))?;
    if let Some(f) = filter {
        cap.filter(f, true)
            .map_err(pcap_error("compiling the filter for", name))?;
    }
    Ok(cap)
}

/// Hands `packet` to the watch, or counts it dropped when the queue is full; false when the
/// watch is gone.
fn hand_over(tx: &mpsc::Sender<TapEvent>, packet: Packet, counters: &Counters) -> bool {
    counters.received.fetch_add(1, Ordering::Relaxed);
    match tx.try_send(TapEvent::Packet(packet)) {
        Ok(()) => true,
        Err(mpsc::error::TrySendError::Full(_)) => {
            counters.queue_dropped.fetch_add(1, Ordering::Relaxed);
            true
        }
        Err(mpsc::error::TrySendError::Closed(_)) => false,
    }
}

fn packet_of(p: &pcap::Packet<'_>, interface: u32) -> Packet {
    Packet {
        interface,
        t_ns: timestamp_ns(p.header.ts.tv_sec, p.header.ts.tv_usec),
        original_len: p.header.len,
        data: p.data.to_vec(),
    }
}

fn capture_loop(
    mut cap: pcap::Capture<pcap::Active>,
    index: u32,
    name: String,
    tx: mpsc::Sender<TapEvent>,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
) {
    let mut kernel_dropped_before = 0u64;
    let mut read_kernel_drops = |cap: &mut pcap::Capture<pcap::Active>| {
        if let Ok(s) = cap.stats() {
            let now = u64::from(s.dropped);
            counters
                .kernel_dropped
                .fetch_add(now.saturating_sub(kernel_dropped_before), Ordering::Relaxed);
            kernel_dropped_before = now;
        }
    };
    let why = loop {
        if stop.load(Ordering::Relaxed) {
            break None;
        }
        match cap.next_packet() {
            Ok(p) => {
                if !hand_over(&tx, packet_of(&p, index), &counters) {
                    break None;
                }
            }
            Err(_) if stop.load(Ordering::Relaxed) => break None,
            Err(pcap::Error::TimeoutExpired) => read_kernel_drops(&mut cap),
            Err(e) => break Some(e.to_string()),
        }
    };
    read_kernel_drops(&mut cap);
    match why {
        Some(why) => {
            // try_send: a full queue loses this message, never blocks the thread; the
            // watch then learns of the end when every capture's sender is gone.
            let _ = tx.try_send(TapEvent::Ended {
                interface: name,
                why,
            });
        }
        None => drain(cap, index, &tx, &counters),
    }
}

/// What the kernel still holds for a capture that was told to stop, read without waiting
/// (at most a queue's worth), so the packets captured before the end are counted. (One
/// per interface can still be lost: libpcap's read that reports the break has taken a
/// frame first.)
fn drain(
    cap: pcap::Capture<pcap::Active>,
    index: u32,
    tx: &mpsc::Sender<TapEvent>,
    counters: &Counters,
) {
    let Ok(mut cap) = cap.setnonblock() else {
        return;
    };
    // The first read may only report the pcap_breakloop that has not been seen yet.
    let mut break_seen = false;
    for _ in 0..limits::PACKET_QUEUE {
        match cap.next_packet() {
            Ok(p) => {
                if !hand_over(tx, packet_of(&p, index), counters) {
                    return;
                }
            }
            Err(pcap::Error::NoMorePackets) if !break_seen => break_seen = true,
            Err(_) => return,
        }
    }
}

/// A nanosecond-precision pcap timestamp (seconds, nanoseconds in `tv_usec`) as Unix ns;
/// 0 for one before the epoch.
fn timestamp_ns(sec: i64, nsec: i64) -> u64 {
    let (Ok(s), Ok(n)) = (u64::try_from(sec), u64::try_from(nsec)) else {
        return 0;
    };
    s.saturating_mul(1_000_000_000).saturating_add(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest::test_store::MapStore;
    use std::time::Duration;

    fn store(entries: &[(&str, &str)]) -> MapStore {
        MapStore(
            entries
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn interfaces_come_from_the_backend_tree_and_must_exist() {
        let s = store(&[
            ("/local/domain/0/backend/vif/7/1/state", "4"),
            ("/local/domain/0/backend/vif/7/0/state", "4"),
            ("/local/domain/0/backend/vif/7/0/vifname", "web0"),
            ("/local/domain/0/backend/vif/7/junk/state", "4"),
            ("/local/domain/0/backend/vif/8/0/state", "4"),
        ]);
        let here = ["web0", "vif7.1", "vif7.1-emu", "vif8.0"];
        let exists = |n: &str| here.contains(&n);
        assert_eq!(
            backend_interfaces_in(&s, 7, &exists).unwrap(),
            vec!["web0", "vif7.1", "vif7.1-emu"]
        );
        // Listed but not present here: no interface.
        assert!(matches!(
            backend_interfaces_in(&s, 8, &|_| false),
            Err(TapError::NoInterface(8))
        ));
        assert!(matches!(
            backend_interfaces_in(&s, 9, &exists),
            Err(TapError::NoInterface(9))
        ));
    }

    #[test]
    fn a_vifname_that_is_no_interface_name_is_not_used() {
        let s = store(&[
            ("/local/domain/0/backend/vif/3/0/vifname", "../../etc"),
            ("/local/domain/0/backend/vif/3/0/state", "4"),
        ]);
        assert_eq!(
            backend_interfaces_in(&s, 3, &|n| n == "vif3.0").unwrap(),
            vec!["vif3.0"]
        );
        for bad in ["", ".", "..", "a/b", "sixteen-bytes-xx", "eth 0", "tab\t"] {
            assert!(!valid_name(bad), "{bad:?}");
        }
        for good in ["vif3.0", "vif12.0-emu", "xenbr_0", "a"] {
            assert!(valid_name(good), "{good:?}");
        }
    }

    #[test]
    fn pcap_times_are_unix_nanoseconds() {
        assert_eq!(timestamp_ns(1, 5), 1_000_000_005);
        assert_eq!(timestamp_ns(-1, 5), 0);
        assert_eq!(timestamp_ns(i64::MAX, 0), u64::MAX);
    }

    /// A real capture (libpcap on the loopback interface; needs root or CAP_NET_RAW, as
    /// `watch --on-packet` does): the filter passes only the datagrams it names, each with
    /// its bytes and a kernel stamp on the recording's clock.
    #[test]
    fn a_capture_on_loopback_sees_the_filtered_datagrams() {
        let sink = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = sink.local_addr().unwrap().port();
        let other = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let filter = format!("udp dst port {port}");
        let mut tap = PacketTap::open(&["lo".into()], Some(&filter), 65535)
            .unwrap_or_else(|e| panic!("capturing on lo (run the tests as root): {e}"));
        let before = crate::sample::now_ns();
        let from = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        from.send_to(b"not this one", other.local_addr().unwrap())
            .unwrap();
        for i in 0..3u8 {
            from.send_to(&[b'v', b'm', i], ("127.0.0.1", port)).unwrap();
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut got = Vec::new();
        rt.block_on(async {
            while got.len() < 3 {
                let ev = tokio::time::timeout(Duration::from_secs(30), tap.recv())
                    .await
                    .expect("no packet within 30 s")
                    .expect("the capture ended");
                match ev {
                    TapEvent::Packet(p) => got.push(p),
                    TapEvent::Ended { why, .. } => panic!("capture ended: {why}"),
                }
            }
        });
        let after = crate::sample::now_ns();
        for (i, p) in got.iter().enumerate() {
            assert_eq!(p.interface, 0);
            assert!(p.data.ends_with(&[b'v', b'm', i as u8]), "{:?}", p.data);
            assert_eq!(p.original_len as usize, p.data.len());
            assert!(
                (before..=after).contains(&p.t_ns),
                "{} not in {before}..{after}",
                p.t_ns
            );
        }
        let stats = tap.finish();
        assert_eq!(stats.received, 3);
        assert_eq!(stats.queue_dropped, 0);
        assert!(tap.try_recv().is_none());
    }

    #[test]
    fn a_filter_that_does_not_compile_is_a_clear_error() {
        let err = PacketTap::open(&["lo".into()], Some("tcp port banana"), 128)
            .err()
            .unwrap();
        assert!(
            matches!(
                err,
                TapError::Pcap {
                    what: "compiling the filter for",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn an_interface_that_does_not_exist_is_refused_before_libpcap() {
        let err = PacketTap::open(&["vmark-none0".into()], None, 128)
            .err()
            .unwrap();
        assert!(matches!(err, TapError::NoSuchInterface(_)), "{err}");
        let err = PacketTap::open(&["bad/name".into()], None, 128)
            .err()
            .unwrap();
        assert!(matches!(err, TapError::BadName(_)), "{err}");
    }
}
