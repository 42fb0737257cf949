//! `cipherlink link ...`: keys, invitations and the link protocol's server and
//! client (docs/link-protocol.md).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use cipherlink_files::{Access, Existing};
use cipherlink_link::driver::{connect, Link, LinkListener};
use cipherlink_link::gate::ServerLimits;
use cipherlink_link::token_file::{self, Reload, TokenFile};
use cipherlink_link::{
    ClientConfig, ConnectionFile, EndpointOptions, LinkParams, ServerEndpoint, ServerKey,
    TokenStore,
};
use clap::{Args, Subcommand};
use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zeroize::Zeroizing;

use crate::values::{duration_or_secs, listen_addr};
use crate::wire_policy::PolicyArgs;

/// The link protocol: hybrid post-quantum, probe-resistant, random-looking links.
#[derive(Debug, Args)]
pub struct LinkArgs {
    #[command(subcommand)]
    command: LinkCommand,
}

#[derive(Debug, Subcommand)]
enum LinkCommand {
    /// Make the server's static key pair.
    Keygen(KeygenArgs),
    /// Issue a connection file for a client and record its token.
    Invite(InviteArgs),
    /// Revoke every token of a client name.
    Revoke(RevokeArgs),
    /// Run a link server (echo, or print what arrives).
    Serve(ServeArgs),
    /// Connect with a connection file, send stdin, print what comes back.
    Connect(ConnectArgs),
}

/// Which wire a command speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Wire {
    /// cipherlink's link protocol (recommended).
    Link,
    /// SeasideVPN's PORT (docs/port-wire.md): for SeasideVPN clients and
    /// listeners; no forward secrecy, no replay protection.
    Port,
    /// SeasideVPN's TYPHOON over UDP (docs/typhoon-wire.md): PORT's keys,
    /// tokens and files; no forward secrecy, no retransmission.
    Typhoon,
}

/// `--key`'s default for each wire.
fn default_key(wire: Wire) -> PathBuf {
    PathBuf::from(match wire {
        Wire::Link => "link-server.key",
        Wire::Port | Wire::Typhoon => "port-server.key",
    })
}

/// `--tokens`' default for each wire (one store per wire: a PORT client
/// sends its whole token, so it must not also open links).
fn default_tokens(wire: Wire) -> PathBuf {
    PathBuf::from(match wire {
        Wire::Link => "link-tokens.txt",
        Wire::Port | Wire::Typhoon => "port-tokens.txt",
    })
}

#[derive(Debug, Args)]
struct KeygenArgs {
    /// The wire: `port` makes a SeasideVPN key (X25519 + 8-byte seed) and
    /// prints its 40-byte public key as hex.
    #[arg(long, value_enum, default_value = "link")]
    wire: Wire,
    /// Where to write the server key file, mode 0600 (default:
    /// link-server.key, or port-server.key with --wire port).
    #[arg(long)]
    key: Option<PathBuf>,
    /// Overwrite an existing key file.
    #[arg(long)]
    force: bool,
}

#[derive(Debug, Args)]
struct InviteArgs {
    /// The wire: `port` writes a PORT connection file (NAME.port) and
    /// prints the token bytes a SeasideVPN PortClient presents, as hex.
    #[arg(long, value_enum, default_value = "link")]
    wire: Wire,
    /// The server key file (default: link-server.key, or port-server.key).
    #[arg(long)]
    key: Option<PathBuf>,
    /// The server's token store, created if missing (default:
    /// link-tokens.txt, or port-tokens.txt).
    #[arg(long)]
    tokens: Option<PathBuf>,
    /// The client's name (1-64 of A-Z a-z 0-9 . _ -).
    #[arg(long)]
    name: String,
    /// The address clients connect to, HOST:PORT.
    #[arg(long)]
    server: String,
    /// Where to write the connection file (default: NAME.link, or NAME.port).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Replace an existing connection file at --out.
    #[arg(long)]
    force: bool,
    /// Also bind the token to a fresh client static key: the connection
    /// file gets its secret, the token store its public key, and the client
    /// then needs both (docs/link-protocol.md §2).
    #[arg(long)]
    client_key: bool,
}

#[derive(Debug, Args)]
struct RevokeArgs {
    /// The server's token store.
    #[arg(long, default_value = "link-tokens.txt")]
    tokens: PathBuf,
    /// The client name whose tokens to revoke.
    #[arg(long)]
    name: String,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// The wire: `port` serves SeasideVPN PortClients (each admitted client
    /// reconnects to a port of its own on the same address).
    #[arg(long, value_enum, default_value = "link")]
    wire: Wire,
    /// The server key file (default: link-server.key, or port-server.key;
    /// with --wire port also SeasideVPN's `SEASIDE_PRIVATE_KEY=` line).
    #[arg(long)]
    key: Option<PathBuf>,
    /// The token store (re-read when its content changes: revoked tokens
    /// are refused and their open links closed; a store that does not parse
    /// refuses every token until it is fixed). Default: link-tokens.txt,
    /// or port-tokens.txt.
    #[arg(long)]
    tokens: Option<PathBuf>,
    /// The replay store, a database file of the first messages answered in
    /// the last two hours, so that a restart does not answer them again
    /// (default: beside the token store, NAME.replay, or NAME.udp.replay with
    /// --udp; not with --wire port, which has no replay protection).
    #[arg(long)]
    replay_store: Option<PathBuf>,
    /// Where to listen: PORT (every interface), HOST:PORT or [IPv6]:PORT.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7443", value_parser = listen_addr)]
    listen: SocketAddr,
    /// Send everything back instead of printing it.
    #[arg(long)]
    echo: bool,
    /// Serve the link protocol over UDP (its datagram mode,
    /// docs/link-protocol.md §11): same key, tokens and replay store; each
    /// datagram a client sends is one write to stdout. Keepalive from the
    /// TYPHOON_* variables.
    #[arg(long)]
    udp: bool,
    #[command(flatten)]
    policy: PolicyArgs,
    /// Stop after this many links have ended (default: run until interrupted).
    #[arg(long)]
    count: Option<u64>,
    /// On Ctrl-C or SIGTERM, let open links go on this long before they
    /// are cut (a second Ctrl-C exits at once); a bare number is seconds.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = duration_or_secs)]
    shutdown_grace: Duration,
}

#[derive(Debug, Args)]
struct ConnectArgs {
    /// The wire: `port` connects to a SeasideVPN PortListener (or `link
    /// serve --wire port`) with a PORT connection file.
    #[arg(long, value_enum, default_value = "link")]
    wire: Wire,
    /// The connection file from `cipherlink link invite`.
    file: PathBuf,
    /// Connect here instead of the file's server address.
    #[arg(long)]
    server: Option<String>,
    /// Connect over UDP (the link's datagram mode): each read of stdin is
    /// one datagram; datagrams may be lost, nothing is resent.
    #[arg(long)]
    udp: bool,
    /// Time limit for connecting and the handshake (with --wire port: for
    /// each step, as PORT_TIMEOUT); e.g. 30s or 500ms, a bare number is
    /// seconds.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = duration_or_secs)]
    timeout: Duration,
    #[command(flatten)]
    policy: PolicyArgs,
}

/// Runs `cipherlink link ...`.
pub async fn run(args: LinkArgs) -> Result<()> {
    let udp_wire = match &args.command {
        LinkCommand::Serve(a) if a.udp => Some(a.wire),
        LinkCommand::Connect(a) if a.udp => Some(a.wire),
        _ => None,
    };
    if udp_wire.is_some_and(|w| w != Wire::Link) {
        bail!("--udp runs the link protocol over UDP: drop --wire (typhoon is UDP already; port is TCP only)");
    }
    match args.command {
        LinkCommand::Keygen(a) if a.wire != Wire::Link => {
            let key = a.key.unwrap_or_else(|| default_key(a.wire));
            crate::link_port::keygen(&key, a.force)
        }
        LinkCommand::Keygen(a) => keygen(a),
        // PORT and TYPHOON share their keys, tokens and connection files.
        LinkCommand::Invite(a) if a.wire != Wire::Link => {
            crate::link_port::invite(crate::link_port::Invite {
                key: a.key.unwrap_or_else(|| default_key(a.wire)),
                tokens: a.tokens.unwrap_or_else(|| default_tokens(a.wire)),
                name: a.name,
                server: a.server,
                out: a.out,
                force: a.force,
                typhoon: a.wire == Wire::Typhoon,
            })
        }
        LinkCommand::Invite(a) => invite(a),
        LinkCommand::Revoke(a) => revoke(a),
        LinkCommand::Serve(a) if a.wire == Wire::Port => {
            a.policy.check(a.wire)?;
            crate::link_port::serve(crate::link_port::Serve {
                key: a.key.unwrap_or_else(|| default_key(Wire::Port)),
                tokens: a.tokens.unwrap_or_else(|| default_tokens(Wire::Port)),
                listen: a.listen,
                echo: a.echo,
                count: a.count,
            })
            .await
        }
        LinkCommand::Serve(a) if a.wire == Wire::Typhoon => {
            a.policy.check(a.wire)?;
            crate::link_typhoon::serve(crate::link_typhoon::Serve {
                key: a.key.unwrap_or_else(|| default_key(Wire::Typhoon)),
                tokens: a.tokens.unwrap_or_else(|| default_tokens(Wire::Typhoon)),
                listen: a.listen,
                echo: a.echo,
                count: a.count,
            })
            .await
        }
        LinkCommand::Serve(a) if a.udp => {
            a.policy.check(a.wire)?;
            crate::link_udp::serve(crate::link_udp::Serve {
                key: a.key.unwrap_or_else(|| default_key(Wire::Link)),
                tokens: a.tokens.unwrap_or_else(|| default_tokens(Wire::Link)),
                replay_store: a.replay_store,
                listen: a.listen,
                echo: a.echo,
                count: a.count,
            })
            .await
        }
        LinkCommand::Serve(a) => {
            a.policy.check(a.wire)?;
            serve(a).await
        }
        LinkCommand::Connect(a) if a.wire == Wire::Port => {
            a.policy.check(a.wire)?;
            crate::link_port::connect(&a.file, a.server, a.timeout).await
        }
        LinkCommand::Connect(a) if a.wire == Wire::Typhoon => {
            a.policy.check(a.wire)?;
            crate::link_typhoon::connect(&a.file, a.server, a.timeout).await
        }
        LinkCommand::Connect(a) if a.udp => {
            a.policy.check(a.wire)?;
            crate::link_udp::connect_cmd(&a.file, a.server, a.timeout).await
        }
        LinkCommand::Connect(a) => {
            a.policy.check(a.wire)?;
            connect_cmd(a).await
        }
    }
}

/// Parameters from the `PORT_*` environment variables (PORT's names and meaning).
pub(crate) fn params_from_env() -> Result<LinkParams> {
    LinkParams::from_env(|k| std::env::var(k).ok()).context("reading PORT_* settings")
}

/// Reads a secret file (key, token store, connection file): refused when
/// group or others may read it, bounded, and wiped from memory when dropped.
pub(crate) fn read_text(path: &Path, what: &str) -> Result<Zeroizing<String>> {
    cipherlink_files::read_secret_text(path, cipherlink_link::keys::MAX_FILE_LEN as u64)
        .with_context(|| format!("reading the {what}"))
}

/// Writes a secret file whole (0600, never through a symlink).
pub(crate) fn write_secret(path: &Path, text: &str, existing: Existing) -> Result<()> {
    cipherlink_files::write(path, text.as_bytes(), Access::Private, existing).map_err(|err| {
        let exists = matches!(err, cipherlink_files::FileError::Exists { .. });
        let err = anyhow::Error::new(err);
        if exists {
            err.context("use --force to replace it")
        } else {
            err.context(format!("writing {}", path.display()))
        }
    })
}

pub(crate) fn load_key(path: &Path) -> Result<ServerKey> {
    let text = read_text(path, "server key file")?;
    ServerKey::parse(&text).with_context(|| format!("server key file {}", path.display()))
}

pub(crate) fn load_tokens(path: &Path, missing_ok: bool) -> Result<TokenStore> {
    if missing_ok && !path.exists() {
        return Ok(TokenStore::new());
    }
    let text = read_text(path, "token store")?;
    TokenStore::parse(&text).with_context(|| format!("token store {}", path.display()))
}

/// Holds the token store's lock for one read-modify-write (`invite`, `revoke`).
pub(crate) fn lock_tokens(path: &Path) -> Result<token_file::StoreLock> {
    token_file::lock_store(path).with_context(|| format!("locking token store {}", path.display()))
}

fn keygen(a: KeygenArgs) -> Result<()> {
    let path = a.key.unwrap_or_else(|| default_key(Wire::Link));
    if path.symlink_metadata().is_ok() && !a.force {
        bail!("{} exists (use --force to replace it; clients pinned to the old key will stop connecting)", path.display());
    }
    let key = ServerKey::generate(&mut StdRng::from_os_rng());
    let existing = if a.force {
        Existing::Replace
    } else {
        Existing::Refuse
    };
    write_secret(&path, &key.to_text(), existing)?;
    println!("wrote {}", path.display());
    println!("public key {}", hex_encode(key.public()));
    Ok(())
}

pub(crate) fn hex_encode(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn invite(a: InviteArgs) -> Result<()> {
    let key = load_key(&a.key.unwrap_or_else(|| default_key(Wire::Link)))?;
    let tokens = a.tokens.unwrap_or_else(|| default_tokens(Wire::Link));
    let _lock = lock_tokens(&tokens)?;
    let mut store = load_tokens(&tokens, true)?;
    let params = params_from_env()?;
    let token = store.issue_with(&a.name, a.client_key, &mut StdRng::from_os_rng())?;
    let file = ConnectionFile {
        name: a.name.clone(),
        server: a.server.clone(),
        server_key: *key.public(),
        token,
        tail_length: params.tail_length,
    };
    let out = a
        .out
        .unwrap_or_else(|| PathBuf::from(format!("{}.link", a.name)));
    let existing = if a.force {
        Existing::Replace
    } else {
        Existing::Refuse
    };
    if existing == Existing::Refuse && out.symlink_metadata().is_ok() {
        bail!(
            "{} already exists: use --force to replace it",
            out.display()
        );
    }
    // The store first: a connection file whose token is not recorded would be refused.
    write_secret(&tokens, &store.to_text(), Existing::Replace)?;
    write_secret(&out, &file.to_text(), existing)?;
    println!(
        "wrote {} for {} (token recorded in {})",
        out.display(),
        a.name,
        tokens.display()
    );
    if let Some(k) = &file.token.client_key {
        println!("client key {}", hex_encode(&k.public));
    }
    Ok(())
}

/// How often `link serve` looks for a changed token store.
pub(crate) const TOKEN_RELOAD: Duration = Duration::from_secs(2);

fn revoke(a: RevokeArgs) -> Result<()> {
    let _lock = lock_tokens(&a.tokens)?;
    let mut store = load_tokens(&a.tokens, false)?;
    let n = store.revoke(&a.name);
    if n == 0 {
        bail!("{:?} has no active token in {}", a.name, a.tokens.display());
    }
    write_secret(&a.tokens, &store.to_text(), Existing::Replace)?;
    println!(
        "revoked {n} token(s) of {}; a running `link serve` refuses them and closes their open links within {} s",
        a.name,
        TOKEN_RELOAD.as_secs()
    );
    Ok(())
}

async fn serve(a: ServeArgs) -> Result<()> {
    let key = load_key(&a.key.unwrap_or_else(|| default_key(Wire::Link)))?;
    let tokens_path = a.tokens.unwrap_or_else(|| default_tokens(Wire::Link));
    let replay = a
        .replay_store
        .clone()
        .unwrap_or_else(|| cipherlink_link::proto::default_replay_file(&tokens_path));
    let options = EndpointOptions {
        replay_file: Some(replay.clone()),
        ..EndpointOptions::default()
    };
    let endpoint = Arc::new(
        ServerEndpoint::with_options(key, TokenStore::new(), params_from_env()?, options)
            .with_context(|| format!("replay store {}", replay.display()))?,
    );
    let mut tokens = TokenFile::new(&tokens_path);
    if let Reload::Failed { reason, .. } = tokens.reload(&endpoint) {
        bail!("token store {reason}");
    }
    let (limits, fds) = admission_limits();
    let mut listener = LinkListener::bind_with(a.listen, endpoint.clone(), limits)
        .await
        .with_context(|| format!("listening on {}", a.listen))?;
    crate::shutdown::take_over();
    // Status, not payload: stdout carries only what clients send. Scripts
    // read this line from stderr to learn the port.
    eprintln!("listening on {}", listener.local_addr());
    eprintln!(
        "{fds}: holds up to {} connections before they authenticate ({} per address)",
        limits.max_unauthenticated, limits.max_unauthenticated_per_ip
    );
    let mut links = tokio::task::JoinSet::new();
    let mut ended = 0u64;
    let mut reload = tokio::time::interval(TOKEN_RELOAD);
    loop {
        if a.count.is_some_and(|c| ended >= c) {
            break;
        }
        tokio::select! {
            link = listener.accept() => {
                let Some(link) = link else { bail!("the listener stopped") };
                tracing::info!("link from {}", link.peer());
                let echo = a.echo;
                links.spawn(async move {
                    let peer = link.peer().to_owned();
                    if let Err(e) = handle(link, echo).await {
                        tracing::warn!("link {peer}: {e:#}");
                    }
                });
            }
            Some(_) = links.join_next() => ended += 1,
            _ = reload.tick() => log_reload(tokens.reload(&endpoint), &tokens_path, "links"),
            () = crate::shutdown::requested() => {
                drop(listener);
                return stop(links, a.shutdown_grace).await;
            }
        }
    }
    eprintln!("stopped after {ended} link(s) (--count)");
    Ok(())
}

/// Says what a re-read of the token store did (`what`: the open links or
/// sessions it closes).
pub(crate) fn log_reload(r: Reload, path: &Path, what: &str) {
    match r {
        Reload::Unchanged => {}
        Reload::Applied { tokens, closed } => tracing::info!(
            "reloaded {} ({tokens} tokens; closed {closed} open {what} of revoked tokens)",
            path.display()
        ),
        Reload::Failed { reason, closed } => tracing::error!(
            "token store {reason}: refusing every token until it is fixed (closed {closed} open {what})"
        ),
    }
}

/// The clean stop of `link serve`: no new links; the open ones may go on
/// for `grace`, then they are cut.
async fn stop(mut links: tokio::task::JoinSet<()>, grace: Duration) -> Result<()> {
    // Links that ended since the last turn of the loop are not open.
    while links.try_join_next().is_some() {}
    eprintln!(
        "stopping: no new links; waiting up to {} for {} open link(s) (interrupt again to exit now)",
        cipherlink::duration::display(grace),
        links.len()
    );
    let drained =
        tokio::time::timeout(grace, async { while links.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        eprintln!(
            "cut {} link(s) still open after the grace period",
            links.len()
        );
        links.shutdown().await;
    }
    eprintln!("stopped");
    Ok(())
}

/// Raises the open-file limit to the hard limit (every socket is a
/// descriptor) and sizes the admission caps from what it allows
/// (docs/link-protocol.md §6); also says what it did.
fn admission_limits() -> (ServerLimits, String) {
    match cipherlink_lab::fd_limit::raise() {
        Ok(l) => {
            let said = if l.soft > l.soft_before {
                format!(
                    "open-file limit raised from {} to {} (hard limit {})",
                    l.soft_before, l.soft, l.hard
                )
            } else {
                format!("open-file limit {} (hard limit {})", l.soft, l.hard)
            };
            (ServerLimits::for_open_files(l.soft, 1), said)
        }
        Err(e) => (
            ServerLimits::for_this_process(1),
            format!("open-file limit not raised ({e})"),
        ),
    }
}

async fn handle(link: Link, echo: bool) -> Result<()> {
    let peer = link.peer().to_owned();
    let (mut r, mut w) = tokio::io::split(link);
    if echo {
        tokio::io::copy(&mut r, &mut w)
            .await
            .with_context(|| format!("echoing to {peer}"))?;
        w.shutdown().await.context("closing")?;
    } else {
        let mut out = tokio::io::stdout();
        tokio::io::copy(&mut r, &mut out)
            .await
            .with_context(|| format!("reading from {peer}"))?;
        out.flush().await?;
        w.shutdown().await.context("closing")?;
    }
    Ok(())
}

async fn connect_cmd(a: ConnectArgs) -> Result<()> {
    let text = read_text(&a.file, "connection file")?;
    let file = ConnectionFile::parse(&text)
        .with_context(|| format!("connection file {}", a.file.display()))?;
    let params = params_from_env()?;
    let limit = a.timeout;
    if limit.is_zero() {
        bail!("--timeout 0 would fail every connection; give a limit such as 30s");
    }
    let mut cfg = ClientConfig::from_file(&file, params, |k| std::env::var(k).ok());
    cfg.params.handshake_timeout = limit;
    let addr = a.server.unwrap_or(file.server);
    let link = tokio::time::timeout(limit, connect(addr.as_str(), &cfg))
        .await
        .with_context(|| format!("connecting to {addr}: timed out"))?
        .with_context(|| format!("connecting to {addr} as {}", file.name))?;
    eprintln!(
        "connected to {addr} as {} (hybrid X25519+ML-KEM-768 link)",
        file.name
    );
    let (mut from_server, mut to_server) = tokio::io::split(link);
    let upload = async {
        let mut stdin = tokio::io::stdin();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = stdin.read(&mut buf).await.context("reading stdin")?;
            if n == 0 {
                break;
            }
            to_server
                .write_all(&buf[..n])
                .await
                .with_context(|| format!("sending to {addr}"))?;
        }
        // The authenticated close: the server's reply still arrives.
        to_server.shutdown().await.context("closing")?;
        anyhow::Ok(())
    };
    let download = async {
        let mut stdout = tokio::io::stdout();
        tokio::io::copy(&mut from_server, &mut stdout)
            .await
            .with_context(|| format!("receiving from {addr}"))?;
        stdout.flush().await?;
        anyhow::Ok(())
    };
    crate::stdio_session::until_server_done(upload, download).await
}
