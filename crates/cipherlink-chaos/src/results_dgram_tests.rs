use super::*;
use crate::dgram_run::datagram_scenario;
use crate::exchange::{ClientLog, MessageRecord, ServerLog};
use crate::results::Mode;
use crate::scenarios::{select, Timers};

/// A datagram run of `scenario` in which datagram `seq` came back when
/// `back(seq)`, one every 10 ms, echoed 5 ms later.
struct Run {
    scenario: &'static str,
    sent: u32,
    client: ClientLog,
    server: ServerLog,
    arrivals: (Arrivals, Arrivals),
    at_most_once: bool,
    bound: Option<f64>,
}

impl Run {
    fn new(scenario: &'static str, sent: u32, back: fn(u32) -> bool) -> Self {
        let messages: Vec<MessageRecord> = (0..sent)
            .map(|seq| MessageRecord {
                seq,
                size: 100,
                sent: f64::from(seq) * 0.01,
                server_received: None,
                echoed: back(seq).then(|| f64::from(seq) * 0.01 + 0.005),
            })
            .collect();
        let server = ServerLog {
            received: messages
                .iter()
                .filter(|m| m.echoed.is_some())
                .map(|m| (m.seq, m.sent + 0.002))
                .collect(),
            ..ServerLog::default()
        };
        Run {
            scenario,
            sent,
            client: ClientLog {
                connected: Some(0.001),
                messages,
                completed: true,
                ..ClientLog::default()
            },
            server,
            arrivals: Default::default(),
            at_most_once: false,
            bound: None,
        }
    }

    fn judge(self) -> ScenarioResult {
        let def = select(self.scenario)
            .and_then(|v| v.into_iter().next())
            .map(|d| datagram_scenario(&d))
            .expect("scenario");
        let netem = crate::netem::parse(&def.netem).expect("netem");
        let stats = DatagramStats::new(
            &netem,
            self.sent,
            10.0,
            self.arrivals.0,
            self.arrivals.1,
            self.at_most_once,
        );
        ScenarioResult::new(
            def,
            "test",
            Mode::Lab,
            1,
            Timers::default(),
            self.bound,
            self.client,
            self.server,
            3.0,
            None,
            Vec::new(),
            None,
        )
        .with_datagram(stats)
    }

    fn passes(self) -> bool {
        self.judge().verdict.pass
    }
}

fn fails_with(r: ScenarioResult, words: &str) {
    assert!(!r.verdict.pass, "{:?}", r.verdict);
    assert!(
        r.verdict
            .checks
            .iter()
            .any(|c| c.starts_with("FAIL") && c.contains(words)),
        "no failing check says `{words}`: {:?}",
        r.verdict.checks
    );
}

#[test]
fn expected_fractions_follow_the_impairment() {
    let e = |s: &str| expected_fraction(&crate::netem::parse(s).expect("netem"));
    let close = |a: Option<f64>, b: f64| a.is_some_and(|a| (a - b).abs() < 1e-9);
    assert!(close(e(""), 1.0));
    assert!(close(e("loss 30%"), 0.49));
    assert!(close(e("corrupt 30%"), 0.49));
    assert!(close(e("duplicate 30%"), 1.0));
    assert!(close(e("loss 10% corrupt 10%"), 0.81 * 0.81));
    // Gilbert-Elliott: bad a fifth of the time (p/(p+r)), losing all there.
    assert!(close(e("loss gemodel 5% 20% 100% 0%"), 0.8 * 0.8));
    assert_eq!(e("loss state 1%"), None);
    // 256 datagrams at 49%: four deviations (12.5 points) below.
    let sd = (0.49f64 * 0.51 / 256.0).sqrt();
    assert!((min_fraction(0.49, 256) - (0.49 - 4.0 * sd)).abs() < 1e-9);
    // Many datagrams: the 5-point floor.
    assert!((min_fraction(0.49, 1_000_000) - 0.44).abs() < 1e-9);
}

#[test]
fn an_ideal_run_must_deliver_everything() {
    let ideal = Run::new("ideal", 256, |_| true).judge();
    assert!(ideal.verdict.pass, "{:?}", ideal.verdict);
    let min = ideal.datagram.and_then(|d| d.min_fraction);
    assert_eq!(min, Some(1.0), "no margin without impairment");
    fails_with(
        Run::new("ideal", 256, |s| s != 100).judge(),
        "unimpaired network delivers everything",
    );
    // Nothing sent is nothing delivered.
    assert!(!Run::new("ideal", 0, |_| true).passes());
}

#[test]
fn loss_within_what_the_impairment_explains() {
    // 30% each way: 49% expected, at least 36.5% passes.
    assert!(Run::new("loss", 256, |s| s % 2 == 0).passes());
    assert!(Run::new("loss", 256, |s| s % 5 < 2).passes()); // 40%
    fails_with(Run::new("loss", 256, |s| s % 3 == 0).judge(), "expected"); // 33.6%
                                                                           // Corruption drops like loss (the kernel discards a bad checksum).
    assert!(Run::new("corrupt", 256, |s| s % 2 == 0).passes());
    // Duplication and delay lose nothing: all but a few must come back.
    fails_with(
        Run::new("duplicate", 256, |s| s % 2 == 0).judge(),
        "expected",
    );
    assert!(Run::new("jitter", 256, |s| s % 50 != 0).passes());
}

#[test]
fn delivery_must_go_on_to_the_end() {
    // Enough overall (75%), but nothing of the last quarter: stopped.
    fails_with(
        Run::new("loss", 256, |s| s < 192).judge(),
        "delivery goes on to the end",
    );
    // A session that ended early fails even with enough delivered.
    let mut r = Run::new("loss", 256, |s| s % 2 == 0);
    r.client.completed = false;
    r.client.error = Some("typhoon recv: timed out".into());
    r.client.failed_at = Some(2.0);
    fails_with(r.judge(), "the session ended early");
}

#[test]
fn nothing_altered_and_repeats_only_where_allowed() {
    let mut r = Run::new("corrupt", 256, |s| s % 2 == 0);
    r.server.wrong = 1;
    fails_with(r.judge(), "nothing altered delivered");
    let mut r = Run::new("corrupt", 256, |s| s % 2 == 0);
    r.client.wrong = 2;
    fails_with(r.judge(), "nothing altered delivered");

    let dup = Arrivals {
        duplicates: 3,
        reordered: 0,
    };
    let mut r = Run::new("duplicate", 256, |_| true);
    r.arrivals = (dup, dup);
    let judged = r.judge();
    assert!(judged.verdict.pass, "{:?}", judged.verdict);
    assert_eq!(
        judged.datagram.as_ref().map(DatagramStats::duplicates),
        Some(6)
    );
    let mut r = Run::new("duplicate", 256, |_| true);
    r.arrivals = (dup, Arrivals::default());
    r.at_most_once = true;
    fails_with(r.judge(), "promises at most once");
    // Reordering is counted, never a failure.
    let mut r = Run::new("reorder", 256, |_| true);
    r.arrivals.0.reordered = 40;
    assert!(r.passes());
}

fn stale(bound: Option<f64>, error: Option<&str>, declared_after: f64) -> Run {
    let mut r = Run::new("stale", 60, |s| s < 32);
    r.bound = bound;
    r.client.silenced_at = Some(0.33);
    if let Some(e) = error {
        r.client.completed = false;
        r.client.error = Some(e.into());
        r.client.failed_at = Some(0.33 + declared_after);
    }
    r
}

#[test]
fn a_silent_peer_is_declared_gone_within_the_bound() {
    let gone = "typhoon recv: timed out waiting for the server's handshake";
    assert!(stale(Some(8.2), Some(gone), 5.0).passes());
    // Bound 8.2 s + 3 s slack.
    fails_with(stale(Some(8.2), Some(gone), 12.0).judge(), "declared gone");
    fails_with(
        stale(
            Some(8.2),
            Some("the transport did not declare the silent peer gone within 11.2s"),
            11.2,
        )
        .judge(),
        "declared gone",
    );
    // No way to notice (plain UDP): nothing declared passes, an end does not.
    assert!(stale(None, None, 0.0).passes());
    fails_with(
        stale(None, Some("recv: refused"), 1.0).judge(),
        "cannot notice",
    );
    // An echo after the silence: it leaked.
    let mut r = stale(Some(8.2), Some(gone), 5.0);
    r.client.messages[40].echoed = Some(0.5);
    fails_with(r.judge(), "came back after it");
    // Never silenced: too few echoes.
    let mut r = stale(Some(8.2), Some(gone), 5.0);
    r.client.silenced_at = None;
    fails_with(r.judge(), "never silenced");
}
