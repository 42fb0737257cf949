//! `cipherlink link ... --wire port` end to end: keygen, invite, serve,
//! connect, revoke among ourselves, then against SeasideVPN's own Python
//! PortClient and PortListener (the peer scripts/setup-peers installs).

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use cipherlink_test_support::{peer, Peer};
use common::{cipherlink, Output, Proc};

fn run(dir: &Path, args: &[&str], stdin: &[u8]) -> Output {
    let mut cmd = cipherlink();
    cmd.current_dir(dir).args(args);
    common::run("cipherlink link --wire port", cmd, stdin)
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "{}", short(o));
    o.stdout.clone()
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
    let out = ok(&run(d, &["link", "keygen", "--wire", "port"], b""));
    let public = field(&out, "public key ");
    assert_eq!(public.len(), 80, "{out}");
    let out = ok(&run(
        d,
        &[
            "link",
            "invite",
            "--wire",
            "port",
            "--name",
            "alice",
            "--server",
            "127.0.0.1:1",
        ],
        b"",
    ));
    assert_eq!(field(&out, "server public key "), public);
    let token = field(&out, "PortClient token ");
    assert_eq!(token.len(), 96, "{out}");
    (public, token)
}

fn serve(dir: &Path) -> (Proc, String) {
    let mut cmd = cipherlink();
    cmd.current_dir(dir)
        .args([
            "link",
            "serve",
            "--wire",
            "port",
            "--echo",
            "--listen",
            "127.0.0.1:0",
        ])
        .env("CIPHERLINK_LOG", "info")
        .env("PORT_TIMEOUT", "3");
    let mut proc = Proc::spawn("cipherlink link serve --wire port", cmd);
    let addr = proc.wait_addr(true, "listening on ").to_string();
    (proc, addr)
}

/// Status, stderr and how much stdout (which may be 200 KB) for failures.
fn short(o: &Output) -> String {
    format!(
        "{}, {} bytes of stdout, stderr:\n{}",
        o.status,
        o.stdout.len(),
        o.stderr
    )
}

fn write_private(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

#[test]
fn keygen_invite_serve_connect_revoke_over_port() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_, token) = keygen_invite(d);
    let text = std::fs::read_to_string(d.join("alice.port")).unwrap();
    assert!(text.contains(&format!("token {token}")), "{text}");
    let (mut server, addr) = serve(d);
    let big: Vec<u8> = (0..200_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let o = run(
        d,
        &[
            "link",
            "connect",
            "--wire",
            "port",
            "alice.port",
            "--server",
            &addr,
        ],
        &big,
    );
    assert!(o.status.success(), "{}", short(&o));
    assert!(o.stdout.as_bytes() == &big[..], "{}", short(&o));
    server.wait_stderr("PORT client alice");

    // A token one digit off (never the same digit: a token ending in 0
    // made this "wrong" token the right one, 1 run in 16): silence, then
    // a timeout, and a log line why.
    let other = if token.ends_with('0') { '1' } else { '0' };
    let wrong = text.replace(
        &format!("token {token}"),
        &format!("token {}{other}", &token[..95]),
    );
    write_private(&d.join("wrong.port"), &wrong);
    let o = run(
        d,
        &[
            "link",
            "connect",
            "--wire",
            "port",
            "wrong.port",
            "--server",
            &addr,
            "--timeout",
            "2",
        ],
        b"x",
    );
    assert!(!o.status.success(), "{}", short(&o));
    server.wait_stderr("unknown or revoked token");

    ok(&run(
        d,
        &[
            "link",
            "revoke",
            "--tokens",
            "port-tokens.txt",
            "--name",
            "alice",
        ],
        b"",
    ));
    server.wait_stderr("reloaded");
    let o = run(
        d,
        &[
            "link",
            "connect",
            "--wire",
            "port",
            "alice.port",
            "--server",
            &addr,
            "--timeout",
            "2",
        ],
        b"x",
    );
    assert!(
        !o.status.success(),
        "a revoked token was served: {}",
        o.describe()
    );
}

/// SeasideVPN's peer program (its python, sources and our driver script).
fn seaside_cmd(python: &Path, src: &Path, args: &[&str]) -> Command {
    let script: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "..",
        "cipherlink-port",
        "tests",
        "peer",
        "seaside_peer.py",
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
        .env("PORT_TIMEOUT", "4");
    c
}

#[test]
fn their_port_client_against_link_serve_wire_port() {
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
        &["client", &public, &token, port, "1", "1000", "61440", "2"],
    )
    .output()
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("echoed 4"),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    server.wait_stderr("PORT client alice");
    // The same client with a token it was not given: refused.
    let other = if token.ends_with('0') { '1' } else { '0' };
    let wrong = format!("{}{other}", &token[..95]);
    let out = seaside_cmd(&python, &src, &["client", &public, &wrong, port, "1"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("FAILED"));
    server.wait_stderr("unknown or revoked token");
}

#[test]
fn link_connect_wire_port_against_their_port_listener() {
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
        "SeasideVPN PortListener",
        seaside_cmd(&python, &src, &["listen", &private]),
    );
    let port = field(&listener.wait_stdout("listening "), "listening ");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("seaside.port");
    write_private(
        &file,
        &format!("cipherlink-port 1\nname me\nserver 127.0.0.1:{port}\nserver-key {public}\ntoken 0102\n"),
    );
    let input: Vec<u8> = (0..150_000u32).map(|i| b'a' + (i % 13) as u8).collect();
    let o = run(
        dir.path(),
        &["link", "connect", "--wire", "port", file.to_str().unwrap()],
        &input,
    );
    assert!(o.status.success(), "{}", short(&o));
    assert!(o.stdout.as_bytes() == &input[..], "{}", short(&o));
    listener.wait_stdout("token 0102");
    listener.close_stdin();
}

/// Starts `cipherlink proxy ARGS` and waits for its listening line.
fn start_proxy(name: &str, args: &[&str]) -> (Proc, std::net::SocketAddr) {
    let mut cmd = cipherlink();
    cmd.arg("proxy").args(args);
    let mut proc = Proc::spawn(name, cmd);
    let addr = proc.wait_addr(true, "listening on ");
    (proc, addr)
}

/// The proxy's `port` transport against SeasideVPN's own code, both ends:
/// its PortClient through `proxy server --transport port` to an echo
/// service, and `proxy client --transport port` into its PortListener
/// (which echoes each message).
#[test]
fn their_port_client_and_listener_through_the_port_proxy() {
    use std::io::{Read, Write};
    let Some(python) = peer!(Peer::PythonSeaside) else {
        return;
    };
    let Some(src) = peer!(Peer::SeasideSrc) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (public, token) = keygen_invite(d);
    let backend = common::echo_backend().to_string();
    let (mut server, addr) = start_proxy(
        "proxy server --transport port",
        &[
            "server",
            "--listen",
            "127.0.0.1:0",
            "--forward",
            &backend,
            "--transport",
            "port",
            "--port-key",
            d.join("port-server.key").to_str().unwrap(),
            "--port-tokens",
            d.join("port-tokens.txt").to_str().unwrap(),
        ],
    );
    // Each reply must come back as one message: sizes one read of the
    // echo service returns whole.
    let out = seaside_cmd(
        &python,
        &src,
        &[
            "client",
            &public,
            &token,
            &addr.port().to_string(),
            "1",
            "1000",
            "8000",
            "2",
        ],
    )
    .output()
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("echoed 4"),
        "{text} {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.describe()
    );
    let log = server.wait_stderr("close:");
    assert!(log.contains("port:alice"), "{log}");

    let keys = seaside_cmd(&python, &src, &["keygen"]).output().unwrap();
    let keys = String::from_utf8_lossy(&keys.stdout).to_string();
    let (private, public) = (field(&keys, "private "), field(&keys, "public "));
    let mut listener = Proc::spawn(
        "SeasideVPN PortListener",
        seaside_cmd(&python, &src, &["listen", &private]),
    );
    let port = field(&listener.wait_stdout("listening "), "listening ");
    let file = d.join("seaside.port");
    write_private(
        &file,
        &format!("cipherlink-port 1\nname me\nserver 127.0.0.1:{port}\nserver-key {public}\ntoken 0203\n"),
    );
    // No --connect: the connection file's server.
    let (mut client, client_addr) = start_proxy(
        "proxy client --transport port",
        &[
            "client",
            "--listen",
            "127.0.0.1:0",
            "--transport",
            "port",
            "--port-file",
            file.to_str().unwrap(),
        ],
    );
    let input: Vec<u8> = (0..150_000u32).map(|i| b'a' + (i % 17) as u8).collect();
    let mut app = std::net::TcpStream::connect(client_addr).unwrap();
    app.set_read_timeout(Some(common::DEADLINE)).unwrap();
    let mut writer = app.try_clone().unwrap();
    let sent = input.clone();
    let sender = std::thread::spawn(move || writer.write_all(&sent));
    // The whole echo before our end: SeasideVPN closes the connection at
    // our termination message, and replies still on their way are lost.
    let mut back = vec![0u8; input.len()];
    app.read_exact(&mut back)
        .unwrap_or_else(|e| panic!("{e}\n{}", client.describe()));
    sender.join().unwrap().unwrap();
    assert!(back == input, "the echo differs");
    app.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    app.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "{} bytes after the echo", rest.len());
    listener.wait_stdout("token 0203");
    client.wait_stderr("close: done");
    listener.close_stdin();
}
