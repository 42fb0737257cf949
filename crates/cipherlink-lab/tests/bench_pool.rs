//! The Pool benchmark runs every pair it claims: Rust-Rust always, and with
//! the real tno.mpc.communication 5.x installed, Rust-Python and the
//! Python-Python baseline, over plain HTTP and mutual TLS. Every phase must
//! have delivered all its messages (a lost one makes the run fail with a
//! timeout instead of a row). No timing is asserted.

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use std::path::PathBuf;

use cipherlink_lab::bench_pool::{self, PoolBenchEvent, PoolBenchOptions, PythonParty};
use cipherlink_test_support::{peer, Peer};

/// A Python party running the package's benchmark script.
fn party(interpreter: PathBuf) -> PythonParty {
    PythonParty {
        interpreter,
        script: PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../cipherlink-pool/tests/py/bench_party.py"
        )),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_pair_runs_and_reports() {
    let python = peer!(Peer::PythonTno5);
    let options = PoolBenchOptions {
        sizes: vec![16, 70_000],
        messages_small: 40,
        messages_large: 40,
        depth: 4,
        plain: true,
        tls: true,
        python: python.clone().map(party),
    };
    let mut heard = 0;
    let report = bench_pool::run(options, |event| {
        if let PoolBenchEvent::Row(_) = event {
            heard += 1;
        }
    })
    .await
    .expect("bench runs");
    assert_eq!(
        heard,
        report.rows.len(),
        "every row is told as it is measured"
    );
    let pairs: &[&str] = if python.is_some() {
        &["rust-rust", "rust-python5", "python5-python5"]
    } else {
        &["rust-rust"]
    };
    assert_eq!(report.rows.len(), 2 * 2 * pairs.len());
    for row in &report.rows {
        assert!(pairs.contains(&row.pair.as_str()), "{row:?}");
        assert_eq!(row.messages, 40);
        assert!(
            row.oneway_msgs_per_s > 0.0 && row.pipelined_msgs_per_s > 0.0,
            "{row:?}"
        );
        assert!(
            row.rtt_p50_ms > 0.0 && row.rtt_p99_ms >= row.rtt_p50_ms,
            "{row:?}"
        );
    }
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["rows"].as_array().unwrap().len(), report.rows.len());
    if python.is_some() {
        // One ratio per transport and size, each against its own baseline.
        assert_eq!(report.ratios().len(), 2 * 2, "{:?}", report.ratios());
    }
}

/// A Python without tno.mpc.communication (the plain `ssl` peer's venv) cannot
/// be a party: its cases are reported with its stderr and what it needs, and
/// the Rust rows still run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_without_the_package_is_reported_and_the_rest_runs() {
    let Some(python) = peer!(Peer::Python) else {
        return;
    };
    let options = PoolBenchOptions {
        sizes: vec![16],
        messages_small: 10,
        messages_large: 10,
        depth: 4,
        plain: true,
        tls: false,
        python: Some(party(python)),
    };
    let report = bench_pool::run(options, |_| {}).await.expect("bench runs");
    assert_eq!(report.rows.len(), 1, "{:?}", report.rows);
    assert_eq!(report.rows[0].pair, "rust-rust");
    assert_eq!(
        report.python_failures.len(),
        2,
        "{:?}",
        report.python_failures
    );
    for failure in &report.python_failures {
        assert!(
            failure.contains("No module named") || failure.contains("lacks"),
            "{failure}"
        );
        assert!(failure.contains("tno.mpc.communication"), "{failure}");
    }
}
