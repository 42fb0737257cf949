//! A benchmark's progress callback: the lab reports events as a run goes,
//! and the binary decides how to show them (progress bars, lines); the lab
//! itself prints nothing.

use std::sync::Arc;

/// A callback for one benchmark's events `E`, called from any thread.
pub struct Observer<E>(Arc<dyn Fn(&E) + Send + Sync>);

impl<E> Observer<E> {
    /// Wraps `callback`.
    pub fn new(callback: impl Fn(&E) + Send + Sync + 'static) -> Observer<E> {
        Observer(Arc::new(callback))
    }

    /// Tells `observer`, if there is one.
    pub(crate) fn emit(observer: Option<&Observer<E>>, event: E) {
        if let Some(observer) = observer {
            (observer.0)(&event);
        }
    }
}

impl<E> Clone for Observer<E> {
    fn clone(&self) -> Self {
        Observer(self.0.clone())
    }
}

impl<E> std::fmt::Debug for Observer<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Observer")
    }
}
