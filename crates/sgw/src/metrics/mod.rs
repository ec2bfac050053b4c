//! The OpenMetrics endpoint (`[metrics] listen`): what it reports
//! ([`Metrics`], independent of `sgw serve`, so an application embedding
//! the gateway can scrape its own control plane) and the small HTTP/1.1
//! server that answers `GET /metrics` ([`serve`]).
//!
//! Everything a [`StateSnapshot`] shows is read from one taken at scrape
//! time rather than mirrored into gauges: a scrape sees the same state
//! `GetState` would. Counters of things a snapshot cannot show are kept
//! here: exits (from the event journal, see [`Metrics::watch_journal`])
//! and RPCs (from a layer of the gRPC server, see [`GatewayMetrics`]).

mod children;
mod gateway;
mod http;

use std::sync::Arc;
use std::time::SystemTime;

use prometheus_client::encoding::prometheus_text;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

pub use gateway::{GatewayMetrics, UNKNOWN_METHOD, method_label};
pub use http::{BindError, MAX_CONNECTIONS, MetricsListener, serve};

use crate::control::{ControlPlane, StateSnapshot};
use crate::journal::EventJournal;

/// Every metric name starts with this (`sgw_child_state`).
pub const PREFIX: &str = "sgw";

/// The text formats a scrape can be answered in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0: what Prometheus asks for first, and the default.
    OpenMetrics,
    /// The older Prometheus text format (0.0.4), for a client that asks
    /// for `text/plain` only: older tools, and `promtool check metrics`,
    /// read nothing else.
    PrometheusText,
}

impl Format {
    /// OpenMetrics unless `accept` names `text/plain` and not OpenMetrics
    /// (Prometheus lists both, OpenMetrics first).
    pub fn for_accept(accept: Option<&str>) -> Self {
        match accept {
            Some(accept)
                if accept.contains("text/plain")
                    && !accept.contains("application/openmetrics-text") =>
            {
                Format::PrometheusText
            }
            _ => Format::OpenMetrics,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::PrometheusText => prometheus_text::CONTENT_TYPE,
        }
    }
}

/// The metrics of one supervisor and its gateway.
#[derive(Debug)]
pub struct Metrics {
    /// What lives between scrapes: RPC and exit counters, and the
    /// connection collector.
    registry: Registry,
    gateway: Arc<GatewayMetrics>,
    history: Arc<children::History>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let gateway = Arc::new(GatewayMetrics::new());
        let history = Arc::new(children::History::default());
        let mut registry = Registry::with_prefix(PREFIX);
        gateway.register(&mut registry);
        history.register(&mut registry);
        Self {
            registry,
            gateway,
            history,
        }
    }

    /// The gateway's part, for [`GatewayOptions::metrics`](crate::gateway::GatewayOptions).
    pub fn gateway(&self) -> Arc<GatewayMetrics> {
        Arc::clone(&self.gateway)
    }

    /// Counts exits and notes process starts (for uptime) from `events`
    /// until `stop`; run it for as long as metrics are served. Records
    /// published before `since` are ignored: a journal kept on disk
    /// replays the previous run's, and counters start at zero with the
    /// process. Take `since` before the supervisor starts, so that no
    /// early exit is missed.
    pub async fn watch_journal(
        &self,
        events: EventJournal,
        since: SystemTime,
        stop: CancellationToken,
    ) {
        self.history.watch(events, since, stop).await;
    }

    /// The text for `snapshot` and the counters so far.
    pub fn encode(&self, snapshot: StateSnapshot, format: Format) -> String {
        let mut scrape = Registry::with_prefix(PREFIX);
        scrape.register_collector(Box::new(self.history.collector(snapshot)));
        let mut text = String::new();
        // Writing to a String cannot fail, and our collectors only fail
        // when the writer does.
        let _ = match format {
            Format::OpenMetrics => encode_registry(&mut text, &scrape)
                .and_then(|()| encode_registry(&mut text, &self.registry))
                .and_then(|()| encode_eof(&mut text)),
            Format::PrometheusText => prometheus_text::encode(&mut text, &scrape)
                .and_then(|()| prometheus_text::encode(&mut text, &self.registry)),
        };
        text
    }

    /// A scrape: a fresh snapshot of `control`, encoded.
    pub async fn scrape<C: ControlPlane>(&self, control: &C, format: Format) -> String {
        self.encode(control.state().await, format)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Prometheus (which lists OpenMetrics first), curl and a bare request
    /// get OpenMetrics; only a client asking for `text/plain` alone gets
    /// the older format.
    #[test]
    fn format_follows_the_accept_header() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::for_accept(Some(prometheus)), Format::OpenMetrics);
        assert_eq!(Format::for_accept(Some("*/*")), Format::OpenMetrics);
        assert_eq!(Format::for_accept(None), Format::OpenMetrics);
        assert_eq!(
            Format::for_accept(Some("text/plain; version=0.0.4")),
            Format::PrometheusText
        );
    }

    /// The same counters in both formats: OpenMetrics ends with `# EOF`,
    /// the older format names counters by their `_total` samples.
    #[test]
    fn both_formats_carry_the_counters() {
        let metrics = Metrics::new();
        metrics.gateway().observe_rpc(
            "/supervisor.gateway.v1.ControlService/GetState",
            tonic::Code::Ok,
            std::time::Duration::from_millis(2),
        );
        let snapshot = StateSnapshot {
            children: Vec::new(),
            state_generation: 1,
            last_event_sequence: 7,
            last_log_sequence: 3,
            dropped_events: 0,
            dropped_logs: 0,
            journal_id: "j".into(),
        };
        let open = metrics.encode(snapshot.clone(), Format::OpenMetrics);
        let sample = r#"sgw_rpc_requests_total{method="supervisor.gateway.v1.ControlService/GetState",code="OK"} 1"#;
        assert!(open.contains(sample), "{open}");
        assert!(
            open.contains("sgw_journal_last_event_sequence 7\n"),
            "{open}"
        );
        assert!(open.ends_with("# EOF\n"), "{open}");
        let plain = metrics.encode(snapshot, Format::PrometheusText);
        assert!(plain.contains(sample), "{plain}");
        assert!(
            plain.contains("# TYPE sgw_rpc_requests_total counter\n"),
            "{plain}"
        );
        assert!(!plain.contains("# EOF"), "{plain}");
    }
}
