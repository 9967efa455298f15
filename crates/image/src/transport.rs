//! Where images are read from and written to.
//!
//! All transports are blocking; the registry transport runs its own async runtime inside.
//! Every blob a source hands out is verified by digest and size as it streams: the reader
//! returns an error instead of its final EOF when the bytes do not match the descriptor.

use std::io::{Read, Write};

use oci_spec::image::Descriptor;

use crate::error::Result;

/// A manifest or index as stored: its exact bytes, media type and digest.
#[derive(Debug, Clone)]
pub struct RawManifest {
    /// The exact bytes (digests are over these).
    pub bytes: Vec<u8>,
    /// The media type (from the descriptor, header or the document's `mediaType`).
    pub media_type: String,
    /// `sha256:<hex>` of `bytes`.
    pub digest: String,
}

/// Digest and size of a blob that was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    /// `sha256:<hex>`.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
}

/// Reads an image.
pub trait ImageSource: Send {
    /// The image reference, for messages.
    fn describe(&self) -> String;

    /// The top-level manifest or index the reference names.
    fn top_manifest(&mut self) -> Result<RawManifest>;

    /// A manifest or index referenced by `desc` (from an index), verified against `desc`.
    fn manifest(&mut self, desc: &Descriptor) -> Result<RawManifest>;

    /// A blob referenced by `desc`, streamed and verified against `desc`'s digest and size.
    fn blob(&mut self, desc: &Descriptor) -> Result<Box<dyn Read + Send + '_>>;
}

/// A blob being written. Dropping it without [`BlobWriter::finish`] discards it.
pub trait BlobWriter: Write + Send {
    /// Completes the blob: it becomes visible to the destination under its digest.
    fn finish(self: Box<Self>) -> Result<BlobInfo>;
}

/// Writes an image. Nothing is visible at the destination's reference until
/// [`ImageDest::commit`]; dropping the destination without committing removes what was
/// written (or leaves only unreferenced, verified blobs where a registry cannot delete).
pub trait ImageDest: Send {
    /// The image reference, for messages.
    fn describe(&self) -> String;

    /// True if the destination already has this blob (so copying it can be skipped).
    fn has_blob(&mut self, info: &BlobInfo) -> Result<bool>;

    /// Starts writing a blob whose digest is computed while it is written.
    fn blob_writer(&mut self) -> Result<Box<dyn BlobWriter + '_>>;

    /// Stores a manifest or index that is referenced by digest only (an index's children).
    fn put_manifest(&mut self, manifest: &RawManifest) -> Result<()>;

    /// Stores the top-level manifest or index under the destination's reference (tag) and
    /// makes the whole image visible.
    fn commit(self: Box<Self>, top: &RawManifest) -> Result<()>;
}

/// How a transport reaches its images: TLS policy and registry credentials.
/// Only the registry transport reads these today.
#[derive(Clone, Default)]
pub struct TransportOptions {
    /// Allow plain HTTP to every registry (without it, only `localhost`, `127.0.0.1` and
    /// `[::1]` are reached over plain HTTP).
    pub insecure: bool,
    /// `user:pass` for the registry; wins over any auth file.
    pub creds: Option<String>,
    /// An auth file (`auth.json` / `config.json` format) to read instead of the defaults.
    pub auth_file: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for TransportOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransportOptions")
            .field("insecure", &self.insecure)
            .field("creds", &self.creds.as_ref().map(|_| "<redacted>"))
            .field("auth_file", &self.auth_file)
            .finish()
    }
}
