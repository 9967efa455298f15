//! `oci-archive:FILE[:TAG]`: an OCI layout in a tar file.
//!
//! As a source the tar is extracted into a temporary directory (removed on drop) and read as a
//! layout; only directories and regular files with plain relative paths are accepted. As a
//! destination a layout is written into a temporary directory and, at commit, packed into a
//! deterministic tar (sorted entries, mtime 0, uid/gid 0, fixed modes) that replaces FILE
//! atomically. Like skopeo, writing replaces the whole archive: images already in FILE are
//! not kept.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Component, Path, PathBuf};

use oci_spec::image::Descriptor;
use tempfile::{NamedTempFile, TempDir};

use crate::error::{Error, Result};
use crate::layout::{LayoutDest, LayoutSource};
use crate::transport::{BlobInfo, BlobWriter, ImageDest, ImageSource, RawManifest};

fn describe(file: &Path, tag: Option<&str>) -> String {
    match tag {
        Some(t) => format!("oci-archive:{}:{t}", file.display()),
        None => format!("oci-archive:{}", file.display()),
    }
}

fn parent_of(file: &Path) -> PathBuf {
    match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

fn malformed(file: &Path, reason: String) -> Error {
    Error::Malformed {
        what: format!("archive {}", file.display()),
        reason,
    }
}

/// Reads an image from an OCI archive.
#[derive(Debug)]
pub struct ArchiveSource {
    inner: LayoutSource,
    // Declared after `inner`, so it is removed after the layout source is dropped.
    _extracted: TempDir,
}

impl ArchiveSource {
    /// Extracts `file` and opens the image `tag` (or the only image) in it.
    pub fn open(file: &Path, tag: Option<&str>) -> Result<Self> {
        let f = File::open(file).map_err(|source| Error::Io {
            action: "opening",
            path: file.to_owned(),
            source,
        })?;
        let extracted = tempfile::Builder::new()
            .prefix(".layercrypt-archive-")
            .tempdir()
            .map_err(|source| Error::Io {
                action: "creating a temporary directory for",
                path: file.to_owned(),
                source,
            })?;
        extract(BufReader::new(f), extracted.path(), file)?;
        let inner = LayoutSource::open_described(extracted.path(), tag, describe(file, tag))?;
        Ok(Self {
            inner,
            _extracted: extracted,
        })
    }
}

/// Extracts a tar into `dest`, refusing absolute paths, `..`, links and special files.
fn extract(reader: impl Read, dest: &Path, file: &Path) -> Result<()> {
    let mut archive = tar::Archive::new(reader);
    let entries = archive
        .entries()
        .map_err(|e| malformed(file, e.to_string()))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| malformed(file, e.to_string()))?;
        let kind = entry.header().entry_type();
        let path = entry
            .path()
            .map_err(|e| malformed(file, e.to_string()))?
            .into_owned();
        let mut rel = PathBuf::new();
        for c in path.components() {
            match c {
                Component::Normal(n) => rel.push(n),
                Component::CurDir => {}
                _ => {
                    return Err(malformed(
                        file,
                        format!("entry {path:?} is not a plain relative path"),
                    ))
                }
            }
        }
        if kind.is_pax_global_extensions() {
            continue;
        }
        if rel.as_os_str().is_empty() {
            if kind.is_dir() {
                continue;
            }
            return Err(malformed(file, format!("entry {path:?} has an empty path")));
        }
        let target = dest.join(&rel);
        if kind.is_dir() {
            fs::create_dir_all(&target).map_err(|source| Error::Io {
                action: "creating",
                path: target,
                source,
            })?;
        } else if kind.is_file() || kind == tar::EntryType::Continuous {
            if let Some(p) = target.parent() {
                fs::create_dir_all(p).map_err(|source| Error::Io {
                    action: "creating",
                    path: p.to_owned(),
                    source,
                })?;
            }
            let out = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&target)
                .map_err(|source| Error::Io {
                    action: "creating",
                    path: target.clone(),
                    source,
                })?;
            let mut out = BufWriter::with_capacity(256 * 1024, out);
            io::copy(&mut entry, &mut out).map_err(|source| Error::Io {
                action: "extracting",
                path: target.clone(),
                source,
            })?;
            out.flush().map_err(|source| Error::Io {
                action: "writing",
                path: target,
                source,
            })?;
        } else {
            return Err(malformed(
                file,
                format!(
                    "entry {path:?} is a {kind:?}; only directories and regular files are accepted"
                ),
            ));
        }
    }
    Ok(())
}

impl ImageSource for ArchiveSource {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn top_manifest(&mut self) -> Result<RawManifest> {
        self.inner.top_manifest()
    }
    fn manifest(&mut self, desc: &Descriptor) -> Result<RawManifest> {
        self.inner.manifest(desc)
    }
    fn blob(&mut self, desc: &Descriptor) -> Result<Box<dyn Read + Send + '_>> {
        self.inner.blob(desc)
    }
}

/// Writes an image into an OCI archive (replacing FILE at commit).
#[derive(Debug)]
pub struct ArchiveDest {
    file: PathBuf,
    tag: Option<String>,
    layout: Option<Box<LayoutDest>>,
    work: TempDir,
}

impl ArchiveDest {
    /// Prepares writing `file`; the image is tagged `tag` inside the archive.
    pub fn open(file: &Path, tag: Option<&str>) -> Result<Self> {
        if file.is_dir() {
            return Err(malformed(file, "is a directory".into()));
        }
        let parent = parent_of(file);
        fs::create_dir_all(&parent).map_err(|source| Error::Io {
            action: "creating",
            path: parent.clone(),
            source,
        })?;
        let work = tempfile::Builder::new()
            .prefix(".layercrypt-archive-")
            .tempdir_in(&parent)
            .map_err(|source| Error::Io {
                action: "creating a temporary directory in",
                path: parent,
                source,
            })?;
        let layout = LayoutDest::open(&work.path().join("layout"), tag)?;
        Ok(Self {
            file: file.to_owned(),
            tag: tag.map(str::to_owned),
            layout: Some(Box::new(layout)),
            work,
        })
    }

    fn layout(&mut self) -> &mut LayoutDest {
        self.layout
            .as_mut()
            .expect("the layout is only taken by commit, which consumes self")
    }
}

/// Packs `dir` into a deterministic tar: entries sorted by path, mtime 0, uid/gid 0, no user
/// names, mode 0755 for directories and 0644 for files.
pub fn write_deterministic_tar(dir: &Path, out: impl Write) -> Result<()> {
    let mut paths = Vec::new();
    collect(dir, dir, &mut paths)?;
    paths.sort();
    let mut builder = tar::Builder::new(out);
    for (rel, is_dir) in paths {
        let full = dir.join(&rel);
        let mut header = tar::Header::new_ustar();
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        let io_e = |source| Error::Io {
            action: "archiving",
            path: full.clone(),
            source,
        };
        if is_dir {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_mode(0o755);
            header.set_size(0);
            builder
                .append_data(&mut header, format!("{rel}/"), io::empty())
                .map_err(io_e)?;
        } else {
            let f = File::open(&full).map_err(io_e)?;
            let len = f.metadata().map_err(io_e)?.len();
            header.set_entry_type(tar::EntryType::Regular);
            header.set_mode(0o644);
            header.set_size(len);
            builder
                .append_data(&mut header, &rel, BufReader::with_capacity(256 * 1024, f))
                .map_err(io_e)?;
        }
    }
    builder
        .into_inner()
        .and_then(|mut w| w.flush())
        .map_err(|source| Error::Io {
            action: "finishing the archive of",
            path: dir.to_owned(),
            source,
        })
}

/// Relative paths (with `/`) under `base`, and whether each is a directory.
fn collect(base: &Path, dir: &Path, out: &mut Vec<(String, bool)>) -> Result<()> {
    let rd = fs::read_dir(dir).map_err(|source| Error::Io {
        action: "reading",
        path: dir.to_owned(),
        source,
    })?;
    for entry in rd {
        let entry = entry.map_err(|source| Error::Io {
            action: "reading",
            path: dir.to_owned(),
            source,
        })?;
        let path = entry.path();
        let ft = entry.file_type().map_err(|source| Error::Io {
            action: "reading",
            path: path.clone(),
            source,
        })?;
        let rel = path
            .strip_prefix(base)
            .expect("read_dir yields paths under base")
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("/");
        if ft.is_dir() {
            out.push((rel, true));
            collect(base, &path, out)?;
        } else if ft.is_file() {
            out.push((rel, false));
        }
    }
    Ok(())
}

impl ImageDest for ArchiveDest {
    fn describe(&self) -> String {
        describe(&self.file, self.tag.as_deref())
    }
    fn has_blob(&mut self, info: &BlobInfo) -> Result<bool> {
        self.layout().has_blob(info)
    }
    fn blob_writer(&mut self) -> Result<Box<dyn BlobWriter + '_>> {
        self.layout().blob_writer()
    }
    fn put_manifest(&mut self, manifest: &RawManifest) -> Result<()> {
        self.layout().put_manifest(manifest)
    }
    fn commit(mut self: Box<Self>, top: &RawManifest) -> Result<()> {
        let layout = self.layout.take().expect("commit runs once");
        layout.commit(top)?;
        let parent = parent_of(&self.file);
        let tmp = NamedTempFile::new_in(&parent).map_err(|source| Error::Io {
            action: "creating a temporary file in",
            path: parent.clone(),
            source,
        })?;
        let mut w = BufWriter::with_capacity(256 * 1024, tmp);
        write_deterministic_tar(&self.work.path().join("layout"), &mut w)?;
        let tmp = w.into_inner().map_err(|e| Error::Stream(e.into_error()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            tmp.as_file()
                .set_permissions(fs::Permissions::from_mode(0o644))
                .map_err(|source| Error::Io {
                    action: "setting permissions of",
                    path: tmp.path().to_owned(),
                    source,
                })?;
        }
        tmp.as_file().sync_all().map_err(|source| Error::Io {
            action: "syncing",
            path: self.file.clone(),
            source,
        })?;
        tmp.persist(&self.file).map_err(|e| Error::Io {
            action: "renaming to",
            path: self.file.clone(),
            source: e.error,
        })?;
        Ok(())
    }
}
