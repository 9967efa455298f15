//! OCI images: transports and copying.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
