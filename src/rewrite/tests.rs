//! The rewriter against realistic Chatwoot bodies, the reference
//! behaviour of `policy::item_allowed`, serde_json's notion of valid JSON,
//! and mutated bodies.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{json, Value};

use super::*;
use crate::identity::{Identity, RoleName};
use crate::policy::{
    item_allowed, plan_row_filter, FieldPath, FilterMode, HiddenLabel, ItemSelector, LabelRule,
    OwnerMatch, Permission, RoleDef, RoleSet, RowFilter, RowFilterPlan, SelectorStep,
};
use crate::redact::{mask_detected, mask_whole, Detector, RedactionRule, Region, Regions, Style};

const JSON: Option<&str> = Some("application/json; charset=utf-8");
const CAP: usize = 1 << 20;

// ---------------------------------------------------------------- fixtures

/// How a conversation's `meta.assignee` looks.
#[derive(Clone, Copy)]
enum Assignee {
    Num(u64),
    Text(&'static str),
    Missing,
    Null,
}

/// A conversation as Chatwoot's list renders it, keys in Chatwoot's order.
fn conversation(id: u64, assignee: Assignee, labels: &[&str]) -> String {
    let assignee = match assignee {
        Assignee::Num(n) => format!(
            r#""assignee": {{"id": {n}, "account_id": 1, "availability_status": "online", "auto_offline": true, "confirmed": true, "email": "agent{n}@shop.example", "available_name": "Agent {n}", "name": "Agent {n}", "role": "agent", "thumbnail": "", "custom_role_id": null}},"#
        ),
        Assignee::Text(t) => format!(r#""assignee": {{"id": "{t}", "name": "Agent {t}"}},"#),
        Assignee::Missing => String::new(),
        Assignee::Null => r#""assignee": null,"#.to_owned(),
    };
    let labels = labels
        .iter()
        .map(|l| format!("{l:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"{{
      "meta": {{
        "sender": {{"additional_attributes": {{"city": "Leeds"}}, "custom_attributes": {{}}, "email": "customer{id}@mail.example", "id": {sender}, "identifier": null, "name": "Customer {id}", "phone_number": "+4477009{id:05}", "thumbnail": "", "blocked": false, "type": "contact"}},
        "channel": "Channel::Whatsapp",
        {assignee}
        "hmac_verified": false
      }},
      "id": {id},
      "messages": [{{"id": {msg}, "content": "Hi, order #{id} has not arrived", "account_id": 1, "inbox_id": 2, "conversation_id": {id}, "message_type": 0, "created_at": 1712300000, "private": false, "status": "read", "source_id": "wamid.HBgLDEMO{msg:010}", "content_type": "text", "content_attributes": {{}}, "sender_type": "contact", "sender_id": {sender}}}],
      "account_id": 1,
      "uuid": "6f1c2a4e-0000-4000-8000-{id:012}",
      "additional_attributes": {{}},
      "agent_last_seen_at": 1712300420,
      "can_reply": true,
      "custom_attributes": {{"region": "uk"}},
      "inbox_id": 2,
      "labels": [{labels}],
      "muted": false,
      "snoozed_until": null,
      "status": "open",
      "created_at": 1712300000,
      "timestamp": 1712300420,
      "unread_count": 0,
      "priority": null,
      "waiting_since": 0,
      "sla_policy_id": null,
      "applied_sla": null,
      "sla_events": []
    }}"#,
        sender = id + 1000,
        msg = id * 100 + 1,
    )
}

fn list(items: &[String]) -> String {
    format!(
        r#"{{
  "data": {{
    "meta": {{"mine_count": 2, "unassigned_count": 1, "assigned_count": {assigned}, "all_count": {all}}},
    "payload": [
    {items}
    ]
  }}
}}"#,
        assigned = items.len().saturating_sub(1),
        all = items.len(),
        items = items.join(",\n    "),
    )
}

/// Six conversations: 101 agent 3's, 102 agent 7's, 103 unassigned, 104
/// agent 3's but confidential, 105 agent 3's with a string id, 106 with a
/// null assignee.
fn inbox() -> String {
    list(&[
        conversation(101, Assignee::Num(3), &["vip"]),
        conversation(102, Assignee::Num(7), &[]),
        conversation(103, Assignee::Missing, &["billing"]),
        conversation(104, Assignee::Num(3), &["confidential", "legal-hold"]),
        conversation(105, Assignee::Text("3"), &[]),
        conversation(106, Assignee::Null, &[]),
    ])
}

fn perm(text: &str) -> Permission {
    Permission::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
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

fn who(roles: &[&str], user_id: Option<&str>) -> Identity {
    let mut attributes = BTreeMap::new();
    if let Some(uid) = user_id {
        attributes.insert("user_id".to_owned(), vec![uid.to_owned()]);
    }
    Identity {
        subject: "staff".to_owned(),
        roles: roles.iter().map(|r| RoleName((*r).to_owned())).collect(),
        attributes,
        mfa: false,
        auth_time: None,
        token_id: None,
        expires_at: 2_000_000_000,
    }
}

/// The route config of a conversation list.
fn list_filter(items: &str, mode: FilterMode) -> RowFilter {
    let mut f = RowFilter::new(items, "meta.assignee.id", "user_id", mode)
        .unwrap_or_else(|e| panic!("{e}"));
    f.unless_permission = Some(perm("conversations.read_all"));
    f.labels = vec![LabelRule {
        field: field("labels"),
        label: "confidential".to_owned(),
        permission: perm("conversations.confidential"),
    }];
    f
}

/// What the proxy does per request: plan the route's filter for the caller.
fn plan_for(filter: &RowFilter, caller: &Identity) -> RewritePlan {
    let mut plan = RewritePlan::default();
    plan.push_row_filter(filter, plan_row_filter(filter, caller, &roles()));
    plan
}

fn agent3_list_plan() -> RewritePlan {
    plan_for(
        &list_filter("$.data.payload[*]", FilterMode::Items),
        &who(&["agent"], Some("3")),
    )
}

fn field(text: &str) -> FieldPath {
    FieldPath::parse(text).unwrap_or_else(|e| panic!("{e}"))
}

fn selector(text: &str) -> ItemSelector {
    ItemSelector::parse(text).unwrap_or_else(|e| panic!("{e}"))
}

/// A plan keeping items whose `field` is one of `allowed`.
fn owner_plan(items: &str, mode: FilterMode, field_path: &str, allowed: &[&str]) -> RewritePlan {
    RewritePlan {
        row_filters: vec![PlannedRowFilter {
            items: selector(items),
            mode,
            plan: RowFilterPlan::Keep {
                owner: Some(OwnerMatch {
                    field: field(field_path),
                    allowed_values: allowed.iter().map(|a| (*a).to_owned()).collect(),
                }),
                hidden_labels: Vec::new(),
            },
        }],
        ..RewritePlan::default()
    }
}

fn run(body: &str, plan: &RewritePlan) -> Result<RewriteOutcome, RewriteError> {
    rewrite(body.as_bytes(), JSON, None, plan, CAP)
}

/// The rewritten body, parsed; panics (naming `what`) on any other outcome.
fn rewritten(body: &str, plan: &RewritePlan, what: &str) -> (Value, u64, String) {
    match run(body, plan) {
        Ok(RewriteOutcome::Rewritten { body, removed, .. }) => {
            let text = String::from_utf8(body.to_vec())
                .unwrap_or_else(|e| panic!("{what}: output should be UTF-8: {e}"));
            let value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{what}: output should be JSON: {e}\n{text}"));
            (value, removed, text)
        }
        other => panic!("{what}: should be rewritten, got {other:?}"),
    }
}

fn ids(list: &Value) -> Vec<u64> {
    list.as_array()
        .unwrap_or_else(|| panic!("{list} should be an array"))
        .iter()
        .filter_map(|item| item.get("id").and_then(Value::as_u64))
        .collect()
}

/// `doc` filtered by `plan` the slow way: `Value`, `select`-like descent,
/// `item_allowed`. Parents go before their nested filters, so removed
/// counts agree with the rewriter's (nested rows of removed rows are not
/// counted). Returns (removed, not_found).
fn reference(doc: &mut Value, plan: &RewritePlan) -> (u64, bool) {
    let mut filters: Vec<&PlannedRowFilter> = plan.row_filters.iter().collect();
    filters.sort_by_key(|f| f.items.steps().len());
    let (mut removed, mut not_found) = (0, false);
    for f in filters {
        apply(doc, f.items.steps(), f, &mut removed, &mut not_found);
    }
    (removed, not_found)
}

fn apply(
    v: &mut Value,
    steps: &[SelectorStep],
    f: &PlannedRowFilter,
    removed: &mut u64,
    nf: &mut bool,
) {
    match steps {
        [] => {
            if !item_allowed(v, &f.plan) {
                *nf = true;
            }
        }
        [SelectorStep::Member(name), rest @ ..] => {
            if let Some(child) = v.get_mut(&**name) {
                apply(child, rest, f, removed, nf);
            }
        }
        [SelectorStep::Each, rest @ ..] => {
            if let Some(items) = v.as_array_mut() {
                if rest.is_empty() && f.mode == FilterMode::Items {
                    let before = items.len();
                    items.retain(|item| item_allowed(item, &f.plan));
                    *removed += (before - items.len()) as u64;
                } else {
                    for item in items {
                        apply(item, rest, f, removed, nf);
                    }
                }
            }
        }
    }
}

// ------------------------------------------------------------ row filters

#[test]
fn agent_keeps_only_own_unconfidential_conversations() {
    let body = inbox();
    let (out, removed, text) = rewritten(&body, &agent3_list_plan(), "agent 3's inbox");
    assert_eq!(
        ids(&out["data"]["payload"]),
        vec![101, 105],
        "agent 3 should keep 101 (id 3) and 105 (id \"3\"); 102 is agent 7's, 103 and 106 are unassigned, 104 is confidential"
    );
    assert_eq!(
        removed, 4,
        "four conversations should be counted as removed"
    );
    let original: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        out["data"]["meta"], original["data"]["meta"],
        "meta counts are a documented limitation: left as the upstream sent them"
    );
    assert!(
        text.contains(&conversation(101, Assignee::Num(3), &["vip"])),
        "a kept conversation should be copied byte for byte, key order included"
    );
    assert!(
        text.starts_with("{\n  \"data\": {\n    \"meta\""),
        "the document around the list should keep its bytes and key order"
    );
    assert!(
        !text.contains("Customer 102") && !text.contains("+447700900103"),
        "nothing of a removed conversation should remain"
    );
}

#[test]
fn who_sees_what() {
    let filter = list_filter("$.data.payload[*]", FilterMode::Items);
    let cases: &[(&str, Identity, &[u64])] = &[
        (
            "agent 7 keeps only theirs",
            who(&["agent"], Some("7")),
            &[102],
        ),
        (
            "an agent without a user_id claim keeps nothing",
            who(&["agent"], None),
            &[],
        ),
        (
            "legal agent 3 also keeps the confidential 104",
            who(&["legal"], Some("3")),
            &[101, 104, 105],
        ),
        (
            "a supervisor keeps everyone's but the confidential one",
            who(&["supervisor"], Some("1")),
            &[101, 102, 103, 105, 106],
        ),
    ];
    let body = inbox();
    for (name, caller, want) in cases {
        let plan = plan_for(&filter, caller);
        let (out, removed, _) = rewritten(&body, &plan, name);
        assert_eq!(ids(&out["data"]["payload"]), *want, "{name}");
        assert_eq!(removed, 6 - want.len() as u64, "{name}: removed count");
    }
}

#[test]
fn supervisor_with_every_permission_is_unchanged_without_parsing() {
    let filter = list_filter("$.data.payload[*]", FilterMode::Items);
    let plan = plan_for(&filter, &who(&["supervisor", "legal"], None));
    assert!(
        plan.is_empty(),
        "a Skip plan should make an empty rewrite plan"
    );
    assert_eq!(
        rewrite(
            b"not json at all",
            Some("text/html"),
            Some("gzip"),
            &plan,
            1
        ),
        Ok(RewriteOutcome::Unchanged),
        "an empty plan should pass any body without looking at it"
    );
}

#[test]
fn nothing_removed_is_unchanged() {
    let body = list(&[
        conversation(1, Assignee::Num(3), &[]),
        conversation(2, Assignee::Text("3"), &["vip"]),
    ]);
    assert_eq!(
        run(&body, &agent3_list_plan()),
        Ok(RewriteOutcome::Unchanged),
        "a list with only the caller's rows should pass as sent"
    );
    let empty = r#"{"data": {"meta": {"all_count": 0}, "payload": []}}"#;
    assert_eq!(
        run(empty, &agent3_list_plan()),
        Ok(RewriteOutcome::Unchanged),
        "an empty list should pass as sent"
    );
}

#[test]
fn every_removal_pattern_keeps_valid_json() {
    // Every subset of five rows, compact and spread out: commas and
    // whitespace must come out right wherever the removed rows are.
    let rows = |pattern: u32| -> Vec<Value> {
        (0..5)
            .map(
                |i| json!({"id": i, "owner": if pattern & (1 << i) != 0 { "me" } else { "other" }}),
            )
            .collect()
    };
    let plan = owner_plan("$.rows[*]", FilterMode::Items, "owner", &["me"]);
    for pattern in 0..32u32 {
        let doc = json!({"rows": rows(pattern), "after": [1, 2]});
        let compact = serde_json::to_string(&doc).unwrap_or_else(|e| panic!("{e}"));
        let pretty = serde_json::to_string_pretty(&doc).unwrap_or_else(|e| panic!("{e}"));
        let spaced = compact.replace(',', " ,\n\t ").replace('[', "[ \r\n");
        for body in [compact, pretty, spaced] {
            let mut want = doc.clone();
            reference(&mut want, &plan);
            let got = match run(&body, &plan) {
                Ok(RewriteOutcome::Rewritten { body, .. }) => {
                    serde_json::from_slice::<Value>(&body).unwrap_or_else(|e| {
                        panic!("pattern {pattern:05b}: output should be JSON: {e}")
                    })
                }
                Ok(RewriteOutcome::Unchanged) => doc.clone(),
                other => panic!("pattern {pattern:05b}: unexpected {other:?}"),
            };
            assert_eq!(got, want, "pattern {pattern:05b} in {body:?}");
        }
    }
}

#[test]
fn ids_compare_as_text() {
    let cases = [
        (r#"3"#, true, "a number 3 matches \"3\""),
        (r#""3""#, true, "a string \"3\" matches"),
        (r#""\u0033""#, true, "an escaped \"3\" is still \"3\""),
        (r#"3.0"#, false, "3.0 is not 3 (serde_json spells it 3.0)"),
        (r#"3e0"#, false, "3e0 is not 3"),
        (r#""03""#, false, "\"03\" is not \"3\""),
        (r#"-3"#, false, "-3 is not 3"),
        (r#"true"#, false, "a boolean is not an owner"),
        (r#"null"#, false, "null is not an owner"),
        (r#"[3]"#, false, "an array is not an owner"),
        (r#"{"id": 3}"#, false, "an object is not an owner"),
    ];
    let plan = owner_plan(
        "$.payload[*]",
        FilterMode::Items,
        "meta.assignee.id",
        &["3"],
    );
    for (id, keep, why) in cases {
        let body =
            format!(r#"{{"payload": [{{"id": 1, "meta": {{"assignee": {{"id": {id}}}}}}}]}}"#);
        let mut want: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}"));
        let (reference_removed, _) = reference(&mut want, &plan);
        assert_eq!(reference_removed == 0, keep, "reference disagrees: {why}");
        let got = run(&body, &plan);
        if keep {
            assert_eq!(got, Ok(RewriteOutcome::Unchanged), "{why}");
        } else {
            assert!(
                matches!(got, Ok(RewriteOutcome::Rewritten { removed: 1, .. })),
                "{why}: should be removed, got {got:?}"
            );
        }
    }
    let big = r#"{"payload": [{"meta": {"assignee": {"id": 18446744073709551616}}}]}"#;
    let plan = owner_plan(
        "$.payload[*]",
        FilterMode::Items,
        "meta.assignee.id",
        &["18446744073709551616"],
    );
    assert!(
        matches!(run(big, &plan), Ok(RewriteOutcome::Rewritten { removed: 1, .. })),
        "an id past u64 is a float to serde_json (1.8446744073709552e19), so it should not match its digits"
    );
}

#[test]
fn escaped_member_names_are_read_as_their_text() {
    let plan = owner_plan(
        "$.payload[*]",
        FilterMode::Items,
        "meta.assignee.id",
        &["3"],
    );
    let body = r#"{"payl\u006fad": [{"m\u0065ta": {"assignee": {"\u0069d": 3}}}, {"meta": {"assignee": {"id": 9}}}]}"#;
    let (out, removed, _) = rewritten(body, &plan, "escaped names");
    assert_eq!(removed, 1, "only agent 9's row should go");
    assert_eq!(
        out["payload"].as_array().map(Vec::len),
        Some(1),
        "escaped member names should be matched by their decoded text"
    );
}

#[test]
fn duplicate_keys_fail_closed() {
    let plan = owner_plan(
        "$.payload[*]",
        FilterMode::Items,
        "meta.assignee.id",
        &["3"],
    );
    for (body, why) in [
        (
            r#"{"payload": [{"meta": {"assignee": {"id": 9, "id": 3}}}]}"#,
            "serde_json would keep the last id (3) but a first-wins client sees 9",
        ),
        (
            r#"{"payload": [{"meta": {"assignee": {"id": 3}}, "meta": {"assignee": {"id": 3}}}]}"#,
            "a repeated member on the owner path is ambiguous even when both agree",
        ),
    ] {
        assert!(
            matches!(
                run(body, &plan),
                Ok(RewriteOutcome::Rewritten { removed: 1, .. })
            ),
            "{why}: the row should be removed"
        );
    }
    let body = r#"{"payload": [{"id": 1, "meta": {"assignee": {"id": 9}}}], "payload": [{"id": 2, "meta": {"assignee": {"id": 3}}}, {"id": 3, "meta": {"assignee": {"id": 9}}}]}"#;
    let (_, removed, text) = rewritten(body, &plan, "duplicated list member");
    assert_eq!(removed, 2, "both copies of the list should be filtered");
    assert!(
        !text.contains(r#""id": 1,"#) && !text.contains(r#""id": 3,"#),
        "a first-wins client should not see agent 9's rows either: {text}"
    );
    let other_keys = r#"{"payload": [{"id": 1, "id": 1, "meta": {"assignee": {"id": 3}}}]}"#;
    assert_eq!(
        run(other_keys, &plan),
        Ok(RewriteOutcome::Unchanged),
        "duplicates off the tested paths should not matter"
    );
}

#[test]
fn labels() {
    let plan = RewritePlan {
        row_filters: vec![PlannedRowFilter {
            items: selector("$.payload[*]"),
            mode: FilterMode::Items,
            plan: RowFilterPlan::Keep {
                owner: None,
                hidden_labels: vec![HiddenLabel {
                    field: field("labels"),
                    label: "confidential".to_owned(),
                }],
            },
        }],
        ..RewritePlan::default()
    };
    let cases = [
        (r#"["confidential"]"#, false, "the label alone"),
        (
            r#"["vip", "confidential"]"#,
            false,
            "the label among others",
        ),
        (r#"["conf\u0069dential"]"#, false, "the label escaped"),
        (
            r#"["Confidential"]"#,
            true,
            "labels are case-sensitive, as item_allowed",
        ),
        (
            r#""confidential""#,
            true,
            "a string is not a label list (as item_allowed)",
        ),
        (
            r#"[["confidential"]]"#,
            true,
            "a nested list is not a label",
        ),
        (r#"[]"#, true, "no labels"),
        (r#"null"#, true, "null labels"),
    ];
    for (labels, keep, why) in cases {
        let body = format!(r#"{{"payload": [{{"id": 1, "labels": {labels}}}]}}"#);
        let mut want: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}"));
        let (reference_removed, _) = reference(&mut want, &plan);
        assert_eq!(reference_removed == 0, keep, "reference disagrees: {why}");
        let got = run(&body, &plan);
        let kept = got == Ok(RewriteOutcome::Unchanged);
        assert_eq!(kept, keep, "{why}: got {got:?}");
    }
    let no_labels = r#"{"payload": [{"id": 1}, 7, null, "x"]}"#;
    assert_eq!(
        run(no_labels, &plan),
        Ok(RewriteOutcome::Unchanged),
        "rows without labels (even scalars) pass a label-only plan, as item_allowed"
    );
}

#[test]
fn non_object_rows_fail_an_owner_test() {
    let plan = owner_plan("$.payload[*]", FilterMode::Items, "owner", &["3"]);
    let (out, removed, _) = rewritten(
        r#"{"payload": [1, "3", null, [], {"owner": 3}, {"owner": {"id": 3}}]}"#,
        &plan,
        "mixed rows",
    );
    assert_eq!(removed, 5, "only the object owned by 3 should stay");
    assert_eq!(out, json!({"payload": [{"owner": 3}]}));
}

#[test]
fn nested_selectors() {
    // Conversations filtered by assignee, and inside each kept one, its
    // messages filtered by sender.
    let plan = RewritePlan {
        row_filters: vec![
            owner_plan(
                "$.data[*].messages[*]",
                FilterMode::Items,
                "sender_id",
                &["3", "55"],
            )
            .row_filters
            .remove(0),
            owner_plan("$.data[*]", FilterMode::Items, "assignee_id", &["3"])
                .row_filters
                .remove(0),
        ],
        ..RewritePlan::default()
    };
    let body = r#"{"data": [
        {"id": 1, "assignee_id": 3, "messages": [{"id": 11, "sender_id": 55}, {"id": 12, "sender_id": 66}, {"id": 13, "sender_id": 3}]},
        {"id": 2, "assignee_id": 9, "messages": [{"id": 21, "sender_id": 66}, {"id": 22, "sender_id": 55}]},
        {"id": 3, "assignee_id": 3, "messages": []},
        {"id": 4, "assignee_id": 3, "messages": [{"id": 41, "sender_id": 66}]}
    ]}"#;
    let (out, removed, _) = rewritten(body, &plan, "nested");
    assert_eq!(
        out,
        json!({"data": [
            {"id": 1, "assignee_id": 3, "messages": [{"id": 11, "sender_id": 55}, {"id": 13, "sender_id": 3}]},
            {"id": 3, "assignee_id": 3, "messages": []},
            {"id": 4, "assignee_id": 3, "messages": []}
        ]}),
        "conversation 2 should go whole; kept conversations should lose others' messages"
    );
    assert_eq!(
        removed, 3,
        "conversation 2 and messages 12 and 41 (not 2's own messages) should be counted"
    );
    let mut want: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(reference(&mut want, &plan), (3, false), "reference count");
    assert_eq!(out, want, "the reference should agree");

    let missing_inner = r#"{"data": [{"id": 1, "assignee_id": 3}]}"#;
    assert!(
        matches!(run(missing_inner, &plan), Err(RewriteError::ShapeMismatch { ref selector, .. }) if selector == "$.data[*].messages[*]"),
        "a row without the nested list should fail closed, naming the selector"
    );
}

// ------------------------------------------------------------ object mode

#[test]
fn single_objects() {
    let filter = list_filter("$", FilterMode::Object);
    let agent3 = plan_for(&filter, &who(&["agent"], Some("3")));
    let own = conversation(101, Assignee::Num(3), &[]);
    assert_eq!(
        run(&own, &agent3),
        Ok(RewriteOutcome::Unchanged),
        "agent 3 should see their own conversation as sent"
    );
    for (body, why) in [
        (
            conversation(102, Assignee::Num(7), &[]),
            "agent 7's conversation",
        ),
        (
            conversation(103, Assignee::Missing, &[]),
            "an unassigned conversation",
        ),
        (
            conversation(104, Assignee::Num(3), &["confidential"]),
            "their own confidential conversation",
        ),
        (
            r#"{"error": "not found"}"#.to_owned(),
            "an upstream error object",
        ),
    ] {
        assert_eq!(
            run(&body, &agent3),
            Ok(RewriteOutcome::NotFound),
            "agent 3 should get 404 for {why}"
        );
    }
    assert!(
        matches!(run("[]", &agent3), Err(RewriteError::ShapeMismatch { .. })),
        "an array where one object is expected should fail closed"
    );

    let payload = list_filter("$.payload", FilterMode::Object);
    let plan = plan_for(&payload, &who(&["agent"], Some("3")));
    let wrap = |c: &str| format!(r#"{{"payload": {c}}}"#);
    assert_eq!(
        run(&wrap(&own), &plan),
        Ok(RewriteOutcome::Unchanged),
        "a wrapped own conversation should pass"
    );
    assert_eq!(
        run(&wrap(&conversation(102, Assignee::Num(7), &[])), &plan),
        Ok(RewriteOutcome::NotFound),
        "a wrapped conversation of another agent should be 404"
    );
    assert!(
        matches!(
            run(r#"{"data": {}}"#, &plan),
            Err(RewriteError::ShapeMismatch { .. })
        ),
        "a body without the selected object should fail closed"
    );
}

// ------------------------------------------------------------ fail closed

#[test]
fn bodies_that_cannot_be_rewritten_are_errors() {
    let plan = agent3_list_plan();
    let body = inbox();
    let half = &body[..body.len() / 2];
    let cases: Vec<(&str, Result<RewriteOutcome, RewriteError>, &str)> = vec![
        (
            "malformed",
            run("{\"data\": {\"payload\": [1,]}}", &plan),
            "not_json",
        ),
        ("truncated", run(half, &plan), "not_json"),
        (
            "trailing garbage",
            run(&format!("{body}x"), &plan),
            "not_json",
        ),
        (
            "two documents",
            run(&format!("{body}{body}"), &plan),
            "not_json",
        ),
        (
            "invalid UTF-8",
            rewrite(b"{\"data\": \"\xff\"}", JSON, None, &plan, CAP),
            "not_json",
        ),
        (
            "html error page",
            rewrite(b"<html>502</html>", Some("text/html"), None, &plan, CAP),
            "content_type",
        ),
        (
            "json sent as text/plain",
            rewrite(body.as_bytes(), Some("text/plain"), None, &plan, CAP),
            "content_type",
        ),
        (
            "no content type",
            rewrite(body.as_bytes(), None, None, &plan, CAP),
            "content_type",
        ),
        (
            "gzip anyway",
            rewrite(body.as_bytes(), JSON, Some("gzip"), &plan, CAP),
            "encoding",
        ),
        (
            "over the cap",
            rewrite(body.as_bytes(), JSON, None, &plan, body.len() - 1),
            "too_large",
        ),
        ("data missing", run(r#"{"payload": []}"#, &plan), "shape"),
        (
            "data not an object",
            run(r#"{"data": [[]]}"#, &plan),
            "shape",
        ),
        (
            "payload missing",
            run(r#"{"data": {"meta": {}}}"#, &plan),
            "shape",
        ),
        (
            "payload null",
            run(r#"{"data": {"payload": null}}"#, &plan),
            "shape",
        ),
        (
            "payload an object",
            run(r#"{"data": {"payload": {"id": 1}}}"#, &plan),
            "shape",
        ),
        ("root an array", run("[]", &plan), "shape"),
        ("root a string", run(r#""data""#, &plan), "shape"),
    ];
    for (name, got, kind) in cases {
        match got {
            Err(e) => assert_eq!(
                e.kind(),
                kind,
                "{name}: should fail as {kind}, failed with {e}"
            ),
            Ok(outcome) => panic!("{name}: should fail closed as {kind}, got {outcome:?}"),
        }
    }
    assert_eq!(
        rewrite(body.as_bytes(), JSON, None, &plan, body.len()),
        rewrite(body.as_bytes(), JSON, Some("identity"), &plan, CAP),
        "a body exactly at the cap should be rewritten, and identity is no encoding"
    );
}

#[test]
fn empty_bodies_pass() {
    let plan = agent3_list_plan();
    for ct in [None, Some("text/html"), JSON] {
        assert_eq!(
            rewrite(b"", ct, None, &plan, CAP),
            Ok(RewriteOutcome::Unchanged),
            "an empty body ({ct:?}) holds no rows and should pass"
        );
    }
    assert!(
        matches!(run("  \n", &plan), Err(RewriteError::NotJson { .. })),
        "whitespace alone is not an empty body and not JSON"
    );
}

#[test]
fn oversized_plans_are_refused() {
    let mut plan = RewritePlan::default();
    for _ in 0..=MAX_PLAN_ENTRIES {
        plan.row_filters
            .extend(owner_plan("$.payload[*]", FilterMode::Items, "id", &["1"]).row_filters);
    }
    assert!(
        matches!(
            run(r#"{"payload": []}"#, &plan),
            Err(RewriteError::PlanTooLarge { .. })
        ),
        "a plan past {MAX_PLAN_ENTRIES} filters should be refused, not truncated"
    );
}

#[test]
fn errors_name_no_body_content() {
    let plan = agent3_list_plan();
    let secret =
        r#"{"data": {"payload": [{"meta": {"sender": {"phone_number": "+447700900123"}}}, oops]}}"#;
    let err = run(secret, &plan)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.starts_with("body is not JSON") && !err.contains("+4477"),
        "the error should say where, not what: {err}"
    );
}

// ----------------------------------------------- agreement with serde_json

/// Bodies at the edges of the JSON grammar: the rewriter must accept
/// exactly what serde_json accepts.
#[test]
fn accepts_what_serde_json_accepts() {
    let deep = |n: usize| {
        format!(
            r#"{{"payload": [], "x": {}{}}}"#,
            "[".repeat(n),
            "]".repeat(n)
        )
    };
    let cases: Vec<String> = [
        "0",
        "-0",
        "01",
        "1.",
        ".5",
        "+1",
        "1e",
        "1e+",
        "1E-2",
        "-",
        "1.5e308",
        "1e309",
        "-1e400",
        "1e-400",
        "123456789012345678901234567890",
        "0.0000",
        "2.",
        "--1",
        "0x10",
        r#""\ud83d\ude00""#,
        r#""\ud83d""#,
        r#""\ude00""#,
        r#""\ud83dx""#,
        r#""\ud83d\u0041""#,
        r#""\x""#,
        r#""\u12""#,
        r#""\u12G4""#,
        "\"\u{7f}\"",
        "\"a\tb\"",
        "\"a\u{1}\"",
        r#""\/""#,
        "true",
        "tru",
        "nul",
        "falsey",
        "[1 2]",
        "{\"a\" 1}",
        "{\"a\":1,}",
        "{,}",
        "[,]",
        "{1:2}",
        "[]",
        "{}",
        " \t\r\n[] ",
        "\u{feff}[]",
        "[\u{a0}]",
        "\"é😀\"",
    ]
    .iter()
    .map(|v| format!(r#"{{"payload": [], "x": {v}}}"#))
    .chain([deep(126), deep(127), deep(128), deep(300)])
    .collect();
    let plan = owner_plan("$.payload[*]", FilterMode::Items, "id", &["1"]);
    for body in cases {
        let serde_ok = serde_json::from_str::<Value>(&body).is_ok();
        let ours = run(&body, &plan);
        assert_eq!(
            ours.is_ok(),
            serde_ok,
            "{body:?}: serde_json says {}, rewriter said {ours:?}",
            if serde_ok { "valid" } else { "invalid" }
        );
    }
}

/// Random well-formed documents against the reference filter.
#[test]
fn agrees_with_the_reference_on_generated_documents() {
    let mut rng = Rng(0x5eed_cafe_f00d_0001);
    let plans = test_plans();
    for round in 0..400 {
        let rows: Vec<Value> = (0..rng.below(8)).map(|_| random_row(&mut rng)).collect();
        let doc = json!({"data": {"meta": {"n": rows.len()}, "payload": rows}, "tail": random_value(&mut rng, 2)});
        let body = if rng.below(2) == 0 {
            serde_json::to_string(&doc)
        } else {
            serde_json::to_string_pretty(&doc)
        }
        .unwrap_or_else(|e| panic!("{e}"));
        for (name, plan) in &plans {
            check_against_reference(&body, plan, &format!("round {round}, plan {name}"));
        }
    }
}

/// Mutated Chatwoot bodies: never a panic; an error exactly when serde_json
/// refuses the body (or the shape is gone); otherwise valid JSON in which
/// every kept row is allowed, equal to the reference when keys are unique.
#[test]
fn mutated_bodies_never_panic_or_leak() {
    let mut rng = Rng(0x0dd_ba11_2024);
    let plans = test_plans();
    let seeds = [
        inbox(),
        list(&[conversation(7, Assignee::Num(3), &["confidential"])]),
        r#"{"data":{"payload":[{"id":1,"meta":{"assignee":{"id":3}},"labels":[]},{"id":2,"meta":{"assignee":{"id":"7"}},"labels":["confidential"]}]}}"#.to_owned(),
    ];
    let alphabet = b"{}[],:\"\\ 0123-.eE+tfnu\x01\xff3a";
    for round in 0..2000 {
        let seed = seeds[rng.below(seeds.len())].as_bytes();
        let mut body = seed.to_vec();
        for _ in 0..=rng.below(3) {
            let at = rng.below(body.len() + 1);
            match rng.below(5) {
                0 if at < body.len() => body[at] = alphabet[rng.below(alphabet.len())],
                1 => body.insert(at, alphabet[rng.below(alphabet.len())]),
                2 if at < body.len() => {
                    body.remove(at);
                }
                3 => body.truncate(at),
                _ => {
                    // Copy a slice of the seed elsewhere: makes duplicate
                    // keys and rows.
                    let from = rng.below(seed.len());
                    let len = rng.below(40).min(seed.len() - from);
                    let at = at.min(body.len());
                    body.splice(at..at, seed[from..from + len].iter().copied());
                }
            }
        }
        if body.is_empty() {
            // Passes by design: `empty_bodies_pass`.
            continue;
        }
        for (name, plan) in &plans {
            let what = format!("round {round}, plan {name}");
            let got = rewrite(&body, JSON, None, plan, CAP);
            let parsed = serde_json::from_slice::<Value>(&body);
            match (&got, &parsed) {
                (Err(RewriteError::NotJson { .. }), Err(_)) => continue,
                (Err(e), Err(_)) => panic!("{what}: invalid JSON should be not_json, got {e}"),
                (_, Err(e)) => panic!("{what}: serde_json refuses the body ({e}) but got {got:?}"),
                (Err(RewriteError::ShapeMismatch { .. }), Ok(_)) => continue,
                (Err(e), Ok(_)) => panic!("{what}: valid JSON failed with {e}"),
                (Ok(_), Ok(_)) => {}
            }
            if serde_json::from_slice::<Unique>(&body).is_ok() {
                check_against_reference_bytes(&body, plan, &what);
            } else if let Ok(RewriteOutcome::Rewritten { body: out, .. }) = &got {
                let out: Value = serde_json::from_slice(out)
                    .unwrap_or_else(|e| panic!("{what}: output should be JSON: {e}"));
                for f in &plan.row_filters {
                    for item in f.items.select(&out) {
                        assert!(
                            item_allowed(item, &f.plan),
                            "{what}: kept a row the plan refuses: {item}"
                        );
                    }
                }
            }
        }
    }
}

fn test_plans() -> Vec<(&'static str, RewritePlan)> {
    let items = list_filter("$.data.payload[*]", FilterMode::Items);
    let roles = roles();
    let mut nested = RewritePlan::default();
    nested.push_row_filter(
        &items,
        plan_row_filter(&items, &who(&["supervisor"], None), &roles),
    );
    nested.row_filters.extend(
        owner_plan(
            "$.data.payload[*].messages[*]",
            FilterMode::Items,
            "sender_id",
            &["1101", "3"],
        )
        .row_filters,
    );
    vec![
        ("agent 3", plan_for(&items, &who(&["agent"], Some("3")))),
        ("agent 7", plan_for(&items, &who(&["agent"], Some("7")))),
        ("legal 3", plan_for(&items, &who(&["legal"], Some("3")))),
        ("supervisor", plan_for(&items, &who(&["supervisor"], None))),
        ("supervisor + messages", nested),
        (
            "object",
            owner_plan("$.data", FilterMode::Object, "meta.n", &["2", "3"]),
        ),
    ]
}

fn check_against_reference(body: &str, plan: &RewritePlan, what: &str) {
    check_against_reference_bytes(body.as_bytes(), plan, what);
}

/// The rewriter and the reference agree on `body` (valid JSON, unique
/// keys): same outcome, same document, same count.
fn check_against_reference_bytes(body: &[u8], plan: &RewritePlan, what: &str) {
    let original: Value = serde_json::from_slice(body).unwrap_or_else(|e| panic!("{what}: {e}"));
    let mut want = original.clone();
    let (want_removed, want_not_found) = reference(&mut want, plan);
    match rewrite(body, JSON, None, plan, CAP) {
        Ok(RewriteOutcome::NotFound) => assert!(want_not_found, "{what}: unexpected NotFound"),
        Ok(RewriteOutcome::Unchanged) => {
            assert!(!want_not_found, "{what}: should be NotFound");
            assert_eq!(
                want_removed, 0,
                "{what}: reference removes rows but got Unchanged"
            );
        }
        Ok(RewriteOutcome::Rewritten { body, removed, .. }) => {
            assert!(!want_not_found, "{what}: should be NotFound");
            let got: Value = serde_json::from_slice(&body)
                .unwrap_or_else(|e| panic!("{what}: output should be JSON: {e}"));
            assert_eq!(got, want, "{what}: output should equal the reference");
            assert_eq!(removed, want_removed, "{what}: removed count");
        }
        Err(e) => panic!("{what}: valid JSON of the right shape failed with {e}"),
    }
}

fn random_row(rng: &mut Rng) -> Value {
    let mut row = serde_json::Map::new();
    row.insert("id".to_owned(), json!(rng.below(1000)));
    let owner = match rng.below(7) {
        0 => json!(3),
        1 => json!("3"),
        2 => json!(7),
        3 => json!("7"),
        4 => Value::Null,
        5 => json!(3.5),
        _ => json!({"id": 3}),
    };
    match rng.below(4) {
        0 => {}
        1 => {
            row.insert("meta".to_owned(), json!({"assignee": null}));
        }
        _ => {
            row.insert(
                "meta".to_owned(),
                json!({"assignee": {"id": owner, "x": random_value(rng, 1)}}),
            );
        }
    }
    if rng.below(3) > 0 {
        let labels: Vec<Value> = (0..rng.below(3))
            .map(|_| match rng.below(4) {
                0 => json!("confidential"),
                1 => json!("vip"),
                2 => json!(1),
                _ => json!(["confidential"]),
            })
            .collect();
        row.insert("labels".to_owned(), Value::Array(labels));
    }
    let messages: Vec<Value> = (0..rng.below(3))
        .map(|_| {
            let sender = [json!(3), json!(1101), json!("9")][rng.below(3)].clone();
            json!({"id": rng.below(100), "sender_id": sender})
        })
        .collect();
    row.insert("messages".to_owned(), Value::Array(messages));
    row.insert("extra".to_owned(), random_value(rng, 2));
    Value::Object(row)
}

fn random_value(rng: &mut Rng, depth: usize) -> Value {
    match rng.below(if depth == 0 { 5 } else { 7 }) {
        0 => Value::Null,
        1 => json!(rng.below(2) == 0),
        2 => json!(rng.below(1 << 20) as f64 / 7.0),
        3 => json!(["a\"b", "\\", "é😀", "\u{1}", "</script>"][rng.below(5)]),
        4 => json!(-(rng.below(1000) as i64)),
        5 => Value::Array(
            (0..rng.below(3))
                .map(|_| random_value(rng, depth - 1))
                .collect(),
        ),
        _ => Value::Object(
            (0..rng.below(3))
                .map(|i| (format!("k{i}"), random_value(rng, depth - 1)))
                .collect(),
        ),
    }
}

/// A deterministic xorshift generator.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        if n == 0 {
            0
        } else {
            (self.0 % n as u64) as usize
        }
    }
}

/// Deserializes only JSON whose objects have unique keys.
struct Unique;

impl<'de> Deserialize<'de> for Unique {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Unique, D::Error> {
        d.deserialize_any(UniqueVisitor)
    }
}

struct UniqueVisitor;

impl<'de> Visitor<'de> for UniqueVisitor {
    type Value = Unique;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("JSON with unique keys")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_str<E>(self, _: &str) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_unit<E>(self) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Unique, A::Error> {
        while seq.next_element::<Unique>()?.is_some() {}
        Ok(Unique)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Unique, A::Error> {
        let mut keys = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !keys.insert(key) {
                return Err(de::Error::custom("duplicate key"));
            }
            map.next_value::<Unique>()?;
        }
        Ok(Unique)
    }
}

// --------------------------------------------------------------- masking

/// `doc` masked the slow way, as the walker must: a value at a mask's
/// selector (lowest mask first) has every string and number inside it
/// masked whole; any other string is searched by the detectors. Returns
/// the values masked.
fn reference_masks(doc: &mut Value, plan: &RewritePlan) -> u64 {
    let masks: Vec<(&[SelectorStep], &Style)> = plan
        .masks
        .iter()
        .map(|m| (m.field.steps(), &m.style))
        .collect();
    let mut n = 0;
    mask_ref(doc, &masks, None, &plan.detect, &mut n);
    n
}

fn mask_ref(
    v: &mut Value,
    masks: &[(&[SelectorStep], &Style)],
    active: Option<&Style>,
    detect: &[PlannedDetect],
    n: &mut u64,
) {
    // The strictest of the masks in force here (the first of equals).
    let active =
        masks
            .iter()
            .filter(|(s, _)| s.is_empty())
            .fold(active, |held, (_, st)| match held {
                Some(h) if h.strictness() >= st.strictness() => Some(h),
                _ => Some(*st),
            });
    match v {
        Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                let next: Vec<(&[SelectorStep], &Style)> = masks
                    .iter()
                    .filter_map(|(steps, st)| match *steps {
                        [SelectorStep::Member(m), rest @ ..] if **m == **k => Some((rest, *st)),
                        _ => None,
                    })
                    .collect();
                mask_ref(child, &next, active, detect, n);
            }
        }
        Value::Array(items) => {
            let next: Vec<(&[SelectorStep], &Style)> = masks
                .iter()
                .filter_map(|(steps, st)| match *steps {
                    [SelectorStep::Each, rest @ ..] => Some((rest, *st)),
                    _ => None,
                })
                .collect();
            for item in items {
                mask_ref(item, &next, active, detect, n);
            }
        }
        Value::String(_) | Value::Number(_) if active == Some(&Style::Withhold) => {
            *v = Value::Null;
            *n += 1;
        }
        Value::String(text) => match active {
            Some(style) => {
                *text = mask_whole(text, style);
                *n += 1;
            }
            None => {
                for d in detect {
                    if let Some((masked, found)) = mask_detected(text, &d.detectors, &d.style) {
                        *text = masked;
                        *n += found;
                    }
                }
            }
        },
        Value::Number(num) => {
            if let Some(style) = active {
                *v = Value::String(mask_whole(&num.to_string(), style));
                *n += 1;
            }
        }
        Value::Bool(_) | Value::Null => {}
    }
}

fn masks_plan(fields: &[&str], detect: &[Detector], style: Style) -> RewritePlan {
    let mut plan = RewritePlan::default();
    plan.push_redaction(&RedactionRule {
        name: "pii".to_owned(),
        unless_permission: None,
        fields: fields.iter().map(|f| selector(f)).collect(),
        detect: detect.to_vec(),
        style,
    });
    plan
}

/// Rewriter and reference agree: rows filtered, then values masked.
fn check_masks(body: &str, plan: &RewritePlan, what: &str) -> Value {
    let mut want: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{what}: {e}"));
    let (want_removed, _) = reference(&mut want, plan);
    let want_masked = reference_masks(&mut want, plan);
    match run(body, plan) {
        Ok(RewriteOutcome::Rewritten {
            body: out,
            removed,
            masked,
        }) => {
            let got: Value = serde_json::from_slice(&out)
                .unwrap_or_else(|e| panic!("{what}: output should be JSON: {e}"));
            assert_eq!(got, want, "{what}: output should equal the reference");
            assert_eq!(removed, want_removed, "{what}: rows removed");
            assert_eq!(masked, want_masked, "{what}: values masked");
            got
        }
        Ok(RewriteOutcome::Unchanged) => {
            assert_eq!((want_removed, want_masked), (0, 0), "{what}: should change");
            want
        }
        other => panic!("{what}: {other:?}"),
    }
}

const PII: &[&str] = &[
    "$.data.payload[*].meta.sender.phone_number",
    "$.data.payload[*].meta.sender.email",
    "$.data.payload[*].meta.sender.name",
    "$.data.payload[*].meta.assignee.email",
];

#[test]
fn masks_fields_and_free_text_in_the_same_pass_as_row_filters() {
    let body = inbox();
    for style in [
        Style::Partial,
        Style::Full,
        Style::Hash(b"0123456789abcdef0123".to_vec()),
    ] {
        let mut plan = agent3_list_plan();
        let masks = masks_plan(PII, &[Detector::PHONE, Detector::Email], style.clone());
        plan.masks = masks.masks;
        plan.detect = masks.detect;
        let got = check_masks(&body, &plan, &format!("agent 3, {style:?}"));
        assert_eq!(
            ids(&got["data"]["payload"]),
            vec![101, 105],
            "rows filtered too"
        );
        let text = got.to_string();
        assert!(
            !text.contains("+4477009"),
            "no phone number survives: {text}"
        );
        assert!(
            !text.contains("customer101@"),
            "no customer e-mail survives: {text}"
        );
        assert!(
            !text.contains("Customer 101"),
            "the name field is masked: {text}"
        );
    }
}

#[test]
fn two_detecting_rules_each_mask_what_the_other_left() {
    // Phone numbers partially by one rule, e-mail addresses in full by
    // another: a string holding both goes through both.
    let body = inbox();
    let mut plan = masks_plan(&[], &[Detector::PHONE], Style::Partial);
    plan.push_redaction(&RedactionRule {
        name: "mail".to_owned(),
        unless_permission: None,
        fields: Vec::new(),
        detect: vec![Detector::Email],
        style: Style::Full,
    });
    let got = check_masks(&body, &plan, "two rules");
    let text = got.to_string();
    assert!(
        !text.contains("+4477009"),
        "no phone number survives: {text}"
    );
    assert!(!text.contains("customer101@"), "no e-mail survives: {text}");
    assert!(text.contains("+*********101"), "phones partial: {text}");
}

#[test]
fn partial_masks_keep_what_identifies_the_row() {
    let plan = masks_plan(PII, &[], Style::Partial);
    let (got, _, _) = rewritten(&inbox(), &plan, "partial");
    let sender = &got["data"]["payload"][0]["meta"]["sender"];
    assert_eq!(sender["phone_number"], "+*********101", "{sender}");
    assert_eq!(sender["email"], "c***@mail.example", "{sender}");
    assert_eq!(sender["name"], "C***", "{sender}");
    assert_eq!(sender["id"], 1101, "ids are not masked: {sender}");
}

#[test]
fn masking_a_container_masks_everything_inside_it() {
    let plan = masks_plan(&["$.data.payload[*].meta.sender"], &[], Style::Full);
    let got = check_masks(&inbox(), &plan, "sender");
    let sender = &got["data"]["payload"][1]["meta"]["sender"];
    assert_eq!(sender["name"], "[redacted]");
    assert_eq!(sender["id"], "[redacted]", "numbers inside are masked too");
    assert_eq!(sender["blocked"], false, "booleans carry no personal data");
    assert_eq!(
        sender["additional_attributes"]["city"], "[redacted]",
        "nested values are masked"
    );
}

#[test]
fn withheld_values_become_null() {
    // Counts next to a filtered list would tell an agent how many rows
    // exist; withheld, they say nothing, and a number stays no made-up one.
    let mut plan = agent3_list_plan();
    plan.push_redaction(&RedactionRule {
        name: "counts".to_owned(),
        unless_permission: None,
        fields: vec![selector("$.data.meta")],
        detect: Vec::new(),
        style: Style::Withhold,
    });
    let got = check_masks(&inbox(), &plan, "counts withheld");
    assert_eq!(
        got["data"]["meta"],
        json!({"mine_count": null, "unassigned_count": null, "assigned_count": null, "all_count": null}),
        "every count inside the selected object is null"
    );
    assert_eq!(
        ids(&got["data"]["payload"]),
        vec![101, 105],
        "rows filtered too"
    );

    // One field, a string and a number; booleans and nulls stay.
    let plan = masks_plan(
        &[
            "$.data.payload[*].meta.sender.name",
            "$.data.payload[*].meta.sender.id",
            "$.data.payload[*].muted",
            "$.data.payload[*].priority",
        ],
        &[],
        Style::Withhold,
    );
    let (got, _, text) = rewritten(&inbox(), &plan, "fields withheld");
    let row = &got["data"]["payload"][0];
    assert_eq!(row["meta"]["sender"]["name"], Value::Null, "{text}");
    assert_eq!(row["meta"]["sender"]["id"], Value::Null, "{text}");
    assert_eq!(
        row["meta"]["sender"]["email"], "customer101@mail.example",
        "{text}"
    );
    assert_eq!(row["muted"], false, "booleans carry nothing to withhold");
    assert!(!text.contains("Customer 101"), "{text}");
}

#[test]
fn free_text_is_searched_everywhere_but_member_names() {
    let body = r#"{"payload": [
        {"content": "Call me on +44 7700 900123 or mail jo@example.com", "id": 1},
        {"content": "order 4415 arrived", "+447700900123": "a key is not masked"},
        {"content": "Esca\u0070ed: \u002b447700900999", "note": null}
    ]}"#;
    let plan = masks_plan(&[], &[Detector::PHONE, Detector::Email], Style::Partial);
    let got = check_masks(body, &plan, "free text");
    assert_eq!(
        got["payload"][0]["content"],
        "Call me on +** **** ***123 or mail j***@example.com"
    );
    assert_eq!(got["payload"][1]["content"], "order 4415 arrived");
    assert!(got["payload"][1].get("+447700900123").is_some(), "{got}");
    assert_eq!(got["payload"][2]["content"], "Escaped: +*********999");
    let plan = masks_plan(&[], &[Detector::PHONE], Style::Partial);
    assert_eq!(
        run(r#"{"a": "nothing to see", "b": 12345}"#, &plan),
        Ok(RewriteOutcome::Unchanged),
        "a body without findings is passed as it came"
    );
}

#[test]
fn missing_and_null_fields_have_nothing_to_mask_but_wrong_shapes_fail_closed() {
    let plan = masks_plan(&["$.payload[*].contact.phone"], &[], Style::Full);
    let ok = r#"{"payload": [{"contact": null}, {}, {"contact": {}}, {"contact": {"phone": null}}, {"contact": {"phone": "+447700900123"}}]}"#;
    let got = check_masks(ok, &plan, "tolerant");
    assert_eq!(got["payload"][4]["contact"]["phone"], "[redacted]");
    for (body, why) in [
        (
            r#"{"payload": {"contact": {}}}"#,
            "an object where the list should be",
        ),
        (
            r#"{"payload": [{"contact": ["+447700900123"]}]}"#,
            "an array where an object should be",
        ),
        (
            r#"{"payload": [{"contact": "+447700900123"}]}"#,
            "text where an object should be",
        ),
    ] {
        assert!(
            matches!(
                run(body, &plan),
                Err(RewriteError::MaskShapeMismatch { .. })
            ),
            "{why}: the body must not pass unmasked"
        );
    }
}

#[test]
fn masked_output_agrees_with_the_reference_on_generated_documents() {
    let mut rng = Rng(0x5eed_cafe);
    let every_country = Region::ALL.into_iter().fold(Regions::NONE, Regions::with);
    let detect = [
        Detector::Phone(every_country),
        Detector::Email,
        Detector::WhatsAppMessageId,
        Detector::Card,
        Detector::Iban,
        Detector::NationalId(every_country),
    ];
    for round in 0..300 {
        let rows: Vec<Value> = (0..rng.below(6)).map(|_| random_row(&mut rng)).collect();
        let mut doc = json!({"data": {"meta": {"count": rows.len()}, "payload": rows}});
        if round % 3 == 0 {
            doc["data"]["note"] = json!(
                "write to ops@example.com or +49 151 5551234 about wamid.HBgLMTY0NzM3Nzc3NzUVAgAR"
            );
        }
        if round % 5 == 0 {
            // Each kind once, some behind JSON escapes the walk decodes.
            doc["data"]["payment"] = json!(
                "card 4111 1111 1111 1111\nIBAN GB82 WEST 1234 5698 7654 32, \"612 345 678\", CPF 529.982.247-25"
            );
        }
        let body = if round % 2 == 0 {
            serde_json::to_string(&doc)
        } else {
            serde_json::to_string_pretty(&doc)
        }
        .unwrap_or_else(|e| panic!("{e}"));
        let mut plan = if round % 4 == 0 {
            agent3_list_plan()
        } else {
            RewritePlan::default()
        };
        let masks = masks_plan(
            &["$.data.payload[*].meta", "$.data.payload[*].id"],
            &detect,
            Style::Partial,
        );
        plan.masks = masks.masks;
        plan.detect = masks.detect;
        if round % 5 == 1 {
            // Withheld values next to partial masks and free-text search.
            let counts = masks_plan(
                &["$.data.meta", "$.data.payload[*].extra"],
                &[],
                Style::Withhold,
            );
            plan.masks.splice(0..0, counts.masks);
        }
        check_masks(&body, &plan, &format!("round {round}: {body}"));
    }
}

#[test]
fn where_masks_overlap_the_strictest_style_applies() {
    // A container and a field inside it, or two rules on one field, in
    // either order: the value gets the style that leaves least of it.
    const SENDER: &str = "$.data.payload[*].meta.sender";
    const EMAIL: &str = "$.data.payload[*].meta.sender.email";
    let cases = [
        (
            (SENDER, Style::Partial),
            (EMAIL, Style::Withhold),
            json!(null),
            json!("C***"),
        ),
        (
            (EMAIL, Style::Withhold),
            (SENDER, Style::Partial),
            json!(null),
            json!("C***"),
        ),
        (
            (SENDER, Style::Withhold),
            (EMAIL, Style::Partial),
            json!(null),
            json!(null),
        ),
        (
            (EMAIL, Style::Partial),
            (SENDER, Style::Withhold),
            json!(null),
            json!(null),
        ),
        (
            (EMAIL, Style::Partial),
            (EMAIL, Style::Full),
            json!("[redacted]"),
            json!("Customer 101"),
        ),
        (
            (EMAIL, Style::Full),
            (EMAIL, Style::Partial),
            json!("[redacted]"),
            json!("Customer 101"),
        ),
        (
            (SENDER, Style::Full),
            (EMAIL, Style::Partial),
            json!("[redacted]"),
            json!("[redacted]"),
        ),
    ];
    for ((a, sa), (b, sb), email, name) in cases {
        let what = format!("{a} {sa:?}, then {b} {sb:?}");
        let mut plan = masks_plan(&[a], &[], sa);
        plan.push_redaction(&RedactionRule {
            name: "second".to_owned(),
            unless_permission: None,
            fields: vec![selector(b)],
            detect: Vec::new(),
            style: sb,
        });
        let got = check_masks(&inbox(), &plan, &what);
        let sender = &got["data"]["payload"][0]["meta"]["sender"];
        assert_eq!(sender["email"], email, "{what}: {sender}");
        assert_eq!(sender["name"], name, "{what}: {sender}");
    }
}

fn graph_links(public: &str) -> Links {
    Links::new(
        vec![
            Origin::new(true, "graph.facebook.com", 443),
            Origin::new(true, "lookaside.fbsbx.com", 443),
        ]
        .into(),
        public,
    )
}

fn links_plan(public: &str) -> RewritePlan {
    RewritePlan {
        links: Some(graph_links(public)),
        ..RewritePlan::default()
    }
}

#[test]
fn upstream_links_lead_through_the_gateway() {
    // Graph escapes slashes; the link is read as its text and written
    // back as plain JSON.
    let body = r#"{"data":[{"id":"1","url":"https:\/\/lookaside.fbsbx.com\/whatsapp_business\/attachments\/?mid=1&ext=2"}],"paging":{"cursors":{"after":"QVFI"},"next":"https://graph.facebook.com/v23.0/1234/message_templates?after=QVFI","about":"https://developers.facebook.com/docs/graph-api"}}"#;
    let (got, removed, _) = rewritten(body, &links_plan("https://wa.acme.example"), "links");
    assert_eq!(removed, 0);
    assert_eq!(
        got["paging"]["next"],
        "https://wa.acme.example/v23.0/1234/message_templates?after=QVFI"
    );
    assert_eq!(
        got["data"][0]["url"],
        "https://wa.acme.example/whatsapp_business/attachments/?mid=1&ext=2"
    );
    assert_eq!(
        got["paging"]["about"], "https://developers.facebook.com/docs/graph-api",
        "a link to a site that is no upstream stays"
    );
    assert_eq!(got["paging"]["cursors"]["after"], "QVFI");

    let none = r#"{"data":[],"paging":{"cursors":{"after":"QVFI"}}}"#;
    assert_eq!(
        run(none, &links_plan("https://wa.acme.example")),
        Ok(RewriteOutcome::Unchanged),
        "nothing to rewrite: the upstream's bytes go as they are"
    );
}

#[test]
fn links_are_masked_like_any_text_and_masks_win() {
    let mut plan = masks_plan(&["$.payload.website"], &[Detector::PHONE], Style::Partial);
    plan.links = Some(graph_links("https://wa.acme.example"));
    let body = r#"{"payload":{"website":"https://graph.facebook.com/v23.0/me","profile":"https://graph.facebook.com/v23.0/search?to=+447700900123"}}"#;
    let (got, _, _) = rewritten(body, &plan, "links and masks");
    assert_eq!(
        got["payload"]["profile"], "https://wa.acme.example/v23.0/search?to=+*********123",
        "the rewritten link is searched like any string"
    );
    assert_ne!(
        got["payload"]["website"], "https://wa.acme.example/v23.0/me",
        "a masked field is masked, not relinked"
    );
    assert!(
        !got["payload"]["website"]
            .as_str()
            .unwrap_or_default()
            .contains("graph.facebook.com/v23.0/me"),
        "masked whole: {}",
        got["payload"]["website"]
    );
}

#[test]
fn links_in_removed_rows_go_with_them() {
    let mut plan = agent3_list_plan();
    plan.links = Some(graph_links(""));
    let linked_row = |id: u64, assignee: u64, to: &str| {
        conversation(id, Assignee::Num(assignee), &[]).replace(
            r#""can_reply": true,"#,
            &format!(r#""can_reply": true, "next": "https://graph.facebook.com/v23.0/{to}","#),
        )
    };
    let linked = list(&[linked_row(1, 3, "y"), linked_row(2, 9, "x")]);
    let (got, removed, _) = rewritten(&linked, &plan, "filter and links");
    assert_eq!(removed, 1);
    let rows = &got["data"]["payload"];
    assert_eq!(ids(rows), vec![1]);
    assert_eq!(rows[0]["next"], "/v23.0/y", "no public origin: the path");
}

#[test]
fn a_links_only_plan_passes_what_it_cannot_read() {
    let plan = links_plan("https://wa.acme.example");
    assert!(!plan.fails_closed() && !plan.is_empty());
    let jpeg = b"\xff\xd8\xff\xe0 https://graph.facebook.com/";
    for (body, ct, ce) in [
        (&jpeg[..], Some("image/jpeg"), None),
        (
            &b"{\"next\":\"https://graph.facebook.com/\""[..],
            JSON,
            None,
        ),
        (
            &b"{\"next\":\"https://graph.facebook.com/\"}"[..],
            JSON,
            Some("gzip"),
        ),
        (
            &b"{\"next\":\"https://graph.facebook.com/\"}"[..],
            Some("text/html"),
            None,
        ),
    ] {
        assert_eq!(
            rewrite(body, ct, ce, &plan, CAP),
            Ok(RewriteOutcome::Unchanged),
            "{ct:?} {ce:?}"
        );
    }
    // With a mask beside it, the same bodies fail closed.
    let mut masking = masks_plan(&[], &[Detector::Email], Style::Partial);
    masking.links = plan.links.clone();
    assert!(rewrite(jpeg, Some("image/jpeg"), None, &masking, CAP).is_err());
}
