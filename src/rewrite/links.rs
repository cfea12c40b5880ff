//! Links that lead back through the gateway.
//!
//! Upstreams answer with absolute URLs to themselves: every list of Meta's
//! Graph API carries `paging.next` (`https://graph.facebook.com/v23.0/…?after=…`),
//! and a media item's `url` points at Meta's media host
//! (`https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=…`).
//! A client that follows one leaves the gateway: the request fails (it
//! holds no upstream credential) and, worse, it sends its own bearer token
//! (the staff member's gateway token, which an SDK pointed at the gateway
//! uses as its "access token") to the upstream's host.
//!
//! An upstream's `links` names the upstreams whose URLs in its answers are
//! turned into the gateway's: a string value that is such a URL gets its
//! origin (`scheme://host[:port]`) replaced by the gateway's public origin.
//! The path and query stay as they are; the gateway forwards paths as they
//! are, so the link reaches the same resource through the gateway's routes,
//! policy and audit (or its default deny).

use std::sync::Arc;

/// The origins whose links are rewritten (compiled from an upstream's
/// `links`), and the gateway's origin for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Links {
    origins: Arc<[Origin]>,
    /// `https://gateway.example` (no trailing slash), or empty: links become
    /// paths, which a client resolves against the URL it asked.
    public: Box<str>,
}

/// One upstream origin, spelled both ways a link may write it: with and
/// without its default port. Lower case; compared case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    short: Box<str>,
    long: Box<str>,
}

impl Origin {
    /// The origin of an upstream at `scheme://host:port` (`tls`: https).
    /// `host` as written in a URL (IPv6 in brackets).
    pub fn new(tls: bool, host: &str, port: u16) -> Origin {
        let scheme = if tls { "https" } else { "http" };
        let default_port = if tls { 443 } else { 80 };
        let host = host.to_ascii_lowercase();
        let long: Box<str> = format!("{scheme}://{host}:{port}").into();
        let short: Box<str> = if port == default_port {
            format!("{scheme}://{host}").into()
        } else {
            long.clone()
        };
        Origin { short, long }
    }

    /// `https://graph.facebook.com` (its default port left out).
    pub fn as_str(&self) -> &str {
        &self.short
    }

    /// How many bytes of `value` this origin spells, if `value` is a link
    /// to it (the origin followed by `/`, `?`, `#` or nothing).
    fn prefix_of(&self, value: &str) -> Option<usize> {
        [&self.long, &self.short].into_iter().find_map(|o| {
            let head = value.get(..o.len())?;
            let ends = matches!(
                value.as_bytes().get(o.len()),
                None | Some(b'/' | b'?' | b'#')
            );
            (ends && head.eq_ignore_ascii_case(o)).then_some(o.len())
        })
    }
}

impl Links {
    /// Links to `origins`, leading to `public` (an origin, or empty for
    /// paths).
    pub fn new(origins: Arc<[Origin]>, public: &str) -> Links {
        Links {
            origins,
            public: public.trim_end_matches('/').into(),
        }
    }

    /// Cheap test first: whether a raw JSON string token (quotes
    /// included, escapes not decoded) could be a link at all.
    pub fn may_hold(&self, raw: &[u8]) -> bool {
        raw.get(1..5)
            .is_some_and(|h| h.eq_ignore_ascii_case(b"http"))
            && !self.origins.is_empty()
    }

    /// `value` with its origin replaced, written to `out`, when it is a
    /// link to one of the origins; false (and `out` untouched) otherwise.
    pub fn rewrite_into(&self, value: &str, out: &mut String) -> bool {
        let Some(n) = self.origins.iter().find_map(|o| o.prefix_of(value)) else {
            return false;
        };
        let rest = &value[n..];
        out.push_str(&self.public);
        if self.public.is_empty() && !rest.starts_with('/') {
            out.push('/');
        }
        out.push_str(rest);
        true
    }

    /// The gateway's origin these links lead to (empty: paths).
    pub fn public(&self) -> &str {
        &self.public
    }
}

/// The gateway's origin as the client reached it, for one request: the
/// configured `network.public_url` when there is one; otherwise the scheme
/// the client used (`https` on a TLS listener, or what a trusted proxy
/// says in `X-Forwarded-Proto`) and the request's `Host`. `None` when the
/// host is missing or not a plain `host[:port]`: links then become paths.
pub fn public_origin(configured: Option<&str>, scheme: &str, host: Option<&str>) -> Option<String> {
    if let Some(c) = configured {
        return Some(c.trim_end_matches('/').to_string());
    }
    let host = host?;
    valid_authority(host).then(|| format!("{scheme}://{}", host.to_ascii_lowercase()))
}

/// A `Host` value that is a name or address with an optional port, and
/// nothing a client could use to smuggle a path or a user into a link.
fn valid_authority(host: &str) -> bool {
    let (name, port) = match host.rsplit_once(':') {
        Some((n, p)) if !n.contains(':') || n.ends_with(']') => (n, Some(p)),
        _ => (host, None),
    };
    let port_ok =
        port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    let name_ok = if let Some(inner) = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        !inner.is_empty()
            && inner
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
    } else {
        !name.is_empty()
            && name.len() <= 253
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    };
    port_ok && name_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(public: &str) -> Links {
        Links::new(
            vec![
                Origin::new(true, "graph.facebook.com", 443),
                Origin::new(true, "lookaside.fbsbx.com", 443),
                Origin::new(false, "127.0.0.1", 8081),
            ]
            .into(),
            public,
        )
    }

    fn through(links: &Links, value: &str) -> Option<String> {
        let mut out = String::new();
        links.rewrite_into(value, &mut out).then_some(out)
    }

    #[test]
    fn links_to_the_upstreams_lead_through_the_gateway() {
        let l = graph("https://wa.acme.example/");
        for (value, want) in [
            (
                "https://graph.facebook.com/v23.0/1234/message_templates?after=MjQZD",
                "https://wa.acme.example/v23.0/1234/message_templates?after=MjQZD",
            ),
            (
                "https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=1&ext=2",
                "https://wa.acme.example/whatsapp_business/attachments/?mid=1&ext=2",
            ),
            (
                "HTTPS://Graph.Facebook.com:443/v23.0/me",
                "https://wa.acme.example/v23.0/me",
            ),
            ("https://graph.facebook.com", "https://wa.acme.example"),
            (
                "https://graph.facebook.com?x=1",
                "https://wa.acme.example?x=1",
            ),
            ("http://127.0.0.1:8081/a", "https://wa.acme.example/a"),
        ] {
            assert_eq!(through(&l, value).as_deref(), Some(want), "{value}");
        }
    }

    #[test]
    fn other_links_and_look_alikes_stay() {
        let l = graph("https://wa.acme.example");
        for value in [
            "https://graph.facebook.com.evil.example/v23.0/me",
            "https://graph.facebook.comx/",
            "https://graph.facebook.com@evil.example/",
            "http://graph.facebook.com/v23.0/me",
            "https://www.facebook.com/v23.0/me",
            "http://127.0.0.1:80812/a",
            "http://127.0.0.1/a",
            "see https://graph.facebook.com/v23.0/me",
            "",
        ] {
            assert_eq!(through(&l, value), None, "{value}");
        }
    }

    #[test]
    fn without_a_public_origin_links_become_paths() {
        let l = graph("");
        assert_eq!(
            through(&l, "https://graph.facebook.com/v23.0/me?fields=id").as_deref(),
            Some("/v23.0/me?fields=id")
        );
        assert_eq!(
            through(&l, "https://graph.facebook.com?x=1").as_deref(),
            Some("/?x=1")
        );
        assert_eq!(
            through(&l, "https://graph.facebook.com").as_deref(),
            Some("/")
        );
    }

    #[test]
    fn the_public_origin_comes_from_config_or_the_request() {
        assert_eq!(
            public_origin(Some("https://wa.acme.example/"), "http", Some("x")).as_deref(),
            Some("https://wa.acme.example")
        );
        assert_eq!(
            public_origin(None, "https", Some("Gateway.Example:8443")).as_deref(),
            Some("https://gateway.example:8443")
        );
        assert_eq!(
            public_origin(None, "http", Some("[::1]:8080")).as_deref(),
            Some("http://[::1]:8080")
        );
        for bad in [
            "evil.example/path",
            "user@evil.example",
            "a b",
            "",
            "host:",
            "host:123456",
            "[zz]",
            "evil.example#",
            "evil.example?x",
            "::1",
        ] {
            assert_eq!(public_origin(None, "https", Some(bad)), None, "{bad:?}");
        }
        assert_eq!(public_origin(None, "https", None), None);
    }

    #[test]
    fn only_strings_that_start_like_a_url_are_decoded() {
        let l = graph("");
        assert!(l.may_hold(br#""https://graph.facebook.com/""#));
        assert!(l.may_hold(br#""https:\/\/graph.facebook.com\/""#));
        assert!(!l.may_hold(br#""call me at +44""#));
        assert!(l.may_hold(br#""HTTPS://GRAPH.FACEBOOK.COM""#));
        assert!(!l.may_hold(br#""htt""#));
    }
}
