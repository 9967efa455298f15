//! Integration tests of the key broker (one test binary per crate).

#![allow(clippy::print_stderr, clippy::unwrap_used)]

mod auth;
mod embedded;
mod flood;
mod openbao;
mod store_suite;
mod vault;
