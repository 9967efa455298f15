//! Unwrapping age X25519 recipient stanzas with a group key, faster than
//! `age::x25519::Identity`: the recipient's public key (needed for the HKDF salt) is taken from
//! the group's stored recipient instead of being recomputed from the secret scalar on every
//! unwrap (a base-point multiplication), and the Diffie-Hellman runs on aws-lc-rs (already in
//! the tree through rustls and jsonwebtoken), whose X25519 is assembly. The stanza checks,
//! the key derivation and the AEAD are age's own (c2sp.org/age, X25519 recipient stanza); the
//! rest of the file (header MAC, payload) is still decrypted by the `age` crate.
//!
//! A recipient that does not belong to the secret only changes the HKDF salt: the file key
//! then fails to authenticate and the unwrap is refused, so a wrong recipient fails closed.

use age_core::format::{FileKey, Stanza, FILE_KEY_BYTES};
use age_core::primitives::{aead_decrypt, hkdf};
use aws_lc_rs::agreement::{self, PrivateKey, UnparsedPublicKey, X25519};
use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine as _;
use bech32::FromBase32 as _;
use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

const STANZA_TAG: &str = "X25519";
const KEY_LABEL: &[u8] = b"age-encryption.org/v1/X25519";
const SECRET_HRP: &str = "age-secret-key-";
const PUBLIC_HRP: &str = "age";
/// 16-byte file key plus the 16-byte Poly1305 tag.
const ENCRYPTED_FILE_KEY_BYTES: usize = FILE_KEY_BYTES + 16;

/// A group's age X25519 key pair, ready to unwrap stanzas.
pub(crate) struct GroupIdentity {
    secret: PrivateKey,
    public: [u8; 32],
}

fn bech32_bytes(s: &str, hrp: &str) -> Option<Zeroizing<Vec<u8>>> {
    let (got, data, variant) = bech32::decode(s).ok()?;
    if got != hrp || variant != bech32::Variant::Bech32 {
        return None;
    }
    let bytes = Zeroizing::new(Vec::<u8>::from_base32(&data).ok()?);
    (bytes.len() == 32).then_some(bytes)
}

impl GroupIdentity {
    /// From the stored `AGE-SECRET-KEY-1…` and the group's `age1…` recipient of that version.
    pub(crate) fn new(secret: &str, recipient: &str) -> Option<Self> {
        let scalar = bech32_bytes(secret, SECRET_HRP)?;
        let public = bech32_bytes(recipient, PUBLIC_HRP)?;
        let secret = PrivateKey::from_private_key(&X25519, &scalar).ok()?;
        let mut pk = [0u8; 32];
        pk.copy_from_slice(&public);
        Some(GroupIdentity { secret, public: pk })
    }
}

impl age::Identity for GroupIdentity {
    fn unwrap_stanza(&self, stanza: &Stanza) -> Option<Result<FileKey, age::DecryptError>> {
        if stanza.tag != STANZA_TAG {
            return None;
        }
        let invalid = || Some(Err(age::DecryptError::InvalidHeader));
        // Valid and canonical stanza (as age checks it): one argument, the 32-byte ephemeral
        // share in canonical unpadded base64, and a 32-byte body.
        let [arg] = &stanza.args[..] else {
            return invalid();
        };
        if arg.len() != 43 {
            return invalid();
        }
        let Ok(epk) = STANDARD_NO_PAD.decode(arg) else {
            return invalid();
        };
        if epk.len() != 32 || STANDARD_NO_PAD.encode(&epk) != *arg {
            return invalid();
        }
        if stanza.body.len() != ENCRYPTED_FILE_KEY_BYTES {
            return invalid();
        }
        let shared = agreement::agree(
            &self.secret,
            UnparsedPublicKey::new(&X25519, &epk),
            (),
            |s| Ok(Zeroizing::new(s.to_vec())),
        );
        // aws-lc refuses an all-zero (non-contributory) shared secret itself; the check is
        // repeated so that this does not depend on it.
        let Ok(shared) = shared else {
            return invalid();
        };
        if shared.len() != 32 || bool::from(shared.iter().fold(0u8, |a, b| a | b).ct_eq(&0)) {
            return invalid();
        }
        let mut salt = [0u8; 64];
        salt[..32].copy_from_slice(&epk);
        salt[32..].copy_from_slice(&self.public);
        let key = Zeroizing::new(hkdf(&salt, KEY_LABEL, &shared));
        // Not ours (another key of the file, or a wrong recipient): None, as age does.
        aead_decrypt(&key, FILE_KEY_BYTES, &stanza.body)
            .ok()
            .map(|pt| {
                let pt = Zeroizing::new(pt);
                Ok(FileKey::init_with_mut(|k| k.copy_from_slice(&pt)))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use age::secrecy::ExposeSecret as _;
    use std::io::Read as _;

    fn pair() -> (String, String) {
        let id = age::x25519::Identity::generate();
        (
            id.to_string().expose_secret().to_owned(),
            id.to_public().to_string(),
        )
    }

    fn open(identity: &GroupIdentity, ct: &[u8]) -> Option<Vec<u8>> {
        let decryptor = age::Decryptor::new(ct).ok()?;
        let mut reader = decryptor
            .decrypt(std::iter::once(identity as &dyn age::Identity))
            .ok()?;
        let mut out = Vec::new();
        reader.read_to_end(&mut out).ok()?;
        Some(out)
    }

    #[test]
    fn unwraps_what_age_wraps_and_nothing_else() {
        let (secret, recipient) = pair();
        let r: age::x25519::Recipient = recipient.parse().expect("recipient");
        let ct = age::encrypt(&r, b"private options").expect("encrypt");
        let id = GroupIdentity::new(&secret, &recipient).expect("identity");
        assert_eq!(open(&id, &ct).as_deref(), Some(&b"private options"[..]));

        // Another key, or the right key with another recipient (wrong HKDF salt): refused.
        let (other_secret, other_recipient) = pair();
        let other = GroupIdentity::new(&other_secret, &other_recipient).expect("identity");
        assert!(open(&other, &ct).is_none());
        let mismatched = GroupIdentity::new(&secret, &other_recipient).expect("identity");
        assert!(open(&mismatched, &ct).is_none());

        // Tampered ciphertext anywhere: refused.
        for i in [20, ct.len() / 2, ct.len() - 1] {
            let mut bad = ct.clone();
            bad[i] ^= 1;
            assert!(open(&id, &bad).is_none(), "byte {i}");
        }
    }

    #[test]
    fn refuses_malformed_keys() {
        let (secret, recipient) = pair();
        assert!(GroupIdentity::new(&recipient, &recipient).is_none());
        assert!(GroupIdentity::new(&secret, &secret).is_none());
        assert!(GroupIdentity::new("AGE-SECRET-KEY-1XYZ", &recipient).is_none());
        assert!(GroupIdentity::new(&secret, "age1").is_none());
    }

    #[test]
    fn refuses_malformed_stanzas() {
        let (secret, recipient) = pair();
        let id = GroupIdentity::new(&secret, &recipient).expect("identity");
        let stanza = |args: Vec<String>, body: Vec<u8>| Stanza {
            tag: STANZA_TAG.into(),
            args,
            body,
        };
        let share = STANDARD_NO_PAD.encode([9u8; 32]);
        use age::Identity as _;
        let bad = |s: Stanza| matches!(id.unwrap_stanza(&s), Some(Err(_)));
        assert!(bad(stanza(vec![], vec![0; 32])));
        assert!(bad(stanza(vec![share.clone(), share.clone()], vec![0; 32])));
        assert!(bad(stanza(vec![share.clone()], vec![0; 31])));
        assert!(bad(stanza(vec![format!("{share}=")], vec![0; 32])));
        // The all-zero point gives an all-zero shared secret.
        assert!(bad(stanza(
            vec![STANDARD_NO_PAD.encode([0u8; 32])],
            vec![0; 32]
        )));
        let other_tag = Stanza {
            tag: "scrypt".into(),
            args: vec![],
            body: vec![],
        };
        assert!(id.unwrap_stanza(&other_tag).is_none());
    }
}
