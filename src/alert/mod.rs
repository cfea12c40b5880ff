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
mod rule;

pub use counter::{AlertCounters, Observation, RuleCounters, SAMPLE_IDS};
pub use courier::{outbox, Courier, Fired, Outbox, QUEUE};
pub use payload::Alert;
pub use rule::{
    AlertError, AlertRule, Event, KeyKind, Matcher, RuleName, Sink, SinkKind, SinkName, Trigger,
    Webhook, MAX_THRESHOLD, MAX_WINDOW, MIN_WINDOW,
};

/// What the proxy holds for the life of the process: the counters (they
/// outlive snapshots) and the queue to the courier.
pub struct Alerting {
    pub counters: AlertCounters,
    pub outbox: Outbox,
}

impl Alerting {
    pub fn new(outbox: Outbox) -> Alerting {
        Alerting {
            counters: AlertCounters::default(),
            outbox,
        }
    }

    /// Counts `event` against every rule of the request's snapshot and
    /// hands fired alerts to the courier. `on` hears what happened per rule
    /// (fired, dropped because the queue was full, keys evicted), for
    /// metrics. A request that matches no rule takes no lock and allocates
    /// nothing.
    pub fn observe(
        &self,
        rules: &[std::sync::Arc<AlertRule>],
        event: &Event<'_>,
        mut on: impl FnMut(&AlertRule, Outcome),
    ) {
        self.counters.observe(rules, event, |rule, obs| {
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
        });
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
}
