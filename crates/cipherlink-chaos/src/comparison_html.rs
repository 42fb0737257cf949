//! The comparison as HTML: one table per scenario, one row per transport,
//! each row's numbers and its sentence, for the report's page.

use std::fmt::Write;

use crate::comparison::{Baseline, Comparison, Gone, Metrics, Row, SetupSource};
use crate::comparison_words::times;
use crate::svg::escape;

/// The comparison tables' style (the page's own covers rows and cells).
/// The header colour marks the tables in a rendered page.
pub const STYLE: &str = "table.cmp{margin:6px 0 18px}table.cmp th{background:#dde6f3}\
    table.cmp td.words{text-align:left;min-width:22em;max-width:40em}\
    table.cmp small{color:#555}";

/// The section: an introduction, then each scenario's table.
pub fn section(c: &Comparison) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "<section id=\"comparison\"><h2>Transports side by side</h2>\
         <p>{} transports: {}. Per scenario, one row per transport. Ratios (x) are against \
         plain TCP in the same scenario when it ran, else against the best row of each column. \
         Wire bytes count every captured IPv4 packet both ways; payload is every echoed message \
         there and back. A set-up marked <i>capture</i> is estimated from packet times (first \
         client packet to its first payload after the server's), for programs whose set-up the \
         lab cannot see; the others are the client's own time.</p>",
        c.transports.len(),
        escape(&c.transports.join(", "))
    );
    for b in &c.scenarios {
        let _ = write!(
            s,
            "<h3 id=\"cmp-{0}\">{0}: {1} <small><code>{2}</code> &middot; against {3}</small></h3>\
             <table class=\"cmp\" data-scenario=\"{0}\"><tr><th class=\"l\">transport</th><th>verdict</th>\
             <th>set-up ms</th><th>RTT p50 ms</th><th>RTT p95 ms</th><th>goodput kB/s</th>\
             <th>wire B per payload B</th><th>packets per KiB</th><th>silent peer gone after s</th>\
             <th class=\"l\">intact, once</th><th class=\"l\">in plain words</th></tr>",
            escape(&b.scenario),
            escape(&b.title),
            escape(if b.netem.is_empty() { "no impairment" } else { &b.netem }),
            match b.baseline {
                Baseline::Plain => "plain TCP",
                Baseline::Best => "the best row",
            }
        );
        for row in &b.rows {
            s.push_str(&row_html(row));
        }
        s.push_str("</table>");
    }
    s.push_str("</section>");
    s
}

fn row_html(row: &Row) -> String {
    let t = escape(&row.transport);
    let words = escape(&row.sentence);
    let Some(m) = row.metrics.as_ref().filter(|m| m.not_run.is_none()) else {
        let verdict = if row.metrics.is_some() {
            "NOT RUN"
        } else {
            "–"
        };
        return format!(
            "<tr class=\"cmp-row skip\" data-transport=\"{t}\"><td class=\"l\">{t}</td><td>{verdict}</td>\
             <td colspan=\"8\"></td><td class=\"l words\">{words}</td></tr>"
        );
    };
    let x = |ratio: Option<f64>| {
        ratio
            .map(|r| format!(" <small>{}</small>", times(r)))
            .unwrap_or_default()
    };
    let setup = m.setup.map_or_else(dash, |s| match s.source {
        SetupSource::Client => format!("{:.1}{}", s.ms, x(row.ratios.setup)),
        SetupSource::Capture => {
            format!("{:.1} <small>capture</small>{}", s.ms, x(row.ratios.setup))
        }
    });
    format!(
        "<tr class=\"cmp-row {}\" data-transport=\"{t}\"><td class=\"l\">{t}</td><td>{}</td><td>{setup}</td>\
         <td>{}{}</td><td>{}</td><td>{}{}</td><td>{}{}</td><td>{}</td><td>{}</td><td class=\"l\">{}</td>\
         <td class=\"l words\">{words}</td></tr>",
        match m.verdict.as_str() {
            "PASS" => "pass",
            _ => "fail",
        },
        escape(&m.verdict),
        num(m.rtt_p50_ms, 1),
        x(row.ratios.rtt_p50),
        num(m.rtt_p95_ms, 1),
        num(m.goodput_bytes_per_s.map(|b| b / 1e3), 1),
        x(row.ratios.goodput),
        num(m.wire_per_payload, 2),
        x(row.ratios.wire_per_payload),
        num(m.packets_per_kib, 2),
        gone_cell(m),
        intact_cell(m),
    )
}

fn gone_cell(m: &Metrics) -> String {
    let bound = |b: &Option<f64>| {
        b.map(|b| format!(" <small>bound {b:.1}</small>"))
            .unwrap_or_default()
    };
    match &m.gone {
        None => dash(),
        Some(Gone::Declared {
            after_s, bound_s, ..
        }) => format!("{after_s:.2}{}", bound(bound_s)),
        Some(Gone::NotDeclared { bound_s, .. }) => format!("not declared{}", bound(bound_s)),
    }
}

fn intact_cell(m: &Metrics) -> String {
    match &m.intact {
        None => dash(),
        Some(i) if i.ok => "yes".into(),
        Some(i) => format!("no: {}", escape(&i.why.join(", "))),
    }
}

fn num(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(dash, |v| format!("{v:.digits$}"))
}

fn dash() -> String {
    "–".into()
}
