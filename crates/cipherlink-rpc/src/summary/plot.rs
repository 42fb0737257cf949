//! SVG plots with plotters' SVG backend (no system font libraries: text is
//! emitted as SVG `<text>` and laid out by the viewer).
//!
//! Top: latency over the run (per bucket of consecutive requests, the median
//! as a line and the maximum as a fainter line). Bottom: the percentile
//! distribution on a "nines" axis (90, 99, 99.9 ... equally spaced), as
//! HdrHistogram's own plots do. Both use a log latency axis so a tail of
//! timeouts does not flatten everything else, labelled at 1-2-5 steps. One
//! colour per file; a coldconn file draws its connect, first-RPC and total
//! times as three series of that colour.

use std::path::Path;

use plotters::prelude::*;

use crate::error::RpcError;
use crate::stats::Latencies;
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

/// Every distribution a file contributes: (latencies, legend suffix, line
/// width, opacity). Cold-connection files split their total into its parts.
fn parts(s: &FileSummary) -> Vec<(&Latencies, &'static str, u32, f64)> {
    let mut out = Vec::new();
    if let Some(connect) = &s.connect {
        out.push((connect, " connect", 1, 0.55));
    }
    if let Some(first) = &s.first_rpc {
        out.push((first, " first RPC", 1, 0.8));
    }
    let suffix = if out.is_empty() { "" } else { " total" };
    out.push((&s.primary, suffix, 2, 1.0));
    out
}

fn y_range(all: &[FileSummary]) -> (f64, f64) {
    let mut lo = f64::INFINITY;
    let mut hi: f64 = 0.0;
    for latencies in all.iter().flat_map(parts).map(|(l, ..)| l) {
        if latencies.is_empty() {
            continue;
        }
        lo = lo.min(latencies.percentile_ms(0.0));
        hi = hi.max(latencies.percentile_ms(100.0));
    }
    if !lo.is_finite() || hi <= 0.0 {
        return (0.01, 10.0);
    }
    ((lo * 0.8).max(0.001), (hi * 1.25).max(lo * 2.0))
}

/// Axis labels at 1, 2 and 5 times each power of ten inside `lo..=hi`, so a
/// log axis is readable between its decades.
fn one_two_five(lo: f64, hi: f64) -> Vec<f64> {
    let mut keys = Vec::new();
    let mut decade = 10f64.powf(lo.log10().floor());
    while decade <= hi {
        for step in [1.0, 2.0, 5.0] {
            let key = decade * step;
            if key >= lo && key <= hi {
                keys.push(key);
            }
        }
        decade *= 10.0;
    }
    keys
}

fn ms_label(ms: &f64) -> String {
    if *ms >= 1.0 {
        format!("{ms:.0}")
    } else {
        let s = format!("{ms:.3}");
        s.trim_end_matches('0').to_string()
    }
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
        .build_cartesian_2d(
            0.0..xmax,
            (ylo..yhi)
                .log_scale()
                .with_key_points(one_two_five(ylo, yhi)),
        )?;
    chart
        .configure_mesh()
        // Log axes get a light line per minor tick: too dense to read.
        .light_line_style(TRANSPARENT)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&ms_label)
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
        .build_cartesian_2d(
            0.0..MAX_NINES,
            (ylo..yhi)
                .log_scale()
                .with_key_points(one_two_five(ylo, yhi)),
        )?;
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .x_labels(7)
        .x_label_formatter(&label)
        .y_label_formatter(&ms_label)
        .x_desc("percentile")
        .y_desc("ms")
        .draw()?;
    for (i, s) in all.iter().enumerate() {
        for (latencies, suffix, width, opacity) in parts(s) {
            let style = Palette99::pick(i)
                .to_rgba()
                .mix(opacity)
                .stroke_width(width);
            let points: Vec<(f64, f64)> = latencies
                .distribution()
                .into_iter()
                .map(|(q, ms)| (nines(q), ms.max(ylo)))
                .collect();
            chart
                .draw_series(LineSeries::new(points, style))?
                .label(format!("{}{suffix}", s.label))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_axis_labels_fall_on_one_two_five_steps() {
        assert_eq!(one_two_five(0.8, 25.0), vec![1.0, 2.0, 5.0, 10.0, 20.0]);
        assert_eq!(one_two_five(0.15, 0.6), vec![0.2, 0.5]);
        assert!(one_two_five(3.0, 4.0).is_empty());
        assert_eq!(ms_label(&0.5), "0.5");
        assert_eq!(ms_label(&20.0), "20");
    }
}
