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

/// Replaces `path` as a ConfigMap volume or an editor's save-by-rename
/// does, so that the watch never reads it half written (a half-written
/// file is rejected, and then the whole one applied: a rejection more).
fn replace_file(path: &std::path::Path, text: &str) {
    let next = path.with_extension("yaml.next");
    std::fs::write(&next, text).expect("write the new file");
    std::fs::rename(&next, path).expect("rename it over the old one");
}

/// `run --watch`: a renewed certificate and an edited file are applied
/// with no signal and no admin call; a broken edit is rejected once and
/// the running config keeps serving.
#[tokio::test]
async fn a_watched_config_reloads_itself_when_its_files_change() {
    use std::time::{Duration, Instant};

    let up = EchoUpstream::start().await;
    let pki = tempfile::tempdir().expect("dir");
    let old_ca = harness::make_pki(pki.path());
    let gw = harness::start_watching(
        crate::tls::TLS_LISTENER,
        &[
            ("UP", up.url()),
            ("PKI", pki.path().display().to_string()),
            ("ADMIN_TOKEN", crate::tls::ADMIN_TOKEN.into()),
        ],
        &[],
        Some(Duration::from_millis(20)),
    )
    .await;
    let status = |ca: String, path: &'static str| {
        let gw = &gw;
        async move {
            let client = crate::tls::client_trusting(Some(&ca), gw)
                .build()
                .expect("client");
            let url = format!("https://localhost:{}{path}", gw.addr.port());
            client.get(&url).send().await.map(|r| r.status().as_u16())
        }
    };
    let until = |what: &'static str, ca: String, path: &'static str, want: u16| {
        let status = &status;
        async move {
            let started = Instant::now();
            while status(ca.clone(), path).await.ok() != Some(want) {
                assert!(started.elapsed() < Duration::from_secs(10), "{what}");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    assert_eq!(status(old_ca.clone(), "/contacts").await.ok(), Some(200));

    // cert-manager renews the certificate in place.
    let new_ca = harness::TestCa::new();
    new_ca.issue(
        &["localhost", "127.0.0.1"],
        &pki.path().join("cert.pem"),
        &pki.path().join("key.pem"),
    );
    until(
        "the renewed certificate is served",
        new_ca.pem(),
        "/contacts",
        200,
    )
    .await;

    // An edit that adds a route.
    let config = gw.dir.path().join("chatwarden.yaml");
    let yaml = std::fs::read_to_string(&config).expect("config");
    let with_agents = yaml.replace(
        "routes:\n",
        "routes:\n  - {name: agents, upstream: crm, methods: [GET], path: /agents, auth: none}\n",
    );
    replace_file(&config, &with_agents);
    until("the new route is served", new_ca.pem(), "/agents", 200).await;

    // A broken edit is rejected; the running config stays.
    replace_file(
        &config,
        &with_agents.replace("upstream: crm", "upstream: nope"),
    );
    let started = Instant::now();
    // Rejections of the broken version. (The renewal above may have been
    // seen half done, a new certificate beside the old key: a rejection
    // too, of another version, followed by the applied one.)
    let rejected = |records: &[serde_json::Value]| {
        records
            .iter()
            .filter(|r| {
                r["event"] == "reload"
                    && r["decision"] == "deny"
                    && r["detail"]
                        .as_str()
                        .is_some_and(|d| d.contains("unknown upstream `nope`"))
            })
            .count()
    };
    loop {
        let records = harness::read_jsonl(&gw.audit_path);
        if rejected(&records) == 1 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no rejection on record"
        );
        let _ = gw.handles.audit.flush().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(status(new_ca.pem(), "/agents").await.ok(), Some(200));
    // Further checks of the same broken files do not try it again.
    let reloader = gw.handles.reloader.clone().expect("a reloader");
    let checked = reloader.watch_checks();
    while reloader.watch_checks() < checked + 5 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the watch stopped"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // Fixed: applied, and the broken version was tried once only. (The
    // reload is recorded just after the new config takes effect: wait for
    // its record, not only for the 404.)
    replace_file(&config, &yaml);
    until("the fixed file is applied", new_ca.pem(), "/agents", 404).await;
    let applied_records = |records: &[serde_json::Value]| {
        records
            .iter()
            .filter(|r| r["event"] == "reload" && r["decision"] == "allow")
            .map(|r| r["detail"].as_str().expect("detail").to_string())
            .collect::<Vec<_>>()
    };
    let started = Instant::now();
    let records = loop {
        let _ = gw.handles.audit.flush().await;
        let records = harness::read_jsonl(&gw.audit_path);
        if applied_records(&records).len() >= 3 || started.elapsed() > Duration::from_secs(10) {
            break records;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!(rejected(&records), 1, "tried once: {records:#?}");
    let applied = applied_records(&records);
    assert_eq!(applied.len(), 3, "{applied:?}");
    assert!(
        applied
            .iter()
            .all(|d| d.starts_with("config file changed: applied ")),
        "{applied:?}"
    );
}
