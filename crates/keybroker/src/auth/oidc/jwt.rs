//! Strict JWT validation shared by [`super::OidcVerifier`] and [`crate::auth::dev::DevIssuer`].
//!
//! The order matters: the header is parsed by hand first so that `alg: none` and every HMAC
//! algorithm are refused before any key is looked up (an HS256 token "signed" with the
//! issuer's RSA public key must never reach a verifier), then the caller finds the key by
//! `kid`, then `jsonwebtoken` checks signature, `exp`/`nbf` (with leeway) and `iss`, then
//! [`AudiencePolicy`] checks `aud` (whenever present, not only when configured) and the client
//! (`azp`/`client_id`). Every refusal carries a precise reason for the audit log; no reason
//! ever contains the token.

use std::str::FromStr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;

use crate::auth::AuthError;

use super::audience::AudiencePolicy;

/// Tokens longer than this are refused unparsed (Check-in's are about 1,400 characters).
pub(crate) const MAX_TOKEN_LEN: usize = 16 * 1024;

/// The signature algorithms a verifier accepts unless configured otherwise.
pub(crate) const DEFAULT_ALGORITHMS: [&str; 6] =
    ["RS256", "RS384", "RS512", "PS256", "ES256", "ES384"];

/// What a token must satisfy besides its signature.
#[derive(Debug, Clone)]
pub(crate) struct JwtPolicy {
    /// Exact `iss`.
    pub issuer: String,
    /// `aud` and `azp`/`client_id`.
    pub audience: AudiencePolicy,
    /// Allow-list; never contains `none` or HMAC (see [`parse_algorithms`]).
    pub algorithms: Vec<Algorithm>,
    /// Clock skew allowed for `exp` and `nbf`, seconds.
    pub leeway_secs: u64,
}

/// Turns configured algorithm names into the allow-list, dropping (with a warning) HMAC,
/// `none` and names `jsonwebtoken` does not know. Asymmetric algorithms only: the broker
/// never shares a secret with the issuer.
pub(crate) fn parse_algorithms(names: &[String]) -> Vec<Algorithm> {
    let mut out = Vec::new();
    for name in names {
        if name.to_ascii_uppercase().starts_with("HS") || name.eq_ignore_ascii_case("none") {
            tracing::warn!(algorithm = %name, "refusing to allow a symmetric or null JWT algorithm");
            continue;
        }
        match Algorithm::from_str(name) {
            Ok(alg) if !out.contains(&alg) => out.push(alg),
            Ok(_) => {}
            Err(_) => tracing::warn!(algorithm = %name, "unknown JWT algorithm ignored"),
        }
    }
    out
}

/// The parts of a JOSE header the verifiers look at.
#[derive(Debug, Clone)]
pub(crate) struct JwtHeader {
    /// The (allowed) algorithm.
    pub alg: Algorithm,
    /// Key id, if any.
    pub kid: Option<String>,
}

#[derive(Deserialize)]
struct RawHeader {
    alg: Option<String>,
    kid: Option<String>,
    crit: Option<Value>,
}

/// Attacker-controlled header text (alg, kid) as it may appear in an audit reason: printable
/// ASCII only, at most `max` characters.
pub(crate) fn printable(s: &str, max: usize) -> String {
    s.chars().filter(char::is_ascii_graphic).take(max).collect()
}

fn invalid(reason: impl Into<String>) -> AuthError {
    AuthError::Invalid(reason.into())
}

/// Checks the token's shape and header: three base64url parts, a JSON header with an
/// allowed, asymmetric `alg`. Runs before any key lookup.
pub(crate) fn parse_header(token: &str, policy: &JwtPolicy) -> Result<JwtHeader, AuthError> {
    if token.is_empty() {
        return Err(invalid("empty token"));
    }
    if token.len() > MAX_TOKEN_LEN {
        return Err(invalid(format!("token longer than {MAX_TOKEN_LEN} bytes")));
    }
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 {
        return Err(invalid(format!(
            "not a compact JWS: {} parts instead of 3",
            parts.len()
        )));
    }
    let header_bytes = URL_SAFE_NO_PAD
        .decode(parts[0])
        .map_err(|_| invalid("JWT header is not base64url"))?;
    let raw: RawHeader = serde_json::from_slice(&header_bytes)
        .map_err(|_| invalid("JWT header is not a JSON object"))?;
    let Some(alg_name) = raw.alg else {
        return Err(invalid("JWT header has no alg"));
    };
    if alg_name.eq_ignore_ascii_case("none") {
        return Err(invalid("JWT alg none refused"));
    }
    let shown = printable(&alg_name, 20);
    if alg_name.to_ascii_uppercase().starts_with("HS") {
        return Err(invalid(format!(
            "JWT alg {shown} refused: HMAC algorithms are never accepted"
        )));
    }
    let alg =
        Algorithm::from_str(&alg_name).map_err(|_| invalid(format!("JWT alg {shown} unknown")))?;
    if !policy.algorithms.contains(&alg) {
        return Err(invalid(format!("JWT alg {shown} not in the allow-list")));
    }
    if raw.crit.is_some() {
        // RFC 7515 §4.1.11: extensions we do not understand must make the token invalid.
        return Err(invalid("JWT header has crit extensions"));
    }
    if parts[2].is_empty() {
        return Err(invalid("JWT has an empty signature"));
    }
    Ok(JwtHeader { alg, kid: raw.kid })
}

/// The claims the broker uses, parsed once the signature is verified.
#[derive(Debug, Clone)]
pub(crate) struct VerifiedClaims {
    /// `voperson_id`, else `sub`.
    pub subject: String,
    /// `sub` itself (UserInfo answers must name the same one).
    pub sub: Option<String>,
    /// `exp`, Unix seconds.
    pub exp: i64,
    /// `eduperson_entitlement` ∪ `entitlements` if either claim is in the token, else None.
    pub entitlements: Option<Vec<String>>,
}

/// Verifies signature and claims with `key` (found by the caller from `header.kid`).
pub(crate) fn validate(
    token: &str,
    header: &JwtHeader,
    key: &DecodingKey,
    policy: &JwtPolicy,
) -> Result<VerifiedClaims, AuthError> {
    let mut validation = Validation::new(header.alg);
    validation.algorithms = vec![header.alg];
    validation.leeway = policy.leeway_secs;
    validation.validate_exp = true;
    validation.validate_nbf = true;
    validation.set_required_spec_claims(&["exp", "iss"]);
    validation.set_issuer(&[policy.issuer.as_str()]);
    // `aud` is checked below, in every configuration: jsonwebtoken compares exact strings
    // only (no URL normalisation) and would skip a present `aud` when none is configured.
    validation.validate_aud = false;
    let data = jsonwebtoken::decode::<Value>(token, key, &validation).map_err(map_jwt_error)?;
    let claims = data.claims;
    // jsonwebtoken also accepts an array `iss`; an issuer is one exact string.
    if claims.get("iss").and_then(Value::as_str) != Some(policy.issuer.as_str()) {
        return Err(invalid("iss is not exactly the configured issuer"));
    }
    policy.audience.check(&claims, "token")?;
    let exp = claims
        .get("exp")
        .and_then(Value::as_i64)
        .ok_or_else(|| invalid("exp is not an integer"))?;
    let sub = string_claim(&claims, "sub")?;
    let voperson_id = string_claim(&claims, "voperson_id")?;
    let subject = voperson_id
        .or_else(|| sub.clone())
        .ok_or_else(|| invalid("token names no subject (neither voperson_id nor sub)"))?;
    Ok(VerifiedClaims {
        subject,
        sub,
        exp,
        entitlements: entitlements_from(&claims)?,
    })
}

fn string_claim(claims: &Value, name: &str) -> Result<Option<String>, AuthError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Err(invalid(format!("claim {name} is empty"))),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(invalid(format!("claim {name} is not a string"))),
    }
}

/// Reads `eduperson_entitlement` and `entitlements` (each a string or an array of strings)
/// from a claims object: a token, a UserInfo answer or an introspection answer. None if
/// neither claim is present.
pub(crate) fn entitlements_from(claims: &Value) -> Result<Option<Vec<String>>, AuthError> {
    /// Bound on values taken from one answer.
    const MAX_ENTITLEMENTS: usize = 4096;
    let mut found = false;
    let mut out: Vec<String> = Vec::new();
    for name in ["eduperson_entitlement", "entitlements"] {
        let values: Vec<&Value> = match claims.get(name) {
            None | Some(Value::Null) => continue,
            Some(Value::String(_)) => vec![&claims[name]],
            Some(Value::Array(items)) => items.iter().collect(),
            Some(_) => {
                return Err(invalid(format!(
                    "claim {name} is neither a string nor an array"
                )))
            }
        };
        found = true;
        for value in values {
            let Some(s) = value.as_str() else {
                return Err(invalid(format!("claim {name} holds a non-string value")));
            };
            if !out.iter().any(|have| have == s) {
                out.push(s.to_owned());
            }
        }
        if out.len() > MAX_ENTITLEMENTS {
            return Err(invalid(format!(
                "more than {MAX_ENTITLEMENTS} entitlements"
            )));
        }
    }
    Ok(found.then_some(out))
}

fn map_jwt_error(err: jsonwebtoken::errors::Error) -> AuthError {
    let reason = match err.kind() {
        ErrorKind::InvalidSignature => "signature does not verify".to_owned(),
        ErrorKind::ExpiredSignature => "token expired (exp)".to_owned(),
        ErrorKind::ImmatureSignature => "token not yet valid (nbf)".to_owned(),
        ErrorKind::InvalidIssuer => "iss is not the configured issuer".to_owned(),
        ErrorKind::InvalidAudience => "aud does not name the configured audience".to_owned(),
        ErrorKind::MissingRequiredClaim(c) => format!("required claim {c} missing"),
        ErrorKind::InvalidClaimFormat(c) => format!("claim {c} malformed"),
        ErrorKind::InvalidAlgorithm => "signing key does not fit the JWT alg".to_owned(),
        ErrorKind::InvalidRsaKey(_) | ErrorKind::InvalidEcdsaKey | ErrorKind::InvalidKeyFormat => {
            "issuer key unusable for this token".to_owned()
        }
        ErrorKind::Base64(_) => "JWT part is not base64url".to_owned(),
        ErrorKind::Json(_) | ErrorKind::Utf8(_) => "JWT payload is not a JSON object".to_owned(),
        ErrorKind::InvalidToken => "malformed JWT".to_owned(),
        other => format!("JWT refused: {other:?}"),
    };
    AuthError::Invalid(reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> JwtPolicy {
        JwtPolicy {
            issuer: "https://issuer.example".into(),
            audience: AudiencePolicy::dev(),
            algorithms: parse_algorithms(DEFAULT_ALGORITHMS.map(String::from).as_ref()),
            leeway_secs: 60,
        }
    }

    fn with_header(header: &str) -> String {
        format!(
            "{}.{}.c2ln",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode("{}")
        )
    }

    fn reason(r: Result<JwtHeader, AuthError>) -> String {
        match r {
            Err(AuthError::Invalid(s)) => s,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn algorithm_list_drops_hmac_and_none() {
        let algs = parse_algorithms(&["HS256".into(), "none".into(), "RS256".into(), "X".into()]);
        assert_eq!(algs, vec![Algorithm::RS256]);
    }

    #[test]
    fn header_refusals_are_precise() {
        let p = policy();
        assert!(reason(parse_header(&with_header(r#"{"alg":"none"}"#), &p)).contains("none"));
        assert!(reason(parse_header(&with_header(r#"{"alg":"HS256"}"#), &p)).contains("HMAC"));
        assert!(reason(parse_header(&with_header(r#"{"alg":"EdDSA"}"#), &p)).contains("allow-list"));
        assert!(reason(parse_header(&with_header(r#"{"alg":"XX1"}"#), &p)).contains("unknown"));
        assert!(reason(parse_header(&with_header(r#"{"kid":"a"}"#), &p)).contains("no alg"));
        assert!(reason(parse_header(
            &with_header(r#"{"alg":"RS256","crit":["b64"]}"#),
            &p
        ))
        .contains("crit"));
        assert!(reason(parse_header("a.b", &p)).contains("2 parts"));
        assert!(reason(parse_header("", &p)).contains("empty"));
        assert!(reason(parse_header("!!.e30.c2ln", &p)).contains("base64url"));
        assert!(reason(parse_header(&"a".repeat(MAX_TOKEN_LEN + 1), &p)).contains("longer"));
        let ok = parse_header(&with_header(r#"{"alg":"RS256","kid":"k1"}"#), &p).expect("valid");
        assert_eq!(ok.alg, Algorithm::RS256);
        assert_eq!(ok.kid.as_deref(), Some("k1"));
    }

    #[test]
    fn entitlements_string_or_array_merged() {
        let v = serde_json::json!({"eduperson_entitlement": "a", "entitlements": ["b", "a"]});
        assert_eq!(
            entitlements_from(&v).expect("ok"),
            Some(vec!["a".into(), "b".into()])
        );
        assert_eq!(
            entitlements_from(&serde_json::json!({"sub": "x"})).expect("ok"),
            None
        );
        assert_eq!(
            entitlements_from(&serde_json::json!({"entitlements": []})).expect("ok"),
            Some(vec![])
        );
        assert!(entitlements_from(&serde_json::json!({"entitlements": 3})).is_err());
        assert!(entitlements_from(&serde_json::json!({"entitlements": [3]})).is_err());
    }
}
