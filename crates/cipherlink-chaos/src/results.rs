//! A scenario's result (written as JSON) and the pass criteria the report
//! checks: every message delivered intact, in order, exactly once, or a
//! clean failure with a reason within the time limit; never wrong data; the
//! stale scenario ends with the peer declared gone within its bound.

use serde::{Deserialize, Serialize};

use crate::exchange::{ClientLog, MessageRecord, ServerLog};
use crate::scenarios::{ScenarioDef, Timers};
use crate::timeline::PacketRecord;
use crate::tun_router::RouterStats;

/// Where the scenario ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Two namespaces joined by the TUN router (root): packet impairments.
    Lab,
    /// The stream proxy on loopback (no root): delay, jitter and
    /// corruption of a byte stream only.
    Proxy,
}

/// The router's counts, per direction (0: client to server, 1: back).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouterCounts {
    /// Packets read.
    pub received: [u64; 2],
    /// Copies delivered.
    pub sent: [u64; 2],
    /// Lost by the model.
    pub lost: [u64; 2],
    /// Dropped because the peer was silenced (stale scenario).
    pub silenced: [u64; 2],
    /// Duplicated.
    pub duplicated: [u64; 2],
    /// Corrupted copies.
    pub corrupted: [u64; 2],
    /// Dropped because the router's queue held its byte bound.
    #[serde(default)]
    pub over_memory: [u64; 2],
}

impl From<RouterStats> for RouterCounts {
    fn from(s: RouterStats) -> Self {
        RouterCounts {
            received: s.received,
            sent: s.sent,
            lost: s.lost,
            silenced: s.silenced,
            duplicated: s.duplicated,
            corrupted: s.corrupted,
            over_memory: s.over_memory,
        }
    }
}

/// Median, 95th percentile and maximum, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Quantiles {
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// Largest.
    pub max: f64,
}

impl Quantiles {
    /// Of `values` (milliseconds); `None` if empty.
    pub fn of(values: &[f64]) -> Option<Self> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
        Some(Quantiles {
            p50: at(0.5),
            p95: at(0.95),
            max: at(1.0),
        })
    }
}

/// The verdict and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// Passed every criterion.
    pub pass: bool,
    /// One line per criterion checked, `ok:` or `FAIL:`.
    pub checks: Vec<String>,
}

/// Everything about one scenario run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioResult {
    /// The scenario.
    pub scenario: ScenarioDef,
    /// The subject (`tls`, `link`, `v1`, `plain`).
    pub transport: String,
    /// Lab or proxy.
    pub mode: Mode,
    /// Seed of the impairment models.
    pub seed: u64,
    /// Time limits.
    pub timers: Timers,
    /// Why the scenario was not run, if it was not.
    pub skipped: Option<String>,
    /// The transport's own bound for declaring a silent peer gone, seconds.
    pub gone_bound: Option<f64>,
    /// The client's account.
    pub client: ClientLog,
    /// The server's account.
    pub server: ServerLog,
    /// Messages echoed intact.
    pub delivered: u32,
    /// Seconds from start to end.
    pub duration: f64,
    /// Echoed payload bytes per second over the exchange (both ways counted once).
    pub rate_bytes_per_s: Option<f64>,
    /// Round trip of each message (send to checked echo), ms.
    pub rtt_ms: Option<Quantiles>,
    /// The router's counts (lab only).
    pub router: Option<RouterCounts>,
    /// Every delivered packet, classified.
    pub packets: Vec<PacketRecord>,
    /// The pcap file, relative to the report.
    pub pcap: Option<String>,
    /// A datagram transport's run ([`crate::results_dgram`]): its own
    /// counts, and the verdict is judged by the datagram rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datagram: Option<crate::results_dgram::DatagramStats>,
    /// The verdict.
    pub verdict: Verdict,
}

impl ScenarioResult {
    /// Fills in the derived numbers and the verdict from the logs.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        scenario: ScenarioDef,
        transport: &str,
        mode: Mode,
        seed: u64,
        timers: Timers,
        gone_bound: Option<f64>,
        mut client: ClientLog,
        server: ServerLog,
        duration: f64,
        router: Option<RouterCounts>,
        packets: Vec<PacketRecord>,
        pcap: Option<String>,
    ) -> Self {
        for (seq, at) in &server.received {
            if let Some(m) = client.messages.iter_mut().find(|m| m.seq == *seq) {
                m.server_received = Some(*at);
            }
        }
        let echoed: Vec<&MessageRecord> = client
            .messages
            .iter()
            .filter(|m| m.echoed.is_some())
            .collect();
        let delivered = echoed.len() as u32;
        let rtts: Vec<f64> = echoed
            .iter()
            .filter_map(|m| m.echoed.map(|e| (e - m.sent) * 1e3))
            .collect();
        let rate = match (echoed.first(), echoed.last()) {
            (Some(first), Some(last)) => {
                let span = last.echoed.unwrap_or(last.sent) - first.sent;
                let bytes: usize = echoed.iter().map(|m| m.size).sum();
                (span > 0.0).then(|| bytes as f64 / span)
            }
            _ => None,
        };
        let mut result = ScenarioResult {
            scenario,
            transport: transport.into(),
            mode,
            seed,
            timers,
            skipped: None,
            gone_bound,
            client,
            server,
            delivered,
            duration,
            rate_bytes_per_s: rate,
            rtt_ms: Quantiles::of(&rtts),
            router,
            packets,
            pcap,
            datagram: None,
            verdict: Verdict {
                pass: false,
                checks: Vec::new(),
            },
        };
        result.verdict = evaluate(&result);
        result
    }

    /// The result of a datagram transport's run: `stats` added, and the
    /// verdict judged by the datagram rules instead.
    pub fn with_datagram(mut self, stats: crate::results_dgram::DatagramStats) -> Self {
        self.datagram = Some(stats);
        self.verdict = evaluate(&self);
        self
    }

    /// A scenario that failed before it could start (the lab could not be
    /// set up, ...): a failure, with the reason.
    pub fn error(
        scenario: ScenarioDef,
        transport: &str,
        mode: Mode,
        timers: Timers,
        why: String,
    ) -> Self {
        let mut r = Self::skipped(scenario, transport, mode, timers, why.clone());
        r.skipped = None;
        r.client.error = Some(why.clone());
        r.verdict.checks = vec![format!("FAIL: could not run: {why}")];
        r
    }

    /// Whether this scenario ran and failed (not run is not a failure:
    /// the stream proxy cannot do every scenario).
    pub fn failed(&self) -> bool {
        self.skipped.is_none() && !self.verdict.pass
    }

    /// `PASS`, `FAIL` or `NOT RUN`, as the report and the command line say it.
    pub fn verdict_word(&self) -> &'static str {
        match (self.skipped.is_some(), self.verdict.pass) {
            (true, _) => "NOT RUN",
            (false, true) => "PASS",
            (false, false) => "FAIL",
        }
    }

    /// `TRANSPORT-SCENARIO`, the stem of this result's files.
    pub fn file_stem(&self) -> String {
        format!("{}-{}", self.transport, self.scenario.name)
    }

    /// Echoes a run must have for every message to be through: all of
    /// them, or in the stale scenario those sent before the silence.
    pub fn expected_echoes(&self) -> u32 {
        self.scenario.stale_after.unwrap_or(self.scenario.messages)
    }

    /// Whether the server accepted the messages in order, each once (its
    /// sequence is 0, 1, 2, ...).
    pub fn in_order_once(&self) -> bool {
        self.server
            .received
            .iter()
            .enumerate()
            .all(|(i, (seq, _))| *seq as usize == i)
    }

    /// Whether no end saw wrong data: no wrong echo, no extra byte, no
    /// wrong message at the server.
    pub fn no_wrong_data(&self) -> bool {
        self.client.wrong == 0 && self.server.wrong == 0 && self.client.extra_bytes == 0
    }

    /// Seconds from the silence until the transport declared the silent
    /// peer gone; `None` if it was not silenced, or never declared it (the
    /// run's own limit ended the wait, which says so in the error).
    pub fn declared_gone_after(&self) -> Option<f64> {
        let c = &self.client;
        let declared = c
            .error
            .as_deref()
            .is_some_and(|e| !e.contains("did not declare"));
        match (c.silenced_at, c.failed_at) {
            (Some(s), Some(f)) if declared => Some(f - s),
            _ => None,
        }
    }

    /// A scenario this mode cannot do (the stream proxy and packet loss),
    /// with the reason: neither passed nor failed.
    pub fn skipped(
        scenario: ScenarioDef,
        transport: &str,
        mode: Mode,
        timers: Timers,
        why: String,
    ) -> Self {
        ScenarioResult {
            scenario,
            transport: transport.into(),
            mode,
            seed: 0,
            timers,
            skipped: Some(why.clone()),
            gone_bound: None,
            client: ClientLog::default(),
            server: ServerLog::default(),
            delivered: 0,
            duration: 0.0,
            rate_bytes_per_s: None,
            rtt_ms: None,
            router: None,
            packets: Vec::new(),
            pcap: None,
            datagram: None,
            verdict: Verdict {
                pass: false,
                checks: vec![format!("not run: {why}")],
            },
        }
    }
}

/// Checks the pass criteria (a datagram transport's: [`crate::results_dgram::evaluate`]).
pub fn evaluate(r: &ScenarioResult) -> Verdict {
    if let Some(d) = &r.datagram {
        return crate::results_dgram::evaluate(r, d);
    }
    let mut checks = Vec::new();
    let mut pass = true;
    let mut check = |ok: bool, text: String| {
        pass &= ok;
        checks.push(format!("{}: {text}", if ok { "ok" } else { "FAIL" }));
    };
    let c = &r.client;
    check(
        !c.panicked && !r.server.panicked,
        match (c.panicked, r.server.panicked) {
            (false, false) => "no end panicked".into(),
            _ => format!(
                "an end panicked: {}",
                [&c.error, &r.server.error]
                    .iter()
                    .filter_map(|e| e.as_deref())
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        },
    );
    check(
        r.no_wrong_data(),
        format!(
            "no wrong data (client saw {} wrong echoes and {} extra bytes, server {} wrong messages)",
            c.wrong, c.extra_bytes, r.server.wrong
        ),
    );
    check(
        r.in_order_once(),
        "messages reached the server in order, each once".into(),
    );
    let within = r.duration <= r.timers.scenario.as_secs_f64() + 1.0;
    check(
        within,
        format!(
            "ended in {:.2} s (limit {:?})",
            r.duration, r.timers.scenario
        ),
    );
    match r.scenario.stale_after {
        None => {
            let all = c.completed && r.delivered == r.scenario.messages;
            let clean_failure = !c.completed && c.error.is_some() && c.failed_at.is_some();
            check(
                all || clean_failure,
                if all {
                    format!("all {} messages echoed intact", r.delivered)
                } else {
                    format!(
                        "{} of {} echoed, then a clean failure: {}",
                        r.delivered,
                        r.scenario.messages,
                        c.error.as_deref().unwrap_or("no reason given")
                    )
                },
            );
            if r.scenario.netem.is_empty() {
                // Nothing impairs the ideal network: failing there is a bug.
                check(all, "an unimpaired network delivers everything".into());
            }
        }
        Some(after) => {
            check(
                r.delivered == after,
                format!(
                    "{} messages echoed before the silence (expected {after})",
                    r.delivered
                ),
            );
            match (c.silenced_at, c.failed_at, r.gone_bound) {
                (Some(s), Some(f), Some(bound)) => {
                    let took = f - s;
                    let in_time = r
                        .declared_gone_after()
                        .is_some_and(|t| t <= bound + r.timers.stale_slack.as_secs_f64());
                    check(
                        in_time,
                        format!(
                            "peer declared gone {took:.2} s after the silence (bound {bound:.2} s + slack): {}",
                            c.error.as_deref().unwrap_or("")
                        ),
                    );
                }
                _ => check(false, "the silent peer was never declared gone".into()),
            }
        }
    }
    Verdict { pass, checks }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenarios::select;

    fn run(name: &str, client: ClientLog, server: ServerLog) -> ScenarioResult {
        let def = select(name)
            .and_then(|v| v.into_iter().next())
            .expect("scenario");
        let bound = def.stale_after.map(|_| 2.5);
        ScenarioResult::new(
            def,
            "test",
            Mode::Lab,
            1,
            Timers::default(),
            bound,
            client,
            server,
            1.0,
            None,
            Vec::new(),
            None,
        )
    }

    fn complete(n: u32) -> (ClientLog, ServerLog) {
        let messages = (0..n)
            .map(|seq| MessageRecord {
                seq,
                size: 100,
                sent: f64::from(seq) * 0.01,
                server_received: None,
                echoed: Some(f64::from(seq) * 0.01 + 0.005),
            })
            .collect();
        let client = ClientLog {
            connected: Some(0.001),
            messages,
            completed: true,
            ..ClientLog::default()
        };
        let server = ServerLog {
            received: (0..n).map(|s| (s, f64::from(s) * 0.01 + 0.002)).collect(),
            ..ServerLog::default()
        };
        (client, server)
    }

    #[test]
    fn a_complete_run_passes_with_its_numbers() {
        let (c, s) = complete(32);
        let r = run("loss", c, s);
        assert!(r.verdict.pass, "{:?}", r.verdict);
        assert_eq!(r.delivered, 32);
        let rtt = r.rtt_ms.expect("rtt");
        assert!((rtt.p50 - 5.0).abs() < 1e-6 && (rtt.max - 5.0).abs() < 1e-6);
        assert_eq!(r.client.messages[3].server_received, Some(0.032));
        assert!(r.rate_bytes_per_s.is_some_and(|b| b > 0.0));
    }

    #[test]
    fn wrong_data_order_panics_and_silence_fail() {
        let (mut c, s) = complete(32);
        c.wrong = 1;
        assert!(!run("loss", c, s).verdict.pass);

        let (c, mut s) = complete(32);
        s.received.swap(3, 4);
        assert!(!run("loss", c, s).verdict.pass);

        let (c, mut s) = complete(32);
        s.panicked = true;
        let r = run("loss", c, s);
        assert!(!r.verdict.pass);
        assert!(r
            .verdict
            .checks
            .iter()
            .any(|c| c.starts_with("FAIL: an end panicked")));

        // A clean failure is acceptable under impairment, not on an ideal network.
        let (mut c, s) = complete(10);
        c.completed = false;
        c.error = Some("peer gone".into());
        c.failed_at = Some(0.5);
        assert!(run("loss", c.clone(), s.clone()).verdict.pass);
        assert!(!run("ideal", c, s).verdict.pass);
    }

    #[test]
    fn stale_needs_the_transport_to_declare_the_peer_gone_in_time() {
        let stale = |error: &str, after: f64| {
            let (mut c, s) = complete(4);
            c.completed = false;
            c.silenced_at = Some(0.1);
            c.failed_at = Some(0.1 + after);
            c.error = Some(error.into());
            run("stale", c, s).verdict.pass
        };
        assert!(stale("peer gone: no answer to 3 keepalive retries", 2.4));
        // Too late: bound 2.5 s + 3 s slack.
        assert!(!stale("peer gone: no answer to 3 keepalive retries", 6.0));
        // The run's own bound, not the transport, ended it.
        assert!(!stale(
            "the transport did not declare the silent peer gone within 5.5s",
            5.5
        ));
    }
}
