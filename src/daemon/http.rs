//! The daemon's HTTP listener, held to limits so that clients cannot tie it
//! up: a connection cap (a slot is taken before `accept`, so connections
//! over the cap wait in the kernel's backlog and are served as slots free),
//! a deadline for each request head (hyper's header read timeout, which
//! also bounds how long a kept-alive connection waits for its next
//! request), an idle timeout on the socket itself (no byte moving either
//! way), and a body size limit and deadline (applied where a body is read).
//! HTTP/1 only.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Sleep;

use crate::config::DaemonConfig;

/// The listener's limits, from `[daemon]`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Time to receive a request's head.
    pub header_timeout: Duration,
    /// Time to receive a request's body.
    pub body_timeout: Duration,
    /// Longest time without a byte moving on a connection.
    pub idle_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// Largest body accepted.
    pub max_body: usize,
}

impl Limits {
    /// The limits `[daemon]` sets (validated ranges, so nothing saturates).
    pub fn from_config(d: &DaemonConfig) -> Limits {
        Limits {
            header_timeout: Duration::from_secs(d.header_timeout_secs),
            body_timeout: Duration::from_secs(d.body_timeout_secs),
            idle_timeout: Duration::from_secs(d.idle_timeout_secs),
            max_connections: usize::try_from(d.max_connections).unwrap_or(usize::MAX),
            max_body: usize::try_from(d.max_body_bytes).unwrap_or(usize::MAX),
        }
    }
}

/// Serve `app` on `listener` within `limits` until `stop` turns true, then
/// let the connections in flight finish their request (bounded by the
/// limits) and return.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let mut conns = tokio::task::JoinSet::new();
    loop {
        // A slot first, then accept: over the cap, clients wait in the backlog.
        let slot = tokio::select! {
            s = slots.clone().acquire_owned() => match s {
                Ok(s) => s,
                Err(_) => break,
            },
            _ = stopped(&mut stop) => break,
        };
        let (tcp, peer) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stopped(&mut stop) => break,
        };
        while conns.try_join_next().is_some() {}
        let app = app.clone();
        let mut stop = stop.clone();
        conns.spawn(async move {
            let _slot = slot;
            serve_connection(tcp, peer, app, limits, &mut stop).await;
        });
    }
    drop(listener);
    let drain = limits
        .header_timeout
        .saturating_add(limits.body_timeout)
        .saturating_add(Duration::from_secs(5));
    let _ = tokio::time::timeout(drain, async { while conns.join_next().await.is_some() {} }).await;
}

async fn serve_connection(
    tcp: TcpStream,
    peer: SocketAddr,
    app: Router,
    limits: Limits,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) {
    let io = TokioIo::new(IdleIo::new(tcp, limits.idle_timeout));
    let service =
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            let mut app = app.clone();
            async move {
                <Router as tower::Service<_>>::call(&mut app, req.map(axum::body::Body::new)).await
            }
        });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(64 * 1024);
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(%peer, error = %e, "connection closed");
            }
        }
        _ = stopped(stop) => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// A TCP stream that fails with `TimedOut` once no byte has moved in either
/// direction for `idle` while the server waits on it.
struct IdleIo {
    inner: TcpStream,
    idle: Duration,
    deadline: Option<Pin<Box<Sleep>>>,
}

impl IdleIo {
    fn new(inner: TcpStream, idle: Duration) -> IdleIo {
        IdleIo {
            inner,
            idle,
            deadline: None,
        }
    }

    /// After an operation: bytes moved disarm the timer; waiting arms it
    /// (if not already running) and fails once it has run out. A flush
    /// that completes moves nothing, so it leaves the timer as it is.
    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
        moved: impl FnOnce(&T) -> bool,
    ) -> Poll<io::Result<T>> {
        match polled {
            Poll::Ready(Ok(v)) => {
                if moved(&v) {
                    self.deadline = None;
                }
                Poll::Ready(Ok(v))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let idle = self.idle;
                let deadline = self
                    .deadline
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                match deadline.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "connection idle",
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl AsyncRead for IdleIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        // Ready with nothing is the end of the stream: hyper closes then.
        this.watch(cx, polled, |_| true)
    }
}

impl AsyncWrite for IdleIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.watch(cx, polled, |n| *n > 0)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        this.watch(cx, polled, |_| false)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Resolves once `stop` is true (at once if it already is).
async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
