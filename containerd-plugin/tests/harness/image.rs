//! Test images: OCI layouts written with `tar` + `flate2` + `zstd`, encrypted with the
//! layercrypt library (the same code as `layercrypt encrypt`), pushed to the test registry.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use layercrypt_client::encrypt::EncryptHandler;
use layercrypt_client::job::Job;
use layercrypt_client::selection::LayerSelection;
use layercrypt_image::copy::{CopyOptions, LayerAction, LayerContext, LayerHandler, LayerRewrite};
use layercrypt_image::{ImageRef, TransportOptions};
use layercrypt_ocicrypt::layer::Wrappers;
use layercrypt_ocicrypt::options::PublicOptions;
use layercrypt_ocicrypt::spec::ANNOTATION_PUBOPTS;
use layercrypt_ocicrypt::EncryptConfig;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Comp {
    Tar,
    Gzip,
    Zstd,
}

impl Comp {
    fn media_type(self) -> &'static str {
        match self {
            Comp::Tar => "application/vnd.oci.image.layer.v1.tar",
            Comp::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Comp::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }
}

/// One layer: files (path, content, mode) and symlinks (path, target).
pub struct Layer {
    pub files: Vec<(String, Vec<u8>, u32)>,
    pub symlinks: Vec<(String, String)>,
    pub comp: Comp,
}

impl Layer {
    pub fn file(path: &str, content: &[u8], comp: Comp) -> Layer {
        Layer {
            files: vec![(path.into(), content.to_vec(), 0o644)],
            symlinks: vec![],
            comp,
        }
    }
}

pub fn sha256(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

fn write_blob(dir: &Path, bytes: &[u8]) -> String {
    let d = sha256(bytes);
    let p = dir.join("blobs/sha256").join(&d[7..]);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, bytes).unwrap();
    d
}

fn read_blob(dir: &Path, digest: &str) -> Vec<u8> {
    std::fs::read(dir.join("blobs/sha256").join(&digest[7..])).unwrap()
}

/// The tar of `layer`, uncompressed.
pub fn tar_of(layer: &Layer) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut dirs: Vec<String> = Vec::new();
    let all_paths = layer
        .files
        .iter()
        .map(|f| f.0.clone())
        .chain(layer.symlinks.iter().map(|s| s.0.clone()));
    for p in all_paths {
        let mut acc = String::new();
        let parts: Vec<&str> = p.split('/').collect();
        for part in &parts[..parts.len() - 1] {
            acc.push_str(part);
            acc.push('/');
            if !dirs.contains(&acc) {
                dirs.push(acc.clone());
            }
        }
    }
    for d in &dirs {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        h.set_mtime(1);
        h.set_cksum();
        b.append_data(&mut h, d, std::io::empty()).unwrap();
    }
    for (path, content, mode) in &layer.files {
        let mut h = tar::Header::new_ustar();
        h.set_mode(*mode);
        h.set_size(content.len() as u64);
        h.set_mtime(1);
        h.set_cksum();
        b.append_data(&mut h, path, &content[..]).unwrap();
    }
    for (path, target) in &layer.symlinks {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_size(0);
        h.set_mtime(1);
        b.append_link(&mut h, path, target).unwrap();
    }
    b.into_inner().unwrap()
}

fn compress(tar: &[u8], comp: Comp) -> Vec<u8> {
    match comp {
        Comp::Tar => tar.to_vec(),
        Comp::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(tar).unwrap();
            e.finish().unwrap()
        }
        Comp::Zstd => zstd::encode_all(tar, 3).unwrap(),
    }
}

/// Writes an OCI layout with one image tagged `latest`; returns the diff_ids.
pub fn build_layout(dir: &Path, layers: &[Layer], cmd: &[&str]) -> Vec<String> {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let mut diff_ids = Vec::new();
    let mut descs = Vec::new();
    for l in layers {
        let tar = tar_of(l);
        diff_ids.push(sha256(&tar));
        let blob = compress(&tar, l.comp);
        let d = write_blob(dir, &blob);
        descs.push(json!({"mediaType": l.comp.media_type(), "digest": d, "size": blob.len()}));
    }
    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": cmd, "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let config = serde_json::to_vec(&config).unwrap();
    let cd = write_blob(dir, &config);
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()},
        "layers": descs,
    });
    write_index(dir, &serde_json::to_vec(&manifest).unwrap());
    diff_ids
}

fn write_index(dir: &Path, manifest: &[u8]) {
    let md = write_blob(dir, manifest);
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": md, "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": "latest"}
        }]
    });
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
}

/// The manifest of the only image in a layout.
pub fn manifest(dir: &Path) -> Value {
    let index: Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let d = index["manifests"][0]["digest"].as_str().unwrap().to_owned();
    serde_json::from_slice(&read_blob(dir, &d)).unwrap()
}

/// (media type, digest) of every layer.
pub fn layers(dir: &Path) -> Vec<(String, String)> {
    manifest(dir)["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["mediaType"].as_str().unwrap().to_owned(),
                l["digest"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn layout(dir: &Path) -> ImageRef {
    ImageRef::OciLayout {
        dir: dir.to_owned(),
        tag: Some("latest".into()),
    }
}

fn job(src: ImageRef, dst: ImageRef) -> Job {
    Job {
        src,
        dst,
        transport: TransportOptions::default(),
        copy: CopyOptions::default(),
    }
}

/// Encrypts the selected layers of layout `src` (all if empty) for `ec` into layout `dst`.
pub fn encrypt(src: &Path, dst: &Path, ec: &EncryptConfig, layers: Vec<i64>) {
    encrypt_with(src, dst, &Wrappers::new(), ec, layers)
}

/// As [`encrypt`] with other key wrappers (e.g. a group wrapper talking to a broker).
pub fn encrypt_with(
    src: &Path,
    dst: &Path,
    wrappers: &Wrappers,
    ec: &EncryptConfig,
    layers: Vec<i64>,
) {
    let selection = LayerSelection::new(layers);
    let handler = EncryptHandler::new(wrappers, ec, &selection);
    job(layout(src), layout(dst))
        .run(&handler)
        .expect("encrypt");
}

/// Replaces the HMAC in layer `index`'s pubopts: what someone without the layer key who
/// edits the manifest ("re-signs" the layer) can produce.
pub fn tamper_hmac(dir: &Path, index: usize) {
    let mut m = manifest(dir);
    m["layers"][index]["annotations"][ANNOTATION_PUBOPTS] =
        Value::String(PublicOptions::new([0x42; 32]).to_annotation());
    write_index(dir, &serde_json::to_vec(&m).unwrap());
}

/// The known-plaintext forgery (issue 8.15). AES-CTR is malleable: whoever knows the start of
/// a layer's plaintext (a public base layer, a file they put into the image) can turn that part
/// of the ciphertext into any other plaintext of the same length, without the key. The blob is
/// then cut to the forged tar plus the decryptor's 64 KiB hold-back, so a decoder releases
/// exactly the forged tar (a complete archive, end blocks and all) before the HMAC fails at
/// EOF. With `rewrite_diff_id`, the config's diff_id becomes the forged tar's (a registry that
/// serves the manifest and the config can do that too), so that containerd's diff_id check
/// passes and only the decoder's exit status stands between the forgery and a snapshot.
/// Returns the image's diff_ids afterwards.
pub fn forge_known_plaintext(
    dir: &Path,
    index: usize,
    plain_tar: &[u8],
    forged_tar: &[u8],
    rewrite_diff_id: bool,
) -> Vec<String> {
    const HOLD_BACK: usize = 64 * 1024;
    let mut m = manifest(dir);
    let digest = m["layers"][index]["digest"].as_str().unwrap().to_owned();
    let ct = read_blob(dir, &digest);
    assert_eq!(
        ct.len(),
        plain_tar.len(),
        "CTR: ciphertext as long as the plaintext"
    );
    assert!(
        forged_tar.len() + HOLD_BACK <= ct.len(),
        "layer too small to forge in"
    );
    let mut forged: Vec<u8> = ct[..forged_tar.len()]
        .iter()
        .zip(plain_tar)
        .zip(forged_tar)
        .map(|((c, p), f)| c ^ p ^ f)
        .collect();
    forged.extend_from_slice(&ct[forged_tar.len()..forged_tar.len() + HOLD_BACK]);
    let d = write_blob(dir, &forged);
    m["layers"][index]["digest"] = Value::String(d);
    m["layers"][index]["size"] = json!(forged.len());
    let config_digest = m["config"]["digest"].as_str().unwrap().to_owned();
    let mut config: Value = serde_json::from_slice(&read_blob(dir, &config_digest)).unwrap();
    if rewrite_diff_id {
        config["rootfs"]["diff_ids"][index] = Value::String(sha256(forged_tar));
        let bytes = serde_json::to_vec(&config).unwrap();
        m["config"]["digest"] = Value::String(write_blob(dir, &bytes));
        m["config"]["size"] = json!(bytes.len());
    }
    write_index(dir, &serde_json::to_vec(&m).unwrap());
    config["rootfs"]["diff_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

struct PassThrough;

impl LayerHandler for PassThrough {
    fn plan(
        &self,
        _layer: &LayerContext<'_>,
    ) -> Result<LayerAction, Box<dyn std::error::Error + Send + Sync>> {
        Ok(LayerAction::Copy)
    }

    fn transform(
        &self,
        _layer: &LayerContext<'_>,
        _input: &mut dyn Read,
        _output: &mut dyn Write,
    ) -> Result<LayerRewrite, Box<dyn std::error::Error + Send + Sync>> {
        Err("not used".into())
    }
}

/// Pushes layout `dir` to `docker://REFERENCE` unchanged.
pub fn push(dir: &Path, reference: &str) {
    let dst = ImageRef::Registry {
        reference: reference.to_owned(),
    };
    job(layout(dir), dst).run(&PassThrough).expect("push");
}

pub fn path_join(a: &Path, b: &str) -> PathBuf {
    a.join(b)
}
