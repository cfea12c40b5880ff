//! The configuration file exactly as written: serde structs with
//! `deny_unknown_fields`, every scalar wrapped in `Spanned` so that the
//! compiler can point at `file:line:col` for problems serde cannot see
//! (a bad CIDR, a route naming an unknown upstream).
//!
//! Nothing here is used on the request path; `compile` turns it into a
//! `Snapshot`.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_saphyr::{Location, Spanned};

pub type Str = Spanned<String>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub listeners: Vec<RawListener>,
    pub admin: Option<RawAdmin>,
    #[serde(default)]
    pub network: RawNetwork,
    #[serde(default)]
    pub upstreams: BTreeMap<String, RawUpstream>,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    #[serde(default)]
    pub audit: RawAudit,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    pub name: Str,
    pub addr: Str,
    pub tls: Option<RawTls>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub cert: Str,
    pub key: Str,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub addr: Str,
    /// Name of the environment variable holding the bearer token that
    /// protects the admin endpoints (all but `/healthz` and `/readyz`).
    pub token_env: Option<Str>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNetwork {
    #[serde(default)]
    pub trusted_proxies: Vec<Str>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub url: Str,
    /// Headers injected on every forwarded request (the credentials staff
    /// never see). Client copies of these names are dropped.
    #[serde(default)]
    pub headers: BTreeMap<String, Str>,
    #[serde(default)]
    pub timeouts: RawTimeouts,
    /// Extra PEM CA bundle for a private CRM's certificate.
    pub ca_file: Option<Str>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTimeouts {
    pub connect: Option<Str>,
    pub read: Option<Str>,
    pub write: Option<Str>,
    pub idle: Option<Str>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub name: Str,
    pub upstream: Str,
    #[serde(default)]
    pub methods: Vec<Str>,
    pub path: Str,
    /// `none` until authentication lands; anything else is refused at load
    /// time rather than silently ignored.
    pub auth: Option<Str>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    /// A file path, or `-` for stdout.
    #[serde(default = "default_audit_path")]
    pub path: Str,
    #[serde(default)]
    pub hash_chain: bool,
    /// `backpressure` (default) or `fail_closed`.
    pub on_overflow: Option<Str>,
    /// Records that may wait for the writer before the overflow policy applies.
    pub queue: Option<Spanned<u32>>,
    pub rotate: Option<RawRotate>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRotate {
    /// Size such as `100MB`.
    pub max_size: Str,
    /// Rotated files to keep.
    pub keep: Option<Spanned<u32>>,
}

impl Default for RawAudit {
    fn default() -> Self {
        RawAudit {
            path: default_audit_path(),
            hash_chain: false,
            on_overflow: None,
            queue: None,
            rotate: None,
        }
    }
}

fn default_audit_path() -> Str {
    Spanned::new("-".to_string(), Location::UNKNOWN, Location::UNKNOWN)
}
