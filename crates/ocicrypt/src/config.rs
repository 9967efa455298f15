//! What to encrypt for and what to decrypt with.

use std::collections::BTreeMap;

use crate::keys::{Certificate, PrivateKey, PublicKey};

/// A key-provider recipient: provider `name` with an optional parameter
/// (`provider:<name>[:<param>]` in ocicrypt's CLI syntax).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderRecipient {
    /// Provider name (the annotation suffix).
    pub name: String,
    /// Parameter passed to the provider; ocicrypt sends `Enabled` when there is none.
    pub param: Option<Vec<u8>>,
}

/// Recipients of an encryption, per scheme.
#[derive(Debug, Default)]
pub struct EncryptConfig {
    /// JWE recipients (RSA or EC public keys).
    pub jwe: Vec<PublicKey>,
    /// PKCS#7 recipients (X.509 certificates with RSA keys).
    pub pkcs7: Vec<Certificate>,
    /// Key-provider recipients.
    pub providers: Vec<ProviderRecipient>,
}

impl EncryptConfig {
    /// True if there is no recipient at all.
    pub fn is_empty(&self) -> bool {
        self.jwe.is_empty() && self.pkcs7.is_empty() && self.providers.is_empty()
    }
}

/// Keys offered for decryption.
#[derive(Debug, Default)]
pub struct DecryptConfig {
    /// Private keys (tried for JWE and PKCS#7, as ocicrypt's shared `privkeys` list).
    pub private_keys: Vec<PrivateKey>,
    /// Certificates (PKCS#7 needs the recipient certificate beside its private key).
    pub certificates: Vec<Certificate>,
    /// Parameters for key providers, by provider name (ocicrypt's `provider:<name>[:<param>]`).
    pub provider_params: BTreeMap<String, Vec<Vec<u8>>>,
}
