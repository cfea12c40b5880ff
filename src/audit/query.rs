//! `chatwarden audit query FILE [filters]`: the records an investigator is
//! after ("everything alice did yesterday", "every denial on exports").
//! Streams the file; never loads it whole.

use std::io::{self, BufRead, Write};

use serde_json::Value;

/// Conditions a record must meet; every set field must match.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub sub: Option<String>,
    pub decision: Option<String>,
    pub reason: Option<String>,
    pub route: Option<String>,
    pub request_id: Option<String>,
    pub client_ip: Option<String>,
    /// RFC 3339 lower bound on `ts` (inclusive).
    pub since: Option<String>,
    /// RFC 3339 upper bound on `ts` (exclusive).
    pub until: Option<String>,
}

/// Outcome of a query run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueryStats {
    pub scanned: u64,
    pub matched: u64,
    /// Lines that were not JSON objects (reported, never fatal).
    pub unreadable: u64,
}

impl Filter {
    pub fn matches(&self, record: &Value) -> bool {
        let field_is = |name: &str, want: &Option<String>| match want {
            None => true,
            Some(w) => record.get(name).and_then(Value::as_str) == Some(w.as_str()),
        };
        let ts = record.get("ts").and_then(Value::as_str).unwrap_or_default();
        // Timestamps are fixed-width RFC 3339 UTC (`…T…Z` with ms), so text
        // order is time order.
        let after_since = self.since.as_deref().is_none_or(|s| ts >= s);
        let before_until = self.until.as_deref().is_none_or(|u| ts < u);
        field_is("sub", &self.sub)
            && field_is("decision", &self.decision)
            && field_is("reason", &self.reason)
            && field_is("route", &self.route)
            && field_is("request_id", &self.request_id)
            && field_is("client_ip", &self.client_ip)
            && after_since
            && before_until
    }
}

/// Copy every matching record line from `input` to `out`, unchanged.
pub fn run(filter: &Filter, input: impl BufRead, mut out: impl Write) -> io::Result<QueryStats> {
    let mut stats = QueryStats::default();
    for line in input.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        stats.scanned += 1;
        match serde_json::from_str::<Value>(&line) {
            Ok(v) if v.is_object() => {
                if filter.matches(&v) {
                    stats.matched += 1;
                    writeln!(out, "{line}")?;
                }
            }
            _ => stats.unreadable += 1,
        }
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"{"ts":"2026-11-23T09:00:00.000Z","sub":"alice","decision":"allow","reason":null,"route":"contacts.list"}
{"ts":"2026-11-23T10:00:00.000Z","sub":"bob","decision":"deny","reason":"outside_hours","route":"contacts.export"}
not json
{"ts":"2026-11-24T09:00:00.000Z","sub":"alice","decision":"deny","reason":"rate_limited","route":"contacts.export"}
"#;

    fn query(f: Filter) -> (Vec<String>, QueryStats) {
        let mut out = Vec::new();
        let stats = run(&f, FILE.as_bytes(), &mut out).expect("query");
        let text = String::from_utf8(out).expect("utf8");
        (text.lines().map(str::to_string).collect(), stats)
    }

    #[test]
    fn filters_combine() {
        let (lines, stats) = query(Filter {
            sub: Some("alice".into()),
            decision: Some("deny".into()),
            ..Filter::default()
        });
        assert_eq!(lines.len(), 1, "only alice's denial: {lines:?}");
        assert!(lines[0].contains("rate_limited"));
        assert_eq!(stats.unreadable, 1, "the junk line is counted, not fatal");
        assert_eq!(stats.scanned, 4);
    }

    #[test]
    fn time_bounds_are_half_open() {
        let (lines, _) = query(Filter {
            since: Some("2026-11-23T10:00:00.000Z".into()),
            until: Some("2026-11-24T09:00:00.000Z".into()),
            ..Filter::default()
        });
        assert_eq!(
            lines.len(),
            1,
            "since is inclusive, until exclusive: {lines:?}"
        );
        assert!(lines[0].contains("bob"));
    }
}
