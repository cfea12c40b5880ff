//! Reading the caller's identity out of verified claims, through the paths
//! the config names (`sub`, `realm_access.roles`, `https://acme.example/teams`).
//!
//! Values are typed strictly: a roles claim that is neither a string nor a
//! list of strings is an error, not "no roles", so an identity provider
//! that changes shape is noticed at once instead of silently
//! under-authorizing (or worse) everyone.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::{ClaimPaths, MfaSettings};
use crate::identity::{Identity, RoleName};

/// A claim path: a top-level claim name or a dotted walk through nested
/// objects (`realm_access.roles`).
///
/// Claim names may themselves contain dots (Auth0's namespaced claims are
/// URLs), so the whole path is first tried as one top-level name and only
/// then walked segment by segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimPath {
    raw: String,
    segments: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimPathError {
    #[error("claim path is empty")]
    Empty,
    #[error("claim path `{0}` has an empty segment")]
    EmptySegment(String),
}

/// Why claims could not become an identity. Names are the configured claim
/// paths (operator text), never claim values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    #[error("claim `{0}` is missing")]
    Missing(String),
    #[error("claim `{0}` has the wrong type")]
    Invalid(String),
}

impl ClaimPath {
    pub fn new(path: &str) -> Result<ClaimPath, ClaimPathError> {
        if path.is_empty() {
            return Err(ClaimPathError::Empty);
        }
        let segments: Vec<String> = path.split('.').map(str::to_string).collect();
        if segments.iter().any(String::is_empty) {
            return Err(ClaimPathError::EmptySegment(path.to_string()));
        }
        Ok(ClaimPath {
            raw: path.to_string(),
            segments,
        })
    }

    /// A path of one claim name, taken literally (dots included).
    pub fn top_level(name: &str) -> ClaimPath {
        ClaimPath {
            raw: name.to_string(),
            segments: vec![name.to_string()],
        }
    }

    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The value at this path, if any. JSON `null` counts as absent.
    pub fn lookup<'a>(&self, claims: &'a Map<String, Value>) -> Option<&'a Value> {
        let found = match claims.get(&self.raw) {
            Some(v) => Some(v),
            None if self.segments.len() > 1 => {
                let (first, rest) = self.segments.split_first()?;
                rest.iter()
                    .try_fold(claims.get(first)?, |v, seg| v.as_object()?.get(seg))
            }
            None => None,
        };
        found.filter(|v| !v.is_null())
    }
}

/// Build the identity from signature-checked claims. `expires_at` is the
/// already validated `exp`.
pub(crate) fn identity_from_claims(
    claims: &Map<String, Value>,
    paths: &ClaimPaths,
    mfa: &MfaSettings,
    expires_at: i64,
) -> Result<Identity, ClaimError> {
    let subject = match paths.subject.lookup(claims) {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(_) => return Err(ClaimError::Invalid(paths.subject.as_str().to_string())),
        None => return Err(ClaimError::Missing(paths.subject.as_str().to_string())),
    };
    let roles = match paths.roles.lookup(claims) {
        None => Vec::new(),
        Some(v) => string_list(v)
            .ok_or_else(|| ClaimError::Invalid(paths.roles.as_str().to_string()))?
            .into_iter()
            .map(RoleName)
            .collect(),
    };
    let mut attributes = BTreeMap::new();
    for (name, path) in &paths.attributes {
        if let Some(v) = path.lookup(claims) {
            let values =
                scalar_list(v).ok_or_else(|| ClaimError::Invalid(path.as_str().to_string()))?;
            attributes.insert(name.clone(), values);
        }
    }
    Ok(Identity {
        subject,
        roles,
        attributes,
        mfa: mfa_claimed(claims, mfa)?,
        auth_time: optional_numeric_date(claims, "auth_time")?,
        token_id: optional_string(claims, "jti")?,
        expires_at,
    })
}

/// A NumericDate claim (RFC 7519 §2): integer or fractional seconds;
/// fractions are dropped. `Ok(None)` when absent.
pub(crate) fn optional_numeric_date(
    claims: &Map<String, Value>,
    name: &str,
) -> Result<Option<i64>, ClaimError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(i) = n.as_i64() {
                return Ok(Some(i));
            }
            match n.as_f64() {
                // The bounds keep the cast exact; anything beyond is nonsense.
                Some(f) if f.is_finite() && f.abs() < 1e15 => Ok(Some(f.floor() as i64)),
                _ => Err(ClaimError::Invalid(name.to_string())),
            }
        }
        Some(_) => Err(ClaimError::Invalid(name.to_string())),
    }
}

fn optional_string(claims: &Map<String, Value>, name: &str) -> Result<Option<String>, ClaimError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ClaimError::Invalid(name.to_string())),
    }
}

/// MFA happened if `amr` holds one of `amr_any` or `acr` is one of
/// `acr_any`. A malformed `amr`/`acr` is an error rather than "no MFA" so
/// a broken identity provider is visible.
fn mfa_claimed(claims: &Map<String, Value>, mfa: &MfaSettings) -> Result<bool, ClaimError> {
    let amr = match claims.get("amr") {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => string_list(v).ok_or_else(|| ClaimError::Invalid("amr".to_string()))?,
    };
    let acr = optional_string(claims, "acr")?;
    let by_amr = amr.iter().any(|m| mfa.amr_any.contains(m));
    let by_acr = acr.is_some_and(|a| mfa.acr_any.contains(&a));
    Ok(by_amr || by_acr)
}

/// A string or a list of strings.
fn string_list(v: &Value) -> Option<Vec<String>> {
    match v {
        Value::String(s) => Some(vec![s.clone()]),
        Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().map(str::to_string))
            .collect(),
        _ => None,
    }
}

/// A string, number or bool, or a list of them, as text.
fn scalar_list(v: &Value) -> Option<Vec<String>> {
    match v {
        Value::Array(items) => items.iter().map(scalar_text).collect(),
        other => scalar_text(other).map(|s| vec![s]),
    }
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    fn paths(roles: &str, attrs: &[(&str, &str)]) -> ClaimPaths {
        ClaimPaths {
            subject: ClaimPath::top_level("sub"),
            roles: ClaimPath::new(roles).unwrap_or_else(|e| panic!("{e}")),
            attributes: attrs
                .iter()
                .map(|(n, p)| {
                    (
                        n.to_string(),
                        ClaimPath::new(p).unwrap_or_else(|e| panic!("{e}")),
                    )
                })
                .collect(),
        }
    }

    fn identity(claims: Value, p: &ClaimPaths) -> Result<Identity, ClaimError> {
        identity_from_claims(&obj(claims), p, &MfaSettings::default(), 100)
    }

    #[test]
    fn nested_roles_path_is_walked() {
        let p = paths("realm_access.roles", &[]);
        let id = identity(
            json!({"sub": "u1", "realm_access": {"roles": ["agent", "supervisor"]}}),
            &p,
        )
        .unwrap_or_else(|e| panic!("nested roles should be read: {e:?}"));
        assert_eq!(
            id.roles,
            vec![RoleName("agent".into()), RoleName("supervisor".into())],
            "roles should come from realm_access.roles in order"
        );
    }

    #[test]
    fn roles_may_be_a_single_string_or_a_list() {
        let p = paths("roles", &[]);
        let one = identity(json!({"sub": "u1", "roles": "admin"}), &p).map(|i| i.roles);
        assert_eq!(
            one,
            Ok(vec![RoleName("admin".into())]),
            "a string is one role"
        );
        let many = identity(json!({"sub": "u1", "roles": ["a", "b"]}), &p).map(|i| i.roles.len());
        assert_eq!(many, Ok(2), "a list gives every role");
        let none = identity(json!({"sub": "u1"}), &p).map(|i| i.roles.len());
        assert_eq!(none, Ok(0), "an absent roles claim means no roles");
        let bad = identity(json!({"sub": "u1", "roles": ["a", 7]}), &p);
        assert_eq!(
            bad,
            Err(ClaimError::Invalid("roles".into())),
            "a non-string role should be refused, not dropped"
        );
    }

    #[test]
    fn attributes_become_text_and_missing_ones_are_absent() {
        let p = paths(
            "roles",
            &[
                ("user_id", "uid"),
                ("teams", "org.teams"),
                ("region", "region"),
            ],
        );
        let id = identity(
            json!({"sub": "u1", "uid": 42, "org": {"teams": [3, "sales", true]}}),
            &p,
        )
        .unwrap_or_else(|e| panic!("attributes should be read: {e:?}"));
        assert_eq!(
            id.attribute("user_id"),
            ["42"],
            "a number is written in decimal"
        );
        assert_eq!(
            id.attribute("teams"),
            ["3", "sales", "true"],
            "a list keeps every scalar"
        );
        assert!(
            id.attribute("region").is_empty(),
            "a missing attribute reads as empty"
        );
        assert!(
            !id.attributes.contains_key("region"),
            "and is not stored at all"
        );
        let bad = identity(json!({"sub": "u1", "uid": {"n": 1}}), &p);
        assert_eq!(
            bad,
            Err(ClaimError::Invalid("uid".into())),
            "an object attribute is refused"
        );
    }

    #[test]
    fn dotted_claim_names_are_tried_literally_first() {
        let p = paths("https://acme.example/roles", &[]);
        let id = identity(
            json!({"sub": "u1", "https://acme.example/roles": ["agent"]}),
            &p,
        );
        assert_eq!(
            id.map(|i| i.roles),
            Ok(vec![RoleName("agent".into())]),
            "a namespaced claim containing dots should be found by its full name"
        );
    }

    #[test]
    fn subject_must_be_a_non_empty_string() {
        let p = paths("roles", &[]);
        assert_eq!(
            identity(json!({}), &p),
            Err(ClaimError::Missing("sub".into()))
        );
        assert_eq!(
            identity(json!({"sub": ""}), &p),
            Err(ClaimError::Invalid("sub".into()))
        );
        assert_eq!(
            identity(json!({"sub": 12}), &p),
            Err(ClaimError::Invalid("sub".into()))
        );
    }

    #[test]
    fn mfa_by_amr_or_acr() {
        let mfa = MfaSettings {
            amr_any: vec!["otp".into(), "hwk".into()],
            acr_any: vec!["urn:acme:mfa".into()],
            max_age: None,
        };
        let p = ClaimPaths::default();
        let by = |c: Value| identity_from_claims(&obj(c), &p, &mfa, 0).map(|i| i.mfa);
        assert_eq!(
            by(json!({"sub": "u", "amr": ["pwd", "otp"]})),
            Ok(true),
            "amr otp is MFA"
        );
        assert_eq!(
            by(json!({"sub": "u", "acr": "urn:acme:mfa"})),
            Ok(true),
            "acr match is MFA"
        );
        assert_eq!(
            by(json!({"sub": "u", "amr": ["pwd"], "acr": "0"})),
            Ok(false),
            "password only is not"
        );
        assert_eq!(
            by(json!({"sub": "u", "amr": 5})),
            Err(ClaimError::Invalid("amr".into()))
        );
    }

    #[test]
    fn numeric_dates_accept_fractions_and_refuse_text() {
        let c = obj(json!({"a": 10.9, "b": "10", "c": 1e300}));
        assert_eq!(optional_numeric_date(&c, "a"), Ok(Some(10)));
        assert_eq!(
            optional_numeric_date(&c, "b"),
            Err(ClaimError::Invalid("b".into()))
        );
        assert_eq!(
            optional_numeric_date(&c, "c"),
            Err(ClaimError::Invalid("c".into()))
        );
        assert_eq!(optional_numeric_date(&c, "d"), Ok(None));
    }

    #[test]
    fn claim_paths_refuse_empty_segments() {
        assert_eq!(ClaimPath::new(""), Err(ClaimPathError::Empty));
        assert!(matches!(
            ClaimPath::new("a..b"),
            Err(ClaimPathError::EmptySegment(_))
        ));
    }
}
