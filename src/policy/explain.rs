//! Why a decision came out as it did: every check, its outcome, and which
//! one decided — what `chatwarden explain` prints and `/explain` returns.
//!
//! An [`Explanation`] only holds its inputs; [`Explanation::report`]
//! evaluates every check (without the hot path's short-cuts) when someone
//! asks, so the proxy pays nothing for it. Both paths use the same check
//! functions, and tests hold the report's decision equal to the verdict's.

use std::fmt;

use super::access::{canonical_ip, AccessMode, Applicability};
use super::decide::{Policy, RouteRequirement, Subject};
use super::mfa::MfaDemand;
use super::permission::Permission;
use super::roles::GrantedBy;
use super::scope::{ScopeOutcome, ScopeSource};
use crate::decision::{Decision, Reason};
use crate::identity::RoleName;

/// The inputs of one decision, ready to be reported.
#[derive(Debug, Clone)]
pub struct Explanation<'a> {
    policy: &'a Policy,
    route: &'a RouteRequirement,
    subject: Subject<'a>,
    decision: Decision,
}

/// Every check of one decision, fully evaluated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report<'a> {
    /// The decision, as every check below implies it.
    pub decision: Decision,
    pub decided_by: Option<Stage<'a>>,
    pub route: &'a str,
    pub permission: PermissionCheck<'a>,
    /// Token roles the config does not define (they grant nothing).
    pub unknown_roles: Vec<&'a RoleName>,
    pub rules: Vec<RuleCheck<'a>>,
    /// Audit-mode rules that would have denied.
    pub dry_run_hits: Vec<&'a str>,
    pub route_mfa: MfaCheck,
    pub scope: Vec<ScopeCheck<'a>>,
}

/// The check that decided a denial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage<'a> {
    Permission,
    AccessRule(&'a str),
    RouteMfa,
    /// The path parameter whose binding failed first.
    Scope(&'a str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PermissionCheck<'a> {
    NotRequired,
    Granted {
        permission: &'a Permission,
        by: GrantedBy<'a>,
    },
    Denied {
        permission: &'a Permission,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleCheck<'a> {
    pub name: &'a str,
    pub mode: AccessMode,
    pub effect: RuleEffect,
}

/// What one access rule did to the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleEffect {
    NotApplicable(Applicability),
    Passes,
    /// This enforcing rule's denial is the decision.
    Decides(Reason),
    /// An enforcing rule that fails, but an earlier check already decided.
    AlsoDenies(Reason),
    /// An audit-mode rule that would deny: recorded, not enforced.
    DryRun(Reason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MfaCheck {
    pub demand: MfaDemand,
    pub refusal: Option<Reason>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScopeCheck<'a> {
    pub param: &'a str,
    pub source: ScopeSource,
    pub claim: &'a str,
    /// The parameter's value in this request, if the route has it.
    pub value: Option<&'a str>,
    pub outcome: ScopeOutcome,
}

impl<'a> Explanation<'a> {
    pub(crate) fn new(
        policy: &'a Policy,
        route: &'a RouteRequirement,
        subject: Subject<'a>,
        decision: Decision,
    ) -> Self {
        Explanation {
            policy,
            route,
            subject,
            decision,
        }
    }

    /// The decision the proxy acts on.
    pub fn decision(&self) -> Decision {
        self.decision
    }

    /// Evaluates and lists every check.
    pub fn report(&self) -> Report<'a> {
        let Explanation {
            policy,
            route,
            subject,
            ..
        } = *self;
        let roles = &policy.roles;
        let caller = roles.resolve(&subject.identity.roles);
        let client_ip = canonical_ip(subject.client_ip);
        let mut decided_by = None;
        let mut decision = Decision::Allow;
        let mut deny = |stage: Stage<'a>, reason: Reason| {
            if decided_by.is_none() {
                decided_by = Some(stage);
                decision = Decision::Deny(reason);
                true
            } else {
                false
            }
        };

        let permission = match &route.permission {
            None => PermissionCheck::NotRequired,
            Some(permission) => match roles.granted_to(&caller, permission) {
                Some(by) => PermissionCheck::Granted { permission, by },
                None => {
                    deny(Stage::Permission, Reason::PermissionDenied);
                    PermissionCheck::Denied { permission }
                }
            },
        };

        let mut dry_run_hits = Vec::new();
        let rules = policy
            .rules
            .iter()
            .map(|rule| {
                let applicability = rule.applicability(&caller, &route.route);
                let effect = if applicability != Applicability::Applies {
                    RuleEffect::NotApplicable(applicability)
                } else {
                    match (
                        rule.refuse(subject.identity, client_ip, subject.now),
                        rule.mode,
                    ) {
                        (None, _) => RuleEffect::Passes,
                        (Some(reason), AccessMode::Audit) => {
                            dry_run_hits.push(rule.name.as_str());
                            RuleEffect::DryRun(reason)
                        }
                        (Some(reason), AccessMode::Enforce) => {
                            if deny(Stage::AccessRule(&rule.name), reason) {
                                RuleEffect::Decides(reason)
                            } else {
                                RuleEffect::AlsoDenies(reason)
                            }
                        }
                    }
                };
                RuleCheck {
                    name: &rule.name,
                    mode: rule.mode,
                    effect,
                }
            })
            .collect();

        let demand = MfaDemand::new(route.require_mfa, route.mfa_max_age);
        let refusal = demand.refuse(subject.identity, subject.now);
        if let Some(reason) = refusal {
            deny(Stage::RouteMfa, reason);
        }

        let holds = |p: &Permission| roles.granted_to(&caller, p).is_some();
        let scope = route
            .scope
            .iter()
            .map(|binding| {
                let outcome = binding.check(subject.identity, subject.params, subject.query, holds);
                if !outcome.passes() {
                    deny(Stage::Scope(&binding.param), Reason::ScopeDenied);
                }
                ScopeCheck {
                    param: &binding.param,
                    source: binding.source,
                    claim: &binding.claim,
                    value: binding.value(subject.params, subject.query).ok(),
                    outcome,
                }
            })
            .collect();

        let unknown_roles = subject
            .identity
            .roles
            .iter()
            .filter(|name| !roles.contains(&name.0))
            .collect();

        Report {
            decision,
            decided_by,
            route: &route.route,
            permission,
            unknown_roles,
            rules,
            dry_run_hits,
            route_mfa: MfaCheck { demand, refusal },
            scope,
        }
    }

    /// Audit-mode rules that would have denied this request.
    pub fn dry_run_hits(&self) -> Vec<&'a str> {
        self.report().dry_run_hits
    }
}

impl fmt::Display for Explanation<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.report().fmt(f)
    }
}

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.decision, self.decided_by) {
            (Decision::Allow, _) => writeln!(f, "decision: allow")?,
            (Decision::Deny(reason), Some(stage)) => {
                writeln!(f, "decision: deny ({reason}) by {stage}")?
            }
            (Decision::Deny(reason), None) => writeln!(f, "decision: deny ({reason})")?,
        }
        writeln!(f, "route: {}", self.route)?;
        match self.permission {
            PermissionCheck::NotRequired => writeln!(f, "permission: none required")?,
            PermissionCheck::Granted { permission, by } => {
                write!(f, "permission {permission}: granted to role {}", by.role)?;
                if by.defined_in == by.role {
                    writeln!(f, " by grant {}", by.grant)?;
                } else {
                    writeln!(f, " by grant {} inherited from {}", by.grant, by.defined_in)?;
                }
            }
            PermissionCheck::Denied { permission } => writeln!(
                f,
                "permission {permission}: DENIED, no role of the caller grants it"
            )?,
        }
        if !self.unknown_roles.is_empty() {
            let names: Vec<&str> = self.unknown_roles.iter().map(|r| r.0.as_str()).collect();
            writeln!(
                f,
                "ignored token roles (not configured): {}",
                names.join(", ")
            )?;
        }
        if self.rules.is_empty() {
            writeln!(f, "access rules: none configured")?;
        }
        for rule in &self.rules {
            let mode = match rule.mode {
                AccessMode::Enforce => "enforce",
                AccessMode::Audit => "audit",
            };
            write!(f, "access rule {} [{mode}]: ", rule.name)?;
            match rule.effect {
                RuleEffect::NotApplicable(Applicability::OtherRoles) => {
                    writeln!(f, "not applicable (caller has none of its roles)")?
                }
                RuleEffect::NotApplicable(Applicability::OtherRoute) => {
                    writeln!(f, "not applicable (route not listed)")?
                }
                RuleEffect::NotApplicable(Applicability::Applies) | RuleEffect::Passes => {
                    writeln!(f, "applies, passes")?
                }
                RuleEffect::Decides(reason) => writeln!(f, "applies, DENIES ({reason})")?,
                RuleEffect::AlsoDenies(reason) => {
                    writeln!(f, "applies, would also deny ({reason})")?
                }
                RuleEffect::DryRun(reason) => {
                    writeln!(f, "applies, would deny ({reason}); dry run, not enforced")?
                }
            }
        }
        write!(f, "route MFA: ")?;
        match (self.route_mfa.demand, self.route_mfa.refusal) {
            (MfaDemand::None, _) => writeln!(f, "not required")?,
            (MfaDemand::Any, None) => writeln!(f, "required, present")?,
            (MfaDemand::Fresh(age), None) => {
                writeln!(f, "required within {}s, fresh", age.as_secs())?
            }
            (_, Some(reason)) => writeln!(f, "DENIED ({reason})")?,
        }
        if self.scope.is_empty() {
            writeln!(f, "scope: no bindings")?;
        }
        for check in &self.scope {
            writeln!(
                f,
                "scope {}{} = {} in claim {}: {}",
                if check.source == ScopeSource::Query {
                    "?"
                } else {
                    ""
                },
                check.param,
                check.value.unwrap_or("(missing)"),
                check.claim,
                check.outcome
            )?;
        }
        Ok(())
    }
}

impl fmt::Display for Stage<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stage::Permission => f.write_str("permission"),
            Stage::AccessRule(name) => write!(f, "access rule {name}"),
            Stage::RouteMfa => f.write_str("route MFA requirement"),
            Stage::Scope(param) => write!(f, "scope binding {param}"),
        }
    }
}
