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

use crate::chain_cache::ChainCache;
use crate::config::{Config, Implementation, PemSource};
use crate::error::Error;
use crate::kx::KeyExchange;
use crate::legacy::{LegacyClientVerifier, LegacyServerVerifier};
use crate::pki::{load_certificates, load_certified_key};
use crate::tunnel::Tunnel;
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
}

#[derive(Debug)]
struct Inner {
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

const SERVER_ONLY: [&str; 3] = [
    "require_client_cert",
    "allowed_identities",
    "dangerous.client_certs_from_system_roots",
];
const CLIENT_ONLY: [&str; 3] = [
    "server_name",
    "dangerous.accept_cn_only_certificates",
    "dangerous.skip_server_name_check",
];

impl Context {
    /// Builds a server Context, checking every field.
    pub fn server(config: &Config) -> Result<Context, Error> {
        Ok(Context::new(
            TlsSide::Server(server_tls(config)?),
            config,
            None,
        ))
    }

    /// Builds a client Context, checking every field.
    pub fn client(config: &Config) -> Result<Context, Error> {
        let (tls, server_name) = client_tls(config)?;
        Ok(Context::new(TlsSide::Client(tls), config, server_name))
    }

    fn new(tls: TlsSide, config: &Config, server_name: Option<ServerName<'static>>) -> Context {
        Context {
            inner: Arc::new(Inner {
                tls,
                server_name,
                handshake_timeout: config.handshake_timeout(),
                key_exchange: config.key_exchange.clone(),
            }),
        }
    }

    /// Client or server.
    pub fn role(&self) -> Role {
        match self.inner.tls {
            TlsSide::Client(_) => Role::Client,
            TlsSide::Server(_) => Role::Server,
        }
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

    /// The rustls server configuration, for libraries (hyper, tonic) that take one.
    pub fn rustls_server_config(&self) -> Option<Arc<ServerConfig>> {
        match &self.inner.tls {
            TlsSide::Server(config) => Some(config.clone()),
            TlsSide::Client(_) => None,
        }
    }

    /// The rustls client configuration, for libraries that take one.
    pub fn rustls_client_config(&self) -> Option<Arc<ClientConfig>> {
        match &self.inner.tls {
            TlsSide::Client(config) => Some(config.clone()),
            TlsSide::Server(_) => None,
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

    /// Wraps and handshakes a server transport; see [`Context::connect`].
    pub async fn accept<IO>(&self, io: IO, peer: impl Into<String>) -> Result<Tunnel<IO>, Error>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        self.connect(io, peer).await
    }
}

/// Checks `config` as a server's and builds its rustls configuration.
pub(crate) fn server_tls(config: &Config) -> Result<Arc<ServerConfig>, Error> {
    for (field, set) in CLIENT_ONLY.iter().zip([
        config.server_name.is_some(),
        config.dangerous.accept_cn_only_certificates,
        config.dangerous.skip_server_name_check,
    ]) {
        if set {
            return Err(Error::config(
                field,
                "is a client option; remove it from a server configuration",
            ));
        }
    }
    let provider = build_provider(config)?;
    let (Some(cert), Some(key)) = (&config.certificate, &config.private_key) else {
        return Err(Error::config(
            if config.certificate.is_none() {
                "certificate"
            } else {
                "private_key"
            },
            "a server needs both `certificate` and `private_key` \
                 (make a test set with `cipherlink certs --out DIR`)",
        ));
    };
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
    if config.resumption {
        // Stateless tickets scale with connection count; the default
        // stateful cache holds only 256 sessions.
        tls.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new().map_err(Error::Build)?;
        tls.send_tls13_tickets = 1;
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
    for (field, set) in SERVER_ONLY.iter().zip([
        config.require_client_cert,
        !config.allowed_identities.is_empty(),
        config.dangerous.client_certs_from_system_roots,
    ]) {
        if set {
            return Err(Error::config(
                field,
                "is a server option; remove it from a client configuration",
            ));
        }
    }
    let provider = build_provider(config)?;
    if config.trusted_cas.is_empty() {
        return Err(Error::config(
            "trusted_cas",
            "a client needs the CA that signed the server's certificate \
                 (a PEM file such as ca.crt, or \"system\" for the OS roots)",
        ));
    }
    if config.dangerous.skip_server_name_check && trusts_system_roots(config) {
        return Err(Error::config(
            "dangerous.skip_server_name_check",
            "is refused with `trusted_cas = [\"system\"]`: without the name check, any \
             certificate any public CA issued to anyone would be accepted. Trust the private \
             CA that issues your servers' certificates instead",
        ));
    }
    let (roots, anchors) = trust_anchors("trusted_cas", config)?;
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| Error::config("trusted_cas", e.to_string()))?;
    let verifier: Arc<dyn ServerCertVerifier> = if config.dangerous.accept_cn_only_certificates
        || config.dangerous.skip_server_name_check
    {
        Arc::new(CnFallbackServerVerifier {
            inner: webpki,
            any_name: config.dangerous.skip_server_name_check,
        })
    } else {
        webpki
    };
    let verifier: Arc<dyn ServerCertVerifier> = if config.dangerous.accept_legacy_certificates {
        Arc::new(LegacyServerVerifier {
            inner: verifier,
            anchors,
            algs: provider.signature_verification_algorithms,
            check_name: !config.dangerous.skip_server_name_check,
        })
    } else {
        verifier
    };
    let verifier = Arc::new(ChainCache::new(verifier));
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(protocol_versions(config))
        .map_err(Error::Build)?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut tls = match (&config.certificate, &config.private_key) {
        (Some(cert), Some(key)) => {
            let certified = load_certified_key(
                &provider,
                cert,
                key,
                config.dangerous.accept_legacy_certificates,
            )?;
            builder.with_client_cert_resolver(Arc::new(SingleCertAndKey::from(certified)))
        }
        (None, None) => builder.with_no_client_auth(),
        (Some(_), None) => {
            return Err(Error::config(
                "private_key",
                "a client certificate needs its private key",
            ))
        }
        (None, Some(_)) => {
            return Err(Error::config(
                "certificate",
                "a client private key needs its certificate",
            ))
        }
    };
    tls.alpn_protocols = alpn(config);
    if !config.resumption {
        tls.resumption = Resumption::disabled();
    }
    let server_name = match &config.server_name {
        Some(name) => Some(ServerName::try_from(name.clone()).map_err(|_| {
            Error::config(
                "server_name",
                format!("{name:?} is neither a DNS name nor an IP address"),
            )
        })?),
        None => None,
    };
    Ok((Arc::new(tls), server_name))
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
            "\"openssl\" is not built into this cipherlink yet; valid: \"rustls\"",
        ));
    }
    if config.key_exchange.is_empty() {
        return Err(Error::config(
            "key_exchange",
            "is empty; name at least one group, e.g. [\"X25519MLKEM768\", \"X25519\"]",
        ));
    }
    for (i, group) in config.key_exchange.iter().enumerate() {
        if config.key_exchange[..i].contains(group) {
            return Err(Error::config(
                "key_exchange",
                format!("{group} is listed twice"),
            ));
        }
    }
    config.compliance.check(&config.key_exchange)?;
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.cipher_suites =
        crate::hkdf::with_prepared_hkdf(&preferred_cipher_suites(&provider.cipher_suites));
    // Each group names one of aws-lc-rs' own implementations in rustls.
    provider.kx_groups = config
        .key_exchange
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

fn trusts_system_roots(config: &Config) -> bool {
    config.trusted_cas.iter().any(PemSource::is_system_roots)
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
    if config.trusted_cas.is_empty() {
        if config.require_client_cert {
            return Err(Error::config(
                "require_client_cert",
                "needs `trusted_cas`: the CA that signs client certificates",
            ));
        }
        if !config.allowed_identities.is_empty() {
            return Err(Error::config(
                "allowed_identities",
                "needs `require_client_cert` and `trusted_cas`",
            ));
        }
        return Ok(WebPkiClientVerifier::no_client_auth());
    }
    if !config.allowed_identities.is_empty() && !config.require_client_cert {
        return Err(Error::config(
            "allowed_identities",
            "needs `require_client_cert = true`: an allow-list is pointless if clients may skip certificates",
        ));
    }
    if trusts_system_roots(config) && !config.dangerous.client_certs_from_system_roots {
        return Err(Error::config(
            "trusted_cas",
            "\"system\" on a server would authenticate clients by the system roots, which \
             vouch for public web sites, not for your clients: anyone holding any public \
             certificate would get in. Name the CA that issues client certificates, or set \
             `dangerous.client_certs_from_system_roots` if that is really meant",
        ));
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
            anchors,
            algs: provider.signature_verification_algorithms,
        })
    } else {
        verifier
    };
    let verifier: Arc<dyn ClientCertVerifier> = if config.allowed_identities.is_empty() {
        verifier
    } else {
        Arc::new(AllowListClientVerifier {
            inner: verifier,
            allowed: config.allowed_identities.clone(),
        })
    };
    Ok(Arc::new(ChainCache::new(verifier)))
}
