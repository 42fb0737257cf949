//! Transports side by side: per (scenario, transport) the numbers a reader
//! compares (set-up, round trips, goodput, bytes and packets on the wire
//! per payload byte, how fast a silent peer was declared gone, whether
//! the data came through intact and once), each computed from one
//! [`ScenarioResult`] alone, then grouped per scenario with every row set
//! against the plain TCP row, or the best row when plain TCP did not run.
//! Datagram transports' rows (plain UDP, TYPHOON) sit in the same tables
//! with their own numbers (delivered fraction, repeats, reordering) and
//! are set against the plain UDP row, or the best datagram row; stream
//! rows are compared among themselves only.
//! The report shows it as a table ([`crate::comparison_html`]) and writes
//! it as `comparison.json`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::results::ScenarioResult;
use crate::subject::PacketClass;
use crate::timeline::PacketRecord;

/// Transport names of plain TCP, the baseline: the subject calls itself
/// `tcp`, the command line calls it `plain`.
pub const PLAIN: &[&str] = &["tcp", "plain"];
/// Transport names of plain UDP, the datagram baseline.
pub const PLAIN_UDP: &[&str] = &["udp", "plain-udp"];

/// Where a set-up time comes from. The two clocks differ:
/// `client.connected` counts from the scenario's start, packet times from
/// the first captured packet; a set-up time is only ever taken from one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SetupSource {
    /// The lab's client timed its own set-up (`client.connected`, seconds
    /// since the scenario's start).
    Client,
    /// Estimated from the capture (packet times, seconds since the first
    /// captured packet) for a program whose set-up the lab cannot see:
    /// from the client's first packet to its first packet with payload
    /// after the server's first packet with payload.
    Capture,
}

/// A set-up time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Setup {
    /// Milliseconds.
    pub ms: f64,
    /// Which clock it was read from.
    pub source: SetupSource,
}

/// How the transport dealt with a silent peer (stale scenario only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Gone {
    /// It declared the peer gone `after_s` seconds after the silence.
    Declared {
        /// Seconds from the silence to the declaration.
        after_s: f64,
        /// The transport's own bound, seconds.
        bound_s: Option<f64>,
        /// `after_s <= bound_s` (the verdict allows a slack on top).
        within_bound: Option<bool>,
    },
    /// It never did: the run's own limit ended the wait, or the run ended
    /// before the silence.
    NotDeclared {
        /// The transport's own bound, seconds.
        bound_s: Option<f64>,
        /// How the session ended instead.
        why: String,
    },
    /// A datagram transport with no way to notice a silent peer (plain
    /// UDP): nothing was declared, and nothing could be.
    NoMechanism,
}

/// A datagram transport's own numbers in one scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatagramMetrics {
    /// Datagrams sent.
    pub sent: u32,
    /// Datagrams whose echo came back intact.
    pub delivered: u32,
    /// `delivered / sent`.
    pub delivered_fraction: f64,
    /// The least fraction the verdict accepts (`None`: not worked out).
    pub min_fraction: Option<f64>,
    /// Deliveries of a datagram already delivered, both ends.
    pub duplicates: u32,
    /// First arrivals after a higher number, both ends.
    pub reordered: u32,
    /// Altered datagrams delivered, both ends (must be 0).
    pub altered: u32,
    /// Whether the transport promises at most once.
    pub at_most_once: bool,
}

/// Whether every message came back intact and once, and if not, why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intact {
    /// Every expected message echoed, no wrong or extra data, in order.
    pub ok: bool,
    /// What fell short, one phrase each (empty when `ok`).
    pub why: Vec<String>,
}

/// The numbers of one transport in one scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// The scenario's name.
    pub scenario: String,
    /// The transport's name.
    pub transport: String,
    /// `PASS`, `FAIL` or `NOT RUN`.
    pub verdict: String,
    /// Why the scenario was not run, if it was not.
    pub not_run: Option<String>,
    /// Why the session ended early, if it did.
    pub error: Option<String>,
    /// Session set-up.
    pub setup: Option<Setup>,
    /// Median round trip, ms.
    pub rtt_p50_ms: Option<f64>,
    /// 95th percentile round trip, ms.
    pub rtt_p95_ms: Option<f64>,
    /// Echoed payload bytes per second.
    pub goodput_bytes_per_s: Option<f64>,
    /// Payload the exchange carried: each echoed message there and back.
    pub payload_bytes: u64,
    /// IPv4 bytes of every captured packet, both directions.
    pub wire_bytes: u64,
    /// Captured packets, both directions.
    pub packets: u64,
    /// `wire_bytes / payload_bytes`; `None` without echoes or packets.
    pub wire_per_payload: Option<f64>,
    /// Packets per KiB of payload; `None` without echoes or packets.
    pub packets_per_kib: Option<f64>,
    /// Wire bytes per packet class (`data`, `control`, `handshake`, ...).
    pub wire_bytes_by_class: BTreeMap<String, u64>,
    /// The silent peer (stale scenario that ran), else `None`.
    pub gone: Option<Gone>,
    /// Intact and once (`None` when not run). For a datagram transport:
    /// nothing altered, and no repeat if it promises at most once.
    pub intact: Option<Intact>,
    /// A datagram transport's numbers (`None` for a stream).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datagram: Option<DatagramMetrics>,
}

impl Metrics {
    /// Whether this row is a datagram transport's.
    pub fn is_datagram(&self) -> bool {
        self.datagram.is_some()
    }
}

/// The numbers of `r`.
pub fn metrics(r: &ScenarioResult) -> Metrics {
    let ran = r.skipped.is_none();
    let payload = payload_bytes(r);
    let wire: u64 = r.packets.iter().map(|p| p.len as u64).sum();
    let per_payload = |x: f64| (payload > 0 && !r.packets.is_empty()).then(|| x / payload as f64);
    let mut by_class = BTreeMap::new();
    for p in &r.packets {
        *by_class.entry(p.class.name().to_string()).or_insert(0) += p.len as u64;
    }
    Metrics {
        scenario: r.scenario.name.clone(),
        transport: r.transport.clone(),
        verdict: r.verdict_word().into(),
        not_run: r.skipped.clone(),
        error: r.client.error.clone(),
        setup: setup(r),
        rtt_p50_ms: r.rtt_ms.map(|q| q.p50),
        rtt_p95_ms: r.rtt_ms.map(|q| q.p95),
        goodput_bytes_per_s: r.rate_bytes_per_s,
        payload_bytes: payload,
        wire_bytes: wire,
        packets: r.packets.len() as u64,
        wire_per_payload: per_payload(wire as f64),
        packets_per_kib: per_payload(r.packets.len() as f64 * 1024.0),
        wire_bytes_by_class: by_class,
        gone: ran.then(|| gone(r)).flatten(),
        intact: ran.then(|| intact(r)),
        datagram: r.datagram.as_ref().map(|d| DatagramMetrics {
            sent: d.sent,
            delivered: r.delivered,
            delivered_fraction: f64::from(r.delivered) / f64::from(d.sent.max(1)),
            min_fraction: d.min_fraction,
            duplicates: d.duplicates(),
            reordered: d.reordered(),
            altered: r.client.wrong + r.server.wrong,
            at_most_once: d.at_most_once,
        }),
    }
}

/// Payload bytes the exchange carried: every echoed message twice, there
/// and back (its header included, as the transport carries it).
pub fn payload_bytes(r: &ScenarioResult) -> u64 {
    r.client
        .messages
        .iter()
        .filter(|m| m.echoed.is_some())
        .map(|m| 2 * m.size as u64)
        .sum()
}

/// The set-up time: the client's own when it has one, else from the capture.
pub fn setup(r: &ScenarioResult) -> Option<Setup> {
    if let Some(at) = r.client.connected {
        return Some(Setup {
            ms: at * 1e3,
            source: SetupSource::Client,
        });
    }
    setup_from_capture(&r.packets).map(|ms| Setup {
        ms,
        source: SetupSource::Capture,
    })
}

/// Milliseconds from the client's first packet to the first client packet
/// with payload after the server's first packet with payload: the client
/// has heard the server and speaks again. A FIN or RST ends a session
/// rather than setting one up, so it does not count as payload here.
/// Protocols whose client sends data first (plain TCP) come out one data
/// round trip long: the capture alone cannot tell set-up from data.
pub fn setup_from_capture(packets: &[PacketRecord]) -> Option<f64> {
    let carries = |p: &PacketRecord| {
        !matches!(
            p.class,
            PacketClass::Control | PacketClass::Invalid | PacketClass::Close
        )
    };
    let first = packets.iter().find(|p| p.from_client)?;
    let heard = packets.iter().position(|p| !p.from_client && carries(p))?;
    let done = packets
        .get(heard + 1..)?
        .iter()
        .find(|p| p.from_client && carries(p))?;
    Some((done.t - first.t) * 1e3)
}

/// How the silent peer was dealt with; `None` outside the stale scenario.
pub fn gone(r: &ScenarioResult) -> Option<Gone> {
    r.scenario.stale_after?;
    let bound_s = r.gone_bound;
    if r.datagram.is_some() && bound_s.is_none() && r.client.error.is_none() {
        return Some(Gone::NoMechanism);
    }
    Some(match r.declared_gone_after() {
        Some(after_s) => Gone::Declared {
            after_s,
            bound_s,
            within_bound: bound_s.map(|b| after_s <= b),
        },
        None => Gone::NotDeclared {
            bound_s,
            why: match (&r.client.silenced_at, &r.client.error) {
                (None, Some(e)) => format!("the run ended before the silence: {e}"),
                (None, None) => "the peer was never silenced".into(),
                (Some(_), e) => e.clone().unwrap_or_else(|| "no reason given".into()),
            },
        },
    })
}

/// Intact and once, from the checks the verdict makes.
pub fn intact(r: &ScenarioResult) -> Intact {
    if let Some(d) = &r.datagram {
        return datagram_intact(r, d);
    }
    let mut why = Vec::new();
    let expected = r.expected_echoes();
    if r.delivered < expected {
        why.push(format!("{} of {expected} messages echoed", r.delivered));
    }
    if !r.no_wrong_data() {
        why.push(format!(
            "wrong data: {} wrong echoes and {} extra bytes at the client, {} wrong messages at the server",
            r.client.wrong, r.client.extra_bytes, r.server.wrong
        ));
    }
    if !r.in_order_once() {
        why.push("messages reached the server out of order or twice".into());
    }
    Intact {
        ok: why.is_empty(),
        why,
    }
}

/// A datagram run: nothing altered, no repeat where at most once is
/// promised (loss is its delivered fraction's business).
fn datagram_intact(r: &ScenarioResult, d: &crate::results_dgram::DatagramStats) -> Intact {
    let mut why = Vec::new();
    let altered = r.client.wrong + r.server.wrong;
    if altered > 0 {
        why.push(format!("{altered} altered datagrams delivered"));
    }
    if d.at_most_once && d.duplicates() > 0 {
        why.push(format!(
            "{} repeats delivered, though it promises at most once",
            d.duplicates()
        ));
    }
    Intact {
        ok: why.is_empty(),
        why,
    }
}

/// What a row is set against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Baseline {
    /// The plain TCP row of the scenario.
    Plain,
    /// Per column, the best row that ran (lowest set-up, round trip and
    /// wire bytes; highest goodput): plain TCP did not run here.
    Best,
}

/// One column's reference value and whose it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reference {
    /// The transport.
    pub transport: String,
    /// Its value.
    pub value: f64,
}

/// The reference of each compared column.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct References {
    /// Set-up, ms.
    pub setup_ms: Option<Reference>,
    /// Median round trip, ms.
    pub rtt_p50_ms: Option<Reference>,
    /// Goodput, bytes per second.
    pub goodput_bytes_per_s: Option<Reference>,
    /// Wire bytes per payload byte.
    pub wire_per_payload: Option<Reference>,
}

/// A row's value divided by its column's reference.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Ratios {
    /// Set-up.
    pub setup: Option<f64>,
    /// Median round trip.
    pub rtt_p50: Option<f64>,
    /// Goodput.
    pub goodput: Option<f64>,
    /// Wire bytes per payload byte.
    pub wire_per_payload: Option<f64>,
}

/// One transport's row in a scenario's block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// The transport.
    pub transport: String,
    /// Its numbers; `None` when the run holds no result of this transport
    /// for this scenario.
    pub metrics: Option<Metrics>,
    /// Against the block's references.
    pub ratios: Ratios,
    /// What the numbers show, in plain words.
    pub sentence: String,
}

/// One scenario, every transport.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioBlock {
    /// The scenario's name.
    pub scenario: String,
    /// What it shows.
    pub title: String,
    /// Its netem options.
    pub netem: String,
    /// What the stream rows' ratios are against.
    pub baseline: Baseline,
    /// The stream rows' reference values.
    pub references: References,
    /// What the datagram rows' ratios are against (plain UDP, or the
    /// best datagram row); `None` without datagram rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datagram_baseline: Option<Baseline>,
    /// The datagram rows' reference values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datagram_references: Option<References>,
    /// One per transport, in the order of the run.
    pub rows: Vec<Row>,
}

/// The whole comparison (`comparison.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// Every transport, in the order of the run.
    pub transports: Vec<String>,
    /// Every scenario, in the order of the run.
    pub scenarios: Vec<ScenarioBlock>,
}

/// The transports of `results`, in order of first appearance.
pub fn transports(results: &[ScenarioResult]) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    for r in results {
        if !seen.contains(&r.transport) {
            seen.push(r.transport.clone());
        }
    }
    seen
}

/// The comparison of `results`; `None` unless they hold more than one
/// transport (one transport has nothing to be compared with).
pub fn compare(results: &[ScenarioResult]) -> Option<Comparison> {
    let transports = transports(results);
    if transports.len() < 2 {
        return None;
    }
    let mut scenarios: Vec<&ScenarioResult> = Vec::new();
    for r in results {
        if !scenarios.iter().any(|s| s.scenario.name == r.scenario.name) {
            scenarios.push(r);
        }
    }
    let blocks = scenarios
        .into_iter()
        .map(|first| {
            let of = |t: &String| {
                results
                    .iter()
                    .find(|r| r.scenario.name == first.scenario.name && &r.transport == t)
                    .map(metrics)
            };
            let rows: Vec<(String, Option<Metrics>)> =
                transports.iter().map(|t| (t.clone(), of(t))).collect();
            block(first, rows)
        })
        .collect();
    Some(Comparison {
        transports,
        scenarios: blocks,
    })
}

fn block(first: &ScenarioResult, rows: Vec<(String, Option<Metrics>)>) -> ScenarioBlock {
    let ran: Vec<&Metrics> = rows
        .iter()
        .filter_map(|(_, m)| m.as_ref())
        .filter(|m| m.not_run.is_none())
        .collect();
    let streams: Vec<&Metrics> = ran.iter().copied().filter(|m| !m.is_datagram()).collect();
    let datagrams: Vec<&Metrics> = ran.iter().copied().filter(|m| m.is_datagram()).collect();
    let (baseline, references) = baseline_of(&streams, PLAIN);
    let has_datagrams = rows
        .iter()
        .any(|(_, m)| m.as_ref().is_some_and(Metrics::is_datagram));
    let (datagram_baseline, datagram_references) = baseline_of(&datagrams, PLAIN_UDP);
    let rows = rows
        .into_iter()
        .map(|(transport, metrics)| {
            let dgram = metrics.as_ref().is_some_and(Metrics::is_datagram);
            let (b, refs, plain) = if dgram {
                (datagram_baseline, &datagram_references, PLAIN_UDP)
            } else {
                (baseline, &references, PLAIN)
            };
            let ratios = metrics
                .as_ref()
                .map(|m| ratios(m, refs))
                .unwrap_or_default();
            let sentence = crate::comparison_words::sentence(
                &transport,
                metrics.as_ref(),
                &ratios,
                crate::comparison_words::Against {
                    baseline: b,
                    refs,
                    plain,
                },
            );
            Row {
                transport,
                metrics,
                ratios,
                sentence,
            }
        })
        .collect();
    ScenarioBlock {
        scenario: first.scenario.name.clone(),
        title: first.scenario.title.clone(),
        netem: first.scenario.netem.clone(),
        baseline,
        references,
        datagram_baseline: has_datagrams.then_some(datagram_baseline),
        datagram_references: has_datagrams.then_some(datagram_references),
        rows,
    }
}

/// The baseline of rows of one kind: the row named in `plain` when it
/// ran, else per column the best row (none when fewer than two ran).
fn baseline_of(ran: &[&Metrics], plain: &[&str]) -> (Baseline, References) {
    let plain = ran
        .iter()
        .find(|m| plain.contains(&m.transport.as_str()))
        .copied();
    let (baseline, references) = match plain {
        Some(p) => (
            Baseline::Plain,
            References {
                setup_ms: reference(p, p.setup.map(|s| s.ms)),
                rtt_p50_ms: reference(p, p.rtt_p50_ms),
                goodput_bytes_per_s: reference(p, p.goodput_bytes_per_s),
                wire_per_payload: reference(p, p.wire_per_payload),
            },
        ),
        None => (
            Baseline::Best,
            References {
                setup_ms: best(ran, |m| m.setup.map(|s| s.ms), false),
                rtt_p50_ms: best(ran, |m| m.rtt_p50_ms, false),
                goodput_bytes_per_s: best(ran, |m| m.goodput_bytes_per_s, true),
                wire_per_payload: best(ran, |m| m.wire_per_payload, false),
            },
        ),
    };
    // A row alone is the best of nothing.
    if baseline == Baseline::Best && ran.len() < 2 {
        return (baseline, References::default());
    }
    (baseline, references)
}

fn reference(m: &Metrics, value: Option<f64>) -> Option<Reference> {
    value.filter(|v| v.is_finite()).map(|value| Reference {
        transport: m.transport.clone(),
        value,
    })
}

fn best(
    ran: &[&Metrics],
    value: impl Fn(&Metrics) -> Option<f64>,
    highest: bool,
) -> Option<Reference> {
    ran.iter()
        .filter_map(|m| reference(m, value(m)))
        .reduce(|a, b| {
            let better = if highest {
                b.value > a.value
            } else {
                b.value < a.value
            };
            if better {
                b
            } else {
                a
            }
        })
}

fn ratios(m: &Metrics, refs: &References) -> Ratios {
    let ratio = |v: Option<f64>, r: &Option<Reference>| match (v, r) {
        (Some(v), Some(r)) if r.value > 0.0 => Some(v / r.value),
        _ => None,
    };
    if m.not_run.is_some() {
        return Ratios::default();
    }
    Ratios {
        setup: ratio(m.setup.map(|s| s.ms), &refs.setup_ms),
        rtt_p50: ratio(m.rtt_p50_ms, &refs.rtt_p50_ms),
        goodput: ratio(m.goodput_bytes_per_s, &refs.goodput_bytes_per_s),
        wire_per_payload: ratio(m.wire_per_payload, &refs.wire_per_payload),
    }
}

#[cfg(test)]
#[path = "comparison_tests.rs"]
mod tests;
