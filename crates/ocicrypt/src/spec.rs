//! Strings fixed by the containers/ocicrypt format and the OCI image spec.
//!
//! ocicrypt has no merged specification; its Go code is the de-facto spec. Every string the
//! wire format depends on lives here so that it can be found and checked in one place.

/// Prefix shared by every encryption annotation. c/image deletes every annotation whose key
/// starts with this (without the final dot) when it decrypts a layer.
pub const ANNOTATION_PREFIX: &str = "org.opencontainers.image.enc.";

/// Prefix of the annotations that carry wrapped private options, one per scheme.
pub const ANNOTATION_KEYS_PREFIX: &str = "org.opencontainers.image.enc.keys.";

/// Wrapped private options, JWE JSON serialization (go-jose `FullSerialize`).
pub const ANNOTATION_KEYS_JWE: &str = "org.opencontainers.image.enc.keys.jwe";

/// Wrapped private options, PKCS#7 EnvelopedData DER.
pub const ANNOTATION_KEYS_PKCS7: &str = "org.opencontainers.image.enc.keys.pkcs7";

/// Wrapped private options, OpenPGP message (read for `inspect` only; not implemented).
pub const ANNOTATION_KEYS_PGP: &str = "org.opencontainers.image.enc.keys.pgp";

/// Wrapped private options, PKCS#11 JSON (read for `inspect` only; not implemented).
pub const ANNOTATION_KEYS_PKCS11: &str = "org.opencontainers.image.enc.keys.pkcs11";

/// Prefix of key-provider annotations: `...keys.provider.<name>`.
pub const ANNOTATION_KEYS_PROVIDER_PREFIX: &str = "org.opencontainers.image.enc.keys.provider.";

/// Public block-cipher options (cipher name and HMAC), base64 JSON.
pub const ANNOTATION_PUBOPTS: &str = "org.opencontainers.image.enc.pubopts";

/// The only block cipher ocicrypt implements.
pub const CIPHER_AES_256_CTR_HMAC_SHA256: &str = "AES_256_CTR_HMAC_SHA256";

/// Suffix appended to a layer media type when the layer is encrypted.
pub const ENCRYPTED_SUFFIX: &str = "+encrypted";

/// OCI layer, uncompressed tar.
pub const MEDIA_TYPE_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// OCI layer, gzip.
pub const MEDIA_TYPE_LAYER_TAR_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// OCI layer, zstd.
pub const MEDIA_TYPE_LAYER_TAR_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// OCI non-distributable layer, uncompressed tar.
pub const MEDIA_TYPE_LAYER_ND_TAR: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar";
/// OCI non-distributable layer, gzip.
pub const MEDIA_TYPE_LAYER_ND_TAR_GZIP: &str =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
/// OCI non-distributable layer, zstd.
pub const MEDIA_TYPE_LAYER_ND_TAR_ZSTD: &str =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd";
/// Docker schema2 layer, gzip (converted to OCI before encryption).
pub const MEDIA_TYPE_DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Docker schema2 foreign layer, gzip.
pub const MEDIA_TYPE_DOCKER_FOREIGN_LAYER_GZIP: &str =
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";

/// Layer media types that may be encrypted (before the `+encrypted` suffix).
pub const ENCRYPTABLE_LAYER_MEDIA_TYPES: &[&str] = &[
    MEDIA_TYPE_LAYER_TAR,
    MEDIA_TYPE_LAYER_TAR_GZIP,
    MEDIA_TYPE_LAYER_TAR_ZSTD,
    MEDIA_TYPE_LAYER_ND_TAR,
    MEDIA_TYPE_LAYER_ND_TAR_GZIP,
    MEDIA_TYPE_LAYER_ND_TAR_ZSTD,
];

/// Key-provider name used by layercrypt's group (broker) wrap format.
pub const PROVIDER_LAYERCRYPT: &str = "layercrypt";

/// Largest annotation value we accept from an image (all wrapped keys of one scheme).
/// Real values are a few KiB; this bounds what an attacker controls.
pub const MAX_ANNOTATION_LEN: usize = 1024 * 1024;

/// Largest number of comma-separated wrapped-key items in one annotation.
pub const MAX_WRAPPED_ITEMS: usize = 256;

/// Largest private-options JSON we accept after unwrapping.
pub const MAX_PRIVATE_OPTS_LEN: usize = 64 * 1024;

/// Returns true if `media_type` names an encrypted layer (c/image's rule: ends in `+encrypted`).
pub fn is_encrypted_media_type(media_type: &str) -> bool {
    media_type.ends_with(ENCRYPTED_SUFFIX)
}

/// The media type of the encrypted form of a layer, or `None` if the layer type cannot be
/// encrypted (c/image's `getEncryptedMediaType`: only OCI layer types, never twice).
pub fn encrypted_media_type(media_type: &str) -> Option<String> {
    if media_type.contains(ENCRYPTED_SUFFIX) {
        return None;
    }
    ENCRYPTABLE_LAYER_MEDIA_TYPES
        .contains(&media_type)
        .then(|| format!("{media_type}{ENCRYPTED_SUFFIX}"))
}

/// The media type of the decrypted form of an encrypted layer (strips the trailing suffix).
pub fn decrypted_media_type(media_type: &str) -> Option<&str> {
    media_type.strip_suffix(ENCRYPTED_SUFFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types_round_trip() {
        for mt in ENCRYPTABLE_LAYER_MEDIA_TYPES {
            let enc = encrypted_media_type(mt).expect("encryptable");
            assert!(is_encrypted_media_type(&enc));
            assert_eq!(decrypted_media_type(&enc), Some(*mt));
        }
        assert_eq!(
            encrypted_media_type("application/vnd.oci.image.layer.v1.tar+gzip+encrypted"),
            None
        );
        assert_eq!(
            encrypted_media_type("application/vnd.oci.image.config.v1+json"),
            None
        );
    }
}
