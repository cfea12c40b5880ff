//! Cost of the response rewriter against a plain serde_json round trip of
//! the same body (`from_slice::<Value>` + `to_vec`), the yardstick of the
//! perf issue: rewriting must run at no less than half its speed.
//!
//! Two bodies, rendered as the demo CRM renders them from the demo data:
//! - a page of 25 conversations (`GET …/conversations`, ~50 KB), filtered
//!   for an agent (own rows only, no `confidential` label) and for a
//!   supervisor (label rule only), and for an agent with redaction too
//!   (sender phone, e-mail and name masked, phone numbers and e-mail
//!   addresses found in every string and masked);
//! - a ~1 MB contacts export (`{"meta","payload"}`), filtered to one
//!   region's contacts, and redacted alone (no row filter).
//!
//! Two error bodies (a non-2xx answer for a caller under redaction, where
//! every string is searched for phone numbers and e-mail addresses):
//! - Chatwoot's 422 for a duplicate contact, echoing the phone number;
//! - the conversation page above served as an error body (~50 KB of
//!   strings, every one searched: the scan's worst realistic case).
//!
//! Criterion measures each; a final pass times baseline and rewrite back to
//! back in this process and prints their ratios.

use std::hint::black_box;
use std::time::Instant;

use chatwarden::demo::upstream::data::{self, Direction};
use chatwarden::policy::{
    FieldPath, FilterMode, HiddenLabel, ItemSelector, OwnerMatch, RowFilterPlan,
};
use chatwarden::redact::{Detector, RedactionRule, Region, Regions, Style};
use chatwarden::rewrite::{
    mask_error_body, rewrite, ErrorScan, Links, Origin, PlannedRowFilter, RewriteError,
    RewriteOutcome, RewritePlan,
};
use criterion::{criterion_group, Criterion, Throughput};
use serde_json::{json, Map, Value};

const CAP: usize = 8 << 20;
const JSON: Option<&str> = Some("application/json; charset=utf-8");

struct Case {
    name: &'static str,
    body: Vec<u8>,
    plan: RewritePlan,
    /// Set for an error body: searched with this scan instead of the plan.
    scan: Option<ErrorScan>,
}

impl Case {
    fn run(&self, body: &[u8]) -> Result<RewriteOutcome, RewriteError> {
        match &self.scan {
            Some(scan) => mask_error_body(body, JSON, None, scan, CAP),
            None => rewrite(body, JSON, None, &self.plan, CAP),
        }
    }
}

fn cases() -> Vec<Case> {
    let conversations = conversation_page();
    let contacts = contacts_export(1 << 20);
    vec![
        Case {
            name: "conversations_25_agent",
            body: conversations.clone(),
            scan: None,
            plan: plan(
                "$.data.payload[*]",
                Some(("meta.assignee.id", &["3"])),
                Some("confidential"),
            ),
        },
        Case {
            name: "conversations_25_supervisor",
            body: conversations,
            scan: None,
            plan: plan("$.data.payload[*]", None, Some("vip")),
        },
        Case {
            name: "conversations_25_agent_redacted",
            body: conversation_page(),
            scan: None,
            plan: redacted(
                plan(
                    "$.data.payload[*]",
                    Some(("meta.assignee.id", &["3"])),
                    Some("confidential"),
                ),
                &[
                    "$.data.payload[*].meta.sender.phone_number",
                    "$.data.payload[*].meta.sender.email",
                    "$.data.payload[*].meta.sender.name",
                ],
            ),
        },
        Case {
            name: "contacts_1mb_region",
            body: contacts.clone(),
            scan: None,
            plan: plan(
                "$.payload[*]",
                Some(("custom_attributes.region", &["uk"])),
                None,
            ),
        },
        Case {
            name: "contacts_1mb_redacted",
            body: contacts,
            scan: None,
            plan: redacted(
                RewritePlan::default(),
                &[
                    "$.payload[*].phone_number",
                    "$.payload[*].email",
                    "$.payload[*].name",
                ],
            ),
        },
        Case {
            // The load benchmark's 12 KB list (mix g), redacted as its
            // config says: three sender fields, phone/e-mail everywhere.
            name: "load_list_12kb_redacted",
            body: include_bytes!("load/conversations.json").to_vec(),
            scan: None,
            plan: redacted(
                RewritePlan::default(),
                &[
                    "$.data.payload[*].meta.sender.phone_number",
                    "$.data.payload[*].meta.sender.email",
                    "$.data.payload[*].meta.sender.name",
                ],
            ),
        },
        Case {
            // The same, with every country's national numbers searched for
            // too (`countries`): what naming countries costs.
            name: "load_list_12kb_redacted_every_region",
            body: include_bytes!("load/conversations.json").to_vec(),
            scan: None,
            plan: redacted_with(
                RewritePlan::default(),
                &[
                    "$.data.payload[*].meta.sender.phone_number",
                    "$.data.payload[*].meta.sender.email",
                    "$.data.payload[*].meta.sender.name",
                ],
                Detector::Phone(Region::ALL.into_iter().fold(Regions::NONE, Regions::with)),
            ),
        },
        Case {
            // A Graph template list as Meta writes it (slashes escaped),
            // through an upstream with `links`: every string read, the
            // page's next link rewritten.
            name: "graph_templates_25_links",
            body: graph_template_page(),
            scan: None,
            plan: RewritePlan {
                links: Some(Links::new(
                    vec![
                        Origin::new(true, "graph.facebook.com", 443),
                        Origin::new(true, "lookaside.fbsbx.com", 443),
                    ]
                    .into(),
                    "https://api.acme-retail.example",
                )),
                ..RewritePlan::default()
            },
        },
        Case {
            name: "error_422_duplicate_phone",
            body: br#"{"message":"Phone number +447700900123 has already been taken","attributes":["phone_number"]}"#.to_vec(),
            plan: RewritePlan::default(),
            scan: agent_error_scan(),
        },
        Case {
            name: "error_50kb_conversations",
            body: conversation_page(),
            plan: RewritePlan::default(),
            scan: agent_error_scan(),
        },
    ]
}

/// 25 message templates and a next page, as Graph serializes them (every
/// `/` escaped).
fn graph_template_page() -> Vec<u8> {
    let templates = data::templates();
    let page: Vec<Value> = (0..25)
        .map(|i| {
            let t = &templates[i % templates.len()];
            json!({
                "name": t.name,
                "language": t.language,
                "status": "APPROVED",
                "category": t.category,
                "components": [
                    {"type": "HEADER", "format": "TEXT", "text": t.header},
                    {"type": "BODY", "text": t.body, "example": {"body_text": [t.body_example]}},
                    {"type": "FOOTER", "text": t.footer},
                    {"type": "BUTTONS", "buttons": [{"type": "URL", "text": "Track", "url": "https://shop.acme-retail.example/track/{{1}}"}]}
                ],
                "id": format!("{}{i:02}", &t.id[..14]),
            })
        })
        .collect();
    let body = json!({
        "data": page,
        "paging": {
            "cursors": {"before": "QVFIUjNpUWpVWmRBd0Dn", "after": "QVFIUjNpUWpVWmRBd0Rn"},
            "next": format!("https://graph.facebook.com/v23.0/{}/message_templates?limit=25&after=QVFIUjNpUWpVWmRBd0Rn", data::WABA_ID),
        },
    });
    body.to_string().replace('/', "\\/").into_bytes()
}

/// The error-body scan of an agent under the demo's redaction.
fn agent_error_scan() -> Option<ErrorScan> {
    redacted(RewritePlan::default(), &["$.payload.phone_number"]).error_scan()
}

/// `plan` plus masking of `fields` and phone/e-mail detection everywhere,
/// partial style (the demo's agent redaction).
fn redacted(plan: RewritePlan, fields: &[&str]) -> RewritePlan {
    redacted_with(plan, fields, Detector::PHONE)
}

/// [`redacted`] with `phone` as the phone detector.
fn redacted_with(mut plan: RewritePlan, fields: &[&str], phone: Detector) -> RewritePlan {
    plan.push_redaction(&RedactionRule {
        name: "pii".to_owned(),
        unless_permission: None,
        fields: fields
            .iter()
            .map(|f| ItemSelector::parse(f).expect("bench mask selector"))
            .collect(),
        detect: vec![phone, Detector::Email],
        style: Style::Partial,
    });
    plan
}

fn bench_rewrite(c: &mut Criterion) {
    for case in cases() {
        let outcome = case.run(&case.body);
        let (removed, masked) = match &outcome {
            Ok(RewriteOutcome::Rewritten {
                removed, masked, ..
            }) => (*removed, *masked),
            other => panic!(
                "{}: bench body should be rewritten, got {other:?}",
                case.name
            ),
        };
        println!(
            "{}: {} bytes, {removed} rows removed, {masked} values masked",
            case.name,
            case.body.len()
        );
        let mut group = c.benchmark_group(case.name);
        group.throughput(Throughput::Bytes(case.body.len() as u64));
        group.bench_function("a_serde_value_roundtrip", |b| {
            b.iter(|| roundtrip(black_box(&case.body)))
        });
        group.bench_function("b_rewrite", |b| {
            b.iter(|| case.run(black_box(&case.body)).is_ok())
        });
        group.finish();
    }
}

/// Times the baseline and the rewrite back to back in this process and
/// prints rewrite/baseline (the target is at most 2).
fn print_ratios() {
    for case in cases() {
        let iterations = (200_000_000 / case.body.len()).max(20) as u32;
        let time = |f: &dyn Fn()| {
            for _ in 0..iterations / 10 {
                f();
            }
            let start = Instant::now();
            for _ in 0..iterations {
                f();
            }
            start.elapsed().as_secs_f64() * 1e6 / f64::from(iterations)
        };
        let baseline = time(&|| {
            black_box(roundtrip(black_box(&case.body)));
        });
        let rewritten = time(&|| {
            black_box(case.run(black_box(&case.body)).is_ok());
        });
        println!(
            "ratio {} ({} KB, {iterations} iterations each): serde round trip {baseline:.1} µs, rewrite {rewritten:.1} µs, rewrite/round trip = {:.2}",
            case.name,
            case.body.len() / 1024,
            rewritten / baseline
        );
    }
}

fn roundtrip(body: &[u8]) -> usize {
    let value: Value = serde_json::from_slice(body).expect("bench body is JSON");
    let mut out = Vec::with_capacity(body.len());
    serde_json::to_writer(&mut out, &value).expect("serializing a Value");
    out.len()
}

fn plan(items: &str, owner: Option<(&str, &[&str])>, hidden: Option<&str>) -> RewritePlan {
    let field = |text: &str| FieldPath::parse(text).expect("bench field path");
    RewritePlan {
        row_filters: vec![PlannedRowFilter {
            items: ItemSelector::parse(items).expect("bench selector"),
            mode: FilterMode::Items,
            plan: RowFilterPlan::Keep {
                owner: owner.map(|(path, allowed)| OwnerMatch {
                    field: field(path),
                    allowed_values: allowed.iter().map(|a| (*a).to_owned()).collect(),
                }),
                hidden_labels: hidden
                    .map(|label| HiddenLabel {
                        field: field("labels"),
                        label: label.to_owned(),
                    })
                    .into_iter()
                    .collect(),
            },
        }],
        ..RewritePlan::default()
    }
}

/// `GET /api/v1/accounts/1/conversations`: 25 conversations as Chatwoot's
/// list renders them (the demo CRM's shape), demo conversations repeated
/// with fresh ids to fill the page.
fn conversation_page() -> Vec<u8> {
    let seeds = data::conversations();
    let payload: Vec<Value> = (0..25)
        .map(|i| {
            let seed = &seeds[i % seeds.len()];
            conversation_json(seed, 1000 + i as u64)
        })
        .collect();
    let body = json!({
        "data": {
            "meta": {"mine_count": 5, "unassigned_count": 3, "assigned_count": 22, "all_count": 25},
            "payload": payload,
        }
    });
    serde_json::to_vec(&body).expect("bench body")
}

fn conversation_json(seed: &data::Conversation, id: u64) -> Value {
    let messages: Vec<&data::Message> = data::messages()
        .iter()
        .filter(|m| m.conversation_id == seed.id)
        .collect();
    let last = messages.last().map(|m| message_json(m, seed));
    let updated = messages.last().map_or(seed.created_at, |m| m.created_at);
    let mut meta = Map::new();
    if let Some(contact) = data::contact(seed.contact_id) {
        meta.insert("sender".to_owned(), contact_json(contact));
    }
    meta.insert("channel".to_owned(), json!("Channel::Whatsapp"));
    if let Some(agent) = seed.assignee_id.and_then(data::agent) {
        meta.insert("assignee".to_owned(), agent_json(agent));
    }
    if let Some(team) = seed.team_id.and_then(data::team) {
        meta.insert(
            "team".to_owned(),
            json!({"id": team.id, "name": team.name, "description": team.description,
                   "allow_auto_assign": true, "account_id": data::ACCOUNT_ID, "is_member": false}),
        );
    }
    meta.insert("hmac_verified".to_owned(), json!(false));
    json!({
        "meta": meta,
        "id": id,
        "messages": last.iter().collect::<Vec<_>>(),
        "account_id": data::ACCOUNT_ID,
        "uuid": format!("6f1c2a4e-0000-4000-8000-{id:012}"),
        "additional_attributes": {},
        "agent_last_seen_at": updated,
        "assignee_last_seen_at": updated,
        "can_reply": true,
        "contact_last_seen_at": updated,
        "custom_attributes": {"region": data::inbox(seed.inbox_id).map(|i| i.region.as_str())},
        "inbox_id": seed.inbox_id,
        "labels": seed.labels,
        "muted": false,
        "snoozed_until": null,
        "status": seed.status.as_str(),
        "created_at": seed.created_at,
        "updated_at": updated,
        "timestamp": updated,
        "first_reply_created_at": messages.iter().find(|m| m.direction == Direction::Outgoing).map(|m| m.created_at),
        "unread_count": 0,
        "last_non_activity_message": last,
        "last_activity_at": updated,
        "priority": seed.priority,
        "waiting_since": if seed.assignee_id.is_none() { seed.created_at } else { 0 },
        "sla_policy_id": null,
        "applied_sla": null,
        "sla_events": [],
    })
}

fn message_json(message: &data::Message, seed: &data::Conversation) -> Value {
    let (message_type, sender_type, sender) = match message.direction {
        Direction::Incoming => (
            0,
            "contact",
            data::contact(seed.contact_id).map_or(Value::Null, contact_json),
        ),
        Direction::Outgoing | Direction::PrivateNote => (
            1,
            "agent",
            message
                .agent_id
                .and_then(data::agent)
                .map_or(Value::Null, agent_json),
        ),
    };
    json!({
        "id": message.id,
        "content": message.content,
        "account_id": data::ACCOUNT_ID,
        "inbox_id": seed.inbox_id,
        "conversation_id": message.conversation_id,
        "message_type": message_type,
        "created_at": message.created_at,
        "updated_at": message.created_at,
        "private": message.direction == Direction::PrivateNote,
        "status": if message.direction == Direction::Incoming { "read" } else { "delivered" },
        "source_id": format!("wamid.HBgLDEMO{:010}", message.id),
        "content_type": "text",
        "content_attributes": {},
        "sender_type": sender_type,
        "sender_id": sender.get("id").cloned().unwrap_or(Value::Null),
        "external_source_ids": {},
        "additional_attributes": {},
        "processed_message_content": message.content,
        "sentiment": {},
        "sender": sender,
    })
}

fn contact_json(contact: &data::Contact) -> Value {
    let (country, code) = match contact.region() {
        data::Region::Uk => ("United Kingdom", "GB"),
        data::Region::De => ("Germany", "DE"),
    };
    json!({
        "additional_attributes": {
            "city": contact.city, "country": country, "country_code": code,
            "company_name": contact.company_name, "description": contact.note,
        },
        "availability_status": "offline",
        "email": contact.email,
        "id": contact.id,
        "name": contact.name,
        "phone_number": contact.phone_number,
        "blocked": false,
        "identifier": null,
        "thumbnail": "",
        "custom_attributes": {"region": contact.region().as_str()},
        "last_activity_at": contact.created_at + 86_400,
        "created_at": contact.created_at,
    })
}

fn agent_json(agent: &data::Agent) -> Value {
    json!({
        "id": agent.id,
        "account_id": data::ACCOUNT_ID,
        "availability_status": "online",
        "auto_offline": true,
        "confirmed": true,
        "email": agent.email,
        "available_name": agent.name,
        "name": agent.name,
        "role": agent.role.as_str(),
        "thumbnail": "",
        "custom_role_id": null,
    })
}

/// The demo's contacts export, demo contacts repeated with fresh ids until
/// the body reaches `size` bytes.
fn contacts_export(size: usize) -> Vec<u8> {
    let seeds = data::contacts();
    let mut payload = Vec::new();
    let mut bytes = 0;
    while bytes < size {
        let seed = &seeds[payload.len() % seeds.len()];
        let mut contact = contact_json(seed);
        contact["id"] = json!(10_000 + payload.len());
        if let Some(inbox) = data::inbox(seed.inbox_id) {
            contact["contact_inboxes"] = json!([{
                "source_id": seed.phone_number.trim_start_matches('+'),
                "inbox": {"id": inbox.id, "avatar_url": "", "channel_id": inbox.channel_id,
                          "name": inbox.name, "channel_type": "Channel::Whatsapp",
                          "provider": "whatsapp_cloud"},
            }]);
        }
        bytes += serde_json::to_vec(&contact).map_or(0, |v| v.len() + 1);
        payload.push(contact);
    }
    let body = json!({"meta": {"count": payload.len()}, "payload": payload});
    serde_json::to_vec(&body).expect("bench body")
}

criterion_group!(benches, bench_rewrite);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    // Under a profiler (`--profile-time`, e.g. in callgrind) only the
    // benchmark asked for runs: the ratio pass would drown it.
    if !std::env::args().any(|a| a == "--profile-time") {
        print_ratios();
    }
}
