//! Method overrides through the real proxy. Chatwoot is a full Rails app,
//! and `Rack::MethodOverride` makes a POST carrying `_method` (form field)
//! or `X-HTTP-Method-Override` into that method: an agent allowed to create
//! a contact could have read the whole contact list, past the masking its
//! list route applies. Each way of asking is refused before the upstream
//! gets a whole request, and the audit record says so.

use std::time::Duration;

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
  graph: {url: "${UP}", method_override_params: [method]}
  plain: {url: "${UP}", method_override_params: []}
auth:
  issuer: https://idp.acme-retail.test/
  audiences: [chatwarden]
  algorithms: [EdDSA]
  jwks_url: "${JWKS}"
roles:
  agent: {permissions: [contacts.write, contacts.read]}
routes:
  - {name: contacts.create, upstream: crm, methods: [POST], path: "/api/v1/accounts/{account_id}/contacts", permission: contacts.write}
  - {name: contacts.list, upstream: crm, methods: [GET], path: "/api/v1/accounts/{account_id}/contacts", permission: contacts.read}
  - {name: media.upload, upstream: graph, methods: [POST], path: "/v23.0/{phone_number_id}/media", permission: contacts.write}
  - {name: legacy.post, upstream: plain, methods: [POST], path: "/legacy", permission: contacts.write}
audit: {path: "${AUDIT}"}
"#;

const CONTACTS: &str = "/api/v1/accounts/1/contacts";

/// Sends `request` on a new connection; the status and the whole answer.
async fn answer(gw: &harness::TestGateway, request: &[u8]) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(gw.addr)
        .await
        .expect("connect");
    s.write_all(request).await.expect("write");
    let mut out = Vec::new();
    // The gateway answers and closes (a refused body is not drained), or
    // answers and keeps the connection open: read until the answer's
    // Content-Length is in, or the connection closes.
    let mut buf = vec![0u8; 8192];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("an answer")
            .expect("read");
        out.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&out);
        if n == 0
            || text.split_once("\r\n\r\n").is_some_and(|(head, body)| {
                let len = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().to_string())
                    })
                    .and_then(|v| v.parse::<usize>().ok())
                    .unwrap_or(0);
                body.len() >= len
            })
        {
            break;
        }
    }
    let text = String::from_utf8_lossy(&out).into_owned();
    (harness::status_of(&text), text)
}

fn post(token: &str, path: &str, headers: &str, body: &[u8]) -> Vec<u8> {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {token}\r\n{headers}\
         Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    req
}

fn reason(raw: &str) -> Value {
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    serde_json::from_str::<Value>(body).unwrap_or(Value::Null)["reason"].clone()
}

fn multipart(field: &str, value: &str) -> Vec<u8> {
    format!(
        "--b0und\r\nContent-Disposition: form-data; name=\"contact[name]\"\r\n\r\nAda\r\n\
         --b0und\r\nContent-Disposition: form-data; name=\"attachment\"; filename=\"payment_method.pdf\"\r\n\
         Content-Type: application/pdf\r\n\r\n%PDF-1.7 name=\"_method\"\r\n\
         --b0und\r\nContent-Disposition: form-data; name={field}\r\n\r\n{value}\r\n--b0und--\r\n"
    )
    .into_bytes()
}

#[tokio::test]
async fn a_request_asking_for_another_method_never_reaches_the_upstream() {
    let up = EchoUpstream::start().await;
    let idp = Idp::start().await;
    let gw = harness::start(CONFIG, &[("UP", up.url()), ("JWKS", idp.jwks_url())]).await;
    let token = idp.token("priya", &["agent"], json!({}));
    let form = "Content-Type: application/x-www-form-urlencoded\r\n";
    let multi = "Content-Type: multipart/form-data; boundary=b0und\r\n";

    let refused: Vec<(&str, Vec<u8>)> = vec![
        (
            "header",
            post(&token, CONTACTS, "X-HTTP-Method-Override: GET\r\n", b"{}"),
        ),
        (
            "other header",
            post(&token, CONTACTS, "X-Method-Override: DELETE\r\n", b"{}"),
        ),
        (
            "header, CGI spelling",
            post(&token, CONTACTS, "X_HTTP_Method_Override: GET\r\n", b"{}"),
        ),
        (
            "query",
            post(&token, &format!("{CONTACTS}?_method=GET"), "", b"{}"),
        ),
        (
            "urlencoded body",
            post(&token, CONTACTS, form, b"contact%5Bname%5D=Ada&_method=GET"),
        ),
        (
            "encoded name",
            post(&token, CONTACTS, form, b"contact=1&%5Fmethod=GET"),
        ),
        (
            "multipart body",
            post(&token, CONTACTS, multi, &multipart("\"_method\"", "GET")),
        ),
        (
            "the Graph API's own",
            post(
                &token,
                "/v23.0/106540352242922/media?method=DELETE",
                "",
                b"x",
            ),
        ),
        (
            "a form the gateway cannot read",
            post(
                &token,
                CONTACTS,
                &format!("{form}Content-Encoding: gzip\r\n"),
                b"\x1f\x8b",
            ),
        ),
        // Rack 2 skips brackets before a name, and names a part without
        // one by its Content-ID.
        (
            "a bracketed name",
            post(&token, CONTACTS, form, b"contact=1&%5B_method%5D=GET"),
        ),
        (
            "a part named by its Content-ID",
            post(
                &token,
                CONTACTS,
                multi,
                b"--b0und\r\nContent-Disposition: form-data\r\nContent-ID: _method\r\n\r\nGET\r\n--b0und--\r\n",
            ),
        ),
        // Read as Rack reads a content type: a POST without one is a
        // form, the media type ends at a comma, every multipart type is
        // multipart, and two boundaries leave no single reading.
        (
            "an empty Content-Type",
            post(&token, CONTACTS, "Content-Type: \r\n", b"_method=GET"),
        ),
        (
            "an untyped POST",
            post(&token, CONTACTS, "", b"_method=GET"),
        ),
        (
            "a media type list",
            post(
                &token,
                CONTACTS,
                "Content-Type: application/x-www-form-urlencoded, text/plain\r\n",
                b"_method=GET",
            ),
        ),
        (
            "multipart/mixed",
            post(
                &token,
                CONTACTS,
                "Content-Type: multipart/mixed; boundary=b0und\r\n",
                &multipart("\"_method\"", "GET"),
            ),
        ),
        (
            "two boundaries",
            post(
                &token,
                CONTACTS,
                "Content-Type: multipart/form-data; boundary=other; boundary=b0und\r\n",
                &multipart("\"note\"", "hi"),
            ),
        ),
    ];
    for (how, request) in &refused {
        let (status, raw) = answer(&gw, request).await;
        assert_eq!(status, 400, "{how}: {raw}");
        assert_eq!(reason(&raw), "bad_request", "{how}: {raw}");
    }
    assert!(
        up.seen().iter().all(|s| !s.complete),
        "no whole request reached the upstream: {:?}",
        up.seen()
    );

    // The same requests without the override go through whole.
    let allowed: Vec<(&str, Vec<u8>)> = vec![
        (
            "json",
            post(
                &token,
                CONTACTS,
                "Content-Type: application/json\r\n",
                b"{\"_method\": \"GET\"}",
            ),
        ),
        (
            "form",
            post(
                &token,
                CONTACTS,
                form,
                b"contact%5Bname%5D=Ada&note=_method%3DGET",
            ),
        ),
        (
            "multipart",
            post(&token, CONTACTS, multi, &multipart("\"note\"", "_method")),
        ),
        (
            "graph form",
            post(&token, "/v23.0/106540352242922/media", form, b"_method=x"),
        ),
        // An upstream that reads no override parameter: only the headers
        // are refused there.
        (
            "opted out",
            post(&token, "/legacy?_method=GET", form, b"_method=GET"),
        ),
    ];
    let before = up.count();
    for (how, request) in &allowed {
        let (status, raw) = answer(&gw, request).await;
        assert_eq!(status, 200, "{how}: {raw}");
    }
    let seen = up.seen();
    assert_eq!(seen.len() - before, allowed.len());
    assert!(seen[before..]
        .iter()
        .all(|s| s.complete && s.method == "POST"));
    let (status, raw) = answer(
        &gw,
        post(&token, "/legacy", "X-HTTP-Method-Override: GET\r\n", b"").as_slice(),
    )
    .await;
    assert_eq!(status, 400, "{raw}");

    // On a read the header is only dropped: nothing to override.
    let resp = gw
        .client()
        .get(gw.url(CONTACTS))
        .bearer_auth(&token)
        .header("x-http-method-override", "DELETE")
        .header("x-original-url", "/api/v1/accounts/2/contacts")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    let last = up.seen().pop().expect("forwarded");
    assert_eq!(last.method, "GET");
    assert!(last.headers.get("x-http-method-override").is_none());
    assert!(
        last.headers.get("x-original-url").is_none(),
        "nor a path other than the one checked"
    );

    let records = gw.audit_records(23).await;
    let refused_records = harness::with_reason(&records, "bad_request");
    assert_eq!(refused_records.len(), refused.len() + 1, "{records:#?}");
    let header = refused_records[0];
    assert_eq!(header["route"], "contacts.create");
    assert_eq!(header["sub"], "priya", "the record names who asked");
    assert_eq!(header["upstream"], Value::Null);
    let query = refused_records[3];
    assert_eq!(
        query["rules"],
        json!(["upstreams.crm.method_override_params"])
    );
    let body = refused_records[4];
    assert_eq!(
        body["rules"],
        json!(["upstreams.crm.method_override_params"])
    );
    assert_eq!(body["sub"], "priya");
    assert_eq!(
        refused_records[7]["rules"],
        json!(["upstreams.graph.method_override_params"])
    );
}

#[tokio::test]
async fn a_streamed_form_body_is_cut_where_the_override_appears() {
    let up = EchoUpstream::start().await;
    let idp = Idp::start().await;
    let gw = harness::start(CONFIG, &[("UP", up.url()), ("JWKS", idp.jwks_url())]).await;
    let token = idp.token("priya", &["agent"], json!({}));
    let mut s = tokio::net::TcpStream::connect(gw.addr)
        .await
        .expect("connect");
    let head = format!(
        "POST {CONTACTS} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.expect("head");
    // The name arrives split over two chunks.
    for chunk in ["contact=1&_me", "thod=GET"] {
        let framed = format!("{:x}\r\n{chunk}\r\n", chunk.len());
        s.write_all(framed.as_bytes()).await.expect("chunk");
    }
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("the gateway answers and closes")
        .expect("read");
    let raw = String::from_utf8_lossy(&out);
    assert_eq!(harness::status_of(&raw), 400, "{raw}");
    assert!(up.seen().iter().all(|s| !s.complete), "{:?}", up.seen());
    let records = gw.audit_records(1).await;
    assert_eq!(records[0]["reason"], "bad_request");
    assert_eq!(
        records[0]["upstream"], "crm",
        "part of the body was forwarded"
    );
}

/// Format suffixes: Rails runs `GET /contacts/search.json` as the search
/// (rate-limited here), where the gateway's templates would take
/// `search.json` for the `{contact_id}` of the show route. Refused before
/// the upstream hears of it, unless the upstream says it reads no suffix.
#[tokio::test]
async fn a_format_suffix_never_reaches_an_upstream_that_would_read_it() {
    const SUFFIXES: &str = r#"
listeners: [{name: main, addr: "${LISTEN}"}]
admin: {addr: "${ADMIN}"}
upstreams:
  crm: {url: "${UP}"}
  files: {url: "${UP}", format_suffix: allow}
auth:
  issuer: https://idp.acme-retail.test/
  audiences: [chatwarden]
  algorithms: [EdDSA]
  jwks_url: "${JWKS}"
roles:
  agent: {permissions: [contacts.read]}
routes:
  - {name: contacts.search, upstream: crm, methods: [GET], path: "/api/v1/accounts/{account_id}/contacts/search", permission: contacts.read,
     rate_limit: {key: sub, per: 1h, burst: 1}}
  - {name: contacts.show, upstream: crm, methods: [GET], path: "/api/v1/accounts/{account_id}/contacts/{contact_id}", permission: contacts.read}
  - {name: files.get, upstream: files, methods: [GET], path: "/files/{name}", permission: contacts.read}
audit: {path: "${AUDIT}"}
"#;
    let up = EchoUpstream::start().await;
    let idp = Idp::start().await;
    let gw = harness::start(SUFFIXES, &[("UP", up.url()), ("JWKS", idp.jwks_url())]).await;
    let token = idp.token("priya", &["agent"], json!({}));
    let get = |path: &str| gw.client().get(gw.url(path)).bearer_auth(&token).send();

    for path in [
        "/api/v1/accounts/1/contacts/search.json?q=a",
        "/api/v1/accounts/1/contacts/search%2Ejson?q=a",
        "/api/v1/accounts/1/contacts/7.json",
    ] {
        let resp = get(path).await.expect("request");
        assert_eq!(resp.status(), 400, "{path}");
        let body: Value = resp.json().await.expect("json");
        assert_eq!(body["reason"], "bad_request", "{path}");
    }
    assert_eq!(up.count(), 0, "the upstream heard of none of them");

    // What the routes are for still works, and a suffix is fine where the
    // upstream takes dots as part of a name.
    for path in [
        "/api/v1/accounts/1/contacts/search?q=a",
        "/api/v1/accounts/1/contacts/7",
        "/files/report.pdf",
    ] {
        let resp = get(path).await.expect("request");
        assert_eq!(resp.status(), 200, "{path}");
    }
    let seen: Vec<String> = up.seen().iter().map(|r| r.target.clone()).collect();
    assert_eq!(
        seen,
        [
            "/api/v1/accounts/1/contacts/search?q=a",
            "/api/v1/accounts/1/contacts/7",
            "/files/report.pdf"
        ]
    );

    let records = gw.audit_records(6).await;
    let refused = harness::with_reason(&records, "bad_request");
    assert_eq!(refused.len(), 3, "{records:#?}");
    assert_eq!(refused[0]["route"], "contacts.show", "{records:#?}");
    assert_eq!(refused[0]["rules"], json!(["upstreams.crm.format_suffix"]));
    assert_eq!(refused[0]["sub"], "priya", "the record names who asked");
}
