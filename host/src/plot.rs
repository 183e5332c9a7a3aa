//! `vmark plot`: time series of recorded fields, one panel per field (their scales differ:
//! a congestion window in segments, an RTT in microseconds, a byte counter in megabytes).

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
        let pts: Series = samples
            .iter()
            .filter_map(|s| {
                let v = json_field(&s.value, f)?;
                let y = v
                    .as_f64()
                    .or_else(|| v.as_bool().map(|b| f64::from(u8::from(b))))?;
                Some(((s.t_ns - t0) as f64 / 1e9, y))
            })
            .collect();
        if pts.is_empty() {
            return Err(PlotError::NoData(f.clone()));
        }
        out.push(pts);
    }
    Ok(out)
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
            .caption(field, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(70)
            .build_cartesian_2d(x0..x1, (y0 - pad)..(y1 + pad))
            .map_err(|e| draw(&e))?;
        chart
            .configure_mesh()
            .x_desc("seconds")
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
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
