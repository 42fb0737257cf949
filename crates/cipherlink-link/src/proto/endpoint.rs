//! The server's shared state (docs §3, §6): its key, the token table the
//! handshakes check, and the replay filter.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};

use zeroize::Zeroizing;

use super::crypto;
use super::handshake::{self, ServerMsg1};
use super::revocation::Revocation;
use crate::config::LinkParams;
use crate::error::Error;
use crate::keys::{ServerKey, TokenStore};
use crate::replay_store::{InProgress, Recorded, ReplayStore};

/// Default replay-filter capacity (16-byte marks).
pub const DEFAULT_REPLAY_CAPACITY: usize = 1 << 20;
/// Default number of handshakes past the MAC check at once (docs §6).
pub const DEFAULT_MAX_HANDSHAKES: usize = 4096;

/// How a server endpoint is built, beyond its key, tokens and parameters.
#[derive(Debug, Clone)]
pub struct EndpointOptions {
    /// Marks the replay filter holds at most (docs §6).
    pub replay_capacity: usize,
    /// First messages past the MAC check whose handshake is not done yet,
    /// at most: one more becomes a probe. One mark holds at most one slot
    /// (docs §6), and the listener's admission caps bound the sockets that
    /// can hold them.
    pub max_handshakes: usize,
    /// Keep the replay filter in this database file too (docs §6), e.g.
    /// [`default_replay_file`] of the token store: a restarted server then
    /// still refuses first messages it answered before. Failing to open it
    /// is an error; while it cannot be written every first message is a
    /// probe (it is reopened until a write works again).
    pub replay_file: Option<PathBuf>,
    /// Tests and fuzzing only: a filter of this endpoint's own instead of
    /// the one every endpoint of the key shares in this process.
    #[doc(hidden)]
    pub private_replay: bool,
}

/// The replay store's file for a token store: beside it, `NAME.replay`
/// (`link-tokens.txt` → `link-tokens.replay`).
pub fn default_replay_file(token_store: &Path) -> PathBuf {
    token_store.with_extension("replay")
}

impl Default for EndpointOptions {
    fn default() -> Self {
        Self {
            replay_capacity: DEFAULT_REPLAY_CAPACITY,
            max_handshakes: DEFAULT_MAX_HANDSHAKES,
            replay_file: None,
            private_replay: false,
        }
    }
}

/// A handshake slot and the mark it handshakes for, given back when dropped.
pub(crate) struct HandshakeSlot {
    used: Arc<AtomicUsize>,
    pub(crate) mark: InProgress,
}

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        self.used.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One token as the handshake needs it: `DH(s, C)` of a token bound to a
/// client key is computed once, when the store is loaded, not per handshake.
struct ServerToken {
    name: String,
    secret: Zeroizing<[u8; 32]>,
    revoked: bool,
    client: ClientDh,
}

enum ClientDh {
    /// No client key: the token alone.
    Unbound,
    /// `ss = DH(s, C)`.
    Bound(Zeroizing<[u8; 32]>),
    /// `C` gives a low-order DH: nobody can prove it, the token is refused.
    Unusable,
}

/// What the handshake decided about a first message's token.
pub(crate) enum Verdict {
    /// The token is active and its proof holds.
    Accept {
        /// Registered while the table that accepted it was in force, so a
        /// store swapped in meanwhile cannot miss it.
        revocation: Arc<Revocation>,
        name: String,
        secret: Zeroizing<[u8; 32]>,
        client_ss: Option<Zeroizing<[u8; 32]>>,
    },
    /// Refused: the name when the token is known, and why.
    Refuse {
        name: Option<String>,
        reason: &'static str,
    },
}

/// The token table: by id, with each bound token's `DH(s, C)`; or, when
/// the store did not parse, nothing at all (every token refused).
#[derive(Default)]
struct ServerTokens {
    by_id: HashMap<[u8; 16], ServerToken>,
    unreadable: bool,
}

impl ServerToken {
    /// Whether a link opened with `self` may stay open under `now`.
    fn still_holds(&self, now: &ServerToken) -> bool {
        let same_client = match (&self.client, &now.client) {
            (ClientDh::Unbound, ClientDh::Unbound) => true,
            (ClientDh::Bound(a), ClientDh::Bound(b)) => crypto::ct_eq(&a[..], &b[..]),
            _ => false,
        };
        !now.revoked && same_client && crypto::ct_eq(&self.secret[..], &now.secret[..])
    }
}

impl ServerTokens {
    fn build(static_dh: &crypto::StaticDh, store: &TokenStore, count: &AtomicU64) -> Self {
        let mut by_id = HashMap::with_capacity(store.entries().len());
        for e in store.entries() {
            let client = match &e.token.client_key {
                None => ClientDh::Unbound,
                Some(k) => {
                    count.fetch_add(1, Ordering::Relaxed);
                    match static_dh.dh(&k.public) {
                        Ok(ss) => ClientDh::Bound(ss),
                        Err(_) => ClientDh::Unusable,
                    }
                }
            };
            by_id.insert(
                e.token.id,
                ServerToken {
                    name: e.name.clone(),
                    secret: e.token.secret.clone(),
                    revoked: e.revoked,
                    client,
                },
            );
        }
        Self {
            by_id,
            unreadable: false,
        }
    }

    fn verdict(
        &self,
        msg1: &ServerMsg1,
        register: impl FnOnce([u8; 16]) -> Arc<Revocation>,
    ) -> Verdict {
        if self.unreadable {
            return Verdict::Refuse {
                name: None,
                reason: "token store unreadable",
            };
        }
        let Some(t) = self.by_id.get(&msg1.token_id) else {
            return Verdict::Refuse {
                name: None,
                reason: "unknown token",
            };
        };
        let refuse = |reason| Verdict::Refuse {
            name: Some(t.name.clone()),
            reason,
        };
        if t.revoked {
            return refuse("revoked token");
        }
        let client_ss = match &t.client {
            ClientDh::Unbound => None,
            ClientDh::Bound(ss) => Some(ss),
            ClientDh::Unusable => return refuse("unusable client key"),
        };
        if !msg1.proves(&t.secret, client_ss.map(|s| &**s)) {
            return refuse(if client_ss.is_some() {
                "wrong token proof or client key"
            } else {
                "wrong token proof"
            });
        }
        Verdict::Accept {
            revocation: register(msg1.token_id),
            name: t.name.clone(),
            secret: t.secret.clone(),
            client_ss: client_ss.cloned(),
        }
    }
}

/// Shared server state: key, tokens, replay filter (one per listening endpoint).
pub struct ServerEndpoint {
    key: ServerKey,
    pub(crate) static_dh: crypto::StaticDh,
    /// `K_obf`'s HMAC key, set up once: every first message (and every
    /// probe) is checked against it.
    pub(crate) k_obf: crypto::HmacKey,
    tokens: RwLock<ServerTokens>,
    replay: Arc<ReplayStore>,
    pub(super) params: LinkParams,
    client_dh: AtomicU64,
    slots_used: Arc<AtomicUsize>,
    max_handshakes: usize,
    /// The open links, by token id, to close when their token goes.
    links: Mutex<HashMap<[u8; 16], Vec<Weak<Revocation>>>>,
    /// Bumped whenever a link is revoked: a datagram server, which holds
    /// many sessions in one task, looks for revoked ones only when it moved.
    revocations: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every holder leaves the data consistent between statements.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ServerEndpoint {
    /// A server endpoint.
    pub fn new(key: ServerKey, tokens: TokenStore, params: LinkParams) -> Result<Self, Error> {
        Self::with_replay_capacity(key, tokens, params, DEFAULT_REPLAY_CAPACITY)
    }

    /// A server endpoint with a given replay-filter capacity.
    pub fn with_replay_capacity(
        key: ServerKey,
        tokens: TokenStore,
        params: LinkParams,
        capacity: usize,
    ) -> Result<Self, Error> {
        let options = EndpointOptions {
            replay_capacity: capacity,
            ..EndpointOptions::default()
        };
        Self::with_options(key, tokens, params, options)
    }

    /// A server endpoint built with `options`.
    pub fn with_options(
        key: ServerKey,
        tokens: TokenStore,
        params: LinkParams,
        options: EndpointOptions,
    ) -> Result<Self, Error> {
        params.validate()?;
        let capacity = options.replay_capacity;
        let replay = if options.private_replay {
            ReplayStore::private(capacity)
        } else {
            ReplayStore::shared(key.public(), capacity, options.replay_file.as_deref())?
        };
        let static_dh = crypto::StaticDh::new(key.secret())?;
        let client_dh = AtomicU64::new(0);
        Ok(Self {
            tokens: RwLock::new(ServerTokens::build(&static_dh, &tokens, &client_dh)),
            client_dh,
            static_dh,
            k_obf: crypto::HmacKey::new(&handshake::obfs_key(key.public())),
            key,
            replay,
            params,
            slots_used: Arc::new(AtomicUsize::new(0)),
            max_handshakes: options.max_handshakes.max(1),
            links: Mutex::new(HashMap::new()),
            revocations: AtomicU64::new(0),
        })
    }

    /// Replaces the token store (e.g. after `revoke`): new handshakes use
    /// it, and every open link whose token it no longer holds active (or
    /// holds with another secret or client key) is closed. Returns how many.
    pub fn set_tokens(&self, tokens: TokenStore) -> usize {
        let table = ServerTokens::build(&self.static_dh, &tokens, &self.client_dh);
        let mut t = match self.tokens.write() {
            Ok(t) => t,
            Err(poisoned) => poisoned.into_inner(),
        };
        let old = std::mem::replace(&mut *t, table);
        let keep = |id: &[u8; 16]| match (old.by_id.get(id), t.by_id.get(id)) {
            (Some(before), Some(now)) => before.still_holds(now),
            _ => false,
        };
        self.revoke_links(|id| !keep(id))
    }

    /// The token store no longer parses (or cannot be read): refuse every
    /// token and close every open link until [`Self::set_tokens`] is given a
    /// good one (failing closed: a revocation typed wrong must not leave
    /// the token it meant to revoke working). Returns the links closed.
    pub fn refuse_all_tokens(&self) -> usize {
        {
            let mut t = match self.tokens.write() {
                Ok(t) => t,
                Err(poisoned) => poisoned.into_inner(),
            };
            *t = ServerTokens {
                unreadable: true,
                ..ServerTokens::default()
            };
        }
        self.revoke_links(|_| true)
    }

    fn revoke_links(&self, revoked: impl Fn(&[u8; 16]) -> bool) -> usize {
        let mut links = lock(&self.links);
        let mut n = 0;
        links.retain(|id, watches| {
            watches.retain(|w| w.strong_count() > 0);
            if revoked(id) {
                for w in watches.drain(..).filter_map(|w| w.upgrade()) {
                    w.revoke();
                    n += 1;
                }
            }
            !watches.is_empty()
        });
        if n > 0 {
            self.revocations.fetch_add(1, Ordering::AcqRel);
        }
        n
    }

    /// Moves on every revocation that closed a link (see
    /// [`ServerEndpoint::set_tokens`]): compare two readings to learn
    /// whether any open link may have been revoked since.
    pub fn revocation_generation(&self) -> u64 {
        self.revocations.load(Ordering::Acquire)
    }

    /// A watch for a link just opened with token `id`.
    fn register_link(&self, id: [u8; 16]) -> Arc<Revocation> {
        let watch = Arc::new(Revocation::default());
        let mut links = lock(&self.links);
        let watches = links.entry(id).or_default();
        watches.retain(|w| w.strong_count() > 0);
        watches.push(Arc::downgrade(&watch));
        watch
    }

    /// The server's public key.
    pub fn public_key(&self) -> &[u8; 32] {
        self.key.public()
    }

    /// The parameters.
    pub fn params(&self) -> &LinkParams {
        &self.params
    }

    /// Records a decrypted first message's mark (durably, with a file).
    pub(crate) fn replay_record(&self, slot: &HandshakeSlot, w: u64, now_w: u64) -> Recorded {
        self.replay.record(&slot.mark, w, now_w)
    }

    /// The replay filter this endpoint shares with every endpoint of its key.
    pub fn replay_store(&self) -> &Arc<ReplayStore> {
        &self.replay
    }

    /// A handshake slot for `mark`: refused (the reason) when the mark was
    /// answered before or is being handshaken right now (so one recorded
    /// header holds at most one slot), when the replay store is
    /// unavailable, or when all `max_handshakes` are taken.
    pub(crate) fn take_slot(&self, mark: [u8; 16]) -> Result<HandshakeSlot, &'static str> {
        let mark = self.replay.begin(mark).map_err(|r| r.reason())?;
        self.slots_used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_handshakes).then_some(n + 1)
            })
            .map_err(|_| "no handshake slot")?;
        Ok(HandshakeSlot {
            used: Arc::clone(&self.slots_used),
            mark,
        })
    }

    /// Handshakes past the MAC check right now.
    pub fn handshakes_in_progress(&self) -> usize {
        self.slots_used.load(Ordering::Acquire)
    }

    /// Looks up the first message's token and checks its proof.
    pub(crate) fn verdict(&self, msg1: &ServerMsg1) -> Verdict {
        let t = match self.tokens.read() {
            Ok(t) => t,
            Err(p) => p.into_inner(),
        };
        // Under the read lock: `set_tokens` swaps the table and revokes
        // under the write lock, so a link is either seen by it or accepted
        // by the new table.
        t.verdict(msg1, |id| self.register_link(id))
    }

    /// How many `DH(s, C)` this endpoint has computed (tests: one per
    /// bound token per load, none per handshake).
    #[doc(hidden)]
    pub fn client_key_dh_count(&self) -> u64 {
        self.client_dh.load(Ordering::Relaxed)
    }
}
