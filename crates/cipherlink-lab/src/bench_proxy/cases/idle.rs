//! Memory per idle tunnel: open many tunnels through fresh pairs, each
//! proven by a one-byte echo, then silent; both ends' resident memory
//! growth divided by the tunnels.
//!
//! Every tunnel costs one file descriptor in the bench process and in the
//! backend helper, and two in each end of its pair (the accepted socket and
//! the onward one). So the count is what the bench process may hold under
//! its open-file limit (raised to the hard limit; children inherit it), and
//! the tunnels are spread over as many pairs of a kind as that limit needs.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::bench_proxy::client::{idle_tunnel, Entry};
use crate::bench_proxy::options::IDLE_FALLBACK;
use crate::bench_proxy::pairs::{Ctx, Pair, Subject};
use crate::fd_limit::FdLimit;
use crate::format::thousands;
use crate::procfs;
use crate::LabError;

/// Tunnels opened per pair (and kept) before the "before" reading, so
/// one-time costs (threads, lazily built tables, first handshake) are not
/// charged to the measured tunnels.
pub(in crate::bench_proxy) const WARM_UP: usize = 8;

/// Files a pair end may want besides two per tunnel.
const PEER_RESERVE: usize = 128;

/// How many idle tunnels, over how many pairs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::bench_proxy) struct IdlePlan {
    /// Tunnels measured per pair kind.
    pub count: usize,
    /// Most tunnels one pair end holds.
    pub per_pair: usize,
    /// Pairs of each kind the tunnels are spread over.
    pub pairs: usize,
    /// What the limits changed, in words.
    pub notes: Vec<String>,
}

/// The idle count for `requested` under `fds`: all of it if the bench
/// process can hold it, else [`IDLE_FALLBACK`], else what fits; said in `notes`.
pub(in crate::bench_proxy) fn plan(requested: usize, fds: &FdLimit) -> Result<IdlePlan, LabError> {
    let room = fds.connections();
    // Two sockets per tunnel, the warm-up tunnels, and room for what a
    // peer keeps besides (HAProxy wants its whole table under the limit).
    let per_pair = (room / 2).saturating_sub(WARM_UP + PEER_RESERVE);
    if requested == 0 {
        return Ok(IdlePlan {
            count: 0,
            per_pair: per_pair.max(1),
            pairs: 0,
            notes: Vec::new(),
        });
    }
    if per_pair == 0 {
        return Err(LabError::NoRoom { soft: fds.soft });
    }
    // The bench process holds every tunnel and every pair's warm-up ones.
    let fits = |n: usize| n + WARM_UP * n.div_ceil(per_pair) <= room;
    let mut notes = Vec::new();
    let count = if fits(requested) {
        requested
    } else {
        let fallback = IDLE_FALLBACK.min(requested);
        let count = if fits(fallback) {
            fallback
        } else {
            (1..=fallback).rev().find(|&n| fits(n)).unwrap_or(0)
        };
        notes.push(format!(
            "idle: {} tunnels per pair kind, not the {} asked for: this process may open {} \
             files (hard limit {}) and holds one per tunnel (raise the hard limit with \
             `ulimit -Hn` as root)",
            thousands(count as u64),
            thousands(requested as u64),
            thousands(fds.soft),
            thousands(fds.hard)
        ));
        count
    };
    if count == 0 {
        return Err(LabError::NoRoom { soft: fds.soft });
    }
    let pairs = count.div_ceil(per_pair);
    if pairs > 1 {
        notes.push(format!(
            "idle: {} tunnels spread over {pairs} pairs of each kind (a pair end holds two \
             sockets per tunnel; open-file limit {})",
            thousands(count as u64),
            thousands(fds.soft)
        ));
    }
    Ok(IdlePlan {
        count,
        per_pair,
        pairs,
        notes,
    })
}

/// One kind's idle case.
#[derive(Debug, Default)]
pub(in crate::bench_proxy) struct IdleOutcome {
    /// Tunnels that opened and echoed.
    pub opened: usize,
    /// Tunnels that failed to open.
    pub errors: u64,
    /// The first failure.
    pub first_error: Option<String>,
    /// Both ends' memory growth per opened tunnel, bytes.
    pub bytes_per_tunnel: Option<f64>,
}

/// Starts `plan.pairs` fresh pairs of `subject` and measures them.
pub(in crate::bench_proxy) async fn run(
    subject: &Subject,
    ctx: &Ctx<'_>,
    plan: &IdlePlan,
) -> Result<IdleOutcome, LabError> {
    // A pair that bounds its own tunnels (a multiplexed connection's
    // streams) gets company: more pairs, the same tunnels in all.
    let pair_count = match subject.tunnels_per_pair() {
        Some(most) => plan
            .pairs
            .max((plan.count + WARM_UP * plan.pairs).div_ceil(most)),
        None => plan.pairs,
    };
    let mut pairs: Vec<Pair> = Vec::with_capacity(pair_count);
    // What each pair will hold, not its most: HAProxy sizes its file table
    // from it and cannot go past the hard limit.
    let load = plan.count.div_ceil(pair_count.max(1)) + WARM_UP;
    for _ in 0..pair_count {
        if let Some(pair) = subject.start(ctx, load).await? {
            pairs.push(pair);
        }
    }
    if pairs.is_empty() {
        return Ok(IdleOutcome::default());
    }
    let entries: Vec<Entry> = pairs.iter().map(|p| p.entry.clone()).collect();
    let pids: Vec<u32> = pairs.iter().flat_map(Pair::pids).collect();
    let concurrency = ctx.options.concurrency;
    let warm = open(&entries, WARM_UP * entries.len(), concurrency).await;
    if let Some(first) = warm.first_error.filter(|_| warm.tunnels.is_empty()) {
        return Err(LabError::NotReady {
            who: subject.name().to_string(),
            what: format!("opened no warm-up tunnel: {first}"),
            said: String::new(),
        });
    }
    let before = procfs::settled_rss(&pids).await?;
    let opened = open(&entries, plan.count, concurrency).await;
    let after = procfs::settled_rss(&pids).await?;
    for pair in &mut pairs {
        pair.check_running("while holding idle tunnels")?;
    }
    let count = opened.tunnels.len();
    Ok(IdleOutcome {
        opened: count,
        errors: opened.errors,
        first_error: opened.first_error,
        bytes_per_tunnel: (count > 0).then(|| (after as f64 - before as f64) / count as f64),
    })
}

struct Opened {
    tunnels: Vec<tokio::net::TcpStream>,
    errors: u64,
    first_error: Option<String>,
}

/// Opens `count` idle tunnels round-robin over `entries`, `concurrency` at a time.
async fn open(entries: &[Entry], count: usize, concurrency: usize) -> Opened {
    let next = Arc::new(AtomicUsize::new(0));
    let first_error = Arc::new(Mutex::new(None));
    let entries: Arc<[Entry]> = entries.into();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency.clamp(1, count.max(1)) {
        let (next, first_error, entries) = (next.clone(), first_error.clone(), entries.clone());
        workers.spawn(async move {
            let (mut tunnels, mut errors) = (Vec::new(), 0u64);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    break;
                }
                match idle_tunnel(&entries[i % entries.len()]).await {
                    Ok(stream) => tunnels.push(stream),
                    Err(e) => {
                        errors += 1;
                        if let Ok(mut first) = first_error.lock() {
                            first.get_or_insert_with(|| e.to_string());
                        }
                    }
                }
            }
            (tunnels, errors)
        });
    }
    let mut opened = Opened {
        tunnels: Vec::with_capacity(count),
        errors: 0,
        first_error: None,
    };
    while let Some(done) = workers.join_next().await {
        match done {
            Ok((tunnels, errors)) => {
                opened.tunnels.extend(tunnels);
                opened.errors += errors;
            }
            Err(_) => opened.errors += 1,
        }
    }
    opened.first_error = first_error.lock().ok().and_then(|mut f| f.take());
    opened
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench_proxy::pairs::END_SLACK;

    fn limit(soft: u64) -> FdLimit {
        FdLimit {
            soft_before: 1024,
            soft,
            hard: soft,
        }
    }

    #[test]
    fn ten_thousand_fit_under_20000_files_over_two_pairs() {
        let p = plan(10_000, &limit(20_000)).expect("room");
        assert_eq!((p.count, p.pairs), (10_000, 2), "{p:?}");
        assert!(p.per_pair * p.pairs >= p.count);
        assert!(p.notes[0].contains("spread over 2 pairs"), "{p:?}");
    }

    #[test]
    fn a_pair_end_never_needs_more_files_than_the_limit() {
        // HAProxy sizes its file table from what it is told to hold
        // (two per tunnel) and refuses to start above the limit.
        for requested in [100, 5_000, 9_000, 9_832, 9_900, 10_000, 19_000] {
            let p = plan(requested, &limit(20_000)).expect("room");
            let load = p.count.div_ceil(p.pairs) + WARM_UP + END_SLACK;
            assert!(2 * load + 64 <= 20_000, "{requested}: {p:?}");
        }
    }

    #[test]
    fn a_low_limit_falls_back_to_2000_and_says_so() {
        let p = plan(10_000, &limit(8_192)).expect("room");
        assert_eq!(p.count, 2_000, "{p:?}");
        assert!(
            p.notes[0].contains("2,000 tunnels per pair kind, not the 10,000 asked for"),
            "{p:?}"
        );
        // Below even that: what fits, said as well.
        let p = plan(10_000, &limit(1_024)).expect("room");
        assert!(p.count < 2_000 && p.count > 0, "{p:?}");
        assert!(p.notes[0].contains("not the 10,000"), "{p:?}");
        assert!(p.count + WARM_UP * p.pairs <= limit(1_024).connections());
    }

    #[test]
    fn small_counts_need_one_pair_and_no_note() {
        let p = plan(20, &limit(20_000)).expect("room");
        assert_eq!((p.count, p.pairs), (20, 1));
        assert!(p.notes.is_empty(), "{p:?}");
        assert_eq!(plan(0, &limit(20_000)).expect("room").pairs, 0);
    }
}
