//! Compiling `rate_limits` (where route rate limits count) into the limit
//! core's store, with every problem located in the file.

use std::time::Duration;

use super::compile::Compiler;
use super::duration::parse_duration;
use super::raw::{RawConfig, RawRedis};
use crate::limit::redis::{RedisSettings, RedisTarget};
use crate::limit::LimitStore;

/// Prepended to every Redis key unless the file says otherwise.
pub const DEFAULT_KEY_PREFIX: &str = "chatwarden:rl:";
/// How long a check waits for Redis unless the file says otherwise.
pub const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_millis(50);
/// The longest `rate_limits.redis.timeout` accepted: every limited request
/// may wait this long when Redis is slow.
pub const MAX_REDIS_TIMEOUT: Duration = Duration::from_secs(1);

impl Compiler<'_> {
    /// `rate_limits`: `memory` (default) or `redis`. A `redis` block is
    /// checked even when `store: memory` leaves it unused, so switching
    /// back to Redis cannot surprise.
    pub(super) fn limit_store(&mut self, raw: &RawConfig) -> LimitStore {
        let Some(section) = &raw.rate_limits else {
            return LimitStore::Memory;
        };
        let redis = section.redis.as_ref().map(|r| self.redis(r));
        match section.store.as_ref().map(|s| (s.value.as_str(), s)) {
            None | Some(("memory", _)) => LimitStore::Memory,
            Some(("redis", at)) => match redis {
                Some(Some(settings)) => LimitStore::redis(settings),
                // Already reported.
                Some(None) => LimitStore::Memory,
                None => {
                    self.err(
                        &at.referenced,
                        "rate_limits.store redis needs a rate_limits.redis section with a url"
                            .to_string(),
                    );
                    LimitStore::Memory
                }
            },
            Some((other, at)) => {
                self.err(
                    &at.referenced,
                    format!("rate_limits.store `{other}` must be memory or redis"),
                );
                LimitStore::Memory
            }
        }
    }

    fn redis(&mut self, r: &RawRedis) -> Option<RedisSettings> {
        let url = self.string(&r.url)?;
        let target = match RedisTarget::parse(&url) {
            Ok(t) => t,
            Err(e) => {
                self.err(&r.url.referenced, format!("rate_limits.redis.url: {e}"));
                return None;
            }
        };
        if target.password.is_some() && !r.url.value.contains('$') {
            self.err(
                &r.url.referenced,
                "rate_limits.redis.url has a password written in the file: take the url (or the password) from an environment variable, e.g. url: ${REDIS_URL}".to_string(),
            );
            return None;
        }
        let key_prefix = match &r.key_prefix {
            Some(p) => self.string(p)?,
            None => DEFAULT_KEY_PREFIX.to_string(),
        };
        let timeout = match &r.timeout {
            None => DEFAULT_REDIS_TIMEOUT,
            Some(t) => match parse_duration(&t.value) {
                Ok(d) if d <= MAX_REDIS_TIMEOUT => d,
                Ok(_) => {
                    self.err(
                        &t.referenced,
                        format!(
                            "rate_limits.redis.timeout may be at most {}ms: a request waits this long when Redis is slow",
                            MAX_REDIS_TIMEOUT.as_millis()
                        ),
                    );
                    return None;
                }
                Err(msg) => {
                    self.err(&t.referenced, format!("rate_limits.redis.timeout: {msg}"));
                    return None;
                }
            },
        };
        Some(RedisSettings {
            target,
            key_prefix,
            timeout,
        })
    }
}
