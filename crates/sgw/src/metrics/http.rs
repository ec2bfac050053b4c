//! `GET /metrics` over HTTP/1.1, on TCP or a Unix socket. A scrape
//! endpoint must never become a way to stall the daemon: at most
//! [`MAX_CONNECTIONS`] at once (others are closed at accept), one request
//! per connection, headers within [`HEADER_TIMEOUT`] and the whole
//! exchange within [`CONNECTION_DEADLINE`].

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::{Format, Metrics};
use crate::config::{GatewayConfig, MetricsListen};
use crate::control::ControlPlane;
use crate::transport::socket::{BindOptions, BoundSocket, SocketError, SocketGuard};

/// Scrapes served at once; Prometheus needs one.
pub const MAX_CONNECTIONS: usize = 8;
/// How long a client may take to send its request headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest a connection lives, request and answer included.
pub const CONNECTION_DEADLINE: Duration = Duration::from_secs(10);
/// Request head bytes buffered at most (hyper's minimum).
const MAX_HEAD_BYTES: usize = 8192;

/// Why the endpoint could not be opened. Both name the address, so the
/// operator knows which setting to change.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("cannot listen on {address} ([metrics] listen): {source}")]
    Tcp {
        address: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("cannot listen on {} ([metrics] listen): {source}", path.display())]
    Unix {
        path: PathBuf,
        #[source]
        source: SocketError,
    },
}

/// A bound metrics endpoint, not yet serving.
#[derive(Debug)]
pub enum MetricsListener {
    Tcp(TcpListener),
    /// The guard removes the socket file when serving ends.
    Unix(UnixListener, SocketGuard, PathBuf),
}

impl MetricsListener {
    /// Binds what `listen` asks for (`None` when it is off). A Unix socket
    /// gets the gateway's `socket_mode` and `bind` rule. Must run inside a
    /// tokio runtime.
    pub async fn bind(
        listen: &MetricsListen,
        gateway: &GatewayConfig,
    ) -> Result<Option<Self>, BindError> {
        match listen {
            MetricsListen::Off => Ok(None),
            MetricsListen::Tcp(address) => TcpListener::bind(address)
                .await
                .map(|listener| Some(Self::Tcp(listener)))
                .map_err(|source| BindError::Tcp {
                    address: *address,
                    source,
                }),
            MetricsListen::Unix(path) => {
                let unix = |source| BindError::Unix {
                    path: path.clone(),
                    source,
                };
                let bound = BoundSocket::bind(&BindOptions {
                    path: path.clone(),
                    mode: gateway.socket_mode,
                    bind: gateway.bind,
                    setting: "[metrics] listen path",
                })
                .map_err(unix)?;
                let (listener, guard) = bound.into_tokio().map_err(unix)?;
                Ok(Some(Self::Unix(listener, guard, path.clone())))
            }
        }
    }

    /// Where to scrape: `http://127.0.0.1:9464/metrics` (the port actually
    /// bound, for port 0), or `unix:/run/sgw/metrics.sock`.
    pub fn url(&self) -> String {
        match self {
            Self::Tcp(listener) => match listener.local_addr() {
                Ok(address) => format!("http://{address}/metrics"),
                Err(error) => format!("(unknown TCP address: {error})"),
            },
            Self::Unix(_, _, path) => format!("unix:{}", path.display()),
        }
    }
}

/// Serves `GET /metrics` on `listener` with `metrics` of `control`, and
/// keeps the exit counters fed from its journal (see
/// [`Metrics::watch_journal`] for `since`), until `stop`.
pub async fn serve<C: ControlPlane>(
    metrics: Arc<Metrics>,
    control: Arc<C>,
    listener: MetricsListener,
    since: SystemTime,
    stop: CancellationToken,
) {
    let watch = metrics.watch_journal(control.events().clone(), since, stop.clone());
    let accept = accept_loop(&metrics, &control, listener, &stop);
    tokio::join!(
        watch.instrument(tracing::info_span!("metrics_journal")),
        accept.instrument(tracing::info_span!("metrics_accept"))
    );
}

async fn accept_loop<C: ControlPlane>(
    metrics: &Arc<Metrics>,
    control: &Arc<C>,
    listener: MetricsListener,
    stop: &CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let tasks = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            accepted = accept(&listener) => accepted,
        };
        let stream = match accepted {
            Ok(stream) => stream,
            Err(error) => {
                // Out of descriptors and the like: back off, do not spin.
                tracing::warn!(%error, "metrics: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::debug!("metrics: {MAX_CONNECTIONS} scrapes in progress, connection closed");
            continue;
        };
        let (metrics, control, stop) = (Arc::clone(metrics), Arc::clone(control), stop.clone());
        match stream {
            Stream::Tcp(stream) => tasks.spawn(async move {
                connection(stream, metrics, control, stop).await;
                drop(slot);
            }),
            Stream::Unix(stream) => tasks.spawn(async move {
                connection(stream, metrics, control, stop).await;
                drop(slot);
            }),
        };
    }
    tasks.close();
    tasks.wait().await;
    // The Unix socket's file goes once nothing serves it.
    drop(listener);
}

enum Stream {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

async fn accept(listener: &MetricsListener) -> io::Result<Stream> {
    match listener {
        MetricsListener::Tcp(listener) => listener.accept().await.map(|(s, _)| Stream::Tcp(s)),
        MetricsListener::Unix(listener, _, _) => {
            listener.accept().await.map(|(s, _)| Stream::Unix(s))
        }
    }
}

/// One request, answered, then the connection closes; cut short by the
/// deadline or by `stop`.
async fn connection<S, C>(
    stream: S,
    metrics: Arc<Metrics>,
    control: Arc<C>,
    stop: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    C: ControlPlane,
{
    let service = service_fn(move |request| {
        let (metrics, control) = (Arc::clone(&metrics), Arc::clone(&control));
        async move { Ok::<_, Infallible>(respond(&metrics, &*control, &request).await) }
    });
    let exchange = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .keep_alive(false)
        .max_buf_size(MAX_HEAD_BYTES)
        .serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        () = stop.cancelled() => {}
        served = tokio::time::timeout(CONNECTION_DEADLINE, exchange) => match served {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::debug!(%error, "metrics: connection failed"),
            Err(_) => tracing::debug!(deadline = ?CONNECTION_DEADLINE, "metrics: connection cut at its deadline"),
        },
    }
}

async fn respond<C: ControlPlane>(
    metrics: &Metrics,
    control: &C,
    request: &Request<Incoming>,
) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match (request.method(), request.uri().path()) {
        (&Method::GET, "/metrics") => {
            let accept = request.headers().get(header::ACCEPT);
            let format = Format::for_accept(accept.and_then(|value| value.to_str().ok()));
            (
                StatusCode::OK,
                format.content_type(),
                Bytes::from(metrics.scrape(control, format).await),
            )
        }
        (_, "/metrics") => (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            Bytes::from_static(b"only GET is allowed\n"),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            Bytes::from_static(b"not found: metrics are at /metrics\n"),
        ),
    };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    if status == StatusCode::METHOD_NOT_ALLOWED {
        response
            .headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET"));
    }
    response
}
