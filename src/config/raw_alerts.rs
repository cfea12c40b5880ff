//! The `alerts:` section exactly as written (see `raw` for the
//! conventions): sinks that receive fired alerts, and rules that count
//! requests per key within a window.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::raw::Str;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlerts {
    #[serde(default)]
    pub sinks: Vec<RawSink>,
    #[serde(default)]
    pub rules: Vec<RawAlertRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSink {
    pub name: Str,
    /// `log` or `webhook`.
    #[serde(rename = "type")]
    pub kind: Str,
    /// Webhooks: where alerts are POSTed (`http://` or `https://`).
    pub url: Option<Str>,
    /// Webhooks: headers sent with each POST (`Authorization: "Bearer ${SOC_TOKEN}"`).
    #[serde(default)]
    pub headers: BTreeMap<String, Str>,
    /// Webhooks: time allowed per attempt (default 5s).
    pub timeout: Option<Str>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlertRule {
    pub name: Str,
    /// Which requests count; every condition given must hold.
    #[serde(default)]
    pub when: RawWhen,
    /// `sub` (default), `ip` or `route`: what is counted per.
    pub key: Option<Str>,
    pub threshold: Spanned<u32>,
    pub window: Str,
    /// Names of `alerts.sinks`.
    pub sinks: Vec<Str>,
    /// Keys tracked at once (default 10000); the oldest are forgotten
    /// beyond this.
    pub max_keys: Option<Spanned<u32>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWhen {
    /// `allow`, `deny` or `error`.
    pub decision: Option<Str>,
    /// Reason codes, any of (`token_invalid`, `ip_denied`).
    #[serde(default)]
    pub reasons: Vec<Str>,
    /// Route names, any of.
    #[serde(default)]
    pub routes: Vec<Str>,
    /// Role names, any of (the caller holds one).
    #[serde(default)]
    pub roles: Vec<Str>,
}
