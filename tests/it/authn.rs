//! Authentication and authorization through the real proxy, with a real
//! JWKS endpoint: every refusal has its code, its audit record, and never
//! reaches the upstream.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::harness::{self, TestGateway};
use crate::idp::Idp;
use crate::upstream::EchoUpstream;

const UK: &str = "106540352242922";
const DE: &str = "209876543210987";
const APP_SECRET: &str = "meta-app-secret-for-tests";

fn config() -> String {
    let today = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    let closed: Vec<String> = [-1i64, 0, 1]
        .iter()
        .map(|d| {
            today
                .checked_add(jiff::Span::new().days(*d))
                .expect("date")
                .to_string()
        })
        .collect();
    format!(
        r#"
listeners:
  - {{name: main, addr: "${{LISTEN}}"}}
admin: {{addr: "${{ADMIN}}", token_env: ADMIN_TOKEN}}
upstreams:
  crm: {{url: "${{UP}}", headers: {{api_access_token: crm-secret-0123456789}}}}
  graph: {{url: "${{UP}}", headers: {{authorization: "Bearer meta-secret-0123456789"}}}}
auth:
  issuer: https://idp.acme-retail.test/
  audiences: [chatwarden]
  algorithms: [EdDSA]
  jwks_url: "${{JWKS}}"
  jwks: {{unknown_kid_interval: 1s}}
  claims:
    attributes: {{user_id: uid, phone_number_ids: wa_numbers}}
  mfa: {{amr_any: [otp, hwk, mfa]}}
  revoked: {{subjects_file: "${{DIR}}/revoked-subjects.txt"}}
  meta_webhook: {{app_secret: {APP_SECRET}, verify_token: verify-me}}
roles:
  agent: {{permissions: [conversations.read, whatsapp.send]}}
  supervisor: {{inherits: [agent], permissions: [contacts.export, whatsapp.any_number]}}
access:
  - {{name: office-only, roles: [agent], ip_allow: [127.0.0.0/8]}}
  - {{name: closed-this-week, routes: [closed], time: {{days: [all], from: "00:00", to: "00:00", tz: UTC, closed: [{closed}]}}}}
  - {{name: vpn-only, routes: [vpn], ip_allow: [10.0.0.0/8]}}
  - {{name: vpn-dry-run, routes: [conversations], ip_allow: [10.0.0.0/8], mode: audit}}
routes:
  - {{name: conversations, upstream: crm, methods: [GET], path: "/api/v1/accounts/{{account_id}}/conversations", permission: conversations.read}}
  - {{name: export, upstream: crm, methods: [GET], path: "/api/v1/accounts/{{account_id}}/contacts/export", permission: contacts.export, mfa_max_age: 5m}}
  - name: send
    upstream: graph
    methods: [POST]
    path: "/{{version}}/{{phone_number_id}}/messages"
    permission: whatsapp.send
    scope: [{{param: phone_number_id, claim: phone_number_ids, unless_permission: whatsapp.any_number}}]
  - {{name: closed, upstream: crm, methods: [GET], path: /closed, permission: conversations.read}}
  - {{name: vpn, upstream: crm, methods: [GET], path: /vpn, permission: conversations.read}}
  - {{name: webhook, upstream: crm, methods: [GET, POST], path: /webhooks/whatsapp, auth: meta_signature}}
audit: {{path: "${{AUDIT}}"}}
"#,
        closed = closed.join(", ")
    )
}

struct Env {
    gw: TestGateway,
    up: EchoUpstream,
    idp: Arc<Idp>,
}

async fn start() -> Env {
    let up = EchoUpstream::start().await;
    let idp = Idp::start().await;
    let gw = harness::start_with_files(
        &config(),
        &[
            ("UP", up.url()),
            ("JWKS", idp.jwks_url()),
            ("ADMIN_TOKEN", "admin-token-for-tests-0001".into()),
        ],
        &[("revoked-subjects.txt", "# leavers\nleaver@acme\n")],
    )
    .await;
    wait_ready(&gw).await;
    Env { gw, up, idp }
}

/// /readyz turns 200 once the first JWKS fetch succeeded.
async fn wait_ready(gw: &TestGateway) {
    let url = format!("http://{}/readyz", gw.admin);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let ok = gw
            .client()
            .get(&url)
            .send()
            .await
            .is_ok_and(|r| r.status() == 200);
        if ok {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "gateway never became ready (JWKS not fetched)"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

fn agent(idp: &Idp) -> String {
    idp.token(
        "amelia@acme",
        &["agent"],
        json!({"uid": 3, "wa_numbers": [UK]}),
    )
}

async fn get(
    env: &Env,
    path: &str,
    token: Option<&str>,
) -> (u16, serde_json::Value, reqwest::header::HeaderMap) {
    let mut req = env.gw.client().get(env.gw.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.json().await.unwrap_or(serde_json::Value::Null);
    (status, body, headers)
}

/// `token` with `roles: [admin]` written into its payload: the signature
/// no longer matches.
fn tamper(token: &str) -> String {
    use base64::Engine;
    let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
    let mut claims: serde_json::Value =
        serde_json::from_slice(&e.decode(&parts[1]).expect("b64")).expect("json");
    claims["roles"] = json!(["admin"]);
    parts[1] = e.encode(claims.to_string());
    parts.join(".")
}

#[tokio::test]
async fn missing_and_bad_tokens_are_401_and_never_reach_the_upstream() {
    let env = start().await;
    let idp = &env.idp;
    let now = jiff::Timestamp::now().as_second();
    let good = agent(idp);
    let tampered = tamper(&good);
    let parts: Vec<&str> = tampered.split('.').collect();
    let unsigned = {
        use base64::Engine;
        let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.",
            e.encode(r#"{"alg":"none","typ":"JWT"}"#),
            parts[1]
        )
    };
    let cases: Vec<(&str, Option<String>, &str)> = vec![
        ("no token", None, "token_missing"),
        ("garbage", Some("not-a-jwt".into()), "token_invalid"),
        ("tampered payload", Some(tampered), "token_invalid"),
        ("alg none", Some(unsigned), "token_invalid"),
        ("oversized", Some("a".repeat(10 * 1024)), "token_invalid"),
        (
            "expired",
            Some(idp.token(
                "amelia@acme",
                &["agent"],
                json!({"exp": now - 3600, "iat": now - 7200}),
            )),
            "token_expired",
        ),
        (
            "wrong audience",
            Some(idp.token("amelia@acme", &["agent"], json!({"aud": "another-app"}))),
            "token_invalid",
        ),
        (
            "wrong issuer",
            Some(idp.token(
                "amelia@acme",
                &["agent"],
                json!({"iss": "https://evil.test/"}),
            )),
            "token_invalid",
        ),
        (
            "revoked subject (file)",
            Some(idp.token("leaver@acme", &["agent"], json!({}))),
            "token_revoked",
        ),
    ];
    for (what, token, code) in &cases {
        let (status, body, headers) =
            get(&env, "/api/v1/accounts/1/conversations", token.as_deref()).await;
        assert_eq!(status, 401, "{what}: expected 401, body {body}");
        assert_eq!(body["reason"], *code, "{what}: {body}");
        assert!(
            headers
                .get("www-authenticate")
                .is_some_and(|v| v.to_str().unwrap_or_default().starts_with("Bearer")),
            "{what}: a 401 names the Bearer scheme"
        );
    }
    assert_eq!(
        env.up.count(),
        0,
        "no unauthenticated request may reach the upstream"
    );
    let records = env.gw.audit_records(cases.len()).await;
    assert_eq!(
        records.len(),
        cases.len(),
        "one audit record per refused request"
    );
    for (r, (what, _, code)) in records.iter().zip(&cases) {
        assert_eq!(r["reason"], *code, "{what}: {r}");
        assert_eq!(r["decision"], "deny");
        assert!(
            r["upstream"].is_null(),
            "{what}: a refused request names no upstream: {r}"
        );
    }
    assert_eq!(
        records.last().map(|r| r["sub"].clone()),
        Some(json!("leaver@acme")),
        "a revoked caller is named in the audit"
    );
}

#[tokio::test]
async fn a_valid_token_is_forwarded_without_the_token_and_with_identity() {
    let env = start().await;
    let token = agent(&env.idp);
    let (status, _, _) = get(&env, "/api/v1/accounts/1/conversations", Some(&token)).await;
    assert_eq!(status, 200);
    let seen = env.up.seen();
    assert_eq!(seen.len(), 1);
    let h = &seen[0].headers;
    assert!(
        h.get("authorization").is_none(),
        "the staff token never reaches the CRM"
    );
    assert_eq!(
        h.get("api_access_token").and_then(|v| v.to_str().ok()),
        Some("crm-secret-0123456789")
    );
    assert_eq!(
        h.get("x-chatwarden-sub").and_then(|v| v.to_str().ok()),
        Some("amelia@acme")
    );
    assert_eq!(
        h.get("x-chatwarden-roles").and_then(|v| v.to_str().ok()),
        Some("agent")
    );
    let records = env.gw.audit_records(1).await;
    assert_eq!(records[0]["sub"], "amelia@acme");
    assert_eq!(records[0]["roles"], json!(["agent"]));
    assert_eq!(records[0]["decision"], "allow");
    assert_eq!(
        records[0]["rules"],
        json!(["vpn-dry-run"]),
        "an audit-mode rule that would deny is recorded but does not deny"
    );
    let metrics = env.gw.metrics_as(Some("admin-token-for-tests-0001")).await;
    assert!(
        metrics.contains("chatwarden_dry_run_denials_total{rule=\"vpn-dry-run\"} 1"),
        "the would-be denial is counted for the rule:\n{metrics}"
    );
    let line = std::fs::read_to_string(&env.gw.audit_path).expect("audit");
    assert!(
        !line.contains(&token),
        "the token never reaches the audit file"
    );
}

#[tokio::test]
async fn policy_refusals_carry_their_reason() {
    let env = start().await;
    let idp = &env.idp;
    let agent_token = agent(idp);
    let now = jiff::Timestamp::now().as_second();
    let sup_fresh = idp.token("sam@acme", &["supervisor"], json!({"uid": 9}));
    let sup_stale = idp.token(
        "sam@acme",
        &["supervisor"],
        json!({"auth_time": now - 3600}),
    );
    let sup_no_mfa = idp.token("sam@acme", &["supervisor"], json!({"amr": ["pwd"]}));

    let (s, b, _) = get(
        &env,
        "/api/v1/accounts/1/contacts/export",
        Some(&agent_token),
    )
    .await;
    assert_eq!(
        (s, b["reason"].as_str()),
        (403, Some("permission_denied")),
        "agents may not export"
    );

    let (s, b, h) = get(&env, "/api/v1/accounts/1/contacts/export", Some(&sup_stale)).await;
    assert_eq!(
        (s, b["reason"].as_str()),
        (401, Some("mfa_stale")),
        "an export needs MFA within 5 minutes"
    );
    let challenge = h
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(
        challenge.contains("error=\"insufficient_user_authentication\"")
            && challenge.contains("max_age=\"300\""),
        "RFC 9470 step-up challenge expected, got {challenge}"
    );
    let (s, b, _) = get(
        &env,
        "/api/v1/accounts/1/contacts/export",
        Some(&sup_no_mfa),
    )
    .await;
    assert_eq!((s, b["reason"].as_str()), (401, Some("mfa_required")));
    let (s, _, _) = get(&env, "/api/v1/accounts/1/contacts/export", Some(&sup_fresh)).await;
    assert_eq!(s, 200, "a supervisor with fresh MFA may export");

    let (s, b, _) = get(&env, "/closed", Some(&agent_token)).await;
    assert_eq!((s, b["reason"].as_str()), (403, Some("outside_hours")));
    let (s, b, _) = get(&env, "/vpn", Some(&agent_token)).await;
    assert_eq!((s, b["reason"].as_str()), (403, Some("ip_denied")));

    let client = env.gw.client();
    let send = |pnid: &str, token: &str| {
        client
            .post(env.gw.url(&format!("/v23.0/{pnid}/messages")))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(r#"{"messaging_product":"whatsapp","to":"447700900123","type":"text","text":{"body":"hi"}}"#)
            .send()
    };
    let own = send(UK, &agent_token).await.expect("send");
    assert_eq!(own.status(), 200, "an agent may send from their own number");
    let other = send(DE, &agent_token).await.expect("send");
    assert_eq!(
        other.status(),
        403,
        "an agent may not send from another team's number"
    );
    let body: serde_json::Value = other.json().await.expect("json");
    assert_eq!(body["reason"], "scope_denied");
    let sup = send(DE, &sup_fresh).await.expect("send");
    assert_eq!(
        sup.status(),
        200,
        "whatsapp.any_number lifts the number binding"
    );

    let forwarded: Vec<String> = env.up.seen().iter().map(|s| s.target.clone()).collect();
    assert_eq!(
        forwarded,
        vec![
            "/api/v1/accounts/1/contacts/export".to_string(),
            format!("/v23.0/{UK}/messages"),
            format!("/v23.0/{DE}/messages"),
        ],
        "only the allowed requests reach the upstream"
    );
    let records = env.gw.audit_records(9).await;
    let closed = records
        .iter()
        .find(|r| r["reason"] == "outside_hours")
        .expect("outside_hours audited");
    assert_eq!(
        closed["rules"],
        json!(["closed-this-week"]),
        "the audit names the rule that decided"
    );
    assert_eq!(closed["route"], "closed");
}

#[tokio::test]
async fn revocation_through_the_admin_endpoint_takes_effect_on_the_next_request() {
    let env = start().await;
    let token = agent(&env.idp);
    let (s, _, _) = get(&env, "/api/v1/accounts/1/conversations", Some(&token)).await;
    assert_eq!(s, 200);
    let admin = format!("http://{}/revoke", env.gw.admin);
    let client = env.gw.client();
    let unauth = client
        .post(&admin)
        .body(r#"{"sub":"amelia@acme"}"#)
        .send()
        .await
        .expect("revoke");
    assert_eq!(unauth.status(), 401, "revoking needs the admin token");
    let ok = client
        .post(&admin)
        .bearer_auth("admin-token-for-tests-0001")
        .body(r#"{"sub":"amelia@acme"}"#)
        .send()
        .await
        .expect("revoke");
    assert_eq!(ok.status(), 200);
    let (s, b, _) = get(&env, "/api/v1/accounts/1/conversations", Some(&token)).await;
    assert_eq!(
        (s, b["reason"].as_str()),
        (401, Some("token_revoked")),
        "the cached token is refused at once"
    );
    assert_eq!(
        env.up.count(),
        1,
        "nothing after the revocation reaches the upstream"
    );
}

#[tokio::test]
async fn a_subject_added_to_the_revocation_file_is_refused_after_a_reload() {
    let env = start().await;
    let token = agent(&env.idp);
    let (s, _, _) = get(&env, "/api/v1/accounts/1/conversations", Some(&token)).await;
    assert_eq!(s, 200);
    // Only the list changes, not the YAML: the reload must still see a new
    // config, not "unchanged".
    let list = env.gw.dir.path().join("revoked-subjects.txt");
    let mut text = std::fs::read_to_string(&list).expect("list");
    text.push_str("amelia@acme  # left on 2026-11-30\n");
    std::fs::write(&list, text).expect("write list");
    let answer = env.gw.reload("admin-token-for-tests-0001").await;
    assert_eq!(answer["reloaded"], true, "{answer}");
    let (s, b, _) = get(&env, "/api/v1/accounts/1/conversations", Some(&token)).await;
    assert_eq!((s, b["reason"].as_str()), (401, Some("token_revoked")));
}

#[tokio::test]
async fn key_rotation_at_the_idp_needs_no_reload() {
    let env = start().await;
    let before = env.idp.hits();
    env.idp.rotate();
    let token = agent(&env.idp);
    let (s, b, _) = get(&env, "/api/v1/accounts/1/conversations", Some(&token)).await;
    assert_eq!(
        s, 200,
        "a token signed with the new key is accepted after a refetch: {b}"
    );
    assert!(
        env.idp.hits() > before,
        "the unknown kid triggered a JWKS refetch"
    );
    // Junk kids cannot hammer the IdP: a burst of unknown kids costs at most one more fetch.
    let hits = env.idp.hits();
    let bogus = {
        let (k, _) = chatwarden::auth::generate_dev_key().expect("key");
        chatwarden::auth::mint(
            &json!({"iss": crate::idp::ISSUER, "aud": "chatwarden", "sub": "x", "exp": jiff::Timestamp::now().as_second() + 60}),
            &k,
        )
        .expect("mint")
    };
    for _ in 0..5 {
        let (s, _, _) = get(&env, "/api/v1/accounts/1/conversations", Some(&bogus)).await;
        assert_eq!(s, 401);
    }
    assert!(
        env.idp.hits() <= hits + 1,
        "unknown-kid refetches are rate-limited ({} fetches)",
        env.idp.hits() - hits
    );
}

#[tokio::test]
async fn meta_webhooks_are_checked_before_forwarding() {
    let env = start().await;
    let hook = chatwarden::webhook::MetaWebhook::new(APP_SECRET, None, 65536);
    let body =
        r#"{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[]}]}"#;
    let client = env.gw.client();
    let post = |sig: Option<String>| {
        let mut r = client
            .post(env.gw.url("/webhooks/whatsapp"))
            .header("content-type", "application/json")
            .body(body);
        if let Some(s) = sig {
            r = r.header("x-hub-signature-256", s);
        }
        r.send()
    };
    let bad = post(Some(format!("sha256={}", "0".repeat(64))))
        .await
        .expect("post");
    assert_eq!(bad.status(), 403);
    let missing = post(None).await.expect("post");
    assert_eq!(missing.status(), 403);
    assert_eq!(
        env.up.count(),
        0,
        "unsigned or badly signed webhooks never reach the upstream"
    );
    // Over the webhook's 64KB, signed or not: read no further, forward none.
    let large = format!("{body}{}", " ".repeat(70_000));
    let resp = client
        .post(env.gw.url("/webhooks/whatsapp"))
        .header(
            "x-hub-signature-256",
            hook.signature_header(large.as_bytes()),
        )
        .body(large)
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 413);
    let good = post(Some(hook.signature_header(body.as_bytes())))
        .await
        .expect("post");
    assert_eq!(good.status(), 200);
    let seen = env.up.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].body.as_ref(),
        body.as_bytes(),
        "the checked bytes are the forwarded bytes"
    );

    let hs = client
        .get(env.gw.url("/webhooks/whatsapp?hub.mode=subscribe&hub.verify_token=verify-me&hub.challenge=1158201444"))
        .send()
        .await
        .expect("handshake");
    assert_eq!(hs.status(), 200);
    assert_eq!(hs.text().await.expect("text"), "1158201444");
    let hs_bad = client
        .get(
            env.gw
                .url("/webhooks/whatsapp?hub.mode=subscribe&hub.verify_token=nope&hub.challenge=1"),
        )
        .send()
        .await
        .expect("handshake");
    assert_eq!(hs_bad.status(), 403);
    assert_eq!(
        env.up.count(),
        1,
        "the handshake is answered by the gateway"
    );
    let records = env.gw.audit_records(6).await;
    let reasons: Vec<_> = records
        .iter()
        .map(|r| r["reason"].as_str().unwrap_or("-").to_string())
        .collect();
    assert_eq!(
        reasons,
        [
            "signature_invalid",
            "signature_invalid",
            "body_too_large",
            "-",
            "-",
            "signature_invalid"
        ],
        "{records:?}"
    );
}

#[tokio::test]
async fn the_admin_explain_endpoint_answers_with_the_live_policy() {
    let env = start().await;
    let client = env.gw.client();
    let ask = |body: Value, token: Option<&'static str>| {
        let mut req = client
            .post(format!("http://{}/explain", env.gw.admin))
            .json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    let admin = Some("admin-token-for-tests-0001");

    let token = env.idp.token(
        "amelia@acme",
        &["agent"],
        json!({"uid": 7, "wa_numbers": ["111"]}),
    );
    let resp = ask(
        json!({"method": "POST", "path": "/v23.0/222/messages", "token": token, "ip": "127.0.0.1"}),
        admin,
    )
    .await
    .expect("explain");
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["decision"], "deny", "{body}");
    assert_eq!(body["reason"], "scope_denied", "{body}");
    assert_eq!(body["status"], 403, "{body}");
    assert_eq!(body["route"], "send", "{body}");
    assert!(
        body["explanation"]
            .as_str()
            .is_some_and(|t| t.contains("phone_number_id")),
        "the explanation names the scope check: {body}"
    );

    let resp = ask(
        json!({"method": "GET", "path": "/api/v1/accounts/1/conversations",
               "claims": {"sub": "amelia@acme", "roles": ["agent"]}, "ip": "127.0.0.1"}),
        admin,
    )
    .await
    .expect("explain");
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["decision"], "allow", "{body}");
    assert_eq!(
        body["rules"],
        json!(["vpn-dry-run"]),
        "dry-run hits are listed: {body}"
    );

    // Runtime revocations are part of the live answer.
    client
        .post(format!("http://{}/revoke", env.gw.admin))
        .bearer_auth("admin-token-for-tests-0001")
        .json(&json!({"sub": "amelia@acme"}))
        .send()
        .await
        .expect("revoke");
    let resp = ask(
        json!({"method": "POST", "path": "/v23.0/111/messages", "token": token, "ip": "127.0.0.1"}),
        admin,
    )
    .await
    .expect("explain");
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["reason"], "token_revoked", "{body}");

    let resp = ask(json!({"method": "GET"}), admin).await.expect("explain");
    assert_eq!(resp.status(), 400, "a malformed question is a 400");
    let resp = ask(json!({"method": "GET", "path": "/"}), None)
        .await
        .expect("explain");
    assert_eq!(resp.status(), 401, "explain needs the admin token");
    assert_eq!(env.up.count(), 0, "explaining never reaches an upstream");
}

#[tokio::test]
async fn a_client_sending_bad_signatures_gets_no_new_checks_for_a_while() {
    let up = EchoUpstream::start().await;
    let idp = Idp::start().await;
    let gw = harness::start(
        r#"
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
  bad_signatures: {max: 3, per: 1m}
roles:
  agent: {permissions: [contacts.read]}
routes:
  - {name: contacts, upstream: crm, methods: [GET], path: /contacts, permission: contacts.read}
audit: {path: "${AUDIT}"}
"#,
        &[("UP", up.url()), ("JWKS", idp.jwks_url())],
    )
    .await;
    // A token verified while the first key fetch is being installed is
    // filed under the old key generation and not reused: keys first.
    gw.wait_ready().await;
    let client = gw.client();
    // The clients sit behind a trusted proxy, which names them.
    let get = |token: String, from: &'static str| {
        client
            .get(gw.url("/contacts"))
            .bearer_auth(token)
            .header("x-forwarded-for", from)
            .send()
    };
    const MALLORY: &str = "203.0.113.7";
    let known = idp.token("amelia", &["agent"], json!({}));
    let status = |r: reqwest::Response| r.status().as_u16();
    assert_eq!(status(get(known.clone(), MALLORY).await.expect("req")), 200);

    for _ in 0..3 {
        let resp = get(tamper(&known), MALLORY).await.expect("request");
        assert_eq!(resp.status(), 401);
    }
    let resp = get(tamper(&known), MALLORY).await.expect("request");
    assert_eq!(
        resp.status(),
        429,
        "the fourth bad signature is not checked"
    );
    let wait: u64 = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert!((1..=60).contains(&wait), "{wait}");
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["reason"], "rate_limited");

    // A token verified before still works; a new one is not checked.
    assert_eq!(status(get(known, MALLORY).await.expect("req")), 200);
    let new = idp.token("ben", &["agent"], json!({}));
    assert_eq!(status(get(new.clone(), MALLORY).await.expect("req")), 429);
    // Another client is not affected.
    assert_eq!(status(get(new, "198.51.100.4").await.expect("req")), 200);
    assert_eq!(up.count(), 3, "only the three good answers reached the CRM");

    let records = gw.audit_records(8).await;
    assert_eq!(records.len(), 8, "one record per request");
    let limited: Vec<&Value> = records
        .iter()
        .filter(|r| r["reason"] == "rate_limited")
        .collect();
    assert_eq!(limited.len(), 2, "{records:?}");
    for r in limited {
        assert_eq!(r["rules"], json!(["auth.bad_signatures"]), "{r}");
        assert_eq!(r["client_ip"], MALLORY, "{r}");
        assert_eq!(r["status"], 429, "{r}");
    }
}
