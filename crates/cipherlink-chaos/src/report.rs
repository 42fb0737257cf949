//! The HTML report: every scenario's verdict, timings, router counts and
//! both SVGs inline, in one self-contained file; with more than one
//! transport, their comparison ([`crate::comparison`]) after the summary.

use std::fmt::Write;

use crate::comparison::{compare, Comparison};
use crate::comparison_html;
use crate::results::{Mode, ScenarioResult};
use crate::svg::{escape, packet_plot, sequence_diagram};

/// The report's page. `notes` are shown at the top (e.g. why the proxy
/// was used instead of the lab).
pub fn html(results: &[ScenarioResult], notes: &[String]) -> String {
    html_with(results, notes, &plots(results), compare(results).as_ref())
}

/// Each result's packet plot and sequence diagram (`None` for a scenario
/// that did not run), rendered once for both the files and the page.
fn plots(results: &[ScenarioResult]) -> Vec<Option<(String, String)>> {
    results
        .iter()
        .map(|r| {
            r.skipped
                .is_none()
                .then(|| (packet_plot(r), sequence_diagram(r)))
        })
        .collect()
}

fn html_with(
    results: &[ScenarioResult],
    notes: &[String],
    plots: &[Option<(String, String)>],
    comparison: Option<&Comparison>,
) -> String {
    let passed = results.iter().filter(|r| r.verdict.pass).count();
    let not_run = results.iter().filter(|r| r.skipped.is_some()).count();
    let mut s = String::new();
    let _ = write!(
        s,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>cipherlink chaos run</title>\
         <style>body{{font-family:sans-serif;margin:24px;color:#222}}table{{border-collapse:collapse;font-size:14px}}\
         td,th{{border:1px solid #bbb;padding:3px 6px;text-align:right}}td.l,th.l{{text-align:left}}\
         .pass{{background:#c8f0c8}}.fail{{background:#f6c6c6}}.skip{{background:#eeeeee}}section{{margin-top:32px}}\
         svg{{border:1px solid #ddd;margin:4px}}{}</style></head><body>\
         <h1>cipherlink chaos run</h1><p><b>{passed} of {} scenarios passed, {} failed, {not_run} not run.</b></p>",
        comparison_html::STYLE,
        results.len(),
        results.iter().filter(|r| r.failed()).count()
    );
    for n in notes {
        let _ = write!(s, "<p class=\"fail\">{}</p>", escape(n));
    }
    s.push_str(
        "<table><tr><th class=\"l\">transport</th><th class=\"l\">scenario</th><th class=\"l\">netem</th>\
         <th class=\"l\">where</th><th>verdict</th><th>echoed</th><th>set-up ms</th><th>duration s</th>\
         <th>rate kB/s</th><th>RTT p50 ms</th><th>RTT p95 ms</th><th>packets</th>\
         <th>lost</th><th>dup</th><th>corrupt</th><th class=\"l\">end</th></tr>",
    );
    for r in results {
        let rc = r.router.unwrap_or_default();
        let sum = |x: [u64; 2]| x[0] + x[1];
        let _ = write!(
            s,
            "<tr class=\"{}\"><td class=\"l\">{}</td><td class=\"l\"><a href=\"#{}-{}\">{}</a></td>\
             <td class=\"l\"><code>{}</code></td><td class=\"l\">{}</td><td>{}</td><td>{}/{}</td>\
             <td>{}</td><td>{:.2}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td class=\"l\">{}</td></tr>",
            verdict_class(r),
            escape(&r.transport),
            escape(&r.transport),
            escape(&r.scenario.name),
            escape(&r.scenario.name),
            escape(&r.scenario.netem),
            match r.mode {
                Mode::Lab => "TUN lab",
                Mode::Proxy => "stream proxy",
            },
            r.verdict_word(),
            r.delivered,
            r.datagram.as_ref().map_or(r.scenario.messages, |d| d.sent),
            opt(r.client.connected.map(|c| c * 1e3), 1),
            r.duration,
            opt(r.rate_bytes_per_s.map(|b| b / 1e3), 1),
            opt(r.rtt_ms.map(|q| q.p50), 1),
            opt(r.rtt_ms.map(|q| q.p95), 1),
            r.packets.len(),
            sum(rc.lost),
            sum(rc.duplicated),
            sum(rc.corrupted),
            escape(
                r.skipped
                    .as_deref()
                    .or(r.client.error.as_deref())
                    .unwrap_or("completed")
            ),
        );
    }
    s.push_str("</table>");
    if let Some(c) = comparison {
        s.push_str(&comparison_html::section(c));
    }
    for (r, plot) in results.iter().zip(plots) {
        let _ = write!(
            s,
            "<section id=\"{}-{}\"><h2>{}: {} <small>({})</small></h2><ul>",
            escape(&r.transport),
            escape(&r.scenario.name),
            escape(&r.transport),
            escape(&r.scenario.title),
            r.verdict_word()
        );
        for c in &r.verdict.checks {
            let _ = write!(s, "<li>{}</li>", escape(c));
        }
        s.push_str("</ul>");
        if let Some((packets, sequence)) = plot {
            let base = r.file_stem();
            let _ = write!(
                s,
                "<p>Files: <a href=\"{0}.json\">{0}.json</a>{1} \
                 <a href=\"{0}-packets.svg\">packets</a> <a href=\"{0}-sequence.svg\">sequence</a></p>",
                escape(&base),
                r.pcap
                    .as_deref()
                    .map(|p| format!(", <a href=\"{0}\">{0}</a>", escape(p)))
                    .unwrap_or_default()
            );
            s.push_str(packets);
            s.push_str(sequence);
        }
        s.push_str("</section>");
    }
    s.push_str("</body></html>\n");
    s
}

fn verdict_class(r: &ScenarioResult) -> &'static str {
    match (r.skipped.is_some(), r.verdict.pass) {
        (true, _) => "skip",
        (false, true) => "pass",
        (false, false) => "fail",
    }
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "–".to_string(), |v| format!("{v:.digits$}"))
}

/// Why the report could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    /// A file could not be written.
    #[error("writing the report: {0}")]
    Output(#[from] crate::output::OutputError),
    /// A result could not be encoded.
    #[error("encoding {name}: {source}")]
    Json {
        /// The scenario.
        name: String,
        /// The error.
        source: serde_json::Error,
    },
}

/// Writes, into `out`, per scenario `TRANSPORT-NAME.json`,
/// `TRANSPORT-NAME-packets.svg` and `TRANSPORT-NAME-sequence.svg`, and the
/// whole `report.html`; with more than one transport, `comparison.json`
/// too. Returns the report's path.
pub fn write_all(
    out: &crate::output::OutDir,
    results: &[ScenarioResult],
    notes: &[String],
) -> Result<std::path::PathBuf, ReportError> {
    let plots = plots(results);
    for (r, plot) in results.iter().zip(&plots) {
        let base = r.file_stem();
        let json = serde_json::to_string_pretty(r).map_err(|source| ReportError::Json {
            name: base.clone(),
            source,
        })?;
        out.write(&format!("{base}.json"), json.as_bytes())?;
        if let Some((packets, sequence)) = plot {
            out.write(&format!("{base}-packets.svg"), packets.as_bytes())?;
            out.write(&format!("{base}-sequence.svg"), sequence.as_bytes())?;
        }
    }
    let comparison = compare(results);
    if let Some(c) = &comparison {
        let json = serde_json::to_string_pretty(c).map_err(|source| ReportError::Json {
            name: "comparison".into(),
            source,
        })?;
        out.write("comparison.json", json.as_bytes())?;
    }
    let page = html_with(results, notes, &plots, comparison.as_ref());
    Ok(out.write("report.html", page.as_bytes())?)
}
