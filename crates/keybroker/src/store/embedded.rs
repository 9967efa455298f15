//! PLACEHOLDER (replaced at merge): the embedded key store is written on the `store` branch.
//! Only the constructor signature the broker wiring uses is here; it always fails.

use std::path::Path;

use async_trait::async_trait;
use layercrypt_group::payload::GroupName;

use super::{KeyStore, NewKey, SecretIdentity, StoreError, StoreResult};
use crate::model::{AuditEvent, AuditQuery, Grant, Group};

/// The embedded store (placeholder).
#[derive(Debug)]
pub struct EmbeddedStore(());

impl EmbeddedStore {
    /// Opens (creating if needed) the store in `dir` (placeholder: always fails).
    pub fn open(dir: &Path) -> StoreResult<EmbeddedStore> {
        Err(StoreError::Unavailable(format!(
            "embedded store not built in this branch (placeholder) for {}",
            dir.display()
        )))
    }
}

fn placeholder<T>() -> StoreResult<T> {
    Err(StoreError::Unavailable("placeholder store".into()))
}

#[async_trait]
impl KeyStore for EmbeddedStore {
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
