//! Instant revocation: a departing employee is cut off on their next
//! request, before their token expires.
//!
//! Two sources: files named by the config (`auth.revoked.subjects_file`,
//! `jti_file`; re-read on every config load), and subjects revoked at once
//! through the admin endpoint, held in memory until restart (add them to
//! the file to make them permanent). Checked on every request after the
//! token is verified (cached or not), so no cache needs flushing.

use std::collections::HashSet;
use std::sync::RwLock;

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

/// Subjects revoked at runtime (admin `POST /revoke`), shared by every
/// config snapshot.
#[derive(Debug, Default)]
pub struct RuntimeRevocations {
    subjects: RwLock<HashSet<String>>,
}

impl RuntimeRevocations {
    /// Revoke `subject` now; returns whether it was newly revoked.
    pub fn revoke(&self, subject: &str) -> bool {
        let mut set = self.subjects.write().unwrap_or_else(|e| e.into_inner());
        set.insert(subject.to_string())
    }

    pub fn count(&self) -> usize {
        self.subjects
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    fn contains(&self, subject: &str) -> bool {
        let set = self.subjects.read().unwrap_or_else(|e| e.into_inner());
        !set.is_empty() && set.contains(subject)
    }
}

/// Whether `identity` has been revoked by either source.
pub fn is_revoked(
    list: &RevocationList,
    runtime: &RuntimeRevocations,
    identity: &Identity,
) -> bool {
    list.subjects.contains(&identity.subject)
        || identity
            .token_id
            .as_ref()
            .is_some_and(|j| list.token_ids.contains(j))
        || runtime.contains(&identity.subject)
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

    #[test]
    fn file_and_runtime_revocations_both_apply() {
        let list = RevocationList::new(["leaver@acme".to_string()], ["jti-stolen".to_string()]);
        let runtime = RuntimeRevocations::default();
        assert!(
            is_revoked(&list, &runtime, &who("leaver@acme", None)),
            "a listed subject is revoked"
        );
        assert!(
            is_revoked(&list, &runtime, &who("alice", Some("jti-stolen"))),
            "a listed token id is revoked"
        );
        assert!(
            !is_revoked(&list, &runtime, &who("alice", Some("jti-ok"))),
            "others pass"
        );
        assert!(runtime.revoke("alice"));
        assert!(!runtime.revoke("alice"), "revoking twice reports no change");
        assert!(
            is_revoked(&list, &runtime, &who("alice", Some("jti-ok"))),
            "runtime revocation applies at once"
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
