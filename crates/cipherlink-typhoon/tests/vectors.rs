//! The wire against vectors made by SeasideVPN's own code
//! (tests/peer/make_vectors.py, run in the peer's venv): given the same
//! random inputs our encoder must produce the same bytes, and our parser
//! must read SeasideVPN's bytes back as SeasideVPN's own parser does.

#![allow(clippy::unwrap_used)] // tests may unwrap

use cipherlink_typhoon::wire::{self, ClientInitRandom, Message, Pad, ServerInit};
use cipherlink_typhoon::{PublicKey, ServerKey, SessionKey, TyphoonSettings};
use serde_json::Value;
use zeroize::Zeroizing;

fn vectors() -> Value {
    serde_json::from_str(include_str!("vectors/typhoon-vectors.json")).unwrap()
}

fn hex(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap()).unwrap()
}

fn arr<const N: usize>(v: &Value) -> [u8; N] {
    hex(v).try_into().unwrap()
}

fn num(v: &Value) -> u64 {
    v.as_u64().unwrap()
}

fn pad(v: &Value) -> Pad {
    Pad {
        nonce: arr(&v["nonce"]),
        tail: num(&v["tail"]) as usize,
    }
}

fn server() -> ServerKey {
    ServerKey::from_private(&arr(&vectors()["server_key"]["private"]))
}

fn session() -> SessionKey {
    SessionKey::from_bytes(arr(&vectors()["client_init"]["session_key"]))
}

#[test]
fn settings_defaults_are_seasides() {
    let v = &vectors()["settings"];
    let s = TyphoonSettings::default();
    assert_eq!(num(&v["min_next_in"]), s.min_next_in);
    assert_eq!(num(&v["max_next_in"]), s.max_next_in);
    assert_eq!(num(&v["max_tail_length"]) as usize, s.max_tail_length);
    assert_eq!(num(&v["max_retries"]) as u32, s.max_retries);
    assert_eq!(num(&v["default_rtt"]), s.default_rtt);
    assert_eq!(num(&v["default_timeout"]), s.default_timeout);
    let (lo, hi) = s.initial_range();
    assert_eq!(v["initial_min_next_in"].as_f64().unwrap(), lo as f64);
    assert_eq!(v["initial_max_next_in"].as_f64().unwrap(), hi as f64);
}

#[test]
fn server_key_is_seasides() {
    assert_eq!(
        server().public().to_bytes().to_vec(),
        hex(&vectors()["server_key"]["public"])
    );
}

#[test]
fn client_init_encodes_and_decodes_as_seaside() {
    let v = &vectors()["client_init"];
    let public = PublicKey::from_bytes(&arr(&vectors()["server_key"]["public"]));
    let (key, msg) = wire::client_init(
        &public,
        &ClientInitRandom {
            ephemeral: Zeroizing::new(arr(&v["ephemeral"])),
            n: arr(&v["n"]),
        },
        &pad(v),
        num(&v["packet_number"]) as u32,
        num(&v["client_type"]) as u8,
        num(&v["client_version"]) as u8,
        num(&v["next_in"]) as u32,
        &hex(&v["token"]),
    )
    .unwrap();
    assert_eq!(key.as_bytes().to_vec(), hex(&v["session_key"]));
    assert_eq!(msg, hex(&v["message"]));
    let init = wire::parse_client_init(&server(), &msg).unwrap();
    assert_eq!(init.session.as_bytes(), key.as_bytes());
    assert_eq!(u64::from(init.packet_number), num(&v["packet_number"]));
    assert_eq!(u64::from(init.next_in), num(&v["next_in"]));
    assert_eq!(u64::from(init.client_type), num(&v["client_type"]));
    assert_eq!(&init.token[..], &hex(&v["token"])[..]);
}

#[test]
fn client_init_under_another_key_is_refused() {
    let v = &vectors()["client_init"];
    let other = ServerKey::from_private(&[7u8; 40]);
    assert!(wire::parse_client_init(&other, &hex(&v["message"])).is_err());
    let mut msg = hex(&v["message"]);
    let last = msg.len() - 1;
    msg[last] ^= 1;
    assert!(wire::parse_client_init(&server(), &msg).is_err());
}

#[test]
fn server_init_encodes_and_decodes_as_seaside() {
    let v = &vectors()["server_init"];
    let init = ServerInit {
        packet_number: num(&v["packet_number"]) as u32,
        status: num(&v["status"]) as u8,
        user_id: num(&v["user_id"]) as u16,
        next_in: num(&v["next_in"]) as u32,
    };
    let msg = wire::server_init(&session(), &pad(v), &init).unwrap();
    assert_eq!(msg, hex(&v["message"]));
    assert_eq!(wire::parse_server_init(&session(), &msg).unwrap(), init);
}

#[test]
fn handshakes_encode_and_decode_as_seaside() {
    for v in vectors()["hdsk"].as_array().unwrap() {
        let data = (!v["data"].is_null()).then(|| hex(&v["data"]));
        let (pn, next_in) = (num(&v["packet_number"]) as u32, num(&v["next_in"]) as u32);
        let msg = wire::hdsk(&session(), &pad(v), pn, next_in, data.as_deref()).unwrap();
        assert_eq!(msg, hex(&v["message"]), "{}", v["sender"]);
        let r = &v["seaside_reads"];
        assert_eq!(
            wire::parse_message(&session(), &msg).unwrap(),
            Message::Hdsk {
                packet_number: num(&r["packet_number"]) as u32,
                next_in: num(&r["next_in"]) as u32,
                data: (!r["data"].is_null()).then(|| hex(&r["data"])),
            }
        );
    }
}

#[test]
fn data_encodes_and_decodes_as_seaside() {
    for v in vectors()["data"].as_array().unwrap() {
        let payload = hex(&v["payload"]);
        let msg = wire::data(&session(), &pad(v), &payload).unwrap();
        assert_eq!(msg, hex(&v["message"]));
        let read = wire::parse_message(&session(), &msg).unwrap();
        assert_eq!(read, Message::Data(payload.clone()));
        let seaside = hex(&v["seaside_reads"]["data"]);
        if v["tail"] == 0 {
            // SeasideVPN reads `data[header:-0]`: nothing. We read the data.
            assert!(seaside.is_empty() && !payload.is_empty());
        } else {
            assert_eq!(seaside, payload);
        }
    }
}

#[test]
fn term_encodes_and_decodes_as_seaside() {
    let v = &vectors()["term"];
    let msg = wire::term(&session(), &pad(v)).unwrap();
    assert_eq!(msg, hex(&v["message"]));
    assert_eq!(
        wire::parse_message(&session(), &msg).unwrap(),
        Message::Term
    );
    assert_eq!(num(&v["seaside_reads"]["type"]), u64::from(wire::FLAG_TERM));
}
