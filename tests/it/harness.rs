//! The in-process harness: a real chatwarden (pingora) server on a free
//! loopback port, in front of real HTTP upstreams on port 0. Later suites
//! reuse it; nothing here is mocked.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chatwarden::config::{env::Overlay, load_str, ProcessEnv};
use chatwarden::server::{self, Handles, RunOptions};
use pingora_core::server::{RunArgs, ShutdownSignal, ShutdownSignalWatch};
use tempfile::TempDir;

pub struct TestGateway {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub handles: Handles,
    pub dir: TempDir,
    pub audit_path: PathBuf,
}

/// Start a gateway on `yaml`. `${UP_<NAME>}` variables are filled from
/// `vars`; `${LISTEN}`, `${ADMIN}` and `${AUDIT}` are provided here.
pub async fn start(yaml: &str, vars: &[(&str, String)]) -> TestGateway {
    start_with_files(yaml, vars, &[]).await
}

/// `start`, with `files` (name, content) written into the gateway's
/// directory (`${DIR}`) before the config is compiled.
pub async fn start_with_files(
    yaml: &str,
    vars: &[(&str, String)],
    files: &[(&str, &str)],
) -> TestGateway {
    start_watching(yaml, vars, files, None).await
}

/// `start` with its `main` listener (`listeners: [{name: main, addr:
/// "${LISTEN}"}]`) speaking TLS, under a certificate for localhost from a
/// CA made here; the CA's PEM, for clients to trust.
pub async fn start_tls(yaml: &str, vars: &[(&str, String)]) -> (TestGateway, String) {
    let plain = r#"listeners: [{name: main, addr: "${LISTEN}"}]"#;
    assert!(
        yaml.contains(plain),
        "start_tls needs the plain main listener"
    );
    let tls = yaml.replace(
        plain,
        r#"listeners: [{name: main, addr: "${LISTEN}", tls: {cert: "${DIR}/cert.pem", key: "${DIR}/key.pem"}}]"#,
    );
    let pki = tempfile::tempdir().expect("dir");
    let ca = make_pki(pki.path());
    let read = |name: &str| std::fs::read_to_string(pki.path().join(name)).expect("pki file");
    let (cert, key) = (read("cert.pem"), read("key.pem"));
    let gw = start_with_files(&tls, vars, &[("cert.pem", &cert), ("key.pem", &key)]).await;
    (gw, ca)
}

/// `start_with_files`, reloading on its own when the files change,
/// checked every `watch` (`run --watch`).
pub async fn start_watching(
    yaml: &str,
    vars: &[(&str, String)],
    files: &[(&str, &str)],
    watch: Option<Duration>,
) -> TestGateway {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, content) in files {
        std::fs::write(dir.path().join(name), content).expect("write test file");
    }
    let addr = free_addr();
    let admin = free_addr();
    let audit_path = dir.path().join("audit.jsonl");
    let mut env: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    env.insert("LISTEN".into(), addr.to_string());
    env.insert("ADMIN".into(), admin.to_string());
    env.insert("AUDIT".into(), audit_path.display().to_string());
    env.insert("DIR".into(), dir.path().display().to_string());
    let config_path = dir.path().join("chatwarden.yaml");
    std::fs::write(&config_path, yaml).expect("write config");
    let snapshot = load_str(
        yaml,
        &config_path,
        &Overlay {
            top: &env,
            base: &ProcessEnv,
        },
    )
    .unwrap_or_else(|e| panic!("test config should compile:\n{e}"));
    let (server, handles) = server::build(
        snapshot,
        &RunOptions {
            threads: 1,
            daemon: false,
            upgrade: false,
            reload: Some(chatwarden::reload::ReloadSource {
                path: config_path.clone(),
                overrides: env.clone(),
            }),
            reload_on_sighup: false,
            watch,
        },
    )
    .expect("server should build");
    std::thread::spawn(move || {
        server.run(RunArgs {
            shutdown_signal: Box::new(NeverShutdown),
        })
    });
    wait_listening(addr).await;
    wait_listening(admin).await;
    // The gateway marks itself ready once the kernel lists its listener
    // (a few milliseconds after it accepts): tests start from there.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !handles.store.is_ready() {
        assert!(
            Instant::now() < deadline,
            "the gateway never saw its listeners up"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    TestGateway {
        addr,
        admin,
        handles,
        dir,
        audit_path,
    }
}

impl TestGateway {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Wait until at least `n` audit records are on disk, then return all
    /// of them. The record of a request is written in its logging phase,
    /// just after the response, so a test polls (bounded) rather than
    /// sleeping a guessed amount.
    pub async fn audit_records(&self, n: usize) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let _ = self.handles.audit.flush().await;
            let records = read_jsonl(&self.audit_path);
            if records.len() >= n || Instant::now() > deadline {
                return records;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// The admin listener's `/metrics` text (for gateways without an admin
    /// token).
    pub async fn metrics(&self) -> String {
        self.metrics_as(None).await
    }

    /// `/metrics`, presenting `admin_token` when the gateway has one.
    pub async fn metrics_as(&self, admin_token: Option<&str>) -> String {
        let mut req = self.client().get(format!("http://{}/metrics", self.admin));
        if let Some(token) = admin_token {
            req = req.bearer_auth(token);
        }
        let resp = req.send().await.expect("metrics");
        // A refused scrape must not pass for metrics without the line
        // a test looks for.
        assert_eq!(resp.status(), 200, "/metrics refused: pass the admin token");
        resp.text().await.expect("metrics body")
    }

    /// `POST /reload` on the admin listener with `admin_token`; its JSON
    /// answer (the reload must be accepted).
    pub async fn reload(&self, admin_token: &str) -> serde_json::Value {
        let resp = self
            .client()
            .post(format!("http://{}/reload", self.admin))
            .bearer_auth(admin_token)
            .send()
            .await
            .expect("reload");
        assert_eq!(resp.status(), 200, "the reload should be accepted");
        resp.json().await.expect("a JSON answer")
    }

    /// Until `/readyz` says ready (its JWKS loaded, among others). A test
    /// whose first request must not race the first key fetch waits here.
    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let url = format!("http://{}/readyz", self.admin);
        loop {
            let ready = self.client().get(&url).send().await;
            if ready.is_ok_and(|r| r.status() == 200) {
                return;
            }
            assert!(Instant::now() < deadline, "the gateway never got ready");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    pub fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client")
    }
}

/// The audit records among `records` refused for `reason`.
pub fn with_reason<'a>(
    records: &'a [serde_json::Value],
    reason: &str,
) -> Vec<&'a serde_json::Value> {
    records.iter().filter(|r| r["reason"] == reason).collect()
}

/// The records of an audit file, each line whole: a last line without its
/// newline is one the writer is still writing, and is left for later.
pub fn read_jsonl(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let whole = text.rfind('\n').map_or("", |end| &text[..=end]);
    whole
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("audit line is not JSON ({e}): {l}"))
        })
        .collect()
}

/// A loopback address whose port was free a moment ago. pingora binds its
/// own listeners, so the port cannot be handed over already bound.
///
/// Ports come from below Linux's ephemeral range (32768 and up), each at
/// most once per test run: a port that the kernel hands out for a `bind` to
/// port 0 (every test upstream) or for an outgoing connection can never be
/// one given out here and not yet bound, which used to let a test's
/// requests reach another test's server now and then.
pub fn free_addr() -> SocketAddr {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const COUNT: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // Another test run on this machine starts elsewhere in the range.
    let start = std::process::id() % COUNT;
    for _ in 0..COUNT {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = FIRST + (start + n) % COUNT;
        if let Ok(l) = StdListener::bind(("127.0.0.1", port as u16)) {
            return l.local_addr().expect("local addr");
        }
    }
    panic!("no free port in {FIRST}..{}", FIRST + COUNT);
}

async fn wait_listening(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "gateway did not start listening on {addr}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

struct NeverShutdown;

#[async_trait]
impl ShutdownSignalWatch for NeverShutdown {
    async fn recv(&self) -> ShutdownSignal {
        std::future::pending::<()>().await;
        ShutdownSignal::FastShutdown
    }
}

/// Send raw bytes and read the whole response (the gateway closes the
/// connection after `Connection: close` or a 400).
pub async fn raw_request(addr: SocketAddr, bytes: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(bytes).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

pub fn status_of(raw_response: &str) -> u16 {
    raw_response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {raw_response:?}"))
}

/// A CA and a leaf certificate for `localhost` and 127.0.0.1 made at test
/// time, written as `ca.pem`, `cert.pem` and `key.pem` into `dir`.
/// Returns the CA's PEM.
pub fn make_pki(dir: &Path) -> String {
    let ca = TestCa::new();
    ca.issue(
        &["localhost", "127.0.0.1"],
        &dir.join("cert.pem"),
        &dir.join("key.pem"),
    );
    std::fs::write(dir.join("ca.pem"), ca.pem()).expect("write ca");
    ca.pem()
}

/// A certificate authority made at test time, issuing leaf certificates.
pub struct TestCa {
    params: rcgen::CertificateParams,
    key: rcgen::KeyPair,
    cert: rcgen::Certificate,
}

impl TestCa {
    pub fn new() -> TestCa {
        let key = rcgen::KeyPair::generate().expect("ca key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "chatwarden test CA");
        let cert = params.self_signed(&key).expect("ca cert");
        TestCa { params, key, cert }
    }

    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A leaf for `names` (DNS names or IP addresses), its certificate
    /// written to `cert` and its key to `key`, both PEM.
    pub fn issue(&self, names: &[&str], cert: &Path, key: &Path) {
        let leaf_key = rcgen::KeyPair::generate().expect("leaf key");
        let names = names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let leaf_params = rcgen::CertificateParams::new(names).expect("leaf params");
        let issuer = rcgen::Issuer::from_params(&self.params, &self.key);
        let leaf = leaf_params
            .signed_by(&leaf_key, &issuer)
            .expect("leaf cert");
        std::fs::write(cert, leaf.pem()).expect("write cert");
        std::fs::write(key, leaf_key.serialize_pem()).expect("write key");
    }

    /// A client certificate for `CN=<common_name>`, as one PEM holding the
    /// certificate and its key (what `reqwest::Identity::from_pem` reads).
    pub fn client_identity(&self, common_name: &str) -> Vec<u8> {
        self.client_identity_params(common_name, None)
    }

    /// As [`TestCa::client_identity`], with serial number `serial` (what a
    /// revocation list names).
    pub fn numbered_client_identity(&self, common_name: &str, serial: u64) -> Vec<u8> {
        self.client_identity_params(common_name, Some(serial))
    }

    fn client_identity_params(&self, common_name: &str, serial: Option<u64>) -> Vec<u8> {
        let leaf_key = rcgen::KeyPair::generate().expect("client key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        params.serial_number = serial.map(rcgen::SerialNumber::from);
        let issuer = rcgen::Issuer::from_params(&self.params, &self.key);
        let leaf = params.signed_by(&leaf_key, &issuer).expect("client cert");
        format!("{}{}", leaf.pem(), leaf_key.serialize_pem()).into_bytes()
    }

    /// A revocation list (PEM) signed by this CA, current for a month,
    /// naming the certificates with serial numbers `revoked`.
    pub fn crl(&self, revoked: &[u64]) -> String {
        self.crl_due(
            revoked,
            time::OffsetDateTime::now_utc() + time::Duration::days(30),
        )
    }

    /// As [`TestCa::crl`], due to be replaced at `next_update`.
    pub fn crl_due(&self, revoked: &[u64], next_update: time::OffsetDateTime) -> String {
        let now = time::OffsetDateTime::now_utc();
        let params = rcgen::CertificateRevocationListParams {
            this_update: (now - time::Duration::days(60))
                .min(next_update - time::Duration::days(1)),
            next_update,
            crl_number: rcgen::SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|&serial| rcgen::RevokedCertParams {
                    serial_number: rcgen::SerialNumber::from(serial),
                    revocation_time: now - time::Duration::minutes(5),
                    reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        let issuer = rcgen::Issuer::from_params(&self.params, &self.key);
        params
            .signed_by(&issuer)
            .and_then(|crl| crl.pem())
            .expect("revocation list")
    }
}

/// A gateway in front of the demo CRM (realistic Chatwoot data, fresh
/// state) with a test IdP: `${CRM}`, `${CRM_TOKEN}` and `${JWKS}` are set,
/// plus `extra`.
pub async fn start_with_demo_crm(
    yaml: &str,
    extra: &[(&str, String)],
) -> (TestGateway, std::sync::Arc<crate::idp::Idp>) {
    let crm = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the demo CRM");
    let crm_addr = crm.local_addr().expect("demo CRM address");
    tokio::spawn(chatwarden::demo::upstream::serve_crm(crm));
    let idp = crate::idp::Idp::start().await;
    let mut vars = vec![
        ("CRM", format!("http://{crm_addr}")),
        (
            "CRM_TOKEN",
            chatwarden::demo::upstream::DEMO_CRM_API_TOKEN.to_string(),
        ),
        ("JWKS", idp.jwks_url()),
    ];
    vars.extend(extra.iter().cloned());
    (start(yaml, &vars).await, idp)
}
