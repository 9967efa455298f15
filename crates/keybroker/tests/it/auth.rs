//! OIDC token verification against the real oidc-provider stand-in for EGI Check-in
//! (`tests/oidc/server.mjs`), started on a free 127.0.0.1 port per test.
//!
//! Needs Node.js and `npm ci --prefer-offline` in `tests/oidc` (the test says so if not).
// Refusal reasons and the stand-in's log go to stderr, shown for failing tests only.

use std::io::BufReader;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use layercrypt_keybroker::auth::oidc::{ClientPolicy, MembershipSource, OidcConfig, OidcVerifier};
use layercrypt_keybroker::auth::{AuthError, Identity, Method, Token, TokenVerifier};
use serde_json::{json, Value};
use zeroize::Zeroizing;

const VO: &str = "urn:mace:egi.eu:group:vo.example.org:role=member#aai.egi.eu";
const VO2: &str = "urn:mace:egi.eu:group:vo.other.org:role=member#aai.egi.eu";

/// The stand-in, killed on drop.
struct Provider {
    child: Child,
    issuer: String,
    base: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Provider {
    fn start() -> Self {
        let oidc_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/oidc");
        assert!(
            oidc_dir.join("node_modules/oidc-provider").is_dir(),
            "the OIDC stand-in is not installed: run `npm ci --prefer-offline` in {}",
            oidc_dir.display()
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let mut started = None;
        for _attempt in 0..3 {
            let _ = std::fs::remove_file(dir.path().join("keys.json"));
            let mut child = Command::new("node")
                .arg("server.mjs")
                .args(["--port", "0", "--key-file"])
                .arg(dir.path().join("keys.json"))
                .current_dir(&oidc_dir)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(std::fs::File::create(dir.path().join("stderr.log")).expect("log file"))
                .spawn()
                .expect("node must be installed to run the OIDC stand-in");
            let stdout = child.stdout.take().expect("piped stdout");
            let mut reader = BufReader::new(stdout);
            let line = first_line_within_30s(&child, &mut reader);
            if line.starts_with("READY ") {
                started = Some((child, reader, line));
                break;
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let (child, mut reader, line) =
            started.unwrap_or_else(|| panic!("the OIDC stand-in did not start in 3 attempts"));
        // Keep draining stdout (oidc-provider prints notices there): a closed pipe kills node.
        std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
        let issuer = line
            .trim()
            .strip_prefix("READY ")
            .unwrap_or_else(|| panic!("stand-in did not start: {line:?}"))
            .to_owned();
        let base = issuer
            .strip_suffix("/auth/realms/egi")
            .expect("issuer path")
            .to_owned();
        Self {
            child,
            issuer,
            base,
            http: reqwest::Client::new(),
            _dir: dir,
        }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("stand-in reachable");
        assert!(resp.status().is_success(), "{path}: {}", resp.status());
        serde_json::from_slice(&resp.bytes().await.expect("body")).expect("json")
    }

    async fn get(&self, path: &str) -> Value {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("stand-in reachable");
        serde_json::from_slice(&resp.bytes().await.expect("body")).expect("json")
    }

    async fn mint(&self, body: Value) -> Token {
        let v = self.post("/test/mint", body).await;
        Token::new(v["access_token"].as_str().expect("token"))
    }

    async fn stat(&self, name: &str) -> u64 {
        self.get("/test/stats").await[name]
            .as_u64()
            .expect("counter")
    }

    fn config(&self) -> OidcConfig {
        OidcConfig::new(self.issuer.clone())
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self._dir.path().join("stderr.log"));
            eprintln!("--- OIDC stand-in stderr ---\n{}", log.unwrap_or_default());
        }
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

fn reason(r: Result<Identity, AuthError>) -> String {
    match r {
        Err(AuthError::Invalid(s)) => s,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

fn split(token: &str) -> (String, String, String) {
    let p: Vec<&str> = token.split('.').collect();
    (p[0].to_owned(), p[1].to_owned(), p[2].to_owned())
}

#[tokio::test]
async fn valid_token_gets_entitlements_from_userinfo() {
    let p = Provider::start();
    let v = OidcVerifier::new(p.config());
    assert!(v.ready().await);
    let token = p
        .mint(json!({"sub": "alice@egi.eu", "entitlements": [VO]}))
        .await;
    // Like Check-in's, the token itself carries neither aud nor group claims.
    let payload: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(split(token.expose_secret()).1)
            .expect("b64"),
    )
    .expect("json");
    assert!(payload.get("aud").is_none() && payload.get("eduperson_entitlement").is_none());

    let id = v.verify(&token).await.expect("valid");
    assert_eq!(id.method, Method::Token);
    assert_eq!(id.subject.as_deref(), Some("alice@egi.eu"));
    assert_eq!(id.entitlements, vec![VO.to_owned()]);
    assert_eq!(id.expires_at, payload["exp"].as_i64());
    assert_eq!(p.stat("userinfo").await, 1);
}

#[tokio::test]
async fn voperson_id_preferred_and_token_entitlements_used() {
    let p = Provider::start();
    let v = OidcVerifier::new(p.config());
    let token = p
        .mint(json!({"sub": "abc@egi.eu", "claims": {"voperson_id": "jane@egi.eu"}}))
        .await;
    assert_eq!(
        v.verify(&token).await.expect("valid").subject.as_deref(),
        Some("jane@egi.eu")
    );

    // Entitlements in the token win; UserInfo is not asked.
    let token = p
        .mint(json!({"sub": "bob@egi.eu", "entitlements": [VO2], "in_token": true}))
        .await;
    let before = p.stat("userinfo").await;
    let id = v.verify(&token).await.expect("valid");
    assert_eq!(id.entitlements, vec![VO2.to_owned()]);
    assert_eq!(p.stat("userinfo").await, before);
}

#[tokio::test]
async fn bad_tokens_refused_with_distinct_reasons() {
    let p = Provider::start();
    let mut config = p.config();
    config.audience = Some("https://broker.example.org".into());
    let v = OidcVerifier::new(config);
    let aud = json!("https://broker.example.org");
    let good = p
        .mint(json!({"sub": "alice", "entitlements": [VO], "aud": aud}))
        .await;
    v.verify(&good).await.expect("the control token is valid");

    let mut reasons = Vec::new();
    let mut check = |name: &str, r: String| {
        eprintln!("{name}: {r}");
        reasons.push((name.to_owned(), r));
    };

    let t = p
        .mint(json!({"sub": "alice", "aud": aud, "claims": {"exp": now() - 3600}}))
        .await;
    check("expired", reason(v.verify(&t).await));
    let t = p
        .mint(json!({"sub": "alice", "aud": aud, "claims": {"nbf": now() + 3600}}))
        .await;
    check("not yet valid", reason(v.verify(&t).await));
    let t = p
        .mint(json!({"sub": "alice", "aud": aud, "claims": {"iss": "https://aai.egi.eu/auth/realms/egi"}}))
        .await;
    check("wrong issuer", reason(v.verify(&t).await));
    let t = p
        .mint(json!({"sub": "alice", "aud": "https://other.example"}))
        .await;
    check("wrong audience", reason(v.verify(&t).await));
    let t = p.mint(json!({"sub": "alice"})).await;
    check("no audience", reason(v.verify(&t).await));

    let (h, body, sig) = split(good.expose_secret());
    let none = format!(
        "{}.{body}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#)
    );
    check("alg none", reason(v.verify(&Token::new(none)).await));

    // HS256 "signed" with the issuer's RSA public key in PEM: the classic key-confusion attack.
    let jwk = p.get("/test/jwks-key").await;
    let n = openssl::bn::BigNum::from_slice(
        &URL_SAFE_NO_PAD
            .decode(jwk["n"].as_str().expect("n"))
            .expect("b64"),
    )
    .expect("bn");
    let e = openssl::bn::BigNum::from_slice(
        &URL_SAFE_NO_PAD
            .decode(jwk["e"].as_str().expect("e"))
            .expect("b64"),
    )
    .expect("bn");
    let pem = openssl::rsa::Rsa::from_public_components(n, e)
        .expect("rsa")
        .public_key_to_pem()
        .expect("pem");
    let claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&body).expect("b64")).expect("json");
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = jwk["kid"].as_str().map(String::from);
    let hs_token =
        jsonwebtoken::encode(&hs, &claims, &EncodingKey::from_secret(&pem)).expect("hs256");
    let jwks_before = p.stat("jwks").await;
    let fresh = OidcVerifier::new({
        let mut c = p.config();
        c.audience = Some("https://broker.example.org".into());
        c
    });
    check(
        "HS256 with the RSA public key",
        reason(fresh.verify(&Token::new(hs_token)).await),
    );
    assert_eq!(
        p.stat("jwks").await,
        jwks_before,
        "HS256 is refused before any key lookup"
    );

    // Signed by a key the issuer never published.
    let foreign = openssl::rsa::Rsa::generate(2048).expect("rsa");
    let mut rs = Header::new(Algorithm::RS256);
    rs.kid = Some("foreign-key".into());
    let foreign_token = jsonwebtoken::encode(
        &rs,
        &claims,
        &EncodingKey::from_rsa_pem(&foreign.private_key_to_pem().expect("pem")).expect("key"),
    )
    .expect("rs256");
    check(
        "unknown kid",
        reason(v.verify(&Token::new(foreign_token)).await),
    );

    let mut forged = claims.clone();
    forged["sub"] = json!("mallory");
    let tampered = format!("{h}.{}.{sig}", URL_SAFE_NO_PAD.encode(forged.to_string()));
    check(
        "tampered payload",
        reason(v.verify(&Token::new(tampered)).await),
    );
    let mut sig_bytes = URL_SAFE_NO_PAD.decode(&sig).expect("b64");
    sig_bytes[10] ^= 1;
    let bad_sig = format!("{h}.{body}.{}", URL_SAFE_NO_PAD.encode(sig_bytes));
    check(
        "tampered signature",
        reason(v.verify(&Token::new(bad_sig)).await),
    );
    check("garbage", reason(v.verify(&Token::new("not-a-jwt")).await));

    // Every failure has its own reason, except that a changed payload and a changed signature
    // are one and the same failure (the signature does not verify over the signed bytes).
    let mut distinct: Vec<&str> = reasons.iter().map(|(_, r)| r.as_str()).collect();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), reasons.len() - 1, "{reasons:#?}");
    for (_, r) in &reasons {
        assert!(
            !r.contains(good.expose_secret()) && !r.contains(&sig),
            "reason leaks the token"
        );
    }
}

#[tokio::test]
async fn jwks_refreshed_on_rotation_at_most_once_a_minute() {
    let p = Provider::start();
    let v = OidcVerifier::new(p.config());
    let a = p.mint(json!({"sub": "alice", "entitlements": [VO]})).await;
    v.verify(&a).await.expect("valid");
    assert_eq!(p.stat("jwks").await, 1);

    p.post("/test/rotate", json!({})).await;
    let b = p.mint(json!({"sub": "alice", "entitlements": [VO]})).await;
    assert_ne!(
        split(a.expose_secret()).0,
        split(b.expose_secret()).0,
        "new kid"
    );
    v.verify(&b)
        .await
        .expect("new key picked up by one JWKS refresh");
    assert_eq!(p.stat("jwks").await, 2);

    // A second rotation within the minute is not fetched: unknown kids cannot make the
    // broker hammer the issuer.
    p.post("/test/rotate", json!({})).await;
    let c = p.mint(json!({"sub": "alice", "entitlements": [VO]})).await;
    assert!(reason(v.verify(&c).await).contains("rate-limited"));
    assert_eq!(p.stat("jwks").await, 2);
    // Tokens signed with the already known keys still verify.
    v.verify(&a).await.expect("old key still valid");
}

#[tokio::test]
async fn membership_change_shows_after_cache_ttl() {
    let p = Provider::start();
    let mut config = p.config();
    config.cache_ttl_secs = 1;
    let v = OidcVerifier::new(config);
    let token = p.mint(json!({"sub": "alice", "entitlements": [VO]})).await;
    assert_eq!(
        v.verify(&token).await.expect("valid").entitlements,
        vec![VO.to_owned()]
    );

    p.post(
        "/test/users",
        json!({"sub": "alice", "entitlements": [VO2]}),
    )
    .await;
    // Cached: same answer, no UserInfo call.
    assert_eq!(
        v.verify(&token).await.expect("valid").entitlements,
        vec![VO.to_owned()]
    );
    assert_eq!(p.stat("userinfo").await, 1);

    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        v.verify(&token).await.expect("valid").entitlements,
        vec![VO2.to_owned()]
    );
    assert_eq!(p.stat("userinfo").await, 2);

    // Membership removed entirely: the token stays valid, with no entitlement.
    p.post("/test/users", json!({"sub": "alice", "entitlements": []}))
        .await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert!(v
        .verify(&token)
        .await
        .expect("valid")
        .entitlements
        .is_empty());
}

#[tokio::test]
async fn issuer_down_is_unavailable() {
    let mut p = Provider::start();
    let warm = OidcVerifier::new(p.config());
    let t1 = p.mint(json!({"sub": "alice", "entitlements": [VO]})).await;
    warm.verify(&t1).await.expect("valid");
    let t2 = p.mint(json!({"sub": "bob", "entitlements": [VO]})).await;
    p.stop();

    let cold = OidcVerifier::new(p.config());
    assert!(matches!(
        cold.verify(&t2).await,
        Err(AuthError::Unavailable(_))
    ));
    assert!(!cold.ready().await);
    // JWKS cached, but UserInfo is down.
    assert!(matches!(
        warm.verify(&t2).await,
        Err(AuthError::Unavailable(_))
    ));
    // A bad token is still refused as such, without the issuer.
    assert!(matches!(
        warm.verify(&Token::new("a.b")).await,
        Err(AuthError::Invalid(_))
    ));
    // The cached identity of t1 is still served until its TTL.
    warm.verify(&t1).await.expect("cached");
}

#[tokio::test]
async fn introspection_with_confidential_client() {
    let p = Provider::start();
    let mut config = p.config();
    config.membership = MembershipSource::Introspection {
        client_id: "layercrypt-broker".into(),
        client_secret: Zeroizing::new("broker-secret".into()),
    };
    let v = OidcVerifier::new(config.clone());
    let token = p
        .mint(json!({"sub": "alice", "entitlements": [VO, VO2]}))
        .await;
    let id = v.verify(&token).await.expect("valid");
    assert_eq!(id.entitlements, vec![VO.to_owned(), VO2.to_owned()]);
    assert_eq!(
        (p.stat("introspect").await, p.stat("userinfo").await),
        (1, 0)
    );

    // Expired 30 s ago: inside our 60 s leeway, but the issuer says inactive.
    let stale = p
        .mint(json!({"sub": "alice", "claims": {"exp": now() - 30}}))
        .await;
    assert!(reason(v.verify(&stale).await).contains("not active"));

    // Wrong client secret: the broker's problem, not the caller's.
    config.membership = MembershipSource::Introspection {
        client_id: "layercrypt-broker".into(),
        client_secret: Zeroizing::new("wrong".into()),
    };
    let v = OidcVerifier::new(config);
    assert!(matches!(
        v.verify(&token).await,
        Err(AuthError::Unavailable(_))
    ));
}

#[tokio::test]
async fn userinfo_refusal_is_invalid() {
    let p = Provider::start();
    let v = OidcVerifier::new(p.config());
    let stale = p
        .mint(json!({"sub": "alice", "claims": {"exp": now() - 30}}))
        .await;
    assert!(reason(v.verify(&stale).await).contains("userinfo refused"));
}

#[tokio::test]
async fn device_flow_token_from_the_provider_verifies() {
    let p = Provider::start();
    p.post(
        "/test/users",
        json!({"sub": "carol@egi.eu", "entitlements": [VO]}),
    )
    .await;
    let form = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| format!("{k}={}", v.replace(' ', "+").replace(':', "%3A")))
            .collect::<Vec<_>>()
            .join("&")
    };
    let post_form = |url: String, body: String| {
        let http = p.http.clone();
        async move {
            let resp = http
                .post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .expect("reachable");
            serde_json::from_slice::<Value>(&resp.bytes().await.expect("body")).expect("json")
        }
    };
    let oidc = format!("{}/protocol/openid-connect", p.issuer);
    let device = post_form(
        format!("{oidc}/auth/device"),
        form(&[
            ("client_id", "layercrypt-cli"),
            ("scope", "openid offline_access eduperson_entitlement"),
        ]),
    )
    .await;
    let user_code = device["user_code"].as_str().expect("user_code");
    let device_code = device["device_code"].as_str().expect("device_code");
    p.post(
        "/test/device/approve",
        json!({"user_code": user_code, "sub": "carol@egi.eu"}),
    )
    .await;
    let tokens = post_form(
        format!("{oidc}/token"),
        form(&[
            ("client_id", "layercrypt-cli"),
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("device_code", device_code),
        ]),
    )
    .await;
    assert!(tokens["refresh_token"].is_string(), "{tokens}");
    let token = Token::new(tokens["access_token"].as_str().expect("access_token"));
    let id = OidcVerifier::new(p.config())
        .verify(&token)
        .await
        .expect("provider's token verifies");
    assert_eq!(id.subject.as_deref(), Some("carol@egi.eu"));
    assert_eq!(id.entitlements, vec![VO.to_owned()]);
}

/// The broker's public URL in the audience tests (what `server.rs` puts in
/// `audience_names` when neither `oidc.audience` nor `oidc.client_id` is set).
const BROKER_URL: &str = "https://broker.example.org";

/// The verifier configurations a broker can run with, as `server.rs` builds them.
fn audience_configs(p: &Provider) -> Vec<(&'static str, OidcConfig)> {
    let mut default = p.config();
    default.audience_names = vec![BROKER_URL.into()];
    let mut client_id = p.config();
    client_id.audience_names = vec!["layercrypt-broker".into()];
    client_id.membership = MembershipSource::Introspection {
        client_id: "layercrypt-broker".into(),
        client_secret: Zeroizing::new("broker-secret".into()),
    };
    let mut required = p.config();
    required.audience = Some(BROKER_URL.into());
    let mut any_client = default.clone();
    any_client.allowed_clients = ClientPolicy::Any;
    vec![
        ("default (public URL)", default),
        ("library default (no names)", p.config()),
        ("client id, introspection", client_id),
        ("audience required", required),
        ("any client", any_client),
    ]
}

/// Regression (issue 8 item 5): with no audience configured, `aud` was not checked at all,
/// so a token minted for another service unwrapped.
#[tokio::test]
async fn aud_present_must_name_this_broker_in_every_configuration() {
    let p = Provider::start();
    let mint = |aud: Value| p.mint(json!({"sub": "alice", "entitlements": [VO], "aud": aud}));
    let other = [
        mint(json!("https://other.example.org")).await,
        mint(json!(["https://other.example.org", "account"])).await,
        mint(json!("https://broker.example.org.evil.example")).await,
        mint(json!("https://broker.example.org:8443")).await,
        mint(json!([])).await,
    ];
    let absent = p.mint(json!({"sub": "alice", "entitlements": [VO]})).await;
    let to_url = [
        mint(json!(BROKER_URL)).await,
        mint(json!("https://Broker.Example.org:443/")).await,
        mint(json!(["https://other.example.org", BROKER_URL])).await,
    ];
    let to_client = mint(json!("layercrypt-broker")).await;
    for (name, config) in audience_configs(&p) {
        let v = OidcVerifier::new(config.clone());
        for t in &other {
            let r = reason(v.verify(t).await);
            assert!(r.contains("aud"), "{name}: {r}");
        }
        let required = config.audience.is_some();
        match v.verify(&absent).await {
            Ok(id) => assert!(!required, "{name}: {id:?}"),
            Err(e) => assert!(required, "{name}: aud absent refused: {e}"),
        }
        let names_url = config.audience.is_some() || config.audience_names == [BROKER_URL];
        for t in &to_url {
            assert_eq!(v.verify(t).await.is_ok(), names_url, "{name}");
        }
        let names_client = config.audience_names == ["layercrypt-broker"];
        assert_eq!(v.verify(&to_client).await.is_ok(), names_client, "{name}");
    }
}

/// Regression (issue 8 item 5): a token that another relying party obtained (its `azp`) was
/// accepted; now only `oidc.allowed_clients` (default: the CLI and oidc-agent).
#[tokio::test]
async fn azp_must_be_an_allowed_client_in_every_configuration() {
    let p = Provider::start();
    let mint =
        |claims: Value| p.mint(json!({"sub": "alice", "entitlements": [VO], "claims": claims}));
    let cli = mint(json!({})).await;
    let agent = mint(json!({"azp": "oidc-agent"})).await;
    let agent_by_client_id = mint(json!({"azp": null, "client_id": "oidc-agent"})).await;
    let other_rp = mint(json!({"azp": "some-other-service"})).await;
    let other_rp_to_broker = mint(json!({"azp": "some-other-service", "aud": BROKER_URL})).await;
    let no_client = mint(json!({"azp": null})).await;
    for (name, config) in audience_configs(&p) {
        if config.audience.is_some() {
            continue; // every token here lacks aud: covered above
        }
        let v = OidcVerifier::new(config.clone());
        let any = config.allowed_clients == ClientPolicy::Any;
        for t in [&cli, &agent, &agent_by_client_id] {
            v.verify(t)
                .await
                .unwrap_or_else(|e| panic!("{name}: allowed client refused: {e}"));
        }
        for (what, t) in [("other RP", &other_rp), ("no client", &no_client)] {
            match v.verify(t).await {
                Ok(_) => assert!(any, "{name}: {what} accepted"),
                Err(e) => {
                    assert!(!any, "{name}: {what}: {e}");
                    assert!(e.to_string().contains("client"), "{name}: {e}");
                }
            }
        }
        if config.audience_names == [BROKER_URL] {
            assert_eq!(v.verify(&other_rp_to_broker).await.is_ok(), any, "{name}");
        }
    }
}

/// What introspection says about the token is checked like its own claims: another client
/// or audience in the answer makes the token invalid.
#[tokio::test]
async fn introspection_answer_aud_and_client_checked() {
    let p = Provider::start();
    let mut config = p.config();
    config.audience_names = vec!["layercrypt-broker".into()];
    config.membership = MembershipSource::Introspection {
        client_id: "layercrypt-broker".into(),
        client_secret: Zeroizing::new("broker-secret".into()),
    };
    let v = OidcVerifier::new(config);
    for (sub, answer, why) in [
        ("rp", json!({"client_id": "some-other-service"}), "client"),
        ("aud", json!({"aud": "https://other.example.org"}), "aud"),
    ] {
        p.post(
            "/test/users",
            json!({"sub": sub, "entitlements": [VO], "introspection": answer}),
        )
        .await;
        let t = p.mint(json!({"sub": sub})).await;
        let r = reason(v.verify(&t).await);
        assert!(r.contains("introspection") && r.contains(why), "{r}");
    }
    let ok = p.mint(json!({"sub": "alice", "entitlements": [VO]})).await;
    v.verify(&ok).await.expect("control");
}

/// Regression (issue 8 item 11): every `ready()` (unauthenticated `/readyz`) fetched
/// discovery and the JWKS from the issuer.
#[tokio::test]
async fn readiness_comes_from_cached_state() {
    let p = Provider::start();
    let v = OidcVerifier::new(p.config());
    for _ in 0..50 {
        assert!(v.ready().await);
    }
    assert!(
        p.stat("discovery").await <= 1 && p.stat("jwks").await <= 1,
        "50 ready() calls: {}",
        p.get("/test/stats").await
    );
    // Concurrent calls on a cold verifier: one probe between them.
    let cold = OidcVerifier::new(p.config());
    let before = (p.stat("discovery").await, p.stat("jwks").await);
    let all = futures_util::future::join_all((0..50).map(|_| cold.ready())).await;
    assert!(all.iter().any(|ok| *ok), "{all:?}");
    let after = (p.stat("discovery").await, p.stat("jwks").await);
    assert!(
        after.0 - before.0 <= 1 && after.1 - before.1 <= 1,
        "{before:?} -> {after:?}"
    );
    // A verifier that just fetched the JWKS for a token is ready without any request.
    let warm = OidcVerifier::new(p.config());
    let t = p.mint(json!({"sub": "alice", "entitlements": [VO]})).await;
    warm.verify(&t).await.expect("valid");
    let before = p.get("/test/stats").await;
    assert!(warm.ready().await);
    assert_eq!(p.get("/test/stats").await, before);
}

/// The stand-in's first line of stdout, or an empty string if it printed nothing within 30 s
/// (it is then killed): a stalled start must fail or be retried, never hang the suite.
fn first_line_within_30s(child: &Child, reader: &mut impl std::io::BufRead) -> String {
    let pid = child.id().to_string();
    let (done, waiting) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
            waiting.recv_timeout(std::time::Duration::from_secs(30))
        {
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid])
                .status();
        }
    });
    let mut line = String::new();
    let _ = reader.read_line(&mut line);
    let _ = done.send(());
    line
}
