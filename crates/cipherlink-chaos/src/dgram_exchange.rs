//! The datagram exchange of a scenario: the client sends numbered
//! datagrams at a steady rate for the scenario's run, the server checks
//! each and echoes it, the client checks each echo. Loss is expected and
//! counted, not a failure of the run; what arrives must be intact, and
//! each end counts what arrived twice or out of order. Both ends log
//! times; every wait is bounded (by the plan, or by the caller).
//!
//! Wire format of a datagram: `seq: u32 BE ‖ len: u16 BE ‖ len bytes ‖
//! FNV-1a-64 of what precedes it`. The body's bytes are a function of
//! `seq`, so a receiver checks every byte by making the datagram again.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::time::{sleep_until, timeout};

use crate::exchange::{ClientLog, MessageRecord, ServerLog};
use crate::subject::DatagramSession;

/// Header bytes before the body: sequence number and body length.
const HEADER: usize = 6;
/// The checksum after the body.
const TRAILER: usize = 8;
/// Numbers above this are wrong, whatever their bytes: bounds what the
/// ends remember of the numbers they saw.
pub const MAX_SEQ: u32 = 1_000_000;

/// Body bytes of datagram `seq`: 48 to 1,147, so that with any transport's
/// header every datagram fits one 1500-byte packet.
pub fn body_size(seq: u32) -> usize {
    48 + (seq as usize * 389) % 1100
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Datagram `seq` as sent.
pub fn datagram(seq: u32) -> Vec<u8> {
    let len = body_size(seq);
    let mut d = Vec::with_capacity(HEADER + len + TRAILER);
    d.extend_from_slice(&seq.to_be_bytes());
    d.extend_from_slice(&(len as u16).to_be_bytes());
    d.extend((0..len).map(|j| (seq as usize * 131 + j * 7 + 3) as u8));
    let sum = fnv1a64(&d);
    d.extend_from_slice(&sum.to_be_bytes());
    d
}

/// The number of a datagram that is exactly as sent; `None` for anything
/// else (altered, cut, or a number never sent).
pub fn check(d: &[u8]) -> Option<u32> {
    let seq = u32::from_be_bytes(d.get(..4)?.try_into().ok()?);
    (seq <= MAX_SEQ && d == datagram(seq).as_slice()).then_some(seq)
}

/// What the client does, given a session.
#[derive(Debug, Clone)]
pub struct DatagramPlan {
    /// Datagrams to send (in the stale scenario, with a bound, sending
    /// goes on until the transport declares the peer gone).
    pub count: u32,
    /// Time between two datagrams.
    pub interval: Duration,
    /// How long echoes are waited for after the last datagram.
    pub drain: Duration,
    /// Silence the peer (through `silence`) after this many echoes.
    pub stale_after: Option<u32>,
    /// Set to make the network drop everything.
    pub silence: Arc<AtomicBool>,
    /// Time the transport has to declare the silent peer gone (its bound
    /// and a slack); `None`: it has no way to (plain UDP), and the client
    /// sends on and drains as in any scenario.
    pub gone_limit: Option<Duration>,
    /// The scenario's start.
    pub epoch: Instant,
}

/// What the counts of the logs do not hold: repeats and order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Arrivals {
    /// Datagrams that arrived again after their first arrival.
    pub duplicates: u32,
    /// First arrivals with a lower number than one that arrived before.
    pub reordered: u32,
}

/// Tracks the numbers an end has seen; counts go to `arrivals`, which
/// outlives the exchange when the caller stops it.
#[derive(Debug)]
struct Seen<'a> {
    numbers: HashSet<u32>,
    highest: Option<u32>,
    arrivals: &'a mut Arrivals,
}

impl<'a> Seen<'a> {
    fn new(arrivals: &'a mut Arrivals) -> Self {
        Seen {
            numbers: HashSet::new(),
            highest: None,
            arrivals,
        }
    }

    /// Whether `seq` is a first arrival (counting it).
    fn first(&mut self, seq: u32) -> bool {
        if !self.numbers.insert(seq) {
            self.arrivals.duplicates += 1;
            return false;
        }
        if self.highest.is_some_and(|h| seq < h) {
            self.arrivals.reordered += 1;
        }
        self.highest = self.highest.max(Some(seq));
        true
    }
}

fn secs(epoch: Instant) -> f64 {
    epoch.elapsed().as_secs_f64()
}

/// Runs the client's side over an established session, counting the
/// echoes' repeats and order in `arrivals`.
pub async fn client<S: DatagramSession>(
    session: &mut S,
    plan: &DatagramPlan,
    log: &mut ClientLog,
    arrivals: &mut Arrivals,
) {
    let mut seen = Seen::new(arrivals);
    let end = client_inner(session, plan, log, &mut seen).await;
    match end {
        Ok(()) => {
            log.completed = true;
            if let Ok(Err(e)) = timeout(Duration::from_secs(2), session.close()).await {
                log.error = Some(e.to_string());
            }
        }
        Err(reason) => {
            log.failed_at = Some(secs(plan.epoch));
            log.error = Some(reason);
        }
    }
}

async fn client_inner<S: DatagramSession>(
    session: &mut S,
    plan: &DatagramPlan,
    log: &mut ClientLog,
    seen: &mut Seen<'_>,
) -> Result<(), String> {
    let start = tokio::time::Instant::now();
    let mut next_at = start;
    let mut next: u32 = 0;
    let mut drain_until: Option<tokio::time::Instant> = None;
    let mut silenced: Option<tokio::time::Instant> = None;
    loop {
        let now = tokio::time::Instant::now();
        // With a bound, the silent peer's datagrams go on until it is declared gone.
        let sending = next.min(MAX_SEQ) < plan.count
            || (silenced.is_some() && plan.gone_limit.is_some() && next < MAX_SEQ);
        if let (Some(at), Some(limit)) = (silenced, plan.gone_limit) {
            if now >= at + limit {
                return Err(format!(
                    "the transport did not declare the silent peer gone within {limit:?}"
                ));
            }
        }
        if !sending {
            let until = *drain_until.get_or_insert(now + plan.drain);
            let all = log.messages.iter().all(|m| m.echoed.is_some());
            if now >= until || (all && silenced.is_none()) {
                return Ok(());
            }
        }
        let wake = [
            sending.then_some(next_at),
            drain_until,
            silenced.zip(plan.gone_limit).map(|(at, l)| at + l),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(now + plan.drain);
        tokio::select! {
            r = session.recv() => match r {
                Ok(Some(d)) => {
                    echoed(plan, log, seen, &d);
                    if silenced.is_none() && plan.stale_after.is_some_and(|n| seen.numbers.len() as u32 >= n) {
                        plan.silence.store(true, Ordering::SeqCst);
                        log.silenced_at = Some(secs(plan.epoch));
                        silenced = Some(tokio::time::Instant::now());
                    }
                }
                Ok(None) => return Err(format!("the server ended the session after {} echoes", seen.numbers.len())),
                Err(e) => return Err(e.to_string()),
            },
            () = sleep_until(wake) => {}
        }
        let now = tokio::time::Instant::now();
        if sending && now >= next_at {
            let d = datagram(next);
            log.messages.push(MessageRecord {
                seq: next,
                size: d.len(),
                sent: secs(plan.epoch),
                server_received: None,
                echoed: None,
            });
            session.send(&d).await.map_err(|e| e.to_string())?;
            next += 1;
            next_at += plan.interval;
            // Fallen behind (a slow send): steady from now, not a burst.
            if now > next_at + 4 * plan.interval {
                next_at = now;
            }
        }
    }
}

/// Checks an echo and records it.
fn echoed(plan: &DatagramPlan, log: &mut ClientLog, seen: &mut Seen<'_>, d: &[u8]) {
    let record = check(d).and_then(|seq| {
        log.messages
            .get(seq as usize)
            .filter(|m| m.seq == seq)
            .map(|_| seq)
    });
    let Some(seq) = record else {
        log.wrong += 1;
        return;
    };
    if seen.first(seq) {
        if let Some(m) = log.messages.get_mut(seq as usize) {
            m.echoed = Some(secs(plan.epoch));
        }
    }
}

/// Runs the server's side: checks and echoes datagrams until the client
/// ends the session or the session fails (the caller bounds it in time
/// and stops it), counting repeats and order in `arrivals`.
pub async fn server<S: DatagramSession>(
    session: &mut S,
    epoch: Instant,
    log: &mut ServerLog,
    arrivals: &mut Arrivals,
) {
    let mut seen = Seen::new(arrivals);
    loop {
        let d = match session.recv().await {
            Ok(Some(d)) => d,
            Ok(None) => break,
            Err(e) => {
                log.error = Some(e.to_string());
                break;
            }
        };
        let Some(seq) = check(&d) else {
            log.wrong += 1;
            continue;
        };
        if seen.first(seq) {
            log.received.push((seq, secs(epoch)));
        }
        // Every intact arrival is echoed, a repeat too: the client counts
        // what comes back twice.
        if let Err(e) = session.send(&d).await {
            log.error = Some(e.to_string());
            break;
        }
    }
}

#[cfg(test)]
#[path = "dgram_exchange_tests.rs"]
mod tests;
