//! The PORT experiment's network conditions on real TCP: two network namespaces joined through
//! the TUN router, the netem model applied per packet. Needs root and
//! /dev/net/tun; without them each test prints a note and checks nothing.

use std::io::BufWriter;
use std::net::SocketAddr;
use std::time::Duration;

use cipherlink_chaos::capture::Capture;
use cipherlink_chaos::lab::{Lab, ADDR_B};
use cipherlink_chaos::model::Model;
use cipherlink_chaos::netem::parse;
use cipherlink_chaos::router::Router;
use cipherlink_chaos::tun_router::{route, RouterStats};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::time::{timeout, Instant};

/// Generous: TCP's retransmission timers back off under 30% loss.
const LIMIT: Duration = Duration::from_secs(90);
const PORT: u16 = 7000;

fn lab_or_skip() -> Option<Lab> {
    if let Err(why) = Lab::available() {
        cipherlink_test_support::unavailable(
            "TUN lab (root, /dev/net/tun, ip netns)",
            "tun_lab",
            &why.to_string(),
        );
        return None;
    }
    Some(Lab::create("t").expect("lab set-up"))
}

fn router(netem: &str, seed: u64) -> Router {
    let m = |stream| Model::new(parse(netem).expect("test netem string"), seed * 2 + stream);
    Router::new(m(0), m(1))
}

/// Starts a TCP echo server in namespace B; returns once it listens.
fn echo_in_b(lab: &Lab) -> std::thread::JoinHandle<Result<(), cipherlink_chaos::lab::TunLabError>> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let handle = lab.spawn_in(&lab.b, move || async move {
        let listener = TcpListener::bind(SocketAddr::from((ADDR_B, PORT)))
            .await
            .expect("bind in B");
        let _ = ready_tx.send(());
        if let Ok(Ok((mut s, _))) = timeout(LIMIT, listener.accept()).await {
            let (mut r, mut w) = s.split();
            let _ = timeout(LIMIT, tokio::io::copy(&mut r, &mut w)).await;
            let _ = w.shutdown().await;
        }
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("echo server listening");
    handle
}

/// Client in namespace A: connects, sends `n` bytes, reads the echo.
/// Returns (time to connect, time for the echo, bytes back).
async fn echo_from_a(lab: &Lab, n: usize) -> (Duration, Duration, Vec<u8>, Vec<u8>) {
    let sent: Vec<u8> = (0..n).map(|i| (i * 13 % 256) as u8).collect();
    let data = sent.clone();
    let client = lab.spawn_in(&lab.a, move || async move {
        let t0 = Instant::now();
        let mut c = timeout(LIMIT, TcpStream::connect(SocketAddr::from((ADDR_B, PORT))))
            .await
            .expect("connect in time")
            .expect("connect");
        let connected = t0.elapsed();
        let t1 = Instant::now();
        let (mut r, mut w) = c.split();
        let write = async {
            w.write_all(&data).await.expect("write");
            w.shutdown().await.expect("shutdown");
        };
        let mut got = Vec::new();
        let read = r.read_to_end(&mut got);
        let ((), read) = timeout(LIMIT, async { tokio::join!(write, read) })
            .await
            .expect("echo in time");
        read.expect("read");
        (connected, t1.elapsed(), got)
    });
    let (connected, echoed, got) = tokio::task::spawn_blocking(move || client.join())
        .await
        .expect("join task")
        .expect("client thread")
        .expect("client in A");
    (connected, echoed, got, sent)
}

/// Runs an echo of `n` bytes through `netem` (both directions); returns
/// the router's stats after checking the data came back intact.
async fn scenario(netem: &str, n: usize) -> Option<(RouterStats, Duration, Duration)> {
    let mut lab = lab_or_skip()?;
    let (a, b) = lab.take_devices().expect("devices");
    let (stop, stopped) = oneshot::channel::<()>();
    let router_task = tokio::spawn(route(
        a,
        b,
        router(netem, 1),
        None::<&mut Capture<std::io::Sink>>,
        async {
            let _ = stopped.await;
        },
    ));
    let server = echo_in_b(&lab);
    let (connected, echoed, got, sent) = echo_from_a(&lab, n).await;
    assert_eq!(got, sent, "{netem}: TCP must deliver the data intact");
    let _ = tokio::task::spawn_blocking(move || server.join()).await;
    let _ = stop.send(());
    let stats = router_task.await.expect("router task").expect("router");
    println!("{netem}: connect {connected:?}, echo {echoed:?}, {stats:?}");
    Some((stats, connected, echoed))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delay_applies_to_real_tcp() {
    let Some((stats, connected, echoed)) = scenario("delay 50ms", 1000).await else {
        return;
    };
    // SYN and SYN-ACK each wait 50 ms; so do the data and its echo.
    assert!(connected >= Duration::from_millis(100), "{connected:?}");
    assert!(echoed >= Duration::from_millis(100), "{echoed:?}");
    assert!(stats.sent[0] > 0 && stats.sent[1] > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_jitter_scenario() {
    let Some((stats, ..)) = scenario("delay 100ms 75ms", 20_000).await else {
        return;
    };
    assert_eq!(stats.lost, [0, 0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_loss_scenario() {
    let Some((stats, ..)) = scenario("loss 30%", 5_000).await else {
        return;
    };
    assert!(stats.lost[0] + stats.lost[1] > 0, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_duplicate_scenario() {
    let Some((stats, ..)) = scenario("duplicate 30%", 20_000).await else {
        return;
    };
    assert!(stats.duplicated[0] + stats.duplicated[1] > 0, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_reorder_scenario() {
    let Some((stats, ..)) = scenario("delay 125ms reorder 30% 50%", 20_000).await else {
        return;
    };
    assert!(stats.sent[0] > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_corrupt_scenario() {
    // The kernel's IP and TCP checksums catch the flipped bits; TCP resends.
    let Some((stats, ..)) = scenario("corrupt 30%", 5_000).await else {
        return;
    };
    assert!(stats.corrupted[0] + stats.corrupted[1] > 0, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capture_holds_the_delivered_packets() {
    let Some(mut lab) = lab_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("lab.pcap");
    let file = std::fs::File::create(&path).expect("create");
    let (a, b) = lab.take_devices().expect("devices");
    let (stop, stopped) = oneshot::channel::<()>();
    let router_task = tokio::spawn(async move {
        let mut capture = Capture::new(BufWriter::new(file)).expect("pcap header");
        let stats = route(a, b, router("delay 10ms", 1), Some(&mut capture), async {
            let _ = stopped.await;
        })
        .await;
        capture
            .into_inner()
            .into_inner()
            .map(|_| ())
            .expect("flush");
        stats
    });
    let server = echo_in_b(&lab);
    let (_, _, got, sent) = echo_from_a(&lab, 5000).await;
    assert_eq!(got, sent);
    let _ = tokio::task::spawn_blocking(move || server.join()).await;
    let _ = stop.send(());
    let stats = router_task.await.expect("task").expect("router");

    let mut reader =
        pcap_file::pcap::PcapReader::new(std::fs::File::open(&path).expect("open")).expect("pcap");
    let mut packets = 0u64;
    let mut payload = 0usize;
    while let Some(packet) = reader.next_packet() {
        let packet = packet.expect("packet");
        let sliced = etherparse::SlicedPacket::from_ip(&packet.data).expect("IPv4");
        if let Some(etherparse::TransportSlice::Tcp(tcp)) = sliced.transport {
            payload += tcp.payload().len();
        }
        packets += 1;
    }
    assert_eq!(packets, stats.sent[0] + stats.sent[1]);
    // Both directions' data (no loss here): 5000 up and 5000 back.
    assert_eq!(payload, 10_000);
}
