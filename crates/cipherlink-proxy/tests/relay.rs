//! The relay end to end, in process, for every transport (port included):
//! many clients at once with every byte checked, half-close, a service that
//! is down, shutdown with open tunnels, idle tunnels.

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::time::Duration;

use cipherlink_proxy::Transport;
use cipherlink_test_support::echo_server;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const TRANSPORTS: [Transport; 4] = [
    Transport::Tls,
    Transport::V1,
    Transport::Port,
    Transport::Plain,
];

async fn many_clients(transport: Transport) {
    many_clients_n(transport, 200).await;
}

async fn many_clients_n(transport: Transport, clients: u64) {
    let material = Material::new();
    let backend = echo_server().await;
    let pair = Pair::start(&material, transport, backend).await;
    many_echoes_counted(&pair, clients, transport).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_clients_tls() {
    many_clients(Transport::Tls).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_clients_v1() {
    many_clients(Transport::V1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_clients_plain() {
    many_clients(Transport::Plain).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_clients_port() {
    many_clients_n(Transport::Port, 100).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_clients_link() {
    many_clients_n(Transport::Link, 50).await;
}

/// A backend that answers only after the client's EOF: the reply must
/// still reach a client that has shut its write side.
async fn reply_after_eof_server() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut all = Vec::new();
                if stream.read_to_end(&mut all).await.is_ok() {
                    let reply = format!("got {} bytes after EOF", all.len());
                    let _ = stream.write_all(reply.as_bytes()).await;
                    let _ = stream.shutdown().await;
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn half_close_reaches_the_service_and_the_reply_comes_back() {
    let material = Material::new();
    let backend = reply_after_eof_server().await;
    for transport in TRANSPORTS {
        let pair = Pair::start(&material, transport, backend).await;
        let back = tokio::time::timeout(DEADLINE, round_trip(pair.client.addr, &[7u8; 12345]))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&back),
            "got 12345 bytes after EOF",
            "{transport:?}"
        );
    }
}

#[tokio::test]
async fn a_service_that_is_down_resets_the_client_and_the_proxy_keeps_running() {
    let material = Material::new();
    for transport in TRANSPORTS.into_iter().chain([Transport::Link]) {
        // A port with nothing listening (bound, then released).
        let spare = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let down = spare.local_addr().unwrap();
        drop(spare);
        let pair = Pair::start(&material, transport, down).await;
        let outcome = tokio::time::timeout(DEADLINE, round_trip(pair.client.addr, b"hello"))
            .await
            .unwrap();
        match outcome {
            Err(err) => assert_eq!(
                err.kind(),
                std::io::ErrorKind::ConnectionReset,
                "{transport:?}: {err}"
            ),
            Ok(back) => panic!("{transport:?}: a dead service must reset the client, got {back:?}"),
        }
        let server = pair.server.stats.clone();
        until("the failed tunnel counted", || {
            server.snapshot().failed == 1
        })
        .await;
        // The service comes up on that port: the same proxy pair now works.
        let Ok(listener) = TcpListener::bind(down).await else {
            continue; // the port was taken meanwhile; the reset above is the point
        };
        tokio::spawn(async move {
            if let Ok((mut s, _)) = listener.accept().await {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            }
        });
        let back = round_trip(pair.client.addr, b"again").await.unwrap();
        assert_eq!(back, b"again", "{transport:?}");
    }
}

#[tokio::test]
async fn shutdown_stops_accepting_and_lets_open_tunnels_finish() {
    let material = Material::new();
    let backend = echo_server().await;
    let pair = Pair::start(&material, Transport::Tls, backend).await;
    let mut open = TcpStream::connect(pair.client.addr).await.unwrap();
    open.write_all(b"before").await.unwrap();
    let mut buf = [0u8; 6];
    open.read_exact(&mut buf).await.unwrap();
    pair.client.stop();
    // The listener goes away: new clients are refused...
    let refused = tokio::time::timeout(DEADLINE, async {
        loop {
            if TcpStream::connect(pair.client.addr).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(refused.is_ok(), "the stopped service still accepts");
    // ...while the open tunnel still carries data both ways and ends cleanly.
    open.write_all(b"after").await.unwrap();
    open.shutdown().await.unwrap();
    let mut rest = Vec::new();
    open.read_to_end(&mut rest).await.unwrap();
    assert_eq!(rest, b"after");
    let Pair {
        server: _server,
        client,
    } = pair;
    let stats = client.stats.clone();
    tokio::time::timeout(DEADLINE, async {
        while !client.task.is_finished() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("run() returns once the last tunnel ended");
    assert_eq!(
        (stats.snapshot().completed, stats.snapshot().failed),
        (1, 0)
    );
}

#[tokio::test]
async fn an_idle_tunnel_is_closed_after_the_idle_limit() {
    let material = Material::new();
    let backend = echo_server().await;
    let mut config = material.secure(cipherlink_proxy::ServiceConfig::new(
        cipherlink_proxy::Role::Server,
        "127.0.0.1:0",
        backend.to_string(),
        Transport::Plain,
    ));
    config.idle_timeout = std::time::Duration::from_secs(1);
    let server = Running::start("idle", config).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(b"x").await.unwrap();
    let mut one = [0u8; 1];
    stream.read_exact(&mut one).await.unwrap();
    // Nothing more is sent: the proxy must cut the tunnel (a reset).
    let mut rest = Vec::new();
    let ended = tokio::time::timeout(DEADLINE, stream.read_to_end(&mut rest)).await;
    assert!(ended.is_ok(), "idle tunnel was never closed");
    server
        .until_failed("idle tunnel counted as failed", 1)
        .await;
}

#[tokio::test]
async fn mutual_tls_and_the_allow_list_apply_unchanged() {
    use cipherlink::PemSource;
    use cipherlink_proxy::{Role, ServiceConfig};
    let material = Material::new();
    let backend = echo_server().await;
    let bundle = &material.bundle;
    // A TLS server in front of the echo backend that requires a client
    // certificate from the test CA naming `allowed`.
    let mtls_server = |allowed: &str| {
        let mut config = material.secure(ServiceConfig::new(
            Role::Server,
            "127.0.0.1:0",
            backend.to_string(),
            Transport::Tls,
        ));
        if let Some(tls) = &mut config.tls {
            tls.trusted_cas = vec![PemSource::inline(bundle.ca.cert.clone())];
            tls.require_client_cert = true;
            tls.allowed_identities = vec![allowed.into()];
        }
        config
    };
    let server = Running::start("mtls", mtls_server("client")).await;
    let client_config = |with_cert: bool| {
        let mut config = material.secure(ServiceConfig::new(
            Role::Client,
            "127.0.0.1:0",
            server.addr.to_string(),
            Transport::Tls,
        ));
        if let (Some(tls), true) = (&mut config.tls, with_cert) {
            tls.certificate = Some(PemSource::inline(bundle.client.cert.clone()));
            tls.private_key = Some(PemSource::inline(bundle.client.key.clone()));
        }
        config
    };
    // Without a client certificate the server refuses the handshake; the
    // application sees a reset, not an empty reply.
    let anonymous = Running::start("anonymous", client_config(false)).await;
    let refused = tokio::time::timeout(DEADLINE, round_trip(anonymous.addr, b"let me in"))
        .await
        .unwrap();
    assert!(
        refused.is_err(),
        "an anonymous client got through: {refused:?}"
    );
    // Garbage instead of a ClientHello: refused, and the server goes on.
    let mut garbage = TcpStream::connect(server.addr).await.unwrap();
    garbage.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(DEADLINE, garbage.read_to_end(&mut rest))
        .await
        .unwrap();
    server.until_failed("two refused handshakes", 2).await;
    // With the allowed identity's certificate, the tunnel works.
    let allowed = Running::start("allowed", client_config(true)).await;
    let back = round_trip(allowed.addr, b"let me in").await.unwrap();
    assert_eq!(back, b"let me in");
    // The same certificate against a server that allows only another name.
    let strict = Running::start("strict", mtls_server("somebody-else")).await;
    let mut to_strict = client_config(true);
    to_strict.connect = strict.addr.to_string();
    let to_strict = Running::start("to-strict", to_strict).await;
    let refused = round_trip(to_strict.addr, b"let me in").await;
    assert!(
        refused.is_err(),
        "an identity off the list got through: {refused:?}"
    );
    strict.until_failed("the off-list client refused", 1).await;
}

#[tokio::test]
async fn half_close_travels_through_a_link_pair() {
    let material = Material::new();
    let backend = reply_after_eof_server().await;
    let pair = Pair::start(&material, Transport::Link, backend).await;
    let back = tokio::time::timeout(DEADLINE, round_trip(pair.client.addr, &[7u8; 54321]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&back), "got 54321 bytes after EOF");
}

/// A proxy client with another connection file, against `server`, giving
/// up on a handshake after one second.
async fn link_client(material: &Material, file: &str, server: std::net::SocketAddr) -> Running {
    use cipherlink_proxy::{LinkConfig, Role, ServiceConfig};
    let mut config = ServiceConfig::new(
        Role::Client,
        "127.0.0.1:0",
        server.to_string(),
        Transport::Link,
    );
    config.link = Some(LinkConfig {
        connection_file: Some(material.path(file)),
        ..LinkConfig::default()
    });
    config.connect_timeout = std::time::Duration::from_secs(1);
    Running::start(file, config).await
}

#[tokio::test]
async fn revoked_and_unknown_tokens_are_refused_and_the_server_goes_on() {
    let material = Material::new();
    let backend = echo_server().await;
    let pair = Pair::start(&material, Transport::Link, backend).await;
    for file in ["mallory.link", "stranger.link"] {
        let client = link_client(&material, file, pair.server.addr).await;
        let outcome = tokio::time::timeout(DEADLINE, round_trip(client.addr, b"let me in"))
            .await
            .unwrap();
        match outcome {
            Err(err) => assert_eq!(
                err.kind(),
                std::io::ErrorKind::ConnectionReset,
                "{file}: {err}"
            ),
            Ok(back) => panic!("{file}: a refused token must reset the user, got {back:?}"),
        }
        client.until_failed("the refused tunnel counted", 1).await;
    }
    // A connection file pinning another server key: the server takes its
    // first message for a probe and answers nothing; the client gives up
    // after connect_timeout and resets its user.
    let text = std::fs::read_to_string(material.path("alice.link")).unwrap();
    let key_line = text.lines().find(|l| l.starts_with("server-key ")).unwrap();
    let other = format!("server-key {}", "ab".repeat(32));
    write_private(
        material.path("wrong-key.link"),
        text.replace(key_line, &other),
    );
    let client = link_client(&material, "wrong-key.link", pair.server.addr).await;
    let outcome = tokio::time::timeout(DEADLINE, round_trip(client.addr, b"let me in"))
        .await
        .unwrap();
    assert!(
        outcome.is_err(),
        "wrong server key got through: {outcome:?}"
    );
    // The server never let a refused link through to the service...
    assert_eq!(pair.server.stats.snapshot().accepted, 0);
    // ...and still serves alice.
    let back = round_trip(pair.client.addr, b"alice here").await.unwrap();
    assert_eq!(back, b"alice here");
    assert_eq!(pair.server.stats.snapshot().accepted, 1);
}

#[tokio::test]
async fn a_token_revoked_while_running_is_refused_once_the_store_is_reread() {
    let material = Material::new();
    let backend = echo_server().await;
    let pair = Pair::start(&material, Transport::Link, backend).await;
    let alice = link_client(&material, "alice.link", pair.server.addr).await;
    assert_eq!(round_trip(alice.addr, b"one").await.unwrap(), b"one");
    // What `cipherlink link revoke --name alice` does to the store.
    let path = material.path("link-tokens.txt");
    let mut store =
        cipherlink_link::TokenStore::parse(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(store.revoke("alice"), 1);
    write_private(&path, store.to_text().as_bytes());
    // The server re-reads the store within seconds; from then on alice is refused.
    let refused = tokio::time::timeout(DEADLINE, async {
        while round_trip(alice.addr, b"again").await.is_ok() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(refused.is_ok(), "alice still gets through after revocation");
}

#[tokio::test]
async fn link_files_that_are_missing_or_of_the_wrong_kind_are_named() {
    use cipherlink_proxy::{LinkConfig, Role, Service, ServiceConfig};
    let material = Material::new();
    let service = |role, link: LinkConfig| {
        let mut config = ServiceConfig::new(role, "127.0.0.1:0", "127.0.0.1:1", Transport::Link);
        config.link = Some(link);
        config
    };
    let cases = [
        (
            service(
                Role::Server,
                LinkConfig {
                    server_key: Some(material.path("alice.link")),
                    token_store: Some(material.path("link-tokens.txt")),
                    connection_file: None,
                },
            ),
            [
                "link.server_key",
                "is a connection file",
                "needs a server key file",
            ],
        ),
        (
            service(
                Role::Server,
                LinkConfig {
                    server_key: Some(material.path("link-server.key")),
                    token_store: Some(material.path("no-such-tokens.txt")),
                    connection_file: None,
                },
            ),
            ["link.token_store", "no-such-tokens.txt", "No such file"],
        ),
        (
            service(
                Role::Client,
                LinkConfig {
                    connection_file: Some(material.path("link-tokens.txt")),
                    ..LinkConfig::default()
                },
            ),
            [
                "link.connection_file",
                "is a token store",
                "needs a connection file",
            ],
        ),
        (
            service(
                Role::Client,
                LinkConfig {
                    connection_file: Some(material.path("server.pub")),
                    ..LinkConfig::default()
                },
            ),
            ["link.connection_file", "not a link file", "server.pub"],
        ),
        (
            service(Role::Client, LinkConfig::default()),
            ["link.connection_file", "is missing", "link invite"],
        ),
    ];
    for (config, wanted) in cases {
        let err = Service::bind("x", &config).await.unwrap_err().to_string();
        for part in wanted {
            assert!(err.contains(part), "{part:?} not in {err:?}");
        }
    }
    let mut no_section = ServiceConfig::new(Role::Server, "127.0.0.1:0", "x:1", Transport::Link);
    no_section.link = None;
    let err = Service::bind("x", &no_section)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("`link` is missing"), "{err}");
}

#[tokio::test]
async fn a_link_client_without_connect_uses_its_connection_files_server() {
    use cipherlink_proxy::{LinkConfig, Role, ServiceConfig};
    let material = Material::new();
    let backend = echo_server().await;
    let pair = Pair::start(&material, Transport::Link, backend).await;
    // A connection file naming the running server, as `link invite --server` writes.
    let text = std::fs::read_to_string(material.path("alice.link"))
        .unwrap()
        .replace(
            "server 127.0.0.1:1",
            &format!("server {}", pair.server.addr),
        );
    write_private(material.path("alice-here.link"), text);
    let mut config = ServiceConfig::new(Role::Client, "127.0.0.1:0", "", Transport::Link);
    config.link = Some(LinkConfig {
        connection_file: Some(material.path("alice-here.link")),
        ..LinkConfig::default()
    });
    let client = Running::start("from-file", config).await;
    assert_eq!(round_trip(client.addr, b"hi").await.unwrap(), b"hi");
}

/// A backend that sends without end to every connection, until it fails.
async fn endless_server() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let chunk = vec![0x42u8; 16 * 1024];
                while stream.write_all(&chunk).await.is_ok() {}
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunnel_still_moving_data_when_the_grace_ends_is_reset() {
    let material = Material::new();
    let backend = endless_server().await;
    for transport in TRANSPORTS.into_iter().chain([Transport::Link]) {
        let server = Running::start(
            "server",
            material.secure(cipherlink_proxy::ServiceConfig::new(
                cipherlink_proxy::Role::Server,
                "127.0.0.1:0",
                backend.to_string(),
                transport,
            )),
        )
        .await;
        let client = Running::start_with_grace(
            "client",
            material.secure(cipherlink_proxy::ServiceConfig::new(
                cipherlink_proxy::Role::Client,
                "127.0.0.1:0",
                server.addr.to_string(),
                transport,
            )),
            Duration::from_millis(100),
        )
        .await;
        let mut app = TcpStream::connect(client.addr).await.unwrap();
        let mut some = [0u8; 1000];
        app.read_exact(&mut some).await.unwrap();
        client.stop();
        // Reading on: the stream must end in an error, not a clean EOF that
        // would pass the truncated data off as complete.
        let mut sink = vec![0u8; 64 * 1024];
        let end = tokio::time::timeout(DEADLINE, async {
            loop {
                match app.read(&mut sink).await {
                    Ok(0) => return Ok(()),
                    Ok(_) => {}
                    Err(err) => return Err(err.kind()),
                }
            }
        })
        .await
        .expect("the tunnel was cut");
        assert_eq!(
            end,
            Err(std::io::ErrorKind::ConnectionReset),
            "{transport:?}"
        );
        // Counted (and logged) as a failed tunnel.
        client.until_failed("the cut tunnel counted", 1).await;
    }
}

/// A backend that sends some bytes to every connection, then resets it.
async fn resetting_server() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = stream.write_all(&[5u8; 1000]).await;
                let _ = stream.set_zero_linger();
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_service_that_resets_mid_stream_resets_the_user() {
    let material = Material::new();
    let backend = resetting_server().await;
    for transport in TRANSPORTS.into_iter().chain([Transport::Link]) {
        let pair = Pair::start(&material, transport, backend).await;
        let mut app = TcpStream::connect(pair.client.addr).await.unwrap();
        // Whatever arrived first, the stream must end in an error, not in
        // a clean EOF that passes the cut-off data off as complete.
        let mut sink = [0u8; 4096];
        let end = tokio::time::timeout(DEADLINE, async {
            loop {
                match app.read(&mut sink).await {
                    Ok(0) => return Ok(()),
                    Ok(_) => {}
                    Err(err) => return Err(err.kind()),
                }
            }
        })
        .await
        .expect("the tunnel ended");
        assert_eq!(
            end,
            Err(std::io::ErrorKind::ConnectionReset),
            "{transport:?}"
        );
        pair.server
            .until_failed("the reset tunnel counted", 1)
            .await;
    }
}
