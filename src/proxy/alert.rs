//! The logging phase's hand-off to the alert rules: the finished request's
//! audit record, seen as an alert event, and what fired counted in the
//! metrics. With the Redis store, matching events are only queued here:
//! counting happens off the request path (the tally), as does delivery
//! (the courier).

use std::borrow::Cow;
use std::net::IpAddr;

use crate::alert::{Alerting, Event, Outcome, QUEUE_FULL};
use crate::audit::AuditRecord;
use crate::config::Snapshot;
use crate::limit::LimitStore;
use crate::metrics::Metrics;
use crate::request::client_ip::counted_client;

/// Counts the request against the snapshot's alert rules.
pub fn observe(alerting: &Alerting, metrics: &Metrics, snapshot: &Snapshot, rec: &AuditRecord) {
    if snapshot.alerts.is_empty() {
        return;
    }
    let client = counted(&rec.client_ip);
    let event = Event {
        ts: rec.ts,
        request_id: &rec.request_id,
        config_version: &rec.config_version,
        decision: rec.decision,
        reason: rec.reason,
        route: rec.route.as_deref(),
        sub: rec.sub.as_deref(),
        client_ip: &client,
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

/// The client an `ip`-keyed rule counts, as rate limits do: an IPv6
/// address by its /64 (see [`counted_client`]). IPv4 text, the usual case,
/// is used as it is.
fn counted(client_ip: &str) -> Cow<'_, str> {
    if !client_ip.contains(':') {
        return Cow::Borrowed(client_ip);
    }
    match client_ip.parse::<IpAddr>() {
        Ok(ip) => Cow::Owned(counted_client(ip).to_string()),
        Err(_) => Cow::Borrowed(client_ip),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_rules_count_an_ipv6_host_by_its_slash_64() {
        assert_eq!(counted("2001:db8:0:7:1:2:3:4"), "2001:db8:0:7::");
        assert_eq!(counted("2001:db8:0:7::9"), "2001:db8:0:7::");
        assert_eq!(counted("203.0.113.9"), "203.0.113.9");
        assert_eq!(counted(""), "");
    }
}
