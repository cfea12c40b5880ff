//! Public keys parsed once, when a key set is built, instead of on every
//! signature check.
//!
//! jsonwebtoken hands aws-lc the key's bytes with each verification, and
//! aws-lc parses them into a key object each time (for EC keys it also
//! checks that the point is on the curve; for RSA it sets up the modulus).
//! Under a stream of new tokens that is paid on every request. Here each
//! asymmetric key is parsed once per algorithm it may verify, and the
//! verification only decodes the signature and checks it.
//!
//! A key aws-lc would not parse up front is simply not prepared: the
//! verifier then falls back to jsonwebtoken, which refuses it exactly as
//! before. HMAC secrets are not prepared (there is nothing to parse).

use std::sync::Arc;

use aws_lc_rs::signature::{self, ParsedPublicKey, VerificationAlgorithm};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::Algorithm;

/// The largest signature any accepted algorithm produces: RSA with an
/// 8192-bit modulus (aws-lc's upper limit for verification).
const MAX_SIGNATURE_BYTES: usize = 1024;

/// A key parsed for each algorithm it may verify.
#[derive(Clone, Default)]
pub struct PreparedKey {
    by_alg: Vec<(Algorithm, Arc<ParsedPublicKey>)>,
}

/// What key material a prepared key is built from.
pub enum Material<'a> {
    /// An uncompressed SEC1 point (`04 || x || y`) on P-256.
    EcP256(&'a [u8]),
    /// The same on P-384.
    EcP384(&'a [u8]),
    /// A raw 32-byte Ed25519 public key.
    Ed25519(&'a [u8]),
    /// A PKCS#1 `RSAPublicKey` in DER.
    RsaDer(&'a [u8]),
    /// RSA modulus and public exponent, big-endian (from a JWK).
    RsaComponents { n: &'a [u8], e: &'a [u8] },
}

impl PreparedKey {
    /// Parse `material` for every algorithm in `algs` it can serve.
    pub fn new(material: Material<'_>, algs: &[Algorithm]) -> PreparedKey {
        let rsa_der;
        let (bytes, family): (&[u8], &[(Algorithm, &'static dyn VerificationAlgorithm)]) =
            match material {
                Material::EcP256(b) => (
                    b,
                    &[(Algorithm::ES256, &signature::ECDSA_P256_SHA256_FIXED)],
                ),
                Material::EcP384(b) => (
                    b,
                    &[(Algorithm::ES384, &signature::ECDSA_P384_SHA384_FIXED)],
                ),
                Material::Ed25519(b) => (b, &[(Algorithm::EdDSA, &signature::ED25519)]),
                Material::RsaDer(b) => (b, RSA),
                Material::RsaComponents { n, e } => {
                    rsa_der = rsa_public_key_der(n, e);
                    (&rsa_der, RSA)
                }
            };
        let by_alg = family
            .iter()
            .filter(|(alg, _)| algs.contains(alg))
            .filter_map(|(alg, verification)| {
                ParsedPublicKey::new(*verification, bytes)
                    .ok()
                    .map(|k| (*alg, Arc::new(k)))
            })
            .collect();
        PreparedKey { by_alg }
    }

    /// `Some(valid)` when this key was prepared for `alg`; `None` sends the
    /// caller to the general path.
    pub fn verify(&self, alg: Algorithm, signature_b64: &str, message: &[u8]) -> Option<bool> {
        let (_, key) = self.by_alg.iter().find(|(a, _)| *a == alg)?;
        let mut signature = [0u8; MAX_SIGNATURE_BYTES];
        let Ok(len) = URL_SAFE_NO_PAD.decode_slice(signature_b64, &mut signature) else {
            return Some(false);
        };
        let signature = signature.get(..len)?;
        Some(key.verify_sig(message, signature).is_ok())
    }

    /// Whether any algorithm was prepared (for tests).
    pub fn is_empty(&self) -> bool {
        self.by_alg.is_empty()
    }
}

/// The algorithms an RSA key verifies, with the parameters jsonwebtoken
/// uses for them (moduli of 2048 to 8192 bits).
const RSA: &[(Algorithm, &'static dyn VerificationAlgorithm)] = &[
    (Algorithm::RS256, &signature::RSA_PKCS1_2048_8192_SHA256),
    (Algorithm::RS384, &signature::RSA_PKCS1_2048_8192_SHA384),
    (Algorithm::RS512, &signature::RSA_PKCS1_2048_8192_SHA512),
    (Algorithm::PS256, &signature::RSA_PSS_2048_8192_SHA256),
    (Algorithm::PS384, &signature::RSA_PSS_2048_8192_SHA384),
    (Algorithm::PS512, &signature::RSA_PSS_2048_8192_SHA512),
];

/// `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }`
/// (RFC 8017 A.1.1) in DER.
fn rsa_public_key_der(n: &[u8], e: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(n.len() + e.len() + 16);
    der_unsigned_integer(&mut body, n);
    der_unsigned_integer(&mut body, e);
    let mut out = Vec::with_capacity(body.len() + 4);
    out.push(0x30);
    der_length(&mut out, body.len());
    out.extend_from_slice(&body);
    out
}

/// A non-negative INTEGER: leading zeros dropped, one added back when the
/// top bit is set (so the value does not read as negative).
fn der_unsigned_integer(out: &mut Vec<u8>, magnitude: &[u8]) {
    let first = magnitude.iter().position(|&b| b != 0);
    let digits = first.map_or(&[0u8][..], |i| &magnitude[i..]);
    let pad = digits.first().is_some_and(|&b| b & 0x80 != 0);
    out.push(0x02);
    der_length(out, digits.len() + usize::from(pad));
    if pad {
        out.push(0);
    }
    out.extend_from_slice(digits);
}

fn der_length(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        // Fits the short form: the cast cannot truncate.
        out.push(len as u8);
        return;
    }
    let bytes = len.to_be_bytes();
    let skip = bytes.iter().take_while(|&&b| b == 0).count();
    let significant = &bytes[skip..];
    // At most 8 length bytes (a usize), so 0x80 | count fits a byte.
    out.push(0x80 | significant.len() as u8);
    out.extend_from_slice(significant);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_integers_are_minimal_and_non_negative() {
        let mut out = Vec::new();
        der_unsigned_integer(&mut out, &[0, 0, 0x01, 0x00, 0x01]);
        assert_eq!(out, [0x02, 0x03, 0x01, 0x00, 0x01], "leading zeros dropped");
        out.clear();
        der_unsigned_integer(&mut out, &[0xff]);
        assert_eq!(
            out,
            [0x02, 0x02, 0x00, 0xff],
            "a set top bit gets a zero byte"
        );
        out.clear();
        der_unsigned_integer(&mut out, &[0, 0]);
        assert_eq!(out, [0x02, 0x01, 0x00], "zero is one zero byte");
    }

    #[test]
    fn der_lengths_use_the_long_form_past_127() {
        let mut out = Vec::new();
        der_length(&mut out, 127);
        assert_eq!(out, [0x7f]);
        out.clear();
        der_length(&mut out, 257);
        assert_eq!(out, [0x82, 0x01, 0x01]);
    }

    #[test]
    fn garbage_material_prepares_nothing() {
        let k = PreparedKey::new(Material::EcP256(&[4, 1, 2, 3]), &[Algorithm::ES256]);
        assert!(
            k.is_empty(),
            "a point that is not on the curve is not prepared"
        );
        let k = PreparedKey::new(
            Material::RsaDer(&[0x30, 0x03, 1, 2, 3]),
            &[Algorithm::RS256],
        );
        assert!(
            k.is_empty(),
            "bytes that are no RSAPublicKey are not prepared"
        );
    }

    #[test]
    fn a_prepared_p256_key_checks_signatures() {
        use aws_lc_rs::rand::SystemRandom;
        use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

        let rng = SystemRandom::new();
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .unwrap_or_else(|e| panic!("{e}"));
        let sig = pair
            .sign(&rng, b"header.payload")
            .unwrap_or_else(|e| panic!("{e}"));
        let sig = URL_SAFE_NO_PAD.encode(sig.as_ref());
        let k = PreparedKey::new(
            Material::EcP256(pair.public_key().as_ref()),
            &[Algorithm::ES256],
        );
        assert_eq!(
            k.verify(Algorithm::ES256, &sig, b"header.payload"),
            Some(true)
        );
        assert_eq!(
            k.verify(Algorithm::ES256, &sig, b"header.payloaD"),
            Some(false),
            "another message must not verify"
        );
        assert_eq!(
            k.verify(Algorithm::ES256, "not*base64", b"header.payload"),
            Some(false),
            "a signature that is not base64url is refused, not passed on"
        );
        let long = "A".repeat(4 * MAX_SIGNATURE_BYTES);
        assert_eq!(
            k.verify(Algorithm::ES256, &long, b"header.payload"),
            Some(false),
            "an oversized signature is refused without a panic"
        );
        assert_eq!(k.verify(Algorithm::ES384, &sig, b"header.payload"), None);
    }

    #[test]
    fn only_the_allowed_algorithms_are_prepared() {
        let k = PreparedKey::new(Material::EcP256(&[4, 1, 2, 3]), &[Algorithm::RS256]);
        assert_eq!(
            k.verify(Algorithm::ES256, "AAAA", b"x"),
            None,
            "ES256 not allowed: not prepared"
        );
    }
}
