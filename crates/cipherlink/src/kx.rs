//! Key-exchange groups, named as the IANA TLS registry and OpenSSL name them.

use std::fmt;
use std::str::FromStr;

use rustls::crypto::SupportedKxGroup;
use serde::{Deserialize, Serialize};

/// A TLS 1.3 key-exchange group that cipherlink can offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
#[non_exhaustive]
pub enum KeyExchange {
    /// Hybrid X25519 + ML-KEM-768 (IANA 0x11EC); the default first choice.
    X25519MlKem768,
    /// Hybrid NIST P-256 + ML-KEM-768 (IANA 0x11EB).
    SecP256r1MlKem768,
    /// Pure ML-KEM-768 (IANA 0x0201).
    MlKem768,
    /// Classical X25519.
    X25519,
    /// Classical NIST P-256.
    P256,
    /// Classical NIST P-384.
    P384,
}

/// How a group protects against a future quantum computer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Elliptic-curve only: broken by a large quantum computer.
    Classical,
    /// Classical and ML-KEM together: safe if either holds.
    Hybrid,
    /// ML-KEM only.
    PostQuantum,
}

impl KeyExchange {
    /// Every group, in cipherlink's default preference order.
    pub const ALL: [KeyExchange; 6] = [
        KeyExchange::X25519MlKem768,
        KeyExchange::SecP256r1MlKem768,
        KeyExchange::X25519,
        KeyExchange::P256,
        KeyExchange::P384,
        KeyExchange::MlKem768,
    ];

    /// The default list: hybrid first, classical fallbacks for old peers.
    /// P-384 is last: a client's first key share is the hybrid's, while a
    /// server still accepts a client that offers only P-384 (CNSA suite
    /// clients do), as rustls' and OpenSSL's default servers do.
    pub fn default_list() -> Vec<KeyExchange> {
        vec![
            KeyExchange::X25519MlKem768,
            KeyExchange::X25519,
            KeyExchange::P256,
            KeyExchange::P384,
        ]
    }

    /// The standard name (as in the IANA registry and `openssl -groups`).
    pub fn name(self) -> &'static str {
        match self {
            KeyExchange::X25519MlKem768 => "X25519MLKEM768",
            KeyExchange::SecP256r1MlKem768 => "SecP256r1MLKEM768",
            KeyExchange::MlKem768 => "MLKEM768",
            KeyExchange::X25519 => "X25519",
            KeyExchange::P256 => "P-256",
            KeyExchange::P384 => "P-384",
        }
    }

    /// One line on what the group is, for help texts.
    pub fn description(self) -> &'static str {
        match self {
            KeyExchange::X25519MlKem768 => "Hybrid X25519 + ML-KEM-768 (the default first choice)",
            KeyExchange::SecP256r1MlKem768 => "Hybrid P-256 + ML-KEM-768",
            KeyExchange::MlKem768 => "Pure ML-KEM-768 (post-quantum only)",
            KeyExchange::X25519 => "Classical X25519",
            KeyExchange::P256 => "Classical NIST P-256 (prime256v1, secp256r1)",
            KeyExchange::P384 => "Classical NIST P-384 (secp384r1)",
        }
    }

    /// The protection family.
    pub fn family(self) -> Family {
        match self {
            KeyExchange::X25519MlKem768 | KeyExchange::SecP256r1MlKem768 => Family::Hybrid,
            KeyExchange::MlKem768 => Family::PostQuantum,
            KeyExchange::X25519 | KeyExchange::P256 | KeyExchange::P384 => Family::Classical,
        }
    }

    /// The IANA `NamedGroup` code point.
    pub fn code_point(self) -> u16 {
        match self {
            KeyExchange::X25519MlKem768 => 0x11ec,
            KeyExchange::SecP256r1MlKem768 => 0x11eb,
            KeyExchange::MlKem768 => 0x0201,
            KeyExchange::X25519 => 0x001d,
            KeyExchange::P256 => 0x0017,
            KeyExchange::P384 => 0x0018,
        }
    }

    /// Maps a negotiated rustls group back to ours.
    pub fn from_code_point(code: u16) -> Option<KeyExchange> {
        KeyExchange::ALL
            .into_iter()
            .find(|kx| kx.code_point() == code)
    }

    /// The rustls (aws-lc-rs) implementation of this group.
    pub fn rustls_group(self) -> &'static dyn SupportedKxGroup {
        use rustls::crypto::aws_lc_rs::kx_group;
        match self {
            KeyExchange::X25519MlKem768 => kx_group::X25519MLKEM768,
            KeyExchange::SecP256r1MlKem768 => kx_group::SECP256R1MLKEM768,
            KeyExchange::MlKem768 => kx_group::MLKEM768,
            KeyExchange::X25519 => kx_group::X25519,
            KeyExchange::P256 => kx_group::SECP256R1,
            KeyExchange::P384 => kx_group::SECP384R1,
        }
    }

    /// Parses a comma-separated list such as `X25519MLKEM768,X25519`.
    pub fn parse_list(text: &str) -> Result<Vec<KeyExchange>, UnknownGroup> {
        text.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::parse)
            .collect()
    }
}

impl fmt::Display for KeyExchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A group name that is not one cipherlink knows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown key-exchange group {name:?}; valid names: X25519MLKEM768, SecP256r1MLKEM768, MLKEM768, X25519, P-256 (prime256v1, secp256r1), P-384 (secp384r1)")]
pub struct UnknownGroup {
    /// What was given.
    pub name: String,
}

impl FromStr for KeyExchange {
    type Err = UnknownGroup;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let folded = s.trim().to_ascii_lowercase().replace(['-', '_'], "");
        Ok(match folded.as_str() {
            "x25519mlkem768" => KeyExchange::X25519MlKem768,
            "secp256r1mlkem768" | "p256mlkem768" => KeyExchange::SecP256r1MlKem768,
            "mlkem768" => KeyExchange::MlKem768,
            "x25519" => KeyExchange::X25519,
            "p256" | "prime256v1" | "secp256r1" => KeyExchange::P256,
            "p384" | "secp384r1" => KeyExchange::P384,
            _ => {
                return Err(UnknownGroup {
                    name: s.to_string(),
                })
            }
        })
    }
}

impl TryFrom<String> for KeyExchange {
    type Error = UnknownGroup;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<KeyExchange> for String {
    fn from(kx: KeyExchange) -> String {
        kx.name().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_aliases_parse() {
        assert_eq!("prime256v1".parse(), Ok(KeyExchange::P256));
        assert_eq!("secp384r1".parse(), Ok(KeyExchange::P384));
        assert_eq!("x25519mlkem768".parse(), Ok(KeyExchange::X25519MlKem768));
        for kx in KeyExchange::ALL {
            assert_eq!(kx.name().parse(), Ok(kx));
            assert_eq!(KeyExchange::from_code_point(kx.code_point()), Some(kx));
            assert_eq!(u16::from(kx.rustls_group().name()), kx.code_point());
        }
    }

    #[test]
    fn unknown_name_lists_valid_ones() {
        let err = KeyExchange::parse_list("X25519,kyber512").unwrap_err();
        assert_eq!(err.name, "kyber512");
        assert!(err.to_string().contains("X25519MLKEM768"));
    }
}
