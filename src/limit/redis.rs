//! The shared rate-limit store: counters in Redis, checked by one atomic
//! script (see `script`), over a small RESP client (see `resp`), in plain
//! text or over TLS (`rediss://`, see `tls`).
//!
//! Connections are pooled per thread: pingora runs one single-threaded
//! runtime per worker, and a socket must be used from the runtime whose
//! reactor it registered with, or its wake-ups wait for another worker.
//! A connection in doubt (a timeout, an I/O error, a reply that makes no
//! sense) is dropped, never pooled. After a failure the store rests for a
//! moment ([`Cooldown`]): requests then skip Redis at once instead of each
//! waiting out a timeout against a server that is down.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use percent_encoding::percent_decode_str;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::resp::{self, ProtocolError, Reply};
use super::script::{self, ReplyError, ScriptVerdict, GCRA_SCRIPT};
use super::tls::{self, RedisTls};
use super::RateLimit;

/// Where Redis is, from `redis://[[user]:password@]host[:port][/db]`,
/// `rediss://…` (the same over TLS) or `unix:///path/to/redis.sock[?db=N]`.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisTarget {
    pub addr: RedisAddr,
    pub username: Option<String>,
    pub password: Option<String>,
    pub db: u32,
    /// `rediss://`: TLS, with the certificate checked against the host.
    pub tls: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisAddr {
    Tcp { host: String, port: u16 },
    Unix(std::path::PathBuf),
}

/// Why a Redis URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("Redis url must start with redis://, rediss:// (TLS) or unix://")]
    Scheme,
    #[error("Redis url has no host")]
    NoHost,
    #[error("Redis url port `{0}` is not a port number")]
    Port(String),
    #[error("Redis url database `{0}` is not a number (redis://host:6379/0)")]
    Db(String),
    #[error("Redis url has a query or fragment that is not understood: `{0}`")]
    Extra(String),
    #[error("Redis url is not valid UTF-8 once percent-decoded")]
    Encoding,
}

/// The settings of the shared store, as compiled from the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisSettings {
    pub target: RedisTarget,
    pub key_prefix: String,
    /// Longest a check may take, connecting (and the TLS handshake) included.
    pub timeout: Duration,
    /// How a `rediss://` server is checked and what this side shows it;
    /// `None` for `redis://` and `unix://`.
    pub tls: Option<RedisTls>,
}

/// Why the shared store gave no verdict (the caller falls back).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot connect to Redis: {0}")]
    Connect(std::io::Error),
    /// The handshake failed, the certificate was refused, or Redis
    /// refused ours (which TLS 1.3 reports on the first exchange).
    #[error("TLS with Redis failed: {0}")]
    Tls(std::io::Error),
    #[error("Redis connection failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("Redis closed the connection")]
    Closed,
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("Redis reply unreadable: {0}")]
    Protocol(#[from] ProtocolError),
    #[error("{0}")]
    Reply(#[from] ReplyError),
    #[error("Redis refused {0}: {1}")]
    Setup(&'static str, String),
    #[error("Redis is resting after a failure")]
    CoolingDown,
}

impl StoreError {
    /// The metrics label.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreError::Connect(_) => "connect",
            StoreError::Tls(_) => "tls",
            StoreError::Io(_) | StoreError::Closed => "io",
            StoreError::Timeout(_) => "timeout",
            StoreError::Protocol(_) | StoreError::Reply(_) | StoreError::Setup(..) => "reply",
            StoreError::CoolingDown => "cooling_down",
        }
    }
}

/// How long the store rests after a failure before trying Redis again.
pub const COOLDOWN: Duration = Duration::from_millis(500);
/// Idle connections kept, all threads together.
const MAX_IDLE: usize = 64;

/// A Lua script the store runs atomically by its SHA1 (`EVALSHA`),
/// loading it on a server that does not know it yet (`NOSCRIPT`). Scripts
/// are `static`s: the digest depends on the text alone, so one remembered
/// digest serves every store and server.
pub struct Script {
    source: &'static str,
    /// The digest, as Redis named it when the script was first loaded.
    sha: OnceLock<String>,
}

impl Script {
    pub const fn new(source: &'static str) -> Script {
        Script {
            source,
            sha: OnceLock::new(),
        }
    }

    pub fn source(&self) -> &'static str {
        self.source
    }
}

/// The rate-limit script.
static GCRA: Script = Script::new(GCRA_SCRIPT);

/// Counters shared by every replica that points at the same Redis: the
/// rate limits' (`check`) and the alert rules' (`crate::alert`), over one
/// pool of connections with one cooldown.
pub struct RedisStore {
    settings: RedisSettings,
    idle: Mutex<Vec<(ThreadId, Conn)>>,
    cooldown: Cooldown,
}

impl RedisStore {
    /// No I/O: connections are made on first use.
    pub fn new(settings: RedisSettings) -> RedisStore {
        RedisStore {
            settings,
            idle: Mutex::new(Vec::new()),
            cooldown: Cooldown::new(Instant::now()),
        }
    }

    pub fn settings(&self) -> &RedisSettings {
        &self.settings
    }

    /// Count one request of `raw_key` on `route` under `limit`.
    /// `Ok(Ok(()))` allowed, `Ok(Err(wait))` refused, `Err` no verdict
    /// (Redis down, slow or confused); never longer than the timeout.
    pub async fn check(
        &self,
        route: &str,
        limit: &RateLimit,
        raw_key: &str,
    ) -> Result<Result<(), Duration>, StoreError> {
        let key = script::redis_key(&self.settings.key_prefix, route, limit, raw_key);
        let (interval, burst) = script::script_args(limit);
        let verdict = self
            .eval(&GCRA, &key, &[interval.as_bytes(), burst.as_bytes()], |r| {
                script::verdict(r)
            })
            .await?;
        Ok(match verdict {
            ScriptVerdict::Allow => Ok(()),
            ScriptVerdict::Wait(wait) => Err(wait),
        })
    }

    /// Run `script` on one `key` with `args` and `read` its reply, within
    /// the store's timeout (connecting included). Skipped at once while the
    /// store rests after a failure; any failure (a reply `read` refuses
    /// too) starts such a rest.
    pub async fn eval<T>(
        &self,
        script: &Script,
        key: &[u8],
        args: &[&[u8]],
        read: impl Fn(&Reply) -> Result<T, ReplyError>,
    ) -> Result<T, StoreError> {
        let start = Instant::now();
        if !self.cooldown.ready(start) {
            return Err(StoreError::CoolingDown);
        }
        let timeout = self.settings.timeout;
        let run = async {
            let reply = self.run(script, key, args).await?;
            Ok(read(&reply)?)
        };
        let outcome = match tokio::time::timeout(timeout, run).await {
            Ok(r) => r,
            Err(_) => Err(StoreError::Timeout(timeout)),
        };
        if outcome.is_err() {
            self.cooldown.trip(Instant::now());
        }
        outcome
    }

    /// One script run on a pooled connection; a pooled connection that
    /// turns out dead (Redis restarted since) is replaced once.
    async fn run(&self, script: &Script, key: &[u8], args: &[&[u8]]) -> Result<Reply, StoreError> {
        let thread = std::thread::current().id();
        if let Some(mut conn) = self.take_idle(thread) {
            match evalsha(&mut conn, script, key, args).await {
                Ok(reply) => {
                    self.put_idle(thread, conn);
                    return Ok(reply);
                }
                Err(StoreError::Io(_) | StoreError::Closed) => {}
                Err(e) => return Err(e),
            }
        }
        let mut conn = Conn::open(&self.settings.target, self.settings.tls.as_ref()).await?;
        let reply = evalsha(&mut conn, script, key, args).await?;
        self.put_idle(thread, conn);
        Ok(reply)
    }

    fn take_idle(&self, thread: ThreadId) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let i = idle.iter().rposition(|(t, _)| *t == thread)?;
        Some(idle.swap_remove(i).1)
    }

    fn put_idle(&self, thread: ThreadId, conn: Conn) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < MAX_IDLE {
            idle.push((thread, conn));
        }
    }
}

impl RedisTarget {
    pub fn parse(url: &str) -> Result<RedisTarget, UrlError> {
        if let Some(rest) = url.strip_prefix("unix://") {
            let (path, db) = match rest.split_once('?') {
                Some((p, q)) => (p, Some(q)),
                None => (rest, None),
            };
            let db = match db {
                None => 0,
                Some(q) => match q.strip_prefix("db=") {
                    Some(n) => n.parse().map_err(|_| UrlError::Db(n.to_string()))?,
                    None => return Err(UrlError::Extra(q.to_string())),
                },
            };
            if path.is_empty() {
                return Err(UrlError::NoHost);
            }
            return Ok(RedisTarget {
                addr: RedisAddr::Unix(decode(path)?.into()),
                username: None,
                password: None,
                db,
                tls: false,
            });
        }
        let (rest, tls) = match url.strip_prefix("rediss://") {
            Some(rest) => (rest, true),
            None => (url.strip_prefix("redis://").ok_or(UrlError::Scheme)?, false),
        };
        if let Some(i) = rest.find(['?', '#']) {
            return Err(UrlError::Extra(rest[i..].to_string()));
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (username, password) = match userinfo {
            None => (None, None),
            Some(u) => match u.split_once(':') {
                Some((user, pass)) => (
                    Some(decode(user)?).filter(|s| !s.is_empty()),
                    Some(decode(pass)?),
                ),
                // `redis://secret@host` is the password alone, as redis-cli reads it.
                None => (None, Some(decode(u)?)),
            },
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or(UrlError::NoHost)?;
            match after {
                "" => (h, None),
                p => (h, Some(p.strip_prefix(':').ok_or(UrlError::NoHost)?)),
            }
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        if host.is_empty() {
            return Err(UrlError::NoHost);
        }
        let port = match port {
            None => 6379,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| UrlError::Port(p.to_string()))?,
        };
        let db = match path {
            "" => 0,
            n => n.parse().map_err(|_| UrlError::Db(n.to_string()))?,
        };
        Ok(RedisTarget {
            addr: RedisAddr::Tcp {
                host: host.to_string(),
                port,
            },
            username,
            password,
            db,
            tls,
        })
    }
}

/// Shown in logs and errors: never the password.
impl fmt::Display for RedisTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "rediss" } else { "redis" };
        match &self.addr {
            RedisAddr::Tcp { host, port } if host.contains(':') => {
                write!(f, "{scheme}://[{host}]:{port}/{}", self.db)
            }
            RedisAddr::Tcp { host, port } => write!(f, "{scheme}://{host}:{port}/{}", self.db),
            RedisAddr::Unix(p) => write!(f, "unix://{}?db={}", p.display(), self.db),
        }
    }
}

impl fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// After a failure, Redis is left alone for [`COOLDOWN`]; then one
/// request tries it again (and trips the cooldown again if it still fails).
/// Time is passed in, so this is tested without sleeping.
pub struct Cooldown {
    origin: Instant,
    /// Milliseconds after `origin` before which Redis is not tried.
    until_ms: AtomicU64,
}

impl Cooldown {
    pub fn new(origin: Instant) -> Cooldown {
        Cooldown {
            origin,
            until_ms: AtomicU64::new(0),
        }
    }

    pub fn ready(&self, now: Instant) -> bool {
        self.ms(now) >= self.until_ms.load(Ordering::Relaxed)
    }

    pub fn trip(&self, now: Instant) {
        let until = self.ms(now) + COOLDOWN.as_millis() as u64;
        self.until_ms.fetch_max(until, Ordering::Relaxed);
    }

    fn ms(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.origin).as_millis()).unwrap_or(u64::MAX)
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// One connection: the socket and the reply bytes read but not yet used.
struct Conn {
    io: Box<dyn Io>,
    buf: Vec<u8>,
    out: Vec<u8>,
}

/// Most reply bytes buffered before a reply is declared unreadable.
const MAX_BUFFERED: usize = 256 * 1024;

impl Conn {
    /// Connect (over TLS for `rediss://`), authenticate and select the
    /// database; the caller's timeout covers all of it.
    async fn open(target: &RedisTarget, tls: Option<&RedisTls>) -> Result<Conn, StoreError> {
        let io: Box<dyn Io> = match &target.addr {
            RedisAddr::Tcp { host, port } => {
                let s = tokio::net::TcpStream::connect((host.as_str(), *port))
                    .await
                    .map_err(StoreError::Connect)?;
                s.set_nodelay(true).map_err(StoreError::Connect)?;
                match (target.tls, tls) {
                    (false, _) => Box::new(s),
                    (true, Some(tls)) => {
                        Box::new(tls.handshake(host, s).await.map_err(StoreError::Tls)?)
                    }
                    // Never fall back to plain text for a rediss:// url.
                    (true, None) => {
                        return Err(StoreError::Tls(std::io::Error::other(
                            "rediss:// needs TLS settings (trusted CAs)",
                        )))
                    }
                }
            }
            RedisAddr::Unix(path) => Box::new(
                tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(StoreError::Connect)?,
            ),
        };
        let mut conn = Conn {
            io,
            buf: Vec::with_capacity(256),
            out: Vec::with_capacity(256),
        };
        if let Some(password) = &target.password {
            let reply = match &target.username {
                Some(user) => {
                    conn.call(&[b"AUTH", user.as_bytes(), password.as_bytes()])
                        .await?
                }
                None => conn.call(&[b"AUTH", password.as_bytes()]).await?,
            };
            expect_ok("AUTH", &reply)?;
        }
        if target.db != 0 {
            let db = target.db.to_string();
            let reply = conn.call(&[b"SELECT", db.as_bytes()]).await?;
            expect_ok("SELECT", &reply)?;
        }
        Ok(conn)
    }

    async fn call(&mut self, args: &[&[u8]]) -> Result<Reply, StoreError> {
        self.out.clear();
        resp::encode(args, &mut self.out);
        self.io.write_all(&self.out).await.map_err(io_failure)?;
        // TLS may hold the last record back until flushed.
        self.io.flush().await.map_err(io_failure)?;
        loop {
            if let Some((reply, used)) = resp::parse(&self.buf)? {
                self.buf.drain(..used);
                return Ok(reply);
            }
            if self.buf.len() > MAX_BUFFERED {
                return Err(ProtocolError::BadLength(self.buf.len() as i64).into());
            }
            let mut chunk = [0u8; 1024];
            let n = self.io.read(&mut chunk).await.map_err(io_failure)?;
            if n == 0 {
                return Err(StoreError::Closed);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// EVALSHA, loading the script first when Redis does not know it. A
/// `NOSCRIPT` error is handled here; any other reply goes to the caller.
async fn evalsha(
    conn: &mut Conn,
    script: &Script,
    key: &[u8],
    args: &[&[u8]],
) -> Result<Reply, StoreError> {
    if let Some(sha) = script.sha.get() {
        let reply = conn.call(&evalsha_command(sha, key, args)).await?;
        match &reply {
            Reply::Error(e) if e.starts_with("NOSCRIPT") => {}
            _ => return Ok(reply),
        }
    }
    let sha = match conn
        .call(&[b"SCRIPT", b"LOAD", script.source.as_bytes()])
        .await?
    {
        Reply::Bulk(Some(sha)) => String::from_utf8(sha)
            .map_err(|_| StoreError::Setup("SCRIPT LOAD", "a non-UTF-8 digest".into()))?,
        other => return Err(StoreError::Setup("SCRIPT LOAD", describe(&other))),
    };
    let reply = conn.call(&evalsha_command(&sha, key, args)).await?;
    let _ = script.sha.set(sha);
    Ok(reply)
}

fn evalsha_command<'a>(sha: &'a str, key: &'a [u8], args: &[&'a [u8]]) -> Vec<&'a [u8]> {
    let mut cmd: Vec<&[u8]> = Vec::with_capacity(4 + args.len());
    cmd.extend_from_slice(&[b"EVALSHA".as_slice(), sha.as_bytes(), b"1", key]);
    cmd.extend_from_slice(args);
    cmd
}

/// An I/O error on an open connection: TLS failures (an alert from Redis,
/// such as a refused client certificate) apart from the network's.
fn io_failure(e: std::io::Error) -> StoreError {
    if tls::is_tls_failure(&e) {
        StoreError::Tls(e)
    } else {
        StoreError::Io(e)
    }
}

fn expect_ok(what: &'static str, reply: &Reply) -> Result<(), StoreError> {
    match reply {
        Reply::Simple(s) if s == "OK" => Ok(()),
        other => Err(StoreError::Setup(what, describe(other))),
    }
}

/// A reply for an error message: errors as Redis wrote them, anything
/// else by its type only.
fn describe(reply: &Reply) -> String {
    match reply {
        Reply::Error(e) => e.clone(),
        Reply::Simple(_) => "a status line".into(),
        Reply::Integer(_) => "an integer".into(),
        Reply::Bulk(_) => "a bulk string".into(),
        Reply::Array(_) => "an array".into(),
    }
}

fn decode(s: &str) -> Result<String, UrlError> {
    percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| UrlError::Encoding)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(host: &str, port: u16) -> RedisAddr {
        RedisAddr::Tcp {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn urls_parse_into_targets() {
        let t = RedisTarget::parse("redis://redis.chatwarden.svc:6380/2").expect("plain");
        assert_eq!(t.addr, tcp("redis.chatwarden.svc", 6380));
        assert_eq!((t.db, t.username, t.password), (2, None, None));

        let t = RedisTarget::parse("redis://limiter:p%40ss@10.0.0.5").expect("acl user");
        assert_eq!(t.addr, tcp("10.0.0.5", 6379));
        assert_eq!(t.username.as_deref(), Some("limiter"));
        assert_eq!(t.password.as_deref(), Some("p@ss"), "percent-decoded");

        let t = RedisTarget::parse("redis://:s3cret@[::1]:7000/").expect("v6");
        assert_eq!(t.addr, tcp("::1", 7000));
        assert_eq!((t.username, t.password.as_deref()), (None, Some("s3cret")));

        let t = RedisTarget::parse("unix:///run/redis/redis.sock?db=3").expect("unix");
        assert_eq!(t.addr, RedisAddr::Unix("/run/redis/redis.sock".into()));
        assert_eq!(t.db, 3);
        assert!(!t.tls, "only rediss:// is TLS");
    }

    #[test]
    fn rediss_urls_are_the_same_shape_over_tls() {
        let t = RedisTarget::parse("rediss://cache.example.com").expect("bare host");
        assert_eq!(t.addr, tcp("cache.example.com", 6379), "the default port");
        assert_eq!((t.db, t.tls), (0, true));

        let t = RedisTarget::parse("rediss://limiter:p%40ss@10.0.0.5:6380/4").expect("all parts");
        assert_eq!(t.addr, tcp("10.0.0.5", 6380));
        assert_eq!(t.username.as_deref(), Some("limiter"));
        assert_eq!(t.password.as_deref(), Some("p@ss"));
        assert_eq!((t.db, t.tls), (4, true));

        let t = RedisTarget::parse("rediss://[::1]:7000").expect("v6");
        assert_eq!(t.addr, tcp("::1", 7000));

        assert!(!RedisTarget::parse("redis://cache").expect("plain").tls);
        for (url, want) in [
            ("rediss://", UrlError::NoHost),
            ("rediss://host:0", UrlError::Port("0".into())),
            ("rediss://host/x", UrlError::Db("x".into())),
            (
                "rediss://host?ssl_cert_reqs=none",
                UrlError::Extra("?ssl_cert_reqs=none".into()),
            ),
            ("redisss://host", UrlError::Scheme),
        ] {
            assert_eq!(RedisTarget::parse(url), Err(want), "{url}");
        }
    }

    #[test]
    fn bad_urls_say_why() {
        let cases = [
            ("http://host", UrlError::Scheme),
            ("redis://", UrlError::NoHost),
            ("redis://:pw@:6379", UrlError::NoHost),
            ("redis://host:port", UrlError::Port("port".into())),
            ("redis://host:0", UrlError::Port("0".into())),
            ("redis://host:70000", UrlError::Port("70000".into())),
            ("redis://host/zero", UrlError::Db("zero".into())),
            (
                "redis://host?timeout=1",
                UrlError::Extra("?timeout=1".into()),
            ),
            ("redis://[::1", UrlError::NoHost),
            ("unix://", UrlError::NoHost),
            ("unix:///s.sock?x=1", UrlError::Extra("x=1".into())),
        ];
        for (url, want) in cases {
            assert_eq!(RedisTarget::parse(url), Err(want), "{url}");
        }
    }

    #[test]
    fn targets_never_show_the_password() {
        let t = RedisTarget::parse("redis://u:hunter2@cache:6379/1").expect("url");
        for shown in [t.to_string(), format!("{t:?}")] {
            assert!(!shown.contains("hunter2"), "{shown}");
            assert_eq!(shown, "redis://cache:6379/1");
        }
        let t = RedisTarget::parse("rediss://:hunter2@[::1]").expect("url");
        assert_eq!(
            t.to_string(),
            "rediss://[::1]:6379/0",
            "the scheme says TLS"
        );
    }

    #[tokio::test]
    async fn a_rediss_target_never_falls_back_to_plain_text() {
        // A listener that would take plain text: without TLS settings the
        // store refuses before sending anything.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let target = RedisTarget::parse(&format!("rediss://{addr}")).expect("url");
        let outcome = Conn::open(&target, None).await;
        assert!(
            matches!(&outcome, Err(e) if e.kind() == "tls"),
            "refused as a TLS problem: {:?}",
            outcome.err()
        );
    }

    #[tokio::test]
    async fn the_timeout_covers_the_tls_handshake() {
        // A server that accepts and then says nothing: the ClientHello is
        // never answered.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let held = tokio::spawn(async move { listener.accept().await });
        let ca_key = rcgen::KeyPair::generate().expect("key");
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca.self_signed(&ca_key).expect("ca");
        let tls = RedisTls::new(tls::Trust::Only(vec![ca.der().clone()]), None).expect("tls");
        let timeout = Duration::from_millis(100);
        let store = RedisStore::new(RedisSettings {
            target: RedisTarget::parse(&format!("rediss://{addr}")).expect("url"),
            key_prefix: "t:".into(),
            timeout,
            tls: Some(tls),
        });
        let limit = RateLimit::new(crate::limit::LimitKey::Subject, Duration::from_secs(60), 1)
            .expect("limit");
        // Bounded here too, so that a regression fails instead of hanging.
        let outcome = tokio::time::timeout(
            Duration::from_secs(5),
            store.check("export", &limit, "priya"),
        )
        .await
        .expect("the check must not outlive its own timeout");
        assert!(
            matches!(outcome, Err(StoreError::Timeout(t)) if t == timeout),
            "a handshake that never completes is a timeout: {outcome:?}"
        );
        held.abort();
    }

    #[test]
    fn a_failure_rests_the_store_for_a_moment() {
        let t0 = Instant::now();
        let c = Cooldown::new(t0);
        assert!(c.ready(t0), "ready until something fails");
        c.trip(t0 + Duration::from_secs(1));
        assert!(!c.ready(t0 + Duration::from_secs(1)));
        assert!(!c.ready(t0 + Duration::from_secs(1) + COOLDOWN - Duration::from_millis(1)));
        assert!(c.ready(t0 + Duration::from_secs(1) + COOLDOWN));
        assert_eq!(
            StoreError::CoolingDown.kind(),
            "cooling_down",
            "skipped checks have their own metric label"
        );
    }
}
