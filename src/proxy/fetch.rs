//! Rewritten GETs, answered whole: the gateway fetches the upstream's answer
//! itself, rewrites it, and only then writes the response, with a
//! `Content-Length`.
//!
//! Through pingora's proxy loop a rewritten body has to be chunked: the head
//! leaves when the upstream's head arrives, before the body exists. That
//! costs three sends per answer (pingora flushes a head without a length,
//! every chunk and the last chunk), and a body that then cannot be
//! rewritten can only end the response with an error. Fetched here, a plain
//! GET (no body, no upgrade, no hop-by-hop extras) gets:
//! - a head and body that leave together, with their length;
//! - a clean `502 redaction_failed` when the body cannot be rewritten, since
//!   nothing has been sent yet.
//!
//! The exchange is the one the proxy would make: the same peer (address,
//! TLS, timeouts), the request and the response head shaped by the same
//! functions as in `upstream_request_filter` and `response_filter`
//! ([`super::shape_request`], [`super::shape_response`]). The connections
//! come from the gateway's own pool (the one ownership lookups use). Other
//! requests on rewritten routes still go through pingora's loop, which
//! streams them.
//!
//! The cost: the whole body is held before the first byte leaves (it was
//! already: a body is rewritten whole), so the client waits for the last
//! upstream byte instead of seeing the head first.

use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{Method, Version};
use pingora_core::connectors::http::Connector;
use pingora_core::protocols::http::client::HttpSession as UpstreamSession;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::{Error, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::Session;

use super::rewrite::{self, MAX_REWRITE_BYTES};
use super::{failure, forward, respond, RequestCtx};
use crate::config::snapshot::Upstream;
use crate::decision::Reason;
use crate::metrics::Metrics;

/// Hop-by-hop request headers (RFC 9110 §7.6.1 and the usual extras); none
/// is forwarded.
const HOP_BY_HOP: [&str; 10] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "http2-settings",
];

/// Connections tried for one request: stale pooled ones are dropped until
/// a new one is dialed (whose failure is final).
const MAX_ATTEMPTS: usize = 4;

/// Informational heads skipped before the final one; an upstream sending
/// more is broken.
const MAX_INFORMATIONAL: usize = 8;

/// Whether this request is answered here: a GET without a body, an upgrade
/// or hop-by-hop headers beyond `Connection: keep-alive|close` (those need
/// pingora's sanitizing, and get it on the proxied path).
pub fn eligible(session: &mut Session) -> bool {
    let req = session.req_header();
    if req.method != Method::GET {
        return false;
    }
    let plain_connection = req
        .headers
        .get_all(http::header::CONNECTION)
        .iter()
        .all(|v| {
            v.as_bytes()
                .split(|b| *b == b',')
                .map(<[u8]>::trim_ascii)
                .all(|t| t.eq_ignore_ascii_case(b"keep-alive") || t.eq_ignore_ascii_case(b"close"))
        });
    let extras = HOP_BY_HOP[1..]
        .iter()
        .any(|name| req.headers.contains_key(*name));
    plain_connection && !extras && session.is_body_empty()
}

/// Fetches, rewrites and answers the admitted request. `Ok` once a response
/// was written: the upstream's, rewritten, or the gateway's error
/// (`ctx.refused` says which). `Err` only when the client could not be
/// written to.
pub async fn answer(
    connector: &Connector,
    metrics: &Metrics,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<()> {
    let Some(admission) = &ctx.admitted else {
        return Error::e_explain(ErrorType::InternalError, "fetching an unadmitted request");
    };
    let route = admission.route.clone();
    let upstream = &route.upstream;
    let mut req = session.req_header().clone();
    req.set_version(Version::HTTP_11);
    for name in HOP_BY_HOP {
        req.remove_header(name);
    }
    super::shape_request(session, ctx, &mut req)?;

    let exchange = match exchange(connector, upstream, req).await {
        Ok(exchange) => exchange,
        Err(e) => return upstream_failed(session, ctx, metrics, upstream, &e).await,
    };
    let Exchange {
        mut up,
        peer,
        mut head,
    } = exchange;

    let h2 = session.as_downstream().is_http2();
    if let Err(e) = super::shape_response(session, ctx, &mut head, h2, false) {
        // Logged there; `refused` is set when the body could never be
        // rewritten, otherwise the head itself was unusable.
        let reason = *ctx.refused.get_or_insert(Reason::UpstreamError);
        tracing::debug!(request_id = %ctx.request_id, error = %e, "response head refused");
        return respond::refuse(session, ctx, reason, None, false).await;
    }
    let holds_body = ctx.rewriting().is_some_and(|r| r.holds_body());
    if !holds_body {
        // Passed as it is (an error answer for a caller under row filters
        // only, a 204): streamed, as the proxy would.
        return pass(connector, session, ctx, up, &peer, upstream, head, None).await;
    }

    let body = match read_whole(&mut up).await {
        Ok(Held::Whole(body)) => body,
        Ok(Held::OverCap(held)) => {
            // A plan that rewrites links alone lets it pass as it is (the
            // head as prepared: no length, chunked on HTTP/1.1); any other
            // fails closed.
            let mut first = Some(held);
            let passed = match ctx.rewriting_mut() {
                Some(state) => rewrite::body_chunk(state, &mut first, false),
                None => Error::e_explain(ErrorType::InternalError, "no rewrite state"),
            };
            if let Err(e) = passed {
                return redaction_failed(session, ctx, &e).await;
            }
            tracing::debug!(request_id = %ctx.request_id, "answer over the rewrite cap: its links pass as written");
            return pass(connector, session, ctx, up, &peer, upstream, head, first).await;
        }
        Err(e) => return upstream_failed(session, ctx, metrics, upstream, &e).await,
    };
    connector
        .release_http_session(up, &*peer, Some(upstream.timeouts.idle))
        .await;

    let mut out = Some(body);
    if let Some(state) = ctx.rewriting_mut() {
        if let Err(e) = rewrite::body_chunk(state, &mut out, true) {
            return redaction_failed(session, ctx, &e).await;
        }
    }
    super::scrub_credentials(ctx, &mut out, true);
    let out = out.unwrap_or_default();
    head.remove_header(&TRANSFER_ENCODING);
    head.insert_header(CONTENT_LENGTH, out.len().to_string())?;
    session.write_response_header(Box::new(head), false).await?;
    session.write_response_body(Some(out), true).await
}

/// An upstream connection with the final response head read.
pub(super) struct Exchange {
    pub up: UpstreamSession,
    pub peer: Box<HttpPeer>,
    pub head: ResponseHeader,
}

/// Sends the request and reads the final response head. A pooled
/// connection that the upstream closed while it sat idle fails before any
/// answer; the request (a GET, so idempotent) is then sent again on the
/// next connection, as pingora's proxy does (`RetryType::ReusedOnly`).
/// Ownership lookups use it too.
pub(super) async fn exchange(
    connector: &Connector,
    upstream: &Upstream,
    req: RequestHeader,
) -> Result<Exchange> {
    let peer = forward::peer(upstream).await?;
    let mut attempt = 1;
    loop {
        let (up, reused) = connector.get_http_session(&*peer).await?;
        match send(up, upstream, req.clone()).await {
            Ok((up, head)) => return Ok(Exchange { up, peer, head }),
            Err(mut e) => {
                e.retry.decide_reuse(reused);
                if !e.retry() || attempt == MAX_ATTEMPTS {
                    return Err(e);
                }
                attempt += 1;
            }
        }
    }
}

async fn send(
    mut up: UpstreamSession,
    upstream: &Upstream,
    req: RequestHeader,
) -> Result<(UpstreamSession, ResponseHeader)> {
    up.set_read_timeout(Some(upstream.timeouts.read));
    up.set_write_timeout(Some(upstream.timeouts.write));
    up.write_request_header(Box::new(req)).await?;
    up.finish_request_body().await?;
    for _ in 0..=MAX_INFORMATIONAL {
        up.read_response_header().await?;
        let Some(head) = up.response_header() else {
            return Err(Error::explain(ErrorType::H1Error, "response without a head").into_up());
        };
        if !head.status.is_informational() {
            let head = head.clone();
            return Ok((up, head));
        }
    }
    Err(Error::explain(ErrorType::H1Error, "too many informational responses").into_up())
}

/// What [`read_whole`] got.
enum Held {
    /// The whole body.
    Whole(Bytes),
    /// The body so far, the piece that took it past the rewrite cap
    /// included; the rest is still on the wire.
    OverCap(Bytes),
}

/// The whole body, or what came of it until it passed the rewrite cap.
async fn read_whole(up: &mut UpstreamSession) -> Result<Held> {
    let declared = up
        .response_header()
        .and_then(|h| h.headers.get(CONTENT_LENGTH))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok());
    let mut first: Option<Bytes> = None;
    let mut buffer = BytesMut::new();
    while let Some(chunk) = up.read_response_body().await? {
        let held = first.as_ref().map_or(0, Bytes::len) + buffer.len();
        if held + chunk.len() > MAX_REWRITE_BYTES {
            let Some(earlier) = first
                .take()
                .or_else(|| (!buffer.is_empty()).then(|| buffer.freeze()))
            else {
                return Ok(Held::OverCap(chunk));
            };
            let mut all = BytesMut::with_capacity(held + chunk.len());
            all.extend_from_slice(&earlier);
            all.extend_from_slice(&chunk);
            return Ok(Held::OverCap(all.freeze()));
        }
        match first.take() {
            None if buffer.is_empty() => first = Some(chunk),
            earlier => {
                if buffer.is_empty() {
                    let room = declared.unwrap_or(0).min(MAX_REWRITE_BYTES);
                    buffer.reserve(room.max(held + chunk.len()));
                }
                if let Some(earlier) = earlier {
                    buffer.extend_from_slice(&earlier);
                }
                buffer.extend_from_slice(&chunk);
            }
        }
    }
    Ok(Held::Whole(first.unwrap_or_else(|| buffer.freeze())))
}

/// Streams an answer that is not rewritten; `first`: what of its body was
/// already read, to go out before the rest.
#[allow(clippy::too_many_arguments)]
async fn pass(
    connector: &Connector,
    session: &mut Session,
    ctx: &mut RequestCtx,
    mut up: UpstreamSession,
    peer: &HttpPeer,
    upstream: &Upstream,
    head: ResponseHeader,
    first: Option<Bytes>,
) -> Result<()> {
    session.write_response_header(Box::new(head), false).await?;
    let mut first = first;
    super::scrub_credentials(ctx, &mut first, false);
    if let Some(piece) = first {
        session.write_response_body(Some(piece), false).await?;
    }
    loop {
        let chunk = match up.read_response_body().await {
            Ok(chunk) => chunk,
            Err(e) => {
                // The head is out: the client can only see a cut response.
                session.set_keepalive(None);
                return Err(e);
            }
        };
        let end = chunk.is_none();
        let mut out = chunk;
        super::scrub_credentials(ctx, &mut out, end);
        if let Some(piece) = out {
            session.write_response_body(Some(piece), false).await?;
        }
        if end {
            break;
        }
    }
    connector
        .release_http_session(up, peer, Some(upstream.timeouts.idle))
        .await;
    session.write_response_body(None, true).await
}

/// The upstream could not be reached or read, before anything was sent:
/// 502 `upstream_error` or 504 `upstream_timeout`, as from the proxy.
async fn upstream_failed(
    session: &mut Session,
    ctx: &mut RequestCtx,
    metrics: &Metrics,
    upstream: &Upstream,
    e: &Error,
) -> Result<()> {
    let reason = failure::classify(e).unwrap_or(Reason::UpstreamError);
    metrics.record_upstream_error(&upstream.name.0, failure::kind(e));
    tracing::warn!(request_id = %ctx.request_id, error = %e, "proxying failed");
    ctx.refused = Some(reason);
    respond::refuse(session, ctx, reason, None, false).await
}

/// Nothing was sent: the client gets a clean 502 `redaction_failed`.
async fn redaction_failed(session: &mut Session, ctx: &mut RequestCtx, e: &Error) -> Result<()> {
    tracing::error!(request_id = %ctx.request_id, error = %e, "response not sent: it could not be filtered");
    ctx.refused = Some(Reason::RedactionFailed);
    respond::refuse(session, ctx, Reason::RedactionFailed, None, false).await
}
