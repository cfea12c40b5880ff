//! Whether the audit sink can take a request's record right now, and what
//! the gateway does about it (DESIGN invariant 5).
//!
//! Under `fail_closed` a request that could not be audited must not be
//! served: while the writer's last write failed (a full disk, an I/O
//! error), while the queue is full, or when the writer is gone, new
//! requests are refused before anything is forwarded (503
//! `audit_unavailable`) and `/readyz` says not ready. The refused requests'
//! own records keep probing the sink (the queue has room for them unless it
//! is full), and an idle writer retries on its own, so traffic resumes as
//! soon as a write succeeds again. Under `backpressure` requests are never
//! refused here: they wait in their logging phase instead.

use std::sync::atomic::{AtomicBool, Ordering};

use super::writer::OverflowPolicy;

/// The writer's verdict on its last write, shared with the request path.
#[derive(Debug, Default)]
pub struct WriteHealth {
    failing: AtomicBool,
}

impl WriteHealth {
    /// Records the outcome of a write; returns whether that changed the
    /// verdict (for a log line on each transition, not on each write).
    pub fn record(&self, ok: bool) -> bool {
        self.failing.swap(!ok, Ordering::AcqRel) == ok
    }

    /// Whether the last write failed.
    pub fn failing(&self) -> bool {
        self.failing.load(Ordering::Acquire)
    }
}

/// What the sink can tell of itself at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinkState {
    pub writes_failing: bool,
    pub queue_full: bool,
    pub writer_stopped: bool,
}

/// Why the sink cannot take new requests' records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unavailable {
    #[error("audit writes are failing")]
    WritesFailing,
    #[error("audit queue is full")]
    QueueFull,
    #[error("audit writer is not running")]
    WriterStopped,
}

/// Whether a new request may be served, given the overflow policy and the
/// sink's state: always under `Backpressure`; under `FailClosed` only while
/// the sink is healthy.
pub fn admit(policy: OverflowPolicy, state: SinkState) -> Result<(), Unavailable> {
    if policy == OverflowPolicy::Backpressure {
        return Ok(());
    }
    if state.writer_stopped {
        return Err(Unavailable::WriterStopped);
    }
    if state.writes_failing {
        return Err(Unavailable::WritesFailing);
    }
    if state.queue_full {
        return Err(Unavailable::QueueFull);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backpressure_never_refuses() {
        let worst = SinkState {
            writes_failing: true,
            queue_full: true,
            writer_stopped: true,
        };
        assert_eq!(admit(OverflowPolicy::Backpressure, worst), Ok(()));
    }

    #[test]
    fn fail_closed_refuses_while_anything_is_wrong() {
        assert_eq!(
            admit(OverflowPolicy::FailClosed, SinkState::default()),
            Ok(()),
            "a healthy sink admits"
        );
        let cases = [
            (
                SinkState {
                    writes_failing: true,
                    ..SinkState::default()
                },
                Unavailable::WritesFailing,
            ),
            (
                SinkState {
                    queue_full: true,
                    ..SinkState::default()
                },
                Unavailable::QueueFull,
            ),
            (
                SinkState {
                    writer_stopped: true,
                    writes_failing: true,
                    queue_full: true,
                },
                Unavailable::WriterStopped,
            ),
        ];
        for (state, why) in cases {
            assert_eq!(
                admit(OverflowPolicy::FailClosed, state),
                Err(why),
                "{state:?}"
            );
        }
    }

    #[test]
    fn write_health_reports_transitions_only() {
        let h = WriteHealth::default();
        assert!(!h.failing());
        assert!(!h.record(true), "ok after ok is no change");
        assert!(h.record(false), "the first failure is a change");
        assert!(h.failing());
        assert!(!h.record(false), "a second failure is not");
        assert!(h.record(true), "recovery is a change");
        assert!(!h.failing());
    }
}
