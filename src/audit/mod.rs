//! The audit trail: exactly one record per request (DESIGN invariant 5),
//! plus one per config reload, written as JSON lines to a file or stdout.
//!
//! - [`record`]: the [`AuditRecord`] and its wire format (field order is the
//!   contract in DESIGN.md "Audit record").
//! - [`chain`]: the optional tamper-evident hash chain (`prev_hash`, `hash`).
//! - [`writer`]: the bounded queue the request path submits to
//!   ([`AuditSink`]) and the background writer ([`AuditWriter`]) that seals,
//!   writes, flushes and rotates; under load it applies backpressure or fails
//!   closed, never drops silently.
//! - [`health`]: whether the sink can take new requests' records; under
//!   `fail_closed` the gateway refuses requests (503 `audit_unavailable`)
//!   while it cannot.
//! - [`signing`]: signed checkpoints of the chain (`audit.signing_key`), so
//!   that rewriting the whole file shows.
//! - [`verify`]: `chatwarden audit verify FILE [--key PUBLIC.pem]`.
//!
//! Nothing here knows about pingora's request types; the writer only
//! implements pingora's `BackgroundService` so it starts and stops with the
//! server. The module writes what it is given: keeping secrets and unmasked
//! PII out of records is the caller's duty.

pub mod chain;
pub mod health;
pub mod query;
pub mod record;
pub mod signing;
pub mod verify;
pub mod writer;

pub use chain::{Chain, GENESIS};
pub use health::Unavailable;
pub use record::{duration_ms, AuditEvent, AuditRecord};
pub use verify::{
    verify_file, verify_file_signed, verify_file_with, verify_reader, Break, VerifyError,
    VerifySummary,
};
pub use writer::{
    audit_channel, AuditOptions, AuditSink, AuditStats, AuditTarget, AuditWriter, FlushError,
    Offered, OverflowPolicy, RotateOptions, SubmitError,
};
