//! The gRPC gateway: `ControlService` and `JournalService` over any
//! [`ControlPlane`], plus health and reflection (v1 and v1alpha), served on
//! a Unix socket with per-connection peer identity.

mod control;
mod conv;
mod journal;
mod layers;
pub mod status;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Server;
use tonic::{Request, Status};

pub use control::ControlApi;
pub use journal::{EventStream, JournalApi, LogStream};

use crate::config::GatewayConfig;
use crate::control::{ControlError, ControlPlane};
use crate::pb;
use crate::pb::control_service_server::ControlServiceServer;
use crate::pb::journal_service_server::JournalServiceServer;
use crate::security::{Guarded, Security};
use crate::transport::admission::{PerUid, Shares};
use crate::transport::legacy::{Adapter, LegacyOptions};
use crate::transport::listener::{AcceptLimits, Acceptor};
use crate::transport::peer::{Caller, ConnectionInfo};

/// The limits the gateway enforces (and reports in `GetInfo`).
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_request_bytes: usize,
    pub max_response_bytes: usize,
    /// `max_connections` and how it is shared between uids.
    pub shares: Shares,
    pub idle_timeout: Duration,
    pub handshake_timeout: Duration,
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

/// What the service implementations share.
#[derive(Debug)]
pub(crate) struct Shared<C> {
    /// `GetInfo`'s answer but for the caller: static for the life of the
    /// server, so built once rather than on every call.
    info: pb::GetInfoResponse,
    /// The control port, behind the security guard: handlers reach the
    /// control plane only through it.
    guard: Guarded<C>,
    /// Open event/log streams per uid.
    streams: Arc<PerUid>,
    max_tail_bytes: usize,
}

impl<C> Shared<C> {
    fn target_id(&self) -> &str {
        &self.info.target_id
    }

    fn status(&self, error: &ControlError) -> Status {
        status::to_status(error, self.target_id())
    }
}

/// Everything `serve_with` needs besides the control plane and the socket.
#[derive(Debug)]
pub struct GatewayOptions {
    pub limits: Limits,
    pub legacy: LegacyOptions,
    pub security: Arc<Security>,
}

impl GatewayOptions {
    /// Default limits and security, legacy on the main socket.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            legacy: LegacyOptions::new(""),
            security: Arc::new(Security::default()),
        }
    }
}

/// UNAUTHENTICATED, with the ErrorInfo every error carries.
fn no_credentials() -> Status {
    status::with_details(
        tonic::Code::Unauthenticated,
        "the kernel reported no peer credentials for this connection".to_owned(),
        "unauthenticated",
        "",
        None,
    )
}

/// The caller, as the interceptor put it into the request.
fn peer<T>(request: &Request<T>) -> Result<Arc<Caller>, Status> {
    request
        .extensions()
        .get::<Arc<Caller>>()
        .cloned()
        .ok_or_else(no_credentials)
}

/// Moves the connection's identity into the request, or refuses a request
/// whose connection had no credentials.
fn identify(mut request: Request<()>) -> Result<Request<()>, Status> {
    let peer = request
        .extensions()
        .get::<ConnectionInfo>()
        .and_then(|info| info.peer.clone())
        .ok_or_else(no_credentials)?;
    request.extensions_mut().insert(peer);
    Ok(request)
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
    } = options;
    let info = conv::info(&control.info(), &limits);
    let target_id = info.target_id.clone();
    let guard = Guarded::new(control, Arc::clone(&security));
    let shared = Arc::new(Shared {
        info,
        guard: guard.clone(),
        streams: PerUid::new(limits.max_streams_per_uid),
        max_tail_bytes: limits.max_tail_bytes,
    });
    let control_service = ControlServiceServer::new(ControlApi::new(Arc::clone(&shared)))
        .max_decoding_message_size(limits.max_request_bytes)
        .max_encoding_message_size(limits.max_response_bytes);
    let journal_service = JournalServiceServer::new(JournalApi::new(Arc::clone(&shared)))
        .max_decoding_message_size(limits.max_request_bytes)
        .max_encoding_message_size(limits.max_response_bytes);

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<ControlServiceServer<ControlApi<C>>>()
        .await;
    health
        .set_serving::<JournalServiceServer<JournalApi<C>>>()
        .await;
    let health_watch = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            for service in [
                "",
                "supervisor.gateway.v1.ControlService",
                "supervisor.gateway.v1.JournalService",
            ] {
                health
                    .set_service_status(service, tonic_health::ServingStatus::NotServing)
                    .await;
            }
        })
    };

    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            // google.rpc.ErrorInfo/RetryInfo, so grpcurl and buf curl can
            // print the details every error carries.
            .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;

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
        },
        Arc::clone(&security),
        adapter.clone(),
        legacy.same_socket,
        stop.clone(),
    );
    if let Some(adapter) = &adapter {
        adapter.start_heartbeat(&legacy.registration, acceptor.tasks(), stop.clone());
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
        .layer(tower::util::MapResponseLayer::new(
            layers::size_limit_status(&target_id),
        ))
        .layer(layers::SecurityLayer::new(
            Arc::clone(&security),
            &target_id,
        ))
        .add_service(InterceptedService::new(control_service, identify))
        .add_service(InterceptedService::new(journal_service, identify))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
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
