//! Hot reload (invariant 6): a good file is published while traffic
//! flows, a bad one never replaces the good one, and both are audited.

use crate::harness;
use crate::upstream::EchoUpstream;

const BEFORE: &str = r#"
listeners: [{name: main, addr: "${LISTEN}"}]
admin: {addr: "${ADMIN}", token_env: ADMIN_TOKEN}
upstreams:
  crm: {url: "${UP}"}
routes:
  - {name: contacts, upstream: crm, methods: [GET], path: /contacts, auth: none}
  - {name: agents, upstream: crm, methods: [GET], path: /agents, auth: none}
audit: {path: "${AUDIT}"}
"#;

#[tokio::test]
async fn reload_publishes_good_files_and_keeps_serving_on_bad_ones() {
    let up = EchoUpstream::start().await;
    let gw = harness::start(
        BEFORE,
        &[
            ("UP", up.url()),
            ("ADMIN_TOKEN", "reload-admin-token-0001".into()),
        ],
    )
    .await;
    let client = gw.client();
    let config = gw.dir.path().join("chatwarden.yaml");
    let reload = || {
        client
            .post(format!("http://{}/reload", gw.admin))
            .bearer_auth("reload-admin-token-0001")
            .send()
    };
    assert_eq!(
        client
            .get(gw.url("/agents"))
            .send()
            .await
            .expect("req")
            .status(),
        200
    );

    // The ops team removes a route: after the reload it is default-denied.
    std::fs::write(
        &config,
        BEFORE.replace(
            "  - {name: agents, upstream: crm, methods: [GET], path: /agents, auth: none}\n",
            "",
        ),
    )
    .expect("write");
    let resp = reload().await.expect("reload");
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["reloaded"], true, "{body}");
    assert_eq!(
        client
            .get(gw.url("/agents"))
            .send()
            .await
            .expect("req")
            .status(),
        404
    );
    assert_eq!(
        client
            .get(gw.url("/contacts"))
            .send()
            .await
            .expect("req")
            .status(),
        200
    );

    // A broken file is refused with file:line:col; the running config stays.
    std::fs::write(
        &config,
        BEFORE.replace(
            "upstream: crm, methods: [GET], path: /contacts",
            "upstream: nope, methods: [GET], path: /contacts",
        ),
    )
    .expect("write");
    let resp = reload().await.expect("reload");
    assert_eq!(resp.status(), 400);
    let body: serde_json::Value = resp.json().await.expect("json");
    let errors = body["errors"].to_string();
    assert!(
        errors.contains("chatwarden.yaml:") && errors.contains("unknown upstream `nope`"),
        "{body}"
    );
    assert_eq!(
        client
            .get(gw.url("/contacts"))
            .send()
            .await
            .expect("req")
            .status(),
        200,
        "still serving"
    );

    // Changing what cannot change in a running process is refused too.
    std::fs::write(
        &config,
        BEFORE.replace(
            "audit: {path: \"${AUDIT}\"}",
            "audit: {path: \"${AUDIT}.other\"}",
        ),
    )
    .expect("write");
    let resp = reload().await.expect("reload");
    assert_eq!(resp.status(), 400);

    // So is a listener's write buffer: it is fixed when the socket is built.
    std::fs::write(
        &config,
        BEFORE.replace(
            r#"addr: "${LISTEN}"}"#,
            r#"addr: "${LISTEN}", write_buffer: 4KB}"#,
        ),
    )
    .expect("write");
    let resp = reload().await.expect("reload");
    assert_eq!(resp.status(), 400);
    let body: serde_json::Value = resp.json().await.expect("json");
    assert!(
        body["errors"].to_string().contains("listeners changed"),
        "{body}"
    );

    assert_eq!(
        client
            .post(format!("http://{}/reload", gw.admin))
            .send()
            .await
            .expect("reload")
            .status(),
        401,
        "reloading needs the admin token"
    );

    let records = gw.audit_records(9).await;
    let reloads: Vec<_> = records.iter().filter(|r| r["event"] == "reload").collect();
    assert_eq!(
        reloads.len(),
        5,
        "every reload attempt is an audit record, the one without a token too: {records:?}"
    );
    assert_eq!(reloads[4]["decision"], "deny");
    assert_eq!(
        reloads[4]["detail"],
        "POST /reload from 127.0.0.1: refused: no admin token"
    );
    assert!(reloads.iter().all(|r| r["client_ip"] == "127.0.0.1"));
    assert_eq!(reloads[0]["decision"], "allow");
    assert_eq!(reloads[1]["decision"], "deny");
    assert!(
        reloads[1]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("unknown upstream")),
        "{:?}",
        reloads[1]
    );
    let versions: Vec<_> = records
        .iter()
        .filter(|r| r["event"].is_null())
        .map(|r| r["config_version"].clone())
        .collect();
    assert_ne!(
        versions.first(),
        versions.last(),
        "requests after the reload carry the new version"
    );
}
