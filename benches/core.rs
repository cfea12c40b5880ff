//! Request-path costs of the gateway core, each reported with a baseline
//! measured in the same run (this machine is shared and noisy, so only
//! ratios mean anything):
//! - path normalization vs a plain copy of the same path;
//! - route match on 200 routes vs one template match;
//! - audit record encoding (and the writer's serialize-and-seal) vs serde_json
//!   of an equivalent map.

mod common;
use common::report_ratio;
use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use http::Method;
use time::OffsetDateTime;

use chatwarden::audit::{AuditRecord, Chain};
use chatwarden::decision::{Decision, Reason};
use chatwarden::request::normalize_path;
use chatwarden::route::{MethodSet, PathTemplate, RouteTable};

const PATH: &str = "/api/v1/accounts/1/conversations/42/messages";
const TRICKY: &str = "/api//v1/accounts/1/x/%2e%2e/conversations/42/%6Dessages";

fn table(n: usize) -> RouteTable<usize> {
    let mut entries = Vec::new();
    for i in 0..n {
        let t = PathTemplate::parse(&format!(
            "/api/v1/accounts/{{account_id}}/r{i}/{{id}}/sub{}",
            i % 7
        ))
        .expect("template");
        entries.push((MethodSet::Only(vec![Method::GET]), t, i));
    }
    let t = PathTemplate::parse(
        "/api/v1/accounts/{account_id}/conversations/{conversation_id}/messages",
    )
    .expect("template");
    entries.push((MethodSet::Only(vec![Method::GET]), t, n));
    RouteTable::new(entries).expect("table")
}

fn normalize(c: &mut Criterion) {
    let mut g = c.benchmark_group("normalize");
    g.bench_function("baseline: copy path", |b| {
        b.iter(|| black_box(PATH).to_string())
    });
    g.bench_function("clean path", |b| b.iter(|| normalize_path(black_box(PATH))));
    g.bench_function("tricky path", |b| {
        b.iter(|| normalize_path(black_box(TRICKY)))
    });
    g.finish();
}

fn route_match(c: &mut Criterion) {
    let routes = table(200);
    let path = normalize_path(PATH).expect("path");
    let single = PathTemplate::parse(
        "/api/v1/accounts/{account_id}/conversations/{conversation_id}/messages",
    )
    .expect("template");
    let mut g = c.benchmark_group("route");
    g.bench_function("baseline: one template", |b| {
        b.iter(|| single.match_path(black_box(&path)))
    });
    g.bench_function("table of 201", |b| {
        b.iter(|| routes.find(&Method::GET, black_box(&path)))
    });
    g.finish();
    report_ratio(
        "route match on 201 routes vs one template",
        || routes.find(&Method::GET, &path).map(|m| *m.value),
        || single.match_path(&path).map(|p| p.len()),
    );
}

fn audit_encoding(c: &mut Criterion) {
    let rec = AuditRecord::request(
        OffsetDateTime::now_utc(),
        "0d8825cdc6d8e20171f79dc0f985f239",
        "2990c3e864a0",
        "203.0.113.9",
        "GET",
        PATH,
    )
    .route("messages.list", "crm")
    .subject("agent-7", vec!["agent".into()])
    .decision(Decision::Deny(Reason::ScopeDenied))
    .response(403, 94, Duration::from_micros(420));
    let map = serde_json::json!({
        "ts": "2026-11-23T19:08:09.945Z", "request_id": "0d8825cdc6d8e20171f79dc0f985f239",
        "config_version": "2990c3e864a0", "client_ip": "203.0.113.9", "method": "GET", "path": PATH,
        "route": "messages.list", "upstream": "crm", "sub": "agent-7", "roles": ["agent"],
        "decision": "deny", "reason": "scope_denied", "rules": [], "status": 403, "bytes_out": 94,
        "duration_ms": 0.42, "redactions": 0
    });
    let mut g = c.benchmark_group("audit");
    g.bench_function("baseline: serde_json map", |b| {
        b.iter(|| black_box(&map).to_string())
    });
    g.bench_function("record to_json_line", |b| {
        b.iter(|| black_box(&rec).to_json_line())
    });
    // What the writer thread does per record: serialize into its reused
    // batch buffer and seal into the hash chain.
    let mut chain = Chain::genesis();
    let mut sealed = rec.clone();
    let mut buf = Vec::with_capacity(64 * 1024);
    g.bench_function("record sealed into a reused buffer (writer)", |b| {
        b.iter(|| {
            buf.clear();
            black_box(chain.seal_into(black_box(&mut sealed), &mut buf))
        })
    });
    g.finish();
    report_ratio(
        "audit record to_json_line vs serde_json map",
        || rec.to_json_line(),
        || map.to_string(),
    );
    report_ratio(
        "audit record sealed into a reused buffer (writer) vs serde_json map",
        || {
            buf.clear();
            chain.seal_into(&mut sealed, &mut buf)
        },
        || map.to_string(),
    );
}

criterion_group!(benches, normalize, route_match, audit_encoding);
criterion_main!(benches);
