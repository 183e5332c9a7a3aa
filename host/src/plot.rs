//! `vmark plot`: time series of recorded fields, one panel per field (their scales differ:
//! a congestion window in segments, an RTT in microseconds, a byte counter in megabytes),
//! with phases of the experiment marked and summarised, as SVG and PNG.

use crate::expr::{FieldExpr, Num};
use crate::sample::{json_field, read_recording};
use plotters::prelude::*;
use std::path::Path;

/// Why a plot could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// The recording could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// File.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Nothing to plot.
    #[error("no samples with field {0:?} in the recording (fields are paths into the recorded `value`, e.g. snd_cwnd or icsk.icsk_rto)")]
    NoData(String),
    /// A derived field does not parse.
    #[error(transparent)]
    Expr(#[from] crate::expr::ExprError),
    /// Drawing failed.
    #[error("drawing {0}")]
    Draw(String),
    /// A phases file is not as documented.
    #[error("phases file {path}: {why}")]
    Phases {
        /// File.
        path: String,
        /// What is wrong.
        why: String,
    },
    /// An output could not be written.
    #[error("writing {path}: {source}")]
    Write {
        /// File.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// One field's series: (seconds since the first sample, value).
pub type Series = Vec<(f64, f64)>;

/// Extracts each field's numeric series from a recording (booleans as 0/1).
pub fn series(
    path: &Path,
    fields: &[String],
    mark: Option<&str>,
) -> Result<Vec<Series>, PlotError> {
    series_from(path, fields, mark).map(|(s, _)| s)
}

/// [`series`], and the time (ns since the epoch) that x = 0 stands for.
pub fn series_from(
    path: &Path,
    fields: &[String],
    mark: Option<&str>,
) -> Result<(Vec<Series>, u64), PlotError> {
    let (samples, _) = read_recording(path).map_err(|source| PlotError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let samples: Vec<_> = samples
        .into_iter()
        .filter(|s| mark.is_none_or(|m| s.mark == m || s.mark.ends_with(&format!("/{m}"))))
        .collect();
    let t0 = samples.iter().map(|s| s.t_ns).min().unwrap_or(0);
    let mut out = Vec::new();
    for f in fields {
        let expr = FieldExpr::parse(f)?;
        let pts: Series = samples
            .iter()
            .filter_map(|s| {
                let y = expr
                    .eval(&|i| number(field_of(s, &expr.fields[i])?))
                    .ok()?
                    .as_f64();
                // An infinite result (a float overflowing) has no place on an axis.
                y.is_finite()
                    .then(|| ((s.t_ns.saturating_sub(t0)) as f64 / 1e9, y))
            })
            .collect();
        if pts.is_empty() {
            return Err(PlotError::NoData(f.clone()));
        }
        out.push(pts);
    }
    Ok((out, t0))
}

/// A field of a recorded sample's value. As in `watch --fields`, a path may start with the
/// mark's own name: `counter` is a scalar mark `counter`'s value, `demo_hist[3]` an element.
fn field_of<'a>(s: &'a crate::sample::RecordedSample, path: &str) -> Option<&'a serde_json::Value> {
    json_field(&s.value, path).or_else(|| {
        let name = s.mark.rsplit('/').next()?;
        let rest = path.strip_prefix(name)?;
        match rest.as_bytes().first() {
            None => Some(&s.value),
            Some(b'.') => json_field(&s.value, &rest[1..]),
            Some(b'[') => json_field(&s.value, rest),
            Some(_) => None,
        }
    })
}

/// A recorded leaf as a number: integers exact, booleans 0/1.
fn number(v: &serde_json::Value) -> Option<Num> {
    if let Some(i) = v.as_i64() {
        return Some(Num::Int(i.into()));
    }
    if let Some(u) = v.as_u64() {
        return Some(Num::Int(u.into()));
    }
    v.as_f64()
        .map(Num::Float)
        .or_else(|| v.as_bool().map(|b| Num::Int(i128::from(b))))
}

/// A named stretch of a recording: from `start_ns` (the recording's clock, nanoseconds
/// since the Unix epoch, as `date +%s%N` prints) to the next phase's start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phase {
    /// When it starts.
    pub start_ns: u64,
    /// What it is called (shown on the plot and in the summary).
    pub label: String,
}

/// Most phases a file may name (a user's file, still bounded).
const MAX_PHASES: usize = 64;
/// Longest phase label kept.
const MAX_LABEL: usize = 80;

/// Reads a phases file: one `T_NS LABEL` line per phase, in any order; blank lines and
/// lines starting with `#` are skipped.
pub fn read_phases(path: &Path) -> Result<Vec<Phase>, PlotError> {
    let bad = |line: usize, why: &str| PlotError::Phases {
        path: path.display().to_string(),
        why: format!("line {line}: {why}"),
    };
    let text = std::fs::read(path).map_err(|source| PlotError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let text = String::from_utf8_lossy(&text);
    let mut phases = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (t, label) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let start_ns = t.parse::<u64>().map_err(|_| {
            bad(
                i + 1,
                "not `T_NS LABEL` (T_NS: nanoseconds since the epoch)",
            )
        })?;
        if phases.len() == MAX_PHASES {
            return Err(bad(i + 1, &format!("more than {MAX_PHASES} phases")));
        }
        let label: String = match label.trim() {
            "" => format!("phase {}", phases.len() + 1),
            l => vmark_proto::text::escape(l)
                .chars()
                .take(MAX_LABEL)
                .collect(),
        };
        phases.push(Phase { start_ns, label });
    }
    phases.sort_by_key(|p| p.start_ns);
    Ok(phases)
}

/// One field's figures within one phase.
#[derive(Debug, Clone, PartialEq)]
pub struct PhaseStats {
    /// The phase's label (empty before the first phase).
    pub phase: String,
    /// The field's title (label and unit).
    pub field: String,
    /// Points in the phase.
    pub points: usize,
    /// Smallest, median and largest value, and the last minus the first.
    pub min: f64,
    /// Median.
    pub median: f64,
    /// Largest.
    pub max: f64,
    /// Last value minus the first: what a counter gained during the phase.
    pub change: f64,
}

/// Each field's figures per phase (phases without points are left out). `t0_ns` is the
/// time that the series' x = 0 stands for.
pub fn phase_stats(
    all: &[Series],
    fields: &[String],
    phases: &[Phase],
    t0_ns: u64,
) -> Result<Vec<PhaseStats>, PlotError> {
    let bounds = phase_bounds(phases, t0_ns);
    let mut out = Vec::new();
    for (pts, field) in all.iter().zip(fields) {
        let title = FieldExpr::parse(field)?.title();
        for (label, x0, x1) in &bounds {
            let mut ys: Vec<f64> = pts
                .iter()
                .filter(|(x, _)| x >= x0 && x < x1)
                .map(|&(_, y)| y)
                .collect();
            let (Some(&first), Some(&last)) = (ys.first(), ys.last()) else {
                continue;
            };
            ys.sort_by(f64::total_cmp);
            out.push(PhaseStats {
                phase: label.clone(),
                field: title.clone(),
                points: ys.len(),
                min: ys[0],
                median: ys[ys.len() / 2],
                max: ys[ys.len() - 1],
                change: last - first,
            });
        }
    }
    Ok(out)
}

/// Phases as (label, start, end) in seconds since `t0_ns`; what comes before the first
/// phase is a phase without a label.
fn phase_bounds(phases: &[Phase], t0_ns: u64) -> Vec<(String, f64, f64)> {
    let secs = |ns: u64| ns.saturating_sub(t0_ns) as f64 / 1e9;
    let mut out = Vec::new();
    match phases.first() {
        Some(p) if p.start_ns > t0_ns => out.push((String::new(), 0.0, secs(p.start_ns))),
        None => out.push((String::new(), 0.0, f64::INFINITY)),
        _ => {}
    }
    for (i, p) in phases.iter().enumerate() {
        let end = phases
            .get(i + 1)
            .map_or(f64::INFINITY, |n| secs(n.start_ns));
        out.push((p.label.clone(), secs(p.start_ns), end));
    }
    out
}

/// What [`plot_recording`] draws and writes.
#[derive(Debug, Clone, Default)]
pub struct PlotRequest {
    /// Fields or derived fields, one panel each.
    pub fields: Vec<String>,
    /// Only samples of this mark.
    pub mark: Option<String>,
    /// Phases to mark on every panel and to summarise.
    pub phases: Vec<Phase>,
    /// Files to write: `.png` ones as PNG, the others as SVG.
    pub outputs: Vec<std::path::PathBuf>,
    /// Times of packets (Unix ns, e.g. from a `watch --pcap` file) to mark under every
    /// panel's series.
    pub packets: Vec<u64>,
}

/// Columns packet marks are gathered into across a panel: one mark per column that has
/// packets, so a million packets draw as a bounded number of lines.
const PACKET_COLUMNS: usize = 2000;

/// The x positions (seconds since `t0_ns`) of the packets that fall in `x0..=x1`, one per
/// occupied column of [`PACKET_COLUMNS`].
fn packet_marks(packets: &[u64], t0_ns: u64, x0: f64, x1: f64) -> Vec<f64> {
    let width = (x1 - x0).max(f64::MIN_POSITIVE);
    let mut used = vec![false; PACKET_COLUMNS];
    let mut out = Vec::new();
    for &t in packets {
        let Some(ns) = t.checked_sub(t0_ns) else {
            continue;
        };
        let x = ns as f64 / 1e9;
        if !(x0..=x1).contains(&x) {
            continue;
        }
        let col = (((x - x0) / width) * (PACKET_COLUMNS - 1) as f64) as usize;
        if let Some(u) = used.get_mut(col) {
            if !*u {
                *u = true;
                out.push(x);
            }
        }
    }
    out
}

/// Plots the recording at `path` as `req` asks; returns a summary: the files written and,
/// with phases, each field's figures per phase.
pub fn plot_recording(path: &Path, req: &PlotRequest) -> Result<String, PlotError> {
    let (mut all, mut t0_ns) = series_from(path, &req.fields, req.mark.as_deref())?;
    // Packets before the first sample (the one that caused it, at least) are on the plot
    // too: x = 0 is then the first packet.
    if let Some(&first) = req.packets.iter().min() {
        if first < t0_ns {
            let shift = (t0_ns - first) as f64 / 1e9;
            for pts in &mut all {
                for p in pts.iter_mut() {
                    p.0 += shift;
                }
            }
            t0_ns = first;
        }
    }
    let svg = draw_svg(&all, &req.fields, &req.phases, &req.packets, t0_ns)?;
    let mut summary = String::new();
    for out in &req.outputs {
        let png = out
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("png"));
        let write = |bytes: &[u8]| {
            std::fs::write(out, bytes).map_err(|source| PlotError::Write {
                path: out.display().to_string(),
                source,
            })
        };
        if png {
            write(&render_png(&svg)?)?;
        } else {
            write(svg.as_bytes())?;
        }
        summary += &format!(
            "wrote {} ({} fields, {} points{}{})\n",
            out.display(),
            all.len(),
            all.iter().map(Vec::len).sum::<usize>(),
            if req.phases.is_empty() {
                String::new()
            } else {
                format!(", {} phases", req.phases.len())
            },
            if req.packets.is_empty() {
                String::new()
            } else {
                format!(", {} packets marked", req.packets.len())
            }
        );
    }
    if !req.phases.is_empty() {
        summary += &format!(
            "{:<28} {:<24} {:>7} {:>12} {:>12} {:>12} {:>12}\n",
            "phase", "field", "points", "min", "median", "max", "change"
        );
        for s in phase_stats(&all, &req.fields, &req.phases, t0_ns)? {
            let phase = if s.phase.is_empty() {
                "(before)"
            } else {
                &s.phase
            };
            summary += &format!(
                "{:<28} {:<24} {:>7} {:>12} {:>12} {:>12} {:>12}\n",
                phase,
                s.field,
                s.points,
                figure(s.min),
                figure(s.median),
                figure(s.max),
                figure(s.change)
            );
        }
    }
    Ok(summary.trim_end().to_string())
}

/// A figure for the summary: integers as such, fractions to 3 decimals.
fn figure(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v:.3}")
    }
}

/// The plot as an SVG document: one panel per field, phases shaded and labelled.
fn draw_svg(
    all: &[Series],
    fields: &[String],
    phases: &[Phase],
    packets: &[u64],
    t0_ns: u64,
) -> Result<String, PlotError> {
    let panel_h = 260u32;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (960, panel_h * all.len() as u32))
            .into_drawing_area();
        let draw = |e: &dyn std::fmt::Display| PlotError::Draw(e.to_string());
        root.fill(&WHITE).map_err(|e| draw(&e))?;
        let bounds = phase_bounds(phases, t0_ns);
        let panels = root.split_evenly((all.len(), 1));
        for ((panel, pts), field) in panels.iter().zip(all).zip(fields) {
            let expr = FieldExpr::parse(field)?;
            // Counts get integer ticks; a series with fractions its own.
            let integral = pts.iter().all(|&(_, y)| y.fract() == 0.0);
            let (mut x0, mut x1) = (f64::MAX, f64::MIN);
            let (mut y0, mut y1) = (f64::MAX, f64::MIN);
            for &(x, y) in pts {
                x0 = x0.min(x);
                x1 = x1.max(x);
                y0 = y0.min(y);
                y1 = y1.max(y);
            }
            // Every packet within the panel's time axis.
            for t in [packets.iter().min(), packets.iter().max()]
                .into_iter()
                .flatten()
            {
                let x = t.saturating_sub(t0_ns) as f64 / 1e9;
                x0 = x0.min(x);
                x1 = x1.max(x);
            }
            if x1 <= x0 {
                x1 = x0 + 1.0;
            }
            let pad = ((y1 - y0) * 0.05).max(0.5);
            let (ylo, yhi) = (y0 - pad, y1 + pad * 3.0);
            let mut chart = ChartBuilder::on(panel)
                .caption(expr.title(), ("sans-serif", 18))
                .margin(10)
                .x_label_area_size(36)
                .y_label_area_size(80)
                .build_cartesian_2d(x0..x1, ylo..yhi)
                .map_err(|e| draw(&e))?;
            let y_label = |y: &f64| {
                if integral {
                    format!("{}", y.round() as i64)
                } else {
                    format!("{y:.3}")
                        .trim_end_matches('0')
                        .trim_end_matches('.')
                        .to_string()
                }
            };
            // Integer ticks: no more labels than integers in the range.
            let y_ticks = if integral {
                ((y1 - y0).clamp(1.0, 9.0) as usize) + 1
            } else {
                10
            };
            chart
                .configure_mesh()
                .x_desc("seconds")
                .y_desc(expr.unit.clone().unwrap_or_default())
                .y_labels(y_ticks)
                .y_label_formatter(&y_label)
                .draw()
                .map_err(|e| draw(&e))?;
            // Every other phase shaded; each labelled at its start.
            for (i, (label, start, end)) in bounds.iter().enumerate() {
                // Phases outside this panel's points (a field with values only later).
                if label.is_empty() || *start > x1 || *end <= x0 {
                    continue;
                }
                let (s, e) = (start.max(x0), end.min(x1));
                if i % 2 == 1 {
                    chart
                        .draw_series(std::iter::once(Rectangle::new(
                            [(s, ylo), (e, yhi)],
                            RGBColor(255, 170, 0).mix(0.12).filled(),
                        )))
                        .map_err(|e| draw(&e))?;
                }
                chart
                    .draw_series(std::iter::once(PathElement::new(
                        vec![(s, ylo), (s, yhi)],
                        RGBColor(200, 80, 0).stroke_width(1),
                    )))
                    .map_err(|e| draw(&e))?;
                chart
                    .draw_series(std::iter::once(Text::new(
                        label.clone(),
                        (s, yhi),
                        ("sans-serif", 15).into_font().color(&RGBColor(160, 60, 0)),
                    )))
                    .map_err(|e| draw(&e))?;
            }
            // Packets as short ticks along the bottom (a rug), under the series.
            let tick = (yhi - ylo) * 0.05;
            chart
                .draw_series(packet_marks(packets, t0_ns, x0, x1).into_iter().map(|x| {
                    PathElement::new(
                        vec![(x, ylo), (x, ylo + tick)],
                        RGBColor(0, 140, 60).stroke_width(1),
                    )
                }))
                .map_err(|e| draw(&e))?;
            chart
                .draw_series(LineSeries::new(pts.iter().copied(), BLUE.stroke_width(2)))
                .map_err(|e| draw(&e))?;
        }
        root.present().map_err(|e| draw(&e))?;
    }
    Ok(svg)
}

/// Rasterises the SVG with the system's fonts (a sans-serif one: DejaVu Sans when there).
fn render_png(svg: &str) -> Result<Vec<u8>, PlotError> {
    use resvg::{tiny_skia, usvg};
    let mut opt = usvg::Options::default();
    let fonts = opt.fontdb_mut();
    fonts.load_system_fonts();
    // fontdb's default sans-serif is Arial, which a Debian machine seldom has.
    let family = fonts
        .faces()
        .flat_map(|f| f.families.iter().map(|(name, _)| name.clone()))
        .min_by_key(|name| (name != "DejaVu Sans", !name.contains("Sans"), name.clone()));
    match family {
        Some(name) => fonts.set_sans_serif_family(name),
        None => {
            return Err(PlotError::Draw(
                "no fonts on this system for the PNG's text (Debian: fonts-dejavu-core)".into(),
            ))
        }
    }
    let tree = usvg::Tree::from_str(svg, &opt).map_err(|e| PlotError::Draw(e.to_string()))?;
    let size = tree.size().to_int_size();
    let mut pixmap = tiny_skia::Pixmap::new(size.width(), size.height())
        .ok_or_else(|| PlotError::Draw("empty image".into()))?;
    resvg::render(&tree, tiny_skia::Transform::default(), &mut pixmap.as_mut());
    pixmap
        .encode_png()
        .map_err(|e| PlotError::Draw(format!("encoding the PNG: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::{Cause, Recorder, SampleMeta};

    #[test]
    fn packet_marks_are_one_per_occupied_column() {
        let t0 = 1_000_000_000;
        // A thousand packets in the first microsecond, one at the end, one before t0.
        let mut packets: Vec<u64> = (0..1000).map(|i| t0 + i).collect();
        packets.push(t0 + 10_000_000_000);
        packets.push(t0 - 1);
        let marks = packet_marks(&packets, t0, 0.0, 10.0);
        assert_eq!(marks.len(), 2, "{marks:?}");
        assert_eq!(marks[1], 10.0);
        assert!(packet_marks(&packets, t0, 20.0, 30.0).is_empty());
    }

    #[test]
    fn plots_recorded_fields() {
        let dir = std::env::temp_dir().join(format!("vmark-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let rec = dir.join("r.jsonl");
        let _ = std::fs::remove_file(&rec);
        let mut r = Recorder::open(&rec).unwrap();
        for i in 0..20u64 {
            let meta = SampleMeta {
                t_ns: 1_000_000_000 + i * 100_000_000,
                mark: "tcp/last".into(),
                cause: Cause::Timer,
                triggers: i,
                folded: 1,
                consistent: true,
                retries: 0,
                seq: 0,
                latency_ns: None,
                paused_ns: None,
            };
            let line = meta.to_json_line(&format!("{{\"snd_cwnd\":{},\"ok\":true}}", 10 + i));
            assert!(matches!(r.append(&line), crate::sample::Appended::Written));
        }
        let s = series(&rec, &["snd_cwnd".into(), "ok".into()], Some("last")).unwrap();
        assert_eq!(s[0].len(), 20);
        assert!((s[0][19].0 - 1.9).abs() < 1e-9 && s[0][19].1 == 29.0);
        let out = dir.join("p.svg");
        let req =
            |fields: &[&str], phases: Vec<Phase>, outputs: Vec<std::path::PathBuf>| PlotRequest {
                fields: fields.iter().map(|f| f.to_string()).collect(),
                mark: None,
                phases,
                outputs,
                packets: vec![],
            };
        plot_recording(&rec, &req(&["snd_cwnd"], vec![], vec![out.clone()])).unwrap();
        // Packets: a tick under the series for each, the time axis stretched to those
        // before the first sample and after the last.
        let with_packets = PlotRequest {
            packets: vec![500_000_000, 1_200_000_000, 1_500_000_000, 9_000_000_000],
            ..req(&["snd_cwnd"], vec![], vec![out.clone()])
        };
        let text = plot_recording(&rec, &with_packets).unwrap();
        assert!(text.contains("4 packets marked"), "{text}");
        let svg = std::fs::read_to_string(&out).unwrap();
        let ticks = svg.matches("stroke=\"#008C3C\"").count();
        assert_eq!(ticks, 4, "one tick per packet");
        let svg = std::fs::read_to_string(&out).unwrap();
        assert!(svg.contains("<svg") && svg.contains("snd_cwnd"));
        // The line holds every point: one polyline vertex per sample.
        let line = svg
            .lines()
            .find(|l| l.contains("<polyline") && l.contains("stroke=\"#0000FF\""))
            .expect("the series' polyline");
        let points = line
            .split("points=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        assert_eq!(points.split_whitespace().count(), 20, "{line}");
        assert!(matches!(
            series(&rec, &["nope".into()], None),
            Err(PlotError::NoData(_))
        ));
        // Derived fields: computed per sample, titled with their label and unit.
        let d = series(&rec, &["half=snd_cwnd/2:segments".into()], None).unwrap();
        assert_eq!((d[0][0].1, d[0][1].1), (5.0, 5.5));
        let out2 = dir.join("d.svg");
        plot_recording(
            &rec,
            &req(&["half=snd_cwnd/2:segments"], vec![], vec![out2.clone()]),
        )
        .unwrap();
        let svg = std::fs::read_to_string(&out2).unwrap();
        assert!(
            svg.contains("half (segments)"),
            "the caption names label and unit"
        );
        // Phases: marked on the plot, summarised per field; PNG beside SVG.
        let pf = dir.join("phases.txt");
        std::fs::write(
            &pf,
            "# the run's phases\n1500000000 slow \x1b[31m\n\n1000000000 start\n",
        )
        .unwrap();
        let phases = read_phases(&pf).unwrap();
        assert_eq!(phases.len(), 2);
        assert_eq!(phases[0].label, "start", "sorted by time");
        assert!(
            !phases[1].label.contains('\x1b'),
            "escaped: {:?}",
            phases[1]
        );
        let png = dir.join("p.png");
        let text = plot_recording(
            &rec,
            &req(
                &["snd_cwnd", "ok"],
                phases.clone(),
                vec![out.clone(), png.clone()],
            ),
        )
        .unwrap();
        let svg = std::fs::read_to_string(&out).unwrap();
        assert!(
            svg.contains("\nstart\n") && svg.contains("\nslow "),
            "phase labels drawn"
        );
        let bytes = std::fs::read(&png).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
        assert!(
            bytes.len() > 10_000,
            "a PNG with content: {} bytes",
            bytes.len()
        );
        // snd_cwnd is 10..29 at 0.0..1.9 s: phase "start" holds 0.0..0.4 s, "slow" the rest.
        let (all, t0) = series_from(&rec, &["snd_cwnd".into()], None).unwrap();
        let st = phase_stats(&all, &["snd_cwnd".into()], &phases, t0).unwrap();
        assert_eq!(st.len(), 2);
        assert_eq!(
            (st[0].points, st[0].min, st[0].max, st[0].change),
            (5, 10.0, 14.0, 4.0)
        );
        assert_eq!((st[1].points, st[1].median, st[1].max), (15, 22.0, 29.0));
        assert!(text.contains("median") && text.contains("slow"), "{text}");
        // A scalar mark's value is its name; an array mark's elements too.
        let scalar = dir.join("s.jsonl");
        let mut r = Recorder::open(&scalar).unwrap();
        for (i, mark) in ["m/counter", "m/hist"].iter().enumerate() {
            let meta = SampleMeta {
                t_ns: 1_000_000_000 + i as u64,
                mark: mark.to_string(),
                cause: Cause::Timer,
                triggers: 0,
                folded: 0,
                consistent: true,
                retries: 0,
                seq: 0,
                latency_ns: None,
                paused_ns: None,
            };
            let value = if i == 0 { "41" } else { "[1,2,3]" };
            r.append(&meta.to_json_line(value));
        }
        let s = series(&scalar, &["counter+1".into(), "hist[2]".into()], None).unwrap();
        assert_eq!((s[0][0].1, s[1][0].1), (42.0, 3.0));
        std::fs::write(&pf, "soon start\n").unwrap();
        assert!(matches!(read_phases(&pf), Err(PlotError::Phases { .. })));
        assert!(matches!(
            series(&rec, &["snd_cwnd+".into()], None),
            Err(PlotError::Expr(_))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
