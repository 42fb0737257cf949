//! The sequence diagram: every captured packet as an arrow between the two
//! lifelines (handshake included), the messages' numbers beside the client,
//! the set-up as a bracket, and the silence and failure marked.
//!
//! Time runs down, but not linearly: a handshake of a few milliseconds
//! followed by seconds of traffic would otherwise squash one or the other.
//! Every event (packet, message sent, received, echoed) gets a row at
//! least [`MIN_GAP`] pixels below the previous one, and longer pauses add
//! space in proportion to their length; the tick labels give real times.

use std::fmt::Write;

use super::{colour, escape, legend, trim, FONT};
use crate::results::ScenarioResult;
use crate::subject::PacketClass;

const WIDTH: f64 = 760.0;
const TOP: f64 = 70.0;
const BOTTOM: f64 = 50.0;
const CLIENT_X: f64 = 200.0;
const SERVER_X: f64 = 600.0;
/// Pixels between two consecutive events, at least.
const MIN_GAP: f64 = 7.0;
/// Pixels that the whole run's time would take if it were drawn linearly.
const TIME_HEIGHT: f64 = 600.0;
/// The tallest diagram drawn; past it, rows get closer than [`MIN_GAP`].
const MAX_ROWS_HEIGHT: f64 = 12_000.0;

/// A monotone map from seconds to pixels through every event's time.
struct TimeScale {
    knots: Vec<(f64, f64)>,
}

impl TimeScale {
    fn new(mut times: Vec<f64>) -> TimeScale {
        times.retain(|t| t.is_finite());
        times.push(0.0);
        times.sort_by(f64::total_cmp);
        times.dedup_by(|a, b| (*a - *b).abs() < 1e-7);
        let end = times.last().copied().unwrap_or(0.0).max(1e-3);
        let per_second = TIME_HEIGHT / end;
        let gap = MIN_GAP.min(MAX_ROWS_HEIGHT / times.len() as f64).max(1.0);
        let mut knots = Vec::with_capacity(times.len());
        let mut previous: Option<(f64, f64)> = None;
        for t in times {
            let y = match previous {
                None => TOP,
                Some((pt, py)) => py + gap.max((t - pt) * per_second),
            };
            knots.push((t, y));
            previous = Some((t, y));
        }
        TimeScale { knots }
    }

    /// The row of time `t`, between the rows of the events around it.
    fn y(&self, t: f64) -> f64 {
        let i = self.knots.partition_point(|(kt, _)| *kt < t);
        match (
            i.checked_sub(1).and_then(|j| self.knots.get(j)),
            self.knots.get(i),
        ) {
            (_, Some(&(kt, ky))) if (kt - t).abs() < 1e-7 => ky,
            (Some(&(t0, y0)), Some(&(t1, y1))) => y0 + (y1 - y0) * (t - t0) / (t1 - t0),
            (Some(&(_, y0)), None) => y0,
            (None, _) => TOP,
        }
    }

    fn bottom(&self) -> f64 {
        self.knots.last().map_or(TOP, |(_, y)| *y)
    }
}

fn event_times(r: &ScenarioResult) -> Vec<f64> {
    let c = &r.client;
    let mut times: Vec<f64> = r.packets.iter().map(|p| p.t).collect();
    for m in &c.messages {
        times.push(m.sent);
        times.extend(m.server_received);
        times.extend(m.echoed);
    }
    times.extend(c.connected);
    times.extend(c.silenced_at);
    times.extend(c.failed_at);
    times
}

/// The diagram of one scenario's run.
pub fn sequence_diagram(r: &ScenarioResult) -> String {
    let scale = TimeScale::new(event_times(r));
    let height = (scale.bottom() + BOTTOM + 20.0).round();
    let mut s = String::new();
    header(&mut s, r, height);
    ticks(&mut s, &scale);
    packets(&mut s, r, &scale);
    messages(&mut s, r, &scale);
    set_up(&mut s, r, &scale);
    silence_and_failure(&mut s, r, &scale, height);
    legend(&mut s, 10.0, height - 12.0);
    s.push_str("</svg>");
    s
}

fn header(s: &mut String, r: &ScenarioResult, height: f64) {
    let lifeline_end = height - BOTTOM;
    let _ = write!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height:.0}\" viewBox=\"0 0 {WIDTH} {height:.0}\" {FONT}>\
         <defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"6\" markerHeight=\"6\" orient=\"auto-start-reverse\">\
         <path d=\"M 0 0 L 10 5 L 0 10 z\" fill=\"#333\"/></marker></defs>\
         <rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\
         <text x=\"10\" y=\"20\" font-size=\"14\">{} over {}: {} of {} messages echoed, {} packets</text>\
         <text x=\"{CLIENT_X}\" y=\"50\" text-anchor=\"middle\" font-weight=\"bold\">client (A)</text>\
         <text x=\"{SERVER_X}\" y=\"50\" text-anchor=\"middle\" font-weight=\"bold\">server (B)</text>\
         <line x1=\"{CLIENT_X}\" y1=\"{TOP}\" x2=\"{CLIENT_X}\" y2=\"{lifeline_end:.1}\" stroke=\"#000\" stroke-width=\"2\"/>\
         <line x1=\"{SERVER_X}\" y1=\"{TOP}\" x2=\"{SERVER_X}\" y2=\"{lifeline_end:.1}\" stroke=\"#000\" stroke-width=\"2\"/>",
        escape(&r.transport),
        escape(&r.scenario.title),
        r.delivered,
        r.datagram.as_ref().map_or(r.scenario.messages, |d| d.sent),
        r.packets.len(),
    );
}

/// Time labels down the left, at event rows at least 40 px apart.
fn ticks(s: &mut String, scale: &TimeScale) {
    let end = scale.knots.last().map_or(0.0, |(t, _)| *t);
    let label = |t: f64| {
        if end < 1.0 {
            format!("{} ms", trim(t * 1e3))
        } else {
            format!("{} s", trim(t))
        }
    };
    let mut last = f64::NEG_INFINITY;
    for &(t, y) in &scale.knots {
        if y - last < 40.0 {
            continue;
        }
        last = y;
        let _ = write!(
            s,
            "<line x1=\"60\" y1=\"{y:.1}\" x2=\"{SERVER_X}\" y2=\"{y:.1}\" stroke=\"#eee\"/>\
             <text x=\"55\" y=\"{:.1}\" text-anchor=\"end\" font-size=\"10\">{}</text>",
            y + 3.0,
            label(t)
        );
    }
}

fn packets(s: &mut String, r: &ScenarioResult, scale: &TimeScale) {
    for p in &r.packets {
        let y = scale.y(p.t);
        let (from, to, way) = if p.from_client {
            (CLIENT_X, SERVER_X, "client to server")
        } else {
            (SERVER_X, CLIENT_X, "server to client")
        };
        let _ = write!(
            s,
            "<line class=\"packet\" x1=\"{from}\" y1=\"{y:.1}\" x2=\"{to}\" y2=\"{:.1}\" stroke=\"{}\" stroke-width=\"1.5\" marker-end=\"url(#arrow)\"><title>{:.4} s, {} B, {}, {way}</title></line>",
            y + 3.0,
            colour(p.class),
            p.t,
            p.len,
            p.class.name(),
        );
    }
}

/// Each message's number and size beside the client where it was sent (when
/// it does not overprint the previous label), a dot on the server's
/// lifeline when the server had it and on the client's when its echo was
/// back, and a red dashed stub for a message that never arrived.
fn messages(s: &mut String, r: &ScenarioResult, scale: &TimeScale) {
    let data = colour(PacketClass::Data);
    let mut last_label = f64::NEG_INFINITY;
    for m in &r.client.messages {
        let sent = scale.y(m.sent);
        if sent - last_label >= 11.0 {
            last_label = sent;
            let _ = write!(
                s,
                "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\" font-size=\"10\">#{} {} B</text>",
                CLIENT_X - 8.0,
                sent + 3.0,
                m.seq,
                m.size
            );
        }
        match m.server_received {
            Some(at) => {
                let _ = write!(
                    s,
                    "<circle cx=\"{SERVER_X}\" cy=\"{:.1}\" r=\"3\" fill=\"{data}\"><title>message {} whole at the server, {at:.4} s</title></circle>",
                    scale.y(at),
                    m.seq
                );
            }
            None => {
                let _ = write!(
                    s,
                    "<line x1=\"{CLIENT_X}\" y1=\"{sent:.1}\" x2=\"{}\" y2=\"{:.1}\" stroke=\"#d62728\" stroke-dasharray=\"4 3\"><title>message {} never arrived</title></line>",
                    (CLIENT_X + SERVER_X) / 2.0,
                    sent + 8.0,
                    m.seq
                );
            }
        }
        if let Some(at) = m.echoed {
            let _ = write!(
                s,
                "<circle cx=\"{CLIENT_X}\" cy=\"{:.1}\" r=\"3\" fill=\"#17becf\"><title>echo of message {} back, {at:.4} s</title></circle>",
                scale.y(at),
                m.seq
            );
        }
    }
}

/// A bracket right of the server's lifeline from the start to the moment
/// the session was set up.
fn set_up(s: &mut String, r: &ScenarioResult, scale: &TimeScale) {
    let Some(at) = r.client.connected else {
        return;
    };
    let (y0, y1) = (scale.y(0.0), scale.y(at).max(scale.y(0.0) + 2.0));
    let x = SERVER_X + 16.0;
    let _ = write!(
        s,
        "<path d=\"M {0} {y0:.1} h 6 V {y1:.1} h -6\" fill=\"none\" stroke=\"{1}\" stroke-width=\"2\"/>\
         <text x=\"{2}\" y=\"{3:.1}\" fill=\"{1}\">set-up {4:.1} ms</text>",
        x,
        colour(PacketClass::Handshake),
        x + 10.0,
        (y0 + y1) / 2.0 + 4.0,
        at * 1e3
    );
}

fn silence_and_failure(s: &mut String, r: &ScenarioResult, scale: &TimeScale, height: f64) {
    let c = &r.client;
    if let Some(at) = c.silenced_at {
        let _ = write!(
            s,
            "<line x1=\"60\" y1=\"{0:.1}\" x2=\"{1}\" y2=\"{0:.1}\" stroke=\"#d62728\" stroke-dasharray=\"6 4\"/>\
             <text x=\"{1}\" y=\"{2:.1}\" text-anchor=\"end\" fill=\"#d62728\">peer silenced at {3:.2} s</text>",
            scale.y(at),
            WIDTH - 10.0,
            scale.y(at) + 14.0,
            at
        );
    }
    if let (Some(at), Some(reason)) = (c.failed_at, &c.error) {
        let reason: String = reason.chars().take(90).collect();
        let y = scale.y(at);
        let _ = write!(
            s,
            "<text x=\"{CLIENT_X}\" y=\"{0:.1}\" text-anchor=\"middle\" fill=\"#d62728\" font-size=\"18\">✕</text>\
             <text x=\"10\" y=\"{1:.1}\" fill=\"#d62728\" font-size=\"11\">{2:.2} s: {3}</text>",
            y + 6.0,
            (y + 22.0).min(height - BOTTOM),
            at,
            escape(&reason)
        );
    }
}

#[cfg(test)]
#[path = "sequence_tests.rs"]
mod tests;
