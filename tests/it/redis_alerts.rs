//! Alert counters shared through a real Redis (`redis-server` on a free
//! loopback port, see `redis_limits`): two gateways behind one Redis raise
//! one alert for a caller whose denials are split between them, none below
//! the threshold, and with Redis gone each replica counts (and fires) on
//! its own while the error metric moves. The script's semantics are
//! checked against the in-process counters, event by event, on a real
//! server.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use time::OffsetDateTime;

use chatwarden::alert::shared::{self, SharedEvent};
use chatwarden::alert::{AlertRule, KeyKind, Matcher, RuleCounters, RuleName, Trigger};
use chatwarden::limit::redis::{RedisSettings, RedisStore, RedisTarget};
use chatwarden::limit::resp::Reply;

use crate::alerts::Receiver;
use crate::harness::{self, TestGateway};
use crate::idp::Idp;
use crate::redis_limits::RedisServer;
use crate::upstream::EchoUpstream;

const CONFIG: &str = r#"
listeners: [{name: main, addr: "${LISTEN}"}]
admin: {addr: "${ADMIN}"}
upstreams:
  crm: {url: "${UP}"}
auth:
  issuer: https://idp.acme-retail.test/
  audiences: [chatwarden]
  algorithms: [EdDSA]
  jwks_url: "${JWKS}"
roles:
  agent: {permissions: [contacts.read]}
routes:
  - name: contacts.export
    upstream: crm
    methods: [GET]
    path: "/api/v1/accounts/{account_id}/contacts/export"
    permission: contacts.export
  - name: contacts.list
    upstream: crm
    methods: [GET]
    path: "/api/v1/accounts/{account_id}/contacts"
    permission: contacts.read
rate_limits:
  store: redis
  redis: {url: "${REDIS_URL}", key_prefix: "test:cw:", timeout: 200ms}
alerts:
  sinks:
    - {name: soc, type: webhook, url: "${HOOK}", timeout: 2s}
  rules:
    - name: repeated-denials
      when: {decision: deny, reasons: [permission_denied]}
      key: sub
      threshold: 5
      window: 10m
      sinks: [soc]
    # One alert per marker caller: a gateway's marker arrives after every
    # alert its earlier requests raised (its tally and courier keep order).
    - {name: marker, when: {routes: [contacts.list]}, key: sub, threshold: 1, window: 1h, sinks: [soc]}
audit: {path: "${AUDIT}"}
"#;

const EXPORT: &str = "/api/v1/accounts/1/contacts/export";
const LIST: &str = "/api/v1/accounts/1/contacts";

struct Replicas {
    _up: EchoUpstream,
    idp: Arc<Idp>,
    hook: Receiver,
    a: TestGateway,
    b: TestGateway,
}

/// Two gateways with one Redis and one webhook receiver.
async fn replicas(redis: &RedisServer) -> Replicas {
    let up = EchoUpstream::start().await;
    let idp = Idp::start().await;
    let hook = Receiver::start().await;
    let vars = [
        ("UP", up.url()),
        ("JWKS", idp.jwks_url()),
        ("HOOK", hook.url()),
        ("REDIS_URL", redis.url()),
    ];
    let a = harness::start(CONFIG, &vars).await;
    let b = harness::start(CONFIG, &vars).await;
    Replicas {
        _up: up,
        idp,
        hook,
        a,
        b,
    }
}

impl Replicas {
    /// `n` denied exports by `who` through `gw`.
    async fn deny(&self, gw: &TestGateway, who: &str, n: usize) {
        let token = self.idp.token(who, &["agent"], json!({}));
        for i in 0..n {
            let resp = gw
                .client()
                .get(gw.url(EXPORT))
                .bearer_auth(&token)
                .send()
                .await
                .expect("request");
            assert_eq!(
                resp.status(),
                403,
                "{who}'s export {i} lacks contacts.export"
            );
        }
    }

    /// After `records` requests on `gw` were audited (each is counted
    /// before its record is written), one marker request per gateway; then
    /// every POST up to both markers, markers left out.
    async fn alerts_until_markers(&mut self, records: (usize, usize)) -> Vec<Value> {
        for (gw, n, who) in [
            (&self.a, records.0, "marker-a"),
            (&self.b, records.1, "marker-b"),
        ] {
            assert_eq!(gw.audit_records(n).await.len(), n, "every request audited");
            let token = self.idp.token(who, &["agent"], json!({}));
            let resp = gw
                .client()
                .get(gw.url(LIST))
                .bearer_auth(&token)
                .send()
                .await
                .expect("marker");
            assert_eq!(resp.status(), 200, "the marker request is allowed");
        }
        let mut markers = 0;
        let mut alerts = Vec::new();
        while markers < 2 {
            let (_, alert) = self.hook.next().await;
            if alert["rule"] == "marker" {
                markers += 1;
            } else {
                alerts.push(alert);
            }
        }
        alerts
    }
}

/// The sum of `chatwarden_alert_store_errors_total` over its kinds.
fn alert_store_errors(metrics: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("chatwarden_alert_store_errors_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test]
async fn denials_split_across_two_gateways_raise_exactly_one_alert() {
    let redis = RedisServer::start().await;
    let mut r = replicas(&redis).await;
    r.deny(&r.a, "mallory", 3).await;
    r.deny(&r.b, "mallory", 2).await;

    let alerts = r.alerts_until_markers((3, 2)).await;
    assert_eq!(
        alerts.len(),
        1,
        "3 denials on A and 2 on B reach the threshold of 5 once, not once per gateway: {alerts:#?}"
    );
    let alert = &alerts[0];
    assert_eq!(
        (
            &alert["rule"],
            &alert["value"],
            &alert["count"],
            &alert["threshold"]
        ),
        (
            &json!("repeated-denials"),
            &json!("mallory"),
            &json!(5),
            &json!(5)
        ),
        "{alert}"
    );
    let mut ids: Vec<Value> = Vec::new();
    for gw in [&r.a, &r.b] {
        for rec in gw.audit_records(0).await {
            if rec["sub"] == "mallory" {
                ids.push(rec["request_id"].clone());
            }
        }
    }
    let mut sampled: Vec<Value> = alert["request_ids"]
        .as_array()
        .expect("request ids")
        .clone();
    sampled.sort_by_key(|v| v.to_string());
    ids.sort_by_key(|v| v.to_string());
    assert_eq!(
        sampled, ids,
        "the alert names the requests of both gateways"
    );
    assert!(r.hook.rx.try_recv().is_err(), "nothing else was delivered");
    for gw in [&r.a, &r.b] {
        let text = gw.metrics().await;
        assert_eq!(
            alert_store_errors(&text),
            0,
            "Redis answered every event:\n{text}"
        );
    }
}

#[tokio::test]
async fn below_the_threshold_across_gateways_no_alert() {
    let redis = RedisServer::start().await;
    let mut r = replicas(&redis).await;
    r.deny(&r.a, "eve", 2).await;
    r.deny(&r.b, "eve", 2).await;
    let alerts = r.alerts_until_markers((2, 2)).await;
    assert!(alerts.is_empty(), "4 denials stay below 5: {alerts:#?}");
}

#[tokio::test]
async fn without_redis_each_replica_counts_and_fires_on_its_own() {
    let mut redis = RedisServer::start().await;
    let mut r = replicas(&redis).await;
    redis.stop();
    // Mallory's five denials all reach A: A's own counters fire. Trudy's
    // are split 3 + 2: neither replica alone reaches 5.
    r.deny(&r.a, "mallory", 5).await;
    r.deny(&r.a, "trudy", 3).await;
    r.deny(&r.b, "trudy", 2).await;

    let alerts = r.alerts_until_markers((8, 2)).await;
    assert_eq!(alerts.len(), 1, "one alert, from A's counters: {alerts:#?}");
    assert_eq!(
        (&alerts[0]["rule"], &alerts[0]["value"], &alerts[0]["count"]),
        (&json!("repeated-denials"), &json!("mallory"), &json!(5)),
        "{}",
        alerts[0]
    );
    for (name, gw) in [("A", &r.a), ("B", &r.b)] {
        let text = gw.metrics().await;
        assert!(
            alert_store_errors(&text) > 0,
            "{name} counts the events Redis did not take:\n{text}"
        );
        assert!(
            text.contains("chatwarden_alerts_total{rule=\"marker\"} 1"),
            "{name}'s marker fired from local counters:\n{text}"
        );
    }
}

// ---- the script on a real server, without the proxy ----

/// 2025-11-24T16:00:00Z: a whole number of 1-minute and 10-minute windows.
const START: i64 = 1_764_000_000;

fn store(redis: &RedisServer, prefix: &str) -> RedisStore {
    RedisStore::new(RedisSettings {
        target: RedisTarget::parse(&redis.url()).expect("url"),
        key_prefix: prefix.into(),
        timeout: Duration::from_secs(2),
        tls: None,
    })
}

fn rule(name: &str, threshold: u32, window_secs: u64) -> Arc<AlertRule> {
    rule_when(name, Matcher::default(), threshold, window_secs)
}

fn rule_when(name: &str, when: Matcher, threshold: u32, window_secs: u64) -> Arc<AlertRule> {
    Arc::new(AlertRule {
        name: RuleName(name.into()),
        trigger: Trigger::new(
            when,
            KeyKind::Subject,
            threshold,
            Duration::from_secs(window_secs),
            1_000,
        )
        .expect("trigger"),
        sinks: Vec::new(),
    })
}

/// Counts one event of `mallory` per time in `ms` (request ids `{prefix}0`,
/// `{prefix}1`, …), none of which may fire.
async fn count_without_firing(
    s: &RedisStore,
    rule: &Arc<AlertRule>,
    ms: &[i64],
    prefix: &str,
    why: &str,
) {
    for (i, ms) in ms.iter().enumerate() {
        let e = event(rule, "mallory", *ms, &format!("{prefix}{i}"));
        assert!(
            shared::count(s, &e).await.expect("count").is_none(),
            "event {i} fired: {why}"
        );
    }
}

fn event(rule: &Arc<AlertRule>, key: &str, ms: i64, id: &str) -> SharedEvent {
    SharedEvent {
        rule: rule.clone(),
        key: key.into(),
        ts: OffsetDateTime::from_unix_timestamp_nanos(i128::from(START * 1000 + ms) * 1_000_000)
            .expect("time"),
        request_id: id.into(),
        config_version: "v1".into(),
    }
}

#[tokio::test]
async fn the_script_decides_event_by_event_as_the_in_process_counters_do() {
    let redis = RedisServer::start().await;
    let store = store(&redis, "sem:");
    let rule = rule("denials", 4, 60);
    let local = RuleCounters::new(rule.trigger.clone());
    // A pseudo-random walk over about 20 windows: bursts, lulls, events
    // logged a little late, three callers.
    let mut x: u32 = 0x9e37_79b9;
    let mut t: i64 = 0;
    let mut fired = 0;
    for i in 0..600 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        t += match x % 10 {
            0 => 45_000,
            1 => -1_500,
            2..=4 => 7_000,
            _ => 900,
        };
        let t = t.max(0);
        let who = ["mallory", "trudy", "eve"][(x as usize >> 8) % 3];
        let e = event(&rule, who, t, &format!("r{i}"));
        let here = local
            .count_at(&rule.name.0, who, e.ts, &e.request_id, &e.config_version)
            .fired;
        let there = shared::count(&store, &e).await.expect("Redis answers");
        assert_eq!(there, here, "event {i} ({who} at +{t}ms)");
        fired += usize::from(here.is_some());
    }
    assert!(fired >= 10, "the walk crosses the threshold often: {fired}");
}

/// One denial by mallory at `ms` counted in `s`.
async fn at(
    s: &RedisStore,
    rule: &Arc<AlertRule>,
    ms: i64,
    id: &str,
) -> Option<chatwarden::alert::Alert> {
    let e = event(rule, "mallory", ms, id);
    shared::count(s, &e).await.expect("Redis answers")
}

#[tokio::test]
async fn one_replica_fires_then_the_key_is_quiet_for_a_window() {
    let redis = RedisServer::start().await;
    let (a, b) = (store(&redis, "q:"), store(&redis, "q:"));
    let rule = rule("denials", 3, 60);

    assert!(at(&a, &rule, 0, "a1").await.is_none());
    assert!(at(&b, &rule, 1_000, "b1").await.is_none());
    let alert = at(&a, &rule, 2_000, "a2")
        .await
        .expect("the third event fires, on A");
    assert_eq!(alert.count, 3);
    assert_eq!(alert.request_ids, ["a1", "b1", "a2"]);
    assert_eq!((alert.last - alert.first).whole_milliseconds(), 2_000);
    for (i, s) in [&b, &a, &b, &a].into_iter().enumerate() {
        let ms = 3_000 + 10_000 * i as i64;
        assert!(
            at(s, &rule, ms, "quiet").await.is_none(),
            "within a window of the alert, neither replica fires (event {i})"
        );
    }
    // 62s: the quiet minute is over; 60s–62s holds 1 event in the new
    // window plus the old window's 4 weighted by 58/60 (3.87, floored).
    let again = at(&b, &rule, 62_000, "b9")
        .await
        .expect("fires again after the quiet window");
    assert_eq!(again.count, 1 + 3, "{again:?}");

    let key = shared::redis_key("q:", "denials", "mallory");
    let ttl = match redis.command(&[b"PTTL", &key]).await {
        Reply::Integer(ms) => ms,
        other => panic!("PTTL answers an integer: {other:?}"),
    };
    assert!(
        (100_000..=120_000).contains(&ttl),
        "the key expires two windows after its last event: {ttl}ms"
    );
}

#[tokio::test]
async fn a_changed_rule_counts_afresh_in_redis() {
    let redis = RedisServer::start().await;
    let s = store(&redis, "c:");
    let three = rule("denials", 3, 60);
    count_without_firing(&s, &three, &[0, 1_000], "r", "below the threshold of 3").await;
    let two = rule("denials", 2, 60);
    let e = event(&two, "mallory", 2_000, "r2");
    assert!(
        shared::count(&s, &e).await.expect("count").is_none(),
        "the new threshold starts from zero, not from the old rule's 2"
    );
    let e = event(&two, "mallory", 3_000, "r3");
    let alert = shared::count(&s, &e)
        .await
        .expect("count")
        .expect("fires at 2");
    assert_eq!(alert.request_ids, ["r2", "r3"]);
}

#[tokio::test]
async fn a_rule_counting_other_requests_counts_afresh_in_redis() {
    let redis = RedisServer::start().await;
    let s = store(&redis, "w:");
    let exports = |routes: &[&str]| Matcher {
        routes: routes.iter().map(|r| r.to_string()).collect(),
        ..Matcher::default()
    };
    let before = rule_when("bulk", exports(&["contacts.export"]), 3, 60);
    count_without_firing(&s, &before, &[0, 1_000], "r", "below the threshold of 3").await;
    // Same name, threshold and window; only `when` changed.
    let after = rule_when(
        "bulk",
        exports(&["contacts.export", "conversations.export"]),
        3,
        60,
    );
    count_without_firing(
        &s,
        &after,
        &[2_000, 3_000],
        "s",
        "under the new `when` it must not add to the old rule's 2",
    )
    .await;
    let e = event(&after, "mallory", 4_000, "s2");
    let alert = shared::count(&s, &e)
        .await
        .expect("count")
        .expect("fires at the third event under the new rule");
    assert_eq!(alert.request_ids, ["s0", "s1", "s2"]);
}
