//! Runtime revocations shared by every replica, in the Redis of the shared
//! rate-limit store (same server, key prefix and client). A subject revoked
//! through one replica's admin endpoint is refused by that replica at once
//! and by the others within `auth.revoked.sync_every`.
//!
//! One Redis hash per kind, `<key_prefix>revoked` (subjects) and
//! `<key_prefix>revoked-jti` (token ids): field the id, value
//! `at:until:r` (revoked at `at` until `until`) or `at:until:l` (a
//! revocation lifted at `at`, remembered until the lifted one would have
//! ended), in milliseconds since the Unix epoch. Each replica runs one
//! script per sync that drops ended entries, adds the replica's own where
//! they are later decisions than what Redis holds, and answers the whole
//! hash, which the replica takes in the same way. So:
//! - a revocation made while Redis was unreachable reaches the others once
//!   Redis is back;
//! - a Redis that lost its data (restarted without persistence) is filled
//!   again by the replicas that still hold the entries;
//! - a lifted revocation is not brought back by a replica that had not yet
//!   heard of the lifting: the lifting is the later decision.
//!
//! Replicas' clocks are assumed NTP-close: decisions a few milliseconds
//! apart on two replicas may be ordered by skew.

use std::sync::Arc;
use std::time::Duration;

use pingora_core::server::ShutdownWatch;

use super::{Entry, Kind, Ledger, RuntimeRevocations};
use crate::config::ConfigStore;
use crate::limit::redis::{RedisStore, Script, StoreError};
use crate::limit::resp::Reply;
use crate::limit::script::ReplyError;
use crate::limit::LimitStore;

/// `ARGV[1]`: now (ms); then pairs of subject and entry this replica
/// holds. Replies the hash, as `{subject, entry, …}`. The key expires with
/// its last entry. At the same `at`, a revocation beats a lifting.
pub const SYNC_SCRIPT: &str = r"
local now = tonumber(ARGV[1])
local held = {}
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local at, untl = string.match(all[i + 1], '^(%d+):(%d+):[rl]$')
  if at and tonumber(untl) > now then
    held[all[i]] = {tonumber(at), tonumber(untl), all[i + 1]}
  else
    redis.call('HDEL', KEYS[1], all[i])
  end
end
for i = 2, #ARGV - 1, 2 do
  local at, untl, st = string.match(ARGV[i + 1], '^(%d+):(%d+):([rl])$')
  if at and tonumber(untl) > now then
    at = tonumber(at)
    local cur = held[ARGV[i]]
    if not cur or at > cur[1] or (at == cur[1] and st == 'r') then
      held[ARGV[i]] = {at, tonumber(untl), ARGV[i + 1]}
      redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
    end
  end
end
local out = {}
local last = 0
for subject, e in pairs(held) do
  out[#out + 1] = subject
  out[#out + 1] = e[3]
  if e[2] > last then last = e[2] end
end
if last > 0 then redis.call('PEXPIREAT', KEYS[1], string.format('%d', last)) end
return out
";

static SYNC: Script = Script::new(SYNC_SCRIPT);

/// How often each replica syncs unless `auth.revoked.sync_every` says.
pub const DEFAULT_SYNC_EVERY: Duration = Duration::from_secs(1);

/// The Redis key of one kind's hash: `<prefix>revoked` for subjects,
/// `<prefix>revoked-jti` for token ids.
pub fn redis_key(prefix: &str, kind: Kind) -> Vec<u8> {
    match kind {
        Kind::Subject => format!("{prefix}revoked").into_bytes(),
        Kind::TokenId => format!("{prefix}revoked-jti").into_bytes(),
    }
}

/// Push this replica's revocations to `store` and take in everyone's, one
/// kind after the other; how many ids became revoked here.
pub async fn sync(
    store: &RedisStore,
    revocations: &RuntimeRevocations,
    now_ms: i64,
) -> Result<usize, StoreError> {
    let mut new = 0;
    for kind in Kind::ALL {
        new += sync_kind(store, revocations.ledger(kind), kind, now_ms)
            .await
            .inspect_err(|_| {
                revocations
                    .sync_failures
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            })?;
    }
    Ok(new)
}

async fn sync_kind(
    store: &RedisStore,
    ledger: &Ledger,
    kind: Kind,
    now_ms: i64,
) -> Result<usize, StoreError> {
    let key = redis_key(&store.settings().key_prefix, kind);
    let mut args = vec![now_ms.to_string().into_bytes()];
    for (id, entry) in ledger.entries(now_ms) {
        args.push(id.into_bytes());
        args.push(entry.encode().into_bytes());
    }
    let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
    let remote = store.eval(&SYNC, &key, &refs, read_set).await?;
    Ok(ledger.merge(remote, now_ms))
}

/// `{subject, entry, …}` as pairs.
fn read_set(reply: &Reply) -> Result<Vec<(String, Entry)>, ReplyError> {
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
            let (Reply::Bulk(Some(subject)), Reply::Bulk(Some(entry))) = (&pair[0], &pair[1])
            else {
                return Err(ReplyError::Shape);
            };
            let subject = String::from_utf8(subject.clone()).map_err(|_| ReplyError::Shape)?;
            let entry = std::str::from_utf8(entry)
                .ok()
                .and_then(Entry::decode)
                .ok_or(ReplyError::Shape)?;
            Ok((subject, entry))
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
    fn the_hash_reads_as_pairs_and_anything_else_is_an_error() {
        let reply = Reply::Array(Some(vec![
            bulk("alice"),
            bulk("1764000000000:1764000000123:r"),
            bulk("bob"),
            bulk("1764000000001:1764000000456:l"),
        ]));
        assert_eq!(
            read_set(&reply),
            Ok(vec![
                (
                    "alice".to_string(),
                    Entry {
                        at: 1_764_000_000_000,
                        until: 1_764_000_000_123,
                        revoked: true
                    }
                ),
                (
                    "bob".to_string(),
                    Entry {
                        at: 1_764_000_000_001,
                        until: 1_764_000_000_456,
                        revoked: false
                    }
                )
            ])
        );
        assert_eq!(read_set(&Reply::Array(Some(vec![]))), Ok(vec![]));
        for bad in [
            Reply::Array(Some(vec![bulk("alice")])),
            Reply::Array(Some(vec![bulk("alice"), bulk("soon")])),
            Reply::Array(Some(vec![bulk("alice"), bulk("1:2:x")])),
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
