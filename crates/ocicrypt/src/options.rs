//! The block-cipher options JSON, exactly as Go ocicrypt writes and reads it.
//!
//! Private options (what every key wrapper protects):
//! `{"symkey":"<b64 32>","digest":"sha256:…","cipheroptions":{"nonce":"<b64 16>"}}`.
//! Public options (base64 of this is the `pubopts` annotation):
//! `{"cipher":"AES_256_CTR_HMAC_SHA256","hmac":"<b64 32>","cipheroptions":{}}`.
//!
//! Go's `encoding/json` matches field names case-insensitively and ignores unknown fields;
//! `[]byte` is standard padded base64; maps are written with sorted keys. The private options
//! are written by hand into a zeroizing buffer so the layer key never sits in an ordinary
//! `String`.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::secret::SecretBytes;
use crate::spec::{CIPHER_AES_256_CTR_HMAC_SHA256, MAX_PRIVATE_OPTS_LEN};

/// Length of the AES-256 / HMAC-SHA256 layer key.
pub const SYMKEY_LEN: usize = 32;
/// Length of the AES-CTR initial counter block.
pub const NONCE_LEN: usize = 16;
/// Length of the HMAC-SHA256 tag.
pub const HMAC_LEN: usize = 32;
/// Name of the nonce cipher option.
pub const OPT_NONCE: &str = "nonce";

/// The secret per-layer options: key, nonce and the plaintext blob's digest.
#[derive(Clone)]
pub struct PrivateOptions {
    symkey: SecretBytes,
    nonce: [u8; NONCE_LEN],
    /// Digest of the plaintext blob as the encrypting side described it. Go never verifies it
    /// and real images carry wrong values (c/image recompresses after taking it); it is
    /// informational only.
    pub digest: String,
    /// Other cipher options found in the JSON, kept so re-wrapping preserves them.
    extra: BTreeMap<String, Vec<u8>>,
}

impl std::fmt::Debug for PrivateOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivateOptions")
            .field("digest", &self.digest)
            .finish_non_exhaustive()
    }
}

impl PrivateOptions {
    /// Builds options from a key and nonce.
    pub fn new(symkey: SecretBytes, nonce: [u8; NONCE_LEN], digest: String) -> Result<Self> {
        if symkey.len() != SYMKEY_LEN {
            return Err(Error::Options {
                which: "private",
                reason: "invalid key length".into(),
            });
        }
        Ok(Self {
            symkey,
            nonce,
            digest,
            extra: BTreeMap::new(),
        })
    }

    /// The layer key.
    pub fn symkey(&self) -> &SecretBytes {
        &self.symkey
    }

    /// The AES-CTR initial counter block.
    pub fn nonce(&self) -> &[u8; NONCE_LEN] {
        &self.nonce
    }

    /// Serializes as Go does: `{"symkey":…,"digest":…,"cipheroptions":{…}}`.
    pub fn to_json(&self) -> SecretBytes {
        let mut out = Zeroizing::new(Vec::with_capacity(256));
        out.extend_from_slice(b"{\"symkey\":\"");
        let b64 = Zeroizing::new(STANDARD.encode(self.symkey.expose_secret()));
        out.extend_from_slice(b64.as_bytes());
        out.extend_from_slice(b"\",\"digest\":");
        out.extend_from_slice(go_json_string(&self.digest).as_bytes());
        out.extend_from_slice(b",\"cipheroptions\":{");
        let mut opts: BTreeMap<&str, &[u8]> = self
            .extra
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice()))
            .collect();
        opts.insert(OPT_NONCE, &self.nonce);
        for (i, (k, v)) in opts.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(go_json_string(k).as_bytes());
            out.push(b':');
            out.push(b'"');
            out.extend_from_slice(STANDARD.encode(v).as_bytes());
            out.push(b'"');
        }
        out.extend_from_slice(b"}}");
        SecretBytes::from(out)
    }

    /// Parses private options JSON the way Go's decoder does, then validates key and nonce.
    /// `public` supplies a nonce if the private options lack one (Go looks there first).
    pub fn from_json(json: &[u8], public: &PublicOptions) -> Result<Self> {
        let err = |reason: &str| Error::Options {
            which: "private",
            reason: reason.into(),
        };
        if json.len() > MAX_PRIVATE_OPTS_LEN {
            return Err(err("too large"));
        }
        let mut value: Value = serde_json::from_slice(json).map_err(|_| err("not valid JSON"))?;
        let obj = value
            .as_object_mut()
            .ok_or_else(|| err("not a JSON object"))?;
        // Take the key's base64 string out of the tree so that it is zeroized.
        let symkey = match take_field(obj, "symkey") {
            Some(Value::String(s)) => {
                let s = Zeroizing::new(s);
                SecretBytes::from(Zeroizing::new(
                    STANDARD
                        .decode(s.as_bytes())
                        .map_err(|_| err("symkey is not base64"))?,
                ))
            }
            _ => return Err(err("symkey missing")),
        };
        let obj = &*obj;
        if symkey.len() != SYMKEY_LEN {
            return Err(err("invalid key length"));
        }
        let digest = match field(obj, "digest") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => String::new(),
            Some(_) => return Err(err("digest is not a string")),
        };
        let mut extra = byte_map(field(obj, "cipheroptions")).map_err(|r| err(&r))?;
        let nonce = public
            .cipher_options
            .get(OPT_NONCE)
            .cloned()
            .or_else(|| extra.remove(OPT_NONCE))
            .ok_or_else(|| err("nonce missing"))?;
        extra.remove(OPT_NONCE);
        let nonce: [u8; NONCE_LEN] = nonce
            .as_slice()
            .try_into()
            .map_err(|_| err("nonce is not 16 bytes"))?;
        Ok(Self {
            symkey,
            nonce,
            digest,
            extra,
        })
    }
}

/// The public per-layer options: cipher name and HMAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicOptions {
    /// Cipher name; always [`CIPHER_AES_256_CTR_HMAC_SHA256`] once validated for decryption.
    pub cipher: String,
    /// HMAC-SHA256 over the ciphertext.
    pub hmac: Vec<u8>,
    /// Public cipher options (empty as Go writes them).
    pub cipher_options: BTreeMap<String, Vec<u8>>,
}

impl PublicOptions {
    /// Options for a freshly encrypted layer.
    pub fn new(hmac: [u8; HMAC_LEN]) -> Self {
        Self {
            cipher: CIPHER_AES_256_CTR_HMAC_SHA256.into(),
            hmac: hmac.to_vec(),
            cipher_options: BTreeMap::new(),
        }
    }

    /// Serializes as Go does: `{"cipher":…,"hmac":…,"cipheroptions":{}}`.
    pub fn to_json(&self) -> Vec<u8> {
        let mut s = String::from("{\"cipher\":");
        s.push_str(&go_json_string(&self.cipher));
        s.push_str(",\"hmac\":\"");
        s.push_str(&STANDARD.encode(&self.hmac));
        s.push_str("\",\"cipheroptions\":{");
        for (i, (k, v)) in self.cipher_options.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str(&go_json_string(k));
            s.push_str(":\"");
            s.push_str(&STANDARD.encode(v));
            s.push('"');
        }
        s.push_str("}}");
        s.into_bytes()
    }

    /// The annotation value: standard base64 of the JSON.
    pub fn to_annotation(&self) -> String {
        STANDARD.encode(self.to_json())
    }

    /// Parses the JSON as Go's decoder would. Does not check the cipher: see
    /// [`PublicOptions::validate_for_decryption`].
    pub fn from_json(json: &[u8]) -> Result<Self> {
        let err = |reason: &str| Error::Options {
            which: "public",
            reason: reason.into(),
        };
        let value: Value = serde_json::from_slice(json).map_err(|_| err("not valid JSON"))?;
        let obj = value.as_object().ok_or_else(|| err("not a JSON object"))?;
        let cipher = match field(obj, "cipher") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => String::new(),
            Some(_) => return Err(err("cipher is not a string")),
        };
        let hmac = match field(obj, "hmac") {
            Some(Value::String(s)) => STANDARD.decode(s).map_err(|_| err("hmac is not base64"))?,
            Some(Value::Null) | None => Vec::new(),
            Some(_) => return Err(err("hmac is not a string")),
        };
        let cipher_options = byte_map(field(obj, "cipheroptions")).map_err(|r| err(&r))?;
        Ok(Self {
            cipher,
            hmac,
            cipher_options,
        })
    }

    /// Parses the `pubopts` annotation value (standard base64 of the JSON).
    pub fn from_annotation(value: &str) -> Result<Self> {
        let json = STANDARD
            .decode(value.trim())
            .map_err(|_| Error::Annotation {
                key: crate::spec::ANNOTATION_PUBOPTS.into(),
                reason: "not valid base64".into(),
            })?;
        Self::from_json(&json)
    }

    /// Checks what decryption needs: a known cipher and a 32-byte HMAC.
    pub fn validate_for_decryption(&self) -> Result<()> {
        if self.cipher.is_empty() {
            return Err(Error::Options {
                which: "public",
                reason: "no cipher type provided".into(),
            });
        }
        if self.cipher != CIPHER_AES_256_CTR_HMAC_SHA256 {
            return Err(Error::UnknownCipher(self.cipher.chars().take(64).collect()));
        }
        if self.hmac.is_empty() {
            return Err(Error::Options {
                which: "public",
                reason: "HMAC is not provided for decryption".into(),
            });
        }
        if self.hmac.len() != HMAC_LEN {
            return Err(Error::Options {
                which: "public",
                reason: "HMAC is not 32 bytes".into(),
            });
        }
        Ok(())
    }
}

/// Case-insensitive field lookup, as Go's `encoding/json` does (exact match preferred).
fn field<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.get(name).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

/// Removes a field, matched as [`field`] matches it.
fn take_field(obj: &mut Map<String, Value>, name: &str) -> Option<Value> {
    let key = if obj.contains_key(name) {
        name.to_owned()
    } else {
        obj.keys().find(|k| k.eq_ignore_ascii_case(name))?.clone()
    };
    obj.remove(&key)
}

/// A Go `map[string][]byte`: object of base64 strings, or null.
fn byte_map(v: Option<&Value>) -> std::result::Result<BTreeMap<String, Vec<u8>>, String> {
    match v {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => STANDARD
                    .decode(s)
                    .map(|b| (k.clone(), b))
                    .map_err(|_| format!("cipheroptions.{k} is not base64")),
                Value::Null => Ok((k.clone(), Vec::new())),
                _ => Err(format!("cipheroptions.{k} is not a string")),
            })
            .collect(),
        Some(_) => Err("cipheroptions is not an object".into()),
    }
}

/// A JSON string literal escaped as Go's `encoding/json` escapes it (HTML-safe).
pub fn go_json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // Real private options written by skopeo 1.9.3 (Go ocicrypt 1.0.3), key replaced.
    const GO_PRIVATE: &str = r#"{"symkey":"4wnOzmwtiGzK1VZ0ZoMPs/8LMwNNo5tjVB9xSDG6qXE=","digest":"sha256:96a78d4e4bd7b3e53163e8b4f44e7d5ae3c21cb3ab5d4a12e41cc1d0d5a07daa","cipheroptions":{"nonce":"9JPe3vZzDT88v06HZStxLw=="}}"#;

    #[test]
    fn private_round_trip_is_byte_exact() {
        let public = PublicOptions::new([0; 32]);
        let p = PrivateOptions::from_json(GO_PRIVATE.as_bytes(), &public).expect("parse");
        assert_eq!(p.to_json().expose_secret(), GO_PRIVATE.as_bytes());
        assert_eq!(p.to_json().len(), 193);
    }

    #[test]
    fn public_round_trip_is_byte_exact() {
        let go = r#"{"cipher":"AES_256_CTR_HMAC_SHA256","hmac":"d0OpMH4DJcEMdEAUw3k+KSnGrz/PjVgeObppPam7xXA=","cipheroptions":{}}"#;
        let p = PublicOptions::from_json(go.as_bytes()).expect("parse");
        p.validate_for_decryption().expect("valid");
        assert_eq!(p.to_json(), go.as_bytes());
    }

    #[test]
    fn go_style_decoding_is_lenient_where_go_is() {
        let json = r#"{"SymKey":"4wnOzmwtiGzK1VZ0ZoMPs/8LMwNNo5tjVB9xSDG6qXE=","unknown":1,"CipherOptions":{"nonce":"9JPe3vZzDT88v06HZStxLw=="}}"#;
        let p = PrivateOptions::from_json(json.as_bytes(), &PublicOptions::new([0; 32]))
            .expect("parse");
        assert_eq!(p.digest, "");
    }

    #[test]
    fn rejects_bad_private_options() {
        let public = PublicOptions::new([0; 32]);
        for bad in [
            "",
            "[]",
            "{}",
            r#"{"symkey":"AAAA","cipheroptions":{"nonce":"9JPe3vZzDT88v06HZStxLw=="}}"#,
            r#"{"symkey":"4wnOzmwtiGzK1VZ0ZoMPs/8LMwNNo5tjVB9xSDG6qXE="}"#,
            r#"{"symkey":"4wnOzmwtiGzK1VZ0ZoMPs/8LMwNNo5tjVB9xSDG6qXE=","cipheroptions":{"nonce":"AAAA"}}"#,
            r#"{"symkey":"!!","cipheroptions":{"nonce":"9JPe3vZzDT88v06HZStxLw=="}}"#,
        ] {
            assert!(
                PrivateOptions::from_json(bad.as_bytes(), &public).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn public_validation() {
        let mut p = PublicOptions::new([1; 32]);
        p.validate_for_decryption().expect("ok");
        p.cipher = "AES_128_GCM".into();
        assert!(matches!(
            p.validate_for_decryption(),
            Err(Error::UnknownCipher(_))
        ));
        let empty = PublicOptions::from_json(b"{}").expect("parses");
        assert!(empty.validate_for_decryption().is_err());
        assert!(PublicOptions::from_annotation("not base64!").is_err());
    }

    #[test]
    fn go_escaping() {
        assert_eq!(go_json_string("a<b>&\"\n"), r#""a\u003cb\u003e\u0026\"\n""#);
    }
}
