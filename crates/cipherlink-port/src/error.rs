//! Typed errors of the PORT codec and driver.

/// Everything that can refuse a PORT message, key file or setting.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// An AEAD tag did not verify: wrong key, tampering, or not PORT at all.
    #[error("{0} failed authentication (wrong key, tampered, or not PORT)")]
    Decrypt(&'static str),
    /// A decrypted header had another flag than the one expected here.
    #[error("{what}: flag {flag:#04x}, expected {expected}")]
    Flag {
        /// Which message.
        what: &'static str,
        /// The flag found.
        flag: u8,
        /// What was allowed.
        expected: &'static str,
    },
    /// A length outside what the wire allows.
    #[error("{what}: length {len} out of range")]
    Length {
        /// What was being read.
        what: &'static str,
        /// The length found.
        len: usize,
    },
    /// The client's ephemeral key is a low-order point (the shared secret
    /// would be all zeros, known to anyone).
    #[error("client INIT: low-order ephemeral key")]
    WeakKey,
    /// The server answered the INIT with a status other than success.
    #[error("server INIT: status {0} (the server refused the connection)")]
    Status(u8),
    /// Input after the peer's termination message.
    #[error("the peer already terminated the connection")]
    Terminated,
    /// A socket operation failed.
    #[error("{what}: {reason}")]
    Io {
        /// What was being done, and with whom.
        what: String,
        /// The operating system's reason.
        reason: String,
    },
    /// A wait ran past its deadline.
    #[error("{0}: timed out")]
    Timeout(String),
    /// The peer closed the connection in the middle of a message.
    #[error("{0}: the peer closed the connection in the middle of a message")]
    Truncated(String),
    /// The client's token was revoked after its INIT was admitted, while
    /// its user port waited for the second connection.
    #[error("{0}: the token was revoked while the user port waited")]
    Revoked(String),
    /// A key file, key text or connection file that does not parse.
    #[error("{file}: {reason}")]
    File {
        /// Which kind of file.
        file: &'static str,
        /// Why (never the secret itself).
        reason: String,
    },
    /// A `PORT_*` setting that does not parse or is out of range.
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
