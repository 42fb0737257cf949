//! The signals that end a lab: SIGINT (Ctrl-C), SIGTERM (`kill`, a service
//! manager) and SIGHUP (the terminal went away).
//!
//! Left to their default, each ends the process at once, and the network
//! namespaces it made stay behind (a namespace outlives its creator; only
//! `ip netns del` removes it). Once [`StopSignals::catch`] has run, they no
//! longer end the process by themselves: the command notices them, removes
//! what it made, and exits.

use tokio::signal::unix::{signal, Signal, SignalKind};

/// SIGINT, SIGTERM and SIGHUP, caught.
#[derive(Debug)]
pub struct StopSignals {
    int: Signal,
    term: Signal,
    hup: Signal,
}

impl StopSignals {
    /// Starts catching the three. Call it before making anything that must
    /// be removed: a signal that arrives meanwhile is kept for [`Self::recv`].
    /// Needs a tokio runtime.
    pub fn catch() -> std::io::Result<StopSignals> {
        Ok(StopSignals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// Waits for one of them; returns its name (`SIGINT`, ...).
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            Some(()) = self.int.recv() => "SIGINT",
            Some(()) = self.term.recv() => "SIGTERM",
            Some(()) = self.hup.recv() => "SIGHUP",
            // The runtime is shutting down: nothing more will arrive.
            else => std::future::pending().await,
        }
    }
}
