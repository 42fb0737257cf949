//! `cipherlink serve`: a TLS server for testing any TLS client.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use cipherlink::server::TlsServer;
use cipherlink::Role;
use clap::Args;
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

use crate::tls_args::{build_context, ServerTlsArgs, TlsArgs};

/// Accept TLS connections; echo them (--echo) or print what arrives on stdout.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:4433")]
    pub listen: SocketAddr,
    /// Send every received byte back instead of printing it.
    #[arg(long)]
    pub echo: bool,
    /// Most connections open at once; more wait in the accept queue.
    #[arg(long, default_value_t = cipherlink::server::DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,
    #[command(flatten)]
    pub tls: TlsArgs,
    #[command(flatten)]
    pub server: ServerTlsArgs,
}

/// Runs until interrupted.
pub async fn run(args: ServeArgs) -> Result<()> {
    let mut config = args.tls.to_config()?;
    args.server.apply(&mut config);
    let context = build_context(Role::Server, &config)?;
    let server = TlsServer::bind(args.listen, context)
        .await?
        .max_connections(args.max_connections);
    let addr = server.local_addr()?;
    tracing::info!(
        "serving TLS on {addr} (groups {}, {})",
        config
            .key_exchange
            .iter()
            .map(|g| g.name())
            .collect::<Vec<_>>()
            .join(","),
        if config.require_client_cert {
            "client certificate required"
        } else {
            "no client certificate"
        }
    );
    let echo = args.echo;
    let stdout = Arc::new(Mutex::new(tokio::io::stdout()));
    let task = server.spawn(move |mut tunnel| {
        let stdout = stdout.clone();
        async move {
            if let Some(info) = tunnel.info() {
                tracing::info!(peer = tunnel.peer(), "accepted: {info}");
            }
            let mut buf = vec![0u8; 16 * 1024];
            let mut total = 0u64;
            loop {
                let n = tunnel.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                total += n as u64;
                if echo {
                    tunnel.write_all(&buf[..n]).await?;
                } else {
                    let mut out = stdout.lock().await;
                    let _ = out.write_all(&buf[..n]).await;
                    let _ = out.flush().await;
                }
            }
            tracing::info!(peer = tunnel.peer(), "closed after {total} bytes");
            tunnel.close().await
        }
    });
    tokio::select! {
        result = task => result.context("accept loop stopped")?,
        signal = tokio::signal::ctrl_c() => {
            signal.context("waiting for Ctrl-C")?;
            tracing::info!("interrupted; stopping");
        }
    }
    Ok(())
}
