//! The live configuration. A request takes one `Arc<Snapshot>` in its first
//! phase and keeps it to the end, so every phase sees the same version;
//! publishing a new snapshot never disturbs requests in flight.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::Snapshot;

#[derive(Clone)]
pub struct ConfigStore {
    inner: Arc<Inner>,
}

struct Inner {
    current: ArcSwap<Snapshot>,
    ready: AtomicBool,
}

impl ConfigStore {
    pub fn new(initial: Snapshot) -> Self {
        ConfigStore {
            inner: Arc::new(Inner {
                current: ArcSwap::from_pointee(initial),
                ready: AtomicBool::new(false),
            }),
        }
    }

    /// The snapshot a new request should use.
    pub fn load(&self) -> Arc<Snapshot> {
        self.inner.current.load_full()
    }

    /// Publish a compiled (hence valid) snapshot.
    pub fn publish(&self, next: Snapshot) {
        self.inner.current.store(Arc::new(next));
    }

    /// Ready once the server has started serving with a loaded config.
    pub fn set_ready(&self) {
        self.inner.ready.store(true, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::Acquire)
    }
}
