//! The original suite's certificates, made with its openssl commands (X.509
//! v1, CN=localhost, no subjectAltName), work with `accept_legacy_certificates`
//! (`--dangerous-accept-legacy-certs`) alone on both sides, as with the
//! core's flag, and are refused with a message naming it otherwise. Keys
//! are RSA-2048 here instead of the suite's 4096 only to keep the test quick.

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::time::Duration;

use cipherlink_rpc::client::connect::{Connector, Target};
use cipherlink_rpc::pb::score_service_client::ScoreServiceClient;
use cipherlink_rpc::pb::JsonVector;
use cipherlink_rpc::tls::{self, ClientTls, ServerTls};
use cipherlink_test_support::{openssl_v1_pki, peer, Peer};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_openssl_certificates_work_with_the_documented_option() -> TestResult {
    let Some(bin) = peer!(Peer::Openssl) else {
        return Ok(());
    };
    tokio::time::timeout(Duration::from_secs(60), async {
        let dir = tempfile::tempdir()?;
        let d = dir.path();
        openssl_v1_pki(
            &bin,
            d,
            "TestCA",
            &[("server", "localhost"), ("client", "smft-client")],
        )?;
        let server = |legacy| ServerTls {
            cert: d.join("server.crt"),
            key: d.join("server.key"),
            client_ca: Some(d.join("ca.crt")),
            accept_legacy_certificates: legacy,
            groups: tls::KeyExchange::default_list(),
        };
        let client = |legacy| ClientTls {
            ca: d.join("ca.crt"),
            identity: Some((d.join("client.crt"), d.join("client.key"))),
            accept_legacy_certificates: legacy,
            accept_cn_only_certificates: false,
            resumption: false,
            groups: tls::KeyExchange::default_list(),
        };
        // Without the option our own v1 certificate is refused up front, by name.
        let err = tls::server_config(&server(false))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("`accept_legacy_certificates`") && err.contains("v1"),
            "{err}"
        );

        let srv = start(Some(server(true)), Duration::ZERO, None).await?;
        let target = |legacy| -> Result<Target, Box<dyn std::error::Error>> {
            Ok(Target {
                host: "localhost".into(),
                port: srv.addr.port(),
                tls: Some(tls::client_config(&client(legacy))?),
                server_name: None,
                connect_timeout: Duration::from_secs(5),
            })
        };
        // A client without the option cannot even load its own v1 certificate.
        assert!(tls::client_config(&client(false)).is_err());
        let c = Connector::resolve(&target(true)?).await?;
        let mut rpc = ScoreServiceClient::new(c.channel().await?);
        let mut req = tonic::Request::new(JsonVector { json: "{}".into() });
        req.set_timeout(Duration::from_secs(5));
        rpc.get_score(req).await?;
        srv.shutdown().await;
        Ok(())
    })
    .await?
}
