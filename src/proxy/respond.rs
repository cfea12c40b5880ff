//! Answers the gateway writes itself: JSON error bodies (DESIGN.md "Error
//! responses"), which say which rule family refused, never the policy; a
//! webhook handshake's challenge; a browser preflight's answer. Each
//! carries the request id and, for a page of an origin the CORS policy
//! lists, what lets that page read it.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use pingora_core::Result;
use pingora_http::ResponseHeader;
use pingora_proxy::Session;

use super::RequestCtx;
use crate::decision::Reason;

/// A response being written. Boxed: writing one holds a response header
/// across awaits (over 1 KB of future), and a hook that awaited it inline
/// would carry that size on every request, refused or not, since pingora
/// copies each hook's future into a box of its own.
pub type Writing<'a> = Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>>;

/// Write the error response for `reason` and end the response. With
/// `close`, the connection is not reused (the client is told so).
pub fn refuse<'a>(
    session: &'a mut Session,
    ctx: &'a RequestCtx,
    reason: Reason,
    challenge: Option<&'a str>,
    close: bool,
) -> Writing<'a> {
    Box::pin(write_error(session, ctx, reason, challenge, close, None))
}

/// 429 `rate_limited` with `Retry-After` (seconds, RFC 9110 §10.2.3).
pub fn rate_limited<'a>(
    session: &'a mut Session,
    ctx: &'a RequestCtx,
    retry_after: u64,
) -> Writing<'a> {
    Box::pin(write_error(
        session,
        ctx,
        Reason::RateLimited,
        None,
        false,
        Some(retry_after),
    ))
}

async fn write_error(
    session: &mut Session,
    ctx: &RequestCtx,
    reason: Reason,
    challenge: Option<&str>,
    close: bool,
    retry_after: Option<u64>,
) -> Result<()> {
    let body = Bytes::from(error_body(reason, &ctx.request_id));
    let mut resp = ResponseHeader::build(reason.status(), Some(5))?;
    resp.insert_header(http::header::CONTENT_TYPE, "application/json")?;
    resp.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
    resp.insert_header(http::header::CACHE_CONTROL, "no-store")?;
    resp.insert_header("x-request-id", ctx.request_id.as_str())?;
    allow_reading(session, ctx, &mut resp)?;
    if let Some(secs) = retry_after {
        resp.insert_header(http::header::RETRY_AFTER, secs.to_string())?;
    }
    if let Some(c) = challenge {
        resp.insert_header(http::header::WWW_AUTHENTICATE, c)?;
    } else if matches!(reason.status(), 401) {
        // RFC 6750 §3: a 401 names the scheme the client should use.
        resp.insert_header(http::header::WWW_AUTHENTICATE, bearer_challenge(reason))?;
    }
    // After a bad request the framing may be ambiguous (smuggling
    // attempts), so nothing more is read from this connection.
    if close || reason == Reason::BadRequest {
        session.set_keepalive(None);
        resp.insert_header(http::header::CONNECTION, "close")?;
    }
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(body), true).await
}

/// A plain-text answer the gateway gives itself (Meta's webhook handshake).
pub fn text<'a>(
    session: &'a mut Session,
    ctx: &'a RequestCtx,
    status: u16,
    body: &str,
) -> Writing<'a> {
    Box::pin(write_text(
        session,
        ctx,
        status,
        Bytes::from(body.to_string()),
    ))
}

async fn write_text(
    session: &mut Session,
    ctx: &RequestCtx,
    status: u16,
    body: Bytes,
) -> Result<()> {
    let mut resp = ResponseHeader::build(status, Some(4))?;
    resp.insert_header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")?;
    resp.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
    resp.insert_header(http::header::CACHE_CONTROL, "no-store")?;
    resp.insert_header("x-request-id", ctx.request_id.as_str())?;
    allow_reading(session, ctx, &mut resp)?;
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(body), true).await
}

/// The answer to a browser's preflight that the CORS policy allows: `204`,
/// no body, and what the page may send.
pub fn preflight<'a>(session: &'a mut Session, ctx: &'a RequestCtx) -> Writing<'a> {
    Box::pin(write_preflight(session, ctx))
}

async fn write_preflight(session: &mut Session, ctx: &RequestCtx) -> Result<()> {
    let mut resp = ResponseHeader::build(204, Some(8))?;
    resp.insert_header("x-request-id", ctx.request_id.as_str())?;
    if let Some(cors) = ctx.snapshot.as_ref().and_then(|s| s.cors.as_ref()) {
        for (name, value) in cors.preflight_headers(&session.req_header().headers) {
            resp.insert_header(name, value)?;
        }
    }
    session.write_response_header(Box::new(resp), true).await
}

/// The CORS policy's headers for a response to this request (see
/// [`crate::cors`]): `Vary: Origin`, and for a listed origin's page what
/// lets it read the response. Nothing without a policy.
pub(super) fn allow_reading(
    session: &Session,
    ctx: &RequestCtx,
    resp: &mut ResponseHeader,
) -> Result<()> {
    let Some(cors) = ctx.snapshot.as_ref().and_then(|s| s.cors.as_ref()) else {
        return Ok(());
    };
    let req = session.req_header();
    for (name, value) in cors.response_headers(&req.method, &req.headers) {
        if name == http::header::VARY {
            resp.append_header(name, value)?;
        } else {
            resp.insert_header(name, value)?;
        }
    }
    Ok(())
}

fn bearer_challenge(reason: Reason) -> &'static str {
    match reason {
        Reason::TokenMissing => "Bearer",
        Reason::TokenExpired => {
            "Bearer error=\"invalid_token\", error_description=\"The token has expired\""
        }
        Reason::TokenRevoked => {
            "Bearer error=\"invalid_token\", error_description=\"The token has been revoked\""
        }
        _ => "Bearer error=\"invalid_token\"",
    }
}

/// `{"error": "<http reason>", "reason": "<code>", "request_id": "<id>"}`
pub fn error_body(reason: Reason, request_id: &str) -> String {
    let phrase = http::StatusCode::from_u16(reason.status())
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    serde_json::json!({
        "error": phrase,
        "reason": reason.code(),
        "request_id": request_id,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_has_the_contract_fields() {
        let v: serde_json::Value =
            serde_json::from_str(&error_body(Reason::NoRoute, "abc")).expect("valid JSON");
        assert_eq!(v["error"], "Not Found");
        assert_eq!(v["reason"], "no_route");
        assert_eq!(v["request_id"], "abc");
        assert_eq!(
            v.as_object().map(|o| o.len()),
            Some(3),
            "no other fields: {v}"
        );
    }
}
