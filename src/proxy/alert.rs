//! The logging phase's hand-off to the alert rules: the finished request's
//! audit record, seen as an alert event, and what fired counted in the
//! metrics. With the Redis store, matching events are only queued here:
//! counting happens off the request path (the tally), as does delivery
//! (the courier).

use crate::alert::{Alerting, Event, Outcome, QUEUE_FULL};
use crate::audit::AuditRecord;
use crate::config::Snapshot;
use crate::limit::LimitStore;
use crate::metrics::Metrics;

/// Counts the request against the snapshot's alert rules.
pub fn observe(alerting: &Alerting, metrics: &Metrics, snapshot: &Snapshot, rec: &AuditRecord) {
    if snapshot.alerts.is_empty() {
        return;
    }
    let event = Event {
        ts: rec.ts,
        request_id: &rec.request_id,
        config_version: &rec.config_version,
        decision: rec.decision,
        reason: rec.reason,
        route: rec.route.as_deref(),
        sub: rec.sub.as_deref(),
        client_ip: &rec.client_ip,
        roles: &rec.roles,
    };
    let shared = match &snapshot.rate_limits {
        LimitStore::Redis(store) => Some(store),
        LimitStore::Memory => None,
    };
    alerting.observe(&snapshot.alerts, &event, shared, |rule, outcome| match outcome {
        Outcome::Fired => {
            tracing::debug!(request_id = %rec.request_id, rule = %rule.name.0, "alert rule fired");
            metrics.alerts.record_fired(&rule.name.0);
        }
        Outcome::Dropped => {
            tracing::warn!(rule = %rule.name.0, "alert dropped: the delivery queue is full");
            metrics.alerts.record_dropped();
        }
        Outcome::Evicted(n) => metrics.alerts.record_evicted(&rule.name.0, n),
        Outcome::CountedHere => metrics.alerts.record_store_error(QUEUE_FULL),
    });
}
