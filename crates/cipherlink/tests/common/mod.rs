//! Fixtures shared by the core's integration tests.
#![allow(dead_code)]

use std::time::Duration;

use cipherlink::certs::{self, CertBundle, CertOptions};
use cipherlink::{Config, Context, Error, Implementation, KeyExchange, PemSource, Tunnel};
use tokio::io::DuplexStream;

pub fn bundle() -> CertBundle {
    certs::generate(&CertOptions::default()).expect("generate certificates")
}

pub fn inline(pem: &str) -> PemSource {
    PemSource::inline(pem.to_string())
}

pub fn server_config(b: &CertBundle) -> Config {
    b.server_config()
}

pub fn mtls_server_config(b: &CertBundle) -> Config {
    let mut edited = b.server_config();
    edited.trusted_cas = vec![inline(&b.ca.cert)];
    edited.require_client_cert = true;
    edited
}

pub fn client_config(b: &CertBundle) -> Config {
    b.client_config()
}

pub fn mtls_client_config(b: &CertBundle) -> Config {
    b.mtls_client_config()
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

/// Which TLS implementation each side runs. Tests declared with
/// [`every_pair!`] run once per pair: both implementations against
/// themselves (the same behaviour on either) and against each other (wire
/// interoperability).
#[derive(Debug, Clone, Copy)]
pub struct Pair {
    pub server: Implementation,
    pub client: Implementation,
}

impl Pair {
    pub fn server(self, config: Config) -> Config {
        {
            let mut edited = config;
            edited.implementation = self.server;
            edited
        }
    }

    pub fn client(self, config: Config) -> Config {
        {
            let mut edited = config;
            edited.implementation = self.client;
            edited
        }
    }

    pub fn server_config(self, b: &CertBundle) -> Config {
        self.server(server_config(b))
    }

    pub fn mtls_server_config(self, b: &CertBundle) -> Config {
        self.server(mtls_server_config(b))
    }

    pub fn client_config(self, b: &CertBundle) -> Config {
        self.client(client_config(b))
    }

    pub fn mtls_client_config(self, b: &CertBundle) -> Config {
        self.client(mtls_client_config(b))
    }

    /// A server and a client Context of the default test configurations.
    pub fn contexts(self, b: &CertBundle) -> (Context, Context) {
        (
            Context::server(&self.server_config(b)).expect("server context"),
            Context::client(&self.client_config(b)).expect("client context"),
        )
    }

    /// Whether either side is OpenSSL (for the few facts that differ, e.g.
    /// rustls' error carries certificate dates where OpenSSL's does not).
    pub fn any_openssl(self) -> bool {
        self.server == Implementation::Openssl || self.client == Implementation::Openssl
    }
}

/// Declares an async test once per implementation pair, as a module of four
/// tests named `<server>_server_<client>_client`.
#[macro_export]
macro_rules! every_pair {
    ($(#[$meta:meta])* async fn $name:ident($pair:ident: Pair) $body:block) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            use cipherlink::Implementation::{Openssl, Rustls};

            async fn case($pair: Pair) $body

            #[tokio::test]
            async fn rustls_server_rustls_client() {
                case(Pair { server: Rustls, client: Rustls }).await
            }
            #[tokio::test]
            async fn openssl_server_openssl_client() {
                case(Pair { server: Openssl, client: Openssl }).await
            }
            #[tokio::test]
            async fn openssl_server_rustls_client() {
                case(Pair { server: Openssl, client: Rustls }).await
            }
            #[tokio::test]
            async fn rustls_server_openssl_client() {
                case(Pair { server: Rustls, client: Openssl }).await
            }
        }
    };
}

/// Reads until the peer closes, failing the test on an error.
pub async fn read_to_close<IO>(tunnel: &mut Tunnel<IO>) -> Vec<u8>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = tunnel.read(&mut buf).await.expect("read");
        if n == 0 {
            return got;
        }
        got.extend_from_slice(&buf[..n]);
    }
}
