//! The TLS 1.3 key schedule's HKDF on an HMAC whose keyed states are
//! computed once per secret.
//!
//! rustls' aws-lc-rs suites call aws-lc's one-shot `HKDF()` for every
//! HKDF-Expand-Label; for a secret that came out of HKDF-Extract that redoes
//! the extraction too (aws-lc-rs keeps the salt and input so that each use
//! is a FIPS-approved HKDF call). rustls' own [`HkdfUsingHmac`] builds HKDF
//! from an HMAC instead, and a handshake derives about twenty labels a side.
//!
//! The HMAC is RustCrypto's (`hmac` over `sha2`, which uses the CPU's SHA
//! instructions when it has them): it keeps the keyed inner and outer states
//! in a small struct, so each label costs a copy of that struct and two or
//! three SHA-256 compressions. aws-lc-rs's HMAC copies, clears and re-inits a
//! context sized for SHA-512 around every tag: 660 ns a tag against 206 ns
//! here, which was 9% of the CPU of a full handshake (perf, `bench conn`).
//! Same algorithms, same outputs (checked against RFC 5869, RFC 4231 and
//! rustls' suites in the tests), not FIPS-flagged; cipherlink does not claim
//! FIPS mode.
//!
//! Secrets: the key block built here is cleared after use, and rustls clears
//! the secrets themselves. The keyed hash states inside RustCrypto's HMAC are
//! not cleared when dropped (the crate has no hook for it), where aws-lc
//! cleared its contexts; they live as long as one traffic secret does.

use std::sync::OnceLock;

use hmac::digest::core_api::BlockSizeUser;
use hmac::digest::generic_array::GenericArray;
use hmac::digest::{Digest, KeyInit};
use hmac::{Hmac as RcHmac, Mac};
use rustls::crypto::hmac::{Hmac, Key, Tag};
use rustls::crypto::tls13::HkdfUsingHmac;
use rustls::crypto::CipherSuiteCommon;
use rustls::{SupportedCipherSuite, Tls13CipherSuite};
use sha2::{Sha256, Sha384};
use zeroize::Zeroize;

/// The hash under an HMAC, as rustls' [`Hmac`].
#[derive(Clone, Copy)]
enum PreparedHmac {
    Sha256,
    Sha384,
}

impl Hmac for PreparedHmac {
    fn with_key(&self, key: &[u8]) -> Box<dyn Key> {
        Box::new(match self {
            Self::Sha256 => PreparedKey::Sha256(with_key_block::<Sha256, _>(key, KeyInit::new)),
            Self::Sha384 => PreparedKey::Sha384(with_key_block::<Sha384, _>(key, KeyInit::new)),
        })
    }

    fn hash_output_len(&self) -> usize {
        match self {
            Self::Sha256 => 32,
            Self::Sha384 => 48,
        }
    }
}

/// Calls `make` with HMAC's key block (RFC 2104, section 2): the key, or its
/// hash when it is longer than a block, padded with zeros; then clears it.
/// Keying from the block (rather than `new_from_slice`) leaves no error path
/// for a key length.
fn with_key_block<D: Digest + BlockSizeUser, R>(
    key: &[u8],
    make: impl FnOnce(&GenericArray<u8, D::BlockSize>) -> R,
) -> R {
    let mut block = GenericArray::<u8, D::BlockSize>::default();
    if key.len() <= block.len() {
        block[..key.len()].copy_from_slice(key);
    } else {
        let mut hashed = D::digest(key);
        block[..hashed.len()].copy_from_slice(&hashed);
        hashed.as_mut_slice().zeroize();
    }
    let made = make(&block);
    block.as_mut_slice().zeroize();
    made
}

/// An HMAC key with its inner and outer hash states already keyed.
enum PreparedKey {
    Sha256(RcHmac<Sha256>),
    Sha384(RcHmac<Sha384>),
}

fn tag_of<M: Mac + Clone>(keyed: &M, first: &[u8], middle: &[&[u8]], last: &[u8]) -> Tag {
    // Starts from a copy of the keyed states: no re-keying.
    let mut mac = keyed.clone();
    mac.update(first);
    for part in middle {
        mac.update(part);
    }
    mac.update(last);
    Tag::new(&mac.finalize().into_bytes())
}

impl Key for PreparedKey {
    fn sign_concat(&self, first: &[u8], middle: &[&[u8]], last: &[u8]) -> Tag {
        match self {
            Self::Sha256(keyed) => tag_of(keyed, first, middle, last),
            Self::Sha384(keyed) => tag_of(keyed, first, middle, last),
        }
    }

    fn tag_len(&self) -> usize {
        match self {
            Self::Sha256(_) => 32,
            Self::Sha384(_) => 48,
        }
    }
}

static HMAC_SHA256: PreparedHmac = PreparedHmac::Sha256;
static HMAC_SHA384: PreparedHmac = PreparedHmac::Sha384;
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

    /// RFC 4231 test case 6: a key longer than the hash's block is hashed
    /// first, for both hashes.
    #[test]
    fn rfc4231_key_longer_than_a_block() {
        let key = [0xaau8; 131];
        let data = b"Test Using Larger Than Block-Size Key - Hash Key First";
        let sha256 = HMAC_SHA256.with_key(&key).sign(&[data]);
        assert_eq!(
            sha256.as_ref(),
            hex("60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54")
        );
        let sha384 = HMAC_SHA384.with_key(&key).sign(&[data]);
        assert_eq!(
            sha384.as_ref(),
            hex(concat!(
                "4ece084485813e9088d2c63a041bc5b44f9ef1012a2b588f",
                "3cd11f05033ac4c60c2ef6ab4030fe8296248df163f44952"
            ))
        );
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
