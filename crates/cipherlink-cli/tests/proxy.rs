//! `cipherlink proxy` as a program: against openssl s_client and stunnel4
//! (both directions), v1 keys from `proxy keygen` (which never overwrites
//! without --force) and a two-service strict TOML file, stats lines, SIGTERM
//! with an open tunnel, a strict v1 pair from flags, plain kept on loopback,
//! the link and port transports with the files `cipherlink link
//! keygen/invite` write, and `bench proxy` against every foreign tunnel
//! installed.

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;

use cipherlink_test_support::{peer, Peer};
use common::*;

/// Sends `data`, half-closes, reads to EOF (with a deadline).
fn round_trip(addr: SocketAddr, data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(DEADLINE))?;
    let mut writer = stream.try_clone()?;
    let data = data.to_vec();
    let sender = std::thread::spawn(move || {
        writer.write_all(&data)?;
        writer.shutdown(Shutdown::Write)
    });
    let mut back = Vec::new();
    stream.read_to_end(&mut back)?;
    sender
        .join()
        .map_err(|_| std::io::Error::other("sender panicked"))??;
    Ok(back)
}

/// Sends 200,000 bytes (`i % modulus`) through `addr` to an echo backend,
/// checks they all come back, then waits for `proxy` to log the tunnel's close.
fn carries(addr: SocketAddr, modulus: u32, proxy: &mut Proc) {
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % modulus) as u8).collect();
    let back = round_trip(addr, &data)
        .unwrap_or_else(|e| panic!("through {addr}: {e}\n{}", proxy.describe()));
    assert!(
        back == data,
        "{} bytes back of {}\n{}",
        back.len(),
        data.len(),
        proxy.describe()
    );
    proxy.wait_stderr("close:");
}

/// Starts `cipherlink proxy ARGS` and waits for its listening line.
fn start_proxy(name: &str, args: &[&str]) -> (Proc, SocketAddr) {
    let mut cmd = cipherlink();
    cmd.arg("proxy").args(args);
    let mut proc = Proc::spawn(name, cmd);
    let addr = proc.wait_addr(true, "listening on ");
    (proc, addr)
}

fn tls_server(pki: &TestPki, forward: SocketAddr) -> (Proc, SocketAddr) {
    start_proxy(
        "proxy server",
        &[
            "server",
            "--listen",
            "127.0.0.1:0",
            "--forward",
            &forward.to_string(),
            "--transport",
            "tls",
            "--cert",
            &pki.arg("server.crt"),
            "--key",
            &pki.arg("server.key"),
        ],
    )
}

#[test]
fn openssl_s_client_against_a_tls_proxy_server() {
    let Some(openssl) = peer!(Peer::Openssl) else {
        return;
    };
    let pki = pki();
    let (mut proxy, addr) = tls_server(&pki, echo_backend());
    let line = token("s_client-proxy");
    let run = s_client_echo(&openssl, addr.port(), &pki.arg("ca.crt"), &[], &line, true);
    assert!(
        run.status.success() && run.text.contains("Verify return code: 0 (ok)"),
        "s_client: {}\n{}\n{}",
        run.status,
        run.text,
        proxy.describe()
    );
    // The log names the tunnel's bytes each way: line + newline, echoed.
    let n = line.len() + 1;
    let log = proxy.wait_stderr("close:");
    assert!(
        log.contains(&format!("up={n}")) && log.contains(&format!("down={n}")),
        "{log}"
    );
}

#[test]
fn link_keygen_invite_then_a_link_proxy_pair_carries_an_echo() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = |name: &str| dir.path().join(name).display().to_string();
    let link = |args: &[&str]| {
        let mut cmd = cipherlink();
        cmd.arg("link").args(args);
        let out = run("link", cmd, b"");
        assert!(out.status.success(), "{}", out.describe());
    };
    link(&["keygen", "--key", &file("server.key")]);
    // The file's server address is a placeholder: the client is given the
    // real one with --connect (the override a NAT or a test needs).
    link(&[
        "invite",
        "--key",
        &file("server.key"),
        "--tokens",
        &file("tokens.txt"),
        "--name",
        "alice",
        "--server",
        "127.0.0.1:1",
        "--out",
        &file("alice.link"),
    ]);
    let backend = echo_backend();
    let (mut server, server_addr) = start_proxy(
        "proxy server",
        &[
            "server",
            "--listen",
            "127.0.0.1:0",
            "--forward",
            &backend.to_string(),
            "--transport",
            "link",
            "--link-key",
            &file("server.key"),
            "--link-tokens",
            &file("tokens.txt"),
        ],
    );
    let (mut client, client_addr) = start_proxy(
        "proxy client",
        &[
            "client",
            "--listen",
            "127.0.0.1:0",
            "--connect",
            &server_addr.to_string(),
            "--transport",
            "link",
            "--link-file",
            &file("alice.link"),
        ],
    );
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let back = round_trip(client_addr, &data)
        .unwrap_or_else(|e| panic!("{e}\n{}\n{}", server.describe(), client.describe()));
    assert!(back == data, "{} bytes back of {}", back.len(), data.len());
    // The server's tunnel log names the link's client by its token name.
    let log = server.wait_stderr("close:");
    assert!(log.contains("link:alice"), "{log}");
    client.wait_stderr("close:");
    // Files in the wrong place are named, before anything listens.
    let out = proxy_server_refuses(
        "proxy server",
        &[
            "--transport",
            "link",
            "--link-key",
            &file("alice.link"),
            "--link-tokens",
            &file("tokens.txt"),
        ],
    );
    assert!(
        out.stderr.contains("link.server_key") && out.stderr.contains("is a connection file"),
        "{}",
        out.describe()
    );
}

#[test]
fn port_keygen_invite_then_a_port_proxy_pair_carries_an_echo() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = |name: &str| dir.path().join(name).display().to_string();
    let link = |args: &[&str]| {
        let mut cmd = cipherlink();
        cmd.args(["link"]).args(args);
        let out = run("link --wire port", cmd, b"");
        assert!(out.status.success(), "{}", out.describe());
    };
    link(&["keygen", "--wire", "port", "--key", &file("port.key")]);
    link(&[
        "invite",
        "--wire",
        "port",
        "--key",
        &file("port.key"),
        "--tokens",
        &file("port-tokens.txt"),
        "--name",
        "alice",
        "--server",
        "127.0.0.1:1",
        "--out",
        &file("alice.port"),
    ]);
    let server_args = |key: &str| {
        args(&[
            "--transport",
            "port",
            "--port-key",
            key,
            "--port-tokens",
            &file("port-tokens.txt"),
        ])
    };
    let backend = echo_backend().to_string();
    let mut server_cmd = vec!["server", "--listen", "127.0.0.1:0", "--forward", &backend];
    let key_args = server_args(&file("port.key"));
    server_cmd.extend(key_args.iter().map(String::as_str));
    let (mut server, server_addr) = start_proxy("proxy server", &server_cmd);
    let (mut client, client_addr) = start_proxy(
        "proxy client",
        &[
            "client",
            "--listen",
            "127.0.0.1:0",
            "--connect",
            &server_addr.to_string(),
            "--transport",
            "port",
            "--port-file",
            &file("alice.port"),
        ],
    );
    carries(client_addr, 241, &mut client);
    // The server's tunnel log names the client by its token's name.
    let log = server.wait_stderr("close:");
    assert!(log.contains("port:alice"), "{log}");
    // Files in the wrong place, a policy PORT cannot meet, another
    // transport's flag: named, before anything listens.
    let wrong = server_args(&file("alice.port"));
    let out = proxy_server_refuses(
        "wrong key file",
        &wrong.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert!(out.stderr.contains("port.server_key"), "{}", out.describe());
    let mut pq = key_args.clone();
    pq.extend(args(&["--post-quantum", "require-hybrid"]));
    let out = proxy_server_refuses(
        "port with PQ",
        &pq.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert!(
        out.stderr.contains("--post-quantum") && out.stderr.contains("no forward secrecy"),
        "{}",
        out.describe()
    );
    let mut misplaced = key_args.clone();
    misplaced.extend(args(&["--port-file", &file("alice.port")]));
    let out = proxy_server_refuses(
        "port file on a server",
        &misplaced.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert!(out.stderr.contains("--port-file"), "{}", out.describe());
    let out = proxy_server_refuses(
        "port flag on plain",
        &["--transport", "plain", "--port-key", &file("port.key")],
    );
    assert!(out.stderr.contains("--port-*"), "{}", out.describe());
}

/// Starts stunnel4 with one service, `[name]` accepting on a loopback port
/// (stunnel must be told a port: another is tried if it was taken) with
/// the rest of its section in `body`; returns it once it is bound, and the port.
fn start_stunnel(stunnel: &Path, dir: &Path, name: &str, body: &str) -> (Proc, u16) {
    on_spare_port("stunnel4", |port| {
        let path = dir.join("stunnel.conf");
        // debug 6 logs the bind: "Service [name] (FD=n) bound to ADDR".
        let text = format!(
            "foreground = yes\npid =\ndebug = 6\n[{name}]\naccept = 127.0.0.1:{port}\n{body}"
        );
        std::fs::write(&path, text).expect("write stunnel.conf");
        let mut cmd = Command::new(stunnel);
        cmd.arg(&path);
        let mut proc = Proc::spawn("stunnel4", cmd);
        match proc.try_wait_for(true, &format!("bound to 127.0.0.1:{port}")) {
            Ok(_) => Ok((proc, port)),
            Err(why) => Err(format!("{why}\n{}", proc.describe())),
        }
    })
}

#[test]
fn stunnel_client_into_a_tls_proxy_server() {
    let Some(stunnel) = peer!(Peer::Stunnel) else {
        return;
    };
    let pki = pki();
    let (mut proxy, addr) = tls_server(&pki, echo_backend());
    let (_stunnel, port) = start_stunnel(
        &stunnel,
        pki.dir(),
        "to-proxy",
        &format!(
            "client = yes\nconnect = {addr}\n\
             CAfile = {}\nverifyChain = yes\ncheckHost = localhost\n",
            pki.arg("ca.crt")
        ),
    );
    carries(([127, 0, 0, 1], port).into(), 253, &mut proxy);
}

#[test]
fn tls_proxy_client_into_a_stunnel_server() {
    let Some(stunnel) = peer!(Peer::Stunnel) else {
        return;
    };
    let pki = pki();
    let backend = echo_backend();
    let (_stunnel, port) = start_stunnel(
        &stunnel,
        pki.dir(),
        "from-proxy",
        &format!(
            "connect = {backend}\ncert = {}\nkey = {}\n",
            pki.arg("server.crt"),
            pki.arg("server.key")
        ),
    );
    let (mut proxy, addr) = start_proxy(
        "proxy client",
        &[
            "client",
            "--listen",
            "127.0.0.1:0",
            "--connect",
            &format!("127.0.0.1:{port}"),
            "--transport",
            "tls",
            "--ca",
            &pki.arg("ca.crt"),
            // Debian's stunnel4 (OpenSSL 3.0) has no ML-KEM.
            "--groups",
            "X25519MLKEM768,X25519",
        ],
    );
    carries(addr, 241, &mut proxy);
}

#[test]
fn v1_keygen_config_file_stats_and_sigterm_with_an_open_tunnel() {
    let dir = tempfile::tempdir().expect("tempdir");
    for name in ["server", "client"] {
        let mut cmd = cipherlink();
        cmd.args([
            "proxy",
            "keygen",
            "--transport",
            "v1",
            "--name",
            name,
            "--out",
        ])
        .arg(dir.path());
        let out = run("keygen", cmd, b"");
        assert!(out.status.success(), "{}", out.describe());
        assert!(
            out.stdout.contains(&format!("{name}.pub")),
            "{}",
            out.describe()
        );
    }
    // A second keygen does not replace the pair; --force does.
    let secret = dir.path().join("server.key");
    let before = std::fs::read(&secret).expect("server.key");
    let keygen_again = |force: bool| {
        let mut cmd = cipherlink();
        cmd.args(["proxy", "keygen", "--transport", "v1", "--name", "server"])
            .arg("--out")
            .arg(dir.path());
        if force {
            cmd.arg("--force");
        }
        run("keygen again", cmd, b"")
    };
    let out = keygen_again(false);
    assert!(
        !out.status.success()
            && out.stderr.contains("already exists")
            && out.stderr.contains("--force"),
        "{}",
        out.describe()
    );
    assert_eq!(std::fs::read(&secret).expect("server.key"), before);
    let out = keygen_again(true);
    assert!(out.status.success(), "{}", out.describe());
    assert_ne!(std::fs::read(&secret).expect("server.key"), before);
    let backend = echo_backend();
    // The client service listens on port 0 and logs where; the server
    // service's port must be written into the file for the client service
    // to connect to, so it is picked (again if taken) as for a foreign program.
    let (mut proxy, client_addr) = on_spare_port("proxy run", |server_port| {
        let toml = format!(
            r#"
stats_interval_secs = 1
shutdown_grace_secs = 20

[service.legacy-in]
role = "server"
listen = "127.0.0.1:{server_port}"
forward = "{backend}"
transport = "v1"
[service.legacy-in.v1]
secret_key = "server.key"
peer_public_key = "client.pub"
strict = true

[service.legacy-out]
role = "client"
listen = "127.0.0.1:0"
connect = "127.0.0.1:{server_port}"
transport = "v1"
[service.legacy-out.v1]
secret_key = "client.key"
peer_public_key = "server.pub"
strict = true
"#
        );
        let conf = dir.path().join("proxy.toml");
        std::fs::write(&conf, toml).expect("write proxy.toml");
        let mut cmd = cipherlink();
        cmd.args(["proxy", "run", "--config"]).arg(&conf);
        let mut proc = Proc::spawn("proxy run", cmd);
        let marker = "service legacy-out: client v1 listening on ";
        match proc.try_wait_for(true, marker) {
            Ok(_) => {
                let addr = proc.wait_addr(true, marker);
                Ok((proc, addr))
            }
            Err(why) => Err(format!("{why}\n{}", proc.describe())),
        }
    });
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 239) as u8).collect();
    assert_eq!(round_trip(client_addr, &data).expect("v1 round trip"), data);
    proxy.wait_stderr("stats legacy-out:");

    // A tunnel left open, then SIGTERM: it must still work until it ends.
    let mut open = TcpStream::connect(client_addr).expect("open tunnel");
    open.set_read_timeout(Some(DEADLINE)).expect("timeout");
    open.write_all(b"before").expect("write");
    let mut buf = [0u8; 6];
    open.read_exact(&mut buf).expect("echo before");
    let status = Command::new("kill")
        .args(["-TERM", &proxy.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    proxy.wait_stderr("stopped accepting");
    open.write_all(b"after").expect("write after SIGTERM");
    open.shutdown(Shutdown::Write).expect("half-close");
    let mut rest = Vec::new();
    open.read_to_end(&mut rest).expect("echo after SIGTERM");
    assert_eq!(rest, b"after");
    let exit = proxy.wait_exit();
    let log = proxy.stderr();
    assert!(exit.success(), "{exit}\n{log}");
    assert!(
        log.contains("proxy stopped") && !log.contains("cut "),
        "{log}"
    );
}

/// `cipherlink proxy server` (to a port where nothing listens) with
/// `extra`, which must refuse to start; its output.
fn proxy_server_refuses(name: &str, extra: &[&str]) -> Output {
    let mut cmd = cipherlink();
    cmd.args(["proxy", "server", "--listen", "127.0.0.1:0"])
        .args(["--forward", "127.0.0.1:9"])
        .args(extra);
    let out = run(name, cmd, b"");
    assert!(!out.status.success(), "{}", out.describe());
    out
}

#[test]
fn a_strict_v1_pair_from_flags_carries_an_echo() {
    let dir = tempfile::tempdir().expect("tempdir");
    for name in ["server", "client"] {
        let mut cmd = cipherlink();
        cmd.args(["proxy", "keygen", "--transport", "v1", "--name", name])
            .arg("--out")
            .arg(dir.path());
        let out = run("keygen", cmd, b"");
        assert!(out.status.success(), "{}", out.describe());
    }
    let file = |name: &str| dir.path().join(name).display().to_string();
    let (mut server, server_addr) = start_proxy(
        "proxy server",
        &[
            "server",
            "--listen",
            "127.0.0.1:0",
            "--forward",
            &echo_backend().to_string(),
            "--transport",
            "v1",
            "--v1-key",
            &file("server.key"),
            "--v1-peer",
            &file("client.pub"),
            "--v1-strict",
        ],
    );
    let (mut client, client_addr) = start_proxy(
        "proxy client",
        &[
            "client",
            "--listen",
            "127.0.0.1:0",
            "--connect",
            &server_addr.to_string(),
            "--transport",
            "v1",
            "--v1-key",
            &file("client.key"),
            "--v1-peer",
            &file("server.pub"),
            "--v1-strict",
        ],
    );
    carries(client_addr, 233, &mut client);
    server.wait_stderr("close: done");
    // The flag is v1's alone.
    let out = proxy_server_refuses("strict plain", &["--transport", "plain", "--v1-strict"]);
    assert!(out.stderr.contains("--v1-strict"), "{}", out.describe());
}

#[test]
fn plain_stays_on_loopback_unless_dangerously_told_and_warns() {
    let mut cmd = cipherlink();
    cmd.args(["proxy", "server", "--listen", "0.0.0.0:0"])
        .args(["--forward", "127.0.0.1:9", "--transport", "plain"]);
    let out = run("plain on the network", cmd, b"");
    assert!(!out.status.success(), "{}", out.describe());
    assert!(
        out.stderr.contains("not loopback") && out.stderr.contains("--dangerous-plain-on-network"),
        "{}",
        out.describe()
    );
    let backend = echo_backend().to_string();
    for listen in ["127.0.0.1:0", "0.0.0.0:0"] {
        let mut args = vec![
            "server",
            "--listen",
            listen,
            "--forward",
            &backend,
            "--transport",
            "plain",
        ];
        if listen.starts_with("0.") {
            args.push("--dangerous-plain-on-network");
        }
        let (mut proxy, _) = start_proxy("plain proxy", &args);
        let line = proxy.wait_stderr("no encryption, no authentication");
        assert!(line.contains("WARN"), "{line}");
    }
}

#[test]
fn missing_keys_and_certificates_are_named() {
    let out = proxy_server_refuses("proxy v1 without keys", &["--transport", "v1"]);
    assert!(
        out.stderr.contains("--v1-key") && out.stderr.contains("keygen"),
        "{}",
        out.describe()
    );
    let out = proxy_server_refuses("proxy tls without a certificate", &[]);
    assert!(out.stderr.contains("--cert"), "{}", out.describe());
}

/// Every case with every peer installed, briefly: each row is a working
/// tunnel (zero errors, every byte counted by the backend), and `--json -`
/// puts the one report on stdout. Timings are never checked.
#[test]
fn bench_proxy_runs_every_case_with_every_peer_and_writes_json() {
    let mut peers = Vec::new();
    for (peer, name) in [
        (Peer::Stunnel, "stunnel"),
        (Peer::Haproxy, "haproxy"),
        (Peer::Shadowsocks, "ss-libev"),
        (Peer::Spiped, "spiped"),
        (Peer::Obfs4proxy, "obfs4"),
    ] {
        // A missing peer is a counted skip of its row (a failure in CI); the others run.
        if let Some(program) = peer!(peer) {
            peers.push((name, format!("{name}={}", program.display())));
        }
    }
    let list = if peers.is_empty() {
        "none".to_string()
    } else {
        let args: Vec<&str> = peers.iter().map(|(_, arg)| arg.as_str()).collect();
        args.join(",")
    };
    let mut cmd = cipherlink();
    cmd.args([
        "bench",
        "proxy",
        "--mib",
        "2",
        "--duration",
        "300ms",
        "--concurrency",
        "2",
        "--idle",
        "20",
        "--transport",
        "tls,link,v1,port",
        "--peers",
        &list,
        // Parsed as the core's groups (aliases and case folded), handed to
        // the TLS pair by their names.
        "--groups",
        "x25519mlkem768,prime256v1",
        "--json",
        "-",
    ]);
    let out = run("bench proxy", cmd, b"");
    assert!(out.status.success(), "{}", out.describe());
    let report: serde_json::Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document: {e}\n{}", out.describe()));
    // The table went to stderr.
    assert!(out.stderr.contains("conns/s"), "{}", out.describe());
    let rows = report["rows"].as_array().expect("rows");
    let names: Vec<&str> = rows.iter().filter_map(|r| r["pair"].as_str()).collect();
    let mut expected = vec!["direct", "plain", "tls", "link", "v1", "port"];
    expected.extend(peers.iter().map(|(name, _)| *name));
    assert_eq!(names, expected, "{}", out.describe());
    for row in rows {
        // Every pair carried its bytes (the backend's count is checked),
        // echoed every new tunnel, and held every idle one.
        assert!(row["mb_s"].as_f64().unwrap_or(0.0) > 0.0, "{row}");
        assert!(row["conns_per_s"].as_f64().unwrap_or(0.0) > 0.0, "{row}");
        assert!(row["tunnels"].as_u64().unwrap_or(0) > 0, "{row}");
        assert_eq!(row["conn_errors"].as_u64(), Some(0), "{row}");
        assert_eq!(row["idle_errors"].as_u64(), Some(0), "{row}");
        assert!(
            row["failure"].is_null() && row["bulk_error"].is_null(),
            "{row}"
        );
        assert!(!row["crypto"].as_str().unwrap_or("").is_empty(), "{row}");
    }
    for row in &rows[1..] {
        assert_eq!(row["idle_tunnels"].as_u64(), Some(20), "{row}");
        assert!(row["idle_bytes_per_tunnel"].is_number(), "{row}");
        assert!(row["cpu_us_per_tunnel"].is_number(), "{row}");
    }
    // Each of our encrypted transports against each peer.
    let ratios = report["ratios"].as_array().expect("ratios");
    assert_eq!(ratios.len(), 4 * peers.len(), "{ratios:?}");
    assert_eq!(report["idle"].as_u64(), Some(20));
}

#[test]
fn bench_proxy_refuses_a_peer_it_cannot_find() {
    let mut cmd = cipherlink();
    cmd.args(["bench", "proxy", "--peers", "spiped=/nonexistent/spiped"]);
    let out = run("bench proxy", cmd, b"");
    assert!(!out.status.success(), "{}", out.describe());
    assert!(
        out.stderr.contains("--peers") && out.stderr.contains("/nonexistent/spiped"),
        "{}",
        out.describe()
    );
    let mut cmd = cipherlink();
    cmd.args(["bench", "proxy", "--peers", "wireguard"]);
    let out = run("bench proxy", cmd, b"");
    assert_eq!(out.status.code(), Some(2), "{}", out.describe());
    assert!(out.stderr.contains("ss-libev"), "{}", out.describe());
}

/// A link proxy server under a low open-file limit (`ulimit -n 200`, soft
/// and hard): its admission caps come from the descriptors it may open, so
/// more silent sockets than it could hold are evicted instead of using up
/// every descriptor (accept failing with EMFILE), and a proxy client's
/// tunnel still gets through.
#[test]
fn a_link_proxy_server_under_a_low_fd_limit_still_admits_a_client_past_a_flood() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = |name: &str| dir.path().join(name).display().to_string();
    let link = |args: &[&str]| {
        let mut cmd = cipherlink();
        cmd.arg("link").args(args);
        let out = run("link", cmd, b"");
        assert!(out.status.success(), "{}", out.describe());
    };
    link(&["keygen", "--key", &file("server.key")]);
    link(&[
        "invite",
        "--key",
        &file("server.key"),
        "--tokens",
        &file("tokens.txt"),
        "--name",
        "alice",
        "--server",
        "127.0.0.1:1",
        "--out",
        &file("alice.link"),
    ]);
    let backend = echo_backend();
    let bin = cipherlink().get_program().to_owned();
    let mut cmd = Command::new("sh");
    cmd.env("NO_COLOR", "1")
        .arg("-c")
        .arg("ulimit -n 200 && exec \"$0\" \"$@\"")
        .arg(bin)
        .args([
            "proxy",
            "server",
            "--listen",
            "127.0.0.1:0",
            "--forward",
            &backend.to_string(),
            "--transport",
            "link",
            "--link-key",
            &file("server.key"),
            "--link-tokens",
            &file("tokens.txt"),
        ]);
    let mut server = Proc::spawn("proxy server (ulimit -n 200)", cmd);
    let server_addr = server.wait_addr(true, "listening on ");
    let line = server.wait_stderr("before they authenticate");
    assert!(
        line.contains("up to 68 connections before they authenticate (17 per address)"),
        "{line}"
    );
    let silent: Vec<TcpStream> = (0..300)
        .map(|i| {
            TcpStream::connect_timeout(&server_addr, std::time::Duration::from_secs(5))
                .unwrap_or_else(|e| panic!("silent socket {i}: {e}"))
        })
        .collect();
    let (client, client_addr) = start_proxy(
        "proxy client",
        &[
            "client",
            "--listen",
            "127.0.0.1:0",
            "--connect",
            &server_addr.to_string(),
            "--transport",
            "link",
            "--link-file",
            &file("alice.link"),
        ],
    );
    let data = b"past the flood".to_vec();
    let back = round_trip(client_addr, &data)
        .unwrap_or_else(|e| panic!("{e}\n{}\n{}", server.describe(), client.describe()));
    assert_eq!(back, data, "{}\n{}", server.describe(), client.describe());
    drop(silent);
}
