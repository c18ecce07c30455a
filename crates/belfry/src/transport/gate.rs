//! A stream wrapper that polls the inner stream again only after the inner stream asked to be
//! woken (or after it yielded an item), the way `FuturesUnordered` treats its futures.
//!
//! Why: a session's `select!` loop re-polls every branch each time it wakes, and it wakes for
//! every frame it sends. Polling the WebSocket's read half then runs tungstenite's read path,
//! which zero-fills the whole read buffer before each `read()` even when the socket has nothing:
//! under callgrind that memset was 45% of the server's instructions in a broadcast
//! (docs/benchmarks.md). Gated, the read half runs only when the socket is readable.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;
use futures_util::{Stream, StreamExt};

/// Set by the inner stream's waker; forwards the wake-up to the task polling the gate.
#[derive(Default)]
struct Flag {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

/// `inner`, polled only when it may have something (see the module doc).
pub struct Gated<S> {
    inner: S,
    flag: Arc<Flag>,
    waker: Waker,
}

impl<S> Gated<S> {
    /// Wraps `inner`; the first poll always reaches it.
    pub fn new(inner: S) -> Self {
        let flag = Arc::new(Flag::default());
        flag.woken.store(true, Ordering::Relaxed);
        let waker = Waker::from(Arc::clone(&flag));
        Self { inner, flag, waker }
    }
}

impl<S: Stream + Unpin> Stream for Gated<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        self.flag.task.register(cx.waker());
        if !self.flag.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        let this = &mut *self;
        let mut inner_cx = Context::from_waker(&this.waker);
        match this.inner.poll_next_unpin(&mut inner_cx) {
            Poll::Pending => Poll::Pending,
            ready => {
                // The inner stream may hold more (a buffer with several frames): look again on
                // the next poll without waiting for a wake-up.
                this.flag.woken.store(true, Ordering::Release);
                ready
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// Counts polls; yields its items one per poll after each `push`.
    struct Counting {
        polls: Arc<AtomicUsize>,
        rx: futures_util::stream::BoxStream<'static, u32>,
    }

    impl Stream for Counting {
        type Item = u32;

        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<u32>> {
            self.polls.fetch_add(1, Ordering::Relaxed);
            self.rx.poll_next_unpin(cx)
        }
    }

    #[tokio::test]
    async fn the_inner_stream_is_polled_only_after_it_woke_the_gate() {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<u32>();
        let polls = Arc::new(AtomicUsize::new(0));
        let inner = Counting {
            polls: Arc::clone(&polls),
            rx: tokio_stream::wrappers::UnboundedReceiverStream::new(rx).boxed(),
        };
        let mut gated = Gated::new(inner);
        let waker = Waker::from(Arc::new(Flag::default()));
        let mut cx = Context::from_waker(&waker);

        assert!(gated.poll_next_unpin(&mut cx).is_pending());
        assert_eq!(
            polls.load(Ordering::Relaxed),
            1,
            "the first poll reaches the stream"
        );
        for _ in 0..10 {
            assert!(gated.poll_next_unpin(&mut cx).is_pending());
        }
        assert_eq!(polls.load(Ordering::Relaxed), 1, "no wake-up, no poll");

        tx.send(7).unwrap();
        tx.send(8).unwrap();
        assert_eq!(gated.poll_next_unpin(&mut cx), Poll::Ready(Some(7)));
        assert_eq!(gated.poll_next_unpin(&mut cx), Poll::Ready(Some(8)));
        assert!(gated.poll_next_unpin(&mut cx).is_pending());
        drop(tx);
        assert_eq!(gated.poll_next_unpin(&mut cx), Poll::Ready(None));
    }
}
