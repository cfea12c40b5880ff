//! Cross-site request forgery through the real proxy: a browser sends the
//! token cookie with requests other sites' pages make, so a change that
//! authenticates with the cookie is refused unless the browser says it
//! came from the gateway's own origin or a trusted one. A token in the
//! `Authorization` header, reads, and non-browser clients are unaffected.

use serde_json::{json, Value};

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
  cookie: cw_session
  cookie_origins: [https://crm.acme-retail.example]
roles:
  agent: {permissions: [messages.send, conversations.read]}
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
audit: {path: "${AUDIT}"}
"#;

const MESSAGES: &str = "/api/v1/accounts/1/conversations/7/messages";

#[tokio::test]
async fn a_cookie_authenticated_change_from_another_site_is_refused() {
    let up = EchoUpstream::start().await;
    let idp = Idp::start().await;
    let gw = harness::start(CONFIG, &[("UP", up.url()), ("JWKS", idp.jwks_url())]).await;
    let token = idp.token("amelia", &["agent"], json!({}));
    let cookie = format!("theme=dark; cw_session={token}");
    let own = format!("http://{}", gw.addr);
    let client = gw.client();
    let post = |headers: &[(&str, &str)]| {
        let mut req = client
            .post(gw.url(MESSAGES))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("content=Refund+approved");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send()
    };
    let status = |r: reqwest::Response| r.status().as_u16();

    // A form on evil.example, posted by a current browser.
    let forged = post(&[
        ("cookie", &cookie),
        ("sec-fetch-site", "cross-site"),
        ("origin", "https://evil.example"),
    ])
    .await
    .expect("request");
    assert_eq!(forged.status(), 403);
    let body: Value = forged.json().await.expect("json");
    assert_eq!(body["reason"], "origin_denied");
    // The same from an older browser, which sends Origin alone.
    let old_browser = post(&[("cookie", &cookie), ("origin", "https://evil.example")]);
    assert_eq!(status(old_browser.await.expect("request")), 403);
    // A sibling subdomain is another origin too.
    let sibling = post(&[
        ("cookie", &cookie),
        ("sec-fetch-site", "same-site"),
        ("origin", "https://wiki.acme-retail.example"),
    ]);
    assert_eq!(status(sibling.await.expect("request")), 403);
    assert_eq!(up.count(), 0, "no forged change reached the CRM");

    let bearer = format!("Bearer {token}");
    // What passes: the gateway's own pages, the trusted CRM, a token in
    // the header, a read, and a client that is not a browser.
    let cases: [(&str, Vec<(&str, &str)>); 5] = [
        (
            "own page",
            vec![
                ("cookie", &cookie),
                ("sec-fetch-site", "same-origin"),
                ("origin", &own),
            ],
        ),
        (
            "own page, older browser",
            vec![("cookie", &cookie), ("origin", &own)],
        ),
        (
            "trusted origin",
            vec![
                ("cookie", &cookie),
                ("sec-fetch-site", "same-site"),
                ("origin", "https://crm.acme-retail.example"),
            ],
        ),
        (
            "header token",
            vec![
                ("authorization", &bearer),
                ("sec-fetch-site", "cross-site"),
                ("origin", "https://evil.example"),
            ],
        ),
        ("not a browser", vec![("cookie", &cookie)]),
    ];
    for (what, headers) in &cases {
        let resp = post(headers).await.expect("request");
        assert_eq!(resp.status(), 200, "{what}");
    }
    // Reads: another site's page cannot see the answer, but an <img> it
    // hid would still be forwarded, audited under the staff member's name
    // and counted against their rate limits. A link followed to the
    // gateway is the browser's own navigation; a trusted page's fetch
    // says where it came from.
    let read = |headers: &[(&'static str, &'static str)]| {
        let mut req = client
            .get(gw.url("/api/v1/accounts/1/conversations"))
            .header("cookie", &cookie);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send()
    };
    let hidden_image = read(&[
        ("sec-fetch-site", "cross-site"),
        ("sec-fetch-mode", "no-cors"),
        ("sec-fetch-dest", "image"),
    ]);
    assert_eq!(status(hidden_image.await.expect("request")), 403);
    let evil_fetch = read(&[
        ("sec-fetch-site", "cross-site"),
        ("sec-fetch-mode", "cors"),
        ("origin", "https://evil.example"),
    ]);
    assert_eq!(status(evil_fetch.await.expect("request")), 403);
    let link = read(&[
        ("sec-fetch-site", "cross-site"),
        ("sec-fetch-mode", "navigate"),
        ("sec-fetch-dest", "document"),
    ]);
    assert_eq!(status(link.await.expect("request")), 200, "a link followed");
    let crm_fetch = read(&[
        ("sec-fetch-site", "same-site"),
        ("sec-fetch-mode", "cors"),
        ("origin", "https://crm.acme-retail.example"),
    ]);
    assert_eq!(status(crm_fetch.await.expect("request")), 200, "trusted");
    assert_eq!(up.count(), 7);

    let records = gw.audit_records(12).await;
    let refused = harness::with_reason(&records, "origin_denied");
    assert_eq!(refused.len(), 5, "{records:#?}");
    let first = refused[0];
    assert_eq!(first["decision"], "deny");
    assert_eq!(first["status"], 403);
    assert_eq!(first["sub"], "amelia", "whose cookie was used");
    assert_eq!(first["route"], "messages.create");
    assert_eq!(first["rules"], json!(["auth.cookie_origins"]));
    assert_eq!(first["upstream"], Value::Null);
}
