//! Ownership checks through the real proxy, against the demo CRM's
//! realistic Chatwoot data: before a read of one conversation or a message
//! posted into it, the gateway looks the conversation up and forwards only
//! if it is the caller's. What the CRM stored is checked afterwards, so a
//! refused write is proven never to have arrived.

use serde_json::{json, Value};

use crate::harness;
use chatwarden::demo::upstream::data;

const CONFIG: &str = r#"
listeners: [{name: main, addr: "${LISTEN}"}]
admin: {addr: "${ADMIN}"}
upstreams:
  crm: {url: "${CRM}", headers: {api_access_token: "${CRM_TOKEN}"}}
  down: {url: "${DOWN}", timeouts: {connect: 1s, read: 2s}}
auth:
  issuer: https://idp.acme-retail.test/
  audiences: [chatwarden]
  algorithms: [EdDSA]
  jwks_url: "${JWKS}"
  claims: {attributes: {user_id: uid}}
roles:
  agent: {permissions: [conversations.read, messages.read, messages.send]}
  supervisor:
    inherits: [agent]
    permissions: [conversations.read_all, conversations.assign]
  compliance: {inherits: [supervisor], permissions: [conversations.read_confidential]}
routes:
  - name: conversation
    upstream: crm
    methods: [GET]
    path: "/api/v1/accounts/{account_id}/conversations/{conversation_id}"
    permission: conversations.read
    owner_check:
      field: meta.assignee.id
      claim: user_id
      unless_permission: conversations.read_all
      labels: [{label: confidential, permission: conversations.read_confidential}]
  - name: messages
    upstream: crm
    methods: [GET, POST]
    path: "/api/v1/accounts/{account_id}/conversations/{conversation_id}/messages"
    permission: messages.send
    owner_check:
      lookup: "/api/v1/accounts/{account_id}/conversations/{conversation_id}"
      field: meta.assignee.id
      claim: user_id
      unless_permission: conversations.read_all
      labels: [{label: confidential, permission: conversations.read_confidential}]
  - name: assign
    upstream: crm
    methods: [POST]
    path: "/api/v1/accounts/{account_id}/conversations/{conversation_id}/assignments"
    permission: conversations.assign
  - name: broken
    upstream: down
    methods: [GET]
    path: "/broken/{conversation_id}"
    permission: conversations.read
    owner_check: {field: owner, claim: user_id}
audit: {path: "${AUDIT}"}
"#;

const AMELIA: u64 = 3;

fn path(conversation: u64, rest: &str) -> String {
    format!("/api/v1/accounts/1/conversations/{conversation}{rest}")
}

#[tokio::test]
async fn agents_reach_only_their_own_conversations_and_refused_writes_never_arrive() {
    let (gw, idp) = harness::start_with_demo_crm(
        CONFIG,
        &[("DOWN", format!("http://{}", harness::free_addr()))],
    )
    .await;
    let client = gw.client();
    let amelia = idp.token("amelia", &["agent"], json!({"uid": AMELIA}));
    let supervisor = idp.token("sam", &["supervisor"], json!({"uid": 1}));
    let compliance = idp.token("cora", &["compliance"], json!({"uid": 2}));

    let confidential = data::conversations_labelled("confidential");
    let hers: Vec<u64> = data::conversations_assigned_to(AMELIA)
        .into_iter()
        .filter(|c| !confidential.contains(c))
        .collect();
    let her_confidential = data::conversations_assigned_to(AMELIA)
        .into_iter()
        .find(|c| confidential.contains(c))
        .expect("the demo data gives Amelia a confidential conversation");
    let (mine, theirs) = (hers[0], data::unassigned_conversations()[0]);
    let other_agents = data::conversations()
        .iter()
        .map(|c| c.id)
        .find(|id| {
            !data::conversations_assigned_to(AMELIA).contains(id)
                && !data::unassigned_conversations().contains(id)
                && !confidential.contains(id)
        })
        .expect("some conversation belongs to another agent");

    let get = |p: String, token: &str| client.get(gw.url(&p)).bearer_auth(token).send();
    let post = |p: String, token: &str, body: Value| {
        client
            .post(gw.url(&p))
            .bearer_auth(token)
            .json(&body)
            .send()
    };

    // Reads: her own conversation, yes; another agent's, an unassigned one,
    // her own confidential one and one that does not exist all look alike.
    let resp = get(path(mine, ""), &amelia).await.expect("request");
    assert_eq!(resp.status(), 200, "Amelia reads her own conversation");
    let body: Value = resp.json().await.expect("json");
    assert_eq!(
        body["id"],
        json!(mine),
        "the conversation itself is returned"
    );
    for (id, what) in [
        (other_agents, "another agent's"),
        (theirs, "an unassigned"),
        (her_confidential, "her confidential"),
        (999_999, "a missing"),
    ] {
        let resp = get(path(id, ""), &amelia).await.expect("request");
        assert_eq!(
            resp.status(),
            404,
            "{what} conversation should be 404 for an agent"
        );
        let body: Value = resp.json().await.expect("error body is JSON");
        assert_eq!(body["reason"], "not_found", "{what}: {body}");
    }
    let resp = get(path(other_agents, "/messages"), &amelia)
        .await
        .expect("request");
    assert_eq!(
        resp.status(),
        404,
        "another agent's messages are not listed"
    );

    // A supervisor reads anyone's, but needs clearance for the label.
    let resp = get(path(other_agents, ""), &supervisor)
        .await
        .expect("request");
    assert_eq!(resp.status(), 200, "supervisors hold read_all");
    let resp = get(path(her_confidential, ""), &supervisor)
        .await
        .expect("request");
    assert_eq!(
        resp.status(),
        404,
        "read_all does not lift the confidential label"
    );
    let resp = get(path(her_confidential, ""), &compliance)
        .await
        .expect("request");
    assert_eq!(resp.status(), 200, "compliance is cleared for confidential");

    // Writes: a message into another agent's conversation is refused and
    // never reaches the CRM; one into her own is stored.
    let sneaky = "refund approved, card ending 4242";
    let resp = post(
        path(other_agents, "/messages"),
        &amelia,
        json!({"content": sneaky}),
    )
    .await
    .expect("request");
    assert_eq!(
        resp.status(),
        404,
        "posting into another agent's conversation"
    );
    let resp = post(
        path(mine, "/messages"),
        &amelia,
        json!({"content": "on it"}),
    )
    .await
    .expect("request");
    assert_eq!(resp.status(), 200, "posting into her own conversation");
    let stored = |id: u64| {
        let supervisor = supervisor.clone();
        let get = &get;
        async move {
            let resp = get(path(id, "/messages"), &supervisor)
                .await
                .expect("request");
            assert_eq!(resp.status(), 200);
            let body: Value = resp.json().await.expect("json");
            body["payload"]
                .as_array()
                .map(|m| {
                    m.iter()
                        .filter_map(|m| m["content"].as_str().map(str::to_owned))
                        .collect::<Vec<String>>()
                })
                .unwrap_or_default()
        }
    };
    assert!(
        !stored(other_agents).await.iter().any(|c| c == sneaky),
        "the refused message must not exist in the CRM"
    );
    assert!(
        stored(mine).await.iter().any(|c| c == "on it"),
        "the allowed message is stored"
    );

    // A reassignment through the gateway is seen at once, even though the
    // refusal above was a fresh (cached) lookup.
    let resp = post(
        path(other_agents, "/assignments"),
        &supervisor,
        json!({"assignee_id": AMELIA}),
    )
    .await
    .expect("request");
    assert_eq!(resp.status(), 200, "the supervisor reassigns");
    let resp = post(
        path(other_agents, "/messages"),
        &amelia,
        json!({"content": "hello"}),
    )
    .await
    .expect("request");
    assert_eq!(resp.status(), 200, "the new assignee may post at once");

    // A lookup that cannot be made fails closed.
    let resp = get("/broken/1".to_string(), &amelia)
        .await
        .expect("request");
    assert_eq!(
        resp.status(),
        502,
        "an unreachable lookup is an upstream error"
    );

    // The audit trail names the check and the reason, and marks the
    // unreachable lookup an error, not a denial.
    let records = gw.audit_records(16).await;
    let refused: Vec<&Value> = records
        .iter()
        .filter(|r| r["reason"] == "not_found")
        .collect();
    assert_eq!(
        refused.len(),
        7,
        "seven refusals by ownership: {records:#?}"
    );
    for r in &refused {
        assert_eq!(r["decision"], "deny");
        assert_eq!(r["status"], 404);
        assert!(
            r["rules"].as_array().is_some_and(|rules| rules
                .iter()
                .any(|x| x.as_str().is_some_and(|x| x.ends_with(".owner_check")))),
            "the record names the owner check: {r}"
        );
        assert_eq!(r["upstream"], Value::Null, "nothing was forwarded: {r}");
    }
    let broken = records.last().expect("records");
    assert_eq!(broken["decision"], "error", "{broken}");
    assert_eq!(broken["reason"], "upstream_error", "{broken}");
}
