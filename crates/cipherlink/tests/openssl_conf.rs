//! A system OpenSSL configuration (`OPENSSL_CONF`, which OpenSSL applies to
//! every new context) cannot weaken what a Config promises: with
//! `Options = AllowNoDHEKEX, PreferNoDHEKEX` a TLS 1.3 resumption would run
//! without a key exchange (psk_ke: no forward secrecy) while `TunnelInfo`
//! still reported the hybrid group; `-ExtendedMasterSecret` turned the
//! extended master secret off for TLS 1.2; `Protocol = -TLSv1.3` left TLS
//! 1.2 only; `@SECLEVEL=0` let an RSA-1024 CA and SHA-1 signatures through;
//! `VerifyMode = Require` made a server without client authentication ask
//! for a certificate.
//!
//! OpenSSL reads its configuration once per process, so each test runs its
//! body again in a child process of this test binary with `OPENSSL_CONF`
//! set (`in_child`).

#![cfg(feature = "openssl")]
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use cipherlink::{Context, Implementation, KeyExchange};
use cipherlink_test_support::process::{on_spare_port, Proc};
use cipherlink_test_support::{find, Peer};
use common::{bundle, Pair};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// Set in the child: run the test's body.
const CHILD: &str = "CIPHERLINK_TEST_OPENSSL_CONF_CHILD";
/// The foreign peer's path, handed to the child.
const PEER: &str = "CIPHERLINK_TEST_OPENSSL_CONF_PEER";

const CONFIG: &str = "\
openssl_conf = openssl_init

[openssl_init]
ssl_conf = ssl_configuration

[ssl_configuration]
system_default = tls_system_default

[tls_system_default]
Options = AllowNoDHEKEX,PreferNoDHEKEX,-ExtendedMasterSecret
CipherString = DEFAULT:@SECLEVEL=0
Protocol = -TLSv1.3
VerifyMode = Require
";

/// In the parent: runs the test `name` in a child of this binary whose
/// OpenSSL reads `CONFIG`, checks it passed, and returns `false`. In the
/// child: returns `true` (run the body).
fn in_child(name: &str, peer: Option<&Path>) -> bool {
    if std::env::var_os(CHILD).is_some() {
        return true;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("openssl.cnf");
    std::fs::write(&config, CONFIG).unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap());
    child
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env("OPENSSL_CONF", &config)
        .env(CHILD, "1");
    if let Some(peer) = peer {
        child.env(PEER, peer);
    }
    let out = child.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report = format!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the child failed:\n{report}");
    assert!(
        stdout.contains("1 passed"),
        "the child ran no test:\n{report}"
    );
    false
}

/// The configuration must be in effect, or the tests prove nothing.
fn assert_config_applies() {
    let raw = openssl::ssl::SslContextBuilder::new(openssl::ssl::SslMethod::tls()).unwrap();
    let allow_no_dhe_kex = 1 << 10;
    let no_ems = 1 << 0;
    let no_tls13 = 1 << 29;
    let set = allow_no_dhe_kex | no_ems | no_tls13;
    assert!(
        raw.options().bits() & set == set,
        "OPENSSL_CONF was not applied to a new context: {:?}",
        raw.options()
    );
    assert_eq!(raw.build().security_level(), 0);
}

/// Keeps a copy of everything read from `inner` (what the peer sent).
struct Tap<IO> {
    inner: IO,
    seen: Arc<Mutex<Vec<u8>>>,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Tap<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Ok(mut seen) = this.seen.lock() {
            seen.extend_from_slice(&buf.filled()[before..]);
        }
        polled
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Tap<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Whether the ServerHello in `wire` (what a client received) carries a
/// key share, read from the plaintext records before the first encrypted
/// one; a HelloRetryRequest before it is skipped.
fn server_hello_has_key_share(wire: &[u8]) -> bool {
    server_hello_has_extension(wire, 51)
}

/// Whether the ServerHello in `wire` carries the extension `wanted`.
fn server_hello_has_extension(wire: &[u8], wanted: u16) -> bool {
    const HELLO_RETRY: [u8; 8] = [0xCF, 0x21, 0xAD, 0x74, 0xE5, 0x9A, 0x61, 0x11];
    let mut handshake = Vec::new();
    let mut rest = wire;
    while rest.len() >= 5 && rest[0] != 23 {
        let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        if rest[0] == 22 {
            handshake.extend_from_slice(&rest[5..5 + len]);
        }
        rest = &rest[5 + len..];
    }
    let mut messages = handshake.as_slice();
    while messages.len() >= 4 {
        let len = usize::from(messages[1]) << 16
            | usize::from(messages[2]) << 8
            | usize::from(messages[3]);
        let (message, next) = messages.split_at(4 + len);
        messages = next;
        let body = &message[4..];
        if message[0] != 2 || body[2..10] == HELLO_RETRY {
            continue;
        }
        let session_id = usize::from(body[34]);
        let mut extensions = &body[35 + session_id + 3 + 2..];
        while extensions.len() >= 4 {
            let kind = u16::from_be_bytes([extensions[0], extensions[1]]);
            let len = usize::from(u16::from_be_bytes([extensions[2], extensions[3]]));
            if kind == wanted {
                return true;
            }
            extensions = &extensions[4 + len..];
        }
        return false;
    }
    panic!("no ServerHello in what the client received");
}

/// A handshake and PING/PONG over a pipe, the client's side tapped: its
/// info, and whether the ServerHello carried a key share.
async fn tapped(server: &Context, client: &Context) -> (cipherlink::TunnelInfo, bool) {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let tap = Tap {
        inner: b,
        seen: seen.clone(),
    };
    let serve = async {
        let mut tunnel = server.accept(a, "client").await.unwrap();
        let mut ping = [0u8; 4];
        tunnel.read_exact(&mut ping).await.unwrap();
        tunnel.write_all(b"PONG").await.unwrap();
    };
    let call = async {
        let mut tunnel = client.connect(tap, "localhost").await.unwrap();
        tunnel.write_all(b"PING").await.unwrap();
        let mut pong = [0u8; 4];
        tunnel.read_exact(&mut pong).await.unwrap();
        tunnel.info().unwrap()
    };
    let ((), info) =
        tokio::time::timeout(Duration::from_secs(10), async { tokio::join!(serve, call) })
            .await
            .unwrap();
    let key_share = server_hello_has_key_share(&seen.lock().unwrap());
    (info, key_share)
}

/// Every resumption runs a key exchange, and the group reported is the
/// one it ran, on every pairing (OpenSSL on both sides would otherwise
/// resume with psk_ke).
#[tokio::test]
async fn a_system_config_cannot_allow_resumption_without_key_exchange() {
    let name = "a_system_config_cannot_allow_resumption_without_key_exchange";
    if !in_child(name, None) {
        return;
    }
    assert_config_applies();
    let b = bundle();
    for (server, client) in [
        (Implementation::Openssl, Implementation::Openssl),
        (Implementation::Openssl, Implementation::Rustls),
        (Implementation::Rustls, Implementation::Openssl),
    ] {
        let (server, client) = Pair { server, client }.contexts(&b);
        let (first, key_share) = tapped(&server, &client).await;
        assert!(!first.resumed && key_share);
        assert_eq!(first.protocol, "TLSv1.3");
        let (again, key_share) = tapped(&server, &client).await;
        assert!(again.resumed, "{again}: no resumption to check");
        assert!(key_share, "{again}: resumed without a key exchange");
        assert_eq!(again.key_exchange, Some(KeyExchange::X25519MlKem768));
    }
}

/// `openssl s_server -allow_no_dhe_kex -prefer_no_dhe_kex` resumes with
/// psk_ke whenever a client offers it: a cipherlink client (under the same
/// configuration) must not, and reports the group it really used.
#[tokio::test]
async fn a_psk_ke_server_gets_a_key_exchange_on_resumption() {
    let name = "a_psk_ke_server_gets_a_key_exchange_on_resumption";
    let peer = match std::env::var_os(PEER) {
        Some(path) => path.into(),
        None => match find(Peer::Openssl4, name) {
            Some(path) => path,
            None => return,
        },
    };
    if !in_child(name, Some(&peer)) {
        return;
    }
    assert_config_applies();
    let pki = tempfile::tempdir().unwrap();
    let b = bundle();
    b.write_to(pki.path()).unwrap();
    let (_server, port) = s_server(&peer, pki.path());
    for implementation in [Implementation::Openssl, Implementation::Rustls] {
        let mut config = b.client_config();
        config.implementation = implementation;
        config.server_name = Some("localhost".into());
        let client = Context::client(&config).unwrap();
        let (first, key_share) = fetch(&client, port).await;
        assert!(!first.resumed && key_share, "{first}");
        let (again, key_share) = fetch(&client, port).await;
        assert!(
            again.resumed,
            "{implementation:?} {again}: no resumption to check"
        );
        assert!(
            key_share,
            "{implementation:?} {again}: resumed without a key exchange"
        );
        assert_eq!(again.key_exchange, Some(KeyExchange::X25519MlKem768));
    }
}

/// `openssl s_server -www` with the PKI in `dir`, allowing and preferring
/// psk_ke (stopped when the returned process is dropped), and its port.
fn s_server(openssl: &Path, dir: &Path) -> (Proc, u16) {
    s_server_with(
        openssl,
        dir,
        &[
            "-tls1_3",
            "-allow_no_dhe_kex",
            "-prefer_no_dhe_kex",
            "-groups",
            "X25519MLKEM768",
        ],
    )
}

/// `openssl s_server -www` with the PKI in `dir` and `options`.
fn s_server_with(openssl: &Path, dir: &Path, options: &[&str]) -> (Proc, u16) {
    on_spare_port("openssl s_server", |port| {
        let mut cmd = std::process::Command::new(openssl);
        cmd.arg("s_server")
            .arg("-accept")
            .arg(format!("127.0.0.1:{port}"))
            .arg("-www")
            .args(options)
            .arg("-cert")
            .arg(dir.join("server.crt"))
            .arg("-key")
            .arg(dir.join("server.key"))
            // Its own configuration, not the one under test.
            .env_remove("OPENSSL_CONF")
            .current_dir(dir);
        let mut proc = Proc::spawn("openssl s_server", cmd);
        proc.close_stdin();
        match proc.try_wait_for(false, "ACCEPT") {
            Ok(_) => Ok((proc, port)),
            Err(why) => Err(format!("{why}\n{}", proc.describe())),
        }
    })
}

/// One HTTP request to s_server over a tapped TCP connection (the reply
/// brings the session ticket in): the client's info, and whether the
/// ServerHello carried a key share.
async fn fetch(client: &Context, port: u16) -> (cipherlink::TunnelInfo, bool) {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let tap = Tap {
        inner: tcp,
        seen: seen.clone(),
    };
    let exchange = async {
        let mut tunnel = client.connect(tap, "localhost").await.unwrap();
        let info = tunnel.info().unwrap();
        tunnel.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
        let mut reply = Vec::new();
        // s_server -www may close without close_notify: the reply (and
        // the ticket before it) is what counts.
        let _ = tunnel.read_to_end(&mut reply).await;
        info
    };
    let info = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .unwrap();
    let key_share = server_hello_has_key_share(&seen.lock().unwrap());
    (info, key_share)
}

/// The OpenSSL client refuses, as rustls does, an RSA-1024 CA and a leaf
/// signed with SHA-1, though the configuration's security level 0 allows
/// them.
#[tokio::test]
async fn a_system_config_cannot_lower_the_security_level() {
    let name = "a_system_config_cannot_lower_the_security_level";
    let peer = match std::env::var_os(PEER) {
        Some(path) => path.into(),
        None => match find(Peer::Openssl, name) {
            Some(path) => path,
            None => return,
        },
    };
    if !in_child(name, Some(&peer)) {
        return;
    }
    assert_config_applies();
    for (what, key_args, digest, named) in [
        (
            "RSA-1024 CA",
            ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"],
            "-sha256",
            "1024-bit RSA",
        ),
        (
            "SHA-1 leaf",
            ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
            "-sha1",
            "sha1WithRSAEncryption",
        ),
    ] {
        let (ca, leaf, key) = openssl_chain(&peer, &key_args, digest);
        for server in [Implementation::Rustls, Implementation::Openssl] {
            let mut config = cipherlink::Config::default();
            config.certificate = Some(common::inline(&leaf));
            config.private_key = Some(common::inline(&key));
            config.implementation = server;
            // OpenSSL's security level (2) refuses to present a leaf
            // signed with SHA-1 at all.
            let Ok(server) = Context::server(&config) else {
                continue;
            };
            for implementation in [Implementation::Openssl, Implementation::Rustls] {
                let mut config = cipherlink::Config::default();
                config.trusted_cas = vec![common::inline(&ca)];
                config.implementation = implementation;
                let client = Context::client(&config).unwrap();
                let (_, c) = common::pair(&server, &client).await;
                let err = c.map(drop).unwrap_err().to_string();
                assert!(
                    err.contains(named),
                    "{what}, {implementation:?} client: {err}"
                );
            }
        }
    }
}

/// TLS 1.2 keeps the extended master secret (RFC 7627), which rustls
/// always uses: an OpenSSL client offers it to `openssl s_server`, an
/// OpenSSL server agrees to it with `openssl s_client`.
#[tokio::test]
async fn a_system_config_cannot_turn_off_the_extended_master_secret() {
    let name = "a_system_config_cannot_turn_off_the_extended_master_secret";
    let peer = match std::env::var_os(PEER) {
        Some(path) => path.into(),
        None => match find(Peer::Openssl4, name) {
            Some(path) => path,
            None => return,
        },
    };
    if !in_child(name, Some(&peer)) {
        return;
    }
    assert_config_applies();
    let pki = tempfile::tempdir().unwrap();
    let b = bundle();
    b.write_to(pki.path()).unwrap();

    let (_server, port) = s_server_with(&peer, pki.path(), &["-tls1_2"]);
    let mut config = b.client_config();
    config.implementation = Implementation::Openssl;
    config.server_name = Some("localhost".into());
    config.allow_tls12 = true;
    let client = Context::client(&config).unwrap();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let tap = Tap {
        inner: tcp,
        seen: seen.clone(),
    };
    let tunnel = tokio::time::timeout(Duration::from_secs(10), client.connect(tap, "localhost"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(tunnel.info().unwrap().protocol, "TLSv1.2");
    assert!(
        server_hello_has_extension(&seen.lock().unwrap(), 23),
        "the server did not echo extended_master_secret: the client did not offer it"
    );

    let mut config = b.server_config();
    config.implementation = Implementation::Openssl;
    config.allow_tls12 = true;
    let server = Context::server(&config).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accept = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let _ = server.accept(tcp, "s_client").await;
    });
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(&peer)
            .args(["s_client", "-tls1_2", "-connect"])
            .arg(format!("127.0.0.1:{port}"))
            .env_remove("OPENSSL_CONF")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(10), accept).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("Extended master secret: yes"),
        "s_client:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `openssl` in `dir`, failing the test on an error.
fn run(openssl: &Path, dir: &Path, args: &[&str]) {
    let out = std::process::Command::new(openssl)
        .args(args)
        .current_dir(dir)
        .env_remove("OPENSSL_CONF")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA whose key `genpkey` makes with `key_args`, and an RSA-2048 leaf
/// for localhost it signs with `digest`: (CA PEM, leaf PEM, leaf key PEM).
fn openssl_chain(openssl: &Path, key_args: &[&str], digest: &str) -> (String, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut genpkey = vec!["genpkey", "-out", "ca.key"];
    genpkey.extend_from_slice(key_args);
    run(openssl, d, &genpkey);
    run(
        openssl,
        d,
        &[
            "req",
            "-new",
            "-x509",
            "-key",
            "ca.key",
            "-subj",
            "/CN=weak CA",
            "-days",
            "30",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-out",
            "ca.crt",
            digest,
        ],
    );
    run(
        openssl,
        d,
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            "leaf.key",
        ],
    );
    run(
        openssl,
        d,
        &[
            "req",
            "-new",
            "-key",
            "leaf.key",
            "-subj",
            "/CN=localhost",
            "-out",
            "leaf.csr",
        ],
    );
    std::fs::write(d.join("ext.cnf"), "subjectAltName=DNS:localhost\n").unwrap();
    run(
        openssl,
        d,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "30",
            "-extfile",
            "ext.cnf",
            "-out",
            "leaf.crt",
            digest,
        ],
    );
    let read = |file: &str| std::fs::read_to_string(d.join(file)).unwrap();
    (read("ca.crt"), read("leaf.crt"), read("leaf.key"))
}
