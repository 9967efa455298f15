//! Crafted bad access tokens: each must get a 401 from the broker. Built from a valid token of
//! the stand-in and its public signing key, as an attacker could.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use openssl::sign::Signer;
use serde_json::{json, Value};

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

fn split(token: &str) -> (String, String, String) {
    let p: Vec<&str> = token.split('.').collect();
    assert_eq!(p.len(), 3, "a JWS");
    (p[0].to_owned(), p[1].to_owned(), p[2].to_owned())
}

/// The claims of a JWT.
pub fn claims(token: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(split(token).1).expect("b64")).expect("json")
}

/// `alg: none`, no signature.
pub fn alg_none(good: &str) -> String {
    let (_, body, _) = split(good);
    format!("{}.{body}.", b64(&json!({"alg": "none", "typ": "JWT"})))
}

/// HS256 keyed with the issuer's RSA public key in PEM (key confusion). `jwk` is the public JWK.
pub fn hs256_with_public_key(good: &str, jwk: &Value) -> String {
    let bn = |k: &str| {
        openssl::bn::BigNum::from_slice(
            &URL_SAFE_NO_PAD
                .decode(jwk[k].as_str().expect("jwk field"))
                .expect("b64"),
        )
        .expect("bn")
    };
    let pem = Rsa::from_public_components(bn("n"), bn("e"))
        .expect("rsa")
        .public_key_to_pem()
        .expect("pem");
    let (_, body, _) = split(good);
    let header = b64(&json!({"alg": "HS256", "typ": "JWT", "kid": jwk["kid"]}));
    let input = format!("{header}.{body}");
    let key = PKey::hmac(&pem).expect("hmac key");
    let mut s = Signer::new(MessageDigest::sha256(), &key).expect("signer");
    s.update(input.as_bytes()).expect("update");
    format!(
        "{input}.{}",
        URL_SAFE_NO_PAD.encode(s.sign_to_vec().expect("sign"))
    )
}

/// RS256 with a key the issuer never published, under an unknown `kid`.
pub fn unknown_kid(good: &str) -> String {
    let (_, body, _) = split(good);
    let header = b64(&json!({"alg": "RS256", "typ": "JWT", "kid": "not-a-published-key"}));
    let input = format!("{header}.{body}");
    let key = PKey::from_rsa(Rsa::generate(2048).expect("rsa")).expect("pkey");
    let mut s = Signer::new(MessageDigest::sha256(), &key).expect("signer");
    s.update(input.as_bytes()).expect("update");
    format!(
        "{input}.{}",
        URL_SAFE_NO_PAD.encode(s.sign_to_vec().expect("sign"))
    )
}

/// The payload changed (another subject), signature kept.
pub fn tampered_payload(good: &str) -> String {
    let (h, _, sig) = split(good);
    let mut c = claims(good);
    c["sub"] = json!("mallory@egi.eu");
    format!("{h}.{}.{sig}", b64(&c))
}

/// One bit of the signature flipped.
pub fn tampered_signature(good: &str) -> String {
    let (h, body, sig) = split(good);
    let mut bytes = URL_SAFE_NO_PAD.decode(sig).expect("b64");
    bytes[10] ^= 1;
    format!("{h}.{body}.{}", URL_SAFE_NO_PAD.encode(bytes))
}
