//! Response rewriting in the proxy (row filters and redaction): plan per
//! request, ask the upstream for a plain body, buffer it (hard cap),
//! rewrite at end of stream, fail closed (DESIGN invariant 4).
//!
//! A 2xx body is rewritten by the plan. A non-2xx body (an upstream error,
//! which may echo the phone number or e-mail address the client sent) is
//! searched with the detectors whenever the caller is subject to a
//! redaction rule ([`crate::rewrite::mask_error_body`]); row filters do not
//! apply to it. One that could never be searched (content-coded, binary,
//! declared over the cap) is refused at the head, so the client gets a clean
//! 502 `redaction_failed`.
//!
//! Plain GETs are fetched whole first ([`super::fetch`]) and get a clean 502
//! when their body cannot be rewritten. On the proxied path (other methods)
//! pingora sends the response head before the body exists, so a body that
//! cannot be rewritten (not JSON, wrong shape, too large, compressed) ends
//! the response with an error instead of any upstream byte: the client sees
//! a broken response, never an unfiltered one, and the audit record says
//! `redaction_failed`. A plan that rewrites links alone fails open instead:
//! a link left as written hides nothing, so what it cannot read (not JSON,
//! encoded, over the cap) passes as it is.

use bytes::{Bytes, BytesMut};
use pingora_core::{Error, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};

use crate::auth::Verified;
use crate::config::snapshot::{Route, Snapshot};
use crate::policy::RoleSet;
use crate::rewrite::{
    check_error_head, mask_error_body, public_origin, readable, rewrite, ErrorScan, Links,
    RewriteError, RewriteOutcome, RewritePlan,
};

pub use crate::rewrite::MAX_REWRITE_BYTES;

/// Conditional and partial requests would let a cached or partial body
/// slip past the rewriter.
const CONDITIONAL_HEADERS: [&str; 6] = [
    "range",
    "if-range",
    "if-none-match",
    "if-modified-since",
    "if-match",
    "if-unmodified-since",
];

/// One response being rewritten.
pub struct RewriteState {
    plan: RewritePlan,
    /// What this response's body goes through, once its status is known.
    mode: Mode,
    /// The upstream's status, for logs.
    status: u16,
    content_type: Option<String>,
    content_encoding: Option<String>,
    buffer: BytesMut,
    /// The body's declared length (capped), to size `buffer` once.
    expected: usize,
    /// Rows removed and values masked, for the audit record.
    pub removed: u64,
    pub masked: u64,
}

/// How the body of the response at hand is treated.
enum Mode {
    /// A 2xx answer: the plan applies.
    Success,
    /// An error answer for a caller subject to redaction: searched.
    Error(ErrorScan),
    /// Passed as it is: an error answer for a caller with row filters
    /// only, or one that has no body (1xx, 204, 304, an answer to HEAD).
    Pass,
}

/// The plan for this caller on this route, if anything must be rewritten:
/// the row filter, every redaction rule whose `unless_permission` the
/// caller lacks, and the upstream links that lead through the gateway.
pub fn plan(
    route: &Route,
    caller: Option<&Verified>,
    roles: &RoleSet,
    links: Option<Links>,
) -> Option<RewriteState> {
    if route.row_filter.is_none() && route.redactions.is_empty() && links.is_none() {
        return None;
    }
    let mut plan = RewritePlan::for_caller(
        route.row_filter.as_ref(),
        &route.redactions,
        caller.map(|c| &c.identity),
        roles,
    );
    plan.links = links;
    (!plan.is_empty()).then(|| RewriteState::new(plan))
}

/// The gateway's origin as this client reached it (see [`public_origin`]),
/// where its upstream's links lead; empty: links become paths. `tls`: the
/// client's connection is TLS; `trusted_peer`: it comes from a trusted
/// proxy, whose `X-Forwarded-Proto` says the scheme the client used.
pub fn public_origin_for(
    snapshot: &Snapshot,
    req: &RequestHeader,
    tls: bool,
    trusted_peer: bool,
) -> String {
    let forwarded = req
        .headers
        .get("x-forwarded-proto")
        .filter(|_| trusted_peer)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(',').next().unwrap_or_default().trim());
    let scheme = match forwarded {
        Some(p) if p.eq_ignore_ascii_case("https") => "https",
        Some(p) if p.eq_ignore_ascii_case("http") => "http",
        _ if tls => "https",
        _ => "http",
    };
    let host = req
        .headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri.authority().map(|a| a.as_str()));
    public_origin(snapshot.public_url.as_deref(), scheme, host).unwrap_or_default()
}

impl RewriteState {
    /// A response not seen yet, to be rewritten by `plan`.
    fn new(plan: RewritePlan) -> RewriteState {
        RewriteState {
            plan,
            mode: Mode::Success,
            status: 0,
            content_type: None,
            content_encoding: None,
            buffer: BytesMut::new(),
            expected: 0,
            removed: 0,
            masked: 0,
        }
    }
}

impl RewriteState {
    /// Whether the body is held and rewritten (false: passed as it is).
    /// Known once the response head went through [`prepare_response`].
    pub fn holds_body(&self) -> bool {
        !matches!(self.mode, Mode::Pass)
    }
}

/// Ask for an identity-encoded, complete body.
pub fn prepare_request(req: &mut RequestHeader) -> Result<()> {
    for h in CONDITIONAL_HEADERS {
        req.remove_header(h);
    }
    req.insert_header(http::header::ACCEPT_ENCODING, "identity")?;
    Ok(())
}

/// The response head: the length and validators of the upstream body no
/// longer describe what the client receives. An error answer whose head
/// already shows that its body cannot be searched is an error here, before
/// anything is sent (`head_request`: a HEAD answer has no body).
pub fn prepare_response(
    state: &mut RewriteState,
    resp: &mut ResponseHeader,
    downstream_h2: bool,
    head_request: bool,
) -> Result<()> {
    let text = |name: http::HeaderName| {
        resp.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    state.content_type = text(http::header::CONTENT_TYPE);
    state.content_encoding = text(http::header::CONTENT_ENCODING);
    state.status = resp.status.as_u16();
    if let Some(links) = &state.plan.links {
        relink_headers(links, resp)?;
    }
    let declared = resp
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let bodiless = resp.status.is_informational()
        || resp.status == http::StatusCode::NO_CONTENT
        || resp.status == http::StatusCode::NOT_MODIFIED;
    // A plan that only rewrites links passes what it cannot read (a media
    // file, an encoded or oversized answer) as it is.
    let unreadable = || {
        head_request
            || !readable(
                state.content_type.as_deref(),
                state.content_encoding.as_deref(),
            )
            || declared.is_some_and(|n| n > MAX_REWRITE_BYTES as u64)
    };
    state.mode = if bodiless {
        // No body can follow, and the head has no length to drop (a 204
        // must not carry one).
        Mode::Pass
    } else if resp.status.is_success() {
        if !state.plan.fails_closed() && unreadable() {
            Mode::Pass
        } else {
            // An answer to HEAD too: its length and validators describe
            // the unfiltered body, so they go as for GET.
            Mode::Success
        }
    } else if head_request {
        Mode::Pass
    } else {
        state.plan.error_scan().map_or(Mode::Pass, Mode::Error)
    };
    match state.mode {
        Mode::Pass => return Ok(()),
        Mode::Success => {}
        Mode::Error(_) => {
            if let Some(len) = declared.filter(|n| *n > 0) {
                check_error_head(
                    state.content_type.as_deref(),
                    state.content_encoding.as_deref(),
                    len,
                    MAX_REWRITE_BYTES,
                )
                .map_err(|e| refused(state.status, &e))?;
            }
        }
    }
    // The body is held whole: room for all of it when its first piece
    // arrives (no regrowth), never more than the cap whatever the upstream
    // says.
    state.expected = declared
        .and_then(|n| usize::try_from(n).ok())
        .map_or(0, |n| n.min(MAX_REWRITE_BYTES));
    for h in [
        http::header::CONTENT_LENGTH,
        http::header::ETAG,
        http::header::LAST_MODIFIED,
        http::header::ACCEPT_RANGES,
    ] {
        resp.remove_header(&h);
    }
    resp.insert_header(http::header::CACHE_CONTROL, "private, no-store")?;
    if !downstream_h2 {
        resp.insert_header(http::header::TRANSFER_ENCODING, "chunked")?;
    }
    Ok(())
}

/// `Location` and `Content-Location` that lead to an upstream of `links`
/// (a redirect) lead through the gateway instead.
fn relink_headers(links: &Links, resp: &mut ResponseHeader) -> Result<()> {
    for name in [http::header::LOCATION, http::header::CONTENT_LOCATION] {
        let mut linked = String::new();
        let relinked = resp
            .headers
            .get(&name)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| links.rewrite_into(v, &mut linked));
        if relinked {
            resp.insert_header(name, linked)?;
        }
    }
    Ok(())
}

/// Hold every chunk; at the end, emit the rewritten body or fail.
pub fn body_chunk(state: &mut RewriteState, body: &mut Option<Bytes>, end: bool) -> Result<()> {
    if matches!(state.mode, Mode::Pass) {
        return Ok(());
    }
    let mut single = None;
    if let Some(chunk) = body.take() {
        if state.buffer.len() + chunk.len() > MAX_REWRITE_BYTES {
            if !passes_over_cap(state) {
                return Error::e_explain(
                    ErrorType::InternalError,
                    "response over the rewrite cap: not sent",
                );
            }
            // Read for its links alone: what was held and the rest go on
            // as they are.
            state.mode = Mode::Pass;
            let mut held = std::mem::take(&mut state.buffer);
            *body = Some(if held.is_empty() {
                chunk
            } else {
                held.extend_from_slice(&chunk);
                held.freeze()
            });
            return Ok(());
        }
        if end && state.buffer.is_empty() {
            // The whole body in one piece: read where it is.
            single = Some(chunk);
        } else {
            if state.buffer.capacity() == 0 {
                state.buffer.reserve(state.expected.max(chunk.len()));
            }
            state.buffer.extend_from_slice(&chunk);
        }
    }
    if !end {
        return Ok(());
    }
    let whole = match single {
        Some(chunk) => chunk,
        None => std::mem::take(&mut state.buffer).freeze(),
    };
    let outcome = match &state.mode {
        Mode::Error(scan) => mask_error_body(
            &whole,
            state.content_type.as_deref(),
            state.content_encoding.as_deref(),
            scan,
            MAX_REWRITE_BYTES,
        )
        .map_err(|e| refused(state.status, &e))?,
        _ => rewrite(
            &whole,
            state.content_type.as_deref(),
            state.content_encoding.as_deref(),
            &state.plan,
            MAX_REWRITE_BYTES,
        )
        .map_err(|e| {
            Error::explain(
                ErrorType::InternalError,
                format!("rewrite failed ({}): {e}", e.kind()),
            )
        })?,
    };
    match outcome {
        RewriteOutcome::Rewritten {
            body: out,
            removed,
            masked,
        } => {
            state.removed = removed;
            state.masked = masked;
            *body = Some(out);
            Ok(())
        }
        RewriteOutcome::Unchanged => {
            *body = Some(whole);
            Ok(())
        }
        // Object filters are refused at config load; should one arrive,
        // failing closed is the only safe answer this late.
        RewriteOutcome::NotFound => Error::e_explain(
            ErrorType::InternalError,
            "object filter after response head",
        ),
    }
}

/// Whether a 2xx body that outgrows the rewrite cap (one that did not
/// declare its length, or declared less) may pass as it is: on a plan that
/// only rewrites links, where a link left as written hides nothing. Any
/// other plan fails closed.
fn passes_over_cap(state: &RewriteState) -> bool {
    matches!(state.mode, Mode::Success) && !state.plan.fails_closed()
}

/// The error for an error body that cannot be searched (`status`: the
/// upstream's). The message names the
/// reason, never body content.
fn refused(status: u16, e: &RewriteError) -> Box<Error> {
    Error::explain(
        ErrorType::InternalError,
        format!(
            "upstream error body (status {status}) cannot be searched for personal data ({}): {e}",
            e.kind()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::ItemSelector;
    use crate::redact::{Detector, RedactionRule, Style};

    fn state(plan: RewritePlan) -> RewriteState {
        RewriteState::new(plan)
    }

    fn redacting() -> RewriteState {
        let mut plan = RewritePlan::default();
        plan.push_redaction(&RedactionRule {
            name: "pii".into(),
            unless_permission: None,
            fields: vec![ItemSelector::parse("$.payload.email").expect("selector")],
            detect: vec![Detector::PHONE],
            style: Style::Partial,
        });
        state(plan)
    }

    fn head(status: u16, headers: &[(&str, &str)]) -> ResponseHeader {
        let mut resp = ResponseHeader::build(status, None).expect("head");
        for (name, value) in headers {
            resp.insert_header(name.to_string(), *value)
                .expect("header");
        }
        resp
    }

    /// Runs the body through in two chunks; what the client gets.
    fn through(state: &mut RewriteState, body: &[u8]) -> Result<Option<Bytes>> {
        let (a, b) = body.split_at(body.len() / 2);
        let mut chunk = Some(Bytes::copy_from_slice(a));
        body_chunk(state, &mut chunk, false)?;
        assert_eq!(chunk, None, "nothing leaves before the end");
        let mut chunk = Some(Bytes::copy_from_slice(b));
        body_chunk(state, &mut chunk, true)?;
        Ok(chunk)
    }

    #[test]
    fn an_error_answer_for_a_caller_under_redaction_is_masked() {
        let mut s = redacting();
        let body = br#"{"message":"Email sophie@example.com has already been taken"}"#;
        let len = body.len().to_string();
        let mut resp = head(
            422,
            &[
                ("content-type", "application/json"),
                ("content-length", &len),
            ],
        );
        assert!(prepare_response(&mut s, &mut resp, false, false).is_ok());
        assert_eq!(resp.status.as_u16(), 422, "status kept");
        assert!(
            resp.headers.get("content-length").is_none(),
            "the length no longer describes the body"
        );
        let out = through(&mut s, body).expect("masked");
        assert_eq!(
            out.as_deref(),
            Some(&br#"{"message":"Email s***@example.com has already been taken"}"#[..])
        );
        assert_eq!(s.masked, 1, "counted for the audit record");
    }

    #[test]
    fn a_body_arriving_whole_or_in_pieces_is_masked_alike() {
        let body = br#"{"payload":{"email":"sophie@example.com","note":"call +447700900123"}}"#;
        let len = body.len().to_string();
        let head_of = || {
            head(
                200,
                &[
                    ("content-type", "application/json"),
                    ("content-length", &len),
                ],
            )
        };
        let mut pieces = redacting();
        assert!(prepare_response(&mut pieces, &mut head_of(), false, false).is_ok());
        let split = through(&mut pieces, body).expect("masked in pieces");

        let mut whole = redacting();
        assert!(prepare_response(&mut whole, &mut head_of(), false, false).is_ok());
        let mut chunk = Some(Bytes::copy_from_slice(body));
        body_chunk(&mut whole, &mut chunk, true).expect("masked whole");

        let expected = br#"{"payload":{"email":"s***@example.com","note":"call +*********123"}}"#;
        assert_eq!(split.as_deref(), Some(&expected[..]));
        assert_eq!(chunk.as_deref(), Some(&expected[..]));
        assert_eq!((pieces.masked, whole.masked), (2, 2));
    }

    #[test]
    fn an_error_head_that_shows_an_unsearchable_body_is_refused_before_it_is_sent() {
        for headers in [
            &[
                ("content-type", "text/html"),
                ("content-encoding", "gzip"),
                ("content-length", "10"),
            ][..],
            &[
                ("content-type", "application/octet-stream"),
                ("content-length", "10"),
            ],
        ] {
            let mut s = redacting();
            let mut resp = head(500, headers);
            assert!(
                prepare_response(&mut s, &mut resp, false, false).is_err(),
                "{headers:?} should be refused at the head"
            );
        }
        // Empty, or the answer to HEAD: nothing to search.
        for (headers, head_request) in [
            (
                &[
                    ("content-type", "application/octet-stream"),
                    ("content-length", "0"),
                ][..],
                false,
            ),
            (
                &[
                    ("content-type", "application/octet-stream"),
                    ("content-length", "10"),
                ],
                true,
            ),
        ] {
            let mut s = redacting();
            let mut resp = head(500, headers);
            assert!(prepare_response(&mut s, &mut resp, false, head_request).is_ok());
            let mut chunk = None;
            assert!(body_chunk(&mut s, &mut chunk, true).is_ok());
            assert!(chunk.unwrap_or_default().is_empty(), "{headers:?}");
        }
    }

    #[test]
    fn a_late_unsearchable_error_body_is_not_sent() {
        let mut s = redacting();
        let mut resp = head(500, &[("content-type", "text/plain")]);
        assert!(prepare_response(&mut s, &mut resp, false, false).is_ok());
        assert!(
            through(&mut s, b"caf\xe9 +447700900123").is_err(),
            "not UTF-8: refused at the end"
        );
    }

    #[test]
    fn without_redaction_error_bodies_pass_as_they_are() {
        // A row filter alone does not apply to error bodies.
        let mut s = state(RewritePlan::default());
        let mut resp = head(
            404,
            &[
                ("content-type", "application/octet-stream"),
                ("content-length", "5"),
            ],
        );
        assert!(prepare_response(&mut s, &mut resp, false, false).is_ok());
        assert_eq!(
            resp.headers.get("content-length").map(|v| v.as_bytes()),
            Some(&b"5"[..]),
            "the head is left alone"
        );
        let mut chunk = Some(Bytes::from_static(b"a@b.c"));
        assert!(body_chunk(&mut s, &mut chunk, true).is_ok());
        assert_eq!(chunk.as_deref(), Some(&b"a@b.c"[..]));
    }

    #[test]
    fn bodiless_answers_keep_their_head_and_a_head_answer_loses_its_length() {
        for status in [204, 304] {
            let mut s = redacting();
            let mut resp = head(status, &[("etag", "\"v1\"")]);
            assert!(prepare_response(&mut s, &mut resp, false, false).is_ok());
            assert!(!s.holds_body(), "{status}");
            for name in ["content-length", "transfer-encoding", "cache-control"] {
                assert!(resp.headers.get(name).is_none(), "{status}: {name}");
            }
        }
        // The length and validator of a 2xx answer to HEAD describe the
        // unfiltered body.
        let mut s = redacting();
        let mut resp = head(200, &[("content-length", "12345"), ("etag", "\"v1\"")]);
        assert!(prepare_response(&mut s, &mut resp, false, true).is_ok());
        assert!(resp.headers.get("content-length").is_none());
        assert!(resp.headers.get("etag").is_none());
    }

    fn linking() -> RewriteState {
        state(RewritePlan {
            links: Some(Links::new(
                vec![crate::rewrite::Origin::new(true, "graph.facebook.com", 443)].into(),
                "https://wa.acme.example",
            )),
            ..RewritePlan::default()
        })
    }

    #[test]
    fn links_lead_through_the_gateway_and_what_cannot_hold_one_passes() {
        let mut s = linking();
        let mut resp = head(
            302,
            &[
                ("location", "https://graph.facebook.com/v23.0/me?x=1"),
                ("content-location", "https://example.com/elsewhere"),
            ],
        );
        assert!(prepare_response(&mut s, &mut resp, false, false).is_ok());
        assert_eq!(
            resp.headers.get("location").map(|v| v.as_bytes()),
            Some(&b"https://wa.acme.example/v23.0/me?x=1"[..]),
            "a redirect to the upstream leads through the gateway"
        );
        assert_eq!(
            resp.headers.get("content-location").map(|v| v.as_bytes()),
            Some(&b"https://example.com/elsewhere"[..]),
            "another site's link stays"
        );
        assert!(!s.holds_body(), "an error answer passes");

        for (headers, head_request) in [
            (
                &[("content-type", "image/jpeg"), ("content-length", "5")][..],
                false,
            ),
            (
                &[
                    ("content-type", "application/json"),
                    ("content-encoding", "br"),
                ],
                false,
            ),
            (
                &[
                    ("content-type", "application/json"),
                    ("content-length", "99999999999"),
                ],
                false,
            ),
            (
                &[
                    ("content-type", "application/json"),
                    ("content-length", "10"),
                ],
                true,
            ),
        ] {
            let mut s = linking();
            let mut resp = head(200, headers);
            assert!(prepare_response(&mut s, &mut resp, false, head_request).is_ok());
            assert!(!s.holds_body(), "{headers:?} passes as it is");
            assert!(
                resp.headers.get("content-length").is_some()
                    || !headers.iter().any(|(n, _)| *n == "content-length"),
                "{headers:?}: its length kept"
            );
        }

        let mut s = linking();
        let body = br#"{"paging":{"next":"https://graph.facebook.com/v23.0/1/x?after=Q"}}"#;
        let mut resp = head(
            200,
            &[
                ("content-type", "application/json"),
                ("content-length", "64"),
            ],
        );
        assert!(prepare_response(&mut s, &mut resp, false, false).is_ok());
        assert!(s.holds_body());
        let out = through(&mut s, body).expect("rewritten");
        assert_eq!(
            out.as_deref(),
            Some(&br#"{"paging":{"next":"https://wa.acme.example/v23.0/1/x?after=Q"}}"#[..])
        );
        assert_eq!(s.masked, 0, "a link is not a masked value");
    }

    /// A 2xx JSON answer that did not declare its length, fed in pieces
    /// that end up over the rewrite cap: what each piece lets out.
    fn over_cap(mut s: RewriteState) -> Vec<Result<Option<Bytes>>> {
        let mut resp = head(200, &[("content-type", "application/json")]);
        assert!(prepare_response(&mut s, &mut resp, false, false).is_ok());
        assert!(s.holds_body());
        let piece = |byte: u8, len: usize| Bytes::from(vec![byte; len]);
        let third = MAX_REWRITE_BYTES / 3 + 1;
        [
            (b'a', third, false),
            (b'b', third, false),
            (b'c', third, false),
            (b'd', 5, true),
        ]
        .into_iter()
        .map(|(byte, len, end)| {
            let mut chunk = Some(piece(byte, len));
            body_chunk(&mut s, &mut chunk, end).map(|()| chunk)
        })
        .collect()
    }

    #[test]
    fn over_the_cap_a_links_only_answer_passes_and_any_other_fails_closed() {
        let third = MAX_REWRITE_BYTES / 3 + 1;
        let out = over_cap(linking());
        assert!(
            matches!(out[0], Ok(None)) && matches!(out[1], Ok(None)),
            "held"
        );
        let Ok(Some(held)) = &out[2] else {
            panic!(
                "what was held goes on with the piece that passed the cap: {:?}",
                out[2].as_ref().map(|b| b.as_ref().map(Bytes::len))
            );
        };
        assert_eq!(held.len(), 3 * third);
        assert!(
            held[..third].iter().all(|b| *b == b'a')
                && held[2 * third..].iter().all(|b| *b == b'c'),
            "in order, unchanged"
        );
        assert!(
            matches!(&out[3], Ok(Some(rest)) if rest.as_ref() == b"ddddd"),
            "the rest passes as it comes"
        );

        let out = over_cap(redacting());
        assert!(out[2].is_err(), "a masked answer over the cap is not sent");
    }
}
