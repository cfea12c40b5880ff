//! Format suffixes: a path that names one thing to the gateway and another
//! to the upstream.
//!
//! Rails (Chatwoot is a Rails app) reads a dot in the last path segment as
//! the response format: `/contacts/search.json` runs the `search` action,
//! `/contacts/7.json` shows contact 7. A dynamic segment never holds a dot
//! there, so any dot in the last segment is either a format or a 404. The
//! gateway's templates take `search.json` for the `{id}` of
//! `/contacts/{id}`, so the request would be decided by the show route's
//! policy (no rate limit of its own, a redaction rule for one contact)
//! while the upstream runs a search. Such a request is refused for an
//! upstream that reads suffixes (`format_suffix: refuse`, the default); a
//! dot anywhere else in the path is no such risk (Rails matches no route).

use super::NormalizedPath;

/// The last segment of `path`, when it has a dot the upstream could read
/// as a format suffix.
pub fn format_suffix(path: &NormalizedPath) -> Option<&str> {
    // The path holds no query; its last segment is after its last `/`.
    let last = path.as_str().rsplit('/').next()?;
    last.contains('.').then_some(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::normalize_path;

    fn suffix_of(raw: &str) -> Option<String> {
        let path = normalize_path(raw).unwrap_or_else(|e| panic!("{raw}: {e:?}"));
        format_suffix(&path).map(str::to_string)
    }

    #[test]
    fn a_dot_in_the_last_segment_is_a_suffix() {
        assert_eq!(
            suffix_of("/api/v1/accounts/1/contacts/search.json").as_deref(),
            Some("search.json")
        );
        assert_eq!(suffix_of("/contacts/7.csv").as_deref(), Some("7.csv"));
        assert_eq!(suffix_of("/contacts/.json").as_deref(), Some(".json"));
        assert_eq!(suffix_of("/contacts/7.").as_deref(), Some("7."));
    }

    #[test]
    fn an_encoded_dot_is_a_dot() {
        // Normalization decodes unreserved characters, `.` among them.
        assert_eq!(
            suffix_of("/contacts/search%2Ejson").as_deref(),
            Some("search.json")
        );
        assert_eq!(
            suffix_of("/contacts/search%2ejson").as_deref(),
            Some("search.json")
        );
    }

    #[test]
    fn dots_elsewhere_and_plain_paths_are_not() {
        assert_eq!(suffix_of("/v23.0/106540352242922/messages"), None);
        assert_eq!(suffix_of("/api/v1/accounts/1/contacts/search"), None);
        assert_eq!(suffix_of("/api/v1/accounts/1/contacts/"), None);
        assert_eq!(suffix_of("/"), None);
    }
}
