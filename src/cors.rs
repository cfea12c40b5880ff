//! Cross-origin resource sharing, decided by the gateway alone.
//!
//! A browser lets a page of one site read another site's response only
//! when the response says so (`Access-Control-Allow-Origin`), and asks
//! first (a preflight: `OPTIONS` with `Access-Control-Request-Method`)
//! before it sends a request a plain form could not. Left to the upstream,
//! its answer would decide who may read what the gateway had filtered: an
//! upstream that reflected any `Origin` with credentials would let any
//! site read a staff member's cookie-authenticated responses. So the
//! upstream's `Access-Control-*` headers never reach a client, and the
//! gateway answers for itself:
//!
//! - a preflight from a listed origin, for a route that takes the method
//!   it asks about and with request headers the policy allows, is answered
//!   `204` by the gateway (never forwarded, never rate-limited); any other
//!   preflight is refused;
//! - a response to a listed origin's request carries the `Access-Control-*`
//!   headers that let that page read it, refusals included (a page must be
//!   able to read a 401 to sign in again, a 429's `Retry-After`);
//! - every response says `Vary: Origin`, so a cache does not hand one
//!   origin's answer to another.
//!
//! A preflight carries no credentials, so answering one decides nothing
//! about the caller: the request that follows is authenticated and
//! decided like any other.

use std::time::Duration;

use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
    ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, ORIGIN, VARY,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method};

/// Request headers a page may always send: the token, and the
/// CORS-safelisted ones (a browser names those in a preflight when their
/// values are not safelisted, `Content-Type: application/json` above all).
pub const ALWAYS_ALLOWED_HEADERS: &[&str] = &[
    "authorization",
    "content-type",
    "accept",
    "accept-language",
    "content-language",
];

/// Response headers a page may always read besides the safelisted ones:
/// the request id to quote, the step-up challenge of a 401 and a 429's
/// wait.
pub const ALWAYS_EXPOSED_HEADERS: &[&str] = &["x-request-id", "www-authenticate", "retry-after"];

/// How long a browser may reuse a preflight's answer, unless `max_age`
/// says otherwise.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(600);

/// The longest `max_age`: Firefox caps it at a day (Chromium at two hours).
pub const MAX_MAX_AGE: Duration = Duration::from_secs(86_400);

/// The rule an audit record names for an origin not listed.
pub const ORIGINS_RULE: &str = "cors.origins";
/// The rule an audit record names for a request header not allowed.
pub const HEADERS_RULE: &str = "cors.allow_headers";
/// The rule an audit record names for a preflight answered.
pub const PREFLIGHT_RULE: &str = "cors";

const PREFLIGHT_VARY: HeaderValue = HeaderValue::from_static(
    "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
);
const ORIGIN_VARY: HeaderValue = HeaderValue::from_static("Origin");
const TRUE: HeaderValue = HeaderValue::from_static("true");

/// The `cors` section, compiled.
#[derive(Debug, Clone)]
pub struct CorsPolicy {
    /// Bare origins as browsers send them (`https://crm.example`), each
    /// the exact value answered in `Access-Control-Allow-Origin`.
    origins: Vec<HeaderValue>,
    /// Pages of these origins may send the token cookie and read what it
    /// gets them.
    credentials: bool,
    /// Lower case, [`ALWAYS_ALLOWED_HEADERS`] first.
    allow_headers: Vec<HeaderName>,
    expose_headers: HeaderValue,
    max_age: HeaderValue,
}

/// Why a preflight was refused: the rule, and the detail for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreflightRefusal {
    pub rule: &'static str,
    pub detail: String,
}

impl CorsPolicy {
    /// `origins` as [`crate::auth::origin::parse_origin`] returns them;
    /// `allow_headers` and `expose_headers` beyond the ones always
    /// allowed and exposed.
    pub fn new(
        origins: Vec<String>,
        credentials: bool,
        allow_headers: Vec<HeaderName>,
        expose_headers: Vec<HeaderName>,
        max_age: Duration,
    ) -> Result<CorsPolicy, String> {
        let origins = origins
            .iter()
            .map(|o| HeaderValue::from_str(o).map_err(|_| format!("`{o}` is not a header value")))
            .collect::<Result<Vec<_>, _>>()?;
        let mut allowed: Vec<HeaderName> = ALWAYS_ALLOWED_HEADERS
            .iter()
            .map(|h| HeaderName::from_static(h))
            .collect();
        for h in allow_headers {
            if !allowed.contains(&h) {
                allowed.push(h);
            }
        }
        let mut exposed: Vec<&str> = ALWAYS_EXPOSED_HEADERS.to_vec();
        for h in &expose_headers {
            if !exposed.contains(&h.as_str()) {
                exposed.push(h.as_str());
            }
        }
        let expose_headers = HeaderValue::from_str(&exposed.join(", "))
            .map_err(|_| "expose_headers do not form a header value".to_string())?;
        let max_age = HeaderValue::from(max_age.as_secs());
        Ok(CorsPolicy {
            origins,
            credentials,
            allow_headers: allowed,
            expose_headers,
            max_age,
        })
    }

    /// Whether pages of the listed origins may send the token cookie.
    pub fn credentials(&self) -> bool {
        self.credentials
    }

    /// The listed origins, as answered.
    pub fn origins(&self) -> impl Iterator<Item = &str> {
        self.origins.iter().filter_map(|o| o.to_str().ok())
    }

    /// The listed origin a request comes from, as it is answered.
    fn listed(&self, headers: &HeaderMap) -> Option<&HeaderValue> {
        let origin = headers.get(ORIGIN)?.as_bytes();
        self.origins
            .iter()
            .find(|o| o.as_bytes().eq_ignore_ascii_case(origin))
    }

    /// Whether a preflight may be answered: its origin is listed and every
    /// header it asks to send is allowed. (Whether a route takes the method
    /// it asks about is the route table's question.)
    pub fn check_preflight(&self, headers: &HeaderMap) -> Result<(), PreflightRefusal> {
        if self.listed(headers).is_none() {
            let origin = headers
                .get(ORIGIN)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .unwrap_or_default();
            return Err(PreflightRefusal {
                rule: ORIGINS_RULE,
                detail: format!("preflight from origin `{origin}`, which is not listed"),
            });
        }
        for name in requested_headers(headers) {
            let allowed = self
                .allow_headers
                .iter()
                .any(|h| h.as_str().as_bytes().eq_ignore_ascii_case(name.as_bytes()));
            if !allowed {
                return Err(PreflightRefusal {
                    rule: HEADERS_RULE,
                    detail: format!("preflight asks to send header `{name}`, which is not allowed"),
                });
            }
        }
        Ok(())
    }

    /// The headers of the answer to a preflight that
    /// [`check_preflight`](Self::check_preflight) passed.
    pub fn preflight_headers(&self, headers: &HeaderMap) -> Vec<(HeaderName, HeaderValue)> {
        let mut out = Vec::with_capacity(7);
        if let Some(origin) = self.listed(headers) {
            out.push((ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone()));
            if self.credentials {
                out.push((ACCESS_CONTROL_ALLOW_CREDENTIALS, TRUE));
            }
            if let Some(method) = headers.get(ACCESS_CONTROL_REQUEST_METHOD) {
                out.push((ACCESS_CONTROL_ALLOW_METHODS, method.clone()));
            }
            let asked: Vec<String> = requested_headers(headers)
                .map(|h| h.to_ascii_lowercase())
                .collect();
            if let Ok(v) = HeaderValue::from_str(&asked.join(", ")) {
                if !asked.is_empty() {
                    out.push((ACCESS_CONTROL_ALLOW_HEADERS, v));
                }
            }
            out.push((ACCESS_CONTROL_MAX_AGE, self.max_age.clone()));
        }
        out.push((VARY, PREFLIGHT_VARY));
        out
    }

    /// The headers any other response gets: `Vary: Origin`, and for a
    /// listed origin's request, what lets its page read the response. A
    /// preflight refused gets nothing more: no grant, whoever asked.
    pub fn response_headers(
        &self,
        method: &Method,
        headers: &HeaderMap,
    ) -> Vec<(HeaderName, HeaderValue)> {
        let mut out = Vec::with_capacity(4);
        let listed = match preflight_method(method, headers) {
            Some(_) => None,
            None => self.listed(headers),
        };
        if let Some(origin) = listed {
            out.push((ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone()));
            if self.credentials {
                out.push((ACCESS_CONTROL_ALLOW_CREDENTIALS, TRUE));
            }
            out.push((ACCESS_CONTROL_EXPOSE_HEADERS, self.expose_headers.clone()));
        }
        out.push((VARY, ORIGIN_VARY));
        out
    }
}

/// The method a browser's preflight asks about: `None` when the request is
/// not a preflight (not `OPTIONS`, or without `Origin` or
/// `Access-Control-Request-Method`), `Some(Err)` when the method named is
/// not one.
pub fn preflight_method(method: &Method, headers: &HeaderMap) -> Option<Result<Method, String>> {
    if method != Method::OPTIONS || !headers.contains_key(ORIGIN) {
        return None;
    }
    let asked = headers.get(ACCESS_CONTROL_REQUEST_METHOD)?;
    Some(Method::from_bytes(asked.as_bytes()).map_err(|_| {
        format!(
            "Access-Control-Request-Method `{}` is not a method",
            String::from_utf8_lossy(asked.as_bytes())
        )
    }))
}

/// The header names a preflight asks to send (every
/// `Access-Control-Request-Headers` field, comma-separated). A value that
/// is not text names one header no policy allows.
fn requested_headers(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(ACCESS_CONTROL_REQUEST_HEADERS)
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("\u{fffd}").split(','))
        .map(str::trim)
        .filter(|h| !h.is_empty())
}

/// Whether a response header is a CORS answer (`Access-Control-*`): the
/// upstream's are never passed on.
pub fn is_cors_header(name: &HeaderName) -> bool {
    name.as_str().starts_with("access-control-")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(credentials: bool) -> CorsPolicy {
        CorsPolicy::new(
            vec!["https://crm.acme-retail.example".into()],
            credentials,
            vec![HeaderName::from_static("x-requested-with")],
            vec![HeaderName::from_static("x-total-count")],
            DEFAULT_MAX_AGE,
        )
        .unwrap()
    }

    use crate::test_support::header_map as headers;

    fn get<'a>(out: &'a [(HeaderName, HeaderValue)], name: &str) -> Option<&'a str> {
        out.iter()
            .find(|(n, _)| n.as_str() == name)
            .and_then(|(_, v)| v.to_str().ok())
    }

    #[test]
    fn a_preflight_is_options_with_an_origin_and_a_method_asked() {
        let asked = |m: &Method, pairs: &[(&str, &str)]| preflight_method(m, &headers(pairs));
        let full = [
            ("origin", "https://crm.acme-retail.example"),
            ("access-control-request-method", "POST"),
        ];
        assert_eq!(asked(&Method::OPTIONS, &full), Some(Ok(Method::POST)));
        assert_eq!(asked(&Method::GET, &full), None);
        assert_eq!(asked(&Method::OPTIONS, &full[..1]), None);
        assert_eq!(asked(&Method::OPTIONS, &full[1..]), None);
        let bad = [
            ("origin", "https://crm.acme-retail.example"),
            ("access-control-request-method", "PO ST"),
        ];
        assert!(matches!(asked(&Method::OPTIONS, &bad), Some(Err(_))));
    }

    #[test]
    fn only_listed_origins_and_allowed_headers_pass_a_preflight() {
        let p = policy(true);
        let ok = headers(&[
            ("origin", "https://CRM.acme-retail.example"),
            ("access-control-request-method", "POST"),
            (
                "access-control-request-headers",
                "Authorization,content-type, x-requested-with",
            ),
        ]);
        assert_eq!(p.check_preflight(&ok), Ok(()));
        let out = p.preflight_headers(&ok);
        // The listed spelling is answered, not the client's.
        assert_eq!(
            get(&out, "access-control-allow-origin"),
            Some("https://crm.acme-retail.example")
        );
        assert_eq!(get(&out, "access-control-allow-credentials"), Some("true"));
        assert_eq!(get(&out, "access-control-allow-methods"), Some("POST"));
        assert_eq!(
            get(&out, "access-control-allow-headers"),
            Some("authorization, content-type, x-requested-with")
        );
        assert_eq!(get(&out, "access-control-max-age"), Some("600"));

        for origin in [
            "https://evil.example",
            "https://crm.acme-retail.example.evil.example",
            "http://crm.acme-retail.example",
            "null",
        ] {
            let h = headers(&[("origin", origin), ("access-control-request-method", "GET")]);
            let refusal = p.check_preflight(&h).unwrap_err();
            assert_eq!(refusal.rule, ORIGINS_RULE, "{origin}");
            assert_eq!(
                get(&p.preflight_headers(&h), "access-control-allow-origin"),
                None
            );
        }
        let h = headers(&[
            ("origin", "https://crm.acme-retail.example"),
            ("access-control-request-method", "GET"),
            (
                "access-control-request-headers",
                "authorization, x-chatwarden-sub",
            ),
        ]);
        let refusal = p.check_preflight(&h).unwrap_err();
        assert_eq!(refusal.rule, HEADERS_RULE);
        assert!(
            refusal.detail.contains("x-chatwarden-sub"),
            "{}",
            refusal.detail
        );
    }

    #[test]
    fn responses_let_only_a_listed_origin_read_them() {
        let p = policy(false);
        let app = [("origin", "https://crm.acme-retail.example")];
        let out = p.response_headers(&Method::GET, &headers(&app));
        assert_eq!(
            get(&out, "access-control-allow-origin"),
            Some("https://crm.acme-retail.example")
        );
        assert_eq!(get(&out, "access-control-allow-credentials"), None);
        assert_eq!(
            get(&out, "access-control-expose-headers"),
            Some("x-request-id, www-authenticate, retry-after, x-total-count")
        );
        assert_eq!(get(&out, "vary"), Some("Origin"));

        for h in [
            headers(&[("origin", "https://evil.example")]),
            HeaderMap::new(),
        ] {
            let out = p.response_headers(&Method::GET, &h);
            assert_eq!(out.len(), 1, "{out:?}");
            assert_eq!(get(&out, "vary"), Some("Origin"));
        }
        assert_eq!(
            get(
                &policy(true).response_headers(&Method::GET, &headers(&app)),
                "access-control-allow-credentials"
            ),
            Some("true")
        );
    }

    #[test]
    fn upstream_cors_headers_are_recognised() {
        assert!(is_cors_header(&ACCESS_CONTROL_ALLOW_ORIGIN));
        assert!(is_cors_header(&HeaderName::from_static(
            "access-control-allow-private-network"
        )));
        assert!(!is_cors_header(&VARY));
    }
}
