//! The HTTP API of `docs/broker-api.md`: one router per resource, one error type, an
//! authentication extractor, rate limit, body limit, timeout, metrics and tracing layers.

mod admin;
mod dev;
mod error;
mod extract;
mod groups;
mod metrics;
mod ops;
mod ratelimit;
mod unwrap;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::StatusCode;
use axum::Router;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

pub use error::ApiError;
pub use extract::{Caller, PeerCertificates};
pub use metrics::{Metrics, MetricsExposure};
pub use ratelimit::RateLimiter;

use crate::auth::dev::DevIssuer;
use crate::service::Broker;

/// Largest request body (413 beyond).
pub const MAX_BODY_LEN: usize = 64 * 1024;

/// Default of [`ApiOptions::ip_rate_per_minute`].
pub const DEFAULT_IP_RATE_PER_MINUTE: u32 = 6000;
/// Default of [`ApiOptions::ip_rate_burst`].
pub const DEFAULT_IP_RATE_BURST: u32 = 600;
/// Default of [`ApiOptions::auth_fail_per_minute`].
pub const DEFAULT_AUTH_FAIL_PER_MINUTE: u32 = 60;
/// Default of [`ApiOptions::auth_fail_burst`].
pub const DEFAULT_AUTH_FAIL_BURST: u32 = 20;

/// Options of the HTTP layer.
#[derive(Debug, Clone)]
pub struct ApiOptions {
    /// Sustained requests per minute per caller (subject, DN or bootstrap admin).
    pub rate_per_minute: u32,
    /// Burst size per caller.
    pub rate_burst: u32,
    /// Sustained requests per minute per client network (IPv4 address, IPv6 /64), counted
    /// before authentication, on every route.
    pub ip_rate_per_minute: u32,
    /// Burst per client network.
    pub ip_rate_burst: u32,
    /// Sustained failed authentications per minute per client network; beyond, requests that
    /// need a credential are refused (429) before it is even checked.
    pub auth_fail_per_minute: u32,
    /// Burst of failed authentications per client network.
    pub auth_fail_burst: u32,
    /// Whole-request timeout.
    pub request_timeout: Duration,
    /// Development token issuer: mounts `POST /dev/token` (`--dev` only).
    pub dev_issuer: Option<Arc<DevIssuer>>,
    /// Who may read `GET /metrics`.
    pub metrics: MetricsExposure,
}

impl Default for ApiOptions {
    fn default() -> Self {
        ApiOptions {
            rate_per_minute: 600,
            rate_burst: 60,
            ip_rate_per_minute: DEFAULT_IP_RATE_PER_MINUTE,
            ip_rate_burst: DEFAULT_IP_RATE_BURST,
            auth_fail_per_minute: DEFAULT_AUTH_FAIL_PER_MINUTE,
            auth_fail_burst: DEFAULT_AUTH_FAIL_BURST,
            request_timeout: Duration::from_secs(30),
            dev_issuer: None,
            metrics: MetricsExposure::default(),
        }
    }
}

/// Shared state of the handlers.
#[derive(Clone, Debug)]
pub struct AppState(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    broker: Arc<Broker>,
    limiter: RateLimiter,
    by_address: RateLimiter,
    auth_failures: RateLimiter,
    metrics: Metrics,
    options: ApiOptions,
}

impl AppState {
    /// State over `broker`.
    pub fn new(broker: Broker, options: ApiOptions) -> AppState {
        AppState(Arc::new(Inner {
            broker: Arc::new(broker),
            limiter: RateLimiter::new(options.rate_per_minute, options.rate_burst),
            by_address: RateLimiter::new(options.ip_rate_per_minute, options.ip_rate_burst),
            auth_failures: RateLimiter::new(options.auth_fail_per_minute, options.auth_fail_burst),
            metrics: Metrics::new(),
            options,
        }))
    }

    /// The broker core.
    pub fn broker(&self) -> &Broker {
        &self.0.broker
    }

    /// The broker core, shared (for the refusal-summary flusher).
    pub fn shared_broker(&self) -> Arc<Broker> {
        Arc::clone(&self.0.broker)
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    /// The options.
    pub fn options(&self) -> &ApiOptions {
        &self.0.options
    }
}

/// The whole API.
pub fn router(state: AppState) -> Router {
    let mut api = Router::new()
        .merge(groups::router())
        .merge(unwrap::router())
        .merge(admin::router())
        .merge(ops::router());
    if state.0.options.dev_issuer.is_some() {
        api = api.merge(dev::router());
    }
    let timeout = state.0.options.request_timeout;
    api.fallback(|| async { ApiError::NotFound("no such route".into()) })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            extract::limit_by_address,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY_LEN))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        // Spans carry the method and the route pattern only: never headers, bodies or tokens.
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let route = req
                .extensions()
                .get::<MatchedPath>()
                .map_or("unmatched", MatchedPath::as_str);
            tracing::info_span!("request", method = %req.method(), route = %route)
        }))
        .with_state(state)
}
