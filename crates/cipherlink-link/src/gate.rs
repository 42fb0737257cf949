//! Admission of sockets that are not links (docs §6): one descriptor budget
//! for every socket a listener holds before it is a link (handshaking,
//! probing, refused, lingering after its close), a cap per source address
//! group, and eviction of the oldest when a new socket would go over.
//!
//! Every accepted socket holds a `Ticket` from `accept` until it is a link
//! or its descriptor is closed: through its handshake (a first message
//! whose MAC verified included, so its handshake slot is bounded by the
//! same caps), through a probe's silence until its close time, and through
//! the linger after its FIN. When a new socket would go over a cap, the
//! oldest entry of its address group (per-address cap) or of all (total
//! cap) is evicted, a lingering one before one still handshaking: that
//! socket is closed at once (what it sent drained, a FIN, no byte ever
//! sent, no linger). The new socket is always admitted, so a real client
//! gets in even while silent sockets fill the table, and the listener never
//! holds more descriptors for such sockets than the cap. Refusing the new
//! socket instead would let anyone who fills the table lock every client
//! out; keeping every socket would bound nothing.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;

/// Descriptors a process keeps besides its connections (stdio, the
/// listeners, the runtime's, files it reads), with room to spare.
pub const RESERVED_DESCRIPTORS: u64 = 64;

/// The most sockets not yet links one listener holds by default.
pub const DEFAULT_MAX_UNAUTHENTICATED: usize = 4096;

/// Caps on the sockets a listener holds before they are links.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// Sockets that are not links (handshaking, probing, lingering after
    /// their close), in all: the listener's descriptor budget.
    pub max_unauthenticated: usize,
    /// The same, per source address group: an IPv4 address, or an IPv6
    /// /64 (one host may hold a whole /64; an IPv4-mapped IPv6 address
    /// counts as its IPv4 address).
    pub max_unauthenticated_per_ip: usize,
    /// After its FIN, a socket that did not become a link keeps reading
    /// and discarding until its peer closes, or for a time drawn uniformly
    /// from this range, or until it is evicted (docs §6).
    pub linger: (Duration, Duration),
    /// Links (authenticated) that may wait, beyond the accept queue of 128,
    /// for the application to take them, each for up to 10 s; a link past
    /// that is closed with "server busy" (docs §6).
    pub max_waiting_links: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            max_unauthenticated: DEFAULT_MAX_UNAUTHENTICATED,
            max_unauthenticated_per_ip: DEFAULT_MAX_UNAUTHENTICATED / 4,
            linger: (Duration::from_secs(15), Duration::from_secs(45)),
            max_waiting_links: 1024,
        }
    }
}

impl ServerLimits {
    /// The caps for a process whose open-file limit is `soft`, shared by
    /// `listeners` link listeners: of the descriptors beyond
    /// [`RESERVED_DESCRIPTORS`], each listener's share is split in half,
    /// one half for sockets that are not links yet and the other left to
    /// links; at most [`DEFAULT_MAX_UNAUTHENTICATED`], a quarter of that
    /// per address group.
    pub fn for_open_files(soft: u64, listeners: usize) -> Self {
        let share = soft.saturating_sub(RESERVED_DESCRIPTORS) / listeners.max(1) as u64;
        let max = usize::try_from(share / 2)
            .unwrap_or(usize::MAX)
            .clamp(1, DEFAULT_MAX_UNAUTHENTICATED);
        Self {
            max_unauthenticated: max,
            max_unauthenticated_per_ip: (max / 4).max(1),
            ..Self::default()
        }
    }

    /// The descriptors `for_open_files(soft, listeners)` leaves to one
    /// listener's links (authenticated): its share less its admission table.
    pub fn link_descriptors(soft: u64, listeners: usize) -> u64 {
        let share = soft.saturating_sub(RESERVED_DESCRIPTORS) / listeners.max(1) as u64;
        let table = Self::for_open_files(soft, listeners).max_unauthenticated as u64;
        share.saturating_sub(table)
    }

    /// [`Self::link_descriptors`] under this process's soft open-file limit
    /// as it is now; `None` if it cannot be read.
    pub fn link_descriptors_of_this_process(listeners: usize) -> Option<u64> {
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .ok()
            .map(|(soft, _)| Self::link_descriptors(soft, listeners))
    }

    /// [`Self::for_open_files`] with this process's soft open-file limit as
    /// it is now (raise it first: `cipherlink link serve` and the proxy
    /// raise it to the hard limit at start); the defaults if it cannot be read.
    pub fn for_this_process(listeners: usize) -> Self {
        match nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE) {
            Ok((soft, _)) => Self::for_open_files(soft, listeners),
            Err(_) => Self::default(),
        }
    }
}

/// The address group a per-address cap counts: an IPv6 /64 is one host's
/// (an ISP hands a whole /64 to one customer), an IPv4-mapped IPv6 address
/// is its IPv4 address.
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

#[derive(Default)]
struct Signal {
    evicted: AtomicBool,
    notify: Notify,
}

struct Entry {
    group: IpAddr,
    closing: bool,
    signal: Arc<Signal>,
}

/// One group's entries, oldest first, by phase.
#[derive(Default)]
struct Group {
    live: VecDeque<u64>,
    closing: VecDeque<u64>,
}

impl Group {
    fn len(&self) -> usize {
        self.live.len() + self.closing.len()
    }
}

#[derive(Default)]
struct Table {
    next: u64,
    entries: HashMap<u64, Entry>,
    /// Ids by age (admission order), by phase.
    live: BTreeSet<u64>,
    closing: BTreeSet<u64>,
    groups: HashMap<IpAddr, Group>,
}

impl Table {
    fn remove(&mut self, id: u64) -> Option<Entry> {
        let e = self.entries.remove(&id)?;
        if e.closing {
            self.closing.remove(&id);
        } else {
            self.live.remove(&id);
        }
        if let Some(g) = self.groups.get_mut(&e.group) {
            let q = if e.closing {
                &mut g.closing
            } else {
                &mut g.live
            };
            q.retain(|&x| x != id);
            if g.len() == 0 {
                self.groups.remove(&e.group);
            }
        }
        Some(e)
    }

    fn evict(&mut self, id: u64) {
        if let Some(e) = self.remove(id) {
            e.signal.evicted.store(true, Ordering::Release);
            // Stored if the socket's task is not waiting yet.
            e.signal.notify.notify_one();
        }
    }

    fn set_closing(&mut self, id: u64) {
        let Some(e) = self.entries.get_mut(&id) else {
            return;
        };
        if e.closing {
            return;
        }
        e.closing = true;
        self.live.remove(&id);
        self.closing.insert(id);
        if let Some(g) = self.groups.get_mut(&e.group) {
            g.live.retain(|&x| x != id);
            g.closing.push_back(id);
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
    signal: Arc<Signal>,
}

impl Gate {
    pub(crate) fn new(limits: ServerLimits) -> Arc<Self> {
        Arc::new(Self {
            limits: ServerLimits {
                max_unauthenticated: limits.max_unauthenticated.max(1),
                max_unauthenticated_per_ip: limits.max_unauthenticated_per_ip.max(1),
                ..limits
            },
            table: Mutex::new(Table::default()),
        })
    }

    pub(crate) fn limits(&self) -> &ServerLimits {
        &self.limits
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits a socket from `ip`, evicting the oldest over a cap (a
    /// lingering socket before a handshaking one).
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Ticket {
        let group = address_group(ip);
        let mut t = self.lock();
        let oldest_of_group = t
            .groups
            .get(&group)
            .filter(|g| g.len() >= self.limits.max_unauthenticated_per_ip)
            .and_then(|g| g.closing.front().or(g.live.front()).copied());
        if let Some(id) = oldest_of_group {
            t.evict(id);
        }
        while t.entries.len() >= self.limits.max_unauthenticated {
            let Some(id) = t.closing.first().or(t.live.first()).copied() else {
                break;
            };
            t.evict(id);
        }
        let id = t.next;
        t.next += 1;
        let signal = Arc::new(Signal::default());
        t.entries.insert(
            id,
            Entry {
                group,
                closing: false,
                signal: Arc::clone(&signal),
            },
        );
        t.live.insert(id);
        t.groups.entry(group).or_default().live.push_back(id);
        Ticket {
            gate: Arc::clone(self),
            id,
            signal,
        }
    }

    /// Sockets holding a ticket.
    pub(crate) fn len(&self) -> usize {
        self.lock().entries.len()
    }
}

impl Ticket {
    /// Completes when this socket was evicted to admit a newer one.
    pub(crate) async fn evicted(&self) {
        loop {
            let notified = self.signal.notify.notified();
            if self.is_evicted() {
                return;
            }
            notified.await;
        }
    }

    /// Whether this socket was evicted.
    pub(crate) fn is_evicted(&self) -> bool {
        self.signal.evicted.load(Ordering::Acquire)
    }

    /// The socket sent its FIN and lingers: the first to go when room is needed.
    pub(crate) fn closing(&self) {
        self.gate.lock().set_closing(self.id);
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

    fn gate(total: usize, per_ip: usize) -> Arc<Gate> {
        Gate::new(ServerLimits {
            max_unauthenticated: total,
            max_unauthenticated_per_ip: per_ip,
            ..ServerLimits::default()
        })
    }

    /// One IPv6 /64 is one address group; an IPv4-mapped address is its
    /// IPv4 address: over the per-address cap, the newer evicts the older.
    #[test]
    fn an_ipv6_slash_64_and_a_mapped_ipv4_address_count_as_one_address() {
        let g = gate(100, 1);
        let a = g.admit("2001:db8:1:2::1".parse().unwrap());
        let b = g.admit("2001:db8:1:2:ffff:ffff:ffff:ffff".parse().unwrap());
        assert!(a.is_evicted(), "one /64 is one group");
        let other = g.admit("2001:db8:1:3::1".parse().unwrap());
        assert!(
            !b.is_evicted() && !other.is_evicted(),
            "another /64 is another"
        );
        let v4 = g.admit("192.0.2.7".parse().unwrap());
        let mapped = g.admit("::ffff:192.0.2.7".parse().unwrap());
        assert!(v4.is_evicted(), "a v4-mapped address is its IPv4 address");
        assert!(!mapped.is_evicted());
        assert_eq!(g.len(), 3);
    }

    /// Over the total cap a lingering socket goes before a handshaking
    /// one, whatever their ages.
    #[test]
    fn lingering_sockets_are_evicted_before_handshaking_ones() {
        let g = gate(2, 2);
        let old = g.admit("192.0.2.1".parse().unwrap());
        let lingering = g.admit("192.0.2.2".parse().unwrap());
        lingering.closing();
        let new = g.admit("192.0.2.3".parse().unwrap());
        assert!(lingering.is_evicted());
        assert!(!old.is_evicted() && !new.is_evicted());
        assert_eq!(g.len(), 2);
    }

    #[test]
    fn the_caps_follow_the_open_file_limit() {
        let l = ServerLimits::for_open_files(1024, 1);
        assert_eq!(l.max_unauthenticated, 480);
        assert_eq!(l.max_unauthenticated_per_ip, 120);
        // Two listeners share it.
        assert_eq!(
            ServerLimits::for_open_files(1024, 2).max_unauthenticated,
            240
        );
        assert_eq!(
            ServerLimits::for_open_files(u64::MAX, 1).max_unauthenticated,
            DEFAULT_MAX_UNAUTHENTICATED
        );
        assert_eq!(ServerLimits::for_open_files(10, 1).max_unauthenticated, 1);
    }
}
