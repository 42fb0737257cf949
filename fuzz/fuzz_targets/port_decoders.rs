//! SeasideVPN's PORT decoders (cipherlink-port), fed any bytes in two
//! pieces: the client INIT decoder under the vectors' server key, raw and
//! behind a client INIT header that authenticates with fuzzed fields (token
//! and tail lengths, flag); the server INIT and message decoders under their
//! session key, raw and behind a header sealed with fuzzed fields (flags and
//! lengths that authenticate); and the key and connection file parsers.
//! Never a panic.
#![no_main]

use cipherlink_port::crypto::{blake2b_256, x25519, x25519_public};
use cipherlink_port::decode::{ClientInitDecoder, MessageDecoder, ServerInitDecoder};
use cipherlink_port::{ConnectionFile, ServerKey, SessionKey};
use libfuzzer_sys::fuzz_target;

/// The session key and server key of the vectors SeasideVPN's code made
/// (crates/cipherlink-port/tests/vectors/port-vectors.json): the seed corpus
/// in fuzz/corpus/port_decoders is those vectors' messages, so it decodes.
const SESSION: [u8; 32] = [
    113, 207, 237, 188, 85, 130, 163, 2, 29, 163, 161, 82, 15, 210, 237, 245, 184, 28, 64, 219,
    231, 27, 218, 96, 103, 152, 175, 32, 33, 136, 139, 157,
];
const SERVER: [u8; 40] = [
    139, 148, 199, 166, 163, 176, 214, 231, 19, 10, 133, 60, 38, 59, 239, 45, 102, 188, 66, 161,
    93, 213, 117, 115, 1, 108, 72, 160, 88, 186, 78, 146, 59, 250, 33, 127, 83, 156, 184, 15,
];

/// Feeds `bytes` to every session-key decoder, cut at `cut`.
fn feed(key: &SessionKey, bytes: &[u8], cut: usize) {
    let cut = cut.min(bytes.len());
    let mut m = MessageDecoder::new(key.clone());
    let mut s = ServerInitDecoder::new(key.clone());
    for piece in [&bytes[..cut], &bytes[cut..]] {
        let mut input = piece;
        while !input.is_empty() {
            match m.decode(&mut input) {
                Ok(_) => {}
                Err(_) => break,
            }
        }
        let mut input = piece;
        let _ = s.decode(&mut input);
    }
}

/// A client INIT to `server` whose header opens, its 7 plaintext bytes
/// `fields` (flag, type, version, token length, tail length), then `rest`.
fn authentic_client_init(server: &ServerKey, fields: &[u8], rest: &[u8]) -> Option<Vec<u8>> {
    let ephemeral = [7u8; 32];
    let eph_public = x25519_public(&ephemeral);
    let pk = server.public();
    let shared = x25519(&ephemeral, &pk.key)?;
    let key = SessionKey::from_bytes(blake2b_256(&[&shared[..], &eph_public, &pk.key]));
    let n = [1u8, 2];
    let mask = blake2b_256(&[&n, &pk.seed]);
    let mut out = n.to_vec();
    out.extend(eph_public.iter().zip(mask).map(|(a, b)| a ^ b));
    key.seal_into(&[3; 24], fields, &eph_public, &mut out);
    out.extend_from_slice(rest);
    Some(out)
}

fn feed_client_init(server: &ServerKey, bytes: &[u8], cut: usize) {
    let mut c = ClientInitDecoder::new(server.clone());
    let cut = cut.min(bytes.len());
    for piece in [&bytes[..cut], &bytes[cut..]] {
        let mut input = piece;
        if c.decode(&mut input).is_err() {
            break;
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, body)) = data.split_first() else {
        return;
    };
    let cut = usize::from(cut) * 4;
    let key = SessionKey::from_bytes(SESSION);
    feed(&key, body, cut);
    // A header that authenticates, with fuzzed fields: 5 bytes make a
    // data/termination header, 6 a server INIT's.
    for n in [5, 6] {
        if body.len() >= n {
            let mut sealed = Vec::new();
            key.seal_into(&[1; 24], &body[..n], &[], &mut sealed);
            sealed.extend_from_slice(&body[n..]);
            feed(&key, &sealed, cut);
        }
    }
    let server = ServerKey::from_private(&SERVER);
    feed_client_init(&server, body, cut);
    if body.len() >= 7 {
        if let Some(init) = authentic_client_init(&server, &body[..7], &body[7..]) {
            feed_client_init(&server, &init, cut);
        }
    }
    if let Ok(text) = std::str::from_utf8(body) {
        let _ = ServerKey::parse(text);
        let _ = ConnectionFile::parse(text);
    }
});
