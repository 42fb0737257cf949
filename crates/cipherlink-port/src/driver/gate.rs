//! The listener's places for connections that are not sessions yet
//! (INIT not read, refused and drained, or user port waiting): at most
//! `total` in all and `per_group` per address group. A new connection over
//! a cap evicts the oldest place of its group, or of all, a refused one
//! before one still in its handshake, and is itself admitted: refusing the
//! newcomer instead would let whoever fills the table with silent sockets
//! lock every client out.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;

/// The group a per-address cap counts: an IPv4 address, or an IPv6 /64
/// (one subscriber usually holds a whole /64); an IPv4-mapped IPv6
/// address is its IPv4 address.
pub(crate) fn address_group(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let mut o = v6.octets();
            o[8..].fill(0);
            IpAddr::V6(o.into())
        }
        v4 => v4,
    }
}

struct Entry {
    group: IpAddr,
    refused: bool,
    /// Dropped on eviction, which wakes the place's holder.
    _evict: oneshot::Sender<()>,
}

#[derive(Default)]
struct Group {
    live: VecDeque<u64>,
    refused: VecDeque<u64>,
}

#[derive(Default)]
struct Table {
    next: u64,
    entries: HashMap<u64, Entry>,
    /// Ids by age (they are handed out in order), by phase.
    live: BTreeSet<u64>,
    refused: BTreeSet<u64>,
    groups: HashMap<IpAddr, Group>,
}

impl Table {
    fn remove(&mut self, id: u64) {
        let Some(e) = self.entries.remove(&id) else {
            return;
        };
        self.live.remove(&id);
        self.refused.remove(&id);
        if let Some(g) = self.groups.get_mut(&e.group) {
            g.live.retain(|&x| x != id);
            g.refused.retain(|&x| x != id);
            if g.live.is_empty() && g.refused.is_empty() {
                self.groups.remove(&e.group);
            }
        }
    }
}

/// One listener's table.
pub(crate) struct Gate {
    total: usize,
    per_group: usize,
    table: Mutex<Table>,
}

/// A connection's place; given back when dropped.
pub(crate) struct Ticket {
    gate: Arc<Gate>,
    id: u64,
}

/// Completes when the place was given to a newer connection.
pub(crate) struct Evicted(oneshot::Receiver<()>);

impl Evicted {
    pub(crate) async fn wait(&mut self) {
        // Only the table holds the sender: its drop is the eviction.
        let _ = (&mut self.0).await;
    }
}

impl Gate {
    pub(crate) fn new(total: usize, per_group: usize) -> Arc<Self> {
        Arc::new(Self {
            total: total.max(1),
            per_group: per_group.max(1),
            table: Mutex::new(Table::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // The table stays consistent between statements: a panic elsewhere
        // leaves nothing half-done in it.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A place for a connection from `ip`, evicting the oldest over a cap;
    /// how many were evicted.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> (Ticket, Evicted, usize) {
        let group = address_group(ip);
        let mut t = self.lock();
        let mut evicted = 0;
        let oldest_of_group = t
            .groups
            .get(&group)
            .filter(|g| g.live.len() + g.refused.len() >= self.per_group)
            .and_then(|g| g.refused.front().or(g.live.front()).copied());
        if let Some(id) = oldest_of_group {
            t.remove(id);
            evicted += 1;
        }
        while t.entries.len() >= self.total {
            let Some(id) = t.refused.first().or(t.live.first()).copied() else {
                break;
            };
            t.remove(id);
            evicted += 1;
        }
        let id = t.next;
        t.next += 1;
        let (tx, rx) = oneshot::channel();
        t.entries.insert(
            id,
            Entry {
                group,
                refused: false,
                _evict: tx,
            },
        );
        t.live.insert(id);
        t.groups.entry(group).or_default().live.push_back(id);
        let ticket = Ticket {
            gate: Arc::clone(self),
            id,
        };
        (ticket, Evicted(rx), evicted)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().entries.len()
    }
}

impl Ticket {
    /// The connection was refused and is drained: the first to go when
    /// room is needed.
    pub(crate) fn refused(&self) {
        let mut t = self.gate.lock();
        let Some(e) = t.entries.get_mut(&self.id) else {
            return;
        };
        if e.refused {
            return;
        }
        e.refused = true;
        let group = e.group;
        t.live.remove(&self.id);
        t.refused.insert(self.id);
        if let Some(g) = t.groups.get_mut(&group) {
            g.live.retain(|&x| x != self.id);
            g.refused.push_back(self.id);
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.gate.lock().remove(self.id);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::future::Future;
    use std::task::{Context, Waker};

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    fn is_evicted(e: &mut Evicted) -> bool {
        let fut = std::pin::pin!(e.wait());
        fut.poll(&mut Context::from_waker(Waker::noop())).is_ready()
    }

    #[test]
    fn over_the_total_the_oldest_goes_and_the_newest_is_admitted() {
        let g = Gate::new(3, 3);
        let mut t: Vec<_> = (1..=3).map(|i| g.admit(ip(i))).collect();
        let (_newest, mut e, n) = g.admit(ip(4));
        assert_eq!((n, g.len()), (1, 3));
        assert!(is_evicted(&mut t[0].1));
        assert!(!is_evicted(&mut t[1].1) && !is_evicted(&mut t[2].1) && !is_evicted(&mut e));
    }

    #[test]
    fn one_group_over_its_cap_evicts_only_its_own() {
        let g = Gate::new(10, 2);
        let (_t, mut other, _) = g.admit(ip(1));
        let mut mine: Vec<_> = (0..5).map(|_| g.admit(ip(2))).collect();
        assert!(!is_evicted(&mut other));
        let held = mine
            .iter_mut()
            .map(|t| !is_evicted(&mut t.1))
            .filter(|&h| h)
            .count();
        assert_eq!((held, g.len()), (2, 3));
    }

    #[test]
    fn refused_places_go_before_handshaking_ones() {
        let g = Gate::new(2, 2);
        let (_h, mut handshaking, _) = g.admit(ip(1));
        let (refused, mut refused_e, _) = g.admit(ip(2));
        refused.refused();
        let _newest = g.admit(ip(3));
        assert!(is_evicted(&mut refused_e));
        assert!(!is_evicted(&mut handshaking));
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        assert_eq!(address_group(a), address_group(b));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(address_group(mapped), ip(1));
    }

    #[test]
    fn a_dropped_ticket_frees_its_place() {
        let g = Gate::new(2, 2);
        let (t, _, _) = g.admit(ip(1));
        drop(t);
        assert_eq!(g.len(), 0);
    }
}
