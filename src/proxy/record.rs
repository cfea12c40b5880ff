//! The audit record of one request, assembled in the logging phase from
//! what the phases left in the context.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::Method;

use pingora_core::Error;
use pingora_proxy::Session;
use time::OffsetDateTime;

use super::RequestCtx;
use crate::alert::Alerting;
use crate::audit::{duration_ms, AuditRecord, AuditSink, Offered};
use crate::config::ConfigStore;
use crate::connection::HeadRefusals;
use crate::decision::{Decision, Reason};
use crate::metrics::Metrics;
use crate::request::{request_id, IpText};

/// Audits the requests pingora's HTTP parser refuses before any gateway
/// phase runs (malformed or oversized heads): pingora answers them 400 on
/// its own, and without this they would leave no record. Nothing of the
/// head is known, so method and path are empty and `detail` says why.
pub struct ParserRefusals {
    pub store: ConfigStore,
    pub audit: AuditSink,
    pub metrics: Arc<Metrics>,
    pub alerts: Arc<Alerting>,
}

#[async_trait::async_trait]
impl HeadRefusals for ParserRefusals {
    async fn refused(&self, client: Option<IpAddr>, bytes_out: u64) {
        let snapshot = self.store.load();
        let mut rec = AuditRecord::request(
            OffsetDateTime::now_utc(),
            request_id::generate(),
            snapshot.version.0.clone(),
            client.map(ip_text).unwrap_or_default(),
            "",
            "",
        );
        rec.set_decision(Decision::Deny(Reason::BadRequest));
        rec.status = 400;
        rec.bytes_out = bytes_out;
        rec.detail = Some("request head refused by the HTTP parser".to_string());
        self.metrics.record_request(
            None,
            rec.decision.as_str(),
            rec.reason.map(|r| r.code()),
            Duration::ZERO,
        );
        super::alert::observe(&self.alerts, &self.metrics, &snapshot, &rec);
        let request_id = rec.request_id.clone();
        let queued = match self.audit.offer(rec) {
            Offered::Done(result) => result,
            Offered::Wait(room) => room.await,
        };
        if let Err(err) = queued {
            tracing::error!(%request_id, error = %err, "audit record refused");
        }
    }
}

/// Longest path kept from a refused request; a refused path may be junk
/// of any length and must not bloat the audit file.
const MAX_RAW_PATH: usize = 512;

/// Builds the request's record. Logging is the last phase, so what the
/// context holds is moved into the record rather than copied: afterwards
/// `ctx.admitted` and `ctx.refused_path` are `None` and `ctx.rules` is empty.
pub fn build(
    session: &Session,
    error: Option<&Error>,
    ctx: &mut RequestCtx,
    elapsed: Duration,
) -> AuditRecord {
    let req = session.req_header();
    let admitted = ctx.admitted.is_some();
    let refused_path = ctx.refused_path.take();
    let (path, route) = match ctx.admitted.take() {
        Some(a) => (a.path.into_string(), Some(a.route)),
        None => (
            match refused_path {
                Some(p) => p.into_string(),
                None => raw_path_for_audit(req.raw_path()),
            },
            ctx.refused_route.clone(),
        ),
    };
    let version = ctx
        .snapshot
        .as_ref()
        .map(|s| s.version.0.clone())
        .unwrap_or_else(|| Arc::from(""));
    let client_ip = ctx.client_ip.map(ip_text).unwrap_or_default();
    // Filled in place: the record is a few hundred bytes, and the builder
    // methods (taking and returning it by value) would copy it per call.
    let mut rec = AuditRecord::request(
        OffsetDateTime::from(ctx.received_at),
        ctx.request_id.clone(),
        version,
        client_ip,
        method_text(&req.method),
        path,
    );
    if let Some(r) = &route {
        // The gateway answered itself: no upstream was contacted.
        let local = ctx.answered_locally
            || (ctx.refused.is_some_and(|r| !r.is_failure())
                && !super::forwarded_in_part(session, ctx));
        rec.route = Some(r.name.0.clone());
        rec.upstream = (!local).then(|| r.upstream.name.0.clone());
    }
    if let Some(caller) = &ctx.caller {
        let id = &caller.identity;
        rec.sub = Some(id.subject.clone());
        rec.roles = id.roles.iter().map(|r| r.0.clone()).collect();
    }
    let decision = match (ctx.refused, admitted) {
        (Some(reason), _) => Some(Decision::Deny(reason)),
        (None, true) => Some(Decision::Allow),
        (None, false) => None,
    };
    if let Some(d) = decision {
        rec.set_decision(d);
    }
    if let Some(r) = ctx.rewriting() {
        rec.redactions = r.removed + r.masked;
    }
    if let Some(m) = ctx.response.as_ref().and_then(|w| w.messages.as_ref()) {
        // A stream's messages dropped and values masked, over its life.
        rec.redactions += m.removed + m.masked;
    }
    let masked = ctx.credentials_masked();
    if masked > 0 {
        rec.detail = Some(format!(
            "the upstream's credential was in the response body {masked} time(s): masked"
        ));
    }
    if session.was_upgraded()
        && ctx.refused.is_none()
        && error.is_some_and(super::failure::idle_stream)
    {
        rec.detail = Some(super::failure::IDLE_STREAM.to_string());
    }
    if let Some(e) = ctx
        .response
        .as_ref()
        .and_then(|w| w.client_failure.as_ref())
    {
        rec.detail = Some(format!(
            "WebSocket stream ended on a message the client sent: {e}"
        ));
    }
    if let Some(e) = ctx
        .response
        .as_ref()
        .and_then(|w| w.message_failure.as_ref())
    {
        rec.detail = Some(format!(
            "WebSocket stream ended on a message it could not filter: {e}"
        ));
    }
    if rec.detail.is_none()
        && !session.was_upgraded()
        && ctx.refused.is_none()
        && error.is_some_and(super::failure::client_went_away)
    {
        rec.detail = Some(super::failure::CLIENT_WENT_AWAY.to_string());
    }
    rec.rules = std::mem::take(&mut ctx.rules);
    rec.status = session.response_written().map_or(0, |r| r.status.as_u16());
    rec.bytes_out = session.body_bytes_sent() as u64;
    rec.duration_ms = duration_ms(elapsed);
    rec
}

/// The standard methods as static text; others (rare, and refused by
/// routing) are copied.
fn method_text(method: &Method) -> Cow<'static, str> {
    const STANDARD: [(Method, &str); 9] = [
        (Method::GET, "GET"),
        (Method::POST, "POST"),
        (Method::PUT, "PUT"),
        (Method::PATCH, "PATCH"),
        (Method::DELETE, "DELETE"),
        (Method::HEAD, "HEAD"),
        (Method::OPTIONS, "OPTIONS"),
        (Method::CONNECT, "CONNECT"),
        (Method::TRACE, "TRACE"),
    ];
    match STANDARD.iter().find(|(m, _)| m == method) {
        Some((_, text)) => Cow::Borrowed(text),
        None => Cow::Owned(method.as_str().to_string()),
    }
}

fn ip_text(ip: IpAddr) -> String {
    IpText::new(ip).as_str().to_string()
}

/// The query string is left out: it often carries customer data
/// (`contacts/search?q=+44…`). Non-UTF-8 bytes are replaced.
fn raw_path_for_audit(raw: &[u8]) -> String {
    let path = raw.split(|b| *b == b'?').next().unwrap_or_default();
    let text = String::from_utf8_lossy(path);
    match text.char_indices().nth(MAX_RAW_PATH) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.into_owned(),
    }
}
