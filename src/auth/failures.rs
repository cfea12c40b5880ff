//! Bad signatures per client. A token whose signature does not verify cost
//! the gateway a whole signature check (≈ 50 µs of CPU for ES256) and told
//! the sender nothing; a client that keeps sending them is forging tokens
//! or flooding. After `max` of them within `per`, the client's tokens are
//! no longer checked until the window ends: a token verified before (in the
//! cache) still works, a new one is refused with `rate_limited` and a
//! `Retry-After`, at the price of a lookup.
//!
//! - Keyed by client IP, as resolved through trusted proxies; an IPv6
//!   client by its /64, the block one host usually holds whole (keyed by
//!   address, it could count against 2^64 of them).
//! - Fixed windows that open with a client's first bad signature.
//! - Bounded: `capacity` clients over 16 shards; a full shard drops its
//!   closed windows first, then all of them (a flood from that many
//!   addresses is not stopped by a per-address count anyway).
//! - Kept across reloads (the proxy holds it); the limit itself is config.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::request::client_ip::counted_client;

const SHARDS: usize = 16;

/// Clients tracked at once by default.
pub const DEFAULT_CLIENTS: usize = 65_536;

/// How many bad signatures a client may send, and over how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadSignatureLimit {
    pub max: u32,
    pub per: Duration,
}

impl Default for BadSignatureLimit {
    /// 20 a minute: far more than a client with a real token ever sends
    /// (it sends none), far fewer than a flood.
    fn default() -> Self {
        BadSignatureLimit {
            max: 20,
            per: Duration::from_secs(60),
        }
    }
}

impl BadSignatureLimit {
    fn per_secs(&self) -> i64 {
        i64::try_from(self.per.as_secs()).unwrap_or(i64::MAX).max(1)
    }
}

/// The bad-signature counts of recent clients.
pub struct SignatureFailures {
    shards: Box<[Mutex<HashMap<IpAddr, Window>>]>,
    per_shard: usize,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    /// Unix second the window opened.
    start: i64,
    count: u32,
}

impl Window {
    fn open_at(&self, now: i64, limit: &BadSignatureLimit) -> bool {
        now < self.start.saturating_add(limit.per_secs())
    }
}

impl Default for SignatureFailures {
    fn default() -> Self {
        SignatureFailures::new(DEFAULT_CLIENTS)
    }
}

impl SignatureFailures {
    /// Tracks up to `capacity` clients (at least one per shard).
    pub fn new(capacity: usize) -> SignatureFailures {
        SignatureFailures {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
        }
    }

    /// Seconds until `ip` may have a token checked again, when it has sent
    /// `limit.max` bad signatures in the window open at `now` (Unix
    /// seconds).
    pub fn refused(&self, ip: IpAddr, now: i64, limit: &BadSignatureLimit) -> Option<u64> {
        let ip = counted_client(ip);
        let shard = self.shard(ip);
        let window = shard.get(&ip)?;
        if !window.open_at(now, limit) || window.count < limit.max {
            return None;
        }
        let end = window.start.saturating_add(limit.per_secs());
        Some(u64::try_from(end - now).unwrap_or(1).max(1))
    }

    /// Counts one bad signature from `ip` at `now`.
    pub fn record(&self, ip: IpAddr, now: i64, limit: &BadSignatureLimit) {
        let ip = counted_client(ip);
        let mut shard = self.shard(ip);
        if let Some(window) = shard.get_mut(&ip) {
            if window.open_at(now, limit) {
                window.count = window.count.saturating_add(1);
            } else {
                *window = Window {
                    start: now,
                    count: 1,
                };
            }
            return;
        }
        if shard.len() >= self.per_shard {
            shard.retain(|_, w| w.open_at(now, limit));
            if shard.len() >= self.per_shard {
                shard.clear();
            }
        }
        shard.insert(
            ip,
            Window {
                start: now,
                count: 1,
            },
        );
    }

    fn shard(&self, ip: IpAddr) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Window>> {
        // `ip` is already a `counted_client`: the low bytes of a /64 are zero,
        // so IPv6 clients spread by the last byte of their prefix.
        let low = match ip {
            IpAddr::V4(v4) => usize::from(v4.octets()[3]),
            IpAddr::V6(v6) => usize::from(v6.octets()[7]),
        };
        // Inserts and removes are single map calls: a poisoned shard is
        // still consistent.
        self.shards[low % self.shards.len()]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl SignatureFailures {
        /// Clients with a window on record, open or not yet collected.
        fn len(&self) -> usize {
            self.shards
                .iter()
                .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).len())
                .sum()
        }
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([203, 0, 113, last])
    }

    const LIMIT: BadSignatureLimit = BadSignatureLimit {
        max: 3,
        per: Duration::from_secs(60),
    };

    #[test]
    fn a_client_is_refused_after_max_bad_signatures_until_its_window_ends() {
        let f = SignatureFailures::default();
        for _ in 0..3 {
            assert_eq!(f.refused(ip(1), 1_000, &LIMIT), None);
            f.record(ip(1), 1_000, &LIMIT);
        }
        assert_eq!(f.refused(ip(1), 1_000, &LIMIT), Some(60));
        assert_eq!(f.refused(ip(1), 1_059, &LIMIT), Some(1));
        assert_eq!(f.refused(ip(2), 1_000, &LIMIT), None, "per client");
        assert_eq!(f.refused(ip(1), 1_060, &LIMIT), None, "the window ended");
        // A new window opens with the next bad signature.
        f.record(ip(1), 1_060, &LIMIT);
        assert_eq!(f.refused(ip(1), 1_060, &LIMIT), None);
    }

    #[test]
    fn a_full_table_makes_room_and_keeps_counting() {
        let f = SignatureFailures::new(SHARDS);
        // Same last octet, same shard: one client per shard fits.
        let a = IpAddr::from([198, 51, 100, 7]);
        let b = IpAddr::from([192, 0, 2, 7]);
        for _ in 0..3 {
            f.record(a, 1_000, &LIMIT);
        }
        f.record(b, 1_000, &LIMIT);
        assert_eq!(f.len(), 1, "the shard holds one client");
        assert_eq!(f.refused(a, 1_000, &LIMIT), None, "a was dropped for b");
        // Closed windows go first.
        f.record(a, 2_000, &LIMIT);
        assert_eq!(f.refused(b, 2_000, &LIMIT), None);
        assert_eq!(f.len(), 1);
    }

    #[test]
    fn an_ipv6_host_is_counted_by_its_slash_64() {
        let f = SignatureFailures::default();
        let host = |last: u16| IpAddr::from([0x2001, 0xdb8, 0, 7, 0, 0, 0, last]);
        for i in 0..3 {
            f.record(host(i), 1_000, &LIMIT);
        }
        assert_eq!(f.refused(host(999), 1_000, &LIMIT), Some(60), "same /64");
        let neighbour = IpAddr::from([0x2001, 0xdb8, 0, 8, 0, 0, 0, 1]);
        assert_eq!(f.refused(neighbour, 1_000, &LIMIT), None, "next /64");
        // An IPv4-mapped address is its IPv4 client.
        for _ in 0..3 {
            f.record(ip(5), 1_000, &LIMIT);
        }
        let mapped: IpAddr = "::ffff:203.0.113.5".parse().expect("address");
        assert_eq!(f.refused(mapped, 1_000, &LIMIT), Some(60));
    }
}
