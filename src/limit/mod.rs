//! Rate limits: how many requests one key (a caller, a client address, or
//! everyone together) may make on one route, as a GCRA (governor): `burst`
//! requests at once, then one more every `per / burst`. Over time that is
//! `burst` per `per`; a caller who waited long enough to have a full
//! allowance can make at most `2 × burst − 1` within any one `per`.
//!
//! Pure and in-process: no pingora, no config loader. The proxy keeps one
//! [`Limiter`] per route and quota for the life of the process, so a hot
//! reload that leaves a route's limit unchanged keeps its counters.
//!
//! Counters shared across replicas live in Redis ([`store`]): the same
//! rule as one atomic script ([`script`]), over a small client ([`redis`],
//! [`resp`]) in plain text or TLS ([`tls`]), with this process's counters
//! as the fallback.

pub mod redis;
pub mod resp;
pub mod script;
pub mod store;
pub mod tls;

pub use store::{Checked, LimitStore};

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasher;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

/// A route's `rate_limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RateLimit {
    pub key: LimitKey,
    pub per: Duration,
    pub burst: NonZeroU32,
}

/// Whose requests are counted together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitKey {
    /// Each authenticated caller (`sub`); a route without a caller counts
    /// per client address instead.
    Subject,
    /// Each client address, as resolved through trusted proxies.
    ClientIp,
    /// Everyone together: a ceiling for the route.
    Route,
}

/// Why a rate limit was refused at load.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error("rate_limit.key `{0}` must be sub, ip or route")]
    UnknownKey(String),
    #[error("rate_limit.burst must be between 1 and {MAX_BURST}")]
    Burst,
    #[error(
        "rate_limit.per must be at least 1s and at most 1 day, and give each request at least 1ms"
    )]
    Period,
}

/// The largest burst accepted.
pub const MAX_BURST: u32 = 1_000_000;

/// Checks between sweeps of idle keys.
const SWEEP_EVERY: u64 = 4096;

impl LimitKey {
    pub fn parse(text: &str) -> Result<LimitKey, LimitError> {
        match text {
            "sub" => Ok(LimitKey::Subject),
            "ip" => Ok(LimitKey::ClientIp),
            "route" => Ok(LimitKey::Route),
            other => Err(LimitError::UnknownKey(other.to_owned())),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LimitKey::Subject => "sub",
            LimitKey::ClientIp => "ip",
            LimitKey::Route => "route",
        }
    }
}

impl RateLimit {
    pub fn new(key: LimitKey, per: Duration, burst: u32) -> Result<RateLimit, LimitError> {
        let burst = NonZeroU32::new(burst)
            .filter(|b| b.get() <= MAX_BURST)
            .ok_or(LimitError::Burst)?;
        let each = per / burst.get();
        if per < Duration::from_secs(1)
            || per > Duration::from_secs(86_400)
            || each < Duration::from_millis(1)
        {
            return Err(LimitError::Period);
        }
        Ok(RateLimit { key, per, burst })
    }

    fn quota(&self) -> Quota {
        // `new` guarantees a period of at least 1ms.
        Quota::with_period(self.per / self.burst.get())
            .unwrap_or_else(|| Quota::per_hour(NonZeroU32::MIN))
            .allow_burst(self.burst)
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} per {}s per {}",
            self.burst,
            self.per.as_secs(),
            self.key.as_str()
        )
    }
}

/// The counters of one route's limit.
pub struct Limiter<C: Clock = DefaultClock> {
    limiter: RateLimiter<u64, DefaultKeyedStateStore<u64>, C, NoOpMiddleware<C::Instant>>,
    clock: C,
    /// Keys are hashed with a per-limiter random seed: no allocation per
    /// check, and nobody can aim two keys at one counter.
    hasher: RandomState,
    checks: AtomicU64,
}

impl Limiter<DefaultClock> {
    pub fn new(limit: &RateLimit) -> Limiter<DefaultClock> {
        Limiter::with_clock(limit, DefaultClock::default())
    }
}

impl<C: Clock + Clone> Limiter<C> {
    pub fn with_clock(limit: &RateLimit, clock: C) -> Limiter<C> {
        Limiter {
            limiter: RateLimiter::dashmap_with_clock(limit.quota(), clock.clone()),
            clock,
            hasher: RandomState::new(),
            checks: AtomicU64::new(0),
        }
    }

    /// Counts one request for `key`: `Ok` if it is within the limit, else
    /// how long until the next one would be.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        let n = self.checks.fetch_add(1, Ordering::Relaxed);
        if n % SWEEP_EVERY == SWEEP_EVERY - 1 {
            // Forget keys whose counters are back to full.
            self.limiter.retain_recent();
        }
        let hashed = self.hasher.hash_one(key);
        self.limiter
            .check_key(&hashed)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Keys currently tracked.
    pub fn len(&self) -> usize {
        self.limiter.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Every route's limiter, kept across hot reloads: a reload that leaves a
/// route's limit as it was keeps counting where it was (a changed limit
/// starts fresh).
#[derive(Default)]
pub struct Limits {
    by_route: RwLock<HashMap<String, Vec<RouteLimiter>>>,
}

/// A route's limit and its counters.
type RouteLimiter = (RateLimit, Arc<Limiter>);

impl Limits {
    /// The limiter of `route` under `limit`, made on first use.
    pub fn limiter(&self, route: &str, limit: &RateLimit) -> Arc<Limiter> {
        {
            let map = self.by_route.read().unwrap_or_else(PoisonError::into_inner);
            if let Some((_, l)) = map
                .get(route)
                .and_then(|list| list.iter().find(|(q, _)| q == limit))
            {
                return l.clone();
            }
        }
        let mut map = self
            .by_route
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let list = map.entry(route.to_owned()).or_default();
        if let Some((_, l)) = list.iter().find(|(q, _)| q == limit) {
            return l.clone();
        }
        // A route keeps only its current limit's counters.
        list.clear();
        let l = Arc::new(Limiter::new(limit));
        list.push((*limit, l.clone()));
        l
    }
}

/// `Retry-After` in whole seconds, rounded up (never 0: "now" would invite
/// an immediate retry that is refused again).
pub fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use governor::clock::FakeRelativeClock;

    use super::*;

    fn limit(per_secs: u64, burst: u32) -> RateLimit {
        RateLimit::new(LimitKey::Subject, Duration::from_secs(per_secs), burst)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_burst_then_one_per_interval() {
        let clock = FakeRelativeClock::default();
        let l = Limiter::with_clock(&limit(3600, 3), clock.clone());
        for i in 0..3 {
            assert_eq!(l.check("amelia"), Ok(()), "request {i} of the burst");
        }
        let wait = l.check("amelia").expect_err("the fourth is refused");
        assert_eq!(
            wait,
            Duration::from_secs(1200),
            "one comes back every 20 minutes"
        );
        assert_eq!(
            l.check("oliver"),
            Ok(()),
            "other callers have their own count"
        );
        clock.advance(Duration::from_secs(1199));
        assert!(l.check("amelia").is_err(), "not yet");
        clock.advance(Duration::from_secs(1));
        assert_eq!(l.check("amelia"), Ok(()), "after 20 minutes, one more");
        assert!(l.check("amelia").is_err(), "and only one");
    }

    #[test]
    fn steady_rate_and_the_bound_on_any_window() {
        let clock = FakeRelativeClock::default();
        let l = Limiter::with_clock(&limit(60, 5), clock.clone());
        let mut allowed_at = Vec::new();
        for second in 0..600u64 {
            for _ in 0..3 {
                if l.check("k").is_ok() {
                    allowed_at.push(second);
                }
            }
            clock.advance(Duration::from_secs(1));
        }
        for (i, &t) in allowed_at.iter().enumerate() {
            let in_window = allowed_at[i..].iter().take_while(|&&u| u < t + 60).count();
            assert!(
                in_window <= 9,
                "at most 2 × burst − 1 within 60s of {t}: {in_window}"
            );
        }
        assert!(
            (50..=55).contains(&allowed_at.len()),
            "a burst of 5, then one per 12s over 600s: {}",
            allowed_at.len()
        );
    }

    #[test]
    fn limits_are_validated() {
        let cases = [
            (0, 1, LimitError::Period),
            (1, 0, LimitError::Burst),
            (1, MAX_BURST + 1, LimitError::Burst),
            (90_000, 1, LimitError::Period),
            (1, 2000, LimitError::Period),
        ];
        for (per, burst, want) in cases {
            assert_eq!(
                RateLimit::new(LimitKey::Route, Duration::from_secs(per), burst),
                Err(want.clone()),
                "per {per}s burst {burst}"
            );
        }
        assert_eq!(LimitKey::parse("ip"), Ok(LimitKey::ClientIp));
        assert!(LimitKey::parse("user").is_err());
    }

    #[test]
    fn limiters_outlive_reloads_unless_the_limit_changes() {
        let limits = Limits::default();
        let a = limit(60, 2);
        let first = limits.limiter("export", &a);
        assert!(first.check("k").is_ok() && first.check("k").is_ok());
        assert!(
            limits.limiter("export", &a).check("k").is_err(),
            "the same route and limit keep their counters"
        );
        assert!(
            limits.limiter("export", &limit(60, 3)).check("k").is_ok(),
            "a new limit counts afresh"
        );
        assert!(
            limits.limiter("other", &a).check("k").is_ok(),
            "routes count apart"
        );
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1500)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(1200)), 1200);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }

    #[test]
    fn idle_keys_are_swept() {
        let clock = FakeRelativeClock::default();
        let l = Limiter::with_clock(&limit(1, 1), clock.clone());
        for i in 0..100 {
            let _ = l.check(&format!("caller-{i}"));
        }
        assert_eq!(l.len(), 100);
        clock.advance(Duration::from_secs(5));
        for _ in 0..SWEEP_EVERY {
            let _ = l.check("busy");
        }
        assert!(l.len() <= 2, "keys back to full are forgotten: {}", l.len());
    }
}
