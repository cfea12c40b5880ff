//! The adapter's filters on an in-memory session (pingora implements its IO
//! trait for `tokio::io::duplex`): no sockets, no server, one phase at a
//! time.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use pingora_http::RequestHeader;
use pingora_proxy::{ProxyHttp, Session};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::{Gateway, RequestCtx};
use crate::audit::{audit_channel, AuditOptions, AuditTarget};
use crate::config::{load_str, ConfigStore};
use crate::decision::Reason;
use crate::metrics::Metrics;
use crate::revocation::RuntimeRevocations;

const CONFIG: &str = r#"
listeners: [{name: main, addr: "127.0.0.1:1"}]
upstreams:
  crm: {url: "http://127.0.0.1:2", headers: {api_access_token: crm-secret-000001}}
routes:
  - {name: contacts, upstream: crm, methods: [GET], path: "/api/v1/accounts/{account_id}/contacts", auth: none}
"#;

fn gateway(dir: &Path) -> Gateway {
    let snapshot = load_str(CONFIG, &dir.join("c.yaml"), &HashMap::new()).expect("config");
    let (audit, _writer) = audit_channel(
        AuditTarget::File(dir.join("audit.jsonl")),
        AuditOptions::default(),
    )
    .expect("audit");
    Gateway {
        store: ConfigStore::new(snapshot),
        audit,
        metrics: Arc::new(Metrics::default()),
        revocations: Arc::new(RuntimeRevocations::default()),
        jwks: None,
        lookups: pingora_core::connectors::http::Connector::new(None),
        limits: std::sync::Arc::new(crate::limit::Limits::default()),
        alerts: Arc::new(
            crate::alert::Alerting::new(
                crate::alert::outbox(1, Arc::new(Metrics::default())).0,
                Arc::new(Metrics::default()),
            )
            .0,
        ),
        signature_failures: Arc::default(),
    }
}

/// A session that has read `request`, and the client's end of the pipe.
async fn session(request: &[u8]) -> (Session, DuplexStream) {
    let (mut client, server) = tokio::io::duplex(64 * 1024);
    client.write_all(request).await.expect("write request");
    let mut s = Session::new_h1(Box::new(server));
    assert!(
        s.as_downstream_mut()
            .read_request()
            .await
            .expect("read request"),
        "a request should be read"
    );
    (s, client)
}

async fn run_request_phases(gw: &Gateway, s: &mut Session) -> (bool, RequestCtx) {
    let mut ctx = gw.new_ctx();
    gw.early_request_filter(s, &mut ctx)
        .await
        .expect("early filter");
    let done = gw
        .request_filter(s, &mut ctx)
        .await
        .expect("request filter");
    (done, ctx)
}

/// Everything the gateway wrote to the client, once the session is gone.
async fn response_text(s: Session, mut client: DuplexStream) -> String {
    drop(s);
    let mut out = Vec::new();
    let _ = client.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn an_unrouted_request_is_answered_by_the_filter_itself() {
    let dir = tempfile::tempdir().expect("dir");
    let gw = gateway(dir.path());
    let (mut s, client) = session(b"GET /admin HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let (done, ctx) = run_request_phases(&gw, &mut s).await;
    assert!(
        done,
        "request_filter must end the request: nothing goes upstream"
    );
    assert_eq!(ctx.refused, Some(Reason::NoRoute));
    assert!(ctx.admitted.is_none());
    let text = response_text(s, client).await;
    assert!(text.starts_with("HTTP/1.1 404"), "{text}");
    assert!(text.contains("\"reason\":\"no_route\""), "{text}");
    assert!(
        text.contains(&format!("x-request-id: {}", ctx.request_id)),
        "{text}"
    );
}

#[tokio::test]
async fn an_admitted_request_is_rewritten_for_the_upstream() {
    let dir = tempfile::tempdir().expect("dir");
    let gw = gateway(dir.path());
    let (mut s, _client) = session(
        b"GET /api//v1/accounts/1/x/../contacts?page=2 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\nCookie: a=b\r\napi_access_token: forged\r\nX-Chatwarden-Sub: root\r\n\r\n",
    )
    .await;
    let (done, mut ctx) = run_request_phases(&gw, &mut s).await;
    assert!(!done, "a routed request continues to the upstream");
    let mut upstream: RequestHeader = s.req_header().clone();
    gw.upstream_request_filter(&mut s, &mut upstream, &mut ctx)
        .await
        .expect("upstream filter");
    assert_eq!(
        upstream.uri.to_string(),
        "/api/v1/accounts/1/contacts?page=2",
        "the normalized path is forwarded"
    );
    let h = &upstream.headers;
    assert!(
        h.get("authorization").is_none() && h.get("cookie").is_none(),
        "client credentials are dropped"
    );
    assert!(
        h.get("x-chatwarden-sub").is_none(),
        "client identity headers are dropped"
    );
    assert_eq!(h.get_all("api_access_token").iter().count(), 1);
    assert_eq!(
        h.get("api_access_token").map(|v| v.as_bytes()),
        Some(&b"crm-secret-000001"[..])
    );
    assert_eq!(
        h.get("host").map(|v| v.as_bytes()),
        Some(&b"127.0.0.1:2"[..])
    );
    assert_eq!(
        h.get("x-request-id").and_then(|v| v.to_str().ok()),
        Some(ctx.request_id.as_str())
    );
}

#[tokio::test]
async fn the_forwarded_target_is_the_normalized_one_whether_or_not_it_changed() {
    let dir = tempfile::tempdir().expect("dir");
    let gw = gateway(dir.path());
    for (raw, expected) in [
        (
            "/api/v1/accounts/1/contacts?page=2",
            "/api/v1/accounts/1/contacts?page=2",
        ),
        ("/api/v1/accounts/1/contacts", "/api/v1/accounts/1/contacts"),
        (
            "/api/v1/accounts/%31/contacts?q=%7E",
            "/api/v1/accounts/1/contacts?q=%7E",
        ),
        (
            "/api/v1//accounts/1/contacts",
            "/api/v1/accounts/1/contacts",
        ),
    ] {
        let request = format!("GET {raw} HTTP/1.1\r\nHost: x\r\n\r\n");
        let (mut s, _client) = session(request.as_bytes()).await;
        let (done, mut ctx) = run_request_phases(&gw, &mut s).await;
        assert!(!done, "{raw} should be routed");
        let mut upstream: RequestHeader = s.req_header().clone();
        gw.upstream_request_filter(&mut s, &mut upstream, &mut ctx)
            .await
            .expect("upstream filter");
        assert_eq!(
            upstream.raw_path(),
            expected.as_bytes(),
            "{raw} should go upstream as {expected} (the query as received)"
        );
    }
}
