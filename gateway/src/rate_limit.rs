//! Token-bucket rate limits, kept per key (a user id or a client address) in
//! this process. Each gateway replica limits on its own: the limits guard the
//! services from floods, they are not an exact global quota.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Beyond this many tracked keys, full buckets (idle keys) are dropped.
const MAX_TRACKED_KEYS: usize = 100_000;

pub struct RateLimiter {
    buckets: Mutex<HashMap<String, Bucket>>,
    capacity: f64,
    refill_per_second: f64,
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl RateLimiter {
    /// Allows `allowance` calls per `window`, refilled continuously.
    pub fn new(allowance: u32, window: Duration) -> Self {
        let capacity = f64::from(allowance.max(1));
        Self {
            buckets: Mutex::default(),
            capacity,
            refill_per_second: capacity / window.as_secs_f64().max(0.001),
        }
    }

    /// Takes one token for `key`; false when its allowance is used up.
    pub fn allow(&self, key: &str) -> bool {
        self.allow_at(key, Instant::now())
    }

    fn allow_at(&self, key: &str, now: Instant) -> bool {
        let mut buckets = self.buckets.lock().expect("rate limiter lock poisoned");
        if buckets.len() >= MAX_TRACKED_KEYS && !buckets.contains_key(key) {
            let (capacity, rate) = (self.capacity, self.refill_per_second);
            buckets.retain(|_, bucket| {
                bucket.tokens + now.duration_since(bucket.updated).as_secs_f64() * rate < capacity
            });
        }
        let bucket = buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: self.capacity,
            updated: now,
        });
        let refilled = now.duration_since(bucket.updated).as_secs_f64() * self.refill_per_second;
        bucket.tokens = (bucket.tokens + refilled).min(self.capacity);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_allowance_is_spent_then_refilled() {
        let limiter = RateLimiter::new(2, Duration::from_secs(2));
        let start = Instant::now();
        assert!(limiter.allow_at("a", start));
        assert!(limiter.allow_at("a", start));
        assert!(!limiter.allow_at("a", start));
        assert!(limiter.allow_at("b", start), "keys are limited separately");
        assert!(limiter.allow_at("a", start + Duration::from_secs(1)));
        assert!(!limiter.allow_at("a", start + Duration::from_secs(1)));
    }
}
