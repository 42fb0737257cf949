//! What each TLS implementation built into this cipherlink offers on this
//! machine (`cipherlink info`): its version, key-exchange groups, TLS 1.3
//! cipher suites and signature algorithms, and which compliance policies it
//! can satisfy. Each answer comes from the library: rustls' provider lists,
//! and for OpenSSL a scratch context that accepts or refuses each name.

use serde::Serialize;

use crate::compliance::{ClassicalChoice, Compliance, PostQuantumChoice};
use crate::config::Implementation;
use crate::kx::KeyExchange;

/// One implementation's offer here.
#[derive(Debug, Clone, Serialize)]
pub struct ImplementationInfo {
    /// Which implementation.
    pub implementation: Implementation,
    /// Its name and version.
    pub version: String,
    /// Key-exchange groups it supports, in cipherlink's preference order.
    pub key_exchange: Vec<KeyExchange>,
    /// TLS 1.3 cipher suites (IANA names).
    pub cipher_suites: Vec<String>,
    /// Signature algorithms it can verify (TLS names).
    pub signature_algorithms: Vec<String>,
    /// Every compliance policy, with the groups it would permit here
    /// (empty: the implementation cannot satisfy it).
    pub compliance: Vec<PolicySupport>,
}

/// Whether a compliance policy can be met, and with which groups.
#[derive(Debug, Clone, Serialize)]
pub struct PolicySupport {
    /// `classical=..., post_quantum=...`.
    pub policy: String,
    /// The supported groups the policy permits.
    pub groups: Vec<KeyExchange>,
}

impl PolicySupport {
    /// Whether any supported group is permitted.
    pub fn satisfiable(&self) -> bool {
        !self.groups.is_empty()
    }
}

/// The implementations built in, rustls first.
pub fn available() -> Vec<ImplementationInfo> {
    vec![
        rustls_info(),
        #[cfg(feature = "openssl")]
        openssl_info(),
    ]
}

/// The version line of each implementation, for `--version`.
pub fn versions() -> Vec<String> {
    vec![
        RUSTLS_VERSION.to_string(),
        #[cfg(feature = "openssl")]
        crate::openssl_tls::version().to_string(),
    ]
}

/// rustls exports no version constant; this names the series cipherlink
/// is built against (`Cargo.toml`: rustls 0.23).
const RUSTLS_VERSION: &str = "rustls 0.23 (aws-lc-rs provider)";

fn rustls_info() -> ImplementationInfo {
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    // Every group aws-lc-rs implements, not just the provider's defaults.
    let groups: Vec<KeyExchange> = KeyExchange::ALL
        .into_iter()
        .filter(|kx| {
            rustls::crypto::aws_lc_rs::ALL_KX_GROUPS
                .iter()
                .any(|g| u16::from(g.name()) == kx.code_point())
        })
        .collect();
    ImplementationInfo {
        implementation: Implementation::Rustls,
        version: RUSTLS_VERSION.to_string(),
        compliance: policies(&groups),
        key_exchange: groups,
        cipher_suites: provider
            .cipher_suites
            .iter()
            .filter(|s| s.tls13().is_some())
            .filter_map(|s| s.suite().as_str())
            .map(crate::backend::iana_suite_name)
            .collect(),
        signature_algorithms: provider
            .signature_verification_algorithms
            .supported_schemes()
            .iter()
            .map(|scheme| format!("{scheme:?}"))
            .collect(),
    }
}

#[cfg(feature = "openssl")]
fn openssl_info() -> ImplementationInfo {
    use crate::openssl_tls::probe;
    let groups = probe::groups();
    ImplementationInfo {
        implementation: Implementation::Openssl,
        version: crate::openssl_tls::version().to_string(),
        compliance: policies(&groups),
        key_exchange: groups,
        cipher_suites: probe::tls13_suites()
            .into_iter()
            .map(str::to_string)
            .collect(),
        signature_algorithms: probe::signature_algorithms()
            .into_iter()
            .map(str::to_string)
            .collect(),
    }
}

fn policies(groups: &[KeyExchange]) -> Vec<PolicySupport> {
    let mut all = Vec::new();
    for classical in [ClassicalChoice::Allow, ClassicalChoice::Forbid] {
        for post_quantum in [
            PostQuantumChoice::Allow,
            PostQuantumChoice::RequireHybrid,
            PostQuantumChoice::RequirePure,
        ] {
            let policy = Compliance {
                classical,
                post_quantum,
            };
            all.push(PolicySupport {
                policy: policy.to_string(),
                groups: groups
                    .iter()
                    .copied()
                    .filter(|g| policy.check(&[*g]).is_ok())
                    .collect(),
            });
        }
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_implementation_offers_the_default_groups_and_the_hybrid_policy() {
        for info in available() {
            for kx in KeyExchange::default_list() {
                assert!(
                    info.key_exchange.contains(&kx),
                    "{}: {kx} missing",
                    info.version
                );
            }
            assert!(info
                .cipher_suites
                .contains(&"TLS_AES_128_GCM_SHA256".to_string()));
            let hybrid = info
                .compliance
                .iter()
                .find(|p| p.policy.contains("require_hybrid") && p.policy.contains("forbid"))
                .expect("policy listed");
            assert!(hybrid.satisfiable());
            assert!(hybrid
                .groups
                .iter()
                .all(|g| g.family() == crate::kx::Family::Hybrid));
        }
    }

    #[cfg(feature = "openssl")]
    #[test]
    fn openssl_is_3_6_with_ml_kem() {
        let versions = versions();
        assert!(versions[1].starts_with("OpenSSL 3."), "{versions:?}");
        assert!(crate::openssl_tls::probe::supports_group(
            KeyExchange::X25519MlKem768
        ));
        assert!(crate::openssl_tls::probe::supports_group(
            KeyExchange::MlKem768
        ));
    }
}
