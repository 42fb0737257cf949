//! `cipherlink serve`: a TLS server for testing any TLS client.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

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
    /// Most connections open at once; more wait in the accept queue
    /// (default: what the open-file limit allows, raised to its hard limit at start).
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// Close a connection that sends nothing, or does not take its echo, for
    /// this many seconds, so idle clients cannot hold every slot (0 = never).
    #[arg(long, default_value_t = 300)]
    pub idle_timeout: u64,
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
    let capacity = capacity(args.max_connections);
    let server = TlsServer::bind(args.listen, context)
        .await?
        .max_connections(capacity.max);
    let addr = server.local_addr()?;
    tracing::info!(
        "serving TLS on {addr} ({}, groups {}, {}); holds {} connections at once{}",
        config.implementation,
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
        },
        capacity.max,
        capacity.why,
    );
    let echo = args.echo;
    let idle = (args.idle_timeout > 0).then(|| Duration::from_secs(args.idle_timeout));
    let stdout = Arc::new(Mutex::new(tokio::io::stdout()));
    let task = server.spawn(move |mut tunnel| {
        let stdout = stdout.clone();
        async move {
            // info() parses the peer's certificate: only when it is logged.
            if tracing::enabled!(tracing::Level::INFO) {
                if let Some(info) = tunnel.info() {
                    tracing::info!(peer = tunnel.peer(), "accepted: {info}");
                }
            }
            let peer = tunnel.peer().to_string();
            let mut total = 0u64;
            loop {
                // A buffer only while data is there: idle clients hold none.
                let Some(buf) = within(idle, tunnel.read_chunk(16 * 1024)).await? else {
                    // A polite end: the client gets close_notify, not a cut.
                    tracing::info!(peer, "{} (--idle-timeout): closing", idle_text(idle));
                    break;
                };
                if buf.is_empty() {
                    break;
                }
                total += buf.len() as u64;
                if echo {
                    let echoed = within(idle, tunnel.write_all(&buf)).await?;
                    if echoed.is_none() {
                        return Err(idle_error(&peer, "echo", idle));
                    }
                } else {
                    let mut out = stdout.lock().await;
                    let _ = out.write_all(&buf).await;
                    let _ = out.flush().await;
                }
            }
            tracing::info!(peer, "closed after {total} bytes");
            within(idle, tunnel.close())
                .await?
                .ok_or_else(|| idle_error(&peer, "close", idle))
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

/// How many connections serve holds, and why (for the start-up line).
struct Capacity {
    max: usize,
    why: String,
}

/// Each connection is a file descriptor: raise the soft open-file limit to
/// the hard one, and size the default cap from it, so that the limit, not a
/// fixed number, decides (10,000 idle clients need no flag where the hard
/// limit allows them).
fn capacity(asked: Option<usize>) -> Capacity {
    match (cipherlink_lab::fd_limit::raise(), asked) {
        (Ok(fds), None) => Capacity {
            max: fds.connections().max(1),
            why: if fds.soft > fds.soft_before {
                format!(
                    " (open-file limit raised from {} to {}; hard limit {})",
                    fds.soft_before, fds.soft, fds.hard
                )
            } else {
                format!(" (open-file limit {}, hard {})", fds.soft, fds.hard)
            },
        },
        (Ok(fds), Some(asked)) if asked > fds.connections() => {
            tracing::warn!(
                "--max-connections {asked} is more than the open-file limit allows \
                 (about {}; hard limit {}): accepts past that fail until a connection ends",
                fds.connections(),
                fds.hard
            );
            Capacity {
                max: asked,
                why: " (--max-connections)".into(),
            }
        }
        (Ok(_), Some(asked)) => Capacity {
            max: asked,
            why: " (--max-connections)".into(),
        },
        (Err(err), asked) => {
            let max = asked.unwrap_or(cipherlink::server::DEFAULT_MAX_CONNECTIONS);
            tracing::warn!("cannot read or raise the open-file limit: {err}");
            Capacity {
                max,
                why: " (open-file limit unknown)".into(),
            }
        }
    }
}

/// `op`'s result, or `None` when it took longer than `limit`.
async fn within<T>(
    limit: Option<Duration>,
    op: impl Future<Output = Result<T, cipherlink::Error>>,
) -> Result<Option<T>, cipherlink::Error> {
    match limit {
        None => op.await.map(Some),
        Some(limit) => match tokio::time::timeout(limit, op).await {
            Ok(result) => result.map(Some),
            Err(_) => Ok(None),
        },
    }
}

fn idle_text(limit: Option<Duration>) -> String {
    format!("idle for {:?}", limit.unwrap_or_default())
}

/// A peer that stopped taking data: the connection is dropped.
fn idle_error(peer: &str, during: &'static str, limit: Option<Duration>) -> cipherlink::Error {
    cipherlink::Error::Io {
        peer: peer.to_string(),
        during,
        error: std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("{} (--idle-timeout)", idle_text(limit)),
        ),
    }
}
