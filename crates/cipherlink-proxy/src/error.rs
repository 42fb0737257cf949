//! Errors: configuration (found before anything listens, naming the service
//! and the field) and per-tunnel failures (logged with the peer; they never
//! stop the proxy).

use std::io;
use std::path::PathBuf;

use crate::nacl_frame::keys::KeyError;
use crate::nacl_frame::V1Error;

/// A proxy that cannot start, or a configuration that does not parse.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// A service's settings are inconsistent.
    #[error("service `{service}`: `{field}` {reason}")]
    Config {
        /// The service's name.
        service: String,
        /// The field at fault.
        field: &'static str,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// The TLS configuration of a service was refused by the core.
    #[error("service `{service}`: TLS: {error}")]
    Tls {
        /// The service's name.
        service: String,
        /// The core's reason (names the TLS field).
        error: cipherlink::Error,
    },
    /// A v1 key file is unusable.
    #[error("service `{service}`: {error}")]
    Key {
        /// The service's name.
        service: String,
        /// Why.
        error: KeyError,
    },
    /// The listen address could not be bound.
    #[error("service `{service}`: cannot listen on {addr}: {error}")]
    Bind {
        /// The service's name.
        service: String,
        /// The address.
        addr: String,
        /// The OS reason.
        error: io::Error,
    },
    /// The configuration file cannot be read.
    #[error("proxy configuration {}: {error}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        error: io::Error,
    },
    /// The configuration file does not parse.
    #[error("proxy configuration {}: {error}", path.display())]
    Toml {
        /// The file.
        path: PathBuf,
        /// The parser's message (with line and column).
        error: Box<toml::de::Error>,
    },
}

/// Why one tunnel ended badly. Logged as the tunnel's close reason.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TunnelError {
    /// Connecting to the next hop failed or timed out.
    #[error("connecting to {target}: {error}")]
    Connect {
        /// Where.
        target: String,
        /// Why.
        error: io::Error,
    },
    /// The link handshake to the proxy server failed.
    #[error("link to {target}: {error}")]
    Link {
        /// Where.
        target: String,
        /// Why (the link crate's reason).
        error: cipherlink_link::driver::DriverError,
    },
    /// Opening a PORT session to the proxy server failed.
    #[error("PORT to {target}: {error}")]
    PortConnect {
        /// Where.
        target: String,
        /// Why (the PORT driver's reason).
        error: cipherlink_port::Error,
    },
    /// A PORT session failed while relaying.
    #[error("PORT {side}: {error}")]
    Port {
        /// Which side: `client` or `target`.
        side: &'static str,
        /// Why.
        error: cipherlink_port::Error,
    },
    /// A PORT client's token was revoked (the token store was re-read);
    /// its tunnel was ended and its session reset.
    #[error("the token of {0} was revoked (token store re-read); tunnel ended")]
    Revoked(String),
    /// The TLS handshake failed.
    #[error("{0}")]
    Tls(#[from] cipherlink::Error),
    /// Reading or writing a side failed.
    #[error("{during} {side}: {error}")]
    Io {
        /// `reading` or `writing`.
        during: &'static str,
        /// Which side: `client` or `target`.
        side: &'static str,
        /// The OS reason.
        error: io::Error,
    },
    /// A v1 frame from the peer was refused.
    #[error("from {side}: {error}")]
    V1 {
        /// Which side sent it.
        side: &'static str,
        /// Why.
        error: V1Error,
    },
    /// A v1 client sent no authentic first frame in time; nothing was
    /// connected onward.
    #[error(
        "no authentic v1 frame from client within {0:?} (--v1-auth-timeout, v1.auth_timeout); \
         nothing was connected onward"
    )]
    AuthTimeout(std::time::Duration),
    /// No byte moved either way for the idle limit.
    #[error("idle for {0:?} (--idle-timeout, idle_timeout)")]
    Idle(std::time::Duration),
    /// The proxy shut down before the tunnel finished; both sides were reset.
    #[error("cut at shutdown after the grace period (both sides reset)")]
    Shutdown,
    /// A link ended while it waited for a tunnel permit (revoked, or its
    /// peer gone): the service is not connected for it.
    #[error("the link ended before it was relayed{}", .0.as_ref().map(|e| format!(": {e}")).unwrap_or_default())]
    LinkEnded(Option<cipherlink_link::Error>),
}
