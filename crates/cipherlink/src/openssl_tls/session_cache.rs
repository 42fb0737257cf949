//! A client's resumable sessions, per server name, bounded like rustls'
//! `ClientSessionMemoryCache` (256 servers). A TLS 1.3 ticket is used once:
//! the connection that resumes takes it, and the server's next ticket
//! replaces it.
//!
//! Sessions are kept encoded (DER) and decoded when used: a session object
//! is shared with the connection that received it, and OpenSSL marks it
//! not resumable when that connection is dropped without close_notify
//! (`ssl_clear_bad_session`), which would spoil the cached one too.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use openssl::ssl::{SslSession, SslSessionRef};

const SERVERS: usize = 256;
/// As rustls keeps per server (its `MAX_TLS13_TICKETS_PER_SERVER`).
const PER_SERVER: usize = 8;

#[derive(Default)]
pub(crate) struct SessionCache {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    sessions: HashMap<String, VecDeque<Vec<u8>>>,
    /// Servers in the order first seen, to evict the oldest.
    order: VecDeque<String>,
}

impl SessionCache {
    pub(crate) fn put(&self, server: &str, session: &SslSessionRef) {
        let Ok(der) = session.to_der() else {
            return;
        };
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        if !inner.sessions.contains_key(server) {
            if inner.order.len() >= SERVERS {
                if let Some(oldest) = inner.order.pop_front() {
                    inner.sessions.remove(&oldest);
                }
            }
            inner.order.push_back(server.to_string());
        }
        let queue = inner.sessions.entry(server.to_string()).or_default();
        if queue.len() >= PER_SERVER {
            queue.pop_front();
        }
        queue.push_back(der);
    }

    pub(crate) fn take(&self, server: &str) -> Option<SslSession> {
        let mut inner = self.inner.lock().ok()?;
        let der = inner.sessions.get_mut(server)?.pop_back()?;
        SslSession::from_der(&der).ok()
    }
}
