//! The HTTP server loop (HTTP/1.1 over hyper), in place of `axum::serve`, which exposes
//! none of what a server facing the internet needs:
//!
//! - **Idle timeout**: hyper's `header_read_timeout` runs from the moment the connection
//!   waits for a request head, so it also closes a new connection that sends nothing and a
//!   keep-alive connection idling between requests (`tests/hostile_http.rs` measures both);
//!   it is set to `server.idle_timeout_seconds`.
//! - **Header-read timeout**: once a request's first byte has arrived, its head must be
//!   complete within `server.header_read_timeout_seconds` (a per-connection watchdog fed
//!   by [`Watched`], the socket wrapper), so a slow-header client cannot hold a connection
//!   for the whole idle timeout per request.
//! - **Connection cap**: `server.max_connections` permits; a permit lives in the socket
//!   wrapper, so an upgraded WebSocket keeps counting until its socket closes. A connection
//!   past the cap is answered 503 in the JSON envelope with `Connection: close`.
//! - **Keep-alive on errors**: a response whose request body was not read (a 401 to a POST)
//!   would otherwise close the connection with no warning, and a client reusing it gets a
//!   broken pipe. The rest of the body is drained (up to [`DRAIN_LIMIT`] bytes within
//!   [`DRAIN_TIME`]); past that the response says `Connection: close`.
//! - The peer address goes into each request as axum's `ConnectInfo` (auth-failure limits).
//!
//! On cancellation it stops accepting, asks every connection to finish its current request
//! and close, and returns when they have (upgraded WebSockets have their own shutdown).

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderValue, Request, Response};
use axum::Router;
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::api::error::{ApiError, ErrorCode};

/// Most bytes of an unread request body drained to keep its connection alive.
pub const DRAIN_LIMIT: usize = 64 * 1024;
/// Longest wait for those bytes.
pub const DRAIN_TIME: Duration = Duration::from_secs(1);
/// Descriptors kept free for log segments, broker sockets and outgoing webhooks when the
/// connection cap is fitted under the open-file limit.
const RESERVED_DESCRIPTORS: u64 = 256;
/// Over-cap connections answered at once; more are closed unanswered (answering costs a
/// task and the descriptor for up to two seconds).
const REFUSALS_AT_ONCE: usize = 64;

/// The server's connection settings (from `[server]`).
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// `server.header_read_timeout_seconds`.
    pub header_read_timeout: Duration,
    /// `server.idle_timeout_seconds`.
    pub idle_timeout: Duration,
    /// `server.max_connections`, already fitted under the open-file limit.
    pub max_connections: usize,
}

impl ConnectionLimits {
    /// The limits from config, the cap fitted under the open-file limit (raised to its
    /// hard limit first where the soft one is lower).
    pub fn from_config(server: &crate::config::ServerConfig) -> ConnectionLimits {
        let configured = server.max_connections.max(1);
        let max_connections = match open_file_limit() {
            Some(limit) => {
                let fit = limit.saturating_sub(RESERVED_DESCRIPTORS).max(1);
                let fit = usize::try_from(fit).unwrap_or(usize::MAX);
                if fit < configured {
                    tracing::warn!(
                        configured,
                        open_file_limit = limit,
                        effective = fit,
                        "server.max_connections is above the open-file limit; capping it"
                    );
                }
                configured.min(fit)
            }
            None => configured,
        };
        ConnectionLimits {
            header_read_timeout: seconds(server.header_read_timeout_seconds),
            idle_timeout: seconds(server.idle_timeout_seconds),
            max_connections,
        }
    }
}

/// A configured number of seconds as a timer can take it: at least 0.1 s, at most a year
/// (a deadline past `Instant`'s range would panic).
fn seconds(value: f64) -> Duration {
    const YEAR: f64 = 365.0 * 86_400.0;
    Duration::from_secs_f64(if value.is_nan() {
        0.1
    } else {
        value.clamp(0.1, YEAR)
    })
}

/// The soft open-file limit after raising it to the hard limit, or `None` off Unix.
#[cfg(unix)]
fn open_file_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed in.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return None;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    if limit.rlim_cur == libc::RLIM_INFINITY {
        return None;
    }
    // `rlim_t` is u64 on Linux but not on every Unix.
    #[allow(clippy::unnecessary_cast)]
    let current = limit.rlim_cur as u64;
    Some(current)
}

#[cfg(not(unix))]
fn open_file_limit() -> Option<u64> {
    None
}

/// Serves `router` on `listener` until `shutdown` is cancelled and every connection has
/// finished its current request.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let refusals = Arc::new(Semaphore::new(REFUSALS_AT_ONCE));
    let connections = TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    // Out of descriptors or memory: wait rather than spin; the cap should
                    // keep this from happening.
                    tracing::error!(error = %e, "accept failed");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_millis(200)) => continue,
                    }
                }
            },
        };
        match permits.clone().try_acquire_owned() {
            Ok(permit) => {
                connections.spawn(serve_connection(
                    Watched::new(stream, permit),
                    peer,
                    router.clone(),
                    limits,
                    shutdown.clone(),
                ));
            }
            Err(_) => {
                if let Ok(refusing) = refusals.clone().try_acquire_owned() {
                    connections.spawn(refuse(stream, limits.max_connections, refusing));
                }
            }
        }
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

/// Errors of one incoming connection, not of the listener.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// One connection: HTTP/1.1 with upgrades, the header watchdog, and a graceful close on
/// shutdown.
async fn serve_connection(
    stream: Watched,
    peer: SocketAddr,
    router: Router,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) {
    let _ = stream.inner.set_nodelay(true);
    let activity = stream.activity.clone();
    let service_activity = activity.clone();
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let router = router.clone();
        let activity = service_activity.clone();
        async move {
            activity.head_done();
            let response = handle(router, peer, request).await;
            activity.request_done();
            Ok::<_, Infallible>(response)
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.idle_timeout)
        .keep_alive(true);
    let conn = builder
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    let mut shutting_down = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, %peer, "connection ended with an error");
                }
                return;
            }
            _ = shutdown.cancelled(), if !shutting_down => {
                shutting_down = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = activity.head_overdue(limits.header_read_timeout) => {
                tracing::debug!(%peer, "request headers too slow; closing the connection");
                return;
            }
        }
    }
}

/// Runs the router on one request: the peer address in, the unread body drained (or the
/// connection marked to close) after.
async fn handle(router: Router, peer: SocketAddr, request: Request<Incoming>) -> Response<Body> {
    let (mut parts, body) = request.into_parts();
    parts.extensions.insert(ConnectInfo(peer));
    // A client waiting for `100 Continue` has not sent its body: reading it would ask for
    // what we are about to refuse.
    let expects_continue = parts
        .headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let (body, unread) = Tracked::new(Body::new(body));
    let request = Request::from_parts(parts, Body::new(body));
    let Ok(mut response) = router.oneshot(request).await;
    if !unread.finished() {
        let drained = !expects_continue && unread.drain().await;
        if !drained {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
    }
    response
}

/// Answers a connection past the cap: 503 in the JSON envelope, then close. The request is
/// read first (briefly), so the close does not reset the connection before the client has
/// read the answer.
async fn refuse(mut stream: TcpStream, max: usize, _refusing: OwnedSemaphorePermit) {
    let mut buf = vec![0u8; 8 * 1024];
    let mut read = 0usize;
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while read < buf.len() {
            match stream.read(&mut buf[read..]).await {
                Ok(0) | Err(_) => break,
                Ok(n) => read += n,
            }
            if buf[..read].windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
    })
    .await;
    let mut error = ApiError::new(
        ErrorCode::Unavailable,
        format!("the server has {max} connections open, its limit (server.max_connections); retry shortly"),
    );
    error.retry_after = Some(1);
    let body = error.body().to_string();
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body.as_bytes()).await?;
        stream.shutdown().await
    })
    .await;
    // Whatever else the client sends is read and dropped until it closes (or a second has
    // passed), so our close is a FIN, not a reset that could destroy the answer in flight.
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

/// When the current request head started arriving, shared by the socket wrapper (which
/// sees the bytes) and the service (which sees the head complete).
#[derive(Default)]
struct Activity {
    /// Milliseconds since `epoch` at the first byte of a head not yet complete; 0 = none.
    head_started_ms: AtomicU64,
    /// True between a head's completion and its response: bytes read then are the body.
    in_request: AtomicBool,
    epoch: Option<Instant>,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            epoch: Some(Instant::now()),
            ..Default::default()
        }
    }

    fn now_ms(&self) -> u64 {
        let elapsed = self.epoch.map_or(Duration::ZERO, |e| e.elapsed());
        // Never 0, which means "no head in progress".
        u64::try_from(elapsed.as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// Bytes arrived: if no request is being served, they start a head.
    fn bytes_read(&self) {
        if !self.in_request.load(Ordering::Relaxed) {
            let _ = self.head_started_ms.compare_exchange(
                0,
                self.now_ms(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }

    /// A head is complete: its request is being served.
    fn head_done(&self) {
        self.in_request.store(true, Ordering::Relaxed);
        self.head_started_ms.store(0, Ordering::Relaxed);
    }

    /// The response went out: the next bytes start the next head.
    fn request_done(&self) {
        self.in_request.store(false, Ordering::Relaxed);
    }

    /// Completes when a head has been arriving for longer than `limit`. Checks a few times
    /// per `limit`, so a connection is closed between 1 and 1.25 times `limit` late.
    async fn head_overdue(&self, limit: Duration) {
        let limit_ms = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX).max(1);
        let tick = (limit / 4).max(Duration::from_millis(25));
        loop {
            tokio::time::sleep(tick).await;
            let started = self.head_started_ms.load(Ordering::Relaxed);
            if started != 0 && self.now_ms().saturating_sub(started) > limit_ms {
                return;
            }
        }
    }
}

/// The accepted socket, holding its connection permit (so an upgraded WebSocket still
/// counts toward the cap) and reporting reads to its [`Activity`].
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
    _permit: OwnedSemaphorePermit,
}

impl Watched {
    fn new(inner: TcpStream, permit: OwnedSemaphorePermit) -> Watched {
        Watched {
            inner,
            activity: Arc::new(Activity::new()),
            _permit: permit,
        }
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.bytes_read();
        }
        result
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
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
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// What the handler left of a request body.
struct Unread {
    slot: Mutex<Option<Body>>,
    finished: AtomicBool,
}

/// A request body that notes when it was read to the end, and hands itself back to
/// [`Unread`] when the handler drops it unfinished.
struct Tracked {
    inner: Option<Body>,
    unread: Arc<Unread>,
}

impl Tracked {
    fn new(body: Body) -> (Tracked, UnreadHandle) {
        let unread = Arc::new(Unread {
            slot: Mutex::new(None),
            finished: AtomicBool::new(body.is_end_stream()),
        });
        (
            Tracked {
                inner: Some(body),
                unread: unread.clone(),
            },
            UnreadHandle(unread),
        )
    }
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) {
            self.unread.finished.store(true, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(HttpBody::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), HttpBody::size_hint)
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        let Some(body) = self.inner.take() else {
            return;
        };
        if body.is_end_stream() {
            self.unread.finished.store(true, Ordering::Relaxed);
        } else if !self.unread.finished.load(Ordering::Relaxed) {
            *self.unread.slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(body);
        }
    }
}

/// The handler's side of a [`Tracked`] body, kept by [`handle`].
struct UnreadHandle(Arc<Unread>);

impl UnreadHandle {
    /// The body was read to its end (or had none).
    fn finished(&self) -> bool {
        self.0.finished.load(Ordering::Relaxed)
    }

    /// Reads and drops what is left of the body; true when it ended within the limits.
    async fn drain(&self) -> bool {
        let body = self.0.slot.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(body) = body else {
            // Still held somewhere (a handler that kept it): cannot know; close.
            return false;
        };
        let mut body = http_body_util::Limited::new(body, DRAIN_LIMIT);
        let read_all = async {
            use http_body_util::BodyExt;
            while let Some(frame) = body.frame().await {
                if frame.is_err() {
                    return false;
                }
            }
            true
        };
        tokio::time::timeout(DRAIN_TIME, read_all)
            .await
            .unwrap_or(false)
    }
}
