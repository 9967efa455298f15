//! The embedded store: the common suite plus sealing, permissions, locking and crash safety.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use std::sync::Arc;

use layercrypt_keybroker::model::{AuditEvent, AuditKind, AuditQuery};
use layercrypt_keybroker::store::embedded::AuditRotation;
use layercrypt_keybroker::store::{EmbeddedStore, KeyStore, StoreError};
use time::OffsetDateTime;

use crate::store_suite::{grant, name, new_key, run_suite};

/// Env var that turns [`writer_child`] into the crash-test writer (value: the data dir).
const WRITER_ENV: &str = "LAYERCRYPT_STORE_WRITER";

fn data_dir(tmp: &tempfile::TempDir) -> PathBuf {
    tmp.path().join("data")
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

#[tokio::test]
async fn suite() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(&data_dir(&tmp)).await.expect("open");
    run_suite(&store).await;
}

#[tokio::test]
async fn reopen_keeps_state_and_creates_private_files() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = data_dir(&tmp);
    let a = name("vo.example.org");
    let (k1, id1) = new_key();
    let (k2, id2) = new_key();
    let (before, audit_before) = {
        let store = EmbeddedStore::open(&dir).await.expect("open");
        store.create_group(&a, k1).await.expect("create");
        store
            .add_grant(&a, grant("g-1", "alice"))
            .await
            .expect("grant");
        store.rotate(&a, k2).await.expect("rotate");
        let e = crate::store_suite::event(
            time::OffsetDateTime::now_utc(),
            "vo.example.org",
            "alice",
            "r",
        );
        store.append_audit(&e).await.expect("audit");
        (
            store.groups().await.expect("groups"),
            store.audit(&Default::default()).await.expect("audit"),
        )
    };
    for (file, mode) in [
        ("", 0o700),
        ("master.key", 0o600),
        ("state.json", 0o600),
        ("audit.log", 0o600),
    ] {
        let meta = std::fs::metadata(dir.join(file)).expect("stat");
        assert_eq!(meta.permissions().mode() & 0o777, mode, "{file}");
    }
    let store = EmbeddedStore::open(&dir).await.expect("reopen");
    assert_eq!(store.groups().await.expect("groups"), before);
    assert_eq!(
        store.audit(&Default::default()).await.expect("audit"),
        audit_before
    );
    assert_eq!(
        store.identity(&a, 1).await.expect("identity").as_deref(),
        Some(&id1)
    );
    assert_eq!(
        store.identity(&a, 2).await.expect("identity").as_deref(),
        Some(&id2)
    );
}

#[tokio::test]
async fn no_identity_in_the_clear_on_disk() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = data_dir(&tmp);
    let store = EmbeddedStore::open(&dir).await.expect("open");
    let (k, id) = new_key();
    store
        .create_group(&name("vo.example.org"), k)
        .await
        .expect("create");
    store
        .rotate(&name("vo.example.org"), new_key().0)
        .await
        .expect("rotate");
    for entry in std::fs::read_dir(&dir).expect("read dir") {
        let path = entry.expect("entry").path();
        let bytes = std::fs::read(&path).expect("read");
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains("AGE-SECRET-KEY"),
            "{} holds an identity in the clear",
            path.display()
        );
        assert!(
            !text.contains(&id[16..]),
            "{} holds an identity in the clear",
            path.display()
        );
    }
}

fn edit_state(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("state.json");
    let mut v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
    edit(&mut v);
    std::fs::write(&path, serde_json::to_vec(&v).expect("json")).expect("write");
}

#[tokio::test]
async fn tampered_or_swapped_sealed_key_is_corrupt() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = data_dir(&tmp);
    let (a, b) = (name("a.example.org"), name("b.example.org"));
    {
        let store = EmbeddedStore::open(&dir).await.expect("open");
        store.create_group(&a, new_key().0).await.expect("create");
        store.create_group(&b, new_key().0).await.expect("create");
        store.rotate(&b, new_key().0).await.expect("rotate");
    }
    edit_state(&dir, |v| {
        // a's key 1 gets one bit flipped; b's key 2 is replaced by b's key 1 (wrong AAD).
        let sealed = v["groups"]["a.example.org"]["sealed"]["1"]
            .as_str()
            .expect("sealed")
            .to_owned();
        let mut raw = base64_decode(&sealed);
        raw[30] ^= 1;
        v["groups"]["a.example.org"]["sealed"]["1"] = base64_encode(&raw).into();
        let b1 = v["groups"]["b.example.org"]["sealed"]["1"].clone();
        v["groups"]["b.example.org"]["sealed"]["2"] = b1;
    });
    let store = EmbeddedStore::open(&dir)
        .await
        .expect("the state itself still opens");
    assert!(matches!(
        store.identity(&a, 1).await,
        Err(StoreError::Corrupt(_))
    ));
    assert!(matches!(
        store.identity(&b, 2).await,
        Err(StoreError::Corrupt(_))
    ));
    assert!(store.identity(&b, 1).await.expect("untouched").is_some());
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .expect("base64")
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[tokio::test]
async fn wrong_or_missing_master_key_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = data_dir(&tmp);
    drop(EmbeddedStore::open(&dir).await.expect("open"));
    let key = dir.join("master.key");
    let good = std::fs::read(&key).expect("read");
    std::fs::write(&key, [7u8; 32]).expect("write");
    let err = EmbeddedStore::open(&dir).await.expect_err("wrong key");
    assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
    std::fs::write(&key, &good[..31]).expect("write");
    assert!(matches!(
        EmbeddedStore::open(&dir).await,
        Err(StoreError::Corrupt(_))
    ));
    std::fs::remove_file(&key).expect("remove");
    let err = EmbeddedStore::open(&dir).await.expect_err("missing key");
    assert!(err.to_string().contains("master.key is missing"), "{err}");
    assert!(
        !key.exists(),
        "a new key must not be made for an existing state"
    );
}

#[tokio::test]
async fn open_permissions_are_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = data_dir(&tmp);
    drop(EmbeddedStore::open(&dir).await.expect("open"));

    set_mode(&dir, 0o750);
    let err = EmbeddedStore::open(&dir)
        .await
        .expect_err("group-readable dir");
    assert!(
        err.to_string().contains("refusing to use") && err.to_string().contains("mode 750"),
        "{err}"
    );
    set_mode(&dir, 0o700);

    let key = dir.join("master.key");
    set_mode(&key, 0o644);
    let err = EmbeddedStore::open(&dir)
        .await
        .expect_err("world-readable key");
    assert!(
        err.to_string().contains("master.key") && err.to_string().contains("mode 644"),
        "{err}"
    );
    set_mode(&key, 0o600);

    if rustix::process::geteuid().is_root() {
        std::os::unix::fs::chown(&key, Some(54321), None).expect("chown");
        let err = EmbeddedStore::open(&dir)
            .await
            .expect_err("foreign key file");
        assert!(err.to_string().contains("owned by uid 54321"), "{err}");
        std::os::unix::fs::chown(&key, Some(0), None).expect("chown back");
    }
    EmbeddedStore::open(&dir).await.expect("fixed");
}

#[tokio::test]
async fn second_open_while_locked_fails() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = data_dir(&tmp);
    let first = EmbeddedStore::open(&dir).await.expect("open");
    let err = EmbeddedStore::open(&dir).await.expect_err("locked");
    assert!(
        err.to_string().contains("in use by another broker"),
        "{err}"
    );
    drop(first);
    EmbeddedStore::open(&dir)
        .await
        .expect("open after the first closed");
}

/// Crash-test writer: only does something when re-executed by [`kill_9_loses_no_acknowledged_write`].
#[tokio::test]
async fn writer_child() {
    let Some(dir) = std::env::var_os(WRITER_ENV) else {
        return;
    };
    use std::io::Write as _;
    let store = EmbeddedStore::open(Path::new(&dir)).await.expect("open");
    let group = name("crash.example.org");
    let mut out = std::io::stdout().lock();
    for i in 0..100_000 {
        let id = format!("g-{i}");
        store
            .add_grant(&group, grant(&id, "crash"))
            .await
            .expect("add grant");
        writeln!(out, "ack {id}").expect("stdout");
        out.flush().expect("stdout");
    }
}

#[tokio::test]
async fn kill_9_loses_no_acknowledged_write() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = data_dir(&tmp);
    let group = name("crash.example.org");
    {
        let store = EmbeddedStore::open(&dir).await.expect("open");
        store
            .create_group(&group, new_key().0)
            .await
            .expect("create");
    }
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "embedded::writer_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(WRITER_ENV, &dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn writer");
    let stdout = child.stdout.take().expect("piped");
    let acked = tokio::task::spawn_blocking(move || {
        let mut acked = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("read");
            if let Some(id) = line.strip_prefix("ack ") {
                acked.push(id.to_owned());
                if acked.len() == 300 {
                    child.kill().expect("kill -9"); // SIGKILL
                }
            }
        }
        child.wait().expect("wait");
        acked
    })
    .await
    .expect("reader");
    assert!(
        acked.len() >= 300,
        "the writer acknowledged only {} grants",
        acked.len()
    );
    let store = EmbeddedStore::open(&dir)
        .await
        .expect("reopen after kill -9");
    let g = store.group(&group).await.expect("group").expect("exists");
    let have: std::collections::HashSet<&str> = g.grants.iter().map(|g| g.id.as_str()).collect();
    for id in &acked {
        assert!(
            have.contains(id.as_str()),
            "acknowledged grant {id} was lost"
        );
    }
    // At most the one write in flight when the process died is there without its ack.
    assert!(have.len() <= acked.len() + 1);
}

/// Issue 8 item 2 on the embedded store: a flood of unauthenticated requests is two lines.
#[tokio::test]
async fn unauthenticated_flood_writes_two_audit_lines() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = data_dir(&tmp);
    let store = Arc::new(EmbeddedStore::open(&dir).await.expect("open"));
    crate::flood::check_flood(store, 500).await;
    let text = std::fs::read_to_string(dir.join("audit.log")).expect("read");
    assert_eq!(text.lines().count(), 2, "{text}");
}

/// Formats are promises: `audit.log` lines written before audit kinds existed still read.
#[tokio::test]
async fn old_format_audit_log_still_reads() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = data_dir(&tmp);
    drop(EmbeddedStore::open(&dir).await.expect("create"));
    let mut text = crate::flood::old_format_lines().join("\n");
    text.push('\n');
    std::fs::write(dir.join("audit.log"), text).expect("write");
    let store = EmbeddedStore::open(&dir).await.expect("open");
    let events = store.audit(&AuditQuery::default()).await.expect("audit");
    crate::flood::check_old_format(&events);
    // New records go after them, and kinds filter across both formats.
    let admin = AuditEvent::new(AuditKind::Admin, OffsetDateTime::now_utc(), "x");
    store.append_audit(&admin).await.expect("append");
    let q = |kind| AuditQuery {
        kind: Some(kind),
        ..AuditQuery::default()
    };
    assert_eq!(
        store
            .audit(&q(AuditKind::Unwrap))
            .await
            .expect("audit")
            .len(),
        5
    );
    assert_eq!(
        store.audit(&q(AuditKind::Admin)).await.expect("audit"),
        vec![admin]
    );
}

/// The store rotates `audit.log` by size and still answers queries from the kept files;
/// the oldest beyond `keep` are gone, so the log is bounded.
#[tokio::test]
async fn audit_log_rotates_and_queries_read_the_kept_files() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = data_dir(&tmp);
    let rotation = AuditRotation {
        max_bytes: 4096,
        keep: 3,
    };
    let store = EmbeddedStore::open_with(&dir, rotation)
        .await
        .expect("open");
    let t0 = OffsetDateTime::now_utc();
    for i in 0..200 {
        let e = AuditEvent::new(AuditKind::Unwrap, t0, format!("event {i:03}"));
        store.append_audit(&e).await.expect("append");
    }
    let mut total = 0;
    for name in ["audit.log", "audit.log.1", "audit.log.2", "audit.log.3"] {
        let len = std::fs::metadata(dir.join(name)).expect(name).len();
        assert!(len <= 4096, "{name}: {len}");
        total += len;
    }
    assert!(!dir.join("audit.log.4").exists());
    assert!(total <= 4 * 4096);
    let events = store.audit(&AuditQuery::default()).await.expect("audit");
    assert!(events.len() > 20 && events.len() < 200, "{}", events.len());
    assert_eq!(events.last().map(|e| e.reason.as_str()), Some("event 199"));
    let numbers: Vec<&str> = events.iter().map(|e| e.reason.as_str()).collect();
    let mut sorted = numbers.clone();
    sorted.sort_unstable();
    assert_eq!(numbers, sorted, "oldest first across files");
    // SIGHUP's reopen through the store answers once done.
    store.reopen_audit().await.expect("reopen");
    let e = AuditEvent::new(AuditKind::Unwrap, t0, "after reopen");
    store.append_audit(&e).await.expect("append");
}
