//! Compiling `roles`, `access` and each route's authorization needs into
//! the policy core's types, with every problem located in the file.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_saphyr::Location;

use super::compile::Compiler;
use super::duration::parse_duration;
use super::raw::{
    RawAccessRule, RawConfig, RawLabelRule, RawRedaction, RawRoute, RawTimeWindow, Str,
};
use crate::identity::RoleName;
use crate::limit::{LimitError, LimitKey, RateLimit};
use crate::policy::body_scope::BodyBinding;
use crate::policy::{
    parse_days, parse_network, parse_time, parse_time_zone, AccessMode, AccessRule, FieldPath,
    FilterMode, ItemSelector, LabelRule, MessageFilter, OwnerCheck, Permission, Policy,
    PolicyError, RoleDef, RoleSet, RouteRequirement, RowFilter, ScopeBinding, ScopeSource,
    TimeWindow,
};
use crate::redact::{national_id, Detector, RedactionRule, Region, Regions, Style};
use crate::route::{MethodSet, PathTemplate};

/// How long an ownership lookup is reused unless the route says otherwise.
const DEFAULT_OWNER_CACHE: Duration = Duration::from_secs(5);

/// The longest body member name a scope binding accepts.
const MAX_BODY_MEMBER: usize = 64;

/// The longest `owner_check.cache` accepted.
const MAX_OWNER_CACHE: Duration = Duration::from_secs(300);

impl Compiler<'_> {
    /// Roles and access rules. `route_names` are the routes that compiled,
    /// so a rule naming a misspelt route is an error, not a rule for nobody.
    pub(super) fn policy(&mut self, raw: &RawConfig, route_names: &[&str]) -> Option<Policy> {
        let mut defs = Vec::new();
        for (name, role) in &raw.roles {
            let mut permissions = Vec::new();
            for p in &role.permissions {
                if let Err(e) = crate::policy::PermissionGrant::parse(&p.value) {
                    self.err(&p.referenced, e.to_string());
                }
                permissions.push(p.value.clone());
            }
            defs.push(RoleDef {
                name: RoleName(name.clone()),
                inherits: role
                    .inherits
                    .iter()
                    .map(|r| RoleName(r.value.clone()))
                    .collect(),
                permissions,
            });
        }
        let roles = match RoleSet::compile(defs) {
            Ok(r) => Some(r),
            Err(e) => {
                let at = self.policy_error_location(raw, &e);
                self.err(&at, e.to_string());
                None
            }
        };
        let rules: Vec<AccessRule> = raw
            .access
            .iter()
            .filter_map(|r| self.access_rule(r))
            .collect();
        let roles = roles?;
        match Policy::new(roles, rules, route_names) {
            Ok(p) => Some(p),
            Err(e) => {
                let at = self.policy_error_location(raw, &e);
                self.err(&at, e.to_string());
                None
            }
        }
    }

    /// What a route demands of its caller.
    pub(super) fn requirement(
        &mut self,
        r: &RawRoute,
        template: &PathTemplate,
    ) -> Option<RouteRequirement> {
        let permission = match &r.permission {
            Some(p) => Some(self.permission(p)?),
            None => None,
        };
        let mfa_max_age = self.duration_opt(r.mfa_max_age.as_ref())?;
        let mut scope = Vec::new();
        let params: Vec<&str> = template.param_names().collect();
        for s in &r.scope {
            // Body bindings are compiled by `body_scope`, which also
            // reports an entry naming none or several sources.
            let (param, source) = match (&s.param, &s.query, &s.body) {
                (Some(p), None, None) => (p, ScopeSource::Path),
                (None, Some(q), None) => (q, ScopeSource::Query),
                _ => continue,
            };
            if let Some(optional) = &s.optional {
                self.err(
                    &optional.referenced,
                    format!(
                        "route `{}`: `optional` is for a `body` member; a path parameter is always there, and a query parameter must be",
                        r.name.value
                    ),
                );
                return None;
            }
            if let Some(first) = s.requires.first() {
                self.err(
                    &first.referenced,
                    format!(
                        "route `{}`: `requires` is for a `body` member",
                        r.name.value
                    ),
                );
                return None;
            }
            if source == ScopeSource::Query && !is_query_name(&param.value) {
                self.err(
                    &param.referenced,
                    format!(
                        "route `{}`: scope query parameter `{}` must be a parameter name (letters, digits, `_`, `-`)",
                        r.name.value, param.value
                    ),
                );
                return None;
            }
            if source == ScopeSource::Path && !params.contains(&param.value.as_str()) {
                self.err(
                    &param.referenced,
                    format!(
                        "route `{}`: scope parameter `{}` is not in its path `{}`",
                        r.name.value, param.value, r.path.value
                    ),
                );
                return None;
            }
            let unless_permission = match &s.unless_permission {
                Some(p) => Some(self.permission(p)?),
                None => None,
            };
            scope.push(ScopeBinding {
                param: param.value.clone(),
                source,
                claim: s.claim.value.clone(),
                unless_permission,
            });
        }
        Some(RouteRequirement {
            route: r.name.value.clone(),
            permission,
            require_mfa: mfa_max_age.is_some(),
            mfa_max_age,
            scope,
        })
    }

    /// A route's scope bindings on its JSON request body. Every entry says
    /// `param` or `body`, not both; body bindings need a route whose
    /// methods all carry a body (POST, PUT, PATCH), so no request on it
    /// goes unread (a WebSocket handshake, a GET, cannot be one).
    pub(super) fn body_scope(
        &mut self,
        r: &RawRoute,
        methods: &MethodSet,
    ) -> Option<Vec<BodyBinding>> {
        let mut out: Vec<BodyBinding> = Vec::new();
        let mut fine = true;
        for s in &r.scope {
            let named = [&s.param, &s.query, &s.body]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>();
            if let [_, second, ..] = named[..] {
                self.err(
                    &second.referenced,
                    format!(
                        "route `{}`: a scope entry binds one of a path `param`, a `query` parameter or a `body` member",
                        r.name.value
                    ),
                );
                fine = false;
                continue;
            }
            let member = match (&s.param, &s.body) {
                (Some(_), _) => continue,
                (None, None) if s.query.is_some() => continue,
                (None, None) => {
                    self.err(
                        &s.claim.referenced,
                        format!(
                            "route `{}`: scope entry for claim `{}` must name a path `param`, a `query` parameter or a `body` member",
                            r.name.value, s.claim.value
                        ),
                    );
                    fine = false;
                    continue;
                }
                (None, Some(b)) => b,
            };
            let name = member.value.as_str();
            let bad_name = s
                .requires
                .iter()
                .map(|r| (r.value.as_str(), &r.referenced))
                .chain(std::iter::once((name, &member.referenced)))
                .find(|(n, _)| !is_member_name(n));
            if let Some((bad, at)) = bad_name {
                self.err(
                    at,
                    format!(
                        "route `{}`: scope body member `{bad}` must be a top-level member name (letters, digits, `_`, `-`; at most {MAX_BODY_MEMBER} bytes)",
                        r.name.value
                    ),
                );
                fine = false;
                continue;
            }
            let problem = if out.iter().any(|b| b.member == name) {
                Some(format!("scope body member `{name}` is bound twice"))
            } else if !body_methods_only(methods) {
                Some(format!(
                    "scope body member `{name}` needs `methods` that all carry a body (POST, PUT, PATCH), so that no request on the route goes unchecked"
                ))
            } else {
                None
            };
            if let Some(why) = problem {
                self.err(
                    &member.referenced,
                    format!("route `{}`: {why}", r.name.value),
                );
                fine = false;
                continue;
            }
            let unless_permission = match &s.unless_permission {
                Some(p) => match self.permission(p) {
                    Some(p) => Some(p),
                    None => {
                        fine = false;
                        continue;
                    }
                },
                None => None,
            };
            out.push(BodyBinding {
                member: name.to_string(),
                claim: s.claim.value.clone(),
                unless_permission,
                optional: s.optional.as_ref().is_some_and(|o| o.value),
                requires: s.requires.iter().map(|r| r.value.clone()).collect(),
            });
        }
        fine.then_some(out)
    }

    /// A route's `row_filter`: list items (the selector ends in `[*]`).
    pub(super) fn row_filter(&mut self, r: &RawRoute) -> Option<Option<RowFilter>> {
        let Some(f) = &r.row_filter else {
            return Some(None);
        };
        if !f.items.value.ends_with("[*]") {
            self.err(
                &f.items.referenced,
                format!(
                    "route `{}`: row_filter.items must select list items (end in `[*]`); to hide a single object the caller may not see, use owner_check",
                    r.name.value
                ),
            );
            return None;
        }
        let mut filter = self.located_result(
            &f.items.referenced,
            RowFilter::new(
                &f.items.value,
                &f.field.value,
                &f.claim.value,
                FilterMode::Items,
            ),
        )?;
        filter.unless_permission = self.permission_opt(f.unless_permission.as_ref())?;
        filter.labels = self.label_rules(&f.labels)?;
        Some(Some(filter))
    }

    /// A WebSocket route's `message_filter`: one object per message, owned
    /// by the first of its `fields` present.
    pub(super) fn message_filter(&mut self, r: &RawRoute) -> Option<Option<MessageFilter>> {
        let Some(f) = &r.message_filter else {
            return Some(None);
        };
        let route = &r.name.value;
        if f.object.value.ends_with("[*]") {
            self.err(
                &f.object.referenced,
                format!("route `{route}`: message_filter.object must name the one object each message carries, not list items"),
            );
            return None;
        }
        let Some(first) = f.fields.first() else {
            self.err(
                &f.object.referenced,
                format!("route `{route}`: message_filter.fields must name at least one field holding the object's owner"),
            );
            return None;
        };
        let mut filter = self.located_result(
            &f.object.referenced,
            RowFilter::new(
                &f.object.value,
                &first.value,
                &f.claim.value,
                FilterMode::Object,
            ),
        )?;
        let mut fields = Vec::with_capacity(f.fields.len());
        for field in &f.fields {
            fields.push(self.located_result(&field.referenced, FieldPath::parse(&field.value))?);
        }
        filter.unless_permission = self.permission_opt(f.unless_permission.as_ref())?;
        filter.labels = self.label_rules(&f.labels)?;
        Some(Some(MessageFilter { filter, fields }))
    }

    /// A route's `owner_check`. `id` is unique per route within the
    /// snapshot; the lookup template may only use the route's parameters.
    pub(super) fn owner_check(
        &mut self,
        r: &RawRoute,
        route_path: &PathTemplate,
        id: usize,
    ) -> Option<Option<OwnerCheck>> {
        let Some(c) = &r.owner_check else {
            return Some(None);
        };
        let lookup = match &c.lookup {
            None => route_path.clone(),
            Some(text) => match PathTemplate::parse(&text.value) {
                Ok(t) => t,
                Err(e) => {
                    self.err(
                        &text.referenced,
                        format!("route `{}`: owner_check.lookup: {e}", r.name.value),
                    );
                    return None;
                }
            },
        };
        let lookup_at = c
            .lookup
            .as_ref()
            .map_or(c.field.referenced, |l| l.referenced);
        let unknown: Vec<&str> = lookup
            .param_names()
            .filter(|p| !route_path.param_names().any(|q| q == *p))
            .collect();
        if !unknown.is_empty() {
            self.err(
                &lookup_at,
                format!(
                    "route `{}`: owner_check.lookup uses {} that the route's path `{}` does not capture",
                    r.name.value,
                    unknown.iter().map(|p| format!("`{{{p}}}`")).collect::<Vec<_>>().join(", "),
                    route_path
                ),
            );
            return None;
        }
        let object = c.object.as_ref().map_or("$", |o| o.value.as_str());
        let object_at = c
            .object
            .as_ref()
            .map_or(c.field.referenced, |o| o.referenced);
        if object.ends_with("[*]") {
            self.err(
                &object_at,
                format!(
                    "route `{}`: owner_check.object must name one object, not list items",
                    r.name.value
                ),
            );
            return None;
        }
        let mut filter = self.located_result(
            &object_at,
            RowFilter::new(object, &c.field.value, &c.claim.value, FilterMode::Object),
        )?;
        filter.unless_permission = self.permission_opt(c.unless_permission.as_ref())?;
        filter.labels = self.label_rules(&c.labels)?;
        let cache_for = self
            .duration_opt(c.cache.as_ref())?
            .unwrap_or(DEFAULT_OWNER_CACHE);
        if cache_for > MAX_OWNER_CACHE {
            let at = c
                .cache
                .as_ref()
                .map_or(c.field.referenced, |x| x.referenced);
            self.err(
                &at,
                format!(
                    "route `{}`: owner_check.cache may be at most {}s: a reassignment made behind the gateway must show soon",
                    r.name.value,
                    MAX_OWNER_CACHE.as_secs()
                ),
            );
            return None;
        }
        Some(Some(OwnerCheck {
            id,
            lookup,
            filter,
            cache_for,
        }))
    }

    /// The top-level `redaction` rules by name.
    pub(super) fn redactions(&mut self, raw: &RawConfig) -> BTreeMap<String, Arc<RedactionRule>> {
        let mut out = BTreeMap::new();
        for r in &raw.redaction {
            if out.contains_key(&r.name.value) {
                self.err(
                    &r.name.referenced,
                    format!("duplicate redaction rule `{}`", r.name.value),
                );
                continue;
            }
            if let Some(rule) = self.redaction(r) {
                out.insert(r.name.value.clone(), Arc::new(rule));
            }
        }
        out
    }

    fn redaction(&mut self, r: &RawRedaction) -> Option<RedactionRule> {
        let name = &r.name.value;
        let unless_permission = self.permission_opt(r.unless_permission.as_ref())?;
        let mut fields = Vec::with_capacity(r.fields.len());
        for f in &r.fields {
            fields.push(self.located_result(&f.referenced, ItemSelector::parse(&f.value))?);
        }
        let mut detect = Vec::with_capacity(r.detect.len());
        for d in &r.detect {
            match Detector::parse(&d.value) {
                Some(det) if !detect.contains(&det) => detect.push(det),
                Some(_) => {}
                None => {
                    self.err(
                        &d.referenced,
                        format!(
                            "redaction `{name}`: detect `{}` must be phone, email, wamid, card, iban or national_id",
                            d.value
                        ),
                    );
                    return None;
                }
            }
        }
        let mut regions = Regions::NONE;
        for code in &r.countries {
            let Some(region) = Region::parse(&code.value) else {
                self.err(
                    &code.referenced,
                    format!(
                        "redaction `{name}`: country `{}` is not one of {}",
                        code.value,
                        Region::ALL.map(Region::code).join(", ")
                    ),
                );
                return None;
            };
            regions = regions.with(region);
        }
        let wants_ids = detect.iter().any(|d| matches!(d, Detector::NationalId(_)));
        if wants_ids && !regions.iter().any(national_id::known) {
            let known: Vec<&str> = Region::ALL
                .into_iter()
                .filter(|r| national_id::known(*r))
                .map(Region::code)
                .collect();
            let at = r
                .countries
                .first()
                .map_or(r.name.referenced, |c| c.referenced);
            self.err(
                &at,
                format!(
                    "redaction `{name}`: national_id needs `countries` naming one whose identity numbers are known ({})",
                    known.join(", ")
                ),
            );
            return None;
        }
        let uses_countries = detect
            .iter()
            .any(|d| matches!(d, Detector::Phone(_) | Detector::NationalId(_)));
        if !r.countries.is_empty() && !uses_countries {
            self.err(
                &r.countries[0].referenced,
                format!("redaction `{name}`: countries needs `phone` or `national_id` in `detect`"),
            );
            return None;
        }
        for d in &mut detect {
            if let Detector::Phone(r) | Detector::NationalId(r) = d {
                *r = regions;
            }
        }
        if fields.is_empty() && detect.is_empty() {
            self.err(
                &r.name.referenced,
                format!("redaction `{name}` masks nothing: give it `fields`, `detect` or both"),
            );
            return None;
        }
        let key = match &r.hash_key {
            Some(k) => Some((self.string(k)?, k.referenced)),
            None => None,
        };
        let style = match (r.style.as_ref().map(|s| s.value.as_str()), key) {
            (None | Some("partial"), None) => Style::Partial,
            (Some("full"), None) => Style::Full,
            (Some("withhold"), None) if !detect.is_empty() => {
                let at = r.style.as_ref().map_or(r.name.referenced, |s| s.referenced);
                self.err(
                    &at,
                    format!("redaction `{name}`: style withhold makes whole values null, so it takes `fields` only: a phone number or e-mail address found inside a string cannot be null (give `detect` its own rule)"),
                );
                return None;
            }
            (Some("withhold"), None) => Style::Withhold,
            (Some("hash"), Some((key, at))) => {
                if key.len() < 16 {
                    self.err(
                        &at,
                        format!("redaction `{name}`: hash_key must be at least 16 bytes"),
                    );
                    return None;
                }
                Style::Hash(key.into_bytes())
            }
            (Some("hash"), None) => {
                self.err(
                    &r.name.referenced,
                    format!("redaction `{name}`: style hash needs a hash_key (from an environment variable)"),
                );
                return None;
            }
            (Some("partial" | "full" | "withhold") | None, Some((_, at))) => {
                self.err(
                    &at,
                    format!("redaction `{name}`: hash_key is only used with style hash"),
                );
                return None;
            }
            (Some(other), _) => {
                let at = r.style.as_ref().map_or(r.name.referenced, |s| s.referenced);
                self.err(
                    &at,
                    format!("redaction `{name}`: style `{other}` must be partial, full, hash or withhold"),
                );
                return None;
            }
        };
        Some(RedactionRule {
            name: name.clone(),
            unless_permission,
            fields,
            detect,
            style,
        })
    }

    /// The rules a route names, in its order.
    pub(super) fn route_redactions(
        &mut self,
        r: &RawRoute,
        rules: &BTreeMap<String, Arc<RedactionRule>>,
    ) -> Option<Vec<Arc<RedactionRule>>> {
        let mut out = Vec::with_capacity(r.redaction.len());
        let mut ok = true;
        for n in &r.redaction {
            match rules.get(&n.value) {
                Some(rule) => out.push(rule.clone()),
                None => {
                    let known: Vec<&str> = rules.keys().map(String::as_str).collect();
                    self.err(
                        &n.referenced,
                        format!(
                            "route `{}` names unknown redaction `{}` (known: {})",
                            r.name.value,
                            n.value,
                            if known.is_empty() {
                                "none".to_string()
                            } else {
                                known.join(", ")
                            }
                        ),
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    /// A route's `rate_limit`.
    pub(super) fn rate_limit(&mut self, r: &RawRoute) -> Option<Option<RateLimit>> {
        let Some(l) = &r.rate_limit else {
            return Some(None);
        };
        let key = match &l.key {
            None => LimitKey::Subject,
            Some(k) => match LimitKey::parse(&k.value) {
                Ok(key) => key,
                Err(e) => {
                    self.err(&k.referenced, format!("route `{}`: {e}", r.name.value));
                    return None;
                }
            },
        };
        let per = self.duration_opt(Some(&l.per))??;
        match RateLimit::new(key, per, l.burst.value) {
            Ok(limit) => Some(Some(limit)),
            Err(e) => {
                let at = match e {
                    LimitError::Burst => l.burst.referenced,
                    _ => l.per.referenced,
                };
                self.err(&at, format!("route `{}`: {e}", r.name.value));
                None
            }
        }
    }

    fn permission_opt(&mut self, p: Option<&Str>) -> Option<Option<Permission>> {
        match p {
            Some(p) => Some(Some(self.permission(p)?)),
            None => Some(None),
        }
    }

    fn label_rules(&mut self, raw: &[RawLabelRule]) -> Option<Vec<LabelRule>> {
        let mut rules = Vec::with_capacity(raw.len());
        for l in raw {
            let field_text = l.field.as_ref().map_or("labels", |x| x.value.as_str());
            let at = l
                .field
                .as_ref()
                .map_or(l.label.referenced, |x| x.referenced);
            let field = self.located_result(&at, FieldPath::parse(field_text))?;
            rules.push(LabelRule {
                field,
                label: l.label.value.clone(),
                permission: self.permission(&l.permission)?,
            });
        }
        Some(rules)
    }

    fn access_rule(&mut self, r: &RawAccessRule) -> Option<AccessRule> {
        let mut ok = true;
        let mut nets = |list: &[Str], this: &mut Self| {
            let mut out = Vec::new();
            for n in list {
                let Some(text) = this.string(n) else {
                    ok = false;
                    continue;
                };
                match parse_network(&text) {
                    Ok(net) => out.push(net),
                    Err(e) => {
                        this.err(&n.referenced, e.to_string());
                        ok = false;
                    }
                }
            }
            out
        };
        let ip_allow = nets(&r.ip_allow, self);
        let ip_deny = nets(&r.ip_deny, self);
        let time = match &r.time {
            Some(t) => Some(self.window(t)?),
            None => None,
        };
        let mfa_max_age = self.duration_opt(r.mfa_max_age.as_ref())?;
        let mode = match r.mode.as_ref().map(|m| m.value.as_str()) {
            None | Some("enforce") => AccessMode::Enforce,
            Some("audit") => AccessMode::Audit,
            Some(other) => {
                let at = r.mode.as_ref().map_or(r.name.referenced, |m| m.referenced);
                self.err(
                    &at,
                    format!(
                        "access rule `{}`: mode `{other}` must be enforce or audit",
                        r.name.value
                    ),
                );
                return None;
            }
        };
        ok.then(|| AccessRule {
            name: r.name.value.clone(),
            roles: r.roles.iter().map(|x| RoleName(x.value.clone())).collect(),
            routes: r.routes.iter().map(|x| x.value.clone()).collect(),
            time,
            ip_allow,
            ip_deny,
            mfa_max_age,
            mode,
        })
    }

    fn window(&mut self, t: &RawTimeWindow) -> Option<TimeWindow> {
        let days: Vec<&str> = t.days.iter().map(|d| d.value.as_str()).collect();
        let at_days = t.days.first().map_or(t.from.referenced, |d| d.referenced);
        let days = self.located_result(&at_days, parse_days(&days));
        let (from_text, to_text, tz_text) = (
            self.string(&t.from)?,
            self.string(&t.to)?,
            self.string(&t.tz)?,
        );
        let from = self.located_result(&t.from.referenced, parse_time(&from_text));
        let to = self.located_result(&t.to.referenced, parse_time(&to_text));
        let tz = self.located_result(&t.tz.referenced, parse_time_zone(&tz_text));
        let mut closed = Vec::new();
        for d in &t.closed {
            let text = self.string(d)?;
            closed.push(self.located_result(&d.referenced, crate::policy::parse_date(&text))?);
        }
        Some(TimeWindow::new(days?, from?, to?, tz?, closed))
    }

    fn permission(&mut self, p: &Str) -> Option<Permission> {
        self.located_result(&p.referenced, Permission::parse(&p.value))
    }

    pub(super) fn duration_opt(&mut self, d: Option<&Str>) -> Option<Option<Duration>> {
        match d {
            None => Some(None),
            Some(s) => match parse_duration(&s.value) {
                Ok(v) => Some(Some(v)),
                Err(msg) => {
                    self.err(&s.referenced, msg);
                    None
                }
            },
        }
    }

    fn located_result<T>(&mut self, at: &Location, r: Result<T, PolicyError>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.err(at, e.to_string());
                None
            }
        }
    }

    /// Point a whole-policy error at the entry it names.
    fn policy_error_location(&self, raw: &RawConfig, e: &PolicyError) -> Location {
        let role_at = |name: &str| {
            raw.roles.get(name).and_then(|r| {
                r.inherits
                    .first()
                    .or(r.permissions.first())
                    .map(|s| s.referenced)
            })
        };
        let rule_at = |name: &str| {
            raw.access
                .iter()
                .find(|r| r.name.value == name)
                .map(|r| r.name.referenced)
        };
        match e {
            PolicyError::UnknownInheritedRole { role, .. }
            | PolicyError::DuplicateRole { role } => role_at(&role.0),
            PolicyError::InheritanceCycle { cycle } => cycle.split(" -> ").next().and_then(role_at),
            PolicyError::UnknownRuleRole { rule, .. }
            | PolicyError::UnknownRuleRoute { rule, .. }
            | PolicyError::DuplicateRule { rule } => rule_at(rule),
            _ => None,
        }
        .unwrap_or(Location::UNKNOWN)
    }
}

/// Every method of the set carries a body.
fn body_methods_only(methods: &MethodSet) -> bool {
    use http::Method;
    match methods {
        MethodSet::Any => false,
        MethodSet::Only(list) => list
            .iter()
            .all(|m| *m == Method::POST || *m == Method::PUT || *m == Method::PATCH),
    }
}

/// A top-level JSON member name a body binding can name.
fn is_member_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_BODY_MEMBER
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
}

/// A query parameter a scope binding may name: what a form parser keeps
/// as a plain name (no brackets, `=`, `&` or spaces).
fn is_query_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}
