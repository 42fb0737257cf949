//! Resumable sessions that do not outlive the certificates they were
//! verified with, on rustls. Resuming skips certificate verification, and
//! rustls (like OpenSSL) gives every resumed session a fresh ticket
//! lifetime, so without this a peer certificate kept being accepted,
//! through resumption after resumption, past its notAfter.
//!
//! - Server (client certificates): a session a ticket or the TLS 1.2
//!   session cache returns is refused when a client certificate it holds
//!   has expired; the client then gets a full handshake, in which its
//!   certificate is verified again. The certificates are read from rustls'
//!   stored session value (`ServerSessionValue`, whose encoding rustls
//!   exposes through `rustls::internal`; a value that does not read is
//!   refused, so a change of format costs resumption, never a check).
//! - Client: rustls' session values do not show the server's certificates,
//!   so each session is dated when it is stored: by the earliest notAfter
//!   among the chains verified for that server name (`DatingVerifier`
//!   records them) that have not expired yet. That is the session's own
//!   chain's or an earlier one, never later in practice; the Tunnel's
//!   check after a resumption (`handshake_checks`) reads the resumed
//!   session's actual certificates and refuses it if one expired.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ClientSessionStore, Tls12ClientSessionValue, Tls13ClientSessionValue};
use rustls::internal::msgs::codec::Codec;
use rustls::internal::msgs::persist::ServerSessionValue;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::{ProducesTickets, StoresServerSessions};
use rustls::{DigitallySignedStruct, NamedGroup, SignatureScheme};

use crate::verify::delegate_signature_checks;

/// Server names whose sessions a client keeps, as rustls'
/// `ClientSessionMemoryCache` of the default configuration.
const SERVERS: usize = 256;
/// TLS 1.3 tickets kept per server name (rustls keeps 8).
const TICKETS_PER_SERVER: usize = 8;
/// Certificate expiry dates remembered per server name.
const DATES_PER_SERVER: usize = 8;

/// The earliest notAfter of `certs` (Unix seconds); `None` if there are
/// none or one cannot be read (a session that cannot be dated is not kept).
pub(crate) fn earliest_not_after<'a>(certs: impl IntoIterator<Item = &'a [u8]>) -> Option<u64> {
    let mut earliest = None::<u64>;
    for der in certs {
        let not_after = u64::try_from(crate::credentials::not_after(der)?).unwrap_or(0);
        earliest = Some(earliest.map_or(not_after, |e| e.min(not_after)));
    }
    earliest
}

/// Whether a stored server session (rustls' encoded `ServerSessionValue`)
/// may be resumed at `now`: it reads, and no client certificate in it has
/// expired.
fn server_session_current(value: &[u8], now: UnixTime) -> bool {
    // The whole value must read as rustls reads it, so that the fields
    // read below are where rustls put them.
    if ServerSessionValue::read_bytes(value).is_err() {
        return false;
    }
    match client_chain(value) {
        Some(chain) if chain.is_empty() => true,
        Some(chain) => earliest_not_after(chain).is_some_and(|until| now.as_secs() < until),
        None => false,
    }
}

/// The client certificates (DER) in an encoded `ServerSessionValue`: an
/// optional SNI (u8 flag, u8-length name), version (2), cipher suite (2),
/// master secret (u8 length), extended master secret (1), then an
/// optional chain (u8 flag; u24-length list of u24-length certificates).
fn client_chain(value: &[u8]) -> Option<Vec<&[u8]>> {
    let mut r = Reader(value);
    if r.u8()? == 1 {
        let len = r.u8()?;
        r.skip(usize::from(len))?;
    }
    r.skip(4)?;
    let secret = r.u8()?;
    r.skip(usize::from(secret))?;
    r.skip(1)?;
    let mut chain = Vec::new();
    if r.u8()? != 1 {
        return Some(chain);
    }
    let len = r.u24()?;
    let mut list = Reader(r.take(len)?);
    while !list.0.is_empty() {
        let len = list.u24()?;
        chain.push(list.take(len)?);
    }
    Some(chain)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let taken = self.0.get(..n)?;
        self.0 = &self.0[n..];
        Some(taken)
    }

    fn skip(&mut self, n: usize) -> Option<()> {
        self.take(n).map(|_| ())
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u24(&mut self) -> Option<usize> {
        self.take(3)
            .map(|b| usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]))
    }
}

/// A ticketer whose tickets resume only while their client certificates
/// are valid.
#[derive(Debug)]
pub(crate) struct DatedTickets(pub(crate) Arc<dyn ProducesTickets>);

impl ProducesTickets for DatedTickets {
    fn enabled(&self) -> bool {
        self.0.enabled()
    }

    fn lifetime(&self) -> u32 {
        self.0.lifetime()
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.0.encrypt(plain)
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        let plain = self.0.decrypt(cipher)?;
        server_session_current(&plain, UnixTime::now()).then_some(plain)
    }
}

/// A server session cache (TLS 1.2 session IDs) whose sessions resume only
/// while their client certificates are valid.
#[derive(Debug)]
pub(crate) struct DatedServerSessions(pub(crate) Arc<dyn StoresServerSessions>);

impl StoresServerSessions for DatedServerSessions {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        self.0.put(key, value)
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        let value = self.0.get(key)?;
        server_session_current(&value, UnixTime::now()).then_some(value)
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        let value = self.0.take(key)?;
        server_session_current(&value, UnixTime::now()).then_some(value)
    }

    fn can_cache(&self) -> bool {
        self.0.can_cache()
    }
}

/// A client's sessions, each kept with the Unix second from which it is
/// not offered (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct DatedClientSessions {
    inner: Mutex<Servers>,
}

#[derive(Debug, Default)]
struct Servers {
    by_name: HashMap<ServerName<'static>, Server>,
    /// Names in the order first seen, to evict the oldest.
    order: VecDeque<ServerName<'static>>,
}

#[derive(Debug, Default)]
struct Server {
    kx_hint: Option<NamedGroup>,
    tls12: Option<(Tls12ClientSessionValue, u64)>,
    tls13: VecDeque<(Tls13ClientSessionValue, u64)>,
    /// The earliest notAfter of each chain verified for this name.
    verified_until: Vec<u64>,
}

impl Servers {
    fn server(&mut self, name: &ServerName<'static>) -> &mut Server {
        if !self.by_name.contains_key(name) {
            if self.order.len() >= SERVERS {
                if let Some(oldest) = self.order.pop_front() {
                    self.by_name.remove(&oldest);
                }
            }
            self.order.push_back(name.clone());
        }
        self.by_name.entry(name.clone()).or_default()
    }
}

impl Server {
    /// Until when a session stored now may be offered: the earliest
    /// notAfter of the chains verified for this name that have not expired.
    fn session_until(&mut self, now: u64) -> Option<u64> {
        self.verified_until.retain(|&until| now < until);
        self.verified_until.iter().copied().min()
    }
}

impl DatedClientSessions {
    /// Runs `f` on `name`'s entry (made if new) at the current second.
    fn with<T>(
        &self,
        name: &ServerName<'static>,
        f: impl FnOnce(&mut Server, u64) -> T,
    ) -> Option<T> {
        let now = UnixTime::now().as_secs();
        let mut servers = self.inner.lock().ok()?;
        Some(f(servers.server(name), now))
    }

    /// Runs `f` on `name`'s entry if there is one.
    fn with_known<T>(
        &self,
        name: &ServerName<'_>,
        f: impl FnOnce(&mut Server, u64) -> Option<T>,
    ) -> Option<T> {
        let now = UnixTime::now().as_secs();
        let mut servers = self.inner.lock().ok()?;
        f(servers.by_name.get_mut(&name.to_owned())?, now)
    }

    /// A chain verified for `name`, valid until `until`.
    fn verified(&self, name: &ServerName<'static>, until: u64) {
        self.with(name, |server, now| {
            server.verified_until.retain(|&u| now < u);
            if !server.verified_until.contains(&until) {
                server.verified_until.push(until);
            }
            // Keep the earliest: a session dated too early only costs a
            // full handshake.
            server.verified_until.sort_unstable();
            server.verified_until.truncate(DATES_PER_SERVER);
        });
    }
}

impl ClientSessionStore for DatedClientSessions {
    fn set_kx_hint(&self, server_name: ServerName<'static>, group: NamedGroup) {
        self.with(&server_name, |server, _| server.kx_hint = Some(group));
    }

    fn kx_hint(&self, server_name: &ServerName<'_>) -> Option<NamedGroup> {
        self.with_known(server_name, |server, _| server.kx_hint)
    }

    fn set_tls12_session(&self, server_name: ServerName<'static>, value: Tls12ClientSessionValue) {
        self.with(&server_name, |server, now| {
            server.tls12 = server.session_until(now).map(|until| (value, until));
        });
    }

    fn tls12_session(&self, server_name: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        self.with_known(server_name, |server, now| match &server.tls12 {
            Some((value, until)) if now < *until => Some(value.clone()),
            _ => {
                server.tls12 = None;
                None
            }
        })
    }

    fn remove_tls12_session(&self, server_name: &ServerName<'static>) {
        self.with_known(server_name, |server, _| server.tls12.take());
    }

    fn insert_tls13_ticket(
        &self,
        server_name: ServerName<'static>,
        value: Tls13ClientSessionValue,
    ) {
        self.with(&server_name, |server, now| {
            // A ticket that cannot be dated is not kept.
            let Some(until) = server.session_until(now) else {
                return;
            };
            if server.tls13.len() >= TICKETS_PER_SERVER {
                server.tls13.pop_front();
            }
            server.tls13.push_back((value, until));
        });
    }

    fn take_tls13_ticket(
        &self,
        server_name: &ServerName<'static>,
    ) -> Option<Tls13ClientSessionValue> {
        self.with_known(server_name, |server, now| {
            server.tls13.retain(|(_, until)| now < *until);
            server.tls13.pop_back().map(|(value, _)| value)
        })
    }
}

/// A client's server verifier that tells `sessions` the expiry of each
/// chain it accepted, to date the sessions that follow.
#[derive(Debug)]
pub(crate) struct DatingVerifier {
    pub(crate) inner: Arc<dyn ServerCertVerifier>,
    pub(crate) sessions: Arc<DatedClientSessions>,
}

impl ServerCertVerifier for DatingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        let chain =
            std::iter::once(end_entity.as_ref()).chain(intermediates.iter().map(|c| c.as_ref()));
        if let Some(until) = earliest_not_after(chain) {
            self.sessions.verified(&server_name.to_owned(), until);
        }
        Ok(verified)
    }

    delegate_signature_checks!();
}
