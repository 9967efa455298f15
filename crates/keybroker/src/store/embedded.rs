//! The default store: one data directory on local disk, for a single broker.
//!
//! Files in the data directory (which must be owned by the broker's user and closed to group
//! and others):
//! - `master.key`: 32 random bytes, created on first start (`O_EXCL`, mode 0600). Seals every
//!   secret identity with XChaCha20-Poly1305; the AAD binds a sealed key to its group and
//!   version, so sealed keys cannot be moved between groups or versions.
//! - `state.json`: groups, grants, key versions and the sealed identities. Every write goes to
//!   `state.json.tmp`, is fsynced, renamed over `state.json`, and the directory is fsynced;
//!   only then is the write acknowledged.
//! - `audit.log`: append-only JSON lines. One writer thread appends them with group commit:
//!   it takes every event queued so far, writes them with one `write(2)`, calls `fdatasync`
//!   once, and only then acknowledges each of them. An event is never acknowledged before it
//!   is durable; concurrent events share one fsync instead of queueing for one each.
//!   Before a batch would take the file past [`AuditRotation::max_bytes`] it is rotated:
//!   `audit.log.N-1` → `audit.log.N` … `audit.log` → `audit.log.1`, the oldest beyond
//!   [`AuditRotation::keep`] deleted, a new `audit.log` created and the directory fsynced, so
//!   the log takes at most `(keep + 1) × max_bytes`. Queries read the kept files too. On
//!   SIGHUP the broker asks the writer to reopen `audit.log` by name (for logrotate's
//!   `create` mode; with `copytruncate` nothing is needed).
//! - `lock`: held with an exclusive `flock` while the store is open, so two brokers cannot
//!   share one directory.
//!
//! The whole state lives in memory; writers are serialized and build the next state from a
//! copy, so readers never wait for a disk write.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, PoisonError, RwLock};

use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use layercrypt_proto::payload::GroupName;
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use super::{KeyStore, NewKey, SecretIdentity, StoreError, StoreResult};
use crate::model::{AuditEvent, AuditQuery, Grant, Group, KeyVersion};

const MASTER_KEY: &str = "master.key";
const STATE: &str = "state.json";
const STATE_TMP: &str = "state.json.tmp";
const AUDIT: &str = "audit.log";
const LOCK: &str = "lock";
/// Format of `state.json` written and accepted.
const STATE_FORMAT: u32 = 1;
/// Plaintext of the check value that tells a wrong master key at start-up.
const CHECK_PLAINTEXT: &[u8] = b"layercrypt embedded store master key check";
const NONCE_LEN: usize = 24;
/// Default of [`AuditRotation::max_bytes`]: 64 MiB.
pub const DEFAULT_AUDIT_MAX_BYTES: u64 = 64 * 1024 * 1024;
/// Default of [`AuditRotation::keep`].
pub const DEFAULT_AUDIT_KEEP: u32 = 10;

/// Size-based rotation of `audit.log`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditRotation {
    /// Rotate before the file would grow past this many bytes (a single batch larger than
    /// this still goes to a file of its own).
    pub max_bytes: u64,
    /// Rotated files kept (at least 1).
    pub keep: u32,
}

impl Default for AuditRotation {
    fn default() -> Self {
        AuditRotation {
            max_bytes: DEFAULT_AUDIT_MAX_BYTES,
            keep: DEFAULT_AUDIT_KEEP,
        }
    }
}

/// Default and largest number of audit events a query returns.
pub(crate) const DEFAULT_AUDIT_LIMIT: usize = 1000;

#[derive(Clone, Serialize, Deserialize)]
struct State {
    format: u32,
    /// The check value sealed with the master key (AAD `check`).
    check: String,
    groups: BTreeMap<String, StoredGroup>,
}

#[derive(Clone, Serialize, Deserialize)]
struct StoredGroup {
    group: Group,
    /// Sealed identity per version: std base64 of nonce ‖ ciphertext.
    sealed: BTreeMap<u32, String>,
}

/// The embedded store. See the module documentation for the files it keeps.
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    cipher: XChaCha20Poly1305,
    /// The acknowledged state. Never held across `.await`.
    state: RwLock<Arc<State>>,
    /// Serializes writers: held while the next state is written to disk.
    writer: tokio::sync::Mutex<()>,
    /// Queue of the audit writer thread (see [`audit_writer`]).
    audit: mpsc::Sender<AuditMsg>,
    rotation: AuditRotation,
    /// Holds the `flock` until the store is dropped.
    _lock: File,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

impl EmbeddedStore {
    /// Opens (or on first start creates) the store in `data_dir`.
    ///
    /// Refuses a data directory or master key that is owned by another user or accessible to
    /// group or others, a directory locked by another store, and a master key that does not
    /// open the state (`Corrupt`).
    pub async fn open(data_dir: &Path) -> StoreResult<Self> {
        Self::open_with(data_dir, AuditRotation::default()).await
    }

    /// [`EmbeddedStore::open`] with the audit log rotated as `rotation` says.
    pub async fn open_with(data_dir: &Path, rotation: AuditRotation) -> StoreResult<Self> {
        let dir = data_dir.to_path_buf();
        let rotation = AuditRotation {
            keep: rotation.keep.max(1),
            ..rotation
        };
        let inner = tokio::task::spawn_blocking(move || open_blocking(dir, rotation))
            .await
            .map_err(join_error)??;
        Ok(EmbeddedStore {
            inner: Arc::new(inner),
        })
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.inner.dir
    }

    fn snapshot(&self) -> Arc<State> {
        Arc::clone(
            &self
                .inner
                .state
                .read()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    /// Applies `change` to a copy of the state, persists it, and only then makes it current.
    async fn update<T: Send + 'static>(
        &self,
        change: impl FnOnce(&mut State) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let _writer = self.inner.writer.lock().await;
        let mut next = (*self.snapshot()).clone();
        let out = change(&mut next)?;
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            write_state(&inner.dir, &next)?;
            *inner.state.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(next);
            Ok::<_, StoreError>(())
        })
        .await
        .map_err(join_error)??;
        Ok(out)
    }
}

fn join_error(e: tokio::task::JoinError) -> StoreError {
    StoreError::Io(std::io::Error::other(format!("store task failed: {e}")))
}

fn refuse(path: &Path, why: &str) -> StoreError {
    StoreError::Io(std::io::Error::new(
        std::io::ErrorKind::PermissionDenied,
        format!("refusing to use {}: {why}", path.display()),
    ))
}

/// The path must be owned by us and closed to group and others.
fn check_private(path: &Path, meta: &fs::Metadata) -> StoreResult<()> {
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        return Err(refuse(
            path,
            &format!("owned by uid {}, not by this user (uid {me})", meta.uid()),
        ));
    }
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(refuse(
            path,
            &format!(
                "mode {mode:o} lets group or others in; chmod {} it",
                if meta.is_dir() { "700" } else { "600" }
            ),
        ));
    }
    Ok(())
}

fn open_blocking(dir: PathBuf, rotation: AuditRotation) -> StoreResult<Inner> {
    match fs::symlink_metadata(&dir) {
        Ok(meta) => {
            if !meta.is_dir() {
                return Err(refuse(&dir, "not a directory"));
            }
            check_private(&dir, &meta)?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)?;
            check_private(&dir, &fs::metadata(&dir)?)?;
        }
        Err(e) => return Err(e.into()),
    }

    let lock = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(dir.join(LOCK))?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(
        |e| {
            StoreError::Io(std::io::Error::new(
                std::io::ErrorKind::WouldBlock,
                format!(
                    "data directory {} is in use by another broker (lock {}: {e})",
                    dir.display(),
                    LOCK
                ),
            ))
        },
    )?;

    let state_path = dir.join(STATE);
    let have_state = state_path.exists();
    let key = read_or_create_master_key(&dir, have_state)?;
    let cipher = XChaCha20Poly1305::new((&*key).into());

    let state = if have_state {
        let bytes = fs::read(&state_path)?;
        let state: State = serde_json::from_slice(&bytes)
            .map_err(|e| StoreError::Corrupt(format!("{}: {e}", state_path.display())))?;
        if state.format != STATE_FORMAT {
            return Err(StoreError::Corrupt(format!(
                "{}: unknown format {}",
                state_path.display(),
                state.format
            )));
        }
        let check = unseal(&cipher, &state.check, b"check").map_err(|_| {
            StoreError::Corrupt(format!(
                "{} does not open {}",
                MASTER_KEY,
                state_path.display()
            ))
        })?;
        if check.as_slice() != CHECK_PLAINTEXT {
            return Err(StoreError::Corrupt("master key check value differs".into()));
        }
        state
    } else {
        let state = State {
            format: STATE_FORMAT,
            check: seal(&cipher, CHECK_PLAINTEXT, b"check")?,
            groups: BTreeMap::new(),
        };
        write_state(&dir, &state)?;
        state
    };

    let audit = spawn_audit_writer(AuditLog::open(&dir, rotation)?)?;
    Ok(Inner {
        dir,
        cipher,
        state: RwLock::new(Arc::new(state)),
        writer: tokio::sync::Mutex::new(()),
        audit,
        rotation,
        _lock: lock,
    })
}

fn read_or_create_master_key(dir: &Path, have_state: bool) -> StoreResult<Zeroizing<[u8; 32]>> {
    let path = dir.join(MASTER_KEY);
    let mut key = Zeroizing::new([0u8; 32]);
    match OpenOptions::new().read(true).open(&path) {
        Ok(mut file) => {
            check_private(&path, &file.metadata()?)?;
            let mut buf = Zeroizing::new(Vec::with_capacity(33));
            Read::by_ref(&mut file).take(33).read_to_end(&mut buf)?;
            if buf.len() != 32 {
                return Err(StoreError::Corrupt(format!(
                    "{} is not 32 bytes",
                    path.display()
                )));
            }
            key.copy_from_slice(&buf);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if have_state {
                return Err(StoreError::Corrupt(format!(
                    "{} is missing but {STATE} exists: restore the master key",
                    path.display()
                )));
            }
            rand::rngs::OsRng.fill_bytes(&mut *key);
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)?;
            file.write_all(&*key)?;
            file.sync_all()?;
            sync_dir(dir)?;
            tracing::info!(path = %path.display(), "created a new master key");
        }
        Err(e) => return Err(e.into()),
    }
    Ok(key)
}

/// Opens the audit log for appending, dropping a torn last line (an event that was never
/// acknowledged) so the next event starts on a line of its own.
fn open_audit(path: &Path) -> StoreResult<File> {
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)?;
    let len = file.metadata()?.len();
    if len > 0 {
        let mut last = [0u8; 1];
        file.seek(SeekFrom::Start(len - 1))?;
        file.read_exact(&mut last)?;
        if last[0] != b'\n' {
            let mut content = Vec::new();
            file.seek(SeekFrom::Start(0))?;
            file.read_to_end(&mut content)?;
            let keep = content
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1);
            tracing::warn!(path = %path.display(), dropped = len - keep as u64, "dropping a torn audit record");
            file.set_len(keep as u64)?;
            file.sync_all()?;
        }
    }
    Ok(file)
}

/// One audit line (ending in `\n`) and who waits for it to be durable.
struct AuditJob {
    line: Vec<u8>,
    done: tokio::sync::oneshot::Sender<std::io::Result<()>>,
}

/// What the audit writer thread is asked to do.
enum AuditMsg {
    /// Append (group commit).
    Event(AuditJob),
    /// Reopen `audit.log` by name (SIGHUP).
    Reopen(tokio::sync::oneshot::Sender<std::io::Result<()>>),
}

/// Most events committed by one `fdatasync`, and most bytes written by one `write(2)`.
const AUDIT_BATCH_EVENTS: usize = 4096;
const AUDIT_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// The name of the `n`th rotated file (`audit.log.n`).
fn rotated(dir: &Path, n: u32) -> PathBuf {
    dir.join(format!("{AUDIT}.{n}"))
}

/// The open audit log and its rotation; owned by the writer thread.
struct AuditLog {
    dir: PathBuf,
    file: File,
    rotation: AuditRotation,
}

impl AuditLog {
    fn open(dir: &Path, rotation: AuditRotation) -> StoreResult<AuditLog> {
        Ok(AuditLog {
            dir: dir.to_path_buf(),
            file: open_audit(&dir.join(AUDIT))?,
            rotation,
        })
    }

    /// Opens `audit.log` by name again (it may have been moved away, then created afresh
    /// or not). A new file that group or others can read is refused and the old one kept.
    fn reopen(&mut self) -> std::io::Result<()> {
        let path = self.dir.join(AUDIT);
        let file = open_audit(&path).map_err(store_to_io)?;
        check_private(&path, &file.metadata()?).map_err(store_to_io)?;
        self.file = file;
        tracing::info!(path = %path.display(), "audit log reopened");
        Ok(())
    }

    /// Shifts the kept files up by one, moves `audit.log` to `audit.log.1` and starts a new
    /// `audit.log`; the directory is fsynced before the next record goes to the new file.
    fn rotate(&mut self) -> std::io::Result<()> {
        self.file.sync_all()?;
        let keep = self.rotation.keep.max(1);
        match fs::remove_file(rotated(&self.dir, keep)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        for n in (1..keep).rev() {
            match fs::rename(rotated(&self.dir, n), rotated(&self.dir, n + 1)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        fs::rename(self.dir.join(AUDIT), rotated(&self.dir, 1))?;
        let file = open_audit(&self.dir.join(AUDIT)).map_err(store_to_io)?;
        sync_dir(&self.dir)?;
        self.file = file;
        tracing::info!(dir = %self.dir.display(), keep, "audit log rotated");
        Ok(())
    }

    /// Appends whole lines with one `write(2)` and one `fdatasync`, rotating first if they
    /// would take the file past the cap. A failed write is cut back to the previous length.
    fn append(&mut self, buf: &[u8]) -> std::io::Result<()> {
        let len = self.file.metadata()?.len();
        if len > 0 && len.saturating_add(buf.len() as u64) > self.rotation.max_bytes {
            if let Err(e) = self.rotate() {
                // The record matters more than the cap: keep appending to the current file.
                tracing::error!(error = %e, "audit log rotation failed; appending past the cap");
            }
        }
        let len = self.file.metadata()?.len();
        let result = self
            .file
            .write_all(buf)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = &result {
            tracing::error!(error = %e, "audit batch not durable");
            // Only ever shorten: a file truncated behind our back (copytruncate) is left alone.
            let cut = self.file.metadata().and_then(|m| {
                if m.len() > len {
                    self.file.set_len(len)?;
                }
                self.file.sync_data()
            });
            if let Err(e) = cut {
                tracing::error!(error = %e, "cannot cut the audit log back after a failed write");
            }
        }
        result
    }
}

fn store_to_io(e: StoreError) -> std::io::Error {
    match e {
        StoreError::Io(e) => e,
        other => std::io::Error::other(other.to_string()),
    }
}

/// Starts the audit writer thread over `log`. It ends when the last sender is dropped, after
/// committing what was queued.
fn spawn_audit_writer(log: AuditLog) -> StoreResult<mpsc::Sender<AuditMsg>> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("audit-writer".into())
        .spawn(move || audit_writer(log, &rx))?;
    Ok(tx)
}

/// Group commit: waits for one event, takes whatever else is queued by then (bounded), writes
/// the batch with one `write(2)`, `fdatasync`s once, then answers every event of the batch.
/// No artificial delay: the batch is what arrived while the previous fsync ran. A failed
/// write or sync answers the whole batch with the error and cuts the file back to its last
/// durable length, so a failed batch leaves no partial line for a later one to follow.
fn audit_writer(mut log: AuditLog, rx: &mpsc::Receiver<AuditMsg>) {
    let mut buf = Vec::new();
    let mut waiting = Vec::new();
    let mut pending = None;
    loop {
        let first = match pending.take() {
            Some(msg) => msg,
            None => match rx.recv() {
                Ok(msg) => msg,
                Err(_) => return,
            },
        };
        let first = match first {
            AuditMsg::Reopen(done) => {
                let _ = done.send(log.reopen());
                continue;
            }
            AuditMsg::Event(job) => job,
        };
        buf.clear();
        buf.extend_from_slice(&first.line);
        waiting.push(first.done);
        while waiting.len() < AUDIT_BATCH_EVENTS && buf.len() < AUDIT_BATCH_BYTES {
            match rx.try_recv() {
                Ok(AuditMsg::Event(job)) => {
                    buf.extend_from_slice(&job.line);
                    waiting.push(job.done);
                }
                // After this batch: the batch goes to the file it was meant for.
                Ok(reopen @ AuditMsg::Reopen(_)) => {
                    pending = Some(reopen);
                    break;
                }
                Err(_) => break,
            }
        }
        let result = log.append(&buf);
        for done in waiting.drain(..) {
            let answer = match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
            };
            // The request may have gone away (timeout): its event is durable all the same.
            let _ = done.send(answer);
        }
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// temp file, fsync, rename, fsync the directory.
fn write_state(dir: &Path, state: &State) -> StoreResult<()> {
    let bytes = serde_json::to_vec(state).map_err(|e| StoreError::Io(std::io::Error::other(e)))?;
    let tmp = dir.join(STATE_TMP);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(&bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, dir.join(STATE))?;
    sync_dir(dir)?;
    Ok(())
}

fn key_aad(group: &str, version: u32) -> Vec<u8> {
    format!("layercrypt-key\0{group}\0{version}").into_bytes()
}

fn seal(cipher: &XChaCha20Poly1305, plaintext: &[u8], aad: &[u8]) -> StoreResult<String> {
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let ct = cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| StoreError::Io(std::io::Error::other("sealing failed")))?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&ct);
    Ok(STANDARD.encode(out))
}

fn unseal(cipher: &XChaCha20Poly1305, sealed: &str, aad: &[u8]) -> StoreResult<Zeroizing<Vec<u8>>> {
    let raw = STANDARD
        .decode(sealed)
        .map_err(|_| StoreError::Corrupt("sealed value is not base64".into()))?;
    if raw.len() < NONCE_LEN + 16 {
        return Err(StoreError::Corrupt("sealed value is truncated".into()));
    }
    let (nonce, ct) = raw.split_at(NONCE_LEN);
    cipher
        .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad })
        .map(Zeroizing::new)
        .map_err(|_| StoreError::Corrupt("sealed value does not open with the master key".into()))
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn new_group(name: &GroupName, recipient: String) -> Group {
    let created = now();
    Group {
        name: name.clone(),
        current_version: 1,
        versions: vec![KeyVersion {
            version: 1,
            recipient,
            created,
        }],
        grants: Vec::new(),
        created,
    }
}

/// Adds a grant; a grant with the same id replaces the old one (so a retried request does
/// not add it twice).
pub(crate) fn put_grant(group: &mut Group, grant: Grant) {
    group.grants.retain(|g| g.id != grant.id);
    group.grants.push(grant);
}

/// Adds the next key version and makes it current; returns the new version.
pub(crate) fn add_version(group: &mut Group, recipient: String) -> u32 {
    let version = group.versions.iter().map(|v| v.version).max().unwrap_or(0) + 1;
    group.versions.push(KeyVersion {
        version,
        recipient,
        created: now(),
    });
    group.current_version = version;
    version
}

/// Whether an event passes the query's filters (`limit` aside).
pub(crate) fn audit_matches(event: &AuditEvent, query: &AuditQuery) -> bool {
    query
        .group
        .as_ref()
        .is_none_or(|g| event.group.as_ref() == Some(g))
        && query
            .subject
            .as_ref()
            .is_none_or(|s| event.subject.as_ref() == Some(s) || event.dn.as_ref() == Some(s))
        && query.since.is_none_or(|since| event.time >= since)
        && query.kind.is_none_or(|kind| event.kind == kind)
}

/// The query's limit, bounded by [`DEFAULT_AUDIT_LIMIT`] when absent.
pub(crate) fn audit_limit(query: &AuditQuery) -> usize {
    query.limit.unwrap_or(DEFAULT_AUDIT_LIMIT)
}

fn identity_from_plaintext(plain: Zeroizing<Vec<u8>>) -> StoreResult<SecretIdentity> {
    let mut plain = plain;
    match String::from_utf8(std::mem::take(&mut *plain)) {
        Ok(s) => Ok(Zeroizing::new(s)),
        Err(e) => {
            drop(Zeroizing::new(e.into_bytes()));
            Err(StoreError::Corrupt("sealed identity is not UTF-8".into()))
        }
    }
}

#[async_trait]
impl KeyStore for EmbeddedStore {
    async fn create_group(&self, name: &GroupName, key: NewKey) -> StoreResult<Group> {
        let name = name.clone();
        let sealed = seal(
            &self.inner.cipher,
            key.identity.as_bytes(),
            &key_aad(name.as_str(), 1),
        )?;
        self.update(move |state| {
            if state.groups.contains_key(name.as_str()) {
                return Err(StoreError::GroupExists(name.to_string()));
            }
            let group = new_group(&name, key.recipient);
            state.groups.insert(
                name.to_string(),
                StoredGroup {
                    group: group.clone(),
                    sealed: BTreeMap::from([(1, sealed)]),
                },
            );
            Ok(group)
        })
        .await
    }

    async fn group(&self, name: &GroupName) -> StoreResult<Option<Group>> {
        Ok(self
            .snapshot()
            .groups
            .get(name.as_str())
            .map(|g| g.group.clone()))
    }

    async fn groups(&self) -> StoreResult<Vec<Group>> {
        // BTreeMap: sorted by name.
        Ok(self
            .snapshot()
            .groups
            .values()
            .map(|g| g.group.clone())
            .collect())
    }

    async fn delete_group(&self, name: &GroupName) -> StoreResult<bool> {
        if !self.snapshot().groups.contains_key(name.as_str()) {
            return Ok(false);
        }
        let name = name.to_string();
        self.update(move |state| Ok(state.groups.remove(&name).is_some()))
            .await
    }

    async fn add_grant(&self, name: &GroupName, grant: Grant) -> StoreResult<Group> {
        let name = name.to_string();
        self.update(move |state| {
            let stored = state
                .groups
                .get_mut(&name)
                .ok_or_else(|| StoreError::NoSuchGroup(name.clone()))?;
            put_grant(&mut stored.group, grant);
            Ok(stored.group.clone())
        })
        .await
    }

    async fn remove_grant(&self, name: &GroupName, grant_id: &str) -> StoreResult<bool> {
        let snapshot = self.snapshot();
        let stored = snapshot
            .groups
            .get(name.as_str())
            .ok_or_else(|| StoreError::NoSuchGroup(name.to_string()))?;
        if !stored.group.grants.iter().any(|g| g.id == grant_id) {
            return Ok(false);
        }
        let name = name.to_string();
        let grant_id = grant_id.to_owned();
        self.update(move |state| {
            let stored = state
                .groups
                .get_mut(&name)
                .ok_or_else(|| StoreError::NoSuchGroup(name.clone()))?;
            let before = stored.group.grants.len();
            stored.group.grants.retain(|g| g.id != grant_id);
            Ok(stored.group.grants.len() != before)
        })
        .await
    }

    async fn rotate(&self, name: &GroupName, key: NewKey) -> StoreResult<Group> {
        let name = name.to_string();
        let inner = Arc::clone(&self.inner);
        self.update(move |state| {
            let stored = state
                .groups
                .get_mut(&name)
                .ok_or_else(|| StoreError::NoSuchGroup(name.clone()))?;
            let version = add_version(&mut stored.group, key.recipient);
            let sealed = seal(
                &inner.cipher,
                key.identity.as_bytes(),
                &key_aad(&name, version),
            )?;
            stored.sealed.insert(version, sealed);
            Ok(stored.group.clone())
        })
        .await
    }

    async fn identity(
        &self,
        name: &GroupName,
        version: u32,
    ) -> StoreResult<Option<SecretIdentity>> {
        let snapshot = self.snapshot();
        let Some(sealed) = snapshot
            .groups
            .get(name.as_str())
            .and_then(|g| g.sealed.get(&version))
        else {
            return Ok(None);
        };
        let plain =
            unseal(&self.inner.cipher, sealed, &key_aad(name.as_str(), version)).map_err(|_| {
                StoreError::Corrupt(format!(
                    "sealed key of group {name} version {version} does not open"
                ))
            })?;
        identity_from_plaintext(plain).map(Some)
    }

    async fn append_audit(&self, event: &AuditEvent) -> StoreResult<()> {
        let mut line =
            serde_json::to_vec(event).map_err(|e| StoreError::Io(std::io::Error::other(e)))?;
        line.push(b'\n');
        let (done, durable) = tokio::sync::oneshot::channel();
        self.inner
            .audit
            .send(AuditMsg::Event(AuditJob { line, done }))
            .map_err(|_| StoreError::Io(std::io::Error::other("audit writer stopped")))?;
        // Answered only after the batch holding this event was written and fsynced.
        durable
            .await
            .map_err(|_| StoreError::Io(std::io::Error::other("audit writer stopped")))?
            .map_err(StoreError::Io)
    }

    async fn audit(&self, query: &AuditQuery) -> StoreResult<Vec<AuditEvent>> {
        let dir = self.inner.dir.clone();
        let keep = self.inner.rotation.keep;
        let query = query.clone();
        tokio::task::spawn_blocking(move || {
            // Oldest first: audit.log.N … audit.log.1, then audit.log.
            let mut paths: Vec<PathBuf> = (1..=keep)
                .rev()
                .map(|n| rotated(&dir, n))
                .filter(|p| p.exists())
                .collect();
            paths.push(dir.join(AUDIT));
            read_audit(&paths, &query)
        })
        .await
        .map_err(join_error)?
    }

    async fn reopen_audit(&self) -> StoreResult<()> {
        let (done, reopened) = tokio::sync::oneshot::channel();
        self.inner
            .audit
            .send(AuditMsg::Reopen(done))
            .map_err(|_| StoreError::Io(std::io::Error::other("audit writer stopped")))?;
        reopened
            .await
            .map_err(|_| StoreError::Io(std::io::Error::other("audit writer stopped")))?
            .map_err(StoreError::Io)
    }

    async fn ready(&self) -> StoreResult<()> {
        let dir = self.inner.dir.clone();
        tokio::task::spawn_blocking(move || fs::metadata(dir.join(STATE)).map(|_| ()))
            .await
            .map_err(join_error)?
            .map_err(StoreError::from)
    }
}

/// Reads the audit files front to back (oldest file first), keeping the newest `limit`
/// matching events. A file that vanished meanwhile (rotated away) is skipped.
fn read_audit(paths: &[PathBuf], query: &AuditQuery) -> StoreResult<Vec<AuditEvent>> {
    let limit = audit_limit(query);
    let mut out = std::collections::VecDeque::new();
    for path in paths {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e.into()),
        };
        read_audit_file(path, file, query, limit, &mut out)?;
    }
    Ok(out.into())
}

fn read_audit_file(
    path: &Path,
    file: File,
    query: &AuditQuery,
    limit: usize,
    out: &mut std::collections::VecDeque<AuditEvent>,
) -> StoreResult<()> {
    let mut reader = BufReader::new(file);
    let mut line = Vec::new();
    let mut number = 0usize;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        number += 1;
        if line.last() != Some(&b'\n') {
            // Being appended right now: not acknowledged yet.
            break;
        }
        let event: AuditEvent = serde_json::from_slice(&line)
            .map_err(|e| StoreError::Corrupt(format!("{} line {number}: {e}", path.display())))?;
        if audit_matches(&event, query) {
            out.push_back(event);
            if out.len() > limit {
                out.pop_front();
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cipher() -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new((&[9u8; 32]).into())
    }

    #[test]
    fn seal_round_trip_and_refusals() {
        let c = cipher();
        for len in [0usize, 1, 74, 1000] {
            let msg = vec![b'x'; len];
            let sealed = seal(&c, &msg, &key_aad("g", 1)).expect("seal");
            assert_eq!(
                unseal(&c, &sealed, &key_aad("g", 1))
                    .expect("unseal")
                    .as_slice(),
                msg.as_slice()
            );
            // Other group, other version, other key, a flipped bit, truncation: all Corrupt.
            assert!(matches!(
                unseal(&c, &sealed, &key_aad("h", 1)),
                Err(StoreError::Corrupt(_))
            ));
            assert!(matches!(
                unseal(&c, &sealed, &key_aad("g", 2)),
                Err(StoreError::Corrupt(_))
            ));
            let other = XChaCha20Poly1305::new((&[8u8; 32]).into());
            assert!(matches!(
                unseal(&other, &sealed, &key_aad("g", 1)),
                Err(StoreError::Corrupt(_))
            ));
            let mut raw = STANDARD.decode(&sealed).expect("base64");
            let last = raw.len() - 1;
            raw[last] ^= 0x80;
            assert!(unseal(&c, &STANDARD.encode(&raw), &key_aad("g", 1)).is_err());
            raw.truncate(NONCE_LEN + 15);
            assert!(unseal(&c, &STANDARD.encode(&raw), &key_aad("g", 1)).is_err());
        }
        assert!(matches!(
            unseal(&c, "not base64!", b""),
            Err(StoreError::Corrupt(_))
        ));
    }

    #[test]
    fn aad_separates_names_and_versions() {
        // "a" v12 and "a1" v2 must not share an AAD.
        assert_ne!(key_aad("a", 12), key_aad("a1", 2));
    }

    fn line(n: usize) -> Vec<u8> {
        let mut l = format!("{n:039}").into_bytes();
        l.push(b'\n');
        l
    }

    #[test]
    fn audit_log_rotates_by_size_and_keeps_n_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rotation = AuditRotation {
            max_bytes: 100,
            keep: 2,
        };
        let mut log = AuditLog::open(dir.path(), rotation).expect("open");
        for n in 0..10 {
            log.append(&line(n)).expect("append");
        }
        let read = |p: PathBuf| std::fs::read(p).expect("read");
        // 40-byte lines, 100-byte cap: two lines a file; the oldest six rotated away.
        assert_eq!(read(dir.path().join(AUDIT)), [line(8), line(9)].concat());
        assert_eq!(read(rotated(dir.path(), 1)), [line(6), line(7)].concat());
        assert_eq!(read(rotated(dir.path(), 2)), [line(4), line(5)].concat());
        assert!(
            !rotated(dir.path(), 3).exists(),
            "only keep=2 rotated files"
        );
        // A batch bigger than the cap still goes out whole, to a file of its own.
        let big: Vec<u8> = (10..14).flat_map(line).collect();
        log.append(&big).expect("append");
        assert_eq!(read(dir.path().join(AUDIT)), big);
        assert_eq!(read(rotated(dir.path(), 1)), [line(8), line(9)].concat());
        // Queries read the kept files, oldest first.
        let paths = [
            rotated(dir.path(), 2),
            rotated(dir.path(), 1),
            dir.path().join(AUDIT),
        ];
        let text: Vec<u8> = paths.iter().flat_map(|p| read(p.clone())).collect();
        assert_eq!(text.len(), 8 * 40);
    }

    #[test]
    fn reopen_follows_the_name_after_logrotate_moved_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = AuditLog::open(dir.path(), AuditRotation::default()).expect("open");
        log.append(&line(1)).expect("append");
        let moved = dir.path().join("audit.log-20261207");
        std::fs::rename(dir.path().join(AUDIT), &moved).expect("mv");
        log.append(&line(2))
            .expect("append to the moved file until reopened");
        log.reopen().expect("reopen");
        log.append(&line(3)).expect("append");
        assert_eq!(
            std::fs::read(&moved).expect("read"),
            [line(1), line(2)].concat()
        );
        let path = dir.path().join(AUDIT);
        assert_eq!(std::fs::read(&path).expect("read"), line(3));
        let mode = std::fs::metadata(&path).expect("meta").mode() & 0o777;
        assert_eq!(mode, 0o600);
        // A new file that others can read (a careless `create 0644`) is refused; the old
        // handle stays in use.
        std::fs::rename(&path, dir.path().join("audit.log-2")).expect("mv");
        std::fs::write(&path, b"").expect("create");
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .expect("chmod");
        assert!(log.reopen().is_err());
        log.append(&line(4)).expect("append");
        assert_eq!(
            std::fs::read(dir.path().join("audit.log-2")).expect("read"),
            [line(3), line(4)].concat()
        );
    }

    #[test]
    fn torn_audit_line_is_dropped_at_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(AUDIT);
        std::fs::write(&path, b"{\"a\":1}\n{\"torn").expect("write");
        drop(open_audit(&path).expect("open"));
        assert_eq!(std::fs::read(&path).expect("read"), b"{\"a\":1}\n");
        std::fs::write(&path, b"{\"torn").expect("write");
        drop(open_audit(&path).expect("open"));
        assert_eq!(std::fs::read(&path).expect("read"), b"");
    }
}
