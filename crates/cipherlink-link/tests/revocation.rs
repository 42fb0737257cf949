//! Revocation that holds (docs §6, §8): reload by content, fail closed on a
//! store that does not parse, and close the open links of a revoked token.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::time::{Duration, Instant};

use cipherlink_link::driver::{connect, LinkListener};
use cipherlink_link::fuzzing::{exchange, VECTOR_UNIX};
use cipherlink_link::token_file::{Reload, TokenFile};
use cipherlink_link::{CloseCode, Connection, Error, Event, TokenStore};
use common::{closed_error, params_fast, rng, Pair, World};

fn events(c: &mut Connection) -> Vec<Event> {
    let mut v = Vec::new();
    while let Some(e) = c.poll_event() {
        v.push(e);
    }
    v
}

/// The world's store with "alice" revoked.
fn alice_revoked(world: &World) -> TokenStore {
    let mut store = TokenStore::new();
    store.add("alice", world.alice.clone()).unwrap();
    store.revoke("alice");
    store
}

/// An open link whose token is revoked closes: a close record "refused,
/// token revoked" to the client, `Revoked` to the server's application. A
/// store that keeps the token active leaves it open.
#[test]
fn revoking_a_token_closes_its_open_links() {
    let world = World::new(params_fast());
    let mut p = Pair::new(&world, 300);
    let mut same = TokenStore::new();
    same.add("alice", world.alice.clone()).unwrap();
    assert_eq!(world.endpoint.set_tokens(same), 0);
    p.server.handle_revocation();
    assert!(p.server.is_open());
    assert_eq!(world.endpoint.set_tokens(alice_revoked(&world)), 1);
    assert!(p.server.revocation().unwrap().is_revoked());
    p.server.handle_revocation();
    assert!(p.server.is_closed());
    assert_eq!(
        closed_error(&events(&mut p.server)),
        Some(Some(Error::Revoked))
    );
    let mut wire = Vec::new();
    p.server.poll_transmit(&mut wire);
    p.client.handle_input(p.now, &wire);
    assert_eq!(
        closed_error(&events(&mut p.client)),
        Some(Some(Error::PeerClosed {
            code: CloseCode::Refused,
            reason: "token revoked".into()
        }))
    );
}

/// A store that does not parse refuses every token (not the old ones) and
/// closes every open link, until a good one is loaded.
#[test]
fn a_store_that_does_not_parse_refuses_every_token() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens");
    let world = World::new(params_fast());
    let mut good = TokenStore::new();
    good.add("alice", world.alice.clone()).unwrap();
    write_private(&path, good.to_text().as_bytes());
    let mut file = TokenFile::new(&path);
    assert!(matches!(
        file.reload(&world.endpoint),
        Reload::Applied { tokens: 1, .. }
    ));
    let open = Pair::new(&world, 310);
    assert!(open.server.is_open());
    // A revocation typed by hand, wrong.
    write_private(
        &path,
        format!("{}\ntoken alice oops\n", good.to_text().as_str()).as_bytes(),
    );
    match file.reload(&world.endpoint) {
        Reload::Failed { reason, closed } => {
            assert!(reason.contains("tokens"), "{reason}");
            assert_eq!(closed, 1);
        }
        other => panic!("{other:?}"),
    }
    assert!(open.server.revocation().unwrap().is_revoked());
    assert_eq!(file.reload(&world.endpoint), Reload::Unchanged);
    let now = Instant::now();
    let mut client =
        Connection::client(&world.client_cfg(&world.alice), rng(311), now, VECTOR_UNIX).unwrap();
    let mut server = world.server(312, now);
    exchange(&mut client, &mut server, now);
    assert_eq!(
        closed_error(&events(&mut client)),
        Some(Some(Error::Refused))
    );
    assert_eq!(server.refusal().unwrap().reason, "token store unreadable");
    // Fixed: served again.
    write_private(&path, good.to_text().as_bytes());
    assert!(matches!(
        file.reload(&world.endpoint),
        Reload::Applied { .. }
    ));
    assert!(Pair::new(&world, 313).server.is_open());
}

/// The store is reloaded when its content changes even when its
/// modification time does not (two writes within one timestamp tick).
#[test]
fn a_store_is_reloaded_on_content_not_mtime() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens");
    let world = World::new(params_fast());
    let mut good = TokenStore::new();
    good.add("alice", world.alice.clone()).unwrap();
    write_private(&path, good.to_text().as_bytes());
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    let mut file = TokenFile::new(&path);
    assert!(matches!(
        file.reload(&world.endpoint),
        Reload::Applied { .. }
    ));
    assert_eq!(file.reload(&world.endpoint), Reload::Unchanged);
    write_private(&path, alice_revoked(&world).to_text().as_bytes());
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().modified().unwrap(), mtime);
    assert!(matches!(
        file.reload(&world.endpoint),
        Reload::Applied { .. }
    ));
    let now = Instant::now();
    let mut client =
        Connection::client(&world.client_cfg(&world.alice), rng(320), now, VECTOR_UNIX).unwrap();
    let mut server = world.server(321, now);
    exchange(&mut client, &mut server, now);
    assert_eq!(server.refusal().unwrap().reason, "revoked token");
    assert_eq!(server.refusal().unwrap().name.as_deref(), Some("alice"));
}

/// Over TCP, a link idle in the application (nobody reading or writing) is
/// closed when its token is revoked, without waiting for a keepalive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_link_over_tcp_is_closed_when_its_token_is_revoked() {
    let world = World::new(params_fast());
    let mut listener = LinkListener::bind("127.0.0.1:0", world.endpoint.clone())
        .await
        .unwrap();
    let addr = listener.local_addr();
    let mut client = connect(addr, &world.client_cfg(&world.alice))
        .await
        .unwrap();
    let mut server = listener.accept().await.unwrap();
    assert_eq!(world.endpoint.set_tokens(alice_revoked(&world)), 1);
    let end = tokio::time::timeout(Duration::from_secs(30), server.closed())
        .await
        .unwrap();
    assert_eq!(end, Some(Error::Revoked));
    let end = tokio::time::timeout(Duration::from_secs(30), client.closed())
        .await
        .unwrap();
    assert!(
        matches!(&end, Some(Error::PeerClosed { code: CloseCode::Refused, reason }) if reason == "token revoked"),
        "{end:?}"
    );
}

/// A token store as `link invite` writes it: readable by its owner only.
fn write_private(path: &std::path::Path, contents: &[u8]) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, contents).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}
