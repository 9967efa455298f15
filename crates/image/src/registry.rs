//! PLACEHOLDER (branch `image` only): the registry transport is written on another branch and
//! replaces this file at merge. It exists so `reference.rs` can dispatch to it and compile.

use crate::error::{Error, Result};
use crate::transport::TransportOptions;

/// PLACEHOLDER: reads an image from a registry.
#[derive(Debug)]
pub struct RegistrySource;

/// PLACEHOLDER: writes an image to a registry.
#[derive(Debug)]
pub struct RegistryDest;

impl RegistrySource {
    /// PLACEHOLDER: always fails.
    pub fn open(_reference: &str, _opts: &TransportOptions) -> Result<Self> {
        Err(Error::Unsupported(
            "registry transport not built yet".into(),
        ))
    }
}

impl RegistryDest {
    /// PLACEHOLDER: always fails.
    pub fn open(_reference: &str, _opts: &TransportOptions) -> Result<Self> {
        Err(Error::Unsupported(
            "registry transport not built yet".into(),
        ))
    }
}

fn not_built() -> Error {
    Error::Unsupported("registry transport not built yet".into())
}

impl crate::transport::ImageSource for RegistrySource {
    fn describe(&self) -> String {
        "docker://(placeholder)".into()
    }
    fn top_manifest(&mut self) -> Result<crate::transport::RawManifest> {
        Err(not_built())
    }
    fn manifest(
        &mut self,
        _desc: &oci_spec::image::Descriptor,
    ) -> Result<crate::transport::RawManifest> {
        Err(not_built())
    }
    fn blob(
        &mut self,
        _desc: &oci_spec::image::Descriptor,
    ) -> Result<Box<dyn std::io::Read + Send + '_>> {
        Err(not_built())
    }
}

impl crate::transport::ImageDest for RegistryDest {
    fn describe(&self) -> String {
        "docker://(placeholder)".into()
    }
    fn has_blob(&mut self, _info: &crate::transport::BlobInfo) -> Result<bool> {
        Err(not_built())
    }
    fn blob_writer(&mut self) -> Result<Box<dyn crate::transport::BlobWriter + '_>> {
        Err(not_built())
    }
    fn put_manifest(&mut self, _manifest: &crate::transport::RawManifest) -> Result<()> {
        Err(not_built())
    }
    fn commit(self: Box<Self>, _top: &crate::transport::RawManifest) -> Result<()> {
        Err(not_built())
    }
}
