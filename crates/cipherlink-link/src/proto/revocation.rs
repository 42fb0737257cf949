//! Revoking the open links of a token (docs §6, §8): the server endpoint
//! keeps one watch per open link, by token id, and trips it when a new token
//! store no longer holds that token active; the link then closes itself.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

/// One open link's revocation flag, with the waker of whoever waits for it.
#[derive(Default)]
pub struct Revocation {
    revoked: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl Revocation {
    /// Whether the link's token was revoked.
    pub fn is_revoked(&self) -> bool {
        self.revoked.load(Ordering::Acquire)
    }

    /// Ready once revoked; otherwise wakes `cx` when it is.
    pub fn poll_revoked(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.is_revoked() {
            return Poll::Ready(());
        }
        let mut w = self.waker.lock().unwrap_or_else(|p| p.into_inner());
        match &*w {
            Some(old) if old.will_wake(cx.waker()) => {}
            _ => *w = Some(cx.waker().clone()),
        }
        drop(w);
        // Revoked between the check and the registration: do not miss it.
        if self.is_revoked() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    pub(crate) fn revoke(&self) {
        self.revoked.store(true, Ordering::Release);
        let w = self.waker.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(w) = w {
            w.wake();
        }
    }
}
