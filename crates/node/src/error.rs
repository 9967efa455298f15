//! The error type of this crate.
//!
//! Messages never contain key bytes, passphrases, tokens or plaintext. Each variant renders as
//! the *cause* part of the decoder's one stderr line
//! (`layercrypt-decoder: layer sha256:…: <cause>`), so it says what to do where it can.

use std::path::PathBuf;

/// Everything that can go wrong on the node side.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// fd 3 is closed (or is not a pipe/file): containerd sent no payload.
    #[error(
        "no decryption payload on fd 3: containerd passes it only for the processor IDs \
         io.containerd.ocicrypt.decoder.v1.tar and .tar.gzip with CRI key_model=node; \
         see docs/worker-node.md"
    )]
    NoPayload,

    /// The payload on fd 3 could not be read or parsed.
    #[error("malformed decryption payload on fd 3: {0}")]
    Payload(String),

    /// The media type is not an encrypted layer type this decoder handles.
    #[error("unsupported media type {0:?}: this decoder handles tar, tar+gzip and tar+zstd layers with +encrypted (OCI, also nondistributable)")]
    MediaType(String),

    /// No key on this node opens the layer.
    #[error("no key for this layer on this node ({detail})")]
    NoKey {
        /// Who could decrypt it, from the annotations, and where keys were looked for.
        detail: String,
    },

    /// The layer is for a layercrypt group and needs the broker.
    #[error("{0}")]
    Group(String),

    /// The layer data failed its integrity check.
    #[error("tampered layer: {0}")]
    Tampered(String),

    /// The layer could not be decrypted for another reason.
    #[error(transparent)]
    Ocicrypt(layercrypt_ocicrypt::Error),

    /// zstd decompression failed.
    #[error("zstd decompression of the decrypted layer failed: {0}")]
    Zstd(String),

    /// Reading stdin or writing stdout failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// The node configuration file is unusable.
    #[error("node config {path}: {reason}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// A key-provider request could not be served.
    #[error("{0}")]
    KeyProvider(String),
}

impl From<layercrypt_ocicrypt::Error> for Error {
    fn from(e: layercrypt_ocicrypt::Error) -> Self {
        use layercrypt_ocicrypt::Error as E;
        match e {
            E::InvalidMac => Error::Tampered(e.to_string()),
            E::Truncated { .. } => Error::Tampered(e.to_string()),
            E::NoMatchingKey { wrapped_for } => Error::NoKey {
                detail: format!("it is wrapped for: {wrapped_for}"),
            },
            other => Error::Ocicrypt(other),
        }
    }
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
