//! `cipherlink proxy --udp` as a program, with real UDP programs behind
//! it: a DNS query through a plain and a typhoon pair to dnsmasq, and
//! `iperf3 -u` through a pair (its TCP control connection through a TCP
//! service of the same files), whose server report must show datagrams.
//! Each fails if the proxy does not carry datagrams both ways.

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use cipherlink_test_support::{peer, Peer};
use common::*;

/// INITs answered after 50-100 ms instead of 3.2-12.8 s, handshakes every
/// 1-2 s, a session given up after three unanswered (docs/typhoon-wire.md §3).
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

/// The name dnsmasq answers, and its address.
const NAME: &str = "example.test";
const ADDRESS: [u8; 4] = [192, 0, 2, 7];

/// dnsmasq on a loopback port, unprivileged, answering only [`NAME`].
fn dnsmasq(bin: &Path) -> (Proc, u16) {
    on_spare_port("dnsmasq", |port| {
        let mut cmd = std::process::Command::new(bin);
        cmd.args([
            "--no-daemon",
            &format!("--port={port}"),
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            "--no-resolv",
            "--no-hosts",
            "--conf-file=/dev/null",
            "--pid-file=",
            "--log-facility=-",
            &format!("--address=/{NAME}/{}", std::net::Ipv4Addr::from(ADDRESS)),
        ]);
        let mut proc = Proc::spawn("dnsmasq", cmd);
        proc.try_wait_for(true, "started").map(|_| (proc, port))
    })
}

/// An A query for [`NAME`] with id `id`, built by hand (RFC 1035 §4.1).
fn query(id: u16) -> Vec<u8> {
    let mut q = Vec::new();
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]); // RD; one question
    for label in NAME.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]); // root, type A, class IN
    q
}

/// Asks `server` for [`NAME`] from a fresh socket (a new flow), sending
/// again every second until an answer with our id comes; the answer's
/// address (the last record's data: one answer, no EDNS in the query).
fn resolve(server: SocketAddr, id: u16) -> Result<[u8; 4], String> {
    let socket = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    socket
        .set_read_timeout(Some(Duration::from_secs(1)))
        .map_err(|e| e.to_string())?;
    let start = Instant::now();
    let mut buf = [0u8; 512];
    while start.elapsed() < DEADLINE {
        socket
            .send_to(&query(id), server)
            .map_err(|e| e.to_string())?;
        let Ok((n, _)) = socket.recv_from(&mut buf) else {
            continue;
        };
        let answer = &buf[..n];
        if n < 16 || answer[..2] != id.to_be_bytes() {
            continue;
        }
        let rcode = answer[3] & 0x0f;
        let answers = u16::from_be_bytes([answer[6], answer[7]]);
        if rcode != 0 || answers != 1 {
            return Err(format!("rcode {rcode}, {answers} answers: {answer:02x?}"));
        }
        return Ok(answer[n - 4..].try_into().unwrap());
    }
    Err(format!("no answer within {DEADLINE:?}"))
}

/// `cipherlink proxy ARGS` (with the short TYPHOON timers and info logs),
/// and the address it listens on.
fn proxy(name: &str, dir: &Path, args: &[&str]) -> (Proc, SocketAddr) {
    let mut cmd = cipherlink();
    cmd.current_dir(dir)
        .arg("proxy")
        .args(args)
        .env("CIPHERLINK_LOG", "info")
        .envs(TIMERS.iter().copied());
    let mut proc = Proc::spawn(name, cmd);
    let addr = proc.wait_addr(true, "listening on ");
    (proc, addr)
}

/// A pair of UDP ends of `transport` in front of `service`: (server,
/// client, the client's address). `server_files` and `client_files` are
/// the transport's flags.
fn pair(
    dir: &Path,
    transport: &str,
    service: SocketAddr,
    server_files: &[&str],
    client_files: &[&str],
) -> (Proc, Proc, SocketAddr) {
    let forward = service.to_string();
    let mut args = vec!["server", "--udp", "--transport", transport];
    args.extend(["--listen", "127.0.0.1:0", "--forward", &forward]);
    args.extend(server_files);
    let (server, server_addr) = proxy("proxy server --udp", dir, &args);
    let connect = server_addr.to_string();
    let mut args = vec!["client", "--udp", "--transport", transport];
    args.extend([
        "--listen",
        "127.0.0.1:0",
        "--connect",
        &connect,
        "--stats",
        "1s",
    ]);
    args.extend(client_files);
    let (client, client_addr) = proxy("proxy client --udp", dir, &args);
    (server, client, client_addr)
}

/// Two queries from two sockets (two flows) through `client` get
/// dnsmasq's answer, and the client's stats line counts them.
fn two_flows_resolve(client_addr: SocketAddr, server: &mut Proc, client: &mut Proc) {
    for id in [0x1234, 0x4321] {
        let got = resolve(client_addr, id)
            .unwrap_or_else(|e| panic!("{e}\n{}\n{}", client.describe(), server.describe()));
        assert_eq!(got, ADDRESS, "{}", client.describe());
    }
    let line = client.stderr_line("udp flows=2");
    assert!(line.contains("new=") && line.contains("dropped:"), "{line}");
    server.wait_stderr("udp: session from");
}

#[test]
fn a_dns_query_through_a_plain_udp_pair_reaches_dnsmasq() {
    let Some(bin) = peer!(Peer::Dnsmasq) else {
        return;
    };
    let (_dns, port) = dnsmasq(&bin);
    let dir = tempfile::tempdir().unwrap();
    let service = SocketAddr::from(([127, 0, 0, 1], port));
    let (mut server, mut client, addr) = pair(dir.path(), "plain", service, &[], &[]);
    two_flows_resolve(addr, &mut server, &mut client);
}

/// `link keygen|invite --wire typhoon` in `dir`: the server's key and
/// token store, and alice's connection file.
fn typhoon_files(dir: &Path) {
    keygen_invite(dir, &["--wire", "typhoon"], "alice.typhoon");
}

/// `link keygen|invite` (with `wire`'s flags) in `dir`: `server.key`,
/// `tokens.txt`, and alice's connection file `out`.
fn keygen_invite(dir: &Path, wire: &[&str], out: &str) {
    let keygen = [&["link", "keygen"][..], wire, &["--key", "server.key"]].concat();
    let invite = [
        &["link", "invite"][..],
        wire,
        &[
            "--key",
            "server.key",
            "--tokens",
            "tokens.txt",
            "--name",
            "alice",
        ],
        &["--server", "127.0.0.1:1", "--out", out],
    ]
    .concat();
    for args in [keygen, invite] {
        let mut cmd = cipherlink();
        cmd.current_dir(dir).args(args);
        let out = run("cipherlink link", cmd, b"");
        assert!(out.status.success(), "{}", out.describe());
    }
}

#[test]
fn a_dns_query_through_a_typhoon_udp_pair_reaches_dnsmasq() {
    let Some(bin) = peer!(Peer::Dnsmasq) else {
        return;
    };
    let (_dns, port) = dnsmasq(&bin);
    let dir = tempfile::tempdir().unwrap();
    typhoon_files(dir.path());
    let service = SocketAddr::from(([127, 0, 0, 1], port));
    let (mut server, mut client, addr) = pair(
        dir.path(),
        "typhoon",
        service,
        &["--port-key", "server.key", "--port-tokens", "tokens.txt"],
        &["--port-file", "alice.typhoon"],
    );
    two_flows_resolve(addr, &mut server, &mut client);
    assert!(
        server.stderr().contains("(alice) open"),
        "{}",
        server.describe()
    );
}

/// `link keygen|invite` in `dir`: the server's key and token store, and
/// alice's connection file.
fn link_files(dir: &Path) {
    keygen_invite(dir, &[], "alice.link");
}

/// The link's datagram mode carries DNS as well (docs/link-protocol.md §11).
#[test]
fn a_dns_query_through_a_link_udp_pair_reaches_dnsmasq() {
    let Some(bin) = peer!(Peer::Dnsmasq) else {
        return;
    };
    let (_dns, port) = dnsmasq(&bin);
    let dir = tempfile::tempdir().unwrap();
    link_files(dir.path());
    let service = SocketAddr::from(([127, 0, 0, 1], port));
    let (mut server, mut client, addr) = pair(
        dir.path(),
        "link",
        service,
        &["--link-key", "server.key", "--link-tokens", "tokens.txt"],
        &["--link-file", "alice.link"],
    );
    two_flows_resolve(addr, &mut server, &mut client);
    assert!(
        server.stderr().contains("(alice) open"),
        "{}",
        server.describe()
    );
}

/// The address in the log line of service `name` (`service NAME: ...
/// listening on ADDR, ...`).
fn service_addr(proc: &mut Proc, name: &str) -> SocketAddr {
    let line = proc.stderr_line(&format!("service {name}: "));
    let rest = line.split("listening on ").nth(1).unwrap();
    rest.split(',').next().unwrap().trim().parse().unwrap()
}

/// `iperf3 -s -1 -J` on a loopback port (TCP control and UDP data).
fn iperf3_server(bin: &Path) -> (Proc, u16) {
    on_spare_port("iperf3 -s", |port| {
        let mut cmd = std::process::Command::new(bin);
        cmd.args(["-s", "-1", "-J", "-p", &port.to_string()]);
        let mut proc = Proc::spawn("iperf3 -s", cmd);
        // It prints nothing before the test with -J: it listens once the
        // port can no longer be bound.
        let start = Instant::now();
        while std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            if !proc.running() {
                return Err(format!("exited: {}", proc.describe()));
            }
            if start.elapsed() > DEADLINE {
                panic!("iperf3 did not listen\n{}", proc.describe());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok((proc, port))
    })
}

#[test]
fn iperf3_udp_through_a_udp_pair_reports_received_datagrams() {
    iperf3_through("plain");
}

/// iperf3 through the link's datagram mode.
#[test]
fn iperf3_udp_through_a_link_udp_pair_reports_received_datagrams() {
    iperf3_through("link");
}

/// `iperf3 -u` through a UDP service of `transport` (plain or link), its
/// control connection through a plain TCP service beside it.
fn iperf3_through(transport: &str) {
    let Some(bin) = peer!(Peer::Iperf3) else {
        return;
    };
    let (mut iperf, port) = iperf3_server(&bin);
    let dir = tempfile::tempdir().unwrap();
    let (server_table, client_table) = if transport == "link" {
        link_files(dir.path());
        (
            "[service.data.link]\nserver_key = \"server.key\"\ntoken_store = \"tokens.txt\"\n",
            "[service.data.link]\nconnection_file = \"alice.link\"\n",
        )
    } else {
        ("", "")
    };
    // The server end: a UDP service for the data, a TCP one for iperf3's
    // control connection, from one file.
    let server_toml = format!(
        "[service.data]\nrole = \"server\"\nlisten = \"127.0.0.1:0\"\nforward = \"127.0.0.1:{port}\"\n\
         transport = \"{transport}\"\nudp = true\n{server_table}\
         [service.control]\nrole = \"server\"\nlisten = \"127.0.0.1:0\"\nforward = \"127.0.0.1:{port}\"\n\
         transport = \"plain\"\n"
    );
    std::fs::write(dir.path().join("server.toml"), server_toml).unwrap();
    let mut cmd = cipherlink();
    cmd.current_dir(dir.path())
        .args(["proxy", "run", "--config", "server.toml"])
        .env("CIPHERLINK_LOG", "info");
    let mut server = Proc::spawn("proxy run (server)", cmd);
    let data = service_addr(&mut server, "data");
    let control = service_addr(&mut server, "control");
    // The client end: both services on one port number, as iperf3 uses
    // one for TCP and UDP.
    let (mut client, local) = on_spare_port("proxy run (client)", |local| {
        let toml = format!(
            "stats_interval = \"1s\"\n\
             [service.data]\nrole = \"client\"\nlisten = \"127.0.0.1:{local}\"\nconnect = \"{data}\"\n\
             transport = \"{transport}\"\nudp = true\nflow_idle_timeout = \"30s\"\nmax_flows = 64\n{client_table}\
             [service.control]\nrole = \"client\"\nlisten = \"127.0.0.1:{local}\"\nconnect = \"{control}\"\n\
             transport = \"plain\"\n"
        );
        std::fs::write(dir.path().join("client.toml"), toml).unwrap();
        let mut cmd = cipherlink();
        cmd.current_dir(dir.path())
            .args(["proxy", "run", "--config", "client.toml"])
            .env("CIPHERLINK_LOG", "info");
        let mut proc = Proc::spawn("proxy run (client)", cmd);
        proc.try_wait_for(
            true,
            &format!("service data: client {transport} (UDP) listening on"),
        )
        .and_then(|_| proc.try_wait_for(true, "service control: "))
        .map(|_| (proc, local))
    });
    let mut cmd = std::process::Command::new(&bin);
    cmd.args(["-c", "127.0.0.1", "-p", &local.to_string()])
        .args(["-u", "-b", "2M", "-t", "2", "-l", "1200", "-J"]);
    let out = run("iperf3 -c", cmd, b"");
    assert!(
        out.status.success(),
        "{}\n{}\n{}",
        out.describe(),
        client.describe(),
        server.describe()
    );
    iperf.wait_exit();
    let report: serde_json::Value = serde_json::from_str(&iperf.stdout())
        .unwrap_or_else(|e| panic!("iperf3's report: {e}\n{}", iperf.describe()));
    let sum = &report["end"]["sum"];
    let packets = sum["packets"].as_u64().unwrap_or(0);
    assert!(packets > 0, "no datagram reached iperf3: {sum}");
    assert!(sum["lost_percent"].is_number(), "{sum}");
    assert!(sum["lost_packets"].is_u64(), "{sum}");
    // The data went through the UDP service, not around it.
    let line = client.stderr_line("stats data: udp");
    assert!(!line.contains(" up=0 "), "{line}");
}

#[test]
fn a_lost_typhoon_session_is_opened_again_on_the_next_datagram() {
    let Some(bin) = peer!(Peer::Dnsmasq) else {
        return;
    };
    let (_dns, port) = dnsmasq(&bin);
    let dir = tempfile::tempdir().unwrap();
    typhoon_files(dir.path());
    let service = SocketAddr::from(([127, 0, 0, 1], port));
    let server_files = ["--port-key", "server.key", "--port-tokens", "tokens.txt"];
    let (server, mut client, addr) = pair(
        dir.path(),
        "typhoon",
        service,
        &server_files,
        &["--port-file", "alice.typhoon"],
    );
    assert_eq!(resolve(addr, 1).unwrap(), ADDRESS);
    // The server end goes away (its sessions with it) and comes back on
    // the same address: the client's TYPHOON session gives up after its
    // retries, and a later datagram opens a new one.
    let listen = server.stderr();
    let listen = listen
        .split("listening on ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .unwrap()
        .to_string();
    drop(server);
    let forward = service.to_string();
    let mut args = vec!["server", "--udp", "--transport", "typhoon"];
    args.extend(["--listen", &listen, "--forward", &forward]);
    args.extend(server_files);
    let (mut server, _) = proxy("proxy server --udp (again)", dir.path(), &args);
    client.wait_stderr("lost:");
    let got = resolve(addr, 2)
        .unwrap_or_else(|e| panic!("{e}\n{}\n{}", client.describe(), server.describe()));
    assert_eq!(got, ADDRESS);
    assert_eq!(
        client.stderr().matches("udp: session to").count(),
        3,
        "up, lost, up"
    );
    server.wait_stderr("(alice) open");
}

#[test]
fn udp_flags_with_a_stream_transport_or_without_udp_are_refused_by_name() {
    let refused = |args: &[&str], flag: &str| {
        let mut cmd = cipherlink();
        cmd.arg("proxy").args(args);
        let out = run("cipherlink proxy", cmd, b"");
        assert!(!out.status.success(), "{}", out.describe());
        assert!(out.stderr.contains(flag), "{flag}: {}", out.describe());
    };
    let server = [
        "server",
        "--listen",
        "127.0.0.1:0",
        "--forward",
        "127.0.0.1:53",
    ];
    for transport in ["tls", "v1", "port"] {
        let mut args = server.to_vec();
        args.extend(["--udp", "--transport", transport]);
        refused(&args, "--udp");
    }
    let mut args = server.to_vec();
    args.extend(["--transport", "typhoon"]);
    refused(&args, "--udp");
    let mut args = server.to_vec();
    args.extend(["--transport", "plain", "--max-flows", "10"]);
    refused(&args, "--max-flows");
    let mut args = server.to_vec();
    args.extend(["--transport", "plain", "--udp", "--mux"]);
    refused(&args, "--mux");
}

#[test]
fn a_revoked_token_ends_its_typhoon_session_and_opens_no_new_one() {
    revoked_token_gets_no_new_session(
        "typhoon",
        typhoon_files,
        &["--port-key", "server.key", "--port-tokens", "tokens.txt"],
        &["--port-file", "alice.typhoon"],
        "the token of alice was revoked",
    );
}

/// A pair of `transport` in front of dnsmasq answers one query; then alice's
/// token is revoked: the server end says `ended` and the client end loses
/// its session, and the next query (a new session, which the server refuses
/// in silence) gets no answer and opens no second session.
fn revoked_token_gets_no_new_session(
    transport: &str,
    files: fn(&Path),
    server_files: &[&str],
    client_files: &[&str],
    ended: &str,
) {
    let Some(bin) = peer!(Peer::Dnsmasq) else {
        return;
    };
    let (_dns, port) = dnsmasq(&bin);
    let dir = tempfile::tempdir().unwrap();
    files(dir.path());
    let service = SocketAddr::from(([127, 0, 0, 1], port));
    let (mut server, mut client, addr) =
        pair(dir.path(), transport, service, server_files, client_files);
    assert_eq!(resolve(addr, 1).unwrap(), ADDRESS);
    let mut cmd = cipherlink();
    cmd.current_dir(dir.path()).args([
        "link",
        "revoke",
        "--tokens",
        "tokens.txt",
        "--name",
        "alice",
    ]);
    let out = run("cipherlink link revoke", cmd, b"");
    assert!(out.status.success(), "{}", out.describe());
    server.wait_stderr(ended);
    client.wait_stderr("lost:");
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    socket.send_to(&query(3), addr).unwrap();
    let mut buf = [0u8; 512];
    assert!(
        socket.recv_from(&mut buf).is_err(),
        "an answer after the revocation"
    );
    assert_eq!(
        server.stderr().matches("(alice) open").count(),
        1,
        "{}",
        server.describe()
    );
}

/// Revoking a link token ends its open UDP session (the link's sweep), and
/// the next datagram's new session is refused: no answer gets through.
#[test]
fn a_revoked_token_ends_its_link_udp_session_and_opens_no_new_one() {
    revoked_token_gets_no_new_session(
        "link",
        link_files,
        &["--link-key", "server.key", "--link-tokens", "tokens.txt"],
        &["--link-file", "alice.link"],
        "closed 1 open links",
    );
}
