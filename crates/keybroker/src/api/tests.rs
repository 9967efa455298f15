//! HTTP tests of the router with an in-memory key store and a table-driven token verifier
//! (the real stores and verifiers have their own suites; end-to-end tests come after merge).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderMap, Method as HttpMethod, Request, StatusCode};
use axum::Router;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use http_body_util::BodyExt as _;
use layercrypt_proto::payload::{GroupName, GroupPayload};
use serde_json::{json, Value};
use time::OffsetDateTime;
use tower::ServiceExt as _;
use zeroize::Zeroizing;

use super::{router, ApiOptions, AppState};
use crate::auth::{AuthError, Identity, Method, Token, TokenVerifier};
use crate::model::{AuditEvent, AuditQuery, Grant, Group, KeyVersion};
use crate::service::{Broker, BrokerSettings};
use crate::store::{KeyStore, NewKey, SecretIdentity, StoreError, StoreResult};

const BROKER: &str = "https://broker.test";
const ADMIN_ENT: &str = "urn:mace:egi.eu:group:broker-admins:role=member#aai.egi.eu";
const BOOTSTRAP: &str = "bootstrap-secret-token";
const VO_PREFIX: &str = "urn:mace:egi.eu:group:vo.example.org:";
const MEMBER_ENT: &str = "urn:mace:egi.eu:group:vo.example.org:role=member#aai.egi.eu";
const OPTS: &[u8] = br#"{"symkey":"c2VjcmV0","cipheroptions":{"nonce":"bm9uY2U="}}"#;

/// A group and its secret identities by version.
type Entry = (Group, BTreeMap<u32, String>);

/// Test-only key store in memory; `fail` makes every call unavailable.
#[derive(Default)]
struct MemStore {
    groups: Mutex<BTreeMap<GroupName, Entry>>,
    audit: Mutex<Vec<AuditEvent>>,
    fail: AtomicBool,
}

impl MemStore {
    fn check(&self) -> StoreResult<()> {
        if self.fail.load(Ordering::SeqCst) {
            Err(StoreError::Unavailable("test store is down".into()))
        } else {
            Ok(())
        }
    }
    fn events(&self) -> Vec<AuditEvent> {
        self.audit.lock().expect("lock").clone()
    }
}

#[async_trait]
impl KeyStore for MemStore {
    async fn create_group(&self, name: &GroupName, key: NewKey) -> StoreResult<Group> {
        self.check()?;
        let mut groups = self.groups.lock().expect("lock");
        if groups.contains_key(name) {
            return Err(StoreError::GroupExists(name.to_string()));
        }
        let now = OffsetDateTime::now_utc();
        let group = Group {
            name: name.clone(),
            current_version: 1,
            versions: vec![KeyVersion {
                version: 1,
                recipient: key.recipient,
                created: now,
            }],
            grants: vec![],
            created: now,
        };
        groups.insert(
            name.clone(),
            (
                group.clone(),
                BTreeMap::from([(1, key.identity.to_string())]),
            ),
        );
        Ok(group)
    }
    async fn group(&self, name: &GroupName) -> StoreResult<Option<Group>> {
        self.check()?;
        Ok(self
            .groups
            .lock()
            .expect("lock")
            .get(name)
            .map(|(g, _)| g.clone()))
    }
    async fn groups(&self) -> StoreResult<Vec<Group>> {
        self.check()?;
        Ok(self
            .groups
            .lock()
            .expect("lock")
            .values()
            .map(|(g, _)| g.clone())
            .collect())
    }
    async fn delete_group(&self, name: &GroupName) -> StoreResult<bool> {
        self.check()?;
        Ok(self.groups.lock().expect("lock").remove(name).is_some())
    }
    async fn add_grant(&self, name: &GroupName, grant: Grant) -> StoreResult<Group> {
        self.check()?;
        let mut groups = self.groups.lock().expect("lock");
        let (g, _) = groups
            .get_mut(name)
            .ok_or_else(|| StoreError::NoSuchGroup(name.to_string()))?;
        g.grants.push(grant);
        Ok(g.clone())
    }
    async fn remove_grant(&self, name: &GroupName, grant_id: &str) -> StoreResult<bool> {
        self.check()?;
        let mut groups = self.groups.lock().expect("lock");
        let (g, _) = groups
            .get_mut(name)
            .ok_or_else(|| StoreError::NoSuchGroup(name.to_string()))?;
        let before = g.grants.len();
        g.grants.retain(|x| x.id != grant_id);
        Ok(g.grants.len() != before)
    }
    async fn rotate(&self, name: &GroupName, key: NewKey) -> StoreResult<Group> {
        self.check()?;
        let mut groups = self.groups.lock().expect("lock");
        let (g, keys) = groups
            .get_mut(name)
            .ok_or_else(|| StoreError::NoSuchGroup(name.to_string()))?;
        let version = g.current_version + 1;
        g.versions.push(KeyVersion {
            version,
            recipient: key.recipient,
            created: OffsetDateTime::now_utc(),
        });
        g.current_version = version;
        keys.insert(version, key.identity.to_string());
        Ok(g.clone())
    }
    async fn identity(
        &self,
        name: &GroupName,
        version: u32,
    ) -> StoreResult<Option<SecretIdentity>> {
        self.check()?;
        let groups = self.groups.lock().expect("lock");
        Ok(groups
            .get(name)
            .and_then(|(_, k)| k.get(&version))
            .map(|s| Zeroizing::new(s.clone())))
    }
    async fn append_audit(&self, event: &AuditEvent) -> StoreResult<()> {
        self.check()?;
        self.audit.lock().expect("lock").push(event.clone());
        Ok(())
    }
    async fn audit(&self, query: &AuditQuery) -> StoreResult<Vec<AuditEvent>> {
        self.check()?;
        let events = self.events();
        let mut out: Vec<_> = events
            .into_iter()
            .filter(|e| {
                query
                    .group
                    .as_ref()
                    .is_none_or(|g| e.group.as_ref() == Some(g))
            })
            .filter(|e| {
                query
                    .subject
                    .as_ref()
                    .is_none_or(|s| e.subject.as_ref() == Some(s) || e.dn.as_ref() == Some(s))
            })
            .collect();
        let limit = query.limit.unwrap_or(1000);
        if out.len() > limit {
            out.drain(..out.len() - limit);
        }
        Ok(out)
    }
    async fn ready(&self) -> StoreResult<()> {
        self.check()
    }
}

/// Test-only token verifier: a table of token → identity.
struct TableVerifier(HashMap<&'static str, Identity>);

#[async_trait]
impl TokenVerifier for TableVerifier {
    async fn verify(&self, token: &Token) -> Result<Identity, AuthError> {
        if token.expose_secret() == "issuer-down" {
            return Err(AuthError::Unavailable("jwks unreachable".into()));
        }
        self.0
            .get(token.expose_secret())
            .cloned()
            .ok_or_else(|| AuthError::Invalid("unknown token".into()))
    }
    async fn ready(&self) -> bool {
        true
    }
}

fn token_identity(sub: &str, ents: &[&str]) -> Identity {
    Identity {
        method: Method::Token,
        subject: Some(sub.into()),
        dn: None,
        entitlements: ents.iter().map(|s| s.to_string()).collect(),
        expires_at: None,
    }
}

struct Harness {
    app: Router,
    store: Arc<MemStore>,
}

fn harness_with(options: ApiOptions) -> Harness {
    harness_at(BROKER, options)
}

/// A harness whose broker's `public_url` is `public_url` (as configured, not normalised).
fn harness_at(public_url: &str, options: ApiOptions) -> Harness {
    let store = Arc::new(MemStore::default());
    let tokens = TableVerifier(HashMap::from([
        ("member", token_identity("member@egi.eu", &[MEMBER_ENT])),
        (
            "outsider",
            token_identity(
                "outsider@egi.eu",
                &["urn:mace:egi.eu:group:other.org:role=member#aai.egi.eu"],
            ),
        ),
        ("admin", token_identity("admin@egi.eu", &[ADMIN_ENT])),
    ]));
    let broker = Broker::new(
        store.clone(),
        Arc::new(tokens),
        None,
        BrokerSettings {
            public_url: public_url.into(),
            admin_entitlement: Some(ADMIN_ENT.into()),
            admin_token: Some(Token::new(BOOTSTRAP)),
        },
    );
    Harness {
        app: router(AppState::new(broker, options)),
        store,
    }
}

fn harness() -> Harness {
    harness_with(ApiOptions::default())
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    fn error_code(&self) -> String {
        self.json()["error"].as_str().unwrap_or("").to_owned()
    }
}

impl Harness {
    async fn call(
        &self,
        method: HttpMethod,
        path: &str,
        token: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Reply {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        if body.is_some() {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        let mut req = req
            .body(body.map_or_else(Body::empty, Body::from))
            .expect("request");
        req.extensions_mut().insert(ConnectInfo(
            "192.0.2.10:40000".parse::<SocketAddr>().expect("addr"),
        ));
        let response = self.app.clone().oneshot(req).await.expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes()
            .to_vec();
        Reply {
            status,
            headers,
            body,
        }
    }

    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        self.call(
            HttpMethod::POST,
            path,
            token,
            Some(body.to_string().into_bytes()),
        )
        .await
    }

    async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.call(HttpMethod::GET, path, token, None).await
    }

    /// Creates `vo.example.org` with a prefix grant for the VO; returns its recipient.
    async fn setup_group(&self) -> String {
        let r = self
            .post(
                "/v1/admin/groups",
                Some(BOOTSTRAP),
                json!({"name":"vo.example.org"}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.json());
        let r = self
            .post(
                "/v1/admin/groups/vo.example.org/grants",
                Some(BOOTSTRAP),
                json!({"entitlement": VO_PREFIX, "prefix": true}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.json());
        assert!(r.json()["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("g-")));
        let r = self.get("/v1/groups/vo.example.org/recipient", None).await;
        assert_eq!(r.status, StatusCode::OK);
        r.json()["recipient"]
            .as_str()
            .expect("recipient")
            .to_owned()
    }
}

fn payload(broker: &str, group: &str, version: u32, recipient: &str, opts: &[u8]) -> String {
    let recipient: age::x25519::Recipient = recipient.parse().expect("recipient");
    let p = GroupPayload {
        broker: broker.into(),
        group: group.parse().expect("group"),
        version,
        age_ciphertext: age::encrypt(&recipient, opts).expect("encrypt"),
    };
    STANDARD.encode(p.to_bytes())
}

fn unwrap_body(payload: &str) -> Value {
    json!({"payload": payload, "layer_digest": "sha256:abc", "image": "docker://registry.test/x:1"})
}

#[tokio::test]
async fn member_gets_the_exact_optsdata_with_no_store() {
    let h = harness();
    let recipient = h.setup_group().await;
    let p = payload(BROKER, "vo.example.org", 1, &recipient, OPTS);
    let r = h.post("/v1/unwrap", Some("member"), unwrap_body(&p)).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.json());
    assert_eq!(
        r.headers.get(header::CACHE_CONTROL).expect("cache-control"),
        "no-store"
    );
    let opts = STANDARD
        .decode(r.json()["optsdata"].as_str().expect("optsdata"))
        .expect("base64");
    assert_eq!(opts, OPTS);
    let events = h.store.events();
    let last = events.last().expect("audited");
    assert_eq!(last.decision, crate::model::Decision::Allow);
    assert_eq!(last.subject.as_deref(), Some("member@egi.eu"));
    assert_eq!(last.group.as_deref(), Some("vo.example.org"));
    assert_eq!(last.key_version, Some(1));
    assert_eq!(last.layer_digest.as_deref(), Some("sha256:abc"));
    assert_eq!(last.client.as_deref(), Some("192.0.2.10"));
    assert!(last.reason.contains("by prefix"), "{}", last.reason);
}

#[tokio::test]
async fn non_member_is_forbidden_and_audited_with_the_reason() {
    let h = harness();
    let recipient = h.setup_group().await;
    let p = payload(BROKER, "vo.example.org", 1, &recipient, OPTS);
    let r = h
        .post("/v1/unwrap", Some("outsider"), unwrap_body(&p))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(
        r.json(),
        json!({"error":"forbidden","message":"not allowed"})
    );
    let last = h.store.events().pop().expect("audited");
    assert_eq!(last.decision, crate::model::Decision::Deny);
    assert_eq!(last.subject.as_deref(), Some("outsider@egi.eu"));
    assert_eq!(last.reason, "no grant matches the identity");
    // The admin reads it through the API.
    let r = h
        .get(
            "/v1/admin/audit?group=vo.example.org&subject=outsider%40egi.eu&limit=10",
            Some("admin"),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let events = r.json();
    assert_eq!(events.as_array().map(Vec::len), Some(1), "{events}");
    assert_eq!(events[0]["decision"], "deny");
    assert_eq!(events[0]["reason"], "no grant matches the identity");
}

#[tokio::test]
async fn no_or_invalid_token_is_401_and_audited() {
    let h = harness();
    let recipient = h.setup_group().await;
    let p = payload(BROKER, "vo.example.org", 1, &recipient, OPTS);
    for token in [None, Some("forged")] {
        let r = h.post("/v1/unwrap", token, unwrap_body(&p)).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(r.error_code(), "unauthenticated");
        assert_eq!(
            r.headers
                .get(header::WWW_AUTHENTICATE)
                .expect("www-authenticate"),
            "Bearer"
        );
        let last = h.store.events().pop().expect("audited");
        assert!(
            last.reason.starts_with("unauthenticated"),
            "{}",
            last.reason
        );
    }
    // A non-bearer scheme is no credential either; a body is not even read.
    let r = h
        .call(
            HttpMethod::POST,
            "/v1/unwrap",
            None,
            Some(b"not json".to_vec()),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn issuer_down_is_503() {
    let h = harness();
    let r = h
        .post("/v1/unwrap", Some("issuer-down"), json!({"payload":""}))
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.error_code(), "unavailable");
}

#[tokio::test]
async fn malformed_bodies_are_400() {
    let h = harness();
    h.setup_group().await;
    for body in [
        &b"{"[..],
        b"[]",
        br#"{"payload":1}"#,
        br#"{"payload":"x","extra":1}"#,
    ] {
        let r = h
            .call(
                HttpMethod::POST,
                "/v1/unwrap",
                Some("member"),
                Some(body.to_vec()),
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::BAD_REQUEST,
            "{}",
            String::from_utf8_lossy(body)
        );
        assert_eq!(r.error_code(), "bad_request");
    }
    // Not base64, not the payload JSON: 400 and audited.
    for p in ["***".to_owned(), STANDARD.encode(b"{}")] {
        let r = h
            .post("/v1/unwrap", Some("member"), json!({"payload": p}))
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            h.store.events().pop().expect("audited").decision,
            crate::model::Decision::Deny
        );
    }
    let r = h
        .post(
            "/v1/admin/groups",
            Some(BOOTSTRAP),
            json!({"name":"../etc"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = h
        .post(
            "/v1/admin/groups/vo.example.org/grants",
            Some(BOOTSTRAP),
            json!({"subject":"a","dn":"/CN=b"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = h
        .post(
            "/v1/admin/groups/vo.example.org/grants",
            Some(BOOTSTRAP),
            json!({"subject":"a","expires":"2001-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = h
        .post(
            "/v1/admin/groups/vo.example.org/grants",
            Some(BOOTSTRAP),
            json!({"subject":"a","networks":["x"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = h
        .get("/v1/admin/audit?since=yesterday", Some(BOOTSTRAP))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn oversized_body_is_413() {
    let h = harness();
    let big = json!({"payload": "A".repeat(super::MAX_BODY_LEN)});
    let r = h.post("/v1/unwrap", Some("member"), big.clone()).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.error_code(), "payload_too_large");
    let r = h
        .post(
            "/v1/admin/groups",
            Some(BOOTSTRAP),
            json!({"name": "A".repeat(super::MAX_BODY_LEN)}),
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn unknown_group_is_403_for_members_and_404_for_admins() {
    let h = harness();
    let recipient = h.setup_group().await;
    let p = payload(BROKER, "vo.unknown.org", 1, &recipient, OPTS);
    let r = h.post("/v1/unwrap", Some("member"), unwrap_body(&p)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(
        h.store.events().pop().expect("audited").reason,
        "group does not exist"
    );
    let r = h.post("/v1/unwrap", Some("admin"), unwrap_body(&p)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = h
        .get("/v1/admin/groups/vo.unknown.org", Some("admin"))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.error_code(), "not_found");
}

#[tokio::test]
async fn payload_for_another_broker_is_403() {
    let h = harness();
    let recipient = h.setup_group().await;
    let p = payload("https://evil.test", "vo.example.org", 1, &recipient, OPTS);
    let r = h.post("/v1/unwrap", Some("member"), unwrap_body(&p)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let reason = h.store.events().pop().expect("audited").reason;
    assert!(reason.contains("https://evil.test"), "{reason}");
    // A trailing slash is the same broker.
    let p = payload(&format!("{BROKER}/"), "vo.example.org", 1, &recipient, OPTS);
    assert_eq!(
        h.post("/v1/unwrap", Some("member"), unwrap_body(&p))
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn broker_urls_are_compared_in_their_normal_form() {
    // The CLI writes the normal form (lower-case host, no default port, no trailing slash);
    // a broker configured with another spelling of its own URL must still accept it.
    let h = harness_at("HTTPS://Broker.TEST:443/", ApiOptions::default());
    let recipient = h.setup_group().await;
    for spelling in [
        "https://broker.test",
        "https://BROKER.test:443",
        "https://broker.test./",
    ] {
        let p = payload(spelling, "vo.example.org", 1, &recipient, OPTS);
        let r = h.post("/v1/unwrap", Some("member"), unwrap_body(&p)).await;
        assert_eq!(r.status, StatusCode::OK, "{spelling}: {:?}", r.json());
    }
    for other in [
        "https://broker.test:8443",
        "http://broker.test",
        "https://broker.test.evil",
    ] {
        let p = payload(other, "vo.example.org", 1, &recipient, OPTS);
        let r = h.post("/v1/unwrap", Some("member"), unwrap_body(&p)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{other}");
    }
    // The recipient route tells clients the normal form.
    let r = h.get("/v1/groups/vo.example.org/recipient", None).await;
    assert_eq!(r.json()["broker"], "https://broker.test");
}

#[tokio::test]
async fn admin_routes_refuse_non_admins_and_the_unauthenticated() {
    let h = harness();
    h.setup_group().await;
    let routes: [(HttpMethod, &str, Option<Value>); 8] = [
        (
            HttpMethod::POST,
            "/v1/admin/groups",
            Some(json!({"name":"x"})),
        ),
        (HttpMethod::GET, "/v1/admin/groups", None),
        (HttpMethod::GET, "/v1/admin/groups/vo.example.org", None),
        (HttpMethod::DELETE, "/v1/admin/groups/vo.example.org", None),
        (
            HttpMethod::POST,
            "/v1/admin/groups/vo.example.org/grants",
            Some(json!({"subject":"x"})),
        ),
        (
            HttpMethod::DELETE,
            "/v1/admin/groups/vo.example.org/grants/g-1",
            None,
        ),
        (
            HttpMethod::POST,
            "/v1/admin/groups/vo.example.org/rotate",
            None,
        ),
        (HttpMethod::GET, "/v1/admin/audit", None),
    ];
    for (method, path, body) in routes {
        let body = body.map(|b| b.to_string().into_bytes());
        let r = h
            .call(method.clone(), path, Some("member"), body.clone())
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{method} {path}");
        let r = h.call(method.clone(), path, None, body).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{method} {path}");
    }
    // Nothing changed.
    let r = h
        .get("/v1/admin/groups/vo.example.org", Some(BOOTSTRAP))
        .await;
    assert_eq!(r.json()["current_version"], 1);
}

#[tokio::test]
async fn bootstrap_token_and_admin_entitlement_manage_groups() {
    let h = harness();
    h.setup_group().await;
    let r = h
        .post(
            "/v1/admin/groups",
            Some("admin"),
            json!({"name":"vo.example.org"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let r = h.get("/v1/admin/groups", Some("admin")).await;
    assert_eq!(r.status, StatusCode::OK);
    let groups = r.json();
    assert_eq!(groups[0]["name"], "vo.example.org");
    assert!(
        !r.body.windows(16).any(|w| w == b"AGE-SECRET-KEY-1"),
        "private keys are never returned"
    );
    let grant_id = groups[0]["grants"][0]["id"]
        .as_str()
        .expect("grant id")
        .to_owned();
    let path = format!("/v1/admin/groups/vo.example.org/grants/{grant_id}");
    assert_eq!(
        h.call(HttpMethod::DELETE, &path, Some(BOOTSTRAP), None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        h.call(HttpMethod::DELETE, &path, Some(BOOTSTRAP), None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let r = h
        .post(
            "/v1/admin/groups/vo.example.org/grants",
            Some(BOOTSTRAP),
            json!({"dn":"/DC=eu/DC=rcauth/CN=Jane","networks":["2001:db8::/32"],"expires":"2999-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.json()["networks"], json!(["2001:db8::/32"]));
    assert_eq!(r.json()["expires"], "2999-01-01T00:00:00Z");
    let r = h
        .call(
            HttpMethod::DELETE,
            "/v1/admin/groups/vo.example.org",
            Some(BOOTSTRAP),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(
        h.get("/v1/groups/vo.example.org/recipient", None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    // A wrong bootstrap token is just an invalid token.
    let r = h
        .get("/v1/admin/groups", Some("bootstrap-secret-tokeN"))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn rotate_then_old_payload_still_unwraps() {
    let h = harness();
    let v1 = h.setup_group().await;
    let old = payload(BROKER, "vo.example.org", 1, &v1, OPTS);
    let r = h
        .call(
            HttpMethod::POST,
            "/v1/admin/groups/vo.example.org/rotate",
            Some(BOOTSTRAP),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["current_version"], 2);
    let r = h.get("/v1/groups/vo.example.org/recipient", None).await;
    assert_eq!(r.json()["version"], 2);
    assert_eq!(r.json()["broker"], BROKER);
    let v2 = r.json()["recipient"]
        .as_str()
        .expect("recipient")
        .to_owned();
    assert_ne!(v1, v2);
    let r = h
        .post("/v1/unwrap", Some("member"), unwrap_body(&old))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        STANDARD
            .decode(r.json()["optsdata"].as_str().expect("optsdata"))
            .expect("b64"),
        OPTS
    );
    let new = payload(BROKER, "vo.example.org", 2, &v2, b"{}");
    assert_eq!(
        h.post("/v1/unwrap", Some("member"), unwrap_body(&new))
            .await
            .status,
        StatusCode::OK
    );
    // A payload naming version 1 but encrypted to version 2 does not decrypt: denied, audited.
    let wrong = payload(BROKER, "vo.example.org", 1, &v2, b"{}");
    assert_eq!(
        h.post("/v1/unwrap", Some("member"), unwrap_body(&wrong))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let reason = h.store.events().pop().expect("audited").reason;
    assert!(reason.contains("does not decrypt"), "{reason}");
}

#[tokio::test]
async fn rate_limit_is_429_per_subject() {
    let h = harness_with(ApiOptions {
        rate_per_minute: 1,
        rate_burst: 2,
        ..ApiOptions::default()
    });
    let recipient = h.setup_group().await; // the bootstrap admin's two requests, plus a GET
    let p = payload(BROKER, "vo.example.org", 1, &recipient, OPTS);
    assert_eq!(
        h.post("/v1/unwrap", Some("member"), unwrap_body(&p))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        h.post("/v1/unwrap", Some("member"), unwrap_body(&p))
            .await
            .status,
        StatusCode::OK
    );
    let r = h.post("/v1/unwrap", Some("member"), unwrap_body(&p)).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.error_code(), "rate_limited");
    assert!(r.headers.contains_key(header::RETRY_AFTER));
    // Another subject has its own bucket.
    assert_eq!(
        h.post("/v1/unwrap", Some("outsider"), unwrap_body(&p))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    // The bootstrap admin is not limited: its set-up requests used more than the burst, and
    // it goes on.
    for _ in 0..5 {
        assert_eq!(
            h.get("/v1/admin/groups", Some(BOOTSTRAP)).await.status,
            StatusCode::OK
        );
    }
}

#[tokio::test]
async fn store_error_is_503() {
    let h = harness();
    let recipient = h.setup_group().await;
    let p = payload(BROKER, "vo.example.org", 1, &recipient, OPTS);
    h.store.fail.store(true, Ordering::SeqCst);
    let r = h.post("/v1/unwrap", Some("member"), unwrap_body(&p)).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.json()["error"], "unavailable");
    assert!(
        !r.json()["message"]
            .as_str()
            .unwrap_or("")
            .contains("test store"),
        "cause is not shown"
    );
    assert_eq!(
        h.get("/v1/groups/vo.example.org/recipient", None)
            .await
            .status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        h.get("/v1/admin/groups", Some(BOOTSTRAP)).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        h.get("/readyz", None).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    h.store.fail.store(false, Ordering::SeqCst);
    assert_eq!(h.get("/readyz", None).await.status, StatusCode::OK);
}

#[tokio::test]
async fn ops_routes_and_metrics() {
    // Requests come from 192.0.2.10: metrics must be public for it to read them.
    let h = harness_with(ApiOptions {
        metrics: super::MetricsExposure::Public,
        ..ApiOptions::default()
    });
    let recipient = h.setup_group().await;
    let p = payload(BROKER, "vo.example.org", 1, &recipient, OPTS);
    h.post("/v1/unwrap", Some("member"), unwrap_body(&p)).await;
    h.post("/v1/unwrap", Some("outsider"), unwrap_body(&p))
        .await;
    assert_eq!(h.get("/healthz", None).await.status, StatusCode::OK);
    let r = h.get("/metrics", None).await;
    assert_eq!(r.status, StatusCode::OK);
    let text = String::from_utf8(r.body).expect("utf-8");
    assert!(
        text.contains(
            r#"layercrypt_broker_http_requests_total{route="/v1/unwrap",status="200"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"layercrypt_broker_unwrap_decisions_total{decision="deny"} 1"#),
        "{text}"
    );
    assert!(
        text.contains("layercrypt_broker_http_request_duration_seconds_bucket"),
        "{text}"
    );
    let r = h.get("/no/such/route", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.error_code(), "not_found");
    // /dev/token exists only in --dev mode.
    assert_eq!(
        h.post("/dev/token", None, json!({"sub":"x"})).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn recreated_group_does_not_open_payloads_of_the_deleted_one() {
    // The broker keeps unsealed group keys in memory after the first unwrap; a group deleted
    // and created again under the same name must not meet the old key through that cache.
    let h = harness();
    let v1 = h.setup_group().await;
    let old = payload(BROKER, "vo.example.org", 1, &v1, OPTS);
    let r = h
        .post("/v1/unwrap", Some("member"), unwrap_body(&old))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.json());
    let r = h
        .call(
            HttpMethod::DELETE,
            "/v1/admin/groups/vo.example.org",
            Some(BOOTSTRAP),
            None,
        )
        .await;
    assert!(r.status.is_success(), "{}", r.status);
    // Deleted: refused, though the key was cached.
    let r = h
        .post("/v1/unwrap", Some("member"), unwrap_body(&old))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let again = h.setup_group().await;
    assert_ne!(again, v1);
    let r = h
        .post("/v1/unwrap", Some("member"), unwrap_body(&old))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let reason = h.store.events().pop().expect("audited").reason;
    assert!(reason.contains("does not decrypt"), "{reason}");
    // The new key works.
    let new = payload(BROKER, "vo.example.org", 1, &again, OPTS);
    let r = h
        .post("/v1/unwrap", Some("member"), unwrap_body(&new))
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

/// A GET from `peer` (None: no peer address known).
async fn get_from(h: &Harness, path: &str, peer: Option<&str>) -> StatusCode {
    let mut req = Request::builder()
        .uri(path)
        .body(Body::empty())
        .expect("request");
    if let Some(peer) = peer {
        req.extensions_mut()
            .insert(ConnectInfo(peer.parse::<SocketAddr>().expect("addr")));
    }
    h.app
        .clone()
        .oneshot(req)
        .await
        .expect("infallible")
        .status()
}

#[tokio::test]
async fn metrics_loopback_only_by_default_public_or_off_when_configured() {
    use super::MetricsExposure;
    let h = harness();
    for (peer, want) in [
        (Some("127.0.0.1:5000"), StatusCode::OK),
        (Some("127.8.9.10:5000"), StatusCode::OK),
        (Some("[::1]:5000"), StatusCode::OK),
        (Some("[::ffff:127.0.0.1]:5000"), StatusCode::OK),
        (Some("192.0.2.10:5000"), StatusCode::NOT_FOUND),
        (Some("[::ffff:192.0.2.10]:5000"), StatusCode::NOT_FOUND),
        (Some("[2001:db8::1]:5000"), StatusCode::NOT_FOUND),
        (None, StatusCode::NOT_FOUND),
    ] {
        assert_eq!(get_from(&h, "/metrics", peer).await, want, "{peer:?}");
    }
    let off = harness_with(ApiOptions {
        metrics: MetricsExposure::Off,
        ..ApiOptions::default()
    });
    assert_eq!(
        get_from(&off, "/metrics", Some("127.0.0.1:5000")).await,
        StatusCode::NOT_FOUND
    );
    let public = harness_with(ApiOptions {
        metrics: MetricsExposure::Public,
        ..ApiOptions::default()
    });
    assert_eq!(
        get_from(&public, "/metrics", Some("192.0.2.10:5000")).await,
        StatusCode::OK
    );
    // The other operations routes stay open to everyone.
    for path in ["/healthz", "/readyz"] {
        assert_eq!(
            get_from(&off, path, Some("192.0.2.10:5000")).await,
            StatusCode::OK
        );
    }
}

#[tokio::test]
async fn prefix_grant_not_ending_at_a_component_boundary_is_refused() {
    let h = harness();
    let r = h
        .post(
            "/v1/admin/groups",
            Some(BOOTSTRAP),
            json!({"name":"vo.example.org"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let grants = "/v1/admin/groups/vo.example.org/grants";
    // `…:vo.example.org` as a prefix would also match `…:vo.example.org.evil:…`.
    let bare = VO_PREFIX.trim_end_matches(':');
    let r = h
        .post(
            grants,
            Some(BOOTSTRAP),
            json!({"entitlement": bare, "prefix": true}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.json());
    assert_eq!(r.error_code(), "bad_request");
    let message = r.json()["message"].as_str().unwrap_or("").to_owned();
    assert!(
        message.contains("component boundary") && message.contains(&format!("{bare}:")),
        "the message says how to fix it: {message}"
    );
    for ok in [
        json!({"entitlement": VO_PREFIX, "prefix": true}),
        json!({"entitlement": format!("{bare}:role="), "prefix": true}),
        json!({"entitlement": bare}),
    ] {
        let r = h.post(grants, Some(BOOTSTRAP), ok.clone()).await;
        assert_eq!(r.status, StatusCode::CREATED, "{ok}: {:?}", r.json());
    }
}
