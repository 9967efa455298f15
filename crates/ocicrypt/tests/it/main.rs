//! Integration tests of the layer API (`layer::{encrypt_layer, decrypt_layer, rewrap_layer}`),
//! through the public API only: every key scheme, mixed recipients, re-wrapping (adding and
//! removing recipients without touching the layer data), and the annotation format.

#![allow(clippy::unwrap_used)]

mod support;

mod layer;
mod rewrap;
