//! **DEVELOPMENT ONLY.** A built-in token issuer for `layercrypt-broker serve --dev`, so the
//! demo can log in without EGI Check-in.
//!
//! # Never use this in production
//!
//! Whoever can call [`DevIssuer::mint`] can become any subject with any entitlement. The
//! signing key lives only in this process's memory and a new one is made at every start, so
//! tokens do not survive a restart. A broker serving real group keys must verify tokens with
//! [`crate::auth::oidc::OidcVerifier`] against a real issuer.
//!
//! Tokens are ES256 JWTs shaped like Check-in's (`iss`, `sub`, `iat`, `exp`, `kid` in the
//! header) plus `eduperson_entitlement`, and are checked by the same strict validation code as
//! the OIDC verifier (algorithm allow-list, `iss`, `exp`/`nbf` with leeway).

use std::time::Duration;

use async_trait::async_trait;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use openssl::ec::{EcGroup, EcKey};
use openssl::nid::Nid;
use openssl::pkey::PKey;
use zeroize::Zeroizing;

use super::oidc::audience::AudiencePolicy;
use super::oidc::jwt::{self, JwtPolicy};
use super::{AuthError, Identity, Method, Token, TokenVerifier};

/// The issuer URL used by [`DevIssuer::new`].
pub const DEFAULT_DEV_ISSUER: &str = "http://127.0.0.1/layercrypt-dev-issuer";

/// **Development only**: mints and verifies its own tokens (see the module docs).
pub struct DevIssuer {
    issuer: String,
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    policy: JwtPolicy,
}

impl std::fmt::Debug for DevIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevIssuer")
            .field("issuer", &self.issuer)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl DevIssuer {
    /// A development issuer named [`DEFAULT_DEV_ISSUER`] with a fresh in-memory P-256 key.
    pub fn new() -> Self {
        Self::with_issuer(DEFAULT_DEV_ISSUER)
    }

    /// A development issuer whose tokens carry `iss = issuer` (e.g. the broker's own URL).
    pub fn with_issuer(issuer: impl Into<String>) -> Self {
        let issuer = issuer.into();
        tracing::warn!(%issuer, "development token issuer enabled: anyone who can mint tokens can be anyone");
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)
            .expect("P-256 is built into every OpenSSL");
        let ec = EcKey::generate(&group).expect("generating a P-256 key cannot fail");
        let pkey = PKey::from_ec_key(ec).expect("an EC key is a valid PKey");
        let private_pem = Zeroizing::new(
            pkey.private_key_to_pem_pkcs8()
                .expect("a fresh P-256 key serialises as PKCS#8"),
        );
        let public_pem = pkey
            .public_key_to_pem()
            .expect("a fresh P-256 key serialises as SPKI");
        let encoding = EncodingKey::from_ec_pem(&private_pem)
            .expect("jsonwebtoken reads the PKCS#8 P-256 key OpenSSL wrote");
        let decoding = DecodingKey::from_ec_pem(&public_pem)
            .expect("jsonwebtoken reads the SPKI P-256 key OpenSSL wrote");
        let der = pkey
            .public_key_to_der()
            .expect("a fresh P-256 key serialises as SPKI DER");
        let kid = format!("dev-{}", &hex::encode(openssl::sha::sha256(&der))[..16]);
        let policy = JwtPolicy {
            issuer: issuer.clone(),
            audience: AudiencePolicy::dev(),
            algorithms: vec![Algorithm::ES256],
            leeway_secs: 60,
        };
        Self {
            issuer,
            kid,
            encoding,
            decoding,
            policy,
        }
    }

    /// The `iss` of the minted tokens.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Mints a token for `subject` with `entitlements`, valid for `ttl` from now.
    pub fn mint(&self, subject: &str, entitlements: &[String], ttl: Duration) -> Token {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let claims = serde_json::json!({
            "iss": self.issuer,
            "sub": subject,
            "iat": now,
            "exp": now.saturating_add(ttl.as_secs()),
            "eduperson_entitlement": entitlements,
        });
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        Token::new(
            jsonwebtoken::encode(&header, &claims, &self.encoding)
                .expect("ES256 signing with a valid key cannot fail"),
        )
    }

    fn verify_sync(&self, token: &str) -> Result<Identity, AuthError> {
        let header = jwt::parse_header(token, &self.policy)?;
        if header.kid.as_deref() != Some(self.kid.as_str()) {
            return Err(AuthError::Invalid(format!(
                "unknown signing key kid={}",
                jwt::printable(header.kid.as_deref().unwrap_or("(none)"), 64)
            )));
        }
        let claims = jwt::validate(token, &header, &self.decoding, &self.policy)?;
        Ok(Identity {
            method: Method::Token,
            subject: Some(claims.subject),
            dn: None,
            entitlements: claims.entitlements.unwrap_or_default(),
            expires_at: Some(claims.exp),
        })
    }
}

impl Default for DevIssuer {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl TokenVerifier for DevIssuer {
    async fn verify(&self, token: &Token) -> Result<Identity, AuthError> {
        // ES256 verification is cheap enough (~50 µs) to run inline.
        self.verify_sync(token.expose_secret())
    }

    async fn ready(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;

    fn reason(r: Result<Identity, AuthError>) -> String {
        match r {
            Err(AuthError::Invalid(s)) => s,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn mint_then_verify() {
        let dev = DevIssuer::with_issuer("http://127.0.0.1:1/dev");
        let ents = vec!["urn:mace:egi.eu:group:vo.example.org:role=member#aai.egi.eu".to_owned()];
        let token = dev.mint("alice@egi.eu", &ents, Duration::from_secs(60));
        let id = dev.verify(&token).await.expect("own token verifies");
        assert_eq!(id.method, Method::Token);
        assert_eq!(id.subject.as_deref(), Some("alice@egi.eu"));
        assert_eq!(id.entitlements, ents);
        assert!(id.expires_at.expect("exp") > 0);
        assert!(dev.ready().await);
    }

    #[test]
    fn other_instance_and_tampering_refused() {
        let a = DevIssuer::new();
        let b = DevIssuer::new();
        let token = b.mint("mallory", &[], Duration::from_secs(60));
        assert!(reason(a.verify_sync(token.expose_secret())).contains("unknown signing key"));

        let token = a.mint("alice", &["x".into()], Duration::from_secs(60));
        let parts: Vec<&str> = token.expose_secret().split('.').collect();
        let forged_payload = URL_SAFE_NO_PAD.encode(
            serde_json::to_vec(&serde_json::json!({
                "iss": a.issuer(), "sub": "alice", "exp": 4_000_000_000u64,
                "eduperson_entitlement": ["admin"]
            }))
            .expect("json"),
        );
        let forged = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
        assert!(reason(a.verify_sync(&forged)).contains("signature"));
    }

    #[test]
    fn expired_refused() {
        let dev = DevIssuer::new();
        // exp = now; with 60 s leeway still valid, so build one well in the past by hand.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(dev.kid.clone());
        let claims = serde_json::json!({"iss": dev.issuer(), "sub": "a", "exp": now - 3600});
        let token = jsonwebtoken::encode(&header, &claims, &dev.encoding).expect("sign");
        assert!(reason(dev.verify_sync(&token)).contains("expired"));
    }
}
