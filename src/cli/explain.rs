//! `chatwarden explain`: the decision the proxy would make for one
//! request, with every rule consulted (see [`crate::explain`]).

use std::path::Path;
use std::process::ExitCode;

use crate::config::{load_file, ProcessEnv, Snapshot};
pub use crate::explain::Question;
use crate::explain::{answer, response_for};
use crate::revocation::RuntimeRevocations;

/// `response`: a file holding an upstream answer to show as the caller
/// would get it (`-`: stdin).
pub fn run(config: &Path, q: &Question, response: Option<&Path>) -> ExitCode {
    // Read first: a missing file is the question's fault, not the config's.
    let body = match response.map(read_response).transpose() {
        Ok(b) => b,
        Err(msg) => {
            eprintln!("chatwarden explain: {msg}");
            return ExitCode::from(2);
        }
    };
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
    let revocations = RuntimeRevocations::default();
    let report = answer(&snapshot, q, &revocations).and_then(|report| match &body {
        Some(body) => response_for(&snapshot, q, &revocations, body)
            .map(|response| format!("{report}\n{response}")),
        None => Ok(report),
    });
    match report {
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

fn read_response(path: &Path) -> Result<Vec<u8>, String> {
    let read = if path == Path::new("-") {
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut body).map(|_| body)
    } else {
        std::fs::read(path)
    };
    read.map_err(|e| format!("cannot read the response {}: {e}", path.display()))
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
