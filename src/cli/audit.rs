//! `chatwarden audit verify FILE` and `chatwarden audit query FILE …`.

use std::fs::File;
use std::io::{self, BufReader};
use std::path::Path;
use std::process::ExitCode;

use crate::audit::query::{self, Filter};
use crate::audit::verify_file;

pub fn verify(path: &Path) -> ExitCode {
    match verify_file(path) {
        Ok(summary) => {
            println!(
                "{}: ok, {} record(s) chained; last hash {}",
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
