//! The sentence under each comparison row: what its numbers show, set
//! against the scenario's plain TCP row (or best row), and where the
//! bytes on the wire went, read from the packet classes.

use crate::comparison::{Baseline, DatagramMetrics, Gone, Metrics, Ratios, Reference, References};

/// A class's share of the wire below which the sentence leaves it out.
const NOTABLE_SHARE: f64 = 0.05;

/// What a row is set against: the baseline of its kind (stream or
/// datagram), its references, and the plain transport's names.
#[derive(Debug, Clone, Copy)]
pub struct Against<'a> {
    /// Plain, or the best row.
    pub baseline: Baseline,
    /// The reference values.
    pub refs: &'a References,
    /// The names of the plain transport of the row's kind
    /// ([`crate::comparison::PLAIN`] or [`crate::comparison::PLAIN_UDP`]).
    pub plain: &'a [&'a str],
}

/// What `metrics` (of `transport` in one scenario) show, in plain words.
pub fn sentence(
    transport: &str,
    metrics: Option<&Metrics>,
    ratios: &Ratios,
    against_: Against<'_>,
) -> String {
    let Some(m) = metrics else {
        return format!("{transport}: no result for this scenario in this run.");
    };
    if let Some(why) = &m.not_run {
        return format!("{transport}: not run in this scenario ({why}).");
    }
    let (baseline, refs) = (against_.baseline, against_.refs);
    // "plain" for TCP, as before; "plain UDP" for the datagram rows.
    let plain_word = if against_.plain.contains(&"udp") {
        "plain UDP"
    } else {
        "plain"
    };
    let vs = |ratio: Option<f64>, r: &Option<Reference>| {
        against(transport, ratio, r, baseline, plain_word)
    };
    let mut parts = Vec::new();
    if baseline == Baseline::Plain && against_.plain.contains(&transport) {
        parts.push("the baseline the other rows are set against".to_string());
    }
    if let Some(d) = &m.datagram {
        parts.push(datagram_words(d));
    }
    parts.push(match m.wire_per_payload {
        Some(w) => format!(
            "{w:.1} wire bytes per payload byte{}{}",
            vs(ratios.wire_per_payload, &refs.wire_per_payload),
            where_bytes_went(m)
                .map(|w| format!(": {w}"))
                .unwrap_or_default()
        ),
        None if m.payload_bytes == 0 => "nothing echoed, so no bytes per payload byte".into(),
        None => "no packets captured to count bytes in".into(),
    });
    if let Some(s) = m.setup {
        let how = match s.source {
            crate::comparison::SetupSource::Client => "",
            crate::comparison::SetupSource::Capture => ", estimated from the capture",
        };
        parts.push(format!(
            "set up in {:.1} ms{how}{}",
            s.ms,
            vs(ratios.setup, &refs.setup_ms)
        ));
    }
    if let Some(rtt) = m.rtt_p50_ms {
        parts.push(format!(
            "median round trip {rtt:.1} ms{}",
            vs(ratios.rtt_p50, &refs.rtt_p50_ms)
        ));
    }
    if let Some(g) = &m.gone {
        parts.push(gone_words(g));
    }
    if let Some(i) = &m.intact {
        parts.push(if i.ok && m.is_datagram() {
            "nothing altered".into()
        } else if i.ok {
            "every message echoed intact, once".into()
        } else {
            let ended = match (&m.error, &m.gone) {
                (Some(e), None) => format!(" (it ended: {e})"),
                _ => String::new(),
            };
            format!("not intact: {}{ended}", i.why.join(", "))
        });
    }
    format!("{transport}: {}.", parts.join("; "))
}

/// `, 1.4x plain`, `, the best here` or `, 1.4x the best (tls)`; empty for
/// the baseline itself or without a ratio.
fn against(
    transport: &str,
    ratio: Option<f64>,
    r: &Option<Reference>,
    baseline: Baseline,
    plain_word: &str,
) -> String {
    let (Some(ratio), Some(r)) = (ratio, r) else {
        return String::new();
    };
    match baseline {
        Baseline::Plain if r.transport == transport => String::new(),
        Baseline::Plain => format!(", {} {plain_word}", times(ratio)),
        Baseline::Best if r.transport == transport => ", the best here".into(),
        Baseline::Best => format!(", {} the best ({})", times(ratio), r.transport),
    }
}

/// `1.4x`; small ratios keep two decimals so they do not read `0.0x`.
pub(crate) fn times(ratio: f64) -> String {
    if ratio < 0.095 {
        format!("{ratio:.2}x")
    } else {
        format!("{ratio:.1}x")
    }
}

/// Where the wire bytes went: what the data packets alone cost per
/// payload byte, and the other classes of packet that take a notable
/// share of the wire; `None` when neither says anything.
fn where_bytes_went(m: &Metrics) -> Option<String> {
    let wire = m.wire_bytes.max(1) as f64;
    let mut others: Vec<(&str, u64)> = m
        .wire_bytes_by_class
        .iter()
        .filter(|(class, _)| class.as_str() != "data")
        .map(|(class, bytes)| (class.as_str(), *bytes))
        .filter(|(_, bytes)| *bytes as f64 / wire >= NOTABLE_SHARE)
        .collect();
    others.sort_by_key(|(_, bytes)| std::cmp::Reverse(*bytes));
    let mut words = Vec::new();
    let data = m.wire_bytes_by_class.get("data").copied().unwrap_or(0);
    if data > 0 && m.payload_bytes > 0 {
        words.push(format!(
            "data packets make {:.2} per payload byte (headers, framing, resent copies)",
            data as f64 / m.payload_bytes as f64
        ));
    }
    for (i, (class, bytes)) in others.iter().take(3).enumerate() {
        let pct = *bytes as f64 * 100.0 / wire;
        let of = if i == 0 { " of the wire" } else { "" };
        words.push(format!("{} {pct:.0}%{of}", class_words(class)));
    }
    (!words.is_empty()).then(|| words.join(", "))
}

fn class_words(class: &str) -> &'static str {
    match class {
        "control" => "TCP-only segments",
        "handshake" => "the handshake",
        "keepalive" => "keepalives",
        "alert" => "alerts",
        "close" => "FIN and RST segments",
        "invalid" => "corrupted copies the receiver dropped",
        "unknown" => "payload the classifier could not read",
        _ => "other packets",
    }
}

/// `delivered 44.1% of 256 datagrams (at least 36.5% expected), 0
/// repeats, 3 reordered`.
fn datagram_words(d: &DatagramMetrics) -> String {
    let min = d
        .min_fraction
        .map(|m| format!(" (at least {:.1}% expected)", m * 100.0))
        .unwrap_or_default();
    let repeats = match (d.duplicates, d.at_most_once) {
        (0, _) => "no repeats".to_string(),
        (n, true) => format!("{n} repeats though it promises at most once"),
        (n, false) => format!("{n} repeats passed on (it does not promise at most once)"),
    };
    format!(
        "delivered {:.1}% of {} datagrams{min}, {repeats}, {} reordered",
        d.delivered_fraction * 100.0,
        d.sent,
        d.reordered
    )
}

fn gone_words(g: &Gone) -> String {
    match g {
        Gone::NoMechanism => {
            "has no way to notice a silent peer (the application must)".into()
        }
        Gone::Declared {
            after_s,
            bound_s: Some(bound),
            ..
        } if after_s <= bound => {
            format!("declared the silent peer gone after {after_s:.1} s, within its {bound:.1} s bound")
        }
        Gone::Declared {
            after_s,
            bound_s: Some(bound),
            ..
        } => format!(
            "declared the silent peer gone after {after_s:.1} s, {:.1} s over its {bound:.1} s bound",
            after_s - bound
        ),
        Gone::Declared { after_s, .. } => {
            format!("declared the silent peer gone after {after_s:.1} s (it has no bound of its own)")
        }
        Gone::NotDeclared { bound_s, why } => {
            let bound = bound_s
                .map(|b| format!(" within its {b:.1} s bound"))
                .unwrap_or_default();
            // The lab's own "did not declare" message would only repeat it.
            if why.contains("did not declare") {
                format!("never declared the silent peer gone{bound}; the lab stopped waiting")
            } else {
                format!("never declared the silent peer gone{bound}: {why}")
            }
        }
    }
}
