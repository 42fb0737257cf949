//! SeasideVPN's TYPHOON (`cipherlink-typhoon`) as a datagram subject: a
//! fresh 40-byte server key and 48-byte token per subject, as the crate's
//! tests make them, and its timers shortened ([`typhoon_timers`]) so that
//! a session starts in tens of milliseconds and handshakes every second
//! (SeasideVPN's defaults wait 3 to 13 s before answering an INIT).
//!
//! The timeline reads every datagram with the server key: a client INIT
//! opens with it and yields the session key, which opens the server INIT
//! and every message after. Classes: INITs are the handshake, a handshake
//! alone is a keepalive, data (with a handshake riding on it or not) is
//! data, a termination is the close.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use cipherlink_typhoon::driver::{self, Admit, TyphoonListener, TyphoonReader, TyphoonWriter};
use cipherlink_typhoon::wire::{self, Message};
use cipherlink_typhoon::{ServerKey, SessionKey, TyphoonSettings};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use zeroize::Zeroizing;

use super::datagram::{DatagramSession, DatagramSubject};
use super::{PacketClass, SubjectError};

/// TYPHOON's timers for the lab: INITs answered after 25-50 ms, a
/// handshake every 0.5-1 s, RTT within 50-200 ms and its timeout within
/// 0.3-1 s. `stale`: 3 unanswered handshakes give the session up (the
/// bound the stale scenario checks, [`gone_bound`]); otherwise
/// SeasideVPN's 12, so that 30% loss both ways does not end a session.
/// Tails at most 64 bytes: every datagram of the exchange stays within
/// one 1500-byte packet.
pub fn typhoon_timers(stale: bool) -> TyphoonSettings {
    TyphoonSettings {
        default_rtt: 100,
        min_rtt: 50,
        max_rtt: 200,
        min_timeout: 300,
        max_timeout: 1_000,
        default_timeout: 500,
        min_next_in: 500,
        max_next_in: 1_000,
        max_retries: if stale { 3 } else { 12 },
        max_tail_length: 64,
        ..TyphoonSettings::default()
    }
}

/// The longest a TYPHOON client takes to give up on a silent server: it
/// may have just slept into the server's longest `next_in`, then each of
/// its `MAX_RETRIES` handshakes is offered to data for `2 × RTT` and
/// waited for `next_in + timeout` (docs/typhoon-wire.md §3).
pub fn gone_bound(s: &TyphoonSettings) -> Duration {
    let attempt = 2 * s.max_rtt + s.max_next_in + s.max_timeout;
    Duration::from_millis(s.max_next_in + u64::from(s.max_retries) * attempt)
}

/// TYPHOON with a fresh key and token.
#[derive(Clone)]
pub struct Typhoon {
    key: ServerKey,
    token: Arc<Zeroizing<Vec<u8>>>,
    settings: TyphoonSettings,
}

impl Typhoon {
    /// A server key, a 48-byte token and `settings` (e.g. [`typhoon_timers`]).
    pub fn new(settings: TyphoonSettings) -> Self {
        let mut rng = StdRng::from_os_rng();
        let key = ServerKey::generate(&mut rng);
        let mut token = Zeroizing::new(vec![0u8; 48]);
        rng.fill_bytes(&mut token);
        Typhoon {
            key,
            token: Arc::new(token),
            settings,
        }
    }
}

fn err(stage: &'static str, reason: impl std::fmt::Display) -> SubjectError {
    SubjectError::new("typhoon", stage, reason)
}

impl DatagramSubject for Typhoon {
    type Session = TyphoonChaosSession;
    type Listening = TyphoonListener;

    fn name(&self) -> &str {
        "typhoon"
    }

    fn classify_datagrams(&self, datagrams: &[(bool, &[u8])]) -> Vec<PacketClass> {
        typhoon_classes(&self.key, datagrams)
    }

    fn gone_within(&self) -> Option<Duration> {
        Some(gone_bound(&self.settings))
    }

    async fn listen(
        &self,
        addr: SocketAddr,
    ) -> Result<(TyphoonListener, SocketAddr), SubjectError> {
        let token = Arc::clone(&self.token);
        let admit: Admit = Arc::new(move |presented: &[u8]| {
            use subtle::ConstantTimeEq;
            let same = presented.len() == token.len() && bool::from(presented.ct_eq(&token));
            same.then(|| "chaos".to_string())
        });
        let listener = TyphoonListener::bind(
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

    async fn take(
        &self,
        listening: &mut TyphoonListener,
    ) -> Result<TyphoonChaosSession, SubjectError> {
        match listening.accept().await {
            Some(accepted) => Ok(TyphoonChaosSession::new(accepted.session)),
            None => Err(err("accept", "the listener stopped")),
        }
    }

    async fn dial(&self, server: SocketAddr) -> Result<TyphoonChaosSession, SubjectError> {
        let session = driver::connect(
            &server.to_string(),
            self.key.public(),
            &self.token,
            &self.settings,
        )
        .await
        .map_err(|e| err("connect", e))?;
        Ok(TyphoonChaosSession::new(session))
    }
}

/// A TYPHOON session; its writer goes with the termination.
pub struct TyphoonChaosSession {
    reader: TyphoonReader,
    writer: Option<TyphoonWriter>,
}

impl TyphoonChaosSession {
    fn new(session: driver::TyphoonSession) -> Self {
        TyphoonChaosSession {
            reader: session.reader,
            writer: Some(session.writer),
        }
    }
}

impl DatagramSession for TyphoonChaosSession {
    async fn send(&mut self, datagram: &[u8]) -> Result<(), SubjectError> {
        let writer = self
            .writer
            .as_mut()
            .ok_or_else(|| err("send", "the session was closed here"))?;
        writer.send(datagram).await.map_err(|e| err("send", e))
    }

    async fn recv(&mut self) -> Result<Option<Vec<u8>>, SubjectError> {
        self.reader.recv().await.map_err(|e| err("recv", e))
    }

    /// Sends the termination, then waits (up to a second) for the
    /// driver's task to end: the termination is only queued for it, and a
    /// runtime ending first would drop it unsent.
    async fn close(&mut self) -> Result<(), SubjectError> {
        let Some(w) = self.writer.take() else {
            return Ok(());
        };
        w.terminate().await.map_err(|e| err("close", e))?;
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while let Ok(Some(_)) = self.reader.recv().await {}
        })
        .await;
        Ok(())
    }
}

/// The class of each TYPHOON datagram of a capture, read with the server
/// key: client INITs give the session keys that open everything else.
pub fn typhoon_classes(key: &ServerKey, datagrams: &[(bool, &[u8])]) -> Vec<PacketClass> {
    let mut sessions: Vec<SessionKey> = Vec::new();
    datagrams
        .iter()
        .map(|&(from_client, d)| {
            // The newest session first: a capture holds one or a few.
            for s in sessions.iter().rev() {
                if let Some(class) = message_class(s, from_client, d) {
                    return class;
                }
            }
            if from_client {
                if let Ok(init) = wire::parse_client_init(key, d) {
                    sessions.push(init.session);
                    return PacketClass::Handshake;
                }
            }
            PacketClass::Unknown
        })
        .collect()
}

fn message_class(s: &SessionKey, from_client: bool, d: &[u8]) -> Option<PacketClass> {
    if !from_client && wire::parse_server_init(s, d).is_ok() {
        return Some(PacketClass::Handshake);
    }
    Some(match wire::parse_message(s, d).ok()? {
        Message::Hdsk { data: None, .. } => PacketClass::Keepalive,
        Message::Hdsk { data: Some(_), .. } | Message::Data(_) => PacketClass::Data,
        Message::Term => PacketClass::Close,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::Capture;
    use crate::timeline::{timeline, DatagramClasses};
    use cipherlink_port::crypto::NONCE_LEN;
    use cipherlink_typhoon::wire::{ClientInitRandom, Pad, ServerInit};

    fn udp(from_client: bool, payload: &[u8]) -> Vec<u8> {
        let (c, s) = ([10, 66, 1, 2], [10, 66, 2, 2]);
        let (src, dst, sp, dp) = if from_client {
            (c, s, 40000, 7100)
        } else {
            (s, c, 7100, 40000)
        };
        let mut out = Vec::new();
        etherparse::PacketBuilder::ipv4(src, dst, 64)
            .udp(sp, dp)
            .write(&mut out, payload)
            .expect("packet");
        out
    }

    /// A session's datagrams as TYPHOON sends them, through a capture and
    /// the timeline: each classed by what it is, a corrupted copy invalid,
    /// another session's datagram unknown.
    #[test]
    fn a_capture_of_typhoon_reads_with_the_server_key() {
        let subject = Typhoon::new(typhoon_timers(false));
        let pad = Pad {
            nonce: [3; NONCE_LEN],
            tail: 5,
        };
        let random = ClientInitRandom {
            ephemeral: Zeroizing::new([9; 32]),
            n: [1, 2],
        };
        let (session, init) = wire::client_init(
            subject.key.public(),
            &random,
            &pad,
            77,
            wire::CLIENT_TYPE_CUSTOM,
            wire::CLIENT_VERSION,
            40,
            &subject.token,
        )
        .expect("client INIT");
        let server_init = ServerInit {
            packet_number: 77,
            status: wire::STATUS_SUCCESS,
            user_id: 7100,
            next_in: 700,
        };
        let other = Typhoon::new(typhoon_timers(false));
        let (_, foreign) = wire::client_init(
            other.key.public(),
            &random,
            &pad,
            1,
            wire::CLIENT_TYPE_CUSTOM,
            wire::CLIENT_VERSION,
            40,
            b"t",
        )
        .expect("another INIT");
        let mut corrupted = udp(true, &wire::data(&session, &pad, b"x").expect("data"));
        let last = corrupted.len() - 1;
        corrupted[last] ^= 4;
        let packets = [
            udp(true, &init),
            udp(
                false,
                &wire::server_init(&session, &pad, &server_init).expect("init"),
            ),
            udp(
                true,
                &wire::hdsk(&session, &pad, 5, 600, Some(b"data")).expect("hdsk"),
            ),
            udp(false, &wire::data(&session, &pad, b"echo").expect("data")),
            udp(
                false,
                &wire::hdsk(&session, &pad, 5, 600, None).expect("hdsk"),
            ),
            corrupted,
            udp(true, &foreign),
            udp(true, &wire::term(&session, &pad).expect("term")),
        ];
        let mut cap = Capture::new(Vec::new()).expect("pcap");
        for (i, p) in packets.iter().enumerate() {
            cap.write(Duration::from_millis(i as u64), p)
                .expect("write");
        }
        let t = timeline(&DatagramClasses(&subject), &cap.into_inner()).expect("timeline");
        let got: Vec<_> = t.iter().map(|p| (p.from_client, p.class)).collect();
        use PacketClass::*;
        assert_eq!(
            got,
            [
                (true, Handshake),
                (false, Handshake),
                (true, Data),
                (false, Data),
                (false, Keepalive),
                (true, Invalid),
                (true, Unknown),
                (true, Close),
            ]
        );
    }

    #[test]
    fn the_gone_bound_counts_every_retry() {
        // 1 s of sleep, then 3 × (2 × 0.2 + 1 + 1) s.
        assert_eq!(
            gone_bound(&typhoon_timers(true)),
            Duration::from_millis(8_200)
        );
        assert!(gone_bound(&typhoon_timers(false)) > Duration::from_secs(20));
    }
}
