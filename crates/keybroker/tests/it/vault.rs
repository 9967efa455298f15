//! The Vault/OpenBao store against a real OpenBao: the common suite with a token and with
//! AppRole, token expiry, outage and recovery, and concurrent writers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use layercrypt_keybroker::auth::{Identity, Method};
use layercrypt_keybroker::model::{AuditEvent, AuditKind, AuditQuery};
use layercrypt_keybroker::service::{Actor, Broker, BrokerSettings};
use layercrypt_keybroker::store::{KeyStore, StoreError, VaultAuth, VaultConfig, VaultStore};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::openbao::Bao;
use crate::store_suite::{concurrent_grants, grant, name, new_key, run_suite};

fn token_config(bao: &Bao) -> VaultConfig {
    VaultConfig::new(
        bao.addr(),
        VaultAuth::Token(Zeroizing::new(bao.token.clone())),
    )
}

#[tokio::test]
async fn suite_with_token() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let bao = Bao::dev(tmp.path()).await;
    let store = VaultStore::connect(token_config(&bao))
        .await
        .expect("connect");
    run_suite(&store).await;
}

/// Enables AppRole with a policy on the prefix only; returns (role_id, secret_id).
async fn approle(bao: &Bao, prefix: &str, token_ttl: &str) -> (String, String) {
    let (code, body) = bao
        .http(
            "POST",
            "/v1/sys/auth/approle",
            Some(r#"{"type":"approle"}"#),
        )
        .await;
    assert!(code == 204 || code == 200, "enable approle: {code} {body}");
    let policy = format!(
        r#"path "secret/data/{prefix}/*" {{ capabilities = ["create", "read", "update", "delete", "list"] }}
path "secret/metadata/{prefix}/*" {{ capabilities = ["read", "list", "delete"] }}
path "secret/metadata/{prefix}" {{ capabilities = ["list"] }}"#
    );
    let body = serde_json::json!({ "policy": policy }).to_string();
    let (code, resp) = bao
        .http("PUT", "/v1/sys/policies/acl/layercrypt-broker", Some(&body))
        .await;
    assert!(code == 204 || code == 200, "policy: {code} {resp}");
    let role = serde_json::json!({"token_policies": ["layercrypt-broker"], "token_ttl": token_ttl, "token_max_ttl": token_ttl})
        .to_string();
    let (code, resp) = bao
        .http("POST", "/v1/auth/approle/role/broker", Some(&role))
        .await;
    assert!(code == 204 || code == 200, "role: {code} {resp}");
    let (code, resp) = bao
        .http("GET", "/v1/auth/approle/role/broker/role-id", None)
        .await;
    assert_eq!(code, 200, "{resp}");
    let role_id = serde_json::from_str::<serde_json::Value>(&resp).expect("json")["data"]
        ["role_id"]
        .as_str()
        .expect("role_id")
        .to_owned();
    let (code, resp) = bao
        .http("POST", "/v1/auth/approle/role/broker/secret-id", Some("{}"))
        .await;
    assert_eq!(code, 200, "{resp}");
    let secret_id = serde_json::from_str::<serde_json::Value>(&resp).expect("json")["data"]
        ["secret_id"]
        .as_str()
        .expect("secret_id")
        .to_owned();
    (role_id, secret_id)
}

fn approle_config(bao: &Bao, role_id: &str, secret_id: &str, prefix: &str) -> VaultConfig {
    let mut config = VaultConfig::new(
        bao.addr(),
        VaultAuth::AppRole {
            role_id: role_id.to_owned(),
            secret_id: Zeroizing::new(secret_id.to_owned()),
            mount: "approle".into(),
        },
    );
    config.prefix = prefix.to_owned();
    config
}

#[tokio::test]
async fn suite_with_approle() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let bao = Bao::dev(tmp.path()).await;
    let (role_id, secret_id) = approle(&bao, "lc-approle", "1h").await;
    let store = VaultStore::connect(approle_config(&bao, &role_id, &secret_id, "lc-approle"))
        .await
        .expect("connect");
    run_suite(&store).await;

    // The policy covers the prefix only: a store on another prefix is refused (503, not a panic).
    let other = VaultStore::connect(approle_config(&bao, &role_id, &secret_id, "elsewhere"))
        .await
        .expect("connect");
    assert!(matches!(
        other.group(&name("vo.example.org")).await,
        Err(StoreError::Unavailable(_))
    ));

    // A wrong secret id fails at connect.
    let bad = VaultStore::connect(approle_config(
        &bao,
        &role_id,
        "not-the-secret",
        "lc-approle",
    ))
    .await;
    assert!(matches!(bad, Err(StoreError::Unavailable(_))));
}

#[tokio::test]
async fn approle_logs_in_again_after_the_token_expires() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let bao = Bao::dev(tmp.path()).await;
    let (role_id, secret_id) = approle(&bao, "layercrypt", "2s").await;
    let store = VaultStore::connect(approle_config(&bao, &role_id, &secret_id, "layercrypt"))
        .await
        .expect("connect");
    let g = name("vo.example.org");
    store.create_group(&g, new_key().0).await.expect("create");
    tokio::time::sleep(Duration::from_secs(3)).await;
    store
        .add_grant(&g, grant("g-1", "alice"))
        .await
        .expect("add grant after the token expired");
    assert_eq!(
        store
            .group(&g)
            .await
            .expect("group")
            .expect("exists")
            .grants
            .len(),
        1
    );
}

#[tokio::test]
async fn unavailable_while_openbao_is_down_then_recovers() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut bao = Bao::durable(tmp.path(), None).await;
    let port = bao.port;
    let store = VaultStore::connect(token_config(&bao))
        .await
        .expect("connect");
    let g = name("vo.example.org");
    let (k, id) = new_key();
    store.create_group(&g, k).await.expect("create");
    store
        .add_grant(&g, grant("g-1", "alice"))
        .await
        .expect("grant");
    store.ready().await.expect("ready");

    bao.kill();
    assert!(matches!(
        store.ready().await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(matches!(
        store.group(&g).await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(matches!(
        store.add_grant(&g, grant("g-2", "bob")).await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(matches!(
        store.identity(&g, 1).await,
        Err(StoreError::Unavailable(_))
    ));

    let started = Instant::now();
    let _bao = Bao::durable(tmp.path(), Some(port)).await;
    store.ready().await.expect("ready again");
    let group = store
        .group(&g)
        .await
        .expect("recovered")
        .expect("data survived the restart");
    assert_eq!(group.grants.len(), 1);
    assert_eq!(
        store.identity(&g, 1).await.expect("identity").as_deref(),
        Some(&id)
    );
    store
        .add_grant(&g, grant("g-2", "bob"))
        .await
        .expect("writes work again");
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[tokio::test]
async fn two_brokers_lose_no_concurrent_write() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let bao = Bao::dev(tmp.path()).await;
    let one = VaultStore::connect(token_config(&bao))
        .await
        .expect("connect");
    let two = VaultStore::connect(token_config(&bao))
        .await
        .expect("connect");
    let g = name("vo.example.org");
    one.create_group(&g, new_key().0).await.expect("create");
    assert!(matches!(
        two.create_group(&g, new_key().0).await,
        Err(StoreError::GroupExists(_))
    ));

    concurrent_grants(&[&one, &two], &g, 20).await;

    // Concurrent rotations: every version gets exactly one key, and each one reads back.
    let rotations = (0..10).map(|i| {
        let store: &dyn KeyStore = if i % 2 == 0 { &one } else { &two };
        let g = &g;
        async move {
            let (k, id) = new_key();
            let recipient = k.recipient.clone();
            store.rotate(g, k).await.expect("rotate");
            (recipient, id)
        }
    });
    let keys = futures_util::future::join_all(rotations).await;
    let group = two.group(&g).await.expect("group").expect("exists");
    assert_eq!(
        group.versions.iter().map(|v| v.version).collect::<Vec<_>>(),
        (1..=11).collect::<Vec<u32>>()
    );
    assert_eq!(group.grants.len(), 40, "rotations kept the grants");
    for (recipient, id) in keys {
        let v = group
            .versions
            .iter()
            .find(|v| v.recipient == recipient)
            .expect("rotation landed");
        assert_eq!(
            one.identity(&g, v.version)
                .await
                .expect("identity")
                .as_deref(),
            Some(&id)
        );
    }
}

/// Issue 8 item 2 on OpenBao: a flood of unauthenticated requests is two KV secrets.
#[tokio::test]
async fn unauthenticated_flood_writes_two_audit_secrets() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let bao = Bao::dev(tmp.path()).await;
    let store = Arc::new(
        VaultStore::connect(token_config(&bao))
            .await
            .expect("connect"),
    );
    crate::flood::check_flood(store, 300).await;
}

/// Formats are promises: audit secrets written before audit kinds existed still read.
#[tokio::test]
async fn old_format_audit_secrets_still_read() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let bao = Bao::dev(tmp.path()).await;
    let store = VaultStore::connect(token_config(&bao))
        .await
        .expect("connect");
    for (i, line) in crate::flood::old_format_lines().iter().enumerate() {
        // As the old broker wrote them: the event JSON as the secret's data.
        let body = format!(r#"{{"data":{line},"options":{{"cas":0}}}}"#);
        let path = format!(
            "/v1/secret/data/layercrypt/audit/2026-06-01/{:020}-00000000000000{i:02}",
            1_780_315_200_000_000_000u64 + i as u64
        );
        let (code, resp) = bao.http("POST", &path, Some(&body)).await;
        assert_eq!(code, 200, "{resp}");
    }
    let events = store.audit(&AuditQuery::default()).await.expect("audit");
    crate::flood::check_old_format(&events);
}

/// Issue 8 item 14: N recipient requests within the TTL read OpenBao at most once; a
/// rotation through this broker is seen at once.
#[tokio::test]
async fn recipient_reads_openbao_once_within_the_ttl() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let bao = Bao::dev(tmp.path()).await;
    let store = Arc::new(
        VaultStore::connect(token_config(&bao))
            .await
            .expect("connect"),
    );
    let broker = Broker::new(
        store.clone(),
        Arc::new(crate::flood::NoTokens),
        None,
        BrokerSettings::new("https://broker.test", None, None),
    );
    let admin = Identity {
        method: Method::BootstrapAdmin,
        subject: None,
        dn: None,
        entitlements: vec![],
        expires_at: None,
    };
    let actor = Actor {
        identity: &admin,
        client: None,
    };
    let g = name("vo.example.org");
    broker.create_group(actor, &g).await.expect("create");
    let before = store.group_reads();
    for _ in 0..100 {
        assert_eq!(broker.recipient(&g).await.expect("recipient").version, 1);
    }
    let reads = store.group_reads() - before;
    assert!(reads <= 1, "{reads} OpenBao reads for 100 requests");
    broker.rotate(actor, &g).await.expect("rotate");
    assert_eq!(broker.recipient(&g).await.expect("recipient").version, 2);
    // The admin actions went to OpenBao's audit log too.
    let admin_events = store
        .audit(&AuditQuery {
            kind: Some(AuditKind::Admin),
            ..AuditQuery::default()
        })
        .await
        .expect("audit");
    assert_eq!(admin_events.len(), 2);
}

/// Bounded growth on OpenBao: audit days older than the retention are deleted.
#[tokio::test]
async fn audit_retention_deletes_old_days() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let bao = Bao::dev(tmp.path()).await;
    let mut config = token_config(&bao);
    config.audit_retention_days = 30;
    let store = VaultStore::connect(config).await.expect("connect");
    let now = OffsetDateTime::now_utc();
    for days in [400, 31, 31, 29, 0] {
        let e = AuditEvent::new(
            AuditKind::Unwrap,
            now - time::Duration::days(days),
            format!("{days} days old"),
        );
        store.append_audit(&e).await.expect("append");
    }
    // The pruner started at connect runs in the background and may have taken some of them
    // already; between the two, the three old records go.
    let pruned = store.prune_audit(now).await.expect("prune");
    assert!(pruned <= 3, "{pruned}");
    let left = store.audit(&AuditQuery::default()).await.expect("audit");
    let reasons: Vec<&str> = left.iter().map(|e| e.reason.as_str()).collect();
    assert_eq!(reasons, ["29 days old", "0 days old"]);
    assert_eq!(store.prune_audit(now).await.expect("prune"), 0);
}
