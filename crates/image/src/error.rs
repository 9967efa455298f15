//! The error type of this crate.

use std::path::PathBuf;

/// Everything that can go wrong while reading, writing or copying an image.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An image reference could not be parsed.
    #[error("invalid image reference {reference:?}: {reason}")]
    Reference {
        /// The reference as given.
        reference: String,
        /// What is wrong and what the syntax is.
        reason: String,
    },

    /// A file or directory could not be read or written.
    #[error("{action} {path}")]
    Io {
        /// What was being done ("reading", "writing", "renaming to").
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },

    /// A blob's content did not match its descriptor.
    #[error("blob {digest} does not match its descriptor: {reason}")]
    BlobMismatch {
        /// The expected digest.
        digest: String,
        /// Size or digest mismatch details.
        reason: String,
    },

    /// A manifest, index or layout file is malformed.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// What (e.g. "index.json of oci:DIR", "manifest sha256:…").
        what: String,
        /// What is wrong.
        reason: String,
    },

    /// The image (or tag, or platform) does not exist.
    #[error("not found: {0}")]
    NotFound(String),

    /// The registry failed or refused.
    #[error("registry {registry}: {reason}")]
    Registry {
        /// Registry host.
        registry: String,
        /// What happened.
        reason: String,
    },

    /// Something is not supported (e.g. a manifest type).
    #[error("unsupported: {0}")]
    Unsupported(String),

    /// A layer handler (encryption, decryption) failed on one layer.
    #[error("layer {digest} ({index} of {count}) of {image}")]
    Layer {
        /// Image reference.
        image: String,
        /// Layer digest as in the source manifest.
        digest: String,
        /// 1-based layer position.
        index: usize,
        /// Number of layers in the manifest.
        count: usize,
        /// The handler's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// A stream failed while copying (wraps I/O errors of blob streams).
    #[error("stream error")]
    Stream(#[from] std::io::Error),
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
