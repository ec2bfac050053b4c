//! The gRPC services: `ControlService` and `JournalService` over the
//! guarded control port, plus health and reflection (v1 and v1alpha). This
//! module only builds services; the gateway (`crate::gateway`) serves them.

mod control;
mod conv;
mod journal;
pub mod layers;
pub mod status;

use std::sync::Arc;

use tonic::service::Routes;
use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Status};

pub use control::ControlApi;
pub use journal::{EventStream, JournalApi, LogStream};

use crate::control::{ControlError, ControlPlane};
use crate::gateway::Limits;
use crate::pb;
use crate::pb::control_service_server::ControlServiceServer;
use crate::pb::journal_service_server::JournalServiceServer;
use crate::security::Guarded;
use crate::transport::admission::PerUid;
use crate::transport::peer::{Caller, ConnectionInfo};

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

/// The gateway's gRPC services as one set of routes, and the health
/// reporter that turns them NOT_SERVING when the gateway drains.
pub async fn routes<C: ControlPlane>(
    guard: Guarded<C>,
    limits: &Limits,
) -> Result<(Routes, tonic_health::server::HealthReporter), tonic_reflection::server::Error> {
    let info = conv::info(&guard.target(), limits);
    let shared = Arc::new(Shared {
        info,
        guard,
        streams: PerUid::new(limits.max_streams_per_uid),
        max_tail_bytes: limits.max_tail_bytes,
    });
    let control = ControlServiceServer::new(ControlApi::new(Arc::clone(&shared)))
        .max_decoding_message_size(limits.max_request_bytes)
        .max_encoding_message_size(limits.max_response_bytes);
    let journal = JournalServiceServer::new(JournalApi::new(Arc::clone(&shared)))
        .max_decoding_message_size(limits.max_request_bytes)
        .max_encoding_message_size(limits.max_response_bytes);
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<ControlServiceServer<ControlApi<C>>>()
        .await;
    health
        .set_serving::<JournalServiceServer<JournalApi<C>>>()
        .await;
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            // google.rpc.ErrorInfo/RetryInfo, so grpcurl and buf curl can
            // print the details every error carries.
            .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
    };
    let routes = Routes::builder()
        .add_service(InterceptedService::new(control, identify))
        .add_service(InterceptedService::new(journal, identify))
        .add_service(health_service)
        .add_service(reflection().build_v1()?)
        .add_service(reflection().build_v1alpha()?)
        .clone()
        .routes();
    Ok((routes, health))
}

/// The services health reports on, the whole server (`""`) included.
pub const HEALTH_SERVICES: [&str; 3] = [
    "",
    "supervisor.gateway.v1.ControlService",
    "supervisor.gateway.v1.JournalService",
];
