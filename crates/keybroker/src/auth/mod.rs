//! Who is calling: identities from OIDC access tokens (EGI Check-in) and from X.509 client
//! certificates (IGTF end-entity certificates such as RCAuth's, and RFC 3820 proxies of them).
//! [`namespaces`] holds the IGTF namespace constraints (which DNs a CA may sign).

pub mod cadir;
pub mod dev;
/// IGTF namespace constraints (the `layercrypt-igtf` crate).
pub use layercrypt_igtf::namespaces;
pub mod oidc;
pub mod x509;

use async_trait::async_trait;
use zeroize::Zeroizing;

/// A bearer token (OIDC access token or the bootstrap admin token): zeroized on drop, and its
/// `Debug` prints no part of it, so a `?token` in a log line or an error leaks nothing. The
/// text is reached only through [`Token::expose_secret`] (grep for it to find every use).
#[derive(Clone)]
pub struct Token(Zeroizing<String>);

impl Token {
    /// Wraps a token.
    pub fn new(token: impl Into<String>) -> Token {
        Token(Zeroizing::new(token.into()))
    }

    /// The token text.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl From<Zeroizing<String>> for Token {
    fn from(token: Zeroizing<String>) -> Token {
        Token(token)
    }
}

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
    /// True if the issuer was reachable recently (for `/readyz`, which anyone may call):
    /// answered from cached state, never with a request to the issuer on every call.
    async fn ready(&self) -> bool;
}

#[cfg(test)]
mod tests {
    use super::Token;

    #[test]
    fn debug_shows_no_part_of_the_token() {
        let token = Token::new("eyJhbGciOiJSUzI1NiJ9.c2VjcmV0.sig");
        let shown = format!("{token:?} {:?}", Some(token.clone()));
        assert!(!shown.contains("eyJ") && !shown.contains("sig"), "{shown}");
        assert_eq!(token.expose_secret(), "eyJhbGciOiJSUzI1NiJ9.c2VjcmV0.sig");
    }
}
