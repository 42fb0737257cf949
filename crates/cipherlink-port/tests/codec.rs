//! Bounds and refusals of the codec: wrong keys, flags, lengths, key files,
//! `PORT_*` settings.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::time::Duration;

use cipherlink_port::decode::{ClientInitDecoder, Frame, MessageDecoder, ServerInitDecoder};
use cipherlink_port::wire::{self, ClientInitRandom, MAX_DATA};
use cipherlink_port::{Error, PortSettings, ServerKey, SessionKey};
use rand::rngs::StdRng;
use rand::SeedableRng;
use zeroize::Zeroizing;

fn rng() -> StdRng {
    StdRng::seed_from_u64(7)
}

fn init_random(tail: usize) -> ClientInitRandom {
    ClientInitRandom {
        ephemeral: Zeroizing::new([5; 32]),
        n: [1, 2],
        header_nonce: [3; 24],
        token_nonce: [4; 24],
        tail: vec![9; tail],
    }
}

#[test]
fn client_init_under_another_key_is_refused() {
    let server = ServerKey::generate(&mut rng());
    let other = ServerKey::generate(&mut StdRng::seed_from_u64(8));
    let (_, msg) = wire::client_init(other.public(), b"tok", 0, 0, &init_random(3)).unwrap();
    let mut input = &msg[..];
    let err = ClientInitDecoder::new(server)
        .decode(&mut input)
        .unwrap_err();
    assert_eq!(err, Error::Decrypt("client INIT header"));
}

#[test]
fn client_init_with_another_seed_is_refused() {
    // Same X25519 key, other seed: the unmasked ephemeral key is wrong.
    let server = ServerKey::generate(&mut rng());
    let mut wrong = *server.public();
    wrong.seed[0] ^= 1;
    let (_, msg) = wire::client_init(&wrong, b"tok", 0, 0, &init_random(0)).unwrap();
    let mut input = &msg[..];
    let err = ClientInitDecoder::new(server)
        .decode(&mut input)
        .unwrap_err();
    assert!(matches!(err, Error::Decrypt(_) | Error::WeakKey), "{err:?}");
}

#[test]
fn flipped_bit_anywhere_in_a_message_is_refused() {
    let key = SessionKey::from_bytes([1; 32]);
    let msg = wire::data(&key, b"hello", &[2; 24], &[3; 24], &[]).unwrap();
    for i in 0..msg.len() {
        let mut bad = msg.clone();
        bad[i] ^= 0x40;
        let mut d = MessageDecoder::new(key.clone());
        let mut input = &bad[..];
        assert!(
            d.decode(&mut input).is_err(),
            "byte {i} flipped was accepted"
        );
    }
}

#[test]
fn a_server_init_that_refuses_is_an_error() {
    let key = SessionKey::from_bytes([1; 32]);
    let msg = wire::server_init(&key, 3, 1234, &[0; 24], &[1, 2]).unwrap();
    let mut input = &msg[..];
    assert_eq!(
        ServerInitDecoder::new(key).decode(&mut input),
        Err(Error::Status(3))
    );
}

#[test]
fn a_server_init_is_not_a_data_header() {
    // Both are sealed under the session key; the flags keep them apart.
    let key = SessionKey::from_bytes([1; 32]);
    let msg = wire::term(&key, &[0; 24], &[]).unwrap();
    let mut padded = msg.clone();
    padded.push(0);
    let mut input = &padded[..];
    let err = ServerInitDecoder::new(key).decode(&mut input).unwrap_err();
    assert!(matches!(err, Error::Decrypt(_)), "{err:?}");
}

#[test]
fn largest_message_round_trips_and_one_more_byte_is_refused() {
    let key = SessionKey::from_bytes([1; 32]);
    let payload = vec![0xab; MAX_DATA];
    let msg = wire::data(&key, &payload, &[2; 24], &[3; 24], &[7; 65535]).unwrap();
    let mut d = MessageDecoder::new(key.clone());
    let mut input = &msg[..];
    assert_eq!(d.decode(&mut input).unwrap(), Some(Frame::Data(payload)));
    assert_eq!(d.decode(&mut input).unwrap(), None);
    assert!(input.is_empty() && !d.mid_message());
    let too_long = vec![0; MAX_DATA + 1];
    assert!(matches!(
        wire::data(&key, &too_long, &[2; 24], &[3; 24], &[]),
        Err(Error::Length { .. })
    ));
}

#[test]
fn mid_message_follows_the_stream() {
    let key = SessionKey::from_bytes([1; 32]);
    let msg = wire::data(&key, b"x", &[2; 24], &[3; 24], &[0; 10]).unwrap();
    let mut d = MessageDecoder::new(key);
    assert!(!d.mid_message());
    let mut input = &msg[..1];
    assert_eq!(d.decode(&mut input).unwrap(), None);
    assert!(d.mid_message());
    let mut input = &msg[1..msg.len() - 1];
    assert_eq!(
        d.decode(&mut input).unwrap(),
        Some(Frame::Data(b"x".to_vec()))
    );
    assert_eq!(input.len(), 9, "the data completes a frame before its tail");
    assert_eq!(d.decode(&mut input).unwrap(), None);
    assert!(input.is_empty());
    assert!(d.mid_message(), "one tail byte still to come");
    let mut input = &msg[msg.len() - 1..];
    assert_eq!(d.decode(&mut input).unwrap(), None);
    assert!(!d.mid_message());
}

#[test]
fn a_message_ends_after_its_tail_and_a_termination_at_its_header() {
    let key = SessionKey::from_bytes([1; 32]);
    let mut stream = wire::data(&key, b"x", &[2; 24], &[3; 24], &[0; 3]).unwrap();
    stream.extend(wire::data(&key, b"y", &[4; 24], &[5; 24], &[]).unwrap());
    stream.extend(wire::term(&key, &[6; 24], &[0; 7]).unwrap());
    let mut d = MessageDecoder::new(key);
    let mut input = &stream[..];
    assert_eq!(
        d.decode(&mut input).unwrap(),
        Some(Frame::Data(b"x".to_vec()))
    );
    assert_eq!(d.messages_ended(), 0, "its tail is still to come");
    assert_eq!(
        d.decode(&mut input).unwrap(),
        Some(Frame::Data(b"y".to_vec()))
    );
    assert_eq!(d.messages_ended(), 2);
    assert_eq!(d.decode(&mut input).unwrap(), Some(Frame::Term));
    assert_eq!(d.messages_ended(), 3);
}

#[test]
fn key_file_round_trips_and_reads_seasides_form() {
    let key = ServerKey::generate(&mut rng());
    let back = ServerKey::parse(&key.to_text()).unwrap();
    assert_eq!(back.public(), key.public());
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(&key.private_bytes()[..]);
    let env =
        format!("# conf.env\nSEASIDE_SERVER_KEY=abc\nSEASIDE_PRIVATE_KEY={b64}  # 40 bytes\n");
    assert_eq!(ServerKey::parse(&env).unwrap().public(), key.public());
}

#[test]
fn key_file_with_a_mismatched_public_key_is_refused_without_showing_secrets() {
    let key = ServerKey::generate(&mut rng());
    let other = ServerKey::generate(&mut StdRng::seed_from_u64(9));
    let text = key.to_text().replace(&other.public().to_hex(), "x");
    let text = text.replace(&key.public().to_hex(), &other.public().to_hex());
    let err = ServerKey::parse(&text).unwrap_err().to_string();
    assert!(err.contains("does not match"), "{err}");
    let private = hex::encode(&key.private_bytes()[..]);
    for bad in ["", "garbage", &format!("SEASIDE_PRIVATE_KEY={private}00")] {
        let err = ServerKey::parse(bad).unwrap_err().to_string();
        assert!(!err.contains(&private[..16]), "{err}");
    }
}

#[test]
fn settings_read_as_seaside_reads_them() {
    assert_eq!(
        PortSettings::from_env(|_| None).unwrap(),
        PortSettings::default()
    );
    let s = PortSettings::from_env(|k| match k {
        "PORT_TAIL_LENGTH" => Some(" 1_024 ".into()),
        "PORT_TIMEOUT" => Some("+3".into()),
        "PORT_KEEPCNT" => Some("2".into()),
        _ => None,
    })
    .unwrap();
    assert_eq!(s.tail_length, 1024);
    assert_eq!(s.timeout, Duration::from_secs(3));
    assert_eq!(s.keepcnt, 2);
    for (k, v) in [
        ("PORT_TAIL_LENGTH", "65536"),
        ("PORT_TIMEOUT", "0"),
        ("PORT_TIMEOUT", "2.5"),
        ("PORT_KEEPIDLE", "x"),
        ("PORT_TAIL_LENGTH", "1__0"),
    ] {
        let r = PortSettings::from_env(|name| (name == k).then(|| v.to_string()));
        assert!(matches!(r, Err(Error::Setting { .. })), "{k}={v}: {r:?}");
    }
}

#[test]
fn connection_file_round_trips_and_bounds_the_token() {
    use cipherlink_port::ConnectionFile;
    let key = ServerKey::generate(&mut rng());
    let f = ConnectionFile {
        name: "alice".into(),
        server: "127.0.0.1:8587".into(),
        server_key: *key.public(),
        token: Zeroizing::new(vec![1, 2, 3]),
    };
    let back = ConnectionFile::parse(&f.to_text()).unwrap();
    assert_eq!(back.server_key, *key.public());
    assert_eq!(back.token.to_vec(), vec![1, 2, 3]);
    let long = f.to_text().replace("010203", &"00".repeat(MAX_DATA + 1));
    assert!(ConnectionFile::parse(&long).is_err());
}
