//! `cipherlink proxy` as its operator sees it: every service checked before
//! any listens, a tunnel's open line naming the TLS peer and group, stats
//! lines only when something moved, and the flags' shared vocabulary
//! (`--listen PORT`, durations with units).

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};

use common::*;

/// Starts `cipherlink proxy ARGS` and waits for its listening line.
fn start_proxy(name: &str, args: &[&str]) -> (Proc, SocketAddr) {
    let mut cmd = cipherlink();
    cmd.arg("proxy").args(args);
    let mut proc = Proc::spawn(name, cmd);
    let addr = proc.wait_addr(true, "listening on ");
    (proc, addr)
}

/// Sends `data` through `addr`, half-closes and reads the echo to EOF.
fn echo_through(addr: SocketAddr, data: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream.write_all(data).unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let mut back = Vec::new();
    stream.read_to_end(&mut back).unwrap();
    back
}

/// The second service of a file is broken (a certificate that does not
/// exist); the first listens on a port that is taken. The proxy reports
/// the configuration mistake, which it finds before it tries to listen on
/// anything, and listens nowhere.
#[test]
fn proxy_checks_every_service_before_any_listens() {
    let dir = tempfile::tempdir().unwrap();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let toml = format!(
        r#"
[service.a-first]
role = "server"
listen = "127.0.0.1:{port}"
forward = "127.0.0.1:9"
transport = "plain"

[service.b-second]
role = "server"
listen = "127.0.0.1:0"
forward = "127.0.0.1:9"
transport = "tls"
[service.b-second.tls]
certificate = "missing.crt"
private_key = "missing.key"
"#
    );
    let conf = dir.path().join("proxy.toml");
    std::fs::write(&conf, toml).unwrap();
    let mut cmd = cipherlink();
    cmd.args(["proxy", "run", "--config"]).arg(&conf);
    let out = run("proxy run", cmd, b"");
    assert!(!out.status.success(), "{}", out.describe());
    assert!(
        out.stderr.contains("b-second") && out.stderr.contains("missing.crt"),
        "{}",
        out.describe()
    );
    assert!(
        !out.stderr.contains("cannot listen") && !out.stderr.contains("listening on"),
        "{}",
        out.describe()
    );
}

/// A TLS tunnel's open line names the client certificate's subject (or
/// `anonymous`) and the group, each key once, in `key=value` form.
#[test]
fn proxy_open_line_names_the_tls_peer_and_group_once() {
    let pki = pki();
    let backend = echo_backend();
    let server_args = |mtls: bool| {
        let mut list = vec![
            "server".to_string(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--forward".into(),
            backend.to_string(),
            "--cert".into(),
            pki.arg("server.crt"),
            "--key".into(),
            pki.arg("server.key"),
        ];
        if mtls {
            list.extend(args(&["--ca", &pki.arg("ca.crt"), "--require-client-cert"]));
        }
        list
    };
    for mtls in [true, false] {
        let list = server_args(mtls);
        let list: Vec<&str> = list.iter().map(String::as_str).collect();
        let (mut server, server_addr) = start_proxy("proxy server", &list);
        let mut client_args = vec![
            "client".to_string(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--connect".into(),
            server_addr.to_string(),
            "--ca".into(),
            pki.arg("ca.crt"),
        ];
        if mtls {
            client_args.extend(args(&[
                "--cert",
                &pki.arg("client.crt"),
                "--key",
                &pki.arg("client.key"),
            ]));
        }
        let list: Vec<&str> = client_args.iter().map(String::as_str).collect();
        let (mut client, client_addr) = start_proxy("proxy client", &list);
        assert_eq!(echo_through(client_addr, b"who"), b"who");
        let line = server.stderr_line("open:");
        // The subject has spaces (`CN=client, O=cipherlink`): quoted.
        let expected_peer = if mtls {
            "peer=\"CN=client"
        } else {
            "peer=anonymous"
        };
        assert!(
            line.contains(expected_peer) && line.contains("group=X25519MLKEM768"),
            "{line}"
        );
        for key in ["service=", "tunnel=", "from=", "peer=", "group="] {
            assert_eq!(line.matches(key).count(), 1, "{key} in {line}");
        }
        // The client's line names the server's certificate.
        let line = client.stderr_line("open:");
        assert!(line.contains("peer=\"CN=localhost"), "{line}");
        let close = server.stderr_line("close:");
        assert_eq!(close.matches("peer=").count(), 1, "{close}");
    }
}

/// With `--stats`, an idle proxy logs nothing; the first line after a
/// quiet spell shows the tunnel, and once it has ended, nothing more.
/// `--listen` takes a bare port and `--stats` a duration with its unit.
#[test]
fn proxy_stats_lines_only_when_something_moved() {
    let backend = echo_backend();
    let (mut proxy, addr) = on_spare_port("proxy server", |port| {
        let mut cmd = cipherlink();
        cmd.args(["proxy", "server", "--listen"])
            .arg(port.to_string())
            .args(["--forward", &backend.to_string()])
            .args(["--transport", "plain", "--dangerous-plain-on-network"])
            .args(["--stats", "100ms", "--idle-timeout", "2m"])
            .args(["--connect-timeout-ms", "5000"]);
        let mut proc = Proc::spawn("proxy server", cmd);
        match proc.try_wait_for(true, "listening on 0.0.0.0:") {
            Ok(_) => Ok((proc, SocketAddr::from(([127, 0, 0, 1], port)))),
            Err(why) => Err(format!("{why}\n{}", proc.describe())),
        }
    });
    // Ten stats periods with nothing to say.
    std::thread::sleep(std::time::Duration::from_secs(1));
    assert_eq!(echo_through(addr, b"stats"), b"stats");
    let first = proxy.stderr_line("stats server:");
    assert!(first.contains("accepted=1"), "{first}");
    proxy.stderr_line("active=0 ");
    // Ten more quiet periods: the line of the ended tunnel stays the last.
    std::thread::sleep(std::time::Duration::from_secs(1));
    let log = proxy.stderr();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("stats server:"))
        .collect();
    let ended: Vec<&&str> = lines.iter().filter(|l| l.contains("active=0 ")).collect();
    assert_eq!(ended.len(), 1, "{}", proxy.describe());
    assert!(lines.last().unwrap().contains("active=0 "), "{log}");
}
