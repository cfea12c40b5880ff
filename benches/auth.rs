//! Token verification cost per algorithm, and what the verified-token cache
//! saves. Run: `cargo bench --bench auth` (add `-- --quick` for a fast pass).
//!
//! Keys are generated at run time: EC and Ed25519 by rcgen / chatwarden's
//! dev key generator, RSA by the `openssl` command line.
//!
//! After the criterion groups, one more measurement in the same process
//! prints the cache hit cost as a ratio to an uncached RS256 verification.

use std::hint::black_box;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chatwarden::auth::{generate_dev_key, mint, AuthSettings, KeySet, KeyStore, MintKey, Verifier};
use criterion::{criterion_group, Criterion};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use serde_json::{json, Value};

const NOW: i64 = 1_750_000_000;
const ISSUER: &str = "https://idp.acme.example/realms/staff";
const HMAC_SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

/// One algorithm's verifier and a valid token for it.
struct Case {
    name: &'static str,
    token: String,
    uncached: Verifier,
    cached: Verifier,
    /// The public key as jsonwebtoken holds it.
    public: DecodingKeySource,
}

/// Where a case's public key comes from, to build jsonwebtoken's
/// `DecodingKey` for the signature-only measurement.
enum DecodingKeySource {
    Jwks(String),
    RsaPem(String),
    Secret,
}

impl Case {
    fn decoding_key(&self) -> DecodingKey {
        match &self.public {
            DecodingKeySource::Jwks(jwks) => {
                let set: jsonwebtoken::jwk::JwkSet =
                    serde_json::from_str(jwks).unwrap_or_else(|e| panic!("{e}"));
                DecodingKey::from_jwk(&set.keys[0]).unwrap_or_else(|e| panic!("{e}"))
            }
            DecodingKeySource::RsaPem(pem) => {
                DecodingKey::from_rsa_pem(pem.as_bytes()).unwrap_or_else(|e| panic!("{e}"))
            }
            DecodingKeySource::Secret => DecodingKey::from_secret(HMAC_SECRET),
        }
    }
}

fn claims(jti: usize) -> Value {
    json!({
        "iss": ISSUER,
        "aud": "chatwarden",
        "sub": "agent-7",
        "exp": NOW + 3600,
        "iat": NOW - 10,
        "auth_time": NOW - 100,
        "jti": format!("t-{jti}"),
        "amr": ["pwd", "otp"],
        "roles": ["agent", "supervisor"],
        "user_id": 17,
        "teams": ["sales", "support"],
    })
}

fn settings(alg: Algorithm, cache_entries: usize) -> AuthSettings {
    let mut s = AuthSettings::new(ISSUER, vec!["chatwarden".into()], vec![alg]);
    s.cache_entries = cache_entries;
    s
}

fn case(
    name: &'static str,
    alg: Algorithm,
    store: Arc<KeyStore>,
    token: String,
    public: DecodingKeySource,
) -> Case {
    let make = |entries| {
        Verifier::new(settings(alg, entries), store.clone())
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    Case {
        name,
        token,
        uncached: make(0),
        cached: make(10_000),
        public,
    }
}

fn store_with_jwks(jwks: &str) -> Arc<KeyStore> {
    let store = KeyStore::new(KeySet::new());
    store.replace_remote(
        &KeySet::from_jwks_json(jwks.as_bytes()).unwrap_or_else(|e| panic!("JWKS: {e}")),
    );
    Arc::new(store)
}

fn es256() -> Case {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .unwrap_or_else(|e| panic!("{e}"));
    let key = MintKey::from_pem(pair.serialize_pem().as_bytes(), "ec-1")
        .unwrap_or_else(|e| panic!("{e}"));
    let token = mint(&claims(0), &key).unwrap_or_else(|e| panic!("{e}"));
    let jwks = key.jwks_json();
    case(
        "ES256",
        Algorithm::ES256,
        store_with_jwks(&jwks),
        token,
        DecodingKeySource::Jwks(jwks),
    )
}

fn eddsa() -> Case {
    let (key, jwks) = generate_dev_key().unwrap_or_else(|e| panic!("{e}"));
    let token = mint(&claims(0), &key).unwrap_or_else(|e| panic!("{e}"));
    case(
        "EdDSA",
        Algorithm::EdDSA,
        store_with_jwks(&jwks),
        token,
        DecodingKeySource::Jwks(jwks.clone()),
    )
}

fn rs256() -> Case {
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
    let mut local = KeySet::new();
    local
        .add_pem("rsa-1", public.as_bytes())
        .unwrap_or_else(|e| panic!("{e}"));
    let key = EncodingKey::from_rsa_pem(private.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    let token = sign(
        json!({"alg": "RS256", "kid": "rsa-1", "typ": "JWT"}),
        &key,
        Algorithm::RS256,
    );
    case(
        "RS256",
        Algorithm::RS256,
        Arc::new(KeyStore::new(local)),
        token,
        DecodingKeySource::RsaPem(public),
    )
}

fn hs256() -> Case {
    let mut local = KeySet::new();
    local
        .add_hmac_secret(None, HMAC_SECRET)
        .unwrap_or_else(|e| panic!("{e}"));
    let token = sign(
        json!({"alg": "HS256", "typ": "JWT"}),
        &EncodingKey::from_secret(HMAC_SECRET),
        Algorithm::HS256,
    );
    case(
        "HS256",
        Algorithm::HS256,
        Arc::new(KeyStore::new(local)),
        token,
        DecodingKeySource::Secret,
    )
}

fn sign(header: Value, key: &EncodingKey, alg: Algorithm) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims(0).to_string())
    );
    let sig =
        jsonwebtoken::crypto::sign(input.as_bytes(), key, alg).unwrap_or_else(|e| panic!("{e}"));
    format!("{input}.{sig}")
}

fn openssl(args: &[&str], stdin: Option<&str>) -> String {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("the openssl CLI is needed for the RSA key: {e}"));
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
    String::from_utf8(out.stdout).unwrap_or_else(|e| panic!("{e}"))
}

fn cases() -> Vec<Case> {
    vec![es256(), rs256(), eddsa(), hs256()]
}

fn verification(c: &mut Criterion) {
    let mut group = c.benchmark_group("verify");
    for case in cases() {
        assert!(
            case.uncached.verify(&case.token, NOW).is_ok(),
            "{} token should verify",
            case.name
        );
        group.bench_function(format!("{}/uncached", case.name), |b| {
            b.iter(|| case.uncached.verify(black_box(&case.token), NOW))
        });
        group.bench_function(format!("{}/cache_hit", case.name), |b| {
            b.iter(|| case.cached.verify(black_box(&case.token), NOW))
        });
        // A miss: flush (O(1)), hash, lookup, full verify, insert.
        group.bench_function(format!("{}/cache_miss", case.name), |b| {
            b.iter(|| {
                case.cached.flush_cache();
                case.cached.verify(black_box(&case.token), NOW)
            })
        });
    }
    group.finish();
}

/// The headline: cache hit vs uncached RS256, measured back to back.
fn ratio_report() {
    let rs = rs256();
    let time_per = |n: u32, f: &dyn Fn()| {
        let start = Instant::now();
        for _ in 0..n {
            f();
        }
        start.elapsed().as_secs_f64() / f64::from(n)
    };
    // Warm up both paths (and fill the cache).
    let _ = time_per(200, &|| {
        black_box(rs.uncached.verify(black_box(&rs.token), NOW).is_ok());
        black_box(rs.cached.verify(black_box(&rs.token), NOW).is_ok());
    });
    let uncached = time_per(3_000, &|| {
        black_box(rs.uncached.verify(black_box(&rs.token), NOW).is_ok());
    });
    let hit = time_per(300_000, &|| {
        black_box(rs.cached.verify(black_box(&rs.token), NOW).is_ok());
    });
    eprintln!(
        "\nauth: RS256 uncached {:.1} µs, cache hit {:.2} µs → a hit costs {:.2}% of an RS256 verify ({:.0}× faster)",
        uncached * 1e6,
        hit * 1e6,
        hit / uncached * 100.0,
        uncached / hit
    );
}

/// The signature check alone, as jsonwebtoken does it (the key parsed on
/// every call), against chatwarden's whole uncached verification (header,
/// signature through the key parsed at load, claims, identity), back to
/// back in one process.
fn prepared_report() {
    let time_per = |n: u32, f: &dyn Fn()| {
        let start = Instant::now();
        for _ in 0..n {
            f();
        }
        start.elapsed().as_secs_f64() / f64::from(n)
    };
    for case in [es256(), rs256()] {
        let (input, sig) = case
            .token
            .rsplit_once('.')
            .unwrap_or_else(|| panic!("{}: a JWS", case.name));
        let header: Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(input.split('.').next().unwrap_or_default())
                .unwrap_or_else(|e| panic!("{e}")),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let alg: Algorithm =
            serde_json::from_value(header["alg"].clone()).unwrap_or_else(|e| panic!("{e}"));
        let key = case.decoding_key();
        let jwt_sig = || {
            black_box(
                jsonwebtoken::crypto::verify(black_box(sig), input.as_bytes(), &key, alg)
                    .unwrap_or(false),
            );
        };
        let ours = || {
            black_box(case.uncached.verify(black_box(&case.token), NOW).is_ok());
        };
        assert!(
            jsonwebtoken::crypto::verify(sig, input.as_bytes(), &key, alg).unwrap_or(false),
            "{}: the signature verifies with jsonwebtoken",
            case.name
        );
        let _ = time_per(300, &|| {
            jwt_sig();
            ours();
        });
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for _ in 0..5 {
            a.push(time_per(1_000, &jwt_sig));
            b.push(time_per(1_000, &ours));
        }
        a.sort_by(f64::total_cmp);
        b.sort_by(f64::total_cmp);
        let (jwt, full) = (a[2], b[2]);
        eprintln!(
            "auth: {} jsonwebtoken signature check alone {:.1} µs; chatwarden's whole uncached verify {:.1} µs ({:.2}×)",
            case.name,
            jwt * 1e6,
            full * 1e6,
            full / jwt
        );
    }
}

criterion_group!(benches, verification);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    ratio_report();
    prepared_report();
}
