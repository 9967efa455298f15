//! `POST /v1/unwrap`: release a layer's private options to a member.

use axum::extract::{Request, State};
use axum::http::header::{HeaderValue, CACHE_CONTROL};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::Deserialize;
use zeroize::Zeroizing;

use super::extract::{body_bytes, MaybeCaller};
use super::{ApiError, AppState};
use crate::error::BrokerError;
use crate::service::UnwrapRequest;

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/v1/unwrap", post(unwrap))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    payload: String,
    #[serde(default)]
    layer_digest: Option<String>,
    #[serde(default)]
    image: Option<String>,
}

async fn unwrap(
    State(state): State<AppState>,
    caller: MaybeCaller,
    req: Request,
) -> Result<Response, ApiError> {
    // Authentication first, then the body: an unauthenticated caller learns nothing about
    // what the broker thinks of its body. Failed authentication was audited (in aggregate)
    // by the extractor.
    let caller = match caller.result {
        Ok(c) => c,
        Err(e) => {
            state.metrics().unwrap_decision("deny");
            return Err(MaybeCaller::api_error(e));
        }
    };
    let bytes = body_bytes(req, &state).await?;
    let body: Body = serde_json::from_slice(&bytes).map_err(|_| {
        ApiError::BadRequest(
            r#"body must be {"payload":"<base64>","layer_digest"?,"image"?}"#.into(),
        )
    })?;
    let request = UnwrapRequest {
        payload: body.payload,
        layer_digest: body.layer_digest,
        image: body.image,
    };
    match state
        .broker()
        .unwrap(&caller.identity, caller.client, &request)
        .await
    {
        Ok(opts) => {
            state.metrics().unwrap_decision("allow");
            let encoded = Zeroizing::new(STANDARD.encode(opts.expose_secret()));
            let mut response =
                Json(serde_json::json!({ "optsdata": encoded.as_str() })).into_response();
            response
                .headers_mut()
                .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            Ok(response)
        }
        Err(e) => {
            let decision = match e {
                BrokerError::Unavailable(_) | BrokerError::Internal(_) => "error",
                _ => "deny",
            };
            state.metrics().unwrap_decision(decision);
            Err(e.into())
        }
    }
}
