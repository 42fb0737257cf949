//! The verdict of OpenSSL's verify callback on each certificate of the
//! peer's chain, after OpenSSL's own. A chain OpenSSL accepts is then run
//! through the very verifier the rustls implementation uses for this
//! Config (`context::server_cert_verifier` / `client_cert_verifier`: webpki
//! with the same roots, the CN fallback, the legacy path, the allow-list),
//! so that OpenSSL accepts a chain only if rustls would: webpki refuses
//! what OpenSSL's own rules let through (non-v3 certificates, a CA
//! certificate as the leaf, an extended key usage without serverAuth or
//! clientAuth, which OpenSSL's purposes read more loosely (SGC counts as
//! serverAuth), RSA keys under 2048 bits, SHA-1 and SHA-224 signatures,
//! curves and key types rustls does not verify). OpenSSL's own refusals
//! stand as well (it also dates the trust anchor, which webpki does not).
//!
//! Before that, on each certificate:
//! - X.509 v1: refused, except (with `dangerous.accept_legacy_certificates`)
//!   a leaf whose issuer is one of the explicitly trusted CAs, as the rustls
//!   legacy path (`crate::legacy`) accepts it; a trust anchor's version is
//!   not checked, as on rustls. This gives rustls' message at the depth
//!   at fault, before OpenSSL reports something else.
//! - The server name: OpenSSL checks subjectAltName only
//!   (`X509_CHECK_FLAG_NEVER_CHECK_SUBJECT`, set by the client Context); the
//!   subject CN stands in only for a certificate with no subjectAltName
//!   extension at all, and only with `dangerous.accept_cn_only_certificates`
//!   or for an admitted v1 leaf. (OpenSSL's own fallback reads the CN
//!   whenever there is no DNS entry, e.g. beside an IP-only subjectAltName.)
//!   The rustls verifier then checks that CN against the CAs' name
//!   constraints.

use std::sync::Arc;

use openssl::ex_data::Index;
use openssl::ssl::Ssl;
use openssl::x509::{X509StoreContextRef, X509VerifyResult, X509};
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::ClientCertVerifier;

use super::errors::Verdict;
use super::state::Notes;
use crate::config::Config;

/// The rustls verifier of the Context's Config, for its role.
pub(super) enum RustlsVerifier {
    /// A client's: the server's chain, for the connection's server name.
    Server(Arc<dyn ServerCertVerifier>),
    /// A server's: the client's chain.
    Client(Arc<dyn ClientCertVerifier>),
}

pub(super) struct PeerChecks {
    accept_legacy_certificates: bool,
    /// `dangerous.accept_cn_only_certificates` (a client's).
    cn_fallback: bool,
    rustls: RustlsVerifier,
    verdict: Index<Ssl, Arc<Verdict>>,
    /// Where the date of the verified chain goes.
    notes: Index<Ssl, Arc<Notes>>,
    /// A client connection's server name (the name check's fallback needs
    /// it); `None` on a server.
    server_name: Option<Index<Ssl, String>>,
    /// The subject names (DER) of the explicitly trusted CAs.
    trusted_subjects: Vec<Vec<u8>>,
    /// The explicitly trusted CAs (DER): the only issuers of a v1 leaf.
    trusted: Vec<Vec<u8>>,
}

impl PeerChecks {
    pub(super) fn new(
        config: &Config,
        rustls: RustlsVerifier,
        indices: &super::state::Indices,
        server_name: Option<Index<Ssl, String>>,
        trusted: &[X509],
    ) -> PeerChecks {
        PeerChecks {
            verdict: indices.verdict,
            notes: indices.notes,
            accept_legacy_certificates: config.dangerous.accept_legacy_certificates,
            cn_fallback: config.dangerous.accept_cn_only_certificates,
            rustls,
            server_name,
            trusted_subjects: trusted
                .iter()
                .filter_map(|ca| ca.subject_name().to_der().ok())
                .collect(),
            trusted: trusted.iter().filter_map(|ca| ca.to_der().ok()).collect(),
        }
    }

    fn ssl(store: &X509StoreContextRef) -> Option<&openssl::ssl::SslRef> {
        openssl::x509::X509StoreContext::ssl_idx()
            .ok()
            .and_then(|idx| store.ex_data(idx))
    }

    fn verdict<'a>(&self, store: &'a X509StoreContextRef) -> Option<&'a Arc<Verdict>> {
        Self::ssl(store).and_then(|ssl| ssl.ex_data(self.verdict))
    }

    pub(super) fn check(&self, ok: bool, store: &mut X509StoreContextRef) -> bool {
        let depth = store.error_depth();
        let Some(der) = store.current_cert().and_then(|cert| cert.to_der().ok()) else {
            return false;
        };
        let v1 = crate::legacy::is_v1(&der);
        // A v1 certificate is refused as such first, as rustls reports it,
        // even when OpenSSL found something else (its name check runs
        // before it walks the chain).
        let refusal = if v1 && !self.v1_admitted(store, depth) {
            Some(self.v1_refusal(&der, depth))
        } else if !ok {
            if depth == 0 && self.name_fallback_accepts(store, &der, v1) {
                // OpenSSL keeps the error it reported unless told otherwise.
                store.set_error(X509VerifyResult::OK);
                return true;
            }
            self.note_failure(store);
            return false;
        } else if depth == 0 {
            // OpenSSL's last call, once the whole chain passed its checks.
            let refusal = self.rustls_refusal(store);
            if refusal.is_none() {
                self.note_verified(store);
            }
            refusal
        } else {
            None
        };
        let Some(why) = refusal else {
            return true;
        };
        if let Some(verdict) = self.verdict(store) {
            verdict.refuse(why);
        }
        store.set_error(X509VerifyResult::APPLICATION_VERIFICATION);
        false
    }

    /// Dates the connection's sessions by the chain OpenSSL verified.
    fn note_verified(&self, store: &X509StoreContextRef) {
        let Some(notes) = Self::ssl(store).and_then(|ssl| ssl.ex_data(self.notes)) else {
            return;
        };
        let chain = store.chain().and_then(|chain| {
            chain
                .iter()
                .map(|cert| cert.to_der().ok())
                .collect::<Option<Vec<_>>>()
        });
        // A chain that cannot be dated dates no session (0: not kept).
        let until = chain
            .and_then(|chain| {
                crate::session_dates::earliest_not_after(chain.iter().map(Vec::as_slice))
            })
            .unwrap_or(0);
        notes.verified(until);
    }

    /// What the rustls verifier says of the chain the peer presented.
    fn rustls_refusal(&self, store: &X509StoreContextRef) -> Option<rustls::Error> {
        let chain = super::ffi::presented_chain(store);
        let Some((leaf, rest)) = chain.split_first() else {
            return Some(rustls::Error::InvalidCertificate(
                rustls::CertificateError::BadEncoding,
            ));
        };
        let leaf = CertificateDer::from(leaf.as_slice());
        let intermediates: Vec<CertificateDer<'_>> = rest
            .iter()
            .map(|der| CertificateDer::from(der.as_slice()))
            .collect();
        let now = UnixTime::now();
        let verdict = match &self.rustls {
            RustlsVerifier::Client(verifier) => verifier
                .verify_client_cert(&leaf, &intermediates, now)
                .map(drop),
            RustlsVerifier::Server(verifier) => {
                // Always set, to a name that parsed (`Tunnel::server_name`).
                let name = self
                    .server_name
                    .and_then(|index| Self::ssl(store).and_then(|ssl| ssl.ex_data(index)))
                    .and_then(|name| ServerName::try_from(name.as_str()).ok());
                match name {
                    Some(name) => verifier
                        .verify_server_cert(&leaf, &intermediates, &name, &[], now)
                        .map(drop),
                    None => Err(rustls::Error::InvalidCertificate(
                        rustls::CertificateError::NotValidForName,
                    )),
                }
            }
        };
        verdict.err()
    }

    /// Whether a v1 certificate at `depth` may stand: the trust anchor at
    /// the top of the chain (rustls does not check an anchor's version
    /// either), or, under `accept_legacy_certificates`, a leaf issued by an
    /// explicitly trusted CA itself.
    fn v1_admitted(&self, store: &X509StoreContextRef, depth: u32) -> bool {
        let Some(chain) = store.chain() else {
            return false;
        };
        let depth = depth as usize;
        if depth > 0 {
            return depth + 1 == chain.len();
        }
        self.accept_legacy_certificates
            && chain
                .get(1)
                .and_then(|issuer| issuer.to_der().ok())
                .is_some_and(|issuer| self.trusted.contains(&issuer))
    }

    /// Why a v1 certificate is refused, in rustls' words: v1 at all (the
    /// option is off, or the certificate is not a leaf), or a v1 leaf not
    /// issued directly by a trusted CA.
    fn v1_refusal(&self, der: &[u8], depth: u32) -> rustls::Error {
        if self.accept_legacy_certificates && depth == 0 {
            return crate::legacy::not_issued_by_an_anchor(der);
        }
        rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(
            Arc::new(webpki::Error::UnsupportedCertVersion),
        )))
    }

    /// After OpenSSL found the server name nowhere in the leaf's
    /// subjectAltName: whether its subject CN may stand in (see the module
    /// docs), and names the server.
    fn name_fallback_accepts(&self, store: &X509StoreContextRef, leaf: &[u8], v1: bool) -> bool {
        let mismatch = matches!(
            store.error().as_raw(),
            openssl_sys::X509_V_ERR_HOSTNAME_MISMATCH | openssl_sys::X509_V_ERR_IP_ADDRESS_MISMATCH
        );
        // A v1 leaf reaching here was admitted by `v1_admitted`.
        if !mismatch || !(self.cn_fallback || (v1 && self.accept_legacy_certificates)) {
            return false;
        }
        let Some(name) = self
            .server_name
            .and_then(|index| Self::ssl(store).and_then(|ssl| ssl.ex_data(index)))
            .and_then(|name| ServerName::try_from(name.as_str()).ok())
        else {
            return false;
        };
        crate::verify::cn_matches_without_san(&CertificateDer::from(leaf), &name)
    }

    /// Keeps the certificate at fault for the message, and tells a CA that
    /// merely shares a trusted CA's name (OpenSSL finds no issuer; rustls
    /// reports the signature that does not verify) from an unknown one.
    fn note_failure(&self, store: &X509StoreContextRef) {
        let Some(verdict) = self.verdict(store) else {
            return;
        };
        let Some(cert) = store.current_cert() else {
            return;
        };
        // OpenSSL's purpose check: rustls' refusal says which usage was
        // wanted and which the certificate allows.
        if store.error().as_raw() == openssl_sys::X509_V_ERR_INVALID_PURPOSE {
            if let Some(why) = self.rustls_refusal(store) {
                verdict.refuse(why);
            }
        }
        let der = cert.to_der().ok();
        let weak = matches!(
            store.error().as_raw(),
            openssl_sys::X509_V_ERR_EE_KEY_TOO_SMALL
                | openssl_sys::X509_V_ERR_CA_KEY_TOO_SMALL
                | openssl_sys::X509_V_ERR_CA_MD_TOO_WEAK
        );
        // What the security level found weak, in rustls' words.
        if let Some(why) = der
            .as_deref()
            .filter(|_| weak)
            .and_then(crate::chain_errors::weakness)
        {
            verdict.refuse(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Other(rustls::OtherError(Arc::new(
                    crate::chain_errors::WeakCertificate(why),
                ))),
            ));
        }
        if let Some(der) = der {
            verdict.failed(der);
        }
        let no_issuer = matches!(
            store.error().as_raw(),
            openssl_sys::X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY
                | openssl_sys::X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE
        );
        let issuer = cert.issuer_name().to_der().ok();
        if no_issuer && issuer.is_some_and(|name| self.trusted_subjects.contains(&name)) {
            verdict.refuse(rustls::Error::InvalidCertificate(
                rustls::CertificateError::BadSignature,
            ));
        }
    }
}
