//! Reading a request body to check the route's body scope bindings
//! ([`crate::policy::body_scope`]) before anything goes upstream. Like a
//! webhook's, the body is read with pingora's retry buffer on, so pingora
//! forwards exactly the bytes that were checked.

use pingora_core::Result;
use pingora_proxy::Session;

use super::body;
use crate::config::snapshot::Route;
use crate::config::Snapshot;
use crate::decision::Reason;
use crate::gate::Admission;
use crate::policy::body_scope::{self, BodyRefusal, MAX_SCOPED_BODY};
use crate::policy::Permission;

/// Why a body was refused: the reason, the rule the audit record names,
/// the detail for the log, and whether the body was left unread (so the
/// connection cannot be reused).
pub struct Refusal {
    pub reason: Reason,
    pub rule: String,
    pub detail: String,
    pub unread: bool,
}

/// `Ok(None)` to forward; `Ok(Some(refusal))` to refuse; `Err` when the
/// client connection failed. Callers holding a binding's
/// `unless_permission` skip it; with none left the body is not read.
pub async fn check(
    session: &mut Session,
    snapshot: &Snapshot,
    admission: &Admission,
) -> Result<Option<Refusal>> {
    let route = &admission.route;
    let Some(caller) = admission.caller.as_deref() else {
        // A body binding is only compiled on a jwt route.
        return Ok(Some(Refusal {
            reason: Reason::ScopeDenied,
            rule: rule(route),
            detail: "no verified caller for the body's scope".into(),
            unread: true,
        }));
    };
    let roles = snapshot.policy.roles();
    let applying = body_scope::applying(&route.body_scope, |p: &Permission| {
        roles.holds(&caller.identity.roles, p)
    });
    let Some(first) = applying.first() else {
        return Ok(None);
    };
    let content_type = session
        .req_header()
        .headers
        .get(http::header::CONTENT_TYPE)
        .map(|v| v.as_bytes());
    let several_types = session
        .req_header()
        .headers
        .get_all(http::header::CONTENT_TYPE)
        .iter()
        .nth(1)
        .is_some();
    let head = if several_types {
        Err(BodyRefusal::Unreadable(
            "the request has more than one Content-Type".into(),
        ))
    } else {
        body_scope::check_head(&applying, content_type, admission.query.as_deref())
    };
    if let Err(why) = head {
        return Ok(Some(refusal(route, why, true)));
    }
    let max = usize::try_from(route.max_body)
        .unwrap_or(usize::MAX)
        .min(MAX_SCOPED_BODY);
    let read = body::read_whole(session, &snapshot.connections.body_pace, max).await?;
    let bytes = match read {
        Ok(bytes) => bytes,
        Err(reason) => {
            let (rule, detail) = match reason {
                Reason::BodyTooLarge if max == MAX_SCOPED_BODY => (
                    rule(route),
                    format!(
                        "a body checked for `{}` is read whole, so it can be at most {MAX_SCOPED_BODY} bytes",
                        first.member
                    ),
                ),
                _ => (body::rule_for(reason, route), reason.to_string()),
            };
            return Ok(Some(Refusal {
                reason,
                rule,
                detail,
                unread: true,
            }));
        }
    };
    match body_scope::check_body(&applying, &caller.identity, &bytes) {
        Ok(()) => Ok(None),
        Err(why) => Ok(Some(refusal(route, why, false))),
    }
}

fn refusal(route: &Route, why: BodyRefusal, unread: bool) -> Refusal {
    let reason = match why {
        BodyRefusal::Unreadable(_) => Reason::BadRequest,
        BodyRefusal::Denied(_) => Reason::ScopeDenied,
    };
    Refusal {
        reason,
        rule: rule(route),
        detail: why.to_string(),
        unread,
    }
}

/// `<route>.scope.body`: the route's body bindings (the log's detail
/// names the member).
fn rule(route: &Route) -> String {
    format!("{}.scope.body", route.name.0)
}
