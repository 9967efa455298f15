//! Integration tests of layercrypt-image through its public API.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod copy;
mod interop;
mod registry;
mod support;
