//! Verified tokens, remembered by the SHA-256 of their bytes (never the
//! token itself), so a client repeating a token costs a hash and a lookup
//! instead of a signature check.
//!
//! - Bounded: `capacity` entries over 16 shards, each a `Mutex<HashMap>`
//!   held only for a lookup or an insert. When a shard is full, dead
//!   entries go first, then half of the rest, picked by hash order, which
//!   for SHA-256 keys is as good as random. No LRU bookkeeping on the hit
//!   path.
//! - Never past `exp` (+ leeway): checked on every hit against the
//!   caller's `now`.
//! - Flushed in O(1): entries carry the key store generation and the
//!   cache epoch they were verified under; a lookup that sees either
//!   changed drops the entry. Key rotation bumps the generation;
//!   [`VerifiedCache::flush`] (revocation lists changed) bumps the epoch.
//!
//! Only verified tokens get in, so an attacker cannot choose keys to
//! crowd a shard without a valid signature for each.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use sha2::{Digest, Sha256};

use super::verify::Verified;

const SHARDS: usize = 16;

/// SHA-256 of a token's bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TokenDigest([u8; 32]);

pub struct VerifiedCache {
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
    epoch: AtomicU64,
}

type Shard = HashMap<TokenDigest, Entry, BuildHasherDefault<DigestHasher>>;

struct Entry {
    verified: Arc<Verified>,
    /// Last second (inclusive) at which the token is still valid.
    valid_until: i64,
    generation: u64,
    epoch: u64,
}

impl std::fmt::Debug for TokenDigest {
    // A prefix is enough to tell entries apart in a debugger.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenDigest({}…)", hex::encode(&self.0[..4]))
    }
}

impl TokenDigest {
    pub fn of(token: &str) -> TokenDigest {
        TokenDigest(Sha256::digest(token.as_bytes()).into())
    }

    fn shard(&self) -> usize {
        usize::from(self.0[31]) % SHARDS
    }
}

impl Hash for TokenDigest {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let mut first = [0u8; 8];
        first.copy_from_slice(&self.0[..8]);
        state.write_u64(u64::from_le_bytes(first));
    }
}

impl VerifiedCache {
    /// A cache holding at most `capacity` entries; 0 disables it.
    pub fn new(capacity: usize) -> VerifiedCache {
        let shards = SHARDS.min(capacity);
        let per_shard = capacity.checked_div(shards).unwrap_or(0);
        VerifiedCache {
            shards: (0..shards).map(|_| Mutex::new(Shard::default())).collect(),
            per_shard,
            epoch: AtomicU64::new(0),
        }
    }

    pub fn enabled(&self) -> bool {
        self.per_shard > 0
    }

    /// The verification of this token, if it is cached, was made under key
    /// generation `generation` and the current epoch, and is still valid at
    /// `now`.
    pub fn get(&self, digest: &TokenDigest, now: i64, generation: u64) -> Option<Arc<Verified>> {
        let epoch = self.epoch.load(Ordering::Acquire);
        let mut shard = self.shard(digest)?;
        let entry = shard.get(digest)?;
        if entry.is_live(now, generation, epoch) {
            return Some(entry.verified.clone());
        }
        shard.remove(digest);
        None
    }

    pub fn insert(
        &self,
        digest: TokenDigest,
        verified: Arc<Verified>,
        valid_until: i64,
        generation: u64,
        now: i64,
    ) {
        let epoch = self.epoch.load(Ordering::Acquire);
        let Some(mut shard) = self.shard(&digest) else {
            return;
        };
        if shard.len() >= self.per_shard && !shard.contains_key(&digest) {
            shard.retain(|_, e| e.is_live(now, generation, epoch));
            if shard.len() >= self.per_shard {
                // Drops the first of every pair, so even a full shard of
                // one entry makes room.
                let mut keep = true;
                shard.retain(|_, _| {
                    keep = !keep;
                    keep
                });
            }
        }
        shard.insert(
            digest,
            Entry {
                verified,
                valid_until,
                generation,
                epoch,
            },
        );
    }

    /// Forget everything, in O(1): entries from older epochs are dead.
    pub fn flush(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// Entries held, live or not yet collected.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn shard(&self, digest: &TokenDigest) -> Option<std::sync::MutexGuard<'_, Shard>> {
        let shard = self.shards.get(digest.shard() % self.shards.len().max(1))?;
        // A panic while holding the lock cannot leave an entry half-built
        // (inserts and removes are single map calls), so a poisoned shard
        // is still consistent.
        Some(shard.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl Entry {
    fn is_live(&self, now: i64, generation: u64, epoch: u64) -> bool {
        now <= self.valid_until && self.generation == generation && self.epoch == epoch
    }
}

/// The digest is already uniformly distributed; hashing it again would
/// only cost time.
#[derive(Default)]
struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::Algorithm;

    use super::*;
    use crate::identity::Identity;

    fn verified(subject: &str) -> Arc<Verified> {
        Arc::new(Verified {
            identity: Identity {
                subject: subject.to_string(),
                roles: vec![],
                attributes: Default::default(),
                mfa: false,
                auth_time: None,
                token_id: None,
                expires_at: 100,
            },
            key_id: None,
            algorithm: Algorithm::ES256,
        })
    }

    #[test]
    fn hit_returns_the_same_identity() {
        let cache = VerifiedCache::new(100);
        let d = TokenDigest::of("token-a");
        cache.insert(d, verified("alice"), 100, 0, 0);
        let hit = cache.get(&d, 50, 0).map(|v| v.identity.subject.clone());
        assert_eq!(
            hit.as_deref(),
            Some("alice"),
            "a cached token should be returned"
        );
        assert!(
            cache.get(&TokenDigest::of("token-b"), 50, 0).is_none(),
            "another token is a miss"
        );
    }

    #[test]
    fn expiry_is_respected() {
        let cache = VerifiedCache::new(100);
        let d = TokenDigest::of("t");
        cache.insert(d, verified("a"), 100, 0, 0);
        assert!(
            cache.get(&d, 100, 0).is_some(),
            "valid through valid_until inclusive"
        );
        assert!(
            cache.get(&d, 101, 0).is_none(),
            "never returned past valid_until"
        );
        assert_eq!(cache.len(), 0, "the dead entry should have been removed");
    }

    #[test]
    fn generation_and_flush_invalidate() {
        let cache = VerifiedCache::new(100);
        let d = TokenDigest::of("t");
        cache.insert(d, verified("a"), 100, 3, 0);
        assert!(
            cache.get(&d, 0, 4).is_none(),
            "a newer key generation must miss"
        );
        cache.insert(d, verified("a"), 100, 4, 0);
        assert!(cache.get(&d, 0, 4).is_some());
        cache.flush();
        assert!(
            cache.get(&d, 0, 4).is_none(),
            "a flush must drop every entry"
        );
    }

    #[test]
    fn bound_is_respected() {
        let cache = VerifiedCache::new(64);
        for i in 0..1_000 {
            cache.insert(
                TokenDigest::of(&format!("token-{i}")),
                verified("x"),
                100,
                0,
                0,
            );
            assert!(
                cache.len() <= 64,
                "cache grew to {} past its bound of 64",
                cache.len()
            );
        }
        assert!(
            cache.len() > 16,
            "eviction should keep a useful share of entries, kept {}",
            cache.len()
        );
    }

    #[test]
    fn zero_capacity_disables() {
        let cache = VerifiedCache::new(0);
        assert!(!cache.enabled());
        let d = TokenDigest::of("t");
        cache.insert(d, verified("a"), 100, 0, 0);
        assert!(cache.get(&d, 0, 0).is_none(), "a disabled cache never hits");
    }

    #[test]
    fn dead_entries_are_evicted_before_live_ones() {
        let cache = VerifiedCache::new(16);
        // One shard slot each: fill with expired entries, then a live one
        // should replace them rather than halve live data.
        for i in 0..200 {
            cache.insert(
                TokenDigest::of(&format!("old-{i}")),
                verified("x"),
                10,
                0,
                0,
            );
        }
        let d = TokenDigest::of("fresh");
        cache.insert(d, verified("y"), 1000, 0, 500);
        assert!(cache.get(&d, 500, 0).is_some());
    }
}
