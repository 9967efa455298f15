//! Key and certificate material: types and file parsing.
//!
//! Accepted private-key forms: PKCS#8, PKCS#1 and SEC1 in PEM or DER, legacy-encrypted PEM and
//! encrypted PKCS#8 (passphrase), PKCS#12 bundles, JWK (private), X.509 certificates (PEM or
//! DER, needed beside the key for PKCS#7). Public keys: SPKI PEM/DER, JWK, or a certificate.

use openssl::pkey::{PKey, PKeyRef, Private, Public};
use openssl::x509::X509;

/// A private key. Its material lives inside OpenSSL, which clears private key components
/// when the key is freed; it has no `Debug` that shows key material.
pub struct PrivateKey {
    key: PKey<Private>,
    source: String,
}

impl PrivateKey {
    /// Wraps an OpenSSL key; `source` names where it came from (a file name) for messages.
    pub fn new(key: PKey<Private>, source: impl Into<String>) -> Self {
        Self {
            key,
            source: source.into(),
        }
    }

    /// The key, for cryptographic operations.
    pub fn expose_secret(&self) -> &PKeyRef<Private> {
        &self.key
    }

    /// Where the key came from.
    pub fn source(&self) -> &str {
        &self.source
    }
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivateKey")
            .field("type", &self.key.id())
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// A public key used as a JWE recipient.
#[derive(Clone)]
pub struct PublicKey {
    key: PKey<Public>,
    /// A JWK `alg` member that overrides the default key-management algorithm.
    jwk_alg: Option<String>,
    source: String,
}

impl PublicKey {
    /// Wraps an OpenSSL public key.
    pub fn new(key: PKey<Public>, jwk_alg: Option<String>, source: impl Into<String>) -> Self {
        Self {
            key,
            jwk_alg,
            source: source.into(),
        }
    }

    /// The key.
    pub fn pkey(&self) -> &PKeyRef<Public> {
        &self.key
    }

    /// The JWK `alg` override, if the key came from a JWK that had one.
    pub fn jwk_alg(&self) -> Option<&str> {
        self.jwk_alg.as_deref()
    }

    /// Where the key came from.
    pub fn source(&self) -> &str {
        &self.source
    }
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublicKey")
            .field("type", &self.key.id())
            .field("jwk_alg", &self.jwk_alg)
            .field("source", &self.source)
            .finish()
    }
}

/// An X.509 certificate (a PKCS#7 recipient, or the certificate beside a private key).
#[derive(Clone)]
pub struct Certificate {
    x509: X509,
    source: String,
}

impl Certificate {
    /// Wraps an OpenSSL certificate.
    pub fn new(x509: X509, source: impl Into<String>) -> Self {
        Self {
            x509,
            source: source.into(),
        }
    }

    /// The certificate.
    pub fn x509(&self) -> &X509 {
        &self.x509
    }

    /// Where it came from.
    pub fn source(&self) -> &str {
        &self.source
    }
}

impl std::fmt::Debug for Certificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificate")
            .field("subject", &self.x509.subject_name())
            .field("source", &self.source)
            .finish()
    }
}
