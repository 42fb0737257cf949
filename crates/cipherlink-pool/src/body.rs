//! A request body sent as the parts it was built from (headers, a shared
//! payload, the id), so a large payload goes to the socket without being
//! copied into one buffer first; hyper writes the parts with one vectored
//! write.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

/// The parts of one request body; cheap to clone for a retry.
#[derive(Debug, Clone)]
pub(crate) struct MessageBody {
    parts: VecDeque<Bytes>,
    remaining: u64,
}

impl MessageBody {
    pub(crate) fn new(parts: Vec<Bytes>) -> MessageBody {
        let remaining = parts.iter().map(|p| p.len() as u64).sum();
        MessageBody {
            parts: parts.into_iter().filter(|p| !p.is_empty()).collect(),
            remaining,
        }
    }

    /// Bytes in the whole body.
    pub(crate) fn len(&self) -> u64 {
        self.remaining
    }
}

impl Body for MessageBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        Poll::Ready(this.parts.pop_front().map(|part| {
            this.remaining -= part.len() as u64;
            Ok(Frame::data(part))
        }))
    }

    fn is_end_stream(&self) -> bool {
        self.parts.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}
