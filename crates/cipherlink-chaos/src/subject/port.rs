//! SeasideVPN's PORT wire (`cipherlink-port`) as a subject: a fresh
//! 40-byte server key and token per subject, PORT's default settings (its
//! random tails included, as in seed 003's experiment). PORT makes its own
//! connections, two per session (the INIT to the listener, then the data
//! connection to the per-user port the server names), so it is a
//! [`LabSubject`] of its own, not a stream subject; it needs the TUN lab,
//! where every port of namespace B is reached through the router.
//!
//! The timeline reads every message of the capture with the server's key:
//! the client INIT opens with it, and the session key it yields opens the
//! server INIT and the data connection's headers. Packets are classed as
//! the seed's plots class them: initialization (handshake), data,
//! termination (close), TCP only (control).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use cipherlink_port::driver::{self, Admit, PortListener, PortSession};
use cipherlink_port::wire::{
    self, Kind, CLIENT_INIT_HEADER_LEN, MESSAGE_HEADER_LEN, SERVER_INIT_HEADER_LEN,
};
use cipherlink_port::{PortSettings, ServerKey, SessionKey};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use zeroize::Zeroizing;

use super::{tcp_gives_up_within, Dial, LabSubject, PacketClass, Session, Subject, SubjectError};
use crate::tls_records::{RecordMap, Span};

/// SeasideVPN's PORT with a fresh key and token.
#[derive(Clone)]
pub struct Port {
    key: ServerKey,
    token: Arc<Zeroizing<Vec<u8>>>,
    settings: PortSettings,
}

impl Default for Port {
    fn default() -> Self {
        Port::new()
    }
}

impl Port {
    /// A server key, a 48-byte token (a link token's size) and PORT's
    /// default settings (`PORT_TIMEOUT` 32 s bounds each step of the dance
    /// and the rest of a message once it has started).
    pub fn new() -> Self {
        let mut rng = StdRng::from_os_rng();
        let key = ServerKey::generate(&mut rng);
        let mut token = Zeroizing::new(vec![0u8; 48]);
        rng.fill_bytes(&mut token);
        Port {
            key,
            token: Arc::new(token),
            settings: PortSettings::default(),
        }
    }
}

fn err(stage: &'static str, reason: impl std::fmt::Display) -> SubjectError {
    SubjectError::new("port", stage, reason)
}

impl Subject for Port {
    type Session = PortChaosSession;

    fn name(&self) -> &str {
        "port"
    }

    /// Without the key nothing in PORT's bytes has a fixed shape: every
    /// payload is data as far as anyone can tell.
    fn classify(&self, _payload: &[u8]) -> PacketClass {
        PacketClass::Data
    }

    fn decode_records(&self, pcap: &[u8]) -> Option<RecordMap> {
        Some(port_records(pcap, &self.key))
    }
}

impl LabSubject for Port {
    type Listening = PortListener;

    async fn listen(&self, addr: SocketAddr) -> Result<(PortListener, SocketAddr), SubjectError> {
        let token = Arc::clone(&self.token);
        let admit: Admit = Arc::new(move |presented: &[u8]| {
            bool::from(subtle_eq(presented, &token)).then(|| "chaos".to_string())
        });
        let listener = PortListener::bind(
            &addr.to_string(),
            self.key.clone(),
            admit,
            self.settings.clone(),
        )
        .await
        .map_err(|e| err("accept", e))?;
        let local = listener.local_addr();
        Ok((listener, local))
    }

    async fn take(&self, listening: &mut PortListener) -> Result<PortChaosSession, SubjectError> {
        match listening.accept().await {
            Some(accepted) => Ok(PortChaosSession::new(accepted.session)),
            None => Err(err("accept", "the listener stopped")),
        }
    }

    async fn dial(&self, dial: &Dial) -> Result<PortChaosSession, SubjectError> {
        let session = driver::connect(
            &dial.server.to_string(),
            self.key.public(),
            &self.token,
            &self.settings,
        )
        .await
        .map_err(|e| err("connect", e))?;
        Ok(PortChaosSession::new(session))
    }

    fn needs_lab(&self) -> Option<String> {
        Some(
            "PORT's data connection goes to a second port the server names, which the stream \
             proxy (one connection to one address) cannot carry; run as root for the TUN lab"
                .into(),
        )
    }

    /// PORT relies on TCP (keepalive when idle, retransmission otherwise)
    /// and its driver makes its own sockets: namespace A's TCP gives up
    /// as `TCP_USER_TIMEOUT` would.
    fn prepare_client_namespace(&self, user_timeout: Option<Duration>) -> Result<(), SubjectError> {
        match user_timeout {
            Some(t) => tcp_gives_up_within(t).map_err(|e| err("connect", e)),
            None => Ok(()),
        }
    }
}

fn subtle_eq(a: &[u8], b: &[u8]) -> subtle::Choice {
    use subtle::ConstantTimeEq;
    if a.len() != b.len() {
        return subtle::Choice::from(0);
    }
    a.ct_eq(b)
}

/// A PORT session: each received message's bytes, handed out up to the
/// size the lab asks for.
pub struct PortChaosSession {
    session: PortSession,
    pending: Vec<u8>,
}

impl PortChaosSession {
    fn new(session: PortSession) -> Self {
        PortChaosSession {
            session,
            pending: Vec::new(),
        }
    }
}

impl Session for PortChaosSession {
    async fn send(&mut self, data: &[u8]) -> Result<(), SubjectError> {
        self.session
            .writer
            .send(data)
            .await
            .map_err(|e| err("send", e))
    }

    async fn recv(&mut self, max: usize) -> Result<Vec<u8>, SubjectError> {
        if self.pending.is_empty() {
            match self
                .session
                .reader
                .recv()
                .await
                .map_err(|e| err("recv", e))?
            {
                Some(message) => self.pending = message,
                None => return Ok(Vec::new()),
            }
        }
        let n = self.pending.len().min(max);
        Ok(self.pending.drain(..n).collect())
    }

    async fn close(&mut self) -> Result<(), SubjectError> {
        self.session
            .writer
            .terminate()
            .await
            .map_err(|e| err("close", e))
    }
}

/// Every PORT message of a capture: the INIT connections opened with the
/// server key, then each data connection with whichever session key opens
/// the most of its headers.
pub fn port_records(pcap: &[u8], key: &ServerKey) -> RecordMap {
    let mut sessions: Vec<SessionKey> = Vec::new();
    // First pass: the session keys the client INITs establish.
    let _ = RecordMap::from_streams(pcap, |up, _| {
        if let Some((session, _)) = client_init_span(up, key) {
            sessions.push(session);
        }
        [Vec::new(), Vec::new()]
    });
    RecordMap::from_streams(pcap, |up, down| {
        if let Some((session, up_end)) = client_init_span(up, key) {
            let down_spans = server_init_end(down, &session)
                .map(|end| vec![(0, end as u64, PacketClass::Handshake)])
                .unwrap_or_default();
            return [vec![(0, up_end as u64, PacketClass::Handshake)], down_spans];
        }
        let mut best: [Vec<Span>; 2] = [Vec::new(), Vec::new()];
        for s in &sessions {
            let tried = [message_spans(up, s), message_spans(down, s)];
            if tried[0].len() + tried[1].len() > best[0].len() + best[1].len() {
                best = tried;
            }
        }
        best
    })
}

/// The session key and the end of a client INIT at the start of `up`.
fn client_init_span(up: &[u8], key: &ServerKey) -> Option<(SessionKey, usize)> {
    let header: &[u8; CLIENT_INIT_HEADER_LEN] =
        up.get(..CLIENT_INIT_HEADER_LEN)?.try_into().ok()?;
    let h = wire::parse_client_init_header(key, header).ok()?;
    let end = CLIENT_INIT_HEADER_LEN + h.token_len + h.tail_len;
    Some((h.session, end.min(up.len())))
}

/// The end of the server INIT at the start of `down`.
fn server_init_end(down: &[u8], session: &SessionKey) -> Option<usize> {
    let header: &[u8; SERVER_INIT_HEADER_LEN] =
        down.get(..SERVER_INIT_HEADER_LEN)?.try_into().ok()?;
    let init = wire::parse_server_init(session, header).ok()?;
    Some((SERVER_INIT_HEADER_LEN + init.tail_len).min(down.len()))
}

/// Data and termination messages from the start of a data connection's
/// direction, until a header does not open (or the stream ends).
fn message_spans(stream: &[u8], session: &SessionKey) -> Vec<Span> {
    let mut spans = Vec::new();
    let mut at = 0usize;
    while let Some(header) = stream.get(at..at + MESSAGE_HEADER_LEN) {
        let Ok(header) = <&[u8; MESSAGE_HEADER_LEN]>::try_from(header) else {
            break;
        };
        let Ok(h) = wire::parse_message_header(session, header) else {
            break;
        };
        let end = (at + MESSAGE_HEADER_LEN + h.data_len + h.tail_len).min(stream.len());
        let class = match h.kind {
            Kind::Data => PacketClass::Data,
            Kind::Term => PacketClass::Close,
        };
        spans.push((at as u64, end as u64, class));
        if h.kind == Kind::Term {
            break;
        }
        at = end;
    }
    spans
}
