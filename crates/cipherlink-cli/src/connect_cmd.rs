//! `cipherlink connect`: a TLS client for testing any TLS server.

use std::time::Duration;

use anyhow::{Context as _, Result};
use cipherlink::Role;
use clap::Args;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::tls_args::{build_context, ClientTlsArgs, TlsArgs};

/// Connect, send stdin, print what comes back; negotiated details go to stderr.
#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// Server address, HOST:PORT.
    pub addr: String,
    /// TCP connect time limit (a bare number is milliseconds).
    #[arg(
        long,
        alias = "connect-timeout-ms",
        default_value = "10s",
        value_name = "DURATION",
        value_parser = crate::values::duration_or_ms
    )]
    pub connect_timeout: Duration,
    /// Handshake, print the details and close without sending anything.
    #[arg(long)]
    pub handshake_only: bool,
    #[command(flatten)]
    pub tls: TlsArgs,
    #[command(flatten)]
    pub client: ClientTlsArgs,
}

/// Runs until the server closes (or, with --handshake-only, right after the
/// handshake); the end of stdin sends close_notify but keeps reading.
pub async fn run(args: ConnectArgs) -> Result<()> {
    let mut config = args.tls.to_config()?;
    args.client.apply(&mut config);
    let origin = args.tls.origin().with(args.client.fields());
    let context = build_context(Role::Client, &config, &origin)?;
    let stream = tokio::time::timeout(args.connect_timeout, TcpStream::connect(&args.addr))
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
    let addr = args.addr.as_str();
    let (mut from_server, mut to_server) = tokio::io::split(tunnel);
    let upload = async {
        let mut stdin = tokio::io::stdin();
        tokio::io::copy(&mut stdin, &mut to_server)
            .await
            .map_err(|e| explain_io(e, format!("sending stdin to {addr}")))?;
        // close_notify tells the server we are done; its reply still arrives.
        to_server
            .shutdown()
            .await
            .map_err(|e| explain_io(e, format!("sending close_notify to {addr}")))?;
        anyhow::Ok(())
    };
    let download = async {
        let mut stdout = tokio::io::stdout();
        let copied = tokio::io::copy(&mut from_server, &mut stdout).await;
        stdout.flush().await.ok();
        copied.map_err(|e| explain_io(e, format!("receiving from {addr}")))
    };
    crate::stdio_session::until_server_done(upload, download).await
}

/// In TLS 1.3 the server judges a client certificate after the client has
/// finished its handshake, so a refusal (alert certificate_required,
/// unknown_ca, ...) arrives on the first read or write. Explain it as the
/// handshake errors are explained, instead of a bare "received fatal alert".
fn explain_io(err: std::io::Error, during: String) -> anyhow::Error {
    let tls = cipherlink::error::tls_error_in(&err).map(cipherlink::error::explain_tls);
    match tls {
        Some(why) => anyhow::Error::new(err).context(format!("{during}: {why}")),
        None => anyhow::Error::new(err).context(during),
    }
}
