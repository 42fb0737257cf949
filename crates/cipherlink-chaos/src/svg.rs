//! Hand-written, self-contained SVG (no scripts, no external fonts) of a
//! scenario: a packet plot like the PORT experiment's notebook (bar height = packet length,
//! x = time before the connection's end, colour = packet type) and a
//! sequence diagram of every packet and message (svg/sequence.rs).

use std::fmt::Write;

use crate::results::ScenarioResult;
use crate::subject::PacketClass;

mod sequence;

pub use sequence::sequence_diagram;

/// Colour and legend label of each class, in legend order.
pub const CLASSES: [(PacketClass, &str, &str); 8] = [
    (PacketClass::Handshake, "#1f77b4", "handshake"),
    (PacketClass::Data, "#2ca02c", "data"),
    (PacketClass::Keepalive, "#9467bd", "keepalive"),
    (PacketClass::Close, "#d62728", "close"),
    (PacketClass::Alert, "#e377c2", "alert"),
    (PacketClass::Control, "#7f7f7f", "TCP-only"),
    (PacketClass::Invalid, "#ff7f0e", "invalid (bad checksum)"),
    (PacketClass::Unknown, "#bcbd22", "unrecognised"),
];

/// The colour of a class.
pub fn colour(class: PacketClass) -> &'static str {
    CLASSES
        .iter()
        .find(|(c, _, _)| *c == class)
        .map_or("#000000", |(_, colour, _)| colour)
}

/// Escapes text for XML.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const FONT: &str = "font-family=\"sans-serif\" font-size=\"12\"";

/// "Nice" tick step for a span: 1, 2 or 5 times a power of ten.
fn tick_step(span: f64, ticks: f64) -> f64 {
    let raw = (span / ticks).max(1e-9);
    let pow = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * pow)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * pow)
}

/// The packet plot: client-to-server packets above the axis, replies
/// below; x is seconds before the last packet.
pub fn packet_plot(r: &ScenarioResult) -> String {
    let (w, h) = (960.0, 420.0);
    let (left, right, top, bottom) = (70.0, 20.0, 40.0, 70.0);
    let mid = top + (h - top - bottom) / 2.0;
    let half = (h - top - bottom) / 2.0;
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" {FONT}>\
         <rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\
         <text x=\"{left}\" y=\"20\" font-size=\"14\">{} over {}: {} packets (above: client to server; below: server to client)</text>",
        escape(&r.transport),
        escape(&r.scenario.title),
        r.packets.len()
    );
    let end = r.packets.iter().map(|p| p.t).fold(0.0, f64::max);
    let span = end.max(1e-3);
    let max_len = r
        .packets
        .iter()
        .map(|p| p.len)
        .max()
        .unwrap_or(1500)
        .max(100) as f64;
    let x = |t: f64| left + (t / span) * (w - left - right);
    // Axes and ticks: time before the end, lengths up and down.
    let _ = write!(
        s,
        "<line x1=\"{left}\" y1=\"{mid}\" x2=\"{}\" y2=\"{mid}\" stroke=\"#000\"/>\
         <line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{}\" stroke=\"#000\"/>",
        w - right,
        h - bottom
    );
    let step = tick_step(span, 8.0);
    let mut k = 0.0;
    while k <= span + 1e-9 {
        let tx = x(end - k);
        let _ = write!(
            s,
            "<line x1=\"{tx:.1}\" y1=\"{}\" x2=\"{tx:.1}\" y2=\"{}\" stroke=\"#000\"/>\
             <text x=\"{tx:.1}\" y=\"{}\" text-anchor=\"middle\">{}{}</text>",
            h - bottom,
            h - bottom + 5.0,
            h - bottom + 18.0,
            if k > 0.0 { "-" } else { "" },
            trim(k)
        );
        k += step;
    }
    let _ = write!(
        s,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">seconds before the connection's end</text>\
         <text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\
         <text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\
         <text x=\"{}\" y=\"{}\" text-anchor=\"end\">0</text>\
         <text x=\"14\" y=\"{mid}\" transform=\"rotate(-90 14 {mid})\" text-anchor=\"middle\">IPv4 length, bytes</text>",
        (left + w - right) / 2.0,
        h - bottom + 34.0,
        left - 4.0,
        top + 4.0,
        max_len,
        left - 4.0,
        h - bottom,
        max_len,
        left - 4.0,
        mid + 4.0,
    );
    // Bars at least 2 px wide so that single packets stay visible.
    let bar = ((w - left - right) / (r.packets.len().max(1) as f64)).clamp(2.0, 8.0);
    for p in &r.packets {
        let bh = (p.len as f64 / max_len) * half;
        let bx = x(p.t) - bar / 2.0;
        let by = if p.from_client { mid - bh } else { mid };
        let _ = write!(
            s,
            "<rect x=\"{bx:.1}\" y=\"{by:.1}\" width=\"{bar:.1}\" height=\"{bh:.1}\" fill=\"{}\"><title>{:.3} s, {} B, {}</title></rect>",
            colour(p.class),
            p.t - end,
            p.len,
            p.class.name()
        );
    }
    legend(&mut s, left, h - 16.0);
    s.push_str("</svg>");
    s
}

fn legend(s: &mut String, mut x: f64, y: f64) {
    for (_, colour, label) in CLASSES {
        let _ = write!(
            s,
            "<rect x=\"{x}\" y=\"{}\" width=\"12\" height=\"12\" fill=\"{colour}\"/>\
             <text x=\"{}\" y=\"{y}\">{label}</text>",
            y - 10.0,
            x + 16.0
        );
        x += 24.0 + 7.0 * label.len() as f64;
    }
}

fn trim(v: f64) -> String {
    let t = format!("{v:.3}");
    t.trim_end_matches('0').trim_end_matches('.').to_string()
}
