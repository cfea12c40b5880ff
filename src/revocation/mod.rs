//! Instant revocation: a departing employee is cut off on their next
//! request, before their token expires.
//!
//! Two sources: files named by the config (`auth.revoked.subjects_file`,
//! `jti_file`; re-read on every config load), and subjects revoked at once
//! through the admin endpoint, each for a while (`auth.revoked.runtime_ttl`,
//! or the request's own `ttl`; add them to the file to make them
//! permanent). With the shared Redis store, runtime revocations reach every
//! replica ([`shared`]). Checked on every request after the token is
//! verified (cached or not), so no cache needs flushing.

pub mod shared;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;
use std::time::Duration;

use crate::identity::Identity;

/// Revoked subjects and token ids as listed in files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevocationList {
    subjects: HashSet<String>,
    token_ids: HashSet<String>,
}

impl RevocationList {
    pub fn new(
        subjects: impl IntoIterator<Item = String>,
        token_ids: impl IntoIterator<Item = String>,
    ) -> Self {
        RevocationList {
            subjects: subjects.into_iter().collect(),
            token_ids: token_ids.into_iter().collect(),
        }
    }

    /// One entry per line; blank lines and `#` comments are skipped.
    pub fn parse_lines(text: &str) -> Vec<String> {
        text.lines()
            .map(|l| l.split('#').next().unwrap_or_default().trim())
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// Whether the file of that kind lists `id`.
    pub fn lists(&self, kind: Kind, id: &str) -> bool {
        match kind {
            Kind::Subject => self.subjects.contains(id),
            Kind::TokenId => self.token_ids.contains(id),
        }
    }

    pub fn len(&self) -> usize {
        self.subjects.len() + self.token_ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How long a runtime revocation lasts unless the config or the request
/// says otherwise: longer than the tokens of most identity providers live.
pub const DEFAULT_RUNTIME_TTL: Duration = Duration::from_secs(24 * 3600);
/// The longest a runtime revocation may be asked to last.
pub const MAX_RUNTIME_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// Most runtime revocations held at once, of each kind; beyond this they
/// belong in `subjects_file` or `jti_file`. With the longest subjects, the shared set's reply
/// stays within what the Redis client reads (`limit::resp::MAX_ITEMS`,
/// 256 KiB buffered).
pub const MAX_RUNTIME: usize = 1000;
/// Longest id (subject or token id) a runtime revocation takes, in bytes.
pub const MAX_SUBJECT: usize = 128;

/// What was revoked at runtime (admin `POST /revoke`, or learnt from the
/// other replicas), shared by every config snapshot: subjects (a person
/// cut off) and token ids (`jti`: one leaked token cut off, its owner's
/// other tokens still good). Each entry lasts until its expiry
/// (milliseconds since the Unix epoch); a lifted one (`POST /unrevoke`)
/// is remembered as long as the revocation it lifts would have lasted, so
/// no replica that still holds it brings it back.
#[derive(Debug, Default)]
pub struct RuntimeRevocations {
    subjects: Ledger,
    token_ids: Ledger,
    /// Syncs with the shared store that failed ([`shared`]).
    sync_failures: AtomicU64,
}

/// What a runtime revocation names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A subject (`sub`): every token of that person.
    Subject,
    /// A token id (`jti`): that one token.
    TokenId,
}

impl Kind {
    pub const ALL: [Kind; 2] = [Kind::Subject, Kind::TokenId];

    /// As the admin endpoints name it.
    pub fn field(self) -> &'static str {
        match self {
            Kind::Subject => "sub",
            Kind::TokenId => "jti",
        }
    }

    /// In words, for logs and audit details.
    pub fn noun(self) -> &'static str {
        match self {
            Kind::Subject => "subject",
            Kind::TokenId => "token id",
        }
    }
}

impl RuntimeRevocations {
    pub fn ledger(&self, kind: Kind) -> &Ledger {
        match kind {
            Kind::Subject => &self.subjects,
            Kind::TokenId => &self.token_ids,
        }
    }

    /// Revocations in force at `now_ms`, both kinds.
    pub fn in_force(&self, now_ms: i64) -> usize {
        self.subjects.in_force(now_ms) + self.token_ids.in_force(now_ms)
    }

    /// Entries held (revoked and lifted), both kinds.
    pub fn count(&self) -> usize {
        self.subjects.count() + self.token_ids.count()
    }

    pub fn sync_failures(&self) -> u64 {
        self.sync_failures.load(Ordering::Relaxed)
    }
}

/// The runtime revocations of one [`Kind`], by id.
#[derive(Debug, Default)]
pub struct Ledger {
    entries: RwLock<HashMap<String, Entry>>,
}

/// One id's runtime state. Of two entries for one subject (here and
/// on another replica), the later decision (`at`) stands; at the same
/// millisecond, the revocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// When it was decided (ms since the epoch).
    pub at: i64,
    /// When it ends (ms since the epoch).
    pub until: i64,
    /// Revoked; `false`: a revocation lifted.
    pub revoked: bool,
}

impl Entry {
    fn supersedes(&self, other: &Entry) -> bool {
        self.at > other.at || (self.at == other.at && self.revoked && !other.revoked)
    }

    /// `at:until:r` (revoked) or `at:until:l` (lifted): how the shared
    /// store holds it.
    pub fn encode(&self) -> String {
        let state = if self.revoked { 'r' } else { 'l' };
        format!("{}:{}:{state}", self.at, self.until)
    }

    pub fn decode(text: &str) -> Option<Entry> {
        let mut parts = text.split(':');
        let at = parts.next()?.parse().ok()?;
        let until = parts.next()?.parse().ok()?;
        let revoked = match parts.next()? {
            "r" => true,
            "l" => false,
            _ => return None,
        };
        parts
            .next()
            .is_none()
            .then_some(Entry { at, until, revoked })
    }
}

/// Why an id could not be revoked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RevokeError {
    #[error("{MAX_RUNTIME} runtime revocations of this kind are held already; put long-lived ones in auth.revoked.subjects_file or jti_file")]
    Full,
    #[error("an id longer than {MAX_SUBJECT} bytes cannot be revoked at runtime; list it in auth.revoked.subjects_file or jti_file")]
    TooLong,
}

impl Ledger {
    /// Revoke `id` until `until_ms`; whether it was not revoked before.
    /// An id revoked already keeps the later of its expiries.
    pub fn revoke(&self, id: &str, until_ms: i64, now_ms: i64) -> Result<bool, RevokeError> {
        if id.len() > MAX_SUBJECT {
            return Err(RevokeError::TooLong);
        }
        let mut map = self.entries.write().unwrap_or_else(|e| e.into_inner());
        let held = map.get(id).filter(|e| e.until > now_ms).copied();
        if held.is_none() && !map.contains_key(id) && map.len() >= MAX_RUNTIME {
            map.retain(|_, e| e.until > now_ms);
            if map.len() >= MAX_RUNTIME {
                return Err(RevokeError::Full);
            }
        }
        let (newly, until) = match held {
            Some(e) if e.revoked => (false, e.until.max(until_ms)),
            _ => (true, until_ms),
        };
        // A later decision than the one held, even within its millisecond
        // (a revocation right after a lifting must not lose to it).
        let at = held.map_or(now_ms, |e| now_ms.max(e.at + 1));
        map.insert(
            id.to_string(),
            Entry {
                at,
                until,
                revoked: true,
            },
        );
        Ok(newly)
    }

    /// Lift `id`'s runtime revocation; whether it had one in force.
    /// The lifting is remembered until the revocation would have ended.
    pub fn lift(&self, id: &str, now_ms: i64) -> bool {
        let mut map = self.entries.write().unwrap_or_else(|e| e.into_inner());
        match map.get_mut(id) {
            Some(e) if e.revoked && e.until > now_ms => {
                *e = Entry {
                    at: now_ms.max(e.at + 1),
                    until: e.until,
                    revoked: false,
                };
                true
            }
            _ => false,
        }
    }

    /// Takes in the entries of the other replicas (a later decision
    /// replaces this one's); how many ids became revoked here.
    pub fn merge(&self, entries: impl IntoIterator<Item = (String, Entry)>, now_ms: i64) -> usize {
        let mut map = self.entries.write().unwrap_or_else(|e| e.into_inner());
        let mut new = 0;
        for (id, entry) in entries {
            if entry.until <= now_ms || id.len() > MAX_SUBJECT {
                continue;
            }
            let held = map.get(&id).filter(|e| e.until > now_ms).copied();
            let take = match held {
                Some(h) => entry.supersedes(&h),
                None => map.contains_key(&id) || map.len() < MAX_RUNTIME,
            };
            if take {
                if entry.revoked && !held.is_some_and(|h| h.revoked) {
                    new += 1;
                }
                map.insert(id, entry);
            }
        }
        new
    }

    /// Every entry still in force, lifted ones included; expired ones are
    /// dropped.
    pub fn entries(&self, now_ms: i64) -> Vec<(String, Entry)> {
        let mut map = self.entries.write().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, e| e.until > now_ms);
        map.iter().map(|(s, e)| (s.clone(), *e)).collect()
    }

    /// Entries held (revoked and lifted), expired ones not dropped yet
    /// included.
    pub fn count(&self) -> usize {
        self.entries.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Ids revoked and not expired at `now_ms`.
    pub fn in_force(&self, now_ms: i64) -> usize {
        let map = self.entries.read().unwrap_or_else(|e| e.into_inner());
        map.values()
            .filter(|e| e.revoked && e.until > now_ms)
            .count()
    }

    fn contains(&self, id: &str, now_ms: i64) -> bool {
        let map = self.entries.read().unwrap_or_else(|e| e.into_inner());
        !map.is_empty() && map.get(id).is_some_and(|e| e.revoked && e.until > now_ms)
    }
}

/// Whether `identity` has been revoked by either source, at `now_ms`.
pub fn is_revoked(
    list: &RevocationList,
    runtime: &RuntimeRevocations,
    identity: &Identity,
    now_ms: i64,
) -> bool {
    list.subjects.contains(&identity.subject)
        || identity
            .token_id
            .as_ref()
            .is_some_and(|j| list.token_ids.contains(j))
        || runtime.subjects.contains(&identity.subject, now_ms)
        || identity
            .token_id
            .as_ref()
            .is_some_and(|j| runtime.token_ids.contains(j, now_ms))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn who(sub: &str, jti: Option<&str>) -> Identity {
        Identity {
            subject: sub.into(),
            roles: vec![],
            attributes: BTreeMap::new(),
            mfa: true,
            auth_time: None,
            token_id: jti.map(str::to_string),
            expires_at: 0,
        }
    }

    const NOW: i64 = 1_764_000_000_000;

    #[test]
    fn file_and_runtime_revocations_both_apply() {
        let list = RevocationList::new(["leaver@acme".to_string()], ["jti-stolen".to_string()]);
        let runtime = RuntimeRevocations::default();
        assert!(
            is_revoked(&list, &runtime, &who("leaver@acme", None), NOW),
            "a listed subject is revoked"
        );
        assert!(
            is_revoked(&list, &runtime, &who("alice", Some("jti-stolen")), NOW),
            "a listed token id is revoked"
        );
        assert!(
            !is_revoked(&list, &runtime, &who("alice", Some("jti-ok")), NOW),
            "others pass"
        );
        assert_eq!(
            runtime
                .ledger(Kind::Subject)
                .revoke("alice", NOW + 1000, NOW),
            Ok(true)
        );
        assert_eq!(
            runtime
                .ledger(Kind::Subject)
                .revoke("alice", NOW + 500, NOW),
            Ok(false),
            "revoking twice reports no change"
        );
        assert!(
            is_revoked(&list, &runtime, &who("alice", Some("jti-ok")), NOW),
            "runtime revocation applies at once"
        );
        assert!(
            is_revoked(&list, &runtime, &who("alice", None), NOW + 999),
            "the later expiry holds"
        );
        assert!(
            !is_revoked(&list, &runtime, &who("alice", None), NOW + 1000),
            "until it passes"
        );
        assert_eq!(
            runtime
                .ledger(Kind::Subject)
                .revoke("alice", NOW + 3000, NOW + 2000),
            Ok(true),
            "revoked afresh once expired"
        );

        // One token revoked: its owner's other tokens still pass.
        assert_eq!(
            runtime
                .ledger(Kind::TokenId)
                .revoke("jti-leaked", NOW + 1000, NOW),
            Ok(true)
        );
        assert!(is_revoked(
            &list,
            &runtime,
            &who("bob", Some("jti-leaked")),
            NOW
        ));
        assert!(!is_revoked(
            &list,
            &runtime,
            &who("bob", Some("jti-other")),
            NOW
        ));
        assert!(
            !is_revoked(&list, &runtime, &who("jti-leaked", None), NOW),
            "kinds apart"
        );
        assert_eq!(runtime.in_force(NOW), 2, "alice and the token");
    }

    fn revoked(at: i64, until: i64) -> Entry {
        Entry {
            at,
            until,
            revoked: true,
        }
    }

    #[test]
    fn the_later_decision_stands_and_expired_entries_go() {
        let runtime = Ledger::default();
        runtime.revoke("alice", NOW + 100, NOW).expect("room");
        let new = runtime.merge(
            [
                ("alice".to_string(), revoked(NOW + 1, NOW + 500)),
                ("bob".to_string(), revoked(NOW, NOW + 200)),
                ("carol".to_string(), revoked(NOW - 10, NOW - 1)),
            ],
            NOW,
        );
        assert_eq!(
            new, 1,
            "bob is new; alice was revoked already; carol had expired"
        );
        let mut held = runtime.entries(NOW);
        held.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            held,
            [
                ("alice".to_string(), revoked(NOW + 1, NOW + 500)),
                ("bob".to_string(), revoked(NOW, NOW + 200))
            ]
        );
        assert_eq!(runtime.entries(NOW + 300).len(), 1);
        assert_eq!(runtime.count(), 1, "expired entries are dropped");

        // An older decision from a replica that was behind changes nothing.
        assert_eq!(
            runtime.merge([("alice".to_string(), revoked(NOW - 5, NOW + 900))], NOW),
            0
        );
        assert_eq!(runtime.entries(NOW)[0].1, revoked(NOW + 1, NOW + 500));
    }

    #[test]
    fn a_lifted_revocation_is_not_brought_back_by_a_replica_that_still_holds_it() {
        let here = Ledger::default();
        let there = Ledger::default();
        here.revoke("alice", NOW + 1000, NOW).expect("room");
        there.merge(here.entries(NOW), NOW);
        assert!(there.contains("alice", NOW));

        assert!(here.lift("alice", NOW + 10));
        assert!(!here.contains("alice", NOW + 10), "lifted here at once");
        assert!(!here.lift("alice", NOW + 11), "nothing left to lift");
        assert_eq!(here.in_force(NOW + 10), 0);
        // The other replica still pushes its revocation: the lifting is later.
        here.merge(there.entries(NOW + 20), NOW + 20);
        assert!(!here.contains("alice", NOW + 20));
        // And it takes the lifting in.
        assert_eq!(there.merge(here.entries(NOW + 20), NOW + 20), 0);
        assert!(!there.contains("alice", NOW + 20));
        // A new revocation after the lifting stands, even in the lifting's
        // own millisecond.
        assert_eq!(there.revoke("alice", NOW + 50, NOW + 10), Ok(true));
        assert!(there.entries(NOW + 20)[0]
            .1
            .supersedes(&here.entries(NOW + 20)[0].1));
        here.merge(there.entries(NOW + 30), NOW + 30);
        assert!(here.contains("alice", NOW + 30));
        // The lifting lasts as long as what it lifted would have.
        assert!(here.lift("alice", NOW + 40));
        assert_eq!(here.entries(NOW + 40)[0].1.until, NOW + 50);
    }

    #[test]
    fn revoke_lift_revoke_within_one_millisecond_ends_revoked_everywhere() {
        let here = Ledger::default();
        let there = Ledger::default();
        here.revoke("alice", NOW + 100, NOW).expect("room");
        assert!(here.lift("alice", NOW));
        there.merge(here.entries(NOW), NOW);
        assert_eq!(here.revoke("alice", NOW + 100, NOW), Ok(true));
        assert!(here.contains("alice", NOW));
        // The other replica, holding the lifting, takes the revocation in.
        assert_eq!(there.merge(here.entries(NOW), NOW), 1);
        assert!(there.contains("alice", NOW));
    }

    #[test]
    fn entries_travel_as_text() {
        for e in [
            revoked(NOW, NOW + 5),
            Entry {
                at: 1,
                until: 2,
                revoked: false,
            },
        ] {
            assert_eq!(Entry::decode(&e.encode()), Some(e));
        }
        for bad in ["", "1:2", "1:2:x", "a:2:r", "1:2:r:4", "1:-:l"] {
            assert_eq!(Entry::decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_number_held_is_bounded() {
        let runtime = Ledger::default();
        for i in 0..MAX_RUNTIME {
            runtime
                .revoke(&format!("s{i}"), NOW + 10, NOW)
                .expect("room");
        }
        assert_eq!(
            runtime.revoke("one-more", NOW + 10, NOW),
            Err(RevokeError::Full)
        );
        assert_eq!(
            runtime.revoke(&"x".repeat(MAX_SUBJECT + 1), NOW + 10, NOW),
            Err(RevokeError::TooLong)
        );
        let learnt = runtime.merge(
            (0..10).map(|i| (format!("t{i}"), revoked(NOW, NOW + 100))),
            NOW,
        );
        assert_eq!(learnt, 0, "nor learnt from another replica");
        assert_eq!(
            runtime.revoke("one-more", NOW + 100, NOW + 10),
            Ok(true),
            "expired ones make room"
        );
    }

    #[test]
    fn list_files_skip_comments_and_blanks() {
        assert_eq!(
            RevocationList::parse_lines("# leavers\nbob@acme  # left 2026-11-20\n\n  carol@acme\n"),
            vec!["bob@acme".to_string(), "carol@acme".to_string()]
        );
        assert!(RevocationList::parse_lines("# nobody yet\n\n").is_empty());
    }
}
