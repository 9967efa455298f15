//! A bounded in-memory TTL cache for unwrapped layer keys (private options).
//!
//! In memory only: unwrapped keys are never written to disk. containerd starts one decoder
//! process per layer, so an entry lives at most as long as the process that made it; the cache
//! matters for long-lived users (the key provider serving several layers, a future gRPC mode).
//! Entries are zeroized when evicted or dropped.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use layercrypt_ocicrypt::SecretBytes;

/// The cache. Keys are not secret (e.g. the digest of a wrapped-key item).
#[derive(Debug)]
pub struct KeyCache {
    ttl: Duration,
    max: usize,
    entries: HashMap<String, (Instant, SecretBytes)>,
}

impl KeyCache {
    /// A cache keeping at most `max` entries for `ttl` each; a zero TTL or size disables it.
    pub fn new(ttl: Duration, max: usize) -> Self {
        Self {
            ttl,
            max,
            entries: HashMap::new(),
        }
    }

    /// The value for `key`, if present and not expired.
    pub fn get(&mut self, key: &str) -> Option<SecretBytes> {
        let now = Instant::now();
        match self.entries.get(key) {
            Some((at, v)) if now.duration_since(*at) < self.ttl => Some(v.clone()),
            Some(_) => {
                self.entries.remove(key);
                None
            }
            None => None,
        }
    }

    /// Stores `value` under `key`, evicting expired entries, then the oldest, to stay bounded.
    pub fn insert(&mut self, key: String, value: SecretBytes) {
        if self.ttl.is_zero() || self.max == 0 {
            return;
        }
        let now = Instant::now();
        let ttl = self.ttl;
        self.entries
            .retain(|_, (at, _)| now.duration_since(*at) < ttl);
        while self.entries.len() >= self.max {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, (at, _))| *at)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => {
                    self.entries.remove(&k);
                }
                None => break,
            }
        }
        self.entries.insert(key, (now, value));
    }

    /// Number of live or expired-but-not-yet-evicted entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_expiring() {
        let mut c = KeyCache::new(Duration::from_secs(60), 2);
        c.insert("a".into(), SecretBytes::from_slice(b"1"));
        std::thread::sleep(Duration::from_millis(2));
        c.insert("b".into(), SecretBytes::from_slice(b"2"));
        std::thread::sleep(Duration::from_millis(2));
        c.insert("c".into(), SecretBytes::from_slice(b"3"));
        assert_eq!(c.len(), 2);
        assert!(c.get("a").is_none(), "oldest evicted");
        assert_eq!(
            c.get("c").map(|v| v.expose_secret().to_vec()),
            Some(b"3".to_vec())
        );
        let mut off = KeyCache::new(Duration::ZERO, 10);
        off.insert("a".into(), SecretBytes::from_slice(b"1"));
        assert!(off.is_empty());
        let mut short = KeyCache::new(Duration::from_millis(1), 10);
        short.insert("a".into(), SecretBytes::from_slice(b"1"));
        std::thread::sleep(Duration::from_millis(5));
        assert!(short.get("a").is_none());
    }
}
