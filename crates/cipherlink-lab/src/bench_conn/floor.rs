//! The crypto floor: what the public-key work of one handshake costs on this
//! machine, measured with the same implementations the handshake uses.
//!
//! A full TLS 1.3 handshake (server-authenticated) needs: one key exchange
//! (client keygen, server keygen+agree or encapsulate, client agree or
//! decapsulate), one CertificateVerify signature, and its verification. The
//! CA's signature on the server's certificate is a second verification, but
//! cipherlink's client caches a verified chain (the core's chain cache, on by
//! default), so after a context's first handshake it verifies the chain no
//! more. The floor counts exactly the work the measured handshakes do: one
//! verification with the cache, two without. A client's first chain
//! verification is left out, so the floor stays a lower bound on the work and
//! the achieved rate cannot exceed 100% of it unless the machine itself
//! sped up. A resumed handshake keeps only the key exchange.
//!
//! Each operation is timed on every core at once, as the benchmark itself
//! loads every core: a core's speed with its neighbours busy (shared caches,
//! the host's scheduling of a VM's CPUs) is what the handshakes get. A shared
//! VM drifts, so the floor is sampled several times around each case (before
//! and after it); the fastest sample is the floor (least work-time the
//! machine showed), and the spread of the samples is reported beside it.

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
    /// Verifications one full handshake does: 1 with the client's chain cache
    /// (CertificateVerify), 2 without it (and the CA's signature on the leaf).
    pub verifies_per_handshake: u32,
    /// How many times the floor was sampled.
    pub samples: usize,
    /// The slowest sample's full-handshake work, microseconds (the floor is
    /// the fastest): how much the machine drifted around the case.
    pub full_handshake_us_slowest: f64,
}

impl CryptoFloor {
    /// Public-key work of a full handshake, both sides, microseconds: key
    /// exchange, one signature and the verifications the client really does.
    pub fn full_handshake_us(&self) -> f64 {
        full_us(
            self.key_exchange_us,
            self.sign_us,
            self.verify_us,
            self.verifies_per_handshake,
        )
    }

    /// Public-key work of a resumed handshake.
    pub fn resumed_handshake_us(&self) -> f64 {
        self.key_exchange_us
    }

    /// The floor from several samples: the fastest sample of each operation
    /// (each is a lower bound on that operation's cost), and the slowest
    /// full-handshake total as the spread.
    pub fn from_samples(samples: &[CryptoFloor]) -> Option<CryptoFloor> {
        let first = samples.first()?;
        let min = |f: fn(&CryptoFloor) -> f64| samples.iter().map(f).fold(f64::INFINITY, f64::min);
        Some(CryptoFloor {
            group: first.group.clone(),
            signature: first.signature.clone(),
            key_exchange_us: min(|s| s.key_exchange_us),
            sign_us: min(|s| s.sign_us),
            verify_us: min(|s| s.verify_us),
            verifies_per_handshake: first.verifies_per_handshake,
            samples: samples.iter().map(|s| s.samples).sum(),
            full_handshake_us_slowest: samples
                .iter()
                .map(CryptoFloor::full_handshake_us)
                .fold(0.0, f64::max),
        })
    }
}

fn full_us(kx: f64, sign: f64, verify: f64, verifies: u32) -> f64 {
    kx + sign + f64::from(verifies) * verify
}

/// Errors measuring the floor (a broken key, an unsupported algorithm).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FloorError {
    /// The key exchange refused its own shares.
    #[error("measuring the crypto floor: key exchange: {0}")]
    KeyExchange(cipherlink::rustls::Error),
    /// The server key's PEM did not parse.
    #[error("measuring the crypto floor: key PEM: {0}")]
    KeyPem(cipherlink::rustls::pki_types::pem::Error),
    /// The crypto provider refused the server key, or signing with it failed.
    #[error("measuring the crypto floor: signing key: {0}")]
    Key(cipherlink::rustls::Error),
    /// The key cannot make the signatures the certificate needs.
    #[error("measuring the crypto floor: the key cannot sign with {0:?}")]
    NoScheme(cipherlink::rustls::SignatureScheme),
    /// A signature made here did not verify with the certificate's key.
    #[error("measuring the crypto floor: own signature does not verify")]
    OwnSignature,
    /// A measuring thread panicked.
    #[error("measuring the crypto floor: a measuring thread panicked")]
    ThreadPanicked,
}

/// Measures one sample: `budget` of wall time per operation kind, on
/// `threads` threads at once. `chain_cache` says whether the measured client
/// caches verified chains (one verification per handshake) or not (two).
pub fn measure(
    group: KeyExchange,
    algorithm: KeyAlgorithm,
    key_pem: &str,
    leaf_spki_key: &[u8],
    chain_cache: bool,
    budget: Duration,
    threads: usize,
) -> Result<CryptoFloor, FloorError> {
    let kx = group.rustls_group();
    let key_exchange_us = per_op(budget, threads, || {
        let client = kx.start().map_err(FloorError::KeyExchange)?;
        let server = kx
            .start_and_complete(client.pub_key())
            .map_err(FloorError::KeyExchange)?;
        client
            .complete(&server.pub_key)
            .map_err(FloorError::KeyExchange)?;
        Ok(())
    })?;

    let provider = cipherlink::rustls::crypto::aws_lc_rs::default_provider();
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(FloorError::KeyPem)?;
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(FloorError::Key)?;
    let (scheme, verify_alg) = schemes(algorithm);
    let signer = signing_key
        .choose_scheme(&[scheme])
        .ok_or(FloorError::NoScheme(scheme))?;
    // The size of a TLS 1.3 CertificateVerify input: 64 spaces, context, 0, hash.
    let message = [0x20u8; 130];
    let sign_us = per_op(budget, threads, || {
        signer.sign(&message).map(drop).map_err(FloorError::Key)
    })?;
    let signature = signer.sign(&message).map_err(FloorError::Key)?;
    let public_key = UnparsedPublicKey::new(verify_alg, leaf_spki_key);
    let verify_us = per_op(budget, threads, || {
        public_key
            .verify(&message, &signature)
            .map_err(|_| FloorError::OwnSignature)
    })?;
    let verifies_per_handshake = if chain_cache { 1 } else { 2 };
    Ok(CryptoFloor {
        group: group.name().to_string(),
        signature: algorithm.to_string(),
        key_exchange_us,
        sign_us,
        verify_us,
        verifies_per_handshake,
        samples: 1,
        full_handshake_us_slowest: full_us(
            key_exchange_us,
            sign_us,
            verify_us,
            verifies_per_handshake,
        ),
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
            .map(|w| w.join().map_err(|_| FloorError::ThreadPanicked)?)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(kx: f64, sign: f64, verify: f64, verifies: u32) -> CryptoFloor {
        CryptoFloor {
            group: "X25519".into(),
            signature: "P-256".into(),
            key_exchange_us: kx,
            sign_us: sign,
            verify_us: verify,
            verifies_per_handshake: verifies,
            samples: 1,
            full_handshake_us_slowest: full_us(kx, sign, verify, verifies),
        }
    }

    #[test]
    fn a_cached_chain_counts_one_verification_and_an_uncached_two() {
        assert_eq!(sample(100.0, 30.0, 50.0, 1).full_handshake_us(), 180.0);
        assert_eq!(sample(100.0, 30.0, 50.0, 2).full_handshake_us(), 230.0);
        assert_eq!(sample(100.0, 30.0, 50.0, 2).resumed_handshake_us(), 100.0);
    }

    #[test]
    fn the_floor_is_the_fastest_sample_of_each_operation_and_keeps_the_spread() {
        let floor = CryptoFloor::from_samples(&[
            sample(100.0, 40.0, 50.0, 1),
            sample(120.0, 30.0, 60.0, 1),
            sample(110.0, 35.0, 45.0, 1),
        ])
        .unwrap_or_else(|| panic!("three samples make a floor"));
        assert_eq!(floor.key_exchange_us, 100.0);
        assert_eq!(floor.sign_us, 30.0);
        assert_eq!(floor.verify_us, 45.0);
        assert_eq!(floor.full_handshake_us(), 175.0);
        assert_eq!(floor.full_handshake_us_slowest, 210.0);
        assert_eq!(floor.samples, 3);
        // No sample's work is below the floor, so no rate measured while any
        // sample's speed held can exceed it.
        assert!(floor.full_handshake_us() <= 190.0 && floor.full_handshake_us() <= 205.0);
        assert!(CryptoFloor::from_samples(&[]).is_none());
    }
}
