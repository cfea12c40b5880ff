//! Request body limits through the real proxy: a declared length over a
//! route's `max_body` is refused before the body is read, a chunked (or
//! HTTP/2) body is cut where it passes the limit and the upstream never
//! gets a whole request, a route's limit overrides its upstream's, and the
//! audit record names the limit that refused.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness;
use crate::idp::Idp;
use crate::upstream::EchoUpstream;

const CONFIG: &str = r#"
listeners: [{name: main, addr: "${LISTEN}"}]
admin: {addr: "${ADMIN}"}
upstreams:
  crm: {url: "${UP}", max_body: 2KB}
  graph: {url: "${UP}"}
auth:
  issuer: https://idp.acme-retail.test/
  audiences: [chatwarden]
  algorithms: [EdDSA]
  jwks_url: "${JWKS}"
roles:
  agent: {permissions: [messages.send, media.upload]}
routes:
  - name: messages.create
    upstream: crm
    methods: [POST]
    path: "/api/v1/accounts/{account_id}/conversations/{conversation_id}/messages"
    permission: messages.send
  - name: contacts.import
    upstream: crm
    methods: [POST]
    path: "/api/v1/accounts/{account_id}/contacts/import"
    permission: messages.send
    max_body: 8KB
  - name: media.upload
    upstream: graph
    methods: [POST]
    path: "/v23.0/{phone_number_id}/media"
    permission: media.upload
audit: {path: "${AUDIT}"}
"#;

const MESSAGES: &str = "/api/v1/accounts/1/conversations/7/messages";

/// Write `bytes`, then read until the gateway closes the connection. Fails
/// if it is still open after 10 s: a refused body must not be waited for.
async fn exchange_until_closed(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(bytes).await.expect("write");
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("the gateway closes the connection")
        .expect("read");
    String::from_utf8_lossy(&out).into_owned()
}

/// What the gateway first sends back on `s` (a response that fits 4 KB).
async fn first_answer(s: &mut tokio::net::TcpStream) -> String {
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .expect("an answer")
        .expect("read");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn body_of(raw: &str) -> Value {
    let (_, body) = raw.split_once("\r\n\r\n").expect("a head and a body");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("JSON body ({e}): {raw}"))
}

#[tokio::test]
async fn a_declared_body_over_the_limit_is_refused_before_it_is_read() {
    let up = EchoUpstream::start().await;
    let idp = Idp::start().await;
    let gw = harness::start(CONFIG, &[("UP", up.url()), ("JWKS", idp.jwks_url())]).await;
    let token = idp.token("priya", &["agent"], json!({}));

    // 1 byte over the upstream's 2KB, and asking to be told before the
    // body is sent: the answer is the refusal, not `100 Continue`, and the
    // connection is closed without waiting for the body.
    let head = format!(
        "POST {MESSAGES} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 2049\r\nExpect: 100-continue\r\n\r\n"
    );
    let raw = exchange_until_closed(gw.addr, head.as_bytes()).await;
    assert_eq!(harness::status_of(&raw), 413, "{raw}");
    assert!(!raw.contains("100 Continue"), "{raw}");
    assert!(
        raw.to_ascii_lowercase().contains("connection: close"),
        "{raw}"
    );
    assert_eq!(body_of(&raw)["reason"], "body_too_large");
    assert_eq!(up.count(), 0, "nothing reached the CRM");

    // Exactly the limit passes, whole.
    let client = gw.client();
    let post = |path: &str, len: usize| {
        client
            .post(gw.url(path))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(vec![b'x'; len])
            .send()
    };
    assert_eq!(post(MESSAGES, 2048).await.expect("request").status(), 200);
    let seen = up.seen();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].complete && seen[0].body.len() == 2048);

    // A route's own limit overrides its upstream's.
    let import = "/api/v1/accounts/1/contacts/import";
    assert_eq!(post(import, 5000).await.expect("request").status(), 200);
    assert_eq!(post(import, 8193).await.expect("request").status(), 413);

    // Neither sets one: 1MB.
    let media = |len: u64| {
        format!(
            "POST /v23.0/106540352242922/media HTTP/1.1\r\nHost: gw\r\n\
             Authorization: Bearer {token}\r\nContent-Length: {len}\r\n\r\n"
        )
    };
    let raw = exchange_until_closed(gw.addr, media(1024 * 1024 + 1).as_bytes()).await;
    assert_eq!(harness::status_of(&raw), 413, "{raw}");
    let resp = client
        .post(gw.url("/v23.0/106540352242922/media"))
        .bearer_auth(&token)
        .body(vec![0u8; 1024 * 1024])
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200, "1MB is within the default limit");

    // Who is asking is settled first: no token is a 401, whatever the size.
    let anonymous =
        format!("POST {MESSAGES} HTTP/1.1\r\nHost: gw\r\nContent-Length: 999999999\r\n\r\n");
    let raw = exchange_until_closed(gw.addr, anonymous.as_bytes()).await;
    assert_eq!(harness::status_of(&raw), 401, "{raw}");
    assert_eq!(body_of(&raw)["reason"], "token_missing");

    let records = gw.audit_records(7).await;
    let refused = harness::with_reason(&records, "body_too_large");
    assert_eq!(refused.len(), 3, "{records:#?}");
    let first = refused[0];
    assert_eq!(first["decision"], "deny");
    assert_eq!(first["status"], 413);
    assert_eq!(first["sub"], "priya");
    assert_eq!(first["route"], "messages.create");
    assert_eq!(first["path"], MESSAGES);
    assert_eq!(first["rules"], json!(["messages.create.max_body"]));
    assert_eq!(first["upstream"], Value::Null, "nothing was forwarded");
    assert_eq!(refused[1]["rules"], json!(["contacts.import.max_body"]));
    assert_eq!(refused[2]["rules"], json!(["media.upload.max_body"]));
    let metrics = gw.metrics().await;
    let counted: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("chatwarden_requests_total") && l.contains("body_too_large"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(counted, 3.0, "counted by reason:\n{metrics}");
}

/// A chunked body of `chunks` chunks of 1000 bytes, then its end.
fn chunked(token: &str, chunks: usize) -> Vec<u8> {
    let mut req = format!(
        "POST {MESSAGES} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    for _ in 0..chunks {
        req.extend_from_slice(b"3e8\r\n");
        req.extend_from_slice(&[b'x'; 1000]);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    req
}

#[tokio::test]
async fn a_chunked_body_is_cut_where_it_passes_the_limit() {
    let up = EchoUpstream::start().await;
    let idp = Idp::start().await;
    let gw = harness::start(CONFIG, &[("UP", up.url()), ("JWKS", idp.jwks_url())]).await;
    let token = idp.token("priya", &["agent"], json!({}));

    // 2000 bytes: within 2KB, forwarded whole.
    let within = chunked(&token, 2);
    let mut s = tokio::net::TcpStream::connect(gw.addr)
        .await
        .expect("connect");
    s.write_all(&within).await.expect("write");
    let raw = first_answer(&mut s).await;
    assert_eq!(harness::status_of(&raw), 200, "{raw}");
    drop(s);
    let seen = up.seen();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].complete && seen[0].body.len() == 2000);

    // 3000 bytes: cut once the third chunk passes 2KB.
    let raw = exchange_until_closed(gw.addr, &chunked(&token, 3)).await;
    assert_eq!(harness::status_of(&raw), 413, "{raw}");
    assert_eq!(body_of(&raw)["reason"], "body_too_large");
    assert!(
        up.seen().iter().skip(1).all(|s| !s.complete),
        "the CRM never got the whole request: {:?}",
        up.seen()
            .iter()
            .map(|s| (s.body.len(), s.complete))
            .collect::<Vec<_>>()
    );

    let records = gw.audit_records(2).await;
    let cut = &records[1];
    assert_eq!(cut["decision"], "deny", "{cut}");
    assert_eq!(cut["reason"], "body_too_large");
    assert_eq!(cut["status"], 413);
    assert_eq!(cut["rules"], json!(["messages.create.max_body"]));
    assert_eq!(
        cut["upstream"], "crm",
        "part of the request had been forwarded"
    );
}

#[tokio::test]
async fn an_http2_body_without_a_length_is_cut_at_the_limit() {
    let up = EchoUpstream::start().await;
    let idp = Idp::start().await;
    let (gw, ca) = harness::start_tls(
        &paced_config(),
        &[("UP", up.url()), ("JWKS", idp.jwks_url())],
    )
    .await;
    let token = idp.token("priya", &["agent"], json!({}));
    let client = crate::tls::client_trusting(Some(&ca), &gw)
        .build()
        .expect("client");
    let url = format!("https://localhost:{}{MESSAGES}", gw.addr.port());
    // Data frames with no declared length, 1000 bytes each.
    let post = |frames: usize| {
        let body = reqwest::Body::wrap_stream(futures_util::stream::iter(
            (0..frames).map(|_| Ok::<_, std::io::Error>(vec![b'x'; 1000])),
        ));
        client.post(&url).bearer_auth(&token).body(body).send()
    };

    let resp = post(2).await.expect("request");
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(resp.status(), 200, "2000 bytes are within 2KB");

    // A declared content-length over the limit, refused before forwarding.
    let declared = client
        .post(&url)
        .bearer_auth(&token)
        .body(vec![b'x'; 3000])
        .send()
        .await
        .expect("an HTTP/2 answer, not a protocol error");
    assert_eq!(declared.status(), 413);
    assert!(
        declared.headers().get("connection").is_none(),
        "no HTTP/1 connection header in HTTP/2"
    );

    let resp = post(5).await.expect("request");
    assert_eq!(resp.status(), 413);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["reason"], "body_too_large");
    let seen = up.seen();
    assert!(seen[0].complete && seen[0].body.len() == 2000);
    assert!(seen.iter().skip(1).all(|s| !s.complete), "never whole");

    // A streamed body's status, and whether it came within 4s.
    let send = |body: reqwest::Body| {
        let req = client.post(&url).bearer_auth(&token).body(body);
        async move {
            let started = std::time::Instant::now();
            let status = req.send().await.expect("request").status().as_u16();
            (status, started.elapsed() < Duration::from_secs(4))
        }
    };
    // A byte every 50ms falls behind 1KB a second after the 1s grace.
    let drip = futures_util::stream::unfold(0, |n| async move {
        if n > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        (n < 100).then(|| (Ok::<_, std::io::Error>(vec![b'x']), n + 1))
    });
    assert_eq!(send(reqwest::Body::wrap_stream(drip)).await, (408, true));
    // A body that stops altogether: pingora reads HTTP/2 bodies without a
    // timeout, so the upstream's read timeout (2s) ends the wait, but the
    // body is behind its pace by then: the client's doing, not the
    // upstream's.
    let stall = futures_util::stream::iter([Ok::<_, std::io::Error>(vec![b'x'; 10])])
        .chain(futures_util::stream::pending());
    assert_eq!(send(reqwest::Body::wrap_stream(stall)).await, (408, true));

    let records = gw.audit_records(5).await;
    assert_eq!(records[1]["reason"], "body_too_large", "{records:#?}");
    assert_eq!(
        records[1]["upstream"],
        Value::Null,
        "declared: nothing forwarded"
    );
    assert_eq!(records[2]["reason"], "body_too_large", "{records:#?}");
    assert_eq!(records[2]["upstream"], "crm");
    assert_eq!(records[3]["reason"], "body_too_slow", "{records:#?}");
    let stalled = &records[4];
    assert_eq!(stalled["reason"], "body_too_slow", "{records:#?}");
    assert_eq!(stalled["status"], 408);
    assert_eq!(stalled["rules"], json!(["connections.body_min_rate"]));
    assert_eq!(stalled["upstream"], "crm", "the body was forwarded in part");
    let metrics = gw.metrics().await;
    assert!(
        !metrics.contains("chatwarden_upstream_errors_total{upstream=\"crm\""),
        "a client that stops sending is no upstream error: {metrics}"
    );
}

/// [`CONFIG`] holding bodies to 1KB a second after a 1s grace, with a
/// Meta webhook route, and upstream reads timed out after 2s.
fn paced_config() -> String {
    CONFIG
        .replace(
            "admin: {addr: \"${ADMIN}\"}",
            "admin: {addr: \"${ADMIN}\"}\nconnections: {body_min_rate: 1KB, body_grace: 1s}",
        )
        .replace(
            "crm: {url: \"${UP}\", max_body: 2KB}",
            "crm: {url: \"${UP}\", max_body: 2KB, timeouts: {read: 2s}}",
        )
        .replace(
            "  jwks_url: \"${JWKS}\"",
            "  jwks_url: \"${JWKS}\"\n  meta_webhook: {app_secret: app-secret-for-tests}",
        )
        .replace(
            "routes:",
            "routes:\n  - {name: webhook, upstream: crm, methods: [POST], path: /webhooks/whatsapp, auth: meta_signature}",
        )
}

#[tokio::test]
async fn a_body_dripped_slower_than_the_minimum_rate_is_cut() {
    let up = EchoUpstream::start().await;
    let idp = Idp::start().await;
    let gw = harness::start(
        &paced_config(),
        &[("UP", up.url()), ("JWKS", idp.jwks_url())],
    )
    .await;
    let token = idp.token("priya", &["agent"], json!({}));
    let head = |len: usize| {
        format!(
            "POST {MESSAGES} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: {len}\r\n\r\n"
        )
    };

    // 1000 bytes, then 1000 more 300ms later: well within 1KB a second.
    let mut s = tokio::net::TcpStream::connect(gw.addr)
        .await
        .expect("connect");
    s.write_all(head(2000).as_bytes()).await.expect("write");
    s.write_all(&[b'x'; 1000]).await.expect("write");
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.write_all(&[b'x'; 1000]).await.expect("write");
    let raw = first_answer(&mut s).await;
    assert_eq!(harness::status_of(&raw), 200, "{raw}");
    drop(s);

    // A byte every 50ms: 20 bytes a second, each read far inside every
    // per-read timeout (and each resets the upstream's read timeout). Cut
    // once it falls behind: 1s of grace plus 1ms per byte.
    let mut s = tokio::net::TcpStream::connect(gw.addr)
        .await
        .expect("connect");
    s.write_all(head(2000).as_bytes()).await.expect("write");
    let started = std::time::Instant::now();
    let mut answer = Vec::new();
    while started.elapsed() < Duration::from_secs(10) {
        if s.write_all(b"x").await.is_err() {
            break;
        }
        let mut buf = [0u8; 1024];
        match tokio::time::timeout(Duration::from_millis(50), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut answer)).await;
    let raw = String::from_utf8_lossy(&answer).into_owned();
    assert_eq!(harness::status_of(&raw), 408, "{raw}");
    assert_eq!(body_of(&raw)["reason"], "body_too_slow");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "cut in {took:?}");
    assert!(
        up.seen().iter().skip(1).all(|s| !s.complete),
        "the CRM never got the whole request"
    );

    // A body that stops altogether after its first 1000 bytes: nothing
    // arrives to be found late, so the read waiting for the next piece
    // ends when it falls behind (1s), before the upstream's 2s read
    // timeout would blame the upstream.
    let mut stalled = head(2000).into_bytes();
    stalled.extend_from_slice(&[b'x'; 1000]);
    let raw = exchange_until_closed(gw.addr, &stalled).await;
    assert_eq!(harness::status_of(&raw), 408, "{raw}");
    assert_eq!(body_of(&raw)["reason"], "body_too_slow");

    // An unauthenticated webhook sender that stops after a few bytes: the
    // gateway reads webhook bodies itself, and stops waiting at the grace.
    let raw = exchange_until_closed(
        gw.addr,
        b"POST /webhooks/whatsapp HTTP/1.1\r\nHost: gw\r\nContent-Length: 100\r\n\r\n{\"object\":",
    )
    .await;
    assert_eq!(harness::status_of(&raw), 408, "{raw}");

    let records = gw.audit_records(4).await;
    for cut in [&records[1], &records[2]] {
        assert_eq!(cut["decision"], "deny", "{cut}");
        assert_eq!(cut["reason"], "body_too_slow");
        assert_eq!(cut["status"], 408);
        assert_eq!(cut["rules"], json!(["connections.body_min_rate"]));
        assert_eq!(cut["upstream"], "crm", "the body was forwarded in part");
    }
    assert_eq!(records[3]["reason"], "body_too_slow");
    assert_eq!(records[3]["route"], "webhook");
    assert_eq!(records[3]["upstream"], Value::Null, "nothing was forwarded");
    let metrics = gw.metrics().await;
    assert!(
        !metrics.contains("chatwarden_upstream_errors_total{upstream=\"crm\""),
        "a client that stops sending is no upstream error: {metrics}"
    );
}
