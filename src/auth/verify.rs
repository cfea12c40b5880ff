//! Token verification: structure, header rules, key choice, signature,
//! registered claims, identity. One [`Verifier`] per config snapshot; the
//! [`KeyStore`] it reads is shared with the JWKS refresher and outlives
//! reloads.
//!
//! Order matters: nothing from the payload is believed, or even reported,
//! before the signature checks out, so a forged token learns only
//! "invalid".

use std::net::IpAddr;
use std::sync::Arc;

use jsonwebtoken::{Algorithm, AlgorithmFamily};
use serde_json::{Map, Value};

use super::cache::{TokenDigest, VerifiedCache};
use super::claims::{identity_from_claims, optional_numeric_date, ClaimError};
use super::failures::{BadSignatureLimit, SignatureFailures};
use super::header;
use super::keys::{KeyStore, Selection};
use super::AuthSettings;
use crate::decision::Reason;
use crate::identity::Identity;

/// Checks tokens against one snapshot's settings and the live keys.
pub struct Verifier {
    settings: AuthSettings,
    keys: Arc<KeyStore>,
    cache: VerifiedCache,
}

/// A token that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub identity: Identity,
    /// The `kid` of the key that verified it, for the log.
    pub key_id: Option<String>,
    pub algorithm: Algorithm,
}

/// Why a token was refused. The message is for operators' logs; it never
/// contains the token, a claim value or key material (kids included: they
/// are attacker-chosen text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no bearer token in the request")]
    Missing,
    #[error("credentials are malformed: {0}")]
    MalformedCredentials(&'static str),
    #[error("token is {len} bytes, over the {max}-byte limit")]
    TooLarge { len: usize, max: usize },
    #[error("token is not a compact JWS: {0}")]
    Malformed(&'static str),
    #[error("token is unsigned (alg none)")]
    Unsigned,
    #[error("token algorithm is not a supported signing algorithm")]
    UnsupportedAlgorithm,
    #[error("token algorithm {0:?} is not allowed")]
    AlgorithmNotAllowed(Algorithm),
    #[error("token header has a crit parameter")]
    CriticalHeader,
    #[error("token typ is neither JWT nor at+jwt")]
    WrongType,
    #[error("nested tokens are not accepted")]
    Nested,
    #[error("no key has the token's kid")]
    UnknownKid,
    #[error("token has no kid and not exactly one key can verify {0:?}")]
    NoKeyForAlgorithm(Algorithm),
    #[error("the key named by the token's kid cannot verify {0:?}")]
    KeyAlgorithmMismatch(Algorithm),
    #[error("signature does not verify")]
    BadSignature,
    #[error("claims are not a JSON object")]
    ClaimsNotObject,
    #[error("issuer does not match")]
    WrongIssuer,
    #[error("audience does not match")]
    WrongAudience,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet (nbf)")]
    NotYetValid,
    #[error("token was issued in the future (iat)")]
    IssuedInFuture,
    #[error("claim `{0}` is missing")]
    MissingClaim(String),
    #[error("claim `{0}` has an unsupported type or value")]
    BadClaim(String),
    #[error("too many tokens with bad signatures from this client; retry in {retry_after}s")]
    TooManyBadSignatures { retry_after: u64 },
}

/// Settings that cannot verify anything safely; found when the snapshot
/// is built, never on the request path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    #[error("auth issuer is empty")]
    NoIssuer,
    #[error("auth audiences are empty")]
    NoAudience,
    #[error("auth algorithms are empty")]
    NoAlgorithm,
    #[error("{0:?} is allowed but no HMAC secret is configured")]
    HmacWithoutSecret(Algorithm),
    #[error("max token size must be positive")]
    NoTokenSize,
}

/// One client's allowance of bad signatures (see [`super::failures`]).
#[derive(Clone, Copy)]
pub struct Budget<'a> {
    pub failures: &'a SignatureFailures,
    pub client: IpAddr,
    pub limit: &'a BadSignatureLimit,
}

impl Verifier {
    pub fn new(settings: AuthSettings, keys: Arc<KeyStore>) -> Result<Verifier, SettingsError> {
        if settings.issuer.is_empty() {
            return Err(SettingsError::NoIssuer);
        }
        if settings.audiences.is_empty() {
            return Err(SettingsError::NoAudience);
        }
        if settings.algorithms.is_empty() {
            return Err(SettingsError::NoAlgorithm);
        }
        if let Some(&hs) = settings
            .algorithms
            .iter()
            .find(|a| a.family() == AlgorithmFamily::Hmac)
        {
            if !keys.has_hmac() {
                return Err(SettingsError::HmacWithoutSecret(hs));
            }
        }
        if settings.max_token_bytes == 0 {
            return Err(SettingsError::NoTokenSize);
        }
        let cache = VerifiedCache::new(settings.cache_entries);
        Ok(Verifier {
            settings,
            keys,
            cache,
        })
    }

    pub fn settings(&self) -> &AuthSettings {
        &self.settings
    }

    pub fn keys(&self) -> &Arc<KeyStore> {
        &self.keys
    }

    /// Verify a token at time `now` (Unix seconds). A token verified before,
    /// under the same keys and not yet expired, costs a SHA-256 and a map
    /// lookup; its signature is not checked again.
    pub fn verify(&self, token: &str, now: i64) -> Result<Arc<Verified>, AuthError> {
        self.verify_within(token, now, None)
    }

    /// [`Verifier::verify`] for a client with a bad-signature `budget`: a
    /// token not in the cache is refused, unchecked, while the client is
    /// over it, and a signature that fails counts against it.
    pub fn verify_within(
        &self,
        token: &str,
        now: i64,
        budget: Option<Budget<'_>>,
    ) -> Result<Arc<Verified>, AuthError> {
        self.check_size(token)?;
        if !self.cache.enabled() {
            return self.verify_counted(token, now, budget).map(Arc::new);
        }
        let digest = TokenDigest::of(token);
        // Read the generation before the keys (see `KeyStore::replace_remote`):
        // a result verified with a newer set is then only ever filed under
        // an older generation, which is discarded, never the reverse.
        let generation = self.keys.generation();
        if let Some(hit) = self.cache.get(&digest, now, generation) {
            return Ok(hit);
        }
        let verified = Arc::new(self.verify_counted(token, now, budget)?);
        let valid_until = verified
            .identity
            .expires_at
            .saturating_add(self.leeway_secs());
        self.cache
            .insert(digest, verified.clone(), valid_until, generation, now);
        Ok(verified)
    }

    fn verify_counted(
        &self,
        token: &str,
        now: i64,
        budget: Option<Budget<'_>>,
    ) -> Result<Verified, AuthError> {
        let Some(b) = budget else {
            return self.verify_uncached(token, now);
        };
        if let Some(retry_after) = b.failures.refused(b.client, now, b.limit) {
            return Err(AuthError::TooManyBadSignatures { retry_after });
        }
        let result = self.verify_uncached(token, now);
        if matches!(result, Err(AuthError::BadSignature)) {
            b.failures.record(b.client, now, b.limit);
        }
        result
    }

    /// Every check, without the cache (for `explain` and benchmarks).
    pub fn verify_uncached(&self, token: &str, now: i64) -> Result<Verified, AuthError> {
        self.check_size(token)?;
        let parts = header::split(token)?;
        let jose = header::parse(parts.header, &self.settings.algorithms)?;
        let verified_by = self.keys.with_current(|set| {
            let key = set
                .select(jose.kid.as_deref(), jose.alg)
                .map_err(|s| match s {
                    Selection::UnknownKid => AuthError::UnknownKid,
                    Selection::WrongFamily => AuthError::KeyAlgorithmMismatch(jose.alg),
                    Selection::NotExactlyOne => AuthError::NoKeyForAlgorithm(jose.alg),
                })?;
            if !key.verify_signature(jose.alg, parts.signature, parts.signing_input.as_bytes()) {
                return Err(AuthError::BadSignature);
            }
            Ok(key.kid().map(str::to_string))
        })?;
        let payload = header::decode_segment(parts.payload)?;
        let claims = match serde_json::from_slice::<Value>(&payload) {
            Ok(Value::Object(map)) => map,
            _ => return Err(AuthError::ClaimsNotObject),
        };
        let expires_at = self.check_registered(&claims, now)?;
        let identity = identity_from_claims(
            &claims,
            &self.settings.claims,
            &self.settings.mfa,
            expires_at,
        )
        .map_err(AuthError::from)?;
        Ok(Verified {
            identity,
            key_id: verified_by,
            algorithm: jose.alg,
        })
    }

    /// Forget every cached verification (revocation lists changed).
    pub fn flush_cache(&self) {
        self.cache.flush();
    }

    /// Entries in the verified-token cache (for /metrics).
    pub fn cache_len(&self) -> usize {
        self.cache.len()
    }

    fn check_size(&self, token: &str) -> Result<(), AuthError> {
        if token.len() > self.settings.max_token_bytes {
            return Err(AuthError::TooLarge {
                len: token.len(),
                max: self.settings.max_token_bytes,
            });
        }
        Ok(())
    }

    fn leeway_secs(&self) -> i64 {
        i64::try_from(self.settings.leeway.as_secs()).unwrap_or(i64::MAX)
    }

    /// `iss`, `aud`, `exp`, `nbf`, `iat` (RFC 7519 §4.1); returns `exp`.
    fn check_registered(&self, claims: &Map<String, Value>, now: i64) -> Result<i64, AuthError> {
        match claims.get("iss") {
            None => return Err(AuthError::MissingClaim("iss".into())),
            Some(Value::String(iss)) if *iss == self.settings.issuer => {}
            Some(_) => return Err(AuthError::WrongIssuer),
        }
        let audience_ok = match claims.get("aud") {
            None => return Err(AuthError::MissingClaim("aud".into())),
            Some(Value::String(aud)) => self.settings.audiences.contains(aud),
            Some(Value::Array(auds)) => {
                if auds.iter().any(|a| !a.is_string()) {
                    return Err(AuthError::BadClaim("aud".into()));
                }
                auds.iter()
                    .filter_map(Value::as_str)
                    .any(|a| self.settings.audiences.iter().any(|c| c == a))
            }
            Some(_) => return Err(AuthError::BadClaim("aud".into())),
        };
        if !audience_ok {
            return Err(AuthError::WrongAudience);
        }
        let leeway = self.leeway_secs();
        let exp = optional_numeric_date(claims, "exp")?
            .ok_or_else(|| AuthError::MissingClaim("exp".into()))?;
        if now > exp.saturating_add(leeway) {
            return Err(AuthError::Expired);
        }
        if let Some(nbf) = optional_numeric_date(claims, "nbf")? {
            if nbf > now.saturating_add(leeway) {
                return Err(AuthError::NotYetValid);
            }
        }
        if let Some(iat) = optional_numeric_date(claims, "iat")? {
            if iat > now.saturating_add(leeway) {
                return Err(AuthError::IssuedInFuture);
            }
        }
        Ok(exp)
    }
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("issuer", &self.settings.issuer)
            .field("algorithms", &self.settings.algorithms)
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl AuthError {
    /// The reason code the client and the audit record see.
    pub fn reason(&self) -> Reason {
        match self {
            AuthError::Missing => Reason::TokenMissing,
            AuthError::Expired => Reason::TokenExpired,
            AuthError::TooManyBadSignatures { .. } => Reason::RateLimited,
            _ => Reason::TokenInvalid,
        }
    }

    /// The token named a kid we do not have: the identity provider may
    /// have rotated keys, so the caller may ask the JWKS source to refetch
    /// (rate limited) and verify again.
    pub fn is_unknown_kid(&self) -> bool {
        matches!(self, AuthError::UnknownKid)
    }
}

impl From<ClaimError> for AuthError {
    fn from(e: ClaimError) -> Self {
        match e {
            ClaimError::Missing(name) => AuthError::MissingClaim(name),
            ClaimError::Invalid(name) => AuthError::BadClaim(name),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use jsonwebtoken::EncodingKey;
    use serde_json::json;

    use super::*;
    use crate::auth::keys::KeySet;
    use crate::auth::testkit::{self, TestKey, NOW};
    use crate::auth::{ClaimPath, ClaimPaths, MfaSettings};

    const HMAC_SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    struct Fixture {
        ec: TestKey,
        verifier: Verifier,
    }

    /// A verifier trusting one ES256 key (kid `ec-1`) from a JWKS.
    fn fixture() -> Fixture {
        let ec = testkit::es256("ec-1");
        let verifier = verifier_for(&[&ec], vec![Algorithm::ES256], None);
        Fixture { ec, verifier }
    }

    fn verifier_for(
        keys: &[&TestKey],
        algorithms: Vec<Algorithm>,
        hmac: Option<&[u8]>,
    ) -> Verifier {
        let mut local = KeySet::new();
        if let Some(secret) = hmac {
            local
                .add_hmac_secret(None, secret)
                .unwrap_or_else(|e| panic!("test secret should load: {e}"));
        }
        let store = KeyStore::new(local);
        if !keys.is_empty() {
            let remote = KeySet::from_jwks_json(testkit::jwks(keys).as_bytes())
                .unwrap_or_else(|e| panic!("test JWKS should load: {e}"));
            store.replace_remote(&remote);
        }
        let mut settings = testkit::settings(algorithms);
        settings.cache_entries = 0;
        Verifier::new(settings, Arc::new(store))
            .unwrap_or_else(|e| panic!("test settings should be valid: {e}"))
    }

    fn refused(v: &Verifier, token: &str) -> AuthError {
        match v.verify(token, NOW) {
            Ok(ok) => panic!(
                "token should have been refused, got {:?}",
                ok.identity.subject
            ),
            Err(e) => e,
        }
    }

    fn b64(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    // ---- adversarial ----

    #[test]
    fn alg_none_unsigned_is_refused() {
        let f = fixture();
        let token = format!(
            "{}.{}.",
            b64(r#"{"alg":"none","typ":"JWT"}"#),
            b64(&testkit::claims().to_string())
        );
        assert_eq!(refused(&f.verifier, &token), AuthError::Unsigned);
        assert_eq!(AuthError::Unsigned.reason(), Reason::TokenInvalid);
    }

    #[test]
    fn alg_none_with_a_signature_is_refused() {
        let f = fixture();
        let real = testkit::token(&f.ec, testkit::claims());
        let sig = real.rsplit('.').next().unwrap_or_default();
        for alg in ["none", "None", "NONE"] {
            let header = json!({"alg": alg, "kid": "ec-1"}).to_string();
            let token = format!(
                "{}.{}.{sig}",
                b64(&header),
                b64(&testkit::claims().to_string())
            );
            assert_eq!(
                refused(&f.verifier, &token),
                AuthError::Unsigned,
                "alg {alg} must be refused"
            );
        }
    }

    #[test]
    fn hs256_signed_with_the_public_key_is_refused() {
        let f = fixture();
        let confused_key = EncodingKey::from_secret(f.ec.public_pem.as_bytes());
        let token = testkit::sign(
            json!({"alg": "HS256", "kid": "ec-1", "typ": "JWT"}),
            testkit::claims(),
            &confused_key,
            Algorithm::HS256,
        );
        assert_eq!(
            refused(&f.verifier, &token),
            AuthError::AlgorithmNotAllowed(Algorithm::HS256),
            "HS256 is not in this verifier's allowlist"
        );
        // Even where HS256 is allowed (a secret is configured), the EC key
        // can never serve as the HMAC secret.
        let v = verifier_for(
            &[&f.ec],
            vec![Algorithm::ES256, Algorithm::HS256],
            Some(HMAC_SECRET),
        );
        assert_eq!(
            refused(&v, &token),
            AuthError::KeyAlgorithmMismatch(Algorithm::HS256),
            "an HS256 token naming an EC key must be refused before any HMAC"
        );
        let kidless = testkit::sign(
            json!({"alg": "HS256"}),
            testkit::claims(),
            &confused_key,
            Algorithm::HS256,
        );
        assert_eq!(
            refused(&v, &kidless),
            AuthError::BadSignature,
            "without a kid only the configured secret is tried, and it does not match"
        );
    }

    #[test]
    fn hs256_confusion_with_an_rsa_public_key_is_refused() {
        let rsa = testkit::rsa("rsa-1");
        let v = verifier_for(
            &[&rsa],
            vec![Algorithm::RS256, Algorithm::HS256],
            Some(HMAC_SECRET),
        );
        let token = testkit::sign(
            json!({"alg": "HS256", "kid": "rsa-1"}),
            testkit::claims(),
            &EncodingKey::from_secret(rsa.public_pem.as_bytes()),
            Algorithm::HS256,
        );
        assert_eq!(
            refused(&v, &token),
            AuthError::KeyAlgorithmMismatch(Algorithm::HS256)
        );
    }

    #[test]
    fn unknown_and_path_like_kids_are_unknown() {
        let f = fixture();
        for kid in ["ec-2", "../../etc/passwd", "/dev/null", "", "ec-1\u{0}"] {
            let token = testkit::sign(
                json!({"alg": "ES256", "kid": kid}),
                testkit::claims(),
                &f.ec.encoding,
                Algorithm::ES256,
            );
            let e = refused(&f.verifier, &token);
            assert_eq!(e, AuthError::UnknownKid, "kid {kid:?} should be unknown");
            assert!(e.is_unknown_kid());
            assert_eq!(e.reason(), Reason::TokenInvalid);
        }
    }

    #[test]
    fn embedded_key_headers_are_ignored() {
        let f = fixture();
        let attacker = testkit::es256("attacker");
        // Signed by the attacker, pointing at the attacker's key four ways;
        // the kid is ours, so our key is used and the signature fails.
        let header = json!({
            "alg": "ES256", "kid": "ec-1",
            "jku": "https://evil.example/jwks.json",
            "x5u": "https://evil.example/cert.pem",
            "x5c": ["MIIB"],
            "jwk": attacker.jwk,
        });
        let token = testkit::sign(
            header.clone(),
            testkit::claims(),
            &attacker.encoding,
            Algorithm::ES256,
        );
        assert_eq!(refused(&f.verifier, &token), AuthError::BadSignature);
        // Our own signature with the same decoy headers still verifies:
        // they change nothing either way.
        let ours = testkit::sign(header, testkit::claims(), &f.ec.encoding, Algorithm::ES256);
        assert!(
            f.verifier.verify(&ours, NOW).is_ok(),
            "ignored headers should not block a good token"
        );
    }

    #[test]
    fn tampered_payload_and_signature_are_refused() {
        let f = fixture();
        let token = testkit::token(&f.ec, testkit::claims());
        let parts: Vec<&str> = token.split('.').collect();
        let mut claims = testkit::claims();
        claims["roles"] = json!(["admin"]);
        let forged = format!("{}.{}.{}", parts[0], b64(&claims.to_string()), parts[2]);
        assert_eq!(
            refused(&f.verifier, &forged),
            AuthError::BadSignature,
            "a changed payload must fail"
        );
        let mut sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap_or_default();
        sig[10] ^= 1;
        let flipped = format!("{}.{}.{}", parts[0], parts[1], URL_SAFE_NO_PAD.encode(sig));
        assert_eq!(
            refused(&f.verifier, &flipped),
            AuthError::BadSignature,
            "a changed signature must fail"
        );
        let truncated = format!("{}.{}.{}", parts[0], parts[1], &parts[2][..20]);
        assert_eq!(refused(&f.verifier, &truncated), AuthError::BadSignature);
    }

    #[test]
    fn issuer_and_audience_must_match() {
        let f = fixture();
        let mut c = testkit::claims();
        c["iss"] = json!("https://evil.example");
        assert_eq!(
            refused(&f.verifier, &testkit::token(&f.ec, c)),
            AuthError::WrongIssuer
        );
        let mut c = testkit::claims();
        c["aud"] = json!("other-api");
        assert_eq!(
            refused(&f.verifier, &testkit::token(&f.ec, c)),
            AuthError::WrongAudience
        );
        let mut c = testkit::claims();
        c["aud"] = json!(["other-api", testkit::AUDIENCE]);
        assert!(
            f.verifier.verify(&testkit::token(&f.ec, c), NOW).is_ok(),
            "an aud list containing ours should pass"
        );
        let mut c = testkit::claims();
        c.as_object_mut().map(|m| m.remove("aud"));
        assert_eq!(
            refused(&f.verifier, &testkit::token(&f.ec, c)),
            AuthError::MissingClaim("aud".into())
        );
    }

    #[test]
    fn expiry_and_leeway() {
        let f = fixture();
        let leeway = 30;
        let mut c = testkit::claims();
        c["exp"] = json!(NOW - leeway);
        assert!(
            f.verifier.verify(&testkit::token(&f.ec, c), NOW).is_ok(),
            "exp + leeway == now is still valid"
        );
        let mut c = testkit::claims();
        c["exp"] = json!(NOW - leeway - 1);
        let e = refused(&f.verifier, &testkit::token(&f.ec, c));
        assert_eq!(e, AuthError::Expired);
        assert_eq!(e.reason(), Reason::TokenExpired);
    }

    #[test]
    fn not_yet_valid_and_future_iat_are_refused() {
        let f = fixture();
        let mut c = testkit::claims();
        c["nbf"] = json!(NOW + 31);
        assert_eq!(
            refused(&f.verifier, &testkit::token(&f.ec, c)),
            AuthError::NotYetValid
        );
        let mut c = testkit::claims();
        c["nbf"] = json!(NOW + 30);
        assert!(
            f.verifier.verify(&testkit::token(&f.ec, c), NOW).is_ok(),
            "nbf within leeway is fine"
        );
        let mut c = testkit::claims();
        c["iat"] = json!(NOW + 3600);
        assert_eq!(
            refused(&f.verifier, &testkit::token(&f.ec, c)),
            AuthError::IssuedInFuture
        );
    }

    #[test]
    fn missing_exp_or_sub_is_refused() {
        let f = fixture();
        let mut c = testkit::claims();
        c.as_object_mut().map(|m| m.remove("exp"));
        assert_eq!(
            refused(&f.verifier, &testkit::token(&f.ec, c)),
            AuthError::MissingClaim("exp".into())
        );
        let mut c = testkit::claims();
        c.as_object_mut().map(|m| m.remove("sub"));
        assert_eq!(
            refused(&f.verifier, &testkit::token(&f.ec, c)),
            AuthError::MissingClaim("sub".into())
        );
        let mut c = testkit::claims();
        c["exp"] = json!("tomorrow");
        assert_eq!(
            refused(&f.verifier, &testkit::token(&f.ec, c)),
            AuthError::BadClaim("exp".into())
        );
    }

    #[test]
    fn crit_and_wrong_typ_are_refused() {
        let f = fixture();
        let crit = testkit::sign(
            json!({"alg": "ES256", "kid": "ec-1", "crit": ["exp"], "exp": 1}),
            testkit::claims(),
            &f.ec.encoding,
            Algorithm::ES256,
        );
        assert_eq!(refused(&f.verifier, &crit), AuthError::CriticalHeader);
        let typ = testkit::sign(
            json!({"alg": "ES256", "kid": "ec-1", "typ": "dpop+jwt"}),
            testkit::claims(),
            &f.ec.encoding,
            Algorithm::ES256,
        );
        assert_eq!(refused(&f.verifier, &typ), AuthError::WrongType);
        let at = testkit::sign(
            json!({"alg": "ES256", "kid": "ec-1", "typ": "at+JWT"}),
            testkit::claims(),
            &f.ec.encoding,
            Algorithm::ES256,
        );
        assert!(
            f.verifier.verify(&at, NOW).is_ok(),
            "at+jwt is an access token type"
        );
    }

    #[test]
    fn oversized_tokens_are_refused_before_parsing() {
        let f = fixture();
        let huge = "a".repeat(10 * 1024);
        assert_eq!(
            refused(&f.verifier, &huge),
            AuthError::TooLarge {
                len: 10 * 1024,
                max: 8 * 1024
            }
        );
        let mut c = testkit::claims();
        c["padding"] = json!("x".repeat(10 * 1024));
        let big_but_valid = testkit::token(&f.ec, c);
        assert!(matches!(
            refused(&f.verifier, &big_but_valid),
            AuthError::TooLarge { .. }
        ));
    }

    #[test]
    fn garbage_is_malformed() {
        let f = fixture();
        for junk in [
            "",
            "..",
            "...",
            "a.b.c",
            "not a token",
            "a.b.c.d",
            "ey!.ey!.sig",
            "\u{1F600}.a.b",
        ] {
            let e = refused(&f.verifier, junk);
            assert!(
                matches!(e, AuthError::Malformed(_)),
                "{junk:?} should be malformed, got {e:?}"
            );
            assert_eq!(e.reason(), Reason::TokenInvalid);
        }
    }

    #[test]
    fn claims_that_are_not_an_object_are_refused() {
        let f = fixture();
        for payload in [json!([1, 2]), json!("sub"), json!(null), json!(42)] {
            let token = testkit::sign(
                json!({"alg": "ES256", "kid": "ec-1"}),
                payload.clone(),
                &f.ec.encoding,
                Algorithm::ES256,
            );
            assert_eq!(
                refused(&f.verifier, &token),
                AuthError::ClaimsNotObject,
                "payload {payload}"
            );
        }
    }

    #[test]
    fn kidless_token_uses_the_only_key() {
        let f = fixture();
        let token = testkit::sign(
            json!({"alg": "ES256"}),
            testkit::claims(),
            &f.ec.encoding,
            Algorithm::ES256,
        );
        assert!(
            f.verifier.verify(&token, NOW).is_ok(),
            "one ES256 key: a kid-less token may use it"
        );
        let other = testkit::es256("ec-2");
        let v = verifier_for(&[&f.ec, &other], vec![Algorithm::ES256], None);
        assert_eq!(
            refused(&v, &token),
            AuthError::NoKeyForAlgorithm(Algorithm::ES256)
        );
    }

    // ---- happy paths ----

    fn assert_verifies(key: &TestKey) {
        let v = verifier_for(&[key], vec![key.alg], None);
        let verified = v
            .verify(&testkit::token(key, testkit::claims()), NOW)
            .unwrap_or_else(|e| panic!("{:?} token should verify: {e}", key.alg));
        assert_eq!(verified.identity.subject, "agent-7");
        assert_eq!(verified.algorithm, key.alg);
        assert_eq!(verified.key_id.as_deref(), Some(key.kid.as_str()));
    }

    #[test]
    fn es256_verifies() {
        assert_verifies(&testkit::es256("k"));
    }

    #[test]
    fn es384_verifies() {
        assert_verifies(&testkit::es384("k"));
    }

    #[test]
    fn eddsa_verifies() {
        assert_verifies(&testkit::ed25519("k"));
    }

    #[test]
    fn rs256_and_ps256_verify() {
        assert_verifies(&testkit::rsa("k"));
        let mut ps = testkit::rsa("p");
        ps.alg = Algorithm::PS256;
        assert_verifies(&ps);
    }

    #[test]
    fn hs256_verifies_with_the_configured_secret() {
        let v = verifier_for(&[], vec![Algorithm::HS256], Some(HMAC_SECRET));
        let token = testkit::sign(
            json!({"alg": "HS256", "typ": "JWT"}),
            testkit::claims(),
            &EncodingKey::from_secret(HMAC_SECRET),
            Algorithm::HS256,
        );
        let verified = v
            .verify(&token, NOW)
            .unwrap_or_else(|e| panic!("HS256 should verify: {e}"));
        assert_eq!(verified.key_id, None);
        let wrong = testkit::sign(
            json!({"alg": "HS256"}),
            testkit::claims(),
            &EncodingKey::from_secret(b"another secret another secret!!!"),
            Algorithm::HS256,
        );
        assert_eq!(refused(&v, &wrong), AuthError::BadSignature);
    }

    #[test]
    fn identity_is_extracted() {
        let ec = testkit::es256("k");
        let mut settings = testkit::settings(vec![Algorithm::ES256]);
        settings.claims = ClaimPaths {
            subject: ClaimPath::top_level("sub"),
            roles: ClaimPath::new("realm_access.roles").unwrap_or_else(|e| panic!("{e}")),
            attributes: vec![("user_id".into(), ClaimPath::top_level("uid"))],
        };
        settings.mfa = MfaSettings {
            amr_any: vec!["otp".into()],
            acr_any: vec![],
            max_age: None,
        };
        let store = KeyStore::new(KeySet::new());
        store.replace_remote(
            &KeySet::from_jwks_json(testkit::jwks(&[&ec]).as_bytes()).unwrap_or_default(),
        );
        let v = Verifier::new(settings, Arc::new(store)).unwrap_or_else(|e| panic!("{e}"));
        let mut c = testkit::claims();
        c["realm_access"] = json!({"roles": ["supervisor"]});
        c["uid"] = json!(17);
        c["amr"] = json!(["pwd", "otp"]);
        c["auth_time"] = json!(NOW - 60);
        c["jti"] = json!("t-1");
        let id = v
            .verify(&testkit::token(&ec, c), NOW)
            .unwrap_or_else(|e| panic!("{e}"))
            .identity
            .clone();
        assert_eq!(
            id.roles,
            vec![crate::identity::RoleName("supervisor".into())]
        );
        assert_eq!(id.attribute("user_id"), ["17"]);
        assert!(id.mfa, "amr otp should set the MFA flag");
        assert_eq!(id.auth_time, Some(NOW - 60));
        assert_eq!(id.token_id.as_deref(), Some("t-1"));
        assert_eq!(id.expires_at, NOW + 600);
    }

    #[test]
    fn settings_are_checked_once() {
        let store = Arc::new(KeyStore::new(KeySet::new()));
        let mut s = testkit::settings(vec![Algorithm::HS256]);
        assert_eq!(
            Verifier::new(s.clone(), store.clone()).map(|_| ()),
            Err(SettingsError::HmacWithoutSecret(Algorithm::HS256)),
            "HS256 without a secret must fail at load"
        );
        s.algorithms.clear();
        assert_eq!(
            Verifier::new(s, store).map(|_| ()),
            Err(SettingsError::NoAlgorithm)
        );
    }

    /// A key store holding `key` as if from a JWKS.
    fn store_of(key: &TestKey) -> Arc<KeyStore> {
        let store = KeyStore::new(KeySet::new());
        store.replace_remote(
            &KeySet::from_jwks_json(testkit::jwks(&[key]).as_bytes()).unwrap_or_default(),
        );
        Arc::new(store)
    }

    #[test]
    fn cache_serves_repeats_and_respects_expiry() {
        let ec = testkit::es256("k");
        let store = store_of(&ec);
        let mut settings = testkit::settings(vec![Algorithm::ES256]);
        settings.leeway = Duration::from_secs(0);
        let v = Verifier::new(settings, store.clone()).unwrap_or_else(|e| panic!("{e}"));
        let token = testkit::token(&ec, testkit::claims());
        let first = v.verify(&token, NOW).unwrap_or_else(|e| panic!("{e}"));
        let second = v.verify(&token, NOW + 1).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            Arc::ptr_eq(&first, &second),
            "a repeat should be served from the cache"
        );
        assert_eq!(v.cache_len(), 1);
        assert_eq!(
            v.verify(&token, NOW + 601).map(|_| ()),
            Err(AuthError::Expired),
            "a cached token must not outlive its exp"
        );
        let third = v.verify(&token, NOW + 2).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            !Arc::ptr_eq(&first, &third),
            "the expired entry should have been dropped and re-verified"
        );
        store.replace_remote(
            &KeySet::from_jwks_json(testkit::jwks(&[&testkit::es256("other")]).as_bytes())
                .unwrap_or_default(),
        );
        assert_eq!(
            v.verify(&token, NOW + 3).map(|_| ()),
            Err(AuthError::UnknownKid),
            "after a key rotation that removed the key, the cached verification must not be used"
        );
    }

    #[test]
    fn a_client_over_its_bad_signatures_keeps_cached_tokens_and_gets_no_new_checks() {
        let ec = testkit::es256("ec-1");
        let v = Verifier::new(testkit::settings(vec![Algorithm::ES256]), store_of(&ec))
            .unwrap_or_else(|e| panic!("{e}"));
        let failures = SignatureFailures::default();
        let limit = BadSignatureLimit {
            max: 2,
            per: Duration::from_secs(60),
        };
        let client = IpAddr::from([203, 0, 113, 9]);
        let budget = Some(Budget {
            failures: &failures,
            client,
            limit: &limit,
        });
        let known = testkit::token(&ec, testkit::claims());
        assert!(v.verify_within(&known, NOW, budget).is_ok());

        let mut c = testkit::claims();
        c["roles"] = json!(["admin"]);
        let parts: Vec<&str> = known.split('.').collect();
        let forged = format!("{}.{}.{}", parts[0], b64(&c.to_string()), parts[2]);
        let expired = {
            let mut c = testkit::claims();
            c["exp"] = json!(NOW - 3600);
            testkit::token(&ec, c)
        };
        // An expired token is not a bad signature: it does not count.
        assert_eq!(
            v.verify_within(&expired, NOW, budget).map(|_| ()),
            Err(AuthError::Expired)
        );
        for _ in 0..2 {
            assert_eq!(
                v.verify_within(&forged, NOW, budget).map(|_| ()),
                Err(AuthError::BadSignature)
            );
        }
        assert_eq!(
            v.verify_within(&forged, NOW + 1, budget).map(|_| ()),
            Err(AuthError::TooManyBadSignatures { retry_after: 59 }),
            "no third check"
        );
        assert!(
            v.verify_within(&known, NOW + 1, budget).is_ok(),
            "a token verified before is still served from the cache"
        );
        let mut c = testkit::claims();
        c["sub"] = json!("someone-else");
        let fresh = testkit::token(&ec, c);
        assert_eq!(
            v.verify_within(&fresh, NOW + 1, budget).map(|_| ()),
            Err(AuthError::TooManyBadSignatures { retry_after: 59 }),
            "a new token from that client is not checked"
        );
        assert!(
            v.verify(&fresh, NOW + 1).is_ok(),
            "without a budget (another client, or explain) it verifies"
        );
        let mut c = testkit::claims();
        c["sub"] = json!("a-third-one");
        let later = testkit::token(&ec, c);
        assert!(
            v.verify_within(&later, NOW + 60, budget).is_ok(),
            "the window ended: new tokens are checked again"
        );
    }
}
