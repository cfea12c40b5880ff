//! Query parameters a scope binding reads (`?phone_number_id=…` on Meta's
//! media endpoints, which then checks the media belongs to that number).
//!
//! What is checked must be what the upstream reads, and query parsers
//! disagree: Rack splits on `&` and `;`, PHP on `&` only and turns `.` and
//! spaces in names into `_`, both read `name[…]` as an array or a hash, and
//! the last of repeated names wins in one, the first in others. So a name
//! is looked up under every spelling those parsers give it, and a request
//! whose query gives it more than one value, or any array spelling, is
//! [`QueryValue::Ambiguous`]: whichever value the upstream took, it might
//! not be the one checked.

use super::method_override::percent_decode;

/// What a query string says of one parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryValue {
    Absent,
    /// One value (repeats of the same value count as one), decoded.
    One(String),
    /// Different values, or an array spelling (`name[]=`, `name[x]=`).
    Ambiguous,
}

/// The values of the parameters a route's scope reads, for one request.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct QueryParams(Vec<(String, QueryValue)>);

/// For routes that read no query parameter.
pub static NO_QUERY_PARAMS: QueryParams = QueryParams(Vec::new());

impl QueryParams {
    /// Reads `names` from `query` (the raw text after `?`, without it).
    pub fn read<'n>(query: &str, names: impl IntoIterator<Item = &'n str>) -> QueryParams {
        QueryParams(
            names
                .into_iter()
                .map(|name| (name.to_string(), value_of(query, name)))
                .collect(),
        )
    }

    pub fn get(&self, name: &str) -> &QueryValue {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map_or(&QueryValue::Absent, |(_, v)| v)
    }
}

/// What `query` says of `name`.
pub fn value_of(query: &str, name: &str) -> QueryValue {
    let mut found = QueryValue::Absent;
    for pair in query.split(['&', ';']) {
        let (raw_key, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = decode(raw_key);
        // PHP's spelling of the name: `.` and spaces become `_`.
        let key = key.replace(['.', ' '], "_");
        let Some(rest) = key.strip_prefix(name) else {
            continue;
        };
        if rest.starts_with('[') {
            return QueryValue::Ambiguous;
        }
        if !rest.is_empty() {
            continue;
        }
        let value = decode(raw_value);
        found = match found {
            QueryValue::Absent => QueryValue::One(value),
            QueryValue::One(v) if v == value => QueryValue::One(v),
            _ => return QueryValue::Ambiguous,
        };
    }
    found
}

/// Percent-escapes and `+` decoded, as a form parser decodes them; bytes
/// that are not UTF-8 afterwards are replaced (such a value matches no
/// claim).
fn decode(raw: &str) -> String {
    String::from_utf8_lossy(&percent_decode(raw.as_bytes(), true)).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(v: &str) -> QueryValue {
        QueryValue::One(v.to_string())
    }

    #[test]
    fn a_parameter_is_read_as_upstream_parsers_read_it() {
        for (query, want) in [
            ("phone_number_id=106", one("106")),
            ("x=1&phone_number_id=106&y=2", one("106")),
            ("phone_number_id=%31%30%36", one("106")),
            ("phone%5Fnumber%5Fid=106", one("106")),
            ("phone.number.id=106", one("106")),
            ("phone+number_id=106", one("106")),
            ("phone_number_id=106&phone_number_id=106", one("106")),
            ("phone_number_id=a+b", one("a b")),
            ("phone_number_id", one("")),
            ("phone_number_id=", one("")),
            ("", QueryValue::Absent),
            ("phone_number_ids=106", QueryValue::Absent),
            ("xphone_number_id=106", QueryValue::Absent),
            (
                "phone_number_id=106&phone_number_id=209",
                QueryValue::Ambiguous,
            ),
            (
                "phone_number_id=106;phone_number_id=209",
                QueryValue::Ambiguous,
            ),
            (
                "phone_number_id=106&phone.number.id=209",
                QueryValue::Ambiguous,
            ),
            ("phone_number_id[]=106", QueryValue::Ambiguous),
            ("phone_number_id%5B0%5D=106", QueryValue::Ambiguous),
            (
                "phone_number_id[a]=106&phone_number_id=106",
                QueryValue::Ambiguous,
            ),
        ] {
            assert_eq!(value_of(query, "phone_number_id"), want, "{query:?}");
        }
    }

    #[test]
    fn odd_escapes_do_not_panic_and_stay_as_written() {
        assert_eq!(value_of("a=%", "a"), one("%"));
        assert_eq!(value_of("a=%4", "a"), one("%4"));
        assert_eq!(value_of("a=%zz", "a"), one("%zz"));
        assert_eq!(value_of("a=%C3%A9", "a"), one("é"));
        assert_eq!(value_of("a=%FF", "a"), one("\u{FFFD}"));
        assert_eq!(value_of("a=é&b", "a"), one("é"));
    }

    #[test]
    fn params_are_read_once_per_request() {
        let q = QueryParams::read("a=1&b=2&b=3", ["a", "b", "c"]);
        assert_eq!(q.get("a"), &one("1"));
        assert_eq!(q.get("b"), &QueryValue::Ambiguous);
        assert_eq!(q.get("c"), &QueryValue::Absent);
        assert_eq!(q.get("d"), &QueryValue::Absent, "not read: absent");
        assert_eq!(NO_QUERY_PARAMS.get("a"), &QueryValue::Absent);
    }
}
