use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};

use super::*;

fn me() -> Invoker {
    Invoker::current_user()
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn root_or_skip(test: &str) -> bool {
    if !is_root() {
        cipherlink_test_support::unavailable("root (chown)", test, "not running as root");
    }
    is_root()
}

/// uid 4242 through sudo (group 4243).
fn sudo_user() -> Invoker {
    Invoker {
        uid: 4242,
        owner: Some(Owner {
            uid: 4242,
            gid: 4243,
        }),
    }
}

/// A temporary folder of the sudo user's, as their home would be.
fn sudo_home() -> tempfile::TempDir {
    let home = tempfile::tempdir().expect("temp dir");
    std::os::unix::fs::chown(home.path(), Some(4242), Some(4243)).expect("chown");
    home
}

fn owner_of(path: &Path) -> (u32, u32) {
    let meta = fs::symlink_metadata(path).expect("metadata");
    (meta.uid(), meta.gid())
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
    // Written again, the run's own file is replaced.
    out.write("stream.pcap", b"again").expect("rewrite");
    assert_eq!(
        fs::read(out_path.join("stream.pcap")).expect("read"),
        b"again"
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
    // On the way, a symlink of ours (or root's) is followed; the folder
    // at the end is checked as any other.
    OutDir::open(&link.join("sub"), me()).expect("through our own symlink");
    assert!(real.join("sub").is_dir());
}

#[test]
fn a_folder_of_another_user_is_refused() {
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
    // Nor is a folder made in it for them.
    match OutDir::open(&dir.path().join("a/b"), someone_else) {
        Err(OutputError::CannotCreate { path, .. }) => assert_eq!(path, dir.path().join("a")),
        other => panic!("{other:?}"),
    }
    assert!(!dir.path().join("a").exists());
    // A single file's folder must be theirs too, unless root's and sticky.
    let (_, name) = OutDir::for_file(&dir.path().join("x.pcap"), me()).expect("mine");
    assert_eq!(name, "x.pcap");
    assert!(matches!(
        OutDir::for_file(&dir.path().join("x.pcap"), someone_else),
        Err(OutputError::NotYours { .. })
    ));
}

#[test]
fn folders_others_may_write_are_refused_on_the_way_and_at_the_end() {
    let dir = tempfile::tempdir().expect("temp dir");
    let open = dir.path().join("open");
    fs::create_dir(&open).expect("open");
    fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).expect("chmod");
    for given in [open.clone(), open.join("below")] {
        match OutDir::open(&given, me()) {
            Err(OutputError::Unsafe { path, reason }) => {
                assert_eq!(path, open, "{reason}");
                assert!(reason.contains("777"), "{reason}");
            }
            other => panic!("{}: {other:?}", given.display()),
        }
    }
    assert!(!open.join("below").exists());
    // Sticky (as /tmp): nobody can rename another's entry away.
    fs::set_permissions(&open, fs::Permissions::from_mode(0o1777)).expect("chmod");
    OutDir::open(&open.join("below"), me()).expect("below a sticky folder");
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
        assert!(
            matches!(out.private(name), Err(OutputError::BadName { .. })),
            "{name:?}"
        );
    }
    out.write("ten", b"0123456789").expect("write");
    assert_eq!(out.read("ten", 10).expect("read"), b"0123456789");
    assert!(matches!(out.read("ten", 9), Err(OutputError::File { .. })));
    symlink(dir.path().join("ten"), dir.path().join("link")).expect("symlink");
    assert!(
        matches!(out.read("link", 100), Err(OutputError::Symlink { .. })),
        "read through a symlink"
    );
}

/// Runs `read` on a thread: a read that blocks fails the test after 20 s
/// instead of hanging it.
fn read_within<T: Send + 'static>(read: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(read());
    });
    rx.recv_timeout(std::time::Duration::from_secs(20))
        .expect("the read blocked (a FIFO waited on)")
}

#[test]
fn a_fifo_is_refused_not_waited_on() {
    let dir = tempfile::tempdir().expect("temp dir");
    nix::unistd::mkfifo(&dir.path().join("fifo"), nix::sys::stat::Mode::S_IRWXU).expect("fifo");
    let out = OutDir::open(dir.path(), me()).expect("out dir");
    let result = read_within(move || out.read("fifo", 100).map(|_| ()));
    match result {
        Err(OutputError::File { reason, .. }) => assert!(reason.contains("regular"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn files_and_created_folders_go_to_the_sudo_user() {
    if !root_or_skip("files_and_created_folders_go_to_the_sudo_user") {
        return;
    }
    let home = sudo_home();
    let out_path = home.path().join("new/report");
    let out = OutDir::open(&out_path, sudo_user()).expect("out dir");
    out.write("tls-ideal.json", b"{}").expect("write");
    let mut pcap = out.create("tls-ideal.pcap").expect("create");
    pcap.write_all(b"pcap").expect("write");
    pcap.commit().expect("commit");
    // Written by other code (the TLS key log) in its private folder, then
    // handed over and moved next to the rest.
    let keys = out.private("tls-keys.log").expect("private");
    fs::write(keys.path(), b"keys").expect("keys");
    assert_eq!(keys.read(100).expect("read back"), b"keys");
    assert_eq!(
        keys.publish().expect("publish"),
        Some(out_path.join("tls-keys.log"))
    );
    for path in [
        home.path().join("new"),
        out_path.clone(),
        out_path.join("tls-ideal.json"),
        out_path.join("tls-ideal.pcap"),
        out_path.join("tls-keys.log"),
    ] {
        assert_eq!(owner_of(&path), (4242, 4243), "{}", path.display());
    }
    assert_eq!(
        fs::read(out_path.join("tls-keys.log")).expect("keys"),
        b"keys"
    );
    let mode = fs::metadata(out_path.join("tls-keys.log"))
        .expect("keys")
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // Nothing else is left: the private folder is gone.
    let names: Vec<_> = fs::read_dir(&out_path)
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
    // The user's own folder, next time, is accepted.
    OutDir::open(&out_path, sudo_user()).expect("the user's folder");
}

#[path = "output_attack_tests.rs"]
mod attacks;
