//! The pingora adapter. Each phase translates pingora's callback into a
//! call on a pingora-free core (`gate`, `config`, `audit`, `metrics`) and
//! keeps nothing but plumbing here.
//!
//! One departure from pingora's flow: a plain GET whose answer is rewritten
//! is fetched, rewritten and answered in `request_filter` ([`fetch`]), so
//! that nothing leaves before the body is known to be maskable.

mod alert;
mod body;
mod context;
mod failure;
mod fetch;
mod forward;
mod ownership;
mod record;
mod respond;
mod rewrite;
mod scoped_body;
mod stream;
mod webhook;

#[cfg(test)]
mod filter_tests;

use std::sync::Arc;

use async_trait::async_trait;
use pingora_core::connectors::http::Connector;
use pingora_core::protocols::http::ServerSession;
use pingora_core::upstreams::peer::{H1UpgradePolicy, HttpPeer};
use pingora_core::{Error, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};

pub use context::RequestCtx;
use context::ResponseWork;
pub use record::ParserRefusals;
pub use respond::error_body;

use crate::audit::{AuditSink, Offered};
use crate::auth::{JwksSource, SignatureFailures};
use crate::config::ConfigStore;
use crate::config::Snapshot;
use crate::connection::Paced;
use crate::cors;
use crate::decision::Reason;
use crate::gate;
use crate::gate::Pending;
use crate::limit::{retry_after_secs, LimitKey, Limits};
use crate::metrics::Metrics;
use crate::request::client_ip::counted_client;
use crate::request::request_id;
use crate::revocation::RuntimeRevocations;
use crate::rewrite::Links;

/// The gateway service: shared, immutable handles only. Per-request state
/// lives in `RequestCtx`.
pub struct Gateway {
    pub store: ConfigStore,
    pub audit: AuditSink,
    pub metrics: Arc<Metrics>,
    pub revocations: Arc<RuntimeRevocations>,
    /// The JWKS refresher, when the config names a `jwks_url`.
    pub jwks: Option<Arc<JwksSource>>,
    /// The gateway's own upstream connections, for ownership lookups and
    /// rewritten GETs (fetched whole; see `fetch`).
    pub lookups: Connector,
    /// Rate-limit counters, kept across reloads.
    pub limits: Arc<Limits>,
    /// Alert counters (kept across reloads) and the queue to the courier.
    pub alerts: Arc<crate::alert::Alerting>,
    /// Bad token signatures per client, kept across reloads.
    pub signature_failures: Arc<SignatureFailures>,
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::new()
    }

    async fn early_request_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        // The head is in: its deadline no longer applies.
        if let Some(paced) = session.stream().and_then(Paced::of) {
            paced.head_complete();
        }
        let snapshot = self.store.load();
        let peer_ip = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        if let Some(peer) = peer_ip {
            let headers = &session.req_header().headers;
            let xff = headers
                .get_all(forward::X_FORWARDED_FOR)
                .iter()
                .filter_map(|v| v.to_str().ok());
            let resolved = snapshot.trusted_proxies.resolve(peer, xff);
            ctx.client_ip = Some(resolved.ip);
            let incoming_id = headers
                .get(forward::X_REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .filter(|_| snapshot.trusted_proxies.is_trusted(peer))
                .and_then(request_id::accept_incoming);
            ctx.request_id = incoming_id.map_or_else(request_id::generate, str::to_string);
        } else {
            ctx.request_id = request_id::generate();
        }
        // Before pingora's compression module reads `Accept-Encoding`,
        // which it does only when it is on.
        if let Some(level) = snapshot.compression {
            compress(session, level);
        }
        ctx.snapshot = Some(snapshot);
        Ok(())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let Some(snapshot) = ctx.snapshot.clone() else {
            return Error::e_explain(
                ErrorType::InternalError,
                "request without a config snapshot",
            );
        };
        // Nothing is served that could not be audited (fail_closed).
        if let Err(why) = self.audit.admission() {
            // The writer logs the failure once; one line per refused
            // request would flood the log of a gateway refusing them all.
            tracing::debug!(request_id = %ctx.request_id, reason = %why, "refused: audit unavailable");
            ctx.refused = Some(Reason::AuditUnavailable);
            respond::refuse(session, ctx, Reason::AuditUnavailable, None, false).await?;
            return Ok(true);
        }
        let outcome = self.decide(session, ctx, &snapshot).await;
        match outcome {
            Ok(mut admission) => {
                ctx.caller = admission.caller.clone();
                // The context's copy is the one the audit record reads.
                ctx.rules = std::mem::take(&mut admission.rules);
                self.proceed(session, ctx, admission, &snapshot).await
            }
            Err(refusal) => {
                // The gateway's own small answer goes out as it is.
                if snapshot.compression.is_some() {
                    compress(session, 0);
                }
                tracing::debug!(request_id = %ctx.request_id, reason = %refusal.reason, detail = %refusal.detail, "refused");
                ctx.refused = Some(refusal.reason);
                ctx.refused_path = refusal.path;
                ctx.refused_route = refusal.route;
                ctx.caller = refusal.caller;
                ctx.rules = refusal.rules;
                match refusal.retry_after {
                    Some(secs) => respond::rate_limited(session, ctx, secs.get().into()).await?,
                    None => {
                        respond::refuse(
                            session,
                            ctx,
                            refusal.reason,
                            refusal.challenge.as_deref(),
                            false,
                        )
                        .await?
                    }
                }
                Ok(true)
            }
        }
    }

    async fn request_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let (Some(chunk), Some(a), Some(snapshot)) = (body.as_ref(), &ctx.admitted, &ctx.snapshot)
        else {
            return Ok(());
        };
        // An upgraded connection's bytes are a stream, not a request body:
        // no size or pace, but the stream must still be allowed.
        if session.was_upgraded() {
            stream::recheck(self, session, ctx)?;
            return stream::client_commands(ctx, body);
        }
        let progress = ctx.body.get_or_insert_default();
        let over = progress.piece(
            chunk.len(),
            end_of_stream,
            a.route.max_body,
            &snapshot.connections.body_pace,
            std::time::Instant::now,
        );
        let reason = match over {
            Some(r) => r,
            None => match progress.form_piece(chunk, end_of_stream) {
                Some(found) => {
                    tracing::debug!(request_id = %ctx.request_id, found = ?found, "method override in a form body");
                    Reason::BadRequest
                }
                None => {
                    // The next read of a body still coming waits only as
                    // long as its pace allows (pingora times out each
                    // HTTP/1.1 body read; HTTP/2 reads have no timeout).
                    if let Some(within) = progress.next_within() {
                        session.set_read_timeout(Some(within));
                    }
                    return Ok(());
                }
            },
        };
        // The head and the body so far are upstream, without its end: the
        // upstream sees an aborted request.
        tracing::debug!(request_id = %ctx.request_id, route = %a.route.name.0, reason = %reason, "request body cut");
        ctx.rules.push(body::rule_for(reason, &a.route));
        ctx.refused = Some(reason);
        *body = None;
        Error::e_explain(ErrorType::Custom(reason.code()), "request body cut")
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let Some(admission) = &ctx.admitted else {
            return Error::e_explain(
                ErrorType::InternalError,
                "no admitted route for upstream_peer",
            );
        };
        let mut peer = forward::peer(&admission.route.upstream).await?;
        if !admission.route.websocket {
            // The gate refuses WebSocket handshakes here; whatever else asks
            // to upgrade goes upstream as a plain request.
            peer.options.http_upstream_request_policy.h1_upgrade = H1UpgradePolicy::Deny;
        }
        Ok(peer)
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        shape_request(session, ctx, upstream_request)
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let head = session.req_header().method == http::Method::HEAD;
        let h2 = session.as_downstream().is_http2();
        let websocket = ctx.admitted.as_ref().is_some_and(|a| a.route.websocket);
        if websocket && upstream_response.status == http::StatusCode::SWITCHING_PROTOCOLS {
            self.metrics.stream_opened();
            ctx.streaming = true;
            stream::read_messages(ctx);
        }
        shape_response(session, ctx, upstream_response, h2, head)
    }

    fn response_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<std::time::Duration>> {
        let websocket = ctx.admitted.as_ref().is_some_and(|a| a.route.websocket);
        if websocket && body.is_some() && session.was_upgraded() {
            let (snapshot, live) = stream::recheck(self, session, ctx)?;
            stream::follow_reload(ctx, &snapshot, &live)?;
        }
        if let Some(state) = ctx.rewriting_mut().filter(|_| !session.was_upgraded()) {
            if let Err(e) = rewrite::body_chunk(state, body, end_of_stream) {
                tracing::error!(request_id = %ctx.request_id, error = %e, "response not sent: it could not be filtered");
                ctx.refused = Some(Reason::RedactionFailed);
                return Err(e);
            }
        }
        if session.was_upgraded() {
            if ctx.response.as_ref().is_some_and(|w| w.messages.is_some()) {
                stream::upstream_messages(ctx, body, &self.metrics)?;
            } else {
                scrub_frames(ctx, body)?;
            }
        } else {
            scrub_credentials(ctx, body, end_of_stream);
        }
        Ok(None)
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        // A rewrite that failed, a body cut (its size, pace or a method
        // override), or a stream no longer allowed already named its
        // reason; keep it.
        let reason = match ctx.refused {
            Some(r @ Reason::RedactionFailed) => Some(r),
            Some(r) if forwarded_in_part(session, ctx) => Some(r),
            // A stream quiet for longer than the upstream's read timeout
            // ends there; nothing failed.
            None if session.was_upgraded() && failure::idle_stream(e) => None,
            // The upstream's read timed out while it waited for a body the
            // client stopped sending: HTTP/2 (whose body reads pingora does
            // not time out), or a pause longer than the upstream's timeout.
            _ if failure::upstream_read_timeout(e) && client_stalled(session, ctx) => {
                Some(Reason::BodyTooSlow)
            }
            _ => failure::classify(e),
        };
        if reason == Some(Reason::BodyTooSlow) && ctx.refused.is_none() {
            // The client stopped sending its body, part of which is
            // upstream: cut like a body that fell behind as it came.
            if let Some(a) = &ctx.admitted {
                ctx.rules
                    .push(body::rule_for(Reason::BodyTooSlow, &a.route));
            }
            ctx.body.get_or_insert_default().stalled();
        }
        if let (Some(r), Some(admission)) = (reason, &ctx.admitted) {
            if r.is_failure() {
                self.metrics
                    .record_upstream_error(&admission.route.upstream.name.0, failure::kind(e));
            }
        }
        let code = match reason {
            Some(r) => {
                ctx.refused = Some(r);
                // pingora will not reuse the connection after a proxying
                // failure; say so, or the client may send its next request
                // into a closing socket.
                if session.response_written().is_none() {
                    if let Err(write_err) = respond::refuse(session, ctx, r, None, true).await {
                        tracing::debug!(request_id = %ctx.request_id, error = %write_err, "could not write error response");
                    }
                }
                r.status()
            }
            None => 0,
        };
        if ended_on_purpose(session, ctx) {
            tracing::debug!(request_id = %ctx.request_id, error = %e, "request ended by the gateway");
        } else if reason.is_none() {
            // The client went away, or a stream idled out: nothing failed,
            // and a busy gateway sees this all day. The audit record says so.
            tracing::debug!(request_id = %ctx.request_id, error = %e, "request ended by the client");
        } else {
            tracing::warn!(request_id = %ctx.request_id, error = %e, "proxying failed");
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    fn suppress_error_log(&self, session: &Session, ctx: &RequestCtx, error: &Error) -> bool {
        ended_on_purpose(session, ctx)
            || failure::client_went_away(error)
            || (session.was_upgraded() && failure::idle_stream(error))
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        if ctx.streaming {
            self.metrics.stream_closed();
        }
        // Whatever the client sends next begins a new head. (A request
        // body is never drained in between: pingora closes a connection
        // whose response began before its request body was read whole.)
        if let Some(paced) = session.stream().and_then(Paced::of) {
            paced.request_finished();
        }
        if let Some(snapshot) = &ctx.snapshot {
            for rule in &ctx.rules {
                if snapshot.policy.is_dry_run(rule) {
                    self.metrics.record_dry_run(rule);
                }
            }
        }
        if let Some(a) = &ctx.admitted {
            // A write that succeeded may have changed who owns the object
            // (a reassignment): ownership lookups must not reuse the old
            // answer.
            let method = &session.req_header().method;
            let wrote = !(method == http::Method::GET || method == http::Method::HEAD);
            let status = session.response_written().map_or(0, |r| r.status.as_u16());
            if wrote && ctx.refused.is_none() && (200..300).contains(&status) {
                a.route.upstream.owners.forget(a.path.as_str());
            }
        }
        let masked = ctx.credentials_masked();
        if masked > 0 {
            tracing::warn!(request_id = %ctx.request_id, masked, "masked the upstream's credential in a response body");
        }
        let elapsed = ctx.started.elapsed();
        let rec = record::build(session, e, ctx, elapsed);
        self.metrics.record_request(
            rec.route.as_ref(),
            rec.decision.as_str(),
            rec.reason.map(|r| r.code()),
            elapsed,
        );
        if let Some(snapshot) = &ctx.snapshot {
            alert::observe(&self.alerts, &self.metrics, snapshot, &rec);
        }
        let queued = match self.audit.offer(rec) {
            Offered::Done(result) => result,
            Offered::Wait(room) => room.await,
        };
        if let Err(err) = queued {
            tracing::error!(request_id = %ctx.request_id, error = %err, "audit record refused");
        }
    }
}

impl Gateway {
    /// Finish an admitted request: answer a webhook handshake, check a
    /// webhook signature, or let pingora forward it.
    async fn proceed(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        admission: gate::Admission,
        snapshot: &Snapshot,
    ) -> Result<bool> {
        let pending = admission.pending.clone();
        if pending == Pending::Preflight {
            // Answered here: a preflight costs no rate-limit token and
            // reaches no upstream.
            ctx.answered_locally = true;
            ctx.admitted = Some(admission);
            respond::preflight(session, ctx).await?;
            return Ok(true);
        }
        // A body declared too large is refused before it costs a rate-limit
        // token or an upstream connection. The connection is closed: the
        // body is not read, let alone drained.
        if body::declared_over(session.req_header(), admission.route.max_body) {
            tracing::debug!(request_id = %ctx.request_id, route = %admission.route.name.0, "declared body over max_body");
            ctx.rules.push(body::rule_name(&admission.route));
            ctx.refused = Some(Reason::BodyTooLarge);
            ctx.refused_path = Some(admission.path.clone());
            ctx.refused_route = Some(admission.route.clone());
            respond::refuse(session, ctx, Reason::BodyTooLarge, None, true).await?;
            return Ok(true);
        }
        if let Some(wait) = self.over_rate_limit(&admission, ctx, snapshot).await {
            tracing::debug!(request_id = %ctx.request_id, route = %admission.route.name.0, "rate limited");
            ctx.rules
                .push(format!("{}.rate_limit", admission.route.name.0));
            ctx.refused = Some(Reason::RateLimited);
            ctx.refused_path = Some(admission.path.clone());
            ctx.refused_route = Some(admission.route.clone());
            respond::rate_limited(session, ctx, retry_after_secs(wait)).await?;
            return Ok(true);
        }
        if let Some(scan) = body::form_scan(
            session.req_header(),
            &admission.route.upstream.method_override_params,
        ) {
            ctx.body = Some(Box::new(body::Progress::scanning(scan)));
        }
        ctx.admitted = Some(admission);
        match pending {
            Pending::Nothing => {
                let Some(a) = &ctx.admitted else {
                    return Ok(false);
                };
                if !a.route.body_scope.is_empty() {
                    if let Some(r) = Box::pin(scoped_body::check(session, snapshot, a)).await? {
                        tracing::debug!(request_id = %ctx.request_id, reason = %r.reason, detail = %r.detail, "body refused");
                        ctx.rules.push(r.rule);
                        ctx.refused = Some(r.reason);
                        respond::refuse(session, ctx, r.reason, None, r.unread).await?;
                        return Ok(true);
                    }
                }
                // The lookup's future (a whole upstream exchange) is boxed so
                // that every other request's filter future stays small:
                // pingora moves these futures, and their size is copied each
                // time.
                let outcome = if a.route.owner_check.is_some() {
                    Box::pin(ownership::check(
                        &self.lookups,
                        snapshot,
                        a,
                        &ctx.request_id,
                    ))
                    .await
                } else {
                    ownership::Outcome::Forward
                };
                if let ownership::Outcome::Refuse { reason, detail } = outcome {
                    tracing::debug!(request_id = %ctx.request_id, reason = %reason, detail = %detail, "refused");
                    if reason.is_failure() {
                        self.metrics
                            .record_upstream_error(&a.route.upstream.name.0, "owner_lookup");
                    } else {
                        ctx.rules.push(format!("{}.owner_check", a.route.name.0));
                    }
                    ctx.refused = Some(reason);
                    respond::refuse(session, ctx, reason, None, false).await?;
                    return Ok(true);
                }
                // Where the upstream's links lead, as this client reached
                // the gateway.
                let public = (!a.route.upstream.links.is_empty()).then(|| {
                    let tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
                    let trusted = session
                        .client_addr()
                        .and_then(|p| p.as_inet())
                        .is_some_and(|p| snapshot.trusted_proxies.is_trusted(p.ip()));
                    rewrite::public_origin_for(snapshot, session.req_header(), tls, trusted)
                });
                // A WebSocket handshake's answer has no body: its stream's
                // messages are relinked as they pass (see `stream`).
                let links = public
                    .as_deref()
                    .filter(|_| !a.route.websocket)
                    .map(|p| Links::new(a.route.upstream.links.clone(), p));
                ctx.response = rewrite::plan(
                    &a.route,
                    a.caller.as_deref(),
                    snapshot.policy.roles(),
                    links,
                )
                .map(|r| {
                    Box::new(ResponseWork {
                        rewrite: Some(r),
                        ..ResponseWork::default()
                    })
                });
                if let Some(public) = public.filter(|_| a.route.websocket) {
                    ctx.response.get_or_insert_default().public_origin = Some(public.into());
                }
                if ctx.rewriting().is_some() && fetch::eligible(session) {
                    // Boxed, like the lookup: a whole exchange.
                    Box::pin(fetch::answer(&self.lookups, &self.metrics, session, ctx)).await?;
                    return Ok(true);
                }
                // A body's first piece is due within the grace (pingora's
                // own limit is 60 s a read); `request_body_filter` sets the
                // time for each piece after. Not on a WebSocket route: an
                // upgraded stream's reads are the stream's, idle as it likes.
                if !a.route.websocket {
                    session.set_read_timeout(Some(snapshot.connections.body_pace.grace));
                }
                Ok(false)
            }
            // Answered above.
            Pending::Preflight => Ok(true),
            Pending::WebhookChallenge(challenge) => {
                ctx.answered_locally = true;
                respond::text(session, ctx, 200, &challenge).await?;
                Ok(true)
            }
            Pending::WebhookSignature => {
                match Box::pin(webhook::check_signature(session, snapshot)).await? {
                    Ok(()) => Ok(false),
                    Err(reason) => {
                        ctx.refused = Some(reason);
                        respond::refuse(
                            session,
                            ctx,
                            reason,
                            None,
                            // A body read in part is not drained.
                            matches!(
                                reason,
                                Reason::BadRequest | Reason::BodyTooLarge | Reason::BodyTooSlow
                            ),
                        )
                        .await?;
                        Ok(true)
                    }
                }
            }
        }
    }

    /// Counts the request against its route's rate limit (every admitted
    /// request: webhooks and handshakes too); `Some(wait)` when it is over.
    /// The store is the snapshot's: this process, or a shared Redis.
    async fn over_rate_limit(
        &self,
        admission: &gate::Admission,
        ctx: &RequestCtx,
        snapshot: &Snapshot,
    ) -> Option<std::time::Duration> {
        let limit = admission.route.rate_limit.as_ref()?;
        let ip;
        let key = match (limit.key, &admission.caller) {
            (LimitKey::Subject, Some(c)) => c.identity.subject.as_str(),
            (LimitKey::Subject | LimitKey::ClientIp, _) => {
                ip = ctx
                    .client_ip
                    .map(|ip| counted_client(ip).to_string())
                    .unwrap_or_default();
                ip.as_str()
            }
            (LimitKey::Route, _) => "",
        };
        let checked = snapshot
            .rate_limits
            .check(&self.limits, &admission.route.name.0, limit, key)
            .await;
        if let Some(kind) = checked.fallback {
            self.metrics.record_limit_store_error(kind);
        }
        checked.verdict.err()
    }

    /// What the decision needs besides the request, at `now`.
    fn circumstances(&self, ctx: &RequestCtx, now: jiff::Timestamp) -> gate::Circumstances<'_> {
        gate::Circumstances {
            client_ip: ctx
                .client_ip
                .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)),
            now,
            revocations: &self.revocations,
            signature_failures: Some(&self.signature_failures),
        }
    }

    /// Run the pure decision; on an unknown `kid`, let the JWKS refresher
    /// refetch (rate-limited) and decide once more.
    async fn decide(
        &self,
        session: &Session,
        ctx: &RequestCtx,
        snapshot: &Snapshot,
    ) -> std::result::Result<gate::Admission, gate::Refusal> {
        let view = request_view(session.req_header(), wire_facts(session));
        // The arrival time, already read: one clock read fewer per request.
        let now =
            jiff::Timestamp::try_from(ctx.received_at).unwrap_or_else(|_| jiff::Timestamp::now());
        let circumstances = self.circumstances(ctx, now);
        let first = gate::admit(snapshot, &view, &circumstances);
        match (&first, &self.jwks) {
            (Err(r), Some(jwks)) if r.unknown_kid => {
                if Box::pin(jwks.refetch_and_wait(UNKNOWN_KID_WAIT)).await {
                    gate::admit(snapshot, &view, &circumstances)
                } else {
                    first
                }
            }
            _ => first,
        }
    }
}

/// `compression`: the response to an admitted request is compressed for
/// a client that accepts gzip, brotli or zstd (pingora's module, which
/// leaves small, informational and already encoded answers alone); level 0
/// turns it off again. Set per request from the snapshot, so a reload
/// applies at once; without `compression` nothing here runs. It works after
/// every body filter: what it compresses is already filtered and masked.
fn compress(session: &mut Session, level: u32) {
    use pingora_core::modules::http::compression::ResponseCompression;
    if let Some(module) = session
        .downstream_modules_ctx
        .get_mut::<ResponseCompression>()
    {
        // The level cannot change once a body is being encoded.
        if module.is_header_phase() {
            module.adjust_level(level);
        }
    }
}

/// The request as the upstream gets it (see [`forward::rewrite_request`]),
/// asking for a complete, unencoded body when it will be rewritten. Shared
/// by `upstream_request_filter` and the fetched path.
fn shape_request(session: &Session, ctx: &RequestCtx, req: &mut RequestHeader) -> Result<()> {
    let (Some(snapshot), Some(admission)) = (&ctx.snapshot, &ctx.admitted) else {
        return Error::e_explain(ErrorType::InternalError, "forwarding an unadmitted request");
    };
    let client_tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
    forward::rewrite_request(
        req,
        snapshot,
        admission,
        ctx.client_ip,
        &ctx.request_id,
        client_tls,
    )?;
    let route = &admission.route;
    let frames_read = !route.upstream.credentials.is_empty()
        || route.message_filter.is_some()
        || !route.redactions.is_empty()
        || route.subscribe_as.is_some()
        || !route.upstream.links.is_empty();
    if route.websocket && frames_read {
        // Compressed frames could not be read: not searched for the
        // credential, nor filtered and masked.
        req.remove_header(&http::header::SEC_WEBSOCKET_EXTENSIONS);
    }
    if ctx.rewriting().is_some() {
        rewrite::prepare_request(req)?;
    } else if !admission.route.upstream.credentials.is_empty()
        && req.headers.contains_key(http::header::ACCEPT_ENCODING)
    {
        // An encoded body could not be searched for the credential.
        // (Without the header, servers do not encode; one that did anyway
        // is refused in `shape_response`.)
        req.insert_header(http::header::ACCEPT_ENCODING, "identity")?;
    }
    Ok(())
}

/// The upstream's response head as the client gets it: a header that
/// carries the upstream's credential is dropped, and so are its cookies and
/// CORS answers; `X-Request-Id` and the gateway's own CORS headers are
/// added, and a head whose body is rewritten loses its length and
/// validators (`head`: the request was a HEAD). Shared by
/// `response_filter` and the fetched path.
fn shape_response(
    session: &Session,
    ctx: &mut RequestCtx,
    resp: &mut ResponseHeader,
    h2: bool,
    head: bool,
) -> Result<()> {
    if let Some(admission) = &ctx.admitted {
        // An upstream that echoes request headers must not hand the
        // injected credential to the client. Nor may it set cookies:
        // client cookies are never forwarded, so one could never come back
        // as a session, and it could overwrite the gateway's own token
        // cookie in a browser (session fixation). Nor may it say which
        // other sites' pages may read the response: that is the gateway's
        // CORS policy.
        let upstream = &admission.route.upstream;
        let dropped: Vec<http::HeaderName> = resp
            .headers
            .iter()
            .filter(|(n, v)| {
                **n == http::header::SET_COOKIE
                    || cors::is_cors_header(n)
                    || upstream.leaks_secret(v.as_bytes())
            })
            .map(|(n, _)| n.clone())
            .collect();
        for name in dropped {
            if name != http::header::SET_COOKIE && !cors::is_cors_header(&name) {
                tracing::warn!(request_id = %ctx.request_id, header = %name, "dropped a response header carrying an upstream credential");
            }
            resp.remove_header(&name);
        }
    }
    forward::tag_response(resp, &ctx.request_id)?;
    respond::allow_reading(session, ctx, resp)?;
    if let Some(state) = ctx.rewriting_mut() {
        if let Err(e) = rewrite::prepare_response(state, resp, h2, head) {
            tracing::error!(request_id = %ctx.request_id, error = %e, "response not sent: it could not be filtered");
            ctx.refused = Some(Reason::RedactionFailed);
            return Err(e);
        }
    }
    // The upstream was asked for `identity`: an encoded body could not be
    // searched for its credential, so it does not leave (fail closed). A
    // body the rewrite holds is refused for its encoding there.
    let creds = ctx
        .admitted
        .as_ref()
        .is_some_and(|a| !a.route.upstream.credentials.is_empty());
    let encoded = resp
        .headers
        .get(http::header::CONTENT_ENCODING)
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
    if creds && encoded && !head && ctx.rewriting().is_none_or(|r| !r.holds_body()) {
        tracing::error!(request_id = %ctx.request_id, "response not sent: encoded, so it could not be searched for the upstream's credential");
        ctx.refused = Some(Reason::RedactionFailed);
        return Error::e_explain(
            ErrorType::InternalError,
            "encoded response from an upstream with a credential",
        );
    }
    Ok(())
}

/// Masks the upstream's credential in a piece of the response body (see
/// [`crate::echo`]). Nothing is allocated until a piece needs it.
pub(super) fn scrub_credentials(ctx: &mut RequestCtx, body: &mut Option<bytes::Bytes>, end: bool) {
    let RequestCtx {
        admitted, response, ..
    } = ctx;
    let Some(a) = admitted else {
        return;
    };
    let creds = &a.route.upstream.credentials;
    if creds.is_empty() {
        return;
    }
    let holding = response.as_ref().is_some_and(|w| w.scrub.holding());
    if !holding && creds.passes(body.as_ref(), end) {
        return;
    }
    let work = response.get_or_insert_default();
    *body = work.scrub.piece(creds, body.take(), end);
}

/// Masks the upstream's credential in the frames a WebSocket upstream
/// sends (see [`crate::echo::FrameScrub`]); a frame whose payload is
/// compressed cannot be searched, and a fragment's tail cannot be held
/// without bound: either ends the stream.
fn scrub_frames(ctx: &mut RequestCtx, body: &mut Option<bytes::Bytes>) -> Result<()> {
    let RequestCtx {
        admitted,
        response,
        refused,
        ..
    } = ctx;
    let Some(a) = admitted else {
        return Ok(());
    };
    let creds = &a.route.upstream.credentials;
    let Some(piece) = body.as_ref().filter(|_| !creds.is_empty()) else {
        return Ok(());
    };
    let work = response.get_or_insert_default();
    match work.frames.piece(creds, piece) {
        Ok(out) => {
            *body = Some(bytes::Bytes::from(out));
            Ok(())
        }
        Err(e) => {
            *refused = Some(Reason::RedactionFailed);
            Error::e_explain(ErrorType::InternalError, e.to_string())
        }
    }
}

/// How long a request whose token names an unknown key waits for the JWKS
/// refetch it triggered (when the rate limit allows one).
const UNKNOWN_KID_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// Whether the gateway itself ended a request it had begun to forward (a
/// body cut, a stream no longer allowed): a refusal, audited as one, not a
/// proxying failure for the error log.
fn ended_on_purpose(session: &Session, ctx: &RequestCtx) -> bool {
    forwarded_in_part(session, ctx) && ctx.refused.is_some_and(|r| !r.is_failure())
}

/// Whether the request's body is still to come and behind its pace: the
/// client stopped sending it.
fn client_stalled(session: &mut Session, ctx: &RequestCtx) -> bool {
    let Some(snapshot) = &ctx.snapshot else {
        return false;
    };
    if session.was_upgraded() || session.is_body_done() {
        return false;
    }
    let pace = &snapshot.connections.body_pace;
    let now = std::time::Instant::now();
    match &ctx.body {
        Some(progress) => progress.behind(pace, ctx.started, now),
        None => body::Progress::default().behind(pace, ctx.started, now),
    }
}

/// Whether some of the request reached the upstream before the gateway
/// ended it: a body cut on its way, or a stream that was opened.
fn forwarded_in_part(session: &Session, ctx: &RequestCtx) -> bool {
    session.was_upgraded() || ctx.body.as_ref().is_some_and(|b| b.cut)
}

/// The request head as the decision sees it.
fn request_view(req: &RequestHeader, wire: gate::WireFacts) -> gate::RequestView<'_> {
    gate::RequestView {
        method: &req.method,
        raw_target: req.raw_path(),
        headers: &req.headers,
        authority: req.uri.authority().map(http::uri::Authority::as_str),
        websocket: stream::is_websocket_handshake(req),
        wire,
    }
}

/// Facts about the raw HTTP/1 header block that parsing erased.
fn wire_facts(session: &Session) -> gate::WireFacts {
    let mut facts = gate::WireFacts::default();
    if !session
        .req_header()
        .headers
        .contains_key(http::header::TRANSFER_ENCODING)
    {
        return facts;
    }
    if let ServerSession::H1(h1) = session.as_downstream() {
        let raw = h1.get_headers_raw_bytes();
        facts.content_length_with_transfer_encoding = raw
            .split(|b| *b == b'\n')
            .any(|line| line.len() >= 15 && line[..15].eq_ignore_ascii_case(b"content-length:"));
    }
    facts
}
