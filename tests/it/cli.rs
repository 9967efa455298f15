//! The CLI as a user meets it: keygen, inspect, rewrap after an RCAuth re-issue, selections,
//! grid default keys, exit codes and messages.

use std::path::Path;

use layercrypt_tests::{key, layercrypt, layercrypt_env, layers, manifest_bytes, vectors};

fn plain(tag: &str) -> String {
    format!("oci:{}:{tag}", vectors().join("images/plain").display())
}

fn oci(dir: &Path, tag: &str) -> String {
    format!("oci:{}:{tag}", dir.display())
}

/// An EC key pair made by `layercrypt keygen` in `dir`: the `jwe:` recipient spec of its public
/// key and the path of its private key.
fn keypair(dir: &Path, name: &str) -> (String, String) {
    let k = dir.join(name);
    layercrypt(&["keygen", "--type", "ec", "--out", k.to_str().unwrap()]).ok();
    (
        format!("jwe:{}", k.with_extension("pub.pem").display()),
        k.with_extension("pem").display().to_string(),
    )
}

/// Decrypts `src` with `key_flag KEY` into `out` and checks that it is the plain vector `tag`.
fn assert_decrypts_to_plain(key_flag: &str, key: &str, src: &str, out: &Path, tag: &str) {
    layercrypt(&["decrypt", key_flag, key, src, &oci(out, tag)]).ok();
    assert_eq!(
        manifest_bytes(out, tag),
        manifest_bytes(&vectors().join("images/plain"), tag)
    );
}

#[test]
fn help_documents_exit_codes() {
    let run = layercrypt(&["--help"]).ok();
    assert!(
        run.stdout.contains("Exit codes") && run.stdout.contains("integrity failure"),
        "{}",
        run.stdout
    );
}

#[test]
fn cleartext_broker_off_this_machine_is_refused_before_any_connection() {
    // Nothing is contacted (and `.invalid` never resolves): the refusal comes before the token
    // is even read. A token would otherwise cross the network in clear (issue 8.13).
    for args in [
        &["--broker", "http://broker.invalid:8443", "group", "list"][..],
        &["group", "list", "--broker", "http://Broker.Invalid"][..],
    ] {
        let run = layercrypt(args).fails_with(2);
        assert!(
            run.stderr.contains("refusing plain http:// to key broker")
                && run.stderr.contains("--insecure"),
            "{}",
            run.stderr
        );
    }
    // On this machine plain HTTP is fine: the command gets as far as needing a token.
    let run = layercrypt(&["--broker", "http://127.0.0.1:9", "group", "list"]);
    assert!(
        !run.stderr.contains("refusing plain http://"),
        "{}",
        run.stderr
    );
}

#[test]
fn encrypting_an_encrypted_image_for_someone_else_fails_and_points_to_rewrap() {
    // "encrypted 0 layer(s)" with exit 0 made scripts believe bob got access (issue 10.4).
    let tmp = tempfile::tempdir().unwrap();
    let (alice, bob) = (tmp.path().join("alice"), tmp.path().join("bob"));
    for k in [&alice, &bob] {
        layercrypt(&["keygen", "--type", "ec", "--out", k.to_str().unwrap()]).ok();
    }
    let enc = tmp.path().join("enc");
    let jwe = |k: &Path| format!("jwe:{}", k.with_extension("pub.pem").display());
    layercrypt(&[
        "encrypt",
        "-r",
        &jwe(&alice),
        &plain("gzip"),
        &oci(&enc, "x"),
    ])
    .ok();
    let again = tmp.path().join("again");
    let run = layercrypt(&[
        "encrypt",
        "-r",
        &jwe(&bob),
        &oci(&enc, "x"),
        &oci(&again, "x"),
    ]);
    assert_ne!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("already encrypted") && run.stderr.contains("rewrap --add-recipient"),
        "{}",
        run.stderr
    );
    assert!(!again.exists(), "nothing written");
}

#[test]
fn skopeo_option_names_work_as_they_are() {
    // A skopeo user's `--encryption-key jwe:…` and `--decryption-key FILE` (issue 10.7).
    let tmp = tempfile::tempdir().unwrap();
    let (public, private) = keypair(tmp.path(), "k");
    let (enc, out) = (tmp.path().join("enc"), tmp.path().join("out"));
    layercrypt(&[
        "encrypt",
        "--encryption-key",
        &public,
        &plain("gzip"),
        &oci(&enc, "gzip"),
    ])
    .ok();
    assert_decrypts_to_plain(
        "--decryption-key",
        &private,
        &oci(&enc, "gzip"),
        &out,
        "gzip",
    );
}

#[test]
fn keygen_prints_the_thumbprint_inspect_shows() {
    let tmp = tempfile::tempdir().unwrap();
    let k = tmp.path().join("k");
    let run = layercrypt(&["keygen", "--type", "ec", "--out", k.to_str().unwrap()]).ok();
    let shown = format!("{}{}", run.stdout, run.stderr);
    let thumbprint = shown
        .lines()
        .find_map(|l| l.strip_prefix("thumbprint:"))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no thumbprint line in {shown}"))
        .to_owned();
    let enc = tmp.path().join("enc");
    let public = format!("jwe:{}", k.with_extension("pub.pem").display());
    layercrypt(&["encrypt", "-r", &public, &plain("gzip"), &oci(&enc, "x")]).ok();
    let inspect = layercrypt(&["inspect", &oci(&enc, "x")]).ok();
    assert!(
        inspect.stdout.contains(&thumbprint),
        "{thumbprint} in {}",
        inspect.stdout
    );
}

#[test]
fn log_lines_carry_no_colour_codes_off_a_terminal() {
    // stderr is a pipe here, as in a CI log or `2>file`.
    let tmp = tempfile::tempdir().unwrap();
    let run = layercrypt(&["-vv", "decrypt", &plain("gzip"), &oci(tmp.path(), "x")]).ok();
    assert!(
        run.stderr.contains("INFO"),
        "-vv logs something: {}",
        run.stderr
    );
    assert!(!run.stderr.contains('\x1b'), "{:?}", run.stderr);
}

#[test]
fn output_to_a_closed_pipe_ends_quietly() {
    // `layercrypt inspect IMAGE | head` used to end with "error: Broken pipe" and exit 1.
    // The reader (`true`) is gone before layercrypt writes.
    let tmp = tempfile::tempdir().unwrap();
    let script = r#"{ sleep 0.5; "$0" inspect "$1" 2>"$2/err"; echo $? >"$2/code"; } | true"#;
    for json in [false, true] {
        let mut cmd = std::process::Command::new("bash");
        cmd.arg("-c")
            .arg(if json {
                script.replace("inspect", "inspect --json")
            } else {
                script.to_owned()
            })
            .arg(layercrypt_tests::layercrypt_bin())
            .arg(plain("gzip"))
            .arg(tmp.path())
            .env("HOME", tmp.path());
        assert!(cmd.status().unwrap().success());
        let err = std::fs::read_to_string(tmp.path().join("err")).unwrap();
        let code = std::fs::read_to_string(tmp.path().join("code")).unwrap();
        assert_eq!(code.trim(), "0", "json={json}: {err}");
        assert!(!err.contains("Broken pipe"), "json={json}: {err}");
    }
}

#[test]
fn keygen_encrypt_decrypt_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    for kind in ["ec", "rsa2048", "p384"] {
        let prefix = tmp.path().join(format!("k-{kind}"));
        layercrypt(&["keygen", "--type", kind, "--out", prefix.to_str().unwrap()]).ok();
        let private = prefix.with_extension("pem");
        let public = prefix.with_extension("pub.pem");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&private).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let enc = tmp.path().join(format!("enc-{kind}"));
        let out = tmp.path().join(format!("out-{kind}"));
        layercrypt(&[
            "encrypt",
            "-r",
            &format!("jwe:{}", public.display()),
            &plain("gzip"),
            &oci(&enc, "x"),
        ])
        .ok();
        layercrypt(&[
            "decrypt",
            "-k",
            private.to_str().unwrap(),
            &oci(&enc, "x"),
            &oci(&out, "x"),
        ])
        .ok();
        assert_eq!(
            manifest_bytes(&out, "x"),
            manifest_bytes(&vectors().join("images/plain"), "gzip")
        );
        // Refuses to overwrite.
        layercrypt(&["keygen", "--type", kind, "--out", prefix.to_str().unwrap()]).fails_with(1);
    }
}

#[test]
fn inspect_names_recipients() {
    let tmp = tempfile::tempdir().unwrap();
    let enc = tmp.path().join("enc");
    layercrypt(&[
        "encrypt",
        "-r",
        &format!("jwe:{}", key("ec.pub.pem")),
        "-r",
        &format!("x509:{}", key("user.pem")),
        "--layer",
        "-1",
        &plain("three"),
        &oci(&enc, "t"),
    ])
    .ok();
    let text = layercrypt(&["inspect", "--cert", &key("user.pem"), &oci(&enc, "t")])
        .ok()
        .stdout;
    assert!(text.contains("layer 0") && text.contains("plain"), "{text}");
    assert!(text.contains("JWE EC P-256 key"), "{text}");
    assert!(
        text.contains("Jane Doe"),
        "certificate subject shown: {text}"
    );
    assert!(
        text.contains("Research and Collaboration Authentication Pilot G1 CA"),
        "{text}"
    );
    let json: serde_json::Value = serde_json::from_str(
        &layercrypt(&["inspect", "--json", &oci(&enc, "t")])
            .ok()
            .stdout,
    )
    .unwrap();
    let ls = json["manifests"][0]["layers"].as_array().unwrap();
    assert_eq!(ls.len(), 3);
    assert_eq!(ls[0]["encrypted"], false);
    assert_eq!(ls[2]["encrypted"], true);
    let schemes: Vec<&str> = ls[2]["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["scheme"].as_str().unwrap())
        .collect();
    assert!(
        schemes.contains(&"jwe") && schemes.contains(&"pkcs7"),
        "{schemes:?}"
    );
    // Go-made images are inspected too.
    let go = layercrypt(&[
        "inspect",
        &format!(
            "oci:{}:mixed",
            vectors().join("images/skopeo-enc").display()
        ),
    ])
    .ok()
    .stdout;
    assert!(
        go.contains("JWE RSA key") && go.contains("X.509 certificate"),
        "{go}"
    );
}

/// The RCAuth story: the user certificate is re-issued with a new key; the image is re-wrapped
/// for the new certificate with the old key, the old certificate removed, data untouched.
#[test]
fn rewrap_after_certificate_reissue() {
    let tmp = tempfile::tempdir().unwrap();
    let enc = tmp.path().join("enc");
    let re = tmp.path().join("re");
    layercrypt(&[
        "encrypt",
        "-r",
        &format!("x509:{}", key("user.pem")),
        &plain("gzip"),
        &oci(&enc, "t"),
    ])
    .ok();
    layercrypt(&[
        "rewrap",
        "--key",
        &key("user.key.pem"),
        "--key",
        &key("user.pem"),
        "--add-recipient",
        &format!("x509:{}", key("user2.pem")),
        "--remove-recipient",
        &format!("x509:{}", key("user.pem")),
        &oci(&enc, "t"),
        &oci(&re, "t"),
    ])
    .ok();
    let (a, b) = (
        layers(&manifest_bytes(&enc, "t")),
        layers(&manifest_bytes(&re, "t")),
    );
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(
            x["digest"], y["digest"],
            "layer data must not be re-encrypted"
        );
        assert_eq!(
            x["annotations"]["org.opencontainers.image.enc.pubopts"],
            y["annotations"]["org.opencontainers.image.enc.pubopts"]
        );
    }
    let out = tmp.path().join("out");
    layercrypt(&[
        "decrypt",
        "-k",
        &key("user2.key.pem"),
        "-k",
        &key("user2.pem"),
        &oci(&re, "t"),
        &oci(&out, "t"),
    ])
    .ok();
    assert_eq!(
        manifest_bytes(&out, "t"),
        manifest_bytes(&vectors().join("images/plain"), "gzip")
    );
    let out_old = tmp.path().join("out-old");
    layercrypt(&[
        "decrypt",
        "-k",
        &key("user.key.pem"),
        "-k",
        &key("user.pem"),
        &oci(&re, "t"),
        &oci(&out_old, "t"),
    ])
    .fails_with(3);
    assert!(!out_old.exists());
}

#[test]
fn rewrap_go_made_image_with_remove_all() {
    let tmp = tempfile::tempdir().unwrap();
    let re = tmp.path().join("re");
    layercrypt(&[
        "rewrap",
        "-k",
        &key("rsa.pem"),
        "--add-recipient",
        &format!("jwe:{}", key("ec.pub.pem")),
        "--remove-all",
        &format!(
            "oci:{}:jwe-rsa",
            vectors().join("images/skopeo-enc").display()
        ),
        &oci(&re, "t"),
    ])
    .ok();
    let out = tmp.path().join("out");
    layercrypt(&[
        "decrypt",
        "-k",
        &key("ec.pem"),
        &oci(&re, "t"),
        &oci(&out, "t"),
    ])
    .ok();
    layercrypt(&[
        "decrypt",
        "-k",
        &key("rsa.pem"),
        &oci(&re, "t"),
        &oci(&tmp.path().join("no"), "t"),
    ])
    .fails_with(3);
}

#[test]
fn grid_default_keys_are_used() {
    let home = tempfile::tempdir().unwrap();
    let globus = home.path().join(".globus");
    std::fs::create_dir(&globus).unwrap();
    std::fs::copy(key("user.pem"), globus.join("usercert.pem")).unwrap();
    std::fs::copy(key("user.key.pem"), globus.join("userkey.pem")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let enc = tmp.path().join("enc");
    let out = tmp.path().join("out");
    layercrypt(&[
        "encrypt",
        "-r",
        &format!("x509:{}", key("user.pem")),
        &plain("gzip"),
        &oci(&enc, "t"),
    ])
    .ok();
    layercrypt_env(
        &["decrypt", &oci(&enc, "t"), &oci(&out, "t")],
        &[("HOME", home.path().as_os_str())],
    )
    .ok();
    assert!(out.exists());
}

#[test]
fn tilde_inside_specs_is_the_home_directory() {
    // The README's own line: no shell expands `~` after `x509:` or `oci:` (issue 10.2).
    let home = tempfile::tempdir().unwrap();
    let globus = home.path().join(".globus");
    std::fs::create_dir(&globus).unwrap();
    std::fs::copy(key("user.pem"), globus.join("usercert.pem")).unwrap();
    std::fs::copy(key("user.key.pem"), globus.join("userkey.pem")).unwrap();
    let env = [("HOME", home.path().as_os_str())];
    layercrypt_env(
        &[
            "encrypt",
            "--recipient",
            "x509:~/.globus/usercert.pem",
            &plain("gzip"),
            "oci:~/enc:1.0",
        ],
        &env,
    )
    .ok();
    assert!(home.path().join("enc/index.json").exists());
    layercrypt_env(&["inspect", "oci:~/enc:1.0"], &env).ok();
    layercrypt_env(
        &[
            "decrypt",
            "--key=~/.globus/userkey.pem",
            "--key=~/.globus/usercert.pem",
            "oci:~/enc:1.0",
            "oci:~/plain:1.0",
        ],
        &env,
    )
    .ok();
    assert_eq!(
        manifest_bytes(&home.path().join("plain"), "1.0"),
        manifest_bytes(&vectors().join("images/plain"), "gzip")
    );
}

/// Every row of the exit-code table in `--help` (issue 10.4), each with the failure a user
/// meets: 0 success, 1 other, 2 usage, 3 no key, 4 integrity, 5 not found.
#[test]
fn exit_codes_follow_the_documented_table() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let (public, alice_key) = keypair(t, "alice");
    let (_, bob_key) = keypair(t, "bob");
    let enc = t.join("enc");
    // 0
    layercrypt(&["encrypt", "-r", &public, &plain("gzip"), &oci(&enc, "x")]).ok();
    // 1: encrypting what is already encrypted
    layercrypt(&[
        "encrypt",
        "-r",
        &public,
        &oci(&enc, "x"),
        &oci(&t.join("o1"), "x"),
    ])
    .fails_with(1);
    // 2: a recipient scheme that does not exist; an option that does not exist
    layercrypt(&[
        "encrypt",
        "-r",
        "pgp:x",
        &plain("gzip"),
        &oci(&t.join("o2"), "x"),
    ])
    .fails_with(2);
    layercrypt(&["decrypt", "--no-such-option"]).fails_with(2);
    // 3: the wrong key
    layercrypt(&[
        "decrypt",
        "--key",
        &bob_key,
        &oci(&enc, "x"),
        &oci(&t.join("o3"), "x"),
    ])
    .fails_with(3);
    // 4: a layer blob changed after encryption
    let manifest = manifest_bytes(&enc, "x");
    let digest = layers(&manifest)[0]["digest"].as_str().unwrap().to_owned();
    let blob = enc
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"));
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[10] ^= 1;
    std::fs::write(&blob, bytes).unwrap();
    layercrypt(&[
        "decrypt",
        "--key",
        &alice_key,
        &oci(&enc, "x"),
        &oci(&t.join("o4"), "x"),
    ])
    .fails_with(4);
    // 5: no such layout, archive or key file
    let missing = t.join("missing");
    layercrypt(&[
        "decrypt",
        "--key",
        &alice_key,
        &oci(&missing, "x"),
        &oci(&t.join("o5"), "x"),
    ])
    .fails_with(5);
    layercrypt(&[
        "decrypt",
        "--key",
        &alice_key,
        &format!("oci-archive:{}", missing.with_extension("tar").display()),
        &oci(&t.join("o6"), "x"),
    ])
    .fails_with(5);
    layercrypt(&[
        "decrypt",
        "--key",
        missing.to_str().unwrap(),
        &plain("gzip"),
        &oci(&t.join("o7"), "x"),
    ])
    .fails_with(5);
    for o in ["o1", "o2", "o3", "o4", "o5", "o6", "o7"] {
        assert!(!t.join(o).exists(), "{o}: nothing written");
    }
}

/// `encrypt oci:X:t oci:X:t` used to leave the plaintext layers in `X/blobs` (issue 10.1).
#[test]
fn in_place_encrypt_leaves_no_plaintext_blob() {
    let tmp = tempfile::tempdir().unwrap();
    let x = tmp.path().join("x");
    let status = std::process::Command::new("cp")
        .arg("-r")
        .arg(vectors().join("images/plain"))
        .arg(&x)
        .status()
        .unwrap();
    assert!(status.success());
    let (public, private) = keypair(tmp.path(), "k");
    let plain_layers: Vec<String> = layers(&manifest_bytes(&x, "tar"))
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_owned())
        .collect();
    // Blobs another tag still uses must stay.
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(x.join("index.json")).unwrap()).unwrap();
    let mut kept = std::collections::BTreeSet::new();
    for m in index["manifests"].as_array().unwrap() {
        if m["annotations"]["org.opencontainers.image.ref.name"] != "tar" {
            let tag = m["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .unwrap();
            for l in layers(&manifest_bytes(&x, tag)) {
                kept.insert(l["digest"].as_str().unwrap().to_owned());
            }
        }
    }
    layercrypt(&["encrypt", "-r", &public, &oci(&x, "tar"), &oci(&x, "tar")]).ok();
    let blob = |d: &str| x.join("blobs/sha256").join(d.trim_start_matches("sha256:"));
    let mut removed = 0;
    for d in &plain_layers {
        if kept.contains(d) {
            assert!(blob(d).exists(), "{d} is still used by another tag");
        } else {
            assert!(!blob(d).exists(), "plaintext layer {d} left behind");
            removed += 1;
        }
    }
    assert!(removed > 0, "the test removes something");
    assert_decrypts_to_plain(
        "-k",
        &private,
        &oci(&x, "tar"),
        &tmp.path().join("out"),
        "tar",
    );
}

#[test]
fn usage_errors_are_clear() {
    let tmp = tempfile::tempdir().unwrap();
    let dst = oci(&tmp.path().join("d"), "t");
    let r = layercrypt(&["encrypt", "-r", "pgp:someone", &plain("gzip"), &dst]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("pgp:someone") && r.stderr.contains("jwe:"),
        "{}",
        r.stderr
    );
    let r = layercrypt(&[
        "encrypt",
        "-r",
        &format!("jwe:{}", key("rsa.pub.pem")),
        "--layer",
        "7",
        &plain("gzip"),
        &dst,
    ]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("layer 7 does not exist"), "{}", r.stderr);
    let r = layercrypt(&[
        "encrypt",
        "-r",
        &format!("jwe:{}", key("rsa.pub.pem")),
        "nosuchtransport:x",
        &dst,
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    let r = layercrypt(&[
        "encrypt",
        "-r",
        "jwe:/nonexistent/key.pem",
        &plain("gzip"),
        &dst,
    ]);
    assert!(r.stderr.contains("/nonexistent/key.pem"), "{}", r.stderr);
    let r = layercrypt(&["decrypt", "-k", &key("rsa.pem"), &plain("nosuchtag"), &dst]);
    assert_eq!(r.code, 5, "{}", r.stderr);
    assert!(!tmp.path().join("d").exists());
}

#[test]
fn encrypted_key_needs_passphrase_file() {
    let tmp = tempfile::tempdir().unwrap();
    let enc_key = tmp.path().join("k.enc.pem");
    let st = std::process::Command::new("openssl")
        .args([
            "pkcs8",
            "-topk8",
            "-v2",
            "aes-256-cbc",
            "-passout",
            "pass:s3cret",
            "-in",
            &key("rsa.pem"),
            "-out",
        ])
        .arg(&enc_key)
        .status()
        .unwrap();
    assert!(st.success());
    let enc = tmp.path().join("enc");
    layercrypt(&[
        "encrypt",
        "-r",
        &format!("jwe:{}", key("rsa.pub.pem")),
        &plain("gzip"),
        &oci(&enc, "t"),
    ])
    .ok();
    let r = layercrypt(&[
        "decrypt",
        "-k",
        enc_key.to_str().unwrap(),
        &oci(&enc, "t"),
        &oci(&tmp.path().join("o1"), "t"),
    ]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("passphrase"), "{}", r.stderr);
    assert!(!r.stderr.contains("s3cret"));
    let pass = tmp.path().join("pass");
    std::fs::write(&pass, "wrong\n").unwrap();
    let r = layercrypt(&[
        "decrypt",
        "-k",
        enc_key.to_str().unwrap(),
        "--passphrase-file",
        pass.to_str().unwrap(),
        &oci(&enc, "t"),
        &oci(&tmp.path().join("o2"), "t"),
    ]);
    assert!(r.stderr.contains("wrong passphrase"), "{}", r.stderr);
    std::fs::write(&pass, "s3cret\n").unwrap();
    layercrypt(&[
        "decrypt",
        "-k",
        enc_key.to_str().unwrap(),
        "--passphrase-file",
        pass.to_str().unwrap(),
        &oci(&enc, "t"),
        &oci(&tmp.path().join("o3"), "t"),
    ])
    .ok();
}
