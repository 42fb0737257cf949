//! `--classical` and `--post-quantum` for `link serve` and `link connect`:
//! the core's compliance policy, held against the key exchange of each
//! wire. The link protocol's is hybrid X25519 + ML-KEM-768 and forward
//! secret; PORT's is X25519 alone, from a static server key, with no
//! forward secrecy. No setting asks for forward secrecy on its own: any
//! requirement of post-quantum protection, or `--classical forbid`,
//! refuses PORT.

use anyhow::{anyhow, Result};
use cipherlink::{ClassicalChoice, Compliance, KeyExchange, PostQuantumChoice};
use clap::Args;

use crate::link_cmd::Wire;

/// The compliance policy a link command must keep.
#[derive(Debug, Args, Default)]
pub(crate) struct PolicyArgs {
    /// Whether classical-only key exchange may be used (`forbid` refuses
    /// --wire port).
    #[arg(long)]
    classical: Option<ClassicalChoice>,
    /// Post-quantum requirement (`require-hybrid` refuses --wire port;
    /// `require-pure` refuses both wires).
    #[arg(long = "post-quantum")]
    post_quantum: Option<PostQuantumChoice>,
}

impl PolicyArgs {
    fn policy(&self) -> Compliance {
        Compliance {
            classical: self.classical.unwrap_or_default(),
            post_quantum: self.post_quantum.unwrap_or_default(),
        }
    }

    /// Refuses `wire` when its key exchange breaks the policy (PORT's
    /// rule is the proxy's `port` transport's, one function for both).
    pub(crate) fn check(&self, wire: Wire) -> Result<()> {
        let policy = self.policy();
        match wire {
            // TYPHOON's key exchange is PORT's: the same rule.
            Wire::Port | Wire::Typhoon => match cipherlink_proxy::port::unmet_policy(&policy) {
                Some((setting, reason)) => {
                    let flag = if setting == "classical" {
                        "--classical"
                    } else {
                        "--post-quantum"
                    };
                    let name = if wire == Wire::Port { "port" } else { "typhoon" };
                    Err(anyhow!("--wire {name} with {flag}: {reason}"))
                }
                None => Ok(()),
            },
            Wire::Link => policy.check(&[KeyExchange::X25519MlKem768]).map_err(|v| {
                anyhow!(
                    "--wire link: the link protocol's key exchange is hybrid X25519 + ML-KEM-768: {v}"
                )
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(classical: Option<ClassicalChoice>, pq: Option<PostQuantumChoice>) -> PolicyArgs {
        PolicyArgs {
            classical,
            post_quantum: pq,
        }
    }

    #[test]
    fn port_is_refused_when_the_policy_asks_for_more_than_x25519() {
        assert!(args(None, None).check(Wire::Port).is_ok());
        for a in [
            args(Some(ClassicalChoice::Forbid), None),
            args(None, Some(PostQuantumChoice::RequireHybrid)),
            args(None, Some(PostQuantumChoice::RequirePure)),
        ] {
            let e = a.check(Wire::Port).unwrap_err().to_string();
            assert!(
                e.contains("--wire port") && e.contains("no forward secrecy"),
                "{e}"
            );
        }
    }

    #[test]
    fn typhoon_is_refused_exactly_like_port() {
        assert!(args(None, None).check(Wire::Typhoon).is_ok());
        for a in [
            args(Some(ClassicalChoice::Forbid), None),
            args(None, Some(PostQuantumChoice::RequireHybrid)),
            args(None, Some(PostQuantumChoice::RequirePure)),
        ] {
            let port = a.check(Wire::Port).unwrap_err().to_string();
            let typhoon = a.check(Wire::Typhoon).unwrap_err().to_string();
            assert_eq!(typhoon, port.replace("--wire port", "--wire typhoon"));
        }
    }

    #[test]
    fn link_keeps_every_policy_but_pure_ml_kem() {
        assert!(args(Some(ClassicalChoice::Forbid), None)
            .check(Wire::Link)
            .is_ok());
        assert!(args(None, Some(PostQuantumChoice::RequireHybrid))
            .check(Wire::Link)
            .is_ok());
        assert!(args(None, Some(PostQuantumChoice::RequirePure))
            .check(Wire::Link)
            .is_err());
    }
}
