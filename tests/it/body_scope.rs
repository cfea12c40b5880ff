//! Scope bindings on a request body through the real proxy. Chatwoot takes
//! the inbox of a new conversation (the WhatsApp number it goes out on)
//! from the JSON body of `POST …/conversations`: an agent bound to one
//! number's inbox opens conversations there and nowhere else. The body is
//! read and checked before the upstream hears of the request, and what
//! reaches it is exactly what was checked.

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness;
use crate::idp::Idp;
use crate::upstream::EchoUpstream;

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
  claims: {attributes: {inbox_ids: chatwoot_inbox_ids, team_ids: chatwoot_team_ids}}
roles:
  agent: {permissions: [conversations.write]}
  supervisor: {inherits: [agent], permissions: [scope.all_inboxes]}
routes:
  - name: conversations.create
    upstream: crm
    methods: [POST]
    path: "/api/v1/accounts/{account_id}/conversations"
    permission: conversations.write
    max_body: 256KB
    scope:
      - {body: inbox_id, claim: inbox_ids, requires: [contact_id], unless_permission: scope.all_inboxes}
      - {body: team_id, claim: team_ids, optional: true, unless_permission: scope.all_inboxes}
audit: {path: "${AUDIT}"}
"#;

const CREATE: &str = "/api/v1/accounts/1/conversations";

/// A request that is refused: path, Content-Type, body, status, reason.
type Refused<'a> = (&'a str, Option<&'a str>, Vec<u8>, u16, &'a str);

#[tokio::test]
async fn a_body_member_bound_to_a_claim_decides_before_the_upstream_hears() {
    let up = EchoUpstream::start().await;
    let idp = Idp::start().await;
    let gw = harness::start(CONFIG, &[("UP", up.url()), ("JWKS", idp.jwks_url())]).await;
    let agent = idp.token(
        "amelia",
        &["agent"],
        json!({"chatwoot_inbox_ids": [1], "chatwoot_team_ids": [4]}),
    );
    let supervisor = idp.token("sofia", &["supervisor"], json!({}));
    let send = |token: &str, path: &str, ct: Option<&str>, body: Vec<u8>| {
        let mut req = gw.client().post(gw.url(path)).bearer_auth(token).body(body);
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        req.send()
    };
    let json_ct = Some("application/json");

    // Her own inbox: forwarded, byte for byte.
    let mine =
        br#"{"inbox_id": 1, "team_id": 4, "contact_id": 42, "message": {"content": "Hello"}}"#;
    let resp = send(&agent, CREATE, json_ct, mine.to_vec())
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    let seen = up.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        &seen[0].body[..],
        &mine[..],
        "the checked bytes are forwarded"
    );
    assert!(seen[0].complete);

    // Another number's inbox, or a way around the check: never forwarded.
    let refused: Vec<Refused> = vec![
        (
            CREATE,
            json_ct,
            br#"{"inbox_id": 2, "contact_id": 42}"#.to_vec(),
            403,
            "scope_denied",
        ),
        (
            CREATE,
            json_ct,
            br#"{"contact_id": 42}"#.to_vec(),
            403,
            "scope_denied",
        ),
        (
            CREATE,
            json_ct,
            br#"{"inbox_id": 1, "contact_id": 42, "team_id": 9}"#.to_vec(),
            403,
            "scope_denied",
        ),
        // Without a contact, Chatwoot takes the inbox of whatever contact
        // inbox `source_id` finds: the checked inbox_id would mean nothing.
        (
            CREATE,
            json_ct,
            br#"{"inbox_id": 1, "source_id": "4915155512345"}"#.to_vec(),
            400,
            "bad_request",
        ),
        (
            CREATE,
            json_ct,
            br#"{"inbox_id": [1, 2], "contact_id": 42}"#.to_vec(),
            403,
            "scope_denied",
        ),
        (
            CREATE,
            json_ct,
            br#"{"inbox_id": 1, "inbox_id": 2}"#.to_vec(),
            400,
            "bad_request",
        ),
        (
            "/api/v1/accounts/1/conversations?inbox_id=2",
            json_ct,
            mine.to_vec(),
            400,
            "bad_request",
        ),
        (
            CREATE,
            Some("application/x-www-form-urlencoded"),
            b"inbox_id=1".to_vec(),
            400,
            "bad_request",
        ),
        (CREATE, None, mine.to_vec(), 400, "bad_request"),
        (
            CREATE,
            json_ct,
            b"{\"inbox_id\": 1".to_vec(),
            400,
            "bad_request",
        ),
        (
            CREATE,
            json_ct,
            format!(r#"{{"inbox_id": 1, "pad": "{}"}}"#, "x".repeat(70 * 1024)).into_bytes(),
            413,
            "body_too_large",
        ),
    ];
    for (path, ct, body, status, reason) in refused {
        let shown = String::from_utf8_lossy(&body[..body.len().min(60)]).into_owned();
        let resp = send(&agent, path, ct, body).await.expect("request");
        assert_eq!(resp.status(), status, "{path} {ct:?} {shown}");
        let answer: Value = resp.json().await.expect("json");
        assert_eq!(answer["reason"], reason, "{path} {ct:?} {shown}");
    }
    assert_eq!(up.count(), 1, "none of them reached the upstream");

    // A body in chunks (no length declared) is read whole the same way.
    let chunked = |token: &str, inbox: u32| {
        let first = r#"{"contact_id": 42, "inbox"#;
        let second = format!(r#"_id": {inbox}}}"#);
        format!(
            "POST {CREATE} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n\
             {:x}\r\n{first}\r\n{:x}\r\n{second}\r\n0\r\n\r\n",
            first.len(),
            second.len()
        )
    };
    assert_eq!(raw_status(&gw, &chunked(&agent, 2)).await, 403);
    assert_eq!(up.count(), 1);
    assert_eq!(raw_status(&gw, &chunked(&agent, 1)).await, 200);
    assert_eq!(
        &up.seen()[1].body[..],
        br#"{"contact_id": 42, "inbox_id": 1}"#
    );

    // A client that asks before sending (`Expect: 100-continue`, what curl
    // does past 1 KiB) is told to go on: the gateway reads the body itself.
    // The upstream is not asked again.
    let body = r#"{"inbox_id": 1, "contact_id": 43}"#;
    let mut s = tokio::net::TcpStream::connect(gw.addr)
        .await
        .expect("connect");
    let head = format!(
        "POST {CREATE} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {agent}\r\n\
         Content-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.expect("write");
    assert_eq!(read_status(&mut s).await, 100, "not a wait for the body");
    s.write_all(body.as_bytes()).await.expect("write");
    assert_eq!(read_status(&mut s).await, 200);
    let seen = up.seen();
    assert_eq!(&seen[2].body[..], body.as_bytes());
    assert!(
        !seen[2].headers.contains_key("expect"),
        "the body is in hand: the upstream is not asked to continue"
    );

    // A supervisor holds the bypass: the body is not even read for it.
    let theirs = br#"{"inbox_id": 2, "contact_id": 42}"#;
    let resp = send(&supervisor, CREATE, json_ct, theirs.to_vec())
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    assert_eq!(&up.seen()[3].body[..], &theirs[..]);

    let records = gw.audit_records(16).await;
    let denied = harness::with_reason(&records, "scope_denied");
    assert_eq!(denied.len(), 5, "{records:#?}");
    assert_eq!(denied[0]["sub"], "amelia");
    assert_eq!(denied[0]["route"], "conversations.create");
    assert_eq!(
        denied[0]["rules"],
        json!(["conversations.create.scope.body"]),
        "{records:#?}"
    );
    let unreadable = harness::with_reason(&records, "bad_request");
    assert_eq!(unreadable.len(), 6, "{records:#?}");
    assert!(unreadable
        .iter()
        .all(|r| r["rules"] == json!(["conversations.create.scope.body"])));
    let large = harness::with_reason(&records, "body_too_large");
    assert_eq!(
        large[0]["rules"],
        json!(["conversations.create.scope.body"])
    );
}

/// Sends `request` as it is on a new connection; the answer's status.
async fn raw_status(gw: &harness::TestGateway, request: &str) -> u16 {
    let mut s = tokio::net::TcpStream::connect(gw.addr)
        .await
        .expect("connect");
    s.write_all(request.as_bytes()).await.expect("write");
    read_status(&mut s).await
}

/// The status of the next answer on `s` (read in one piece: a head this
/// small arrives whole).
async fn read_status(s: &mut tokio::net::TcpStream) -> u16 {
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(std::time::Duration::from_secs(10), s.read(&mut buf))
        .await
        .expect("an answer")
        .expect("read");
    harness::status_of(&String::from_utf8_lossy(&buf[..n]))
}

/// Over HTTP/2 the body comes in data frames with no declared length: read
/// whole the same way, and forwarded whole.
#[tokio::test]
async fn an_http2_body_is_checked_and_forwarded_whole() {
    let up = EchoUpstream::start().await;
    let idp = Idp::start().await;
    let (gw, ca) = harness::start_tls(CONFIG, &[("UP", up.url()), ("JWKS", idp.jwks_url())]).await;
    let agent = idp.token("amelia", &["agent"], json!({"chatwoot_inbox_ids": [1]}));
    let client = crate::tls::client_trusting(Some(&ca), &gw)
        .build()
        .expect("client");
    let url = format!("https://localhost:{}{CREATE}", gw.addr.port());
    let post = |inbox: u32| {
        let frames = vec![
            r#"{"contact_id": 42, "#.to_string(),
            format!(r#""inbox_id": {inbox}, "#),
            format!(r#""message": {{"content": "{}"}}}}"#, "y".repeat(3000)),
        ];
        let body = reqwest::Body::wrap_stream(futures_util::stream::iter(
            frames.into_iter().map(Ok::<_, std::io::Error>),
        ));
        client
            .post(&url)
            .bearer_auth(&agent)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };

    let resp = post(2).await.expect("request");
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(resp.status(), 403);
    assert_eq!(up.count(), 0);

    let resp = post(1).await.expect("request");
    assert_eq!(resp.status(), 200);
    let seen = up.seen();
    assert_eq!(seen.len(), 1);
    let forwarded: Value = serde_json::from_slice(&seen[0].body).expect("json forwarded");
    assert_eq!(forwarded["inbox_id"], 1);
    assert_eq!(
        forwarded["message"]["content"].as_str().map(str::len),
        Some(3000)
    );
    assert!(seen[0].complete);
}
