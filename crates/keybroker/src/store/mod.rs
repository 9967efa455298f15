//! Where groups, grants, key material and the audit log live: one trait, two backends.
//!
//! - `embedded` (default): one file in a data directory, key material sealed with a master key
//!   created on first start, crash-safe (write to a temporary file, fsync, rename).
//! - `vault`: HashiCorp Vault / OpenBao KV v2 (token or AppRole auth), so several brokers can
//!   share state behind a load balancer.
//!
//! The same test suite runs against both.

pub mod embedded;
pub mod vault;

use async_trait::async_trait;
use layercrypt_proto::payload::GroupName;
use zeroize::Zeroizing;

use crate::model::{AuditEvent, AuditQuery, Grant, Group};

pub use embedded::EmbeddedStore;
pub use vault::{VaultAuth, VaultConfig, VaultStore};

/// An age X25519 identity (`AGE-SECRET-KEY-1…`), zeroized on drop.
pub type SecretIdentity = Zeroizing<String>;

/// A new key version to store: the public recipient and the secret identity.
pub struct NewKey {
    /// `age1…`.
    pub recipient: String,
    /// `AGE-SECRET-KEY-1…`.
    pub identity: SecretIdentity,
}

impl std::fmt::Debug for NewKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewKey")
            .field("recipient", &self.recipient)
            .finish_non_exhaustive()
    }
}

/// Store failures. Messages never contain key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The group does not exist.
    #[error("group {0} does not exist")]
    NoSuchGroup(String),
    /// The group already exists.
    #[error("group {0} already exists")]
    GroupExists(String),
    /// The backend cannot be reached or refused (maps to 503).
    #[error("key store unavailable: {0}")]
    Unavailable(String),
    /// Stored data is damaged, or the master key does not open it.
    #[error("key store data is corrupt: {0}")]
    Corrupt(String),
    /// Local I/O failed.
    #[error("key store I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// Result of store operations.
pub type StoreResult<T> = Result<T, StoreError>;

/// Persistent state of the broker. Every acknowledged write must survive a crash.
#[async_trait]
pub trait KeyStore: Send + Sync {
    /// Creates a group with its first key (version 1).
    async fn create_group(&self, name: &GroupName, key: NewKey) -> StoreResult<Group>;
    /// A group, or `None`.
    async fn group(&self, name: &GroupName) -> StoreResult<Option<Group>>;
    /// All groups, sorted by name.
    async fn groups(&self) -> StoreResult<Vec<Group>>;
    /// Deletes a group and its keys; false if it did not exist.
    async fn delete_group(&self, name: &GroupName) -> StoreResult<bool>;
    /// Adds a grant.
    async fn add_grant(&self, name: &GroupName, grant: Grant) -> StoreResult<Group>;
    /// Removes a grant; false if it did not exist.
    async fn remove_grant(&self, name: &GroupName, grant_id: &str) -> StoreResult<bool>;
    /// Adds a key version, which becomes current (rotation).
    async fn rotate(&self, name: &GroupName, key: NewKey) -> StoreResult<Group>;
    /// The secret identity of a key version, or `None`.
    async fn identity(&self, name: &GroupName, version: u32)
        -> StoreResult<Option<SecretIdentity>>;
    /// Appends an audit event durably.
    async fn append_audit(&self, event: &AuditEvent) -> StoreResult<()>;
    /// Reads audit events.
    async fn audit(&self, query: &AuditQuery) -> StoreResult<Vec<AuditEvent>>;
    /// Reopens the audit log under its name (SIGHUP, after logrotate moved it away). Stores
    /// without a local log do nothing.
    async fn reopen_audit(&self) -> StoreResult<()> {
        Ok(())
    }
    /// Ok if the backend is reachable and usable (for `/readyz`).
    async fn ready(&self) -> StoreResult<()>;
}
