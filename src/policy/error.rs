//! Why a policy could not be compiled.
//!
//! Every variant is a configuration mistake found while the snapshot is
//! built, never on the request path. Messages carry no location: the config
//! compiler prefixes `file:line:col: ` itself, so each message reads well
//! after such a prefix.

use crate::identity::RoleName;

/// A policy configuration error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("permission `{text}` is invalid: {why}")]
    BadPermission { text: String, why: &'static str },
    #[error("role `{role}` is defined more than once")]
    DuplicateRole { role: RoleName },
    #[error("role `{role}` inherits unknown role `{inherits}`")]
    UnknownInheritedRole { role: RoleName, inherits: RoleName },
    #[error("role inheritance cycle: {cycle}")]
    InheritanceCycle { cycle: String },
    #[error("access rule `{rule}` names unknown role `{role}`")]
    UnknownRuleRole { rule: String, role: RoleName },
    #[error("access rule `{rule}` names unknown route `{route}`")]
    UnknownRuleRoute { rule: String, route: String },
    #[error("access rule `{rule}` is defined more than once")]
    DuplicateRule { rule: String },
    #[error(
        "day `{text}` is invalid: use mon..sun, a range like mon-fri, weekdays, weekend or all"
    )]
    BadDay { text: String },
    #[error("a time window needs at least one day")]
    NoDays,
    #[error("time `{text}` is invalid: use HH:MM (24-hour clock, 00:00 to 23:59)")]
    BadTime { text: String },
    #[error("date `{text}` is invalid: use YYYY-MM-DD")]
    BadDate { text: String },
    #[error("time zone `{name}` is unknown: use an IANA name such as Europe/London")]
    BadTimeZone { name: String },
    #[error("network `{text}` is invalid: use CIDR notation such as 10.0.0.0/8 or 2001:db8::/32")]
    BadNetwork { text: String },
    #[error("JSON selector `{text}` is invalid: {why}")]
    BadSelector { text: String, why: &'static str },
    #[error("field path `{text}` is invalid: use dotted names such as meta.assignee.id")]
    BadFieldPath { text: String },
    #[error("row filter in {mode} mode needs a selector that {needs}, not `{selector}`")]
    SelectorModeMismatch {
        selector: String,
        mode: &'static str,
        needs: &'static str,
    },
}
