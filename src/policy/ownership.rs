//! Ownership checks: before a request on one object goes upstream (a read
//! of a conversation, a message posted into it, a reassignment), the
//! gateway fetches the object itself and lets the request through only if
//! the caller may see it. A read the caller may not see and a write to an
//! object the caller does not own both end as 404 `not_found`, exactly like
//! an object that does not exist, so ids cannot be probed.
//!
//! This module is the pure part: which path to look up, how a lookup
//! response reads, whether the object is visible to one caller, and a small
//! cache of what lookups found. The proxy makes the request.
//!
//! The tests on the object are those of a [`RowFilter`] in object mode
//! (owner field against a claim, a bypass permission, label rules), planned
//! per caller by [`plan_row_filter`] and judged by [`item_allowed`], the
//! same reference the list filter follows.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use super::roles::RoleSet;
use super::scope::{item_allowed, plan_row_filter, FieldPath, RowFilter, RowFilterPlan};
use crate::identity::Identity;
use crate::route::{Params, PathTemplate};

/// Largest lookup body the gateway reads; a bigger one fails the request.
pub const MAX_LOOKUP_BYTES: usize = 1024 * 1024;

/// Objects kept in an [`OwnerCache`] before it makes room.
pub const MAX_CACHED_OBJECTS: usize = 10_000;

/// A route's `owner_check`.
#[derive(Debug, Clone)]
pub struct OwnerCheck {
    /// Identifies this check within one snapshot (cache entries of two
    /// checks on the same path hold different fields).
    pub id: usize,
    /// The GET that fetches the object, filled from the route's parameters.
    pub lookup: PathTemplate,
    /// Where the object is in the lookup's body (object mode) and what it
    /// must satisfy.
    pub filter: RowFilter,
    /// How long what a lookup found is reused; zero disables the cache.
    pub cache_for: Duration,
}

/// What a lookup found, reduced to the fields the check reads.
#[derive(Debug, Clone, PartialEq)]
pub enum Found {
    /// The object, keeping only the owner and label fields.
    Object(Arc<Value>),
    /// The upstream says there is no such object (404 or 410).
    Absent,
}

/// Why a lookup response cannot be judged. The request fails closed (502):
/// the gateway never forwards on a guess.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    #[error("lookup answered HTTP {0}")]
    Status(u16),
    #[error("lookup body is not JSON: {0}")]
    NotJson(String),
    #[error("lookup body has no single object at `{0}`")]
    NoObject(String),
    #[error("lookup body is over {MAX_LOOKUP_BYTES} bytes")]
    TooLarge,
}

/// The outcome for one caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ownership {
    /// The caller holds the bypass permission and no hidden label applies:
    /// no lookup is needed.
    Skip,
    /// The object exists and the caller may reach it.
    Visible,
    /// The object does not exist, is not the caller's, or carries a label
    /// the caller may not see.
    Hidden,
}

impl OwnerCheck {
    /// What this caller must be tested for; [`RowFilterPlan::Skip`] means
    /// the request needs no lookup at all.
    pub fn plan(&self, identity: &Identity, roles: &RoleSet) -> RowFilterPlan {
        plan_row_filter(&self.filter, identity, roles)
    }

    /// The path to look up for a request that matched with `params`.
    pub fn lookup_path(&self, params: &Params) -> Option<String> {
        self.lookup.render(params)
    }

    /// Reads a lookup response: 2xx with a JSON body holding one object at
    /// the selector, or 404/410 for an absent object. Anything else is an
    /// error.
    pub fn read_response(&self, status: u16, body: &[u8]) -> Result<Found, LookupError> {
        if status == 404 || status == 410 {
            return Ok(Found::Absent);
        }
        if !(200..300).contains(&status) {
            return Err(LookupError::Status(status));
        }
        if body.len() > MAX_LOOKUP_BYTES {
            return Err(LookupError::TooLarge);
        }
        let document: Value =
            serde_json::from_slice(body).map_err(|e| LookupError::NotJson(e.to_string()))?;
        let selected = self.filter.items.select(&document);
        let [object @ Value::Object(_)] = selected.as_slice() else {
            return Err(LookupError::NoObject(self.filter.items.as_str().to_owned()));
        };
        Ok(Found::Object(Arc::new(self.prune(object))))
    }

    /// Only the fields the tests read: what the cache keeps.
    fn prune(&self, object: &Value) -> Value {
        let mut out = Value::Object(Map::new());
        let fields =
            std::iter::once(&self.filter.field).chain(self.filter.labels.iter().map(|l| &l.field));
        for field in fields {
            if let Some(value) = field.lookup(object) {
                put(&mut out, field, value.clone());
            }
        }
        out
    }
}

/// Whether a caller with `plan` may reach what the lookup found.
pub fn judge(found: &Found, plan: &RowFilterPlan) -> Ownership {
    match found {
        Found::Object(object) if item_allowed(object, plan) => Ownership::Visible,
        Found::Object(_) | Found::Absent => Ownership::Hidden,
    }
}

/// What lookups found, per looked-up path, for a short time. Shared by the
/// routes of one upstream in one snapshot (a reload starts empty). A
/// successful write at or below a path drops it ([`OwnerCache::forget`]),
/// so a reassignment through the gateway is seen at once; a change made
/// behind the gateway's back is seen within `cache_for`.
#[derive(Debug, Default)]
pub struct OwnerCache {
    entries: Mutex<HashMap<Box<str>, Vec<Cached>>>,
}

#[derive(Debug, Clone)]
struct Cached {
    check: usize,
    expires: Instant,
    object: Arc<Value>,
}

impl OwnerCache {
    /// The fresh object cached for `check` at `path`, if any.
    pub fn get(&self, check: &OwnerCheck, path: &str, now: Instant) -> Option<Found> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries
            .get(path)?
            .iter()
            .find(|c| c.check == check.id && c.expires > now)
            .map(|c| Found::Object(Arc::clone(&c.object)))
    }

    /// Remembers an object for `check.cache_for`. Absent objects are not
    /// cached: one created a moment later must become reachable at once.
    pub fn put(&self, check: &OwnerCheck, path: &str, found: &Found, now: Instant) {
        let Found::Object(object) = found else {
            return;
        };
        if check.cache_for.is_zero() {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= MAX_CACHED_OBJECTS && !entries.contains_key(path) {
            entries.retain(|_, list| {
                list.retain(|c| c.expires > now);
                !list.is_empty()
            });
            // Still full of fresh entries: start over rather than grow. The
            // cost is a few extra lookups, never a wrong answer.
            if entries.len() >= MAX_CACHED_OBJECTS {
                entries.clear();
            }
        }
        let list = entries.entry(path.into()).or_default();
        list.retain(|c| c.check != check.id);
        list.push(Cached {
            check: check.id,
            expires: now + check.cache_for,
            object: Arc::clone(object),
        });
    }

    /// Drops what is cached for `written_path` and every path above it on
    /// a segment boundary: a write to `/conversations/7/assignments`
    /// changes what `/conversations/7` would say.
    pub fn forget(&self, written_path: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.is_empty() {
            return;
        }
        let trimmed = written_path.trim_end_matches('/');
        entries.remove(written_path);
        for (at, _) in trimmed.match_indices('/').skip(1) {
            entries.remove(&trimmed[..at]);
        }
        entries.remove(trimmed);
    }

    pub fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Sets `value` at `field` inside `out`, creating objects on the way.
fn put(out: &mut Value, field: &FieldPath, value: Value) {
    let segments: Vec<&str> = field.segments().collect();
    let Some((last, parents)) = segments.split_last() else {
        return;
    };
    let mut at = out;
    for segment in parents {
        let Value::Object(map) = at else {
            return;
        };
        at = map
            .entry((*segment).to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    if let Value::Object(map) = at {
        map.insert((*last).to_owned(), value);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::identity::RoleName;
    use crate::policy::permission::Permission;
    use crate::policy::roles::RoleDef;
    use crate::policy::scope::{FilterMode, LabelRule};
    use crate::request::normalize_path;

    fn check(cache_for: Duration) -> OwnerCheck {
        let mut filter = RowFilter::new("$", "meta.assignee.id", "user_id", FilterMode::Object)
            .unwrap_or_else(|e| panic!("filter should build: {e}"));
        filter.unless_permission = Some(perm("conversations.read_all"));
        filter.labels.push(LabelRule {
            field: FieldPath::parse("labels").unwrap_or_else(|e| panic!("{e}")),
            label: "confidential".to_owned(),
            permission: perm("conversations.read_confidential"),
        });
        OwnerCheck {
            id: 3,
            lookup: PathTemplate::parse(
                "/api/v1/accounts/{account_id}/conversations/{conversation_id}",
            )
            .unwrap_or_else(|e| panic!("{e}")),
            filter,
            cache_for,
        }
    }

    fn perm(p: &str) -> Permission {
        Permission::parse(p).unwrap_or_else(|e| panic!("{p} should parse: {e}"))
    }

    fn roles() -> RoleSet {
        let def = |name: &str, inherits: &[&str], permissions: &[&str]| RoleDef {
            name: RoleName(name.to_owned()),
            inherits: inherits.iter().map(|r| RoleName((*r).to_owned())).collect(),
            permissions: permissions.iter().map(|p| (*p).to_owned()).collect(),
        };
        RoleSet::compile(vec![
            def("agent", &[], &["conversations.read"]),
            def(
                "supervisor",
                &["agent"],
                &["conversations.read_all", "conversations.read_confidential"],
            ),
            def("lead", &["agent"], &["conversations.read_all"]),
        ])
        .unwrap_or_else(|e| panic!("roles should compile: {e}"))
    }

    fn who(role: &str, user_id: Option<&str>) -> Identity {
        Identity {
            subject: "someone".to_owned(),
            roles: vec![RoleName(role.to_owned())],
            attributes: user_id
                .map(|u| ("user_id".to_owned(), vec![u.to_owned()]))
                .into_iter()
                .collect(),
            mfa: false,
            auth_time: None,
            token_id: None,
            expires_at: 2_000_000_000,
        }
    }

    fn conversation(assignee: Option<u64>, labels: &[&str]) -> Vec<u8> {
        let mut meta = json!({"sender": {"phone_number": "+447700900123"}});
        if let Some(id) = assignee {
            meta["assignee"] = json!({"id": id, "name": "Agent"});
        }
        serde_json::to_vec(&json!({"id": 7, "meta": meta, "labels": labels, "status": "open"}))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn outcome(role: &str, user: Option<&str>, status: u16, body: &[u8]) -> Ownership {
        let c = check(Duration::from_secs(5));
        let plan = c.plan(&who(role, user), &roles());
        if plan == RowFilterPlan::Skip {
            return Ownership::Skip;
        }
        let found = c
            .read_response(status, body)
            .unwrap_or_else(|e| panic!("lookup should read: {e}"));
        judge(&found, &plan)
    }

    #[test]
    fn owners_see_their_object_and_nobody_else_does() {
        let mine = conversation(Some(7), &[]);
        type Case<'a> = (&'a str, Option<&'a str>, u16, &'a [u8], Ownership, &'a str);
        let cases: &[Case] = &[
            (
                "agent",
                Some("7"),
                200,
                &mine,
                Ownership::Visible,
                "the assignee",
            ),
            (
                "agent",
                Some("8"),
                200,
                &mine,
                Ownership::Hidden,
                "another agent",
            ),
            (
                "agent",
                None,
                200,
                &mine,
                Ownership::Hidden,
                "an agent without user_id",
            ),
            (
                "agent",
                Some("7"),
                200,
                &conversation(None, &[]),
                Ownership::Hidden,
                "nobody owns an unassigned conversation",
            ),
            (
                "agent",
                Some("7"),
                200,
                &conversation(Some(7), &["vip", "confidential"]),
                Ownership::Hidden,
                "the assignee without clearance for a confidential label",
            ),
            (
                "agent",
                Some("7"),
                404,
                b"{}",
                Ownership::Hidden,
                "an absent object",
            ),
            (
                "agent",
                Some("7"),
                410,
                b"",
                Ownership::Hidden,
                "a deleted object",
            ),
            (
                "supervisor",
                None,
                200,
                &mine,
                Ownership::Skip,
                "bypass and clearance",
            ),
            (
                "lead",
                None,
                200,
                &conversation(Some(9), &[]),
                Ownership::Visible,
                "bypass without clearance still needs the lookup",
            ),
            (
                "lead",
                None,
                200,
                &conversation(Some(9), &["confidential"]),
                Ownership::Hidden,
                "bypass does not lift label rules",
            ),
        ];
        for (role, user, status, body, want, what) in cases {
            assert_eq!(
                outcome(role, *user, *status, body),
                *want,
                "{what}: {role} user {user:?} on HTTP {status}"
            );
        }
    }

    #[test]
    fn lookups_that_cannot_be_judged_are_errors() {
        let c = check(Duration::from_secs(5));
        let cases: &[(u16, &[u8], LookupError)] = &[
            (500, b"{}", LookupError::Status(500)),
            (401, b"{}", LookupError::Status(401)),
            (302, b"", LookupError::Status(302)),
            (200, b"<html>", LookupError::NotJson(String::new())),
            (200, b"[{\"id\":1}]", LookupError::NoObject("$".to_owned())),
            (200, b"{\"id\":1", LookupError::NotJson(String::new())),
        ];
        for (status, body, want) in cases {
            let got = c.read_response(*status, body);
            let same_kind = match (&got, want) {
                (Err(LookupError::NotJson(_)), LookupError::NotJson(_)) => true,
                (Err(g), w) => g == w,
                (Ok(_), _) => false,
            };
            assert!(
                same_kind,
                "HTTP {status} {body:?} should be {want:?}, got {got:?}"
            );
        }
        let huge = vec![b' '; MAX_LOOKUP_BYTES + 1];
        assert_eq!(c.read_response(200, &huge), Err(LookupError::TooLarge));
    }

    #[test]
    fn a_nested_selector_picks_the_object() {
        let mut c = check(Duration::from_secs(5));
        c.filter = RowFilter::new("$.payload", "assignee_id", "user_id", FilterMode::Object)
            .unwrap_or_else(|e| panic!("{e}"));
        let body = br#"{"payload": {"id": 1, "assignee_id": 7}}"#;
        let found = c.read_response(200, body).unwrap_or_else(|e| panic!("{e}"));
        let plan = c.plan(&who("agent", Some("7")), &roles());
        assert_eq!(judge(&found, &plan), Ownership::Visible);
        let plan = c.plan(&who("agent", Some("8")), &roles());
        assert_eq!(judge(&found, &plan), Ownership::Hidden);
    }

    #[test]
    fn the_cache_keeps_only_the_fields_the_check_reads() {
        let c = check(Duration::from_secs(5));
        let found = c
            .read_response(200, &conversation(Some(7), &["vip"]))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            found,
            Found::Object(Arc::new(
                json!({"meta": {"assignee": {"id": 7}}, "labels": ["vip"]})
            )),
            "customer data (the sender's phone number) must not be kept"
        );
    }

    #[test]
    fn cache_entries_expire_and_writes_forget_them() {
        let c = check(Duration::from_secs(5));
        let cache = OwnerCache::default();
        let t0 = Instant::now();
        let path = "/api/v1/accounts/1/conversations/7";
        let found = c
            .read_response(200, &conversation(Some(7), &[]))
            .unwrap_or_else(|e| panic!("{e}"));
        cache.put(&c, path, &found, t0);
        assert_eq!(
            cache.get(&c, path, t0 + Duration::from_secs(4)),
            Some(found.clone())
        );
        assert_eq!(
            cache.get(&c, path, t0 + Duration::from_secs(5)),
            None,
            "an entry is not used once cache_for has passed"
        );
        let other = OwnerCheck {
            id: 4,
            ..check(Duration::from_secs(5))
        };
        assert_eq!(
            cache.get(&other, path, t0),
            None,
            "entries belong to one check"
        );

        cache.forget("/api/v1/accounts/1/conversations/70/messages");
        assert_eq!(
            cache.get(&c, path, t0),
            Some(found.clone()),
            "a sibling's write keeps it"
        );
        cache.forget("/api/v1/accounts/1/conversations/7/assignments");
        assert_eq!(
            cache.get(&c, path, t0),
            None,
            "a write below the object drops it"
        );

        cache.put(&c, path, &found, t0);
        cache.forget(&format!("{path}/"));
        assert!(cache.is_empty(), "a write to the object itself drops it");

        cache.put(&c, path, &Found::Absent, t0);
        assert!(cache.is_empty(), "absent objects are not cached");
        cache.put(&check(Duration::ZERO), path, &found, t0);
        assert!(cache.is_empty(), "cache_for 0 caches nothing");
    }

    #[test]
    fn a_full_cache_makes_room_instead_of_growing() {
        let c = check(Duration::from_secs(5));
        let cache = OwnerCache::default();
        let t0 = Instant::now();
        let found = Found::Object(Arc::new(json!({})));
        for n in 0..MAX_CACHED_OBJECTS {
            cache.put(&c, &format!("/c/{n}"), &found, t0);
        }
        assert_eq!(cache.len(), MAX_CACHED_OBJECTS);
        cache.put(&c, "/c/new", &found, t0);
        assert!(cache.len() <= MAX_CACHED_OBJECTS, "the cache stays bounded");
        assert_eq!(
            cache.get(&c, "/c/new", t0),
            Some(found),
            "the new entry is kept"
        );
    }

    #[test]
    fn lookup_paths_come_from_the_route_params() {
        let route = PathTemplate::parse(
            "/api/v1/accounts/{account_id}/conversations/{conversation_id}/messages",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let path = normalize_path("/api/v1/accounts/1/conversations/42/messages")
            .unwrap_or_else(|e| panic!("{e}"));
        let params = route
            .match_path(&path)
            .unwrap_or_else(|| panic!("should match"));
        assert_eq!(
            check(Duration::ZERO).lookup_path(&params).as_deref(),
            Some("/api/v1/accounts/1/conversations/42")
        );
    }
}
