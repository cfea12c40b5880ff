//! Ownership checks in the proxy: before forwarding a request on one
//! object, fetch the object with the gateway's own upstream credentials and
//! let the pure core (`policy::ownership`) judge it.
//!
//! The lookup is a plain `GET` built by the gateway alone: no client header
//! reaches it, the upstream credentials are injected as for any forwarded
//! request, and it uses the same peer (address, TLS, CA, timeouts) as the
//! route. Answers are cached briefly per looked-up path
//! ([`OwnerCache`](crate::policy::OwnerCache)).

use std::time::Instant;

use bytes::BytesMut;
use http::header::{ACCEPT, ACCEPT_ENCODING, HOST};
use pingora_core::connectors::http::Connector;
use pingora_core::{Error, ErrorType, Result};
use pingora_http::RequestHeader;

use super::failure;
use super::fetch::Exchange;
use crate::config::snapshot::{Snapshot, Upstream};
use crate::decision::Reason;
use crate::gate::Admission;
use crate::policy::{judge, Found, OwnerCheck, Ownership, RowFilterPlan, MAX_LOOKUP_BYTES};

/// What to do with the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Forward it (the object is the caller's, or the caller may reach all).
    Forward,
    /// Refuse it: `not_found` for an object the caller may not reach,
    /// `upstream_error`/`upstream_timeout` when the lookup failed. `detail`
    /// is for the operator's log only.
    Refuse { reason: Reason, detail: String },
}

/// Runs the route's ownership check, if it has one.
pub async fn check(
    connector: &Connector,
    snapshot: &Snapshot,
    admission: &Admission,
    request_id: &str,
) -> Outcome {
    let Some(check) = &admission.route.owner_check else {
        return Outcome::Forward;
    };
    let Some(caller) = &admission.caller else {
        // Compilation only allows owner checks on jwt routes; without a
        // caller there is nobody the object could belong to.
        return refuse(Reason::NotFound, "owner check without a verified caller");
    };
    let plan = check.plan(&caller.identity, snapshot.policy.roles());
    if plan == RowFilterPlan::Skip {
        return Outcome::Forward;
    }
    let Some(path) = check.lookup_path(&admission.params) else {
        return refuse(
            Reason::UpstreamError,
            "owner check lookup path names a parameter the route did not capture",
        );
    };
    let upstream = &admission.route.upstream;
    let found = match upstream.owners.get(check, &path, Instant::now()) {
        Some(found) => found,
        None => match lookup(connector, upstream, check, &path, request_id).await {
            Ok(found) => {
                upstream.owners.put(check, &path, &found, Instant::now());
                found
            }
            Err(outcome) => return outcome,
        },
    };
    match judge(&found, &plan) {
        Ownership::Visible | Ownership::Skip => Outcome::Forward,
        Ownership::Hidden => refuse(
            Reason::NotFound,
            &format!("owner check: {path} is absent or not the caller's"),
        ),
    }
}

/// Fetches and reads the object.
async fn lookup(
    connector: &Connector,
    upstream: &Upstream,
    check: &OwnerCheck,
    path: &str,
    request_id: &str,
) -> std::result::Result<Found, Outcome> {
    let t = upstream.timeouts;
    // The per-operation timeouts bound each step; this bounds the whole
    // exchange, so a trickling upstream cannot hold the request forever.
    let budget = t.connect + t.read.saturating_mul(2);
    let exchange = fetch(connector, upstream, path, request_id);
    let (status, body) = match tokio::time::timeout(budget, exchange).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(e)) => {
            let reason = failure::classify(&e).unwrap_or(Reason::UpstreamError);
            return Err(refuse(
                reason,
                &format!("owner check lookup of {path} failed: {e}"),
            ));
        }
        Err(_) => {
            return Err(refuse(
                Reason::UpstreamTimeout,
                &format!("owner check lookup of {path} took over {budget:?}"),
            ))
        }
    };
    check.read_response(status, &body).map_err(|e| {
        refuse(
            Reason::UpstreamError,
            &format!("owner check lookup of {path}: {e}"),
        )
    })
}

/// One `GET` on the route's upstream; the connection goes back to the pool
/// when the answer was read completely. A pooled connection that the
/// upstream closed is retried on the next one, as for fetched answers.
async fn fetch(
    connector: &Connector,
    upstream: &Upstream,
    path: &str,
    request_id: &str,
) -> Result<(u16, BytesMut)> {
    let mut req = RequestHeader::build(http::Method::GET, path.as_bytes(), None)?;
    req.insert_header(HOST, upstream.host_header.clone())?;
    for (name, value) in &upstream.inject {
        req.insert_header(name.clone(), value.clone())?;
    }
    req.insert_header(ACCEPT, "application/json")?;
    req.insert_header(ACCEPT_ENCODING, "identity")?;
    req.insert_header("x-request-id", request_id)?;
    let Exchange { mut up, peer, head } = super::fetch::exchange(connector, upstream, req).await?;
    let mut body = BytesMut::new();
    while let Some(chunk) = up.read_response_body().await? {
        if body.len() + chunk.len() > MAX_LOOKUP_BYTES {
            // Not reusable: the rest of the body is still on the wire.
            return Err(Error::explain(
                ErrorType::InvalidHTTPHeader,
                format!("lookup body over {MAX_LOOKUP_BYTES} bytes"),
            )
            .into_up());
        }
        body.extend_from_slice(&chunk);
    }
    connector
        .release_http_session(up, &*peer, Some(upstream.timeouts.idle))
        .await;
    Ok((head.status.as_u16(), body))
}

fn refuse(reason: Reason, detail: &str) -> Outcome {
    Outcome::Refuse {
        reason,
        detail: detail.to_owned(),
    }
}
