//! `chatwarden test CASES`: policy test cases (who, what, when, where →
//! expected decision, and for a given upstream answer the answer the
//! caller gets), run through the proxy's own decision function and
//! rewriter.
//! Prints a table; exits 1 on any mismatch, so CI can hold a policy to
//! its intent.

use std::path::Path;
use std::process::ExitCode;

use serde::Deserialize;
use serde_json::Value;

use crate::config::duration::parse_duration;
use crate::config::{load_file, ProcessEnv, Snapshot};
use crate::decision::Reason;
use crate::explain::{caller_gets, decide, parse_instant, CallerGets, Question};
use crate::policy::body_scope::{self, BodyRefusal};
use crate::revocation::RuntimeRevocations;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    /// Token claims (unsigned: the case is about people, not tokens);
    /// omit for an anonymous request.
    who: Option<Value>,
    /// How long ago the caller last authenticated (sets `auth_time`).
    auth_age: Option<String>,
    method: String,
    path: String,
    #[serde(default = "default_ip")]
    ip: String,
    /// When: `2026-11-24T10:00:00[Europe/London]` or RFC 3339.
    at: String,
    /// The JSON request body, for routes whose scope binds a body member
    /// (`{inbox_id: 2}`).
    body: Option<Value>,
    /// The upstream's 2xx JSON answer, to run through the route's row
    /// filter and redaction for this caller. An object the row filter
    /// refuses makes the decision `not_found`; a body that cannot be
    /// masked, `redaction_failed`.
    response: Option<Value>,
    /// `allow` or a reason code (`outside_hours`, `scope_denied`, …).
    expect: String,
    /// The answer the caller must get (compared as JSON), given `response`.
    expect_response: Option<Value>,
}

/// What a case got: the decision, and the answer the caller would get
/// when the case gave one.
#[derive(Debug, PartialEq)]
struct Got {
    decision: String,
    response: Option<Value>,
}

impl Got {
    fn decision(decision: &str) -> Got {
        Got {
            decision: decision.to_string(),
            response: None,
        }
    }
}

fn default_ip() -> String {
    "10.20.1.10".to_string()
}

pub fn run(config: &Path, cases: &Path) -> ExitCode {
    let snapshot = match load_file(config, &ProcessEnv) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    let text = match std::fs::read_to_string(cases) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("chatwarden test: cannot read {}: {e}", cases.display());
            return ExitCode::from(1);
        }
    };
    let file: CaseFile = match serde_saphyr::from_str(&text) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{}: {}", cases.display(), e.without_snippet());
            return ExitCode::from(1);
        }
    };
    let results = run_cases(&snapshot, &file.cases);
    let width = file
        .cases
        .iter()
        .map(|c| c.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    println!(
        "{:<width$}  {:<18}  {:<18}  result",
        "case", "expected", "got"
    );
    let mut failed = 0;
    for (case, got) in file.cases.iter().zip(&results) {
        let decided = got.as_ref().is_ok_and(|g| g.decision == case.expect);
        let answered = match (&case.expect_response, got) {
            (Some(want), Ok(g)) => g.response.as_ref() == Some(want),
            _ => true,
        };
        let ok = decided && answered;
        if !ok {
            failed += 1;
        }
        let shown = match got {
            Ok(g) if decided && !answered => format!("{} (answer differs)", g.decision),
            Ok(g) => g.decision.clone(),
            Err(e) => format!("error: {e}"),
        };
        println!(
            "{:<width$}  {:<18}  {:<18}  {}",
            case.name,
            case.expect,
            shown,
            if ok { "ok" } else { "FAIL" }
        );
        if let (
            false,
            Ok(Got {
                response: Some(r), ..
            }),
        ) = (answered, got)
        {
            println!("    the caller gets: {r}");
        }
    }
    println!("\n{} passed, {} failed", results.len() - failed, failed);
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn run_cases(snapshot: &Snapshot, cases: &[Case]) -> Vec<Result<Got, String>> {
    cases.iter().map(|c| run_case(snapshot, c)).collect()
}

fn run_case(snapshot: &Snapshot, case: &Case) -> Result<Got, String> {
    if case.expect_response.is_some() && case.response.is_none() {
        return Err("`expect_response` needs the upstream's `response` to rewrite".into());
    }
    let at = parse_instant(&case.at)?;
    let claims = match &case.who {
        Some(who) => {
            let mut claims = who.clone();
            let obj = claims
                .as_object_mut()
                .ok_or("`who` must be a mapping of claims")?;
            if let Some(age) = &case.auth_age {
                let secs = parse_duration(age)?.as_secs() as i64;
                obj.insert("auth_time".into(), Value::from(at.as_second() - secs));
            }
            obj.entry("exp")
                .or_insert(Value::from(at.as_second() + 3600));
            Some(claims.to_string())
        }
        None => None,
    };
    let q = Question {
        method: case.method.clone(),
        path: case.path.clone(),
        token: None,
        claims,
        ip: case.ip.clone(),
        at: Some(case.at.clone()),
    };
    let (outcome, _) = decide(snapshot, &q, &RuntimeRevocations::default())?;
    let admission = match outcome {
        Ok(admission) => admission,
        Err(r) => return Ok(Got::decision(r.reason.code())),
    };
    let decided = body_outcome(snapshot, &admission, case.body.as_ref())?;
    match &case.response {
        Some(response) if decided == "allow" => answer_outcome(snapshot, &admission, response),
        _ => Ok(Got::decision(&decided)),
    }
}

/// The case's upstream answer as the caller gets it (see `explain`'s
/// [`caller_gets`], the proxy's own rewriter).
fn answer_outcome(
    snapshot: &Snapshot,
    admission: &crate::gate::Admission,
    response: &Value,
) -> Result<Got, String> {
    let sent = match caller_gets(snapshot, admission, response)? {
        CallerGets::AsWritten => response.clone(),
        CallerGets::Rewritten { body, .. } => body,
        CallerGets::NotFound => return Ok(Got::decision(Reason::NotFound.code())),
        // Not a refusal: the stream stays open, this message is not sent.
        CallerGets::Dropped => return Ok(Got::decision("dropped")),
        CallerGets::Failed(_) => return Ok(Got::decision(Reason::RedactionFailed.code())),
    };
    Ok(Got {
        decision: "allow".to_string(),
        response: Some(sent),
    })
}

/// What the route's body scope bindings make of the case's body, as the
/// proxy checks it (sent as `application/json`). A case on a route that
/// reads the body must give one: without it the answer would be a guess.
fn body_outcome(
    snapshot: &Snapshot,
    admission: &crate::gate::Admission,
    body: Option<&Value>,
) -> Result<String, String> {
    let Some(caller) = admission.caller.as_deref() else {
        return Ok("allow".to_string());
    };
    let roles = snapshot.policy.roles();
    let applying = body_scope::applying(&admission.route.body_scope, |p| {
        roles.holds(&caller.identity.roles, p)
    });
    let Some(first) = applying.first() else {
        return Ok("allow".to_string());
    };
    let Some(body) = body else {
        return Err(format!(
            "route `{}` checks the JSON body's `{}`: give the case a `body`",
            admission.route.name.0, first.member
        ));
    };
    let bytes = serde_json::to_vec(body).map_err(|e| e.to_string())?;
    let checked = body_scope::check_head(
        &applying,
        Some(b"application/json"),
        admission.query.as_deref(),
    )
    .and_then(|()| body_scope::check_body(&applying, &caller.identity, &bytes));
    Ok(match checked {
        Ok(()) => "allow",
        Err(BodyRefusal::Unreadable(_)) => Reason::BadRequest.code(),
        Err(BodyRefusal::Denied(_)) => Reason::ScopeDenied.code(),
    }
    .to_string())
}
