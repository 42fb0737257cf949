//! Hand-written, self-contained SVG (no scripts, no external fonts) of a
//! scenario: a packet plot like seed 003's (bar height = packet length,
//! x = time before the connection's end, colour = packet type) and a
//! sequence diagram of the messages (direction, size, time).

use std::fmt::Write;

use crate::results::ScenarioResult;
use crate::subject::PacketClass;

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

/// The sequence diagram: client and server lifelines, time downward, an
/// arrow per message each way, labelled with its size; the silence and
/// the failure marked.
pub fn sequence_diagram(r: &ScenarioResult) -> String {
    let c = &r.client;
    let mut end = r.duration.max(1e-3);
    for m in &c.messages {
        end = end.max(m.echoed.unwrap_or(0.0));
    }
    let (w, h) = (720.0, 760.0);
    let (top, bottom) = (70.0, 30.0);
    let (cx, sx) = (170.0, 600.0);
    let y = |t: f64| top + (t / end) * (h - top - bottom);
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" {FONT}>\
         <defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"6\" markerHeight=\"6\" orient=\"auto-start-reverse\">\
         <path d=\"M 0 0 L 10 5 L 0 10 z\" fill=\"#333\"/></marker></defs>\
         <rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\
         <text x=\"10\" y=\"20\" font-size=\"14\">{} over {}: {} of {} messages echoed</text>\
         <text x=\"{cx}\" y=\"50\" text-anchor=\"middle\" font-weight=\"bold\">client (A)</text>\
         <text x=\"{sx}\" y=\"50\" text-anchor=\"middle\" font-weight=\"bold\">server (B)</text>\
         <line x1=\"{cx}\" y1=\"{top}\" x2=\"{cx}\" y2=\"{}\" stroke=\"#000\" stroke-width=\"2\"/>\
         <line x1=\"{sx}\" y1=\"{top}\" x2=\"{sx}\" y2=\"{}\" stroke=\"#000\" stroke-width=\"2\"/>",
        escape(&r.transport),
        escape(&r.scenario.title),
        r.delivered,
        r.scenario.messages,
        h - bottom,
        h - bottom
    );
    let step = tick_step(end, 10.0);
    let mut t = 0.0;
    while t <= end + 1e-9 {
        let _ = write!(
            s,
            "<line x1=\"60\" y1=\"{0:.1}\" x2=\"{cx}\" y2=\"{0:.1}\" stroke=\"#ddd\"/>\
             <text x=\"55\" y=\"{1:.1}\" text-anchor=\"end\">{2} s</text>",
            y(t),
            y(t) + 4.0,
            trim(t)
        );
        t += step;
    }
    if let Some(at) = c.connected {
        let _ = write!(
            s,
            "<rect x=\"{}\" y=\"{top}\" width=\"{}\" height=\"{:.1}\" fill=\"{}\" opacity=\"0.25\"/>\
             <text x=\"{}\" y=\"{:.1}\">set-up {:.1} ms</text>",
            cx,
            sx - cx,
            (y(at) - top).max(1.0),
            colour(PacketClass::Handshake),
            cx + 6.0,
            y(at) - 2.0,
            at * 1e3
        );
    }
    // Labels only where they do not overprint the previous one.
    let mut last_label = f64::NEG_INFINITY;
    for m in &c.messages {
        let colour_data = colour(PacketClass::Data);
        let (sent, got) = (y(m.sent), m.server_received.map(&y));
        match got {
            Some(g) => {
                let _ = write!(
                    s,
                    "<line x1=\"{cx}\" y1=\"{sent:.1}\" x2=\"{sx}\" y2=\"{g:.1}\" stroke=\"{colour_data}\" marker-end=\"url(#arrow)\"><title>message {} ({} B) sent at {:.3} s</title></line>",
                    m.seq, m.size, m.sent
                );
                if let Some(e) = m.echoed {
                    let _ = write!(
                        s,
                        "<line x1=\"{sx}\" y1=\"{g:.1}\" x2=\"{cx}\" y2=\"{:.1}\" stroke=\"#1f77b4\" marker-end=\"url(#arrow)\"><title>echo of {} back at {:.3} s</title></line>",
                        y(e),
                        m.seq,
                        e
                    );
                }
            }
            None => {
                // Never arrived: an arrow that stops halfway, in red.
                let _ = write!(
                    s,
                    "<line x1=\"{cx}\" y1=\"{sent:.1}\" x2=\"{}\" y2=\"{:.1}\" stroke=\"#d62728\" stroke-dasharray=\"4 3\" marker-end=\"url(#arrow)\"/>",
                    (cx + sx) / 2.0,
                    sent + 8.0
                );
            }
        }
        if sent - last_label >= 11.0 {
            last_label = sent;
            let _ = write!(
                s,
                "<text x=\"{}\" y=\"{:.1}\" font-size=\"10\">#{} {} B</text>",
                cx - 70.0,
                sent + 3.0,
                m.seq,
                m.size
            );
        }
    }
    if let Some(at) = c.silenced_at {
        let _ = write!(
            s,
            "<line x1=\"60\" y1=\"{0:.1}\" x2=\"{1}\" y2=\"{0:.1}\" stroke=\"#d62728\" stroke-dasharray=\"6 4\"/>\
             <text x=\"{1}\" y=\"{2:.1}\" text-anchor=\"end\" fill=\"#d62728\">peer silenced at {3:.2} s</text>",
            y(at),
            w - 10.0,
            y(at) + 14.0,
            at
        );
    }
    if let (Some(at), Some(reason)) = (c.failed_at, &c.error) {
        let reason: String = reason.chars().take(90).collect();
        let _ = write!(
            s,
            "<text x=\"{cx}\" y=\"{0:.1}\" text-anchor=\"middle\" fill=\"#d62728\" font-size=\"18\">✕</text>\
             <text x=\"{1}\" y=\"{2:.1}\" fill=\"#d62728\" font-size=\"11\">{3:.2} s: {4}</text>",
            y(at) + 6.0,
            10.0,
            (y(at) + 22.0).min(h - 6.0),
            at,
            escape(&reason)
        );
    }
    s.push_str("</svg>");
    s
}
