//! `cipherlink pool serve|send`: a party of a tno.mpc.communication-compatible pool.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use cipherlink::PemSource;
use cipherlink_pool::json::{self, from_json};
use cipherlink_pool::{tls, MessageId, PeerConfig, Pool, PoolConfig, WireVersion};
use clap::{Args, Subcommand};

/// A party of a pool, speaking the tno.mpc.communication wire.
#[derive(Debug, Args)]
pub struct PoolArgs {
    #[command(subcommand)]
    command: PoolCommand,
}

#[derive(Debug, Subcommand)]
enum PoolCommand {
    /// Serve: print every received message as a JSON line, or echo it back.
    Serve(ServeArgs),
    /// Send one value (JSON) to a peer, optionally waiting for its reply.
    Send(SendArgs),
}

/// Options every party needs.
#[derive(Debug, Args)]
struct PartyArgs {
    /// This party's name.
    #[arg(long)]
    name: String,
    /// Where to listen: HOST:PORT, or PORT alone for every interface; peers
    /// identify us by this port.
    #[arg(long, default_value = "127.0.0.1:0", value_parser = crate::values::listen_addr)]
    listen: SocketAddr,
    /// A peer: NAME=HOST:PORT, or NAME=HOST:PORT@CERT.pem to identify it by
    /// its client certificate under TLS. Repeatable.
    #[arg(long = "peer", value_name = "NAME=HOST:PORT[@CERT]", required = true)]
    peers: Vec<String>,
    /// Use mutual TLS (needs --cert, --key, --ca).
    #[arg(long, requires_all = ["cert", "key", "ca"])]
    tls: bool,
    /// Our certificate chain (PEM), used as server and client certificate.
    #[arg(long, value_name = "FILE")]
    cert: Option<PathBuf>,
    /// Our private key (PEM).
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// The CA that issued every party's certificate (PEM).
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// Which tno.mpc.communication wire to speak: 5 (default) or 4.
    #[arg(long, default_value = "5")]
    wire: WireVersion,
    /// How long `send --reply` waits for the reply, e.g. 60s (0: forever; a
    /// bare number is seconds); `serve` waits for messages until it is
    /// interrupted or has its --count.
    #[arg(long, default_value = "60s", value_name = "DURATION", value_parser = crate::values::duration_or_secs)]
    timeout: Duration,
}

#[derive(Debug, Args)]
struct ServeArgs {
    #[command(flatten)]
    party: PartyArgs,
    /// Send every received message back to its sender with the same id.
    #[arg(long)]
    echo: bool,
    /// Stop after this many messages (default: run until interrupted).
    #[arg(long)]
    count: Option<u64>,
}

#[derive(Debug, Args)]
struct SendArgs {
    #[command(flatten)]
    party: PartyArgs,
    /// The recipient (default: the first --peer).
    #[arg(long)]
    to: Option<String>,
    /// The message id (default: the next counter id, "0" for a fresh party).
    #[arg(long)]
    id: Option<String>,
    /// Wait for a reply with the same id and print it as JSON.
    #[arg(long)]
    reply: bool,
    /// The value as JSON; bytes, tuples and big ints are written as in docs/pool-wire.md.
    value: String,
}

/// Runs `cipherlink pool ...`.
pub async fn run(args: PoolArgs) -> Result<()> {
    match args.command {
        PoolCommand::Serve(a) => serve(a).await,
        PoolCommand::Send(a) => send(a).await,
    }
}

async fn start(p: &PartyArgs) -> Result<Pool> {
    let mut cfg = PoolConfig::new(&p.name, p.listen).wire(p.wire);
    for spec in &p.peers {
        cfg = cfg.peer(spec.parse::<PeerConfig>().context("--peer")?);
    }
    cfg.limits.recv_timeout = (!p.timeout.is_zero()).then_some(p.timeout);
    if p.tls {
        // By path, so the core's messages name the file at fault.
        let path = |what: &str, f: &Option<PathBuf>| -> Result<PemSource> {
            f.as_deref()
                .map(PemSource::path)
                .with_context(|| format!("--tls needs --{what}"))
        };
        let (server, client) = tls::core_configs(
            path("cert", &p.cert)?,
            path("key", &p.key)?,
            path("ca", &p.ca)?,
        )
        .context("building TLS from --cert, --key and --ca")?;
        cfg = cfg.tls(server, client);
    }
    Pool::start(cfg)
        .await
        .with_context(|| format!("starting party {}", p.name))
}

async fn serve(a: ServeArgs) -> Result<()> {
    let pool = start(&a.party).await?;
    let mut handled = 0u64;
    let result = loop {
        if a.count.is_some_and(|c| handled >= c) {
            break Ok(());
        }
        let msg = tokio::select! {
            m = pool.recv_any(None) => m.context("receiving")?,
            () = crate::shutdown::requested() => break Ok(()),
        };
        handled += 1;
        if a.echo {
            if let Err(e) = pool.send(&msg.peer, &msg.value, Some(msg.id.clone())).await {
                tracing::warn!("echo of {} to {} failed: {e}", msg.id, msg.peer);
            }
        } else {
            print_message(&msg).context("writing the message to stdout")?;
        }
    };
    pool.shutdown().await;
    result
}

/// One received message as a JSON line, `{"from", "id", "value"}`,
/// streamed from the value: building a JSON tree first took more memory
/// than the decoded value (a list of small ints: ~2.5 times as much).
fn print_message(msg: &cipherlink_pool::Received) -> Result<()> {
    use std::io::Write as _;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    write!(out, "{{\"from\":")?;
    serde_json::to_writer(&mut out, &msg.peer)?;
    write!(out, ",\"id\":")?;
    json::to_writer(&mut out, &msg.id.to_value())?;
    write!(out, ",\"value\":")?;
    json::to_writer(&mut out, &msg.value)?;
    writeln!(out, "}}")?;
    out.flush()?;
    Ok(())
}

async fn send(a: SendArgs) -> Result<()> {
    let json: serde_json::Value =
        serde_json::from_str(&a.value).context("VALUE is not valid JSON")?;
    let value = from_json(&json).context("VALUE")?;
    let pool = start(&a.party).await?;
    let to = match &a.to {
        Some(t) => t.clone(),
        None => match pool.peers().first() {
            Some(p) => p.clone(),
            None => bail!("no --peer given"),
        },
    };
    let id = pool
        .send(&to, &value, a.id.clone().map(MessageId::Str))
        .await
        .with_context(|| format!("sending to {to}"))?;
    eprintln!("sent message {id} to {to}");
    if a.reply {
        let reply = pool
            .recv(&to, Some(id))
            .await
            .with_context(|| format!("waiting for the reply from {to}"))?;
        println!("{}", json::to_string(&reply));
    }
    pool.shutdown().await;
    Ok(())
}
