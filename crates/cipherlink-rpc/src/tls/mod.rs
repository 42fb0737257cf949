//! TLS configuration for the lab's servers and clients.
//!
//! Everything is TLS 1.3 over rustls with the aws-lc-rs provider, hybrid
//! X25519MLKEM768 preferred, ALPN `h2` (gRPC peers insist on it). The builders
//! return plain `Arc<rustls::{Server,Client}Config>`, which is all the gRPC
//! plumbing needs; when the core crate's declarative `cipherlink::Context`
//! can express the legacy-certificate option, these bodies become a call to it.

mod legacy;
mod pem;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::{Resumption, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::sign::SingleCertAndKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::CertificateDer;

pub use legacy::{LegacyCertificate, LEGACY_OPTION};

use crate::error::RpcError;

/// ALPN protocol id of HTTP/2.
const ALPN_H2: &[u8] = b"h2";

/// What a server needs: its identity, and optionally the CA of its clients.
#[derive(Debug, Clone)]
pub struct ServerTls {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// PEM CA bundle; when set, clients must present a certificate it signed (mTLS).
    pub client_ca: Option<PathBuf>,
    /// Accept the seed's legacy client certificates (X.509 v1).
    pub accept_legacy: bool,
}

/// What a client needs: the CA of the server, optionally its own identity.
#[derive(Debug, Clone)]
pub struct ClientTls {
    /// PEM CA bundle that signed the server certificate.
    pub ca: PathBuf,
    /// PEM certificate chain and key for mutual TLS.
    pub identity: Option<(PathBuf, PathBuf)>,
    /// Accept the seed's legacy server certificates (v1, CN-only name).
    pub accept_legacy: bool,
    /// Allow TLS session resumption. Off by default: a "cold" connection
    /// that resumes a session skips the public-key work it means to measure.
    pub resumption: bool,
}

/// The provider every config is built on: aws-lc-rs with hybrid PQ first.
fn provider() -> Arc<CryptoProvider> {
    // The workspace enables rustls' `prefer-post-quantum`, so the default
    // group order already puts X25519MLKEM768 first.
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
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

/// Builds the server's TLS 1.3 configuration.
pub fn server_config(tls: &ServerTls) -> Result<Arc<ServerConfig>, RpcError> {
    let provider = provider();
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
                tls.accept_legacy,
            )))
        }
    };
    let ck = legacy::certified_key(chain, key, &provider, tls.accept_legacy)?;
    let mut config = builder.with_cert_resolver(Arc::new(SingleCertAndKey::from(ck)));
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Arc::new(config))
}

/// Builds the client's TLS 1.3 configuration.
pub fn client_config(tls: &ClientTls) -> Result<Arc<ClientConfig>, RpcError> {
    let provider = provider();
    let (store, anchors) = roots(&tls.ca)?;
    let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider.clone())
        .build()
        .map_err(|e| RpcError::Verifier {
            path: tls.ca.clone(),
            detail: e.to_string(),
        })?;
    let verifier = legacy::ServerVerifier::new(
        inner,
        anchors,
        provider.signature_verification_algorithms,
        tls.accept_legacy,
    );
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
                tls.accept_legacy,
            )?;
            builder.with_client_cert_resolver(Arc::new(SingleCertAndKey::from(ck)))
        }
    };
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    if !tls.resumption {
        config.resumption = Resumption::disabled();
    }
    Ok(Arc::new(config))
}
