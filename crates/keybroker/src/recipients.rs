//! The answers of `GET /v1/groups/{group}/recipient`, held for a short time.
//!
//! The route needs no credential, so without a cache every request is a store read (an
//! OpenBao round trip on the vault backend) that anyone can cause. Entries (the recipient, or
//! "no such group") live `ttl`; the map is bounded ([`MAX_ENTRIES`], least recently used out).
//! This broker drops a group's entry when it creates, rotates or deletes it; a change made
//! through *another* broker sharing the OpenBao is seen here at most `ttl` later. A stale
//! recipient is harmless for rotation (older versions still decrypt) and, after a deletion,
//! only lets a client encrypt to a key nobody can use any more.

use std::num::NonZeroUsize;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use lru::LruCache;

use crate::service::Recipient;

/// Most groups held.
pub(crate) const MAX_ENTRIES: usize = 1024;

/// A cached answer: the recipient, or `None` for a group that does not exist.
pub(crate) type Answer = Option<Recipient>;

/// See the module documentation.
pub(crate) struct RecipientCache {
    ttl: Duration,
    inner: Mutex<Inner>,
}

struct Inner {
    entries: LruCache<String, (Instant, Answer)>,
    /// Bumped by every [`RecipientCache::forget`]: an answer read across a change made
    /// through this broker is not kept.
    generation: u64,
    /// Store reads caused by misses (for tests and metrics).
    misses: u64,
}

/// A ticket for one store read: when it was taken and the generation then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ticket {
    at: Instant,
    generation: u64,
}

impl std::fmt::Debug for RecipientCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecipientCache")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl RecipientCache {
    /// A cache whose entries live `ttl` (zero: nothing is cached).
    pub(crate) fn new(ttl: Duration) -> RecipientCache {
        RecipientCache {
            ttl,
            inner: Mutex::new(Inner {
                entries: LruCache::new(
                    NonZeroUsize::new(MAX_ENTRIES).expect("MAX_ENTRIES is not zero"),
                ),
                generation: 0,
                misses: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A poisoned lock only means a panic elsewhere: the map is still usable.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The answer for `group` if one younger than the TTL is held; else a ticket for the
    /// store read whose answer goes to [`RecipientCache::put`].
    pub(crate) fn get(&self, group: &str) -> Result<Answer, Ticket> {
        self.get_at(group, Instant::now())
    }

    fn get_at(&self, group: &str, now: Instant) -> Result<Answer, Ticket> {
        let mut inner = self.lock();
        match inner.entries.get(group) {
            Some((at, answer)) if now.saturating_duration_since(*at) < self.ttl => {
                return Ok(answer.clone())
            }
            Some(_) => {
                inner.entries.pop(group);
            }
            None => {}
        }
        inner.misses += 1;
        Err(Ticket {
            at: now,
            generation: inner.generation,
        })
    }

    /// Keeps `answer`, read with `ticket`, unless this broker changed a group since.
    pub(crate) fn put(&self, group: &str, answer: Answer, ticket: Ticket) {
        if self.ttl.is_zero() {
            return;
        }
        let mut inner = self.lock();
        if inner.generation == ticket.generation {
            inner.entries.put(group.to_owned(), (ticket.at, answer));
        }
    }

    /// Drops `group` (created, rotated or deleted through this broker).
    pub(crate) fn forget(&self, group: &str) {
        let mut inner = self.lock();
        inner.generation = inner.generation.wrapping_add(1);
        inner.entries.pop(group);
    }

    /// Store reads caused by misses so far.
    pub(crate) fn misses(&self) -> u64 {
        self.lock().misses
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(v: u32) -> Answer {
        Some(Recipient {
            group: "vo.example.org".parse().expect("group"),
            version: v,
            recipient: format!("age1-v{v}"),
            broker: "https://b".into(),
        })
    }

    #[test]
    fn hit_within_ttl_miss_after_and_forget_drops() {
        let c = RecipientCache::new(Duration::from_secs(10));
        let t0 = Instant::now();
        let ticket = c.get_at("g", t0).expect_err("empty");
        c.put("g", answer(1), ticket);
        assert_eq!(c.get_at("g", t0 + Duration::from_secs(9)), Ok(answer(1)));
        assert!(c.get_at("g", t0 + Duration::from_secs(10)).is_err());
        let ticket = c.get_at("g", t0).expect_err("expired");
        c.put("g", None, ticket);
        assert_eq!(c.get_at("g", t0), Ok(None), "absence is cached too");
        c.forget("g");
        assert!(c.get_at("g", t0).is_err());
    }

    #[test]
    fn an_answer_read_across_a_local_change_is_not_kept() {
        let c = RecipientCache::new(Duration::from_secs(10));
        let ticket = c.get("g").expect_err("empty");
        c.forget("g"); // a rotation finished while the read was under way
        c.put("g", answer(1), ticket);
        assert!(c.get("g").is_err());
    }

    #[test]
    fn zero_ttl_caches_nothing_and_size_is_bounded() {
        let c = RecipientCache::new(Duration::ZERO);
        let ticket = c.get("g").expect_err("empty");
        c.put("g", answer(1), ticket);
        assert!(c.get("g").is_err());
        let c = RecipientCache::new(Duration::from_secs(10));
        for i in 0..(MAX_ENTRIES + 10) {
            let name = format!("g{i}");
            let ticket = c.get(&name).expect_err("new");
            c.put(&name, None, ticket);
        }
        assert!(c.lock().entries.len() <= MAX_ENTRIES);
    }
}
