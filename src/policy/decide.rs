//! The decision: one pure function from (policy, route, caller) to a
//! [`Verdict`], called by the proxy, `chatwarden explain`, `chatwarden
//! test` and the admin `/explain` endpoint alike.
//!
//! The hot path stops checking once the decision is known, except that
//! every applicable audit-mode rule is still evaluated so its would-be
//! denial reaches the audit record. It allocates nothing unless a rule
//! name must be recorded; the [`Explanation`] is computed only when read.

use std::net::IpAddr;
use std::time::Duration;

use jiff::Timestamp;

use super::access::{canonical_ip, AccessMode, AccessRule, Applicability, CompiledRule};
use super::error::PolicyError;
use super::explain::Explanation;
use super::mfa::MfaDemand;
use super::permission::Permission;
use super::roles::RoleSet;
use super::scope::ScopeBinding;
use crate::decision::{Decision, Reason};
use crate::identity::Identity;
use crate::request::query::QueryParams;
use crate::route::Params;

/// The compiled authorization policy of one config snapshot.
#[derive(Debug, Clone)]
pub struct Policy {
    pub(crate) roles: RoleSet,
    pub(crate) rules: Vec<CompiledRule>,
}

/// What a route asks of its callers, compiled from its config entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRequirement {
    /// The route's name, as access rules list it.
    pub route: String,
    /// `None`: any authenticated caller.
    pub permission: Option<Permission>,
    pub require_mfa: bool,
    /// Implies `require_mfa`.
    pub mfa_max_age: Option<Duration>,
    pub scope: Vec<ScopeBinding>,
}

/// Who asks, from where, when, for which objects.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub identity: &'a Identity,
    /// As resolved from trusted proxies; IPv4-mapped IPv6 is accepted and
    /// compared as IPv4.
    pub client_ip: IpAddr,
    pub now: Timestamp,
    /// Path parameters of the matched route.
    pub params: &'a Params,
    /// The query parameters its scope bindings read
    /// ([`NO_QUERY_PARAMS`](crate::request::query::NO_QUERY_PARAMS) when
    /// none do).
    pub query: &'a QueryParams,
}

/// The outcome of [`decide`].
#[derive(Debug, Clone)]
pub struct Verdict<'a> {
    pub decision: Decision,
    /// For the audit record's `rules`: the enforcing rule that denied (if a
    /// rule decided) and every audit-mode rule that would have denied, in
    /// config order.
    pub rules: Vec<String>,
    /// Every check and its outcome, computed when read.
    pub explanation: Explanation<'a>,
}

impl RouteRequirement {
    /// Whether a scope binding reads the request's query.
    pub fn reads_query(&self) -> bool {
        self.scope
            .iter()
            .any(|b| b.source == super::scope::ScopeSource::Query)
    }
}

impl Policy {
    /// Compiles the access rules against the roles. `routes` are the names
    /// of every configured route, so a rule naming an unknown route is
    /// refused rather than silently never applying.
    pub fn new(
        roles: RoleSet,
        rules: Vec<AccessRule>,
        routes: &[&str],
    ) -> Result<Policy, PolicyError> {
        let mut compiled: Vec<CompiledRule> = Vec::with_capacity(rules.len());
        for rule in rules {
            if compiled.iter().any(|r| r.name == rule.name) {
                return Err(PolicyError::DuplicateRule { rule: rule.name });
            }
            compiled.push(CompiledRule::compile(rule, &roles, routes)?);
        }
        Ok(Policy {
            roles,
            rules: compiled,
        })
    }

    pub fn roles(&self) -> &RoleSet {
        &self.roles
    }

    /// Access rule names in config order.
    pub fn rule_names(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().map(|r| r.name.as_str())
    }

    /// Whether `name` is an access rule in `mode: audit` (a dry run): in a
    /// verdict's `rules` it is a would-be denial, never the decision.
    pub fn is_dry_run(&self, name: &str) -> bool {
        self.rules
            .iter()
            .any(|r| r.name == name && r.mode == AccessMode::Audit)
    }
}

/// Decides one request. Checks, in order: permission (`permission_denied`)
/// → access rules in config order (`ip_denied`, `outside_hours`,
/// `mfa_required`, `mfa_stale`) → the route's MFA requirement →
/// scope bindings (`scope_denied`). The first denial decides.
pub fn decide<'a>(
    policy: &'a Policy,
    route: &'a RouteRequirement,
    subject: &Subject<'a>,
) -> Verdict<'a> {
    let caller = policy.roles.resolve(&subject.identity.roles);
    let client_ip = canonical_ip(subject.client_ip);
    let mut denial = None;
    if let Some(permission) = &route.permission {
        if policy.roles.granted_to(&caller, permission).is_none() {
            denial = Some(Reason::PermissionDenied);
        }
    }
    let mut rules = Vec::new();
    for rule in &policy.rules {
        let deciding = rule.mode == AccessMode::Enforce && denial.is_none();
        let dry_run = rule.mode == AccessMode::Audit;
        if !(deciding || dry_run)
            || rule.applicability(&caller, &route.route) != Applicability::Applies
        {
            continue;
        }
        if let Some(reason) = rule.refuse(subject.identity, client_ip, subject.now) {
            rules.push(rule.name.clone());
            if deciding {
                denial = Some(reason);
            }
        }
    }
    if denial.is_none() {
        denial = MfaDemand::new(route.require_mfa, route.mfa_max_age)
            .refuse(subject.identity, subject.now);
    }
    if denial.is_none() {
        let holds = |p: &Permission| policy.roles.granted_to(&caller, p).is_some();
        let out_of_scope = route.scope.iter().any(|b| {
            !b.check(subject.identity, subject.params, subject.query, holds)
                .passes()
        });
        if out_of_scope {
            denial = Some(Reason::ScopeDenied);
        }
    }
    let decision = denial.map_or(Decision::Allow, Decision::Deny);
    Verdict {
        decision,
        rules,
        explanation: Explanation::new(policy, route, *subject, decision),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::identity::RoleName;
    use crate::policy::access::parse_network;
    use crate::policy::explain::{RuleEffect, Stage};
    use crate::policy::roles::RoleDef;
    use crate::policy::window::{parse_days, parse_time, parse_time_zone, TimeWindow};
    use crate::request::normalize_path;
    use crate::route::PathTemplate;

    fn names(list: &[&str]) -> Vec<RoleName> {
        list.iter().map(|r| RoleName((*r).to_owned())).collect()
    }

    fn perm(text: &str) -> Permission {
        Permission::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    fn role(name: &str, inherits: &[&str], permissions: &[&str]) -> RoleDef {
        RoleDef {
            name: RoleName(name.to_owned()),
            inherits: names(inherits),
            permissions: permissions.iter().map(|p| (*p).to_owned()).collect(),
        }
    }

    fn rule(name: &str, roles: &[&str], mode: AccessMode) -> AccessRule {
        AccessRule {
            name: name.to_owned(),
            roles: names(roles),
            routes: Vec::new(),
            time: None,
            ip_allow: Vec::new(),
            ip_deny: Vec::new(),
            mfa_max_age: None,
            mode,
        }
    }

    fn nets(list: &[&str]) -> Vec<ipnetwork::IpNetwork> {
        list.iter()
            .map(|n| parse_network(n).unwrap_or_else(|e| panic!("{e}")))
            .collect()
    }

    fn hours(days: &str, from: &str, to: &str) -> TimeWindow {
        let build = || -> Result<TimeWindow, PolicyError> {
            Ok(TimeWindow::new(
                parse_days(&[days])?,
                parse_time(from)?,
                parse_time(to)?,
                parse_time_zone("Europe/London")?,
                Vec::new(),
            ))
        };
        build().unwrap_or_else(|e| panic!("{e}"))
    }

    const ROUTES: [&str; 4] = [
        "send_message",
        "list_conversations",
        "export_contacts",
        "billing",
    ];

    fn policy() -> Policy {
        let roles = RoleSet::compile(vec![
            role(
                "agent",
                &[],
                &["conversations.read", "contacts.read", "whatsapp.send"],
            ),
            role("supervisor", &["agent"], &["conversations.*"]),
            role("admin", &["supervisor"], &["*"]),
            role("finance", &[], &["billing.read"]),
            role("marketing", &[], &["contacts.export"]),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        let rules = vec![
            AccessRule {
                ip_allow: nets(&["192.0.2.0/24", "2001:db8::/32"]),
                ..rule("office-network", &["finance"], AccessMode::Enforce)
            },
            AccessRule {
                routes: vec!["send_message".to_owned(), "list_conversations".to_owned()],
                time: Some(hours("mon-fri", "08:00", "18:00")),
                ..rule("support-hours", &["agent"], AccessMode::Enforce)
            },
            AccessRule {
                mfa_max_age: Some(Duration::from_secs(15 * 60)),
                ..rule("admin-mfa", &["admin"], AccessMode::Enforce)
            },
            AccessRule {
                ip_deny: nets(&["203.0.113.0/24"]),
                ..rule("geo-trial", &[], AccessMode::Audit)
            },
            AccessRule {
                time: Some(hours("all", "07:00", "20:00")),
                ..rule("late-trial", &["agent"], AccessMode::Audit)
            },
            AccessRule {
                ip_deny: nets(&["198.51.100.0/24"]),
                ..rule("blocklist", &[], AccessMode::Enforce)
            },
        ];
        Policy::new(roles, rules, &ROUTES).unwrap_or_else(|e| panic!("policy should compile: {e}"))
    }

    fn requirement(route: &str) -> (RouteRequirement, &'static str, &'static str) {
        let bare = RouteRequirement {
            route: route.to_owned(),
            permission: None,
            require_mfa: false,
            mfa_max_age: None,
            scope: Vec::new(),
        };
        match route {
            "send_message" => (
                RouteRequirement {
                    permission: Some(perm("whatsapp.send")),
                    scope: vec![ScopeBinding {
                        param: "phone_number_id".to_owned(),
                        source: crate::policy::ScopeSource::Path,
                        claim: "phone_number_ids".to_owned(),
                        unless_permission: None,
                    }],
                    ..bare
                },
                "/{version}/{phone_number_id}/messages",
                "/v23.0/1065/messages",
            ),
            "list_conversations" => (
                RouteRequirement {
                    permission: Some(perm("conversations.read")),
                    scope: vec![ScopeBinding {
                        param: "account_id".to_owned(),
                        source: crate::policy::ScopeSource::Path,
                        claim: "account_ids".to_owned(),
                        unless_permission: Some(perm("conversations.read_all")),
                    }],
                    ..bare
                },
                "/api/v1/accounts/{account_id}/conversations",
                "/api/v1/accounts/3/conversations",
            ),
            "export_contacts" => (
                RouteRequirement {
                    permission: Some(perm("contacts.export")),
                    require_mfa: true,
                    mfa_max_age: Some(Duration::from_secs(5 * 60)),
                    ..bare
                },
                "/api/v1/accounts/{account_id}/contacts/export",
                "/api/v1/accounts/3/contacts/export",
            ),
            _ => (
                RouteRequirement {
                    permission: Some(perm("billing.read")),
                    ..bare
                },
                "/billing",
                "/billing",
            ),
        }
    }

    /// Monday 2 March 2026, 10:00 in London (GMT).
    const MONDAY_10: &str = "2026-03-02T10:00:00Z";
    const MONDAY_21: &str = "2026-03-02T21:00:00Z";
    const SATURDAY_10: &str = "2026-03-07T10:00:00Z";

    struct Case {
        name: &'static str,
        route: &'static str,
        roles: &'static [&'static str],
        ip: &'static str,
        at: &'static str,
        /// Seconds since MFA; `None`: no MFA.
        mfa_age: Option<i64>,
        want: Decision,
        rules: &'static [&'static str],
        stage: Option<Stage<'static>>,
    }

    const AGENT_IP: &str = "192.0.2.10";

    fn base(name: &'static str, route: &'static str, roles: &'static [&'static str]) -> Case {
        Case {
            name,
            route,
            roles,
            ip: AGENT_IP,
            at: MONDAY_10,
            mfa_age: None,
            want: Decision::Allow,
            rules: &[],
            stage: None,
        }
    }

    fn deny(
        reason: Reason,
        stage: Stage<'static>,
        rules: &'static [&'static str],
        case: Case,
    ) -> Case {
        Case {
            want: Decision::Deny(reason),
            stage: Some(stage),
            rules,
            ..case
        }
    }

    fn cases() -> Vec<Case> {
        use Reason::*;
        vec![
            base(
                "agent sends from a number in their claim, in hours",
                "send_message",
                &["agent"],
            ),
            Case {
                name: "agent sends from another number",
                ..deny(
                    ScopeDenied,
                    Stage::Scope("phone_number_id"),
                    &[],
                    base("", "send_message", &["agent"]),
                )
            },
            Case {
                name: "agent sends on Saturday",
                at: SATURDAY_10,
                ..deny(
                    OutsideHours,
                    Stage::AccessRule("support-hours"),
                    &["support-hours"],
                    base("", "send_message", &["agent"]),
                )
            },
            Case {
                name: "agent at 21:00: enforced hours decide, the audit rule is a dry-run hit",
                at: MONDAY_21,
                ..deny(
                    OutsideHours,
                    Stage::AccessRule("support-hours"),
                    &["support-hours", "late-trial"],
                    base("", "send_message", &["agent"]),
                )
            },
            Case {
                name: "finance cannot send; the geo trial still records its dry run",
                ip: "203.0.113.5",
                ..deny(
                    PermissionDenied,
                    Stage::Permission,
                    &["geo-trial"],
                    base("", "send_message", &["finance"]),
                )
            },
            Case {
                name: "audit-mode rule alone never denies",
                ip: "203.0.113.5",
                rules: &["geo-trial"],
                ..base("", "send_message", &["agent"])
            },
            base(
                "finance reads billing from the office (IPv4)",
                "billing",
                &["finance"],
            ),
            Case {
                name: "finance from the office via IPv4-mapped IPv6",
                ip: "::ffff:192.0.2.7",
                ..base("", "billing", &["finance"])
            },
            Case {
                name: "finance from the office IPv6 range",
                ip: "2001:db8::5",
                ..base("", "billing", &["finance"])
            },
            Case {
                name: "finance from another IPv6 network",
                ip: "2001:db9::5",
                ..deny(
                    IpDenied,
                    Stage::AccessRule("office-network"),
                    &["office-network"],
                    base("", "billing", &["finance"]),
                )
            },
            Case {
                name: "finance from home IPv4",
                ip: "203.0.113.77",
                ..deny(
                    IpDenied,
                    Stage::AccessRule("office-network"),
                    &["office-network", "geo-trial"],
                    base("", "billing", &["finance"]),
                )
            },
            Case {
                name: "blocklisted address, mapped IPv6",
                ip: "::ffff:198.51.100.9",
                ..deny(
                    IpDenied,
                    Stage::AccessRule("blocklist"),
                    &["blocklist"],
                    base("", "send_message", &["agent"]),
                )
            },
            Case {
                name: "first enforcing rule wins: office network before support hours",
                ip: "203.0.113.9",
                at: SATURDAY_10,
                ..deny(
                    IpDenied,
                    Stage::AccessRule("office-network"),
                    &["office-network", "geo-trial"],
                    base("", "send_message", &["finance", "agent"]),
                )
            },
            base(
                "supervisor lists another account (read_all bypass)",
                "list_conversations",
                &["supervisor"],
            ),
            Case {
                name: "supervisor inherits agent, so agent's hours bind them",
                at: SATURDAY_10,
                ..deny(
                    OutsideHours,
                    Stage::AccessRule("support-hours"),
                    &["support-hours"],
                    base("", "list_conversations", &["supervisor"]),
                )
            },
            Case {
                name: "agent lists an account outside their claim",
                ..deny(
                    ScopeDenied,
                    Stage::Scope("account_id"),
                    &[],
                    base("", "list_conversations", &["agent"]),
                )
            },
            Case {
                name: "admin without MFA",
                ..deny(
                    MfaRequired,
                    Stage::AccessRule("admin-mfa"),
                    &["admin-mfa"],
                    base("", "billing", &["admin"]),
                )
            },
            Case {
                name: "admin with 20-minute-old MFA",
                mfa_age: Some(20 * 60),
                ..deny(
                    MfaStale,
                    Stage::AccessRule("admin-mfa"),
                    &["admin-mfa"],
                    base("", "billing", &["admin"]),
                )
            },
            Case {
                name: "admin with fresh MFA",
                mfa_age: Some(5 * 60),
                ..base("", "list_conversations", &["admin"])
            },
            Case {
                name: "export without MFA",
                ..deny(
                    MfaRequired,
                    Stage::RouteMfa,
                    &[],
                    base("", "export_contacts", &["marketing"]),
                )
            },
            Case {
                name: "export with 6-minute-old MFA",
                mfa_age: Some(6 * 60),
                ..deny(
                    MfaStale,
                    Stage::RouteMfa,
                    &[],
                    base("", "export_contacts", &["marketing"]),
                )
            },
            Case {
                name: "export with fresh MFA",
                mfa_age: Some(60),
                ..base("", "export_contacts", &["marketing"])
            },
            Case {
                name: "unknown token roles are ignored",
                ..base("", "send_message", &["intern", "agent"])
            },
            Case {
                name: "only unknown roles: no permission, not bound by role rules",
                at: SATURDAY_10,
                ..deny(
                    PermissionDenied,
                    Stage::Permission,
                    &[],
                    base("", "send_message", &["intern"]),
                )
            },
        ]
    }

    fn identity(case: &Case, now: Timestamp) -> Identity {
        let own_number = !case.name.contains("another number");
        let own_account = !case.name.contains("outside their claim");
        let mut attributes = BTreeMap::new();
        attributes.insert(
            "phone_number_ids".to_owned(),
            vec![if own_number { "1065" } else { "2077" }.to_owned()],
        );
        attributes.insert(
            "account_ids".to_owned(),
            vec![if own_account { "3" } else { "4" }.to_owned()],
        );
        if case.name.contains("supervisor lists another account") {
            attributes.insert("account_ids".to_owned(), vec!["9".to_owned()]);
        }
        Identity {
            subject: "u-42".to_owned(),
            roles: names(case.roles),
            attributes,
            mfa: case.mfa_age.is_some(),
            auth_time: case.mfa_age.map(|age| now.as_second() - age),
            token_id: None,
            expires_at: now.as_second() + 3600,
        }
    }

    #[test]
    fn decisions_follow_the_documented_order() {
        let policy = policy();
        for case in cases() {
            let now: Timestamp = case.at.parse().unwrap_or_else(|e| panic!("{e}"));
            let who = identity(&case, now);
            let (route, template, path) = requirement(case.route);
            let params = PathTemplate::parse(template)
                .ok()
                .zip(normalize_path(path).ok())
                .and_then(|(t, p)| t.match_path(&p))
                .unwrap_or_else(|| panic!("{path} should match {template}"));
            let subject = Subject {
                identity: &who,
                client_ip: case.ip.parse().unwrap_or_else(|e| panic!("{e}")),
                now,
                params: &params,
                query: &crate::request::query::NO_QUERY_PARAMS,
            };
            let verdict = decide(&policy, &route, &subject);
            assert_eq!(verdict.decision, case.want, "{}: decision", case.name);
            assert_eq!(verdict.rules, case.rules, "{}: recorded rules", case.name);
            let report = verdict.explanation.report();
            assert_eq!(
                report.decision, verdict.decision,
                "{}: the explanation should reach the verdict's decision",
                case.name
            );
            assert_eq!(
                report.decided_by, case.stage,
                "{}: deciding check",
                case.name
            );
            let mut recorded: Vec<&str> = report
                .rules
                .iter()
                .filter(|r| matches!(r.effect, RuleEffect::Decides(_) | RuleEffect::DryRun(_)))
                .map(|r| r.name)
                .collect();
            recorded.sort_unstable();
            let mut from_verdict: Vec<&str> = verdict.rules.iter().map(String::as_str).collect();
            from_verdict.sort_unstable();
            assert_eq!(recorded, from_verdict, "{}: the explanation's deciding rule and dry-run hits should be the verdict's rules", case.name);
        }
    }

    #[test]
    fn explanation_reads_as_a_report() {
        let policy = policy();
        let now: Timestamp = MONDAY_21.parse().unwrap_or_else(|e| panic!("{e}"));
        let case = Case {
            ip: "203.0.113.5",
            ..base("explain", "list_conversations", &["supervisor", "intern"])
        };
        let who = identity(&case, now);
        let (route, template, path) = requirement(case.route);
        let params = PathTemplate::parse(template)
            .ok()
            .zip(normalize_path(path).ok())
            .and_then(|(t, p)| t.match_path(&p))
            .unwrap_or_else(|| panic!("{path} should match {template}"));
        let subject = Subject {
            identity: &who,
            client_ip: case.ip.parse().unwrap_or_else(|e| panic!("{e}")),
            now,
            params: &params,
            query: &crate::request::query::NO_QUERY_PARAMS,
        };
        let verdict = decide(&policy, &route, &subject);
        assert_eq!(
            verdict.explanation.dry_run_hits(),
            vec!["geo-trial", "late-trial"],
            "both audit rules should be dry-run hits"
        );
        let text = verdict.explanation.to_string();
        let expected = "\
decision: deny (outside_hours) by access rule support-hours
route: list_conversations
permission conversations.read: granted to role supervisor by grant conversations.read inherited from agent
ignored token roles (not configured): intern
access rule office-network [enforce]: not applicable (caller has none of its roles)
access rule support-hours [enforce]: applies, DENIES (outside_hours)
access rule admin-mfa [enforce]: not applicable (caller has none of its roles)
access rule geo-trial [audit]: applies, would deny (ip_denied); dry run, not enforced
access rule late-trial [audit]: applies, would deny (outside_hours); dry run, not enforced
access rule blocklist [enforce]: applies, passes
route MFA: not required
scope account_id = 3 in claim account_ids: bypassed by permission
";
        assert_eq!(text, expected, "the explanation should list every check");
    }

    #[test]
    fn policies_refuse_duplicate_rules() {
        let roles = RoleSet::compile(Vec::new()).unwrap_or_else(|e| panic!("{e}"));
        let rules = vec![
            rule("a", &[], AccessMode::Enforce),
            rule("a", &[], AccessMode::Audit),
        ];
        assert_eq!(
            Policy::new(roles, rules, &[])
                .err()
                .map(|e| e.to_string())
                .as_deref(),
            Some("access rule `a` is defined more than once"),
            "two rules with one name should be refused: audit records name rules"
        );
    }
}
