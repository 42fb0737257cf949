//! What one connection may hold: its place among the connections of its
//! remote address (a per-address cap), and whether a request is under way
//! on it (an idle timeout). Together with the server's global cap they keep
//! one peer from holding every slot, and an unused connection from holding
//! one forever.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// Open connections per remote address.
#[derive(Debug, Default)]
pub(crate) struct AddressSlots(Mutex<HashMap<IpAddr, usize>>);

/// One connection's place in [`AddressSlots`]; given back when dropped,
/// however the connection's task ends.
pub(crate) struct AddressSlot {
    slots: Arc<AddressSlots>,
    ip: IpAddr,
}

impl AddressSlots {
    pub(crate) fn take(slots: &Arc<AddressSlots>, ip: IpAddr, cap: usize) -> Option<AddressSlot> {
        let ip = ip.to_canonical();
        let mut map = slots.0.lock().unwrap_or_else(|p| p.into_inner());
        let open = map.entry(ip).or_insert(0);
        if *open >= cap {
            return None;
        }
        *open += 1;
        Some(AddressSlot {
            slots: slots.clone(),
            ip,
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut map = self.slots.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(open) = map.get_mut(&self.ip) {
            *open -= 1;
            if *open == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// Whether a request is under way on a connection, and since when none
/// is. Cheap to clone; the clones are the same connection's.
#[derive(Debug, Clone)]
pub(crate) struct Activity(Arc<Mutex<ActivityState>>);

#[derive(Debug)]
struct ActivityState {
    in_flight: usize,
    idle_since: Instant,
}

impl Activity {
    /// A connection that has just opened: idle from now.
    pub(crate) fn new() -> Activity {
        Activity(Arc::new(Mutex::new(ActivityState {
            in_flight: 0,
            idle_since: Instant::now(),
        })))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ActivityState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts a request as under way until the guard is dropped.
    pub(crate) fn start(&self) -> InFlight {
        self.lock().in_flight += 1;
        InFlight(self.clone())
    }

    /// `None` when the connection has been idle for `timeout`; otherwise
    /// when to ask again.
    pub(crate) fn idle_until(&self, timeout: Duration) -> Option<Instant> {
        let a = self.lock();
        let now = Instant::now();
        if a.in_flight == 0 && a.idle_since + timeout <= now {
            return None;
        }
        Some(a.idle_since.max(now) + timeout)
    }
}

/// A request under way; see [`Activity::start`].
pub(crate) struct InFlight(Activity);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut a = self.0.lock();
        a.in_flight -= 1;
        a.idle_since = Instant::now();
    }
}
