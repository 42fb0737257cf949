//! The OpenSSL implementation (`implementation = "openssl"`): the same
//! [`Config`] turned into an OpenSSL 3.6 `SslContext` (built from source by
//! `openssl-src`; it has ML-KEM and X25519MLKEM768 natively), so that a
//! Tunnel behaves the same on either library.
//!
//! Every field means what it means on rustls, or the Context is refused
//! naming the field. Where OpenSSL's defaults differ from rustls', they are
//! set to rustls' behaviour:
//! - the server name is checked against subjectAltName only; the subject CN
//!   stands in only for a certificate with no subjectAltName extension, with
//!   `dangerous.accept_cn_only_certificates` or for the X.509 v1 leaves
//!   `dangerous.accept_legacy_certificates` admits (`peer_checks.rs`);
//! - X.509 v1 certificates (which OpenSSL accepts silently, anywhere in a
//!   chain) are refused unless `dangerous.accept_legacy_certificates`, and
//!   then admitted only as a leaf issued by a trusted CA itself;
//! - what a system configuration (`OPENSSL_CONF`) may set is set back
//!   (`undo_system_config`): options (psk_ke resumption, no extended
//!   master secret, TLS versions switched off), security level, signature
//!   algorithms, verify mode, record padding;
//! - a stream that ends without close_notify is an error, not a clean end
//!   (`stream.rs`);
//! - a resumable session ends with the peer certificates it was verified
//!   with (`session_cache.rs`, and the server's ticket callback in `ffi.rs`);
//! - `"system"` roots are the ones rustls reads (`rustls-native-certs`),
//!   since the vendored OpenSSL's own default folder is not the system's;
//! - a client offers a key share for its first group only and the server
//!   asks for another (HelloRetryRequest) when needed, as rustls does;
//! - buffers are released while a connection is idle (`SSL_MODE_RELEASE_BUFFERS`);
//! - `chain_cache` keeps verified chains as rustls' cache does
//!   (`chain_cache.rs`);
//! - a server resumes sessions that carry a client certificate (OpenSSL
//!   needs a session id context for that; rustls needs nothing).

mod chain_cache;
pub(crate) mod errors;
mod ffi;
mod peer_checks;
pub mod probe;
mod server_hello;
mod session_cache;
mod state;
pub(crate) mod stream;

use std::net::IpAddr;
use std::sync::Arc;

use openssl::ssl::{
    AlpnError, ClientHelloResponse, Ssl, SslContext, SslContextBuilder, SslMethod, SslMode,
    SslOptions, SslSessionCacheMode, SslVerifyMode, SslVersion,
};
use openssl::x509::store::{X509Store, X509StoreBuilder};
use openssl::x509::verify::X509CheckFlags;
use openssl::x509::X509;

use crate::config::{Config, PemSource};
use crate::error::{Error, ImplementationDetail};
use crate::kx::KeyExchange;
use crate::pki::{load_certificates, load_private_key};
use crate::validate::{self, ClientAuth};
use chain_cache::ChainCache;
use errors::Verdict;
use peer_checks::{PeerChecks, RustlsVerifier};
use session_cache::SessionCache;
use state::{Indices, Notes};

/// TLS 1.3 suites in rustls' order (AES-128-GCM first; see `context.rs`).
const TLS13_SUITES: &str =
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";
/// TLS 1.2 suites: the ECDHE AEAD suites rustls offers, in its order.
const TLS12_SUITES: &str = "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256:\
ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256:\
ECDHE-RSA-CHACHA20-POLY1305";

/// The handshake signature schemes rustls (aws-lc-rs) offers and accepts,
/// in its order, as OpenSSL names them.
const SIGNATURE_SCHEMES: &str = "ecdsa_secp384r1_sha384:ecdsa_secp256r1_sha256:\
ecdsa_secp521r1_sha512:ed25519:rsa_pss_rsae_sha512:rsa_pss_rsae_sha384:rsa_pss_rsae_sha256:\
rsa_pkcs1_sha512:rsa_pkcs1_sha384:rsa_pkcs1_sha256:mldsa44:mldsa65:mldsa87";

/// OpenSSL's own defaults for a new context (`SSL_CTX_new_ex`), which a
/// system configuration may have changed: no compression, middlebox
/// compatibility on.
const OPENSSL_DEFAULT_OPTIONS: SslOptions =
    SslOptions::NO_COMPRESSION.union(SslOptions::ENABLE_MIDDLEBOX_COMPAT);

/// OpenSSL's security level 2 (112-bit security: RSA and DH keys of 2048
/// bits and more, no SHA-1 signatures): what rustls' floor is at least.
const SECURITY_LEVEL: u32 = 2;

/// What a server Context holds for OpenSSL.
pub(crate) struct ServerSide {
    context: SslContext,
    indices: Indices,
    /// Also owned by `context`; kept here for the tests' counts.
    #[cfg_attr(not(test), allow(dead_code))]
    chain_cache: Option<Arc<ChainCache>>,
}

/// What a client Context holds for OpenSSL.
pub(crate) struct ClientSide {
    context: SslContext,
    indices: Indices,
    /// Also owned by `context`; kept here for the tests' counts.
    #[cfg_attr(not(test), allow(dead_code))]
    chain_cache: Option<Arc<ChainCache>>,
    sessions: Option<Arc<SessionCache>>,
    check_name: bool,
    first_group: KeyExchange,
}

impl std::fmt::Debug for ServerSide {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OpenSSL server")
    }
}

impl std::fmt::Debug for ClientSide {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OpenSSL client")
    }
}

fn build(what: &'static str) -> impl Fn(openssl::error::ErrorStack) -> Error {
    move |stack| Error::Implementation {
        implementation: "openssl",
        what,
        detail: ImplementationDetail::openssl(stack.to_string()),
    }
}

/// The OpenSSL version string, e.g. `OpenSSL 3.6.3 ...`.
pub fn version() -> &'static str {
    openssl::version::version()
}

/// Checks `config` as a server's and builds its OpenSSL context.
pub(crate) fn server(config: &Config) -> Result<ServerSide, Error> {
    let (cert, key) = validate::server(config)?;
    let auth = validate::client_auth(config)?;
    let indices = state::indices()?;
    let mut builder = common(config, SslMethod::tls_server())?;
    own_identity(&mut builder, config, cert, key)?;
    let mut chain_cache = None;
    // A system configuration's `VerifyMode` would ask for one otherwise.
    builder.set_verify(SslVerifyMode::NONE);
    if auth != ClientAuth::None {
        let (store, cas) = trust_store(config)?;
        builder
            .set_verify_cert_store(store)
            .map_err(build("trusted_cas"))?;
        for ca in &cas {
            // Named in the CertificateRequest, as rustls' root hints are.
            builder.add_client_ca(ca).map_err(build("trusted_cas"))?;
        }
        let mut mode = SslVerifyMode::PEER;
        if auth == ClientAuth::Required {
            mode |= SslVerifyMode::FAIL_IF_NO_PEER_CERT;
        }
        let rustls = RustlsVerifier::Client(crate::context::client_cert_verifier(
            config,
            &crate::context::verification_provider(),
        )?);
        let checks = PeerChecks::new(config, rustls, &indices, None, &cas);
        builder.set_verify_callback(mode, move |ok, store| checks.check(ok, store));
        if config.chain_cache {
            let cache = Arc::new(ChainCache::server(indices.notes));
            ffi::install_chain_cache(&mut builder, indices.chain_cache, cache.clone());
            chain_cache = Some(cache);
        }
    }
    if !config.alpn.is_empty() {
        let ours: Vec<Vec<u8>> = config.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        builder.set_alpn_select_callback(move |_, offered| {
            crate::alpn::pick(&ours, offered)
                // rustls refuses a client whose list shares nothing with ours.
                .ok_or(AlpnError::ALERT_FATAL)
        });
    }
    if config.resumption {
        server_resumption(&mut builder, auth)?;
    } else {
        no_resumption(&mut builder)?;
    }
    let notes = indices.notes;
    // Called once per ClientHello: a second call on one connection is the
    // ClientHello that answers a HelloRetryRequest.
    builder.set_client_hello_callback(move |ssl, _alert| {
        if let Some(notes) = ssl.ex_data(notes) {
            notes
                .hellos
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(ClientHelloResponse::SUCCESS)
    });
    Ok(ServerSide {
        context: builder.build(),
        indices,
        chain_cache,
    })
}

/// Stateless tickets, one per handshake as the rustls server sends; a
/// ticket whose client certificate has expired since is not resumed.
fn server_resumption(builder: &mut SslContextBuilder, auth: ClientAuth) -> Result<(), Error> {
    builder.set_num_tickets(1).map_err(build("resumption"))?;
    builder.set_session_cache_mode(SslSessionCacheMode::OFF);
    // OpenSSL refuses to resume a session that carries a verified client
    // certificate ("session id context uninitialized", an internal_error
    // alert to the client) unless the context names the sessions it
    // accepts. Random per Context: its sessions resume only here, under the
    // trust anchors and allow-list they were verified with (its ticket keys
    // are per Context too).
    let mut id_context = [0u8; 32];
    openssl::rand::rand_bytes(&mut id_context).map_err(build("resumption"))?;
    builder
        .set_session_id_context(&id_context)
        .map_err(build("resumption"))?;
    if auth != ClientAuth::None {
        ffi::refuse_tickets_past_peer_expiry(builder);
    }
    Ok(())
}

/// Checks `config` as a client's and builds its OpenSSL context.
pub(crate) fn client(config: &Config) -> Result<ClientSide, Error> {
    let own = validate::client(config)?;
    let indices = state::indices()?;
    let mut builder = common(config, SslMethod::tls_client())?;
    if let Some((cert, key)) = own {
        own_identity(&mut builder, config, cert, key)?;
    }
    let (store, cas) = trust_store(config)?;
    builder
        .set_verify_cert_store(store)
        .map_err(build("trusted_cas"))?;
    let rustls = RustlsVerifier::Server(crate::context::server_cert_verifier(
        config,
        &crate::context::verification_provider(),
    )?);
    let checks = PeerChecks::new(config, rustls, &indices, Some(indices.server_name), &cas);
    builder.set_verify_callback(SslVerifyMode::PEER, move |ok, store| {
        checks.check(ok, store)
    });
    let chain_cache = if config.chain_cache {
        let cache = Arc::new(ChainCache::client(indices.server_name, indices.notes));
        ffi::install_chain_cache(&mut builder, indices.chain_cache, cache.clone());
        Some(cache)
    } else {
        None
    };
    if !config.alpn.is_empty() {
        builder
            .set_alpn_protos(&crate::alpn::wire(&config.alpn))
            .map_err(build("alpn"))?;
    }
    let sessions = if config.resumption {
        Some(client_resumption(&mut builder, indices))
    } else {
        no_resumption(&mut builder)?;
        None
    };
    Ok(ClientSide {
        context: builder.build(),
        indices,
        chain_cache,
        sessions,
        check_name: !config.dangerous.skip_server_name_check,
        first_group: first_group(config)?,
    })
}

/// The most preferred group (`validate::groups` has refused an empty list).
fn first_group(config: &Config) -> Result<KeyExchange, Error> {
    config
        .groups()
        .first()
        .copied()
        .ok_or_else(|| Error::config("key_exchange", "is empty"))
}

/// The client's session cache: ours only (OpenSSL's internal store would
/// keep up to 20,480 sessions per Context that nothing reads), each session
/// dated by the chain the server was verified through (the trust anchor
/// and intermediates from the store included: a full handshake would fail
/// once one of them expired).
fn client_resumption(builder: &mut SslContextBuilder, indices: Indices) -> Arc<SessionCache> {
    let cache = Arc::new(SessionCache::default());
    let store = cache.clone();
    builder.set_session_cache_mode(
        SslSessionCacheMode::CLIENT | SslSessionCacheMode::NO_INTERNAL_STORE,
    );
    builder.set_new_session_callback(move |ssl, session| {
        let Some(server) = ssl.ex_data(indices.server_name) else {
            return;
        };
        let until = if ssl.session_reused() {
            // The new ticket of a resumed session inherits its date.
            ssl.ex_data(indices.offered_until).copied()
        } else {
            // The chain verified in this handshake, anchor included
            // (`PeerChecks`, or the chain cache's verdict on a hit).
            ssl.ex_data(indices.notes)
                .and_then(|notes| notes.verified_until())
        };
        // Undated: not kept.
        store.put(server, &session, until.unwrap_or(0));
    });
    cache
}

/// Versions, groups, suites and buffer policy, the same for both roles.
fn common(config: &Config, method: SslMethod) -> Result<SslContextBuilder, Error> {
    validate::groups(config)?;
    let mut builder = SslContextBuilder::new(method).map_err(build("context"))?;
    let lowest = if config.allow_tls12 {
        SslVersion::TLS1_2
    } else {
        SslVersion::TLS1_3
    };
    builder
        .set_min_proto_version(Some(lowest))
        .map_err(build("allow_tls12"))?;
    builder
        .set_max_proto_version(Some(SslVersion::TLS1_3))
        .map_err(build("allow_tls12"))?;
    let offered = config.groups();
    for group in &offered {
        if !probe::supports_group(*group) {
            return Err(Error::config(
                "key_exchange",
                format!(
                    "{group} is not available in {} here; `cipherlink info` lists what is",
                    version()
                ),
            ));
        }
    }
    let groups = offered
        .iter()
        .map(|kx| kx.name())
        .collect::<Vec<_>>()
        .join(":");
    builder
        .set_groups_list(&groups)
        .map_err(build("key_exchange"))?;
    builder
        .set_ciphersuites(TLS13_SUITES)
        .map_err(build("cipher suites"))?;
    builder
        .set_cipher_list(TLS12_SUITES)
        .map_err(build("cipher suites"))?;
    undo_system_config(&mut builder)?;
    builder.set_mode(SslMode::RELEASE_BUFFERS);
    if let Some(path) = &config.dangerous.key_log_file {
        let file = crate::key_log::KeyLogFile::open(path)?;
        builder.set_keylog_callback(move |_, line| file.write_line(line));
    }
    Ok(builder)
}

/// OpenSSL applies the system configuration (`OPENSSL_CONF`, its
/// `system_default` section) to every new context, whatever library
/// context it is made in (libssl keeps that section process-wide), so it
/// cannot be kept out; what it can set is set back here. Versions, groups,
/// suites (with the security level `@SECLEVEL` sets), tickets and the
/// verify mode are set by the callers after this. Left to the system
/// configuration: which providers implement the algorithms (e.g. FIPS).
fn undo_system_config(builder: &mut SslContextBuilder) -> Result<(), Error> {
    // Every option (`Options`, `Protocol`'s SSL_OP_NO_TLSv1_3, ...), then
    // exactly ours: no renegotiation, no compression, as in rustls;
    // extended master secret and encrypt-then-MAC stay on.
    builder.clear_options(SslOptions::from_bits_retain(!0));
    builder.set_options(OPENSSL_DEFAULT_OPTIONS | SslOptions::NO_RENEGOTIATION);
    builder.set_security_level(SECURITY_LEVEL);
    builder
        .set_sigalgs_list(SIGNATURE_SCHEMES)
        .map_err(build("signature algorithms"))?;
    ffi::undo_system_config(builder, SIGNATURE_SCHEMES).map_err(build("signature algorithms"))
}

fn no_resumption(builder: &mut SslContextBuilder) -> Result<(), Error> {
    builder.set_session_cache_mode(SslSessionCacheMode::OFF);
    builder.set_options(SslOptions::NO_TICKET);
    builder.set_num_tickets(0).map_err(build("resumption"))
}

/// Our certificate chain and key, with the same checks as on rustls.
fn own_identity(
    builder: &mut SslContextBuilder,
    config: &Config,
    cert: &PemSource,
    key: &PemSource,
) -> Result<(), Error> {
    let chain = load_certificates("certificate", cert)?;
    let key_der = load_private_key("private_key", key)?;
    if crate::legacy::is_v1(chain[0].as_ref()) && !config.dangerous.accept_legacy_certificates {
        return Err(crate::pki::v1_refused(cert));
    }
    crate::pki::check_currently_valid("certificate", cert, &chain[0])?;
    let mut certs = chain.iter().map(|der| {
        X509::from_der(der.as_ref()).map_err(|e| {
            Error::config(
                "certificate",
                format!("{}: OpenSSL cannot read it ({e})", cert.describe()),
            )
        })
    });
    let leaf = certs
        .next()
        .ok_or_else(|| Error::config("certificate", "no certificate"))??;
    builder
        .set_certificate(&leaf)
        .map_err(build("certificate"))?;
    for extra in certs {
        builder
            .add_extra_chain_cert(extra?)
            .map_err(build("certificate"))?;
    }
    let pkey = openssl::pkey::PKey::private_key_from_der(key_der.secret_der()).map_err(|e| {
        Error::config(
            "private_key",
            format!(
                "{}: key type not supported by OpenSSL ({e})",
                key.describe()
            ),
        )
    })?;
    // OpenSSL checks the key against the certificate already set here, and
    // again below; either failure is the same mistake.
    let mismatch = || {
        Error::config(
            "private_key",
            format!(
                "{} does not match the certificate in {}: pass the key that was generated with that certificate",
                key.describe(),
                cert.describe()
            ),
        )
    };
    builder.set_private_key(&pkey).map_err(|_| mismatch())?;
    builder.check_private_key().map_err(|_| mismatch())
}

/// The trust store of `trusted_cas`, and the explicit CAs in it.
fn trust_store(config: &Config) -> Result<(X509Store, Vec<X509>), Error> {
    let mut store = X509StoreBuilder::new().map_err(build("trusted_cas"))?;
    let mut explicit = Vec::new();
    for source in &config.trusted_cas {
        let ders = if source.is_system_roots() {
            let native = rustls_native_certs::load_native_certs();
            if native.certs.is_empty() {
                return Err(Error::config(
                    "trusted_cas",
                    "\"system\" found no CA certificates on this machine (install ca-certificates)",
                ));
            }
            native.certs
        } else {
            load_certificates("trusted_cas", source)?
        };
        for der in &ders {
            let Ok(ca) = X509::from_der(der.as_ref()) else {
                if source.is_system_roots() {
                    continue;
                }
                return Err(Error::config(
                    "trusted_cas",
                    format!(
                        "{}: OpenSSL cannot read a certificate in it",
                        source.describe()
                    ),
                ));
            };
            // A system bundle may repeat a root; OpenSSL refuses duplicates.
            if store.add_cert(ca.clone()).is_ok() && !source.is_system_roots() {
                explicit.push(ca);
            }
        }
    }
    Ok((store.build(), explicit))
}

/// What a connection's callbacks report to the code that drives it.
pub(crate) struct Watch {
    pub(crate) verdict: Arc<Verdict>,
    pub(crate) notes: Arc<Notes>,
}

/// A connection object of `context` with its per-connection state.
fn connection(context: &SslContext, indices: &Indices) -> Result<(Ssl, Watch), Error> {
    let mut ssl = Ssl::new(context).map_err(build("connection"))?;
    let watch = Watch {
        verdict: Arc::new(Verdict::default()),
        notes: Arc::new(Notes::default()),
    };
    ssl.set_ex_data(indices.verdict, watch.verdict.clone());
    ssl.set_ex_data(indices.notes, watch.notes.clone());
    ffi::watch_server_hello(&mut ssl, &watch.notes);
    Ok((ssl, watch))
}

impl ServerSide {
    /// A connection object for one accepted transport.
    pub(crate) fn connection(&self) -> Result<(Ssl, Watch), Error> {
        connection(&self.context, &self.indices)
    }
}

impl ClientSide {
    /// A connection object for a transport to `host` (the server name).
    pub(crate) fn connection(&self, host: &str) -> Result<(Ssl, Watch), Error> {
        let (mut ssl, watch) = connection(&self.context, &self.indices)?;
        ssl.set_ex_data(self.indices.server_name, host.to_string());
        let ip = host.parse::<IpAddr>().ok();
        if ip.is_none() {
            // SNI carries DNS names only (RFC 6066).
            ssl.set_hostname(host).map_err(build("server_name"))?;
        }
        if self.check_name {
            let param = ssl.param_mut();
            // The CN never counts here: where it may stand in, the verify
            // callback says so (`peer_checks`).
            param.set_hostflags(
                X509CheckFlags::NO_PARTIAL_WILDCARDS | X509CheckFlags::NEVER_CHECK_SUBJECT,
            );
            match ip {
                Some(ip) => param.set_ip(ip),
                None => param.set_host(host),
            }
            .map_err(build("server_name"))?;
        }
        if let Some(cache) = &self.sessions {
            if let Some((session, until)) = cache.take(host) {
                if ffi::offer_session(&mut ssl, &session) {
                    ssl.set_ex_data(self.indices.offered_until, until);
                }
            }
        }
        Ok((ssl, watch))
    }

    /// The server name a connection checks, for the message of a mismatch.
    pub(crate) fn server_name<'a>(&self, ssl: &'a openssl::ssl::SslRef) -> Option<&'a str> {
        ssl.ex_data(self.indices.server_name).map(String::as_str)
    }

    /// The group the client sends a key share for: any other one agreed
    /// means the server asked again (HelloRetryRequest).
    pub(crate) fn first_group(&self) -> KeyExchange {
        self.first_group
    }
}

/// Chains a Context's OpenSSL side verified in full so far (`None`: no
/// cache, or not OpenSSL).
#[cfg(test)]
pub(crate) fn full_chain_verifications(tls: &crate::context::TlsSide) -> Option<u64> {
    use crate::context::TlsSide;
    let cache = match tls {
        TlsSide::OpensslClient(side) => side.chain_cache.as_ref(),
        TlsSide::OpensslServer(side) => side.chain_cache.as_ref(),
        _ => None,
    };
    cache.map(|c| c.full_verifications())
}

/// The latest Unix second until which a Context's OpenSSL chain cache
/// holds a verdict (`None`: no cache or no verdict, or not OpenSSL).
#[cfg(test)]
pub(crate) fn chain_cache_latest_expiry(tls: &crate::context::TlsSide) -> Option<u64> {
    use crate::context::TlsSide;
    match tls {
        TlsSide::OpensslClient(side) => side.chain_cache.as_ref()?.latest_expiry(),
        TlsSide::OpensslServer(side) => side.chain_cache.as_ref()?.latest_expiry(),
        _ => None,
    }
}

/// Sessions in a Context's OpenSSL-internal session cache.
#[cfg(test)]
pub(crate) fn internal_sessions(tls: &crate::context::TlsSide) -> Option<std::os::raw::c_long> {
    use crate::context::TlsSide;
    match tls {
        TlsSide::OpensslClient(side) => Some(ffi::internal_sessions(&side.context)),
        TlsSide::OpensslServer(side) => Some(ffi::internal_sessions(&side.context)),
        _ => None,
    }
}
