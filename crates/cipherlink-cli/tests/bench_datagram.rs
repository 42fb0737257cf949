//! `cipherlink bench datagram` end to end with tiny counts: the table (on
//! stderr under `--json -`) has the plain and TYPHOON rows and the goals,
//! and stdout is one JSON document with the same rows. No figure is
//! asserted: that is what the benchmark is for.

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use cipherlink_test_support::process::{cipherlink, run};

#[test]
fn a_tiny_run_prints_the_table_and_writes_json() {
    let mut cmd = cipherlink(env!("CARGO_BIN_EXE_cipherlink"));
    cmd.args([
        "bench",
        "datagram",
        "--path",
        "loopback",
        "--peers",
        "none",
        "--duration",
        "200ms",
        "--concurrency",
        "2",
        "--max-datagrams",
        "2000",
        "--pings",
        "20",
        "--idle",
        "16",
        "--json",
        "-",
    ]);
    let out = run("bench datagram", cmd, b"");
    assert!(out.status.success(), "{}", out.describe());
    let json: serde_json::Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {}", out.describe()));
    let rows: Vec<&str> = json["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["transport"].as_str().unwrap())
        .collect();
    assert_eq!(rows, ["plain", "typhoon", "link"]);
    assert_eq!(json["idle_sessions"], 16);
    let table = &out.stderr;
    for needle in [
        "\nplain ",
        "\ntyphoon ",
        "\nlink ",
        "goals:",
        "against plain UDP",
        "TYPHOON: INIT next_in 0-0 ms",
    ] {
        assert!(
            table.contains(needle),
            "{needle:?} missing: {}",
            out.describe()
        );
    }
    // A short run's goals are printed with a verdict or "not measured".
    assert!(table.contains("not measured"), "{}", out.describe());
}

#[test]
fn an_unknown_peer_is_refused_by_name() {
    let mut cmd = cipherlink(env!("CARGO_BIN_EXE_cipherlink"));
    cmd.args(["bench", "datagram", "--peers", "openvpn", "--idle", "0"]);
    let out = run("bench datagram", cmd, b"");
    assert!(!out.status.success(), "{}", out.describe());
    assert!(
        out.stderr.contains("unknown peer \"openvpn\""),
        "{}",
        out.describe()
    );
}
