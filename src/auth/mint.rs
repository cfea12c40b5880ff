//! Signing tokens, for `chatwarden token` and the demo. Never on the
//! request path. Keys are ES256/ES384 (PKCS#8 PEM) or Ed25519.
//!
//! [`generate_dev_key`] makes a fresh Ed25519 key in-process (a random
//! seed in a fixed PKCS#8 frame), so the demo needs neither openssl nor a
//! key file, and publishes its public half as a JWKS document.

use std::fmt;

use jsonwebtoken::jwk::{AlgorithmParameters, CommonParameters, Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rand::RngCore;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// A private signing key and the kid its tokens carry.
pub struct MintKey {
    kid: String,
    algorithm: Algorithm,
    key: EncodingKey,
    public: Jwk,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MintError {
    #[error("signing key is not a PKCS#8 EC (P-256/P-384) or Ed25519 private key")]
    UnsupportedKey,
    #[error("key id is empty")]
    EmptyKid,
    #[error("claims must be a JSON object")]
    ClaimsNotObject,
    #[error("signing failed: {0}")]
    Sign(String),
}

/// Sign `claims` (a JSON object) with `key`. The header carries `alg`,
/// `kid` and `typ: JWT`; the claims are signed as given, so the caller
/// sets `iss`, `aud`, `exp` and the rest.
pub fn mint(claims: &Value, key: &MintKey) -> Result<String, MintError> {
    if !claims.is_object() {
        return Err(MintError::ClaimsNotObject);
    }
    let mut header = Header::new(key.algorithm);
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&header, claims, &key.key).map_err(|e| MintError::Sign(e.to_string()))
}

/// A fresh Ed25519 signing key (kid `dev-<hash>`) and a JWKS document with
/// its public half, ready to serve and to load with
/// [`KeySet::from_jwks_json`](super::KeySet::from_jwks_json).
pub fn generate_dev_key() -> Result<(MintKey, String), MintError> {
    let mut seed = [0u8; 32];
    rand::rng().fill_bytes(&mut seed);
    let mut der = Vec::with_capacity(ED25519_PKCS8_V1_PREFIX.len() + seed.len());
    der.extend_from_slice(&ED25519_PKCS8_V1_PREFIX);
    der.extend_from_slice(&seed);
    let encoding = EncodingKey::from_ed_der(&der);
    let public = Jwk::from_encoding_key(&encoding, Algorithm::EdDSA)
        .map_err(|_| MintError::UnsupportedKey)?;
    let kid = match &public.algorithm {
        AlgorithmParameters::OctetKeyPair(p) => {
            let digest = Sha256::digest(p.x.as_bytes());
            format!("dev-{}", hex::encode(&digest[..6]))
        }
        _ => return Err(MintError::UnsupportedKey),
    };
    let key = MintKey::new(kid, Algorithm::EdDSA, encoding, public)?;
    let jwks = key.jwks_json();
    Ok((key, jwks))
}

impl MintKey {
    /// Load a PKCS#8 private key PEM: EC P-256 (ES256), EC P-384 (ES384)
    /// or Ed25519 (EdDSA).
    pub fn from_pem(pem: &[u8], kid: impl Into<String>) -> Result<MintKey, MintError> {
        let kid = kid.into();
        if let Ok(key) = EncodingKey::from_ec_pem(pem) {
            // The public half can only be derived under the right curve,
            // which is how the curve is found.
            for alg in [Algorithm::ES256, Algorithm::ES384] {
                if let Ok(public) = Jwk::from_encoding_key(&key, alg) {
                    return MintKey::new(kid, alg, key, public);
                }
            }
            return Err(MintError::UnsupportedKey);
        }
        if let Ok(key) = EncodingKey::from_ed_pem(pem) {
            // jsonwebtoken derives the public key from PKCS#8 v1 only;
            // v2 documents (with the public key appended) share the v1
            // prefix and seed, so rebuild v1 from the seed.
            let der = key.as_bytes();
            // Everything but the outer length and the version byte must match.
            if der.len() < 48
                || der[2..4] != [0x02, 0x01]
                || der[5..16] != ED25519_PKCS8_V1_PREFIX[5..]
            {
                return Err(MintError::UnsupportedKey);
            }
            let mut v1 = ED25519_PKCS8_V1_PREFIX.to_vec();
            v1.extend_from_slice(&der[16..48]);
            let key = EncodingKey::from_ed_der(&v1);
            let public = Jwk::from_encoding_key(&key, Algorithm::EdDSA)
                .map_err(|_| MintError::UnsupportedKey)?;
            return MintKey::new(kid, Algorithm::EdDSA, key, public);
        }
        Err(MintError::UnsupportedKey)
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The public half as a one-key JWKS document (`use: sig`, `alg`, `kid`).
    pub fn jwks_json(&self) -> String {
        let set = JwkSet {
            keys: vec![self.public.clone()],
        };
        // Serializing plain strings and enums into JSON cannot fail.
        serde_json::to_string(&set).unwrap_or_default()
    }

    fn new(
        kid: String,
        algorithm: Algorithm,
        key: EncodingKey,
        mut public: Jwk,
    ) -> Result<MintKey, MintError> {
        if kid.is_empty() {
            return Err(MintError::EmptyKid);
        }
        public.common = CommonParameters {
            public_key_use: Some(PublicKeyUse::Signature),
            key_algorithm: Some(algorithm.into()),
            key_id: Some(kid.clone()),
            ..CommonParameters::default()
        };
        Ok(MintKey {
            kid,
            algorithm,
            key,
            public,
        })
    }
}

impl fmt::Debug for MintKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MintKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// RFC 8410 §7 PKCS#8 v1 frame for an Ed25519 private key; the 32-byte seed
/// follows.
const ED25519_PKCS8_V1_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::auth::keys::{KeySet, KeyStore};
    use crate::auth::testkit::{self, NOW};
    use crate::auth::Verifier;

    fn verifier(jwks: &str, alg: Algorithm) -> Verifier {
        let store = KeyStore::new(KeySet::new());
        store.replace_remote(
            &KeySet::from_jwks_json(jwks.as_bytes())
                .unwrap_or_else(|e| panic!("published JWKS should load: {e}")),
        );
        Verifier::new(testkit::settings(vec![alg]), Arc::new(store))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn dev_key_tokens_verify_against_its_jwks() {
        let (key, jwks) =
            generate_dev_key().unwrap_or_else(|e| panic!("dev key generation should work: {e}"));
        assert!(key.kid().starts_with("dev-"));
        assert_eq!(key.algorithm(), Algorithm::EdDSA);
        let token = mint(&testkit::claims(), &key).unwrap_or_else(|e| panic!("{e}"));
        let v = verifier(&jwks, Algorithm::EdDSA);
        let verified = v
            .verify(&token, NOW)
            .unwrap_or_else(|e| panic!("a minted token should verify: {e}"));
        assert_eq!(verified.key_id.as_deref(), Some(key.kid()));
        let (other, _) = generate_dev_key().unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(other.kid(), key.kid(), "each dev key should be fresh");
    }

    #[test]
    fn pem_keys_mint_verifiable_tokens() {
        for (k, alg) in [
            (testkit::es256("x"), Algorithm::ES256),
            (testkit::es384("x"), Algorithm::ES384),
            (testkit::ed25519("x"), Algorithm::EdDSA),
        ] {
            let key = MintKey::from_pem(k.private_pem.as_bytes(), "ops-1")
                .unwrap_or_else(|e| panic!("{alg:?} PEM should load: {e}"));
            assert_eq!(key.algorithm(), alg);
            let token = mint(&testkit::claims(), &key).unwrap_or_else(|e| panic!("{e}"));
            assert!(
                verifier(&key.jwks_json(), alg).verify(&token, NOW).is_ok(),
                "{alg:?} token should verify"
            );
        }
    }

    #[test]
    fn bad_inputs_are_refused() {
        assert_eq!(
            MintKey::from_pem(b"nope", "k").map(|_| ()),
            Err(MintError::UnsupportedKey)
        );
        assert_eq!(
            MintKey::from_pem(testkit::es256("x").public_pem.as_bytes(), "k").map(|_| ()),
            Err(MintError::UnsupportedKey),
            "a public key cannot sign"
        );
        let (key, _) = generate_dev_key().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(mint(&json!([1]), &key), Err(MintError::ClaimsNotObject));
        assert_eq!(
            MintKey::from_pem(testkit::es256("x").private_pem.as_bytes(), "").map(|_| ()),
            Err(MintError::EmptyKid)
        );
    }

    #[test]
    fn debug_output_has_no_key_material() {
        let (key, _) = generate_dev_key().unwrap_or_else(|e| panic!("{e}"));
        let shown = format!("{key:?}");
        assert!(
            shown.contains(key.kid()) && !shown.contains("key:"),
            "Debug should show kid and alg only: {shown}"
        );
    }
}
