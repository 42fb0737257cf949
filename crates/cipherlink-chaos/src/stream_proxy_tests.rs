use std::mem::size_of;
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncWriteExt, ReadBuf};

use super::*;
use crate::memory::heap_block;
use crate::stream_queue::QueueMeter;

/// A pipe end that counts the bytes that went through it.
struct Counted<T> {
    inner: T,
    bytes: Arc<AtomicUsize>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            self.bytes
                .fetch_add(buf.filled().len() - before, Ordering::Relaxed);
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled {
            self.bytes.fetch_add(n, Ordering::Relaxed);
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Runs one direction from a sender that never stops into a receiver that
/// never reads, until the proxy stops taking bytes (virtual time: nothing
/// else runs meanwhile); returns the bytes it took and did not pass on,
/// and the queue's meter.
async fn fill(imp: Impairments, budget: usize) -> (usize, Arc<QueueMeter>) {
    let queue = QueueBudget::new(budget, imp.segment(), CHUNK, QUEUE_CHUNKS);
    let meter = queue.meter();
    let (taken, passed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (mut feed, source) = tokio::io::duplex(64 * 1024);
    let (sink, unread) = tokio::io::duplex(64);
    let direction = Direction {
        from: "client",
        to: "upstream",
        shaper: Shaper::new(imp, 0, 0),
        queue,
        idle: Duration::from_secs(3600),
        start: Instant::now(),
        record: None,
    };
    let task = tokio::spawn(direction.run(
        Counted {
            inner: source,
            bytes: Arc::clone(&taken),
        },
        Counted {
            inner: sink,
            bytes: Arc::clone(&passed),
        },
    ));
    let sender = tokio::spawn(async move {
        let chunk = [7u8; 4096];
        while feed.write_all(&chunk).await.is_ok() {}
    });
    let (mut last, mut still) = (0, 0);
    while still < 20 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let now = taken.load(Ordering::Relaxed);
        (last, still) = if now == last {
            (last, still + 1)
        } else {
            (now, 0)
        };
    }
    task.abort();
    sender.abort();
    drop(unread);
    (last - passed.load(Ordering::Relaxed), meter)
}

#[tokio::test(start_paused = true)]
async fn slice_one_holds_no_more_memory_than_its_budget() {
    // Each byte a step of its own: counted by payload, 64 KiB would let
    // the proxy hold 64 Ki steps, some 4.6 MB.
    const BUDGET: usize = 64 * 1024;
    let imp = Impairments {
        slice: NonZeroUsize::new(1),
        ..Impairments::default()
    };
    let (held, meter) = fill(imp, BUDGET).await;
    let per_byte = size_of::<Step>() + heap_block(1);
    assert!(per_byte >= 70, "{per_byte}");
    assert!(held > 0);
    assert!(
        held * per_byte <= BUDGET,
        "{held} one-byte steps of {per_byte} B each held in a budget of {BUDGET} B"
    );
    assert!(meter.peak() <= BUDGET, "{}", meter.peak());
    // The queue did fill up: the budget is what stopped the reading.
    assert!(meter.queued() > BUDGET / 2, "{}", meter.queued());
}

#[tokio::test(start_paused = true)]
async fn unsliced_the_same_bound_holds_nearly_its_size_in_payload() {
    const BUDGET: usize = 256 * 1024;
    let (held, meter) = fill(Impairments::default(), BUDGET).await;
    assert!(held <= BUDGET, "{held}");
    assert!(held > BUDGET / 2, "{held}");
    assert!(meter.peak() <= BUDGET, "{}", meter.peak());
}
