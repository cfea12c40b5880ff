//! Alert rules through the real proxy: repeated denials by one caller
//! raise exactly one alert, POSTed to a real webhook receiver with what an
//! operator needs (and no token); a caller below the threshold raises
//! none; the alert is counted on `/metrics`; a reload that leaves the rule
//! unchanged keeps counting.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::harness;
use crate::idp::Idp;
use crate::upstream::EchoUpstream;

const SOC_TOKEN: &str = "soc-token-0123456789";

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
  - {name: probe, upstream: crm, methods: [GET], path: /probe, auth: none}
alerts:
  sinks:
    - {name: security-log, type: log}
    - name: soc
      type: webhook
      url: "${HOOK}"
      headers: {Authorization: "Bearer ${SOC_TOKEN}"}
      timeout: 2s
  rules:
    - name: repeated-denials
      when: {decision: deny, reasons: [permission_denied, scope_denied]}
      key: sub
      threshold: 3
      window: 10m
      sinks: [security-log, soc]
    # Fires on the first request to /probe: the test's marker that every
    # alert raised before it has been delivered (the courier keeps order).
    - {name: probe, when: {routes: [probe]}, key: route, threshold: 1, window: 1h, sinks: [soc]}
audit: {path: "${AUDIT}"}
"#;

/// The gateway under CONFIG with its upstream, identity provider and the
/// SOC webhook receiver (the upstream is returned to keep it running).
async fn start() -> (
    EchoUpstream,
    std::sync::Arc<Idp>,
    Receiver,
    harness::TestGateway,
) {
    let up = EchoUpstream::start().await;
    let idp = Idp::start().await;
    let hook = Receiver::start().await;
    let gw = harness::start(
        CONFIG,
        &[
            ("UP", up.url()),
            ("JWKS", idp.jwks_url()),
            ("HOOK", hook.url()),
            ("SOC_TOKEN", SOC_TOKEN.to_string()),
        ],
    )
    .await;
    (up, idp, hook, gw)
}

#[tokio::test]
async fn repeated_denials_by_one_caller_post_exactly_one_alert() {
    let (_up, idp, mut hook, gw) = start().await;
    let client = gw.client();
    let export = gw.url("/api/v1/accounts/1/contacts/export");
    let mallory = idp.token("mallory", &["agent"], json!({}));
    let eve = idp.token("eve", &["agent"], json!({}));

    for (who, token, n) in [("eve", &eve, 2), ("mallory", &mallory, 5)] {
        for i in 0..n {
            let resp = client
                .get(&export)
                .bearer_auth(token)
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
    // Every record is written after its request was counted.
    let records = gw.audit_records(7).await;
    assert_eq!(records.len(), 7, "one record per request: {records:#?}");
    let resp = client.get(gw.url("/probe")).send().await.expect("probe");
    assert_eq!(resp.status(), 200);

    let (headers, alert) = hook.next().await;
    assert_eq!(
        headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default(),
        format!("Bearer {SOC_TOKEN}"),
        "the sink's configured header is sent"
    );
    assert_eq!(
        headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    let mallorys: Vec<&Value> = records.iter().filter(|r| r["sub"] == "mallory").collect();
    assert_eq!(mallorys.len(), 5);
    assert_eq!(
        alert,
        json!({
            "rule": "repeated-denials",
            "key": "sub",
            "value": "mallory",
            "count": 3,
            "threshold": 3,
            "window_secs": 600,
            "first": mallorys[0]["ts"],
            "last": mallorys[2]["ts"],
            "config_version": mallorys[0]["config_version"],
            "request_ids": [
                mallorys[0]["request_id"],
                mallorys[1]["request_id"],
                mallorys[2]["request_id"],
            ],
        }),
        "the third denial fires, with the requests to look up in the audit file"
    );
    let text = alert.to_string();
    assert!(
        !text.contains(&mallory) && !text.contains(SOC_TOKEN),
        "no token in the alert: {text}"
    );

    let (_, marker) = hook.next().await;
    assert_eq!(
        (&marker["rule"], &marker["value"]),
        (&json!("probe"), &json!("probe")),
        "after mallory's one alert comes the marker, not a second alert or one for eve: {marker}"
    );
    assert!(hook.rx.try_recv().is_err(), "nothing else was delivered");

    let metrics = gw.metrics().await;
    for line in [
        "chatwarden_alerts_total{rule=\"repeated-denials\"} 1",
        "chatwarden_alerts_total{rule=\"probe\"} 1",
        "chatwarden_alerts_dropped_total 0",
    ] {
        assert!(metrics.contains(line), "expected `{line}` in:\n{metrics}");
    }
}

#[tokio::test]
async fn counts_outlive_a_reload_that_leaves_the_rule_unchanged() {
    let (_up, idp, mut hook, gw) = start().await;
    let client = gw.client();
    let mallory = idp.token("mallory", &["agent"], json!({}));
    let deny = || {
        client
            .get(gw.url("/api/v1/accounts/1/contacts/export"))
            .bearer_auth(&mallory)
            .send()
    };
    for _ in 0..2 {
        assert_eq!(deny().await.expect("request").status(), 403);
    }
    // The ops team edits the file (a longer webhook timeout): a new
    // version, the same rule.
    let config = gw.dir.path().join("chatwarden.yaml");
    std::fs::write(&config, CONFIG.replace("timeout: 2s", "timeout: 3s")).expect("write");
    let resp = client
        .post(format!("http://{}/reload", gw.admin))
        .send()
        .await
        .expect("reload");
    assert_eq!(resp.status(), 200, "the edited file is published");
    assert_eq!(deny().await.expect("request").status(), 403);
    let records = gw.audit_records(4).await;
    let denials: Vec<&Value> = records.iter().filter(|r| r["sub"] == "mallory").collect();
    assert_eq!(denials.len(), 3, "{records:#?}");
    assert_ne!(
        denials[0]["config_version"], denials[2]["config_version"],
        "the third denial was decided under the new version"
    );
    assert_eq!(
        client
            .get(gw.url("/probe"))
            .send()
            .await
            .expect("probe")
            .status(),
        200
    );

    let (_, alert) = hook.next().await;
    assert_eq!(
        (&alert["rule"], &alert["value"], &alert["count"]),
        (&json!("repeated-denials"), &json!("mallory"), &json!(3)),
        "two denials before the reload and one after reach the threshold: {alert}"
    );
    assert_eq!(alert["config_version"], denials[2]["config_version"]);
    assert_eq!(
        alert["first"], denials[0]["ts"],
        "counted from before the reload"
    );
}

/// A webhook receiver on port 0: every POST's headers and JSON body go to
/// a channel the test waits on (bounded by a timeout, no sleeping).
pub(crate) struct Receiver {
    addr: std::net::SocketAddr,
    pub(crate) rx: mpsc::UnboundedReceiver<(http::HeaderMap, Value)>,
}

impl Receiver {
    pub(crate) async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the webhook receiver");
        let addr = listener.local_addr().expect("receiver address");
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let tx = tx.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let tx = tx.clone();
                        async move {
                            let headers = req.headers().clone();
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                            let _ = tx.send((headers, value));
                            Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Receiver { addr, rx }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}/hooks/chatwarden", self.addr)
    }

    pub(crate) async fn next(&mut self) -> (http::HeaderMap, Value) {
        tokio::time::timeout(Duration::from_secs(10), self.rx.recv())
            .await
            .expect("an alert should be POSTed within 10s")
            .expect("the receiver is running")
    }
}
