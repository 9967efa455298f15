//! Image references in skopeo's transport syntax.

use std::path::PathBuf;

/// Where an image lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageRef {
    /// `oci:DIR[:TAG]`: an OCI image layout directory. Without a tag, the layout must hold
    /// exactly one image (as a source) or the image is written untagged... see `layout`.
    OciLayout {
        /// The directory.
        dir: PathBuf,
        /// `org.opencontainers.image.ref.name` of the image in `index.json`.
        tag: Option<String>,
    },
    /// `oci-archive:FILE[:TAG]`: an OCI layout in a tar file.
    OciArchive {
        /// The tar file.
        file: PathBuf,
        /// Tag inside the archive.
        tag: Option<String>,
    },
    /// `docker://HOST/REPO[:TAG|@DIGEST]`: a registry over the OCI distribution API.
    Registry {
        /// The reference after `docker://` (Docker Hub names are normalised by the registry
        /// transport: `alpine` → `docker.io/library/alpine:latest`).
        reference: String,
    },
}
