//! A flood of unauthenticated requests through the real router over a real store: 429 after
//! the failure burst, and a bounded number of audit records (issue 8 item 2). Also the old
//! audit format fixture, read through a store.

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, Request, StatusCode};
use layercrypt_keybroker::api::{router, ApiOptions, AppState};
use layercrypt_keybroker::auth::{AuthError, Identity, Token, TokenVerifier};
use layercrypt_keybroker::model::{AuditEvent, AuditKind, AuditQuery, Decision};
use layercrypt_keybroker::service::{Broker, BrokerSettings};
use layercrypt_keybroker::store::KeyStore;
use tower::ServiceExt as _;

/// Refuses every token.
pub struct NoTokens;

#[async_trait]
impl TokenVerifier for NoTokens {
    async fn verify(&self, _token: &Token) -> Result<Identity, AuthError> {
        Err(AuthError::Invalid("unknown token".into()))
    }
    async fn ready(&self) -> bool {
        true
    }
}

/// Failure burst of the flood.
pub const BURST: usize = 5;

/// Sends `n` unauthenticated unwraps from one client (each claiming another origin in
/// `X-Forwarded-For`), then flushes the summaries as at shutdown; returns the statuses.
pub async fn flood(store: Arc<dyn KeyStore>, n: usize) -> Vec<u16> {
    let broker = Broker::new(
        store,
        Arc::new(NoTokens),
        None,
        BrokerSettings::new(
            "https://broker.test",
            None,
            Some(Token::new("x".repeat(40))),
        ),
    );
    let state = AppState::new(
        broker,
        ApiOptions {
            auth_fail_per_minute: 1,
            auth_fail_burst: u32::try_from(BURST).expect("small"),
            ..ApiOptions::default()
        },
    );
    let app = router(state.clone());
    let mut statuses = Vec::with_capacity(n);
    for i in 0..n {
        let mut req = Request::post("/v1/unwrap")
            .header(header::AUTHORIZATION, format!("Bearer forged-{i}"))
            .header("x-forwarded-for", format!("198.51.100.{}", i % 250))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(r#"{"payload":"eA=="}"#))
            .expect("request");
        req.extensions_mut().insert(ConnectInfo(
            "192.0.2.66:40000".parse::<SocketAddr>().expect("addr"),
        ));
        let response = app.clone().oneshot(req).await.expect("infallible");
        statuses.push(response.status().as_u16());
    }
    state.broker().flush_denials(true).await;
    statuses
}

/// The statuses and the audit records of a flood of `n`: 401 for the burst, then 429; one
/// record in full and one summary counting the rest.
pub async fn check_flood(store: Arc<dyn KeyStore>, n: usize) {
    let statuses = flood(store.clone(), n).await;
    assert!(statuses[..BURST].iter().all(|&s| s == 401), "{statuses:?}");
    assert!(
        statuses[BURST..]
            .iter()
            .all(|&s| s == StatusCode::TOO_MANY_REQUESTS.as_u16()),
        "{statuses:?}"
    );
    let records = store
        .audit(&AuditQuery {
            kind: Some(AuditKind::Unauthenticated),
            ..AuditQuery::default()
        })
        .await
        .expect("audit");
    assert_eq!(records.len(), 2, "{records:#?}");
    assert_eq!(records.iter().filter(|e| e.count.is_none()).count(), 1);
    let summary = records.iter().find(|e| e.count.is_some()).expect("summary");
    assert_eq!(summary.count, Some(n as u64 - 1));
    assert_eq!(summary.client.as_deref(), Some("192.0.2.66"));
    let all = store.audit(&AuditQuery::default()).await.expect("audit");
    assert_eq!(all.len(), 2, "nothing else was written");
}

/// The records of `tests/data/audit-v1.jsonl`.
pub fn old_format_lines() -> Vec<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/audit-v1.jsonl");
    std::fs::read_to_string(path)
        .expect("fixture")
        .lines()
        .map(str::to_owned)
        .collect()
}

/// What the store read back from the old-format fixture: every record, as kind `unwrap`,
/// every field intact.
pub fn check_old_format(events: &[AuditEvent]) {
    assert_eq!(events.len(), 5, "{events:#?}");
    assert!(events.iter().all(|e| e.kind == AuditKind::Unwrap));
    assert!(events
        .iter()
        .all(|e| e.action.is_none() && e.count.is_none() && e.grant.is_none()));
    assert_eq!(events[0].subject.as_deref(), Some("member@egi.eu"));
    assert_eq!(events[0].decision, Decision::Allow);
    assert_eq!(
        events[0].image.as_deref(),
        Some("docker://registry.example.org/vo/app:1")
    );
    assert_eq!(events[1].client.as_deref(), Some("2001:db8::7"));
    assert_eq!(
        events[2].dn.as_deref(),
        Some("/DC=org/DC=terena/DC=tcs/C=NL/O=Example/CN=Carol Example")
    );
    assert_eq!(events[2].key_version, Some(2));
    assert_eq!(events[3].reason, "unauthenticated: unknown token");
    assert_eq!(events[4].client, None);
    // Each one re-serialized and parsed again is the same record.
    for e in events {
        let again: AuditEvent =
            serde_json::from_str(&serde_json::to_string(e).expect("json")).expect("parse");
        assert_eq!(&again, e);
    }
}
