//! A self-contained HTML page: the plots inlined as SVG, and the numbers.

use std::path::Path;

use crate::error::RpcError;
use crate::stats::PERCENTILES;
use crate::summary::report::FileSummary;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Renders the page; `svg` is the document from [`crate::summary::plot::svg`].
pub fn page(all: &[FileSummary], svg: &str, title: &str) -> String {
    let mut rows = String::new();
    for s in all {
        let errors: Vec<String> = s
            .errors
            .iter()
            .map(|(c, n)| format!("{} {n}", escape(c)))
            .collect();
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{:.2}</td><td>{:.3}</td>",
            escape(&s.label),
            s.total,
            s.success_pct(),
            s.primary.mean_ms()
        ));
        for (q, _) in PERCENTILES {
            rows.push_str(&format!("<td>{:.3}</td>", s.primary.percentile_ms(q)));
        }
        rows.push_str(&format!("<td>{}</td></tr>\n", errors.join(", ")));
    }
    let heads: String = PERCENTILES
        .iter()
        .map(|(_, n)| format!("<th>{n} ms</th>"))
        .collect();
    // The SVG's own XML declaration is not allowed inside HTML.
    let svg = svg
        .trim_start()
        .strip_prefix("<?xml")
        .and_then(|rest| rest.split_once("?>").map(|(_, body)| body))
        .unwrap_or(svg);
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{t}</title>\n\
         <style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}\
         td:first-child{{text-align:left}}</style></head>\n<body><h1>{t}</h1>\n\
         <table><tr><th>file</th><th>total</th><th>success %</th><th>mean ms</th>{heads}\
         <th>errors</th></tr>\n{rows}</table>\n<p>Times are from each request's intended send \
         time (steady) or the whole connect + first call (cold connections).</p>\n{svg}\n\
         </body></html>\n",
        t = escape(title)
    )
}

/// Writes the page.
pub fn write_html(
    path: &Path,
    all: &[FileSummary],
    svg: &str,
    title: &str,
) -> Result<(), RpcError> {
    std::fs::write(path, page(all, svg, title)).map_err(|source| RpcError::ResultsIo {
        path: path.to_path_buf(),
        source,
    })
}
