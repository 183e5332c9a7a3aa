//! `vmark plot`: time series of recorded fields, one panel per field (their scales differ:
//! a congestion window in segments, an RTT in microseconds, a byte counter in megabytes).

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
}

/// One field's series: (seconds since the first sample, value).
pub type Series = Vec<(f64, f64)>;

/// Extracts each field's numeric series from a recording (booleans as 0/1).
pub fn series(
    path: &Path,
    fields: &[String],
    mark: Option<&str>,
) -> Result<Vec<Series>, PlotError> {
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
                    .eval(&|i| number(json_field(&s.value, &expr.fields[i])?))
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
    Ok(out)
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

/// Plots `fields` of the recording at `path` into an SVG file; returns a one-line summary.
pub fn plot_recording(
    path: &Path,
    fields: &[String],
    mark: Option<&str>,
    output: &Path,
) -> Result<String, PlotError> {
    let all = series(path, fields, mark)?;
    let panel_h = 260u32;
    let root = SVGBackend::new(output, (960, panel_h * all.len() as u32)).into_drawing_area();
    let draw = |e: &dyn std::fmt::Display| PlotError::Draw(e.to_string());
    root.fill(&WHITE).map_err(|e| draw(&e))?;
    let panels = root.split_evenly((all.len(), 1));
    for ((panel, pts), field) in panels.iter().zip(&all).zip(fields) {
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
        if x1 <= x0 {
            x1 = x0 + 1.0;
        }
        let pad = ((y1 - y0) * 0.05).max(0.5);
        let mut chart = ChartBuilder::on(panel)
            .caption(expr.title(), ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(36)
            .y_label_area_size(80)
            .build_cartesian_2d(x0..x1, (y0 - pad)..(y1 + pad))
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
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), &BLUE))
            .map_err(|e| draw(&e))?;
    }
    root.present().map_err(|e| draw(&e))?;
    Ok(format!(
        "wrote {} ({} fields, {} points)",
        output.display(),
        all.len(),
        all.iter().map(Vec::len).sum::<usize>()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::{Cause, Recorder, SampleMeta};

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
        plot_recording(&rec, &["snd_cwnd".into()], None, &out).unwrap();
        let svg = std::fs::read_to_string(&out).unwrap();
        assert!(svg.contains("<svg") && svg.contains("snd_cwnd"));
        assert!(matches!(
            series(&rec, &["nope".into()], None),
            Err(PlotError::NoData(_))
        ));
        // Derived fields: computed per sample, titled with their label and unit.
        let d = series(&rec, &["half=snd_cwnd/2:segments".into()], None).unwrap();
        assert_eq!((d[0][0].1, d[0][1].1), (5.0, 5.5));
        let out2 = dir.join("d.svg");
        plot_recording(&rec, &["half=snd_cwnd/2:segments".into()], None, &out2).unwrap();
        let svg = std::fs::read_to_string(&out2).unwrap();
        assert!(
            svg.contains("half (segments)"),
            "the caption names label and unit"
        );
        assert!(matches!(
            series(&rec, &["snd_cwnd+".into()], None),
            Err(PlotError::Expr(_))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
