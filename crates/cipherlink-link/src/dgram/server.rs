//! The server of datagram sessions, sans-IO (docs §11): one state machine
//! for every client of one UDP socket. Datagrams and the time go in;
//! datagrams (with their destination), events and the next deadline come
//! out. Handshakes are in this file; open sessions in `server_sessions.rs`.

use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use zeroize::Zeroize;

use super::cookie::CookieJar;
use super::expiring::Expiring;
use super::records::{Receiver, Sender};
use super::session::Established;
use super::wire::{
    self, HeaderOpener, HeaderSealer, HANDSHAKE_DATAGRAM, MIN_RECORD_DATAGRAM, MSG2_MAX_PAD,
    PIECE1_HEADER,
};
use crate::error::Error;
use crate::proto::endpoint::{HandshakeSlot, Verdict};
use crate::proto::handshake::{self, Mode, Msg1Header, ServerMsg1, MSG1_HEADER};
use crate::proto::revocation::Revocation;
use crate::proto::rng::ErasingRng;
use crate::proto::{Entropy, ServerEndpoint};
use crate::replay_file::ReplayCommit;
use crate::replay_store::Recorded;

pub use super::server_sessions::ServerStats;
use super::server_sessions::{Session, Timer};

/// How long the second piece of a first message may lag the first (and
/// the other way round), as the stream mode's `FIRST_MESSAGE_TIME`.
pub const PIECE_TIME: Duration = Duration::from_secs(2);
/// First pieces waiting for their second, at most.
pub const MAX_PENDING: usize = 1024;
/// Second pieces waiting for their first, at most.
pub const MAX_STRAYS: usize = 256;
/// msg2 is sent again for a resent first message at most this often.
pub const MSG2_RESENDS: u8 = 3;
/// Default cap on open sessions.
pub const DEFAULT_MAX_SESSIONS: usize = 16_384;
/// Default handshakes a second before cookies are required.
pub const DEFAULT_COOKIE_THRESHOLD: u32 = 1000;
/// Cookie replies a second, at most.
pub const MAX_COOKIE_REPLIES: u32 = 4096;

/// How a datagram server is built.
#[derive(Debug, Clone)]
pub struct DgramServerOptions {
    /// Open sessions at most (§11.6: a newcomer displaces a session of a
    /// token that holds more than its own).
    pub max_sessions: usize,
    /// Handshakes a second beyond which first messages need a cookie
    /// (0: always).
    pub cookie_threshold: u32,
}

impl Default for DgramServerOptions {
    fn default() -> Self {
        Self {
            max_sessions: DEFAULT_MAX_SESSIONS,
            cookie_threshold: DEFAULT_COOKIE_THRESHOLD,
        }
    }
}

/// What the server has to say.
#[derive(Debug)]
pub enum ServerEvent {
    /// A client's session opened.
    Accepted {
        /// The session.
        sid: u64,
        /// Its address.
        peer: SocketAddr,
        /// The token's client name.
        name: String,
    },
    /// One datagram of a session's data.
    Data {
        /// The session.
        sid: u64,
        /// The data.
        data: Vec<u8>,
    },
    /// A session ended: `None` when the peer closed it normally or the
    /// application here did.
    Closed {
        /// The session.
        sid: u64,
        /// Why, when it was not a normal close.
        error: Option<Error>,
    },
    /// A first message's token was refused (msg2 said so).
    Refused {
        /// The token's client name, when the token is known.
        name: Option<String>,
        /// Why.
        reason: &'static str,
        /// The sender's address.
        peer: SocketAddr,
    },
}

/// A first piece whose MAC verified, waiting for its second piece.
struct FirstPiece {
    from: SocketAddr,
    bytes: Vec<u8>,
    header: Msg1Header,
}

/// A second piece whose first has not come (yet).
struct Stray {
    from: SocketAddr,
    bytes: Vec<u8>,
}

/// A handshake answered: msg2 again for the same first message from the
/// same address, until the client's first record shows it arrived.
pub(super) struct Answered {
    pub(super) from: SocketAddr,
    pub(super) msg2: Vec<u8>,
    pub(super) resends: u8,
    /// Bytes of resent pieces from `from` not yet answered: msg2 goes out
    /// again only when they add up to its length, so a resend never
    /// amplifies (a first piece alone is far shorter than msg2).
    pub(super) credit: usize,
}

/// A decrypted first message whose replay mark is on its way to disk.
struct Awaiting {
    from: SocketAddr,
    msg1: ServerMsg1,
    /// Held (a handshake slot, the mark in progress) until answered.
    _slot: HandshakeSlot,
    commit: Arc<ReplayCommit>,
    mark: [u8; 16],
    piece_mark: [u8; 16],
}

/// The datagram server.
pub struct DgramServer {
    pub(super) endpoint: Arc<ServerEndpoint>,
    opener: HeaderOpener,
    pub(super) rng: Box<dyn Entropy>,
    pub(super) sessions: HashMap<u64, Session>,
    pub(super) per_token: HashMap<[u8; 16], usize>,
    pub(super) timers: BinaryHeap<Timer>,
    /// By piece mark `M1`.
    pending: Expiring<[u8; 16], FirstPiece>,
    strays: Expiring<[u8; 16], Stray>,
    /// By mark `M`; and piece marks of answered handshakes, to ignore their
    /// resent second pieces.
    pub(super) answered: Expiring<[u8; 16], Answered>,
    answered_pieces: Expiring<[u8; 16], [u8; 16]>,
    awaiting: Vec<Awaiting>,
    cookies: CookieJar,
    pub(super) options: DgramServerOptions,
    pub(super) out: VecDeque<(SocketAddr, Vec<u8>)>,
    pub(super) events: VecDeque<ServerEvent>,
    pub(super) revocations_seen: u64,
    pub(super) stats: ServerStats,
}

impl DgramServer {
    /// A server for `endpoint`'s key and tokens. `rng` keys its generator.
    pub fn new(
        endpoint: Arc<ServerEndpoint>,
        options: DgramServerOptions,
        now: Instant,
        mut rng: Box<dyn Entropy>,
    ) -> Self {
        let mut seed = [0u8; 32];
        rng.fill(&mut seed);
        let mut rng: Box<dyn Entropy> = Box::new(ErasingRng::from_seed(seed));
        let opener = HeaderOpener::new(&wire::c2s_header_key(&endpoint.k_obf));
        let life = endpoint.params().handshake_timeout;
        let cookies = CookieJar::new(
            now,
            options.cookie_threshold,
            MAX_COOKIE_REPLIES,
            rng.as_mut(),
        );
        let revocations_seen = endpoint.revocation_generation();
        Self {
            endpoint,
            opener,
            rng,
            sessions: HashMap::new(),
            per_token: HashMap::new(),
            timers: BinaryHeap::new(),
            pending: Expiring::new(MAX_PENDING, PIECE_TIME),
            strays: Expiring::new(MAX_STRAYS, PIECE_TIME),
            answered: Expiring::new(MAX_PENDING, life),
            answered_pieces: Expiring::new(MAX_PENDING, life),
            awaiting: Vec::new(),
            cookies,
            options,
            out: VecDeque::new(),
            events: VecDeque::new(),
            revocations_seen,
            stats: ServerStats::default(),
        }
    }

    /// One datagram from `from`. `unix_secs` is the wall clock (for the
    /// first message's MAC window).
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        unix_secs: u64,
        from: SocketAddr,
        datagram: &mut [u8],
    ) {
        self.sweep_revoked();
        if datagram.len() >= MIN_RECORD_DATAGRAM {
            let (sid, counter) = self.opener.open(datagram);
            if self.sessions.contains_key(&sid) {
                self.session_datagram(now, sid, counter, from, datagram);
                return;
            }
        }
        if datagram.len() > HANDSHAKE_DATAGRAM {
            self.stats.unanswered += 1;
            return;
        }
        if datagram.len() > MSG1_HEADER {
            if let Ok(Some(h)) =
                handshake::server_check_header(&self.endpoint.k_obf, unix_secs, datagram)
            {
                self.first_piece(now, unix_secs, from, h, datagram);
                return;
            }
        }
        if datagram.len() > PIECE1_HEADER {
            self.second_piece(now, unix_secs, from, datagram);
            return;
        }
        self.stats.unanswered += 1;
    }

    fn first_piece(
        &mut self,
        now: Instant,
        unix_secs: u64,
        from: SocketAddr,
        header: Msg1Header,
        datagram: &[u8],
    ) {
        let c1_here = datagram.len() - MSG1_HEADER;
        let c1_total = header.total - MSG1_HEADER;
        if c1_total > 2 * HANDSHAKE_DATAGRAM - MSG1_HEADER - PIECE1_HEADER || c1_here >= c1_total {
            self.stats.unanswered += 1;
            return;
        }
        if self.answered.contains(&header.mark) {
            self.resent(from, header.mark, datagram.len());
            return;
        }
        let pm = wire::piece_mark(&self.endpoint.k_obf, &header.mark);
        if self.pending.contains(&pm) {
            return;
        }
        let first = FirstPiece {
            from,
            bytes: datagram.to_vec(),
            header,
        };
        match self.strays.remove(&pm) {
            Some(s) if s.from == from => self.assemble(now, unix_secs, pm, first, s.bytes),
            _ => {
                self.pending.insert(now, pm, first);
            }
        }
    }

    fn second_piece(&mut self, now: Instant, unix_secs: u64, from: SocketAddr, datagram: &[u8]) {
        let mut pm = [0u8; 16];
        pm.copy_from_slice(&datagram[..16]);
        if let Some(mark) = self.answered_pieces.get_mut(&pm).copied() {
            self.resent(from, mark, datagram.len());
            return;
        }
        match self.pending.get(&pm).map(|first| first.from == from) {
            Some(true) => {
                if let Some(first) = self.pending.remove(&pm) {
                    self.assemble(now, unix_secs, pm, first, datagram.to_vec());
                }
            }
            // Not its sender: ignored, and the first piece keeps its time
            // (putting it back would renew it for whoever sends these).
            Some(false) => self.stats.unanswered += 1,
            None => {
                self.strays.insert(
                    now,
                    pm,
                    Stray {
                        from,
                        bytes: datagram.to_vec(),
                    },
                );
            }
        }
    }

    fn assemble(
        &mut self,
        now: Instant,
        unix_secs: u64,
        pm: [u8; 16],
        first: FirstPiece,
        mut second: Vec<u8>,
    ) {
        let FirstPiece {
            from,
            bytes: mut msg1,
            header,
        } = first;
        if msg1.len() + second.len() - PIECE1_HEADER != header.total {
            self.stats.unanswered += 1;
            return;
        }
        if self.cookies.required(now, self.rng.as_mut())
            && !self.cookies.check(&from, &header.mark, &second[16..32])
        {
            if self.cookies.take_reply() {
                let cookie = self.cookies.cookie(&from);
                let reply = wire::seal_cookie_reply(
                    &self.endpoint.k_obf,
                    &msg1,
                    &cookie,
                    self.rng.as_mut(),
                );
                self.out.push_back((from, reply));
                self.stats.cookie_replies += 1;
            }
            return;
        }
        msg1.extend_from_slice(&second[PIECE1_HEADER..]);
        second.zeroize();
        self.first_message(now, unix_secs, from, header, pm, msg1);
    }

    /// §3's server steps 2 to 6 on an assembled first message.
    fn first_message(
        &mut self,
        now: Instant,
        unix_secs: u64,
        from: SocketAddr,
        header: Msg1Header,
        piece_mark: [u8; 16],
        mut msg1: Vec<u8>,
    ) {
        let slot = match self.endpoint.take_slot(header.mark) {
            Ok(s) => s,
            Err(_) => {
                self.stats.unanswered += 1;
                return;
            }
        };
        self.cookies.count_handshake();
        let read = handshake::server_read_msg1(
            Mode::Datagram,
            self.endpoint.public_key(),
            &self.endpoint.static_dh,
            &mut msg1,
        );
        msg1.zeroize();
        let Ok(read) = read else {
            self.stats.unanswered += 1;
            return;
        };
        match self
            .endpoint
            .replay_record(&slot, header.window, handshake::window(unix_secs))
        {
            Recorded::Done => self.answer(now, from, read, header.mark, piece_mark),
            Recorded::Durable(commit) => self.awaiting.push(Awaiting {
                from,
                msg1: read,
                _slot: slot,
                commit,
                mark: header.mark,
                piece_mark,
            }),
            Recorded::Unavailable => self.stats.unanswered += 1,
        }
    }

    /// Goes on with first messages whose replay mark became durable.
    fn handle_commits(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.awaiting.len() {
            match self.awaiting[i].commit.outcome() {
                None => i += 1,
                Some(ok) => {
                    let a = self.awaiting.swap_remove(i);
                    if ok {
                        self.answer(now, a.from, a.msg1, a.mark, a.piece_mark);
                    } else {
                        self.stats.unanswered += 1;
                    }
                }
            }
        }
    }

    /// The token's verdict, and msg2.
    fn answer(
        &mut self,
        now: Instant,
        from: SocketAddr,
        msg1: ServerMsg1,
        mark: [u8; 16],
        piece_mark: [u8; 16],
    ) {
        let token_id = msg1.token_id;
        let tail = self.endpoint.params().tail_length.min(MSG2_MAX_PAD);
        let mut msg2 = Vec::with_capacity(HANDSHAKE_DATAGRAM);
        let opened = match self.endpoint.verdict(&msg1) {
            Verdict::Accept {
                revocation,
                name,
                secret,
                client_ss,
            } => msg1
                .write_msg2(
                    Some(&*secret),
                    client_ss.as_deref(),
                    tail,
                    self.rng.as_mut(),
                    &mut msg2,
                )
                .ok()
                .flatten()
                .map(|keys| (keys, revocation, name)),
            Verdict::Refuse { name, reason } => {
                if msg1
                    .write_msg2(None, None, tail, self.rng.as_mut(), &mut msg2)
                    .is_ok()
                {
                    self.events.push_back(ServerEvent::Refused {
                        name,
                        reason,
                        peer: from,
                    });
                    self.remember(now, from, mark, piece_mark, msg2);
                }
                return;
            }
        };
        let Some((keys, revocation, name)) = opened else {
            self.stats.unanswered += 1;
            return;
        };
        let (sid, s2c_hdr) = wire::session_secrets(&keys.c2s_len, &keys.s2c_len);
        if self.sessions.contains_key(&sid) || !self.make_room(now, &token_id) {
            // A 64-bit id collision (never, in practice), or no room: the
            // client's resends find the mark taken and it times out.
            self.stats.unanswered += 1;
            return;
        }
        let session = Established::new(
            Sender::new(sid, HeaderSealer::new(&s2c_hdr), &keys.s2c_key),
            Receiver::new(&keys.c2s_key),
            self.endpoint.params().keepalive.clone(),
            self.endpoint.params().tail_length,
            now,
            self.rng.as_mut(),
        );
        self.remember(now, from, mark, piece_mark, msg2);
        self.insert_session(sid, from, token_id, mark, session, revocation, &name);
        self.stats.accepted += 1;
        self.events.push_back(ServerEvent::Accepted {
            sid,
            peer: from,
            name,
        });
    }

    fn remember(
        &mut self,
        now: Instant,
        from: SocketAddr,
        mark: [u8; 16],
        piece_mark: [u8; 16],
        msg2: Vec<u8>,
    ) {
        self.out.push_back((from, msg2.clone()));
        self.answered.insert(
            now,
            mark,
            Answered {
                from,
                msg2,
                resends: MSG2_RESENDS,
                credit: 0,
            },
        );
        self.answered_pieces.insert(now, piece_mark, mark);
    }

    /// A piece of a first message already answered: its msg2 was lost. The
    /// same address only (a replay from elsewhere learns nothing), a few
    /// times, and never more bytes than the resent pieces brought.
    fn resent(&mut self, from: SocketAddr, mark: [u8; 16], len: usize) {
        let Some(a) = self.answered.get_mut(&mark) else {
            return;
        };
        if a.from != from || a.resends == 0 {
            return;
        }
        a.credit += len;
        if a.credit >= a.msg2.len() {
            a.credit -= a.msg2.len();
            a.resends -= 1;
            let msg2 = a.msg2.clone();
            self.out.push_back((from, msg2));
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn insert_session(
        &mut self,
        sid: u64,
        peer: SocketAddr,
        token_id: [u8; 16],
        mark: [u8; 16],
        session: Established,
        revocation: Arc<Revocation>,
        name: &str,
    ) {
        let deadline = session.deadline();
        self.sessions.insert(
            sid,
            Session {
                peer,
                token_id,
                mark: Some(mark),
                name: name.into(),
                revocation,
                scheduled: deadline,
                est: Box::new(session),
            },
        );
        *self.per_token.entry(token_id).or_default() += 1;
        self.push_timer(deadline, sid);
    }

    /// Runs every timer due by `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.sweep_revoked();
        self.handle_commits(now);
        self.pending.expire(now);
        self.strays.expire(now);
        self.answered.expire(now);
        self.answered_pieces.expire(now);
        self.cookies.required(now, self.rng.as_mut());
        self.session_timers(now);
    }

    /// When [`DgramServer::handle_timeout`] wants to run.
    pub fn poll_timeout(&self, now: Instant) -> Instant {
        let mut t = self.cookies.next_rotation();
        for x in [
            self.pending.next_expiry(),
            self.strays.next_expiry(),
            self.answered.next_expiry(),
            self.answered_pieces.next_expiry(),
            self.timers.peek().map(Timer::at),
        ]
        .into_iter()
        .flatten()
        {
            t = t.min(x);
        }
        if !self.awaiting.is_empty() {
            // The replay file's writer has no waker here: look again soon.
            t = t.min(now + Duration::from_millis(2));
        }
        t
    }

    /// The next datagram to send, and where.
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.out.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        self.events.pop_front()
    }

    /// The counters.
    pub fn stats(&self) -> &ServerStats {
        &self.stats
    }

    /// Open sessions.
    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }
}
