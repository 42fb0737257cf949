//! stdout carries results only: `--json -` puts one JSON document there
//! (the table moves to stderr), and JSON files end with a newline.

mod common;

use common::*;

#[test]
fn info_json_dash_is_one_json_document_on_stdout() {
    let mut cmd = cipherlink();
    cmd.args(["info", "--json", "-"]);
    let out = run("info", cmd, b"");
    assert!(out.status.success(), "{}", out.describe());
    assert!(out.stdout.ends_with("]\n"), "{}", out.describe());
    let parsed: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert!(parsed.as_array().is_some_and(|a| !a.is_empty()), "{parsed}");
}

#[test]
fn info_json_file_ends_with_a_newline_and_the_table_stays_on_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out/info.json");
    let mut cmd = cipherlink();
    cmd.args(["info", "--json"]).arg(&path);
    let out = run("info", cmd, b"");
    assert!(out.status.success(), "{}", out.describe());
    assert!(out.stdout.contains("key exchange:"), "{}", out.describe());
    assert!(out.stderr.contains("wrote "), "{}", out.describe());
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.ends_with("]\n"), "{text}");
}

#[test]
fn bench_json_dash_moves_the_table_to_stderr() {
    let mut cmd = cipherlink();
    cmd.args([
        "bench",
        "conn",
        "--mode",
        "plain",
        "--connections",
        "20",
        "--json",
        "-",
    ]);
    let out = run("bench conn", cmd, b"");
    assert!(out.status.success(), "{}", out.describe());
    let parsed: serde_json::Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {}", out.describe()));
    assert!(parsed.is_object(), "{parsed}");
    assert!(out.stderr.contains("plain"), "{}", out.describe());
}

/// A CIPHERLINK_LOG that is not a filter is reported, not silently ignored.
#[test]
fn an_invalid_log_filter_is_reported() {
    let mut cmd = cipherlink();
    cmd.arg("info").env("CIPHERLINK_LOG", "info,=[");
    let out = run("info", cmd, b"");
    assert!(out.status.success(), "{}", out.describe());
    assert!(
        out.stderr.contains("CIPHERLINK_LOG") && out.stderr.contains("not a log filter"),
        "{}",
        out.describe()
    );
}

/// One key once per log line: serve's `accepted:` line names the client's
/// address (`from=`) and its certificate identity (`peer=`), never `peer=` twice.
#[test]
fn log_lines_have_no_duplicate_keys() {
    let pki = pki();
    let mut serve = Serve::echo(&pki, false, &[]);
    let out = connect(serve.addr, &args(&["--ca", &pki.arg("ca.crt")]), b"x");
    assert!(out.status.success(), "{}", out.describe());
    let line = serve.accepted(1);
    assert_eq!(line.matches("peer=").count(), 1, "{line}");
    assert!(
        line.contains("from=") && line.contains("peer=anonymous"),
        "{line}"
    );
}
