//! The error type of this crate.

use std::path::PathBuf;

/// Errors of image-level operations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The ocicrypt format layer failed.
    #[error(transparent)]
    Ocicrypt(#[from] layercrypt_ocicrypt::Error),

    /// Reading or writing the image failed.
    #[error(transparent)]
    Image(#[from] layercrypt_image::Error),

    /// A recipient given by the user is unusable.
    #[error("recipient {spec:?}: {reason}")]
    Recipient {
        /// As given.
        spec: String,
        /// What is wrong and what to do.
        reason: String,
    },

    /// A key given by the user is unusable.
    #[error("key {path}: {reason}")]
    Key {
        /// The file.
        path: PathBuf,
        /// What is wrong and what to do.
        reason: String,
    },

    /// A key file could not be read (missing, unreadable); the I/O error keeps its kind.
    #[error("key {path}: cannot read it")]
    KeyRead {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },

    /// A `--layer` selection does not fit the image.
    #[error("layer selection: {0}")]
    Selection(String),

    /// Nothing would change (e.g. no layer is encrypted, or every selected layer already is).
    #[error("{0}")]
    NothingToDo(String),
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
