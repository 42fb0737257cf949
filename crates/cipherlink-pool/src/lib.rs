//! cipherlink-pool: a Pool of named parties exchanging messages over
//! HTTP(S), byte-for-byte compatible with the Python package
//! `tno.mpc.communication` 5.x (the default) and 4.x (by option).
//!
//! ```text
//!   Pool::send(peer, &Value, id?)                      Pool::recv(peer, id?)
//!        |                                                   ^
//!   codec::encode -> envelope (4.x inline / 5.x bin)    mailbox (sender, id)
//!        |                                                   ^
//!   client: keep-alive POST /, Cookie server_port  --> server: identify sender
//!           retries on connection errors                (address or cert),
//!                                                       decode, store, 200
//! ```
//!
//! The codec ([`codec`]), the envelope ([`envelope`]), ids ([`ids`]) and
//! sender identity ([`identity`]) are pure functions over bytes, pinned to
//! bytes captured from the real package. The wire and our limits are in
//! `docs/pool-wire.md`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), cipherlink_pool::PoolError> {
//! use cipherlink_pool::{Pool, PoolConfig, PeerConfig, Value};
//! let cfg = PoolConfig::new("Alice", "127.0.0.1:61001".parse().unwrap_or_else(|_| unreachable!()))
//!     .peer(PeerConfig::new("Bob", "127.0.0.1", 61002));
//! let pool = Pool::start(cfg).await?;
//! pool.send("Bob", &Value::str("Hello Bob! This is Alice speaking."), None).await?;
//! let reply = pool.recv("Bob", None).await?;
//! pool.shutdown().await;
//! # let _ = reply; Ok(()) }
//! ```

mod body;
mod client;
pub mod codec;
mod config;
pub mod envelope;
mod error;
pub mod identity;
pub mod ids;
mod int;
pub mod json;
mod mailbox;
mod pool;
mod server;
pub mod tls;
mod value;

pub use client::RetryPolicy;
pub use config::{Limits, PeerConfig, PoolConfig};
pub use envelope::{MessageId, WireVersion};
pub use error::{ConfigError, DecodeError, EncodeError, EnvelopeError, PoolError, SendError};
pub use int::{Int, ParseIntError};
pub use mailbox::DeliverError;
pub use pool::{PeerStats, Pool, Received};
pub use value::Value;
