//! Admission of connections that have not authenticated yet (docs §6): a
//! total and a per-source-address cap, both answered the same way.
//!
//! Every accepted socket holds a ticket until its first message's MAC
//! verifies (from then on a handshake slot bounds it, docs §6) or it is
//! closed (a probe keeps its ticket while it lingers). When a new socket would go over a cap the
//! oldest ticket of that address (per-address cap) or of all (total cap) is
//! evicted: that socket is closed the way every probe is closed (what it
//! sent drained, a FIN, no byte ever sent), only earlier. The new socket is
//! always admitted, so a real client gets in even while silent sockets fill
//! the table, and the table never holds more than the cap. Refusing the new
//! socket instead would let anyone who fills the table lock every client
//! out; keeping every socket would bound nothing.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

/// Caps on connections that have not authenticated yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// Sockets before their handshake ended, in all.
    pub max_unauthenticated: usize,
    /// Sockets before their handshake ended, per source address.
    pub max_unauthenticated_per_ip: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            max_unauthenticated: 4096,
            max_unauthenticated_per_ip: 1024,
        }
    }
}

struct Entry {
    ip: IpAddr,
    evicted: Arc<Notify>,
}

#[derive(Default)]
struct Table {
    next: u64,
    /// Oldest first.
    by_age: BTreeMap<u64, Entry>,
    per_ip: HashMap<IpAddr, VecDeque<u64>>,
}

impl Table {
    fn remove(&mut self, id: u64) -> Option<Entry> {
        let e = self.by_age.remove(&id)?;
        if let Some(q) = self.per_ip.get_mut(&e.ip) {
            q.retain(|&x| x != id);
            if q.is_empty() {
                self.per_ip.remove(&e.ip);
            }
        }
        Some(e)
    }

    fn evict(&mut self, id: u64) {
        if let Some(e) = self.remove(id) {
            // Stored if the socket's task is not waiting yet.
            e.evicted.notify_one();
        }
    }
}

/// The admission table of one listener.
pub(crate) struct Gate {
    limits: ServerLimits,
    table: Mutex<Table>,
}

/// One admitted socket's place; given back when dropped.
pub(crate) struct Ticket {
    gate: Arc<Gate>,
    id: u64,
    evicted: Arc<Notify>,
}

impl Gate {
    pub(crate) fn new(limits: ServerLimits) -> Arc<Self> {
        Arc::new(Self {
            limits: ServerLimits {
                max_unauthenticated: limits.max_unauthenticated.max(1),
                max_unauthenticated_per_ip: limits.max_unauthenticated_per_ip.max(1),
            },
            table: Mutex::new(Table::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits a socket from `ip`, evicting the oldest over a cap.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Ticket {
        let mut t = self.lock();
        let oldest_of_ip = t
            .per_ip
            .get(&ip)
            .filter(|q| q.len() >= self.limits.max_unauthenticated_per_ip)
            .and_then(|q| q.front().copied());
        if let Some(id) = oldest_of_ip {
            t.evict(id);
        }
        if t.by_age.len() >= self.limits.max_unauthenticated {
            if let Some(id) = t.by_age.keys().next().copied() {
                t.evict(id);
            }
        }
        let id = t.next;
        t.next += 1;
        let evicted = Arc::new(Notify::new());
        t.by_age.insert(
            id,
            Entry {
                ip,
                evicted: Arc::clone(&evicted),
            },
        );
        t.per_ip.entry(ip).or_default().push_back(id);
        Ticket {
            gate: Arc::clone(self),
            id,
            evicted,
        }
    }

    /// Sockets holding a ticket.
    pub(crate) fn len(&self) -> usize {
        self.lock().by_age.len()
    }
}

impl Ticket {
    /// Completes when this socket was evicted to admit a newer one.
    pub(crate) async fn evicted(&self) {
        self.evicted.notified().await;
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.gate.lock().remove(self.id);
    }
}
