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

    /// Whether the policy permits `group`.
    pub fn permits(&self, group: KeyExchange) -> bool {
        self.reject_reason(group).is_none()
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

/// A compliance setting value that is not one of the valid ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {setting} value {name:?}; valid values: {valid}")]
pub struct UnknownChoice {
    /// The setting (`classical` or `post_quantum`).
    pub setting: &'static str,
    /// What was given.
    pub name: String,
    /// The valid values.
    pub valid: &'static str,
}

/// Lower case, `-` as `_`: the TOML file writes `require_hybrid`, a flag
/// `require-hybrid`, and both mean the same.
fn fold(s: &str) -> String {
    s.trim().to_ascii_lowercase().replace('-', "_")
}

impl ClassicalChoice {
    /// The name, as in the TOML file.
    pub fn name(self) -> &'static str {
        match self {
            ClassicalChoice::Allow => "allow",
            ClassicalChoice::Forbid => "forbid",
        }
    }
}

impl std::str::FromStr for ClassicalChoice {
    type Err = UnknownChoice;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match fold(s).as_str() {
            "allow" => Ok(ClassicalChoice::Allow),
            "forbid" => Ok(ClassicalChoice::Forbid),
            _ => Err(UnknownChoice {
                setting: "classical",
                name: s.to_string(),
                valid: "allow, forbid",
            }),
        }
    }
}

impl PostQuantumChoice {
    /// The name, as in the TOML file.
    pub fn name(self) -> &'static str {
        match self {
            PostQuantumChoice::Allow => "allow",
            PostQuantumChoice::RequireHybrid => "require_hybrid",
            PostQuantumChoice::RequirePure => "require_pure",
        }
    }
}

impl std::str::FromStr for PostQuantumChoice {
    type Err = UnknownChoice;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match fold(s).as_str() {
            "allow" => Ok(PostQuantumChoice::Allow),
            "require_hybrid" => Ok(PostQuantumChoice::RequireHybrid),
            "require_pure" => Ok(PostQuantumChoice::RequirePure),
            _ => Err(UnknownChoice {
                setting: "post_quantum",
                name: s.to_string(),
                valid: "allow, require-hybrid (require_hybrid), require-pure (require_pure)",
            }),
        }
    }
}

impl std::fmt::Display for Compliance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "classical={}, post_quantum={}",
            self.classical.name(),
            self.post_quantum.name()
        )
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
    fn choices_parse_in_toml_and_flag_spellings() {
        for (text, want) in [
            ("allow", PostQuantumChoice::Allow),
            ("require_hybrid", PostQuantumChoice::RequireHybrid),
            ("require-hybrid", PostQuantumChoice::RequireHybrid),
            ("Require-Pure", PostQuantumChoice::RequirePure),
        ] {
            assert_eq!(text.parse(), Ok(want), "{text}");
            assert_eq!(want.name().parse(), Ok(want));
        }
        assert_eq!("FORBID".parse(), Ok(ClassicalChoice::Forbid));
        let err = "hybrid".parse::<PostQuantumChoice>().unwrap_err();
        assert!(err.to_string().contains("require-hybrid"), "{err}");
        assert!("deny".parse::<ClassicalChoice>().is_err());
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
