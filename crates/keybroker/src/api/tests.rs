//! HTTP tests of the router with an in-memory key store and a table-driven token verifier
//! (the real stores and verifiers have their own suites; end-to-end tests come after merge).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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
use crate::model::{
    AdminAction, AuditEvent, AuditKind, AuditQuery, Credential, Grant, Group, KeyVersion,
};
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
    /// Only audit writes fail.
    fail_audit: AtomicBool,
    /// Calls of `group()`.
    group_reads: AtomicUsize,
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
        self.group_reads.fetch_add(1, Ordering::SeqCst);
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
        if self.fail_audit.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("audit log is full".into()));
        }
        self.audit.lock().expect("lock").push(event.clone());
        Ok(())
    }
    async fn audit(&self, query: &AuditQuery) -> StoreResult<Vec<AuditEvent>> {
        self.check()?;
        let events = self.events();
        let mut out: Vec<_> = events
            .into_iter()
            .filter(|e| crate::store::embedded::audit_matches(e, query))
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
    state: AppState,
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
        BrokerSettings::new(
            public_url,
            Some(ADMIN_ENT.into()),
            Some(Token::new(BOOTSTRAP)),
        ),
    );
    let state = AppState::new(broker, options);
    Harness {
        app: router(state.clone()),
        state,
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
        self.call_from("192.0.2.10:40000", &[], method, path, token, body)
            .await
    }

    /// [`Harness::call`] from the TCP peer `peer`.
    async fn call_from(
        &self,
        peer: &str,
        headers: &[(&'static str, &str)],
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
        for (name, value) in headers {
            req.headers_mut().insert(
                axum::http::HeaderName::from_static(name),
                value.parse().expect("header value"),
            );
        }
        req.extensions_mut()
            .insert(ConnectInfo(peer.parse::<SocketAddr>().expect("addr")));
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
    // A group whose recipient is not cached (setup_group read vo.example.org's).
    assert_eq!(
        h.get("/v1/groups/other.example.org/recipient", None)
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

/// Options with a small failure burst, to see the per-address limit quickly.
fn strict() -> ApiOptions {
    ApiOptions {
        auth_fail_per_minute: 1,
        auth_fail_burst: 5,
        ..ApiOptions::default()
    }
}

fn unauthenticated(events: &[AuditEvent]) -> Vec<&AuditEvent> {
    events
        .iter()
        .filter(|e| e.kind == AuditKind::Unauthenticated)
        .collect()
}

/// Regression (issue 8 item 2): 16k unauthenticated unwraps from one client were 16k 401s
/// and 16k fsynced audit records. Now: 429 after the failure burst, whatever the forwarding
/// headers say, and two records (the first in full, one summary) for the whole flood.
#[tokio::test]
async fn unauthenticated_flood_is_429_after_the_burst_and_audited_in_aggregate() {
    let h = harness_with(strict());
    let body = br#"{"payload":"eA=="}"#.to_vec();
    let mut statuses = Vec::new();
    for i in 0..300 {
        // Every request claims another origin: the TCP peer is what counts.
        let xff = format!("198.51.100.{}", i % 250);
        let r = h
            .call_from(
                "192.0.2.66:5000",
                &[("x-forwarded-for", &xff), ("x-real-ip", &xff)],
                HttpMethod::POST,
                "/v1/unwrap",
                Some("forged"),
                Some(body.clone()),
            )
            .await;
        statuses.push(r.status.as_u16());
    }
    assert_eq!(statuses[..5], [401; 5]);
    assert!(statuses[5..].iter().all(|&s| s == 429), "{statuses:?}");
    // One record in full so far; the rest is counted.
    let events = h.store.events();
    let refused = unauthenticated(&events);
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].client.as_deref(), Some("192.0.2.66"));
    assert!(
        refused[0]
            .reason
            .starts_with("unauthenticated (POST /v1/unwrap)"),
        "{}",
        refused[0].reason
    );
    // Another client is not affected by this one's failures.
    let r = h
        .call_from(
            "192.0.2.67:5000",
            &[],
            HttpMethod::POST,
            "/v1/unwrap",
            Some("forged"),
            Some(body.clone()),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // At shutdown (or when the window closes) the rest becomes one summary per client.
    assert_eq!(h.state.broker().flush_denials(true).await, 1);
    let events = h.store.events();
    let refused = unauthenticated(&events);
    assert_eq!(refused.len(), 3, "{refused:?}");
    let summary = refused.iter().find(|e| e.count.is_some()).expect("summary");
    assert_eq!(
        summary.count,
        Some(299),
        "nothing lost: 300 refusals, 1 in full"
    );
    assert_eq!(summary.client.as_deref(), Some("192.0.2.66"));
    assert!(summary.until.is_some());
}

/// IPv6 clients are limited by /64: a new address in the same /64 gets no fresh bucket.
#[tokio::test]
async fn ipv6_clients_are_limited_per_64() {
    let h = harness_with(strict());
    let mut statuses = Vec::new();
    for i in 0..10u16 {
        let peer = format!("[2001:db8:7:7:{i:x}::1]:443");
        let r = h
            .call_from(
                &peer,
                &[],
                HttpMethod::GET,
                "/v1/admin/groups",
                Some("guess"),
                None,
            )
            .await;
        statuses.push(r.status.as_u16());
    }
    assert_eq!(statuses, [401, 401, 401, 401, 401, 429, 429, 429, 429, 429]);
    let r = h
        .call_from(
            "[2001:db8:7:8::1]:443",
            &[],
            HttpMethod::GET,
            "/v1/admin/groups",
            Some("guess"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "another /64");
}

/// Regression (issue 8 item 3): 2000 admin-token guesses in 0.3 s were neither limited nor
/// audited. Now the failure bucket stops them and they are on record.
#[tokio::test]
async fn admin_token_guessing_is_limited_and_audited() {
    let h = harness_with(strict());
    let mut limited = 0;
    for i in 0..200 {
        let guess = format!("guess-{i}");
        let r = h.get("/v1/admin/groups", Some(&guess)).await;
        match r.status {
            StatusCode::UNAUTHORIZED => assert!(i < 5, "guess {i} was checked"),
            StatusCode::TOO_MANY_REQUESTS => limited += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(limited, 195);
    // Even the right token waits once the address has used its failures up …
    assert_eq!(
        h.get("/v1/admin/groups", Some(BOOTSTRAP)).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    // … but not from elsewhere, and a success does not use the failure budget up.
    for _ in 0..10 {
        let r = h
            .call_from(
                "192.0.2.20:1",
                &[],
                HttpMethod::GET,
                "/v1/admin/groups",
                Some(BOOTSTRAP),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK);
    }
    h.state.broker().flush_denials(true).await;
    let events = h.store.events();
    let refused = unauthenticated(&events);
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert!(
        refused[0].reason.contains("GET /v1/admin/groups"),
        "{}",
        refused[0].reason
    );
    assert_eq!(refused[1].count, Some(200));
}

/// The per-address bucket counts every request before authentication, including the
/// public recipient route.
#[tokio::test]
async fn per_address_limit_applies_to_every_route() {
    let h = harness_with(ApiOptions {
        ip_rate_per_minute: 1,
        ip_rate_burst: 3,
        ..ApiOptions::default()
    });
    let statuses: Vec<u16> = futures_util::future::join_all(
        (0..6).map(|_| h.get("/v1/groups/vo.example.org/recipient", None)),
    )
    .await
    .iter()
    .map(|r| r.status.as_u16())
    .collect();
    assert_eq!(
        statuses.iter().filter(|&&s| s == 429).count(),
        3,
        "{statuses:?}"
    );
    h.state.broker().flush_denials(true).await;
    let events = h.store.events();
    assert_eq!(unauthenticated(&events).len(), 1, "one summary");
    assert_eq!(unauthenticated(&events)[0].count, Some(3));
}

/// Regression (issue 8 item 4): "grant myself, unwrap, revoke" showed as one allow. Every
/// admin action is now a record of kind `admin` (actor, action, target, change), and the
/// log filters by kind.
#[tokio::test]
async fn admin_actions_are_audited_and_filterable_by_kind() {
    let h = harness();
    let recipient = h.setup_group().await; // create + grant by the bootstrap token
    let r = h
        .post(
            "/v1/admin/groups/vo.example.org/grants",
            Some("admin"),
            json!({"subject": "outsider@egi.eu"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let grant_id = r.json()["id"].as_str().expect("id").to_owned();
    let p = payload(BROKER, "vo.example.org", 1, &recipient, OPTS);
    assert_eq!(
        h.post("/v1/unwrap", Some("outsider"), unwrap_body(&p))
            .await
            .status,
        StatusCode::OK
    );
    let r = h
        .call(
            HttpMethod::DELETE,
            &format!("/v1/admin/groups/vo.example.org/grants/{grant_id}"),
            Some("admin"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = h
        .post(
            "/v1/admin/groups/vo.example.org/rotate",
            Some("admin"),
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.json());
    let r = h
        .call(
            HttpMethod::DELETE,
            "/v1/admin/groups/vo.example.org",
            Some("admin"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    // A member trying an admin route is on record too.
    assert_eq!(
        h.get("/v1/admin/groups", Some("member")).await.status,
        StatusCode::FORBIDDEN
    );

    let r = h.get("/v1/admin/audit?kind=admin", Some("admin")).await;
    assert_eq!(r.status, StatusCode::OK);
    let events: Vec<AuditEvent> = serde_json::from_slice(&r.body).expect("events");
    let actions: Vec<Option<AdminAction>> = events.iter().map(|e| e.action).collect();
    assert_eq!(
        actions,
        [
            Some(AdminAction::CreateGroup),
            Some(AdminAction::AddGrant),
            Some(AdminAction::AddGrant),
            Some(AdminAction::RemoveGrant),
            Some(AdminAction::Rotate),
            Some(AdminAction::DeleteGroup),
            None,
        ]
    );
    assert!(events.iter().all(|e| e.kind == AuditKind::Admin));
    assert_eq!(events[0].credential, Some(Credential::BootstrapToken));
    assert_eq!(events[0].subject, None);
    let added = &events[2];
    assert_eq!(added.credential, Some(Credential::Token));
    assert_eq!(added.subject.as_deref(), Some("admin@egi.eu"));
    assert_eq!(added.client.as_deref(), Some("192.0.2.10"));
    assert_eq!(added.group.as_deref(), Some("vo.example.org"));
    assert_eq!(added.decision, crate::model::Decision::Allow);
    let grant = added.grant.as_ref().expect("the grant added");
    assert_eq!(grant.id, grant_id);
    assert_eq!(
        grant.principal,
        crate::model::Principal::Subject {
            subject: "outsider@egi.eu".into()
        }
    );
    assert_eq!(
        events[3].grant.as_ref().map(|g| g.id.as_str()),
        Some(grant_id.as_str())
    );
    assert_eq!(events[4].key_version, Some(2));
    assert!(
        events[4].reason.contains("from key version 1 to 2"),
        "{}",
        events[4].reason
    );
    assert!(events[5].reason.contains(&grant_id) || events[5].reason.contains("grants ["));
    assert_eq!(events[6].decision, crate::model::Decision::Deny);
    assert_eq!(events[6].subject.as_deref(), Some("member@egi.eu"));
    // The unwrap sits between grant and revoke in the full log.
    let r = h.get("/v1/admin/audit", Some("admin")).await;
    let all: Vec<AuditEvent> = serde_json::from_slice(&r.body).expect("events");
    let order: Vec<AuditKind> = all.iter().map(|e| e.kind).collect();
    assert_eq!(
        order[..5],
        [
            AuditKind::Admin,
            AuditKind::Admin,
            AuditKind::Admin,
            AuditKind::Unwrap,
            AuditKind::Admin
        ]
    );
    let r = h.get("/v1/admin/audit?kind=unwrap", Some("admin")).await;
    let unwraps: Vec<AuditEvent> = serde_json::from_slice(&r.body).expect("events");
    assert_eq!(unwraps.len(), 1);
    assert_eq!(unwraps[0].decision, crate::model::Decision::Allow);
    let r = h
        .get("/v1/admin/audit?kind=everything", Some("admin"))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.json()["message"]
        .as_str()
        .unwrap_or("")
        .contains("unwrap, unauthenticated, admin"));
}

/// No grant without its record: when the audit write fails, the grant is taken back and the
/// admin gets 503.
#[tokio::test]
async fn admin_action_fails_closed_when_it_cannot_be_audited() {
    let h = harness();
    h.setup_group().await;
    h.store.fail_audit.store(true, Ordering::SeqCst);
    let r = h
        .post(
            "/v1/admin/groups/vo.example.org/grants",
            Some(BOOTSTRAP),
            json!({"subject": "mallory@egi.eu"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    let r = h
        .post(
            "/v1/admin/groups",
            Some(BOOTSTRAP),
            json!({"name": "new.example.org"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    h.store.fail_audit.store(false, Ordering::SeqCst);
    let r = h
        .get("/v1/admin/groups/vo.example.org", Some(BOOTSTRAP))
        .await;
    let grants = r.json()["grants"].as_array().cloned().unwrap_or_default();
    assert_eq!(grants.len(), 1, "only the set-up grant: {grants:?}");
    assert_eq!(
        h.get("/v1/admin/groups/new.example.org", Some(BOOTSTRAP))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

/// Regression (issue 8 item 14): every unauthenticated recipient request read the store
/// (an OpenBao round trip). Now one read per TTL; rotation through this broker shows at once.
#[tokio::test]
async fn recipient_is_read_once_within_the_ttl_and_rotation_invalidates() {
    let h = harness();
    h.setup_group().await;
    let before = h.store.group_reads.load(Ordering::SeqCst);
    for _ in 0..50 {
        let r = h.get("/v1/groups/vo.example.org/recipient", None).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.json()["version"], 1);
    }
    let reads = h.store.group_reads.load(Ordering::SeqCst) - before;
    assert!(reads <= 1, "{reads} store reads for 50 requests");
    // Unknown groups are cached too (a flood of one bogus name is one read).
    let before = h.store.group_reads.load(Ordering::SeqCst);
    for _ in 0..20 {
        let r = h.get("/v1/groups/nope.example.org/recipient", None).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
    }
    assert_eq!(h.store.group_reads.load(Ordering::SeqCst) - before, 1);
    let r = h
        .post(
            "/v1/admin/groups/vo.example.org/rotate",
            Some(BOOTSTRAP),
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = h.get("/v1/groups/vo.example.org/recipient", None).await;
    assert_eq!(
        r.json()["version"],
        2,
        "rotation through this broker is seen at once"
    );
    let r = h
        .post(
            "/v1/admin/groups",
            Some(BOOTSTRAP),
            json!({"name": "nope.example.org"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = h.get("/v1/groups/nope.example.org/recipient", None).await;
    assert_eq!(r.status, StatusCode::OK, "creation is seen at once");
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
