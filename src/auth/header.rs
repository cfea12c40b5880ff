//! The compact JWS structure and the JOSE header rules, checked before any
//! key is looked up.
//!
//! Only `alg`, `kid`, `typ`, `cty` and `crit` are read. `jku`, `x5u`,
//! `x5c`, `jwk` and every other parameter are ignored: a token never
//! chooses where its own key comes from (RFC 8725 §3.10). Duplicate
//! parameters are refused by the parser, so two JSON parsers can never
//! disagree about which `alg` a token has.

use std::str::FromStr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::Algorithm;
use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer};

use super::verify::AuthError;

/// A compact JWS split into its three segments (still base64url).
#[derive(Debug, Clone, Copy)]
pub struct Compact<'a> {
    pub header: &'a str,
    pub payload: &'a str,
    pub signature: &'a str,
    /// `header.payload`: the bytes the signature covers.
    pub signing_input: &'a str,
}

/// The header parameters that matter, after the rules were applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoseHeader {
    pub alg: Algorithm,
    pub kid: Option<String>,
}

/// Split a token into three non-empty base64url segments.
pub fn split(token: &str) -> Result<Compact<'_>, AuthError> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed("not three dot-separated segments"));
    };
    if header.is_empty() || payload.is_empty() {
        return Err(AuthError::Malformed("empty segment"));
    }
    if ![header, payload, signature].iter().all(|s| is_base64url(s)) {
        return Err(AuthError::Malformed("segment is not base64url"));
    }
    Ok(Compact {
        header,
        payload,
        signature,
        signing_input: &token[..header.len() + 1 + payload.len()],
    })
}

/// Decode one base64url segment (no padding, canonical trailing bits).
pub fn decode_segment(segment: &str) -> Result<Vec<u8>, AuthError> {
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| AuthError::Malformed("segment is not base64url"))
}

/// Parse the header and apply the rules: no `none`, algorithm in the
/// allowlist, no `crit`, a JWT `typ`, no nested JWT.
pub fn parse(segment: &str, allowed: &[Algorithm]) -> Result<JoseHeader, AuthError> {
    let bytes = decode_segment(segment)?;
    let raw: RawHeader = serde_json::from_slice(&bytes)
        .map_err(|_| AuthError::Malformed("header is not a JSON object"))?;
    if raw.alg.eq_ignore_ascii_case("none") {
        return Err(AuthError::Unsigned);
    }
    let alg = Algorithm::from_str(&raw.alg).map_err(|_| AuthError::UnsupportedAlgorithm)?;
    if !allowed.contains(&alg) {
        return Err(AuthError::AlgorithmNotAllowed(alg));
    }
    // We implement no JWS extension, so any `crit` names one we do not
    // understand (RFC 7515 §4.1.11).
    if raw.crit {
        return Err(AuthError::CriticalHeader);
    }
    if let Some(typ) = &raw.typ {
        if !is_jwt_type(typ) {
            return Err(AuthError::WrongType);
        }
    }
    // A `cty` of JWT means the payload is another token (RFC 7519 §5.2);
    // its claims would be a different issuer's.
    if raw.cty.as_deref().is_some_and(is_jwt_type) {
        return Err(AuthError::Nested);
    }
    Ok(JoseHeader { alg, kid: raw.kid })
}

#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    cty: Option<String>,
    #[serde(default, deserialize_with = "present")]
    crit: bool,
}

/// True whenever the parameter appears, whatever its value (even `null`).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    IgnoredAny::deserialize(d).map(|_| true)
}

/// `JWT` or `at+jwt` (RFC 9068), case-insensitive, with or without the
/// `application/` prefix (RFC 7515 §4.1.9).
fn is_jwt_type(typ: &str) -> bool {
    let t = typ
        .get(..12)
        .filter(|p| p.eq_ignore_ascii_case("application/"))
        .map_or(typ, |_| &typ[12..]);
    t.eq_ignore_ascii_case("jwt") || t.eq_ignore_ascii_case("at+jwt")
}

/// Every byte of a fresh token passes through here: a table and an and-ed
/// verdict, with no branch per byte.
fn is_base64url(s: &str) -> bool {
    s.bytes().fold(true, |ok, b| ok & BASE64URL[usize::from(b)])
}

const BASE64URL: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || c == b'-' || c == b'_';
        b += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(json: &str) -> String {
        URL_SAFE_NO_PAD.encode(json)
    }

    const ALLOWED: &[Algorithm] = &[Algorithm::ES256, Algorithm::RS256];

    #[test]
    fn typ_values_follow_rfc_8725() {
        for ok in [
            "JWT",
            "jwt",
            "at+jwt",
            "AT+JWT",
            "application/at+jwt",
            "Application/JWT",
        ] {
            assert!(is_jwt_type(ok), "{ok} should be accepted as a JWT type");
        }
        for bad in [
            "JOSE",
            "secevent+jwt",
            "application/json",
            "",
            "application/",
        ] {
            assert!(!is_jwt_type(bad), "{bad} should be refused as a JWT type");
        }
    }

    #[test]
    fn duplicate_alg_is_refused() {
        let h = enc(r#"{"alg":"ES256","alg":"none"}"#);
        assert_eq!(
            parse(&h, ALLOWED),
            Err(AuthError::Malformed("header is not a JSON object")),
            "a header with two alg members should be refused, not resolved"
        );
    }

    #[test]
    fn crit_is_refused_even_when_null() {
        let h = enc(r#"{"alg":"ES256","crit":null}"#);
        assert_eq!(parse(&h, ALLOWED), Err(AuthError::CriticalHeader));
    }

    #[test]
    fn nested_tokens_are_refused() {
        let h = enc(r#"{"alg":"ES256","cty":"JWT"}"#);
        assert_eq!(parse(&h, ALLOWED), Err(AuthError::Nested));
    }

    #[test]
    fn split_needs_exactly_three_base64url_segments() {
        assert!(split("a.b.c").is_ok());
        assert!(
            split("a.b.").is_ok(),
            "an empty signature is a signature check failure later"
        );
        assert!(split("a.b").is_err());
        assert!(split("a.b.c.d").is_err());
        assert!(split("..").is_err());
        assert!(split("a=.b.c").is_err(), "padding is not base64url for JWS");
        assert!(split("a+.b.c").is_err());
    }

    #[test]
    fn non_canonical_base64_is_refused() {
        // "QQ" is canonical for "A"; "QR" has non-zero trailing bits.
        assert!(decode_segment("QQ").is_ok());
        assert!(decode_segment("QR").is_err(), "trailing bits must be zero");
    }
}
