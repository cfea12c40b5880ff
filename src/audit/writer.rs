//! The audit sink: a bounded queue on the request path and one writer thread
//! that seals and writes lines.
//!
//! Request tasks only ever push into a bounded `tokio::sync::mpsc` channel
//! ([`AuditSink::submit`]); they never touch the disk. A single writer drains
//! the channel, seals each record into the hash chain (so hash order is file
//! order) and appends JSON lines. It batches by itself: it writes everything
//! already queued in one `write`, then naps for a tick (5 ms) and looks
//! again. While it naps it is not waiting on the channel, so a request that
//! queues a record does not have to wake it: under steady load the writer
//! wakes about once per tick instead of once per record (a cross-thread
//! wakeup costs the request's worker more than queueing does). A tick that
//! brings nothing parks the writer on the channel until the next record, so
//! an idle gateway has an idle writer and that next record is written at
//! once. Under load a record reaches the OS within one tick;
//! [`AuditSink::flush`] and shutdown cut the nap short.
//!
//! The writer runs on a dedicated OS thread with plain blocking file I/O:
//! `tokio::fs` would move every call to the blocking pool anyway, and a
//! thread of its own keeps a slow disk from stalling a runtime worker. The
//! same loop runs under pingora ([`BackgroundService`]) and without it
//! ([`AuditWriter::spawn`], for tests, the demo and the CLI).
//!
//! When the queue is full the [`OverflowPolicy`] decides (DESIGN invariant 5):
//! wait for space, or refuse the record and tell the caller. Nothing is
//! dropped silently: every record ends up written, or counted in
//! [`AuditStats`] as refused (never queued) or failed (lost to a write error,
//! which also leaves a `records_lost` record in the file once writing works
//! again).

use std::fs::{self, File, OpenOptions};
use std::future::Future;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::thread::Thread;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use time::OffsetDateTime;
use tokio::sync::mpsc::error::{TryRecvError, TrySendError};
use tokio::sync::{mpsc, oneshot};

use super::chain::{check_line, Chain, GENESIS};
use super::health::{admit, SinkState, Unavailable, WriteHealth};
use super::record::{AuditEvent, AuditRecord};
use super::signing::Signer;
use crate::decision::Verdict;

/// Where audit lines go (`audit.path`: a file, or `-` for stdout).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditTarget {
    Stdout,
    File(PathBuf),
}

/// What [`AuditSink::submit`] does when the queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverflowPolicy {
    /// Wait for queue space: the request's logging phase slows down instead
    /// of losing its record.
    Backpressure,
    /// Refuse the record at once with [`SubmitError::QueueFull`] (counted in
    /// [`AuditStats::refused`]), so the gateway can refuse new requests.
    FailClosed,
}

/// Size-based rotation of a file target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotateOptions {
    /// Rotate once the file holds at least this many bytes (checked after
    /// each batch, so a file may overshoot by one batch).
    pub max_size: u64,
    /// How many rotated files to keep; older ones are deleted.
    pub keep: usize,
}

/// How the sink behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditOptions {
    /// Queue capacity in records (at least 1).
    pub capacity: usize,
    pub overflow: OverflowPolicy,
    /// Add `prev_hash`/`hash` to every line.
    pub hash_chain: bool,
    /// Rotation of a file target; ignored for stdout.
    pub rotate: Option<RotateOptions>,
    /// Signed checkpoints of the chain (needs `hash_chain`).
    pub signing: Option<Signing>,
}

/// Sign the chain's head with `signer` at least every `every` while
/// records come in (see [`super::signing`]).
#[derive(Debug, Clone)]
pub struct Signing {
    pub signer: Arc<Signer>,
    pub every: Duration,
}

impl PartialEq for Signing {
    fn eq(&self, other: &Self) -> bool {
        self.signer.key_id() == other.signer.key_id() && self.every == other.every
    }
}

impl Eq for Signing {}

impl Default for AuditOptions {
    fn default() -> Self {
        AuditOptions {
            capacity: 8192,
            overflow: OverflowPolicy::Backpressure,
            hash_chain: true,
            rotate: None,
            signing: None,
        }
    }
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct AuditStats {
    written: AtomicU64,
    failed: AtomicU64,
    refused: AtomicU64,
}

/// Why a record was not accepted. The caller must count or act on it; the
/// record was not written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    #[error("audit queue is full; record refused (fail-closed)")]
    QueueFull,
    #[error("audit writer is not running; record refused")]
    WriterStopped,
}

/// What [`AuditSink::offer`] did with a record.
pub enum Offered<'a> {
    /// Queued, or refused (the error says why).
    Done(Result<(), SubmitError>),
    /// The queue is full and the policy is `Backpressure`: await this for
    /// room (it ends queued, or refused if the writer stops meanwhile).
    Wait(Pin<Box<dyn Future<Output = Result<(), SubmitError>> + Send + 'a>>),
}

/// Why [`AuditSink::flush`] could not confirm that every record submitted
/// before it is in the file.
#[derive(Debug, thiserror::Error)]
pub enum FlushError {
    #[error("audit writer is not running")]
    WriterStopped,
    #[error("audit write failed: {0}")]
    Io(#[from] io::Error),
}

/// The request path's handle on the audit queue. Cheap to clone; the writer
/// stops once every clone is dropped and the queue is drained.
#[derive(Debug, Clone)]
pub struct AuditSink {
    inner: Arc<SinkShared>,
}

/// The background half: owns the file and the chain. Start it exactly once,
/// as a pingora [`BackgroundService`] or with [`AuditWriter::spawn`]; until
/// then records only queue up (and with `Backpressure` a full queue waits).
#[derive(Debug)]
pub struct AuditWriter {
    state: Mutex<Option<WriterState>>,
    stats: Arc<AuditStats>,
    /// Weak so that the writer itself never keeps the queue open: the loop
    /// ends when the last [`AuditSink`] is dropped.
    tx: mpsc::WeakSender<Command>,
    thread: Arc<WriterThread>,
}

/// Opens the target and builds the sink/writer pair.
///
/// The file is opened (append, create, mode 0600 on unix) here, so an
/// unwritable audit path is a startup error. With the hash chain on, the
/// chain continues from the last line of the existing file (or, if the file
/// is empty and rotation is on, of the newest rotated file). If that line is
/// unusable, the first record written is a `chain_restart` event starting a
/// new segment from the genesis hash.
pub fn audit_channel(
    target: AuditTarget,
    options: AuditOptions,
) -> io::Result<(AuditSink, AuditWriter)> {
    let (out, resume) = match target {
        AuditTarget::Stdout => (Output::Stdout, Resume::default()),
        AuditTarget::File(path) => {
            let file = open_append(&path)?;
            let len = file.metadata()?.len();
            // Read now so that an unreadable file is a startup error; read
            // again by the writer once the file is its own (see
            // `take_over`), as another process may still be writing it.
            last_line(&path, len)?;
            (Output::File { file, path, len }, Resume::default())
        }
    };
    Ok(channel_with(out, resume, options))
}

/// The sink/writer pair over an opened output.
fn channel_with(out: Output, resume: Resume, options: AuditOptions) -> (AuditSink, AuditWriter) {
    let (tx, rx) = mpsc::channel(options.capacity.max(1));
    let stats = Arc::new(AuditStats::default());
    let thread = Arc::new(WriterThread::default());
    let health = Arc::new(WriteHealth::default());
    let state = WriterState {
        rx,
        thread: Arc::clone(&thread),
        tick: BATCH_TICK,
        retry: RETRY_INTERVAL,
        health: Arc::clone(&health),
        out,
        chain: options.hash_chain.then(|| Chain::resume(resume.prev)),
        since: resume.prev,
        opened: false,
        rotate: options.rotate,
        stats: Arc::clone(&stats),
        buf: Vec::with_capacity(BATCH_BYTES + 4096),
        pending: Vec::new(),
        batch_prev: GENESIS,
        lost: 0,
        last_error: String::new(),
        torn: resume.torn,
        startup: resume.restart,
        error_log: ErrorLog::default(),
        signing: options.signing.filter(|_| options.hash_chain),
        unsigned: 0,
        ticker: tx.downgrade(),
        ticker_every: Arc::default(),
        #[cfg(test)]
        probe: None,
    };
    let writer = AuditWriter {
        state: Mutex::new(Some(state)),
        stats: Arc::clone(&stats),
        tx: tx.downgrade(),
        thread: Arc::clone(&thread),
    };
    let sink = AuditSink {
        inner: Arc::new(SinkShared {
            tx,
            overflow: options.overflow,
            stats,
            thread,
            health,
        }),
    };
    (sink, writer)
}

impl AuditSink {
    /// Queues one record. Never does I/O. When the queue has room the record
    /// is queued at once, without awaiting; when it is full, `Backpressure`
    /// waits for space and `FailClosed` refuses the record. Every refusal is
    /// counted in [`AuditStats::refused`].
    pub async fn submit(&self, record: AuditRecord) -> Result<(), SubmitError> {
        match self.offer(record) {
            Offered::Done(result) => result,
            Offered::Wait(room) => room.await,
        }
    }

    /// [`AuditSink::submit`] without a future on the common path: the
    /// record is queued (or refused) before this returns, and only a record
    /// that finds the queue full under `Backpressure` comes back as a boxed
    /// wait for room. The request path uses this so that its own future
    /// stays small: pingora copies every hook's future into a box, and an
    /// inline wait would hold the record and a channel send in it.
    pub fn offer(&self, record: AuditRecord) -> Offered<'_> {
        let result = match self.inner.tx.try_send(Command::Record(record)) {
            Ok(()) => {
                // A failing writer polls instead of waiting on the queue;
                // a record is a write to retry at once.
                if self.inner.health.failing() {
                    self.inner.thread.wake();
                }
                Ok(())
            }
            Err(TrySendError::Closed(_)) => Err(SubmitError::WriterStopped),
            Err(TrySendError::Full(command)) => match self.inner.overflow {
                OverflowPolicy::Backpressure => {
                    return Offered::Wait(Box::pin(self.wait_for_room(command)))
                }
                OverflowPolicy::FailClosed => Err(SubmitError::QueueFull),
            },
        };
        Offered::Done(self.counted(result))
    }

    async fn wait_for_room(&self, command: Command) -> Result<(), SubmitError> {
        let result = self
            .inner
            .tx
            .send(command)
            .await
            .map_err(|_| SubmitError::WriterStopped);
        self.counted(result)
    }

    fn counted(&self, result: Result<(), SubmitError>) -> Result<(), SubmitError> {
        if result.is_err() {
            self.inner.stats.refused.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// Waits until every record submitted before this call is written to the
    /// target and synced to disk (`fdatasync` for a file). Waits for queue space under
    /// either policy. For tests, the CLI and shutdown; not for the request path.
    pub async fn flush(&self) -> Result<(), FlushError> {
        let (ack, done) = oneshot::channel();
        self.inner
            .tx
            .send(Command::Flush(ack))
            .await
            .map_err(|_| FlushError::WriterStopped)?;
        // A napping writer would see the request only after its tick.
        self.inner.thread.wake();
        done.await.map_err(|_| FlushError::WriterStopped)??;
        Ok(())
    }

    /// Signs the chain with `signing` from now on: the old key signs what it
    /// has not yet, the new one seals a checkpoint of its own, and both are
    /// on disk when this returns. For a reload that changed the signing
    /// key; the writer must have been signing since it started.
    pub async fn rekey(&self, signing: Signing) -> Result<(), FlushError> {
        let (ack, done) = oneshot::channel();
        self.inner
            .tx
            .send(Command::Rekey(signing, ack))
            .await
            .map_err(|_| FlushError::WriterStopped)?;
        self.inner.thread.wake();
        done.await.map_err(|_| FlushError::WriterStopped)??;
        Ok(())
    }

    /// For the process's last moments, after pingora's runtimes are gone:
    /// everything queued is written, the chain signed (a `checkpoint`, with
    /// signing on) and synced, waiting at most `limit`. True when the writer
    /// confirmed it. Without this a stop would end the writer thread with
    /// the process, its last records unsigned or unwritten.
    pub fn finish_blocking(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let (ack, mut done) = oneshot::channel();
        let mut command = Command::Shutdown(ack);
        loop {
            match self.inner.tx.try_send(command) {
                Ok(()) => break,
                Err(TrySendError::Closed(_)) => return false,
                Err(TrySendError::Full(c)) => command = c,
            }
            self.inner.thread.wake();
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        self.inner.thread.wake();
        loop {
            match done.try_recv() {
                Ok(()) => return true,
                Err(oneshot::error::TryRecvError::Closed) => return false,
                Err(oneshot::error::TryRecvError::Empty) => {}
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    pub fn stats(&self) -> &AuditStats {
        &self.inner.stats
    }

    /// Records (and flush requests) waiting in the queue, for `/metrics`.
    pub fn queued(&self) -> usize {
        self.inner.tx.max_capacity() - self.inner.tx.capacity()
    }

    pub fn overflow_policy(&self) -> OverflowPolicy {
        self.inner.overflow
    }

    /// Whether a new request may be served now (DESIGN invariant 5): under
    /// `FailClosed`, not while the last write failed, the queue is full or
    /// the writer is gone; under `Backpressure`, always. See
    /// [`super::health`].
    pub fn admission(&self) -> Result<(), Unavailable> {
        let tx = &self.inner.tx;
        admit(
            self.inner.overflow,
            SinkState {
                writes_failing: self.inner.health.failing(),
                queue_full: tx.capacity() == 0,
                writer_stopped: tx.is_closed(),
            },
        )
    }
}

impl AuditWriter {
    /// Runs the writer loop on its own thread, without a pingora server. The
    /// thread ends once every [`AuditSink`] is dropped and the queue is
    /// written out; join it to be sure the file is complete.
    pub fn spawn(self) -> io::Result<std::thread::JoinHandle<()>> {
        let state = self.take_state()?;
        spawn_thread(state, || {})
    }

    /// The same counters the sinks see.
    pub fn stats(&self) -> Arc<AuditStats> {
        Arc::clone(&self.stats)
    }

    fn take_state(&self) -> io::Result<WriterState> {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .ok_or_else(|| io::Error::other("audit writer already started"))
    }

    /// Asks the loop to write out what is queued and sync, and waits for it.
    async fn drain(&self) {
        let Some(tx) = self.tx.upgrade() else {
            return; // every sink is gone: the loop drains and ends by itself
        };
        let (ack, done) = oneshot::channel();
        if tx.send(Command::Shutdown(ack)).await.is_ok() {
            drop(tx);
            self.thread.wake();
            let _ = done.await;
        }
    }
}

/// Under pingora: on shutdown, everything queued is written and synced
/// before `start` returns. The thread keeps running afterwards, so requests
/// that finish during pingora's grace period still get their record (each
/// written as soon as the queue empties); it ends with the process or when
/// the last sink is dropped.
#[async_trait]
impl BackgroundService for AuditWriter {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let (done_tx, done_rx) = oneshot::channel::<()>();
        let started = self.take_state().and_then(|state| {
            spawn_thread(state, move || {
                let _ = done_tx.send(());
            })
        });
        if let Err(e) = started {
            // Records will be refused with WriterStopped, so this is loud twice.
            tracing::error!(error = %e, "audit writer failed to start");
            return;
        }
        tokio::select! {
            _ = done_rx => {}
            () = shutdown_requested(&mut shutdown) => {
                self.drain().await;
                tracing::info!("audit queue drained for shutdown");
            }
        }
    }
}

impl AuditStats {
    /// Records written to the target.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Records accepted into the queue but lost to write errors.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// Records never queued (full queue under `FailClosed`, or writer stopped).
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

// ---------------------------------------------------------------------------
// Internals.

/// Bytes buffered before a write even if the queue is not yet empty.
const BATCH_BYTES: usize = 256 * 1024;
/// How long the writer naps between batches while records keep coming. Each
/// wakeup of a parked writer costs the request's worker a futex wake and
/// the writer a context switch; napping a tick instead turns one wakeup per
/// record into at most one per tick (two hundred a second, far below the
/// request rate at which this matters). On the 2-core load bench, where the
/// writer shares the worker's core, 5 ms instead of 1 ms cut a cached-token
/// request's CPU by about a tenth (fewer switches, each of which evicts the
/// worker's cache). Five milliseconds keeps what a crash can take with it
/// (records queued but not yet written) to about 5 ms of traffic, well
/// inside the slack of a queue of thousands of records; `flush` and
/// shutdown do not wait for the tick.
const BATCH_TICK: Duration = Duration::from_millis(5);
/// How often an idle writer whose last write failed tries again (by writing
/// the `records_lost` note it owes): without it, a gateway refusing traffic
/// under `fail_closed` (and so taken out of rotation by `/readyz`) would
/// never get the record that shows the disk is back.
const RETRY_INTERVAL: Duration = Duration::from_secs(1);
/// At most one write-error log line per interval (a full disk fails every batch).
const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(10);
/// How much of the end of a file is read to find its last line at startup.
const TAIL_BYTES: u64 = 64 * 1024;

#[derive(Debug)]
struct SinkShared {
    tx: mpsc::Sender<Command>,
    overflow: OverflowPolicy,
    stats: Arc<AuditStats>,
    thread: Arc<WriterThread>,
    health: Arc<WriteHealth>,
}

/// The writer's thread, known once it runs, so that a flush or a shutdown
/// can end its nap instead of waiting out the tick.
#[derive(Debug, Default)]
struct WriterThread(OnceLock<Thread>);

impl WriterThread {
    /// Ends the writer's current nap, or its next one if it is not napping
    /// (the park token is kept), so a command queued just before can never
    /// wait a whole tick. Before the thread is registered there is nothing to
    /// cut short: the writer has not napped yet and will see the command.
    fn wake(&self) {
        if let Some(thread) = self.0.get() {
            thread.unpark();
        }
    }
}

// Records are the common case; boxing them would add an allocation per request.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Command {
    Record(AuditRecord),
    Flush(oneshot::Sender<io::Result<()>>),
    Shutdown(oneshot::Sender<()>),
    /// Time for a signed checkpoint, if anything is unsigned.
    Checkpoint,
    /// Sign with another key from now on (a reload changed
    /// `audit.signing_key` or `checkpoint_every`); acknowledged once the
    /// change is written and synced.
    Rekey(Signing, oneshot::Sender<io::Result<()>>),
}

#[derive(Debug)]
enum Output {
    Stdout,
    File {
        file: File,
        path: PathBuf,
        len: u64,
    },
    /// A disk a test can fill and empty.
    #[cfg(test)]
    Test(Arc<tests::TestDisk>),
}

/// What a record in the current batch is, for accounting on failure.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// Submitted by a caller: counts in `written` or `failed`.
    Submitted,
    /// A `records_lost` note carrying this many earlier losses.
    Gap(u64),
    /// Writer bookkeeping (`chain_restart`).
    Note,
}

#[derive(Debug)]
struct Pending {
    /// Offset in the batch buffer just past this record's newline.
    end: usize,
    hash: [u8; 32],
    kind: Kind,
}

#[derive(Debug)]
struct WriterState {
    rx: mpsc::Receiver<Command>,
    thread: Arc<WriterThread>,
    /// [`BATCH_TICK`]; tests lengthen it to make naps observable.
    tick: Duration,
    /// [`RETRY_INTERVAL`].
    retry: Duration,
    /// Whether the last write failed, for the request path.
    health: Arc<WriteHealth>,
    out: Output,
    chain: Option<Chain>,
    rotate: Option<RotateOptions>,
    stats: Arc<AuditStats>,
    buf: Vec<u8>,
    pending: Vec<Pending>,
    /// Chain head before the current batch, to roll back to on failure.
    batch_prev: [u8; 32],
    /// Records lost to write errors and not yet noted in the file.
    lost: u64,
    last_error: String,
    /// The target ends in a partial line: start the next write with '\n'.
    torn: bool,
    /// A `chain_restart` record to write before anything else.
    startup: Option<AuditRecord>,
    error_log: ErrorLog,
    signing: Option<Signing>,
    /// The chain's head when this process took it over: its checkpoints
    /// vouch for the records after it, never for what the file held at
    /// startup (see [`super::signing`]).
    since: [u8; 32],
    /// Nothing but the opening checkpoint went into the current file yet.
    opened: bool,
    /// Records sealed since the last checkpoint.
    unsigned: u64,
    /// For the checkpoint ticker (weak: it must not keep the queue open).
    ticker: mpsc::WeakSender<Command>,
    /// The ticker's interval, which a rekey may change.
    ticker_every: Arc<TickerEvery>,
    /// Where the loop reports its steps, so tests can follow it without sleeping.
    #[cfg(test)]
    probe: Option<std::sync::mpsc::Sender<Step>>,
}

/// One step of the writer loop, as reported to a test's probe.
#[cfg_attr(not(test), allow(dead_code))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// A batch went to the target, with this many submitted records.
    Batch(u64),
    /// The writer naps for a tick.
    Nap,
    /// The writer waits on the queue until the next command.
    Park,
    /// An idle writer whose last write failed tried again.
    Retry,
    /// The checkpoint timer came; `signed`: a checkpoint was sealed.
    Checkpoint { signed: bool },
    /// Another process holds the audit file: the writer waits for it.
    Waiting,
}

#[derive(Debug, Default)]
struct Resume {
    prev: [u8; 32],
    torn: bool,
    restart: Option<AuditRecord>,
}

#[derive(Debug, Default)]
struct ErrorLog {
    last: Option<Instant>,
    suppressed: u64,
}

fn spawn_thread(
    state: WriterState,
    on_exit: impl FnOnce() + Send + 'static,
) -> io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("chatwarden-audit".into())
        .spawn(move || {
            state.run();
            on_exit();
        })
}

/// How often the ticker asks for a checkpoint, in nanoseconds.
#[derive(Debug, Default)]
struct TickerEvery(AtomicU64);

impl TickerEvery {
    fn set(&self, every: Duration) {
        let nanos = u64::try_from(every.as_nanos()).unwrap_or(u64::MAX);
        self.0.store(nanos, Ordering::Relaxed);
    }

    fn get(&self) -> Duration {
        Duration::from_nanos(self.0.load(Ordering::Relaxed))
    }
}

/// Asks the writer for a checkpoint every `every` (read again after each
/// tick: a rekey may change it), until the queue is gone. A full queue
/// skips a tick: the writer is busy, and the next tick comes soon enough.
fn spawn_ticker(tx: mpsc::WeakSender<Command>, every: Arc<TickerEvery>) {
    let spawned = std::thread::Builder::new()
        .name("chatwarden-audit-checkpoints".into())
        .spawn(move || loop {
            std::thread::sleep(every.get());
            let Some(tx) = tx.upgrade() else { return };
            if let Err(TrySendError::Closed(_)) = tx.try_send(Command::Checkpoint) {
                return;
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the audit checkpoint timer; checkpoints come at shutdown and rotation only");
    }
}

/// Resolves when the server asks to shut down (or its watch is gone).
async fn shutdown_requested(shutdown: &mut ShutdownWatch) {
    while !*shutdown.borrow_and_update() {
        if shutdown.changed().await.is_err() {
            return;
        }
    }
}

impl WriterState {
    fn run(mut self) {
        // Before the first nap, so that every nap can be cut short.
        if self.thread.0.set(std::thread::current()).is_err() {
            // Unreachable: the state is taken once, so one thread runs it.
            tracing::warn!("audit writer thread registered twice");
        }
        self.take_over();
        if let Some(record) = self.startup.take() {
            self.append(record, Kind::Note);
        }
        if let Some(signing) = &self.signing {
            self.ticker_every.set(signing.every);
            spawn_ticker(self.ticker.clone(), Arc::clone(&self.ticker_every));
            // The file is signed from its first line on, so a file younger
            // than `checkpoint_every` verifies too.
            self.open_checkpoint();
            self.commit();
        }
        loop {
            let Some(command) = self.next_command() else {
                break;
            };
            self.handle(command);
            loop {
                self.drain_queued();
                // The queue is momentarily empty: hand the batch to the OS now.
                self.commit();
                // Let the next records gather while nobody needs to wake us.
                self.probe(Step::Nap);
                std::thread::park_timeout(self.tick);
                match self.rx.try_recv() {
                    Ok(command) => self.handle(command),
                    // Nothing came in a whole tick: park on the queue until
                    // the next command (or, once every sink is gone, end).
                    Err(_) => break,
                }
            }
        }
        self.checkpoint();
        self.commit();
        if let Err(e) = self.out.sync() {
            tracing::error!(error = %e, "audit file sync failed at exit");
        }
    }

    /// Makes the file this writer's alone (an exclusive `flock`), then
    /// continues its chain from its last line. A graceful upgrade's old
    /// process writes its last records (and signs them) while the new one
    /// starts: the new one waits for it, rather than forking the chain
    /// from the line it saw at startup. So does a second gateway pointed at
    /// the same file, loudly. Records queue meanwhile, as for a slow disk.
    fn take_over(&mut self) {
        let Output::File { file, path, len } = &mut self.out else {
            return;
        };
        #[cfg(test)]
        let probe = self.probe.clone();
        let on_wait = || {
            #[cfg(test)]
            if let Some(probe) = &probe {
                let _ = probe.send(Step::Waiting);
            }
        };
        if let Err(e) = lock_current(path, file, on_wait) {
            tracing::error!(error = %e, path = %path.display(), "cannot lock the audit file; another process writing it would fork the hash chain");
        }
        let read = file.metadata().map(|m| m.len()).and_then(|n| {
            *len = n;
            if self.chain.is_some() {
                resume_chain(path, n, self.rotate.is_some())
            } else {
                Ok(Resume {
                    torn: last_line(path, n)?.is_some_and(|(_, complete)| !complete),
                    ..Resume::default()
                })
            }
        });
        let resume = match read {
            Ok(resume) => resume,
            Err(e) => {
                tracing::error!(error = %e, path = %path.display(), "cannot read the end of the audit file; starting a new hash-chain segment");
                Resume {
                    restart: Some(AuditRecord::event(
                        OffsetDateTime::now_utc(),
                        AuditEvent::ChainRestart,
                        Verdict::Allow,
                        format!(
                            "previous last line unreadable ({e}); new chain segment from genesis"
                        ),
                    )),
                    ..Resume::default()
                }
            }
        };
        if let Some(chain) = &mut self.chain {
            *chain = Chain::resume(resume.prev);
        }
        self.since = resume.prev;
        self.torn = resume.torn;
        self.startup = resume.restart;
    }

    /// Seals a signed checkpoint of the chain's head into the batch, when
    /// signing is on and records were sealed since the last one.
    fn checkpoint(&mut self) {
        if self.unsigned > 0 {
            self.seal_checkpoint();
        }
    }

    /// The checkpoint a file opens with (startup, rotation), whether or
    /// not anything is unsigned.
    fn open_checkpoint(&mut self) {
        if self.seal_checkpoint() {
            self.opened = true;
        }
    }

    /// Signs with `signing` from here on. What the old key has not signed
    /// yet it signs now; the new key seals a checkpoint at once, so the
    /// file shows where one key hands over to the other and nothing is
    /// left between them. Both vouch from the same `since`: this process
    /// wrote everything after it. The change is synced before it is
    /// acknowledged.
    fn rekey(&mut self, signing: Signing) -> io::Result<()> {
        if self.signing.is_none() {
            // Checkpoints began (or not) with the process; a reload cannot
            // start them (see `Reloader::adopt`).
            return Err(io::Error::other("signing is off in this process"));
        }
        self.checkpoint();
        self.ticker_every.set(signing.every);
        self.signing = Some(signing);
        self.seal_checkpoint();
        match self.commit() {
            Some(e) => Err(e),
            None => self.out.sync(),
        }
    }

    fn seal_checkpoint(&mut self) -> bool {
        let (Some(signing), Some(chain)) = (&self.signing, &self.chain) else {
            return false;
        };
        let record = signing
            .signer
            .checkpoint(&chain.prev(), &self.since, self.unsigned);
        self.append(record, Kind::Note);
        self.unsigned = 0;
        true
    }

    /// Waits for the next command: parked on the queue while writes work;
    /// while they fail, waking every `retry` to try again with the
    /// `records_lost` note, so the sink recovers without traffic. `None`
    /// once every sink is gone.
    fn next_command(&mut self) -> Option<Command> {
        loop {
            if !self.health.failing() {
                self.probe(Step::Park);
                return self.rx.blocking_recv();
            }
            match self.rx.try_recv() {
                Ok(command) => return Some(command),
                Err(TryRecvError::Disconnected) => return None,
                Err(TryRecvError::Empty) => {}
            }
            std::thread::park_timeout(self.retry);
            match self.rx.try_recv() {
                Ok(command) => return Some(command),
                Err(TryRecvError::Disconnected) => return None,
                Err(TryRecvError::Empty) => {
                    self.retry_write();
                    self.probe(Step::Retry);
                }
            }
        }
    }

    /// Tries the failed target again: writes the `records_lost` note owed
    /// for what was lost. With nothing lost (only writer bookkeeping
    /// failed), there is nothing to write: the next record tells.
    fn retry_write(&mut self) {
        if self.lost == 0 {
            self.health.record(true);
            return;
        }
        self.note_gap();
        self.commit();
    }

    /// Queues the `records_lost` note for everything lost so far.
    fn note_gap(&mut self) {
        let lost = std::mem::take(&mut self.lost);
        let note = AuditRecord::event(
            OffsetDateTime::now_utc(),
            AuditEvent::RecordsLost,
            Verdict::Error,
            format!(
                "{lost} audit records lost to write errors before this one; last error: {}",
                self.last_error
            ),
        );
        self.append(note, Kind::Gap(lost));
    }

    /// Takes whatever is already queued into the batch, writing early only
    /// when the batch is large.
    fn drain_queued(&mut self) {
        while let Ok(command) = self.rx.try_recv() {
            self.handle(command);
            if self.buf.len() >= BATCH_BYTES {
                self.commit();
            }
        }
    }

    #[cfg(test)]
    fn probe(&self, step: Step) {
        if let Some(probe) = &self.probe {
            let _ = probe.send(step);
        }
    }

    #[cfg(not(test))]
    fn probe(&self, _step: Step) {}

    fn handle(&mut self, command: Command) {
        match command {
            Command::Record(record) => {
                if self.lost > 0 {
                    self.note_gap();
                }
                self.append(record, Kind::Submitted);
            }
            Command::Flush(ack) => {
                // A flush is a write: after a failure it retries with the
                // gap note, and says whether the target works again.
                if self.lost > 0 && self.buf.is_empty() {
                    self.note_gap();
                }
                let result = match self.commit() {
                    Some(e) => Err(e),
                    None => self.out.sync(),
                };
                let _ = ack.send(result);
            }
            Command::Checkpoint => {
                let owed = self.unsigned > 0;
                self.checkpoint();
                self.probe(Step::Checkpoint { signed: owed });
            }
            Command::Rekey(signing, ack) => {
                let _ = ack.send(self.rekey(signing));
            }
            Command::Shutdown(ack) => {
                self.checkpoint();
                if self.commit().is_none() {
                    if let Err(e) = self.out.sync() {
                        tracing::error!(error = %e, "audit file sync failed at shutdown");
                    }
                }
                let _ = ack.send(());
            }
        }
    }

    /// Serializes (and seals) one record into the batch buffer.
    fn append(&mut self, mut record: AuditRecord, kind: Kind) {
        let hash = match &mut self.chain {
            Some(chain) => {
                if self.pending.is_empty() {
                    self.batch_prev = chain.prev();
                }
                chain.seal_into(&mut record, &mut self.buf)
            }
            None => {
                record.write_json(&mut self.buf);
                GENESIS
            }
        };
        self.buf.push(b'\n');
        self.opened = false;
        self.pending.push(Pending {
            end: self.buf.len(),
            hash,
            kind,
        });
        self.unsigned += 1;
    }

    /// Writes the batch (retrying once), accounts for every record in it and
    /// rotates if due. Returns the write error, if the batch was not fully written.
    fn commit(&mut self) -> Option<io::Error> {
        let error = self.write_batch();
        if error.is_none() {
            self.rotate_if_due();
        }
        error
    }

    /// [`commit`](Self::commit) without the rotation.
    fn write_batch(&mut self) -> Option<io::Error> {
        if self.buf.is_empty() {
            return None;
        }
        if self.torn {
            let (n, err) = self.out.write_counting(b"\n");
            self.torn = n == 0 || err.is_some();
        }
        let (mut written, mut error) = if self.torn {
            (0, Some(io::Error::other("cannot terminate a partial line")))
        } else {
            self.out.write_counting(&self.buf)
        };
        if error.is_some() && !self.torn {
            // One retry: transient errors (EINTR is already handled, but
            // e.g. a briefly full disk) often clear at once.
            let (n, retry_error) = self.out.write_counting(&self.buf[written..]);
            written += n;
            error = retry_error;
        }
        let complete = self.pending.iter().take_while(|p| p.end <= written).count();
        let mut submitted_ok = 0;
        for p in &self.pending[..complete] {
            if matches!(p.kind, Kind::Submitted) {
                submitted_ok += 1;
            }
        }
        self.stats
            .written
            .fetch_add(submitted_ok, Ordering::Relaxed);
        self.probe(Step::Batch(submitted_ok));
        if let Some(e) = &error {
            self.account_failure(complete, written, e);
        }
        if self.health.record(error.is_none()) {
            if error.is_none() {
                tracing::warn!("audit writes work again");
            } else {
                tracing::error!("audit writes are failing");
            }
        }
        self.buf.clear();
        self.pending.clear();
        error
    }

    fn account_failure(&mut self, complete: usize, written: usize, error: &io::Error) {
        let boundary = complete
            .checked_sub(1)
            .map_or(0, |last| self.pending[last].end);
        if written > boundary && !self.out.cut_back((written - boundary) as u64) {
            self.torn = true;
        }
        let mut failed = 0;
        for p in &self.pending[complete..] {
            match p.kind {
                Kind::Submitted => failed += 1,
                Kind::Gap(n) => self.lost += n,
                Kind::Note => {}
            }
        }
        self.lost += failed;
        self.stats.failed.fetch_add(failed, Ordering::Relaxed);
        // Continue the chain from the last record that reached the file, so
        // the file keeps verifying and the next record notes the gap.
        if let Some(chain) = &mut self.chain {
            let head = complete
                .checked_sub(1)
                .map_or(self.batch_prev, |last| self.pending[last].hash);
            *chain = Chain::resume(head);
        }
        self.last_error = error.to_string();
        self.error_log.error(error, self.lost);
        // A checkpoint in the failed part is lost with it: sign again.
        self.unsigned += 1;
    }

    fn rotate_if_due(&mut self) {
        let Some(rotate) = self.rotate else { return };
        let Output::File { len, .. } = &self.out else {
            return;
        };
        // A file holding only its opening checkpoint is not rotated again.
        if *len < rotate.max_size || self.opened {
            return;
        }
        // Each rotated file ends signed.
        if self.signing.is_some() && self.unsigned > 0 {
            self.checkpoint();
            if self.write_batch().is_some() {
                return;
            }
        }
        let Output::File { file, path, len } = &mut self.out else {
            return;
        };
        match rotate_file(path, rotate.keep) {
            Ok(new_file) => {
                *file = new_file;
                *len = 0;
            }
            Err(e) => {
                tracing::error!(error = %e, path = %path.display(), "audit rotation failed");
                return;
            }
        }
        // The new file opens signed as well.
        if self.signing.is_some() {
            self.open_checkpoint();
            self.write_batch();
        }
    }
}

impl Output {
    /// Writes as much of `bytes` as possible; returns how much was written
    /// and the error that stopped it, if any.
    fn write_counting(&mut self, bytes: &[u8]) -> (usize, Option<io::Error>) {
        let mut written = 0;
        let mut stdout;
        let w: &mut dyn Write = match self {
            Output::Stdout => {
                stdout = io::stdout().lock();
                &mut stdout
            }
            Output::File { file, .. } => file,
            #[cfg(test)]
            Output::Test(disk) => return disk.write(bytes),
        };
        let mut error = None;
        while written < bytes.len() {
            match w.write(&bytes[written..]) {
                Ok(0) => {
                    error = Some(io::Error::from(io::ErrorKind::WriteZero));
                    break;
                }
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
        if error.is_none() {
            error = w.flush().err();
        }
        if let Output::File { len, .. } = self {
            *len += written as u64;
        }
        (written, error)
    }

    /// Removes the last `n` bytes (a torn line). False if that is impossible.
    fn cut_back(&mut self, n: u64) -> bool {
        match self {
            Output::Stdout => false,
            Output::File { file, len, .. } => {
                let new_len = len.saturating_sub(n);
                match file.set_len(new_len) {
                    Ok(()) => {
                        *len = new_len;
                        true
                    }
                    Err(_) => false,
                }
            }
            #[cfg(test)]
            Output::Test(disk) => disk.cut_back(n),
        }
    }

    fn sync(&mut self) -> io::Result<()> {
        match self {
            Output::Stdout => io::stdout().lock().flush(),
            Output::File { file, .. } => match file.sync_data() {
                // A pipe or socket (a log shipper's FIFO) has nothing to
                // sync; the kernel says so with EINVAL.
                Err(e) if e.kind() == io::ErrorKind::InvalidInput => Ok(()),
                other => other,
            },
            #[cfg(test)]
            Output::Test(_) => Ok(()),
        }
    }
}

impl ErrorLog {
    fn error(&mut self, error: &io::Error, lost: u64) {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < ERROR_LOG_INTERVAL)
        {
            self.suppressed += 1;
            return;
        }
        tracing::error!(
            error = %error,
            lost_records = lost,
            suppressed_errors = self.suppressed,
            "audit write failed"
        );
        self.last = Some(now);
        self.suppressed = 0;
    }
}

/// Takes the exclusive lock of the file at `path`, waiting for the process
/// holding it; `file` ends up being that file, opened again when it was
/// rotated away or replaced meanwhile.
fn lock_current(path: &Path, file: &mut File, on_wait: impl Fn()) -> io::Result<()> {
    let mut told = false;
    loop {
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                on_wait();
                if !told {
                    tracing::warn!(path = %path.display(), "the audit file is being written by another process (a graceful upgrade's old process finishing, or a second gateway on the same file): waiting for it");
                    told = true;
                }
                file.lock()?;
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
        if is_file_at(file, path)? {
            if told {
                tracing::info!(path = %path.display(), "the audit file is free: writing");
            }
            return Ok(());
        }
        *file = open_append(path)?;
    }
}

/// Whether `file` is (still) the file at `path`.
fn is_file_at(file: &File, path: &Path) -> io::Result<bool> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let (open, named) = match fs::metadata(path) {
            Ok(named) => (file.metadata()?, named),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        Ok((open.dev(), open.ino()) == (named.dev(), named.ino()))
    }
    #[cfg(not(unix))]
    {
        let _ = (file, path);
        Ok(true)
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // The audit trail names people and what they touched: owner only.
        options.mode(0o600);
    }
    options.open(path)
}

/// Where the chain of an existing target continues.
fn resume_chain(path: &Path, len: u64, rotated_siblings: bool) -> io::Result<Resume> {
    let Some((line, complete)) = last_line(path, len)? else {
        // An empty file continues the newest rotated file's chain, so a
        // restart right after a rotation keeps the files linked.
        if rotated_siblings {
            if let Some(newest) = rotated_files(path)?.pop() {
                let newest_len = fs::metadata(&newest)?.len();
                if let Some((line, true)) = last_line(&newest, newest_len)? {
                    if let Ok(link) = check_line(&line) {
                        return Ok(Resume {
                            prev: link.hash,
                            ..Resume::default()
                        });
                    }
                }
            }
        }
        return Ok(Resume::default());
    };
    let problem = if complete {
        match check_line(&line) {
            Ok(link) => {
                return Ok(Resume {
                    prev: link.hash,
                    ..Resume::default()
                })
            }
            Err(e) => e.to_string(),
        }
    } else {
        "it is cut short (no final newline)".to_string()
    };
    tracing::warn!(
        path = %path.display(),
        problem = %problem,
        "last audit line is unusable; starting a new hash-chain segment"
    );
    let restart = AuditRecord::event(
        OffsetDateTime::now_utc(),
        AuditEvent::ChainRestart,
        Verdict::Allow,
        format!("previous last line unusable ({problem}); new chain segment from genesis"),
    );
    Ok(Resume {
        prev: GENESIS,
        torn: !complete,
        restart: Some(restart),
    })
}

/// The last line of a file (without its newline) and whether it ended with one.
fn last_line(path: &Path, len: u64) -> io::Result<Option<(Vec<u8>, bool)>> {
    // Devices such as /dev/null report length 0; never read them.
    if len == 0 {
        return Ok(None);
    }
    let mut file = File::open(path)?;
    let start = len.saturating_sub(TAIL_BYTES);
    file.seek(SeekFrom::Start(start))?;
    let mut tail = Vec::with_capacity((len - start) as usize);
    file.take(len - start).read_to_end(&mut tail)?;
    let complete = tail.last() == Some(&b'\n');
    if complete {
        tail.pop();
    }
    let line = match tail.iter().rposition(|&b| b == b'\n') {
        Some(pos) => tail.split_off(pos + 1),
        // Longer than the tail window: not a line this writer produced.
        None if start > 0 => return Ok(Some((Vec::new(), complete))),
        None => tail,
    };
    Ok(Some((line, complete)))
}

/// Renames `path` to `path.<UTC timestamp>`, opens a fresh `path`, prunes
/// old rotated files down to `keep`.
fn rotate_file(path: &Path, keep: usize) -> io::Result<File> {
    let stamp = OffsetDateTime::now_utc();
    let base = format!(
        "{}.{:04}{:02}{:02}T{:02}{:02}{:02}.{:03}Z",
        path.display(),
        stamp.year(),
        u8::from(stamp.month()),
        stamp.day(),
        stamp.hour(),
        stamp.minute(),
        stamp.second(),
        stamp.millisecond()
    );
    // Two rotations in one millisecond get a counter suffix, which still
    // sorts after the plain name.
    let mut rotated = PathBuf::from(&base);
    let mut n = 0;
    while rotated.exists() {
        n += 1;
        rotated = PathBuf::from(format!("{base}.{n}"));
    }
    fs::rename(path, &rotated)?;
    // Locked before the caller lets go of the old file (and its lock): a
    // process waiting for that lock then finds this one taken.
    let file = match open_append(path).and_then(|f| {
        f.try_lock().map_err(io::Error::from)?;
        Ok(f)
    }) {
        Ok(file) => file,
        Err(e) => {
            // Put the old file back so writing continues where it was.
            let _ = fs::rename(&rotated, path);
            return Err(e);
        }
    };
    let mut old = rotated_files(path)?;
    let excess = old.len().saturating_sub(keep);
    for stale in old.drain(..excess) {
        if let Err(e) = fs::remove_file(&stale) {
            tracing::warn!(error = %e, path = %stale.display(), "cannot delete old audit file");
        }
    }
    Ok(file)
}

/// Rotated siblings of `path` (`path.<digit>…`), oldest first.
fn rotated_files(path: &Path) -> io::Result<Vec<PathBuf>> {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return Ok(Vec::new());
    };
    let prefix = format!("{name}.");
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut found = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else {
            continue;
        };
        if file_name
            .strip_prefix(&prefix)
            .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
        {
            found.push(entry.path());
        }
    }
    // Timestamps are fixed-width, so name order is age order.
    found.sort();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use time::macros::datetime;

    use super::*;
    use crate::audit::verify::{verify_file, verify_reader, Break, VerifyError};
    use crate::decision::{Decision, Reason};

    fn record(n: u32) -> AuditRecord {
        AuditRecord::request(
            datetime!(2026-11-23 18:47:52.123 UTC),
            format!("req-{n}"),
            "v1",
            "203.0.113.5",
            "POST",
            "/v23.0/106540352242922/messages",
        )
        .route("wa_send", "whatsapp")
        .subject("agent-7", vec!["agent".into()])
        .decision(Decision::Deny(Reason::OutsideHours))
        .response(403, 90, Duration::from_micros(1500))
    }

    fn temp_log() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("a temp dir should be creatable");
        let path = dir.path().join("audit.log");
        (dir, path)
    }

    fn options(capacity: usize, overflow: OverflowPolicy) -> AuditOptions {
        AuditOptions {
            capacity,
            overflow,
            ..AuditOptions::default()
        }
    }

    fn open(path: &Path, opts: AuditOptions) -> (AuditSink, AuditWriter) {
        match audit_channel(AuditTarget::File(path.to_path_buf()), opts) {
            Ok(pair) => pair,
            Err(e) => panic!("opening {} should succeed: {e}", path.display()),
        }
    }

    fn spawn(writer: AuditWriter) -> std::thread::JoinHandle<()> {
        match writer.spawn() {
            Ok(h) => h,
            Err(e) => panic!("the writer thread should start: {e}"),
        }
    }

    /// Submits `range`, flushes, drops the sink and waits for the thread.
    async fn write_session(path: &Path, opts: AuditOptions, range: std::ops::Range<u32>) {
        let (sink, writer) = open(path, opts);
        let thread = spawn(writer);
        for n in range {
            assert_eq!(
                sink.submit(record(n)).await,
                Ok(()),
                "submit should succeed"
            );
        }
        assert!(sink.flush().await.is_ok(), "flush should succeed");
        drop(sink);
        assert!(
            thread.join().is_ok(),
            "the writer thread should exit cleanly"
        );
    }

    fn read_lines(path: &Path) -> Vec<String> {
        match fs::read_to_string(path) {
            Ok(text) => text.lines().map(str::to_owned).collect(),
            Err(e) => panic!("reading {} should succeed: {e}", path.display()),
        }
    }

    fn verified(path: &Path) -> crate::audit::verify::VerifySummary {
        match verify_file(path) {
            Ok(summary) => summary,
            Err(e) => panic!("{} should verify: {e}", path.display()),
        }
    }

    #[tokio::test]
    async fn flush_makes_records_visible_and_chained() {
        let (_dir, path) = temp_log();
        let (sink, writer) = open(&path, AuditOptions::default());
        let _thread = spawn(writer);
        for n in 0..3 {
            assert_eq!(sink.submit(record(n)).await, Ok(()));
        }
        assert!(sink.flush().await.is_ok(), "flush should succeed");
        let lines = read_lines(&path);
        assert_eq!(
            lines.len(),
            3,
            "all submitted records should be in the file after flush"
        );
        assert!(
            lines[0].contains(r#""request_id":"req-0""#),
            "file order should be submit order"
        );
        assert_eq!(verified(&path).records, 3);
        assert_eq!(
            sink.stats().written(),
            3,
            "written should count the three records"
        );
        assert_eq!(sink.stats().failed() + sink.stats().refused(), 0);
    }

    #[tokio::test]
    async fn without_chain_lines_have_no_hash_keys() {
        let (_dir, path) = temp_log();
        let opts = AuditOptions {
            hash_chain: false,
            ..AuditOptions::default()
        };
        write_session(&path, opts, 0..2).await;
        let lines = read_lines(&path);
        assert_eq!(
            lines,
            vec![record(0).to_json_line(), record(1).to_json_line()]
        );
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn new_file_is_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let (_dir, path) = temp_log();
        let _pair = open(&path, AuditOptions::default());
        let mode = fs::metadata(&path)
            .map(|m| m.permissions().mode() & 0o777)
            .ok();
        assert_eq!(mode, Some(0o600), "the audit file should be created 0600");
    }

    #[test]
    fn unwritable_path_is_a_startup_error() {
        let result = audit_channel(
            AuditTarget::File(PathBuf::from("/nonexistent-dir/audit.log")),
            AuditOptions::default(),
        );
        assert!(
            result.is_err(),
            "a path in a missing directory should fail at construction"
        );
    }

    #[tokio::test]
    async fn restart_continues_the_chain() {
        let (_dir, path) = temp_log();
        write_session(&path, AuditOptions::default(), 0..3).await;
        write_session(&path, AuditOptions::default(), 3..5).await;
        let summary = verified(&path);
        assert_eq!(
            summary.records, 5,
            "both sessions should form one verifiable chain"
        );
        assert_eq!(summary.first_prev_hash, Some("0".repeat(64)));
    }

    #[tokio::test]
    async fn corrupt_last_line_starts_a_new_segment() {
        let (_dir, path) = temp_log();
        write_session(&path, AuditOptions::default(), 0..2).await;
        let appended = OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(br#"{"ts":"torn"#));
        assert!(appended.is_ok(), "simulating a torn write should succeed");
        write_session(&path, AuditOptions::default(), 2..3).await;

        let lines = read_lines(&path);
        assert_eq!(
            lines.len(),
            5,
            "2 old, the torn line, the restart note, 1 new"
        );
        assert_eq!(
            lines[2], r#"{"ts":"torn"#,
            "the torn line should stay on its own line"
        );
        assert!(
            lines[3].contains(r#""event":"chain_restart""#)
                && lines[3].contains(&format!(r#""prev_hash":"{}""#, "0".repeat(64))),
            "the new segment should start with a chain_restart record from genesis: {}",
            lines[3]
        );
        match verify_file(&path) {
            Err(VerifyError::Broken {
                line: 3,
                problem: Break::BadJson(_),
            }) => {}
            other => panic!("the torn line 3 should be reported as bad JSON, got {other:?}"),
        }
        let segment = format!("{}\n{}\n", lines[3], lines[4]);
        let summary = verify_reader(segment.as_bytes()).map(|s| s.records).ok();
        assert_eq!(summary, Some(2), "the new segment should verify on its own");
    }

    #[tokio::test(start_paused = true)]
    async fn fail_closed_refuses_when_full_and_counts_it() {
        let (_dir, path) = temp_log();
        // The writer is not started yet, so nothing drains the queue.
        let (sink, writer) = open(&path, options(2, OverflowPolicy::FailClosed));
        assert_eq!(sink.submit(record(0)).await, Ok(()));
        assert_eq!(sink.submit(record(1)).await, Ok(()));
        assert_eq!(
            sink.submit(record(2)).await,
            Err(SubmitError::QueueFull),
            "a full queue under FailClosed should refuse the record"
        );
        assert_eq!(sink.stats().refused(), 1, "the refusal should be counted");
        assert_eq!(sink.queued(), 2, "two records should be waiting");
        let _thread = spawn(writer);
        assert!(sink.flush().await.is_ok());
        assert_eq!(
            read_lines(&path).len(),
            2,
            "only the accepted records should be written"
        );
        assert_eq!(sink.stats().written(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn backpressure_waits_for_space() {
        let (_dir, path) = temp_log();
        let (sink, writer) = open(&path, options(1, OverflowPolicy::Backpressure));
        assert_eq!(sink.submit(record(0)).await, Ok(()));
        // Paused time auto-advances, so this times out at once iff submit waits.
        let waited = tokio::time::timeout(Duration::from_secs(60), sink.submit(record(1))).await;
        assert!(
            waited.is_err(),
            "a full queue under Backpressure should make submit wait"
        );
        assert_eq!(sink.stats().refused(), 0, "waiting is not refusing");

        let _thread = spawn(writer);
        assert_eq!(
            sink.submit(record(2)).await,
            Ok(()),
            "submit should proceed once drained"
        );
        assert!(sink.flush().await.is_ok());
        let lines = read_lines(&path);
        assert_eq!(
            lines.len(),
            2,
            "the cancelled submit should not have queued its record"
        );
        assert!(lines[1].contains(r#""request_id":"req-2""#));
    }

    #[tokio::test]
    async fn submit_after_writer_is_gone_is_refused() {
        let (_dir, path) = temp_log();
        let (sink, writer) = open(&path, AuditOptions::default());
        drop(writer);
        assert_eq!(
            sink.submit(record(0)).await,
            Err(SubmitError::WriterStopped)
        );
        assert_eq!(
            sink.stats().refused(),
            1,
            "a record with no writer should be counted"
        );
        assert!(matches!(sink.flush().await, Err(FlushError::WriterStopped)));
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn write_errors_are_counted_as_failed() {
        // /dev/full fails every write with ENOSPC, like a full disk.
        let (sink, writer) = open(Path::new("/dev/full"), AuditOptions::default());
        let _thread = spawn(writer);
        for n in 0..3 {
            assert_eq!(
                sink.submit(record(n)).await,
                Ok(()),
                "queueing should still work"
            );
        }
        assert!(
            matches!(sink.flush().await, Err(FlushError::Io(_))),
            "flush should report the write error"
        );
        assert_eq!(
            sink.stats().failed(),
            3,
            "every lost record should be counted as failed"
        );
        assert_eq!(sink.stats().written(), 0);
    }

    #[tokio::test]
    async fn background_service_drains_on_shutdown() {
        let (_dir, path) = temp_log();
        let (sink, writer) = open(&path, AuditOptions::default());
        let (stop, watch) = tokio::sync::watch::channel(false);
        let service = tokio::spawn(async move { writer.start(watch).await });
        for n in 0..3 {
            assert_eq!(sink.submit(record(n)).await, Ok(()));
        }
        assert!(stop.send(true).is_ok());
        assert!(service.await.is_ok(), "start should return after shutdown");
        assert_eq!(
            read_lines(&path).len(),
            3,
            "queued records should be on disk at shutdown"
        );
        // Requests finishing in the grace period still get their record.
        assert_eq!(sink.submit(record(3)).await, Ok(()));
        assert!(sink.flush().await.is_ok());
        assert_eq!(verified(&path).records, 4);
    }

    #[tokio::test]
    async fn rotation_keeps_the_chain_across_files_and_prunes() {
        let (_dir, path) = temp_log();
        let opts = AuditOptions {
            rotate: Some(RotateOptions {
                max_size: 1,
                keep: 2,
            }),
            ..AuditOptions::default()
        };
        let (sink, writer) = open(&path, opts.clone());
        let thread = spawn(writer);
        for n in 0..4 {
            // One flush per record: one batch, hence one rotation, each.
            assert_eq!(sink.submit(record(n)).await, Ok(()));
            assert!(sink.flush().await.is_ok());
        }
        drop(sink);
        assert!(thread.join().is_ok());

        let rotated = rotated_files(&path).expect("the log dir should be listable");
        assert_eq!(
            rotated.len(),
            2,
            "only `keep` rotated files should remain: {rotated:?}"
        );
        let older = verified(&rotated[0]);
        let newer = verified(&rotated[1]);
        assert!(
            read_lines(&rotated[1])[0].contains("req-3"),
            "newest rotated holds the last record"
        );
        assert_eq!(
            newer.first_prev_hash, older.last_hash,
            "a rotated-into file should continue the previous file's chain"
        );

        // A restart right after rotation (current file empty) keeps the link.
        let no_more_rotation = AuditOptions {
            rotate: Some(RotateOptions {
                max_size: 1 << 20,
                keep: 2,
            }),
            ..opts
        };
        write_session(&path, no_more_rotation, 4..5).await;
        assert_eq!(
            verified(&path).first_prev_hash,
            verified(&rotated_files(&path).expect("the log dir should be listable")[1]).last_hash,
            "after a restart the new file should continue the newest rotated file"
        );
    }

    /// Reports the writer loop's steps to the returned receiver, and makes
    /// it nap `tick` between batches.
    fn observe(writer: &AuditWriter, tick: Duration) -> std::sync::mpsc::Receiver<Step> {
        let (probe, steps) = std::sync::mpsc::channel();
        let mut state = writer.state.lock().unwrap_or_else(PoisonError::into_inner);
        let state = state
            .as_mut()
            .expect("the writer should not be started yet");
        state.tick = tick;
        state.probe = Some(probe);
        steps
    }

    /// The writer's next step. The bound only turns a regression into a
    /// failure instead of a hang; nothing here depends on how fast it is.
    fn next_step(steps: &std::sync::mpsc::Receiver<Step>) -> Step {
        match steps.recv_timeout(Duration::from_secs(60)) {
            Ok(step) => step,
            Err(e) => panic!("the writer should report its next step: {e}"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_records_submitted_at_once_are_all_written_and_chained() {
        let (_dir, path) = temp_log();
        let (sink, writer) = open(&path, AuditOptions::default());
        let thread = spawn(writer);
        let mut producers = Vec::new();
        for p in 0..4u32 {
            let sink = sink.clone();
            producers.push(tokio::spawn(async move {
                for n in 0..2_500 {
                    assert_eq!(sink.submit(record(p * 10_000 + n)).await, Ok(()));
                }
            }));
        }
        for producer in producers {
            assert!(producer.await.is_ok(), "every producer should finish");
        }
        assert!(sink.flush().await.is_ok(), "flush should succeed");
        assert_eq!(sink.stats().written(), 10_000, "every record should count");
        assert_eq!(
            verified(&path).records,
            10_000,
            "every record should be in the file, in one unbroken chain"
        );
        // Each producer's records keep their submit order in the file.
        let mut last = [None::<u32>; 4];
        for line in read_lines(&path) {
            let id = line
                .split(r#""request_id":"req-"#)
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .and_then(|n| n.parse::<u32>().ok())
                .expect("each line should carry a numeric request id");
            let slot = &mut last[(id / 10_000) as usize];
            assert!(
                slot.is_none_or(|prev| prev < id),
                "a producer's records should be written in submit order"
            );
            *slot = Some(id);
        }
        drop(sink);
        assert!(thread.join().is_ok(), "the writer should exit cleanly");
    }

    #[tokio::test]
    async fn records_queued_during_a_nap_share_one_batch_and_flush_ends_the_nap() {
        let (_dir, path) = temp_log();
        let (sink, writer) = open(&path, AuditOptions::default());
        // An hour-long tick: only a wakeup can end the nap.
        let steps = observe(&writer, Duration::from_secs(3600));
        let thread = spawn(writer);
        assert_eq!(next_step(&steps), Step::Park, "an idle writer should park");
        assert_eq!(sink.submit(record(0)).await, Ok(()));
        assert_eq!(
            next_step(&steps),
            Step::Batch(1),
            "record 0 is written at once"
        );
        assert_eq!(next_step(&steps), Step::Nap, "then the writer naps");

        for n in 1..=100 {
            assert_eq!(sink.submit(record(n)).await, Ok(()));
        }
        let flushed = tokio::time::timeout(Duration::from_secs(60), sink.flush()).await;
        assert!(
            matches!(flushed, Ok(Ok(()))),
            "flush should end the writer's hour-long nap at once"
        );
        assert_eq!(
            next_step(&steps),
            Step::Batch(100),
            "the 100 records queued during the nap should go out in one batch"
        );
        assert_eq!(
            read_lines(&path).len(),
            101,
            "flush should show every record"
        );
        assert_eq!(verified(&path).records, 101);

        // With every sink gone, one wakeup lets the writer see that and end.
        let writer_thread = Arc::clone(&sink.inner.thread);
        drop(sink);
        writer_thread.wake();
        assert!(thread.join().is_ok(), "the writer should exit cleanly");
    }

    #[tokio::test]
    async fn an_idle_writer_parks_on_the_queue_instead_of_polling() {
        let (_dir, path) = temp_log();
        let (sink, writer) = open(&path, AuditOptions::default());
        let steps = observe(&writer, BATCH_TICK);
        let thread = spawn(writer);
        for round in 0..3 {
            for n in 0..3 {
                assert_eq!(sink.submit(record(round * 3 + n)).await, Ok(()));
            }
            assert!(sink.flush().await.is_ok(), "flush should succeed");
            // Everything is written; from the last batch on, the writer may
            // nap once (twice if the flush's wakeup ended the first nap
            // early), then it must wait on the queue: not nap again and again.
            let mut naps_since_batch = 0;
            let mut wrote = false;
            loop {
                match next_step(&steps) {
                    Step::Batch(_) => {
                        wrote = true;
                        naps_since_batch = 0;
                    }
                    Step::Nap => naps_since_batch += 1,
                    Step::Park if wrote => break,
                    // The park before the first record.
                    Step::Park => {}
                    Step::Retry => panic!("a writer whose writes work has nothing to retry"),
                    Step::Checkpoint { .. } => panic!("no signing, no checkpoint timer"),
                    Step::Waiting => panic!("nobody else holds the file"),
                }
                assert!(
                    naps_since_batch <= 2,
                    "an idle writer should park on the queue, not keep waking every tick"
                );
            }
        }
        // Parked: only a new record wakes it, and that record is written at once.
        assert_eq!(sink.submit(record(9)).await, Ok(()));
        assert_eq!(
            next_step(&steps),
            Step::Batch(1),
            "a parked writer should wake for the next record and write it first"
        );
        assert!(sink.flush().await.is_ok());
        assert_eq!(verified(&path).records, 10);
        drop(sink);
        assert!(thread.join().is_ok(), "the writer should exit cleanly");
    }

    /// A disk a test fills and empties: writes fail with ENOSPC while full.
    #[derive(Debug, Default)]
    pub(super) struct TestDisk {
        full: std::sync::atomic::AtomicBool,
        bytes: Mutex<Vec<u8>>,
    }

    impl TestDisk {
        pub(super) fn write(&self, bytes: &[u8]) -> (usize, Option<io::Error>) {
            if self.full.load(Ordering::SeqCst) {
                return (0, Some(io::Error::from_raw_os_error(28)));
            }
            self.lock().extend_from_slice(bytes);
            (bytes.len(), None)
        }

        pub(super) fn cut_back(&self, n: u64) -> bool {
            let mut bytes = self.lock();
            let keep = bytes.len().saturating_sub(n as usize);
            bytes.truncate(keep);
            true
        }

        fn set_full(&self, full: bool) {
            self.full.store(full, Ordering::SeqCst);
        }

        fn lines(&self) -> Vec<String> {
            String::from_utf8_lossy(&self.lock())
                .lines()
                .map(str::to_owned)
                .collect()
        }

        fn lock(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
            self.bytes.lock().unwrap_or_else(PoisonError::into_inner)
        }
    }

    fn on_test_disk(overflow: OverflowPolicy) -> (Arc<TestDisk>, AuditSink, AuditWriter) {
        let disk = Arc::new(TestDisk::default());
        let (sink, writer) = channel_with(
            Output::Test(Arc::clone(&disk)),
            Resume::default(),
            options(16, overflow),
        );
        (disk, sink, writer)
    }

    #[tokio::test]
    async fn fail_closed_refuses_new_requests_while_writes_fail_and_resumes_after() {
        let (disk, sink, writer) = on_test_disk(OverflowPolicy::FailClosed);
        let _thread = spawn(writer);
        assert_eq!(sink.admission(), Ok(()), "a fresh sink admits");

        disk.set_full(true);
        assert_eq!(sink.submit(record(0)).await, Ok(()));
        assert!(sink.flush().await.is_err(), "the write fails");
        assert_eq!(
            sink.admission(),
            Err(Unavailable::WritesFailing),
            "fail_closed refuses new requests while writes fail"
        );
        // The refused request's own record is still taken, and still lost.
        assert_eq!(sink.submit(record(1)).await, Ok(()));
        assert!(sink.flush().await.is_err());
        assert_eq!(sink.admission(), Err(Unavailable::WritesFailing));
        assert_eq!(sink.stats().failed(), 2);

        disk.set_full(false);
        assert!(
            sink.flush().await.is_ok(),
            "a flush retries with the gap note, which now goes through"
        );
        assert_eq!(sink.admission(), Ok(()), "traffic resumes by itself");
        let lines = disk.lines();
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].contains("records_lost") && lines[0].contains("2 audit records lost"),
            "the gap is on record: {lines:?}"
        );
        assert_eq!(sink.submit(record(2)).await, Ok(()));
        assert!(sink.flush().await.is_ok());
        assert_eq!(disk.lines().len(), 2);
    }

    #[tokio::test]
    async fn backpressure_keeps_admitting_while_writes_fail() {
        let (disk, sink, writer) = on_test_disk(OverflowPolicy::Backpressure);
        let _thread = spawn(writer);
        disk.set_full(true);
        assert_eq!(sink.submit(record(0)).await, Ok(()));
        assert!(sink.flush().await.is_err());
        assert_eq!(
            sink.admission(),
            Ok(()),
            "backpressure keeps today's behaviour"
        );
    }

    #[tokio::test]
    async fn fail_closed_refuses_new_requests_while_the_queue_is_full() {
        let (_disk, sink, writer) = on_test_disk(OverflowPolicy::FailClosed);
        // Not started: nothing drains the queue of 16.
        for n in 0..16 {
            assert_eq!(sink.submit(record(n)).await, Ok(()));
        }
        assert_eq!(sink.admission(), Err(Unavailable::QueueFull));
        let _thread = spawn(writer);
        assert!(sink.flush().await.is_ok());
        assert_eq!(sink.admission(), Ok(()), "a drained queue admits again");
        drop(sink);
    }

    #[tokio::test]
    async fn fail_closed_refuses_when_the_writer_is_gone() {
        let (_disk, sink, writer) = on_test_disk(OverflowPolicy::FailClosed);
        drop(writer);
        assert_eq!(sink.admission(), Err(Unavailable::WriterStopped));
    }

    #[tokio::test]
    async fn an_idle_failing_writer_retries_on_its_own() {
        let (disk, sink, writer) = on_test_disk(OverflowPolicy::FailClosed);
        let steps = observe(&writer, Duration::from_millis(1));
        if let Some(state) = writer
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_mut()
        {
            state.retry = Duration::from_millis(1);
        }
        let _thread = spawn(writer);
        disk.set_full(true);
        assert_eq!(sink.submit(record(0)).await, Ok(()));
        assert!(sink.flush().await.is_err());
        assert_eq!(sink.admission(), Err(Unavailable::WritesFailing));
        // Retries while still full keep it refused.
        while next_step(&steps) != Step::Retry {}
        assert_eq!(sink.admission(), Err(Unavailable::WritesFailing));
        // No request comes (a not-ready gateway gets none); the writer's own
        // retry finds the disk back.
        disk.set_full(false);
        // A retry already under way may still have found the disk full;
        // each further one tries again.
        while sink.admission().is_err() {
            while next_step(&steps) != Step::Retry {}
        }
        assert_eq!(sink.admission(), Ok(()), "recovered without traffic");
        assert!(disk.lines().iter().any(|l| l.contains("records_lost")));
    }

    // ----- signed checkpoints -------------------------------------------

    fn signing(every: Duration) -> (AuditOptions, crate::audit::signing::Keyring) {
        let (private, public) = crate::audit::signing::tests::key_pair();
        let signer = crate::audit::signing::Signer::from_pem(private.as_bytes()).expect("key");
        let checker = crate::audit::signing::Checker::from_pem(public.as_bytes()).expect("key");
        let checker = crate::audit::signing::Keyring::from(checker);
        let opts = AuditOptions {
            signing: Some(Signing {
                signer: Arc::new(signer),
                every,
            }),
            ..AuditOptions::default()
        };
        (opts, checker)
    }

    /// What someone with write access but no key can do: re-seal `lines`
    /// (edited or not) into a chain that verifies.
    fn rechain(lines: &[String]) -> String {
        let mut prev = hex::encode(GENESIS);
        let mut out = String::new();
        for line in lines {
            let cut = line.find(r#","prev_hash":"#).expect("a chained line");
            let canonical = format!("{}}}", &line[..cut]);
            let mut h = <sha2::Sha256 as sha2::Digest>::new();
            sha2::Digest::update(&mut h, prev.as_bytes());
            sha2::Digest::update(&mut h, b"\n");
            sha2::Digest::update(&mut h, canonical.as_bytes());
            let hash = hex::encode(sha2::Digest::finalize(h));
            out.push_str(&format!(
                r#"{},"prev_hash":"{prev}","hash":"{hash}"}}"#,
                &line[..cut]
            ));
            out.push('\n');
            prev = hash;
        }
        out
    }

    #[tokio::test]
    async fn a_writer_that_does_not_sign_refuses_a_key_and_signs_nothing() {
        let (_dir, path) = temp_log();
        let (sink, writer) = open(&path, AuditOptions::default());
        let thread = spawn(writer);
        let (signed, _) = signing(Duration::from_secs(3600));
        let signing = signed.signing.expect("a key");
        assert!(
            matches!(sink.rekey(signing).await, Err(FlushError::Io(_))),
            "signing starts with the process"
        );
        assert!(sink.submit(record(1)).await.is_ok());
        assert!(sink.flush().await.is_ok());
        drop(sink);
        assert!(thread.join().is_ok());
        let lines = read_lines(&path);
        assert_eq!(lines.len(), 1, "no checkpoint: {lines:?}");
    }

    #[tokio::test]
    async fn signed_checkpoints_hold_where_a_rewritten_chain_does_not() {
        use crate::audit::verify::verify_file_signed;
        let (_dir, path) = temp_log();
        let (opts, key) = signing(Duration::from_secs(3600));
        write_session(&path, opts.clone(), 0..5).await;
        write_session(&path, opts, 5..8).await;
        let lines = read_lines(&path);
        assert_eq!(
            lines.len(),
            12,
            "8 records, and an opening and a closing checkpoint per session"
        );
        for i in [0, 6, 7, 11] {
            assert!(lines[i].contains(r#""event":"checkpoint""#), "{}", lines[i]);
        }
        assert!(lines[6].contains(r#""detail":"5 records sealed; ed25519 key="#));
        let summary = verify_file_signed(&path, &key).expect("signed and intact");
        assert_eq!((summary.checkpoints, summary.unsigned_tail), (4, 0));

        let tampered = path.with_extension("tampered");
        let check = |text: String| {
            fs::write(&tampered, text).expect("write");
            (verify_file(&tampered), verify_file_signed(&tampered, &key))
        };
        // An edited record, the chain recomputed: the chain alone passes it.
        let mut edited = lines.clone();
        edited[2] = edited[2].replace("agent-7", "agent-9");
        let (chain, signed) = check(rechain(&edited));
        assert!(chain.is_ok(), "a re-sealed chain verifies on its own");
        assert!(
            matches!(
                signed,
                Err(VerifyError::Broken {
                    line: 7,
                    problem: Break::Checkpoint(
                        crate::audit::signing::CheckpointError::BadSignature
                    )
                })
            ),
            "{signed:?}"
        );
        // The checkpoints dropped and the rest re-sealed.
        let stripped: Vec<String> = lines
            .iter()
            .filter(|l| !l.contains(r#""event":"checkpoint""#))
            .cloned()
            .collect();
        let (chain, signed) = check(rechain(&stripped));
        assert!(chain.is_ok());
        assert!(
            matches!(signed, Err(VerifyError::Unsigned { records: 8 })),
            "{signed:?}"
        );
        // Cut after the first session, then records made up: they verify,
        // and the summary says no signature covers them.
        let mut forged = lines[..7].to_vec();
        forged.push(lines[8].replace("req-5", "req-50"));
        let resealed = rechain(&forged);
        let (_, signed) = check(resealed);
        let summary = signed.expect("the first seven lines are the real ones");
        assert_eq!((summary.checkpoints, summary.unsigned_tail), (2, 1));
    }

    #[tokio::test]
    async fn a_restarted_writer_does_not_vouch_for_a_file_rewritten_while_it_was_stopped() {
        use crate::audit::verify::verify_file_signed;
        let (_dir, path) = temp_log();
        let (opts, key) = signing(Duration::from_secs(3600));
        write_session(&path, opts.clone(), 0..5).await;
        // While the gateway is stopped: a record edited, the checkpoints
        // dropped, the chain re-sealed. The file's last line is now one
        // the gateway never wrote.
        let rewritten: Vec<String> = read_lines(&path)
            .iter()
            .filter(|l| !l.contains(r#""event":"checkpoint""#))
            .map(|l| l.replace("agent-7", "agent-9"))
            .collect();
        fs::write(&path, rechain(&rewritten)).expect("write");
        // The gateway starts again on it and carries on signing.
        write_session(&path, opts, 5..8).await;
        let lines = read_lines(&path);
        assert_eq!(lines.len(), 10, "5 rewritten, 2 checkpoints, 3 new");
        assert!(verify_file(&path).is_ok(), "the chain itself holds");
        match verify_file_signed(&path, &key) {
            Err(VerifyError::Unvouched { first: 1, last: 5 }) => {}
            other => panic!("the 5 rewritten records must not pass as signed: {other:?}"),
        }
    }

    #[tokio::test]
    async fn records_a_crash_left_unsigned_stay_unvouched_after_the_restart() {
        use crate::audit::verify::verify_file_signed;
        let (_dir, path) = temp_log();
        let (opts, key) = signing(Duration::from_secs(3600));
        write_session(&path, opts.clone(), 0..3).await;
        // What a crash leaves: records chained but never signed (a writer
        // without the key stands in for one killed before its checkpoint).
        let unsigned = AuditOptions {
            signing: None,
            ..opts.clone()
        };
        write_session(&path, unsigned, 3..5).await;
        write_session(&path, opts, 5..6).await;
        let lines = read_lines(&path);
        assert_eq!(lines.len(), 10, "{lines:#?}");
        match verify_file_signed(&path, &key) {
            Err(VerifyError::Unvouched { first: 6, last: 7 }) => {}
            other => panic!("lines 6-7 were never signed: {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_second_writer_on_the_file_waits_for_the_first_and_continues_its_chain() {
        use crate::audit::verify::verify_file_signed;
        let (_dir, path) = temp_log();
        let (opts, key) = signing(Duration::from_secs(3600));
        // The old process (a graceful upgrade's) still writing...
        let (old, old_writer) = open(&path, opts.clone());
        let old_thread = spawn(old_writer);
        for n in 0..3 {
            assert_eq!(old.submit(record(n)).await, Ok(()));
        }
        assert!(old.flush().await.is_ok());
        // ...when the new one starts on the same file: it waits, its
        // records queued.
        let (new, new_writer) = open(&path, opts);
        let steps = observe(&new_writer, BATCH_TICK);
        let new_thread = spawn(new_writer);
        assert_eq!(next_step(&steps), Step::Waiting);
        for n in 100..102 {
            assert_eq!(new.submit(record(n)).await, Ok(()));
        }
        // The old one finishes its requests, signs and exits.
        for n in 3..5 {
            assert_eq!(old.submit(record(n)).await, Ok(()));
        }
        drop(old);
        assert!(old_thread.join().is_ok());
        // The new one continues the chain from the old one's last line.
        assert!(new.flush().await.is_ok());
        drop(new);
        assert!(new_thread.join().is_ok());
        let lines = read_lines(&path);
        assert_eq!(lines.len(), 1 + 5 + 1 + 1 + 2 + 1, "{lines:#?}");
        let requests: Vec<&str> = lines
            .iter()
            .filter_map(|l| l.split(r#""request_id":""#).nth(1)?.split('"').next())
            .filter(|id| !id.is_empty())
            .collect();
        assert_eq!(
            requests,
            ["req-0", "req-1", "req-2", "req-3", "req-4", "req-100", "req-101"]
        );
        let summary = verify_file_signed(&path, &key).expect("one chain, all vouched for");
        assert_eq!((summary.checkpoints, summary.unsigned_tail), (4, 0));
    }

    #[tokio::test]
    async fn a_waiting_writer_follows_the_file_rotated_away_from_under_it() {
        let (_dir, path) = temp_log();
        let mut opts = options(1024, OverflowPolicy::Backpressure);
        opts.rotate = Some(RotateOptions {
            max_size: 1,
            keep: 10,
        });
        let (old, old_writer) = open(&path, opts.clone());
        let old_thread = spawn(old_writer);
        // The old one holds the file (its thread takes the lock before it
        // answers a flush) before the new one starts.
        assert!(old.flush().await.is_ok());
        let (new, new_writer) = open(&path, opts);
        let steps = observe(&new_writer, BATCH_TICK);
        let new_thread = spawn(new_writer);
        assert_eq!(next_step(&steps), Step::Waiting);
        // The old one rotates: the file the new one opened is now a
        // rotated file, and the one at the path is new (and the old one's).
        assert_eq!(old.submit(record(0)).await, Ok(()));
        assert!(old.flush().await.is_ok());
        assert_eq!(rotated_files(&path).expect("listable").len(), 1);
        assert_eq!(
            next_step(&steps),
            Step::Waiting,
            "waits again, for the new file"
        );
        drop(old);
        assert!(old_thread.join().is_ok());
        assert_eq!(new.submit(record(1)).await, Ok(()));
        assert!(new.flush().await.is_ok());
        drop(new);
        assert!(new_thread.join().is_ok());
        // req-1 went to the file at the path (and was rotated from there),
        // never into the file rotated before: the files chain in order.
        let rotated = rotated_files(&path).expect("listable");
        assert_eq!(rotated.len(), 2, "{rotated:?}");
        let first = read_lines(&rotated[0]);
        assert_eq!(first.len(), 1);
        assert!(first[0].contains("req-0"));
        assert!(read_lines(&rotated[1])[0].contains("req-1"));
        let (a, b) = (verified(&rotated[0]), verified(&rotated[1]));
        assert_eq!(
            b.first_prev_hash, a.last_hash,
            "the second continues the first"
        );
    }

    #[tokio::test]
    async fn a_file_is_signed_from_its_first_line() {
        use crate::audit::verify::verify_file_signed;
        let (_dir, path) = temp_log();
        let (opts, key) = signing(Duration::from_secs(3600));
        let (sink, writer) = open(&path, opts);
        let _thread = spawn(writer);
        for n in 0..3 {
            assert_eq!(sink.submit(record(n)).await, Ok(()));
        }
        assert!(sink.flush().await.is_ok());
        // Long before the first interval: the opening checkpoint, then
        // three records no signature covers yet (and `verify` says so).
        let lines = read_lines(&path);
        assert_eq!(lines.len(), 4);
        assert!(lines[0].contains(r#""detail":"0 records sealed; ed25519 key="#));
        let summary = verify_file_signed(&path, &key).expect("signed from the start");
        assert_eq!((summary.checkpoints, summary.unsigned_tail), (1, 3));
    }

    #[tokio::test]
    async fn a_checkpoint_comes_on_its_interval_while_the_writer_runs() {
        use crate::audit::verify::verify_file_signed;
        let (_dir, path) = temp_log();
        let (opts, key) = signing(Duration::from_millis(20));
        let (sink, writer) = open(&path, opts);
        let steps = observe(&writer, BATCH_TICK);
        let _thread = spawn(writer);
        for n in 0..3 {
            assert_eq!(sink.submit(record(n)).await, Ok(()));
        }
        let tick = || loop {
            if let Step::Checkpoint { signed } = next_step(&steps) {
                return signed;
            }
        };
        assert!(tick(), "the first tick signs the three records");
        assert!(sink.flush().await.is_ok());
        assert_eq!(
            read_lines(&path).len(),
            5,
            "opening checkpoint, 3, checkpoint"
        );
        let summary = verify_file_signed(&path, &key).expect("signed");
        assert_eq!((summary.checkpoints, summary.unsigned_tail), (2, 0));
        // Nothing new, nothing to sign: the next ticks add no line.
        assert!(!tick());
        assert!(!tick());
        assert!(sink.flush().await.is_ok());
        assert_eq!(read_lines(&path).len(), 5);
    }

    #[tokio::test]
    async fn every_rotated_file_ends_signed() {
        use crate::audit::verify::verify_file_signed;
        let (_dir, path) = temp_log();
        let (mut opts, key) = signing(Duration::from_secs(3600));
        opts.rotate = Some(RotateOptions {
            max_size: 1,
            keep: 10,
        });
        let (sink, writer) = open(&path, opts);
        let thread = spawn(writer);
        for n in 0..3 {
            assert_eq!(sink.submit(record(n)).await, Ok(()));
            assert!(sink.flush().await.is_ok());
        }
        drop(sink);
        assert!(thread.join().is_ok());
        let rotated = rotated_files(&path).expect("listable");
        assert_eq!(rotated.len(), 3, "{rotated:?}");
        for file in &rotated {
            let summary = verify_file_signed(file, &key).expect("signed");
            assert_eq!(
                (summary.records, summary.checkpoints, summary.unsigned_tail),
                (3, 2, 0),
                "{}: opens and ends signed",
                file.display()
            );
        }
        // The current file holds its opening checkpoint, and is not
        // rotated again for it.
        let summary = verify_file_signed(&path, &key).expect("signed");
        assert_eq!((summary.records, summary.checkpoints), (1, 1));
    }
}
