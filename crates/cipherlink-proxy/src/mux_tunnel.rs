//! The proxy's tunnels as mux streams (`mux = true`, docs/mux.md).
//!
//! Client: every tunnel opens a stream on the one connection the service
//! keeps to its server; the connection (a link, or a TLS tunnel over TCP)
//! is made by the first tunnel that needs it, and again by the first
//! tunnel after it was lost, so a lost connection costs the tunnels it
//! carried, never the next one. Tunnels that arrive while a connection is
//! being made wait for that one attempt rather than each dialling. A
//! connection that can take no new stream (its stream ids ran out) is set
//! aside rather than dropped: its tunnels go on, and it closes cleanly
//! once the last one ends; at most [`MAX_SPENT`] linger so. A connection
//! that has been silent for a while is probed before a tunnel is trusted
//! to it, and replaced if the peer does not answer.
//!
//! Server: each accepted connection authenticates first (the link listener
//! or the TLS handshake), then its streams are tunnels: each takes one of
//! the service's `max_connections` permits or is refused with a RESET, and
//! runs as any tunnel does (connect the service, relay, log).

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::Role;
use crate::conn::{self, Encrypted, TLS_READ_AHEAD};
use crate::error::TunnelError;
use crate::mux::{Limits, MuxConn, MuxError, MuxStream, Reason, Side};
use crate::read_ahead::ReadAhead;
use crate::service::{Accepted, ActiveGuard, Engine, Shared};

/// Most streams on one connection (fewer when max_connections is lower).
const MAX_STREAMS: usize = 1024;

/// Spent connections that may linger for the streams they still carry;
/// past it the oldest is closed and its streams fail. Each holds at most
/// its streams' windows, which `max_connections` already bounds.
pub(crate) const MAX_SPENT: usize = 4;

/// A multiplexing service's settings; a client's shared connection.
#[derive(Debug)]
pub(crate) struct MuxSettings {
    limits: Limits,
    max_connections: usize,
    pool: Option<Pool>,
}

impl MuxSettings {
    pub(crate) fn new(role: Role, max_connections: usize) -> MuxSettings {
        // A server refuses past max_connections with its semaphore (logged,
        // counted); the session's own cap only bounds one connection.
        let max_streams = match role {
            Role::Client => max_connections.clamp(1, MAX_STREAMS),
            Role::Server => MAX_STREAMS,
        };
        let limits = Limits {
            max_streams,
            ..Limits::default()
        };
        MuxSettings {
            limits,
            max_connections,
            pool: (role == Role::Client).then(Pool::default),
        }
    }

    /// Client: a new stream to the server, on the current connection or a
    /// new one.
    pub(crate) async fn open(&self, shared: &Shared) -> Result<MuxStream, TunnelError> {
        let Some(pool) = &self.pool else {
            return Err(conn::not_this_transport("target"));
        };
        let limits = self.limits;
        pool.open(&shared.connect, shared.connect_timeout, || {
            connect(shared, limits)
        })
        .await
    }
}

fn lost(target: &str, error: MuxError) -> TunnelError {
    TunnelError::Connect {
        target: target.to_string(),
        error: std::io::Error::new(std::io::ErrorKind::ConnectionAborted, error.to_string()),
    }
}

enum Retry {
    Lost(MuxError),
    Failed(TunnelError),
}

/// The client's connections: the one new streams go to, and spent ones
/// that still carry streams.
#[derive(Debug, Default)]
struct Conns {
    current: Option<Arc<MuxConn>>,
    /// Oldest first; each closes itself once its last stream ends.
    spent: VecDeque<Arc<MuxConn>>,
}

impl Conns {
    /// The current connection takes no new stream: it lingers while it
    /// carries streams (at most [`MAX_SPENT`] do), or goes.
    fn set_aside(&mut self, target: &str) {
        self.spent.retain(|conn| !conn.is_finished());
        let Some(old) = self.current.take() else {
            return;
        };
        if old.failure().is_some() {
            return;
        }
        // With no stream left it closes at once (close_notify or the link's
        // close), and is forgotten once its driver is done.
        old.retire();
        self.spent.push_back(old);
        while self.spent.len() > MAX_SPENT {
            let Some(oldest) = self.spent.pop_front() else {
                break;
            };
            tracing::warn!(
                "mux: {MAX_SPENT} spent connections to {target} still carry streams; closing the oldest, failing its {} stream(s)",
                oldest.streams()
            );
        }
    }
}

/// The client's connection, made on demand.
#[derive(Debug, Default)]
struct Pool {
    conns: tokio::sync::Mutex<Conns>,
    /// Attempts to connect that failed, so tunnels that waited for a
    /// failing attempt fail with it instead of each trying in turn.
    failures: AtomicU64,
    last_failure: std::sync::Mutex<Option<String>>,
}

impl Pool {
    /// A new stream to `target`, on the current connection or one `dial`
    /// makes.
    async fn open<D, F>(
        &self,
        target: &str,
        timeout: Duration,
        dial: D,
    ) -> Result<MuxStream, TunnelError>
    where
        D: Fn() -> F,
        F: Future<Output = Result<MuxConn, TunnelError>>,
    {
        // A connection lost between our check and the open, or silent when
        // probed: one retry on a fresh one, so the loss is not this
        // tunnel's.
        match self.try_open(target, timeout, &dial).await {
            Err(Retry::Lost(_)) => match self.try_open(target, timeout, &dial).await {
                Ok(stream) => Ok(stream),
                Err(Retry::Lost(error)) => Err(lost(target, error)),
                Err(Retry::Failed(error)) => Err(error),
            },
            Ok(stream) => Ok(stream),
            Err(Retry::Failed(error)) => Err(error),
        }
    }

    async fn try_open<D, F>(
        &self,
        target: &str,
        timeout: Duration,
        dial: &D,
    ) -> Result<MuxStream, Retry>
    where
        D: Fn() -> F,
        F: Future<Output = Result<MuxConn, TunnelError>>,
    {
        let failures = self.failures.load(Ordering::Acquire);
        let conn = {
            let mut conns = self.conns.lock().await;
            match conns.current.as_ref() {
                Some(conn) if !conn.is_spent() => conn.clone(),
                _ => {
                    if self.failures.load(Ordering::Acquire) != failures {
                        let why = self
                            .last_failure
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .clone()
                            .unwrap_or_default();
                        return Err(Retry::Failed(TunnelError::Connect {
                            target: target.to_string(),
                            error: std::io::Error::other(format!(
                                "the shared mux connection failed just now: {why}"
                            )),
                        }));
                    }
                    conns.set_aside(target);
                    match dial().await {
                        Ok(conn) => {
                            let conn = Arc::new(conn);
                            conns.current = Some(conn.clone());
                            conn
                        }
                        Err(error) => {
                            *self.last_failure.lock().unwrap_or_else(|p| p.into_inner()) =
                                Some(error.to_string());
                            self.failures.fetch_add(1, Ordering::AcqRel);
                            return Err(Retry::Failed(error));
                        }
                    }
                }
            }
        };
        if conn.needs_probe() {
            if let Err(error) = conn.probe().await {
                tracing::info!(
                    "mux: the connection to {target} is gone ({error}); a new one takes the tunnel"
                );
                return Err(Retry::Lost(error));
            }
        }
        conn.open(timeout).await.map_err(|error| match error {
            // The connection is alive but full: a new one would not
            // help, and waiting twice would break the documented limit.
            MuxError::NoSlot(_) => Retry::Failed(lost(target, error)),
            error => Retry::Lost(error),
        })
    }
}

/// A link pings an idle connection itself (docs/link-protocol.md) and
/// fails it when the peer is gone: the mux's own periodic pings would
/// double that. Its probe before an open still runs.
fn over_link(limits: Limits) -> Limits {
    let mut limits = limits;
    limits.keepalive.periodic = false;
    limits
}

/// Makes and authenticates the client's connection.
async fn connect(shared: &Shared, limits: Limits) -> Result<MuxConn, TunnelError> {
    let conn = match conn::connect_encrypted(shared).await? {
        Encrypted::Link(link) => MuxConn::start(link, Side::Client, over_link(limits)),
        Encrypted::Tls(tunnel) => MuxConn::start(tunnel, Side::Client, limits),
        Encrypted::V1(_) | Encrypted::Plain(_) | Encrypted::Mux(_) | Encrypted::Port(_) => {
            return Err(conn::not_this_transport("target"))
        }
    };
    tracing::info!(
        service = %shared.name,
        "mux: connected to {}; new tunnels are streams on it",
        shared.connect
    );
    Ok(conn)
}

/// What a server's connection task needs from its service.
pub(crate) struct Serving {
    /// The connection's own permit.
    pub(crate) permit: OwnedSemaphorePermit,
    /// One per stream: the service's max_connections.
    pub(crate) streams: Arc<Semaphore>,
    pub(crate) ids: Arc<AtomicU64>,
    pub(crate) cut: CancellationToken,
    pub(crate) stop: watch::Receiver<bool>,
}

/// Server: authenticates one connection, then serves its streams until it
/// ends (or the service stops and its streams are done).
pub(crate) async fn serve_connection(shared: Arc<Shared>, accepted: Accepted, serving: Serving) {
    let Some(limits) = shared.mux.as_ref().map(|m| m.limits) else {
        return;
    };
    let (conn, peer): (MuxConn, Arc<str>) = match accepted {
        Accepted::Link(link) => {
            let peer = format!("link:{}", link.peer()).into();
            (MuxConn::start(link, Side::Server, over_link(limits)), peer)
        }
        // Never: mux is refused for port when the service is checked.
        Accepted::Port(port) => {
            port.session.reset();
            return;
        }
        Accepted::Tcp(stream, addr) => {
            let Engine::Tls(context) = &shared.engine else {
                conn::reset(&stream);
                return;
            };
            let _ = stream.set_nodelay(true);
            let handshake = tokio::time::timeout(
                shared.connect_timeout,
                context.accept(ReadAhead::new(stream, TLS_READ_AHEAD), addr.to_string()),
            );
            match handshake.await {
                Ok(Ok(tunnel)) => (
                    MuxConn::start(tunnel, Side::Server, limits),
                    addr.to_string().into(),
                ),
                Ok(Err(error)) => {
                    shared.stats.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(service = %shared.name, peer = %addr, "mux: TLS handshake: {error}");
                    return;
                }
                Err(_) => {
                    shared.stats.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(service = %shared.name, peer = %addr, "mux: no TLS handshake within {:?}", shared.connect_timeout);
                    return;
                }
            }
        }
        Accepted::Mux(..) => return,
    };
    tracing::info!(service = %shared.name, %peer, "mux: connection authenticated");
    let ended = serve_streams(&shared, &conn, &peer, serving).await;
    match conn.failure() {
        Some(why) => tracing::info!(service = %shared.name, %peer, "mux: connection ended: {why}"),
        None if ended == Ended::Idle => {
            conn.close().await;
            tracing::info!(service = %shared.name, %peer, "mux: connection closed: no stream for the idle timeout");
        }
        None => {
            // Stopping with every stream done: their last frames go out
            // before the close.
            conn.close().await;
            tracing::info!(service = %shared.name, %peer, "mux: connection closed at shutdown");
        }
    }
}

/// Why a server stopped taking streams on a connection.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    /// The connection ended, or the service stopped or cut it.
    Done,
    /// It carried no stream for the idle timeout: an idle connection must
    /// not hold one of `max_connections` forever.
    Idle,
}

async fn serve_streams(
    shared: &Arc<Shared>,
    conn: &MuxConn,
    peer: &Arc<str>,
    serving: Serving,
) -> Ended {
    let Serving {
        permit: _permit,
        streams: permits,
        ids,
        cut,
        mut stop,
    } = serving;
    let mut streams = JoinSet::new();
    let mut stopping = false;
    let idle_limit = shared.idle_timeout;
    // Without a limit the branch below is disabled; tokio clamps the
    // deadline of Duration::MAX to its far future.
    let idle = tokio::time::sleep(idle_limit.unwrap_or(std::time::Duration::MAX));
    tokio::pin!(idle);
    let mut ended = Ended::Done;
    loop {
        if stopping && streams.is_empty() {
            break;
        }
        tokio::select! {
            () = &mut idle, if streams.is_empty() && idle_limit.is_some() => {
                ended = Ended::Idle;
                break;
            }
            accepted = conn.accept() => {
                let Some(stream) = accepted else { break };
                let permit = if stopping { None } else { permits.clone().try_acquire_owned().ok() };
                let Some(permit) = permit else {
                    refuse(shared, peer, &stream, stopping);
                    continue;
                };
                shared.stats.accepted.fetch_add(1, Ordering::Relaxed);
                shared.stats.active.fetch_add(1, Ordering::AcqRel);
                let shared = shared.clone();
                let id = ids.fetch_add(1, Ordering::Relaxed);
                let cut = cut.clone();
                let peer = peer.clone();
                streams.spawn(async move {
                    let _permit = permit;
                    let _active = ActiveGuard(&shared.stats);
                    conn::handle(&shared, Accepted::Mux(stream, peer), id, cut).await;
                });
            }
            Some(_) = streams.join_next(), if !streams.is_empty() => {
                if let Some(limit) = idle_limit {
                    idle.as_mut().reset(tokio::time::Instant::now() + limit);
                }
            }
            _ = stop.wait_for(|stop| *stop), if !stopping => stopping = true,
            () = cut.cancelled() => break,
        }
    }
    // Streams of a lost connection fail on their own; cut ones reset.
    while streams.join_next().await.is_some() {}
    ended
}

fn refuse(shared: &Shared, peer: &str, stream: &MuxStream, stopping: bool) {
    stream.reset(Reason::Refused);
    shared.stats.failed.fetch_add(1, Ordering::Relaxed);
    let why = if stopping {
        "the service is shutting down".to_string()
    } else {
        format!(
            "max_connections ({}) streams are open",
            shared.mux.as_ref().map_or(0, |m| m.max_connections)
        )
    };
    tracing::warn!(service = %shared.name, %peer, stream = stream.id(), "mux: refused a stream: {why}");
}

#[cfg(test)]
#[path = "mux_tunnel_tests.rs"]
mod tests;
