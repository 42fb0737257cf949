//! Entry points for `cargo fuzz` and the property tests, plus the documented
//! deterministic randomness of the test vectors (docs §9). Not a stable API.

use std::sync::Arc;
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use crate::config::LinkParams;
use crate::keys::{ClientKey, ServerKey, Token, TokenStore};
use crate::proto::crypto::hash;
use crate::proto::{ClientConfig, Connection, EndpointOptions, Entropy, Event, ServerEndpoint};

/// The vectors' randomness: block `i` is `SHA-256(seed ‖ i as u64 BE)`.
pub struct VectorRng {
    seed: Vec<u8>,
    block: u64,
    buf: [u8; 32],
    used: usize,
}

impl VectorRng {
    /// A stream for `seed`.
    pub fn new(seed: &[u8]) -> Self {
        Self {
            seed: seed.to_vec(),
            block: 0,
            buf: [0; 32],
            used: 32,
        }
    }
}

impl Entropy for VectorRng {
    fn fill(&mut self, dst: &mut [u8]) {
        for b in dst {
            if self.used == 32 {
                self.buf = hash(&[&self.seed, &self.block.to_be_bytes()]);
                self.block += 1;
                self.used = 0;
            }
            *b = self.buf[self.used];
            self.used += 1;
        }
    }
}

/// The unix time of the vectors.
pub const VECTOR_UNIX: u64 = 1_700_000_000;

/// The vectors' server key (`s = 0x01 × 32`).
pub fn vector_server_key() -> ServerKey {
    ServerKey::from_secret([1u8; 32])
}

/// The vectors' token (`T_id = 0x02 × 16`, `T_sec = 0x03 × 32`).
pub fn vector_token() -> Token {
    Token {
        id: [2u8; 16],
        secret: Zeroizing::new([3u8; 32]),
        client_key: None,
    }
}

/// The vectors' second client, "bob", whose token is bound to a client static
/// key (`T_id = 0x05 × 16`, `T_sec = 0x06 × 32`, `c = 0x04 × 32`).
pub fn vector_keyed_token() -> Token {
    Token {
        id: [5u8; 16],
        secret: Zeroizing::new([6u8; 32]),
        client_key: Some(ClientKey::from_secret([4u8; 32])),
    }
}

/// The vectors' parameters (`tail_length = 64`).
pub fn vector_params() -> LinkParams {
    LinkParams {
        tail_length: 64,
        ..LinkParams::default()
    }
}

/// A server endpoint knowing the vector tokens as "alice" and "bob".
pub fn vector_endpoint() -> Arc<ServerEndpoint> {
    let mut store = TokenStore::new();
    store
        .add("alice", vector_token())
        .unwrap_or_else(|e| unreachable!("vector token is valid: {e}"));
    store
        .add("bob", vector_keyed_token())
        .unwrap_or_else(|e| unreachable!("vector token is valid: {e}"));
    // A filter of its own: every vector handshake sends the same first message.
    let options = EndpointOptions {
        private_replay: true,
        ..EndpointOptions::default()
    };
    Arc::new(
        ServerEndpoint::with_options(vector_server_key(), store, vector_params(), options)
            .unwrap_or_else(|e| unreachable!("vector parameters are valid: {e}")),
    )
}

/// The vectors' client configuration.
pub fn vector_client_config() -> ClientConfig {
    ClientConfig {
        server_key: *vector_server_key().public(),
        token: vector_token(),
        name: "alice".into(),
        params: vector_params(),
    }
}

/// The vectors' configuration for "bob" (token with a client key).
pub fn vector_keyed_client_config() -> ClientConfig {
    ClientConfig {
        token: vector_keyed_token(),
        name: "bob".into(),
        ..vector_client_config()
    }
}

/// Moves all pending bytes between two cores until neither has any.
pub fn exchange(a: &mut Connection, b: &mut Connection, now: Instant) {
    let mut buf = Vec::new();
    for _ in 0..64 {
        let mut moved = false;
        a.poll_transmit(&mut buf);
        if !buf.is_empty() {
            b.handle_input(now, &buf);
            buf.clear();
            moved = true;
        }
        b.poll_transmit(&mut buf);
        if !buf.is_empty() {
            a.handle_input(now, &buf);
            buf.clear();
            moved = true;
        }
        if !moved {
            return;
        }
    }
}

/// A fresh client core with `cfg` and the vector server core, both on the
/// vector randomness: msg1 is ready in the client (docs §9).
pub fn vector_cores(cfg: &ClientConfig, now: Instant) -> (Connection, Connection) {
    let client = Connection::client(cfg, Box::new(VectorRng::new(b"client")), now, VECTOR_UNIX)
        .unwrap_or_else(|e| unreachable!("vector client: {e}"));
    let server = Connection::server(
        vector_endpoint(),
        Box::new(VectorRng::new(b"server")),
        now,
        VECTOR_UNIX,
    );
    (client, server)
}

/// A client and a server core after a completed handshake (vector keys and randomness).
pub fn connected_pair(now: Instant) -> (Connection, Connection) {
    let (mut client, mut server) = vector_cores(&vector_client_config(), now);
    exchange(&mut client, &mut server, now);
    (client, server)
}

/// Feeds `data` to a fresh server core in pieces; it must never answer or connect.
pub fn fuzz_server(data: &[u8]) {
    let now = Instant::now();
    let mut server = Connection::server(
        vector_endpoint(),
        Box::new(VectorRng::new(b"fuzz")),
        now,
        VECTOR_UNIX,
    );
    for (i, chunk) in data.chunks(97).enumerate() {
        server.handle_input(now + Duration::from_millis(i as u64), chunk);
    }
    server.handle_eof(now);
    let mut out = Vec::new();
    server.poll_transmit(&mut out);
    // A forged first message needs the MAC under the server key: never answered.
    assert!(out.is_empty(), "server answered unauthenticated input");
    while let Some(ev) = server.poll_event() {
        assert!(
            !matches!(ev, Event::Connected { .. }),
            "server accepted noise"
        );
    }
}

/// Feeds `data` to a client core after a handshake; no data may be delivered.
pub fn fuzz_client_records(data: &[u8]) {
    let now = Instant::now();
    let (mut client, _server) = connected_pair(now);
    for chunk in data.chunks(61) {
        client.handle_input(now, chunk);
        let mut buf = [0u8; 256];
        assert_eq!(client.recv(&mut buf), 0, "client delivered forged data");
    }
    client.handle_eof(now);
    client.handle_timeout(now + Duration::from_secs(3600));
}

/// A first message that passes the MAC and the tag, with fuzzer-chosen
/// contents (docs §3 step 4 onwards), to a fresh server core. `data[0]`
/// picks what is genuine: bit 0 alice's token id, bit 1 bob's, bit 2 a
/// valid proof for it, bit 3 a real ML-KEM key, bit 4 trailing bytes; then
/// a 2-byte plaintext length and the plaintext (the genuine parts are
/// written over it). The server must never panic, must answer only with a
/// whole msg2, and must connect only a token whose proof holds. Returns
/// whether it answered (tests: the seeds do get past the MAC).
pub fn fuzz_server_msg1(data: &[u8]) -> bool {
    let Some((&mode, rest)) = data.split_first() else {
        return false;
    };
    let (len, body) = match rest {
        [a, b, body @ ..] => (usize::from(u16::from_be_bytes([*a, *b])), body),
        _ => (0, &[][..]),
    };
    // Mostly inside the accepted range [1232, 1232 + 8192], sometimes out.
    let pt_len = 1200 + len % 9300;
    let token = match mode & 3 {
        1 => Some(vector_token()),
        2 => Some(vector_keyed_token()),
        _ => None,
    };
    let server_public = *vector_server_key().public();
    let mut rng = VectorRng::new(b"fuzz msg1");
    let msg1 = crate::proto::handshake::seal_msg1_plaintext(
        &server_public,
        VECTOR_UNIX,
        &mut rng,
        pt_len,
        |h| {
            let mut pt = body.to_vec();
            pt.resize(pt_len.max(1232), 0);
            if mode & 8 != 0 {
                let kem = crate::proto::crypto::KemSecret::generate(&mut VectorRng::new(b"ek"));
                pt[..1184].copy_from_slice(&kem.public_bytes());
            }
            if let Some(t) = &token {
                pt[1184..1200].copy_from_slice(&t.id);
                if mode & 4 != 0 {
                    let ss = t.client_key.as_ref().and_then(|k| {
                        let c = k.secret()?;
                        let dh = crate::proto::crypto::StaticDh::new(c).ok()?;
                        dh.dh(&server_public).ok()
                    });
                    let p = crate::proto::handshake::fuzz_token_proof(&t.secret, h, ss.as_deref());
                    pt[1200..1232].copy_from_slice(&p);
                }
            }
            pt
        },
    );
    let Ok(mut msg1) = msg1 else { return false };
    if mode & 16 != 0 {
        msg1.extend_from_slice(body.get(..body.len().min(64)).unwrap_or(&[]));
    }
    let now = Instant::now();
    let mut server = Connection::server(
        vector_endpoint(),
        Box::new(VectorRng::new(b"fuzz server")),
        now,
        VECTOR_UNIX,
    );
    for chunk in msg1.chunks(1000) {
        server.handle_input(now, chunk);
    }
    let mut out = Vec::new();
    server.poll_transmit(&mut out);
    assert!(
        out.is_empty()
            || out.len() >= crate::proto::handshake::MSG2_HEADER + crate::proto::handshake::C2_MIN,
        "server answered {} bytes, not a msg2",
        out.len()
    );
    if server.is_open() {
        assert!(
            token.is_some() && mode & 4 != 0,
            "server connected a first message without a valid proof"
        );
    }
    server.handle_timeout(now + Duration::from_secs(3600));
    !out.is_empty()
}

/// Records sealed under the real keys of a vector link, with fuzzer-chosen
/// plaintexts (type, body length, body, padding: docs §4), to the server
/// and to the client. `data` is a sequence of `direction(1) ‖ len(2) ‖
/// plaintext`. Neither core may panic or deliver more than it was sent.
/// Returns the data bytes the server delivered (tests: the seeds do get
/// past the tags).
pub fn fuzz_records(data: &[u8]) -> usize {
    let now = Instant::now();
    let (mut client, mut server) = vector_cores(&vector_client_config(), now);
    client.export_keys();
    exchange(&mut client, &mut server, now);
    let Some(keys) = client.take_exported_keys() else {
        return 0;
    };
    let mut c2s = crate::proto::record::Direction::from_keys(&keys.c2s_key, &keys.c2s_len);
    let mut s2c = crate::proto::record::Direction::from_keys(&keys.s2c_key, &keys.s2c_len);
    let (mut to_server, mut to_client) = (Vec::new(), Vec::new());
    let mut rest = data;
    while let [dir, a, b, tail @ ..] = rest {
        let n = usize::from(u16::from_be_bytes([*a, *b])).min(tail.len());
        let (pt, after) = tail.split_at(n.min(crate::proto::MAX_RECORD - 16));
        let (d, wire) = if dir & 1 == 0 {
            (&mut c2s, &mut to_server)
        } else {
            (&mut s2c, &mut to_client)
        };
        d.seal_plaintext(pt, wire);
        // The receiver switches keys after a rekey record: so does the sender.
        if pt == [4, 0, 0] {
            d.rekey();
        }
        rest = after;
    }
    let mut buf = vec![0u8; 64 * 1024];
    let mut to_app = Vec::new();
    for (conn, wire) in [(&mut server, &to_server), (&mut client, &to_client)] {
        let mut delivered = 0;
        for chunk in wire.chunks(4000) {
            conn.handle_input(now, chunk);
            delivered += conn.recv(&mut buf);
            let mut out = Vec::new();
            conn.poll_transmit(&mut out);
        }
        assert!(delivered <= wire.len(), "delivered more than was sent");
        to_app.push(delivered);
        conn.handle_timeout(now + Duration::from_secs(3600));
        conn.handle_eof(now);
        while conn.poll_event().is_some() {}
    }
    to_app[0]
}

/// The client's first record under `keys`, sealed with whatever `body` the
/// caller gives `ty` (the property tests: a peer that breaks the body
/// bounds of docs §4, which the sealing side never checks).
pub fn seal_first_client_record(
    keys: &crate::wire::TransportKeys,
    ty: crate::proto::RecordType,
    body: &[u8],
) -> Vec<u8> {
    let mut dir = crate::proto::record::Direction::from_keys(&keys.c2s_key, &keys.c2s_len);
    let mut out = Vec::new();
    dir.seal(ty, body, 0, &mut out);
    out
}

/// Splits fuzzer bytes into datagrams: each is a length byte pair (taken
/// modulo `max + 1`) and that many bytes.
fn datagrams(data: &[u8], max: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = data;
    while rest.len() >= 2 {
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]])) % (max + 1);
        rest = &rest[2..];
        let take = len.min(rest.len());
        out.push(rest[..take].to_vec());
        rest = &rest[take..];
    }
    out
}

/// Feeds fuzzer datagrams (from four addresses, the clock moving) to a
/// datagram server: random bytes never carry a valid MAC or a session's
/// header, so it answers nothing and opens nothing (§11.3).
pub fn fuzz_dgram_server(data: &[u8]) {
    use crate::dgram::{DgramServer, DgramServerOptions, ServerEvent};
    let now = Instant::now();
    let options = DgramServerOptions {
        cookie_threshold: u32::from(data.first().copied().unwrap_or(0) % 2),
        ..DgramServerOptions::default()
    };
    let mut server = DgramServer::new(
        vector_endpoint(),
        options,
        now,
        Box::new(VectorRng::new(b"fuzz")),
    );
    for (i, mut d) in datagrams(data, 1500).into_iter().enumerate() {
        let from = std::net::SocketAddr::from(([192, 0, 2, (i % 4) as u8], 4000));
        let t = now + Duration::from_millis(300 * i as u64);
        server.handle_datagram(t, VECTOR_UNIX, from, &mut d);
        server.handle_timeout(t);
        assert!(server.poll_transmit().is_none(), "answered noise");
    }
    while let Some(ev) = server.poll_event() {
        assert!(
            !matches!(ev, ServerEvent::Accepted { .. }),
            "accepted noise"
        );
    }
}

/// Feeds fuzzer datagrams to a datagram client while it waits for msg2,
/// then to one whose session is open: it never opens from noise, never
/// delivers data from noise, and never panics.
pub fn fuzz_dgram_client(data: &[u8]) {
    use crate::dgram::{ClientEvent, DgramClient, DgramServer, DgramServerOptions};
    let now = Instant::now();
    let cfg = vector_client_config();
    let client = DgramClient::new(
        cfg.clone(),
        VECTOR_UNIX,
        now,
        Box::new(VectorRng::new(b"client")),
    );
    let Ok(mut waiting) = client else {
        unreachable!("the vector client starts")
    };
    let dgrams = datagrams(data, 1500);
    for d in &dgrams {
        waiting.handle_datagram(now, &mut d.clone());
    }
    while let Some(ev) = waiting.poll_event() {
        assert!(!matches!(ev, ClientEvent::Connected), "opened on noise");
    }
    // An open one: a real handshake first.
    let Ok(mut client) =
        DgramClient::new(cfg, VECTOR_UNIX, now, Box::new(VectorRng::new(b"client")))
    else {
        unreachable!("the vector client starts")
    };
    let mut server = DgramServer::new(
        vector_endpoint(),
        DgramServerOptions::default(),
        now,
        Box::new(VectorRng::new(b"server")),
    );
    let from = std::net::SocketAddr::from(([192, 0, 2, 1], 4000));
    while let Some(mut d) = client.poll_transmit() {
        server.handle_datagram(now, VECTOR_UNIX, from, &mut d);
    }
    while let Some((_, mut d)) = server.poll_transmit() {
        client.handle_datagram(now, &mut d);
    }
    assert!(client.is_open(), "the vector handshake opens");
    for d in &dgrams {
        client.handle_datagram(now, &mut d.clone());
    }
    while let Some(ev) = client.poll_event() {
        assert!(!matches!(ev, ClientEvent::Data(_)), "delivered noise");
    }
}

/// Records sealed under real keys with fuzzer-chosen plaintexts (type,
/// body length, body, padding) and counters, opened by an open session:
/// the record parsing behind the tag (§11.4). Returns what was delivered.
pub fn fuzz_dgram_records(data: &[u8]) -> usize {
    use crate::dgram::records::{Receiver, Sender};
    use crate::dgram::session::{Established, Received};
    use crate::dgram::wire::{HeaderOpener, HeaderSealer};
    let now = Instant::now();
    let (key, hdr) = ([7u8; 32], [8u8; 32]);
    let mut sender = Sender::new(5, HeaderSealer::new(&hdr), &key);
    let opener = HeaderOpener::new(&hdr);
    let mut rng = VectorRng::new(b"fuzz");
    let mut session = Established::new(
        Sender::new(6, HeaderSealer::new(&[9u8; 32]), &[10u8; 32]),
        Receiver::new(&key),
        crate::config::KeepaliveConfig::default(),
        64,
        now,
        &mut rng,
    );
    let mut delivered = 0;
    for pt in datagrams(data, 2000) {
        // The first byte, when present, moves the counter (reordering, epochs).
        if let Some(b) = pt.first() {
            sender.skip(u64::from(*b) * u64::from(*b) * 64);
        }
        let mut d = sender.seal_plaintext(&pt);
        let (_, counter) = opener.open(&d);
        match session.receive(now, counter, &mut d, &mut rng) {
            Ok(Ok(got)) => {
                if let Received::Data(r) = got.what {
                    assert!(r.end <= d.len());
                    delivered += 1;
                }
            }
            Ok(Err(_)) => {}
            // An authenticated record that breaks a rule: the session ends.
            Err(_) => return delivered,
        }
    }
    delivered
}
