//! The cipherlink link protocol (docs/link-protocol.md): a 1-RTT, forward-secret,
//! hybrid post-quantum (X25519 + ML-KEM-768) link over TCP whose bytes look
//! random, whose server answers nothing to probes, and whose keepalive is
//! PORT's randomized scheme carried in ordinary records.
//!
//! ```text
//!   app  <-AsyncRead/AsyncWrite->  driver (tokio: socket, timer, OS entropy)
//!                                    |  bytes, now          ^ bytes, events, deadline
//!                                    v                      |
//!                                  proto::Connection (sans-IO core)
//! ```
//!
//! * [`proto`]: the core; no sockets, clocks or entropy of its own.
//! * [`driver`]: [`driver::LinkListener`] and [`driver::connect`].
//! * [`keys`]: server keys, tokens, connection files.
//! * [`wire`]: reading a captured link with its exported keys (labs).

pub mod config;
pub mod dgram;
pub mod driver;
pub mod error;
pub mod gate;
pub mod keys;
mod listener;
mod log_limit;
mod owned_file;
pub mod proto;
mod replay_file;
pub mod replay_store;
pub mod token_file;
pub mod wire;

#[doc(hidden)]
pub mod fuzzing;

pub use config::{KeepaliveConfig, LinkParams};
pub use error::Error;
pub use keys::{ClientKey, ConnectionFile, ServerKey, Token, TokenStore};
pub use proto::{
    ClientConfig, CloseCode, Connection, EndpointOptions, Entropy, Event, ServerEndpoint,
};
