//! What the link's cryptography costs on this machine, and what its records
//! add to the payload: both measured on the sans-IO core, without sockets.

use std::time::Instant;

use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::Serialize;

use cipherlink_link::proto::crypto::{self, Ephemeral, KemSecret, PlainEphemeral};
use cipherlink_link::proto::Connection;
use cipherlink_link::LinkParams;

use super::cases::Fixture;
use crate::LabError;

/// The crypto floor: microseconds per operation on this machine, one core.
#[derive(Debug, Clone, Serialize)]
pub struct Floor {
    /// The client's ephemeral key with an Elligator2 representative (retries
    /// and loading it into aws-lc included).
    pub ephemeral_us: f64,
    /// The server's plain ephemeral key (loaded into aws-lc, public key computed).
    pub server_ephemeral_us: f64,
    /// The Elligator2 map of a representative to its point (the server, on msg1).
    pub elligator2_map_us: f64,
    /// One X25519 with a key already loaded.
    pub x25519_us: f64,
    /// ML-KEM-768 key generation from a seed.
    pub kem_keygen_us: f64,
    /// ML-KEM-768 encapsulation.
    pub kem_encaps_us: f64,
    /// ML-KEM-768 decapsulation.
    pub kem_decaps_us: f64,
    /// A whole handshake, both ends, in memory (no sockets).
    pub handshake_both_ends_us: f64,
}

/// Wire bytes per record beyond the payload.
#[derive(Debug, Clone, Serialize)]
pub struct Overhead {
    /// Payload of each measured record.
    pub payload: usize,
    /// Link, tail length 0: 2 (length) + 3 (type, body length) + 16 (tag).
    pub link_no_padding: f64,
    /// Link with the configured tail length (mean padding included).
    pub link_with_padding: f64,
    /// The tail length used for `link_with_padding`.
    pub tail_length: usize,
    /// TLS 1.3 (AES-GCM): 5 (header) + 1 (inner type) + 16 (tag).
    pub tls13: f64,
}

const OPERATIONS: u32 = 200;

fn per_op<T, E>(mut f: impl FnMut() -> Result<T, E>) -> Result<f64, LabError>
where
    LabError: From<E>,
{
    let t = Instant::now();
    for _ in 0..OPERATIONS {
        std::hint::black_box(f()?);
    }
    Ok(t.elapsed().as_secs_f64() * 1e6 / f64::from(OPERATIONS))
}

/// Both ends of a handshake in memory: each one's output is the other's input
/// until neither has anything to send.
fn handshake_in_memory(fx: &Fixture) -> Result<(Connection, Connection), LabError> {
    let now = Instant::now();
    let mut client = Connection::client(&fx.client, Box::new(StdRng::from_os_rng()), now, 0)?;
    let mut server =
        Connection::server(fx.endpoint.clone(), Box::new(StdRng::from_os_rng()), now, 0);
    let mut wire = Vec::new();
    // Two flights complete the handshake; the bound only stops a core that
    // keeps answering itself.
    for _ in 0..8 {
        client.poll_transmit(&mut wire);
        let client_sent = !wire.is_empty();
        if client_sent {
            server.handle_input(now, &wire);
            wire.clear();
        }
        server.poll_transmit(&mut wire);
        let server_sent = !wire.is_empty();
        if server_sent {
            client.handle_input(now, &wire);
            wire.clear();
        }
        if !client_sent && !server_sent {
            break;
        }
    }
    if client.is_open() {
        Ok((client, server))
    } else {
        Err(LabError::InMemoryHandshake)
    }
}

/// The crypto floor.
pub(super) fn measure(fx: &Fixture) -> Result<Floor, LabError> {
    let mut rng = StdRng::from_os_rng();
    let e = Ephemeral::generate(&mut rng)?;
    let peer = crypto::point_from_representative(&e.representative);
    let kem = KemSecret::generate(&mut rng);
    let ek = kem.public_bytes();
    let (ct, _) = crypto::kem_encapsulate(&ek, &mut rng)?;
    Ok(Floor {
        ephemeral_us: per_op(|| Ephemeral::generate(&mut rng))?,
        server_ephemeral_us: per_op(|| PlainEphemeral::generate(&mut rng))?,
        elligator2_map_us: per_op(|| {
            Ok::<_, LabError>(crypto::point_from_representative(&e.representative))
        })?,
        x25519_us: per_op(|| e.dh(&peer))?,
        kem_keygen_us: per_op(|| Ok::<_, LabError>(KemSecret::generate(&mut rng).public_bytes()))?,
        kem_encaps_us: per_op(|| crypto::kem_encapsulate(&ek, &mut rng))?,
        kem_decaps_us: per_op(|| kem.decapsulate(&ct))?,
        handshake_both_ends_us: per_op(|| handshake_in_memory(fx))?,
    })
}

/// Wire bytes per record, counted on the sans-IO core.
pub(super) fn overhead(params: &LinkParams) -> Result<Overhead, LabError> {
    const PAYLOAD: usize = 1024;
    const RECORDS: usize = 2000;
    let measure = |tail: usize| -> Result<f64, LabError> {
        let fx = Fixture::new(&LinkParams {
            tail_length: tail,
            ..params.clone()
        })?;
        let (mut client, _server) = handshake_in_memory(&fx)?;
        let mut wire = Vec::new();
        let payload = vec![0u8; PAYLOAD];
        let mut total = 0usize;
        for _ in 0..RECORDS {
            client.send(&payload)?;
            client.poll_transmit(&mut wire);
            total += wire.len();
            wire.clear();
        }
        Ok(total as f64 / RECORDS as f64 - PAYLOAD as f64)
    };
    Ok(Overhead {
        payload: PAYLOAD,
        link_no_padding: measure(0)?,
        link_with_padding: measure(params.tail_length)?,
        tail_length: params.tail_length,
        tls13: 22.0,
    })
}
