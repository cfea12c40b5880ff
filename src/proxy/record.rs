//! The audit record of one request, assembled in the logging phase from
//! what the phases left in the context.

use std::net::IpAddr;

use pingora_core::Error;
use pingora_proxy::Session;
use time::OffsetDateTime;

use super::RequestCtx;
use crate::audit::AuditRecord;
use crate::decision::Decision;
use crate::request::IpText;

/// Longest path kept from a refused request; a refused path may be junk
/// of any length and must not bloat the audit file.
const MAX_RAW_PATH: usize = 512;

/// Builds the request's record. Logging is the last phase, so the
/// context's refused path and its rules are moved into the record rather
/// than copied: afterwards `ctx.refused_path` is `None` and `ctx.rules` empty.
pub fn build(session: &Session, _error: Option<&Error>, ctx: &mut RequestCtx) -> AuditRecord {
    let req = session.req_header();
    let path = match (&ctx.admitted, ctx.refused_path.take()) {
        (Some(a), _) => a.path.as_str().to_string(),
        (None, Some(p)) => p.into_string(),
        (None, None) => raw_path_for_audit(req.raw_path()),
    };
    let version = ctx
        .snapshot
        .as_ref()
        .map(|s| s.version.0.clone())
        .unwrap_or_default();
    let client_ip = ctx.client_ip.map(ip_text).unwrap_or_default();
    let mut rec = AuditRecord::request(
        OffsetDateTime::from(ctx.received_at),
        ctx.request_id.clone(),
        version,
        client_ip,
        req.method.as_str(),
        path,
    );
    let route = ctx
        .admitted
        .as_ref()
        .map(|a| &a.route)
        .or(ctx.refused_route.as_ref());
    if let Some(r) = route {
        rec = rec.route(r.name.0.clone(), r.upstream.name.0.clone());
        if ctx.answered_locally || ctx.refused.is_some_and(|r| !r.is_failure()) {
            // The gateway answered itself: no upstream was contacted.
            rec.upstream = None;
        }
    }
    if let Some(caller) = &ctx.caller {
        let id = &caller.identity;
        rec = rec.subject(
            id.subject.clone(),
            id.roles.iter().map(|r| r.0.clone()).collect(),
        );
    }
    let decision = match (ctx.refused, &ctx.admitted) {
        (Some(reason), _) => Some(Decision::Deny(reason)),
        (None, Some(_)) => Some(Decision::Allow),
        (None, None) => None,
    };
    if let Some(d) = decision {
        rec = rec.decision(d);
    }
    let status = session.response_written().map_or(0, |r| r.status.as_u16());
    if let Some(r) = &ctx.rewrite {
        rec = rec.redactions(r.removed + r.masked);
    }
    rec.rules(std::mem::take(&mut ctx.rules)).response(
        status,
        session.body_bytes_sent() as u64,
        ctx.started.elapsed(),
    )
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
