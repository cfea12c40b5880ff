//! The shared store's half of a rate-limit check, as plain data: the GCRA
//! script Redis runs atomically, the key every replica computes alike, the
//! script's arguments, and what its reply means. No sockets here.

use std::time::Duration;

use super::resp::Reply;
use super::RateLimit;

/// GCRA in one atomic step, on the server's clock (`TIME`), so replicas'
/// clocks never matter. Same rule as the in-process store: a burst of
/// `ARGV[2]`, then one more every `ARGV[1]` microseconds. The key holds the
/// theoretical arrival time (TAT) in microseconds and expires when it is
/// reached: by then the allowance is full again, so an idle key is the same
/// as no key. A refusal writes nothing. Replies `{1, 0}` (allowed) or
/// `{0, wait_µs}`.
pub const GCRA_SCRIPT: &str = r"
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = interval * (tonumber(ARGV[2]) - 1)
local tat = now
local stored = redis.call('GET', KEYS[1])
if stored then
  local v = tonumber(stored)
  if v and v > now then tat = v end
end
local allow_at = tat - tolerance
if now < allow_at then
  return {0, allow_at - now}
end
local next_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%d', next_tat), 'PX', math.ceil((next_tat - now) / 1000))
return {1, 0}
";

/// What the script decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScriptVerdict {
    Allow,
    /// Refused; the next request is allowed after this long.
    Wait(Duration),
}

/// A script reply that is not one of the two shapes it can produce.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    #[error("Redis refused the script: {0}")]
    Server(String),
    #[error("the script is not loaded on this server")]
    NoScript,
    #[error("unexpected reply to the script")]
    Shape,
}

/// The Redis key of one counter: the prefix, the route, the limit's
/// parameters and the raw key (subject, client address, or nothing for a
/// route-wide limit). Every replica builds the same key for the same
/// caller. The route name has `%` and `:` escaped, and the raw key comes
/// last, so no two (route, limit, key) triples share a Redis key. A changed
/// limit counts afresh, as in the in-process store.
pub fn redis_key(prefix: &str, route: &str, limit: &RateLimit, raw: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(prefix.len() + route.len() + raw.len() + 32);
    key.extend_from_slice(prefix.as_bytes());
    push_escaped(&mut key, route);
    key.extend_from_slice(
        format!(
            ":{}:{}:{}:",
            limit.key.as_str(),
            limit.per.as_millis(),
            limit.burst
        )
        .as_bytes(),
    );
    key.extend_from_slice(raw.as_bytes());
    key
}

/// Appends one part of a Redis key that a `:` must not end early: `%`
/// and `:` are percent-escaped, so `a:b` and `a%3Ab` stay apart. Shared by
/// every key the store writes (rate limits, alert rules).
pub fn push_escaped(key: &mut Vec<u8>, part: &str) {
    for b in part.bytes() {
        match b {
            b'%' => key.extend_from_slice(b"%25"),
            b':' => key.extend_from_slice(b"%3A"),
            _ => key.push(b),
        }
    }
}

/// `ARGV` of the script: the emission interval in microseconds (at least
/// 1000: `RateLimit::new` guarantees 1ms) and the burst.
pub fn script_args(limit: &RateLimit) -> (String, String) {
    let interval = (limit.per / limit.burst.get()).as_micros().max(1);
    (interval.to_string(), limit.burst.to_string())
}

/// Read the script's reply.
pub fn verdict(reply: &Reply) -> Result<ScriptVerdict, ReplyError> {
    match reply {
        Reply::Error(e) if e.starts_with("NOSCRIPT") => Err(ReplyError::NoScript),
        Reply::Error(e) => Err(ReplyError::Server(e.clone())),
        Reply::Array(Some(items)) => match items.as_slice() {
            [Reply::Integer(1), Reply::Integer(0)] => Ok(ScriptVerdict::Allow),
            [Reply::Integer(0), Reply::Integer(wait)] => u64::try_from(*wait)
                .map(|us| ScriptVerdict::Wait(Duration::from_micros(us)))
                .map_err(|_| ReplyError::Shape),
            _ => Err(ReplyError::Shape),
        },
        _ => Err(ReplyError::Shape),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limit::LimitKey;

    fn limit(key: LimitKey, per_secs: u64, burst: u32) -> RateLimit {
        RateLimit::new(key, Duration::from_secs(per_secs), burst).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn keys_name_route_limit_and_caller() {
        let l = limit(LimitKey::Subject, 3600, 3);
        assert_eq!(
            redis_key("chatwarden:rl:", "contacts.export", &l, "priya"),
            b"chatwarden:rl:contacts.export:sub:3600000:3:priya".to_vec()
        );
        assert_eq!(
            redis_key("p:", "search", &limit(LimitKey::Route, 60, 5), ""),
            b"p:search:route:60000:5:".to_vec()
        );
        assert_eq!(
            redis_key(
                "p:",
                "hooks",
                &limit(LimitKey::ClientIp, 1, 1),
                "2001:db8::1"
            ),
            b"p:hooks:ip:1000:1:2001:db8::1".to_vec()
        );
    }

    #[test]
    fn keys_do_not_collide_across_routes_limits_or_callers() {
        let l = limit(LimitKey::Subject, 60, 2);
        let keys = [
            redis_key("p:", "a", &l, "b:sub:60000:2:c"),
            redis_key("p:", "a:sub:60000:2:b", &l, "c"),
            redis_key("p:", "a%3Asub", &l, "c"),
            redis_key("p:", "a:sub", &l, "c"),
            redis_key("p:", "a", &limit(LimitKey::Subject, 60, 3), "c"),
            redis_key("p:", "a", &limit(LimitKey::ClientIp, 60, 2), "c"),
            redis_key("p:", "a", &l, "c"),
            redis_key("p:", "a", &l, "d"),
        ];
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(
                    a,
                    b,
                    "two different counters share {:?}",
                    String::from_utf8_lossy(a)
                );
            }
        }
    }

    #[test]
    fn arguments_are_the_interval_in_microseconds_and_the_burst() {
        assert_eq!(
            script_args(&limit(LimitKey::Subject, 3600, 3)),
            ("1200000000".to_string(), "3".to_string())
        );
        assert_eq!(
            script_args(&limit(LimitKey::Subject, 1, 1000)),
            ("1000".to_string(), "1000".to_string())
        );
    }

    #[test]
    fn replies_are_read_strictly() {
        let int = Reply::Integer;
        let arr = |v: Vec<Reply>| Reply::Array(Some(v));
        assert_eq!(
            verdict(&arr(vec![int(1), int(0)])),
            Ok(ScriptVerdict::Allow)
        );
        assert_eq!(
            verdict(&arr(vec![int(0), int(1_200_000_000)])),
            Ok(ScriptVerdict::Wait(Duration::from_secs(1200)))
        );
        assert_eq!(
            verdict(&Reply::Error("NOSCRIPT No matching script".into())),
            Err(ReplyError::NoScript)
        );
        assert!(matches!(
            verdict(&Reply::Error("OOM command not allowed".into())),
            Err(ReplyError::Server(_))
        ));
        for bad in [
            arr(vec![int(0), int(-5)]),
            arr(vec![int(1), int(7)]),
            arr(vec![int(2), int(0)]),
            arr(vec![int(1)]),
            arr(vec![int(1), int(0), int(0)]),
            arr(vec![Reply::Bulk(Some(b"1".to_vec())), int(0)]),
            Reply::Array(None),
            Reply::Bulk(None),
            Reply::Simple("OK".into()),
            int(1),
        ] {
            assert_eq!(verdict(&bad), Err(ReplyError::Shape), "{bad:?}");
        }
    }
}
