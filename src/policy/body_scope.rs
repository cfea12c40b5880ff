//! Scope bindings on a request body: a member of the JSON body must be one
//! of the caller's claim values, like a path parameter under a
//! [`ScopeBinding`](super::ScopeBinding).
//!
//! Chatwoot takes the inbox of a new conversation (the WhatsApp number it
//! is sent from), its assignee and its team from the body of
//! `POST …/conversations`, not from the path: without this, an agent bound
//! to the UK number could open a conversation on the German one.
//!
//! What is checked must be what the upstream reads, so the check refuses
//! whatever a Rails app could read differently:
//! - the body must be `application/json` (a form body, or no type at all on
//!   a POST, is parsed as a form by Rack; anything else the gateway cannot
//!   read the way the app does);
//! - it must be one JSON object without a repeated member name (Ruby's
//!   parser keeps the last of two, serde's map the last too, but which one
//!   a check saw must not be left to chance);
//! - the query string must not name the member (Rails merges query
//!   parameters over body parameters, so `?inbox_id=9` would win over the
//!   body's, and so would `?inbox_id[x]=…`);
//! - the value must be a string or a number, compared as text (`007` is
//!   not `7`; an array, which Rails would turn into an `IN (…)`, is
//!   refused).
//!
//! Pure: the proxy calls [`check_head`], reads the body (at most
//! [`MAX_SCOPED_BODY`]) and calls [`check_body`].

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;

use super::permission::Permission;
use crate::identity::Identity;
use crate::request::method_override::query_override;

/// Largest body read to check a binding: pingora keeps at most 64 KiB of a
/// request body to forward after it was read.
pub const MAX_SCOPED_BODY: usize = 64 * 1024;

/// A top-level member of the JSON body that must be one of the caller's
/// claim values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyBinding {
    /// The member (`inbox_id`).
    pub member: String,
    /// Attribute claim holding the allowed values (`inbox_ids`).
    pub claim: String,
    /// Callers holding this skip the binding.
    pub unless_permission: Option<Permission>,
    /// A body without the member (or with `null`) passes: only a value
    /// that is there must be the caller's (Chatwoot's optional
    /// `assignee_id` and `team_id` of a new conversation).
    pub optional: bool,
    /// Members that must be in the body too (not `null`), where the
    /// upstream reads the bound member only beside them: Chatwoot takes a
    /// new conversation's inbox from `inbox_id` only with a `contact_id`,
    /// else from whatever contact inbox `source_id` finds.
    pub requires: Vec<String>,
}

/// Why a body did not pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyRefusal {
    /// The body cannot be read the way the upstream reads it: 400.
    Unreadable(String),
    /// A member is missing or not the caller's: 403 `scope_denied`.
    Denied(String),
}

impl fmt::Display for BodyRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyRefusal::Unreadable(why) | BodyRefusal::Denied(why) => f.write_str(why),
        }
    }
}

/// The bindings that apply to this caller (those whose `unless_permission`
/// they lack). Empty: the body need not be read.
pub fn applying(
    bindings: &[BodyBinding],
    holds: impl Fn(&Permission) -> bool,
) -> Vec<&BodyBinding> {
    bindings
        .iter()
        .filter(|b| !b.unless_permission.as_ref().is_some_and(&holds))
        .collect()
}

/// What can be checked before the body is read: the query must not name a
/// bound member and the body must be declared JSON.
pub fn check_head(
    bindings: &[&BodyBinding],
    content_type: Option<&[u8]>,
    query: Option<&str>,
) -> Result<(), BodyRefusal> {
    let Some(first) = bindings.first() else {
        return Ok(());
    };
    if let Some(q) = query {
        let names: Vec<String> = bindings.iter().map(|b| b.member.clone()).collect();
        if let Some(name) = query_override(q, &names) {
            return Err(BodyRefusal::Unreadable(format!(
                "`{name}` in the query would stand in for the body's (Rails merges query parameters over the body's)"
            )));
        }
    }
    if !is_json(content_type) {
        return Err(BodyRefusal::Unreadable(format!(
            "the body must be application/json to check `{}` (it is {})",
            first.member,
            content_type.map_or_else(
                || "untyped".to_string(),
                |t| format!("`{}`", String::from_utf8_lossy(t))
            )
        )));
    }
    Ok(())
}

/// Checks the bindings that apply against a whole body (after
/// [`check_head`] passed).
pub fn check_body(
    bindings: &[&BodyBinding],
    identity: &Identity,
    body: &[u8],
) -> Result<(), BodyRefusal> {
    if bindings.is_empty() {
        return Ok(());
    }
    let wanted: HashSet<&str> = bindings
        .iter()
        .flat_map(|b| std::iter::once(&b.member).chain(&b.requires))
        .map(String::as_str)
        .collect();
    let members = top_level(body, &wanted)
        .map_err(|e| BodyRefusal::Unreadable(format!("the body is not one JSON object: {e}")))?;
    let member = |name: &str| members.iter().find(|(n, _)| n == name).map(|(_, v)| v);
    for b in bindings {
        if let Some(missing) = b
            .requires
            .iter()
            .find(|r| matches!(member(r), None | Some(Value::Null)))
        {
            return Err(BodyRefusal::Unreadable(format!(
                "`{}` is checked only with `{missing}` in the body (without it the upstream could take the object from elsewhere)",
                b.member
            )));
        }
        let value = member(&b.member);
        let text = match value {
            None | Some(Value::Null) if b.optional => continue,
            None | Some(Value::Null) => {
                return Err(BodyRefusal::Denied(format!(
                    "the body has no `{}` to check against `{}`",
                    b.member, b.claim
                )))
            }
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            Some(_) => {
                return Err(BodyRefusal::Denied(format!(
                    "`{}` in the body is not a string or a number",
                    b.member
                )))
            }
        };
        let allowed = identity.attribute(&b.claim);
        if allowed.is_empty() {
            return Err(BodyRefusal::Denied(format!(
                "the token has no `{}` for the body's `{}`",
                b.claim, b.member
            )));
        }
        if !allowed.contains(&text) {
            return Err(BodyRefusal::Denied(format!(
                "`{}` {text} in the body is not in the token's `{}`",
                b.member, b.claim
            )));
        }
    }
    Ok(())
}

/// `application/json`, any parameters after `;`, one `Content-Type` only
/// (two would be joined by some parsers and not by others).
fn is_json(content_type: Option<&[u8]>) -> bool {
    let Some(raw) = content_type else {
        return false;
    };
    let Ok(text) = std::str::from_utf8(raw) else {
        return false;
    };
    if text.contains(',') {
        return false;
    }
    let media = text.split(';').next().unwrap_or("").trim();
    media.eq_ignore_ascii_case("application/json")
}

/// The `wanted` members of a body that must be one JSON object whose
/// member names are all distinct (the others are skipped, not kept).
fn top_level(body: &[u8], wanted: &HashSet<&str>) -> Result<Vec<(String, Value)>, String> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let found = de
        .deserialize_map(Members { wanted })
        .map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    Ok(found)
}

struct Members<'w> {
    wanted: &'w HashSet<&'w str>,
}

impl<'de> Visitor<'de> for Members<'_> {
    type Value = Vec<(String, Value)>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen: HashSet<String> = HashSet::new();
        let mut found = Vec::new();
        while let Some(name) = map.next_key::<String>()? {
            if !seen.insert(name.clone()) {
                return Err(de::Error::custom(format!("member `{name}` appears twice")));
            }
            if self.wanted.contains(name.as_str()) {
                found.push((name, map.next_value::<Value>()?));
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{Identity, RoleName};

    fn agent(inboxes: &[&str]) -> Identity {
        Identity {
            subject: "amelia".into(),
            roles: vec![RoleName("agent".into())],
            attributes: [(
                "inbox_ids".to_string(),
                inboxes.iter().map(|s| (*s).to_string()).collect(),
            )]
            .into(),
            mfa: true,
            auth_time: None,
            token_id: None,
            expires_at: 0,
        }
    }

    fn binding(member: &str, claim: &str) -> BodyBinding {
        BodyBinding {
            member: member.into(),
            claim: claim.into(),
            unless_permission: None,
            optional: false,
            requires: Vec::new(),
        }
    }

    const JSON: Option<&[u8]> = Some(b"application/json; charset=utf-8");

    fn check(
        bindings: &[&BodyBinding],
        identity: &Identity,
        ct: Option<&[u8]>,
        query: Option<&str>,
        body: &[u8],
    ) -> Result<(), BodyRefusal> {
        check_head(bindings, ct, query)?;
        check_body(bindings, identity, body)
    }

    fn run(body: &str, ct: Option<&[u8]>, query: Option<&str>) -> Result<(), BodyRefusal> {
        let b = binding("inbox_id", "inbox_ids");
        check(&[&b], &agent(&["1", "7"]), ct, query, body.as_bytes())
    }

    #[test]
    fn a_member_in_the_claim_passes() {
        assert_eq!(
            run(r#"{"inbox_id": 1, "contact_id": 5}"#, JSON, None),
            Ok(())
        );
        assert_eq!(
            run(r#"{"contact_id": 5, "inbox_id": "7"}"#, JSON, None),
            Ok(())
        );
        assert_eq!(
            run(
                r#"{"inbox_id": 7, "message": {"inbox_id": 2, "content": "hi"}}"#,
                Some(b"Application/JSON"),
                Some("page=2")
            ),
            Ok(()),
            "only the top level is the member; a nested one is another field"
        );
    }

    #[test]
    fn a_member_outside_the_claim_or_missing_is_denied() {
        for body in [
            r#"{"inbox_id": 2}"#,
            r#"{"inbox_id": "07"}"#,
            r#"{"inbox_id": 7.0}"#,
            r#"{"inbox_id": [7, 2]}"#,
            r#"{"inbox_id": {"id": 7}}"#,
            r#"{"inbox_id": true}"#,
            r#"{"inbox_id": null}"#,
            r#"{"contact_id": 5}"#,
            r#"{}"#,
        ] {
            assert!(
                matches!(run(body, JSON, None), Err(BodyRefusal::Denied(_))),
                "{body}"
            );
        }
        let b = binding("inbox_id", "inbox_ids");
        let no_claim = agent(&[]);
        assert!(matches!(
            check(&[&b], &no_claim, JSON, None, br#"{"inbox_id": 7}"#),
            Err(BodyRefusal::Denied(_))
        ));
    }

    #[test]
    fn what_the_upstream_could_read_differently_is_refused() {
        let unreadable = |body: &str, ct: Option<&[u8]>, query: Option<&str>| {
            matches!(run(body, ct, query), Err(BodyRefusal::Unreadable(_)))
        };
        let ok = r#"{"inbox_id": 7}"#;
        assert!(
            unreadable(ok, JSON, Some("inbox_id=2")),
            "query wins in Rails"
        );
        assert!(unreadable(ok, JSON, Some("x=1&inbox%5Fid=2")));
        assert!(unreadable(ok, JSON, Some("inbox_id[x]=2")));
        assert!(unreadable(ok, None, None), "untyped: Rack reads a form");
        assert!(unreadable(
            ok,
            Some(b"application/x-www-form-urlencoded"),
            None
        ));
        assert!(unreadable(ok, Some(b"text/plain"), None));
        assert!(unreadable(ok, Some(b"application/json, text/plain"), None));
        assert!(unreadable(r#"{"inbox_id": 7, "inbox_id": 2}"#, JSON, None));
        assert!(unreadable(r#"{"x": 1, "x": 2, "inbox_id": 7}"#, JSON, None));
        assert!(unreadable(r#"[{"inbox_id": 7}]"#, JSON, None));
        assert!(unreadable(r#"{"inbox_id": 7} {"inbox_id": 2}"#, JSON, None));
        assert!(unreadable(r#"{"inbox_id": 7"#, JSON, None));
        assert!(unreadable("", JSON, None));
    }

    #[test]
    fn an_optional_member_may_be_absent_but_not_another_callers() {
        let mut team = binding("team_id", "team_ids");
        team.optional = true;
        let amelia = Identity {
            attributes: [("team_ids".to_string(), vec!["4".to_string()])].into(),
            ..agent(&[])
        };
        let run = |body: &str| check(&[&team], &amelia, JSON, None, body.as_bytes());
        assert_eq!(run(r#"{"inbox_id": 1}"#), Ok(()));
        assert_eq!(run(r#"{"team_id": null}"#), Ok(()));
        assert_eq!(run(r#"{"team_id": 4}"#), Ok(()));
        for denied in [
            r#"{"team_id": 5}"#,
            r#"{"team_id": [4]}"#,
            r#"{"team_id": ""}"#,
        ] {
            assert!(
                matches!(run(denied), Err(BodyRefusal::Denied(_))),
                "{denied}"
            );
        }
        assert!(matches!(
            check(&[&team], &amelia, JSON, Some("team_id=5"), br#"{}"#),
            Err(BodyRefusal::Unreadable(_))
        ));
    }

    #[test]
    fn a_member_read_only_beside_another_needs_it() {
        let mut inbox = binding("inbox_id", "inbox_ids");
        inbox.requires = vec!["contact_id".into()];
        let run = |body: &str| check(&[&inbox], &agent(&["1"]), JSON, None, body.as_bytes());
        assert_eq!(run(r#"{"inbox_id": 1, "contact_id": 5}"#), Ok(()));
        for body in [
            r#"{"inbox_id": 1, "source_id": "4915155512345"}"#,
            r#"{"inbox_id": 1, "contact_id": null}"#,
        ] {
            assert!(
                matches!(run(body), Err(BodyRefusal::Unreadable(_))),
                "{body}"
            );
        }
        assert!(matches!(
            run(r#"{"inbox_id": 2, "contact_id": 5}"#),
            Err(BodyRefusal::Denied(_))
        ));
    }

    #[test]
    fn a_caller_holding_the_permission_skips_the_binding() {
        let mut b = binding("inbox_id", "inbox_ids");
        b.unless_permission =
            Some(Permission::parse("scope.all_inboxes").unwrap_or_else(|e| panic!("{e}")));
        let bindings = [b];
        assert!(applying(&bindings, |_| true).is_empty());
        assert_eq!(applying(&bindings, |_| false).len(), 1);
    }
}
