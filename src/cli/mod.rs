//! The command line: `run`, `check`, `demo`, `explain`, `test`, `token`,
//! `audit`, `cable`. Each subcommand is a small
//! function over the library; `main.rs` only calls `cli::main`.

mod audit;
mod cable;
mod check;
mod explain;
mod policy_test;
mod token;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{load_file, ProcessEnv};
use crate::server::{self, RunOptions};

#[derive(Debug, Parser)]
#[command(
    name = "chatwarden",
    version,
    about = "Policy-enforcing gateway for CRM and WhatsApp Cloud API traffic"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve traffic with the given config.
    Run {
        #[arg(short, long, default_value = "config/chatwarden.yaml")]
        config: PathBuf,
        /// Run in the background.
        #[arg(short, long)]
        daemon: bool,
        /// Take over the sockets of a running instance (graceful upgrade).
        #[arg(short, long)]
        upgrade: bool,
        /// Proxy worker threads (default: one per core).
        #[arg(long)]
        threads: Option<usize>,
        /// Reload when the config file or a file it names (certificates,
        /// keys, CA bundles, revocation lists) changes, checked this often
        /// (`--watch` alone: every 2s). For Kubernetes ConfigMap and Secret
        /// volumes.
        #[arg(long, value_name = "INTERVAL", num_args = 0..=1, default_missing_value = "2s", value_parser = watch_interval)]
        watch: Option<std::time::Duration>,
    },
    /// Validate a config file; prints `file:line:col: message` per problem.
    Check {
        #[arg(short, long, default_value = "config/chatwarden.yaml")]
        config: PathBuf,
    },
    /// Start the gateway on the embedded demo config with built-in demo CRM
    /// and WhatsApp upstreams, and print what to try.
    Demo {
        /// Address of the demo gateway.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// Address of the demo admin listener.
        #[arg(long, default_value = "127.0.0.1:9180")]
        admin: String,
    },
    /// The decision the proxy would make for one request, and why.
    Explain {
        #[arg(short, long, default_value = "config/chatwarden.yaml")]
        config: PathBuf,
        #[arg(long, default_value = "GET")]
        method: String,
        #[arg(long)]
        path: String,
        /// A real token (verified as the proxy would, keys fetched).
        #[arg(long, conflicts_with = "claims")]
        token: Option<String>,
        /// Claims as JSON, unsigned: ask about a person, not a token.
        #[arg(long)]
        claims: Option<String>,
        /// Client address (after trusted proxies).
        #[arg(long, default_value = "127.0.0.1")]
        ip: String,
        /// When (default now): 2026-11-24T10:00:00Z or 2026-11-24T10:00:00[Europe/London].
        #[arg(long)]
        at: Option<String>,
        /// A 2xx JSON answer of the upstream (a file, `-` for stdin): print it
        /// as this caller would get it, row filter and redaction applied.
        #[arg(long, value_name = "FILE")]
        response: Option<PathBuf>,
    },
    /// Run policy test cases; exit 1 on any mismatch.
    Test {
        #[arg(short, long, default_value = "config/chatwarden.yaml")]
        config: PathBuf,
        cases: PathBuf,
    },
    /// Mint a signed token with a development key (or print its JWKS).
    Token {
        /// PKCS#8 PEM private key (Ed25519, P-256 or P-384), e.g. from
        /// `openssl genpkey -algorithm ed25519 -out dev-key.pem`.
        #[arg(long)]
        key: PathBuf,
        #[arg(long, default_value = "dev")]
        kid: String,
        /// Print the key's public JWKS instead of a token.
        #[arg(long)]
        jwks: bool,
        #[arg(long, default_value = "https://idp.chatwarden.invalid/")]
        iss: String,
        #[arg(long, default_value = "chatwarden")]
        aud: String,
        #[arg(long)]
        sub: Option<String>,
        #[arg(long = "role")]
        roles: Vec<String>,
        /// Extra claim, name=value (value parsed as JSON when it can be).
        #[arg(long = "claim")]
        claims: Vec<String>,
        /// amr values (e.g. pwd, otp).
        #[arg(long)]
        amr: Vec<String>,
        /// How long ago the user authenticated (auth_time), e.g. 2h.
        #[arg(long)]
        auth_age: Option<String>,
        #[arg(long, default_value = "1h")]
        ttl: String,
    },
    /// Watch Chatwoot's live updates (its WebSocket) through the gateway as
    /// a token sees them: one line per event, ActionCable's pings left out.
    Cable {
        /// The gateway's cable, e.g. ws://127.0.0.1:8080/cable or
        /// wss://gateway.example/cable.
        url: String,
        /// The staff token (sent as `Authorization: Bearer`).
        #[arg(long)]
        token: String,
        /// wss://: trust only the CA certificates in this PEM file (default:
        /// the system's).
        #[arg(long, value_name = "PEM")]
        ca_file: Option<PathBuf>,
        /// Stop after this many events.
        #[arg(long, default_value_t = 5)]
        count: usize,
        /// Stop after this many seconds.
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        /// Print each message as the gateway sent it (JSON).
        #[arg(long)]
        raw: bool,
    },
    /// Work with audit files.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check the hash chain of an audit file; exit 1 at the first broken line.
    /// Several files (oldest first: rotated files, then the current one)
    /// must also continue one another: a file missing between two shows.
    Verify {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The public key (PEM) of `audit.signing_key`: every checkpoint's
        /// signature is checked too, and a file without one fails. Repeat it
        /// for files that span a key rotation (each checkpoint names its key).
        #[arg(long = "key", value_name = "PUBLIC_PEM")]
        keys: Vec<PathBuf>,
    },
    /// Print the records that match every given filter.
    Query {
        file: PathBuf,
        #[arg(long)]
        sub: Option<String>,
        /// allow, deny or error
        #[arg(long)]
        decision: Option<String>,
        /// A reason code such as outside_hours
        #[arg(long)]
        reason: Option<String>,
        #[arg(long)]
        route: Option<String>,
        #[arg(long)]
        request_id: Option<String>,
        #[arg(long)]
        client_ip: Option<String>,
        /// RFC 3339 UTC timestamp, inclusive (e.g. 2026-11-23T00:00:00.000Z)
        #[arg(long)]
        since: Option<String>,
        /// RFC 3339 UTC timestamp, exclusive
        #[arg(long)]
        until: Option<String>,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    match cli.command {
        Command::Run {
            config,
            daemon,
            upgrade,
            threads,
            watch,
        } => run(&config, daemon, upgrade, threads, watch),
        Command::Check { config } => check::run(&config),
        Command::Demo { listen, admin } => crate::demo::run(&listen, &admin),
        Command::Explain {
            config,
            method,
            path,
            token,
            claims,
            ip,
            at,
            response,
        } => explain::run(
            &config,
            &explain::Question {
                method,
                path,
                token,
                claims,
                ip,
                at,
            },
            response.as_deref(),
        ),
        Command::Test { config, cases } => policy_test::run(&config, &cases),
        Command::Token {
            key,
            kid,
            jwks,
            iss,
            aud,
            sub,
            roles,
            claims,
            amr,
            auth_age,
            ttl,
        } => token::run(&token::TokenArgs {
            key: &key,
            kid: &kid,
            print_jwks: jwks,
            issuer: &iss,
            audience: &aud,
            subject: sub.as_deref(),
            roles: &roles,
            claims: &claims,
            amr: &amr,
            auth_age: auth_age.as_deref(),
            ttl: &ttl,
        }),
        Command::Cable {
            url,
            token,
            ca_file,
            count,
            seconds,
            raw,
        } => cable::run(&cable::Watch {
            url,
            token,
            ca_file,
            count,
            seconds,
            raw,
        }),
        Command::Audit {
            command: AuditCommand::Verify { files, keys },
        } => audit::verify(&files, &keys),
        Command::Audit {
            command:
                AuditCommand::Query {
                    file,
                    sub,
                    decision,
                    reason,
                    route,
                    request_id,
                    client_ip,
                    since,
                    until,
                },
        } => audit::query(
            &file,
            &crate::audit::query::Filter {
                sub,
                decision,
                reason,
                route,
                request_id,
                client_ip,
                since,
                until,
            },
        ),
    }
}

/// `--watch`: from 100ms to 10m.
fn watch_interval(text: &str) -> Result<std::time::Duration, String> {
    let every = crate::config::duration::parse_duration(text)?;
    if every < std::time::Duration::from_millis(100) || every > std::time::Duration::from_secs(600)
    {
        return Err(format!("`{text}` is outside 100ms..10m"));
    }
    Ok(every)
}

fn run(
    config: &std::path::Path,
    daemon: bool,
    upgrade: bool,
    threads: Option<usize>,
    watch: Option<std::time::Duration>,
) -> ExitCode {
    let snapshot = match load_file(config, &ProcessEnv) {
        Ok(s) => s,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(1);
        }
    };
    let mut opts = RunOptions {
        daemon,
        upgrade,
        reload: Some(crate::reload::ReloadSource {
            path: config.to_path_buf(),
            overrides: Default::default(),
        }),
        reload_on_sighup: true,
        watch,
        ..RunOptions::default()
    };
    if let Some(t) = threads {
        opts.threads = t;
    }
    match server::build(snapshot, &opts) {
        Ok((server, handles)) => server::serve(server, &handles),
        Err(e) => {
            eprintln!("chatwarden: {e}");
            ExitCode::from(1)
        }
    }
}

fn init_tracing() {
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("CHATWARDEN_LOG").unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new("info,pingora_core=warn,pingora_proxy=warn")
        });
    // Logs go to stderr: stdout may carry the audit stream (`audit.path: -`).
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
