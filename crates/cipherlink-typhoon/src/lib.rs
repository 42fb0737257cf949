//! SeasideVPN's TYPHOON transport, wire-compatible (docs/typhoon-wire.md):
//! a sans-IO codec and timer state machine, and a tokio driver over UDP.
//!
//! ```text
//!   client                                        server
//!     |-- client INIT (key, token, next_in) ------->|  listener port
//!     |<-- server INIT (user id, next_in), after next_in
//!     |== DATA, HDSK (keepalive, may ride on DATA), TERM ==|
//! ```
//!
//! * [`wire`]: every datagram, built and parsed whole (fuzzed).
//! * [`settings`]: `TYPHOON_*`, read as SeasideVPN reads them.
//! * [`rtt`]: the smoothed RTT and the timeout derived from it.
//! * [`engine`]: one session's state machine: datagrams and time in,
//!   datagrams, events and a deadline out.
//! * [`driver`]: [`driver::TyphoonListener`] and [`driver::connect`].
//!
//! Keys are PORT's ([`cipherlink_port::ServerKey`]): SeasideVPN uses one key
//! format for both. TYPHOON has no forward secrecy and no replay protection
//! of its own; cipherlink's link protocol stays the recommended transport.

pub mod driver;
pub mod engine;
pub mod error;
pub mod replay;
pub mod rtt;
pub mod settings;
pub mod wire;

pub use cipherlink_port::{PublicKey, ServerKey, SessionKey};
pub use engine::{Engine, Event};
pub use error::Error;
pub use settings::TyphoonSettings;
