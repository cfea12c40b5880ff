//! Method overrides: a request that asks the upstream to treat it as
//! another method.
//!
//! Many web frameworks let a POST stand in for another method: Rails and
//! every Rack app (`Rack::MethodOverride`, on by default in a full Rails
//! app such as Chatwoot) read a `_method` form field or an
//! `X-HTTP-Method-Override` header; Laravel, Symfony and Spring read
//! `_method`; ASP.NET and many Java stacks read `X-HTTP-Method(-Override)`.
//! The gateway decides on the method it sees, so an override would let a
//! caller allowed to `POST /contacts` (create one) run `GET /contacts` (the
//! whole list, outside the masking its list route applies) or a `DELETE`
//! nobody granted. What is checked must be what the upstream does: a request
//! carrying an override is refused (400 `bad_request`), whichever way it
//! carries it.
//!
//! - [`header_override`]: the override headers, on any method but GET and
//!   HEAD (on those they are only dropped, with every other header the
//!   upstream must not see).
//! - [`query_override`]: a query parameter the upstream reads as one
//!   (`upstreams.<name>.method_override_params`, `_method` by default).
//! - [`FormScan`]: the same parameter in a form body (urlencoded or
//!   multipart), found as the body streams: the upstream never receives a
//!   whole request that carries it. A form the gateway cannot read as it
//!   streams (a `Content-Encoding`, two multipart boundaries) is refused
//!   ([`form_body`]).
//!
//! Parameter names are matched as a form parser would decode them
//! (percent-encoding, `+`, quoted and RFC 2231 multipart names) and also
//! as the first part of a nested name (`_method[x]`): stricter than any
//! one framework, never looser.

use http::{HeaderMap, HeaderName};

use super::normalize::decode_escape;

/// Headers that ask for another method.
pub static OVERRIDE_HEADERS: [HeaderName; 3] = [
    HeaderName::from_static("x-http-method-override"),
    HeaderName::from_static("x-http-method"),
    HeaderName::from_static("x-method-override"),
];

/// The longest override parameter name a config may list.
pub const MAX_PARAM_LEN: usize = 32;

/// The override header `headers` carry, if any, also under a name with
/// `_` for `-` (a server mapping headers to CGI names reads
/// `X_HTTP_Method_Override` as the same header).
pub fn header_override(headers: &HeaderMap) -> Option<&'static str> {
    let named = OVERRIDE_HEADERS
        .iter()
        .find(|h| headers.contains_key(*h))
        .map(HeaderName::as_str);
    named.or_else(|| {
        headers
            .keys()
            .filter(|k| k.as_str().contains('_'))
            .find_map(|k| {
                let dashed = k.as_str().replace('_', "-");
                OVERRIDE_HEADERS
                    .iter()
                    .find(|h| h.as_str() == dashed)
                    .map(HeaderName::as_str)
            })
    })
}

/// The override parameter (one of `params`) named in a query string.
pub fn query_override<'p>(query: &str, params: &'p [String]) -> Option<&'p str> {
    if params.is_empty() {
        return None;
    }
    let mut keys = UrlencodedKeys::default();
    keys.feed(query.as_bytes(), params)
        .or_else(|| keys.finish(params))
}

/// How a request body is read for method override parameters.
#[derive(Debug)]
pub enum FormBody {
    /// Not a body a form parser reads (JSON, say), or nothing to look for.
    NotAForm,
    /// A form: scan it as it streams.
    Scan(FormScan),
    /// A form the gateway cannot read as it streams; refused before
    /// anything is forwarded.
    Unreadable(&'static str),
}

/// How the body of a `method` request with `headers` is read for
/// `params`. Content types are read as Rack reads them: repeated
/// `Content-Type` fields joined with `, ` (as an HTTP/1 server joins
/// them), the media type up to the first `;` or `,`, a POST without one
/// read as a urlencoded form, every `multipart/*` as multipart, and the
/// boundary from any `boundary=` in the value (Rack takes the last; a value
/// with two different ones is unreadable).
pub fn form_body(method: &http::Method, headers: &HeaderMap, params: &[String]) -> FormBody {
    if params.is_empty() {
        return FormBody::NotAForm;
    }
    let mut types = headers.get_all(http::header::CONTENT_TYPE).iter();
    let joined = match types.next() {
        None => None,
        Some(first) => {
            let mut text = String::from_utf8_lossy(first.as_bytes()).into_owned();
            for more in types {
                text.push_str(", ");
                text.push_str(&String::from_utf8_lossy(more.as_bytes()));
            }
            Some(text)
        }
    };
    let encoded = headers
        .get_all(http::header::CONTENT_ENCODING)
        .iter()
        .any(|v| !v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"identity"));
    form_body_of(
        joined.as_deref(),
        *method == http::Method::POST,
        encoded,
        params,
    )
}

fn form_body_of(
    content_type: Option<&str>,
    post: bool,
    encoded: bool,
    params: &[String],
) -> FormBody {
    if params.is_empty() {
        return FormBody::NotAForm;
    }
    // The media type, up to the first `;` or `,`. Rack reads an empty
    // Content-Type as none, and a POST without one as a form; an empty
    // media type before parameters (`; charset=…`) is read so too, which
    // is stricter than Rack.
    let media = content_type.map(|ct| ct.split([';', ',']).next().unwrap_or_default().trim());
    let kind = match (content_type, media) {
        (None, _) | (_, Some("")) if post => Kind::Urlencoded(UrlencodedKeys::default()),
        (None, _) | (_, None) | (_, Some("")) => return FormBody::NotAForm,
        (Some(ct), Some(media)) => {
            if media.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
                Kind::Urlencoded(UrlencodedKeys::default())
            } else if media
                .get(..10)
                .is_some_and(|m| m.eq_ignore_ascii_case("multipart/"))
            {
                let mut found = boundaries(ct);
                found.dedup();
                match found.as_slice() {
                    [] => return FormBody::Unreadable("a multipart body without a boundary"),
                    [one] => Kind::Multipart(Multipart::new(one.clone())),
                    _ => return FormBody::Unreadable("a multipart body with two boundaries"),
                }
            } else {
                return FormBody::NotAForm;
            }
        }
    };
    if encoded {
        return FormBody::Unreadable("a form body with a Content-Encoding");
    }
    FormBody::Scan(FormScan {
        params: params.to_vec(),
        kind,
    })
}

/// Every `boundary=` value in a content type, anywhere in it and in any
/// case (as Rack's pattern finds it), unquoted and trimmed, sorted.
fn boundaries(content_type: &str) -> Vec<String> {
    let lower = content_type.to_ascii_lowercase();
    let mut out: Vec<String> = lower
        .match_indices("boundary=")
        .filter_map(|(at, key)| {
            let rest = &content_type[at + key.len()..];
            let rest = rest.strip_prefix('"').unwrap_or(rest);
            let end = rest.find(['"', ';', ',']).unwrap_or(rest.len());
            let value = rest[..end].trim();
            (!value.is_empty()).then(|| value.to_string())
        })
        .collect();
    out.sort();
    out
}

/// Whether `name`, as decoded, names one of `params`, as Rack 2 reads a
/// parameter name: brackets before it are skipped, and it ends at the
/// next bracket (`[_method]`, `_method]`, `_method[x]` all name
/// `_method`). Rack 3 is stricter; reading names the older way refuses
/// more, never less.
fn names_param<'p>(name: &[u8], params: &'p [String]) -> Option<&'p str> {
    let start = name
        .iter()
        .position(|b| !matches!(b, b'[' | b']'))
        .unwrap_or(name.len());
    let rest = &name[start..];
    let end = rest
        .iter()
        .position(|b| matches!(b, b'[' | b']'))
        .unwrap_or(rest.len());
    let key = &rest[..end];
    params
        .iter()
        .find(|p| p.as_bytes() == key)
        .map(String::as_str)
}

/// Percent-decodes `raw` (`+` as a space when `plus`); an invalid escape
/// is kept as it is, as form parsers do.
pub(crate) fn percent_decode(raw: &[u8], plus: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'%' => match decode_escape(raw, i) {
                Some(byte) => {
                    out.push(byte);
                    i += 3;
                    continue;
                }
                None => out.push(b'%'),
            },
            b'+' if plus => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    out
}

/// Keys of an `application/x-www-form-urlencoded` text fed in pieces.
/// Separators are `&` and `;` (older Rack splits on both), and spaces after
/// a separator are skipped (as Rack 2 does).
#[derive(Debug, Default)]
struct UrlencodedKeys {
    key: Vec<u8>,
    /// The key so far is longer than any encoded parameter name can be.
    long: bool,
    /// Between `=` and the next separator.
    in_value: bool,
}

impl UrlencodedKeys {
    /// The longest raw key that can decode to a parameter name (each byte
    /// percent-encoded), plus the `[` that may follow it, encoded too.
    const MAX_RAW_KEY: usize = 3 * (MAX_PARAM_LEN + 1);

    fn feed<'p>(&mut self, bytes: &[u8], params: &'p [String]) -> Option<&'p str> {
        for &b in bytes {
            match b {
                b'&' | b';' => {
                    if let Some(found) = self.end_key(params) {
                        return Some(found);
                    }
                    self.in_value = false;
                }
                _ if self.in_value => {}
                b'=' => {
                    if let Some(found) = self.end_key(params) {
                        return Some(found);
                    }
                    self.in_value = true;
                }
                b' ' if self.key.is_empty() && !self.long => {}
                _ if self.long => {}
                _ => {
                    if self.key.len() == Self::MAX_RAW_KEY {
                        self.long = true;
                        self.key.clear();
                    } else {
                        self.key.push(b);
                    }
                }
            }
        }
        None
    }

    /// The text ended: its last key counts too.
    fn finish<'p>(&mut self, params: &'p [String]) -> Option<&'p str> {
        let found = if self.in_value {
            None
        } else {
            self.end_key(params)
        };
        self.in_value = false;
        found
    }

    fn end_key<'p>(&mut self, params: &'p [String]) -> Option<&'p str> {
        let found = if self.long || self.key.is_empty() {
            None
        } else {
            names_param(&percent_decode(&self.key, true), params)
        };
        self.key.clear();
        self.long = false;
        found
    }
}

/// The longest multipart part head read; a longer one is refused (form
/// parsers cap it too, and the gateway will not forward what it could not
/// read).
const MAX_PART_HEAD: usize = 16 * 1024;

/// A form body's override parameter, found as the body streams.
#[derive(Debug)]
pub struct FormScan {
    params: Vec<String>,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Urlencoded(UrlencodedKeys),
    Multipart(Multipart),
}

/// What a form body scan found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// A field named as this override parameter.
    Param(String),
    /// A multipart part head longer than the gateway reads.
    UnreadablePart,
}

impl FormScan {
    /// Reads the next piece of the body (`end`: its last).
    pub fn feed(&mut self, piece: &[u8], end: bool) -> Option<Found> {
        let params = &self.params;
        let found = match &mut self.kind {
            Kind::Urlencoded(keys) => {
                let found = keys.feed(piece, params);
                let found = if found.is_none() && end {
                    keys.finish(params)
                } else {
                    found
                };
                found.map(|p| Found::Param(p.to_string()))
            }
            Kind::Multipart(m) => m.feed(piece, params),
        };
        found
    }
}

/// Multipart part heads, found between a delimiter line and the blank line
/// after it. Every occurrence of the delimiter counts, wherever it is: a
/// parser may not agree on preambles, and reading more heads than there
/// are is only stricter.
#[derive(Debug)]
struct Multipart {
    /// `--` and the boundary.
    delimiter: Vec<u8>,
    /// Bytes not yet settled: while looking for a delimiter, the end of the
    /// last piece (a delimiter may span two); inside a head, the head so far.
    pending: Vec<u8>,
    in_head: bool,
    /// How much of a head has been searched for its end already.
    searched: usize,
}

impl Multipart {
    fn new(boundary: String) -> Multipart {
        let mut delimiter = b"--".to_vec();
        delimiter.extend_from_slice(boundary.as_bytes());
        Multipart {
            delimiter,
            pending: Vec::new(),
            in_head: false,
            searched: 0,
        }
    }

    fn feed(&mut self, piece: &[u8], params: &[String]) -> Option<Found> {
        self.pending.extend_from_slice(piece);
        loop {
            if self.in_head {
                let Some(end) = head_end(&self.pending, self.searched) else {
                    if self.pending.len() > MAX_PART_HEAD {
                        return Some(Found::UnreadablePart);
                    }
                    self.searched = self.pending.len();
                    return None;
                };
                if end > MAX_PART_HEAD {
                    return Some(Found::UnreadablePart);
                }
                let named = part_field_names(&self.pending[..end])
                    .iter()
                    .find_map(|n| names_param(n, params));
                if let Some(name) = named {
                    return Some(Found::Param(name.to_string()));
                }
                self.pending.drain(..end);
                self.in_head = false;
                self.searched = 0;
                continue;
            }
            match memchr::memmem::find(&self.pending, &self.delimiter) {
                Some(at) => {
                    self.pending.drain(..at + self.delimiter.len());
                    self.in_head = true;
                }
                None => {
                    let keep = (self.delimiter.len() - 1).min(self.pending.len());
                    self.pending.drain(..self.pending.len() - keep);
                    return None;
                }
            }
        }
    }
}

/// Where the blank line ending a part head is (the index just past it),
/// searching from a little before `from` (a blank line may span pieces).
fn head_end(head: &[u8], from: usize) -> Option<usize> {
    let start = from.saturating_sub(3);
    (start..head.len()).find_map(|i| {
        if head[i..].starts_with(b"\r\n\r\n") {
            Some(i + 4)
        } else if head[i..].starts_with(b"\n\n") {
            Some(i + 2)
        } else {
            None
        }
    })
}

/// The field names a part head gives, decoded: every `name=` (or RFC 2231
/// `name*=`) parameter after a `;` or white space, anywhere in the head,
/// and every `Content-ID`. Rack finds the
/// name with a pattern over the whole head (`Content-Disposition:[^:]*;
/// \s*name=…`), which also reads a header folded over lines, so this reads
/// the whole head too; a `name` parameter of another header counts as well,
/// which is only stricter. A quoted name has its backslash escapes
/// resolved; a `name*` value is percent-decoded.
fn part_field_names(head: &[u8]) -> Vec<Vec<u8>> {
    let text = String::from_utf8_lossy(head);
    let bytes = text.as_bytes();
    let mut names = Vec::new();
    // A part without a name is named by its Content-ID (Rack:
    // `head[CONTENT_DISPOSITION] || head[CONTENT_ID]`).
    for line in text.lines() {
        if let Some((field, value)) = line.split_once(':') {
            if field.trim().eq_ignore_ascii_case("content-id") {
                names.push(value.trim().as_bytes().to_vec());
            }
        }
    }
    let skip_space = |mut at: usize| {
        while bytes.get(at).is_some_and(u8::is_ascii_whitespace) {
            at += 1;
        }
        at
    };
    // Every `name` after a `;` or white space (older Rack reads
    // `\s+name=` without the `;`); `filename` has neither before `name`.
    for at in 1..bytes.len() {
        if !(bytes[at - 1] == b';' || bytes[at - 1].is_ascii_whitespace())
            || !bytes
                .get(at..at + 4)
                .is_some_and(|w| w.eq_ignore_ascii_case(b"name"))
        {
            continue;
        }
        let mut at = at + 4;
        let extended = bytes.get(at) == Some(&b'*');
        if extended {
            at += 1;
        }
        at = skip_space(at);
        if bytes.get(at) != Some(&b'=') {
            continue;
        }
        at = skip_space(at + 1);
        let value = param_value(&text[at..]);
        names.push(if extended {
            // charset'language'percent-encoded
            let encoded = value.splitn(3, |b| *b == b'\'').nth(2).unwrap_or(&value);
            percent_decode(encoded, false)
        } else {
            value
        });
    }
    names
}

/// A parameter value at the start of `rest`: a quoted string with its
/// backslash escapes resolved, or a token up to `;` or white space.
fn param_value(rest: &str) -> Vec<u8> {
    let Some(quoted) = rest.strip_prefix('"') else {
        let end = rest
            .find(|c: char| c == ';' || c.is_ascii_whitespace())
            .unwrap_or(rest.len());
        return rest.as_bytes()[..end].to_vec();
    };
    let mut out = Vec::new();
    let mut chars = quoted.chars();
    while let Some(c) = chars.next() {
        let c = match c {
            '"' => break,
            '\\' => chars.next().unwrap_or(c),
            c => c,
        };
        let mut buf = [0; 4];
        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> Vec<String> {
        vec!["_method".to_string()]
    }

    #[test]
    fn override_headers_are_found() {
        let mut h = HeaderMap::new();
        assert_eq!(header_override(&h), None);
        h.insert("X-HTTP-Method-Override", "GET".parse().unwrap());
        assert_eq!(header_override(&h), Some("x-http-method-override"));
        let mut h = HeaderMap::new();
        h.insert("x-method-override", "DELETE".parse().unwrap());
        assert_eq!(header_override(&h), Some("x-method-override"));
        let mut h = HeaderMap::new();
        h.insert("X_HTTP_Method-Override", "GET".parse().unwrap());
        assert_eq!(header_override(&h), Some("x-http-method-override"));
        let mut h = HeaderMap::new();
        h.insert("x_api_key", "k".parse().unwrap());
        assert_eq!(header_override(&h), None);
    }

    #[test]
    fn query_parameters_are_decoded_as_a_form_parser_would() {
        let p = params();
        for q in [
            "_method=GET",
            "page=2&_method=DELETE",
            "a=1;_method=PATCH",
            "a=1&  _method=GET",
            "%5Fmethod=GET",
            "%5f%6D%65thod=GET",
            "_method[]=GET",
            "_method%5Bx%5D=1",
            "[_method]=GET",
            "_method]=GET",
            "%5B%5D_method=GET",
            "_method",
            "a&_method&b",
        ] {
            assert_eq!(query_override(q, &p), Some("_method"), "{q}");
        }
        for q in [
            "",
            "page=2",
            "q=_method",
            "x_method=GET",
            "_methods=GET",
            "_method%=GET",
            "+_method=GET",
            "a=%26_method%3DGET",
        ] {
            assert_eq!(query_override(q, &p), None, "{q}");
        }
        assert_eq!(query_override("_method=GET", &[]), None, "no parameters");
    }

    #[test]
    fn a_very_long_key_is_skipped_whole() {
        let long = format!("{}_method=GET&_method=GET", "x".repeat(500));
        assert_eq!(query_override(&long, &params()), Some("_method"));
        let long = format!("{}_method=GET", "x".repeat(500));
        assert_eq!(query_override(&long, &params()), None);
    }

    /// Feeds `body` in pieces of `size` bytes.
    fn body_of(content_type: Option<&str>, encoded: bool) -> FormBody {
        form_body_of(content_type, true, encoded, &params())
    }

    fn scan(content_type: &str, body: &[u8], size: usize) -> Option<Found> {
        let FormBody::Scan(mut s) = body_of(Some(content_type), false) else {
            panic!("{content_type} should be scanned");
        };
        let pieces: Vec<&[u8]> = body.chunks(size.max(1)).collect();
        for (i, piece) in pieces.iter().enumerate() {
            if let Some(found) = s.feed(piece, i + 1 == pieces.len()) {
                return Some(found);
            }
        }
        None
    }

    fn found() -> Option<Found> {
        Some(Found::Param("_method".into()))
    }

    #[test]
    fn urlencoded_bodies_are_scanned_across_pieces() {
        let ct = "application/x-www-form-urlencoded; charset=utf-8";
        for size in [1, 2, 3, 7, 1000] {
            assert_eq!(scan(ct, b"content=hi&_method=GET", size), found(), "{size}");
            assert_eq!(scan(ct, b"_method=GET&content=hi", size), found(), "{size}");
            assert_eq!(scan(ct, b"content=hi&%5Fmethod", size), found(), "{size}");
            assert_eq!(scan(ct, b"content=_method&x=1", size), None, "{size}");
        }
        assert!(matches!(
            body_of(Some("application/json"), false),
            FormBody::NotAForm
        ));
        assert!(matches!(
            form_body_of(Some(ct), true, false, &[]),
            FormBody::NotAForm
        ));
        // Read as Rack reads them: the media type ends at `,` too, and a
        // POST without a type is a form.
        let both = "application/x-www-form-urlencoded, text/plain";
        assert_eq!(scan(both, b"_method=GET", 4), found());
        for ct in [None, Some(""), Some("; charset=utf-8")] {
            let FormBody::Scan(mut untyped) = body_of(ct, false) else {
                panic!("a POST without a type ({ct:?}) is read as a form");
            };
            assert_eq!(untyped.feed(b"_method=GET", true), found());
        }
        assert!(matches!(
            form_body_of(None, false, false, &params()),
            FormBody::NotAForm
        ));
    }

    fn multipart(parts: &[(&str, &str)]) -> Vec<u8> {
        let mut body = b"preamble\r\n".to_vec();
        for (head, content) in parts {
            body.extend_from_slice(b"--XyZ\r\n");
            body.extend_from_slice(head.as_bytes());
            body.extend_from_slice(b"\r\n\r\n");
            body.extend_from_slice(content.as_bytes());
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"--XyZ--\r\n");
        body
    }

    #[test]
    fn multipart_part_names_are_read_as_a_form_parser_would() {
        let ct = "multipart/form-data; boundary=XyZ";
        let file = (
            "Content-Disposition: form-data; name=\"attachments[]\"; filename=\"payment_method.pdf\"\r\nContent-Type: application/pdf",
            "%PDF name=\"_method\" --XyZ is not at a line start here",
        );
        for head in [
            "Content-Disposition: form-data; name=\"_method\"",
            "content-disposition: form-data; NAME=_method",
            "Content-Disposition: form-data; name = \"_method\"",
            "Content-Disposition: form-data; name=\"_me\\thod\"",
            "Content-Disposition: form-data; name*=UTF-8''%5Fmethod",
            "Content-Disposition: form-data; filename=\"x;y\"; name=\"_method[a]\"",
            "Content-Disposition: form-data;\r\n name=\"_method\"",
            "Content-Disposition: form-data;\r\n\tname=_method",
            "Content-Disposition: form-data\r\nContent-ID: _method",
            "Content-Disposition: form-data name=_method",
            "Content-Disposition: form-data; name=\"[_method]\"",
        ] {
            let body = multipart(&[
                ("Content-Disposition: form-data; name=\"content\"", "hi"),
                (head, "GET"),
            ]);
            for size in [1, 5, 64, 10_000] {
                assert_eq!(scan(ct, &body, size), found(), "{head} in pieces of {size}");
            }
        }
        let innocent = multipart(&[
            (
                "Content-Disposition: form-data; name=\"content\"",
                "the _method field",
            ),
            file,
        ]);
        for size in [1, 5, 64, 10_000] {
            assert_eq!(scan(ct, &innocent, size), None, "pieces of {size}");
        }
        let quoted = "multipart/form-data; boundary=\"XyZ\"";
        let body = multipart(&[("Content-Disposition: form-data; name=_method", "GET")]);
        assert_eq!(scan(quoted, &body, 3), found());
        let mixed = "multipart/mixed; BOUNDARY=XyZ";
        assert_eq!(scan(mixed, &body, 7), found(), "every multipart type");
        for (ct, why) in [
            ("multipart/form-data", "no boundary"),
            (
                "multipart/form-data; boundary=XyZ; boundary=Other",
                "two boundaries",
            ),
            (
                "multipart/form-data; boundary=XyZ, text/plain; boundary=Other",
                "two fields",
            ),
        ] {
            assert!(
                matches!(body_of(Some(ct), false), FormBody::Unreadable(_)),
                "{why}: {ct}"
            );
        }
        assert_eq!(
            scan(
                "multipart/form-data; boundary=XyZ; x=\"boundary=XyZ\"",
                &body,
                9
            ),
            found(),
            "the same boundary twice is one"
        );
    }

    #[test]
    fn an_encoded_form_cannot_be_read() {
        let ct = Some("application/x-www-form-urlencoded");
        assert!(matches!(body_of(ct, false), FormBody::Scan(_)));
        assert!(matches!(body_of(ct, true), FormBody::Unreadable(_)));
        assert!(matches!(
            body_of(Some("application/json"), true),
            FormBody::NotAForm
        ));
        let mut h = HeaderMap::new();
        h.insert(
            "content-type",
            "application/x-www-form-urlencoded".parse().unwrap(),
        );
        h.insert("content-encoding", "identity".parse().unwrap());
        assert!(matches!(
            form_body(&http::Method::POST, &h, &params()),
            FormBody::Scan(_)
        ));
        h.insert("content-encoding", "gzip".parse().unwrap());
        assert!(matches!(
            form_body(&http::Method::POST, &h, &params()),
            FormBody::Unreadable(_)
        ));
        assert!(matches!(
            form_body(&http::Method::POST, &h, &[]),
            FormBody::NotAForm
        ));
    }

    #[test]
    fn a_part_head_without_an_end_is_unreadable() {
        let ct = "multipart/form-data; boundary=XyZ";
        let mut body = b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"; x=\"".to_vec();
        body.extend(std::iter::repeat_n(b'y', MAX_PART_HEAD + 10));
        assert_eq!(scan(ct, &body, 4096), Some(Found::UnreadablePart));
    }
}
