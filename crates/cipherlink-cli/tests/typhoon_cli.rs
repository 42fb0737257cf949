//! `cipherlink link ... --wire typhoon` end to end: keygen, invite, serve,
//! connect among ourselves, then against SeasideVPN's own Python
//! TyphoonClient and TyphoonListener (the peer scripts/setup-peers installs).
//! Every process runs with the same short TYPHOON timers.

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use cipherlink_test_support::{peer, Peer};
use common::{cipherlink, Output, Proc};

/// INITs answered after 50-100 ms, handshakes every 1-2 s, three retries.
const TIMERS: &[(&str, &str)] = &[
    ("TYPHOON_MIN_NEXT_IN", "1.0"),
    ("TYPHOON_MAX_NEXT_IN", "2.0"),
    ("TYPHOON_DEFAULT_RTT", "0.2"),
    ("TYPHOON_MIN_RTT", "0.1"),
    ("TYPHOON_MAX_RTT", "0.5"),
    ("TYPHOON_MIN_TIMEOUT", "1.0"),
    ("TYPHOON_MAX_TIMEOUT", "3.0"),
    ("TYPHOON_DEFAULT_TIMEOUT", "2.0"),
    ("TYPHOON_MAX_RETRIES", "3"),
];

fn run(dir: &Path, args: &[&str], stdin: &[u8]) -> Output {
    let mut cmd = cipherlink();
    cmd.current_dir(dir).args(args).envs(TIMERS.iter().copied());
    common::run("cipherlink link --wire typhoon", cmd, stdin)
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "{}", short(o));
    o.stdout.clone()
}

fn short(o: &Output) -> String {
    format!(
        "{}, {} bytes of stdout, stderr:\n{}",
        o.status,
        o.stdout.len(),
        o.stderr
    )
}

/// The value after `label ` on a line of `text`.
fn field(text: &str, label: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(label))
        .unwrap_or_else(|| panic!("no {label:?} in {text}"))
        .trim()
        .to_string()
}

/// keygen, invite alice; (public key hex, token hex).
fn keygen_invite(d: &Path) -> (String, String) {
    let out = ok(&run(d, &["link", "keygen", "--wire", "typhoon"], b""));
    let public = field(&out, "public key ");
    assert_eq!(public.len(), 80, "{out}");
    let out = ok(&run(
        d,
        &[
            "link",
            "invite",
            "--wire",
            "typhoon",
            "--name",
            "alice",
            "--server",
            "127.0.0.1:1",
        ],
        b"",
    ));
    assert_eq!(field(&out, "server public key "), public);
    let token = field(&out, "TyphoonClient token ");
    assert_eq!(token.len(), 96, "{out}");
    (public, token)
}

fn serve(dir: &Path) -> (Proc, String) {
    serve_with(dir, &[])
}

/// `serve`, with `extra` variables over TIMERS.
fn serve_with(dir: &Path, extra: &[(&str, &str)]) -> (Proc, String) {
    let mut cmd = cipherlink();
    cmd.current_dir(dir)
        .args([
            "link",
            "serve",
            "--wire",
            "typhoon",
            "--echo",
            "--listen",
            "127.0.0.1:0",
        ])
        .env("CIPHERLINK_LOG", "info")
        .envs(TIMERS.iter().copied())
        .envs(extra.iter().copied());
    let mut proc = Proc::spawn("cipherlink link serve --wire typhoon", cmd);
    let addr = proc.wait_addr(true, "listening on ").to_string();
    (proc, addr)
}

fn write_private(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

#[test]
fn keygen_invite_serve_connect_over_typhoon() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_, token) = keygen_invite(d);
    let text = std::fs::read_to_string(d.join("alice.typhoon")).unwrap();
    assert!(text.contains(&format!("token {token}")), "{text}");
    let (mut server, addr) = serve(d);
    let input = b"one datagram each way\n".repeat(100);
    let args = [
        "link",
        "connect",
        "--wire",
        "typhoon",
        "alice.typhoon",
        "--server",
        &addr,
    ];
    let o = run(d, &args, &input);
    assert!(o.status.success(), "{}", short(&o));
    assert!(o.stdout.as_bytes() == &input[..], "{}", short(&o));
    server.wait_stderr("TYPHOON client alice");

    // A token one digit off: silence, then the retries run out.
    let other = if token.ends_with('0') { '1' } else { '0' };
    let wrong = text.replace(
        &format!("token {token}"),
        &format!("token {}{other}", &token[..95]),
    );
    write_private(&d.join("wrong.typhoon"), &wrong);
    let args = [
        "link",
        "connect",
        "--wire",
        "typhoon",
        "wrong.typhoon",
        "--server",
        &addr,
    ];
    let o = run(d, &args, b"x");
    assert!(!o.status.success(), "{}", short(&o));
    assert!(o.stderr.contains("TYPHOON"), "{}", short(&o));
    server.wait_stderr("unknown or revoked token");
}

/// INITs answered after 6-7 s: time to revoke the token in between.
const SLOW_INIT: &[(&str, &str)] = &[
    ("TYPHOON_MIN_NEXT_IN", "6.0"),
    ("TYPHOON_MAX_NEXT_IN", "7.0"),
    ("TYPHOON_INITIAL_NEXT_IN", "1.0"),
];

#[test]
fn a_token_revoked_before_the_server_init_gets_no_service() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    keygen_invite(&d);
    let (mut server, addr) = serve_with(&d, SLOW_INIT);
    let client = {
        let d = d.clone();
        std::thread::spawn(move || {
            let mut cmd = cipherlink();
            cmd.current_dir(&d)
                .args(["link", "connect", "--wire", "typhoon", "alice.typhoon"])
                .args(["--server", &addr])
                .envs(TIMERS.iter().copied())
                .envs(SLOW_INIT.iter().copied());
            common::run(
                "cipherlink link connect --wire typhoon",
                cmd,
                b"after revocation\n",
            )
        })
    };
    // Admitted; its server INIT leaves 6-7 s later. Revoked meanwhile (the
    // server re-reads the store every 2 s).
    server.wait_stderr("INIT admitted");
    let revoke = [
        "link",
        "revoke",
        "--tokens",
        "port-tokens.txt",
        "--name",
        "alice",
    ];
    ok(&run(&d, &revoke, b""));
    server.wait_stderr("reloaded");
    let o = client.join().unwrap();
    assert!(
        o.stdout.is_empty(),
        "served after revocation: {}",
        short(&o)
    );
    server.wait_stderr("token revoked; terminating");
}

#[test]
fn typhoon_is_refused_under_a_post_quantum_policy() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(
        dir.path(),
        &[
            "link",
            "connect",
            "--wire",
            "typhoon",
            "x.typhoon",
            "--post-quantum",
            "require-hybrid",
        ],
        b"",
    );
    assert!(!o.status.success());
    assert!(o.stderr.contains("--wire typhoon"), "{}", short(&o));
}

fn seaside_cmd(python: &Path, src: &Path, args: &[&str]) -> Command {
    let script: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "..",
        "cipherlink-typhoon",
        "tests",
        "peer",
        "typhoon_peer.py",
    ]
    .iter()
    .collect();
    let mut c = Command::new(python);
    c.arg("-W")
        .arg("ignore")
        .arg(script)
        .args(args)
        .env("PYTHONPATH", src)
        .env("SEASIDE_LOG_LEVEL", "ERROR")
        .envs(TIMERS.iter().copied());
    c
}

#[test]
fn their_typhoon_client_against_link_serve_wire_typhoon() {
    let Some(python) = peer!(Peer::PythonSeaside) else {
        return;
    };
    let Some(src) = peer!(Peer::SeasideSrc) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (public, token) = keygen_invite(d);
    let (mut server, addr) = serve(d);
    let port = addr.rsplit(':').next().unwrap();
    let out = seaside_cmd(
        &python,
        &src,
        &["client", &public, &token, port, "1", "1000", "60000", "2"],
    )
    .output()
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("echoed 4"),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    server.wait_stderr("TYPHOON client alice");
    let other = if token.ends_with('0') { '1' } else { '0' };
    let wrong = format!("{}{other}", &token[..95]);
    let out = seaside_cmd(&python, &src, &["client", &public, &wrong, port, "1"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("FAILED"));
    server.wait_stderr("unknown or revoked token");
}

#[test]
fn link_connect_wire_typhoon_against_their_typhoon_listener() {
    let Some(python) = peer!(Peer::PythonSeaside) else {
        return;
    };
    let Some(src) = peer!(Peer::SeasideSrc) else {
        return;
    };
    let keys = seaside_cmd(&python, &src, &["keygen"]).output().unwrap();
    let keys = String::from_utf8_lossy(&keys.stdout).to_string();
    let (private, public) = (field(&keys, "private "), field(&keys, "public "));
    let mut listener = Proc::spawn(
        "SeasideVPN TyphoonListener",
        seaside_cmd(&python, &src, &["listen", &private]),
    );
    let port = field(&listener.wait_stdout("listening "), "listening ");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("seaside.typhoon");
    write_private(
        &file,
        &format!("cipherlink-port 1\nname me\nserver 127.0.0.1:{port}\nserver-key {public}\ntoken 0102\n"),
    );
    let input = b"through SeasideVPN's listener\n".repeat(50);
    let o = run(
        dir.path(),
        &[
            "link",
            "connect",
            "--wire",
            "typhoon",
            file.to_str().unwrap(),
        ],
        &input,
    );
    assert!(o.status.success(), "{}", short(&o));
    assert!(o.stdout.as_bytes() == &input[..], "{}", short(&o));
    listener.wait_stdout("token 0102");
    listener.close_stdin();
}
