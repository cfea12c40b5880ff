//! Object-level authorization (OWASP API1): a caller may only reach the
//! objects their token says are theirs.
//!
//! Two tools:
//! - [`ScopeBinding`]: a path parameter must be one of the caller's claim
//!   values (`phone_number_id` ∈ `phone_number_ids`, `account_id` ∈
//!   `account_ids`), checked before the request goes upstream.
//! - [`RowFilter`]: list responses are filtered to the caller's rows
//!   (conversations assigned to them), and rows carrying a protected label
//!   are removed unless the caller may see them. This module only *plans*
//!   the filter per request ([`plan_row_filter`]); the streaming JSON
//!   rewriter applies the plan, and [`item_allowed`] is the reference
//!   behaviour it must match.
//!
//! Values are compared as exact text: path segments as normalized, claim
//! values as the token states them (numbers in decimal), JSON numbers in
//! their serde_json spelling. `007` is not `7`.

use std::fmt;
use std::sync::Arc;

use serde_json::Value;

use super::error::PolicyError;
use super::permission::Permission;
use super::roles::RoleSet;
use crate::identity::Identity;
use crate::request::query::{QueryParams, QueryValue};
use crate::route::Params;

/// A path or query parameter that must be one of the caller's claim values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeBinding {
    /// Path parameter of the route (`account_id`), or query parameter.
    pub param: String,
    pub source: ScopeSource,
    /// Attribute claim holding the allowed values (`account_ids`).
    pub claim: String,
    /// Callers holding this permission skip the binding (supervisors with
    /// `conversations.read_all` see every inbox).
    pub unless_permission: Option<Permission>,
}

/// Where a scope binding's parameter is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeSource {
    /// `{phone_number_id}` in the route's path.
    Path,
    /// `?phone_number_id=` in the request's query, which must name it once.
    Query,
}

/// What a scope binding found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeOutcome {
    /// The parameter's value is among the claim's values.
    Allowed,
    /// The caller holds the binding's `unless_permission`.
    Bypassed,
    /// The route has no such parameter (a config mistake the compiler
    /// should catch; refused rather than ignored).
    MissingParam,
    /// The token carries no value for the claim.
    MissingClaim,
    /// The value is not among the claim's values.
    NotInClaim,
    /// A query binding's parameter is not in the request's query.
    NotInQuery,
    /// The query gives the parameter more than one value (or as an
    /// array): the upstream might take another than the one checked.
    AmbiguousQuery,
}

/// How a [`RowFilter`]'s selector is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterMode {
    /// The selector ends in `[*]`: each array element is an item, and items
    /// not allowed are removed from the array.
    Items,
    /// The selector names one object (`$` for the whole body): if it is not
    /// allowed the whole response must be refused (fail closed), since
    /// removing the root is not a response.
    Object,
}

/// A JSONPath-like selector: `$`, then `.name` and `[*]` steps, such as
/// `$.data.payload[*]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemSelector {
    source: Arc<str>,
    steps: Arc<[SelectorStep]>,
}

/// One step of an [`ItemSelector`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SelectorStep {
    /// `.name`: the member of an object.
    Member(Box<str>),
    /// `[*]`: every element of an array.
    Each,
}

/// A dotted path to a value inside an item (`meta.assignee.id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath {
    source: Arc<str>,
    segments: Arc<[Box<str>]>,
}

/// Items whose `field` array holds `label` are removed unless the caller
/// holds `permission`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelRule {
    pub field: FieldPath,
    pub label: String,
    pub permission: Permission,
}

/// A route's `row_filter`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowFilter {
    pub items: ItemSelector,
    /// Field of each item compared with the claim (`meta.assignee.id`).
    pub field: FieldPath,
    /// Attribute claim holding the caller's values (`user_id`).
    pub claim: String,
    /// Callers holding this see every owner's items (label rules still
    /// apply to them).
    pub unless_permission: Option<Permission>,
    pub mode: FilterMode,
    pub labels: Vec<LabelRule>,
}

/// What to remove from one response, for one caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowFilterPlan {
    /// Nothing: the response passes untouched (and need not be buffered).
    Skip,
    /// Keep an item only if it passes every test below. Never built with
    /// both empty: that is `Skip`.
    Keep {
        /// The ownership test; `None` when the caller holds the filter's
        /// `unless_permission`.
        owner: Option<OwnerMatch>,
        /// Labels the caller may not see.
        hidden_labels: Vec<HiddenLabel>,
    },
}

/// An item is kept iff the value at `field` is a string or number whose
/// text is in `allowed_values`. A missing or null field (an unassigned
/// conversation has no `meta.assignee`) is not kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerMatch {
    pub field: FieldPath,
    pub allowed_values: Vec<String>,
}

/// An item whose `field` array contains the string `label` is removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HiddenLabel {
    pub field: FieldPath,
    pub label: String,
}

impl ScopeBinding {
    /// Checks the binding; `holds` answers whether the caller holds a
    /// permission.
    pub fn check(
        &self,
        identity: &Identity,
        params: &Params,
        query: &QueryParams,
        holds: impl Fn(&Permission) -> bool,
    ) -> ScopeOutcome {
        if self.unless_permission.as_ref().is_some_and(holds) {
            return ScopeOutcome::Bypassed;
        }
        let value = match self.value(params, query) {
            Ok(v) => v,
            Err(outcome) => return outcome,
        };
        let allowed = identity.attribute(&self.claim);
        if allowed.is_empty() {
            return ScopeOutcome::MissingClaim;
        }
        if allowed.iter().any(|a| a == value) {
            ScopeOutcome::Allowed
        } else {
            ScopeOutcome::NotInClaim
        }
    }
}

impl ScopeBinding {
    /// The parameter's value in this request, or why there is none.
    pub fn value<'a>(
        &self,
        params: &'a Params,
        query: &'a QueryParams,
    ) -> Result<&'a str, ScopeOutcome> {
        match self.source {
            ScopeSource::Path => params.get(&self.param).ok_or(ScopeOutcome::MissingParam),
            ScopeSource::Query => match query.get(&self.param) {
                QueryValue::One(v) => Ok(v),
                QueryValue::Absent => Err(ScopeOutcome::NotInQuery),
                QueryValue::Ambiguous => Err(ScopeOutcome::AmbiguousQuery),
            },
        }
    }
}

impl ScopeOutcome {
    pub fn passes(self) -> bool {
        matches!(self, ScopeOutcome::Allowed | ScopeOutcome::Bypassed)
    }
}

impl fmt::Display for ScopeOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ScopeOutcome::Allowed => "allowed",
            ScopeOutcome::Bypassed => "bypassed by permission",
            ScopeOutcome::MissingParam => "denied: route has no such parameter",
            ScopeOutcome::MissingClaim => "denied: token lacks the claim",
            ScopeOutcome::NotInClaim => "denied: value not in the claim",
            ScopeOutcome::NotInQuery => "denied: the query does not name it",
            ScopeOutcome::AmbiguousQuery => "denied: the query names it more than once",
        })
    }
}

impl ItemSelector {
    pub fn parse(text: &str) -> Result<ItemSelector, PolicyError> {
        let bad = |why| PolicyError::BadSelector {
            text: text.to_owned(),
            why,
        };
        let mut rest = text
            .strip_prefix('$')
            .ok_or_else(|| bad("it must start with `$`"))?;
        let mut steps = Vec::new();
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix("[*]") {
                steps.push(SelectorStep::Each);
                rest = after;
            } else if let Some(after) = rest.strip_prefix('.') {
                let end = after.find(['.', '[']).unwrap_or(after.len());
                let (name, tail) = after.split_at(end);
                if name.is_empty() || !name.bytes().all(is_name_byte) {
                    return Err(bad("member names must be non-empty [A-Za-z0-9_-]"));
                }
                steps.push(SelectorStep::Member(name.into()));
                rest = tail;
            } else {
                return Err(bad("only `.name` and `[*]` steps are supported"));
            }
        }
        Ok(ItemSelector {
            source: text.into(),
            steps: steps.into(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub fn steps(&self) -> &[SelectorStep] {
        &self.steps
    }

    /// The values the selector picks in a whole document (reference
    /// behaviour for the streaming rewriter; missing members pick nothing).
    pub fn select<'v>(&self, document: &'v Value) -> Vec<&'v Value> {
        let mut current = vec![document];
        for step in self.steps.iter() {
            current = match step {
                SelectorStep::Member(name) => {
                    current.into_iter().filter_map(|v| v.get(&**name)).collect()
                }
                SelectorStep::Each => current
                    .into_iter()
                    .filter_map(Value::as_array)
                    .flatten()
                    .collect(),
            };
        }
        current
    }
}

impl FieldPath {
    pub fn parse(text: &str) -> Result<FieldPath, PolicyError> {
        let segments: Vec<Box<str>> = text.split('.').map(Box::from).collect();
        let valid = segments
            .iter()
            .all(|s| !s.is_empty() && s.bytes().all(is_name_byte));
        if !valid {
            return Err(PolicyError::BadFieldPath {
                text: text.to_owned(),
            });
        }
        Ok(FieldPath {
            source: text.into(),
            segments: segments.into(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().map(|s| &**s)
    }

    /// The value at this path inside `item`, through objects only.
    pub fn lookup<'v>(&self, item: &'v Value) -> Option<&'v Value> {
        self.segments
            .iter()
            .try_fold(item, |value, segment| value.get(&**segment))
    }
}

impl RowFilter {
    /// Parses the selector and field and checks that the selector fits the
    /// mode; `unless_permission` and `labels` start empty.
    pub fn new(
        items: &str,
        field: &str,
        claim: &str,
        mode: FilterMode,
    ) -> Result<RowFilter, PolicyError> {
        let items = ItemSelector::parse(items)?;
        let ends_in_each = matches!(items.steps().last(), Some(SelectorStep::Each));
        let (fits, mode_name, needs) = match mode {
            FilterMode::Items => (ends_in_each, "items", "ends in `[*]`"),
            FilterMode::Object => (!ends_in_each, "object", "names one object"),
        };
        if !fits {
            return Err(PolicyError::SelectorModeMismatch {
                selector: items.as_str().to_owned(),
                mode: mode_name,
                needs,
            });
        }
        Ok(RowFilter {
            items,
            field: FieldPath::parse(field)?,
            claim: claim.to_owned(),
            unless_permission: None,
            mode,
            labels: Vec::new(),
        })
    }
}

/// Plans `filter` for one caller: the bypass permission drops the owner
/// test, each label rule whose permission the caller lacks hides its label.
/// A caller without the claim keeps no item (fail closed).
pub fn plan_row_filter(filter: &RowFilter, identity: &Identity, roles: &RoleSet) -> RowFilterPlan {
    let holds = |p: &Permission| roles.holds(&identity.roles, p);
    let owner = match &filter.unless_permission {
        Some(bypass) if holds(bypass) => None,
        _ => Some(OwnerMatch {
            field: filter.field.clone(),
            allowed_values: identity.attribute(&filter.claim).to_vec(),
        }),
    };
    let hidden_labels: Vec<HiddenLabel> = filter
        .labels
        .iter()
        .filter(|rule| !holds(&rule.permission))
        .map(|rule| HiddenLabel {
            field: rule.field.clone(),
            label: rule.label.clone(),
        })
        .collect();
    if owner.is_none() && hidden_labels.is_empty() {
        return RowFilterPlan::Skip;
    }
    RowFilterPlan::Keep {
        owner,
        hidden_labels,
    }
}

/// A WebSocket route's `message_filter`: each message the upstream sends
/// is one object (`$.message.data` of an ActionCable broadcast), kept or
/// dropped whole.
///
/// `filter` is in [`FilterMode::Object`] with the first owner field;
/// `fields` lists every owner field in order, because one stream carries
/// objects of several kinds (Chatwoot's conversation events name the
/// assignee at `meta.assignee.id`, its message events at
/// `conversation.assignee_id`): the first one present is the owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageFilter {
    pub filter: RowFilter,
    pub fields: Vec<FieldPath>,
}

/// Why a message could not be judged: it has no single object where the
/// filter's selector points (the upstream changed shape).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoObject;

impl MessageFilter {
    /// Whether `message` may pass under `plan`. The object's owner is the
    /// first of `fields` present in it (a `null` one is present, and owns
    /// nothing); none present keeps nothing.
    ///
    /// Labels: an object that carries a hidden label is not kept, as a
    /// list's row would not be. One that does not say its labels at all
    /// (Chatwoot's message events do not name their conversation's) is
    /// kept only for a caller the owner test let through: it is her own
    /// conversation's. A caller who gets every owner's messages
    /// (`unless_permission`) but lacks a label's permission does not get
    /// it: any such message could be from a conversation with that label.
    pub fn allows(&self, message: &Value, plan: &RowFilterPlan) -> Result<bool, NoObject> {
        let object = match self.filter.items.select(message).as_slice() {
            [object] if object.is_object() => *object,
            _ => return Err(NoObject),
        };
        let RowFilterPlan::Keep {
            owner,
            hidden_labels,
        } = plan
        else {
            return Ok(true);
        };
        if let Some(owner) = owner {
            let value = self.fields.iter().find_map(|f| f.lookup(object));
            if !value.is_some_and(|v| value_in(v, &owner.allowed_values)) {
                return Ok(false);
            }
        }
        let owned = owner.is_some();
        Ok(hidden_labels
            .iter()
            .all(|hidden| match hidden.field.lookup(object) {
                Some(_) => !has_label(object, hidden),
                None => owned,
            }))
    }
}

/// Whether one item survives the plan (the reference the streaming
/// rewriter is tested against).
pub fn item_allowed(item: &Value, plan: &RowFilterPlan) -> bool {
    let RowFilterPlan::Keep {
        owner,
        hidden_labels,
    } = plan
    else {
        return true;
    };
    if let Some(owner) = owner {
        let owned = owner
            .field
            .lookup(item)
            .is_some_and(|value| value_in(value, &owner.allowed_values));
        if !owned {
            return false;
        }
    }
    !hidden_labels.iter().any(|hidden| has_label(item, hidden))
}

fn value_in(value: &Value, allowed: &[String]) -> bool {
    match value {
        Value::String(text) => allowed.iter().any(|a| a == text),
        Value::Number(number) => {
            let text = number.to_string();
            allowed.contains(&text)
        }
        _ => false,
    }
}

fn has_label(item: &Value, hidden: &HiddenLabel) -> bool {
    hidden
        .field
        .lookup(item)
        .and_then(Value::as_array)
        .is_some_and(|labels| labels.iter().any(|l| l.as_str() == Some(&hidden.label)))
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;
    use crate::identity::RoleName;
    use crate::policy::roles::RoleDef;
    use crate::request::normalize_path;
    use crate::request::query::NO_QUERY_PARAMS;
    use crate::route::PathTemplate;

    fn identity(roles: &[&str], attributes: &[(&str, &[&str])]) -> Identity {
        Identity {
            subject: "agent-7".to_owned(),
            roles: roles.iter().map(|r| RoleName((*r).to_owned())).collect(),
            attributes: attributes
                .iter()
                .map(|(k, vs)| {
                    (
                        (*k).to_owned(),
                        vs.iter().map(|v| (*v).to_owned()).collect(),
                    )
                })
                .collect::<BTreeMap<_, _>>(),
            mfa: false,
            auth_time: None,
            token_id: None,
            expires_at: 2_000_000_000,
        }
    }

    fn perm(text: &str) -> Permission {
        Permission::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    fn params(template: &str, path: &str) -> Params {
        let t = PathTemplate::parse(template).unwrap_or_else(|e| panic!("{e}"));
        let p = normalize_path(path).unwrap_or_else(|e| panic!("{e}"));
        t.match_path(&p)
            .unwrap_or_else(|| panic!("{path} should match {template}"))
    }

    fn roles() -> RoleSet {
        let def = |name: &str, inherits: &[&str], perms: &[&str]| RoleDef {
            name: RoleName(name.to_owned()),
            inherits: inherits.iter().map(|r| RoleName((*r).to_owned())).collect(),
            permissions: perms.iter().map(|p| (*p).to_owned()).collect(),
        };
        RoleSet::compile(vec![
            def("agent", &[], &["conversations.read"]),
            def("supervisor", &["agent"], &["conversations.read_all"]),
            def("legal", &["agent"], &["conversations.confidential"]),
        ])
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn scope_bindings() {
        let roles = roles();
        let send = params(
            "/{version}/{phone_number_id}/messages",
            "/v23.0/1065/messages",
        );
        let binding = |unless: Option<&str>| ScopeBinding {
            param: "phone_number_id".to_owned(),
            source: ScopeSource::Path,
            claim: "phone_number_ids".to_owned(),
            unless_permission: unless.map(perm),
        };
        let cases = [
            (
                "number in the claim",
                binding(None),
                identity(&["agent"], &[("phone_number_ids", &["1065", "2077"])]),
                ScopeOutcome::Allowed,
            ),
            (
                "another number",
                binding(None),
                identity(&["agent"], &[("phone_number_ids", &["2077"])]),
                ScopeOutcome::NotInClaim,
            ),
            (
                "no claim at all",
                binding(None),
                identity(&["agent"], &[]),
                ScopeOutcome::MissingClaim,
            ),
            (
                "empty claim",
                binding(None),
                identity(&["agent"], &[("phone_number_ids", &[])]),
                ScopeOutcome::MissingClaim,
            ),
            (
                "leading zero is another value",
                binding(None),
                identity(&["agent"], &[("phone_number_ids", &["01065"])]),
                ScopeOutcome::NotInClaim,
            ),
            (
                "supervisor bypass",
                binding(Some("conversations.read_all")),
                identity(&["supervisor"], &[]),
                ScopeOutcome::Bypassed,
            ),
            (
                "agent cannot bypass",
                binding(Some("conversations.read_all")),
                identity(&["agent"], &[("phone_number_ids", &["9"])]),
                ScopeOutcome::NotInClaim,
            ),
        ];
        for (name, b, who, want) in cases {
            let got = b.check(&who, &send, &NO_QUERY_PARAMS, |p| {
                roles.holds(&who.roles, p)
            });
            assert_eq!(got, want, "{name}: should be {want:?}");
        }
        let wrong_param = ScopeBinding {
            param: "account_id".to_owned(),
            source: ScopeSource::Path,
            claim: "account_ids".to_owned(),
            unless_permission: None,
        };
        let who = identity(&["agent"], &[("account_ids", &["1"])]);
        assert_eq!(
            wrong_param.check(&who, &send, &NO_QUERY_PARAMS, |_| false),
            ScopeOutcome::MissingParam,
            "a binding to a parameter the route lacks should deny"
        );
    }

    #[test]
    fn query_bindings_need_one_value_the_caller_holds() {
        let binding = ScopeBinding {
            param: "phone_number_id".to_owned(),
            source: ScopeSource::Query,
            claim: "phone_number_ids".to_owned(),
            unless_permission: None,
        };
        let who = identity(&["agent"], &[("phone_number_ids", &["106"])]);
        let params = Params::default();
        for (query, want) in [
            ("phone_number_id=106", ScopeOutcome::Allowed),
            (
                "fields=url&phone_number_id=%31%30%36",
                ScopeOutcome::Allowed,
            ),
            ("phone_number_id=209", ScopeOutcome::NotInClaim),
            ("", ScopeOutcome::NotInQuery),
            ("phone_number_ids=106", ScopeOutcome::NotInQuery),
            (
                "phone_number_id=106&phone_number_id=209",
                ScopeOutcome::AmbiguousQuery,
            ),
            ("phone_number_id[]=106", ScopeOutcome::AmbiguousQuery),
        ] {
            let read = QueryParams::read(query, ["phone_number_id"]);
            assert_eq!(
                binding.check(&who, &params, &read, |_| false),
                want,
                "{query:?}"
            );
        }
        let read = QueryParams::read("phone_number_id=209", ["phone_number_id"]);
        let path_twin = ScopeBinding {
            source: ScopeSource::Path,
            ..binding.clone()
        };
        assert_eq!(
            path_twin.check(&who, &params, &read, |_| false),
            ScopeOutcome::MissingParam,
            "a path binding never reads the query"
        );
    }

    fn conversations() -> Value {
        json!({
            "data": {
                "meta": {"mine_count": 1, "unassigned_count": 1, "all_count": 4},
                "payload": [
                    {"id": 101, "inbox_id": 2, "status": "open", "labels": ["vip"],
                     "meta": {"sender": {"id": 55, "name": "Ana Souza", "phone_number": "+5511999990000"},
                              "assignee": {"id": 7, "name": "Sam Agent"}, "channel": "Channel::Whatsapp"}},
                    {"id": 102, "inbox_id": 2, "status": "open", "labels": [],
                     "meta": {"sender": {"id": 56, "name": "Ben Ode"},
                              "assignee": {"id": 9, "name": "Kim Other"}, "channel": "Channel::Whatsapp"}},
                    {"id": 103, "inbox_id": 2, "status": "pending", "labels": [],
                     "meta": {"sender": {"id": 57, "name": "Cy Unassigned"}, "channel": "Channel::Whatsapp"}},
                    {"id": 104, "inbox_id": 3, "status": "open", "labels": ["confidential", "legal-hold"],
                     "meta": {"sender": {"id": 58, "name": "Dee Secret"},
                              "assignee": {"id": 7, "name": "Sam Agent"}, "channel": "Channel::Whatsapp"}},
                    {"id": 105, "inbox_id": 3, "status": "open",
                     "meta": {"sender": {"id": 59}, "assignee": {"id": "7"}, "channel": "Channel::Api"}},
                    {"id": 106, "status": "open", "labels": [], "meta": {"assignee": null}}
                ]
            }
        })
    }

    fn filter() -> RowFilter {
        let mut f = RowFilter::new(
            "$.data.payload[*]",
            "meta.assignee.id",
            "user_id",
            FilterMode::Items,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        f.unless_permission = Some(perm("conversations.read_all"));
        f.labels = vec![LabelRule {
            field: FieldPath::parse("labels").unwrap_or_else(|e| panic!("{e}")),
            label: "confidential".to_owned(),
            permission: perm("conversations.confidential"),
        }];
        f
    }

    fn kept(plan: &RowFilterPlan) -> Vec<i64> {
        let body = conversations();
        filter()
            .items
            .select(&body)
            .into_iter()
            .filter(|item| item_allowed(item, plan))
            .filter_map(|item| item.get("id").and_then(Value::as_i64))
            .collect()
    }

    #[test]
    fn row_filter_on_chatwoot_conversations() {
        let roles = roles();
        let cases: &[(&str, Identity, &[i64])] = &[
            (
                "agent 7 keeps own non-confidential conversations (numeric and string ids)",
                identity(&["agent"], &[("user_id", &["7"])]),
                &[101, 105],
            ),
            (
                "agent 9 keeps only theirs",
                identity(&["agent"], &[("user_id", &["9"])]),
                &[102],
            ),
            (
                "agent without a user_id claim keeps nothing",
                identity(&["agent"], &[]),
                &[],
            ),
            (
                "agent 7 with the confidential permission also keeps 104",
                identity(&["legal"], &[("user_id", &["7"])]),
                &[101, 104, 105],
            ),
            (
                "supervisor sees everyone's but not confidential",
                identity(&["supervisor"], &[("user_id", &["1"])]),
                &[101, 102, 103, 105, 106],
            ),
            (
                "supervisor who is also legal sees everything",
                identity(&["supervisor", "legal"], &[]),
                &[101, 102, 103, 104, 105, 106],
            ),
        ];
        for (name, who, want) in cases {
            let plan = plan_row_filter(&filter(), who, &roles);
            assert_eq!(kept(&plan), *want, "{name}");
        }
    }

    #[test]
    fn plans_are_skip_only_when_nothing_applies() {
        let roles = roles();
        let who = identity(&["supervisor", "legal"], &[]);
        assert_eq!(
            plan_row_filter(&filter(), &who, &roles),
            RowFilterPlan::Skip,
            "bypass plus every label permission should skip the rewrite"
        );
        let agent = identity(&["agent"], &[("user_id", &["7", "8"])]);
        let plan = plan_row_filter(&filter(), &agent, &roles);
        let RowFilterPlan::Keep {
            owner: Some(owner),
            hidden_labels,
        } = &plan
        else {
            panic!("an agent's plan should keep by owner, got {plan:?}");
        };
        assert_eq!(
            owner.field.as_str(),
            "meta.assignee.id",
            "owner field should come from the filter"
        );
        assert_eq!(
            owner.allowed_values,
            vec!["7", "8"],
            "allowed values should be the claim's"
        );
        assert_eq!(
            hidden_labels.len(),
            1,
            "the confidential label should be hidden from an agent"
        );
        let supervisor = identity(&["supervisor"], &[]);
        assert!(
            matches!(
                plan_row_filter(&filter(), &supervisor, &roles),
                RowFilterPlan::Keep { owner: None, .. }
            ),
            "a supervisor's plan should drop the owner test but keep label rules"
        );
    }

    #[test]
    fn object_mode_and_selectors() {
        let single = RowFilter::new("$", "meta.assignee.id", "user_id", FilterMode::Object)
            .unwrap_or_else(|e| panic!("{e}"));
        let plan = plan_row_filter(
            &single,
            &identity(&["agent"], &[("user_id", &["9"])]),
            &roles(),
        );
        let conversation = json!({"id": 102, "meta": {"assignee": {"id": 9}}});
        let other = json!({"id": 101, "meta": {"assignee": {"id": 7}}});
        assert!(
            item_allowed(&conversation, &plan),
            "agent 9 should see their own conversation"
        );
        assert!(
            !item_allowed(&other, &plan),
            "agent 9 should not see agent 7's conversation"
        );
        assert!(
            !item_allowed(&json!({"meta": {"assignee": {"id": true}}}), &plan),
            "a non-text owner should not be kept"
        );

        for (text, mode, ok) in [
            ("$.payload[*]", FilterMode::Items, true),
            ("$", FilterMode::Items, false),
            ("$.data.payload[*]", FilterMode::Object, false),
            ("$.data", FilterMode::Object, true),
            ("data.payload[*]", FilterMode::Items, false),
            ("$..payload[*]", FilterMode::Items, false),
            ("$.data['x'][*]", FilterMode::Items, false),
            ("$.data[0]", FilterMode::Object, false),
        ] {
            assert_eq!(
                RowFilter::new(text, "id", "user_id", mode).is_ok(),
                ok,
                "selector {text:?} in {mode:?} mode should be {}",
                if ok { "accepted" } else { "refused" }
            );
        }
        for text in ["", "meta..id", ".id", "meta.assignee id"] {
            assert!(
                FieldPath::parse(text).is_err(),
                "field path {text:?} should be refused"
            );
        }
        let nested = ItemSelector::parse("$.data[*].messages[*]").unwrap_or_else(|e| panic!("{e}"));
        let doc = json!({"data": [{"messages": [1, 2]}, {"messages": [3]}, {"other": 4}]});
        assert_eq!(
            nested.select(&doc).len(),
            3,
            "nested [*] should select every message"
        );
    }
}
