//! Prometheus counters and the request latency histogram, rendered in the
//! text exposition format by the admin listener.
//!
//! Label sets are small (route × verdict × reason) and fixed per config, so
//! a read-mostly map of atomics is enough: the first request of a label set
//! takes a write lock once; every later one a read lock and an atomic add.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Default)]
pub struct Metrics {
    /// Keyed by the route's shared name: counting a request allocates nothing.
    requests: Family<(Arc<str>, &'static str, &'static str)>,
    /// The route label of requests no route matched.
    no_route: Arc<str>,
    upstream_errors: Family<(String, &'static str)>,
    dry_run_denials: Family<String>,
    limit_store_errors: Family<&'static str>,
    /// Requests per latency bucket, not cumulative (one add per request);
    /// the last counts those above every bound. Rendering sums them up.
    latency_buckets: [AtomicU64; BUCKETS.len() + 1],
    latency_sum_micros: AtomicU64,
    /// Alert rules: fired, dropped, evicted keys, failed deliveries.
    pub alerts: AlertMetrics,
    /// Client connections: open, refused over a cap, closed for a slow head.
    pub connections: Arc<crate::connection::ConnectionMetrics>,
    /// The same for the admin listener, counted apart.
    pub admin_connections: Arc<crate::connection::ConnectionMetrics>,
    /// WebSocket streams open now (each holds an upstream connection).
    streams_open: AtomicI64,
    /// Messages of streams whose messages are read, per route: sent on
    /// (after masking) or dropped by the route's message filter.
    stream_messages: Family<(Arc<str>, &'static str)>,
}

/// Values that live elsewhere (the audit writer's own counters) and are
/// read at scrape time.
pub struct External {
    pub audit_written: u64,
    pub audit_failed: u64,
    pub audit_refused: u64,
    pub config_version: String,
    pub ready: bool,
    /// Whether the audit sink takes new requests' records (always under
    /// `backpressure`; under `fail_closed`, false while requests are
    /// refused with `audit_unavailable`).
    pub audit_available: bool,
    /// Runtime revocations held (admin `POST /revoke`, or learnt from the
    /// other replicas).
    pub runtime_revocations: usize,
    /// Syncs of runtime revocations with the shared store that failed.
    pub revocation_sync_failures: u64,
    /// When the first of `admin.tls.client_crl`'s lists is due to be
    /// replaced (Unix seconds), if it says.
    pub admin_crl_next_update: Option<i64>,
}

impl Metrics {
    /// Count one finished request.
    pub fn record_request(
        &self,
        route: Option<&Arc<str>>,
        verdict: &'static str,
        reason: Option<&'static str>,
        elapsed: Duration,
    ) {
        let route = Arc::clone(route.unwrap_or(&self.no_route));
        self.requests.inc((route, verdict, reason.unwrap_or("")));
        let secs = elapsed.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|bound| secs <= *bound)
            .unwrap_or(BUCKETS.len());
        self.latency_buckets[bucket].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.latency_sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// Count a request a dry-run (`mode: audit`) access rule would have
    /// denied: what enforcing the rule would cost, before it is enforced.
    pub fn record_dry_run(&self, rule: &str) {
        self.dry_run_denials.inc(rule.to_string());
    }

    /// Count a rate-limit check the shared store (Redis) could not decide,
    /// so this process's own counters did.
    pub fn record_limit_store_error(&self, kind: &'static str) {
        self.limit_store_errors.inc(kind);
    }

    /// Count one failed attempt to reach an upstream.
    pub fn record_upstream_error(&self, upstream: &str, kind: &'static str) {
        self.upstream_errors.inc((upstream.to_string(), kind));
    }

    /// A WebSocket stream was opened (its `101` is on its way).
    pub fn stream_opened(&self) {
        self.streams_open.fetch_add(1, Ordering::Relaxed);
    }

    /// A WebSocket stream ended, however it ended.
    pub fn stream_closed(&self) {
        self.streams_open.fetch_sub(1, Ordering::Relaxed);
    }

    /// Count the messages a read stream of `route` sent on and dropped.
    pub fn record_stream_messages(&self, route: &Arc<str>, sent: u64, dropped: u64) {
        for (outcome, n) in [("sent", sent), ("dropped", dropped)] {
            if n > 0 {
                self.stream_messages.add((Arc::clone(route), outcome), n);
            }
        }
    }

    /// Render everything in the Prometheus text format.
    pub fn render(&self, ext: &External) -> String {
        let mut out = String::with_capacity(4096);
        out.push_str("# HELP chatwarden_requests_total Requests by route, decision and reason.\n");
        out.push_str("# TYPE chatwarden_requests_total counter\n");
        for ((route, verdict, reason), n) in self.requests.snapshot() {
            let _ = writeln!(
                out,
                "chatwarden_requests_total{{route=\"{}\",decision=\"{verdict}\",reason=\"{reason}\"}} {n}",
                escape_label(&route)
            );
        }
        out.push_str(
            "# HELP chatwarden_request_duration_seconds Time from first byte to audit record.\n",
        );
        out.push_str("# TYPE chatwarden_request_duration_seconds histogram\n");
        let mut count = 0;
        for (i, bound) in BUCKETS.iter().enumerate() {
            count += self.latency_buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "chatwarden_request_duration_seconds_bucket{{le=\"{bound}\"}} {count}"
            );
        }
        count += self.latency_buckets[BUCKETS.len()].load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "chatwarden_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let sum = self.latency_sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "chatwarden_request_duration_seconds_sum {sum}");
        let _ = writeln!(out, "chatwarden_request_duration_seconds_count {count}");

        out.push_str("# HELP chatwarden_upstream_errors_total Failed upstream exchanges by upstream and kind.\n");
        out.push_str("# TYPE chatwarden_upstream_errors_total counter\n");
        for ((upstream, kind), n) in self.upstream_errors.snapshot() {
            let _ = writeln!(
                out,
                "chatwarden_upstream_errors_total{{upstream=\"{}\",kind=\"{kind}\"}} {n}",
                escape_label(&upstream)
            );
        }
        self.alerts.render(&mut out);
        self.connections.render(&mut out);
        self.admin_connections.render_admin(&mut out);
        out.push_str("# HELP chatwarden_dry_run_denials_total Requests a dry-run (mode: audit) access rule would have denied.\n");
        out.push_str("# TYPE chatwarden_dry_run_denials_total counter\n");
        for (rule, n) in self.dry_run_denials.snapshot() {
            let _ = writeln!(
                out,
                "chatwarden_dry_run_denials_total{{rule=\"{}\"}} {n}",
                escape_label(&rule)
            );
        }
        out.push_str("# HELP chatwarden_limit_store_errors_total Rate-limit checks the shared store (Redis) could not decide; this process's counters decided them.\n");
        out.push_str("# TYPE chatwarden_limit_store_errors_total counter\n");
        for (kind, n) in self.limit_store_errors.snapshot() {
            let _ = writeln!(
                out,
                "chatwarden_limit_store_errors_total{{kind=\"{kind}\"}} {n}"
            );
        }
        for (name, help, value) in [
            (
                "chatwarden_audit_records_written_total",
                "Audit records written to the sink.",
                ext.audit_written,
            ),
            (
                "chatwarden_audit_records_failed_total",
                "Audit records the sink could not write.",
                ext.audit_failed,
            ),
            (
                "chatwarden_audit_records_refused_total",
                "Audit records refused because the queue was full (fail_closed).",
                ext.audit_refused,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP chatwarden_config_info The loaded configuration.\n# TYPE chatwarden_config_info gauge\nchatwarden_config_info{{version=\"{}\"}} 1",
            escape_label(&ext.config_version)
        );
        if let Some(due) = ext.admin_crl_next_update {
            let _ = writeln!(
                out,
                "# HELP chatwarden_admin_client_crl_next_update_seconds When the first of admin.tls.client_crl's revocation lists is due to be replaced (Unix time): past it, a client certificate revoked since may be missing from it.\n# TYPE chatwarden_admin_client_crl_next_update_seconds gauge\nchatwarden_admin_client_crl_next_update_seconds {due}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP chatwarden_websocket_streams_open WebSocket streams open now.\n# TYPE chatwarden_websocket_streams_open gauge\nchatwarden_websocket_streams_open {}",
            self.streams_open.load(Ordering::Relaxed)
        );
        out.push_str("# HELP chatwarden_websocket_messages_total Messages of WebSocket streams read for their route's message_filter or redaction: sent on (masked) or dropped.\n");
        out.push_str("# TYPE chatwarden_websocket_messages_total counter\n");
        for ((route, outcome), n) in self.stream_messages.snapshot() {
            let _ = writeln!(
                out,
                "chatwarden_websocket_messages_total{{route=\"{}\",outcome=\"{outcome}\"}} {n}",
                escape_label(&route)
            );
        }
        let _ = writeln!(
            out,
            "# HELP chatwarden_ready Whether the gateway is serving.\n# TYPE chatwarden_ready gauge\nchatwarden_ready {}",
            u8::from(ext.ready)
        );
        let _ = writeln!(
            out,
            "# HELP chatwarden_audit_available Whether the audit sink takes records (0: fail_closed is refusing requests).\n# TYPE chatwarden_audit_available gauge\nchatwarden_audit_available {}",
            u8::from(ext.audit_available)
        );
        let _ = writeln!(
            out,
            "# HELP chatwarden_runtime_revocations Subjects revoked at runtime and still refused (admin POST /revoke, here or on another replica).\n# TYPE chatwarden_runtime_revocations gauge\nchatwarden_runtime_revocations {}\n# HELP chatwarden_revocation_sync_failures_total Syncs of runtime revocations with the shared Redis store that failed.\n# TYPE chatwarden_revocation_sync_failures_total counter\nchatwarden_revocation_sync_failures_total {}",
            ext.runtime_revocations, ext.revocation_sync_failures
        );
        out
    }
}

/// The alert rules' counters (`crate::alert`).
#[derive(Default)]
pub struct AlertMetrics {
    fired: Family<String>,
    dropped: AtomicU64,
    evicted: Family<String>,
    delivery_failures: Family<String>,
    store_errors: Family<&'static str>,
}

impl AlertMetrics {
    /// A rule reached its threshold.
    pub fn record_fired(&self, rule: &str) {
        self.fired.inc(rule.to_string());
    }

    /// A fired alert was lost: the courier's queue was full.
    pub fn record_dropped(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// A rule forgot `n` keys before their window ran out (`max_keys`).
    pub fn record_evicted(&self, rule: &str, n: u64) {
        self.evicted.add(rule.to_string(), n);
    }

    /// A sink could not take an alert (after its retries).
    pub fn record_delivery_failure(&self, sink: &str) {
        self.delivery_failures.inc(sink.to_string());
    }

    /// An alert event the shared store (Redis) did not count, so this
    /// process's counters did: the store's failure kind, or `queue_full`.
    pub fn record_store_error(&self, kind: &'static str) {
        self.store_errors.inc(kind);
    }

    fn render(&self, out: &mut String) {
        for (name, help, label, family) in [
            (
                "chatwarden_alerts_total",
                "Alerts fired, by rule.",
                "rule",
                &self.fired,
            ),
            (
                "chatwarden_alert_keys_evicted_total",
                "Keys an alert rule forgot before their window ran out (max_keys), by rule.",
                "rule",
                &self.evicted,
            ),
            (
                "chatwarden_alert_delivery_failures_total",
                "Alerts a sink could not take after retries, by sink.",
                "sink",
                &self.delivery_failures,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (value, n) in family.snapshot() {
                let _ = writeln!(out, "{name}{{{label}=\"{}\"}} {n}", escape_label(&value));
            }
        }
        let _ = writeln!(
            out,
            "# HELP chatwarden_alerts_dropped_total Alerts lost because the delivery queue was full.\n# TYPE chatwarden_alerts_dropped_total counter\nchatwarden_alerts_dropped_total {}",
            self.dropped.load(Ordering::Relaxed)
        );
        out.push_str("# HELP chatwarden_alert_store_errors_total Alert events the shared store (Redis) did not count (failure kind, or queue_full); this process's counters counted them.\n");
        out.push_str("# TYPE chatwarden_alert_store_errors_total counter\n");
        for (kind, n) in self.store_errors.snapshot() {
            let _ = writeln!(
                out,
                "chatwarden_alert_store_errors_total{{kind=\"{kind}\"}} {n}"
            );
        }
    }
}

/// A counter family keyed by its label values.
struct Family<K> {
    map: RwLock<BTreeMap<K, AtomicU64>>,
}

impl<K> Default for Family<K> {
    fn default() -> Self {
        Family {
            map: RwLock::new(BTreeMap::new()),
        }
    }
}

impl<K: Ord + Clone> Family<K> {
    fn inc(&self, key: K) {
        self.add(key, 1);
    }

    fn add(&self, key: K, n: u64) {
        // A poisoned lock only means another thread panicked mid-insert;
        // the map itself is still consistent, so keep counting.
        {
            let map = self.map.read().unwrap_or_else(|e| e.into_inner());
            if let Some(c) = map.get(&key) {
                c.fetch_add(n, Ordering::Relaxed);
                return;
            }
        }
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        map.entry(key).or_default().fetch_add(n, Ordering::Relaxed);
    }

    fn snapshot(&self) -> Vec<(K, u64)> {
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        map.iter()
            .map(|(k, v)| (k.clone(), v.load(Ordering::Relaxed)))
            .collect()
    }
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext() -> External {
        External {
            audit_written: 3,
            audit_failed: 0,
            audit_refused: 0,
            config_version: "abc".into(),
            ready: true,
            audit_available: true,
            runtime_revocations: 2,
            revocation_sync_failures: 1,
            admin_crl_next_update: None,
        }
    }

    #[test]
    fn latency_buckets_render_cumulative_with_the_slowest_in_inf_only() {
        let m = Metrics::default();
        for ms in [0, 1, 1, 40, 7_000] {
            m.record_request(None, "allow", None, Duration::from_millis(ms));
        }
        let text = m.render(&ext());
        for (le, n) in [
            ("0.0005", 1),
            ("0.001", 3),
            ("0.025", 3),
            ("0.05", 4),
            ("5", 4),
            ("+Inf", 5),
        ] {
            let line = format!("chatwarden_request_duration_seconds_bucket{{le=\"{le}\"}} {n}\n");
            assert!(text.contains(&line), "expected {line:?} in:\n{text}");
        }
        assert!(
            text.contains("chatwarden_request_duration_seconds_count 5\n"),
            "{text}"
        );
        assert!(
            text.contains("chatwarden_request_duration_seconds_sum 7.042\n"),
            "{text}"
        );
    }

    #[test]
    fn counts_requests_by_labels_and_renders_them() {
        let m = Metrics::default();
        let crm: Arc<str> = Arc::from("crm");
        m.record_request(Some(&crm), "allow", None, Duration::from_millis(2));
        m.record_request(Some(&crm), "allow", None, Duration::from_millis(3));
        m.record_request(None, "deny", Some("no_route"), Duration::from_micros(100));
        let text = m.render(&ext());
        assert!(
            text.contains(
                "chatwarden_requests_total{route=\"crm\",decision=\"allow\",reason=\"\"} 2"
            ),
            "two allowed crm requests should be counted:\n{text}"
        );
        assert!(
            text.contains(
                "chatwarden_requests_total{route=\"\",decision=\"deny\",reason=\"no_route\"} 1"
            ),
            "the no_route denial should be counted:\n{text}"
        );
        assert!(
            text.contains("chatwarden_request_duration_seconds_count 3"),
            "{text}"
        );
        assert!(
            text.contains("chatwarden_request_duration_seconds_bucket{le=\"0.0025\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("chatwarden_audit_records_written_total 3"),
            "{text}"
        );
        assert!(text.contains("chatwarden_audit_available 1"), "{text}");
        assert!(
            text.contains("chatwarden_runtime_revocations 2\n"),
            "{text}"
        );
        assert!(
            text.contains("chatwarden_revocation_sync_failures_total 1\n"),
            "{text}"
        );
        let down = m.render(&External {
            audit_available: false,
            ..ext()
        });
        assert!(down.contains("chatwarden_audit_available 0"), "{down}");
    }

    #[test]
    fn dry_run_denials_are_counted_per_rule() {
        let m = Metrics::default();
        m.record_dry_run("agents-office-network");
        m.record_dry_run("agents-office-network");
        m.record_dry_run("geo-trial");
        let text = m.render(&ext());
        assert!(
            text.contains("chatwarden_dry_run_denials_total{rule=\"agents-office-network\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("chatwarden_dry_run_denials_total{rule=\"geo-trial\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn alerts_are_counted_per_rule_and_drops_in_total() {
        let m = Metrics::default();
        m.alerts.record_fired("repeated-denials");
        m.alerts.record_fired("repeated-denials");
        m.alerts.record_dropped();
        m.alerts.record_evicted("invalid-tokens", 3);
        let text = m.render(&ext());
        assert!(
            text.contains("chatwarden_alerts_total{rule=\"repeated-denials\"} 2"),
            "{text}"
        );
        assert!(text.contains("chatwarden_alerts_dropped_total 1"), "{text}");
        assert!(
            text.contains("chatwarden_alert_keys_evicted_total{rule=\"invalid-tokens\"} 3"),
            "{text}"
        );
    }

    #[test]
    fn alert_events_the_shared_store_missed_are_counted_by_kind() {
        let m = Metrics::default();
        m.alerts.record_store_error("timeout");
        m.alerts.record_store_error("timeout");
        m.alerts.record_store_error("queue_full");
        let text = m.render(&ext());
        for line in [
            "# TYPE chatwarden_alert_store_errors_total counter",
            "chatwarden_alert_store_errors_total{kind=\"timeout\"} 2",
            "chatwarden_alert_store_errors_total{kind=\"queue_full\"} 1",
        ] {
            assert!(text.contains(line), "expected `{line}` in:\n{text}");
        }
        assert!(
            !text.contains("chatwarden_limit_store_errors_total{"),
            "apart from the rate limits' errors"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\"b\\c"), "a\\\"b\\\\c");
    }
}
