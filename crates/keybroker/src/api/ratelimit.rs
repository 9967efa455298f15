//! Token buckets in a bounded map (no lock is held across `.await`): per caller after
//! authentication, and per client network ([`crate::denials::client_key`]) before it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Most callers tracked at once; beyond, idle (full) buckets are dropped, and if none is idle
/// the oldest is.
const MAX_KEYS: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Token buckets keyed by caller.
#[derive(Debug)]
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    /// `per_minute` sustained, `burst` at once (at least 1).
    pub fn new(per_minute: u32, burst: u32) -> RateLimiter {
        RateLimiter {
            per_second: f64::from(per_minute) / 60.0,
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `key`; false if there is none (429).
    pub fn check(&self, key: &str) -> bool {
        self.check_at(key, Instant::now())
    }

    fn check_at(&self, key: &str, now: Instant) -> bool {
        // A poisoned lock only means another request panicked mid-update: the map is still usable.
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !buckets.contains_key(key) && buckets.len() >= MAX_KEYS {
            self.evict(&mut buckets, now);
        }
        let bucket = buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: self.burst,
            last: now,
        });
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.per_second).min(self.burst);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Gives back the token [`RateLimiter::check`] took (the request turned out not to count,
    /// e.g. its authentication succeeded and only failures are limited).
    pub fn refund(&self, key: &str) {
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(bucket) = buckets.get_mut(key) {
            bucket.tokens = (bucket.tokens + 1.0).min(self.burst);
        }
    }

    fn evict(&self, buckets: &mut HashMap<String, Bucket>, now: Instant) {
        let (per_second, burst) = (self.per_second, self.burst);
        buckets.retain(|_, b| {
            b.tokens + now.saturating_duration_since(b.last).as_secs_f64() * per_second < burst
        });
        if buckets.len() >= MAX_KEYS {
            if let Some(oldest) = buckets
                .iter()
                .min_by_key(|(_, b)| b.last)
                .map(|(k, _)| k.clone())
            {
                buckets.remove(&oldest);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_refills_and_keys_are_separate() {
        let limiter = RateLimiter::new(60, 2);
        let t0 = Instant::now();
        assert!(limiter.check_at("a", t0));
        assert!(limiter.check_at("a", t0));
        assert!(!limiter.check_at("a", t0));
        assert!(limiter.check_at("b", t0));
        assert!(limiter.check_at("a", t0 + Duration::from_secs(1)));
        assert!(!limiter.check_at("a", t0 + Duration::from_secs(1)));
    }

    #[test]
    fn refund_gives_one_token_back_up_to_the_burst() {
        let limiter = RateLimiter::new(1, 1);
        assert!(limiter.check("a"));
        assert!(!limiter.check("a"));
        limiter.refund("a");
        limiter.refund("a");
        assert!(limiter.check("a"));
        assert!(!limiter.check("a"), "refunds never exceed the burst");
    }

    #[test]
    fn map_stays_bounded() {
        let limiter = RateLimiter::new(60, 5);
        let t0 = Instant::now();
        for i in 0..(MAX_KEYS + 50) {
            assert!(limiter.check_at(&format!("k{i}"), t0));
        }
        let len = limiter.buckets.lock().expect("lock").len();
        assert!(len <= MAX_KEYS, "{len}");
    }
}
