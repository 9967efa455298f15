//! End-to-end with real parts for group-encrypted images: Debian's containerd 1.6 + runc +
//! docker-registry, the real `layercrypt-broker` (not `--dev`) trusting the OIDC stand-in for
//! EGI Check-in (`tests/oidc/server.mjs`), and our decoder with a node config (allowed brokers,
//! token-file credential). Images are encrypted for `group:vo.example.org` with the layercrypt
//! library (the same code as `layercrypt encrypt --recipient group:NAME --broker URL`).
//!
//! Also the key provider: the exact ocicrypt request JSON (ocicrypt-format.md §4) fed to the
//! real `layercrypt-keyprovider` binary against the real broker.
//!
//! Needs root, `apt-get install -y containerd runc docker-registry busybox-static
//! protobuf-compiler nodejs npm` and `cd tests/oidc && npm ci` (scripts/test.sh does both).

#![allow(clippy::unwrap_used, clippy::print_stderr, clippy::print_stdout)]

mod harness;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use harness::broker::{broker_binary, Broker, Oidc};
use harness::containerd::Containerd;
use harness::cri::Cri;
use harness::image::{self, Comp, Layer};
use harness::registry::Registry;
use layercrypt_group::client::HttpBrokers;
use layercrypt_group::wrap::{group_param, GroupKeyWrapper};
use layercrypt_ocicrypt::layer::Wrappers;
use layercrypt_ocicrypt::{EncryptConfig, ProviderRecipient};

const DECODER: &str = env!("CARGO_BIN_EXE_layercrypt-decoder");
const KEYPROVIDER: &str = env!("CARGO_BIN_EXE_layercrypt-keyprovider");
const VO: &str = "vo.example.org";
const ENTITLEMENT: &str = "urn:mace:egi.eu:group:vo.example.org:role=member#aai.egi.eu";

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        == Some("0")
}

/// Pseudo-random bytes, seeded per image (distinct content per image: no snapshot reuse).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn seed(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

fn secret_layer(name: &str, comp: Comp, with_busybox: bool) -> Layer {
    let mut files = vec![
        (
            format!("etc/secret-{name}.txt"),
            format!("the secret of {name}\n").into_bytes(),
            0o644,
        ),
        (
            format!("data/{name}.bin"),
            noise(200 * 1024, seed(name)),
            0o644,
        ),
    ];
    let mut symlinks = vec![];
    if with_busybox {
        files.push((
            "bin/busybox".into(),
            std::fs::read("/bin/busybox").unwrap(),
            0o755,
        ));
        for l in ["sh", "cat", "ls"] {
            symlinks.push((format!("bin/{l}"), "busybox".into()));
        }
    }
    Layer {
        files,
        symlinks,
        comp,
    }
}

fn chain_id(diff_ids: &[String]) -> String {
    let mut chain = diff_ids[0].clone();
    for d in &diff_ids[1..] {
        chain = image::sha256(format!("{chain} {d}").as_bytes());
    }
    chain
}

/// The encrypting side: a group wrapper that fetches the group's recipient from the broker
/// (no token needed to encrypt).
fn group_wrappers(broker: &str) -> (Wrappers, EncryptConfig) {
    let api = HttpBrokers::new(Box::new(|| {
        Err(layercrypt_group::Error::Token(
            "encrypting needs no token".into(),
        ))
    }));
    let mut w = Wrappers::new();
    w.push(Box::new(
        GroupKeyWrapper::new(Arc::new(api))
            .with_broker(broker)
            .unwrap(),
    ));
    let ec = EncryptConfig {
        providers: vec![ProviderRecipient {
            name: "layercrypt".into(),
            param: Some(group_param(&VO.parse().unwrap())),
        }],
        ..Default::default()
    };
    (w, ec)
}

fn node_toml(brokers: &[&str], token_file: &Path) -> String {
    let list: Vec<String> = brokers.iter().map(|b| format!("{b:?}")).collect();
    format!(
        "brokers = [{}]\n[credential]\nkind = \"token-file\"\ntoken_file = \"{}\"\n[timeouts]\nconnect_secs = 2\nrequest_secs = 10\n",
        list.join(", "),
        token_file.display()
    )
}

struct Env {
    cri: Cri,
    containerd: Containerd,
    registry: Registry,
    wrappers: Wrappers,
    ec: EncryptConfig,
    tmp: PathBuf,
}

impl Env {
    /// Builds, encrypts (`encrypt_layers`, all if empty) for the group, pushes.
    fn image(
        &self,
        name: &str,
        layers: Vec<Layer>,
        encrypt_layers: Vec<i64>,
    ) -> (String, Vec<String>, Vec<String>) {
        let base = self.tmp.join("images").join(name);
        let (plain, enc) = (base.join("plain"), base.join("enc"));
        let diff_ids = image::build_layout(
            &plain,
            &layers,
            &["/bin/cat", &format!("/etc/secret-{name}.txt")],
        );
        image::encrypt_with(&plain, &enc, &self.wrappers, &self.ec, encrypt_layers);
        let reference = format!("{}/group/{name}:latest", self.registry.host());
        image::push(&enc, &reference);
        let encrypted = image::layers(&enc)
            .into_iter()
            .filter(|(mt, _)| mt.ends_with("+encrypted"))
            .map(|(_, d)| d)
            .collect();
        (reference, diff_ids, encrypted)
    }

    fn assert_unpacked(&mut self, name: &str, reference: &str, diff_ids: &[String]) {
        let t = Instant::now();
        let image_ref = self
            .cri
            .pull(reference)
            .unwrap_or_else(|e| panic!("{name}: pull failed: {e}\n{}", self.containerd.log_tail()));
        let status = self.cri.status(reference).unwrap().expect("ImageStatus");
        assert_eq!(status.id, image_ref, "{name}");
        let snaps = self
            .containerd
            .ctr(&["snapshots", "--snapshotter", "overlayfs", "ls"]);
        let snaps = String::from_utf8_lossy(&snaps.stdout);
        let chain = chain_id(diff_ids);
        assert!(
            snaps.contains(&chain),
            "{name}: no snapshot {chain} in\n{snaps}"
        );
        let secret = self
            .containerd
            .find_in_snapshots(&format!("etc/secret-{name}.txt"))
            .expect("the secret file in an overlayfs snapshot");
        assert_eq!(secret, format!("the secret of {name}\n").as_bytes());
        eprintln!("ok   {name}: pulled + unpacked in {:?}", t.elapsed());
    }

    fn assert_pull_fails(&mut self, name: &str, reference: &str, expect: &[&str]) {
        let err = self
            .cri
            .pull(reference)
            .expect_err(&format!("{name}: pull must fail"));
        assert!(
            self.cri.status(reference).unwrap().is_none(),
            "{name}: a failed pull left an image"
        );
        for e in expect {
            assert!(err.contains(e), "{name}: expected {e:?} in {err:?}");
        }
        eprintln!("ok   {name}: pull failed: {err}");
    }
}

#[test]
fn containerd_unpacks_group_images_through_the_broker() {
    let started = Instant::now();
    assert!(
        is_root(),
        "this test needs root (containerd, overlayfs mounts)"
    );
    harness::require_program("busybox", "busybox-static");
    let tmp = tempfile::Builder::new()
        .prefix("lc-group")
        .tempdir()
        .unwrap();
    let dir = tmp.path().to_owned();

    let oidc = Oidc::start(&dir);
    let mut broker = Broker::start(&dir, &broker_binary(Path::new(DECODER)), &oidc.issuer);
    broker.group(VO, ENTITLEMENT);
    let member = oidc.mint("node-a@example.org", &[ENTITLEMENT]);
    let outsider = oidc.mint("node-b@example.org", &["urn:mace:egi.eu:group:other.org"]);

    let token_file = dir.join("node-token");
    std::fs::write(&token_file, format!("{member}\n")).unwrap();
    let node_config = dir.join("node.toml");
    std::fs::write(&node_config, node_toml(&[&broker.url], &token_file)).unwrap();
    let keys = dir.join("node-keys");
    std::fs::create_dir_all(&keys).unwrap();
    std::fs::write(keys.join("README"), "no local keys on this node").unwrap();

    let registry = Registry::start(&dir);
    let containerd = Containerd::start_with(
        &dir,
        Path::new(DECODER),
        &keys,
        &registry.host(),
        Some(&node_config),
    );
    let mut cri = Cri::connect(&containerd.socket);
    harness::wait_for("the CRI plugin", Duration::from_secs(30), || {
        cri.status("127.0.0.1/none:x").is_ok()
    });
    eprintln!(
        "oidc + broker + containerd + registry up after {:?}",
        started.elapsed()
    );
    let (wrappers, ec) = group_wrappers(&broker.url);
    let mut env = Env {
        cri,
        containerd,
        registry,
        wrappers,
        ec,
        tmp: dir.clone(),
    };
    // Encrypted now, pulled after the broker is stopped.
    let (down_ref, _, down_enc) = env.image(
        "grp-down",
        vec![secret_layer("grp-down", Comp::Gzip, false)],
        vec![],
    );

    // 1. A member's token: unpacks, diff_ids match.
    let (gz_ref, ids, _) = env.image(
        "grp-gzip",
        vec![secret_layer("grp-gzip", Comp::Gzip, true)],
        vec![],
    );
    env.assert_unpacked("grp-gzip", &gz_ref, &ids);

    // 2. A plain layer under a group-encrypted zstd layer.
    let (r, ids, enc) = env.image(
        "grp-mixed",
        vec![
            Layer::file(
                "etc/plain-grp-mixed.txt",
                b"plain base layer of grp-mixed\n",
                Comp::Gzip,
            ),
            secret_layer("grp-mixed", Comp::Zstd, false),
        ],
        vec![1],
    );
    assert_eq!(enc.len(), 1);
    env.assert_unpacked("grp-mixed", &r, &ids);

    // 3. Run it: prints the file from the group-encrypted layer.
    run_container(&env, &gz_ref, "the secret of grp-gzip");

    // 4. A non-member's token: the broker says 403, the CRI error carries our line.
    std::fs::write(&token_file, format!("{outsider}\n")).unwrap();
    let (r, _, enc) = env.image(
        "grp-outsider",
        vec![secret_layer("grp-outsider", Comp::Gzip, false)],
        vec![],
    );
    env.assert_pull_fails(
        "grp-outsider",
        &r,
        &[&format!(
            "layercrypt-decoder: layer {}: this node is not a member of group {VO} at broker {}",
            enc[0], broker.url
        )],
    );

    // 5. A token the broker refuses (not from its issuer): 401.
    std::fs::write(&token_file, "not-a-valid-token\n").unwrap();
    let (r, _, enc) = env.image(
        "grp-refused",
        vec![secret_layer("grp-refused", Comp::Tar, false)],
        vec![],
    );
    env.assert_pull_fails(
        "grp-refused",
        &r,
        &[
            &format!(
                "layercrypt-decoder: layer {}: broker {} refused this node's credential",
                enc[0], broker.url
            ),
            "renew the token in",
        ],
    );

    // 6. The layer's broker is not in this node's list: refused without asking it.
    std::fs::write(&token_file, format!("{member}\n")).unwrap();
    std::fs::write(
        &node_config,
        node_toml(&["https://keys.example.org"], &token_file),
    )
    .unwrap();
    let (r, _, enc) = env.image(
        "grp-notallowed",
        vec![secret_layer("grp-notallowed", Comp::Gzip, false)],
        vec![],
    );
    env.assert_pull_fails(
        "grp-notallowed",
        &r,
        &[&format!(
            "layercrypt-decoder: layer {}: encrypted for layercrypt group {VO} at broker {}, which is not in this node's allowed brokers (https://keys.example.org)",
            enc[0], broker.url
        )],
    );

    // 7. The broker is down.
    std::fs::write(&node_config, node_toml(&[&broker.url], &token_file)).unwrap();
    broker.stop();
    env.assert_pull_fails(
        "grp-down",
        &down_ref,
        &[&format!(
            "layercrypt-decoder: layer {}: broker {} unreachable for group {VO}",
            down_enc[0], broker.url
        )],
    );

    env.cri.remove(&gz_ref).unwrap();
    drop(env);
    drop(oidc);
    eprintln!("group e2e total {:?}", started.elapsed());
}

fn run_container(env: &Env, reference: &str, expect: &str) {
    let run_dir = Path::new("/run/containerd");
    let created = !run_dir.exists();
    if created {
        std::fs::create_dir_all(run_dir).unwrap();
    }
    let out = Command::new("timeout")
        .arg("60")
        .arg(&env.containerd.ctr)
        .arg("-a")
        .arg(&env.containerd.socket)
        .args(["-n", "k8s.io", "run", "--rm", "--snapshotter", "overlayfs"])
        .arg(reference)
        .arg("lc-group-run")
        .output()
        .unwrap();
    if created {
        let _ = std::fs::remove_dir_all(run_dir);
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains(expect),
        "ctr run: {}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("ok   ctr run: {}", stdout.trim());
}

/// Private options of a made-up layer, as the key provider wraps them.
const OPTS: &[u8] = br#"{"symkey":"c3ltbWV0cmljLWtleS0zMi1ieXRlcy1sb25nLS0tLS0=","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","cipheroptions":{"nonce":"bm9uY2Utbm9uY2Utbm9uY2U="}}"#;

/// A private key of the user's that ocicrypt passes along with every unwrap.
const OTHER_PRIVATE_KEY: &str =
    "-----BEGIN PRIVATE KEY-----\nTHE-USERS-OTHER-KEY\n-----END PRIVATE KEY-----\n";

/// Go ocicrypt 1.1's keywrap request (ocicrypt-format.md §4) of [`OPTS`] for `group:VO`,
/// with an unrelated public key among the parameters.
fn keywrap_request() -> String {
    format!(
        r#"{{"op":"keywrap","keywrapparams":{{"ec":{{"Parameters":{{"layercrypt":["{}"],"pubkeys":["{}"]}},"DecryptConfig":{{"Parameters":{{}}}}}},"optsdata":"{}"}},"keyunwrapparams":{{"dc":null,"annotation":null}}}}"#,
        b64(format!("group:{VO}").as_bytes()),
        b64(b"-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----\n"),
        b64(OPTS)
    )
}

/// Go ocicrypt 1.1's keyunwrap request of `annotation`, with the user's other private key
/// ([`OTHER_PRIVATE_KEY`]) and its password among the parameters.
fn keyunwrap_request(annotation: &str) -> String {
    format!(
        r#"{{"op":"keyunwrap","keywrapparams":{{"ec":null,"optsdata":null}},"keyunwrapparams":{{"dc":{{"Parameters":{{"privkeys":["{}"],"privkeys-passwords":["{}"],"layercrypt":["{}"]}}}},"annotation":"{annotation}"}}}}"#,
        b64(OTHER_PRIVATE_KEY.as_bytes()),
        b64(b"hunter2"),
        b64(b"Enabled"),
    )
}

/// Runs the key provider with `request` on stdin: (exit code, stdout, stderr).
fn keyprovider(config: &Path, request: &str) -> (Option<i32>, String, String) {
    use std::io::Write as _;
    let mut child = Command::new(KEYPROVIDER)
        .arg("--config")
        .arg(config)
        .env("LAYERCRYPT_LOG", "debug")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The key-provider protocol with the exact request shapes Go ocicrypt 1.1 sends
/// (ocicrypt-format.md §4), against the real broker: keywrap for `group:NAME`, keyunwrap with
/// the user's other private keys among the parameters (ignored, never logged), and the
/// refusals. Does not need root.
#[test]
fn keyprovider_protocol_against_the_broker() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let oidc = Oidc::start(dir);
    let broker = Broker::start(dir, &broker_binary(Path::new(DECODER)), &oidc.issuer);
    broker.group(VO, ENTITLEMENT);
    let token_file = dir.join("token");
    std::fs::write(&token_file, oidc.mint("node-a@example.org", &[ENTITLEMENT])).unwrap();
    let config = dir.join("node.toml");
    std::fs::write(&config, node_toml(&[&broker.url], &token_file)).unwrap();

    let opts = OPTS;
    let wrap = keywrap_request();
    let (code, out, err) = keyprovider(&config, &wrap);
    assert_eq!(code, Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let annotation = v["keywrapresults"]["annotation"]
        .as_str()
        .unwrap()
        .to_owned();
    let payload = base64::engine::general_purpose::STANDARD
        .decode(&annotation)
        .unwrap();
    let p: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(p["group"], VO);
    assert_eq!(p["broker"], broker.url.as_str());

    // Unwrap, with a private key and its password among the parameters (as ocicrypt sends).
    let private = OTHER_PRIVATE_KEY;
    let unwrap = keyunwrap_request(&annotation);
    let (code, out, err) = keyprovider(&config, &unwrap);
    assert_eq!(code, Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["keyunwrapresults"]["optsdata"], b64(opts));
    for secret in ["THE-USERS-OTHER-KEY", "hunter2", &b64(private.as_bytes())] {
        assert!(!err.contains(secret), "logged a secret: {err}");
    }

    // A non-member: exit 1, one line, what to do.
    std::fs::write(&token_file, oidc.mint("node-b@example.org", &[])).unwrap();
    let (code, out, err) = keyprovider(&config, &unwrap);
    assert_eq!(code, Some(1));
    assert!(out.is_empty());
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with(
            "layercrypt-keyprovider: this node is not a member of group vo.example.org"
        ),
        "{err}"
    );
    // The broker is not in this node's list.
    std::fs::write(
        &config,
        node_toml(&["https://keys.example.org"], &token_file),
    )
    .unwrap();
    let (code, _, err) = keyprovider(&config, &unwrap);
    assert_eq!(code, Some(1));
    assert!(err.contains("not in this node's allowed brokers"), "{err}");
    // keywrap without a group parameter.
    let (code, _, err) = keyprovider(
        &config,
        &wrap.replace(&b64(format!("group:{VO}").as_bytes()), &b64(b"vo")),
    );
    assert_eq!(code, Some(1));
    assert!(err.contains("parameter must be group:NAME"), "{err}");
}

/// Debian 13's skopeo 1.18 (ocicrypt 1.1.x, key providers), fetched by `skopeo-trixie.sh`.
fn skopeo_1_18() -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/skopeo-trixie.sh");
    let out = Command::new("bash").arg(&script).output().unwrap();
    assert!(
        out.status.success(),
        "{} failed (it needs the Debian mirror of this machine's apt configuration): {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap()
            .trim(),
    )
}

fn skopeo(bin: &Path, provider_config: &Path, args: &[&str]) {
    let out = Command::new(bin)
        .arg("--insecure-policy")
        .args(args)
        .env("OCICRYPT_KEYPROVIDER_CONFIG", provider_config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Stock skopeo 1.18 with `OCICRYPT_KEYPROVIDER_CONFIG` → `layercrypt-keyprovider` → the real
/// broker: decrypts an image that layercrypt encrypted for a group, and encrypts one itself
/// (`--encryption-key provider:layercrypt:group:NAME`) that layercrypt's provider decrypts
/// again. Does not need root; needs the Debian mirror of this machine's apt configuration once (skopeo-trixie.sh).
#[test]
fn stock_skopeo_uses_the_key_provider() {
    let skopeo_bin = skopeo_1_18();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let oidc = Oidc::start(dir);
    let broker = Broker::start(dir, &broker_binary(Path::new(DECODER)), &oidc.issuer);
    broker.group(VO, ENTITLEMENT);
    let token_file = dir.join("token");
    std::fs::write(&token_file, oidc.mint("node-a@example.org", &[ENTITLEMENT])).unwrap();
    let config = dir.join("node.toml");
    std::fs::write(&config, node_toml(&[&broker.url], &token_file)).unwrap();
    let provider_config = dir.join("ocicrypt_keyprovider.conf");
    std::fs::write(
        &provider_config,
        serde_json::json!({"key-providers": {"layercrypt": {"cmd": {
            "path": KEYPROVIDER, "args": ["--config", config]}}}})
        .to_string(),
    )
    .unwrap();

    let plain = dir.join("plain");
    image::build_layout(
        &plain,
        &[secret_layer("skopeo", Comp::Gzip, false)],
        &["/bin/cat", "/etc/secret-skopeo.txt"],
    );
    let plain_layers = image::layers(&plain);
    let oci = |p: &Path| format!("oci:{}:latest", p.display());
    let provider_key =
        |layers: &[(String, String)]| layers.len() == 1 && layers[0].0.ends_with("+encrypted");

    // 1. layercrypt encrypts for the group; skopeo decrypts through the key provider.
    let (wrappers, ec) = group_wrappers(&broker.url);
    let enc = dir.join("enc-layercrypt");
    image::encrypt_with(&plain, &enc, &wrappers, &ec, vec![]);
    assert!(provider_key(&image::layers(&enc)));
    let dec = dir.join("dec-skopeo");
    skopeo(
        &skopeo_bin,
        &provider_config,
        &[
            "copy",
            "--decryption-key",
            "provider:layercrypt",
            &oci(&enc),
            &oci(&dec),
        ],
    );
    assert_eq!(
        image::layers(&dec),
        plain_layers,
        "skopeo decrypted to the plain layer"
    );

    // 2. skopeo encrypts for the group through the key provider; skopeo decrypts it again.
    let enc2 = dir.join("enc-skopeo");
    skopeo(
        &skopeo_bin,
        &provider_config,
        &[
            "copy",
            "--encryption-key",
            &format!("provider:layercrypt:group:{VO}"),
            &oci(&plain),
            &oci(&enc2),
        ],
    );
    let m = image::manifest(&enc2);
    let ann = m["layers"][0]["annotations"]
        ["org.opencontainers.image.enc.keys.provider.layercrypt"]
        .as_str()
        .expect("the layercrypt provider annotation");
    // ocicrypt base64-encodes the provider's bytes once more: our payload JSON inside.
    let payload = base64::engine::general_purpose::STANDARD
        .decode(ann)
        .unwrap();
    let p: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(
        (p["group"].as_str(), p["broker"].as_str()),
        (Some(VO), Some(broker.url.as_str()))
    );
    let dec2 = dir.join("dec2");
    skopeo(
        &skopeo_bin,
        &provider_config,
        &[
            "copy",
            "--decryption-key",
            "provider:layercrypt",
            &oci(&enc2),
            &oci(&dec2),
        ],
    );
    assert_eq!(image::layers(&dec2), plain_layers);
    eprintln!("ok   skopeo 1.18 decrypted and encrypted through layercrypt-keyprovider");
}

/// A refresh token from the stand-in's device flow, as an admin would obtain it once for a
/// node (`layercrypt login` on a workstation, then copy the refresh token): device
/// authorization, approval as `sub`, token poll.
fn device_flow_refresh_token(oidc: &Oidc, sub: &str) -> String {
    let http = reqwest::blocking::Client::new();
    let auth: serde_json::Value = http
        .post(format!(
            "{}/protocol/openid-connect/auth/device",
            oidc.issuer
        ))
        .form(&[
            ("client_id", "layercrypt-cli"),
            ("scope", "openid eduperson_entitlement offline_access"),
        ])
        .send()
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .unwrap();
    http.post(format!("{}/test/device/approve", oidc.base))
        .json(&serde_json::json!({"user_code": auth["user_code"], "sub": sub}))
        .send()
        .unwrap()
        .error_for_status()
        .unwrap();
    let tokens: serde_json::Value = http
        .post(format!("{}/protocol/openid-connect/token", oidc.issuer))
        .form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("device_code", auth["device_code"].as_str().unwrap()),
            ("client_id", "layercrypt-cli"),
        ])
        .send()
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .unwrap();
    tokens["refresh_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no refresh token: {tokens}"))
        .to_owned()
}

/// The `refresh-token` node credential against the real issuer and broker: the key provider
/// exchanges the refresh token for an access token at every start, keeps a rotated refresh
/// token (a second run works, though the issuer may have retired the first token), and a
/// refused refresh token is a one-line error naming the file. Does not need root.
#[test]
fn refresh_token_credential_against_the_issuer_and_broker() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let oidc = Oidc::start(dir);
    let broker = Broker::start(dir, &broker_binary(Path::new(DECODER)), &oidc.issuer);
    broker.group(VO, ENTITLEMENT);
    // Membership comes from UserInfo for the subject of the refreshed tokens.
    oidc.mint("robot-node@example.org", &[ENTITLEMENT]);
    let refresh_file = dir.join("refresh-token");
    std::fs::write(
        &refresh_file,
        device_flow_refresh_token(&oidc, "robot-node@example.org"),
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&refresh_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let config = dir.join("node.toml");
    std::fs::write(
        &config,
        format!(
            "brokers = [\"{}\"]\n[credential]\nkind = \"refresh-token\"\nrefresh_token_file = \"{}\"\nclient_id = \"layercrypt-cli\"\nissuer = \"{}\"\n",
            broker.url,
            refresh_file.display(),
            oidc.issuer
        ),
    )
    .unwrap();

    let opts = OPTS;
    let (code, out, err) = keyprovider(&config, &keywrap_request());
    assert_eq!(code, Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let annotation = v["keywrapresults"]["annotation"].as_str().unwrap();
    let unwrap = keyunwrap_request(annotation);
    let first = std::fs::read_to_string(&refresh_file).unwrap();
    for run in 0..2 {
        let (code, out, err) = keyprovider(&config, &unwrap);
        assert_eq!(code, Some(0), "run {run}: {err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["keyunwrapresults"]["optsdata"], b64(opts), "run {run}");
        let now = std::fs::read_to_string(&refresh_file).unwrap();
        assert!(!err.contains(now.trim()), "logged the refresh token: {err}");
        assert!(
            !err.contains(first.trim()),
            "logged the refresh token: {err}"
        );
    }
    let rotated = std::fs::read_to_string(&refresh_file).unwrap() != first;
    eprintln!("the issuer rotated the refresh token: {rotated}");
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&refresh_file)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o077,
            0,
            "a rewritten refresh token file must stay private"
        );
    }

    // A refresh token the issuer does not know: exit 1, one line naming the file.
    std::fs::write(&refresh_file, "not-a-refresh-token\n").unwrap();
    let (code, out, err) = keyprovider(&config, &unwrap);
    assert_eq!(code, Some(1), "{err}");
    assert!(out.is_empty());
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("layercrypt-keyprovider: ")
            && last.contains(&refresh_file.display().to_string()),
        "{err}"
    );
}
