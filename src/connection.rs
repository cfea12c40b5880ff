//! Client connections before and between requests: a deadline for each
//! request head and caps on how many connections are open.
//!
//! pingora 0.9 times out each read of a request head on its own (60 s), so
//! a client that sends one byte of its head every 59 s holds a connection,
//! and the task and buffers behind it, for as long as it likes
//! (slowloris; pingora issue #447). Every client stream is therefore
//! wrapped in a [`Paced`] stream before pingora sees it:
//!
//! - **Head deadline.** Once part of a request head has arrived and the
//!   client pauses, the rest must arrive within `connections.head_timeout`
//!   (counted from that first pause, not reset by later bytes), or the
//!   connection is closed. A head that arrives whole never starts a timer;
//!   a keep-alive connection waiting for its next request is not in a head
//!   (pingora's 60 s idle timeout governs it), and bodies and responses
//!   keep pingora's own per-read timeouts. The gateway's hooks tell the
//!   stream where a request begins and ends: `early_request_filter` marks
//!   the head complete, `logging` the request finished.
//! - **Connection caps.** `connections.max` bounds the connections open at
//!   once on all proxy listeners; `connections.max_per_client` bounds those from
//!   one address (an IPv6 client by its /64). A connection over a cap is
//!   closed before any request is read from it, and on a TLS listener
//!   before its handshake. Connections from `network.trusted_proxies` are
//!   exempt from the per-client cap: each carries many clients.
//! - **TLS handshakes after the caps, within the head deadline.** pingora
//!   would complete a TLS listener's handshake before handing the
//!   connection over, allowing it 60 s, so a client could hold any number
//!   of connections in their handshakes, past both caps. TLS listeners
//!   are therefore plain TCP listeners to pingora, and
//!   [`Guarded`] runs the handshake itself (pingora's own acceptor, the same
//!   settings) once the connection has its slot, cut at
//!   `connections.head_timeout`.
//! - **Refused heads are audited.** A head pingora's own parser refuses
//!   (it answers 400 before any gateway phase runs) would otherwise leave
//!   no audit record: the stream notices a response written while a head
//!   was still incomplete, and [`HeadRefusals`] writes the record.
//!
//! The admin listener is guarded the same way, with a table and counts of
//! its own (`chatwarden_admin_…` on `/metrics`).
//!
//! Settings are read from the live snapshot when a connection is accepted,
//! so a reload applies to new connections. HTTP/2 connections get the caps
//! but no head deadline: their framing is not a head followed by a body.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use pingora_core::apps::ServerApp;
use pingora_core::listeners::tls::Acceptor;
use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::protocols::raw_connect::ProxyDigest;
use pingora_core::protocols::tls::{SslDigest, TlsRef};
use pingora_core::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType, ALPN,
};
use pingora_core::server::ShutdownWatch;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

use crate::config::ConfigStore;
use crate::request::client_ip::counted_client;

/// `connections.head_timeout` when the config does not set it: HAProxy's
/// customary `timeout http-request`, and ample for a head of a few KB.
pub const DEFAULT_HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// The `connections` section, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionSettings {
    pub head_timeout: Duration,
    /// Connections open at once on all proxy listeners (the admin listener
    /// counts its own); `None`: no cap.
    pub max: Option<u32>,
    /// Connections open at once from one client address; `None`: no cap.
    pub max_per_client: Option<u32>,
    /// How slowly a request body may arrive (see `proxy::body`).
    pub body_pace: BodyPace,
}

impl Default for ConnectionSettings {
    fn default() -> Self {
        ConnectionSettings {
            head_timeout: DEFAULT_HEAD_TIMEOUT,
            max: None,
            max_per_client: None,
            body_pace: BodyPace::default(),
        }
    }
}

/// A request body, once its first bytes are in, must keep arriving at
/// `min_rate` bytes per second on average, after `grace`: its n-th byte is
/// due `grace + n / min_rate` after the first. A client dripping a body a
/// few bytes at a time (each read well inside every per-read timeout)
/// would otherwise hold its connection, and the upstream connection its
/// request is streamed into, for as long as it likes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyPace {
    pub min_rate: u64,
    pub grace: Duration,
}

pub const DEFAULT_BODY_MIN_RATE: u64 = 1024;
pub const DEFAULT_BODY_GRACE: Duration = Duration::from_secs(10);

impl Default for BodyPace {
    fn default() -> Self {
        BodyPace {
            min_rate: DEFAULT_BODY_MIN_RATE,
            grace: DEFAULT_BODY_GRACE,
        }
    }
}

impl BodyPace {
    /// How much longer the body may take to deliver more than `received`
    /// bytes, `elapsed` after its first bytes came in; `None` when it is
    /// already behind.
    pub fn time_left(&self, elapsed: Duration, received: u64) -> Option<Duration> {
        let rate = self.min_rate.max(1);
        let earned = Duration::from_secs(received / rate).saturating_add(Duration::from_nanos(
            (u128::from(received % rate) * 1_000_000_000 / u128::from(rate)) as u64,
        ));
        self.grace.saturating_add(earned).checked_sub(elapsed)
    }
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct ConnectionMetrics {
    open: AtomicUsize,
    refused_max: AtomicU64,
    refused_per_client: AtomicU64,
    head_timeouts: AtomicU64,
    tls_handshake_timeouts: AtomicU64,
    tls_handshake_closed: AtomicU64,
    tls_handshake_failures: AtomicU64,
}

impl ConnectionMetrics {
    /// The proxy listeners' counts (`chatwarden_connections_open`, …).
    pub fn render(&self, out: &mut String) {
        self.render_as(out, "chatwarden_", "all proxy listeners");
    }

    /// The admin listener's, under `chatwarden_admin_` names.
    pub fn render_admin(&self, out: &mut String) {
        self.render_as(out, "chatwarden_admin_", "the admin listener");
    }

    fn render_as(&self, out: &mut String, p: &str, scope: &str) {
        use std::fmt::Write;
        let _ = writeln!(
            out,
            "# HELP {p}connections_open Client connections open now, {scope}.\n\
             # TYPE {p}connections_open gauge\n\
             {p}connections_open {}",
            self.open.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP {p}connections_refused_total Client connections closed on arrival, by the cap they were over ({scope}).\n\
             # TYPE {p}connections_refused_total counter\n\
             {p}connections_refused_total{{cap=\"max\"}} {}\n\
             {p}connections_refused_total{{cap=\"max_per_client\"}} {}",
            self.refused_max.load(Ordering::Relaxed),
            self.refused_per_client.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP {p}request_head_timeouts_total Connections closed because a request head did not arrive within connections.head_timeout ({scope}).\n\
             # TYPE {p}request_head_timeouts_total counter\n\
             {p}request_head_timeouts_total {}",
            self.head_timeouts.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP {p}tls_handshakes_failed_total TLS handshakes that did not finish ({scope}): not within connections.head_timeout, the client closed the connection before its first byte, or a TLS error (e.g. a client that does not trust the certificate).\n\
             # TYPE {p}tls_handshakes_failed_total counter\n\
             {p}tls_handshakes_failed_total{{why=\"timeout\"}} {}\n\
             {p}tls_handshakes_failed_total{{why=\"closed\"}} {}\n\
             {p}tls_handshakes_failed_total{{why=\"error\"}} {}",
            self.tls_handshake_timeouts.load(Ordering::Relaxed),
            self.tls_handshake_closed.load(Ordering::Relaxed),
            self.tls_handshake_failures.load(Ordering::Relaxed)
        );
    }

    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

/// Shards of the per-client table: accepting a connection locks one.
const SHARDS: usize = 16;

/// Who holds how many connections.
#[derive(Debug)]
pub struct ConnectionTable {
    metrics: Arc<ConnectionMetrics>,
    per_client: [Mutex<HashMap<IpAddr, u32>>; SHARDS],
}

/// Why a connection was not let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverCap {
    Max,
    PerClient,
}

impl ConnectionTable {
    pub fn new(metrics: Arc<ConnectionMetrics>) -> Self {
        ConnectionTable {
            metrics,
            per_client: Default::default(),
        }
    }

    /// A slot for a new connection from `client` (`None`: exempt from the
    /// per-client cap), or the cap it is over.
    pub fn admit(
        self: &Arc<Self>,
        client: Option<IpAddr>,
        settings: &ConnectionSettings,
    ) -> Result<Slot, OverCap> {
        let open = self.metrics.open.fetch_add(1, Ordering::AcqRel) + 1;
        let mut slot = Slot {
            table: self.clone(),
            client: None,
        };
        if settings.max.is_some_and(|max| open > max as usize) {
            self.metrics.refused_max.fetch_add(1, Ordering::Relaxed);
            return Err(OverCap::Max);
        }
        if let (Some(max), Some(ip)) = (settings.max_per_client, client) {
            let key = counted_client(ip);
            let mut shard = self.shard(key);
            let held = shard.entry(key).or_insert(0);
            // `held` is at least 1 here (caps are at least 1), so a refusal
            // never leaves an empty entry behind.
            if *held >= max {
                drop(shard);
                self.metrics
                    .refused_per_client
                    .fetch_add(1, Ordering::Relaxed);
                return Err(OverCap::PerClient);
            }
            *held += 1;
            slot.client = Some(key);
        }
        Ok(slot)
    }

    fn shard(&self, key: IpAddr) -> std::sync::MutexGuard<'_, HashMap<IpAddr, u32>> {
        let n = match key {
            IpAddr::V4(v4) => u32::from(v4) as usize,
            IpAddr::V6(v6) => (u128::from(v6) >> 64) as usize,
        };
        // A poisoned shard only means a panic elsewhere while it was held;
        // the counts in it are still whole numbers.
        match self.per_client[n % SHARDS].lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Clients holding connections now (for tests and bounds).
    pub fn clients(&self) -> usize {
        (0..SHARDS)
            .map(|i| match self.per_client[i].lock() {
                Ok(g) => g.len(),
                Err(p) => p.into_inner().len(),
            })
            .sum()
    }
}

/// One open connection's place in the [`ConnectionTable`]; given back when
/// dropped. A refused connection's slot is dropped at once.
pub struct Slot {
    table: Arc<ConnectionTable>,
    client: Option<IpAddr>,
}

impl fmt::Debug for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Slot")
            .field("client", &self.client)
            .finish()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.table.metrics.open.fetch_sub(1, Ordering::AcqRel);
        if let Some(key) = self.client {
            let mut shard = self.table.shard(key);
            if let Some(held) = shard.get_mut(&key) {
                *held = held.saturating_sub(1);
                if *held == 0 {
                    shard.remove(&key);
                }
            }
        }
    }
}

/// What a connection's [`Paced`] stream saw, for [`Guarded`] to act on once
/// the connection is over.
#[derive(Debug, Default)]
struct Report {
    /// pingora answered a head that never reached the gateway's hooks.
    refused_head: AtomicBool,
    /// Bytes of that answer.
    refused_bytes: AtomicU64,
}

/// Records a request head that pingora refused before any gateway phase
/// ran (malformed, too large): the gateway's one audit record for it.
#[async_trait]
pub trait HeadRefusals: Send + Sync {
    /// `client`: the TCP peer (its head was never read, so no
    /// `X-Forwarded-For` either).
    async fn refused(&self, client: Option<IpAddr>, bytes_out: u64);
}

/// For the admin listener: a head pingora refused there is not a
/// request to the gateway and leaves no audit record.
pub struct Unrecorded;

#[async_trait]
impl HeadRefusals for Unrecorded {
    async fn refused(&self, client: Option<IpAddr>, _bytes_out: u64) {
        tracing::debug!(client = ?client, "admin listener: a malformed request head was refused");
    }
}

/// Where a connection is in its request cycle, as the gateway's hooks see it.
const AWAITING_HEAD: u8 = 0;
const IN_REQUEST: u8 = 1;
/// The request finished: the next read starts a new wait for a head.
const FINISHED: u8 = 2;

/// A client stream that enforces the head deadline (see the module docs).
pub struct Paced {
    inner: Stream,
    /// `None` on HTTP/2 connections.
    head_timeout: Option<Duration>,
    phase: AtomicU8,
    /// Bytes of the current head have arrived.
    head_begun: bool,
    /// Armed at the first pause inside a head.
    deadline: Option<Pin<Box<Sleep>>>,
    metrics: Arc<ConnectionMetrics>,
    report: Arc<Report>,
    _slot: Slot,
}

impl Paced {
    fn new(
        inner: Stream,
        head_timeout: Option<Duration>,
        metrics: Arc<ConnectionMetrics>,
        report: Arc<Report>,
        slot: Slot,
    ) -> Self {
        Paced {
            inner,
            head_timeout,
            phase: AtomicU8::new(AWAITING_HEAD),
            head_begun: false,
            deadline: None,
            metrics,
            report,
            _slot: slot,
        }
    }

    /// A write while a head is incomplete is pingora answering a head it
    /// refused (HTTP/1 only: HTTP/2 heads are not tracked). Writes after
    /// the request finished and before the next read are the tail of its
    /// response (pingora flushes after `logging`).
    fn answering_refused_head(&self) -> bool {
        self.head_timeout.is_some()
            && self.head_begun
            && self.phase.load(Ordering::Relaxed) == AWAITING_HEAD
    }

    fn note_refusal(&self, written: &Poll<io::Result<usize>>) {
        self.report.refused_head.store(true, Ordering::Relaxed);
        if let Poll::Ready(Ok(n)) = written {
            self.report
                .refused_bytes
                .fetch_add(*n as u64, Ordering::Relaxed);
        }
    }

    /// The request head has been read and parsed: its deadline is over.
    pub fn head_complete(&self) {
        self.phase.store(IN_REQUEST, Ordering::Relaxed);
    }

    /// The request is finished: the next byte read begins a new head.
    pub fn request_finished(&self) {
        self.phase.store(FINISHED, Ordering::Relaxed);
    }

    /// The `Paced` under a pingora stream, if it is one.
    pub fn of(stream: &Stream) -> Option<&Paced> {
        stream.as_any().downcast_ref::<Paced>()
    }

    fn poll_head_read(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
        timeout: Duration,
    ) -> Poll<io::Result<()>> {
        if self.phase.load(Ordering::Relaxed) == FINISHED {
            self.phase.store(AWAITING_HEAD, Ordering::Relaxed);
            self.head_begun = false;
            self.deadline = None;
        }
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                self.head_begun |= buf.filled().len() > before;
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending if !self.head_begun => Poll::Pending,
            Poll::Pending => {
                let deadline = self
                    .deadline
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                match deadline.as_mut().poll(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(()) => {
                        self.metrics.head_timeouts.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(
                            timeout_ms = timeout.as_millis() as u64,
                            "closing a connection: request head not complete in time"
                        );
                        Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "request head not complete within connections.head_timeout",
                        )))
                    }
                }
            }
        }
    }
}

impl fmt::Debug for Paced {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Paced")
            .field("inner", &self.inner)
            .field("head_timeout", &self.head_timeout)
            .field("phase", &self.phase)
            .finish()
    }
}

impl AsyncRead for Paced {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.head_timeout {
            Some(timeout) if this.phase.load(Ordering::Relaxed) != IN_REQUEST => {
                this.poll_head_read(cx, buf, timeout)
            }
            _ => Pin::new(&mut this.inner).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Paced {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write(cx, buf);
        if this.answering_refused_head() {
            this.note_refusal(&written);
        }
        written
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if this.answering_refused_head() {
            this.note_refusal(&written);
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[async_trait]
impl Shutdown for Paced {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await
    }
}

impl UniqueID for Paced {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for Paced {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for Paced {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for Paced {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for Paced {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

#[async_trait]
impl Peek for Paced {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

/// The gateway's pingora app behind the connection caps and head deadline:
/// every accepted stream is counted, then wrapped in a [`Paced`] stream.
pub struct Guarded<A> {
    app: Arc<A>,
    store: ConfigStore,
    table: Arc<ConnectionTable>,
    metrics: Arc<ConnectionMetrics>,
    refusals: Arc<dyn HeadRefusals>,
    handshakes: Handshakes,
}

impl<A> Guarded<A> {
    pub fn new(
        app: A,
        store: ConfigStore,
        metrics: Arc<ConnectionMetrics>,
        refusals: Arc<dyn HeadRefusals>,
        handshakes: Handshakes,
    ) -> Self {
        Guarded {
            app: Arc::new(app),
            store,
            table: Arc::new(ConnectionTable::new(metrics.clone())),
            metrics,
            refusals,
            handshakes,
        }
    }
}

/// The proxy's TLS listeners, by address: their connections arrive as
/// plain TCP and [`Guarded`] runs the handshake (see the module docs).
#[derive(Default)]
pub struct Handshakes {
    listeners: Vec<(SocketAddr, Acceptor)>,
}

impl Handshakes {
    /// Connections accepted on `addr` are to be TLS, with `acceptor`.
    pub fn add(&mut self, addr: SocketAddr, acceptor: Acceptor) {
        self.listeners.push((addr, acceptor));
    }

    /// The acceptor of the listener a connection to `local` came in on: the
    /// one bound to that address, else one bound to every address on its
    /// port.
    fn for_local(&self, local: SocketAddr) -> Option<&Acceptor> {
        let exact = self.listeners.iter().find(|(addr, _)| *addr == local);
        exact
            .or_else(|| {
                self.listeners
                    .iter()
                    .find(|(addr, _)| addr.ip().is_unspecified() && addr.port() == local.port())
            })
            .map(|(_, acceptor)| acceptor)
    }

    /// The acceptor for `stream` when it came in on a TLS listener.
    fn acceptor_for(&self, stream: &Stream) -> Option<&Acceptor> {
        if self.listeners.is_empty() {
            return None;
        }
        let local = stream
            .get_socket_digest()
            .and_then(|d| d.local_addr().and_then(|a| a.as_inet().copied()));
        local.and_then(|l| self.for_local(l))
    }
}

/// `stream` as a TLS stream after its handshake with `acceptor` (`None` when
/// the handshake failed or did not finish within `deadline`).
async fn handshake(
    acceptor: &Acceptor,
    stream: Stream,
    deadline: Duration,
    metrics: &ConnectionMetrics,
) -> Option<Stream> {
    // pingora hands a plain listener's connection over as its own L4
    // stream, which is what its TLS acceptor takes.
    let mut l4 = match stream.into_any().downcast::<L4Stream>() {
        Ok(l4) => *l4,
        Err(_) => {
            tracing::error!("a TLS listener's connection is not a TCP stream; closed");
            return None;
        }
    };
    let handshake = async {
        // A client that closes before its first byte (a load balancer's
        // TCP check) is not a failed handshake. The byte is put back.
        let mut first = [0u8; 1];
        if l4.try_peek(&mut first).await.is_err() {
            return Err(None);
        }
        acceptor.tls_handshake(l4).await.map_err(Some)
    };
    match tokio::time::timeout(deadline, handshake).await {
        Ok(Ok(tls)) => Some(Box::new(tls)),
        Ok(Err(None)) => {
            metrics.tls_handshake_closed.fetch_add(1, Ordering::Relaxed);
            None
        }
        Ok(Err(Some(e))) => {
            metrics
                .tls_handshake_failures
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!(error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            metrics
                .tls_handshake_timeouts
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!("TLS handshake not done within connections.head_timeout; closed");
            None
        }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for Guarded<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let snapshot = self.store.load();
        let settings = &snapshot.connections;
        let peer = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()));
        let per_client = peer.filter(|ip| !snapshot.trusted_proxies.is_trusted(*ip));
        let slot = match self.table.admit(per_client, settings) {
            Ok(slot) => slot,
            Err(cap) => {
                tracing::debug!(client = ?peer, ?cap, "connection refused: over a connection cap");
                return None;
            }
        };
        let deadline = settings.head_timeout;
        drop(snapshot);
        let stream = match self.handshakes.acceptor_for(&stream) {
            None => stream,
            // Boxed: a handshake's state (rustls', a timer's) is kilobytes,
            // and held inline it would stay in this future, and so in every
            // connection's task, for as long as the connection lives (an
            // idle keep-alive connection cost 8 KiB more for it).
            Some(acceptor) => {
                Box::pin(handshake(acceptor, stream, deadline, &self.metrics)).await?
            }
        };
        let h2 = matches!(stream.selected_alpn_proto(), Some(ALPN::H2));
        let head_timeout = (!h2).then_some(deadline);
        let report = Arc::new(Report::default());
        let paced: Stream = Box::new(Paced::new(
            stream,
            head_timeout,
            self.metrics.clone(),
            report.clone(),
            slot,
        ));
        // The inner app hands back a stream only to be served again by
        // this same method, where it would be counted and wrapped twice;
        // pingora's HTTP app never does, and neither do we.
        self.app.process_new(paced, shutdown).await;
        // pingora closes a connection whose head it refused, so there is
        // at most one such head per connection.
        if report.refused_head.load(Ordering::Relaxed) {
            let bytes_out = report.refused_bytes.load(Ordering::Relaxed);
            self.refusals.refused(peer, bytes_out).await;
        }
        None
    }

    async fn cleanup(&self) {
        self.app.cleanup().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_earns_time_by_the_bytes_it_delivers() {
        let pace = BodyPace {
            min_rate: 1000,
            grace: Duration::from_secs(2),
        };
        let ms = Duration::from_millis;
        assert_eq!(pace.time_left(ms(0), 0), Some(ms(2000)));
        assert_eq!(pace.time_left(ms(1500), 0), Some(ms(500)));
        assert_eq!(pace.time_left(ms(2001), 0), None, "nothing after the grace");
        assert_eq!(
            pace.time_left(ms(2500), 1000),
            Some(ms(500)),
            "1000 bytes earn 1s"
        );
        assert_eq!(pace.time_left(ms(2500), 1), None, "one byte earns 1ms");
        assert_eq!(pace.time_left(ms(2000), 1), Some(ms(1)));
        assert_eq!(pace.time_left(ms(60_000), 1_000_000), Some(ms(942_000)));
        let huge = BodyPace {
            min_rate: 1 << 30,
            grace: Duration::from_secs(1),
        };
        assert_eq!(
            huge.time_left(ms(0), u64::MAX).map(|d| d > ms(1000)),
            Some(true)
        );
        let slowest = BodyPace {
            min_rate: 1,
            grace: Duration::MAX,
        };
        assert!(slowest.time_left(ms(0), u64::MAX).is_some(), "no overflow");
    }

    fn table() -> Arc<ConnectionTable> {
        Arc::new(ConnectionTable::new(Arc::default()))
    }

    fn capped(max: Option<u32>, max_per_client: Option<u32>) -> ConnectionSettings {
        ConnectionSettings {
            max,
            max_per_client,
            ..ConnectionSettings::default()
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn the_global_cap_counts_every_open_connection() {
        let t = table();
        let s = capped(Some(2), None);
        let a = t.admit(Some(ip("10.0.0.1")), &s);
        let b = t.admit(None, &s);
        assert!(a.is_ok() && b.is_ok());
        assert_eq!(t.admit(Some(ip("10.0.0.2")), &s).err(), Some(OverCap::Max));
        assert_eq!(
            t.metrics.open(),
            2,
            "a refused connection gives its count back"
        );
        drop(a);
        assert!(
            t.admit(Some(ip("10.0.0.2")), &s).is_ok(),
            "a closed one frees its place"
        );
        assert_eq!(
            t.metrics.open(),
            1,
            "and the admitted one here was dropped at once"
        );
    }

    #[test]
    fn the_per_client_cap_counts_a_v6_client_by_its_64_and_forgets_it_when_gone() {
        let t = table();
        let s = capped(None, Some(2));
        let a = t.admit(Some(ip("2001:db8:1:2::1")), &s);
        let b = t.admit(Some(ip("2001:db8:1:2::ffff")), &s);
        assert!(a.is_ok() && b.is_ok());
        assert_eq!(
            t.admit(Some(ip("2001:db8:1:2:aaaa::1")), &s).err(),
            Some(OverCap::PerClient),
            "a third address in the same /64 is the same client"
        );
        let other = t.admit(Some(ip("2001:db8:1:3::1")), &s);
        assert!(other.is_ok(), "the next /64 is another client");
        let exempt: Vec<_> = (0..5).map(|_| t.admit(None, &s)).collect();
        assert!(
            exempt.iter().all(Result::is_ok),
            "exempt connections are not capped per client"
        );
        drop((a, b, other, exempt));
        assert_eq!(t.clients(), 0, "clients with no connection are forgotten");
        assert_eq!(t.metrics.open(), 0);
        assert_eq!(t.metrics.refused_per_client.load(Ordering::Relaxed), 1);
    }

    /// A connection's task holds this future for as long as the connection
    /// lives, so an idle keep-alive connection pays for every byte of it. A
    /// TLS handshake's state (rustls', a timer's: kilobytes) must not be
    /// part of it: held inline it made this future 7.9 KiB (152 bytes boxed,
    /// in a debug build).
    #[test]
    fn a_connections_own_future_stays_small() {
        struct Nothing;
        #[async_trait]
        impl ServerApp for Nothing {
            async fn process_new(
                self: &Arc<Self>,
                _stream: Stream,
                _shutdown: &ShutdownWatch,
            ) -> Option<Stream> {
                None
            }
        }
        let config = "listeners: [{name: main, addr: \"127.0.0.1:1\"}]\n\
                      upstreams: {crm: {url: \"http://127.0.0.1:2\"}}\n\
                      routes: [{name: r, upstream: crm, path: /x, auth: none}]\n";
        let snapshot =
            crate::config::load_str(config, std::path::Path::new("c.yaml"), &HashMap::new())
                .expect("config");
        let guarded = Arc::new(Guarded::new(
            Nothing,
            ConfigStore::new(snapshot),
            Arc::default(),
            Arc::new(Unrecorded),
            Handshakes::default(),
        ));
        let (_client, server) = tokio::io::duplex(64);
        let (_keep, shutdown) = tokio::sync::watch::channel(false);
        let future = guarded.process_new(Box::new(server), &shutdown);
        let size = std::mem::size_of_val(&*future);
        assert!(size <= 512, "the connection future is {size} bytes");
    }

    #[test]
    fn without_caps_everything_is_admitted_and_counted() {
        let t = table();
        let s = ConnectionSettings::default();
        let held: Vec<_> = (0..100)
            .map(|_| t.admit(Some(ip("10.0.0.1")), &s))
            .collect();
        assert!(held.iter().all(Result::is_ok));
        assert_eq!(t.metrics.open(), 100);
        assert_eq!(t.clients(), 0, "no per-client cap, no per-client table");
    }
}
