//! WireGuard's handshake and idle cases, which cannot be the generic ones:
//! a WireGuard session is not opened by the application, and one client
//! interface holds one session with a server.
//!
//! Handshakes: each of `concurrency` interface pairs, over and over, makes
//! both ends forget their peer (remove and re-add it through the control
//! socket), then sends one datagram through the tunnel and times it until
//! the answer comes back. That answer needs a fresh Noise IK handshake
//! (initiation and response) and the datagram each way. CPU is both
//! wireguard-go processes' (from /proc) plus this process's (its sockets
//! and control-socket writes), so that the plain row's own socket work is
//! counted in every row alike.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;

use super::cases::{HandshakeResult, IdleResult, Tally, HANDSHAKE_TIMEOUT};
use super::side::Side;
use super::wireguard::{idle_peers, uapi_set, PairCtl, WgLab};
use crate::LabError;

/// How the handshake rate is measured, for the report.
pub const HANDSHAKE_METHOD: &str = "wireguard-go: per interface pair, both ends remove and re-add their peer through the control socket, then one datagram is timed until its answer (a fresh Noise IK handshake plus one datagram each way); CPU = both wireguard-go processes (/proc) + this process";

/// How long one datagram waits for its answer before it is sent again.
const ANSWER_WAIT: Duration = Duration::from_millis(500);

async fn one(ctl: &PairCtl, sock: &UdpSocket, seq: &mut u64) -> Result<Duration, String> {
    let start = Instant::now();
    ctl.forget_sessions().await.map_err(|e| e.to_string())?;
    let mut buf = [0u8; 64];
    while start.elapsed() < HANDSHAKE_TIMEOUT {
        *seq += 1;
        let ping = seq.to_be_bytes();
        sock.send(&ping).await.map_err(|e| e.to_string())?;
        let until = tokio::time::Instant::now() + ANSWER_WAIT;
        while let Ok(got) = tokio::time::timeout_at(until, sock.recv(&mut buf)).await {
            let n = got.map_err(|e| e.to_string())?;
            if buf[..n] == ping {
                return Ok(start.elapsed());
            }
        }
    }
    Err(format!(
        "no answer through the tunnel within {HANDSHAKE_TIMEOUT:?}"
    ))
}

/// Forced handshakes on every pair of `lab` for `duration`.
pub(super) async fn handshakes(
    lab: &WgLab,
    (client, server): (&Side, &Side),
    duration: Duration,
) -> Result<HandshakeResult, LabError> {
    let echo_port = 7;
    let echo = server.spawn(async move {
        let Ok(s) = UdpSocket::bind(("0.0.0.0", echo_port)).await else {
            return;
        };
        let mut buf = vec![0u8; 2048];
        while let Ok((n, from)) = s.recv_from(&mut buf).await {
            let _ = s.send_to(&buf[..n], from).await;
        }
    })?;
    let pids = lab.pids();
    let cpu_before = (
        crate::procfs::cpu_time(&pids)?,
        crate::cpu::process_cpu_time(),
    );
    let start = Instant::now();
    let deadline = start + duration;
    let mut workers = Vec::new();
    for pair in &lab.pairs {
        let ctl = pair.ctl.clone();
        let target = SocketAddr::new(ctl.server_ip().into(), echo_port);
        workers.push(client.spawn(async move {
            let mut tally = Tally::default();
            let sock = match UdpSocket::bind(("0.0.0.0", 0)).await {
                Ok(s) => s,
                Err(e) => {
                    tally.record(Err(e.to_string()));
                    return tally;
                }
            };
            if let Err(e) = sock.connect(target).await {
                tally.record(Err(e.to_string()));
                return tally;
            }
            let mut seq = 0u64;
            while Instant::now() < deadline {
                tally.record(one(&ctl, &sock, &mut seq).await);
            }
            tally
        })?);
    }
    let mut total = Tally::default();
    for w in workers {
        total.merge(w.await.map_err(|source| LabError::Task {
            what: "a WireGuard handshake worker",
            source,
        })?);
    }
    let seconds = start.elapsed().as_secs_f64();
    let wg_cpu = crate::procfs::cpu_time(&pids)?.saturating_sub(cpu_before.0);
    let own = match (cpu_before.1, crate::cpu::process_cpu_time()) {
        (Some(b), Some(a)) => a.saturating_sub(b),
        _ => Duration::ZERO,
    };
    echo.abort();
    Ok(total.result(
        lab.pairs.len(),
        seconds,
        Some(wg_cpu + own),
        "both wireguard-go processes of each pair (/proc) + this process",
    ))
}

/// Adds `peers` made-up peers (each its own key and allowed IP) to the
/// first server interface and measures how much its process grew.
pub(super) async fn idle(lab: &WgLab, peers: usize) -> Result<IdleResult, LabError> {
    let pair = lab
        .pairs
        .first()
        .ok_or_else(|| LabError::Setup("no WireGuard pair".into()))?;
    let pid = [pair.server_pid()];
    let rss_before = crate::procfs::settled_rss(&pid).await?;
    let total = u32::try_from(peers).unwrap_or(u32::MAX);
    let mut added = 0u32;
    while added < total {
        let chunk = (total - added).min(500);
        uapi_set(pair.server_name(), &idle_peers(added, chunk)).await?;
        added += chunk;
    }
    let rss_after = crate::procfs::settled_rss(&pid).await?;
    Ok(IdleResult {
        requested: peers,
        sessions: added as usize,
        rss_before,
        rss_after,
        bytes_per_session: rss_after.saturating_sub(rss_before) as f64 / f64::from(added.max(1)),
        ends: "server end only: configured peers of one wireguard-go interface (no handshake; a client interface holds one session)".into(),
    })
}

/// What forcing a handshake costs by itself: both ends removing and
/// re-adding their peer (wireguard-go then stops and starts the peer's
/// goroutines and computes its static-static DH again), with no datagram
/// and so no handshake. Part of every forced handshake's CPU and time.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ForgetCost {
    /// Remove-and-re-add rounds (both ends) done.
    pub rounds: u64,
    /// Rounds per second, all pairs at once.
    pub per_sec: f64,
    /// CPU per round: both wireguard-go processes + this process.
    pub cpu_us: f64,
}

/// Forgets and re-adds every pair's peers, over and over, for `duration`.
pub(super) async fn forget_cost(
    lab: &WgLab,
    client: &Side,
    duration: Duration,
) -> Result<ForgetCost, LabError> {
    let pids = lab.pids();
    let before = (
        crate::procfs::cpu_time(&pids)?,
        crate::cpu::process_cpu_time(),
    );
    let start = Instant::now();
    let deadline = start + duration;
    let mut workers = Vec::new();
    for pair in &lab.pairs {
        let ctl = pair.ctl.clone();
        workers.push(client.spawn(async move {
            let mut rounds = 0u64;
            while Instant::now() < deadline {
                if ctl.forget_sessions().await.is_err() {
                    break;
                }
                rounds += 1;
            }
            rounds
        })?);
    }
    let mut rounds = 0;
    for w in workers {
        rounds += w.await.map_err(|source| LabError::Task {
            what: "a WireGuard reconfiguration worker",
            source,
        })?;
    }
    let seconds = start.elapsed().as_secs_f64();
    let wg_cpu = crate::procfs::cpu_time(&pids)?.saturating_sub(before.0);
    let own = match (before.1, crate::cpu::process_cpu_time()) {
        (Some(b), Some(a)) => a.saturating_sub(b),
        _ => Duration::ZERO,
    };
    Ok(ForgetCost {
        rounds,
        per_sec: rounds as f64 / seconds.max(1e-9),
        cpu_us: (wg_cpu + own).as_secs_f64() * 1e6 / rounds.max(1) as f64,
    })
}
