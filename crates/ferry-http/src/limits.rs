//! What keeps an HTTPS connection from being held open for nothing: a
//! record of when bytes last moved, a count of requests being handled, and
//! a request body that must keep bringing data.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Least a request body must bring in each window of
/// [`crate::ServeLimits::body_timeout`].
pub const MIN_BODY_BYTES_PER_WINDOW: u64 = 1024;

/// When a connection last moved a byte, and how many of its requests are
/// being handled now.
#[derive(Debug)]
pub struct Activity {
    started: Instant,
    last_ms: AtomicU64,
    handling: AtomicUsize,
}

impl Activity {
    /// Activity of a connection that starts now.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            started: Instant::now(),
            last_ms: AtomicU64::new(0),
            handling: AtomicUsize::new(0),
        })
    }

    fn touch(&self) {
        let ms = self.started.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// When the connection goes idle if nothing happens meanwhile; `None`
    /// while a request is being handled.
    pub fn idle_at(&self, idle: Duration) -> Option<Instant> {
        if self.handling.load(Ordering::Acquire) > 0 {
            return None;
        }
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        Some(self.started + last + idle)
    }

    /// Marks a request as being handled until the guard is dropped.
    pub fn handling(self: &Arc<Self>) -> Handling {
        self.handling.fetch_add(1, Ordering::AcqRel);
        Handling(self.clone())
    }
}

/// A request being handled (see [`Activity::handling`]).
#[derive(Debug)]
pub struct Handling(Arc<Activity>);

impl Drop for Handling {
    fn drop(&mut self) {
        self.0.touch();
        self.0.handling.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A connection's stream that records in [`Activity`] each time bytes move.
#[derive(Debug)]
pub struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> Watched<S> {
    /// Watches `inner`.
    pub fn new(inner: S, activity: Arc<Activity>) -> Self {
        activity.touch();
        Self { inner, activity }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// A response body that counts as a request being handled while the server
/// is still producing it (a streamed answer that goes quiet while the server
/// works is not an idle connection), but not while a produced frame waits
/// for the client to take it (a client that stops reading is idle).
pub struct Responding {
    inner: axum::body::Body,
    activity: Arc<Activity>,
    handling: Option<Handling>,
}

impl Responding {
    /// Watches `inner`, which the handler's `handling` guard covered so far.
    pub fn new(inner: axum::body::Body, activity: Arc<Activity>, handling: Handling) -> Self {
        Self {
            inner,
            activity,
            handling: Some(handling),
        }
    }
}

impl Body for Responding {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Pending => {
                if this.handling.is_none() {
                    this.handling = Some(this.activity.handling());
                }
            }
            Poll::Ready(_) => this.handling = None,
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A request body that fails when a window passes in which it brought
/// less than [`MIN_BODY_BYTES_PER_WINDOW`] while the handler waited for it
/// (a chunked upload that never ends, or a trickle of bytes).
pub struct MinRate {
    inner: axum::body::Body,
    window: Duration,
    got: u64,
    /// Set when the handler first asks for the body: time spent before (a
    /// login, a throttle's wait) is not the client's.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl MinRate {
    /// Watches `inner` in windows of `window`.
    pub fn new(inner: axum::body::Body, window: Duration) -> Self {
        Self {
            inner,
            window,
            got: 0,
            deadline: None,
        }
    }
}

impl Body for MinRate {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let window = this.window;
        let deadline = this
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(window)));
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.got += data.len() as u64;
                }
                return Poll::Ready(Some(Ok(frame)));
            }
            Poll::Ready(other) => return Poll::Ready(other),
            Poll::Pending => {}
        }
        while deadline.as_mut().poll(cx).is_ready() {
            if this.got < MIN_BODY_BYTES_PER_WINDOW {
                return Poll::Ready(Some(Err(axum::Error::new(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "the request body brought {} bytes in {} s (at least {MIN_BODY_BYTES_PER_WINDOW} needed)",
                        this.got,
                        this.window.as_secs()
                    ),
                )))));
            }
            this.got = 0;
            deadline.as_mut().reset(Instant::now() + window);
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
