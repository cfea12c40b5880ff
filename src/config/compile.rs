//! Raw YAML → immutable `Snapshot`. Parse, don't validate: every check that
//! can fail runs here, once per load, and reports `file:line:col`. A
//! snapshot that exists is valid; the request path never re-checks it.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use http::{HeaderName, HeaderValue, Method};
use ipnetwork::IpNetwork;
use pingora_core::tls::sign::CertifiedKey;
use pingora_core::tls::{
    CertificateDer, ClientCertVerifier, CryptoProvider, PrivateKeyDer, RootCertStore,
    WebPkiClientVerifier,
};
use pingora_core::utils::tls::{parse_x509, WrappedX509};
use serde_saphyr::Location;
use sha2::{Digest, Sha256};
use tokio_rustls::rustls::pki_types::CertificateRevocationListDer;
use tokio_rustls::rustls::server::VerifierBuilderError;

use super::duration::{parse_duration, parse_size};
use super::env::{expand, EnvLookup};
use super::raw::{RawConfig, RawConnections, RawRoute, RawUpstream, Str};
use super::snapshot::AuthRuntime;
use super::snapshot::{
    Admin, AdminTls, AuditSettings, AuthMode, ConfigVersion, Listener, Route, RouteName, Snapshot,
    Timeouts, Upstream, UpstreamName, UpstreamTarget, DEFAULT_MAX_BODY, DEFAULT_WRITE_BUFFER,
    MAX_WRITE_BUFFER,
};
use crate::audit::signing::{Signer, DEFAULT_CHECKPOINT_EVERY};
use crate::audit::writer::Signing;
use crate::connection::ConnectionSettings;

/// The largest `max_body` a config may set. The APIs behind the gateway
/// take far less (WhatsApp media is at most 100MB); a larger number is
/// more likely a slip than an intent.
const MAX_BODY_LIMIT: u64 = 4 << 30;
use crate::policy::OwnerCache;
use crate::redact::RedactionRule;
use crate::request::{method_override, TrustedProxies};
use crate::rewrite::subscriptions::SubscribeAs;
use crate::route::{never_routed, MethodSet, PathTemplate, RouteTable};

/// The parameter Rails, Laravel, Symfony and Spring read as a method
/// override in a form (see [`crate::request::method_override`]).
pub const DEFAULT_OVERRIDE_PARAM: &str = "_method";

/// Headers that carry the caller's own credentials or identity (invariant
/// 3), or would have the upstream do other than what was checked. They are
/// dropped before forwarding whatever the config says.
pub const ALWAYS_STRIPPED: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-real-ip",
    "x-chatwarden-sub",
    "x-chatwarden-roles",
    // Method overrides: refused on changes (the gate), dropped here from
    // GET and HEAD, where they are not refused.
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    // Path overrides some servers honour (IIS, older Symfony): the path
    // forwarded is the one checked.
    "x-original-url",
    "x-rewrite-url",
];

/// One problem in a config file, located where it can be found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub line: u64,
    pub column: u64,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file, self.line, self.column, self.message
            )
        } else {
            write!(f, "{}: {}", self.file, self.message)
        }
    }
}

/// Every problem found in one load, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Read, parse and compile a config file.
pub fn load_file(path: &Path, env: &dyn EnvLookup) -> Result<Snapshot, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: path.display().to_string(),
            line: 0,
            column: 0,
            message: format!("cannot read config file: {e}"),
        }])
    })?;
    load_str(&text, path, env)
}

/// Parse and compile config text. `path` names the file in errors and
/// anchors relative paths (certificates, CA files, the audit file).
pub fn load_str(text: &str, path: &Path, env: &dyn EnvLookup) -> Result<Snapshot, ConfigErrors> {
    let file = path.display().to_string();
    let raw: RawConfig = serde_saphyr::from_str(text).map_err(|e| {
        let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
        ConfigErrors(vec![ConfigError {
            file: file.clone(),
            line,
            column,
            message: strip_location_suffix(&e.without_snippet().to_string()),
        }])
    })?;
    let base_dir = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let mut c = Compiler {
        file,
        env,
        base_dir,
        errors: Vec::new(),
        sources: None,
        files: Vec::new(),
    };
    let snapshot = c.compile(raw, ConfigVersion(Arc::from("")), path);
    match snapshot {
        Some(mut s) if c.errors.is_empty() => {
            s.version = version(text, c.sources);
            s.files = c.files;
            Ok(s)
        }
        _ => {
            c.errors.sort_by_key(|e| (e.line == 0, e.line, e.column));
            Err(ConfigErrors(c.errors))
        }
    }
}

pub(super) struct Compiler<'a> {
    file: String,
    env: &'a dyn EnvLookup,
    base_dir: PathBuf,
    errors: Vec<ConfigError>,
    /// Digest of every file the config names and the compile read
    /// (certificates, keys, CA bundles), in reading order; `None` if none.
    sources: Option<Sha256>,
    /// Those files, in the same order.
    files: Vec<PathBuf>,
}

/// Bounds of `connections.head_timeout`.
const MIN_HEAD_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(100);
const MAX_HEAD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);
/// Bounds of `connections.body_grace`.
const MIN_BODY_GRACE: std::time::Duration = std::time::Duration::from_secs(1);
const MAX_BODY_GRACE: std::time::Duration = std::time::Duration::from_secs(600);

/// The config's version: a digest of its text and of every file it named
/// that was read, so renewing a certificate in place (same YAML, new PEM)
/// is a new version that a reload applies, rather than "unchanged". A
/// config that names no files keeps the digest of its text alone.
fn count_source(digest: &mut Sha256, path: &Path, bytes: &[u8]) {
    let name = path.as_os_str().as_encoded_bytes();
    // Length-prefixed, so no two lists of files hash alike.
    digest.update((name.len() as u64).to_be_bytes());
    digest.update(name);
    digest.update((bytes.len() as u64).to_be_bytes());
    digest.update(bytes);
}

/// The version the config file at `path` would load as, if it still names
/// `files` (those a snapshot read: [`Snapshot::files`]): whether a reload
/// has anything to do, found without compiling. A changed text may name
/// other files; its digest differs all the same.
pub fn fingerprint(path: &Path, files: &[PathBuf]) -> std::io::Result<ConfigVersion> {
    let text = std::fs::read_to_string(path)?;
    let mut sources = None;
    for file in files {
        let bytes = std::fs::read(file)?;
        count_source(sources.get_or_insert_with(Sha256::new), file, &bytes);
    }
    Ok(version(&text, sources))
}

fn version(text: &str, sources: Option<Sha256>) -> ConfigVersion {
    let mut digest = Sha256::new();
    digest.update(text.as_bytes());
    if let Some(files) = sources {
        digest.update(b"\0files\0");
        digest.update(files.finalize());
    }
    ConfigVersion(hex::encode(&digest.finalize()[..6]).into())
}

impl Compiler<'_> {
    /// Headers the gateway sends with secrets in them (an upstream's
    /// credential, an alert webhook's token): each name and value checked,
    /// each value marked sensitive so that it never prints. `owner` names
    /// where they are configured, for the error messages.
    pub(super) fn sensitive_headers(
        &mut self,
        owner: &str,
        headers: &BTreeMap<String, Str>,
    ) -> Vec<(HeaderName, HeaderValue)> {
        let mut out = Vec::new();
        for (hname, hval) in headers {
            let Ok(header) = HeaderName::from_bytes(hname.as_bytes()) else {
                self.err(
                    &hval.referenced,
                    format!("{owner}: `{hname}` is not a valid header name"),
                );
                continue;
            };
            let Some(value) = self.string(hval) else {
                continue;
            };
            match HeaderValue::from_str(&value) {
                Ok(mut v) => {
                    v.set_sensitive(true);
                    out.push((header, v));
                }
                Err(_) => self.err(
                    &hval.referenced,
                    format!("{owner}: value of header `{hname}` contains characters not allowed in a header"),
                ),
            }
        }
        out
    }

    fn compile(&mut self, raw: RawConfig, version: ConfigVersion, path: &Path) -> Option<Snapshot> {
        let listeners = self.listeners(&raw);
        let admin = self.admin(&raw);
        let trusted_proxies = TrustedProxies::new(self.cidrs(&raw.network.trusted_proxies));
        let public_url = self.public_url(raw.network.public_url.as_ref());
        let connections = self.connections(&raw.connections);
        let upstreams = self.upstreams(&raw.upstreams);
        let mut auth = match &raw.auth {
            Some(a) => self.auth(a),
            None => None,
        };
        let cors = self.cors(&raw, auth.as_mut());
        let compression = raw.compression.as_ref().and_then(|c| {
            if (1..=9).contains(&c.level.value) {
                Some(c.level.value)
            } else {
                self.err(
                    &c.level.referenced,
                    format!(
                        "compression.level {} is out of range: 1 (fastest) to 9 (smallest), or leave `compression` out",
                        c.level.value
                    ),
                );
                None
            }
        });
        let redactions = self.redactions(&raw);
        let routes = self.routes(&raw, &upstreams, auth.as_ref(), &redactions);
        let route_names: Vec<&str> = raw.routes.iter().map(|r| r.name.value.as_str()).collect();
        let policy = self.policy(&raw, &route_names);
        let audit = self.audit(&raw);
        let rate_limits = self.limit_store(&raw);
        let alerts = self.alerts(&raw, &route_names);

        let mut strip: Vec<HeaderName> = ALWAYS_STRIPPED
            .iter()
            .map(|h| HeaderName::from_static(h))
            .collect();
        for up in upstreams.values() {
            for (name, _) in &up.inject {
                if !strip.contains(name) {
                    strip.push(name.clone());
                }
            }
        }
        // A server that maps headers to CGI names (Rack, PHP) reads
        // `api-access-token` and `api_access_token` as one header, so a
        // client's copy under the other spelling is dropped too (the other
        // direction is in `forward::strip_headers`).
        let aliases: Vec<HeaderName> = strip
            .iter()
            .filter(|n| n.as_str().contains('_'))
            .filter_map(|n| HeaderName::from_bytes(n.as_str().replace('_', "-").as_bytes()).ok())
            .collect();
        for alias in aliases {
            if !strip.contains(&alias) {
                strip.push(alias);
            }
        }

        Some(Snapshot {
            version,
            source: path.to_path_buf(),
            files: Vec::new(),
            listeners,
            admin,
            trusted_proxies,
            public_url,
            connections,
            upstreams,
            routes: routes?,
            auth,
            policy: policy?,
            audit,
            alerts,
            strip_request_headers: strip,
            rate_limits,
            cors,
            compression,
        })
    }

    fn listeners(&mut self, raw: &RawConfig) -> Vec<Listener> {
        let mut out = Vec::new();
        let mut names = HashSet::new();
        let mut addrs = HashSet::new();
        for l in &raw.listeners {
            if !names.insert(l.name.value.clone()) {
                self.err(
                    &l.name.referenced,
                    format!("duplicate listener name `{}`", l.name.value),
                );
            }
            let Some(addr) = self.socket_addr(&l.addr) else {
                continue;
            };
            if !addrs.insert(addr) {
                self.err(&l.addr.referenced, format!("two listeners on {addr}"));
            }
            let tls = match &l.tls {
                Some(t) => match self.certified_key(&t.cert, &t.key) {
                    Some(k) => Some(k),
                    None => continue,
                },
                None => None,
            };
            let write_buffer = match &l.write_buffer {
                None => DEFAULT_WRITE_BUFFER,
                Some(size) => match parse_size(&size.value) {
                    Ok(n) if n <= MAX_WRITE_BUFFER as u64 => n as usize,
                    Ok(_) => {
                        self.err(
                            &size.referenced,
                            format!(
                                "listener write_buffer `{}` is over 1MB: every client connection holds one",
                                size.value
                            ),
                        );
                        continue;
                    }
                    Err(msg) => {
                        self.err(&size.referenced, format!("listener write_buffer: {msg}"));
                        continue;
                    }
                },
            };
            out.push(Listener {
                name: l.name.value.clone(),
                addr,
                tls,
                write_buffer,
            });
        }
        out
    }

    /// `connections`: a head deadline between 100ms and 10m, caps of at
    /// least 1 (leave a cap out for none).
    fn connections(&mut self, raw: &RawConnections) -> ConnectionSettings {
        let mut out = ConnectionSettings::default();
        if let Some(t) = &raw.head_timeout {
            match parse_duration(&t.value) {
                Ok(d) if (MIN_HEAD_TIMEOUT..=MAX_HEAD_TIMEOUT).contains(&d) => out.head_timeout = d,
                Ok(_) => self.err(
                    &t.referenced,
                    "connections.head_timeout must be between 100ms and 10m".to_string(),
                ),
                Err(msg) => self.err(&t.referenced, format!("connections.head_timeout: {msg}")),
            }
        }
        for (field, raw_cap, cap) in [
            ("max", &raw.max, &mut out.max),
            (
                "max_per_client",
                &raw.max_per_client,
                &mut out.max_per_client,
            ),
        ] {
            if let Some(n) = raw_cap {
                if n.value == 0 {
                    self.err(
                        &n.referenced,
                        format!("connections.{field} must be at least 1 (leave it out for no cap)"),
                    );
                } else {
                    *cap = Some(n.value);
                }
            }
        }
        if let Some(r) = &raw.body_min_rate {
            match parse_size(&r.value) {
                Ok(n) if n <= 1 << 30 => out.body_pace.min_rate = n,
                Ok(_) => self.err(
                    &r.referenced,
                    "connections.body_min_rate can be at most 1GB (a second)".to_string(),
                ),
                Err(msg) => self.err(&r.referenced, format!("connections.body_min_rate: {msg}")),
            }
        }
        if let Some(g) = &raw.body_grace {
            match parse_duration(&g.value) {
                Ok(d) if (MIN_BODY_GRACE..=MAX_BODY_GRACE).contains(&d) => out.body_pace.grace = d,
                Ok(_) => self.err(
                    &g.referenced,
                    "connections.body_grace must be between 1s and 10m".to_string(),
                ),
                Err(msg) => self.err(&g.referenced, format!("connections.body_grace: {msg}")),
            }
        }
        if let (Some(max), Some(per_client)) = (&raw.max, &raw.max_per_client) {
            if per_client.value > max.value {
                self.err(
                    &per_client.referenced,
                    format!(
                        "connections.max_per_client ({}) is above connections.max ({})",
                        per_client.value, max.value
                    ),
                );
            }
        }
        out
    }

    fn admin(&mut self, raw: &RawConfig) -> Option<Admin> {
        let a = raw.admin.as_ref()?;
        let addr = self.socket_addr(&a.addr)?;
        let token = match &a.token_env {
            Some(var) => match self.env.get(&var.value) {
                Some(t) if t.len() >= 16 => Some(t),
                Some(_) => {
                    self.err(
                        &var.referenced,
                        format!(
                            "admin token in {} must be at least 16 characters",
                            var.value
                        ),
                    );
                    None
                }
                None => {
                    self.err(
                        &var.referenced,
                        format!("environment variable {} is not set", var.value),
                    );
                    None
                }
            },
            None => None,
        };
        let tls = match &a.tls {
            None => None,
            Some(t) => {
                let key = self.certified_key(&t.cert, &t.key);
                let (clients, crl_next_update) = match (&t.client_ca, &t.client_crl) {
                    (None, None) => (None, None),
                    (Some(ca), crl) => {
                        let (verifier, due) = self.client_verifier(ca, crl.as_ref())?;
                        (Some(verifier), due)
                    }
                    (None, Some(crl)) => {
                        self.err(
                            &crl.referenced,
                            "client_crl without client_ca: a revocation list applies to the \
                             client certificates of the CAs client_ca names"
                                .into(),
                        );
                        return None;
                    }
                };
                Some(AdminTls {
                    key: key?,
                    clients,
                    crl_next_update,
                })
            }
        };
        Some(Admin { addr, token, tls })
    }

    /// Checks client certificates against the CA bundle in `ca`, and
    /// against the revocation lists in `crl` if given. A client may still
    /// connect without a certificate (the admin listener's probes need none;
    /// its other endpoints refuse such a client).
    /// Also returns when the first of the lists is due to be replaced.
    fn client_verifier(
        &mut self,
        ca: &Str,
        crl: Option<&Str>,
    ) -> Option<(Arc<dyn ClientCertVerifier>, Option<i64>)> {
        let (roots, certs) = self.ca_certs(ca)?;
        let (crls, due) = match crl {
            Some(f) => self.revocation_lists(f, &certs)?,
            None => (Vec::new(), None),
        };
        pingora_core::tls::install_default_crypto_provider();
        let provider = CryptoProvider::get_default()?.clone();
        // rustls' defaults with lists: every certificate of the client's
        // chain is looked up, and one whose issuer has no list here is
        // refused (its status is unknown), so a list that stops covering a
        // CA fails closed. A list past its next update still applies.
        match WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .allow_unauthenticated()
            .with_crls(crls)
            .build()
        {
            Ok(v) => Some((v, due)),
            Err(e) => {
                let at = crl.filter(|_| matches!(e, VerifierBuilderError::InvalidCrl(_)));
                let f = at.unwrap_or(ca);
                self.err(
                    &f.referenced,
                    format!("cannot check client certificates against {}: {e}", f.value),
                );
                None
            }
        }
    }

    /// The CRLs in the PEM file `f`, each signed by one of the CAs in
    /// `cas`: with a list from another issuer, the status of those CAs'
    /// clients would be unknown, and every one of them refused.
    fn revocation_lists(
        &mut self,
        f: &Str,
        cas: &[CertificateDer<'static>],
    ) -> Option<(Vec<CertificateRevocationListDer<'static>>, Option<i64>)> {
        let (path, bytes) = self.read_named(f, "revocation list")?;
        let crls: Result<Vec<_>, _> = rustls_pemfile::crls(&mut bytes.as_slice()).collect();
        let crls = match crls {
            Ok(c) if !c.is_empty() => c,
            Ok(_) => {
                let msg = format!("{} holds no PEM revocation list (X509 CRL)", path.display());
                self.err(&f.referenced, msg);
                return None;
            }
            Err(e) => {
                self.err(
                    &f.referenced,
                    format!("{}: malformed PEM: {e}", path.display()),
                );
                return None;
            }
        };
        let cas: Vec<_> = cas
            .iter()
            .filter_map(|c| x509_parser::parse_x509_certificate(c.as_ref()).ok())
            .map(|(_, c)| c)
            .collect();
        let mut due: Option<i64> = None;
        for (i, der) in crls.iter().enumerate() {
            let crl = match x509_parser::parse_x509_crl(der.as_ref()) {
                Ok((_, crl)) => crl,
                Err(e) => {
                    self.err(
                        &f.referenced,
                        format!("{}: revocation list {}: {e}", path.display(), i + 1),
                    );
                    return None;
                }
            };
            let signed_by_one = cas.iter().any(|ca| {
                ca.subject().as_raw() == crl.issuer().as_raw()
                    && crl.verify_signature(ca.public_key()).is_ok()
            });
            if !signed_by_one {
                self.err(
                    &f.referenced,
                    format!(
                        "{}: revocation list {} is not signed by a CA in client_ca",
                        path.display(),
                        i + 1
                    ),
                );
                return None;
            }
            if let Some(next) = crl.next_update() {
                let next = next.timestamp();
                due = Some(due.map_or(next, |d| d.min(next)));
            }
        }
        Some((crls, due))
    }

    pub(super) fn cidrs(&mut self, list: &[Str]) -> Vec<IpNetwork> {
        let mut out = Vec::new();
        for s in list {
            let Some(text) = self.string(s) else { continue };
            match parse_cidr(&text) {
                Ok(net) => out.push(net),
                Err(msg) => self.err(&s.referenced, msg),
            }
        }
        out
    }

    fn upstreams(
        &mut self,
        raw: &BTreeMap<String, RawUpstream>,
    ) -> BTreeMap<String, Arc<Upstream>> {
        let mut compiled = BTreeMap::new();
        for (name, u) in raw {
            if let Some(up) = self.upstream(name, u) {
                compiled.insert(name.clone(), up);
            }
        }
        // `links` names other upstreams: resolved once all are known.
        let origins: BTreeMap<String, crate::rewrite::Origin> = compiled
            .iter()
            .map(|(name, up)| (name.clone(), up.origin()))
            .collect();
        let mut out = BTreeMap::new();
        for (name, mut up) in compiled {
            let mut links = Vec::new();
            for target in raw.get(&name).map_or(&[][..], |u| &u.links[..]) {
                match origins.get(&target.value) {
                    Some(o) if !links.contains(o) => links.push(o.clone()),
                    Some(_) => {}
                    None => self.err(
                        &target.referenced,
                        format!(
                            "upstream `{name}`: links: no upstream named `{}`",
                            target.value
                        ),
                    ),
                }
            }
            up.links = links.into();
            out.insert(name, Arc::new(up));
        }
        out
    }

    /// `network.public_url`: an origin (`https://host[:port]`), nothing
    /// after it but an optional `/`.
    fn public_url(&mut self, raw: Option<&Str>) -> Option<Arc<str>> {
        let s = raw?;
        let text = self.string(s)?;
        let ok = text
            .parse::<http::Uri>()
            .ok()
            .filter(|u| matches!(u.scheme_str(), Some("http" | "https")))
            .filter(|u| u.host().is_some_and(|h| !h.is_empty()))
            .filter(|u| matches!(u.path(), "" | "/") && u.query().is_none())
            .filter(|u| u.authority().is_some_and(|a| !a.as_str().contains('@')));
        if ok.is_none() {
            self.err(
                &s.referenced,
                format!("network.public_url `{text}` must be an origin such as https://gateway.example.com (a scheme and a host, an optional port, no path)"),
            );
            return None;
        }
        Some(text.trim_end_matches('/').to_ascii_lowercase().into())
    }

    fn upstream(&mut self, name: &str, u: &RawUpstream) -> Option<Upstream> {
        let url_text = self.string(&u.url)?;
        let at = &u.url.referenced;
        let uri: http::Uri = match url_text.parse() {
            Ok(uri) => uri,
            Err(e) => {
                self.err(at, format!("upstream `{name}`: invalid url: {e}"));
                return None;
            }
        };
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => {
                self.err(
                    at,
                    format!("upstream `{name}`: url must start with http:// or https://"),
                );
                return None;
            }
        };
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            self.err(
                at,
                format!("upstream `{name}`: url must not have a path or query; routes forward the request path as is"),
            );
            return None;
        }
        let Some(host) = uri.host().map(|h| h.trim_matches(['[', ']']).to_string()) else {
            self.err(at, format!("upstream `{name}`: url has no host"));
            return None;
        };
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let target = match host.parse::<IpAddr>() {
            Ok(ip) => UpstreamTarget::Addr(SocketAddr::new(ip, port)),
            Err(_) => UpstreamTarget::Dns(format!("{host}:{port}")),
        };
        let default_port = if tls { 443 } else { 80 };
        let host_header_text = match (host.parse::<IpAddr>(), port == default_port) {
            (Ok(IpAddr::V6(_)), true) => format!("[{host}]"),
            (Ok(IpAddr::V6(_)), false) => format!("[{host}]:{port}"),
            (_, true) => host.clone(),
            (_, false) => format!("{host}:{port}"),
        };
        let host_header = HeaderValue::from_str(&host_header_text).ok()?;

        let inject = self.sensitive_headers(&format!("upstream `{name}`"), &u.headers);

        let mut timeouts = Timeouts::default();
        for (field, slot) in [
            (&u.timeouts.connect, &mut timeouts.connect),
            (&u.timeouts.read, &mut timeouts.read),
            (&u.timeouts.write, &mut timeouts.write),
            (&u.timeouts.idle, &mut timeouts.idle),
        ] {
            if let Some(s) = field {
                match parse_duration(&s.value) {
                    Ok(d) => *slot = d,
                    Err(msg) => self.errors.push(self.located(&s.referenced, msg)),
                }
            }
        }

        // A bad limit is reported; the upstream still compiles, so its
        // routes do not add "unknown upstream" errors.
        let max_body = u
            .max_body
            .as_ref()
            .and_then(|s| self.body_limit(&format!("upstream `{name}`"), s))
            .unwrap_or(DEFAULT_MAX_BODY);

        let method_override_params =
            self.override_params(name, u.method_override_params.as_deref());
        let refuse_format_suffix = match u.format_suffix.as_ref() {
            None => true,
            Some(s) if s.value == "refuse" => true,
            Some(s) if s.value == "allow" => false,
            Some(s) => {
                self.err(
                    &s.referenced,
                    format!(
                        "upstream `{name}`: format_suffix `{}` must be refuse or allow",
                        s.value
                    ),
                );
                true
            }
        };

        let ca = match &u.ca_file {
            Some(f) => {
                if !tls {
                    self.err(
                        &f.referenced,
                        format!("upstream `{name}`: ca_file needs an https:// url"),
                    );
                }
                Some(self.ca_bundle(f)?)
            }
            None => None,
        };

        let credentials = crate::echo::Credentials::new(inject.iter().map(|(_, v)| v.as_bytes()));
        Some(Upstream {
            credentials,
            name: UpstreamName(name.into()),
            target,
            tls,
            host,
            port,
            host_header,
            inject,
            timeouts,
            max_body,
            method_override_params,
            refuse_format_suffix,
            links: Arc::from([]),
            ca,
            pool_key: pool_key(name),
            resolved: std::sync::Mutex::new(None),
            owners: OwnerCache::default(),
        })
    }

    fn routes(
        &mut self,
        config: &RawConfig,
        upstreams: &BTreeMap<String, Arc<Upstream>>,
        auth: Option<&AuthRuntime>,
        redactions: &BTreeMap<String, Arc<RedactionRule>>,
    ) -> Option<RouteTable<Arc<Route>>> {
        let raw = &config.routes;
        let mut entries = Vec::new();
        let mut names = HashSet::new();
        for r in raw {
            if !names.insert(r.name.value.clone()) {
                self.err(
                    &r.name.referenced,
                    format!("duplicate route name `{}`", r.name.value),
                );
                continue;
            }
            let upstream = match upstreams.get(&r.upstream.value) {
                Some(u) => u.clone(),
                None => {
                    let known: Vec<&str> = upstreams.keys().map(String::as_str).collect();
                    self.err(
                        &r.upstream.referenced,
                        format!(
                            "route `{}` names unknown upstream `{}` (known: {})",
                            r.name.value,
                            r.upstream.value,
                            if known.is_empty() {
                                "none".to_string()
                            } else {
                                known.join(", ")
                            }
                        ),
                    );
                    continue;
                }
            };
            let template = match PathTemplate::parse(&r.path.value) {
                Ok(t) => t,
                Err(e) => {
                    self.err(&r.path.referenced, format!("route `{}`: {e}", r.name.value));
                    continue;
                }
            };
            let Some(methods) = self.methods(&r.methods) else {
                continue;
            };
            let Some(mode) = self.route_auth(r, config, auth) else {
                continue;
            };
            let Some(requirement) = self.requirement(r, &template) else {
                continue;
            };
            let Some(row_filter) = self.row_filter(r) else {
                continue;
            };
            let Some(owner_check) = self.owner_check(r, &template, entries.len()) else {
                continue;
            };
            let Some(route_redactions) = self.route_redactions(r, redactions) else {
                continue;
            };
            let Some(rate_limit) = self.rate_limit(r) else {
                continue;
            };
            let max_body = match &r.max_body {
                Some(s) => match self.body_limit(&format!("route `{}`", r.name.value), s) {
                    Some(n) => n,
                    None => continue,
                },
                None => upstream.max_body,
            };
            let Some(websocket) = self.websocket(r, &methods, mode) else {
                continue;
            };
            let Some(message_filter) = self.message_filter(r) else {
                continue;
            };
            let Some(control_messages) = self.control_messages(r) else {
                continue;
            };
            let Some(subscribe_as) = self.subscribe_as(r) else {
                continue;
            };
            let stream_secrets = subscribe_as.as_ref().map(|s| {
                crate::echo::Credentials::new(
                    upstream
                        .inject
                        .iter()
                        .map(|(_, v)| v.as_bytes())
                        .chain(s.members.iter().map(|(_, v)| v.as_bytes())),
                )
            });
            let Some(body_scope) = self.body_scope(r, &methods) else {
                continue;
            };
            entries.push((
                methods,
                template,
                Arc::new(Route {
                    name: RouteName(r.name.value.as_str().into()),
                    upstream,
                    auth: mode,
                    requirement,
                    row_filter,
                    owner_check,
                    redactions: route_redactions,
                    rate_limit,
                    max_body,
                    websocket,
                    message_filter,
                    control_messages,
                    subscribe_as,
                    stream_secrets,
                    body_scope,
                }),
            ));
        }
        match RouteTable::new(entries) {
            Ok(t) => Some(t),
            Err(e) => {
                let at = raw
                    .first()
                    .map(|r| r.name.referenced)
                    .unwrap_or(Location::UNKNOWN);
                self.err(&at, format!("routes: {e}"));
                None
            }
        }
    }

    /// A `max_body` size: a whole number of bytes, KB, MB or GB, at least
    /// one byte and at most `MAX_BODY_LIMIT`.
    fn body_limit(&mut self, owner: &str, s: &Str) -> Option<u64> {
        match parse_size(&s.value) {
            Ok(n) if n <= MAX_BODY_LIMIT => Some(n),
            Ok(_) => {
                self.err(
                    &s.referenced,
                    format!(
                        "{owner}: max_body can be at most {}GB",
                        MAX_BODY_LIMIT >> 30
                    ),
                );
                None
            }
            Err(msg) => {
                self.err(&s.referenced, format!("{owner}: max_body: {msg}"));
                None
            }
        }
    }

    /// `auth:` of a route: `jwt` by default when an `auth` section exists;
    /// there is no default without one, so an open route is always explicit.
    fn route_auth(
        &mut self,
        r: &RawRoute,
        config: &RawConfig,
        auth: Option<&AuthRuntime>,
    ) -> Option<AuthMode> {
        let at = r.auth.as_ref().map_or(r.name.referenced, |a| a.referenced);
        let mode = match r.auth.as_ref().map(|a| a.value.as_str()) {
            Some("jwt") => AuthMode::Jwt,
            Some("meta_signature") => AuthMode::MetaSignature,
            Some("none") => AuthMode::None,
            Some(other) => {
                self.err(
                    &at,
                    format!(
                        "route `{}`: auth `{other}` must be jwt, meta_signature or none",
                        r.name.value
                    ),
                );
                return None;
            }
            None if config.auth.is_some() => AuthMode::Jwt,
            None => {
                self.err(
                    &at,
                    format!("route `{}` must say how callers authenticate: add an `auth` section for jwt, or write `auth: none`", r.name.value),
                );
                return None;
            }
        };
        let needs_policy = r.permission.is_some()
            || r.mfa_max_age.is_some()
            || !r.scope.is_empty()
            || r.row_filter.is_some()
            || r.owner_check.is_some()
            || r.message_filter.is_some()
            || !r.redaction.is_empty();
        match mode {
            AuthMode::Jwt if config.auth.is_none() => {
                self.err(
                    &at,
                    format!(
                        "route `{}` uses jwt but there is no `auth` section",
                        r.name.value
                    ),
                );
                return None;
            }
            // A broken auth section was already reported; don't pile on.
            AuthMode::Jwt if auth.is_none() => return None,
            AuthMode::MetaSignature
                if auth.is_some_and(|a| a.meta.is_none()) || config.auth.is_none() =>
            {
                self.err(
                    &at,
                    format!(
                        "route `{}` uses meta_signature but auth.meta_webhook is not configured",
                        r.name.value
                    ),
                );
                return None;
            }
            AuthMode::None | AuthMode::MetaSignature if needs_policy => {
                self.err(
                    &at,
                    format!("route `{}`: permission, mfa_max_age, scope, row_filter, owner_check, message_filter and redaction need an authenticated caller (auth: jwt)", r.name.value),
                );
                return None;
            }
            _ => {}
        }
        Some(mode)
    }

    /// An upstream's `method_override_params`: `_method` unless set. A bad
    /// name is reported and left out.
    fn override_params(&mut self, upstream: &str, raw: Option<&[Str]>) -> Vec<String> {
        let Some(raw) = raw else {
            return vec![DEFAULT_OVERRIDE_PARAM.to_string()];
        };
        let mut out: Vec<String> = Vec::new();
        for p in raw {
            let name = p.value.as_str();
            let fine = !name.is_empty()
                && name.len() <= method_override::MAX_PARAM_LEN
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
            if !fine {
                self.err(
                    &p.referenced,
                    format!(
                        "upstream `{upstream}`: method_override_params: `{name}` is not a parameter name (letters, digits, `_`, `-`, `.`; at most {} bytes)",
                        method_override::MAX_PARAM_LEN
                    ),
                );
            } else if !out.iter().any(|o| o == name) {
                out.push(name.to_string());
            }
        }
        out
    }

    /// A route's `websocket`. The handshake is a GET; the stream's
    /// messages are filtered by `message_filter`, not `row_filter` (which
    /// reads lists), and only a WebSocket route has messages.
    fn websocket(&mut self, r: &RawRoute, methods: &MethodSet, mode: AuthMode) -> Option<bool> {
        let name = &r.name.value;
        let on = r.websocket.as_ref().is_some_and(|f| f.value);
        if !on {
            let stray = r
                .message_filter
                .as_ref()
                .map(|f| (f.object.referenced, "message_filter"))
                .or(r
                    .control_messages
                    .as_ref()
                    .map(|c| (c.referenced, "control_messages")))
                .or(r
                    .subscribe_as
                    .as_ref()
                    .and_then(|m| m.values().next())
                    .map(|v| (v.referenced, "subscribe_as")));
            if let Some((at, key)) = stray {
                self.err(
                    &at,
                    format!("route `{name}`: {key} applies to WebSocket messages: the route needs `websocket: true`"),
                );
                return None;
            }
            return Some(false);
        }
        let Some(flag) = &r.websocket else {
            return Some(false);
        };
        let problem = if !methods.contains(&Method::GET) {
            Some("a WebSocket handshake is a GET: add GET to `methods`")
        } else if r.row_filter.is_some() {
            Some("`row_filter` reads list answers; a WebSocket route's messages are filtered by `message_filter`")
        } else if mode == AuthMode::MetaSignature {
            Some("Meta's webhooks are signed POSTs, not WebSockets")
        } else {
            None
        };
        match problem {
            Some(why) => {
                self.err(
                    &flag.referenced,
                    format!("route `{name}`: websocket: {why}"),
                );
                None
            }
            None => Some(true),
        }
    }

    /// A WebSocket route's `subscribe_as`: identifier members and their
    /// values (text; a value the upstream must not leak, like a token, is
    /// searched for in its messages from then on).
    fn subscribe_as(&mut self, r: &RawRoute) -> Option<Option<SubscribeAs>> {
        let Some(members) = &r.subscribe_as else {
            return Some(None);
        };
        let name = &r.name.value;
        let mut out = Vec::with_capacity(members.len());
        for (member, value) in members {
            let text = self.string(value)?;
            let fine = !member.is_empty()
                && member
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !fine || text.is_empty() {
                self.err(
                    &value.referenced,
                    format!("route `{name}`: subscribe_as sets identifier members by name (`pubsub_token`) to non-empty text, not `{member}: {}`", value.value),
                );
                return None;
            }
            out.push((member.clone(), text));
        }
        if out.is_empty() {
            return Some(None);
        }
        Some(Some(SubscribeAs { members: out }))
    }

    /// A WebSocket route's `control_messages`: a top-level member name.
    fn control_messages(&mut self, r: &RawRoute) -> Option<Option<Box<str>>> {
        let Some(member) = &r.control_messages else {
            return Some(None);
        };
        let fine = !member.value.is_empty()
            && member
                .value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !fine {
            self.err(
                &member.referenced,
                format!(
                    "route `{}`: control_messages names the top-level member that marks the protocol's own messages (`type`), not `{}`",
                    r.name.value, member.value
                ),
            );
            return None;
        }
        Some(Some(member.value.as_str().into()))
    }

    pub(super) fn methods(&mut self, raw: &[Str]) -> Option<MethodSet> {
        if raw.is_empty() || raw.iter().any(|m| m.value == "*") {
            return Some(MethodSet::Any);
        }
        let mut out = Vec::new();
        for m in raw {
            let upper = m.value.to_ascii_uppercase();
            match Method::from_bytes(upper.as_bytes()) {
                Ok(method) if upper == m.value && never_routed(&method) => {
                    self.err(
                        &m.referenced,
                        format!(
                            "{} is never routed: TRACE and TRACK echo the request, injected credentials included, and CONNECT asks for a tunnel",
                            m.value
                        ),
                    );
                    return None;
                }
                Ok(method) if upper == m.value => out.push(method),
                _ => {
                    self.err(
                        &m.referenced,
                        format!(
                            "`{}` is not an HTTP method (use upper case, e.g. GET)",
                            m.value
                        ),
                    );
                    return None;
                }
            }
        }
        Some(MethodSet::Only(out))
    }

    fn audit(&mut self, raw: &RawConfig) -> AuditSettings {
        let a = &raw.audit;
        let path = match self.string(&a.path) {
            Some(p) if p == "-" => None,
            Some(p) => Some(self.resolve_path(&p)),
            None => None,
        };
        let fail_closed = match a.on_overflow.as_ref().map(|s| s.value.as_str()) {
            None | Some("backpressure") => false,
            Some("fail_closed") => true,
            Some(other) => {
                let at = a
                    .on_overflow
                    .as_ref()
                    .map(|s| s.referenced)
                    .unwrap_or(Location::UNKNOWN);
                self.err(
                    &at,
                    format!("audit.on_overflow `{other}` must be backpressure or fail_closed"),
                );
                false
            }
        };
        let queue = match &a.queue {
            Some(q) if q.value == 0 => {
                self.err(&q.referenced, "audit.queue must be at least 1".to_string());
                8192
            }
            Some(q) => q.value as usize,
            None => 8192,
        };
        let (rotate_max_size, rotate_keep) = match &a.rotate {
            Some(r) => {
                let size = match parse_size(&r.max_size.value) {
                    Ok(s) => Some(s),
                    Err(msg) => {
                        self.err(&r.max_size.referenced, msg);
                        None
                    }
                };
                (size, r.keep.as_ref().map_or(10, |k| k.value as usize))
            }
            None => (None, 10),
        };
        if rotate_max_size.is_some() && path.is_none() {
            let at = a
                .rotate
                .as_ref()
                .map(|r| r.max_size.referenced)
                .unwrap_or(Location::UNKNOWN);
            self.err(
                &at,
                "audit.rotate needs audit.path to be a file, not stdout".to_string(),
            );
        }
        let signing = a.signing_key.as_ref().and_then(|key| {
            let signer = self.audit_signer(key)?;
            if !a.hash_chain {
                self.err(
                    &key.referenced,
                    "audit.signing_key signs the hash chain: set audit.hash_chain: true"
                        .to_string(),
                );
                return None;
            }
            let every = match &a.checkpoint_every {
                None => DEFAULT_CHECKPOINT_EVERY,
                Some(e) => match parse_duration(&e.value) {
                    Ok(d)
                        if d >= std::time::Duration::from_secs(1)
                            && d <= std::time::Duration::from_secs(3600) =>
                    {
                        d
                    }
                    Ok(_) => {
                        self.err(
                            &e.referenced,
                            "audit.checkpoint_every must be between 1s and 1h".to_string(),
                        );
                        return None;
                    }
                    Err(msg) => {
                        self.err(&e.referenced, format!("audit.checkpoint_every: {msg}"));
                        return None;
                    }
                },
            };
            Some(Signing {
                signer: Arc::new(signer),
                every,
            })
        });
        if let (Some(e), None) = (&a.checkpoint_every, &a.signing_key) {
            self.err(
                &e.referenced,
                "audit.checkpoint_every without audit.signing_key: nothing would be signed"
                    .to_string(),
            );
        }
        AuditSettings {
            path,
            hash_chain: a.hash_chain,
            fail_closed,
            queue,
            rotate_max_size,
            rotate_keep,
            signing,
        }
    }

    /// The Ed25519 key in the PEM file `f` (read as a source: a new key is
    /// a new config version).
    fn audit_signer(&mut self, f: &Str) -> Option<Signer> {
        let (path, pem) = self.read_named(f, "audit signing key")?;
        match Signer::from_pem(&pem) {
            Ok(s) => Some(s),
            Err(msg) => {
                self.err(&f.referenced, format!("{}: {msg}", path.display()));
                None
            }
        }
    }

    fn socket_addr(&mut self, s: &Str) -> Option<SocketAddr> {
        let text = self.string(s)?;
        match text.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.err(
                    &s.referenced,
                    format!("`{text}` is not an IP:port address (e.g. 0.0.0.0:8443 or [::]:8443)"),
                );
                None
            }
        }
    }

    fn certified_key(&mut self, cert: &Str, key: &Str) -> Option<Arc<CertifiedKey>> {
        let cert_text = self.string(cert)?;
        let cert_path = self.resolve_path(&cert_text);
        let key_text = self.string(key)?;
        let key_path = self.resolve_path(&key_text);
        let certs = match self.read_pem_certs(&cert_path) {
            Ok(c) => c,
            Err(msg) => {
                self.err(&cert.referenced, msg);
                return None;
            }
        };
        let key_der = match self.read_pem_key(&key_path) {
            Ok(k) => k,
            Err(msg) => {
                self.err(&key.referenced, msg);
                return None;
            }
        };
        pingora_core::tls::install_default_crypto_provider();
        let Some(provider) = CryptoProvider::get_default() else {
            self.err(
                &cert.referenced,
                "no TLS crypto provider is installed".to_string(),
            );
            return None;
        };
        match CertifiedKey::from_der(certs, key_der, provider) {
            Ok(k) => Some(Arc::new(k)),
            Err(e) => {
                self.err(
                    &key.referenced,
                    format!(
                        "{} does not fit {}: {e}",
                        key_path.display(),
                        cert_path.display()
                    ),
                );
                None
            }
        }
    }

    fn ca_bundle(&mut self, f: &Str) -> Option<Arc<[WrappedX509]>> {
        let (_, certs) = self.ca_certs(f)?;
        let out: Vec<_> = certs
            .iter()
            .map(|der| WrappedX509::new(der.as_ref().to_vec(), parse_x509))
            .collect();
        Some(Arc::from(out))
    }

    /// The CA certificates in the PEM file `f`, each one checked by rustls'
    /// root store (pingora's `WrappedX509` panics on DER it cannot parse,
    /// so only well-formed certificates get there).
    fn ca_certs(&mut self, f: &Str) -> Option<(RootCertStore, Vec<CertificateDer<'static>>)> {
        let text = self.string(f)?;
        let path = self.resolve_path(&text);
        let certs = match self.read_pem_certs(&path) {
            Ok(c) => c,
            Err(msg) => {
                self.err(&f.referenced, msg);
                return None;
            }
        };
        let mut roots = RootCertStore::empty();
        for der in &certs {
            if let Err(e) = roots.add(der.clone()) {
                self.err(
                    &f.referenced,
                    format!("{}: not a usable CA certificate: {e}", path.display()),
                );
                return None;
            }
        }
        Some((roots, certs))
    }

    /// Expand `${VAR}`s in a scalar, recording an error at its location.
    pub(super) fn string(&mut self, s: &Str) -> Option<String> {
        match expand(&s.value, self.env) {
            Ok(v) => Some(v),
            Err(msg) => {
                self.err(&s.referenced, msg);
                None
            }
        }
    }

    pub(super) fn resolve_path(&self, p: &str) -> PathBuf {
        let path = Path::new(p);
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base_dir.join(path)
        }
    }

    pub(super) fn err(&mut self, at: &Location, message: String) {
        let e = self.located(at, message);
        self.errors.push(e);
    }

    pub(super) fn located(&self, at: &Location, message: String) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            line: at.line(),
            column: at.column(),
            message,
        }
    }
}

/// `10.0.0.0/8`, `2001:db8::/32`, or a bare address (a /32 or /128).
/// Host bits set below the prefix are refused: `10.0.0.1/8` is almost
/// always a typo for something narrower.
pub fn parse_cidr(text: &str) -> Result<IpNetwork, String> {
    let net: IpNetwork = text
        .parse()
        .map_err(|_| format!("`{text}` is not a CIDR range (e.g. 10.0.0.0/8 or 2001:db8::/32)"))?;
    if net.network() != net.ip() {
        return Err(format!(
            "`{text}` has host bits set; did you mean {}/{}?",
            net.network(),
            net.prefix()
        ));
    }
    Ok(net)
}

impl Compiler<'_> {
    /// Reads a file the config names, and counts its bytes into the
    /// config's version.
    /// The file the scalar `f` names (read as a source), with its path; an
    /// error at `f` saying which `what` could not be read.
    fn read_named(&mut self, f: &Str, what: &str) -> Option<(PathBuf, Vec<u8>)> {
        let text = self.string(f)?;
        let path = self.resolve_path(&text);
        match self.read_source(&path) {
            Ok(bytes) => Some((path, bytes)),
            Err(e) => {
                self.err(
                    &f.referenced,
                    format!("cannot read {what} {}: {e}", path.display()),
                );
                None
            }
        }
    }

    pub(super) fn read_source(&mut self, path: &Path) -> std::io::Result<Vec<u8>> {
        let bytes = std::fs::read(path)?;
        count_source(self.sources.get_or_insert_with(Sha256::new), path, &bytes);
        self.files.push(path.to_path_buf());
        Ok(bytes)
    }

    pub(super) fn read_pem_certs(
        &mut self,
        path: &Path,
    ) -> Result<Vec<CertificateDer<'static>>, String> {
        let bytes = self
            .read_source(path)
            .map_err(|e| format!("cannot read certificate {}: {e}", path.display()))?;
        let certs: Result<Vec<_>, _> = rustls_pemfile::certs(&mut bytes.as_slice()).collect();
        match certs {
            Ok(c) if !c.is_empty() => Ok(c),
            Ok(_) => Err(format!("{} holds no PEM certificate", path.display())),
            Err(e) => Err(format!("{}: malformed PEM: {e}", path.display())),
        }
    }

    pub(super) fn read_pem_key(&mut self, path: &Path) -> Result<PrivateKeyDer<'static>, String> {
        let bytes = self
            .read_source(path)
            .map_err(|e| format!("cannot read private key {}: {e}", path.display()))?;
        match rustls_pemfile::private_key(&mut bytes.as_slice()) {
            Ok(Some(k)) => Ok(k),
            Ok(None) => Err(format!("{} holds no PEM private key", path.display())),
            Err(e) => Err(format!("{}: malformed PEM: {e}", path.display())),
        }
    }
}

fn pool_key(upstream: &str) -> u64 {
    let digest = Sha256::digest(upstream.as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(bytes)
}

/// serde-saphyr appends ` at line L, column C`; the location is already in
/// the `file:line:col` prefix.
fn strip_location_suffix(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}
