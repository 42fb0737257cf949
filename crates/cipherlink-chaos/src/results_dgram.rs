//! The verdict of a datagram transport's run (docs/chaos.md, "Datagram
//! transports"). A datagram transport promises less than a stream: loss
//! reaches the application. What it must still do:
//!
//! - deliver nothing altered (any end: not one wrong datagram);
//! - deliver nothing twice, if it promises at most once (plain UDP and
//!   TYPHOON do not: their duplicates are counted and shown);
//! - lose no more than the scenario's impairment explains: the fraction
//!   echoed is at least the expected round trip's `((1 − loss)(1 −
//!   corrupt))²` less a margin (four standard deviations of a binomial
//!   count, at least 5 points), and everything on an unimpaired network;
//! - keep delivering: some datagram of the last quarter sent comes back
//!   (after any outage, delivery resumes), and the session lasts the run;
//! - in the stale scenario, nothing comes back after the silence, and a
//!   transport with a way to notice declares the silent peer gone within
//!   its bound (plus the run's slack); one without (plain UDP) is not
//!   asked to.

use serde::{Deserialize, Serialize};

use crate::dgram_exchange::Arrivals;
use crate::netem::{Loss, Netem};
use crate::results::{ScenarioResult, Verdict};

/// Margin below the expected fraction: at least this much.
const MIN_MARGIN: f64 = 0.05;
/// Margin below the expected fraction: this many binomial standard deviations.
const SIGMAS: f64 = 4.0;

/// A datagram run's own numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatagramStats {
    /// Datagrams the client sent.
    pub sent: u32,
    /// Milliseconds between two datagrams.
    pub interval_ms: f64,
    /// Repeats and order at the server.
    pub server: Arrivals,
    /// Repeats and order of the echoes at the client.
    pub client: Arrivals,
    /// The transport promises at most once (duplicates then fail).
    pub at_most_once: bool,
    /// The fraction the impairment lets through there and back, when the
    /// loss model's mean is known.
    pub expected_fraction: Option<f64>,
    /// The least fraction that passes: expected less the margin.
    pub min_fraction: Option<f64>,
}

impl DatagramStats {
    /// The numbers for a run of `sent` datagrams through `netem`.
    pub fn new(
        netem: &Netem,
        sent: u32,
        interval_ms: f64,
        server: Arrivals,
        client: Arrivals,
        at_most_once: bool,
    ) -> Self {
        let expected = expected_fraction(netem);
        // Nothing impairs the network: every datagram, no margin.
        let unimpaired = *netem == Netem::default();
        DatagramStats {
            sent,
            interval_ms,
            server,
            client,
            at_most_once,
            expected_fraction: expected,
            min_fraction: if unimpaired {
                Some(1.0)
            } else {
                expected.map(|e| min_fraction(e, sent))
            },
        }
    }

    /// Deliveries of a datagram already delivered, both ends.
    pub fn duplicates(&self) -> u32 {
        self.server.duplicates + self.client.duplicates
    }

    /// First arrivals after a higher number, both ends.
    pub fn reordered(&self) -> u32 {
        self.server.reordered + self.client.reordered
    }
}

/// Mean loss of one packet under `loss` (`None` for the 4-state model,
/// whose mean the lab does not work out).
fn mean_loss(loss: &Option<Loss>) -> Option<f64> {
    match loss {
        None => Some(0.0),
        Some(Loss::Random(c)) => Some(c.probability.fraction()),
        Some(Loss::GilbertElliott {
            p,
            r,
            bad_loss,
            good_loss,
        }) => {
            let (p, r) = (p.fraction(), r.fraction());
            let bad = if p + r > 0.0 { p / (p + r) } else { 0.0 };
            Some(bad * bad_loss.fraction() + (1.0 - bad) * good_loss.fraction())
        }
        Some(Loss::State { .. }) => None,
    }
}

/// The fraction of datagrams whose echo comes back through `netem` both
/// ways: each packet survives loss and corruption (a corrupted copy fails
/// its checksum and the kernel drops it); duplication and delay lose
/// nothing. `None` when the loss model's mean is unknown.
pub fn expected_fraction(netem: &Netem) -> Option<f64> {
    let loss = mean_loss(&netem.loss)?;
    let corrupt = netem.corrupt.map_or(0.0, |c| c.probability.fraction());
    let one_way = (1.0 - loss) * (1.0 - corrupt);
    Some(one_way * one_way)
}

/// `expected` less the margin for `sent` datagrams (never below 0).
pub fn min_fraction(expected: f64, sent: u32) -> f64 {
    let n = f64::from(sent.max(1));
    let sd = (expected * (1.0 - expected) / n).sqrt();
    (expected - (SIGMAS * sd).max(MIN_MARGIN)).max(0.0)
}

/// Checks the datagram rules.
pub fn evaluate(r: &ScenarioResult, d: &DatagramStats) -> Verdict {
    let mut checks = Vec::new();
    let mut pass = true;
    let mut check = |ok: bool, text: String| {
        pass &= ok;
        checks.push(format!("{}: {text}", if ok { "ok" } else { "FAIL" }));
    };
    let c = &r.client;
    check(
        !c.panicked && !r.server.panicked,
        if c.panicked || r.server.panicked {
            format!(
                "an end panicked: {}",
                [&c.error, &r.server.error]
                    .iter()
                    .filter_map(|e| e.as_deref())
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        } else {
            "no end panicked".into()
        },
    );
    check(
        c.wrong == 0 && r.server.wrong == 0,
        format!(
            "nothing altered delivered ({} wrong echoes at the client, {} wrong datagrams at the server)",
            c.wrong, r.server.wrong
        ),
    );
    let dups = d.duplicates();
    check(
        !d.at_most_once || dups == 0,
        if d.at_most_once {
            format!("nothing delivered twice ({dups} repeats; the transport promises at most once)")
        } else {
            format!(
                "{dups} repeats delivered ({} at the server, {} echoes): the transport does not promise at most once",
                d.server.duplicates, d.client.duplicates
            )
        },
    );
    check(
        r.duration <= r.timers.scenario.as_secs_f64() + 1.0,
        format!(
            "ended in {:.2} s (limit {:?})",
            r.duration, r.timers.scenario
        ),
    );
    match r.scenario.stale_after {
        None => delivery_checks(r, d, &mut check),
        Some(after) => stale_checks(r, after, &mut check),
    }
    Verdict { pass, checks }
}

fn delivery_checks(r: &ScenarioResult, d: &DatagramStats, check: &mut impl FnMut(bool, String)) {
    let c = &r.client;
    let fraction = f64::from(r.delivered) / f64::from(d.sent.max(1));
    let pct = |f: f64| format!("{:.1}%", f * 100.0);
    if d.min_fraction == Some(1.0) {
        check(
            d.sent > 0 && r.delivered == d.sent,
            format!(
                "an unimpaired network delivers everything: {} of {} echoed",
                r.delivered, d.sent
            ),
        );
    } else {
        match d.min_fraction {
            Some(min) => check(
                d.sent > 0 && fraction >= min,
                format!(
                    "{} of {} echoed ({}), at least {} expected ({} through the impairment, less the margin)",
                    r.delivered,
                    d.sent,
                    pct(fraction),
                    pct(min),
                    pct(d.expected_fraction.unwrap_or(0.0))
                ),
            ),
            None => check(
                r.delivered > 0,
                format!(
                    "{} of {} echoed ({}; the loss model's mean is not worked out: some must come back)",
                    r.delivered,
                    d.sent,
                    pct(fraction)
                ),
            ),
        }
    }
    // The last quarter of what was sent: after any outage, delivery resumes.
    let late = c.messages.len() * 3 / 4;
    let tail = c.messages.len() - late;
    let back = c.messages[late..]
        .iter()
        .filter(|m| m.echoed.is_some())
        .count();
    if d.expected_fraction != Some(0.0) {
        check(
            back > 0,
            format!(
                "{back} of the last {tail} datagrams sent came back: delivery goes on to the end"
            ),
        );
    }
    check(
        c.completed && c.error.is_none(),
        match &c.error {
            None if c.completed => "the session lasted the whole run".into(),
            None => "the session did not end its run".into(),
            Some(e) => format!("the session ended early: {e}"),
        },
    );
}

fn stale_checks(r: &ScenarioResult, after: u32, check: &mut impl FnMut(bool, String)) {
    let c = &r.client;
    let Some(silenced) = c.silenced_at else {
        check(
            false,
            format!(
                "the peer was never silenced: {} echoes, {after} needed{}",
                r.delivered,
                c.error
                    .as_deref()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default()
            ),
        );
        return;
    };
    let leaked = c
        .messages
        .iter()
        .filter(|m| m.echoed.is_some_and(|e| e > silenced))
        .count();
    check(
        leaked == 0 && r.delivered >= after,
        format!(
            "{} echoes, then the silence ({leaked} came back after it)",
            r.delivered
        ),
    );
    match r.gone_bound {
        Some(bound) => {
            let took = c.failed_at.map(|f| f - silenced);
            let in_time = r
                .declared_gone_after()
                .is_some_and(|t| t <= bound + r.timers.stale_slack.as_secs_f64());
            check(
                in_time,
                match took {
                    Some(t) => format!(
                        "peer declared gone {t:.2} s after the silence (bound {bound:.2} s + slack): {}",
                        c.error.as_deref().unwrap_or("")
                    ),
                    None => "the silent peer was never declared gone".into(),
                },
            );
        }
        None => check(
            c.error.is_none(),
            match &c.error {
                None => "no way to notice a silent peer (none declared, none expected)".into(),
                Some(e) => format!(
                    "the session ended, though the transport cannot notice a silent peer: {e}"
                ),
            },
        ),
    }
}

#[cfg(test)]
#[path = "results_dgram_tests.rs"]
mod tests;
