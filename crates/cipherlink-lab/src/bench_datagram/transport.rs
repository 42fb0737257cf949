//! The datagram transports under test, one arm each: a client session
//! ([`connect`]) and a listener whose roles the cases need (answer every
//! message, count them, hold sessions). Plain UDP is the baseline: one
//! socket, no handshake, nothing kept per peer on the server. The link
//! protocol's datagram mode (`link`) and SeasideVPN's TYPHOON are the
//! encrypted ones.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::Serialize;
use tokio::net::UdpSocket;

use cipherlink_link::dgram::driver::{
    connect as link_connect, DgramListener, DgramReader, DgramWriter,
};
use cipherlink_link::dgram::DgramServerOptions;
use cipherlink_typhoon::driver::{
    connect as typhoon_connect, Admit, TyphoonListener, TyphoonReader, TyphoonWriter,
};
use cipherlink_typhoon::{PublicKey, ServerKey, TyphoonSettings};

use crate::LabError;

/// Longest datagram any transport here delivers (TYPHOON's 64 KiB bound).
const RECV_BUF: usize = 65_536;

/// A transport the bench measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    /// Plain UDP: the baseline every other row is divided by.
    Plain,
    /// SeasideVPN's TYPHOON (cipherlink-typhoon).
    Typhoon,
    /// The link protocol's datagram mode (cipherlink-link's `dgram`).
    Link,
}

impl Transport {
    /// Every transport this build has, in the order the bench runs them.
    pub const ALL: [Transport; 3] = [Transport::Plain, Transport::Typhoon, Transport::Link];

    /// Its name in `--transport` and in the report.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Plain => "plain",
            Transport::Typhoon => "typhoon",
            Transport::Link => "link",
        }
    }
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Transport {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Transport::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| format!("unknown datagram transport {s:?}; valid: plain, typhoon, link"))
    }
}

/// The keys and settings every transport's ends share for one run.
pub(super) struct Fixture {
    typhoon_key: ServerKey,
    typhoon_public: PublicKey,
    pub(super) typhoon_settings: TyphoonSettings,
    link_endpoint: Arc<cipherlink_link::ServerEndpoint>,
    link_client: cipherlink_link::ClientConfig,
}

const TOKEN: &[u8] = b"cipherlink-bench-datagram";

impl Fixture {
    pub(super) fn new(typhoon_settings: TyphoonSettings) -> Result<Fixture, LabError> {
        let mut rng = StdRng::from_os_rng();
        let typhoon_key = ServerKey::generate(&mut rng);
        let (link_endpoint, link_client) = link_fixture(&mut rng)?;
        Ok(Fixture {
            typhoon_public: *typhoon_key.public(),
            typhoon_key,
            typhoon_settings,
            link_endpoint,
            link_client,
        })
    }
}

impl Fixture {
    /// The link client's configuration.
    pub(super) fn link_client(&self) -> cipherlink_link::ClientConfig {
        self.link_client.clone()
    }
}

/// A link server key with one token, its endpoint (a replay filter of its
/// own, in memory) and the client's configuration; default parameters.
fn link_fixture(
    rng: &mut StdRng,
) -> Result<
    (
        Arc<cipherlink_link::ServerEndpoint>,
        cipherlink_link::ClientConfig,
    ),
    LabError,
> {
    use cipherlink_link::{ClientConfig, EndpointOptions, LinkParams, ServerEndpoint, TokenStore};
    let key = cipherlink_link::ServerKey::generate(rng);
    let server_key = *key.public();
    let mut tokens = TokenStore::new();
    let token = tokens
        .issue("bench", rng)
        .map_err(|e| err("issuing a link token", e))?;
    let options = EndpointOptions {
        private_replay: true,
        ..EndpointOptions::default()
    };
    let endpoint = ServerEndpoint::with_options(key, tokens, LinkParams::default(), options)
        .map_err(|e| err("the link endpoint", e))?;
    let client = ClientConfig {
        server_key,
        token,
        name: "bench".into(),
        params: LinkParams::default(),
    };
    Ok((Arc::new(endpoint), client))
}

fn err(what: &str, e: impl std::fmt::Display) -> LabError {
    LabError::Setup(format!("{what}: {e}"))
}

/// A client's session: messages both ways.
pub(super) struct Session {
    pub(super) reader: Reader,
    pub(super) writer: Writer,
}

/// The sending half of a [`Session`].
pub(super) enum Writer {
    Plain(Arc<UdpSocket>),
    Typhoon(TyphoonWriter),
    Link(DgramWriter),
}

/// The receiving half of a [`Session`].
pub(super) enum Reader {
    Plain(Arc<UdpSocket>),
    Typhoon(TyphoonReader),
    Link(DgramReader),
}

impl Writer {
    /// Sends one message.
    pub(super) async fn send(&mut self, data: &[u8]) -> Result<(), String> {
        match self {
            Writer::Plain(s) => s.send(data).await.map(drop).map_err(|e| e.to_string()),
            Writer::Typhoon(w) => w.send(data).await.map_err(|e| e.to_string()),
            Writer::Link(w) => w.send(data).await.map_err(|e| e.to_string()),
        }
    }

    /// Ends the session the transport's way (TYPHOON sends a termination).
    pub(super) async fn close(self) {
        match self {
            Writer::Plain(_) => {}
            Writer::Typhoon(w) => {
                let _ = w.terminate().await;
            }
            Writer::Link(w) => {
                let _ = w.close().await;
            }
        }
    }
}

impl Reader {
    /// The next message, into `buf`; `Ok(false)` when the peer ended the session.
    pub(super) async fn recv(&mut self, buf: &mut Vec<u8>) -> Result<bool, String> {
        match self {
            Reader::Plain(s) => {
                buf.resize(RECV_BUF, 0);
                let n = s.recv(buf).await.map_err(|e| e.to_string())?;
                buf.truncate(n);
                Ok(true)
            }
            Reader::Typhoon(r) => match r.recv().await.map_err(|e| e.to_string())? {
                Some(d) => {
                    *buf = d;
                    Ok(true)
                }
                None => Ok(false),
            },
            Reader::Link(r) => match r.recv().await.map_err(|e| e.to_string())? {
                Some(d) => {
                    *buf = d;
                    Ok(true)
                }
                None => Ok(false),
            },
        }
    }
}

/// Opens a session to `addr` from the calling runtime's network namespace.
pub(super) async fn connect(
    t: Transport,
    fx: &Fixture,
    addr: SocketAddr,
) -> Result<Session, String> {
    match t {
        Transport::Plain => {
            let local: SocketAddr = if addr.is_ipv4() {
                ([0, 0, 0, 0], 0).into()
            } else {
                (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
            };
            let s = UdpSocket::bind(local).await.map_err(|e| e.to_string())?;
            s.connect(addr).await.map_err(|e| e.to_string())?;
            let s = Arc::new(s);
            Ok(Session {
                reader: Reader::Plain(s.clone()),
                writer: Writer::Plain(s),
            })
        }
        Transport::Typhoon => {
            let s = typhoon_connect(
                &addr.to_string(),
                &fx.typhoon_public,
                TOKEN,
                &fx.typhoon_settings,
            )
            .await
            .map_err(|e| e.to_string())?;
            Ok(Session {
                reader: Reader::Typhoon(s.reader),
                writer: Writer::Typhoon(s.writer),
            })
        }
        Transport::Link => {
            let s = link_connect(&addr.to_string(), fx.link_client.clone())
                .await
                .map_err(|e| e.to_string())?;
            Ok(Session {
                reader: Reader::Link(s.reader),
                writer: Writer::Link(s.writer),
            })
        }
    }
}

/// A transport's server end, bound.
pub(super) enum Listener {
    Plain(UdpSocket),
    Typhoon(TyphoonListener),
    Link(DgramListener),
}

/// Binds `t`'s server end at `addr`, holding at most `max_sessions`.
pub(super) async fn listen(
    t: Transport,
    fx: &Fixture,
    addr: SocketAddr,
    max_sessions: usize,
) -> Result<Listener, LabError> {
    match t {
        Transport::Plain => UdpSocket::bind(addr)
            .await
            .map(Listener::Plain)
            .map_err(|source| LabError::Listen {
                who: "plain UDP",
                addr,
                source,
            }),
        Transport::Typhoon => {
            let admit: Admit = Arc::new(|token: &[u8]| (token == TOKEN).then(|| "bench".into()));
            TyphoonListener::bind_capped(
                &addr.to_string(),
                fx.typhoon_key.clone(),
                admit,
                fx.typhoon_settings.clone(),
                max_sessions,
            )
            .await
            .map(Listener::Typhoon)
            .map_err(|e| err(&format!("TYPHOON listener on {addr}"), e))
        }
        Transport::Link => {
            // The server's defaults, cookies under load included.
            let options = DgramServerOptions {
                max_sessions: max_sessions.max(1),
                ..DgramServerOptions::default()
            };
            DgramListener::bind(&addr.to_string(), Arc::clone(&fx.link_endpoint), options)
                .await
                .map(Listener::Link)
                .map_err(|e| err(&format!("link (UDP) listener on {addr}"), e))
        }
    }
}

impl Listener {
    /// The address clients connect to.
    pub(super) fn local_addr(&self) -> Result<SocketAddr, LabError> {
        match self {
            Listener::Plain(s) => s.local_addr().map_err(|source| LabError::Io {
                what: "the plain UDP listener's address",
                source,
            }),
            Listener::Typhoon(l) => Ok(l.local_addr()),
            Listener::Link(l) => Ok(l.local_addr()),
        }
    }

    /// The next session of an encrypted transport (`None` for plain UDP,
    /// which has none, or when the listener stopped).
    async fn accept(&mut self) -> Option<Session> {
        match self {
            Listener::Plain(_) => None,
            Listener::Typhoon(l) => l.accept().await.map(|a| Session {
                reader: Reader::Typhoon(a.session.reader),
                writer: Writer::Typhoon(a.session.writer),
            }),
            Listener::Link(l) => l.accept().await.map(|a| Session {
                reader: Reader::Link(a.session.reader),
                writer: Writer::Link(a.session.writer),
            }),
        }
    }

    /// Answers every message of every session with itself, until dropped.
    pub(super) async fn echo(self) {
        let mut l = match self {
            Listener::Plain(s) => {
                let mut buf = vec![0u8; RECV_BUF];
                while let Ok((n, from)) = s.recv_from(&mut buf).await {
                    let _ = s.send_to(&buf[..n], from).await;
                }
                return;
            }
            l => l,
        };
        while let Some(mut s) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                while let Ok(true) = s.reader.recv(&mut buf).await {
                    if s.writer.send(&buf).await.is_err() {
                        break;
                    }
                }
            });
        }
    }

    /// Counts the messages and bytes of the first session (plain: of every
    /// sender) into `count`, until dropped.
    pub(super) async fn sink(self, count: Arc<Counter>) {
        let mut l = match self {
            Listener::Plain(s) => {
                let mut buf = vec![0u8; RECV_BUF];
                while let Ok(n) = s.recv(&mut buf).await {
                    count.add(n);
                }
                return;
            }
            l => l,
        };
        let Some(s) = l.accept().await else {
            return;
        };
        let mut r = s.reader;
        // The writer half stays open: dropping it would end the session.
        let _w = s.writer;
        let mut buf = Vec::new();
        while let Ok(true) = r.recv(&mut buf).await {
            count.add(buf.len());
        }
    }

    /// Answers every message, and keeps every session that completes its
    /// handshake until `done` resolves: the server end of the idle case.
    pub(super) async fn hold(self, done: tokio::sync::oneshot::Receiver<()>) -> usize {
        let mut l = match self {
            Listener::Plain(s) => {
                // Plain UDP keeps nothing per peer: answering is all it does.
                tokio::select! {
                    () = Listener::Plain(s).echo() => {}
                    _ = done => {}
                }
                return 0;
            }
            l => l,
        };
        let mut held = Vec::new();
        let mut done = done;
        loop {
            tokio::select! {
                acc = l.accept() => match acc {
                    Some(s) => held.push(s),
                    None => break,
                },
                _ = &mut done => break,
            }
        }
        held.len()
    }
}

/// Messages and bytes a sink has counted.
#[derive(Debug, Default)]
pub(super) struct Counter {
    messages: AtomicU64,
    bytes: AtomicU64,
}

impl Counter {
    fn add(&self, n: usize) {
        self.messages.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// (messages, bytes) so far.
    pub(super) fn read(&self) -> (u64, u64) {
        (
            self.messages.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }
}
