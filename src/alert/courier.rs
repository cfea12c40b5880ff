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

    /// A webhook receiver on port 0 that answers each POST with the next
    /// status of `statuses` (then 200), and counts them.
    async fn receiver(statuses: Vec<u16>) -> (reqwest::Url, Arc<std::sync::Mutex<Vec<String>>>) {
        use http_body_util::{BodyExt, Full};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
        let log = seen.clone();
        let statuses = Arc::new(std::sync::Mutex::new(statuses.into_iter()));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (log, statuses) = (log.clone(), statuses.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(
                        move |req: http::Request<hyper::body::Incoming>| {
                            let (log, statuses) = (log.clone(), statuses.clone());
                            async move {
                                let auth = req
                                    .headers()
                                    .get("authorization")
                                    .and_then(|v| v.to_str().ok())
                                    .unwrap_or_default()
                                    .to_string();
                                let body = req
                                    .into_body()
                                    .collect()
                                    .await
                                    .map(|b| b.to_bytes())
                                    .unwrap_or_default();
                                log.lock()
                                    .expect("lock")
                                    .push(format!("{auth} {}", String::from_utf8_lossy(&body)));
                                let status = statuses.lock().expect("lock").next().unwrap_or(200);
                                let mut resp = http::Response::new(Full::new(bytes::Bytes::new()));
                                *resp.status_mut() = StatusCode::from_u16(status).expect("status");
                                Ok::<_, std::convert::Infallible>(resp)
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        let url = reqwest::Url::parse(&format!("http://{addr}/hook")).expect("url");
        (url, seen)
    }

    fn to_webhook(mut f: Fired, url: reqwest::Url) -> Fired {
        let mut token = http::HeaderValue::from_static("Bearer soc");
        token.set_sensitive(true);
        f.sinks.push(Arc::new(Sink {
            name: SinkName("soc".into()),
            kind: SinkKind::Webhook(Webhook {
                url,
                headers: vec![(http::header::AUTHORIZATION, token)],
                timeout: Duration::from_secs(5),
            }),
        }));
        f
    }

    #[tokio::test]
    async fn a_failing_webhook_is_retried_and_a_refusal_is_not() {
        let metrics = Arc::new(Metrics::default());
        let (_, courier) = outbox(1, metrics.clone());
        let (url, seen) = receiver(vec![503]).await;
        courier.deliver(&to_webhook(fired(), url)).await;
        let posts = seen.lock().expect("lock").clone();
        assert_eq!(posts.len(), 2, "a 503, then the retry that succeeds");
        assert!(
            posts[1].starts_with("Bearer soc {\"rule\":\"r\",\"key\":\"ip\""),
            "the sink's header and the alert as JSON: {}",
            posts[1]
        );
        let failures = |m: &Metrics| {
            let text = m.render(&crate::metrics::External {
                audit_written: 0,
                audit_failed: 0,
                audit_refused: 0,
                config_version: String::new(),
                ready: true,
                audit_available: true,
                runtime_revocations: 0,
                revocation_sync_failures: 0,
                admin_crl_next_update: None,
            });
            text.contains("chatwarden_alert_delivery_failures_total{sink=\"soc\"} 1")
        };
        assert!(!failures(&metrics), "delivered in the end: no failure");

        let (url, seen) = receiver(vec![401]).await;
        courier.deliver(&to_webhook(fired(), url)).await;
        assert_eq!(
            seen.lock().expect("lock").len(),
            1,
            "a refusal is final: no retry"
        );
        assert!(failures(&metrics), "the failed delivery is counted");
    }

    /// Collects what a tracing subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_log_sink_writes_one_warn_line_on_its_target() {
        let out = Captured::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let mut f = fired();
        f.alert.request_ids = vec!["a1".into(), "b2".into()];
        tracing::subscriber::with_default(subscriber, || log(&f.sinks[0], &f.alert));
        let text = String::from_utf8(out.0.lock().expect("lock").clone()).expect("utf-8");
        assert_eq!(text.lines().count(), 1, "one line: {text}");
        for part in [
            "WARN chatwarden::alert",
            "rule=r",
            "key=\"ip\"",
            "value=203.0.113.9",
            "count=3",
            "request_ids=a1,b2",
            "sink=security-log",
        ] {
            assert!(text.contains(part), "expected `{part}` in: {text}");
        }
    }

    #[test]
    fn only_overload_and_failures_are_retried() {
        assert!(retryable(StatusCode::BAD_GATEWAY));
        assert!(retryable(StatusCode::TOO_MANY_REQUESTS));
        assert!(!retryable(StatusCode::UNAUTHORIZED), "a refusal stays one");
        assert!(!retryable(StatusCode::NOT_FOUND));
    }
}
