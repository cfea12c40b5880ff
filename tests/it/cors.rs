//! CORS through the real proxy, against an upstream whose own CORS answer
//! is as permissive as some frameworks' defaults (any origin, with
//! credentials). The gateway decides alone which other sites' pages may
//! call it and read what they get: it answers their preflights itself,
//! marks their responses readable, and never passes the upstream's answer
//! on, so a page of any other site reads nothing, even with a staff
//! member's cookie.

use reqwest::header::HeaderMap;
use reqwest::Method;
use serde_json::{json, Value};

use crate::harness;
use crate::idp::Idp;
use crate::upstream::EchoUpstream;

const CONFIG: &str = r#"
listeners: [{name: main, addr: "${LISTEN}"}]
admin: {addr: "${ADMIN}", token_env: ADMIN_TOKEN}
upstreams:
  crm: {url: "${UP}"}
auth:
  issuer: https://idp.acme-retail.test/
  audiences: [chatwarden]
  algorithms: [EdDSA]
  jwks_url: "${JWKS}"
  cookie: cw_session
roles:
  agent: {permissions: [messages.send, conversations.read, contacts.read, contacts.export]}
redaction:
  - {name: phones, fields: ["$.target"]}
routes:
  - name: messages.create
    upstream: crm
    methods: [POST]
    path: "/api/v1/accounts/{account_id}/conversations/{conversation_id}/messages"
    permission: messages.send
  - name: conversations.list
    upstream: crm
    methods: [GET]
    path: "/api/v1/accounts/{account_id}/conversations"
    permission: conversations.read
  - name: contacts.list
    upstream: crm
    methods: [GET]
    path: "/api/v1/accounts/{account_id}/contacts"
    permission: contacts.read
    redaction: [phones]
  - name: contacts.export
    upstream: crm
    methods: [GET]
    path: "/api/v1/accounts/{account_id}/contacts/export"
    permission: contacts.export
    rate_limit: {per: 1h, burst: 1}
#CORS
audit: {path: "${AUDIT}"}
"#;

const CORS: &str = "\
cors:
  origins: [https://app.acme-retail.example]
  credentials: true
  allow_headers: [x-requested-with]
  expose_headers: [x-total-count]
  max_age: 1h";

const ADMIN_TOKEN: &str = "cors-admin-token-0001";
const APP: &str = "https://app.acme-retail.example";
const EVIL: &str = "https://evil.example";
const MESSAGES: &str = "/api/v1/accounts/1/conversations/7/messages";
const CONVERSATIONS: &str = "/api/v1/accounts/1/conversations";

async fn start(up: &EchoUpstream, idp: &Idp, cors: bool) -> harness::TestGateway {
    let yaml = CONFIG.replace("#CORS", if cors { CORS } else { "" });
    let gw = harness::start(
        &yaml,
        &[
            ("UP", up.url()),
            ("JWKS", idp.jwks_url()),
            ("ADMIN_TOKEN", ADMIN_TOKEN.into()),
        ],
    )
    .await;
    gw.wait_ready().await;
    gw
}

/// A browser's preflight: the status and the answer's headers.
async fn preflight(
    gw: &harness::TestGateway,
    path: &str,
    origin: &str,
    method: &str,
    headers: Option<&str>,
) -> (u16, HeaderMap) {
    let mut req = gw
        .client()
        .request(Method::OPTIONS, gw.url(path))
        .header("origin", origin)
        .header("access-control-request-method", method)
        .header("sec-fetch-mode", "cors")
        .header("sec-fetch-site", "cross-site");
    if let Some(h) = headers {
        req = req.header("access-control-request-headers", h);
    }
    let resp = req.send().await.expect("preflight");
    (resp.status().as_u16(), resp.headers().clone())
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// Every `Access-Control-*` header of a response, as `name: value` lines.
fn cors_headers(h: &HeaderMap) -> Vec<String> {
    h.iter()
        .filter(|(n, _)| n.as_str().starts_with("access-control-"))
        .map(|(n, v)| format!("{n}: {}", v.to_str().unwrap_or("?")))
        .collect()
}

fn varies_on_origin(h: &HeaderMap) -> bool {
    h.get_all("vary")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| v.trim().eq_ignore_ascii_case("origin"))
}

#[tokio::test]
async fn the_gateway_answers_preflights_for_listed_origins_only() {
    let up = EchoUpstream::start().await;
    let idp = Idp::start().await;
    let gw = start(&up, &idp, true).await;

    let (status, h) = preflight(
        &gw,
        MESSAGES,
        APP,
        "POST",
        Some("authorization,content-type,x-requested-with"),
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(header(&h, "access-control-allow-origin"), Some(APP));
    assert_eq!(header(&h, "access-control-allow-credentials"), Some("true"));
    assert_eq!(header(&h, "access-control-allow-methods"), Some("POST"));
    assert_eq!(
        header(&h, "access-control-allow-headers"),
        Some("authorization, content-type, x-requested-with")
    );
    assert_eq!(header(&h, "access-control-max-age"), Some("3600"));
    assert!(varies_on_origin(&h), "{h:?}");
    assert!(h.contains_key("x-request-id"));

    // A preflight costs no rate-limit token: the one export an hour allows
    // is still there after two.
    for _ in 0..2 {
        let (status, _) = preflight(
            &gw,
            "/api/v1/accounts/1/contacts/export",
            APP,
            "GET",
            Some("authorization"),
        )
        .await;
        assert_eq!(status, 204);
    }
    let token = idp.token("amelia", &["agent"], json!({}));
    let export = gw
        .client()
        .get(gw.url("/api/v1/accounts/1/contacts/export"))
        .bearer_auth(&token)
        .header("origin", APP)
        .send()
        .await
        .expect("export");
    assert_eq!(export.status(), 200);
    assert_eq!(up.count(), 1, "preflights never reach the upstream");

    // Another site, a sibling subdomain, another scheme.
    for origin in [
        EVIL,
        "https://crm.acme-retail.example",
        "http://app.acme-retail.example",
    ] {
        let (status, h) = preflight(&gw, MESSAGES, origin, "POST", Some("authorization")).await;
        assert_eq!(status, 403, "{origin}");
        assert!(cors_headers(&h).is_empty(), "{origin}: {h:?}");
    }
    // A header the policy does not allow.
    let (status, h) = preflight(
        &gw,
        MESSAGES,
        APP,
        "POST",
        Some("authorization, x-chatwarden-sub"),
    )
    .await;
    assert_eq!(status, 403);
    assert!(cors_headers(&h).is_empty(), "{h:?}");
    // A method no route takes there, and one no route ever takes.
    for method in ["DELETE", "TRACE"] {
        let (status, _) = preflight(&gw, MESSAGES, APP, method, None).await;
        assert_eq!(status, 404, "{method}");
    }
    assert_eq!(up.count(), 1, "refused preflights never reach the upstream");

    let records = gw.audit_records(10).await;
    let answered: Vec<&Value> = records
        .iter()
        .filter(|r| r["method"] == "OPTIONS")
        .collect();
    assert_eq!(answered.len(), 9, "one record per preflight: {records:#?}");
    let first = answered[0];
    assert_eq!(first["decision"], "allow");
    assert_eq!(first["status"], 204);
    assert_eq!(first["route"], "messages.create");
    assert_eq!(first["upstream"], Value::Null);
    assert_eq!(first["rules"], json!(["cors"]));
    let refused = harness::with_reason(&records, "cors_denied");
    assert_eq!(refused.len(), 4, "{records:#?}");
    assert_eq!(refused[0]["decision"], "deny");
    assert_eq!(refused[0]["status"], 403);
    assert_eq!(refused[0]["route"], "messages.create");
    assert_eq!(refused[0]["rules"], json!(["cors.origins"]));
    assert_eq!(refused[3]["rules"], json!(["cors.allow_headers"]));
    assert_eq!(harness::with_reason(&records, "no_route").len(), 2);
}

#[tokio::test]
async fn only_a_listed_origins_page_may_read_a_response() {
    let up = EchoUpstream::start().await;
    let idp = Idp::start().await;
    let gw = start(&up, &idp, true).await;
    let token = idp.token("amelia", &["agent"], json!({}));
    let cookie = format!("cw_session={token}");
    let client = gw.client();

    // The app's page, with the token in a header or in the cookie; a
    // streamed answer and a rewritten (fetched whole) one.
    for path in [CONVERSATIONS, "/api/v1/accounts/1/contacts"] {
        for (name, value) in [
            ("authorization", format!("Bearer {token}")),
            ("cookie", cookie.clone()),
        ] {
            let resp = client
                .get(gw.url(path))
                .header(name, &value)
                .header("origin", APP)
                .header("sec-fetch-site", "cross-site")
                .send()
                .await
                .expect("request");
            assert_eq!(resp.status(), 200, "{path} {name}");
            let h = resp.headers();
            assert_eq!(
                header(h, "access-control-allow-origin"),
                Some(APP),
                "{path} {name}"
            );
            assert_eq!(header(h, "access-control-allow-credentials"), Some("true"));
            assert_eq!(
                header(h, "access-control-expose-headers"),
                Some("x-request-id, www-authenticate, retry-after, x-total-count")
            );
            // The gateway's answer only: not the upstream's `*`s.
            assert_eq!(cors_headers(h).len(), 3, "{path} {name}: {h:?}");
            assert!(varies_on_origin(h), "{path}: {h:?}");
        }
    }

    // Another site's page, with a token it got hold of: nothing lets that
    // page see the answer, whatever the upstream said. (With the cookie,
    // its read would not be forwarded at all: see `origins`.)
    for path in [CONVERSATIONS, "/api/v1/accounts/1/contacts"] {
        let resp = client
            .get(gw.url(path))
            .bearer_auth(&token)
            .header("origin", EVIL)
            .header("sec-fetch-site", "cross-site")
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), 200, "{path}");
        let h = resp.headers();
        assert!(cors_headers(h).is_empty(), "{path}: {h:?}");
        assert!(varies_on_origin(h), "{path}: {h:?}");
    }
    assert!(
        up.seen().iter().all(|s| s.headers.contains_key("origin")),
        "the upstream did see the Origin (so its answer had CORS headers to drop)"
    );

    // The gateway's own refusals are readable by the app's page: it must
    // see its 401 (and the challenge) to sign in again.
    let resp = client
        .get(gw.url(CONVERSATIONS))
        .header("origin", APP)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 401);
    assert_eq!(
        header(resp.headers(), "access-control-allow-origin"),
        Some(APP)
    );
    assert!(resp.headers().contains_key("www-authenticate"));
    let resp = client
        .get(gw.url(CONVERSATIONS))
        .header("origin", EVIL)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 401);
    assert!(cors_headers(resp.headers()).is_empty());
}

#[tokio::test]
async fn an_origin_trusted_with_credentials_may_also_send_cookie_changes() {
    let up = EchoUpstream::start().await;
    let idp = Idp::start().await;
    let gw = start(&up, &idp, true).await;
    let token = idp.token("amelia", &["agent"], json!({}));
    let cookie = format!("cw_session={token}");
    let post = |origin: &'static str| {
        gw.client()
            .post(gw.url(MESSAGES))
            .header("cookie", &cookie)
            .header("origin", origin)
            .header("sec-fetch-site", "cross-site")
            .header("content-type", "application/json")
            .body(r#"{"content":"Refund approved"}"#)
            .send()
    };
    let from_app = post(APP).await.expect("request");
    assert_eq!(from_app.status(), 200);
    assert_eq!(
        header(from_app.headers(), "access-control-allow-origin"),
        Some(APP)
    );
    let from_evil = post(EVIL).await.expect("request");
    assert_eq!(from_evil.status(), 403);
    let body: Value = from_evil.json().await.expect("json");
    assert_eq!(body["reason"], "origin_denied");
    assert_eq!(up.count(), 1, "only the app's change was forwarded");
}

#[tokio::test]
async fn without_a_policy_no_page_reads_anything_and_a_reload_brings_one() {
    let up = EchoUpstream::start().await;
    let idp = Idp::start().await;
    let gw = start(&up, &idp, false).await;
    let token = idp.token("amelia", &["agent"], json!({}));

    // No route takes OPTIONS there: the preflight fails, nothing forwarded.
    let (status, h) = preflight(&gw, MESSAGES, APP, "POST", Some("authorization")).await;
    assert_eq!(status, 404);
    assert!(cors_headers(&h).is_empty(), "{h:?}");
    // The upstream's permissive answer is dropped all the same.
    let resp = gw
        .client()
        .get(gw.url(CONVERSATIONS))
        .bearer_auth(&token)
        .header("origin", APP)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    assert!(
        cors_headers(resp.headers()).is_empty(),
        "{:?}",
        resp.headers()
    );
    assert_eq!(up.count(), 1);

    // The ops team adds the policy; the next preflight is answered.
    std::fs::write(
        gw.dir.path().join("chatwarden.yaml"),
        CONFIG.replace("#CORS", CORS),
    )
    .expect("rewrite config");
    gw.reload(ADMIN_TOKEN).await;
    let (status, h) = preflight(&gw, MESSAGES, APP, "POST", Some("authorization")).await;
    assert_eq!(status, 204);
    assert_eq!(header(&h, "access-control-allow-origin"), Some(APP));
}
