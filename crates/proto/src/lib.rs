//! What every side of layercrypt speaks: the CLI, the key broker and the worker-node parts.
//!
//! This crate sits at the bottom of the workspace and depends on no sibling, so that the
//! broker never depends on the client (and vice versa) to agree on a format:
//!
//! - [`payload`]: group names and the group key-provider payload carried in layers.
//! - [`url`]: broker URLs, checked and normalised the same way on every side.
//! - [`text`]: escaping of untrusted text for human-readable output (terminals, logs).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod payload;
pub mod text;
pub mod url;

pub use payload::{GroupName, GroupPayload, PayloadError};
pub use url::{normalize_broker_url, BrokerUrl, UrlError};
