//! Path templates: `/{version}/{phone_number_id}/messages`,
//! `/api/v1/accounts/{account_id}/contacts`, `/files/{rest*}`.
//!
//! A template is matched against a [`NormalizedPath`], segment by segment:
//! - a literal segment equals the path segment exactly (case-sensitive, in
//!   the normalized spelling, so literals may not contain `%`);
//! - `{name}` matches exactly one non-empty segment;
//! - `{name*}` (last segment only) matches one or more remaining segments,
//!   the first non-empty, and captures them joined with `/`.
//!
//! Trailing slash: default deny. `/a/b` does not match `/a/b/`, and `/a/b/`
//! (a template ending in `/`) matches only `/a/b/`. A route that wants both
//! lists both. `/` is the template of the root path.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use crate::request::NormalizedPath;

/// The most segments a template may have. Lookups recurse once per
/// segment, so this bounds their stack depth; real APIs stay far below it.
pub const MAX_TEMPLATE_SEGMENTS: usize = 64;

/// A parsed path template. Built once per config snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTemplate {
    source: Box<str>,
    segments: Vec<Segment>,
}

/// Why a template was refused (a config error, reported by `check`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("path template must start with '/'")]
    NotAbsolute,
    #[error(
        "path template has an empty segment (segment {position}); only a trailing '/' may end one"
    )]
    EmptySegment { position: usize },
    #[error("path parameter name `{name}` must match [a-z_][a-z0-9_]*")]
    BadName { name: String },
    #[error("path parameter `{name}` appears more than once")]
    DuplicateName { name: String },
    #[error("catch-all parameter `{name}*` must be the last segment")]
    CatchAllNotLast { name: String },
    #[error("path template segment `{segment}` has unbalanced braces")]
    UnbalancedBraces { segment: String },
    #[error("path template has more than {max} segments")]
    TooManySegments { max: usize },
    #[error("literal segment `{segment}` may only hold unescaped path characters (no '%', braces, '.' or '..')")]
    BadLiteral { segment: String },
}

/// Captured parameters of a match, in template order. Values are the
/// normalized segment text (percent-escapes of reserved characters stay
/// encoded); a catch-all's value is the remainder joined with `/`, trailing
/// slash included.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    entries: Vec<(Arc<str>, String)>,
}

impl PathTemplate {
    /// Parses a template; see the module docs for the grammar.
    pub fn parse(source: &str) -> Result<PathTemplate, TemplateError> {
        let body = source.strip_prefix('/').ok_or(TemplateError::NotAbsolute)?;
        let parts: Vec<&str> = body.split('/').collect();
        if parts.len() > MAX_TEMPLATE_SEGMENTS {
            return Err(TemplateError::TooManySegments {
                max: MAX_TEMPLATE_SEGMENTS,
            });
        }
        let last = parts.len().saturating_sub(1);
        let mut segments = Vec::with_capacity(parts.len());
        for (index, part) in parts.iter().enumerate() {
            let segment = parse_segment(part, index == last, index + 1)?;
            if let Some(name) = segment.param_name() {
                let seen = segments
                    .iter()
                    .any(|s: &Segment| s.param_name() == Some(name));
                if seen {
                    return Err(TemplateError::DuplicateName {
                        name: name.to_owned(),
                    });
                }
            }
            segments.push(segment);
        }
        Ok(PathTemplate {
            source: source.into(),
            segments,
        })
    }

    /// The template as written in the config.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Parameter names in template order (catch-all without its `*`), so the
    /// config compiler can check that `scope: [{param}]` names exist.
    pub fn param_names(&self) -> impl Iterator<Item = &str> + '_ {
        self.segments.iter().filter_map(Segment::param_name)
    }

    /// Matches this one template against a path. The route table does the
    /// same faster across many templates; this is the reference behaviour.
    pub fn match_path(&self, path: &NormalizedPath) -> Option<Params> {
        let mut rest = path.as_str().strip_prefix('/');
        let mut params = Params::with_capacity(self.param_names().count());
        for segment in &self.segments {
            let remaining = rest?;
            let (head, tail) = split_segment(remaining);
            match segment {
                Segment::Literal(literal) if **literal == *head => {}
                Segment::Literal(_) => return None,
                Segment::Param(name) if !head.is_empty() => params.push(name, head),
                Segment::Param(_) => return None,
                Segment::CatchAll(name) if !head.is_empty() => {
                    params.push(name, remaining);
                    return Some(params);
                }
                Segment::CatchAll(_) => return None,
            }
            rest = tail;
        }
        match rest {
            None => Some(params),
            Some(_) => None,
        }
    }

    /// Fills the template with `params` (values as captured by a match:
    /// normalized segment text, so they need no further escaping). `None`
    /// when a parameter the template names is missing; the config compiler
    /// checks that a lookup template names only its route's parameters.
    pub fn render(&self, params: &Params) -> Option<String> {
        let mut out = String::with_capacity(self.source.len() + 16);
        for segment in &self.segments {
            out.push('/');
            match segment {
                Segment::Literal(literal) => out.push_str(literal),
                Segment::Param(name) | Segment::CatchAll(name) => out.push_str(params.get(name)?),
            }
        }
        Some(out)
    }

    pub(crate) fn segments(&self) -> &[Segment] {
        &self.segments
    }
}

impl fmt::Display for PathTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl FromStr for PathTemplate {
    type Err = TemplateError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PathTemplate::parse(s)
    }
}

impl Params {
    /// The value captured for `name`, if the template has that parameter.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(n, _)| **n == *name)
            .map(|(_, v)| v.as_str())
    }

    /// `(name, value)` pairs in template order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.entries.iter().map(|(n, v)| (&**n, v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn with_capacity(capacity: usize) -> Self {
        Params {
            entries: Vec::with_capacity(capacity),
        }
    }

    fn push(&mut self, name: &Arc<str>, value: &str) {
        self.entries.push((Arc::clone(name), value.to_owned()));
    }
}

/// One template segment. Literals are compared to normalized segments, so
/// only canonical spellings are accepted at parse time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    /// Exact text; `""` only as the last segment, meaning a trailing slash.
    Literal(Box<str>),
    Param(Arc<str>),
    CatchAll(Arc<str>),
}

impl Segment {
    fn param_name(&self) -> Option<&str> {
        match self {
            Segment::Literal(_) => None,
            Segment::Param(name) | Segment::CatchAll(name) => Some(name),
        }
    }
}

/// Splits the first segment off a path remainder: `"a/b"` → `("a",
/// Some("b"))`, `"a/"` → `("a", Some(""))`, `"a"` → `("a", None)`.
///
/// A plain byte scan: segments are a few bytes long, where `split_once`'s
/// searcher costs more to set up than the search itself. '/' is ASCII, so
/// both sides of it are char boundaries.
pub(crate) fn split_segment(rest: &str) -> (&str, Option<&str>) {
    match rest.bytes().position(|b| b == b'/') {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    }
}

fn parse_segment(part: &str, is_last: bool, position: usize) -> Result<Segment, TemplateError> {
    if part.is_empty() {
        return if is_last {
            Ok(Segment::Literal("".into()))
        } else {
            Err(TemplateError::EmptySegment { position })
        };
    }
    let braced = part
        .strip_prefix('{')
        .and_then(|p| p.strip_suffix('}'))
        .filter(|inner| !inner.contains(['{', '}']));
    if let Some(inner) = braced {
        let (name, catch_all) = match inner.strip_suffix('*') {
            Some(name) => (name, true),
            None => (inner, false),
        };
        if !is_param_name(name) {
            return Err(TemplateError::BadName {
                name: inner.to_owned(),
            });
        }
        return match (catch_all, is_last) {
            (false, _) => Ok(Segment::Param(name.into())),
            (true, true) => Ok(Segment::CatchAll(name.into())),
            (true, false) => Err(TemplateError::CatchAllNotLast {
                name: name.to_owned(),
            }),
        };
    }
    let opens = part.matches('{').count();
    let closes = part.matches('}').count();
    if opens != closes {
        return Err(TemplateError::UnbalancedBraces {
            segment: part.to_owned(),
        });
    }
    // Normalized paths never hold these, so such a literal could never match:
    // refuse it rather than ship a route that silently never applies.
    if part == "." || part == ".." || !part.bytes().all(is_literal_byte) {
        return Err(TemplateError::BadLiteral {
            segment: part.to_owned(),
        });
    }
    Ok(Segment::Literal(part.into()))
}

fn is_param_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'_'))
        && bytes.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_'))
}

/// The bytes a normalized path holds raw (RFC 3986 `pchar` without `%`).
fn is_literal_byte(byte: u8) -> bool {
    crate::request::normalize::is_pchar(byte)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::normalize_path;

    fn template(s: &str) -> PathTemplate {
        PathTemplate::parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    fn path(s: &str) -> NormalizedPath {
        normalize_path(s).unwrap_or_else(|e| panic!("{s:?} should normalize: {e}"))
    }

    #[test]
    fn valid_templates_parse() {
        let cases: &[(&str, &[&str])] = &[
            ("/", &[]),
            ("/a", &[]),
            ("/a/", &[]),
            (
                "/{version}/{phone_number_id}/messages",
                &["version", "phone_number_id"],
            ),
            ("/api/v1/accounts/{account_id}/contacts", &["account_id"]),
            ("/files/{rest*}", &["rest"]),
            ("/{_x9}/{y_}", &["_x9", "y_"]),
            ("/v23.0/a:b@c;d=e", &[]),
            ("/{rest*}", &["rest"]),
        ];
        for (source, names) in cases {
            let t = template(source);
            assert_eq!(
                t.as_str(),
                *source,
                "{source:?} should keep its source text"
            );
            assert_eq!(
                t.param_names().collect::<Vec<_>>(),
                *names,
                "{source:?} should have params {names:?}"
            );
        }
    }

    #[test]
    fn invalid_templates_are_refused() {
        use TemplateError::*;
        let s = |x: &str| x.to_owned();
        let cases: Vec<(&str, TemplateError)> = vec![
            ("", NotAbsolute),
            ("a/b", NotAbsolute),
            ("{x}", NotAbsolute),
            ("//a", EmptySegment { position: 1 }),
            ("/a//b", EmptySegment { position: 2 }),
            ("/a//", EmptySegment { position: 2 }),
            ("/{X}", BadName { name: s("X") }),
            ("/{}", BadName { name: s("") }),
            ("/{*}", BadName { name: s("*") }),
            ("/{1x}", BadName { name: s("1x") }),
            ("/{a-b}", BadName { name: s("a-b") }),
            ("/{a b}", BadName { name: s("a b") }),
            ("/{a**}", BadName { name: s("a**") }),
            ("/{x}/{x}", DuplicateName { name: s("x") }),
            ("/{x}/{x*}", DuplicateName { name: s("x") }),
            ("/{rest*}/a", CatchAllNotLast { name: s("rest") }),
            ("/{rest*}/", CatchAllNotLast { name: s("rest") }),
            ("/{x", UnbalancedBraces { segment: s("{x") }),
            ("/x}", UnbalancedBraces { segment: s("x}") }),
            ("/{{x}", UnbalancedBraces { segment: s("{{x}") }),
            ("/a{x}", BadLiteral { segment: s("a{x}") }),
            ("/{x}b", BadLiteral { segment: s("{x}b") }),
            (
                "/{x}{y}",
                BadLiteral {
                    segment: s("{x}{y}"),
                },
            ),
            ("/}x{", BadLiteral { segment: s("}x{") }),
            (
                "/a%3Ab",
                BadLiteral {
                    segment: s("a%3Ab"),
                },
            ),
            (
                "/caf%C3%A9",
                BadLiteral {
                    segment: s("caf%C3%A9"),
                },
            ),
            (
                "/café",
                BadLiteral {
                    segment: s("café")
                },
            ),
            ("/a b", BadLiteral { segment: s("a b") }),
            ("/a\\b", BadLiteral { segment: s("a\\b") }),
            ("/a?b", BadLiteral { segment: s("a?b") }),
            ("/.", BadLiteral { segment: s(".") }),
            ("/a/../b", BadLiteral { segment: s("..") }),
        ];
        let deep = "/a".repeat(MAX_TEMPLATE_SEGMENTS + 1);
        let at_limit = "/a".repeat(MAX_TEMPLATE_SEGMENTS);
        assert!(
            PathTemplate::parse(&at_limit).is_ok(),
            "a template of exactly {MAX_TEMPLATE_SEGMENTS} segments should parse"
        );
        let cases: Vec<(&str, TemplateError)> = cases
            .into_iter()
            .chain([(
                deep.as_str(),
                TooManySegments {
                    max: MAX_TEMPLATE_SEGMENTS,
                },
            )])
            .collect();
        for (source, want) in cases {
            assert_eq!(
                PathTemplate::parse(source),
                Err(want.clone()),
                "{source:?} should be refused with {want:?}"
            );
        }
    }

    #[test]
    fn matching_follows_the_segment_rules() {
        // (template, path, expected params or None for no match)
        type Case = (
            &'static str,
            &'static str,
            Option<&'static [(&'static str, &'static str)]>,
        );
        let cases: &[Case] = &[
            ("/", "/", Some(&[])),
            ("/", "/a", None),
            ("/a", "/", None),
            ("/a/b", "/a/b", Some(&[])),
            ("/a/b", "/a/b/", None),
            ("/a/b/", "/a/b/", Some(&[])),
            ("/a/b/", "/a/b", None),
            ("/a/b", "/A/b", None),
            ("/a/b", "/a", None),
            ("/a/b", "/a/b/c", None),
            ("/a/{x}", "/a/1", Some(&[("x", "1")])),
            ("/a/{x}", "/a/", None),
            ("/a/{x}", "/a", None),
            ("/a/{x}", "/a/1/2", None),
            ("/a/{x}", "/a/%3A%C3%A9", Some(&[("x", "%3A%C3%A9")])),
            (
                "/{version}/{phone_number_id}/messages",
                "/v23.0/1234567890/messages",
                Some(&[("version", "v23.0"), ("phone_number_id", "1234567890")]),
            ),
            ("/f/{rest*}", "/f/a", Some(&[("rest", "a")])),
            ("/f/{rest*}", "/f/a/b/c", Some(&[("rest", "a/b/c")])),
            ("/f/{rest*}", "/f/a/b/", Some(&[("rest", "a/b/")])),
            ("/f/{rest*}", "/f/", None),
            ("/f/{rest*}", "/f", None),
            ("/{rest*}", "/", None),
            (
                "/{a}/{rest*}",
                "/x/y/z",
                Some(&[("a", "x"), ("rest", "y/z")]),
            ),
        ];
        for (source, raw, want) in cases {
            let got = template(source).match_path(&path(raw));
            let got: Option<Vec<(&str, &str)>> = got.as_ref().map(|p| p.iter().collect());
            assert_eq!(
                got.as_deref(),
                *want,
                "{source:?} against {raw:?} should give {want:?}"
            );
        }
    }

    #[test]
    fn params_lookup() {
        let t = template("/{version}/{phone_number_id}/messages");
        let params = t
            .match_path(&path("/v23.0/42/messages"))
            .unwrap_or_else(|| panic!("should match"));
        assert_eq!(
            params.get("version"),
            Some("v23.0"),
            "version should be captured"
        );
        assert_eq!(
            params.get("phone_number_id"),
            Some("42"),
            "id should be captured"
        );
        assert_eq!(params.get("missing"), None, "unknown names should be None");
        assert_eq!(params.len(), 2, "two params should be captured");
    }

    #[test]
    fn render_fills_another_template_from_a_match() {
        let route =
            template("/api/v1/accounts/{account_id}/conversations/{conversation_id}/messages");
        let params = route
            .match_path(&path("/api/v1/accounts/1/conversations/77/messages"))
            .unwrap_or_else(|| panic!("should match"));
        let lookup = template("/api/v1/accounts/{account_id}/conversations/{conversation_id}");
        assert_eq!(
            lookup.render(&params).as_deref(),
            Some("/api/v1/accounts/1/conversations/77"),
            "the lookup path should carry the matched ids"
        );
        assert_eq!(
            route.render(&params).as_deref(),
            Some("/api/v1/accounts/1/conversations/77/messages"),
            "a template renders back to the path it matched"
        );
        assert_eq!(
            template("/x/{other}").render(&params),
            None,
            "a parameter the match did not capture renders nothing"
        );
        for source in ["/", "/a/", "/files/{rest*}"] {
            let t = template(source);
            let p = path(match source {
                "/files/{rest*}" => "/files/a/b/",
                other => other,
            });
            let params = t
                .match_path(&p)
                .unwrap_or_else(|| panic!("{source} should match"));
            assert_eq!(
                t.render(&params).as_deref(),
                Some(p.as_str()),
                "{source} should render back to its path"
            );
        }
    }
}
