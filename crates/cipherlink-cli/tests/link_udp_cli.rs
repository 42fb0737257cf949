//! `cipherlink link serve|connect --udp` end to end (the link protocol's
//! datagram mode): a round trip, a revoked token refused, a revocation
//! ending an open session, and `--udp` refused with another wire.

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::io::Write as _;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::{cipherlink, Output, Proc};

/// Pings every 1-2 s, replies awaited 1 s, two retries.
const TIMERS: &[(&str, &str)] = &[
    ("TYPHOON_MIN_NEXT_IN", "1"),
    ("TYPHOON_MAX_NEXT_IN", "2"),
    ("TYPHOON_MIN_TIMEOUT", "1"),
    ("TYPHOON_MAX_TIMEOUT", "1"),
    ("TYPHOON_DEFAULT_TIMEOUT", "1"),
    ("TYPHOON_MAX_RETRIES", "2"),
];

fn run(dir: &Path, args: &[&str], stdin: &[u8]) -> Output {
    let mut cmd = cipherlink();
    cmd.current_dir(dir).args(args).envs(TIMERS.iter().copied());
    common::run("cipherlink link --udp", cmd, stdin)
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "{}: {}", o.status, o.stderr);
    o.stdout.clone()
}

fn setup(d: &Path) {
    ok(&run(d, &["link", "keygen"], b""));
    for name in ["alice", "bob"] {
        ok(&run(
            d,
            &["link", "invite", "--name", name, "--server", "127.0.0.1:1"],
            b"",
        ));
    }
}

fn serve(d: &Path) -> (Proc, String) {
    let mut cmd = cipherlink();
    cmd.current_dir(d)
        .args([
            "link",
            "serve",
            "--udp",
            "--echo",
            "--listen",
            "127.0.0.1:0",
        ])
        .env("CIPHERLINK_LOG", "info")
        .envs(TIMERS.iter().copied());
    let mut proc = Proc::spawn("cipherlink link serve --udp", cmd);
    let addr = proc.wait_addr(true, "listening on ").to_string();
    (proc, addr)
}

#[test]
fn round_trip_and_refusals_over_udp() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    setup(d);
    let (mut server, addr) = serve(d);
    // One read of stdin is one datagram; small writes keep them whole.
    let input = b"one datagram each way\n";
    let o = run(
        d,
        &["link", "connect", "--udp", "alice.link", "--server", &addr],
        input,
    );
    assert_eq!(ok(&o).as_bytes(), input);
    assert!(o.stderr.contains("over UDP"), "{}", o.stderr);
    server.wait_stderr("link (UDP) from");

    ok(&run(d, &["link", "revoke", "--name", "bob"], b""));
    server.wait_stderr("reloaded");
    let o = run(
        d,
        &["link", "connect", "--udp", "bob.link", "--server", &addr],
        b"x",
    );
    assert!(!o.status.success());
    assert!(o.stderr.contains("refused"), "{}", o.stderr);
    server.wait_stderr("revoked token");

    let o = run(
        d,
        &["link", "connect", "--udp", "--wire", "port", "alice.link"],
        b"",
    );
    assert!(!o.status.success());
    assert!(o.stderr.contains("--udp"), "{}", o.stderr);
}

/// Revoking alice while her session is open closes it: the client is told
/// and exits with the reason.
#[test]
fn revocation_ends_an_open_udp_session() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    setup(d);
    let (mut server, addr) = serve(d);
    let mut client = cipherlink()
        .current_dir(d)
        .args(["link", "connect", "--udp", "alice.link", "--server", &addr])
        .envs(TIMERS.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = client.stdin.take().unwrap();
    stdin.write_all(b"before\n").unwrap();
    server.wait_stderr("link (UDP) from");
    ok(&run(d, &["link", "revoke", "--name", "alice"], b""));
    server.wait_stderr("closed 1 open sessions");
    // The client ends by itself (stdin still open): told by the close record.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = client.try_wait().unwrap() {
            break s;
        }
        assert!(std::time::Instant::now() < deadline, "client still running");
        std::thread::sleep(Duration::from_millis(100));
    };
    drop(stdin);
    let out = client.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("Refused") || stderr.contains("revoked"),
        "{stderr}"
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "before\n");
}
