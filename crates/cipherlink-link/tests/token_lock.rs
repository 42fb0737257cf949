//! The token store's lock (docs §8): `invite` and `revoke` never wait
//! forever for it, and only a regular file of ours can be the lock.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use cipherlink_link::token_file::{lock_path, lock_store};

/// Runs `lock_store(store)` on a thread; its result within 60 s, or a
/// failure saying that it hung.
fn try_lock(store: &Path) -> Result<(), String> {
    let (tx, rx) = mpsc::channel();
    let store: PathBuf = store.to_path_buf();
    std::thread::spawn(move || {
        let _ = tx.send(lock_store(&store).map(drop).map_err(|e| e.to_string()));
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("lock_store waited for over 60 s")
}

/// Anyone who can open the lock file could hold it forever (a read-only
/// descriptor is enough for flock): a second locker gives up after a
/// bounded wait, naming the lock file and saying another process holds it.
#[test]
fn a_held_lock_makes_the_next_locker_give_up_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("link-tokens.txt");
    let held = lock_store(&store).unwrap();
    let err = try_lock(&store).expect_err("took a lock another process holds");
    assert!(err.contains("link-tokens.txt.lock"), "{err}");
    assert!(err.contains("another process holds"), "{err}");
    drop(held);
    try_lock(&store).unwrap();
}

/// A FIFO planted as the lock file would hang the opener: refused at once.
#[test]
fn a_fifo_as_the_lock_file_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("link-tokens.txt");
    nix::unistd::mkfifo(&lock_path(&store), nix::sys::stat::Mode::S_IRWXU).unwrap();
    let err = try_lock(&store).expect_err("locked a FIFO");
    assert!(err.contains("not a regular file"), "{err}");
}

/// A lock file of another user could be held by that user: refused
/// (running as root, the test makes one; otherwise it cannot and says so).
#[test]
fn a_lock_file_of_another_user_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("link-tokens.txt");
    std::fs::write(lock_path(&store), b"").unwrap();
    if std::os::unix::fs::chown(lock_path(&store), Some(54321), None).is_err() {
        eprintln!("not root: cannot make a file of another user; skipped");
        return;
    }
    let err = try_lock(&store).expect_err("locked another user's lock file");
    assert!(err.contains("belongs to user id 54321"), "{err}");
}
