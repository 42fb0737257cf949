//! rustls configurations for parties, built by the core library's
//! [`cipherlink::Context`], so a Pool gets the core's key-exchange policy
//! (hybrid X25519MLKEM768 first, classical fallbacks that Python's OpenSSL
//! negotiates), its validation and its error messages.
//!
//! The package's rules are kept: mutual TLS, peers verified against one CA,
//! and no host-name check on the client (`check_hostname=False`), because
//! Python parties are addressed by IP and identified by certificate issuer
//! and serial, not by name; the chain is still verified
//! (`dangerous.skip_server_name_check` in the core).

use std::sync::Arc;

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
    let server = cipherlink::Config::builder()
        .identity(cert.clone(), key.clone())
        .trusted_ca(ca.clone())
        .require_client_cert(true)
        .build();
    let mut dangerous = cipherlink::Dangerous::default();
    dangerous.skip_server_name_check = true;
    let client = cipherlink::Config::builder()
        .identity(cert, key)
        .trusted_ca(ca)
        .dangerous(dangerous)
        .build();
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
    let (server, client) = core_party_configs(cert, key, ca);
    Ok((listener(&server)?, sender(&client)?))
}

/// The rustls configuration of a server Context built from `config`.
fn listener(config: &cipherlink::Config) -> Result<Arc<rustls::ServerConfig>, TlsConfigError> {
    config
        .rustls_server_config()
        .map_err(|source| TlsConfigError::Core {
            what: "TLS listener",
            source,
        })
}

/// The rustls configuration of a client Context built from `config`.
fn sender(config: &cipherlink::Config) -> Result<Arc<rustls::ClientConfig>, TlsConfigError> {
    config
        .rustls_client_config()
        .map_err(|source| TlsConfigError::Core {
            what: "TLS client",
            source,
        })
}

fn inline(what: &'static str, pem: &[u8]) -> Result<cipherlink::PemSource, TlsConfigError> {
    let text = std::str::from_utf8(pem).map_err(|_| TlsConfigError::Pem {
        what,
        reason: "not PEM text (not UTF-8)".into(),
    })?;
    Ok(cipherlink::PemSource::inline(text))
}

/// [`core_party_configs`] from PEM text.
fn party_configs_from_pem(
    cert_chain_pem: &[u8],
    key_pem: &[u8],
    ca_pem: &[u8],
) -> Result<(cipherlink::Config, cipherlink::Config), TlsConfigError> {
    Ok(core_party_configs(
        inline("certificate", cert_chain_pem)?,
        inline("private key", key_pem)?,
        inline("CA certificate", ca_pem)?,
    ))
}

/// A listener configuration that requires a client certificate issued by the CA.
pub fn server_config(
    cert_chain_pem: &[u8],
    key_pem: &[u8],
    ca_pem: &[u8],
) -> Result<Arc<rustls::ServerConfig>, TlsConfigError> {
    listener(&party_configs_from_pem(cert_chain_pem, key_pem, ca_pem)?.0)
}

/// A client configuration that presents our certificate and verifies the
/// server's chain against the CA, but not its name, as the package does.
pub fn client_config(
    cert_chain_pem: &[u8],
    key_pem: &[u8],
    ca_pem: &[u8],
) -> Result<Arc<rustls::ClientConfig>, TlsConfigError> {
    sender(&party_configs_from_pem(cert_chain_pem, key_pem, ca_pem)?.1)
}
