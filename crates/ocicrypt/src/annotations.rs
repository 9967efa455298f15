//! The `org.opencontainers.image.enc.*` annotations of a layer descriptor, parsed at the
//! boundary into [`LayerAnnotations`]; inner code never reads the raw map.
//!
//! Every `keys.*` value is a comma-separated list of standard padded base64 items; one item
//! per scheme per encryption, more when recipients were added later. `pubopts` is standard
//! base64 of the public options JSON.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use crate::error::{Error, Result};
use crate::options::PublicOptions;
use crate::spec::{
    ANNOTATION_KEYS_PREFIX, ANNOTATION_PREFIX, ANNOTATION_PUBOPTS, MAX_ANNOTATION_LEN,
    MAX_WRAPPED_ITEMS,
};

/// The encryption annotations of one layer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LayerAnnotations {
    /// Parsed `pubopts`, if present.
    pub pubopts: Option<PublicOptions>,
    /// Wrapped-key items per annotation key (`org.opencontainers.image.enc.keys.*`),
    /// base64-decoded, in order.
    pub wrapped: BTreeMap<String, Vec<Vec<u8>>>,
}

impl LayerAnnotations {
    /// Parses the encryption annotations out of a descriptor's annotation map; other
    /// annotations are ignored. Sizes are bounded: see [`MAX_ANNOTATION_LEN`] and
    /// [`MAX_WRAPPED_ITEMS`].
    pub fn parse<'a, I>(annotations: I) -> Result<Self>
    where
        I: IntoIterator<Item = (&'a String, &'a String)>,
    {
        let mut out = LayerAnnotations::default();
        for (key, value) in annotations {
            if !key.starts_with(ANNOTATION_PREFIX) {
                continue;
            }
            if value.len() > MAX_ANNOTATION_LEN {
                return Err(Error::AnnotationTooLarge {
                    key: key.clone(),
                    len: value.len(),
                    max: MAX_ANNOTATION_LEN,
                });
            }
            if key == ANNOTATION_PUBOPTS {
                out.pubopts =
                    Some(
                        PublicOptions::from_annotation(value).map_err(|e| Error::Annotation {
                            key: key.clone(),
                            reason: e.to_string(),
                        })?,
                    );
            } else if key.starts_with(ANNOTATION_KEYS_PREFIX) {
                out.wrapped.insert(key.clone(), decode_items(key, value)?);
            }
        }
        Ok(out)
    }

    /// True if any wrapped key is present (ocicrypt's own test for "encrypted").
    pub fn has_wrapped_keys(&self) -> bool {
        self.wrapped.values().any(|items| !items.is_empty())
    }

    /// The public options, which decryption requires.
    pub fn require_pubopts(&self) -> Result<&PublicOptions> {
        self.pubopts.as_ref().ok_or(Error::MissingPubOpts)
    }

    /// Renders the encryption annotations (pubopts and every non-empty wrapped-key list).
    pub fn to_map(&self) -> BTreeMap<String, String> {
        let mut map = BTreeMap::new();
        if let Some(p) = &self.pubopts {
            map.insert(ANNOTATION_PUBOPTS.to_owned(), p.to_annotation());
        }
        for (key, items) in &self.wrapped {
            if !items.is_empty() {
                map.insert(key.clone(), encode_items(items));
            }
        }
        map
    }
}

/// Splits a `keys.*` value on `,` and base64-decodes each item.
pub fn decode_items(key: &str, value: &str) -> Result<Vec<Vec<u8>>> {
    let parts: Vec<&str> = value.split(',').collect();
    if parts.len() > MAX_WRAPPED_ITEMS {
        return Err(Error::Annotation {
            key: key.to_owned(),
            reason: format!(
                "{} wrapped keys, more than the limit of {MAX_WRAPPED_ITEMS}",
                parts.len()
            ),
        });
    }
    parts
        .into_iter()
        .enumerate()
        .map(|(i, part)| {
            let item = STANDARD
                .decode(part.trim())
                .map_err(|_| Error::Annotation {
                    key: key.to_owned(),
                    reason: format!("item {} is not valid base64", i + 1),
                })?;
            if item.is_empty() {
                return Err(Error::Annotation {
                    key: key.to_owned(),
                    reason: format!("item {} is empty", i + 1),
                });
            }
            Ok(item)
        })
        .collect()
}

/// Joins items as a `keys.*` value.
pub fn encode_items(items: &[Vec<u8>]) -> String {
    items
        .iter()
        .map(|i| STANDARD.encode(i))
        .collect::<Vec<_>>()
        .join(",")
}

/// The annotation map without encryption annotations, as c/image leaves it after decryption
/// (it removes every key starting with `org.opencontainers.image.enc`).
pub fn strip_encryption_annotations<'a, I>(annotations: I) -> BTreeMap<String, String>
where
    I: IntoIterator<Item = (&'a String, &'a String)>,
{
    let prefix = ANNOTATION_PREFIX.trim_end_matches('.');
    annotations
        .into_iter()
        .filter(|(k, _)| !k.starts_with(prefix))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::ANNOTATION_KEYS_JWE;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_and_renders() {
        let pubopts = PublicOptions::new([9; 32]).to_annotation();
        let m = map(&[
            (ANNOTATION_KEYS_JWE, "YWJj,ZGVm"),
            (ANNOTATION_PUBOPTS, &pubopts),
            ("org.example.other", "x"),
        ]);
        let a = LayerAnnotations::parse(&m).expect("parse");
        assert!(a.has_wrapped_keys());
        assert_eq!(
            a.wrapped[ANNOTATION_KEYS_JWE],
            vec![b"abc".to_vec(), b"def".to_vec()]
        );
        let mut back = a.to_map();
        back.insert("org.example.other".into(), "x".into());
        assert_eq!(back, m);
        assert_eq!(
            strip_encryption_annotations(&m),
            map(&[("org.example.other", "x")])
        );
    }

    #[test]
    fn rejects_garbage_and_oversized() {
        let bad = [
            (ANNOTATION_KEYS_JWE, "not base64!"),
            (ANNOTATION_KEYS_JWE, "YWJj,,ZGVm"),
            (ANNOTATION_PUBOPTS, "%%%"),
            (ANNOTATION_PUBOPTS, "W10="), // "[]"
        ];
        for (k, v) in bad {
            assert!(LayerAnnotations::parse(&map(&[(k, v)])).is_err(), "{k}={v}");
        }
        let huge = "A".repeat(MAX_ANNOTATION_LEN + 4);
        assert!(matches!(
            LayerAnnotations::parse(&map(&[(ANNOTATION_KEYS_JWE, &huge)])),
            Err(Error::AnnotationTooLarge { .. })
        ));
        let many = vec!["YQ=="; MAX_WRAPPED_ITEMS + 1].join(",");
        assert!(LayerAnnotations::parse(&map(&[(ANNOTATION_KEYS_JWE, &many)])).is_err());
    }

    #[test]
    fn missing_pubopts_is_reported() {
        let a = LayerAnnotations::parse(&map(&[(ANNOTATION_KEYS_JWE, "YWJj")])).expect("parse");
        assert!(matches!(a.require_pubopts(), Err(Error::MissingPubOpts)));
    }
}
