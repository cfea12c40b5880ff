//! Building the upstream exchange: which peer, and the request as the
//! upstream sees it (invariant 3: the client's credentials and identity
//! headers never pass; the gateway's credentials are added).

use std::net::{IpAddr, SocketAddr};

use http::header::HOST;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::{Error, ErrorType, Result};
use pingora_http::RequestHeader;

use crate::config::snapshot::{Snapshot, Upstream, UpstreamTarget, DNS_TTL};
use crate::gate::Admission;

/// Prefix of headers that carry identity from the gateway to upstreams;
/// a client can never set them.
const IDENTITY_PREFIX: &str = "x-chatwarden-";

/// The peer for an admitted request, with the upstream's timeouts and CA.
pub async fn peer(upstream: &Upstream) -> Result<Box<HttpPeer>> {
    let addr = match &upstream.target {
        UpstreamTarget::Addr(a) => *a,
        UpstreamTarget::Dns(host_port) => resolve_cached(upstream, host_port).await?,
    };
    let mut peer = HttpPeer::new(addr, upstream.tls, upstream.host.clone());
    peer.group_key = upstream.pool_key;
    let t = upstream.timeouts;
    peer.options.connection_timeout = Some(t.connect);
    peer.options.read_timeout = Some(t.read);
    peer.options.write_timeout = Some(t.write);
    peer.options.idle_timeout = Some(t.idle);
    if let Some(ca) = &upstream.ca {
        peer.options.ca = Some(ca.clone());
    }
    Ok(Box::new(peer))
}

/// Rewrite the request headed upstream.
pub fn rewrite_request(
    req: &mut RequestHeader,
    snapshot: &Snapshot,
    admission: &Admission,
    client_ip: Option<IpAddr>,
    request_id: &str,
    client_tls: bool,
) -> Result<()> {
    for name in &snapshot.strip_request_headers {
        req.remove_header(name);
    }
    let identity: Vec<http::HeaderName> = req
        .headers
        .keys()
        .filter(|n| n.as_str().starts_with(IDENTITY_PREFIX))
        .cloned()
        .collect();
    for name in identity {
        req.remove_header(&name);
    }

    let upstream = &admission.route.upstream;
    for (name, value) in &upstream.inject {
        req.insert_header(name.clone(), value.clone())?;
    }
    req.insert_header(HOST, upstream.host_header.clone())?;
    if let Some(ip) = client_ip {
        req.insert_header("x-forwarded-for", ip.to_string())?;
    }
    req.insert_header(
        "x-forwarded-proto",
        if client_tls { "https" } else { "http" },
    )?;
    req.insert_header("x-request-id", request_id)?;
    if let Some(caller) = &admission.caller {
        // Identity for the upstream's own logs; clients can never set these
        // (every x-chatwarden-* header they send was dropped above).
        let id = &caller.identity;
        if let Ok(v) = http::HeaderValue::from_str(&id.subject) {
            req.insert_header("x-chatwarden-sub", v)?;
        }
        let roles: Vec<&str> = id.roles.iter().map(|r| r.0.as_str()).collect();
        if let Ok(v) = http::HeaderValue::from_str(&roles.join(",")) {
            req.insert_header("x-chatwarden-roles", v)?;
        }
    }

    // What was checked is what is forwarded: the normalized path.
    let target = match &admission.query {
        Some(q) => format!("{}?{q}", admission.path.as_str()),
        None => admission.path.as_str().to_string(),
    };
    let uri = http::Uri::try_from(target.as_str())
        .map_err(|e| Error::because(ErrorType::InternalError, "normalized path is not a URI", e))?;
    req.set_uri(uri);
    Ok(())
}

/// The upstream's address from the last lookup if it is fresh, else a new
/// lookup (a failed lookup keeps no stale answer: the request fails).
async fn resolve_cached(upstream: &Upstream, host_port: &str) -> Result<SocketAddr> {
    let cached = *upstream.resolved.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((at, addr)) = cached {
        if at.elapsed() < DNS_TTL {
            return Ok(addr);
        }
    }
    let addr = resolve(host_port).await?;
    *upstream.resolved.lock().unwrap_or_else(|e| e.into_inner()) =
        Some((std::time::Instant::now(), addr));
    Ok(addr)
}

async fn resolve(host_port: &str) -> Result<SocketAddr> {
    let found = match tokio::net::lookup_host(host_port).await {
        Ok(mut addrs) => addrs.next(),
        Err(e) => {
            tracing::warn!(upstream = host_port, error = %e, "DNS lookup failed");
            None
        }
    };
    // Sourced upstream, so the client gets 502 upstream_error.
    found.ok_or_else(|| {
        Error::explain(
            ErrorType::ConnectNoRoute,
            format!("{host_port} has no address"),
        )
        .into_up()
    })
}
