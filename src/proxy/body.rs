//! Request body limits (`max_body` of a route or its upstream).
//!
//! A declared `Content-Length` over the limit is refused before anything
//! is forwarded; a body without one (chunked HTTP/1.1, HTTP/2 data frames)
//! is counted as it streams and cut where it passes the limit. A body that
//! comes in pieces is also held to `connections.body_min_rate` (see
//! [`crate::connection::BodyPace`]) from its first piece on. A form body is
//! read for method override parameters as it streams (see
//! [`crate::request::method_override`]).

use std::time::{Duration, Instant};

use bytes::BytesMut;
use pingora_http::RequestHeader;
use pingora_proxy::Session;

use crate::config::snapshot::Route;
use crate::connection::BodyPace;
use crate::decision::Reason;
use crate::request::method_override::{form_body, FormBody, FormScan, Found};

/// The longest a body's next piece is waited for, however far ahead of
/// its pace the body is: pingora's own limit for each HTTP/1.1 body read.
pub const MAX_PIECE_WAIT: Duration = Duration::from_secs(60);

/// What has come of a request body so far.
#[derive(Debug, Default)]
pub struct Progress {
    bytes: u64,
    /// When the first piece of a body that came in more than one arrived,
    /// and its size: the pace is counted from there.
    started: Option<(Instant, u64)>,
    /// How long the next piece may take before the body falls behind
    /// its pace; `None` once the body is whole (or cut).
    next_within: Option<Duration>,
    /// The body was cut after forwarding began: the upstream saw part of
    /// the request.
    pub cut: bool,
    /// A form body's scan for method override parameters.
    form: Option<FormScan>,
}

impl Progress {
    /// Count a piece of `len` bytes (`end`: the body's last); the reason to
    /// cut the body here, if it is over `max` bytes or behind `pace`. The
    /// clock (`now`) is read only for bodies that come in pieces.
    pub fn piece(
        &mut self,
        len: usize,
        end: bool,
        max: u64,
        pace: &BodyPace,
        now: impl FnOnce() -> Instant,
    ) -> Option<Reason> {
        self.bytes += len as u64;
        let over = if self.bytes > max {
            // Only a body without a declared length gets here (a declared
            // one was checked before forwarding).
            Some(Reason::BodyTooLarge)
        } else if end {
            self.next_within = None;
            None
        } else if let Some((first_at, first_bytes)) = self.started {
            let elapsed = now().saturating_duration_since(first_at);
            self.next_within = pace.time_left(elapsed, self.bytes - first_bytes);
            self.next_within.is_none().then_some(Reason::BodyTooSlow)
        } else {
            self.started = Some((now(), self.bytes));
            self.next_within = Some(pace.grace);
            None
        };
        self.cut |= over.is_some();
        over
    }

    /// How long the client may take to send the body's next piece: until
    /// it falls behind its pace, and at most [`MAX_PIECE_WAIT`] for a body
    /// ahead of it. The read timeout for the next read of a body still
    /// coming; `None` when no more is expected.
    pub fn next_within(&self) -> Option<Duration> {
        self.next_within
            .filter(|_| !self.cut)
            .map(|d| d.min(MAX_PIECE_WAIT))
    }

    /// Whether a body not yet whole is behind its pace at `now`: its next
    /// piece is overdue. Before its first piece the grace runs from the
    /// request head (`head_at`).
    pub fn behind(&self, pace: &BodyPace, head_at: Instant, now: Instant) -> bool {
        match self.started {
            Some((first_at, first_bytes)) => pace
                .time_left(
                    now.saturating_duration_since(first_at),
                    self.bytes - first_bytes,
                )
                .is_none(),
            None => now.saturating_duration_since(head_at) > pace.grace,
        }
    }

    /// The client stopped sending the body, forwarded in part, past its
    /// pace: it is cut like one that fell behind.
    pub fn stalled(&mut self) {
        self.cut = true;
        self.next_within = None;
    }

    /// A body that is a form, scanned with `scan` as it streams.
    pub fn scanning(scan: FormScan) -> Progress {
        Progress {
            form: Some(scan),
            ..Progress::default()
        }
    }

    /// Read a piece of a form body (`end`: the body's last); what it found
    /// that must not reach the upstream.
    pub fn form_piece(&mut self, piece: &[u8], end: bool) -> Option<Found> {
        let found = self.form.as_mut()?.feed(piece, end);
        self.cut |= found.is_some();
        found
    }
}

/// A scan for method override parameters, when the request's body is a
/// form and its upstream names some.
pub fn form_scan(req: &RequestHeader, params: &[String]) -> Option<FormScan> {
    match form_body(&req.method, &req.headers, params) {
        FormBody::Scan(scan) => Some(scan),
        // An unreadable form was refused by the gate.
        FormBody::NotAForm | FormBody::Unreadable(_) => None,
    }
}

/// Reads a whole request body of at most `max` bytes before anything is
/// forwarded, against `pace` from the start (pingora bounds each HTTP/1.1
/// read by 60s, an HTTP/2 read not at all). Pingora's retry buffer is on,
/// so it forwards exactly the bytes that were read: `max` must be within
/// it (64 KiB). `Ok(Err(reason))` refuses the body (too large, too slow);
/// `Err` is a failed client connection.
pub async fn read_whole(
    session: &mut Session,
    pace: &BodyPace,
    max: usize,
) -> pingora_core::Result<Result<BytesMut, Reason>> {
    if declared_over(session.req_header(), max as u64) {
        return Ok(Err(Reason::BodyTooLarge));
    }
    session.as_downstream_mut().enable_retry_buffering();
    if expects_continue(session.req_header()) {
        // The client waits for word before sending (curl does past 1 KiB):
        // the gateway wants the body, so it says go on itself. The body is
        // in hand before the upstream hears of the request, so it is not
        // asked whether to send it.
        session
            .as_downstream_mut()
            .write_continue_response()
            .await?;
        session
            .req_header_mut()
            .remove_header(&http::header::EXPECT);
    }
    let mut body = BytesMut::new();
    let started = Instant::now();
    loop {
        let Some(left) = pace.time_left(started.elapsed(), body.len() as u64) else {
            return Ok(Err(Reason::BodyTooSlow));
        };
        let read = session.as_downstream_mut().read_request_body();
        let Ok(read) = tokio::time::timeout(left, read).await else {
            return Ok(Err(Reason::BodyTooSlow));
        };
        let chunk = match read {
            Ok(chunk) => chunk,
            // pingora's own limit on an HTTP/1.1 read (60 s) came first, a
            // `body_grace` being longer: too slow all the same.
            Err(e) if e.etype() == &pingora_core::ErrorType::ReadTimedout => {
                return Ok(Err(Reason::BodyTooSlow));
            }
            Err(e) => return Err(e),
        };
        let Some(chunk) = chunk else {
            return Ok(Ok(body));
        };
        if body.len() + chunk.len() > max {
            // Stop reading: nothing of an oversized body is forwarded.
            return Ok(Err(Reason::BodyTooLarge));
        }
        body.extend_from_slice(&chunk);
    }
}

/// An HTTP/1.1 request with `Expect: 100-continue` (RFC 9110 §10.1.1).
fn expects_continue(req: &RequestHeader) -> bool {
    req.version == http::Version::HTTP_11
        && req
            .headers
            .get(http::header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

/// Whether the request declares a body longer than `max` bytes. A length
/// that does not parse never gets here: pingora and the hygiene checks
/// refuse it first.
pub fn declared_over(req: &RequestHeader, max: u64) -> bool {
    req.headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .is_some_and(|len| len > max)
}

/// The rule an audit record names for a body cut for its pace.
pub const PACE_RULE: &str = "connections.body_min_rate";

/// The rule named in the audit record of a body refused for its size.
pub fn rule_name(route: &Route) -> String {
    format!("{}.max_body", route.name.0)
}

/// The rule an audit record names for a body cut for `reason`.
pub fn rule_for(reason: Reason, route: &Route) -> String {
    match reason {
        Reason::BodyTooSlow => PACE_RULE.to_string(),
        Reason::BadRequest => crate::gate::override_rule(route),
        _ => rule_name(route),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_length(value: &str) -> RequestHeader {
        let mut req = RequestHeader::build("POST", b"/upload", None).unwrap();
        req.insert_header(http::header::CONTENT_LENGTH, value)
            .unwrap();
        req
    }

    #[test]
    fn a_body_is_cut_where_it_passes_its_limit_or_falls_behind() {
        let pace = BodyPace {
            min_rate: 1000,
            grace: Duration::from_secs(1),
        };
        let t0 = Instant::now();
        let at = |ms: u64| move || t0 + Duration::from_millis(ms);
        let unread = || -> Instant { panic!("the clock is not read for a body in one piece") };

        let mut whole = Progress::default();
        assert_eq!(whole.piece(5000, true, 5000, &pace, unread), None);
        assert!(!whole.cut);

        let mut big = Progress::default();
        assert_eq!(big.piece(3000, false, 5000, &pace, at(0)), None);
        assert_eq!(
            big.piece(3000, false, 5000, &pace, unread),
            Some(Reason::BodyTooLarge)
        );
        assert!(big.cut);

        // The first piece's bytes earn nothing; 500 more earn 0.5s.
        let mut steady = Progress::default();
        assert_eq!(steady.piece(100, false, 1 << 20, &pace, at(0)), None);
        assert_eq!(
            steady.next_within(),
            Some(Duration::from_secs(1)),
            "the grace, for the piece after the first"
        );
        assert_eq!(steady.piece(500, false, 1 << 20, &pace, at(1400)), None);
        assert_eq!(
            steady.next_within(),
            Some(Duration::from_millis(100)),
            "1.5s earned, 1.4s gone"
        );
        assert_eq!(steady.piece(10, false, 1 << 20, &pace, at(1500)), None);
        assert_eq!(
            steady.piece(10, false, 1 << 20, &pace, at(1600)),
            Some(Reason::BodyTooSlow),
            "520 bytes after the first piece earn 1.52s"
        );
        assert_eq!(steady.next_within(), None, "a cut body reads no more");
        let mut late_end = Progress::default();
        assert_eq!(late_end.piece(1, false, 10, &pace, at(0)), None);
        assert_eq!(
            late_end.piece(1, true, 10, &pace, unread),
            None,
            "a body that is complete is not cut for being late"
        );
        assert_eq!(late_end.next_within(), None, "nothing more to wait for");

        let mut ahead = Progress::default();
        assert_eq!(ahead.piece(100, false, 1 << 30, &pace, at(0)), None);
        assert_eq!(ahead.piece(1 << 20, false, 1 << 30, &pace, at(10)), None);
        assert_eq!(
            ahead.next_within(),
            Some(MAX_PIECE_WAIT),
            "1MB earns over 17 minutes, but a silence is waited out for a minute at most"
        );

        let mut stopped = Progress::default();
        assert_eq!(stopped.piece(100, false, 1 << 20, &pace, at(0)), None);
        assert!(
            !stopped.behind(&pace, t0, at(1000)()),
            "the grace, to the end"
        );
        assert!(stopped.behind(&pace, t0, at(1001)()));
        stopped.stalled();
        assert!(stopped.cut && stopped.next_within().is_none());

        let never = Progress::default();
        let head_at = t0 + Duration::from_millis(500);
        assert!(
            !never.behind(&pace, head_at, at(1500)()),
            "no piece yet: the grace runs from the head"
        );
        assert!(never.behind(&pace, head_at, at(1501)()));
    }

    #[test]
    fn only_a_declared_length_over_the_limit_counts() {
        assert!(!declared_over(&with_length("1024"), 1024));
        assert!(declared_over(&with_length("1025"), 1024));
        assert!(declared_over(&with_length("18446744073709551615"), 1024));
        let none = RequestHeader::build("POST", b"/upload", None).unwrap();
        assert!(!declared_over(&none, 0));
    }
}
