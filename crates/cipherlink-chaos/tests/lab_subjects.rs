//! Subjects through the TUN lab: plain TCP and cipherlink TLS (the
//! library's subjects, as `cipherlink chaos run` drives them), with the
//! packets classified from the lab's capture. Needs root and /dev/net/tun;
//! without them each test prints a note and checks nothing.

use std::collections::HashMap;
use std::time::Duration;

use cipherlink_chaos::capture::Capture;
use cipherlink_chaos::lab::Lab;
use cipherlink_chaos::lab_echo::{echo, EchoOutcome};
use cipherlink_chaos::model::Model;
use cipherlink_chaos::netem::parse;
use cipherlink_chaos::router::Router;
use cipherlink_chaos::subject::{classify_ipv4, PacketClass, PlainTcp, StreamSubject, Tls};
use cipherlink_chaos::tun_router::{route, RouterStats};
use tokio::sync::oneshot;

const LIMIT: Duration = Duration::from_secs(90);

/// Runs an echo of `n` bytes with `subject` through `netem` (both ways);
/// returns the outcome, the router's counts and the delivered packets' classes.
async fn run<S: StreamSubject + Clone>(
    subject: S,
    netem: &str,
    n: usize,
) -> Option<(EchoOutcome, RouterStats, HashMap<PacketClass, usize>)> {
    if let Err(why) = Lab::available() {
        cipherlink_test_support::unavailable(
            "TUN lab (root, /dev/net/tun, ip netns)",
            "lab_subjects",
            &why.to_string(),
        );
        return None;
    }
    let mut lab = Lab::create("s").expect("lab set-up");
    let (a, b) = lab.take_devices().expect("devices");
    let model = |stream: u64| Model::new(parse(netem).expect("netem"), 10 + stream);
    let router = Router::new(model(0), model(1));
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let mut capture = Capture::new(Vec::new()).expect("pcap header");
        let stats = route(a, b, router, Some(&mut capture), async {
            let _ = stopped.await;
        })
        .await
        .expect("router");
        (stats, capture.into_inner())
    });
    let payload: Vec<u8> = (0..n).map(|i| (i * 31 % 256) as u8).collect();
    let outcome = echo(&lab, subject.clone(), payload, 7001, LIMIT)
        .await
        .expect("scenario");
    let _ = stop.send(());
    let (stats, pcap) = task.await.expect("router task");
    let mut reader = pcap_file::pcap::PcapReader::new(std::io::Cursor::new(pcap)).expect("pcap");
    let mut classes = HashMap::new();
    while let Some(Ok(packet)) = reader.next_packet() {
        *classes
            .entry(classify_ipv4(&subject, &packet.data))
            .or_insert(0) += 1;
    }
    println!(
        "{} through {netem}: {outcome:?}\n  {stats:?}\n  {classes:?}",
        subject.name()
    );
    Some((outcome, stats, classes))
}

fn assert_complete(o: &EchoOutcome, n: usize) {
    assert_eq!(o.error, None);
    assert!(o.intact);
    assert_eq!(o.received, n);
    assert!(o.echoed.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_tcp_through_loss() {
    let Some((outcome, stats, classes)) = run(PlainTcp, "loss 30%", 5_000).await else {
        return;
    };
    assert_complete(&outcome, 5_000);
    assert!(stats.lost[0] + stats.lost[1] > 0);
    assert!(classes.get(&PacketClass::Control).copied().unwrap_or(0) > 0);
    assert!(classes.get(&PacketClass::Data).copied().unwrap_or(0) > 0);
    // Nothing but the test's TCP crosses the lab (no IPv6 chatter).
    assert_eq!(classes.get(&PacketClass::Unknown), None, "{classes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_survives_every_impairment_at_once() {
    // TCP below TLS repairs loss, duplicates, reordering and (by its
    // checksums) corruption: TLS sees a clean stream, only slower.
    let netem = "delay 20ms 10ms reorder 25% loss 10% duplicate 10% corrupt 10%";
    let Some((outcome, stats, classes)) =
        run(Tls::new().expect("TLS subject"), netem, 40_000).await
    else {
        return;
    };
    assert_complete(&outcome, 40_000);
    let sum = |x: [u64; 2]| x[0] + x[1];
    assert!(sum(stats.lost) > 0 && sum(stats.duplicated) > 0 && sum(stats.corrupted) > 0);
    for class in [
        PacketClass::Handshake,
        PacketClass::Data,
        PacketClass::Control,
    ] {
        assert!(
            classes.get(&class).copied().unwrap_or(0) > 0,
            "no {class:?}"
        );
    }
}
