//! Helpers the unit tests beside the code share.

use http::{HeaderMap, HeaderName, HeaderValue};

/// A header map of `(name, value)` pairs, appended in order (a name may
/// repeat).
pub fn header_map(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value) in pairs {
        h.append(
            HeaderName::from_bytes(name.as_bytes()).expect("test header name"),
            HeaderValue::from_str(value).expect("test header value"),
        );
    }
    h
}
