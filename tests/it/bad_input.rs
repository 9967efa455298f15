//! Bad input: each case fails with a clear error naming the layer, a specific exit code, and
//! leaves no destination behind.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use layercrypt_tests::{
    key, layercrypt, layers, manifest_bytes, rewrite_manifest, tamper_layer, vectors, Run,
};

/// A layercrypt-encrypted copy of the `gzip` vector (layer 0 ~200 B, layer 1 > 10 KiB).
fn encrypted(tmp: &Path) -> PathBuf {
    let enc = tmp.join("enc");
    layercrypt(&[
        "encrypt".to_owned(),
        "--recipient".into(),
        format!("jwe:{}", key("rsa.pub.pem")),
        format!("oci:{}:gzip", vectors().join("images/plain").display()),
        format!("oci:{}:gzip", enc.display()),
    ])
    .ok();
    enc
}

fn decrypt(enc: &Path, out: &Path, key_name: &str) -> Run {
    layercrypt(&[
        "decrypt".to_owned(),
        "--key".into(),
        key(key_name),
        format!("oci:{}:gzip", enc.display()),
        format!("oci:{}:gzip", out.display()),
    ])
}

/// Runs a failing decryption and checks exit code, message and that nothing was written.
fn expect_failure(enc: &Path, code: i32, must_mention: &[&str]) -> Run {
    let out = enc.parent().unwrap().join("out");
    let run = decrypt(enc, &out, "rsa.pem").fails_with(code);
    for m in must_mention {
        assert!(
            run.stderr.contains(m),
            "stderr should mention {m:?}:\n{}",
            run.stderr
        );
    }
    assert!(
        run.stderr.contains("what to do") || code == 1,
        "stderr should advise:\n{}",
        run.stderr
    );
    assert!(
        !out.exists(),
        "a failed decryption left {} behind",
        out.display()
    );
    run
}

fn layer_digest(enc: &Path, idx: usize) -> String {
    layers(&manifest_bytes(enc, "gzip"))[idx]["digest"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn flipped_byte_small_layer_fails_hmac() {
    let tmp = tempfile::tempdir().unwrap();
    let enc = encrypted(tmp.path());
    let d = tamper_layer(&enc, "gzip", 0, true, |b| {
        let mid = b.len() / 2;
        b[mid] ^= 1;
    });
    expect_failure(&enc, 4, &[&d, "integrity"]);
}

#[test]
fn flipped_byte_large_layer_fails_hmac() {
    let tmp = tempfile::tempdir().unwrap();
    let enc = encrypted(tmp.path());
    let size = layers(&manifest_bytes(&enc, "gzip"))[1]["size"]
        .as_u64()
        .unwrap();
    assert!(
        size > 10 * 1024,
        "the vector's second layer must be over 10 KiB"
    );
    let d = tamper_layer(&enc, "gzip", 1, true, |b| {
        let n = b.len();
        b[n - 3] ^= 0x40;
    });
    expect_failure(&enc, 4, &[&d, "integrity"]);
}

#[test]
fn flipped_byte_without_fixing_digest_fails_blob_check() {
    let tmp = tempfile::tempdir().unwrap();
    let enc = encrypted(tmp.path());
    let d = tamper_layer(&enc, "gzip", 1, false, |b| b[100] ^= 1);
    expect_failure(&enc, 4, &[&d]);
}

#[test]
fn truncated_layer_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let enc = encrypted(tmp.path());
    let d = tamper_layer(&enc, "gzip", 1, true, |b| b.truncate(b.len() / 2));
    expect_failure(&enc, 4, &[&d]);
    let tmp2 = tempfile::tempdir().unwrap();
    let enc2 = encrypted(tmp2.path());
    let d2 = tamper_layer(&enc2, "gzip", 1, false, |b| b.truncate(b.len() - 1));
    expect_failure(&enc2, 4, &[&d2]);
}

#[test]
fn wrong_key_names_the_recipients() {
    let tmp = tempfile::tempdir().unwrap();
    let enc = encrypted(tmp.path());
    let d = layer_digest(&enc, 0);
    let out = tmp.path().join("out");
    let run = decrypt(&enc, &out, "rsa2.pem").fails_with(3);
    assert!(run.stderr.contains(&d), "{}", run.stderr);
    assert!(
        run.stderr.contains("JWE RSA key"),
        "names who can decrypt: {}",
        run.stderr
    );
    assert!(!out.exists());
}

fn edit_annotation(enc: &Path, idx: usize, key_name: &str, value: Option<String>) {
    rewrite_manifest(enc, "gzip", |m| {
        let ann = m["layers"][idx]["annotations"].as_object_mut().unwrap();
        match value {
            Some(v) => {
                ann.insert(key_name.to_owned(), v.into());
            }
            None => {
                ann.remove(key_name);
            }
        }
    });
}

#[test]
fn missing_pubopts_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let enc = encrypted(tmp.path());
    edit_annotation(&enc, 0, "org.opencontainers.image.enc.pubopts", None);
    let d = layer_digest(&enc, 0);
    expect_failure(&enc, 1, &[&d, "pubopts"]);
}

#[test]
fn garbage_annotation_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let enc = encrypted(tmp.path());
    edit_annotation(
        &enc,
        1,
        "org.opencontainers.image.enc.keys.jwe",
        Some("%%% not base64 %%%".into()),
    );
    let d = layer_digest(&enc, 1);
    expect_failure(
        &enc,
        1,
        &[&d, "org.opencontainers.image.enc.keys.jwe", "base64"],
    );
}

#[test]
fn garbage_jwe_inside_valid_base64_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let enc = encrypted(tmp.path());
    let junk = base64::engine::general_purpose::STANDARD
        .encode(b"{\"protected\":\"!!\",\"ciphertext\":1}");
    edit_annotation(&enc, 0, "org.opencontainers.image.enc.keys.jwe", Some(junk));
    let d = layer_digest(&enc, 0);
    let run = expect_failure(&enc, 3, &[&d]);
    assert!(run.stderr.contains("JWE"), "{}", run.stderr);
}

#[test]
fn oversized_annotation_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let enc = encrypted(tmp.path());
    edit_annotation(
        &enc,
        0,
        "org.opencontainers.image.enc.keys.jwe",
        Some("QUFB".repeat(600_000)),
    );
    let d = layer_digest(&enc, 0);
    expect_failure(&enc, 1, &[&d, "limit"]);
}

#[test]
fn unknown_cipher_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let enc = encrypted(tmp.path());
    let pubopts = base64::engine::general_purpose::STANDARD
        .encode(br#"{"cipher":"AES_128_ROT13","hmac":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","cipheroptions":{}}"#);
    edit_annotation(
        &enc,
        0,
        "org.opencontainers.image.enc.pubopts",
        Some(pubopts),
    );
    let d = layer_digest(&enc, 0);
    expect_failure(&enc, 1, &[&d, "AES_128_ROT13"]);
}

#[test]
fn hmac_of_another_layer_fails() {
    // Swapping pubopts between layers (a splice) must not pass.
    let tmp = tempfile::tempdir().unwrap();
    let enc = encrypted(tmp.path());
    let m: serde_json::Value = serde_json::from_slice(&manifest_bytes(&enc, "gzip")).unwrap();
    let other = m["layers"][1]["annotations"]["org.opencontainers.image.enc.pubopts"]
        .as_str()
        .unwrap()
        .to_owned();
    edit_annotation(&enc, 0, "org.opencontainers.image.enc.pubopts", Some(other));
    let d = layer_digest(&enc, 0);
    expect_failure(&enc, 4, &[&d]);
}

#[test]
fn failed_decrypt_into_existing_layout_leaves_it_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    let enc = encrypted(tmp.path());
    tamper_layer(&enc, "gzip", 1, true, |b| b[0] ^= 1);
    // The destination already holds another image: it must be exactly as before.
    let out = tmp.path().join("existing");
    layercrypt_tests::copy_dir(&vectors().join("images/plain"), &out);
    let before = snapshot(&out);
    let run = layercrypt(&[
        "decrypt".to_owned(),
        "--key".into(),
        key("rsa.pem"),
        format!("oci:{}:gzip", enc.display()),
        format!("oci:{}:decrypted", out.display()),
    ]);
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert_eq!(
        snapshot(&out),
        before,
        "the existing layout was changed by a failed decryption"
    );
}

fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((
                    p.strip_prefix(dir).unwrap().display().to_string(),
                    std::fs::read(&p).unwrap(),
                ));
            }
        }
    }
    out.sort();
    out
}
