//! Per-request state carried across pingora's phases.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use crate::auth::Verified;
use crate::config::snapshot::Route;
use crate::config::Snapshot;
use crate::decision::Reason;
use crate::gate::Admission;
use crate::request::NormalizedPath;

pub struct RequestCtx {
    /// Taken once in the first phase; every later phase uses this one.
    pub snapshot: Option<Arc<Snapshot>>,
    pub received_at: SystemTime,
    pub started: Instant,
    pub request_id: String,
    pub client_ip: Option<IpAddr>,
    pub admitted: Option<Admission>,
    /// The normalized path of a refused request, when it had one.
    pub refused_path: Option<NormalizedPath>,
    /// The route a refused request matched, when it got that far.
    pub refused_route: Option<Arc<Route>>,
    /// The verified caller, also on refusals after authentication.
    pub caller: Option<Arc<Verified>>,
    /// The gateway answered itself (webhook handshake): no upstream.
    pub answered_locally: bool,
    /// A WebSocket stream was opened and is counted as open.
    pub streaming: bool,
    /// What is done to the response body before it leaves: rewritten (row
    /// filters, redaction), and searched for the upstream's credential when
    /// a piece ends like the start of one. Boxed: it is large and most
    /// requests need none, and the context is moved with pingora's session
    /// on every request.
    pub response: Option<Box<ResponseWork>>,
    /// Set when the gateway refused the request or failed to proxy it.
    pub refused: Option<Reason>,
    /// Names of the rules that decided (dry-run hits included).
    pub rules: Vec<String>,
    /// The request body read so far (size, pace, whether it was cut).
    /// Boxed, and only for requests with a body: this context lives in
    /// every connection's task, and a few bytes more there can cost a
    /// whole allocator size class per connection (10,000 idle keep-alive
    /// connections took 41 MiB more with it inline).
    pub body: Option<Box<super::body::Progress>>,
}

impl RequestCtx {
    pub fn new() -> Self {
        RequestCtx {
            snapshot: None,
            received_at: SystemTime::now(),
            started: Instant::now(),
            request_id: String::new(),
            client_ip: None,
            admitted: None,
            refused_path: None,
            refused_route: None,
            caller: None,
            answered_locally: false,
            streaming: false,
            response: None,
            refused: None,
            rules: Vec::new(),
            body: None,
        }
    }
}

/// The response body's work (see [`RequestCtx::response`]).
#[derive(Default)]
pub struct ResponseWork {
    pub rewrite: Option<super::rewrite::RewriteState>,
    pub scrub: crate::echo::Scrub,
    /// The upstream's half of a WebSocket stream.
    pub frames: crate::echo::FrameScrub,
    /// The same, read message by message, when the route filters or masks
    /// them for this caller (the credential is masked there too).
    pub messages: Option<crate::rewrite::messages::MessageStream>,
    /// The config version the stream's messages are read under (set when
    /// the stream opens; a reload re-plans them).
    pub messages_under: Option<std::sync::Arc<str>>,
    /// The client's half of a stream whose subscriptions are made as the
    /// route's `subscribe_as` says.
    pub commands: Option<crate::rewrite::subscriptions::CommandStream>,
    /// Why a message the client sent could not be read (the stream ended
    /// on it).
    pub client_failure: Option<crate::rewrite::messages::MessageError>,
    /// Why a message could not be read (the stream ended on it).
    pub message_failure: Option<crate::rewrite::messages::MessageError>,
    /// Where a stream's links lead (the gateway as the client reached it;
    /// empty: paths), when its upstream has `links`.
    pub public_origin: Option<Box<str>>,
}

impl RequestCtx {
    /// The response's rewrite, when it has one.
    pub fn rewriting(&self) -> Option<&super::rewrite::RewriteState> {
        self.response.as_ref().and_then(|w| w.rewrite.as_ref())
    }

    pub fn rewriting_mut(&mut self) -> Option<&mut super::rewrite::RewriteState> {
        self.response.as_mut().and_then(|w| w.rewrite.as_mut())
    }

    /// Credentials masked in the response body so far.
    pub fn credentials_masked(&self) -> usize {
        self.response.as_ref().map_or(0, |w| {
            w.scrub.masked
                + w.frames.masked()
                + w.messages.as_ref().map_or(0, |m| m.credentials_masked)
        })
    }
}

impl Default for RequestCtx {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    /// The context lives inside every connection's task, whose future sits
    /// just under an allocator size class: 40 bytes more here once cost
    /// 4 KB per idle keep-alive connection (10,000 connections: 447 → 487
    /// MiB). Growing it needs the load bench's memory figure re-measured.
    #[test]
    fn the_context_does_not_grow_unmeasured() {
        let size = std::mem::size_of::<super::RequestCtx>();
        assert!(size <= 304, "RequestCtx is {size} bytes");
    }
}
