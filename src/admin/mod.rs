//! The admin listener: `/healthz`, `/readyz`, `/metrics`, `POST /revoke`,
//! `POST /reload`, `POST /explain`. A thin pingora `ServeHttp` app over the
//! config store, metrics and audit counters. Everything but the two probes
//! requires the admin bearer token when one is configured, and a client
//! certificate from `admin.tls.client_ca` when that is configured (see
//! [`tls`]).

pub mod tls;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::audit::{AuditEvent, AuditRecord, AuditSink, AuditStats};
use crate::auth::JwksSource;
use crate::config::duration::parse_duration;
use crate::config::ConfigStore;
use crate::connection::Paced;
use crate::decision::Verdict;
use crate::explain::{self, Question};
use crate::limit::LimitStore;
use crate::metrics::{External, Metrics};
use crate::reload::{ReloadOutcome, Reloader};
use crate::revocation::{self, shared, RuntimeRevocations};
use tls::{ClientCert, Presented};

pub struct AdminApp {
    pub store: ConfigStore,
    pub metrics: Arc<Metrics>,
    pub audit_stats: Arc<AuditStats>,
    /// For readiness (under `fail_closed`, not ready while it refuses), and
    /// for the records of revocations.
    pub audit: AuditSink,
    pub revocations: Arc<RuntimeRevocations>,
    pub jwks: Option<Arc<JwksSource>>,
    pub reloader: Option<Arc<Reloader>>,
}

/// Who made an admin request: its address, and its client certificate
/// when `admin.tls.client_ca` asks for one.
struct Caller {
    ip: String,
    cert: Option<ClientCert>,
}

impl std::fmt::Display for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "from {}", self.ip)?;
        if let Some(cert) = &self.cert {
            write!(f, " with {cert}")?;
        }
        Ok(())
    }
}

/// Why an admin request is refused: the answer, and the reason for the
/// audit record.
struct Refusal {
    status: StatusCode,
    body: String,
    why: &'static str,
}

#[async_trait]
impl ServeHttp for AdminApp {
    /// The answer; and for the head deadline (`connection`), where the
    /// request begins and ends.
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        if let Some(paced) = session.stream().and_then(Paced::of) {
            paced.head_complete();
        }
        let answer = self.answer(session).await;
        if let Some(paced) = session.stream().and_then(Paced::of) {
            paced.request_finished();
        }
        answer
    }
}

impl AdminApp {
    async fn answer(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        let path = req.uri.path().to_string();
        let method = req.method.clone();
        match (method.as_str(), path.as_str()) {
            ("GET", "/healthz") => return text(StatusCode::OK, "ok\n"),
            ("GET", "/readyz") if self.ready() => return text(StatusCode::OK, "ready\n"),
            ("GET", "/readyz") => return text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
            ("POST", "/revoke" | "/unrevoke" | "/reload" | "/explain") | ("GET", "/metrics") => {}
            _ => return text(StatusCode::NOT_FOUND, "not found\n"),
        }
        let (caller, refused) = self.admit(session);
        if let Some(refusal) = refused {
            if method == "POST" && matches!(path.as_str(), "/revoke" | "/unrevoke" | "/reload") {
                self.record_refusal(&path, &caller, refusal.why).await;
            }
            return text(refusal.status, &refusal.body);
        }
        match path.as_str() {
            "/revoke" => self.revoke(session, &caller).await,
            "/unrevoke" => self.unrevoke(session, &caller).await,
            "/reload" => self.reload(&caller).await,
            "/explain" => self.explain(session).await,
            _ => {
                let snapshot = self.store.load();
                let body = self.metrics.render(&External {
                    audit_written: self.audit_stats.written(),
                    audit_failed: self.audit_stats.failed(),
                    audit_refused: self.audit_stats.refused(),
                    config_version: snapshot.version.0.to_string(),
                    ready: self.ready(),
                    audit_available: self.audit.admission().is_ok(),
                    runtime_revocations: self.revocations.in_force(shared::now_ms()),
                    revocation_sync_failures: self.revocations.sync_failures(),
                    admin_crl_next_update: snapshot
                        .admin
                        .as_ref()
                        .and_then(|a| a.tls.as_ref())
                        .and_then(|t| t.crl_next_update),
                });
                respond(
                    StatusCode::OK,
                    "text/plain; version=0.0.4",
                    body.into_bytes(),
                )
            }
        }
    }

    /// Ready once a config is loaded and, with a JWKS endpoint, its first
    /// key set has arrived; and not while the audit sink makes the proxy
    /// refuse requests (`fail_closed`).
    fn ready(&self) -> bool {
        self.store.is_ready()
            && self.jwks.as_ref().is_none_or(|j| j.is_ready())
            && self.audit.admission().is_ok()
    }

    /// `POST /reload`: re-read the config file; 200 with the version, or
    /// 400 with every problem (the running config stays).
    async fn reload(&self, caller: &Caller) -> Response<Vec<u8>> {
        let Some(reloader) = &self.reloader else {
            return text(
                StatusCode::CONFLICT,
                "this instance runs an embedded config; nothing to reload\n",
            );
        };
        let (status, body) = match reloader
            .reload(&format!("POST /reload {caller}"), &caller.ip)
            .await
        {
            ReloadOutcome::Applied { from, to } => (
                StatusCode::OK,
                serde_json::json!({"reloaded": true, "from": from, "version": to}),
            ),
            ReloadOutcome::Unchanged { version } => (
                StatusCode::OK,
                serde_json::json!({"reloaded": false, "version": version}),
            ),
            ReloadOutcome::Rejected { problems } => (
                StatusCode::BAD_REQUEST,
                serde_json::json!({"reloaded": false, "errors": problems.lines().collect::<Vec<_>>()}),
            ),
        };
        respond(status, "application/json", body.to_string().into_bytes())
    }

    /// `POST /explain` with `{"method", "path", "token" | "claims", "ip",
    /// "at"}` and optionally `"response"` (a JSON answer of the upstream,
    /// returned as the caller would get it): what the running gateway (its live config, keys and runtime
    /// revocations) would decide for that request, and why. Nothing is
    /// forwarded and no audit record is written: it is a question, not a
    /// request.
    async fn explain(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        // Room for a sample answer of the upstream (`response`).
        let body = match read_body(session, 1 << 20).await {
            Ok(b) => b,
            Err(resp) => return resp,
        };
        let ask: ExplainRequest = match serde_json::from_slice(&body) {
            Ok(a) => a,
            Err(e) => {
                return json(
                    StatusCode::BAD_REQUEST,
                    &serde_json::json!({"error": format!("expected {{\"method\", \"path\", \"token\" or \"claims\", \"ip\", \"at\"}}: {e}")}),
                )
            }
        };
        let question = Question {
            method: ask.method,
            path: ask.path,
            token: ask.token,
            claims: ask.claims.map(|c| c.to_string()),
            ip: ask.ip.unwrap_or_else(|| "0.0.0.0".to_string()),
            at: ask.at,
        };
        let snapshot = self.store.load();
        let outcome =
            explain::decide(&snapshot, &question, &self.revocations).and_then(|(outcome, _)| {
                explain::answer(&snapshot, &question, &self.revocations).map(|text| (outcome, text))
            });
        let (outcome, text) = match outcome {
            Ok(v) => v,
            Err(msg) => return json(StatusCode::BAD_REQUEST, &serde_json::json!({"error": msg})),
        };
        let mut body = match &outcome {
            Ok(a) => serde_json::json!({
                "decision": "allow",
                "reason": null,
                "status": null,
                "route": a.route.name.0,
                "rules": a.rules,
                "explanation": text,
            }),
            Err(r) => serde_json::json!({
                "decision": if r.reason.is_failure() { "error" } else { "deny" },
                "reason": r.reason.code(),
                "status": r.reason.status(),
                "route": r.route.as_ref().map(|route| route.name.0.clone()),
                "rules": r.rules,
                "explanation": text,
            }),
        };
        if let Some(response) = &ask.response {
            let answered = match &outcome {
                Ok(a) => explain::caller_gets(&snapshot, a, response).map(|gets| match gets {
                    explain::CallerGets::AsWritten => {
                        serde_json::json!({"outcome": "as_written", "body": response})
                    }
                    explain::CallerGets::Rewritten {
                        body,
                        removed,
                        masked,
                    } => serde_json::json!({"outcome": "rewritten", "body": body, "removed": removed, "masked": masked}),
                    explain::CallerGets::NotFound => {
                        serde_json::json!({"outcome": "not_found", "status": 404})
                    }
                    explain::CallerGets::Dropped => serde_json::json!({"outcome": "dropped"}),
                    explain::CallerGets::Failed(why) => {
                        serde_json::json!({"outcome": "redaction_failed", "status": 502, "why": why})
                    }
                }),
                Err(_) => Ok(serde_json::json!({"outcome": "refused"})),
            };
            match answered {
                Ok(v) => body["response"] = v,
                Err(msg) => {
                    return json(StatusCode::BAD_REQUEST, &serde_json::json!({"error": msg}))
                }
            }
        }
        json(StatusCode::OK, &body)
    }

    /// `POST /revoke` with `{"sub": "…"}` or `{"jti": "…"}`, and optionally
    /// `"ttl"`: the subject (all of its tokens) or the one token is refused
    /// from its next request on, for `ttl` (default
    /// `auth.revoked.runtime_ttl`). With the shared Redis store the other
    /// replicas are told at once: 200 when they were, 202 when the store
    /// did not answer (they learn it when it does).
    async fn revoke(&self, session: &mut ServerSession, caller: &Caller) -> Response<Vec<u8>> {
        let body = match read_body(session, 4096).await {
            Ok(b) => b,
            Err(resp) => return resp,
        };
        let ask = match serde_json::from_slice::<RevokeRequest>(&body) {
            Ok(a) => a,
            Err(e) => {
                return text(
                    StatusCode::BAD_REQUEST,
                    &format!(
                        "expected {{\"sub\": \"<subject>\"}} or {{\"jti\": \"<token id>\"}}, and optionally \"ttl\": \"12h\": {e}\n"
                    ),
                )
            }
        };
        let (kind, id) = match target(ask.sub, ask.jti) {
            Ok(t) => t,
            Err(why) => return text(StatusCode::BAD_REQUEST, &format!("{why}\n")),
        };
        let snapshot = self.store.load();
        let ttl = match &ask.ttl {
            None => snapshot
                .auth
                .as_ref()
                .map_or(revocation::DEFAULT_RUNTIME_TTL, |a| a.revoked_ttl),
            Some(t) => match parse_duration(t) {
                Ok(d) if d >= Duration::from_secs(1) && d <= revocation::MAX_RUNTIME_TTL => d,
                Ok(_) => {
                    return text(
                        StatusCode::BAD_REQUEST,
                        "`ttl` must be between 1s and 30d\n",
                    )
                }
                Err(e) => return text(StatusCode::BAD_REQUEST, &format!("`ttl`: {e}\n")),
            },
        };
        drop(snapshot);
        let now = shared::now_ms();
        let until = now.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
        let newly = match self.revocations.ledger(kind).revoke(&id, until, now) {
            Ok(n) => n,
            Err(e @ revocation::RevokeError::Full) => {
                return text(StatusCode::CONFLICT, &format!("{e}\n"))
            }
            Err(e @ revocation::RevokeError::TooLong) => {
                return text(StatusCode::BAD_REQUEST, &format!("{e}\n"))
            }
        };
        let sharing = self.share(now).await;
        let until_text = jiff::Timestamp::from_millisecond(until)
            .map(|t| t.to_string())
            .unwrap_or_default();
        tracing::warn!(kind = kind.noun(), id = %id, caller = %caller, until = %until_text, "revoked through the admin endpoint");
        let detail = format!(
            "POST /revoke {caller}: {} {id} refused from its next request on until {until_text}{}{}",
            kind.noun(),
            if newly { "" } else { " (already revoked)" },
            sharing.reach()
        );
        self.write(AuditEvent::Revoke, Verdict::Allow, caller, detail)
            .await;
        let body = serde_json::json!({
            "revoked": id,
            "kind": kind.field(),
            "new": newly,
            "until": until_text,
            "shared": sharing.shared(),
            "pending": sharing.pending(),
            "runtime_revocations": self.revocations.in_force(now),
        });
        respond(
            sharing.status(),
            "application/json",
            body.to_string().into_bytes(),
        )
    }

    /// `POST /unrevoke` with `{"sub": "…"}` or `{"jti": "…"}`: lift that
    /// runtime revocation, on every replica when they share a store (what
    /// a revocation file lists stays: that is the file's to change).
    async fn unrevoke(&self, session: &mut ServerSession, caller: &Caller) -> Response<Vec<u8>> {
        let body = match read_body(session, 4096).await {
            Ok(b) => b,
            Err(resp) => return resp,
        };
        let (kind, id) = match serde_json::from_slice::<UnrevokeRequest>(&body) {
            Ok(a) => match target(a.sub, a.jti) {
                Ok(t) => t,
                Err(why) => return text(StatusCode::BAD_REQUEST, &format!("{why}\n")),
            },
            Err(e) => {
                return text(
                    StatusCode::BAD_REQUEST,
                    &format!(
                        "expected {{\"sub\": \"<subject>\"}} or {{\"jti\": \"<token id>\"}}: {e}\n"
                    ),
                )
            }
        };
        // What the other replicas revoked counts too: hear of it first.
        self.share(shared::now_ms()).await;
        let now = shared::now_ms();
        let listed = self
            .store
            .load()
            .auth
            .as_ref()
            .is_some_and(|a| a.revoked.lists(kind, &id));
        let file = match kind {
            revocation::Kind::Subject => "auth.revoked.subjects_file",
            revocation::Kind::TokenId => "auth.revoked.jti_file",
        };
        if !self.revocations.ledger(kind).lift(&id, now) {
            let why = if listed {
                format!("{id} has no runtime revocation in force; it is listed in {file}: remove it there and reload\n")
            } else {
                format!("{id} has no runtime revocation in force\n")
            };
            return text(StatusCode::NOT_FOUND, &why);
        }
        let sharing = self.share(now).await;
        tracing::warn!(kind = kind.noun(), id = %id, caller = %caller, "runtime revocation lifted through the admin endpoint");
        let detail = format!(
            "POST /unrevoke {caller}: {} {id}'s runtime revocation lifted{}{}",
            kind.noun(),
            sharing.reach(),
            if listed {
                format!("; still listed in {file}")
            } else {
                String::new()
            }
        );
        self.write(AuditEvent::Revoke, Verdict::Allow, caller, detail)
            .await;
        let body = serde_json::json!({
            "lifted": id,
            "kind": kind.field(),
            "still_listed_in_file": listed,
            "shared": sharing.shared(),
            "pending": sharing.pending(),
            "runtime_revocations": self.revocations.in_force(now),
        });
        respond(
            sharing.status(),
            "application/json",
            body.to_string().into_bytes(),
        )
    }

    /// Sync runtime revocations with the other replicas now, if the live
    /// config shares them.
    async fn share(&self, now_ms: i64) -> Sharing {
        let store = {
            let snapshot = self.store.load();
            match &snapshot.rate_limits {
                LimitStore::Redis(r) if snapshot.auth.is_some() => Some(r.clone()),
                _ => None,
            }
        };
        match store {
            None => Sharing::NoStore,
            Some(store) => match shared::sync(&store, &self.revocations, now_ms).await {
                Ok(_) => Sharing::Done,
                Err(e) => Sharing::Pending(e.to_string()),
            },
        }
    }

    /// Who is calling an admin endpoint, and why they may not (if so): a
    /// client certificate first (when `client_ca` asks for one), then the
    /// token (when one is set).
    fn admit(&self, session: &ServerSession) -> (Caller, Option<Refusal>) {
        let snapshot = self.store.load();
        let ip = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip().to_string())
            .unwrap_or_default();
        let mut caller = Caller { ip, cert: None };
        match tls::presented(session, &snapshot) {
            Presented::NotRequired => {}
            Presented::Valid(cert) => caller.cert = Some(cert),
            Presented::Missing => {
                let refusal = Refusal {
                    status: StatusCode::FORBIDDEN,
                    body: "a client certificate from admin.tls.client_ca is required\n".into(),
                    why: "no client certificate",
                };
                return (caller, Some(refusal));
            }
            Presented::Invalid(why) => {
                tracing::warn!(caller = %caller, error = %why, "admin client certificate no longer valid");
                let refusal = Refusal {
                    status: StatusCode::FORBIDDEN,
                    body: format!("the client certificate is no longer accepted: {why}\n"),
                    why: "client certificate no longer accepted",
                };
                return (caller, Some(refusal));
            }
        }
        let Some(expected) = snapshot.admin.as_ref().and_then(|a| a.token.as_deref()) else {
            return (caller, None);
        };
        let presented = session
            .req_header()
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "))
            .unwrap_or_default();
        // Compare digests so the comparison time does not depend on how
        // much of the token an attacker has guessed.
        if Sha256::digest(presented.as_bytes()) == Sha256::digest(expected.as_bytes()) {
            return (caller, None);
        }
        let refusal = Refusal {
            status: StatusCode::UNAUTHORIZED,
            body: "admin token required\n".into(),
            why: if presented.is_empty() {
                "no admin token"
            } else {
                "wrong admin token"
            },
        };
        (caller, Some(refusal))
    }

    /// The audit record of a `POST /revoke` or `/reload` refused at the
    /// door (a reload that gets in writes its own).
    async fn record_refusal(&self, path: &str, caller: &Caller, why: &str) {
        tracing::warn!(caller = %caller, path, reason = why, "admin request refused");
        let detail = format!("POST {path} {caller}: refused: {why}");
        let event = if path == "/reload" {
            AuditEvent::Reload
        } else {
            AuditEvent::Revoke
        };
        self.write(event, Verdict::Deny, caller, detail).await;
    }

    async fn write(&self, event: AuditEvent, verdict: Verdict, caller: &Caller, detail: String) {
        let mut rec = AuditRecord::event(OffsetDateTime::now_utc(), event, verdict, detail)
            .config_version(self.store.load().version.0.clone());
        rec.client_ip = caller.ip.clone();
        if let Err(e) = self.audit.submit(rec).await {
            tracing::error!(error = %e, "admin audit record refused");
        }
    }
}

/// The body of `POST /revoke`: `sub` or `jti`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeRequest {
    sub: Option<String>,
    jti: Option<String>,
    /// How long, e.g. `12h` (default `auth.revoked.runtime_ttl`).
    ttl: Option<String>,
}

/// The body of `POST /unrevoke`: `sub` or `jti`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct UnrevokeRequest {
    sub: Option<String>,
    jti: Option<String>,
}

/// What a revocation request names: exactly one of a subject and a token
/// id, not empty.
fn target(
    sub: Option<String>,
    jti: Option<String>,
) -> Result<(revocation::Kind, String), &'static str> {
    match (sub, jti) {
        (Some(_), Some(_)) => Err("give `sub` or `jti`, not both"),
        (Some(s), None) if !s.is_empty() => Ok((revocation::Kind::Subject, s)),
        (None, Some(j)) if !j.is_empty() => Ok((revocation::Kind::TokenId, j)),
        _ => Err("`sub` or `jti` is required, and must not be empty"),
    }
}

/// How far a runtime revocation (or its lifting) got.
enum Sharing {
    /// No shared store: this replica is all there is.
    NoStore,
    /// Every replica will see it at its next sync.
    Done,
    /// The shared store did not answer: this replica only, until it does.
    Pending(String),
}

impl Sharing {
    fn shared(&self) -> bool {
        matches!(self, Sharing::Done)
    }

    fn pending(&self) -> Option<&str> {
        match self {
            Sharing::Pending(e) => Some(e),
            _ => None,
        }
    }

    /// 202 when the other replicas are still to learn it.
    fn status(&self) -> StatusCode {
        match self {
            Sharing::Pending(_) => StatusCode::ACCEPTED,
            _ => StatusCode::OK,
        }
    }

    /// For the audit record's detail.
    fn reach(&self) -> String {
        match self {
            Sharing::NoStore => String::new(),
            Sharing::Done => ", on every replica".to_string(),
            Sharing::Pending(e) => {
                format!(", on this replica; the others when the shared store answers ({e})")
            }
        }
    }
}

/// The body of `POST /explain`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ExplainRequest {
    method: String,
    path: String,
    token: Option<String>,
    /// Claims as the IdP would put them in a token (not verified).
    claims: Option<serde_json::Value>,
    ip: Option<String>,
    at: Option<String>,
    /// A JSON answer of the upstream, to see as the caller would get it.
    response: Option<serde_json::Value>,
}

/// The whole request body, at most `limit` bytes.
async fn read_body(
    session: &mut ServerSession,
    limit: usize,
) -> Result<Vec<u8>, Response<Vec<u8>>> {
    let mut body = Vec::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) if body.len() + chunk.len() <= limit => body.extend_from_slice(&chunk),
            Ok(Some(_)) => return Err(text(StatusCode::PAYLOAD_TOO_LARGE, "body too large\n")),
            Ok(None) => return Ok(body),
            Err(_) => return Err(text(StatusCode::BAD_REQUEST, "could not read body\n")),
        }
    }
}

fn json(status: StatusCode, body: &serde_json::Value) -> Response<Vec<u8>> {
    respond(status, "application/json", body.to_string().into_bytes())
}

fn text(status: StatusCode, body: &str) -> Response<Vec<u8>> {
    respond(
        status,
        "text/plain; charset=utf-8",
        body.as_bytes().to_vec(),
    )
}

fn respond(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    let len = resp.body().len();
    resp.headers_mut()
        .insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(len));
    resp.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    resp
}
