//! TLS configuration for the lab's servers and clients.
//!
//! The normal path is the core library's: a [`cipherlink::Config`] built into
//! a [`cipherlink::Context`] (TLS 1.3, the key-exchange list and its
//! compliance check, AES-128-GCM first, a verified-chain cache on the client,
//! errors that name the field), whose rustls configuration the gRPC plumbing
//! then uses with ALPN `h2`.
//!
//! The seed's own openssl certificates (X.509 v1, host only in the CN) cannot
//! go through it: webpki parses only v3 certificates. Behind
//! `--legacy-cn-certs` only, this crate builds the configuration itself with
//! the verifiers of [`legacy`], on the same provider policy (groups, cipher
//! suite order). Without the option such a certificate is refused up front
//! with a message naming it.

mod legacy;
mod pem;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cipherlink::{Config, Context, PemSource};
use rustls::client::{Resumption, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::sign::SingleCertAndKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::CertificateDer;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

pub use cipherlink::KeyExchange;
pub use legacy::{LegacyCertificate, LEGACY_OPTION};

use crate::error::RpcError;

/// ALPN protocol id of HTTP/2.
const ALPN_H2: &str = "h2";

/// The flag / env var behind the key-exchange list, for messages.
pub const GROUPS_OPTION: &str = "--groups (env TLS_GROUPS)";

/// What a server needs: its identity, and optionally the CA of its clients.
#[derive(Debug, Clone)]
pub struct ServerTls {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// PEM CA bundle; when set, clients must present a certificate it signed (mTLS).
    pub client_ca: Option<PathBuf>,
    /// Accept the seed's legacy certificates (X.509 v1) with the crate's own
    /// verifiers instead of the core Context.
    pub accept_legacy: bool,
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
            accept_legacy: false,
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
    /// Accept the seed's legacy server certificates (v1, CN-only name) with
    /// the crate's own verifiers instead of the core Context.
    pub accept_legacy: bool,
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
            accept_legacy: false,
            resumption: false,
            groups: KeyExchange::default_list(),
        }
    }
}

/// The flag that sets a core configuration field, for messages.
fn setting(err: &cipherlink::Error) -> &'static str {
    let field: &str = match err {
        cipherlink::Error::Config { field, .. } | cipherlink::Error::File { field, .. } => field,
        cipherlink::Error::UnknownGroup(_) | cipherlink::Error::Policy(_) => "key_exchange",
        _ => "",
    };
    match field {
        "certificate" => "--tls-cert (env TLS_CERT)",
        "private_key" => "--tls-key (env TLS_KEY)",
        "trusted_cas" | "require_client_cert" => "--tls-ca (env TLS_CA)",
        "key_exchange" => GROUPS_OPTION,
        "server_name" => "--server-name (env TLS_SERVER_NAME)",
        _ => "TLS settings",
    }
}

fn core_err(error: cipherlink::Error) -> RpcError {
    RpcError::Context {
        setting: setting(&error),
        error,
    }
}

/// Refuses our own certificate up front when it is X.509 v1: the core would
/// report it as a key mismatch (webpki cannot parse it to compare keys).
fn refuse_v1(path: &Path, what: &'static str) -> Result<(), RpcError> {
    let chain = pem::certificates(path, what)?;
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

/// The core Context for a server.
pub fn server_context(tls: &ServerTls) -> Result<Context, RpcError> {
    refuse_v1(&tls.cert, "server certificate")?;
    let config = Config {
        key_exchange: tls.groups.clone(),
        certificate: Some(PemSource::path(&tls.cert)),
        private_key: Some(PemSource::path(&tls.key)),
        trusted_cas: tls.client_ca.iter().map(PemSource::path).collect(),
        require_client_cert: tls.client_ca.is_some(),
        alpn: vec![ALPN_H2.into()],
        // Tickets, so clients that ask to resume (`coldconn --resume`) can.
        resumption: true,
        ..Config::default()
    };
    Context::server(&config).map_err(core_err)
}

/// The core Context for a client.
pub fn client_context(tls: &ClientTls) -> Result<Context, RpcError> {
    if let Some((cert, _)) = &tls.identity {
        refuse_v1(cert, "client certificate")?;
    }
    let (certificate, private_key) = match &tls.identity {
        Some((cert, key)) => (Some(PemSource::path(cert)), Some(PemSource::path(key))),
        None => (None, None),
    };
    let config = Config {
        key_exchange: tls.groups.clone(),
        certificate,
        private_key,
        trusted_cas: vec![PemSource::path(&tls.ca)],
        alpn: vec![ALPN_H2.into()],
        resumption: tls.resumption,
        ..Config::default()
    };
    Context::client(&config).map_err(core_err)
}

/// Builds the server's TLS 1.3 configuration.
pub fn server_config(tls: &ServerTls) -> Result<Arc<ServerConfig>, RpcError> {
    if tls.accept_legacy {
        return legacy_server_config(tls);
    }
    server_context(tls)?
        .rustls_server_config()
        .ok_or_else(|| RpcError::Serve("a server Context has no server configuration".into()))
}

/// Builds the client's TLS 1.3 configuration.
pub fn client_config(tls: &ClientTls) -> Result<Arc<ClientConfig>, RpcError> {
    if tls.accept_legacy {
        return legacy_client_config(tls);
    }
    client_context(tls)?
        .rustls_client_config()
        .ok_or_else(|| RpcError::Serve("a client Context has no client configuration".into()))
}

/// The provider of the legacy path, with the core's policy: the groups in
/// the order given (checked against the default compliance policy), then
/// AES-128-GCM first.
fn legacy_provider(groups: &[KeyExchange]) -> Result<Arc<CryptoProvider>, RpcError> {
    cipherlink::Config {
        key_exchange: groups.to_vec(),
        ..cipherlink::Config::default()
    }
    .crypto_provider()
    .map_err(|e| RpcError::Setting {
        field: GROUPS_OPTION,
        detail: e.to_string(),
    })
}

fn roots(path: &Path) -> Result<(RootCertStore, Vec<CertificateDer<'static>>), RpcError> {
    let certs = pem::certificates(path, "CA certificates")?;
    let mut store = RootCertStore::empty();
    for cert in &certs {
        store.add(cert.clone()).map_err(|e| RpcError::Verifier {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
    }
    Ok((store, certs))
}

fn legacy_server_config(tls: &ServerTls) -> Result<Arc<ServerConfig>, RpcError> {
    let provider = legacy_provider(&tls.groups)?;
    let chain = pem::certificates(&tls.cert, "server certificate")?;
    let key = pem::private_key(&tls.key)?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?;
    let builder = match &tls.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let (store, anchors) = roots(ca)?;
            let inner =
                WebPkiClientVerifier::builder_with_provider(Arc::new(store), provider.clone())
                    .build()
                    .map_err(|e| RpcError::Verifier {
                        path: ca.clone(),
                        detail: e.to_string(),
                    })?;
            builder.with_client_cert_verifier(Arc::new(legacy::ClientVerifier::new(
                inner,
                anchors,
                provider.signature_verification_algorithms,
            )))
        }
    };
    let ck = legacy::certified_key(chain, key, &provider)?;
    let mut config = builder.with_cert_resolver(Arc::new(SingleCertAndKey::from(ck)));
    config.alpn_protocols = vec![ALPN_H2.as_bytes().to_vec()];
    Ok(Arc::new(config))
}

fn legacy_client_config(tls: &ClientTls) -> Result<Arc<ClientConfig>, RpcError> {
    let provider = legacy_provider(&tls.groups)?;
    let (store, anchors) = roots(&tls.ca)?;
    let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider.clone())
        .build()
        .map_err(|e| RpcError::Verifier {
            path: tls.ca.clone(),
            detail: e.to_string(),
        })?;
    let verifier =
        legacy::ServerVerifier::new(inner, anchors, provider.signature_verification_algorithms);
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        // Not a weakening: the wrapper runs rustls' own WebPki verifier first
        // and only adds the opt-in legacy fallback (see `legacy`).
        .with_custom_certificate_verifier(Arc::new(verifier));
    let mut config = match &tls.identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let ck = legacy::certified_key(
                pem::certificates(cert, "client certificate")?,
                pem::private_key(key)?,
                &provider,
            )?;
            builder.with_client_cert_resolver(Arc::new(SingleCertAndKey::from(ck)))
        }
    };
    config.alpn_protocols = vec![ALPN_H2.as_bytes().to_vec()];
    if !tls.resumption {
        config.resumption = Resumption::disabled();
    }
    Ok(Arc::new(config))
}
