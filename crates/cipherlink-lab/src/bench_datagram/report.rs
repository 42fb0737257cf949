//! The report: one row per transport, its ratios against plain UDP and
//! against wireguard-go, and the goals beside the numbers.

use serde::Serialize;

use super::cases::{HandshakeResult, IdleResult, LatencyResult, ThroughputResult};
use super::{DatagramBenchOptions, PathKind};
use crate::LabError;

/// One transport's numbers.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// `plain`, `typhoon`, `wireguard-go`.
    pub transport: String,
    /// The path its datagrams took: `veth` or `loopback`.
    pub path: String,
    /// Handshakes/s and CPU per handshake.
    pub handshakes: Option<HandshakeResult>,
    /// One session's datagrams/s.
    pub throughput: Option<ThroughputResult>,
    /// Round trips, and what the transport adds over plain UDP.
    pub latency: Option<LatencyResult>,
    /// Memory per idle session.
    pub idle: Option<IdleResult>,
    /// Cases that failed, with why.
    pub failures: Vec<String>,
}

impl Row {
    pub(super) fn new(transport: &str, path: &str) -> Row {
        Row {
            transport: transport.into(),
            path: path.into(),
            handshakes: None,
            throughput: None,
            latency: None,
            idle: None,
            failures: Vec::new(),
        }
    }

    fn take<T>(&mut self, case: &str, r: Result<T, LabError>) -> Option<T> {
        r.map_err(|e| self.failures.push(format!("{case}: {e}")))
            .ok()
    }

    pub(super) fn take_handshakes(&mut self, r: Result<HandshakeResult, LabError>) {
        self.handshakes = self.take("handshakes", r);
    }

    pub(super) fn take_throughput(&mut self, r: Result<ThroughputResult, LabError>) {
        self.throughput = self.take("throughput", r);
    }

    pub(super) fn take_latency(&mut self, r: Result<LatencyResult, LabError>) {
        self.latency = self.take("round trips", r);
    }

    pub(super) fn take_idle(&mut self, r: Result<IdleResult, LabError>) {
        self.idle = self.take("idle sessions", r);
    }

    fn hs(&self) -> Option<f64> {
        self.handshakes.as_ref().map(|h| h.per_sec)
    }

    fn cpu(&self) -> Option<f64> {
        self.handshakes
            .as_ref()
            .and_then(|h| h.cpu_us_per_handshake)
    }

    fn mb(&self) -> Option<f64> {
        self.throughput.as_ref().map(|t| t.mb_per_sec)
    }

    fn idle_bytes(&self) -> Option<f64> {
        self.idle.as_ref().map(|i| i.bytes_per_session)
    }
}

/// One row against another: rates as ours/theirs, costs as ours/theirs.
#[derive(Debug, Clone, Serialize)]
pub struct Ratios {
    /// The row.
    pub transport: String,
    /// What it is divided by: `plain` or `wireguard-go`.
    pub against: String,
    /// Handshakes/s, ours over theirs.
    pub handshakes: Option<f64>,
    /// CPU per handshake, ours over theirs.
    pub cpu_per_handshake: Option<f64>,
    /// MB/s, ours over theirs.
    pub mb_per_sec: Option<f64>,
    /// Round-trip p99, ours over theirs.
    pub rtt_p99: Option<f64>,
    /// Memory per idle session, ours over theirs.
    pub idle_bytes: Option<f64>,
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

fn ratios(row: &Row, base: &Row) -> Ratios {
    let p99 = |r: &Row| r.latency.as_ref().map(|l| l.rtt_p99_us);
    Ratios {
        transport: row.transport.clone(),
        against: base.transport.clone(),
        handshakes: ratio(row.hs(), base.hs()),
        cpu_per_handshake: ratio(row.cpu(), base.cpu()),
        mb_per_sec: ratio(row.mb(), base.mb()),
        rtt_p99: ratio(p99(row), p99(base)),
        idle_bytes: ratio(row.idle_bytes(), base.idle_bytes()),
    }
}

/// A goal of issue 25 beside the number it is about.
#[derive(Debug, Clone, Serialize)]
pub struct Goal {
    /// The transport it is checked for.
    pub transport: String,
    /// What the goal asks.
    pub goal: String,
    /// The measured value, in the goal's unit.
    pub value: Option<f64>,
    /// Whether it is met; `None` when not measured (e.g. no WireGuard row).
    pub met: Option<bool>,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct DatagramReport {
    /// The cipherlink transports' path.
    pub path: PathKind,
    /// Handshakes in flight at once.
    pub concurrency: usize,
    /// Payload bytes per datagram.
    pub payload: usize,
    /// Length of each handshake and throughput case, seconds.
    pub duration_s: f64,
    /// Round trips per transport.
    pub pings: u64,
    /// Idle sessions held (after the open-file limit).
    pub idle_sessions: usize,
    /// TYPHOON's INIT `next_in` range, ms (0-0: answered at once).
    pub typhoon_initial_next_in_ms: (u64, u64),
    /// TYPHOON's longest random tail per message, bytes.
    pub typhoon_max_tail: usize,
    /// How WireGuard's handshakes are forced and counted.
    pub wireguard_handshake_method: Option<String>,
    /// Plain UDP's round trips over the veth, when the other rows took
    /// loopback: WireGuard's added latency is against these.
    pub wireguard_baseline: Option<LatencyResult>,
    /// One row per transport, plain first.
    pub rows: Vec<Row>,
    /// Every row against plain UDP.
    pub against_plain: Vec<Ratios>,
    /// Every cipherlink row against wireguard-go.
    pub against_wireguard: Vec<Ratios>,
    /// The goals beside the numbers.
    pub goals: Vec<Goal>,
    /// Limits and skips.
    pub notes: Vec<String>,
    /// The handshakes' public-key floor.
    pub floor: Option<super::floor::Floor>,
    /// What WireGuard's forced handshakes cost in reconfiguration alone.
    pub wireguard_forget: Option<super::wg_cases::ForgetCost>,
}

impl DatagramReport {
    /// Whether any case of any row failed.
    pub fn has_failures(&self) -> bool {
        self.rows.iter().any(|r| !r.failures.is_empty())
    }
}

fn added(row: &mut Row, base: Option<&LatencyResult>) {
    if let (Some(l), Some(b)) = (row.latency.as_mut(), base) {
        l.added_p50_us = Some((l.rtt_p50_us - b.rtt_p50_us) / 2.0);
        l.added_p99_us = Some((l.rtt_p99_us - b.rtt_p99_us) / 2.0);
    }
}

pub(super) fn finish(
    o: &DatagramBenchOptions,
    mut rows: Vec<Row>,
    wg_baseline: Option<&LatencyResult>,
    notes: Vec<String>,
    idle: usize,
) -> DatagramReport {
    let plain_latency = rows
        .iter()
        .find(|r| r.transport == "plain")
        .and_then(|r| r.latency.clone());
    for row in rows.iter_mut().filter(|r| r.transport != "plain") {
        let base = if row.transport == "wireguard-go" {
            wg_baseline.or(plain_latency.as_ref())
        } else {
            plain_latency.as_ref()
        };
        added(row, base);
    }
    let plain = rows.iter().find(|r| r.transport == "plain");
    let wg = rows.iter().find(|r| r.transport == "wireguard-go");
    let against_plain = match plain {
        Some(p) => rows
            .iter()
            .filter(|r| r.transport != "plain")
            .map(|r| ratios(r, p))
            .collect(),
        None => Vec::new(),
    };
    let ours = || {
        rows.iter()
            .filter(|r| r.transport != "plain" && r.transport != "wireguard-go")
    };
    let against_wireguard = match wg {
        Some(w) => ours().map(|r| ratios(r, w)).collect(),
        None => Vec::new(),
    };
    let mut goals = Vec::new();
    for r in ours() {
        let goal = |goal: String, value: Option<f64>, met: fn(f64) -> bool| Goal {
            transport: r.transport.clone(),
            goal,
            value,
            met: value.map(met),
        };
        let wg_hs = ratio(r.hs(), wg.and_then(Row::hs));
        goals.push(goal(
            "handshakes/s >= wireguard-go's (x)".into(),
            wg_hs,
            |v| v >= 1.0,
        ));
        let wg_mb = ratio(r.mb(), wg.and_then(Row::mb)).map(|v| v * 100.0);
        goals.push(goal(
            "MB/s >= 80% of wireguard-go's (%)".into(),
            wg_mb,
            |v| v >= 80.0,
        ));
        let p99 = r.latency.as_ref().and_then(|l| l.added_p99_us);
        goals.push(goal(
            format!("added p99 per datagram < 100 us, {} (us)", r.path),
            p99,
            |v| v < 100.0,
        ));
        let kib = r.idle_bytes().map(|b| b / 1024.0);
        let whose = match r.idle.as_ref().map(|i| i.ends.as_str()) {
            Some(e) if e.starts_with("server end") => "server end",
            _ => "both ends",
        };
        goals.push(goal(
            format!("idle session <= 4 KiB, {whose} (KiB)"),
            kib,
            |v| v <= 4.0,
        ));
    }
    DatagramReport {
        path: o.path,
        concurrency: o.concurrency,
        payload: o.payload,
        duration_s: o.duration.as_secs_f64(),
        pings: o.pings,
        idle_sessions: idle,
        typhoon_initial_next_in_ms: o.typhoon.initial_range(),
        typhoon_max_tail: o.typhoon.max_tail_length,
        wireguard_handshake_method: wg.map(|_| super::wg_cases::HANDSHAKE_METHOD.to_string()),
        wireguard_baseline: wg_baseline.cloned(),
        against_plain,
        against_wireguard,
        goals,
        notes,
        rows,
        floor: None,
        wireguard_forget: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench_datagram::cases::Tally;

    fn row(name: &str, per_sec_handshakes: u64, mb: f64, rtt: (f64, f64), idle: f64) -> Row {
        let mut r = Row::new(name, "veth");
        let mut t = Tally::default();
        for _ in 0..per_sec_handshakes {
            t.record(Ok(std::time::Duration::from_micros(100)));
        }
        r.handshakes = Some(t.result(1, 1.0, None, "test"));
        r.throughput = Some(ThroughputResult {
            payload: 1200,
            seconds: 1.0,
            sent: 10,
            delivered: 10,
            lost: 0,
            loss_percent: 0.0,
            datagrams_per_sec: 10.0,
            mb_per_sec: mb,
            send_errors: 0,
            first_error: None,
        });
        r.latency = Some(LatencyResult {
            payload: 1200,
            pings: 1,
            answered: 1,
            rtt_p50_us: rtt.0,
            rtt_p99_us: rtt.1,
            added_p50_us: None,
            added_p99_us: None,
        });
        r.idle = Some(IdleResult {
            requested: 1,
            sessions: 1,
            rss_before: 0,
            rss_after: 0,
            bytes_per_session: idle,
            ends: "test".into(),
        });
        r
    }

    fn options() -> DatagramBenchOptions {
        DatagramBenchOptions {
            transports: Vec::new(),
            wireguard_go: None,
            path: PathKind::Veth,
            duration: std::time::Duration::from_secs(1),
            concurrency: 1,
            payload: 1200,
            max_datagrams: 1,
            rate: 0,
            pings: 1,
            idle: 1,
            typhoon: cipherlink_typhoon::TyphoonSettings::default(),
            observer: None,
            end_log: None,
        }
    }

    #[test]
    fn ratios_added_latency_and_goals_come_from_the_rows() {
        let rows = vec![
            row("plain", 4000, 100.0, (100.0, 200.0), 100.0),
            row("typhoon", 2000, 90.0, (180.0, 500.0), 5000.0),
            row("wireguard-go", 1000, 100.0, (150.0, 260.0), 9000.0),
        ];
        let r = finish(&options(), rows, None, Vec::new(), 1);
        let typhoon = r.rows[1]
            .latency
            .as_ref()
            .map(|l| (l.added_p50_us, l.added_p99_us));
        assert_eq!(typhoon, Some((Some(40.0), Some(150.0))));
        let wg = r.rows[2].latency.as_ref().map(|l| l.added_p99_us);
        assert_eq!(wg, Some(Some(30.0)));
        assert_eq!(r.against_plain.len(), 2);
        assert_eq!(r.against_plain[0].handshakes, Some(0.5));
        assert_eq!(r.against_wireguard.len(), 1);
        assert_eq!(r.against_wireguard[0].handshakes, Some(2.0));
        let met: Vec<Option<bool>> = r.goals.iter().map(|g| g.met).collect();
        // 2x WireGuard's handshakes, 90% of its MB/s, 150 us added, 4.9 KiB.
        assert_eq!(met, [Some(true), Some(true), Some(false), Some(false)]);
        assert!(r.goals.iter().all(|g| g.transport == "typhoon"));
    }

    #[test]
    fn without_wireguard_its_goals_are_not_measured() {
        let rows = vec![
            row("plain", 4000, 100.0, (100.0, 200.0), 100.0),
            row("typhoon", 2000, 90.0, (180.0, 250.0), 1000.0),
        ];
        let r = finish(&options(), rows, None, Vec::new(), 1);
        let met: Vec<Option<bool>> = r.goals.iter().map(|g| g.met).collect();
        assert_eq!(met, [None, None, Some(true), Some(true)]);
        assert!(r.against_wireguard.is_empty());
    }
}
