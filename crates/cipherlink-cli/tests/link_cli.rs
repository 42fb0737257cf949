//! `cipherlink link ...` end to end: keygen, invite, serve --echo, connect,
//! revoke (the running server re-reads its token store and refuses).

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::path::Path;

use common::{cipherlink, Output, Proc};

/// `cipherlink ARGS` in `dir` with `stdin`, to completion.
fn run(dir: &Path, args: &[&str], stdin: &[u8]) -> Output {
    let mut cmd = cipherlink();
    cmd.current_dir(dir).args(args);
    common::run("cipherlink link", cmd, stdin)
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "{}", o.describe());
    o.stdout.clone()
}

/// `link serve --echo` in `dir`, and where it listens (its first stdout line).
fn serve(dir: &Path) -> (Proc, String) {
    let mut cmd = cipherlink();
    cmd.current_dir(dir)
        .args(["link", "serve", "--echo", "--listen", "127.0.0.1:0"])
        .env("CIPHERLINK_LOG", "info");
    let mut proc = Proc::spawn("cipherlink link serve", cmd);
    let addr = proc.wait_addr(false, "listening on ").to_string();
    (proc, addr)
}

#[test]
fn keygen_invite_serve_connect_revoke() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = ok(&run(d, &["link", "keygen"], b""));
    assert!(out.contains("public key "), "{out}");
    // A second keygen must not silently replace the key.
    assert!(!run(d, &["link", "keygen"], b"").status.success());
    ok(&run(
        d,
        &[
            "link",
            "invite",
            "--name",
            "alice",
            "--server",
            "127.0.0.1:1",
        ],
        b"",
    ));
    let text = std::fs::read_to_string(d.join("alice.link")).unwrap();
    assert!(
        text.starts_with("cipherlink-link 1\nname alice\n"),
        "{text}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(d.join("alice.link"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "connection file readable by others");
    }

    let (mut server, addr) = serve(d);
    let reply = ok(&run(
        d,
        &["link", "connect", "alice.link", "--server", &addr],
        b"hello over the link\n",
    ));
    assert_eq!(reply, "hello over the link\n");
    server.wait_stderr("link from alice");

    ok(&run(d, &["link", "revoke", "--name", "alice"], b""));
    server.wait_stderr("reloaded");
    let refused = run(
        d,
        &["link", "connect", "alice.link", "--server", &addr],
        b"x",
    );
    assert!(!refused.status.success());
    assert!(
        refused.stderr.contains("refused the token"),
        "{}",
        refused.describe()
    );
}

/// `invite --client-key`: the connection file carries the client's key, the
/// server lets that file in, and the same token without the key (the file
/// with its `client-key` line removed) is refused like a wrong token.
#[test]
fn an_invitation_with_a_client_key_needs_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(&run(d, &["link", "keygen"], b""));
    ok(&run(
        d,
        &[
            "link",
            "invite",
            "--name",
            "bob",
            "--server",
            "127.0.0.1:1",
            "--client-key",
        ],
        b"",
    ));
    let text = std::fs::read_to_string(d.join("bob.link")).unwrap();
    assert!(text.lines().any(|l| l.starts_with("client-key ")), "{text}");
    let without: String = text
        .lines()
        .filter(|l| !l.starts_with("client-key "))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(d.join("keyless.link"), without).unwrap();

    let (mut server, addr) = serve(d);
    let reply = ok(&run(
        d,
        &["link", "connect", "bob.link", "--server", &addr],
        b"keyed\n",
    ));
    assert_eq!(reply, "keyed\n");
    server.wait_stderr("link from bob");
    let refused = run(
        d,
        &["link", "connect", "keyless.link", "--server", &addr],
        b"x",
    );
    assert!(!refused.status.success(), "{}", refused.describe());
    assert!(
        refused.stderr.contains("refused the token"),
        "{}",
        refused.describe()
    );
}

/// `bench link` runs every case against real sockets and writes what it
/// printed as JSON: handshakes that all succeeded, CPU per handshake for the
/// link and its TLS baseline, bytes through both, the record overhead the
/// spec gives (2 + 3 + 16 without padding), and the idle links it held.
#[test]
fn bench_link_runs_every_case_and_writes_json() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("link.json");
    let out = run(
        dir.path(),
        &[
            "bench",
            "link",
            "--duration",
            "0.3",
            "--concurrency",
            "2",
            "--bulk-mib",
            "1",
            "--idle",
            "20",
            "--json",
            json.to_str().unwrap(),
        ],
        b"",
    );
    let stdout = ok(&out);
    assert!(stdout.contains("CPU per handshake, both ends"), "{stdout}");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let hs = &r["link"]["handshakes"];
    assert!(hs["connections"].as_u64().unwrap() > 0, "{r}");
    assert_eq!(hs["errors"].as_u64(), Some(0), "{r}");
    assert!(hs["cpu_us_per_handshake"].as_f64().unwrap() > 0.0, "{r}");
    assert!(r["tls_handshakes_per_sec"].as_f64().unwrap() > 0.0, "{r}");
    assert!(r["handshake_ratio_vs_tls"].as_f64().unwrap() > 0.0, "{r}");
    assert_eq!(
        r["link"]["bulk_link"]["bytes"].as_u64(),
        Some(1 << 20),
        "{r}"
    );
    assert_eq!(r["tls_bulk"]["bytes"].as_u64(), Some(1 << 20), "{r}");
    assert_eq!(
        r["link"]["overhead"]["link_no_padding"].as_f64(),
        Some(21.0),
        "{r}"
    );
    assert_eq!(r["link"]["idle"]["links"].as_u64(), Some(20), "{r}");
}

/// A failed command reports the error and its causes, each once, and no
/// stack backtrace even when the user's shell sets `RUST_BACKTRACE`.
#[test]
fn errors_are_reported_without_a_backtrace_or_repeated_causes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.link"), "garbage\n").unwrap();
    for (args, says) in [
        (
            &["link", "connect", "missing.link"][..],
            "Error: connection file missing.link",
        ),
        (
            &["link", "connect", "bad.link"][..],
            "expected \"cipherlink-link 1\"",
        ),
    ] {
        let mut cmd = cipherlink();
        cmd.current_dir(dir.path())
            .args(args)
            .env("RUST_BACKTRACE", "1");
        let out = common::run("cipherlink link connect", cmd, b"");
        assert_eq!(out.status.code(), Some(1), "{}", out.describe());
        assert!(out.stderr.contains(says), "{}", out.describe());
        assert!(!out.stderr.contains("backtrace"), "{}", out.describe());
    }
    // Nothing listens on port 1: the refusal is named once, not twice.
    std::fs::write(
        dir.path().join("alice.link"),
        "cipherlink-link 1\nname alice\nserver 127.0.0.1:1\n\
         server-key 6a15f69b2ee4a46ef5557c417616dc5bfa9f35f126c724de555a6adfd7b3634f\n\
         token-id 2a7bc1f9c027fd1a764e46d9e89f0cf1\n\
         token-secret 8f193c55d1afb07c55b4f3b09cef494978e84a90d22c771f74e372b76bf41c30\n\
         tail-length 512\n",
    )
    .unwrap();
    let mut cmd = cipherlink();
    cmd.current_dir(dir.path())
        .args(["link", "connect", "alice.link"])
        .env("RUST_BACKTRACE", "1");
    let out = common::run("cipherlink link connect", cmd, b"x");
    assert_eq!(out.status.code(), Some(1), "{}", out.describe());
    assert_eq!(
        out.stderr.matches("refused").count(),
        1,
        "{}",
        out.describe()
    );
}
