//! `chatwarden demo`: the gateway on the embedded demo config, in front of
//! the built-in CRM and WhatsApp upstreams on loopback, plus a guide of
//! what to try.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;

use crate::config::env::Overlay;
use crate::config::{load_str, ProcessEnv};
use crate::demo::idp::{self, Persona};
use crate::demo::upstream::{
    data, serve_crm, serve_whatsapp, DEMO_CRM_API_TOKEN, DEMO_CRM_PUBSUB_TOKEN,
    DEMO_META_ACCESS_TOKEN,
};
use crate::server::{self, RunOptions};

/// The demo config, embedded so the demo runs from any directory.
pub const DEMO_CONFIG: &str = include_str!("../../config/demo.yaml");

/// Start everything and serve until interrupted.
pub fn run(listen: &str, admin: &str) -> ExitCode {
    let (key, jwks) = match idp::new_key() {
        Ok(k) => k,
        Err(e) => {
            eprintln!("chatwarden demo: cannot make a signing key: {e}");
            return ExitCode::from(1);
        }
    };
    let personas = match idp::personas(&key) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("chatwarden demo: cannot mint demo tokens: {e}");
            return ExitCode::from(1);
        }
    };
    let upstreams = match start_upstreams(jwks) {
        Ok(u) => u,
        Err(e) => {
            eprintln!("chatwarden demo: cannot start the demo upstreams: {e}");
            return ExitCode::from(1);
        }
    };
    let admin_token = crate::request::request_id::generate();
    let today = jiff::Zoned::now()
        .with_time_zone(jiff::tz::TimeZone::get("Europe/London").unwrap_or(jiff::tz::TimeZone::UTC))
        .date()
        .to_string();
    // One audit file per run: the trail a reviewer queries is this run's,
    // not every earlier demo's (and its chain starts fresh).
    let audit_path = std::env::temp_dir().join(format!(
        "chatwarden-demo-audit-{}.jsonl",
        std::process::id()
    ));
    // A file an earlier run with the same process id left behind was
    // signed with another key: this run's starts empty.
    if let Err(e) = std::fs::remove_file(&audit_path) {
        if e.kind() != std::io::ErrorKind::NotFound {
            eprintln!(
                "chatwarden demo: cannot remove the stale {}: {e}",
                audit_path.display()
            );
            return ExitCode::from(1);
        }
    }
    // The audit chain is signed, and the guide verifies it with the public
    // half: what an auditor would do.
    let signing_key = audit_path.with_extension("signing.pem");
    let verify_key = audit_path.with_extension("signing.pub.pem");
    if let Err(e) = write_signing_keys(&signing_key, &verify_key) {
        eprintln!("chatwarden demo: cannot make the audit signing key: {e}");
        return ExitCode::from(1);
    }
    let vars: HashMap<String, String> = [
        ("DEMO_LISTEN", listen.to_string()),
        ("DEMO_ADMIN", admin.to_string()),
        ("DEMO_CRM_URL", format!("http://{}", upstreams.crm)),
        (
            "DEMO_WHATSAPP_URL",
            format!("http://{}", upstreams.whatsapp),
        ),
        ("DEMO_CRM_TOKEN", DEMO_CRM_API_TOKEN.to_string()),
        ("DEMO_CRM_PUBSUB_TOKEN", DEMO_CRM_PUBSUB_TOKEN.to_string()),
        ("DEMO_META_TOKEN", DEMO_META_ACCESS_TOKEN.to_string()),
        ("DEMO_AUDIT", audit_path.display().to_string()),
        ("DEMO_AUDIT_SIGNING_KEY", signing_key.display().to_string()),
        (
            "DEMO_JWKS_URL",
            format!("http://{}/.well-known/jwks.json", upstreams.idp),
        ),
        (
            "DEMO_META_APP_SECRET",
            crate::request::request_id::generate(),
        ),
        ("DEMO_ADMIN_TOKEN", admin_token.clone()),
        ("DEMO_TODAY", today),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let snapshot = match load_str(
        DEMO_CONFIG,
        Path::new("config/demo.yaml"),
        &Overlay {
            top: &vars,
            base: &ProcessEnv,
        },
    ) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("chatwarden demo: the embedded demo config is invalid:\n{e}");
            return ExitCode::from(1);
        }
    };
    let (server, handles) = match server::build(snapshot, &RunOptions::default()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("chatwarden demo: {e}");
            return ExitCode::from(1);
        }
    };
    print_guide(
        listen,
        admin,
        &audit_path,
        &verify_key,
        &personas,
        &admin_token,
    );
    server::serve(server, &handles)
}

struct DemoUpstreams {
    crm: SocketAddr,
    whatsapp: SocketAddr,
    idp: SocketAddr,
}

/// The upstreams run on their own small runtime, on ports the OS picks, so
/// the demo never collides with something already listening.
fn start_upstreams(jwks: String) -> std::io::Result<DemoUpstreams> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("demo-upstreams")
        .enable_all()
        .build()?;
    let (crm, whatsapp, idp_listener) = runtime.block_on(async {
        let crm = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let whatsapp = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let idp = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        Ok::<_, std::io::Error>((crm, whatsapp, idp))
    })?;
    let addrs = DemoUpstreams {
        crm: crm.local_addr()?,
        whatsapp: whatsapp.local_addr()?,
        idp: idp_listener.local_addr()?,
    };
    runtime.spawn(serve_crm(crm));
    runtime.spawn(serve_whatsapp(whatsapp));
    runtime.spawn(idp::serve_jwks(idp_listener, jwks));
    // The runtime must outlive this function: it serves until the process
    // exits, on its own thread.
    std::thread::Builder::new()
        .name("demo-upstreams".into())
        .spawn(move || runtime.block_on(std::future::pending::<()>()))?;
    Ok(addrs)
}

/// A fresh Ed25519 pair: the private key owner-only, the public one beside.
fn write_signing_keys(private: &Path, public: &Path) -> std::io::Result<()> {
    use std::io::Write;
    let (private_pem, public_pem) =
        crate::audit::signing::generate().map_err(std::io::Error::other)?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(private)?.write_all(private_pem.as_bytes())?;
    std::fs::write(public, public_pem)
}

fn print_guide(
    listen: &str,
    admin: &str,
    audit: &Path,
    verify_key: &Path,
    personas: &[Persona],
    admin_token: &str,
) {
    let sample = sample_conversations();
    let gw = format!("http://{listen}");
    let adm = format!("http://{admin}");
    println!(
        "\nchatwarden demo — gateway on {gw}, admin on {adm}\n\
         in front of a Chatwoot-like CRM (account 1, \"Acme Retail\": 40 contacts, 30 WhatsApp\n\
         conversations on a UK and a German number) and a WhatsApp Cloud API look-alike. Staff\n\
         authenticate with tokens from the demo IdP (JWKS on loopback); the gateway holds both\n\
         upstream credentials, so no one on staff ever sees them.\n\n\
         Paste these into a shell (tokens are valid for 12 hours):\n"
    );
    for p in personas {
        println!("# {}\nexport {}='{}'", p.who, p.var, p.token);
    }
    println!("export ADMIN_API='{admin_token}'   # the admin listener's token\nexport GW={gw}\n");
    println!(
        r#"Then try:
  # An agent sees only the conversations assigned to her, and not how many everyone has (the
  # counts are withheld); a supervisor sees everyone's, counts included (uses jq)
  # (the staff token never reaches the CRM; the gateway injects the CRM key)
  curl -s "$GW/api/v1/accounts/1/conversations?status=all" -H "Authorization: Bearer $AGENT" | jq -c '{{counts: .data.meta, rows: [.data.payload[] | {{id, assignee: .meta.assignee.name}}]}}'
  curl -s "$GW/api/v1/accounts/1/conversations?status=all" -H "Authorization: Bearer $SUPERVISOR" | jq -c '{{counts: .data.meta, ids: [.data.payload[].id]}}'

  # Personal data: the agent sees customers' phone numbers and e-mail addresses masked, in the
  # contact fields and in free text; a supervisor (contacts.read_pii) sees them
  curl -s $GW/api/v1/accounts/1/contacts -H "Authorization: Bearer $AGENT" | jq -c '.payload[:2][] | {{name, phone_number, email, note: .additional_attributes.description}}'
  curl -s $GW/api/v1/accounts/1/contacts -H "Authorization: Bearer $SUPERVISOR" | jq -c '.payload[:2][] | {{name, phone_number, email, note: .additional_attributes.description}}'
  # ...and a card number a customer typed into a chat (IBANs likewise): the last four digits stay;
  # a National Insurance number likewise (German tax ids too)
  curl -s $GW/api/v1/accounts/1/conversations/{card}/messages -H "Authorization: Bearer $AGENT" | jq -r '.payload[-1].content'
  curl -s $GW/api/v1/accounts/1/conversations/{nino}/messages -H "Authorization: Bearer $AGENT" | jq -r '.payload[-1].content'

  # Live updates (Chatwoot's cable, a WebSocket; while one is open a customer writes every two
  # seconds): the agent's stream carries only her own conversations' events, masked; the
  # supervisor's, every conversation's (neither holds the cable's token: the gateway subscribes
  # as the CRM's user)
  chatwarden cable {cable} --token "$AGENT" --count 3
  chatwarden cable {cable} --token "$SUPERVISOR" --count 3

  # A photo a customer sent with a message: the CRM links to it on its own host, which staff
  # cannot reach; the link (and the CRM's redirect to the file) leads through the gateway
  curl -s $GW/api/v1/accounts/1/conversations/{shade}/messages -H "Authorization: Bearer $AGENT" | jq -c '.payload[] | select(.attachments) | {{content, data_url: .attachments[0].data_url}}'
  curl -sL "$(curl -s $GW/api/v1/accounts/1/conversations/{shade}/messages -H "Authorization: Bearer $AGENT" | jq -r '.payload[] | select(.attachments) | .attachments[0].data_url')" -H "Authorization: Bearer $AGENT" -o shade.png -w '%{{http_code}} %{{content_type}} %{{size_download}} bytes -> shade.png\n'

  # One conversation: hers opens; another agent's is 404, as if it did not exist, and a reply
  # into it never reaches the CRM (the gateway looks the conversation up first)
  curl -s $GW/api/v1/accounts/1/conversations/{mine} -H "Authorization: Bearer $AGENT" | jq -c '{{id, status, assignee: .meta.assignee.name}}'
  curl -s $GW/api/v1/accounts/1/conversations/{theirs} -H "Authorization: Bearer $AGENT"; echo
  curl -s -X POST $GW/api/v1/accounts/1/conversations/{theirs}/messages -H "Authorization: Bearer $AGENT" -H 'content-type: application/json' -d '{{"content":"Refund approved"}}'; echo
  curl -s $GW/api/v1/accounts/1/conversations/{theirs} -H "Authorization: Bearer $SUPERVISOR" | jq -c '{{id, assignee: .meta.assignee.name}}'


  # Agents send only from their own WhatsApp number: UK allowed, German number refused
  curl -s -X POST $GW/v23.0/106540352242922/messages -H "Authorization: Bearer $AGENT" -H 'content-type: application/json' \
       -d '{{"messaging_product":"whatsapp","to":"447700900123","type":"text","text":{{"body":"Your order has shipped"}}}}'; echo
  curl -s -X POST $GW/v23.0/209876543210987/messages -H "Authorization: Bearer $AGENT" -H 'content-type: application/json' \
       -d '{{"messaging_product":"whatsapp","to":"4915155512345","type":"text","text":{{"body":"Hallo"}}}}'; echo
  # Links lead back through the gateway. Meta's answers link to itself: a list's next page, and
  # the download URL of a photo a customer sent (on Meta's media host, which takes the Meta token).
  # Followed as written, they would fail and hand the staff token to Meta; the gateway rewrites
  # them to itself, so the next page and the photo come through it, under its policy and audit
  curl -s "$GW/v23.0/{waba}/message_templates?limit=2" -H "Authorization: Bearer $AGENT" | jq -c '{{names: [.data[] | "\(.name) (\(.language))"], next: .paging.next}}'
  curl -s "$(curl -s "$GW/v23.0/{waba}/message_templates?limit=2" -H "Authorization: Bearer $AGENT" | jq -r .paging.next)" -H "Authorization: Bearer $AGENT" | jq -c '[.data[] | "\(.name) (\(.language))"]'
  curl -s "$GW/v23.0/{photo}?phone_number_id={uk}" -H "Authorization: Bearer $AGENT" | jq -c '{{mime_type, url}}'
  curl -s "$(curl -s "$GW/v23.0/{photo}?phone_number_id={uk}" -H "Authorization: Bearer $AGENT" | jq -r .url)" -H "Authorization: Bearer $AGENT" -o photo.png -w '%{{http_code}} %{{content_type}} %{{size_download}} bytes -> photo.png\n'
  # ...but only photos sent to her own number: she must name it, and may not name the German one
  curl -s "$GW/v23.0/{photo_de}?phone_number_id={de}" -H "Authorization: Bearer $AGENT"; echo
  curl -s "$GW/v23.0/{photo_de}" -H "Authorization: Bearer $AGENT"; echo
  # ...and in the CRM, a new customer goes onto her own number's inbox, not the German one's
  # (the gateway reads the JSON body's inbox_id before the CRM sees anything)
  curl -s -X POST $GW/api/v1/accounts/1/contacts -H "Authorization: Bearer $AGENT" -H 'content-type: application/json' \
       -d '{{"inbox_id":1,"name":"Lena Fischer","phone_number":"+447700900555"}}' | jq -c '.payload.contact | {{id, name}}'
  curl -s -X POST $GW/api/v1/accounts/1/contacts -H "Authorization: Bearer $AGENT" -H 'content-type: application/json' \
       -d '{{"inbox_id":2,"name":"Lena Fischer","phone_number":"+4915155512999"}}'; echo

  # Exporting every contact: agents may not; a supervisor may, with MFA in the last 15 minutes
  curl -s $GW/api/v1/accounts/1/contacts/export -H "Authorization: Bearer $AGENT"; echo
  curl -s $GW/api/v1/accounts/1/contacts/export -H "Authorization: Bearer $SUPERVISOR" | head -c 300; echo
  curl -si $GW/api/v1/accounts/1/contacts/export -H "Authorization: Bearer $SUPERVISOR_STALE" | grep -i -e '^HTTP' -e www-authenticate -e reason

  # Bulk access is rationed: 3 exports per person per hour, then 429 with Retry-After
  for i in 1 2 3; do curl -s -o /dev/null -w '%{{http_code}} ' $GW/api/v1/accounts/1/contacts/export -H "Authorization: Bearer $SUPERVISOR"; done; echo
  curl -si $GW/api/v1/accounts/1/contacts/export -H "Authorization: Bearer $SUPERVISOR" | grep -i -e '^HTTP' -e retry-after -e reason

  # Out of hours (today is closed for contractors) and from the wrong network (finance: office only)
  curl -s $GW/api/v1/accounts/1/conversations -H "Authorization: Bearer $CONTRACTOR"; echo
  curl -s $GW/api/v1/accounts/1/contacts/export -H "Authorization: Bearer $FINANCE"; echo

  # No token, a forged one, default deny, a path trick (normalized, then decided), and two things
  # Chatwoot, a Rails app, reads differently: a method override (it would run this reply as a read
  # of every message, unmasked) and a format suffix (a search to Rails, a contact id to a template)
  curl -s $GW/api/v1/accounts/1/conversations; echo
  curl -s $GW/api/v1/accounts/1/conversations -H "Authorization: Bearer $AGENT"x; echo
  curl -s $GW/api/v1/accounts/1/contacts/1/destroy_all -H "Authorization: Bearer $ADMIN"; echo
  curl -s $GW/api/v1/accounts/1/contacts%2F1 -H "Authorization: Bearer $ADMIN"; echo
  curl -s -X POST $GW/api/v1/accounts/1/conversations/{mine}/messages -H "Authorization: Bearer $AGENT" -d '_method=GET'; echo
  curl -s "$GW/api/v1/accounts/1/contacts/search.json?q=blake" -H "Authorization: Bearer $AGENT"; echo

  # Browsers: the agent console's origin may call the gateway from a page; another site's page
  # may not, and reads nothing, though the CRM itself answers `Access-Control-Allow-Origin: *`
  curl -si -X OPTIONS $GW/api/v1/accounts/1/conversations -H 'Origin: https://desk.acme-retail.example' -H 'Access-Control-Request-Method: GET' -H 'Access-Control-Request-Headers: authorization' | grep -i -e '^HTTP' -e '^access-control-allow'
  curl -si -X OPTIONS $GW/api/v1/accounts/1/conversations -H 'Origin: https://evil.example' -H 'Access-Control-Request-Method: GET' | grep -i -e '^HTTP' -e reason; echo
  curl -si $GW/api/v1/accounts/1/conversations -H "Authorization: Bearer $AGENT" -H 'Origin: https://evil.example' | grep -i -e '^HTTP' -e '^access-control' -e '^vary'

  # Instant revocation: Amelia leaves; her still-valid token stops working on the next request
  curl -s -X POST {adm}/revoke -H "Authorization: Bearer $ADMIN_API" -d '{{"sub":"amelia.clarke@acme-retail.example"}}'; echo
  curl -s $GW/api/v1/accounts/1/conversations -H "Authorization: Bearer $AGENT"; echo
  # ...and a revocation made by mistake is lifted (with a shared Redis, on every replica)
  curl -s -X POST {adm}/unrevoke -H "Authorization: Bearer $ADMIN_API" -d '{{"sub":"amelia.clarke@acme-retail.example"}}'; echo
  curl -s -o /dev/null -w '%{{http_code}}\n' $GW/api/v1/accounts/1/conversations -H "Authorization: Bearer $AGENT"

  # Meta's webhook subscription handshake, answered by the gateway
  curl -s "$GW/webhooks/whatsapp?hub.mode=subscribe&hub.verify_token=demo-verify-token&hub.challenge=1158201444"; echo

  # Unusual activity: the agent has now been refused three times within 10 minutes, so this
  # console printed one WARN line from chatwarden::alert (rule repeated-denials, its request ids)
  curl -s {adm}/metrics -H "Authorization: Bearer $ADMIN_API" | grep chatwarden_alerts_total

  # Metrics, and the audit trail: one hash-chained record per request, denials included, the
  # chain signed every 2 seconds with a key only the gateway holds (checked with its public half)
  curl -s {adm}/metrics -H "Authorization: Bearer $ADMIN_API" | grep chatwarden_requests_total
  chatwarden audit query {audit} --decision deny
  chatwarden audit verify {audit} --key {verify_key}
  (from the repository: ./target/release/chatwarden …)

Ctrl-C to stop.
"#,
        audit = audit.display(),
        verify_key = verify_key.display(),
        mine = sample.0,
        theirs = sample.1,
        card = card_conversation(),
        nino = nino_conversation(),
        cable = format!("ws://{listen}/cable"),
        waba = data::WABA_ID,
        photo = media_of(data::UK_PHONE_NUMBER_ID),
        photo_de = media_of(data::DE_PHONE_NUMBER_ID),
        shade = attachment_conversation(),
        uk = data::UK_PHONE_NUMBER_ID,
        de = data::DE_PHONE_NUMBER_ID,
    );
}

/// The demo agent's conversation in which a customer sent a photo.
fn attachment_conversation() -> u64 {
    data::attachments()
        .iter()
        .map(|a| a.message_id / 100)
        .find(|c| data::conversations_assigned_to(3).contains(c))
        .unwrap_or(7)
}

/// The id of the photo a customer sent to business number `number`.
fn media_of(number: &str) -> &'static str {
    data::media()
        .iter()
        .find(|m| m.phone_number_id == number)
        .map_or("", |m| m.id)
}

/// The demo agent's conversation whose customer last typed a card number.
fn card_conversation() -> u64 {
    conversation_ending_with("by card?").unwrap_or(5)
}

/// The demo agent's conversation whose customer last typed a National
/// Insurance number.
fn nino_conversation() -> u64 {
    conversation_ending_with("National Insurance number").unwrap_or(2)
}

/// The demo agent's (Amelia, uid 3) conversation whose last line says
/// `text`.
fn conversation_ending_with(text: &str) -> Option<u64> {
    data::conversations()
        .iter()
        .find(|c| {
            c.assignee_id == Some(3) && c.lines.last().is_some_and(|l| l.content.contains(text))
        })
        .map(|c| c.id)
}

/// A conversation assigned to the demo agent (Amelia, uid 3) and one
/// assigned to somebody else, neither confidential, for the guide's
/// ownership example.
fn sample_conversations() -> (u64, u64) {
    let confidential = data::conversations_labelled("confidential");
    let open = |id: &u64| !confidential.contains(id);
    let mine = data::conversations_assigned_to(3)
        .into_iter()
        .find(open)
        .unwrap_or(1);
    let theirs = data::conversations()
        .iter()
        .map(|c| c.id)
        .filter(open)
        .find(|id| {
            !data::conversations_assigned_to(3).contains(id)
                && !data::unassigned_conversations().contains(id)
        })
        .unwrap_or(2);
    (mine, theirs)
}
