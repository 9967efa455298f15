//! `oci:DIR[:TAG]`: OCI image layout directories (`oci-layout`, `index.json`,
//! `blobs/sha256/<hex>`), written the way skopeo / containers/image writes them so that skopeo
//! reads what we write and we read what it writes.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, ImageIndex};
use serde_json::{Map, Value};
use tempfile::{NamedTempFile, TempDir};

use crate::digest::{sha256_digest, validate_digest, HashingWriter, VerifyingReader};
use crate::error::{Error, Result};
use crate::manifest::{go_json, MAX_MANIFEST_BYTES};
use crate::transport::{BlobInfo, BlobWriter, ImageDest, ImageSource, RawManifest};

/// The `oci-layout` file's content, byte for byte as containers/image writes it.
pub const OCI_LAYOUT_CONTENT: &[u8] = br#"{"imageLayoutVersion": "1.0.0"}"#;
/// The annotation naming an image in `index.json`.
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";
/// Largest `index.json` / `oci-layout` read.
const MAX_LAYOUT_FILE_BYTES: u64 = 4 * 1024 * 1024;
/// Copy buffer size.
const BUF_SIZE: usize = 256 * 1024;

fn io_err<'p>(action: &'static str, path: &'p Path) -> impl FnOnce(io::Error) -> Error + 'p {
    move |source| Error::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

fn describe(dir: &Path, tag: Option<&str>) -> String {
    match tag {
        Some(t) => format!("oci:{}:{t}", dir.display()),
        None => format!("oci:{}", dir.display()),
    }
}

/// Reads a small file, refusing more than `MAX_LAYOUT_FILE_BYTES`.
fn read_small(path: &Path) -> Result<Vec<u8>> {
    let f = File::open(path).map_err(io_err("opening", path))?;
    let mut bytes = Vec::new();
    f.take(MAX_LAYOUT_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err("reading", path))?;
    if bytes.len() as u64 > MAX_LAYOUT_FILE_BYTES {
        return Err(Error::Malformed {
            what: path.display().to_string(),
            reason: format!("larger than {MAX_LAYOUT_FILE_BYTES} bytes"),
        });
    }
    Ok(bytes)
}

/// Checks `oci-layout` and returns `index.json` as a JSON document and as typed index.
fn read_layout(dir: &Path) -> Result<(Map<String, Value>, ImageIndex)> {
    let what = format!("OCI layout {}", dir.display());
    let layout_path = dir.join("oci-layout");
    let layout: Value =
        serde_json::from_slice(&read_small(&layout_path)?).map_err(|e| Error::Malformed {
            what: format!("{what}: oci-layout"),
            reason: e.to_string(),
        })?;
    match layout.get("imageLayoutVersion").and_then(Value::as_str) {
        Some(v) if v.starts_with("1.") => {}
        other => {
            return Err(Error::Malformed {
                what: format!("{what}: oci-layout"),
                reason: format!("imageLayoutVersion {other:?}, expected 1.x"),
            })
        }
    }
    let index_bytes = read_small(&dir.join("index.json"))?;
    let malformed = |reason: String| Error::Malformed {
        what: format!("{what}: index.json"),
        reason,
    };
    let doc: Value = serde_json::from_slice(&index_bytes).map_err(|e| malformed(e.to_string()))?;
    let Value::Object(doc) = doc else {
        return Err(malformed("not a JSON object".into()));
    };
    let typed: ImageIndex =
        serde_json::from_slice(&index_bytes).map_err(|e| malformed(e.to_string()))?;
    Ok((doc, typed))
}

fn ref_name(d: &Descriptor) -> Option<&str> {
    d.annotations()
        .as_ref()?
        .get(REF_NAME_ANNOTATION)
        .map(String::as_str)
}

/// `DIR/blobs/sha256/<hex>`; the digest is validated before it becomes a path.
fn blob_path(dir: &Path, digest: &str) -> Result<PathBuf> {
    let hex = validate_digest(digest).map_err(|reason| Error::Malformed {
        what: format!("descriptor in {}", dir.display()),
        reason,
    })?;
    Ok(dir.join("blobs").join("sha256").join(hex))
}

/// Reads a manifest-sized blob completely, verified against `desc`.
fn read_small_blob(dir: &Path, desc: &Descriptor) -> Result<Vec<u8>> {
    let digest = desc.digest().to_string();
    if desc.size() > MAX_MANIFEST_BYTES as u64 {
        return Err(Error::Malformed {
            what: format!("manifest {digest}"),
            reason: format!(
                "{} bytes, more than the {MAX_MANIFEST_BYTES} accepted",
                desc.size()
            ),
        });
    }
    let path = blob_path(dir, &digest)?;
    let f = File::open(&path).map_err(io_err("opening", &path))?;
    let mut bytes = Vec::new();
    VerifyingReader::new(f, &digest, desc.size())
        .read_to_end(&mut bytes)
        .map_err(|e| Error::BlobMismatch {
            digest: digest.clone(),
            reason: e.to_string(),
        })?;
    Ok(bytes)
}

/// Reads an image from an OCI layout directory.
#[derive(Debug)]
pub struct LayoutSource {
    dir: PathBuf,
    top: Descriptor,
    describe: String,
}

impl LayoutSource {
    /// Opens the image named `tag` (`org.opencontainers.image.ref.name`), or the only image
    /// in the layout when `tag` is `None`.
    pub fn open(dir: &Path, tag: Option<&str>) -> Result<Self> {
        Self::open_described(dir, tag, describe(dir, tag))
    }

    pub(crate) fn open_described(dir: &Path, tag: Option<&str>, describe: String) -> Result<Self> {
        let (_, index) = read_layout(dir)?;
        let manifests = index.manifests().as_slice();
        let tags = || {
            let names: Vec<String> = manifests
                .iter()
                .map(|d| {
                    ref_name(d).map_or_else(|| format!("(untagged {})", d.digest()), str::to_owned)
                })
                .collect();
            if names.is_empty() {
                "the layout holds no images".to_owned()
            } else {
                format!("images in the layout: {}", names.join(", "))
            }
        };
        let top = match tag {
            Some(t) => manifests
                .iter()
                .find(|d| ref_name(d) == Some(t))
                .ok_or_else(|| {
                    Error::NotFound(format!("{describe}: no image tagged {t:?}; {}", tags()))
                })?,
            None => match manifests {
                [only] => only,
                [] => {
                    return Err(Error::NotFound(format!(
                        "{describe}: the layout holds no images"
                    )))
                }
                _ => {
                    return Err(Error::NotFound(format!(
                        "{describe}: no tag given and the layout holds {} images; name one \
                         (oci:DIR:TAG); {}",
                        manifests.len(),
                        tags()
                    )))
                }
            },
        };
        blob_path(dir, top.digest().as_ref())?;
        Ok(Self {
            dir: dir.to_owned(),
            top: top.clone(),
            describe,
        })
    }
}

impl ImageSource for LayoutSource {
    fn describe(&self) -> String {
        self.describe.clone()
    }

    fn top_manifest(&mut self) -> Result<RawManifest> {
        let top = self.top.clone();
        self.manifest(&top)
    }

    fn manifest(&mut self, desc: &Descriptor) -> Result<RawManifest> {
        let bytes = read_small_blob(&self.dir, desc)?;
        Ok(RawManifest {
            bytes,
            media_type: desc.media_type().to_string(),
            digest: desc.digest().to_string(),
        })
    }

    fn blob(&mut self, desc: &Descriptor) -> Result<Box<dyn Read + Send + '_>> {
        let digest = desc.digest().to_string();
        let path = blob_path(&self.dir, &digest)?;
        let f = File::open(&path).map_err(io_err("opening", &path))?;
        Ok(Box::new(VerifyingReader::new(f, &digest, desc.size())))
    }
}

/// Writes an image into an OCI layout directory.
///
/// - DIR does not exist: the whole layout is built in a temporary directory beside it and
///   renamed into place by [`ImageDest::commit`].
/// - DIR exists (an OCI layout, or empty): blobs are written to temporary files in
///   `blobs/sha256/` and renamed to their digest when complete; `index.json` is replaced
///   atomically at commit. Dropping without commit removes the blobs (and directories) this
///   run created. Concurrent writers to one layout are not coordinated (nor are they in skopeo).
#[derive(Debug)]
pub struct LayoutDest {
    target: PathBuf,
    root: PathBuf,
    tag: Option<String>,
    staging: Option<TempDir>,
    created_blobs: Vec<PathBuf>,
    created_dirs: Vec<PathBuf>,
    committed: bool,
}

impl LayoutDest {
    /// Prepares writing to `dir`, tagging the image `tag` at commit (untagged if `None`).
    pub fn open(dir: &Path, tag: Option<&str>) -> Result<Self> {
        let mut dest = Self {
            target: dir.to_owned(),
            root: dir.to_owned(),
            tag: tag.map(str::to_owned),
            staging: None,
            created_blobs: Vec::new(),
            created_dirs: Vec::new(),
            committed: false,
        };
        match fs::symlink_metadata(dir) {
            Ok(meta) => {
                let meta = if meta.file_type().is_symlink() {
                    fs::metadata(dir).map_err(io_err("reading", dir))?
                } else {
                    meta
                };
                if !meta.is_dir() {
                    return Err(Error::Malformed {
                        what: dir.display().to_string(),
                        reason: "exists and is not a directory".into(),
                    });
                }
                let empty = fs::read_dir(dir)
                    .map_err(io_err("reading", dir))?
                    .next()
                    .is_none();
                if !empty {
                    read_layout(dir)?;
                }
                for d in [dir.join("blobs"), dir.join("blobs").join("sha256")] {
                    if !d.exists() {
                        fs::create_dir(&d).map_err(io_err("creating", &d))?;
                        dest.created_dirs.push(d);
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let parent = match dir.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
                    _ => PathBuf::from("."),
                };
                fs::create_dir_all(&parent).map_err(io_err("creating", &parent))?;
                let staging = tempfile::Builder::new()
                    .prefix(".layercrypt-layout-")
                    .tempdir_in(&parent)
                    .map_err(io_err("creating a temporary directory in", &parent))?;
                let blobs = staging.path().join("blobs").join("sha256");
                fs::create_dir_all(&blobs).map_err(io_err("creating", &blobs))?;
                dest.root = staging.path().to_owned();
                dest.staging = Some(staging);
            }
            Err(e) => return Err(io_err("reading", dir)(e)),
        }
        Ok(dest)
    }

    fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs").join("sha256")
    }

    fn write_small_blob(&mut self, bytes: &[u8], expected: &str) -> Result<()> {
        let mut w = self.blob_writer()?;
        w.write_all(bytes).map_err(Error::Stream)?;
        let info = w.finish()?;
        if info.digest != expected {
            return Err(Error::BlobMismatch {
                digest: expected.to_owned(),
                reason: format!("manifest bytes have digest {}", info.digest),
            });
        }
        Ok(())
    }

    fn index_entry(&self, top: &RawManifest) -> Value {
        let mut e = Map::new();
        e.insert("mediaType".into(), Value::from(top.media_type.as_str()));
        e.insert("digest".into(), Value::from(top.digest.as_str()));
        e.insert("size".into(), Value::from(top.bytes.len() as u64));
        if let Some(t) = &self.tag {
            let mut a = Map::new();
            a.insert(REF_NAME_ANNOTATION.into(), Value::from(t.as_str()));
            e.insert("annotations".into(), Value::Object(a));
        }
        Value::Object(e)
    }

    /// Writes `bytes` to `path` atomically (temp file beside it, then rename).
    fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
        let dir = path.parent().unwrap_or_else(|| Path::new("."));
        let mut tmp =
            NamedTempFile::new_in(dir).map_err(io_err("creating a temporary file in", dir))?;
        tmp.write_all(bytes)
            .map_err(io_err("writing", tmp.path()))?;
        set_mode(tmp.as_file(), 0o644)?;
        tmp.as_file().sync_all().map_err(io_err("syncing", path))?;
        tmp.persist(path).map_err(|e| Error::Io {
            action: "renaming to",
            path: path.to_owned(),
            source: e.error,
        })?;
        Ok(())
    }
}

#[cfg(unix)]
fn set_mode(f: &File, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    f.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(|source| Error::Io {
            action: "setting permissions of",
            path: PathBuf::from("(temporary file)"),
            source,
        })
}

#[cfg(not(unix))]
fn set_mode(_f: &File, _mode: u32) -> Result<()> {
    Ok(())
}

struct LayoutBlobWriter<'a> {
    inner: HashingWriter<BufWriter<NamedTempFile>>,
    blobs_dir: PathBuf,
    created: &'a mut Vec<PathBuf>,
}

impl Write for LayoutBlobWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// True if `path` is a regular file (not a symlink, which someone with write access to
/// `blobs/` could point anywhere) of `size` bytes hashing to `digest`. Reading it costs a pass
/// over the blob, paid only when a destination already holds one of the image's blobs.
fn verified_blob(path: &Path, digest: &str, size: u64) -> bool {
    let regular =
        fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_file() && m.len() == size);
    if !regular {
        return false;
    }
    let Ok(file) = File::open(path) else {
        return false;
    };
    let mut verify =
        VerifyingReader::new(io::BufReader::with_capacity(BUF_SIZE, file), digest, size);
    io::copy(&mut verify, &mut io::sink()).is_ok()
}

impl BlobWriter for LayoutBlobWriter<'_> {
    fn finish(self: Box<Self>) -> Result<BlobInfo> {
        let this = *self;
        let (buf, digest, size) = this.inner.finish();
        let tmp = buf
            .into_inner()
            .map_err(|e| Error::Stream(e.into_error()))?;
        let hex = validate_digest(&digest).map_err(|reason| Error::Malformed {
            what: "blob".into(),
            reason,
        })?;
        let path = this.blobs_dir.join(hex);
        if verified_blob(&path, &digest, size) {
            // Same digest, verified content: keep the existing file, drop the temporary one.
            return Ok(BlobInfo { digest, size });
        }
        set_mode(tmp.as_file(), 0o644)?;
        tmp.as_file().sync_all().map_err(io_err("syncing", &path))?;
        // Whatever is there (nothing, a planted symlink, a file with other bytes) is replaced:
        // the rename swaps the directory entry and never follows a symlink.
        tmp.persist(&path).map_err(|e| Error::Io {
            action: "renaming to",
            path: path.clone(),
            source: e.error,
        })?;
        this.created.push(path);
        Ok(BlobInfo { digest, size })
    }
}

impl ImageDest for LayoutDest {
    fn describe(&self) -> String {
        describe(&self.target, self.tag.as_deref())
    }

    /// A blob counts as present only if it is a regular file (not a symlink, which someone
    /// with write access to `blobs/` could point anywhere) of the right size whose content
    /// hashes to the digest. Anything else is written again (the rename replaces it).
    fn has_blob(&mut self, info: &BlobInfo) -> Result<bool> {
        let path = blob_path(&self.root, &info.digest)?;
        Ok(verified_blob(&path, &info.digest, info.size))
    }

    fn blob_writer(&mut self) -> Result<Box<dyn BlobWriter + '_>> {
        let blobs_dir = self.blobs_dir();
        let tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&blobs_dir)
            .map_err(io_err("creating a temporary file in", &blobs_dir))?;
        Ok(Box::new(LayoutBlobWriter {
            inner: HashingWriter::new(BufWriter::with_capacity(BUF_SIZE, tmp)),
            blobs_dir,
            created: &mut self.created_blobs,
        }))
    }

    fn put_manifest(&mut self, manifest: &RawManifest) -> Result<()> {
        self.write_small_blob(&manifest.bytes, &manifest.digest)
    }

    fn commit(mut self: Box<Self>, top: &RawManifest) -> Result<()> {
        if sha256_digest(&top.bytes) != top.digest {
            return Err(Error::BlobMismatch {
                digest: top.digest.clone(),
                reason: "manifest bytes differ".into(),
            });
        }
        self.write_small_blob(&top.bytes, &top.digest)?;
        let entry = self.index_entry(top);
        let index_path = self.root.join("index.json");
        let layout_path = self.root.join("oci-layout");
        let mut doc = if index_path.exists() {
            read_layout(&self.root)?.0
        } else {
            let mut d = Map::new();
            d.insert("schemaVersion".into(), Value::from(2));
            d
        };
        let manifests = doc
            .entry("manifests")
            .or_insert_with(|| Value::Array(Vec::new()));
        let Value::Array(list) = manifests else {
            return Err(Error::Malformed {
                what: index_path.display().to_string(),
                reason: "manifests is not an array".into(),
            });
        };
        let name_of = |v: &Value| {
            v.get("annotations")
                .and_then(|a| a.get(REF_NAME_ANNOTATION))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let mut replaced = None;
        match &self.tag {
            Some(t) => match list.iter_mut().find(|v| name_of(v).as_deref() == Some(t)) {
                Some(slot) => {
                    replaced = slot
                        .get("digest")
                        .and_then(Value::as_str)
                        .filter(|d| *d != top.digest)
                        .map(str::to_owned);
                    *slot = entry;
                }
                None => list.push(entry),
            },
            None => {
                let dup = list.iter().any(|v| {
                    name_of(v).is_none()
                        && v.get("digest").and_then(Value::as_str) == Some(&top.digest)
                });
                if !dup {
                    list.push(entry);
                }
            }
        }
        if !layout_path.exists() {
            Self::write_atomic(&layout_path, OCI_LAYOUT_CONTENT)?;
        }
        let live_roots: Vec<String> = list
            .iter()
            .filter_map(|v| v.get("digest").and_then(Value::as_str).map(str::to_owned))
            .collect();
        Self::write_atomic(&index_path, &go_json(&Value::Object(doc)))?;
        if let Some(old) = replaced {
            self.remove_unreferenced(&old, &live_roots);
        }
        if let Some(staging) = self.staging.take() {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                for d in [
                    staging.path().to_owned(),
                    staging.path().join("blobs"),
                    self.blobs_dir(),
                ] {
                    fs::set_permissions(&d, fs::Permissions::from_mode(0o755))
                        .map_err(io_err("setting permissions of", &d))?;
                }
            }
            let path = staging.keep();
            if let Err(source) = fs::rename(&path, &self.target) {
                let _ = fs::remove_dir_all(&path);
                return Err(Error::Io {
                    action: "renaming to",
                    path: self.target.clone(),
                    source,
                });
            }
        }
        self.committed = true;
        Ok(())
    }
}

impl LayoutDest {
    /// After a tag moved from manifest `old` to a new one: removes the blobs that `old`
    /// reached and no manifest of the index (`live_roots`) reaches any more, as `umoci gc`
    /// would. An in-place `encrypt oci:X:t oci:X:t` must not leave the plaintext layers in
    /// `X/blobs` for whoever copies the directory. Only blobs of the replaced image are
    /// considered; anything else in `blobs/` is not ours to delete. Best effort: a failure is
    /// logged, the new image is already committed.
    fn remove_unreferenced(&self, old: &str, live_roots: &[String]) {
        let stale = reachable(&self.root, std::slice::from_ref(&old.to_owned()));
        let live = reachable(&self.root, live_roots);
        for digest in stale.difference(&live) {
            let Ok(path) = blob_path(&self.root, digest) else {
                continue;
            };
            match fs::remove_file(&path) {
                Ok(()) => tracing::info!(%digest, "removed a blob no manifest references any more"),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!(%digest, error = %e,
                    "could not remove a blob no manifest references any more"),
            }
        }
    }
}

/// Every blob digest reachable from the manifests or indexes `roots` in the layout at `root`:
/// the roots themselves, nested manifests, configs and layers. Bounded: at most
/// [`MAX_REACHABLE`] blobs, manifests read only up to [`MAX_MANIFEST_BYTES`]; an unreadable
/// manifest contributes only itself.
fn reachable(root: &Path, roots: &[String]) -> std::collections::BTreeSet<String> {
    const MAX_REACHABLE: usize = 100_000;
    let mut seen = std::collections::BTreeSet::new();
    let mut todo: Vec<String> = roots.to_vec();
    while let Some(d) = todo.pop() {
        if seen.len() >= MAX_REACHABLE || !seen.insert(d.clone()) {
            continue;
        }
        let Ok(path) = blob_path(root, &d) else {
            continue;
        };
        let small = fs::symlink_metadata(&path)
            .is_ok_and(|m| m.is_file() && m.len() <= MAX_MANIFEST_BYTES as u64);
        let Some(doc) = small
            .then(|| fs::read(&path).ok())
            .flatten()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        else {
            continue;
        };
        let digest_of = |v: &Value| v.get("digest").and_then(Value::as_str).map(str::to_owned);
        // Index entries are manifests to descend into; a manifest's config and layers are leaves.
        for m in doc
            .get("manifests")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            todo.extend(digest_of(m));
        }
        if let Some(c) = doc.get("config").and_then(digest_of_value) {
            seen.insert(c);
        }
        for l in doc
            .get("layers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(l) = digest_of_value(l) {
                seen.insert(l);
            }
        }
    }
    seen
}

/// The `digest` of a descriptor.
fn digest_of_value(v: &Value) -> Option<String> {
    v.get("digest").and_then(Value::as_str).map(str::to_owned)
}

impl Drop for LayoutDest {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        for b in self.created_blobs.drain(..) {
            if let Err(e) = fs::remove_file(&b) {
                tracing::warn!(path = %b.display(), error = %e, "could not remove a blob of an aborted copy");
            }
        }
        for d in self.created_dirs.drain(..).rev() {
            let _ = fs::remove_dir(&d);
        }
        // A staging TempDir removes itself.
    }
}
