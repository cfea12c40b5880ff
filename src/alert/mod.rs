//! Alerts on unusual activity: rules that count matching requests per key
//! (a caller, a client address, a route) within a window, and fire once
//! when the count reaches a threshold.
//!
//! - `rule`: what a rule matches and counts (pure data, built by `config`);
//! - `counter`: the per-(rule, key) window counters, kept across reloads;
//! - `payload`: the fired alert as sinks receive it;
//! - `courier`: delivery off the request path (a bounded queue drained by
//!   one task: `log` lines and webhook POSTs).
//!
//! No pingora and no config loader here: the proxy's logging phase hands
//! an [`Event`] to [`Alerting::observe`]; `server` runs the [`Courier`] as a
//! background service.

mod counter;
mod courier;
mod payload;
mod relay;
mod rule;
pub mod shared;

pub use counter::{AlertCounters, Observation, RuleCounters, SAMPLE_IDS};
pub use courier::{outbox, Courier, Fired, Outbox, QUEUE};
pub use payload::Alert;
pub use relay::{relay, Queued, Relay, Tally, EVENTS, QUEUE_FULL};
pub use rule::{
    AlertError, AlertRule, Event, KeyKind, Matcher, RuleName, Sink, SinkKind, SinkName, Trigger,
    Webhook, MAX_THRESHOLD, MAX_WINDOW, MIN_WINDOW,
};

use std::sync::Arc;

use crate::limit::redis::RedisStore;
use crate::metrics::Metrics;

/// What the proxy holds for the life of the process: the in-process
/// counters (they outlive snapshots), the queue to the shared counters and
/// the queue to the courier.
pub struct Alerting {
    pub counters: Arc<AlertCounters>,
    pub outbox: Outbox,
    relay: Relay,
}

impl Alerting {
    /// The alerting state and the task that counts events in Redis (run
    /// it as a background service).
    pub fn new(outbox: Outbox, metrics: Arc<Metrics>) -> (Alerting, Tally) {
        Alerting::with_queue(EVENTS, outbox, metrics)
    }

    /// [`new`](Self::new) with a queue of `capacity` events for the tally.
    pub fn with_queue(capacity: usize, outbox: Outbox, metrics: Arc<Metrics>) -> (Alerting, Tally) {
        let counters = Arc::new(AlertCounters::default());
        let (relay, tally) = relay::relay(capacity, counters.clone(), outbox.clone(), metrics);
        (
            Alerting {
                counters,
                outbox,
                relay,
            },
            tally,
        )
    }

    /// Counts `event` against every rule of the request's snapshot: in
    /// this process's counters, or, when the snapshot's store is Redis
    /// (`shared`), by queuing it for the [`Tally`] without waiting. Fired
    /// alerts go to the courier. `on` hears what happened per rule (fired,
    /// dropped because the queue was full, keys evicted, counted here
    /// because the shared queue was full), for metrics. A request that
    /// matches no rule takes no lock and allocates nothing.
    pub fn observe(
        &self,
        rules: &[Arc<AlertRule>],
        event: &Event<'_>,
        shared: Option<&Arc<RedisStore>>,
        mut on: impl FnMut(&AlertRule, Outcome),
    ) {
        let Some(store) = shared else {
            self.counters
                .observe(rules, event, |rule, obs| self.report(rule, obs, &mut on));
            return;
        };
        for rule in rules {
            if !rule.trigger.when.matches(event) {
                continue;
            }
            let Some(key) = rule.trigger.key.of(event) else {
                continue;
            };
            let queued = Queued {
                store: store.clone(),
                event: shared::SharedEvent {
                    rule: rule.clone(),
                    key: key.to_owned(),
                    ts: event.ts,
                    request_id: event.request_id.to_owned(),
                    config_version: event.config_version.to_owned(),
                },
            };
            if self.relay.send(queued).is_err() {
                on(rule, Outcome::CountedHere);
                let obs = self.counters.counters(rule).count(&rule.name.0, key, event);
                self.report(rule, obs, &mut on);
            }
        }
    }

    fn report(&self, rule: &AlertRule, obs: Observation, on: &mut impl FnMut(&AlertRule, Outcome)) {
        if obs.evicted > 0 {
            on(rule, Outcome::Evicted(obs.evicted));
        }
        if let Some(alert) = obs.fired {
            let fired = Fired {
                alert,
                sinks: rule.sinks.clone(),
            };
            on(rule, Outcome::Fired);
            if !self.outbox.send(fired) {
                on(rule, Outcome::Dropped);
            }
        }
    }
}

/// What happened to one rule for one event, beyond counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The rule reached its threshold: an alert was raised.
    Fired,
    /// The alert was raised but the courier's queue was full: it is lost.
    Dropped,
    /// Keys forgotten before their window ran out, to stay under `max_keys`.
    Evicted(u64),
    /// The queue to the shared counters was full: the event was counted in
    /// this process instead.
    CountedHere,
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::alert::rule::tests::event;
    use crate::decision::{Reason, Verdict};
    use crate::limit::redis::{RedisSettings, RedisTarget};

    #[test]
    fn with_redis_events_are_queued_and_a_full_queue_counts_here() {
        let metrics = Arc::new(Metrics::default());
        let (out, _courier) = outbox(4, metrics.clone());
        // The tally is not run: the one-event queue stays full.
        let (alerting, _tally) = Alerting::with_queue(1, out, metrics);
        // No I/O until used, and nothing here uses it.
        let store = Arc::new(RedisStore::new(RedisSettings {
            target: RedisTarget::parse("redis://127.0.0.1:1").unwrap_or_else(|e| panic!("{e}")),
            key_prefix: "t:".into(),
            timeout: Duration::from_millis(50),
            tls: None,
        }));
        let trigger = Trigger::new(
            Matcher {
                decision: Some(Verdict::Deny),
                ..Matcher::default()
            },
            KeyKind::Subject,
            2,
            Duration::from_secs(60),
            100,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let rules = vec![Arc::new(AlertRule {
            name: RuleName("denials".into()),
            trigger,
            sinks: Vec::new(),
        })];
        let denied = event(
            Some("mallory"),
            Verdict::Deny,
            Some(Reason::PermissionDenied),
        );
        let allowed = event(Some("mallory"), Verdict::Allow, None);
        let mut heard = Vec::new();
        let mut observe = |e: &Event<'_>| {
            alerting.observe(&rules, e, Some(&store), |_, o| heard.push(o));
        };
        observe(&allowed);
        observe(&denied);
        observe(&allowed);
        observe(&denied);
        observe(&denied);
        assert_eq!(
            heard,
            [Outcome::CountedHere, Outcome::CountedHere, Outcome::Fired],
            "unmatched requests are not queued; the first denial is, the next two find the \
             queue full and are counted here, where the second reaches the threshold"
        );
        assert!(
            alerting.counters.counters(&rules[0]).len() == 1,
            "the fallback counted in this process"
        );
    }
}
