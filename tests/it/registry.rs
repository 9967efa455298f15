//! A real registry (Debian's docker-registry) on 127.0.0.1: push encrypted, pull, decrypt,
//! compare; and a registry that serves a blob whose bytes do not match its digest.

use layercrypt_tests::{key, layercrypt, layers, manifest_bytes, skopeo, vectors, Registry};

fn plain(tag: &str) -> String {
    format!("oci:{}:{tag}", vectors().join("images/plain").display())
}

#[test]
fn push_encrypted_pull_decrypt_compare() {
    let reg = Registry::start();
    let remote = format!("docker://{}/team/app:enc", reg.addr);
    layercrypt(&[
        "encrypt",
        "--recipient",
        &format!("jwe:{}", key("rsa.pub.pem")),
        &plain("gzip"),
        &remote,
    ])
    .ok();

    // The registry holds ciphertext only: skopeo sees +encrypted layers.
    let inspect = skopeo(&["inspect", "--raw", "--tls-verify=false", &remote]).ok();
    assert!(inspect.stdout.contains("+encrypted"), "{}", inspect.stdout);

    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    layercrypt(&[
        "decrypt",
        "--key",
        &key("rsa.pem"),
        &remote,
        &format!("oci:{}:gzip", out.display()),
    ])
    .ok();
    assert_eq!(
        manifest_bytes(&out, "gzip"),
        manifest_bytes(&vectors().join("images/plain"), "gzip")
    );

    // Go can pull and decrypt what we pushed, too.
    let out2 = tmp.path().join("out2");
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        "--decryption-key",
        &key("rsa.pem"),
        &remote,
        &format!("oci:{}:gzip", out2.display()),
    ])
    .ok();
    assert_eq!(
        manifest_bytes(&out2, "gzip"),
        manifest_bytes(&vectors().join("images/plain"), "gzip")
    );

    // And inspect reads it from the registry.
    let i = layercrypt(&["inspect", &remote]).ok();
    assert!(
        i.stdout.contains("encrypted") && i.stdout.contains("JWE RSA key"),
        "{}",
        i.stdout
    );
}

#[test]
fn registry_to_registry_decrypt() {
    let reg = Registry::start();
    let enc = format!("docker://{}/team/app:enc", reg.addr);
    let dec = format!("docker://{}/team/app:dec", reg.addr);
    layercrypt(&[
        "encrypt",
        "--recipient",
        &format!("x509:{}", key("user.pem")),
        &plain("three"),
        &enc,
    ])
    .ok();
    layercrypt(&[
        "decrypt",
        "--key",
        &key("user.key.pem"),
        "--key",
        &key("user.pem"),
        &enc,
        &dec,
    ])
    .ok();
    let raw = skopeo(&["inspect", "--raw", "--tls-verify=false", &dec]).ok();
    assert_eq!(
        raw.stdout.trim_end().as_bytes(),
        &manifest_bytes(&vectors().join("images/plain"), "three")[..]
    );
}

#[test]
fn blob_with_wrong_digest_is_refused() {
    let reg = Registry::start();
    let remote = format!("docker://{}/team/app:enc", reg.addr);
    let tmp = tempfile::tempdir().unwrap();
    let enc = tmp.path().join("enc");
    layercrypt(&[
        "encrypt",
        "--recipient",
        &format!("jwe:{}", key("rsa.pub.pem")),
        &plain("gzip"),
        &format!("oci:{}:gzip", enc.display()),
    ])
    .ok();
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        "--preserve-digests",
        &format!("oci:{}:gzip", enc.display()),
        &remote,
    ])
    .ok();
    // The registry's storage is changed behind its back: it now serves other bytes under the digest.
    let digest = layers(&manifest_bytes(&enc, "gzip"))[1]["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let file = reg.blob_file(&digest);
    let mut data = std::fs::read(&file).unwrap();
    data[10] ^= 0xff;
    std::fs::write(&file, data).unwrap();

    let out = tmp.path().join("out");
    let run = layercrypt(&[
        "decrypt",
        "--key",
        &key("rsa.pem"),
        &remote,
        &format!("oci:{}:gzip", out.display()),
    ])
    .fails_with(4);
    assert!(run.stderr.contains(&digest), "{}", run.stderr);
    assert!(!out.exists(), "nothing may be written");
}
