//! Statistics of a results file and their text rendering.

use crate::stats::{Latencies, PERCENTILES};
use crate::summary::read::{Kind, RunFile};

/// The numbers of one file.
#[derive(Debug, Clone)]
pub struct FileSummary {
    /// Legend label.
    pub label: String,
    /// Which test.
    pub kind: Kind,
    /// Lines.
    pub total: u64,
    /// Successful lines.
    pub ok: u64,
    /// Failures by code, most frequent first.
    pub errors: Vec<(String, u64)>,
    /// Latency (steady) or total time (cold) of successes.
    pub primary: Latencies,
    /// Cold only: connect times.
    pub connect: Option<Latencies>,
    /// Cold only: first-call times.
    pub first_rpc: Option<Latencies>,
    /// (line index, ms) of successes, for the over-time plot.
    pub series: Vec<(u64, f64)>,
}

impl FileSummary {
    /// Success percentage.
    pub fn success_pct(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            100.0 * self.ok as f64 / self.total as f64
        }
    }
}

/// Computes the numbers of a file.
pub fn summarize(file: &RunFile) -> FileSummary {
    let mut primary = Latencies::new();
    let mut connect = Latencies::new();
    let mut first_rpc = Latencies::new();
    let mut errors: Vec<(String, u64)> = Vec::new();
    let mut series = Vec::with_capacity(file.rows.len());
    let mut ok = 0;
    for (i, row) in file.rows.iter().enumerate() {
        if row.succeeded() {
            ok += 1;
            if let Some(ms) = row.primary_ms() {
                primary.record_ms(ms);
                series.push((i as u64, ms));
            }
            if let Some(ms) = row.t_connect_ms {
                connect.record_ms(ms);
            }
            if let Some(ms) = row.t_first_rpc_ms {
                first_rpc.record_ms(ms);
            }
        } else {
            let code = row.code_name();
            match errors.iter_mut().find(|(c, _)| *c == code) {
                Some((_, n)) => *n += 1,
                None => errors.push((code, 1)),
            }
        }
    }
    errors.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let cold = file.kind == Kind::Coldconn;
    FileSummary {
        label: file.label(),
        kind: file.kind,
        total: file.rows.len() as u64,
        ok,
        errors,
        primary,
        connect: cold.then_some(connect),
        first_rpc: cold.then_some(first_rpc),
        series,
    }
}

/// One "mean ... | p50 ... | ... | max ..." line.
pub fn latency_line(l: &Latencies) -> String {
    if l.is_empty() {
        return "no successful samples".into();
    }
    let mut s = format!("mean {:.3}", l.mean_ms());
    for (q, name) in PERCENTILES {
        s.push_str(&format!(" | {name} {:.3}", l.percentile_ms(q)));
    }
    s.push_str(" ms");
    s
}

/// The text report of one file.
pub fn render(s: &FileSummary) -> String {
    let (noun, test) = match s.kind {
        Kind::Steady => ("Requests", crate::record::STEADY_TEST),
        Kind::Coldconn => ("Attempts", crate::record::COLDCONN_TEST),
    };
    let mut out = format!("== {} ({test})\n", s.label);
    out.push_str(&format!("Total {noun}: {}\n", s.total));
    out.push_str(&format!("Successful: {} ({:.2}%)\n", s.ok, s.success_pct()));
    if !s.errors.is_empty() {
        let list: Vec<String> = s.errors.iter().map(|(c, n)| format!("{c} {n}")).collect();
        out.push_str(&format!("Errors: {}\n", list.join(", ")));
    }
    match s.kind {
        Kind::Steady => out.push_str(&format!("Latency: {}\n", latency_line(&s.primary))),
        Kind::Coldconn => {
            if let Some(c) = &s.connect {
                out.push_str(&format!("Connect:   {}\n", latency_line(c)));
            }
            if let Some(f) = &s.first_rpc {
                out.push_str(&format!("First RPC: {}\n", latency_line(f)));
            }
            out.push_str(&format!("Total:     {}\n", latency_line(&s.primary)));
        }
    }
    out
}

/// Several files side by side: one column per file.
pub fn render_comparison(all: &[FileSummary]) -> String {
    let width = all
        .iter()
        .map(|s| s.label.len())
        .max()
        .unwrap_or(0)
        .clamp(10, 40);
    let mut out = format!("{:<10}", "");
    for s in all {
        out.push_str(&format!(
            " {:>width$}",
            s.label.chars().take(width).collect::<String>()
        ));
    }
    out.push('\n');
    let mut row = |name: &str, f: &dyn Fn(&FileSummary) -> String| {
        out.push_str(&format!("{name:<10}"));
        for s in all {
            out.push_str(&format!(" {:>width$}", f(s)));
        }
        out.push('\n');
    };
    row("total", &|s| s.total.to_string());
    row("success %", &|s| format!("{:.2}", s.success_pct()));
    row("mean ms", &|s| format!("{:.3}", s.primary.mean_ms()));
    for (q, name) in PERCENTILES {
        row(&format!("{name} ms"), &|s| {
            format!("{:.3}", s.primary.percentile_ms(q))
        });
    }
    out
}
