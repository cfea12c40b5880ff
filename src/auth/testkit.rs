//! Test keys and tokens, generated at test time (never committed).
//!
//! EC and Ed25519 keys come from rcgen. RSA keys come from the `openssl`
//! command line, because neither rcgen (built with ring here) nor
//! jsonwebtoken can generate RSA keys; one RSA key is made per test binary.

use std::process::Command;
use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use serde_json::{json, Value};

use super::AuthSettings;

/// The injected "now" of every test.
pub const NOW: i64 = 1_750_000_000;
pub const ISSUER: &str = "https://idp.acme.example/realms/staff";
pub const AUDIENCE: &str = "chatwarden";

pub struct TestKey {
    pub kid: String,
    pub alg: Algorithm,
    pub encoding: EncodingKey,
    pub private_pem: String,
    pub public_pem: String,
    /// The public JWK with `kid` (no `alg`, so a test may use a key for
    /// any algorithm of its family).
    pub jwk: Value,
}

pub fn es256(kid: &str) -> TestKey {
    rcgen_key(kid, &rcgen::PKCS_ECDSA_P256_SHA256, Algorithm::ES256)
}

pub fn es384(kid: &str) -> TestKey {
    rcgen_key(kid, &rcgen::PKCS_ECDSA_P384_SHA384, Algorithm::ES384)
}

pub fn ed25519(kid: &str) -> TestKey {
    rcgen_key(kid, &rcgen::PKCS_ED25519, Algorithm::EdDSA)
}

/// An RS256 key (also fit for PS*), shared by every caller in the binary.
pub fn rsa(kid: &str) -> TestKey {
    static PEMS: OnceLock<(String, String)> = OnceLock::new();
    let (private_pem, public_pem) = PEMS.get_or_init(|| {
        let private = openssl(
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
            ],
            None,
        );
        let public = openssl(&["pkey", "-pubout"], Some(&private));
        (private, public)
    });
    let encoding = EncodingKey::from_rsa_pem(private_pem.as_bytes())
        .unwrap_or_else(|e| panic!("RSA private key: {e}"));
    let decoding = DecodingKey::from_rsa_pem(public_pem.as_bytes())
        .unwrap_or_else(|e| panic!("RSA public key: {e}"));
    finish(
        kid,
        Algorithm::RS256,
        encoding,
        &decoding,
        private_pem.clone(),
        public_pem.clone(),
    )
}

pub fn jwks(keys: &[&TestKey]) -> String {
    json!({ "keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() }).to_string()
}

/// Sign any header and payload, bypassing every rule jsonwebtoken's
/// `encode` would apply (so tests can forge).
pub fn sign(header: Value, payload: Value, key: &EncodingKey, alg: Algorithm) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(payload.to_string())
    );
    let sig = jsonwebtoken::crypto::sign(input.as_bytes(), key, alg)
        .unwrap_or_else(|e| panic!("signing: {e}"));
    format!("{input}.{sig}")
}

/// A well-formed token from `key` with `alg`, `kid` and `typ: JWT`.
pub fn token(key: &TestKey, claims: Value) -> String {
    sign(
        json!({"alg": key.alg, "kid": key.kid, "typ": "JWT"}),
        claims,
        &key.encoding,
        key.alg,
    )
}

/// Valid claims at [`NOW`] for [`settings`].
pub fn claims() -> Value {
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "agent-7",
        "exp": NOW + 600,
        "iat": NOW - 10,
        "roles": ["agent"],
    })
}

pub fn settings(algorithms: Vec<Algorithm>) -> AuthSettings {
    AuthSettings::new(ISSUER, vec![AUDIENCE.to_string()], algorithms)
}

fn rcgen_key(kid: &str, alg: &'static rcgen::SignatureAlgorithm, jwt_alg: Algorithm) -> TestKey {
    let pair = rcgen::KeyPair::generate_for(alg).unwrap_or_else(|e| panic!("rcgen: {e}"));
    let private_pem = pair.serialize_pem();
    let public_pem = pair.public_key_pem();
    let (encoding, decoding) = if jwt_alg == Algorithm::EdDSA {
        (
            EncodingKey::from_ed_pem(private_pem.as_bytes()),
            DecodingKey::from_ed_pem(public_pem.as_bytes()),
        )
    } else {
        (
            EncodingKey::from_ec_pem(private_pem.as_bytes()),
            DecodingKey::from_ec_pem(public_pem.as_bytes()),
        )
    };
    let encoding = encoding.unwrap_or_else(|e| panic!("private key: {e}"));
    let decoding = decoding.unwrap_or_else(|e| panic!("public key: {e}"));
    finish(kid, jwt_alg, encoding, &decoding, private_pem, public_pem)
}

fn finish(
    kid: &str,
    alg: Algorithm,
    encoding: EncodingKey,
    decoding: &DecodingKey,
    private_pem: String,
    public_pem: String,
) -> TestKey {
    let jwk = Jwk::from_decoding_key(decoding, None).unwrap_or_else(|e| panic!("JWK: {e}"));
    let mut jwk = serde_json::to_value(jwk).unwrap_or_else(|e| panic!("JWK JSON: {e}"));
    jwk["kid"] = json!(kid);
    jwk["use"] = json!("sig");
    TestKey {
        kid: kid.to_string(),
        alg,
        encoding,
        private_pem,
        public_pem,
        jwk,
    }
}

fn openssl(args: &[&str], stdin: Option<&str>) -> String {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("the openssl CLI is needed to generate an RSA test key: {e}"));
    if let Some(input) = stdin {
        if let Some(mut pipe) = child.stdin.take() {
            pipe.write_all(input.as_bytes())
                .unwrap_or_else(|e| panic!("openssl stdin: {e}"));
        }
    }
    drop(child.stdin.take());
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("openssl: {e}"));
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap_or_else(|e| panic!("openssl output: {e}"))
}
