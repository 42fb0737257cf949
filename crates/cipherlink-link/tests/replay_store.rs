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
    let mut out = Vec::new();
    s.poll_transmit(&mut out);
    (out, s.probe_reason())
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
        let before = Arc::new(
            ServerEndpoint::with_options(
                key.clone(),
                store.clone(),
                params_fast(),
                with_file(&file),
            )
            .unwrap(),
        );
        assert!(!answer(&before, &m).0.is_empty());
    }
    let after = Arc::new(
        ServerEndpoint::with_options(key.clone(), store.clone(), params_fast(), with_file(&file))
            .unwrap(),
    );
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
