//! X.509 v1 certificates, as the gRPC latency suite's openssl commands make
//! them: refused by default with the option named, accepted with
//! `dangerous.accept_legacy_certificates`, and still checked (CA signature,
//! name).

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::path::Path;

use cipherlink::{Config, Context, Dangerous, PemSource};
use cipherlink_test_support::{find, openssl_v1_pki, Peer};
use common::{pair, Pair};

fn pem(dir: &Path, file: &str) -> PemSource {
    PemSource::path(dir.join(file))
}

fn server(dir: &Path, legacy: bool, mutual: bool) -> Config {
    {
        let mut edited = Config::default();
        edited.certificate = Some(pem(dir, "server.crt"));
        edited.private_key = Some(pem(dir, "server.key"));
        edited.trusted_cas = if mutual {
            vec![pem(dir, "ca.crt")]
        } else {
            Vec::new()
        };
        edited.require_client_cert = mutual;
        edited.dangerous = {
            let mut dangerous = Dangerous::default();
            dangerous.accept_legacy_certificates = legacy;
            dangerous
        };
        edited
    }
}

fn client(dir: &Path, ca_dir: &Path, legacy: bool) -> Config {
    {
        let mut edited = Config::default();
        edited.certificate = Some(pem(dir, "client.crt"));
        edited.private_key = Some(pem(dir, "client.key"));
        edited.trusted_cas = vec![pem(ca_dir, "ca.crt")];
        edited.dangerous = {
            let mut dangerous = Dangerous::default();
            dangerous.accept_legacy_certificates = legacy;
            dangerous
        };
        edited
    }
}

/// The gRPC suite's v1 PKI, made by `openssl`: a CA, `server` (CN
/// localhost) and `client` (CN smft-client).
fn v1_pki(openssl: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    openssl_v1_pki(
        openssl,
        dir.path(),
        "TestCA",
        &[("server", "localhost"), ("client", "smft-client")],
    )
    .unwrap();
    dir
}

/// The client's error from a handshake with `server`.
async fn client_error(server: &Config, client: &Config) -> String {
    let server = Context::server(server).unwrap();
    let client = Context::client(client).unwrap();
    let (_, c) = pair(&server, &client).await;
    c.err().map(|e| e.to_string()).unwrap_or_default()
}

#[tokio::test]
async fn v1_certificates_need_the_option_and_are_still_checked() {
    let Some(openssl) = find(
        Peer::Openssl,
        "v1_certificates_need_the_option_and_are_still_checked",
    ) else {
        return;
    };
    let dir = v1_pki(&openssl);
    let d = dir.path();
    // Another CA of the same name, and a server certificate it signed.
    let other = tempfile::tempdir().unwrap();
    let o = other.path();
    openssl_v1_pki(
        &openssl,
        o,
        "TestCA",
        &[("server", "localhost"), ("client", "x")],
    )
    .unwrap();

    // Off: our own v1 certificate is refused, naming the option.
    let err = Context::server(&server(d, false, true))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("accept_legacy_certificates") && err.contains("v1"),
        "{err}"
    );
    // Off: a peer's v1 certificate is refused, naming the option.
    let mut plain_client = client(d, d, false);
    (plain_client.certificate, plain_client.private_key) = (None, None);
    let err = client_error(&server(d, true, false), &plain_client).await;
    assert!(err.contains("accept_legacy_certificates"), "{err}");

    // On: mutual TLS works, both certificates v1.
    let s = Context::server(&server(d, true, true)).unwrap();
    let c = Context::client(&client(d, d, true)).unwrap();
    let (s, c) = pair(&s, &c).await;
    let (s, c) = (s.unwrap(), c.unwrap());
    let peer = s.info().and_then(|i| i.peer_identity).map(|p| p.subject);
    assert_eq!(
        peer.as_deref(),
        Some("C=US, ST=CA, O=TestLab, CN=smft-client")
    );
    drop((s, c));

    // On, but the name is wrong.
    let mut wrong_name = client(d, d, true);
    wrong_name.server_name = Some("other.example".into());
    let err = client_error(&server(d, true, true), &wrong_name).await;
    assert!(err.contains("does not name other.example"), "{err}");

    // On, but the server's certificate comes from the other CA of the same name.
    let err = client_error(&server(o, true, false), &client(d, d, true)).await;
    assert!(err.contains("not signed directly by a trusted CA"), "{err}");

    // On, but the trusted CA signed the server's certificate with SHA-1.
    let weak = tempfile::tempdir().unwrap();
    let w = weak.path();
    for file in ["ca.crt", "ca.key"] {
        std::fs::copy(d.join(file), w.join(file)).unwrap();
    }
    for args in [
        "genrsa -out server.key 2048",
        "req -new -key server.key -subj /CN=localhost -out server.csr",
        "x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 30 -sha1",
    ] {
        let out = std::process::Command::new(&openssl)
            .args(args.split(' '))
            .current_dir(w)
            .output()
            .unwrap();
        assert!(out.status.success(), "openssl {args}: {out:?}");
    }
    let err = client_error(&server(w, true, false), &client(d, d, true)).await;
    assert!(err.contains("which is not accepted"), "{err}");
}

every_pair! {
    /// `dangerous.accept_legacy_certificates` means the same on OpenSSL
    /// (which accepts v1 certificates silently on its own): off, our v1
    /// certificate and the peer's are refused naming the option; on, mutual
    /// TLS with two v1 certificates works.
    async fn the_v1_option_means_the_same_on_either_implementation(p: Pair) {
        let Some(openssl) = cipherlink_test_support::peer!(Peer::Openssl) else {
            return;
        };
        let dir = v1_pki(&openssl);
        let d = dir.path();
        let err = Context::server(&p.server(server(d, false, true)))
            .unwrap_err()
            .to_string();
        assert!(err.contains("accept_legacy_certificates"), "{err}");
        let mut plain_client = p.client(client(d, d, false));
        (plain_client.certificate, plain_client.private_key) = (None, None);
        let err = client_error(&p.server(server(d, true, false)), &plain_client).await;
        assert!(err.contains("accept_legacy_certificates"), "{err}");

        let s = Context::server(&p.server(server(d, true, true))).unwrap();
        let c = Context::client(&p.client(client(d, d, true))).unwrap();
        let (s, c) = pair(&s, &c).await;
        let (s, c) = (s.unwrap(), c.unwrap());
        let peer = s.info().and_then(|i| i.peer_identity).and_then(|p| p.common_name);
        assert_eq!(peer.as_deref(), Some("smft-client"));
        drop(c);
    }
}
