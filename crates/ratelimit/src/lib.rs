//! Token buckets: a [`TokenBucket`] lets bursts through up to a capacity
//! and refills at a steady rate; [`KeyedBuckets`] keeps one per key (an
//! account, a switch). Pure: time is passed in, so everything is tested
//! without sleeping. The controller limits packet-ins per switch with it,
//! the EC2 API requests per account.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A token bucket.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    capacity: f64,
    per_second: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket of `burst` tokens refilled at `per_second`.
    pub fn new(per_second: u32, burst: u32, now: Instant) -> TokenBucket {
        TokenBucket::with_rate(f64::from(per_second), burst, now)
    }

    /// A full bucket of `burst` tokens refilled at `per_second`, which may
    /// be a fraction (0.5 is one token every two seconds). A negative or
    /// non-finite rate refills nothing.
    pub fn with_rate(per_second: f64, burst: u32, now: Instant) -> TokenBucket {
        let per_second = if per_second.is_finite() {
            per_second.max(0.0)
        } else {
            0.0
        };
        TokenBucket {
            capacity: f64::from(burst.max(1)),
            per_second,
            tokens: f64::from(burst.max(1)),
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last);
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed.as_secs_f64() * self.per_second).min(self.capacity);
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether the bucket is full at `now`: forgetting it then changes
    /// nothing, since a new bucket starts full.
    pub fn is_full(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= self.capacity
    }

    /// How long until a token is available.
    pub fn wait_time(&self) -> Duration {
        if self.tokens >= 1.0 || self.per_second <= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - self.tokens) / self.per_second)
        }
    }
}

/// Keys kept before full buckets are forgotten: one bucket per key would
/// otherwise grow without bound with the keys ever seen.
const PRUNE_ABOVE: usize = 4096;

/// One [`TokenBucket`] per key, all with the same rate and burst, created
/// full on a key's first use. Safe to share between threads.
#[derive(Debug)]
pub struct KeyedBuckets<K> {
    per_second: f64,
    burst: u32,
    buckets: Mutex<HashMap<K, TokenBucket>>,
}

impl<K: Hash + Eq> KeyedBuckets<K> {
    /// Buckets of `burst` tokens refilled at `per_second` each.
    pub fn new(per_second: f64, burst: u32) -> KeyedBuckets<K> {
        KeyedBuckets {
            per_second,
            burst,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token from `key`'s bucket if it has one.
    pub fn try_take(&self, key: K, now: Instant) -> bool {
        // A poisoned lock still holds whole buckets: a bucket is only ever
        // replaced by arithmetic that cannot panic halfway.
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= PRUNE_ABOVE && !buckets.contains_key(&key) {
            buckets.retain(|_, bucket| !bucket.is_full(now));
        }
        buckets
            .entry(key)
            .or_insert_with(|| TokenBucket::with_rate(self.per_second, self.burst, now))
            .try_take(now)
    }

    /// How many keys have a bucket.
    pub fn len(&self) -> usize {
        self.buckets.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether no key has a bucket.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_refills_at_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, 3, t0);
        assert!(b.try_take(t0));
        assert!(b.try_take(t0));
        assert!(b.try_take(t0));
        assert!(!b.try_take(t0));
        // 100 ms at 10/s is one more token.
        assert!(b.try_take(t0 + Duration::from_millis(100)));
        assert!(!b.try_take(t0 + Duration::from_millis(100)));
        // Never more than the burst, however long the pause.
        let later = t0 + Duration::from_secs(60);
        assert!((0..3).all(|_| b.try_take(later)));
        assert!(!b.try_take(later));
    }

    #[test]
    fn fractional_rates_and_time_going_backwards() {
        let t0 = Instant::now();
        let mut b = TokenBucket::with_rate(0.5, 1, t0);
        assert!(b.try_take(t0));
        assert!(!b.try_take(t0 + Duration::from_secs(1)));
        assert!(b.try_take(t0 + Duration::from_secs(2)));
        // An earlier instant (threads racing to the lock) adds nothing and
        // does not move the clock back.
        assert!(!b.try_take(t0));
        assert!(!b.try_take(t0 + Duration::from_secs(3)));
        assert!(b.try_take(t0 + Duration::from_secs(4)));
        let mut never = TokenBucket::with_rate(f64::NAN, 1, t0);
        assert!(never.try_take(t0));
        assert!(!never.try_take(t0 + Duration::from_secs(3600)));
    }

    #[test]
    fn each_key_has_its_own_bucket() {
        let t0 = Instant::now();
        let buckets = KeyedBuckets::new(1.0, 2);
        assert!(buckets.try_take("alice", t0));
        assert!(buckets.try_take("alice", t0));
        assert!(!buckets.try_take("alice", t0));
        assert!(buckets.try_take("bob", t0), "bob is not limited by alice");
        assert!(buckets.try_take("alice", t0 + Duration::from_secs(1)));
        assert_eq!(buckets.len(), 2);
    }

    #[test]
    fn full_buckets_are_forgotten_beyond_the_bound() {
        let t0 = Instant::now();
        let buckets = KeyedBuckets::new(1.0, 1);
        for key in 0..PRUNE_ABOVE {
            assert!(buckets.try_take(key, t0));
        }
        // Every bucket is empty: none can be forgotten.
        assert!(buckets.try_take(PRUNE_ABOVE, t0));
        assert_eq!(buckets.len(), PRUNE_ABOVE + 1);
        // A second later they are all full again, and a new key prunes them.
        let later = t0 + Duration::from_secs(1);
        assert!(buckets.try_take(PRUNE_ABOVE + 1, later));
        assert_eq!(buckets.len(), 1);
    }
}
