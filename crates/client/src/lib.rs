//! Image-level encryption operations.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
