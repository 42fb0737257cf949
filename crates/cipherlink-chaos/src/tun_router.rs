//! Drives a [`Router`] between the lab's two TUN devices: reads packets,
//! asks the router, sends what it says when it says. All decisions are the
//! router's; this loop only moves packets and keeps one timer.
//!
//! Memory is bounded by the router's queue (the models' `limit`s and its
//! byte bound; what it drops for memory is counted and logged) and one
//! receive buffer per device. A capture that refuses a packet (an
//! in-memory one at its bound) is counted and logged, never ignored.

use std::future::Future;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::time::{sleep_until, Instant};
use tun_rs::AsyncDevice;

use crate::capture::Capture;
use crate::model::{Decision, DropReason};
use crate::router::{Port, Router};

/// What the router did, per direction (index 0: A to B, 1: B to A).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RouterStats {
    /// Packets read from the source device.
    pub received: [u64; 2],
    /// Copies written to the destination device.
    pub sent: [u64; 2],
    /// Packets the loss model dropped.
    pub lost: [u64; 2],
    /// Packets dropped for a full queue.
    pub queue_full: [u64; 2],
    /// Packets duplicated.
    pub duplicated: [u64; 2],
    /// Copies corrupted.
    pub corrupted: [u64; 2],
    /// Writes the destination device refused (the kernel drops such packets).
    pub send_errors: [u64; 2],
    /// Packets dropped because the link was silenced ([`route_with`]).
    pub silenced: [u64; 2],
    /// Copies dropped because the router's queue held its byte bound.
    pub over_memory: [u64; 2],
    /// Delivered packets the capture refused (it stops at the first).
    pub capture_errors: [u64; 2],
}

fn index(from: Port) -> usize {
    from.index()
}

fn direction_name(dir: usize) -> &'static str {
    if dir == 0 {
        "A to B"
    } else {
        "B to A"
    }
}

/// Routes between `a` and `b` until `stop` completes; records every
/// delivered packet in `capture` when given (wall-clock timestamps).
pub async fn route<W: Write>(
    a: AsyncDevice,
    b: AsyncDevice,
    router: Router,
    capture: Option<&mut Capture<W>>,
    stop: impl Future<Output = ()>,
) -> Result<RouterStats, std::io::Error> {
    route_with(a, b, router, capture, stop, &AtomicBool::new(false)).await
}

/// As [`route`]; while `silence` is set, every packet read either way is
/// dropped before the model sees it (a peer that has gone silent, as the
/// stale scenario needs), and packets already queued are dropped when due.
pub async fn route_with<W: Write>(
    a: AsyncDevice,
    b: AsyncDevice,
    mut router: Router,
    mut capture: Option<&mut Capture<W>>,
    stop: impl Future<Output = ()>,
    silence: &AtomicBool,
) -> Result<RouterStats, std::io::Error> {
    let start = Instant::now();
    let wall_start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let mut stats = RouterStats::default();
    // Largest IPv4 packet: the device never gives more.
    let mut buf_a = vec![0u8; 65_535];
    let mut buf_b = vec![0u8; 65_535];
    tokio::pin!(stop);
    loop {
        let due = router.poll_timeout().map(|at| start + at);
        let (from, n) = tokio::select! {
            () = &mut stop => break,
            n = a.recv(&mut buf_a) => (Port::A, n?),
            n = b.recv(&mut buf_b) => (Port::B, n?),
            () = sleep_until(due.unwrap_or(start)), if due.is_some() => {
                let now = start.elapsed();
                transmit(&mut router, now, &a, &b, &mut stats, capture.as_deref_mut(), wall_start, silence).await;
                continue;
            }
        };
        let buf = if from == Port::A { &buf_a } else { &buf_b };
        let dir = index(from);
        stats.received[dir] += 1;
        if silence.load(Ordering::Relaxed) {
            stats.silenced[dir] += 1;
            continue;
        }
        match router.handle_packet(from, buf[..n].to_vec(), start.elapsed()) {
            Decision::Dropped(DropReason::Loss) => stats.lost[dir] += 1,
            Decision::Dropped(DropReason::QueueFull) => stats.queue_full[dir] += 1,
            Decision::Duplicate(copies) => {
                stats.duplicated[dir] += 1;
                stats.corrupted[dir] +=
                    copies.iter().filter(|c| c.corrupt.is_some()).count() as u64;
            }
            Decision::Deliver(d) => stats.corrupted[dir] += u64::from(d.corrupt.is_some()),
        }
        let over = router.over_memory()[dir];
        if over > 0 && stats.over_memory[dir] == 0 {
            tracing::warn!(
                "router: the queue holds its bound of {} bytes; dropping packets {} (counted as over-memory)",
                router.max_bytes(),
                direction_name(dir)
            );
        }
        stats.over_memory[dir] = over;
        // A packet due now (no delay) leaves at once: through the timer it
        // would wait for tokio's next millisecond tick.
        let now = start.elapsed();
        if router.poll_timeout().is_some_and(|at| at <= now) {
            transmit(
                &mut router,
                now,
                &a,
                &b,
                &mut stats,
                capture.as_deref_mut(),
                wall_start,
                silence,
            )
            .await;
        }
    }
    Ok(stats)
}

/// Sends every packet due by `now`.
#[allow(clippy::too_many_arguments)]
async fn transmit<W: Write>(
    router: &mut Router,
    now: std::time::Duration,
    a: &AsyncDevice,
    b: &AsyncDevice,
    stats: &mut RouterStats,
    mut capture: Option<&mut Capture<W>>,
    wall_start: std::time::Duration,
    silence: &AtomicBool,
) {
    while let Some((to, packet)) = router.poll_transmit(now) {
        let dir = index(to.peer());
        if silence.load(Ordering::Relaxed) {
            stats.silenced[dir] += 1;
            continue;
        }
        let device = if to == Port::A { a } else { b };
        match device.send(&packet).await {
            Ok(_) => stats.sent[dir] += 1,
            Err(_) => stats.send_errors[dir] += 1,
        }
        if let Some(c) = capture.as_deref_mut() {
            if let Err(err) = c.write(wall_start + now, &packet) {
                if stats.capture_errors == [0, 0] {
                    tracing::warn!(
                        "router: the capture refused a packet {}: {err}",
                        direction_name(dir)
                    );
                }
                stats.capture_errors[dir] += 1;
            }
        }
    }
}
