//! Named compliance policies, checked against the groups a Context would offer.

use serde::{Deserialize, Serialize};

use crate::kx::{Family, KeyExchange};

/// Whether classical-only key exchange may be offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClassicalChoice {
    /// Classical groups may be offered (for peers without ML-KEM).
    #[default]
    Allow,
    /// Only hybrid or post-quantum groups.
    Forbid,
}

/// What post-quantum protection is required.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PostQuantumChoice {
    /// Post-quantum groups may be offered, and need not be.
    #[default]
    Allow,
    /// Every group must be hybrid (classical + ML-KEM).
    RequireHybrid,
    /// Every group must be pure ML-KEM.
    RequirePure,
}

/// A compliance policy: what the key-exchange list may contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Compliance {
    /// Classical groups allowed or not.
    #[serde(default)]
    pub classical: ClassicalChoice,
    /// Post-quantum requirement.
    #[serde(default)]
    pub post_quantum: PostQuantumChoice,
}

/// A group that the policy does not permit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("group {group} is not permitted by compliance policy {policy}: {why}")]
pub struct PolicyViolation {
    /// The offending group.
    pub group: KeyExchange,
    /// The policy, as `classical=..., post_quantum=...`.
    pub policy: String,
    /// Why, with what would be valid.
    pub why: &'static str,
}

impl Compliance {
    /// Checks every group; the first that breaks the policy is reported.
    pub fn check(&self, groups: &[KeyExchange]) -> Result<(), PolicyViolation> {
        for &group in groups {
            if let Some(why) = self.reject_reason(group) {
                return Err(PolicyViolation {
                    group,
                    policy: self.to_string(),
                    why,
                });
            }
        }
        Ok(())
    }

    fn reject_reason(&self, group: KeyExchange) -> Option<&'static str> {
        let family = group.family();
        if self.classical == ClassicalChoice::Forbid && family == Family::Classical {
            return Some(
                "classical groups are forbidden; use X25519MLKEM768, SecP256r1MLKEM768 or MLKEM768",
            );
        }
        match (self.post_quantum, family) {
            (PostQuantumChoice::RequireHybrid, Family::Hybrid) => None,
            (PostQuantumChoice::RequireHybrid, _) => {
                Some("require_hybrid permits only X25519MLKEM768 and SecP256r1MLKEM768")
            }
            (PostQuantumChoice::RequirePure, Family::PostQuantum) => None,
            (PostQuantumChoice::RequirePure, _) => Some("require_pure permits only MLKEM768"),
            (PostQuantumChoice::Allow, _) => None,
        }
    }
}

impl std::fmt::Display for Compliance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let classical = match self.classical {
            ClassicalChoice::Allow => "allow",
            ClassicalChoice::Forbid => "forbid",
        };
        let pq = match self.post_quantum {
            PostQuantumChoice::Allow => "allow",
            PostQuantumChoice::RequireHybrid => "require_hybrid",
            PostQuantumChoice::RequirePure => "require_pure",
        };
        write!(f, "classical={classical}, post_quantum={pq}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_allows_everything() {
        assert!(Compliance::default().check(&KeyExchange::ALL).is_ok());
    }

    #[test]
    fn hybrid_required_names_the_classical_group() {
        let policy = Compliance {
            classical: ClassicalChoice::Allow,
            post_quantum: PostQuantumChoice::RequireHybrid,
        };
        let err = policy
            .check(&[KeyExchange::X25519MlKem768, KeyExchange::P256])
            .unwrap_err();
        assert_eq!(err.group, KeyExchange::P256);
        assert!(err.to_string().contains("require_hybrid"));
    }

    #[test]
    fn forbid_classical_accepts_pure_and_hybrid() {
        let policy = Compliance {
            classical: ClassicalChoice::Forbid,
            post_quantum: PostQuantumChoice::Allow,
        };
        assert!(policy
            .check(&[KeyExchange::X25519MlKem768, KeyExchange::MlKem768])
            .is_ok());
        assert!(policy.check(&[KeyExchange::X25519]).is_err());
    }
}
