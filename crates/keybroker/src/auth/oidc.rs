//! PLACEHOLDER (replaced at merge): the OIDC verifier is written on the `auth` branch.
//! Only the constructor signature the broker wiring uses is here; it refuses every token.

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;

use super::{AuthError, Identity, Token, TokenVerifier};

/// Where group membership (entitlements) comes from (placeholder).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Membership {
    /// Claims of the access token, else UserInfo.
    TokenOrUserInfo,
    /// Token introspection with a confidential client.
    Introspection {
        /// The client id.
        client_id: String,
        /// File holding the client secret.
        client_secret_file: PathBuf,
    },
}

/// OIDC verifier settings (placeholder: the `auth` branch defines the real fields; the broker
/// wiring in `server.rs` builds it in one place, `oidc_config`).
#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// Issuer URL.
    pub issuer: String,
    /// Required `aud`, if any.
    pub audience: Option<String>,
    /// Membership source.
    pub membership: Membership,
    /// How long JWKS and membership answers are cached.
    pub cache_ttl: Duration,
}

/// The OIDC verifier (placeholder).
#[derive(Debug)]
pub struct OidcVerifier {
    config: OidcConfig,
}

impl OidcVerifier {
    /// A verifier for `config` (placeholder).
    pub fn new(config: OidcConfig) -> OidcVerifier {
        OidcVerifier { config }
    }
}

#[async_trait]
impl TokenVerifier for OidcVerifier {
    async fn verify(&self, _token: &Token) -> Result<Identity, AuthError> {
        Err(AuthError::Unavailable(format!(
            "OIDC verifier for {} not built in this branch (placeholder)",
            self.config.issuer
        )))
    }
    async fn ready(&self) -> bool {
        false
    }
}
