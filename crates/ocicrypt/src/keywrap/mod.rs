//! Key wrappers: one trait, one file per scheme.
//!
//! A key wrapper protects a layer's private options JSON (the layer key, nonce and digest) for
//! the recipients of one scheme, and stores the result in that scheme's annotation.

pub mod jwe;
pub mod keyprovider;
pub mod pkcs7;

use serde::Serialize;

use crate::config::{DecryptConfig, EncryptConfig};
use crate::error::Result;
use crate::secret::SecretBytes;

/// One recipient of a wrapped key, as far as it can be told from the annotation alone
/// (or from keys and certificates the caller supplied to resolve it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "scheme", rename_all = "lowercase")]
#[non_exhaustive]
pub enum RecipientInfo {
    /// A JWE recipient.
    Jwe {
        /// Key-management algorithm, e.g. `RSA-OAEP` or `ECDH-ES+A256KW`.
        alg: String,
        /// Key type the algorithm implies: `RSA`, or `EC P-256` (from the ephemeral key's curve).
        key_type: String,
        /// RFC 7638 JWK thumbprint (SHA-256, base64url) from the recipient's `kid` header,
        /// if the writer set one (layercrypt does; Go ocicrypt does not).
        thumbprint: Option<String>,
    },
    /// A PKCS#7 recipient (an X.509 certificate).
    Pkcs7 {
        /// Issuer DN of the recipient certificate, in OpenSSL's one-line form.
        issuer: String,
        /// Serial number of the recipient certificate, hex.
        serial: String,
    },
    /// A key-provider recipient.
    Provider {
        /// Provider name.
        name: String,
        /// What layercrypt could read of the provider's payload (e.g. the group), if anything.
        detail: Option<String>,
    },
    /// A scheme layercrypt does not implement (pgp, pkcs11): recognised but not parsed.
    Other {
        /// Scheme name.
        name: String,
    },
}

/// A key-wrapping scheme.
pub trait KeyWrapper: Send + Sync {
    /// The annotation this scheme stores its wrapped keys in.
    fn annotation_key(&self) -> &str;

    /// Wraps `opts` (private options JSON) for every recipient of this scheme in `ec`, as one
    /// item. Returns `Ok(None)` if `ec` has no recipient for this scheme.
    fn wrap(&self, ec: &EncryptConfig, opts: &SecretBytes) -> Result<Option<Vec<u8>>>;

    /// True if `dc` holds anything this scheme could try (ocicrypt's `NoPossibleKeys`, inverted).
    fn has_possible_keys(&self, dc: &DecryptConfig) -> bool;

    /// Unwraps one item (already base64-decoded). `None` means "not mine": none of the keys in
    /// `dc` is for this item. `Some(Err)` means the item is malformed or a matching key failed.
    fn unwrap(&self, dc: &DecryptConfig, item: &[u8]) -> Option<Result<SecretBytes>>;

    /// As [`KeyWrapper::unwrap`], told the digest (`sha256:…`) of the layer whose key this is,
    /// for schemes that report it (a key broker's audit log). The default ignores it.
    fn unwrap_for_layer(
        &self,
        dc: &DecryptConfig,
        item: &[u8],
        layer_digest: Option<&str>,
    ) -> Option<Result<SecretBytes>> {
        let _ = layer_digest;
        self.unwrap(dc, item)
    }

    /// The recipients of one item, for `inspect`. Never needs a private key.
    fn recipients(&self, item: &[u8]) -> Result<Vec<RecipientInfo>>;

    /// Removes the recipients for which `remove` is true from one item without touching the
    /// wrapped content (no key needed). Returns `Ok(None)` when no recipient is left.
    /// Schemes that cannot do this return an error saying so.
    fn remove_recipients(
        &self,
        item: &[u8],
        remove: &dyn Fn(&RecipientInfo) -> bool,
    ) -> Result<Option<Vec<u8>>> {
        let _ = (item, remove);
        Err(crate::error::Error::Recipient {
            recipient: self.annotation_key().to_owned(),
            reason: "this scheme cannot remove single recipients; re-wrap with --remove-all".into(),
        })
    }
}
