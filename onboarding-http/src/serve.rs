//! Serving a router over TCP with the limits `axum::serve` does not set:
//! a header-read timeout, an idle timeout, a connection cap, a lingering
//! close and a bounded graceful shutdown.
//!
//! Each connection is HTTP/1.1 (hyper) under a watchdog that knows whether
//! a request is being handled and when bytes last moved:
//! - between requests, a request head must arrive whole within
//!   `header_timeout` of its first byte (of the connection's start, for the
//!   first request): a client that trickles a header line every few seconds
//!   is closed then;
//! - a connection where no request is being handled and no byte moves in
//!   either direction for `idle_timeout` is closed (an idle keep-alive
//!   connection, or a client that stopped reading its answer);
//! - while a request is handled the router's own request timeout applies.
//!
//! When hyper ends a connection whose client may still be sending (an
//! answer such as 413 given before the body was read), the socket is not
//! closed at once: closing with unread data makes the kernel send a reset,
//! and a client that writes its whole body before reading (Python's
//! `urllib` and `requests`) then sees "connection reset" instead of the
//! answer. The write side is shut instead, and what the client still sends
//! is read and dropped, up to `linger_bytes` or `linger` (a lingering close).

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// The limits of [`serve`]. Every field has a default.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServeConfig {
    /// Longest time a request head (request line and headers) may take to
    /// arrive, from its first byte, or from the connection's start for the
    /// first request (default 10 s).
    pub header_timeout: Duration,
    /// A connection with no request in progress and no byte moving in either
    /// direction is closed after this (default 60 s).
    pub idle_timeout: Duration,
    /// Connections open at once (default 10,000). At the cap, new
    /// connections wait in the listen backlog until one closes. Keep it
    /// below the process's open-file limit (`ulimit -n`) minus what the
    /// backends' connection pools use.
    pub max_connections: usize,
    /// Lingering close: how long the rest of an unread request is read and
    /// dropped after the answer (default 5 s).
    pub linger: Duration,
    /// Lingering close: how many bytes of it at most (default 64 MiB).
    pub linger_bytes: u64,
    /// Graceful shutdown: how long connections get to finish their requests
    /// once the shutdown signal resolves (default 30 s).
    pub shutdown_timeout: Duration,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 10_000,
            linger: Duration::from_secs(5),
            linger_bytes: 64 * 1024 * 1024,
            shutdown_timeout: Duration::from_secs(30),
        }
    }
}

impl ServeConfig {
    /// Sets the header-read timeout.
    pub fn with_header_timeout(mut self, timeout: Duration) -> Self {
        self.header_timeout = timeout;
        self
    }

    /// Sets the idle timeout.
    pub fn with_idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Sets the connection cap (at least 1).
    pub fn with_max_connections(mut self, max: usize) -> Self {
        self.max_connections = max.max(1);
        self
    }

    /// Sets the lingering close's time and byte bounds.
    pub fn with_linger(mut self, linger: Duration, bytes: u64) -> Self {
        self.linger = linger;
        self.linger_bytes = bytes;
        self
    }

    /// Sets how long a graceful shutdown waits for open connections.
    pub fn with_shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then stops
/// accepting, lets each connection finish the request it is handling (idle
/// ones close at once), and returns when all are closed or after
/// [`ServeConfig::shutdown_timeout`].
///
/// HTTP/1.1 only. See the module docs for the timeouts and the lingering
/// close. Accept errors (e.g. out of file descriptors) are logged and
/// retried after a pause; they never end the loop.
pub async fn serve<F>(listener: TcpListener, app: Router, config: ServeConfig, shutdown: F)
where
    F: Future<Output = ()> + Send,
{
    let max = config.max_connections.clamp(1, 1 << 24);
    let slots = Arc::new(Semaphore::new(max));
    let config = Arc::new(config);
    let (stop, stopped) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => permit,
            () = &mut shutdown => break,
        };
        let Ok(permit) = permit else { break };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                tokio::spawn(connection(
                    stream,
                    peer,
                    app.clone(),
                    config.clone(),
                    stopped.clone(),
                    permit,
                ));
            }
            Err(e) if is_per_connection(&e) => {}
            Err(e) => {
                tracing::error!(error = %e, "accept failed; retrying in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    drop(listener);
    let _ = stop.send(true);
    // Every connection holds a slot: all slots free means all connections closed.
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    if tokio::time::timeout(config.shutdown_timeout, slots.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!(
            open = max - slots.available_permits(),
            "shutdown timeout: connections still open are dropped"
        );
    }
}

/// Errors of one connection that was being accepted, not of the listener.
fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// How a connection ended.
enum Ended {
    /// hyper finished it (the client closed, or no more requests are read).
    Done(hyper::Result<()>),
    /// The watchdog closed it.
    Expired(&'static str),
}

async fn connection(
    stream: TcpStream,
    peer: std::net::SocketAddr,
    app: Router,
    config: Arc<ServeConfig>,
    mut stop: watch::Receiver<bool>,
    _slot: OwnedSemaphorePermit,
) {
    let _ = stream.set_nodelay(true);
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
    });
    let service = {
        let (router, activity) = (TowerToHyperService::new(app), activity.clone());
        hyper::service::service_fn(move |mut request: Request<Incoming>| {
            let in_progress = activity.request_started();
            // The client's address, for the throttle of failed authentications.
            request
                .extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
            let call = hyper::service::Service::call(&router, request.map(Body::new));
            Box::pin(async move {
                let response = call.await;
                drop(in_progress);
                response
            }) as Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>
        })
    };
    let mut conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(io, service);
    let mut stopping = false;
    let mut stop_signal = std::pin::pin!(async move {
        let _ = stop.wait_for(|stop| *stop).await;
    });
    let started = Instant::now();
    let mut watchdog = std::pin::pin!(tokio::time::sleep_until(started + config.header_timeout));
    let ended = std::future::poll_fn(|cx| {
        if !stopping && stop_signal.as_mut().poll(cx).is_ready() {
            stopping = true;
            Pin::new(&mut conn).graceful_shutdown();
        }
        if let Poll::Ready(result) = conn.poll_without_shutdown(cx) {
            return Poll::Ready(Ended::Done(result));
        }
        // Every change of the activity happens while `conn` is polled just
        // above, so the deadline is re-read here, after each change.
        let Some((at, what)) = activity.deadline(&config) else {
            return Poll::Pending;
        };
        if at <= Instant::now() {
            return Poll::Ready(Ended::Expired(what));
        }
        if watchdog.deadline() != at {
            watchdog.as_mut().reset(at);
        }
        match watchdog.as_mut().poll(cx) {
            // Fired just now (the clock moved on since `now` was read).
            Poll::Ready(()) => Poll::Ready(Ended::Expired(what)),
            Poll::Pending => Poll::Pending,
        }
    })
    .await;
    match ended {
        Ended::Done(Ok(())) => {
            let stream = conn.into_parts().io.into_inner().inner;
            linger(stream, &config).await;
        }
        Ended::Done(Err(e)) => tracing::debug!(error = %e, "connection ended with an error"),
        Ended::Expired(what) => tracing::debug!(timeout = what, "connection closed"),
    }
}

/// Shuts the write side (the client sees the end of the answer), then reads
/// and drops what the client still sends, within the bounds, before the
/// socket closes: closing with unread bytes would reset the connection.
async fn linger(mut stream: TcpStream, config: &ServeConfig) {
    if stream.shutdown().await.is_err() {
        return;
    }
    let deadline = Instant::now() + config.linger;
    let mut left = config.linger_bytes;
    let mut buf = vec![0u8; 16 * 1024];
    while left > 0 {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => left = left.saturating_sub(n as u64),
            _ => return,
        }
    }
}

/// What the watchdog of one connection knows.
struct Activity {
    state: Mutex<ActivityState>,
}

struct ActivityState {
    /// Requests whose answer is not ready yet.
    in_progress: u32,
    /// When the head being read started (its first byte; the connection's
    /// start for the first request); `None` between requests.
    head_started: Option<Instant>,
    /// When a byte last moved, or the last answer was ready.
    last_io: Instant,
}

impl Activity {
    fn new() -> Self {
        let now = Instant::now();
        Self {
            state: Mutex::new(ActivityState {
                in_progress: 0,
                head_started: Some(now),
                last_io: now,
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, ActivityState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn read(&self, n: usize) {
        if n == 0 {
            return;
        }
        let mut s = self.state();
        let now = Instant::now();
        s.last_io = now;
        if s.in_progress == 0 && s.head_started.is_none() {
            s.head_started = Some(now);
        }
    }

    fn wrote(&self, n: usize) {
        if n > 0 {
            self.state().last_io = Instant::now();
        }
    }

    /// The head is complete: the router has the request.
    fn request_started(self: &Arc<Self>) -> InProgress {
        let mut s = self.state();
        s.in_progress += 1;
        s.head_started = None;
        InProgress(self.clone())
    }

    /// When the connection expires, and which timeout it is then (`None`:
    /// a request is in progress, which the router's request timeout bounds).
    fn deadline(&self, config: &ServeConfig) -> Option<(Instant, &'static str)> {
        let s = self.state();
        if s.in_progress > 0 {
            return None;
        }
        Some(match s.head_started {
            Some(started) => (started + config.header_timeout, "header"),
            None => (s.last_io + config.idle_timeout, "idle"),
        })
    }
}

/// A request being handled; its answer is ready when this drops.
struct InProgress(Arc<Activity>);

impl Drop for InProgress {
    fn drop(&mut self) {
        let mut s = self.0.state();
        s.in_progress = s.in_progress.saturating_sub(1);
        s.last_io = Instant::now();
    }
}

/// A stream that tells its [`Activity`] when bytes move.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            self.activity.read(buf.filled().len() - before);
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled {
            self.activity.wrote(n);
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = polled {
            self.activity.wrote(n);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
