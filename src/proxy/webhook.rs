//! Reading a webhook body to check Meta's signature before anything goes
//! upstream. The body is read with pingora's retry buffer on, so pingora
//! forwards exactly the bytes that were checked.

use std::time::Instant;

use bytes::BytesMut;
use pingora_core::Result;
use pingora_proxy::Session;

use crate::config::Snapshot;
use crate::decision::Reason;
use crate::webhook::WebhookError;

/// `Ok(Ok(()))` to forward; `Ok(Err(reason))` to refuse; `Err` when the
/// client connection failed.
pub async fn check_signature(
    session: &mut Session,
    snapshot: &Snapshot,
) -> Result<std::result::Result<(), Reason>> {
    let Some(meta) = snapshot.auth.as_ref().and_then(|a| a.meta.as_ref()) else {
        return Ok(Err(Reason::SignatureInvalid));
    };
    session.as_downstream_mut().enable_retry_buffering();
    let mut body = BytesMut::new();
    // Anyone may send a webhook: its body is read against the pace from
    // the start (pingora bounds each HTTP/1.1 read by 60s, an HTTP/2 read
    // not at all).
    let pace = snapshot.connections.body_pace;
    let started = Instant::now();
    loop {
        let Some(left) = pace.time_left(started.elapsed(), body.len() as u64) else {
            return Ok(Err(Reason::BodyTooSlow));
        };
        let read = session.as_downstream_mut().read_request_body();
        let Ok(read) = tokio::time::timeout(left, read).await else {
            return Ok(Err(Reason::BodyTooSlow));
        };
        let Some(chunk) = read? else {
            break;
        };
        if body.len() + chunk.len() > meta.max_body {
            // Stop reading: nothing of an oversized body is forwarded.
            return Ok(Err(Reason::BodyTooLarge));
        }
        body.extend_from_slice(&chunk);
    }
    let signature = session
        .req_header()
        .headers
        .get("x-hub-signature-256")
        .map(|v| v.as_bytes());
    match meta.verify(signature, &body) {
        Ok(()) => Ok(Ok(())),
        Err(WebhookError::TooLarge) => Ok(Err(Reason::BodyTooLarge)),
        Err(e) => {
            tracing::warn!(error = %e, "webhook signature refused");
            Ok(Err(Reason::SignatureInvalid))
        }
    }
}
