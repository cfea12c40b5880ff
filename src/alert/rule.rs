//! Alert rules and sinks as compiled from the config, and the event a rule
//! is matched against.

use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use time::OffsetDateTime;

use crate::decision::{Reason, Verdict};

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleName(pub String);

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SinkName(pub String);

/// The largest `threshold` accepted.
pub const MAX_THRESHOLD: u32 = 1_000_000;
/// The shortest `window` accepted.
pub const MIN_WINDOW: Duration = Duration::from_secs(1);
/// The longest `window` accepted (a week).
pub const MAX_WINDOW: Duration = Duration::from_secs(7 * 86_400);

/// One `alerts.rules` entry.
#[derive(Debug)]
pub struct AlertRule {
    pub name: RuleName,
    pub trigger: Trigger,
    /// Where a fired alert goes, in config order.
    pub sinks: Vec<Arc<Sink>>,
}

/// What a rule counts and when it fires. A reload keeps a rule's counters
/// while its name and trigger are unchanged (its sinks may change).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trigger {
    pub when: Matcher,
    pub key: KeyKind,
    pub threshold: NonZeroU32,
    pub window: Duration,
    /// Keys tracked at once; the oldest are forgotten beyond this.
    pub max_keys: NonZeroUsize,
}

/// Which requests a rule counts. Every condition given must hold; a list
/// holds when any of its items does; an empty matcher counts every request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Matcher {
    pub decision: Option<Verdict>,
    pub reasons: Vec<Reason>,
    pub routes: Vec<String>,
    /// The caller holds at least one of these roles (as named in the token).
    pub roles: Vec<String>,
}

/// What a rule counts per.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// The authenticated caller; requests without one are not counted.
    Subject,
    /// The client address, as resolved through trusted proxies.
    ClientIp,
    /// The matched route; requests that matched none are not counted.
    Route,
}

/// A sink fired alerts are delivered to.
#[derive(Debug)]
pub struct Sink {
    pub name: SinkName,
    pub kind: SinkKind,
}

#[derive(Debug)]
pub enum SinkKind {
    /// One `warn` line on the tracing target `chatwarden::alert`.
    Log,
    /// A JSON POST of the alert.
    Webhook(Webhook),
}

#[derive(Debug)]
pub struct Webhook {
    pub url: reqwest::Url,
    /// Sent with every POST (a bearer token from the environment); values
    /// are marked sensitive so `Debug` never prints them.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// For each attempt.
    pub timeout: Duration,
}

/// Why a rule or sink was refused at load.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AlertError {
    #[error("key `{0}` must be sub, ip or route")]
    UnknownKey(String),
    #[error("threshold must be between 1 and {MAX_THRESHOLD}")]
    Threshold,
    #[error("window must be between 1s and 7 days")]
    Window,
    #[error("max_keys must be at least 1")]
    MaxKeys,
}

/// One finished request, as the alert rules see it. Borrowed from the
/// audit record: building it allocates nothing.
#[derive(Debug, Clone, Copy)]
pub struct Event<'a> {
    /// When the request arrived. The window counters run on this time, so
    /// the clock is whatever the caller injects (tests pass fixed times).
    pub ts: OffsetDateTime,
    pub request_id: &'a str,
    pub config_version: &'a str,
    pub decision: Verdict,
    pub reason: Option<Reason>,
    pub route: Option<&'a str>,
    pub sub: Option<&'a str>,
    /// Empty when unknown.
    pub client_ip: &'a str,
    pub roles: &'a [String],
}

impl KeyKind {
    pub fn parse(text: &str) -> Result<KeyKind, AlertError> {
        match text {
            "sub" => Ok(KeyKind::Subject),
            "ip" => Ok(KeyKind::ClientIp),
            "route" => Ok(KeyKind::Route),
            other => Err(AlertError::UnknownKey(other.to_owned())),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Subject => "sub",
            KeyKind::ClientIp => "ip",
            KeyKind::Route => "route",
        }
    }

    /// The event's value for this key, if it has one.
    pub fn of<'a>(self, event: &Event<'a>) -> Option<&'a str> {
        let value = match self {
            KeyKind::Subject => event.sub?,
            KeyKind::ClientIp => event.client_ip,
            KeyKind::Route => event.route?,
        };
        (!value.is_empty()).then_some(value)
    }
}

impl Trigger {
    pub fn new(
        when: Matcher,
        key: KeyKind,
        threshold: u32,
        window: Duration,
        max_keys: usize,
    ) -> Result<Trigger, AlertError> {
        let threshold = NonZeroU32::new(threshold)
            .filter(|t| t.get() <= MAX_THRESHOLD)
            .ok_or(AlertError::Threshold)?;
        if !(MIN_WINDOW..=MAX_WINDOW).contains(&window) {
            return Err(AlertError::Window);
        }
        let max_keys = NonZeroUsize::new(max_keys).ok_or(AlertError::MaxKeys)?;
        Ok(Trigger {
            when,
            key,
            threshold,
            window,
            max_keys,
        })
    }
}

impl Matcher {
    /// Whether the rule counts this request. Cheapest checks first: most
    /// requests are allowed and most rules are about denials.
    pub fn matches(&self, event: &Event<'_>) -> bool {
        if self.decision.is_some_and(|d| d != event.decision) {
            return false;
        }
        if !self.reasons.is_empty() && !event.reason.is_some_and(|r| self.reasons.contains(&r)) {
            return false;
        }
        if !self.routes.is_empty()
            && !event
                .route
                .is_some_and(|r| self.routes.iter().any(|x| x == r))
        {
            return false;
        }
        if !self.roles.is_empty() && !event.roles.iter().any(|r| self.roles.contains(r)) {
            return false;
        }
        true
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn event<'a>(sub: Option<&'a str>, decision: Verdict, reason: Option<Reason>) -> Event<'a> {
        Event {
            ts: OffsetDateTime::UNIX_EPOCH,
            request_id: "req",
            config_version: "v1",
            decision,
            reason,
            route: Some("contacts.export"),
            sub,
            client_ip: "203.0.113.9",
            roles: &[],
        }
    }

    #[test]
    fn every_condition_given_must_hold() {
        let denied = event(Some("mallory"), Verdict::Deny, Some(Reason::TokenInvalid));
        let allowed = event(Some("mallory"), Verdict::Allow, None);
        let any = Matcher::default();
        assert!(
            any.matches(&denied) && any.matches(&allowed),
            "an empty matcher counts everything"
        );
        let deny = Matcher {
            decision: Some(Verdict::Deny),
            ..Matcher::default()
        };
        assert!(deny.matches(&denied) && !deny.matches(&allowed));
        let reasons = Matcher {
            reasons: vec![Reason::TokenExpired, Reason::TokenInvalid],
            ..Matcher::default()
        };
        assert!(reasons.matches(&denied), "any of the reasons");
        assert!(!reasons.matches(&allowed), "an allow has no reason");
        let export = Matcher {
            routes: vec!["contacts.export".into()],
            decision: Some(Verdict::Allow),
            ..Matcher::default()
        };
        assert!(export.matches(&allowed) && !export.matches(&denied));
        let mut no_route = allowed;
        no_route.route = None;
        assert!(!export.matches(&no_route), "no route matched");
        let roles = Matcher {
            roles: vec!["marketing".into()],
            ..Matcher::default()
        };
        let held = ["agent".to_string(), "marketing".to_string()];
        let mut marketer = allowed;
        marketer.roles = &held;
        assert!(roles.matches(&marketer) && !roles.matches(&allowed));
    }

    #[test]
    fn keys_come_from_the_event() {
        let mut e = event(Some("amelia"), Verdict::Deny, Some(Reason::IpDenied));
        assert_eq!(KeyKind::Subject.of(&e), Some("amelia"));
        assert_eq!(KeyKind::ClientIp.of(&e), Some("203.0.113.9"));
        assert_eq!(KeyKind::Route.of(&e), Some("contacts.export"));
        e.sub = None;
        e.client_ip = "";
        assert_eq!(
            KeyKind::Subject.of(&e),
            None,
            "unauthenticated: not counted"
        );
        assert_eq!(KeyKind::ClientIp.of(&e), None, "unknown address");
        assert_eq!(KeyKind::parse("ip"), Ok(KeyKind::ClientIp));
        assert!(KeyKind::parse("user").is_err());
    }

    #[test]
    fn triggers_are_validated() {
        let w = Duration::from_secs(60);
        let m = Matcher::default;
        assert_eq!(
            Trigger::new(m(), KeyKind::Subject, 0, w, 10),
            Err(AlertError::Threshold)
        );
        assert_eq!(
            Trigger::new(m(), KeyKind::Subject, MAX_THRESHOLD + 1, w, 10),
            Err(AlertError::Threshold)
        );
        assert_eq!(
            Trigger::new(m(), KeyKind::Subject, 1, Duration::from_millis(500), 10),
            Err(AlertError::Window)
        );
        assert_eq!(
            Trigger::new(m(), KeyKind::Subject, 1, MAX_WINDOW * 2, 10),
            Err(AlertError::Window)
        );
        assert_eq!(
            Trigger::new(m(), KeyKind::Subject, 1, w, 0),
            Err(AlertError::MaxKeys)
        );
        assert!(Trigger::new(m(), KeyKind::Subject, 5, w, 10).is_ok());
    }
}
