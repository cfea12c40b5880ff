//! Delivery of fired alerts, off the request path: the logging phase puts
//! a fired alert in a bounded queue without waiting ([`Outbox::send`]; a
//! full queue drops the alert and the caller counts it), and one task (the
//! [`Courier`], run by `server` as a background service) delivers them in
//! order: each sink of the rule in turn, `log` sinks at once, webhooks as a
//! JSON POST with a per-attempt timeout and a small bounded retry.
//!
//! One task keeps alerts in order; a webhook that is down delays the
//! alerts behind it by at most `ATTEMPTS × timeout + backoff` each, and the
//! queue bound turns a long outage into counted drops rather than memory.

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use tokio::sync::{mpsc, watch};

use super::payload::{rfc3339_millis, Alert};
use super::rule::{Sink, SinkKind, Webhook};
use crate::metrics::Metrics;

/// Fired alerts that may wait for the courier.
pub const QUEUE: usize = 1024;

/// Attempts per webhook delivery, and the pauses between them.
const ATTEMPTS: usize = 3;
const BACKOFF: [Duration; ATTEMPTS - 1] = [Duration::from_millis(250), Duration::from_secs(1)];

/// A fired alert and where it goes.
#[derive(Debug)]
pub struct Fired {
    pub alert: Alert,
    pub sinks: Vec<Arc<Sink>>,
}

/// The request path's end of the queue.
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::Sender<Fired>,
}

/// The delivering end; `run` it once.
pub struct Courier {
    rx: tokio::sync::Mutex<mpsc::Receiver<Fired>>,
    client: Option<reqwest::Client>,
    metrics: Arc<Metrics>,
}

/// Why a webhook delivery failed (after its retries).
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("the HTTP client could not be built")]
    NoClient,
    /// The error text leaves the URL out: webhook URLs often carry a secret.
    #[error("{0}")]
    Send(String),
    #[error("the receiver answered {0}")]
    Status(u16),
}

/// A queue of `capacity` fired alerts; failed deliveries are counted in
/// `metrics`.
pub fn outbox(capacity: usize, metrics: Arc<Metrics>) -> (Outbox, Courier) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("chatwarden/", env!("CARGO_PKG_VERSION")))
        .build();
    let client = match client {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::error!(error = %e, "alert webhooks cannot be delivered: no HTTP client");
            None
        }
    };
    (
        Outbox { tx },
        Courier {
            rx: tokio::sync::Mutex::new(rx),
            client,
            metrics,
        },
    )
}

impl Outbox {
    /// Queues `fired` without waiting; `false` if the queue was full (or
    /// the courier gone) and the alert was dropped.
    pub fn send(&self, fired: Fired) -> bool {
        self.tx.try_send(fired).is_ok()
    }
}

impl Courier {
    /// Delivers queued alerts until `shutdown` changes.
    pub async fn run(&self, mut shutdown: watch::Receiver<bool>) {
        let mut rx = self.rx.lock().await;
        loop {
            let fired = tokio::select! {
                fired = rx.recv() => fired,
                _ = shutdown.changed() => return,
            };
            let Some(fired) = fired else { return };
            tokio::select! {
                () = self.deliver(&fired) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Every sink of one alert, in the rule's order.
    pub async fn deliver(&self, fired: &Fired) {
        let mut body = None;
        for sink in &fired.sinks {
            match &sink.kind {
                SinkKind::Log => log(sink, &fired.alert),
                SinkKind::Webhook(hook) => {
                    let body = body.get_or_insert_with(|| fired.alert.to_json());
                    if let Err(e) = self.post(hook, body).await {
                        tracing::warn!(sink = %sink.name.0, rule = %fired.alert.rule, error = %e, "alert not delivered");
                        self.metrics.alerts.record_delivery_failure(&sink.name.0);
                    }
                }
            }
        }
    }

    async fn post(&self, hook: &Webhook, body: &str) -> Result<(), DeliveryError> {
        let client = self.client.as_ref().ok_or(DeliveryError::NoClient)?;
        let mut failure = DeliveryError::NoClient;
        for attempt in 0..ATTEMPTS {
            if let Some(pause) = attempt.checked_sub(1).and_then(|i| BACKOFF.get(i)) {
                tokio::time::sleep(*pause).await;
            }
            let mut req = client
                .post(hook.url.clone())
                .timeout(hook.timeout)
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(body.to_owned());
            for (name, value) in &hook.headers {
                req = req.header(name, value);
            }
            failure = match req.send().await {
                Ok(resp) if resp.status().is_success() => return Ok(()),
                Ok(resp) if !retryable(resp.status()) => {
                    return Err(DeliveryError::Status(resp.status().as_u16()))
                }
                Ok(resp) => DeliveryError::Status(resp.status().as_u16()),
                Err(e) => DeliveryError::Send(e.without_url().to_string()),
            };
        }
        Err(failure)
    }
}

/// Worth another attempt: the receiver is overloaded or failing, not
/// refusing the alert.
fn retryable(status: StatusCode) -> bool {
    status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
}

/// The `log` sink: one structured warn line on `chatwarden::alert`.
fn log(sink: &Sink, alert: &Alert) {
    tracing::warn!(
        target: "chatwarden::alert",
        sink = %sink.name.0,
        rule = %alert.rule,
        key = alert.key.as_str(),
        value = %alert.value,
        count = alert.count,
        threshold = alert.threshold,
        window_secs = alert.window_secs,
        first = %rfc3339_millis(alert.first),
        last = %rfc3339_millis(alert.last),
        config_version = %alert.config_version,
        request_ids = %alert.request_ids.join(","),
        "alert: {} reached {} for {} {}",
        alert.rule,
        alert.count,
        alert.key.as_str(),
        alert.value,
    );
}

#[cfg(test)]
mod tests {
    use time::OffsetDateTime;

    use super::*;
    use crate::alert::rule::{KeyKind, SinkName};

    fn fired() -> Fired {
        Fired {
            alert: Alert {
                rule: "r".into(),
                key: KeyKind::ClientIp,
                value: "203.0.113.9".into(),
                count: 3,
                threshold: 3,
                window_secs: 60,
                first: OffsetDateTime::UNIX_EPOCH,
                last: OffsetDateTime::UNIX_EPOCH,
                config_version: "v".into(),
                request_ids: vec![],
            },
            sinks: vec![Arc::new(Sink {
                name: SinkName("security-log".into()),
                kind: SinkKind::Log,
            })],
        }
    }

    #[tokio::test]
    async fn a_full_queue_drops_instead_of_waiting() {
        let (out, courier) = outbox(2, Arc::new(Metrics::default()));
        assert!(out.send(fired()) && out.send(fired()), "room for two");
        assert!(!out.send(fired()), "the third is dropped, not awaited");
        let (stop, shutdown) = watch::channel(false);
        let run = tokio::spawn(async move { courier.run(shutdown).await });
        // The courier drains the queue (log sinks only: nothing to wait for).
        let mut sent = false;
        for _ in 0..1000 {
            if out.send(fired()) {
                sent = true;
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(sent, "the courier makes room again");
        let _ = stop.send(true);
        assert!(
            tokio::time::timeout(Duration::from_secs(5), run)
                .await
                .is_ok(),
            "the courier stops on shutdown"
        );
    }

    #[test]
    fn only_overload_and_failures_are_retried() {
        assert!(retryable(StatusCode::BAD_GATEWAY));
        assert!(retryable(StatusCode::TOO_MANY_REQUESTS));
        assert!(!retryable(StatusCode::UNAUTHORIZED), "a refusal stays one");
        assert!(!retryable(StatusCode::NOT_FOUND));
    }
}
