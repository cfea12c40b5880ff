//! Hot reload: re-read the config file while traffic flows (SIGHUP or the
//! admin `POST /reload`). Publishing is compile → check → store: a file
//! that does not compile never replaces the running snapshot, and requests
//! in flight finish on the snapshot they started with. Every attempt,
//! accepted or rejected, is an audit record.
//!
//! A reload applies the whole file or nothing. Parts that cannot change
//! in a running process (listeners, the admin listener, the audit sink,
//! the JWKS endpoint) must stay as they are; a file that changes them is
//! rejected with a message saying a restart is needed. The audit signing
//! key is the exception within the sink: the writer takes a new one over.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pingora_core::server::ShutdownWatch;
use time::OffsetDateTime;
use tokio::sync::Mutex;

use crate::audit::{AuditEvent, AuditRecord, AuditSink};
use crate::auth::{JwksSource, Verifier};
use crate::config::env::Overlay;
use crate::config::snapshot::ConfigVersion;
use crate::config::{load_file, ConfigStore, ProcessEnv, Snapshot};
use crate::decision::Verdict;

/// Where the running config came from, so it can be read again the same way.
#[derive(Debug, Clone)]
pub struct ReloadSource {
    pub path: PathBuf,
    /// Variables that override the process environment (tests, tooling).
    pub overrides: HashMap<String, String>,
}

/// The outcome of one reload attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// Published; the new version.
    Applied { from: String, to: String },
    /// The file is byte-for-byte the running one.
    Unchanged { version: String },
    /// Rejected; the running snapshot stays. One problem per line.
    Rejected { problems: String },
}

pub struct Reloader {
    source: ReloadSource,
    store: ConfigStore,
    audit: AuditSink,
    jwks: Option<Arc<JwksSource>>,
    /// One reload at a time: two overlapping reloads must not interleave.
    busy: Mutex<()>,
    /// Checks `watch` has made.
    checks: AtomicU64,
}

impl Reloader {
    pub fn new(
        source: ReloadSource,
        store: ConfigStore,
        audit: AuditSink,
        jwks: Option<Arc<JwksSource>>,
    ) -> Self {
        Reloader {
            source,
            store,
            audit,
            jwks,
            busy: Mutex::new(()),
            checks: AtomicU64::new(0),
        }
    }

    /// Read, compile, check and publish; audit the attempt. `trigger` says
    /// what asked (`SIGHUP`, or the admin request and its caller);
    /// `client_ip` is the admin caller's address (empty for a signal).
    pub async fn reload(&self, trigger: &str, client_ip: &str) -> ReloadOutcome {
        let _one = self.busy.lock().await;
        let current = self.store.load();
        let outcome = self.attempt(&current);
        let rekeyed = match &outcome {
            ReloadOutcome::Applied { .. } => self.rekey(&current).await,
            _ => None,
        };
        self.record(trigger, client_ip, &current, &outcome, rekeyed.as_deref())
            .await;
        outcome
    }

    /// After a reload was applied: a changed signing key (or checkpoint
    /// interval) goes to the audit writer, which hands over from the old
    /// key to the new one in the file. What to add to the reload's audit
    /// record about it.
    async fn rekey(&self, before: &Snapshot) -> Option<String> {
        let after = self.store.load();
        let (Some(old), Some(new)) = (&before.audit.signing, &after.audit.signing) else {
            return None;
        };
        if old == new {
            return None;
        }
        let change = format!(
            "audit signing key {} -> {}, checkpoints every {:?}",
            old.signer.key_id(),
            new.signer.key_id(),
            new.every
        );
        match self.audit.rekey(new.clone()).await {
            Ok(()) => {
                tracing::info!(from = %old.signer.key_id(), to = %new.signer.key_id(), "audit signing key changed");
                Some(change)
            }
            Err(e) => {
                // The writer keeps the key it has; its file says which.
                tracing::error!(error = %e, "audit signing key not changed");
                Some(format!("{change} failed: {e}"))
            }
        }
    }

    /// Reload whenever the config file, or a file it names, changes:
    /// checked every `every` by digest (a Kubernetes ConfigMap or Secret
    /// volume swaps its files atomically; an editor may write in place, in
    /// which case a half-written file is rejected and the finished one
    /// applied on a later check). A version that was tried and rejected is
    /// not tried again until the files change again.
    pub async fn watch(&self, every: Duration, mut shutdown: ShutdownWatch) {
        let mut tried: Option<ConfigVersion> = None;
        let mut unreadable = false;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.changed() => return,
            }
            let (running, files) = {
                let current = self.store.load();
                (current.version.clone(), current.files.clone())
            };
            let path = self.source.path.clone();
            let seen =
                tokio::task::spawn_blocking(move || crate::config::fingerprint(&path, &files))
                    .await;
            let seen = match seen {
                Ok(Ok(v)) => v,
                Ok(Err(e)) => {
                    // Between the steps of a swap, or gone: say so once,
                    // and keep watching.
                    if !unreadable {
                        tracing::warn!(path = %self.source.path.display(), error = %e, "config watch: cannot read the config or a file it names; the running config stays");
                    }
                    unreadable = true;
                    continue;
                }
                Err(e) => {
                    tracing::error!(error = %e, "config watch: the check did not finish");
                    continue;
                }
            };
            unreadable = false;
            self.checks.fetch_add(1, Ordering::Relaxed);
            if seen == running || tried.as_ref() == Some(&seen) {
                continue;
            }
            tried = Some(seen);
            self.reload("config file changed", "").await;
        }
    }

    /// How many times [`watch`](Self::watch) has compared the files with
    /// the running config.
    pub fn watch_checks(&self) -> u64 {
        self.checks.load(Ordering::Relaxed)
    }

    fn attempt(&self, current: &Snapshot) -> ReloadOutcome {
        let env = Overlay {
            top: &self.source.overrides,
            base: &ProcessEnv,
        };
        match load_file(&self.source.path, &env) {
            Err(errors) => ReloadOutcome::Rejected {
                problems: errors.to_string(),
            },
            // The version covers the files the config names too, so renewed
            // certificates under an unchanged YAML are a change to apply.
            Ok(next) if next.version == current.version => ReloadOutcome::Unchanged {
                version: current.version.0.to_string(),
            },
            Ok(next) => match self.adopt(current, next) {
                Ok(next) => {
                    let to = next.version.0.to_string();
                    self.store.publish(next);
                    ReloadOutcome::Applied {
                        from: current.version.0.to_string(),
                        to,
                    }
                }
                Err(problems) => ReloadOutcome::Rejected { problems },
            },
        }
    }

    /// Carry process-wide state into the new snapshot, or say why it
    /// cannot be adopted without a restart.
    fn adopt(&self, current: &Snapshot, mut next: Snapshot) -> Result<Snapshot, String> {
        let mut problems = Vec::new();
        let addrs = |s: &Snapshot| {
            s.listeners
                .iter()
                .map(|l| (l.name.clone(), l.addr, l.tls.is_some(), l.write_buffer))
                .collect::<Vec<_>>()
        };
        if addrs(current) != addrs(&next) {
            problems
                .push("listeners changed: restart to apply (pingora cannot rebind while serving)");
        }
        if current.admin.as_ref().map(|a| a.addr) != next.admin.as_ref().map(|a| a.addr) {
            problems.push("admin.addr changed: restart to apply");
        }
        let admin_tls = |s: &Snapshot| s.admin.as_ref().is_some_and(|a| a.tls.is_some());
        if admin_tls(current) != admin_tls(&next) {
            problems.push("admin.tls added or removed: restart to apply (a certificate, key, client_ca or client_crl change reloads)");
        }
        let a = (&current.audit, &next.audit);
        if a.0.path != a.1.path
            || a.0.hash_chain != a.1.hash_chain
            || a.0.fail_closed != a.1.fail_closed
        {
            problems.push("audit sink changed: restart to apply (the chain must not fork)");
        }
        // A new signing key (or checkpoint interval) is taken over by the
        // running writer (see `rekey`); signing itself begins and ends with
        // the process, which checkpoints the file it takes over.
        if a.0.signing.is_some() != a.1.signing.is_some() {
            problems.push("audit.signing_key added or removed: restart to apply (a new key or checkpoint_every reloads)");
        }
        let jwks_url = |s: &Snapshot| {
            s.auth
                .as_ref()
                .and_then(|a| a.jwks.as_ref().map(|j| j.url.clone()))
        };
        if jwks_url(current) != jwks_url(&next) {
            problems.push("auth.jwks_url changed: restart to apply");
        }
        if !problems.is_empty() {
            return Err(problems.join("\n"));
        }
        // The same Redis keeps its store: its pooled connections and its
        // rest after a failure carry over.
        if next.rate_limits.redis_settings().is_some()
            && next.rate_limits.redis_settings() == current.rate_limits.redis_settings()
        {
            next.rate_limits = current.rate_limits.clone();
        }
        // The JWKS refresher feeds one key store for the process; the new
        // snapshot's verifier must read it, with the file's new local keys.
        if let (Some(jwks), Some(auth)) = (&self.jwks, next.auth.as_mut()) {
            let running = jwks.store().clone();
            running.set_local((*auth.keys.local()).clone());
            auth.verifier =
                Verifier::new(auth.settings.clone(), running.clone()).map_err(|e| e.to_string())?;
            auth.keys = running;
        }
        Ok(next)
    }

    async fn record(
        &self,
        trigger: &str,
        client_ip: &str,
        current: &Snapshot,
        outcome: &ReloadOutcome,
        rekeyed: Option<&str>,
    ) {
        let (verdict, detail, version) = match outcome {
            ReloadOutcome::Applied { from, to } => {
                tracing::info!(from = %from, to = %to, trigger, "config reloaded");
                (
                    Verdict::Allow,
                    match rekeyed {
                        Some(change) => format!("{trigger}: applied {from} -> {to}; {change}"),
                        None => format!("{trigger}: applied {from} -> {to}"),
                    },
                    to.clone(),
                )
            }
            ReloadOutcome::Unchanged { version } => (
                Verdict::Allow,
                format!("{trigger}: unchanged"),
                version.clone(),
            ),
            ReloadOutcome::Rejected { problems } => {
                tracing::warn!(trigger, problems = %problems, "config reload rejected; the running config stays");
                (
                    Verdict::Deny,
                    format!("{trigger}: rejected: {}", problems.replace('\n', "; ")),
                    current.version.0.to_string(),
                )
            }
        };
        let mut rec = AuditRecord::event(
            OffsetDateTime::now_utc(),
            AuditEvent::Reload,
            verdict,
            detail,
        )
        .config_version(version);
        rec.client_ip = client_ip.to_string();
        if let Err(e) = self.audit.submit(rec).await {
            tracing::error!(error = %e, "reload audit record refused");
        }
    }
}
