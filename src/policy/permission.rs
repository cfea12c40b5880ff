//! Permissions: dotted names such as `conversations.read`,
//! `contacts.export`, `whatsapp.send`, and the grants that roles hold.
//!
//! A grant is a permission name, or one ending in a whole-segment `*`:
//! `conversations.*` covers every permission *below* `conversations`
//! (`conversations.read`, `conversations.notes.read`, and also the literal
//! requirement `conversations.*`) but not the bare name `conversations`;
//! `*` alone covers everything. Matching is by segment, never by text
//! prefix, so `conversations.*` does not cover `conversations_archive.read`.
//!
//! Names are parsed once, when the snapshot is built; a `Permission` is an
//! `Arc<str>` so explanations and plans share it without copying.

use std::fmt;
use std::sync::Arc;

use super::error::PolicyError;

/// A parsed permission name (`[a-z0-9_-]+` segments joined by `.`, with
/// `*` allowed only as the whole last segment or alone).
///
/// Routes normally require a name without `*`; if one does require
/// `conversations.*`, only a grant of `conversations.*` or a broader
/// wildcard satisfies it (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Permission(Arc<str>);

/// A permission as held by a role: an exact name or a wildcard.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PermissionGrant(Permission);

impl Permission {
    /// Parses and validates a permission name.
    pub fn parse(text: &str) -> Result<Permission, PolicyError> {
        check_syntax(text).map_err(|why| PolicyError::BadPermission {
            text: text.to_owned(),
            why,
        })?;
        Ok(Permission(Arc::from(text)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the name ends in (or is) a `*` segment.
    pub fn is_wildcard(&self) -> bool {
        self.0.ends_with('*')
    }
}

impl PermissionGrant {
    /// Parses a grant as written under `roles.<name>.permissions`.
    pub fn parse(text: &str) -> Result<PermissionGrant, PolicyError> {
        Permission::parse(text).map(PermissionGrant)
    }

    /// Whether holding this grant satisfies `required`.
    pub fn matches(&self, required: &Permission) -> bool {
        match self.wildcard_prefix() {
            None => self.0 == *required,
            Some(prefix) => required.as_str().starts_with(prefix),
        }
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    pub fn permission(&self) -> &Permission {
        &self.0
    }

    /// For a wildcard, the text a covered name starts with, dot included
    /// (`"conversations."`, or `""` for `*`); `None` for an exact grant.
    pub(crate) fn wildcard_prefix(&self) -> Option<&str> {
        self.as_str().strip_suffix('*')
    }
}

impl From<Permission> for PermissionGrant {
    fn from(permission: Permission) -> Self {
        PermissionGrant(permission)
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for PermissionGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

fn check_syntax(text: &str) -> Result<(), &'static str> {
    if text.is_empty() {
        return Err("it is empty");
    }
    let mut segments = text.split('.').peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        if segment.is_empty() {
            return Err("segments between dots must not be empty");
        }
        if segment == "*" {
            if !last {
                return Err("`*` may only be the last segment");
            }
            continue;
        }
        if segment.contains('*') {
            return Err("`*` must be a whole segment, as in `conversations.*`");
        }
        let valid = segment
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !valid {
            return Err("segments may only hold a-z, 0-9, `_` and `-`");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perm(text: &str) -> Permission {
        Permission::parse(text).unwrap_or_else(|e| panic!("{text:?} should parse: {e}"))
    }

    fn grant(text: &str) -> PermissionGrant {
        PermissionGrant::parse(text).unwrap_or_else(|e| panic!("{text:?} should parse: {e}"))
    }

    #[test]
    fn valid_names_parse() {
        for text in [
            "conversations.read",
            "contacts.export",
            "whatsapp.send",
            "conversations.read_all",
            "a-b.c_d.e9",
            "single",
            "conversations.*",
            "*",
        ] {
            assert_eq!(perm(text).as_str(), text, "{text:?} should round-trip");
        }
    }

    #[test]
    fn invalid_names_are_refused() {
        for text in [
            "",
            ".",
            "conversations.",
            ".read",
            "conversations..read",
            "Conversations.read",
            "conversations.re ad",
            "conversations.*.read",
            "*.read",
            "conversations.re*",
            "conversations.**",
            "contacts/export",
            "kontakte.löschen",
        ] {
            assert!(
                matches!(
                    Permission::parse(text),
                    Err(PolicyError::BadPermission { .. })
                ),
                "{text:?} should be refused as a permission name"
            );
        }
    }

    #[test]
    fn grants_match_by_whole_segment() {
        let cases = [
            ("conversations.read", "conversations.read", true),
            ("conversations.read", "conversations.read_all", false),
            ("conversations.read", "conversations", false),
            ("conversations.*", "conversations.read", true),
            ("conversations.*", "conversations.notes.read", true),
            ("conversations.*", "conversations.*", true),
            ("conversations.*", "conversations", false),
            ("conversations.*", "conversations_archive.read", false),
            ("conversations.*", "contacts.read", false),
            ("conversations.notes.*", "conversations.read", false),
            ("*", "whatsapp.send", true),
            ("*", "anything", true),
            ("*", "conversations.*", true),
            ("conversations.read", "conversations.*", false),
        ];
        for (g, required, want) in cases {
            assert_eq!(
                grant(g).matches(&perm(required)),
                want,
                "grant {g:?} matching {required:?} should be {want}"
            );
        }
    }
}
