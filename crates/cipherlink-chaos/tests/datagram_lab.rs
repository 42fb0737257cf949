//! Datagram transports through the TUN lab, as `cipherlink chaos run
//! --transport plain-udp,typhoon,link-udp` runs them: real UDP packets through the
//! router's models, the datagram verdict judged on what came back, the
//! capture classed. Needs root and /dev/net/tun; without them each test
//! prints a note and checks nothing (CIPHERLINK_REQUIRE_PEERS=1 makes
//! that a failure).

use std::sync::Arc;
use std::time::Duration;

use cipherlink_chaos::dgram_run::run_datagram_scenario;
use cipherlink_chaos::lab::Lab;
use cipherlink_chaos::output::{Invoker, OutDir};
use cipherlink_chaos::results::{Mode, ScenarioResult};
use cipherlink_chaos::scenario_run::{RunOptions, CAPTURE_LIMIT};
use cipherlink_chaos::scenarios::{select, Timers};
use cipherlink_chaos::subject::{
    link_keepalive, typhoon_timers, DatagramSubject, LinkUdp, PacketClass, PlainUdp, Typhoon,
};

fn lab_or_note(test: &str) -> bool {
    match Lab::available() {
        Ok(()) => true,
        Err(why) => {
            cipherlink_test_support::unavailable(
                "TUN lab (root, /dev/net/tun, ip netns)",
                test,
                &why.to_string(),
            );
            false
        }
    }
}

async fn run<S: DatagramSubject + Clone>(
    subject: S,
    scenario: &str,
    dir: &std::path::Path,
) -> ScenarioResult {
    let opts = RunOptions {
        seed: 1,
        timers: Timers::default(),
        out: Arc::new(OutDir::open(dir, Invoker::current_user()).expect("out dir")),
        mode: Mode::Lab,
        prefix: "dg".into(),
        port: 7400,
        capture_limit: CAPTURE_LIMIT,
    };
    let def = select(scenario)
        .and_then(|v| v.into_iter().next())
        .expect("scenario");
    let r = run_datagram_scenario(subject, &def, &opts)
        .await
        .expect("scenario");
    let d = r.datagram.as_ref().expect("datagram stats");
    println!(
        "{} {scenario}: {} ({}/{} echoed, min {:?}, dup {}, reordered {}; router {:?})\n  {}",
        r.transport,
        r.verdict_word(),
        r.delivered,
        d.sent,
        d.min_fraction,
        d.duplicates(),
        d.reordered(),
        r.router,
        r.verdict.checks.join("\n  ")
    );
    r
}

fn classes(r: &ScenarioResult, class: PacketClass) -> usize {
    r.packets.iter().filter(|p| p.class == class).count()
}

/// Loss reaches the application (not every datagram came back), the
/// router lost UDP packets at about the rate asked, and the verdict's
/// bound held.
fn assert_lossy(r: &ScenarioResult) {
    assert!(r.verdict.pass, "{:?}", r.verdict);
    let d = r.datagram.as_ref().expect("datagram stats");
    let rc = r.router.expect("router counts");
    assert!(r.delivered < d.sent, "30% loss each way lost nothing");
    for dir in 0..2 {
        let rate = rc.lost[dir] as f64 / rc.received[dir].max(1) as f64;
        assert!((0.15..0.45).contains(&rate), "loss {dir}: {rate} of {rc:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_udp_through_the_lab() {
    if !lab_or_note("plain_udp_through_the_lab") {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let ideal = run(PlainUdp, "ideal", dir.path()).await;
    assert!(ideal.verdict.pass, "{:?}", ideal.verdict);
    assert_eq!(ideal.delivered, 256);
    // Every packet is a datagram of the exchange, and nothing else.
    assert_eq!(classes(&ideal, PacketClass::Data), ideal.packets.len());
    assert_eq!(ideal.packets.len(), 2 * 256);
    assert!(ideal.rtt_ms.is_some());
    assert!(dir.path().join("udp-ideal.pcap").exists());

    let loss = run(PlainUdp, "loss", dir.path()).await;
    assert_lossy(&loss);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typhoon_through_the_lab() {
    if !lab_or_note("typhoon_through_the_lab") {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let ideal = run(Typhoon::new(typhoon_timers(false)), "ideal", dir.path()).await;
    assert!(ideal.verdict.pass, "{:?}", ideal.verdict);
    assert_eq!(ideal.delivered, 256);
    // Read with the server key: the INITs, data, the termination; nothing
    // unread, nothing invalid.
    assert!(
        classes(&ideal, PacketClass::Handshake) >= 2,
        "{:?}",
        ideal.packets
    );
    assert!(classes(&ideal, PacketClass::Data) >= 2 * 256);
    assert_eq!(classes(&ideal, PacketClass::Close), 1);
    assert_eq!(classes(&ideal, PacketClass::Unknown), 0);
    assert_eq!(classes(&ideal, PacketClass::Invalid), 0);

    let loss = run(Typhoon::new(typhoon_timers(false)), "loss", dir.path()).await;
    assert_lossy(&loss);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typhoon_declares_a_silent_peer_gone_within_its_bound() {
    if !lab_or_note("typhoon_declares_a_silent_peer_gone_within_its_bound") {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let r = run(Typhoon::new(typhoon_timers(true)), "stale", dir.path()).await;
    assert!(r.verdict.pass, "{:?}", r.verdict);
    let after = r.declared_gone_after().expect("declared gone");
    let bound = r.gone_bound.expect("a bound");
    assert!(
        after <= bound + Duration::from_secs(3).as_secs_f64(),
        "{after} > {bound}"
    );
    let rc = r.router.expect("router counts");
    assert!(rc.silenced[0] > 0, "the client's datagrams met the silence");
}

/// The link's datagram mode: everything on an ideal network, read from the
/// capture with the session's secrets (two pieces and msg2, data, one
/// close, nothing unread); through loss what the loss explains; and the
/// network's duplicates never reach the application (its replay window).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_udp_through_the_lab() {
    if !lab_or_note("link_udp_through_the_lab") {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let subject = || LinkUdp::new(link_keepalive(false)).expect("link subject");
    let ideal = run(subject(), "ideal", dir.path()).await;
    assert!(ideal.verdict.pass, "{:?}", ideal.verdict);
    assert_eq!(ideal.delivered, 256);
    assert!(
        classes(&ideal, PacketClass::Handshake) >= 3,
        "{:?}",
        ideal.packets
    );
    assert!(classes(&ideal, PacketClass::Data) >= 2 * 256);
    assert_eq!(classes(&ideal, PacketClass::Close), 1);
    assert_eq!(classes(&ideal, PacketClass::Unknown), 0);
    assert_eq!(classes(&ideal, PacketClass::Invalid), 0);

    let loss = run(subject(), "loss", dir.path()).await;
    assert_lossy(&loss);

    let dup = run(subject(), "duplicate", dir.path()).await;
    assert!(dup.verdict.pass, "{:?}", dup.verdict);
    let d = dup.datagram.as_ref().expect("datagram stats");
    assert_eq!(
        d.server.duplicates + d.client.duplicates,
        0,
        "duplicates reached the application"
    );
    let rc = dup.router.expect("router counts");
    assert!(
        rc.duplicated.iter().sum::<u64>() > 0,
        "the router duplicated nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_udp_declares_a_silent_peer_gone_within_its_bound() {
    if !lab_or_note("link_udp_declares_a_silent_peer_gone_within_its_bound") {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let subject = LinkUdp::new(link_keepalive(true)).expect("link subject");
    let r = run(subject, "stale", dir.path()).await;
    assert!(r.verdict.pass, "{:?}", r.verdict);
    let after = r.declared_gone_after().expect("declared gone");
    let bound = r.gone_bound.expect("a bound");
    assert!(after <= bound + 3.0, "{after} > {bound}");
}
