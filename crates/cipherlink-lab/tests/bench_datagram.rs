//! `bench datagram`: a short run with tiny counts gives a plain and a
//! TYPHOON row with every case measured and the shape the CLI writes as
//! JSON; as root, its namespaces and wireguard-go processes are gone once
//! the run ends, fails, or is cancelled. (No figure is asserted: that is
//! what the benchmark is for.)

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use std::path::PathBuf;
use std::time::Duration;

use cipherlink_lab::bench_datagram::{self, netns, DatagramBenchOptions, PathKind, Transport};
use cipherlink_test_support::Peer;

/// The namespace tests look for leftovers of this process: one at a time.
static NAMESPACES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn options(path: PathKind, wireguard_go: Option<PathBuf>) -> DatagramBenchOptions {
    DatagramBenchOptions {
        transports: vec![Transport::Plain, Transport::Typhoon, Transport::Link],
        wireguard_go,
        path,
        duration: Duration::from_millis(200),
        concurrency: 2,
        payload: 1200,
        max_datagrams: 2_000,
        rate: 0,
        pings: 20,
        idle: 16,
        typhoon: bench_datagram::typhoon_bench_settings(|_| None).unwrap(),
        observer: None,
        end_log: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_run_has_plain_typhoon_and_link_rows_with_every_case() {
    let report = bench_datagram::run(&options(PathKind::Loopback, None))
        .await
        .unwrap();
    let names: Vec<&str> = report.rows.iter().map(|r| r.transport.as_str()).collect();
    assert_eq!(names, ["plain", "typhoon", "link"]);
    for row in &report.rows {
        assert!(
            row.failures.is_empty(),
            "{}: {:?}",
            row.transport,
            row.failures
        );
        let h = row.handshakes.as_ref().unwrap();
        assert!(h.handshakes > 0, "{}: {h:?}", row.transport);
        let t = row.throughput.as_ref().unwrap();
        assert!(
            t.sent > 0 && t.delivered <= t.sent,
            "{}: {t:?}",
            row.transport
        );
        assert_eq!(t.lost, t.sent - t.delivered);
        let l = row.latency.as_ref().unwrap();
        assert!(l.answered > 0, "{}: {l:?}", row.transport);
        assert_eq!(row.idle.as_ref().unwrap().sessions, 16);
    }
    let typhoon = &report.rows[1];
    assert!(typhoon.latency.as_ref().unwrap().added_p99_us.is_some());
    // The link's idle sessions are counted at the server end.
    let link = &report.rows[2];
    assert!(link.idle.as_ref().unwrap().ends.starts_with("server end"));
    assert_eq!(report.against_plain.len(), 2);
    // No WireGuard row: its goals are there, not measured.
    assert!(report.against_wireguard.is_empty());
    let hs_goal = &report.goals[0];
    assert_eq!((hs_goal.transport.as_str(), hs_goal.met), ("typhoon", None));
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["path"], "loopback");
    assert_eq!(json["rows"][1]["transport"], "typhoon");
    assert!(json["rows"][0]["throughput"]["mb_per_sec"].is_number());
    assert_eq!(
        json["typhoon_initial_next_in_ms"],
        serde_json::json!([0, 0])
    );
}

#[test]
fn typhoon_answers_at_once_unless_initial_next_in_is_set() {
    let fast = bench_datagram::typhoon_bench_settings(|_| None).unwrap();
    assert_eq!(fast.initial_range(), (0, 0));
    let seaside = bench_datagram::typhoon_bench_settings(|k| {
        (k == "TYPHOON_INITIAL_NEXT_IN").then(|| "0.05".to_string())
    })
    .unwrap();
    assert_eq!(seaside.initial_range(), (3_200, 12_800));
}

/// This process's namespaces, control sockets and wireguard-go processes.
fn leftovers() -> Vec<String> {
    let pid = std::process::id();
    let mut found = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/var/run/netns") {
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(&format!("cipherlink-dg-{pid}-")) {
                found.push(format!("namespace {name}"));
            }
        }
    }
    let tag = format!("d{pid}x");
    if let Ok(dir) = std::fs::read_dir("/var/run/wireguard") {
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(&tag) {
                found.push(format!("control socket {name}"));
            }
        }
    }
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains("wireguard-go") && cmdline.contains(&tag) {
                found.push(format!("process {cmdline}"));
            }
        }
    }
    found
}

/// Root, `ip` and wireguard-go, or a counted skip.
fn wireguard_lab(test: &str) -> Option<PathBuf> {
    if let Some(why) = netns::unavailable() {
        cipherlink_test_support::unavailable("network namespaces", test, &why);
        return None;
    }
    cipherlink_test_support::find(Peer::WireguardGo, test)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_with_wireguard_leaves_no_namespace_or_process_behind() {
    let Some(wg) = wireguard_lab("a_run_with_wireguard_leaves_no_namespace_or_process_behind")
    else {
        return;
    };
    let _one = NAMESPACES.lock().await;
    let report = bench_datagram::run(&options(PathKind::Veth, Some(wg)))
        .await
        .unwrap();
    let wg_row = report.rows.iter().find(|r| r.transport == "wireguard-go");
    let wg_row = wg_row.unwrap();
    assert!(wg_row.failures.is_empty(), "{:?}", wg_row.failures);
    assert!(wg_row.handshakes.as_ref().unwrap().handshakes > 0);
    assert!(report.rows.iter().all(|r| r.path == "veth"));
    assert!(report.goals.iter().any(|g| g.met.is_some()));
    assert_eq!(leftovers(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_run_leaves_no_namespace_or_process_behind() {
    let Some(wg) = wireguard_lab("a_cancelled_run_leaves_no_namespace_or_process_behind") else {
        return;
    };
    let _one = NAMESPACES.lock().await;
    let mut o = options(PathKind::Veth, Some(wg));
    o.transports = vec![Transport::Plain];
    o.idle = 0;
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
    o.observer = Some(bench_datagram::DatagramObserver::new(move |e| {
        if let bench_datagram::DatagramEvent::Case(row, case) = e {
            let _ = seen_tx.send(format!("{row} {case}"));
        }
    }));
    // Cancelled (as Ctrl-C cancels it) as WireGuard's handshakes begin:
    // not polled from then on, then dropped.
    let mut run = Box::pin(bench_datagram::run(&o));
    loop {
        tokio::select! {
            r = &mut run => panic!("the run ended before it was cancelled: {:?}", r.map(|r| r.rows.len())),
            seen = seen_rx.recv() => if seen.unwrap() == "wireguard-go handshakes" { break },
        }
    }
    let during = leftovers();
    assert!(
        during.iter().any(|l| l.starts_with("process")),
        "no wireguard-go running: {during:?}"
    );
    drop(run);
    assert_eq!(leftovers(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wireguard_that_fails_to_start_leaves_no_namespace_behind() {
    if let Some(why) = netns::unavailable() {
        cipherlink_test_support::unavailable(
            "network namespaces",
            "a_wireguard_that_fails_to_start_leaves_no_namespace_behind",
            &why,
        );
        return;
    }
    let _one = NAMESPACES.lock().await;
    let mut o = options(PathKind::Loopback, Some(PathBuf::from("/bin/false")));
    o.transports = vec![Transport::Plain];
    o.idle = 0;
    let report = bench_datagram::run(&o).await.unwrap();
    let wg = report
        .rows
        .iter()
        .find(|r| r.transport == "wireguard-go")
        .unwrap();
    assert!(
        wg.failures
            .iter()
            .any(|f| f.contains("starting wireguard-go")),
        "{:?}",
        wg.failures
    );
    assert!(report.has_failures());
    assert_eq!(leftovers(), Vec::<String>::new());
}
