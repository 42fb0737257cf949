//! `cipherlink serve`: a TLS server for testing any TLS client.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use cipherlink::serve_handler::{self, Handling};
use cipherlink::server::TlsServer;
use cipherlink::Role;
use clap::Args;
use tokio::sync::Mutex;

use crate::tls_args::{build_context, ServerTlsArgs, TlsArgs};

/// Accept TLS connections; echo them (--echo) or print what arrives on stdout.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on: HOST:PORT, or PORT alone for every interface.
    #[arg(long, default_value = "127.0.0.1:4433", value_parser = crate::values::listen_addr)]
    pub listen: SocketAddr,
    /// Send every received byte back instead of printing it.
    #[arg(long)]
    pub echo: bool,
    /// Most connections open at once; more wait in the accept queue
    /// (default: what the open-file limit allows, raised to its hard limit at start).
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// Close a connection that sends nothing, or does not take its echo, for
    /// this long, so idle clients cannot hold every slot (0 = never; a bare
    /// number is seconds).
    #[arg(long, default_value = "5m", value_name = "DURATION", value_parser = crate::values::duration_or_secs)]
    pub idle_timeout: Duration,
    #[command(flatten)]
    pub tls: TlsArgs,
    #[command(flatten)]
    pub server: ServerTlsArgs,
}

/// Runs until interrupted.
pub async fn run(args: ServeArgs) -> Result<()> {
    let mut config = args.tls.to_config()?;
    args.server.apply(&mut config);
    let origin = args.tls.origin().with(args.server.fields());
    let context = build_context(Role::Server, &config, &origin)?;
    let capacity = capacity(args.max_connections);
    let server = TlsServer::bind(args.listen, context)
        .await?
        .max_connections(capacity.max);
    let addr = server.local_addr()?;
    tracing::info!(
        "serving TLS on {addr} ({}, groups {}, {}); holds {} connections at once{}",
        config.implementation,
        config
            .groups()
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
    let idle = (!args.idle_timeout.is_zero()).then_some(args.idle_timeout);
    let handling = Arc::new(if args.echo {
        Handling::Echo
    } else {
        Handling::CopyTo(Arc::new(Mutex::new(tokio::io::stdout())))
    });
    let stats = server.stats();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut task = server.spawn(move |mut tunnel| {
        let handling = handling.clone();
        let mut stop = stop_rx.clone();
        async move {
            // info() parses the peer's certificate: only when it is logged.
            if tracing::enabled!(tracing::Level::INFO) {
                if let Some(info) = tunnel.info() {
                    // `from`, not `peer`: the info's own `peer=` is the
                    // certificate identity, and one line has one of each key.
                    tracing::info!(from = tunnel.peer(), "accepted: {info}");
                }
            }
            let stopping = async move {
                let _ = stop.wait_for(|stopping| *stopping).await;
            };
            let handled = serve_handler::handle_until(&mut tunnel, &handling, idle, stopping)
                .await
                .map_err(|err| with_flag(err, IDLE_FLAG))?;
            let from = tunnel.peer();
            if handled.stopped {
                tracing::info!(from, "server stopping: closed with close_notify");
            }
            if handled.idle_closed {
                tracing::info!(
                    from,
                    "idle for {:?} ({IDLE_FLAG}): closing",
                    idle.unwrap_or_default()
                );
            }
            tracing::info!(from, "closed after {} bytes", handled.bytes);
            Ok(())
        }
    });
    tokio::select! {
        result = &mut task => result.context("accept loop stopped")?,
        () = crate::shutdown::requested() => {}
    }
    task.abort();
    let open = stats.active();
    tracing::info!(
        "stopping: closing {open} open connection(s) with close_notify, waiting up to {}s \
         (interrupt again to exit now)",
        STOP_GRACE.as_secs()
    );
    let _ = stop_tx.send(true);
    let deadline = tokio::time::Instant::now() + STOP_GRACE;
    while stats.active() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    match stats.active() {
        0 => tracing::info!("stopped"),
        left => tracing::warn!("stopped with {left} connection(s) still open (grace over)"),
    }
    Ok(())
}

/// How long a stopping server waits for its connections' close_notify.
const STOP_GRACE: Duration = Duration::from_secs(5);

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

/// The flag that sets the idle limit, for messages.
const IDLE_FLAG: &str = "--idle-timeout";

/// Names the flag in an idle-limit error (the core names its setting).
fn with_flag(err: cipherlink::Error, flag: &str) -> cipherlink::Error {
    match err {
        cipherlink::Error::Io {
            peer,
            during,
            error,
        } if error.kind() == std::io::ErrorKind::TimedOut => cipherlink::Error::Io {
            peer,
            during,
            error: std::io::Error::new(std::io::ErrorKind::TimedOut, format!("{error} ({flag})")),
        },
        other => other,
    }
}
