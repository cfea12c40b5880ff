//! The shared rate-limit store over TLS (`rediss://`), against a real
//! `redis-server` with its TLS port on and certificates made here, now:
//! a private CA trusted through `ca_file`, a server certificate that names
//! another host refused, and mutual TLS with `cert_file`/`key_file`. A
//! refused handshake never holds a request up: this replica's own counters
//! decide, and the failure is counted as `kind="tls"`. A reload re-reads
//! the PEM files.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{self, TestCa, TestGateway};
use crate::idp::Idp;
use crate::redis_limits::{export, reload, store_errors, RedisServer, CONFIG};
use crate::upstream::EchoUpstream;

/// A `redis-server` with a TLS port, its certificate from the test CA.
struct TlsRedis {
    _server: RedisServer,
    port: u16,
}

impl TlsRedis {
    /// `names`: what Redis's certificate names. `auth_clients`: whether
    /// Redis wants a client certificate from the test CA.
    async fn start(ca: &Pki, names: &[&str], auth_clients: bool) -> TlsRedis {
        let (cert, key) = ca.issue("redis", names);
        let port = harness::free_addr().port().to_string();
        let auth = if auth_clients { "yes" } else { "no" };
        let args: [&OsStr; 10] = [
            "--tls-port".as_ref(),
            port.as_ref(),
            "--tls-cert-file".as_ref(),
            cert.as_ref(),
            "--tls-key-file".as_ref(),
            key.as_ref(),
            // Also what client certificates are checked against.
            "--tls-ca-cert-file".as_ref(),
            ca.ca_file.as_ref(),
            "--tls-auth-clients".as_ref(),
            auth.as_ref(),
        ];
        let server = RedisServer::start_with(&args).await;
        TlsRedis {
            _server: server,
            port: port.parse().expect("port"),
        }
    }

    fn url(&self, host: &str) -> String {
        format!("rediss://{host}:{}", self.port)
    }
}

/// The test CA, its certificate in `ca.pem`, and the leaves it issued,
/// in one temporary directory.
struct Pki {
    ca: TestCa,
    dir: tempfile::TempDir,
    ca_file: PathBuf,
}

impl Pki {
    fn new() -> Pki {
        let ca = TestCa::new();
        let dir = tempfile::tempdir().expect("pki dir");
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca.pem()).expect("write ca");
        Pki { ca, dir, ca_file }
    }

    /// `<stem>.pem` and `<stem>.key`, for `names`.
    fn issue(&self, stem: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let cert = self.dir.path().join(format!("{stem}.pem"));
        let key = self.dir.path().join(format!("{stem}.key"));
        self.ca.issue(names, &cert, &key);
        (cert, key)
    }
}

/// A gateway whose `rate_limits.redis` points at `url`, with `tls` (the
/// TLS keys, as YAML flow-map entries) added. The timeout is the largest
/// allowed, so that a slow debug-build handshake on a busy machine is not
/// mistaken for a TLS failure.
async fn gateway(up: &EchoUpstream, idp: &Idp, url: String, tls: &[(&str, &Path)]) -> TestGateway {
    let mut keys = String::from("timeout: 1s");
    for (key, path) in tls {
        keys.push_str(&format!(", {key}: \"{}\"", path.display()));
    }
    let yaml = CONFIG.replace("timeout: 200ms", &keys);
    assert_ne!(
        yaml, CONFIG,
        "the shared config's redis block changed shape"
    );
    harness::start(
        &yaml,
        &[
            ("UP", up.url()),
            ("JWKS", idp.jwks_url()),
            ("REDIS_URL", url),
        ],
    )
    .await
}

/// `chatwarden_limit_store_errors_total{kind="<kind>"}`.
fn store_errors_of(metrics: &str, kind: &str) -> u64 {
    let series = format!("chatwarden_limit_store_errors_total{{kind=\"{kind}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&series)?.parse().ok())
        .unwrap_or(0)
}

/// Statuses of `n` exports by `token` on `gw`, each decided promptly.
async fn exports(gw: &TestGateway, token: &str, n: usize) -> Vec<u16> {
    let mut statuses = Vec::new();
    for _ in 0..n {
        let started = Instant::now();
        let status = export(gw, token).await.status().as_u16();
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "a request is decided within the Redis timeout, TLS or not: {:?}",
            started.elapsed()
        );
        statuses.push(status);
    }
    statuses
}

#[tokio::test]
async fn two_gateways_share_one_limit_over_tls_with_a_private_ca() {
    let pki = Pki::new();
    let redis = TlsRedis::start(&pki, &["localhost", "127.0.0.1"], false).await;
    let up = EchoUpstream::start().await;
    let idp = Idp::start().await;
    let trust = [("ca_file", pki.ca_file.as_path())];
    // One by name, one by address: the certificate is checked against each.
    let a = gateway(&up, &idp, redis.url("localhost"), &trust).await;
    let b = gateway(&up, &idp, redis.url("127.0.0.1"), &trust).await;
    let priya = idp.token("priya", &["supervisor"], json!({}));

    for (n, gw) in [&a, &b, &a].into_iter().enumerate() {
        assert_eq!(
            export(gw, &priya).await.status(),
            200,
            "export {} of 3 per hour, across both gateways",
            n + 1
        );
    }
    for (name, gw) in [("b", &b), ("a", &a)] {
        assert_eq!(
            export(gw, &priya).await.status(),
            429,
            "the fourth export, on gateway {name}, is over the limit both count in Redis"
        );
    }
    assert_eq!(up.count(), 3, "refused exports never reached the CRM");
    for gw in [&a, &b] {
        let text = gw.metrics().await;
        assert_eq!(
            store_errors(&text),
            0,
            "Redis answered every check over TLS:\n{text}"
        );
    }

    // Without ca_file only the system's CAs are trusted, and the private
    // CA is not one of them: this replica decides alone.
    let untrusting = gateway(&up, &idp, redis.url("localhost"), &[]).await;
    assert_eq!(
        exports(&untrusting, &priya, 1).await,
        [200],
        "decided by this replica's own counters, which have not seen priya"
    );
    let text = untrusting.metrics().await;
    assert_eq!(
        store_errors_of(&text, "tls"),
        1,
        "a certificate from an untrusted CA is a TLS failure:\n{text}"
    );
}

#[tokio::test]
async fn a_certificate_for_another_host_is_refused() {
    let pki = Pki::new();
    // Signed by the trusted CA, but for another name.
    let redis = TlsRedis::start(&pki, &["redis.elsewhere.test"], false).await;
    let up = EchoUpstream::start().await;
    let idp = Idp::start().await;
    let gw = gateway(
        &up,
        &idp,
        redis.url("localhost"),
        &[("ca_file", pki.ca_file.as_path())],
    )
    .await;
    let priya = idp.token("priya", &["supervisor"], json!({}));

    assert_eq!(
        exports(&gw, &priya, 4).await,
        [200, 200, 200, 429],
        "Redis is never trusted, and this replica's own limit holds"
    );
    let text = gw.metrics().await;
    assert_eq!(
        store_errors(&text),
        4,
        "every check Redis did not decide is counted:\n{text}"
    );
    assert!(
        store_errors_of(&text, "tls") >= 1,
        "the handshake that was tried failed as TLS (the others waited out the cooldown):\n{text}"
    );
}

#[tokio::test]
async fn mutual_tls_with_a_client_certificate() {
    let pki = Pki::new();
    let redis = TlsRedis::start(&pki, &["localhost"], true).await;
    let (cert, key) = pki.issue("chatwarden", &["chatwarden"]);
    let up = EchoUpstream::start().await;
    let idp = Idp::start().await;
    let identity = [
        ("ca_file", pki.ca_file.as_path()),
        ("cert_file", cert.as_path()),
        ("key_file", key.as_path()),
    ];
    let a = gateway(&up, &idp, redis.url("localhost"), &identity).await;
    let b = gateway(&up, &idp, redis.url("localhost"), &identity).await;
    let priya = idp.token("priya", &["supervisor"], json!({}));

    let mut statuses = exports(&a, &priya, 2).await;
    statuses.extend(exports(&b, &priya, 2).await);
    assert_eq!(
        statuses,
        [200, 200, 200, 429],
        "both gateways show their certificate and count one limit"
    );
    for gw in [&a, &b] {
        let text = gw.metrics().await;
        assert_eq!(store_errors(&text), 0, "Redis accepted the client:\n{text}");
    }

    // A gateway without a certificate is turned away by Redis.
    let anonymous = gateway(
        &up,
        &idp,
        redis.url("localhost"),
        &[("ca_file", pki.ca_file.as_path())],
    )
    .await;
    assert_eq!(exports(&anonymous, &priya, 1).await, [200]);
    let text = anonymous.metrics().await;
    assert_eq!(
        store_errors_of(&text, "tls"),
        1,
        "Redis refusing the client is a TLS failure:\n{text}"
    );
}

#[tokio::test]
async fn a_reload_rereads_the_tls_files() {
    let pki = Pki::new();
    let redis = TlsRedis::start(&pki, &["localhost"], false).await;
    let up = EchoUpstream::start().await;
    let idp = Idp::start().await;
    // The gateway's own copy of the bundle, replaced in place as a
    // mounted secret is when it rotates.
    let trusted = pki.dir.path().join("trusted.pem");
    std::fs::copy(&pki.ca_file, &trusted).expect("copy ca");
    let gw = gateway(
        &up,
        &idp,
        redis.url("localhost"),
        &[("ca_file", trusted.as_path())],
    )
    .await;
    let priya = idp.token("priya", &["supervisor"], json!({}));
    assert_eq!(exports(&gw, &priya, 1).await, [200]);
    assert_eq!(store_errors(&gw.metrics().await), 0, "Redis decided");

    let body = reload(&gw).await;
    assert_eq!(
        body["reloaded"], false,
        "the same file naming the same certificates: nothing to apply: {body}"
    );

    std::fs::copy(&Pki::new().ca_file, &trusted).expect("swap ca");
    let body = reload(&gw).await;
    assert_eq!(
        body["reloaded"], true,
        "a changed ca_file is a change, though the config text is the same: {body}"
    );
    assert_eq!(exports(&gw, &priya, 1).await, [200]);
    let text = gw.metrics().await;
    assert_eq!(
        store_errors_of(&text, "tls"),
        1,
        "the new bundle does not vouch for Redis's certificate:\n{text}"
    );
}
