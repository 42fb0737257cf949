//! Fixtures shared by the core's integration tests.
#![allow(dead_code)]

use std::time::Duration;

use cipherlink::certs::{self, CertBundle, CertOptions};
use cipherlink::{Config, Context, Error, KeyExchange, PemSource, Tunnel};
use tokio::io::DuplexStream;

pub fn bundle() -> CertBundle {
    certs::generate(&CertOptions::default()).expect("generate certificates")
}

pub fn inline(pem: &str) -> PemSource {
    PemSource::inline(pem.to_string())
}

pub fn server_config(b: &CertBundle) -> Config {
    Config {
        certificate: Some(inline(&b.server.cert)),
        private_key: Some(inline(&b.server.key)),
        ..Config::default()
    }
}

pub fn mtls_server_config(b: &CertBundle) -> Config {
    Config {
        trusted_cas: vec![inline(&b.ca.cert)],
        require_client_cert: true,
        ..server_config(b)
    }
}

pub fn client_config(b: &CertBundle) -> Config {
    Config {
        trusted_cas: vec![inline(&b.ca.cert)],
        ..Config::default()
    }
}

pub fn mtls_client_config(b: &CertBundle) -> Config {
    Config {
        certificate: Some(inline(&b.client.cert)),
        private_key: Some(inline(&b.client.key)),
        ..client_config(b)
    }
}

pub fn groups(list: &[KeyExchange]) -> Vec<KeyExchange> {
    list.to_vec()
}

/// Both sides over an in-memory pipe, then one PING/PONG exchange so TLS 1.3
/// post-handshake failures (client certificate checks) surface too.
pub async fn pair(
    server: &Context,
    client: &Context,
) -> (
    Result<Tunnel<DuplexStream>, Error>,
    Result<Tunnel<DuplexStream>, Error>,
) {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let serve = async {
        let mut tunnel = server.accept(a, "test-client").await?;
        let mut ping = [0u8; 4];
        tunnel.read_exact(&mut ping).await?;
        tunnel.write_all(b"PONG").await?;
        Ok(tunnel)
    };
    let call = async {
        let mut tunnel = client.connect(b, "localhost").await?;
        tunnel.write_all(b"PING").await?;
        let mut pong = [0u8; 4];
        tunnel.read_exact(&mut pong).await?;
        assert_eq!(&pong, b"PONG");
        Ok(tunnel)
    };
    let both = async { tokio::join!(serve, call) };
    tokio::time::timeout(Duration::from_secs(10), both)
        .await
        .expect("handshake pair did not finish in 10 s")
}
