//! Re-wrapping: adding and removing recipients of an encrypted layer without touching its data.

use std::collections::BTreeMap;

use layercrypt_ocicrypt::keys::KeyKind;
use layercrypt_ocicrypt::keywrap::RecipientInfo;
use layercrypt_ocicrypt::layer::{recipients_of, rewrap_layer, Rewrap, Wrappers};
use layercrypt_ocicrypt::spec::{
    ANNOTATION_KEYS_JWE, ANNOTATION_KEYS_PKCS7, ANNOTATION_KEYS_PROVIDER_PREFIX, ANNOTATION_PUBOPTS,
};
use layercrypt_ocicrypt::{annotations::LayerAnnotations, EncryptConfig, Error};

use crate::support::*;

fn recipients(w: &Wrappers, map: &BTreeMap<String, String>, key: &str) -> Vec<RecipientInfo> {
    let ann = LayerAnnotations::parse(map).unwrap();
    ann.wrapped[key]
        .iter()
        .flat_map(|item| recipients_of(w, key, item).unwrap())
        .collect()
}

fn is_cert(c: &CertKey) -> impl Fn(&RecipientInfo) -> bool + Sync {
    // What a CLI shows for the certificate: the recipient is matched by issuer and serial.
    let s = c.cert.summary();
    move |r| matches!(r, RecipientInfo::Pkcs7 { issuer, serial } if *issuer == s.issuer && *serial == s.serial)
}

fn is_jwe_key(k: &JweKey) -> impl Fn(&RecipientInfo) -> bool + Sync {
    let tp = k.thumbprint();
    move |r| matches!(r, RecipientInfo::Jwe { thumbprint: Some(t), .. } if *t == tp)
}

fn assert_pubopts_kept(before: &BTreeMap<String, String>, after: &BTreeMap<String, String>) {
    assert_eq!(
        after[ANNOTATION_PUBOPTS], before[ANNOTATION_PUBOPTS],
        "pubopts changed"
    );
}

/// RCAuth user certificates are re-issued (with a new key) about every 11 days: the user opens
/// the layer with the old certificate and key, adds the new certificate and removes the old one.
#[test]
fn rcauth_reissue_add_new_cert_remove_old() {
    let w = Wrappers::new();
    let (old, new) = (CertKey::fixture(1), CertKey::fixture(2));
    let data = layer_data();
    let enc = encrypt(
        &w,
        &EncryptConfig {
            pkcs7: vec![old.cert.clone()],
            ..Default::default()
        },
        &data,
    );
    let ciphertext_before = enc.ciphertext.clone();
    let add = EncryptConfig {
        pkcs7: vec![new.cert.clone()],
        ..Default::default()
    };
    let remove = is_cert(&old);
    let map = rewrap_layer(
        &w,
        &old.dc(),
        &enc.ann(),
        &Rewrap {
            add: Some(&add),
            remove: Some(&remove),
            remove_all: false,
        },
    )
    .unwrap();
    assert_pubopts_kept(&enc.map, &map);
    assert_eq!(raw_items(&map, ANNOTATION_KEYS_PKCS7).len(), 1);
    let left = recipients(&w, &map, ANNOTATION_KEYS_PKCS7);
    assert_eq!(left.len(), 1);
    assert!(is_cert(&new)(&left[0]), "{left:?}");
    // The data blob is the one encrypted at the start.
    assert_eq!(enc.ciphertext, ciphertext_before);
    assert!(decrypt(&w, &new.dc(), &map, &enc.ciphertext).unwrap() == data);
    assert_no_matching_key(decrypt(&w, &old.dc(), &map, &enc.ciphertext));
}

#[test]
fn adding_to_an_existing_scheme_appends_an_item_after_a_comma() {
    let w = Wrappers::new();
    let data = layer_data();
    // PKCS#7
    let (a, b) = (CertKey::fixture(1), CertKey::fixture(2));
    let enc = encrypt(
        &w,
        &EncryptConfig {
            pkcs7: vec![a.cert.clone()],
            ..Default::default()
        },
        &data,
    );
    let add = EncryptConfig {
        pkcs7: vec![b.cert.clone()],
        ..Default::default()
    };
    let map = rewrap_layer(
        &w,
        &a.dc(),
        &enc.ann(),
        &Rewrap {
            add: Some(&add),
            ..Default::default()
        },
    )
    .unwrap();
    assert_pubopts_kept(&enc.map, &map);
    let items = raw_items(&map, ANNOTATION_KEYS_PKCS7);
    assert_eq!(items.len(), 2);
    assert_eq!(
        items[0], enc.map[ANNOTATION_KEYS_PKCS7],
        "the existing item must stay first and unchanged"
    );
    assert!(map[ANNOTATION_KEYS_PKCS7].starts_with(&format!("{},", enc.map[ANNOTATION_KEYS_PKCS7])));
    for dc in [a.dc(), b.dc()] {
        assert!(decrypt(&w, &dc, &map, &enc.ciphertext).unwrap() == data);
    }
    // JWE, and a scheme the layer did not have yet.
    let (rsa, ec) = (
        JweKey::generate(KeyKind::Rsa(2048)),
        JweKey::generate(KeyKind::EcP256),
    );
    let enc = encrypt(
        &w,
        &EncryptConfig {
            jwe: vec![rsa.public.clone()],
            ..Default::default()
        },
        &data,
    );
    let add = EncryptConfig {
        jwe: vec![ec.public.clone()],
        pkcs7: vec![a.cert.clone()],
        ..Default::default()
    };
    let map = rewrap_layer(
        &w,
        &jwe_dc(&rsa),
        &enc.ann(),
        &Rewrap {
            add: Some(&add),
            ..Default::default()
        },
    )
    .unwrap();
    assert_pubopts_kept(&enc.map, &map);
    let items = raw_items(&map, ANNOTATION_KEYS_JWE);
    assert_eq!(items.len(), 2);
    assert_eq!(items[0], enc.map[ANNOTATION_KEYS_JWE]);
    assert_eq!(raw_items(&map, ANNOTATION_KEYS_PKCS7).len(), 1);
    for dc in [jwe_dc(&rsa), jwe_dc(&ec), a.dc()] {
        assert!(decrypt(&w, &dc, &map, &enc.ciphertext).unwrap() == data);
    }
}

#[test]
fn remove_all_then_add() {
    let w = Wrappers::new();
    let data = layer_data();
    let (rsa, ec) = (
        JweKey::generate(KeyKind::Rsa(2048)),
        JweKey::generate(KeyKind::EcP256),
    );
    let a = CertKey::fixture(1);
    let enc = encrypt(
        &w,
        &EncryptConfig {
            jwe: vec![rsa.public.clone()],
            pkcs7: vec![a.cert.clone()],
            ..Default::default()
        },
        &data,
    );
    let add = EncryptConfig {
        jwe: vec![ec.public.clone()],
        ..Default::default()
    };
    let map = rewrap_layer(
        &w,
        &a.dc(),
        &enc.ann(),
        &Rewrap {
            add: Some(&add),
            remove: None,
            remove_all: true,
        },
    )
    .unwrap();
    assert_pubopts_kept(&enc.map, &map);
    assert_eq!(
        map.keys().collect::<Vec<_>>(),
        vec![ANNOTATION_KEYS_JWE, ANNOTATION_PUBOPTS]
    );
    assert_eq!(raw_items(&map, ANNOTATION_KEYS_JWE).len(), 1);
    assert_ne!(map[ANNOTATION_KEYS_JWE], enc.map[ANNOTATION_KEYS_JWE]);
    assert!(decrypt(&w, &jwe_dc(&ec), &map, &enc.ciphertext).unwrap() == data);
    assert_no_matching_key(decrypt(&w, &jwe_dc(&rsa), &map, &enc.ciphertext));
    assert_no_matching_key(decrypt(&w, &a.dc(), &map, &enc.ciphertext));
}

#[test]
fn remove_one_jwe_recipient_by_thumbprint() {
    let w = Wrappers::new();
    let data = layer_data();
    let (rsa, ec) = (
        JweKey::generate(KeyKind::Rsa(2048)),
        JweKey::generate(KeyKind::EcP256),
    );
    let enc = encrypt(
        &w,
        &EncryptConfig {
            jwe: vec![rsa.public.clone(), ec.public.clone()],
            ..Default::default()
        },
        &data,
    );
    let remove = is_jwe_key(&ec);
    // Removing needs no key at all.
    let nobody = layercrypt_ocicrypt::DecryptConfig::default();
    let map = rewrap_layer(
        &w,
        &nobody,
        &enc.ann(),
        &Rewrap {
            remove: Some(&remove),
            ..Default::default()
        },
    )
    .unwrap();
    assert_pubopts_kept(&enc.map, &map);
    assert_eq!(raw_items(&map, ANNOTATION_KEYS_JWE).len(), 1);
    let left = recipients(&w, &map, ANNOTATION_KEYS_JWE);
    assert_eq!(left.len(), 1);
    assert!(is_jwe_key(&rsa)(&left[0]), "{left:?}");
    assert!(decrypt(&w, &jwe_dc(&rsa), &map, &enc.ciphertext).unwrap() == data);
    assert_no_matching_key(decrypt(&w, &jwe_dc(&ec), &map, &enc.ciphertext));
    // A predicate that matches nothing leaves the annotations as they were.
    let stranger = JweKey::generate(KeyKind::EcP256);
    let none = is_jwe_key(&stranger);
    let same = rewrap_layer(
        &w,
        &nobody,
        &enc.ann(),
        &Rewrap {
            remove: Some(&none),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(same, enc.map);
}

#[test]
fn removing_one_scheme_keeps_the_others() {
    let w = Wrappers::new();
    let data = layer_data();
    let rsa = JweKey::generate(KeyKind::Rsa(2048));
    let a = CertKey::fixture(1);
    let enc = encrypt(
        &w,
        &EncryptConfig {
            jwe: vec![rsa.public.clone()],
            pkcs7: vec![a.cert.clone()],
            ..Default::default()
        },
        &data,
    );
    let remove = is_cert(&a);
    let map = rewrap_layer(
        &w,
        &jwe_dc(&rsa),
        &enc.ann(),
        &Rewrap {
            remove: Some(&remove),
            ..Default::default()
        },
    )
    .unwrap();
    assert_pubopts_kept(&enc.map, &map);
    assert_eq!(
        map.keys().collect::<Vec<_>>(),
        vec![ANNOTATION_KEYS_JWE, ANNOTATION_PUBOPTS]
    );
    assert_eq!(map[ANNOTATION_KEYS_JWE], enc.map[ANNOTATION_KEYS_JWE]);
    assert!(decrypt(&w, &jwe_dc(&rsa), &map, &enc.ciphertext).unwrap() == data);
    assert_no_matching_key(decrypt(&w, &a.dc(), &map, &enc.ciphertext));
}

#[test]
fn removing_the_last_recipient_is_no_recipients() {
    let w = Wrappers::new();
    let rsa = JweKey::generate(KeyKind::Rsa(2048));
    let a = CertKey::fixture(1);
    let nobody = layercrypt_ocicrypt::DecryptConfig::default();
    let enc = encrypt(
        &w,
        &EncryptConfig {
            jwe: vec![rsa.public.clone()],
            ..Default::default()
        },
        b"x",
    );
    let remove = is_jwe_key(&rsa);
    let r = rewrap_layer(
        &w,
        &nobody,
        &enc.ann(),
        &Rewrap {
            remove: Some(&remove),
            ..Default::default()
        },
    );
    assert!(matches!(r, Err(Error::NoRecipients)), "{r:?}");
    let r = rewrap_layer(
        &w,
        &nobody,
        &enc.ann(),
        &Rewrap {
            remove_all: true,
            ..Default::default()
        },
    );
    assert!(matches!(r, Err(Error::NoRecipients)), "{r:?}");
    let enc = encrypt(
        &w,
        &EncryptConfig {
            pkcs7: vec![a.cert.clone()],
            ..Default::default()
        },
        b"x",
    );
    let remove = is_cert(&a);
    let r = rewrap_layer(
        &w,
        &nobody,
        &enc.ann(),
        &Rewrap {
            remove: Some(&remove),
            ..Default::default()
        },
    );
    assert!(matches!(r, Err(Error::NoRecipients)), "{r:?}");
}

#[test]
fn rewrap_with_a_key_that_opens_nothing_changes_nothing() {
    let w = Wrappers::new();
    let data = layer_data();
    let (rsa, ec) = (
        JweKey::generate(KeyKind::Rsa(2048)),
        JweKey::generate(KeyKind::EcP256),
    );
    let wrong = JweKey::generate(KeyKind::Rsa(2048));
    let enc = encrypt(
        &w,
        &EncryptConfig {
            jwe: vec![rsa.public.clone()],
            ..Default::default()
        },
        &data,
    );
    let ann = enc.ann();
    let before = ann.clone();
    let add = EncryptConfig {
        jwe: vec![ec.public.clone()],
        ..Default::default()
    };
    let remove = is_jwe_key(&rsa);
    for rewrap in [
        Rewrap {
            add: Some(&add),
            ..Default::default()
        },
        Rewrap {
            add: Some(&add),
            remove: Some(&remove),
            remove_all: false,
        },
        Rewrap {
            add: Some(&add),
            remove: None,
            remove_all: true,
        },
    ] {
        let r = rewrap_layer(&w, &jwe_dc(&wrong), &ann, &rewrap);
        assert!(matches!(r, Err(Error::NoMatchingKey { .. })), "{r:?}");
    }
    assert_eq!(ann, before);
    assert!(decrypt(&w, &jwe_dc(&rsa), &enc.map, &enc.ciphertext).unwrap() == data);
}

#[test]
fn removing_a_provider_recipient_alone_is_refused() {
    let p = Provider::new();
    let w = p.wrappers();
    let rsa = JweKey::generate(KeyKind::Rsa(2048));
    let enc = encrypt(
        &w,
        &EncryptConfig {
            jwe: vec![rsa.public.clone()],
            providers: vec![Provider::recipient()],
            ..Default::default()
        },
        b"x",
    );
    let provider = |r: &RecipientInfo| matches!(r, RecipientInfo::Provider { .. });
    let nobody = layercrypt_ocicrypt::DecryptConfig::default();
    let r = rewrap_layer(
        &w,
        &nobody,
        &enc.ann(),
        &Rewrap {
            remove: Some(&provider),
            ..Default::default()
        },
    );
    match r {
        Err(Error::Recipient { recipient, reason }) => {
            assert_eq!(
                recipient,
                format!("{ANNOTATION_KEYS_PROVIDER_PREFIX}{PROVIDER}")
            );
            assert!(reason.contains("--remove-all"), "{reason}");
        }
        other => panic!("expected Error::Recipient, got {other:?}"),
    }
}
