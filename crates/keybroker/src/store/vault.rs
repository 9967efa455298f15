//! PLACEHOLDER (replaced at merge): the Vault/OpenBao key store is written on the `store` branch.
//! Only the constructor signature the broker wiring uses is here; it always fails.

use std::path::PathBuf;

use async_trait::async_trait;
use layercrypt_group::payload::GroupName;

use super::{KeyStore, NewKey, SecretIdentity, StoreError, StoreResult};
use crate::model::{AuditEvent, AuditQuery, Grant, Group};

/// How to reach and log in to Vault/OpenBao (placeholder: the `store` branch defines the real
/// fields; the broker wiring in `server.rs` builds it in one place, `vault_config`).
#[derive(Debug, Clone)]
pub struct VaultConfig {
    /// Base URL, e.g. `https://vault.example.org:8200`.
    pub address: String,
    /// KV v2 mount.
    pub mount: String,
    /// Path prefix under the mount.
    pub prefix: String,
    /// How to log in.
    pub auth: VaultAuth,
    /// Extra CA certificate (PEM file) for the Vault TLS connection.
    pub ca_file: Option<PathBuf>,
}

/// Vault login (placeholder).
#[derive(Debug, Clone)]
pub enum VaultAuth {
    /// A token read from this file.
    TokenFile(PathBuf),
    /// AppRole: role id and a file holding the secret id.
    AppRole {
        /// The role id.
        role_id: String,
        /// File holding the secret id.
        secret_id_file: PathBuf,
    },
}

/// The Vault store (placeholder).
#[derive(Debug)]
pub struct VaultStore(());

impl VaultStore {
    /// Connects to Vault/OpenBao (placeholder: always fails).
    pub fn connect(config: VaultConfig) -> StoreResult<VaultStore> {
        Err(StoreError::Unavailable(format!(
            "vault store not built in this branch (placeholder) for {}",
            config.address
        )))
    }
}

fn placeholder<T>() -> StoreResult<T> {
    Err(StoreError::Unavailable("placeholder store".into()))
}

#[async_trait]
impl KeyStore for VaultStore {
    async fn create_group(&self, _: &GroupName, _: NewKey) -> StoreResult<Group> {
        placeholder()
    }
    async fn group(&self, _: &GroupName) -> StoreResult<Option<Group>> {
        placeholder()
    }
    async fn groups(&self) -> StoreResult<Vec<Group>> {
        placeholder()
    }
    async fn delete_group(&self, _: &GroupName) -> StoreResult<bool> {
        placeholder()
    }
    async fn add_grant(&self, _: &GroupName, _: Grant) -> StoreResult<Group> {
        placeholder()
    }
    async fn remove_grant(&self, _: &GroupName, _: &str) -> StoreResult<bool> {
        placeholder()
    }
    async fn rotate(&self, _: &GroupName, _: NewKey) -> StoreResult<Group> {
        placeholder()
    }
    async fn identity(&self, _: &GroupName, _: u32) -> StoreResult<Option<SecretIdentity>> {
        placeholder()
    }
    async fn append_audit(&self, _: &AuditEvent) -> StoreResult<()> {
        placeholder()
    }
    async fn audit(&self, _: &AuditQuery) -> StoreResult<Vec<AuditEvent>> {
        placeholder()
    }
    async fn ready(&self) -> StoreResult<()> {
        placeholder()
    }
}
