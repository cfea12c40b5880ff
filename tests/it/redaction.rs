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
  echoing: {url: "${ECHO}", headers: {x-api-key: echo-secret-0123456789}}
  chats: {url: "${CHATS}"}
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
    detect: [phone, email, wamid]
    style: full
  - name: shaped
    fields: ["$.target.phone"]
  - name: worldwide
    unless_permission: contacts.read_pii
    detect: [phone, national_id]
    countries: [ES, IN, BR]
  - name: payments
    unless_permission: contacts.read_pii
    detect: [phone, card, iban]
routes:
  - {name: contacts, upstream: crm, methods: [GET], path: "/api/v1/accounts/{account_id}/contacts", permission: contacts.read, redaction: [contact-list]}
  - {name: contact, upstream: crm, methods: [GET], path: "/api/v1/accounts/{account_id}/contacts/{id}", permission: contacts.read, redaction: [contact]}
  - {name: messages, upstream: crm, methods: [GET], path: "/api/v1/accounts/{account_id}/conversations/{conversation_id}/messages", permission: messages.read, redaction: [messages]}
  - {name: echo, upstream: echo, methods: [GET], path: "/echo/{rest*}", permission: contacts.read, redaction: [shaped]}
  - {name: dump, upstream: echoing, methods: [GET], path: "/dump/{rest*}", permission: contacts.read, redaction: [messages]}
  - {name: inbox-worldwide, upstream: chats, methods: [GET], path: "/worldwide/messages", permission: messages.read, redaction: [worldwide]}
  - {name: inbox-default, upstream: chats, methods: [GET], path: "/default/messages", permission: messages.read, redaction: [messages]}
  - {name: inbox-payments, upstream: chats, methods: [GET], path: "/payments/messages", permission: messages.read, redaction: [payments]}
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

/// The customer data in `body`, in clear or inside a WhatsApp message id
/// (whose base64 holds the number).
fn leaks(body: &str) -> Vec<String> {
    let decoded = decoded_wamids(body);
    customer_pii()
        .into_iter()
        .filter(|pii| body.contains(pii.as_str()) || decoded.contains(pii.as_str()))
        .collect()
}

/// Every `wamid.` id in `body`, base64-decoded (lossily, as text).
fn decoded_wamids(body: &str) -> String {
    use base64::Engine as _;
    body.match_indices("wamid.")
        .map(|(at, prefix)| {
            let b64: String = body[at + prefix.len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '='))
                .collect();
            let raw = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap_or_default();
            String::from_utf8_lossy(&raw).into_owned()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[tokio::test]
async fn a_rewritten_body_never_carries_the_upstreams_credential() {
    // The echo's debug dump holds its injected key 3,000 times; the body
    // is fetched whole, rewritten, then searched.
    let echo = EchoUpstream::start().await;
    let (gw, idp) =
        harness::start_with_demo_crm(CONFIG, &[("ECHO", echo.url()), ("CHATS", echo.url())]).await;
    let agent = idp.token("amelia", &["agent"], json!({"uid": 3}));
    let resp = gw
        .client()
        .get(gw.url("/dump/all"))
        .bearer_auth(&agent)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.expect("body");
    assert!(
        !text.contains("echo-secret-0123456789"),
        "the credential leaked"
    );
    assert_eq!(text.matches("**********************").count(), 3000);
    let records = gw.audit_records(1).await;
    let record = records
        .iter()
        .find(|r| r["route"] == "dump")
        .expect("a record");
    assert_eq!(
        record["detail"],
        "the upstream's credential was in the response body 3000 time(s): masked"
    );
}

#[tokio::test]
async fn agents_get_masked_personal_data_and_cleared_supervisors_do_not() {
    let echo = EchoUpstream::start().await;
    let (gw, idp) =
        harness::start_with_demo_crm(CONFIG, &[("ECHO", echo.url()), ("CHATS", echo.url())]).await;
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
    assert!(
        !text.contains("wamid."),
        "message ids carry the number: {text}"
    );
    // The supervisor's copy shows what those ids hold.
    let resp = get(
        &format!("/api/v1/accounts/1/conversations/{chatty}/messages"),
        &supervisor,
    )
    .await
    .expect("request");
    let text = resp.text().await.expect("body");
    assert!(
        !leaks(&text).is_empty() && decoded_wamids(&text).contains("447700"),
        "the demo's message ids hold the customer's number: {}",
        decoded_wamids(&text)
    );

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

/// `text` with the separators people put between digits taken out, so a
/// number written `07700 900987` or `0151/555 12399` reads as its digits.
fn digits_joined(text: &str) -> String {
    text.chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '/' | '(' | ')'))
        .collect()
}

#[tokio::test]
async fn numbers_customers_write_in_their_own_way_are_masked_too() {
    // The demo's customers write numbers as people do: a UK mobile in its
    // national form, a German one after its trunk 0, a WhatsApp
    // click-to-chat link. None of them has a `+`.
    let echo = EchoUpstream::start().await;
    let (gw, idp) =
        harness::start_with_demo_crm(CONFIG, &[("ECHO", echo.url()), ("CHATS", echo.url())]).await;
    let client = gw.client();
    let agent = idp.token("amelia", &["agent"], json!({"uid": 3}));
    let supervisor = idp.token("priya", &["supervisor"], json!({"uid": 1}));
    let cases = [
        ("07700 900987", "7700900987"),
        ("0151 55512399", "15155512399"),
        ("wa.me/447700900456", "447700900456"),
    ];
    for (written, digits) in cases {
        let conversation = data::messages()
            .iter()
            .find(|m| m.content.contains(written))
            .unwrap_or_else(|| panic!("the demo data has {written} in a message"))
            .conversation_id;
        let path = format!("/api/v1/accounts/1/conversations/{conversation}/messages");
        let as_agent = client
            .get(gw.url(&path))
            .bearer_auth(&agent)
            .send()
            .await
            .expect("request");
        assert_eq!(as_agent.status(), 200);
        let text = as_agent.text().await.expect("body");
        assert!(
            !digits_joined(&text).contains(digits),
            "{written} reaches the agent: {text}"
        );
        assert!(leaks(&text).is_empty(), "{:?}", leaks(&text));
        // Cleared for personal data, the supervisor reads the message as
        // it was written.
        let as_supervisor = client
            .get(gw.url(&path))
            .bearer_auth(&supervisor)
            .send()
            .await
            .expect("request");
        let text = as_supervisor.text().await.expect("body");
        assert!(
            text.contains(written),
            "{written} for the supervisor: {text}"
        );
    }
}

/// Messages from customers in Spain, India and Brazil, each with the
/// number the way people there type it: no `+`, no trunk `0`.
const WORLDWIDE_MESSAGES: &str = r#"{"payload":[
  {"id":1,"content":"Hola, mi número es 612 345 678, llámame por la tarde"},
  {"id":2,"content":"Please call me on 98765 43210 after 6pm"},
  {"id":3,"content":"Meu celular: (11) 91234-5678"},
  {"id":4,"content":"Pedido 4415 enviado, referencia 106540352242922"},
  {"id":5,"content":"Pay with my card 4111 1111 1111 1111 exp 12/28"},
  {"id":6,"content":"Refund to IBAN GB82 WEST 1234 5698 7654 32 please, order 4111 1111 1111 1112"},
  {"id":7,"content":"Meu CPF é 529.982.247-25, pode emitir a nota?"},
  {"id":8,"content":"DNI 12345678Z para la factura"}
]}"#;

/// The gateway of [`CONFIG`] whose `chats` upstream answers
/// [`WORLDWIDE_MESSAGES`] (the upstreams are returned to keep them alive).
async fn start_with_worldwide_messages() -> (
    harness::TestGateway,
    std::sync::Arc<crate::idp::Idp>,
    (JsonUpstream, EchoUpstream),
) {
    let chats = JsonUpstream::start(WORLDWIDE_MESSAGES).await;
    let echo = EchoUpstream::start().await;
    let (gw, idp) =
        harness::start_with_demo_crm(CONFIG, &[("ECHO", echo.url()), ("CHATS", chats.url())]).await;
    (gw, idp, (chats, echo))
}

#[tokio::test]
async fn national_numbers_are_masked_for_the_countries_a_rule_names() {
    let (gw, idp, _upstreams) = start_with_worldwide_messages().await;
    let client = gw.client();
    let agent = idp.token("amelia", &["agent"], json!({"uid": 3}));
    let supervisor = idp.token("priya", &["supervisor"], json!({"uid": 1}));
    let get = |path: &'static str, token: &str| {
        let req = client.get(gw.url(path)).bearer_auth(token);
        async move {
            let resp = req.send().await.expect("request");
            assert_eq!(resp.status(), 200, "{path}");
            resp.text().await.expect("body")
        }
    };
    let numbers = ["612345678", "9876543210", "11912345678", "52998224725"];
    let as_agent = get("/worldwide/messages", &agent).await;
    for digits in numbers {
        assert!(
            !digits_joined(&as_agent).contains(digits),
            "{digits} reaches the agent: {as_agent}"
        );
    }
    let body: Value = serde_json::from_str(&as_agent).expect("still JSON");
    assert_eq!(
        body["payload"][1]["content"],
        "Please call me on ***** **210 after 6pm"
    );
    // Identity numbers of these countries, where their check digits hold.
    assert_eq!(
        body["payload"][6]["content"],
        "Meu CPF é ***.***.***-25, pode emitir a nota?"
    );
    assert_eq!(
        body["payload"][7]["content"],
        "DNI *******8Z para la factura"
    );
    // An order number and an id are not numbers in any of these countries.
    assert_eq!(
        body["payload"][3]["content"],
        "Pedido 4415 enviado, referencia 106540352242922"
    );
    // Cleared for personal data, the supervisor reads them as written.
    let as_supervisor = get("/worldwide/messages", &supervisor).await;
    assert_eq!(
        serde_json::from_str::<Value>(&as_supervisor).expect("JSON"),
        serde_json::from_str::<Value>(WORLDWIDE_MESSAGES).expect("JSON")
    );
    // A rule that names no country leaves them: in most bodies such digit
    // runs are ids, so each country is something a rule asks for.
    let by_default = get("/default/messages", &agent).await;
    assert!(
        by_default.contains("612 345 678") && by_default.contains("98765 43210"),
        "{by_default}"
    );
    let records = gw.audit_records(3).await;
    let record = records
        .iter()
        .find(|r| r["route"] == "inbox-worldwide")
        .expect("a record");
    assert_eq!(record["decision"], "allow");
    assert_eq!(record["redactions"], 5, "{record}");
}

#[tokio::test]
async fn card_numbers_and_ibans_customers_type_are_masked_where_a_rule_names_them() {
    let (gw, idp, _upstreams) = start_with_worldwide_messages().await;
    let client = gw.client();
    let agent = idp.token("amelia", &["agent"], json!({"uid": 3}));
    let resp = client
        .get(gw.url("/payments/messages"))
        .bearer_auth(&agent)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("still JSON");
    assert_eq!(
        body["payload"][4]["content"],
        "Pay with my card **** **** **** 1111 exp 12/28"
    );
    // The IBAN is masked; a 16-digit order number that fails the card
    // check is not a card.
    assert_eq!(
        body["payload"][5]["content"],
        "Refund to IBAN GB** **** **** **** **54 32 please, order 4111 1111 1111 1112"
    );
    // Without `card` and `iban`, a rule leaves them.
    let resp = client
        .get(gw.url("/worldwide/messages"))
        .bearer_auth(&agent)
        .send()
        .await
        .expect("request");
    let text = resp.text().await.expect("body");
    assert!(
        text.contains("4111 1111 1111 1111") && text.contains("GB82 WEST"),
        "{text}"
    );
}

/// A plain HTTP upstream answering every request with one JSON body.
struct JsonUpstream {
    addr: std::net::SocketAddr,
}

impl JsonUpstream {
    async fn start(body: &'static str) -> Self {
        use hyper_util::rt::TokioIo;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |_req| async move {
                        Ok::<_, std::convert::Infallible>(
                            hyper::Response::builder()
                                .header("content-type", "application/json; charset=utf-8")
                                .body(http_body_util::Full::new(bytes::Bytes::from_static(
                                    body.as_bytes(),
                                )))
                                .expect("response"),
                        )
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        JsonUpstream { addr }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

#[tokio::test]
async fn the_admin_explain_shows_an_answer_as_the_caller_gets_it() {
    let echo = EchoUpstream::start().await;
    let (gw, _idp) =
        harness::start_with_demo_crm(CONFIG, &[("ECHO", echo.url()), ("CHATS", echo.url())]).await;
    let sample = json!({"payload": [{"id": 1, "phone_number": "+447700900101", "email": "h.blake@example.com"}]});
    let ask = |roles: Value, path: &str| {
        gw.client()
            .post(format!("http://{}/explain", gw.admin))
            .json(&json!({"method": "GET", "path": path,
                          "claims": {"sub": "amelia", "roles": roles, "uid": 3},
                          "response": sample}))
            .send()
    };
    let answer = |resp: reqwest::Response| async move {
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.expect("json");
        body["response"].clone()
    };
    let agent = answer(
        ask(json!(["agent"]), "/api/v1/accounts/1/contacts")
            .await
            .expect("explain"),
    )
    .await;
    assert_eq!(
        agent,
        json!({"outcome": "rewritten", "removed": 0, "masked": 2,
               "body": {"payload": [{"id": 1, "phone_number": "+*********101", "email": "h***@example.com"}]}})
    );
    let supervisor = answer(
        ask(json!(["supervisor"]), "/api/v1/accounts/1/contacts")
            .await
            .expect("explain"),
    )
    .await;
    assert_eq!(supervisor, json!({"outcome": "as_written", "body": sample}));
    let refused = answer(
        ask(json!(["agent"]), "/api/v1/accounts/1/nowhere")
            .await
            .expect("explain"),
    )
    .await;
    assert_eq!(refused, json!({"outcome": "refused"}));
}

/// Routes whose upstream answers errors: the demo CRM refusing a duplicate
/// contact (its 422 echoes the number or address), and a plain upstream
/// whose error pages echo an address in several forms.
const ERROR_CONFIG: &str = r#"
listeners: [{name: main, addr: "${LISTEN}"}]
admin: {addr: "${ADMIN}"}
upstreams:
  crm: {url: "${CRM}", headers: {api_access_token: "${CRM_TOKEN}"}}
  broken: {url: "${BROKEN}"}
auth:
  issuer: https://idp.acme-retail.test/
  audiences: [chatwarden]
  algorithms: [EdDSA]
  jwks_url: "${JWKS}"
roles:
  agent: {permissions: [contacts.read, contacts.create]}
  supervisor: {inherits: [agent], permissions: [contacts.read_pii]}
redaction:
  - name: created-contact
    unless_permission: contacts.read_pii
    fields: ["$.payload.contact.phone_number", "$.payload.contact.email"]
  - name: anything
    unless_permission: contacts.read_pii
    fields: ["$.payload.email"]
    style: full
routes:
  - {name: contacts.create, upstream: crm, methods: [POST], path: "/api/v1/accounts/{account_id}/contacts", permission: contacts.create, redaction: [created-contact]}
  - {name: broken, upstream: broken, methods: [GET, HEAD], path: "/broken/{kind}", permission: contacts.read, redaction: [anything]}
audit: {path: "${AUDIT}"}
"#;

/// An address the broken upstream echoes in its error pages.
const ECHOED: &str = "sophie.taylor@example.com";

#[tokio::test]
async fn upstream_errors_echoing_customer_data_are_masked_for_agents_only() {
    let broken = BrokenUpstream::start().await;
    let (gw, idp) = harness::start_with_demo_crm(ERROR_CONFIG, &[("BROKEN", broken.url())]).await;
    let client = gw.client();
    let agent = idp.token("amelia", &["agent"], json!({}));
    let supervisor = idp.token("priya", &["supervisor"], json!({}));
    let taken = &data::contacts()[0];
    let create = |token: &str, body: Value| {
        client
            .post(gw.url("/api/v1/accounts/1/contacts"))
            .bearer_auth(token)
            .json(&body)
            .send()
    };

    // The CRM refuses a duplicate phone number with a 422 that names it.
    let resp = create(
        &agent,
        json!({"name": "Dup", "phone_number": taken.phone_number}),
    )
    .await
    .expect("request");
    assert_eq!(resp.status(), 422, "the upstream's status is kept");
    let text = resp.text().await.expect("body");
    assert!(
        leaks(&text).is_empty(),
        "an agent's 422 leaks {:?}: {text}",
        leaks(&text)
    );
    let body: Value = serde_json::from_str(&text).expect("the masked error is still JSON");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("Phone number +") && message.ends_with("has already been taken"),
        "only the number is masked: {body}"
    );
    assert!(message.contains('*'), "{body}");
    assert_eq!(
        body["attributes"],
        json!(["phone_number"]),
        "structure kept"
    );

    // The same for an e-mail address.
    let email = data::contacts()
        .iter()
        .find_map(|c| c.email)
        .expect("a demo contact with an address");
    let resp = create(&agent, json!({"name": "Dup", "email": email}))
        .await
        .expect("request");
    assert_eq!(resp.status(), 422);
    let text = resp.text().await.expect("body");
    assert!(
        !text.contains(email),
        "an agent's 422 leaks the address: {text}"
    );
    assert!(text.contains("***@"), "partial style of the rule: {text}");

    // A supervisor cleared for personal data gets the CRM's own words.
    let resp = create(
        &supervisor,
        json!({"name": "Dup", "phone_number": taken.phone_number}),
    )
    .await
    .expect("request");
    assert_eq!(resp.status(), 422);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(
        body["message"],
        json!(format!(
            "Phone number {} has already been taken",
            taken.phone_number
        )),
        "unmasked for contacts.read_pii"
    );

    // A plain upstream's HTML error page: masked, status kept.
    let resp = client
        .get(gw.url("/broken/html"))
        .bearer_auth(&agent)
        .header("accept-encoding", "gzip, br")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 500);
    assert!(resp
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"text/html")));
    let text = resp.text().await.expect("body");
    assert!(!text.contains(ECHOED), "the HTML page leaks: {text}");
    assert!(
        text.contains("[redacted]") && text.contains("<h1>Internal Server Error</h1>"),
        "full style of the rule, page kept: {text}"
    );

    // What cannot be searched never reaches the client: a body that says
    // it is gzip (whatever it holds), a binary one, one that is not UTF-8.
    for kind in ["gzip", "binary", "latin1"] {
        let resp = client
            .get(gw.url(&format!("/broken/{kind}")))
            .bearer_auth(&agent)
            .send()
            .await
            .expect("request");
        let status = resp.status();
        let bytes = resp.bytes().await.unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains(ECHOED),
            "{kind}: the error body leaked: {text}"
        );
        assert_eq!(status, 502, "{kind}: refused, not passed: {text}");
        let body: Value = serde_json::from_slice(&bytes).expect("the gateway's error body");
        assert_eq!(body["reason"], "redaction_failed", "{kind}: {body}");
    }
    // The supervisor gets those bodies as they are.
    let resp = client
        .get(gw.url("/broken/binary"))
        .bearer_auth(&supervisor)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 500);
    assert!(resp.text().await.expect("body").contains(ECHOED));
    // An empty error body stays empty; HEAD has none.
    for (method, kind) in [
        (reqwest::Method::GET, "empty"),
        (reqwest::Method::HEAD, "html"),
    ] {
        let resp = client
            .request(method.clone(), gw.url(&format!("/broken/{kind}")))
            .bearer_auth(&agent)
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), 500, "{method} {kind}");
        assert!(
            resp.bytes().await.unwrap_or_default().is_empty(),
            "{method} {kind}"
        );
    }

    // Every request of the agent asked for an unencoded body, whatever
    // the client accepted.
    let agents = broken
        .seen()
        .into_iter()
        .filter(|h| h.get("x-chatwarden-sub").map(String::as_str) == Some("amelia"))
        .collect::<Vec<_>>();
    assert_eq!(agents.len(), 6, "html, gzip, binary, latin1, empty, HEAD");
    for seen in agents {
        assert_eq!(
            seen.get("accept-encoding").map(String::as_str),
            Some("identity"),
            "Accept-Encoding is neutralized for callers under redaction"
        );
    }

    // The audit counts the masks, calls the refusals what they are and
    // holds none of the values.
    let records = gw.audit_records(10).await;
    let agent_masks: u64 = records
        .iter()
        .filter(|r| r["sub"] == "amelia")
        .filter_map(|r| r["redactions"].as_u64())
        .sum();
    assert!(
        agent_masks >= 3,
        "422 phone + 422 email + HTML page: {agent_masks}"
    );
    let failed = records
        .iter()
        .filter(|r| r["reason"] == "redaction_failed" && r["status"] == 502)
        .count();
    assert_eq!(
        failed, 3,
        "gzip, binary and latin1 are audited as redaction_failed"
    );
    let audit = std::fs::read_to_string(&gw.audit_path).expect("audit");
    assert!(
        leaks(&audit).is_empty() && !audit.contains(ECHOED),
        "no PII in the audit"
    );
}

/// A plain HTTP upstream answering 500 in the shapes a broken app or a
/// proxy in front of it produces, each echoing [`ECHOED`]: `/broken/html`
/// (an HTML page), `/broken/gzip` (declared gzip), `/broken/binary`
/// (`application/octet-stream`), `/broken/latin1` (text that is not UTF-8),
/// `/broken/empty`. Records the request headers it saw.
struct BrokenUpstream {
    addr: std::net::SocketAddr,
    seen: std::sync::Arc<std::sync::Mutex<Vec<std::collections::HashMap<String, String>>>>,
}

impl BrokenUpstream {
    async fn start() -> Self {
        use hyper_util::rt::TokioIo;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let log = log.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let log = log.clone();
                        async move { Ok::<_, std::convert::Infallible>(broken_answer(&req, &log)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        BrokenUpstream { addr, seen }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn seen(&self) -> Vec<std::collections::HashMap<String, String>> {
        self.seen.lock().expect("lock").clone()
    }
}

fn broken_answer(
    req: &hyper::Request<hyper::body::Incoming>,
    log: &std::sync::Mutex<Vec<std::collections::HashMap<String, String>>>,
) -> hyper::Response<http_body_util::Full<bytes::Bytes>> {
    log.lock().expect("lock").push(
        req.headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
    );
    let page = format!(
        "<html><body><h1>Internal Server Error</h1><p>could not save {ECHOED}</p></body></html>"
    );
    let (content_type, encoding, body): (&str, Option<&str>, Vec<u8>) =
        match req.uri().path().trim_start_matches("/broken/") {
            "html" => ("text/html; charset=utf-8", None, page.into_bytes()),
            // Not really compressed: a gateway that passed it would show the
            // address in clear.
            "gzip" => ("text/html; charset=utf-8", Some("gzip"), page.into_bytes()),
            "binary" => ("application/octet-stream", None, page.into_bytes()),
            "latin1" => {
                let mut bytes = b"caf\xe9: ".to_vec();
                bytes.extend_from_slice(ECHOED.as_bytes());
                ("text/plain; charset=iso-8859-1", None, bytes)
            }
            _ => ("text/plain", None, Vec::new()),
        };
    let mut resp = hyper::Response::builder()
        .status(500)
        .header("content-type", content_type);
    if let Some(e) = encoding {
        resp = resp.header("content-encoding", e);
    }
    resp.body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .expect("response")
}
