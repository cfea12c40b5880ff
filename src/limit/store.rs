//! Where a route's counters live: in this process (the default), or in
//! Redis, shared by every replica.
//!
//! With Redis, every request is also counted in this process's limiter,
//! and when Redis gives no verdict (down, slower than its timeout, a reply
//! that makes no sense) that in-process count decides instead: the request
//! never waits longer than the timeout, and the limit still holds per
//! replica (at worst `replicas × burst` in all) until Redis is back. The
//! failure is counted (`chatwarden_limit_store_errors_total`) and logged
//! at warn, at most once per [`WARN_EVERY`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::redis::{RedisSettings, RedisStore};
use super::{Limits, RateLimit};

/// The store of a snapshot's rate limits.
#[derive(Clone, Default)]
pub enum LimitStore {
    /// Per-process counters (governor).
    #[default]
    Memory,
    /// Shared counters in Redis, with the in-process ones as fallback.
    Redis(Arc<RedisStore>),
}

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checked {
    /// `Err(wait)` when the request is over the limit.
    pub verdict: Result<(), Duration>,
    /// Set when the shared store gave no verdict and this process decided:
    /// the metrics label of what went wrong.
    pub fallback: Option<&'static str>,
}

/// Smallest gap between two warnings about the shared store.
pub const WARN_EVERY: Duration = Duration::from_secs(10);

impl LimitStore {
    pub fn redis(settings: RedisSettings) -> LimitStore {
        LimitStore::Redis(Arc::new(RedisStore::new(settings)))
    }

    /// The shared store's settings, if any.
    pub fn redis_settings(&self) -> Option<&RedisSettings> {
        match self {
            LimitStore::Memory => None,
            LimitStore::Redis(r) => Some(r.settings()),
        }
    }

    /// Count one request of `key` on `route` under `limit`. `local` holds
    /// the in-process counters, kept across reloads.
    pub async fn check(
        &self,
        local: &Limits,
        route: &str,
        limit: &RateLimit,
        key: &str,
    ) -> Checked {
        let here = local.limiter(route, limit).check(key);
        let LimitStore::Redis(shared) = self else {
            return Checked {
                verdict: here,
                fallback: None,
            };
        };
        // Boxed: the Redis exchange's future would otherwise sit inline in
        // every request's filter future, which pingora moves around.
        match Box::pin(shared.check(route, limit, key)).await {
            Ok(verdict) => Checked {
                verdict,
                fallback: None,
            },
            Err(e) => {
                if let Some(suppressed) = WARNINGS.admit(Instant::now()) {
                    tracing::warn!(
                        redis = %shared.settings().target,
                        error = %e,
                        suppressed,
                        "shared rate-limit store failed; this replica's own counters decide until it is back"
                    );
                }
                Checked {
                    verdict: here,
                    fallback: Some(e.kind()),
                }
            }
        }
    }
}

/// One warning per process per [`WARN_EVERY`], however many snapshots and
/// stores come and go.
static WARNINGS: LogThrottle = LogThrottle::new();

/// Lets one log line through per [`WARN_EVERY`] and counts the rest.
pub struct LogThrottle {
    /// Milliseconds since the first call at which the next line may go.
    next_ms: AtomicU64,
    suppressed: AtomicU64,
    origin: std::sync::OnceLock<Instant>,
}

impl LogThrottle {
    pub const fn new() -> LogThrottle {
        LogThrottle {
            next_ms: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
            origin: std::sync::OnceLock::new(),
        }
    }

    /// `Some(lines suppressed since the last one)` if a line may be logged now.
    pub fn admit(&self, now: Instant) -> Option<u64> {
        let origin = *self.origin.get_or_init(|| now);
        let ms =
            u64::try_from(now.saturating_duration_since(origin).as_millis()).unwrap_or(u64::MAX);
        let next = self.next_ms.load(Ordering::Relaxed);
        let gap = WARN_EVERY.as_millis() as u64;
        if ms >= next
            && self
                .next_ms
                .compare_exchange(next, ms + gap, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::Relaxed));
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

impl Default for LogThrottle {
    fn default() -> Self {
        LogThrottle::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limit::redis::RedisTarget;
    use crate::limit::LimitKey;

    fn limit(burst: u32) -> RateLimit {
        RateLimit::new(LimitKey::Subject, Duration::from_secs(3600), burst)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn warnings_are_throttled_and_count_what_they_skipped() {
        let t = LogThrottle::new();
        let t0 = Instant::now();
        assert_eq!(t.admit(t0), Some(0), "the first failure is logged");
        assert_eq!(t.admit(t0 + Duration::from_secs(1)), None);
        assert_eq!(t.admit(t0 + Duration::from_secs(9)), None);
        assert_eq!(
            t.admit(t0 + WARN_EVERY),
            Some(2),
            "the next line says how many were skipped"
        );
        assert_eq!(t.admit(t0 + WARN_EVERY + Duration::from_millis(1)), None);
    }

    #[tokio::test]
    async fn memory_store_counts_in_process() {
        let local = Limits::default();
        let store = LimitStore::Memory;
        let l = limit(1);
        let first = store.check(&local, "export", &l, "priya").await;
        assert_eq!(
            first,
            Checked {
                verdict: Ok(()),
                fallback: None
            }
        );
        let second = store.check(&local, "export", &l, "priya").await;
        assert!(second.verdict.is_err(), "a burst of one");
        assert_eq!(second.fallback, None);
    }

    #[tokio::test]
    async fn an_unreachable_redis_falls_back_to_this_process() {
        // A port nothing listens on: bind one, then let it go.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("{e}"));
        let store = LimitStore::redis(RedisSettings {
            target: RedisTarget::parse(&format!("redis://127.0.0.1:{port}"))
                .unwrap_or_else(|e| panic!("{e}")),
            key_prefix: "t:".into(),
            timeout: Duration::from_millis(200),
            tls: None,
        });
        let local = Limits::default();
        let l = limit(2);
        let a = store.check(&local, "export", &l, "priya").await;
        assert_eq!(a.verdict, Ok(()), "decided here");
        assert_eq!(a.fallback, Some("connect"));
        let b = store.check(&local, "export", &l, "priya").await;
        assert_eq!(
            b.fallback,
            Some("cooling_down"),
            "the next check does not knock again at once"
        );
        let c = store.check(&local, "export", &l, "priya").await;
        assert!(c.verdict.is_err(), "the in-process limit still holds");
    }
}
