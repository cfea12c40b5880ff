//! Request body limits (`max_body` of a route or its upstream).
//!
//! A declared `Content-Length` over the limit is refused before anything
//! is forwarded; a body without one (chunked HTTP/1.1, HTTP/2 data frames)
//! is counted as it streams and cut where it passes the limit. A body that
//! comes in pieces is also held to `connections.body_min_rate` (see
//! [`crate::connection::BodyPace`]) from its first piece on.

use pingora_http::RequestHeader;

use crate::config::snapshot::Route;

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

/// The rule named in the audit record of a refusal.
pub fn rule_name(route: &Route) -> String {
    format!("{}.max_body", route.name.0)
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
    fn only_a_declared_length_over_the_limit_counts() {
        assert!(!declared_over(&with_length("1024"), 1024));
        assert!(declared_over(&with_length("1025"), 1024));
        assert!(declared_over(&with_length("18446744073709551615"), 1024));
        let none = RequestHeader::build("POST", b"/upload", None).unwrap();
        assert!(!declared_over(&none, 0));
    }
}
