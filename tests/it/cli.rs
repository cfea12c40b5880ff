//! The built binary: `check` exit codes and output.

use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_chatwarden"))
}

#[test]
fn check_accepts_the_example_and_rejects_a_broken_file() {
    let root = env!("CARGO_MANIFEST_DIR");
    let pki = tempfile::tempdir().expect("dir");
    crate::harness::make_pki(pki.path());
    let signing = pki.path().join("audit-signing.pem");
    std::fs::write(
        &signing,
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)
            .expect("key")
            .serialize_pem(),
    )
    .expect("write");
    let out = bin()
        .args(["check", "-c", &format!("{root}/config/chatwarden.yaml")])
        .env("AUDIT_SIGNING_KEY_FILE", &signing)
        .env("TLS_CERT_FILE", pki.path().join("cert.pem"))
        .env("TLS_KEY_FILE", pki.path().join("key.pem"))
        .env("CRM_API_TOKEN", "x")
        .env("CHATWOOT_PUBSUB_TOKEN", "pubsub-token-of-the-crm-user")
        .env("CHATWOOT_USER_ID", "1")
        .env("META_ACCESS_TOKEN", "y")
        .env("META_APP_SECRET", "z")
        .env("META_VERIFY_TOKEN", "v")
        .env("CHATWARDEN_ADMIN_TOKEN", "admin-token-0123456789")
        .env("SOC_WEBHOOK_TOKEN", "soc-token")
        .output()
        .expect("run chatwarden");
    assert!(
        out.status.success(),
        "example config should pass check: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("warning:"),
        "the example leaves nothing exposed: {}",
        String::from_utf8_lossy(&out.stdout)
    );

    let dir = tempfile::tempdir().expect("dir");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "routes:\n  - {name: r, upstream: ghost, path: /x, auth: none}\n",
    )
    .expect("write");
    let out = bin()
        .args(["check", "-c"])
        .arg(&bad)
        .output()
        .expect("run chatwarden");
    assert_eq!(out.status.code(), Some(1), "a broken config exits 1");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "{}:2:25: route `r` names unknown upstream `ghost`",
            bad.display()
        )),
        "check prints file:line:col: message, got: {stdout}"
    );
}

#[test]
fn check_warns_of_what_a_valid_config_leaves_exposed() {
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("open.yaml");
    std::fs::write(
        &config,
        r#"
listeners: [{name: public, addr: "0.0.0.0:8080"}, {name: local, addr: "127.0.0.1:8081"}]
admin: {addr: "0.0.0.0:9180"}
upstreams:
  crm: {url: "http://crm.internal.example", headers: {api_access_token: "${CRM}"}}
  dev: {url: "http://127.0.0.1:3000", headers: {api_access_token: "${CRM}"}}
  graph: {url: "https://graph.facebook.com", headers: {authorization: "Bearer ${CRM}"}}
  graph_linked: {url: "https://graph.facebook.com", headers: {authorization: "Bearer ${CRM}"}, links: [graph_linked]}
auth: {issuer: i, audiences: [a], algorithms: [HS256], hmac_secret: 0123456789abcdef0123456789abcdef}
roles: {agent: {permissions: [c.read]}}
redaction: [{name: pii, detect: [phone]}]
routes:
  - {name: contacts, upstream: crm, methods: [GET], path: /contacts, auth: none}
  - {name: list, upstream: crm, methods: [GET], path: /list, permission: c.read, redaction: [pii]}
  - {name: cable, upstream: crm, methods: [GET], path: /cable, permission: c.read, websocket: true}
  - {name: live, upstream: crm, methods: [GET], path: /live, permission: c.read, websocket: true, redaction: [pii]}
audit: {path: "-"}
"#,
    )
    .expect("write");
    let out = bin()
        .args(["check", "-c"])
        .arg(&config)
        .env("CRM", "crm-token-0123456789")
        .output()
        .expect("run chatwarden");
    assert_eq!(out.status.code(), Some(0), "warnings are not errors");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let warnings: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("warning: "))
        .collect();
    for want in [
        "listener `public` on 0.0.0.0:8080 speaks plain HTTP",
        "the admin listener on 0.0.0.0:9180 speaks plain HTTP",
        "the admin listener on 0.0.0.0:9180 asks for neither a token",
        "upstream `crm` is plain http:// to crm.internal.example: its injected credentials (api_access_token)",
        "audit.hash_chain is off",
        "route `cable` passes its WebSocket messages unread to every role with `c.read`, while other routes filter or mask their answers",
        "upstream `graph` is Meta's Graph API, whose answers link to itself (paging.next) and to its media host: without `links: [graph, …]`",
    ] {
        assert!(
            warnings.iter().any(|w| w.starts_with(want)),
            "expected a warning like `{want}`:\n{stdout}"
        );
    }
    assert_eq!(
        warnings.len(),
        7,
        "loopback, a stream that is read, and Graph with its links, are not warned about:\n{stdout}"
    );
}

#[test]
fn a_watch_interval_out_of_bounds_is_refused_before_anything_starts() {
    for (arg, want) in [
        ("--watch=10ms", "`10ms` is outside 100ms..10m"),
        ("--watch=soon", "soon"),
    ] {
        let out = bin()
            .args(["run", "-c", "/nonexistent/chatwarden.yaml", arg])
            .output()
            .expect("run chatwarden");
        assert_eq!(out.status.code(), Some(2), "a usage error: {arg}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("--watch") && stderr.contains(want),
            "{arg}: {stderr}"
        );
    }
}

/// Kills the demo when the test ends, however it ends.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_demo_starts_and_shows_allowed_and_denied_requests() {
    use std::io::{BufRead, BufReader};

    let gw = crate::harness::free_addr();
    let admin = crate::harness::free_addr();
    let mut child = Child(
        bin()
            .args([
                "demo",
                "--listen",
                &gw.to_string(),
                "--admin",
                &admin.to_string(),
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start the demo"),
    );
    let stdout = child.0.stdout.take().expect("stdout");
    // The guide is printed once everything is built; read until Ctrl-C line.
    let mut tokens = std::collections::HashMap::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("line");
        if let Some(rest) = line.strip_prefix("export ") {
            if let Some((k, v)) = rest.split_once('=') {
                tokens.insert(
                    k.to_string(),
                    v.split('\'').nth(1).unwrap_or_default().to_string(),
                );
            }
        }
        if line.starts_with("Ctrl-C") {
            break;
        }
    }
    for persona in [
        "AGENT",
        "SUPERVISOR",
        "SUPERVISOR_STALE",
        "CONTRACTOR",
        "FINANCE",
        "ADMIN",
    ] {
        assert!(
            tokens.get(persona).is_some_and(|t| t.len() > 100),
            "the demo prints a token for {persona}"
        );
    }
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !client
        .get(format!("http://{admin}/readyz"))
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the demo never became ready"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let call = |path: &str, who: &str| {
        client
            .get(format!("http://{gw}{path}"))
            .bearer_auth(tokens.get(who).cloned().unwrap_or_default())
            .send()
    };
    let ok = call("/api/v1/accounts/1/conversations", "AGENT")
        .await
        .expect("request");
    assert_eq!(
        ok.status(),
        200,
        "an agent reads conversations through the demo"
    );
    let body: serde_json::Value = ok.json().await.expect("json");
    assert!(
        body["data"]["payload"]
            .as_array()
            .is_some_and(|a| !a.is_empty()),
        "real demo data comes back"
    );
    assert!(
        body["data"]["meta"]
            .as_object()
            .is_some_and(|m| !m.is_empty() && m.values().all(serde_json::Value::is_null)),
        "the agent's counts are withheld: {}",
        body["data"]["meta"]
    );
    for (path, who, reason) in [
        (
            "/api/v1/accounts/1/contacts/export",
            "AGENT",
            "permission_denied",
        ),
        (
            "/api/v1/accounts/1/contacts/export",
            "SUPERVISOR_STALE",
            "mfa_stale",
        ),
        (
            "/api/v1/accounts/1/conversations",
            "CONTRACTOR",
            "outside_hours",
        ),
        ("/api/v1/accounts/1/contacts/export", "FINANCE", "ip_denied"),
        // The guide's ownership example: conversation 1 is Oliver's.
        ("/api/v1/accounts/1/conversations/1", "AGENT", "not_found"),
        // The guide's format suffix.
        (
            "/api/v1/accounts/1/contacts/search.json?q=blake",
            "AGENT",
            "bad_request",
        ),
    ] {
        let resp = call(path, who).await.expect("request");
        let body: serde_json::Value = resp.json().await.expect("json");
        assert_eq!(body["reason"], reason, "{who} on {path}");
    }
    let export = call("/api/v1/accounts/1/contacts/export", "SUPERVISOR")
        .await
        .expect("request");
    assert_eq!(export.status(), 200, "a supervisor with fresh MFA exports");
    let contacts: serde_json::Value = call("/api/v1/accounts/1/contacts", "AGENT")
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    let phone = contacts["payload"][0]["phone_number"]
        .as_str()
        .unwrap_or_default();
    assert!(
        phone.starts_with('+') && phone.contains('*'),
        "the demo masks phone numbers for agents: {phone}"
    );
    // The guide's card number and National Insurance number, typed by
    // customers into the agent's conversations: she gets them masked.
    for (typed, masked) in [
        ("4539 1488 0343 6467", "by card? **** **** **** 6467"),
        (
            "JG 10 37 59 A",
            "National Insurance number is ** ** ** *9 A",
        ),
    ] {
        let conversation = chatwarden::demo::upstream::data::messages()
            .iter()
            .find(|m| m.content.contains(typed))
            .unwrap_or_else(|| panic!("the demo data has `{typed}` in a message"))
            .conversation_id;
        let messages = call(
            &format!("/api/v1/accounts/1/conversations/{conversation}/messages"),
            "AGENT",
        )
        .await
        .expect("request")
        .text()
        .await
        .expect("body");
        assert!(
            messages.contains(masked) && !messages.contains(typed),
            "the demo masks `{typed}` for agents: {messages}"
        );
    }
    // The guide's live updates: the agent's stream carries her own
    // conversations' events, masked; the supervisor's, everyone's.
    let watch = |who: &str, count: &str| {
        let mut cmd = bin();
        cmd.args([
            "cable",
            &format!("ws://{gw}/cable"),
            "--token",
            tokens.get(who).map(String::as_str).unwrap_or_default(),
            "--count",
            count,
            "--seconds",
            "20",
        ]);
        tokio::task::spawn_blocking(move || cmd.output().expect("run chatwarden cable"))
    };
    let (agent, supervisor) = (watch("AGENT", "1"), watch("SUPERVISOR", "2"));
    let (agent, supervisor) = (
        agent.await.expect("agent"),
        supervisor.await.expect("supervisor"),
    );
    let agent_lines = String::from_utf8_lossy(&agent.stdout).to_string();
    assert!(
        agent.status.success(),
        "{agent_lines}{}",
        String::from_utf8_lossy(&agent.stderr)
    );
    let line = agent_lines.lines().next().unwrap_or_default();
    assert!(
        line.starts_with("message.created")
            && line.contains("assignee 3 ")
            && line.contains("(+*********1"),
        "the agent's event is one of her conversations', masked: {agent_lines}"
    );
    let supervisor_lines = String::from_utf8_lossy(&supervisor.stdout).to_string();
    assert!(
        supervisor_lines.lines().count() == 2
            && supervisor_lines.lines().any(|l| !l.contains("assignee 3 "))
            && !supervisor_lines.contains('*'),
        "the supervisor's stream has another agent's conversation, unmasked: {supervisor_lines}"
    );
    // The guide's links: Meta's next page and a customer's photo lead back
    // through the gateway, and work from there.
    let waba = chatwarden::demo::upstream::data::WABA_ID;
    let page: serde_json::Value =
        call(&format!("/v23.0/{waba}/message_templates?limit=2"), "AGENT")
            .await
            .expect("request")
            .json()
            .await
            .expect("json");
    let next = page["paging"]["next"].as_str().unwrap_or_default();
    assert!(
        next.starts_with(&format!("http://{gw}/v23.0/{waba}/message_templates?")),
        "the next page leads through the gateway: {page}"
    );
    let data = chatwarden::demo::upstream::data::media();
    let (uk, de) = (&data[0], &data[1]);
    let item: serde_json::Value = call(
        &format!("/v23.0/{}?phone_number_id={}", uk.id, uk.phone_number_id),
        "AGENT",
    )
    .await
    .expect("request")
    .json()
    .await
    .expect("json");
    let url = item["url"].as_str().unwrap_or_default();
    let path = url
        .strip_prefix(&format!("http://{gw}"))
        .unwrap_or_else(|| panic!("the photo's URL leads through the gateway: {item}"));
    let file = call(path, "AGENT").await.expect("download");
    assert_eq!(file.status(), 200);
    assert_eq!(file.headers()["content-type"], "image/png");
    // The CRM's attachment link, and its redirect, lead through the gateway.
    let messages: serde_json::Value = call("/api/v1/accounts/1/conversations/7/messages", "AGENT")
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    let data_url = messages["payload"]
        .as_array()
        .and_then(|m| {
            m.iter()
                .find_map(|m| m["attachments"][0]["data_url"].as_str())
        })
        .unwrap_or_else(|| panic!("conversation 7 has a photo: {messages}"));
    let path = data_url
        .strip_prefix(&format!("http://{gw}"))
        .unwrap_or_else(|| panic!("the attachment leads through the gateway: {data_url}"));
    let shade = call(path, "AGENT").await.expect("attachment");
    assert_eq!(
        shade.status(),
        200,
        "the redirect is followed through the gateway"
    );
    assert_eq!(shade.headers()["content-type"], "image/png");
    // The German number's photo: not hers to name, and naming none is refused.
    for path in [
        format!("/v23.0/{}?phone_number_id={}", de.id, de.phone_number_id),
        format!("/v23.0/{}", de.id),
    ] {
        let refused = call(&path, "AGENT").await.expect("request");
        assert_eq!(refused.status(), 403, "{path}");
    }
    // The guide's new customer: on her own number's inbox, not the other.
    let create = |inbox: u32| {
        client
            .post(format!("http://{gw}/api/v1/accounts/1/contacts"))
            .bearer_auth(tokens.get("AGENT").cloned().unwrap_or_default())
            .header("content-type", "application/json")
            .body(format!(
                r#"{{"inbox_id":{inbox},"name":"Lena Fischer","phone_number":"+44770090055{inbox}"}}"#
            ))
            .send()
    };
    let created: serde_json::Value = create(1)
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_eq!(created["payload"]["contact"]["name"], "Lena Fischer");
    let refused = create(2).await.expect("request");
    assert_eq!(refused.status(), 403);
    let body: serde_json::Value = refused.json().await.expect("json");
    assert_eq!(body["reason"], "scope_denied");
}

const POLICY: &str = r#"
listeners: [{name: main, addr: "127.0.0.1:1"}]
upstreams:
  crm: {url: "http://127.0.0.1:2"}
auth:
  issuer: https://idp.test/
  audiences: [chatwarden]
  algorithms: [EdDSA]
  jwks_url: http://127.0.0.1:3/jwks.json
  claims: {attributes: {phone_number_ids: wa_numbers, inbox_ids: inboxes}}
  mfa: {amr_any: [otp]}
roles:
  agent: {permissions: [conversations.read, conversations.create]}
  supervisor: {inherits: [agent], permissions: [contacts.export, contacts.read_pii]}
redaction:
  - {name: pii, unless_permission: contacts.read_pii, fields: ["$.data.payload[*].meta.sender.phone_number"], detect: [phone, email]}
access:
  - name: office-hours
    roles: [agent]
    time: {days: [mon-fri], from: "08:00", to: "18:00", tz: Europe/London}
routes:
  - {name: conversations, upstream: crm, methods: [GET], path: "/api/v1/accounts/{account_id}/conversations", permission: conversations.read,
     redaction: [pii]}
  - {name: export, upstream: crm, methods: [GET], path: "/api/v1/accounts/{account_id}/contacts/export", permission: contacts.export, mfa_max_age: 15m}
  - {name: open, upstream: crm, methods: [POST], path: "/api/v1/accounts/{account_id}/conversations", permission: conversations.create,
     scope: [{body: inbox_id, claim: inbox_ids}]}
"#;

const CASES: &str = r#"
cases:
  - name: agent in office hours
    who: {sub: amelia, roles: [agent]}
    method: GET
    path: /api/v1/accounts/1/conversations
    at: "2026-11-24T10:00:00[Europe/London]"
    expect: allow
  - name: agent gets the sender's number masked
    who: {sub: amelia, roles: [agent]}
    method: GET
    path: /api/v1/accounts/1/conversations
    at: "2026-11-24T10:00:00[Europe/London]"
    response: {data: {payload: [{id: 1, meta: {sender: {phone_number: "+447700900123"}}}]}}
    expect: allow
    expect_response: {data: {payload: [{id: 1, meta: {sender: {phone_number: "+*********123"}}}]}}
  - name: agent at night
    who: {sub: amelia, roles: [agent]}
    method: GET
    path: /api/v1/accounts/1/conversations
    at: "2026-11-24T22:30:00[Europe/London]"
    expect: outside_hours
  - name: first hour of BST counts as office hours
    who: {sub: amelia, roles: [agent]}
    method: GET
    path: /api/v1/accounts/1/conversations
    at: "2026-03-30T07:30:00Z"
    expect: allow
  - name: supervisor export with stale MFA
    who: {sub: sam, roles: [supervisor], amr: [otp]}
    auth_age: 1h
    method: GET
    path: /api/v1/accounts/1/contacts/export
    at: "2026-11-24T10:00:00[Europe/London]"
    expect: mfa_stale
  - name: anonymous
    method: GET
    path: /api/v1/accounts/1/conversations
    at: "2026-11-24T10:00:00Z"
    expect: token_missing
  - name: agent opens a conversation on her inbox
    who: {sub: amelia, roles: [agent], inboxes: [1]}
    method: POST
    path: /api/v1/accounts/1/conversations
    body: {inbox_id: 1, source_id: "447700900123"}
    at: "2026-11-24T10:00:00[Europe/London]"
    expect: allow
  - name: agent opens a conversation on another inbox
    who: {sub: amelia, roles: [agent], inboxes: [1]}
    method: POST
    path: /api/v1/accounts/1/conversations
    body: {inbox_id: 2, source_id: "447700900123"}
    at: "2026-11-24T10:00:00[Europe/London]"
    expect: scope_denied
  - name: the query would stand in for the body
    who: {sub: amelia, roles: [agent], inboxes: [1]}
    method: POST
    path: /api/v1/accounts/1/conversations?inbox_id=2
    body: {inbox_id: 1}
    at: "2026-11-24T10:00:00[Europe/London]"
    expect: bad_request
"#;

/// `chatwarden test -c CONFIG CASES`.
fn policy_test(config: &std::path::Path, cases: &std::path::Path) -> std::process::Output {
    bin()
        .arg("test")
        .arg("-c")
        .arg(config)
        .arg(cases)
        .output()
        .expect("run")
}

#[test]
fn explain_and_policy_tests_use_the_proxy_decision() {
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("policy.yaml");
    std::fs::write(&config, POLICY).expect("write");
    let cases = dir.path().join("cases.yaml");
    std::fs::write(&cases, CASES).expect("write");

    let out = policy_test(&config, &cases);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "every case should pass:\n{stdout}");
    assert!(stdout.contains("9 passed, 0 failed"), "{stdout}");

    // An answer that reaches the caller otherwise than expected fails,
    // and shows what the caller gets.
    std::fs::write(
        &cases,
        CASES.replacen(
            r#"phone_number: "+*********123"}}}]}}"#,
            r#"phone_number: "+447700900123"}}}]}}"#,
            1,
        ),
    )
    .expect("write");
    let out = policy_test(&config, &cases);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("agent gets the sender's number masked")
                && l.contains("allow (answer differs)")
                && l.ends_with("FAIL")),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            r#"    the caller gets: {"data":{"payload":[{"id":1,"meta":{"sender":{"phone_number":"+*********123"}}}]}}"#
        ),
        "{stdout}"
    );

    // A wrong expectation fails the run and is pointed out.
    std::fs::write(
        &cases,
        CASES.replacen("expect: outside_hours", "expect: allow", 1),
    )
    .expect("write");
    let out = policy_test(&config, &cases);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "a mismatch exits 1:\n{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("agent at night") && l.ends_with("FAIL")),
        "{stdout}"
    );

    // A case on a route that reads the body, without a body: not a guess.
    std::fs::write(
        &cases,
        CASES.replacen(
            "    body: {inbox_id: 2, source_id: \"447700900123\"}\n",
            "",
            1,
        ),
    )
    .expect("write");
    let out = policy_test(&config, &cases);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.lines().any(
            |l| l.starts_with("agent opens a conversation on another inbox")
                && l.contains(
                    "error: route `open` checks the JSON body's `inbox_id`: give the case a `body`"
                )
        ),
        "{stdout}"
    );

    let out = bin()
        .arg("explain")
        .arg("-c")
        .arg(&config)
        .args([
            "--method",
            "GET",
            "--path",
            "/api/v1/accounts/1/conversations",
        ])
        .args(["--claims", r#"{"sub":"amelia","roles":["agent"]}"#])
        .args(["--at", "2026-11-24T22:30:00[Europe/London]"])
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("decision: deny (outside_hours, 403)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("rules:    office-hours"),
        "explain names the deciding rule:\n{stdout}"
    );
    assert!(stdout.contains("office-hours"), "{stdout}");

    // A sample answer, as the agent would get it in hours (from a file)
    // and as the supervisor would (from stdin).
    let sample = r#"{"data":{"payload":[{"id":1,"meta":{"sender":{"phone_number":"+447700900123"}},"last":"mail jo@example.com"}]}}"#;
    let answer = dir.path().join("answer.json");
    std::fs::write(&answer, sample).expect("write");
    let explain = |claims: &str, response: &std::path::Path| {
        let mut child = bin()
            .arg("explain")
            .arg("-c")
            .arg(&config)
            .args(["--path", "/api/v1/accounts/1/conversations"])
            .args(["--claims", claims])
            .args(["--at", "2026-11-24T10:30:00[Europe/London]"])
            .arg("--response")
            .arg(response)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("run");
        if let Some(mut stdin) = child.stdin.take() {
            std::io::Write::write_all(&mut stdin, sample.as_bytes()).expect("stdin");
        }
        let out = child.wait_with_output().expect("run");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let stdout = explain(r#"{"sub":"amelia","roles":["agent"]}"#, &answer);
    assert!(
        stdout.contains(
            "response: 0 row(s) removed, 2 value(s) masked:\n\
             {\"data\":{\"payload\":[{\"id\":1,\"meta\":{\"sender\":{\"phone_number\":\"+*********123\"}},\"last\":\"mail j***@example.com\"}]}}"
        ),
        "{stdout}"
    );
    let stdout = explain(
        r#"{"sub":"priya","roles":["supervisor"]}"#,
        std::path::Path::new("-"),
    );
    assert!(
        stdout.contains(
            "response: sent as the upstream wrote it (nothing to filter or mask for this caller)"
        ),
        "{stdout}"
    );
    // A file that is not there is the question's fault: exit 2.
    let out = bin()
        .arg("explain")
        .arg("-c")
        .arg(&config)
        .args(["--path", "/api/v1/accounts/1/conversations"])
        .args(["--response", "/nonexistent/answer.json"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("chatwarden explain: cannot read the response /nonexistent/answer.json"));
}
