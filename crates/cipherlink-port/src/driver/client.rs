//! The client's side of the dance: INIT on the listener's port, then a
//! second connection to the port the server INIT names.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{configure, io_err, within, PortSession};
use crate::decode::ServerInitDecoder;
use crate::error::Error;
use crate::keys::PublicKey;
use crate::settings::PortSettings;
use crate::wire::{self, ClientInitRandom, CLIENT_TYPE_CUSTOM, CLIENT_VERSION};
use crate::{random_nonce, random_tail, Entropy};

/// Connects to a PORT listener at `addr` (`host:port`) with the server's
/// 40-byte public key and a token; every step is bounded by
/// `settings.timeout`.
pub async fn connect(
    addr: &str,
    server: &PublicKey,
    token: &[u8],
    settings: &PortSettings,
) -> Result<PortSession, Error> {
    let what = || format!("connecting to {addr}");
    let mut first = within(settings.timeout, what, async {
        TcpStream::connect(addr)
            .await
            .map_err(|e| io_err(what(), e))
    })
    .await?;
    let listener = first.peer_addr().map_err(|e| io_err(what(), e))?;
    let (session, init) = build_init(server, token, settings)?;
    let mut decoder = ServerInitDecoder::new(session.clone());
    let user_id = within(
        settings.timeout,
        || format!("the server INIT from {listener}"),
        async {
            first
                .write_all(&init)
                .await
                .map_err(|e| io_err(format!("sending the INIT to {listener}"), e))?;
            let mut buf = [0u8; 1024];
            loop {
                let n = first
                    .read(&mut buf)
                    .await
                    .map_err(|e| io_err(format!("reading the server INIT from {listener}"), e))?;
                if n == 0 {
                    return Err(Error::Io {
                        what: format!("the server INIT from {listener}"),
                        reason: "the server closed the connection without answering (wrong key or refused token?)".into(),
                    });
                }
                let mut input = &buf[..n];
                if let Some(id) = decoder.decode(&mut input)? {
                    return Ok(id);
                }
            }
        },
    )
    .await?;
    let data_addr = SocketAddr::new(listener.ip(), user_id);
    let data = within(
        settings.timeout,
        || format!("connecting to {data_addr}"),
        async {
            TcpStream::connect(data_addr).await.map_err(|e| {
                io_err(
                    format!("connecting to {data_addr} (the port the server INIT named)"),
                    e,
                )
            })
        },
    )
    .await?;
    drop(first);
    configure(&data, settings);
    PortSession::new(data, session, settings)
}

fn build_init(
    server: &PublicKey,
    token: &[u8],
    settings: &PortSettings,
) -> Result<(crate::SessionKey, Vec<u8>), Error> {
    let mut rng = rand::rng();
    let mut ephemeral = zeroize::Zeroizing::new([0u8; 32]);
    rng.fill(&mut ephemeral[..]);
    let mut n = [0u8; 2];
    rng.fill(&mut n);
    let random = ClientInitRandom {
        ephemeral,
        n,
        header_nonce: random_nonce(&mut rng),
        token_nonce: random_nonce(&mut rng),
        tail: random_tail(settings.tail_length, &mut rng),
    };
    wire::client_init(server, token, CLIENT_TYPE_CUSTOM, CLIENT_VERSION, &random)
}
