//! Interop with Go ocicrypt in both directions, through Debian's skopeo 1.9.3.

use std::path::Path;

use layercrypt_tests::{key, layercrypt, layers, manifest_bytes, skopeo, vectors};

fn plain() -> std::path::PathBuf {
    vectors().join("images/plain")
}

fn oci(dir: &Path, tag: &str) -> String {
    format!("oci:{}:{tag}", dir.display())
}

/// skopeo encrypted (vectors made by `tests/data/make-vectors.sh`), layercrypt decrypts:
/// the decrypted manifest is byte-identical to the original.
fn skopeo_to_layercrypt(enc_tag: &str, plain_tag: &str, keys: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let mut args = vec!["decrypt".to_owned()];
    for k in keys {
        args.push("--key".into());
        args.push(key(k));
    }
    args.push(oci(&vectors().join("images/skopeo-enc"), enc_tag));
    args.push(oci(&out, plain_tag));
    layercrypt(&args).ok();
    assert_eq!(
        manifest_bytes(&out, plain_tag),
        manifest_bytes(&plain(), plain_tag),
        "decrypted manifest of {enc_tag} differs from the original"
    );
}

#[test]
fn go_jwe_rsa_to_layercrypt() {
    skopeo_to_layercrypt("jwe-rsa", "gzip", &["rsa.pem"]);
}

#[test]
fn go_jwe_ec_to_layercrypt() {
    skopeo_to_layercrypt("jwe-ec", "gzip", &["ec.pem"]);
}

#[test]
fn go_pkcs7_to_layercrypt() {
    skopeo_to_layercrypt("pkcs7", "gzip", &["user.key.pem", "user.pem"]);
}

#[test]
fn go_two_recipients_to_layercrypt_with_either_key() {
    skopeo_to_layercrypt("two-jwe", "gzip", &["rsa.pem"]);
    skopeo_to_layercrypt("two-jwe", "gzip", &["ec.pem"]);
}

#[test]
fn go_mixed_schemes_to_layercrypt_with_either_key() {
    skopeo_to_layercrypt("mixed", "gzip", &["rsa.pem"]);
    skopeo_to_layercrypt("mixed", "gzip", &["user.key.pem", "user.pem"]);
}

#[test]
fn go_partial_multilayer_to_layercrypt() {
    skopeo_to_layercrypt("partial", "three", &["rsa.pem"]);
}

#[test]
fn go_tar_and_zstd_layers_to_layercrypt() {
    skopeo_to_layercrypt("tar", "tar", &["rsa.pem"]);
    skopeo_to_layercrypt("zstd", "zstd", &["rsa.pem"]);
}

/// layercrypt encrypts, skopeo (Go ocicrypt) decrypts to the byte-identical original.
fn layercrypt_to_skopeo(tag: &str, recipients: &[&str], layer_sel: &[&str], skopeo_keys: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    let enc = tmp.path().join("enc");
    let out = tmp.path().join("out");
    let mut args = vec!["encrypt".to_owned()];
    for r in recipients {
        let (scheme, file) = r.split_once(':').unwrap();
        args.push("--recipient".into());
        args.push(format!("{scheme}:{}", key(file)));
    }
    for l in layer_sel {
        args.push(format!("--layer={l}"));
    }
    args.push(oci(&plain(), tag));
    args.push(oci(&enc, tag));
    layercrypt(&args).ok();

    let original = manifest_bytes(&plain(), tag);
    let encrypted = manifest_bytes(&enc, tag);
    let (orig_layers, enc_layers) = (layers(&original), layers(&encrypted));
    for (i, (o, e)) in orig_layers.iter().zip(&enc_layers).enumerate() {
        let selected = layer_sel.is_empty()
            || layer_sel.iter().any(|s| {
                let n: i64 = s.parse().unwrap();
                n == i as i64 || (n < 0 && orig_layers.len() as i64 + n == i as i64)
            });
        if selected {
            assert_eq!(
                e["mediaType"],
                format!("{}+encrypted", o["mediaType"].as_str().unwrap())
            );
            assert_eq!(e["size"], o["size"], "ciphertext is as long as plaintext");
            assert_ne!(e["digest"], o["digest"]);
        } else {
            assert_eq!(e, o, "unselected layer {i} copied as it is");
        }
    }

    let mut sk = vec![
        "copy".to_owned(),
        "--dest-oci-accept-uncompressed-layers".into(),
    ];
    for k in skopeo_keys {
        sk.push("--decryption-key".into());
        sk.push(key(k));
    }
    sk.push(oci(&enc, tag));
    sk.push(oci(&out, tag));
    skopeo(&sk).ok();
    assert_eq!(
        manifest_bytes(&out, tag),
        original,
        "skopeo's decryption differs from the original"
    );
}

#[test]
fn layercrypt_jwe_rsa_to_go() {
    layercrypt_to_skopeo("gzip", &["jwe:rsa.pub.pem"], &[], &["rsa.pem"]);
}

#[test]
fn layercrypt_jwe_ec_to_go() {
    layercrypt_to_skopeo("gzip", &["jwe:ec.pub.pem"], &[], &["ec.pem"]);
}

#[test]
fn layercrypt_pkcs7_to_go() {
    layercrypt_to_skopeo(
        "gzip",
        &["x509:user.pem"],
        &[],
        &["user.key.pem", "user.pem"],
    );
}

#[test]
fn layercrypt_two_recipients_to_go_with_either_key() {
    layercrypt_to_skopeo(
        "gzip",
        &["jwe:rsa.pub.pem", "jwe:ec.pub.pem"],
        &[],
        &["rsa.pem"],
    );
    layercrypt_to_skopeo(
        "gzip",
        &["jwe:rsa.pub.pem", "jwe:ec.pub.pem"],
        &[],
        &["ec.pem"],
    );
}

#[test]
fn layercrypt_mixed_schemes_to_go_with_either_key() {
    layercrypt_to_skopeo(
        "gzip",
        &["jwe:rsa.pub.pem", "x509:user.pem"],
        &[],
        &["rsa.pem"],
    );
    layercrypt_to_skopeo(
        "gzip",
        &["jwe:rsa.pub.pem", "x509:user.pem"],
        &[],
        &["user.key.pem", "user.pem"],
    );
}

#[test]
fn layercrypt_partial_multilayer_to_go() {
    layercrypt_to_skopeo("three", &["jwe:rsa.pub.pem"], &["0", "-1"], &["rsa.pem"]);
}

#[test]
fn layercrypt_tar_and_zstd_layers_to_go() {
    layercrypt_to_skopeo("tar", &["jwe:rsa.pub.pem"], &[], &["rsa.pem"]);
    layercrypt_to_skopeo("zstd", &["jwe:rsa.pub.pem"], &[], &["rsa.pem"]);
}

/// Fresh in this run (not only the committed vectors): skopeo encrypts now, layercrypt
/// decrypts, for the two JWE key types and PKCS#7.
#[test]
fn live_skopeo_encrypt_layercrypt_decrypt() {
    for (enc_key, dec_keys) in [
        ("jwe:rsa.pub.pem", vec!["rsa.pem"]),
        ("jwe:ec.pub.pem", vec!["ec.pem"]),
        ("pkcs7:user.pem", vec!["user.key.pem", "user.pem"]),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let enc = tmp.path().join("enc");
        let out = tmp.path().join("out");
        let (scheme, file) = enc_key.split_once(':').unwrap();
        skopeo(&[
            "copy".to_owned(),
            "--encryption-key".into(),
            format!("{scheme}:{}", key(file)),
            oci(&plain(), "gzip"),
            oci(&enc, "gzip"),
        ])
        .ok();
        let mut args = vec!["decrypt".to_owned()];
        for k in dec_keys {
            args.push("--key".into());
            args.push(key(k));
        }
        args.push(oci(&enc, "gzip"));
        args.push(oci(&out, "gzip"));
        layercrypt(&args).ok();
        assert_eq!(
            manifest_bytes(&out, "gzip"),
            manifest_bytes(&plain(), "gzip"),
            "{enc_key}"
        );
    }
}
