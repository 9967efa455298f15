//! Copying an image from a source to a destination, layer by layer.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::sync::Arc;

use oci_spec::image::{Descriptor, Platform};

use crate::error::{Error, Result};
use crate::manifest::{self, DescriptorUpdate, Document, ImageDoc, IndexDoc};
use crate::pipeline;
use crate::progress::{BlobProgress, Progress};
use crate::transport::{BlobInfo, ImageDest, ImageSource, RawManifest};

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

/// Copy buffer size: memory stays constant whatever the blob size.
const BUF_SIZE: usize = 256 * 1024;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Copies the image `src` names into `dst`, asking `handler` what to do with each layer.
///
/// The config blob and every blob are verified while they stream; manifests are re-serialized
/// with [`crate::manifest`] so that untouched bytes stay as they were. On any error `dst` is
/// dropped without commit, which discards what was written.
pub fn copy_image(
    src: &mut dyn ImageSource,
    dst: Box<dyn ImageDest>,
    handler: &dyn LayerHandler,
    opts: &CopyOptions,
) -> Result<CopyReport> {
    let mut dst = dst;
    let mut report = CopyReport::default();
    let image = src.describe();
    let top = src.top_manifest()?;
    let mut cx = Copier {
        src,
        dst: dst.as_mut(),
        handler,
        opts,
        image: &image,
        report: &mut report,
    };
    let new_top = match manifest::parse(&top)? {
        Document::Image(m) => cx.copy_manifest(m, &top.digest, None)?,
        Document::Index(idx) => match &opts.platforms {
            PlatformSelection::All => cx.copy_index(idx, 0)?,
            PlatformSelection::Only(p) => {
                let (desc, platform) = cx.find_platform(&idx, p, 0)?;
                let raw = cx.src.manifest(&desc)?;
                match manifest::parse(&raw)? {
                    Document::Image(m) => cx.copy_manifest(m, &raw.digest, platform.as_ref())?,
                    Document::Index(_) => {
                        return Err(Error::Malformed {
                            what: format!("manifest {}", raw.digest),
                            reason: "platform entry is an index".into(),
                        })
                    }
                }
            }
        },
    };
    report.top_digest = new_top.digest.clone();
    dst.commit(&new_top)?;
    Ok(report)
}

struct Copier<'a> {
    src: &'a mut dyn ImageSource,
    dst: &'a mut dyn ImageDest,
    handler: &'a dyn LayerHandler,
    opts: &'a CopyOptions,
    image: &'a str,
    report: &'a mut CopyReport,
}

/// `os/arch[/variant]` of a platform, for messages.
pub fn platform_string(p: &Platform) -> String {
    let mut s = format!("{}/{}", p.os(), p.architecture());
    if let Some(v) = p.variant() {
        s.push('/');
        s.push_str(v);
    }
    s
}

/// `have` satisfies `want`: same os and architecture, and same variant if `want` names one.
fn platform_matches(want: &Platform, have: &Platform) -> bool {
    want.os() == have.os()
        && want.architecture() == have.architecture()
        && (want.variant().is_none() || want.variant() == have.variant())
}

impl Copier<'_> {
    fn find_platform(
        &mut self,
        idx: &IndexDoc,
        want: &Platform,
        depth: usize,
    ) -> Result<(Descriptor, Option<Platform>)> {
        let mut available = Vec::new();
        for d in idx.manifests() {
            if let Some(p) = d.platform() {
                if platform_matches(want, p) && !is_index_type(d) {
                    return Ok((d.clone(), Some(p.clone())));
                }
                available.push(platform_string(p));
            } else if is_index_type(d) && depth == 0 {
                let raw = self.src.manifest(d)?;
                if let Document::Index(child) = manifest::parse(&raw)? {
                    if let Ok(found) = self.find_platform(&child, want, depth + 1) {
                        return Ok(found);
                    }
                }
            }
        }
        Err(Error::NotFound(format!(
            "{}: no image for platform {}; available: {}",
            self.image,
            platform_string(want),
            if available.is_empty() {
                "none".to_owned()
            } else {
                available.join(", ")
            }
        )))
    }

    fn copy_index(&mut self, mut idx: IndexDoc, depth: usize) -> Result<RawManifest> {
        if self.opts.convert_to_oci {
            idx.convert_to_oci()?;
        }
        for i in 0..idx.manifests().len() {
            let desc = idx.manifests()[i].clone();
            let raw = self.src.manifest(&desc)?;
            let new = match manifest::parse(&raw)? {
                Document::Image(m) => {
                    self.copy_manifest(m, &raw.digest, desc.platform().as_ref())?
                }
                Document::Index(child) if depth == 0 => self.copy_index(child, depth + 1)?,
                Document::Index(_) => {
                    return Err(Error::Malformed {
                        what: format!("index {}", raw.digest),
                        reason: "indexes nested more than one level deep".into(),
                    })
                }
            };
            self.dst.put_manifest(&new)?;
            idx.set_manifest(i, &new.media_type, &new.digest, new.bytes.len() as u64)?;
        }
        Ok(idx.to_raw())
    }

    fn copy_manifest(
        &mut self,
        mut m: ImageDoc,
        digest: &str,
        platform: Option<&Platform>,
    ) -> Result<RawManifest> {
        if self.opts.convert_to_oci {
            m.convert_to_oci()?;
        }
        let config = m.config().clone();
        self.copy_blob(&config, "config")?;
        let count = m.layers().len();
        for index in 0..count {
            let desc = m.layers()[index].clone();
            let layer_digest = desc.digest().to_string();
            let image = self.image;
            let layer_err = |source: BoxError| Error::Layer {
                image: image.to_owned(),
                digest: layer_digest.clone(),
                index: index + 1,
                count,
                source,
            };
            let ctx = LayerContext {
                image: self.image,
                manifest_digest: digest,
                platform,
                index,
                count,
                descriptor: &desc,
            };
            let action = self.handler.plan(&ctx).map_err(layer_err)?;
            match action {
                LayerAction::Copy => {
                    self.copy_blob(&desc, "copying")?;
                    self.report.copied += 1;
                }
                LayerAction::Rewrite(rw) => {
                    self.copy_blob(&desc, "copying")?;
                    m.set_layer(
                        index,
                        &DescriptorUpdate {
                            media_type: &rw.media_type,
                            digest: &layer_digest,
                            size: desc.size(),
                            annotations: Some(&rw.annotations),
                        },
                    )?;
                    self.report.rewritten += 1;
                }
                LayerAction::Transform => {
                    let (rw, info) = self.transform(&ctx).map_err(|e| match e {
                        TransformError::Handler(source) => layer_err(source),
                        TransformError::Copy(e) => e,
                    })?;
                    m.set_layer(
                        index,
                        &DescriptorUpdate {
                            media_type: &rw.media_type,
                            digest: &info.digest,
                            size: info.size,
                            annotations: Some(&rw.annotations),
                        },
                    )?;
                    self.report.transformed += 1;
                }
            }
        }
        Ok(m.to_raw())
    }

    fn progress(&self, label: String, total: u64) -> Option<Box<dyn BlobProgress>> {
        self.opts.progress.as_ref().map(|p| p.start(&label, total))
    }

    /// Streams a blob unchanged (verified), unless the destination already has it.
    fn copy_blob(&mut self, desc: &Descriptor, verb: &str) -> Result<()> {
        let digest = desc.digest().to_string();
        let info = BlobInfo {
            digest: digest.clone(),
            size: desc.size(),
        };
        if self.dst.has_blob(&info)? {
            return Ok(());
        }
        let progress = self.progress(format!("{verb} {}", short(&digest)), desc.size());
        let result = (|| {
            let mut writer = self.dst.blob_writer()?;
            // Reading and verifying on one core, writing and hashing on the other.
            let reader = self.src.blob(desc)?;
            pipeline::read_ahead(reader, |reader| -> Result<()> {
                let mut buf = vec![0u8; BUF_SIZE];
                loop {
                    let n = match reader.read(&mut buf) {
                        Ok(0) => return Ok(()),
                        Ok(n) => n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(stream_error(&digest, e)),
                    };
                    writer.write_all(&buf[..n])?;
                    if let Some(p) = &progress {
                        p.advance(n as u64);
                    }
                }
            })?;
            let written = writer.finish()?;
            if written != info {
                return Err(Error::BlobMismatch {
                    digest: digest.clone(),
                    reason: format!("written as {} ({} bytes)", written.digest, written.size),
                });
            }
            Ok(())
        })();
        if let Some(p) = progress {
            p.finish();
        }
        result
    }

    fn transform(
        &mut self,
        ctx: &LayerContext<'_>,
    ) -> Result<(LayerRewrite, BlobInfo), TransformError> {
        let desc = ctx.descriptor;
        let digest = desc.digest().to_string();
        let progress = self.progress(format!("processing {}", short(&digest)), desc.size());
        let handler = self.handler;
        let result = (|| {
            let reader = self.src.blob(desc).map_err(TransformError::Copy)?;
            let writer = self.dst.blob_writer().map_err(TransformError::Copy)?;
            // Source reading and verification, the transform, and output hashing and writing
            // run as three stages on two cores (see `pipeline`).
            let staged = pipeline::read_ahead(reader, |input| {
                pipeline::write_behind(writer, |out| {
                    let mut reader = ProgressReader {
                        inner: input,
                        progress: progress.as_deref(),
                    };
                    let rw = handler
                        .transform(ctx, &mut reader, out)
                        .map_err(TransformError::Handler)?;
                    // The source is verified only at its end: make sure the handler consumed
                    // all of it.
                    let mut rest = [0u8; 1];
                    match reader.read(&mut rest) {
                        Ok(0) => Ok(rw),
                        Ok(_) => Err(TransformError::Handler(
                            "the layer handler stopped before the end of the layer".into(),
                        )),
                        Err(e) => Err(TransformError::Handler(Box::new(e))),
                    }
                })
            });
            let (rw, writer) = staged.map_err(|e| match e {
                pipeline::WriteBehindError::Inner(e) => e,
                pipeline::WriteBehindError::Io(e) => TransformError::Copy(Error::Stream(e)),
            })?;
            let info = writer.finish().map_err(TransformError::Copy)?;
            Ok((rw, info))
        })();
        if let Some(p) = progress {
            p.finish();
        }
        result
    }
}

enum TransformError {
    Handler(BoxError),
    Copy(Error),
}

fn is_index_type(d: &Descriptor) -> bool {
    let mt = d.media_type().to_string();
    mt == manifest::OCI_INDEX || mt == manifest::DOCKER_LIST
}

/// A verification failure of the source stream becomes [`Error::BlobMismatch`].
fn stream_error(digest: &str, e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::InvalidData {
        Error::BlobMismatch {
            digest: digest.to_owned(),
            reason: e.to_string(),
        }
    } else {
        Error::Stream(e)
    }
}

fn short(digest: &str) -> &str {
    digest.get(..19).unwrap_or(digest)
}

struct ProgressReader<'p, R> {
    inner: R,
    progress: Option<&'p dyn BlobProgress>,
}

impl<R: Read> Read for ProgressReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(p) = self.progress {
            p.advance(n as u64);
        }
        Ok(n)
    }
}
