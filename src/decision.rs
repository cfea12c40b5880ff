//! The outcome of the request pipeline as data.
//!
//! One `Decision` value feeds the error body, the audit record, the metrics
//! label and `chatwarden explain`, so the four can never disagree.

use std::fmt;

/// What the gateway decided for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Forward the request upstream.
    Allow,
    /// Answer the client with an error and never reach an upstream.
    Deny(Reason),
}

/// Why a request was refused or failed. Each code is part of the public
/// contract (DESIGN.md "Error responses"): clients and dashboards match on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    NoRoute,
    /// The object does not exist or the caller may not reach it (ownership
    /// check); the two look the same so ids cannot be probed.
    NotFound,
    BadRequest,
    TokenMissing,
    TokenInvalid,
    TokenExpired,
    TokenRevoked,
    MfaRequired,
    MfaStale,
    PermissionDenied,
    IpDenied,
    OutsideHours,
    ScopeDenied,
    SignatureInvalid,
    /// A change authenticated by the token cookie, sent from another
    /// site's page (cross-site request forgery).
    OriginDenied,
    RateLimited,
    /// The request body is larger than the route's `max_body`.
    BodyTooLarge,
    /// The request body arrived slower than `connections.body_min_rate`.
    BodyTooSlow,
    /// A WebSocket handshake on a route that does not carry WebSockets.
    UpgradeDenied,
    /// A browser's preflight from an origin `cors` does not list, or
    /// asking to send a header it does not allow.
    CorsDenied,
    UpstreamError,
    RedactionFailed,
    UpstreamTimeout,
    /// The audit sink cannot take records (writes failing, queue full)
    /// and `audit.on_overflow` is `fail_closed`: nothing is served unaudited.
    AuditUnavailable,
}

impl Reason {
    /// Every reason, for exhaustive tests and metric pre-registration.
    pub const ALL: [Reason; 24] = [
        Reason::NoRoute,
        Reason::NotFound,
        Reason::BadRequest,
        Reason::TokenMissing,
        Reason::TokenInvalid,
        Reason::TokenExpired,
        Reason::TokenRevoked,
        Reason::MfaRequired,
        Reason::MfaStale,
        Reason::PermissionDenied,
        Reason::IpDenied,
        Reason::OutsideHours,
        Reason::ScopeDenied,
        Reason::SignatureInvalid,
        Reason::OriginDenied,
        Reason::RateLimited,
        Reason::BodyTooLarge,
        Reason::BodyTooSlow,
        Reason::UpgradeDenied,
        Reason::CorsDenied,
        Reason::UpstreamError,
        Reason::RedactionFailed,
        Reason::UpstreamTimeout,
        Reason::AuditUnavailable,
    ];

    /// The wire code, as it appears in error bodies and audit records.
    pub fn code(self) -> &'static str {
        match self {
            Reason::NoRoute => "no_route",
            Reason::NotFound => "not_found",
            Reason::BadRequest => "bad_request",
            Reason::TokenMissing => "token_missing",
            Reason::TokenInvalid => "token_invalid",
            Reason::TokenExpired => "token_expired",
            Reason::TokenRevoked => "token_revoked",
            Reason::MfaRequired => "mfa_required",
            Reason::MfaStale => "mfa_stale",
            Reason::PermissionDenied => "permission_denied",
            Reason::IpDenied => "ip_denied",
            Reason::OutsideHours => "outside_hours",
            Reason::ScopeDenied => "scope_denied",
            Reason::SignatureInvalid => "signature_invalid",
            Reason::OriginDenied => "origin_denied",
            Reason::RateLimited => "rate_limited",
            Reason::BodyTooLarge => "body_too_large",
            Reason::BodyTooSlow => "body_too_slow",
            Reason::UpgradeDenied => "upgrade_denied",
            Reason::CorsDenied => "cors_denied",
            Reason::UpstreamError => "upstream_error",
            Reason::RedactionFailed => "redaction_failed",
            Reason::UpstreamTimeout => "upstream_timeout",
            Reason::AuditUnavailable => "audit_unavailable",
        }
    }

    /// The HTTP status the client receives.
    pub fn status(self) -> u16 {
        match self {
            Reason::NoRoute | Reason::NotFound => 404,
            Reason::BadRequest => 400,
            Reason::TokenMissing
            | Reason::TokenInvalid
            | Reason::TokenExpired
            | Reason::TokenRevoked
            | Reason::MfaRequired
            | Reason::MfaStale => 401,
            Reason::PermissionDenied
            | Reason::IpDenied
            | Reason::OutsideHours
            | Reason::ScopeDenied
            | Reason::SignatureInvalid
            | Reason::OriginDenied
            | Reason::UpgradeDenied
            | Reason::CorsDenied => 403,
            Reason::BodyTooSlow => 408,
            Reason::BodyTooLarge => 413,
            Reason::RateLimited => 429,
            Reason::UpstreamError | Reason::RedactionFailed => 502,
            Reason::UpstreamTimeout => 504,
            Reason::AuditUnavailable => 503,
        }
    }

    /// Whether the gateway itself failed (audit `decision: error`) rather
    /// than refusing the caller (`decision: deny`).
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            Reason::UpstreamError
                | Reason::RedactionFailed
                | Reason::UpstreamTimeout
                | Reason::AuditUnavailable
        )
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// The audit record's `decision` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Deny,
    Error,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
            Verdict::Error => "error",
        }
    }
}

impl Decision {
    /// How the audit record classifies this decision.
    pub fn verdict(self) -> Verdict {
        match self {
            Decision::Allow => Verdict::Allow,
            Decision::Deny(r) if r.is_failure() => Verdict::Error,
            Decision::Deny(_) => Verdict::Deny,
        }
    }

    pub fn reason(self) -> Option<Reason> {
        match self {
            Decision::Allow => None,
            Decision::Deny(r) => Some(r),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for r in Reason::ALL {
            assert!(seen.insert(r.code()), "duplicate code {}", r.code());
            assert!(
                r.code().chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "code {} should be snake_case",
                r.code()
            );
        }
    }

    #[test]
    fn statuses_follow_the_design_table() {
        assert_eq!(Reason::NoRoute.status(), 404);
        assert_eq!(Reason::MfaStale.status(), 401);
        assert_eq!(Reason::ScopeDenied.status(), 403);
        assert_eq!(Reason::RateLimited.status(), 429);
        assert_eq!(Reason::RedactionFailed.status(), 502);
        assert_eq!(Reason::UpstreamTimeout.status(), 504);
        assert_eq!(Reason::AuditUnavailable.status(), 503);
    }

    #[test]
    fn upstream_failures_are_errors_not_denials() {
        assert_eq!(
            Decision::Deny(Reason::UpstreamError).verdict(),
            Verdict::Error
        );
        assert_eq!(Decision::Deny(Reason::NoRoute).verdict(), Verdict::Deny);
        assert_eq!(Decision::Allow.verdict(), Verdict::Allow);
    }
}
