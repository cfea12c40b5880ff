//! Forwarding, default deny, header hygiene and upstream failures, each
//! checked on the upstream side as well as the client's.

use crate::harness::{self, TestGateway};
use crate::upstream::EchoUpstream;

pub const SECRET: &str = "crm-secret-value-0123456789";

pub fn config() -> String {
    r#"
listeners:
  - {name: main, addr: "${LISTEN}"}
admin: {addr: "${ADMIN}"}
network:
  trusted_proxies: [10.0.0.0/8]
upstreams:
  crm:
    url: ${UP_CRM}
    headers:
      x-api-key: ${CRM_KEY}
    timeouts: {connect: 1s, read: 10s}
  # The same CRM, for the route that never answers: its short read timeout
  # would fail a normal request on a loaded machine now and then.
  slow:
    url: ${UP_CRM}
    headers:
      x-api-key: ${CRM_KEY}
    timeouts: {connect: 1s, read: 300ms}
  dead:
    url: ${UP_DEAD}
    timeouts: {connect: 1s, read: 1s}
routes:
  - {name: contacts, upstream: crm, methods: [GET], path: "/api/v1/accounts/{account_id}/contacts", auth: none}
  - {name: contact, upstream: crm, methods: [GET, PATCH], path: "/api/v1/accounts/{account_id}/contacts/{id}", auth: none}
  - {name: leak, upstream: crm, methods: [GET], path: "/leak", auth: none}
  - {name: dump, upstream: crm, methods: [GET], path: "/dump", auth: none}
  - {name: gzip, upstream: crm, methods: [GET], path: "/gzip", auth: none}
  - {name: hang, upstream: slow, methods: [GET], path: "/hang", auth: none}
  - {name: abandoned, upstream: crm, methods: [GET], path: "/hang/long", auth: none}
  - {name: dead, upstream: dead, methods: [GET], path: "/dead", auth: none}
audit:
  path: ${AUDIT}
  hash_chain: true
"#
    .to_string()
}

pub async fn start() -> (TestGateway, EchoUpstream) {
    let up = EchoUpstream::start().await;
    // A port with nothing listening: connection refused.
    let dead = harness::free_addr();
    let gw = harness::start(
        &config(),
        &[
            ("UP_CRM", up.url()),
            ("UP_DEAD", format!("http://{dead}")),
            ("CRM_KEY", SECRET.to_string()),
        ],
    )
    .await;
    (gw, up)
}

#[tokio::test]
async fn allowed_request_reaches_the_upstream_with_injected_credential() {
    let (gw, up) = start().await;
    let resp = gw
        .client()
        .get(gw.url("/api/v1/accounts/1/contacts?page=2"))
        .header("authorization", "Bearer client-token")
        .header("cookie", "session=abc")
        .header("x-api-key", "client-forged-key")
        .header("x-chatwarden-sub", "forged-admin")
        .header("x-forwarded-for", "6.6.6.6")
        // The same headers as a server mapping headers to CGI names
        // (Rack, PHP) reads them: `_` for `-`.
        .header("x_chatwarden_sub", "forged-admin")
        .header("x_api_key", "client-forged-key")
        .header("X_Forwarded_For", "6.6.6.6")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200, "a routed request should be proxied");
    assert!(
        resp.headers().contains_key("x-request-id"),
        "the response should carry the request id"
    );
    let seen = up.seen();
    assert_eq!(
        seen.len(),
        1,
        "exactly one request should reach the upstream"
    );
    let h = &seen[0].headers;
    assert_eq!(
        seen[0].target, "/api/v1/accounts/1/contacts?page=2",
        "path and query forwarded"
    );
    assert_eq!(
        h.get("x-api-key").map(|v| v.as_bytes()),
        Some(SECRET.as_bytes()),
        "the gateway's credential replaces the client's"
    );
    assert_eq!(
        h.get_all("x-api-key").iter().count(),
        1,
        "no client copy of the credential survives"
    );
    assert!(
        h.get("authorization").is_none(),
        "client Authorization must not be forwarded"
    );
    assert!(
        h.get("cookie").is_none(),
        "client Cookie must not be forwarded"
    );
    assert!(
        h.get("x-chatwarden-sub").is_none(),
        "identity headers from the client must not be forwarded"
    );
    for name in ["x_chatwarden_sub", "x_api_key", "x_forwarded_for"] {
        assert!(
            h.get(name).is_none(),
            "{name} would read as a stripped header upstream"
        );
    }
    assert_eq!(
        h.get("x-forwarded-for").and_then(|v| v.to_str().ok()),
        Some("127.0.0.1"),
        "X-Forwarded-For from an untrusted peer is replaced by the real peer"
    );
    assert!(
        h.get("x-request-id").is_some(),
        "the request id is passed upstream"
    );
    assert_eq!(
        h.get("host").and_then(|v| v.to_str().ok()),
        Some(up.addr.to_string().as_str()),
        "Host is the upstream's"
    );
}

#[tokio::test]
async fn unmatched_requests_never_reach_the_upstream() {
    let (gw, up) = start().await;
    let client = gw.client();
    for (method, path) in [
        ("GET", "/admin"),
        ("GET", "/api/v1/accounts/1/contacts/1/secrets"),
        ("DELETE", "/api/v1/accounts/1/contacts/7"),
        ("POST", "/api/v1/accounts/1/contacts"),
        ("GET", "/api/v1/accounts/1/contacts/"),
        ("GET", "/"),
    ] {
        let resp = client
            .request(method.parse().expect("method"), gw.url(path))
            .send()
            .await
            .expect("request");
        assert_eq!(
            resp.status(),
            404,
            "{method} {path} matches no route and should be 404"
        );
        let body: serde_json::Value = resp.json().await.expect("JSON error body");
        assert_eq!(body["reason"], "no_route", "{method} {path}: {body}");
        assert_eq!(body["error"], "Not Found");
        assert!(
            body["request_id"].as_str().is_some_and(|s| s.len() == 32),
            "{body}"
        );
    }
    assert_eq!(up.count(), 0, "no unmatched request may reach the upstream");
}

#[tokio::test]
async fn path_tricks_are_decided_on_the_forwarded_path() {
    let (gw, up) = start().await;
    // Each of these normalizes to a routed path: the upstream must see the
    // normalized form, never the raw one.
    for (raw, forwarded) in [
        (
            "/api/v1/accounts/1/x/../contacts",
            "/api/v1/accounts/1/contacts",
        ),
        (
            "/api/v1/accounts/1/x/%2e%2e/contacts",
            "/api/v1/accounts/1/contacts",
        ),
        (
            "//api//v1/accounts/1/contacts",
            "/api/v1/accounts/1/contacts",
        ),
        (
            "/api/v1/accounts/1/./contacts",
            "/api/v1/accounts/1/contacts",
        ),
        (
            "/api/v1/accounts/1/%63ontacts",
            "/api/v1/accounts/1/contacts",
        ),
    ] {
        let before = up.count();
        let resp = harness::raw_request(
            gw.addr,
            format!("GET {raw} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await;
        assert_eq!(
            harness::status_of(&resp),
            200,
            "{raw} normalizes to a routed path: {resp}"
        );
        let seen = up.seen();
        assert_eq!(
            seen.len(),
            before + 1,
            "{raw} should reach the upstream once"
        );
        assert_eq!(
            seen[before].target, forwarded,
            "{raw} must be forwarded normalized"
        );
    }
    // These escape into a path no route allows, or are refused outright.
    let before = up.count();
    for (raw, status) in [
        ("/api/v1/accounts/1/contacts/../../../../admin", 404),
        ("/api/v1/accounts/1/contacts/..%2f..%2fadmin", 400),
        ("/api/v1/accounts/1/contacts%2F7", 400),
        ("/api/v1/accounts/1/contacts/%5C..%5Cadmin", 400),
        ("/api/v1/accounts/1/contacts/%00", 400),
        ("/../../etc/passwd", 400),
        ("/api/v1/accounts/1/contacts/%FF", 400),
    ] {
        let resp = harness::raw_request(
            gw.addr,
            format!("GET {raw} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await;
        assert_eq!(
            harness::status_of(&resp),
            status,
            "{raw} should be {status}: {resp}"
        );
    }
    assert_eq!(up.count(), before, "no path trick may reach the upstream");
}

#[tokio::test]
async fn upstream_credentials_and_cookies_in_response_headers_are_dropped() {
    let (gw, up) = start().await;
    let resp = gw
        .client()
        .get(gw.url("/leak"))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    assert_eq!(up.count(), 1);
    for (name, value) in resp.headers() {
        assert!(
            !value
                .as_bytes()
                .windows(SECRET.len())
                .any(|w| w == SECRET.as_bytes()),
            "response header {name} leaks the upstream credential"
        );
    }
    assert!(
        resp.headers().get("set-cookie").is_none(),
        "the upstream's cookies never reach the client: {:?}",
        resp.headers()
    );
}

#[tokio::test]
async fn an_upstream_credential_in_a_response_body_is_masked() {
    let (gw, up) = start().await;
    let resp = gw
        .client()
        .get(gw.url("/dump"))
        .header("accept-encoding", "gzip, br")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    let body = resp.bytes().await.expect("body");
    let seen = up.seen();
    assert_eq!(
        seen[0].headers.get("accept-encoding").map(|v| v.as_bytes()),
        Some(&b"identity"[..]),
        "the upstream is asked for a body that can be searched"
    );
    let text = String::from_utf8_lossy(&body);
    assert!(!text.contains(SECRET), "the credential reached the client");
    let stars = "*".repeat(SECRET.len());
    assert_eq!(text.matches(&stars).count(), 3000);
    let parsed: serde_json::Value = serde_json::from_slice(&body).expect("still JSON");
    assert_eq!(parsed["debug"][2999]["x-api-key"], stars.as_str());

    let records = gw.audit_records(1).await;
    assert_eq!(records[0]["decision"], "allow");
    assert_eq!(
        records[0]["detail"],
        "the upstream's credential was in the response body 3000 time(s): masked"
    );
    let log = std::fs::read_to_string(&gw.audit_path).expect("audit file");
    assert!(!log.contains(SECRET), "nor the audit file");

    // An encoded body could not be searched: it does not leave.
    let resp = gw
        .client()
        .get(gw.url("/gzip"))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 502);
    let body: serde_json::Value = resp.json().await.expect("JSON body");
    assert_eq!(body["reason"], "redaction_failed");
}

/// `compression`: the upstream is still asked for `identity` (its body is
/// searched for its credential and filtered), and the client that accepts
/// gzip gets the masked body compressed; one that does not, plain.
#[tokio::test]
async fn compression_gives_clients_back_a_compressed_body_after_masking() {
    use std::io::Read;
    let up = EchoUpstream::start().await;
    let gw = harness::start(
        &format!("{}compression: {{level: 6}}\n", config()),
        &[
            ("UP_CRM", up.url()),
            ("UP_DEAD", format!("http://{}", harness::free_addr())),
            ("CRM_KEY", SECRET.to_string()),
        ],
    )
    .await;
    let get = |encoding: Option<&'static str>| {
        let mut req = gw.client().get(gw.url("/dump"));
        if let Some(e) = encoding {
            req = req.header("accept-encoding", e);
        }
        req.send()
    };
    let resp = get(Some("gzip")).await.expect("request");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers().get("content-encoding").map(|v| v.as_bytes()),
        Some(&b"gzip"[..])
    );
    assert!(
        resp.headers().get_all("vary").iter().any(|v| v
            .to_str()
            .is_ok_and(|v| v.to_ascii_lowercase().contains("accept-encoding"))),
        "{:?}",
        resp.headers()
    );
    let compressed = resp.bytes().await.expect("body");
    let mut text = String::new();
    flate2::read::GzDecoder::new(&compressed[..])
        .read_to_string(&mut text)
        .expect("a gzip body");
    assert!(
        compressed.len() * 5 < text.len(),
        "{} -> {}",
        text.len(),
        compressed.len()
    );
    assert!(!text.contains(SECRET), "masked before it was compressed");
    assert_eq!(text.matches(&"*".repeat(SECRET.len())).count(), 3000);
    assert_eq!(
        up.seen()[0]
            .headers
            .get("accept-encoding")
            .map(|v| v.as_bytes()),
        Some(&b"identity"[..]),
        "the upstream is asked for a body that can be searched"
    );

    let plain = get(None).await.expect("request");
    assert!(plain.headers().get("content-encoding").is_none());
    let plain = plain.text().await.expect("body");
    assert_eq!(
        plain.len(),
        text.len(),
        "the same masked body, uncompressed"
    );
    // Refusals are the gateway's own small JSON answers, left as they are.
    let refused = gw
        .client()
        .get(gw.url("/nowhere"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .expect("request");
    assert_eq!(refused.status(), 404);
    assert!(refused.headers().get("content-encoding").is_none());
}

#[tokio::test]
async fn compression_level_is_checked() {
    let yaml = format!(
        "{}compression: {{level: 12}}\n",
        config()
            .replace("${LISTEN}", "127.0.0.1:1")
            .replace("${ADMIN}", "127.0.0.1:2")
    );
    let err = chatwarden::config::load_str(
        &yaml,
        std::path::Path::new("chatwarden.yaml"),
        &chatwarden::config::env::Overlay {
            top: &[
                ("UP_CRM", "http://127.0.0.1:3"),
                ("UP_DEAD", "http://127.0.0.1:4"),
                ("CRM_KEY", SECRET),
                ("AUDIT", "/dev/null"),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            base: &chatwarden::config::ProcessEnv,
        },
    )
    .err()
    .expect("refused")
    .to_string();
    assert!(
        err.contains("compression.level 12 is out of range: 1 (fastest) to 9 (smallest)"),
        "{err}"
    );
}

/// A client that hangs up while the upstream is still working (a browser
/// tab closed, a phone out of coverage) is routine, not a failure: its
/// request is audited as allowed with nothing sent and says the client
/// went away, and it counts as no upstream error.
#[tokio::test]
async fn a_client_that_goes_away_is_audited_as_such_not_as_a_failure() {
    use tokio::io::AsyncWriteExt;
    let (gw, up) = start().await;
    let mut conn = tokio::net::TcpStream::connect(gw.addr)
        .await
        .expect("connect");
    conn.write_all(b"GET /hang/long HTTP/1.1\r\nHost: crm\r\n\r\n")
        .await
        .expect("write");
    // Hang up once the request is upstream (the upstream waits 10 s).
    up.wait_for(1).await;
    drop(conn);

    assert_client_went_away(&gw, "abandoned").await;
    let metrics = gw.metrics().await;
    assert!(
        !metrics.contains("chatwarden_upstream_errors_total{upstream=\"crm\""),
        "a client hanging up is no upstream error: {metrics}"
    );
}

/// The audit record of the request to `route` says its client went away
/// before anything was sent, and that the gateway allowed it.
pub async fn assert_client_went_away(gw: &TestGateway, route: &str) {
    let records = gw.audit_records(1).await;
    let rec = records
        .iter()
        .find(|r| r["route"] == route)
        .unwrap_or_else(|| panic!("the abandoned request is audited: {records:?}"));
    assert_eq!(rec["decision"], "allow", "{rec}");
    assert!(rec["reason"].is_null(), "{rec}");
    assert_eq!(rec["status"], 0, "nothing was sent: {rec}");
    assert_eq!(
        rec["detail"],
        "the client closed the connection or cancelled the request before the response was complete",
        "{rec}"
    );
}

#[tokio::test]
async fn upstream_failures_answer_502_and_504_with_the_json_contract() {
    let (gw, _up) = start().await;
    let client = gw.client();
    let resp = client.get(gw.url("/dead")).send().await.expect("request");
    assert_eq!(resp.status(), 502, "a refused upstream connection is a 502");
    let body: serde_json::Value = resp.json().await.expect("JSON body");
    assert_eq!(body["reason"], "upstream_error", "{body}");

    let resp = client.get(gw.url("/hang")).send().await.expect("request");
    assert_eq!(
        resp.status(),
        504,
        "an upstream that does not answer within read timeout is a 504"
    );
    let body: serde_json::Value = resp.json().await.expect("JSON body");
    assert_eq!(body["reason"], "upstream_timeout", "{body}");

    let records = gw.audit_records(2).await;
    let reasons: Vec<&str> = records
        .iter()
        .filter_map(|r| r["reason"].as_str())
        .collect();
    assert!(
        reasons.contains(&"upstream_error") && reasons.contains(&"upstream_timeout"),
        "both failures audited: {records:?}"
    );
    assert!(
        records.iter().all(|r| r["decision"] == "error"),
        "upstream failures are audited as decision=error: {records:?}"
    );

    let metrics = gw.metrics().await;
    assert!(
        metrics.contains(
            "chatwarden_upstream_errors_total{upstream=\"dead\",kind=\"connect_refused\"} 1"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "chatwarden_upstream_errors_total{upstream=\"slow\",kind=\"read_timeout\"} 1"
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn x_forwarded_for_is_honoured_only_from_trusted_proxies() {
    let (gw, up) = start().await;
    // The test client connects from 127.0.0.1, which is not trusted: its
    // X-Forwarded-For and X-Request-Id are ignored.
    let resp = gw
        .client()
        .get(gw.url("/api/v1/accounts/1/contacts"))
        .header("x-forwarded-for", "10.1.1.1, 203.0.113.9")
        .header("x-request-id", "attacker-chosen-id")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    let id = resp
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert_ne!(
        id, "attacker-chosen-id",
        "an untrusted peer cannot choose the request id"
    );
    let records = gw.audit_records(1).await;
    assert_eq!(
        records[0]["client_ip"], "127.0.0.1",
        "spoofed XFF must not become the client ip"
    );
    assert_eq!(
        up.seen()[0]
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()),
        Some(id.as_str()),
        "the upstream sees the same request id as the client and the audit"
    );
    assert_eq!(records[0]["request_id"], id.as_str());
}

#[tokio::test]
async fn admin_endpoints_report_health_readiness_and_metrics() {
    let (gw, _up) = start().await;
    let client = gw.client();
    let _ = client
        .get(gw.url("/api/v1/accounts/1/contacts"))
        .send()
        .await
        .expect("request");
    let _ = client.get(gw.url("/nope")).send().await.expect("request");
    let _ = gw.audit_records(2).await;
    let admin = |p: &str| format!("http://{}{}", gw.admin, p);
    assert_eq!(
        client
            .get(admin("/healthz"))
            .send()
            .await
            .expect("healthz")
            .status(),
        200
    );
    assert_eq!(
        client
            .get(admin("/readyz"))
            .send()
            .await
            .expect("readyz")
            .status(),
        200
    );
    let text = client
        .get(admin("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body");
    assert!(
        text.contains(
            "chatwarden_requests_total{route=\"contacts\",decision=\"allow\",reason=\"\"} 1"
        ),
        "the allowed request is counted by route:\n{text}"
    );
    assert!(
        text.contains(
            "chatwarden_requests_total{route=\"\",decision=\"deny\",reason=\"no_route\"} 1"
        ),
        "the denial is counted by reason:\n{text}"
    );
    assert!(
        text.contains("chatwarden_request_duration_seconds_count 2"),
        "{text}"
    );
    assert!(
        text.contains("chatwarden_audit_records_written_total 2"),
        "{text}"
    );
}

#[tokio::test]
async fn request_bodies_are_forwarded_intact() {
    let (gw, up) = start().await;
    let body = r#"{"name":"Ada Lovelace","phone_number":"+447700900123"}"#;
    let resp = gw
        .client()
        .patch(gw.url("/api/v1/accounts/1/contacts/7"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    let seen = up.seen();
    assert_eq!(seen[0].method, "PATCH");
    assert_eq!(
        seen[0].body.as_ref(),
        body.as_bytes(),
        "the body reaches the upstream byte for byte"
    );
}
