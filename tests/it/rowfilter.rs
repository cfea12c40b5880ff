//! Row filters through the real proxy, against the demo CRM's realistic
//! Chatwoot data: an agent sees only conversations assigned to them, a
//! supervisor sees all but what is labelled confidential unless cleared.

use serde_json::json;

use crate::harness;
use crate::idp::Idp;
use chatwarden::demo::upstream::data;

const CONFIG: &str = r#"
listeners: [{name: main, addr: "${LISTEN}"}]
admin: {addr: "${ADMIN}"}
upstreams:
  crm: {url: "${CRM}", headers: {api_access_token: "${CRM_TOKEN}"}}
auth:
  issuer: https://idp.acme-retail.test/
  audiences: [chatwarden]
  algorithms: [EdDSA]
  jwks_url: "${JWKS}"
  claims: {attributes: {user_id: uid}}
roles:
  agent: {permissions: [conversations.read]}
  supervisor: {inherits: [agent], permissions: [conversations.read_all]}
  compliance: {inherits: [supervisor], permissions: [conversations.read_confidential]}
routes:
  - name: conversations
    upstream: crm
    methods: [GET]
    path: "/api/v1/accounts/{account_id}/conversations"
    permission: conversations.read
    row_filter:
      items: "$.data.payload[*]"
      field: meta.assignee.id
      claim: user_id
      unless_permission: conversations.read_all
      labels: [{label: confidential, permission: conversations.read_confidential}]
    redaction: [list-counts]
  - name: conversation-counts
    upstream: crm
    methods: [GET]
    path: "/api/v1/accounts/{account_id}/conversations/meta"
    permission: conversations.read
    redaction: [counts]
  - {name: contacts, upstream: crm, methods: [GET], path: "/api/v1/accounts/{account_id}/contacts", permission: conversations.read}
redaction:
  # Chatwoot's counts are of everyone's conversations: an agent whose list
  # is filtered gets them withheld (null), never a number.
  - {name: list-counts, unless_permission: conversations.read_all, fields: [$.data.meta], style: withhold}
  - {name: counts, unless_permission: conversations.read_all, fields: [$.meta], style: withhold}
audit: {path: "${AUDIT}"}
"#;

fn ids(body: &serde_json::Value) -> Vec<u64> {
    body["data"]["payload"]
        .as_array()
        .map(|a| a.iter().filter_map(|c| c["id"].as_u64()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn agents_see_only_their_conversations_and_confidential_ones_need_clearance() {
    let (gw, idp) = harness::start_with_demo_crm(CONFIG, &[]).await;
    let client = gw.client();
    let list = |token: String| {
        client
            .get(gw.url("/api/v1/accounts/1/conversations?status=all"))
            .bearer_auth(token)
            .send()
    };

    // Amelia (agent id 3) is assigned 2, 5, 7, 12 and 15; 15 is confidential.
    let resp = list(idp.token("amelia", &["agent"], json!({"uid": 3})))
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.expect("the rewritten body is JSON");
    let confidential = data::conversations_labelled("confidential");
    let mine: Vec<u64> = data::conversations_assigned_to(3)
        .into_iter()
        .filter(|id| !confidential.contains(id) && *id <= 25)
        .collect();
    assert!(!mine.is_empty());
    assert_eq!(
        ids(&body),
        mine,
        "an agent sees exactly their non-confidential conversations"
    );
    let withheld = json!({"mine_count": null, "unassigned_count": null, "assigned_count": null, "all_count": null});
    assert_eq!(
        body["data"]["meta"], withheld,
        "counts of everyone's conversations are withheld from an agent"
    );

    // The list is paged like Chatwoot's: 25 to a page.
    let all_ids: Vec<u64> = data::conversations()
        .iter()
        .map(|c| c.id)
        .take(25)
        .collect();
    let resp = list(idp.token("priya", &["supervisor"], json!({"uid": 1})))
        .await
        .expect("request");
    let body: serde_json::Value = resp.json().await.expect("json");
    let expected: Vec<u64> = all_ids
        .iter()
        .copied()
        .filter(|id| !confidential.contains(id))
        .collect();
    assert_eq!(
        ids(&body),
        expected,
        "a supervisor sees everyone's, but not confidential ones"
    );
    assert_eq!(
        body["data"]["meta"]["all_count"],
        data::conversations().len(),
        "a supervisor gets the CRM's counts"
    );

    let resp = list(idp.token("cora", &["compliance"], json!({"uid": 7})))
        .await
        .expect("request");
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(ids(&body), all_ids, "clearance shows everything");

    // An agent without a user_id claim sees nothing rather than everything.
    let resp = list(idp.token("nobody", &["agent"], json!({})))
        .await
        .expect("request");
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(ids(&body), Vec::<u64>::new(), "no claim, no rows");

    // The counts alone: withheld from an agent, the CRM's for a supervisor.
    let counts = |token: String| {
        client
            .get(gw.url("/api/v1/accounts/1/conversations/meta?status=all"))
            .bearer_auth(token)
            .send()
    };
    let resp = counts(idp.token("amelia", &["agent"], json!({"uid": 3})))
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body, json!({"meta": withheld}));
    let resp = counts(idp.token("priya", &["supervisor"], json!({"uid": 1})))
        .await
        .expect("request");
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["meta"]["all_count"], data::conversations().len());

    let records = gw.audit_records(6).await;
    let redactions: Vec<u64> = records
        .iter()
        .map(|r| r["redactions"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(
        redactions[0] as usize,
        all_ids.len() - mine.len() + 4,
        "the audit counts the rows removed and the counts withheld: {records:?}"
    );
    assert_eq!(redactions[4], 4, "four counts withheld: {records:?}");
    assert_eq!(redactions[5], 0, "nothing withheld from a supervisor");
}

#[tokio::test]
async fn a_body_that_cannot_be_filtered_never_reaches_the_client() {
    // An upstream that answers the filtered route with something that is
    // not the expected JSON: the rewriter must fail closed.
    let up = crate::upstream::EchoUpstream::start().await;
    let idp = Idp::start().await;
    let gw = harness::start(
        CONFIG,
        &[
            ("CRM", up.url()),
            ("CRM_TOKEN", "x".to_string()),
            ("JWKS", idp.jwks_url()),
        ],
    )
    .await;
    let token = idp.token("amelia", &["agent"], json!({"uid": 3}));
    let result = gw
        .client()
        .get(gw.url("/api/v1/accounts/1/conversations"))
        .bearer_auth(token)
        .send()
        .await;
    // The echo body is JSON without `data.payload`: a shape mismatch. A
    // body that arrives in one piece is still held with its head, so the
    // client gets a clean 502; a longer one would be cut off. Either way,
    // nothing unfiltered leaks.
    if let Ok(resp) = result {
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        assert!(
            !text.contains("\"target\""),
            "the unfiltered body must not be delivered: {text}"
        );
        assert_eq!(status, 502, "{text}");
        assert!(text.contains("redaction_failed"), "{text}");
    }
    assert_eq!(up.count(), 1);
    let records = gw.audit_records(1).await;
    assert_eq!(records[0]["reason"], "redaction_failed", "{records:?}");
    assert_eq!(records[0]["decision"], "error");
}
