//! The behaviour every `KeyStore` backend must show, run against each of them.

use futures_util::future::join_all;
use layercrypt_keybroker::model::{
    AdminAction, AuditEvent, AuditKind, AuditQuery, Credential, Decision, Grant, Principal,
};
use layercrypt_keybroker::store::{KeyStore, NewKey, StoreError};
use layercrypt_proto::payload::GroupName;
use rand::Rng as _;
use time::macros::datetime;
use time::OffsetDateTime;
use zeroize::Zeroizing;

pub fn name(s: &str) -> GroupName {
    s.parse().expect("valid group name")
}

/// A key pair stand-in: the store does not parse keys, it only has to keep them apart.
pub fn new_key() -> (NewKey, String) {
    let tag: String = (0..20)
        .map(|_| char::from(b'A' + rand::thread_rng().gen_range(0..26)))
        .collect();
    let identity = format!("AGE-SECRET-KEY-1{tag}");
    (
        NewKey {
            recipient: format!("age1{}", tag.to_lowercase()),
            identity: Zeroizing::new(identity.clone()),
        },
        identity,
    )
}

pub fn grant(id: &str, subject: &str) -> Grant {
    Grant {
        id: id.to_owned(),
        principal: Principal::Subject {
            subject: subject.to_owned(),
        },
        networks: Vec::new(),
        expires: None,
        created: OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .expect("0 is a valid nanosecond"),
    }
}

pub fn event(time: OffsetDateTime, group: &str, subject: &str, reason: &str) -> AuditEvent {
    AuditEvent {
        subject: Some(subject.to_owned()),
        group: Some(group.to_owned()),
        key_version: Some(1),
        layer_digest: Some("sha256:0000".into()),
        client: Some("127.0.0.1".into()),
        decision: Decision::Allow,
        ..AuditEvent::new(AuditKind::Unwrap, time, reason)
    }
}

fn reasons(events: &[AuditEvent]) -> Vec<&str> {
    events.iter().map(|e| e.reason.as_str()).collect()
}

/// The whole suite; the store must be empty.
pub async fn run_suite(store: &dyn KeyStore) {
    store.ready().await.expect("ready");
    let a = name("vo.example.org");
    let b = name("fedcloud.egi.eu");

    // Groups.
    assert!(store.groups().await.expect("groups").is_empty());
    assert!(store.group(&a).await.expect("group").is_none());
    let (k1, id1) = new_key();
    let recipient1 = k1.recipient.clone();
    let created = store.create_group(&a, k1).await.expect("create");
    assert_eq!(created.name, a);
    assert_eq!(created.current_version, 1);
    assert_eq!(created.current().expect("current").recipient, recipient1);
    assert!(created.grants.is_empty());
    let (dup, _) = new_key();
    assert!(matches!(
        store.create_group(&a, dup).await,
        Err(StoreError::GroupExists(_))
    ));
    store.create_group(&b, new_key().0).await.expect("create b");
    let names: Vec<String> = store
        .groups()
        .await
        .expect("groups")
        .into_iter()
        .map(|g| g.name.to_string())
        .collect();
    assert_eq!(names, ["fedcloud.egi.eu", "vo.example.org"]);
    assert_eq!(store.group(&a).await.expect("group"), Some(created.clone()));
    assert_eq!(
        store
            .identity(&a, 1)
            .await
            .expect("identity")
            .as_deref()
            .map(String::as_str),
        Some(id1.as_str())
    );

    // Grants.
    let g = store
        .add_grant(&a, grant("g-1", "alice"))
        .await
        .expect("grant");
    assert_eq!(g.grants, [grant("g-1", "alice")]);
    store
        .add_grant(&a, grant("g-2", "bob"))
        .await
        .expect("grant");
    assert!(store.remove_grant(&a, "g-1").await.expect("remove"));
    assert!(!store.remove_grant(&a, "g-1").await.expect("remove again"));
    let g = store.group(&a).await.expect("group").expect("exists");
    assert_eq!(
        g.grants.iter().map(|g| g.id.as_str()).collect::<Vec<_>>(),
        ["g-2"]
    );
    let missing = name("missing.example.org");
    assert!(matches!(
        store.add_grant(&missing, grant("g-x", "x")).await,
        Err(StoreError::NoSuchGroup(_))
    ));
    assert!(matches!(
        store.rotate(&missing, new_key().0).await,
        Err(StoreError::NoSuchGroup(_))
    ));

    // Rotation: versions 1..n, the newest current, older identities still there.
    let mut identities = vec![id1];
    for n in 2..=4u32 {
        let (k, id) = new_key();
        let recipient = k.recipient.clone();
        let g = store.rotate(&a, k).await.expect("rotate");
        assert_eq!(g.current_version, n);
        assert_eq!(g.current().expect("current").recipient, recipient);
        assert_eq!(g.grants.len(), 1, "rotation keeps grants");
        identities.push(id);
    }
    let g = store.group(&a).await.expect("group").expect("exists");
    assert_eq!(
        g.versions.iter().map(|v| v.version).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    for (i, id) in identities.iter().enumerate() {
        let v = u32::try_from(i + 1).expect("small");
        assert_eq!(
            store.identity(&a, v).await.expect("identity").as_deref(),
            Some(id),
            "version {v}"
        );
    }
    assert!(store.identity(&a, 5).await.expect("identity").is_none());
    assert!(store.identity(&a, 0).await.expect("identity").is_none());
    assert!(store
        .identity(&missing, 1)
        .await
        .expect("identity")
        .is_none());

    // Delete.
    assert!(store.delete_group(&b).await.expect("delete"));
    assert!(!store.delete_group(&b).await.expect("delete again"));
    assert!(store.group(&b).await.expect("group").is_none());
    assert!(store.identity(&b, 1).await.expect("identity").is_none());
    // The name can be used again, with a fresh key.
    let (kb, idb) = new_key();
    store.create_group(&b, kb).await.expect("re-create");
    assert_eq!(
        store.identity(&b, 1).await.expect("identity").as_deref(),
        Some(&idb)
    );

    // Audit.
    let t0 = datetime!(2026-03-01 10:00:00 UTC);
    let events = [
        event(t0, "vo.example.org", "alice", "e1"),
        event(
            t0 + time::Duration::seconds(1),
            "fedcloud.egi.eu",
            "bob",
            "e2",
        ),
        event(t0 + time::Duration::days(1), "vo.example.org", "bob", "e3"),
        event(
            t0 + time::Duration::days(1) + time::Duration::seconds(5),
            "vo.example.org",
            "alice",
            "e4",
        ),
        event(
            t0 + time::Duration::days(2),
            "fedcloud.egi.eu",
            "alice",
            "e5",
        ),
    ];
    for e in &events {
        store.append_audit(e).await.expect("append");
    }
    let mut dn_event = event(
        t0 + time::Duration::days(3),
        "vo.example.org",
        "unused",
        "e6",
    );
    dn_event.subject = None;
    dn_event.dn = Some("/DC=org/DC=example/CN=Carol".into());
    dn_event.decision = Decision::Deny;
    store.append_audit(&dn_event).await.expect("append");

    let all = store.audit(&AuditQuery::default()).await.expect("audit");
    assert_eq!(reasons(&all), ["e1", "e2", "e3", "e4", "e5", "e6"]);
    assert_eq!(all[0], events[0]);
    assert_eq!(all[5], dn_event);
    let q = |group: Option<&str>,
             subject: Option<&str>,
             since: Option<OffsetDateTime>,
             limit: Option<usize>| AuditQuery {
        group: group.map(str::to_owned),
        subject: subject.map(str::to_owned),
        since,
        limit,
        kind: None,
    };
    assert_eq!(
        reasons(
            &store
                .audit(&q(Some("vo.example.org"), None, None, None))
                .await
                .expect("audit")
        ),
        ["e1", "e3", "e4", "e6"]
    );
    assert_eq!(
        reasons(
            &store
                .audit(&q(None, Some("alice"), None, None))
                .await
                .expect("audit")
        ),
        ["e1", "e4", "e5"]
    );
    assert_eq!(
        reasons(
            &store
                .audit(&q(None, Some("/DC=org/DC=example/CN=Carol"), None, None))
                .await
                .expect("audit")
        ),
        ["e6"]
    );
    assert_eq!(
        reasons(
            &store
                .audit(&q(None, None, Some(events[2].time), None))
                .await
                .expect("audit")
        ),
        ["e3", "e4", "e5", "e6"]
    );
    assert_eq!(
        reasons(
            &store
                .audit(&q(None, None, None, Some(2)))
                .await
                .expect("audit")
        ),
        ["e5", "e6"]
    );
    assert_eq!(
        reasons(
            &store
                .audit(&q(Some("vo.example.org"), Some("alice"), None, Some(1)))
                .await
                .expect("audit")
        ),
        ["e4"]
    );
    assert_eq!(
        reasons(
            &store
                .audit(&q(
                    None,
                    Some("bob"),
                    Some(t0 + time::Duration::seconds(1)),
                    Some(10)
                ))
                .await
                .expect("audit")
        ),
        ["e2", "e3"]
    );
    assert!(store
        .audit(&q(None, None, None, Some(0)))
        .await
        .expect("audit")
        .is_empty());
    assert!(store
        .audit(&q(Some("nobody"), None, None, None))
        .await
        .expect("audit")
        .is_empty());

    // Kinds: an admin record round-trips with its new fields and filters by kind.
    let admin = AuditEvent {
        subject: Some("admin@example.org".into()),
        group: Some("vo.example.org".into()),
        decision: Decision::Allow,
        action: Some(AdminAction::AddGrant),
        credential: Some(Credential::Token),
        grant: Some(grant("g-9", "mallory")),
        ..AuditEvent::new(AuditKind::Admin, events[4].time, "added grant g-9")
    };
    store.append_audit(&admin).await.expect("append");
    let by_kind = |kind| AuditQuery {
        kind: Some(kind),
        ..AuditQuery::default()
    };
    assert_eq!(
        store
            .audit(&by_kind(AuditKind::Admin))
            .await
            .expect("audit"),
        vec![admin.clone()]
    );
    let unwraps = store
        .audit(&by_kind(AuditKind::Unwrap))
        .await
        .expect("audit");
    assert_eq!(unwraps.len(), 6);
    assert!(unwraps.iter().all(|e| e.kind == AuditKind::Unwrap));

    // Concurrent grant writes all land.
    let c = name("concurrent.example.org");
    store.create_group(&c, new_key().0).await.expect("create");
    concurrent_grants(&[store], &c, 20).await;
}

/// `per_store` grants from each store at once, then every one of them is there.
pub async fn concurrent_grants(stores: &[&dyn KeyStore], group: &GroupName, per_store: usize) {
    let writes = stores.iter().enumerate().flat_map(|(s, store)| {
        (0..per_store).map(move |i| async move {
            store
                .add_grant(
                    group,
                    grant(&format!("g-{s}-{i}"), &format!("user-{s}-{i}")),
                )
                .await
                .expect("add grant")
        })
    });
    join_all(writes).await;
    let g = stores[0]
        .group(group)
        .await
        .expect("group")
        .expect("exists");
    let mut ids: Vec<String> = g.grants.iter().map(|g| g.id.clone()).collect();
    ids.sort();
    let mut want: Vec<String> = (0..stores.len())
        .flat_map(|s| (0..per_store).map(move |i| format!("g-{s}-{i}")))
        .collect();
    want.sort();
    assert_eq!(ids, want, "a concurrent grant write was lost");
}
