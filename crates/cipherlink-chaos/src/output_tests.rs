use std::fs;
use std::os::unix::fs::{symlink, MetadataExt};

use super::*;

fn me() -> Invoker {
    Invoker::current_user()
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

#[test]
fn a_planted_symlink_is_replaced_and_its_target_untouched() {
    let dir = tempfile::tempdir().expect("temp dir");
    let victim = dir.path().join("victim");
    fs::write(&victim, b"precious").expect("victim");
    let out_path = dir.path().join("out");
    fs::create_dir(&out_path).expect("out");
    symlink(&victim, out_path.join("tls-ideal.pcap")).expect("plant");

    let out = OutDir::open(&out_path, me()).expect("out dir");
    let written = out.write("tls-ideal.pcap", b"pcap").expect("write");
    assert_eq!(written, out_path.join("tls-ideal.pcap"));
    assert_eq!(fs::read(&victim).expect("victim"), b"precious");
    let meta = fs::symlink_metadata(&written).expect("written");
    assert!(meta.is_file());
    assert_eq!(fs::read(&written).expect("read"), b"pcap");
    // A streamed file appears only when committed.
    let mut file = out.create("stream.pcap").expect("create");
    file.write_all(b"part").expect("write");
    assert!(!out_path.join("stream.pcap").exists());
    file.commit().expect("commit");
    assert_eq!(
        fs::read(out_path.join("stream.pcap")).expect("read"),
        b"part"
    );
}

#[test]
fn a_symlinked_folder_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let real = dir.path().join("real");
    fs::create_dir(&real).expect("real");
    let link = dir.path().join("link");
    symlink(&real, &link).expect("symlink");
    for given in [link.clone(), dir.path().join("link/")] {
        match OutDir::open(&given, me()) {
            Err(OutputError::Symlink { .. }) => {}
            other => panic!("{}: {other:?}", given.display()),
        }
    }
}

#[test]
fn a_folder_of_another_user_is_refused_a_new_one_accepted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let someone_else = Invoker {
        uid: me().uid + 4242,
        owner: None,
    };
    match OutDir::open(dir.path(), someone_else) {
        Err(OutputError::NotYours {
            found, expected, ..
        }) => assert_eq!((found, expected), (me().uid, me().uid + 4242)),
        other => panic!("{other:?}"),
    }
    // A folder this process creates is fine, whoever the invoker.
    let fresh = dir.path().join("a/b");
    OutDir::open(&fresh, someone_else).expect("a new folder");
    // ... but only the one it created: the next run finds it existing.
    assert!(matches!(
        OutDir::open(&fresh, someone_else),
        Err(OutputError::NotYours { .. })
    ));
    // A single file's folder may be root's (as /tmp is), not another user's.
    let (_, name) = OutDir::for_file(&dir.path().join("x.pcap"), me()).expect("mine");
    assert_eq!(name, "x.pcap");
    let other = tempfile::tempdir().expect("temp dir");
    if is_root() {
        // Root's folder is accepted for anyone; make it a third user's.
        OutDir::for_file(&other.path().join("x.pcap"), someone_else).expect("root's");
        std::os::unix::fs::chown(other.path(), Some(4343), Some(4343)).expect("chown");
    }
    assert!(matches!(
        OutDir::for_file(&other.path().join("x.pcap"), someone_else),
        Err(OutputError::NotYours { .. })
    ));
}

#[test]
fn the_folder_is_held_open_so_swapping_it_redirects_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let first = dir.path().join("out");
    fs::create_dir(&first).expect("out");
    let out = OutDir::open(&first, me()).expect("out dir");
    // Someone swaps the folder for a symlink to elsewhere after the check.
    let moved = dir.path().join("moved");
    fs::rename(&first, &moved).expect("rename");
    let elsewhere = dir.path().join("elsewhere");
    fs::create_dir(&elsewhere).expect("elsewhere");
    symlink(&elsewhere, &first).expect("symlink");
    out.write("report.html", b"<html>").expect("write");
    assert!(moved.join("report.html").is_file());
    assert_eq!(fs::read_dir(&elsewhere).expect("list").count(), 0);
}

#[test]
fn bad_names_and_long_reads_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = OutDir::open(dir.path(), me()).expect("out dir");
    for name in ["../x", "a/b", "..", ".", ""] {
        assert!(
            matches!(out.write(name, b"x"), Err(OutputError::BadName { .. })),
            "{name:?}"
        );
    }
    out.write("ten", b"0123456789").expect("write");
    assert_eq!(out.read("ten", 10).expect("read"), b"0123456789");
    assert!(matches!(out.read("ten", 9), Err(OutputError::File { .. })));
    symlink(dir.path().join("ten"), dir.path().join("link")).expect("symlink");
    assert!(out.read("link", 100).is_err(), "read through a symlink");
}

#[test]
fn files_and_created_folders_go_to_the_sudo_user() {
    if !is_root() {
        cipherlink_test_support::unavailable(
            "root (chown)",
            "files_and_created_folders_go_to_the_sudo_user",
            "not running as root",
        );
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let sudo_user = Invoker {
        uid: 4242,
        owner: Some(Owner {
            uid: 4242,
            gid: 4243,
        }),
    };
    let out_path = dir.path().join("new/report");
    let out = OutDir::open(&out_path, sudo_user).expect("out dir");
    out.write("tls-ideal.json", b"{}").expect("write");
    let mut pcap = out.create("tls-ideal.pcap").expect("create");
    pcap.write_all(b"pcap").expect("write");
    pcap.commit().expect("commit");
    // Written by other code (the TLS key log), then handed over.
    fs::write(out.pinned("tls-keys.log").expect("path"), b"keys").expect("keys");
    out.hand_over("tls-keys.log").expect("hand over");
    for path in [
        dir.path().join("new"),
        out_path.clone(),
        out_path.join("tls-ideal.json"),
        out_path.join("tls-ideal.pcap"),
        out_path.join("tls-keys.log"),
    ] {
        let meta = fs::symlink_metadata(&path).expect("metadata");
        assert_eq!((meta.uid(), meta.gid()), (4242, 4243), "{}", path.display());
    }
    // The user's own folder, next time, is accepted.
    OutDir::open(&out_path, sudo_user).expect("the user's folder");
    // A symlink handed over is left alone, and so is its target.
    let target = dir.path().join("root-file");
    fs::write(&target, b"root").expect("target");
    symlink(&target, out_path.join("planted")).expect("symlink");
    out.hand_over("planted").expect("hand over");
    assert_eq!(fs::metadata(&target).expect("target").uid(), 0);
}
