//! Runtime revocations shared by every replica, in the Redis of the shared
//! rate-limit store (same server, key prefix and client). A subject revoked
//! through one replica's admin endpoint is refused by that replica at once
//! and by the others within `auth.revoked.sync_every`.
//!
//! One Redis sorted set, `<key_prefix>revoked`: member the subject, score
//! its expiry (milliseconds since the Unix epoch). Each replica runs one
//! script per sync that drops expired entries, adds the replica's own (a
//! later expiry wins) and answers the whole set, which the replica merges
//! into its own. So:
//! - a revocation made while Redis was unreachable reaches the others once
//!   Redis is back;
//! - a Redis that lost its data (restarted without persistence) is filled
//!   again by the replicas that still hold the revocations;
//! - an entry only ever ends by expiring; there is no un-revoke.
//!
//! Replicas' clocks are assumed NTP-close: an entry may end a few
//! milliseconds apart on two of them.

use std::sync::Arc;
use std::time::Duration;

use pingora_core::server::ShutdownWatch;

use super::RuntimeRevocations;
use crate::config::ConfigStore;
use crate::limit::redis::{RedisStore, Script, StoreError};
use crate::limit::resp::Reply;
use crate::limit::script::ReplyError;
use crate::limit::LimitStore;

/// `ARGV[1]`: now (ms); then pairs of subject and expiry (ms) this replica
/// holds. Replies the set, as `{subject, expiry, …}`. The key expires with
/// its last entry.
pub const SYNC_SCRIPT: &str = r"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
for i = 2, #ARGV - 1, 2 do
  redis.call('ZADD', KEYS[1], 'GT', ARGV[i + 1], ARGV[i])
end
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if last[2] then redis.call('PEXPIREAT', KEYS[1], last[2]) end
return redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
";

static SYNC: Script = Script::new(SYNC_SCRIPT);

/// How often each replica syncs unless `auth.revoked.sync_every` says.
pub const DEFAULT_SYNC_EVERY: Duration = Duration::from_secs(1);

/// The set's Redis key.
pub fn redis_key(prefix: &str) -> Vec<u8> {
    format!("{prefix}revoked").into_bytes()
}

/// Push this replica's revocations to `store` and take in everyone's; how
/// many subjects were new here.
pub async fn sync(
    store: &RedisStore,
    revocations: &RuntimeRevocations,
    now_ms: i64,
) -> Result<usize, StoreError> {
    let key = redis_key(&store.settings().key_prefix);
    let mut args = vec![now_ms.to_string().into_bytes()];
    for (subject, until) in revocations.entries(now_ms) {
        args.push(subject.into_bytes());
        args.push(until.to_string().into_bytes());
    }
    let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
    let remote = store
        .eval(&SYNC, &key, &refs, read_set)
        .await
        .inspect_err(|_| {
            revocations
                .sync_failures
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        })?;
    Ok(revocations.merge(remote, now_ms))
}

/// `{subject, expiry, …}` as pairs.
fn read_set(reply: &Reply) -> Result<Vec<(String, i64)>, ReplyError> {
    let Reply::Array(Some(items)) = reply else {
        return Err(match reply {
            Reply::Error(e) => ReplyError::Server(e.clone()),
            _ => ReplyError::Shape,
        });
    };
    if items.len() % 2 != 0 {
        return Err(ReplyError::Shape);
    }
    items
        .chunks(2)
        .map(|pair| {
            let (Reply::Bulk(Some(subject)), Reply::Bulk(Some(score))) = (&pair[0], &pair[1])
            else {
                return Err(ReplyError::Shape);
            };
            let subject = String::from_utf8(subject.clone()).map_err(|_| ReplyError::Shape)?;
            let until = std::str::from_utf8(score)
                .ok()
                .and_then(|s| s.parse::<f64>().ok())
                .filter(|f| f.is_finite())
                .ok_or(ReplyError::Shape)?;
            Ok((subject, until as i64))
        })
        .collect()
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// The background sync: every `auth.revoked.sync_every` of the live
/// config, while it has a shared Redis store; a failure is logged (at
/// most once per failure streak) and the next round tries again.
pub async fn run(
    revocations: Arc<RuntimeRevocations>,
    store: ConfigStore,
    mut shutdown: ShutdownWatch,
) {
    let mut failing = false;
    loop {
        let (every, shared) = {
            let snapshot = store.load();
            let every = snapshot
                .auth
                .as_ref()
                .map_or(DEFAULT_SYNC_EVERY, |a| a.revoked_sync_every);
            let shared = match &snapshot.rate_limits {
                LimitStore::Redis(r) if snapshot.auth.is_some() => Some(r.clone()),
                _ => None,
            };
            (every, shared)
        };
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
        let Some(shared) = shared else { continue };
        match sync(&shared, &revocations, now_ms()).await {
            Ok(new) => {
                if failing {
                    tracing::info!("revocations: the shared store answers again");
                }
                failing = false;
                if new > 0 {
                    tracing::warn!(
                        new,
                        "revocations: subjects revoked through another replica now refused here"
                    );
                }
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(redis = %shared.settings().target, error = %e, "revocations: cannot sync with the shared store; this replica keeps its own and tries again");
                }
                failing = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Reply {
        Reply::Bulk(Some(s.as_bytes().to_vec()))
    }

    #[test]
    fn the_set_reads_as_pairs_and_anything_else_is_an_error() {
        let reply = Reply::Array(Some(vec![
            bulk("alice"),
            bulk("1764000000123"),
            bulk("bob"),
            bulk("1.764000000456e+12"),
        ]));
        assert_eq!(
            read_set(&reply),
            Ok(vec![
                ("alice".to_string(), 1_764_000_000_123),
                ("bob".to_string(), 1_764_000_000_456)
            ])
        );
        assert_eq!(read_set(&Reply::Array(Some(vec![]))), Ok(vec![]));
        for bad in [
            Reply::Array(Some(vec![bulk("alice")])),
            Reply::Array(Some(vec![bulk("alice"), bulk("soon")])),
            Reply::Array(Some(vec![bulk("alice"), bulk("inf")])),
            Reply::Array(Some(vec![bulk("alice"), Reply::Integer(5)])),
            Reply::Array(None),
            Reply::Integer(1),
        ] {
            assert_eq!(read_set(&bad), Err(ReplyError::Shape), "{bad:?}");
        }
        assert_eq!(
            read_set(&Reply::Error("ERR syntax error".into())),
            Err(ReplyError::Server("ERR syntax error".into()))
        );
    }
}
