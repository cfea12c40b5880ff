//! Wiring: one pingora `Server` with the gateway proxy on every configured
//! listener, the admin listener, and the audit writer as a background
//! service, so they all start and stop together.

use std::sync::Arc;

use pingora_core::listeners::tls::TlsSettings;
use pingora_core::listeners::{L4BufferSettings, ListenerConfig};
use pingora_core::server::configuration::{Opt, ServerConf};
use pingora_core::server::Server;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::{background_service, BackgroundService};
use pingora_core::services::listening::Service;
use pingora_core::tls::sign::CertifiedKey;
use pingora_core::tls::{ClientHello, ResolvesServerCert};
use thiserror::Error;

use crate::admin::AdminApp;
use crate::audit::{
    audit_channel, AuditOptions, AuditSink, AuditStats, AuditTarget, OverflowPolicy, RotateOptions,
};
use crate::auth::JwksSource;
use crate::config::{ConfigStore, Snapshot};
use crate::connection::{Guarded, Handshakes, Unrecorded};
use crate::metrics::Metrics;
use crate::proxy::Gateway;
use crate::proxy::ParserRefusals;
use crate::reload::{ReloadSource, Reloader};
use crate::revocation::RuntimeRevocations;

/// How the process runs pingora (not part of the policy file: these are
/// deployment choices that cannot change on reload).
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Worker threads for the proxy service.
    pub threads: usize,
    /// Run in the background (pingora's `-d`).
    pub daemon: bool,
    /// Take over the listening sockets of a running instance (pingora's
    /// `-u`, graceful upgrade).
    pub upgrade: bool,
    /// The file to re-read on `POST /reload` (none for the embedded demo).
    pub reload: Option<ReloadSource>,
    /// Also reload on SIGHUP (the process's own signal: only one server
    /// per process should ask for it).
    pub reload_on_sighup: bool,
    /// Also reload when the config file or a file it names changes,
    /// checked this often (`run --watch`).
    pub watch: Option<std::time::Duration>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            threads: std::thread::available_parallelism().map_or(1, usize::from),
            daemon: false,
            upgrade: false,
            reload: None,
            reload_on_sighup: false,
            watch: None,
        }
    }
}

#[derive(Debug, Error)]
pub enum StartError {
    #[error("the config has no listeners: add at least one under `listeners:`")]
    NoListeners,
    #[error("cannot open the audit sink: {0}")]
    Audit(#[from] std::io::Error),
    #[error("jwks_url: {0}")]
    Jwks(String),
    #[error("pingora: {0}")]
    Pingora(String),
}

/// Handles that outlive construction: tests and the demo use them to read
/// counters, flush the audit file or publish a new config.
#[derive(Clone)]
pub struct Handles {
    pub store: ConfigStore,
    pub audit: AuditSink,
    pub audit_stats: Arc<AuditStats>,
    pub metrics: Arc<Metrics>,
    pub revocations: Arc<RuntimeRevocations>,
    pub jwks: Option<Arc<JwksSource>>,
    pub reloader: Option<Arc<Reloader>>,
}

/// How long the audit writer may take to write, sign and sync what is
/// left when the process stops.
const AUDIT_FINISH: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs `server` until a signal stops it (`SIGTERM`: graceful, `SIGINT`:
/// fast, `SIGQUIT`: hand the listeners to a new process), then lets the
/// audit writer finish before the process exits: pingora's own
/// `run_forever` exits the moment its runtimes are down, which cut off the
/// writer with the last records unwritten or unsigned.
pub fn serve(server: Server, handles: &Handles) -> ! {
    server.run(pingora_core::server::RunArgs {
        shutdown_signal: Box::new(Signals {
            audit: handles.audit.clone(),
        }),
    });
    finish(&handles.audit);
    std::process::exit(0)
}

fn finish(audit: &AuditSink) {
    if !audit.finish_blocking(AUDIT_FINISH) {
        tracing::error!(
            "the audit writer did not finish within {AUDIT_FINISH:?}: its last records may be unwritten or unsigned"
        );
    }
}

/// pingora's signals (its `UnixShutdownSignalWatch`, but for `SIGINT`),
/// with a deadline on the stop they start: pingora's runtimes do not always
/// come down (seen after its fast stop: a listener's accept loop that the
/// stopping runtime fails at once, logging, never yielding), and a stop
/// must not hang the process. Past the deadline the audit writer is
/// finished and the process exits all the same.
struct Signals {
    audit: AuditSink,
}

/// pingora's own time for a graceful stop (`graceful_shutdown_timeout`,
/// 5 s) and then some.
const STOP_DEADLINE: std::time::Duration = std::time::Duration::from_secs(8);

#[async_trait::async_trait]
impl pingora_core::server::ShutdownSignalWatch for Signals {
    async fn recv(&self) -> pingora_core::server::ShutdownSignal {
        use pingora_core::server::ShutdownSignal;
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut quit), Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::quit()),
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!(
                "cannot listen for SIGQUIT, SIGTERM and SIGINT; stop the process with SIGKILL"
            );
            return std::future::pending().await;
        };
        // `SIGINT` (Ctrl-C) stops as `SIGTERM` does: pingora's fast stop
        // leaves its listeners' accept loops untold, and now and then one
        // spins on the stopping runtime (1 stop in 15 here). The graceful
        // stop tells them first, and with no grace period it takes as long
        // (about 10 ms, idle keep-alive connections included).
        let stop = tokio::select! {
            _ = quit.recv() => ShutdownSignal::GracefulUpgrade,
            _ = term.recv() => ShutdownSignal::GracefulTerminate,
            _ = int.recv() => ShutdownSignal::GracefulTerminate,
        };
        let audit = self.audit.clone();
        let deadline = STOP_DEADLINE;
        let watchdog = std::thread::Builder::new()
            .name("chatwarden-stop".into())
            .spawn(move || {
                std::thread::sleep(deadline);
                tracing::warn!("pingora did not stop within {deadline:?}: exiting without it");
                finish(&audit);
                std::process::exit(0)
            });
        if let Err(e) = watchdog {
            tracing::error!(error = %e, "cannot start the stop deadline");
        }
        stop
    }
}

/// Build a ready-to-run server for `snapshot`.
pub fn build(snapshot: Snapshot, opts: &RunOptions) -> Result<(Server, Handles), StartError> {
    if snapshot.listeners.is_empty() {
        return Err(StartError::NoListeners);
    }
    let mut conf = ServerConf {
        threads: opts.threads.max(1),
        // Measured on this kind of machine: work stealing costs more than
        // it balances for a proxy whose requests are short and uniform.
        work_stealing: false,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(5),
        // Timeouts of a second or more (the upstreams' connect, read, write
        // and idle timeouts as configured) on tokio's timer rather than
        // pingora's shared one: each worker's runtime keeps its own wheel
        // and drops a cancelled timer at once, where pingora's reads the
        // clock twice per timeout, keeps cancelled timers until their
        // deadline, and runs a thread that wakes every 10 ms to fire them.
        // (A cached-token request: 1 % fewer instructions, and lower CPU in
        // 6 of 8 interleaved pairs on 2026-12-03, median 4 %.)
        fast_timeout_to_tokio_threshold_seconds: Some(0),
        ..ServerConf::default()
    };
    conf.daemon = opts.daemon;
    let opt = Opt {
        daemon: opts.daemon,
        upgrade: opts.upgrade,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, conf);

    let a = &snapshot.audit;
    let target = match &a.path {
        Some(p) => AuditTarget::File(p.clone()),
        None => AuditTarget::Stdout,
    };
    let (audit, writer) = audit_channel(
        target,
        AuditOptions {
            capacity: a.queue,
            overflow: if a.fail_closed {
                OverflowPolicy::FailClosed
            } else {
                OverflowPolicy::Backpressure
            },
            hash_chain: a.hash_chain,
            rotate: a.rotate_max_size.map(|max_size| RotateOptions {
                max_size,
                keep: a.rotate_keep,
            }),
            signing: a.signing.clone(),
        },
    )?;
    let audit_stats = writer.stats();
    let metrics = Arc::new(Metrics::default());
    let (outbox, courier) = crate::alert::outbox(crate::alert::QUEUE, metrics.clone());
    let (alerting, tally) = crate::alert::Alerting::new(outbox, metrics.clone());
    let alerts = Arc::new(alerting);

    let listeners: Vec<_> = snapshot
        .listeners
        .iter()
        .map(|l| (l.name.clone(), l.addr, l.tls.clone(), l.write_buffer))
        .collect();
    let admin_listener = snapshot
        .admin
        .as_ref()
        .map(|a| (a.addr, a.tls.as_ref().map(|t| t.key.clone())));
    let jwks = match snapshot
        .auth
        .as_ref()
        .and_then(|a| a.jwks.as_ref().map(|j| (a, j)))
    {
        Some((auth, j)) => Some(Arc::new(
            JwksSource::new(&j.url, auth.keys.clone(), j.options.clone())
                .map_err(|e| StartError::Jwks(e.to_string()))?,
        )),
        None => None,
    };
    let revocations = Arc::new(RuntimeRevocations::default());
    let store = ConfigStore::new(snapshot);
    let reloader = opts.reload.clone().map(|src| {
        Arc::new(Reloader::new(
            src,
            store.clone(),
            audit.clone(),
            jwks.clone(),
        ))
    });

    let gateway = Gateway {
        store: store.clone(),
        audit: audit.clone(),
        metrics: metrics.clone(),
        revocations: revocations.clone(),
        jwks: jwks.clone(),
        lookups: pingora_core::connectors::http::Connector::new(None),
        limits: std::sync::Arc::new(crate::limit::Limits::default()),
        alerts: alerts.clone(),
        signature_failures: Arc::default(),
    };
    // TLS listeners are plain TCP to pingora; `Guarded` runs their
    // handshakes once a connection is within the caps (`connection`).
    let mut handshakes = Handshakes::default();
    let mut endpoints = Vec::new();
    let proxy_addrs: Vec<std::net::SocketAddr> = listeners.iter().map(|l| l.1).collect();
    for (name, addr, tls, write_buffer) in listeners {
        // Reads keep pingora's default buffer; see DEFAULT_WRITE_BUFFER for
        // the write side.
        endpoints.push(
            ListenerConfig::tcp(addr.to_string())
                .l4_buffer(L4BufferSettings::default().write(write_buffer)),
        );
        if let Some(key) = tls {
            let mut settings = TlsSettings::intermediate("", "")
                .map_err(|e| StartError::Pingora(e.to_string()))?;
            settings.set_cert_resolver(Arc::new(ListenerCert {
                store: store.clone(),
                listener: name,
                initial: key,
            }));
            settings.enable_h2();
            handshakes.add(addr, settings.build());
        }
    }
    // The proxy behind the head deadline and connection caps.
    let mut proxy = Service::new(
        "chatwarden".to_string(),
        Guarded::new(
            pingora_proxy::http_proxy(&server.configuration, gateway),
            store.clone(),
            metrics.connections.clone(),
            Arc::new(ParserRefusals {
                store: store.clone(),
                audit: audit.clone(),
                metrics: metrics.clone(),
                alerts: alerts.clone(),
            }),
            handshakes,
        ),
    );
    for endpoint in endpoints {
        proxy.add_listener(endpoint);
    }
    server.add_service(proxy);

    if let Some((addr, tls)) = admin_listener {
        // The admin listener gets the same head deadline, caps and
        // handshake order as the proxy's, with its own count: a flood on
        // the proxy's port must not fail the probes.
        let mut handshakes = Handshakes::default();
        match tls {
            Some(key) => {
                let settings =
                    crate::admin::tls::settings(&store, key).map_err(StartError::Pingora)?;
                handshakes.add(addr, settings.build());
            }
            None if !addr.ip().is_loopback() => {
                tracing::warn!(
                    addr = %addr,
                    "the admin listener is reachable from the network without TLS: the admin token and /reload, /revoke cross it in clear; set admin.tls"
                );
            }
            None => {}
        }
        let mut admin = Service::new(
            "chatwarden admin".to_string(),
            Guarded::new(
                AdminApp {
                    store: store.clone(),
                    metrics: metrics.clone(),
                    audit_stats: audit_stats.clone(),
                    audit: audit.clone(),
                    revocations: revocations.clone(),
                    jwks: jwks.clone(),
                    reloader: reloader.clone(),
                },
                store.clone(),
                metrics.admin_connections.clone(),
                Arc::new(Unrecorded),
                handshakes,
            ),
        );
        admin.add_tcp(&addr.to_string());
        server.add_service(admin);
    }
    server.add_service(background_service("chatwarden audit writer", writer));
    server.add_service(background_service(
        "chatwarden alert courier",
        CourierTask(courier),
    ));
    server.add_service(background_service(
        "chatwarden alert tally",
        TallyTask(tally),
    ));
    if let (Some(r), true) = (&reloader, opts.reload_on_sighup) {
        server.add_service(background_service(
            "chatwarden sighup reload",
            SighupReload(r.clone()),
        ));
    }
    // Runtime revocations through the shared Redis store, when the live
    // config has one.
    server.add_service(background_service(
        "chatwarden revocation sync",
        RevocationSync(revocations.clone(), store.clone()),
    ));
    if let (Some(r), Some(every)) = (&reloader, opts.watch) {
        server.add_service(background_service(
            "chatwarden config watch",
            ConfigWatch(r.clone(), every),
        ));
    }
    if let Some(j) = &jwks {
        // Fetches at once, then as Cache-Control says; /readyz waits for
        // the first good key set.
        server.add_service(background_service("chatwarden jwks", JwksTask(j.clone())));
    }
    // Ready once the proxy's sockets listen (pingora binds them as the
    // service starts, maybe after the admin listener answers).
    server.add_service(background_service(
        "chatwarden listeners up",
        ListenersUp(store.clone(), proxy_addrs),
    ));
    server.bootstrap();

    Ok((
        server,
        Handles {
            store,
            audit,
            audit_stats,
            metrics,
            revocations,
            jwks,
            reloader,
        },
    ))
}

/// Reload the config on SIGHUP (what `systemctl reload` sends).
struct SighupReload(Arc<Reloader>);

#[async_trait::async_trait]
impl BackgroundService for SighupReload {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGHUP; reload with POST /reload");
                return;
            }
        };
        loop {
            tokio::select! {
                got = hup.recv() => {
                    if got.is_none() {
                        return;
                    }
                    self.0.reload("SIGHUP", "").await;
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// Runtime revocations synced with the other replicas.
struct RevocationSync(Arc<RuntimeRevocations>, ConfigStore);

#[async_trait::async_trait]
impl BackgroundService for RevocationSync {
    async fn start(&self, shutdown: ShutdownWatch) {
        crate::revocation::shared::run(self.0.clone(), self.1.clone(), shutdown).await;
    }
}

/// Reload when the config files change (`run --watch`).
struct ConfigWatch(Arc<Reloader>, std::time::Duration);

#[async_trait::async_trait]
impl BackgroundService for ConfigWatch {
    async fn start(&self, shutdown: ShutdownWatch) {
        self.0.watch(self.1, shutdown).await;
    }
}

/// The JWKS refresher as a pingora background service.
/// Marks the gateway ready once every proxy listener is up
/// ([`crate::listening`]).
struct ListenersUp(ConfigStore, Vec<std::net::SocketAddr>);

#[async_trait::async_trait]
impl BackgroundService for ListenersUp {
    async fn start(&self, _shutdown: ShutdownWatch) {
        crate::listening::wait_until_listening(&self.1).await;
        self.0.set_ready();
    }
}

struct JwksTask(Arc<JwksSource>);

#[async_trait::async_trait]
impl BackgroundService for JwksTask {
    async fn start(&self, shutdown: ShutdownWatch) {
        self.0.start(shutdown).await;
    }
}

/// The alert courier as a pingora background service.
struct CourierTask(crate::alert::Courier);

#[async_trait::async_trait]
impl BackgroundService for CourierTask {
    async fn start(&self, shutdown: ShutdownWatch) {
        self.0.run(shutdown).await;
    }
}

/// The shared alert counters' task (events counted in Redis) as a pingora
/// background service.
struct TallyTask(crate::alert::Tally);

#[async_trait::async_trait]
impl BackgroundService for TallyTask {
    async fn start(&self, shutdown: ShutdownWatch) {
        self.0.run(shutdown).await;
    }
}

/// Serves a listener's certificate from the current config snapshot, so a
/// reload that read renewed certificate files (rotated in place, e.g. by
/// cert-manager) serves them to every new TLS connection; connections
/// already open keep theirs. A reload cannot remove a TLS listener (it is
/// refused: listeners need a restart), so the lookup finds it; the
/// certificate the process started with stays as a fallback all the same.
struct ListenerCert {
    store: ConfigStore,
    listener: String,
    initial: Arc<CertifiedKey>,
}

impl std::fmt::Debug for ListenerCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerCert")
            .field("listener", &self.listener)
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for ListenerCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let current = self.store.load();
        let live = current
            .listeners
            .iter()
            .find(|l| l.name == self.listener)
            .and_then(|l| l.tls.clone());
        Some(live.unwrap_or_else(|| self.initial.clone()))
    }
}
