//! MFA freshness: "this needs MFA, done no longer than 15 minutes ago".
//!
//! Used by access rules (`mfa_max_age`) and by routes (`require_mfa`,
//! `mfa_max_age`). Without MFA the answer is `mfa_required`; with MFA but
//! no `auth_time`, or one older than the limit, `mfa_stale` (both are 401
//! with an RFC 9470 step-up challenge, so the client knows to
//! re-authenticate). An age exactly at the limit is still fresh. An
//! `auth_time` in the future (clock skew between the identity provider and
//! us) counts as age zero: the token is signed, and its `exp` still bounds
//! it.

use std::time::Duration;

use jiff::Timestamp;

use crate::decision::Reason;
use crate::identity::Identity;

/// What a check asks of the caller's authentication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MfaDemand {
    /// Nothing.
    None,
    /// MFA, at any age.
    Any,
    /// MFA no older than this.
    Fresh(Duration),
}

impl MfaDemand {
    /// `mfa_max_age` implies MFA; `require_mfa` alone accepts any age.
    pub fn new(require_mfa: bool, max_age: Option<Duration>) -> MfaDemand {
        match (require_mfa, max_age) {
            (_, Some(age)) => MfaDemand::Fresh(age),
            (true, None) => MfaDemand::Any,
            (false, None) => MfaDemand::None,
        }
    }

    /// Why `identity` does not meet the demand at `now`, if it does not.
    pub fn refuse(self, identity: &Identity, now: Timestamp) -> Option<Reason> {
        let max_age = match self {
            MfaDemand::None => return None,
            _ if !identity.mfa => return Some(Reason::MfaRequired),
            MfaDemand::Any => return None,
            MfaDemand::Fresh(age) => age,
        };
        let Some(auth_time) = identity.auth_time else {
            return Some(Reason::MfaStale);
        };
        let age_ns = now
            .as_nanosecond()
            .saturating_sub(i128::from(auth_time).saturating_mul(1_000_000_000));
        let limit_ns = i128::try_from(max_age.as_nanos()).unwrap_or(i128::MAX);
        (age_ns > limit_ns).then_some(Reason::MfaStale)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn identity(mfa: bool, auth_time: Option<i64>) -> Identity {
        Identity {
            subject: "u-1".to_owned(),
            roles: Vec::new(),
            attributes: BTreeMap::new(),
            mfa,
            auth_time,
            token_id: None,
            expires_at: 2_000_000_000,
        }
    }

    #[test]
    fn freshness() {
        let now = Timestamp::from_second(1_800_000_000).unwrap_or_else(|e| panic!("{e}"));
        let fifteen = Duration::from_secs(900);
        let cases = [
            (
                "no demand, no MFA",
                MfaDemand::None,
                identity(false, None),
                None,
            ),
            (
                "any MFA, none done",
                MfaDemand::Any,
                identity(false, None),
                Some(Reason::MfaRequired),
            ),
            (
                "any MFA, old",
                MfaDemand::Any,
                identity(true, Some(1)),
                None,
            ),
            (
                "fresh, no MFA",
                MfaDemand::Fresh(fifteen),
                identity(false, Some(1_800_000_000)),
                Some(Reason::MfaRequired),
            ),
            (
                "fresh, no auth_time",
                MfaDemand::Fresh(fifteen),
                identity(true, None),
                Some(Reason::MfaStale),
            ),
            (
                "fresh, 899 s ago",
                MfaDemand::Fresh(fifteen),
                identity(true, Some(1_800_000_000 - 899)),
                None,
            ),
            (
                "fresh, exactly at the limit",
                MfaDemand::Fresh(fifteen),
                identity(true, Some(1_800_000_000 - 900)),
                None,
            ),
            (
                "fresh, 901 s ago",
                MfaDemand::Fresh(fifteen),
                identity(true, Some(1_800_000_000 - 901)),
                Some(Reason::MfaStale),
            ),
            (
                "fresh, auth_time in the future",
                MfaDemand::Fresh(fifteen),
                identity(true, Some(1_800_000_060)),
                None,
            ),
            (
                "fresh, absurd auth_time",
                MfaDemand::Fresh(fifteen),
                identity(true, Some(i64::MIN)),
                Some(Reason::MfaStale),
            ),
        ];
        for (name, demand, who, want) in cases {
            assert_eq!(demand.refuse(&who, now), want, "{name}: should be {want:?}");
        }
    }

    #[test]
    fn max_age_implies_mfa() {
        assert_eq!(
            MfaDemand::new(false, Some(Duration::from_secs(60))),
            MfaDemand::Fresh(Duration::from_secs(60)),
            "mfa_max_age alone should demand fresh MFA"
        );
        assert_eq!(
            MfaDemand::new(true, None),
            MfaDemand::Any,
            "require_mfa alone should demand MFA of any age"
        );
        assert_eq!(
            MfaDemand::new(false, None),
            MfaDemand::None,
            "no settings should demand nothing"
        );
    }
}
