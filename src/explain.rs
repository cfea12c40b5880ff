//! "What would the gateway do with this request, and why?" answered in
//! words: the decision, the reason, the route, the caller, every rule
//! consulted, and what the proxy still does after admitting (the ownership
//! lookup, the row filter). `chatwarden explain`, `chatwarden test` and the
//! admin `POST /explain` all call this, and it calls the proxy's own
//! decision function (`gate::explain`).

use std::net::IpAddr;
use std::sync::Arc;

use http::{HeaderMap, HeaderValue, Method};

use crate::auth::{identity_from_unchecked_claims, Verified};
use crate::config::snapshot::Route;
use crate::config::Snapshot;
use crate::gate::{self, Circumstances, RequestView, WireFacts};
use crate::policy::{
    plan_row_filter, FieldPath, MessageFilter, OwnerMatch, RowFilterPlan, ScopeSource,
};
use crate::redact::{national_id, Detector, Region};
use crate::revocation::RuntimeRevocations;
use crate::rewrite::messages::{MessageError, MessagePlan, MessageStream};
use crate::rewrite::{Links, RewriteError, RewriteOutcome, RewritePlan};

/// One request to explain.
pub struct Question {
    pub method: String,
    pub path: String,
    pub token: Option<String>,
    pub claims: Option<String>,
    pub ip: String,
    pub at: Option<String>,
}

pub fn answer(
    snapshot: &Snapshot,
    q: &Question,
    revocations: &RuntimeRevocations,
) -> Result<String, String> {
    let (outcome, report) = decide(snapshot, q, revocations)?;
    let mut out = String::new();
    let (decision, route, caller, rules) = match &outcome {
        Ok(a) => (
            "allow".to_string(),
            Some(&a.route),
            a.caller.as_ref(),
            &a.rules,
        ),
        Err(r) => (
            format!("deny ({}, {})", r.reason.code(), r.reason.status()),
            r.route.as_ref(),
            r.caller.as_ref(),
            &r.rules,
        ),
    };
    out.push_str(&format!("decision: {decision}\n"));
    if let Err(r) = &outcome {
        out.push_str(&format!("why:      {}\n", r.detail));
        if let Some(c) = &r.challenge {
            out.push_str(&format!("challenge: WWW-Authenticate: {c}\n"));
        }
    }
    match route {
        Some(r) => out.push_str(&format!(
            "route:    {} ({} auth) → upstream {}\n",
            r.name.0,
            r.auth.as_str(),
            r.upstream.name.0
        )),
        None => out.push_str("route:    none\n"),
    }
    if let Some(c) = caller {
        let roles: Vec<&str> = c.identity.roles.iter().map(|r| r.0.as_str()).collect();
        out.push_str(&format!(
            "caller:   {} [{}] mfa={}\n",
            c.identity.subject,
            roles.join(", "),
            c.identity.mfa
        ));
    }
    if !rules.is_empty() {
        out.push_str(&format!("rules:    {}\n", rules.join(", ")));
    }
    if let Ok(a) = &outcome {
        let bodiless = ["GET", "HEAD"]
            .iter()
            .any(|m| q.method.eq_ignore_ascii_case(m));
        for line in object_rules(snapshot, a, bodiless) {
            out.push_str(&line);
            out.push('\n');
        }
    }
    if let Some(r) = report {
        out.push_str("\nchecks:\n");
        out.push_str(&r);
    }
    Ok(out)
}

/// The upstream's 2xx JSON answer `body` as the admitted caller gets it:
/// the route's row filter and redaction, planned for this caller and
/// applied by the proxy's own rewriter. `None`: nothing to do for this
/// caller, the body goes out as it is.
pub fn rewrite_for(
    snapshot: &Snapshot,
    admission: &gate::Admission,
    body: &[u8],
) -> Option<Result<RewriteOutcome, RewriteError>> {
    let mut plan = RewritePlan::for_caller(
        admission.route.row_filter.as_ref(),
        &admission.route.redactions,
        admission.caller.as_ref().map(|c| &c.identity),
        snapshot.policy.roles(),
    );
    plan.links = explained_links(snapshot, &admission.route);
    if plan.is_empty() {
        return None;
    }
    Some(crate::rewrite::rewrite(
        body,
        Some("application/json"),
        None,
        &plan,
        crate::rewrite::MAX_REWRITE_BYTES,
    ))
}

/// What a stream carries of one message: `None` dropped, or the text
/// sent; and the values masked in it.
type Carried = (Option<Vec<u8>>, u64);

/// The links of `route`'s upstream as explained: to `public_url`. Without
/// one the proxy uses each request's `Host`; here, with no request, links
/// are shown as the paths they become.
fn explained_links(snapshot: &Snapshot, route: &Route) -> Option<Links> {
    let origins = &route.upstream.links;
    (!origins.is_empty()).then(|| {
        Links::new(
            origins.clone(),
            snapshot.public_url.as_deref().unwrap_or(""),
        )
    })
}

/// One message a WebSocket route's upstream sends, as the admitted
/// caller's stream would carry it. `None`: the stream is not read for
/// this caller.
fn message_for(
    snapshot: &Snapshot,
    admission: &gate::Admission,
    message: &[u8],
) -> Option<Result<Carried, MessageError>> {
    let route = &admission.route;
    let plan = MessagePlan::for_caller(
        route.message_filter.as_ref(),
        route.control_messages.as_deref(),
        &route.redactions,
        admission.caller.as_ref().map(|c| &c.identity),
        snapshot.policy.roles(),
        route.subscribe_as.is_some(),
        explained_links(snapshot, route),
    )?;
    let mut stream = MessageStream::new(plan);
    Some(stream.one(message).map(|sent| (sent, stream.masked)))
}

/// A JSON answer of the upstream as the admitted caller gets it, for
/// `chatwarden test` and the admin `POST /explain`.
#[derive(Debug, Clone, PartialEq)]
pub enum CallerGets {
    /// The answer as the upstream wrote it: nothing to do for this caller,
    /// or every row passed and nothing was masked.
    AsWritten,
    /// Rows removed and values masked.
    Rewritten {
        body: serde_json::Value,
        removed: u64,
        masked: u64,
    },
    /// The row filter refuses the object: 404 `not_found`.
    NotFound,
    /// A WebSocket route's message that the caller's stream does not get
    /// (its `message_filter`).
    Dropped,
    /// 502 `redaction_failed`, nothing of the answer sent; why.
    Failed(String),
}

/// [`rewrite_for`] on a JSON value (see [`CallerGets`]).
pub fn caller_gets(
    snapshot: &Snapshot,
    admission: &gate::Admission,
    response: &serde_json::Value,
) -> Result<CallerGets, String> {
    let bytes = serde_json::to_vec(response).map_err(|e| e.to_string())?;
    if admission.route.websocket {
        return Ok(match message_for(snapshot, admission, &bytes) {
            None => CallerGets::AsWritten,
            Some(Ok((None, _))) => CallerGets::Dropped,
            Some(Ok((Some(sent), _))) if sent == bytes => CallerGets::AsWritten,
            Some(Ok((Some(sent), masked))) => CallerGets::Rewritten {
                body: serde_json::from_slice(&sent)
                    .map_err(|e| format!("rewritten message: {e}"))?,
                removed: 0,
                masked,
            },
            Some(Err(e)) => CallerGets::Failed(e.to_string()),
        });
    }
    Ok(match rewrite_for(snapshot, admission, &bytes) {
        None | Some(Ok(RewriteOutcome::Unchanged)) => CallerGets::AsWritten,
        Some(Ok(RewriteOutcome::Rewritten {
            body,
            removed,
            masked,
        })) => CallerGets::Rewritten {
            body: serde_json::from_slice(&body).map_err(|e| format!("rewritten answer: {e}"))?,
            removed,
            masked,
        },
        Some(Ok(RewriteOutcome::NotFound)) => CallerGets::NotFound,
        Some(Err(e)) => CallerGets::Failed(e.to_string()),
    })
}

/// What the caller of `q` would get for `body`, a 2xx JSON answer from the
/// upstream: the route's row filter and redaction applied as the proxy
/// applies them, or why nothing would be sent. `Err` for a malformed
/// question.
pub fn response_for(
    snapshot: &Snapshot,
    q: &Question,
    revocations: &RuntimeRevocations,
    body: &[u8],
) -> Result<String, String> {
    let (outcome, _) = decide(snapshot, q, revocations)?;
    let admission = match outcome {
        Ok(a) => a,
        Err(r) => {
            return Ok(format!(
                "response: none: the request is refused ({}) and never reaches the upstream\n",
                r.reason.code()
            ))
        }
    };
    if admission.route.websocket {
        return Ok(match message_for(snapshot, &admission, body) {
            None => {
                "message: sent as the upstream wrote it (the stream is not read for this caller)\n"
                    .to_string()
            }
            Some(Ok((None, _))) => {
                "message: dropped: the route's message_filter keeps it from this caller's stream\n"
                    .to_string()
            }
            Some(Ok((Some(sent), _))) if sent == body => {
                "message: sent as the upstream wrote it (nothing to filter or mask for this caller)\n"
                    .to_string()
            }
            Some(Ok((Some(sent), masked))) => format!(
                "message: {masked} value(s) masked:\n{}\n",
                String::from_utf8_lossy(&sent)
            ),
            Some(Err(e)) => format!(
                "message: the stream ends (redaction_failed), nothing of the message sent: {e}\n"
            ),
        });
    }
    let Some(outcome) = rewrite_for(snapshot, &admission, body) else {
        return Ok(
            "response: sent as the upstream wrote it (nothing to filter or mask for this caller)\n"
                .to_string(),
        );
    };
    Ok(match outcome {
        Ok(RewriteOutcome::Rewritten {
            body,
            removed,
            masked,
        }) => format!(
            "response: {removed} row(s) removed, {masked} value(s) masked:\n{}\n",
            String::from_utf8_lossy(&body)
        ),
        Ok(RewriteOutcome::Unchanged) => {
            "response: sent as the upstream wrote it (every row passed, nothing to mask)\n"
                .to_string()
        }
        Ok(RewriteOutcome::NotFound) => {
            "response: 404 not_found: the row filter refuses the object, as if it did not exist\n"
                .to_string()
        }
        Err(e) => format!("response: 502 redaction_failed, nothing of the body sent: {e}\n"),
    })
}

/// Run the gate for a question; `Err` for a malformed question.
pub fn decide(
    snapshot: &Snapshot,
    q: &Question,
    revocations: &RuntimeRevocations,
) -> Result<(Result<gate::Admission, gate::Refusal>, Option<String>), String> {
    let method = Method::from_bytes(q.method.to_ascii_uppercase().as_bytes())
        .map_err(|_| format!("bad method `{}`", q.method))?;
    let ip: IpAddr =
        q.ip.parse()
            .map_err(|_| format!("--ip `{}` is not an IP address", q.ip))?;
    let now = match &q.at {
        Some(t) => parse_instant(t)?,
        None => jiff::Timestamp::now(),
    };
    let mut headers = HeaderMap::new();
    headers.insert(http::header::HOST, HeaderValue::from_static("chatwarden"));
    let caller = match (&q.token, &q.claims) {
        (Some(t), _) => {
            let v = HeaderValue::from_str(&format!("Bearer {t}"))
                .map_err(|_| "token has characters not allowed in a header")?;
            headers.insert(http::header::AUTHORIZATION, v);
            None
        }
        (None, Some(c)) => {
            let auth = snapshot
                .auth
                .as_ref()
                .ok_or("--claims needs an `auth` section in the config")?;
            let claims: serde_json::Value =
                serde_json::from_str(c).map_err(|e| format!("--claims is not JSON: {e}"))?;
            let identity = identity_from_unchecked_claims(&claims, &auth.settings)?;
            let algorithm = auth
                .settings
                .algorithms
                .first()
                .copied()
                .unwrap_or(jsonwebtoken::Algorithm::EdDSA);
            Some(Arc::new(Verified {
                identity,
                key_id: None,
                algorithm,
            }))
        }
        (None, None) => None,
    };
    let view = RequestView {
        method: &method,
        raw_target: q.path.as_bytes(),
        headers: &headers,
        authority: None,
        websocket: false,
        wire: WireFacts::default(),
    };
    let circumstances = Circumstances {
        client_ip: ip,
        now,
        revocations,
        signature_failures: None,
    };
    Ok(gate::explain(snapshot, &view, &circumstances, caller))
}

/// `2026-11-24T10:00:00Z`, `2026-11-24T10:00:00+01:00`, or a civil time in
/// a zone: `2026-11-24T10:00:00[Europe/London]`.
pub fn parse_instant(text: &str) -> Result<jiff::Timestamp, String> {
    if let Ok(ts) = text.parse::<jiff::Timestamp>() {
        return Ok(ts);
    }
    text.parse::<jiff::Zoned>()
        .map(|z| z.timestamp())
        .map_err(|_| format!("`{text}` is not a time (use 2026-11-24T10:00:00Z or 2026-11-24T10:00:00[Europe/London])"))
}

/// `1MB`, `64KB`, `1500 bytes`: the largest unit that divides it.
fn size_text(bytes: u64) -> String {
    for (shift, unit) in [(30, "GB"), (20, "MB"), (10, "KB")] {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    format!("{bytes} bytes")
}

/// What the proxy still does after admitting: the ownership lookup before
/// forwarding and the row filter on the response. Explain states them; it
/// does not fetch the live object.
fn object_rules(snapshot: &Snapshot, a: &gate::Admission, bodiless: bool) -> Vec<String> {
    let mut lines = Vec::new();
    if !bodiless {
        lines.push(format!(
            "body:     at most {} forwarded (413 body_too_large beyond)",
            size_text(a.route.max_body)
        ));
    }
    if a.route.websocket && bodiless {
        lines.push(
            "stream:   a WebSocket handshake is forwarded; the open stream is decided again as its frames pass"
                .to_string(),
        );
    }
    let links = &a.route.upstream.links;
    if !links.is_empty() {
        let origins: Vec<&str> = links.iter().map(|o| o.as_str()).collect();
        lines.push(format!(
            "links:    URLs under {} in {} lead to {} instead",
            origins.join(", "),
            if a.route.websocket {
                "each stream message"
            } else {
                "the JSON answer (and Location)"
            },
            snapshot
                .public_url
                .as_deref()
                .unwrap_or("the gateway as the client reached it (its Host)")
        ));
    }
    let Some(caller) = &a.caller else {
        return lines;
    };
    let roles = snapshot.policy.roles();
    if let Some(check) = &a.route.owner_check {
        let path = check.lookup_path(&a.params).unwrap_or_default();
        lines.push(match check.plan(&caller.identity, roles) {
            RowFilterPlan::Skip => {
                "owner:    no lookup: the caller may reach every object".to_string()
            }
            plan => format!(
                "owner:    GET {path} first; forwarded only if {}, else 404 not_found",
                describe(&plan, &check.filter.claim)
            ),
        });
    }
    // Whether the caller holds a binding's `unless_permission`.
    let lifted = |p: &Option<crate::policy::Permission>| {
        p.as_ref()
            .is_some_and(|p| roles.holds(&caller.identity.roles, p))
    };
    for b in a
        .route
        .requirement
        .scope
        .iter()
        .filter(|b| b.source == ScopeSource::Query)
    {
        lines.push(if lifted(&b.unless_permission) {
            format!(
                "scope:    query parameter `{}` not checked (the caller holds its permission)",
                b.param
            )
        } else {
            format!(
                "scope:    the query must name `{}` once, one of the caller's {} [{}], else 403 scope_denied (also for two values or `{}[]`)",
                b.param,
                b.claim,
                caller.identity.attribute(&b.claim).join(", "),
                b.param
            )
        });
    }
    for b in &a.route.body_scope {
        lines.push(if lifted(&b.unless_permission) {
            format!(
                "scope:    body member `{}` not checked (the caller holds its permission)",
                b.member
            )
        } else {
            format!(
                "scope:    the JSON body is read first (at most {}); forwarded only if its `{}`{} is in the caller's {} [{}], else 403 scope_denied (400 bad_request for a body that is not one JSON object, or `{}` in the query{})",
                size_text(
                    a.route
                        .max_body
                        .min(crate::policy::body_scope::MAX_SCOPED_BODY as u64)
                ),
                b.member,
                if b.optional { ", when there," } else { "" },
                b.claim,
                caller.identity.attribute(&b.claim).join(", "),
                b.member,
                b.requires
                    .iter()
                    .map(|r| format!(", or no `{r}` beside it"))
                    .collect::<String>()
            )
        });
    }
    if let Some(limit) = &a.route.rate_limit {
        let every = limit.per / limit.burst.get();
        let every = if every < std::time::Duration::from_secs(1) {
            format!("{}ms", every.as_millis())
        } else {
            format!("{}s", every.as_secs())
        };
        lines.push(format!(
            "limit:    at most {} requests at once, one more every {every}, per {} (429 with Retry-After beyond)",
            limit.burst,
            match limit.key {
                crate::limit::LimitKey::Subject => "caller",
                crate::limit::LimitKey::ClientIp => "client address",
                crate::limit::LimitKey::Route => "route (everyone together)",
            }
        ));
    }
    for rule in &a.route.redactions {
        lines.push(if lifted(&rule.unless_permission) {
            format!(
                "redact:   {} lifted (the caller holds its permission)",
                rule.name
            )
        } else {
            format!(
                "redact:   {}: {} field(s) masked{}",
                rule.name,
                rule.fields.len(),
                if rule.detect.is_empty() {
                    String::new()
                } else {
                    format!(
                        ", {} found in free text",
                        rule.detect
                            .iter()
                            .map(|d| match d {
                                Detector::Phone(regions) if !regions.is_empty() => format!(
                                    "phone (with {} national numbers)",
                                    regions
                                        .iter()
                                        .map(Region::code)
                                        .collect::<Vec<_>>()
                                        .join(", ")
                                ),
                                Detector::NationalId(regions) => format!(
                                    "national_id ({})",
                                    regions
                                        .iter()
                                        .filter(|r| national_id::known(*r))
                                        .map(Region::code)
                                        .collect::<Vec<_>>()
                                        .join(", ")
                                ),
                                d => d.as_str().to_string(),
                            })
                            .collect::<Vec<_>>()
                            .join(" and ")
                    )
                }
            )
        });
    }
    if let Some(m) = &a.route.message_filter {
        lines.push(match plan_row_filter(&m.filter, &caller.identity, roles) {
            RowFilterPlan::Skip => {
                "messages: the stream's messages are not filtered for this caller".to_string()
            }
            plan => format!(
                "messages: each the upstream sends is dropped unless its object at {} passes: {}",
                m.filter.items.as_str(),
                describe_message(&plan, m)
            ),
        });
    }
    if let Some(subscribe) = &a.route.subscribe_as {
        let names: Vec<String> = subscribe
            .members
            .iter()
            .map(|(name, _)| format!("`{name}`"))
            .collect();
        lines.push(format!(
            "messages: each subscription the client asks for is made with {} set by the gateway; its identifier comes back as the client wrote it",
            names.join(", ")
        ));
    }
    if let Some(member) = &a.route.control_messages {
        lines.push(format!(
            "messages: those with a top-level `{member}` are the protocol's own: not filtered, searched by `detect` only"
        ));
    }
    if let Some(filter) = &a.route.row_filter {
        lines.push(match plan_row_filter(filter, &caller.identity, roles) {
            RowFilterPlan::Skip => "rows:     response not filtered for this caller".to_string(),
            plan => format!(
                "rows:     items at {} kept only if {}",
                filter.items.as_str(),
                describe(&plan, &filter.claim)
            ),
        });
    }
    lines
}

fn describe(plan: &RowFilterPlan, claim: &str) -> String {
    tests_of(plan, claim, |o| o.field.as_str().to_string(), "")
}

/// A message filter's tests, as [`describe`] words a row filter's.
fn describe_message(plan: &RowFilterPlan, m: &MessageFilter) -> String {
    let fields: Vec<&str> = m.fields.iter().map(FieldPath::as_str).collect();
    let owner = match fields.as_slice() {
        [one] => format!("its owner ({one})"),
        many => format!("its owner (the first present of {})", many.join(", ")),
    };
    let owned = matches!(plan, RowFilterPlan::Keep { owner: Some(_), .. });
    tests_of(
        plan,
        &m.filter.claim,
        |_| owner.clone(),
        if owned {
            " (an object of hers that does not say its labels passes)"
        } else {
            " (an object that does not say its labels is dropped)"
        },
    )
}

/// The tests a filter plan applies, joined with "and": the owner (named
/// by `owner`) in the caller's claim values, each hidden label absent
/// (with `label_note` after it).
fn tests_of(
    plan: &RowFilterPlan,
    claim: &str,
    owner_name: impl Fn(&OwnerMatch) -> String,
    label_note: &str,
) -> String {
    let RowFilterPlan::Keep {
        owner,
        hidden_labels,
    } = plan
    else {
        return "always".to_string();
    };
    let mut tests = Vec::new();
    if let Some(o) = owner {
        tests.push(format!(
            "{} is in the caller's {claim} [{}]",
            owner_name(o),
            o.allowed_values.join(", ")
        ));
    }
    for h in hidden_labels {
        tests.push(format!(
            "{} lacks `{}`{label_note}",
            h.field.as_str(),
            h.label
        ));
    }
    tests.join(" and ")
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::Path;

    use super::*;
    use crate::config::load_str;

    const CONFIG: &str = r#"
listeners: [{name: main, addr: "127.0.0.1:1"}]
upstreams: {crm: {url: "http://127.0.0.1:2"}}
auth:
  issuer: https://idp.test/
  audiences: [chatwarden]
  algorithms: [HS256]
  hmac_secret: 0123456789abcdef0123456789abcdef
  claims: {attributes: {user_id: uid, inbox_ids: inboxes}}
roles:
  agent: {permissions: [conversations.read]}
  supervisor: {inherits: [agent], permissions: [conversations.read_all, pii.read, scope.all_inboxes]}
redaction:
  - {name: pii, unless_permission: pii.read, fields: ["$.meta.sender.email"], detect: [phone, national_id], countries: [in, ES, CO]}
routes:
  - name: show
    upstream: crm
    methods: [GET]
    path: "/c/{id}"
    permission: conversations.read
    owner_check: {field: meta.assignee.id, claim: user_id, unless_permission: conversations.read_all}
    rate_limit: {per: 1m, burst: 120}
    redaction: [pii]
  - {name: reply, upstream: crm, methods: [POST], path: "/c/{id}/messages", permission: conversations.read, max_body: 40MB}
  - {name: cable, upstream: crm, methods: [GET], path: "/cable", permission: conversations.read, websocket: true}
  - name: live
    upstream: crm
    methods: [GET]
    path: /live
    permission: conversations.read
    websocket: true
    control_messages: type
    subscribe_as: {pubsub_token: not-printed-0123456789, user_id: "1"}
    message_filter:
      object: $.message.data
      fields: [meta.assignee.id, conversation.assignee_id]
      claim: user_id
      unless_permission: conversations.read_all
      labels: [{label: confidential, permission: pii.read}]
    redaction: [pii]
  - {name: open, upstream: crm, methods: [POST], path: "/c", permission: conversations.read, scope: [{body: inbox_id, claim: inbox_ids, unless_permission: scope.all_inboxes}]}
  - {name: media, upstream: crm, methods: [GET], path: "/m/{id}", permission: conversations.read, scope: [{query: inbox, claim: inbox_ids}]}
"#;

    fn ask(roles: &str) -> String {
        ask_to("GET", "/c/42", roles)
    }

    fn ask_to(method: &str, path: &str, roles: &str) -> String {
        let snapshot = load_str(CONFIG, Path::new("t.yaml"), &HashMap::new())
            .unwrap_or_else(|e| panic!("{e}"));
        let q = Question {
            method: method.into(),
            path: path.into(),
            token: None,
            claims: Some(format!(
                r#"{{"sub": "a", "roles": {roles}, "uid": 7, "inboxes": [1, 3]}}"#
            )),
            ip: "10.0.0.1".into(),
            at: None,
        };
        answer(&snapshot, &q, &RuntimeRevocations::default()).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn explains_what_the_proxy_still_does_after_admitting() {
        let agent = ask(r#"["agent"]"#);
        for line in [
            "decision: allow",
            "owner:    GET /c/42 first; forwarded only if meta.assignee.id is in the caller's user_id [7], else 404 not_found",
            "limit:    at most 120 requests at once, one more every 500ms, per caller",
            "redact:   pii: 1 field(s) masked, phone (with CO, ES, IN national numbers) and national_id (ES, IN) found in free text",
        ] {
            assert!(agent.contains(line), "expected `{line}` in:\n{agent}");
        }
        assert!(!agent.contains("body:"), "a GET has no body:\n{agent}");
        assert!(!agent.contains("stream:"), "no WebSocket here:\n{agent}");
        let cable = ask_to("GET", "/cable", r#"["agent"]"#);
        let line = "stream:   a WebSocket handshake is forwarded; the open stream is decided again as its frames pass";
        assert!(cable.contains(line), "expected `{line}` in:\n{cable}");
        assert!(!cable.contains("messages:"), "{cable}");
        let live = ask_to("GET", "/live", r#"["agent"]"#);
        for line in [
            "messages: each the upstream sends is dropped unless its object at $.message.data passes: its owner (the first present of meta.assignee.id, conversation.assignee_id) is in the caller's user_id [7] and labels lacks `confidential` (an object of hers that does not say its labels passes)",
            "messages: those with a top-level `type` are the protocol's own: not filtered, searched by `detect` only",
            "messages: each subscription the client asks for is made with `pubsub_token`, `user_id` set by the gateway; its identifier comes back as the client wrote it",
            "redact:   pii: 1 field(s) masked",
        ] {
            assert!(live.contains(line), "expected `{line}` in:\n{live}");
        }
        assert!(!live.contains("not-printed"), "{live}");
        let live = ask_to("GET", "/live", r#"["supervisor"]"#);
        let line = "messages: the stream's messages are not filtered for this caller";
        assert!(live.contains(line), "expected `{line}` in:\n{live}");
        let reply = ask_to("POST", "/c/42/messages", r#"["agent"]"#);
        let line = "body:     at most 40MB forwarded (413 body_too_large beyond)";
        assert!(reply.contains(line), "expected `{line}` in:\n{reply}");
        let open = ask_to("POST", "/c", r#"["agent"]"#);
        let line = "scope:    the JSON body is read first (at most 64KB); forwarded only if its `inbox_id` is in the caller's inbox_ids [1, 3], else 403 scope_denied";
        assert!(open.contains(line), "expected `{line}` in:\n{open}");
        let open = ask_to("POST", "/c", r#"["supervisor"]"#);
        let line = "scope:    body member `inbox_id` not checked (the caller holds its permission)";
        assert!(open.contains(line), "expected `{line}` in:\n{open}");
        let media = ask_to("GET", "/m/1?inbox=3", r#"["agent"]"#);
        let line = "scope:    the query must name `inbox` once, one of the caller's inbox_ids [1, 3], else 403 scope_denied (also for two values or `inbox[]`)";
        assert!(media.contains(line), "expected `{line}` in:\n{media}");
        for (path, line) in [
            ("/m/1?inbox=3", "scope ?inbox = 3 in claim inbox_ids: allowed"),
            ("/m/1?inbox=4", "scope ?inbox = 4 in claim inbox_ids: denied: value not in the claim"),
            ("/m/1", "scope ?inbox = (missing) in claim inbox_ids: denied: the query does not name it"),
            ("/m/1?inbox=1&inbox=3", "scope ?inbox = (missing) in claim inbox_ids: denied: the query names it more than once"),
        ] {
            let told = ask_to("GET", path, r#"["agent"]"#);
            assert!(told.contains(line), "expected `{line}` in:\n{told}");
        }
        let supervisor = ask(r#"["supervisor"]"#);
        for line in [
            "owner:    no lookup: the caller may reach every object",
            "redact:   pii lifted (the caller holds its permission)",
        ] {
            assert!(
                supervisor.contains(line),
                "expected `{line}` in:\n{supervisor}"
            );
        }
    }

    #[test]
    fn a_sample_answer_is_shown_as_the_caller_would_get_it() {
        let snapshot = load_str(CONFIG, Path::new("t.yaml"), &HashMap::new())
            .unwrap_or_else(|e| panic!("{e}"));
        let ask = |roles: &str, path: &str, body: &str| {
            let q = Question {
                method: "GET".into(),
                path: path.into(),
                token: None,
                claims: Some(format!(r#"{{"sub": "a", "roles": {roles}, "uid": 7}}"#)),
                ip: "10.0.0.1".into(),
                at: None,
            };
            response_for(
                &snapshot,
                &q,
                &RuntimeRevocations::default(),
                body.as_bytes(),
            )
            .unwrap_or_else(|e| panic!("{e}"))
        };
        let body = r#"{"meta":{"sender":{"email":"jo@example.com"}},"note":"call 07700 900123"}"#;
        assert_eq!(
            ask(r#"["agent"]"#, "/c/42", body),
            "response: 0 row(s) removed, 2 value(s) masked:\n\
             {\"meta\":{\"sender\":{\"email\":\"j***@example.com\"}},\"note\":\"call ***** ***123\"}\n"
        );
        assert_eq!(
            ask(r#"["supervisor"]"#, "/c/42", body),
            "response: sent as the upstream wrote it (nothing to filter or mask for this caller)\n"
        );
        assert_eq!(
            ask(r#"["guest"]"#, "/c/42", body),
            "response: none: the request is refused (permission_denied) and never reaches the upstream\n"
        );
        assert!(ask(r#"["agent"]"#, "/c/42", "<html>not JSON</html>")
            .starts_with("response: 502 redaction_failed, nothing of the body sent: "),);

        // A stream's message: hers masked, another's dropped, a ping as is.
        let mine = r#"{"message":{"data":{"conversation":{"assignee_id":7},"content":"call 07700 900123"}}}"#;
        assert_eq!(
            ask(r#"["agent"]"#, "/live", mine),
            "message: 1 value(s) masked:\n\
             {\"message\":{\"data\":{\"conversation\":{\"assignee_id\":7},\"content\":\"call ***** ***123\"}}}\n"
        );
        assert_eq!(
            ask(r#"["agent"]"#, "/live", &mine.replace(":7}", ":8}")),
            "message: dropped: the route's message_filter keeps it from this caller's stream\n"
        );
        assert_eq!(
            ask(r#"["supervisor"]"#, "/live", mine),
            "message: sent as the upstream wrote it (nothing to filter or mask for this caller)\n"
        );
        assert_eq!(
            ask(r#"["agent"]"#, "/cable", mine),
            "message: sent as the upstream wrote it (the stream is not read for this caller)\n"
        );
        assert!(ask(r#"["agent"]"#, "/live", "[1]").starts_with(
            "message: the stream ends (redaction_failed), nothing of the message sent: "
        ));
    }

    #[test]
    fn upstream_links_are_shown_leading_to_the_gateway() {
        let config = |network: &str| {
            format!(
                "listeners: [{{name: main, addr: \"127.0.0.1:1\"}}]\n{network}\
                 upstreams:\n  graph: {{url: \"https://graph.facebook.com\", links: [graph, media]}}\n  media: {{url: \"https://lookaside.fbsbx.com\"}}\n\
                 routes: [{{name: list, upstream: graph, methods: [GET], path: \"/v23.0/{{waba}}/message_templates\", auth: none}}]\n"
            )
        };
        let question = Question {
            method: "GET".into(),
            path: "/v23.0/1/message_templates".into(),
            token: None,
            claims: None,
            ip: "10.0.0.1".into(),
            at: None,
        };
        let body = br#"{"data":[],"paging":{"next":"https:\/\/graph.facebook.com\/v23.0\/1\/message_templates?after=Q"}}"#;
        for (network, origin, led) in [
            (
                "network: {public_url: \"https://api.acme.example\"}\n",
                "https://api.acme.example",
                "https://api.acme.example/v23.0/1/message_templates?after=Q",
            ),
            (
                "",
                "the gateway as the client reached it (its Host)",
                "/v23.0/1/message_templates?after=Q",
            ),
        ] {
            let snapshot = load_str(&config(network), Path::new("t.yaml"), &HashMap::new())
                .unwrap_or_else(|e| panic!("{e}"));
            let told = answer(&snapshot, &question, &RuntimeRevocations::default())
                .unwrap_or_else(|e| panic!("{e}"));
            let line = format!("links:    URLs under https://graph.facebook.com, https://lookaside.fbsbx.com in the JSON answer (and Location) lead to {origin} instead");
            assert!(told.contains(&line), "expected `{line}` in:\n{told}");
            let shown = response_for(&snapshot, &question, &RuntimeRevocations::default(), body)
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(shown.contains(led), "expected `{led}` in:\n{shown}");
        }
    }

    #[test]
    fn sizes_read_in_their_largest_whole_unit() {
        assert_eq!(size_text(1 << 20), "1MB");
        assert_eq!(size_text(64 << 10), "64KB");
        assert_eq!(size_text(4 << 30), "4GB");
        assert_eq!(size_text(1536 << 10), "1536KB");
        assert_eq!(size_text(1500), "1500 bytes");
    }
}
