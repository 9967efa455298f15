//! Format detection and parsing of key files: PEM, DER, PKCS#12, JWK.
//!
//! All DER parsing is OpenSSL's. Unencrypted PEM bodies are decoded here and handed to the DER
//! parsers, never to OpenSSL's PEM readers: those fall back to prompting on the terminal when
//! they meet encrypted content without a password callback. Passphrases go to OpenSSL through
//! callbacks, which take any bytes (the `*_passphrase` helpers of the openssl crate panic on
//! a NUL byte).

use openssl::ec::EcKey;
use openssl::error::ErrorStack;
use openssl::pkcs12::Pkcs12;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::X509;

use super::{jwk, key_file_error, pem, Certificate, KeyMaterial, PrivateKey, PublicKey};
use crate::error::Result;
use crate::secret::SecretBytes;

/// What every "not recognised" message lists.
pub(super) const ACCEPTED: &str =
    "accepted are PEM (PRIVATE KEY, RSA PRIVATE KEY, EC PRIVATE KEY, \
ENCRYPTED PRIVATE KEY, legacy-encrypted PEM, PUBLIC KEY, RSA PUBLIC KEY, CERTIFICATE), \
DER (PKCS#8, PKCS#1, SEC1, SPKI, X.509 certificate), PKCS#12, and JWK or JWK Set JSON";

const NEEDS_PASSPHRASE: &str = "the key is encrypted and no passphrase was given";
const WRONG_PASSPHRASE: &str = "wrong passphrase";

pub(super) fn parse(
    bytes: &[u8],
    passphrase: Option<&SecretBytes>,
    source: &str,
) -> Result<Vec<KeyMaterial>> {
    let ctx = Ctx { source, passphrase };
    let start = bytes.iter().position(|b| !b.is_ascii_whitespace());
    let Some(start) = start else {
        return Err(key_file_error(source, "the file is empty"));
    };
    if pem::is_pem(bytes) {
        ctx.pem(bytes)
    } else if bytes[start] == b'{' {
        jwk::parse(&bytes[start..], source)
    } else if bytes[0] == 0x30 {
        ctx.der(bytes)
    } else {
        Err(key_file_error(
            source,
            format!("not a recognised key or certificate format; {ACCEPTED}"),
        ))
    }
}

pub(super) fn needs_passphrase(bytes: &[u8]) -> bool {
    if pem::is_pem(bytes) {
        return pem::blocks(bytes).is_ok_and(|blocks| {
            blocks.iter().any(|b| {
                b.is_well_formed_legacy()
                    || (b.label == "ENCRYPTED PRIVATE KEY"
                        && b.decode().is_ok_and(|der| is_encrypted_pkcs8(&der)))
            })
        });
    }
    if bytes.first() != Some(&0x30) {
        return false;
    }
    if is_encrypted_pkcs8(bytes) {
        return true;
    }
    if plain_der(bytes, "").is_some() {
        return false;
    }
    Pkcs12::from_der(bytes).is_ok_and(|p12| p12.parse2("").is_err())
}

/// The certificates of a PEM bundle (other blocks skipped) or of a DER certificate.
pub(super) fn certificates(bytes: &[u8], source: &str) -> Result<Vec<Certificate>> {
    let err = |reason: String| key_file_error(source, reason);
    let mut out = Vec::new();
    if pem::is_pem(bytes) {
        for block in pem::blocks(bytes).map_err(err)? {
            if block.label == "CERTIFICATE" {
                let der = block.decode().map_err(err)?;
                let x509 = X509::from_der(&der).map_err(|_| {
                    err("a CERTIFICATE block is not a valid X.509 certificate".into())
                })?;
                out.push(Certificate::new(x509, source));
            }
        }
    } else if bytes.first() == Some(&0x30) {
        if let Ok(x509) = X509::from_der(bytes) {
            out.push(Certificate::new(x509, source));
        }
    }
    if out.is_empty() {
        return Err(err(
            "no certificate found; expected PEM CERTIFICATE blocks or a DER X.509 certificate"
                .into(),
        ));
    }
    Ok(out)
}

struct Ctx<'a> {
    source: &'a str,
    passphrase: Option<&'a SecretBytes>,
}

impl Ctx<'_> {
    fn err(&self, reason: impl Into<String>) -> crate::Error {
        key_file_error(self.source, reason)
    }

    fn private(&self, key: PKey<Private>) -> KeyMaterial {
        KeyMaterial::Private(PrivateKey::new(key, self.source))
    }

    fn pem(&self, bytes: &[u8]) -> Result<Vec<KeyMaterial>> {
        let blocks = pem::blocks(bytes).map_err(|reason| self.err(reason))?;
        let mut out = Vec::with_capacity(blocks.len());
        for block in &blocks {
            let label = block.label.as_str();
            let invalid = || self.err(format!("PEM block {label:?} is not a valid {label}"));
            if block.is_legacy_encrypted() {
                out.push(self.legacy_encrypted(block)?);
                continue;
            }
            let der = || block.decode().map_err(|reason| self.err(reason));
            let item = match label {
                "PRIVATE KEY" => {
                    self.private(PKey::private_key_from_pkcs8(&der()?).map_err(|_| invalid())?)
                }
                "RSA PRIVATE KEY" => {
                    let rsa = Rsa::private_key_from_der(&der()?).map_err(|_| invalid())?;
                    self.private(PKey::from_rsa(rsa)?)
                }
                "EC PRIVATE KEY" => {
                    let ec = EcKey::private_key_from_der(&der()?).map_err(|_| invalid())?;
                    self.private(PKey::from_ec_key(ec)?)
                }
                "ENCRYPTED PRIVATE KEY" => {
                    let der = der()?;
                    if !is_encrypted_pkcs8(&der) {
                        return Err(invalid());
                    }
                    self.encrypted_pkcs8(&der)?
                }
                "PUBLIC KEY" => {
                    let key = PKey::public_key_from_der(&der()?).map_err(|_| invalid())?;
                    KeyMaterial::Public(PublicKey::new(key, None, self.source))
                }
                "RSA PUBLIC KEY" => {
                    let rsa = Rsa::public_key_from_der_pkcs1(&der()?).map_err(|_| invalid())?;
                    KeyMaterial::Public(PublicKey::new(PKey::from_rsa(rsa)?, None, self.source))
                }
                "CERTIFICATE" => {
                    let x509 = X509::from_der(&der()?).map_err(|_| invalid())?;
                    KeyMaterial::Certificate(Certificate::new(x509, self.source))
                }
                // `openssl ecparam -genkey` writes the curve before the key; the key names it too.
                "EC PARAMETERS" => continue,
                other => {
                    return Err(self.err(format!("unsupported PEM block {other:?}; {ACCEPTED}")))
                }
            };
            out.push(item);
        }
        if out.is_empty() {
            return Err(self.err(format!("no key or certificate in the PEM file; {ACCEPTED}")));
        }
        Ok(out)
    }

    fn legacy_encrypted(&self, block: &pem::Block) -> Result<KeyMaterial> {
        let label = block.label.as_str();
        if !matches!(
            label,
            "RSA PRIVATE KEY" | "EC PRIVATE KEY" | "PRIVATE KEY" | "DSA PRIVATE KEY"
        ) {
            return Err(self.err(format!(
                "encrypted PEM block {label:?} is not a private key"
            )));
        }
        if !block.is_well_formed_legacy() {
            return Err(self.err(format!("encrypted PEM block {label:?} is malformed")));
        }
        let pass = self.passphrase.ok_or_else(|| self.err(NEEDS_PASSPHRASE))?;
        let pem = block.to_pem();
        let key = PKey::private_key_from_pem_callback(pem.as_bytes(), |buf| fill(buf, pass))
            .map_err(|_| self.err(WRONG_PASSPHRASE))?;
        Ok(self.private(key))
    }

    fn encrypted_pkcs8(&self, der: &[u8]) -> Result<KeyMaterial> {
        let pass = self.passphrase.ok_or_else(|| self.err(NEEDS_PASSPHRASE))?;
        let key = PKey::private_key_from_pkcs8_callback(der, |buf| fill(buf, pass))
            .map_err(|_| self.err(WRONG_PASSPHRASE))?;
        Ok(self.private(key))
    }

    fn der(&self, bytes: &[u8]) -> Result<Vec<KeyMaterial>> {
        if is_encrypted_pkcs8(bytes) {
            return Ok(vec![self.encrypted_pkcs8(bytes)?]);
        }
        if let Some(item) = plain_der(bytes, self.source) {
            return Ok(vec![item]);
        }
        if let Ok(p12) = Pkcs12::from_der(bytes) {
            return self.pkcs12(&p12);
        }
        Err(self.err(format!(
            "not a recognised DER key or certificate; {ACCEPTED}"
        )))
    }

    fn pkcs12(&self, p12: &Pkcs12) -> Result<Vec<KeyMaterial>> {
        let mut attempts: Vec<&str> = Vec::with_capacity(2);
        if let Some(pass) = self.passphrase {
            // `Pkcs12::parse2` takes a C string: no NUL, and it must be text.
            let pass = pass.expose_secret();
            if pass.contains(&0) {
                return Err(self.err("a PKCS#12 passphrase cannot contain a NUL byte"));
            }
            let pass = std::str::from_utf8(pass)
                .map_err(|_| self.err("a PKCS#12 passphrase must be valid UTF-8"))?;
            attempts.push(pass);
        }
        attempts.push("");
        let parsed = attempts.into_iter().find_map(|pass| p12.parse2(pass).ok());
        let Some(parsed) = parsed else {
            return Err(self.err(match self.passphrase {
                None => NEEDS_PASSPHRASE,
                // OpenSSL 3 cannot open RC2-40 (old browser exports) without the legacy
                // provider; that failure looks the same as a wrong passphrase.
                Some(_) => "wrong passphrase (or the PKCS#12 file uses a legacy cipher such as RC2 that this OpenSSL does not enable)",
            }));
        };
        let mut out = Vec::new();
        out.extend(parsed.pkey.map(|k| self.private(k)));
        out.extend(
            parsed
                .cert
                .map(|c| KeyMaterial::Certificate(Certificate::new(c, self.source))),
        );
        for ca in parsed.ca.into_iter().flatten() {
            out.push(KeyMaterial::Certificate(Certificate::new(ca, self.source)));
        }
        if out.is_empty() {
            return Err(self.err("the PKCS#12 file holds no key and no certificate"));
        }
        Ok(out)
    }
}

/// An unencrypted DER key or certificate, tried in Go ocicrypt's order (PKCS#8, PKCS#1, SEC1)
/// after the certificate, then SPKI and PKCS#1 public keys.
fn plain_der(der: &[u8], source: &str) -> Option<KeyMaterial> {
    if let Ok(x509) = X509::from_der(der) {
        return Some(KeyMaterial::Certificate(Certificate::new(x509, source)));
    }
    let private = PKey::private_key_from_pkcs8(der)
        .ok()
        .or_else(|| {
            Rsa::private_key_from_der(der)
                .ok()
                .and_then(|k| PKey::from_rsa(k).ok())
        })
        .or_else(|| {
            EcKey::private_key_from_der(der)
                .ok()
                .and_then(|k| PKey::from_ec_key(k).ok())
        });
    if let Some(key) = private {
        return Some(KeyMaterial::Private(PrivateKey::new(key, source)));
    }
    let public = PKey::public_key_from_der(der).ok().or_else(|| {
        Rsa::public_key_from_der_pkcs1(der)
            .ok()
            .and_then(|k| PKey::from_rsa(k).ok())
    });
    public.map(|key| KeyMaterial::Public(PublicKey::new(key, None, source)))
}

/// True for the shape of an RFC 5208 `EncryptedPrivateKeyInfo`:
/// `SEQUENCE { SEQUENCE { OID, … }, OCTET STRING }` and nothing after it.
fn is_encrypted_pkcs8(der: &[u8]) -> bool {
    use der::{Decode as _, Reader as _, Tagged as _};
    let Ok(outer) = der::asn1::AnyRef::from_der(der) else {
        return false;
    };
    outer
        .sequence(|r| {
            let alg = der::asn1::AnyRef::decode(r)?;
            let data = der::asn1::AnyRef::decode(r)?;
            let alg_ok = alg.tag() == der::Tag::Sequence
                && alg
                    .sequence(|a| {
                        let oid = der::asn1::ObjectIdentifier::decode(a)?;
                        // Skip the parameters, whatever they are.
                        while !a.is_finished() {
                            der::asn1::AnyRef::decode(a)?;
                        }
                        Ok(oid)
                    })
                    .is_ok();
            Ok(alg_ok && data.tag() == der::Tag::OctetString && r.is_finished())
        })
        .unwrap_or(false)
}

/// Copies the passphrase into OpenSSL's buffer.
fn fill(buf: &mut [u8], pass: &SecretBytes) -> Result<usize, ErrorStack> {
    let pass = pass.expose_secret();
    let dst = buf.get_mut(..pass.len()).ok_or_else(ErrorStack::get)?;
    dst.copy_from_slice(pass);
    Ok(pass.len())
}
