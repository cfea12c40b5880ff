//! The tamper-evident hash chain over audit lines.
//!
//! `hash = hex(sha256(prev_hash_hex || "\n" || canonical))`, where
//! `canonical` is the record's exact JSON line without the `prev_hash` and
//! `hash` keys, and the first record of a chain has the genesis `prev_hash`
//! of 64 zeros. Because the two keys are always the last two of the line,
//! the verifier recovers `canonical` textually (cut the fixed-length suffix,
//! put back the `}`): it never re-serializes, so it checks the bytes on disk
//! and keeps working when newer versions add fields.
//!
//! The chain detects edits, deletions, insertions and reordering inside a
//! file. It is not a signature: someone who can rewrite the whole file can
//! recompute every hash, and dropping lines from the end leaves a valid
//! (shorter) chain. Anchor it by shipping the last hash elsewhere (the log
//! pipeline, `chatwarden audit verify` output) when that matters.

use sha2::{Digest, Sha256};

use super::record::AuditRecord;

/// `prev_hash` of the first record of a chain (or of a new segment).
pub const GENESIS: [u8; 32] = [0; 32];

/// The running state of the chain: the hash of the last sealed record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    prev: [u8; 32],
    /// `prev` as the lowercase hex that is hashed and written, kept so that
    /// each hash is hex-encoded once rather than once per use.
    prev_hex: [u8; 64],
}

/// Why one line does not hold a valid chain link on its own.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("not a JSON object: {0}")]
    BadJson(String),
    #[error("no prev_hash/hash (the record was written without the hash chain)")]
    MissingHash,
    #[error("prev_hash/hash are not the last two keys as 64 lowercase hex digits")]
    MalformedHash,
    #[error("hash does not match the record's content (the record was edited)")]
    HashMismatch,
}

/// The hashes a valid line carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    pub prev: [u8; 32],
    pub hash: [u8; 32],
}

impl Chain {
    /// A new chain starting from [`GENESIS`].
    pub fn genesis() -> Self {
        Chain::resume(GENESIS)
    }

    /// Continues a chain whose last record had hash `prev` (after a restart
    /// or a rotation).
    pub fn resume(prev: [u8; 32]) -> Self {
        Chain {
            prev,
            prev_hex: lower_hex(&prev),
        }
    }

    /// The hash the next record will carry as `prev_hash`.
    pub fn prev(&self) -> [u8; 32] {
        self.prev
    }

    /// Fills `record.prev_hash` and `record.hash` and advances the chain.
    /// `record.to_json_line()` afterwards is the sealed line.
    pub fn seal(&mut self, record: &mut AuditRecord) {
        record.prev_hash = None;
        record.hash = None;
        let mut canonical = Vec::with_capacity(512);
        record.write_json(&mut canonical);
        let hash = link_hash(&self.prev_hex, &canonical);
        record.prev_hash = Some(hex::encode(self.prev));
        record.hash = Some(hex::encode(hash));
        *self = Chain::resume(hash);
    }

    /// Appends the sealed line of `record` (without newline) to `out`,
    /// serializing once, and advances the chain. Same bytes as
    /// [`Chain::seal`] followed by `to_json_line`; the writer uses this
    /// (public for its benchmark). Returns the record's hash.
    pub fn seal_into(&mut self, record: &mut AuditRecord, out: &mut Vec<u8>) -> [u8; 32] {
        record.prev_hash = None;
        record.hash = None;
        let start = out.len();
        record.write_json(out);
        let hash = link_hash(&self.prev_hex, &out[start..]);
        let next = Chain::resume(hash);
        // The serialized object always ends with '}' (write_json emits one
        // object), which the suffix puts back after the two hash keys.
        out.pop();
        push_suffix(out, &self.prev_hex, &next.prev_hex);
        *self = next;
        hash
    }
}

/// Checks that one line is a self-consistent chain link and returns its
/// hashes. Whether `prev` matches the line before is the caller's business.
pub fn check_line(line: &[u8]) -> Result<Link, LinkError> {
    match serde_json::from_slice::<serde_json::Value>(line) {
        Ok(serde_json::Value::Object(map)) => {
            if !map.contains_key("prev_hash") || !map.contains_key("hash") {
                return Err(LinkError::MissingHash);
            }
        }
        Ok(_) => return Err(LinkError::BadJson("not an object".into())),
        Err(e) => return Err(LinkError::BadJson(e.to_string())),
    }
    let Some(body_len) = line.len().checked_sub(SUFFIX_LEN) else {
        return Err(LinkError::MalformedHash);
    };
    let (body, suffix) = line.split_at(body_len);
    let link = parse_suffix(suffix).ok_or(LinkError::MalformedHash)?;
    let mut canonical = Vec::with_capacity(body.len() + 1);
    canonical.extend_from_slice(body);
    canonical.push(b'}');
    if link_hash(&lower_hex(&link.prev), &canonical) != link.hash {
        return Err(LinkError::HashMismatch);
    }
    Ok(link)
}

const PREV_KEY: &[u8] = br#","prev_hash":""#;
const HASH_KEY: &[u8] = br#"","hash":""#;
const END: &[u8] = br#""}"#;
/// `,"prev_hash":"<64 hex>","hash":"<64 hex>"}`
const SUFFIX_LEN: usize = PREV_KEY.len() + 64 + HASH_KEY.len() + 64 + END.len();

fn link_hash(prev_hex: &[u8; 64], canonical: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(prev_hex);
    hasher.update(b"\n");
    hasher.update(canonical);
    hasher.finalize().into()
}

fn lower_hex(bytes: &[u8; 32]) -> [u8; 64] {
    let mut hex_digits = [0u8; 64];
    // A 32-byte input always fits a 64-byte output; the error case is a
    // length mismatch, impossible with these array types.
    let _ = hex::encode_to_slice(bytes, &mut hex_digits);
    hex_digits
}

fn push_suffix(out: &mut Vec<u8>, prev_hex: &[u8; 64], hash_hex: &[u8; 64]) {
    out.extend_from_slice(PREV_KEY);
    out.extend_from_slice(prev_hex);
    out.extend_from_slice(HASH_KEY);
    out.extend_from_slice(hash_hex);
    out.extend_from_slice(END);
}

fn parse_suffix(suffix: &[u8]) -> Option<Link> {
    let rest = suffix.strip_prefix(PREV_KEY)?;
    let (prev_hex, rest) = rest.split_at_checked(64)?;
    let rest = rest.strip_prefix(HASH_KEY)?;
    let (hash_hex, rest) = rest.split_at_checked(64)?;
    if rest != END {
        return None;
    }
    Some(Link {
        prev: decode_lower_hex(prev_hex)?,
        hash: decode_lower_hex(hash_hex)?,
    })
}

/// Only the lowercase form the writer emits is accepted, so one record has
/// exactly one valid line.
fn decode_lower_hex(hex_digits: &[u8]) -> Option<[u8; 32]> {
    if hex_digits
        .iter()
        .any(|b| !matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return None;
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_digits, &mut out).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use time::macros::datetime;

    use super::*;
    use crate::decision::Decision;

    fn record(n: u32) -> AuditRecord {
        AuditRecord::request(
            datetime!(2026-11-23 18:47:52.123 UTC),
            format!("req-{n}"),
            "v1",
            "198.51.100.7",
            "GET",
            "/x",
        )
        .decision(Decision::Allow)
        .response(200, 10, Duration::from_millis(2))
    }

    #[test]
    fn seal_and_seal_into_produce_the_same_line() {
        let mut a = Chain::genesis();
        let mut b = Chain::genesis();
        for n in 0..3 {
            let mut r1 = record(n);
            a.seal(&mut r1);
            let mut r2 = record(n);
            let mut out = Vec::new();
            b.seal_into(&mut r2, &mut out);
            assert_eq!(
                r1.to_json_line().into_bytes(),
                out,
                "both sealing paths should write identical bytes"
            );
            assert_eq!(a, b, "both chains should advance identically");
        }
    }

    #[test]
    fn first_record_links_to_genesis_and_the_hash_follows_the_formula() {
        let mut chain = Chain::genesis();
        let mut r = record(1);
        chain.seal(&mut r);
        assert_eq!(r.prev_hash.as_deref(), Some("0".repeat(64).as_str()));
        let mut unsealed = r.clone();
        unsealed.prev_hash = None;
        unsealed.hash = None;
        let mut hasher = Sha256::new();
        hasher.update(format!("{}\n{}", "0".repeat(64), unsealed.to_json_line()));
        let expected = hex::encode(hasher.finalize());
        assert_eq!(
            r.hash.as_deref(),
            Some(expected.as_str()),
            "hash should be sha256(prev_hex \\n canonical line)"
        );
        assert_eq!(
            hex::encode(chain.prev()),
            expected,
            "chain should advance to the new hash"
        );
    }

    #[test]
    fn check_line_accepts_sealed_and_rejects_edits() {
        let mut chain = Chain::genesis();
        let mut r = record(1);
        chain.seal(&mut r);
        let line = r.to_json_line();
        assert!(
            check_line(line.as_bytes()).is_ok(),
            "a sealed line should check"
        );
        let edited = line.replace(r#""status":200"#, r#""status":201"#);
        assert_eq!(check_line(edited.as_bytes()), Err(LinkError::HashMismatch));
        let unchained = record(1).to_json_line();
        assert_eq!(
            check_line(unchained.as_bytes()),
            Err(LinkError::MissingHash)
        );
        let upper = line.replace(&hex::encode(chain.prev()), &hex::encode_upper(chain.prev()));
        assert_eq!(check_line(upper.as_bytes()), Err(LinkError::MalformedHash));
        assert!(matches!(
            check_line(b"{\"ts\":"),
            Err(LinkError::BadJson(_))
        ));
        assert!(matches!(check_line(b"[1]"), Err(LinkError::BadJson(_))));
    }
}
