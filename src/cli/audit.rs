//! `chatwarden audit verify FILE` and `chatwarden audit query FILE …`.

use std::fs::File;
use std::io::{self, BufReader};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::audit::query::{self, Filter};
use crate::audit::signing::Keyring;
use crate::audit::verify::UNVOUCHED;
use crate::audit::{verify_file_with, VerifyError, VerifySummary};

/// `audit verify FILE… [--key PUBLIC.pem]`: each file's chain (and
/// checkpoints), and that each file continues the one before it.
pub fn verify(paths: &[PathBuf], keys: &[PathBuf]) -> ExitCode {
    let checker = match (!keys.is_empty())
        .then(|| Keyring::from_paths(keys))
        .transpose()
    {
        Ok(c) => c,
        Err(msg) => {
            eprintln!("chatwarden: {msg}");
            return ExitCode::from(2);
        }
    };
    let mut previous: Option<(&Path, VerifySummary)> = None;
    let mut signed_somewhere = false;
    for (i, path) in paths.iter().enumerate() {
        let last = i + 1 == paths.len();
        let summary = match verify_file_with(path, checker.as_ref()) {
            Ok(s) => s,
            Err(e) => {
                println!("{}: BROKEN at {e}", path.display());
                return ExitCode::from(1);
            }
        };
        if let Some((before, prior)) = &previous {
            if summary.records > 0 && summary.first_prev_hash != prior.last_hash {
                println!(
                    "{}: BROKEN: does not continue {} (a file between them is missing, or they are out of order)",
                    path.display(),
                    before.display()
                );
                return ExitCode::from(1);
            }
        }
        signed_somewhere |= summary.checkpoints > 0;
        // Every file but the newest was closed with a checkpoint.
        if checker.is_some() && summary.checkpoints == 0 && (!last || !signed_somewhere) {
            println!(
                "{}: UNSIGNED: {}",
                path.display(),
                VerifyError::Unsigned {
                    records: summary.records
                }
            );
            return ExitCode::from(1);
        }
        // "key 3f2a9c1b", or "keys 3f2a9c1b then 77e0d4a5" across a rotation.
        let signers = match summary.signed_by.len() {
            0 | 1 => format!("key {}", summary.signed_by.join("")),
            _ => format!("keys {}", summary.signed_by.join(" then ")),
        };
        if checker.is_some() && !summary.unvouched.is_empty() {
            let stretches: Vec<String> = summary
                .unvouched
                .iter()
                .map(|(first, last)| format!("{first}-{last}"))
                .collect();
            let count: u64 = summary.unvouched.iter().map(|(f, l)| l - f + 1).sum();
            println!(
                "{}: UNVOUCHED: {count} record(s), lines {}: {UNVOUCHED}; the chain holds, \
                 and {} checkpoint(s) signed by {signers} vouch for the rest",
                path.display(),
                stretches.join(", "),
                summary.checkpoints,
            );
            return ExitCode::from(1);
        }
        // Every file but the newest ends with a checkpoint: records after
        // it were added by someone else, or a crash cut the file short
        // before it was (wrongly) rotated away from.
        if checker.is_some() && !last && summary.unsigned_tail > 0 {
            println!(
                "{}: UNVOUCHED: the last {} record(s) are vouched for by no signed checkpoint, \
                 and later files follow",
                path.display(),
                summary.unsigned_tail
            );
            return ExitCode::from(1);
        }
        let signed = match (&checker, summary.checkpoints) {
            (Some(_), n) => format!(
                "; {n} checkpoint(s) signed by {signers}, {} record(s) after the last",
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
        if summary.records > 0 {
            previous = Some((path, summary));
        }
    }
    ExitCode::SUCCESS
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
