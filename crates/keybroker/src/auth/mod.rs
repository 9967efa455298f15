//! Who is calling: identities from OIDC access tokens (EGI Check-in) and from X.509 client
//! certificates (IGTF end-entity certificates such as RCAuth's, and RFC 3820 proxies of them).

pub mod dev;
pub mod oidc;
pub mod x509;

use async_trait::async_trait;
use zeroize::Zeroizing;

/// An access token, zeroized on drop, never logged.
pub type Token = Zeroizing<String>;

/// How the caller authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// OIDC bearer token.
    Token,
    /// TLS client certificate.
    Certificate,
    /// The bootstrap admin token.
    BootstrapAdmin,
}

/// A verified caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// How.
    pub method: Method,
    /// `voperson_id`, else `sub` (tokens).
    pub subject: Option<String>,
    /// End-entity subject DN in the `/DC=…/CN=…` form (certificates).
    pub dn: Option<String>,
    /// `eduperson_entitlement` and `entitlements` values (tokens).
    pub entitlements: Vec<String>,
    /// When the credential stops being valid (token `exp`, certificate `notAfter`), Unix
    /// seconds; caches must not outlive it.
    pub expires_at: Option<i64>,
}

/// Why a credential was refused. The caller only ever sees a uniform 401; this detail goes
/// to the audit log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The credential is invalid (signature, issuer, expiry, audience, algorithm, chain…).
    #[error("invalid credential: {0}")]
    Invalid(String),
    /// The issuer (JWKS, UserInfo, introspection) cannot be reached: 503, not 401.
    #[error("identity provider unavailable: {0}")]
    Unavailable(String),
}

/// Verifies bearer tokens.
#[async_trait]
pub trait TokenVerifier: Send + Sync {
    /// Validates `token` and returns the caller's identity with entitlements.
    async fn verify(&self, token: &Token) -> Result<Identity, AuthError>;
    /// True if the issuer is reachable (for `/readyz`).
    async fn ready(&self) -> bool;
}
