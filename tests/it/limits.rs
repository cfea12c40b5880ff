//! Rate limits through the real proxy: a caller's exports are counted per
//! subject, the one over the limit gets 429 with `Retry-After` and never
//! reaches the upstream, other callers keep their own allowance, and the
//! audit record says which limit refused.

use serde_json::{json, Value};

use crate::harness;
use crate::idp::Idp;
use crate::upstream::EchoUpstream;

const CONFIG: &str = r#"
listeners: [{name: main, addr: "${LISTEN}"}]
admin: {addr: "${ADMIN}"}
network: {trusted_proxies: [127.0.0.0/8]}
upstreams:
  crm: {url: "${UP}"}
auth:
  issuer: https://idp.acme-retail.test/
  audiences: [chatwarden]
  algorithms: [EdDSA]
  jwks_url: "${JWKS}"
roles:
  supervisor: {permissions: [contacts.export, contacts.read]}
routes:
  - name: export
    upstream: crm
    methods: [GET]
    path: "/api/v1/accounts/{account_id}/contacts/export"
    permission: contacts.export
    rate_limit: {per: 1h, burst: 2}
  - name: search
    upstream: crm
    methods: [GET]
    path: "/api/v1/accounts/{account_id}/contacts/search"
    permission: contacts.read
    rate_limit: {key: route, per: 1m, burst: 3}
  - {name: status, upstream: crm, methods: [GET], path: /status, auth: none, rate_limit: {key: ip, per: 1h, burst: 2}}
audit: {path: "${AUDIT}"}
"#;

#[tokio::test]
async fn exports_over_the_limit_get_429_with_retry_after_and_never_reach_the_crm() {
    let up = EchoUpstream::start().await;
    let idp = Idp::start().await;
    let gw = harness::start(CONFIG, &[("UP", up.url()), ("JWKS", idp.jwks_url())]).await;
    let client = gw.client();
    let priya = idp.token("priya", &["supervisor"], json!({}));
    let sam = idp.token("sam", &["supervisor"], json!({}));
    let get = |path: &'static str, token: &str| client.get(gw.url(path)).bearer_auth(token).send();
    let export = "/api/v1/accounts/1/contacts/export";

    for n in 1..=2 {
        let resp = get(export, &priya).await.expect("request");
        assert_eq!(resp.status(), 200, "export {n} of 2 per hour");
    }
    let resp = get(export, &priya).await.expect("request");
    assert_eq!(resp.status(), 429, "the third export within the hour");
    let retry: u64 = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert!(
        (1700..=1800).contains(&retry),
        "one export comes back every 30 minutes: {retry}"
    );
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["reason"], "rate_limited");
    assert_eq!(up.count(), 2, "the refused export never reached the CRM");
    let resp = get(export, &sam).await.expect("request");
    assert_eq!(
        resp.status(),
        200,
        "another supervisor has their own allowance"
    );

    // A route-wide ceiling counts everyone together.
    let search = "/api/v1/accounts/1/contacts/search";
    let statuses = [
        get(search, &priya).await.expect("request").status(),
        get(search, &sam).await.expect("request").status(),
        get(search, &priya).await.expect("request").status(),
        get(search, &sam).await.expect("request").status(),
    ];
    assert_eq!(statuses.map(|s| s.as_u16()), [200, 200, 200, 429]);

    let records = gw.audit_records(8).await;
    let limited: Vec<&Value> = records
        .iter()
        .filter(|r| r["reason"] == "rate_limited")
        .collect();
    assert_eq!(limited.len(), 2, "{records:#?}");
    assert_eq!(limited[0]["sub"], "priya");
    assert_eq!(limited[0]["status"], 429);
    assert_eq!(limited[0]["rules"], json!(["export.rate_limit"]));
    assert_eq!(limited[0]["upstream"], Value::Null, "nothing was forwarded");
}

#[tokio::test]
async fn an_ipv6_client_is_limited_by_its_slash_64() {
    let up = EchoUpstream::start().await;
    let idp = Idp::start().await;
    let gw = harness::start(CONFIG, &[("UP", up.url()), ("JWKS", idp.jwks_url())]).await;
    let client = gw.client();
    // Clients named by the trusted proxy in front (the test connects from
    // 127.0.0.1).
    let from = |addr: &'static str| {
        client
            .get(gw.url("/status"))
            .header("x-forwarded-for", addr)
            .send()
    };
    for (addr, status) in [
        ("2001:db8:0:7::1", 200),
        ("2001:db8:0:7::2", 200),
        ("2001:db8:0:7:ffff::3", 429),
        ("2001:db8:0:8::1", 200),
        ("203.0.113.7", 200),
    ] {
        let resp = from(addr).await.expect("request");
        assert_eq!(resp.status(), status, "{addr}");
    }
}
