//! Typed errors of the link protocol.

use crate::proto::CloseCode;

/// Everything that can end a link or refuse an operation.
///
/// Server-side probes (input that does not authenticate) are deliberately
/// not reported through these: the server stays silent and the connection
/// ends as [`Error::Probe`] only in its own logs.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// An AEAD tag did not verify (tampering, replay, reordering, wrong key).
    #[error("a record or handshake message failed authentication")]
    Decrypt,
    /// A field had an impossible value.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// A length outside the bounds of the specification.
    #[error("length {len} out of bounds for {what}")]
    Length {
        /// What was being read.
        what: &'static str,
        /// The length found.
        len: usize,
    },
    /// A Diffie-Hellman result was all zeros (low-order point).
    #[error("peer sent a low-order X25519 key")]
    WeakKey,
    /// The randomness source produced 128 unrepresentable keys in a row.
    #[error("the randomness source looks broken")]
    BadRandomness,
    /// The server refused our token (unknown, revoked, or bound to a client
    /// key we did not prove).
    #[error(
        "the server refused the token (unknown or revoked, or its client key is missing or wrong)"
    )]
    Refused,
    /// The handshake did not complete in time.
    #[error(
        "handshake timed out (wrong server key, revoked token, or not a cipherlink link server)"
    )]
    HandshakeTimeout,
    /// The transport ended before the handshake completed.
    #[error("connection closed during the handshake (wrong server key, or not a cipherlink link server)")]
    HandshakeEof,
    /// The transport ended without an authenticated close record.
    #[error("the stream ended without an authenticated close (truncated)")]
    Truncated,
    /// The peer stopped answering keepalives.
    #[error("peer gone: no answer to {retries} keepalive retries")]
    PeerGone {
        /// Retries sent without an answer.
        retries: u32,
    },
    /// The peer closed the link with a reason.
    #[error("peer closed the link: {code:?} {reason:?}")]
    PeerClosed {
        /// The close code.
        code: CloseCode,
        /// The peer's reason text.
        reason: String,
    },
    /// A datagram server closed this session to make room for another
    /// client's (its session cap, docs §11.6).
    #[error("session closed to make room for another client's (the server's session cap)")]
    Displaced,
    /// The peer broke a rule of the protocol.
    #[error("protocol violation: {0}")]
    Protocol(&'static str),
    /// A server connection saw input that did not authenticate and went silent.
    #[error("probe: unauthenticated input ({0}); answered nothing")]
    Probe(&'static str),
    /// The operation needs an established, open link.
    #[error("link is not open")]
    NotOpen,
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The replay store's file cannot be opened or written.
    #[error("replay store {path}: {reason}")]
    Store {
        /// The database file.
        path: String,
        /// What failed.
        reason: String,
    },
    /// A file the link uses (a token store's lock) cannot be used.
    #[error("{path}: {reason}")]
    FileIo {
        /// The file.
        path: String,
        /// What failed.
        reason: String,
    },
    /// A socket could not be opened, bound or resolved.
    #[error("{what}: {reason}")]
    Socket {
        /// What was being done, naming the address.
        what: String,
        /// The system's reason.
        reason: String,
    },
    /// The server closed this link: its token was revoked (or the token
    /// store stopped parsing).
    #[error("the client's token was revoked")]
    Revoked,
    /// A key, token or connection file is malformed.
    #[error("{file}: line {line}: {reason}")]
    File {
        /// Which kind of file.
        file: &'static str,
        /// 1-based line number (0: whole file).
        line: usize,
        /// What is wrong.
        reason: String,
    },
}
