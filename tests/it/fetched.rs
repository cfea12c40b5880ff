//! Rewritten GETs are answered whole: the gateway reads the upstream's
//! answer before it sends anything, so a masked body leaves with its
//! `Content-Length`, and a body that cannot be masked is a clean 502 however
//! it arrives. The gateway's own upstream exchanges (these and ownership
//! lookups) retry a pooled connection the upstream closed. Against a raw
//! HTTP/1.1 upstream whose framing and connection handling the test
//! controls.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::harness;
use crate::idp::Idp;

const CONFIG: &str = r#"
listeners: [{name: main, addr: "${LISTEN}"}]
admin: {addr: "${ADMIN}"}
upstreams:
  crm: {url: "${CRM}", headers: {api_access_token: "${CRM_TOKEN}"}, timeouts: {connect: 1s, read: 10s}}
  # For the route that never answers (a short read timeout on `crm` would
  # fail a normal request on a loaded machine now and then).
  slow: {url: "${CRM}", headers: {api_access_token: "${CRM_TOKEN}"}, timeouts: {connect: 1s, read: 300ms}}
  dead: {url: "${DEAD}", timeouts: {connect: 1s, read: 1s}}
auth:
  issuer: https://idp.acme-retail.test/
  audiences: [chatwarden]
  algorithms: [EdDSA]
  jwks_url: "${JWKS}"
  claims: {attributes: {user_id: uid}}
roles:
  agent: {permissions: [contacts.read]}
redaction:
  - name: contact-list
    fields: ["$.payload[*].phone_number"]
routes:
  - {name: contacts, upstream: crm, methods: [GET, POST], path: "/api/v1/accounts/{account_id}/contacts", permission: contacts.read, redaction: [contact-list]}
  - {name: big, upstream: crm, methods: [GET], path: "/big", permission: contacts.read, redaction: [contact-list]}
  - {name: nothing, upstream: crm, methods: [GET], path: "/nothing", permission: contacts.read, redaction: [contact-list]}
  - {name: hang, upstream: slow, methods: [GET], path: "/hang", permission: contacts.read, redaction: [contact-list]}
  - name: owned
    upstream: crm
    methods: [GET]
    path: "/owned/{id}"
    permission: contacts.read
    owner_check: {lookup: "/lookup/{id}", field: meta.assignee.id, claim: user_id}
  - {name: dead, upstream: dead, methods: [GET], path: "/dead", permission: contacts.read, redaction: [contact-list]}
audit: {path: "${AUDIT}"}
"#;

const CONTACTS: &str = r#"{"payload":[{"id":1,"phone_number":"+447700900123"},{"id":2,"phone_number":"+447700900456"}]}"#;

/// Requests answered, and connections that were closed on a request
/// instead of answering it.
#[derive(Default)]
struct Counts {
    answered: AtomicUsize,
    dropped: AtomicUsize,
}

/// A keep-alive HTTP/1.1 upstream. `/api/...` answers the contact list
/// (chunked, in three pieces); `/big` answers 4 MB of JSON of the wrong
/// shape; `/lookup/…` a conversation assigned to agent 3; `/nothing`
/// answers 204; `/hang` never answers; with `drop_second`, the second request on any connection is read
/// and the connection closed without an answer, as an upstream does whose
/// idle timeout fired just as the request arrived.
async fn raw_upstream(drop_second: bool) -> (String, Arc<Counts>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let counts = Arc::new(Counts::default());
    let shared = counts.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream, drop_second, shared.clone()));
        }
    });
    (format!("http://{addr}"), counts)
}

async fn serve(mut stream: TcpStream, drop_second: bool, counts: Arc<Counts>) {
    let mut buf = Vec::new();
    let mut served = 0;
    loop {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        buf.drain(..head_end);
        served += 1;
        if drop_second && served == 2 {
            counts.dropped.fetch_add(1, Ordering::SeqCst);
            return;
        }
        if head.starts_with("GET /hang ") {
            // Holds the connection until the gateway gives up on it.
            let _ = stream.read(&mut [0u8; 1]).await;
            return;
        }
        let ok = if head.starts_with("GET /nothing ") {
            stream
                .write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
                .await
                .is_ok()
        } else if head.starts_with("GET /lookup/") {
            let body = r#"{"id":1,"meta":{"assignee":{"id":3}}}"#;
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            stream.write_all(head.as_bytes()).await.is_ok()
        } else if head.starts_with("GET /big ") {
            let body = format!(r#"{{"payload":"{}"}}"#, "x".repeat(4 << 20));
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            stream.write_all(head.as_bytes()).await.is_ok()
                && stream.write_all(body.as_bytes()).await.is_ok()
        } else {
            let (a, b) = CONTACTS.split_at(40);
            let pieces = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n",
                a.len()
            );
            stream.write_all(pieces.as_bytes()).await.is_ok()
                && stream
                    .write_all(format!("{:x}\r\n{b}\r\n0\r\n\r\n", b.len()).as_bytes())
                    .await
                    .is_ok()
        };
        if !ok {
            return;
        }
        counts.answered.fetch_add(1, Ordering::SeqCst);
    }
}

/// A GET through the plain listener with `token`.
async fn get(gw: &harness::TestGateway, path: &str, token: &str) -> reqwest::Response {
    gw.client()
        .get(gw.url(path))
        .bearer_auth(token)
        .send()
        .await
        .expect("request")
}

/// The whole response to a GET, as it came off the wire.
async fn raw_get(gw: &harness::TestGateway, path: &str, token: &str) -> String {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    harness::raw_request(gw.addr, request.as_bytes()).await
}

async fn start(drop_second: bool) -> (harness::TestGateway, Arc<Idp>, Arc<Counts>) {
    let (url, counts) = raw_upstream(drop_second).await;
    let idp = Idp::start().await;
    let gw = harness::start(
        CONFIG,
        &[
            ("CRM", url),
            ("CRM_TOKEN", "crm-secret".to_string()),
            ("DEAD", format!("http://{}", harness::free_addr())),
            ("JWKS", idp.jwks_url()),
        ],
    )
    .await;
    (gw, idp, counts)
}

#[tokio::test]
async fn a_masked_answer_leaves_whole_with_its_length() {
    let (gw, idp, _) = start(false).await;
    let token = idp.token("amelia", &["agent"], json!({}));
    let client = gw.client();

    // Read off the wire: a chunked upstream answer becomes one with a
    // Content-Length, masked.
    let raw = raw_get(&gw, "/api/v1/accounts/1/contacts", &token).await;
    let (head, body) = raw.split_once("\r\n\r\n").expect("a head and a body");
    assert_eq!(harness::status_of(&raw), 200, "{raw}");
    let head = head.to_ascii_lowercase();
    assert!(!head.contains("transfer-encoding"), "{head}");
    assert!(
        head.contains(&format!("content-length: {}\r\n", body.len())),
        "the length of the masked body: {head}"
    );
    let body: Value = serde_json::from_str(body).expect("json");
    let phones: Vec<&str> = body["payload"]
        .as_array()
        .expect("payload")
        .iter()
        .filter_map(|c| c["phone_number"].as_str())
        .collect();
    assert_eq!(phones.len(), 2, "{body}");
    assert!(
        phones
            .iter()
            .all(|p| !p.contains("900123") && !p.contains("900456")),
        "{body}"
    );

    // Nothing to mask in a 204, and no length field on it either.
    let raw = raw_get(&gw, "/nothing", &token).await;
    assert_eq!(harness::status_of(&raw), 204, "{raw}");
    let head = raw.to_ascii_lowercase();
    assert!(
        !head.contains("content-length")
            && !head.contains("transfer-encoding")
            && raw.ends_with("\r\n\r\n"),
        "{raw}"
    );

    // A POST on the same route is proxied and streamed, masked alike.
    let resp = client
        .post(gw.url("/api/v1/accounts/1/contacts"))
        .bearer_auth(&token)
        .body("{}")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.expect("body");
    assert!(
        !text.contains("900123") && text.contains("phone_number"),
        "{text}"
    );

    // 4 MB of the wrong shape arrives in many reads; nothing of it was
    // sent before it was known to be unmaskable, so the client gets the
    // gateway's error, whole.
    let resp = get(&gw, "/big", &token).await;
    assert_eq!(resp.status(), 502);
    let body: Value = resp.json().await.expect("the gateway's error body");
    assert_eq!(body["reason"], "redaction_failed", "{body}");

    let records = gw.audit_records(4).await;
    assert_eq!(records[0]["status"], 200, "{records:?}");
    assert_eq!(records[0]["redactions"], 2, "{records:?}");
    assert_eq!(records[0]["upstream"], "crm", "{records:?}");
    assert_eq!(records[1]["status"], 204, "{records:?}");
    assert_eq!(records[3]["reason"], "redaction_failed", "{records:?}");
    assert_eq!(records[3]["status"], 502, "{records:?}");
}

/// With `compression`, a fetched and masked answer goes out compressed
/// for a client that accepts it: masked first, then compressed.
#[tokio::test]
async fn a_masked_answer_is_compressed_for_a_client_that_accepts_it() {
    use std::io::Read;
    let (url, _) = raw_upstream(false).await;
    let idp = Idp::start().await;
    let gw = harness::start(
        &format!("{CONFIG}compression: {{level: 1}}\n"),
        &[
            ("CRM", url),
            ("CRM_TOKEN", "crm-secret".to_string()),
            ("DEAD", format!("http://{}", harness::free_addr())),
            ("JWKS", idp.jwks_url()),
        ],
    )
    .await;
    let token = idp.token("amelia", &["agent"], json!({}));
    let resp = gw
        .client()
        .get(gw.url("/api/v1/accounts/1/contacts"))
        .bearer_auth(&token)
        .header("accept-encoding", "gzip")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers().get("content-encoding").map(|v| v.as_bytes()),
        Some(&b"gzip"[..])
    );
    let compressed = resp.bytes().await.expect("body");
    let mut text = String::new();
    flate2::read::GzDecoder::new(&compressed[..])
        .read_to_string(&mut text)
        .expect("a gzip body");
    let body: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(body["payload"].as_array().map(Vec::len), Some(2), "{body}");
    assert!(
        !text.contains("900123") && !text.contains("900456"),
        "masked before it was compressed: {text}"
    );
}

#[tokio::test]
async fn a_pooled_connection_the_upstream_closed_is_retried_on_a_new_one() {
    let (gw, idp, counts) = start(true).await;
    let token = idp.token("amelia", &["agent"], json!({}));
    for i in 0..3 {
        let resp = get(&gw, "/api/v1/accounts/1/contacts", &token).await;
        let status = resp.status();
        let text = resp.text().await.expect("body");
        assert_eq!(status, 200, "request {i}: {text}");
        assert!(!text.contains("900123"), "{text}");
    }
    assert_eq!(counts.answered.load(Ordering::SeqCst), 3);
    assert_eq!(
        counts.dropped.load(Ordering::SeqCst),
        2,
        "requests 2 and 3 each met a closing pooled connection first"
    );
}

#[tokio::test]
async fn upstream_failures_on_a_fetched_answer_keep_the_error_contract() {
    let (gw, idp, _) = start(false).await;
    let token = idp.token("amelia", &["agent"], json!({}));
    for (path, status, reason) in [
        ("/dead", 502, "upstream_error"),
        ("/hang", 504, "upstream_timeout"),
    ] {
        let resp = get(&gw, path, &token).await;
        assert_eq!(resp.status(), status, "{path}");
        let body: Value = resp.json().await.expect("the gateway's error body");
        assert_eq!(body["reason"], reason, "{path}: {body}");
    }
    let records = gw.audit_records(2).await;
    assert!(
        records.iter().all(|r| r["decision"] == "error"),
        "{records:?}"
    );
    let metrics = gw.metrics().await;
    for line in [
        "chatwarden_upstream_errors_total{upstream=\"dead\",kind=\"connect_refused\"} 1",
        "chatwarden_upstream_errors_total{upstream=\"slow\",kind=\"read_timeout\"} 1",
    ] {
        assert!(metrics.contains(line), "{line}: {metrics}");
    }
}

/// HTTPS on both sides: an HTTP/2 client over the gateway's TLS listener,
/// an upstream behind TLS verified against its `ca_file`. The fetched
/// answer is masked and carries its length; an upstream the gateway cannot
/// verify fails closed before anything is sent to it.
#[tokio::test]
async fn a_fetched_answer_travels_https_on_both_sides() {
    let pki = tempfile::tempdir().expect("dir");
    let ca_pem = harness::make_pki(pki.path());
    let up = crate::upstream::EchoUpstream::start_tls(pki.path()).await;
    let idp = Idp::start().await;
    let yaml = r#"
listeners:
  - {name: tls, addr: "${LISTEN}", tls: {cert: "${PKI}/cert.pem", key: "${PKI}/key.pem"}}
admin: {addr: "${ADMIN}"}
upstreams:
  private_crm: {url: "https://127.0.0.1:${PORT}", ca_file: "${PKI}/ca.pem"}
  unverifiable: {url: "https://127.0.0.1:${PORT}"}
auth:
  issuer: https://idp.acme-retail.test/
  audiences: [chatwarden]
  algorithms: [EdDSA]
  jwks_url: "${JWKS}"
roles:
  agent: {permissions: [contacts.read]}
redaction:
  - {name: target, fields: ["$.target"], style: full}
routes:
  - {name: trusted, upstream: private_crm, methods: [GET], path: "/echo/{rest*}", permission: contacts.read, redaction: [target]}
  - {name: untrusted, upstream: unverifiable, methods: [GET], path: "/other/{rest*}", permission: contacts.read, redaction: [target]}
audit: {path: "${AUDIT}"}
"#;
    let gw = harness::start(
        yaml,
        &[
            ("PORT", up.addr.port().to_string()),
            ("PKI", pki.path().display().to_string()),
            ("JWKS", idp.jwks_url()),
        ],
    )
    .await;
    let client = crate::tls::client_trusting(Some(&ca_pem), &gw)
        .build()
        .expect("client");
    let token = idp.token("amelia", &["agent"], json!({}));
    let url = |path: &str| format!("https://localhost:{}{path}", gw.addr.port());

    let resp = client
        .get(url("/echo/+447700900123"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let length = resp.content_length();
    let body = resp.bytes().await.expect("body");
    assert_eq!(length, Some(body.len() as u64), "the masked body's length");
    let body: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(body["target"], "[redacted]", "{body}");
    assert_eq!(body["method"], "GET", "{body}");
    assert_eq!(up.count(), 1);
    assert_eq!(
        up.seen()[0]
            .headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok()),
        Some("https")
    );

    let resp = client
        .get(url("/other/x"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 502);
    assert_eq!(
        up.count(),
        1,
        "nothing is sent over an unverified connection"
    );
}

#[tokio::test]
async fn an_ownership_lookup_meeting_a_closed_pooled_connection_is_retried() {
    let (gw, idp, counts) = start(true).await;
    let token = idp.token("amelia", &["agent"], json!({"uid": 3}));
    // Distinct ids: each request makes its own lookup (answers are cached
    // per looked-up path).
    for id in [1, 2, 3] {
        let resp = get(&gw, &format!("/owned/{id}"), &token).await;
        let status = resp.status();
        let text = resp.text().await.expect("body");
        assert_eq!(status, 200, "request for {id}: {text}");
    }
    // Each request: a lookup and the forwarded GET, on two pools (the
    // gateway's and pingora's); from the second request on, each meets a
    // pooled connection the upstream closes on it.
    assert_eq!(counts.answered.load(Ordering::SeqCst), 6);
    assert_eq!(counts.dropped.load(Ordering::SeqCst), 4);
}
