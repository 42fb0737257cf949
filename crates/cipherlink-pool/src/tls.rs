//! rustls configurations for parties, as the package sets up its SSL contexts:
//! mutual TLS, peers verified against one CA, and no host name check
//! (`check_hostname=False`), because parties are addressed by IP and
//! identified by certificate issuer and serial, not by name.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

/// A PEM input that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsConfigError {
    /// No certificate, or unreadable PEM.
    #[error("{what}: {reason}")]
    Pem {
        /// Which input.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// rustls refused the configuration.
    #[error("{what}: {source}")]
    Rustls {
        /// Which step.
        what: &'static str,
        /// The cause.
        source: rustls::Error,
    },
    /// The CA cannot verify client certificates.
    #[error("client verifier: {0}")]
    Verifier(String),
}

/// Certificates from PEM text.
pub fn certs_from_pem(
    what: &'static str,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsConfigError::Pem {
            what,
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsConfigError::Pem {
            what,
            reason: "no CERTIFICATE block".into(),
        });
    }
    Ok(certs)
}

fn key_from_pem(pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsConfigError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| TlsConfigError::Pem {
        what: "private key",
        reason: e.to_string(),
    })
}

fn roots(ca_pem: &[u8]) -> Result<Arc<RootCertStore>, TlsConfigError> {
    let mut roots = RootCertStore::empty();
    for c in certs_from_pem("CA certificate", ca_pem)? {
        roots.add(c).map_err(|source| TlsConfigError::Rustls {
            what: "CA certificate",
            source,
        })?;
    }
    Ok(Arc::new(roots))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A listener configuration that requires a client certificate issued by the CA.
pub fn server_config(
    cert_chain_pem: &[u8],
    key_pem: &[u8],
    ca_pem: &[u8],
) -> Result<Arc<rustls::ServerConfig>, TlsConfigError> {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(ca_pem)?, provider())
        .build()
        .map_err(|e| TlsConfigError::Verifier(e.to_string()))?;
    let cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsConfigError::Rustls {
            what: "protocol versions",
            source,
        })?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            certs_from_pem("certificate", cert_chain_pem)?,
            key_from_pem(key_pem)?,
        )
        .map_err(|source| TlsConfigError::Rustls {
            what: "certificate and key",
            source,
        })?;
    Ok(Arc::new(cfg))
}

/// A client configuration that presents our certificate and verifies the
/// server's chain against the CA, but not its name, as the package does.
pub fn client_config(
    cert_chain_pem: &[u8],
    key_pem: &[u8],
    ca_pem: &[u8],
) -> Result<Arc<rustls::ClientConfig>, TlsConfigError> {
    let inner = WebPkiServerVerifier::builder_with_provider(roots(ca_pem)?, provider())
        .build()
        .map_err(|e| TlsConfigError::Verifier(e.to_string()))?;
    let cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsConfigError::Rustls {
            what: "protocol versions",
            source,
        })?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(ChainOnlyVerifier(inner)))
        .with_client_auth_cert(
            certs_from_pem("certificate", cert_chain_pem)?,
            key_from_pem(key_pem)?,
        )
        .map_err(|source| TlsConfigError::Rustls {
            what: "certificate and key",
            source,
        })?;
    Ok(Arc::new(cfg))
}

/// Verifies the chain, validity and signatures like WebPKI, and accepts a
/// certificate that is merely not issued for the name we dialled: the
/// package's `check_hostname=False`.
#[derive(Debug)]
struct ChainOnlyVerifier(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnlyVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
