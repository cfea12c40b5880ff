//! WebSocket streams: which handshakes are WebSockets, and the decision
//! taken again while a stream is open.
//!
//! A handshake is admitted like any request, and only on a route with
//! `websocket: true`. After the `101`, pingora passes the stream's bytes
//! both ways for as long as the connection lives, which can be hours after
//! the token that opened it expired, the subject was revoked, or the access
//! window closed. So each piece passing in either direction is first
//! decided again, with the live config and the current time: the handshake
//! request, its token included, goes through the same [`gate::admit`]. The
//! first refusal ends the stream (the piece is not passed on) and is what
//! the audit record says, with the version of the config that refused. A stream with no traffic is not checked, and has
//! nothing to pass.

use pingora_core::{Error, ErrorType, Result};
use pingora_http::RequestHeader;
use pingora_proxy::Session;

use std::sync::Arc;

use super::{Gateway, RequestCtx};
use crate::config::Snapshot;
use crate::gate;
use crate::rewrite::messages::{MessageError, MessagePlan, MessageStream};
use crate::rewrite::subscriptions::CommandStream;
use crate::rewrite::Links;

/// An HTTP/1.1 request asking to become a WebSocket, as pingora would
/// forward it (`Upgrade: websocket`, any case). Other upgrades (`h2c`) are
/// stripped by pingora before forwarding and need no decision.
pub fn is_websocket_handshake(req: &RequestHeader) -> bool {
    req.version == http::Version::HTTP_11
        && req
            .headers
            .get(http::header::UPGRADE)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"))
}

/// Decides an open stream again before one of its pieces passes; `Err`
/// ends the stream, with the refusal's reason and rules in `ctx`. `Ok`
/// has the live config and what it admitted.
pub fn recheck(
    gateway: &Gateway,
    session: &Session,
    ctx: &mut RequestCtx,
) -> Result<(Arc<Snapshot>, gate::Admission)> {
    let snapshot = gateway.store.load();
    // The handshake's framing was judged when it arrived.
    let view = super::request_view(session.req_header(), gate::WireFacts::default());
    let circumstances = gateway.circumstances(ctx, jiff::Timestamp::now());
    let refusal = match gate::admit(&snapshot, &view, &circumstances) {
        Ok(admission) => return Ok((snapshot, admission)),
        Err(refusal) => refusal,
    };
    tracing::info!(request_id = %ctx.request_id, reason = %refusal.reason, detail = %refusal.detail, "WebSocket stream ended");
    for rule in refusal.rules {
        if !ctx.rules.contains(&rule) {
            ctx.rules.push(rule);
        }
    }
    ctx.refused = Some(refusal.reason);
    // The record names the config whose decision ended the stream.
    ctx.snapshot = Some(snapshot);
    Error::e_explain(
        ErrorType::Custom(refusal.reason.code()),
        "WebSocket stream ended: no longer allowed",
    )
}

/// Once a WebSocket stream is open: whether its messages are read for this
/// caller (the route's `message_filter` and the redaction rules the caller
/// is under; see [`crate::rewrite::messages`]).
pub fn read_messages(ctx: &mut RequestCtx) {
    let (Some(a), Some(snapshot)) = (&ctx.admitted, &ctx.snapshot) else {
        return;
    };
    let work = ctx.response.get_or_insert_default();
    let plan = plan_for(snapshot, a, work.public_origin.as_deref());
    let commands = a.route.subscribe_as.is_some().then(CommandStream::default);
    work.messages_under = Some(snapshot.version.0.clone());
    work.messages = plan.map(MessageStream::new);
    work.commands = commands;
}

/// The upstream's half of a stream whose messages are read: control
/// frames and whole, filtered and masked messages go on; a message that
/// cannot be read ends the stream, with nothing of it sent. Counts what
/// it sent on and dropped in `metrics`.
pub fn upstream_messages(
    ctx: &mut RequestCtx,
    body: &mut Option<bytes::Bytes>,
    metrics: &crate::metrics::Metrics,
) -> Result<()> {
    let RequestCtx {
        admitted,
        response,
        refused,
        request_id,
        ..
    } = ctx;
    let (Some(a), Some(work), Some(piece)) = (admitted, response, body.as_ref()) else {
        return Ok(());
    };
    let Some(stream) = &mut work.messages else {
        return Ok(());
    };
    let (sent, dropped) = (stream.sent, stream.removed);
    let read = stream.piece(a.route.stream_credentials(), piece);
    metrics.record_stream_messages(
        &a.route.name.0,
        stream.sent - sent,
        stream.removed - dropped,
    );
    match read {
        Ok(out) => {
            *body = Some(bytes::Bytes::from(out));
            Ok(())
        }
        Err(e) => {
            tracing::error!(request_id = %request_id, error = %e, "WebSocket stream ended: a message could not be filtered");
            *refused = Some(crate::decision::Reason::RedactionFailed);
            *body = None;
            let text = e.to_string();
            work.message_failure = Some(e);
            Error::e_explain(ErrorType::InternalError, text)
        }
    }
}

/// The client's half of a stream whose route has `subscribe_as`: each
/// subscription made as it says (see [`crate::rewrite::subscriptions`]).
/// A frame a client must not send ends the stream.
pub fn client_commands(ctx: &mut RequestCtx, body: &mut Option<bytes::Bytes>) -> Result<()> {
    let RequestCtx {
        admitted,
        response,
        refused,
        request_id,
        ..
    } = ctx;
    let (Some(a), Some(work), Some(piece)) = (admitted, response, body.as_ref()) else {
        return Ok(());
    };
    let (Some(subscribe_as), Some(commands), Some(messages)) = (
        &a.route.subscribe_as,
        &mut work.commands,
        &mut work.messages,
    ) else {
        return Ok(());
    };
    match commands.piece(subscribe_as, messages.identifiers_mut(), piece) {
        Ok(out) => {
            *body = Some(bytes::Bytes::from(out));
            Ok(())
        }
        Err(e) => {
            tracing::info!(request_id = %request_id, error = %e, "WebSocket stream ended: the client sent what it must not");
            *refused = Some(crate::decision::Reason::BadRequest);
            *body = None;
            let text = e.to_string();
            work.client_failure = Some(e);
            Error::e_explain(
                ErrorType::Custom(crate::decision::Reason::BadRequest.code()),
                text,
            )
        }
    }
}

/// `public`: where the stream's links lead (set at the handshake when the
/// route's upstream had `links`; a reload that adds them leads them to
/// paths).
fn plan_for(snapshot: &Snapshot, a: &gate::Admission, public: Option<&str>) -> Option<MessagePlan> {
    let route = &a.route;
    let links = (!route.upstream.links.is_empty())
        .then(|| Links::new(route.upstream.links.clone(), public.unwrap_or("")));
    MessagePlan::for_caller(
        route.message_filter.as_ref(),
        route.control_messages.as_deref(),
        &route.redactions,
        a.caller.as_deref().map(|c| &c.identity),
        snapshot.policy.roles(),
        route.subscribe_as.is_some(),
        links,
    )
}

/// After a reload, the messages still to come go by the live config's
/// plan for this caller. A stream that was not read and now must be (its
/// route gained a `message_filter` or a redaction rule the caller is
/// under) cannot start reading in the middle of a frame: it ends, and the
/// client reconnects under the new config.
pub fn follow_reload(
    ctx: &mut RequestCtx,
    snapshot: &Arc<Snapshot>,
    live: &gate::Admission,
) -> Result<()> {
    let Some(work) = ctx.response.as_deref_mut() else {
        return Ok(());
    };
    if work
        .messages_under
        .as_ref()
        .is_none_or(|v| *v == snapshot.version.0)
    {
        return Ok(());
    }
    work.messages_under = Some(snapshot.version.0.clone());
    let plan = plan_for(snapshot, live, work.public_origin.as_deref());
    match (&mut work.messages, plan) {
        (Some(stream), plan) => stream.replan(plan),
        (None, None) => {}
        (None, Some(_)) => {
            tracing::info!(request_id = %ctx.request_id, "WebSocket stream ended: the reloaded config filters its messages");
            work.message_failure = Some(MessageError::Reloaded);
            ctx.refused = Some(crate::decision::Reason::RedactionFailed);
            // The record names the config that ended the stream.
            ctx.snapshot = Some(snapshot.clone());
            return Error::e_explain(
                ErrorType::Custom(crate::decision::Reason::RedactionFailed.code()),
                "WebSocket stream ended: its messages are now filtered",
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(version: http::Version, upgrade: Option<&str>) -> RequestHeader {
        let mut req = RequestHeader::build("GET", b"/cable", None).expect("head");
        req.set_version(version);
        if let Some(u) = upgrade {
            req.insert_header("upgrade", u).expect("header");
            req.insert_header("connection", "Upgrade").expect("header");
        }
        req
    }

    #[test]
    fn only_http11_websocket_upgrades_are_handshakes() {
        use http::Version;
        assert!(is_websocket_handshake(&head(
            Version::HTTP_11,
            Some("websocket")
        )));
        assert!(is_websocket_handshake(&head(
            Version::HTTP_11,
            Some("WebSocket")
        )));
        assert!(!is_websocket_handshake(&head(
            Version::HTTP_11,
            Some("h2c")
        )));
        assert!(!is_websocket_handshake(&head(Version::HTTP_11, None)));
        assert!(
            !is_websocket_handshake(&head(Version::HTTP_10, Some("websocket"))),
            "HTTP/1.0 has no upgrades"
        );
    }
}
