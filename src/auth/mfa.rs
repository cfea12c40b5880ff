//! MFA presence and freshness, and the RFC 9470 step-up challenge that
//! tells a client what it needs to come back with.
//!
//! Checked on every request, cache hit or not: freshness depends on `now`.

use std::time::Duration;

use super::MfaSettings;
use crate::decision::Reason;
use crate::identity::Identity;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MfaFailure {
    /// The token does not show MFA.
    #[error("multi-factor authentication is required")]
    Required,
    /// The last authentication is older than the route allows, or the
    /// token does not say when it happened.
    #[error("authentication is too old")]
    Stale,
}

impl MfaFailure {
    pub fn reason(self) -> Reason {
        match self {
            MfaFailure::Required => Reason::MfaRequired,
            MfaFailure::Stale => Reason::MfaStale,
        }
    }
}

/// Whether `identity` meets a route's MFA requirements at `now`:
/// `require_mfa` needs the MFA flag; `required_max_age` needs `auth_time`
/// no older than that. A missing `auth_time` under a max age is stale: we
/// cannot prove freshness. Presence is checked first, so a token without
/// MFA is told to do MFA, not merely to log in again.
pub fn check_mfa(
    identity: &Identity,
    required_max_age: Option<Duration>,
    require_mfa: bool,
    now: i64,
) -> Result<(), MfaFailure> {
    if require_mfa && !identity.mfa {
        return Err(MfaFailure::Required);
    }
    if let Some(max_age) = required_max_age {
        let max_age = i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX);
        let auth_time = identity.auth_time.ok_or(MfaFailure::Stale)?;
        if now.saturating_sub(auth_time) > max_age {
            return Err(MfaFailure::Stale);
        }
    }
    Ok(())
}

/// The `WWW-Authenticate` value for an MFA refusal (RFC 9470 §3):
/// `Bearer error="insufficient_user_authentication",
/// error_description="…"`, then `acr_values="…"` when acceptable `acr`
/// values are configured, then `max_age="…"` (seconds) when a max age
/// applies (`max_age`, else the configured default). Values are quoted as
/// in the RFC's own examples; RFC 9110 §11.2 lets clients read either form.
pub fn challenge(failure: MfaFailure, settings: &MfaSettings, max_age: Option<Duration>) -> String {
    let description = match failure {
        MfaFailure::Required => "Multi-factor authentication is required",
        MfaFailure::Stale => "More recent authentication is required",
    };
    let mut value = format!(
        "Bearer error=\"insufficient_user_authentication\", error_description=\"{description}\""
    );
    if !settings.acr_any.is_empty() {
        let acr: Vec<String> = settings.acr_any.iter().map(|a| quoted_text(a)).collect();
        value.push_str(&format!(", acr_values=\"{}\"", acr.join(" ")));
    }
    if let Some(age) = max_age.or(settings.max_age) {
        value.push_str(&format!(", max_age=\"{}\"", age.as_secs()));
    }
    value
}

/// Config text made safe inside a quoted-string: `"` and `\` escaped,
/// anything but visible ASCII and space dropped (a header value cannot
/// carry it, and a space would split the acr list).
fn quoted_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars().filter(|c| c.is_ascii_graphic()) {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_750_000_000;

    fn identity(mfa: bool, auth_time: Option<i64>) -> Identity {
        Identity {
            subject: "u".into(),
            roles: vec![],
            attributes: Default::default(),
            mfa,
            auth_time,
            token_id: None,
            expires_at: NOW + 600,
        }
    }

    const FIVE_MIN: Option<Duration> = Some(Duration::from_secs(300));

    #[test]
    fn mfa_flag_satisfies_a_requirement() {
        assert_eq!(check_mfa(&identity(true, None), None, true, NOW), Ok(()));
        assert_eq!(
            check_mfa(&identity(false, None), None, true, NOW),
            Err(MfaFailure::Required)
        );
        assert_eq!(
            check_mfa(&identity(false, None), None, false, NOW),
            Ok(()),
            "nothing required, nothing checked"
        );
    }

    #[test]
    fn stale_auth_time_is_refused() {
        assert_eq!(
            check_mfa(&identity(true, Some(NOW - 300)), FIVE_MIN, true, NOW),
            Ok(()),
            "exactly max age is fresh"
        );
        assert_eq!(
            check_mfa(&identity(true, Some(NOW - 301)), FIVE_MIN, true, NOW),
            Err(MfaFailure::Stale)
        );
    }

    #[test]
    fn missing_auth_time_under_a_max_age_is_stale() {
        assert_eq!(
            check_mfa(&identity(true, None), FIVE_MIN, true, NOW),
            Err(MfaFailure::Stale),
            "freshness cannot be proven without auth_time"
        );
    }

    #[test]
    fn missing_mfa_is_reported_before_staleness() {
        assert_eq!(
            check_mfa(&identity(false, None), FIVE_MIN, true, NOW),
            Err(MfaFailure::Required)
        );
        assert_eq!(MfaFailure::Required.reason(), Reason::MfaRequired);
        assert_eq!(MfaFailure::Stale.reason(), Reason::MfaStale);
    }

    #[test]
    fn challenge_strings_are_exact() {
        let none = MfaSettings::default();
        assert_eq!(
            challenge(MfaFailure::Required, &none, None),
            r#"Bearer error="insufficient_user_authentication", error_description="Multi-factor authentication is required""#
        );
        let settings = MfaSettings {
            amr_any: vec!["otp".into()],
            acr_any: vec!["urn:acme:mfa".into(), "phr".into()],
            max_age: Some(Duration::from_secs(900)),
        };
        assert_eq!(
            challenge(MfaFailure::Stale, &settings, FIVE_MIN),
            r#"Bearer error="insufficient_user_authentication", error_description="More recent authentication is required", acr_values="urn:acme:mfa phr", max_age="300""#,
            "the route's max age should win over the default"
        );
        assert_eq!(
            challenge(MfaFailure::Required, &settings, None),
            r#"Bearer error="insufficient_user_authentication", error_description="Multi-factor authentication is required", acr_values="urn:acme:mfa phr", max_age="900""#
        );
    }

    #[test]
    fn challenge_values_cannot_break_the_quoting() {
        let settings = MfaSettings {
            amr_any: vec![],
            acr_any: vec!["a\"b\\c\r\nd e".into()],
            max_age: None,
        };
        assert_eq!(
            challenge(MfaFailure::Required, &settings, None),
            r#"Bearer error="insufficient_user_authentication", error_description="Multi-factor authentication is required", acr_values="a\"b\\cde""#
        );
    }
}
