//! SVG plots with plotters' SVG backend (no system font libraries: text is
//! emitted as SVG `<text>` and laid out by the viewer).
//!
//! Top: latency over the run (per bucket of consecutive requests, the median
//! as a line and the maximum as a fainter line). Bottom: the percentile
//! distribution on a "nines" axis (90, 99, 99.9 ... equally spaced), as
//! HdrHistogram's own plots do. Both use a log latency axis so a tail of
//! timeouts does not flatten everything else. One colour per file.

use std::path::Path;

use plotters::prelude::*;

use crate::error::RpcError;
use crate::summary::report::FileSummary;

/// Most buckets drawn per file on the over-time plot.
const MAX_BUCKETS: usize = 600;

/// The deepest percentile shown: 99.9999.
const MAX_NINES: f64 = 6.0;

fn nines(q: f64) -> f64 {
    if q >= 100.0 {
        MAX_NINES
    } else {
        (-(1.0 - q / 100.0).log10()).clamp(0.0, MAX_NINES)
    }
}

/// (x, median, max) per bucket of consecutive successful requests.
fn buckets(series: &[(u64, f64)]) -> Vec<(f64, f64, f64)> {
    let size = series.len().div_ceil(MAX_BUCKETS).max(1);
    series
        .chunks(size)
        .map(|chunk| {
            let mut v: Vec<f64> = chunk.iter().map(|(_, ms)| *ms).collect();
            v.sort_by(f64::total_cmp);
            let x = chunk.first().map(|(i, _)| *i as f64).unwrap_or(0.0);
            (x, v[v.len() / 2], v[v.len() - 1])
        })
        .collect()
}

/// Renders both plots into an SVG document.
pub fn svg(all: &[FileSummary], title: &str) -> Result<String, String> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (1100, 900)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let root = root
            .titled(title, ("sans-serif", 22))
            .map_err(|e| e.to_string())?;
        let (top, bottom) = root.split_vertically(430);
        over_time(&top, all).map_err(|e| e.to_string())?;
        distribution(&bottom, all).map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(out)
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;
type DrawResult = Result<(), DrawingAreaErrorKind<std::io::Error>>;

fn y_range(all: &[FileSummary]) -> (f64, f64) {
    let mut lo = f64::INFINITY;
    let mut hi: f64 = 0.0;
    for s in all.iter().filter(|s| !s.primary.is_empty()) {
        lo = lo.min(s.primary.percentile_ms(0.0));
        hi = hi.max(s.primary.percentile_ms(100.0));
    }
    if !lo.is_finite() || hi <= 0.0 {
        return (0.01, 10.0);
    }
    ((lo * 0.8).max(0.001), (hi * 1.25).max(lo * 2.0))
}

fn over_time(area: &Area<'_>, all: &[FileSummary]) -> DrawResult {
    let (ylo, yhi) = y_range(all);
    let xmax = all
        .iter()
        .filter_map(|s| s.series.last().map(|(i, _)| *i as f64))
        .fold(1.0, f64::max);
    let mut chart = ChartBuilder::on(area)
        .caption(
            "latency over the run (bucket median, and max)",
            ("sans-serif", 16),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..xmax, (ylo..yhi).log_scale())?;
    chart
        .configure_mesh()
        // Log axes get a light line per minor tick: too dense to read.
        .light_line_style(TRANSPARENT)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .x_desc("request number (in intended send order)")
        .y_desc("ms")
        .draw()?;
    for (i, s) in all.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let b = buckets(&s.series);
        chart.draw_series(LineSeries::new(
            b.iter().map(|(x, _, max)| (*x, *max)),
            color.mix(0.35).stroke_width(1),
        ))?;
        chart
            .draw_series(LineSeries::new(
                b.iter().map(|(x, med, _)| (*x, *med)),
                color.stroke_width(2),
            ))?
            .label(s.label.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

fn distribution(area: &Area<'_>, all: &[FileSummary]) -> DrawResult {
    let (ylo, yhi) = y_range(all);
    let label = |x: &f64| {
        let q = 100.0 * (1.0 - 10f64.powf(-*x));
        let s = format!("{q:.4}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        format!("{s}%")
    };
    let mut chart = ChartBuilder::on(area)
        .caption("latency by percentile", ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..MAX_NINES, (ylo..yhi).log_scale())?;
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .x_labels(7)
        .x_label_formatter(&label)
        .x_desc("percentile")
        .y_desc("ms")
        .draw()?;
    for (i, s) in all.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let points: Vec<(f64, f64)> = s
            .primary
            .distribution()
            .into_iter()
            .map(|(q, ms)| (nines(q), ms.max(ylo)))
            .collect();
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))?
            .label(s.label.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

/// Writes the SVG file.
pub fn write_svg(path: &Path, all: &[FileSummary], title: &str) -> Result<String, RpcError> {
    let doc = svg(all, title).map_err(|detail| RpcError::Plot {
        path: path.to_path_buf(),
        detail,
    })?;
    std::fs::write(path, &doc).map_err(|source| RpcError::ResultsIo {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(doc)
}
