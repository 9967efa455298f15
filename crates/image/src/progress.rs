//! Progress reporting hooks (the CLI draws bars with them; libraries never print).

/// Receives progress of blob copies. Implementations must be cheap: `advance` is called per
/// chunk.
pub trait Progress: Send + Sync {
    /// A blob copy starts. `label` is a short description (e.g. "encrypting sha256:abcd…").
    fn start(&self, label: &str, total: u64) -> Box<dyn BlobProgress>;
}

/// Progress of one blob copy.
pub trait BlobProgress: Send {
    /// `n` more bytes were processed.
    fn advance(&self, n: u64);
    /// The copy finished (successfully or not).
    fn finish(&self);
}

/// A [`Progress`] that reports nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

struct NoBlobProgress;

impl BlobProgress for NoBlobProgress {
    fn advance(&self, _n: u64) {}
    fn finish(&self) {}
}

impl Progress for NoProgress {
    fn start(&self, _label: &str, _total: u64) -> Box<dyn BlobProgress> {
        Box::new(NoBlobProgress)
    }
}
