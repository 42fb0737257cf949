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
mod conn_limits;
mod decoder;
pub mod envelope;
mod error;
mod heap;
pub mod identity;
pub mod ids;
mod int;
pub mod int_list;
pub mod json;
mod mailbox;
mod peer_spec;
mod pool;
mod server;
mod tags;
mod text;
pub mod tls;
mod value;

/// Small entry points that run the real decoders on untrusted bytes with
/// the default limits, for `cargo fuzz` targets outside the crate. Not a
/// stable API.
#[doc(hidden)]
pub mod fuzzing {
    use crate::codec::{self, DecodeLimits};
    use crate::envelope::{self, Decoded, MessageId, WireVersion};
    use crate::error::{DecodeError, EnvelopeError};
    use crate::value::Value;

    pub use crate::codec::{memory_bound, stack_bound};

    /// The msgpack value decoder ([`codec::decode_accounted`]), returning
    /// the value and the memory it was charged (never more than
    /// [`codec::memory_bound`] of the input plus [`codec::stack_bound`]).
    pub fn decode_value(bytes: &[u8]) -> Result<(Value, usize), DecodeError> {
        codec::decode_accounted(bytes, DecodeLimits::default())
    }

    /// The envelope decoder of a received body, as the server runs it
    /// ([`envelope::decode_received`]), for the given wire version.
    pub fn decode_envelope(version: WireVersion, bytes: &[u8]) -> Result<Decoded, EnvelopeError> {
        let body = bytes::Bytes::copy_from_slice(bytes);
        envelope::decode_received(version, &body, DecodeLimits::default())
    }

    /// [`decode_envelope`] for 4.x.
    pub fn decode_envelope_v4(bytes: &[u8]) -> Result<Decoded, EnvelopeError> {
        decode_envelope(WireVersion::V4, bytes)
    }

    /// [`decode_envelope`] for 5.x.
    pub fn decode_envelope_v5(bytes: &[u8]) -> Result<Decoded, EnvelopeError> {
        decode_envelope(WireVersion::V5, bytes)
    }

    /// The body is not a well-formed 5.x `{"object": bin, "id": str}`; the
    /// server then decodes it the general way.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct NotSplit;

    /// The in-place split of a 5.x HTTP body into its id and the inner
    /// document (borrowed from `bytes`), as the server tries it first.
    pub fn split_body(bytes: &[u8]) -> Result<(MessageId, &[u8]), NotSplit> {
        envelope::split_v5(bytes).ok_or(NotSplit)
    }
}

pub use client::RetryPolicy;
pub use codec::DecodeLimits;
pub use config::{Limits, PeerConfig, PoolConfig};
pub use envelope::{Decoded, MessageId, WireVersion};
pub use error::{ConfigError, DecodeError, EncodeError, EnvelopeError, PoolError, SendError};
pub use int::{Int, ParseIntError};
pub use int_list::IntList;
pub use mailbox::DeliverError;
pub use peer_spec::PeerSpecError;
pub use pool::{BoundListener, PeerStats, Pool, Received};
pub use value::Value;
