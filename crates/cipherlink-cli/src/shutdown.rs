//! Stopping. The first Ctrl-C (SIGINT) or SIGTERM asks a server to stop
//! cleanly (close what is open, say so); a second one ends the process at
//! once, as cargo and docker do, so a stuck shutdown never needs `kill -9`.
//!
//! Only commands that wait for [`requested`] take the signals over; the
//! others keep the default (the first Ctrl-C ends them).

use std::sync::OnceLock;

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

static STOP: OnceLock<watch::Receiver<bool>> = OnceLock::new();

/// Resolves when the first SIGINT or SIGTERM arrives. The first call
/// installs the handlers, from then on a second signal exits with status
/// 130 (or 143 for SIGTERM) without waiting for the clean stop.
pub async fn requested() {
    let mut stop = STOP.get_or_init(install).clone();
    let _ = stop.wait_for(|stopping| *stopping).await;
}

/// Takes the signals over now, before a server says it listens: a signal
/// sent as soon as it does is then a clean stop, not the default exit.
pub fn take_over() {
    STOP.get_or_init(install);
}

fn install() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    // Registered here, not in the task, so they hold once this returns.
    let (Ok(mut interrupt), Ok(mut terminate)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        tracing::warn!("cannot watch for Ctrl-C and SIGTERM");
        return rx;
    };
    tokio::spawn(async move {
        let mut seen = 0;
        loop {
            let status = tokio::select! {
                _ = interrupt.recv() => 130,
                _ = terminate.recv() => 143,
            };
            seen += 1;
            if seen == 1 {
                let _ = tx.send(true);
            } else {
                eprintln!("second signal: exiting now");
                std::process::exit(status);
            }
        }
    });
    rx
}
