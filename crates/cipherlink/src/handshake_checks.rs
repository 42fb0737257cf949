//! What a finished handshake must have settled before a Tunnel is handed
//! out, checked the same way on either implementation:
//! - a key exchange ran, in a group `key_exchange` lists. A TLS 1.3
//!   resumption without one (psk_ke, which an OpenSSL system configuration
//!   can allow) has no forward secrecy, and OpenSSL would still report the
//!   group of the session it resumed. A TLS 1.2 resumption has no key
//!   exchange of its own by design: it reuses the secret of the full
//!   handshake (made under the same policy), and reports no group.
//! - a resumed session's peer certificates, and the chain its full
//!   handshake verified where the implementation dates one (OpenSSL), are
//!   still valid: resuming skips certificate verification. The session stores refuse such sessions
//!   before they are offered or accepted; this is the last word.

use std::sync::Arc;

use rustls::pki_types::UnixTime;

use crate::kx::KeyExchange;

/// A handshake refused after it completed, for what it settled.
#[derive(Debug, thiserror::Error)]
pub enum SessionRefused {
    /// TLS 1.3 resumption without a key exchange (psk_ke).
    #[error(
        "the session was resumed without a key exchange (TLS 1.3 psk_ke): it would have no \
         forward secrecy, so it is refused"
    )]
    NoKeyExchange,
    /// The implementation reports no group for a handshake that needs one.
    #[error("the handshake settled on no key-exchange group")]
    NoGroup,
    /// The group agreed is not one the configuration lists.
    #[error("the handshake settled on {0}, which `key_exchange` does not list")]
    GroupNotAllowed(KeyExchange),
}

/// What a handshake settled, as the checks need it.
#[derive(Debug)]
pub(crate) struct Settled<'a> {
    pub(crate) tls13: bool,
    pub(crate) resumed: bool,
    /// The group the implementation reports.
    pub(crate) group: Option<KeyExchange>,
    /// Whether this handshake ran a key exchange (TLS 1.3: the ServerHello
    /// carried a key share).
    pub(crate) fresh_key_exchange: bool,
    /// The peer's certificates (DER) the session holds.
    pub(crate) peer_certificates: Vec<&'a [u8]>,
    /// A resumed session's date (Unix seconds): the earliest notAfter of
    /// the chain its full handshake verified, where the implementation
    /// keeps one beside the session (OpenSSL keeps only the leaf).
    pub(crate) chain_until: Option<u64>,
}

/// Refuses what `settled` must not be, under `policy` (the configured
/// groups), at `now`.
pub(crate) fn check(
    settled: &Settled<'_>,
    policy: &[KeyExchange],
    now: UnixTime,
) -> Result<(), rustls::Error> {
    let refused = |why: SessionRefused| rustls::Error::Other(rustls::OtherError(Arc::new(why)));
    if settled.tls13 && !settled.fresh_key_exchange {
        return Err(refused(SessionRefused::NoKeyExchange));
    }
    if settled.tls13 || !settled.resumed {
        match settled.group {
            None => return Err(refused(SessionRefused::NoGroup)),
            Some(group) if !policy.contains(&group) => {
                return Err(refused(SessionRefused::GroupNotAllowed(group)))
            }
            Some(_) => {}
        }
    }
    if settled.resumed {
        if let Some(until) = settled.chain_until {
            if now.as_secs() > until {
                return Err(expired(now, until));
            }
        }
        for der in &settled.peer_certificates {
            let not_after = crate::pki::not_after(der)
                .map(|secs| u64::try_from(secs).unwrap_or(0))
                .ok_or(rustls::Error::InvalidCertificate(
                    rustls::CertificateError::BadEncoding,
                ))?;
            if now.as_secs() > not_after {
                return Err(expired(now, not_after));
            }
        }
    }
    Ok(())
}

fn expired(now: UnixTime, not_after: u64) -> rustls::Error {
    rustls::Error::InvalidCertificate(rustls::CertificateError::ExpiredContext {
        time: now,
        not_after: UnixTime::since_unix_epoch(std::time::Duration::from_secs(not_after)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::{self, CertOptions};
    use crate::config::PemSource;
    use crate::pki::{load_certificates, Identity};

    fn settled(
        tls13: bool,
        resumed: bool,
        group: Option<KeyExchange>,
        fresh: bool,
    ) -> Settled<'static> {
        Settled {
            tls13,
            resumed,
            group,
            fresh_key_exchange: fresh,
            peer_certificates: Vec::new(),
            chain_until: None,
        }
    }

    fn refusal(result: Result<(), rustls::Error>) -> String {
        result.expect_err("accepted").to_string()
    }

    #[test]
    fn a_key_exchange_within_the_policy_is_required() {
        let policy = [KeyExchange::X25519MlKem768, KeyExchange::X25519];
        let hybrid = Some(KeyExchange::X25519MlKem768);
        let now = UnixTime::now();
        check(&settled(true, false, hybrid, true), &policy, now).expect("full handshake");
        check(&settled(true, true, hybrid, true), &policy, now).expect("psk_dhe_ke");
        // psk_ke: OpenSSL still names the resumed session's group.
        let err = refusal(check(&settled(true, true, hybrid, false), &policy, now));
        assert!(err.contains("without a key exchange"), "{err}");
        let err = refusal(check(
            &settled(true, false, Some(KeyExchange::P384), true),
            &policy,
            now,
        ));
        assert!(err.contains("does not list"), "{err}");
        let err = refusal(check(&settled(true, false, None, true), &policy, now));
        assert!(err.contains("no key-exchange group"), "{err}");
        // TLS 1.2: a full handshake has its ECDHE group, a resumption none.
        check(
            &settled(false, false, Some(KeyExchange::X25519), false),
            &policy,
            now,
        )
        .expect("1.2");
        check(&settled(false, true, None, false), &policy, now).expect("1.2 resumed");
        assert!(check(&settled(false, false, None, false), &policy, now).is_err());
    }

    #[test]
    fn a_resumed_session_needs_its_peer_certificate_valid() {
        let bundle = certs::generate(&CertOptions::default()).expect("PKI");
        let leaf = load_certificates("test", &PemSource::inline(bundle.server.cert))
            .expect("PEM")
            .remove(0);
        let not_after = Identity::from_der(&leaf).expect("parse").not_after as u64;
        let at = |secs| UnixTime::since_unix_epoch(std::time::Duration::from_secs(secs));
        let mut resumed = settled(true, true, Some(KeyExchange::X25519), true);
        resumed.peer_certificates = vec![leaf.as_ref()];
        let policy = [KeyExchange::X25519];
        check(&resumed, &policy, at(not_after)).expect("at notAfter");
        let err = check(&resumed, &policy, at(not_after + 1)).expect_err("after notAfter");
        assert!(
            matches!(
                err,
                rustls::Error::InvalidCertificate(rustls::CertificateError::ExpiredContext { .. })
            ),
            "{err:?}"
        );
        // A full handshake verified its chain itself.
        resumed.resumed = false;
        check(&resumed, &policy, at(not_after + 1)).expect("full handshake");
    }

    /// OpenSSL keeps only the leaf of a resumed session: the date of the
    /// chain its full handshake verified (an intermediate, the anchor)
    /// decides too.
    #[test]
    fn a_resumed_session_needs_its_verified_chain_valid() {
        let at = |secs| UnixTime::since_unix_epoch(std::time::Duration::from_secs(secs));
        let mut resumed = settled(true, true, Some(KeyExchange::X25519), true);
        resumed.chain_until = Some(1_000);
        let policy = [KeyExchange::X25519];
        check(&resumed, &policy, at(1_000)).expect("at the chain's notAfter");
        let err = check(&resumed, &policy, at(1_001)).expect_err("past it");
        assert!(
            matches!(
                err,
                rustls::Error::InvalidCertificate(rustls::CertificateError::ExpiredContext { .. })
            ),
            "{err:?}"
        );
        resumed.resumed = false;
        check(&resumed, &policy, at(1_001)).expect("a full handshake");
    }
}
