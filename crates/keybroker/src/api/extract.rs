//! Extractors: the authenticated caller (bearer token, bootstrap admin token or TLS client
//! certificate), admin callers, and JSON bodies that fail with the API's error shape.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, MatchedPath, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

use super::{ApiError, AppState};
use crate::auth::{AuthError, Identity, Method, Token};
use crate::denials::client_key;

/// Largest bearer token accepted (Check-in's are about 1,400 characters).
const MAX_TOKEN_LEN: usize = 16 * 1024;

/// The TLS client certificate chain (DER, leaf first), put into the request extensions by the
/// TLS listener.
#[derive(Clone, Debug)]
pub struct PeerCertificates(pub Arc<Vec<Vec<u8>>>);

/// An authenticated, rate-limited caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Who.
    pub identity: Identity,
    /// From where (the TCP peer; proxies are not trusted).
    pub client: Option<IpAddr>,
}

/// The client address of a request.
pub fn client_ip(parts: &Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(a)| a.ip())
}

/// `METHOD /route/{pattern}` of a request, for audit records (never the raw path: it may
/// carry anything).
fn route(parts: &Parts) -> String {
    let pattern = parts
        .extensions
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str);
    format!("{} {pattern}", parts.method)
}

/// Middleware: the per-client-network bucket, taken before anything else (authentication
/// included) on every route. The address is the TCP peer's; forwarding headers are not read.
pub async fn limit_by_address(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let client = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(a)| a.ip());
    if !state.0.by_address.check(&client_key(client)) {
        state.broker().audit_limited(client).await;
        return ApiError::RateLimited.into_response();
    }
    next.run(req).await
}

/// Authenticates the request: a bearer token if there is an `Authorization` header, else the
/// TLS client certificate. Fails closed.
async fn authenticate(state: &AppState, parts: &Parts) -> Result<Identity, AuthError> {
    if let Some(value) = parts.headers.get(AUTHORIZATION) {
        let value = value
            .to_str()
            .map_err(|_| AuthError::Invalid("authorization header is not ASCII".into()))?;
        let (scheme, token) = value.split_once(' ').ok_or_else(|| {
            AuthError::Invalid("authorization header is not 'Bearer <token>'".into())
        })?;
        let token = token.trim();
        if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() || token.len() > MAX_TOKEN_LEN
        {
            return Err(AuthError::Invalid(
                "authorization header is not 'Bearer <token>'".into(),
            ));
        }
        let token = Zeroizing::new(token.to_owned());
        return state
            .broker()
            .authenticate_bearer(&Token::from(token))
            .await;
    }
    if let Some(PeerCertificates(chain)) = parts.extensions.get::<PeerCertificates>() {
        if !chain.is_empty() {
            return state.broker().authenticate_certificate(chain.clone()).await;
        }
    }
    Err(AuthError::Invalid("no credential".into()))
}

fn rate_key(identity: &Identity) -> String {
    match identity.method {
        Method::BootstrapAdmin => "admin:bootstrap".to_owned(), // not limited, see below
        Method::Token => format!("sub:{}", identity.subject.as_deref().unwrap_or("")),
        Method::Certificate => format!("dn:{}", identity.dn.as_deref().unwrap_or("")),
    }
}

fn auth_error(e: AuthError) -> ApiError {
    match e {
        AuthError::Invalid(_) => ApiError::Unauthenticated,
        AuthError::Unavailable(cause) => {
            tracing::warn!(%cause, "identity provider unavailable");
            ApiError::Unavailable
        }
    }
}

/// The outcome of authentication. Before a credential is checked, the client network's
/// failure bucket must hold a token (else 429): failed authentications keep it, successful
/// ones give it back. Failures are audited ([`crate::service::Broker::audit_unauthenticated`],
/// in aggregate); authenticated callers are then limited per subject or DN.
#[derive(Debug)]
pub struct MaybeCaller {
    /// The caller or why not.
    pub result: Result<Caller, AuthError>,
}

impl MaybeCaller {
    /// Turns a failure into the API error (401 or 503).
    pub fn api_error(e: AuthError) -> ApiError {
        auth_error(e)
    }
}

impl FromRequestParts<AppState> for MaybeCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let client = client_ip(parts);
        let key = client_key(client);
        if !state.0.auth_failures.check(&key) {
            state.broker().audit_limited(client).await;
            return Err(ApiError::RateLimited);
        }
        let result = match authenticate(state, parts).await {
            Ok(identity) => {
                state.0.auth_failures.refund(&key);
                // The bootstrap admin is not limited: it holds the broker's most powerful
                // secret anyway, and set-up scripts (many groups and grants in a row) would
                // otherwise meet 429 after the burst.
                if identity.method != Method::BootstrapAdmin
                    && !state.0.limiter.check(&rate_key(&identity))
                {
                    return Err(ApiError::RateLimited);
                }
                Ok(Caller { identity, client })
            }
            Err(e) => {
                if matches!(e, AuthError::Unavailable(_)) {
                    // The issuer's failure, not the caller's.
                    state.0.auth_failures.refund(&key);
                }
                state
                    .broker()
                    .audit_unauthenticated(client, &route(parts), &e.to_string())
                    .await;
                Err(e)
            }
        };
        Ok(MaybeCaller { result })
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        MaybeCaller::from_request_parts(parts, state)
            .await?
            .result
            .map_err(auth_error)
    }
}

/// An authenticated caller who is an admin (401 unauthenticated, 403 not an admin).
#[derive(Debug, Clone)]
pub struct Admin(pub Caller);

impl Admin {
    /// The actor of the admin action, for the audit record.
    pub fn actor(&self) -> crate::service::Actor<'_> {
        crate::service::Actor {
            identity: &self.0.identity,
            client: self.0.client,
        }
    }

    /// Who, for logs: subject, DN or "bootstrap admin".
    pub fn who(&self) -> String {
        let id = &self.0.identity;
        match id.method {
            Method::BootstrapAdmin => "bootstrap admin".to_owned(),
            Method::Token => id.subject.clone().unwrap_or_default(),
            Method::Certificate => id.dn.clone().unwrap_or_default(),
        }
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let caller = Caller::from_request_parts(parts, state).await?;
        if state.broker().is_admin(&caller.identity) {
            Ok(Admin(caller))
        } else {
            tracing::info!(subject = ?caller.identity.subject, dn = ?caller.identity.dn, "admin route refused");
            state
                .broker()
                .audit_admin_refused(&caller.identity, caller.client, &route(parts))
                .await;
            Err(ApiError::Forbidden)
        }
    }
}

/// A JSON body, bounded by the body limit (413), rejected as 400 `bad_request` when it is not
/// the expected JSON.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

/// Reads the body bytes within the body limit.
pub async fn body_bytes(req: Request, state: &AppState) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge
        } else {
            ApiError::BadRequest("could not read the request body".into())
        }
    })
}

/// Parses JSON; the message names the problem (serde's text, which quotes at most a field
/// name or a short value of the admin's own request) but is cut short.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        let mut message = format!("body is not the expected JSON: {e}");
        if message.len() > 200 {
            let mut cut = 200;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        ApiError::BadRequest(message)
    })
}

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let bytes = body_bytes(req, state).await?;
        parse_json(&bytes).map(JsonBody)
    }
}
