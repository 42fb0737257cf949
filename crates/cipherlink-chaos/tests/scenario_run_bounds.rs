//! A scenario's capture is bounded: held in memory in the lab, read back
//! through the proxy, a capture over its bound fails the scenario with the
//! reason rather than growing (or being cut short without a word).

use std::sync::Arc;
use std::time::Duration;

use cipherlink_chaos::capture::CaptureError;
use cipherlink_chaos::lab::Lab;
use cipherlink_chaos::output::{Invoker, OutDir, OutputError};
use cipherlink_chaos::results::Mode;
use cipherlink_chaos::scenario_run::{run_scenario, RunError, RunOptions};
use cipherlink_chaos::scenarios::{select, Timers};
use cipherlink_chaos::subject::PlainTcp;

/// A standard scenario captures some 70 packets: 2,000 bytes hold a dozen.
const TINY: usize = 2_000;

fn options(dir: &std::path::Path, mode: Mode) -> RunOptions {
    RunOptions {
        seed: 1,
        timers: Timers {
            scenario: Duration::from_secs(60),
            ..Timers::default()
        },
        out: Arc::new(OutDir::open(dir, Invoker::current_user()).expect("out dir")),
        mode,
        prefix: "b".into(),
        port: 7300,
        capture_limit: TINY,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_labs_in_memory_capture_stops_at_its_bound_and_says_so() {
    if let Err(why) = Lab::available() {
        cipherlink_test_support::unavailable(
            "TUN lab (root, /dev/net/tun, ip netns)",
            "the_labs_in_memory_capture_stops_at_its_bound_and_says_so",
            &why.to_string(),
        );
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let def = select("ideal")
        .and_then(|v| v.into_iter().next())
        .expect("ideal");
    match run_scenario(PlainTcp, &def, &options(dir.path(), Mode::Lab)).await {
        Err(RunError::Capture(CaptureError::Full { limit })) => assert_eq!(limit, TINY),
        other => panic!("{other:?}"),
    }
    // Nothing half-written left behind.
    assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 0);
}

#[tokio::test]
async fn the_proxys_capture_is_read_back_within_its_bound() {
    let dir = tempfile::tempdir().expect("temp dir");
    let def = select("ideal")
        .and_then(|v| v.into_iter().next())
        .expect("ideal");
    match run_scenario(PlainTcp, &def, &options(dir.path(), Mode::Proxy)).await {
        Err(RunError::Output(OutputError::File { reason, .. })) => {
            assert!(
                reason.contains(&format!("longer than {TINY} bytes")),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
}
