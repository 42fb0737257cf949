//! How fast the TUN router is with no impairment: packets per second
//! forwarded from namespace A to B, and the latency it adds (UDP round
//! trips through the router, less the same round trips over A's loopback,
//! halved). Prints the numbers for docs/chaos.md; asserts only sanity
//! bounds, since CI machines are shared (build with `--release` to measure).
//! Needs root and /dev/net/tun; without them it prints a note and checks nothing.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use cipherlink_chaos::lab::{Lab, ADDR_A, ADDR_B};
use cipherlink_chaos::model::Model;
use cipherlink_chaos::netem::Netem;
use cipherlink_chaos::router::Router;
use cipherlink_chaos::tun_router::route;
use tokio::sync::oneshot;

const ECHO_PORT: u16 = 7400;
const SINK_PORT: u16 = 7401;
const PINGS: usize = 2000;
const FLOOD: Duration = Duration::from_secs(2);

/// UDP echo on `addr` until `stop` arrives or nothing comes for 5 s.
fn echo(addr: SocketAddr) {
    let Ok(sock) = UdpSocket::bind(addr) else {
        return;
    };
    let _ = sock.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = [0u8; 2048];
    while let Ok((n, from)) = sock.recv_from(&mut buf) {
        if &buf[..n] == b"stop" {
            return;
        }
        let _ = sock.send_to(&buf[..n], from);
    }
}

/// Median round trip of `PINGS` 32-byte pings to `to`, in microseconds.
fn ping(to: SocketAddr) -> f64 {
    let sock = UdpSocket::bind(SocketAddr::from(([0, 0, 0, 0], 0))).expect("bind");
    sock.set_read_timeout(Some(Duration::from_secs(1)))
        .expect("timeout");
    let mut rtts = Vec::with_capacity(PINGS);
    let mut buf = [0u8; 64];
    for i in 0..PINGS {
        let t0 = Instant::now();
        sock.send_to(&(i as u64).to_be_bytes(), to).expect("send");
        if sock.recv_from(&mut buf).is_ok() {
            rtts.push(t0.elapsed().as_secs_f64() * 1e6);
        }
    }
    let _ = sock.send_to(b"stop", to);
    assert!(
        rtts.len() > PINGS * 9 / 10,
        "only {} of {PINGS} pings answered",
        rtts.len()
    );
    rtts.sort_by(f64::total_cmp);
    rtts[rtts.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_throughput_and_added_latency() {
    if let Err(why) = Lab::available() {
        cipherlink_test_support::unavailable(
            "TUN lab (root, /dev/net/tun, ip netns)",
            "router_perf",
            &why.to_string(),
        );
        return;
    }
    let mut lab = Lab::create("p").expect("lab set-up");
    let (a, b) = lab.take_devices().expect("devices");
    let router = Router::new(
        Model::new(Netem::default(), 0),
        Model::new(Netem::default(), 1),
    );
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(route(
        a,
        b,
        router,
        None::<&mut cipherlink_chaos::capture::Capture<std::io::Sink>>,
        async {
            let _ = stopped.await;
        },
    ));

    // Latency: through the router, and over A's own loopback.
    let b_echo = lab.spawn_in(&lab.b, || async {
        echo(SocketAddr::from((ADDR_B, ECHO_PORT)))
    });
    let a_echo = lab.spawn_in(&lab.a, || async {
        echo(SocketAddr::from(([127, 0, 0, 1], ECHO_PORT)))
    });
    std::thread::sleep(Duration::from_millis(200));
    let pings = lab.spawn_in(&lab.a, || async {
        let lab_rtt = ping(SocketAddr::from((ADDR_B, ECHO_PORT)));
        let loopback_rtt = ping(SocketAddr::from(([127, 0, 0, 1], ECHO_PORT)));
        (lab_rtt, loopback_rtt)
    });
    let (lab_rtt, loopback_rtt) = tokio::task::spawn_blocking(move || pings.join())
        .await
        .expect("join")
        .expect("no panic")
        .expect("in namespace");
    let _ = tokio::task::spawn_blocking(move || (b_echo.join(), a_echo.join())).await;
    let added = (lab_rtt - loopback_rtt) / 2.0;

    // Throughput: A floods 64-byte datagrams for FLOOD; B counts them.
    let sink = lab.spawn_in(&lab.b, || async {
        let sock = UdpSocket::bind(SocketAddr::from((ADDR_B, SINK_PORT))).expect("bind sink");
        sock.set_read_timeout(Some(Duration::from_millis(500)))
            .expect("timeout");
        let mut buf = [0u8; 2048];
        let (mut n, mut first, mut last) = (0u64, None, Instant::now());
        while sock.recv_from(&mut buf).is_ok() {
            n += 1;
            last = Instant::now();
            first.get_or_insert(last);
        }
        (n, first.map(|f| last.duration_since(f)))
    });
    std::thread::sleep(Duration::from_millis(200));
    let flood = lab.spawn_in(&lab.a, || async {
        let sock = UdpSocket::bind(SocketAddr::from((ADDR_A, 0))).expect("bind");
        let to = SocketAddr::from((ADDR_B, SINK_PORT));
        let t0 = Instant::now();
        let mut sent = 0u64;
        while t0.elapsed() < FLOOD {
            // A full TUN queue refuses with ENOBUFS: that is the router's limit.
            if sock.send_to(&[0u8; 64], to).is_ok() {
                sent += 1;
            }
        }
        sent
    });
    let sent = tokio::task::spawn_blocking(move || flood.join())
        .await
        .expect("join")
        .expect("no panic")
        .expect("in namespace");
    let (received, span) = tokio::task::spawn_blocking(move || sink.join())
        .await
        .expect("join")
        .expect("no panic")
        .expect("in namespace");
    let _ = stop.send(());
    let stats = task.await.expect("router task").expect("router");
    let pps = received as f64 / span.unwrap_or(FLOOD).as_secs_f64().max(1e-3);
    // What the router itself forwarded during the flood (B's socket may
    // drop some when its reader falls behind).
    let forwarded = stats.sent[0].saturating_sub(PINGS as u64 + 2);
    let router_pps = forwarded as f64 / FLOOD.as_secs_f64();
    println!(
        "router ({} build): {router_pps:.0} packets/s forwarded A->B by the router, {pps:.0}/s counted by B \
         ({received} of {sent} sent in {:?}); \
         median RTT {lab_rtt:.1} us through the router, {loopback_rtt:.1} us over loopback: \
         {added:.1} us added per crossing; stats {stats:?}",
        if cfg!(debug_assertions) { "debug" } else { "release" },
        span
    );
    // Sanity, not targets: every packet B counted crossed the router.
    assert!(stats.sent[0] >= received);
    assert!(pps > 5_000.0, "{pps}");
    assert!(added < 5_000.0, "{added} us");
    drop(lab);
}
