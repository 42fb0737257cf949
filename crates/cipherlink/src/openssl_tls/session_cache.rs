//! A client's resumable sessions, per server name, bounded like rustls'
//! `ClientSessionMemoryCache` (256 servers). A TLS 1.3 ticket is used once:
//! the connection that resumes takes it, and the server's next ticket
//! replaces it.
//!
//! Sessions are kept encoded (DER) and decoded when used: a session object
//! is shared with the connection that received it, and OpenSSL marks it
//! not resumable when that connection is dropped without close_notify
//! (`ssl_clear_bad_session`), which would spoil the cached one too.
//!
//! Each session is kept with the earliest notAfter of the chain the server
//! was verified through (trust anchor and intermediates from the store
//! included, which OpenSSL dates), and is not offered from then on:
//! resuming skips certificate verification, so a session must not outlive
//! what was verified (OpenSSL would resume it for as long as the server's
//! ticket lifetime says).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use openssl::ssl::{SslSession, SslSessionRef};
use rustls::pki_types::UnixTime;

const SERVERS: usize = 256;
/// As rustls keeps per server (its `MAX_TLS13_TICKETS_PER_SERVER`).
const PER_SERVER: usize = 8;

#[derive(Default)]
pub(crate) struct SessionCache {
    inner: Mutex<Inner>,
}

/// A session (DER) and the Unix second from which it is not offered.
struct Kept {
    der: Vec<u8>,
    until: u64,
}

#[derive(Default)]
struct Inner {
    sessions: HashMap<String, VecDeque<Kept>>,
    /// Servers in the order first seen, to evict the oldest.
    order: VecDeque<String>,
}

impl SessionCache {
    /// Keeps `session` for `server` until `until` (Unix seconds).
    pub(crate) fn put(&self, server: &str, session: &SslSessionRef, until: u64) {
        if until <= UnixTime::now().as_secs() {
            return;
        }
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
        queue.push_back(Kept { der, until });
    }

    /// The newest session for `server` still within its certificates'
    /// validity, and until when it is (older ones past it are dropped).
    pub(crate) fn take(&self, server: &str) -> Option<(SslSession, u64)> {
        let now = UnixTime::now().as_secs();
        let mut inner = self.inner.lock().ok()?;
        let queue = inner.sessions.get_mut(server)?;
        queue.retain(|kept| now < kept.until);
        let kept = queue.pop_back()?;
        let session = SslSession::from_der(&kept.der).ok()?;
        Some((session, kept.until))
    }
}

#[cfg(test)]
mod tests {
    use crate::certs::{self, CertOptions};
    use crate::{Context, Implementation};

    /// Our cache is the only one: OpenSSL's own (up to 20,480 sessions per
    /// Context, never read) stays empty however many sessions come.
    #[tokio::test]
    async fn openssl_keeps_no_client_sessions_of_its_own() {
        let bundle = certs::generate(&CertOptions::default()).expect("test PKI");
        let server = Context::server(&bundle.server_config()).expect("server");
        let mut config = bundle.client_config();
        config.implementation = Implementation::Openssl;
        config.server_name = Some("localhost".into());
        let client = Context::client(&config).expect("client");
        for _ in 0..4 {
            let (a, b) = tokio::io::duplex(64 * 1024);
            let serve = async {
                let mut tunnel = server.accept(a, "client").await.expect("accept");
                tunnel.write_all(b"hi").await.expect("write");
                tunnel
            };
            let call = async {
                let mut tunnel = client.connect(b, "server").await.expect("connect");
                // Reading takes the ticket in.
                let mut hi = [0u8; 2];
                tunnel.read_exact(&mut hi).await.expect("read");
                // Closed cleanly: OpenSSL drops the session of a
                // connection that was not (`ssl_clear_bad_session`).
                tunnel.close().await.expect("close");
                tunnel
            };
            let _ = tokio::join!(serve, call);
        }
        assert_eq!(client.openssl_internal_sessions(), Some(0));
    }
}
