//! Building images and handlers for the tests.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use layercrypt_image::copy::{LayerAction, LayerContext, LayerHandler, LayerRewrite};
use layercrypt_image::digest::sha256_digest;
use layercrypt_image::layout::LayoutDest;
use layercrypt_image::manifest::{go_json, OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST};
use layercrypt_image::progress::{BlobProgress, Progress};
use layercrypt_image::{ImageDest, RawManifest};
use serde_json::{json, Value};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A gzipped tar with one file.
pub fn gz_layer(name: &str, content: &[u8]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_size(content.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_cksum();
    tar.append_data(&mut h, name, content).unwrap();
    let raw = tar.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&raw).unwrap();
    gz.finish().unwrap()
}

fn diff_id(gz: &[u8]) -> String {
    let mut d = flate2::read::GzDecoder::new(gz);
    let mut raw = Vec::new();
    d.read_to_end(&mut raw).unwrap();
    sha256_digest(&raw)
}

pub fn config_for(layers: &[Vec<u8>], arch: &str) -> Vec<u8> {
    let diff_ids: Vec<String> = layers.iter().map(|l| diff_id(l)).collect();
    go_json(&json!({
        "architecture": arch,
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
}

pub fn put_blob(dest: &mut dyn ImageDest, bytes: &[u8]) -> String {
    let mut w = dest.blob_writer().unwrap();
    w.write_all(bytes).unwrap();
    w.finish().unwrap().digest
}

/// An OCI manifest (Go-style bytes, with an annotation that needs Go escaping).
pub fn oci_manifest(config: &[u8], layers: &[Vec<u8>], layer_annotations: bool) -> RawManifest {
    let layer_descs: Vec<Value> = layers
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let mut d = json!({
                "mediaType": OCI_LAYER_GZIP,
                "digest": sha256_digest(l),
                "size": l.len(),
            });
            if layer_annotations && i == 0 {
                d["annotations"] = json!({"com.example.note": "a<b & c>d"});
            }
            d
        })
        .collect();
    let doc = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha256_digest(config), "size": config.len()},
        "layers": layer_descs,
        "annotations": {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"},
    });
    let bytes = go_json(&doc);
    RawManifest {
        digest: sha256_digest(&bytes),
        bytes,
        media_type: OCI_MANIFEST.into(),
    }
}

/// Writes an image with `layers` into `dir` tagged `tag`, through the layout destination.
pub fn write_image(dir: &Path, tag: &str, layers: &[Vec<u8>]) -> RawManifest {
    let config = config_for(layers, "amd64");
    let m = oci_manifest(&config, layers, true);
    let mut dest: Box<dyn ImageDest> = Box::new(LayoutDest::open(dir, Some(tag)).unwrap());
    put_blob(dest.as_mut(), &config);
    for l in layers {
        put_blob(dest.as_mut(), l);
    }
    dest.commit(&m).unwrap();
    m
}

pub fn two_layers() -> Vec<Vec<u8>> {
    vec![
        gz_layer("a.txt", b"first layer"),
        gz_layer("b.txt", &vec![7u8; 300_000]),
    ]
}

/// Names of files under `dir/blobs/sha256`.
pub fn blob_set(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

pub fn read_blob(dir: &Path, digest: &str) -> Vec<u8> {
    std::fs::read(
        dir.join("blobs/sha256")
            .join(digest.strip_prefix("sha256:").unwrap()),
    )
    .unwrap()
}

/// Copies everything unchanged.
pub struct Identity;

impl LayerHandler for Identity {
    fn plan(&self, _l: &LayerContext<'_>) -> Result<LayerAction, BoxError> {
        Ok(LayerAction::Copy)
    }
    fn transform(
        &self,
        _l: &LayerContext<'_>,
        _i: &mut dyn Read,
        _o: &mut dyn Write,
    ) -> Result<LayerRewrite, BoxError> {
        Err("not used".into())
    }
}

pub const XOR_ANNOTATION: &str = "org.opencontainers.image.enc.test";

/// "Encrypts" by XOR, or "decrypts" layers that carry `+encrypted`.
pub struct Xor {
    pub decrypt: bool,
    /// Fail on this 0-based layer index.
    pub fail_on: Option<usize>,
}

fn annotations(l: &LayerContext<'_>) -> BTreeMap<String, String> {
    l.descriptor
        .annotations()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect()
}

impl LayerHandler for Xor {
    fn plan(&self, l: &LayerContext<'_>) -> Result<LayerAction, BoxError> {
        let encrypted = l
            .descriptor
            .media_type()
            .to_string()
            .ends_with("+encrypted");
        Ok(if encrypted == self.decrypt {
            LayerAction::Transform
        } else {
            LayerAction::Copy
        })
    }

    fn transform(
        &self,
        l: &LayerContext<'_>,
        input: &mut dyn Read,
        output: &mut dyn Write,
    ) -> Result<LayerRewrite, BoxError> {
        if self.fail_on == Some(l.index) {
            return Err("no key for this layer".into());
        }
        let mut buf = vec![0u8; 10_000];
        loop {
            let n = input.read(&mut buf)?;
            if n == 0 {
                break;
            }
            for b in &mut buf[..n] {
                *b ^= 0x5a;
            }
            output.write_all(&buf[..n])?;
        }
        let mut a = annotations(l);
        let mt = l.descriptor.media_type().to_string();
        let media_type = if self.decrypt {
            a.retain(|k, _| !k.starts_with("org.opencontainers.image.enc"));
            mt.strip_suffix("+encrypted").unwrap().to_owned()
        } else {
            a.insert(XOR_ANNOTATION.into(), format!("layer {}", l.index));
            format!("{mt}+encrypted")
        };
        Ok(LayerRewrite {
            media_type,
            annotations: a,
        })
    }
}

/// Adds an annotation to every layer without touching data.
pub struct Annotate;

impl LayerHandler for Annotate {
    fn plan(&self, l: &LayerContext<'_>) -> Result<LayerAction, BoxError> {
        let mut a = annotations(l);
        a.insert("org.example.rewritten".into(), "yes".into());
        Ok(LayerAction::Rewrite(LayerRewrite {
            media_type: l.descriptor.media_type().to_string(),
            annotations: a,
        }))
    }
    fn transform(
        &self,
        _l: &LayerContext<'_>,
        _i: &mut dyn Read,
        _o: &mut dyn Write,
    ) -> Result<LayerRewrite, BoxError> {
        Err("not used".into())
    }
}

/// Counts bytes reported.
#[derive(Default)]
pub struct Counter {
    pub bytes: Arc<AtomicU64>,
    pub started: Arc<AtomicU64>,
    pub finished: Arc<AtomicU64>,
}

struct CounterBlob {
    bytes: Arc<AtomicU64>,
    finished: Arc<AtomicU64>,
}

impl Progress for Counter {
    fn start(&self, _label: &str, _total: u64) -> Box<dyn BlobProgress> {
        self.started.fetch_add(1, Ordering::SeqCst);
        Box::new(CounterBlob {
            bytes: self.bytes.clone(),
            finished: self.finished.clone(),
        })
    }
}

impl BlobProgress for CounterBlob {
    fn advance(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::SeqCst);
    }
    fn finish(&self) {
        self.finished.fetch_add(1, Ordering::SeqCst);
    }
}
