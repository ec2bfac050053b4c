//! The gateway's own numbers: connections (read from the admission budget
//! at scrape time) and RPCs by method and status code, with their latency.

use std::collections::HashSet;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use prost::Message as _;
use tonic::Code;

use crate::transport::admission::Budget;
use crate::transport::grpc::status::code_name;

/// The label of a call to a method the gateway does not serve. Paths are
/// chosen by clients: naming each would let any caller grow the registry
/// without bound.
pub const UNKNOWN_METHOD: &str = "unknown";

/// Latency buckets, in seconds: a local socket answers in well under a
/// millisecond, a command waits for a child to stop (up to its
/// `stop_timeout`).
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RpcLabels {
    method: &'static str,
    code: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct MethodLabel {
    method: &'static str,
}

/// `/package.Service/Method` of every method served, from the descriptor
/// sets the server registers: the same for every gateway in the process,
/// so the label of a call borrows from it instead of allocating.
static SERVED: LazyLock<HashSet<String>> = LazyLock::new(served_methods);

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// What the gateway reports: give it to
/// [`GatewayOptions::metrics`](crate::gateway::GatewayOptions) and it is
/// filled as the gateway serves.
#[derive(Debug)]
pub struct GatewayMetrics {
    rpcs: Family<RpcLabels, Counter>,
    latency: Family<MethodLabel, Histogram, fn() -> Histogram>,
    connections: Arc<Connections>,
}

impl GatewayMetrics {
    pub(super) fn new() -> Self {
        Self {
            rpcs: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            connections: Arc::default(),
        }
    }

    pub(super) fn register(&self, registry: &mut Registry) {
        registry.register(
            "rpc_requests",
            "gRPC calls answered, by method and status code (a streaming call counts when its response starts)",
            self.rpcs.clone(),
        );
        registry.register_with_unit(
            "rpc_duration",
            "Time from a gRPC request to its response headers, by method",
            Unit::Seconds,
            self.latency.clone(),
        );
        registry.register_collector(Box::new(Arc::clone(&self.connections)));
    }

    /// Connections are read from `budget` at every scrape (the one the
    /// gateway admits with; the last one given wins).
    pub fn track_connections(&self, budget: Arc<Budget>) {
        *self
            .connections
            .budget
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(budget);
    }

    /// Records one answered call to `path` (`/package.Service/Method`).
    pub fn observe_rpc(&self, path: &str, code: Code, latency: Duration) {
        self.observe_method(method_label(path), code, latency);
    }

    /// Records one answered call to a method named by [`method_label`].
    pub fn observe_method(&self, method: &'static str, code: Code, latency: Duration) {
        self.rpcs
            .get_or_create(&RpcLabels {
                method,
                code: code_name(code),
            })
            .inc();
        self.latency
            .get_or_create(&MethodLabel { method })
            .observe(latency.as_secs_f64());
    }
}

/// Connections open and admitted, read from the budget when scraped.
#[derive(Debug, Default)]
struct Connections {
    budget: Mutex<Option<Arc<Budget>>>,
}

impl Collector for Connections {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let budget = self
            .budget
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let (open, granted) = budget.map_or((0, 0), |b| (b.held(), b.granted()));
        let open = ConstGauge::new(open as u64);
        open.encode(encoder.encode_descriptor(
            "gateway_connections_open",
            "Connections holding a slot of max_connections (both protocols, both sockets)",
            None,
            open.metric_type(),
        )?)?;
        let accepted = ConstCounter::new(granted);
        accepted.encode(encoder.encode_descriptor(
            "gateway_connections_accepted",
            "Connections admitted since start (refused ones are not counted)",
            None,
            MetricType::Counter,
        )?)?;
        Ok(())
    }
}

/// The label of a call to `path`: the served method without its leading
/// slash, or [`UNKNOWN_METHOD`].
pub fn method_label(path: &str) -> &'static str {
    SERVED
        .get(path)
        .map_or(UNKNOWN_METHOD, |method| method.trim_start_matches('/'))
}

/// Every method of the services the gateway registers.
fn served_methods() -> HashSet<String> {
    [
        crate::pb::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ]
    .into_iter()
    .filter_map(|bytes| prost_types::FileDescriptorSet::decode(bytes).ok())
    .flat_map(|set| set.file)
    .flat_map(|file| {
        let package = file.package().to_owned();
        file.service.into_iter().flat_map(move |service| {
            let prefix = format!("/{package}.{}/", service.name());
            service
                .method
                .into_iter()
                .map(move |method| format!("{prefix}{}", method.name()))
        })
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every served method is known by its path; anything else is
    /// "unknown", so a client cannot add series by inventing paths.
    #[test]
    fn methods_come_from_the_descriptor_sets() {
        let metrics = GatewayMetrics::new();
        for path in [
            "/supervisor.gateway.v1.ControlService/GetChild",
            "/supervisor.gateway.v1.JournalService/SubscribeEvents",
            "/grpc.health.v1.Health/Check",
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        ] {
            assert!(SERVED.contains(path), "{path}");
        }
        metrics.observe_rpc("/x.Y/Z", Code::Unimplemented, Duration::ZERO);
        metrics.observe_rpc(
            "/supervisor.gateway.v1.ControlService/Nope",
            Code::Unimplemented,
            Duration::ZERO,
        );
        let unknown = RpcLabels {
            method: UNKNOWN_METHOD,
            code: "UNIMPLEMENTED",
        };
        assert_eq!(metrics.rpcs.get_or_create(&unknown).get(), 2);
    }
}
