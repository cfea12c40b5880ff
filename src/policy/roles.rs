//! Roles and what they may do: the `roles:` section compiled once into a
//! [`RoleSet`].
//!
//! - Inheritance is transitive (`admin` → `supervisor` → `agent`) and is
//!   flattened at compile time: each role carries its effective grants,
//!   indexed for lookup, so a request never walks the inheritance graph.
//! - Unknown inherited roles and cycles are configuration errors; a cycle
//!   is reported as the path that closes it (`a -> b -> a`).
//! - A caller with several roles holds the union of their grants. Roles in
//!   a token that the config does not define grant nothing and are
//!   otherwise ignored (the explanation lists them), so an identity
//!   provider may carry roles meant for other systems.

use std::collections::{BTreeSet, HashMap};

use super::error::PolicyError;
use super::permission::{Permission, PermissionGrant};
use crate::identity::RoleName;

/// One role as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleDef {
    pub name: RoleName,
    pub inherits: Vec<RoleName>,
    /// Grants as written (`conversations.read`, `contacts.*`, `*`).
    pub permissions: Vec<String>,
}

/// Every configured role with its flattened grants.
#[derive(Debug, Clone)]
pub struct RoleSet {
    by_name: HashMap<Box<str>, RoleId>,
    roles: Vec<CompiledRole>,
}

/// How a permission was granted, for `explain`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrantedBy<'a> {
    /// The caller's role (as named in the token) that holds the grant.
    pub role: &'a RoleName,
    /// The grant that matched (`conversations.*`).
    pub grant: &'a PermissionGrant,
    /// The role whose definition lists that grant: `role` itself or one it
    /// inherits from.
    pub defined_in: &'a RoleName,
}

impl RoleSet {
    /// Validates and flattens the role definitions.
    pub fn compile(defs: Vec<RoleDef>) -> Result<RoleSet, PolicyError> {
        let mut by_name = HashMap::with_capacity(defs.len());
        for (index, def) in defs.iter().enumerate() {
            let id = RoleId(index);
            if by_name.insert(Box::from(def.name.0.as_str()), id).is_some() {
                return Err(PolicyError::DuplicateRole {
                    role: def.name.clone(),
                });
            }
        }
        let mut parsed = Vec::with_capacity(defs.len());
        for def in &defs {
            let mut parents = Vec::with_capacity(def.inherits.len());
            for parent in &def.inherits {
                let Some(&id) = by_name.get(parent.0.as_str()) else {
                    return Err(PolicyError::UnknownInheritedRole {
                        role: def.name.clone(),
                        inherits: parent.clone(),
                    });
                };
                parents.push(id);
            }
            let grants = def
                .permissions
                .iter()
                .map(|text| PermissionGrant::parse(text))
                .collect::<Result<Vec<_>, _>>()?;
            parsed.push((parents, grants));
        }
        let order = topological_order(&defs, &parsed)?;
        let roles = flatten(defs, parsed, &order);
        Ok(RoleSet { by_name, roles })
    }

    /// The first of `roles` (in token order) that holds a grant covering
    /// `permission`, or `None` if none does. Unknown roles are skipped.
    pub fn allows(&self, roles: &[RoleName], permission: &Permission) -> Option<&RoleName> {
        self.granted_by(roles, permission).map(|g| g.role)
    }

    /// Like [`allows`](Self::allows), with the grant that matched and the
    /// role that defines it.
    pub fn granted_by(&self, roles: &[RoleName], permission: &Permission) -> Option<GrantedBy<'_>> {
        roles
            .iter()
            .find_map(|name| self.grant_of(self.id(&name.0)?, permission))
    }

    /// Whether any of `roles` holds a grant covering `permission`.
    pub fn holds(&self, roles: &[RoleName], permission: &Permission) -> bool {
        self.granted_by(roles, permission).is_some()
    }

    /// Whether `name` is a configured role.
    pub fn contains(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// The effective (flattened) grants of a role, own grants first.
    pub fn effective_grants(&self, name: &str) -> Option<impl Iterator<Item = &PermissionGrant>> {
        let role = self.get(self.id(name)?)?;
        Some(role.grants.iter().map(|g| &g.grant))
    }

    /// Configured role names, in config order.
    pub fn names(&self) -> impl Iterator<Item = &RoleName> {
        self.roles.iter().map(|r| &r.name)
    }

    pub fn len(&self) -> usize {
        self.roles.len()
    }

    pub fn is_empty(&self) -> bool {
        self.roles.is_empty()
    }

    pub(crate) fn id(&self, name: &str) -> Option<RoleId> {
        self.by_name.get(name).copied()
    }

    /// Looks the caller's roles up once per request; unknown ones are
    /// dropped (and counted, so `explain` knows to list them).
    pub(crate) fn resolve(&self, roles: &[RoleName]) -> CallerRoles {
        let mut caller = CallerRoles::default();
        for name in roles {
            match self.id(&name.0) {
                Some(id) => caller.push(id),
                None => caller.unknown += 1,
            }
        }
        caller
    }

    /// [`granted_by`](Self::granted_by) for already resolved roles.
    pub(crate) fn granted_to(
        &self,
        caller: &CallerRoles,
        permission: &Permission,
    ) -> Option<GrantedBy<'_>> {
        caller.iter().find_map(|id| self.grant_of(id, permission))
    }

    fn grant_of(&self, id: RoleId, permission: &Permission) -> Option<GrantedBy<'_>> {
        let role = self.get(id)?;
        let grant = role.lookup(permission)?;
        Some(GrantedBy {
            role: &role.name,
            grant: &grant.grant,
            defined_in: &self.get(grant.defined_in)?.name,
        })
    }

    /// The roles that are `role` or inherit from it, directly or not: the
    /// roles an access rule naming `role` applies to.
    pub(crate) fn heirs_of(&self, role: RoleId) -> RoleMask {
        let mut mask = RoleMask::with_len(self.roles.len());
        for (index, candidate) in self.roles.iter().enumerate() {
            if candidate.ancestors.contains(role) {
                mask.insert(RoleId(index));
            }
        }
        mask
    }

    fn get(&self, id: RoleId) -> Option<&CompiledRole> {
        self.roles.get(id.0)
    }
}

/// Index of a role in its `RoleSet`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RoleId(usize);

/// A caller's configured roles, in token order. The first few live inline
/// so resolving a typical token allocates nothing.
#[derive(Debug, Clone, Default)]
pub(crate) struct CallerRoles {
    inline: [Option<RoleId>; INLINE_ROLES],
    spilled: Vec<RoleId>,
    /// How many token roles the config does not define.
    pub(crate) unknown: usize,
}

const INLINE_ROLES: usize = 8;

impl CallerRoles {
    pub(crate) fn iter(&self) -> impl Iterator<Item = RoleId> + '_ {
        self.inline
            .iter()
            .map_while(|slot| *slot)
            .chain(self.spilled.iter().copied())
    }

    /// Whether any of the caller's roles is in `mask`.
    pub(crate) fn any_in(&self, mask: &RoleMask) -> bool {
        self.iter().any(|id| mask.contains(id))
    }

    fn push(&mut self, id: RoleId) {
        match self.inline.iter_mut().find(|slot| slot.is_none()) {
            Some(slot) => *slot = Some(id),
            None => self.spilled.push(id),
        }
    }
}

/// A set of roles of one `RoleSet`, as a bitset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RoleMask {
    words: Vec<u64>,
}

impl RoleMask {
    pub(crate) fn with_len(roles: usize) -> Self {
        RoleMask {
            words: vec![0; roles.div_ceil(64)],
        }
    }

    pub(crate) fn contains(&self, id: RoleId) -> bool {
        self.words
            .get(id.0 / 64)
            .is_some_and(|w| w & (1 << (id.0 % 64)) != 0)
    }

    pub(crate) fn insert(&mut self, id: RoleId) {
        if let Some(word) = self.words.get_mut(id.0 / 64) {
            *word |= 1 << (id.0 % 64);
        }
    }

    pub(crate) fn union_with(&mut self, other: &RoleMask) {
        for (mine, theirs) in self.words.iter_mut().zip(&other.words) {
            *mine |= theirs;
        }
    }
}

#[derive(Debug, Clone)]
struct CompiledRole {
    name: RoleName,
    /// Own grants first, then inherited ones in `inherits` order; no
    /// duplicates.
    grants: Vec<EffectiveGrant>,
    /// Exact grants by name, sorted for binary search; values index `grants`.
    exact: Vec<(Box<str>, usize)>,
    /// Wildcard grants by prefix (dot included), sorted; values index `grants`.
    prefixes: Vec<(Box<str>, usize)>,
    /// Index of a `*` grant, if the role has one.
    everything: Option<usize>,
    /// This role and every role it inherits from.
    ancestors: RoleMask,
}

#[derive(Debug, Clone)]
struct EffectiveGrant {
    grant: PermissionGrant,
    defined_in: RoleId,
}

impl CompiledRole {
    /// The grant covering `permission`, preferring the most specific one
    /// (exact, then the longest wildcard prefix, then `*`) so `explain`
    /// names the grant an operator would look for first.
    fn lookup(&self, permission: &Permission) -> Option<&EffectiveGrant> {
        let text = permission.as_str();
        let index = find(&self.exact, text)
            .or_else(|| {
                // Each `.` ends a candidate prefix; try the longest first.
                text.match_indices('.')
                    .rev()
                    .find_map(|(at, _)| find(&self.prefixes, text.get(..=at)?))
            })
            .or(self.everything)?;
        self.grants.get(index)
    }
}

fn find(sorted: &[(Box<str>, usize)], key: &str) -> Option<usize> {
    let at = sorted.binary_search_by(|(k, _)| (**k).cmp(key)).ok()?;
    sorted.get(at).map(|(_, index)| *index)
}

/// Orders roles so each comes after every role it inherits from, or
/// reports the first cycle found (in config order) as `a -> b -> a`.
///
/// Iterative, so a long inheritance chain in a hostile config file cannot
/// overflow the stack.
fn topological_order(
    defs: &[RoleDef],
    parsed: &[(Vec<RoleId>, Vec<PermissionGrant>)],
) -> Result<Vec<RoleId>, PolicyError> {
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum State {
        New,
        OnPath,
        Done,
    }
    let mut state = vec![State::New; defs.len()];
    let mut order = Vec::with_capacity(defs.len());
    for root in 0..defs.len() {
        if state.get(root) != Some(&State::New) {
            continue;
        }
        // (role, how many of its parents have been visited)
        let mut path: Vec<(usize, usize)> = vec![(root, 0)];
        if let Some(s) = state.get_mut(root) {
            *s = State::OnPath;
        }
        while let Some(top) = path.last_mut() {
            let (role, next) = *top;
            let parent = parsed
                .get(role)
                .and_then(|(parents, _)| parents.get(next))
                .map(|id| id.0);
            let Some(parent) = parent else {
                if let Some(s) = state.get_mut(role) {
                    *s = State::Done;
                }
                order.push(RoleId(role));
                path.pop();
                continue;
            };
            top.1 += 1;
            match state.get(parent) {
                Some(State::New) => {
                    if let Some(s) = state.get_mut(parent) {
                        *s = State::OnPath;
                    }
                    path.push((parent, 0));
                }
                Some(State::OnPath) => {
                    let start = path.iter().position(|&(r, _)| r == parent).unwrap_or(0);
                    let cycle = path
                        .get(start..)
                        .unwrap_or_default()
                        .iter()
                        .map(|&(r, _)| r)
                        .chain(std::iter::once(parent))
                        .filter_map(|r| defs.get(r).map(|d| d.name.0.as_str()))
                        .collect::<Vec<_>>()
                        .join(" -> ");
                    return Err(PolicyError::InheritanceCycle { cycle });
                }
                Some(State::Done) | None => {}
            }
        }
    }
    Ok(order)
}

/// Builds each role's effective grants, parents before heirs.
fn flatten(
    defs: Vec<RoleDef>,
    parsed: Vec<(Vec<RoleId>, Vec<PermissionGrant>)>,
    order: &[RoleId],
) -> Vec<CompiledRole> {
    let count = defs.len();
    let mut done: Vec<Option<(Vec<EffectiveGrant>, RoleMask)>> = vec![None; count];
    for &id in order {
        let Some((parents, own)) = parsed.get(id.0) else {
            continue;
        };
        let mut seen = BTreeSet::new();
        let mut grants = Vec::new();
        let mut ancestors = RoleMask::with_len(count);
        ancestors.insert(id);
        for grant in own {
            if seen.insert(grant.clone()) {
                grants.push(EffectiveGrant {
                    grant: grant.clone(),
                    defined_in: id,
                });
            }
        }
        for parent in parents {
            // Parents come earlier in `order`, so they are flattened.
            let Some(Some((parent_grants, parent_ancestors))) = done.get(parent.0) else {
                continue;
            };
            ancestors.union_with(parent_ancestors);
            for inherited in parent_grants {
                if seen.insert(inherited.grant.clone()) {
                    grants.push(inherited.clone());
                }
            }
        }
        if let Some(slot) = done.get_mut(id.0) {
            *slot = Some((grants, ancestors));
        }
    }
    defs.into_iter()
        .zip(done)
        .map(|(def, flat)| {
            let (grants, ancestors) = flat.unwrap_or_default();
            index_role(def.name, grants, ancestors)
        })
        .collect()
}

fn index_role(name: RoleName, grants: Vec<EffectiveGrant>, ancestors: RoleMask) -> CompiledRole {
    let mut exact = Vec::new();
    let mut prefixes = Vec::new();
    let mut everything = None;
    for (index, g) in grants.iter().enumerate() {
        match g.grant.wildcard_prefix() {
            None => exact.push((Box::from(g.grant.as_str()), index)),
            Some("") => {
                everything.get_or_insert(index);
            }
            Some(prefix) => prefixes.push((Box::from(prefix), index)),
        }
    }
    exact.sort();
    prefixes.sort();
    CompiledRole {
        name,
        grants,
        exact,
        prefixes,
        everything,
        ancestors,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(name: &str) -> RoleName {
        RoleName(name.to_owned())
    }

    fn def(name: &str, inherits: &[&str], permissions: &[&str]) -> RoleDef {
        RoleDef {
            name: role(name),
            inherits: inherits.iter().map(|r| role(r)).collect(),
            permissions: permissions.iter().map(|p| p.to_string()).collect(),
        }
    }

    fn perm(text: &str) -> Permission {
        Permission::parse(text).unwrap_or_else(|e| panic!("{text:?} should parse: {e}"))
    }

    fn compile(defs: Vec<RoleDef>) -> RoleSet {
        RoleSet::compile(defs).unwrap_or_else(|e| panic!("roles should compile: {e}"))
    }

    fn support_roles() -> RoleSet {
        compile(vec![
            def("agent", &[], &["conversations.read", "contacts.read"]),
            def(
                "supervisor",
                &["agent"],
                &["conversations.*", "reports.read"],
            ),
            def("admin", &["supervisor"], &["*"]),
            def("marketing", &[], &["whatsapp.send", "contacts.export"]),
            def("auditor", &[], &[]),
        ])
    }

    #[test]
    fn inheritance_is_transitive_and_roles_union() {
        let roles = support_roles();
        let cases: &[(&[&str], &str, Option<&str>)] = &[
            (&["agent"], "conversations.read", Some("agent")),
            (&["agent"], "conversations.assign", None),
            (&["agent"], "reports.read", None),
            (&["supervisor"], "contacts.read", Some("supervisor")),
            (&["supervisor"], "conversations.assign", Some("supervisor")),
            (&["admin"], "contacts.read", Some("admin")),
            (&["admin"], "billing.refund", Some("admin")),
            (&["marketing"], "conversations.read", None),
            (&["agent", "marketing"], "whatsapp.send", Some("marketing")),
            (&["agent", "marketing"], "contacts.read", Some("agent")),
            (&["auditor"], "contacts.read", None),
            (&[], "contacts.read", None),
        ];
        for (token_roles, required, want) in cases {
            let names: Vec<RoleName> = token_roles.iter().map(|r| role(r)).collect();
            let got = roles.allows(&names, &perm(required)).map(|r| r.0.as_str());
            assert_eq!(
                got, *want,
                "roles {token_roles:?} asking for {required:?} should be granted by {want:?}"
            );
        }
    }

    #[test]
    fn unknown_token_roles_grant_nothing_and_are_skipped() {
        let roles = support_roles();
        let names = vec![role("intern"), role("ghost-admin"), role("agent")];
        assert_eq!(
            roles.allows(&names, &perm("contacts.read")),
            Some(&role("agent")),
            "unknown roles should be skipped and the known `agent` should grant"
        );
        assert_eq!(
            roles.allows(&[role("intern")], &perm("contacts.read")),
            None,
            "a role the config does not define should grant nothing"
        );
    }

    #[test]
    fn explain_names_the_most_specific_grant_and_where_it_is_defined() {
        let roles = support_roles();
        let cases = [
            ("conversations.read", "conversations.read", "agent"),
            ("conversations.assign", "conversations.*", "supervisor"),
            ("billing.refund", "*", "admin"),
            ("contacts.read", "contacts.read", "agent"),
        ];
        for (required, grant, defined_in) in cases {
            let got = roles
                .granted_by(&[role("admin")], &perm(required))
                .unwrap_or_else(|| panic!("admin should hold {required}"));
            assert_eq!(
                (got.grant.as_str(), got.defined_in.0.as_str()),
                (grant, defined_in),
                "admin's {required} should come from grant {grant} defined in {defined_in}"
            );
        }
    }

    #[test]
    fn diamond_inheritance_flattens_once() {
        let roles = compile(vec![
            def("base", &[], &["contacts.read"]),
            def("left", &["base"], &["conversations.read"]),
            def("right", &["base"], &["whatsapp.send"]),
            def("both", &["left", "right"], &[]),
        ]);
        let grants: Vec<&str> = roles
            .effective_grants("both")
            .map(|g| g.map(PermissionGrant::as_str).collect())
            .unwrap_or_default();
        assert_eq!(
            grants,
            vec!["conversations.read", "contacts.read", "whatsapp.send"],
            "a diamond should yield each grant once, parents in `inherits` order"
        );
        let both = vec![role("both")];
        for p in ["contacts.read", "conversations.read", "whatsapp.send"] {
            assert!(
                roles.holds(&both, &perm(p)),
                "`both` should inherit {p} through the diamond"
            );
        }
    }

    #[test]
    fn cycles_are_reported_as_the_closing_path() {
        let cases = [
            (vec![def("a", &["a"], &[])], "a -> a"),
            (
                vec![def("a", &["b"], &[]), def("b", &["a"], &[])],
                "a -> b -> a",
            ),
            (
                vec![
                    def("ok", &[], &[]),
                    def("a", &["ok", "b"], &[]),
                    def("b", &["c"], &[]),
                    def("c", &["a"], &[]),
                ],
                "a -> b -> c -> a",
            ),
            (
                vec![
                    def("x", &["b"], &[]),
                    def("b", &["c"], &[]),
                    def("c", &["b"], &[]),
                ],
                "b -> c -> b",
            ),
        ];
        for (defs, want) in cases {
            let got = RoleSet::compile(defs.clone());
            assert_eq!(
                got.as_ref().err(),
                Some(&PolicyError::InheritanceCycle {
                    cycle: want.to_owned()
                }),
                "roles {:?} should be refused as the cycle {want}",
                defs.iter().map(|d| d.name.0.as_str()).collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn bad_definitions_are_refused() {
        let cases = [
            (
                vec![def("agent", &["ghost"], &[])],
                "role `agent` inherits unknown role `ghost`",
            ),
            (
                vec![def("agent", &[], &[]), def("agent", &[], &[])],
                "role `agent` is defined more than once",
            ),
            (
                vec![def("agent", &[], &["Conversations.Read"])],
                "permission `Conversations.Read` is invalid: segments may only hold a-z, 0-9, `_` and `-`",
            ),
        ];
        for (defs, want) in cases {
            let got = RoleSet::compile(defs).err().map(|e| e.to_string());
            assert_eq!(
                got.as_deref(),
                Some(want),
                "compile should fail with: {want}"
            );
        }
    }

    #[test]
    fn heirs_include_the_role_and_everyone_inheriting_it() {
        let roles = support_roles();
        let agent = roles
            .id("agent")
            .unwrap_or_else(|| panic!("agent is configured"));
        let heirs = roles.heirs_of(agent);
        for (name, want) in [
            ("agent", true),
            ("supervisor", true),
            ("admin", true),
            ("marketing", false),
            ("auditor", false),
        ] {
            let id = roles
                .id(name)
                .unwrap_or_else(|| panic!("{name} is configured"));
            assert_eq!(
                heirs.contains(id),
                want,
                "{name} should {}be bound by rules for agent",
                if want { "" } else { "not " }
            );
        }
    }

    #[test]
    fn masks_work_beyond_64_roles() {
        let mut mask = RoleMask::with_len(130);
        mask.insert(RoleId(129));
        mask.insert(RoleId(3));
        assert!(mask.contains(RoleId(129)), "bit 129 should be set");
        assert!(mask.contains(RoleId(3)), "bit 3 should be set");
        assert!(!mask.contains(RoleId(64)), "bit 64 should be clear");
        assert!(!mask.contains(RoleId(500)), "out of range should be clear");
    }
}
