//! Encrypting an image: selected layers are encrypted for the recipients, everything else
//! (config, unselected layers, other manifests) is copied unchanged.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use layercrypt_image::copy::{LayerAction, LayerContext, LayerHandler, LayerRewrite};
use layercrypt_ocicrypt::annotations::strip_encryption_annotations;
use layercrypt_ocicrypt::layer::{encrypt_layer, Wrappers};
use layercrypt_ocicrypt::spec::{encrypted_media_type, is_encrypted_media_type};
use layercrypt_ocicrypt::EncryptConfig;
use tracing::info;

use crate::error::Error;
use crate::selection::LayerSelection;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The [`LayerHandler`] that encrypts.
pub struct EncryptHandler<'a> {
    wrappers: &'a Wrappers,
    recipients: &'a EncryptConfig,
    selection: &'a LayerSelection,
}

impl<'a> EncryptHandler<'a> {
    /// Encrypts the `selection` of every manifest's layers for `recipients`.
    pub fn new(
        wrappers: &'a Wrappers,
        recipients: &'a EncryptConfig,
        selection: &'a LayerSelection,
    ) -> Self {
        Self {
            wrappers,
            recipients,
            selection,
        }
    }
}

/// Annotations of `desc` without encryption annotations, plus `extra`.
pub(crate) fn merged_annotations(
    original: Option<&std::collections::HashMap<String, String>>,
    extra: BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut out = original
        .map(strip_encryption_annotations)
        .unwrap_or_default();
    out.extend(extra);
    out
}

impl LayerHandler for EncryptHandler<'_> {
    fn plan(&self, layer: &LayerContext<'_>) -> Result<LayerAction, BoxError> {
        if layer.index == 0 {
            self.selection.validate(layer.count)?;
        }
        if !self.selection.contains(layer.index, layer.count) {
            return Ok(LayerAction::Copy);
        }
        let media_type = layer.descriptor.media_type().to_string();
        if is_encrypted_media_type(&media_type) {
            // Copying it as it is would report success while the new recipients cannot read
            // this layer (it stays wrapped for its old ones): refuse before anything is
            // written, and say what does give them access.
            let hint = if self.selection.is_all() {
                " (or select only the plain layers with --layer)"
            } else {
                ""
            };
            return Err(Box::new(Error::NothingToDo(format!(
                "layer {} is already encrypted, for other recipients: use `layercrypt rewrap \
                 --add-recipient` to give the new recipients access to it{hint}; nothing was written",
                layer.descriptor.digest()
            ))));
        }
        if encrypted_media_type(&media_type).is_none() {
            return Err(Box::new(layercrypt_ocicrypt::Error::UnsupportedMediaType(
                media_type,
            )));
        }
        Ok(LayerAction::Transform)
    }

    fn transform(
        &self,
        layer: &LayerContext<'_>,
        input: &mut dyn Read,
        output: &mut dyn Write,
    ) -> Result<LayerRewrite, BoxError> {
        let media_type = layer.descriptor.media_type().to_string();
        let new_type = encrypted_media_type(&media_type)
            .ok_or_else(|| layercrypt_ocicrypt::Error::UnsupportedMediaType(media_type.clone()))?;
        let digest = layer.descriptor.digest().to_string();
        let enc = encrypt_layer(self.wrappers, self.recipients, input, output, &digest)?;
        info!(%digest, "layer encrypted");
        Ok(LayerRewrite {
            media_type: new_type,
            annotations: merged_annotations(layer.descriptor.annotations().as_ref(), enc),
        })
    }
}
