//! Spec vectors of the datagram mode (docs/link-protocol.md §11.8): the
//! keys, randomness and clock of §9 give exactly these datagrams.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Instant;

use cipherlink_link::dgram::wire::{c2s_header_key, piece_mark, HeaderOpener};
use cipherlink_link::dgram::{
    ClientEvent, DgramClient, DgramServer, DgramServerOptions, ServerEvent,
};
use cipherlink_link::fuzzing::{vector_client_config, vector_endpoint, VectorRng, VECTOR_UNIX};
use cipherlink_link::proto::crypto::{hash, HmacKey};
use cipherlink_link::proto::handshake::{mark, obfs_key, window};

const PIECE0_LEN: usize = 198;
const PIECE0_SHA256: &str = "017c41532ac6251784fbb0d2601a8c4e7f4a7087ab5dba7adf4daaab0fef3edf";
const PIECE1_LEN: usize = 1161;
const PIECE1_SHA256: &str = "f7f4031d420160083dc803d5b5b95fe316de5cc98b0ad6c8c0c3a7635116e74c";
const MSG2_LEN: usize = 1156;
const MSG2_SHA256: &str = "3fc900fae31ac2065c29e3c33af088c057ba4a3d667cbe2517352c0f3cbb552c";
const SID: &str = "69334f511d20c3c0";
const RECORD_HELLO: &str = "7533987d4f4ddaa8a63c46ddbe2f29ed62531f9224a425c8de909610f525ab3893c954d03c298f97b8e3301db4b404c8d146c0811c2f25d932112b0d10bd0db6d930557799fd1b0522bce1140d6b0a3667c6a0dbc4603445f86dd9beb3b9ad7e0573df";

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn datagram_vectors() {
    let now = Instant::now();
    let cfg = vector_client_config();
    let mut client = DgramClient::new(
        cfg.clone(),
        VECTOR_UNIX,
        now,
        Box::new(VectorRng::new(b"client")),
    )
    .unwrap();
    let mut server = DgramServer::new(
        vector_endpoint(),
        DgramServerOptions::default(),
        now,
        Box::new(VectorRng::new(b"server")),
    );
    let from: SocketAddr = "192.0.2.1:4000".parse().unwrap();
    let p0 = client.poll_transmit().unwrap();
    let p1 = client.poll_transmit().unwrap();
    for p in [&p0, &p1] {
        server.handle_datagram(now, VECTOR_UNIX, from, &mut p.clone());
    }
    let (to, msg2) = server.poll_transmit().unwrap();
    assert_eq!(to, from);
    client.handle_datagram(now, &mut msg2.clone());
    assert!(matches!(client.poll_event(), Some(ClientEvent::Connected)));
    assert!(matches!(
        server.poll_event(),
        Some(ServerEvent::Accepted { .. })
    ));

    // The first piece starts as the stream mode's msg1; the second with
    // M1 = HMAC(K_obf, "piece" ‖ M)[0..16].
    let k_obf = HmacKey::new(&obfs_key(&cfg.server_key));
    let m = mark(&obfs_key(&cfg.server_key), window(VECTOR_UNIX), &p0[..32]);
    assert_eq!(&p0[32..48], &m);
    assert_eq!(&p1[..16], &piece_mark(&k_obf, &m));

    client.send(b"hello").unwrap();
    let rec = client.poll_transmit().unwrap();
    // Its header opens under K_hdr = HMAC(K_obf, "dgram hdr") to sid ‖ 0.
    let (sid, counter) = HeaderOpener::new(&c2s_header_key(&k_obf)).open(&rec);
    assert_eq!(counter, 0);
    server.handle_datagram(now, VECTOR_UNIX, from, &mut rec.clone());
    assert!(
        matches!(server.poll_event(), Some(ServerEvent::Data { data, .. }) if data == b"hello")
    );

    let got = [
        ("len(piece 0)", p0.len().to_string()),
        ("SHA-256 piece 0", hex(&hash(&[&p0]))),
        ("len(piece 1)", p1.len().to_string()),
        ("SHA-256 piece 1", hex(&hash(&[&p1]))),
        ("len(msg2)", msg2.len().to_string()),
        ("SHA-256 msg2", hex(&hash(&[&msg2]))),
        ("sid", hex(&sid.to_be_bytes())),
        ("record(data \"hello\")", hex(&rec)),
    ];
    for (k, v) in &got {
        println!("{k:<22} = {v}");
    }
    let want = [
        PIECE0_LEN.to_string(),
        PIECE0_SHA256.into(),
        PIECE1_LEN.to_string(),
        PIECE1_SHA256.into(),
        MSG2_LEN.to_string(),
        MSG2_SHA256.into(),
        SID.into(),
        RECORD_HELLO.into(),
    ];
    for ((k, v), w) in got.iter().zip(want) {
        assert_eq!(v, &w, "{k}");
    }
}
