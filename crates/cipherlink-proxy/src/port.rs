//! The port transport's shared pieces: SeasideVPN's PORT wire
//! (docs/port-wire.md) with the link's token store. `cipherlink link
//! serve|connect --wire port` and the proxy's `port` transport both use
//! them, so a token `link invite --wire port` issues opens either.
//!
//! A PORT token is a link token's id and secret, 48 bytes: the server finds
//! the entry by the id and compares the secret in constant time.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use cipherlink::compliance::{ClassicalChoice, Compliance, PostQuantumChoice};
use cipherlink_link::{Token, TokenStore};
use cipherlink_port::driver::Admit;
use tokio::sync::watch;
use zeroize::Zeroizing;

/// Bytes of a PORT token made from a link token: id (16) and secret (32).
pub const TOKEN_LEN: usize = 16 + 32;

/// Most plaintext bytes put in one PORT message. SeasideVPN's Python reader
/// takes each part of a message with a single `recv`, so a message must
/// arrive whole; with its header and largest tail this keeps one under
/// loopback's 64 KiB segment (docs/port-wire.md, "SeasideVPN's reader").
pub const MAX_MESSAGE: usize = 60_000;

/// The bytes a PORT client presents for `token`.
pub fn token_bytes(t: &Token) -> Zeroizing<Vec<u8>> {
    let mut b = Zeroizing::new(Vec::with_capacity(TOKEN_LEN));
    b.extend_from_slice(&t.id);
    b.extend_from_slice(&t.secret[..]);
    b
}

/// The name of an active entry of `store` whose id and secret make `token`.
pub fn admit(store: &TokenStore, token: &[u8]) -> Option<String> {
    use subtle::ConstantTimeEq as _;
    if token.len() != TOKEN_LEN {
        return None;
    }
    let id: [u8; 16] = token[..16].try_into().ok()?;
    let e = store.lookup(&id)?;
    let same: bool = e.token.secret[..].ct_eq(&token[16..]).into();
    (same && !e.revoked).then(|| e.name.clone())
}

/// The setting of `policy` PORT cannot meet (`post_quantum` or
/// `classical`) and why, if any: PORT's session key is one X25519 exchange
/// with the server's static key, with no post-quantum part and no forward
/// secrecy.
pub fn unmet_policy(policy: &Compliance) -> Option<(&'static str, String)> {
    let (setting, wants) = if policy.post_quantum != PostQuantumChoice::Allow {
        ("post_quantum", "post-quantum key exchange")
    } else if policy.classical == ClassicalChoice::Forbid {
        ("classical", "no classical-only key exchange")
    } else {
        return None;
    };
    Some((
        setting,
        format!(
            "requires {wants} ({policy}), and transport port cannot meet it: PORT's session key \
             is one X25519 exchange with the server's static key (no post-quantum part, no \
             forward secrecy, docs/port-wire.md §6); use transport link (hybrid ML-KEM, forward \
             secret) or tls"
        ),
    ))
}

/// A token store that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenStoreError {
    /// Reading it failed (missing, readable by others, too large, ...).
    #[error("{0}")]
    Read(#[from] cipherlink_files::FileError),
    /// It does not parse.
    #[error("token store {}: {error}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        error: cipherlink_link::Error,
    },
}

/// What [`PortTokens::reload`] did.
#[derive(Debug)]
#[non_exhaustive]
pub enum Reload {
    /// The file's content is what it was.
    Unchanged,
    /// A new store is in force, with this many entries.
    Applied {
        /// Entries in the store (revoked ones too).
        tokens: usize,
    },
    /// The file no longer reads or parses: every token is refused until it
    /// is fixed (a revoke typed wrong must not leave the token working).
    Failed {
        /// Why.
        reason: TokenStoreError,
    },
}

/// A PORT server's token store: read from its file, re-read on demand
/// (on content, not mtime), and watched by the listener and the sessions.
#[derive(Debug)]
pub struct PortTokens {
    path: PathBuf,
    store: watch::Sender<Arc<TokenStore>>,
    /// The text last read (`None` after a failed read), to tell whether
    /// the file changed.
    last: Mutex<Option<Zeroizing<String>>>,
}

fn read_store(path: &Path) -> Result<(Zeroizing<String>, TokenStore), TokenStoreError> {
    let max = cipherlink_link::keys::MAX_FILE_LEN as u64;
    let text = cipherlink_files::read_secret_text(path, max)?;
    let store = TokenStore::parse(&text).map_err(|error| TokenStoreError::Parse {
        path: path.to_path_buf(),
        error,
    })?;
    Ok((text, store))
}

impl PortTokens {
    /// Reads the store at `path` (it must read and parse).
    pub fn open(path: &Path) -> Result<PortTokens, TokenStoreError> {
        let (text, store) = read_store(path)?;
        Ok(PortTokens {
            path: path.to_path_buf(),
            store: watch::Sender::new(Arc::new(store)),
            last: Mutex::new(Some(text)),
        })
    }

    /// The store's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The store in force now, and each one that replaces it.
    pub fn watch(&self) -> watch::Receiver<Arc<TokenStore>> {
        self.store.subscribe()
    }

    /// A [`cipherlink_port::driver::PortListener`]'s admission: the token's
    /// name in the store in force when the INIT arrives.
    pub fn admit_fn(&self) -> Admit {
        let store = self.watch();
        Arc::new(move |token: &[u8]| admit(&store.borrow(), token))
    }

    /// Re-reads the file; a changed store replaces the one in force.
    pub fn reload(&self) -> Reload {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let read = read_store(&self.path);
        // A store still broken is reported once, not every time.
        let text = read.as_ref().ok().map(|(t, _)| t.as_str());
        if text == last.as_deref().map(|s| s.as_str()) {
            return Reload::Unchanged;
        }
        match read {
            Ok((text, store)) => {
                let tokens = store.entries().len();
                *last = Some(text);
                self.store.send_replace(Arc::new(store));
                Reload::Applied { tokens }
            }
            Err(reason) => {
                *last = None;
                self.store.send_replace(Arc::new(TokenStore::new()));
                Reload::Failed { reason }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn write_private(path: &Path, text: &str) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(path, text).expect("write");
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }

    #[test]
    fn a_token_opens_while_active_and_only_whole() {
        let mut rng = rand::rngs::StdRng::from_os_rng();
        let mut store = TokenStore::new();
        let alice = token_bytes(&store.issue("alice", &mut rng).expect("issue"));
        assert_eq!(admit(&store, &alice).as_deref(), Some("alice"));
        let mut other = alice.to_vec();
        other[TOKEN_LEN - 1] ^= 1;
        assert_eq!(admit(&store, &other), None);
        assert_eq!(admit(&store, &alice[..TOKEN_LEN - 1]), None);
        store.revoke("alice");
        assert_eq!(admit(&store, &alice), None);
    }

    #[test]
    fn a_store_that_breaks_refuses_every_token_until_fixed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("port-tokens.txt");
        let mut rng = rand::rngs::StdRng::from_os_rng();
        let mut store = TokenStore::new();
        let alice = token_bytes(&store.issue("alice", &mut rng).expect("issue"));
        write_private(&path, &store.to_text());
        let tokens = PortTokens::open(&path).expect("open");
        let check = tokens.admit_fn();
        assert_eq!(check(&alice).as_deref(), Some("alice"));
        assert!(matches!(tokens.reload(), Reload::Unchanged));
        write_private(&path, "not a token store");
        assert!(matches!(tokens.reload(), Reload::Failed { .. }));
        assert_eq!(check(&alice), None);
        assert!(matches!(tokens.reload(), Reload::Unchanged));
        assert_eq!(check(&alice), None);
        write_private(&path, &store.to_text());
        assert!(matches!(tokens.reload(), Reload::Applied { tokens: 1 }));
        assert_eq!(check(&alice).as_deref(), Some("alice"));
    }
}
