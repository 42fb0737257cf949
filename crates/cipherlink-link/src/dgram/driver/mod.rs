//! The datagram mode on tokio: [`connect`] (a client's socket and timers)
//! and [`DgramListener`] (one socket for every client), each session a
//! [`DgramSession`].

mod client;
mod listener;
mod session;

pub use client::{connect, connect_exporting_keys};
pub use listener::{DgramAccepted, DgramListener};
pub use session::{DgramReader, DgramSession, DgramWriter, QUEUED_BYTES};

use crate::error::Error;

fn io_err(what: impl Into<String>, e: std::io::Error) -> Error {
    Error::Socket {
        what: what.into(),
        reason: e.to_string(),
    }
}
