//! A spiped pair: `spiped -e` (plain in, encrypted out) in front of
//! `spiped -d` (encrypted in, plain out to the backend), sharing a 32-byte
//! key file, in the foreground (`-F`).

use std::path::Path;

use super::{Ctx, Pair, END_SLACK};
use crate::bench_proxy::client::Entry;
use crate::bench_proxy::process::{spare_addr, wait_listening, Proc};
use crate::LabError;

pub(super) const CRYPTO: &str = "AES-256-CTR + HMAC-SHA256 under a shared 256-bit key file, \
    per-connection keys from a 2048-bit Diffie-Hellman exchange (forward secrecy: spiped's \
    default, not -f)";

pub(super) async fn start(
    ctx: &Ctx<'_>,
    program: &Path,
    capacity: usize,
) -> Result<Pair, LabError> {
    let material = ctx.material;
    let server_addr = spare_addr()?;
    let client_addr = spare_addr()?;
    let socket = |addr: std::net::SocketAddr| format!("[{}]:{}", addr.ip(), addr.port());
    // -n: spiped holds 100 connections by default; the idle case needs more.
    let most = (capacity + END_SLACK).to_string();
    let end = |mode: &str, source, target| {
        [
            mode,
            "-F",
            "-s",
            &socket(source),
            "-t",
            &socket(target),
            "-k",
            &material.arg("spiped.key"),
            "-n",
            &most,
        ]
        .map(String::from)
        .to_vec()
    };
    let mut server = Proc::spawn(
        "spiped -d (server end)",
        program,
        &end("-d", server_addr, ctx.backend),
        &[],
    )?;
    wait_listening(&mut server, server_addr).await?;
    let mut client = Proc::spawn(
        "spiped -e (client end)",
        program,
        &end("-e", client_addr, server_addr),
        &[],
    )?;
    wait_listening(&mut client, client_addr).await?;
    Ok(Pair {
        entry: Entry::Tcp(client_addr),
        procs: vec![server, client],
    })
}
