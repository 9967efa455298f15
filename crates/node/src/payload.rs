//! The decryption payload containerd passes a stream processor on fd 3.
//!
//! Wire format (observed on containerd 1.6.20, see `docs/worker-node.md`): a protobuf
//! `google.protobuf.Any` — field 1 `type_url` = `io.containerd.ocicrypt.v1.Payload`, field 2
//! `value` — whose value is **JSON** (typeurl JSON-encodes the non-proto Go struct
//! `imgcrypt.Payload`):
//!
//! ```json
//! {"DecryptConfig":{"Parameters":{"privkeys":["<b64>"],…}|null},
//!  "Descriptor":{"mediaType":"…","digest":"sha256:…","size":N,"annotations":{…}}}
//! ```
//!
//! The CRI node key model sends `"Parameters": null`; imgcrypt's `ctr-enc --key` fills in
//! `privkeys`, `privkeys-passwords` and `x509s`. Every other parameter (gpg, pkcs11) is
//! ignored and never logged.
//!
//! The payload arrives **only** on fd 3, and only for the processor IDs
//! `io.containerd.ocicrypt.decoder.v1.tar` and `io.containerd.ocicrypt.decoder.v1.tar.gzip`.
//! We test fd 3 specifically (not "any extra fd"): containerd passes its own inherited fds on
//! to the processor when its caller leaked some.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use layercrypt_ocicrypt::SecretBytes;
use serde::Deserialize;
use zeroize::{Zeroize, Zeroizing};

use crate::error::{Error, Result};

/// `type_url` of the payload `Any` (imgcrypt `payload.go`; no `type.googleapis.com/` prefix).
pub const PAYLOAD_TYPE_URL: &str = "io.containerd.ocicrypt.v1.Payload";

/// Largest payload read from fd 3. Observed payloads are 1.5 KiB (one JWE recipient); a layer
/// with many recipients or `ctr-enc` keys stays far below. Bounds what the caller controls.
pub const MAX_PAYLOAD_LEN: u64 = 4 * 1024 * 1024;

/// Largest number of keys accepted per parameter.
const MAX_PARAM_ITEMS: usize = 64;

/// Where the payload is read from.
pub const PAYLOAD_FD_PATH: &str = "/proc/self/fd/3";

/// The layer descriptor containerd is applying (from the payload).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LayerDescriptor {
    /// Media type of the encrypted layer.
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    /// Digest of the encrypted blob, `sha256:<hex>`.
    pub digest: String,
    /// Size of the encrypted blob in bytes.
    #[serde(default)]
    pub size: u64,
    /// Annotations, including the `org.opencontainers.image.enc.*` ones.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// Keys passed in the payload (imgcrypt `ctr-enc --key`). Debug never shows them.
#[derive(Default)]
pub struct PayloadKeys {
    /// `privkeys`: private key files, as their bytes.
    pub private_keys: Vec<SecretBytes>,
    /// `privkeys-passwords`: passphrases, index-aligned with `private_keys`.
    pub passwords: Vec<SecretBytes>,
    /// `x509s`: certificates (PKCS#7 needs the certificate beside the private key).
    pub x509s: Vec<Vec<u8>>,
}

impl std::fmt::Debug for PayloadKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PayloadKeys")
            .field("private_keys", &self.private_keys.len())
            .field("passwords", &self.passwords.len())
            .field("x509s", &self.x509s.len())
            .finish()
    }
}

/// The decoded payload.
#[derive(Debug)]
pub struct Payload {
    /// The layer being applied.
    pub descriptor: LayerDescriptor,
    /// Keys passed with it (empty for the CRI node key model).
    pub keys: PayloadKeys,
}

/// Reads fd 3 to EOF and decodes it. Must run before the process opens any file, so that
/// fd 3 cannot be one of our own.
pub fn read_from_fd3() -> Result<Payload> {
    let bytes = read_fd(Path::new(PAYLOAD_FD_PATH))?;
    decode(&bytes)
}

/// Reads the payload bytes from `path` (a `/proc/self/fd/N` link): it must exist and be a
/// pipe or a regular file.
pub fn read_fd(path: &Path) -> Result<Zeroizing<Vec<u8>>> {
    use std::os::unix::fs::FileTypeExt;
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Error::NoPayload),
        Err(e) => return Err(Error::Payload(format!("cannot inspect fd 3: {e}"))),
    };
    let ft = meta.file_type();
    if !(ft.is_fifo() || ft.is_file()) {
        let kind = if ft.is_socket() {
            "a socket"
        } else if ft.is_char_device() {
            "a character device"
        } else if ft.is_dir() {
            "a directory"
        } else {
            "not a pipe"
        };
        return Err(Error::Payload(format!(
            "fd 3 is {kind}, not the payload pipe (an fd leaked by whoever started containerd?); {}",
            Error::NoPayload
        )));
    }
    let file =
        std::fs::File::open(path).map_err(|e| Error::Payload(format!("cannot open fd 3: {e}")))?;
    let mut buf = Zeroizing::new(Vec::new());
    file.take(MAX_PAYLOAD_LEN + 1)
        .read_to_end(&mut buf)
        .map_err(|e| Error::Payload(format!("reading fd 3: {e}")))?;
    if buf.len() as u64 > MAX_PAYLOAD_LEN {
        return Err(Error::Payload(format!(
            "larger than {MAX_PAYLOAD_LEN} bytes"
        )));
    }
    if buf.is_empty() {
        return Err(Error::Payload(
            "fd 3 is open but empty: no payload was written".into(),
        ));
    }
    Ok(buf)
}

/// A protobuf reader for exactly what `Any` needs: varints and length-delimited fields.
///
/// No protobuf crate: `Any` is two length-delimited fields, and a hand-written reader of ~30
/// lines is easier to audit (and to bound) than a code generator plus runtime in a process
/// that handles private keys.
struct Wire<'a> {
    buf: &'a [u8],
}

impl<'a> Wire<'a> {
    fn varint(&mut self) -> Result<u64> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let (&b, rest) = self
                .buf
                .split_first()
                .ok_or_else(|| Error::Payload("truncated varint".into()))?;
            self.buf = rest;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(Error::Payload("varint longer than 10 bytes".into()))
    }

    fn bytes(&mut self) -> Result<&'a [u8]> {
        let len = usize::try_from(self.varint()?)
            .map_err(|_| Error::Payload("field length overflows".into()))?;
        if len > self.buf.len() {
            return Err(Error::Payload("field longer than the payload".into()));
        }
        let (field, rest) = self.buf.split_at(len);
        self.buf = rest;
        Ok(field)
    }
}

/// Splits a marshalled `Any` into `(type_url, value)`.
pub fn decode_any(bytes: &[u8]) -> Result<(&[u8], &[u8])> {
    let mut w = Wire { buf: bytes };
    let (mut type_url, mut value): (&[u8], &[u8]) = (&[], &[]);
    while !w.buf.is_empty() {
        let key = w.varint()?;
        match (key >> 3, key & 7) {
            (1, 2) => type_url = w.bytes()?,
            (2, 2) => value = w.bytes()?,
            (field, wire) => {
                return Err(Error::Payload(format!(
                    "not a protobuf Any: unexpected field {field} (wire type {wire})"
                )))
            }
        }
    }
    Ok((type_url, value))
}

#[derive(Deserialize)]
struct PayloadJson {
    #[serde(rename = "DecryptConfig", default)]
    decrypt_config: Option<DecryptConfigJson>,
    #[serde(rename = "Descriptor")]
    descriptor: LayerDescriptor,
}

#[derive(Deserialize)]
struct DecryptConfigJson {
    #[serde(rename = "Parameters", default)]
    parameters: Option<ParamsJson>,
}

/// Only the parameters we use; serde skips the others (gpg, pkcs11, provider parameters)
/// without keeping them.
#[derive(Deserialize, Default)]
struct ParamsJson {
    #[serde(default)]
    privkeys: Option<Vec<String>>,
    #[serde(rename = "privkeys-passwords", default)]
    privkeys_passwords: Option<Vec<String>>,
    #[serde(default)]
    x509s: Option<Vec<String>>,
}

impl Drop for ParamsJson {
    fn drop(&mut self) {
        for list in [&mut self.privkeys, &mut self.privkeys_passwords] {
            for s in list.iter_mut().flatten() {
                s.zeroize();
            }
        }
    }
}

fn decode_list(name: &str, list: &Option<Vec<String>>) -> Result<Vec<SecretBytes>> {
    let list = list.as_deref().unwrap_or_default();
    if list.len() > MAX_PARAM_ITEMS {
        return Err(Error::Payload(format!(
            "parameter {name} has more than {MAX_PARAM_ITEMS} items"
        )));
    }
    list.iter()
        .enumerate()
        .map(|(i, s)| {
            STANDARD
                .decode(s)
                .map(SecretBytes::new)
                .map_err(|_| Error::Payload(format!("parameter {name} item {i} is not base64")))
        })
        .collect()
}

/// Decodes the payload bytes (the marshalled `Any`).
pub fn decode(bytes: &[u8]) -> Result<Payload> {
    let (type_url, value) = decode_any(bytes)?;
    if type_url != PAYLOAD_TYPE_URL.as_bytes() {
        return Err(Error::Payload(format!(
            "type URL is {:?}, expected {PAYLOAD_TYPE_URL:?}",
            String::from_utf8_lossy(&type_url[..type_url.len().min(100)])
        )));
    }
    let json: PayloadJson = serde_json::from_slice(value)
        .map_err(|e| Error::Payload(format!("value is not the imgcrypt payload JSON: {e}")))?;
    validate_digest(&json.descriptor.digest)?;
    let params = json
        .decrypt_config
        .as_ref()
        .and_then(|d| d.parameters.as_ref());
    let keys = match params {
        None => PayloadKeys::default(),
        Some(p) => PayloadKeys {
            private_keys: decode_list("privkeys", &p.privkeys)?,
            passwords: decode_list("privkeys-passwords", &p.privkeys_passwords)?,
            x509s: decode_list("x509s", &p.x509s)?
                .into_iter()
                .map(|c| c.expose_secret().to_vec())
                .collect(),
        },
    };
    Ok(Payload {
        descriptor: json.descriptor,
        keys,
    })
}

/// Checks `ALG:HEX` with a known algorithm, so the digest can go into error lines verbatim.
fn validate_digest(d: &str) -> Result<()> {
    let ok = match d.split_once(':') {
        Some(("sha256", hex)) => hex.len() == 64,
        Some(("sha384", hex)) => hex.len() == 96,
        Some(("sha512", hex)) => hex.len() == 128,
        _ => false,
    } && d.split_once(':').is_some_and(|(_, h)| {
        h.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    });
    if ok {
        Ok(())
    } else {
        Err(Error::Payload(
            "descriptor digest is not sha256:<hex>".into(),
        ))
    }
}

/// Marshals a payload `Any` exactly as containerd does (for tests and tools).
pub fn encode_any(type_url: &str, value: &[u8]) -> Vec<u8> {
    fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    let mut out = Vec::with_capacity(type_url.len() + value.len() + 12);
    out.push(0x0a);
    varint(&mut out, type_url.len() as u64);
    out.extend_from_slice(type_url.as_bytes());
    out.push(0x12);
    varint(&mut out, value.len() as u64);
    out.extend_from_slice(value);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:8cfd588443aef63c377501e8b424b7846747b35b1b864c7b298ab8850f8ba465";

    fn json(params: &str) -> String {
        format!(
            r#"{{"DecryptConfig":{{"Parameters":{params}}},"Descriptor":{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip+encrypted","digest":"{DIGEST}","size":1084226,"annotations":{{"org.opencontainers.image.enc.pubopts":"eyJ9"}}}}}}"#
        )
    }

    #[test]
    fn decodes_the_observed_cri_payload() {
        let bytes = encode_any(PAYLOAD_TYPE_URL, json("null").as_bytes());
        // The observed prefix: 0a 21 "io.containerd.ocicrypt.v1.Payload" 12 <varint len>.
        assert_eq!(&bytes[..2], &[0x0a, 0x21]);
        assert_eq!(bytes[0x23], 0x12);
        let p = decode(&bytes).expect("decode");
        assert_eq!(p.descriptor.digest, DIGEST);
        assert_eq!(p.descriptor.size, 1084226);
        assert!(p.descriptor.media_type.ends_with("+gzip+encrypted"));
        assert_eq!(p.descriptor.annotations.len(), 1);
        assert!(p.keys.private_keys.is_empty());
    }

    #[test]
    fn takes_keys_and_ignores_other_parameters() {
        let params = r#"{"privkeys":["a2V5MQ==","a2V5Mg=="],"privkeys-passwords":["","cGFzcw=="],"x509s":["Y2VydA=="],"gpg-privatekeys":["Z3Bn"],"pkcs11-yamls":null}"#;
        let p = decode(&encode_any(PAYLOAD_TYPE_URL, json(params).as_bytes())).expect("decode");
        assert_eq!(p.keys.private_keys.len(), 2);
        assert_eq!(p.keys.private_keys[1].expose_secret(), b"key2");
        assert_eq!(p.keys.passwords[1].expose_secret(), b"pass");
        assert_eq!(p.keys.x509s, vec![b"cert".to_vec()]);
        let dbg = format!("{:?}", p.keys);
        assert!(!dbg.contains("key1") && !dbg.contains("a2V5"), "{dbg}");
    }

    #[test]
    fn rejects_bad_wire_data() {
        let good = encode_any(PAYLOAD_TYPE_URL, json("null").as_bytes());
        for n in [1, 2, 20, 36, good.len() - 1] {
            assert!(decode(&good[..n]).is_err(), "truncated at {n}");
        }
        assert!(decode(&encode_any("type.googleapis.com/x", b"{}")).is_err());
        assert!(decode(&[0x08, 0x01]).is_err(), "varint field");
        assert!(
            decode(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01])
                .is_err()
        );
        assert!(decode(&encode_any(PAYLOAD_TYPE_URL, b"not json")).is_err());
        let bad_digest = json("null").replace(DIGEST, "sha256:../../etc");
        assert!(decode(&encode_any(PAYLOAD_TYPE_URL, bad_digest.as_bytes())).is_err());
        let bad_b64 = json(r#"{"privkeys":["***"]}"#);
        assert!(decode(&encode_any(PAYLOAD_TYPE_URL, bad_b64.as_bytes())).is_err());
    }

    #[test]
    fn long_values_use_multibyte_lengths() {
        let value = json("null") + &" ".repeat(20_000);
        let p = decode(&encode_any(PAYLOAD_TYPE_URL, value.as_bytes())).expect("decode");
        assert_eq!(p.descriptor.digest, DIGEST);
    }

    #[test]
    fn fd_checks() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A missing fd link is "no payload", with the hint.
        let err = read_fd(&dir.path().join("3")).expect_err("missing");
        assert!(matches!(err, Error::NoPayload));
        assert!(err
            .to_string()
            .contains("io.containerd.ocicrypt.decoder.v1.tar"));
        // A directory is refused.
        assert!(matches!(read_fd(dir.path()), Err(Error::Payload(_))));
        // A regular file is read; empty is an error.
        let f = dir.path().join("payload");
        std::fs::write(&f, b"").expect("write");
        assert!(read_fd(&f).is_err());
        std::fs::write(&f, encode_any(PAYLOAD_TYPE_URL, json("null").as_bytes())).expect("write");
        assert!(decode(&read_fd(&f).expect("read")).is_ok());
    }
}
