//! Each rule of cipherlink-files tried the way an attacker on the same host
//! would: a symlink or a readable file planted where a secret goes.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::io::Write;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use cipherlink_files::{
    open_private_append, read_secret, read_secret_text, write, Access, Existing, FileError, NewFile,
};

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o777
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// Names in `dir` other than `keep`: leftovers of a temporary file.
fn others(dir: &Path, keep: &[&str]) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !keep.contains(&n.as_str()))
        .collect()
}

#[test]
fn a_secret_is_0600_in_new_0700_folders() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a/b/secret.key");
    write(&path, b"s3cret", Access::Private, Existing::Refuse).unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"s3cret");
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&dir.path().join("a")), 0o700);
    assert_eq!(mode(&dir.path().join("a/b")), 0o700);
}

#[test]
fn a_public_file_is_0644_whatever_the_umask() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ca.crt");
    write(&path, b"cert", Access::Public, Existing::Replace).unwrap();
    assert_eq!(mode(&path), 0o644);
}

#[test]
fn a_planted_symlink_is_replaced_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    fs::write(&victim, b"precious").unwrap();
    let path = dir.path().join("out.key");
    symlink(&victim, &path).unwrap();

    write(&path, b"new", Access::Private, Existing::Replace).unwrap();
    assert_eq!(fs::read(&victim).unwrap(), b"precious");
    assert!(fs::symlink_metadata(&path).unwrap().is_file());
    assert_eq!(fs::read(&path).unwrap(), b"new");
}

#[test]
fn refuse_keeps_a_planted_symlink_and_its_target() {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    fs::write(&victim, b"precious").unwrap();
    let path = dir.path().join("out.key");
    symlink(&victim, &path).unwrap();
    // A dangling symlink counts as existing too.
    let dangling = dir.path().join("dangling.key");
    symlink(dir.path().join("nowhere"), &dangling).unwrap();

    for target in [&path, &dangling] {
        let err = write(target, b"new", Access::Private, Existing::Refuse).unwrap_err();
        assert!(matches!(err, FileError::Exists { .. }), "{err}");
    }
    assert_eq!(fs::read(&victim).unwrap(), b"precious");
    assert!(!dir.path().join("nowhere").exists());
    assert_eq!(
        others(dir.path(), &["victim", "out.key", "dangling.key"]),
        Vec::<String>::new()
    );
}

#[test]
fn a_world_readable_file_is_replaced_by_a_private_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens");
    fs::write(&path, b"old").unwrap();
    chmod(&path, 0o666);
    write(&path, b"new", Access::Private, Existing::Replace).unwrap();
    assert_eq!(mode(&path), 0o600);
    assert_eq!(fs::read(&path).unwrap(), b"new");
}

#[test]
fn a_file_that_appears_while_writing_is_not_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("server.key");
    let mut file = NewFile::create(&path, Access::Private, Existing::Refuse).unwrap();
    file.write_all(b"ours").unwrap();
    fs::write(&path, b"theirs").unwrap();
    let err = file.commit().unwrap_err();
    assert!(matches!(err, FileError::Exists { .. }), "{err}");
    assert_eq!(fs::read(&path).unwrap(), b"theirs");
    assert_eq!(others(dir.path(), &["server.key"]), Vec::<String>::new());
}

#[test]
fn an_abandoned_file_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x");
    let mut file = NewFile::create(&path, Access::Public, Existing::Replace).unwrap();
    file.write_all(b"half").unwrap();
    drop(file);
    assert_eq!(others(dir.path(), &[]), Vec::<String>::new());
}

#[test]
fn a_readable_secret_is_refused_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.key");
    fs::write(&path, b"key").unwrap();
    for loose in [0o644, 0o640, 0o604, 0o620] {
        chmod(&path, loose);
        let err = read_secret(&path, 100).unwrap_err();
        assert!(matches!(err, FileError::Exposed { .. }), "{err}");
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }
    chmod(&path, 0o400);
    assert_eq!(&read_secret(&path, 100).unwrap()[..], b"key");
}

#[test]
fn secret_reads_are_bounded_and_typed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big");
    write(&path, &[b'a'; 101], Access::Private, Existing::Refuse).unwrap();
    assert!(matches!(
        read_secret(&path, 100),
        Err(FileError::TooLarge { max: 100, .. })
    ));
    assert_eq!(read_secret(&path, 101).unwrap().len(), 101);

    let not_text = dir.path().join("bin");
    write(&not_text, &[0xff, 0xfe], Access::Private, Existing::Refuse).unwrap();
    assert!(matches!(
        read_secret_text(&not_text, 10),
        Err(FileError::NotText { .. })
    ));

    let folder = dir.path().join("folder");
    fs::create_dir(&folder).unwrap();
    chmod(&folder, 0o700);
    assert!(matches!(
        read_secret(&folder, 10),
        Err(FileError::NotRegular { .. })
    ));
}

#[test]
fn the_append_file_is_private_and_never_through_a_symlink() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logs/keys.log");
    {
        let mut file = open_private_append(&path).unwrap();
        writeln!(file, "one").unwrap();
    }
    {
        let mut file = open_private_append(&path).unwrap();
        writeln!(file, "two").unwrap();
    }
    assert_eq!(fs::read_to_string(&path).unwrap(), "one\ntwo\n");
    assert_eq!(mode(&path), 0o600);

    chmod(&path, 0o644);
    assert!(matches!(
        open_private_append(&path),
        Err(FileError::Exposed { .. })
    ));

    let victim = dir.path().join("victim");
    fs::write(&victim, b"precious").unwrap();
    chmod(&victim, 0o600);
    let link = dir.path().join("planted.log");
    symlink(&victim, &link).unwrap();
    let err = open_private_append(&link).unwrap_err();
    assert!(matches!(err, FileError::Symlink { .. }), "{err}");
    assert_eq!(fs::read(&victim).unwrap(), b"precious");
}

/// Another user's uid for the ownership tests, which need root to chown.
const OTHER: u32 = 65534;

fn root() -> bool {
    let me = nix_euid();
    if me != 0 {
        eprintln!("SKIPPED: ownership tests need root to make another user's files");
    }
    me == 0
}

fn nix_euid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    // The owner of a file we just made is our effective uid.
    let probe = tempfile::NamedTempFile::new().unwrap();
    probe.as_file().metadata().unwrap().uid()
}

fn chown(path: &Path, uid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(uid)).unwrap();
}

/// A CA, key or key log another user planted is not trusted, even 0600:
/// they chose what it says (a CA that signs our leaves) or would read what
/// we append.
#[test]
fn another_users_secret_is_refused() {
    if !root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let planted = dir.path().join("ca.key");
    fs::write(&planted, b"theirs").unwrap();
    chmod(&planted, 0o600);
    chown(&planted, OTHER);
    let err = read_secret(&planted, 100).unwrap_err();
    assert!(
        matches!(err, FileError::NotYours { owner: OTHER, .. }),
        "{err}"
    );
    let err = open_private_append(&planted).unwrap_err();
    assert!(matches!(err, FileError::NotYours { .. }), "{err}");
    assert_eq!(fs::read(&planted).unwrap(), b"theirs");
}

/// Secrets are not written where another user could swap them afterwards,
/// or steer them: their folder, a folder anyone may write (not sticky), or
/// a path through their symlink. Our own symlink and a sticky folder are fine.
#[test]
fn secrets_are_not_written_where_another_user_controls_the_folder() {
    if !root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let theirs = dir.path().join("theirs");
    fs::create_dir(&theirs).unwrap();
    chown(&theirs, OTHER);
    let err = write(
        &theirs.join("server.key"),
        b"k",
        Access::Private,
        Existing::Replace,
    )
    .unwrap_err();
    assert!(matches!(err, FileError::UnsafeFolder { .. }), "{err}");

    let open_to_all = dir.path().join("open");
    fs::create_dir(&open_to_all).unwrap();
    chmod(&open_to_all, 0o777);
    let err = write(
        &open_to_all.join("k"),
        b"k",
        Access::Private,
        Existing::Replace,
    )
    .unwrap_err();
    assert!(err.to_string().contains("chmod go-w"), "{err}");
    // Nor a folder below it that we would create: anyone could swap it.
    let err = write(
        &open_to_all.join("new/k"),
        b"k",
        Access::Private,
        Existing::Replace,
    )
    .unwrap_err();
    assert!(matches!(err, FileError::UnsafeFolder { .. }), "{err}");

    let sticky = dir.path().join("sticky");
    fs::create_dir(&sticky).unwrap();
    chmod(&sticky, 0o1777);
    write(&sticky.join("k"), b"k", Access::Private, Existing::Replace).unwrap();

    let prod = dir.path().join("prod");
    fs::create_dir(&prod).unwrap();
    chmod(&prod, 0o700);
    let planted = sticky.join("pki");
    symlink(&prod, &planted).unwrap();
    std::os::unix::fs::lchown(&planted, Some(OTHER), Some(OTHER)).unwrap();
    let err = write(
        &planted.join("server.key"),
        b"k",
        Access::Private,
        Existing::Replace,
    )
    .unwrap_err();
    assert!(err.to_string().contains("symlink of uid"), "{err}");
    assert!(!prod.join("server.key").exists());

    let ours = dir.path().join("ours");
    symlink(&prod, &ours).unwrap();
    write(
        &ours.join("server.key"),
        b"k",
        Access::Private,
        Existing::Replace,
    )
    .unwrap();
    assert_eq!(fs::read(prod.join("server.key")).unwrap(), b"k");
}

/// A FIFO planted where a secret is read fails at once instead of hanging.
#[test]
fn a_fifo_in_place_of_a_secret_does_not_hang() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("ca.key");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    chmod(&fifo, 0o600);
    let err = read_secret(&fifo, 100).unwrap_err();
    assert!(matches!(err, FileError::NotRegular { .. }), "{err}");
}
