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
    /// The response body must be rewritten (row filters) before it leaves.
    /// Boxed: it is large and most requests have none, and the context
    /// is moved with pingora's session on every request.
    pub rewrite: Option<Box<super::rewrite::RewriteState>>,
    /// Set when the gateway refused the request or failed to proxy it.
    pub refused: Option<Reason>,
    /// Names of the rules that decided (dry-run hits included).
    pub rules: Vec<String>,
    /// Request body bytes read from the client so far.
    pub body_bytes: u64,
    /// When the first of a body that came in more than one piece arrived,
    /// and how many bytes that was: the body's pace is counted from there.
    pub body_started: Option<(Instant, u64)>,
    /// The body grew past the route's `max_body` after forwarding began:
    /// the upstream saw part of the request.
    pub body_cut: bool,
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
            rewrite: None,
            refused: None,
            rules: Vec::new(),
            body_bytes: 0,
            body_started: None,
            body_cut: false,
        }
    }
}

impl Default for RequestCtx {
    fn default() -> Self {
        Self::new()
    }
}
