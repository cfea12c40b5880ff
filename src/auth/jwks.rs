//! The identity provider's key set, fetched over HTTPS and kept fresh.
//!
//! - [`JwksSource::fetch_initial`] at startup, so readiness can wait for
//!   keys.
//! - A refresh loop (a pingora [`BackgroundService`]) that honours
//!   `Cache-Control: max-age`, clamped to `[min_refresh, max_refresh]`
//!   (absent or unreadable → `default_refresh`; `no-cache`/`no-store` →
//!   `min_refresh`).
//! - [`JwksSource::request_refetch`] when a token names an unknown kid (the
//!   provider may have rotated): at most once per
//!   `unknown_kid_min_interval`, so junk kids cannot make us hammer the
//!   provider. It never blocks. [`JwksSource::refetch_and_wait`] lets a
//!   request that hit the unknown kid wait (bounded) for that refetch, or
//!   one already under way, and then verify again; when the rate limit
//!   says no, it returns at once and the request gets `token_invalid`.
//!   Both need the background loop running: it does the fetching.
//! - When the provider is down or serves junk (non-200, bad JSON, no
//!   usable key, oversized), the last good set stays and a warning is
//!   logged; successes and failures are counted for /metrics.
//!
//! Only `https://` URLs are accepted, except `http://` to a loopback host
//! (tests, a sidecar). No redirects are followed: the configured URL is the
//! one trusted.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use reqwest::header::{ACCEPT, CACHE_CONTROL};
use reqwest::{Client, StatusCode, Url};
use sha2::{Digest, Sha256};
use tokio::sync::{watch, Notify};

use super::keys::{KeyError, KeySet, KeyStore};

/// Refresh and fetch limits.
#[derive(Debug, Clone)]
pub struct JwksOptions {
    /// Floor for `max-age`, and the retry interval after a failure once
    /// keys are loaded.
    pub min_refresh: Duration,
    /// Ceiling for `max-age`.
    pub max_refresh: Duration,
    /// When the response says nothing usable about caching.
    pub default_refresh: Duration,
    /// At most one unknown-kid refetch per this interval.
    pub unknown_kid_min_interval: Duration,
    /// Whole-request timeout (connect, headers and body).
    pub timeout: Duration,
    /// Larger responses are refused.
    pub max_bytes: usize,
}

impl Default for JwksOptions {
    fn default() -> Self {
        JwksOptions {
            min_refresh: Duration::from_secs(60),
            max_refresh: Duration::from_secs(24 * 3600),
            default_refresh: Duration::from_secs(600),
            unknown_kid_min_interval: Duration::from_secs(30),
            timeout: Duration::from_secs(10),
            max_bytes: 1024 * 1024,
        }
    }
}

/// Fetches one JWKS URL into a [`KeyStore`].
pub struct JwksSource {
    url: Url,
    /// scheme://host/path: what logs show (no query, no credentials).
    shown_url: String,
    client: Client,
    options: JwksOptions,
    store: Arc<KeyStore>,
    wake: Notify,
    completed: watch::Sender<Completion>,
    fetching: AtomicBool,
    last_refetch: Mutex<Option<Instant>>,
    state: Mutex<FetchState>,
    counters: Counters,
}

/// Counters for /metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JwksStats {
    pub fetch_successes: u64,
    pub fetch_failures: u64,
    /// Unknown-kid refetches started.
    pub refetches: u64,
    /// Unknown-kid refetches refused by the rate limit.
    pub refetches_rate_limited: u64,
    /// When keys were last fetched successfully (Unix seconds).
    pub last_success_unix: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("JWKS URL is invalid: {0}")]
    InvalidUrl(String),
    #[error("JWKS URL must be https (http only to a loopback host)")]
    InsecureUrl,
    #[error("HTTP client could not be built: {0}")]
    Client(String),
    #[error("JWKS request failed: {0}")]
    Transport(String),
    #[error("JWKS endpoint answered HTTP {0}")]
    Status(u16),
    #[error("JWKS response is larger than {max} bytes")]
    TooLarge { max: usize },
    #[error(transparent)]
    Keys(#[from] KeyError),
}

#[derive(Debug, Clone, Copy, Default)]
struct Completion {
    count: u64,
    ok: bool,
}

struct FetchState {
    next_delay: Duration,
    failures_in_row: u32,
    /// SHA-256 of the last installed document: an unchanged document is
    /// not reinstalled, so the verified-token cache survives routine
    /// refreshes.
    fingerprint: Option<[u8; 32]>,
}

#[derive(Default)]
struct Counters {
    successes: AtomicU64,
    failures: AtomicU64,
    refetches: AtomicU64,
    rate_limited: AtomicU64,
    /// 0 = never.
    last_success_unix: AtomicI64,
}

impl JwksSource {
    pub fn new(
        url: &str,
        store: Arc<KeyStore>,
        options: JwksOptions,
    ) -> Result<JwksSource, JwksError> {
        let url = check_url(url)?;
        let client = Client::builder()
            .timeout(options.timeout)
            .connect_timeout(options.timeout.min(Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none())
            .https_only(url.scheme() == "https")
            .user_agent(concat!("chatwarden/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| JwksError::Client(e.without_url().to_string()))?;
        let shown_url = format!(
            "{}://{}{}",
            url.scheme(),
            url.host_str().unwrap_or_default(),
            url.path()
        );
        Ok(JwksSource {
            url,
            shown_url,
            client,
            options,
            store,
            wake: Notify::new(),
            completed: watch::Sender::new(Completion::default()),
            fetching: AtomicBool::new(false),
            last_refetch: Mutex::new(None),
            state: Mutex::new(FetchState {
                next_delay: Duration::ZERO,
                failures_in_row: 0,
                fingerprint: None,
            }),
            counters: Counters::default(),
        })
    }

    /// The first fetch, awaited at startup; readiness can wait for it. On
    /// failure the refresh loop keeps retrying with backoff.
    pub async fn fetch_initial(&self) -> Result<(), JwksError> {
        self.refresh().await
    }

    /// Fetch now and install the keys if they are good; on failure the
    /// last good set stays.
    pub async fn refresh(&self) -> Result<(), JwksError> {
        let fetching = FetchingFlag::raise(&self.fetching);
        let result = self.fetch_and_install().await;
        drop(fetching);
        let outcome = match result {
            Ok(ttl) => {
                self.counters.successes.fetch_add(1, Ordering::Relaxed);
                self.counters
                    .last_success_unix
                    .store(unix_now(), Ordering::Relaxed);
                let mut state = self.lock_state();
                state.failures_in_row = 0;
                state.next_delay = ttl;
                Ok(())
            }
            Err(e) => {
                self.counters.failures.fetch_add(1, Ordering::Relaxed);
                let mut state = self.lock_state();
                state.failures_in_row = state.failures_in_row.saturating_add(1);
                state.next_delay = self.retry_delay(state.failures_in_row);
                tracing::warn!(
                    url = %self.shown_url,
                    error = %e,
                    retry_in_s = state.next_delay.as_secs(),
                    "JWKS fetch failed; keeping the last good key set"
                );
                Err(e)
            }
        };
        self.completed.send_modify(|c| {
            c.count += 1;
            c.ok = outcome.is_ok();
        });
        outcome
    }

    /// Ask for a refetch because a token named an unknown kid. Returns
    /// whether one was scheduled (false: rate limited). Never blocks.
    pub fn request_refetch(&self) -> bool {
        let now = Instant::now();
        {
            let mut last = self
                .last_refetch
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if last.is_some_and(|t| now.duration_since(t) < self.options.unknown_kid_min_interval) {
                self.counters.rate_limited.fetch_add(1, Ordering::Relaxed);
                return false;
            }
            *last = Some(now);
        }
        self.counters.refetches.fetch_add(1, Ordering::Relaxed);
        self.wake.notify_one();
        true
    }

    /// Request a refetch (rate limited) and wait up to `wait` for it, or
    /// for one already under way. True when a fetch succeeded in that
    /// time: the caller should verify the token again. False at once when
    /// no refetch is allowed or running.
    pub async fn refetch_and_wait(&self, wait: Duration) -> bool {
        let mut done = self.completed.subscribe();
        let seen = done.borrow_and_update().count;
        if !self.request_refetch() && !self.fetching.load(Ordering::Acquire) {
            return false;
        }
        let finished = tokio::time::timeout(wait, done.wait_for(|c| c.count > seen)).await;
        let succeeded = matches!(finished, Ok(Ok(ref c)) if c.ok);
        succeeded
    }

    /// Whether keys have been fetched at least once.
    pub fn is_ready(&self) -> bool {
        self.counters.successes.load(Ordering::Relaxed) > 0
    }

    pub fn stats(&self) -> JwksStats {
        let last = self.counters.last_success_unix.load(Ordering::Relaxed);
        JwksStats {
            fetch_successes: self.counters.successes.load(Ordering::Relaxed),
            fetch_failures: self.counters.failures.load(Ordering::Relaxed),
            refetches: self.counters.refetches.load(Ordering::Relaxed),
            refetches_rate_limited: self.counters.rate_limited.load(Ordering::Relaxed),
            last_success_unix: (last != 0).then_some(last),
        }
    }

    pub fn store(&self) -> &Arc<KeyStore> {
        &self.store
    }

    async fn fetch_and_install(&self) -> Result<Duration, JwksError> {
        let (body, ttl) = self.fetch().await?;
        let fingerprint: [u8; 32] = Sha256::digest(&body).into();
        if self.lock_state().fingerprint == Some(fingerprint) {
            return Ok(ttl);
        }
        let set = KeySet::from_jwks_json(&body)?;
        self.store.replace_remote(&set);
        self.lock_state().fingerprint = Some(fingerprint);
        tracing::info!(url = %self.shown_url, keys = set.len(), refresh_in_s = ttl.as_secs(), "JWKS loaded");
        Ok(ttl)
    }

    async fn fetch(&self) -> Result<(Vec<u8>, Duration), JwksError> {
        let transport = |e: reqwest::Error| JwksError::Transport(e.without_url().to_string());
        let mut response = self
            .client
            .get(self.url.clone())
            .header(ACCEPT, "application/jwk-set+json, application/json")
            .send()
            .await
            .map_err(transport)?;
        if response.status() != StatusCode::OK {
            return Err(JwksError::Status(response.status().as_u16()));
        }
        let max = self.options.max_bytes;
        if response.content_length().is_some_and(|n| n > max as u64) {
            return Err(JwksError::TooLarge { max });
        }
        let ttl = refresh_interval(
            response
                .headers()
                .get(CACHE_CONTROL)
                .and_then(|v| v.to_str().ok()),
            &self.options,
        );
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            if body.len() + chunk.len() > max {
                return Err(JwksError::TooLarge { max });
            }
            body.extend_from_slice(&chunk);
        }
        Ok((body, ttl))
    }

    /// Before any success: quick retries (1 s, 2 s, 4 s … up to
    /// `min_refresh`) so startup recovers fast. After: every `min_refresh`.
    fn retry_delay(&self, failures_in_row: u32) -> Duration {
        if self.is_ready() {
            return self.options.min_refresh;
        }
        let exp = failures_in_row.saturating_sub(1).min(16);
        Duration::from_secs(1u64 << exp).min(self.options.min_refresh)
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, FetchState> {
        // Each critical section is a few field writes; a poisoned lock
        // still holds consistent values.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl BackgroundService for JwksSource {
    /// Refresh when the current set is due, or at once on a refetch
    /// request, until shutdown.
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            let delay = self.lock_state().next_delay;
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = self.wake.notified() => {}
                () = shutdown_requested(&mut shutdown) => return,
            }
            tokio::select! {
                // Failures are counted and logged inside.
                _ = self.refresh() => {}
                () = shutdown_requested(&mut shutdown) => return,
            }
        }
    }
}

impl std::fmt::Debug for JwksSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksSource")
            .field("url", &self.shown_url)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// How long to keep a fetched JWKS, from its `Cache-Control`.
pub fn refresh_interval(cache_control: Option<&str>, options: &JwksOptions) -> Duration {
    let Some(value) = cache_control else {
        return options.default_refresh;
    };
    let mut max_age = None;
    for directive in value.split(',') {
        let directive = directive.trim();
        let (name, arg) = match directive.split_once('=') {
            Some((n, a)) => (n.trim(), Some(a.trim().trim_matches('"'))),
            None => (directive, None),
        };
        if name.eq_ignore_ascii_case("no-store") || name.eq_ignore_ascii_case("no-cache") {
            return options.min_refresh;
        }
        if name.eq_ignore_ascii_case("max-age") && max_age.is_none() {
            max_age = Some(arg.and_then(|a| a.parse::<u64>().ok()));
        }
    }
    match max_age {
        Some(Some(secs)) => {
            Duration::from_secs(secs).clamp(options.min_refresh, options.max_refresh)
        }
        _ => options.default_refresh,
    }
}

fn check_url(raw: &str) -> Result<Url, JwksError> {
    let url = Url::parse(raw).map_err(|e| JwksError::InvalidUrl(e.to_string()))?;
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback(&url) => Ok(url),
        "http" => Err(JwksError::InsecureUrl),
        _ => Err(JwksError::InvalidUrl("scheme must be https".to_string())),
    }
}

fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Marks a fetch under way; lowered on drop, so a fetch cancelled at
/// shutdown does not leave waiters believing one is still running.
struct FetchingFlag<'a>(&'a AtomicBool);

impl<'a> FetchingFlag<'a> {
    fn raise(flag: &'a AtomicBool) -> FetchingFlag<'a> {
        flag.store(true, Ordering::Release);
        FetchingFlag(flag)
    }
}

impl Drop for FetchingFlag<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

async fn shutdown_requested(shutdown: &mut ShutdownWatch) {
    while !*shutdown.borrow_and_update() {
        if shutdown.changed().await.is_err() {
            return;
        }
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::net::SocketAddr;
    use std::sync::atomic::AtomicUsize;

    use bytes::Bytes;
    use http_body_util::Full;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    use jsonwebtoken::Algorithm;
    use tokio::task::{JoinHandle, JoinSet};

    use super::*;
    use crate::auth::testkit::{self, TestKey, NOW};
    use crate::auth::{AuthError, Verifier};

    #[derive(Clone)]
    struct Reply {
        status: u16,
        body: String,
        cache_control: Option<String>,
    }

    /// An identity provider on 127.0.0.1:0 whose answer can change
    /// mid-test, counting requests.
    struct Idp {
        addr: SocketAddr,
        reply: Arc<Mutex<Reply>>,
        hits: Arc<AtomicUsize>,
        task: JoinHandle<()>,
    }

    impl Idp {
        async fn start(body: String) -> Idp {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .unwrap_or_else(|e| panic!("bind: {e}"));
            let addr = listener
                .local_addr()
                .unwrap_or_else(|e| panic!("addr: {e}"));
            let reply = Arc::new(Mutex::new(Reply {
                status: 200,
                body,
                cache_control: Some("max-age=600".into()),
            }));
            let hits = Arc::new(AtomicUsize::new(0));
            let (r, h) = (reply.clone(), hits.clone());
            let task = tokio::spawn(async move {
                // Connections live in this set: aborting the task drops
                // them too, so "down" really is down.
                let mut connections = JoinSet::new();
                while let Ok((stream, _)) = listener.accept().await {
                    let (r, h) = (r.clone(), h.clone());
                    connections.spawn(async move {
                        let service = service_fn(move |_req| {
                            h.fetch_add(1, Ordering::SeqCst);
                            let reply = r.lock().unwrap_or_else(PoisonError::into_inner).clone();
                            async move {
                                let mut b = hyper::Response::builder().status(reply.status);
                                if let Some(cc) = reply.cache_control {
                                    b = b.header("cache-control", cc);
                                }
                                Ok::<_, Infallible>(
                                    b.body(Full::new(Bytes::from(reply.body)))
                                        .unwrap_or_else(|e| panic!("response: {e}")),
                                )
                            }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
            Idp {
                addr,
                reply,
                hits,
                task,
            }
        }

        fn url(&self) -> String {
            format!("http://{}/jwks.json", self.addr)
        }

        fn serve(&self, status: u16, body: String) {
            let mut r = self.reply.lock().unwrap_or_else(PoisonError::into_inner);
            r.status = status;
            r.body = body;
        }

        fn hits(&self) -> usize {
            self.hits.load(Ordering::SeqCst)
        }
    }

    fn options() -> JwksOptions {
        JwksOptions {
            unknown_kid_min_interval: Duration::from_secs(3600),
            timeout: Duration::from_secs(5),
            ..JwksOptions::default()
        }
    }

    fn source(idp: &Idp, options: JwksOptions) -> Arc<JwksSource> {
        let store = Arc::new(KeyStore::new(KeySet::new()));
        Arc::new(
            JwksSource::new(&idp.url(), store, options).unwrap_or_else(|e| panic!("source: {e}")),
        )
    }

    fn verifier(src: &JwksSource) -> Verifier {
        Verifier::new(
            testkit::settings(vec![Algorithm::ES256]),
            src.store().clone(),
        )
        .unwrap_or_else(|e| panic!("verifier: {e}"))
    }

    fn run_loop(src: &Arc<JwksSource>) -> (watch::Sender<bool>, JoinHandle<()>) {
        let (stop, watch) = watch::channel(false);
        let s = src.clone();
        (stop, tokio::spawn(async move { s.start(watch).await }))
    }

    fn token(key: &TestKey) -> String {
        testkit::token(key, testkit::claims())
    }

    #[tokio::test]
    async fn initial_fetch_loads_keys() {
        let k1 = testkit::es256("k1");
        let idp = Idp::start(testkit::jwks(&[&k1])).await;
        let src = source(&idp, options());
        assert!(!src.is_ready(), "not ready before the first fetch");
        src.fetch_initial()
            .await
            .unwrap_or_else(|e| panic!("initial fetch should succeed: {e}"));
        assert!(src.is_ready());
        assert!(
            verifier(&src).verify(&token(&k1), NOW).is_ok(),
            "a token from the fetched key should verify"
        );
        let stats = src.stats();
        assert_eq!((stats.fetch_successes, stats.fetch_failures), (1, 0));
        assert!(stats.last_success_unix.is_some());
    }

    #[tokio::test]
    async fn rotation_is_picked_up_by_an_unknown_kid_refetch_once_per_interval() {
        let k1 = testkit::es256("k1");
        let k2 = testkit::es256("k2");
        let idp = Idp::start(testkit::jwks(&[&k1])).await;
        let src = source(&idp, options());
        src.fetch_initial().await.unwrap_or_else(|e| panic!("{e}"));
        let (stop, service) = run_loop(&src);
        let v = verifier(&src);

        idp.serve(200, testkit::jwks(&[&k1, &k2]));
        let e = v.verify(&token(&k2), NOW).map(|_| ());
        assert_eq!(
            e,
            Err(AuthError::UnknownKid),
            "the new kid is unknown until a refetch"
        );
        assert!(
            src.refetch_and_wait(Duration::from_secs(5)).await,
            "the unknown-kid refetch should run and succeed"
        );
        assert!(
            v.verify(&token(&k2), NOW).is_ok(),
            "after the refetch the rotated key verifies"
        );
        assert_eq!(idp.hits(), 2, "one initial fetch and one refetch");

        let junk_kid = testkit::es256("k3");
        assert_eq!(
            v.verify(&token(&junk_kid), NOW).map(|_| ()),
            Err(AuthError::UnknownKid)
        );
        assert!(
            !src.refetch_and_wait(Duration::from_secs(5)).await,
            "a second unknown kid within the interval must not refetch"
        );
        assert!(!src.request_refetch(), "still rate limited");
        assert_eq!(
            idp.hits(),
            2,
            "the identity provider should not have been asked again"
        );
        assert_eq!(src.stats().refetches, 1);
        assert_eq!(src.stats().refetches_rate_limited, 2);

        assert!(stop.send(true).is_ok());
        assert!(service.await.is_ok(), "the loop should stop on shutdown");
    }

    #[tokio::test]
    async fn refetch_is_allowed_again_after_the_interval() {
        let k1 = testkit::es256("k1");
        let idp = Idp::start(testkit::jwks(&[&k1])).await;
        let src = source(
            &idp,
            JwksOptions {
                unknown_kid_min_interval: Duration::ZERO,
                ..options()
            },
        );
        let (stop, _service) = run_loop(&src);
        assert!(src.refetch_and_wait(Duration::from_secs(5)).await);
        assert!(
            src.refetch_and_wait(Duration::from_secs(5)).await,
            "with a zero interval every request may refetch"
        );
        assert!(idp.hits() >= 2);
        let _ = stop.send(true);
    }

    #[tokio::test]
    async fn provider_down_keeps_the_last_good_set() {
        let k1 = testkit::es256("k1");
        let idp = Idp::start(testkit::jwks(&[&k1])).await;
        let src = source(&idp, options());
        src.fetch_initial().await.unwrap_or_else(|e| panic!("{e}"));
        idp.task.abort();
        let _ = (&mut { idp.task }).await;
        let err = src.refresh().await;
        assert!(
            matches!(err, Err(JwksError::Transport(_))),
            "a down provider is a transport error, got {err:?}"
        );
        assert!(
            verifier(&src).verify(&token(&k1), NOW).is_ok(),
            "the last good keys must still verify"
        );
        assert_eq!(src.stats().fetch_failures, 1);
        assert!(
            src.is_ready(),
            "a failure after success does not unready the source"
        );
    }

    #[tokio::test]
    async fn junk_responses_keep_the_last_good_set() {
        let k1 = testkit::es256("k1");
        let idp = Idp::start(testkit::jwks(&[&k1])).await;
        let src = source(
            &idp,
            JwksOptions {
                max_bytes: 4096,
                ..options()
            },
        );
        src.fetch_initial().await.unwrap_or_else(|e| panic!("{e}"));
        let generation = src.store().generation();
        let cases: [(u16, String, &str); 5] = [
            (200, "<html>oops</html>".into(), "bad JSON"),
            (500, testkit::jwks(&[&k1]), "non-200"),
            (302, String::new(), "a redirect"),
            (
                200,
                r#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#.into(),
                "no usable keys",
            ),
            (
                200,
                format!(r#"{{"keys":[],"pad":"{}"}}"#, "x".repeat(5000)),
                "oversized",
            ),
        ];
        for (status, body, what) in cases {
            idp.serve(status, body);
            assert!(
                src.refresh().await.is_err(),
                "{what} should be a failed fetch"
            );
            assert_eq!(
                src.store().generation(),
                generation,
                "{what} must not replace the keys"
            );
            assert!(
                verifier(&src).verify(&token(&k1), NOW).is_ok(),
                "after {what} the last good key still verifies"
            );
        }
        assert_eq!(src.stats().fetch_failures, 5);
    }

    #[tokio::test]
    async fn an_unchanged_document_is_not_reinstalled() {
        let k1 = testkit::es256("k1");
        let idp = Idp::start(testkit::jwks(&[&k1])).await;
        let src = source(&idp, options());
        src.fetch_initial().await.unwrap_or_else(|e| panic!("{e}"));
        let generation = src.store().generation();
        src.refresh().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            src.store().generation(),
            generation,
            "same bytes, same keys: the cache should survive"
        );
        assert_eq!(src.stats().fetch_successes, 2);
    }

    #[test]
    fn cache_control_is_parsed_and_clamped() {
        let o = JwksOptions::default();
        let secs = |h: Option<&str>| refresh_interval(h, &o).as_secs();
        assert_eq!(secs(None), 600, "no header → default");
        assert_eq!(secs(Some("public, max-age=3600")), 3600);
        assert_eq!(
            secs(Some("MAX-AGE=\"7200\"")),
            7200,
            "case-insensitive, quoted value"
        );
        assert_eq!(secs(Some("max-age=5")), 60, "clamped up to min_refresh");
        assert_eq!(
            secs(Some("max-age=9999999")),
            86400,
            "clamped down to max_refresh"
        );
        assert_eq!(secs(Some("max-age=soon")), 600, "unreadable → default");
        assert_eq!(secs(Some("max-age=-1")), 600, "negative → default");
        assert_eq!(secs(Some("private")), 600, "no max-age → default");
        assert_eq!(
            secs(Some("no-cache, max-age=3600")),
            60,
            "no-cache → min_refresh"
        );
        assert_eq!(
            secs(Some("max-age=3600, no-store")),
            60,
            "no-store → min_refresh"
        );
        assert_eq!(
            secs(Some("max-age=120, max-age=7200")),
            120,
            "the first max-age counts"
        );
    }

    #[test]
    fn only_https_or_loopback_http_urls_are_accepted() {
        let store = Arc::new(KeyStore::new(KeySet::new()));
        let make = |u: &str| JwksSource::new(u, store.clone(), JwksOptions::default()).map(|_| ());
        assert!(make("https://idp.example/jwks").is_ok());
        assert!(make("http://127.0.0.1:8080/jwks").is_ok());
        assert!(make("http://localhost/jwks").is_ok());
        assert!(make("http://[::1]:9/jwks").is_ok());
        assert!(matches!(
            make("http://idp.example/jwks"),
            Err(JwksError::InsecureUrl)
        ));
        assert!(matches!(
            make("http://127.0.0.1.evil.example/jwks"),
            Err(JwksError::InsecureUrl)
        ));
        assert!(matches!(
            make("file:///etc/passwd"),
            Err(JwksError::InvalidUrl(_))
        ));
        assert!(matches!(make("not a url"), Err(JwksError::InvalidUrl(_))));
    }
}
