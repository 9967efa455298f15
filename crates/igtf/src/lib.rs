//! The IGTF CA distribution's policy files, which say which subject DNs each CA of a grid CA
//! directory (`/etc/grid-security/certificates`) may sign: [`namespaces`].
//!
//! A crate of its own so that the parsers, which read files an attacker may have planted,
//! can be fuzzed without the key broker around them (`fuzz/fuzz_targets/igtf_policy.rs`).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod namespaces;
