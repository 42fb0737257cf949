//! Spec vectors (docs/link-protocol.md §9): fixed keys and randomness give exactly these bytes.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use std::time::Instant;

use cipherlink_link::fuzzing::{
    connected_pair, exchange, vector_client_config, vector_cores, VectorRng, VECTOR_UNIX,
};
use cipherlink_link::proto::crypto::{
    hash, hmac, point_from_representative, public_key, StaticDh, Symmetric,
};
use cipherlink_link::proto::handshake::{mark, obfs_key, window};
use cipherlink_link::{ClientConfig, Connection, Entropy, Event};

struct Vectors {
    server_public: String,
    msg1_len: usize,
    msg1_head: String,
    msg1_sha256: String,
    msg2_len: usize,
    msg2_head: String,
    msg2_sha256: String,
    record_hello: String,
}

/// One vector handshake, step by step: the cores after it, msg1 and msg2.
fn handshake(cfg: &ClientConfig, now: Instant) -> (Connection, Connection, Vec<u8>, Vec<u8>) {
    let (mut client, mut server) = vector_cores(cfg, now);
    let mut msg1 = Vec::new();
    client.poll_transmit(&mut msg1);
    server.handle_input(now, &msg1);
    let mut msg2 = Vec::new();
    server.poll_transmit(&mut msg2);
    client.handle_input(now, &msg2);
    (client, server, msg1, msg2)
}

fn compute() -> Vectors {
    let now = Instant::now();
    let cfg = vector_client_config();
    let (mut client, mut server, msg1, msg2) = handshake(&cfg, now);
    assert_eq!(
        client.poll_event(),
        Some(Event::Connected {
            peer: "alice".into()
        })
    );
    assert_eq!(
        server.poll_event(),
        Some(Event::Connected {
            peer: "alice".into()
        })
    );
    // M is the documented HMAC of R_e under K_obf and the window.
    let m = mark(&obfs_key(&cfg.server_key), window(VECTOR_UNIX), &msg1[..32]);
    assert_eq!(&msg1[32..48], &m);
    assert_eq!(window(VECTOR_UNIX), 472_222);

    // Y_s is the server's plain ephemeral public key (the 32 bytes its stream
    // gives after its 8-byte handshake deadline) XOR HMAC(ck, "eph"), with
    // ck after es, rebuilt here from the documented steps.
    let mut server_rng = VectorRng::new(b"server");
    let mut deadline = [0u8; 8];
    server_rng.fill(&mut deadline);
    let mut e_s = [0u8; 32];
    server_rng.fill(&mut e_s);
    let mut sym = Symmetric::new(&cfg.server_key);
    sym.mix_hash(&msg1[..32]);
    sym.mix_hash(&msg1[32..50]);
    let client_e = point_from_representative(&msg1[..32].try_into().unwrap());
    let es = StaticDh::new(&[1u8; 32]).unwrap().dh(&client_e).unwrap();
    sym.mix_key(&es[..]);
    let mask = hmac(sym.ck(), &[b"eph"]);
    let unmasked: Vec<u8> = msg2[..32].iter().zip(mask).map(|(a, b)| a ^ b).collect();
    assert_eq!(unmasked, public_key(&e_s));

    let mut rec = Vec::new();
    client.send(b"hello").unwrap();
    client.poll_transmit(&mut rec);
    server.handle_input(now, &rec);
    let mut got = [0u8; 16];
    assert_eq!(server.recv(&mut got), 5);
    assert_eq!(&got[..5], b"hello");

    Vectors {
        server_public: hex::encode(cfg.server_key),
        msg1_len: msg1.len(),
        msg1_head: hex::encode(&msg1[..64]),
        msg1_sha256: hex::encode(hash(&[&msg1])),
        msg2_len: msg2.len(),
        msg2_head: hex::encode(&msg2[..64]),
        msg2_sha256: hex::encode(hash(&[&msg2])),
        record_hello: hex::encode(&rec),
    }
}

#[test]
fn handshake_and_first_record_match_the_spec() {
    let v = compute();
    println!("S            = {}", v.server_public);
    println!("len(msg1)    = {}", v.msg1_len);
    println!("msg1[0..64]  = {}", v.msg1_head);
    println!("SHA-256 msg1 = {}", v.msg1_sha256);
    println!("len(msg2)    = {}", v.msg2_len);
    println!("msg2[0..64]  = {}", v.msg2_head);
    println!("SHA-256 msg2 = {}", v.msg2_sha256);
    println!("record(data \"hello\") = {}", v.record_hello);
    assert_eq!(
        v.server_public,
        "a4e09292b651c278b9772c569f5fa9bb13d906b46ab68c9df9dc2b4409f8a209"
    );
    assert_eq!(v.msg1_len, 1327);
    assert_eq!(v.msg1_head, "aa672070ce18e8362dfa51db86b3ff04865eb8da2d63a4dc95ff61a31498a74828e6733332130592cba70f97b983f787857b1fc0372d34da30ffb65c658e9b57");
    assert_eq!(
        v.msg1_sha256,
        "e43b0f6ff97bb964ee441c2e4a76ee99a21bffdc84e2b0f83cdc86eb81500723"
    );
    assert_eq!(v.msg2_len, 1173);
    assert_eq!(v.msg2_head, "48f3ec90fa036731cd7701409264dd67669b00988295141ad1e0018cfd858110851a3cd7b51d06814be391b344928a8df4532896f533ae0378323a8fa39163fc");
    assert_eq!(
        v.msg2_sha256,
        "7da5f115b795623c818e2377d364b3f4c96f6d8810bdc7eeba9782c77d3c6d93"
    );
    assert_eq!(
        v.record_hello,
        "1125beb4904ea1f89e88e3a3fdac5f3d0ca19af7bd8750690b028dbb0e9b"
    );
}

#[test]
fn x25519_public_key_matches_rfc7748_base_point_multiplication() {
    // RFC 7748 §6.1: Alice's private key and public key.
    let sk =
        hex::decode("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a").unwrap();
    let pk = cipherlink_link::proto::crypto::public_key(&sk.try_into().unwrap());
    assert_eq!(
        hex::encode(pk),
        "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
    );
}

#[test]
fn vector_pair_connects() {
    let now = Instant::now();
    let (mut c, mut s) = connected_pair(now);
    assert!(c.is_open() && s.is_open());
    assert_eq!(s.peer(), Some("alice"));
    c.close_write();
    s.close_write();
    exchange(&mut c, &mut s, now);
    assert!(c.is_closed() && s.is_closed());
}

/// docs §9, the second client: "bob", whose token is bound to a client key.
#[test]
fn keyed_handshake_matches_the_spec() {
    use cipherlink_link::fuzzing::vector_keyed_client_config;
    let now = Instant::now();
    let cfg = vector_keyed_client_config();
    let (mut client, _server, msg1, msg2) = handshake(&cfg, now);
    assert_eq!(
        client.poll_event(),
        Some(Event::Connected { peer: "bob".into() })
    );
    let c = cfg.token.client_key.as_ref().unwrap();
    println!("C (bob)            = {}", hex::encode(c.public));
    println!("SHA-256 msg1 (bob) = {}", hex::encode(hash(&[&msg1])));
    println!("SHA-256 msg2 (bob) = {}", hex::encode(hash(&[&msg2])));
    assert_eq!(
        hex::encode(c.public),
        "ac01b2209e86354fb853237b5de0f4fab13c7fcbf433a61c019369617fecf10b"
    );
    assert_eq!(
        hex::encode(hash(&[&msg1])),
        "0745d0210c18be8d8594a28c1e66ecacbcb64335ab1c590b9845406fbd806c25"
    );
    assert_eq!(
        hex::encode(hash(&[&msg2])),
        "d72432db41e88d246644a4d77b92b34a323dd6df7bc20391049deebee69f1a30"
    );
}
