//! Classifying pingora's errors into the gateway's reason codes.

use pingora_error::{Error, ErrorSource, ErrorType};

use crate::decision::Reason;

/// What a proxying error means for the client. `None` when the client
/// itself went away and no response can be written.
pub fn classify(e: &Error) -> Option<Reason> {
    match e.etype() {
        // The per-read timeout on an HTTP/1.1 request body, which the
        // gateway sets from the body's pace: the client stopped sending it.
        ErrorType::ReadTimedout if e.esource() == &ErrorSource::Downstream => {
            return Some(Reason::BodyTooSlow);
        }
        ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout => {
            return Some(Reason::UpstreamTimeout);
        }
        _ => {}
    }
    match e.esource() {
        ErrorSource::Upstream => Some(Reason::UpstreamError),
        ErrorSource::Downstream if client_went_away(e) => None,
        ErrorSource::Downstream => Some(Reason::BadRequest),
        ErrorSource::Internal | ErrorSource::Unset => Some(Reason::UpstreamError),
    }
}

/// The upstream did not answer within its read timeout.
pub fn upstream_read_timeout(e: &Error) -> bool {
    e.etype() == &ErrorType::ReadTimedout && e.esource() == &ErrorSource::Upstream
}

/// The client closed its connection (or it broke), or reset its HTTP/2
/// stream, before its answer was complete: routine for browsers and
/// phones, not a failure of the gateway or the upstream, and nothing can be
/// written back. (pingora reports a reset stream, and an HTTP/2 connection
/// that failed while the request waited, as a downstream `H2Error`; a
/// malformed HTTP/2 request is refused before any gateway phase runs.)
pub fn client_went_away(e: &Error) -> bool {
    e.esource() == &ErrorSource::Downstream
        && matches!(
            e.etype(),
            ErrorType::WriteError
                | ErrorType::ReadError
                | ErrorType::ConnectionClosed
                | ErrorType::H2Error
        )
}

/// What the audit record says of a request whose client went away.
pub const CLIENT_WENT_AWAY: &str =
    "the client closed the connection or cancelled the request before the response was complete";

/// An upgraded stream that ended because neither side sent anything for
/// the upstream's read timeout.
pub fn idle_stream(e: &Error) -> bool {
    e.etype() == &ErrorType::ReadTimedout
}

/// What the audit record says of a WebSocket stream that idled out.
pub const IDLE_STREAM: &str = "WebSocket stream idle for longer than the upstream's timeouts.read";

/// A short label for the upstream error metric.
pub fn kind(e: &Error) -> &'static str {
    match e.etype() {
        ErrorType::ConnectTimedout => "connect_timeout",
        ErrorType::ReadTimedout => "read_timeout",
        ErrorType::WriteTimedout => "write_timeout",
        ErrorType::ConnectRefused => "connect_refused",
        ErrorType::ConnectError | ErrorType::ConnectNoRoute => "connect_error",
        ErrorType::TLSHandshakeFailure | ErrorType::InvalidCert | ErrorType::HandshakeError => {
            "tls"
        }
        ErrorType::InvalidHTTPHeader | ErrorType::H1Error | ErrorType::H2Error => "protocol",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_are_504_and_refusals_502() {
        let e = Error::new_up(ErrorType::ConnectTimedout);
        assert_eq!(classify(&e), Some(Reason::UpstreamTimeout));
        let e = Error::new_up(ErrorType::ConnectRefused);
        assert_eq!(classify(&e), Some(Reason::UpstreamError));
        let e = Error::new_down(ErrorType::ConnectionClosed);
        assert_eq!(classify(&e), None, "a vanished client gets no response");
        assert!(client_went_away(&e));
        let e = Error::new_up(ErrorType::ConnectionClosed);
        assert!(
            !client_went_away(&e),
            "an upstream that hung up is a failure"
        );
        assert_eq!(classify(&e), Some(Reason::UpstreamError));
        let e = Error::explain(ErrorType::H2Error, "Client closed H2, reason: CANCEL").into_down();
        assert!(
            client_went_away(&e),
            "a reset HTTP/2 stream is a client gone"
        );
        let e = Error::new_down(ErrorType::ReadTimedout);
        assert_eq!(
            classify(&e),
            Some(Reason::BodyTooSlow),
            "a request body that stopped coming is the client's, not the upstream's"
        );
        let e = Error::new_up(ErrorType::ReadTimedout);
        assert_eq!(classify(&e), Some(Reason::UpstreamTimeout));
        let e = Error::new_down(ErrorType::InvalidHTTPHeader);
        assert!(!client_went_away(&e));
        assert_eq!(classify(&e), Some(Reason::BadRequest));
    }
}
