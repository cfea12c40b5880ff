//! The decision pipeline before any upstream is contacted, as one pure
//! function over plain `http` types: request hygiene, one path
//! normalization, route match (default deny). The proxy calls it from
//! `request_filter`; `chatwarden explain` will call the very same function.
//!
//! Authentication, authorization and rate limiting slot in after the route
//! match; each returns a `Reason` on refusal.

use std::sync::Arc;

use http::{HeaderMap, Method};

use crate::config::snapshot::{Route, Snapshot};
use crate::decision::Reason;
use crate::request::{check_framing, normalize_path, NormalizedPath};
use crate::route::Params;

/// A request the gateway has decided to forward.
pub struct Admission {
    pub route: Arc<Route>,
    /// The one normalized path: what policy matched and what is forwarded.
    pub path: NormalizedPath,
    /// The query string as received (without `?`), forwarded unchanged.
    pub query: Option<String>,
    pub params: Params,
}

/// What the HTTP/1 parser saw on the wire but no longer shows in the
/// parsed headers. pingora drops `Content-Length` when `Transfer-Encoding`
/// is also present (RFC 9112 §6.3); the gateway refuses such requests
/// outright, so the adapter reports the fact here.
#[derive(Debug, Clone, Copy, Default)]
pub struct WireFacts {
    pub content_length_with_transfer_encoding: bool,
}

/// Why a request was refused, with the detail an operator needs in the
/// log (never in the client's response body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: Reason,
    pub detail: String,
    /// The normalized path, when normalization got that far: the audit
    /// records what was decided on, not the raw bytes.
    pub path: Option<NormalizedPath>,
}

/// Decide whether a request may go upstream.
///
/// `raw_target` is the request-target exactly as received (origin form:
/// path and optional query), as bytes, because invalid UTF-8 must be
/// refused rather than lossily repaired.
pub fn admit(
    snapshot: &Snapshot,
    method: &Method,
    raw_target: &[u8],
    headers: &HeaderMap,
    wire: WireFacts,
) -> Result<Admission, Refusal> {
    if wire.content_length_with_transfer_encoding {
        return Err(bad_request(
            "both Content-Length and Transfer-Encoding".to_string(),
        ));
    }
    check_framing(headers).map_err(|e| bad_request(e.to_string()))?;
    let target = std::str::from_utf8(raw_target)
        .map_err(|_| bad_request("request target is not valid UTF-8".to_string()))?;
    let (raw_path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    if let Some(q) = query {
        if q.bytes().any(|b| b < 0x20 || b == 0x7f) || q.contains("%00") {
            return Err(bad_request(
                "query string contains a control character".to_string(),
            ));
        }
    }
    let path = normalize_path(raw_path).map_err(|e| bad_request(e.to_string()))?;
    let Some(found) = snapshot.routes.find(method, &path) else {
        return Err(Refusal {
            reason: Reason::NoRoute,
            detail: format!("no route for {method} {}", path.as_str()),
            path: Some(path),
        });
    };
    Ok(Admission {
        route: found.value.clone(),
        query: query.map(str::to_string),
        params: found.params,
        path,
    })
}

fn bad_request(detail: String) -> Refusal {
    Refusal {
        reason: Reason::BadRequest,
        detail,
        path: None,
    }
}
