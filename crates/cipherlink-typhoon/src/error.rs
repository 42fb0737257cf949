//! Typed errors of the TYPHOON codec, state machine and driver.

/// Everything that can refuse a TYPHOON datagram, setting or session.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A datagram that is not TYPHOON under this key (wrong key, tampered,
    /// truncated, or a flag or length that does not fit).
    #[error("{0}: not a valid TYPHOON message under this key")]
    Malformed(&'static str),
    /// The client's ephemeral key is a low-order point.
    #[error("client INIT: low-order ephemeral key")]
    WeakKey,
    /// A `next_in` outside the range the settings allow.
    #[error("{what}: next_in {value} ms outside [{min}, {max}]")]
    NextIn {
        /// Which message.
        what: &'static str,
        /// The value found.
        value: u32,
        /// The least allowed.
        min: u64,
        /// The most allowed.
        max: u64,
    },
    /// The server answered the INIT with a status other than success.
    #[error("server INIT: status {0} (the server refused the connection)")]
    Status(u8),
    /// A message too long for one datagram.
    #[error("{what}: {len} bytes, at most {max} fit in one datagram")]
    TooLong {
        /// What was too long.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The most allowed.
        max: usize,
    },
    /// The peer sent no handshake within TYPHOON's retries.
    #[error("{0}: timed out")]
    Timeout(String),
    /// The peer terminated the session.
    #[error("the peer terminated the session")]
    Terminated,
    /// The session is closed (terminated by us, replaced or expired).
    #[error("the session is closed")]
    Closed,
    /// A socket operation failed.
    #[error("{what}: {reason}")]
    Io {
        /// What was being done, and with whom.
        what: String,
        /// The operating system's reason.
        reason: String,
    },
    /// A `TYPHOON_*` setting that does not parse or is out of range.
    #[error("{name}={value:?}: {reason}")]
    Setting {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
        /// Why it was refused.
        reason: &'static str,
    },
}
