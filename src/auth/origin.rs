//! Cross-site request forgery protection for tokens sent in a cookie.
//!
//! A browser attaches a cookie to every request to its site, including the
//! ones another site makes it send: a form posted from `evil.example` to
//! the gateway carries the staff member's token cookie. (A token in the
//! `Authorization` header is not ambient: another site cannot add that
//! header without a CORS preflight, which the gateway never grants.) So a
//! request that changes something (any method but GET, HEAD and OPTIONS),
//! or opens a WebSocket (another site's page could read the stream), and
//! authenticates with the cookie must show it came from a page of the
//! gateway's own origin, or of one listed in `auth.cookie_origins`:
//!
//! 1. `Sec-Fetch-Site` (sent by every current browser): `same-origin` and
//!    `none` (typed by the user) pass; anything else passes only with an
//!    `Origin` that is trusted.
//! 2. Without it (an older browser, or not a browser at all): no `Origin`
//!    passes (nothing a browser sends cross-site lacks one on these
//!    methods), an `Origin` naming the request's own host passes, and so
//!    does a trusted one.
//!
//! A read (GET, HEAD) that another site's page makes the browser send
//! with the cookie (an `<img>`, a `<script>`, a `fetch`) is refused too,
//! unless it is the browser's own navigation (a link followed) or comes
//! from a trusted origin ([`check_cross_site_read`]). That page could not
//! read the answer, but the request would still count: audited under the
//! staff member's name, spending their rate limit (an export a minute
//! from a hidden `<img>`), and a `<script>` could include a JSON answer.

use http::header::{HeaderMap, HOST, ORIGIN};
use http::HeaderName;

const SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");
const SEC_FETCH_MODE: HeaderName = HeaderName::from_static("sec-fetch-mode");
const SEC_FETCH_DEST: HeaderName = HeaderName::from_static("sec-fetch-dest");

/// Origins (`https://crm.acme-retail.example`) whose pages may send
/// cookie-authenticated changes, besides the gateway's own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedOrigins(Vec<String>);

impl TrustedOrigins {
    /// Origins as [`parse_origin`] returns them.
    pub fn new(origins: Vec<String>) -> Self {
        TrustedOrigins(origins)
    }

    /// Trust these too (origins whose pages `cors` lets send the cookie).
    pub fn extend<'a>(&mut self, more: impl IntoIterator<Item = &'a str>) {
        for o in more {
            if !self.contains(o) {
                self.0.push(o.to_string());
            }
        }
    }

    fn contains(&self, origin: &str) -> bool {
        self.0.iter().any(|o| o.eq_ignore_ascii_case(origin))
    }
}

/// A bare `http(s)://host[:port]`, in the form browsers send it in
/// `Origin`: lower case, without a default port.
pub fn parse_origin(text: &str) -> Result<String, String> {
    let bad = |why: &str| {
        format!("`{text}` is not an origin ({why}; use https://host or https://host:port)")
    };
    let uri: http::Uri = text.parse().map_err(|_| bad("not a URL"))?;
    let scheme = uri.scheme_str().map(str::to_ascii_lowercase);
    let default_port = match scheme.as_deref() {
        Some("https") => 443,
        Some("http") => 80,
        _ => return Err(bad("the scheme must be http or https")),
    };
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(bad("it has a path or query"));
    }
    let authority = uri.authority().ok_or_else(|| bad("no host"))?;
    if authority.as_str().contains('@') {
        return Err(bad("it has user information"));
    }
    let host = authority.host().to_ascii_lowercase();
    let scheme = scheme.unwrap_or_default();
    Ok(match authority.port_u16() {
        Some(p) if p != default_port => format!("{scheme}://{host}:{p}"),
        _ => format!("{scheme}://{host}"),
    })
}

/// `Err(why)` when a cookie-authenticated request may have been sent by
/// another site's page. The caller decides which requests need asking
/// (changes, WebSocket handshakes). `authority` is the request's
/// `:authority` (HTTP/2); HTTP/1.1 has `Host` instead.
pub fn check_same_origin(
    headers: &HeaderMap,
    authority: Option<&str>,
    trusted: &TrustedOrigins,
) -> Result<(), String> {
    let origin = headers.get(ORIGIN).map(|v| v.to_str().unwrap_or("?"));
    let is_trusted = origin.is_some_and(|o| trusted.contains(o));
    match headers.get(SEC_FETCH_SITE).map(|v| v.as_bytes()) {
        Some(b"same-origin" | b"none") => return Ok(()),
        Some(site) if !is_trusted => {
            return Err(format!(
                "Sec-Fetch-Site {} with the token cookie",
                String::from_utf8_lossy(site)
            ))
        }
        Some(_) => return Ok(()),
        None => {}
    }
    let Some(origin) = origin else {
        return Ok(());
    };
    let host = authority.or_else(|| headers.get(HOST).and_then(|v| v.to_str().ok()));
    let own = host.is_some_and(|h| {
        origin
            .split_once("://")
            .is_some_and(|(_, o)| o.eq_ignore_ascii_case(h))
    });
    if own || is_trusted {
        return Ok(());
    }
    Err("Origin is neither this host nor a trusted origin, with the token cookie".to_string())
}

/// `Err(why)` when a cookie-authenticated read was sent by another site's
/// page, as its browser says (`Sec-Fetch-Site`): `same-origin` and `none`
/// pass, and so does the browser's own navigation (a link followed, not an
/// `<object>` or `<embed>`) and a request whose `Origin` is trusted (a
/// trusted page's `fetch`, or an element marked `crossorigin`). A request
/// without `Sec-Fetch-Site` passes: an older browser sends no `Origin` on
/// an `<img>` either, so nothing would tell its page's site.
pub fn check_cross_site_read(headers: &HeaderMap, trusted: &TrustedOrigins) -> Result<(), String> {
    let site = match headers.get(SEC_FETCH_SITE).map(|v| v.as_bytes()) {
        None | Some(b"same-origin" | b"none") => return Ok(()),
        Some(site) => site,
    };
    let navigation = headers
        .get(SEC_FETCH_MODE)
        .is_some_and(|m| m.as_bytes() == b"navigate")
        && !headers
            .get(SEC_FETCH_DEST)
            .is_some_and(|d| matches!(d.as_bytes(), b"object" | b"embed"));
    let origin_trusted = headers
        .get(ORIGIN)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|o| trusted.contains(o));
    if navigation || origin_trusted {
        return Ok(());
    }
    Err(format!(
        "Sec-Fetch-Site {} read with the token cookie, neither a navigation nor from a trusted origin",
        String::from_utf8_lossy(site)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_support::header_map as headers;

    fn trusted() -> TrustedOrigins {
        TrustedOrigins::new(vec![
            parse_origin("https://CRM.acme-retail.example:443/").unwrap()
        ])
    }

    fn post(pairs: &[(&str, &str)]) -> Result<(), String> {
        check_same_origin(&headers(pairs), None, &trusted())
    }

    #[test]
    fn browsers_saying_where_a_request_came_from_are_believed() {
        assert!(post(&[("sec-fetch-site", "same-origin")]).is_ok());
        assert!(post(&[("sec-fetch-site", "none")]).is_ok());
        for site in ["cross-site", "same-site", "something-new"] {
            let got = post(&[("sec-fetch-site", site), ("origin", "https://evil.example")]);
            assert!(got.is_err(), "{site}");
            // Sec-Fetch-Site wins over an Origin that names this host.
            let got = post(&[
                ("sec-fetch-site", site),
                ("host", "gw.example"),
                ("origin", "https://gw.example"),
            ]);
            assert!(got.is_err(), "{site}");
        }
        let from_crm = post(&[
            ("sec-fetch-site", "same-site"),
            ("origin", "https://crm.acme-retail.example"),
        ]);
        assert!(from_crm.is_ok(), "a trusted origin: {from_crm:?}");
    }

    #[test]
    fn without_sec_fetch_site_the_origin_must_be_this_host_or_trusted() {
        assert!(post(&[]).is_ok(), "not a browser");
        assert!(post(&[
            ("host", "gw.example:8443"),
            ("origin", "https://GW.example:8443")
        ])
        .is_ok());
        assert!(post(&[
            ("host", "gw.example"),
            ("origin", "https://gw.example:8443")
        ])
        .is_err());
        assert!(post(&[("host", "gw.example"), ("origin", "https://evil.example")]).is_err());
        assert!(post(&[("host", "gw.example"), ("origin", "null")]).is_err());
        assert!(post(&[("origin", "https://crm.acme-retail.example")]).is_ok());
        let h2 = check_same_origin(
            &headers(&[("origin", "https://gw.example")]),
            Some("gw.example"),
            &trusted(),
        );
        assert!(h2.is_ok(), "HTTP/2 names the host in :authority");
    }

    #[test]
    fn a_cross_site_read_passes_only_as_a_navigation_or_from_a_trusted_origin() {
        let read = |pairs: &[(&str, &str)]| check_cross_site_read(&headers(pairs), &trusted());
        assert!(read(&[]).is_ok(), "not a browser, or one that does not say");
        assert!(read(&[("sec-fetch-site", "same-origin")]).is_ok());
        assert!(read(&[("sec-fetch-site", "none"), ("sec-fetch-mode", "navigate")]).is_ok());
        for site in ["cross-site", "same-site"] {
            let link = [
                ("sec-fetch-site", site),
                ("sec-fetch-mode", "navigate"),
                ("sec-fetch-dest", "document"),
            ];
            assert!(read(&link).is_ok(), "{site}: a link followed");
            let image = [
                ("sec-fetch-site", site),
                ("sec-fetch-mode", "no-cors"),
                ("sec-fetch-dest", "image"),
            ];
            assert!(read(&image).is_err(), "{site}: an <img>");
            let embed = [
                ("sec-fetch-site", site),
                ("sec-fetch-mode", "navigate"),
                ("sec-fetch-dest", "embed"),
            ];
            assert!(read(&embed).is_err(), "{site}: an <embed>");
            let fetch = |origin| {
                read(&[
                    ("sec-fetch-site", site),
                    ("sec-fetch-mode", "cors"),
                    ("sec-fetch-dest", "empty"),
                    ("origin", origin),
                ])
            };
            assert!(fetch("https://evil.example").is_err(), "{site}");
            assert!(fetch("https://crm.acme-retail.example").is_ok(), "{site}");
        }
    }

    #[test]
    fn trusted_origins_are_bare_origins() {
        assert_eq!(
            parse_origin("http://localhost:3000").unwrap(),
            "http://localhost:3000"
        );
        assert_eq!(
            parse_origin("https://A.example:443").unwrap(),
            "https://a.example"
        );
        for bad in [
            "crm.example",
            "ftp://crm.example",
            "https://crm.example/app",
            "https://crm.example?x=1",
            "https://user@crm.example",
        ] {
            assert!(parse_origin(bad).is_err(), "{bad}");
        }
    }
}
