//! The checked message sequence of a scenario: the client sends numbered
//! messages whose bytes are a function of their number, the server checks
//! each (order, exactly once, content) and echoes it, the client checks the
//! echo. Both ends log times; every wait is bounded by the caller.
//!
//! Wire format of a message: `seq: u32 BE ‖ len: u32 BE ‖ len bytes`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::time::timeout;

use crate::scenarios::message_size;
use crate::subject::{Session, SubjectError};

const HEADER: usize = 8;
/// Messages in flight at once: enough to fill a few segments, few enough
/// that each echo's time is a latency, not a queue.
pub const WINDOW: usize = 4;
/// Largest read asked of a session.
const READ: usize = 16 * 1024;

/// Message `seq` as sent.
pub fn message(seq: u32) -> Vec<u8> {
    let len = message_size(seq);
    let mut m = Vec::with_capacity(HEADER + len);
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(&(len as u32).to_be_bytes());
    m.extend((0..len).map(|j| (seq as usize * 131 + j * 7 + 1) as u8));
    m
}

/// One message as the client saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageRecord {
    /// Its number.
    pub seq: u32,
    /// Bytes on the wire (header included).
    pub size: usize,
    /// Seconds from the scenario's start until the client sent it.
    pub sent: f64,
    /// When the server had all of it, checked.
    pub server_received: Option<f64>,
    /// When its echo was back at the client, checked.
    pub echoed: Option<f64>,
}

/// The client's account.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClientLog {
    /// Seconds until the session was set up.
    pub connected: Option<f64>,
    /// Every message sent.
    pub messages: Vec<MessageRecord>,
    /// Echoes that differed from what was sent (must stay 0).
    pub wrong: u32,
    /// Bytes that came back after the last expected echo (must stay 0).
    pub extra_bytes: usize,
    /// Why the session ended early, if it did.
    pub error: Option<String>,
    /// Seconds at which it ended early.
    pub failed_at: Option<f64>,
    /// Seconds at which the peer went silent (stale scenario).
    pub silenced_at: Option<f64>,
    /// All messages echoed and the session closed.
    pub completed: bool,
    /// The client's code panicked (never a clean end).
    #[serde(default)]
    pub panicked: bool,
}

/// The server's account.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerLog {
    /// (seq, seconds) of each message received and checked, in order.
    pub received: Vec<(u32, f64)>,
    /// Messages out of order, repeated or altered (must stay 0).
    pub wrong: u32,
    /// Why it ended, if not by the client's close.
    pub error: Option<String>,
    /// The server's code panicked (never a clean end).
    #[serde(default)]
    pub panicked: bool,
}

/// What the client does, given a session.
pub struct ClientPlan {
    /// Messages to send.
    pub messages: u32,
    /// Silence the peer (through `silence`) after this many echoes.
    pub stale_after: Option<u32>,
    /// Set to make the network drop everything.
    pub silence: Arc<AtomicBool>,
    /// Time limit for the peer to be declared gone once silenced.
    pub gone_limit: Duration,
    /// The scenario's start.
    pub epoch: Instant,
}

fn secs(epoch: Instant) -> f64 {
    epoch.elapsed().as_secs_f64()
}

/// Runs the client's side over an established session.
pub async fn client<S: Session>(session: &mut S, plan: &ClientPlan, log: &mut ClientLog) {
    match client_inner(session, plan, log).await {
        Ok(()) => {}
        Err(reason) => {
            log.failed_at = Some(secs(plan.epoch));
            log.error = Some(reason);
        }
    }
}

async fn client_inner<S: Session>(
    session: &mut S,
    plan: &ClientPlan,
    log: &mut ClientLog,
) -> Result<(), String> {
    let mut pending: VecDeque<(usize, Vec<u8>)> = VecDeque::new();
    let mut rx: Vec<u8> = Vec::new();
    let mut next: u32 = 0;
    let mut echoed: u32 = 0;
    // Stop-and-wait around the silencing, so the silenced message is the
    // only one in flight and the failure is clearly the transport's.
    let window = if plan.stale_after.is_some() {
        1
    } else {
        WINDOW
    };
    while echoed < plan.messages {
        while next < plan.messages && pending.len() < window {
            let m = message(next);
            log.messages.push(MessageRecord {
                seq: next,
                size: m.len(),
                sent: secs(plan.epoch),
                server_received: None,
                echoed: None,
            });
            let at = log.messages.len() - 1;
            send(session, &m, plan, log.silenced_at.is_some()).await?;
            pending.push_back((at, m));
            next += 1;
        }
        let chunk = recv(session, plan, log.silenced_at.is_some()).await?;
        if chunk.is_empty() {
            return Err(format!("the server closed after {echoed} echoes"));
        }
        rx.extend_from_slice(&chunk);
        while let Some((at, m)) = pending.front() {
            if rx.len() < m.len() {
                break;
            }
            if rx[..m.len()] != m[..] {
                log.wrong += 1;
                return Err(format!(
                    "echo of message {echoed} differs from what was sent"
                ));
            }
            rx.drain(..m.len());
            if let Some(r) = log.messages.get_mut(*at) {
                r.echoed = Some(secs(plan.epoch));
            }
            pending.pop_front();
            echoed += 1;
            if plan.stale_after == Some(echoed) {
                plan.silence.store(true, Ordering::SeqCst);
                log.silenced_at = Some(secs(plan.epoch));
            }
        }
    }
    if !rx.is_empty() {
        log.extra_bytes += rx.len();
        return Err(format!("{} bytes came back that were never sent", rx.len()));
    }
    session.close().await.map_err(|e| e.to_string())?;
    // Anything after the last echo would be a duplicate; the end of the
    // session (or an error of the closed session) is what should follow.
    match timeout(Duration::from_secs(2), session.recv(READ)).await {
        Ok(Ok(extra)) if !extra.is_empty() => {
            log.extra_bytes += extra.len();
            return Err(format!(
                "{} bytes came back after the last echo",
                extra.len()
            ));
        }
        _ => {}
    }
    log.completed = true;
    Ok(())
}

async fn send<S: Session>(
    session: &mut S,
    m: &[u8],
    plan: &ClientPlan,
    silenced: bool,
) -> Result<(), String> {
    bounded(session.send(m), plan, silenced).await
}

async fn recv<S: Session>(
    session: &mut S,
    plan: &ClientPlan,
    silenced: bool,
) -> Result<Vec<u8>, String> {
    bounded(session.recv(READ), plan, silenced).await
}

/// Once the peer is silent, each wait is bounded by the time the
/// transport has to declare it gone; before, the caller bounds the scenario.
async fn bounded<T>(
    fut: impl std::future::Future<Output = Result<T, SubjectError>>,
    plan: &ClientPlan,
    silenced: bool,
) -> Result<T, String> {
    if !silenced {
        return fut.await.map_err(|e| e.to_string());
    }
    match timeout(plan.gone_limit, fut).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err(format!(
            "the transport did not declare the silent peer gone within {:?}",
            plan.gone_limit
        )),
    }
}

/// Runs the server's side: checks and echoes messages until the client
/// closes, the session fails, or `stop` is set.
pub async fn server<S: Session>(session: &mut S, epoch: Instant, log: &mut ServerLog) {
    let mut rx: Vec<u8> = Vec::new();
    let mut expected: u32 = 0;
    loop {
        let chunk = match session.recv(READ).await {
            Ok(c) => c,
            Err(e) => {
                log.error = Some(e.to_string());
                return;
            }
        };
        if chunk.is_empty() {
            let _ = session.close().await;
            if !rx.is_empty() {
                log.error = Some(format!(
                    "{} bytes of a partial message at the end",
                    rx.len()
                ));
            }
            return;
        }
        rx.extend_from_slice(&chunk);
        while rx.len() >= HEADER {
            let seq = u32::from_be_bytes([rx[0], rx[1], rx[2], rx[3]]);
            let want = message(expected);
            // A header that is not the expected message's is wrong data:
            // waiting for its claimed length could wait forever.
            if rx[..HEADER] != want[..HEADER] {
                log.wrong += 1;
                log.error = Some(format!(
                    "expected message {expected}, got a header for {seq}"
                ));
                return;
            }
            if rx.len() < want.len() {
                break;
            }
            if rx[..want.len()] != want[..] {
                log.wrong += 1;
                log.error = Some(format!("message {expected} arrived altered"));
                return;
            }
            log.received.push((expected, secs(epoch)));
            if let Err(e) = session.send(&want).await {
                log.error = Some(e.to_string());
                return;
            }
            rx.drain(..want.len());
            expected += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::subject::{PlainTcp, StreamSubject};
    use tokio::net::{TcpListener, TcpStream};

    #[tokio::test]
    async fn sequence_over_loopback_and_stale_detection() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let epoch = Instant::now();
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.expect("accept");
            let mut s = PlainTcp.accept(tcp).await.expect("session");
            let mut log = ServerLog::default();
            server(&mut s, epoch, &mut log).await;
            log
        });
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let mut s = PlainTcp.connect(tcp).await.expect("session");
        let plan = ClientPlan {
            messages: 20,
            stale_after: None,
            silence: Arc::new(AtomicBool::new(false)),
            gone_limit: Duration::from_secs(1),
            epoch,
        };
        let mut log = ClientLog::default();
        timeout(Duration::from_secs(20), client(&mut s, &plan, &mut log))
            .await
            .expect("in time");
        assert!(log.completed, "{log:?}");
        assert_eq!(log.messages.len(), 20);
        assert!(log.messages.iter().all(|m| m.echoed.is_some()));
        let slog = server.await.expect("server");
        assert_eq!(slog.wrong, 0);
        assert_eq!(
            slog.received.iter().map(|r| r.0).collect::<Vec<_>>(),
            (0..20).collect::<Vec<_>>()
        );
    }

    #[tokio::test]
    async fn a_silent_peer_is_reported_within_the_limit() {
        // The server reads and never answers: the plain client has no
        // keepalive, so the run's own bound reports it.
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let _server = tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.expect("accept");
            let mut buf = vec![0u8; 65536];
            let m = message(0).len();
            let mut got = 0;
            // Echo message 0 only, then read and drop everything.
            while got < m {
                let n = tokio::io::AsyncReadExt::read(&mut tcp, &mut buf)
                    .await
                    .unwrap_or(0);
                if n == 0 {
                    return;
                }
                got += n;
            }
            let _ = tokio::io::AsyncWriteExt::write_all(&mut tcp, &message(0)).await;
            while tokio::io::AsyncReadExt::read(&mut tcp, &mut buf)
                .await
                .unwrap_or(0)
                > 0
            {}
        });
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let mut s = PlainTcp.connect(tcp).await.expect("session");
        let silence = Arc::new(AtomicBool::new(false));
        let plan = ClientPlan {
            messages: 3,
            stale_after: Some(1),
            silence: silence.clone(),
            gone_limit: Duration::from_millis(300),
            epoch: Instant::now(),
        };
        let mut log = ClientLog::default();
        client(&mut s, &plan, &mut log).await;
        assert!(silence.load(Ordering::SeqCst));
        assert!(!log.completed);
        let reason = log.error.expect("a reason");
        assert!(reason.contains("did not declare"), "{reason}");
        let after = log.failed_at.expect("failed") - log.silenced_at.expect("silenced");
        assert!((0.3..2.0).contains(&after), "{after}");
    }
}
