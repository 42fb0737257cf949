//! The cases over one transport between the two ends: handshakes/s, one
//! session's datagrams/s, round trips, and memory per idle session. The
//! same code measures plain UDP on the veth and plain UDP through the
//! WireGuard tunnel: only the addresses differ.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::side::Side;
use super::transport::{connect, listen, Counter, Fixture, Transport};
use crate::LabError;

/// Longest one handshake (connect, one round trip) may take before it
/// counts as failed.
pub(super) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a ping may wait for its answer before it counts as lost.
const PING_TIMEOUT: Duration = Duration::from_secs(1);

/// The handshake case.
#[derive(Debug, Clone, Serialize)]
pub struct HandshakeResult {
    /// Handshakes in flight at once.
    pub concurrency: usize,
    /// Completed: a new session and its first round trip.
    pub handshakes: u64,
    /// Failed or timed out.
    pub errors: u64,
    /// The first failure.
    pub first_error: Option<String>,
    /// Wall time.
    pub seconds: f64,
    /// Completed per second.
    pub per_sec: f64,
    /// Median time from starting a session to its first answer.
    pub p50_us: u64,
    /// 99th percentile of it.
    pub p99_us: u64,
    /// CPU time per completed handshake, both ends (see `cpu_counted`).
    pub cpu_us_per_handshake: Option<f64>,
    /// Whose CPU time that is.
    pub cpu_counted: String,
}

/// The throughput case: one session, the sender as fast as it can (or at
/// `rate`), the receiver counting.
#[derive(Debug, Clone, Serialize)]
pub struct ThroughputResult {
    /// Payload bytes per datagram.
    pub payload: usize,
    /// How long the sender sent.
    pub seconds: f64,
    /// Datagrams the sender handed to the transport.
    pub sent: u64,
    /// Datagrams the receiver got.
    pub delivered: u64,
    /// `sent - delivered`.
    pub lost: u64,
    /// Lost as a percentage of sent.
    pub loss_percent: f64,
    /// Delivered datagrams per second of sending.
    pub datagrams_per_sec: f64,
    /// Delivered payload, MB (10^6 bytes) per second of sending.
    pub mb_per_sec: f64,
    /// Sends the transport refused (the first one's reason in `first_error`).
    pub send_errors: u64,
    /// The first refused send.
    pub first_error: Option<String>,
}

/// The round-trip case: one session, one datagram in flight.
#[derive(Debug, Clone, Serialize)]
pub struct LatencyResult {
    /// Payload bytes per ping.
    pub payload: usize,
    /// Pings sent.
    pub pings: u64,
    /// Answered within a second.
    pub answered: u64,
    /// Median round trip, microseconds.
    pub rtt_p50_us: f64,
    /// 99th percentile round trip.
    pub rtt_p99_us: f64,
    /// This transport's median round trip minus plain UDP's on the same
    /// path, halved: what it adds to one datagram.
    pub added_p50_us: Option<f64>,
    /// The same at the 99th percentile.
    pub added_p99_us: Option<f64>,
}

/// The idle-memory case.
#[derive(Debug, Clone, Serialize)]
pub struct IdleResult {
    /// Sessions asked for.
    pub requested: usize,
    /// Sessions held when measured.
    pub sessions: usize,
    /// Resident memory before opening them, bytes.
    pub rss_before: u64,
    /// With all of them open.
    pub rss_after: u64,
    /// Growth per session.
    pub bytes_per_session: f64,
    /// Whose memory: both ends (this process), or the server end only.
    pub ends: String,
}

/// Where the server end listens and where clients reach it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Path {
    /// The server end binds here (port 0).
    pub(super) listen: IpAddr,
    /// Clients send to this address (at the port bound).
    pub(super) reach: IpAddr,
}

async fn bound(
    t: Transport,
    fx: &Arc<Fixture>,
    server: &Side,
    path: Path,
    cap: usize,
) -> Result<(super::transport::Listener, SocketAddr), LabError> {
    let fx2 = fx.clone();
    let listen_at = SocketAddr::new(path.listen, 0);
    let listener = server
        .run(async move { listen(t, &fx2, listen_at, cap).await })
        .await??;
    let port = listener.local_addr()?.port();
    Ok((listener, SocketAddr::new(path.reach, port)))
}

pub(super) fn percentile(sorted: &[u64], q: f64) -> u64 {
    sorted
        .get(((sorted.len() as f64 - 1.0) * q).round() as usize)
        .copied()
        .unwrap_or(0)
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// One worker's handshakes.
#[derive(Default)]
pub(super) struct Tally {
    pub(super) completed: u64,
    pub(super) latencies_us: Vec<u64>,
    pub(super) errors: u64,
    pub(super) first_error: Option<String>,
}

impl Tally {
    pub(super) fn record(&mut self, outcome: Result<Duration, String>) {
        match outcome {
            Ok(took) => {
                self.completed += 1;
                self.latencies_us.push(micros(took));
            }
            Err(e) => {
                self.errors += 1;
                self.first_error.get_or_insert(e);
            }
        }
    }

    pub(super) fn merge(&mut self, other: Tally) {
        self.completed += other.completed;
        self.latencies_us.extend(other.latencies_us);
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    /// The result, given the wall time and the CPU time used.
    pub(super) fn result(
        mut self,
        concurrency: usize,
        seconds: f64,
        cpu: Option<Duration>,
        cpu_counted: &str,
    ) -> HandshakeResult {
        self.latencies_us.sort_unstable();
        let ok = self.completed;
        HandshakeResult {
            concurrency,
            handshakes: ok,
            errors: self.errors,
            first_error: self.first_error,
            seconds,
            per_sec: ok as f64 / seconds.max(1e-9),
            p50_us: percentile(&self.latencies_us, 0.5),
            p99_us: percentile(&self.latencies_us, 0.99),
            cpu_us_per_handshake: cpu
                .filter(|_| ok > 0)
                .map(|c| c.as_secs_f64() * 1e6 / ok as f64),
            cpu_counted: cpu_counted.to_string(),
        }
    }
}

/// A new session, one round trip through it, its close.
async fn one_handshake(t: Transport, fx: &Fixture, addr: SocketAddr) -> Result<Duration, String> {
    let start = Instant::now();
    let exchange = async {
        let mut s = connect(t, fx, addr).await?;
        s.writer.send(b"PING").await?;
        let mut buf = Vec::new();
        if !s.reader.recv(&mut buf).await? || buf != b"PING" {
            return Err("the answer was not the ping".to_string());
        }
        let took = start.elapsed();
        s.writer.close().await;
        Ok(took)
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("no answer within {HANDSHAKE_TIMEOUT:?}"))?
}

/// Handshakes for `duration`, `concurrency` at once.
pub(super) async fn handshakes(
    t: Transport,
    fx: &Arc<Fixture>,
    (client, server): (&Side, &Side),
    path: Path,
    duration: Duration,
    concurrency: usize,
) -> Result<HandshakeResult, LabError> {
    let (listener, addr) = bound(t, fx, server, path, concurrency * 4 + 64).await?;
    let echo = server.spawn(listener.echo())?;
    let cpu_before = crate::cpu::process_cpu_time();
    let start = Instant::now();
    let deadline = start + duration;
    let mut workers = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let fx = fx.clone();
        workers.push(client.spawn(async move {
            let mut tally = Tally::default();
            while Instant::now() < deadline {
                tally.record(one_handshake(t, &fx, addr).await);
            }
            tally
        })?);
    }
    let mut total = Tally::default();
    for w in workers {
        total.merge(w.await.map_err(|source| LabError::Task {
            what: "a handshake worker",
            source,
        })?);
    }
    let seconds = start.elapsed().as_secs_f64();
    let cpu = match (cpu_before, crate::cpu::process_cpu_time()) {
        (Some(b), Some(a)) => Some(a.saturating_sub(b)),
        _ => None,
    };
    echo.abort();
    Ok(total.result(concurrency, seconds, cpu, "this process: both ends"))
}

/// The throughput case's sizes.
#[derive(Debug, Clone, Copy)]
pub(super) struct Blast {
    pub(super) payload: usize,
    pub(super) duration: Duration,
    /// At most this many datagrams.
    pub(super) max_datagrams: u64,
    /// Datagrams per second (0: as fast as the transport takes them).
    pub(super) rate: u64,
}

/// One session: the client sends, the server counts.
pub(super) async fn throughput(
    t: Transport,
    fx: &Arc<Fixture>,
    (client, server): (&Side, &Side),
    path: Path,
    blast: Blast,
) -> Result<ThroughputResult, LabError> {
    let (listener, addr) = bound(t, fx, server, path, 4).await?;
    let counter = Arc::new(Counter::default());
    let sink = server.spawn(listener.sink(counter.clone()))?;
    let fx2 = fx.clone();
    let sender = client.run(async move {
        let mut s = tokio::time::timeout(HANDSHAKE_TIMEOUT, connect(t, &fx2, addr))
            .await
            .map_err(|_| format!("no session within {HANDSHAKE_TIMEOUT:?}"))??;
        let payload = vec![0x5au8; blast.payload];
        let (mut sent, mut errors, mut first_error) = (0u64, 0u64, None);
        let start = Instant::now();
        while sent + errors < blast.max_datagrams && start.elapsed() < blast.duration {
            if blast.rate > 0 && sent % 64 == 0 {
                let due = start + Duration::from_secs_f64(sent as f64 / blast.rate as f64);
                tokio::time::sleep_until(due.into()).await;
            }
            match s.writer.send(&payload).await {
                Ok(()) => sent += 1,
                Err(e) => {
                    errors += 1;
                    first_error.get_or_insert(e);
                }
            }
        }
        Ok::<_, String>((s, sent, errors, first_error, start.elapsed()))
    });
    let (session, sent, send_errors, first_error, took) = sender
        .await?
        .map_err(|e| LabError::Setup(format!("{t} throughput: {e}")))?;
    // What is still in flight lands within moments; then the count stands.
    let mut last = counter.read().0;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = counter.read().0;
        if now == last {
            break;
        }
        last = now;
    }
    let (delivered, bytes) = counter.read();
    sink.abort();
    drop(session);
    let seconds = took.as_secs_f64().max(1e-9);
    let lost = sent.saturating_sub(delivered);
    Ok(ThroughputResult {
        payload: blast.payload,
        seconds,
        sent,
        delivered,
        lost,
        loss_percent: 100.0 * lost as f64 / sent.max(1) as f64,
        datagrams_per_sec: delivered as f64 / seconds,
        mb_per_sec: bytes as f64 / 1e6 / seconds,
        send_errors,
        first_error,
    })
}

/// `pings` round trips through one session, one at a time.
pub(super) async fn latency(
    t: Transport,
    fx: &Arc<Fixture>,
    (client, server): (&Side, &Side),
    path: Path,
    payload: usize,
    pings: u64,
) -> Result<LatencyResult, LabError> {
    let (listener, addr) = bound(t, fx, server, path, 4).await?;
    let echo = server.spawn(listener.echo())?;
    let fx2 = fx.clone();
    let rtts = client
        .run(async move {
            let mut s = tokio::time::timeout(HANDSHAKE_TIMEOUT, connect(t, &fx2, addr))
                .await
                .map_err(|_| format!("no session within {HANDSHAKE_TIMEOUT:?}"))??;
            let mut ping = vec![0u8; payload.max(8)];
            let mut buf = Vec::new();
            let mut rtts = Vec::with_capacity(usize::try_from(pings).unwrap_or(0));
            for seq in 0..pings {
                ping[..8].copy_from_slice(&seq.to_be_bytes());
                let start = Instant::now();
                s.writer.send(&ping).await?;
                let answered = tokio::time::timeout(PING_TIMEOUT, async {
                    // An answer to an earlier, timed-out ping is skipped.
                    while s.reader.recv(&mut buf).await? {
                        if buf.get(..8) == Some(&ping[..8]) {
                            return Ok::<bool, String>(true);
                        }
                    }
                    Ok(false)
                })
                .await;
                if let Ok(Ok(true)) = answered {
                    rtts.push(micros(start.elapsed()));
                }
            }
            s.writer.close().await;
            Ok::<_, String>(rtts)
        })
        .await?
        .map_err(|e| LabError::Setup(format!("{t} round trips: {e}")))?;
    echo.abort();
    let mut rtts = rtts;
    rtts.sort_unstable();
    Ok(LatencyResult {
        payload: payload.max(8),
        pings,
        answered: rtts.len() as u64,
        rtt_p50_us: percentile(&rtts, 0.5) as f64,
        rtt_p99_us: percentile(&rtts, 0.99) as f64,
        added_p50_us: None,
        added_p99_us: None,
    })
}

/// Opens `sessions` sessions (64 at a time), holds both ends, and measures
/// how much this process grew.
pub(super) async fn idle(
    t: Transport,
    fx: &Arc<Fixture>,
    (client, server): (&Side, &Side),
    path: Path,
    sessions: usize,
) -> Result<IdleResult, LabError> {
    let me = [std::process::id()];
    let (listener, addr) = bound(t, fx, server, path, sessions + 64).await?;
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let holder = server.spawn(listener.hold(done_rx))?;
    let rss_before = crate::procfs::settled_rss(&me).await?;
    if t == Transport::Link {
        let r =
            super::idle_server::link_server_end(fx, client, addr, sessions, rss_before, me).await;
        let _ = done_tx.send(());
        let _ = holder.await;
        return r;
    }
    let fx2 = fx.clone();
    let opened = client
        .run(async move {
            let gate = Arc::new(tokio::sync::Semaphore::new(64));
            let mut opens = Vec::with_capacity(sessions);
            for _ in 0..sessions {
                let Ok(permit) = gate.clone().acquire_owned().await else {
                    break;
                };
                let fx = fx2.clone();
                opens.push(tokio::spawn(async move {
                    let opened = tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
                        let mut s = connect(t, &fx, addr).await?;
                        if t == Transport::Plain {
                            // Plain UDP has no handshake: its session is a
                            // connected socket that has had one answer.
                            s.writer.send(b"up").await?;
                            s.reader.recv(&mut Vec::new()).await?;
                        }
                        Ok::<_, String>(s)
                    })
                    .await;
                    drop(permit);
                    opened
                }));
            }
            let mut held = Vec::with_capacity(sessions);
            let mut first_error = None;
            for open in opens {
                match open.await {
                    Ok(Ok(Ok(s))) => held.push(s),
                    Ok(Ok(Err(e))) => {
                        first_error.get_or_insert(e);
                    }
                    Ok(Err(_)) => {
                        first_error
                            .get_or_insert(format!("no session within {HANDSHAKE_TIMEOUT:?}"));
                    }
                    Err(e) => {
                        first_error.get_or_insert(e.to_string());
                    }
                }
            }
            (held, first_error)
        })
        .await?;
    let (held, first_error) = opened;
    if held.len() < sessions {
        let _ = done_tx.send(());
        return Err(LabError::Setup(format!(
            "{t} idle case: {} of {sessions} sessions opened: {}",
            held.len(),
            first_error.unwrap_or_default()
        )));
    }
    let rss_after = crate::procfs::settled_rss(&me).await?;
    let _ = done_tx.send(());
    let _ = holder.await;
    drop(held);
    Ok(IdleResult {
        requested: sessions,
        sessions,
        rss_before,
        rss_after,
        bytes_per_session: rss_after.saturating_sub(rss_before) as f64 / sessions.max(1) as f64,
        ends: "both ends (this process)".into(),
    })
}
