//! End-to-end tests of the real `layercrypt` binary against Go ocicrypt (Debian's skopeo)
//! and a real registry (Debian's docker-registry). Run by scripts/test.sh.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod bad_input;
mod broker;
mod cli;
mod interop;
mod registry;
