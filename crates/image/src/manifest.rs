//! Manifests and indexes: parsed and validated with `oci-spec` types, edited as JSON documents
//! so that re-serializing disturbs as few bytes as possible.
//!
//! The document is kept as a [`serde_json::Value`] with its key order preserved. Edits touch only
//! the members they must (a layer's `mediaType`, `digest`, `size`, `annotations`; an index
//! entry's `mediaType`, `digest`, `size`). When nothing changed, the original bytes are handed
//! back untouched; otherwise the document is written the way Go's `encoding/json` writes it
//! (compact; `<`, `>`, `&`, U+2028 and U+2029 escaped; map keys sorted), which is how skopeo /
//! containers/image wrote it in the first place. So an image encrypted by skopeo and decrypted
//! here gets back the manifest bytes it had before encryption.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::str::FromStr;

use oci_spec::image::{Descriptor, Digest, ImageIndex, ImageManifest, MediaType};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::digest::{sha256_digest, validate_digest};
use crate::error::{Error, Result};
use crate::transport::RawManifest;

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// OCI layer, uncompressed tar.
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
/// OCI layer, gzip-compressed tar.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// OCI layer, zstd-compressed tar.
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// OCI non-distributable layer, uncompressed tar.
pub const OCI_LAYER_NONDIST: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar";
/// OCI non-distributable layer, gzip.
pub const OCI_LAYER_NONDIST_GZIP: &str =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
/// OCI non-distributable layer, zstd.
pub const OCI_LAYER_NONDIST_ZSTD: &str =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd";
/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker schema 1 manifest (refused).
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
/// Docker schema 1 signed manifest (refused).
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
/// Docker image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker layer, gzip.
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Docker layer, uncompressed.
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
/// Docker layer, zstd (a c/image extension).
pub const DOCKER_LAYER_ZSTD: &str = "application/vnd.docker.image.rootfs.diff.tar.zstd";
/// Docker foreign layer, uncompressed.
pub const DOCKER_FOREIGN: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar";
/// Docker foreign layer, gzip.
pub const DOCKER_FOREIGN_GZIP: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
/// Docker foreign layer, zstd.
pub const DOCKER_FOREIGN_ZSTD: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.zstd";

/// Largest manifest or index accepted (bytes).
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;
/// Most layers accepted in one manifest.
pub const MAX_LAYERS: usize = 10_000;
/// Most entries accepted in one index.
pub const MAX_INDEX_ENTRIES: usize = 1_000;

/// Field order of Go's `imgspecv1.Descriptor`, used to place members that are added.
const GO_DESCRIPTOR_ORDER: [&str; 8] = [
    "mediaType",
    "digest",
    "size",
    "urls",
    "annotations",
    "data",
    "platform",
    "artifactType",
];

/// Which kind of document a manifest is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `application/vnd.oci.image.manifest.v1+json`.
    OciManifest,
    /// `application/vnd.docker.distribution.manifest.v2+json`.
    DockerManifest,
    /// `application/vnd.oci.image.index.v1+json`.
    OciIndex,
    /// `application/vnd.docker.distribution.manifest.list.v2+json`.
    DockerList,
}

impl Kind {
    /// The media type string.
    pub fn media_type(self) -> &'static str {
        match self {
            Kind::OciManifest => OCI_MANIFEST,
            Kind::DockerManifest => DOCKER_MANIFEST,
            Kind::OciIndex => OCI_INDEX,
            Kind::DockerList => DOCKER_LIST,
        }
    }

    /// Index or manifest list (as opposed to an image manifest).
    pub fn is_index(self) -> bool {
        matches!(self, Kind::OciIndex | Kind::DockerList)
    }

    fn from_media_type(media_type: &str) -> Option<Kind> {
        match media_type {
            OCI_MANIFEST => Some(Kind::OciManifest),
            DOCKER_MANIFEST => Some(Kind::DockerManifest),
            OCI_INDEX => Some(Kind::OciIndex),
            DOCKER_LIST => Some(Kind::DockerList),
            _ => None,
        }
    }
}

/// New values for a descriptor's fields.
#[derive(Debug, Clone)]
pub struct DescriptorUpdate<'a> {
    /// New `mediaType`.
    pub media_type: &'a str,
    /// New `digest` (`sha256:<hex>`).
    pub digest: &'a str,
    /// New `size`.
    pub size: u64,
    /// New complete annotation map; empty removes the member; `None` leaves it alone.
    pub annotations: Option<&'a BTreeMap<String, String>>,
}

/// A parsed manifest or index.
// One short-lived value per manifest: boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Document {
    /// An image manifest.
    Image(ImageDoc),
    /// An index or manifest list.
    Index(IndexDoc),
}

/// The JSON document with its original bytes.
#[derive(Debug, Clone)]
struct Json {
    original: Vec<u8>,
    /// Whitespace after the document (Go's `json.Encoder`, used by umoci, writes a newline),
    /// kept when the document is edited so that edit-and-revert gives back the same bytes.
    trailing: Vec<u8>,
    doc: Map<String, Value>,
    changed: bool,
}

impl Json {
    fn to_bytes(&self) -> Vec<u8> {
        if self.changed {
            let mut out = go_json(&Value::Object(self.doc.clone()));
            out.extend_from_slice(&self.trailing);
            out
        } else {
            self.original.clone()
        }
    }

    fn entry_mut(&mut self, array: &str, index: usize) -> Result<&mut Map<String, Value>> {
        self.doc
            .get_mut(array)
            .and_then(Value::as_array_mut)
            .and_then(|a| a.get_mut(index))
            .and_then(Value::as_object_mut)
            .ok_or_else(|| Error::Malformed {
                what: "manifest".into(),
                reason: format!("no {array}[{index}] object"),
            })
    }
}

/// An image manifest (OCI or Docker schema 2).
#[derive(Debug, Clone)]
pub struct ImageDoc {
    kind: Kind,
    json: Json,
    config: Descriptor,
    layers: Vec<Descriptor>,
}

/// An image index (OCI or Docker manifest list).
#[derive(Debug, Clone)]
pub struct IndexDoc {
    kind: Kind,
    json: Json,
    manifests: Vec<Descriptor>,
}

fn malformed(what: &str, reason: impl Into<String>) -> Error {
    Error::Malformed {
        what: what.into(),
        reason: reason.into(),
    }
}

fn check_descriptor_digest(what: &str, d: &Descriptor) -> Result<()> {
    validate_digest(d.digest().as_ref())
        .map(|_| ())
        .map_err(|e| malformed(what, e))
}

/// Parses a manifest or index, validating it with `oci-spec` types. `raw.media_type` is used
/// when the document has no `mediaType` member; when it has one, the two must agree.
pub fn parse(raw: &RawManifest) -> Result<Document> {
    let what = format!("manifest {}", raw.digest);
    if raw.bytes.len() > MAX_MANIFEST_BYTES {
        return Err(malformed(
            &what,
            format!(
                "{} bytes, more than the {MAX_MANIFEST_BYTES} accepted",
                raw.bytes.len()
            ),
        ));
    }
    if raw.media_type == DOCKER_SCHEMA1 || raw.media_type == DOCKER_SCHEMA1_SIGNED {
        return Err(schema1());
    }
    let value: Value =
        serde_json::from_slice(&raw.bytes).map_err(|e| malformed(&what, e.to_string()))?;
    let Value::Object(doc) = value else {
        return Err(malformed(&what, "not a JSON object"));
    };
    match doc.get("schemaVersion").and_then(Value::as_u64) {
        Some(2) => {}
        Some(1) => return Err(schema1()),
        Some(v) => return Err(malformed(&what, format!("schemaVersion {v}, expected 2"))),
        None => return Err(malformed(&what, "no numeric schemaVersion")),
    }
    let doc_type = match doc.get("mediaType") {
        None => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => return Err(malformed(&what, "mediaType is not a string")),
    };
    let kind = match (doc_type, Kind::from_media_type(&raw.media_type)) {
        (Some(DOCKER_SCHEMA1 | DOCKER_SCHEMA1_SIGNED), _) => return Err(schema1()),
        (Some(d), from_desc) => {
            let k = Kind::from_media_type(d).ok_or_else(|| {
                Error::Unsupported(format!(
                    "{what}: media type {d:?} is not an image manifest or index"
                ))
            })?;
            if let Some(f) = from_desc {
                if f != k {
                    return Err(malformed(
                        &what,
                        format!(
                            "document says mediaType {d:?} but was served as {:?}",
                            raw.media_type
                        ),
                    ));
                }
            }
            k
        }
        (None, Some(k)) => k,
        (None, None) if raw.media_type.is_empty() || raw.media_type == "application/json" => {
            if doc.contains_key("manifests") {
                Kind::OciIndex
            } else {
                Kind::OciManifest
            }
        }
        (None, None) => {
            return Err(Error::Unsupported(format!(
                "{what}: media type {:?} is not an image manifest or index",
                raw.media_type
            )))
        }
    };
    let body_end = raw
        .bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(0, |i| i + 1);
    let json = Json {
        original: raw.bytes.clone(),
        trailing: raw.bytes[body_end..].to_vec(),
        doc,
        changed: false,
    };
    if kind.is_index() {
        let typed: ImageIndex =
            serde_json::from_slice(&raw.bytes).map_err(|e| malformed(&what, e.to_string()))?;
        if typed.manifests().len() > MAX_INDEX_ENTRIES {
            return Err(malformed(
                &what,
                format!(
                    "{} entries, more than the {MAX_INDEX_ENTRIES} accepted",
                    typed.manifests().len()
                ),
            ));
        }
        for d in typed.manifests() {
            check_descriptor_digest(&what, d)?;
        }
        Ok(Document::Index(IndexDoc {
            kind,
            json,
            manifests: typed.manifests().clone(),
        }))
    } else {
        let typed: ImageManifest =
            serde_json::from_slice(&raw.bytes).map_err(|e| malformed(&what, e.to_string()))?;
        if typed.layers().len() > MAX_LAYERS {
            return Err(malformed(
                &what,
                format!(
                    "{} layers, more than the {MAX_LAYERS} accepted",
                    typed.layers().len()
                ),
            ));
        }
        check_descriptor_digest(&what, typed.config())?;
        for d in typed.layers() {
            check_descriptor_digest(&what, d)?;
        }
        Ok(Document::Image(ImageDoc {
            kind,
            json,
            config: typed.config().clone(),
            layers: typed.layers().clone(),
        }))
    }
}

fn schema1() -> Error {
    Error::Unsupported(
        "Docker schema 1 manifests are not supported; convert the image to schema 2 or OCI \
         first (e.g. `skopeo copy --format v2s2`)"
            .into(),
    )
}

/// Applies `upd` to a descriptor object, in place; returns whether anything changed.
fn apply_update(obj: &mut Map<String, Value>, upd: &DescriptorUpdate<'_>) -> bool {
    let mut changed = false;
    for (key, value) in [
        ("mediaType", Value::from(upd.media_type)),
        ("digest", Value::from(upd.digest)),
        ("size", Value::from(upd.size)),
    ] {
        if obj.get(key) != Some(&value) {
            changed = true;
            if obj.contains_key(key) {
                obj.insert(key.to_owned(), value);
            } else {
                let pos = go_position(obj, key);
                obj.shift_insert(pos, key.to_owned(), value);
            }
        }
    }
    if let Some(annotations) = upd.annotations {
        if annotations.is_empty() {
            // Go's `omitempty`: an empty map is not written at all.
            changed |= obj.shift_remove("annotations").is_some();
        } else {
            let value = Value::Object(
                annotations
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
                    .collect(),
            );
            if obj.get("annotations") != Some(&value) {
                changed = true;
                if obj.contains_key("annotations") {
                    obj.insert("annotations".into(), value);
                } else {
                    let pos = go_position(obj, "annotations");
                    obj.shift_insert(pos, "annotations".into(), value);
                }
            }
        }
    }
    changed
}

/// Where Go would put `key` among the members already in `obj`: after the last member that
/// comes before it in Go's Descriptor field order.
fn go_position(obj: &Map<String, Value>, key: &str) -> usize {
    let rank = |k: &str| GO_DESCRIPTOR_ORDER.iter().position(|o| *o == k);
    let Some(key_rank) = rank(key) else {
        return obj.len();
    };
    obj.keys()
        .enumerate()
        .filter(|(_, k)| rank(k).is_some_and(|r| r < key_rank))
        .map(|(i, _)| i + 1)
        .max()
        .unwrap_or(0)
}

fn update_typed(d: &mut Descriptor, upd: &DescriptorUpdate<'_>) -> Result<()> {
    let digest = Digest::from_str(upd.digest)
        .map_err(|e| malformed("descriptor", format!("digest {:?}: {e}", upd.digest)))?;
    d.set_media_type(MediaType::from(upd.media_type));
    d.set_digest(digest);
    d.set_size(upd.size);
    if let Some(a) = upd.annotations {
        d.set_annotations(if a.is_empty() {
            None
        } else {
            Some(
                a.iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect::<HashMap<_, _>>(),
            )
        });
    }
    Ok(())
}

fn descriptor_json(media_type: &str, d: &Descriptor, urls: Option<&Value>) -> Value {
    let mut m = Map::new();
    m.insert("mediaType".into(), Value::from(media_type));
    m.insert("digest".into(), Value::from(d.digest().to_string()));
    m.insert("size".into(), Value::from(d.size()));
    if let Some(u) = urls {
        if u.as_array().is_some_and(|a| !a.is_empty()) {
            m.insert("urls".into(), u.clone());
        }
    }
    Value::Object(m)
}

/// The OCI layer media type c/image converts a Docker schema 2 layer type to.
pub fn docker_layer_to_oci(media_type: &str) -> Option<&'static str> {
    Some(match media_type {
        DOCKER_LAYER_GZIP => OCI_LAYER_GZIP,
        DOCKER_LAYER => OCI_LAYER,
        DOCKER_LAYER_ZSTD => OCI_LAYER_ZSTD,
        DOCKER_FOREIGN => OCI_LAYER_NONDIST,
        DOCKER_FOREIGN_GZIP => OCI_LAYER_NONDIST_GZIP,
        DOCKER_FOREIGN_ZSTD => OCI_LAYER_NONDIST_ZSTD,
        _ => return None,
    })
}

impl ImageDoc {
    /// OCI or Docker.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The media type of the document as it is now.
    pub fn media_type(&self) -> &'static str {
        self.kind.media_type()
    }

    /// The config descriptor.
    pub fn config(&self) -> &Descriptor {
        &self.config
    }

    /// The layer descriptors, as they are now.
    pub fn layers(&self) -> &[Descriptor] {
        &self.layers
    }

    /// Rewrites layer `index`'s `mediaType`, `digest`, `size` and (if given) `annotations`,
    /// leaving every other byte of the document alone.
    pub fn set_layer(&mut self, index: usize, upd: &DescriptorUpdate<'_>) -> Result<()> {
        validate_digest(upd.digest).map_err(|e| malformed("layer descriptor", e))?;
        let layer = self
            .layers
            .get_mut(index)
            .ok_or_else(|| malformed("manifest", format!("no layer {index}")))?;
        update_typed(layer, upd)?;
        let obj = self.json.entry_mut("layers", index)?;
        self.json.changed |= apply_update(obj, upd);
        Ok(())
    }

    /// Converts a Docker schema 2 manifest to an OCI manifest the way containers/image does
    /// (`image/docker_schema2.go`, `convertToManifestOCI1`): a new document
    /// `{schemaVersion, mediaType, config, layers}` in Go field order, layer types mapped
    /// (`diff.tar.gzip` → `tar+gzip`, `diff.tar` → `tar`, foreign → non-distributable), layer
    /// `urls` kept, config media type → OCI. Unlike c/image, the config blob is **not**
    /// re-encoded: its bytes, digest and size stay (a Docker config is a superset of an OCI
    /// config). OCI manifests are left alone.
    pub fn convert_to_oci(&mut self) -> Result<()> {
        if self.kind != Kind::DockerManifest {
            return Ok(());
        }
        let src_layers = self
            .json
            .doc
            .get("layers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut layers = Vec::with_capacity(self.layers.len());
        for (i, d) in self.layers.iter_mut().enumerate() {
            let from = d.media_type().to_string();
            let to = docker_layer_to_oci(&from).ok_or_else(|| {
                Error::Unsupported(format!(
                    "layer media type {from:?} cannot be converted to OCI"
                ))
            })?;
            let urls = src_layers.get(i).and_then(|l| l.get("urls"));
            layers.push(descriptor_json(to, d, urls));
            d.set_media_type(MediaType::from(to));
            d.set_annotations(None);
        }
        self.config.set_media_type(MediaType::ImageConfig);
        let mut doc = Map::new();
        doc.insert("schemaVersion".into(), Value::from(2));
        doc.insert("mediaType".into(), Value::from(OCI_MANIFEST));
        doc.insert(
            "config".into(),
            descriptor_json(OCI_CONFIG, &self.config, None),
        );
        doc.insert("layers".into(), Value::Array(layers));
        self.json.doc = doc;
        self.json.trailing.clear();
        self.json.changed = true;
        self.kind = Kind::OciManifest;
        Ok(())
    }

    /// The bytes: the original ones when nothing changed, otherwise Go-style JSON.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.json.to_bytes()
    }

    /// Bytes, media type and digest.
    pub fn to_raw(&self) -> RawManifest {
        raw(self.to_bytes(), self.media_type())
    }
}

impl IndexDoc {
    /// OCI index or Docker list.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The media type of the document as it is now.
    pub fn media_type(&self) -> &'static str {
        self.kind.media_type()
    }

    /// The entries.
    pub fn manifests(&self) -> &[Descriptor] {
        &self.manifests
    }

    /// The `platform` member of entry `index` as written (typed platforms lose `os.version`).
    pub fn platform_json(&self, index: usize) -> Option<&Map<String, Value>> {
        self.json
            .doc
            .get("manifests")?
            .as_array()?
            .get(index)?
            .get("platform")?
            .as_object()
    }

    /// Rewrites entry `index`'s `mediaType`, `digest` and `size`.
    pub fn set_manifest(
        &mut self,
        index: usize,
        media_type: &str,
        digest: &str,
        size: u64,
    ) -> Result<()> {
        validate_digest(digest).map_err(|e| malformed("index entry", e))?;
        let upd = DescriptorUpdate {
            media_type,
            digest,
            size,
            annotations: None,
        };
        let entry = self
            .manifests
            .get_mut(index)
            .ok_or_else(|| malformed("index", format!("no entry {index}")))?;
        update_typed(entry, &upd)?;
        let obj = self.json.entry_mut("manifests", index)?;
        self.json.changed |= apply_update(obj, &upd);
        Ok(())
    }

    /// Converts a Docker manifest list to an OCI index as containers/image does
    /// (`ToOCI1Index`): entries keep media type, size, digest and urls, platforms are written
    /// in Go's field order (`architecture`, `os`, `os.version`, `os.features`, `variant`).
    /// Entry media types are updated by [`IndexDoc::set_manifest`] as children are converted.
    pub fn convert_to_oci(&mut self) -> Result<()> {
        if self.kind != Kind::DockerList {
            return Ok(());
        }
        let src = self
            .json
            .doc
            .get("manifests")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut entries = Vec::with_capacity(self.manifests.len());
        for (i, d) in self.manifests.iter().enumerate() {
            let src_entry = src.get(i);
            let mut e = match descriptor_json(
                d.media_type().as_ref(),
                d,
                src_entry.and_then(|s| s.get("urls")),
            ) {
                Value::Object(m) => m,
                _ => Map::new(),
            };
            if let Some(Value::Object(p)) = src_entry.and_then(|s| s.get("platform")) {
                let mut platform = Map::new();
                for key in ["architecture", "os", "os.version", "os.features", "variant"] {
                    match p.get(key) {
                        None | Some(Value::Null) => {}
                        Some(Value::String(s)) if s.is_empty() => {}
                        Some(Value::Array(a)) if a.is_empty() => {}
                        Some(v) => {
                            platform.insert(key.into(), v.clone());
                        }
                    }
                }
                // Go writes architecture and os even when empty (no omitempty on them).
                for key in ["architecture", "os"] {
                    if !platform.contains_key(key) {
                        platform.shift_insert(
                            usize::from(key == "os"),
                            key.into(),
                            Value::from(""),
                        );
                    }
                }
                e.insert("platform".into(), Value::Object(platform));
            }
            entries.push(Value::Object(e));
        }
        let mut doc = Map::new();
        doc.insert("schemaVersion".into(), Value::from(2));
        doc.insert("mediaType".into(), Value::from(OCI_INDEX));
        doc.insert("manifests".into(), Value::Array(entries));
        self.json.doc = doc;
        self.json.trailing.clear();
        self.json.changed = true;
        self.kind = Kind::OciIndex;
        Ok(())
    }

    /// The bytes: the original ones when nothing changed, otherwise Go-style JSON.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.json.to_bytes()
    }

    /// Bytes, media type and digest.
    pub fn to_raw(&self) -> RawManifest {
        raw(self.to_bytes(), self.media_type())
    }
}

fn raw(bytes: Vec<u8>, media_type: &str) -> RawManifest {
    let digest = sha256_digest(&bytes);
    RawManifest {
        bytes,
        media_type: media_type.to_owned(),
        digest,
    }
}

/// Serializes `value` as Go's `encoding/json` `Marshal` does: compact, HTML characters and
/// U+2028/U+2029 escaped, control characters other than `\n`, `\r`, `\t` as `\u00XX` (Go
/// before 1.22, which builds the skopeo we interoperate with, also writes `\b` and `\f` that
/// way). Object members are written in the order they are stored; build maps sorted where Go
/// would sort them.
pub fn go_json(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, GoFormatter);
    value
        .serialize(&mut ser)
        .expect("serializing a Value into a Vec cannot fail");
    out
}

/// A compact [`serde_json::ser::Formatter`] with Go's string escaping.
#[derive(Debug, Clone, Copy, Default)]
pub struct GoFormatter;

impl serde_json::ser::Formatter for GoFormatter {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            let esc: &[u8] = match c {
                '<' => b"\\u003c",
                '>' => b"\\u003e",
                '&' => b"\\u0026",
                '\u{2028}' => b"\\u2028",
                '\u{2029}' => b"\\u2029",
                _ => continue,
            };
            writer.write_all(&fragment.as_bytes()[start..i])?;
            writer.write_all(esc)?;
            start = i + c.len_utf8();
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }

    fn write_char_escape<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        char_escape: serde_json::ser::CharEscape,
    ) -> io::Result<()> {
        use serde_json::ser::CharEscape;
        let s: &[u8] = match char_escape {
            CharEscape::Quote => b"\\\"",
            CharEscape::ReverseSolidus => b"\\\\",
            CharEscape::Solidus => b"\\/",
            CharEscape::Backspace => b"\\u0008",
            CharEscape::FormFeed => b"\\u000c",
            CharEscape::LineFeed => b"\\n",
            CharEscape::CarriageReturn => b"\\r",
            CharEscape::Tab => b"\\t",
            CharEscape::AsciiControl(byte) => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                let buf = [
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(byte >> 4)],
                    HEX[usize::from(byte & 0xf)],
                ];
                return writer.write_all(&buf);
            }
        };
        writer.write_all(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
    const D3: &str = "sha256:3333333333333333333333333333333333333333333333333333333333333333";

    fn raw_of(s: &str, mt: &str) -> RawManifest {
        raw(s.as_bytes().to_vec(), mt)
    }

    fn image(s: &str) -> ImageDoc {
        match parse(&raw_of(s, OCI_MANIFEST)).expect("parses") {
            Document::Image(m) => m,
            Document::Index(_) => panic!("not an image"),
        }
    }

    fn skopeo_style() -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{D1}","size":7}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{D2}","size":100,"annotations":{{"a\u003cb":"x\u0026y\u2028","z":"1"}}}},{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{D3}","size":5}}],"annotations":{{"org.opencontainers.image.created":"\u003cnow\u003e"}}}}"#
        )
    }

    #[test]
    fn unchanged_keeps_original_bytes_even_when_pretty() {
        let pretty = format!("{{\n  \"schemaVersion\": 2,\n  \"config\": {{\"mediaType\": \"{OCI_CONFIG}\", \"digest\": \"{D1}\", \"size\": 1}},\n  \"layers\": []\n}}\n");
        let mut m = image(&pretty);
        assert_eq!(m.to_bytes(), pretty.as_bytes());
        m.convert_to_oci().expect("no-op for OCI");
        assert_eq!(m.to_bytes(), pretty.as_bytes());
    }

    #[test]
    fn round_trip_encrypt_decrypt_is_byte_identical() {
        let orig = skopeo_style();
        let mut m = image(&orig);
        // Go's own serialization of the same document must be the input itself.
        let v: Value = serde_json::from_str(&orig).expect("json");
        assert_eq!(String::from_utf8(go_json(&v)).expect("utf8"), orig);

        let before: BTreeMap<String, String> = [
            ("a<b".to_string(), "x&y\u{2028}".to_string()),
            ("z".into(), "1".into()),
        ]
        .into();
        let mut enc = before.clone();
        enc.insert("org.opencontainers.image.enc.pubopts".into(), "e30=".into());
        m.set_layer(
            0,
            &DescriptorUpdate {
                media_type: "application/vnd.oci.image.layer.v1.tar+gzip+encrypted",
                digest: D3,
                size: 100,
                annotations: Some(&enc),
            },
        )
        .expect("set");
        let mut only_enc = BTreeMap::new();
        only_enc.insert(
            "org.opencontainers.image.enc.keys.jwe".to_string(),
            "k".to_string(),
        );
        m.set_layer(
            1,
            &DescriptorUpdate {
                media_type: "application/vnd.oci.image.layer.v1.tar+encrypted",
                digest: D1,
                size: 5,
                annotations: Some(&only_enc),
            },
        )
        .expect("set");
        let encrypted = String::from_utf8(m.to_bytes()).expect("utf8");
        assert!(encrypted.contains(&format!(r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar+encrypted","digest":"{D1}","size":5,"annotations":{{"org.opencontainers.image.enc.keys.jwe":"k"}}}}"#)), "{encrypted}");
        assert!(encrypted.contains(r#""annotations":{"a\u003cb":"x\u0026y\u2028","org.opencontainers.image.enc.pubopts":"e30=","z":"1"}"#), "{encrypted}");

        // And back, starting from the encrypted bytes as a fresh parse.
        let mut m = image(&encrypted);
        m.set_layer(
            0,
            &DescriptorUpdate {
                media_type: OCI_LAYER_GZIP,
                digest: D2,
                size: 100,
                annotations: Some(&before),
            },
        )
        .expect("set");
        m.set_layer(
            1,
            &DescriptorUpdate {
                media_type: OCI_LAYER,
                digest: D3,
                size: 5,
                annotations: Some(&BTreeMap::new()),
            },
        )
        .expect("set");
        assert_eq!(String::from_utf8(m.to_bytes()).expect("utf8"), orig);
    }

    #[test]
    fn trailing_newline_survives_edit_and_revert() {
        let orig = skopeo_style() + "\n";
        let mut m = image(&orig);
        let a = BTreeMap::new();
        m.set_layer(
            1,
            &DescriptorUpdate {
                media_type: OCI_LAYER_GZIP,
                digest: D1,
                size: 6,
                annotations: Some(&a),
            },
        )
        .expect("set");
        let edited = String::from_utf8(m.to_bytes()).expect("utf8");
        assert!(edited.ends_with("}\n") && edited != orig);
        m.set_layer(
            1,
            &DescriptorUpdate {
                media_type: OCI_LAYER,
                digest: D3,
                size: 5,
                annotations: Some(&a),
            },
        )
        .expect("set");
        assert_eq!(String::from_utf8(m.to_bytes()).expect("utf8"), orig);
    }

    #[test]
    fn annotations_inserted_in_go_field_order() {
        let s = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"{OCI_CONFIG}","digest":"{D1}","size":1}},"layers":[{{"mediaType":"{OCI_LAYER}","digest":"{D2}","size":2,"urls":["u"],"platform":{{"architecture":"amd64","os":"linux"}}}}]}}"#
        );
        let mut m = image(&s);
        let a: BTreeMap<String, String> =
            [("b".to_string(), "2".to_string()), ("a".into(), "1".into())].into();
        m.set_layer(
            0,
            &DescriptorUpdate {
                media_type: OCI_LAYER,
                digest: D2,
                size: 2,
                annotations: Some(&a),
            },
        )
        .expect("set");
        let out = String::from_utf8(m.to_bytes()).expect("utf8");
        assert!(
            out.contains(r#""urls":["u"],"annotations":{"a":"1","b":"2"},"platform":"#),
            "{out}"
        );
    }

    #[test]
    fn go_escaping() {
        let v = serde_json::json!({"k": "<>&\u{2028}\u{2029}\u{8}\u{c}\n\u{1}\"\\/é\u{7f}"});
        assert_eq!(
            String::from_utf8(go_json(&v)).expect("utf8"),
            r#"{"k":"\u003c\u003e\u0026\u2028\u2029\u0008\u000c\n\u0001\"\\/é"#.to_owned()
                + "\u{7f}\"}"
        );
    }

    #[test]
    fn refuses_schema1_oversize_and_bad_digests() {
        let s1 = r#"{"schemaVersion":1,"name":"x","fsLayers":[]}"#;
        assert!(
            matches!(parse(&raw_of(s1, "")), Err(Error::Unsupported(m)) if m.contains("schema 1"))
        );
        assert!(matches!(
            parse(&raw_of("{}", DOCKER_SCHEMA1_SIGNED)),
            Err(Error::Unsupported(_))
        ));
        let big = vec![b' '; MAX_MANIFEST_BYTES + 1];
        assert!(matches!(
            parse(&raw(big, OCI_MANIFEST)),
            Err(Error::Malformed { .. })
        ));
        let bad = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"{OCI_CONFIG}","digest":"sha256:../../etc","size":1}},"layers":[]}}"#
        );
        assert!(matches!(
            parse(&raw_of(&bad, OCI_MANIFEST)),
            Err(Error::Malformed { .. })
        ));
        let sha512 = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"{OCI_CONFIG}","digest":"sha512:{}","size":1}},"layers":[]}}"#,
            "a".repeat(128)
        );
        assert!(matches!(
            parse(&raw_of(&sha512, OCI_MANIFEST)),
            Err(Error::Malformed { .. })
        ));
        let mismatch = format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[]}}"#);
        assert!(matches!(
            parse(&raw_of(&mismatch, OCI_MANIFEST)),
            Err(Error::Malformed { .. })
        ));
    }

    #[test]
    fn refuses_too_many_layers_and_entries() {
        let layer = format!(r#"{{"mediaType":"{OCI_LAYER}","digest":"{D2}","size":2}}"#);
        let layers = vec![layer.as_str(); MAX_LAYERS + 1].join(",");
        let s = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"{OCI_CONFIG}","digest":"{D1}","size":1}},"layers":[{layers}]}}"#
        );
        assert!(matches!(
            parse(&raw_of(&s, OCI_MANIFEST)),
            Err(Error::Malformed { .. })
        ));
        let entry = format!(r#"{{"mediaType":"{OCI_MANIFEST}","digest":"{D2}","size":2}}"#);
        let entries = vec![entry.as_str(); MAX_INDEX_ENTRIES + 1].join(",");
        let s = format!(r#"{{"schemaVersion":2,"manifests":[{entries}]}}"#);
        assert!(matches!(
            parse(&raw_of(&s, OCI_INDEX)),
            Err(Error::Malformed { .. })
        ));
    }

    #[test]
    fn docker_schema2_converts_like_c_image() {
        let s = format!(
            r#"{{
   "schemaVersion": 2,
   "mediaType": "{DOCKER_MANIFEST}",
   "config": {{"mediaType": "{DOCKER_CONFIG}", "size": 7, "digest": "{D1}"}},
   "layers": [
      {{"mediaType": "{DOCKER_LAYER_GZIP}", "size": 152, "digest": "{D2}"}},
      {{"mediaType": "{DOCKER_FOREIGN_GZIP}", "size": 9, "digest": "{D3}", "urls": ["https://example.com/l"]}},
      {{"mediaType": "{DOCKER_LAYER}", "size": 5, "digest": "{D1}"}}
   ]
}}"#
        );
        let Document::Image(mut m) = parse(&raw_of(&s, DOCKER_MANIFEST)).expect("parses") else {
            panic!("image")
        };
        assert_eq!(m.kind(), Kind::DockerManifest);
        m.convert_to_oci().expect("converts");
        let expected = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"{OCI_CONFIG}","digest":"{D1}","size":7}},"layers":[{{"mediaType":"{OCI_LAYER_GZIP}","digest":"{D2}","size":152}},{{"mediaType":"{OCI_LAYER_NONDIST_GZIP}","digest":"{D3}","size":9,"urls":["https://example.com/l"]}},{{"mediaType":"{OCI_LAYER}","digest":"{D1}","size":5}}]}}"#
        );
        assert_eq!(String::from_utf8(m.to_bytes()).expect("utf8"), expected);
        assert_eq!(m.media_type(), OCI_MANIFEST);
        assert_eq!(
            m.layers()[1].media_type().to_string(),
            OCI_LAYER_NONDIST_GZIP
        );
    }

    #[test]
    fn docker_list_converts_to_oci_index() {
        let s = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_LIST}","manifests":[{{"mediaType":"{DOCKER_MANIFEST}","size":10,"digest":"{D1}","platform":{{"architecture":"arm","os":"linux","variant":"v7","features":["x"]}}}}]}}"#
        );
        let Document::Index(mut i) = parse(&raw_of(&s, DOCKER_LIST)).expect("parses") else {
            panic!("index")
        };
        i.convert_to_oci().expect("converts");
        i.set_manifest(0, OCI_MANIFEST, D2, 11).expect("set");
        assert_eq!(
            String::from_utf8(i.to_bytes()).expect("utf8"),
            format!(
                r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{D2}","size":11,"platform":{{"architecture":"arm","os":"linux","variant":"v7"}}}}]}}"#
            )
        );
    }
}
