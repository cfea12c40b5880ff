//! The admin listener: `/healthz`, `/readyz`, `/metrics`, `POST /revoke`,
//! `POST /reload`, `POST /explain`. A thin pingora `ServeHttp` app over the
//! config store, metrics and audit counters. Everything but the two probes
//! requires the admin bearer token when one is configured.

use std::sync::Arc;

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;
use sha2::{Digest, Sha256};

use crate::audit::{AuditSink, AuditStats};
use crate::auth::JwksSource;
use crate::config::ConfigStore;
use crate::explain::{self, Question};
use crate::metrics::{External, Metrics};
use crate::reload::{ReloadOutcome, Reloader};
use crate::revocation::RuntimeRevocations;

pub struct AdminApp {
    pub store: ConfigStore,
    pub metrics: Arc<Metrics>,
    pub audit_stats: Arc<AuditStats>,
    /// For readiness: under `fail_closed`, not ready while it refuses.
    pub audit: AuditSink,
    pub revocations: Arc<RuntimeRevocations>,
    pub jwks: Option<Arc<JwksSource>>,
    pub reloader: Option<Arc<Reloader>>,
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        let path = req.uri.path().to_string();
        let method = req.method.clone();
        let authorized = self.authorized(req.headers.get(http::header::AUTHORIZATION));
        match (method.as_str(), path.as_str()) {
            ("GET", "/healthz") => text(StatusCode::OK, "ok\n"),
            ("GET", "/readyz") if self.ready() => text(StatusCode::OK, "ready\n"),
            ("GET", "/readyz") => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
            ("POST", "/revoke") if authorized => self.revoke(session).await,
            ("POST", "/revoke") => text(StatusCode::UNAUTHORIZED, "admin token required\n"),
            ("POST", "/reload") if authorized => self.reload().await,
            ("POST", "/reload") => text(StatusCode::UNAUTHORIZED, "admin token required\n"),
            ("POST", "/explain") if authorized => self.explain(session).await,
            ("POST", "/explain") => text(StatusCode::UNAUTHORIZED, "admin token required\n"),
            ("GET", "/metrics") if authorized => {
                let snapshot = self.store.load();
                let body = self.metrics.render(&External {
                    audit_written: self.audit_stats.written(),
                    audit_failed: self.audit_stats.failed(),
                    audit_refused: self.audit_stats.refused(),
                    config_version: snapshot.version.0.to_string(),
                    ready: self.ready(),
                    audit_available: self.audit.admission().is_ok(),
                });
                respond(
                    StatusCode::OK,
                    "text/plain; version=0.0.4",
                    body.into_bytes(),
                )
            }
            ("GET", "/metrics") => text(StatusCode::UNAUTHORIZED, "admin token required\n"),
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        }
    }
}

impl AdminApp {
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
    async fn reload(&self) -> Response<Vec<u8>> {
        let Some(reloader) = &self.reloader else {
            return text(
                StatusCode::CONFLICT,
                "this instance runs an embedded config; nothing to reload\n",
            );
        };
        let (status, body) = match reloader.reload("POST /reload").await {
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
    /// "at"}`: what the running gateway (its live config, keys and runtime
    /// revocations) would decide for that request, and why. Nothing is
    /// forwarded and no audit record is written: it is a question, not a
    /// request.
    async fn explain(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let body = match read_body(session, 16 * 1024).await {
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
        let body = match &outcome {
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
        json(StatusCode::OK, &body)
    }

    /// `POST /revoke` with `{"sub": "…"}`: the subject is refused from its
    /// next request on, whatever its tokens say.
    async fn revoke(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let body = match read_body(session, 4096).await {
            Ok(b) => b,
            Err(resp) => return resp,
        };
        let sub = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("sub").and_then(|s| s.as_str()).map(str::to_string))
            .filter(|s| !s.is_empty());
        let Some(sub) = sub else {
            return text(
                StatusCode::BAD_REQUEST,
                "expected {\"sub\": \"<subject>\"}\n",
            );
        };
        let newly = self.revocations.revoke(&sub);
        tracing::warn!(subject = %sub, "subject revoked through the admin endpoint");
        let body = serde_json::json!({"revoked": sub, "new": newly, "runtime_revocations": self.revocations.count()});
        respond(
            StatusCode::OK,
            "application/json",
            body.to_string().into_bytes(),
        )
    }

    fn authorized(&self, header: Option<&http::HeaderValue>) -> bool {
        let snapshot = self.store.load();
        let Some(expected) = snapshot.admin.as_ref().and_then(|a| a.token.as_deref()) else {
            return true;
        };
        let presented = header
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "))
            .unwrap_or_default();
        // Compare digests so the comparison time does not depend on how
        // much of the token an attacker has guessed.
        Sha256::digest(presented.as_bytes()) == Sha256::digest(expected.as_bytes())
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
