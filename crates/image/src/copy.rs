//! Copying an image from a source to a destination, layer by layer.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::sync::Arc;

use oci_spec::image::{Descriptor, Platform};

use crate::progress::Progress;

/// One layer as the handler sees it.
#[derive(Debug)]
pub struct LayerContext<'a> {
    /// The source image reference.
    pub image: &'a str,
    /// Digest of the manifest the layer belongs to.
    pub manifest_digest: &'a str,
    /// Platform of that manifest, when it came from an index.
    pub platform: Option<&'a Platform>,
    /// 0-based position of the layer in the manifest.
    pub index: usize,
    /// Number of layers in the manifest.
    pub count: usize,
    /// The layer's descriptor in the source (after Docker→OCI media-type conversion, if any).
    pub descriptor: &'a Descriptor,
}

/// What happens to a layer's descriptor fields when it is rewritten.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerRewrite {
    /// The new media type.
    pub media_type: String,
    /// The complete new annotation map (empty = no `annotations` member).
    pub annotations: BTreeMap<String, String>,
}

/// What to do with a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerAction {
    /// Copy the blob and its descriptor unchanged.
    Copy,
    /// Copy the blob unchanged but rewrite the descriptor's media type and annotations
    /// (re-wrapping keys of an encrypted layer: its data is not touched).
    Rewrite(LayerRewrite),
    /// Stream the blob through [`LayerHandler::transform`] into a new blob.
    Transform,
}

/// Decides per layer what a copy does, and transforms layer data (encryption, decryption).
pub trait LayerHandler: Send + Sync {
    /// What to do with this layer.
    fn plan(
        &self,
        layer: &LayerContext<'_>,
    ) -> Result<LayerAction, Box<dyn std::error::Error + Send + Sync>>;

    /// Streams `input` (the verified source blob) into `output` (the new blob) and returns
    /// the new descriptor fields. An error discards the new blob and fails the copy.
    fn transform(
        &self,
        layer: &LayerContext<'_>,
        input: &mut dyn Read,
        output: &mut dyn Write,
    ) -> Result<LayerRewrite, Box<dyn std::error::Error + Send + Sync>>;
}

/// Which images of an index to copy.
#[derive(Debug, Clone, Default)]
pub enum PlatformSelection {
    /// Every manifest of an index (skopeo's `--all`).
    #[default]
    All,
    /// Only the manifest for this platform (`os/arch[/variant]`); the destination then gets a
    /// single manifest, not an index.
    Only(Platform),
}

/// How to copy.
#[derive(Clone, Default)]
pub struct CopyOptions {
    /// Which platforms of an index.
    pub platforms: PlatformSelection,
    /// Convert Docker schema2 manifests to OCI (required when any layer is encrypted).
    pub convert_to_oci: bool,
    /// Progress hooks.
    pub progress: Option<Arc<dyn Progress>>,
}

/// What a copy did.
#[derive(Debug, Clone, Default)]
pub struct CopyReport {
    /// Digest of the top-level manifest or index written.
    pub top_digest: String,
    /// Layers transformed.
    pub transformed: usize,
    /// Layers whose descriptors were rewritten without touching data.
    pub rewritten: usize,
    /// Layers copied unchanged.
    pub copied: usize,
}
