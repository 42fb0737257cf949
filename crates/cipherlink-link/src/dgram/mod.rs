//! The link protocol over UDP (docs/link-protocol.md §11): the same
//! handshake, keys, tokens and revocation as the stream mode, carried in
//! datagrams that each stand alone.
//!
//! ```text
//!   msg1 (two pieces) ->  [<- cookie reply, under load; msg1 again with its proof ->]
//!                     <- msg2 (one datagram)
//!   records both ways: AES(K_hdr, sid ‖ counter) ‖ AES-GCM(key of the counter's epoch)
//! ```
//!
//! * [`client::DgramClient`] and [`server::DgramServer`]: sans-IO, on a
//!   virtual clock; the server is one state machine for every client of
//!   one socket.
//! * [`wire`]: sizes, the record header, the pieces of msg1, cookies.
//! * [`driver`]: both on tokio ([`driver::connect`], [`driver::DgramListener`]).

pub mod capture;
pub mod client;
mod cookie;
pub mod driver;
mod expiring;
pub mod records;
pub mod server;
mod server_sessions;
pub mod session;
pub mod window;
pub mod wire;

pub use client::{ClientEvent, DgramClient};
pub use server::{DgramServer, DgramServerOptions, ServerEvent, ServerStats};
