//! Prometheus metrics: requests by route and status, request latency, unwrap decisions.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus::{
    Encoder as _, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};

use super::AppState;

/// Who may read `GET /metrics` (route names, status counts and latencies tell an outsider
/// how the broker is used, and rendering costs CPU).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricsExposure {
    /// Peers on a loopback address only (a scraper or TLS proxy on the same host).
    #[default]
    Loopback,
    /// Anyone who reaches the listener.
    Public,
    /// Nobody: the route answers 404.
    Off,
}

impl MetricsExposure {
    /// True if a peer at `client` (None: unknown) may read the metrics.
    pub fn allows(self, client: Option<std::net::IpAddr>) -> bool {
        match self {
            MetricsExposure::Public => true,
            MetricsExposure::Off => false,
            MetricsExposure::Loopback => client.is_some_and(|ip| match ip {
                std::net::IpAddr::V4(v4) => v4.is_loopback(),
                // ::1, and ::ffff:127.x.y.z as a dual-stack listener reports IPv4 peers.
                std::net::IpAddr::V6(v6) => {
                    v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
                }
            }),
        }
    }
}

/// The broker's metrics, in a registry of their own (not the process-global one).
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    unwraps: IntCounterVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Fresh metrics.
    pub fn new() -> Metrics {
        let registry = Registry::new_custom(Some("layercrypt_broker".into()), None)
            .expect("a constant, valid prefix");
        let requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests by route and status"),
            &["route", "status"],
        )
        .expect("constant, valid metric definition");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "HTTP request latency by route",
            ),
            &["route"],
        )
        .expect("constant, valid metric definition");
        let unwraps = IntCounterVec::new(
            Opts::new(
                "unwrap_decisions_total",
                "Unwrap decisions (allow, deny, error)",
            ),
            &["decision"],
        )
        .expect("constant, valid metric definition");
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(latency.clone()),
            Box::new(unwraps.clone()),
        ] {
            registry
                .register(c)
                .expect("each metric is registered once");
        }
        Metrics {
            registry,
            requests,
            latency,
            unwraps,
        }
    }

    /// Counts an unwrap decision: `allow`, `deny` or `error`.
    pub fn unwrap_decision(&self, decision: &str) {
        self.unwraps.with_label_values(&[decision]).inc();
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "metrics encoding failed");
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// Middleware: counts and times every request by its route pattern (never the raw path, which
/// would let callers create unbounded label values).
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let start = Instant::now();
    let response = next.run(req).await;
    let metrics = state.metrics();
    metrics
        .latency
        .with_label_values(&[&route])
        .observe(start.elapsed().as_secs_f64());
    metrics
        .requests
        .with_label_values(&[&route, response.status().as_str()])
        .inc();
    response
}
