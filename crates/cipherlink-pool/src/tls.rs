//! rustls configurations for parties.
//!
//! Two ways to build them:
//!
//! - [`core_configs`] / [`from_contexts`]: from the core library's
//!   [`cipherlink::Context`], so a Pool gets the core's key-exchange policy
//!   (hybrid X25519MLKEM768 first by default), its validation and its error
//!   messages. The core client verifies the server's name (the host dialled),
//!   so every party's certificate must name the address it is reached at,
//!   as `cipherlink certs` makes them (SAN localhost, 127.0.0.1). Use this
//!   between cipherlink parties.
//! - [`server_config`] / [`client_config`]: the package's SSL contexts
//!   exactly: mutual TLS, peers verified against one CA, and no host name
//!   check (`check_hostname=False`), because Python parties are addressed by
//!   IP and identified by certificate issuer and serial, not by name, and
//!   their certificates often name no address at all. Kept for interop with
//!   Python parties; the core has no "verify the chain but not the name"
//!   option yet.

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
    /// The core library refused the configuration.
    #[error("{what}: {source}")]
    Core {
        /// Which side.
        what: &'static str,
        /// The core's error, naming the field.
        source: cipherlink::Error,
    },
    /// A Context of the wrong role was given.
    #[error("{what}: expected a {expected} Context")]
    Role {
        /// Which argument.
        what: &'static str,
        /// The role it should have.
        expected: &'static str,
    },
}

/// A party's two cipherlink [`Config`](cipherlink::Config)s from PEM (file
/// paths or inline text): a server that requires a client certificate
/// issued by the CA, and a client that presents the same certificate. The
/// Pool identifies senders by issuer and serial, so no
/// `allowed_identities` are set. Adjust them (e.g. `key_exchange`,
/// `compliance`) before [`from_contexts`].
pub fn core_party_configs(
    cert: cipherlink::config::PemSource,
    key: cipherlink::config::PemSource,
    ca: cipherlink::config::PemSource,
) -> (cipherlink::Config, cipherlink::Config) {
    let server = cipherlink::Config {
        certificate: Some(cert.clone()),
        private_key: Some(key.clone()),
        trusted_cas: vec![ca.clone()],
        require_client_cert: true,
        ..cipherlink::Config::default()
    };
    let client = cipherlink::Config {
        certificate: Some(cert),
        private_key: Some(key),
        trusted_cas: vec![ca],
        ..cipherlink::Config::default()
    };
    (server, client)
}

/// The rustls configurations inside two core Contexts, for
/// [`crate::PoolConfig::tls`].
pub fn from_contexts(
    server: &cipherlink::Context,
    client: &cipherlink::Context,
) -> Result<(Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>), TlsConfigError> {
    let s = server.rustls_server_config().ok_or(TlsConfigError::Role {
        what: "server",
        expected: "server",
    })?;
    let c = client.rustls_client_config().ok_or(TlsConfigError::Role {
        what: "client",
        expected: "client",
    })?;
    Ok((s, c))
}

/// [`core_party_configs`] built into Contexts with the core's defaults, for
/// [`crate::PoolConfig::tls`].
pub fn core_configs(
    cert: cipherlink::config::PemSource,
    key: cipherlink::config::PemSource,
    ca: cipherlink::config::PemSource,
) -> Result<(Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>), TlsConfigError> {
    let (s, c) = core_party_configs(cert, key, ca);
    let server = cipherlink::Context::server(&s).map_err(|source| TlsConfigError::Core {
        what: "TLS listener",
        source,
    })?;
    let client = cipherlink::Context::client(&c).map_err(|source| TlsConfigError::Core {
        what: "TLS client",
        source,
    })?;
    from_contexts(&server, &client)
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
