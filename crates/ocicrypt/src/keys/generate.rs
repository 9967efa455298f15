//! Key-pair generation for `keygen`.

use openssl::ec::{EcGroup, EcKey};
use openssl::nid::Nid;
use openssl::pkey::PKey;
use openssl::rsa::Rsa;

use crate::error::{Error, Result};
use crate::secret::SecretBytes;

/// The kind of key pair to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// RSA with this many bits (2048 to 16384).
    Rsa(u32),
    /// ECDSA/ECDH on NIST P-256.
    EcP256,
    /// ECDSA/ECDH on NIST P-384.
    EcP384,
    /// ECDSA/ECDH on NIST P-521.
    EcP521,
}

/// The names [`KeyKind::from_str`](std::str::FromStr) accepts.
const KIND_NAMES: &str =
    "rsa (= rsa4096), rsa2048, rsa3072, rsa4096, ec (= p256), p256, p384, p521";

/// An unknown key-kind name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown key type {0:?}; expected one of: {KIND_NAMES}")]
pub struct ParseKeyKindError(String);

impl std::str::FromStr for KeyKind {
    type Err = ParseKeyKindError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "rsa" | "rsa4096" => KeyKind::Rsa(4096),
            "rsa2048" => KeyKind::Rsa(2048),
            "rsa3072" => KeyKind::Rsa(3072),
            "ec" | "p256" | "p-256" => KeyKind::EcP256,
            "p384" | "p-384" => KeyKind::EcP384,
            "p521" | "p-521" => KeyKind::EcP521,
            _ => return Err(ParseKeyKindError(s.to_owned())),
        })
    }
}

impl std::fmt::Display for KeyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyKind::Rsa(bits) => write!(f, "rsa{bits}"),
            KeyKind::EcP256 => f.write_str("p256"),
            KeyKind::EcP384 => f.write_str("p384"),
            KeyKind::EcP521 => f.write_str("p521"),
        }
    }
}

/// Generates a key pair: (PKCS#8 PEM private key, SPKI PEM public key).
///
/// PKCS#8 is the one private-key PEM form Go ocicrypt (skopeo) reads for both RSA and EC.
pub fn generate_keypair(kind: KeyKind) -> Result<(SecretBytes, Vec<u8>)> {
    let key = match kind {
        KeyKind::Rsa(bits) => {
            if !(2048..=16384).contains(&bits) {
                return Err(Error::Recipient {
                    recipient: kind.to_string(),
                    reason: "RSA keys must have 2048 to 16384 bits".into(),
                });
            }
            PKey::from_rsa(Rsa::generate(bits)?)?
        }
        KeyKind::EcP256 | KeyKind::EcP384 | KeyKind::EcP521 => {
            let nid = match kind {
                KeyKind::EcP256 => Nid::X9_62_PRIME256V1,
                KeyKind::EcP384 => Nid::SECP384R1,
                _ => Nid::SECP521R1,
            };
            // Named-curve encoding is the default for groups made from a curve name.
            let group = EcGroup::from_curve_name(nid)?;
            PKey::from_ec_key(EcKey::generate(&group)?)?
        }
    };
    let private = SecretBytes::new(key.private_key_to_pem_pkcs8()?);
    let public = key.public_key_to_pem()?;
    Ok((private, public))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{parse_key_material, KeyMaterial};

    #[test]
    fn kind_names() {
        assert_eq!("rsa".parse(), Ok(KeyKind::Rsa(4096)));
        assert_eq!("RSA2048".parse(), Ok(KeyKind::Rsa(2048)));
        assert_eq!("rsa3072".parse(), Ok(KeyKind::Rsa(3072)));
        assert_eq!("ec".parse(), Ok(KeyKind::EcP256));
        assert_eq!("p384".parse(), Ok(KeyKind::EcP384));
        assert_eq!("p521".parse(), Ok(KeyKind::EcP521));
        let err = "dsa".parse::<KeyKind>().expect_err("unknown");
        assert!(err.to_string().contains("rsa2048"));
        assert_eq!(KeyKind::Rsa(3072).to_string(), "rsa3072");
    }

    #[test]
    fn generated_pairs_parse_back_and_match() {
        for kind in [
            KeyKind::Rsa(2048),
            KeyKind::EcP256,
            KeyKind::EcP384,
            KeyKind::EcP521,
        ] {
            let (private, public) = generate_keypair(kind).expect("generate");
            assert!(private
                .expose_secret()
                .starts_with(b"-----BEGIN PRIVATE KEY-----"));
            assert!(public.starts_with(b"-----BEGIN PUBLIC KEY-----"));
            let private = parse_key_material(private.expose_secret(), None, "k").expect("parse");
            let public = parse_key_material(&public, None, "k.pub").expect("parse");
            let (Some(KeyMaterial::Private(sk)), Some(KeyMaterial::Public(pk))) =
                (private.first(), public.first())
            else {
                panic!("unexpected material for {kind}");
            };
            assert!(sk.expose_secret().public_eq(pk.pkey()));
        }
    }

    #[test]
    fn refuses_weak_rsa() {
        assert!(generate_keypair(KeyKind::Rsa(1024)).is_err());
    }
}
