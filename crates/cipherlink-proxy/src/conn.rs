//! One accepted connection, from accept to close: connect the other side,
//! run the transport's handshake (if any), relay, and log the outcome.
//!
//! A tunnel that fails, or that is cut at the end of a shutdown, resets both
//! of its TCP connections (RST instead of FIN), so a plaintext client sees
//! an error rather than a clean but empty or truncated reply; a tunnel that
//! ends cleanly closes them in order (half-close).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::config::Role;
use crate::error::TunnelError;
use crate::link::LinkEngine;
use crate::mux::{MuxStream, Reason};
use crate::nacl_frame::Side;
use crate::nacl_frame_tunnel::{self, NoFirstFrame, V1Stream};
use crate::port_tunnel::{PortSide, Revocation};
use crate::read_ahead::ReadAhead;
use crate::relay::{self, Count, Ends, Receiving};
use crate::service::{Accepted, Engine, Shared};

/// Bytes a TLS side reads from its socket at once: two full records.
pub(crate) const TLS_READ_AHEAD: usize = 32 * 1024;

/// How long a tunnel cut at shutdown may take to notice and reset its
/// sockets before it is dropped.
const CUT_RESET_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// The two ends of a tunnel, as named in logs and errors.
const CLIENT: &str = "client";
const TARGET: &str = "target";

/// Handles one accepted connection to the end, logging its open (once the
/// encrypted side is established) and its close. `cut` ends it at the end
/// of a shutdown's grace period.
pub(crate) async fn handle(shared: &Shared, accepted: Accepted, id: u64, cut: CancellationToken) {
    let started = Instant::now();
    // `from` is the accepted TCP connection's address; `peer` who is at the
    // encrypted end, once known (a link's token name is known at accept).
    let (from, peer) = match &accepted {
        Accepted::Tcp(stream, addr) => {
            let _ = stream.set_nodelay(true);
            (Some(addr.to_string()), OnceLock::new())
        }
        Accepted::Link(link) => (None, OnceLock::from(format!("link:{}", link.peer()))),
        // The INIT's address, and the name the token store gives its token.
        Accepted::Port(port) => (
            Some(port.peer.to_string()),
            OnceLock::from(format!("port:{}", port.name)),
        ),
        // The stream's connection is named by who authenticated it.
        Accepted::Mux(stream, peer) => (
            None,
            OnceLock::from(format!("{peer}/stream:{}", stream.id())),
        ),
    };
    let names = Names {
        shared,
        id,
        from: from.as_deref(),
        peer: &peer,
    };
    let up = AtomicU64::new(0);
    let down = AtomicU64::new(0);
    let counts = Counts {
        up: Count {
            tunnel: &up,
            service: &shared.stats.up,
        },
        down: Count {
            tunnel: &down,
            service: &shared.stats.down,
        },
    };
    let tunnel = run(&names, accepted, counts, &cut);
    tokio::pin!(tunnel);
    let result = tokio::select! {
        result = &mut tunnel => result,
        // A relaying tunnel sees the cut itself, resets its sockets and
        // returns: poll it on for that (the cut may have come between its
        // check and this one). One still starting (a handshake, a connect)
        // is dropped after a moment: it carried nothing yet.
        () = cut.cancelled() => tokio::time::timeout(CUT_RESET_WAIT, &mut tunnel)
            .await
            .unwrap_or(Err(TunnelError::Shutdown)),
    };
    let (up, down) = (up.load(Ordering::Relaxed), down.load(Ordering::Relaxed));
    let duration = started.elapsed();
    let from = names.from;
    let peer = peer.get().map(|p| Quoted(p.as_str()));
    match &result {
        Ok(()) => {
            shared.stats.completed.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                service = %shared.name, tunnel = id,
                from = from.map(tracing::field::display), peer = peer.map(tracing::field::display),
                up, down, ?duration,
                "close: done"
            );
        }
        Err(err) => {
            shared.stats.failed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                service = %shared.name, tunnel = id,
                from = from.map(tracing::field::display), peer = peer.map(tracing::field::display),
                up, down, ?duration,
                "close: {err}"
            );
        }
    }
}

/// What a tunnel's log lines name.
struct Names<'a> {
    shared: &'a Shared,
    id: u64,
    /// The accepted TCP connection's address (none for a link).
    from: Option<&'a str>,
    /// Who is at the encrypted end, set when it is established.
    peer: &'a OnceLock<String>,
}

impl Names<'_> {
    /// Logs the `open` line once the encrypted side is up: for TLS the
    /// peer's certificate subject (or `anonymous`) and the key-exchange
    /// group, for a link its client's token name.
    fn opened(&self, encrypted: &Encrypted) {
        let mut group = None;
        if let Encrypted::Tls(tunnel) = encrypted {
            if let Some(info) = tunnel.info() {
                let _ = self.peer.set(
                    info.peer_identity
                        .map_or_else(|| "anonymous".to_string(), |id| id.subject),
                );
                group = Some(
                    info.key_exchange
                        .map_or_else(|| "none".to_string(), |kx| kx.to_string()),
                );
            }
        }
        let shared = self.shared;
        tracing::info!(
            service = %shared.name,
            tunnel = self.id,
            from = self.from.map(tracing::field::display),
            peer = self.peer.get().map(|p| tracing::field::display(Quoted(p))),
            group = group.map(tracing::field::display),
            "open: {} {} -> {}",
            role_name(shared.role),
            shared.transport.name(),
            shared.connect
        );
    }
}

/// A log value, quoted when it holds spaces or quotes (`peer="CN=a, O=b"`),
/// so each `key=value` of a line reads back unambiguously.
struct Quoted<'a>(&'a str);

impl std::fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() || self.0.contains(|c: char| c.is_whitespace() || c == '"') {
            write!(f, "{:?}", self.0)
        } else {
            f.write_str(self.0)
        }
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Server => "server",
        Role::Client => "client",
    }
}

/// The byte counters of one tunnel: `up` is accepted -> connected.
#[derive(Clone, Copy)]
pub(crate) struct Counts<'a> {
    up: Count<'a>,
    down: Count<'a>,
}

async fn run(
    names: &Names<'_>,
    accepted: Accepted,
    counts: Counts<'_>,
    cut: &CancellationToken,
) -> Result<(), TunnelError> {
    let shared = names.shared;
    let (accepted, addr) = match accepted {
        // The link listener authenticated it already.
        Accepted::Link(link) => {
            // It may have waited for a permit: one revoked meanwhile, or
            // whose peer went, must not make us connect the service.
            if let Some(reason) = link.end_reason() {
                return Err(TunnelError::LinkEnded(reason));
            }
            let encrypted = Encrypted::Link(Box::new(link));
            names.opened(&encrypted);
            return serve(shared, encrypted, counts, cut).await;
        }
        // Its connection authenticated before any stream was accepted.
        Accepted::Mux(stream, _) => {
            // Opened and reset at once, or its connection gone while it
            // waited: the service is not connected for it.
            if let Some(error) = stream.dead() {
                return Err(TunnelError::Io {
                    during: "opening",
                    side: CLIENT,
                    error,
                });
            }
            let encrypted = Encrypted::Mux(stream);
            names.opened(&encrypted);
            return serve(shared, encrypted, counts, cut).await;
        }
        // The PORT listener admitted its token already.
        Accepted::Port(accepted) => {
            let cipherlink_port::driver::Accepted {
                session,
                name,
                token,
                ..
            } = *accepted;
            let revocation = Revocation {
                store: match &shared.engine {
                    Engine::Port(crate::port_tunnel::PortEngine::Server { tokens, .. }) => {
                        tokens.watch()
                    }
                    _ => {
                        session.reset();
                        return Err(not_this_transport(CLIENT));
                    }
                },
                token,
                name,
            };
            // It may have waited for a permit: a token revoked meanwhile
            // must not make us connect the service.
            if let Err(err) = revocation.check() {
                session.reset();
                return Err(err);
            }
            let encrypted = Encrypted::Port(Box::new(PortSide {
                session,
                revocation: Some(revocation),
            }));
            names.opened(&encrypted);
            return serve(shared, encrypted, counts, cut).await;
        }
        Accepted::Tcp(stream, addr) => (stream, addr),
    };
    match shared.role {
        Role::Server => {
            // Authenticate before touching the service: an unauthenticated
            // peer must not make us open connections.
            let encrypted = match &shared.engine {
                Engine::Tls(context) => {
                    match context
                        .accept(ReadAhead::new(accepted, TLS_READ_AHEAD), addr.to_string())
                        .await
                    {
                        Ok(tunnel) => Encrypted::Tls(Box::new(tunnel)),
                        // The handshake failed: the TCP connection is
                        // already unusable; dropping it is all there is.
                        Err(err) => return Err(TunnelError::Tls(err)),
                    }
                }
                Engine::V1(v1) => {
                    let mut stream = v1.stream(accepted, Side::Server);
                    match nacl_frame_tunnel::authenticate(&mut stream, v1.auth_timeout).await {
                        Ok(()) => Encrypted::V1(Box::new(stream)),
                        // Closed before a byte: nothing to carry anywhere.
                        Err(NoFirstFrame::Closed) => return Ok(()),
                        Err(NoFirstFrame::Failed(err)) => {
                            reset(&stream.stream);
                            return Err(err);
                        }
                    }
                }
                Engine::Plain => Encrypted::Plain(accepted),
                Engine::Link(_) | Engine::Port(_) => {
                    reset(&accepted);
                    return Err(not_this_transport(CLIENT));
                }
            };
            names.opened(&encrypted);
            serve(shared, encrypted, counts, cut).await
        }
        Role::Client => {
            let encrypted = match open_encrypted(shared).await {
                Ok(encrypted) => encrypted,
                Err(err) => {
                    reset(&accepted);
                    return Err(err);
                }
            };
            names.opened(&encrypted);
            relay(shared, encrypted, accepted, false, counts, cut).await
        }
    }
}

/// A TCP connection handed to a transport it does not belong to (a link
/// server's engine with a TCP listener): refused, never relayed in clear.
pub(crate) fn not_this_transport(side: &'static str) -> TunnelError {
    TunnelError::Io {
        during: "starting",
        side,
        error: std::io::Error::other("a connection of another transport than the service's"),
    }
}

/// Client side: a stream of the shared connection when the service
/// multiplexes, otherwise a connection of its own.
async fn open_encrypted(shared: &Shared) -> Result<Encrypted, TunnelError> {
    match &shared.mux {
        Some(mux) => mux.open(shared).await.map(Encrypted::Mux),
        None => connect_encrypted(shared).await,
    }
}

/// Client side: connects to the proxy server and sets up the encrypted
/// side as the service's transport says.
pub(crate) async fn connect_encrypted(shared: &Shared) -> Result<Encrypted, TunnelError> {
    match &shared.engine {
        Engine::Link(LinkEngine::Client(config)) => {
            let link = connect_link(shared, config).await?;
            Ok(Encrypted::Link(Box::new(link)))
        }
        Engine::Link(LinkEngine::Server { .. }) => Err(not_this_transport(TARGET)),
        Engine::Tls(context) => {
            let upstream = connect(shared).await?;
            let tunnel = context
                .connect(
                    ReadAhead::new(upstream, TLS_READ_AHEAD),
                    shared.connect.clone(),
                )
                .await?;
            Ok(Encrypted::Tls(Box::new(tunnel)))
        }
        Engine::V1(v1) => {
            let upstream = connect(shared).await?;
            Ok(Encrypted::V1(Box::new(v1.stream(upstream, Side::Client))))
        }
        Engine::Port(engine) => crate::port_tunnel::connect(shared, engine)
            .await
            .map(|side| Encrypted::Port(Box::new(side))),
        Engine::Plain => Ok(Encrypted::Plain(connect(shared).await?)),
    }
}

/// Server side, once the encrypted side is authenticated: connects the
/// service and relays. If the service cannot be reached, the encrypted side
/// is reset (a link's user is told why).
async fn serve(
    shared: &Shared,
    encrypted: Encrypted,
    counts: Counts<'_>,
    cut: &CancellationToken,
) -> Result<(), TunnelError> {
    match connect(shared).await {
        Ok(target) => {
            if let Encrypted::Mux(stream) = &encrypted {
                stream.accept();
            }
            relay(shared, encrypted, target, true, counts, cut).await
        }
        Err(err) => {
            encrypted.reset(&err.to_string());
            Err(err)
        }
    }
}

async fn connect(shared: &Shared) -> Result<TcpStream, TunnelError> {
    let error = |error| TunnelError::Connect {
        target: shared.connect.clone(),
        error,
    };
    let stream = tokio::time::timeout(shared.connect_timeout, TcpStream::connect(&shared.connect))
        .await
        .map_err(|_| {
            error(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "timed out after {:?} (--connect-timeout, connect_timeout)",
                    shared.connect_timeout
                ),
            ))
        })?
        .map_err(error)?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// Connects and authenticates a link, within the connect timeout.
async fn connect_link(
    shared: &Shared,
    config: &cipherlink_link::ClientConfig,
) -> Result<cipherlink_link::driver::Link, TunnelError> {
    let attempt = cipherlink_link::driver::connect(shared.connect.as_str(), config);
    match tokio::time::timeout(shared.connect_timeout, attempt).await {
        Ok(Ok(link)) => Ok(link),
        Ok(Err(error)) => Err(TunnelError::Link {
            target: shared.connect.clone(),
            error,
        }),
        // A wrong server key looks like this: the server answers nothing.
        Err(_) => Err(TunnelError::Connect {
            target: shared.connect.clone(),
            error: std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "no link handshake reply within {:?} (--connect-timeout; a server \
                     key other than the connection file's gets none)",
                    shared.connect_timeout
                ),
            ),
        }),
    }
}

/// Makes the kernel answer with RST when the socket is dropped.
pub(crate) fn reset(stream: &TcpStream) {
    let _ = stream.set_zero_linger();
}

/// A tunnel's encrypted side, one variant per transport: the relay picks
/// the pumps from this alone, so no transport can be carried as another.
pub(crate) enum Encrypted {
    Tls(Box<cipherlink::Tunnel<ReadAhead<TcpStream>>>),
    Link(Box<cipherlink_link::driver::Link>),
    V1(Box<V1Stream>),
    Port(Box<PortSide>),
    Plain(TcpStream),
    /// One stream of a multiplexed tls or link connection.
    Mux(MuxStream),
}

impl Encrypted {
    /// Ends the tunnel abruptly, as its transport allows: TCP and TLS with
    /// a reset; a link with an authenticated abort naming `why` (the far
    /// proxy's user gets that error, not a clean, empty end of stream).
    fn reset(self, why: &str) {
        match self {
            Encrypted::Plain(stream) => reset(&stream),
            Encrypted::V1(v1) => reset(&v1.stream),
            Encrypted::Port(port) => port.session.reset(),
            Encrypted::Link(link) => link.abort(why),
            // The only reset before relaying: the service is unreachable.
            Encrypted::Mux(stream) => stream.reset(Reason::Unreachable),
            Encrypted::Tls(tunnel) => {
                if let Some(transport) = tunnel.transport() {
                    reset(transport.get_ref());
                }
            }
        }
    }
}

/// What one tunnel's two directions share: buffer size, idle limit, and
/// per direction the byte counters and end names.
#[derive(Clone, Copy)]
pub(crate) struct Flow<'a> {
    pub(crate) size: usize,
    pub(crate) idle: Option<std::time::Duration>,
    pub(crate) cut: &'a CancellationToken,
    pub(crate) to_plain: Count<'a>,
    pub(crate) into_plain: Ends,
    pub(crate) to_encrypted: Count<'a>,
    pub(crate) into_encrypted: Ends,
}

impl<'a> Flow<'a> {
    pub(crate) fn moved(&self) -> [&'a AtomicU64; 2] {
        [self.to_plain.tunnel, self.to_encrypted.tunnel]
    }
}

/// Pumps bytes both ways between a byte-stream encrypted side (a TLS
/// tunnel, a link, or plain TCP) and the plaintext side, and gives the
/// encrypted side back so the caller can end it as its transport requires.
async fn pump_stream<S: AsyncRead + AsyncWrite + Unpin>(
    encrypted: S,
    plain: &mut TcpStream,
    flow: Flow<'_>,
) -> (Result<(), TunnelError>, S) {
    let (mut enc_read, mut enc_write) = tokio::io::split(encrypted);
    let (plain_read, plain_write) = plain.split();
    let result = relay::drive(
        relay::pump_bytes(
            &mut enc_read,
            plain_write,
            flow.size,
            0,
            flow.to_plain,
            flow.into_plain,
        ),
        relay::pump_bytes(
            plain_read,
            &mut enc_write,
            flow.size,
            relay::TLS_RECORD_LEAD,
            flow.to_encrypted,
            flow.into_encrypted,
        ),
        flow.idle,
        flow.moved(),
        flow.cut,
    )
    .await;
    (result, enc_read.unsplit(enc_write))
}

/// Relays between the encrypted side and the plaintext side.
/// `encrypted_accepted`: the encrypted side is the one we accepted (server
/// role), which decides which direction counts as `up`.
async fn relay(
    shared: &Shared,
    encrypted: Encrypted,
    mut plain: TcpStream,
    encrypted_accepted: bool,
    counts: Counts<'_>,
    cut: &CancellationToken,
) -> Result<(), TunnelError> {
    // (encrypted -> plain, plain -> encrypted) counts and end names.
    let (to_plain, to_encrypted) = if encrypted_accepted {
        (counts.up, counts.down)
    } else {
        (counts.down, counts.up)
    };
    let (enc_name, plain_name) = if encrypted_accepted {
        (CLIENT, TARGET)
    } else {
        (TARGET, CLIENT)
    };
    let flow = Flow {
        size: shared.buffer_size,
        idle: shared.idle_timeout,
        cut,
        to_plain,
        into_plain: Ends {
            from: enc_name,
            to: plain_name,
        },
        to_encrypted,
        into_encrypted: Ends {
            from: plain_name,
            to: enc_name,
        },
    };
    let result = match encrypted {
        Encrypted::Tls(tunnel) => {
            if tunnel.state() != cipherlink::TunnelState::Established {
                return Err(TunnelError::Io {
                    during: "starting",
                    side: enc_name,
                    error: std::io::Error::other("TLS tunnel not established"),
                });
            }
            let (result, tunnel) = pump_stream(tunnel, &mut plain, flow).await;
            if result.is_err() {
                if let Some(transport) = tunnel.transport() {
                    reset(transport.get_ref());
                }
            }
            result
        }
        Encrypted::V1(v1) => relay_v1(*v1, &mut plain, flow).await,
        // Resets its data connection itself when it fails.
        Encrypted::Port(port) => crate::port_tunnel::relay(*port, &mut plain, flow).await,
        Encrypted::Link(link) => {
            // Shutting the link's write side sends its authenticated close:
            // half-close travels exactly as through a TLS tunnel.
            let (result, link) = pump_stream(link, &mut plain, flow).await;
            if let Err(err) = &result {
                // As a reset does for TCP: the far end learns the tunnel failed.
                link.abort(&err.to_string());
            }
            result
        }
        Encrypted::Mux(stream) => {
            // Its FIN is the stream's half-close; a failure resets the
            // stream alone, never its connection.
            let (result, stream) = pump_stream(stream, &mut plain, flow).await;
            if result.is_err() {
                stream.reset(Reason::Aborted);
            }
            result
        }
        Encrypted::Plain(mut enc) => {
            let (result, _) = pump_stream(&mut enc, &mut plain, flow).await;
            if result.is_err() {
                reset(&enc);
            }
            result
        }
    };
    if result.is_err() {
        reset(&plain);
    }
    result
}

/// Frames both ways between a v1 side and the plaintext side.
async fn relay_v1(v1: V1Stream, plain: &mut TcpStream, flow: Flow<'_>) -> Result<(), TunnelError> {
    let V1Stream {
        mut stream,
        sealer,
        opener,
        decoder,
        first,
        announce,
    } = v1;
    let (enc_read, enc_write) = stream.split();
    let (plain_read, plain_write) = plain.split();
    let receiving = Receiving {
        decoder,
        opener,
        first,
    };
    let result = relay::drive(
        relay::pump_open(
            enc_read,
            plain_write,
            receiving,
            flow.size,
            flow.to_plain,
            flow.into_plain,
        ),
        relay::pump_seal(
            plain_read,
            enc_write,
            sealer,
            flow.size,
            flow.to_encrypted,
            flow.into_encrypted,
            announce,
        ),
        flow.idle,
        flow.moved(),
        flow.cut,
    )
    .await;
    if result.is_err() {
        reset(&stream);
    }
    result
}
