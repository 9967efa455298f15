//! The client CA directory, reloaded while the broker runs.
//!
//! fetch-crl rewrites the `<hash>.r0` CRLs every few hours, and the IGTF packages replace CAs
//! and their namespace files. A [`CertVerifier`] loaded once at start would keep the old
//! CRLs, and once their `nextUpdate` passes it refuses every certificate of those CAs (fail
//! closed, [`super::x509`]): certificate authentication would stop a few days after a start.
//! So the directory is loaded again periodically; a load that fails (a half-written file, a
//! directory briefly empty during a package upgrade) keeps the previous verifier and is
//! logged, and the next period tries again.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use super::namespaces::NamespaceMode;
use super::x509::CertVerifier;
use super::{AuthError, Identity};

/// Default period between reloads (`tls.ca_reload_secs`).
pub const DEFAULT_RELOAD: Duration = Duration::from_secs(600);

/// A [`CertVerifier`] over a directory, swapped for a fresh one by [`CaDirectory::reload`].
pub struct CaDirectory {
    dir: PathBuf,
    mode: NamespaceMode,
    current: RwLock<Arc<CertVerifier>>,
}

impl std::fmt::Debug for CaDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaDirectory")
            .field("dir", &self.dir)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl CaDirectory {
    /// Loads `dir` (an error here is a configuration error: the broker does not start).
    pub fn load(dir: &Path, mode: NamespaceMode) -> Result<CaDirectory, AuthError> {
        let verifier = CertVerifier::from_ca_dir_with(dir, mode)?;
        Ok(CaDirectory {
            dir: dir.to_owned(),
            mode,
            current: RwLock::new(Arc::new(verifier)),
        })
    }

    /// Verifies a client chain with the verifier loaded last.
    pub fn verify_chain(&self, chain_der: &[Vec<u8>]) -> Result<Identity, AuthError> {
        let verifier = self
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        verifier.verify_chain(chain_der)
    }

    /// Loads the directory again; on success the new verifier is used from the next request
    /// on, on failure the previous one stays.
    pub fn reload(&self) -> Result<(), AuthError> {
        let fresh = CertVerifier::from_ca_dir_with(&self.dir, self.mode)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(fresh);
        Ok(())
    }

    /// Reloads every `period` on the blocking pool until the runtime ends.
    pub fn spawn_reloader(self: &Arc<Self>, period: Duration) -> tokio::task::JoinHandle<()> {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await; // the first tick is immediate: loaded already
            loop {
                ticks.tick().await;
                let dir = Arc::clone(&this);
                match tokio::task::spawn_blocking(move || dir.reload()).await {
                    Ok(Ok(())) => {
                        tracing::debug!(dir = %this.dir.display(), "CA directory reloaded")
                    }
                    Ok(Err(e)) => tracing::warn!(dir = %this.dir.display(), error = %e,
                        "CA directory reload failed; keeping the previous CAs and CRLs"),
                    Err(e) => tracing::warn!(error = %e, "CA directory reload task failed"),
                }
            }
        })
    }
}
