//! Re-wrapping: adding and removing recipients of encrypted layers without touching their
//! data (for instance after an RCAuth certificate was re-issued with a new key).

use std::io::{Read, Write};

use layercrypt_image::copy::{LayerAction, LayerContext, LayerHandler, LayerRewrite};
use layercrypt_ocicrypt::layer::{rewrap_layer_for, Rewrap, Wrappers};
use layercrypt_ocicrypt::spec::is_encrypted_media_type;
use layercrypt_ocicrypt::DecryptConfig;

use crate::decrypt::layer_annotations;
use crate::encrypt::merged_annotations;
use crate::selection::LayerSelection;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The [`LayerHandler`] that re-wraps layer keys.
pub struct RewrapHandler<'a> {
    wrappers: &'a Wrappers,
    keys: &'a DecryptConfig,
    rewrap: Rewrap<'a>,
    selection: &'a LayerSelection,
}

impl<'a> RewrapHandler<'a> {
    /// Applies `rewrap` to the selected encrypted layers, opening their keys with `keys`.
    pub fn new(
        wrappers: &'a Wrappers,
        keys: &'a DecryptConfig,
        rewrap: Rewrap<'a>,
        selection: &'a LayerSelection,
    ) -> Self {
        Self {
            wrappers,
            keys,
            rewrap,
            selection,
        }
    }
}

impl LayerHandler for RewrapHandler<'_> {
    fn plan(&self, layer: &LayerContext<'_>) -> Result<LayerAction, BoxError> {
        if layer.index == 0 {
            self.selection.validate(layer.count)?;
        }
        let media_type = layer.descriptor.media_type().to_string();
        if !is_encrypted_media_type(&media_type)
            || !self.selection.contains(layer.index, layer.count)
        {
            return Ok(LayerAction::Copy);
        }
        let ann = layer_annotations(layer)?;
        let digest = layer.descriptor.digest().to_string();
        let enc = rewrap_layer_for(self.wrappers, self.keys, &ann, &self.rewrap, Some(&digest))?;
        Ok(LayerAction::Rewrite(LayerRewrite {
            media_type,
            annotations: merged_annotations(layer.descriptor.annotations().as_ref(), enc),
        }))
    }

    fn transform(
        &self,
        _layer: &LayerContext<'_>,
        _input: &mut dyn Read,
        _output: &mut dyn Write,
    ) -> Result<LayerRewrite, BoxError> {
        Err("re-wrapping never transforms layer data".into())
    }
}
