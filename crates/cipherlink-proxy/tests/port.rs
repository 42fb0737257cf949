//! The port transport (SeasideVPN's PORT wire) as the proxy runs it:
//! refused tokens and keys, revocation of open tunnels, a server that is
//! gone, the compliance policy it cannot meet, and its files. The echo,
//! many tunnels, half-close, a service that is down and the shutdown cut
//! are relay.rs's tests, run for every transport.

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::io::ErrorKind;
use std::time::Duration;

use cipherlink_proxy::{PortConfig, Role, Service, ServiceConfig, Transport};
use cipherlink_test_support::echo_server;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A port proxy client with connection file `file`, against `server`,
/// giving up on a session after one second.
async fn port_client(material: &Material, file: &str, server: std::net::SocketAddr) -> Running {
    let mut config = ServiceConfig::new(
        Role::Client,
        "127.0.0.1:0",
        server.to_string(),
        Transport::Port,
    );
    config.port = Some(PortConfig {
        connection_file: Some(material.path(file)),
        ..PortConfig::default()
    });
    config.connect_timeout = Duration::from_secs(1);
    Running::start(file, config).await
}

/// The user's round trip must end in a reset, not in a clean (empty) end.
async fn assert_reset(addr: std::net::SocketAddr, what: &str) {
    let outcome = tokio::time::timeout(DEADLINE, round_trip(addr, b"let me in"))
        .await
        .unwrap();
    match outcome {
        Err(err) => assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{what}: {err}"),
        Ok(back) => panic!("{what}: the user must be reset, got {back:?}"),
    }
}

#[tokio::test]
async fn refused_tokens_and_a_wrong_key_reset_the_user_and_the_server_goes_on() {
    let material = Material::new();
    let backend = echo_server().await;
    let pair = Pair::start(&material, Transport::Port, backend).await;
    for file in ["mallory.port", "stranger.port"] {
        let client = port_client(&material, file, pair.server.addr).await;
        assert_reset(client.addr, file).await;
        client.until_failed("the refused tunnel counted", 1).await;
    }
    // Another server key: the INIT does not open, the server stays silent.
    let text = std::fs::read_to_string(material.path("alice.port")).unwrap();
    let key_line = text.lines().find(|l| l.starts_with("server-key ")).unwrap();
    let other = format!("server-key {}", "ab".repeat(40));
    write_private(
        material.path("wrong-key.port"),
        text.replace(key_line, &other),
    );
    let client = port_client(&material, "wrong-key.port", pair.server.addr).await;
    assert_reset(client.addr, "wrong server key").await;
    // Nothing refused reached the service, and alice is still served.
    assert_eq!(pair.server.stats.snapshot().accepted, 0);
    let back = round_trip(pair.client.addr, b"alice here").await.unwrap();
    assert_eq!(back, b"alice here");
    assert_eq!(pair.server.stats.snapshot().accepted, 1);
}

#[tokio::test]
async fn a_revoked_token_ends_its_open_tunnel_and_is_refused_after() {
    let material = Material::new();
    let backend = echo_server().await;
    let pair = Pair::start(&material, Transport::Port, backend).await;
    let mut open = TcpStream::connect(pair.client.addr).await.unwrap();
    open.write_all(b"one").await.unwrap();
    let mut one = [0u8; 3];
    open.read_exact(&mut one).await.unwrap();
    // What `cipherlink link revoke --tokens port-tokens.txt --name alice` does.
    let path = material.path("port-tokens.txt");
    let mut store =
        cipherlink_link::TokenStore::parse(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(store.revoke("alice"), 1);
    write_private(&path, store.to_text().as_bytes());
    // The server re-reads the store within seconds and resets the tunnel.
    let mut rest = Vec::new();
    let end = tokio::time::timeout(DEADLINE, open.read_to_end(&mut rest))
        .await
        .expect("the revoked tunnel was ended");
    assert_eq!(end.map_err(|e| e.kind()), Err(ErrorKind::ConnectionReset));
    pair.server
        .until_failed("the revoked tunnel counted", 1)
        .await;
    let client = port_client(&material, "alice.port", pair.server.addr).await;
    assert_reset(client.addr, "revoked alice").await;
}

#[tokio::test]
async fn a_server_that_is_gone_resets_the_user_and_the_client_goes_on() {
    let material = Material::new();
    let backend = echo_server().await;
    let Pair { server, client } = Pair::start(&material, Transport::Port, backend).await;
    assert_eq!(round_trip(client.addr, b"up").await.unwrap(), b"up");
    let addr = server.addr;
    drop(server);
    assert_reset(client.addr, "server gone").await;
    client
        .until_failed("the tunnel to nowhere counted", 1)
        .await;
    // A server back on that address: the same client carries again.
    let Ok(service) = Service::bind(
        "again",
        &material.secure(ServiceConfig::new(
            Role::Server,
            addr.to_string(),
            backend.to_string(),
            Transport::Port,
        )),
    )
    .await
    else {
        return; // the port was taken meanwhile; the reset above is the point
    };
    let (_stop, rx) = tokio::sync::watch::channel(false);
    let _again = tokio::spawn(service.run(rx, Duration::from_secs(1)));
    assert_eq!(round_trip(client.addr, b"back").await.unwrap(), b"back");
}

#[tokio::test]
async fn a_port_client_without_connect_uses_its_connection_files_server() {
    let material = Material::new();
    let backend = echo_server().await;
    let pair = Pair::start(&material, Transport::Port, backend).await;
    // A connection file naming the running server, as `link invite --wire
    // port --server` writes.
    let text = std::fs::read_to_string(material.path("alice.port"))
        .unwrap()
        .replace(
            "server 127.0.0.1:1",
            &format!("server {}", pair.server.addr),
        );
    write_private(material.path("alice-here.port"), text);
    let mut config = ServiceConfig::new(Role::Client, "127.0.0.1:0", "", Transport::Port);
    config.port = Some(PortConfig {
        connection_file: Some(material.path("alice-here.port")),
        ..PortConfig::default()
    });
    let client = Running::start("from-file", config).await;
    assert_eq!(round_trip(client.addr, b"hi").await.unwrap(), b"hi");
}

async fn refused(config: &ServiceConfig) -> String {
    Service::bind("svc", config).await.unwrap_err().to_string()
}

fn assert_names(err: &str, parts: &[&str]) {
    for part in parts {
        assert!(err.contains(part), "{part:?} not in {err:?}");
    }
}

#[tokio::test]
async fn a_policy_requiring_post_quantum_or_forbidding_classical_refuses_port() {
    use cipherlink::{ClassicalChoice, PostQuantumChoice};
    let material = Material::new();
    for role in [Role::Server, Role::Client] {
        let port = material.secure(ServiceConfig::new(
            role,
            "127.0.0.1:0",
            "127.0.0.1:9",
            Transport::Port,
        ));
        let mut tls = cipherlink::Config::default();
        tls.compliance.post_quantum = PostQuantumChoice::RequireHybrid;
        let mut config = port.clone();
        config.tls = Some(tls.clone());
        assert_names(
            &refused(&config).await,
            &[
                "tls.compliance.post_quantum",
                "transport port cannot meet it",
                "no forward secrecy",
            ],
        );
        tls.compliance.post_quantum = PostQuantumChoice::Allow;
        tls.compliance.classical = ClassicalChoice::Forbid;
        config.tls = Some(tls);
        assert_names(
            &refused(&config).await,
            &["tls.compliance.classical", "transport port cannot meet it"],
        );
        assert!(Service::bind("svc", &port).await.is_ok());
    }
}

#[tokio::test]
async fn port_files_that_are_missing_or_of_the_wrong_kind_are_named() {
    let material = Material::new();
    let service = |role, port: Option<PortConfig>| {
        let mut config = ServiceConfig::new(role, "127.0.0.1:0", "127.0.0.1:1", Transport::Port);
        config.port = port;
        config
    };
    let server = |key: &str, tokens: &str| {
        Some(PortConfig {
            server_key: Some(material.path(key)),
            token_store: Some(material.path(tokens)),
            connection_file: None,
        })
    };
    let client = |file: &str| {
        Some(PortConfig {
            connection_file: Some(material.path(file)),
            ..PortConfig::default()
        })
    };
    let cases = [
        (
            service(Role::Server, server("link-server.key", "port-tokens.txt")),
            vec!["port.server_key", "link-server.key", "SEASIDE_PRIVATE_KEY"],
        ),
        (
            service(Role::Server, server("port-server.key", "no-such.txt")),
            vec!["port.token_store", "no-such.txt"],
        ),
        (
            service(Role::Server, server("port-server.key", "alice.port")),
            vec!["port.token_store", "alice.port"],
        ),
        (
            service(Role::Client, client("alice.link")),
            vec!["port.connection_file", "alice.link", "cipherlink-port 1"],
        ),
        (
            service(Role::Client, Some(PortConfig::default())),
            vec!["port.connection_file", "is missing", "invite --wire port"],
        ),
        (
            service(Role::Client, server("port-server.key", "port-tokens.txt")),
            vec!["port.server_key", "is for a server"],
        ),
        (
            service(Role::Server, None),
            vec!["`port` is missing", "link keygen --wire port"],
        ),
    ];
    for (config, wanted) in cases {
        assert_names(&refused(&config).await, &wanted);
    }
    // A secret others may read is refused, as every key file is.
    use std::os::unix::fs::PermissionsExt;
    let key = material.path("port-server.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_names(
        &refused(&service(
            Role::Server,
            server("port-server.key", "port-tokens.txt"),
        ))
        .await,
        &["port.server_key", "readable by others"],
    );
    // Another transport's section is refused on port, port's on another.
    let mut mixed = material.secure(ServiceConfig::new(
        Role::Server,
        "127.0.0.1:0",
        "127.0.0.1:1",
        Transport::Link,
    ));
    mixed.port = Some(PortConfig::default());
    assert_names(&refused(&mixed).await, &["`port` is set", "\"link\""]);
    let mut muxed = service(Role::Client, client("alice.port"));
    muxed.mux = true;
    assert_names(&refused(&muxed).await, &["mux", "\"port\""]);
}
