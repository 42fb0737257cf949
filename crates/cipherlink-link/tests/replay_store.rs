//! One replay filter per server key (docs §6): shared by every endpoint of
//! the key in the process, and kept in a database file across restarts.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::sync::Arc;
use std::time::Instant;

use cipherlink_link::fuzzing::VECTOR_UNIX;
use cipherlink_link::{
    ClientConfig, Connection, EndpointOptions, Error, ServerEndpoint, ServerKey, Token, TokenStore,
};
use common::{params_fast, rng};

/// A key of this test's own (tests of one binary may share a process).
fn setup(k: u8) -> (ServerKey, TokenStore, ClientConfig) {
    let key = ServerKey::from_secret([k; 32]);
    let token = Token::generate(&mut *rng(u64::from(k)));
    let mut store = TokenStore::new();
    store.add("alice", token.clone()).unwrap();
    let cfg = ClientConfig {
        server_key: *key.public(),
        token,
        name: "alice".into(),
        params: params_fast(),
    };
    (key, store, cfg)
}

fn msg1(cfg: &ClientConfig, seed: u64) -> Vec<u8> {
    let mut c = Connection::client(cfg, rng(seed), Instant::now(), VECTOR_UNIX).unwrap();
    let mut m = Vec::new();
    c.poll_transmit(&mut m);
    m
}

/// Feeds `m` to a fresh server connection; returns its answer.
fn answer(endpoint: &Arc<ServerEndpoint>, m: &[u8]) -> (Vec<u8>, Option<&'static str>) {
    let mut s = Connection::server(endpoint.clone(), rng(9), Instant::now(), VECTOR_UNIX);
    s.handle_input(Instant::now(), m);
    // With a file, msg2 waits for the mark to be on disk.
    if let Some(commit) = s.pending_commit() {
        commit.wait();
        s.handle_commit(Instant::now());
    }
    let mut out = Vec::new();
    s.poll_transmit(&mut out);
    (out, s.probe_reason())
}

/// A server endpoint of `key` that keeps its replay store in `file`.
fn served_from(key: &ServerKey, store: &TokenStore, file: &std::path::Path) -> Arc<ServerEndpoint> {
    Arc::new(
        ServerEndpoint::with_options(key.clone(), store.clone(), params_fast(), with_file(file))
            .unwrap(),
    )
}

fn with_file(path: &std::path::Path) -> EndpointOptions {
    EndpointOptions {
        replay_file: Some(path.to_path_buf()),
        ..EndpointOptions::default()
    }
}

/// Two endpoints of one key in one process (the proxy builds one per
/// service) share one filter: a first message one answered is a replay to
/// the other.
#[test]
fn two_endpoints_of_one_key_share_one_filter() {
    let (key, store, cfg) = setup(41);
    let a = Arc::new(ServerEndpoint::new(key.clone(), store.clone(), params_fast()).unwrap());
    let b = Arc::new(ServerEndpoint::new(key, store, params_fast()).unwrap());
    let m = msg1(&cfg, 1);
    assert!(!answer(&a, &m).0.is_empty());
    let (out, why) = answer(&b, &m);
    assert!(out.is_empty(), "the second endpoint answered a replay");
    assert_eq!(why, Some("replayed first message"));
}

/// With a file, a restarted server (a new endpoint on the same key and
/// file) still refuses a first message answered before the restart, and
/// still answers new ones.
#[test]
fn a_restarted_server_refuses_a_first_message_answered_before() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("link-tokens.replay");
    let (key, store, cfg) = setup(42);
    let m = msg1(&cfg, 2);
    {
        let before = served_from(&key, &store, &file);
        assert!(!answer(&before, &m).0.is_empty());
    }
    let after = served_from(&key, &store, &file);
    assert_eq!(after.replay_store().len(), 1);
    let (out, why) = answer(&after, &m);
    assert!(out.is_empty(), "answered a replay after a restart");
    assert_eq!(why, Some("replayed first message"));
    assert!(!answer(&after, &msg1(&cfg, 3)).0.is_empty());
    drop(after);
    // Without the file, the same restart forgets (what the file is for).
    let forgetful = Arc::new(ServerEndpoint::new(key, store, params_fast()).unwrap());
    assert!(!answer(&forgetful, &m).0.is_empty());
}

/// A server accepts the window before and after its own, so the file can
/// hold a client's next-hour mark while the server is still in this hour.
/// Loading must not take that row's window for the server's: a first
/// message of the previous hour, answered before the restart, is still
/// inside the server's window after it and must stay refused.
#[test]
fn a_next_hour_mark_does_not_expire_the_previous_hour_on_restart() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("link-tokens.replay");
    let (key, store, cfg) = setup(52);
    let hour = 3600;
    let at = |unix: u64, seed: u64| {
        let mut c = Connection::client(&cfg, rng(seed), Instant::now(), unix).unwrap();
        let mut m = Vec::new();
        c.poll_transmit(&mut m);
        m
    };
    let previous_hour = at(VECTOR_UNIX - hour, 30);
    let next_hour = at(VECTOR_UNIX + hour, 31);
    {
        let before = served_from(&key, &store, &file);
        assert!(!answer(&before, &previous_hour).0.is_empty());
        assert!(!answer(&before, &next_hour).0.is_empty());
    }
    let after = served_from(&key, &store, &file);
    let (out, why) = answer(&after, &previous_hour);
    assert!(
        out.is_empty(),
        "answered last hour's first message again after a restart"
    );
    assert_eq!(why, Some("replayed first message"));
}

/// A file that cannot be opened is an error naming it (the server does not
/// start without the filter it was told to keep); a second file for a key
/// that already keeps one is refused.
#[test]
fn a_replay_file_that_cannot_be_opened_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (key, store, _) = setup(43);
    let missing = dir.path().join("no-such-dir").join("replay");
    let err = ServerEndpoint::with_options(
        key.clone(),
        store.clone(),
        params_fast(),
        with_file(&missing),
    )
    .err()
    .unwrap();
    assert!(matches!(err, Error::Store { .. }), "{err}");
    assert!(err.to_string().contains("no-such-dir"), "{err}");
    let one = dir.path().join("one");
    let _a =
        ServerEndpoint::with_options(key.clone(), store.clone(), params_fast(), with_file(&one))
            .unwrap();
    let other = dir.path().join("other");
    let err = ServerEndpoint::with_options(key, store, params_fast(), with_file(&other))
        .err()
        .unwrap();
    assert!(err.to_string().contains("already keeps"), "{err}");
}

/// Full, the filter drops its oldest mark: that first message is answered
/// again (docs §6 says what this means), a newer one is not.
#[test]
fn a_full_filter_drops_the_oldest_mark() {
    let dir = tempfile::tempdir().unwrap();
    let (key, store, cfg) = setup(44);
    let options = EndpointOptions {
        replay_capacity: 2,
        ..with_file(&dir.path().join("replay"))
    };
    let e = Arc::new(ServerEndpoint::with_options(key, store, params_fast(), options).unwrap());
    let (m1, m2, m3) = (msg1(&cfg, 4), msg1(&cfg, 5), msg1(&cfg, 6));
    for m in [&m1, &m2, &m3] {
        assert!(!answer(&e, m).0.is_empty());
    }
    assert!(!answer(&e, &m1).0.is_empty(), "the oldest is forgotten");
    assert!(answer(&e, &m3).0.is_empty(), "a newer one is remembered");
}

/// With a file, msg2 waits until the mark is on disk: nothing is answered
/// before the commit says so (the write runs on the file's own thread, not
/// in the caller).
#[test]
fn msg2_waits_until_the_mark_is_durable() {
    let dir = tempfile::tempdir().unwrap();
    let (key, store, cfg) = setup(45);
    let e = Arc::new(
        ServerEndpoint::with_options(key, store, params_fast(), with_file(&dir.path().join("r")))
            .unwrap(),
    );
    e.replay_store().slow_down_writes(200);
    let mut s = Connection::server(e.clone(), rng(9), Instant::now(), VECTOR_UNIX);
    s.handle_input(Instant::now(), &msg1(&cfg, 7));
    let mut out = Vec::new();
    s.poll_transmit(&mut out);
    assert!(out.is_empty(), "answered before the mark was on disk");
    let commit = s.pending_commit().expect("waiting for the commit");
    assert!(commit.wait());
    s.handle_commit(Instant::now());
    s.poll_transmit(&mut out);
    assert!(!out.is_empty());
    assert!(s.is_open());
}

/// Marks that arrive while a commit is on its way to disk share the next
/// one: two fsyncs for many first messages, not one each.
#[test]
fn first_messages_that_arrive_during_a_commit_share_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let (key, store, cfg) = setup(46);
    let e = Arc::new(
        ServerEndpoint::with_options(key, store, params_fast(), with_file(&dir.path().join("r")))
            .unwrap(),
    );
    let before = e.replay_store().file_commits();
    e.replay_store().slow_down_writes(300);
    let mut conns = Vec::new();
    for seed in 0..20 {
        let mut s = Connection::server(e.clone(), rng(seed), Instant::now(), VECTOR_UNIX);
        s.handle_input(Instant::now(), &msg1(&cfg, 100 + seed));
        conns.push(s);
    }
    for s in &mut conns {
        assert!(s.pending_commit().unwrap().wait());
        s.handle_commit(Instant::now());
        assert!(s.is_open());
    }
    let commits = e.replay_store().file_commits() - before;
    assert!(commits <= 3, "{commits} commits for 20 first messages");
}

/// A write that fails (a full disk, say) makes first messages probes while
/// the file cannot be written (fail closed), and the store reopens the file
/// until a write works: then first messages are answered again, without a
/// restart.
#[test]
fn a_failed_write_refuses_first_messages_until_the_file_works_again() {
    let dir = tempfile::tempdir().unwrap();
    let (key, store, cfg) = setup(47);
    let e = Arc::new(
        ServerEndpoint::with_options(key, store, params_fast(), with_file(&dir.path().join("r")))
            .unwrap(),
    );
    e.replay_store().inject_write_failures(1);
    let (out, why) = answer(&e, &msg1(&cfg, 8));
    assert!(
        out.is_empty(),
        "answered a first message whose mark was not written"
    );
    assert_eq!(why, Some("replay store write failed"));
    let start = Instant::now();
    while !e.replay_store().is_available() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "the store never recovered"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let (out, why) = answer(&e, &msg1(&cfg, 9));
    assert!(!out.is_empty(), "still refusing: {why:?}");
}

/// A failed write closes the file and reopens it by path; if the file was
/// deleted meanwhile (to free space after ENOSPC, say), the new one must
/// get every mark back, or a restart would answer their replays.
#[test]
fn a_file_deleted_while_a_write_failed_gets_every_mark_back() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("r");
    let (key, store, cfg) = setup(53);
    let answered = msg1(&cfg, 40);
    {
        let e = served_from(&key, &store, &file);
        assert!(!answer(&e, &answered).0.is_empty());
        e.replay_store().inject_write_failures(1);
        std::fs::remove_file(&file).unwrap();
        assert!(answer(&e, &msg1(&cfg, 41)).0.is_empty());
        let start = Instant::now();
        while !e.replay_store().is_available() {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(20),
                "the store never recovered"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
    let after = served_from(&key, &store, &file);
    let (out, why) = answer(&after, &answered);
    assert!(out.is_empty(), "a mark was lost with the deleted file");
    assert_eq!(why, Some("replayed first message"));
}

/// The file is opened in place without following a symlink (a dangling one
/// would make root create the database wherever it points), created 0600.
#[test]
fn a_replay_file_is_never_opened_through_a_symlink_and_is_created_0600() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let (key, store, _) = setup(48);
    let target = dir.path().join("elsewhere");
    let link = dir.path().join("link-tokens.replay");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let err =
        ServerEndpoint::with_options(key.clone(), store.clone(), params_fast(), with_file(&link))
            .err()
            .expect("opened through a symlink");
    assert!(err.to_string().contains("symlink"), "{err}");
    assert!(!target.exists(), "the symlink's target was created");
    let real = dir.path().join("real.replay");
    drop(ServerEndpoint::with_options(key, store, params_fast(), with_file(&real)).unwrap());
    let mode = std::fs::metadata(&real).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

/// A replay file that belongs to another user is refused (running as
/// root, the test makes one; otherwise it cannot and says so).
#[test]
fn a_replay_file_of_another_user_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (key, store, _) = setup(49);
    let path = dir.path().join("theirs.replay");
    std::fs::write(&path, b"").unwrap();
    if std::os::unix::fs::chown(&path, Some(54321), None).is_err() {
        eprintln!("not root: cannot make a file of another user; skipped");
        return;
    }
    let err = ServerEndpoint::with_options(key, store, params_fast(), with_file(&path))
        .err()
        .expect("opened another user's file");
    assert!(
        err.to_string().contains("belongs to user id 54321"),
        "{err}"
    );
}

/// Rows the filter does not keep when the file is loaded (over capacity,
/// or expired) are deleted from the file in the same transaction, so the
/// file does not grow with rows nobody reads.
#[test]
fn rows_dropped_while_loading_are_deleted_from_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("r");
    let (key, store, cfg) = setup(50);
    {
        let e = served_from(&key, &store, &file);
        for seed in 21..24 {
            assert!(!answer(&e, &msg1(&cfg, seed)).0.is_empty());
        }
        // Then one of three hours earlier (a server whose clock went
        // back): kept now, expired once the file is loaded.
        let then = VECTOR_UNIX - 3 * 3600;
        let mut old = Connection::client(&cfg, rng(20), Instant::now(), then).unwrap();
        let mut m = Vec::new();
        old.poll_transmit(&mut m);
        let mut s = Connection::server(e.clone(), rng(9), Instant::now(), then);
        s.handle_input(Instant::now(), &m);
        assert!(s.pending_commit().unwrap().wait());
        assert_eq!(e.replay_store().len(), 4);
    }
    let options = EndpointOptions {
        replay_capacity: 2,
        ..with_file(&file)
    };
    drop(ServerEndpoint::with_options(key, store, params_fast(), options).unwrap());
    let db = redb::Database::open(&file).unwrap();
    let txn = db.begin_read().unwrap();
    let marks: redb::TableDefinition<[u8; 16], u64> =
        redb::TableDefinition::new("cipherlink-link/1 marks");
    let rows = redb::ReadableTableMetadata::len(&txn.open_table(marks).unwrap()).unwrap();
    assert_eq!(rows, 2, "rows the filter dropped are still in the file");
}
