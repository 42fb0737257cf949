//! A default server accepts the groups rustls and OpenSSL accept by
//! default, P-384 included (CNSA clients offer nothing else), while a default
//! client still offers the hybrid first.

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::sync::Arc;
use std::time::Duration;

use cipherlink::rustls::{self, ClientConfig, RootCertStore};
use cipherlink::{ClassicalChoice, Compliance, Context, KeyExchange, PostQuantumChoice};
use common::*;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A plain rustls client that offers only P-384, as a CNSA suite client does.
fn p384_only_client(ca_pem: &str) -> tokio_rustls::TlsConnector {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.kx_groups = vec![rustls::crypto::aws_lc_rs::kx_group::SECP384R1];
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let config = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

#[tokio::test]
async fn default_server_accepts_a_p384_only_client() {
    let b = bundle();
    let server = Context::server(&server_config(&b)).unwrap();
    let connector = p384_only_client(&b.ca.cert);
    let (a, c) = tokio::io::duplex(64 * 1024);
    let serve = async {
        let mut tunnel = server.accept(a, "cnsa-client").await?;
        let mut ping = [0u8; 4];
        tunnel.read_exact(&mut ping).await?;
        tunnel.write_all(b"PONG").await?;
        Ok::<_, cipherlink::Error>(tunnel)
    };
    let call = async {
        let name = ServerName::try_from("localhost").unwrap();
        let mut tls = connector.connect(name, c).await?;
        tls.write_all(b"PING").await?;
        let mut pong = [0u8; 4];
        tls.read_exact(&mut pong).await?;
        Ok::<_, std::io::Error>(tls)
    };
    let (s, c) = tokio::time::timeout(Duration::from_secs(10), async { tokio::join!(serve, call) })
        .await
        .expect("handshake did not finish in 10 s");
    let (s, c) = (s.unwrap(), c.unwrap());
    assert_eq!(s.info().unwrap().key_exchange, Some(KeyExchange::P384));
    let group = c.get_ref().1.negotiated_key_exchange_group().unwrap();
    assert_eq!(u16::from(group.name()), KeyExchange::P384.code_point());
}

#[test]
fn the_default_list_keeps_the_hybrid_first_and_ends_with_p384() {
    let list = KeyExchange::default_list();
    assert_eq!(list[0], KeyExchange::X25519MlKem768);
    assert!(list.contains(&KeyExchange::P384), "{list:?}");
    assert_eq!(
        Context::client(&client_config(&bundle()))
            .unwrap()
            .key_exchange()[0],
        KeyExchange::X25519MlKem768
    );
}

/// The policy trims the default list to what it permits (no P-384 left with
/// classical groups forbidden), and refuses a list that was chosen.
#[test]
fn the_compliance_policy_still_decides() {
    let b = bundle();
    let mut config = server_config(&b);
    config.compliance = Compliance {
        classical: ClassicalChoice::Forbid,
        post_quantum: PostQuantumChoice::Allow,
    };
    let trimmed = Context::server(&config).unwrap();
    assert_eq!(trimmed.key_exchange(), [KeyExchange::X25519MlKem768]);
    config.key_exchange = Some(KeyExchange::default_list());
    let err = Context::server(&config).unwrap_err().to_string();
    assert!(err.contains("forbidden"), "{err}");
}
