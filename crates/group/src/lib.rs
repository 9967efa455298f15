//! Group recipients of layercrypt: images encrypted for `group:NAME` carry the layer's private
//! options encrypted to the group's age X25519 recipient, in the key-provider annotation
//! `org.opencontainers.image.enc.keys.provider.layercrypt`; only the broker holds the group's
//! identity and releases the options to members.
//!
//! - [`payload`]: the payload format, from `layercrypt-proto` (shared by the CLI, the broker and
//!   the key provider).
//! - [`wrap`]: [`wrap::GroupKeyWrapper`], the ocicrypt key wrapper for group recipients.
//! - [`client`]: the blocking HTTP client of the broker API (public and admin routes).
//! - [`token`]: access tokens and where they come from; [`login`]: the device flow.
//! - [`config`]: the user's `config.toml`.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod client;
pub mod config;
pub mod error;
pub mod login;
pub mod token;
pub mod wrap;

pub use error::{Error, Result};
pub use layercrypt_proto::payload;
