//! Which response bodies the rewriter can read: JSON, not content-coded.

use super::RewriteError;

/// Accepts a missing, empty or `identity` `Content-Encoding`. The proxy
/// asks upstreams for identity; anything else (gzip anyway, a list of
/// codings) cannot be read here and must not pass unread.
pub(super) fn check_encoding(content_encoding: Option<&str>) -> Result<(), RewriteError> {
    match content_encoding.map(str::trim) {
        None | Some("") => Ok(()),
        Some(coding) if coding.eq_ignore_ascii_case("identity") => Ok(()),
        Some(coding) => Err(RewriteError::UnsupportedEncoding(coding.to_owned())),
    }
}

/// Accepts `application/json` and any `type/name+json` (RFC 6839), with
/// any parameters.
pub(super) fn check_content_type(content_type: Option<&str>) -> Result<(), RewriteError> {
    let refuse = || RewriteError::UnsupportedContentType(content_type.map(str::to_owned));
    let essence = content_type
        .and_then(|ct| ct.split(';').next())
        .map(str::trim)
        .ok_or_else(refuse)?;
    let (kind, subtype) = essence.split_once('/').ok_or_else(refuse)?;
    let plain_json =
        kind.eq_ignore_ascii_case("application") && subtype.eq_ignore_ascii_case("json");
    let suffixed = !kind.is_empty()
        && subtype.len() > "+json".len()
        && subtype
            .get(subtype.len() - "+json".len()..)
            .is_some_and(|tail| tail.eq_ignore_ascii_case("+json"));
    if plain_json || suffixed {
        Ok(())
    } else {
        Err(refuse())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types() {
        for ct in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON;charset=UTF-8",
            "application/problem+json",
            "application/vnd.api+JSON; q=1",
        ] {
            assert!(
                check_content_type(Some(ct)).is_ok(),
                "{ct:?} should be rewritable JSON"
            );
        }
        for ct in [
            None,
            Some(""),
            Some("text/html"),
            Some("text/plain; charset=utf-8"),
            Some("application/jsonp"),
            Some("application/x-json-stream"),
            Some("application/+json"),
            Some("json"),
            Some("application/octet-stream"),
            Some("application/json-seq"),
        ] {
            assert!(
                matches!(
                    check_content_type(ct),
                    Err(RewriteError::UnsupportedContentType(_))
                ),
                "{ct:?} should be refused as not JSON"
            );
        }
    }

    #[test]
    fn encodings() {
        for ce in [None, Some(""), Some("identity"), Some(" Identity ")] {
            assert!(
                check_encoding(ce).is_ok(),
                "{ce:?} should mean an unencoded body"
            );
        }
        for ce in ["gzip", "br", "deflate", "zstd", "gzip, identity", "x-gzip"] {
            assert_eq!(
                check_encoding(Some(ce)),
                Err(RewriteError::UnsupportedEncoding(ce.to_owned())),
                "{ce:?} should be refused"
            );
        }
    }
}
