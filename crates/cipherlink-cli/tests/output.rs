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

/// `--help` speaks the user's language: no project jargon, type names or
/// crate paths; and a mistyped flag is never answered with a weakening one.
#[test]
fn help_has_no_jargon_and_typos_are_not_steered_to_dangerous_flags() {
    let commands: &[&[&str]] = &[
        &[],
        &["certs"],
        &["serve"],
        &["connect"],
        &["info"],
        &["bench"],
        &["bench", "conn"],
        &["bench", "idle"],
        &["bench", "pool"],
        &["bench", "proxy"],
        &["bench", "link"],
        &["bench", "datagram"],
        &["rpc"],
        &["rpc", "serve"],
        &["rpc", "steady"],
        &["rpc", "coldconn"],
        &["summarize"],
        &["pool"],
        &["pool", "serve"],
        &["pool", "send"],
        &["chaos"],
        &["chaos", "netem"],
        &["chaos", "proxy"],
        &["chaos", "lab"],
        &["chaos", "run"],
        &["proxy"],
        &["proxy", "server"],
        &["proxy", "client"],
        &["proxy", "run"],
        &["proxy", "keygen"],
        &["link"],
        &["link", "keygen"],
        &["link", "invite"],
        &["link", "revoke"],
        &["link", "serve"],
        &["link", "connect"],
    ];
    for command in commands {
        let mut cmd = cipherlink();
        cmd.args(*command).arg("--help");
        let out = run("help", cmd, b"");
        assert!(out.status.success(), "{command:?}: {}", out.describe());
        for jargon in [
            "seed 0",
            "seed's",
            "sequence96",
            "01_steady",
            "02_coldconn",
            "goal >=",
            "Option<",
            "Vec<",
            "cipherlink_",
            "DnsName(",
            "Impairments {",
        ] {
            assert!(
                !out.stdout.contains(jargon),
                "{command:?} --help says {jargon:?}:\n{}",
                out.stdout
            );
        }
    }
    for typo in ["--skip-server-name-check", "--accept-legacy", "--accept-cn"] {
        let mut cmd = cipherlink();
        cmd.args(["connect", "127.0.0.1:1", typo]);
        let out = run("connect", cmd, b"");
        assert_eq!(out.status.code(), Some(2), "{}", out.describe());
        assert!(
            !out.stderr.contains("dangerous") && !out.stderr.contains("similar argument"),
            "{typo}: {}",
            out.stderr
        );
    }
}
