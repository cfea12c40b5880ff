//! Access rules: the `access:` section — who may call which routes from
//! where, when, and how recently authenticated.
//!
//! Compiled once into [`CompiledRule`]s: role names become a bitset of the
//! roles the rule binds (the named roles and every role inheriting from
//! them), networks are canonicalized, and unknown roles or routes are
//! refused, because a misspelt name would make an enforcing rule silently
//! apply to nobody (fail open).

use std::net::IpAddr;
use std::time::Duration;

use ipnetwork::IpNetwork;
use jiff::Timestamp;

use super::error::PolicyError;
use super::mfa::MfaDemand;
use super::roles::{CallerRoles, RoleMask, RoleSet};
use super::window::TimeWindow;
use crate::decision::Reason;
use crate::identity::{Identity, RoleName};
pub use crate::request::client_ip::{canonical_ip, canonical_network};

/// One access rule as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRule {
    pub name: String,
    /// Roles the rule binds; empty binds everyone.
    pub roles: Vec<RoleName>,
    /// Route names the rule covers; empty covers every route.
    pub routes: Vec<String>,
    /// Allowed hours; outside them: `outside_hours`.
    pub time: Option<TimeWindow>,
    /// If non-empty, the client must be in one of these: `ip_denied`.
    pub ip_allow: Vec<IpNetwork>,
    /// The client must be in none of these: `ip_denied`.
    pub ip_deny: Vec<IpNetwork>,
    /// MFA no older than this: `mfa_required` / `mfa_stale`.
    pub mfa_max_age: Option<Duration>,
    pub mode: AccessMode,
}

/// Whether a rule's denial stops the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessMode {
    /// Deny.
    Enforce,
    /// Dry run: never deny; a would-be denial is recorded in the audit
    /// record's `rules`.
    Audit,
}

/// Why a rule does or does not bind a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applicability {
    Applies,
    /// The caller holds none of the rule's roles (directly or inherited).
    OtherRoles,
    /// The route is not among the rule's routes.
    OtherRoute,
}

/// Parses a CIDR (`10.0.0.0/8`, `2001:db8::/32`, or a bare address) as used
/// in `ip_allow`, `ip_deny`; IPv4-mapped IPv6 networks become IPv4.
pub fn parse_network(text: &str) -> Result<IpNetwork, PolicyError> {
    text.trim()
        .parse::<IpNetwork>()
        .map(canonical_network)
        .map_err(|_| PolicyError::BadNetwork {
            text: text.to_owned(),
        })
}

/// An access rule ready for requests.
#[derive(Debug, Clone)]
pub(crate) struct CompiledRule {
    pub(crate) name: String,
    pub(crate) mode: AccessMode,
    /// `None` binds everyone.
    roles: Option<RoleMask>,
    routes: Vec<String>,
    time: Option<TimeWindow>,
    ip_allow: Vec<IpNetwork>,
    ip_deny: Vec<IpNetwork>,
    mfa: MfaDemand,
}

impl CompiledRule {
    pub(crate) fn compile(
        rule: AccessRule,
        roles: &RoleSet,
        known_routes: &[&str],
    ) -> Result<CompiledRule, PolicyError> {
        let mask = if rule.roles.is_empty() {
            None
        } else {
            let mut mask = RoleMask::with_len(roles.len());
            for name in &rule.roles {
                let id = roles
                    .id(&name.0)
                    .ok_or_else(|| PolicyError::UnknownRuleRole {
                        rule: rule.name.clone(),
                        role: name.clone(),
                    })?;
                mask.union_with(&roles.heirs_of(id));
            }
            Some(mask)
        };
        if let Some(route) = rule
            .routes
            .iter()
            .find(|r| !known_routes.contains(&r.as_str()))
        {
            return Err(PolicyError::UnknownRuleRoute {
                rule: rule.name.clone(),
                route: route.clone(),
            });
        }
        Ok(CompiledRule {
            name: rule.name,
            mode: rule.mode,
            roles: mask,
            routes: rule.routes,
            time: rule.time,
            ip_allow: rule.ip_allow.into_iter().map(canonical_network).collect(),
            ip_deny: rule.ip_deny.into_iter().map(canonical_network).collect(),
            mfa: MfaDemand::new(false, rule.mfa_max_age),
        })
    }

    pub(crate) fn applicability(&self, caller: &CallerRoles, route: &str) -> Applicability {
        if let Some(mask) = &self.roles {
            if !caller.any_in(mask) {
                return Applicability::OtherRoles;
            }
        }
        if !self.routes.is_empty() && !self.routes.iter().any(|r| r == route) {
            return Applicability::OtherRoute;
        }
        Applicability::Applies
    }

    /// The first failing condition, checked in the order ip_deny, ip_allow,
    /// time, MFA; `None` if the request passes. `client_ip` must be
    /// canonical ([`canonical_ip`]).
    pub(crate) fn refuse(
        &self,
        identity: &Identity,
        client_ip: IpAddr,
        now: Timestamp,
    ) -> Option<Reason> {
        if self.ip_deny.iter().any(|net| net.contains(client_ip)) {
            return Some(Reason::IpDenied);
        }
        if !self.ip_allow.is_empty() && !self.ip_allow.iter().any(|net| net.contains(client_ip)) {
            return Some(Reason::IpDenied);
        }
        if let Some(window) = &self.time {
            if !window.contains(now) {
                return Some(Reason::OutsideHours);
            }
        }
        self.mfa.refuse(identity, now)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::policy::roles::RoleDef;

    fn ip(text: &str) -> IpAddr {
        text.parse()
            .unwrap_or_else(|e| panic!("{text:?} should be an address: {e}"))
    }

    fn nets(list: &[&str]) -> Vec<IpNetwork> {
        list.iter()
            .map(|n| parse_network(n).unwrap_or_else(|e| panic!("{n:?}: {e}")))
            .collect()
    }

    fn identity() -> Identity {
        Identity {
            subject: "u-1".to_owned(),
            roles: Vec::new(),
            attributes: BTreeMap::new(),
            mfa: false,
            auth_time: None,
            token_id: None,
            expires_at: 2_000_000_000,
        }
    }

    fn rule(allow: &[&str], deny: &[&str]) -> CompiledRule {
        let roles = RoleSet::compile(Vec::new()).unwrap_or_else(|e| panic!("{e}"));
        CompiledRule::compile(
            AccessRule {
                name: "net".to_owned(),
                roles: Vec::new(),
                routes: Vec::new(),
                time: None,
                ip_allow: nets(allow),
                ip_deny: nets(deny),
                mfa_max_age: None,
                mode: AccessMode::Enforce,
            },
            &roles,
            &[],
        )
        .unwrap_or_else(|e| panic!("rule should compile: {e}"))
    }

    #[test]
    fn ip_allow_and_deny_with_every_address_family() {
        let office = rule(
            &[
                "192.0.2.0/24",
                "2001:db8:10::/48",
                "::ffff:198.51.100.0/120",
            ],
            &["192.0.2.66/32", "2001:db8:10:bad::/64"],
        );
        let now = Timestamp::UNIX_EPOCH;
        let cases = [
            ("192.0.2.10", None, "IPv4 in the allowed office range"),
            ("::ffff:192.0.2.10", None, "IPv4-mapped IPv6 counts as IPv4"),
            (
                "192.0.2.66",
                Some(Reason::IpDenied),
                "IPv4 in ip_deny wins over ip_allow",
            ),
            (
                "::ffff:192.0.2.66",
                Some(Reason::IpDenied),
                "mapped address is denied like IPv4",
            ),
            (
                "203.0.113.5",
                Some(Reason::IpDenied),
                "IPv4 outside ip_allow",
            ),
            ("2001:db8:10::7", None, "IPv6 in the allowed range"),
            (
                "2001:db8:10:bad::1",
                Some(Reason::IpDenied),
                "IPv6 in ip_deny",
            ),
            (
                "2001:db8:99::1",
                Some(Reason::IpDenied),
                "IPv6 outside ip_allow",
            ),
            (
                "198.51.100.20",
                None,
                "IPv4 allowed through a mapped-IPv6 network",
            ),
            (
                "::ffff:198.51.100.20",
                None,
                "mapped address through a mapped network",
            ),
            (
                "::1",
                Some(Reason::IpDenied),
                "loopback IPv6 is not allowed",
            ),
        ];
        for (client, want, why) in cases {
            assert_eq!(
                office.refuse(&identity(), canonical_ip(ip(client)), now),
                want,
                "{client}: {why}"
            );
        }
        let deny_only = rule(&[], &["10.0.0.0/8"]);
        assert_eq!(
            deny_only.refuse(&identity(), ip("192.0.2.1"), now),
            None,
            "without ip_allow, addresses outside ip_deny should pass"
        );
        assert_eq!(
            deny_only.refuse(&identity(), canonical_ip(ip("::ffff:10.1.2.3")), now),
            Some(Reason::IpDenied),
            "a mapped 10/8 client should hit ip_deny"
        );
    }

    #[test]
    fn networks_parse_and_canonicalize() {
        assert_eq!(
            parse_network("::ffff:10.0.0.0/104"),
            parse_network("10.0.0.0/8"),
            "a mapped /104 should be the IPv4 /8"
        );
        assert!(
            matches!(parse_network("::/0"), Ok(IpNetwork::V6(_))),
            "::/0 should stay IPv6"
        );
        assert!(
            parse_network("10.0.0.0/33").is_err(),
            "a /33 IPv4 prefix should be refused"
        );
        assert!(parse_network("office").is_err(), "a name should be refused");
    }

    #[test]
    fn unknown_names_in_rules_are_refused() {
        let roles = RoleSet::compile(vec![RoleDef {
            name: RoleName("agent".to_owned()),
            inherits: Vec::new(),
            permissions: Vec::new(),
        }])
        .unwrap_or_else(|e| panic!("{e}"));
        let base = AccessRule {
            name: "hours".to_owned(),
            roles: vec![RoleName("agnet".to_owned())],
            routes: Vec::new(),
            time: None,
            ip_allow: Vec::new(),
            ip_deny: Vec::new(),
            mfa_max_age: None,
            mode: AccessMode::Enforce,
        };
        let err = CompiledRule::compile(base.clone(), &roles, &["send"])
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("access rule `hours` names unknown role `agnet`"),
            "a misspelt role should be refused"
        );
        let err = CompiledRule::compile(
            AccessRule {
                roles: Vec::new(),
                routes: vec!["sned".to_owned()],
                ..base
            },
            &roles,
            &["send"],
        )
        .err()
        .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("access rule `hours` names unknown route `sned`"),
            "a misspelt route should be refused"
        );
    }
}
