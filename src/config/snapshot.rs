//! The compiled, immutable configuration one request sees from its first
//! phase to its last. Built once per load by `compile`; never mutated.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use pingora_core::tls::sign::CertifiedKey;
use pingora_core::tls::ClientCertVerifier;
use pingora_core::utils::tls::WrappedX509;

use crate::alert::AlertRule;
use crate::auth::origin::TrustedOrigins;
use crate::auth::{AuthSettings, JwksOptions, KeyStore, Verifier};
use crate::limit::{LimitStore, RateLimit};
use crate::policy::body_scope::BodyBinding;
use crate::policy::{MessageFilter, OwnerCache, OwnerCheck, Policy, RouteRequirement, RowFilter};
use crate::redact::RedactionRule;
use crate::request::TrustedProxies;
use crate::revocation::RevocationList;
use crate::route::RouteTable;
use crate::webhook::MetaWebhook;

/// Identifies one loaded configuration in audit records and metrics: a
/// digest of the file's bytes and of every file it names (certificates, keys,
/// CA bundles), so the same files always have the same version.
///
/// This and the route and upstream names are shared text (`Arc<str>`): every
/// audit record carries them, and a clone is then a reference count, not an
/// allocation on the request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigVersion(pub Arc<str>);

impl fmt::Display for ConfigVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteName(pub Arc<str>);

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UpstreamName(pub Arc<str>);

pub struct Snapshot {
    pub version: ConfigVersion,
    pub source: PathBuf,
    /// The files the config named and this load read (certificates, keys,
    /// CA bundles, revocation lists), in reading order: with the YAML, what
    /// [`fingerprint`](crate::config::fingerprint) reads to see whether
    /// anything changed.
    pub files: Vec<PathBuf>,
    pub listeners: Vec<Listener>,
    pub admin: Option<Admin>,
    pub trusted_proxies: TrustedProxies,
    /// `network.public_url` without its trailing slash: where rewritten
    /// upstream links lead (`None`: the request's own scheme and host).
    pub public_url: Option<Arc<str>>,
    /// Head deadline and connection caps, read when a connection arrives.
    pub connections: crate::connection::ConnectionSettings,
    pub upstreams: BTreeMap<String, Arc<Upstream>>,
    pub routes: RouteTable<Arc<Route>>,
    /// Token verification, keys, revocation lists, webhook secret; `None`
    /// when the config has no `auth` section (every route is `auth: none`).
    pub auth: Option<AuthRuntime>,
    pub policy: Policy,
    pub audit: AuditSettings,
    /// Alert rules, each holding its sinks.
    pub alerts: Vec<Arc<AlertRule>>,
    /// Header names the gateway never forwards from a client: credentials,
    /// cookies, every injected upstream header and identity headers.
    pub strip_request_headers: Vec<HeaderName>,
    /// Where route rate limits count: this process, or a shared Redis.
    pub rate_limits: LimitStore,
    /// Which other sites' pages may call the gateway from a browser;
    /// `None`: none may (no preflight is answered, no response readable).
    pub cors: Option<crate::cors::CorsPolicy>,
    /// `compression.level`: admitted responses are compressed at it for
    /// clients that accept gzip, brotli or zstd; `None`: never.
    pub compression: Option<u32>,
}

pub struct Listener {
    pub name: String,
    pub addr: SocketAddr,
    pub tls: Option<Arc<CertifiedKey>>,
    /// Bytes of response each client connection gathers before a send.
    pub write_buffer: usize,
}

/// A client connection's write buffer, unless a listener sets
/// `write_buffer`. A response head and a body that fit in it leave in one
/// send: one TCP segment and one wake-up of the client, where pingora's
/// default (1,460 bytes, one segment's payload) sends the head on its own
/// as soon as the body is larger. The buffer lives as long as the
/// connection, and the pages a response wrote into stay resident while
/// it idles: with 10,000 idle keep-alive connections, about 3 KB more
/// each after a small response and up to 16 KB after a large one (load
/// bench: 416 -> 445 MiB after an 87-byte answer; 557 MiB after a 12 KB
/// one). Set it to `1460` where idle connections are many and memory is
/// short.
pub const DEFAULT_WRITE_BUFFER: usize = 16 * 1024;

/// The largest `write_buffer` a listener may set: every connection holds
/// one.
pub const MAX_WRITE_BUFFER: usize = 1 << 20;

pub struct Admin {
    pub addr: SocketAddr,
    /// Bearer token for everything but `/healthz` and `/readyz`.
    pub token: Option<String>,
    /// `None`: the admin listener speaks plain HTTP.
    pub tls: Option<AdminTls>,
}

pub struct AdminTls {
    pub key: Arc<CertifiedKey>,
    /// Verifies client certificates against `admin.tls.client_ca`; `None`:
    /// none are asked for. It lets a client without one finish the
    /// handshake (the probes need none); the admin endpoints then refuse
    /// it.
    pub clients: Option<Arc<dyn ClientCertVerifier>>,
    /// When the first of `admin.tls.client_crl`'s lists is due to be
    /// replaced (Unix seconds): past it, a certificate revoked since may
    /// be missing from it.
    pub crl_next_update: Option<i64>,
}

pub struct Upstream {
    pub name: UpstreamName,
    pub target: UpstreamTarget,
    pub tls: bool,
    /// Host name for SNI, certificate verification and the `Host` header.
    pub host: String,
    pub port: u16,
    /// `host` or `host:port`, as the upstream expects in `Host`.
    pub host_header: HeaderValue,
    /// Injected on every forwarded request, replacing any client copy.
    pub inject: Vec<(HeaderName, HeaderValue)>,
    /// The injected credentials as searched for in responses: they never
    /// reach a client (see [`crate::echo`]).
    pub credentials: crate::echo::Credentials,
    pub timeouts: Timeouts,
    /// Largest request body forwarded, for routes that do not set their own.
    pub max_body: u64,
    /// Query or form parameters this upstream reads as a method override;
    /// a request carrying one is refused.
    pub method_override_params: Vec<String>,
    /// Whether a request whose last path segment has a dot is refused:
    /// Rails reads `/contacts/search.json` as the `search` action with
    /// format `json`, where a route template would see an id `search.json`
    /// (see [`crate::request::format_suffix`]).
    pub refuse_format_suffix: bool,
    /// The origins (of the upstreams its `links` names) whose URLs in this
    /// upstream's JSON answers lead through the gateway instead; empty for
    /// none.
    pub links: Arc<[crate::rewrite::Origin]>,
    pub ca: Option<Arc<[WrappedX509]>>,
    /// Separates this upstream's pooled connections from any other
    /// upstream's at the same address: pingora's pool key ignores the CA,
    /// so without it a connection verified against one upstream's private
    /// CA could be reused for another that trusts only the system roots.
    pub pool_key: u64,
    /// The last DNS answer for a `Dns` target and when it was fetched;
    /// re-resolved after `DNS_TTL` so address changes are picked up
    /// without a lookup on every request.
    pub resolved: std::sync::Mutex<Option<(std::time::Instant, SocketAddr)>>,
    /// What ownership lookups on this upstream found, reused briefly by
    /// every route of this snapshot (a reload starts empty).
    pub owners: OwnerCache,
}

impl Upstream {
    /// Where this upstream's own links start (`https://graph.facebook.com`).
    pub fn origin(&self) -> crate::rewrite::Origin {
        let host = match self.host.parse::<IpAddr>() {
            Ok(IpAddr::V6(_)) => format!("[{}]", self.host),
            _ => self.host.clone(),
        };
        crate::rewrite::Origin::new(self.tls, &host, self.port)
    }
}

/// How long a resolved upstream address is reused.
pub const DNS_TTL: Duration = Duration::from_secs(30);

impl Upstream {
    /// Whether `value` (a response header value) contains one of this
    /// upstream's injected credentials, so it must not reach the client.
    pub fn leaks_secret(&self, value: &[u8]) -> bool {
        self.credentials.found_in(value)
    }
}

/// Where an upstream is: a socket address known at load time, or a DNS
/// name resolved when connecting.
#[derive(Debug, Clone)]
pub enum UpstreamTarget {
    Addr(SocketAddr),
    Dns(String),
}

#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    pub read: Duration,
    pub write: Duration,
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(5),
            read: Duration::from_secs(30),
            write: Duration::from_secs(30),
            idle: Duration::from_secs(60),
        }
    }
}

pub struct Route {
    pub name: RouteName,
    pub upstream: Arc<Upstream>,
    pub auth: AuthMode,
    /// Permission, MFA and scope this route demands (jwt routes).
    pub requirement: RouteRequirement,
    /// List items to remove from responses for callers who may not see them.
    pub row_filter: Option<RowFilter>,
    /// The object to fetch and check before forwarding.
    pub owner_check: Option<OwnerCheck>,
    /// Masking applied to responses, per caller.
    pub redactions: Vec<Arc<RedactionRule>>,
    pub rate_limit: Option<RateLimit>,
    /// Largest request body forwarded, in bytes: a declared
    /// `Content-Length` over it is refused before anything is forwarded,
    /// and a body that grows past it is cut off.
    pub max_body: u64,
    /// WebSocket handshakes are forwarded (an open stream is decided
    /// again as its frames pass); on other routes they are refused.
    pub websocket: bool,
    /// WebSocket routes: messages from the upstream whose object the
    /// caller may not see are dropped.
    pub message_filter: Option<MessageFilter>,
    /// WebSocket routes: messages with this top-level member are the
    /// protocol's own (pings, welcomes): not filtered, and only `detect`
    /// searches them.
    pub control_messages: Option<Box<str>>,
    /// WebSocket routes: every ActionCable subscription is made as these
    /// identifier members say (see [`crate::rewrite::subscriptions`]).
    pub subscribe_as: Option<crate::rewrite::subscriptions::SubscribeAs>,
    /// What a stream's messages are searched for and masked: the
    /// upstream's credentials and the `subscribe_as` values (`None`: the
    /// upstream's alone).
    pub stream_secrets: Option<crate::echo::Credentials>,
    /// Members of a JSON request body bound to the caller's claims: the
    /// body is read and checked before anything is forwarded.
    pub body_scope: Vec<BodyBinding>,
}

impl Route {
    /// What a stream's messages from the upstream are searched for.
    pub fn stream_credentials(&self) -> &crate::echo::Credentials {
        self.stream_secrets
            .as_ref()
            .unwrap_or(&self.upstream.credentials)
    }
}

/// The request body limit when neither the route nor its upstream sets one.
pub const DEFAULT_MAX_BODY: u64 = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// A staff token (JWT) verified, then the policy decides.
    Jwt,
    /// Meta's signed webhook: `X-Hub-Signature-256` over the body.
    MetaSignature,
    /// No caller authentication (health probes and the like).
    None,
}

impl AuthMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::Jwt => "jwt",
            AuthMode::MetaSignature => "meta_signature",
            AuthMode::None => "none",
        }
    }
}

/// Everything authentication needs at request time.
pub struct AuthRuntime {
    /// Verifier with its verified-token cache, bound to `keys`.
    pub verifier: Verifier,
    /// Local keys plus (once fetched) the JWKS keys; shared with the JWKS
    /// refresher, so rotation needs no reload.
    pub keys: Arc<KeyStore>,
    pub settings: AuthSettings,
    /// Also accept the token from this cookie.
    pub cookie: Option<String>,
    /// Other sites' pages that may send cookie-authenticated changes.
    pub cookie_origins: TrustedOrigins,
    pub jwks: Option<JwksConfig>,
    pub revoked: RevocationList,
    /// How long an admin `POST /revoke` lasts unless it says.
    pub revoked_ttl: Duration,
    /// How often runtime revocations are synced through the shared store.
    pub revoked_sync_every: Duration,
    pub meta: Option<MetaWebhook>,
}

pub struct JwksConfig {
    pub url: String,
    pub options: JwksOptions,
}

#[derive(Debug, Clone)]
pub struct AuditSettings {
    /// `None` means stdout.
    pub path: Option<PathBuf>,
    pub hash_chain: bool,
    pub fail_closed: bool,
    pub queue: usize,
    pub rotate_max_size: Option<u64>,
    pub rotate_keep: usize,
    /// Signed checkpoints (`audit.signing_key`, `checkpoint_every`).
    pub signing: Option<crate::audit::writer::Signing>,
}
