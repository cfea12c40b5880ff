//! What the alert rules cost the logging phase, each reported with a
//! baseline measured in the same run (this machine is shared and noisy, so
//! only ratios mean anything):
//! - a request that matches no rule (the common case: an allowed request
//!   against the example config's three rules) vs one route-template match;
//! - a request a rule counts (a denial: lock, key lookup, sample id) vs the
//!   same baseline.

mod common;
use common::report_ratio;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use time::OffsetDateTime;

use chatwarden::alert::{
    outbox, AlertRule, Alerting, Event, KeyKind, Matcher, RuleName, Sink, SinkKind, SinkName,
    Trigger, MAX_THRESHOLD,
};
use chatwarden::decision::{Reason, Verdict};
use chatwarden::metrics::Metrics;
use chatwarden::request::normalize_path;
use chatwarden::route::PathTemplate;

const PATH: &str = "/api/v1/accounts/1/conversations/42/messages";

/// The example config's rules (config/chatwarden.yaml), with thresholds no
/// bench run reaches.
fn rules() -> Vec<Arc<AlertRule>> {
    let log = Arc::new(Sink {
        name: SinkName("security-log".into()),
        kind: SinkKind::Log,
    });
    let rule = |name: &str, when: Matcher, key: KeyKind, window_secs: u64| {
        Arc::new(AlertRule {
            name: RuleName(name.into()),
            trigger: Trigger::new(
                when,
                key,
                MAX_THRESHOLD,
                Duration::from_secs(window_secs),
                10_000,
            )
            .expect("trigger"),
            sinks: vec![log.clone()],
        })
    };
    vec![
        rule(
            "repeated-denials",
            Matcher {
                decision: Some(Verdict::Deny),
                ..Matcher::default()
            },
            KeyKind::Subject,
            600,
        ),
        rule(
            "invalid-tokens",
            Matcher {
                decision: Some(Verdict::Deny),
                reasons: vec![
                    Reason::TokenInvalid,
                    Reason::TokenExpired,
                    Reason::TokenRevoked,
                ],
                ..Matcher::default()
            },
            KeyKind::ClientIp,
            600,
        ),
        rule(
            "bulk-export",
            Matcher {
                decision: Some(Verdict::Allow),
                routes: vec!["contacts.export".into(), "conversations.export".into()],
                ..Matcher::default()
            },
            KeyKind::Subject,
            3600,
        ),
    ]
}

fn alerts(c: &mut Criterion) {
    let rules = rules();
    let alerting = Alerting::new(
        outbox(16, Arc::new(Metrics::default())).0,
        Arc::new(Metrics::default()),
    )
    .0;
    let roles = vec!["agent".to_string()];
    let allowed = Event {
        ts: OffsetDateTime::now_utc(),
        request_id: "0d8825cdc6d8e20171f79dc0f985f239",
        config_version: "2990c3e864a0",
        decision: Verdict::Allow,
        reason: None,
        route: Some("messages.list"),
        sub: Some("agent-7"),
        client_ip: "203.0.113.9",
        roles: &roles,
    };
    let denied = Event {
        decision: Verdict::Deny,
        reason: Some(Reason::ScopeDenied),
        ..allowed
    };
    let path = normalize_path(PATH).expect("path");
    let template = PathTemplate::parse(
        "/api/v1/accounts/{account_id}/conversations/{conversation_id}/messages",
    )
    .expect("template");

    let mut g = c.benchmark_group("alert");
    g.bench_function("baseline: one template match", |b| {
        b.iter(|| template.match_path(black_box(&path)))
    });
    g.bench_function("no rule matches (allowed request, 3 rules)", |b| {
        b.iter(|| alerting.observe(black_box(&rules), black_box(&allowed), None, |_, _| {}))
    });
    g.bench_function("a rule counts it (denied request)", |b| {
        b.iter(|| alerting.observe(black_box(&rules), black_box(&denied), None, |_, _| {}))
    });
    g.finish();
    report_ratio(
        "alert rules, no match (allowed request) vs one template match",
        || alerting.observe(&rules, &allowed, None, |_, _| {}),
        || template.match_path(&path).map(|p| p.len()),
    );
    report_ratio(
        "alert rules, one counts (denied request) vs one template match",
        || alerting.observe(&rules, &denied, None, |_, _| {}),
        || template.match_path(&path).map(|p| p.len()),
    );
}

criterion_group!(benches, alerts);
criterion_main!(benches);
