//! The comparison as HTML: one table per scenario, one row per transport,
//! each row's numbers and its sentence, for the report's page.

use std::fmt::Write;

use crate::comparison::{Baseline, Comparison, DatagramMetrics, Gone, Metrics, Row, SetupSource};
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
    if c.scenarios.iter().any(|b| b.datagram_baseline.is_some()) {
        s.push_str(
            "<p>Datagram transports (UDP) send numbered datagrams at a steady rate and may lose \
             some: their rows (marked <i>datagrams</i>) say what fraction came back against the \
             least the impairment explains, how many arrived twice or out of order, and are set \
             against plain UDP (or the best datagram row), not TCP.</p>",
        );
    }
    for b in &c.scenarios {
        let _ = write!(
            s,
            "<h3 id=\"cmp-{0}\">{0}: {1} <small><code>{2}</code> &middot; against {3}</small></h3>\
             <table class=\"cmp\" data-scenario=\"{0}\"><tr><th class=\"l\">transport</th><th>verdict</th>\
             <th>set-up ms</th><th>RTT p50 ms</th><th>RTT p95 ms</th><th>goodput kB/s</th>\
             <th>wire B per payload B</th><th>packets per KiB</th><th>silent peer gone after s</th>\
             <th class=\"l\">intact, once{4}</th><th class=\"l\">in plain words</th></tr>",
            escape(&b.scenario),
            escape(&b.title),
            escape(if b.netem.is_empty() { "no impairment" } else { &b.netem }),
            against_words(b.baseline, b.datagram_baseline),
            if b.datagram_baseline.is_some() {
                "; datagrams: delivered, repeats, reordered"
            } else {
                ""
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

/// `plain TCP`, and for blocks with datagram rows `; datagrams: plain UDP`.
fn against_words(stream: Baseline, datagram: Option<Baseline>) -> String {
    let stream = match stream {
        Baseline::Plain => "plain TCP",
        Baseline::Best => "the best row",
    };
    match datagram {
        None => stream.into(),
        Some(Baseline::Plain) => format!("{stream}; datagrams: plain UDP"),
        Some(Baseline::Best) => format!("{stream}; datagrams: the best datagram row"),
    }
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
    let kind = if m.is_datagram() { " dgram" } else { "" };
    let name = if m.is_datagram() {
        format!("{t} <small>datagrams</small>")
    } else {
        t.to_string()
    };
    format!(
        "<tr class=\"cmp-row {}{kind}\" data-transport=\"{t}\"><td class=\"l\">{name}</td><td>{}</td><td>{setup}</td>\
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
        Some(Gone::NoMechanism) => "none <small>no way to notice</small>".into(),
    }
}

fn intact_cell(m: &Metrics) -> String {
    if let Some(d) = &m.datagram {
        return datagram_cell(m, d);
    }
    match &m.intact {
        None => dash(),
        Some(i) if i.ok => "yes".into(),
        Some(i) => format!("no: {}", escape(&i.why.join(", "))),
    }
}

/// `yes; 44.1% <small>min 36.5%</small>, 0 repeats, 3 reordered`.
fn datagram_cell(m: &Metrics, d: &DatagramMetrics) -> String {
    let intact = match &m.intact {
        Some(i) if !i.ok => format!("no: {}", escape(&i.why.join(", "))),
        _ => "yes".into(),
    };
    let min = d
        .min_fraction
        .map(|f| format!(" <small>min {:.1}%</small>", f * 100.0))
        .unwrap_or_default();
    format!(
        "{intact}; {:.1}%{min}, {} repeats, {} reordered",
        d.delivered_fraction * 100.0,
        d.duplicates,
        d.reordered
    )
}

fn num(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(dash, |v| format!("{v:.digits$}"))
}

fn dash() -> String {
    "–".into()
}
