//! The decision pipeline before any upstream is contacted, as one pure
//! function over plain `http` types: request hygiene, one path
//! normalization, a browser's CORS preflight (decided by the CORS policy
//! alone: it carries no credentials), route match (default deny),
//! authentication, revocation, where a cookie-authenticated change (or
//! WebSocket) came from, then the policy (permission, access rules, MFA,
//! scope), and last whether the request asks for another method than the
//! one decided on and whether the route carries WebSockets. The proxy
//! calls it from `request_filter`; `chatwarden explain` calls the very
//! same function.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, Method};

use crate::auth::origin::{check_cross_site_read, check_same_origin};
use crate::auth::{
    bearer_token, challenge, AuthError, Budget, MfaFailure, SignatureFailures, Verified,
};
use crate::config::snapshot::{AuthMode, AuthRuntime, Route, Snapshot};
use crate::cors::{preflight_method, CorsPolicy, PREFLIGHT_RULE};
use crate::decision::{Decision, Reason};
use crate::policy::{decide, Explanation, ScopeSource, Subject};
use crate::request::format_suffix::format_suffix;
use crate::request::method_override::{form_body, header_override, query_override, FormBody};
use crate::request::query::{QueryParams, NO_QUERY_PARAMS};
use crate::request::{check_framing, normalize_path, NormalizedPath};
use crate::revocation::{is_revoked, RuntimeRevocations};
use crate::route::Params;

/// The request as the gateway sees it before deciding.
pub struct RequestView<'a> {
    pub method: &'a Method,
    /// The request-target exactly as received (origin form: path and
    /// optional query), as bytes: invalid UTF-8 is refused, never repaired.
    pub raw_target: &'a [u8],
    pub headers: &'a HeaderMap,
    /// `:authority` of an HTTP/2 request (HTTP/1.1 has `Host` instead).
    pub authority: Option<&'a str>,
    /// A WebSocket handshake (HTTP/1.1 `Upgrade: websocket`): refused on
    /// routes that do not carry WebSockets, and a browser's is judged for
    /// cross-site use like a change.
    pub websocket: bool,
    pub wire: WireFacts,
}

/// Facts from outside the request itself.
pub struct Circumstances<'a> {
    /// As resolved through trusted proxies.
    pub client_ip: IpAddr,
    pub now: jiff::Timestamp,
    /// Subjects revoked at runtime through the admin endpoint.
    pub revocations: &'a RuntimeRevocations,
    /// Bad signatures per client (kept across reloads); `None` checks
    /// every token whatever its client sent before (`explain`).
    pub signature_failures: Option<&'a SignatureFailures>,
}

/// What the HTTP/1 parser saw on the wire but no longer shows in the
/// parsed headers. pingora drops `Content-Length` when `Transfer-Encoding`
/// is also present (RFC 9112 §6.3); the gateway refuses such requests
/// outright, so the adapter reports the fact here.
#[derive(Debug, Clone, Copy, Default)]
pub struct WireFacts {
    pub content_length_with_transfer_encoding: bool,
}

/// A request the gateway has decided to let through (or to answer itself).
pub struct Admission {
    pub route: Arc<Route>,
    /// The one normalized path: what policy matched and what is forwarded.
    pub path: NormalizedPath,
    /// The query string as received (without `?`), forwarded unchanged.
    pub query: Option<String>,
    pub params: Params,
    /// The verified caller (jwt routes).
    pub caller: Option<Arc<Verified>>,
    /// Rules that decided or would have (dry runs), for the audit record.
    pub rules: Vec<String>,
    /// Work left before forwarding.
    pub pending: Pending,
}

/// Checks that need more than the request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pending {
    Nothing,
    /// Read the body and check Meta's `X-Hub-Signature-256`.
    WebhookSignature,
    /// Meta's subscription handshake: answer 200 with this challenge.
    WebhookChallenge(String),
    /// A browser's preflight the CORS policy allows: the gateway answers
    /// it (`cors`), nothing is forwarded.
    Preflight,
}

/// Why a request was refused, with the detail an operator needs in the
/// log (never in the client's response body).
#[derive(Debug, Clone)]
pub struct Refusal {
    pub reason: Reason,
    pub detail: String,
    /// The normalized path, when normalization got that far: the audit
    /// records what was decided on, not the raw bytes.
    pub path: Option<NormalizedPath>,
    pub route: Option<Arc<Route>>,
    /// The caller, when authentication succeeded before the refusal.
    pub caller: Option<Arc<Verified>>,
    pub rules: Vec<String>,
    /// RFC 9470 step-up challenge for `mfa_required` / `mfa_stale`.
    pub challenge: Option<String>,
    /// The token named a key the gateway does not know: a JWKS refetch
    /// may help, and the caller may retry the decision once.
    pub unknown_kid: bool,
    /// Seconds before the client may try again (`rate_limited`). Small,
    /// so that it fits beside `unknown_kid`: refusals are returned by value.
    pub retry_after: Option<NonZeroU32>,
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Route").field("name", &self.name).finish()
    }
}

/// Decide whether a request may go upstream.
pub fn admit(
    snapshot: &Snapshot,
    req: &RequestView<'_>,
    now: &Circumstances<'_>,
) -> Result<Admission, Refusal> {
    admit_inner(snapshot, req, now, None, |_| {})
}

/// The same decision, plus the policy's full explanation (every check
/// consulted), for `chatwarden explain`, `chatwarden test` and the admin
/// `/explain`. With `caller`, that identity stands in for the request's
/// token (policy questions about people, not about tokens).
pub fn explain(
    snapshot: &Snapshot,
    req: &RequestView<'_>,
    now: &Circumstances<'_>,
    caller: Option<Arc<Verified>>,
) -> (Result<Admission, Refusal>, Option<String>) {
    let mut report = None;
    let outcome = admit_inner(snapshot, req, now, caller, |e| report = Some(e.to_string()));
    (outcome, report)
}

fn admit_inner(
    snapshot: &Snapshot,
    req: &RequestView<'_>,
    now: &Circumstances<'_>,
    presented: Option<Arc<Verified>>,
    on_explanation: impl FnOnce(&Explanation<'_>),
) -> Result<Admission, Refusal> {
    if req.wire.content_length_with_transfer_encoding {
        return Err(bad_request(
            "both Content-Length and Transfer-Encoding".to_string(),
        ));
    }
    check_framing(req.headers).map_err(|e| bad_request(e.to_string()))?;
    let target = std::str::from_utf8(req.raw_target)
        .map_err(|_| bad_request("request target is not valid UTF-8".to_string()))?;
    let (raw_path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    if let Some(q) = query {
        if q.bytes().any(|b| b < 0x20 || b == 0x7f) || q.contains("%00") {
            return Err(bad_request(
                "query string contains a control character".to_string(),
            ));
        }
    }
    let path = normalize_path(raw_path).map_err(|e| bad_request(e.to_string()))?;
    if let Some(cors) = &snapshot.cors {
        if let Some(asked) = preflight_method(req.method, req.headers) {
            return preflight(snapshot, cors, req.headers, asked, path, query);
        }
    }
    let Some(found) = snapshot.routes.find(req.method, &path) else {
        return Err(Refusal {
            detail: format!("no route for {} {}", req.method, path.as_str()),
            path: Some(path),
            ..refusal(Reason::NoRoute)
        });
    };
    let route = found.value.clone();
    let mut admission = Admission {
        route: route.clone(),
        query: query.map(str::to_string),
        params: found.params,
        path,
        caller: None,
        rules: Vec::new(),
        pending: Pending::Nothing,
    };
    let refuse = |reason: Reason, detail: String, a: &Admission| Refusal {
        reason,
        detail,
        path: Some(a.path.clone()),
        route: Some(a.route.clone()),
        caller: a.caller.clone(),
        rules: a.rules.clone(),
        challenge: None,
        unknown_kid: false,
        retry_after: None,
    };

    let admitted = match route.auth {
        AuthMode::None => Ok(admission),
        AuthMode::MetaSignature => {
            let Some(meta) = snapshot.auth.as_ref().and_then(|a| a.meta.as_ref()) else {
                return Err(refuse(
                    Reason::SignatureInvalid,
                    "no webhook secret".into(),
                    &admission,
                ));
            };
            if req.method == Method::GET {
                return match meta.handshake(admission.query.as_deref().unwrap_or_default()) {
                    Some(Ok(challenge)) => {
                        admission.pending = Pending::WebhookChallenge(challenge);
                        Ok(admission)
                    }
                    Some(Err(e)) => {
                        Err(refuse(Reason::SignatureInvalid, e.to_string(), &admission))
                    }
                    // No verify token configured: the upstream answers it.
                    None => Ok(admission),
                };
            }
            admission.pending = Pending::WebhookSignature;
            Ok(admission)
        }
        AuthMode::Jwt => {
            let Some(auth) = snapshot.auth.as_ref() else {
                return Err(refuse(
                    Reason::TokenInvalid,
                    "jwt route without auth config".into(),
                    &admission,
                ));
            };
            let caller = match presented {
                Some(c) => c,
                None => authenticate(auth, req.headers, now).map_err(|mut r| {
                    r.path = Some(admission.path.clone());
                    r.route = Some(admission.route.clone());
                    r
                })?,
            };
            admission.caller = Some(caller.clone());
            // A WebSocket handshake is a GET, but another site's page can
            // open one with the cookie and read the stream (cross-site
            // WebSocket hijacking): it is judged like a change. A read
            // another site's page sent passes only as a navigation.
            if presented_cookie(auth, req.headers) {
                let from = if req.websocket || !is_safe(req.method) {
                    check_same_origin(req.headers, req.authority, &auth.cookie_origins)
                } else {
                    check_cross_site_read(req.headers, &auth.cookie_origins)
                };
                if let Err(why) = from {
                    let mut r = refuse(Reason::OriginDenied, why, &admission);
                    r.rules = vec![CROSS_ORIGIN_RULE.to_string()];
                    return Err(r);
                }
            }
            let query_bound = route
                .requirement
                .scope
                .iter()
                .filter(|b| b.source == ScopeSource::Query)
                .map(|b| b.param.as_str());
            // Read only for routes that bind one: most never look.
            let query = route.requirement.reads_query().then(|| {
                QueryParams::read(admission.query.as_deref().unwrap_or_default(), query_bound)
            });
            let subject = Subject {
                identity: &caller.identity,
                client_ip: now.client_ip,
                now: now.now,
                params: &admission.params,
                query: query.as_ref().unwrap_or(&NO_QUERY_PARAMS),
            };
            let verdict = decide(&snapshot.policy, &route.requirement, &subject);
            on_explanation(&verdict.explanation);
            admission.rules = verdict.rules;
            match verdict.decision {
                Decision::Allow => Ok(admission),
                Decision::Deny(reason) => {
                    let mut r = refuse(reason, format!("policy: {reason}"), &admission);
                    r.challenge = step_up(reason, auth, route.requirement.mfa_max_age);
                    Err(r)
                }
            }
        }
    }?;
    // Who is asking and whether they may are settled first: an anonymous
    // caller gets its 401, a forbidden one its 403 for the policy, and the
    // record of what follows names the caller.
    //
    // What is checked must be what the upstream does: no asking it to
    // treat this request as another method.
    let params = &route.upstream.method_override_params;
    let override_refusal = |detail: String| {
        let mut r = refuse(Reason::BadRequest, detail, &admitted);
        r.rules.push(override_rule(&route));
        r
    };
    // GET and HEAD are never overridden (frameworks override POSTs), and
    // the headers are dropped from them before forwarding.
    if !matches!(*req.method, Method::GET | Method::HEAD) {
        if let Some(header) = header_override(req.headers) {
            return Err(refuse(
                Reason::BadRequest,
                format!("method override header {header}"),
                &admitted,
            ));
        }
        if let FormBody::Unreadable(why) = form_body(req.method, req.headers, params) {
            return Err(override_refusal(format!(
                "{why} cannot be read for method overrides"
            )));
        }
    }
    if let Some(param) = admitted
        .query
        .as_deref()
        .and_then(|q| query_override(q, params))
    {
        return Err(override_refusal(format!(
            "method override parameter `{param}` in the query"
        )));
    }
    // Nor to read the last segment as a format where a template took it
    // for a parameter (`/contacts/search.json` runs `search` in Rails).
    if route.upstream.refuse_format_suffix {
        if let Some(segment) = format_suffix(&admitted.path) {
            let mut r = refuse(
                Reason::BadRequest,
                format!("`{segment}`: the upstream could read what follows the dot as a format"),
                &admitted,
            );
            r.rules.push(format_suffix_rule(&route));
            return Err(r);
        }
    }
    if req.websocket && !route.websocket {
        let mut r = refuse(
            Reason::UpgradeDenied,
            "WebSocket handshake on a route without `websocket: true`".into(),
            &admitted,
        );
        r.rules.push(websocket_rule(&route));
        return Err(r);
    }
    Ok(admitted)
}

/// A browser's preflight, when the config has a CORS policy: answered for
/// a listed origin and allowed headers, on a path a route takes the asked
/// method for. It carries no credentials, so no one is authenticated and
/// nothing is forwarded; the request it precedes is decided on its own.
fn preflight(
    snapshot: &Snapshot,
    cors: &CorsPolicy,
    headers: &HeaderMap,
    asked: Result<Method, String>,
    path: NormalizedPath,
    query: Option<&str>,
) -> Result<Admission, Refusal> {
    let asked = asked.map_err(|why| Refusal {
        path: Some(path.clone()),
        ..bad_request(why)
    })?;
    let Some(found) = snapshot.routes.find(&asked, &path) else {
        return Err(Refusal {
            detail: format!("preflight: no route for {asked} {}", path.as_str()),
            path: Some(path),
            ..refusal(Reason::NoRoute)
        });
    };
    let route = found.value.clone();
    if let Err(no) = cors.check_preflight(headers) {
        return Err(Refusal {
            detail: no.detail,
            path: Some(path),
            route: Some(route),
            rules: vec![no.rule.to_string()],
            ..refusal(Reason::CorsDenied)
        });
    }
    Ok(Admission {
        route,
        path,
        query: query.map(str::to_string),
        params: found.params,
        caller: None,
        rules: vec![PREFLIGHT_RULE.to_string()],
        pending: Pending::Preflight,
    })
}

/// GET, HEAD and OPTIONS change nothing (RFC 9110 §9.2.1).
fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The rule an audit record names for a method override parameter.
pub fn override_rule(route: &Route) -> String {
    format!("upstreams.{}.method_override_params", route.upstream.name.0)
}

/// The rule an audit record names for a format suffix.
pub fn format_suffix_rule(route: &Route) -> String {
    format!("upstreams.{}.format_suffix", route.upstream.name.0)
}

/// The rule an audit record names for a route's WebSocket setting.
pub fn websocket_rule(route: &Route) -> String {
    format!("{}.websocket", route.name.0)
}

/// Token → verified caller, revocation checked (cache hits included).
fn authenticate(
    auth: &AuthRuntime,
    headers: &HeaderMap,
    now: &Circumstances<'_>,
) -> Result<Arc<Verified>, Refusal> {
    let token = bearer_token(
        headers,
        auth.cookie.as_deref(),
        auth.settings.max_token_bytes,
    )
    .map_err(|e| Refusal {
        detail: e.to_string(),
        ..refusal(e.reason())
    })?;
    let budget = match (&auth.settings.bad_signatures, now.signature_failures) {
        (Some(limit), Some(failures)) => Some(Budget {
            failures,
            client: now.client_ip,
            limit,
        }),
        _ => None,
    };
    let verified = auth
        .verifier
        .verify_within(token, now.now.as_second(), budget)
        .map_err(|e| {
            let retry_after = match e {
                AuthError::TooManyBadSignatures { retry_after } => Some(
                    NonZeroU32::new(u32::try_from(retry_after).unwrap_or(u32::MAX))
                        .unwrap_or(NonZeroU32::MIN),
                ),
                _ => None,
            };
            Refusal {
                detail: e.to_string(),
                unknown_kid: e.is_unknown_kid(),
                retry_after,
                rules: retry_after
                    .map(|_| vec![BAD_SIGNATURES_RULE.to_string()])
                    .unwrap_or_default(),
                ..refusal(e.reason())
            }
        })?;
    if is_revoked(
        &auth.revoked,
        now.revocations,
        &verified.identity,
        now.now.as_millisecond(),
    ) {
        return Err(Refusal {
            detail: "subject or token id revoked".to_string(),
            caller: Some(verified),
            ..refusal(Reason::TokenRevoked)
        });
    }
    Ok(verified)
}

fn step_up(reason: Reason, auth: &AuthRuntime, route_max_age: Option<Duration>) -> Option<String> {
    let failure = match reason {
        Reason::MfaRequired => MfaFailure::Required,
        Reason::MfaStale => MfaFailure::Stale,
        _ => return None,
    };
    Some(challenge(failure, &auth.settings.mfa, route_max_age))
}

/// Whether the token came from the cookie: the header wins when both are
/// there (see [`bearer_token`]).
fn presented_cookie(auth: &AuthRuntime, headers: &HeaderMap) -> bool {
    auth.cookie.is_some() && !headers.contains_key(http::header::AUTHORIZATION)
}

/// The rule an audit record names when a cookie-authenticated change came
/// from another site's page.
pub const CROSS_ORIGIN_RULE: &str = "auth.cookie_origins";

/// The rule an audit record names when a client's new token was refused
/// for its earlier bad signatures.
pub const BAD_SIGNATURES_RULE: &str = "auth.bad_signatures";

fn refusal(reason: Reason) -> Refusal {
    Refusal {
        reason,
        detail: String::new(),
        path: None,
        route: None,
        caller: None,
        rules: Vec::new(),
        challenge: None,
        unknown_kid: false,
        retry_after: None,
    }
}

fn bad_request(detail: String) -> Refusal {
    Refusal {
        detail,
        ..refusal(Reason::BadRequest)
    }
}
