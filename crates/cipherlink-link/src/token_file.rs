//! The server's token store file as a running server and the commands that
//! edit it use it (docs §8): reloaded when its content changes, failing
//! closed when it does not parse, and locked around every edit.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use zeroize::Zeroizing;

use crate::error::Error;
use crate::keys::{TokenStore, MAX_FILE_LEN};
use crate::proto::crypto::hash;
use crate::proto::ServerEndpoint;

/// What [`TokenFile::reload`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reload {
    /// The content is what was last applied (or last failed the same way).
    Unchanged,
    /// A new content was applied: `tokens` entries, `closed` open links
    /// whose token it no longer holds active were closed.
    Applied {
        /// Entries in the store.
        tokens: usize,
        /// Open links closed.
        closed: usize,
    },
    /// The file cannot be read or does not parse: every token is refused
    /// and every open link closed until it is fixed.
    Failed {
        /// Why.
        reason: String,
        /// Open links closed.
        closed: usize,
    },
}

/// A token store file watched by content (a hash of its bytes, not its
/// modification time, which can stay the same across two writes).
#[derive(Debug)]
pub struct TokenFile {
    path: PathBuf,
    last: Option<[u8; 32]>,
}

/// Reads at most [`MAX_FILE_LEN`] bytes of `path`, into memory that is wiped.
fn read_bounded(path: &Path) -> Result<Zeroizing<Vec<u8>>, String> {
    // The same rules as every secret file: bounded, and refused (so every
    // token is refused) when group or others may read it.
    cipherlink_files::read_secret(path, MAX_FILE_LEN as u64).map_err(|e| e.to_string())
}

impl TokenFile {
    /// Watches `path` (nothing read yet: the first reload applies it).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            last: None,
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the file and, if its content changed, applies it to
    /// `endpoint`: the new tokens, or, when it cannot be read or parsed,
    /// [`ServerEndpoint::refuse_all_tokens`].
    pub fn reload(&mut self, endpoint: &ServerEndpoint) -> Reload {
        let (digest, parsed) = match read_bounded(&self.path) {
            Ok(bytes) => {
                let digest = hash(&[b"content", &bytes]);
                let parsed = std::str::from_utf8(&bytes)
                    .map_err(|_| "not UTF-8 text".to_string())
                    .and_then(|t| TokenStore::parse(t).map_err(|e| e.to_string()));
                (digest, parsed)
            }
            Err(e) => (hash(&[b"error", e.as_bytes()]), Err(e)),
        };
        if self.last == Some(digest) {
            return Reload::Unchanged;
        }
        self.last = Some(digest);
        match parsed {
            Ok(store) => {
                let tokens = store.entries().len();
                let closed = endpoint.set_tokens(store);
                Reload::Applied { tokens, closed }
            }
            Err(reason) => {
                let closed = endpoint.refuse_all_tokens();
                Reload::Failed {
                    reason: format!("{}: {reason}", self.path.display()),
                    closed,
                }
            }
        }
    }
}

/// An exclusive lock on a token store, held until dropped.
pub struct StoreLock {
    _lock: Flock<File>,
}

impl std::fmt::Debug for StoreLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreLock")
    }
}

/// The lock file of a token store: `NAME.lock` beside it (the store itself
/// is replaced by a rename on every write, so it cannot carry the lock).
pub fn lock_path(store: &Path) -> PathBuf {
    let mut name = store.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    store.with_file_name(name)
}

/// How long [`lock_store`] keeps trying before it gives up.
pub const LOCK_WAIT: Duration = Duration::from_secs(10);

/// Takes the exclusive lock of the token store `store`, for one
/// read-modify-write: two `invite`/`revoke` at once would otherwise each
/// write back what they read, and one would undo the other. Tries for up
/// to [`LOCK_WAIT`], then fails naming the lock file.
pub fn lock_store(store: &Path) -> Result<StoreLock, Error> {
    lock_store_within(store, LOCK_WAIT)
}

/// [`lock_store`], trying for up to `wait`.
pub fn lock_store_within(store: &Path, wait: Duration) -> Result<StoreLock, Error> {
    let path = lock_path(store);
    let fail = |reason: String| Error::FileIo {
        path: path.display().to_string(),
        reason,
    };
    // Never through a symlink, never a FIFO (the commands may run as root
    // in a folder others can write to), only a file of ours, 0600: a lock
    // file anyone else could open is a lock anyone else could hold.
    let mut file = crate::owned_file::open_owned(&path).map_err(&fail)?;
    let start = Instant::now();
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => return Ok(StoreLock { _lock: lock }),
            Err((f, Errno::EWOULDBLOCK)) if start.elapsed() < wait => {
                file = f;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err((_, Errno::EWOULDBLOCK)) => {
                return Err(fail(format!(
                    "another process holds this lock (an invite or revoke still running?); \
                     gave up after {} s",
                    wait.as_secs_f64()
                )))
            }
            Err((_, e)) => return Err(fail(e.to_string())),
        }
    }
}
