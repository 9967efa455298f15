//! Decrypting an image: every encrypted layer (or the selected ones) is decrypted with the
//! given keys; the plaintext of a layer is kept only once its HMAC has been verified.

use std::io::{Read, Write};

use layercrypt_image::copy::{LayerAction, LayerContext, LayerHandler, LayerRewrite};
use layercrypt_ocicrypt::annotations::LayerAnnotations;
use layercrypt_ocicrypt::blockcipher::copy_all;
use layercrypt_ocicrypt::layer::{decrypt_layer_for, Wrappers};
use layercrypt_ocicrypt::spec::{decrypted_media_type, is_encrypted_media_type};
use layercrypt_ocicrypt::DecryptConfig;
use tracing::info;

use crate::encrypt::merged_annotations;
use crate::selection::LayerSelection;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The [`LayerHandler`] that decrypts.
pub struct DecryptHandler<'a> {
    wrappers: &'a Wrappers,
    keys: &'a DecryptConfig,
    selection: &'a LayerSelection,
}

impl<'a> DecryptHandler<'a> {
    /// Decrypts the selected encrypted layers with `keys`.
    pub fn new(
        wrappers: &'a Wrappers,
        keys: &'a DecryptConfig,
        selection: &'a LayerSelection,
    ) -> Self {
        Self {
            wrappers,
            keys,
            selection,
        }
    }
}

/// Parses the encryption annotations of an encrypted layer's descriptor.
pub(crate) fn layer_annotations(
    layer: &LayerContext<'_>,
) -> Result<LayerAnnotations, layercrypt_ocicrypt::Error> {
    let empty = std::collections::HashMap::new();
    let ann = LayerAnnotations::parse(layer.descriptor.annotations().as_ref().unwrap_or(&empty))?;
    if !ann.has_wrapped_keys() {
        return Err(layercrypt_ocicrypt::Error::Annotation {
            key: "org.opencontainers.image.enc.keys.*".into(),
            reason: "the media type says encrypted but the layer has no wrapped key".into(),
        });
    }
    Ok(ann)
}

impl LayerHandler for DecryptHandler<'_> {
    fn plan(&self, layer: &LayerContext<'_>) -> Result<LayerAction, BoxError> {
        if layer.index == 0 {
            self.selection.validate(layer.count)?;
        }
        let encrypted = is_encrypted_media_type(layer.descriptor.media_type().as_ref());
        if encrypted && self.selection.contains(layer.index, layer.count) {
            // Parse (and bound) the annotations before any data moves.
            layer_annotations(layer)?;
            Ok(LayerAction::Transform)
        } else {
            Ok(LayerAction::Copy)
        }
    }

    fn transform(
        &self,
        layer: &LayerContext<'_>,
        input: &mut dyn Read,
        output: &mut dyn Write,
    ) -> Result<LayerRewrite, BoxError> {
        let media_type = layer.descriptor.media_type().to_string();
        let plain_type = decrypted_media_type(&media_type)
            .unwrap_or(&media_type)
            .to_owned();
        let ann = layer_annotations(layer)?;
        // The digest goes to key brokers, for their audit logs.
        let digest = layer.descriptor.digest().to_string();
        let mut plain = decrypt_layer_for(self.wrappers, self.keys, &ann, input, Some(&digest))?;
        copy_all(&mut plain, output)?;
        info!(digest = %layer.descriptor.digest(), "layer decrypted and verified");
        Ok(LayerRewrite {
            media_type: plain_type,
            annotations: merged_annotations(
                layer.descriptor.annotations().as_ref(),
                Default::default(),
            ),
        })
    }
}
