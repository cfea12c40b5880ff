//! Invariant 2 at the socket: ambiguous or malformed requests get 400 and
//! never reach the upstream (request smuggling, header tricks).

use crate::harness;
use crate::proxy;

#[tokio::test]
async fn ambiguous_framing_and_malformed_targets_are_refused() {
    let (gw, up) = proxy::start().await;
    let cases: [(&str, &[u8]); 6] = [
        (
            "Content-Length with Transfer-Encoding",
            b"GET /api/v1/accounts/1/contacts HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "duplicate Host",
            b"GET /api/v1/accounts/1/contacts HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        ),
        (
            "conflicting Content-Length",
            b"PATCH /api/v1/accounts/1/contacts/1 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nab",
        ),
        (
            "invalid UTF-8 after percent-decoding",
            b"GET /api/v1/accounts/1/contacts/%C3%28 HTTP/1.1\r\nHost: x\r\n\r\n",
        ),
        (
            "raw non-ASCII byte in the target",
            b"GET /api/v1/accounts/1/contacts/\xff HTTP/1.1\r\nHost: x\r\n\r\n",
        ),
        (
            "encoded NUL",
            b"GET /api/v1/accounts/1/contacts/1%00 HTTP/1.1\r\nHost: x\r\n\r\n",
        ),
    ];
    for (what, bytes) in cases {
        let resp = harness::raw_request(gw.addr, bytes).await;
        assert!(
            resp.is_empty() || harness::status_of(&resp) == 400,
            "{what}: expected 400 (or the connection dropped), got {resp:?}"
        );
    }
    assert_eq!(up.count(), 0, "no malformed request may reach the upstream");
    // Duplicate Host, conflicting Content-Length and raw non-ASCII bytes are
    // refused by pingora's HTTP parser before any gateway phase runs; the
    // gateway notices pingora's 400 at the socket and audits it, with no
    // method or path (none was read). The other three reach the gateway's
    // own checks. Every one of the six has its record.
    let records = gw.audit_records(6).await;
    let bad: Vec<_> = records
        .iter()
        .filter(|r| r["reason"] == "bad_request")
        .collect();
    assert_eq!(
        bad.len(),
        6,
        "every refused request is audited: {records:?}"
    );
    for r in &bad {
        assert_eq!(r["decision"], "deny");
        assert_eq!(r["status"], 400);
        assert!(r["route"].is_null(), "a refused request has no route: {r}");
        assert_eq!(r["client_ip"], "127.0.0.1");
    }
    let by_parser: Vec<_> = bad
        .iter()
        .filter(|r| r["detail"] == "request head refused by the HTTP parser")
        .collect();
    assert_eq!(by_parser.len(), 3, "{bad:?}");
    for r in by_parser {
        assert_eq!(
            (r["method"].as_str(), r["path"].as_str()),
            (Some(""), Some(""))
        );
        assert_eq!(r["request_id"].as_str().map(str::len), Some(32), "{r}");
        assert!(
            r["bytes_out"].as_u64().is_some_and(|n| n > 0),
            "pingora's 400 was counted: {r}"
        );
    }
    assert!(
        gw.metrics().await.contains(
            "chatwarden_requests_total{route=\"\",decision=\"deny\",reason=\"bad_request\"} 6\n"
        ),
        "and counted"
    );
}

#[tokio::test]
async fn a_bad_request_closes_the_connection() {
    let (gw, up) = proxy::start().await;
    // A smuggled second request after an ambiguous first one must never
    // be read as a request of its own.
    let resp = harness::raw_request(
        gw.addr,
        b"POST /api/v1/accounts/1/contacts HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /api/v1/accounts/1/contacts HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    assert_eq!(harness::status_of(&resp), 400, "{resp}");
    assert_eq!(
        resp.matches("HTTP/1.1").count(),
        1,
        "only one response, then close: {resp}"
    );
    assert_eq!(
        up.count(),
        0,
        "the smuggled request must not reach the upstream"
    );
}

#[tokio::test]
async fn echoing_methods_are_never_routed() {
    // A route without `methods` takes any method, but never TRACE or TRACK:
    // an upstream that answered one would echo the request back, the
    // injected credential with it.
    let up = crate::upstream::EchoUpstream::start().await;
    let gw = harness::start(
        r#"
listeners: [{name: main, addr: "${LISTEN}"}]
admin: {addr: "${ADMIN}"}
upstreams:
  crm: {url: "${UP}", headers: {api_access_token: "never-echoed-secret"}}
routes: [{name: anything, upstream: crm, path: "/status", auth: none}]
audit: {path: "${AUDIT}"}
"#,
        &[("UP", up.url())],
    )
    .await;
    for method in ["TRACE", "TRACK"] {
        let raw = format!("{method} /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let resp = harness::raw_request(gw.addr, raw.as_bytes()).await;
        assert_eq!(harness::status_of(&resp), 404, "{method}: {resp}");
        assert!(resp.contains("no_route"), "{resp}");
    }
    let resp = harness::raw_request(
        gw.addr,
        b"PROPFIND /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(
        harness::status_of(&resp),
        200,
        "other methods still match: {resp}"
    );
    assert_eq!(up.count(), 1, "only the PROPFIND reached the upstream");
}
