//! PLACEHOLDER (replaced at merge): the development token issuer is written on the `auth`
//! branch. Only the signatures the broker wiring uses are here; it refuses every token.

use std::time::Duration;

use async_trait::async_trait;
use zeroize::Zeroizing;

use super::{AuthError, Identity, Token, TokenVerifier};

/// Development token issuer and verifier (placeholder).
#[derive(Debug)]
pub struct DevIssuer {
    issuer: String,
}

impl DevIssuer {
    /// An issuer that signs with a fresh key (placeholder).
    pub fn new(issuer_url: &str) -> DevIssuer {
        DevIssuer {
            issuer: issuer_url.to_owned(),
        }
    }

    /// Mints a token (placeholder: a token nobody accepts).
    pub fn mint(&self, subject: &str, entitlements: &[String], ttl: Duration) -> Token {
        let _ = (subject, entitlements, ttl);
        Zeroizing::new(String::from("placeholder"))
    }
}

#[async_trait]
impl TokenVerifier for DevIssuer {
    async fn verify(&self, _token: &Token) -> Result<Identity, AuthError> {
        Err(AuthError::Invalid(format!(
            "placeholder dev issuer {}",
            self.issuer
        )))
    }
    async fn ready(&self) -> bool {
        true
    }
}
