//! Packets as pcapng files: the log `watch --on-packet --pcap FILE` writes (the packets
//! that triggered captures, timestamped on the recording's clock) and the packet times
//! `vmark plot --packets FILE` marks on a series.
//!
//! The blocks are the `pcap-file` crate's; this module only decides what goes in them:
//! one interface per captured device, nanosecond timestamps (Unix time, as the recording's
//! `t_ns`), and a size limit after which the log stops whole rather than filling the disk.

use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::{Block, PcapNgReader, PcapNgWriter};
use pcap_file::DataLink;
use std::borrow::Cow;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why a packet file could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum PcapError {
    /// The file could not be created, written or read.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not pcapng as the crate reads it.
    #[error("{path}: not a pcapng file vmark can read: {why}")]
    Format {
        /// File.
        path: String,
        /// What the reader said.
        why: String,
    },
}

/// A pcapng log of captured packets, written as they come.
pub struct PacketLog {
    writer: PcapNgWriter<BufWriter<std::fs::File>>,
    path: PathBuf,
    interfaces: u32,
    bytes: u64,
    limit: u64,
    /// Packets written.
    pub packets: u64,
    /// Packets not written because the log reached its limit or a write failed.
    pub not_written: u64,
    stopped: Option<String>,
}

/// Bytes a packet's block takes besides its data (block header and trailer, interface id,
/// timestamp, lengths) and the data's padding to 4 bytes, at most.
const BLOCK_OVERHEAD: u64 = 32 + 3;

impl PacketLog {
    /// Creates `path` (truncated; owner-only, as packets carry the guest's traffic) and
    /// writes the section header and one interface block per name in `interfaces`, each
    /// with `snaplen` and nanosecond timestamps. The log stops at `limit` bytes.
    pub fn create(
        path: &Path,
        interfaces: &[String],
        snaplen: u32,
        limit: u64,
    ) -> Result<PacketLog, PcapError> {
        let io = |source| PcapError::Io {
            path: path.display().to_string(),
            source,
        };
        let file = crate::private_file::create(path).map_err(io)?;
        let mut writer = PcapNgWriter::new(BufWriter::new(file)).map_err(|e| to_io(path, e))?;
        let mut bytes = 28u64;
        for name in interfaces {
            let idb = InterfaceDescriptionBlock {
                linktype: DataLink::ETHERNET,
                snaplen,
                options: vec![
                    InterfaceDescriptionOption::IfName(Cow::Owned(name.clone())),
                    // Timestamps in nanoseconds (the option's value 9: 10^-9 s).
                    InterfaceDescriptionOption::IfTsResol(9),
                ],
            };
            bytes += writer.write_pcapng_block(idb).map_err(|e| to_io(path, e))? as u64;
        }
        Ok(PacketLog {
            writer,
            path: path.to_path_buf(),
            interfaces: u32::try_from(interfaces.len()).unwrap_or(u32::MAX),
            bytes,
            limit,
            packets: 0,
            not_written: 0,
            stopped: None,
        })
    }

    /// Appends one packet of interface `interface` (an index into the names given to
    /// [`PacketLog::create`]) taken at `t_ns` (Unix ns), `original_len` bytes on the wire of
    /// which `data` were captured. A packet past the limit, or after a write failed, is
    /// counted as not written.
    pub fn append(&mut self, interface: u32, t_ns: u64, original_len: u32, data: &[u8]) {
        if self.stopped.is_some() || interface >= self.interfaces {
            self.not_written += 1;
            return;
        }
        let size = BLOCK_OVERHEAD + data.len() as u64;
        if self.bytes.saturating_add(size) > self.limit {
            self.stop(format!("it reached its limit of {} bytes", self.limit));
            self.not_written += 1;
            return;
        }
        let block = EnhancedPacketBlock {
            interface_id: interface,
            timestamp: Duration::from_nanos(t_ns),
            original_len,
            data: Cow::Borrowed(data),
            options: vec![],
        };
        match self.writer.write_pcapng_block(block) {
            Ok(n) => {
                self.bytes += n as u64;
                self.packets += 1;
            }
            Err(e) => {
                self.stop(format!("writing failed: {e}"));
                self.not_written += 1;
            }
        }
    }

    fn stop(&mut self, why: String) {
        let _ = self.writer.get_mut().flush();
        self.stopped = Some(why);
    }

    /// Writes what is buffered out (a packet is then whole in the file).
    pub fn flush(&mut self) {
        if self.stopped.is_none() {
            if let Err(e) = self.writer.get_mut().flush() {
                self.stop(format!("writing failed: {e}"));
            }
        }
    }

    /// Why the log stopped before the end, if it did.
    pub fn stopped(&self) -> Option<&str> {
        self.stopped.as_deref()
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes written.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// A one-line account for the watch's summary.
    pub fn summary(&self) -> String {
        match &self.stopped {
            Some(why) => format!(
                "{}: {} packets, then stopped: {why}; {} packets not written",
                self.path.display(),
                self.packets,
                self.not_written
            ),
            None => format!(
                "{}: {} packets, {} bytes",
                self.path.display(),
                self.packets,
                self.bytes
            ),
        }
    }
}

impl Drop for PacketLog {
    fn drop(&mut self) {
        let _ = self.writer.get_mut().flush();
    }
}

fn to_io(path: &Path, e: pcap_file::PcapError) -> PcapError {
    match e {
        pcap_file::PcapError::IoError(source) => PcapError::Io {
            path: path.display().to_string(),
            source,
        },
        other => PcapError::Format {
            path: path.display().to_string(),
            why: other.to_string(),
        },
    }
}

/// Most packet times [`packet_times`] returns: a plot marks each, so the count is bounded
/// whatever the file holds.
pub const MAX_PACKET_TIMES: usize = 1_000_000;

/// The time (Unix ns) of every packet in the pcapng file at `path`, in file order, at most
/// [`MAX_PACKET_TIMES`]; each interface's timestamp resolution honoured (microseconds when
/// it names none, as the format says).
pub fn packet_times(path: &Path) -> Result<Vec<u64>, PcapError> {
    let file = std::fs::File::open(path).map_err(|source| PcapError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let mut reader =
        PcapNgReader::new(std::io::BufReader::new(file)).map_err(|e| to_io(path, e))?;
    // Each interface's ticks per second, in the order of its description block.
    let mut ticks_per_s: Vec<u64> = Vec::new();
    let mut out = Vec::new();
    while let Some(block) = reader.next_block() {
        match block.map_err(|e| to_io(path, e))? {
            Block::SectionHeader(_) => ticks_per_s.clear(),
            Block::InterfaceDescription(idb) => {
                let resol = idb.options.iter().find_map(|o| match o {
                    InterfaceDescriptionOption::IfTsResol(r) => Some(*r),
                    _ => None,
                });
                ticks_per_s.push(ticks(resol.unwrap_or(6)));
            }
            Block::EnhancedPacket(epb) => {
                let per_s = ticks_per_s
                    .get(epb.interface_id as usize)
                    .copied()
                    .unwrap_or(1_000_000);
                // The crate hands the raw 64-bit timestamp over as nanoseconds.
                let raw = u64::try_from(epb.timestamp.as_nanos()).unwrap_or(u64::MAX);
                out.push(to_ns(raw, per_s));
                if out.len() >= MAX_PACKET_TIMES {
                    break;
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Ticks per second of an `if_tsresol` value: 10^r, or 2^r with the high bit set; 0 for a
/// resolution finer than a nanosecond's 2^-63 (which no u64 count can express).
fn ticks(resol: u8) -> u64 {
    let exp = u32::from(resol & 0x7f);
    if resol & 0x80 != 0 {
        1u64.checked_shl(exp).unwrap_or(0)
    } else {
        10u64.checked_pow(exp).unwrap_or(0)
    }
}

/// `raw` ticks of `per_s` per second as nanoseconds (saturating; 0 ticks per second reads
/// as nanoseconds).
fn to_ns(raw: u64, per_s: u64) -> u64 {
    match per_s {
        0 | 1_000_000_000 => raw,
        p => {
            let ns = u128::from(raw) * 1_000_000_000 / u128::from(p);
            u64::try_from(ns).unwrap_or(u64::MAX)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_reads_back_with_nanosecond_times_and_stops_at_its_limit() {
        let dir = std::env::temp_dir().join(format!("vmark-pcapng-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.pcapng");
        let names = vec!["vif3.0".to_string(), "vif3.0-emu".to_string()];
        let mut log = PacketLog::create(&path, &names, 65535, 400).unwrap();
        let t = 1_795_436_969_602_146_938u64;
        log.append(0, t, 60, &[0xaa; 60]);
        log.append(1, t + 7, 1514, &[0x55; 100]);
        // An interface the log does not have.
        log.append(2, t + 9, 60, &[0; 60]);
        assert_eq!((log.packets, log.not_written), (2, 1));
        assert!(log.stopped().is_none());
        // Over the limit: not written, and nothing after it either.
        log.append(0, t + 11, 600, &[0; 600]);
        log.append(0, t + 12, 10, &[0; 10]);
        assert_eq!((log.packets, log.not_written), (2, 3));
        assert!(log.stopped().unwrap().contains("limit of 400"));
        assert!(log.summary().contains("2 packets, then stopped"));
        drop(log);
        assert_eq!(packet_times(&path).unwrap(), vec![t, t + 7]);
        assert!(std::fs::metadata(&path).unwrap().len() <= 400);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_log_is_not_written_through_a_symlink() {
        let dir = std::env::temp_dir().join(format!("vmark-pcapng-l-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let target = dir.join("target");
        std::fs::write(&target, b"keep").unwrap();
        let link = dir.join("link.pcapng");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(PacketLog::create(&link, &["x".into()], 100, 1 << 20).is_err());
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_file_that_is_not_pcapng_is_an_error() {
        let dir = std::env::temp_dir().join(format!("vmark-pcapng-b-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad");
        std::fs::write(&path, b"not a capture at all, no").unwrap();
        assert!(packet_times(&path).is_err());
        assert!(packet_times(&dir.join("absent")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn timestamp_resolutions_convert_to_nanoseconds() {
        assert_eq!(ticks(6), 1_000_000);
        assert_eq!(ticks(9), 1_000_000_000);
        assert_eq!(ticks(0x80 | 10), 1024);
        assert_eq!(ticks(0x7f), 0);
        assert_eq!(to_ns(1_500_000, ticks(6)), 1_500_000_000);
        assert_eq!(to_ns(42, ticks(9)), 42);
        assert_eq!(to_ns(1024, ticks(0x80 | 10)), 1_000_000_000);
        assert_eq!(to_ns(u64::MAX, ticks(3)), u64::MAX);
    }
}
