//! One copy from a source image to a destination image with a layer handler.

use layercrypt_image::copy::{copy_image, CopyOptions, CopyReport, LayerHandler};
use layercrypt_image::transport::TransportOptions;
use layercrypt_image::ImageRef;
use tracing::info;

use crate::error::Result;

/// Source, destination and how to reach them.
#[derive(Clone)]
pub struct Job {
    /// Source image.
    pub src: ImageRef,
    /// Destination image.
    pub dst: ImageRef,
    /// Registry options.
    pub transport: TransportOptions,
    /// Copy options (platforms, progress).
    pub copy: CopyOptions,
}

impl Job {
    /// Copies `src` to `dst` through `handler`. The destination is written completely or not
    /// at all.
    pub fn run(&self, handler: &dyn LayerHandler) -> Result<CopyReport> {
        let mut src = self.src.open_source(&self.transport)?;
        let dst = self.dst.open_dest(&self.transport)?;
        let report = copy_image(src.as_mut(), dst, handler, &self.copy)?;
        info!(top = %report.top_digest, transformed = report.transformed, "image written");
        Ok(report)
    }
}
