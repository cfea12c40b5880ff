//! Reading a webhook body to check Meta's signature before anything goes
//! upstream. The body is read with pingora's retry buffer on, so pingora
//! forwards exactly the bytes that were checked.

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
    // Anyone may send a webhook: its body is read against the pace from
    // the start.
    let body =
        match super::body::read_whole(session, &snapshot.connections.body_pace, meta.max_body)
            .await?
        {
            Ok(body) => body,
            Err(reason) => return Ok(Err(reason)),
        };
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
