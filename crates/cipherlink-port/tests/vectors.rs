//! The wire against vectors made by SeasideVPN's own code
//! (tests/vectors/make_vectors.py, run in the peer's venv): given the same
//! random inputs our encoder must produce the same bytes, and our decoders
//! must read SeasideVPN's bytes back.

#![allow(clippy::unwrap_used)] // tests may unwrap

use cipherlink_port::decode::{ClientInitDecoder, Frame, MessageDecoder, ServerInitDecoder};
use cipherlink_port::wire::{self, ClientInitRandom};
use cipherlink_port::{PublicKey, ServerKey, SessionKey};
use serde_json::Value;
use zeroize::Zeroizing;

fn vectors() -> Value {
    serde_json::from_str(include_str!("vectors/port-vectors.json")).unwrap()
}

fn hex(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap()).unwrap()
}

fn arr<const N: usize>(v: &Value) -> [u8; N] {
    hex(v).try_into().unwrap()
}

fn server() -> ServerKey {
    ServerKey::from_private(&arr(&vectors()["server_key"]["private"]))
}

fn session() -> SessionKey {
    SessionKey::from_bytes(arr(&vectors()["client_init"]["session_key"]))
}

#[test]
fn server_key_public_half_is_seasides() {
    let v = vectors();
    assert_eq!(
        server().public().to_bytes().to_vec(),
        hex(&v["server_key"]["public"])
    );
    assert_eq!(
        server().private_bytes().to_vec(),
        hex(&v["server_key"]["private"])
    );
}

#[test]
fn header_lengths_are_seasides() {
    let l = &vectors()["lengths"];
    assert_eq!(l["client_init_header"], wire::CLIENT_INIT_HEADER_LEN);
    assert_eq!(l["server_init_header"], wire::SERVER_INIT_HEADER_LEN);
    assert_eq!(l["message_header"], wire::MESSAGE_HEADER_LEN);
}

#[test]
fn client_init_encodes_as_seaside() {
    let v = &vectors()["client_init"];
    let random = ClientInitRandom {
        ephemeral: Zeroizing::new(arr(&v["ephemeral"])),
        n: arr(&v["n"]),
        header_nonce: arr(&v["header_nonce"]),
        token_nonce: arr(&v["token_nonce"]),
        tail: hex(&v["tail"]),
    };
    let public = PublicKey::from_bytes(&arr(&vectors()["server_key"]["public"]));
    let (key, msg) = wire::client_init(
        &public,
        &hex(&v["token"]),
        v["client_type"].as_u64().unwrap() as u8,
        v["client_version"].as_u64().unwrap() as u8,
        &random,
    )
    .unwrap();
    assert_eq!(key.as_bytes().to_vec(), hex(&v["session_key"]));
    assert_eq!(msg, hex(&v["message"]));
}

#[test]
fn client_init_decodes_byte_by_byte() {
    let v = &vectors()["client_init"];
    let msg = hex(&v["message"]);
    let mut d = ClientInitDecoder::new(server());
    let mut got = None;
    for (i, b) in msg.iter().enumerate() {
        let mut input = std::slice::from_ref(b);
        let r = d.decode(&mut input).unwrap();
        assert!(input.is_empty());
        if r.is_some() {
            assert_eq!(
                i,
                msg.len() - 1,
                "the INIT completes with its last tail byte"
            );
            got = r;
        }
    }
    let init = got.expect("a whole INIT");
    assert_eq!(init.token.to_vec(), hex(&v["token"]));
    assert_eq!(init.session.as_bytes().to_vec(), hex(&v["session_key"]));
    assert_eq!(init.client_type, 65);
}

#[test]
fn server_init_both_ways() {
    let v = &vectors()["server_init"];
    let msg = wire::server_init(&session(), 0, 40123, &arr(&v["nonce"]), &hex(&v["tail"])).unwrap();
    assert_eq!(msg, hex(&v["message"]));
    let mut d = ServerInitDecoder::new(session());
    let mut input = &msg[..];
    assert_eq!(d.decode(&mut input).unwrap(), Some(40123));
    assert!(input.is_empty());
}

#[test]
fn data_and_term_both_ways() {
    let all = vectors();
    let mut stream = Vec::new();
    let mut payloads = Vec::new();
    for v in all["data"].as_array().unwrap() {
        let msg = wire::data(
            &session(),
            &hex(&v["payload"]),
            &arr(&v["header_nonce"]),
            &arr(&v["data_nonce"]),
            &hex(&v["tail"]),
        )
        .unwrap();
        assert_eq!(msg, hex(&v["message"]));
        stream.extend_from_slice(&msg);
        payloads.push(hex(&v["payload"]));
    }
    let t = &all["term"];
    let msg = wire::term(&session(), &arr(&t["nonce"]), &hex(&t["tail"])).unwrap();
    assert_eq!(msg, hex(&t["message"]));
    stream.extend_from_slice(&msg);

    // SeasideVPN's messages, back to back, in uneven pieces.
    let mut d = MessageDecoder::new(session());
    let mut frames = Vec::new();
    for chunk in stream.chunks(997) {
        let mut input = chunk;
        while !input.is_empty() {
            if let Some(f) = d.decode(&mut input).unwrap() {
                frames.push(f);
            }
        }
    }
    let mut want: Vec<Frame> = payloads.into_iter().map(Frame::Data).collect();
    want.push(Frame::Term);
    assert_eq!(frames, want);
    assert!(d.terminated());
}

#[test]
fn doc_vectors_are_the_checked_ones() {
    let doc = include_str!("../../../docs/port-wire.md");
    let json = include_str!("vectors/port-vectors.json");
    let section = doc.split("## 5. Test vectors").nth(1).unwrap();
    let block = section
        .split("```text")
        .nth(1)
        .unwrap()
        .split("```")
        .next()
        .unwrap();
    let mut checked = 0;
    for word in block.split_whitespace() {
        if word.len() >= 16 && word.bytes().all(|b| b.is_ascii_hexdigit()) {
            assert!(
                json.contains(word),
                "docs/port-wire.md shows {word}, which the vectors do not have"
            );
            checked += 1;
        }
    }
    assert!(checked >= 15, "only {checked} values checked");
}
