//! Tower layers in front of every gRPC service, one job each.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use http::{HeaderValue, Request, Response};
use tonic::Code;
use tower::{Layer, Service};

use super::status::{to_status, with_details};

/// The gateway's own services, whose handlers call the guard themselves.
const GUARDED_PREFIX: &str = "/supervisor.gateway.v1.";
use crate::metrics::GatewayMetrics;
use crate::security::{MethodClass, Security};
use crate::transport::peer::ConnectionInfo;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// One tracing span per RPC with method, peer uid/pid, status code (when
/// known at the response head) and latency to the response head.
#[derive(Debug, Clone, Copy, Default)]
pub struct TraceLayer;

impl<S> Layer<S> for TraceLayer {
    type Service = Trace<S>;
    fn layer(&self, inner: S) -> Trace<S> {
        Trace { inner }
    }
}

#[derive(Debug, Clone)]
pub struct Trace<S> {
    inner: S,
}

impl<S, B, R> Service<Request<B>> for Trace<S>
where
    S: Service<Request<B>, Response = Response<R>> + Send,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let peer = request
            .extensions()
            .get::<ConnectionInfo>()
            .and_then(|i| i.peer.clone());
        let span = tracing::info_span!(
            "rpc",
            method = %request.uri().path(),
            uid = peer.as_ref().map(|p| p.uid),
            pid = peer.as_ref().and_then(|p| p.pid),
            conn = peer.as_ref().map(|p| p.connection_id),
        );
        let started = Instant::now();
        let future = self.inner.call(request);
        Box::pin(async move {
            let result = future.await;
            if let Ok(response) = &result {
                let code = grpc_status(response).unwrap_or(Code::Ok);
                let _entered = span.enter();
                tracing::debug!(code = ?code, latency_us = started.elapsed().as_micros() as u64, "rpc answered");
            }
            result
        })
    }
}

/// Counts every call by method and status code, with its latency to the
/// response headers, in [`GatewayMetrics`]. Installed only with metrics on.
///
/// The code is read from the `grpc-status` header when the response is
/// trailers-only, which is how every error a handler or layer returns is
/// sent; a response that starts with data counts as OK when it starts. So
/// a streaming call (`SubscribeEvents`, `TailLogs`, health `Watch`) counts
/// once, at its start, and a call whose error only shows in its trailers
/// after data (a response past `max_response_bytes`) counts as OK. A call
/// whose future is dropped before it answers (the client went away, or
/// `request_timeout` cut it) counts as CANCELLED.
#[derive(Debug, Clone)]
pub struct RpcMetricsLayer {
    metrics: Arc<GatewayMetrics>,
}

impl RpcMetricsLayer {
    pub fn new(metrics: Arc<GatewayMetrics>) -> Self {
        Self { metrics }
    }
}

impl<S> Layer<S> for RpcMetricsLayer {
    type Service = RpcMetrics<S>;
    fn layer(&self, inner: S) -> RpcMetrics<S> {
        RpcMetrics {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct RpcMetrics<S> {
    inner: S,
    metrics: Arc<GatewayMetrics>,
}

/// A call being counted: recorded once, as CANCELLED if dropped unanswered.
struct Counting {
    metrics: Arc<GatewayMetrics>,
    method: &'static str,
    started: Instant,
    answered: bool,
}

impl Counting {
    fn answer(mut self, code: Code) {
        self.answered = true;
        self.metrics
            .observe_method(self.method, code, self.started.elapsed());
    }
}

impl Drop for Counting {
    fn drop(&mut self) {
        if !self.answered {
            self.metrics
                .observe_method(self.method, Code::Cancelled, self.started.elapsed());
        }
    }
}

impl<S, B, R> Service<Request<B>> for RpcMetrics<S>
where
    S: Service<Request<B>, Response = Response<R>> + Send,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let counting = Counting {
            metrics: Arc::clone(&self.metrics),
            method: crate::metrics::method_label(request.uri().path()),
            started: Instant::now(),
            answered: false,
        };
        let future = self.inner.call(request);
        Box::pin(async move {
            let result = future.await;
            if let Ok(response) = &result {
                counting.answer(grpc_status(response).unwrap_or(Code::Ok));
            }
            result
        })
    }
}

fn grpc_status<R>(response: &Response<R>) -> Option<Code> {
    let value = response.headers().get("grpc-status")?.to_str().ok()?;
    value.parse::<i32>().ok().map(Code::from_i32)
}

/// tonic's codec reports an oversize request as OUT_OF_RANGE; the contract
/// (like grpc-go and gRPC core) says RESOURCE_EXHAUSTED with an ErrorInfo.
/// Our handlers never return OUT_OF_RANGE, so every such trailers-only
/// response is the codec's limit, rewritten here once for all services
/// (used with `tower::util::MapResponseLayer`).
pub fn size_limit_status(
    domain: &str,
) -> impl Fn(Response<tonic::body::Body>) -> Response<tonic::body::Body> + Clone + use<> {
    let domain: std::sync::Arc<str> = domain.into();
    move |mut response| {
        if grpc_status(&response) != Some(Code::OutOfRange) {
            return response;
        }
        let original = tonic::Status::from_header_map(response.headers());
        let message = original.map(|s| s.message().to_owned()).unwrap_or_default();
        let status = with_details(
            Code::ResourceExhausted,
            format!("request too large: {message}"),
            "message_too_large",
            &domain,
            None,
        );
        let headers = response.headers_mut();
        headers.remove("grpc-message");
        headers.remove("grpc-status-details-bin");
        if status.add_header(headers).is_err() {
            headers.insert("grpc-status", HeaderValue::from_static("8"));
        }
        response
    }
}

/// The guard for what is not the control port: health and reflection
/// calls pass the same read check (admission, read class, rate) as the
/// control port's reads, answered here (trailers-only). The gateway's own
/// services are guarded by [`Guarded`](crate::security::Guarded) in their
/// handlers, once, so this layer lets them through.
#[derive(Debug, Clone)]
pub struct SecurityLayer {
    security: std::sync::Arc<Security>,
    domain: std::sync::Arc<str>,
}

impl SecurityLayer {
    pub fn new(security: std::sync::Arc<Security>, domain: &str) -> Self {
        Self {
            security,
            domain: domain.into(),
        }
    }
}

impl<S> Layer<S> for SecurityLayer {
    type Service = Secured<S>;
    fn layer(&self, inner: S) -> Secured<S> {
        Secured {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Secured<S> {
    inner: S,
    layer: SecurityLayer,
}

impl<S, B, R> Service<Request<B>> for Secured<S>
where
    S: Service<Request<B>, Response = Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // The ready inner service handles this call; a clone takes its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        Box::pin(async move {
            let peer = request
                .extensions()
                .get::<ConnectionInfo>()
                .and_then(|i| i.peer.clone());
            // Without credentials the interceptor answers UNAUTHENTICATED.
            let path = request.uri().path();
            if let Some(peer) = peer.filter(|_| !path.starts_with(GUARDED_PREFIX)) {
                let method = || format!("grpc:{path}");
                let checked = layer
                    .security
                    .check_call(&peer, method, MethodClass::Read)
                    .await;
                if let Err(denial) = checked {
                    let status = to_status(&denial.into(), &layer.domain);
                    return Ok(status.into_http());
                }
            }
            inner.call(request).await
        })
    }
}
