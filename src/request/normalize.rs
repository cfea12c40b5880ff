//! Path normalization: the one canonical form of a request path.
//!
//! Invariant 2 of the design ("what is checked is what is forwarded") rests
//! on this file: the gateway normalizes the path exactly once, matches routes
//! and evaluates policy against the result, and forwards that same string
//! upstream. Anything two servers could read differently (encoded slashes,
//! backslashes, NUL, `..` above the root, malformed escapes, bad UTF-8) is
//! refused instead of guessed at.
//!
//! The canonical form:
//! - percent-escapes of unreserved characters (`A-Z a-z 0-9 - . _ ~`) are
//!   decoded, every other escape is kept and its hex digits uppercased;
//! - raw bytes that may not appear in a path (space, `"`, `<`, `>`, `[`, `]`,
//!   `^`, `` ` ``, `{`, `|`, `}`, `?`, `#`, and every non-ASCII byte) are
//!   percent-encoded, so `/café` and `/caf%C3%A9` are the same path;
//! - repeated slashes are collapsed, then dot segments are removed
//!   (RFC 3986 §5.2.4); a trailing slash is kept.

use std::fmt;

/// The longest path accepted, in bytes, before and after normalization.
pub const MAX_PATH_LEN: usize = 8 * 1024;

/// A request path in canonical form. Only [`normalize_path`] builds one, so
/// holding a `NormalizedPath` proves the checks ran.
///
/// It always starts with `/`, never contains `//`, `.` or `..` segments, and
/// keeps the trailing slash of the original path (`/a/` stays `/a/`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NormalizedPath(String);

impl NormalizedPath {
    /// The canonical path: what policy matched and what goes upstream
    /// (followed by the untouched query string, if any).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The canonical path as an owned string.
    pub fn into_string(self) -> String {
        self.0
    }

    /// The segments after the leading `/`. A trailing slash yields a final
    /// empty segment, so `/a/b` gives `["a", "b"]`, `/a/b/` gives
    /// `["a", "b", ""]` and `/` gives `[""]`. No other segment is empty.
    pub fn segments(&self) -> impl Iterator<Item = &str> + Clone + '_ {
        self.0.split('/').skip(1)
    }
}

impl fmt::Display for NormalizedPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for NormalizedPath {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Why a path was refused. Every variant means "400 bad_request"; the
/// variants exist so the audit log and tests can tell the rules apart.
/// Messages give byte offsets, never the path itself (it may carry PII).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("path must start with '/'")]
    NotAbsolute,
    #[error("path contains an encoded slash (%2F) at byte {offset}")]
    EncodedSlash { offset: usize },
    #[error("path contains a backslash (raw or %5C) at byte {offset}")]
    EncodedBackslash { offset: usize },
    #[error("path contains a NUL byte (raw or %00) at byte {offset}")]
    Nul { offset: usize },
    #[error("path contains control character 0x{byte:02X} at byte {offset}")]
    ControlChar { byte: u8, offset: usize },
    #[error("path has a '%' not followed by two hex digits at byte {offset}")]
    BadEscape { offset: usize },
    #[error("percent-decoded path is not valid UTF-8")]
    InvalidUtf8,
    #[error("path climbs above the root with '..'")]
    AboveRoot,
    #[error(
        "path has a dot segment with ';' parameters (like '..;'), which servers read differently"
    )]
    AmbiguousDotSegment,
    #[error("path is {len} bytes long, over the {max} byte limit")]
    TooLong { len: usize, max: usize },
}

/// Normalizes the path part of a request-target (no query string: split at
/// the first `?` before calling, or a `?` is encoded as `%3F` and becomes
/// part of the path).
///
/// Idempotent: normalizing an `Ok` output again yields the same output.
pub fn normalize_path(raw: &str) -> Result<NormalizedPath, PathError> {
    if raw.len() > MAX_PATH_LEN {
        return Err(PathError::TooLong {
            len: raw.len(),
            max: MAX_PATH_LEN,
        });
    }
    if !raw.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    if is_already_canonical(raw) {
        return Ok(NormalizedPath(raw.to_string()));
    }
    normalize_slow(raw)
}

/// The full normalization; `normalize_path` skips it for paths that are
/// already canonical (almost every real request).
fn normalize_slow(raw: &str) -> Result<NormalizedPath, PathError> {
    let canonical = canonicalize_escapes(raw)?;
    let path = remove_dot_segments(&canonical)?;
    // Encoding raw non-ASCII can triple a byte; check again so an accepted
    // path is always accepted again (idempotence) and upstreams see the cap.
    if path.len() > MAX_PATH_LEN {
        return Err(PathError::TooLong {
            len: path.len(),
            max: MAX_PATH_LEN,
        });
    }
    Ok(NormalizedPath(path))
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// True when normalization would return `raw` unchanged: only raw `/` and
/// pchar bytes (no escapes to canonicalize), no empty segment (`//`), and
/// no segment starting with `.` (so no dot segments to resolve). One pass,
/// no allocation; anything else takes the full path.
fn is_already_canonical(raw: &str) -> bool {
    let bytes = raw.as_bytes();
    let mut prev = 0u8;
    for &b in bytes {
        if b == b'/' {
            if prev == b'/' {
                return false;
            }
        } else if !is_pchar(b) || (b == b'.' && prev == b'/') {
            return false;
        }
        prev = b;
    }
    true
}

/// Rewrites every byte to its canonical spelling (see the module docs) and
/// rejects the bytes no server should have to interpret.
fn canonicalize_escapes(raw: &str) -> Result<String, PathError> {
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    // Raw input is a `&str`, hence valid UTF-8; only escapes of high bytes
    // can break that, so the full decode-and-check runs only when one occurs.
    let mut saw_high_escape = false;
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        if byte == b'%' {
            let value = decode_escape(bytes, i).ok_or(PathError::BadEscape { offset: i })?;
            check_byte(value, true, i)?;
            if is_unreserved(value) {
                out.push(char::from(value));
            } else {
                saw_high_escape |= value >= 0x80;
                push_escape(&mut out, value);
            }
            i += 3;
        } else {
            check_byte(byte, false, i)?;
            if byte == b'/' || is_pchar(byte) {
                out.push(char::from(byte));
            } else {
                push_escape(&mut out, byte);
            }
            i += 1;
        }
    }
    if saw_high_escape {
        check_decoded_utf8(&out)?;
    }
    Ok(out)
}

/// The byte value of the `%XX` escape starting at `at`, if well formed.
pub(crate) fn decode_escape(bytes: &[u8], at: usize) -> Option<u8> {
    let hi = hex_value(*bytes.get(at + 1)?)?;
    let lo = hex_value(*bytes.get(at + 2)?)?;
    Some(hi << 4 | lo)
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// Rejects bytes that are dangerous whether they arrive raw or encoded.
fn check_byte(byte: u8, escaped: bool, offset: usize) -> Result<(), PathError> {
    match byte {
        b'/' if escaped => Err(PathError::EncodedSlash { offset }),
        b'\\' => Err(PathError::EncodedBackslash { offset }),
        0 => Err(PathError::Nul { offset }),
        0x01..=0x1F | 0x7F => Err(PathError::ControlChar { byte, offset }),
        _ => Ok(()),
    }
}

/// RFC 3986 unreserved: decoding these never changes a URI's meaning.
fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

/// RFC 3986 `pchar` minus escapes: the bytes a path segment may hold raw.
pub(crate) fn is_pchar(byte: u8) -> bool {
    is_unreserved(byte)
        || matches!(
            byte,
            b'!' | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
        )
}

fn push_escape(out: &mut String, byte: u8) {
    out.push('%');
    out.push(char::from(HEX_UPPER[usize::from(byte >> 4)]));
    out.push(char::from(HEX_UPPER[usize::from(byte & 0x0F)]));
}

/// Decodes every escape of an already canonical path and checks that the
/// bytes form UTF-8, so `%C3%A9` passes and `%FF` or overlong `%C0%AE` fail.
fn check_decoded_utf8(canonical: &str) -> Result<(), PathError> {
    let bytes = canonical.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        if byte == b'%' {
            // Canonical escapes are all well formed; a miss would be a bug,
            // and failing closed is the right answer to it.
            decoded.push(decode_escape(bytes, i).ok_or(PathError::BadEscape { offset: i })?);
            i += 3;
        } else {
            decoded.push(byte);
            i += 1;
        }
    }
    std::str::from_utf8(&decoded)
        .map(|_| ())
        .map_err(|_| PathError::InvalidUtf8)
}

/// Collapses repeated slashes, then resolves `.` and `..` (RFC 3986
/// §5.2.4), refusing a `..` that would climb above the root.
///
/// Slashes are collapsed first so `/a//../b` is `/b`, as nginx reads it.
fn remove_dot_segments(canonical: &str) -> Result<String, PathError> {
    let mut stack: Vec<&str> = Vec::new();
    // A path ending in a dot segment names a directory: `/a/b/..` is `/a/`.
    let mut ends_in_dot = false;
    for segment in canonical.split('/').filter(|s| !s.is_empty()) {
        match segment {
            "." => ends_in_dot = true,
            ".." => {
                stack.pop().ok_or(PathError::AboveRoot)?;
                ends_in_dot = true;
            }
            _ => {
                if is_dot_segment_with_params(segment) {
                    return Err(PathError::AmbiguousDotSegment);
                }
                stack.push(segment);
                ends_in_dot = false;
            }
        }
    }
    let trailing_slash = ends_in_dot || canonical.ends_with('/');
    let mut out = String::with_capacity(canonical.len());
    for segment in &stack {
        out.push('/');
        out.push_str(segment);
    }
    if out.is_empty() || trailing_slash {
        out.push('/');
    }
    Ok(out)
}

/// Servlet containers strip `;params` before resolving dot segments, so
/// `/api/..;/admin` is `/admin` to Tomcat but `/api/{x}/admin` to a matcher
/// that does not. Such segments have no legitimate use; refuse them.
fn is_dot_segment_with_params(segment: &str) -> bool {
    match segment.split_once(';') {
        Some((head, _)) => head == "." || head == "..",
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: &str) -> String {
        match normalize_path(raw) {
            Ok(p) => p.into_string(),
            Err(e) => panic!("{raw:?} should normalize, got error: {e}"),
        }
    }

    #[test]
    fn accepted_paths_have_one_canonical_form() {
        let cases: &[(&str, &str)] = &[
            ("/", "/"),
            ("/a", "/a"),
            ("/a/", "/a/"),
            ("/a/b/c", "/a/b/c"),
            ("//a", "/a"),
            ("//a///b", "/a/b"),
            ("/a//b/", "/a/b/"),
            ("///", "/"),
            ("/a/./b", "/a/b"),
            ("/a/b/.", "/a/b/"),
            ("/a/b/..", "/a/"),
            ("/a/b/../c", "/a/c"),
            ("/a/..", "/"),
            ("/.", "/"),
            ("/./", "/"),
            ("/a//../b", "/b"),
            ("/api/../admin", "/admin"),
            ("/api/%2e%2e/admin", "/admin"),
            ("/api/.%2E/admin", "/admin"),
            ("/api/%2E./admin", "/admin"),
            ("/a/%2e/b", "/a/b"),
            ("/%7E", "/~"),
            ("/%7euser", "/~user"),
            ("/%41%62%2D%5F%2e%30", "/Ab-_.0"),
            ("/a%3ab", "/a%3Ab"),
            ("/a%3Ab", "/a%3Ab"),
            ("/q%3f", "/q%3F"),
            ("/pct%25", "/pct%25"),
            ("/double%252e", "/double%252e"),
            ("/double%252E", "/double%252E"),
            ("/caf%C3%A9", "/caf%C3%A9"),
            ("/caf%c3%a9", "/caf%C3%A9"),
            ("/café", "/caf%C3%A9"),
            ("/😀", "/%F0%9F%98%80"),
            ("/a b", "/a%20b"),
            ("/a?b#c", "/a%3Fb%23c"),
            ("/{x}|[y]", "/%7Bx%7D%7C%5By%5D"),
            ("/v23.0/123/messages", "/v23.0/123/messages"),
            ("/a;b=c/d:e@f!$&'()*+,", "/a;b=c/d:e@f!$&'()*+,"),
            ("/...", "/..."),
            ("/a/.../b", "/a/.../b"),
            ("/.hidden", "/.hidden"),
            ("/..a", "/..a"),
            ("/a;..", "/a;.."),
            ("/%3B..", "/%3B.."),
        ];
        for (raw, want) in cases {
            assert_eq!(ok(raw), *want, "{raw:?} should normalize to {want:?}");
        }
    }

    #[test]
    fn refused_paths_name_the_rule_they_broke() {
        use PathError::*;
        let cases: &[(&str, PathError)] = &[
            ("", NotAbsolute),
            ("a/b", NotAbsolute),
            ("%2Fa", NotAbsolute),
            ("*", NotAbsolute),
            ("http://x/a", NotAbsolute),
            ("/a%2Fb", EncodedSlash { offset: 2 }),
            ("/a%2fb", EncodedSlash { offset: 2 }),
            ("/a%5Cb", EncodedBackslash { offset: 2 }),
            ("/a%5cb", EncodedBackslash { offset: 2 }),
            ("/a\\b", EncodedBackslash { offset: 2 }),
            ("/..\\admin", EncodedBackslash { offset: 3 }),
            ("/a%00", Nul { offset: 2 }),
            ("/a\0", Nul { offset: 2 }),
            ("/a\tb", ControlChar { byte: 9, offset: 2 }),
            (
                "/a%0D%0A",
                ControlChar {
                    byte: 0x0D,
                    offset: 2,
                },
            ),
            (
                "/a%7f",
                ControlChar {
                    byte: 0x7F,
                    offset: 2,
                },
            ),
            (
                "/a\u{7f}",
                ControlChar {
                    byte: 0x7F,
                    offset: 2,
                },
            ),
            ("/%", BadEscape { offset: 1 }),
            ("/a%", BadEscape { offset: 2 }),
            ("/a%4", BadEscape { offset: 2 }),
            ("/%G1", BadEscape { offset: 1 }),
            ("/%1G", BadEscape { offset: 1 }),
            ("/%%41", BadEscape { offset: 1 }),
            ("/%é", BadEscape { offset: 1 }),
            ("/%4é", BadEscape { offset: 1 }),
            ("/%FF", InvalidUtf8),
            ("/%C3", InvalidUtf8),
            ("/%C3/%A9", InvalidUtf8),
            ("/%C0%AE%C0%AE/admin", InvalidUtf8),
            ("/%C3é", InvalidUtf8),
            ("/%ED%A0%80", InvalidUtf8),
            ("/..", AboveRoot),
            ("/../a", AboveRoot),
            ("/a/../..", AboveRoot),
            ("/a/../../b", AboveRoot),
            ("/%2e%2e", AboveRoot),
            ("/.%2E/etc/passwd", AboveRoot),
            ("//..//a", AboveRoot),
            ("/api/..;/admin", AmbiguousDotSegment),
            ("/api/.;x/admin", AmbiguousDotSegment),
            ("/api/%2e%2e;jsessionid=1/admin", AmbiguousDotSegment),
        ];
        for (raw, want) in cases {
            assert_eq!(
                normalize_path(raw),
                Err(*want),
                "{raw:?} should be refused with {want:?}"
            );
        }
    }

    #[test]
    fn length_is_capped_before_and_after_encoding() {
        let at_limit = format!("/{}", "a".repeat(MAX_PATH_LEN - 1));
        assert_eq!(
            ok(&at_limit).len(),
            MAX_PATH_LEN,
            "a path of exactly 8 KiB is accepted"
        );

        let over = format!("/{}", "a".repeat(MAX_PATH_LEN));
        assert_eq!(
            normalize_path(&over),
            Err(PathError::TooLong {
                len: MAX_PATH_LEN + 1,
                max: MAX_PATH_LEN
            }),
            "a raw path over 8 KiB should be refused"
        );

        // 2 bytes raw, 6 bytes encoded: under the cap raw, over it encoded.
        let grows = format!("/{}", "é".repeat(MAX_PATH_LEN / 4));
        assert!(
            grows.len() <= MAX_PATH_LEN,
            "test input should start under the cap"
        );
        assert!(
            matches!(normalize_path(&grows), Err(PathError::TooLong { .. })),
            "a path that grows past 8 KiB when encoded should be refused"
        );

        // Dot segments that shrink a long path do not excuse the raw length.
        let shrinks = format!("/a{}", "/.".repeat(MAX_PATH_LEN));
        assert!(
            matches!(normalize_path(&shrinks), Err(PathError::TooLong { .. })),
            "the raw length is what is capped"
        );
    }

    #[test]
    fn segments_skip_the_leading_empty_one_and_keep_a_trailing_one() {
        let cases: &[(&str, &[&str])] = &[
            ("/", &[""]),
            ("/a", &["a"]),
            ("/a/b", &["a", "b"]),
            ("/a/b/", &["a", "b", ""]),
            ("//a//b//", &["a", "b", ""]),
            ("/v23.0/%41/messages", &["v23.0", "A", "messages"]),
        ];
        for (raw, want) in cases {
            let path = normalize_path(raw).map_err(|e| e.to_string());
            let got: Vec<&str> = match &path {
                Ok(p) => p.segments().collect(),
                Err(e) => panic!("{raw:?} should normalize, got {e}"),
            };
            assert_eq!(&got, want, "segments of {raw:?}");
        }
    }

    #[test]
    fn error_messages_do_not_echo_the_path() {
        let secret = "/customer/alice@example.com/%ZZ";
        let message = match normalize_path(secret) {
            Err(e) => e.to_string(),
            Ok(p) => panic!("{secret:?} should be refused, got {p}"),
        };
        assert!(
            !message.contains("alice"),
            "error message should not echo the path: {message}"
        );
    }

    #[test]
    fn normalization_is_idempotent_on_the_table_cases() {
        for raw in [
            "/a/./b/../c//d/",
            "/caf%c3%a9/%7e",
            "/café/ x",
            "/%2e%2e%2fx",
        ] {
            if let Ok(once) = normalize_path(raw) {
                assert_eq!(
                    normalize_path(once.as_str()),
                    Ok(once.clone()),
                    "normalizing {once} again should change nothing"
                );
            }
        }
    }

    /// Deterministic xorshift so the fuzz corpus is the same on every run.
    struct TestRng(u64);

    impl TestRng {
        fn new(seed: u64) -> Self {
            TestRng(seed | 1)
        }

        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    /// Fragments chosen to hit every branch: escapes, partial escapes next
    /// to multi-byte characters, dots, slashes, controls.
    const FRAGMENTS: &[&str] = &[
        "/", "//", ".", "..", "%", "%2", "%2e", "%2E", "%2f", "%2F", "%5c", "%00", "%41", "%7e",
        "%C3", "%A9", "%FF", "%e", "é", "😀", "\u{7f}", "\0", "\\", ";", "a", "b", "v23.0", "{x}",
        "?", "#", " ", "\t", "%%", "%G", "~", "-", "_", ":", "@", "messages", "api",
    ];

    fn random_path(rng: &mut TestRng) -> String {
        let mut s = String::new();
        if rng.below(8) != 0 {
            s.push('/');
        }
        for _ in 0..rng.below(12) {
            s.push_str(FRAGMENTS[rng.below(FRAGMENTS.len())]);
        }
        s
    }

    #[test]
    fn random_inputs_never_panic_and_accepted_outputs_are_fixed_points() {
        let mut rng = TestRng::new(0x5eed_c0de);
        let mut accepted = 0;
        for _ in 0..20_000 {
            let raw = if rng.below(4) == 0 {
                // Arbitrary bytes, made into a &str the way a lossy caller would.
                let bytes: Vec<u8> = (0..rng.below(24)).map(|_| rng.next() as u8).collect();
                format!("/{}", String::from_utf8_lossy(&bytes))
            } else {
                random_path(&mut rng)
            };
            if let Ok(once) = normalize_path(&raw) {
                accepted += 1;
                let s = once.as_str();
                assert!(s.starts_with('/'), "{raw:?} → {s:?} should start with '/'");
                assert!(!s.contains("//"), "{raw:?} → {s:?} should have no '//'");
                assert!(
                    once.segments().all(|seg| seg != "." && seg != ".."),
                    "{raw:?} → {s:?} should have no dot segments"
                );
                assert!(
                    s.bytes().all(|b| b == b'/' || b == b'%' || is_pchar(b)),
                    "{raw:?} → {s:?} should hold only path characters"
                );
                assert_eq!(
                    normalize_path(s),
                    Ok(once.clone()),
                    "{raw:?} → {s:?} should be a fixed point"
                );
            }
        }
        assert!(
            accepted > 1_000,
            "the corpus should exercise the accept path, got {accepted}"
        );
    }

    #[test]
    fn fast_path_agrees_with_the_full_normalization() {
        let mut inputs: Vec<String> = [
            "/",
            "/a",
            "/a/",
            "/a/b/c",
            "/api/v1/accounts/1/contacts",
            "/a;b=c/d",
            "/~user/x-y_z",
            "/a/.b",
            "/a/..b",
            "/.well-known/x",
            "/a//b",
            "/a/./b",
            "/a/../b",
            "/%41",
            "/a%2Fb",
            "/a b",
            "/é",
            "/a/b/",
            "/:@!$&'()*+,;=",
            "/a/.",
            "/a/..",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        // Deterministic mutations over a small alphabet that exercises every rule.
        let alphabet = [b'/', b'a', b'.', b'%', b'2', b'F', b';', b'~', b' '];
        let mut seed: u64 = 0x5eed;
        for _ in 0..5000 {
            let len = (seed % 12) as usize + 1;
            let mut s = String::from("/");
            for _ in 0..len {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                s.push(char::from(alphabet[(seed >> 33) as usize % alphabet.len()]));
            }
            inputs.push(s);
        }
        for input in &inputs {
            if is_already_canonical(input) {
                assert_eq!(
                    normalize_slow(input).ok().map(|p| p.0),
                    Some(input.clone()),
                    "fast path claims {input:?} is canonical but the full normalization disagrees"
                );
            }
        }
    }
}
