//! TYPHOON on tokio: [`connect`] (a client's socket and timers) and
//! [`TyphoonListener`] (one UDP socket for every client, sessions keyed by
//! the client's address), both yielding a [`TyphoonSession`].

mod client;
mod listener;
mod session;

pub use cipherlink_port::driver::Admit;
pub use client::connect;
pub use listener::{Accepted, TyphoonListener, MAX_SESSIONS, REPLAY_MEMORY};
pub use session::{TyphoonReader, TyphoonSession, TyphoonWriter, INBOX_BYTES};

use tokio::time::Instant;

use crate::error::Error;

fn io_err(what: impl Into<String>, e: std::io::Error) -> Error {
    Error::Io {
        what: what.into(),
        reason: e.to_string(),
    }
}

/// The engines' clock: ms since the driver started.
#[derive(Debug, Clone, Copy)]
struct Clock(Instant);

impl Clock {
    fn new() -> Self {
        Self(Instant::now())
    }

    fn now(&self) -> u64 {
        u64::try_from(self.0.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn at(&self, ms: u64) -> Instant {
        self.0 + std::time::Duration::from_millis(ms)
    }
}

/// The OS's randomness for an engine.
fn os_rng() -> crate::engine::Random {
    use rand::SeedableRng;
    Box::new(rand::rngs::StdRng::from_os_rng())
}
