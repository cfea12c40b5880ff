//! `chatwarden audit verify FILE` and `chatwarden audit query FILE …`.

use std::fs::File;
use std::io::{self, BufReader};
use std::path::Path;
use std::process::ExitCode;

use crate::audit::query::{self, Filter};
use crate::audit::signing::Checker;
use crate::audit::{verify_file, verify_file_signed};

pub fn verify(path: &Path, key: Option<&Path>) -> ExitCode {
    let checker = match key.map(Checker::from_path).transpose() {
        Ok(c) => c,
        Err(msg) => {
            eprintln!("chatwarden: {msg}");
            return ExitCode::from(2);
        }
    };
    let result = match &checker {
        Some(c) => verify_file_signed(path, c),
        None => verify_file(path),
    };
    match result {
        Ok(summary) => {
            let signed = match (&checker, summary.checkpoints) {
                (Some(c), n) => format!(
                    "; {n} checkpoint(s) signed by key {}, {} record(s) after the last",
                    c.key_id(),
                    summary.unsigned_tail
                ),
                (None, 0) => String::new(),
                (None, n) => format!("; {n} checkpoint(s), not checked (pass --key)"),
            };
            println!(
                "{}: ok, {} record(s) chained{signed}; last hash {}",
                path.display(),
                summary.records,
                summary.last_hash.as_deref().unwrap_or("-")
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("{}: BROKEN at {e}", path.display());
            ExitCode::from(1)
        }
    }
}

pub fn query(path: &Path, filter: &Filter) -> ExitCode {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("chatwarden: cannot open {}: {e}", path.display());
            return ExitCode::from(1);
        }
    };
    let stdout = io::stdout();
    match query::run(filter, BufReader::new(file), stdout.lock()) {
        Ok(stats) => {
            eprintln!(
                "{} of {} record(s) matched{}",
                stats.matched,
                stats.scanned,
                if stats.unreadable > 0 {
                    format!("; {} line(s) were not JSON records", stats.unreadable)
                } else {
                    String::new()
                }
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("chatwarden: reading {}: {e}", path.display());
            ExitCode::from(1)
        }
    }
}
