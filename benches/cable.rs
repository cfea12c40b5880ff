//! Cost of reading a WebSocket stream's messages (a route with
//! `message_filter` and redaction: Chatwoot's cable for an agent) against
//! two baselines measured in the same run:
//! - the frames passing unread (only searched for the upstream's
//!   credential), what a stream without message rules costs;
//! - a serde_json round trip of each message (`from_slice::<Value>` +
//!   `to_vec`), the rewriter's yardstick: reading must run at no less than
//!   half its speed.
//!
//! The stream: one `message.created` event per message of the demo data
//! (its customer's name, number and e-mail, the conversation's assignee and
//! WhatsApp id, as Chatwoot broadcasts them), framed as the CRM sends them
//! and read in 4 KB pieces. Read for an agent (her conversations' events
//! kept, masked) and for a supervisor (every event, masked).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use chatwarden::demo::upstream::data::{self, Direction};
use chatwarden::echo::{Credentials, FrameScrub};
use chatwarden::identity::{Identity, RoleName};
use chatwarden::policy::{
    FieldPath, FilterMode, ItemSelector, MessageFilter, Permission, RoleDef, RoleSet, RowFilter,
};
use chatwarden::redact::{Detector, RedactionRule, Style};
use chatwarden::rewrite::messages::{MessagePlan, MessageStream};
use criterion::{criterion_group, Criterion, Throughput};
use serde_json::{json, Value};

const PIECE: usize = 4096;
const CRM_KEY: &[u8] = b"demo-crm-token-3f9c1e7a5b2d4c86";

/// The events, each as its JSON text.
fn events() -> Vec<String> {
    let assignee = |conversation: u64| {
        data::conversations()
            .iter()
            .find(|c| c.id == conversation)
            .and_then(|c| c.assignee_id)
    };
    data::messages()
        .iter()
        .filter_map(|m| {
            let seed = data::conversations()
                .iter()
                .find(|c| c.id == m.conversation_id)?;
            let contact = data::contact(seed.contact_id)?;
            let sender = match m.direction {
                Direction::Incoming => json!({"id": contact.id, "name": contact.name, "type": "contact",
                    "phone_number": contact.phone_number, "email": contact.email}),
                _ => json!({"id": m.agent_id, "name": "Agent", "type": "user"}),
            };
            let event = json!({
                "identifier": "{\"channel\":\"RoomChannel\",\"pubsub_token\":\"3Fq1\"}",
                "message": {"event": "message.created", "data": {
                    "id": m.id, "content": m.content, "account_id": data::ACCOUNT_ID,
                    "inbox_id": seed.inbox_id, "conversation_id": m.conversation_id,
                    "message_type": if m.direction == Direction::Incoming { 0 } else { 1 },
                    "created_at": m.created_at, "private": false,
                    "source_id": format!("wamid.HBgLDEMO{:010}", m.id),
                    "sender": sender,
                    "conversation": {"assignee_id": assignee(m.conversation_id), "unread_count": 1,
                        "contact_inbox": {"source_id": contact.phone_number.trim_start_matches('+')}},
                }},
            });
            Some(event.to_string())
        })
        .collect()
}

/// The events as the upstream frames them (unmasked text frames).
fn framed(events: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in events {
        out.push(0x81);
        match e.len() {
            n if n < 126 => out.push(n as u8),
            n => {
                out.push(126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        out.extend_from_slice(e.as_bytes());
    }
    out
}

fn plan(role: &str) -> MessagePlan {
    let perm = |p: &str| Permission::parse(p).expect("bench permission");
    let field = |f: &str| FieldPath::parse(f).expect("bench field");
    let def = |name: &str, perms: &[&str]| RoleDef {
        name: RoleName(name.to_owned()),
        inherits: Vec::new(),
        permissions: perms.iter().map(|p| (*p).to_owned()).collect(),
    };
    let roles = RoleSet::compile(vec![
        def("agent", &["conversations.read"]),
        def(
            "supervisor",
            &["conversations.read", "conversations.read_all"],
        ),
    ])
    .expect("bench roles");
    let mut filter = RowFilter::new(
        "$.message.data",
        "meta.assignee.id",
        "user_id",
        FilterMode::Object,
    )
    .expect("bench filter");
    filter.unless_permission = Some(perm("conversations.read_all"));
    let filter = MessageFilter {
        filter,
        fields: vec![field("meta.assignee.id"), field("conversation.assignee_id")],
    };
    let selector = |s: &str| ItemSelector::parse(s).expect("bench selector");
    let rule = Arc::new(RedactionRule {
        name: "cable-pii".to_owned(),
        unless_permission: Some(perm("contacts.read_pii")),
        fields: vec![
            selector("$.message.data.sender.phone_number"),
            selector("$.message.data.sender.email"),
            selector("$.message.data.conversation.contact_inbox.source_id"),
        ],
        detect: vec![
            Detector::PHONE,
            Detector::Email,
            Detector::WhatsAppMessageId,
        ],
        style: Style::Partial,
    });
    let identity = Identity {
        subject: "bench".to_owned(),
        roles: vec![RoleName(role.to_owned())],
        attributes: [("user_id".to_owned(), vec!["3".to_owned()])].into(),
        mfa: true,
        auth_time: None,
        token_id: None,
        expires_at: i64::MAX,
    };
    MessagePlan::for_caller(
        Some(&filter),
        Some("type"),
        &[rule],
        Some(&identity),
        &roles,
        false,
        None,
    )
    .expect("the bench caller is under the rules")
}

fn unread(stream: &[u8], creds: &Credentials) -> usize {
    let mut scrub = FrameScrub::default();
    stream
        .chunks(PIECE)
        .map(|p| scrub.piece(creds, p).expect("frames").len())
        .sum()
}

fn read(stream: &[u8], creds: &Credentials, plan: &MessagePlan) -> usize {
    let mut s = MessageStream::new(plan.clone());
    stream
        .chunks(PIECE)
        .map(|p| s.piece(creds, p).expect("messages").len())
        .sum()
}

fn roundtrip(events: &[String]) -> usize {
    events
        .iter()
        .map(|e| {
            let v: Value = serde_json::from_str(e).expect("JSON");
            serde_json::to_vec(&v).expect("serialize").len()
        })
        .sum()
}

fn bench_cable(c: &mut Criterion) {
    let events = events();
    let stream = framed(&events);
    let creds = Credentials::new([CRM_KEY]);
    let (agent, supervisor) = (plan("agent"), plan("supervisor"));
    println!(
        "cable: {} events, {} KB; the agent gets {} KB of them, the supervisor {} KB",
        events.len(),
        stream.len() / 1024,
        read(&stream, &creds, &agent) / 1024,
        read(&stream, &creds, &supervisor) / 1024
    );
    let mut group = c.benchmark_group("cable");
    group.throughput(Throughput::Bytes(stream.len() as u64));
    group.bench_function("a_frames_unread", |b| {
        b.iter(|| unread(black_box(&stream), &creds))
    });
    group.bench_function("b_serde_roundtrip", |b| {
        b.iter(|| roundtrip(black_box(&events)))
    });
    group.bench_function("c_read_for_agent", |b| {
        b.iter(|| read(black_box(&stream), &creds, &agent))
    });
    group.bench_function("d_read_for_supervisor", |b| {
        b.iter(|| read(black_box(&stream), &creds, &supervisor))
    });
    group.finish();
}

/// Times each back to back in this process and prints the ratios.
fn print_ratios() {
    let events = events();
    let stream = framed(&events);
    let creds = Credentials::new([CRM_KEY]);
    let (agent, supervisor) = (plan("agent"), plan("supervisor"));
    let time = |f: &dyn Fn() -> usize| {
        for _ in 0..5 {
            black_box(f());
        }
        let start = Instant::now();
        for _ in 0..50 {
            black_box(f());
        }
        start.elapsed().as_secs_f64() * 1e6 / 50.0 / events.len() as f64
    };
    let unread_us = time(&|| unread(&stream, &creds));
    let roundtrip_us = time(&|| roundtrip(&events));
    for (who, plan) in [("agent", &agent), ("supervisor", &supervisor)] {
        let read_us = time(&|| read(&stream, &creds, plan));
        println!(
            "ratio cable {who}: per message unread {unread_us:.2} µs, serde round trip {roundtrip_us:.2} µs, read {read_us:.2} µs; read/round trip = {:.2}, read/unread = {:.1}",
            read_us / roundtrip_us,
            read_us / unread_us
        );
    }
}

criterion_group!(benches, bench_cable);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    if !std::env::args().any(|a| a == "--profile-time") {
        print_ratios();
    }
}
