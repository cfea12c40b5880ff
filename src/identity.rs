//! Who is calling: the authenticated identity that authorization, scope
//! checks, row filters and the audit record all read. Produced by `auth`
//! from a verified token; never from anything a client can set directly.

use std::collections::BTreeMap;
use std::fmt;

/// A role name as configured under `roles:` (`agent`, `supervisor`, …).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoleName(pub String);

impl fmt::Display for RoleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The subject claim (configurable; `sub` by default).
    pub subject: String,
    /// Roles from the configured roles claim, as the token states them.
    pub roles: Vec<RoleName>,
    /// Named attribute claims (`user_id`, `phone_number_ids`, `teams`,
    /// `region`, …). Every value is kept as text; a scalar claim becomes a
    /// one-element list, numbers are written in decimal.
    pub attributes: BTreeMap<String, Vec<String>>,
    /// Whether the token says MFA happened (`amr` / `acr` per config).
    pub mfa: bool,
    /// `auth_time`: when the user last authenticated (Unix seconds).
    pub auth_time: Option<i64>,
    /// `jti`, for revocation by token id.
    pub token_id: Option<String>,
    /// `exp` (Unix seconds).
    pub expires_at: i64,
}

impl Identity {
    /// The values of an attribute claim (empty if the token lacks it).
    pub fn attribute(&self, name: &str) -> &[String] {
        self.attributes.get(name).map_or(&[], Vec::as_slice)
    }
}
