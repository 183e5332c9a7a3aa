//! `vmark`: watch marked kernel variables of Xen guests from dom0.

use clap::{Parser, Subcommand};
use std::process::ExitCode;
use vmark_host::cli_introspect::{self as introspect, SourceFormat};

#[derive(Parser)]
#[command(
    name = "vmark",
    version,
    about = "Watch marked kernel variables inside Xen guests from dom0"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Domains with published marks, and each mark's module, name, type and size.
    ///
    /// With --source, the marks found in a memory dump or live guest's memory itself
    /// (module symbols, no xenstore and no helper module needed).
    List {
        /// Domain name or id (default: every domain that publishes marks).
        #[arg(conflicts_with = "source")]
        domain: Option<String>,
        #[command(flatten)]
        source: MarkSource,
        /// One JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Read marks now and print them decoded.
    ///
    /// `vmark read DOMAIN MARK...` reads what the guest publishes in xenstore (with
    /// --pause, every mark in one pause: one instant of the guest);
    /// `vmark read --source DUMP MARK` finds the mark in the memory of a dump (or of
    /// `xen:DOMAIN`) without xenstore.
    Read {
        /// Domain name or id (with --source: the mark).
        #[arg(value_name = "DOMAIN")]
        domain: String,
        /// Marks, as `module/mark` or `mark`.
        #[arg(value_name = "MARK")]
        marks: Vec<String>,
        #[command(flatten)]
        source: MarkSource,
        /// Follow members and pointers, e.g. 'sk->sk_rcvbuf' or 'demo_tp->snd_cwnd'
        /// (needs --source: pointers are translated through the guest's page tables).
        #[arg(long)]
        path: Option<String>,
        /// Also decode what the value's pointers point to, N levels deep (needs --source;
        /// cycles, NULL and unreadable pointers are reported, not followed).
        #[arg(long, value_name = "N", default_value_t = 0)]
        follow: u32,
        /// One JSON object instead of a tree.
        #[arg(long)]
        json: bool,
        /// Retries of a read that a guest write overlapped.
        #[arg(long, default_value_t = 16)]
        retries: u32,
        /// Pause the domain around the read, once for all marks (reports the pause time).
        #[arg(long)]
        pause: bool,
    },
    /// Sample marks on a timer, on guest triggers and/or on packets to or from the guest.
    ///
    /// Prints "vmark: watching N mark(s) of DOMAIN ..." on stderr once it is listening
    /// (scripts can start the traffic then), and a summary when it ends.
    ///
    /// Faults: a mark withdrawn or republished is reported and remapped; the helper
    /// module reloaded is bound again (triggers resume); the domain destroyed ends the
    /// watch (exit 2) after a last `domain-gone` line; SIGINT, SIGTERM, SIGHUP or SIGQUIT end it
    /// cleanly (exit 0) and never leave a --pause'd guest paused; a lost xenstore watch is
    /// re-established with backoff, else the watch ends (exit 4).
    ///
    /// Recording: lines stay whole. When the recording reaches --record-limit it ends with
    /// a `recording-stopped` line; when a write fails (disk full) the file is cut back to
    /// its last complete line. Either way the watch carries on without recording and says
    /// so on stderr and in the summary; a failed write makes the exit status 3.
    ///
    /// Packets (--on-packet): captured in this domain on the guest's netback interfaces
    /// (vifD.N, from xenstore) or on --on-packet=IFACE, filtered by --filter (tcpdump's
    /// syntax); every packet, or burst of packets queued at once, triggers one capture
    /// (cause "packet", latency_ns from the packet's kernel timestamp). --pcap FILE keeps
    /// the packets as pcapng, stamped on the recording's clock (t_ns, Unix ns).
    #[command(verbatim_doc_comment)]
    Watch {
        /// Domain name or id.
        domain: String,
        /// Marks, as `module/mark` or `mark`.
        #[arg(required = true)]
        marks: Vec<String>,
        /// Sample every PERIOD (e.g. 100ms, 1s).
        #[arg(long, value_parser = parse_duration)]
        every: Option<std::time::Duration>,
        /// Sample when the guest fires VMARK_TRIGGER (event channel).
        #[arg(long)]
        on_trigger: bool,
        /// Sample on each packet to or from the guest, captured on its backend interfaces
        /// (or on IFACE, given as --on-packet=IFACE); no guest cooperation needed.
        #[arg(long, value_name = "IFACE", num_args = 0..=1, require_equals = true,
              default_missing_value = "")]
        on_packet: Option<String>,
        /// Only packets this tcpdump-style expression matches (--on-packet), e.g.
        /// `tcp port 5001`.
        #[arg(long, value_name = "EXPR", requires = "on_packet")]
        filter: Option<String>,
        /// Write the packets that --on-packet captured into FILE as pcapng (capped by
        /// --record-limit too).
        #[arg(long, value_name = "FILE", requires = "on_packet")]
        pcap: Option<std::path::PathBuf>,
        /// Output form.
        #[arg(long, value_enum, default_value = "pretty")]
        format: Format,
        /// Fields to show (CSV columns), e.g. `snd_cwnd,srtt_us`, or derived ones:
        /// `[LABEL=]EXPR[:UNIT]` with C operators, e.g. `srtt_ms=(srtt_us>>3)/1000:ms`.
        #[arg(long, value_delimiter = ',')]
        fields: Vec<String>,
        /// Append every sample to this recording (JSON lines, or binary: --record-format).
        #[arg(long)]
        record: Option<std::path::PathBuf>,
        /// Form of the recording: `json` lines, or `binary` (the manifest once, then each
        /// sample's raw bytes; cheapest to write; `vmark convert` turns it into JSON lines,
        /// `vmark plot` reads it as it is).
        #[arg(long, value_enum, default_value = "json", requires = "record")]
        record_format: RecordFormatArg,
        /// Largest recording (e.g. 100M, 2G); then it stops and the watch carries on.
        #[arg(long, value_parser = parse_size, default_value = "1G")]
        record_limit: u64,
        /// Sampling rounds per second at most; wake-ups over it are folded into the next
        /// round (their triggers stay counted) and reported in the summary.
        #[arg(long, default_value_t = vmark_proto::limits::WATCH_DEFAULT_MAX_RATE,
              value_parser = clap::value_parser!(u32).range(1..=vmark_proto::limits::WATCH_MAX_RATE as i64))]
        max_rate: u32,
        /// Stop after N samples.
        #[arg(long)]
        count: Option<u64>,
        /// Stop after this long (e.g. 30s).
        #[arg(long, value_parser = parse_duration)]
        duration: Option<std::time::Duration>,
        /// Retries of a read that a guest write overlapped.
        #[arg(long, default_value_t = 16)]
        retries: u32,
        /// Pause the domain around each read (reports the pause time).
        #[arg(long)]
        pause: bool,
        /// Print only the closing summary.
        #[arg(long)]
        quiet: bool,
        /// After each capture, write a memory snapshot of the domain (an ELF core file, as
        /// `vmark snapshot` writes) into this directory, named DOMID-T_NS.core by the
        /// capture's time; an event line says where.
        #[arg(long, value_name = "DIR")]
        snapshot_dir: Option<std::path::PathBuf>,
        /// Snapshots at most (--snapshot-dir).
        #[arg(
            long,
            value_name = "N",
            default_value_t = 10,
            requires = "snapshot_dir"
        )]
        max_snapshots: u64,
    },
    /// Show a built module's marks, or a struct/union layout from its DWARF (like pahole).
    Inspect {
        /// The module (.ko) or object (.o).
        file: std::path::PathBuf,
        /// Print this struct or union's layout, e.g. 'struct tcp_sock'.
        #[arg(long = "type", value_name = "NAME")]
        type_name: Option<String>,
        /// Machine-readable output (schema: vmark_host::layout).
        #[arg(long)]
        json: bool,
    },
    /// Processes of a guest kernel (from a dump or xen:DOMAIN; no offsets needed).
    Ps {
        #[command(flatten)]
        source: Source,
        /// One JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Loaded kernel modules of a guest.
    Modules {
        #[command(flatten)]
        source: Source,
        /// One JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Kernel symbols to addresses, and addresses to symbol+offset.
    Sym {
        #[command(flatten)]
        source: Source,
        /// Symbol names (module symbols too).
        names: Vec<String>,
        /// An address to name as symbol+offset (repeatable).
        #[arg(long, value_name = "ADDR")]
        near: Vec<String>,
        /// One JSON array instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// Read guest virtual memory (kernel, or a process's with --pid).
    ReadVa {
        #[command(flatten)]
        source: Source,
        /// Address: 0x hex, decimal, or symbol[+offset].
        addr: String,
        /// Bytes to read.
        len: u64,
        /// Read in this process's address space.
        #[arg(long)]
        pid: Option<i32>,
        #[command(flatten)]
        dump: DumpStyle,
    },
    /// Read guest physical memory.
    ReadPa {
        #[command(flatten)]
        source: Source,
        /// Physical address: 0x hex or decimal.
        addr: String,
        /// Bytes to read.
        len: u64,
        #[command(flatten)]
        dump: DumpStyle,
    },
    /// Write a guest's memory and vCPU registers as an ELF core file (a snapshot).
    ///
    /// The file is the kind of ELF core QEMU's dump-guest-memory writes, with the guest's
    /// VMCOREINFO: vmark (ps, modules, read --source), drgn and volatility3 open it. A live
    /// domain is paused for the copy (not with --no-pause); a dump is re-written. The file
    /// is readable by its owner only.
    Snapshot {
        /// xen:NAME|ID or a domain name or id (or a memory dump to re-write).
        source: String,
        /// The core file to write (sparse: pages of zeroes take no space).
        file: std::path::PathBuf,
        /// Force the format of a dump file.
        #[arg(long, value_enum)]
        format: Option<SourceFormat>,
        /// Do not pause the domain: the copy is then not one instant of the guest.
        #[arg(long)]
        no_pause: bool,
        /// Report as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Write a binary recording (`watch --record-format binary`) as JSON lines.
    Convert {
        /// The binary recording.
        recording: std::path::PathBuf,
        /// Write here instead of standard output.
        #[arg(short, long)]
        output: Option<std::path::PathBuf>,
    },
    /// Plot fields of a recording over time (SVG, PNG), phases of the run marked.
    Plot {
        /// Recording (JSON lines or binary, from `watch --record`).
        recording: std::path::PathBuf,
        /// Fields of the recorded values, e.g. `snd_cwnd srtt_us`, or derived ones:
        /// `[LABEL=]EXPR[:UNIT]`, e.g. `srtt_ms=(srtt_us>>3)/1000:ms` `in_flight=snd_nxt-snd_una:B`.
        #[arg(required = true)]
        fields: Vec<String>,
        /// Only samples of this mark.
        #[arg(long)]
        mark: Option<String>,
        /// Output file: `.png` is written as PNG, anything else as SVG. Repeatable.
        #[arg(short, long, default_value = "vmark-plot.svg")]
        output: Vec<std::path::PathBuf>,
        /// Phases to mark and summarise: a file of `T_NS LABEL` lines, T_NS in the
        /// recording's clock (nanoseconds since the epoch, as `date +%s%N` prints).
        #[arg(long, value_name = "FILE")]
        phases: Option<std::path::PathBuf>,
        /// Packets to mark under the series: a pcapng file, e.g. from `watch --pcap`
        /// (its times are the recording's clock).
        #[arg(long, value_name = "PCAPNG")]
        packets: Option<std::path::PathBuf>,
    },
}

/// A memory source: a dump file or `xen:DOMAIN`.
#[derive(clap::Args)]
struct Source {
    /// Memory dump (raw, QEMU ELF, xl dump-core, QEMU shared RAM) or xen:NAME|ID.
    source: String,
    /// Force the file format instead of detecting it.
    #[arg(long, value_enum)]
    format: Option<SourceFormat>,
    #[command(flatten)]
    files: introspect::KernelFiles,
}

/// `--source` of list and read.
#[derive(clap::Args)]
struct MarkSource {
    /// Find marks in this memory dump or xen:NAME|ID without xenstore.
    #[arg(long = "source", id = "source", value_name = "SOURCE")]
    dump: Option<String>,
    /// Force the file format instead of detecting it.
    #[arg(long, value_enum, requires = "source")]
    format: Option<SourceFormat>,
    #[command(flatten)]
    files: introspect::KernelFiles,
}

/// How read-va and read-pa print bytes (default: hex dump with ASCII).
#[derive(clap::Args)]
#[group(multiple = false)]
struct DumpStyle {
    /// One line of hex digits.
    #[arg(long)]
    hex: bool,
    /// The raw bytes.
    #[arg(long)]
    raw: bool,
}

impl DumpStyle {
    fn style(&self) -> introspect::Dump {
        match (self.hex, self.raw) {
            (true, _) => introspect::Dump::Hex,
            (_, true) => introspect::Dump::Raw,
            _ => introspect::Dump::Canonical,
        }
    }
}

fn open(
    source: &str,
    format: Option<SourceFormat>,
    files: &introspect::KernelFiles,
) -> Result<introspect::Target, introspect::CliError> {
    Ok(
        introspect::Target::open(&introspect::SourceSpec::parse(source, format)?)?
            .with_files(files.clone()),
    )
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Pretty,
    Json,
    Csv,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum RecordFormatArg {
    Json,
    Binary,
}

/// Parses a size: `4096`, `64K`, `100M`, `2G` (powers of 1024).
fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, 'K' | 'k')) => (&t[..i], 1u64 << 10),
        Some((i, 'M' | 'm')) => (&t[..i], 1 << 20),
        Some((i, 'G' | 'g')) => (&t[..i], 1 << 30),
        _ => (t, 1),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .filter(|&n| n >= vmark_proto::limits::RECORDING_EVENT_RESERVE * 2)
        .ok_or_else(|| format!("{s:?} is not a size like 100M (at least 2K)"))
}

/// Parses `100ms`, `2s`, `1m`, `500us`.
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 100ms or 2s"))?;
    let secs = match unit {
        "ns" => n / 1e9,
        "us" | "µs" => n / 1e6,
        "ms" => n / 1e3,
        "s" | "" => n,
        "m" => n * 60.0,
        _ => return Err(format!("unknown unit {unit:?} (ns, us, ms, s, m)")),
    };
    if !(secs > 0.0 && secs < 1e7) {
        return Err(format!("{s:?} is not a positive duration"));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failed::Status(code)) => ExitCode::from(code),
        Err(Failed::Error(e)) => {
            // Messages may quote what a guest published: escaped, so it cannot steer the
            // terminal.
            eprintln!(
                "vmark: {}",
                vmark_proto::text::escape_controls(&e.to_string())
            );
            ExitCode::FAILURE
        }
    }
}

/// How a command failed: an error to print, or a status already explained on stderr.
enum Failed {
    Error(Box<dyn std::error::Error>),
    #[cfg_attr(not(feature = "xen"), allow(dead_code))]
    Status(u8),
}

impl<E: Into<Box<dyn std::error::Error>>> From<E> for Failed {
    fn from(e: E) -> Self {
        Failed::Error(e.into())
    }
}

fn run(command: Command) -> Result<(), Failed> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match command {
        Command::Plot {
            recording,
            fields,
            mark,
            output,
            phases,
            packets,
        } => {
            let phases = match phases {
                Some(f) => vmark_host::plot::read_phases(&f)?,
                None => Vec::new(),
            };
            let req = vmark_host::plot::PlotRequest {
                fields,
                mark,
                phases,
                outputs: output,
                packets: match packets {
                    Some(f) => vmark_host::pcapng::packet_times(&f)?,
                    None => Vec::new(),
                },
            };
            let summary = vmark_host::plot::plot_recording(&recording, &req)?;
            println!("{summary}");
            Ok(())
        }
        Command::Convert { recording, output } => {
            let done = match output {
                Some(path) => {
                    let same = std::fs::canonicalize(&path)
                        .ok()
                        .is_some_and(|p| std::fs::canonicalize(&recording).ok() == Some(p));
                    if same {
                        return Err("the output is the recording itself: give another file".into());
                    }
                    // Guest data: owner-only, never through a symlink.
                    let file = vmark_host::private_file::create(&path)
                        .map_err(|e| format!("{}: {e}", path.display()))?;
                    let mut w = std::io::BufWriter::new(file);
                    let done = vmark_host::binrec::convert(&recording, &mut w)?;
                    std::io::Write::flush(&mut w)?;
                    done
                }
                None => vmark_host::binrec::convert(&recording, &mut out)?,
            };
            eprintln!(
                "{} samples, {} events; {} frames skipped{}",
                done.samples,
                done.events,
                done.skipped,
                match &done.stopped {
                    Some(why) => format!("; reading stopped {why}"),
                    None => String::new(),
                }
            );
            Ok(())
        }
        Command::Inspect {
            file,
            type_name,
            json,
        } => {
            let opts = vmark_host::inspect::InspectOptions {
                type_name,
                json,
                pointer_depth: 0,
            };
            vmark_host::inspect::inspect(&file, &opts, &mut out)?;
            Ok(())
        }
        Command::Snapshot {
            source,
            file,
            format,
            no_pause,
            json,
        } => {
            // A bare domain name is a domain, unless a file of that name is there.
            let source = if source.starts_with("xen:") || std::path::Path::new(&source).is_file() {
                source
            } else {
                format!("xen:{source}")
            };
            let spec = introspect::SourceSpec::parse(&source, format)?;
            let opts = vmark_host::cli_snapshot::SnapshotOptions { no_pause, json };
            Ok(vmark_host::cli_snapshot::snapshot(
                &spec,
                &introspect::KernelFiles::default(),
                &file,
                opts,
                &mut out,
            )?)
        }
        Command::Ps { source, json } => Ok(introspect::ps(
            &open(&source.source, source.format, &source.files)?,
            json,
            &mut out,
        )?),
        Command::Modules { source, json } => Ok(introspect::modules(
            &open(&source.source, source.format, &source.files)?,
            json,
            &mut out,
        )?),
        Command::Sym {
            source,
            names,
            near,
            json,
        } => {
            if names.is_empty() && near.is_empty() {
                return Err("give symbol names and/or --near ADDR".into());
            }
            let t = open(&source.source, source.format, &source.files)?;
            Ok(introspect::sym(&t, &names, &near, json, &mut out)?)
        }
        Command::ReadVa {
            source,
            addr,
            len,
            pid,
            dump,
        } => {
            let t = open(&source.source, source.format, &source.files)?;
            Ok(introspect::read_va(
                &t,
                &addr,
                len,
                pid,
                dump.style(),
                &mut out,
            )?)
        }
        Command::ReadPa {
            source,
            addr,
            len,
            dump,
        } => {
            let t = open(&source.source, source.format, &source.files)?;
            Ok(introspect::read_pa(&t, &addr, len, dump.style(), &mut out)?)
        }
        Command::List {
            source:
                MarkSource {
                    dump: Some(path),
                    format,
                    files,
                },
            json,
            ..
        } => Ok(introspect::list_marks(
            &open(&path, format, &files)?,
            json,
            &mut out,
        )?),
        Command::Read {
            domain,
            marks,
            source:
                MarkSource {
                    dump: Some(path),
                    format,
                    files,
                },
            path: member_path,
            follow,
            json,
            retries,
            pause,
        } => {
            // With --source the only positional is the mark.
            if !marks.is_empty() {
                return Err(
                    "with --source give only the mark: vmark read --source DUMP MARK".into(),
                );
            }
            if pause {
                return Err("--pause is for live reads through xenstore, not --source".into());
            }
            let t = open(&path, format, &files)?;
            Ok(introspect::read_mark(
                &t,
                &domain,
                &introspect::ReadOptions {
                    path: member_path.as_deref(),
                    follow,
                    json,
                    retries,
                },
                &mut out,
            )?)
        }
        live => run_live(live, &mut out),
    }
}

#[cfg(feature = "xen")]
fn run_live(command: Command, out: &mut dyn std::io::Write) -> Result<(), Failed> {
    use vmark_host::live;
    match command {
        Command::List { domain, json, .. } => live::list(domain.as_deref(), json, out)?,
        Command::Read {
            domain,
            marks,
            path,
            follow,
            json,
            retries,
            pause,
            ..
        } => {
            if marks.is_empty() {
                return Err("give the domain and the marks: vmark read DOMAIN MARK...".into());
            }
            if path.is_some() || follow > 0 {
                return Err(
                    "--path and --follow need a translation source: vmark read --source xen:DOMAIN MARK --path P"
                        .into(),
                );
            }
            live::read(&domain, &marks, json, retries, pause, out)?
        }
        Command::Watch {
            domain,
            marks,
            every,
            on_trigger,
            on_packet,
            filter,
            pcap,
            format,
            fields,
            record,
            record_format,
            record_limit,
            max_rate,
            count,
            duration,
            retries,
            pause,
            quiet,
            snapshot_dir,
            max_snapshots,
        } => {
            let opts = live::WatchOptions {
                domain,
                marks,
                every,
                on_trigger,
                on_packet: on_packet.map(|iface| live::PacketTrigger {
                    interface: (!iface.is_empty()).then_some(iface),
                    filter,
                    pcap,
                }),
                format: match format {
                    Format::Pretty => live::Format::Pretty,
                    Format::Json => live::Format::Json,
                    Format::Csv => live::Format::Csv,
                },
                fields,
                record,
                record_format: match record_format {
                    RecordFormatArg::Json => vmark_host::binrec::RecordFormat::Lines,
                    RecordFormatArg::Binary => vmark_host::binrec::RecordFormat::Binary,
                },
                record_limit,
                count,
                duration,
                retries,
                pause,
                quiet,
                max_rate,
                snapshot_dir,
                max_snapshots,
            };
            let outcome = live::watch(&opts, out)?;
            eprintln!("{}", outcome.stats.summary());
            eprintln!(
                "watch ended: {}",
                vmark_proto::text::escape_controls(&outcome.end.to_string())
            );
            match outcome.exit_code() {
                0 => {}
                c => return Err(Failed::Status(c)),
            }
        }
        _ => unreachable!("handled in run"),
    }
    Ok(())
}

#[cfg(not(feature = "xen"))]
fn run_live(_: Command, _: &mut dyn std::io::Write) -> Result<(), Failed> {
    Err("this vmark was built without Xen support; rebuild with `cargo build --release -p vmark-host --features xen`".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use std::time::Duration;

    fn parse(args: &[&str]) -> Result<Command, clap::Error> {
        Cli::try_parse_from(std::iter::once("vmark").chain(args.iter().copied())).map(|c| c.command)
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn introspection_commands_parse() {
        match parse(&["ps", "d.elf", "--format", "xen-core", "--json"]).unwrap() {
            Command::Ps { source, json } => {
                assert_eq!(source.source, "d.elf");
                assert_eq!(source.format, Some(SourceFormat::XenCore));
                assert!(json);
            }
            _ => panic!("not ps"),
        }
        match parse(&[
            "sym",
            "xen:g",
            "init_task",
            "modules",
            "--near",
            "0xffffffff81000000",
        ])
        .unwrap()
        {
            Command::Sym {
                source,
                names,
                near,
                ..
            } => {
                assert_eq!(source.source, "xen:g");
                assert_eq!(names, ["init_task", "modules"]);
                assert_eq!(near, ["0xffffffff81000000"]);
            }
            _ => panic!("not sym"),
        }
        match parse(&["read-va", "d", "linux_banner", "64", "--raw"]).unwrap() {
            Command::ReadVa {
                addr, len, dump, ..
            } => {
                assert_eq!((addr.as_str(), len), ("linux_banner", 64));
                assert!(dump.style() == introspect::Dump::Raw);
            }
            _ => panic!("not read-va"),
        }
        assert!(parse(&["read-pa", "d", "0x1000", "16", "--raw", "--hex"]).is_err());
        assert!(parse(&["read-pa", "d", "0x1000"]).is_err());
        assert!(parse(&["ps", "d", "--format", "vmdk"]).is_err());
    }

    #[test]
    fn list_and_read_take_a_source() {
        match parse(&[
            "read",
            "--source",
            "d.elf",
            "demo_tp",
            "--path",
            "demo_tp->snd_cwnd",
            "--follow",
            "2",
        ])
        .unwrap()
        {
            Command::Read {
                domain,
                marks,
                source,
                path,
                follow,
                ..
            } => {
                assert_eq!(domain, "demo_tp");
                assert!(marks.is_empty());
                assert_eq!(source.dump.as_deref(), Some("d.elf"));
                assert_eq!(path.as_deref(), Some("demo_tp->snd_cwnd"));
                assert_eq!(follow, 2);
            }
            _ => panic!("not read"),
        }
        match parse(&["read", "guest", "counter", "demo_state", "--pause"]).unwrap() {
            Command::Read {
                domain,
                marks,
                source,
                pause,
                ..
            } => {
                assert_eq!(
                    (domain.as_str(), marks.as_slice(), pause),
                    (
                        "guest",
                        &["counter".to_string(), "demo_state".to_string()][..],
                        true
                    )
                );
                assert!(source.dump.is_none());
            }
            _ => panic!("not read"),
        }
        assert!(parse(&["list", "--source", "d.elf", "--format", "raw"]).is_ok());
        assert!(parse(&["list", "guest", "--source", "d.elf"]).is_err());
        assert!(parse(&["list", "--format", "raw"]).is_err());
    }

    #[test]
    fn sizes_and_watch_limits() {
        assert_eq!(parse_size("64K").unwrap(), 64 << 10);
        assert_eq!(parse_size("2G").unwrap(), 2 << 30);
        assert!(parse_size("1").is_err());
        assert!(parse_size("99999999999999G").is_err());
        match parse(&["watch", "g", "counter", "--every", "1s"]).unwrap() {
            Command::Watch {
                record_limit,
                max_rate,
                ..
            } => {
                assert_eq!(
                    record_limit,
                    vmark_proto::limits::RECORDING_DEFAULT_MAX_BYTES
                );
                assert_eq!(max_rate, vmark_proto::limits::WATCH_DEFAULT_MAX_RATE);
            }
            _ => panic!("not watch"),
        }
        assert!(parse(&["watch", "g", "c", "--max-rate", "0"]).is_err());
    }

    #[test]
    fn on_packet_takes_its_interface_only_after_an_equals_sign() {
        let on_packet = |args: &[&str]| match parse(args).unwrap() {
            Command::Watch {
                marks,
                on_packet,
                filter,
                pcap,
                ..
            } => (marks, on_packet, filter, pcap),
            _ => panic!("not watch"),
        };
        // A mark after a bare --on-packet stays a mark.
        let (marks, iface, filter, pcap) = on_packet(&[
            "watch",
            "g",
            "--on-packet",
            "last_tp",
            "--filter",
            "tcp port 5001",
        ]);
        assert_eq!(marks, ["last_tp"]);
        assert_eq!(iface.as_deref(), Some(""));
        assert_eq!(filter.as_deref(), Some("tcp port 5001"));
        assert!(pcap.is_none());
        let (_, iface, _, pcap) = on_packet(&[
            "watch",
            "g",
            "m",
            "--on-packet=vif3.0",
            "--pcap",
            "p.pcapng",
        ]);
        assert_eq!(iface.as_deref(), Some("vif3.0"));
        assert_eq!(pcap.as_deref(), Some(std::path::Path::new("p.pcapng")));
        let (_, iface, ..) = on_packet(&["watch", "g", "m", "--every", "1s"]);
        assert!(iface.is_none());
        // --filter and --pcap mean nothing without --on-packet.
        assert!(parse(&["watch", "g", "m", "--every", "1s", "--filter", "tcp"]).is_err());
        assert!(parse(&["watch", "g", "m", "--every", "1s", "--pcap", "x"]).is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("100ms").unwrap(), Duration::from_millis(100));
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("250us").unwrap(), Duration::from_micros(250));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }
}
