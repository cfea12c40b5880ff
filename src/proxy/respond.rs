//! Answers the gateway writes itself: JSON error bodies (DESIGN.md "Error
//! responses"). They say which rule family refused, never the policy.

use bytes::Bytes;
use pingora_core::Result;
use pingora_http::ResponseHeader;
use pingora_proxy::Session;

use crate::decision::Reason;

/// Write the error response for `reason` and end the response. With
/// `close`, the connection is not reused (the client is told so).
pub async fn refuse(
    session: &mut Session,
    reason: Reason,
    request_id: &str,
    challenge: Option<&str>,
    close: bool,
) -> Result<()> {
    write_error(session, reason, request_id, challenge, close, None).await
}

/// 429 `rate_limited` with `Retry-After` (seconds, RFC 9110 §10.2.3).
pub async fn rate_limited(session: &mut Session, request_id: &str, retry_after: u64) -> Result<()> {
    write_error(
        session,
        Reason::RateLimited,
        request_id,
        None,
        false,
        Some(retry_after),
    )
    .await
}

async fn write_error(
    session: &mut Session,
    reason: Reason,
    request_id: &str,
    challenge: Option<&str>,
    close: bool,
    retry_after: Option<u64>,
) -> Result<()> {
    let body = Bytes::from(error_body(reason, request_id));
    let mut resp = ResponseHeader::build(reason.status(), Some(5))?;
    resp.insert_header(http::header::CONTENT_TYPE, "application/json")?;
    resp.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
    resp.insert_header(http::header::CACHE_CONTROL, "no-store")?;
    resp.insert_header("x-request-id", request_id)?;
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
pub async fn text(session: &mut Session, status: u16, body: &str, request_id: &str) -> Result<()> {
    let body = Bytes::from(body.to_string());
    let mut resp = ResponseHeader::build(status, Some(4))?;
    resp.insert_header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")?;
    resp.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
    resp.insert_header(http::header::CACHE_CONTROL, "no-store")?;
    resp.insert_header("x-request-id", request_id)?;
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(body), true).await
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
