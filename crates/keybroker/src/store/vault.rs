//! HashiCorp Vault / OpenBao KV v2 store, so that several brokers can share state behind a
//! load balancer.
//!
//! Layout under `<mount>/data/<prefix>/`:
//! - `groups/<name>`: `{"group": <Group JSON>, "keys": {"<version>": "<key id>"}}`. Every
//!   update is a check-and-set on the version read, retried on conflict, so concurrent
//!   writers never lose each other's grants.
//! - `keys/<name>/<version>-<key id>`: `{"identity": "AGE-SECRET-KEY-1…"}`, written once
//!   (`cas=0`) before the group record that names it. The random key id (rather than plain
//!   `keys/<name>/<version>`) is what makes concurrent rotations safe: two brokers that both
//!   pick version n+1 write different paths, only one group update wins, and the loser's key
//!   is never referenced (it deletes it, and retries as n+2). A crash between the two writes
//!   leaves an unreferenced key that `delete_group` removes with the group.
//! - `audit/<yyyy-mm-dd>/<unix-ns, 20 digits>-<random>`: one event per secret, so concurrent
//!   brokers never conflict; names sort by time. Growth is bounded by the broker (refusals
//!   before authentication are summarised per client network and window, see
//!   [`crate::denials`]) and here by retention: days older than
//!   [`VaultConfig::audit_retention_days`] are deleted at start and daily after.
//!
//! Auth: a token, or AppRole (logged in at connect and again when the server answers 403,
//! e.g. after the token expired). Renewable tokens are renewed in the background at half
//! their TTL. Connection failures, 5xx and refusals map to [`StoreError::Unavailable`] (503).

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, Weak};
use std::time::Duration;

use async_trait::async_trait;
use layercrypt_proto::payload::GroupName;
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use vaultrs::api::kv2::requests::{ReadSecretRequest, SetSecretRequestOptions};
use vaultrs::client::{Client as _, VaultClient, VaultClientSettingsBuilder};
use vaultrs::error::ClientError;
use zeroize::Zeroizing;

use super::embedded::{add_version, audit_limit, audit_matches, put_grant};
use super::{KeyStore, NewKey, SecretIdentity, StoreError, StoreResult};
use crate::model::{AuditEvent, AuditQuery, Grant, Group, KeyVersion};

/// Default KV v2 mount.
pub const DEFAULT_MOUNT: &str = "secret";
/// Default path prefix inside the mount.
pub const DEFAULT_PREFIX: &str = "layercrypt";
/// Default AppRole auth mount.
pub const DEFAULT_APPROLE_MOUNT: &str = "approle";
/// How often a group update is retried after check-and-set conflicts.
const CAS_ATTEMPTS: usize = 64;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Default of [`VaultConfig::audit_retention_days`].
pub const DEFAULT_AUDIT_RETENTION_DAYS: u32 = 400;
/// How often old audit days are deleted.
const PRUNE_PERIOD: Duration = Duration::from_secs(24 * 3600);

/// How the broker logs in to Vault/OpenBao.
pub enum VaultAuth {
    /// A token (e.g. a periodic token made for the broker).
    Token(Zeroizing<String>),
    /// AppRole login.
    AppRole {
        /// The role id.
        role_id: String,
        /// The secret id.
        secret_id: Zeroizing<String>,
        /// Auth mount, default [`DEFAULT_APPROLE_MOUNT`].
        mount: String,
    },
}

impl std::fmt::Debug for VaultAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VaultAuth::Token(_) => f.write_str("Token(<redacted>)"),
            VaultAuth::AppRole { role_id, mount, .. } => f
                .debug_struct("AppRole")
                .field("role_id", role_id)
                .field("secret_id", &"<redacted>")
                .field("mount", mount)
                .finish(),
        }
    }
}

/// Where and how to reach Vault/OpenBao.
#[derive(Debug)]
pub struct VaultConfig {
    /// `http(s)://host:port`, always explicit (vaultrs would otherwise read `VAULT_ADDR`).
    pub address: String,
    /// KV v2 mount, default [`DEFAULT_MOUNT`].
    pub mount: String,
    /// Path prefix inside the mount, default [`DEFAULT_PREFIX`].
    pub prefix: String,
    /// Login.
    pub auth: VaultAuth,
    /// PEM CA bundle for an `https` address.
    pub ca_file: Option<PathBuf>,
    /// Audit records of days older than this are deleted (0: kept for ever).
    pub audit_retention_days: u32,
}

impl VaultConfig {
    /// A config with the default mount and prefix and the system CAs.
    pub fn new(address: impl Into<String>, auth: VaultAuth) -> Self {
        VaultConfig {
            address: address.into(),
            mount: DEFAULT_MOUNT.to_owned(),
            prefix: DEFAULT_PREFIX.to_owned(),
            auth,
            ca_file: None,
            audit_retention_days: DEFAULT_AUDIT_RETENTION_DAYS,
        }
    }
}

/// The group record as stored: the public group and which key id holds each version.
#[derive(Serialize, Deserialize)]
struct GroupRecord {
    group: Group,
    keys: BTreeMap<u32, String>,
}

#[derive(Serialize, Deserialize)]
struct KeyRecord {
    identity: String,
}

impl Drop for KeyRecord {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.identity);
    }
}

/// The Vault/OpenBao store.
pub struct VaultStore {
    inner: Arc<Inner>,
}

struct Inner {
    config: VaultConfig,
    /// The logged-in client; replaced on re-login. Never held across `.await`.
    client: RwLock<Arc<VaultClient>>,
    /// Serializes re-logins.
    login: tokio::sync::Mutex<()>,
    /// Group records read from Vault (for tests and metrics).
    group_reads: AtomicU64,
}

impl std::fmt::Debug for VaultStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultStore")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

fn status(e: &ClientError) -> Option<u16> {
    match e {
        ClientError::APIError { code, .. } => Some(*code),
        ClientError::RestClientError {
            source: rustify::errors::ClientError::ServerResponseError { code, .. },
        } => Some(*code),
        _ => None,
    }
}

fn is_cas_conflict(e: &ClientError) -> bool {
    matches!(e, ClientError::APIError { code: 400, errors } if errors.iter().any(|m| m.contains("check-and-set")))
}

fn unavailable(what: &str, e: &ClientError) -> StoreError {
    // ClientError's Display names the kind and the status, never a body or a token.
    let detail = match e {
        ClientError::APIError { code, errors } => format!("status {code}: {}", errors.join("; ")),
        other => {
            let mut s = other.to_string();
            let mut source = std::error::Error::source(other);
            while let Some(inner) = source {
                s.push_str(": ");
                s.push_str(&inner.to_string());
                source = inner.source();
            }
            s
        }
    };
    StoreError::Unavailable(format!("{what}: {detail}"))
}

fn random_id() -> String {
    let mut b = [0u8; 8];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl VaultStore {
    /// Logs in and checks that the KV mount answers.
    pub async fn connect(config: VaultConfig) -> StoreResult<Self> {
        let client = login(&config).await?;
        let inner = Arc::new(Inner {
            config,
            client: RwLock::new(Arc::new(client)),
            login: tokio::sync::Mutex::new(()),
            group_reads: AtomicU64::new(0),
        });
        spawn_renewal(Arc::downgrade(&inner));
        if inner.config.audit_retention_days > 0 {
            spawn_pruner(Arc::downgrade(&inner));
        }
        Ok(VaultStore { inner })
    }

    /// Group records read from Vault so far.
    pub fn group_reads(&self) -> u64 {
        self.inner.group_reads.load(Ordering::Relaxed)
    }

    /// Deletes the audit records of days before `now` minus the retention; returns how many.
    pub async fn prune_audit(&self, now: OffsetDateTime) -> StoreResult<usize> {
        let days = self.inner.config.audit_retention_days;
        if days == 0 {
            return Ok(0);
        }
        let cutoff = day_name(now - time::Duration::days(i64::from(days)));
        let mut deleted = 0;
        for day in self.list("audit").await? {
            let day = day.trim_end_matches('/');
            // Day names sort as dates; anything else under audit/ is not ours to delete.
            if day.len() != 10 || day >= cutoff.as_str() {
                continue;
            }
            for name in self.list(&format!("audit/{day}")).await? {
                self.delete_path(&format!("audit/{day}/{name}")).await?;
                deleted += 1;
            }
        }
        if deleted > 0 {
            tracing::info!(deleted, before = %cutoff, "old audit records deleted");
        }
        Ok(deleted)
    }

    fn path(&self, rest: &str) -> String {
        format!("{}/{rest}", self.inner.config.prefix.trim_matches('/'))
    }

    fn mount(&self) -> &str {
        &self.inner.config.mount
    }

    /// Runs `op` with the current client; on 403 under AppRole logs in again and retries once.
    async fn call<T, F, Fut>(&self, what: &str, op: F) -> Result<T, ClientError>
    where
        F: Fn(Arc<VaultClient>) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let client = self.inner.current();
        match op(Arc::clone(&client)).await {
            Err(e)
                if status(&e) == Some(403)
                    && matches!(self.inner.config.auth, VaultAuth::AppRole { .. }) =>
            {
                tracing::info!(what, "Vault refused the token; logging in again");
                match self.inner.relogin(&client).await {
                    Ok(fresh) => op(fresh).await,
                    Err(login_error) => {
                        tracing::warn!(error = %login_error, "AppRole login failed");
                        Err(e)
                    }
                }
            }
            other => other,
        }
    }

    /// Reads a group record and its KV version (0 = absent).
    async fn read_group(&self, name: &str) -> StoreResult<(Option<GroupRecord>, u32)> {
        self.inner.group_reads.fetch_add(1, Ordering::Relaxed);
        let path = self.path(&format!("groups/{name}"));
        let mount = self.mount();
        let res = self
            .call("read group", |c| {
                let path = path.clone();
                async move {
                    let endpoint = ReadSecretRequest::builder()
                        .mount(mount)
                        .path(path)
                        .build()
                        .expect("mount and path are set");
                    vaultrs::api::exec_with_result(&*c, endpoint).await
                }
            })
            .await;
        match res {
            Ok(r) => {
                let version = u32::try_from(r.metadata.version).map_err(|_| {
                    StoreError::Corrupt(format!("group {name}: KV version out of range"))
                })?;
                let record: GroupRecord = serde_json::from_value(r.data)
                    .map_err(|e| StoreError::Corrupt(format!("group {name}: {e}")))?;
                Ok((Some(record), version))
            }
            Err(e) if status(&e) == Some(404) => Ok((None, 0)),
            Err(e) => Err(unavailable("reading a group", &e)),
        }
    }

    /// Writes a group record if its KV version is still `cas`; false on conflict.
    async fn write_group(&self, record: &GroupRecord, cas: u32) -> StoreResult<bool> {
        let path = self.path(&format!("groups/{}", record.group.name));
        let mount = self.mount();
        let res = self
            .call("write group", |c| {
                let path = path.clone();
                async move {
                    let opts = SetSecretRequestOptions { cas };
                    vaultrs::kv2::set_with_options(&*c, mount, &path, record, opts).await
                }
            })
            .await;
        match res {
            Ok(_) => Ok(true),
            Err(e) if is_cas_conflict(&e) => Ok(false),
            Err(e) => Err(unavailable("writing a group", &e)),
        }
    }

    /// Read-modify-write of a group with check-and-set, retried on conflict. `change` returns
    /// `None` to leave the group as it is.
    async fn update_group<T>(
        &self,
        name: &GroupName,
        mut change: impl FnMut(&mut GroupRecord) -> StoreResult<Option<T>>,
    ) -> StoreResult<Option<T>> {
        for attempt in 0..CAS_ATTEMPTS {
            let (record, version) = self.read_group(name.as_str()).await?;
            let mut record = record.ok_or_else(|| StoreError::NoSuchGroup(name.to_string()))?;
            let Some(out) = change(&mut record)? else {
                return Ok(None);
            };
            if self.write_group(&record, version).await? {
                return Ok(Some(out));
            }
            tracing::debug!(group = %name, attempt, "check-and-set conflict; retrying");
            // Spread out the writers that collided.
            let jitter = rand::random::<u64>() % (1 + 2 * attempt as u64);
            tokio::time::sleep(Duration::from_millis(jitter)).await;
        }
        Err(StoreError::Unavailable(format!(
            "group {name}: too many concurrent updates"
        )))
    }

    async fn write_key(
        &self,
        name: &str,
        version: u32,
        key_id: &str,
        identity: &SecretIdentity,
    ) -> StoreResult<()> {
        let path = self.path(&format!("keys/{name}/{version}-{key_id}"));
        let mount = self.mount();
        let record = KeyRecord {
            identity: identity.as_str().to_owned(),
        };
        self.call("write key", |c| {
            let path = path.clone();
            let record = &record;
            async move {
                vaultrs::kv2::set_with_options(
                    &*c,
                    mount,
                    &path,
                    record,
                    SetSecretRequestOptions { cas: 0 },
                )
                .await
            }
        })
        .await
        .map(|_| ())
        .map_err(|e| unavailable("writing a key", &e))
    }

    async fn delete_path(&self, rest: &str) -> StoreResult<()> {
        let path = self.path(rest);
        let mount = self.mount();
        match self
            .call("delete", |c| {
                let path = path.clone();
                async move { vaultrs::kv2::delete_metadata(&*c, mount, &path).await }
            })
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if status(&e) == Some(404) => Ok(()),
            Err(e) => Err(unavailable("deleting", &e)),
        }
    }

    /// Lists a folder; an absent folder is empty.
    async fn list(&self, rest: &str) -> StoreResult<Vec<String>> {
        let path = self.path(rest);
        let mount = self.mount();
        match self
            .call("list", |c| {
                let path = path.clone();
                async move { vaultrs::kv2::list(&*c, mount, &path).await }
            })
            .await
        {
            Ok(keys) => Ok(keys),
            Err(e) if status(&e) == Some(404) => Ok(Vec::new()),
            Err(e) => Err(unavailable("listing", &e)),
        }
    }

    async fn read_json<T: for<'de> Deserialize<'de>>(&self, rest: &str) -> StoreResult<Option<T>> {
        let path = self.path(rest);
        let mount = self.mount();
        match self
            .call("read", |c| {
                let path = path.clone();
                async move { vaultrs::kv2::read::<serde_json::Value>(&*c, mount, &path).await }
            })
            .await
        {
            Ok(value) => serde_json::from_value(value)
                .map(Some)
                .map_err(|e| StoreError::Corrupt(format!("{rest}: {e}"))),
            Err(e) if status(&e) == Some(404) => Ok(None),
            Err(e) => Err(unavailable("reading", &e)),
        }
    }
}

impl Inner {
    fn current(&self) -> Arc<VaultClient> {
        Arc::clone(&self.client.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Logs in again unless another task already replaced `stale`.
    async fn relogin(&self, stale: &Arc<VaultClient>) -> StoreResult<Arc<VaultClient>> {
        let _guard = self.login.lock().await;
        let current = self.current();
        if !Arc::ptr_eq(&current, stale) {
            return Ok(current);
        }
        let fresh = Arc::new(login(&self.config).await?);
        *self.client.write().unwrap_or_else(PoisonError::into_inner) = Arc::clone(&fresh);
        Ok(fresh)
    }
}

fn client_with_token(config: &VaultConfig, token: &str) -> StoreResult<VaultClient> {
    let mut settings = VaultClientSettingsBuilder::default();
    settings
        .address(&config.address)
        .token(token)
        .timeout(Some(REQUEST_TIMEOUT));
    if let Some(ca) = &config.ca_file {
        settings.ca_certs(vec![ca.display().to_string()]);
    }
    let settings = settings
        .build()
        .map_err(|e| StoreError::Unavailable(format!("Vault client settings: {e}")))?;
    VaultClient::new(settings).map_err(|e| unavailable("building the Vault client", &e))
}

async fn login(config: &VaultConfig) -> StoreResult<VaultClient> {
    match &config.auth {
        VaultAuth::Token(token) => client_with_token(config, token),
        VaultAuth::AppRole {
            role_id,
            secret_id,
            mount,
        } => {
            let anonymous = client_with_token(config, "")?;
            let auth = vaultrs::auth::approle::login(&anonymous, mount, role_id, secret_id)
                .await
                .map_err(|e| unavailable("AppRole login", &e))?;
            let token = Zeroizing::new(auth.client_token);
            client_with_token(config, &token)
        }
    }
}

/// `yyyy-mm-dd` (UTC) of `t`, the name of its audit folder.
fn day_name(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day())
}

/// Deletes old audit days at start and every [`PRUNE_PERIOD`]; stops when the store is
/// dropped.
fn spawn_pruner(inner: Weak<Inner>) {
    tokio::spawn(async move {
        loop {
            {
                let Some(inner) = inner.upgrade() else { return };
                let store = VaultStore { inner };
                if let Err(e) = store.prune_audit(now()).await {
                    tracing::warn!(error = %e, "deleting old audit records failed");
                }
            }
            tokio::time::sleep(PRUNE_PERIOD).await;
        }
    });
}

/// Renews a renewable token at half its TTL; under AppRole, logs in again when renewal fails.
/// Stops when the store is dropped.
fn spawn_renewal(inner: Weak<Inner>) {
    tokio::spawn(async move {
        loop {
            let wait = {
                let Some(inner) = inner.upgrade() else { return };
                let client = inner.current();
                match client.lookup().await {
                    Ok(info) if info.renewable == Some(true) && info.ttl > 0 => {
                        Duration::from_secs((info.ttl / 2).max(1))
                    }
                    Ok(_) => return, // root or non-renewable token: nothing to do
                    Err(_) => Duration::from_secs(30),
                }
            };
            tokio::time::sleep(wait).await;
            let Some(inner) = inner.upgrade() else { return };
            let client = inner.current();
            if let Err(e) = client.renew(None).await {
                tracing::warn!(error = %e, "token renewal failed");
                if matches!(inner.config.auth, VaultAuth::AppRole { .. }) {
                    if let Err(e) = inner.relogin(&client).await {
                        tracing::warn!(error = %e, "AppRole login failed");
                    }
                }
            }
        }
    });
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

#[async_trait]
impl KeyStore for VaultStore {
    async fn create_group(&self, name: &GroupName, key: NewKey) -> StoreResult<Group> {
        let key_id = random_id();
        self.write_key(name.as_str(), 1, &key_id, &key.identity)
            .await?;
        let created = now();
        let record = GroupRecord {
            group: Group {
                name: name.clone(),
                current_version: 1,
                versions: vec![KeyVersion {
                    version: 1,
                    recipient: key.recipient,
                    created,
                }],
                grants: Vec::new(),
                created,
            },
            keys: BTreeMap::from([(1, key_id.clone())]),
        };
        if self.write_group(&record, 0).await? {
            Ok(record.group)
        } else {
            self.delete_path(&format!("keys/{name}/1-{key_id}")).await?;
            Err(StoreError::GroupExists(name.to_string()))
        }
    }

    async fn group(&self, name: &GroupName) -> StoreResult<Option<Group>> {
        Ok(self.read_group(name.as_str()).await?.0.map(|r| r.group))
    }

    async fn groups(&self) -> StoreResult<Vec<Group>> {
        let mut names = self.list("groups").await?;
        names.retain(|n| !n.ends_with('/'));
        names.sort();
        let mut out = Vec::with_capacity(names.len());
        for n in names {
            // Deleted between list and read: skip.
            if let (Some(r), _) = self.read_group(&n).await? {
                out.push(r.group);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn delete_group(&self, name: &GroupName) -> StoreResult<bool> {
        let (record, _) = self.read_group(name.as_str()).await?;
        if record.is_none() {
            return Ok(false);
        }
        // The group first, so it disappears at once; then every key under it, referenced or not.
        self.delete_path(&format!("groups/{name}")).await?;
        for key in self.list(&format!("keys/{name}")).await? {
            self.delete_path(&format!("keys/{name}/{key}")).await?;
        }
        Ok(true)
    }

    async fn add_grant(&self, name: &GroupName, grant: Grant) -> StoreResult<Group> {
        let out = self
            .update_group(name, |record| {
                put_grant(&mut record.group, grant.clone());
                Ok(Some(record.group.clone()))
            })
            .await?;
        out.ok_or_else(|| StoreError::NoSuchGroup(name.to_string()))
    }

    async fn remove_grant(&self, name: &GroupName, grant_id: &str) -> StoreResult<bool> {
        let out = self
            .update_group(name, |record| {
                let before = record.group.grants.len();
                record.group.grants.retain(|g| g.id != grant_id);
                Ok((record.group.grants.len() != before).then_some(()))
            })
            .await?;
        Ok(out.is_some())
    }

    async fn rotate(&self, name: &GroupName, key: NewKey) -> StoreResult<Group> {
        for attempt in 0..CAS_ATTEMPTS {
            let (record, cas) = self.read_group(name.as_str()).await?;
            let mut record = record.ok_or_else(|| StoreError::NoSuchGroup(name.to_string()))?;
            let version = add_version(&mut record.group, key.recipient.clone());
            let key_id = random_id();
            self.write_key(name.as_str(), version, &key_id, &key.identity)
                .await?;
            record.keys.insert(version, key_id.clone());
            if self.write_group(&record, cas).await? {
                return Ok(record.group);
            }
            // Lost the race: this key is referenced by nobody.
            self.delete_path(&format!("keys/{name}/{version}-{key_id}"))
                .await?;
            tracing::debug!(group = %name, attempt, "check-and-set conflict on rotation; retrying");
        }
        Err(StoreError::Unavailable(format!(
            "group {name}: too many concurrent updates"
        )))
    }

    async fn identity(
        &self,
        name: &GroupName,
        version: u32,
    ) -> StoreResult<Option<SecretIdentity>> {
        let (Some(record), _) = self.read_group(name.as_str()).await? else {
            return Ok(None);
        };
        let Some(key_id) = record.keys.get(&version) else {
            return Ok(None);
        };
        let key: Option<KeyRecord> = self
            .read_json(&format!("keys/{name}/{version}-{key_id}"))
            .await?;
        match key {
            Some(k) => Ok(Some(Zeroizing::new(k.identity.clone()))),
            None => Err(StoreError::Corrupt(format!(
                "group {name} version {version}: key record is missing"
            ))),
        }
    }

    async fn append_audit(&self, event: &AuditEvent) -> StoreResult<()> {
        let t = event.time.to_offset(time::UtcOffset::UTC);
        let day = day_name(t);
        let ns = t.unix_timestamp_nanos().max(0);
        let rest = format!("audit/{day}/{ns:020}-{}", random_id());
        let path = self.path(&rest);
        let mount = self.mount();
        self.call("append audit", |c| {
            let path = path.clone();
            async move {
                vaultrs::kv2::set_with_options(
                    &*c,
                    mount,
                    &path,
                    event,
                    SetSecretRequestOptions { cas: 0 },
                )
                .await
            }
        })
        .await
        .map(|_| ())
        .map_err(|e| unavailable("appending an audit event", &e))
    }

    async fn audit(&self, query: &AuditQuery) -> StoreResult<Vec<AuditEvent>> {
        let limit = audit_limit(query);
        let since = query.since.map(|s| s.to_offset(time::UtcOffset::UTC));
        let since_day =
            since.map(|t| format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day()));
        let since_ns = since.map(|t| t.unix_timestamp_nanos().max(0));
        let mut days: Vec<String> = self
            .list("audit")
            .await?
            .into_iter()
            .map(|d| d.trim_end_matches('/').to_owned())
            .collect();
        days.sort();
        let mut newest_first = Vec::new();
        'days: for day in days.iter().rev() {
            if since_day.as_ref().is_some_and(|s| day < s) {
                break;
            }
            let mut names = self.list(&format!("audit/{day}")).await?;
            names.sort();
            for n in names.iter().rev() {
                if newest_first.len() >= limit {
                    break 'days;
                }
                let ns: Option<i128> = n.split('-').next().and_then(|s| s.parse().ok());
                if let (Some(ns), Some(since_ns)) = (ns, since_ns) {
                    if ns < since_ns {
                        break 'days;
                    }
                }
                let Some(event) = self
                    .read_json::<AuditEvent>(&format!("audit/{day}/{n}"))
                    .await?
                else {
                    continue;
                };
                if audit_matches(&event, query) {
                    newest_first.push(event);
                }
            }
        }
        newest_first.reverse();
        Ok(newest_first)
    }

    async fn ready(&self) -> StoreResult<()> {
        // vaultrs's sys::health fails to parse OpenBao's answer: plain GET instead.
        let client = self.inner.current();
        let url = format!(
            "{}/v1/sys/health",
            self.inner.config.address.trim_end_matches('/')
        );
        let res = client
            .http
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| StoreError::Unavailable(format!("{url}: {e}")))?;
        match res.status().as_u16() {
            200 | 429 | 473 => Ok(()),
            501 => Err(StoreError::Unavailable("Vault is not initialized".into())),
            503 => Err(StoreError::Unavailable("Vault is sealed".into())),
            code => Err(StoreError::Unavailable(format!(
                "Vault health status {code}"
            ))),
        }
    }
}
