//! Response rewriting in the proxy (row filters and redaction): plan per
//! request, ask the upstream for a plain body, buffer it (hard cap),
//! rewrite at end of stream, fail closed (DESIGN invariant 4).
//!
//! pingora sends the response head before the body exists, so a body that
//! cannot be rewritten (not JSON, wrong shape, too large, compressed) ends
//! the response with an error instead of any upstream byte: the client sees
//! a broken response, never an unfiltered one, and the audit record says
//! `redaction_failed`.

use bytes::{Bytes, BytesMut};
use pingora_core::{Error, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};

use crate::auth::Verified;
use crate::config::snapshot::Route;
use crate::policy::{plan_row_filter, RoleSet};
use crate::rewrite::{rewrite, RewriteOutcome, RewritePlan};

/// Largest upstream body buffered for rewriting.
pub const MAX_REWRITE_BYTES: usize = 16 * 1024 * 1024;

/// Conditional and partial requests would let a cached or partial body
/// slip past the rewriter.
const CONDITIONAL_HEADERS: [&str; 6] = [
    "range",
    "if-range",
    "if-none-match",
    "if-modified-since",
    "if-match",
    "if-unmodified-since",
];

/// One response being rewritten.
pub struct RewriteState {
    plan: RewritePlan,
    /// `false` for non-2xx answers: error bodies pass as they are.
    active: bool,
    content_type: Option<String>,
    content_encoding: Option<String>,
    buffer: BytesMut,
    /// Rows removed and values masked, for the audit record.
    pub removed: u64,
    pub masked: u64,
}

/// The plan for this caller on this route, if anything must be rewritten:
/// the row filter, and every redaction rule whose `unless_permission` the
/// caller lacks.
pub fn plan(route: &Route, caller: Option<&Verified>, roles: &RoleSet) -> Option<RewriteState> {
    if route.row_filter.is_none() && route.redactions.is_empty() {
        return None;
    }
    // Routes with a row filter or redaction are jwt routes: a caller is
    // always there. Without one nothing is known to be visible: mask all.
    let mut plan = RewritePlan::default();
    if let (Some(filter), Some(caller)) = (&route.row_filter, caller) {
        plan.push_row_filter(filter, plan_row_filter(filter, &caller.identity, roles));
    }
    for rule in &route.redactions {
        let exempt = match (&rule.unless_permission, caller) {
            (Some(p), Some(c)) => roles.holds(&c.identity.roles, p),
            _ => false,
        };
        if !exempt {
            plan.push_redaction(rule);
        }
    }
    (!plan.is_empty()).then(|| RewriteState {
        plan,
        active: true,
        content_type: None,
        content_encoding: None,
        buffer: BytesMut::new(),
        removed: 0,
        masked: 0,
    })
}

/// Ask for an identity-encoded, complete body.
pub fn prepare_request(req: &mut RequestHeader) -> Result<()> {
    for h in CONDITIONAL_HEADERS {
        req.remove_header(h);
    }
    req.insert_header(http::header::ACCEPT_ENCODING, "identity")?;
    Ok(())
}

/// The response head: the length and validators of the upstream body no
/// longer describe what the client receives.
pub fn prepare_response(
    state: &mut RewriteState,
    resp: &mut ResponseHeader,
    downstream_h2: bool,
) -> Result<()> {
    if !resp.status.is_success() {
        state.active = false;
        return Ok(());
    }
    let text = |name: http::HeaderName| {
        resp.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    state.content_type = text(http::header::CONTENT_TYPE);
    state.content_encoding = text(http::header::CONTENT_ENCODING);
    for h in [
        http::header::CONTENT_LENGTH,
        http::header::ETAG,
        http::header::LAST_MODIFIED,
        http::header::ACCEPT_RANGES,
    ] {
        resp.remove_header(&h);
    }
    resp.insert_header(http::header::CACHE_CONTROL, "private, no-store")?;
    if !downstream_h2 {
        resp.insert_header(http::header::TRANSFER_ENCODING, "chunked")?;
    }
    Ok(())
}

/// Hold every chunk; at the end, emit the rewritten body or fail.
pub fn body_chunk(state: &mut RewriteState, body: &mut Option<Bytes>, end: bool) -> Result<()> {
    if !state.active {
        return Ok(());
    }
    if let Some(chunk) = body.take() {
        if state.buffer.len() + chunk.len() > MAX_REWRITE_BYTES {
            return Error::e_explain(
                ErrorType::InternalError,
                "response over the rewrite cap: not sent",
            );
        }
        state.buffer.extend_from_slice(&chunk);
    }
    if !end {
        return Ok(());
    }
    let whole = std::mem::take(&mut state.buffer).freeze();
    match rewrite(
        &whole,
        state.content_type.as_deref(),
        state.content_encoding.as_deref(),
        &state.plan,
        MAX_REWRITE_BYTES,
    ) {
        Ok(RewriteOutcome::Rewritten {
            body: out,
            removed,
            masked,
        }) => {
            state.removed = removed;
            state.masked = masked;
            *body = Some(out);
            Ok(())
        }
        Ok(RewriteOutcome::Unchanged) => {
            *body = Some(whole);
            Ok(())
        }
        // Object filters are refused at config load; should one arrive,
        // failing closed is the only safe answer this late.
        Ok(RewriteOutcome::NotFound) => Error::e_explain(
            ErrorType::InternalError,
            "object filter after response head",
        ),
        Err(e) => Error::e_explain(
            ErrorType::InternalError,
            format!("rewrite failed ({}): {e}", e.kind()),
        ),
    }
}
