//! Back-pressure at the API's door.
//!
//! * **Request rate limits per account**, as EC2 throttles: each account
//!   has a token bucket for mutating actions and another for the rest
//!   (`Describe*`), so that a tenant polling hard can still change things,
//!   and one tenant's burst never spends another's tokens. A request when
//!   its bucket is empty answers `RequestLimitExceeded` (HTTP 503, EC2's
//!   XML), which boto3 and the AWS CLI retry with backoff. Requests are
//!   counted once authenticated, whatever they then answer; a request that
//!   fails authentication is not charged to the account it names.
//! * **Requests in progress**: beyond a bound, new requests answer
//!   `Unavailable` (HTTP 503) at once, before their body is read, instead of
//!   queueing without end in front of the store's writer. A request whose
//!   body does not arrive in time gives its place up (`Unavailable` too),
//!   so that stalled clients cannot hold every place.
//! * **Connections**: a connection must send each request's headers in
//!   time, and the connections open at once are bounded (see
//!   [`crate::http`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use model::AccountId;
use ratelimit::KeyedBuckets;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long a request's body may take to arrive by default: EC2's request
/// bodies are small, so only a stalled or hostile client takes this long.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a connection may take to send a request's headers by default,
/// from when it connects or was last answered.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// One token bucket's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Requests per second the bucket refills (a fraction is fine); zero
    /// or less means no limit.
    pub per_second: f64,
    /// Requests allowed at once from a full bucket (at least 1).
    pub burst: u32,
}

impl RateLimit {
    /// No limit at all.
    pub const UNLIMITED: RateLimit = RateLimit {
        per_second: 0.0,
        burst: 0,
    };

    fn buckets(self) -> Option<KeyedBuckets<AccountId>> {
        (self.per_second > 0.0).then(|| KeyedBuckets::new(self.per_second, self.burst.max(1)))
    }
}

/// The API's request limits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Each account's bucket for actions that change something.
    pub mutating: RateLimit,
    /// Each account's bucket for the other actions.
    pub non_mutating: RateLimit,
    /// Requests in progress at once over all accounts; beyond, `Unavailable`.
    /// Zero means no bound.
    pub max_in_flight: usize,
    /// How long a request may take to send its body once it is in
    /// progress; beyond, it is answered `Unavailable` and its place freed.
    pub body_timeout: Duration,
    /// Connections open at once; beyond, new ones wait in the kernel's
    /// backlog. Zero means no bound.
    pub max_connections: usize,
    /// How long a connection may take to send a request's headers; beyond,
    /// it is closed.
    pub header_timeout: Duration,
}

impl Limits {
    /// No rate limit and no bound on requests in progress or connections
    /// (the library's default: `flowgate serve` configures real ones);
    /// headers and bodies still get [`HEADER_TIMEOUT`] and [`BODY_TIMEOUT`].
    pub const UNLIMITED: Limits = Limits {
        mutating: RateLimit::UNLIMITED,
        non_mutating: RateLimit::UNLIMITED,
        max_in_flight: 0,
        body_timeout: BODY_TIMEOUT,
        max_connections: 0,
        header_timeout: HEADER_TIMEOUT,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::UNLIMITED
    }
}

/// The state behind [`Limits`]: the buckets of every account that made a
/// request, and the permits of requests in progress.
#[derive(Debug)]
pub(crate) struct Limiter {
    mutating: Option<KeyedBuckets<AccountId>>,
    non_mutating: Option<KeyedBuckets<AccountId>>,
    in_flight: Option<Arc<Semaphore>>,
}

impl Limiter {
    pub(crate) fn new(limits: &Limits) -> Limiter {
        Limiter {
            mutating: limits.mutating.buckets(),
            non_mutating: limits.non_mutating.buckets(),
            in_flight: (limits.max_in_flight > 0).then(|| Arc::new(Semaphore::new(limits.max_in_flight))),
        }
    }

    /// Whether `account` may make one more request of its kind now; takes
    /// a token if so.
    pub(crate) fn admit(&self, account: &AccountId, mutating: bool, now: Instant) -> bool {
        let buckets = if mutating {
            &self.mutating
        } else {
            &self.non_mutating
        };
        match buckets {
            Some(buckets) => buckets.try_take(account.clone(), now),
            None => true,
        }
    }

    /// A permit for one more request in progress, or `None` when as many
    /// as allowed already are. Unbounded: always a permit.
    pub(crate) fn enter(&self) -> Result<Option<OwnedSemaphorePermit>, ()> {
        match &self.in_flight {
            Some(semaphore) => semaphore.clone().try_acquire_owned().map(Some).map_err(|_| ()),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(id: &str) -> AccountId {
        AccountId::parse(id).unwrap_or_else(|e| panic!("{id}: {e}"))
    }

    #[test]
    fn accounts_and_kinds_have_separate_buckets() {
        let limiter = Limiter::new(&Limits {
            mutating: RateLimit {
                per_second: 1.0,
                burst: 1,
            },
            non_mutating: RateLimit {
                per_second: 1.0,
                burst: 2,
            },
            ..Limits::UNLIMITED
        });
        let (alice, bob) = (account("111111111111"), account("222222222222"));
        let t0 = Instant::now();
        assert!(limiter.admit(&alice, false, t0));
        assert!(limiter.admit(&alice, false, t0));
        assert!(!limiter.admit(&alice, false, t0), "alice's reads are spent");
        assert!(limiter.admit(&alice, true, t0), "her writes are not");
        assert!(!limiter.admit(&alice, true, t0));
        assert!(limiter.admit(&bob, false, t0), "bob is not limited by alice");
        assert!(limiter.admit(&bob, true, t0));
    }

    #[test]
    fn unlimited_admits_everything_and_bounds_nothing() {
        let limiter = Limiter::new(&Limits::UNLIMITED);
        let alice = account("111111111111");
        let t0 = Instant::now();
        assert!((0..10_000).all(|_| limiter.admit(&alice, true, t0)));
        let permits: Vec<_> = (0..100).map(|_| limiter.enter()).collect();
        assert!(permits.iter().all(|p| matches!(p, Ok(None))));
    }

    #[test]
    fn requests_in_flight_are_bounded() {
        let limiter = Limiter::new(&Limits {
            max_in_flight: 2,
            ..Limits::UNLIMITED
        });
        let first = limiter.enter();
        let second = limiter.enter();
        assert!(matches!((&first, &second), (Ok(Some(_)), Ok(Some(_)))));
        assert!(limiter.enter().is_err(), "a third is turned away");
        drop(first);
        assert!(
            matches!(limiter.enter(), Ok(Some(_))),
            "a finished request frees its place"
        );
    }
}
