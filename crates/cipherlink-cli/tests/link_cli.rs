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

/// A connection file as a user would keep it: readable by its owner only.
fn write_private(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
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
        .env("CIPHERLINK_LOG", "info,cipherlink_link=debug");
    let mut proc = Proc::spawn("cipherlink link serve", cmd);
    let addr = proc.wait_addr(true, "listening on ").to_string();
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
    // Logged as sshd logs a refused key: the client's name and why.
    let refused = run(
        d,
        &["link", "connect", "alice.link", "--server", &addr],
        b"x",
    );
    assert!(!refused.status.success());
    server.wait_stderr("refused: client \"alice\": revoked token");
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
    write_private(&d.join("keyless.link"), &without);

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
    let hs = &r["handshakes"];
    assert!(hs["connections"].as_u64().unwrap() > 0, "{r}");
    assert_eq!(hs["errors"].as_u64(), Some(0), "{r}");
    assert!(hs["cpu_us_per_handshake"].as_f64().unwrap() > 0.0, "{r}");
    assert!(r["tls_handshakes_per_sec"].as_f64().unwrap() > 0.0, "{r}");
    assert!(r["handshake_ratio_vs_tls"].as_f64().unwrap() > 0.0, "{r}");
    assert_eq!(r["bulk_link"]["bytes"].as_u64(), Some(1 << 20), "{r}");
    assert_eq!(r["tls_bulk"]["bytes"].as_u64(), Some(1 << 20), "{r}");
    assert_eq!(r["overhead"]["link_no_padding"].as_f64(), Some(21.0), "{r}");
    assert_eq!(r["idle"]["links"].as_u64(), Some(20), "{r}");
}

/// A failed command reports the error and its causes, each once, and no
/// stack backtrace even when the user's shell sets `RUST_BACKTRACE`.
#[test]
fn errors_are_reported_without_a_backtrace_or_repeated_causes() {
    let dir = tempfile::tempdir().unwrap();
    write_private(&dir.path().join("bad.link"), "garbage\n");
    for (args, says) in [
        (
            &["link", "connect", "missing.link"][..],
            "Error: reading the connection file",
        ),
        (
            &["link", "connect", "bad.link"][..],
            "expected the header \"cipherlink-link 1\"",
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
    write_private(
        &dir.path().join("alice.link"),
        "cipherlink-link 1\nname alice\nserver 127.0.0.1:1\n\
         server-key 6a15f69b2ee4a46ef5557c417616dc5bfa9f35f126c724de555a6adfd7b3634f\n\
         token-id 2a7bc1f9c027fd1a764e46d9e89f0cf1\n\
         token-secret 8f193c55d1afb07c55b4f3b09cef494978e84a90d22c771f74e372b76bf41c30\n\
         tail-length 512\n",
    );
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

/// `keygen` and `invite alice` in a fresh folder.
fn keyed_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(&run(d, &["link", "keygen"], b""));
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
    dir
}

/// A first message recorded from a real client and answered, sent again
/// after `link serve` restarted (same key, tokens and replay store): no
/// answer, the server logs it as a replay.
#[test]
fn a_restarted_server_does_not_answer_a_recorded_first_message() {
    use std::io::{Read, Write};
    let dir = keyed_dir();
    let d = dir.path();
    let text = std::fs::read_to_string(d.join("alice.link")).unwrap();
    let file = cipherlink_link::ConnectionFile::parse(&text).unwrap();
    let cfg = cipherlink_link::ClientConfig::from_file(
        &file,
        cipherlink_link::LinkParams::default(),
        |_| None,
    );
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut client = cipherlink_link::Connection::client(
        &cfg,
        Box::new(cipherlink_link::fuzzing::VectorRng::new(b"recorded")),
        std::time::Instant::now(),
        unix,
    )
    .unwrap();
    let mut msg1 = Vec::new();
    client.poll_transmit(&mut msg1);

    let (server, addr) = serve(d);
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.write_all(&msg1).unwrap();
    let mut answer = [0u8; 34];
    s.read_exact(&mut answer).unwrap();
    drop(s);
    drop(server);
    assert!(d.join("link-tokens.replay").exists());

    let (mut again, addr) = serve(d);
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.write_all(&msg1).unwrap();
    again.wait_stderr("replayed first message");
    // Decided: nothing was or will be sent.
    s.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the restarted server answered a replay: {other:?}"),
    }
}

/// A token store that stops parsing refuses every token, and says so at
/// error level, until it is fixed.
#[test]
fn a_token_store_that_does_not_parse_refuses_every_token() {
    let dir = keyed_dir();
    let d = dir.path();
    let (mut server, addr) = serve(d);
    let connect = |input: &[u8]| {
        run(
            d,
            &["link", "connect", "alice.link", "--server", &addr],
            input,
        )
    };
    assert_eq!(ok(&connect(b"before\n")), "before\n");
    let good = std::fs::read_to_string(d.join("link-tokens.txt")).unwrap();
    std::fs::write(d.join("link-tokens.txt"), format!("{good}token alice\n")).unwrap();
    let line = server.wait_stderr("refusing every token until it is fixed");
    assert!(line.contains("ERROR"), "{line}");
    let refused = connect(b"x");
    assert!(!refused.status.success(), "{}", refused.describe());
    assert!(
        refused.stderr.contains("refused the token"),
        "{}",
        refused.describe()
    );
    server.wait_stderr("refused: token store unreadable");
    std::fs::write(d.join("link-tokens.txt"), good).unwrap();
    server.wait_stderr("reloaded");
    assert_eq!(ok(&connect(b"after\n")), "after\n");
}

/// `invite` and `revoke` run at the same time never lose each other's
/// change: the store is locked around each read-modify-write.
#[test]
fn concurrent_invites_never_undo_a_revoke() {
    let dir = keyed_dir();
    let d = dir.path();
    for round in 0..3 {
        if round > 0 {
            ok(&run(
                d,
                &[
                    "link",
                    "invite",
                    "--name",
                    "alice",
                    "--server",
                    "127.0.0.1:1",
                    "--force",
                ],
                b"",
            ));
        }
        let mut procs = Vec::new();
        for i in 0..6 {
            let name = format!("bob{round}-{i}");
            let mut cmd = cipherlink();
            cmd.current_dir(d)
                .args(["link", "invite", "--name", &name, "--server", "127.0.0.1:1"]);
            procs.push(Proc::spawn("cipherlink link invite", cmd));
            if i == 2 {
                let mut cmd = cipherlink();
                cmd.current_dir(d)
                    .args(["link", "revoke", "--name", "alice"]);
                procs.push(Proc::spawn("cipherlink link revoke", cmd));
            }
        }
        for mut p in procs {
            assert!(p.wait_exit().success(), "{}", p.describe());
        }
        let text = std::fs::read_to_string(d.join("link-tokens.txt")).unwrap();
        let store = cipherlink_link::TokenStore::parse(&text).unwrap();
        let active = |n: &str| store.entries().iter().any(|e| e.name == n && !e.revoked);
        assert!(!active("alice"), "round {round}: the revoke was lost");
        for i in 0..6 {
            assert!(
                active(&format!("bob{round}-{i}")),
                "round {round}: bob{i} lost"
            );
        }
    }
}

/// A link open under a token is closed when the token is revoked, within
/// the reload interval: the client's `connect` ends naming the reason, and
/// the server logs it.
#[test]
fn revoking_closes_a_link_already_open() {
    let dir = keyed_dir();
    let d = dir.path();
    let (mut server, addr) = serve(d);
    let mut cmd = cipherlink();
    cmd.current_dir(d)
        .args(["link", "connect", "alice.link", "--server", &addr]);
    let mut client = Proc::spawn("cipherlink link connect", cmd);
    client.write_stdin(b"open\n");
    client.wait_stdout("open");
    ok(&run(d, &["link", "revoke", "--name", "alice"], b""));
    server.wait_stderr("closed: its token was revoked");
    let status = client.wait_exit();
    assert!(!status.success(), "{}", client.describe());
    assert!(
        client.stderr().contains("token revoked"),
        "{}",
        client.describe()
    );
}

/// Every secret the link commands write goes through one writer: a symlink
/// planted at a key, token store or connection file path is replaced, never
/// written through; a file others could read is refused when read back, with
/// the fix; and an existing connection file is not replaced without --force.
#[test]
fn link_secrets_are_never_written_through_a_symlink_or_read_when_exposed() {
    use std::os::unix::fs::{symlink, PermissionsExt};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let victim = d.join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    // keygen --force replaces a planted symlink without following it.
    symlink(&victim, d.join("link-server.key")).unwrap();
    ok(&run(d, &["link", "keygen", "--force"], b""));
    // invite: a dangling symlink at the token store (so it reads as new)
    // and one at the connection file.
    let would_be_created = d.join("created-through-the-link");
    symlink(&would_be_created, d.join("link-tokens.txt")).unwrap();
    symlink(&victim, d.join("alice.link")).unwrap();
    let invite = [
        "link",
        "invite",
        "--name",
        "alice",
        "--server",
        "127.0.0.1:1",
    ];
    // An existing connection file (here a planted link) is kept unless --force.
    let refused = run(d, &invite, b"");
    assert!(!refused.status.success(), "{}", refused.describe());
    assert!(refused.stderr.contains("--force"), "{}", refused.describe());
    let mut forced = invite.to_vec();
    forced.push("--force");
    ok(&run(d, &forced, b""));
    for name in ["link-server.key", "link-tokens.txt", "alice.link"] {
        let meta = std::fs::symlink_metadata(d.join(name)).unwrap();
        assert!(meta.is_file(), "{name} is not a regular file");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{name}");
    }
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    assert!(!would_be_created.exists());

    // A connection file, a key or a store others may read is refused.
    for name in ["alice.link", "link-server.key", "link-tokens.txt"] {
        let path = d.join(name);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let out = match name {
            "alice.link" => run(d, &["link", "connect", "alice.link"], b""),
            "link-server.key" => run(
                d,
                &[
                    "link",
                    "invite",
                    "--name",
                    "carol",
                    "--server",
                    "127.0.0.1:1",
                ],
                b"",
            ),
            _ => run(d, &["link", "revoke", "--name", "alice"], b""),
        };
        assert!(!out.status.success(), "{name}: {}", out.describe());
        assert!(
            out.stderr.contains("chmod 600"),
            "{name}: {}",
            out.describe()
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

/// `link serve` without --echo writes what clients send to stdout and
/// nothing else: its status goes to stderr.
#[test]
fn serve_stdout_carries_only_what_clients_send() {
    let dir = keyed_dir();
    let d = dir.path();
    let mut cmd = cipherlink();
    cmd.current_dir(d)
        .args(["link", "serve", "--listen", "127.0.0.1:0", "--count", "1"]);
    let mut proc = Proc::spawn("cipherlink link serve", cmd);
    let addr = proc.wait_addr(true, "listening on ").to_string();
    ok(&run(
        d,
        &["link", "connect", "alice.link", "--server", &addr],
        b"payload\n",
    ));
    let status = proc.wait_exit();
    assert!(status.success(), "{}", proc.describe());
    assert_eq!(proc.stdout(), "payload\n", "{}", proc.describe());
}

/// `link serve` under a shell's open-file limit (`ulimit -n`, soft and
/// hard): the admission caps come from the descriptors it may open.
fn serve_with_fd_limit(dir: &Path, limit: u32) -> (Proc, String) {
    let bin = cipherlink().get_program().to_owned();
    let mut cmd = std::process::Command::new("sh");
    cmd.current_dir(dir)
        .env("NO_COLOR", "1")
        .env("CIPHERLINK_LOG", "info")
        .arg("-c")
        .arg(format!("ulimit -n {limit} && exec \"$0\" \"$@\""))
        .arg(bin)
        .args(["link", "serve", "--echo", "--listen", "127.0.0.1:0"]);
    let mut proc = Proc::spawn("cipherlink link serve (ulimit)", cmd);
    let addr = proc.wait_addr(true, "listening on ").to_string();
    (proc, addr)
}

/// The red-team PoC of fd exhaustion: with admission caps above the
/// open-file limit, silent sockets used up every descriptor, `accept`
/// failed with EMFILE, and a real client waited in the kernel's queue
/// until it timed out. Now the caps follow the limit (and the limit is
/// raised as far as the hard limit lets it), so the oldest silent sockets
/// are evicted and a real client connects.
#[test]
fn silent_sockets_past_the_open_file_limit_do_not_keep_a_client_out() {
    let dir = keyed_dir();
    let d = dir.path();
    let (mut server, addr) = serve_with_fd_limit(d, 200);
    let line = server.wait_stderr("before they authenticate");
    // (200 - 64) / 2 = 68; a quarter of it per address.
    assert!(
        line.contains("up to 68 connections before they authenticate (17 per address)"),
        "{line}"
    );
    let target: std::net::SocketAddr = addr.parse().unwrap();
    let mut silent = Vec::new();
    for i in 0..300u32 {
        let sock = std::net::TcpStream::connect_timeout(&target, std::time::Duration::from_secs(5));
        match sock {
            Ok(s) => silent.push(s),
            Err(e) => panic!("silent socket {i}: {e}"),
        }
    }
    let out = run(
        d,
        &[
            "link",
            "connect",
            "alice.link",
            "--server",
            &addr,
            "--timeout",
            "20",
        ],
        b"still served\n",
    );
    assert!(
        out.status.success(),
        "{}\n{}",
        out.describe(),
        server.describe()
    );
    assert_eq!(out.stdout, "still served\n");
    drop(silent);
}

/// `link serve` raises its soft open-file limit to the hard limit at start
/// and says so.
#[test]
fn serve_raises_its_open_file_limit() {
    let dir = keyed_dir();
    let d = dir.path();
    let bin = cipherlink().get_program().to_owned();
    let mut cmd = std::process::Command::new("sh");
    cmd.current_dir(d)
        .env("NO_COLOR", "1")
        .arg("-c")
        .arg("ulimit -Sn 256 && exec \"$0\" \"$@\"")
        .arg(bin)
        .args(["link", "serve", "--echo", "--listen", "127.0.0.1:0"]);
    let mut server = Proc::spawn("cipherlink link serve (soft 256)", cmd);
    let line = server.wait_stderr("before they authenticate");
    assert!(
        line.contains("open-file limit raised from 256 to "),
        "{line}"
    );
}

/// A holder of the server key can make a refusal per connection: the
/// warnings are bounded (a burst, then one a second, the next one saying
/// how many were left out), so it cannot fill the disk with them.
#[test]
fn refused_tokens_are_logged_at_a_bounded_rate() {
    let dir = keyed_dir();
    let d = dir.path();
    ok(&run(d, &["link", "revoke", "--name", "alice"], b""));
    let (mut server, addr) = serve(d);
    let text = std::fs::read_to_string(d.join("alice.link")).unwrap();
    let file = cipherlink_link::ConnectionFile::parse(&text).unwrap();
    let cfg = cipherlink_link::ClientConfig::from_file(
        &file,
        cipherlink_link::LinkParams::default(),
        |_| None,
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        for i in 0..40 {
            let result = cipherlink_link::driver::connect(addr.as_str(), &cfg).await;
            assert!(result.is_err(), "revoked token {i} was accepted");
        }
    });
    // The first refusals are logged; then they are counted, not logged.
    server.wait_stderr("refused: client");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let log = server.stderr();
    let lines = log
        .lines()
        .filter(|l| l.contains("refused: client"))
        .count();
    assert!(lines <= 15, "{lines} refusal lines for 40 refusals:\n{log}");
}
