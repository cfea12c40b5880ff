//! Redaction through the real proxy, against the demo CRM's realistic
//! Chatwoot data: an agent's contacts, conversations and messages arrive
//! with phone numbers and e-mail addresses masked, in the configured
//! fields and in free text; a supervisor cleared for personal data sees
//! them; a body that cannot be masked never reaches the client.

use serde_json::{json, Value};

use crate::harness;
use crate::upstream::EchoUpstream;
use chatwarden::demo::upstream::data;

const CONFIG: &str = r#"
listeners: [{name: main, addr: "${LISTEN}"}]
admin: {addr: "${ADMIN}"}
upstreams:
  crm: {url: "${CRM}", headers: {api_access_token: "${CRM_TOKEN}"}}
  echo: {url: "${ECHO}"}
auth:
  issuer: https://idp.acme-retail.test/
  audiences: [chatwarden]
  algorithms: [EdDSA]
  jwks_url: "${JWKS}"
  claims: {attributes: {user_id: uid}}
roles:
  agent: {permissions: [contacts.read, messages.read]}
  supervisor: {inherits: [agent], permissions: [contacts.read_pii]}
redaction:
  - name: contact-list
    unless_permission: contacts.read_pii
    fields:
      - "$.payload[*].phone_number"
      - "$.payload[*].email"
      - "$.payload[*].contact_inboxes[*].source_id"
    detect: [phone, email]
  - name: contact
    unless_permission: contacts.read_pii
    fields: ["$.payload.phone_number", "$.payload.email", "$.payload.contact_inboxes[*].source_id"]
    detect: [phone, email]
  - name: messages
    unless_permission: contacts.read_pii
    fields: ["$.meta.contact.phone_number", "$.meta.contact.email"]
    detect: [phone, email]
    style: full
  - name: shaped
    fields: ["$.target.phone"]
routes:
  - {name: contacts, upstream: crm, methods: [GET], path: "/api/v1/accounts/{account_id}/contacts", permission: contacts.read, redaction: [contact-list]}
  - {name: contact, upstream: crm, methods: [GET], path: "/api/v1/accounts/{account_id}/contacts/{id}", permission: contacts.read, redaction: [contact]}
  - {name: messages, upstream: crm, methods: [GET], path: "/api/v1/accounts/{account_id}/conversations/{conversation_id}/messages", permission: messages.read, redaction: [messages]}
  - {name: echo, upstream: echo, methods: [GET], path: "/echo/{rest*}", permission: contacts.read, redaction: [shaped]}
audit: {path: "${AUDIT}"}
"#;

/// Every phone number and e-mail address of the demo's customers, as the
/// CRM stores them, plus the bare digits WhatsApp uses as `source_id`.
fn customer_pii() -> Vec<String> {
    let mut out = Vec::new();
    for c in data::contacts() {
        out.push(c.phone_number.to_string());
        out.push(c.phone_number.trim_start_matches('+').to_string());
        if let Some(e) = c.email {
            out.push(e.to_string());
        }
    }
    out
}

fn leaks(body: &str) -> Vec<String> {
    customer_pii()
        .into_iter()
        .filter(|pii| body.contains(pii.as_str()))
        .collect()
}

#[tokio::test]
async fn agents_get_masked_personal_data_and_cleared_supervisors_do_not() {
    let echo = EchoUpstream::start().await;
    let (gw, idp) = harness::start_with_demo_crm(CONFIG, &[("ECHO", echo.url())]).await;
    let client = gw.client();
    let agent = idp.token("amelia", &["agent"], json!({"uid": 3}));
    let supervisor = idp.token("priya", &["supervisor"], json!({"uid": 1}));
    let get = |path: &str, token: &str| client.get(gw.url(path)).bearer_auth(token).send();

    // Every contact page, every contact, and a conversation whose customer
    // wrote their phone number into a message: nothing leaks to an agent.
    let pages = data::contacts()
        .len()
        .div_ceil(chatwarden::demo::upstream::CONTACTS_PER_PAGE);
    let mut first_page = Value::Null;
    for page in 1..=pages {
        let resp = get(&format!("/api/v1/accounts/1/contacts?page={page}"), &agent)
            .await
            .expect("request");
        assert_eq!(resp.status(), 200);
        let text = resp.text().await.expect("body");
        assert!(
            leaks(&text).is_empty(),
            "page {page} leaks {:?}",
            leaks(&text)
        );
        if page == 1 {
            first_page = serde_json::from_str(&text).expect("masked body is JSON");
        }
    }
    let first = &first_page["payload"][0];
    let phone = first["phone_number"].as_str().unwrap_or_default();
    assert!(
        phone.starts_with('+') && phone.contains('*'),
        "partial masks keep the shape: {first}"
    );
    assert!(
        first["email"].as_str().is_some_and(|e| e.contains("***@")),
        "{first}"
    );
    assert_eq!(first["id"], json!(data::contacts()[0].id), "ids stay");
    assert!(
        first["name"].is_string(),
        "names are not in this rule: {first}"
    );
    for c in data::contacts().iter().take(5) {
        let resp = get(&format!("/api/v1/accounts/1/contacts/{}", c.id), &agent)
            .await
            .expect("request");
        let text = resp.text().await.expect("body");
        assert!(
            leaks(&text).is_empty(),
            "contact {} leaks {:?}",
            c.id,
            leaks(&text)
        );
    }
    let chatty = data::messages()
        .iter()
        .find(|m| m.content.contains("+44 7700 900123"))
        .expect("the demo data has a phone number in a message")
        .conversation_id;
    let resp = get(
        &format!("/api/v1/accounts/1/conversations/{chatty}/messages"),
        &agent,
    )
    .await
    .expect("request");
    let text = resp.text().await.expect("body");
    assert!(!text.contains("7700 900123"), "free text is masked: {text}");
    assert!(text.contains("[redacted]"), "full style: {text}");
    assert!(leaks(&text).is_empty(), "{:?}", leaks(&text));

    // A supervisor cleared for personal data gets the CRM's own body.
    let resp = get("/api/v1/accounts/1/contacts?page=1", &supervisor)
        .await
        .expect("request");
    let body: Value = resp.json().await.expect("json");
    assert_eq!(
        body["payload"][0]["phone_number"],
        json!(data::contacts()[0].phone_number),
        "unmasked for contacts.read_pii"
    );

    // A body whose shape does not fit the rule (the echo answers
    // `{"target": "<text>"}` where an object was configured) cannot be
    // known to be masked: it never reaches the client.
    let resp = get("/echo/+447700900123", &agent).await.expect("request");
    assert_eq!(resp.status(), 502, "unmaskable body refused");
    let body: Value = resp.json().await.expect("error body");
    assert_eq!(body["reason"], "redaction_failed", "{body}");

    // The audit trail counts what was masked, and holds no customer data.
    let records = gw.audit_records(pages + 5 + 3).await;
    let masked: u64 = records
        .iter()
        .filter(|r| r["sub"] == "amelia")
        .filter_map(|r| r["redactions"].as_u64())
        .sum();
    assert!(masked >= 80, "the audit counts masked values: {masked}");
    let audit = std::fs::read_to_string(&gw.audit_path).expect("audit");
    assert!(
        leaks(&audit).is_empty(),
        "the audit file holds no customer PII"
    );
}
