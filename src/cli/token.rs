//! `chatwarden token`: mint a signed token with a development key, or
//! print that key's public JWKS (for an IdP stand-in or `auth.keys`).

use std::path::Path;
use std::process::ExitCode;

use serde_json::{json, Map, Value};

use crate::auth::{mint, MintKey};
use crate::config::duration::parse_duration;

pub struct TokenArgs<'a> {
    pub key: &'a Path,
    pub kid: &'a str,
    pub print_jwks: bool,
    pub issuer: &'a str,
    pub audience: &'a str,
    pub subject: Option<&'a str>,
    pub roles: &'a [String],
    pub claims: &'a [String],
    pub amr: &'a [String],
    pub auth_age: Option<&'a str>,
    pub ttl: &'a str,
}

pub fn run(args: &TokenArgs<'_>) -> ExitCode {
    match build(args) {
        Ok(out) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(msg) => {
            eprintln!("chatwarden token: {msg}");
            ExitCode::from(1)
        }
    }
}

fn build(args: &TokenArgs<'_>) -> Result<String, String> {
    let pem =
        std::fs::read(args.key).map_err(|e| format!("cannot read {}: {e}", args.key.display()))?;
    let key = MintKey::from_pem(&pem, args.kid).map_err(|e| e.to_string())?;
    if args.print_jwks {
        return Ok(key.jwks_json());
    }
    let sub = args.subject.ok_or("--sub is required to mint a token")?;
    let now = jiff::Timestamp::now().as_second();
    let ttl = parse_duration(args.ttl)?.as_secs() as i64;
    let mut claims = Map::new();
    claims.insert("iss".into(), json!(args.issuer));
    claims.insert("aud".into(), json!(args.audience));
    claims.insert("sub".into(), json!(sub));
    claims.insert("roles".into(), json!(args.roles));
    claims.insert("iat".into(), json!(now));
    claims.insert("exp".into(), json!(now + ttl));
    claims.insert("jti".into(), json!(crate::request::request_id::generate()));
    if !args.amr.is_empty() {
        claims.insert("amr".into(), json!(args.amr));
    }
    let age = match args.auth_age {
        Some(a) => parse_duration(a)?.as_secs() as i64,
        None => 0,
    };
    claims.insert("auth_time".into(), json!(now - age));
    for c in args.claims {
        let (k, v) = c
            .split_once('=')
            .ok_or_else(|| format!("--claim `{c}` must be name=value"))?;
        // JSON when it parses (numbers, lists), a string otherwise.
        let value = serde_json::from_str::<Value>(v).unwrap_or_else(|_| json!(v));
        claims.insert(k.to_string(), value);
    }
    mint(&Value::Object(claims), &key).map_err(|e| e.to_string())
}
