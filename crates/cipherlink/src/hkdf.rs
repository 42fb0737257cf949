//! The TLS 1.3 key schedule's HKDF on aws-lc's HMAC, with each secret's HMAC
//! key set up once.
//!
//! rustls' aws-lc-rs suites call aws-lc's one-shot `HKDF()` for every
//! HKDF-Expand-Label; for a secret that came out of HKDF-Extract that redoes
//! the extraction too (aws-lc-rs keeps the salt and input so that each use
//! is a FIPS-approved HKDF call). A handshake derives about twenty labels,
//! so that re-keying was 6% of the CPU of a full handshake here (perf, bench
//! conn). rustls' own [`HkdfUsingHmac`] builds HKDF from an HMAC; given an
//! HMAC key that keeps aws-lc's prepared inner and outer hash states, each
//! label costs two SHA-256 compressions. Same algorithms, same outputs
//! (checked against RFC 5869 and against rustls' suites in the tests), not
//! FIPS-flagged; cipherlink does not claim FIPS mode.

use std::sync::OnceLock;

use aws_lc_rs::hmac;
use rustls::crypto::hmac::{Hmac, Key, Tag};
use rustls::crypto::tls13::HkdfUsingHmac;
use rustls::crypto::CipherSuiteCommon;
use rustls::{SupportedCipherSuite, Tls13CipherSuite};

/// aws-lc's HMAC as rustls' [`Hmac`].
struct PreparedHmac(&'static hmac::Algorithm);

impl Hmac for PreparedHmac {
    fn with_key(&self, key: &[u8]) -> Box<dyn Key> {
        Box::new(PreparedKey(hmac::Key::new(*self.0, key)))
    }

    fn hash_output_len(&self) -> usize {
        self.0.digest_algorithm().output_len()
    }
}

/// An HMAC key whose inner and outer hash states were computed once.
struct PreparedKey(hmac::Key);

impl Key for PreparedKey {
    fn sign_concat(&self, first: &[u8], middle: &[&[u8]], last: &[u8]) -> Tag {
        // Starts from a copy of the prepared states: no re-keying.
        let mut context = hmac::Context::with_key(&self.0);
        context.update(first);
        for part in middle {
            context.update(part);
        }
        context.update(last);
        Tag::new(context.sign().as_ref())
    }

    fn tag_len(&self) -> usize {
        self.0.algorithm().digest_algorithm().output_len()
    }
}

static HMAC_SHA256: PreparedHmac = PreparedHmac(&hmac::HMAC_SHA256);
static HMAC_SHA384: PreparedHmac = PreparedHmac(&hmac::HMAC_SHA384);
static HKDF_SHA256: HkdfUsingHmac<'static> = HkdfUsingHmac(&HMAC_SHA256);
static HKDF_SHA384: HkdfUsingHmac<'static> = HkdfUsingHmac(&HMAC_SHA384);

/// `suites` with each TLS 1.3 suite's HKDF replaced by the prepared-key one;
/// TLS 1.2 suites are returned as they are.
pub(crate) fn with_prepared_hkdf(suites: &[SupportedCipherSuite]) -> Vec<SupportedCipherSuite> {
    suites.iter().map(|&suite| prepared(suite)).collect()
}

fn prepared(suite: SupportedCipherSuite) -> SupportedCipherSuite {
    // One static per suite, so a suite keeps a single identity (rustls
    // compares suites when resuming).
    static SUITES: OnceLock<Vec<Tls13CipherSuite>> = OnceLock::new();
    let table = SUITES.get_or_init(|| {
        rustls::crypto::aws_lc_rs::ALL_CIPHER_SUITES
            .iter()
            .filter_map(|s| s.tls13())
            .filter_map(|base| {
                let hkdf = match base.common.hash_provider.algorithm() {
                    rustls::crypto::hash::HashAlgorithm::SHA256 => &HKDF_SHA256,
                    rustls::crypto::hash::HashAlgorithm::SHA384 => &HKDF_SHA384,
                    _ => return None,
                };
                Some(Tls13CipherSuite {
                    common: CipherSuiteCommon {
                        suite: base.common.suite,
                        hash_provider: base.common.hash_provider,
                        confidentiality_limit: base.common.confidentiality_limit,
                    },
                    hkdf_provider: hkdf,
                    aead_alg: base.aead_alg,
                    quic: base.quic,
                })
            })
            .collect()
    });
    match suite {
        SupportedCipherSuite::Tls13(base) => table
            .iter()
            .find(|prepared| prepared.common.suite == base.common.suite)
            .map_or(suite, SupportedCipherSuite::Tls13),
        tls12 => tls12,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use rustls::crypto::tls13::Hkdf;

    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// RFC 5869 test case 1 (SHA-256).
    #[test]
    fn rfc5869_case_1() {
        let ikm = hex("0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b");
        let salt = hex("000102030405060708090a0b0c");
        let info = hex("f0f1f2f3f4f5f6f7f8f9");
        let expected = hex(
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
        );
        let expander = HKDF_SHA256.extract_from_secret(Some(&salt), &ikm);
        let mut okm = vec![0u8; expected.len()];
        expander.expand_slice(&[&info], &mut okm).unwrap();
        assert_eq!(okm, expected);
    }

    /// Every derivation the key schedule uses gives what rustls' own
    /// aws-lc-rs suites give.
    #[test]
    fn same_outputs_as_the_stock_suites() {
        for stock in rustls::crypto::aws_lc_rs::ALL_CIPHER_SUITES {
            let Some(stock) = stock.tls13() else { continue };
            let SupportedCipherSuite::Tls13(ours) = prepared(SupportedCipherSuite::Tls13(stock))
            else {
                unreachable!()
            };
            assert!(
                !std::ptr::eq(ours, stock),
                "{:?} replaced",
                stock.common.suite
            );
            let (a, b) = (stock.hkdf_provider, ours.hkdf_provider);
            let salt = [7u8; 48];
            let secret = [9u8; 48];
            let info: [&[u8]; 3] = [b"\x00\x20", b"tls13 c hs traffic", b"\x20context"];
            let mut out_a = [0u8; 80];
            let mut out_b = [0u8; 80];
            a.extract_from_secret(Some(&salt), &secret)
                .expand_slice(&info, &mut out_a)
                .unwrap();
            b.extract_from_secret(Some(&salt), &secret)
                .expand_slice(&info, &mut out_b)
                .unwrap();
            assert_eq!(out_a, out_b);
            let block_a = a.extract_from_zero_ikm(None).expand_block(&info);
            let block_b = b.extract_from_zero_ikm(None).expand_block(&info);
            assert_eq!(block_a.as_ref(), block_b.as_ref());
            let okm_a = a.expander_for_okm(&block_a).expand_block(&info);
            let okm_b = b.expander_for_okm(&block_b).expand_block(&info);
            assert_eq!(okm_a.as_ref(), okm_b.as_ref());
            assert_eq!(
                a.hmac_sign(&block_a, b"finished").as_ref(),
                b.hmac_sign(&block_b, b"finished").as_ref()
            );
        }
    }
}
