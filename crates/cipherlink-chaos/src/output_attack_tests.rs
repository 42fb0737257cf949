//! What a user who runs the lab through sudo (uid 4242), or another local
//! user, can try against the output folder and files (red-team review,
//! issue 22): each attack is made deterministic by acting between the
//! walk's steps, with a bounded race loop as an extra.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::*;
use crate::output_walk::Event;

/// A root-owned folder holding a root-owned folder and file, standing for
/// /etc: what no run for uid 4242 may hand over, write or create in.
struct Victim {
    dir: tempfile::TempDir,
}

impl Victim {
    fn new() -> Victim {
        let dir = tempfile::tempdir().expect("temp dir");
        fs::create_dir(dir.path().join("etc")).expect("etc");
        fs::write(dir.path().join("passwd"), b"root:x:0:0").expect("passwd");
        Victim { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fails if anything in it changed hands or content, or was added.
    fn assert_untouched(&self) {
        let root = self.path();
        assert_eq!(owner_of(root), (0, 0));
        assert_eq!(owner_of(&root.join("etc")), (0, 0), "etc handed over");
        assert_eq!(owner_of(&root.join("passwd")), (0, 0), "passwd handed over");
        assert_eq!(
            fs::read(root.join("passwd")).expect("passwd"),
            b"root:x:0:0"
        );
        let mut names: Vec<_> = fs::read_dir(root)
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        names.sort();
        assert_eq!(names, ["etc", "passwd"], "something was made in the victim");
    }
}

/// Swaps `at` for a symlink (of uid 4242, as the attacker would make it)
/// to `target`, keeping what was there as `moved`.
fn swap_for_symlink(at: &Path, moved: &Path, target: &Path) {
    fs::rename(at, moved).expect("move aside");
    symlink(target, at).expect("plant symlink");
    nix::unistd::fchownat(
        nix::fcntl::AT_FDCWD,
        at,
        Some(nix::unistd::Uid::from_raw(4242)),
        None,
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .expect("lchown");
}

#[test]
fn a_folder_swapped_after_it_was_made_is_refused_not_followed() {
    if !root_or_skip("a_folder_swapped_after_it_was_made_is_refused_not_followed") {
        return;
    }
    let victim = Victim::new();
    let home = sudo_home();
    let new = home.path().join("new");
    let mut hook = |at: &Path, event: Event| {
        if at == new && event == Event::Made {
            swap_for_symlink(&new, &home.path().join("moved"), victim.path());
        }
    };
    let given = new.join("etc");
    match OutDir::open_hooked(&given, sudo_user(), false, &mut hook) {
        Err(OutputError::Symlink { path }) => assert_eq!(path, new),
        other => panic!("{other:?}"),
    }
    victim.assert_untouched();
    // What was made and moved aside is not handed over either (it never
    // was opened): root's, private and empty.
    assert_eq!(owner_of(&home.path().join("moved")), (0, 0));
}

#[test]
fn a_root_folder_swapped_in_after_one_was_made_is_not_handed_over() {
    if !root_or_skip("a_root_folder_swapped_in_after_one_was_made_is_not_handed_over") {
        return;
    }
    let home = sudo_home();
    // A folder of root's in the user's folder (left by some root process),
    // which the user may rename within their folder.
    let roots = home.path().join("roots");
    fs::create_dir(&roots).expect("roots");
    fs::write(roots.join("secret"), b"root's").expect("secret");
    let new = home.path().join("new");
    let mut hook = |at: &Path, event: Event| {
        if at == new && event == Event::Made {
            fs::rename(&new, home.path().join("moved")).expect("move aside");
            fs::rename(&roots, &new).expect("swap in root's folder");
        }
    };
    match OutDir::open_hooked(&new.join("report"), sudo_user(), false, &mut hook) {
        Err(OutputError::CannotCreate { path, found, .. }) => {
            assert_eq!((path, found), (new.join("report"), 0))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(owner_of(&new), (0, 0), "root's folder handed over");
    assert!(!new.join("report").exists());
    // As the last folder it is refused the same way.
    let mut hook = |_: &Path, _: Event| {};
    assert!(matches!(
        OutDir::open_hooked(&new, sudo_user(), false, &mut hook),
        Err(OutputError::NotYours { found: 0, .. })
    ));
}

#[test]
fn a_parent_swapped_after_it_was_opened_redirects_nothing() {
    if !root_or_skip("a_parent_swapped_after_it_was_opened_redirects_nothing") {
        return;
    }
    let victim = Victim::new();
    let home = sudo_home();
    let new = home.path().join("new");
    let moved = home.path().join("moved");
    let mut hook = |at: &Path, event: Event| {
        if at == new && event == Event::Opened {
            swap_for_symlink(&new, &moved, victim.path());
        }
    };
    let out = OutDir::open_hooked(&new.join("etc"), sudo_user(), false, &mut hook)
        .expect("made in the folder held open");
    out.write("report.html", b"<html>").expect("write");
    victim.assert_untouched();
    assert_eq!(owner_of(&moved.join("etc")), (4242, 4243));
    assert!(moved.join("etc/report.html").is_file());
}

/// The review's attack as a race: the user's folder `a` and a symlink to
/// the victim swap places (`RENAME_EXCHANGE`) in a loop while the run
/// makes `a/etcN` (the victim has every `etcN`). Before the walk, a made
/// folder was opened again by path, and now and then that was the
/// victim's, which was then handed to the user.
#[test]
fn a_parent_swapped_in_a_loop_never_hands_over_a_root_folder() {
    if !root_or_skip("a_parent_swapped_in_a_loop_never_hands_over_a_root_folder") {
        return;
    }
    const ROUNDS: usize = 1500;
    let victim = tempfile::tempdir().expect("temp dir");
    for i in 0..ROUNDS {
        fs::create_dir(victim.path().join(format!("etc{i}"))).expect("victim folder");
    }
    let home = sudo_home();
    let (a, b) = (home.path().join("a"), home.path().join("b"));
    fs::create_dir(&a).expect("a");
    std::os::unix::fs::chown(&a, Some(4242), Some(4243)).expect("chown a");
    swap_for_symlink(&a, &b, victim.path());
    // Now `a` is the symlink and `b` the folder; they keep swapping.
    let stop = Arc::new(AtomicBool::new(false));
    let racer = {
        let (stop, a, b) = (Arc::clone(&stop), a.clone(), b.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let _ = nix::fcntl::renameat2(
                    nix::fcntl::AT_FDCWD,
                    &a,
                    nix::fcntl::AT_FDCWD,
                    &b,
                    nix::fcntl::RenameFlags::RENAME_EXCHANGE,
                );
            }
        })
    };
    for i in 0..ROUNDS {
        let _ = OutDir::open(&a.join(format!("etc{i}")), sudo_user());
    }
    stop.store(true, Ordering::Relaxed);
    racer.join().expect("racer");
    let handed: Vec<String> = (0..ROUNDS)
        .map(|i| victim.path().join(format!("etc{i}")))
        .filter(|p| owner_of(p) != (0, 0))
        .map(|p| p.display().to_string())
        .collect();
    assert!(handed.is_empty(), "handed to the user: {handed:?}");
}

#[test]
fn under_sudo_a_root_folder_is_accepted_only_if_sticky() {
    if !root_or_skip("under_sudo_a_root_folder_is_accepted_only_if_sticky") {
        return;
    }
    let victim = Victim::new();
    // `--json /srv/x/passwd`: root's folder, not sticky.
    match OutDir::for_file(&victim.path().join("passwd"), sudo_user()) {
        Err(OutputError::NotYours { found, .. }) => assert_eq!(found, 0),
        other => panic!("{other:?}"),
    }
    // `--json /etc/newdir.d/x.json`: no folder made in root's.
    match OutDir::for_file(&victim.path().join("newdir.d/x.json"), sudo_user()) {
        Err(OutputError::CannotCreate { found, .. }) => assert_eq!(found, 0),
        other => panic!("{other:?}"),
    }
    victim.assert_untouched();
}

#[test]
fn under_sudo_a_name_of_someone_elses_is_never_replaced() {
    if !root_or_skip("under_sudo_a_name_of_someone_elses_is_never_replaced") {
        return;
    }
    // A sticky folder of root's, as /tmp, with a file of root's, a file
    // of a third user's and a symlink of theirs.
    let tmp = tempfile::tempdir().expect("temp dir");
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o1777)).expect("chmod");
    fs::write(tmp.path().join("roots"), b"root's").expect("file");
    fs::write(tmp.path().join("theirs"), b"theirs").expect("file");
    std::os::unix::fs::chown(tmp.path().join("theirs"), Some(4343), Some(4343)).expect("chown");
    swap_for_symlink_of(&tmp.path().join("link"), tmp.path(), 4343);
    for name in ["roots", "theirs", "link"] {
        let (out, name) = OutDir::for_file(&tmp.path().join(name), sudo_user()).expect("sticky");
        match out.create(&name) {
            Err(OutputError::Taken { found, .. }) => assert_ne!(found, 4242, "{name}"),
            other => panic!("{name}: {other:?}"),
        }
    }
    assert_eq!(
        fs::read(tmp.path().join("roots")).expect("roots"),
        b"root's"
    );
    assert_eq!(
        fs::read(tmp.path().join("theirs")).expect("theirs"),
        b"theirs"
    );
    assert!(fs::symlink_metadata(tmp.path().join("link"))
        .expect("link")
        .is_symlink());
    // A new name is fine, and so is replacing the user's own file.
    let (out, name) = OutDir::for_file(&tmp.path().join("x.json"), sudo_user()).expect("sticky");
    out.write(&name, b"1").expect("new file");
    out.write(&name, b"2").expect("the user's own file");
    assert_eq!(owner_of(&tmp.path().join("x.json")), (4242, 4243));
    assert_eq!(fs::read(tmp.path().join("x.json")).expect("x"), b"2");
}

/// A symlink at `at` to `target`, owned by `uid`.
fn swap_for_symlink_of(at: &Path, target: &Path, uid: u32) {
    symlink(target, at).expect("symlink");
    nix::unistd::fchownat(
        nix::fcntl::AT_FDCWD,
        at,
        Some(nix::unistd::Uid::from_raw(uid)),
        None,
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .expect("lchown");
}

/// The key log: the core appends to it by path, and before, the name was
/// then handed over (`lchown`) by path too. A hard link planted at the
/// name, to another user's file or root's, received the secrets and was
/// handed to the user. Now the core writes in a private folder, and the
/// name in the output folder is only ever replaced if it is the user's.
#[test]
fn a_hard_link_at_the_key_log_name_is_neither_handed_over_nor_written() {
    if !root_or_skip("a_hard_link_at_the_key_log_name_is_neither_handed_over_nor_written") {
        return;
    }
    let victim = Victim::new();
    let home = sudo_home();
    let out = OutDir::open(&home.path().join("out"), sudo_user()).expect("out");
    let others = tempfile::tempdir().expect("temp dir");
    let notes = others.path().join("notes.txt");
    fs::write(&notes, b"bob's notes").expect("notes");
    std::os::unix::fs::chown(&notes, Some(4343), Some(4343)).expect("chown");
    for target in [victim.path().join("passwd"), notes.clone()] {
        let name = out.shown("tls-keys.log");
        let _ = fs::remove_file(&name);
        // Planted before the run (root's file), or during it (bob's).
        let planted_first = target.starts_with(victim.path());
        if planted_first {
            fs::hard_link(&target, &name).expect("link");
        }
        let keys = out.private("tls-keys.log").expect("private");
        let mut log = cipherlink_files::open_private_append(&keys.path()).expect("as the core");
        log.write_all(b"CLIENT_RANDOM secrets\n").expect("secrets");
        if !planted_first {
            fs::hard_link(&target, &name).expect("link");
        }
        match keys.publish() {
            Err(OutputError::File { reason, .. }) => assert!(reason.contains("belongs to uid")),
            other => panic!("{}: {other:?}", target.display()),
        }
    }
    victim.assert_untouched();
    assert_eq!(owner_of(&notes), (4343, 4343));
    assert_eq!(fs::read(&notes).expect("notes"), b"bob's notes");
}

#[test]
fn the_private_file_is_roots_alone_and_refuses_a_fifo_and_a_symlink() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = OutDir::open(dir.path(), me()).expect("out");
    let keys = Arc::new(out.private("tls-keys.log").expect("private"));
    let folder = keys.path().parent().expect("folder").to_path_buf();
    let meta = fs::metadata(&folder).expect("private folder");
    assert_eq!(
        (meta.uid(), meta.mode() & 0o777),
        (me().uid, 0o700),
        "{}",
        folder.display()
    );
    // Not written yet: nothing to read, nothing to publish.
    assert!(keys.read(100).is_err());
    nix::unistd::mkfifo(&keys.path(), nix::sys::stat::Mode::S_IRWXU).expect("fifo");
    let reader = Arc::clone(&keys);
    match read_within(move || reader.read(100).map(|_| ())) {
        Err(OutputError::File { reason, .. }) => assert!(reason.contains("regular"), "{reason}"),
        other => panic!("{other:?}"),
    }
    fs::remove_file(keys.path()).expect("remove fifo");
    fs::write(dir.path().join("elsewhere"), b"x").expect("elsewhere");
    symlink(dir.path().join("elsewhere"), keys.path()).expect("symlink");
    assert!(matches!(keys.read(100), Err(OutputError::Symlink { .. })));
    fs::remove_file(keys.path()).expect("remove symlink");
    assert_eq!(keys.publish().expect("nothing to publish"), None);
    let left: Vec<_> = fs::read_dir(dir.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .filter(|n| n.to_string_lossy().starts_with(".cipherlink-"))
        .collect();
    assert!(left.is_empty(), "the private folder is left: {left:?}");
}
