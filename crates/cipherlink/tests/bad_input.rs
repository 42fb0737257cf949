//! Every way a peer or a user can get it wrong gives a clear error on the
//! side that detects it, the server keeps serving, and nothing leaks.

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use cipherlink::certs::{self, CertOptions};
use cipherlink::server::{ServerStats, TlsServer};
use cipherlink::{
    ClassicalChoice, Compliance, Config, Context, Dangerous, Error, KeyExchange, PostQuantumChoice,
};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Running {
    addr: SocketAddr,
    stats: Arc<ServerStats>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start(config: &Config) -> Running {
    let server = TlsServer::bind(
        "127.0.0.1:0".parse().unwrap(),
        Context::server(config).unwrap(),
    )
    .await
    .unwrap();
    let addr = server.local_addr().unwrap();
    let stats = server.stats();
    let task = server.spawn(|mut tunnel| async move {
        let mut buf = [0u8; 4];
        tunnel.read_exact(&mut buf).await?;
        tunnel.write_all(b"PONG").await?;
        tunnel.close().await
    });
    Running { addr, stats, task }
}

async fn ping(addr: SocketAddr, client: &Context) -> Result<(), Error> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut tunnel = client.connect(tcp, addr.to_string()).await?;
    tunnel.write_all(b"PING").await?;
    let mut pong = [0u8; 4];
    tunnel.read_exact(&mut pong).await?;
    assert_eq!(&pong, b"PONG");
    tunnel.close().await
}

/// Waits (bounded) until the server holds no connection.
async fn drained(stats: &ServerStats) {
    for _ in 0..200 {
        if stats.active() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{} connection(s) still open on the server", stats.active());
}

/// A certificate presented with a key that is not its own: a Context refuses
/// to build with it, so impostors in these tests are plain rustls.
fn with_someone_elses_key(
    cert_pem: &str,
    key_pem: &str,
) -> Arc<cipherlink::rustls::sign::SingleCertAndKey> {
    let chain =
        cipherlink::credentials::load_certificates("certificate", &inline(cert_pem)).unwrap();
    let key = cipherlink::credentials::load_private_key("private_key", &inline(key_pem)).unwrap();
    let signer = cipherlink::rustls::crypto::aws_lc_rs::default_provider()
        .key_provider
        .load_private_key(key)
        .unwrap();
    Arc::new(cipherlink::rustls::sign::SingleCertAndKey::from(
        cipherlink::rustls::sign::CertifiedKey::new(chain, signer),
    ))
}

/// The handshake signature did not verify: the peer does not hold the key.
fn assert_bad_signature(err: &Error) {
    assert!(
        matches!(
            err.tls_error(),
            Some(cipherlink::rustls::Error::InvalidCertificate(
                cipherlink::rustls::CertificateError::BadSignature
            ))
        ),
        "{err:?}"
    );
}

every_pair! {
    async fn garbage_instead_of_client_hello_is_refused_and_server_keeps_serving(p: Pair) {
        let b = bundle();
        let server = start(&p.server_config(&b)).await;
        let mut raw = TcpStream::connect(server.addr).await.unwrap();
        raw.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut reply = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), raw.read_to_end(&mut reply)).await;
        assert!(read.is_ok(), "server did not close a garbage connection");
        // A TLS alert record (content type 21) or a bare close.
        assert!(
            reply.is_empty() || reply[0] == 21,
            "unexpected reply {reply:?}"
        );
        drained(&server.stats).await;
        assert_eq!(server.stats.handshake_failures(), 1);
        ping(server.addr, &Context::client(&p.client_config(&b)).unwrap())
            .await
            .unwrap();
        drained(&server.stats).await;
        assert_eq!(server.stats.completed(), 1);
    }
}

every_pair! {
    async fn silent_client_is_dropped_after_the_handshake_timeout(p: Pair) {
        let b = bundle();
        let mut config = p.server_config(&b);
        config.handshake_timeout_ms = 300;
        let server = start(&config).await;
        let mut silent = TcpStream::connect(server.addr).await.unwrap();
        // Meanwhile, others are served.
        ping(server.addr, &Context::client(&p.client_config(&b)).unwrap())
            .await
            .unwrap();
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf))
            .await
            .expect("silent client was never dropped");
        assert_eq!(n.unwrap_or(0), 0);
        drained(&server.stats).await;
        assert_eq!(server.stats.handshake_failures(), 1);
    }
}

every_pair! {
    async fn handshake_timeout_error_names_the_peer(p: Pair) {
        let b = bundle();
        let mut config = p.server_config(&b);
        config.handshake_timeout_ms = 100;
        let server = Context::server(&config).unwrap();
        let (a, _keep_open) = tokio::io::duplex(1024);
        let err = server.accept(a, "10.9.8.7:1234").await.unwrap_err();
        assert!(matches!(err, Error::HandshakeTimeout { .. }));
        assert!(err.to_string().contains("10.9.8.7:1234"), "{err}");
    }
}

every_pair! {
    async fn wrong_ca_is_reported_by_the_client_and_counted_by_the_server(p: Pair) {
        let b = bundle();
        let other = certs::generate(&CertOptions {
            ca_name: "another CA".into(),
            ..CertOptions::default()
        })
        .unwrap();
        let server = start(&p.server_config(&b)).await;
        let client = Context::client(&p.client_config(&other)).unwrap();
        let err = ping(server.addr, &client).await.unwrap_err();
        assert!(
            matches!(
                err.tls_error(),
                Some(cipherlink::rustls::Error::InvalidCertificate(
                    cipherlink::rustls::CertificateError::UnknownIssuer
                ))
            ),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(
            text.contains("trusted CA") && text.contains(&server.addr.to_string()),
            "{text}"
        );
        drained(&server.stats).await;
        assert_eq!(server.stats.handshake_failures(), 1);

        // A different CA that happens to have the same name: the signature fails.
        let same_name = Context::client(&p.client_config(&bundle())).unwrap();
        let text = ping(server.addr, &same_name).await.unwrap_err().to_string();
        assert!(text.contains("same name"), "{text}");
    }
}

fn expired_bundle() -> certs::CertBundle {
    certs::generate(&CertOptions {
        not_before: Some(time::OffsetDateTime::now_utc() - time::Duration::days(30)),
        days: 2,
        ..CertOptions::default()
    })
    .unwrap()
}

every_pair! {
    async fn expired_own_certificate_is_refused_when_the_context_is_built(p: Pair) {
        let b = expired_bundle();
        let err = Context::server(&p.server_config(&b)).unwrap_err().to_string();
        assert!(
            err.contains("`certificate`") && err.contains("expired on"),
            "{err}"
        );
    }
}

every_pair! {
    async fn expired_server_certificate_is_reported_with_dates_by_the_client(p: Pair) {
        // A server that does not check its own certificate (plain rustls), so the
        // client is the one to notice.
        let b = expired_bundle();
        let certs = cipherlink::credentials::load_certificates("certificate", &inline(&b.server.cert)).unwrap();
        let key = cipherlink::credentials::load_private_key("private_key", &inline(&b.server.key)).unwrap();
        let tls = cipherlink::rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        let (a, c) = tokio::io::duplex(64 * 1024);
        let server = tokio::spawn(async move {
            let _ = tokio_rustls::TlsAcceptor::from(Arc::new(tls))
                .accept(a)
                .await;
        });
        let client = Context::client(&p.client_config(&b)).unwrap();
        let err = client
            .connect(c, "localhost")
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("expired") && err.contains("not valid after"),
            "{err}"
        );
        assert!(
            err.contains(" UTC"),
            "dates should be calendar dates: {err}"
        );
        server.await.unwrap();
    }
}

every_pair! {
    async fn server_name_mismatch_lists_the_names_the_certificate_has(p: Pair) {
        let b = bundle();
        let server = Context::server(&p.server_config(&b)).unwrap();
        let mut config = p.client_config(&b);
        config.server_name = Some("wrong.example".into());
        let client = Context::client(&config).unwrap();
        let (_, c) = pair(&server, &client).await;
        let err = c.unwrap_err().to_string();
        assert!(
            err.contains("wrong.example") && err.contains("localhost"),
            "{err}"
        );
    }
}

every_pair! {
    async fn missing_client_certificate_when_required(p: Pair) {
        let b = bundle();
        let server = Context::server(&p.mtls_server_config(&b)).unwrap();
        let client = Context::client(&p.client_config(&b)).unwrap();
        let (s, c) = pair(&server, &client).await;
        let server_err = s.unwrap_err();
        assert!(
            matches!(
                server_err.tls_error(),
                Some(cipherlink::rustls::Error::NoCertificatesPresented)
            ),
            "{server_err:?}"
        );
        let client_err = c.unwrap_err().to_string();
        assert!(
            client_err.contains("requires a client certificate"),
            "{client_err}"
        );
    }
}

every_pair! {
    async fn client_identity_not_on_the_allow_list_is_refused_by_name(p: Pair) {
        let b = bundle();
        let mut config = p.mtls_server_config(&b);
        config.allowed_identities = vec!["alice".into(), "bob".into()];
        let server = Context::server(&config).unwrap();
        let client = Context::client(&p.mtls_client_config(&b)).unwrap();
        let (s, c) = pair(&server, &client).await;
        let err = s.unwrap_err().to_string();
        assert!(
            err.contains("client") && err.contains("alice, bob"),
            "{err}"
        );
        assert!(c.is_err());
    }
}

every_pair! {
    async fn no_common_group_fails_on_both_sides(p: Pair) {
        let b = bundle();
        let mut server_cfg = p.server_config(&b);
        server_cfg.key_exchange = Some(vec![KeyExchange::MlKem768]);
        let mut client_cfg = p.client_config(&b);
        client_cfg.key_exchange = Some(vec![KeyExchange::X25519]);
        let server = Context::server(&server_cfg).unwrap();
        let client = Context::client(&client_cfg).unwrap();
        let (s, c) = pair(&server, &client).await;
        let server_err = s.unwrap_err().to_string();
        let client_err = c.unwrap_err().to_string();
        assert!(server_err.contains("key-exchange groups"), "{server_err}");
        assert!(client_err.contains("nothing in common"), "{client_err}");
    }
}

every_pair! {
    async fn compliance_violation_names_the_group(p: Pair) {
        let b = bundle();
        let mut config = p.client_config(&b);
        config.compliance = Compliance {
            classical: ClassicalChoice::Forbid,
            post_quantum: PostQuantumChoice::Allow,
        };
        // The defaults are trimmed to the policy; a chosen list is not.
        let trimmed = Context::client(&config).unwrap();
        assert!(!trimmed.key_exchange().contains(&KeyExchange::X25519));
        config.key_exchange = Some(vec![KeyExchange::X25519MlKem768, KeyExchange::X25519]);
        let err = Context::client(&config).unwrap_err();
        assert!(
            matches!(&err, Error::Policy(v) if v.group == KeyExchange::X25519),
            "{err}"
        );
        config.key_exchange = Some(vec![KeyExchange::X25519MlKem768, KeyExchange::MlKem768]);
        Context::client(&config).unwrap();
        config.compliance.post_quantum = PostQuantumChoice::RequirePure;
        let err = Context::client(&config).unwrap_err().to_string();
        assert!(
            err.contains("X25519MLKEM768") && err.contains("require_pure"),
            "{err}"
        );
    }
}

every_pair! {
    async fn configuration_mistakes_name_field_and_fix(p: Pair) {
        let b = bundle();
        let other = bundle();
        let cases: Vec<(Config, &str, &str)> = vec![
            (p.server(Config::default()), "certificate", "cipherlink certs"),
            (
                {
 let mut edited = p.server_config(&b);
 edited.private_key = Some(inline(&other.server.key));
 edited
},
                "private_key",
                "does not match",
            ),
            (
                {
 let mut edited = p.server_config(&b);
 edited.certificate = Some(cipherlink::PemSource::path("/nonexistent/server.crt"));
 edited
},
                "certificate",
                "/nonexistent/server.crt",
            ),
            (
                {
 let mut edited = p.server_config(&b);
 edited.certificate = Some(inline(&b.server.key));
 edited
},
                "certificate",
                "no `-----BEGIN CERTIFICATE-----`",
            ),
            (
                {
 let mut edited = p.server_config(&b);
 edited.require_client_cert = true;
 edited
},
                "require_client_cert",
                "trusted_cas",
            ),
            (
                {
 let mut edited = p.server_config(&b);
 edited.server_name = Some("x".into());
 edited
},
                "server_name",
                "client option",
            ),
            (
                {
 let mut edited = p.server_config(&b);
 edited.key_exchange = Some(vec![]);
 edited
},
                "key_exchange",
                "at least one",
            ),
            (
                {
 let mut edited = p.server_config(&b);
 edited.key_exchange = Some(vec![KeyExchange::X25519, KeyExchange::X25519]);
 edited
},
                "key_exchange",
                "twice",
            ),
        ];
        for (config, field, hint) in cases {
            let err = Context::server(&config).unwrap_err().to_string();
            assert!(
                err.contains(field) && err.contains(hint),
                "{field}/{hint}: {err}"
            );
        }
        let err = Context::client(&p.client(Config::default())).unwrap_err().to_string();
        assert!(
            err.contains("trusted_cas") && err.contains("system"),
            "{err}"
        );
    }
}

every_pair! {
    async fn cn_only_legacy_certificate_needs_the_documented_option(p: Pair) {
        // The gRPC suite's certificates: CN=localhost and no subjectAltName.
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::default();
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "TestCA");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, &ca_key);
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let mut leaf = rcgen::CertificateParams::default();
        leaf.distinguished_name
            .push(rcgen::DnType::CommonName, "localhost");
        let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();

        let server = Context::server(&p.server({
 let mut edited = Config::default();
 edited.certificate = Some(inline(&leaf_cert.pem()));
 edited.private_key = Some(inline(&leaf_key.serialize_pem()));
 edited
}))
        .unwrap();
        let mut config = p.client({
 let mut edited = Config::default();
 edited.trusted_cas = vec![inline(&ca_cert.pem())];
 edited
});
        let strict = Context::client(&config).unwrap();
        let (_, c) = pair(&server, &strict).await;
        let err = c.unwrap_err().to_string();
        assert!(err.contains("accept_cn_only_certificates"), "{err}");

        config.dangerous.accept_cn_only_certificates = true;
        let legacy = Context::client(&config).unwrap();
        let (_, c) = pair(&server, &legacy).await;
        c.unwrap();
        // The option does not excuse a different name.
        config.server_name = Some("other.example".into());
        let legacy = Context::client(&config).unwrap();
        let (_, c) = pair(&server, &legacy).await;
        assert!(c.is_err());
    }
}

every_pair! {
    async fn many_failures_leave_no_connection_behind(p: Pair) {
        let b = bundle();
        let other = bundle();
        let mut config = p.server_config(&b);
        config.handshake_timeout_ms = 500;
        let server = start(&config).await;
        let good = Context::client(&p.client_config(&b)).unwrap();
        let bad = Context::client(&p.client_config(&other)).unwrap();
        let mut tasks = Vec::new();
        for i in 0..30 {
            let (addr, good, bad) = (server.addr, good.clone(), bad.clone());
            tasks.push(tokio::spawn(async move {
                match i % 3 {
                    0 => ping(addr, &good).await.is_ok(),
                    1 => ping(addr, &bad).await.is_err(),
                    _ => {
                        let mut raw = TcpStream::connect(addr).await.unwrap();
                        let _ = raw
                            .write_all(&[0x16, 0x03, 0x01, 0xff, 0xff, 1, 2, 3])
                            .await;
                        true
                    }
                }
            }));
        }
        for task in tasks {
            assert!(task.await.unwrap());
        }
        drained(&server.stats).await;
        assert_eq!(server.stats.completed(), 10);
        assert_eq!(server.stats.accepted(), 30);
    }
}

#[tokio::test]
async fn a_cached_chain_never_vouches_for_a_different_certificate() {
    // The client caches verified chains; an impostor with another CA's
    // certificate for the same name must still be refused, and the genuine
    // server must still prove key possession (a copied certificate with the
    // wrong key fails CertificateVerify).
    let b = bundle();
    let genuine = start(&server_config(&b)).await;
    let client = Context::client(&client_config(&b)).unwrap();
    ping(genuine.addr, &client).await.unwrap();
    ping(genuine.addr, &client).await.unwrap();

    let impostor_bundle = certs::generate(&CertOptions {
        ca_name: "impostor CA".into(),
        ..CertOptions::default()
    })
    .unwrap();
    let impostor = start(&server_config(&impostor_bundle)).await;
    let err = ping(impostor.addr, &client).await.unwrap_err().to_string();
    assert!(err.contains("trusted CA"), "{err}");

    // The genuine certificate served with someone else's key.
    let tls = cipherlink::rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_cert_resolver(with_someone_elses_key(
            &b.server.cert,
            &impostor_bundle.server.key,
        ));
    let (a, c) = tokio::io::duplex(64 * 1024);
    let server = tokio::spawn(async move {
        let _ = tokio_rustls::TlsAcceptor::from(Arc::new(tls))
            .accept(a)
            .await;
    });
    let err = client.connect(c, "127.0.0.1").await.unwrap_err();
    assert_bad_signature(&err);
    server.await.unwrap();
}

#[tokio::test]
async fn a_cached_client_chain_never_vouches_for_another_client() {
    // The server caches verified client chains. After a genuine client has
    // been admitted, a client from another CA with the same name is still
    // refused, and the genuine certificate with another key still fails its
    // CertificateVerify.
    let b = bundle();
    let server = Context::server(&mtls_server_config(&b)).unwrap();
    let genuine = Context::client(&mtls_client_config(&b)).unwrap();
    for _ in 0..2 {
        let (s, c) = pair(&server, &genuine).await;
        s.unwrap();
        c.unwrap();
    }

    let other = certs::generate(&CertOptions {
        ca_name: "impostor CA".into(),
        ..CertOptions::default()
    })
    .unwrap();
    let impostor = Context::client(&{
        let mut edited = client_config(&b);
        edited.certificate = Some(inline(&other.client.cert));
        edited.private_key = Some(inline(&other.client.key));
        edited
    })
    .unwrap();
    let (s, _) = pair(&server, &impostor).await;
    let err = s.unwrap_err().to_string();
    assert!(err.contains("trusted CA"), "{err}");

    // The genuine client certificate with someone else's key.
    let mut roots = cipherlink::rustls::RootCertStore::empty();
    for ca in cipherlink::credentials::load_certificates("ca", &inline(&b.ca.cert)).unwrap() {
        roots.add(ca).unwrap();
    }
    let tls = cipherlink::rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_client_cert_resolver(with_someone_elses_key(&b.client.cert, &other.client.key));
    let (a, c) = tokio::io::duplex(64 * 1024);
    let client = tokio::spawn(async move {
        let name = cipherlink::rustls::pki_types::ServerName::try_from("localhost").unwrap();
        if let Ok(mut tls) = tokio_rustls::TlsConnector::from(Arc::new(tls))
            .connect(name, c)
            .await
        {
            // TLS 1.3: the client's certificate is judged after its handshake ends.
            let _ = tls.write_all(b"PING").await;
            let _ = tls.read(&mut [0u8; 4]).await;
        }
    });
    let err = tokio::time::timeout(Duration::from_secs(10), server.accept(a, "impostor"))
        .await
        .unwrap()
        .unwrap_err();
    assert_bad_signature(&err);
    client.await.unwrap();
}

every_pair! {
    async fn skipping_the_name_check_still_verifies_the_chain(p: Pair) {
        let b = bundle();
        let server = Context::server(&p.server_config(&b)).unwrap();
        let mut config = p.client_config(&b);
        config.server_name = Some("party-bob.invalid".into());
        config.dangerous.skip_server_name_check = true;
        let client = Context::client(&config).unwrap();
        let (_, c) = pair(&server, &client).await;
        c.unwrap();

        let stranger = Context::client(&{
 let mut edited = p.client_config(
                &certs::generate(&CertOptions {
                    ca_name: "stranger CA".into(),
                    ..CertOptions::default()
                })
                .unwrap(),
            );
 edited.server_name = Some("party-bob.invalid".into());
 edited.dangerous = {
                let mut dangerous = Dangerous::default();
                dangerous.skip_server_name_check = true;
                dangerous
            };
 edited
})
        .unwrap();
        let (_, c) = pair(&server, &stranger).await;
        assert!(c.unwrap_err().to_string().contains("trusted CA"));
    }
}

every_pair! {
    /// A peer whose stream ends without close_notify has not closed the
    /// session: the reader gets an error, not a clean end (which would let
    /// an attacker truncate the stream unnoticed).
    async fn an_end_without_close_notify_is_not_a_clean_close(p: Pair) {
        let b = bundle();
        let (server, client) = p.contexts(&b);
        let mut buf = [0u8; 16];
        // The server's transport ends under the client's read.
        let (a, c) = tokio::io::duplex(64 * 1024);
        let (s, t) = tokio::join!(server.accept(a, "client"), client.connect(c, "localhost"));
        let mut t = t.unwrap();
        drop(s.unwrap());
        let read = t.read(&mut buf).await;
        assert!(read.is_err(), "client read {read:?}");
        // The client's transport ends under the server's read.
        let (a, c) = tokio::io::duplex(64 * 1024);
        let (s, t) = tokio::join!(server.accept(a, "client"), client.connect(c, "localhost"));
        let mut s = s.unwrap();
        drop(t.unwrap());
        let read = s.read(&mut buf).await;
        assert!(read.is_err(), "server read {read:?}");
    }
}
