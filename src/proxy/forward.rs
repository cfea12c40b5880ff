//! Building the upstream exchange: which peer, and the request as the
//! upstream sees it (invariant 3: the client's credentials and identity
//! headers never pass; the gateway's credentials are added).

use std::net::{IpAddr, SocketAddr};

use http::header::HOST;
use http::{HeaderMap, HeaderName, HeaderValue};
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::{Error, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};

use crate::config::snapshot::{Snapshot, Upstream, UpstreamTarget, DNS_TTL};
use crate::gate::Admission;
use crate::identity::RoleName;
use crate::request::IpText;

/// Prefix of headers that carry identity from the gateway to upstreams;
/// a client can never set them.
const IDENTITY_PREFIX: &str = "x-chatwarden-";

/// The peer for an admitted request, with the upstream's timeouts and CA.
pub async fn peer(upstream: &Upstream) -> Result<Box<HttpPeer>> {
    let addr = match &upstream.target {
        UpstreamTarget::Addr(a) => *a,
        UpstreamTarget::Dns(host_port) => resolve_cached(upstream, host_port).await?,
    };
    // Boxed at once and filled in place: the peer is several hundred
    // bytes, and a box made at the end would be one more copy of it.
    let mut peer = Box::new(HttpPeer::new(addr, upstream.tls, upstream.host.clone()));
    peer.group_key = upstream.pool_key;
    let t = upstream.timeouts;
    peer.options.connection_timeout = Some(t.connect);
    peer.options.read_timeout = Some(t.read);
    peer.options.write_timeout = Some(t.write);
    peer.options.idle_timeout = Some(t.idle);
    if let Some(ca) = &upstream.ca {
        peer.options.ca = Some(ca.clone());
    }
    Ok(peer)
}

/// Headers the gateway adds to every forwarded request besides the
/// upstream's own: Host, X-Forwarded-For, X-Forwarded-Proto, X-Request-Id and
/// the two identity headers.
const ADDED_HEADERS: usize = 6;

pub(crate) const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub(crate) const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const X_CHATWARDEN_SUB: HeaderName = HeaderName::from_static("x-chatwarden-sub");
const X_CHATWARDEN_ROLES: HeaderName = HeaderName::from_static("x-chatwarden-roles");

/// Rewrite the request headed upstream.
///
/// The header map is edited directly, without the client's header-name
/// case (names go upstream in lower case, as HTTP/2 sends them and as Envoy
/// forwards HTTP/1.1 by default; RFC 9110 makes names case-insensitive).
/// pingora keeps a second, case-preserving map next to the headers, and
/// every insert through it parses the name and allocates it twice over; the
/// dozen edits here were a measurable share of a request's CPU.
pub fn rewrite_request(
    req: &mut RequestHeader,
    snapshot: &Snapshot,
    admission: &Admission,
    client_ip: Option<IpAddr>,
    request_id: &str,
    client_tls: bool,
) -> Result<()> {
    // What was checked is what is forwarded: the normalized path.
    forward_target(req, admission.path.as_str(), admission.query.as_deref())?;

    let upstream = &admission.route.upstream;
    let end_stream = req.send_end_stream();
    let mut parts = without_case(req);
    let headers = &mut parts.headers;
    strip_headers(headers, &snapshot.strip_request_headers);
    headers.reserve(ADDED_HEADERS + upstream.inject.len());
    for (name, value) in &upstream.inject {
        headers.insert(name.clone(), value.clone());
    }
    headers.insert(HOST, upstream.host_header.clone());
    if let Some(ip) = client_ip {
        headers.insert(X_FORWARDED_FOR, ip_header_value(ip)?);
    }
    headers.insert(
        X_FORWARDED_PROTO,
        HeaderValue::from_static(if client_tls { "https" } else { "http" }),
    );
    let id = HeaderValue::from_str(request_id).map_err(|e| {
        Error::because(
            ErrorType::InternalError,
            "request id is not a header value",
            e,
        )
    })?;
    headers.insert(X_REQUEST_ID, id);
    if let Some(caller) = &admission.caller {
        // Identity for the upstream's own logs; clients can never set these
        // (every x-chatwarden-* header they send was dropped above).
        let id = &caller.identity;
        if let Ok(v) = HeaderValue::from_str(&id.subject) {
            headers.insert(X_CHATWARDEN_SUB, v);
        }
        if let Some(v) = roles_header_value(&id.roles) {
            headers.insert(X_CHATWARDEN_ROLES, v);
        }
    }
    *req = RequestHeader::from(parts);
    if end_stream == Some(false) {
        req.set_send_end_stream(false);
    }
    Ok(())
}

/// The request's parts, taken out of `req` and without its header-name case
/// map (see [`rewrite_request`]). The target must already be what goes on the
/// wire as the URI says it ([`forward_target`] sees to that): a header built
/// back from parts serializes its URI.
fn without_case(req: &mut RequestHeader) -> http::request::Parts {
    let empty = RequestHeader::from(http::Request::new(()).into_parts().0);
    http::request::Parts::from(std::mem::replace(req, empty))
}

/// Adds `X-Request-Id` to the response headed for the client.
///
/// Like the request (see [`rewrite_request`]), the header map is edited
/// directly and header names go out in lower case; a reason phrase the
/// upstream chose is kept.
pub fn tag_response(resp: &mut ResponseHeader, request_id: &str) -> Result<()> {
    let id = HeaderValue::from_str(request_id).map_err(|e| {
        Error::because(
            ErrorType::InternalError,
            "request id is not a header value",
            e,
        )
    })?;
    let phrase = resp
        .get_reason_phrase()
        .filter(|p| Some(*p) != resp.status.canonical_reason())
        .map(str::to_string);
    let empty = ResponseHeader::from(http::Response::new(()).into_parts().0);
    let mut parts = http::response::Parts::from(std::mem::replace(resp, empty));
    parts.headers.insert(X_REQUEST_ID, id);
    *resp = ResponseHeader::from(parts);
    if phrase.is_some() {
        resp.set_reason_phrase(phrase.as_deref())?;
    }
    Ok(())
}

/// Drops every header named in `strip` and every identity header.
///
/// One pass over the names the request has (a handful) instead of a
/// removal per strippable name (a dozen hash lookups, nearly all misses).
/// The names found are held on the stack; a request with more of them than
/// fit falls back to removing by name.
fn strip_headers(headers: &mut HeaderMap, strip: &[HeaderName]) {
    const HELD: usize = 8;
    let doomed = |n: &HeaderName| {
        strip.contains(n)
            || n.as_str().starts_with(IDENTITY_PREFIX)
            || (n.as_str().contains('_') && doomed_as_cgi(n.as_str(), strip))
    };
    let mut held: [Option<HeaderName>; HELD] = Default::default();
    let mut found = 0;
    for name in headers.keys().filter(|n| doomed(n)) {
        if let Some(slot) = held.get_mut(found) {
            *slot = Some(name.clone());
        }
        found += 1;
    }
    if found > HELD {
        let all: Vec<HeaderName> = headers.keys().filter(|n| doomed(n)).cloned().collect();
        for name in all {
            headers.remove(&name);
        }
        return;
    }
    for name in held.iter().flatten() {
        headers.remove(name);
    }
}

/// Whether `name` (with an `_`) names a stripped header once `_` reads as
/// `-`: servers that map headers to CGI names (Rack, PHP) read
/// `X_Chatwarden_Sub` as `X-Chatwarden-Sub`, and a patched Puma keeps the
/// underscore spelling whenever the other is absent.
fn doomed_as_cgi(name: &str, strip: &[HeaderName]) -> bool {
    let dashed = name.replace('_', "-");
    dashed.starts_with(IDENTITY_PREFIX) || strip.iter().any(|s| s.as_str() == dashed)
}

/// Points the request at `path` (normalized) and `query` (as received).
///
/// Most requests arrive already normalized; their target is left as it is
/// rather than rebuilt, which would cost a String and a URI parse per
/// request. "Already" means the bytes pingora will put on the wire are
/// exactly `path?query`, and they come from an origin-form URI that says the
/// same (no scheme or authority, nothing kept verbatim beside it), so that
/// setting the URI would change nothing a peer can observe.
fn forward_target(req: &mut RequestHeader, path: &str, query: Option<&str>) -> Result<()> {
    let uri = &req.uri;
    let unchanged = uri.scheme().is_none()
        && uri.authority().is_none()
        && uri.path_and_query().is_some_and(|pq| {
            pq.as_str().as_bytes() == req.raw_path() && is_target(pq.as_str(), path, query)
        });
    if unchanged {
        return Ok(());
    }
    let mut target = String::with_capacity(path.len() + query.map_or(0, |q| q.len() + 1));
    target.push_str(path);
    if let Some(q) = query {
        target.push('?');
        target.push_str(q);
    }
    let uri = http::Uri::try_from(target)
        .map_err(|e| Error::because(ErrorType::InternalError, "normalized path is not a URI", e))?;
    req.set_uri(uri);
    Ok(())
}

/// Whether `target` is `path`, followed by `?query` when there is a query.
fn is_target(target: &str, path: &str, query: Option<&str>) -> bool {
    match (target.strip_prefix(path), query) {
        (Some(rest), None) => rest.is_empty(),
        (Some(rest), Some(q)) => rest.strip_prefix('?') == Some(q),
        (None, _) => false,
    }
}

/// The client address as a header value: one allocation, the value's.
fn ip_header_value(ip: IpAddr) -> Result<HeaderValue> {
    // Cannot fail (digits, dots, colons and hex letters); stays an error
    // rather than a panic.
    HeaderValue::from_str(IpText::new(ip).as_str()).map_err(|e| {
        Error::because(
            ErrorType::InternalError,
            "client address is not a header value",
            e,
        )
    })
}

/// `role1,role2,…`, or `None` if that is not a valid header value (such a
/// header is left out, not mangled). The usual single role needs no joined
/// copy.
fn roles_header_value(roles: &[RoleName]) -> Option<HeaderValue> {
    if let [role] = roles {
        return HeaderValue::from_str(&role.0).ok();
    }
    let len = roles.iter().map(|r| r.0.len() + 1).sum::<usize>();
    let mut joined = String::with_capacity(len.saturating_sub(1));
    for (i, role) in roles.iter().enumerate() {
        if i > 0 {
            joined.push(',');
        }
        joined.push_str(&role.0);
    }
    HeaderValue::from_str(&joined).ok()
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

#[cfg(test)]
mod tests {
    /// Credentials and identity headers go however many a client sends,
    /// past the names held on the stack too; everything else stays.
    #[test]
    fn stripping_removes_every_doomed_header_and_nothing_else() {
        let strip: Vec<HeaderName> = ["authorization", "cookie", "x-forwarded-for"]
            .iter()
            .map(|n| HeaderName::from_static(n))
            .collect();
        for identity in [1, 8, 12] {
            let mut req = RequestHeader::build("GET", b"/", None).expect("a request head");
            req.append_header("authorization", "Bearer a")
                .expect("header");
            req.append_header("authorization", "Bearer b")
                .expect("header");
            req.append_header("cookie", "s=1").expect("header");
            req.append_header("accept", "application/json")
                .expect("header");
            req.append_header("x-trace", "t").expect("header");
            for i in 0..identity {
                req.append_header(format!("x-chatwarden-h{i}"), "forged")
                    .expect("header");
            }
            let mut parts = without_case(&mut req);
            strip_headers(&mut parts.headers, &strip);
            let left: Vec<&str> = parts.headers.keys().map(HeaderName::as_str).collect();
            assert_eq!(
                left,
                ["accept", "x-trace"],
                "with {identity} identity headers only the harmless ones are left"
            );
        }
    }

    use super::*;

    fn request(target: &[u8]) -> RequestHeader {
        match RequestHeader::build("GET", target, None) {
            Ok(req) => req,
            Err(e) => panic!("{target:?} should parse as a request target: {e}"),
        }
    }

    /// Forwards `raw` as if normalization gave `path` and `query`; returns
    /// what goes on the wire.
    fn forwarded(raw: &[u8], path: &str, query: Option<&str>) -> String {
        let mut req = request(raw);
        if let Err(e) = forward_target(&mut req, path, query) {
            panic!("forwarding {path} should succeed: {e}");
        }
        String::from_utf8_lossy(req.raw_path()).into_owned()
    }

    #[test]
    fn a_target_that_normalization_changed_is_replaced() {
        let cases: [(&[u8], &str, Option<&str>); 6] = [
            (b"/a//b", "/a/b", None),
            (b"/a/%7Euser", "/a/~user", None),
            (b"/a/./b/../c?x=1", "/a/c", Some("x=1")),
            (b"/a//b?", "/a/b", Some("")),
            // Same path, but the request had no query: the `?` must go.
            (b"/a?", "/a", None),
            // Absolute-form: the path matches, the target on the wire does not.
            (b"http://evil.example/a", "/a", None),
        ];
        for (raw, path, query) in cases {
            let expected = match query {
                Some(q) => format!("{path}?{q}"),
                None => path.to_string(),
            };
            assert_eq!(
                forwarded(raw, path, query),
                expected,
                "{} should be forwarded normalized",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn an_already_normalized_target_is_kept_as_it_is() {
        for (raw, path, query) in [
            (
                "/api/v1/accounts/1/contacts",
                "/api/v1/accounts/1/contacts",
                None,
            ),
            ("/a/b?page=2&q=%20x", "/a/b", Some("page=2&q=%20x")),
            ("/a?", "/a", Some("")),
        ] {
            let mut req = request(raw.as_bytes());
            let before = req.uri.clone();
            assert!(forward_target(&mut req, path, query).is_ok());
            assert_eq!(req.uri, before, "{raw} should keep its URI");
            assert_eq!(
                req.raw_path(),
                raw.as_bytes(),
                "{raw} should go out as received"
            );
        }
    }

    #[test]
    fn is_target_compares_path_and_query_exactly() {
        assert!(is_target("/a", "/a", None));
        assert!(is_target("/a?x", "/a", Some("x")));
        assert!(is_target("/a?", "/a", Some("")));
        assert!(
            !is_target("/a?", "/a", None),
            "an empty query is still a `?`"
        );
        assert!(
            !is_target("/a", "/a", Some("")),
            "a `?` must not be dropped"
        );
        assert!(!is_target("/ab", "/a", None));
        assert!(!is_target("/a?x", "/a", Some("y")));
        assert!(!is_target("/a#x", "/a", Some("x")));
        assert!(!is_target("/b", "/a", None));
    }

    #[test]
    fn header_values_match_their_plain_formatting() {
        for ip in [
            "203.0.113.9",
            "::1",
            "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
            "::ffff:192.0.2.1",
        ] {
            let addr: IpAddr = ip.parse().expect("a test address");
            let value = ip_header_value(addr).map(|v| v.as_bytes().to_vec()).ok();
            assert_eq!(value, Some(addr.to_string().into_bytes()), "{ip}");
        }
        let roles = |names: &[&str]| {
            names
                .iter()
                .map(|n| RoleName(n.to_string()))
                .collect::<Vec<_>>()
        };
        for names in [&[][..], &["agent"], &["agent", "supervisor", "finance"]] {
            let value = roles_header_value(&roles(names));
            assert_eq!(
                value.as_ref().map(|v| v.as_bytes()),
                Some(names.join(",").as_bytes()),
                "roles {names:?} should be joined with commas"
            );
        }
        assert_eq!(
            roles_header_value(&roles(&["agent", "sales\nx-injected: 1"])),
            None,
            "a role that is not a valid header value leaves the header out, as before"
        );
        assert_eq!(roles_header_value(&roles(&["a\u{7f}"])), None);
    }
}
