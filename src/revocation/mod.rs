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
/// Most runtime revocations held at once; beyond this they belong in
/// `subjects_file`. With the longest subjects, the shared set's reply
/// stays within what the Redis client reads (`limit::resp::MAX_ITEMS`,
/// 256 KiB buffered).
pub const MAX_RUNTIME: usize = 1000;
/// Longest subject a runtime revocation takes, in bytes.
pub const MAX_SUBJECT: usize = 128;

/// Subjects revoked at runtime (admin `POST /revoke`, or learnt from the
/// other replicas), shared by every config snapshot, each until its expiry
/// (milliseconds since the Unix epoch).
#[derive(Debug, Default)]
pub struct RuntimeRevocations {
    subjects: RwLock<HashMap<String, i64>>,
    /// Syncs with the shared store that failed ([`shared`]).
    sync_failures: AtomicU64,
}

/// Why a subject could not be revoked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RevokeError {
    #[error("{MAX_RUNTIME} runtime revocations are held already; put long-lived ones in auth.revoked.subjects_file")]
    Full,
    #[error("a subject longer than {MAX_SUBJECT} bytes cannot be revoked at runtime; list it in auth.revoked.subjects_file")]
    TooLong,
}

impl RuntimeRevocations {
    /// Revoke `subject` until `until_ms`; whether it was not revoked
    /// before. A subject revoked already keeps the later of its expiries.
    pub fn revoke(&self, subject: &str, until_ms: i64, now_ms: i64) -> Result<bool, RevokeError> {
        if subject.len() > MAX_SUBJECT {
            return Err(RevokeError::TooLong);
        }
        let mut map = self.subjects.write().unwrap_or_else(|e| e.into_inner());
        match map.get_mut(subject) {
            Some(until) if *until > now_ms => {
                *until = (*until).max(until_ms);
                Ok(false)
            }
            _ => {
                if map.len() >= MAX_RUNTIME {
                    map.retain(|_, until| *until > now_ms);
                    if map.len() >= MAX_RUNTIME {
                        return Err(RevokeError::Full);
                    }
                }
                map.insert(subject.to_string(), until_ms);
                Ok(true)
            }
        }
    }

    /// Adds what another replica revoked; how many subjects were new here.
    pub fn merge(&self, entries: impl IntoIterator<Item = (String, i64)>, now_ms: i64) -> usize {
        let mut map = self.subjects.write().unwrap_or_else(|e| e.into_inner());
        let mut new = 0;
        for (subject, until) in entries {
            if until <= now_ms || subject.len() > MAX_SUBJECT {
                continue;
            }
            let held = map.get(&subject).copied();
            match held {
                Some(held) if held > now_ms => {
                    map.insert(subject, held.max(until));
                }
                // An expired entry's place, or room for one more.
                Some(_) => {
                    map.insert(subject, until);
                    new += 1;
                }
                None if map.len() < MAX_RUNTIME => {
                    map.insert(subject, until);
                    new += 1;
                }
                None => {}
            }
        }
        new
    }

    /// The revocations still in force, expired ones dropped.
    pub fn entries(&self, now_ms: i64) -> Vec<(String, i64)> {
        let mut map = self.subjects.write().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, until| *until > now_ms);
        map.iter().map(|(s, until)| (s.clone(), *until)).collect()
    }

    /// Runtime revocations held, expired ones that were not dropped yet
    /// included.
    pub fn count(&self) -> usize {
        self.subjects
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// Held and not expired at `now_ms`.
    pub fn in_force(&self, now_ms: i64) -> usize {
        let map = self.subjects.read().unwrap_or_else(|e| e.into_inner());
        map.values().filter(|until| **until > now_ms).count()
    }

    pub fn sync_failures(&self) -> u64 {
        self.sync_failures.load(Ordering::Relaxed)
    }

    fn contains(&self, subject: &str, now_ms: i64) -> bool {
        let map = self.subjects.read().unwrap_or_else(|e| e.into_inner());
        !map.is_empty() && map.get(subject).is_some_and(|until| *until > now_ms)
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
        || runtime.contains(&identity.subject, now_ms)
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
        assert_eq!(runtime.revoke("alice", NOW + 1000, NOW), Ok(true));
        assert_eq!(
            runtime.revoke("alice", NOW + 500, NOW),
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
            runtime.revoke("alice", NOW + 3000, NOW + 2000),
            Ok(true),
            "revoked afresh once expired"
        );
    }

    #[test]
    fn merged_entries_keep_the_later_expiry_and_drop_expired_ones() {
        let runtime = RuntimeRevocations::default();
        runtime.revoke("alice", NOW + 100, NOW).expect("room");
        let new = runtime.merge(
            [
                ("alice".to_string(), NOW + 500),
                ("bob".to_string(), NOW + 200),
                ("carol".to_string(), NOW - 1),
            ],
            NOW,
        );
        assert_eq!(new, 1, "bob is new; carol had expired");
        let mut held = runtime.entries(NOW);
        held.sort();
        assert_eq!(
            held,
            [
                ("alice".to_string(), NOW + 500),
                ("bob".to_string(), NOW + 200)
            ]
        );
        assert_eq!(
            runtime.entries(NOW + 300),
            [("alice".to_string(), NOW + 500)]
        );
        assert_eq!(runtime.count(), 1, "expired entries are dropped");
    }

    #[test]
    fn the_number_held_is_bounded() {
        let runtime = RuntimeRevocations::default();
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
        let learnt = runtime.merge((0..10).map(|i| (format!("t{i}"), NOW + 100)), NOW);
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
