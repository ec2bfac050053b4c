//! The gateway's composition root: binds the sockets (`bind`, and the
//! dedicated legacy one in `LegacyOptions::from_config`), builds the
//! acceptor, the gRPC routes, the legacy adapter and the relay heartbeat
//! around one guarded control port, serves until told to stop, and owns
//! the drain. Transports know nothing of each other; this is the
//! one place that wires them.

mod options;
pub mod relay;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;
use tracing::Instrument;

use crate::config::GatewayConfig;
use crate::control::ControlPlane;
use crate::metrics::GatewayMetrics;
use crate::security::{Guarded, Security};
use crate::transport::admission::Shares;
use crate::transport::grpc::{self, layers};
use crate::transport::legacy::{Adapter, LegacyOptions};
use crate::transport::listener::{AcceptLimits, Acceptor};
use crate::transport::socket::{BindOptions, BoundSocket, SocketError, SocketGuard};

/// The limits the gateway enforces (and reports in `GetInfo`).
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_request_bytes: usize,
    pub max_response_bytes: usize,
    /// `max_connections` and how it is shared between uids.
    pub shares: Shares,
    pub idle_timeout: Duration,
    pub handshake_timeout: Duration,
    pub first_byte_timeout: Duration,
    pub request_timeout: Duration,
    pub max_streams_per_uid: usize,
    pub max_tail_bytes: usize,
}

impl Limits {
    /// The limits a `[gateway]` section sets.
    pub fn from_config(gateway: &GatewayConfig) -> Self {
        let mut shares = Shares::for_budget(gateway.max_connections);
        if let Some(per_uid) = gateway.max_connections_per_uid {
            shares.per_uid = per_uid;
        }
        if let Some(reserved) = gateway.reserved_connections {
            shares.reserved = reserved;
        }
        Self {
            max_request_bytes: gateway.max_request_bytes,
            max_response_bytes: gateway.max_response_bytes,
            shares,
            idle_timeout: gateway.idle_timeout,
            handshake_timeout: gateway.handshake_timeout,
            first_byte_timeout: gateway.first_byte_timeout,
            request_timeout: gateway.request_timeout,
            max_streams_per_uid: gateway.max_streams_per_uid,
            max_tail_bytes: gateway.max_tail_bytes,
        }
    }

    /// The default limits with another connection budget (shares derived).
    pub fn with_max_connections(max_connections: usize) -> Self {
        Self::from_config(&GatewayConfig {
            max_connections,
            ..GatewayConfig::default()
        })
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self::from_config(&GatewayConfig::default())
    }
}

/// Everything `serve_with` needs besides the control plane and the socket.
#[derive(Debug)]
pub struct GatewayOptions {
    pub limits: Limits,
    pub legacy: LegacyOptions,
    pub security: Arc<Security>,
    /// Where connections and RPCs are counted (`[metrics]`); none: not counted.
    pub metrics: Option<Arc<GatewayMetrics>>,
}

impl GatewayOptions {
    /// Default limits and security, legacy on the main socket.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            legacy: LegacyOptions::new(""),
            security: Arc::new(Security::default()),
            metrics: None,
        }
    }
}

/// Binds the main socket: the one systemd passed (socket activation), else
/// `path` with the configured mode and bind rule. Returns the listener, the
/// guard that removes the socket file when dropped, and the path to
/// advertise. Must run inside a tokio runtime.
pub fn bind(
    gateway: &GatewayConfig,
    path: std::path::PathBuf,
) -> Result<(UnixListener, SocketGuard, String), SocketError> {
    let bound = match BoundSocket::from_systemd()? {
        Some(activated) => activated,
        None => BoundSocket::bind(&BindOptions {
            path,
            mode: gateway.socket_mode,
            bind: gateway.bind,
            setting: "--socket",
        })?,
    };
    let advertised = bound
        .path()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let (listener, guard) = bound.into_tokio()?;
    Ok((listener, guard, advertised))
}

/// HTTP/2 settings: keepalive finds peers that vanished (half-open
/// connections); the stream limit bounds one connection's share.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_STREAMS_PER_CONNECTION: u32 = 128;

/// Serves the gateway on `listener` with the default legacy options
/// (detection on this socket, no relay) until `shutdown` is cancelled; see
/// [`serve_with`].
pub async fn serve<C: ControlPlane>(
    control: Arc<C>,
    listener: UnixListener,
    limits: Limits,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    serve_with(control, listener, GatewayOptions::new(limits), shutdown).await
}

/// Serves the gateway on `listener` (gRPC, and the legacy adapter for
/// clients that do not speak HTTP/2, per `legacy`) and on the dedicated
/// legacy socket if there is one, until `shutdown` is cancelled. Then it
/// drains: health turns NOT_SERVING, no new connections are accepted, and
/// the future completes once in-flight calls and streams of both protocols
/// have finished (streams end when the journals close).
pub async fn serve_with<C: ControlPlane>(
    control: Arc<C>,
    listener: UnixListener,
    options: GatewayOptions,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let GatewayOptions {
        limits,
        legacy,
        security,
        metrics,
    } = options;
    let target_id = control.info().target_id;
    let guard = Guarded::new(control, Arc::clone(&security));
    let (routes, health) = grpc::routes(guard.clone(), &limits).await?;
    let health_watch = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            for service in grpc::HEALTH_SERVICES {
                health
                    .set_service_status(service, tonic_health::ServingStatus::NotServing)
                    .await;
            }
        })
    };

    // Cancelled with `shutdown`, or when tonic fails, so that the accept
    // loops never outlive the server.
    let stop = shutdown.child_token();
    let adapter = legacy
        .is_enabled()
        .then(|| Adapter::new(guard.clone(), &legacy));
    let acceptor = Acceptor::new(
        AcceptLimits {
            shares: limits.shares,
            handshake_timeout: limits.handshake_timeout,
            first_byte_timeout: limits.first_byte_timeout,
        },
        Arc::clone(&security),
        adapter.clone(),
        legacy.same_socket,
        stop.clone(),
    );
    if let Some(metrics) = &metrics {
        metrics.track_connections(acceptor.budget());
    }
    if let (Some(adapter), Some(target)) = (&adapter, legacy.relay.clone()) {
        let span = tracing::info_span!("registration", relay = %target.socket.display());
        acceptor.tasks().spawn(
            relay::heartbeat(
                Arc::clone(adapter),
                target.socket,
                target.interval,
                stop.clone(),
            )
            .instrument(span),
        );
    }
    let dedicated = legacy.dedicated.map(|socket| {
        let (listener, guard) = socket.into_parts();
        acceptor.serve_legacy(listener);
        guard
    });
    let connections = acceptor.incoming(listener);
    let result = Server::builder()
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        .max_concurrent_streams(Some(MAX_STREAMS_PER_CONNECTION))
        .timeout(limits.request_timeout)
        .layer(layers::TraceLayer)
        // Absent without [metrics]: no per-call cost when nobody scrapes.
        .layer(tower::util::option_layer(
            metrics.map(layers::RpcMetricsLayer::new),
        ))
        .layer(tower::util::MapResponseLayer::new(
            layers::size_limit_status(&target_id),
        ))
        .layer(layers::SecurityLayer::new(
            Arc::clone(&security),
            &target_id,
        ))
        .add_routes(routes)
        .serve_with_incoming_shutdown(connections, shutdown.cancelled_owned())
        .await;
    health_watch.abort();
    stop.cancel();
    if result.is_ok() {
        acceptor.drain().await;
    }
    security.audit().flush_denials().await;
    // The dedicated socket's file goes only once nothing serves it.
    drop(dedicated);
    Ok(result?)
}

/// Why serving stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("reflection rejected the embedded descriptor set: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("the gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}
