//! The connection benchmark counts what it claims: every connection really
//! completed the PING/PONG exchange, resumed ones really resumed, and the
//! server ends with no connection open. (No timing is asserted.)

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use std::time::Duration;

use cipherlink::{Implementation, KeyExchange};
use cipherlink_lab::bench_conn::{self, ConnBenchOptions, Mode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_are_exact_and_nothing_leaks() {
    let options = ConnBenchOptions {
        modes: vec![Mode::Plain, Mode::Tls, Mode::TlsResume],
        groups: vec![KeyExchange::X25519MlKem768, KeyExchange::X25519],
        implementations: vec![Implementation::Rustls, Implementation::Openssl],
        connections: Some(60),
        duration: Duration::from_secs(30),
        concurrency: 4,
        batch: 20,
        ..ConnBenchOptions::default()
    };
    let report = bench_conn::run(&options).await.expect("bench runs");
    // Plain, then each TLS mode x group x implementation.
    assert_eq!(report.cases.len(), 1 + 2 * 2 * 2);
    for case in &report.cases {
        assert_eq!(case.connections, 60, "{:?}", case);
        assert_eq!(case.errors, 0, "{:?}", case.first_error);
        assert!(case.conns_per_sec > 0.0);
        match case.mode {
            Mode::Plain => {
                assert_eq!(case.group, None);
                assert_eq!(case.implementation, None);
            }
            Mode::Tls => {
                assert_eq!(case.resumed, 0);
                assert_eq!(case.server_connections_left, Some(0));
                assert!(case.floor_per_sec.is_some_and(|f| f > 0.0));
            }
            Mode::TlsResume => {
                // The first connections of each worker have no ticket yet.
                assert!(case.resumed >= 60 - 4, "only {} resumed", case.resumed);
                assert_eq!(case.server_connections_left, Some(0));
            }
        }
    }
    let floors: Vec<_> = report
        .cases
        .iter()
        .filter_map(|c| c.floor.as_ref())
        .collect();
    assert_eq!(floors.len(), 8, "one floor per TLS case");
    for implementation in [Implementation::Rustls, Implementation::Openssl] {
        assert_eq!(
            report
                .cases
                .iter()
                .filter(|c| c.implementation == Some(implementation))
                .count(),
            4,
            "{implementation}"
        );
    }
    assert!(floors.iter().all(|f| f.key_exchange_us > 0.0));
    let json = serde_json::to_value(&report).expect("report serialises");
    assert_eq!(json["cases"][1]["group"], "X25519MLKEM768");
    assert_eq!(json["cases"][1]["implementation"], "rustls");
    assert_eq!(json["cases"][2]["implementation"], "openssl");
}
