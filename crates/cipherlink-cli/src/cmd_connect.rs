//! `cipherlink connect`: a TLS client for testing any TLS server.

use std::time::Duration;

use anyhow::{Context as _, Result};
use cipherlink::Context;
use clap::Args;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::tls_args::{ClientTlsArgs, TlsArgs};

/// Connect, send stdin, print what comes back; negotiated details go to stderr.
#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// Server address, HOST:PORT.
    pub addr: String,
    /// TCP connect time limit in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    pub connect_timeout_ms: u64,
    /// Handshake, print the details and close without sending anything.
    #[arg(long)]
    pub handshake_only: bool,
    #[command(flatten)]
    pub tls: TlsArgs,
    #[command(flatten)]
    pub client: ClientTlsArgs,
}

/// Runs until the server closes (or, with --handshake-only, right after the handshake).
pub async fn run(args: ConnectArgs) -> Result<()> {
    let mut config = args.tls.to_config()?;
    args.client.apply(&mut config);
    let context = Context::client(&config).context("building the client TLS context")?;
    let stream = tokio::time::timeout(
        Duration::from_millis(args.connect_timeout_ms),
        TcpStream::connect(&args.addr),
    )
    .await
    .with_context(|| format!("connecting to {}: timed out", args.addr))?
    .with_context(|| format!("connecting to {}", args.addr))?;
    stream.set_nodelay(true)?;
    let mut tunnel = context.connect(stream, args.addr.clone()).await?;
    if let Some(info) = tunnel.info() {
        eprintln!("connected to {}: {info}", args.addr);
    }
    if args.handshake_only {
        tunnel.close().await?;
        return Ok(());
    }
    let (mut from_server, mut to_server) = tokio::io::split(tunnel);
    let upload = async {
        let mut stdin = tokio::io::stdin();
        tokio::io::copy(&mut stdin, &mut to_server)
            .await
            .context("sending stdin")?;
        // close_notify tells the server we are done; its reply still arrives.
        to_server.shutdown().await.context("sending close_notify")?;
        anyhow::Ok(())
    };
    let download = async {
        let mut stdout = tokio::io::stdout();
        let copied = tokio::io::copy(&mut from_server, &mut stdout).await;
        stdout.flush().await.ok();
        copied.context("receiving from the server")
    };
    let (up, down) = tokio::join!(upload, download);
    down?;
    up?;
    Ok(())
}
