//! The shared counters off the request path: the logging phase puts each
//! matching event in a bounded queue without waiting ([`Relay::send`]),
//! and one task (the [`Tally`], run by `server` as a background service)
//! counts them in Redis in arrival order and hands fired alerts to the
//! courier.
//!
//! When Redis gives no answer (down, slower than the store's timeout, a
//! reply that makes no sense, or resting after such a failure) the event is
//! counted in this process's counters instead, as without Redis: alerts
//! still fire, per replica, until Redis is back. So is an event that finds
//! the queue full. Either is counted in
//! `chatwarden_alert_store_errors_total{kind}` and logged at warn, at most
//! once per [`crate::limit::store::WARN_EVERY`].

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, watch};

use super::counter::AlertCounters;
use super::courier::{Fired, Outbox};
use super::payload::Alert;
use super::rule::AlertRule;
use super::shared::{self, SharedEvent};
use crate::limit::redis::RedisStore;
use crate::limit::store::LogThrottle;
use crate::metrics::Metrics;

/// Matching events that may wait to be counted in Redis.
pub const EVENTS: usize = 4096;

/// The metrics label of an event that found the queue full.
pub const QUEUE_FULL: &str = "queue_full";

/// One event for the shared counters, and the store of the snapshot that
/// saw it (a reload that changes the store leaves queued events where
/// they were going).
pub struct Queued {
    pub store: Arc<RedisStore>,
    pub event: SharedEvent,
}

/// The request path's end of the queue.
#[derive(Clone)]
pub struct Relay {
    tx: mpsc::Sender<Queued>,
}

/// The counting end; `run` it once.
pub struct Tally {
    rx: tokio::sync::Mutex<mpsc::Receiver<Queued>>,
    counters: Arc<AlertCounters>,
    outbox: Outbox,
    metrics: Arc<Metrics>,
}

/// A queue of `capacity` events counted into `counters` (the fallback)
/// or Redis, fired alerts going to `outbox`.
pub fn relay(
    capacity: usize,
    counters: Arc<AlertCounters>,
    outbox: Outbox,
    metrics: Arc<Metrics>,
) -> (Relay, Tally) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    (
        Relay { tx },
        Tally {
            rx: tokio::sync::Mutex::new(rx),
            counters,
            outbox,
            metrics,
        },
    )
}

impl Relay {
    /// Queues `queued` without waiting; gives it back if the queue is full
    /// (or the task gone), for the caller to count here.
    pub fn send(&self, queued: Queued) -> Result<(), Queued> {
        self.tx.try_send(queued).map_err(|e| match e {
            mpsc::error::TrySendError::Full(q) | mpsc::error::TrySendError::Closed(q) => q,
        })
    }
}

impl Tally {
    /// Counts queued events until `shutdown` changes.
    pub async fn run(&self, mut shutdown: watch::Receiver<bool>) {
        let mut rx = self.rx.lock().await;
        loop {
            let queued = tokio::select! {
                q = rx.recv() => q,
                _ = shutdown.changed() => return,
            };
            let Some(queued) = queued else { return };
            // Bounded by the store's timeout.
            self.count(&queued).await;
        }
    }

    /// Counts one event in Redis, or here when Redis gives no answer.
    pub async fn count(&self, queued: &Queued) {
        let event = &queued.event;
        match shared::count(&queued.store, event).await {
            Ok(Some(alert)) => hand_off(&self.outbox, &self.metrics, &event.rule, alert),
            Ok(None) => {}
            Err(e) => {
                self.metrics.alerts.record_store_error(e.kind());
                if let Some(suppressed) = WARNINGS.admit(Instant::now()) {
                    tracing::warn!(
                        redis = %queued.store.settings().target,
                        error = %e,
                        suppressed,
                        "shared alert counters failed; this replica's own counters count until Redis is back"
                    );
                }
                count_here(&self.counters, &self.outbox, &self.metrics, event);
            }
        }
    }
}

/// Counts `event` in this process's counters (the shared store could not),
/// raising the alert if it fires here.
pub fn count_here(
    counters: &AlertCounters,
    outbox: &Outbox,
    metrics: &Metrics,
    event: &SharedEvent,
) {
    let rule = &event.rule;
    let obs = counters.counters(rule).count_at(
        &rule.name.0,
        &event.key,
        event.ts,
        &event.request_id,
        &event.config_version,
    );
    if obs.evicted > 0 {
        metrics.alerts.record_evicted(&rule.name.0, obs.evicted);
    }
    if let Some(alert) = obs.fired {
        hand_off(outbox, metrics, rule, alert);
    }
}

/// A fired alert to the courier, counted.
fn hand_off(outbox: &Outbox, metrics: &Metrics, rule: &AlertRule, alert: Alert) {
    tracing::debug!(rule = %rule.name.0, "alert rule fired");
    metrics.alerts.record_fired(&rule.name.0);
    let fired = Fired {
        alert,
        sinks: rule.sinks.clone(),
    };
    if !outbox.send(fired) {
        tracing::warn!(rule = %rule.name.0, "alert dropped: the delivery queue is full");
        metrics.alerts.record_dropped();
    }
}

/// One warning per process per interval about the shared alert counters,
/// apart from the rate limits' (their failures are logged on their own).
static WARNINGS: LogThrottle = LogThrottle::new();
