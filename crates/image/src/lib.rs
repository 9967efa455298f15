//! OCI images: where they live (transports) and how they are copied layer by layer.
//!
//! - [`reference`]: skopeo's transport syntax (`oci:DIR[:TAG]`, `oci-archive:FILE[:TAG]`,
//!   `docker://HOST/REPO[:TAG|@DIGEST]`).
//! - [`transport`]: the [`ImageSource`] and [`ImageDest`] traits, one file per implementation
//!   ([`layout`], [`archive`], [`registry`]).
//! - [`manifest`]: manifests and indexes, edited without disturbing their bytes more than needed.
//! - [`copy`]: copying an image, every blob verified by digest and size while it streams, with a
//!   per-layer [`copy::LayerHandler`] deciding what happens to each layer.
//! - [`digest`]: digest-verifying readers and hashing writers.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod archive;
pub mod auth;
pub mod copy;
pub mod digest;
pub mod error;
pub mod layout;
pub mod manifest;
pub mod pipeline;
pub mod progress;
pub mod reference;
pub mod registry;
pub mod transport;

pub use error::{Error, Result};
pub use reference::ImageRef;
pub use transport::{BlobInfo, BlobWriter, ImageDest, ImageSource, RawManifest, TransportOptions};
