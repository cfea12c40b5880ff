//! `chatwarden check`: validate a config file without serving it.

use std::path::Path;
use std::process::ExitCode;

use crate::config::{load_file, ProcessEnv};

pub fn run(config: &Path) -> ExitCode {
    match load_file(config, &ProcessEnv) {
        Ok(snapshot) => {
            println!(
                "{}: ok (version {}, {} listener(s), {} upstream(s), {} route(s))",
                config.display(),
                snapshot.version,
                snapshot.listeners.len(),
                snapshot.upstreams.len(),
                snapshot.routes.len()
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            println!("{errors}");
            ExitCode::from(1)
        }
    }
}
