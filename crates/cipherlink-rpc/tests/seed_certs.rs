//! The seed's own certificates, made with its openssl commands (X.509 v1,
//! CN=localhost, no subjectAltName), work with `--legacy-cn-certs` on both
//! sides and are refused with a message naming it otherwise. Keys are
//! RSA-2048 here instead of the seed's 4096 only to keep the test quick.

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use cipherlink_rpc::client::connect::{Connector, Target};
use cipherlink_rpc::pb::score_service_client::ScoreServiceClient;
use cipherlink_rpc::pb::JsonVector;
use cipherlink_rpc::tls::{self, ClientTls, ServerTls};
use cipherlink_test_support::{find, Peer};
use common::*;

fn openssl(bin: &Path, dir: &Path, args: &[&str]) -> Result<(), Box<dyn std::error::Error>> {
    let out = Command::new(bin).args(args).current_dir(dir).output()?;
    if !out.status.success() {
        return Err(format!("openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(())
}

fn seed_pki(bin: &Path, dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let run = |a: &str| openssl(bin, dir, &a.split(' ').collect::<Vec<_>>());
    run("genrsa -out ca.key 2048")?;
    openssl(
        bin,
        dir,
        &[
            "req",
            "-new",
            "-x509",
            "-key",
            "ca.key",
            "-sha256",
            "-subj",
            "/C=US/ST=CA/O=TestLab/CN=TestCA",
            "-days",
            "365",
            "-out",
            "ca.crt",
        ],
    )?;
    for (name, cn) in [("server", "localhost"), ("client", "smft-client")] {
        run(&format!("genrsa -out {name}.key 2048"))?;
        openssl(
            bin,
            dir,
            &[
                "req",
                "-new",
                "-key",
                &format!("{name}.key"),
                "-subj",
                &format!("/C=US/ST=CA/O=TestLab/CN={cn}"),
                "-out",
                &format!("{name}.csr"),
            ],
        )?;
        run(&format!(
            "x509 -req -in {name}.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out {name}.crt -days 365 -sha256"
        ))?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_openssl_certificates_work_with_the_documented_option() -> TestResult {
    let Some(bin) = find(
        Peer::Openssl,
        "seed_openssl_certificates_work_with_the_documented_option",
    ) else {
        return Ok(());
    };
    tokio::time::timeout(Duration::from_secs(60), async {
        let dir = tempfile::tempdir()?;
        let d = dir.path();
        seed_pki(&bin, d)?;
        let server = |legacy| ServerTls {
            cert: d.join("server.crt"),
            key: d.join("server.key"),
            client_ca: Some(d.join("ca.crt")),
            accept_legacy: legacy,
            groups: tls::KeyExchange::default_list(),
        };
        let client = |legacy| ClientTls {
            ca: d.join("ca.crt"),
            identity: Some((d.join("client.crt"), d.join("client.key"))),
            accept_legacy: legacy,
            resumption: false,
            groups: tls::KeyExchange::default_list(),
        };
        // Without the option our own v1 certificate is refused up front, by name.
        let err = tls::server_config(&server(false))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("--legacy-cn-certs") && err.contains("v1"),
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
