//! Encrypting and decrypting layers for every scheme and for mixed recipients.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use layercrypt_ocicrypt::annotations::LayerAnnotations;
use layercrypt_ocicrypt::keys::KeyKind;
use layercrypt_ocicrypt::layer::{recipients_of, Wrappers};
use layercrypt_ocicrypt::spec::{
    ANNOTATION_KEYS_JWE, ANNOTATION_KEYS_PKCS7, ANNOTATION_KEYS_PROVIDER_PREFIX, ANNOTATION_PUBOPTS,
};
use layercrypt_ocicrypt::{DecryptConfig, EncryptConfig, Error};

use crate::support::*;

/// Encrypts for `ec`, checks the annotation map has exactly `keys` (+ pubopts), one item per
/// scheme, in Go's format; each `dcs` entry decrypts to the data.
fn round_trip(
    wrappers: &Wrappers,
    ec: &EncryptConfig,
    keys: &[&str],
    dcs: &[DecryptConfig],
) -> Encrypted {
    let data = layer_data();
    let enc = encrypt(wrappers, ec, &data);
    let mut want: Vec<&str> = keys.to_vec();
    want.push(ANNOTATION_PUBOPTS);
    want.sort();
    assert_eq!(enc.map.keys().map(String::as_str).collect::<Vec<_>>(), want);
    for key in keys {
        // One item per scheme: standard padded base64, no comma.
        let items = raw_items(&enc.map, key);
        assert_eq!(items.len(), 1, "{key}");
        let bytes = STANDARD.decode(items[0]).unwrap();
        assert_eq!(
            STANDARD.encode(&bytes),
            items[0],
            "{key}: not canonical std base64"
        );
    }
    let ann = enc.ann();
    assert!(ann.has_wrapped_keys());
    let pubopts: serde_json::Value =
        serde_json::from_slice(&STANDARD.decode(&enc.map[ANNOTATION_PUBOPTS]).unwrap()).unwrap();
    assert_eq!(pubopts["cipher"], "AES_256_CTR_HMAC_SHA256");
    for (i, dc) in dcs.iter().enumerate() {
        let plain = decrypt(wrappers, dc, &enc.map, &enc.ciphertext)
            .unwrap_or_else(|e| panic!("recipient {i}: {e}"));
        assert!(plain == data, "recipient {i}: plaintext differs");
    }
    enc
}

#[test]
fn jwe_rsa() {
    let (k, other) = (
        JweKey::generate(KeyKind::Rsa(2048)),
        JweKey::generate(KeyKind::Rsa(2048)),
    );
    let w = Wrappers::new();
    let ec = EncryptConfig {
        jwe: vec![k.public.clone()],
        ..Default::default()
    };
    let enc = round_trip(&w, &ec, &[ANNOTATION_KEYS_JWE], &[jwe_dc(&k)]);
    assert_no_matching_key(decrypt(&w, &jwe_dc(&other), &enc.map, &enc.ciphertext));
    assert_no_matching_key(decrypt(
        &w,
        &DecryptConfig::default(),
        &enc.map,
        &enc.ciphertext,
    ));
}

#[test]
fn jwe_ec() {
    let (k, other) = (
        JweKey::generate(KeyKind::EcP256),
        JweKey::generate(KeyKind::EcP256),
    );
    let k384 = JweKey::generate(KeyKind::EcP384);
    let w = Wrappers::new();
    let ec = EncryptConfig {
        jwe: vec![k.public.clone(), k384.public.clone()],
        ..Default::default()
    };
    let enc = round_trip(
        &w,
        &ec,
        &[ANNOTATION_KEYS_JWE],
        &[jwe_dc(&k), jwe_dc(&k384)],
    );
    assert_no_matching_key(decrypt(&w, &jwe_dc(&other), &enc.map, &enc.ciphertext));
}

#[test]
fn pkcs7() {
    let (a, b) = (CertKey::fixture(1), CertKey::fixture(2));
    let w = Wrappers::new();
    let ec = EncryptConfig {
        pkcs7: vec![a.cert.clone()],
        ..Default::default()
    };
    let enc = round_trip(&w, &ec, &[ANNOTATION_KEYS_PKCS7], &[a.dc()]);
    assert_no_matching_key(decrypt(&w, &b.dc(), &enc.map, &enc.ciphertext));
}

#[test]
fn key_provider() {
    let p = Provider::new();
    let w = p.wrappers();
    let key = format!("{ANNOTATION_KEYS_PROVIDER_PREFIX}{PROVIDER}");
    let ec = EncryptConfig {
        providers: vec![Provider::recipient()],
        ..Default::default()
    };
    let enc = round_trip(&w, &ec, &[&key], &[Provider::dc()]);
    // A configured provider is always asked; here it refuses a caller outside the group.
    match decrypt(&w, &DecryptConfig::default(), &enc.map, &enc.ciphertext) {
        Err(Error::UnwrapFailed { causes, .. }) => {
            assert!(
                causes
                    .iter()
                    .any(|c| c.chain_text().contains("not a member of group grid-users")),
                "{causes:?}"
            )
        }
        other => panic!("expected UnwrapFailed, got {other:?}"),
    }
    // Where the provider is not configured, nothing can open it.
    assert_no_matching_key(decrypt(
        &Wrappers::new(),
        &Provider::dc(),
        &enc.map,
        &enc.ciphertext,
    ));
}

#[test]
fn mixed_recipients() {
    let p = Provider::new();
    let w = p.wrappers();
    let (rsa, ec_key) = (
        JweKey::generate(KeyKind::Rsa(2048)),
        JweKey::generate(KeyKind::EcP256),
    );
    let (a, b) = (CertKey::fixture(1), CertKey::fixture(2));
    let ec = EncryptConfig {
        jwe: vec![rsa.public.clone(), ec_key.public.clone()],
        pkcs7: vec![a.cert.clone()],
        providers: vec![Provider::recipient()],
    };
    let provider_key = format!("{ANNOTATION_KEYS_PROVIDER_PREFIX}{PROVIDER}");
    let enc = round_trip(
        &w,
        &ec,
        &[ANNOTATION_KEYS_JWE, ANNOTATION_KEYS_PKCS7, &provider_key],
        &[jwe_dc(&rsa), jwe_dc(&ec_key), a.dc(), Provider::dc()],
    );
    let ann = enc.ann();
    let count = |key: &str| recipients_of(&w, key, &ann.wrapped[key][0]).unwrap().len();
    assert_eq!(count(ANNOTATION_KEYS_JWE), 2);
    assert_eq!(count(ANNOTATION_KEYS_PKCS7), 1);
    assert_eq!(count(&provider_key), 1);
    // Not a recipient: without the provider configured, no key matches.
    assert_no_matching_key(decrypt(
        &Wrappers::new(),
        &b.dc(),
        &enc.map,
        &enc.ciphertext,
    ));
}

#[test]
fn flipped_ciphertext_byte_is_invalid_mac() {
    let k = JweKey::generate(KeyKind::EcP256);
    let w = Wrappers::new();
    let ec = EncryptConfig {
        jwe: vec![k.public.clone()],
        ..Default::default()
    };
    let enc = encrypt(&w, &ec, &layer_data());
    for pos in [0, LAYER_LEN / 2, LAYER_LEN - 1] {
        let mut bad = enc.ciphertext.clone();
        bad[pos] ^= 0x01;
        match decrypt(&w, &jwe_dc(&k), &enc.map, &bad) {
            Err(Error::InvalidMac) => {}
            other => panic!(
                "byte {pos}: expected InvalidMac, got {:?}",
                other.map(|v| v.len())
            ),
        }
    }
    // Truncated and extended blobs fail the same way.
    for bad in [
        &enc.ciphertext[..LAYER_LEN - 1],
        &[enc.ciphertext.as_slice(), &[0]].concat()[..],
    ] {
        assert!(matches!(
            decrypt(&w, &jwe_dc(&k), &enc.map, bad),
            Err(Error::InvalidMac)
        ));
    }
    // Annotations of another layer: a key opens them, but the HMAC does not match.
    let other = encrypt(&w, &ec, &layer_data());
    assert!(matches!(
        decrypt(&w, &jwe_dc(&k), &other.map, &enc.ciphertext),
        Err(Error::InvalidMac)
    ));
}

#[test]
fn annotations_survive_a_parse_render_round_trip() {
    let k = JweKey::generate(KeyKind::EcP256);
    let a = CertKey::fixture(1);
    let w = Wrappers::new();
    let ec = EncryptConfig {
        jwe: vec![k.public.clone()],
        pkcs7: vec![a.cert.clone()],
        ..Default::default()
    };
    let enc = encrypt(&w, &ec, b"small layer");
    let ann = LayerAnnotations::parse(&enc.map).unwrap();
    assert_eq!(ann.to_map(), enc.map);
}
