//! Handshakes that should succeed, and what they report.

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use cipherlink::{Context, KeyExchange, TunnelState};
use common::*;

every_pair! {
    async fn every_group_negotiates_and_is_reported(p: Pair) {
        let b = bundle();
        let mut server_cfg = p.server_config(&b);
        server_cfg.key_exchange = Some(KeyExchange::ALL.to_vec());
        let server = Context::server(&server_cfg).unwrap();
        for group in KeyExchange::ALL {
            let mut client_cfg = p.client_config(&b);
            client_cfg.key_exchange = Some(vec![group]);
            let client = Context::client(&client_cfg).unwrap();
            let (s, c) = pair(&server, &client).await;
            let (s, c) = (s.unwrap(), c.unwrap());
            let info = c.info().unwrap();
            assert_eq!(info.key_exchange, Some(group), "client view of {group}");
            assert_eq!(s.info().unwrap().key_exchange, Some(group));
            assert_eq!(info.protocol, "TLSv1.3");
            assert!(!info.hello_retry, "{group} needed a HelloRetryRequest");
            assert_eq!(
                info.peer_identity.unwrap().common_name.as_deref(),
                Some("localhost")
            );
        }
    }
}

every_pair! {
    async fn default_offer_is_hybrid_first(p: Pair) {
        let b = bundle();
        let (server, client) = p.contexts(&b);
        let (_, c) = pair(&server, &client).await;
        assert_eq!(
            c.unwrap().info().unwrap().key_exchange,
            Some(KeyExchange::X25519MlKem768)
        );
    }
}

every_pair! {
    async fn server_preference_for_a_group_the_client_did_not_share_first_uses_hello_retry(p: Pair) {
        let b = bundle();
        let mut server_cfg = p.server_config(&b);
        server_cfg.key_exchange = Some(vec![KeyExchange::P256]);
        let server = Context::server(&server_cfg).unwrap();
        let mut client_cfg = p.client_config(&b);
        client_cfg.key_exchange = Some(vec![KeyExchange::X25519, KeyExchange::P256]);
        let client = Context::client(&client_cfg).unwrap();
        let (_, c) = pair(&server, &client).await;
        let info = c.unwrap().info().unwrap();
        assert_eq!(info.key_exchange, Some(KeyExchange::P256));
        assert!(info.hello_retry);
    }
}

/// A mutual-TLS server that allows only "client", and a client with that certificate.
fn mtls_contexts(p: Pair) -> (Context, Context) {
    let b = bundle();
    let mut server_cfg = p.mtls_server_config(&b);
    server_cfg.allowed_identities = vec!["client".into()];
    let server = Context::server(&server_cfg).unwrap();
    let client = Context::client(&p.mtls_client_config(&b)).unwrap();
    (server, client)
}

every_pair! {
    async fn mutual_tls_reports_the_client_identity_to_the_server(p: Pair) {
        let (server, client) = mtls_contexts(p);
        let (s, c) = pair(&server, &client).await;
        let identity = s.unwrap().info().unwrap().peer_identity.unwrap();
        assert_eq!(identity.common_name.as_deref(), Some("client"));
        assert_eq!(
            identity.issuer_first_rdn_value.as_deref(),
            Some("cipherlink test CA")
        );
        assert!(c.is_ok());
    }
}

every_pair! {
    async fn second_connection_resumes_and_close_sends_close_notify(p: Pair) {
        let b = bundle();
        let (server, client) = p.contexts(&b);
        let (_, first) = pair(&server, &client).await;
        assert!(!first.unwrap().info().unwrap().resumed);
        let (s, c) = pair(&server, &client).await;
        let (mut s, mut c) = (s.unwrap(), c.unwrap());
        assert!(
            c.info().unwrap().resumed,
            "second handshake was not resumed"
        );
        c.close().await.unwrap();
        assert_eq!(c.state(), TunnelState::Closed);
        let mut buf = [0u8; 8];
        assert_eq!(
            s.read(&mut buf).await.unwrap(),
            0,
            "close_notify = clean EOF"
        );
        // A closed tunnel refuses further use with a typed error.
        let err = c.write_all(b"x").await.unwrap_err();
        assert!(err.to_string().contains("closed"), "{err}");
    }
}

every_pair! {
    /// A reconnecting client with a certificate resumes, and the server
    /// still knows who it is (OpenSSL refused such a resumption outright
    /// until the server context got a session id context).
    async fn mutual_tls_connections_resume_with_the_client_identity(p: Pair) {
        let (server, client) = mtls_contexts(p);
        let (_, first) = pair(&server, &client).await;
        assert!(!first.unwrap().info().unwrap().resumed);
        let (s, c) = pair(&server, &client).await;
        let (s, c) = (s.unwrap(), c.unwrap());
        assert!(c.info().unwrap().resumed, "second handshake was not resumed");
        let identity = s.info().unwrap().peer_identity.unwrap();
        assert_eq!(identity.common_name.as_deref(), Some("client"));
    }
}

every_pair! {
    async fn resumption_off_means_full_handshakes(p: Pair) {
        let b = bundle();
        let mut server_cfg = p.server_config(&b);
        server_cfg.resumption = false;
        let server = Context::server(&server_cfg).unwrap();
        let client = Context::client(&p.client_config(&b)).unwrap();
        for _ in 0..2 {
            let (_, c) = pair(&server, &client).await;
            assert!(!c.unwrap().info().unwrap().resumed);
        }
    }
}

every_pair! {
    async fn alpn_is_negotiated(p: Pair) {
        let b = bundle();
        let mut server_cfg = p.server_config(&b);
        server_cfg.alpn = vec!["h2".into(), "http/1.1".into()];
        let mut client_cfg = p.client_config(&b);
        client_cfg.alpn = vec!["http/1.1".into()];
        let server = Context::server(&server_cfg).unwrap();
        let client = Context::client(&client_cfg).unwrap();
        let (_, c) = pair(&server, &client).await;
        assert_eq!(c.unwrap().info().unwrap().alpn.as_deref(), Some("http/1.1"));
    }
}

#[tokio::test]
async fn toml_file_with_relative_paths_builds_a_context() {
    let b = bundle();
    let dir = tempfile::tempdir().unwrap();
    b.write_to(dir.path()).unwrap();
    let path = dir.path().join("server.toml");
    std::fs::write(
        &path,
        "certificate = \"server.crt\"\nprivate_key = \"server.key\"\ntrusted_cas = [\"ca.crt\"]\n\
         require_client_cert = true\nkey_exchange = [\"X25519MLKEM768\"]\n\
         [compliance]\npost_quantum = \"require_hybrid\"\n",
    )
    .unwrap();
    let config = cipherlink::Config::from_toml_file(&path).unwrap();
    let server = Context::server(&config).unwrap();
    let client = Context::client(&mtls_client_config(&b)).unwrap();
    let (s, _) = pair(&server, &client).await;
    assert_eq!(
        s.unwrap().info().unwrap().key_exchange,
        Some(KeyExchange::X25519MlKem768)
    );
}

every_pair! {
    async fn reply_and_close_in_one_flight_reaches_the_client_whole(p: Pair) {
        let b = bundle();
        let (server, client) = p.contexts(&b);
        let (a, c) = tokio::io::duplex(64 * 1024);
        let serve = async {
            let mut tunnel = server.accept(a, "client").await.unwrap();
            let mut ping = [0u8; 4];
            tunnel.read_exact(&mut ping).await.unwrap();
            tunnel.write_all_and_close(b"PONG").await.unwrap();
            assert_eq!(tunnel.state(), TunnelState::Closed);
        };
        let call = async {
            let mut tunnel = client.connect(c, "localhost").await.unwrap();
            tunnel.write_all(b"PING").await.unwrap();
            let reply = read_to_close(&mut tunnel).await;
            assert_eq!(reply, b"PONG");
        };
        tokio::join!(serve, call);
    }
}

every_pair! {
    async fn data_queued_with_the_handshake_arrives_once_and_in_order(p: Pair) {
        let b = bundle();
        let (server, client) = p.contexts(&b);
        let (a, c) = tokio::io::duplex(64 * 1024);
        let serve = async {
            let mut tunnel = server.accept(a, "client").await.unwrap();
            let mut got = [0u8; 9];
            tunnel.read_exact(&mut got).await.unwrap();
            assert_eq!(&got, b"PING+MORE");
            tunnel.write_all_and_close(b"PONG").await.unwrap();
            // A server cannot queue data with its handshake.
            let (x, _y) = tokio::io::duplex(1024);
            let mut other = server.tunnel(x, "other");
            assert!(other.handshake_and_send(b"nope").await.is_err());
        };
        let call = async {
            let mut tunnel = client.tunnel(c, "localhost");
            tunnel.handshake_and_send(b"PING").await.unwrap();
            tunnel.write_all(b"+MORE").await.unwrap();
            let mut pong = [0u8; 4];
            tunnel.read_exact(&mut pong).await.unwrap();
            assert_eq!(&pong, b"PONG");
        };
        tokio::join!(serve, call);
    }
}

every_pair! {
    async fn data_queued_with_a_failing_handshake_is_never_sent(p: Pair) {
        // Wrong CA: the client must refuse before its queued data leaves.
        let b = bundle();
        let other = cipherlink::certs::generate(&cipherlink::certs::CertOptions {
            ca_name: "other CA".into(),
            ..Default::default()
        })
        .unwrap();
        let server = Context::server(&p.server_config(&b)).unwrap();
        let client = Context::client(&p.client_config(&other)).unwrap();
        let (a, c) = tokio::io::duplex(64 * 1024);
        let serve = async {
            let mut tunnel = server.tunnel(a, "client");
            // The client answers our flight with an alert, never with Finished
            // followed by its queued data.
            let err = tunnel.handshake().await.unwrap_err().to_string();
            assert!(
                err.contains("unknown_ca") || err.contains("UnknownCA"),
                "{err}"
            );
        };
        let call = async {
            let mut tunnel = client.tunnel(c, "localhost");
            assert!(tunnel.handshake_and_send(b"SECRET").await.is_err());
        };
        tokio::join!(serve, call);
    }
}

every_pair! {
    /// More than rustls buffers (64 KiB) sent with the handshake and as the
    /// closing reply: every byte arrives, in order (the excess goes out after
    /// the handshake, or before close_notify).
    async fn large_first_data_and_large_closing_reply_arrive_whole(p: Pair) {
        let b = bundle();
        let (server, client) = p.contexts(&b);
        let request: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let reply: Vec<u8> = (0..200_000u32).map(|i| (i % 241) as u8).collect();
        let (a, c) = tokio::io::duplex(16 * 1024);
        let serve = async {
            let mut tunnel = server.accept(a, "client").await.unwrap();
            let mut got = vec![0u8; request.len()];
            tunnel.read_exact(&mut got).await.unwrap();
            assert!(got == request, "request arrived altered");
            tunnel.write_all_and_close(&reply).await.unwrap();
        };
        let call = async {
            let mut tunnel = client.tunnel(c, "localhost".to_string());
            tunnel.handshake_and_send(&request).await.unwrap();
            let got = read_to_close(&mut tunnel).await;
            assert!(got == reply, "reply arrived altered ({} bytes)", got.len());
        };
        // Lost bytes would leave the server waiting: fail instead of hanging.
        tokio::time::timeout(std::time::Duration::from_secs(30), async {
            tokio::join!(serve, call)
        })
        .await
        .expect("the whole request and reply arrive");
    }
}

#[tokio::test]
async fn rustls_configurations_from_a_config_handshake_as_a_context_would() {
    let b = bundle();
    let mut server_cfg = server_config(&b);
    server_cfg.alpn = vec!["h2".into()];
    let mut client_cfg = client_config(&b);
    client_cfg.alpn = vec!["h2".into()];
    let acceptor = tokio_rustls::TlsAcceptor::from(server_cfg.rustls_server_config().unwrap());
    let connector = tokio_rustls::TlsConnector::from(client_cfg.rustls_client_config().unwrap());
    let (a, c) = tokio::io::duplex(64 * 1024);
    let name = cipherlink::rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let (server, client) = tokio::join!(acceptor.accept(a), connector.connect(name, c));
    let (server, client) = (server.unwrap(), client.unwrap());
    let (_, client_conn) = client.get_ref();
    assert_eq!(client_conn.alpn_protocol(), Some(&b"h2"[..]));
    // The core's default key-exchange list, hybrid first.
    assert_eq!(
        client_conn
            .negotiated_key_exchange_group()
            .map(|g| g.name()),
        Some(cipherlink::rustls::NamedGroup::X25519MLKEM768)
    );
    assert!(server.get_ref().1.alpn_protocol().is_some());
}

#[test]
fn a_config_for_the_wrong_side_is_refused_by_its_rustls_builder_too() {
    let b = bundle();
    let mut server_cfg = server_config(&b);
    server_cfg.server_name = Some("localhost".into());
    let err = server_cfg.rustls_server_config().unwrap_err().to_string();
    assert!(err.contains("server_name"), "{err}");
    let mut wrong = client_config(&b);
    wrong.require_client_cert = true;
    let err = wrong.rustls_client_config().unwrap_err().to_string();
    assert!(err.contains("require_client_cert"), "{err}");
}

every_pair! {
    /// Both implementations describe a session in the same words: IANA
    /// suite names, the same group names, the same identity.
    async fn tunnel_info_reads_the_same_on_either_implementation(p: Pair) {
        let b = bundle();
        let server = Context::server(&p.mtls_server_config(&b)).unwrap();
        let client = Context::client(&p.mtls_client_config(&b)).unwrap();
        let (s, c) = pair(&server, &client).await;
        let (s, c) = (s.unwrap().info().unwrap(), c.unwrap().info().unwrap());
        for info in [&s, &c] {
            assert_eq!(info.protocol, "TLSv1.3");
            assert_eq!(info.cipher_suite, "TLS_AES_128_GCM_SHA256");
            assert_eq!(info.key_exchange, Some(KeyExchange::X25519MlKem768));
            assert!(!info.resumed && !info.hello_retry);
        }
        assert_eq!(s.peer_identity.unwrap().common_name.as_deref(), Some("client"));
        assert_eq!(c.peer_identity.unwrap().common_name.as_deref(), Some("localhost"));
    }
}

every_pair! {
    /// `dangerous.key_log_file` writes the NSS key log on either
    /// implementation: both ends log the same session's four TLS 1.3
    /// secrets under the same client random.
    async fn the_key_log_file_has_each_sessions_secrets(p: Pair) {
        let b = bundle();
        let dir = tempfile::tempdir().unwrap();
        let (server_log, client_log) = (dir.path().join("s.keys"), dir.path().join("c.keys"));
        let mut server_cfg = p.server_config(&b);
        server_cfg.dangerous.key_log_file = Some(server_log.clone());
        let mut client_cfg = p.client_config(&b);
        client_cfg.dangerous.key_log_file = Some(client_log.clone());
        let server = Context::server(&server_cfg).unwrap();
        let client = Context::client(&client_cfg).unwrap();
        let (s, c) = pair(&server, &client).await;
        drop((s.unwrap(), c.unwrap()));
        let mut logs = Vec::new();
        for path in [server_log, client_log] {
            let text = std::fs::read_to_string(path).unwrap();
            let mut lines: Vec<(String, String)> = text
                .lines()
                .map(|l| {
                    let f: Vec<&str> = l.split(' ').collect();
                    assert_eq!(f.len(), 3, "{l}");
                    assert_eq!(f[1].len(), 64, "{l}");
                    (f[0].to_string(), f[1].to_string())
                })
                .filter(|(label, _)| label.contains("TRAFFIC_SECRET"))
                .collect();
            lines.sort();
            logs.push(lines);
        }
        assert_eq!(logs[0], logs[1]);
        let labels: Vec<&str> = logs[0].iter().map(|(l, _)| l.as_str()).collect();
        assert_eq!(
            labels,
            [
                "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
                "CLIENT_TRAFFIC_SECRET_0",
                "SERVER_HANDSHAKE_TRAFFIC_SECRET",
                "SERVER_TRAFFIC_SECRET_0"
            ]
        );
    }
}
