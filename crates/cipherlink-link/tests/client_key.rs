//! The optional client static key (docs/link-protocol.md §2, §3): a token
//! bound to one needs the key's secret as well as the token's.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use std::time::Instant;

use cipherlink_link::fuzzing::{
    exchange, vector_cores, vector_keyed_client_config, vector_keyed_token, VectorRng, VECTOR_UNIX,
};
use cipherlink_link::keys::{ConnectionFile, TokenStore};
use cipherlink_link::{ClientConfig, ClientKey, Connection, Error, Event};

/// Runs one handshake against the vector endpoint; returns both sides' first events.
fn handshake(cfg: &ClientConfig) -> (Option<Event>, Option<Event>) {
    let now = Instant::now();
    let (mut client, mut server) = vector_cores(cfg, now);
    exchange(&mut client, &mut server, now);
    (client.poll_event(), server.poll_event())
}

#[test]
fn a_keyed_token_with_its_key_connects() {
    let (c, s) = handshake(&vector_keyed_client_config());
    assert_eq!(c, Some(Event::Connected { peer: "bob".into() }));
    assert_eq!(s, Some(Event::Connected { peer: "bob".into() }));
}

#[test]
fn a_keyed_token_without_its_key_or_with_another_is_refused() {
    let refused = Some(Event::Closed {
        error: Some(Error::Refused),
    });
    // The token alone (a stolen token without the key file line).
    let mut cfg = vector_keyed_client_config();
    cfg.token.client_key = None;
    assert_eq!(handshake(&cfg).0, refused);
    // Another key.
    cfg.token.client_key = Some(ClientKey::from_secret([9u8; 32]));
    assert_eq!(handshake(&cfg).0, refused);
    // A key on a token the server holds without one.
    let mut cfg = cipherlink_link::fuzzing::vector_client_config();
    cfg.token.client_key = Some(ClientKey::from_secret([4u8; 32]));
    assert_eq!(handshake(&cfg).0, refused);
    // Only the public half (as a server's copy holds it): no secret to prove.
    let mut cfg = vector_keyed_client_config();
    cfg.token = cfg.token.server_copy();
    let now = Instant::now();
    assert!(matches!(
        Connection::client(&cfg, Box::new(VectorRng::new(b"c")), now, VECTOR_UNIX),
        Err(Error::Malformed(_))
    ));
}

#[test]
fn the_store_keeps_only_the_public_key_and_the_file_the_secret() {
    let mut rng = VectorRng::new(b"issue");
    let mut store = TokenStore::new();
    let token = store.issue_with("carol", true, &mut rng).unwrap();
    let key = token.client_key.clone().unwrap();
    let secret = *key.secret().unwrap();
    let text = store.to_text();
    assert!(text.contains(&hex::encode(key.public)));
    assert!(!text.contains(&hex::encode(secret)));
    let parsed = TokenStore::parse(&text).unwrap();
    let entry = parsed.lookup(&token.id).unwrap();
    assert_eq!(
        entry.token.client_key,
        Some(ClientKey::from_public(key.public))
    );
    assert_eq!(entry.token.client_key.as_ref().unwrap().secret(), None);

    let file = ConnectionFile {
        name: "carol".into(),
        server: "127.0.0.1:1".into(),
        server_key: [1u8; 32],
        token: token.clone(),
        tail_length: 64,
    };
    let text = file.to_text();
    assert!(text.contains(&format!("client-key {}", hex::encode(secret))));
    let parsed = ConnectionFile::parse(&text).unwrap();
    assert_eq!(parsed.token, token);
    // A file without the line has no key; a store line without the field neither.
    let plain = store.issue_with("dave", false, &mut rng).unwrap();
    assert!(plain.client_key.is_none());
    assert!(ConnectionFile::parse(
        &ConnectionFile {
            token: plain,
            ..file
        }
        .to_text()
    )
    .unwrap()
    .token
    .client_key
    .is_none());
    // A malformed key field is an error, not ignored.
    let bad = store.to_text().replace(&hex::encode(key.public), "zz");
    assert!(TokenStore::parse(&bad).is_err());
    assert_eq!(
        vector_keyed_token().client_key.unwrap().public,
        ClientKey::from_secret([4u8; 32]).public
    );
}

#[test]
fn a_low_order_client_key_in_the_store_refuses_the_token() {
    use cipherlink_link::fuzzing::{vector_params, vector_server_key};
    use cipherlink_link::ServerEndpoint;
    use std::sync::Arc;
    // A store line whose client key is the all-zero point: DH(s, C) is weak,
    // so nobody can prove it and the token is refused, not accepted without it.
    let mut token = vector_keyed_token();
    token.client_key = Some(ClientKey::from_public([0u8; 32]));
    let mut store = TokenStore::new();
    store.add("bob", token).unwrap();
    let endpoint =
        Arc::new(ServerEndpoint::new(vector_server_key(), store, vector_params()).unwrap());
    let now = Instant::now();
    // Different client streams: the same first message twice would be a replay.
    for (seed, cfg) in [
        (&b"client"[..], vector_keyed_client_config()),
        (&b"client2"[..], {
            let mut c = vector_keyed_client_config();
            c.token.client_key = None;
            c
        }),
    ] {
        let mut client =
            Connection::client(&cfg, Box::new(VectorRng::new(seed)), now, VECTOR_UNIX).unwrap();
        let mut server = Connection::server(
            endpoint.clone(),
            Box::new(VectorRng::new(b"server")),
            now,
            VECTOR_UNIX,
        );
        exchange(&mut client, &mut server, now);
        assert_eq!(
            client.poll_event(),
            Some(Event::Closed {
                error: Some(Error::Refused)
            })
        );
    }
}

/// A store cut right after a bound token's `active` would parse as a token
/// without its client key, and a leaked store would then need only the
/// token's secret: a store that does not end where a line ends is refused.
#[test]
fn a_token_store_cut_short_after_a_bound_token_is_refused() {
    let mut store = TokenStore::new();
    store
        .issue_with("carol", true, &mut VectorRng::new(b"cut"))
        .unwrap();
    let whole = store.to_text();
    let parsed = TokenStore::parse(&whole).unwrap();
    assert!(parsed.entries()[0].token.client_key.is_some());
    let cut = &whole[..whole.rfind(" active").unwrap() + " active".len()];
    let err = TokenStore::parse(cut).expect_err("a cut store parsed");
    assert!(err.to_string().contains("middle of a line"), "{err}");
}
