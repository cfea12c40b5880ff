//! Signed checkpoints: what makes the hash chain hold against someone who
//! can rewrite the whole audit file.
//!
//! A chain alone shows edits, deletions and reordering, but whoever can
//! write the file can recompute every hash (see [`super::chain`]). With
//! `audit.signing_key` set, the writer signs the chain's head with an
//! Ed25519 key when it opens a file, at least every
//! `audit.checkpoint_every` while records come in, at shutdown, and before
//! rotating a file, as one `checkpoint` record in the chain:
//!
//! `"event":"checkpoint","detail":"<n> records sealed; ed25519 key=<id> since=<hex> sig=<hex>"`
//!
//! The signature covers `chatwarden audit checkpoint v2\n`, the
//! checkpoint's own `prev_hash` (the hash of the record before it), a
//! newline and `since`: the chain's head when this gateway process took
//! the file over. A checkpoint vouches for the records *after* `since` up
//! to itself, and no further back: the gateway continues the chain from
//! the file's last line at startup, a line it cannot tell from one forged
//! while it was stopped, so it never signs for what it did not write.
//! What came before `since` must be vouched for by earlier checkpoints; a
//! stretch that none covers (a crash before the gateway could sign it, or
//! an edit made while it was down) fails `verify`. `v1` checkpoints (no
//! `since`, signed before 2026-12) vouch for everything before them.
//!
//! `chatwarden audit verify FILE --key PUBLIC.pem` checks them: a file
//! rewritten without the private key fails at its first checkpoint, has
//! none, or has records no checkpoint covers. Records after the last
//! checkpoint are vouched for by none yet; `verify` counts them.
//!
//! The private key stays with the gateway (a Secret, a file only its user
//! reads); auditors hold the public key. Keys: `openssl genpkey -algorithm
//! ed25519 -out audit-signing.pem` and `openssl pkey -in audit-signing.pem
//! -pubout -out audit-signing.pub.pem`.

use std::time::Duration;

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::record::{AuditEvent, AuditRecord};
use crate::decision::Verdict;

/// `audit.checkpoint_every` when the config does not say.
pub const DEFAULT_CHECKPOINT_EVERY: Duration = Duration::from_secs(10);

/// What is signed before the head hash: no other message of this key's can
/// pass for a checkpoint. `v1` signed the head alone (still checked).
const DOMAIN_V1: &[u8] = b"chatwarden audit checkpoint v1\n";
/// `v2` signs the head and where the signer's stretch of the chain began.
const DOMAIN_V2: &[u8] = b"chatwarden audit checkpoint v2\n";

/// The DER prefix of an Ed25519 `SubjectPublicKeyInfo` (RFC 8410); the
/// 32-byte key follows.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// The gateway's signing key.
pub struct Signer {
    key: Ed25519KeyPair,
    key_id: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// From a PEM `PRIVATE KEY` (PKCS#8) holding an Ed25519 key.
    pub fn from_pem(pem: &[u8]) -> Result<Signer, String> {
        let der = match rustls_pemfile::private_key(&mut &pem[..]) {
            Ok(Some(pingora_core::tls::PrivateKeyDer::Pkcs8(der))) => der,
            Ok(Some(_)) => return Err("not a PKCS#8 PRIVATE KEY".into()),
            Ok(None) => return Err("holds no PEM private key".into()),
            Err(e) => return Err(format!("malformed PEM: {e}")),
        };
        let key = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der.secret_pkcs8_der())
            .map_err(|e| format!("not an Ed25519 private key ({e})"))?;
        let key_id = key_id(key.public_key().as_ref());
        Ok(Signer { key, key_id })
    }

    /// The first 8 hex digits of the SHA-256 of the public key.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The checkpoint record for a chain whose head (last hash) is `head`,
    /// vouching for the records after `since` (the head when this process
    /// took the chain over), `sealed` of them after the previous checkpoint.
    pub fn checkpoint(&self, head: &[u8; 32], since: &[u8; 32], sealed: u64) -> AuditRecord {
        let since = hex::encode(since);
        let signature = self.key.sign(&message_v2(&hex::encode(head), &since));
        AuditRecord::event(
            OffsetDateTime::now_utc(),
            AuditEvent::Checkpoint,
            Verdict::Allow,
            format!(
                "{sealed} records sealed; ed25519 key={} since={since} sig={}",
                self.key_id,
                hex::encode(signature.as_ref())
            ),
        )
    }
}

/// Checks checkpoints against the public key.
#[derive(Debug, Clone)]
pub struct Checker {
    key: [u8; 32],
    key_id: String,
}

/// Why a checkpoint does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("its detail carries no `key=… sig=…`")]
    Malformed,
    #[error("signed with key {found}, not {expected} (the key(s) given)")]
    OtherKey { found: String, expected: String },
    #[error("the signature does not match (the file was rewritten, or the key is wrong)")]
    BadSignature,
}

impl Checker {
    /// From a PEM `PUBLIC KEY` (`SubjectPublicKeyInfo`) holding an Ed25519
    /// key.
    pub fn from_pem(pem: &[u8]) -> Result<Checker, String> {
        let spki = match rustls_pemfile::public_keys(&mut &pem[..]).next() {
            Some(Ok(spki)) => spki,
            Some(Err(e)) => return Err(format!("malformed PEM: {e}")),
            None => return Err("holds no PEM PUBLIC KEY".into()),
        };
        let raw = spki
            .as_ref()
            .strip_prefix(&ED25519_SPKI_PREFIX[..])
            .filter(|k| k.len() == 32)
            .ok_or("not an Ed25519 public key")?;
        let mut key = [0u8; 32];
        key.copy_from_slice(raw);
        Ok(Checker {
            key_id: key_id(&key),
            key,
        })
    }

    /// [`from_pem`](Self::from_pem) of the file at `path`.
    pub fn from_path(path: &std::path::Path) -> Result<Checker, String> {
        let pem = std::fs::read(path)
            .map_err(|e| format!("cannot read public key {}: {e}", path.display()))?;
        Checker::from_pem(&pem).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Checks a checkpoint's `detail` against its `prev_hash` (hex). On
    /// success, where the records it vouches for begin: `Since::Hash` (a
    /// `v2` checkpoint: after the record with that hash), or
    /// `Since::Start` (`v1`: everything before it).
    pub fn check(&self, prev_hash: &str, detail: &str) -> Result<Since, CheckpointError> {
        let field = |name: &str| {
            detail
                .split(' ')
                .find_map(|part| part.strip_prefix(name))
                .ok_or(CheckpointError::Malformed)
        };
        let found = field("key=")?;
        if found != self.key_id {
            return Err(CheckpointError::OtherKey {
                found: found.to_string(),
                expected: self.key_id.clone(),
            });
        }
        let signature = hex::decode(field("sig=")?).map_err(|_| CheckpointError::Malformed)?;
        let (message, since) = match field("since=") {
            Ok(since) => {
                let mut hash = [0u8; 32];
                hex::decode_to_slice(since, &mut hash).map_err(|_| CheckpointError::Malformed)?;
                (message_v2(prev_hash, since), Since::Hash(hash))
            }
            Err(_) => (message_v1(prev_hash), Since::Start),
        };
        UnparsedPublicKey::new(&ED25519, &self.key)
            .verify(&message, &signature)
            .map_err(|_| CheckpointError::BadSignature)?;
        Ok(since)
    }
}

/// A new key pair as (private PEM, public PEM), for the demo (keys for
/// real use come from `openssl genpkey`, where the operator keeps them).
pub fn generate() -> Result<(String, String), String> {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|e| e.to_string())?;
    let key = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|e| e.to_string())?;
    let mut spki = ED25519_SPKI_PREFIX.to_vec();
    spki.extend_from_slice(key.public_key().as_ref());
    Ok((pem("PRIVATE KEY", pkcs8.as_ref()), pem("PUBLIC KEY", &spki)))
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let text = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in text.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The public keys a file's checkpoints may be signed with: after a key
/// rotation, the old key's and the new one's. Each checkpoint names its
/// key (by id), and is checked against that one.
#[derive(Debug, Clone)]
pub struct Keyring {
    keys: Vec<Checker>,
}

impl From<Checker> for Keyring {
    fn from(key: Checker) -> Keyring {
        Keyring { keys: vec![key] }
    }
}

impl Keyring {
    /// The keys in the PEM files at `paths` (one each); a key given twice
    /// counts once.
    pub fn from_paths(paths: &[std::path::PathBuf]) -> Result<Keyring, String> {
        let mut keys: Vec<Checker> = Vec::with_capacity(paths.len());
        for path in paths {
            let key = Checker::from_path(path)?;
            if !keys.iter().any(|k| k.key == key.key) {
                keys.push(key);
            }
        }
        Ok(Keyring { keys })
    }

    /// The ids of the keys, as checkpoints name them.
    pub fn key_ids(&self) -> Vec<&str> {
        self.keys.iter().map(Checker::key_id).collect()
    }

    /// [`Checker::check`] with the key the checkpoint names; also returns
    /// that key's id.
    pub fn check(&self, prev_hash: &str, detail: &str) -> Result<(Since, &str), CheckpointError> {
        let named = detail
            .split(' ')
            .find_map(|part| part.strip_prefix("key="))
            .ok_or(CheckpointError::Malformed)?;
        let Some(key) = self.keys.iter().find(|k| k.key_id == named) else {
            return Err(CheckpointError::OtherKey {
                found: named.to_string(),
                expected: self.key_ids().join(", "),
            });
        };
        Ok((key.check(prev_hash, detail)?, key.key_id()))
    }
}

/// Where the records a checkpoint vouches for begin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    /// After the record whose hash this is (or, when no record in view has
    /// it, before the first one in view).
    Hash([u8; 32]),
    /// At the start of the chain (`v1` checkpoints).
    Start,
}

fn message_v1(head_hex: &str) -> Vec<u8> {
    [DOMAIN_V1, head_hex.as_bytes()].concat()
}

fn message_v2(head_hex: &str, since_hex: &str) -> Vec<u8> {
    [DOMAIN_V2, head_hex.as_bytes(), b"\n", since_hex.as_bytes()].concat()
}

fn key_id(public: &[u8]) -> String {
    hex::encode(&Sha256::digest(public)[..4])
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A fresh Ed25519 key pair as (private PEM, public PEM).
    pub(crate) fn key_pair() -> (String, String) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("key");
        (key.serialize_pem(), key.public_key_pem())
    }

    #[test]
    fn a_checkpoint_verifies_with_its_key_only() {
        let (private, public) = key_pair();
        let signer = Signer::from_pem(private.as_bytes()).expect("signer");
        let checker = Checker::from_pem(public.as_bytes()).expect("checker");
        assert_eq!(signer.key_id(), checker.key_id());
        let head = [7u8; 32];
        let since = [3u8; 32];
        let record = signer.checkpoint(&head, &since, 12);
        let detail = record.detail.clone().expect("detail");
        assert!(
            detail.starts_with("12 records sealed; ed25519 key="),
            "{detail}"
        );
        let prev = hex::encode(head);
        assert_eq!(checker.check(&prev, &detail), Ok(Since::Hash(since)));
        assert_eq!(
            checker.check(&hex::encode([8u8; 32]), &detail),
            Err(CheckpointError::BadSignature),
            "another head"
        );
        // Where the vouching begins is signed too: moving it back to claim
        // older records fails.
        let moved = detail.replace(&hex::encode(since), &hex::encode([0u8; 32]));
        assert_eq!(
            checker.check(&prev, &moved),
            Err(CheckpointError::BadSignature)
        );
        // So does dropping it, to pass for a v1 checkpoint (which vouches
        // for everything before it).
        let dropped = detail.replace(&format!(" since={}", hex::encode(since)), "");
        assert_eq!(
            checker.check(&prev, &dropped),
            Err(CheckpointError::BadSignature)
        );
        let forged = detail.replace("sig=", "sig=00");
        assert!(checker.check(&prev, &forged).is_err());
        assert_eq!(
            checker.check(&prev, "12 records sealed"),
            Err(CheckpointError::Malformed)
        );

        let (_, other_public) = key_pair();
        let other = Checker::from_pem(other_public.as_bytes()).expect("checker");
        assert!(matches!(
            other.check(&prev, &detail),
            Err(CheckpointError::OtherKey { .. })
        ));
    }

    #[test]
    fn v1_checkpoints_still_verify_and_vouch_from_the_start() {
        let (private, public) = key_pair();
        let signer = Signer::from_pem(private.as_bytes()).expect("signer");
        let checker = Checker::from_pem(public.as_bytes()).expect("checker");
        let prev = hex::encode([9u8; 32]);
        let sig = signer.key.sign(&message_v1(&prev));
        let detail = format!(
            "4 records sealed; ed25519 key={} sig={}",
            signer.key_id(),
            hex::encode(sig.as_ref())
        );
        assert_eq!(checker.check(&prev, &detail), Ok(Since::Start));
        let with_since = detail.replace(" sig=", &format!(" since={} sig=", "0".repeat(64)));
        assert_eq!(
            checker.check(&prev, &with_since),
            Err(CheckpointError::BadSignature),
            "a v1 signature does not pass for a v2 checkpoint"
        );
    }

    #[test]
    fn a_keyring_checks_each_checkpoint_with_the_key_it_names() {
        let dir = tempfile::tempdir().expect("dir");
        let mut signers = Vec::new();
        let mut paths = Vec::new();
        for name in ["old", "new"] {
            let (private, public) = key_pair();
            signers.push(Signer::from_pem(private.as_bytes()).expect("signer"));
            let path = dir.path().join(format!("{name}.pub.pem"));
            std::fs::write(&path, public).expect("write");
            paths.push(path);
        }
        // The old key given twice counts once.
        paths.push(paths[0].clone());
        let ring = Keyring::from_paths(&paths).expect("keys");
        assert_eq!(
            ring.key_ids(),
            vec![signers[0].key_id(), signers[1].key_id()]
        );
        let prev = hex::encode([5u8; 32]);
        for signer in &signers {
            let detail = signer
                .checkpoint(&[5; 32], &[1; 32], 3)
                .detail
                .expect("detail");
            assert_eq!(
                ring.check(&prev, &detail),
                Ok((Since::Hash([1; 32]), signer.key_id()))
            );
            // Another head fails with the named key, not for want of one.
            assert_eq!(
                ring.check(&hex::encode([6u8; 32]), &detail),
                Err(CheckpointError::BadSignature)
            );
        }
        let (stranger, _) = key_pair();
        let stranger = Signer::from_pem(stranger.as_bytes()).expect("signer");
        let detail = stranger
            .checkpoint(&[5; 32], &[1; 32], 3)
            .detail
            .expect("detail");
        assert_eq!(
            ring.check(&prev, &detail),
            Err(CheckpointError::OtherKey {
                found: stranger.key_id().to_string(),
                expected: format!("{}, {}", signers[0].key_id(), signers[1].key_id()),
            })
        );
    }

    #[test]
    fn a_generated_pair_signs_and_checks() {
        let (private, public) = generate().expect("a key pair");
        assert!(private.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        let signer = Signer::from_pem(private.as_bytes()).expect("signer");
        let checker = Checker::from_pem(public.as_bytes()).expect("checker");
        let detail = signer
            .checkpoint(&[1; 32], &[0; 32], 1)
            .detail
            .expect("detail");
        assert_eq!(
            checker.check(&hex::encode([1u8; 32]), &detail),
            Ok(Since::Hash([0; 32]))
        );
    }

    #[test]
    fn keys_of_other_kinds_are_refused() {
        let p256 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        assert!(Signer::from_pem(p256.serialize_pem().as_bytes())
            .is_err_and(|e| e.contains("not an Ed25519")));
        assert!(Checker::from_pem(p256.public_key_pem().as_bytes())
            .is_err_and(|e| e.contains("not an Ed25519")));
        assert!(Signer::from_pem(b"hello").is_err_and(|e| e.contains("no PEM")));
        assert!(Checker::from_pem(b"hello").is_err_and(|e| e.contains("no PEM")));
    }
}
