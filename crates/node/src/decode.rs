//! The decode pipeline of the `layercrypt-decoder` stream processor:
//! stdin (the encrypted blob, exactly as in the content store) → size check → ocicrypt
//! decryption → (zstd only) decompression → stdout.
//!
//! # What containerd gets, and when
//!
//! The [`Decryptor`](layercrypt_ocicrypt::blockcipher::Decryptor) releases nothing of the last
//! 64 KiB of plaintext before the HMAC over the whole ciphertext has verified. So when the
//! layer was modified, truncated or extended, containerd never sees a complete stream: the
//! unpack fails on a short gzip stream, a short tar or at the latest on the diffID check —
//! deterministically, even when containerd misses our exit status (a race observed in 1.6,
//! see `docs/worker-node.md`).
//!
//! - `tar+gzip+encrypted` → `tar+gzip`: the output is the decrypted gzip blob; containerd
//!   decompresses it. Its gzip trailer (CRC + size) lies in the held-back tail.
//! - `tar+encrypted` → `tar`: the output is the decrypted tar; its end-of-archive blocks lie in
//!   the held-back tail.
//! - `tar+zstd+encrypted` → `tar`: containerd sends no payload to any processor but the two
//!   imgcrypt IDs, and the `.tar` ID must return plain tar, so we decompress here. This does
//!   not weaken the hold-back: zstd only emits the data of a block once the whole compressed
//!   block has been read, and the decoder reads only *released* ciphertext. The last
//!   compressed block (which carries the end of the tar stream) ends inside the held-back
//!   tail, so no output that completes the tar stream exists before the HMAC has verified.
//!   After the zstd stream ends we still read the decryptor to its end, which is where the
//!   HMAC is checked, and refuse trailing data.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::Path;

use layercrypt_group::payload::GroupPayload;
use layercrypt_ocicrypt::annotations::LayerAnnotations;
use layercrypt_ocicrypt::blockcipher::{unwrap_io, CHUNK};
use layercrypt_ocicrypt::layer::{decrypt_layer_for, Wrappers};
use layercrypt_ocicrypt::spec::{
    ANNOTATION_KEYS_PROVIDER_PREFIX, MEDIA_TYPE_LAYER_ND_TAR, MEDIA_TYPE_LAYER_ND_TAR_GZIP,
    MEDIA_TYPE_LAYER_ND_TAR_ZSTD, MEDIA_TYPE_LAYER_TAR, MEDIA_TYPE_LAYER_TAR_GZIP,
    MEDIA_TYPE_LAYER_TAR_ZSTD, PROVIDER_LAYERCRYPT,
};
use layercrypt_ocicrypt::DecryptConfig;
use tracing::debug;

use crate::broker::{group_failure, GroupStatus};
use crate::config::NodeConfig;
use crate::error::{Error, Result};
use crate::keydir::KeyDirReport;
use crate::payload::LayerDescriptor;

/// Environment variable in which containerd passes the input media type.
pub const ENV_MEDIATYPE: &str = "STREAM_PROCESSOR_MEDIATYPE";

/// What the decrypted blob is and what the decoder writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerKind {
    /// Plain tar in, plain tar out.
    Tar,
    /// gzip in, gzip out (containerd decompresses).
    Gzip,
    /// zstd in, plain tar out (decompressed here).
    Zstd,
}

impl LayerKind {
    /// The kind of an encrypted layer media type.
    pub fn from_media_type(media_type: &str) -> Result<Self> {
        let plain = media_type
            .strip_suffix("+encrypted")
            .ok_or_else(|| Error::MediaType(media_type.to_owned()))?;
        match plain {
            MEDIA_TYPE_LAYER_TAR | MEDIA_TYPE_LAYER_ND_TAR => Ok(LayerKind::Tar),
            MEDIA_TYPE_LAYER_TAR_GZIP | MEDIA_TYPE_LAYER_ND_TAR_GZIP => Ok(LayerKind::Gzip),
            MEDIA_TYPE_LAYER_TAR_ZSTD | MEDIA_TYPE_LAYER_ND_TAR_ZSTD => Ok(LayerKind::Zstd),
            _ => Err(Error::MediaType(media_type.to_owned())),
        }
    }
}

/// Everything the pipeline needs besides the streams.
pub struct DecodeRequest<'a> {
    /// Input media type (`STREAM_PROCESSOR_MEDIATYPE`, else the descriptor's).
    pub media_type: &'a str,
    /// The layer descriptor from the payload.
    pub descriptor: &'a LayerDescriptor,
    /// Key wrappers (JWE, PKCS#7, configured key providers, the node's group wrapper).
    pub wrappers: &'a Wrappers,
    /// The node's keys.
    pub keys: &'a DecryptConfig,
    /// What the key directory held, for "no key" messages.
    pub key_dir: &'a KeyDirReport,
    /// The node configuration (trusted brokers).
    pub node: &'a NodeConfig,
    /// The node config file, for messages.
    pub node_file: Option<&'a Path>,
    /// What the node's group wrapper learnt from the broker (None: no broker configured).
    pub group: Option<&'a GroupStatus>,
}

/// Counts the ciphertext and fails *before* reporting EOF if its length differs from the
/// descriptor's size, so that the decryptor never releases its tail for a wrong-sized blob.
struct SizeChecked<R> {
    inner: R,
    expected: Option<u64>,
    seen: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("the layer data is {actual} bytes, but its descriptor says {expected}")]
struct SizeMismatch {
    expected: u64,
    actual: u64,
}

impl<R: Read> Read for SizeChecked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.seen += n as u64;
        if let Some(expected) = self.expected {
            if self.seen > expected || (n == 0 && !buf.is_empty() && self.seen != expected) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    SizeMismatch {
                        expected,
                        actual: self.seen,
                    },
                ));
            }
        }
        Ok(n)
    }
}

/// Maps a read error of the decrypting stream to the cause to report.
fn read_error(e: io::Error) -> Error {
    if e.get_ref().is_some_and(|i| i.is::<SizeMismatch>()) {
        return Error::Tampered(e.to_string());
    }
    match unwrap_io(e) {
        layercrypt_ocicrypt::Error::Io(io) => Error::Io {
            what: "reading the encrypted layer from stdin",
            source: io,
        },
        other => Error::from(other),
    }
}

fn write_error(e: io::Error) -> Error {
    Error::Io {
        what: "writing the decrypted layer to stdout",
        source: e,
    }
}

/// Copies `input` to `output` until `input` reports EOF; read and write errors are told apart.
fn pump(input: &mut dyn Read, output: &mut dyn Write) -> Result<u64> {
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_error(e)),
        };
        output.write_all(&buf[..n]).map_err(write_error)?;
        total += n as u64;
    }
}

/// The group payloads of a layer (the `provider.layercrypt` annotation), for messages.
fn group_payloads(ann: &LayerAnnotations) -> Vec<GroupPayload> {
    let key = format!("{ANNOTATION_KEYS_PROVIDER_PREFIX}{PROVIDER_LAYERCRYPT}");
    ann.wrapped
        .get(&key)
        .map(|items| {
            items
                .iter()
                .filter_map(|i| GroupPayload::parse(i).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The "no key" error, naming who could decrypt the layer and what this node has; for a
/// group layer, why the broker did not release the key.
fn no_key(req: &DecodeRequest<'_>, ann: &LayerAnnotations, wrapped_for: String) -> Error {
    let groups = group_payloads(ann);
    if let Some(g) = groups.first() {
        // With several group items, prefer one whose broker this node trusts.
        let g = groups
            .iter()
            .find(|p| req.node.broker_allowed(&p.broker))
            .unwrap_or(g);
        return Error::Group(group_failure(req.node, req.node_file, g, req.group));
    }
    Error::NoKey {
        detail: format!(
            "it is wrapped for: {wrapped_for}; this node has {}",
            req.key_dir.describe()
        ),
    }
}

/// Decrypts one layer from `input` to `output`. On success everything was written and the
/// HMAC verified; on error the held-back tail was not written. Returns the bytes written.
pub fn decode_layer(
    req: &DecodeRequest<'_>,
    input: &mut dyn Read,
    output: &mut dyn Write,
) -> Result<u64> {
    let kind = LayerKind::from_media_type(req.media_type)?;
    let ann = LayerAnnotations::parse(&req.descriptor.annotations)?;
    if !ann.has_wrapped_keys() {
        return Err(Error::NoKey {
            detail: "the layer descriptor carries no org.opencontainers.image.enc.keys.* annotation; it is not an ocicrypt layer".into(),
        });
    }
    let checked = SizeChecked {
        inner: input,
        expected: (req.descriptor.size > 0).then_some(req.descriptor.size),
        seen: 0,
    };
    let mut plain = match decrypt_layer_for(
        req.wrappers,
        req.keys,
        &ann,
        checked,
        Some(&req.descriptor.digest),
    ) {
        Ok(d) => d,
        Err(layercrypt_ocicrypt::Error::NoMatchingKey { wrapped_for }) => {
            return Err(no_key(req, &ann, wrapped_for))
        }
        Err(layercrypt_ocicrypt::Error::UnwrapFailed { wrapped_for, .. })
            if !group_payloads(&ann).is_empty() =>
        {
            return Err(no_key(req, &ann, wrapped_for))
        }
        Err(e) => return Err(e.into()),
    };
    debug!(?kind, "layer key unwrapped");
    let written = match kind {
        LayerKind::Tar | LayerKind::Gzip => pump(&mut plain, output)?,
        LayerKind::Zstd => {
            let mut z = zstd::stream::read::Decoder::with_buffer(BufReader::with_capacity(
                CHUNK, &mut plain,
            ))
            .map_err(|e| Error::Zstd(e.to_string()))?;
            let n = pump(&mut z, output).map_err(|e| match e {
                Error::Io { what, source } if what.starts_with("reading") => {
                    Error::Zstd(source.to_string())
                }
                other => other,
            })?;
            // Read the decryptor to its end (the HMAC check) and refuse trailing bytes.
            let mut rest = z.finish();
            let trailing = loop {
                match rest.fill_buf() {
                    Ok(b) => break b.len(),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(read_error(e)),
                }
            };
            if trailing > 0 {
                return Err(Error::Zstd("trailing data after the zstd stream".into()));
            }
            n
        }
    };
    output.flush().map_err(write_error)?;
    Ok(written)
}

#[cfg(test)]
mod tests;
