//! Alert counters shared by every replica, in the Redis of the shared
//! rate-limit store (same server, same key prefix, same client): one
//! atomic script per (rule, key) event with the semantics of `counter`
//! (two fixed windows, `cur + prev × overlap`, fire once at the threshold,
//! then quiet for one window), so exactly one replica fires.
//!
//! Time is the event's own (the request's arrival, as in `counter`), passed
//! to the script in milliseconds: a replica's queue delay does not move an
//! event into a later window, and the semantics are tested with fixed
//! times against a real server. Replicas' clocks are assumed NTP-close;
//! skew of a few milliseconds only shifts which window an event near a
//! boundary falls in. Keys expire by themselves two windows after their
//! last event, by the server's clock.

use std::fmt::Write as _;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::counter::{from_millis, millis, window_millis, SAMPLE_IDS};
use super::payload::Alert;
use super::rule::{AlertRule, Matcher, Trigger};
use crate::limit::redis::{RedisStore, Script, StoreError};
use crate::limit::resp::Reply;
use crate::limit::script::{push_escaped, ReplyError};

/// The window counters of one (rule, key) as one Redis hash: `win` (index
/// of the current fixed window), `cur`/`prev` (counts), `fc`/`fp` (first
/// event of each, -1 for none), `last`, `quiet` (no alert before), `n`
/// (request ids recorded in the ring `i0…`), `sig` (the trigger counted
/// under: a changed trigger counts afresh, as in-process). `ARGV`: event
/// time (ms), window (ms), threshold, request id, ring size, signature.
/// Replies `{0}` (counted, no alert) or `{1, estimate, first_ms, last_ms,
/// request ids…}` (fired; counts start again from zero).
pub const WINDOW_SCRIPT: &str = r"
local t = tonumber(ARGV[1])
local w = tonumber(ARGV[2])
local threshold = tonumber(ARGV[3])
local ring = tonumber(ARGV[5])
local idx = math.floor(t / w)
local h = redis.call('HMGET', KEYS[1], 'sig', 'win', 'cur', 'prev', 'fc', 'fp', 'last', 'quiet', 'n')
if h[1] ~= ARGV[6] then h = {} end
local win = tonumber(h[2]) or idx
local cur = tonumber(h[3]) or 0
local prev = tonumber(h[4]) or 0
local fc = tonumber(h[5]) or -1
local fp = tonumber(h[6]) or -1
local last = tonumber(h[7]) or 0
local quiet = tonumber(h[8]) or 0
local n = tonumber(h[9]) or 0
if idx == win + 1 then
  prev = cur; fp = fc; cur = 0; fc = -1
elseif idx > win + 1 then
  prev = 0; fp = -1; cur = 0; fc = -1
end
-- An event logged late (an earlier window) counts in the current one.
if idx > win then win = idx end
if fc < 0 then fc = t end
cur = cur + 1
if t > last then last = t end
redis.call('HSET', KEYS[1], 'i' .. string.format('%d', n % ring), ARGV[4])
n = n + 1
local reply = {0}
if t >= quiet then
  local into = t - win * w
  if into < 0 then into = 0 end
  if into > w then into = w end
  local weight = w - into
  local estimate = cur + math.floor(prev * weight / w)
  if estimate >= threshold then
    local first = fc
    if fp >= 0 and prev > 0 and weight > 0 then first = fp end
    reply = {1, estimate, first, last}
    local from = n - ring
    if from < 0 then from = 0 end
    for k = from, n - 1 do
      reply[#reply + 1] = redis.call('HGET', KEYS[1], 'i' .. string.format('%d', k % ring))
    end
    cur = 0; prev = 0; fc = -1; fp = -1; n = 0
    quiet = t + w
  end
end
local f = function(x) return string.format('%d', x) end
redis.call('HSET', KEYS[1], 'sig', ARGV[6], 'win', f(win), 'cur', f(cur), 'prev', f(prev),
  'fc', f(fc), 'fp', f(fp), 'last', f(last), 'quiet', f(quiet), 'n', f(n))
redis.call('PEXPIRE', KEYS[1], f(2 * w))
return reply
";

static WINDOW: Script = Script::new(WINDOW_SCRIPT);

/// The Redis key of one (rule, key) counter:
/// `<key_prefix>alert:<rule>:<key>`. The rule name has `%` and `:`
/// escaped as in the rate-limit keys and the key (a subject, an address, a
/// route) comes last, so no two (rule, key) pairs share a Redis key.
pub fn redis_key(prefix: &str, rule: &str, key: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(prefix.len() + rule.len() + key.len() + 8);
    out.extend_from_slice(prefix.as_bytes());
    out.extend_from_slice(b"alert:");
    push_escaped(&mut out, rule);
    out.push(b':');
    out.extend_from_slice(key.as_bytes());
    out
}

/// What the script said about one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tally {
    /// Counted; nothing to raise.
    Counted,
    /// The event reached the threshold: this replica raises the alert.
    Fired {
        estimate: u64,
        first_ms: u64,
        last_ms: u64,
        request_ids: Vec<String>,
    },
}

/// One matching event, owned, on its way to the shared counters.
#[derive(Debug, Clone)]
pub struct SharedEvent {
    pub rule: Arc<AlertRule>,
    /// The rule's key value (subject, address, route).
    pub key: String,
    pub ts: OffsetDateTime,
    pub request_id: String,
    pub config_version: String,
}

/// Count `event` in `store`; `Ok(Some(alert))` when this replica fires.
pub async fn count(store: &RedisStore, event: &SharedEvent) -> Result<Option<Alert>, StoreError> {
    let trigger = &event.rule.trigger;
    let key = redis_key(&store.settings().key_prefix, &event.rule.name.0, &event.key);
    let t = millis(event.ts).to_string();
    let w = window_millis(trigger).to_string();
    let threshold = trigger.threshold.to_string();
    let ring = SAMPLE_IDS.to_string();
    let sig = signature(trigger);
    let args: [&[u8]; 6] = [
        t.as_bytes(),
        w.as_bytes(),
        threshold.as_bytes(),
        event.request_id.as_bytes(),
        ring.as_bytes(),
        sig.as_bytes(),
    ];
    let tally = store.eval(&WINDOW, &key, &args, read).await?;
    Ok(match tally {
        Tally::Counted => None,
        Tally::Fired {
            estimate,
            first_ms,
            last_ms,
            request_ids,
        } => Some(Alert {
            rule: event.rule.name.0.clone(),
            key: trigger.key,
            value: event.key.clone(),
            count: u32::try_from(estimate).unwrap_or(u32::MAX),
            threshold: trigger.threshold.get(),
            window_secs: trigger.window.as_secs(),
            first: from_millis(first_ms),
            last: from_millis(last_ms),
            config_version: event.config_version.clone(),
            request_ids,
        }),
    })
}

/// Read the script's reply strictly: anything but its two shapes is an
/// error (and the event is counted in this process instead).
pub fn read(reply: &Reply) -> Result<Tally, ReplyError> {
    let items = match reply {
        Reply::Error(e) if e.starts_with("NOSCRIPT") => return Err(ReplyError::NoScript),
        Reply::Error(e) => return Err(ReplyError::Server(e.clone())),
        Reply::Array(Some(items)) => items,
        _ => return Err(ReplyError::Shape),
    };
    match items.as_slice() {
        [Reply::Integer(0)] => Ok(Tally::Counted),
        [Reply::Integer(1), Reply::Integer(est), Reply::Integer(first), Reply::Integer(last), ids @ ..]
            if ids.len() <= SAMPLE_IDS =>
        {
            let non_negative = |v: &i64| u64::try_from(*v).map_err(|_| ReplyError::Shape);
            let request_ids = ids
                .iter()
                .filter_map(|id| match id {
                    Reply::Bulk(Some(b)) => {
                        Some(String::from_utf8(b.clone()).map_err(|_| ReplyError::Shape))
                    }
                    // A sample that vanished (cannot happen inside one
                    // script run) is left out rather than failing the alert.
                    Reply::Bulk(None) => None,
                    _ => Some(Err(ReplyError::Shape)),
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Tally::Fired {
                estimate: non_negative(est)?,
                first_ms: non_negative(first)?,
                last_ms: non_negative(last)?,
                request_ids,
            })
        }
        _ => Err(ReplyError::Shape),
    }
}

/// What the counts in Redis were made under: a rule whose `when`, key
/// kind, window or threshold changed starts from zero, as in-process
/// (where the whole trigger is compared).
fn signature(trigger: &Trigger) -> String {
    format!(
        "{}/{}/{}/{}",
        trigger.key.as_str(),
        window_millis(trigger),
        trigger.threshold,
        matcher_digest(&trigger.when)
    )
}

/// `when` as a digest of a canonical text: every item tagged with what it
/// is and prefixed with its length, in config order (the order the
/// in-process comparison sees), so two matchers that differ anywhere never
/// share counts, and the hash field stays short however long the lists.
fn matcher_digest(when: &Matcher) -> String {
    let mut text = String::new();
    let mut item = |tag: char, value: &str| {
        let _ = write!(text, "{tag}{}:{value}", value.len());
    };
    if let Some(d) = when.decision {
        item('d', d.as_str());
    }
    for reason in &when.reasons {
        item('r', reason.code());
    }
    for route in &when.routes {
        item('o', route);
    }
    for role in &when.roles {
        item('l', role);
    }
    hex::encode(&Sha256::digest(text.as_bytes())[..12])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_change_with_anything_a_rule_counts_by() {
        use std::time::Duration;

        use crate::alert::rule::KeyKind;
        use crate::decision::{Reason, Verdict};

        let trigger = |when: Matcher, threshold: u32| {
            Trigger::new(
                when,
                KeyKind::Subject,
                threshold,
                Duration::from_secs(60),
                100,
            )
            .unwrap_or_else(|e| panic!("{e}"))
        };
        let denials = Matcher {
            decision: Some(Verdict::Deny),
            ..Matcher::default()
        };
        let base = signature(&trigger(denials.clone(), 3));
        assert_eq!(
            base,
            signature(&trigger(denials.clone(), 3)),
            "deterministic"
        );
        let variants = [
            trigger(Matcher::default(), 3),
            trigger(denials.clone(), 4),
            trigger(
                Matcher {
                    reasons: vec![Reason::ScopeDenied],
                    ..denials.clone()
                },
                3,
            ),
            trigger(
                Matcher {
                    routes: vec!["contacts.list".into()],
                    ..denials.clone()
                },
                3,
            ),
            trigger(
                Matcher {
                    roles: vec!["contacts.list".into()],
                    ..denials.clone()
                },
                3,
            ),
            trigger(
                Matcher {
                    routes: vec!["a".into(), "b".into()],
                    ..denials.clone()
                },
                3,
            ),
            trigger(
                Matcher {
                    routes: vec!["a,b".into()],
                    ..denials.clone()
                },
                3,
            ),
        ];
        let mut seen = vec![base];
        for t in &variants {
            let sig = signature(t);
            assert!(!seen.contains(&sig), "{t:?} shares the signature {sig}");
            seen.push(sig);
        }
    }

    #[test]
    fn keys_name_prefix_rule_and_value() {
        assert_eq!(
            redis_key("chatwarden:rl:", "repeated-denials", "mallory"),
            b"chatwarden:rl:alert:repeated-denials:mallory".to_vec()
        );
        assert_eq!(
            redis_key("p:", "by-ip", "2001:db8::1"),
            b"p:alert:by-ip:2001:db8::1".to_vec(),
            "the value comes last, colons and all"
        );
        assert_eq!(
            redis_key("p:", "a:b%c", "k"),
            b"p:alert:a%3Ab%25c:k".to_vec(),
            "the rule name is escaped like a route name"
        );
    }

    #[test]
    fn keys_do_not_collide_across_rules_or_values() {
        let keys = [
            redis_key("p:", "a", "b:c"),
            redis_key("p:", "a:b", "c"),
            redis_key("p:", "a%3Ab", "c"),
            redis_key("p:", "a", "c"),
            redis_key("p:", "b", "c"),
        ];
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b, "two counters share {}", String::from_utf8_lossy(a));
            }
        }
    }

    #[test]
    fn replies_are_read_strictly() {
        let int = Reply::Integer;
        let id = |s: &str| Reply::Bulk(Some(s.as_bytes().to_vec()));
        let arr = |v: Vec<Reply>| Reply::Array(Some(v));
        assert_eq!(read(&arr(vec![int(0)])), Ok(Tally::Counted));
        assert_eq!(
            read(&arr(vec![
                int(1),
                int(5),
                int(10),
                int(20),
                id("a"),
                id("b")
            ])),
            Ok(Tally::Fired {
                estimate: 5,
                first_ms: 10,
                last_ms: 20,
                request_ids: vec!["a".into(), "b".into()],
            })
        );
        assert_eq!(
            read(&Reply::Error("NOSCRIPT No matching script".into())),
            Err(ReplyError::NoScript)
        );
        assert!(matches!(
            read(&Reply::Error("ERR oom".into())),
            Err(ReplyError::Server(_))
        ));
        let too_many = {
            let mut v = vec![int(1), int(5), int(10), int(20)];
            v.extend((0..=SAMPLE_IDS).map(|_| id("x")));
            v
        };
        for bad in [
            arr(vec![]),
            arr(vec![int(2)]),
            arr(vec![int(0), int(1)]),
            arr(vec![int(1), int(5), int(10)]),
            arr(vec![int(1), int(-1), int(10), int(20)]),
            arr(vec![int(1), int(5), int(10), int(20), int(7)]),
            arr(vec![
                int(1),
                int(5),
                int(10),
                int(20),
                Reply::Bulk(Some(vec![0xff])),
            ]),
            arr(too_many),
            Reply::Array(None),
            Reply::Simple("OK".into()),
            int(0),
        ] {
            assert_eq!(read(&bad), Err(ReplyError::Shape), "{bad:?}");
        }
    }
}
