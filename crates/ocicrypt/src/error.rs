//! The error type of this crate.
//!
//! Crypto failures are deliberately coarse ([`Error::InvalidMac`], [`Error::NoMatchingKey`],
//! [`Error::Truncated`]) and never carry key bytes, MACs, tokens or plaintext.

use std::path::PathBuf;

/// Everything that can go wrong while reading, writing, wrapping or unwrapping ocicrypt data.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing the layer stream failed.
    #[error("I/O error on the layer stream")]
    Io(#[from] std::io::Error),

    /// The HMAC over the ciphertext did not match `pubopts.hmac`: the layer was modified,
    /// truncated or extended, or the annotations belong to another layer.
    #[error("layer integrity check failed (HMAC mismatch): the layer data or its annotations were modified")]
    InvalidMac,

    /// The ciphertext stream ended before the declared size.
    #[error("layer data is truncated: expected {expected} bytes, got {actual}")]
    Truncated {
        /// Declared size.
        expected: u64,
        /// Bytes seen.
        actual: u64,
    },

    /// `pubopts.cipher` names a cipher this implementation does not know.
    #[error("unknown layer cipher {0:?}; only AES_256_CTR_HMAC_SHA256 is defined by ocicrypt")]
    UnknownCipher(String),

    /// The layer has a wrapped key but no `org.opencontainers.image.enc.pubopts` annotation.
    #[error(
        "the layer has no org.opencontainers.image.enc.pubopts annotation; it cannot be decrypted"
    )]
    MissingPubOpts,

    /// An annotation could not be parsed.
    #[error("annotation {key}: {reason}")]
    Annotation {
        /// Annotation key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },

    /// An annotation is larger than we are willing to parse.
    #[error("annotation {key} is {len} bytes, more than the limit of {max} bytes")]
    AnnotationTooLarge {
        /// Annotation key.
        key: String,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },

    /// Public or private block-cipher options are malformed.
    #[error("malformed {which} layer options: {reason}")]
    Options {
        /// "public" or "private".
        which: &'static str,
        /// What is wrong.
        reason: String,
    },

    /// No recipient was given, or no scheme produced a wrapped key.
    #[error("no recipients: give at least one recipient to encrypt for")]
    NoRecipients,

    /// None of the offered keys could unwrap the layer key.
    #[error("none of the given keys can decrypt this layer (wrapped for: {wrapped_for})")]
    NoMatchingKey {
        /// Human summary of the schemes/recipients the layer is wrapped for.
        wrapped_for: String,
    },

    /// Keys were tried and failed, or a provider refused.
    #[error(
        "could not unwrap the layer key (wrapped for: {wrapped_for}): {}",
        join_causes(causes)
    )]
    UnwrapFailed {
        /// Human summary of the recipients the layer is wrapped for.
        wrapped_for: String,
        /// Why each attempt failed (no key material), typed: callers classify them by kind
        /// (e.g. a key broker's refusal) without reading their text.
        causes: Vec<Error>,
    },

    /// A JWE object is malformed or uses an unsupported algorithm.
    #[error("JWE: {0}")]
    Jwe(String),

    /// A PKCS#7 EnvelopedData object is malformed or uses an unsupported algorithm.
    #[error("PKCS#7: {0}")]
    Pkcs7(String),

    /// A key or certificate file could not be used.
    #[error("key file {path}: {reason}")]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// What is wrong (never the key material).
        reason: String,
    },

    /// A recipient could not be used.
    #[error("recipient {recipient}: {reason}")]
    Recipient {
        /// The recipient as the user gave it.
        recipient: String,
        /// What is wrong.
        reason: String,
    },

    /// A key provider failed.
    #[error("key provider {name}: {reason}")]
    KeyProvider {
        /// Provider name.
        name: String,
        /// What went wrong (its stderr, trimmed).
        reason: String,
    },

    /// A key wrapper implemented in this process (a key broker's group wrapper) failed; the
    /// cause keeps its own type.
    #[error("key provider {name}")]
    Wrapper {
        /// Provider name.
        name: String,
        /// What went wrong.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// A media type cannot be encrypted or decrypted.
    #[error("media type {0} cannot be encrypted (only OCI layer types can)")]
    UnsupportedMediaType(String),

    /// An X.509 name could not be read (its DER is not a Name).
    #[error("malformed X.509 name: {0}")]
    X509Name(String),

    /// The cryptographic library failed.
    #[error("cryptographic library error")]
    Crypto(#[source] openssl::error::ErrorStack),
}

impl Error {
    /// The message with its sources, `: `-separated (what `{:#}` shows for an `anyhow` chain).
    pub fn chain_text(&self) -> String {
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(s) = source {
            text.push_str(": ");
            text.push_str(&s.to_string());
            source = s.source();
        }
        text
    }

    /// This error and every error inside it: its sources, and for
    /// [`Error::UnwrapFailed`] each cause and theirs, depth first.
    pub fn visit(&self, f: &mut dyn FnMut(&(dyn std::error::Error + 'static))) {
        f(self);
        if let Error::UnwrapFailed { causes, .. } = self {
            for c in causes {
                c.visit(f);
            }
        }
        let mut source = std::error::Error::source(self);
        while let Some(s) = source {
            f(s);
            source = s.source();
        }
    }
}

fn join_causes(causes: &[Error]) -> String {
    causes
        .iter()
        .map(Error::chain_text)
        .collect::<Vec<_>>()
        .join("; ")
}

impl From<openssl::error::ErrorStack> for Error {
    fn from(e: openssl::error::ErrorStack) -> Self {
        Error::Crypto(e)
    }
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
