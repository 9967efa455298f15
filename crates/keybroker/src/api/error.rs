//! The one error type of the API and its JSON shape `{"error":"<code>","message":"…"}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::error::BrokerError;

/// An API failure. Codes are stable; messages are safe to show; causes of 5xx are logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// 400 `bad_request`.
    BadRequest(String),
    /// 401 `unauthenticated`: no or invalid credential (never says which check failed).
    Unauthenticated,
    /// 403 `forbidden`: valid credential, not allowed (never says why).
    Forbidden,
    /// 404 `not_found`.
    NotFound(String),
    /// 409 `conflict`.
    Conflict(String),
    /// 413 `payload_too_large`.
    PayloadTooLarge,
    /// 429 `rate_limited`.
    RateLimited,
    /// 503 `unavailable`: store or issuer down.
    Unavailable,
    /// 500 `internal`.
    Internal,
}

impl ApiError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthenticated => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unauthenticated => "unauthenticated",
            ApiError::Forbidden => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::RateLimited => "rate_limited",
            ApiError::Unavailable => "unavailable",
            ApiError::Internal => "internal",
        }
    }

    /// The message shown to the caller.
    pub fn message(&self) -> String {
        match self {
            ApiError::BadRequest(m) | ApiError::NotFound(m) | ApiError::Conflict(m) => m.clone(),
            ApiError::Unauthenticated => "no or invalid credential".into(),
            ApiError::Forbidden => "not allowed".into(),
            ApiError::PayloadTooLarge => {
                format!("request body larger than {} bytes", super::MAX_BODY_LEN)
            }
            ApiError::RateLimited => "too many requests, slow down".into(),
            ApiError::Unavailable => {
                "key store or identity provider unavailable, try again later".into()
            }
            ApiError::Internal => "internal error".into(),
        }
    }
}

impl From<BrokerError> for ApiError {
    fn from(e: BrokerError) -> Self {
        match e {
            BrokerError::BadRequest(m) => ApiError::BadRequest(m),
            BrokerError::Unauthenticated => ApiError::Unauthenticated,
            BrokerError::Forbidden => ApiError::Forbidden,
            BrokerError::NotFound(m) => ApiError::NotFound(m),
            BrokerError::Conflict(m) => ApiError::Conflict(m),
            BrokerError::Unavailable(cause) => {
                tracing::warn!(%cause, "unavailable");
                ApiError::Unavailable
            }
            BrokerError::Internal(cause) => {
                tracing::error!(%cause, "internal error");
                ApiError::Internal
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.code(), "message": self.message() });
        let mut response = (self.status(), Json(body)).into_response();
        let headers = response.headers_mut();
        match self {
            ApiError::Unauthenticated => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::RateLimited => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_maps_to_its_status_code_and_shape() {
        let cases = [
            (ApiError::BadRequest("m".into()), 400, "bad_request"),
            (ApiError::Unauthenticated, 401, "unauthenticated"),
            (ApiError::Forbidden, 403, "forbidden"),
            (ApiError::NotFound("m".into()), 404, "not_found"),
            (ApiError::Conflict("m".into()), 409, "conflict"),
            (ApiError::PayloadTooLarge, 413, "payload_too_large"),
            (ApiError::RateLimited, 429, "rate_limited"),
            (ApiError::Unavailable, 503, "unavailable"),
            (ApiError::Internal, 500, "internal"),
        ];
        for (e, status, code) in cases {
            assert_eq!(e.status().as_u16(), status);
            assert_eq!(e.code(), code);
            assert!(!e.message().is_empty());
        }
    }

    #[test]
    fn broker_errors_map_without_leaking_causes() {
        assert_eq!(
            ApiError::from(BrokerError::Unavailable(
                "vault at 10.0.0.1 said 500".into()
            )),
            ApiError::Unavailable
        );
        assert_eq!(
            ApiError::from(BrokerError::Internal("bad key".into())),
            ApiError::Internal
        );
        assert_eq!(ApiError::from(BrokerError::Forbidden), ApiError::Forbidden);
        assert_eq!(
            ApiError::from(BrokerError::Unauthenticated),
            ApiError::Unauthenticated
        );
        assert_eq!(
            ApiError::from(BrokerError::NotFound("g".into())),
            ApiError::NotFound("g".into())
        );
        assert_eq!(
            ApiError::from(BrokerError::Conflict("c".into())),
            ApiError::Conflict("c".into())
        );
        assert_eq!(
            ApiError::from(BrokerError::BadRequest("b".into())),
            ApiError::BadRequest("b".into())
        );
        assert!(!ApiError::Unavailable.message().contains("10.0.0.1"));
        let store: BrokerError = crate::store::StoreError::Unavailable("down".into()).into();
        assert_eq!(ApiError::from(store), ApiError::Unavailable);
        let corrupt: BrokerError = crate::store::StoreError::Corrupt("x".into()).into();
        assert_eq!(ApiError::from(corrupt), ApiError::Internal);
        let auth: BrokerError = crate::auth::AuthError::Invalid("exp".into()).into();
        assert_eq!(ApiError::from(auth), ApiError::Unauthenticated);
        let auth: BrokerError = crate::auth::AuthError::Unavailable("jwks".into()).into();
        assert_eq!(ApiError::from(auth), ApiError::Unavailable);
    }
}
