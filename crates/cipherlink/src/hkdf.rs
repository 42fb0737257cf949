//! The TLS 1.3 key schedule's HKDF on an HMAC whose keyed states are
//! computed once per secret.
//!
//! rustls' aws-lc-rs suites call aws-lc's one-shot `HKDF()` for every
//! HKDF-Expand-Label; for a secret that came out of HKDF-Extract that redoes
//! the extraction too (aws-lc-rs keeps the salt and input so that each use
//! is a FIPS-approved HKDF call). rustls' own [`HkdfUsingHmac`] builds HKDF
//! from an HMAC instead, and a handshake derives about twenty labels a side.
//!
//! The HMAC here keeps the keyed inner and outer SHA-2 states of a key, so
//! each label costs a copy of them and two or three compressions (of
//! RustCrypto's `sha2`, which uses the CPU's SHA instructions when it has
//! them). aws-lc-rs's HMAC copies, clears and re-inits a context sized for
//! SHA-512 around every tag: 660 ns a tag against about 200 ns this way,
//! which was 9% of the CPU of a full handshake (perf, `bench conn`). Same
//! algorithms, same outputs (checked against RFC 5869, RFC 4231, OpenSSL and
//! aws-lc in the tests), not FIPS-flagged; cipherlink does not claim FIPS
//! mode.
//!
//! Secrets: RustCrypto's own `Hmac` keeps its keyed states in a struct that
//! cannot be cleared (no `zeroize` support in hmac 0.12 / sha2 0.10, and
//! this crate forbids `unsafe`), and every tag would leave a clone of them
//! and its output behind. So the HMAC is built here on `sha2`'s exported
//! compression functions (`compress256` / `compress512`, with the same CPU
//! dispatch), and every piece of state is ours to clear: the keyed states
//! when the key is dropped, each tag's working copies, buffers and digests
//! when the tag is made. What remains is what the compression function
//! leaves in registers and on its own stack. Hand-written here is only the
//! SHA-2 padding (FIPS 180-4 section 5.1) and HMAC (RFC 2104) around it.

use std::sync::OnceLock;

use rustls::crypto::hmac::{Hmac, Key, Tag};
use rustls::crypto::tls13::HkdfUsingHmac;
use rustls::crypto::CipherSuiteCommon;
use rustls::{SupportedCipherSuite, Tls13CipherSuite};
use sha2::digest::generic_array::GenericArray;
use zeroize::{Zeroize, Zeroizing};

/// The largest block (SHA-384's, 128 bytes); SHA-256 uses the first 64.
const MAX_BLOCK: usize = 128;

/// One SHA-2 function: its compression function and constants.
trait Sha2: Send + Sync + 'static {
    /// The chaining state.
    type State: Copy + Zeroize + Send + Sync;
    /// Block length, bytes.
    const BLOCK: usize;
    /// Digest length, bytes.
    const OUT: usize;
    /// Initial state (FIPS 180-4 section 5.3).
    const IV: Self::State;
    /// Compresses one block of `BLOCK` bytes into `state`.
    fn compress(state: &mut Self::State, block: &[u8]);
    /// Writes the first `OUT` bytes of the big-endian state into `out`.
    fn write_digest(state: &Self::State, out: &mut [u8]);
}

struct Sha256;
struct Sha384;

impl Sha2 for Sha256 {
    type State = [u32; 8];
    const BLOCK: usize = 64;
    const OUT: usize = 32;
    const IV: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];

    fn compress(state: &mut [u32; 8], block: &[u8]) {
        sha2::compress256(state, std::slice::from_ref(GenericArray::from_slice(block)));
    }

    fn write_digest(state: &[u32; 8], out: &mut [u8]) {
        for (chunk, word) in out.chunks_exact_mut(4).zip(state) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
    }
}

impl Sha2 for Sha384 {
    type State = [u64; 8];
    const BLOCK: usize = 128;
    const OUT: usize = 48;
    const IV: [u64; 8] = [
        0xcbbb9d5dc1059ed8,
        0x629a292a367cd507,
        0x9159015a3070dd17,
        0x152fecd8f70e5939,
        0x67332667ffc00b31,
        0x8eb44a8768581511,
        0xdb0c2e0d64f98fa7,
        0x47b5481dbefa4fa4,
    ];

    fn compress(state: &mut [u64; 8], block: &[u8]) {
        sha2::compress512(state, std::slice::from_ref(GenericArray::from_slice(block)));
    }

    fn write_digest(state: &[u64; 8], out: &mut [u8]) {
        // SHA-384 is SHA-512 with its own IV, truncated to six words.
        for (chunk, word) in out.chunks_exact_mut(8).zip(state) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
    }
}

/// Continues the hash in `state`, which has already absorbed `absorbed`
/// whole blocks' worth of bytes, over `parts`, and writes the digest to
/// `out` (`H::OUT` bytes). `state` is left spent; the caller clears it.
fn finish_hash<'a, H: Sha2>(
    state: &mut H::State,
    absorbed: u64,
    parts: impl IntoIterator<Item = &'a [u8]>,
    out: &mut [u8],
) {
    // Cleared by hand below, only the part a SHA-256 block uses when that
    // is the hash: `zeroize` writes byte by byte (volatile), and clearing
    // every buffer whole made a tag half as slow again.
    let mut buf = [0u8; MAX_BLOCK];
    let block = H::BLOCK;
    let mut filled = 0;
    let mut total = absorbed;
    for mut part in parts {
        total += part.len() as u64;
        while !part.is_empty() {
            let take = part.len().min(block - filled);
            buf[filled..filled + take].copy_from_slice(&part[..take]);
            filled += take;
            part = &part[take..];
            if filled == block {
                H::compress(state, &buf[..block]);
                filled = 0;
            }
        }
    }
    // Padding: 0x80, zeros, then the length in bits in the last 8 bytes (of
    // SHA-512's 16-byte length field, whose upper half is 0 for any message
    // that fits in memory).
    buf[filled] = 0x80;
    buf[filled + 1..block].fill(0);
    if filled + 1 > block - H::BLOCK / 8 {
        H::compress(state, &buf[..block]);
        buf[..block].fill(0);
    }
    buf[block - 8..block].copy_from_slice(&(total.wrapping_mul(8)).to_be_bytes());
    H::compress(state, &buf[..block]);
    buf[..block].zeroize();
    H::write_digest(state, &mut out[..H::OUT]);
}

/// An HMAC key with its inner and outer hash states already keyed; both
/// are cleared when it is dropped.
struct PreparedKey<H: Sha2> {
    inner: H::State,
    outer: H::State,
}

impl<H: Sha2> Drop for PreparedKey<H> {
    fn drop(&mut self) {
        self.inner.zeroize();
        self.outer.zeroize();
    }
}

impl<H: Sha2> PreparedKey<H> {
    /// Keys from HMAC's key block (RFC 2104, section 2): the key, or its hash
    /// when it is longer than a block, padded with zeros.
    fn new(key: &[u8]) -> Self {
        let block = H::BLOCK;
        let mut key_block = Zeroizing::new([0u8; MAX_BLOCK]);
        if key.len() <= block {
            key_block[..key.len()].copy_from_slice(key);
        } else {
            let mut state = Zeroizing::new(H::IV);
            finish_hash::<H>(&mut state, 0, [key], &mut key_block[..H::OUT]);
        }
        let mut pad = Zeroizing::new([0u8; MAX_BLOCK]);
        let mut keyed = |byte: u8| {
            for (p, k) in pad[..block].iter_mut().zip(&key_block[..block]) {
                *p = k ^ byte;
            }
            let mut state = H::IV;
            H::compress(&mut state, &pad[..block]);
            state
        };
        let inner = keyed(0x36);
        let outer = keyed(0x5c);
        Self { inner, outer }
    }
}

impl<H: Sha2> Key for PreparedKey<H> {
    fn sign_concat(&self, first: &[u8], middle: &[&[u8]], last: &[u8]) -> Tag {
        // Starts from copies of the keyed states: no re-keying.
        let block = H::BLOCK as u64;
        // Both cleared by hand, only the digest's length (see `finish_hash`).
        let mut inner_hash = [0u8; 64];
        let mut state = Zeroizing::new(self.inner);
        let parts = std::iter::once(first)
            .chain(middle.iter().copied())
            .chain(std::iter::once(last));
        finish_hash::<H>(&mut state, block, parts, &mut inner_hash[..]);
        let mut tag = [0u8; 64];
        let mut state = Zeroizing::new(self.outer);
        finish_hash::<H>(&mut state, block, [&inner_hash[..H::OUT]], &mut tag[..]);
        inner_hash[..H::OUT].zeroize();
        // rustls' Tag clears itself when dropped.
        let out = Tag::new(&tag[..H::OUT]);
        tag[..H::OUT].zeroize();
        out
    }

    fn tag_len(&self) -> usize {
        H::OUT
    }
}

/// The hash under an HMAC, as rustls' [`Hmac`].
#[derive(Clone, Copy)]
enum PreparedHmac {
    Sha256,
    Sha384,
}

impl Hmac for PreparedHmac {
    fn with_key(&self, key: &[u8]) -> Box<dyn Key> {
        match self {
            Self::Sha256 => Box::new(PreparedKey::<Sha256>::new(key)),
            Self::Sha384 => Box::new(PreparedKey::<Sha384>::new(key)),
        }
    }

    fn hash_output_len(&self) -> usize {
        match self {
            Self::Sha256 => Sha256::OUT,
            Self::Sha384 => Sha384::OUT,
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

    /// RFC 5869 test case 1's inputs under HKDF-SHA384 (the RFC has only
    /// SHA-256 and SHA-1 vectors). The expected bytes were computed with
    /// OpenSSL 3 (`openssl kdf -kdfopt digest:SHA384 ... HKDF`) and with
    /// Python's `hmac`, which agree.
    #[test]
    fn hkdf_sha384_known_answer() {
        let ikm = hex("0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b");
        let salt = hex("000102030405060708090a0b0c");
        let info = hex("f0f1f2f3f4f5f6f7f8f9");
        let prk = hex(concat!(
            "704b39990779ce1dc548052c7dc39f303570dd13fb39f7acc564680bef80e8de",
            "c70ee9a7e1f3e293ef68eceb072a5ade"
        ));
        let expected = hex(
            "9b5097a86038b805309076a44b3a9f38063e25b516dcbf369f394cfab43685f748b6457763e4f0204fc5",
        );
        let expander = HKDF_SHA384.extract_from_secret(Some(&salt), &ikm);
        let mut okm = vec![0u8; expected.len()];
        expander.expand_slice(&[&info], &mut okm).unwrap();
        assert_eq!(okm, expected);
        assert_eq!(HMAC_SHA384.with_key(&salt).sign(&[&ikm]).as_ref(), prk);
    }

    /// HKDF-Expand gives at most 255 blocks (RFC 5869 section 2.3): exactly
    /// 255 x HashLen works and matches aws-lc-rs, one byte more is refused.
    #[test]
    fn expand_stops_at_255_blocks() {
        for (ours, stock, len) in [
            (
                &HKDF_SHA256,
                stock_hkdf(rustls::CipherSuite::TLS13_AES_128_GCM_SHA256),
                32,
            ),
            (
                &HKDF_SHA384,
                stock_hkdf(rustls::CipherSuite::TLS13_AES_256_GCM_SHA384),
                48,
            ),
        ] {
            let info: [&[u8]; 1] = [b"boundary"];
            let mut out = vec![0u8; 255 * len];
            let mut want = vec![0u8; 255 * len];
            ours.extract_from_secret(Some(b"salt"), b"secret")
                .expand_slice(&info, &mut out)
                .unwrap();
            stock
                .extract_from_secret(Some(b"salt"), b"secret")
                .expand_slice(&info, &mut want)
                .unwrap();
            assert_eq!(out, want, "{len}-byte hash, 255 blocks");
            let mut over = vec![0u8; 255 * len + 1];
            assert!(ours
                .extract_from_secret(Some(b"salt"), b"secret")
                .expand_slice(&info, &mut over)
                .is_err());
        }
    }

    fn stock_hkdf(suite: rustls::CipherSuite) -> &'static dyn Hkdf {
        rustls::crypto::aws_lc_rs::ALL_CIPHER_SUITES
            .iter()
            .filter_map(|s| s.tls13())
            .find(|s| s.common.suite == suite)
            .unwrap()
            .hkdf_provider
    }

    /// A key exactly one block long is used as it is, not hashed; one byte
    /// longer is hashed. Expected tags from OpenSSL (`openssl dgst -mac
    /// HMAC`) and Python's `hmac`, which agree.
    #[test]
    fn key_exactly_one_block_long() {
        let message: &[u8] = b"a key exactly one block long";
        let k64: Vec<u8> = (0..64).collect();
        let k128: Vec<u8> = (0..128).collect();
        assert_eq!(
            HMAC_SHA256.with_key(&k64).sign(&[message]).as_ref(),
            hex("b6019290740344fa632879fd671b7dc3d7e2f7e771a9260f895e87de7fb05227")
        );
        assert_eq!(
            HMAC_SHA384.with_key(&k128).sign(&[message]).as_ref(),
            hex(concat!(
                "964ebb214e7703f0df1fe28254d0b8862ca49289bfa29ab13f7fbd75",
                "56f0da218ddc493bae2fbffbbaca0edbd046da57"
            ))
        );
        let k65: Vec<u8> = (0..65).collect();
        assert_eq!(
            HMAC_SHA256.with_key(&k65).sign(&[message]).as_ref(),
            hex("3a93fdef3cd3e09f1974255b1dc876347bc145886b9fea07c2aba1153f14277d")
        );
        let k129: Vec<u8> = (0..129).collect();
        assert_eq!(
            HMAC_SHA384.with_key(&k129).sign(&[message]).as_ref(),
            hex(concat!(
                "48cd5ee2eec04ae87b75443cbcea820f96559185d2d003e1b7f9c40a",
                "cb492c7007f2494cb801197e8472bbf709d17bf9"
            ))
        );
    }

    /// The hand-written padding against aws-lc's HMAC at every message
    /// length around one and two blocks, for keys around a block, with the
    /// message split across parts as rustls passes it.
    #[test]
    fn same_tags_as_aws_lc_at_every_padding_boundary() {
        use aws_lc_rs::hmac as reference;
        let data: Vec<u8> = (0..300u32).map(|i| (i * 7 + 3) as u8).collect();
        for (ours, algorithm) in [
            (&HMAC_SHA256, reference::HMAC_SHA256),
            (&HMAC_SHA384, reference::HMAC_SHA384),
        ] {
            for key_len in [0, 1, 31, 63, 64, 65, 127, 128, 129, 200] {
                let key = &data[..key_len];
                let prepared = ours.with_key(key);
                let want_key = reference::Key::new(algorithm, key);
                for len in 0..data.len() {
                    let message = &data[..len];
                    let (a, rest) = message.split_at(len / 3);
                    let (b, c) = rest.split_at(rest.len() / 2);
                    let got = prepared.sign_concat(a, &[b], c);
                    let want = reference::sign(&want_key, message);
                    assert_eq!(got.as_ref(), want.as_ref(), "key {key_len}, message {len}");
                }
            }
        }
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
