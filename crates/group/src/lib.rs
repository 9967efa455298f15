//! Group recipients of layercrypt: images encrypted for `group:NAME` carry the layer's private
//! options encrypted to the group's age X25519 recipient, in the key-provider annotation
//! `org.opencontainers.image.enc.keys.provider.layercrypt`; only the broker holds the group's
//! identity and releases the options to members.
//!
//! - [`payload`]: the payload format (shared by the CLI, the broker and the key provider).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod payload;
