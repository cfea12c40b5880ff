//! `chatwarden explain`: the decision the proxy would make for one
//! request, with every rule consulted (see [`crate::explain`]).

use std::path::Path;
use std::process::ExitCode;

use crate::config::{load_file, ProcessEnv, Snapshot};
use crate::explain::answer;
pub use crate::explain::Question;
use crate::revocation::RuntimeRevocations;

pub fn run(config: &Path, q: &Question) -> ExitCode {
    let snapshot = match load_file(config, &ProcessEnv) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    if q.token.is_some() {
        if let Err(msg) = fetch_jwks(&snapshot) {
            eprintln!("chatwarden explain: {msg}");
            return ExitCode::from(2);
        }
    }
    match answer(&snapshot, q, &RuntimeRevocations::default()) {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(msg) => {
            eprintln!("chatwarden explain: {msg}");
            ExitCode::from(2)
        }
    }
}

/// One decision, rendered for people. Shared with `chatwarden test`.
/// Verifying a real token needs the IdP's keys: fetch them once.
fn fetch_jwks(snapshot: &Snapshot) -> Result<(), String> {
    let Some((auth, jwks)) = snapshot
        .auth
        .as_ref()
        .and_then(|a| a.jwks.as_ref().map(|j| (a, j)))
    else {
        return Ok(());
    };
    let source = crate::auth::JwksSource::new(&jwks.url, auth.keys.clone(), jwks.options.clone())
        .map_err(|e| e.to_string())?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(source.fetch_initial())
        .map_err(|e| format!("fetching {}: {e}", jwks.url))
}
