//! Authorization: the one decision function behind the proxy,
//! `chatwarden explain`, `chatwarden test` and the admin `/explain`.
//!
//! Pure code: no pingora, no config loader. The config compiler builds a
//! [`Policy`] (roles + access rules) and one [`RouteRequirement`] per route
//! when the snapshot is built; [`decide`] runs per request.
//!
//! - [`permission`]: dotted permission names and wildcard grants.
//! - [`roles`]: roles with transitive inheritance, flattened at compile time.
//! - [`access`]: the `access:` rules (roles, routes, IP, hours, MFA age).
//! - [`window`]: wall-clock time windows in IANA zones, DST-correct.
//! - [`mfa`]: MFA presence and freshness.
//! - [`scope`]: object-level authorization (path-parameter bindings) and
//!   row-filter planning for list responses.
//! - [`decide`]: the decision; [`explain`]: every check, for humans.
//!
//! # Semantics
//!
//! **Order.** Permission (`permission_denied`) → access rules in config
//! order → the route's own MFA requirement (`mfa_required`, `mfa_stale`) →
//! scope bindings in route order (`scope_denied`). The first denial
//! decides the reason.
//!
//! **Permissions.** A route without a permission admits any authenticated
//! caller. A caller holds the union of the grants of their configured
//! roles, inherited grants included; token roles the config does not define
//! grant nothing and are listed in the explanation.
//!
//! **Access rules.** A rule *applies* when the caller holds one of its
//! roles (or it names none) and the route is one of its routes (or it names
//! none). "Holds" includes inheritance: a rule for `agent` also binds
//! `supervisor` if `supervisor` inherits `agent` — a role that gets a
//! role's powers gets its restrictions too. An applicable rule fails on the
//! first of: client IP in `ip_deny`; `ip_allow` non-empty and the IP in
//! none of it (both `ip_denied`); the time outside `time` (`outside_hours`);
//! `mfa_max_age` set and the caller without MFA (`mfa_required`) or with an
//! `auth_time` missing or older than the limit (`mfa_stale`). Rules only
//! ever restrict: passing a rule grants nothing.
//!
//! **Audit mode.** An audit-mode rule never denies. Whenever it applies and
//! would deny, its name is recorded (the verdict's `rules`, hence the audit
//! record; the explanation's `dry_run_hits`), even if the request is denied
//! for another reason — the point is to learn what the rule would do.
//! The first enforcing rule that fails decides; later failing enforcing
//! rules are shown by `explain` but not recorded in `rules`.
//!
//! **Addresses.** IPv4-mapped IPv6 client addresses and networks are
//! compared as IPv4.
//!
//! **Time.** See [`window`]: `days` name the day a window starts, `from`
//! is inclusive, `to` exclusive, `to <= from` crosses midnight, closed
//! dates close the local calendar day.
//!
//! **Scope.** A binding compares the path parameter's text with the
//! caller's claim values exactly; a missing claim or parameter denies; the
//! binding's `unless_permission` skips it.

pub mod access;
pub mod body_scope;
pub mod decide;
pub mod error;
pub mod explain;
pub mod mfa;
pub mod ownership;
pub mod permission;
pub mod roles;
pub mod scope;
pub mod window;

pub use access::{canonical_ip, parse_network, AccessMode, AccessRule, Applicability};
pub use decide::{decide, Policy, RouteRequirement, Subject, Verdict};
pub use error::PolicyError;
pub use explain::{
    Explanation, MfaCheck, PermissionCheck, Report, RuleCheck, RuleEffect, ScopeCheck, Stage,
};
pub use mfa::MfaDemand;
pub use ownership::{
    judge, Found, LookupError, OwnerCache, OwnerCheck, Ownership, MAX_LOOKUP_BYTES,
};
pub use permission::{Permission, PermissionGrant};
pub use roles::{GrantedBy, RoleDef, RoleSet};
pub use scope::{
    item_allowed, plan_row_filter, FieldPath, FilterMode, HiddenLabel, ItemSelector, LabelRule,
    MessageFilter, NoObject, OwnerMatch, RowFilter, RowFilterPlan, ScopeBinding, ScopeOutcome,
    ScopeSource, SelectorStep,
};
pub use window::{parse_date, parse_days, parse_time, parse_time_zone, DaySet, TimeWindow};
