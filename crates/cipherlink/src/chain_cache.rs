//! Caches of recently verified certificate chains, for both ends.
//!
//! A peer that reconnects presents the same chain every time, and checking
//! the CA's signature on it again (an ECDSA P-256 verification is 70-100 us
//! here, a fifth of a full handshake's public-key work) proves nothing new.
//! Only the chain check is cached: the handshake signature
//! (CertificateVerify), which proves the peer holds the key *now*, is
//! verified on every handshake. A verdict lasts at most [`CHAIN_CACHE_TTL`]
//! seconds and never past the notAfter of any certificate in the chain. The Context's trust anchors
//! and allow-list are immutable, so a cached verdict cannot outlive the rules
//! it was made with. Only successes are cached: a refused chain is checked
//! again, with its full error, every time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aws_lc_rs::digest;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use crate::pki::Identity;
use crate::verify::{delegate_client_auth_policy, delegate_signature_checks};

/// How long a verified chain is trusted without re-verification, seconds.
pub(crate) const CHAIN_CACHE_TTL: u64 = 300;
/// Verdicts kept at most; the cache is emptied when full. Keys are 32-byte
/// digests, so a peer sending ever new chains costs re-verification, never
/// memory.
const CAPACITY: usize = 256;

/// Chain digest -> until when it counts as verified. Shared with the
/// OpenSSL implementation's cache (`openssl_tls::chain_cache`).
#[derive(Debug, Default)]
pub(crate) struct Verdicts(Mutex<HashMap<[u8; 32], Held>>);

/// A verdict's dates (Unix seconds).
#[derive(Debug, Clone, Copy)]
struct Held {
    /// Until when it counts: the TTL or the chain's first notAfter.
    until: u64,
    /// The earliest notAfter in the chain, which dates the sessions of
    /// the handshakes the verdict lets through.
    chain_not_after: u64,
}

impl Verdicts {
    /// SHA-256 over length-prefixed parts, so no two different inputs share a key.
    pub(crate) fn key<'a>(parts: impl Iterator<Item = &'a [u8]>) -> [u8; 32] {
        let mut ctx = digest::Context::new(&digest::SHA256);
        for part in parts {
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part);
        }
        let mut key = [0u8; 32];
        key.copy_from_slice(ctx.finish().as_ref());
        key
    }

    pub(crate) fn holds(&self, key: &[u8; 32], now: UnixTime) -> bool {
        self.chain_not_after(key, now).is_some()
    }

    /// The earliest notAfter of the chain under `key`, if its verdict holds.
    pub(crate) fn chain_not_after(&self, key: &[u8; 32], now: UnixTime) -> Option<u64> {
        let map = self.0.lock().ok()?;
        map.get(key)
            .filter(|held| now.as_secs() < held.until)
            .map(|held| held.chain_not_after)
    }

    /// The latest Unix second until which any verdict holds.
    #[cfg(all(test, feature = "openssl"))]
    pub(crate) fn latest_expiry(&self) -> Option<u64> {
        self.0.lock().ok()?.values().map(|held| held.until).max()
    }

    /// Keeps a verdict until the TTL or the first notAfter in the chain.
    pub(crate) fn remember(
        &self,
        key: [u8; 32],
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) {
        let mut chain_not_after = u64::MAX;
        for cert in std::iter::once(end_entity).chain(intermediates) {
            // A chain we cannot date is not remembered.
            let Ok(identity) = Identity::from_der(cert) else {
                return;
            };
            chain_not_after = chain_not_after.min(u64::try_from(identity.not_after).unwrap_or(0));
        }
        let until = chain_not_after.min(now.as_secs() + CHAIN_CACHE_TTL);
        if let Ok(mut map) = self.0.lock() {
            if map.len() >= CAPACITY {
                map.clear();
            }
            map.insert(
                key,
                Held {
                    until,
                    chain_not_after,
                },
            );
        }
    }
}

fn chain_parts<'a>(
    end_entity: &'a CertificateDer<'_>,
    intermediates: &'a [CertificateDer<'_>],
) -> impl Iterator<Item = &'a [u8]> {
    std::iter::once(end_entity.as_ref()).chain(intermediates.iter().map(|c| c.as_ref()))
}

/// A verifier that remembers the chains `inner` accepted: as a client's
/// [`ServerCertVerifier`] (keyed by chain and server name) or a server's
/// [`ClientCertVerifier`] (keyed by chain; any allow-list check inside
/// `inner` is part of the verdict).
#[derive(Debug)]
pub(crate) struct CachingVerifier<V: ?Sized> {
    inner: Arc<V>,
    verdicts: Verdicts,
}

impl<V: ?Sized> CachingVerifier<V> {
    pub(crate) fn new(inner: Arc<V>) -> Self {
        Self {
            inner,
            verdicts: Verdicts::default(),
        }
    }
}

impl ServerCertVerifier for CachingVerifier<dyn ServerCertVerifier> {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let name = server_name.to_str();
        let key = Verdicts::key(
            std::iter::once(name.as_bytes()).chain(chain_parts(end_entity, intermediates)),
        );
        if self.verdicts.holds(&key, now) {
            return Ok(ServerCertVerified::assertion());
        }
        let verified = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        self.verdicts.remember(key, end_entity, intermediates, now);
        Ok(verified)
    }

    delegate_signature_checks!();
}

impl ClientCertVerifier for CachingVerifier<dyn ClientCertVerifier> {
    delegate_client_auth_policy!();

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let key = Verdicts::key(chain_parts(end_entity, intermediates));
        if self.verdicts.holds(&key, now) {
            return Ok(ClientCertVerified::assertion());
        }
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        self.verdicts.remember(key, end_entity, intermediates, now);
        Ok(verified)
    }

    delegate_signature_checks!();
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::certs::{self, CertOptions};
    use crate::config::PemSource;
    use crate::pki::load_certificates;

    /// Accepts every chain and counts how often it was asked.
    #[derive(Debug, Default)]
    struct Counting(AtomicUsize);

    impl ClientCertVerifier for Counting {
        fn root_hint_subjects(&self) -> &[DistinguishedName] {
            &[]
        }

        fn verify_client_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: UnixTime,
        ) -> Result<ClientCertVerified, rustls::Error> {
            self.0.fetch_add(1, Ordering::Relaxed);
            Ok(ClientCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Err(rustls::Error::General("not used".into()))
        }

        fn verify_tls13_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Err(rustls::Error::General("not used".into()))
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            Vec::new()
        }
    }

    fn leaf(days: u32) -> CertificateDer<'static> {
        let bundle = certs::generate(&CertOptions {
            days,
            ..CertOptions::default()
        })
        .expect("certificates");
        load_certificates("test", &PemSource::inline(bundle.client.cert))
            .expect("PEM")
            .remove(0)
    }

    #[test]
    fn a_verdict_is_reused_per_chain_and_expires() {
        let inner = Arc::new(Counting::default());
        let cache = CachingVerifier::<dyn ClientCertVerifier>::new(inner.clone());
        let (a, b) = (leaf(30), leaf(30));
        let now = UnixTime::now();
        let calls = || inner.0.load(Ordering::Relaxed);

        cache.verify_client_cert(&a, &[], now).expect("a");
        cache.verify_client_cert(&a, &[], now).expect("a again");
        assert_eq!(calls(), 1, "the second look at the same chain is cached");
        cache.verify_client_cert(&b, &[], now).expect("b");
        assert_eq!(calls(), 2, "another leaf is verified");
        cache
            .verify_client_cert(&a, std::slice::from_ref(&b), now)
            .expect("a + b");
        assert_eq!(calls(), 3, "another chain is verified");
        let later = UnixTime::since_unix_epoch(std::time::Duration::from_secs(
            now.as_secs() + CHAIN_CACHE_TTL,
        ));
        cache.verify_client_cert(&a, &[], later).expect("a later");
        assert_eq!(calls(), 4, "a verdict lasts at most the TTL");
    }

    #[test]
    fn a_verdict_never_outlives_the_certificate() {
        let inner = Arc::new(Counting::default());
        let cache = CachingVerifier::<dyn ClientCertVerifier>::new(inner.clone());
        let short = leaf(1);
        let not_after = Identity::from_der(&short).expect("parse").not_after;
        let just_before = UnixTime::since_unix_epoch(std::time::Duration::from_secs(
            u64::try_from(not_after).expect("after 1970") - 10,
        ));
        cache
            .verify_client_cert(&short, &[], just_before)
            .expect("first");
        let after = UnixTime::since_unix_epoch(std::time::Duration::from_secs(
            u64::try_from(not_after).expect("after 1970") + 1,
        ));
        cache
            .verify_client_cert(&short, &[], after)
            .expect("asks inner");
        assert_eq!(inner.0.load(Ordering::Relaxed), 2);
    }
}
