//! PLACEHOLDER: being written; replaced before this crate is used.

use super::{KeyWrapper, RecipientInfo};
use crate::config::{DecryptConfig, EncryptConfig};
use crate::error::{Error, Result};
use crate::secret::SecretBytes;

/// The Pkcs7 key wrapper.
#[derive(Debug, Default, Clone, Copy)]
pub struct Pkcs7KeyWrapper;

impl KeyWrapper for Pkcs7KeyWrapper {
    fn annotation_key(&self) -> &str {
        crate::spec::ANNOTATION_KEYS_PKCS7
    }
    fn wrap(&self, _ec: &EncryptConfig, _opts: &SecretBytes) -> Result<Option<Vec<u8>>> {
        Err(Error::Pkcs7("not built yet".into()))
    }
    fn has_possible_keys(&self, dc: &DecryptConfig) -> bool {
        !dc.private_keys.is_empty()
    }
    fn unwrap(&self, _dc: &DecryptConfig, _item: &[u8]) -> Option<Result<SecretBytes>> {
        Some(Err(Error::Pkcs7("not built yet".into())))
    }
    fn recipients(&self, _item: &[u8]) -> Result<Vec<RecipientInfo>> {
        Err(Error::Pkcs7("not built yet".into()))
    }
}
