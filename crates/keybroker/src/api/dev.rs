//! `POST /dev/token` (`--dev` only): mints a token of the built-in development issuer, so a
//! demo can log in without Check-in. Never mounted otherwise.

use std::time::Duration;

use axum::extract::State;
use axum::http::header::{HeaderValue, CACHE_CONTROL};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;

use super::extract::JsonBody;
use super::{ApiError, AppState};

/// Lifetime of a development token.
const DEV_TOKEN_TTL: Duration = Duration::from_secs(3600);

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/dev/token", post(token))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    sub: String,
    #[serde(default)]
    entitlements: Vec<String>,
}

async fn token(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<Body>,
) -> Result<Response, ApiError> {
    let Some(issuer) = state.0.options.dev_issuer.clone() else {
        return Err(ApiError::NotFound("no such route".into()));
    };
    if body.sub.is_empty() || body.sub.len() > 256 || body.entitlements.len() > 64 {
        return Err(ApiError::BadRequest(
            "sub must be 1-256 characters, at most 64 entitlements".into(),
        ));
    }
    let token = issuer.mint(&body.sub, &body.entitlements, DEV_TOKEN_TTL);
    let mut response =
        Json(serde_json::json!({ "access_token": token.expose_secret() })).into_response();
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}
