//! The key broker end to end, through the real binaries and real servers on 127.0.0.1:
//! `layercrypt-broker serve`, the OIDC stand-in for EGI Check-in (tests/oidc, Node.js),
//! OpenBao (`bao`), and the `layercrypt` CLI as admin and as user. The group chain runs
//! against both stores (embedded and vault); the rest picks the store the case is about.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use layercrypt_tests::harness::pki::{self, Kind};
use layercrypt_tests::harness::{
    group_payload, tokens, write_secret, Bao, Broker, BrokerOptions, Oidc,
};
use layercrypt_tests::{layercrypt_bin, layercrypt_env, manifest_bytes, vectors, Run};
use serde_json::{json, Value};

const GROUP: &str = "vo.example.org";
const VO_PREFIX: &str = "urn:mace:egi.eu:group:vo.example.org:";
const MEMBER: &str = "urn:mace:egi.eu:group:vo.example.org:role=member#aai.egi.eu";
const OTHER_VO: &str = "urn:mace:egi.eu:group:vo.other.org:role=member#aai.egi.eu";
const AUDIENCE: &str = "https://broker.layercrypt.test";

fn plain() -> String {
    format!("oci:{}:gzip", vectors().join("images/plain").display())
}

fn oci(dir: &Path, tag: &str) -> String {
    format!("oci:{}:{tag}", dir.display())
}

/// A user of the CLI: own HOME and XDG_CONFIG_HOME, so no real config or token is read.
struct User {
    home: tempfile::TempDir,
    extra_env: Vec<(String, String)>,
}

impl User {
    fn new() -> User {
        User {
            home: tempfile::tempdir().unwrap(),
            extra_env: vec![],
        }
    }

    fn config_home(&self) -> PathBuf {
        self.home.path().join("config")
    }

    fn run(&self, args: &[&str]) -> Run {
        let config = self.config_home();
        let mut env: Vec<(&str, &std::ffi::OsStr)> = vec![
            ("HOME", self.home.path().as_os_str()),
            ("XDG_CONFIG_HOME", config.as_os_str()),
        ];
        for (k, v) in &self.extra_env {
            env.push((k.as_str(), std::ffi::OsStr::new(v.as_str())));
        }
        layercrypt_env(args, &env)
    }

    fn token_file(&self, name: &str, token: &str) -> String {
        let p = self.home.path().join(name);
        write_secret(&p, token);
        p.display().to_string()
    }
}

/// The CLI as the bootstrap admin of `b`.
fn admin(user: &User, b: &Broker, args: &[&str]) -> Run {
    let token_file = b.admin_token_file.display().to_string();
    let mut all = vec!["--broker", b.url.as_str()];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--admin-token-file", &token_file]);
    user.run(&all)
}

/// Creates GROUP with a prefix grant for the whole VO; returns the grant id.
fn create_group_with_vo_grant(user: &User, b: &Broker) -> String {
    admin(user, b, &["group", "create", GROUP]).ok();
    let run = admin(
        user,
        b,
        &[
            "group",
            "grant",
            GROUP,
            "--entitlement",
            VO_PREFIX,
            "--prefix",
            "--json",
        ],
    )
    .ok();
    let v: Value = serde_json::from_str(&run.stdout).expect("grant json");
    v["id"].as_str().expect("grant id").to_owned()
}

fn decrypt(user: &User, b: &Broker, token_file: &str, src: &str, dst: &str) -> Run {
    user.run(&[
        "--broker",
        &b.url,
        "decrypt",
        "--token-file",
        token_file,
        src,
        dst,
    ])
}

/// Polls `f` until it returns true or `limit` passes; returns the time it took.
fn within(limit: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if f() {
            return Some(start.elapsed());
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

const CACHE_TTL: u64 = 1;

fn group_chain(vault: bool) {
    let oidc = Oidc::start();
    let bao_dir = tempfile::tempdir().unwrap();
    let bao = vault.then(|| Bao::dev(bao_dir.path()));
    let b = Broker::start(
        &oidc.issuer,
        BrokerOptions {
            vault: bao.as_ref().map(|bao| {
                (
                    bao.addr(),
                    bao.token_file(&bao_dir.path().join("vault-token")),
                )
            }),
            cache_ttl: Some(CACHE_TTL),
            ..BrokerOptions::default()
        },
    );
    let user = User::new();
    let work = tempfile::tempdir().unwrap();
    let grant_id = create_group_with_vo_grant(&user, &b);

    // Encrypt for the group: needs only the recipient from the broker.
    let enc = work.path().join("enc");
    user.run(&[
        "--broker",
        &b.url,
        "encrypt",
        "--recipient",
        &format!("group:{GROUP}"),
        &plain(),
        &oci(&enc, "v1"),
    ])
    .ok();
    let inspect = user.run(&["inspect", &oci(&enc, "v1")]).ok();
    assert!(
        inspect
            .stdout
            .contains(&format!("group {GROUP} (key version 1) at {}", b.url)),
        "{}",
        inspect.stdout
    );

    // A member: the token carries no entitlements; the broker asks UserInfo.
    let alice = oidc.mint("alice@egi.eu", &[MEMBER]);
    assert!(tokens::claims(&alice)
        .get("eduperson_entitlement")
        .is_none());
    let alice_file = user.token_file("alice.token", &alice);
    let out = work.path().join("out-alice");
    decrypt(&user, &b, &alice_file, &oci(&enc, "v1"), &oci(&out, "v1")).ok();
    assert_eq!(
        manifest_bytes(&out, "v1"),
        manifest_bytes(&vectors().join("images/plain"), "gzip"),
        "the member's decryption is byte-identical to the original"
    );
    // The broker's audit log names the layers the CLI asked keys for.
    let manifest: Value = serde_json::from_slice(&manifest_bytes(&enc, "v1")).expect("manifest");
    let layers: Vec<&str> = manifest["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .filter_map(|l| l["digest"].as_str())
        .collect();
    let audit = admin(&user, &b, &["audit", "--subject", "alice@egi.eu", "--json"]).ok();
    let events: Value = serde_json::from_str(&audit.stdout).expect("audit json");
    let released: Vec<&str> = events
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["decision"] == "allow")
        .filter_map(|e| e["layer_digest"].as_str())
        .collect();
    assert!(
        !released.is_empty() && released.iter().all(|d| layers.contains(d)),
        "allow events {released:?} must name layers of {layers:?}: {events:#}"
    );

    // A non-member: exit 3, nothing written, an audit entry with the reason.
    let bob = oidc.mint("bob@egi.eu", &[OTHER_VO]);
    let bob_file = user.token_file("bob.token", &bob);
    let out_bob = work.path().join("out-bob");
    let run = decrypt(&user, &b, &bob_file, &oci(&enc, "v1"), &oci(&out_bob, "v1")).fails_with(3);
    assert!(run.stderr.contains("not a member"), "{}", run.stderr);
    assert!(!out_bob.exists());
    let audit = admin(&user, &b, &["audit", "--subject", "bob@egi.eu", "--json"]).ok();
    let events: Value = serde_json::from_str(&audit.stdout).expect("audit json");
    let deny = events
        .as_array()
        .expect("events")
        .iter()
        .find(|e| e["decision"] == "deny" && e["group"] == GROUP)
        .unwrap_or_else(|| panic!("no deny event for bob: {events:#}"));
    assert!(
        deny["reason"]
            .as_str()
            .is_some_and(|r| r.contains("no grant matches")),
        "{deny:#}"
    );
    assert_eq!(deny["client"], "127.0.0.1");

    // Raw HTTP: no-store on released keys; admin routes refuse non-admins and anonymous callers.
    let payload = group_payload(&enc, "v1", 0);
    let r = b.unwrap(Some(&alice), &payload);
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.headers["cache-control"], "no-store");
    let client = b.client();
    for (method, path, body) in [
        ("GET", "/v1/admin/groups".to_owned(), None),
        (
            "POST",
            "/v1/admin/groups".to_owned(),
            Some(json!({"name": "vo.evil.org"})),
        ),
        ("POST", format!("/v1/admin/groups/{GROUP}/rotate"), None),
        ("GET", "/v1/admin/audit".to_owned(), None),
        (
            "POST",
            format!("/v1/admin/groups/{GROUP}/grants"),
            Some(json!({"subject": "mallory@egi.eu"})),
        ),
        ("DELETE", format!("/v1/admin/groups/{GROUP}"), None),
    ] {
        let body = body.map(|v| serde_json::to_vec(&v).unwrap());
        let r = b.request(&client, method, &path, Some(&alice), body.clone());
        assert_eq!(
            (r.status, r.json["error"].as_str()),
            (403, Some("forbidden")),
            "{method} {path}"
        );
        let r = b.request(&client, method, &path, None, body);
        assert_eq!(r.status, 401, "{method} {path} anonymous");
    }

    // Rotation: new encryptions use version 2; images made before still decrypt.
    admin(&user, &b, &["group", "rotate", GROUP]).ok();
    let enc2 = work.path().join("enc2");
    user.run(&[
        "--broker",
        &b.url,
        "encrypt",
        "--recipient",
        &format!("group:{GROUP}"),
        &plain(),
        &oci(&enc2, "v2"),
    ])
    .ok();
    let inspect = user.run(&["inspect", &oci(&enc2, "v2")]).ok();
    assert!(
        inspect.stdout.contains("(key version 2)") && !inspect.stdout.contains("(key version 1)"),
        "{}",
        inspect.stdout
    );
    for (src, name) in [(oci(&enc, "v1"), "old"), (oci(&enc2, "v2"), "new")] {
        let out = work.path().join(format!("out-rot-{name}"));
        decrypt(&user, &b, &alice_file, &src, &oci(&out, "x")).ok();
        assert_eq!(
            manifest_bytes(&out, "x"),
            manifest_bytes(&vectors().join("images/plain"), "gzip")
        );
    }

    // A membership removed at the IdP stops working within the cache TTL, and comes back.
    oidc.set_entitlements("alice@egi.eu", &[]);
    let limit = Duration::from_secs(CACHE_TTL + 3);
    let took = within(limit, || b.unwrap(Some(&alice), &payload).status == 403)
        .expect("membership removal took effect within the cache TTL");
    eprintln!("membership removal effective after {took:?}");
    oidc.set_entitlements("alice@egi.eu", &[MEMBER]);
    within(limit, || b.unwrap(Some(&alice), &payload).status == 200).expect("membership restored");

    // Device flow (embedded run only: it takes a poll interval): log in, then decrypt with
    // the stored token.
    if !vault {
        device_login_then_decrypt(&oidc, &b, &enc, work.path());
    }

    // A revoked grant stops working within the cache TTL.
    admin(&user, &b, &["group", "revoke", GROUP, &grant_id]).ok();
    let took = within(limit, || b.unwrap(Some(&alice), &payload).status == 403)
        .expect("revocation took effect within the cache TTL");
    eprintln!("grant revocation effective after {took:?}");
    let out = work.path().join("out-revoked");
    decrypt(&user, &b, &alice_file, &oci(&enc, "v1"), &oci(&out, "v1")).fails_with(3);
    drop(b);
    drop(bao);
}

fn device_login_then_decrypt(oidc: &Oidc, b: &Broker, enc: &Path, work: &Path) {
    let user = User::new();
    oidc.set_entitlements("carol@egi.eu", &[MEMBER]);
    let mut child = Command::new(layercrypt_bin())
        .args(["login", "--issuer", &oidc.issuer])
        .env("HOME", user.home.path())
        .env("XDG_CONFIG_HOME", user.config_home())
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("layercrypt login");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead as _;
        let mut all = String::new();
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Some(code) = line.trim().strip_prefix("and enter the code: ") {
                let _ = tx.send(code.to_owned());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let code = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("login printed a user code");
    oidc.post(
        "/test/device/approve",
        json!({"user_code": code, "sub": "carol@egi.eu"}),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("layercrypt login did not finish");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stderr = reader.join().unwrap();
    assert!(status.success(), "login failed: {stderr}");
    let tokens = user.config_home().join("layercrypt/tokens.json");
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&tokens)
            .unwrap_or_else(|e| panic!("{}: {e}; login said {stderr}", tokens.display()))
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let out = work.join("out-carol");
    user.run(&[
        "--broker",
        &b.url,
        "decrypt",
        &oci(enc, "v1"),
        &oci(&out, "v1"),
    ])
    .ok();
    assert_eq!(
        manifest_bytes(&out, "v1"),
        manifest_bytes(&vectors().join("images/plain"), "gzip")
    );
}

#[test]
fn group_chain_embedded_store() {
    group_chain(false);
}

#[test]
fn group_chain_vault_store() {
    group_chain(true);
}

/// Regression (issue 8 item 5), through the real broker in its default configuration (no
/// audience, no client id): a token minted for another service, or obtained by a client not
/// in `oidc.allowed_clients`, used to unwrap; now only tokens without `aud` or naming this
/// broker's public URL, from the CLI's or oidc-agent's client, do.
#[test]
fn default_broker_refuses_tokens_for_other_services_and_clients() {
    let oidc = Oidc::start();
    let b = Broker::start(&oidc.issuer, BrokerOptions::default());
    let user = User::new();
    create_group_with_vo_grant(&user, &b);
    let work = tempfile::tempdir().unwrap();
    let enc = work.path().join("enc");
    user.run(&[
        "--broker",
        &b.url,
        "encrypt",
        "-r",
        &format!("group:{GROUP}"),
        &plain(),
        &oci(&enc, "v1"),
    ])
    .ok();
    let payload = group_payload(&enc, "v1", 0);
    let mint = |extra: Value| {
        let mut body = json!({"sub": "alice@egi.eu", "entitlements": [MEMBER]});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        oidc.mint_with(body)
    };
    // The same host by another name: names are compared, never resolved.
    let look_alike = b.url.replace("127.0.0.1", "localhost");
    let cases = [
        ("no aud, the CLI's client", mint(json!({})), 200),
        (
            "aud = this broker, spelt otherwise",
            mint(json!({"aud": format!("{}/", b.url.replace("http://", "HTTP://"))})),
            200,
        ),
        (
            "aud = [other, this broker]",
            mint(json!({"aud": ["https://other.example.org", b.url]})),
            200,
        ),
        (
            "oidc-agent",
            mint(json!({"claims": {"azp": "oidc-agent"}})),
            200,
        ),
        (
            "aud = another service",
            mint(json!({"aud": "https://other.example.org"})),
            401,
        ),
        ("aud = [] ", mint(json!({"aud": []})), 401),
        ("aud = a look-alike", mint(json!({"aud": look_alike})), 401),
        (
            "another relying party",
            mint(json!({"claims": {"azp": "some-other-service"}})),
            401,
        ),
        ("no client", mint(json!({"claims": {"azp": null}})), 401),
    ];
    for (name, token, want) in &cases {
        let r = b.unwrap(Some(token), &payload);
        assert_eq!(r.status, *want, "{name}: {}", r.json);
    }
    let audit = admin(&user, &b, &["audit", "--json"]).ok();
    assert!(
        audit.stdout.contains("does not name this broker")
            && audit.stdout.contains("not in oidc.allowed_clients"),
        "{}",
        audit.stdout
    );
}

/// Every kind of bad token gets the same 401 at `POST /v1/unwrap`; bad bodies get 400/413.
#[test]
fn bad_tokens_401_and_bad_bodies_400_413() {
    let oidc = Oidc::start();
    let b = Broker::start(
        &oidc.issuer,
        BrokerOptions {
            audience: Some(AUDIENCE.into()),
            ..BrokerOptions::default()
        },
    );
    let user = User::new();
    create_group_with_vo_grant(&user, &b);
    let work = tempfile::tempdir().unwrap();
    let enc = work.path().join("enc");
    user.run(&[
        "--broker",
        &b.url,
        "encrypt",
        "-r",
        &format!("group:{GROUP}"),
        &plain(),
        &oci(&enc, "v1"),
    ])
    .ok();
    let payload = group_payload(&enc, "v1", 0);

    let mint = |extra: Value| {
        let mut body = json!({"sub": "alice@egi.eu", "entitlements": [MEMBER], "aud": AUDIENCE});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        oidc.mint_with(body)
    };
    let good = mint(json!({}));
    let r = b.unwrap(Some(&good), &payload);
    assert_eq!(r.status, 200, "the control token works: {}", r.json);

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let jwk = oidc.get("/test/jwks-key");
    let bad = [
        (
            "expired",
            mint(json!({"claims": {"exp": now - 3600, "iat": now - 7200}})),
        ),
        (
            "not yet valid",
            mint(json!({"claims": {"nbf": now + 3600}})),
        ),
        (
            "wrong issuer",
            mint(json!({"claims": {"iss": "https://aai.egi.eu/auth/realms/egi"}})),
        ),
        (
            "wrong audience",
            mint(json!({"aud": "https://other.example.org"})),
        ),
        (
            "no audience",
            mint(json!({"aud": null, "claims": {"aud": null}})),
        ),
        ("alg none", tokens::alg_none(&good)),
        (
            "HS256 with the RSA public key",
            tokens::hs256_with_public_key(&good, &jwk),
        ),
        ("unknown kid", tokens::unknown_kid(&good)),
        ("tampered payload", tokens::tampered_payload(&good)),
        ("tampered signature", tokens::tampered_signature(&good)),
        ("garbage", "not-a-jwt".to_owned()),
    ];
    let mut bodies = Vec::new();
    for (name, token) in &bad {
        let r = b.unwrap(Some(token), &payload);
        assert_eq!(r.status, 401, "{name}: {}", r.json);
        assert_eq!(r.headers["www-authenticate"], "Bearer", "{name}");
        bodies.push(r.json.to_string());
    }
    bodies.dedup();
    assert_eq!(
        bodies.len(),
        1,
        "401s must not say which check failed: {bodies:?}"
    );
    assert_eq!(b.unwrap(None, &payload).status, 401, "anonymous");

    // The audit log has the detail the caller does not get: the first refusal of each distinct
    // cause in this client's window in full (at most 8); the others are counted and summarised
    // in one record when the window closes or the broker stops (issue 8 item 2), so a flood
    // cannot fill the disk.
    let audit = admin(&user, &b, &["audit", "--kind", "unauthenticated", "--json"]).ok();
    let events: Value = serde_json::from_str(&audit.stdout).unwrap();
    let unauthenticated: Vec<&Value> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["decision"] == "deny"
                && e["kind"] == "unauthenticated"
                && e["client"] == "127.0.0.1"
                && e["reason"]
                    .as_str()
                    .is_some_and(|r| r.starts_with("unauthenticated (POST /v1/unwrap): "))
        })
        .collect();
    let mut reasons: Vec<&str> = unauthenticated
        .iter()
        .filter_map(|e| e["reason"].as_str())
        .collect();
    assert!((2..=8).contains(&reasons.len()), "{events:#}");
    reasons.sort_unstable();
    reasons.dedup();
    assert_eq!(
        reasons.len(),
        unauthenticated.len(),
        "one full record per cause"
    );
    assert!(
        !audit.stdout.contains(&good),
        "the audit log must not contain tokens"
    );

    // Bodies: authenticated caller, malformed or oversized.
    let client = b.client();
    for (name, body) in [
        ("not JSON", b"{not json".to_vec()),
        ("no payload", br#"{"layer_digest":"sha256:00"}"#.to_vec()),
        (
            "unknown field",
            format!(r#"{{"payload":"{payload}","x":1}}"#).into_bytes(),
        ),
        ("payload not base64", br#"{"payload":"%%%"}"#.to_vec()),
        (
            "payload not a group payload",
            br#"{"payload":"aGVsbG8="}"#.to_vec(),
        ),
        ("JSON array", b"[1,2,3]".to_vec()),
    ] {
        let r = b.request(&client, "POST", "/v1/unwrap", Some(&good), Some(body));
        assert_eq!(r.status, 400, "{name}: {}", r.json);
        assert_eq!(r.json["error"], "bad_request", "{name}");
    }
    let huge = format!(r#"{{"payload":"{}"}}"#, "A".repeat(70 * 1024)).into_bytes();
    let r = b.request(
        &client,
        "POST",
        "/v1/unwrap",
        Some(&good),
        Some(huge.clone()),
    );
    assert_eq!(r.status, 413, "{}", r.json);
    let r = b.request(
        &client,
        "POST",
        "/v1/admin/groups",
        Some(&b.admin_token),
        Some(huge),
    );
    assert_eq!(r.status, 413, "admin route: {}", r.json);
    let r = b.request(
        &client,
        "POST",
        "/v1/admin/groups",
        Some(&b.admin_token),
        Some(b"{\"nam\":1}".to_vec()),
    );
    assert_eq!(r.status, 400, "{}", r.json);
}

/// OpenBao down: 503 and /readyz 503; back: the broker serves again without a restart.
#[test]
fn openbao_outage_gives_503_and_the_broker_recovers() {
    let oidc = Oidc::start();
    let bao_dir = tempfile::tempdir().unwrap();
    let mut bao = Bao::durable(bao_dir.path());
    let b = Broker::start(
        &oidc.issuer,
        BrokerOptions {
            vault: Some((
                bao.addr(),
                bao.token_file(&bao_dir.path().join("vault-token")),
            )),
            ..BrokerOptions::default()
        },
    );
    let user = User::new();
    create_group_with_vo_grant(&user, &b);
    let work = tempfile::tempdir().unwrap();
    let enc = work.path().join("enc");
    user.run(&[
        "--broker",
        &b.url,
        "encrypt",
        "-r",
        &format!("group:{GROUP}"),
        &plain(),
        &oci(&enc, "v1"),
    ])
    .ok();
    let payload = group_payload(&enc, "v1", 0);
    let alice = oidc.mint("alice@egi.eu", &[MEMBER]);
    assert_eq!(b.unwrap(Some(&alice), &payload).status, 200);
    let client = b.client();
    assert_eq!(b.request(&client, "GET", "/readyz", None, None).status, 200);

    let recipient = format!("/v1/groups/{GROUP}/recipient");
    assert_eq!(
        b.request(&client, "GET", &recipient, None, None).status,
        200
    );
    bao.kill();
    // The public recipient route answers from its cache (`store.recipient_cache_secs`, 10 s)
    // through a short outage: encrypting for the group keeps working.
    let r = b.request(&client, "GET", &recipient, None, None);
    assert_eq!(r.status, 200, "{}", r.json);
    let r = b.unwrap(Some(&alice), &payload);
    assert_eq!(
        (r.status, r.json["error"].as_str()),
        (503, Some("unavailable"))
    );
    let r = b.request(&client, "GET", "/readyz", None, None);
    assert_eq!(r.status, 503);
    assert_eq!(r.json["store"], false);
    bao.restart();
    let took = within(Duration::from_secs(30), || {
        b.unwrap(Some(&alice), &payload).status == 200
    })
    .expect("the broker serves again once OpenBao is back");
    eprintln!("broker recovered {took:?} after OpenBao came back");
    assert_eq!(b.request(&client, "GET", "/readyz", None, None).status, 200);
    let out = work.path().join("out");
    let file = user.token_file("alice.token", &alice);
    decrypt(&user, &b, &file, &oci(&enc, "v1"), &oci(&out, "v1")).ok();
}

/// kill -9 of the broker while an admin adds grants: every acknowledged grant survives.
#[test]
fn kill_9_during_admin_writes_loses_no_acknowledged_grant() {
    let oidc = Oidc::start();
    let mut b = Broker::start(&oidc.issuer, BrokerOptions::default());
    let user = std::sync::Arc::new(User::new());
    admin(&user, &b, &["group", "create", GROUP]).ok();
    let url = b.url.clone();
    let token_file = b.admin_token_file.display().to_string();
    let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let writer = {
        let (user, acknowledged) = (user.clone(), acknowledged.clone());
        std::thread::spawn(move || {
            let mut failures = 0;
            for i in 0..400 {
                let subject = format!("user-{i}@egi.eu");
                let run = user.run(&[
                    "--broker",
                    &url,
                    "group",
                    "grant",
                    GROUP,
                    "--subject",
                    &subject,
                    "--json",
                    "--admin-token-file",
                    &token_file,
                ]);
                if run.code == 0 {
                    let v: Value = serde_json::from_str(&run.stdout).expect("grant json");
                    acknowledged
                        .lock()
                        .unwrap()
                        .push(v["id"].as_str().expect("id").to_owned());
                } else {
                    failures += 1;
                    if failures >= 3 {
                        break;
                    }
                }
            }
        })
    };
    assert!(
        within(Duration::from_secs(60), || acknowledged
            .lock()
            .unwrap()
            .len()
            >= 20)
        .is_some(),
        "grants are being acknowledged"
    );
    b.kill9();
    writer.join().unwrap();
    let acknowledged = acknowledged.lock().unwrap().clone();
    b.restart();
    let run = admin(&user, &b, &["group", "show", GROUP, "--json"]).ok();
    let group: Value = serde_json::from_str(&run.stdout).unwrap();
    let stored: Vec<&str> = group["grants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["id"].as_str().unwrap())
        .collect();
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|id| !stored.contains(&id.as_str()))
        .collect();
    eprintln!(
        "{} grants acknowledged before kill -9, {} stored after restart",
        acknowledged.len(),
        stored.len()
    );
    assert!(lost.is_empty(), "acknowledged grants lost: {lost:?}");
}

/// TLS with client certificates: a grant by DN; an RFC 3820 proxy of the granted end entity
/// gets the key; the same DN from an untrusted CA gets 401; a granted DN outside the CA's
/// namespace (its `.signing_policy`, enforced by default) gets 401. Unwrap is driven with OpenSSL
/// directly: the `layercrypt` CLI does not present client certificates (and rustls refuses
/// proxy certificates as client identities).
#[test]
fn certificate_identities_proxy_gets_the_key_untrusted_ca_does_not() {
    let oidc = Oidc::start();
    let dir = tempfile::tempdir().unwrap();
    let ca = pki::issue(
        &pki::name(&[
            ("DC", "eu"),
            ("DC", "rcauth"),
            ("O", "Certification Authorities"),
            ("CN", "Test RCAuth CA"),
        ]),
        Kind::Ca,
        1,
        None,
    );
    let ca_dir = dir.path().join("certificates");
    pki::install_ca(&ca_dir, &ca, &["/DC=eu/DC=rcauth/DC=rcauth-clients/*"]);
    let dn_parts = [
        ("DC", "eu"),
        ("DC", "rcauth"),
        ("DC", "rcauth-clients"),
        ("O", "EGI Foundation"),
        ("CN", "Jane Doe 7ewsApjEZsBcCLz-"),
    ];
    let dn = "/DC=eu/DC=rcauth/DC=rcauth-clients/O=EGI Foundation/CN=Jane Doe 7ewsApjEZsBcCLz-";
    let ee = pki::issue(&pki::name(&dn_parts), Kind::EndEntity, 2, Some(&ca));
    let proxy = pki::proxy_of(&ee, 12345);
    let server_ca = pki::issue(&pki::name(&[("CN", "Test server CA")]), Kind::Ca, 3, None);
    let server = pki::issue(
        &pki::name(&[("CN", "127.0.0.1")]),
        Kind::Server,
        4,
        Some(&server_ca),
    );
    let rogue_ca = pki::issue(&pki::name(&[("CN", "Rogue CA")]), Kind::Ca, 5, None);
    let rogue = pki::issue(&pki::name(&dn_parts), Kind::EndEntity, 6, Some(&rogue_ca));
    let other = pki::issue(
        &pki::name(&[
            ("DC", "eu"),
            ("DC", "rcauth"),
            ("DC", "rcauth-clients"),
            ("O", "EGI Foundation"),
            ("CN", "John Other"),
        ]),
        Kind::EndEntity,
        7,
        Some(&ca),
    );
    // Issued by the trusted CA, but outside its namespace.
    let outsider_dn = "/DC=eu/DC=rcauth/CN=John Outsider";
    let outsider = pki::issue(
        &pki::name(&[("DC", "eu"), ("DC", "rcauth"), ("CN", "John Outsider")]),
        Kind::EndEntity,
        8,
        Some(&ca),
    );
    let (cert, key) = (dir.path().join("server.pem"), dir.path().join("server.key"));
    std::fs::write(&cert, server.cert_pem()).unwrap();
    write_secret(&key, &String::from_utf8(server.key_pem()).unwrap());
    let b = Broker::start(
        &oidc.issuer,
        BrokerOptions {
            tls: Some((cert, key, ca_dir)),
            ..BrokerOptions::default()
        },
    );
    assert!(b.url.starts_with("https://"));

    // A broker whose TLS certificate comes from a CA the client does not trust (an IGTF host
    // certificate on a laptop): a trust problem, said as such, not "unavailable, try again";
    // `--broker-ca` fixes it (issue 10.3).
    let mut user = User::new();
    let server_ca_file = dir.path().join("server-ca.pem");
    std::fs::write(&server_ca_file, server_ca.cert_pem()).unwrap();
    let untrusted = admin(&user, &b, &["group", "list"]);
    assert_ne!(untrusted.code, 0);
    assert!(
        untrusted.stderr.contains("TLS certificate is not trusted")
            && untrusted.stderr.contains("--broker-ca")
            && !untrusted.stderr.contains("try again ("),
        "{}",
        untrusted.stderr
    );
    let ca_arg = server_ca_file.display().to_string();
    admin(&user, &b, &["--broker-ca", &ca_arg, "group", "list"]).ok();

    // Group, grant by DN, and an encrypted image (the CLI trusts the test server CA through
    // SSL_CERT_FILE).
    user.extra_env
        .push(("SSL_CERT_FILE".into(), server_ca_file.display().to_string()));
    admin(&user, &b, &["group", "create", GROUP]).ok();
    admin(&user, &b, &["group", "grant", GROUP, "--dn", dn]).ok();
    admin(&user, &b, &["group", "grant", GROUP, "--dn", outsider_dn]).ok();
    let work = tempfile::tempdir().unwrap();
    let enc = work.path().join("enc");
    user.run(&[
        "--broker",
        &b.url,
        "encrypt",
        "-r",
        &format!("group:{GROUP}"),
        &plain(),
        &oci(&enc, "v1"),
    ])
    .ok();
    let payload = group_payload(&enc, "v1", 0);
    let body = serde_json::to_vec(&json!({"payload": payload})).unwrap();

    let addr = b.url.trim_start_matches("https://").to_owned();
    let with_cert = |chain: &[&pki::Issued], key: &pki::Issued| {
        pki::tls_post(&addr, chain, key, "/v1/unwrap", &body)
    };
    let (status, head, json) = with_cert(&[&proxy, &ee], &proxy);
    assert_eq!(status, 200, "proxy of the granted DN: {json}");
    assert!(head.contains("cache-control: no-store"), "{head}");
    assert!(json["optsdata"].is_string());
    let (status, _, json) = with_cert(&[&ee], &ee);
    assert_eq!(status, 200, "the end entity itself: {json}");
    let (status, _, json) = with_cert(&[&rogue], &rogue);
    assert_eq!(status, 401, "same DN, untrusted CA: {json}");
    let rogue_proxy = pki::proxy_of(&rogue, 99);
    let (status, _, json) = with_cert(&[&rogue_proxy, &rogue], &rogue_proxy);
    assert_eq!(status, 401, "proxy of an untrusted certificate: {json}");
    let (status, _, json) = with_cert(&[&other], &other);
    assert_eq!(status, 403, "trusted, but not granted: {json}");
    let (status, _, json) = with_cert(&[&outsider], &outsider);
    assert_eq!(
        status, 401,
        "granted, but outside the CA's namespace: {json}"
    );
    let r = b.unwrap(None, &payload);
    assert_eq!(r.status, 401, "no certificate, no token");

    // A worker node whose broker credential is this certificate (`tls-client-cert`): the key
    // provider (same code as the containerd decoder) presents it through rustls. rustls does
    // not present RFC 3820 proxies, so a node uses a host or robot certificate: the EE here.
    let node_dir = dir.path().join("node");
    std::fs::create_dir_all(&node_dir).unwrap();
    let node_toml = |cert: &pki::Issued, name: &str| {
        let cert_file = node_dir.join(format!("{name}.pem"));
        let key_file = node_dir.join(format!("{name}.key"));
        std::fs::write(&cert_file, cert.cert_pem()).unwrap();
        write_secret(&key_file, &String::from_utf8(cert.key_pem()).unwrap());
        let config = node_dir.join(format!("{name}.toml"));
        std::fs::write(
            &config,
            format!(
                "brokers = [\"{}\"]\nca_file = \"{}\"\n[credential]\nkind = \"tls-client-cert\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
                b.url,
                server_ca_file.display(),
                cert_file.display(),
                key_file.display()
            ),
        )
        .unwrap();
        (config, cert_file)
    };
    let unwrap_request = format!(
        r#"{{"op":"keyunwrap","keywrapparams":{{"ec":null,"optsdata":null}},"keyunwrapparams":{{"dc":{{"Parameters":{{"layercrypt":["RW5hYmxlZA=="]}}}},"annotation":"{payload}"}}}}"#
    );
    let keyprovider = |config: &Path| {
        use std::io::Write as _;
        let bin = layercrypt_bin().with_file_name("layercrypt-keyprovider");
        let mut child = Command::new(&bin)
            .arg("--config")
            .arg(config)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e} (cargo build --bins)", bin.display()));
        child
            .stdin
            .take()
            .unwrap()
            .write_all(unwrap_request.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let (config, _) = node_toml(&ee, "granted");
    let out = keyprovider(&config);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "node with the granted certificate: {stderr}"
    );
    let answer: Value = serde_json::from_slice(&out.stdout).expect("key provider JSON");
    assert!(
        answer["keyunwrapresults"]["optsdata"].is_string(),
        "{answer}"
    );
    // A certificate from a CA the broker does not trust: refused, and the one line names the
    // certificate file.
    let (config, cert_file) = node_toml(&rogue, "rogue");
    let out = keyprovider(&config);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(out.stdout.is_empty());
    assert!(
        stderr.contains(&cert_file.display().to_string()),
        "the refusal must name the certificate: {stderr}"
    );
    eprintln!("node with an untrusted certificate: {}", stderr.trim());

    // The CLI with --broker-cert/--broker-key (a user's IGTF certificate instead of a token):
    // the key file is passphrase-protected, as ~/.globus/userkey.pem usually is.
    let ee_cert = node_dir.join("usercert.pem");
    std::fs::write(&ee_cert, ee.cert_pem()).unwrap();
    let ee_key = node_dir.join("userkey.pem");
    let encrypted_key = ee
        .key
        .private_key_to_pem_pkcs8_passphrase(openssl::symm::Cipher::aes_256_cbc(), b"grid-pass")
        .unwrap();
    write_secret(&ee_key, &String::from_utf8(encrypted_key).unwrap());
    let pass_file = node_dir.join("pass");
    write_secret(&pass_file, "grid-pass\n");
    let out_cert = work.path().join("out-cert");
    let cert_args = |cert: &Path, key: &Path, out: &Path| {
        vec![
            "--broker".to_owned(),
            b.url.clone(),
            "--broker-cert".to_owned(),
            cert.display().to_string(),
            "--broker-key".to_owned(),
            key.display().to_string(),
            "--broker-key-passphrase-file".to_owned(),
            pass_file.display().to_string(),
            "decrypt".to_owned(),
            oci(&enc, "v1"),
            oci(out, "v1"),
        ]
    };
    let args = cert_args(&ee_cert, &ee_key, &out_cert);
    user.run(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .ok();
    assert_eq!(
        manifest_bytes(&out_cert, "v1"),
        manifest_bytes(&vectors().join("images/plain"), "gzip"),
        "decrypted with the certificate"
    );
    // A certificate of an untrusted CA: exit 3 (no key), nothing written.
    let rogue_cert = node_dir.join("rogue.pem");
    let rogue_key = node_dir.join("rogue.key");
    let out_rogue = work.path().join("out-rogue");
    let args = cert_args(&rogue_cert, &rogue_key, &out_rogue);
    let run = user
        .run(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .fails_with(3);
    assert!(!out_rogue.exists());
    assert!(
        run.stderr.contains("client certificate was not accepted")
            && run.stderr.contains("--broker-cert"),
        "{}",
        run.stderr
    );
    // An RCAuth-style proxy (proxy, then the user certificate, in one file; its key apart):
    // decrypts as the user.
    let proxy_pem = node_dir.join("proxy-chain.pem");
    let mut chain = proxy.cert_pem();
    chain.extend_from_slice(&ee.cert_pem());
    std::fs::write(&proxy_pem, chain).unwrap();
    let proxy_key = node_dir.join("proxy.key");
    write_secret(&proxy_key, &String::from_utf8(proxy.key_pem()).unwrap());
    let out_proxy = work.path().join("out-proxy");
    let args = cert_args(&proxy_pem, &proxy_key, &out_proxy);
    user.run(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .ok();
    assert_eq!(
        manifest_bytes(&out_proxy, "v1"),
        manifest_bytes(&vectors().join("images/plain"), "gzip"),
        "decrypted with the proxy"
    );
    // An RFC 3820 proxy of the granted certificate as the node credential (the file holds
    // the proxy, then the certificate it was made from): presented through OpenSSL, since
    // rustls refuses proxies, and it gets the key.
    let (config, proxy_file) = node_toml(&proxy, "proxy");
    let mut chain = proxy.cert_pem();
    chain.extend_from_slice(&ee.cert_pem());
    std::fs::write(&proxy_file, chain).unwrap();
    let out = keyprovider(&config);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "node with a proxy: {stderr}");
    let answer: Value = serde_json::from_slice(&out.stdout).expect("key provider JSON");
    assert!(
        answer["keyunwrapresults"]["optsdata"].is_string(),
        "{answer}"
    );
    // A proxy of the untrusted certificate: refused like its issuer.
    let rogue_proxy_chain = {
        let mut c = rogue_proxy.cert_pem();
        c.extend_from_slice(&rogue.cert_pem());
        c
    };
    let (config, rogue_proxy_file) = node_toml(&rogue_proxy, "rogue-proxy");
    std::fs::write(&rogue_proxy_file, rogue_proxy_chain).unwrap();
    let out = keyprovider(&config);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("rogue-proxy.pem"));

    let audit = admin(&user, &b, &["audit", "--json"]).ok();
    let events: Value = serde_json::from_str(&audit.stdout).unwrap();
    assert!(
        events
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["decision"] == "allow" && e["dn"] == dn),
        "{events:#}"
    );
    assert!(
        events
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["decision"] == "deny"
                && e["reason"].as_str().is_some_and(|r| r
                    .contains(&format!("{outsider_dn} is outside the namespace"))
                    && r.contains(".signing_policy"))),
        "the audit log says why the outsider was refused: {events:#}"
    );
}
