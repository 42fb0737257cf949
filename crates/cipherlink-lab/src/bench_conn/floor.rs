//! The crypto floor: what the public-key work of one handshake costs on this
//! machine, measured with the same implementations the handshake uses.
//!
//! A full TLS 1.3 handshake (server-authenticated) needs: one key exchange
//! (client keygen, server keygen+agree or encapsulate, client agree or
//! decapsulate), one CertificateVerify signature, and two verifications: the
//! CertificateVerify and the CA's signature on the server's certificate.
//! That is the floor, as ../shared/notes/perf.md counts it. (cipherlink's
//! client skips the second verification for a chain it verified in the last
//! five minutes, so it can do less than the floor; the table says so.) A
//! resumed handshake keeps only the key exchange.
//!
//! Each operation is timed on every core at once, as the benchmark itself
//! loads every core: a core's speed with its neighbours busy (shared caches,
//! the host's scheduling of a VM's CPUs) is what the handshakes get. The
//! benchmark measures the floor just before each case, so the machine's
//! drift during a run moves both numbers together.

use std::time::{Duration, Instant};

use aws_lc_rs::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use cipherlink::certs::KeyAlgorithm;
use cipherlink::rustls::pki_types::{pem::PemObject, PrivateKeyDer};
use cipherlink::rustls::SignatureScheme;
use cipherlink::KeyExchange;
use serde::Serialize;

/// Microseconds per operation on one core, with every core busy.
#[derive(Debug, Clone, Serialize)]
pub struct CryptoFloor {
    /// The group measured.
    pub group: String,
    /// The certificate key algorithm measured.
    pub signature: String,
    /// One whole key exchange (both sides).
    pub key_exchange_us: f64,
    /// One CertificateVerify signature.
    pub sign_us: f64,
    /// One signature verification.
    pub verify_us: f64,
}

impl CryptoFloor {
    /// Public-key work of a full handshake, both sides, microseconds: key
    /// exchange, one signature, two verifications (see the module docs).
    pub fn full_handshake_us(&self) -> f64 {
        self.key_exchange_us + self.sign_us + 2.0 * self.verify_us
    }

    /// Public-key work of a resumed handshake.
    pub fn resumed_handshake_us(&self) -> f64 {
        self.key_exchange_us
    }
}

/// Errors measuring the floor (a broken key, an unsupported algorithm).
#[derive(Debug, thiserror::Error)]
#[error("measuring the crypto floor: {0}")]
pub struct FloorError(String);

/// Measures for `budget` of wall time per operation kind, on `threads`
/// threads at once.
pub fn measure(
    group: KeyExchange,
    algorithm: KeyAlgorithm,
    key_pem: &str,
    leaf_spki_key: &[u8],
    budget: Duration,
    threads: usize,
) -> Result<CryptoFloor, FloorError> {
    let kx = group.rustls_group();
    let key_exchange_us = per_op(budget, threads, || {
        let client = kx.start().map_err(|e| FloorError(e.to_string()))?;
        let server = kx
            .start_and_complete(client.pub_key())
            .map_err(|e| FloorError(e.to_string()))?;
        client
            .complete(&server.pub_key)
            .map_err(|e| FloorError(e.to_string()))?;
        Ok(())
    })?;

    let provider = cipherlink::rustls::crypto::aws_lc_rs::default_provider();
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| FloorError(format!("key PEM: {e}")))?;
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| FloorError(e.to_string()))?;
    let (scheme, verify_alg) = schemes(algorithm);
    let signer = signing_key
        .choose_scheme(&[scheme])
        .ok_or_else(|| FloorError(format!("key cannot sign with {scheme:?}")))?;
    // The size of a TLS 1.3 CertificateVerify input: 64 spaces, context, 0, hash.
    let message = [0x20u8; 130];
    let sign_us = per_op(budget, threads, || {
        signer
            .sign(&message)
            .map(drop)
            .map_err(|e| FloorError(e.to_string()))
    })?;
    let signature = signer
        .sign(&message)
        .map_err(|e| FloorError(e.to_string()))?;
    let public_key = UnparsedPublicKey::new(verify_alg, leaf_spki_key);
    let verify_us = per_op(budget, threads, || {
        public_key
            .verify(&message, &signature)
            .map_err(|_| FloorError("own signature does not verify".into()))
    })?;
    Ok(CryptoFloor {
        group: group.name().to_string(),
        signature: algorithm.to_string(),
        key_exchange_us,
        sign_us,
        verify_us,
    })
}

fn schemes(algorithm: KeyAlgorithm) -> (SignatureScheme, &'static dyn VerificationAlgorithm) {
    match algorithm {
        KeyAlgorithm::P256 => (
            SignatureScheme::ECDSA_NISTP256_SHA256,
            &signature::ECDSA_P256_SHA256_ASN1,
        ),
        KeyAlgorithm::P384 => (
            SignatureScheme::ECDSA_NISTP384_SHA384,
            &signature::ECDSA_P384_SHA384_ASN1,
        ),
        KeyAlgorithm::Ed25519 => (SignatureScheme::ED25519, &signature::ED25519),
        KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa4096 => (
            SignatureScheme::RSA_PSS_SHA256,
            &signature::RSA_PSS_2048_8192_SHA256,
        ),
    }
}

/// Runs `op` repeatedly for about `budget` on each of `threads` threads at
/// once and returns the microseconds per call on one thread that the
/// threads' combined rate implies (a harmonic mean: capacity adds rates).
fn per_op(
    budget: Duration,
    threads: usize,
    op: impl Fn() -> Result<(), FloorError> + Sync,
) -> Result<f64, FloorError> {
    let threads = threads.max(1);
    // Every thread starts timing together, after its own warm-up.
    let start_line = std::sync::Barrier::new(threads);
    let per_thread = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| scope.spawn(|| per_op_on_this_thread(budget, &start_line, &op)))
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .map_err(|_| FloorError("a measuring thread panicked".into()))?
            })
            .collect::<Result<Vec<f64>, FloorError>>()
    })?;
    let ops_per_us: f64 = per_thread.iter().map(|us| 1.0 / us).sum();
    Ok(per_thread.len() as f64 / ops_per_us)
}

fn per_op_on_this_thread(
    budget: Duration,
    start_line: &std::sync::Barrier,
    op: &impl Fn() -> Result<(), FloorError>,
) -> Result<f64, FloorError> {
    // Warm caches and lazy tables first. An error is returned only after the
    // barrier, so no other thread waits for this one forever.
    let warm = (0..3).try_for_each(|_| op());
    start_line.wait();
    warm?;
    let start = Instant::now();
    let mut count = 0u32;
    while start.elapsed() < budget || count < 10 {
        op()?;
        count += 1;
    }
    Ok(start.elapsed().as_secs_f64() * 1e6 / f64::from(count))
}
