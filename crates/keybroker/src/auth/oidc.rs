//! OIDC access tokens from EGI Check-in (or any issuer that publishes discovery and a JWKS).
//!
//! Check-in's access tokens are RS256 JWTs with no `aud` and no group claims, so the
//! verifier checks the JWT locally ([`jwt`]), checks whom it was issued for ([`audience`]:
//! an `aud` present must name this broker, the client must be allowed), and then asks the
//! issuer for the caller's entitlements: UserInfo with the token itself, or RFC 7662
//! introspection with the broker's confidential client. Results are cached per token (keyed
//! by the token's SHA-256, never the token) until the earlier of the token's `exp` and
//! `now + cache_ttl_secs`. So a membership removed at Check-in stops working within
//! `cache_ttl_secs` when it comes from UserInfo or introspection, but only at the token's
//! `exp` (plus the leeway) when the token itself carries the entitlements.
//!
//! Readiness ([`TokenVerifier::ready`]) comes from cached state: the last successful JWKS
//! fetch, or the outcome of a probe made at most once per [`READINESS_INTERVAL`], so
//! unauthenticated `/readyz` calls cannot make the broker hammer the issuer.

pub(crate) mod audience;
pub(crate) mod jwt;

pub use audience::{ClientPolicy, ANY_CLIENT, DEFAULT_ALLOWED_CLIENTS};

use std::collections::HashMap;
use std::fmt;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use jsonwebtoken::DecodingKey;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::{AuthError, Identity, Method, Token, TokenVerifier};
use audience::AudiencePolicy;
use jwt::{JwtHeader, JwtPolicy};

/// An unknown `kid` makes the verifier re-fetch the JWKS at most this often.
pub const JWKS_REFRESH_MIN_INTERVAL: Duration = Duration::from_secs(60);
/// While the JWKS is missing or stale and the last fetch for it failed (or is under way), a
/// token does not make the verifier fetch again sooner than this: otherwise every request
/// bearing any well-formed JWT header, signed or not, would make the broker fetch discovery
/// and the JWKS from a struggling issuer.
pub const JWKS_RETRY_MIN_INTERVAL: Duration = Duration::from_secs(10);
/// A JWKS older than this is re-fetched on next use even if every `kid` is known, so keys
/// the issuer withdrew stop being accepted.
const JWKS_MAX_AGE: Duration = Duration::from_secs(3600);
/// Bound on any document read from the issuer.
const MAX_BODY: usize = 1024 * 1024;
/// `ready()` is true without any request while the last successful JWKS fetch is younger than
/// this; otherwise it probes the issuer (discovery and JWKS) at most once per interval and
/// answers with the last probe's outcome in between.
pub const READINESS_INTERVAL: Duration = Duration::from_secs(30);

/// Where entitlements come from when the token carries none.
#[derive(Clone)]
pub enum MembershipSource {
    /// From the token if it carries `eduperson_entitlement`/`entitlements`, else from
    /// UserInfo called with the token (Check-in's default; works for public clients).
    TokenOrUserinfo,
    /// RFC 7662 introspection with a confidential client's credentials; `active: false`
    /// makes the token invalid. Entitlements in the token are still preferred.
    Introspection {
        /// Client id registered at the issuer.
        client_id: String,
        /// Its secret.
        client_secret: Zeroizing<String>,
    },
}

impl fmt::Debug for MembershipSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TokenOrUserinfo => f.write_str("TokenOrUserinfo"),
            Self::Introspection { client_id, .. } => f
                .debug_struct("Introspection")
                .field("client_id", client_id)
                .field("client_secret", &"[redacted]")
                .finish(),
        }
    }
}

/// How to verify tokens of one issuer.
#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// Issuer URL, exactly as in the tokens' `iss` (e.g. `https://aai.egi.eu/auth/realms/egi`).
    /// Must be `https`, except on a loopback host (tests).
    pub issuer: String,
    /// Required `aud` value: tokens without `aud`, or whose `aud` does not name this broker,
    /// are refused. None (Check-in's default tokens carry no `aud`): a token without `aud` is
    /// accepted, but one whose `aud` is present must still name this broker.
    pub audience: Option<String>,
    /// Further values of `aud` that name this broker besides `audience`: its client id, or
    /// its public URL when it has neither (URLs compared normalised, other values exactly).
    /// Empty: only `audience` names it, and without that every token with an `aud` is refused.
    pub audience_names: Vec<String>,
    /// The clients (`azp`, else `client_id`) whose tokens are accepted; default
    /// [`DEFAULT_ALLOWED_CLIENTS`].
    pub allowed_clients: ClientPolicy,
    /// Accepted JWT algorithms. HMAC and `none` are dropped whatever is configured.
    pub algorithms: Vec<String>,
    /// Clock skew allowed for `exp`/`nbf`, seconds.
    pub leeway_secs: u64,
    /// Where entitlements come from.
    pub membership: MembershipSource,
    /// Longest time a verified token's identity is reused, seconds.
    pub cache_ttl_secs: u64,
    /// Bound on cached identities (least recently used evicted first).
    pub cache_max_entries: usize,
    /// Timeout for each request to the issuer, seconds.
    pub http_timeout_secs: u64,
    /// Extra PEM CA certificates for the issuer's TLS (added to the system roots).
    pub ca_file: Option<PathBuf>,
}

impl OidcConfig {
    /// The defaults for `issuer`: no audience names (any `aud` refused, none accepted),
    /// [`DEFAULT_ALLOWED_CLIENTS`], RSA/PSS/EC algorithms, 60 s leeway, UserInfo membership,
    /// 300 s cache TTL, 10,000 cache entries, 10 s HTTP timeout, system CA roots.
    pub fn new(issuer: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audience: None,
            audience_names: Vec::new(),
            allowed_clients: ClientPolicy::default(),
            algorithms: jwt::DEFAULT_ALGORITHMS.map(String::from).to_vec(),
            leeway_secs: 60,
            membership: MembershipSource::TokenOrUserinfo,
            cache_ttl_secs: 300,
            cache_max_entries: 10_000,
            http_timeout_secs: 10,
            ca_file: None,
        }
    }
}

/// The endpoints discovery gives us.
#[derive(Debug, Clone, Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
    userinfo_endpoint: Option<String>,
    introspection_endpoint: Option<String>,
}

#[derive(Default)]
struct JwksState {
    keys: HashMap<String, DecodingKey>,
    /// Keys published without a `kid` (used only for tokens without one).
    keyless: Vec<DecodingKey>,
    fetched_at: Option<Instant>,
    /// Last re-fetch caused by an unknown `kid` (the rate-limited kind).
    last_unknown_kid_refresh: Option<Instant>,
    /// Last fetch caused by a missing or stale JWKS (see [`JWKS_RETRY_MIN_INTERVAL`]).
    last_stale_refresh: Option<Instant>,
}

/// Outcome of the last readiness probe.
#[derive(Default)]
struct Readiness {
    /// When the last probe started (set before fetching, so concurrent calls do not all probe).
    last_probe: Option<Instant>,
    /// Whether it succeeded.
    last_ok: bool,
}

struct CachedIdentity {
    identity: Identity,
    valid_until: i64,
}

/// Verifies OIDC access tokens (see the module docs).
pub struct OidcVerifier {
    config: OidcConfig,
    policy: JwtPolicy,
    /// Err if the HTTP client could not be built (e.g. unreadable `ca_file`): every
    /// verification then fails as Unavailable, and `ready()` is false.
    client: Result<reqwest::Client, String>,
    discovery: Mutex<Option<Arc<Discovery>>>,
    jwks: Mutex<JwksState>,
    readiness: Mutex<Readiness>,
    cache: Mutex<lru::LruCache<[u8; 32], CachedIdentity>>,
}

impl fmt::Debug for OidcVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OidcVerifier")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain data behind, never a broken
    // invariant that matters for security (worst case: a stale cache entry or JWKS).
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn unavailable(reason: impl Into<String>) -> AuthError {
    AuthError::Unavailable(reason.into())
}

fn invalid(reason: impl Into<String>) -> AuthError {
    AuthError::Invalid(reason.into())
}

/// True for `https://…`, and for `http://` on 127.0.0.1, ::1 or localhost (tests, dev).
fn acceptable_url(url: &str) -> bool {
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return false;
    };
    match parsed.scheme() {
        "https" => true,
        "http" => match parsed.host() {
            Some(url::Host::Domain(d)) => d == "localhost",
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        },
        _ => false,
    }
}

impl OidcVerifier {
    /// A verifier for `config`. Nothing is fetched yet: discovery and the JWKS are loaded on
    /// first use (so the broker starts while the issuer is down and reports 503 until it is
    /// back). A configuration error (unreadable `ca_file`, non-https issuer) makes every
    /// verification fail as Unavailable and is logged; use [`OidcVerifier::try_new`] to see it
    /// at start-up.
    pub fn new(config: OidcConfig) -> Self {
        let client = Self::build_client(&config);
        if let Err(e) = &client {
            tracing::error!(issuer = %config.issuer, error = %e, "OIDC verifier misconfigured");
        }
        let names: Vec<String> = config
            .audience
            .iter()
            .chain(&config.audience_names)
            .cloned()
            .collect();
        let policy = JwtPolicy {
            issuer: config.issuer.clone(),
            audience: AudiencePolicy::new(
                &names,
                config.audience.is_some(),
                config.allowed_clients.clone(),
            ),
            algorithms: jwt::parse_algorithms(&config.algorithms),
            leeway_secs: config.leeway_secs,
        };
        let entries = NonZeroUsize::new(config.cache_max_entries).unwrap_or(NonZeroUsize::MIN);
        Self {
            policy,
            client,
            discovery: Mutex::new(None),
            jwks: Mutex::new(JwksState::default()),
            readiness: Mutex::new(Readiness::default()),
            cache: Mutex::new(lru::LruCache::new(entries)),
            config,
        }
    }

    /// Like [`OidcVerifier::new`], but a configuration error is returned.
    pub fn try_new(config: OidcConfig) -> Result<Self, AuthError> {
        let verifier = Self::new(config);
        if let Err(e) = &verifier.client {
            return Err(unavailable(e.clone()));
        }
        if verifier.policy.algorithms.is_empty() {
            return Err(unavailable("no usable JWT algorithm configured"));
        }
        Ok(verifier)
    }

    fn build_client(config: &OidcConfig) -> Result<reqwest::Client, String> {
        if !acceptable_url(&config.issuer) {
            return Err(format!(
                "issuer {} must be an https URL (http only on a loopback host)",
                config.issuer
            ));
        }
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_secs(config.http_timeout_secs.max(1)))
            .redirect(reqwest::redirect::Policy::none());
        if let Some(path) = &config.ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| format!("cannot read CA file {}: {e}", path.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("CA file {} is not PEM: {e}", path.display()))?;
            builder = builder.tls_certs_merge(certs);
        }
        builder
            .build()
            .map_err(|e| format!("cannot build HTTP client: {e}"))
    }

    fn client(&self) -> Result<&reqwest::Client, AuthError> {
        self.client.as_ref().map_err(|e| unavailable(e.clone()))
    }

    /// Reads a bounded body; errors are Unavailable (the issuer misbehaves, not the caller).
    async fn read_body(mut resp: reqwest::Response, what: &str) -> Result<Vec<u8>, AuthError> {
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| unavailable(format!("{what}: reading the answer failed: {e}")))?
        {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(unavailable(format!(
                    "{what}: answer larger than {MAX_BODY} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    async fn get_json(&self, url: &str, what: &str) -> Result<Value, AuthError> {
        let resp = self
            .client()?
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| unavailable(format!("{what}: {e}")))?;
        if !resp.status().is_success() {
            return Err(unavailable(format!("{what}: HTTP {}", resp.status())));
        }
        let body = Self::read_body(resp, what).await?;
        serde_json::from_slice(&body)
            .map_err(|_| unavailable(format!("{what}: answer is not JSON")))
    }

    async fn fetch_discovery(&self) -> Result<Discovery, AuthError> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.config.issuer.trim_end_matches('/')
        );
        let value = self.get_json(&url, "discovery").await?;
        let discovery: Discovery = serde_json::from_value(value)
            .map_err(|e| unavailable(format!("discovery document unusable: {e}")))?;
        if discovery.issuer != self.config.issuer {
            return Err(unavailable(format!(
                "discovery names issuer {} instead of {}",
                discovery.issuer, self.config.issuer
            )));
        }
        for url in [
            Some(&discovery.jwks_uri),
            discovery.userinfo_endpoint.as_ref(),
        ]
        .into_iter()
        .chain([discovery.introspection_endpoint.as_ref()])
        .flatten()
        {
            if !acceptable_url(url) {
                return Err(unavailable(format!(
                    "discovery endpoint {url} is not https"
                )));
            }
        }
        Ok(discovery)
    }

    async fn discovery(&self) -> Result<Arc<Discovery>, AuthError> {
        if let Some(d) = lock(&self.discovery).clone() {
            return Ok(d);
        }
        let d = Arc::new(self.fetch_discovery().await?);
        *lock(&self.discovery) = Some(d.clone());
        Ok(d)
    }

    /// Fetches the JWKS and replaces the cached keys.
    async fn refresh_jwks(&self) -> Result<(), AuthError> {
        let discovery = self.discovery().await?;
        let value = self.get_json(&discovery.jwks_uri, "JWKS").await?;
        let Some(keys) = value.get("keys").and_then(Value::as_array) else {
            return Err(unavailable("JWKS has no keys array"));
        };
        let mut by_kid = HashMap::new();
        let mut keyless = Vec::new();
        for key in keys {
            // Keys of types jsonwebtoken does not know, or encryption keys, are skipped one
            // by one rather than failing the whole set.
            let Ok(jwk) = serde_json::from_value::<Jwk>(key.clone()) else {
                continue;
            };
            if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
                continue;
            }
            let Ok(decoding) = DecodingKey::from_jwk(&jwk) else {
                continue;
            };
            match jwk.common.key_id {
                Some(kid) => {
                    by_kid.insert(kid, decoding);
                }
                None => keyless.push(decoding),
            }
        }
        tracing::debug!(issuer = %self.config.issuer, keys = by_kid.len() + keyless.len(), "JWKS loaded");
        let mut state = lock(&self.jwks);
        state.keys = by_kid;
        state.keyless = keyless;
        state.fetched_at = Some(Instant::now());
        Ok(())
    }

    /// Finds the key for `header`, fetching the JWKS on first use, when stale, or (at most
    /// once per [`JWKS_REFRESH_MIN_INTERVAL`]) when the `kid` is unknown.
    async fn key_for(&self, header: &JwtHeader) -> Result<DecodingKey, AuthError> {
        let stale = {
            let mut state = lock(&self.jwks);
            let stale = state.fetched_at.is_none_or(|t| t.elapsed() > JWKS_MAX_AGE);
            if stale {
                if state
                    .last_stale_refresh
                    .is_some_and(|t| t.elapsed() < JWKS_RETRY_MIN_INTERVAL)
                {
                    // The last attempt failed (a success would have made the JWKS fresh) or
                    // is still under way.
                    return Err(unavailable(format!(
                        "issuer JWKS unavailable (fetched at most every {}s while failing)",
                        JWKS_RETRY_MIN_INTERVAL.as_secs()
                    )));
                }
                // Marked before fetching, so concurrent requests do not all fetch.
                state.last_stale_refresh = Some(Instant::now());
            }
            stale
        };
        if stale {
            self.refresh_jwks().await?;
        }
        if let Some(key) = self.lookup(header)? {
            return Ok(key);
        }
        let allowed = {
            let mut state = lock(&self.jwks);
            let allowed = state
                .last_unknown_kid_refresh
                .is_none_or(|t| t.elapsed() >= JWKS_REFRESH_MIN_INTERVAL);
            if allowed {
                // Marked before fetching, so concurrent requests do not all refresh.
                state.last_unknown_kid_refresh = Some(Instant::now());
            }
            allowed
        };
        // The kid is attacker-controlled text headed for the audit log: printable ASCII only.
        let kid = jwt::printable(header.kid.as_deref().unwrap_or("(none)"), 64);
        if !allowed {
            return Err(invalid(format!(
                "unknown signing key kid={kid} (JWKS refresh rate-limited)"
            )));
        }
        self.refresh_jwks().await?;
        self.lookup(header)?.ok_or_else(|| {
            invalid(format!(
                "unknown signing key kid={kid} (not in the issuer's JWKS)"
            ))
        })
    }

    fn lookup(&self, header: &JwtHeader) -> Result<Option<DecodingKey>, AuthError> {
        let state = lock(&self.jwks);
        match &header.kid {
            Some(kid) => Ok(state.keys.get(kid).cloned()),
            None => {
                let family = header.alg.family();
                let mut fitting = state
                    .keyless
                    .iter()
                    .chain(state.keys.values())
                    .filter(|k| k.family() == family);
                match (fitting.next(), fitting.next()) {
                    (Some(k), None) => Ok(Some(k.clone())),
                    (None, _) => Ok(None),
                    (Some(_), Some(_)) => Err(invalid(
                        "token has no kid and the issuer publishes several keys",
                    )),
                }
            }
        }
    }

    async fn userinfo(&self, token: &Token, sub: Option<&str>) -> Result<Vec<String>, AuthError> {
        let discovery = self.discovery().await?;
        let Some(url) = &discovery.userinfo_endpoint else {
            return Err(unavailable("issuer publishes no userinfo_endpoint"));
        };
        let resp = self
            .client()?
            .get(url)
            .bearer_auth(token.expose_secret())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| unavailable(format!("userinfo: {e}")))?;
        let status = resp.status();
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(invalid(format!(
                "userinfo refused the token (HTTP {})",
                status.as_u16()
            )));
        }
        if !status.is_success() {
            return Err(unavailable(format!("userinfo: HTTP {status}")));
        }
        let body = Self::read_body(resp, "userinfo").await?;
        let claims: Value = serde_json::from_slice(&body).map_err(|_| {
            unavailable("userinfo answer is not JSON (signed UserInfo unsupported)")
        })?;
        // OIDC Core §5.3.2: the UserInfo sub must be the token's.
        if let (Some(want), Some(got)) = (sub, claims.get("sub").and_then(Value::as_str)) {
            if want != got {
                return Err(invalid("userinfo sub differs from the token's sub"));
            }
        }
        Ok(jwt::entitlements_from(&claims)?.unwrap_or_default())
    }

    async fn introspect(
        &self,
        token: &Token,
        client_id: &str,
        client_secret: &Zeroizing<String>,
        sub: Option<&str>,
    ) -> Result<Vec<String>, AuthError> {
        let discovery = self.discovery().await?;
        let Some(url) = &discovery.introspection_endpoint else {
            return Err(unavailable("issuer publishes no introspection_endpoint"));
        };
        let form = [
            ("token", token.expose_secret()),
            ("token_type_hint", "access_token"),
        ];
        let resp = self
            .client()?
            .post(url)
            .basic_auth(client_id, Some(client_secret.as_str()))
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form)
            .send()
            .await
            .map_err(|e| unavailable(format!("introspection: {e}")))?;
        let status = resp.status();
        if !status.is_success() {
            // 401 here means the broker's client credentials were refused: a broker
            // problem, not the caller's.
            return Err(unavailable(format!("introspection: HTTP {status}")));
        }
        let body = Self::read_body(resp, "introspection").await?;
        let claims: Value = serde_json::from_slice(&body)
            .map_err(|_| unavailable("introspection answer is not JSON"))?;
        match claims.get("active") {
            Some(Value::Bool(true)) => {}
            Some(Value::Bool(false)) => return Err(invalid("introspection: token not active")),
            _ => return Err(unavailable("introspection answer has no boolean active")),
        }
        if let (Some(want), Some(got)) = (sub, claims.get("sub").and_then(Value::as_str)) {
            if want != got {
                return Err(invalid("introspection sub differs from the token's sub"));
            }
        }
        // What the issuer says about the token counts as much as the token's own claims (and
        // is all there is to go by for a token whose claims are not readable).
        self.policy
            .audience
            .check(&claims, "introspection answer")?;
        Ok(jwt::entitlements_from(&claims)?.unwrap_or_default())
    }

    async fn verify_uncached(&self, token: &Token) -> Result<Identity, AuthError> {
        let header = jwt::parse_header(token.expose_secret(), &self.policy)?;
        let key = self.key_for(&header).await?;
        let policy = self.policy.clone();
        let owned = token.clone();
        // RSA verification is CPU work: off the async workers (style.md).
        let claims = tokio::task::spawn_blocking(move || {
            jwt::validate(owned.expose_secret(), &header, &key, &policy)
        })
        .await
        .map_err(|e| unavailable(format!("verification task failed: {e}")))??;
        let entitlements = match (&claims.entitlements, &self.config.membership) {
            (Some(from_token), _) => from_token.clone(),
            (None, MembershipSource::TokenOrUserinfo) => {
                self.userinfo(token, claims.sub.as_deref()).await?
            }
            (
                None,
                MembershipSource::Introspection {
                    client_id,
                    client_secret,
                },
            ) => {
                self.introspect(token, client_id, client_secret, claims.sub.as_deref())
                    .await?
            }
        };
        Ok(Identity {
            method: Method::Token,
            subject: Some(claims.subject),
            dn: None,
            entitlements,
            expires_at: Some(claims.exp),
        })
    }
}

#[async_trait]
impl TokenVerifier for OidcVerifier {
    async fn verify(&self, token: &Token) -> Result<Identity, AuthError> {
        let key: [u8; 32] = Sha256::digest(token.expose_secret().as_bytes()).into();
        let now = now_unix();
        {
            let mut cache = lock(&self.cache);
            match cache.get(&key) {
                Some(hit) if now < hit.valid_until => return Ok(hit.identity.clone()),
                Some(_) => {
                    cache.pop(&key);
                }
                None => {}
            }
        }
        let identity = self.verify_uncached(token).await?;
        let ttl = i64::try_from(self.config.cache_ttl_secs).unwrap_or(i64::MAX);
        let valid_until = identity
            .expires_at
            .unwrap_or(now)
            .min(now.saturating_add(ttl));
        if valid_until > now {
            lock(&self.cache).put(
                key,
                CachedIdentity {
                    identity: identity.clone(),
                    valid_until,
                },
            );
        }
        Ok(identity)
    }

    /// From cached state (see the module docs): no request while the JWKS was fetched
    /// within [`READINESS_INTERVAL`]; else at most one probe per interval.
    async fn ready(&self) -> bool {
        let fresh = lock(&self.jwks)
            .fetched_at
            .is_some_and(|t| t.elapsed() < READINESS_INTERVAL);
        if fresh {
            return true;
        }
        {
            let mut readiness = lock(&self.readiness);
            if readiness
                .last_probe
                .is_some_and(|t| t.elapsed() < READINESS_INTERVAL)
            {
                return readiness.last_ok;
            }
            // Marked before fetching: concurrent calls answer with the previous outcome.
            readiness.last_probe = Some(Instant::now());
        }
        // refresh_jwks fetches discovery first if it is not cached yet.
        let outcome = self.refresh_jwks().await;
        if let Err(e) = &outcome {
            tracing::warn!(issuer = %self.config.issuer, error = %e, "issuer not ready");
        }
        lock(&self.readiness).last_ok = outcome.is_ok();
        outcome.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_https_except_loopback() {
        assert!(acceptable_url("https://aai.egi.eu/auth/realms/egi"));
        assert!(acceptable_url("http://127.0.0.1:8080/auth/realms/egi"));
        assert!(acceptable_url("http://localhost/x"));
        assert!(acceptable_url("http://[::1]:1/x"));
        assert!(!acceptable_url("http://aai.egi.eu/auth/realms/egi"));
        assert!(!acceptable_url("ftp://127.0.0.1/"));
        assert!(!acceptable_url("not a url"));
    }

    #[test]
    fn misconfiguration_fails_closed() {
        let err =
            OidcVerifier::try_new(OidcConfig::new("http://issuer.example")).expect_err("must fail");
        assert!(matches!(err, AuthError::Unavailable(_)));
        let mut c = OidcConfig::new("https://issuer.example");
        c.ca_file = Some("/nonexistent/ca.pem".into());
        assert!(OidcVerifier::try_new(c).is_err());
        let mut c = OidcConfig::new("https://issuer.example");
        c.algorithms = vec!["HS256".into()];
        assert!(OidcVerifier::try_new(c).is_err());
    }

    #[test]
    fn secret_not_in_debug() {
        let m = MembershipSource::Introspection {
            client_id: "broker".into(),
            client_secret: Zeroizing::new("s3cret".into()),
        };
        let mut c = OidcConfig::new("https://issuer.example");
        c.membership = m;
        let text = format!("{c:?}");
        assert!(text.contains("broker") && !text.contains("s3cret"));
    }

    #[tokio::test]
    async fn bad_token_refused_before_network() {
        // Port 9 (discard) on loopback: nothing is fetched for a malformed token anyway.
        let v = OidcVerifier::new(OidcConfig::new("http://127.0.0.1:9/auth/realms/egi"));
        let err = v.verify(&Token::new("abc")).await.expect_err("must fail");
        assert!(matches!(err, AuthError::Invalid(_)), "{err:?}");
    }

    /// Regression: with the issuer answering errors, every request bearing a well-formed JWT
    /// header (no valid signature needed) made the broker fetch discovery again.
    #[tokio::test]
    async fn failing_issuer_is_asked_at_most_once_per_retry_interval() {
        use std::io::{Read as _, Write as _};
        use std::sync::atomic::{AtomicUsize, Ordering};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let hits = Arc::new(AtomicUsize::new(0));
        let counted = hits.clone();
        std::thread::spawn(move || {
            for mut conn in listener.incoming().flatten() {
                counted.fetch_add(1, Ordering::SeqCst);
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf);
                let _ = conn.write_all(
                    b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
            }
        });
        let v = OidcVerifier::new(OidcConfig::new(format!(
            "http://127.0.0.1:{port}/auth/realms/egi"
        )));
        let header = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            r#"{"alg":"RS256","kid":"k"}"#,
        );
        for i in 0..20 {
            let token = Token::new(format!("{header}.e30.c2ln{i}"));
            let err = v.verify(&token).await.expect_err("issuer fails");
            assert!(matches!(err, AuthError::Unavailable(_)), "{err:?}");
        }
        assert_eq!(hits.load(Ordering::SeqCst), 1, "one discovery request");
    }

    #[tokio::test]
    async fn issuer_down_is_unavailable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        let v = OidcVerifier::new(OidcConfig::new(format!(
            "http://127.0.0.1:{port}/auth/realms/egi"
        )));
        let header = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            r#"{"alg":"RS256","kid":"k"}"#,
        );
        let token = Zeroizing::new(format!("{header}.e30.c2ln"));
        let err = v.verify(&Token::from(token)).await.expect_err("must fail");
        assert!(matches!(err, AuthError::Unavailable(_)), "{err:?}");
        assert!(!v.ready().await);
    }
}
