//! Image-level operations of layercrypt: encrypt, decrypt, re-wrap and inspect container
//! images layer by layer, over any transport of `layercrypt-image`.
//!
//! The CLI is a thin shell over this crate.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod decrypt;
pub mod encrypt;
pub mod error;
pub mod inspect;
pub mod job;
pub mod keys;
pub mod recipients;
pub mod rewrap;
pub mod selection;

pub use error::{Error, Result};
