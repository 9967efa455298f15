//! Operations: `/healthz`, `/readyz`, `/metrics`.

use axum::extract::State;
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use super::{ApiError, AppState};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

async fn healthz() -> impl IntoResponse {
    Json(serde_json::json!({ "status": "ok" }))
}

/// Unauthenticated: the issuer's part comes from the verifier's cached state, so calling it
/// in a loop makes no request to the issuer (see `OidcVerifier::ready`).
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let (store, issuer) = state.broker().ready().await;
    if let Err(e) = &store {
        tracing::warn!(error = %e, "key store not ready");
    }
    let ready = store.is_ok() && issuer;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({
        "status": if ready { "ready" } else { "unavailable" },
        "store": store.is_ok(),
        "issuer": issuer,
    });
    (status, Json(body))
}

/// Answers 404, like an unknown route, to peers `metrics.expose` does not admit.
async fn metrics(State(state): State<AppState>, parts: Parts) -> Response {
    if !state
        .options()
        .metrics
        .allows(super::extract::client_ip(&parts))
    {
        return ApiError::NotFound("no such route".into()).into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics().render(),
    )
        .into_response()
}
