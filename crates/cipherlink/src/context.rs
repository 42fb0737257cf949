//! A `Context` is built once from a [`Config`], validated whole, and shared by
//! every tunnel of one role.

use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::ServerCertVerifier;
use rustls::client::{Resumption, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{NoServerSessionStorage, WebPkiClientVerifier};
use rustls::sign::SingleCertAndKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig, SupportedProtocolVersion};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::chain_cache::CachingVerifier;
use crate::chain_errors::{ExplainingClientVerifier, ExplainingServerVerifier};
use crate::config::{Config, Implementation};
use crate::error::Error;
use crate::kx::KeyExchange;
use crate::legacy::{LegacyClientVerifier, LegacyServerVerifier};
use crate::pki::{load_certificates, load_certified_key};
use crate::session_dates::{
    DatedClientSessions, DatedServerSessions, DatedTickets, DatingVerifier,
};
use crate::tunnel::Tunnel;
use crate::validate::{self, ClientAuth};
use crate::verify::{AllowListClientVerifier, CnFallbackServerVerifier};

/// Which side of the handshake a Context is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Initiates connections.
    Client,
    /// Accepts connections.
    Server,
}

#[derive(Debug)]
pub(crate) enum TlsSide {
    Client(Arc<ClientConfig>),
    Server(Arc<ServerConfig>),
    #[cfg(feature = "openssl")]
    OpensslClient(crate::openssl_tls::ClientSide),
    #[cfg(feature = "openssl")]
    OpensslServer(crate::openssl_tls::ServerSide),
}

#[derive(Debug)]
struct Inner {
    implementation: Implementation,
    tls: TlsSide,
    /// `server_name`, parsed once when the Context is built.
    server_name: Option<ServerName<'static>>,
    handshake_timeout: Duration,
    key_exchange: Vec<KeyExchange>,
}

/// An immutable, validated TLS configuration for one role. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Context {
    inner: Arc<Inner>,
}

impl Context {
    /// Builds a server Context, checking every field.
    pub fn server(config: &Config) -> Result<Context, Error> {
        let tls = match config.implementation {
            Implementation::Rustls => TlsSide::Server(server_tls(config)?),
            #[cfg(feature = "openssl")]
            Implementation::Openssl => TlsSide::OpensslServer(crate::openssl_tls::server(config)?),
            #[cfg(not(feature = "openssl"))]
            Implementation::Openssl => return Err(openssl_not_built()),
        };
        Ok(Context::new(tls, config, None))
    }

    /// Builds a client Context, checking every field.
    pub fn client(config: &Config) -> Result<Context, Error> {
        let (tls, server_name) = match config.implementation {
            Implementation::Rustls => {
                let (tls, server_name) = client_tls(config)?;
                (TlsSide::Client(tls), server_name)
            }
            #[cfg(feature = "openssl")]
            Implementation::Openssl => (
                TlsSide::OpensslClient(crate::openssl_tls::client(config)?),
                validate::server_name(config)?,
            ),
            #[cfg(not(feature = "openssl"))]
            Implementation::Openssl => return Err(openssl_not_built()),
        };
        Ok(Context::new(tls, config, server_name))
    }

    fn new(tls: TlsSide, config: &Config, server_name: Option<ServerName<'static>>) -> Context {
        Context {
            inner: Arc::new(Inner {
                implementation: config.implementation,
                tls,
                server_name,
                handshake_timeout: config.handshake_timeout(),
                key_exchange: config.groups(),
            }),
        }
    }

    /// Client or server.
    pub fn role(&self) -> Role {
        match self.inner.tls {
            TlsSide::Client(_) => Role::Client,
            TlsSide::Server(_) => Role::Server,
            #[cfg(feature = "openssl")]
            TlsSide::OpensslClient(_) => Role::Client,
            #[cfg(feature = "openssl")]
            TlsSide::OpensslServer(_) => Role::Server,
        }
    }

    /// The TLS implementation that carries this Context's tunnels.
    pub fn implementation(&self) -> Implementation {
        self.inner.implementation
    }

    /// The groups offered, most preferred first.
    pub fn key_exchange(&self) -> &[KeyExchange] {
        &self.inner.key_exchange
    }

    /// The handshake time limit.
    pub fn handshake_timeout(&self) -> Duration {
        self.inner.handshake_timeout
    }

    /// The configured server name, if any (client).
    pub fn server_name(&self) -> Option<&ServerName<'static>> {
        self.inner.server_name.as_ref()
    }

    /// The rustls server configuration, for libraries (hyper, tonic) that
    /// take one; `None` for a client or an OpenSSL Context.
    pub fn rustls_server_config(&self) -> Option<Arc<ServerConfig>> {
        match &self.inner.tls {
            TlsSide::Server(config) => Some(config.clone()),
            _ => None,
        }
    }

    /// The rustls client configuration, for libraries that take one;
    /// `None` for a server or an OpenSSL Context.
    pub fn rustls_client_config(&self) -> Option<Arc<ClientConfig>> {
        match &self.inner.tls {
            TlsSide::Client(config) => Some(config.clone()),
            _ => None,
        }
    }

    pub(crate) fn tls(&self) -> &TlsSide {
        &self.inner.tls
    }

    /// Wraps a transport in a tunnel that has not handshaken yet. `peer`
    /// names the other side in errors and logs (e.g. `127.0.0.1:4433`); a
    /// client without `server_name` verifies the host part of it.
    pub fn tunnel<IO>(&self, io: IO, peer: impl Into<String>) -> Tunnel<IO>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        Tunnel::new(self.clone(), io, peer.into())
    }

    /// Wraps a transport and runs the handshake in this Context's role
    /// (`connect` and [`Context::accept`] are the same call, named for the
    /// reader of the calling code).
    pub async fn connect<IO>(&self, io: IO, peer: impl Into<String>) -> Result<Tunnel<IO>, Error>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let mut tunnel = self.tunnel(io, peer);
        tunnel.handshake().await?;
        Ok(tunnel)
    }

    /// Chains this Context verified in full on OpenSSL (its chain cache's
    /// misses); `None` without a cache or on rustls.
    #[cfg(all(test, feature = "openssl"))]
    pub(crate) fn openssl_full_chain_verifications(&self) -> Option<u64> {
        crate::openssl_tls::full_chain_verifications(&self.inner.tls)
    }

    /// The latest expiry of a verdict in this Context's OpenSSL chain cache.
    #[cfg(all(test, feature = "openssl"))]
    pub(crate) fn openssl_chain_cache_latest_expiry(&self) -> Option<u64> {
        crate::openssl_tls::chain_cache_latest_expiry(&self.inner.tls)
    }

    /// Sessions in OpenSSL's own session cache of this Context.
    #[cfg(all(test, feature = "openssl"))]
    pub(crate) fn openssl_internal_sessions(&self) -> Option<std::os::raw::c_long> {
        crate::openssl_tls::internal_sessions(&self.inner.tls)
    }

    /// Wraps and handshakes a server transport; see [`Context::connect`].
    pub async fn accept<IO>(&self, io: IO, peer: impl Into<String>) -> Result<Tunnel<IO>, Error>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        self.connect(io, peer).await
    }
}

#[cfg(not(feature = "openssl"))]
fn openssl_not_built() -> Error {
    Error::config(
        "implementation",
        "\"openssl\" is not built into this cipherlink (it was compiled without the `openssl` \
         feature); valid: \"rustls\"",
    )
}

/// Checks `config` as a server's and builds its rustls configuration.
pub(crate) fn server_tls(config: &Config) -> Result<Arc<ServerConfig>, Error> {
    let (cert, key) = validate::server(config)?;
    let provider = build_provider(config)?;
    let certified = load_certified_key(
        &provider,
        cert,
        key,
        config.dangerous.accept_legacy_certificates,
    )?;
    let verifier = client_verifier(config, &provider)?;
    let mut tls = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(protocol_versions(config))
        .map_err(Error::Build)?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(certified)));
    tls.alpn_protocols = alpn(config);
    if let Some(path) = &config.dangerous.key_log_file {
        tls.key_log = crate::key_log::KeyLogFile::open(path)?;
    }
    if config.resumption {
        // Stateless tickets scale with connection count; the default
        // stateful cache holds only 256 sessions.
        tls.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new().map_err(Error::Build)?;
        tls.send_tls13_tickets = 1;
        if validate::client_auth(config)? != ClientAuth::None {
            // Sessions that hold a client certificate end with it.
            tls.ticketer = Arc::new(DatedTickets(tls.ticketer.clone()));
            tls.session_storage = Arc::new(DatedServerSessions(tls.session_storage.clone()));
        }
    } else {
        tls.session_storage = Arc::new(NoServerSessionStorage {});
        tls.send_tls13_tickets = 0;
    }
    Ok(Arc::new(tls))
}

/// Checks `config` as a client's and builds its rustls configuration and
/// the server name it names, if any.
pub(crate) fn client_tls(
    config: &Config,
) -> Result<(Arc<ClientConfig>, Option<ServerName<'static>>), Error> {
    let own = validate::client(config)?;
    let provider = build_provider(config)?;
    let verifier = server_cert_verifier(config, &provider)?;
    let verifier: Arc<dyn ServerCertVerifier> = if config.chain_cache {
        Arc::new(CachingVerifier::new(verifier))
    } else {
        verifier
    };
    // Sessions dated by the chains verified (see `session_dates`).
    let sessions = config
        .resumption
        .then(|| Arc::new(DatedClientSessions::default()));
    let verifier: Arc<dyn ServerCertVerifier> = match &sessions {
        Some(sessions) => Arc::new(DatingVerifier {
            inner: verifier,
            sessions: sessions.clone(),
        }),
        None => verifier,
    };
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(protocol_versions(config))
        .map_err(Error::Build)?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut tls = match own {
        Some((cert, key)) => {
            let certified = load_certified_key(
                &provider,
                cert,
                key,
                config.dangerous.accept_legacy_certificates,
            )?;
            builder.with_client_cert_resolver(Arc::new(SingleCertAndKey::from(certified)))
        }
        None => builder.with_no_client_auth(),
    };
    tls.alpn_protocols = alpn(config);
    if let Some(path) = &config.dangerous.key_log_file {
        tls.key_log = crate::key_log::KeyLogFile::open(path)?;
    }
    tls.resumption = match sessions {
        Some(sessions) => Resumption::store(sessions),
        None => Resumption::disabled(),
    };
    let server_name = validate::server_name(config)?;
    Ok((Arc::new(tls), server_name))
}

/// The server-certificate verifier of a client `config`: webpki, with the
/// CN fallback and the legacy path where the configuration asks for them
/// (no cache, no session dating). The OpenSSL client runs this same
/// verifier on every chain OpenSSL accepts, so that a chain passes there
/// only if it passes here.
pub(crate) fn server_cert_verifier(
    config: &Config,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ServerCertVerifier>, Error> {
    let (roots, anchors) = trust_anchors("trusted_cas", config)?;
    let roots = Arc::new(roots);
    let webpki = WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
        .build()
        .map_err(|e| Error::config("trusted_cas", e.to_string()))?;
    let verifier: Arc<dyn ServerCertVerifier> = if config.dangerous.accept_cn_only_certificates
        || config.dangerous.skip_server_name_check
    {
        Arc::new(CnFallbackServerVerifier {
            inner: webpki,
            any_name: config.dangerous.skip_server_name_check,
            roots,
            algs: provider.signature_verification_algorithms,
        })
    } else {
        webpki
    };
    let verifier: Arc<dyn ServerCertVerifier> = if config.dangerous.accept_legacy_certificates {
        Arc::new(LegacyServerVerifier {
            inner: verifier,
            anchors: anchors.clone(),
            algs: provider.signature_verification_algorithms,
            check_name: !config.dangerous.skip_server_name_check,
        })
    } else {
        verifier
    };
    Ok(Arc::new(ExplainingServerVerifier {
        inner: verifier,
        anchors,
    }))
}

/// The provider whose certificate-signature algorithms the verifiers use:
/// those of every provider [`build_provider`] makes (it changes only
/// suites and groups), for the OpenSSL implementation's run of the rustls
/// verifiers.
#[cfg(feature = "openssl")]
pub(crate) fn verification_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

impl Config {
    /// The crypto provider this configuration's policy selects (groups in
    /// order, checked against `compliance`; AES-128-GCM first), for code
    /// that must build its own rustls configuration around custom verifiers.
    pub fn crypto_provider(&self) -> Result<Arc<CryptoProvider>, Error> {
        build_provider(self)
    }
}

fn build_provider(config: &Config) -> Result<Arc<CryptoProvider>, Error> {
    if config.implementation != Implementation::Rustls {
        return Err(Error::config(
            "implementation",
            format!(
                "is {:?}, which has no rustls configuration; this part of cipherlink \
                 (or this library's caller) needs implementation = \"rustls\"",
                config.implementation
            ),
        ));
    }
    validate::groups(config)?;
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.cipher_suites =
        crate::hkdf::with_prepared_hkdf(&preferred_cipher_suites(&provider.cipher_suites));
    // Each group names one of aws-lc-rs' own implementations in rustls.
    provider.kx_groups = config
        .groups()
        .iter()
        .map(|group| group.rustls_group())
        .collect();
    Ok(Arc::new(provider))
}

/// AES-128-GCM-SHA256 first: with SHA-NI its HKDF key schedule costs a
/// fraction of SHA-384's (measured: SHA-384 was 10% of handshake CPU), and
/// AES-128 stays at NIST's category 1 against quantum search. The rest keep
/// the provider's order.
fn preferred_cipher_suites(
    suites: &[rustls::SupportedCipherSuite],
) -> Vec<rustls::SupportedCipherSuite> {
    let first = rustls::CipherSuite::TLS13_AES_128_GCM_SHA256;
    let mut ordered: Vec<_> = suites
        .iter()
        .copied()
        .filter(|s| s.suite() == first)
        .collect();
    ordered.extend(suites.iter().copied().filter(|s| s.suite() != first));
    ordered
}

static TLS13_ONLY: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];

fn protocol_versions(config: &Config) -> &'static [&'static SupportedProtocolVersion] {
    if config.allow_tls12 {
        rustls::ALL_VERSIONS
    } else {
        TLS13_ONLY
    }
}

fn alpn(config: &Config) -> Vec<Vec<u8>> {
    config.alpn.iter().map(|p| p.as_bytes().to_vec()).collect()
}

/// The trust anchors of `trusted_cas`, as rustls' store and (the explicit
/// ones, not the system's) as certificates for the v1 check of [`crate::legacy`].
fn trust_anchors(
    field: &'static str,
    config: &Config,
) -> Result<(RootCertStore, Vec<CertificateDer<'static>>), Error> {
    let mut roots = RootCertStore::empty();
    let mut anchors = Vec::new();
    for source in &config.trusted_cas {
        if source.is_system_roots() {
            let native = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(native.certs);
            if added == 0 {
                return Err(Error::config(
                    field,
                    "\"system\" found no CA certificates on this machine (install ca-certificates)",
                ));
            }
            continue;
        }
        for cert in load_certificates(field, source)? {
            anchors.push(cert.clone());
            roots.add(cert).map_err(|e| {
                Error::config(
                    field,
                    format!("{}: not usable as a trust anchor ({e})", source.describe()),
                )
            })?;
        }
    }
    Ok((roots, anchors))
}

fn client_verifier(
    config: &Config,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, Error> {
    let verifier = client_cert_verifier(config, provider)?;
    Ok(if config.chain_cache {
        Arc::new(CachingVerifier::new(verifier))
    } else {
        verifier
    })
}

/// The client-certificate verifier of a server `config`: webpki, the legacy
/// path and the allow-list where the configuration asks for them (no
/// cache). The OpenSSL server runs this same verifier on every chain
/// OpenSSL accepts (see [`server_cert_verifier`]).
pub(crate) fn client_cert_verifier(
    config: &Config,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, Error> {
    if validate::client_auth(config)? == ClientAuth::None {
        return Ok(WebPkiClientVerifier::no_client_auth());
    }
    let (roots, anchors) = trust_anchors("trusted_cas", config)?;
    let mut builder =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
    if !config.require_client_cert {
        builder = builder.allow_unauthenticated();
    }
    let verifier = builder
        .build()
        .map_err(|e| Error::config("trusted_cas", e.to_string()))?;
    let verifier: Arc<dyn ClientCertVerifier> = if config.dangerous.accept_legacy_certificates {
        Arc::new(LegacyClientVerifier {
            inner: verifier,
            anchors: anchors.clone(),
            algs: provider.signature_verification_algorithms,
        })
    } else {
        verifier
    };
    let verifier = Arc::new(ExplainingClientVerifier {
        inner: verifier,
        anchors,
    });
    Ok(if config.allowed_identities.is_empty() {
        verifier
    } else {
        Arc::new(AllowListClientVerifier {
            inner: verifier,
            allowed: config.allowed_identities.clone(),
        })
    })
}
