//! The test vectors of docs/v1-frame.md, read from the document itself so
//! the spec and the code cannot drift apart.

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use cipherlink_proxy::nacl_frame::{
    seal_frame, Decoder, FrameError, Keys, NonceSequence, Opener, Sealer, V1Error,
    DEFAULT_MAX_DATA_SIZE,
};
use crypto_box::{PublicKey, SecretKey};

struct Vector {
    name: String,
    nonce: [u8; 24],
    plaintext: Vec<u8>,
    frame: Vec<u8>,
}

fn spec() -> String {
    let path = cipherlink_test_support::workspace_root().join("docs/v1-frame.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn field(spec: &str, name: &str) -> [u8; 32] {
    let line = spec
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} = ")))
        .unwrap_or_else(|| panic!("{name} missing from the spec"));
    hex::decode(line.trim()).unwrap().try_into().unwrap()
}

fn vectors(spec: &str) -> Vec<Vector> {
    let mut out: Vec<Vector> = Vec::new();
    for line in spec.lines() {
        let (key, value) = line.split_once(' ').unwrap_or((line, ""));
        let value = value.trim();
        match key {
            "vector" => out.push(Vector {
                name: value.to_string(),
                nonce: [0; 24],
                plaintext: Vec::new(),
                frame: Vec::new(),
            }),
            "nonce" => {
                out.last_mut().unwrap().nonce = hex::decode(value).unwrap().try_into().unwrap()
            }
            "plaintext" => out.last_mut().unwrap().plaintext = hex::decode(value).unwrap(),
            "frame" => out.last_mut().unwrap().frame = hex::decode(value).unwrap(),
            _ => {}
        }
    }
    out
}

fn keys(spec: &str) -> (Keys, Keys) {
    let a = SecretKey::from(field(spec, "secret_a"));
    let b = SecretKey::from(field(spec, "secret_b"));
    assert_eq!(a.public_key(), PublicKey::from(field(spec, "public_a")));
    assert_eq!(b.public_key(), PublicKey::from(field(spec, "public_b")));
    (
        Keys::new(&a, &b.public_key()),
        Keys::new(&b, &a.public_key()),
    )
}

#[test]
fn spec_vectors_seal_to_the_exact_frames_and_open_back() {
    let spec = spec();
    let (a_to_b, b_from_a) = keys(&spec);
    let vectors = vectors(&spec);
    assert_eq!(vectors.len(), 3, "the spec lists three vectors");
    for v in &vectors {
        let mut out = Vec::new();
        seal_frame(
            &a_to_b,
            &v.nonce,
            &v.plaintext,
            DEFAULT_MAX_DATA_SIZE,
            &mut out,
        )
        .unwrap();
        assert_eq!(
            hex::encode(&out),
            hex::encode(&v.frame),
            "vector {}",
            v.name
        );
        let mut decoder = Decoder::new(DEFAULT_MAX_DATA_SIZE);
        let mut opener = Opener::new(b_from_a.clone());
        let mut input = &v.frame[..];
        let frame = decoder
            .decode(&mut input)
            .unwrap()
            .expect("one whole frame");
        assert_eq!(
            opener.open(frame).unwrap(),
            &v.plaintext[..],
            "vector {}",
            v.name
        );
        assert!(input.is_empty());
    }
}

#[test]
fn our_sequence_sender_produces_the_sequence_vector() {
    let spec = spec();
    let (a_to_b, _) = keys(&spec);
    let v = vectors(&spec)
        .into_iter()
        .find(|v| v.name == "sequence-nonce")
        .unwrap();
    let mut sealer = Sealer::with_nonces(
        a_to_b,
        NonceSequence::with_prefix([0xab; 16]),
        DEFAULT_MAX_DATA_SIZE,
    );
    let mut out = Vec::new();
    sealer.seal(b"ignored: counter 0", &mut out).unwrap();
    out.clear();
    sealer.seal(&v.plaintext, &mut out).unwrap();
    assert_eq!(out, v.frame);
}

#[test]
fn a_replayed_frame_is_refused_naming_the_nonce() {
    let spec = spec();
    let (_, b_from_a) = keys(&spec);
    let v = &vectors(&spec)[1];
    let twice = [v.frame.clone(), v.frame.clone()].concat();
    let mut decoder = Decoder::new(DEFAULT_MAX_DATA_SIZE);
    let mut opener = Opener::new(b_from_a);
    let mut input = &twice[..];
    let first = decoder.decode(&mut input).unwrap().unwrap();
    assert!(opener.open(first).is_ok());
    let second = decoder.decode(&mut input).unwrap().unwrap();
    let err = opener.open(second).unwrap_err();
    assert_eq!(err, V1Error::NonceReused(hex::encode(v.nonce)));
    assert!(err.to_string().contains("reuses nonce 40414243"), "{err}");
}

#[test]
fn a_flipped_bit_or_the_wrong_keys_fail_authentication() {
    let spec = spec();
    let (a_to_b, b_from_a) = keys(&spec);
    let v = &vectors(&spec)[1];
    for at in [33, 40, v.frame.len() - 1] {
        let mut bad = v.frame.clone();
        bad[at] ^= 1;
        let mut decoder = Decoder::new(DEFAULT_MAX_DATA_SIZE);
        let mut input = &bad[..];
        let frame = decoder.decode(&mut input).unwrap().unwrap();
        assert_eq!(
            Opener::new(b_from_a.clone()).open(frame),
            Err(V1Error::Authentication)
        );
    }
    // A's own box is keyed for the A->B direction the same way (X25519 is
    // symmetric), so use an unrelated key to show the wrong-key failure.
    let stranger = Keys::new(
        &SecretKey::from([9; 32]),
        &SecretKey::from([8; 32]).public_key(),
    );
    let mut decoder = Decoder::new(DEFAULT_MAX_DATA_SIZE);
    let mut input = &v.frame[..];
    let frame = decoder.decode(&mut input).unwrap().unwrap();
    assert_eq!(
        Opener::new(stranger).open(frame),
        Err(V1Error::Authentication)
    );
    drop(a_to_b);
}

#[test]
fn the_bound_is_enforced_on_the_header_and_when_sealing() {
    let spec = spec();
    let (a_to_b, _) = keys(&spec);
    let v = &vectors(&spec)[1];
    // data_size here is 33; a bound of 32 refuses it from the header alone.
    let mut decoder = Decoder::new(32);
    let mut input = &v.frame[..9];
    assert_eq!(
        decoder.decode(&mut input).unwrap_err(),
        FrameError::TooLarge { size: 33, max: 32 }
    );
    let mut out = Vec::new();
    let err = seal_frame(&a_to_b, &v.nonce, &[0; 17], 32, &mut out).unwrap_err();
    assert!(matches!(
        err,
        V1Error::PlaintextTooLarge { len: 17, max: 32 }
    ));
    assert!(out.is_empty());
}

#[test]
fn fuzz_entry_point_survives_garbage_and_valid_frames() {
    let spec = spec();
    for v in vectors(&spec) {
        cipherlink_proxy::fuzzing::decode_v1(&v.frame);
    }
    for seed in 0u8..=255 {
        let garbage: Vec<u8> = (0..300u32)
            .map(|i| (i as u8).wrapping_mul(seed).wrapping_add(seed))
            .collect();
        cipherlink_proxy::fuzzing::decode_v1(&garbage);
    }
}
