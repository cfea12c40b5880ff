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
    /// Head deadline and connection caps.
    #[serde(default)]
    pub connections: RawConnections,
    #[serde(default)]
    pub upstreams: BTreeMap<String, RawUpstream>,
    pub auth: Option<RawAuth>,
    #[serde(default)]
    pub roles: BTreeMap<String, RawRole>,
    #[serde(default)]
    pub access: Vec<RawAccessRule>,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    /// Masking rules routes name in their `redaction` list.
    #[serde(default)]
    pub redaction: Vec<RawRedaction>,
    /// Alert sinks and rules (`raw_alerts`).
    #[serde(default)]
    pub alerts: super::raw_alerts::RawAlerts,
    #[serde(default)]
    pub audit: RawAudit,
    /// Where rate-limit counters live.
    pub rate_limits: Option<RawRateLimits>,
    /// Which other sites' pages may call the gateway from a browser.
    pub cors: Option<RawCors>,
    /// Compressing admitted responses for clients that accept it.
    pub compression: Option<RawCompression>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCompression {
    /// 1 (fastest) to 9 (smallest), for gzip, brotli and zstd alike.
    pub level: Spanned<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCors {
    /// Bare origins (`https://crm.example`) whose pages may read responses.
    pub origins: Spanned<Vec<Str>>,
    /// Their pages may send the token cookie (needs `auth.cookie`).
    pub credentials: Option<Spanned<bool>>,
    /// Request headers a page may send, besides the ones always allowed.
    #[serde(default)]
    pub allow_headers: Vec<Str>,
    /// Response headers a page may read, besides the ones always exposed.
    #[serde(default)]
    pub expose_headers: Vec<Str>,
    /// How long a browser may reuse a preflight's answer.
    pub max_age: Option<Str>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimits {
    /// `memory` (default) or `redis`.
    pub store: Option<Str>,
    pub redis: Option<RawRedis>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedis {
    /// `redis://[[user]:password@]host[:port][/db]`, `rediss://…` (TLS)
    /// or `unix:///path`; a password only through `${ENV}`.
    pub url: Str,
    /// Prepended to every key (default `chatwarden:rl:`).
    pub key_prefix: Option<Str>,
    /// Longest a check may wait for Redis (default 50ms, at most 1s).
    pub timeout: Option<Str>,
    /// `rediss://` only: PEM bundle of the CAs trusted for Redis's
    /// certificate, instead of the system's.
    pub ca_file: Option<Str>,
    /// `rediss://` only: PEM client certificate chain, with `key_file`,
    /// for Redis with `tls-auth-clients yes`.
    pub cert_file: Option<Str>,
    pub key_file: Option<Str>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedaction {
    pub name: Str,
    /// Callers holding this see the values unmasked.
    pub unless_permission: Option<Str>,
    /// Values masked whole: `$.payload[*].email`, `$.payload[*].meta.sender`.
    #[serde(default)]
    pub fields: Vec<Str>,
    /// Found and masked in every string of the body: `phone`, `email`,
    /// `wamid`, `card`, `iban`, `national_id`.
    #[serde(default)]
    pub detect: Vec<Str>,
    /// Countries (`ES`, `IN`, …) whose national phone numbers, written
    /// without `+` or trunk `0`, `detect: [phone]` finds too, and whose
    /// identity numbers `detect: [national_id]` finds.
    #[serde(default)]
    pub countries: Vec<Str>,
    /// `partial` (default), `full` or `hash`.
    pub style: Option<Str>,
    /// Key of the `hash` style (at least 16 bytes; from an environment
    /// variable).
    pub hash_key: Option<Str>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    pub name: Str,
    pub addr: Str,
    pub tls: Option<RawTls>,
    /// Bytes of response a client connection gathers before a send
    /// (`16KB`); see [`DEFAULT_WRITE_BUFFER`](crate::config::snapshot::DEFAULT_WRITE_BUFFER).
    pub write_buffer: Option<Str>,
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
    /// HTTPS on the admin listener, and optionally client certificates.
    pub tls: Option<RawAdminTls>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdminTls {
    pub cert: Str,
    pub key: Str,
    /// PEM bundle of the CA(s) whose client certificates may call the
    /// admin endpoints (all but the probes).
    pub client_ca: Option<Str>,
    /// PEM file of the revocation lists (CRLs) of those CAs: a certificate
    /// one lists is refused.
    pub client_crl: Option<Str>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNetwork {
    #[serde(default)]
    pub trusted_proxies: Vec<Str>,
    /// The gateway's origin as clients reach it (`https://wa.acme.example`):
    /// where rewritten upstream links lead. Unset: each request's own
    /// scheme and `Host`.
    pub public_url: Option<Str>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConnections {
    /// How long the rest of a request head may take once the client has
    /// paused in it.
    pub head_timeout: Option<Str>,
    /// Client connections open at once, all listeners together.
    pub max: Option<Spanned<u32>>,
    /// Client connections open at once from one address.
    pub max_per_client: Option<Spanned<u32>>,
    /// Bytes per second a request body must keep up on average (`1KB`).
    pub body_min_rate: Option<Str>,
    /// How long before a request body is held to `body_min_rate`.
    pub body_grace: Option<Str>,
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
    /// Largest request body forwarded to this upstream (`1MB` unless
    /// set); a route's own `max_body` overrides it.
    pub max_body: Option<Str>,
    /// Parameters this upstream reads as a method override (`[_method]`
    /// unless set; `[]` for none): requests carrying them are refused.
    pub method_override_params: Option<Vec<Str>>,
    /// `refuse` (the default) or `allow` a request whose last path segment
    /// has a dot, which Rails reads as a format suffix.
    pub format_suffix: Option<Str>,
    /// Upstreams whose absolute URLs in this upstream's JSON answers are
    /// turned into the gateway's (Graph's `paging.next`, a media `url`).
    #[serde(default)]
    pub links: Vec<Str>,
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
    /// `jwt` (default when an `auth` section exists), `meta_signature`
    /// (Meta's signed webhooks) or `none`.
    pub auth: Option<Str>,
    /// Permission the caller needs (`conversations.read`).
    pub permission: Option<Str>,
    /// Require MFA no older than this for this route (exports, admin).
    pub mfa_max_age: Option<Str>,
    /// Path parameters bound to identity claims.
    #[serde(default)]
    pub scope: Vec<RawScope>,
    /// Remove list items the caller may not see from the response.
    pub row_filter: Option<RawRowFilter>,
    /// Fetch the object first and forward only if the caller may reach it.
    pub owner_check: Option<RawOwnerCheck>,
    /// Names of `redaction` rules applied to this route's responses.
    #[serde(default)]
    pub redaction: Vec<Str>,
    /// At most `burst` requests at once per key, one more every `per /
    /// burst`.
    pub rate_limit: Option<RawRateLimit>,
    /// Largest request body forwarded (overrides the upstream's).
    pub max_body: Option<Str>,
    /// Let WebSocket handshakes through (`Upgrade: websocket`); the open
    /// stream is decided again as its frames pass.
    pub websocket: Option<Spanned<bool>>,
    /// WebSocket routes: drop the messages whose object the caller may not
    /// see.
    pub message_filter: Option<RawMessageFilter>,
    /// WebSocket routes: messages with this top-level member are the
    /// protocol's own (ActionCable's `type`: welcome, ping, confirmations),
    /// not filtered and only searched by `detect`.
    pub control_messages: Option<Str>,
    /// WebSocket routes (ActionCable): members set in the identifier of
    /// every subscription the client asks for, so it is made as the CRM
    /// key's user (`pubsub_token`, `user_id`); staff never hold them.
    pub subscribe_as: Option<std::collections::BTreeMap<String, Str>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMessageFilter {
    /// Where each message's object is: `$.message.data`.
    pub object: Str,
    /// Fields of the object that may hold its owner, the first present
    /// wins: `[meta.assignee.id, conversation.assignee_id]`.
    pub fields: Vec<Str>,
    /// Attribute claim with the caller's values: `user_id`.
    pub claim: Str,
    /// Callers holding this get every owner's messages.
    pub unless_permission: Option<Str>,
    /// Messages whose object carries a label are dropped unless the caller
    /// has its permission.
    #[serde(default)]
    pub labels: Vec<RawLabelRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    /// `sub` (default), `ip` or `route`.
    pub key: Option<Str>,
    pub per: Str,
    pub burst: Spanned<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOwnerCheck {
    /// GET path template of the object, from the route's parameters
    /// (default: the route's own path).
    pub lookup: Option<Str>,
    /// Where the object is in the lookup's body (default `$`).
    pub object: Option<Str>,
    /// Field of the object holding its owner: `meta.assignee.id`.
    pub field: Str,
    /// Attribute claim with the caller's values: `user_id`.
    pub claim: Str,
    /// Callers holding this reach every owner's objects.
    pub unless_permission: Option<Str>,
    /// Objects carrying a label are hidden unless the caller has its permission.
    #[serde(default)]
    pub labels: Vec<RawLabelRule>,
    /// How long a lookup's answer is reused (default 5s, `0s` for never).
    pub cache: Option<Str>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRowFilter {
    /// Where the items are: `$.data.payload[*]`.
    pub items: Str,
    /// Field of each item holding its owner: `meta.assignee.id`.
    pub field: Str,
    /// Attribute claim with the caller's values: `user_id`.
    pub claim: Str,
    /// Callers holding this see every owner's items.
    pub unless_permission: Option<Str>,
    /// Items carrying a label are removed unless the caller has its permission.
    #[serde(default)]
    pub labels: Vec<RawLabelRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLabelRule {
    /// Field holding the item's labels (default `labels`).
    pub field: Option<Str>,
    pub label: Str,
    pub permission: Str,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScope {
    /// A path parameter of the route (`{inbox_id}`)…
    pub param: Option<Str>,
    /// …or a top-level member of a JSON request body (`inbox_id`)…
    pub body: Option<Str>,
    /// …or a query parameter the request must name once
    /// (`?phone_number_id=`).
    pub query: Option<Str>,
    pub claim: Str,
    pub unless_permission: Option<Str>,
    /// A `body` member may be absent (or `null`); one that is there must
    /// be the caller's.
    pub optional: Option<Spanned<bool>>,
    /// Members that must be in the body beside a `body` member.
    #[serde(default)]
    pub requires: Vec<Str>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    pub issuer: Str,
    pub audiences: Vec<Str>,
    pub algorithms: Vec<Str>,
    /// An HTTPS JWKS endpoint (key rotation without reloads).
    pub jwks_url: Option<Str>,
    /// Static public keys: PEM files with the `kid` tokens name.
    #[serde(default)]
    pub keys: Vec<RawKey>,
    /// Shared secret for HS256/384/512 (only used if those are allowed).
    pub hmac_secret: Option<Str>,
    pub leeway: Option<Str>,
    /// Also accept the token from this cookie.
    pub cookie: Option<Str>,
    /// Origins whose pages may send cookie-authenticated changes, besides
    /// the gateway's own (cross-site request forgery protection).
    #[serde(default)]
    pub cookie_origins: Vec<Str>,
    #[serde(default)]
    pub claims: RawClaims,
    #[serde(default)]
    pub mfa: RawMfa,
    #[serde(default)]
    pub revoked: RawRevoked,
    #[serde(default)]
    pub jwks: RawJwksTiming,
    /// Verified tokens kept in memory (0 turns the cache off).
    pub cache_entries: Option<Spanned<u32>>,
    /// Bad signatures a client may send per window before its new tokens
    /// are refused unchecked.
    pub bad_signatures: Option<RawBadSignatures>,
    /// Meta's webhook signing (routes with `auth: meta_signature`).
    pub meta_webhook: Option<RawMetaWebhook>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKey {
    pub kid: Str,
    pub file: Str,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClaims {
    pub subject: Option<Str>,
    pub roles: Option<Str>,
    /// attribute name → claim path (`phone_number_ids: wa.numbers`).
    #[serde(default)]
    pub attributes: BTreeMap<String, Str>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMfa {
    #[serde(default)]
    pub amr_any: Vec<Str>,
    #[serde(default)]
    pub acr_any: Vec<Str>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRevoked {
    /// One subject per line; `#` comments.
    pub subjects_file: Option<Str>,
    /// One `jti` per line; `#` comments.
    pub jti_file: Option<Str>,
    /// How long a subject revoked through the admin endpoint stays
    /// revoked, unless the request says (default 24h, at most 30d).
    pub runtime_ttl: Option<Str>,
    /// How often runtime revocations are synced with the other replicas
    /// through the shared Redis store (default 1s, 50ms to 1m).
    pub sync_every: Option<Str>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBadSignatures {
    /// 0 turns the limit off.
    pub max: Spanned<u32>,
    pub per: Option<Str>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJwksTiming {
    pub refresh: Option<Str>,
    pub min_refresh: Option<Str>,
    pub max_refresh: Option<Str>,
    pub unknown_kid_interval: Option<Str>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetaWebhook {
    pub app_secret: Str,
    /// Token Meta echoes in the `GET` subscription handshake.
    pub verify_token: Option<Str>,
    /// Largest webhook body accepted (at most 64KB).
    pub max_body: Option<Str>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRole {
    #[serde(default)]
    pub inherits: Vec<Str>,
    #[serde(default)]
    pub permissions: Vec<Str>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccessRule {
    pub name: Str,
    #[serde(default)]
    pub roles: Vec<Str>,
    #[serde(default)]
    pub routes: Vec<Str>,
    pub time: Option<RawTimeWindow>,
    #[serde(default)]
    pub ip_allow: Vec<Str>,
    #[serde(default)]
    pub ip_deny: Vec<Str>,
    pub mfa_max_age: Option<Str>,
    /// `enforce` (default) or `audit` (dry run: record, don't deny).
    pub mode: Option<Str>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTimeWindow {
    pub days: Vec<Str>,
    pub from: Str,
    pub to: Str,
    pub tz: Str,
    /// Local dates the window is closed (public holidays): `2026-12-25`.
    #[serde(default)]
    pub closed: Vec<Str>,
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
    /// PEM file of the Ed25519 key that signs checkpoints of the chain.
    pub signing_key: Option<Str>,
    /// How often the chain's head is signed while records come in.
    pub checkpoint_every: Option<Str>,
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
            signing_key: None,
            checkpoint_every: None,
        }
    }
}

fn default_audit_path() -> Str {
    Spanned::new("-".to_string(), Location::UNKNOWN, Location::UNKNOWN)
}
