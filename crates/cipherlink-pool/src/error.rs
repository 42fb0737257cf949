//! Typed errors, by layer: msgpack codec, envelope, sending, and the Pool.
//! The errors of the helpers ([`crate::tls::TlsConfigError`],
//! [`crate::json::JsonError`], [`crate::ParseIntError`]) stay their own
//! types, since their functions can fail only in those ways, and convert
//! into [`PoolError`] with `?`.

use std::time::Duration;

/// A msgpack document that cannot be decoded. `offset` is the byte where the
/// problem was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ended inside a value.
    #[error("msgpack ends early at byte {offset}: {needed} more bytes needed")]
    Truncated {
        /// Where the value that did not fit starts.
        offset: usize,
        /// How many bytes were missing.
        needed: usize,
    },
    /// `0xc1`, which msgpack never uses (ormsgpack: "invalid type Reserved").
    #[error("invalid type Reserved (0xc1) at byte {offset}")]
    Reserved {
        /// Where it was.
        offset: usize,
    },
    /// An ext type, which the package never sends and ormsgpack refuses
    /// without an `ext_hook`.
    #[error("msgpack ext type at byte {offset} is not supported (ext_hook missing)")]
    Ext {
        /// Where it was.
        offset: usize,
    },
    /// A map key that is not a str (the package only sends str keys).
    #[error("map key at byte {offset} is {found}; only str keys are allowed")]
    NonStrKey {
        /// Where the key starts.
        offset: usize,
        /// What kind of value it was.
        found: &'static str,
    },
    /// A str that is not UTF-8.
    #[error("str at byte {offset} is not valid UTF-8")]
    InvalidUtf8 {
        /// Where the str starts.
        offset: usize,
    },
    /// Nesting deeper than the configured limit.
    #[error("nesting deeper than {limit} levels at byte {offset}")]
    TooDeep {
        /// Where the limit was passed.
        offset: usize,
        /// The limit.
        limit: usize,
    },
    /// A container announcing more elements than the remaining bytes can hold
    /// (each element takes at least one byte), refused before allocating.
    #[error("{kind} of {len} elements at byte {offset} cannot fit in the {remaining} bytes left")]
    LengthExceedsInput {
        /// Where the container starts.
        offset: usize,
        /// "array" or "map".
        kind: &'static str,
        /// The announced element count.
        len: usize,
        /// Bytes left after its header.
        remaining: usize,
    },
    /// The decoded value would take more memory than allowed: more than
    /// [`crate::codec::MEMORY_FACTOR`] times the input's size (element
    /// counts that the input does not back), or more than the configured
    /// limit (a sender's whole buffer budget).
    #[error("decoding would take more than {limit} bytes of memory (at byte {offset})")]
    TooLarge {
        /// Where the limit was passed.
        offset: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// A `{"type": ..., "data": ...}` tag whose `type` is not a str.
    #[error("tag at byte {offset} has a type that is {found}, not a str")]
    BadTagType {
        /// Where the map starts.
        offset: usize,
        /// What kind of value the type was.
        found: &'static str,
    },
}

/// A value that cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// A str, bytes, list or dict longer than msgpack's 2^32-1 limit.
    #[error("{kind} of length {len} is longer than msgpack allows (2^32-1)")]
    TooLong {
        /// Which kind of value.
        kind: &'static str,
        /// Its length.
        len: usize,
    },
    /// Nesting deeper than the configured limit.
    #[error("value nests deeper than {limit} levels")]
    TooDeep {
        /// The limit.
        limit: usize,
    },
}

/// A request body that is not a message envelope of the expected version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// The body is not msgpack.
    #[error("{0}")]
    Outer(DecodeError),
    /// The body decodes, but is not a map.
    #[error("expected the packet to be a map with keys 'id' and 'object', found {found}")]
    NotAMap {
        /// What it was.
        found: &'static str,
    },
    /// The map's keys are not exactly `id` and `object` (5.x), or lack one (4.x).
    #[error(
        "Expected deserialized packet to contain keys 'id' and 'object', but found keys: {found}"
    )]
    Keys {
        /// The keys found, comma-separated as the package prints them.
        found: String,
    },
    /// 5.x: `object` is not bin. A 4.x sender puts the value inline, so this
    /// usually means the peer speaks 4.x.
    #[error(
        "Input must be bytes, bytearray, memoryview (object is {found}: the sender seems to \
         speak tno.mpc.communication 4.x while this party speaks 5.x)"
    )]
    ObjectNotBytes {
        /// What `object` was.
        found: &'static str,
    },
    /// 5.x: the bin inside `object` is not msgpack.
    #[error("object: {0}")]
    Inner(DecodeError),
    /// An int id longer than [`crate::envelope::MAX_INT_ID_BYTES`].
    #[error("message id is an int of {bytes} bytes; int ids over {limit} bytes are refused")]
    IdTooLarge {
        /// Its size (`(bit_length + 8) // 8`).
        bytes: u64,
        /// The limit.
        limit: u64,
    },
    /// The id is neither a str nor an int.
    #[error("message id is {found}; only str and int ids are supported")]
    BadId {
        /// What it was.
        found: &'static str,
    },
}

/// Why one message could not be delivered to a peer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// TCP connect failed (refused, unreachable, ...).
    #[error("connecting to {addr}: {source}")]
    Connect {
        /// host:port.
        addr: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The TLS handshake failed. Not retried, as the package does not retry
    /// SSL errors.
    #[error("TLS handshake with {addr}: {source}")]
    Tls {
        /// host:port.
        addr: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The HTTP exchange failed (connection closed or reset mid-request).
    #[error("HTTP exchange with {addr}: {source}")]
    Http {
        /// host:port.
        addr: String,
        /// The cause.
        source: hyper::Error,
    },
    /// No answer within the request timeout.
    #[error("no answer from {addr} within {timeout:?}")]
    Timeout {
        /// host:port.
        addr: String,
        /// The timeout.
        timeout: Duration,
    },
    /// The peer answered, but not `200`.
    #[error("Received status code {status} from {addr}. Reason: {reason}")]
    Status {
        /// host:port.
        addr: String,
        /// The status code.
        status: u16,
        /// The reason phrase (or the body when there is none).
        reason: String,
    },
    /// The peer answered 400 "Input must be bytes": it speaks 5.x, and we sent 4.x.
    #[error(
        "{addr} speaks tno.mpc.communication 5.x but this party sends 4.x \
         (it answered 400: {reason})"
    )]
    VersionMismatch {
        /// host:port.
        addr: String,
        /// Its reason phrase.
        reason: String,
    },
    /// Under TLS, the server that answered at the peer's address presented
    /// a certificate other than the one registered for the peer. Nothing
    /// was sent. Not retried.
    #[error(
        "the server at {addr} presented certificate {found}, not the peer's registered \
         certificate {expected}; nothing was sent"
    )]
    WrongServer {
        /// host:port.
        addr: String,
        /// The registered certificate's `issuer DN:serial`.
        expected: String,
        /// What the server presented (`issuer DN:serial`, or why there is none).
        found: String,
    },
    /// Every attempt failed with a connection error.
    #[error("failed to send to {addr} after {attempts} attempts: {last}")]
    RetriesExhausted {
        /// host:port.
        addr: String,
        /// How many attempts were made.
        attempts: u32,
        /// The last error.
        last: Box<SendError>,
    },
}

impl SendError {
    /// Whether the package would retry this (an aiohttp `ClientConnectionError`
    /// that is not an SSL error).
    pub fn is_retryable(&self) -> bool {
        matches!(self, SendError::Connect { .. } | SendError::Http { .. })
    }
}

/// A configuration that cannot work, found when the Pool is built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Two peers with one name.
    #[error("peer {0:?} is listed twice; peer names must be unique")]
    DuplicatePeer(String),
    /// A peer with our own name.
    #[error("peer {0:?} has this party's own name")]
    PeerIsSelf(String),
    /// A limit of zero, which would refuse everything.
    #[error("{field} must be greater than zero")]
    Zero {
        /// The field.
        field: &'static str,
    },
    /// The peer's host does not resolve to an IPv4 address (the package
    /// identifies peers with `socket.gethostbyname`, which is IPv4 only).
    #[error("peer {peer:?}: cannot resolve {host:?} to an IPv4 address: {reason}")]
    Resolve {
        /// The peer.
        peer: String,
        /// Its host.
        host: String,
        /// Why.
        reason: String,
    },
    /// A pinned peer certificate that cannot be read.
    #[error("peer {peer:?}: its certificate cannot be parsed: {reason}")]
    PeerCert {
        /// The peer.
        peer: String,
        /// Why.
        reason: String,
    },
    /// A limit above what the code can honour.
    #[error("{field} is {value}; it may be at most {max}")]
    TooLarge {
        /// The field.
        field: &'static str,
        /// The configured value.
        value: usize,
        /// The upper bound.
        max: usize,
    },
    /// Only one of the two TLS configurations was given.
    #[error("TLS needs both a server and a client configuration (as the package requires)")]
    HalfTls,
    /// Binding the listener failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// A listener given to [`crate::Pool::with_listener`] cannot be served
    /// on (its address cannot be read, or it cannot be made non-blocking).
    #[error("cannot serve on the given listener: {source}")]
    Listener {
        /// The cause.
        source: std::io::Error,
    },
}

/// An error from a Pool operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// The configuration cannot work.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// No peer has this name.
    #[error("no peer named {0:?} in this pool")]
    UnknownPeer(String),
    /// The value cannot be encoded.
    #[error("cannot encode the message for {peer:?}: {source}")]
    Encode {
        /// The recipient.
        peer: String,
        /// The cause.
        source: EncodeError,
    },
    /// Sending failed.
    #[error("sending message {id} to {peer:?}: {source}")]
    Send {
        /// The recipient.
        peer: String,
        /// The message id.
        id: String,
        /// The cause.
        source: SendError,
    },
    /// No message arrived in time.
    #[error("no message {id} from {peer:?} within {timeout:?}")]
    RecvTimeout {
        /// The sender.
        peer: String,
        /// The awaited id.
        id: String,
        /// The timeout.
        timeout: Duration,
    },
    /// Another `recv` is already waiting for this (sender, id).
    #[error("another recv is already waiting for message {id} from {peer:?}")]
    AlreadyWaiting {
        /// The sender.
        peer: String,
        /// The id.
        id: String,
    },
    /// The pool was shut down while waiting.
    #[error("the pool is shut down")]
    Shutdown,
    /// TLS inputs that cannot be used ([`crate::tls`]).
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsConfigError),
    /// JSON that does not describe a value ([`crate::json::from_json`]).
    #[error(transparent)]
    Json(#[from] crate::json::JsonError),
    /// A decimal string that is not an integer.
    #[error(transparent)]
    ParseInt(#[from] crate::int::ParseIntError),
    /// A send task of a broadcast stopped abnormally.
    #[error("a send task failed: {0}")]
    TaskFailed(String),
}
