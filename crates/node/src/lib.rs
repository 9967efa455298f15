//! The worker-node side of layercrypt.
//!
//! - [`payload`]: the decryption payload containerd passes a stream processor on fd 3.
//! - [`config`]: the node configuration file (`/etc/layercrypt/node.toml`): trusted brokers,
//!   the node's credential, timeouts, the in-memory key cache.
//! - [`keydir`]: the node's key directory (`--decryption-keys-path`), read like imgcrypt's
//!   `ctd-decoder` does.
//! - [`decode`]: the decode pipeline of the `layercrypt-decoder` stream processor.
//! - [`keyprovider`]: the ocicrypt key-provider protocol, server side (`layercrypt-keyprovider`).
//! - [`broker`]: the group wrapper with the node's credential and allowed brokers, and the
//!   one-line causes of group failures.
//! - [`cache`]: a bounded in-memory TTL cache for unwrapped layer keys.
//!
//! The binaries live in `containerd-plugin/`; see `docs/worker-node.md`.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod broker;
pub mod cache;
pub mod config;
pub mod decode;
pub mod error;
pub mod keydir;
pub mod keyprovider;
pub mod payload;
pub mod pipes;

pub use error::{Error, Result};
