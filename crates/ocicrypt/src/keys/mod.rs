//! Key and certificate material: types and file parsing.
//!
//! Accepted private-key forms: PKCS#8, PKCS#1 and SEC1 in PEM or DER, legacy-encrypted PEM and
//! encrypted PKCS#8 (passphrase), PKCS#12 bundles, JWK (private), X.509 certificates (PEM or
//! DER, needed beside the key for PKCS#7). Public keys: SPKI PEM/DER, JWK, or a certificate.
//!
//! Go ocicrypt ignores PEM `EC PRIVATE KEY` (SEC1) files; we accept them, because that is what
//! `openssl ecparam -genkey` writes and users have no reason to expect otherwise.
//!
//! - [`parse_key_material`] / [`load_key_file`]: everything a file holds, in file order.
//! - [`load_public_key`]: exactly one JWE recipient key.
//! - [`load_certificates`]: the certificates of a PEM bundle or a DER file.
//! - [`jwk_thumbprint`], [`public_jwk`]: JWK forms of RSA and EC public keys.
//! - [`generate_keypair`]: new key pairs for `keygen`.

mod cert;
mod generate;
pub mod grid;
mod jwk;
mod parse;
mod pem;

use std::io::Read;
use std::path::{Path, PathBuf};

use openssl::pkey::{Id, PKey, PKeyRef, Private, Public};
use openssl::x509::X509;
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::secret::SecretBytes;

pub use cert::CertificateSummary;
pub use generate::{generate_keypair, KeyKind, ParseKeyKindError};
pub use jwk::{jwk_thumbprint, public_jwk};

/// The largest key or certificate file we read. Real ones are a few kilobytes; a PKCS#12 with
/// a long chain stays far below this.
pub const MAX_KEY_FILE_SIZE: u64 = 1024 * 1024;

/// The JWK `alg` values a recipient key may carry (the allow-list of Go ocicrypt ≥ 1.1.10).
pub const JWK_RECIPIENT_ALGS: &[&str] = &[
    "RSA-OAEP",
    "RSA-OAEP-256",
    "ECDH-ES+A128KW",
    "ECDH-ES+A192KW",
    "ECDH-ES+A256KW",
];

/// A private key. Its material lives inside OpenSSL, which clears private key components
/// when the key is freed; it has no `Debug` that shows key material.
pub struct PrivateKey {
    key: PKey<Private>,
    /// The `alg` member of the JWK the key came from, carried over to its public half.
    jwk_alg: Option<String>,
    source: String,
}

impl PrivateKey {
    /// Wraps an OpenSSL key; `source` names where it came from (a file name) for messages.
    pub fn new(key: PKey<Private>, source: impl Into<String>) -> Self {
        Self {
            key,
            jwk_alg: None,
            source: source.into(),
        }
    }

    /// Sets the JWK `alg` member (for keys read from a JWK).
    pub fn with_jwk_alg(mut self, alg: Option<String>) -> Self {
        self.jwk_alg = alg;
        self
    }

    /// The key, for cryptographic operations.
    pub fn expose_secret(&self) -> &PKeyRef<Private> {
        &self.key
    }

    /// Where the key came from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The JWK `alg` member, if the key came from a JWK that had one.
    pub fn jwk_alg(&self) -> Option<&str> {
        self.jwk_alg.as_deref()
    }

    /// The public half, keeping the JWK `alg` and the source.
    pub fn public_key(&self) -> Result<PublicKey> {
        let der = self.key.public_key_to_der()?;
        let key = PKey::public_key_from_der(&der)?;
        Ok(PublicKey::new(
            key,
            self.jwk_alg.clone(),
            self.source.clone(),
        ))
    }

    /// True if `cert` certifies this key's public half.
    pub fn matches_certificate(&self, cert: &Certificate) -> bool {
        match cert.x509().public_key() {
            Ok(public) => self.key.public_eq(&public),
            Err(_) => false,
        }
    }
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivateKey")
            .field("type", &self.key.id())
            .field("jwk_alg", &self.jwk_alg)
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

    /// The public key of a certificate (no JWK `alg`).
    pub fn from_certificate(cert: &Certificate) -> Result<PublicKey> {
        Ok(PublicKey::new(
            cert.x509().public_key()?,
            None,
            cert.source(),
        ))
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
            .field("subject", &grid::grid_dn_display(self.x509.subject_name()))
            .field("source", &self.source)
            .finish()
    }
}

/// One item found in a key or certificate file.
#[derive(Debug)]
pub enum KeyMaterial {
    /// A private key (its public half is implied).
    Private(PrivateKey),
    /// A bare public key (SPKI, PKCS#1 public key or public JWK).
    Public(PublicKey),
    /// An X.509 certificate.
    Certificate(Certificate),
}

/// Parses everything in a key or certificate file, in file order.
///
/// Recognised: PEM with one or several blocks (`PRIVATE KEY`, `RSA PRIVATE KEY`,
/// `EC PRIVATE KEY`, `ENCRYPTED PRIVATE KEY`, legacy `Proc-Type: 4,ENCRYPTED` PEM,
/// `PUBLIC KEY`, `RSA PUBLIC KEY`, `CERTIFICATE`; `EC PARAMETERS` is skipped), DER (PKCS#8,
/// encrypted PKCS#8, PKCS#1, SEC1, SPKI, certificate), PKCS#12 (key, certificate, chain; the
/// passphrase is tried, then the empty one) and JWK JSON (RSA or EC, a single key or a set).
///
/// Encrypted content without a passphrase fails with a message saying so; [`needs_passphrase`]
/// tells a caller beforehand whether to ask for one. `source` names the file in errors. Error
/// messages never contain key bytes or the passphrase.
pub fn parse_key_material(
    bytes: &[u8],
    passphrase: Option<&SecretBytes>,
    source: &str,
) -> Result<Vec<KeyMaterial>> {
    parse::parse(bytes, passphrase, source)
}

/// True if the content is encrypted and cannot be read without a passphrase: encrypted PEM
/// blocks, encrypted PKCS#8 DER, or a PKCS#12 file that does not open with the empty
/// passphrase. Lets a CLI prompt and retry; false for unreadable content.
pub fn needs_passphrase(bytes: &[u8]) -> bool {
    parse::needs_passphrase(bytes)
}

/// Reads a key or certificate file and parses it with [`parse_key_material`].
///
/// Refuses files that are not regular files or are larger than [`MAX_KEY_FILE_SIZE`].
pub fn load_key_file(path: &Path, passphrase: Option<&SecretBytes>) -> Result<Vec<KeyMaterial>> {
    let bytes = read_bounded(path)?;
    parse_key_material(&bytes, passphrase, &path.display().to_string())
}

/// Loads one JWE recipient key: SPKI PEM/DER, a public JWK (or the public half of a private
/// one), or the public key of a certificate. The file must hold exactly one public key (a
/// private key together with its own certificate counts as one). Only RSA and EC keys can be
/// JWE recipients, and a JWK `alg` must be one ocicrypt allows for that key type.
pub fn load_public_key(path: &Path) -> Result<PublicKey> {
    let recipient_err = |reason: String| Error::Recipient {
        recipient: path.display().to_string(),
        reason,
    };
    let mut keys: Vec<PublicKey> = Vec::new();
    for item in load_key_file(path, None)? {
        let key = match item {
            KeyMaterial::Public(key) => key,
            KeyMaterial::Private(key) => key.public_key()?,
            KeyMaterial::Certificate(cert) => PublicKey::from_certificate(&cert)?,
        };
        if !keys.iter().any(|k| k.pkey().public_eq(key.pkey())) {
            keys.push(key);
        }
    }
    let key = match keys.len() {
        0 => return Err(recipient_err("the file holds no public key".into())),
        1 => keys.remove(0),
        n => {
            return Err(recipient_err(format!(
            "the file holds {n} different public keys; a JWE recipient file must hold exactly one"
        )))
        }
    };
    let is_rsa = match key.pkey().id() {
        Id::RSA => true,
        Id::EC => false,
        other => {
            return Err(recipient_err(format!(
                "{} keys cannot be JWE recipients; use an RSA or EC (P-256, P-384, P-521) key",
                cert::key_type_name(other)
            )))
        }
    };
    if let Some(alg) = key.jwk_alg() {
        if !JWK_RECIPIENT_ALGS.contains(&alg) {
            return Err(recipient_err(format!(
                "JWK alg {alg:?} is not allowed; use one of {}",
                JWK_RECIPIENT_ALGS.join(", ")
            )));
        }
        if alg.starts_with("RSA") != is_rsa {
            return Err(recipient_err(format!(
                "JWK alg {alg:?} does not fit a {} key",
                if is_rsa { "RSA" } else { "EC" }
            )));
        }
    }
    Ok(key)
}

/// Loads the certificates of a PEM bundle (other PEM blocks, such as a private key beside
/// the certificate, are skipped) or a DER certificate. At least one is required.
pub fn load_certificates(path: &Path) -> Result<Vec<Certificate>> {
    let bytes = read_bounded(path)?;
    parse::certificates(&bytes, &path.display().to_string())
}

/// The error for a key file.
pub(crate) fn key_file_error(source: &str, reason: impl Into<String>) -> Error {
    Error::KeyFile {
        path: PathBuf::from(source),
        reason: reason.into(),
    }
}

/// Reads a whole file of at most [`MAX_KEY_FILE_SIZE`] bytes into zeroizing memory.
fn read_bounded(path: &Path) -> Result<Zeroizing<Vec<u8>>> {
    let source = path.display().to_string();
    let too_large = || {
        key_file_error(
            &source,
            format!("the file is larger than {MAX_KEY_FILE_SIZE} bytes; key and certificate files are small, refusing it"),
        )
    };
    let meta = std::fs::metadata(path)
        .map_err(|e| key_file_error(&source, format!("cannot read it: {e}")))?;
    if !meta.is_file() {
        return Err(key_file_error(&source, "not a regular file"));
    }
    if meta.len() > MAX_KEY_FILE_SIZE {
        return Err(too_large());
    }
    let file = std::fs::File::open(path)
        .map_err(|e| key_file_error(&source, format!("cannot open it: {e}")))?;
    // Capacity up front so the buffer is not reallocated, which would leave unzeroized copies.
    let capacity = usize::try_from(meta.len()).unwrap_or(0).saturating_add(1);
    let mut bytes = Zeroizing::new(Vec::with_capacity(capacity));
    file.take(MAX_KEY_FILE_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| key_file_error(&source, format!("cannot read it: {e}")))?;
    if bytes.len() as u64 > MAX_KEY_FILE_SIZE {
        return Err(too_large());
    }
    Ok(bytes)
}

#[cfg(test)]
pub(crate) mod tests;
