//! Integration tests of the key broker (one test binary per crate).

mod embedded;
mod openbao;
mod store_suite;
mod vault;
