//! Group key pairs, unsealed and parsed once, held in memory for the unwrap hot path.
//!
//! Without it every unwrap would fetch the sealed key from the store (a Vault round trip on
//! that backend), unseal it, decode its bech32 and let aws-lc recompute the public key, which
//! is more work than the X25519 unwrap itself. The cache changes no exposure: the process
//! already holds the master key (embedded store) or a token that can read every key (Vault).
//!
//! The entry is keyed by group, version **and the recipient the group publishes for that
//! version**: the caller looks the group up in the store on every request (so a deleted group
//! or a removed version is refused before the cache is consulted), and a group deleted and
//! created again under the same name has a new recipient, so it can never meet an old key.
//! Bounded: when full it is emptied (keys are re-read on demand). Entries are dropped when
//! their group is deleted on this replica. The aws-lc key is cleansed when freed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::agekey::GroupIdentity;

/// Most key pairs held (each is one group key version).
pub(crate) const MAX_ENTRIES: usize = 4096;

type Key = (String, u32, String);

/// See the module documentation.
#[derive(Default)]
pub(crate) struct IdentityCache {
    entries: Mutex<HashMap<Key, Arc<GroupIdentity>>>,
}

impl std::fmt::Debug for IdentityCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityCache").finish_non_exhaustive()
    }
}

impl IdentityCache {
    /// The key pair of `group` version `version` whose public half is `recipient`, if held.
    pub(crate) fn get(
        &self,
        group: &str,
        version: u32,
        recipient: &str,
    ) -> Option<Arc<GroupIdentity>> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        // A borrowed tuple key would need a custom Borrow impl; the allocation of the probe
        // key is small next to the X25519 that follows.
        entries
            .get(&(group.to_owned(), version, recipient.to_owned()))
            .cloned()
    }

    /// Keeps `identity` for later requests.
    pub(crate) fn insert(
        &self,
        group: &str,
        version: u32,
        recipient: &str,
        identity: Arc<GroupIdentity>,
    ) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert((group.to_owned(), version, recipient.to_owned()), identity);
    }

    /// Drops every version of `group`.
    pub(crate) fn forget_group(&self, group: &str) {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|(g, _, _), _| g != group);
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use age::secrecy::ExposeSecret as _;

    fn identity() -> (Arc<GroupIdentity>, String) {
        let id = age::x25519::Identity::generate();
        let recipient = id.to_public().to_string();
        let parsed =
            GroupIdentity::new(id.to_string().expose_secret(), &recipient).expect("identity");
        (Arc::new(parsed), recipient)
    }

    #[test]
    fn keyed_by_group_version_and_recipient() {
        let cache = IdentityCache::default();
        let (id, recipient) = identity();
        cache.insert("vo.example.org", 1, &recipient, id);
        assert!(cache.get("vo.example.org", 1, &recipient).is_some());
        assert!(cache.get("vo.example.org", 2, &recipient).is_none());
        assert!(cache.get("other.example.org", 1, &recipient).is_none());
        // Same name and version, new key (the group was deleted and created again): a miss.
        let (_, new_recipient) = identity();
        assert!(cache.get("vo.example.org", 1, &new_recipient).is_none());
        cache.forget_group("vo.example.org");
        assert!(cache.get("vo.example.org", 1, &recipient).is_none());
    }

    #[test]
    fn bounded() {
        let cache = IdentityCache::default();
        let (id, recipient) = identity();
        for v in 0..(MAX_ENTRIES as u32 + 10) {
            cache.insert("g", v, &recipient, id.clone());
            assert!(cache.len() <= MAX_ENTRIES);
        }
        assert!(cache.get("g", MAX_ENTRIES as u32 + 9, &recipient).is_some());
    }
}
