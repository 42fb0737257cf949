//! TLS configuration for the lab's servers and clients.
//!
//! The normal path is the core library's: a [`cipherlink::Config`] checked
//! and built by the core as a Context would be (TLS 1.3, the key-exchange
//! list and its compliance check, AES-128-GCM first, verified-chain caches,
//! errors that name the field), whose rustls configuration the gRPC plumbing
//! then uses with ALPN `h2`.
//!
//! The original suite's openssl certificates (X.509 v1, host only in the
//! CN) need [`ServerTls::accept_legacy_certificates`] / [`ClientTls::accept_legacy_certificates`], the
//! core's `dangerous.accept_legacy_certificates` (see [`cipherlink::legacy`];
//! `--dangerous-accept-legacy-certs`, as the core's flag); without it our own
//! such certificate is refused up front with a message naming the option. A
//! v3 server certificate that names its host only in the CN needs
//! [`ClientTls::accept_cn_only_certificates`], the core's
//! `dangerous.accept_cn_only_certificates` (`--dangerous-accept-cn-only`).

mod legacy;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cipherlink::{Config, Dangerous, PemSource};
use rustls::{ClientConfig, ServerConfig};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

pub use cipherlink::KeyExchange;
pub use legacy::{LegacyCertificate, CN_ONLY_FIELD, LEGACY_FIELD};

use crate::error::RpcError;

/// ALPN protocol id of HTTP/2.
const ALPN_H2: &str = "h2";

/// What a server needs: its identity, and optionally the CA of its clients.
#[derive(Debug, Clone)]
pub struct ServerTls {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// PEM CA bundle; when set, clients must present a certificate it signed (mTLS).
    pub client_ca: Option<PathBuf>,
    /// Accept X.509 v1 certificates (the original suite's openssl ones): the
    /// core's `dangerous.accept_legacy_certificates`, for our own certificate
    /// and for the clients'.
    pub accept_legacy_certificates: bool,
    /// Key-exchange groups, most preferred first.
    pub groups: Vec<KeyExchange>,
}

impl ServerTls {
    /// Server authentication only, the core's default groups.
    pub fn new(cert: PathBuf, key: PathBuf) -> Self {
        Self {
            cert,
            key,
            client_ca: None,
            accept_legacy_certificates: false,
            groups: KeyExchange::default_list(),
        }
    }
}

/// What a client needs: the CA of the server, optionally its own identity.
#[derive(Debug, Clone)]
pub struct ClientTls {
    /// PEM CA bundle that signed the server certificate.
    pub ca: PathBuf,
    /// PEM certificate chain and key for mutual TLS.
    pub identity: Option<(PathBuf, PathBuf)>,
    /// Accept X.509 v1 certificates, ours and the server's (which must then
    /// name the host in its CN): the core's `dangerous.accept_legacy_certificates`.
    pub accept_legacy_certificates: bool,
    /// Accept a server certificate without subjectAltName whose CN names the
    /// host: the core's `dangerous.accept_cn_only_certificates`.
    pub accept_cn_only_certificates: bool,
    /// Allow TLS session resumption. Off for cold connections: one that
    /// resumes a session skips the public-key work it means to measure.
    pub resumption: bool,
    /// Key-exchange groups, most preferred first.
    pub groups: Vec<KeyExchange>,
}

impl ClientTls {
    /// Server authentication only, no resumption, the core's default groups.
    pub fn new(ca: PathBuf) -> Self {
        Self {
            ca,
            identity: None,
            accept_legacy_certificates: false,
            accept_cn_only_certificates: false,
            resumption: false,
            groups: KeyExchange::default_list(),
        }
    }
}

/// Our field behind the core configuration field an error names.
fn field(err: &cipherlink::Error) -> &'static str {
    let field: &str = match err {
        cipherlink::Error::Config { field, .. } | cipherlink::Error::File { field, .. } => field,
        cipherlink::Error::UnknownGroup(_) | cipherlink::Error::Policy(_) => "key_exchange",
        _ => "",
    };
    match field {
        "certificate" => "cert",
        "private_key" => "key",
        "trusted_cas" | "require_client_cert" => "ca",
        "key_exchange" => "groups",
        "server_name" => "server_name",
        "dangerous.accept_cn_only_certificates" => CN_ONLY_FIELD,
        field if field.starts_with("dangerous.") => LEGACY_FIELD,
        _ => "tls",
    }
}

fn core_err(error: cipherlink::Error) -> RpcError {
    RpcError::Context {
        field: field(&error),
        error,
    }
}

/// Refuses our own X.509 v1 certificate up front, naming this tool's option
/// (the core's own message names its configuration field).
fn refuse_v1(path: &Path, what: &'static str) -> Result<(), RpcError> {
    // A file that cannot be read is left to the core, whose error names the
    // file and the setting.
    let Ok(chain) = cipherlink::credentials::load_certificates(what, &PemSource::path(path)) else {
        return Ok(());
    };
    let Some(leaf) = chain.first() else {
        return Ok(());
    };
    match X509Certificate::from_der(leaf.as_ref()) {
        Ok((_, cert)) if cert.version().0 < 2 => Err(LegacyCertificate {
            subject: cert.subject().to_string(),
            shape: "an X.509 v1 certificate",
        }
        .into()),
        _ => Ok(()),
    }
}

/// The core configuration of a server.
fn server_core_config(tls: &ServerTls) -> Result<Config, RpcError> {
    if !tls.accept_legacy_certificates {
        refuse_v1(&tls.cert, "server certificate")?;
    }
    let mut dangerous = Dangerous::default();
    dangerous.accept_legacy_certificates = tls.accept_legacy_certificates;
    Ok(Config::builder()
        .key_exchange(tls.groups.iter().copied())
        .identity(PemSource::path(&tls.cert), PemSource::path(&tls.key))
        .trusted_cas(tls.client_ca.iter().map(PemSource::path))
        .require_client_cert(tls.client_ca.is_some())
        .alpn([ALPN_H2])
        // Tickets, so clients that ask to resume (`coldconn --resume`) can.
        .resumption(true)
        .dangerous(dangerous)
        .build())
}

/// The core configuration of a client.
fn client_core_config(tls: &ClientTls) -> Result<Config, RpcError> {
    if let Some((cert, _)) = tls
        .identity
        .as_ref()
        .filter(|_| !tls.accept_legacy_certificates)
    {
        refuse_v1(cert, "client certificate")?;
    }
    let mut dangerous = Dangerous::default();
    dangerous.accept_legacy_certificates = tls.accept_legacy_certificates;
    dangerous.accept_cn_only_certificates = tls.accept_cn_only_certificates;
    let mut config = Config::builder()
        .key_exchange(tls.groups.iter().copied())
        .trusted_ca(PemSource::path(&tls.ca))
        .alpn([ALPN_H2])
        .resumption(tls.resumption)
        .dangerous(dangerous);
    if let Some((cert, key)) = &tls.identity {
        config = config.identity(PemSource::path(cert), PemSource::path(key));
    }
    Ok(config.build())
}

/// Builds the server's TLS 1.3 configuration.
pub fn server_config(tls: &ServerTls) -> Result<Arc<ServerConfig>, RpcError> {
    server_core_config(tls)?
        .rustls_server_config()
        .map_err(core_err)
}

/// Builds the client's TLS 1.3 configuration.
pub fn client_config(tls: &ClientTls) -> Result<Arc<ClientConfig>, RpcError> {
    client_core_config(tls)?
        .rustls_client_config()
        .map_err(core_err)
}
