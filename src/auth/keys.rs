//! Verification keys, each bound to its family so that an algorithm can
//! only ever meet a key of its own kind: an HS256 token naming an RSA or EC
//! key is refused before any HMAC is computed (the classic algorithm
//! confusion), an ES256 token cannot use a P-384 key, and a JWK that states
//! its `alg` is used for that algorithm only.
//!
//! Keys come from three places: the identity provider's JWKS (fetched by
//! [`jwks`](super::jwks)), PEM public keys named by the operator, and an
//! HMAC secret. The last two are *local* and survive every JWKS refresh;
//! [`KeyStore`] merges them with the latest remote set and swaps the
//! result atomically.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use serde_json::Value;

use super::prepared::{Material, PreparedKey};

/// RFC 7518 §3.2: an HMAC key must be at least as long as the hash.
pub const MIN_HMAC_SECRET_BYTES: usize = 32;
/// Keys with smaller moduli are refused (and aws-lc would refuse them too).
pub const MIN_RSA_BITS: usize = 2048;
/// A JWKS with more keys than this is cut short: no identity provider
/// publishes that many, and each one costs memory for as long as it lives.
pub const MAX_JWKS_KEYS: usize = 100;

/// Every signature algorithm a public key can verify.
const ALL_ASYMMETRIC: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// The kind of key, which fixes the algorithms it can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyFamily {
    /// RS256/384/512 and PS256/384/512.
    Rsa,
    /// ES256 only.
    EcP256,
    /// ES384 only.
    EcP384,
    /// EdDSA only.
    Ed25519,
    /// HS256/384/512, and only from the configured secret.
    Hmac,
}

/// One key able to verify signatures.
#[derive(Clone)]
pub struct VerifyingKey {
    kid: Option<String>,
    family: KeyFamily,
    /// The JWK's `alg`, when it stated one: then only that algorithm.
    alg: Option<Algorithm>,
    key: DecodingKey,
    /// The key parsed once for aws-lc (empty for HMAC secrets).
    prepared: PreparedKey,
}

/// An immutable set of keys, indexed by `kid`.
#[derive(Clone, Default)]
pub struct KeySet {
    keys: Vec<VerifyingKey>,
    /// kid → indexes into `keys`; at most one per family.
    by_kid: HashMap<String, Vec<usize>>,
}

/// The live key set: local keys merged with the latest JWKS, swapped
/// atomically, with a generation that caches compare against.
pub struct KeyStore {
    /// Keys from the config file (static PEMs, the HMAC secret); replaced
    /// on a config reload.
    local: ArcSwap<KeySet>,
    /// The last JWKS installed; kept across reloads.
    remote: ArcSwap<KeySet>,
    current: ArcSwap<KeySet>,
    generation: AtomicU64,
    /// Serializes writers (a JWKS refresh racing a reload) so neither's
    /// keys are lost; readers never take it.
    writer: std::sync::Mutex<()>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("JWKS is not valid JSON with a `keys` array: {0}")]
    Json(String),
    #[error("JWKS has no usable signing key ({skipped} skipped)")]
    NoUsableKeys { skipped: usize },
    #[error("key `{kid}`: {reason}")]
    Invalid { kid: String, reason: &'static str },
    #[error("key id is empty")]
    EmptyKid,
    #[error("key id `{0}` is used twice for the same key type")]
    DuplicateKid(String),
    #[error("HMAC secret is {len} bytes; at least {MIN_HMAC_SECRET_BYTES} are required")]
    WeakHmacSecret { len: usize },
}

/// Why no key could be chosen for a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Selection {
    UnknownKid,
    /// The kid exists but its key cannot verify the token's algorithm.
    WrongFamily,
    /// No kid, and not exactly one key can verify the algorithm.
    NotExactlyOne,
}

impl KeyFamily {
    /// Whether a key of this family may verify `alg`.
    pub fn accepts(self, alg: Algorithm) -> bool {
        match self {
            KeyFamily::Rsa => alg.family() == AlgorithmFamily::Rsa,
            KeyFamily::EcP256 => alg == Algorithm::ES256,
            KeyFamily::EcP384 => alg == Algorithm::ES384,
            KeyFamily::Ed25519 => alg == Algorithm::EdDSA,
            KeyFamily::Hmac => alg.family() == AlgorithmFamily::Hmac,
        }
    }
}

impl VerifyingKey {
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    pub fn family(&self) -> KeyFamily {
        self.family
    }

    /// Whether this key may verify a token signed with `alg`.
    pub fn usable_for(&self, alg: Algorithm) -> bool {
        self.family.accepts(alg) && self.alg.is_none_or(|a| a == alg)
    }

    /// Whether `signature_b64` is this key's signature of `message` under
    /// `alg`: through the key parsed at load when there is one, else
    /// through jsonwebtoken.
    pub(crate) fn verify_signature(
        &self,
        alg: Algorithm,
        signature_b64: &str,
        message: &[u8],
    ) -> bool {
        if let Some(valid) = self.prepared.verify(alg, signature_b64, message) {
            return valid;
        }
        jsonwebtoken::crypto::verify(signature_b64, message, &self.key, alg).unwrap_or(false)
    }

    /// Build a key, parsing its material once for aws-lc.
    fn new(
        kid: Option<String>,
        family: KeyFamily,
        alg: Option<Algorithm>,
        key: DecodingKey,
        rsa_components: Option<(&[u8], &[u8])>,
    ) -> VerifyingKey {
        let algs: Vec<Algorithm> = ALL_ASYMMETRIC
            .iter()
            .copied()
            .filter(|a| family.accepts(*a) && alg.is_none_or(|only| only == *a))
            .collect();
        let bytes = key.try_get_as_bytes().ok();
        let material = match (family, bytes, rsa_components) {
            (KeyFamily::EcP256, Some(b), _) => Some(Material::EcP256(b)),
            (KeyFamily::EcP384, Some(b), _) => Some(Material::EcP384(b)),
            (KeyFamily::Ed25519, Some(b), _) => Some(Material::Ed25519(b)),
            (KeyFamily::Rsa, _, Some((n, e))) => Some(Material::RsaComponents { n, e }),
            (KeyFamily::Rsa, Some(b), None) => Some(Material::RsaDer(b)),
            _ => None,
        };
        let prepared = material
            .map(|m| PreparedKey::new(m, &algs))
            .unwrap_or_default();
        VerifyingKey {
            kid,
            family,
            alg,
            key,
            prepared,
        }
    }
}

impl fmt::Debug for VerifyingKey {
    // Key material stays out of logs even by accident.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("family", &self.family)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl KeySet {
    pub fn new() -> KeySet {
        KeySet::default()
    }

    /// Parse a JWKS document (RFC 7517 §5). Keys that are not for
    /// signatures, of an unsupported type or curve, too weak, or malformed
    /// are skipped with a warning; symmetric (`oct`) keys are skipped too,
    /// because a secret has no business in a published document. Fails if
    /// nothing usable remains.
    pub fn from_jwks_json(bytes: &[u8]) -> Result<KeySet, KeyError> {
        #[derive(serde::Deserialize)]
        struct Doc {
            keys: Vec<Value>,
        }
        let doc: Doc = serde_json::from_slice(bytes).map_err(|e| KeyError::Json(e.to_string()))?;
        let mut set = KeySet::new();
        let mut skipped = 0;
        if doc.keys.len() > MAX_JWKS_KEYS {
            tracing::warn!(
                keys = doc.keys.len(),
                max = MAX_JWKS_KEYS,
                "JWKS has too many keys; ignoring the rest"
            );
        }
        for (index, value) in doc.keys.iter().take(MAX_JWKS_KEYS).enumerate() {
            match jwk_to_key(value).and_then(|key| set.insert(key)) {
                Ok(()) => {}
                Err(reason) => {
                    skipped += 1;
                    let kid = value.get("kid").and_then(Value::as_str).map(sanitize_kid);
                    tracing::warn!(index, kid = ?kid, %reason, "skipping JWKS key");
                }
            }
        }
        if set.is_empty() {
            return Err(KeyError::NoUsableKeys { skipped });
        }
        Ok(set)
    }

    /// Add a PEM public key (SPKI `PUBLIC KEY`, PKCS#1 `RSA PUBLIC KEY`, or
    /// a certificate) under an operator-chosen kid. The family is detected.
    pub fn add_pem(&mut self, kid: &str, pem: &[u8]) -> Result<(), KeyError> {
        if kid.is_empty() {
            return Err(KeyError::EmptyKid);
        }
        let invalid = |reason| KeyError::Invalid {
            kid: kid.to_string(),
            reason,
        };
        // jsonwebtoken would read a PKCS#1 private key as if it were public
        // and then fail every signature; say what is wrong instead.
        if contains(pem, b"PRIVATE KEY") {
            return Err(invalid(
                "a private key was given where the public key belongs",
            ));
        }
        let (family, key) = if let Ok(k) = DecodingKey::from_ec_pem(pem) {
            let family = match k.try_get_as_bytes().map(<[u8]>::len) {
                Ok(65) => KeyFamily::EcP256,
                Ok(97) => KeyFamily::EcP384,
                _ => return Err(invalid("unsupported elliptic curve (P-256 and P-384 only)")),
            };
            (family, k)
        } else if let Ok(k) = DecodingKey::from_ed_pem(pem) {
            if k.try_get_as_bytes().map(<[u8]>::len) != Ok(32) {
                return Err(invalid("not an Ed25519 key"));
            }
            (KeyFamily::Ed25519, k)
        } else if let Ok(k) = DecodingKey::from_rsa_pem(pem) {
            let bits = Jwk::from_decoding_key(&k, None)
                .ok()
                .and_then(|jwk| match jwk.algorithm {
                    AlgorithmParameters::RSA(p) => URL_SAFE_NO_PAD.decode(p.n).ok(),
                    _ => None,
                })
                .map(|n| modulus_bits(&n))
                .ok_or_else(|| invalid("not a valid RSA public key"))?;
            if bits < MIN_RSA_BITS {
                return Err(invalid("RSA key is shorter than 2048 bits"));
            }
            (KeyFamily::Rsa, k)
        } else {
            return Err(invalid(
                "not a PEM public key (RSA, EC P-256/P-384 or Ed25519)",
            ));
        };
        self.insert(VerifyingKey::new(
            Some(kid.to_string()),
            family,
            None,
            key,
            None,
        ))
        .map_err(|_| KeyError::DuplicateKid(kid.to_string()))
    }

    /// Add the HMAC secret, used for HS* tokens only. With a kid it answers
    /// tokens naming that kid; without one, only tokens that name none.
    pub fn add_hmac_secret(&mut self, kid: Option<&str>, secret: &[u8]) -> Result<(), KeyError> {
        if secret.len() < MIN_HMAC_SECRET_BYTES {
            return Err(KeyError::WeakHmacSecret { len: secret.len() });
        }
        if kid == Some("") {
            return Err(KeyError::EmptyKid);
        }
        self.insert(VerifyingKey::new(
            kid.map(str::to_string),
            KeyFamily::Hmac,
            None,
            DecodingKey::from_secret(secret),
            None,
        ))
        .map_err(|_| KeyError::DuplicateKid(kid.unwrap_or_default().to_string()))
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn has_hmac(&self) -> bool {
        self.keys.iter().any(|k| k.family == KeyFamily::Hmac)
    }

    pub fn keys(&self) -> impl Iterator<Item = &VerifyingKey> {
        self.keys.iter()
    }

    /// This set with `other`'s keys added; on a kid clash (same kid, same
    /// family) this set's key wins, so a remote document can never replace
    /// a key the operator pinned.
    pub fn merged_with(&self, other: &KeySet) -> KeySet {
        let mut merged = self.clone();
        for key in &other.keys {
            if merged.insert(key.clone()).is_err() {
                tracing::warn!(kid = ?key.kid.as_deref().map(sanitize_kid), "JWKS key shadowed by a local key with the same kid");
            }
        }
        merged
    }

    /// The one key that may verify a token with this `kid` and `alg`.
    pub(crate) fn select(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<&VerifyingKey, Selection> {
        match kid {
            Some(kid) => {
                let indexes = self.by_kid.get(kid).ok_or(Selection::UnknownKid)?;
                indexes
                    .iter()
                    .map(|&i| &self.keys[i])
                    .find(|k| k.usable_for(alg))
                    .ok_or(Selection::WrongFamily)
            }
            None => {
                let mut usable = self.keys.iter().filter(|k| k.usable_for(alg));
                match (usable.next(), usable.next()) {
                    (Some(only), None) => Ok(only),
                    _ => Err(Selection::NotExactlyOne),
                }
            }
        }
    }

    /// Add a key unless one of the same family already has its kid.
    fn insert(&mut self, key: VerifyingKey) -> Result<(), &'static str> {
        if let Some(kid) = &key.kid {
            let indexes = self.by_kid.entry(kid.clone()).or_default();
            if indexes.iter().any(|&i| self.keys[i].family == key.family) {
                return Err("duplicate kid for the same key type");
            }
            indexes.push(self.keys.len());
        }
        self.keys.push(key);
        Ok(())
    }
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.keys.iter()).finish()
    }
}

impl KeyStore {
    /// A store holding the local keys until a JWKS arrives.
    pub fn new(local: KeySet) -> KeyStore {
        KeyStore {
            current: ArcSwap::from_pointee(local.clone()),
            local: ArcSwap::from_pointee(local),
            remote: ArcSwap::from_pointee(KeySet::new()),
            generation: AtomicU64::new(0),
            writer: std::sync::Mutex::new(()),
        }
    }

    /// The keys the config file provided.
    pub fn local(&self) -> Arc<KeySet> {
        self.local.load_full()
    }

    /// Replace the config file's keys (a reload), keeping the JWKS keys.
    pub fn set_local(&self, local: KeySet) {
        let _w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        self.local.store(Arc::new(local));
        self.recompute();
    }

    /// The keys to verify with now.
    pub fn load(&self) -> Arc<KeySet> {
        self.current.load_full()
    }

    /// Bumped on every swap; cached verifications from an older generation
    /// are discarded.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Whether HS* algorithms can be verified at all (the secret is local,
    /// never fetched).
    pub fn has_hmac(&self) -> bool {
        self.local.load().has_hmac()
    }

    /// Install a freshly fetched JWKS next to the local keys.
    pub fn replace_remote(&self, remote: &KeySet) {
        let _w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        self.remote.store(Arc::new(remote.clone()));
        self.recompute();
    }

    fn recompute(&self) {
        let merged = self.local.load().merged_with(&self.remote.load());
        self.current.store(Arc::new(merged));
        // After the store: a reader that sees the new generation also sees
        // the new set (Acquire in `generation`).
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Run `f` against the current set without cloning the `Arc`.
    pub(crate) fn with_current<R>(&self, f: impl FnOnce(&KeySet) -> R) -> R {
        f(&self.current.load())
    }
}

impl fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyStore")
            .field("generation", &self.generation())
            .field("keys", &self.current.load().len())
            .finish()
    }
}

/// A kid as it may appear in a log line: printable ASCII, bounded.
pub(crate) fn sanitize_kid(kid: &str) -> String {
    kid.chars()
        .take(64)
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect()
}

fn jwk_to_key(value: &Value) -> Result<VerifyingKey, &'static str> {
    let obj = value.as_object().ok_or("not a JSON object")?;
    match obj.get("use") {
        None => {}
        Some(Value::String(u)) if u == "sig" => {}
        Some(_) => return Err("`use` is not sig"),
    }
    if let Some(ops) = obj.get("key_ops") {
        let verifies = ops
            .as_array()
            .is_some_and(|ops| ops.iter().any(|o| o.as_str() == Some("verify")));
        if !verifies {
            return Err("`key_ops` does not include verify");
        }
    }
    let kid = match obj.get("kid") {
        None => None,
        Some(Value::String(k)) if !k.is_empty() => Some(k.clone()),
        Some(_) => return Err("`kid` is not a non-empty string"),
    };
    let alg = match obj.get("alg") {
        None => None,
        Some(Value::String(a)) => {
            Some(Algorithm::from_str(a).map_err(|_| "`alg` is not a supported signing algorithm")?)
        }
        Some(_) => return Err("`alg` is not a string"),
    };
    let kty = obj.get("kty").and_then(Value::as_str).ok_or("no `kty`")?;
    let crv = obj.get("crv").and_then(Value::as_str);
    let part = |name: &str| {
        obj.get(name)
            .and_then(Value::as_str)
            .ok_or("missing key parameter")
    };
    let decoded = |name: &str| -> Result<Vec<u8>, &'static str> {
        URL_SAFE_NO_PAD
            .decode(part(name)?)
            .map_err(|_| "key parameter is not base64url")
    };
    let mut rsa = None;
    let (family, key) = match (kty, crv) {
        ("RSA", _) => {
            let (n, e) = (decoded("n")?, decoded("e")?);
            if modulus_bits(&n) < MIN_RSA_BITS {
                return Err("RSA key is shorter than 2048 bits");
            }
            if e.is_empty() {
                return Err("RSA exponent is empty");
            }
            let key = DecodingKey::from_rsa_raw_components(&n, &e);
            rsa = Some((n, e));
            (KeyFamily::Rsa, key)
        }
        ("EC", Some(curve @ ("P-256" | "P-384"))) => {
            let (family, len) = if curve == "P-256" {
                (KeyFamily::EcP256, 32)
            } else {
                (KeyFamily::EcP384, 48)
            };
            if decoded("x")?.len() != len || decoded("y")?.len() != len {
                return Err("EC coordinates have the wrong length for the curve");
            }
            let key = DecodingKey::from_ec_components(part("x")?, part("y")?)
                .map_err(|_| "invalid EC key")?;
            (family, key)
        }
        ("OKP", Some("Ed25519")) => {
            if decoded("x")?.len() != 32 {
                return Err("Ed25519 key is not 32 bytes");
            }
            let key =
                DecodingKey::from_ed_components(part("x")?).map_err(|_| "invalid Ed25519 key")?;
            (KeyFamily::Ed25519, key)
        }
        ("EC" | "OKP", _) => return Err("unsupported curve"),
        ("oct", _) => return Err("symmetric keys are not accepted from a JWKS"),
        _ => return Err("unsupported key type"),
    };
    if let Some(a) = alg {
        if !family.accepts(a) {
            return Err("`alg` does not match the key type");
        }
    }
    let components = rsa.as_ref().map(|(n, e)| (n.as_slice(), e.as_slice()));
    Ok(VerifyingKey::new(kid, family, alg, key, components))
}

fn modulus_bits(n: &[u8]) -> usize {
    let n = match n.iter().position(|&b| b != 0) {
        Some(first) => &n[first..],
        None => return 0,
    };
    n.len() * 8 - n[0].leading_zeros() as usize
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::auth::testkit;

    fn jwks(keys: Vec<Value>) -> Vec<u8> {
        json!({ "keys": keys }).to_string().into_bytes()
    }

    /// Every asymmetric key, from a JWKS or a PEM, is parsed once at load
    /// and its tokens verify through that parsed key (not the per-call
    /// fallback), including RSA keys rebuilt from a JWK's `n` and `e`.
    #[test]
    fn asymmetric_keys_are_prepared_and_verify_through_it() {
        let keys = [
            testkit::es256("ec"),
            testkit::es384("ec384"),
            testkit::ed25519("ed"),
            testkit::rsa("rsa"),
        ];
        let set =
            KeySet::from_jwks_json(testkit::jwks(&keys.iter().collect::<Vec<_>>()).as_bytes())
                .unwrap_or_else(|e| panic!("{e}"));
        let mut pems = KeySet::new();
        for k in &keys {
            pems.add_pem(&k.kid, k.public_pem.as_bytes())
                .unwrap_or_else(|e| panic!("{e}"));
        }
        for (source, set) in [("jwks", &set), ("pem", &pems)] {
            for k in &keys {
                let token = testkit::token(k, testkit::claims());
                let (input, sig) = token.rsplit_once('.').unwrap_or_else(|| panic!("JWS"));
                let key = set
                    .select(Some(&k.kid), k.alg)
                    .unwrap_or_else(|_| panic!("{source}: key {} selected", k.kid));
                assert_eq!(
                    key.prepared.verify(k.alg, sig, input.as_bytes()),
                    Some(true),
                    "{source}: {} is prepared and its token verifies",
                    k.kid
                );
                let mut forged = input.to_string();
                forged.push('x');
                assert!(
                    !key.verify_signature(k.alg, sig, forged.as_bytes()),
                    "{source}: {} refuses a changed signing input",
                    k.kid
                );
            }
        }
    }

    #[test]
    fn jwks_keys_are_indexed_by_kid_and_family() {
        let ec = testkit::es256("ec-1");
        let ed = testkit::ed25519("ed-1");
        let set = KeySet::from_jwks_json(&jwks(vec![ec.jwk.clone(), ed.jwk.clone()]))
            .unwrap_or_else(|e| panic!("a JWKS with two good keys should load: {e}"));
        assert_eq!(set.len(), 2);
        assert!(set.select(Some("ec-1"), Algorithm::ES256).is_ok());
        assert_eq!(
            set.select(Some("ec-1"), Algorithm::ES384)
                .map(|k| k.family()),
            Err(Selection::WrongFamily),
            "a P-256 key must not verify ES384"
        );
        assert_eq!(
            set.select(Some("ec-1"), Algorithm::HS256)
                .map(|k| k.family()),
            Err(Selection::WrongFamily),
            "an EC key must never be used as an HMAC secret"
        );
        assert_eq!(
            set.select(Some("nope"), Algorithm::ES256)
                .map(|k| k.family()),
            Err(Selection::UnknownKid)
        );
    }

    #[test]
    fn unusable_jwks_entries_are_skipped_not_fatal() {
        let ec = testkit::es256("good");
        let mut enc = ec.jwk.clone();
        enc["use"] = json!("enc");
        enc["kid"] = json!("enc-key");
        let mut wrong_alg = ec.jwk.clone();
        wrong_alg["alg"] = json!("RS256");
        wrong_alg["kid"] = json!("wrong-alg");
        let oct = json!({"kty": "oct", "k": "c2VjcmV0", "kid": "oct"});
        let p521 = json!({"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA", "kid": "p521"});
        let weird = json!({"kty": "XYZ", "kid": "x"});
        let set = KeySet::from_jwks_json(&jwks(vec![
            enc,
            wrong_alg,
            oct,
            p521,
            weird,
            json!(7),
            ec.jwk.clone(),
        ]))
        .unwrap_or_else(|e| panic!("the one good key should be kept: {e}"));
        assert_eq!(
            set.len(),
            1,
            "only the signing key with a consistent alg should survive"
        );
        assert_eq!(set.keys().next().and_then(VerifyingKey::kid), Some("good"));
    }

    #[test]
    fn a_jwks_without_usable_keys_is_an_error() {
        let oct = json!({"kty": "oct", "k": "c2VjcmV0"});
        assert_eq!(
            KeySet::from_jwks_json(&jwks(vec![oct])).map(|s| s.len()),
            Err(KeyError::NoUsableKeys { skipped: 1 })
        );
        assert!(matches!(
            KeySet::from_jwks_json(b"{\"keys\": 3}"),
            Err(KeyError::Json(_))
        ));
        assert!(matches!(
            KeySet::from_jwks_json(b"<html>"),
            Err(KeyError::Json(_))
        ));
    }

    #[test]
    fn jwk_alg_restricts_the_key_to_that_algorithm() {
        let rsa = testkit::rsa("r1");
        let mut jwk = rsa.jwk.clone();
        jwk["alg"] = json!("PS256");
        let set = KeySet::from_jwks_json(&jwks(vec![jwk])).unwrap_or_else(|e| panic!("{e}"));
        assert!(set.select(Some("r1"), Algorithm::PS256).is_ok());
        assert!(
            set.select(Some("r1"), Algorithm::RS256).is_err(),
            "a JWK stating alg PS256 must not verify RS256"
        );
    }

    #[test]
    fn pem_keys_detect_their_family() {
        let mut set = KeySet::new();
        set.add_pem("ec", testkit::es256("x").public_pem.as_bytes())
            .unwrap_or_else(|e| panic!("EC PEM should load: {e}"));
        set.add_pem("ec384", testkit::es384("x").public_pem.as_bytes())
            .unwrap_or_else(|e| panic!("P-384 PEM should load: {e}"));
        set.add_pem("ed", testkit::ed25519("x").public_pem.as_bytes())
            .unwrap_or_else(|e| panic!("Ed25519 PEM should load: {e}"));
        set.add_pem("rsa", testkit::rsa("x").public_pem.as_bytes())
            .unwrap_or_else(|e| panic!("RSA PEM should load: {e}"));
        let families: Vec<_> = set.keys().map(VerifyingKey::family).collect();
        assert_eq!(
            families,
            [
                KeyFamily::EcP256,
                KeyFamily::EcP384,
                KeyFamily::Ed25519,
                KeyFamily::Rsa
            ]
        );
        assert!(
            matches!(
                set.add_pem("priv", testkit::es256("x").private_pem.as_bytes()),
                Err(KeyError::Invalid { .. })
            ),
            "a private key must be refused where a public key belongs"
        );
        assert!(matches!(
            set.add_pem("junk", b"hello"),
            Err(KeyError::Invalid { .. })
        ));
        assert_eq!(
            set.add_pem("ec", testkit::es256("y").public_pem.as_bytes()),
            Err(KeyError::DuplicateKid("ec".into()))
        );
    }

    #[test]
    fn hmac_secrets_must_be_long_enough() {
        let mut set = KeySet::new();
        assert_eq!(
            set.add_hmac_secret(None, b"short"),
            Err(KeyError::WeakHmacSecret { len: 5 })
        );
        assert!(set.add_hmac_secret(None, &[7u8; 32]).is_ok());
        assert!(set.has_hmac());
    }

    #[test]
    fn kidless_tokens_need_exactly_one_candidate() {
        let a = testkit::es256("a");
        let b = testkit::es256("b");
        let one =
            KeySet::from_jwks_json(&jwks(vec![a.jwk.clone()])).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            one.select(None, Algorithm::ES256).is_ok(),
            "the only ES256 key may verify a kid-less token"
        );
        let two = KeySet::from_jwks_json(&jwks(vec![a.jwk.clone(), b.jwk.clone()]))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            two.select(None, Algorithm::ES256).map(|k| k.family()),
            Err(Selection::NotExactlyOne),
            "with two ES256 keys a kid-less token is ambiguous"
        );
    }

    #[test]
    fn store_keeps_local_keys_across_refreshes_and_bumps_generation() {
        let mut local = KeySet::new();
        local
            .add_hmac_secret(Some("local"), &[1u8; 32])
            .unwrap_or_else(|e| panic!("{e}"));
        let store = KeyStore::new(local);
        assert_eq!(store.generation(), 0);
        let remote = KeySet::from_jwks_json(&jwks(vec![testkit::es256("r").jwk]))
            .unwrap_or_else(|e| panic!("{e}"));
        store.replace_remote(&remote);
        assert_eq!(store.generation(), 1, "a swap should bump the generation");
        assert_eq!(
            store.load().len(),
            2,
            "local and remote keys should both be present"
        );
        assert!(store.has_hmac());
    }

    #[test]
    fn modulus_bits_ignores_leading_zeros() {
        assert_eq!(modulus_bits(&[0, 0x80, 0]), 16);
        assert_eq!(modulus_bits(&[0, 0x01]), 1);
        assert_eq!(modulus_bits(&[]), 0);
    }
}
