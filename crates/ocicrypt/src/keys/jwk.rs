//! JSON Web Keys (RFC 7517/7518): RSA and EC keys, private or public, single or in a set;
//! the RFC 7638 thumbprint and the public JWK of a key.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use openssl::bn::{BigNum, BigNumContext, BigNumRef};
use openssl::ec::{EcGroup, EcKey};
use openssl::nid::Nid;
use openssl::pkey::{HasPublic, Id, PKey, PKeyRef};
use openssl::rsa::Rsa;
use serde::Deserialize;
use zeroize::Zeroizing;

use super::{key_file_error, KeyMaterial, PrivateKey, PublicKey};
use crate::error::{Error, Result};

/// A string member holding private key material: zeroized on drop.
struct SecretMember(Zeroizing<String>);

impl<'de> Deserialize<'de> for SecretMember {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(|s| SecretMember(Zeroizing::new(s)))
    }
}

/// A JWK, or a JWK Set when `keys` is present. Unknown members (`kid`, `use`, `x5c`, …) are
/// ignored, as RFC 7517 asks.
#[derive(Deserialize)]
struct Jwk {
    kty: Option<String>,
    alg: Option<String>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
    d: Option<SecretMember>,
    p: Option<SecretMember>,
    q: Option<SecretMember>,
    dp: Option<SecretMember>,
    dq: Option<SecretMember>,
    qi: Option<SecretMember>,
    oth: Option<serde::de::IgnoredAny>,
    keys: Option<Vec<Jwk>>,
}

/// Parses a JWK or a JWK Set.
pub(super) fn parse(bytes: &[u8], source: &str) -> Result<Vec<KeyMaterial>> {
    let err = |reason: String| key_file_error(source, reason);
    // Only the position of a JSON error: serde_json's message can quote the offending value,
    // which may be key material.
    let jwk: Jwk = serde_json::from_slice(bytes).map_err(|e| {
        err(format!(
            "not a valid JWK ({:?} error at line {}, column {}); {}",
            e.classify(),
            e.line(),
            e.column(),
            super::parse::ACCEPTED
        ))
    })?;
    match jwk.keys {
        Some(ref keys) => {
            if keys.is_empty() {
                return Err(err("the JWK Set has no keys".into()));
            }
            keys.iter()
                .enumerate()
                .map(|(i, k)| {
                    if k.keys.is_some() {
                        return Err(err(format!("key {i} of the JWK Set is itself a set")));
                    }
                    k.to_material(source)
                        .map_err(|r| err(format!("key {i} of the JWK Set: {r}")))
                })
                .collect()
        }
        None => Ok(vec![jwk.to_material(source).map_err(err)?]),
    }
}

impl Jwk {
    fn to_material(&self, source: &str) -> Result<KeyMaterial, String> {
        let alg = self.alg.clone();
        match self.kty.as_deref() {
            Some("RSA") => self.rsa(source, alg),
            Some("EC") => self.ec(source, alg),
            Some(other) => Err(format!(
                "JWK kty {other:?} is not supported; only RSA and EC"
            )),
            None => Err("the JWK has no kty member".into()),
        }
    }

    fn rsa(&self, source: &str, alg: Option<String>) -> Result<KeyMaterial, String> {
        let n = bn(required(&self.n, "n")?, "n")?;
        let e = bn(required(&self.e, "e")?, "e")?;
        let Some(d) = &self.d else {
            let rsa = Rsa::from_public_components(n, e).map_err(|_| "invalid RSA JWK")?;
            let key = PKey::from_rsa(rsa).map_err(|_| "invalid RSA JWK")?;
            return Ok(KeyMaterial::Public(PublicKey::new(key, alg, source)));
        };
        if self.oth.is_some() {
            return Err("multi-prime RSA JWKs (oth) are not supported".into());
        }
        let (Some(p), Some(q)) = (&self.p, &self.q) else {
            return Err("an RSA private JWK needs p and q".into());
        };
        let d = secret_bn(d, "d")?;
        let p = secret_bn(p, "p")?;
        let q = secret_bn(q, "q")?;
        let bad = || "the RSA private JWK is inconsistent".to_string();
        let mut ctx = BigNumContext::new_secure().map_err(|_| bad())?;
        let one = BigNum::from_u32(1).map_err(|_| bad())?;
        // dp, dq and qi are optional (RFC 7518 §6.3.2); compute what is missing.
        let crt_exp =
            |member: &Option<SecretMember>, name, prime: &BigNumRef, ctx: &mut BigNumContext| {
                if let Some(v) = member {
                    return secret_bn(v, name);
                }
                let mut pm1 = BigNum::new_secure().map_err(|_| bad())?;
                pm1.checked_sub(prime, &one).map_err(|_| bad())?;
                let mut r = BigNum::new_secure().map_err(|_| bad())?;
                r.nnmod(&d, &pm1, ctx).map_err(|_| bad())?;
                Ok(r)
            };
        let dp = crt_exp(&self.dp, "dp", &p, &mut ctx)?;
        let dq = crt_exp(&self.dq, "dq", &q, &mut ctx)?;
        let qi = match &self.qi {
            Some(v) => secret_bn(v, "qi")?,
            None => {
                let mut r = BigNum::new_secure().map_err(|_| bad())?;
                r.mod_inverse(&q, &p, &mut ctx).map_err(|_| bad())?;
                r
            }
        };
        let rsa = Rsa::from_private_components(n, e, d, p, q, dp, dq, qi).map_err(|_| bad())?;
        if !rsa.check_key().unwrap_or(false) {
            return Err(bad());
        }
        let key = PKey::from_rsa(rsa).map_err(|_| bad())?;
        Ok(KeyMaterial::Private(
            PrivateKey::new(key, source).with_jwk_alg(alg),
        ))
    }

    fn ec(&self, source: &str, alg: Option<String>) -> Result<KeyMaterial, String> {
        let crv = required(&self.crv, "crv")?;
        let (nid, size) = curve_by_name(crv).ok_or_else(|| {
            format!("JWK curve {crv:?} is not supported; use P-256, P-384 or P-521")
        })?;
        let group = EcGroup::from_curve_name(nid).map_err(|_| "unsupported curve")?;
        let coord = |v: &Option<String>, name: &str| -> Result<BigNum, String> {
            let bytes = b64(required(v, name)?, name)?;
            if bytes.len() != size {
                return Err(format!("JWK member {name} must be {size} bytes for {crv}"));
            }
            BigNum::from_slice(&bytes).map_err(|_| format!("invalid JWK member {name}"))
        };
        let (x, y) = (coord(&self.x, "x")?, coord(&self.y, "y")?);
        let not_on_curve = || format!("the JWK point is not on curve {crv}");
        // Sets the point through EC_POINT_set_affine_coordinates, which rejects points off
        // the curve, then runs EC_KEY_check_key.
        let public = EcKey::from_public_key_affine_coordinates(&group, &x, &y)
            .map_err(|_| not_on_curve())?;
        public.check_key().map_err(|_| not_on_curve())?;
        let Some(d) = &self.d else {
            let key = PKey::from_ec_key(public).map_err(|_| "invalid EC JWK")?;
            return Ok(KeyMaterial::Public(PublicKey::new(key, alg, source)));
        };
        let d_bytes = b64_secret(d, "d")?;
        if d_bytes.len() != size {
            return Err(format!("JWK member d must be {size} bytes for {crv}"));
        }
        let d = secret_from_slice(&d_bytes, "d")?;
        let bad = || "the EC private JWK is inconsistent (d does not match x, y)".to_string();
        let private =
            EcKey::from_private_components(&group, &d, public.public_key()).map_err(|_| bad())?;
        private.check_key().map_err(|_| bad())?;
        let key = PKey::from_ec_key(private).map_err(|_| bad())?;
        Ok(KeyMaterial::Private(
            PrivateKey::new(key, source).with_jwk_alg(alg),
        ))
    }
}

fn required<'a>(v: &'a Option<String>, name: &str) -> Result<&'a str, String> {
    v.as_deref()
        .ok_or_else(|| format!("the JWK has no {name} member"))
}

fn b64(v: &str, name: &str) -> Result<Vec<u8>, String> {
    URL_SAFE_NO_PAD
        .decode(v)
        .map_err(|_| format!("JWK member {name} is not base64url"))
}

fn b64_secret(v: &SecretMember, name: &str) -> Result<Zeroizing<Vec<u8>>, String> {
    URL_SAFE_NO_PAD
        .decode(v.0.as_bytes())
        .map(Zeroizing::new)
        .map_err(|_| format!("JWK member {name} is not base64url"))
}

fn bn(v: &str, name: &str) -> Result<BigNum, String> {
    let bytes = b64(v, name)?;
    if bytes.is_empty() {
        return Err(format!("JWK member {name} is empty"));
    }
    BigNum::from_slice(&bytes).map_err(|_| format!("invalid JWK member {name}"))
}

fn secret_bn(v: &SecretMember, name: &str) -> Result<BigNum, String> {
    let bytes = b64_secret(v, name)?;
    if bytes.is_empty() {
        return Err(format!("JWK member {name} is empty"));
    }
    secret_from_slice(&bytes, name)
}

/// A BigNum in OpenSSL's secure heap (when enabled), so it is cleared when freed.
fn secret_from_slice(bytes: &[u8], name: &str) -> Result<BigNum, String> {
    let mut n = BigNum::new_secure().map_err(|_| format!("invalid JWK member {name}"))?;
    n.copy_from_slice(bytes)
        .map_err(|_| format!("invalid JWK member {name}"))?;
    Ok(n)
}

fn curve_by_name(crv: &str) -> Option<(Nid, usize)> {
    match crv {
        "P-256" => Some((Nid::X9_62_PRIME256V1, 32)),
        "P-384" => Some((Nid::SECP384R1, 48)),
        "P-521" => Some((Nid::SECP521R1, 66)),
        _ => None,
    }
}

/// The JWK name and field size of a curve.
pub(super) fn curve_name(nid: Nid) -> Option<(&'static str, usize)> {
    match nid {
        Nid::X9_62_PRIME256V1 => Some(("P-256", 32)),
        Nid::SECP384R1 => Some(("P-384", 48)),
        Nid::SECP521R1 => Some(("P-521", 66)),
        _ => None,
    }
}

/// The public members of a JWK, base64url-encoded.
enum PublicParams {
    Rsa {
        n: String,
        e: String,
    },
    Ec {
        crv: &'static str,
        x: String,
        y: String,
    },
}

fn public_params<T: HasPublic>(key: &PKeyRef<T>) -> Result<PublicParams> {
    let unsupported = || {
        Error::Jwe(format!(
            "{} keys have no JWK form here; only RSA and EC (P-256, P-384, P-521)",
            super::cert::key_type_name(key.id())
        ))
    };
    match key.id() {
        Id::RSA => {
            let rsa = key.rsa()?;
            Ok(PublicParams::Rsa {
                n: URL_SAFE_NO_PAD.encode(rsa.n().to_vec()),
                e: URL_SAFE_NO_PAD.encode(rsa.e().to_vec()),
            })
        }
        Id::EC => {
            let ec = key.ec_key()?;
            let group = ec.group();
            let (crv, size) = group
                .curve_name()
                .and_then(curve_name)
                .ok_or_else(unsupported)?;
            let mut ctx = BigNumContext::new()?;
            let (mut x, mut y) = (BigNum::new()?, BigNum::new()?);
            ec.public_key()
                .affine_coordinates(group, &mut x, &mut y, &mut ctx)?;
            let size = i32::try_from(size).expect("field sizes are at most 66 bytes");
            Ok(PublicParams::Ec {
                crv,
                x: URL_SAFE_NO_PAD.encode(x.to_vec_padded(size)?),
                y: URL_SAFE_NO_PAD.encode(y.to_vec_padded(size)?),
            })
        }
        _ => Err(unsupported()),
    }
}

/// The RFC 7638 JWK thumbprint (SHA-256, base64url without padding) of an RSA or EC key.
pub fn jwk_thumbprint<T: HasPublic>(key: &PKeyRef<T>) -> Result<String> {
    // The members in lexicographic order, no whitespace (RFC 7638 §3.2); base64url needs no
    // JSON escaping.
    let canonical = match public_params(key)? {
        PublicParams::Rsa { n, e } => format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#),
        PublicParams::Ec { crv, x, y } => {
            format!(r#"{{"crv":"{crv}","kty":"EC","x":"{x}","y":"{y}"}}"#)
        }
    };
    Ok(URL_SAFE_NO_PAD.encode(openssl::sha::sha256(canonical.as_bytes())))
}

/// The public JWK of an RSA or EC key: `{"kty":"RSA","n","e"}` or
/// `{"kty":"EC","crv","x","y"}` (member order as go-jose writes an `epk`).
pub fn public_jwk<T: HasPublic>(key: &PKeyRef<T>) -> Result<serde_json::Value> {
    Ok(match public_params(key)? {
        PublicParams::Rsa { n, e } => serde_json::json!({ "kty": "RSA", "n": n, "e": e }),
        PublicParams::Ec { crv, x, y } => {
            serde_json::json!({ "kty": "EC", "crv": crv, "x": x, "y": y })
        }
    })
}
