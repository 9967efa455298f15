//! Encrypting, decrypting and re-wrapping one layer.
//!
//! The flow follows ocicrypt's `EncryptLayer`/`DecryptLayer`: a fresh key and nonce per layer,
//! the blob streamed through the block cipher, then the private options wrapped once per
//! scheme for all of that scheme's recipients; `pubopts` always written.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use tracing::debug;

use crate::annotations::LayerAnnotations;
use crate::blockcipher::{encrypt_stream, Decryptor};
use crate::config::{DecryptConfig, EncryptConfig};
use crate::error::{Error, Result};
use crate::keywrap::jwe::JweKeyWrapper;
use crate::keywrap::keyprovider::{Invocation, KeyProviderKeyWrapper};
use crate::keywrap::pkcs7::Pkcs7KeyWrapper;
use crate::keywrap::{KeyWrapper, RecipientInfo};
use crate::options::PrivateOptions;
use crate::secret::SecretBytes;
use crate::spec::{ANNOTATION_KEYS_PGP, ANNOTATION_KEYS_PKCS11, ANNOTATION_KEYS_PROVIDER_PREFIX};

/// The key wrappers in use, one per scheme.
pub struct Wrappers {
    list: Vec<Box<dyn KeyWrapper>>,
}

impl Default for Wrappers {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Wrappers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.list.iter().map(|w| w.annotation_key()))
            .finish()
    }
}

impl Wrappers {
    /// JWE and PKCS#7.
    pub fn new() -> Self {
        Self {
            list: vec![Box::new(JweKeyWrapper), Box::new(Pkcs7KeyWrapper)],
        }
    }

    /// Adds the key providers of a configuration (see `keyprovider::load_config_from_env`).
    pub fn with_providers(mut self, providers: BTreeMap<String, Invocation>) -> Self {
        for (name, inv) in providers {
            self.push(Box::new(KeyProviderKeyWrapper::new(&name, inv)));
        }
        self
    }

    /// Adds (or replaces, by annotation key) a wrapper.
    pub fn push(&mut self, wrapper: Box<dyn KeyWrapper>) {
        self.list
            .retain(|w| w.annotation_key() != wrapper.annotation_key());
        self.list.push(wrapper);
    }

    /// The wrapper for an annotation key.
    pub fn get(&self, annotation_key: &str) -> Option<&dyn KeyWrapper> {
        self.list
            .iter()
            .find(|w| w.annotation_key() == annotation_key)
            .map(|w| w.as_ref())
    }

    /// Wraps `opts` for every recipient in `ec`: annotation key → one item.
    pub fn wrap_all(
        &self,
        ec: &EncryptConfig,
        opts: &SecretBytes,
    ) -> Result<BTreeMap<String, Vec<u8>>> {
        let mut out = BTreeMap::new();
        for w in &self.list {
            if let Some(item) = w.wrap(ec, opts)? {
                out.insert(w.annotation_key().to_owned(), item);
            }
        }
        for p in &ec.providers {
            let key = format!("{ANNOTATION_KEYS_PROVIDER_PREFIX}{}", p.name);
            if !out.contains_key(&key) {
                return Err(Error::Recipient {
                    recipient: format!("provider:{}", p.name),
                    reason: "no such key provider is configured (OCICRYPT_KEYPROVIDER_CONFIG)"
                        .into(),
                });
            }
        }
        if out.is_empty() {
            return Err(Error::NoRecipients);
        }
        Ok(out)
    }
}

/// Encrypts one layer blob from `input` into `output` for the recipients in `ec`. Returns the
/// encryption annotations to add to the descriptor. `plain_digest` is the input blob's digest
/// (recorded in the private options, as Go does).
pub fn encrypt_layer(
    wrappers: &Wrappers,
    ec: &EncryptConfig,
    input: &mut dyn Read,
    output: &mut dyn Write,
    plain_digest: &str,
) -> Result<BTreeMap<String, String>> {
    if ec.is_empty() {
        return Err(Error::NoRecipients);
    }
    let (private, public, size) = encrypt_stream(input, output, plain_digest)?;
    debug!(size, "layer data encrypted");
    let wrapped = wrappers.wrap_all(ec, &private.to_json())?;
    let ann = LayerAnnotations {
        pubopts: Some(public),
        wrapped: wrapped.into_iter().map(|(k, v)| (k, vec![v])).collect(),
    };
    Ok(ann.to_map())
}

/// A one-line summary of who a layer is wrapped for, for error messages.
pub fn describe_recipients(wrappers: &Wrappers, ann: &LayerAnnotations) -> String {
    let mut parts = Vec::new();
    for (key, items) in &ann.wrapped {
        for item in items {
            match recipients_of(wrappers, key, item) {
                Ok(rs) => parts.extend(rs.iter().map(recipient_summary)),
                Err(_) => parts.push(format!("{key} (unreadable)")),
            }
        }
    }
    if parts.is_empty() {
        "nobody".into()
    } else {
        parts.join(", ")
    }
}

/// Short human form of a recipient.
pub fn recipient_summary(r: &RecipientInfo) -> String {
    match r {
        RecipientInfo::Jwe {
            alg,
            key_type,
            thumbprint,
        } => match thumbprint {
            Some(t) => format!("JWE {key_type} key {t} ({alg})"),
            None => format!("JWE {key_type} key ({alg})"),
        },
        RecipientInfo::Pkcs7 { issuer, serial } => {
            format!("X.509 certificate serial {serial} issued by {issuer}")
        }
        RecipientInfo::Provider { name, detail } => match detail {
            Some(d) => format!("key provider {name}: {d}"),
            None => format!("key provider {name}"),
        },
        RecipientInfo::Other { name } => format!("{name} (not supported by layercrypt)"),
    }
}

/// The recipients of one wrapped-key item of annotation `key`.
pub fn recipients_of(wrappers: &Wrappers, key: &str, item: &[u8]) -> Result<Vec<RecipientInfo>> {
    match wrappers.get(key) {
        Some(w) => w.recipients(item),
        None => {
            let name = match key {
                ANNOTATION_KEYS_PGP => "pgp".to_owned(),
                ANNOTATION_KEYS_PKCS11 => "pkcs11".to_owned(),
                k => match k.strip_prefix(ANNOTATION_KEYS_PROVIDER_PREFIX) {
                    Some(p) => {
                        return Ok(vec![RecipientInfo::Provider {
                            name: p.to_owned(),
                            detail: Some("provider not configured here".into()),
                        }])
                    }
                    None => k.to_owned(),
                },
            };
            Ok(vec![RecipientInfo::Other { name }])
        }
    }
}

/// Unwraps the private options of an encrypted layer with the keys in `dc`.
pub fn unwrap_private_options(
    wrappers: &Wrappers,
    dc: &DecryptConfig,
    ann: &LayerAnnotations,
) -> Result<PrivateOptions> {
    unwrap_private_options_for(wrappers, dc, ann, None)
}

/// [`unwrap_private_options`] for the layer `layer_digest`, which key wrappers that report
/// releases (a key broker's audit log) are told.
pub fn unwrap_private_options_for(
    wrappers: &Wrappers,
    dc: &DecryptConfig,
    ann: &LayerAnnotations,
    layer_digest: Option<&str>,
) -> Result<PrivateOptions> {
    let public = ann.require_pubopts()?;
    public.validate_for_decryption()?;
    let mut causes = Vec::new();
    let mut tried_any = false;
    for (key, items) in &ann.wrapped {
        let Some(w) = wrappers.get(key) else { continue };
        if !w.has_possible_keys(dc) {
            continue;
        }
        for item in items {
            match w.unwrap_for_layer(dc, item, layer_digest) {
                None => tried_any = true,
                Some(Ok(json)) => return PrivateOptions::from_json(json.expose_secret(), public),
                Some(Err(e)) => {
                    tried_any = true;
                    causes.push(e);
                }
            }
        }
    }
    let wrapped_for = describe_recipients(wrappers, ann);
    if causes.is_empty() {
        let _ = tried_any;
        return Err(Error::NoMatchingKey { wrapped_for });
    }
    causes.dedup_by(|a, b| a.chain_text() == b.chain_text());
    Err(Error::UnwrapFailed {
        wrapped_for,
        causes,
    })
}

/// Starts decrypting a layer: unwraps its key with `dc` and returns a reader of plaintext
/// that holds back its tail until the HMAC verifies.
pub fn decrypt_layer<R: Read>(
    wrappers: &Wrappers,
    dc: &DecryptConfig,
    ann: &LayerAnnotations,
    input: R,
) -> Result<Decryptor<R>> {
    decrypt_layer_for(wrappers, dc, ann, input, None)
}

/// [`decrypt_layer`] for the layer `layer_digest` (see [`unwrap_private_options_for`]).
pub fn decrypt_layer_for<R: Read>(
    wrappers: &Wrappers,
    dc: &DecryptConfig,
    ann: &LayerAnnotations,
    input: R,
    layer_digest: Option<&str>,
) -> Result<Decryptor<R>> {
    let private = unwrap_private_options_for(wrappers, dc, ann, layer_digest)?;
    Decryptor::new(input, &private, ann.require_pubopts()?)
}

/// Changes who can decrypt an encrypted layer without touching its data.
#[derive(Default)]
pub struct Rewrap<'a> {
    /// Recipients to add (needs `dc` to open the existing key).
    pub add: Option<&'a EncryptConfig>,
    /// Recipients to remove: a predicate over the recipients found in the layer.
    pub remove: Option<&'a (dyn Fn(&RecipientInfo) -> bool + Sync)>,
    /// Drop every existing wrapped key first (only `add` remains).
    pub remove_all: bool,
}

/// Re-wraps a layer's key: returns the new complete set of encryption annotations. The
/// layer's data and `pubopts` stay the same. Adding needs a key in `dc` that opens the layer.
pub fn rewrap_layer(
    wrappers: &Wrappers,
    dc: &DecryptConfig,
    ann: &LayerAnnotations,
    rewrap: &Rewrap<'_>,
) -> Result<BTreeMap<String, String>> {
    rewrap_layer_for(wrappers, dc, ann, rewrap, None)
}

/// [`rewrap_layer`] for the layer `layer_digest` (see [`unwrap_private_options_for`]).
pub fn rewrap_layer_for(
    wrappers: &Wrappers,
    dc: &DecryptConfig,
    ann: &LayerAnnotations,
    rewrap: &Rewrap<'_>,
    layer_digest: Option<&str>,
) -> Result<BTreeMap<String, String>> {
    let mut out = ann.clone();
    // Adding needs the layer key, so open it first (this fails, changing nothing, when `dc`
    // cannot). Removing is structural and needs no key: a user may remove their own access,
    // but never everybody's (that is `NoRecipients` below).
    let private = match rewrap.add {
        Some(_) => Some(unwrap_private_options_for(wrappers, dc, ann, layer_digest)?),
        None => None,
    };
    if rewrap.remove_all {
        out.wrapped.clear();
    } else if let Some(remove) = rewrap.remove {
        let mut next = BTreeMap::new();
        for (key, items) in &ann.wrapped {
            let mut kept = Vec::new();
            for item in items {
                let hit = recipients_of(wrappers, key, item)?.iter().any(remove);
                if !hit {
                    kept.push(item.clone());
                    continue;
                }
                let w = wrappers.get(key).ok_or_else(|| Error::Recipient {
                    recipient: key.clone(),
                    reason: "scheme not supported; cannot edit its recipients".into(),
                })?;
                if let Some(rest) = w.remove_recipients(item, remove)? {
                    kept.push(rest);
                }
            }
            if !kept.is_empty() {
                next.insert(key.clone(), kept);
            }
        }
        out.wrapped = next;
    }
    if let (Some(add), Some(private)) = (rewrap.add, private) {
        for (key, item) in wrappers.wrap_all(add, &private.to_json())? {
            out.wrapped.entry(key).or_default().push(item);
        }
    }
    if !out.has_wrapped_keys() {
        return Err(Error::NoRecipients);
    }
    Ok(out.to_map())
}
