//! `chain_cache` on OpenSSL: the same verdicts as rustls' cache
//! (`crate::chain_cache`: only successes, at most 300 s, 256 chains),
//! consulted before OpenSSL's own chain verification. A verdict never
//! outlives the earliest notAfter in the chain OpenSSL verified: the
//! presented certificates and those it took from the trust store, the
//! anchor included (OpenSSL checks their dates too; webpki, under rustls,
//! does not date an anchor). A hit skips `X509_verify_cert` (the CA's signature,
//! the path, the name, and our checks in `PeerChecks`, all of which gave
//! this same verdict for this same chain and name before); a miss runs it
//! unchanged. The handshake signature is verified on every handshake
//! either way: OpenSSL checks CertificateVerify outside this hook.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use openssl::ex_data::Index;
use openssl::ssl::Ssl;
use openssl::x509::{X509StoreContext, X509StoreContextRef};
use rustls::pki_types::{CertificateDer, UnixTime};

use super::state::Notes;
use crate::chain_cache::Verdicts;

/// One context's verdicts.
pub(crate) struct ChainCache {
    verdicts: Verdicts,
    /// A client connection's server name, part of the key (the verdict
    /// includes the name check); `None` on a server.
    server_name: Option<Index<Ssl, String>>,
    /// Where a hit puts the cached chain's date (a miss: `PeerChecks`).
    notes: Index<Ssl, Arc<Notes>>,
    /// Chains verified in full (cache misses).
    full_verifications: AtomicU64,
}

impl ChainCache {
    /// A client's cache, keyed by chain and the connection's server name.
    pub(crate) fn client(server_name: Index<Ssl, String>, notes: Index<Ssl, Arc<Notes>>) -> Self {
        Self::new(Some(server_name), notes)
    }

    /// A server's cache of client chains (the allow-list is part of the verdict).
    pub(crate) fn server(notes: Index<Ssl, Arc<Notes>>) -> Self {
        Self::new(None, notes)
    }

    fn new(server_name: Option<Index<Ssl, String>>, notes: Index<Ssl, Arc<Notes>>) -> Self {
        Self {
            verdicts: Verdicts::default(),
            server_name,
            notes,
            full_verifications: AtomicU64::new(0),
        }
    }

    /// Chains verified in full so far.
    #[cfg(test)]
    pub(crate) fn full_verifications(&self) -> u64 {
        self.full_verifications.load(Ordering::Relaxed)
    }

    /// OpenSSL's verdict on the chain in `ctx`, from the cache or in full.
    pub(crate) fn verify(&self, ctx: &mut X509StoreContextRef) -> bool {
        let chain = super::ffi::presented_chain(ctx);
        let ssl = X509StoreContext::ssl_idx()
            .ok()
            .and_then(|ssl| ctx.ex_data(ssl));
        let name = self.server_name.and_then(|index| {
            ssl.and_then(|ssl| ssl.ex_data(index))
                .map(|name| name.as_bytes().to_vec())
        });
        let notes = ssl.and_then(|ssl| ssl.ex_data(self.notes)).cloned();
        if self.server_name.is_some() && name.is_none() {
            // No name to key on: verify in full, remember nothing.
            return self.verify_in_full(ctx);
        }
        let key = Verdicts::key(name.iter().chain(&chain).map(Vec::as_slice));
        let now = UnixTime::now();
        if !chain.is_empty() {
            if let Some(chain_not_after) = self.verdicts.chain_not_after(&key, now) {
                // The sessions of this handshake end with the chain
                // verified before, as they would after a miss.
                if let Some(notes) = notes {
                    notes.verified(chain_not_after);
                }
                return true;
            }
        }
        let accepted = self.verify_in_full(ctx);
        if !accepted || chain.is_empty() {
            return accepted;
        }
        let verified: Vec<Vec<u8>> = ctx
            .chain()
            .map(|built| built.iter().filter_map(|c| c.to_der().ok()).collect())
            .unwrap_or_default();
        // No built chain to date: nothing is remembered.
        if let Some((leaf, rest)) = verified.split_first() {
            let rest: Vec<CertificateDer<'_>> = rest
                .iter()
                .map(|der| CertificateDer::from(der.as_slice()))
                .collect();
            self.verdicts
                .remember(key, &CertificateDer::from(leaf.as_slice()), &rest, now);
        }
        accepted
    }

    /// The latest Unix second until which any verdict holds.
    #[cfg(test)]
    pub(crate) fn latest_expiry(&self) -> Option<u64> {
        self.verdicts.latest_expiry()
    }

    fn verify_in_full(&self, ctx: &mut X509StoreContextRef) -> bool {
        self.full_verifications.fetch_add(1, Ordering::Relaxed);
        ctx.verify_cert().unwrap_or(false)
    }
}

impl std::fmt::Debug for ChainCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainCache")
            .field("client", &self.server_name.is_some())
            .field("full_verifications", &self.full_verifications)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::certs::{self, CertBundle, CertOptions};
    use crate::{Context, Error, Implementation, PemSource};

    fn server(bundle: &CertBundle, implementation: Implementation, mtls: &[&str]) -> Context {
        let mut config = bundle.server_config();
        config.implementation = implementation;
        if !mtls.is_empty() {
            config.trusted_cas = vec![PemSource::inline(bundle.ca.cert.clone())];
            config.require_client_cert = true;
            config.allowed_identities = mtls.iter().map(|s| s.to_string()).collect();
        }
        Context::server(&config).expect("server context")
    }

    /// A client Context without `server_name`: each connection checks the
    /// host of its peer label, so one cache sees several names. Without
    /// resumption, so that every handshake presents and checks a chain.
    fn client(bundle: &CertBundle, implementation: Implementation, cache: bool) -> Context {
        let mut config = bundle.mtls_client_config();
        config.implementation = implementation;
        config.chain_cache = cache;
        config.resumption = false;
        Context::client(&config).expect("client context")
    }

    /// One handshake and PING/PONG over a pipe; the client's result.
    async fn exchange(server: &Context, client: &Context, host: &str) -> Result<(), Error> {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let serve = async {
            let mut tunnel = server.accept(a, "test-client").await?;
            let mut ping = [0u8; 4];
            tunnel.read_exact(&mut ping).await?;
            tunnel.write_all(b"PONG").await?;
            Ok::<_, Error>(())
        };
        let call = async {
            let mut tunnel = client.connect(b, format!("{host}:443")).await?;
            tunnel.write_all(b"PING").await?;
            let mut pong = [0u8; 4];
            tunnel.read_exact(&mut pong).await?;
            Ok::<_, Error>(())
        };
        let (served, called) =
            tokio::time::timeout(Duration::from_secs(10), async { tokio::join!(serve, call) })
                .await
                .expect("handshake within 10 s");
        called.and(served)
    }

    #[tokio::test]
    async fn a_reconnecting_client_verifies_a_chain_once_per_server_name() {
        let bundle = certs::generate(&CertOptions::default()).expect("test PKI");
        let server = server(&bundle, Implementation::Rustls, &[]);
        let client = client(&bundle, Implementation::Openssl, true);
        for _ in 0..3 {
            exchange(&server, &client, "localhost")
                .await
                .expect("localhost");
        }
        assert_eq!(client.openssl_full_chain_verifications(), Some(1));
        // The name is part of the verdict: another name in the certificate
        // is checked in full once, then cached too.
        for _ in 0..2 {
            exchange(&server, &client, "127.0.0.1")
                .await
                .expect("127.0.0.1");
        }
        assert_eq!(client.openssl_full_chain_verifications(), Some(2));
        // A name the certificate does not carry fails every time: the
        // chain's cached verdicts for other names do not count, and a
        // refusal is never remembered.
        for attempt in 3..5 {
            let refused = exchange(&server, &client, "example.com").await;
            assert!(refused.is_err(), "example.com accepted: {refused:?}");
            assert_eq!(client.openssl_full_chain_verifications(), Some(attempt));
        }
    }

    #[tokio::test]
    async fn a_server_verifies_a_client_chain_once_and_keeps_refusing_one_not_allowed() {
        let bundle = certs::generate(&CertOptions::default()).expect("test PKI");
        let allowed = server(&bundle, Implementation::Openssl, &["client"]);
        let client = client(&bundle, Implementation::Rustls, true);
        for _ in 0..3 {
            exchange(&allowed, &client, "localhost")
                .await
                .expect("allowed client");
        }
        assert_eq!(allowed.openssl_full_chain_verifications(), Some(1));
        let strict = server(&bundle, Implementation::Openssl, &["somebody-else"]);
        for attempt in 1..3 {
            let refused = exchange(&strict, &client, "localhost").await;
            assert!(refused.is_err(), "a client not on the allow-list got in");
            assert_eq!(strict.openssl_full_chain_verifications(), Some(attempt));
        }
    }

    #[tokio::test]
    async fn without_the_cache_no_hook_is_installed_and_every_handshake_works() {
        let bundle = certs::generate(&CertOptions::default()).expect("test PKI");
        let server = server(&bundle, Implementation::Openssl, &[]);
        let client = client(&bundle, Implementation::Openssl, false);
        assert_eq!(client.openssl_full_chain_verifications(), None);
        for _ in 0..2 {
            exchange(&server, &client, "localhost")
                .await
                .expect("handshake");
        }
        let refused = exchange(&server, &client, "example.com").await;
        assert!(
            refused.is_err(),
            "a wrong name was accepted without the cache"
        );
    }

    /// A CA (PEM) whose validity ends `ca_secs` from now, and a server
    /// leaf (PEM, key) for localhost it signed that outlives it.
    fn pki_with_short_lived_ca(ca_secs: i64) -> (String, String, String, i64) {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let now = time::OffsetDateTime::now_utc();
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.distinguished_name
            .push(DnType::CommonName, "short-lived CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.not_before = now - time::Duration::days(1);
        ca.not_after = now + time::Duration::seconds(ca_secs);
        let ca_pem = ca.self_signed(&ca_key).expect("CA").pem();
        let leaf_key = KeyPair::generate().expect("leaf key");
        let mut leaf = CertificateParams::new(vec!["localhost".to_string()]).expect("leaf params");
        leaf.not_before = now - time::Duration::hours(1);
        leaf.not_after = now + time::Duration::days(30);
        let leaf_pem = leaf
            .signed_by(&leaf_key, &Issuer::new(ca.clone(), &ca_key))
            .expect("leaf")
            .pem();
        let ca_not_after = ca.not_after.unix_timestamp();
        (ca_pem, leaf_pem, leaf_key.serialize_pem(), ca_not_after)
    }

    /// OpenSSL checks the anchor's dates too: a verdict must not outlive
    /// the anchor of the chain it verified, though the leaf (all the peer
    /// presents) lives on.
    #[tokio::test]
    async fn a_verdict_never_outlives_the_trust_anchor() {
        let (ca, leaf, key, ca_not_after) = pki_with_short_lived_ca(150);
        let server = Context::server(&crate::Config {
            certificate: Some(PemSource::inline(leaf)),
            private_key: Some(PemSource::inline(key)),
            ..crate::Config::default()
        })
        .expect("server context");
        let client = crate::Config {
            implementation: Implementation::Openssl,
            trusted_cas: vec![PemSource::inline(ca)],
            resumption: false,
            ..crate::Config::default()
        };
        let client = Context::client(&client).expect("client context");
        exchange(&server, &client, "localhost")
            .await
            .expect("handshake");
        let until = client
            .openssl_chain_cache_latest_expiry()
            .expect("a verdict");
        assert!(
            until <= u64::try_from(ca_not_after).expect("after 1970"),
            "verdict until {until}, anchor expires {ca_not_after}"
        );
    }
}
