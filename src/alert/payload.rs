//! The fired alert, as a webhook receives it (JSON) and the log sink
//! prints it.
//!
//! It names the rule, what was counted and how often, and a few request ids
//! to look up with `chatwarden audit query`. The key is a staff subject, a
//! client address or a route name: never a token, an upstream credential or
//! customer data (rules cannot count per anything else).

use serde::{Serialize, Serializer};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::rule::KeyKind;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    /// The rule's name.
    pub rule: String,
    /// `sub`, `ip` or `route`.
    #[serde(serialize_with = "ser_key")]
    pub key: KeyKind,
    /// The subject, address or route name that reached the threshold.
    pub value: String,
    /// Matching requests counted for `value` when the rule fired (the
    /// sliding-window estimate, see `counter`).
    pub count: u32,
    pub threshold: u32,
    pub window_secs: u64,
    /// Arrival of the oldest and newest request counted, RFC 3339 UTC (ms).
    #[serde(serialize_with = "ser_ts")]
    pub first: OffsetDateTime,
    #[serde(serialize_with = "ser_ts")]
    pub last: OffsetDateTime,
    /// The config version of the request that fired it.
    pub config_version: String,
    /// The most recent counted requests, oldest first (at most
    /// [`super::SAMPLE_IDS`]); the last is the one that fired.
    pub request_ids: Vec<String>,
}

impl Alert {
    /// One JSON object, as POSTed to webhooks.
    pub fn to_json(&self) -> String {
        // Serializing plain strings and numbers cannot fail; fall back to
        // an empty object rather than panic.
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_string())
    }
}

fn ser_key<S: Serializer>(key: &KeyKind, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(key.as_str())
}

fn ser_ts<S: Serializer>(ts: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339_millis(*ts))
}

/// `2026-11-23T19:08:09.945Z`, the audit record's format, so the times can
/// be pasted into `audit query --from/--to`.
pub(super) fn rfc3339_millis(ts: OffsetDateTime) -> String {
    let ts = ts.to_offset(time::UtcOffset::UTC);
    let millis = ts.millisecond();
    let whole = ts.replace_nanosecond(0).unwrap_or(ts);
    match whole.format(&Rfc3339) {
        // `Rfc3339` prints `...:09Z` for whole seconds.
        Ok(text) => match text.strip_suffix('Z') {
            Some(head) => format!("{head}.{millis:03}Z"),
            None => text,
        },
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn serializes_what_an_operator_needs_and_nothing_else() {
        let alert = Alert {
            rule: "repeated-denials".into(),
            key: KeyKind::Subject,
            value: "mallory".into(),
            count: 5,
            threshold: 5,
            window_secs: 600,
            first: datetime!(2026-11-23 19:08:09.945 UTC),
            last: datetime!(2026-11-23 19:10:00 UTC),
            config_version: "2990c3e864a0".into(),
            request_ids: vec!["a1".into(), "b2".into()],
        };
        let v: serde_json::Value =
            serde_json::from_str(&alert.to_json()).expect("the payload is JSON");
        assert_eq!(
            v,
            serde_json::json!({
                "rule": "repeated-denials", "key": "sub", "value": "mallory",
                "count": 5, "threshold": 5, "window_secs": 600,
                "first": "2026-11-23T19:08:09.945Z", "last": "2026-11-23T19:10:00.000Z",
                "config_version": "2990c3e864a0", "request_ids": ["a1", "b2"]
            })
        );
    }
}
