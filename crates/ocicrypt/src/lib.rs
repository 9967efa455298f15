//! The containers/ocicrypt layer-encryption format.
//!
//! - [`blockcipher`]: `AES_256_CTR_HMAC_SHA256` as a streaming encryptor over `Write` and a
//!   decryptor over `Read`, in constant memory.
//! - [`options`]: the private and public options JSON, exactly as Go writes and reads them.
//! - [`annotations`]: the `org.opencontainers.image.enc.*` annotations, parsed at the boundary.
//! - [`keywrap`]: key wrappers (JWE, PKCS#7, key-provider protocol).
//! - [`layer`]: encrypting, decrypting and re-wrapping one layer.
//! - [`keys`]: key, certificate and key-file handling.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod annotations;
pub mod blockcipher;
pub mod config;
pub mod error;
pub mod keys;
pub mod keywrap;
pub mod layer;
pub mod options;
pub mod secret;
pub mod secretfile;
pub mod spec;

pub use config::{DecryptConfig, EncryptConfig, ProviderRecipient};
pub use error::{Error, Result};
pub use secret::SecretBytes;
