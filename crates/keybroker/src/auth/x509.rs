//! PLACEHOLDER (replaced at merge): the certificate verifier is written on the `auth` branch.
//! Only the signatures the broker wiring uses are here; it refuses every chain.

use std::path::Path;

use super::{AuthError, Identity};

/// Verifies client certificate chains (placeholder).
#[derive(Debug)]
pub struct CertVerifier(());

impl CertVerifier {
    /// Loads the trusted CAs from a directory (placeholder: always fails).
    pub fn from_ca_dir(dir: &Path) -> Result<CertVerifier, AuthError> {
        Err(AuthError::Unavailable(format!(
            "certificate verifier not built in this branch (placeholder) for {}",
            dir.display()
        )))
    }

    /// Verifies a DER chain, leaf first (placeholder: always fails).
    pub fn verify_chain(&self, _chain: &[Vec<u8>]) -> Result<Identity, AuthError> {
        Err(AuthError::Invalid(
            "placeholder certificate verifier".into(),
        ))
    }
}
