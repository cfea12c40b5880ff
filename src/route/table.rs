//! The route table: which route a (method, normalized path) belongs to.
//!
//! Most specific wins. Candidates are compared segment by segment from the
//! left: a literal beats a `{param}`, which beats a `{rest*}`. Two templates
//! that match the same path and rank equal at every segment have the same
//! shape (`/a/{x}` and `/a/{y}`), so "fewer catch-alls / longer template"
//! can never be what breaks a tie; two entries of the same shape whose
//! method sets overlap are refused when the table is built
//! ([`TableError::Ambiguous`]), so a lookup never has to guess.
//!
//! A path that matches only routes of other methods finds nothing: the
//! gateway answers 404 `no_route` either way, and does not reveal which
//! methods exist.

use http::Method;

use super::template::{split_segment, Params, PathTemplate, Segment};
use crate::request::NormalizedPath;

/// The methods a route accepts. `HEAD` is not implied by `GET`: a route that
/// should answer `HEAD` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MethodSet {
    Any,
    Only(Vec<Method>),
}

/// Routes indexed for lookup; `T` is the route's payload (its compiled
/// policy), so the table itself knows nothing of policy.
///
/// Built once per config snapshot into a segment trie: each node has its
/// literal children sorted for binary search, at most one `{param}` child
/// and the entries ending there or in a catch-all there. A lookup walks the
/// trie depth-first in specificity order (literal, param, catch-all) and the
/// first entry whose methods fit is the most specific match. Each trie node
/// is visited at most once, so a lookup costs O(d · log f) in the common case
/// (d path segments, f literal children per node) and never more than the
/// number of trie nodes, whatever the path; it allocates nothing but the
/// returned [`Params`].
#[derive(Debug)]
pub struct RouteTable<T> {
    entries: Vec<Entry<T>>,
    root: Node,
}

/// A successful lookup.
#[derive(Debug)]
pub struct RouteMatch<'a, T> {
    /// The payload of the matched route.
    pub value: &'a T,
    /// The matched route's template, for logs and `explain`.
    pub template: &'a PathTemplate,
    /// Captured path parameters.
    pub params: Params,
}

/// Why a table could not be built (a config error, reported by `check`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    #[error("routes `{first}` and `{second}` match the same paths for a common method; make one more specific or split their methods")]
    Ambiguous { first: String, second: String },
    #[error("route `{template}` lists no methods; use any method or name at least one")]
    EmptyMethodSet { template: String },
}

/// Whether no route ever matches `method`, whatever its methods say:
/// `TRACE` (and IIS's `TRACK`) echo the request back, injected upstream
/// credentials included, and `CONNECT` asks for a tunnel.
pub fn never_routed(method: &Method) -> bool {
    *method == Method::TRACE || *method == Method::CONNECT || method.as_str() == "TRACK"
}

impl MethodSet {
    /// Whether `method` is in the set. (A method that is [`never_routed`]
    /// can be in none: the config refuses to list one, and
    /// [`RouteTable::find`] matches it with nothing.)
    pub fn contains(&self, method: &Method) -> bool {
        match self {
            MethodSet::Any => true,
            MethodSet::Only(methods) => methods.contains(method),
        }
    }

    /// Whether some method is in both sets.
    pub fn overlaps(&self, other: &MethodSet) -> bool {
        match (self, other) {
            (MethodSet::Any, _) | (_, MethodSet::Any) => true,
            (MethodSet::Only(mine), MethodSet::Only(theirs)) => {
                mine.iter().any(|m| theirs.contains(m))
            }
        }
    }
}

impl FromIterator<Method> for MethodSet {
    fn from_iter<I: IntoIterator<Item = Method>>(methods: I) -> Self {
        MethodSet::Only(methods.into_iter().collect())
    }
}

impl<T> RouteTable<T> {
    /// Indexes the routes, refusing empty method lists and ambiguous pairs.
    /// Entry order does not matter: specificity, not position, decides.
    pub fn new(entries: Vec<(MethodSet, PathTemplate, T)>) -> Result<Self, TableError> {
        let entries: Vec<Entry<T>> = entries
            .into_iter()
            .map(|(methods, template, value)| Entry {
                methods,
                template,
                value,
            })
            .collect();
        let mut root = Node::default();
        for (index, entry) in entries.iter().enumerate() {
            if matches!(&entry.methods, MethodSet::Only(m) if m.is_empty()) {
                return Err(TableError::EmptyMethodSet {
                    template: entry.template.to_string(),
                });
            }
            let slot = root.slot_for(entry.template.segments());
            if let Some(&other) = slot
                .iter()
                .find(|&&other| entries_overlap(&entries, other, index))
            {
                return Err(TableError::Ambiguous {
                    first: template_text(&entries, other),
                    second: entry.template.to_string(),
                });
            }
            slot.push(index);
        }
        Ok(RouteTable { entries, root })
    }

    /// The most specific route for `method` and `path`, if any.
    pub fn find(&self, method: &Method, path: &NormalizedPath) -> Option<RouteMatch<'_, T>> {
        if never_routed(method) {
            return None;
        }
        let rest = path.as_str().strip_prefix('/')?;
        let index = self.search(&self.root, Some(rest), method)?;
        let entry = self.entries.get(index)?;
        // The trie and the template agree by construction; if they ever did
        // not, no match is the fail-closed answer.
        let params = entry.template.match_path(path)?;
        Some(RouteMatch {
            value: &entry.value,
            template: &entry.template,
            params,
        })
    }

    /// Every route's value, in the order given.
    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.entries.iter().map(|e| &e.value)
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Depth-first walk in specificity order. `rest` is the unmatched part
    /// of the path after a `/`, `None` once every segment is consumed.
    fn search(&self, node: &Node, rest: Option<&str>, method: &Method) -> Option<usize> {
        let Some(rest) = rest else {
            return self.pick(&node.ends, method);
        };
        let (head, tail) = split_segment(rest);
        if let Some(child) = node.literal(head) {
            if let Some(hit) = self.search(child, tail, method) {
                return Some(hit);
            }
        }
        if head.is_empty() {
            // Only a trailing slash yields an empty segment; params and
            // catch-alls never match it.
            return None;
        }
        if let Some(child) = &node.param {
            if let Some(hit) = self.search(child, tail, method) {
                return Some(hit);
            }
        }
        self.pick(&node.catch_alls, method)
    }

    /// The entry among `candidates` (same shape, disjoint methods) that
    /// accepts `method`.
    fn pick(&self, candidates: &[usize], method: &Method) -> Option<usize> {
        candidates.iter().copied().find(|&i| {
            self.entries
                .get(i)
                .is_some_and(|entry| entry.methods.contains(method))
        })
    }
}

struct Entry<T> {
    methods: MethodSet,
    template: PathTemplate,
    value: T,
}

impl<T> std::fmt::Debug for Entry<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("methods", &self.methods)
            .field("template", &self.template.as_str())
            .finish_non_exhaustive()
    }
}

/// One trie level. Entries are stored as indexes into `RouteTable::entries`.
#[derive(Debug, Default)]
struct Node {
    /// Sorted by segment text for binary search.
    literals: Vec<(Box<str>, Node)>,
    param: Option<Box<Node>>,
    /// Entries whose template ends with a catch-all at this level.
    catch_alls: Vec<usize>,
    /// Entries whose template ends exactly here.
    ends: Vec<usize>,
}

impl Node {
    fn literal(&self, segment: &str) -> Option<&Node> {
        let found = self
            .literals
            .binary_search_by(|(text, _)| (**text).cmp(segment))
            .ok()?;
        self.literals.get(found).map(|(_, node)| node)
    }

    /// The entry list that templates of this shape end in, creating the
    /// path of nodes on the way. Param names do not matter to the shape.
    fn slot_for(&mut self, segments: &[Segment]) -> &mut Vec<usize> {
        let Some((first, rest)) = segments.split_first() else {
            return &mut self.ends;
        };
        match first {
            Segment::CatchAll(_) => &mut self.catch_alls,
            Segment::Param(_) => self.param.get_or_insert_with(Box::default).slot_for(rest),
            Segment::Literal(text) => {
                let at = match self
                    .literals
                    .binary_search_by(|(existing, _)| existing.cmp(text))
                {
                    Ok(at) => at,
                    Err(at) => {
                        self.literals.insert(at, (text.clone(), Node::default()));
                        at
                    }
                };
                // `at` is either a found index or the one just inserted.
                match self.literals.get_mut(at) {
                    Some((_, child)) => child.slot_for(rest),
                    None => &mut self.ends,
                }
            }
        }
    }
}

fn entries_overlap<T>(entries: &[Entry<T>], a: usize, b: usize) -> bool {
    match (entries.get(a), entries.get(b)) {
        (Some(a), Some(b)) => a.methods.overlaps(&b.methods),
        _ => false,
    }
}

fn template_text<T>(entries: &[Entry<T>], index: usize) -> String {
    entries
        .get(index)
        .map(|e| e.template.to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::request::normalize_path;

    fn path(s: &str) -> NormalizedPath {
        normalize_path(s).unwrap_or_else(|e| panic!("{s:?} should normalize: {e}"))
    }

    fn template(s: &str) -> PathTemplate {
        PathTemplate::parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    fn methods(list: &str) -> MethodSet {
        if list == "*" {
            return MethodSet::Any;
        }
        list.split(',')
            .map(|m| Method::from_bytes(m.as_bytes()).expect("test method"))
            .collect()
    }

    fn table(routes: &[(&str, &str, &'static str)]) -> RouteTable<&'static str> {
        RouteTable::new(
            routes
                .iter()
                .map(|(m, t, name)| (methods(m), template(t), *name))
                .collect(),
        )
        .unwrap_or_else(|e| panic!("table should build: {e}"))
    }

    fn find<'a>(
        t: &'a RouteTable<&'static str>,
        method: &str,
        raw: &str,
    ) -> Option<RouteMatch<'a, &'static str>> {
        let method = Method::from_bytes(method.as_bytes()).expect("test method");
        t.find(&method, &path(raw))
    }

    #[test]
    fn most_specific_route_wins() {
        let t = table(&[
            (
                "POST",
                "/{version}/{phone_number_id}/messages",
                "any_version_send",
            ),
            ("POST", "/v23.0/{phone_number_id}/messages", "v23_send"),
            ("GET", "/{version}/{phone_number_id}", "phone_info"),
            ("GET", "/{version}/{rest*}", "graph_fallback"),
            ("*", "/{rest*}", "everything"),
            ("GET", "/api/v1/accounts/{account_id}/contacts", "contacts"),
            (
                "GET",
                "/api/v1/accounts/{account_id}/contacts/search",
                "contact_search",
            ),
            (
                "GET",
                "/api/v1/accounts/{account_id}/contacts/{id}",
                "contact",
            ),
            (
                "GET",
                "/api/v1/accounts/{account_id}/{rest*}",
                "account_fallback",
            ),
            (
                "GET",
                "/api/v1/accounts/1/contacts/{id}",
                "account_one_contact",
            ),
            ("GET", "/", "root"),
            ("GET", "/api/", "api_dir"),
        ]);
        let cases: &[(&str, &str, Option<&str>)] = &[
            ("POST", "/v23.0/123/messages", Some("v23_send")),
            ("POST", "/v22.0/123/messages", Some("any_version_send")),
            ("POST", "/v23%2E0/123/messages", Some("v23_send")),
            ("GET", "/v23.0/123", Some("phone_info")),
            ("GET", "/v23.0/123/messages", Some("graph_fallback")),
            ("GET", "/v23.0/123/messages/", Some("graph_fallback")),
            ("PATCH", "/v23.0/123/messages", Some("everything")),
            ("GET", "/api/v1/accounts/7/contacts", Some("contacts")),
            (
                "GET",
                "/api/v1/accounts/7/contacts/search",
                Some("contact_search"),
            ),
            ("GET", "/api/v1/accounts/7/contacts/99", Some("contact")),
            (
                "GET",
                "/api/v1/accounts/1/contacts/99",
                Some("account_one_contact"),
            ),
            // Left to right: the literal account `1` beats `{account_id}`.
            (
                "GET",
                "/api/v1/accounts/1/contacts/search",
                Some("account_one_contact"),
            ),
            (
                "GET",
                "/api/v1/accounts/7/contacts/99/notes",
                Some("account_fallback"),
            ),
            (
                "GET",
                "/api/v1/accounts/7/contacts/",
                Some("account_fallback"),
            ),
            ("GET", "/api/v1/accounts/7", Some("graph_fallback")),
            ("GET", "/", Some("root")),
            ("POST", "/", None),
            ("GET", "/api/", Some("api_dir")),
            ("GET", "/api", Some("everything")),
            ("GET", "/api/v1/accounts/../../admin", Some("phone_info")),
        ];
        for (method, raw, want) in cases {
            let got = find(&t, method, raw).map(|m| *m.value);
            assert_eq!(got, *want, "{method} {raw} should route to {want:?}");
        }
    }

    #[test]
    fn params_come_from_the_winning_route() {
        let t = table(&[
            ("POST", "/{version}/{phone_number_id}/messages", "send"),
            ("GET", "/media/{rest*}", "media"),
        ]);
        let m = find(&t, "POST", "/v23.0/106540352242922/messages")
            .unwrap_or_else(|| panic!("send should match"));
        assert_eq!(m.params.get("version"), Some("v23.0"), "version param");
        assert_eq!(
            m.params.get("phone_number_id"),
            Some("106540352242922"),
            "phone param"
        );
        assert_eq!(
            m.template.as_str(),
            "/{version}/{phone_number_id}/messages",
            "template"
        );

        let m = find(&t, "GET", "/media/a/b%3Ac/").unwrap_or_else(|| panic!("media should match"));
        assert_eq!(
            m.params.get("rest"),
            Some("a/b%3Ac/"),
            "catch-all keeps the remainder"
        );
    }

    #[test]
    fn methods_are_explicit_and_never_leak() {
        let t = table(&[
            ("GET", "/a/{x}", "get_param"),
            ("POST", "/a/special", "post_literal"),
            ("PUT,DELETE", "/b", "put_delete"),
            ("GET", "/c", "get_c"),
        ]);
        let cases: &[(&str, &str, Option<&str>)] = &[
            ("GET", "/a/special", Some("get_param")),
            ("POST", "/a/special", Some("post_literal")),
            ("POST", "/a/other", None),
            ("PUT", "/b", Some("put_delete")),
            ("DELETE", "/b", Some("put_delete")),
            ("GET", "/b", None),
            ("HEAD", "/c", None),
            ("get", "/c", None),
            ("X-CUSTOM", "/c", None),
        ];
        for (method, raw, want) in cases {
            let got = find(&t, method, raw).map(|m| *m.value);
            assert_eq!(got, *want, "{method} {raw} should route to {want:?}");
        }
    }

    #[test]
    fn overlapping_routes_are_refused_at_build_time() {
        let cases: &[&[(&str, &str)]] = &[
            &[("GET", "/a/{x}"), ("GET", "/a/{y}")],
            &[("GET", "/a/{x}"), ("*", "/a/{y}")],
            &[("GET,POST", "/a/b"), ("POST,PUT", "/a/b")],
            &[("*", "/f/{rest*}"), ("DELETE", "/f/{path*}")],
            &[("GET", "/"), ("GET", "/")],
            &[("GET", "/v/{a}/x/{b*}"), ("GET", "/v/{c}/x/{d*}")],
        ];
        for routes in cases {
            let entries = routes
                .iter()
                .map(|(m, t)| (methods(m), template(t), ()))
                .collect();
            match RouteTable::new(entries) {
                Err(TableError::Ambiguous { first, second }) => {
                    assert_eq!(first, routes[0].1, "first template should be named");
                    assert_eq!(second, routes[1].1, "second template should be named");
                }
                other => panic!("{routes:?} should be ambiguous, got {other:?}"),
            }
        }
    }

    #[test]
    fn distinct_shapes_or_disjoint_methods_coexist() {
        let cases: &[&[(&str, &str)]] = &[
            &[("GET", "/a/{x}"), ("POST", "/a/{y}")],
            &[("GET", "/a/{x}"), ("GET", "/a/{x}/")],
            &[("GET", "/a/{x}"), ("GET", "/a/{x*}")],
            &[("GET", "/a/{x}"), ("GET", "/a/b")],
            &[("GET", "/a"), ("GET", "/a/")],
            &[("GET", "/{x}/b"), ("GET", "/a/{y}")],
        ];
        for routes in cases {
            let entries = routes
                .iter()
                .map(|(m, t)| (methods(m), template(t), ()))
                .collect();
            assert!(
                RouteTable::new(entries).is_ok(),
                "{routes:?} should build: their shapes or methods differ"
            );
        }
    }

    #[test]
    fn empty_method_list_is_refused() {
        let got = RouteTable::new(vec![(MethodSet::Only(vec![]), template("/a"), ())]);
        assert!(
            matches!(got, Err(TableError::EmptyMethodSet { .. })),
            "a route without methods should be a config error, got {got:?}"
        );
    }

    #[test]
    fn cross_shape_overlap_prefers_the_left_literal() {
        // Both match /a/b; neither is ambiguous: the left segment decides.
        let t = table(&[
            ("GET", "/{x}/b", "param_first"),
            ("GET", "/a/{y}", "literal_first"),
        ]);
        let got = find(&t, "GET", "/a/b").map(|m| *m.value);
        assert_eq!(
            got,
            Some("literal_first"),
            "a literal in the first segment should win"
        );
        let got = find(&t, "GET", "/z/b").map(|m| *m.value);
        assert_eq!(
            got,
            Some("param_first"),
            "backtracking should find the param route"
        );
    }

    /// Specificity rank of a template for comparison: per segment, literal
    /// 0, param 1, catch-all 2; lexicographic order, lower wins.
    fn rank(t: &PathTemplate) -> Vec<u8> {
        t.segments()
            .iter()
            .map(|s| match s {
                Segment::Literal(_) => 0,
                Segment::Param(_) => 1,
                Segment::CatchAll(_) => 2,
            })
            .collect()
    }

    struct TestRng(u64);

    impl TestRng {
        fn below(&mut self, n: usize) -> usize {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            (x % n.max(1) as u64) as usize
        }
    }

    #[test]
    fn trie_agrees_with_brute_force_and_never_panics() {
        let sources = [
            "/",
            "/a",
            "/a/",
            "/a/b",
            "/a/{x}",
            "/a/{x}/",
            "/a/{rest*}",
            "/{x}",
            "/{x}/b",
            "/{x}/{y}",
            "/{x}/{rest*}",
            "/{rest*}",
            "/a/b/c",
            "/a/{x}/c",
            "/b/{x}/{y}/d",
            "/v23.0/{p}/messages",
            "/{v}/{p}/messages",
            "/~u/{x}",
        ];
        let routes: Vec<(MethodSet, PathTemplate, usize)> = sources
            .iter()
            .enumerate()
            .map(|(i, s)| (MethodSet::Any, template(s), i))
            .collect();
        let t = RouteTable::new(routes.clone()).unwrap_or_else(|e| panic!("should build: {e}"));
        let pieces = [
            "/", "a", "b", "c", "d", "v23.0", "messages", "%7Eu", ".", "..", "%2e", "//", "%",
            "%2F", "é", "%C3%A9", "x", ";", "%3a",
        ];
        let mut rng = TestRng(0x00c0_ffee);
        for _ in 0..20_000 {
            let mut raw = String::from("/");
            for _ in 0..rng.below(8) {
                raw.push_str(pieces[rng.below(pieces.len())]);
            }
            let Ok(p) = normalize_path(&raw) else {
                continue;
            };
            assert_eq!(
                normalize_path(p.as_str()).as_ref(),
                Ok(&p),
                "{raw:?} → {p} should be a fixed point"
            );
            let want = routes
                .iter()
                .filter(|(_, tpl, _)| tpl.match_path(&p).is_some())
                .min_by(|a, b| rank(&a.1).cmp(&rank(&b.1)))
                .map(|(_, _, i)| *i);
            let got = t.find(&Method::GET, &p);
            assert_eq!(
                got.as_ref().map(|m| *m.value),
                want,
                "{p} should route to the most specific of the matching templates"
            );
            if let Some(m) = got {
                for (name, value) in m.params.iter() {
                    assert!(!value.is_empty(), "{p}: param {name} should be non-empty");
                }
            }
        }
    }

    /// Run with `cargo test --release -- --ignored lookup_speed` for a real
    /// number; in a debug build this only guards against gross regressions.
    #[test]
    #[ignore]
    fn lookup_speed_on_200_routes() {
        let mut routes = Vec::new();
        for i in 0..100 {
            routes.push((
                MethodSet::Only(vec![Method::GET]),
                template(&format!(
                    "/api/v1/accounts/{{account_id}}/resource{i}/{{id}}"
                )),
                i,
            ));
            routes.push((
                MethodSet::Only(vec![Method::POST]),
                template(&format!("/v23.0/{{phone_number_id}}/edge{i}")),
                100 + i,
            ));
        }
        let t = RouteTable::new(routes).unwrap_or_else(|e| panic!("should build: {e}"));
        let p = path("/api/v1/accounts/42/resource77/1234");
        let n = 200_000;
        let start = Instant::now();
        let mut hits = 0;
        for _ in 0..n {
            hits += usize::from(t.find(&Method::GET, std::hint::black_box(&p)).is_some());
        }
        let per = start.elapsed() / n;
        eprintln!("route lookup on 200 routes: {per:?}");
        assert_eq!(hits, n as usize, "every lookup should hit");
        assert!(
            per.as_micros() < 20,
            "lookup took {per:?}, expected well under 20 µs even unoptimized"
        );
    }

    #[test]
    fn echoing_and_tunnelling_methods_are_in_no_set() {
        let track = Method::from_bytes(b"TRACK").unwrap();
        let t = RouteTable::new(vec![(MethodSet::Any, template("/status"), 1)]).unwrap();
        for m in [Method::TRACE, Method::CONNECT, track] {
            assert!(t.find(&m, &path("/status")).is_none(), "{m}");
        }
        assert!(t.find(&Method::GET, &path("/status")).is_some());
        let propfind = Method::from_bytes(b"PROPFIND").unwrap();
        assert!(t.find(&propfind, &path("/status")).is_some());
    }
}
