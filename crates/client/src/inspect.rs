//! `inspect`: per layer its media type, whether it is encrypted and who can decrypt it.
//! Reads manifests only, never layer data, and needs no private key.

use std::fmt;
use std::path::PathBuf;

use layercrypt_image::transport::TransportOptions;
use layercrypt_image::{ImageRef, ImageSource, RawManifest};
use layercrypt_ocicrypt::annotations::LayerAnnotations;
use layercrypt_ocicrypt::keys::{load_key_file, Certificate, CertificateSummary, KeyMaterial};
use layercrypt_ocicrypt::keywrap::RecipientInfo;
use layercrypt_ocicrypt::layer::{recipient_summary, recipients_of, Wrappers};
use layercrypt_ocicrypt::spec::is_encrypted_media_type;
use layercrypt_proto::text::escape;
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};
use serde::Serialize;

use crate::error::{Error, Result};

/// What `inspect` found.
#[derive(Debug, Serialize)]
pub struct ImageReport {
    /// The image reference.
    pub image: String,
    /// Digest of the top-level manifest or index.
    pub digest: String,
    /// One entry per image manifest (several for a multi-platform index).
    pub manifests: Vec<ManifestReport>,
}

/// One image manifest.
#[derive(Debug, Serialize)]
pub struct ManifestReport {
    /// Manifest digest.
    pub digest: String,
    /// Manifest media type.
    pub media_type: String,
    /// `os/arch[/variant]` when listed in an index.
    pub platform: Option<String>,
    /// Layers in order.
    pub layers: Vec<LayerReport>,
}

/// One layer.
#[derive(Debug, Serialize)]
pub struct LayerReport {
    /// 0-based position.
    pub index: usize,
    /// Blob digest.
    pub digest: String,
    /// Blob size.
    pub size: u64,
    /// Media type.
    pub media_type: String,
    /// Whether the layer is encrypted.
    pub encrypted: bool,
    /// Who can decrypt it.
    pub recipients: Vec<RecipientReport>,
    /// Why the annotations could not be read, if they could not.
    pub error: Option<String>,
}

/// One recipient of a layer.
#[derive(Debug, Serialize)]
pub struct RecipientReport {
    /// What the annotation says.
    #[serde(flatten)]
    pub info: RecipientInfo,
    /// One-line description.
    pub summary: String,
    /// The certificate, when one of the `--cert` files is the recipient.
    pub certificate: Option<CertificateSummary>,
}

/// Reads the image's manifests and describes every layer. `certs` are files whose
/// certificates name PKCS#7 recipients (subject DN, validity).
pub fn inspect_image(
    image: &ImageRef,
    transport: &TransportOptions,
    wrappers: &Wrappers,
    certs: &[PathBuf],
) -> Result<ImageReport> {
    let known = load_certs(certs)?;
    let mut src = image.open_source(transport)?;
    let top = src.top_manifest()?;
    let mut manifests = Vec::new();
    collect(
        src.as_mut(),
        &top,
        None,
        wrappers,
        &known,
        &mut manifests,
        0,
    )?;
    Ok(ImageReport {
        image: image.to_string(),
        digest: top.digest.clone(),
        manifests,
    })
}

fn load_certs(paths: &[PathBuf]) -> Result<Vec<Certificate>> {
    let mut out = Vec::new();
    for p in paths {
        for m in load_key_file(p, None)? {
            if let KeyMaterial::Certificate(c) = m {
                out.push(c);
            }
        }
    }
    Ok(out)
}

fn is_index(m: &RawManifest) -> bool {
    m.media_type.contains("index") || m.media_type.contains("manifest.list")
}

fn malformed(what: &str, e: impl fmt::Display) -> Error {
    Error::Image(layercrypt_image::Error::Malformed {
        what: what.to_owned(),
        reason: e.to_string(),
    })
}

fn collect(
    src: &mut dyn ImageSource,
    m: &RawManifest,
    platform: Option<String>,
    wrappers: &Wrappers,
    known: &[Certificate],
    out: &mut Vec<ManifestReport>,
    depth: usize,
) -> Result<()> {
    if is_index(m) {
        if depth > 1 {
            return Err(malformed(
                &format!("index {}", m.digest),
                "nested more than twice",
            ));
        }
        let index = ImageIndex::from_reader(&m.bytes[..])
            .map_err(|e| malformed(&format!("index {}", m.digest), e))?;
        for d in index.manifests() {
            let child = src.manifest(d)?;
            let p = d.platform().as_ref().map(|p| {
                let mut s = format!("{}/{}", p.os(), p.architecture());
                if let Some(v) = p.variant() {
                    s.push('/');
                    s.push_str(v);
                }
                s
            });
            collect(src, &child, p, wrappers, known, out, depth + 1)?;
        }
        return Ok(());
    }
    let manifest = ImageManifest::from_reader(&m.bytes[..])
        .map_err(|e| malformed(&format!("manifest {}", m.digest), e))?;
    let layers = manifest
        .layers()
        .iter()
        .enumerate()
        .map(|(i, d)| layer_report(i, d, wrappers, known))
        .collect();
    out.push(ManifestReport {
        digest: m.digest.clone(),
        media_type: m.media_type.clone(),
        platform,
        layers,
    });
    Ok(())
}

fn layer_report(
    index: usize,
    d: &Descriptor,
    wrappers: &Wrappers,
    known: &[Certificate],
) -> LayerReport {
    let media_type = d.media_type().to_string();
    let mut report = LayerReport {
        index,
        digest: d.digest().to_string(),
        size: d.size(),
        encrypted: is_encrypted_media_type(&media_type),
        media_type,
        recipients: Vec::new(),
        error: None,
    };
    let empty = std::collections::HashMap::new();
    let ann = match LayerAnnotations::parse(d.annotations().as_ref().unwrap_or(&empty)) {
        Ok(a) => a,
        Err(e) => {
            report.error = Some(e.to_string());
            return report;
        }
    };
    if report.encrypted && !ann.has_wrapped_keys() {
        report.error =
            Some("encrypted media type but no wrapped key: nobody can decrypt it".into());
    }
    for (key, items) in &ann.wrapped {
        for item in items {
            match recipients_of(wrappers, key, item) {
                Ok(rs) => report.recipients.extend(rs.into_iter().map(|info| {
                    let certificate = match &info {
                        RecipientInfo::Pkcs7 { issuer, serial } => known
                            .iter()
                            .map(Certificate::summary)
                            .find(|s| &s.issuer == issuer && &s.serial == serial),
                        _ => None,
                    };
                    RecipientReport {
                        summary: recipient_summary(&info),
                        info,
                        certificate,
                    }
                })),
                Err(e) => report.error = Some(format!("{key}: {e}")),
            }
        }
    }
    report
}

/// The human-readable report. Everything in it comes from the image (manifests, annotations),
/// which an attacker may have written: it is escaped so that no control sequence reaches the
/// terminal (`--json` stays exact).
impl fmt::Display for ImageReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "image {} ({})",
            escape(&self.image),
            escape(&self.digest)
        )?;
        for m in &self.manifests {
            match &m.platform {
                Some(p) => writeln!(f, "manifest {} [{}]", escape(&m.digest), escape(p))?,
                None => writeln!(f, "manifest {}", escape(&m.digest))?,
            }
            for l in &m.layers {
                let state = if l.encrypted { "encrypted" } else { "plain" };
                writeln!(
                    f,
                    "  layer {} {} {} bytes {} ({})",
                    l.index,
                    escape(&l.digest),
                    l.size,
                    state,
                    escape(&l.media_type)
                )?;
                for r in &l.recipients {
                    writeln!(f, "    recipient: {}", escape(&r.summary))?;
                    if let Some(c) = &r.certificate {
                        writeln!(
                            f,
                            "      subject {} valid {} to {}",
                            escape(&c.subject),
                            c.not_before,
                            c.not_after
                        )?;
                    }
                }
                if let Some(e) = &l.error {
                    writeln!(f, "    problem: {}", escape(e))?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_report_escapes_what_the_image_says() {
        // An annotation or manifest that carries terminal controls must not reach the terminal
        // raw: `\x1b[2K\r` would erase the line and write a forged one (issue 8.7).
        let evil = "x\x1b[2K\rrecipient: jwe (trusted)\u{9b}0m\u{202e}";
        let report = ImageReport {
            image: "oci:img:latest".into(),
            digest: "sha256:00".into(),
            manifests: vec![ManifestReport {
                digest: "sha256:11".into(),
                media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                platform: Some(format!("linux/{evil}")),
                layers: vec![LayerReport {
                    index: 0,
                    digest: "sha256:22".into(),
                    size: 1,
                    media_type: format!("application/{evil}"),
                    encrypted: true,
                    recipients: vec![RecipientReport {
                        info: RecipientInfo::Provider {
                            name: evil.into(),
                            detail: None,
                        },
                        summary: format!("key provider {evil}"),
                        certificate: None,
                    }],
                    error: Some(evil.into()),
                }],
            }],
        };
        let text = report.to_string();
        assert!(
            !text
                .chars()
                .any(|c| (c.is_control() && c != '\n') || c == '\u{202e}'),
            "{text:?}"
        );
        assert!(text.contains("\\u{1b}[2K\\rrecipient"), "{text}");
        // JSON stays exact: serde escapes the controls itself, and a reader gets them back.
        let json = serde_json::to_string(&report).expect("json");
        let back: serde_json::Value = serde_json::from_str(&json).expect("parse");
        assert_eq!(back["manifests"][0]["layers"][0]["error"], evil);
    }
}
