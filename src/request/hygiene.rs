//! Message framing checks: refuse requests whose length or host two servers
//! could read differently (request smuggling, RFC 9112 §6.3).
//!
//! pingora parses the body itself, but the upstream parses what we forward;
//! any disagreement between the two is a smuggling primitive. A client that
//! sends both length headers, conflicting lengths, an exotic
//! `Transfer-Encoding` or two `Host`s is either broken or probing, and gets
//! 400 instead of a guess.

use http::header::{CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::HeaderMap;

/// Why a request's framing was refused. Every variant means "400
/// bad_request". Messages never echo header values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    #[error("request has both Content-Length and Transfer-Encoding")]
    ContentLengthWithTransferEncoding,
    #[error("Content-Length is not a decimal number")]
    InvalidContentLength,
    #[error("request has Content-Length values that disagree")]
    ConflictingContentLength,
    #[error("request has more than one Host header")]
    MultipleHost,
    #[error("Transfer-Encoding must be exactly one 'chunked'")]
    UnsupportedTransferEncoding,
}

/// Checks the headers that decide where a request ends and whom it is for.
///
/// Accepted: at most one of `Content-Length` / `Transfer-Encoding`; any
/// number of `Content-Length` values (including comma lists) as long as each
/// is digits only and all are the same number; a single `Transfer-Encoding`
/// whose value is `chunked` (ASCII case-insensitive, surrounding spaces and
/// tabs ignored, as RFC 9110 allows); at most one `Host`.
pub fn check_framing(headers: &HeaderMap) -> Result<(), FramingError> {
    let has_length = headers.contains_key(CONTENT_LENGTH);
    let has_encoding = headers.contains_key(TRANSFER_ENCODING);
    if has_length && has_encoding {
        return Err(FramingError::ContentLengthWithTransferEncoding);
    }
    if has_length {
        check_content_length(headers)?;
    }
    if has_encoding {
        check_transfer_encoding(headers)?;
    }
    if headers.get_all(HOST).iter().nth(1).is_some() {
        return Err(FramingError::MultipleHost);
    }
    Ok(())
}

fn check_content_length(headers: &HeaderMap) -> Result<(), FramingError> {
    let mut agreed: Option<u64> = None;
    for value in headers.get_all(CONTENT_LENGTH) {
        for item in value.as_bytes().split(|&b| b == b',') {
            let length = parse_decimal(trim_ows(item)).ok_or(FramingError::InvalidContentLength)?;
            match agreed {
                Some(previous) if previous != length => {
                    return Err(FramingError::ConflictingContentLength)
                }
                _ => agreed = Some(length),
            }
        }
    }
    Ok(())
}

fn check_transfer_encoding(headers: &HeaderMap) -> Result<(), FramingError> {
    let mut values = headers.get_all(TRANSFER_ENCODING).iter();
    match (values.next(), values.next()) {
        (Some(only), None) if trim_ows(only.as_bytes()).eq_ignore_ascii_case(b"chunked") => Ok(()),
        _ => Err(FramingError::UnsupportedTransferEncoding),
    }
}

/// Digits only: no sign, no spaces inside, no hex; `None` on overflow too.
fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

/// Strips optional whitespace (SP / HTAB, RFC 9110 §5.6.3) at both ends.
fn trim_ows(bytes: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = bytes.iter().position(|b| !is_ows(b)).unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |i| i + 1);
    bytes.get(start..end).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    /// `(name, raw value)` pairs, appended in order.
    type Pairs<'a> = &'a [(&'a str, &'a [u8])];

    fn headers(pairs: Pairs<'_>) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            let name: http::HeaderName = name.parse().expect("test header name");
            let value = HeaderValue::from_bytes(value).expect("test header value");
            map.append(name, value);
        }
        map
    }

    #[test]
    fn well_framed_requests_pass() {
        let cases: &[Pairs<'_>] = &[
            &[],
            &[("host", b"api.example.com")],
            &[("host", b"a"), ("content-length", b"0")],
            &[("content-length", b"42")],
            &[("content-length", b"42"), ("content-length", b"42")],
            &[("content-length", b"42, 42,42")],
            &[("content-length", b"042"), ("content-length", b"42")],
            &[("transfer-encoding", b"chunked")],
            &[("transfer-encoding", b"Chunked")],
            &[("transfer-encoding", b" chunked\t")],
            &[("content-length", b"18446744073709551615")],
        ];
        for case in cases {
            assert_eq!(
                check_framing(&headers(case)),
                Ok(()),
                "{case:?} should be accepted"
            );
        }
    }

    #[test]
    fn ambiguous_framing_is_refused() {
        use FramingError::*;
        let cases: &[(Pairs<'_>, FramingError)] = &[
            (
                &[("content-length", b"5"), ("transfer-encoding", b"chunked")],
                ContentLengthWithTransferEncoding,
            ),
            (
                &[("transfer-encoding", b"chunked"), ("content-length", b"0")],
                ContentLengthWithTransferEncoding,
            ),
            (
                &[("content-length", b"5"), ("content-length", b"6")],
                ConflictingContentLength,
            ),
            (&[("content-length", b"5, 6")], ConflictingContentLength),
            (&[("content-length", b"")], InvalidContentLength),
            (&[("content-length", b"5,")], InvalidContentLength),
            (&[("content-length", b"-1")], InvalidContentLength),
            (&[("content-length", b"+5")], InvalidContentLength),
            (&[("content-length", b"0x10")], InvalidContentLength),
            (&[("content-length", b"1 2")], InvalidContentLength),
            (
                &[("content-length", b"18446744073709551616")],
                InvalidContentLength,
            ),
            (&[("content-length", b"\xd9\xa5")], InvalidContentLength),
            (&[("host", b"a"), ("host", b"b")], MultipleHost),
            (&[("host", b"a"), ("host", b"a")], MultipleHost),
            (
                &[("transfer-encoding", b"gzip")],
                UnsupportedTransferEncoding,
            ),
            (
                &[("transfer-encoding", b"gzip, chunked")],
                UnsupportedTransferEncoding,
            ),
            (
                &[("transfer-encoding", b"chunked, chunked")],
                UnsupportedTransferEncoding,
            ),
            (
                &[
                    ("transfer-encoding", b"chunked"),
                    ("transfer-encoding", b"chunked"),
                ],
                UnsupportedTransferEncoding,
            ),
            (
                &[("transfer-encoding", b"xchunked")],
                UnsupportedTransferEncoding,
            ),
            (
                &[("transfer-encoding", b"chunked;x=1")],
                UnsupportedTransferEncoding,
            ),
            (
                &[("transfer-encoding", b"\"chunked\"")],
                UnsupportedTransferEncoding,
            ),
            (
                &[("transfer-encoding", b"identity")],
                UnsupportedTransferEncoding,
            ),
            (&[("transfer-encoding", b"")], UnsupportedTransferEncoding),
        ];
        for (case, want) in cases {
            assert_eq!(
                check_framing(&headers(case)),
                Err(*want),
                "{case:?} should be refused with {want:?}"
            );
        }
    }
}
