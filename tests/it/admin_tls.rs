//! The admin listener over HTTPS (`admin.tls`), with client certificates
//! from an operations CA (`admin.tls.client_ca`): certificates made at
//! test time, a real TLS client.

use std::path::Path;

use crate::harness::{self, TestCa, TestGateway};
use crate::upstream::EchoUpstream;

const ADMIN_TOKEN: &str = "admin-tls-test-token-0001";

const CONFIG: &str = r#"
listeners:
  - {name: plain, addr: "${LISTEN}"}
admin:
  addr: "${ADMIN}"
  token_env: ADMIN_TOKEN
  tls: {cert: "${PKI}/cert.pem", key: "${PKI}/key.pem", client_ca: "${PKI}/ops-ca.pem"}
upstreams:
  crm: {url: "${UP}"}
routes:
  - {name: contacts, upstream: crm, methods: [GET], path: /contacts, auth: none}
audit: {path: "${AUDIT}"}
"#;

/// A gateway on [`CONFIG`]: its admin certificate from the CA it returns
/// (PEM), its client certificates from `ops`.
async fn gateway(pki: &Path, ops: &TestCa) -> (TestGateway, String, EchoUpstream) {
    gateway_on(CONFIG, pki, ops).await
}

async fn gateway_on(config: &str, pki: &Path, ops: &TestCa) -> (TestGateway, String, EchoUpstream) {
    let up = EchoUpstream::start().await;
    let server_ca = harness::make_pki(pki);
    std::fs::write(pki.join("ops-ca.pem"), ops.pem()).expect("write the ops CA");
    let gw = harness::start(
        config,
        &[
            ("UP", up.url()),
            ("PKI", pki.display().to_string()),
            ("ADMIN_TOKEN", ADMIN_TOKEN.into()),
        ],
    )
    .await;
    (gw, server_ca, up)
}

/// A client of the admin listener (as `localhost`) trusting `server_ca`,
/// presenting `identity` (certificate and key, PEM) if given. One client
/// keeps its connection between requests.
fn admin_client(gw: &TestGateway, server_ca: &str, identity: Option<&[u8]>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .tls_built_in_root_certs(false)
        .resolve("localhost", gw.admin)
        .add_root_certificate(
            reqwest::Certificate::from_pem(server_ca.as_bytes()).expect("a CA certificate"),
        );
    if let Some(pem) = identity {
        builder = builder.identity(reqwest::Identity::from_pem(pem).expect("an identity"));
    }
    builder.build().expect("client")
}

/// `/healthz` on a new connection presenting `identity`: an error when the
/// handshake refuses the certificate.
async fn probe_with(
    gw: &TestGateway,
    server_ca: &str,
    identity: &[u8],
) -> reqwest::Result<reqwest::Response> {
    let client = admin_client(gw, server_ca, Some(identity));
    client.get(url(gw, "/healthz")).send().await
}

fn url(gw: &TestGateway, path: &str) -> String {
    format!("https://localhost:{}{path}", gw.admin.port())
}

async fn status(req: reqwest::RequestBuilder) -> (u16, String) {
    let resp = req.send().await.expect("an answer");
    let status = resp.status().as_u16();
    (status, resp.text().await.expect("a body"))
}

/// The admin records (`event` set) among the audit file's first `n`.
async fn admin_records(gw: &TestGateway, event: &str, n: usize) -> Vec<serde_json::Value> {
    gw.audit_records(n)
        .await
        .into_iter()
        .filter(|r| r["event"] == event)
        .collect()
}

#[tokio::test]
async fn the_admin_listener_speaks_https_and_asks_for_a_client_certificate() {
    let pki = tempfile::tempdir().expect("dir");
    let ops = TestCa::new();
    let (gw, server_ca, _up) = gateway(pki.path(), &ops).await;

    // No plain HTTP: the token would cross the network in clear.
    let plain = gw
        .client()
        .get(format!("http://{}/healthz", gw.admin))
        .send()
        .await;
    assert!(plain.is_err(), "plain HTTP must not be answered: {plain:?}");

    // The probes need no certificate (a load balancer has none).
    let anonymous = admin_client(&gw, &server_ca, None);
    for probe in ["/healthz", "/readyz"] {
        let (code, _) = status(anonymous.get(url(&gw, probe))).await;
        assert_eq!(code, 200, "{probe} without a client certificate");
    }
    // Everything else does, the token notwithstanding.
    let (code, body) = status(anonymous.get(url(&gw, "/metrics")).bearer_auth(ADMIN_TOKEN)).await;
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("admin.tls.client_ca"), "{body}");
    let (code, _) = status(
        anonymous
            .post(url(&gw, "/revoke"))
            .bearer_auth(ADMIN_TOKEN)
            .body(r#"{"sub": "mallory"}"#),
    )
    .await;
    assert_eq!(code, 403);
    assert_eq!(gw.handles.revocations.count(), 0, "nothing was revoked");

    // A certificate from another CA ends the handshake.
    let stranger = TestCa::new().client_identity("ops-alice");
    let outsider = admin_client(&gw, &server_ca, Some(&stranger));
    let refused = outsider.get(url(&gw, "/healthz")).send().await;
    assert!(
        refused.is_err(),
        "a certificate the CA did not issue: {refused:?}"
    );

    // The operations CA's certificate, and the token too: both are needed.
    let alice = admin_client(&gw, &server_ca, Some(&ops.client_identity("ops-alice")));
    let (code, _) = status(alice.get(url(&gw, "/metrics"))).await;
    assert_eq!(code, 401, "a certificate does not replace the token");
    let (code, body) = status(alice.get(url(&gw, "/metrics")).bearer_auth(ADMIN_TOKEN)).await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("chatwarden_ready 1"), "{body}");

    // A revocation is audited with who asked.
    let (code, body) = status(
        alice
            .post(url(&gw, "/revoke"))
            .bearer_auth(ADMIN_TOKEN)
            .body(r#"{"sub": "mallory"}"#),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(gw.handles.revocations.count(), 1);
    let (code, body) = status(alice.post(url(&gw, "/reload")).bearer_auth(ADMIN_TOKEN)).await;
    assert_eq!(code, 200, "{body}");

    let revokes = admin_records(&gw, "revoke", 3).await;
    assert_eq!(revokes.len(), 2, "{revokes:#?}");
    let refused = &revokes[0];
    assert_eq!(refused["decision"], "deny");
    assert_eq!(refused["client_ip"], "127.0.0.1");
    assert_eq!(
        refused["detail"],
        "POST /revoke from 127.0.0.1: refused: no client certificate"
    );
    let done = &revokes[1];
    assert_eq!(done["decision"], "allow");
    let detail = done["detail"].as_str().expect("detail");
    assert!(
        detail.starts_with(
            "POST /revoke from 127.0.0.1 with client certificate CN=ops-alice (sha256 "
        ) && detail.contains("): subject mallory refused from its next request on until 20"),
        "{detail}"
    );
    let reloads = admin_records(&gw, "reload", 3).await;
    let reload = reloads[0]["detail"].as_str().expect("detail");
    assert!(
        reload.starts_with("POST /reload from 127.0.0.1 with client certificate CN=ops-alice"),
        "{reload}"
    );
}

#[tokio::test]
async fn a_reload_renews_certificates_and_a_new_ca_holds_for_open_connections() {
    let pki = tempfile::tempdir().expect("dir");
    let ops = TestCa::new();
    let (gw, server_ca, _up) = gateway(pki.path(), &ops).await;
    let alice = admin_client(&gw, &server_ca, Some(&ops.client_identity("ops-alice")));
    let (code, _) = status(alice.get(url(&gw, "/metrics")).bearer_auth(ADMIN_TOKEN)).await;
    assert_eq!(code, 200);

    // The operations CA is replaced and the server certificate renewed
    // (by a new server CA), in place; alice asks for the reload on the
    // connection she holds.
    let new_ops = TestCa::new();
    std::fs::write(pki.path().join("ops-ca.pem"), new_ops.pem()).expect("rotate the ops CA");
    let new_server_ca = harness::make_pki(pki.path());
    let (code, body) = status(alice.post(url(&gw, "/reload")).bearer_auth(ADMIN_TOKEN)).await;
    assert_eq!(code, 200, "{body}");

    // Her connection is still open, and her certificate is checked again
    // on it: the old CA no longer vouches for her. (A new connection would
    // fail the handshake, which is not what this asserts.)
    let (code, body) = status(alice.get(url(&gw, "/metrics")).bearer_auth(ADMIN_TOKEN)).await;
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("no longer accepted"), "{body}");

    // New connections see the renewed server certificate and the new CA.
    let stale = admin_client(&gw, &server_ca, Some(&new_ops.client_identity("ops-bob")));
    assert!(
        stale.get(url(&gw, "/healthz")).send().await.is_err(),
        "the old server certificate is no longer served"
    );
    let bob = admin_client(
        &gw,
        &new_server_ca,
        Some(&new_ops.client_identity("ops-bob")),
    );
    let (code, body) = status(bob.get(url(&gw, "/metrics")).bearer_auth(ADMIN_TOKEN)).await;
    assert_eq!(code, 200, "{body}");

    // Turning TLS off needs a restart; a reload that tries is refused and
    // the running listener keeps asking for certificates.
    let config = gw.dir.path().join("chatwarden.yaml");
    let yaml = std::fs::read_to_string(&config).expect("config");
    let without = yaml.replace(
        r#"  tls: {cert: "${PKI}/cert.pem", key: "${PKI}/key.pem", client_ca: "${PKI}/ops-ca.pem"}"#,
        "",
    );
    assert_ne!(yaml, without);
    std::fs::write(&config, without).expect("rewrite config");
    let (code, body) = status(bob.post(url(&gw, "/reload")).bearer_auth(ADMIN_TOKEN)).await;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("admin.tls added or removed"), "{body}");
    let anonymous = admin_client(&gw, &new_server_ca, None);
    let (code, _) = status(anonymous.get(url(&gw, "/metrics")).bearer_auth(ADMIN_TOKEN)).await;
    assert_eq!(code, 403);
}

#[tokio::test]
async fn a_revoked_client_certificate_is_refused_and_a_new_list_applies_on_reload() {
    let pki = tempfile::tempdir().expect("dir");
    let ops = TestCa::new();
    let crl = pki.path().join("ops-crl.pem");
    std::fs::write(&crl, ops.crl(&[2])).expect("write the revocation list");
    let config = CONFIG.replace(
        r#"client_ca: "${PKI}/ops-ca.pem"}"#,
        r#"client_ca: "${PKI}/ops-ca.pem", client_crl: "${PKI}/ops-crl.pem"}"#,
    );
    assert_ne!(config, CONFIG);
    let (gw, server_ca, _up) = gateway_on(&config, pki.path(), &ops).await;

    let alice = admin_client(
        &gw,
        &server_ca,
        Some(&ops.numbered_client_identity("ops-alice", 1)),
    );
    let (code, body) = status(alice.get(url(&gw, "/metrics")).bearer_auth(ADMIN_TOKEN)).await;
    assert_eq!(code, 200, "{body}");
    // When the list is due to be replaced, for an alert on a stale one.
    let due: i64 = body
        .lines()
        .find_map(|l| l.strip_prefix("chatwarden_admin_client_crl_next_update_seconds "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no next-update gauge in:\n{body}"));
    let in_30_days = time::OffsetDateTime::now_utc().unix_timestamp() + 30 * 86_400;
    assert!((due - in_30_days).abs() < 600, "{due} vs {in_30_days}");

    // The CA issued mallory's certificate, and the list revokes it: the
    // handshake ends, so not even the probes answer her.
    let mallory = ops.numbered_client_identity("ops-mallory", 2);
    let refused = probe_with(&gw, &server_ca, &mallory).await;
    assert!(refused.is_err(), "a revoked certificate: {refused:?}");

    // A second CA joins the bundle without a list of its own: its clients'
    // status is unknown, and they are refused (fail closed).
    let other = TestCa::new();
    std::fs::write(
        pki.path().join("ops-ca.pem"),
        format!("{}{}", ops.pem(), other.pem()),
    )
    .expect("add a CA");
    let (code, body) = status(alice.post(url(&gw, "/reload")).bearer_auth(ADMIN_TOKEN)).await;
    assert_eq!(code, 200, "{body}");
    let bob = other.numbered_client_identity("ops-bob", 3);
    let refused = probe_with(&gw, &server_ca, &bob).await;
    assert!(refused.is_err(), "a CA no list covers: {refused:?}");

    // The next list revokes alice's too. The reload she asks for re-reads
    // it, and her open connection is refused from its next request on.
    std::fs::write(&crl, ops.crl(&[1, 2])).expect("rewrite the revocation list");
    let (code, body) = status(alice.post(url(&gw, "/reload")).bearer_auth(ADMIN_TOKEN)).await;
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains(r#""reloaded":true"#),
        "a new list is a new config: {body}"
    );
    let (code, body) = status(alice.get(url(&gw, "/metrics")).bearer_auth(ADMIN_TOKEN)).await;
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("no longer accepted"), "{body}");
}

#[test]
fn check_warns_of_a_revocation_list_past_its_next_update() {
    let dir = tempfile::tempdir().expect("dir");
    harness::make_pki(dir.path());
    let ops = TestCa::new();
    std::fs::write(dir.path().join("ops-ca.pem"), ops.pem()).expect("write");
    let yesterday = time::OffsetDateTime::now_utc() - time::Duration::days(1);
    std::fs::write(dir.path().join("stale.pem"), ops.crl_due(&[7], yesterday)).expect("write");
    let config = dir.path().join("chatwarden.yaml");
    let yaml = "admin:\n  addr: 127.0.0.1:1\n  token_env: T\n  tls: {cert: cert.pem, key: key.pem, \
                client_ca: ops-ca.pem, client_crl: stale.pem}\naudit: {path: \"-\", hash_chain: true}\n";
    std::fs::write(&config, yaml).expect("write config");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_chatwarden"))
        .args(["check", "-c"])
        .arg(&config)
        .env("T", "admin-token-0123456789")
        .output()
        .expect("run chatwarden");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "a stale list still loads:\n{stdout}"
    );
    assert!(
        stdout.lines().any(|l| l.starts_with(
            "warning: admin.tls.client_crl: a revocation list was due to be replaced at "
        )),
        "{stdout}"
    );
}

#[test]
fn a_revocation_list_that_cannot_be_used_is_a_config_error() {
    let dir = tempfile::tempdir().expect("dir");
    harness::make_pki(dir.path());
    let ops = TestCa::new();
    std::fs::write(dir.path().join("ops-ca.pem"), ops.pem()).expect("write");
    std::fs::write(dir.path().join("ours.pem"), ops.crl(&[7])).expect("write");
    std::fs::write(dir.path().join("theirs.pem"), TestCa::new().crl(&[7])).expect("write");
    std::fs::write(dir.path().join("a-cert.pem"), ops.pem()).expect("write");
    std::fs::write(
        dir.path().join("garbled.pem"),
        "-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n",
    )
    .expect("write");
    let env = crate::config_files::placeholder_env();
    let load = |tls: &str| {
        let yaml = format!(
            "admin:\n  addr: 127.0.0.1:1\n  tls: {{cert: cert.pem, key: key.pem, {tls}}}\n"
        );
        chatwarden::config::load_str(&yaml, &dir.path().join("chatwarden.yaml"), &env)
    };
    assert!(
        load("client_ca: ops-ca.pem, client_crl: ours.pem").is_ok(),
        "the CA's own list loads"
    );
    for (tls, at, want) in [
        (
            "client_crl: ours.pem",
            "3:51",
            "client_crl without client_ca",
        ),
        (
            "client_ca: ops-ca.pem, client_crl: missing.pem",
            "3:74",
            "cannot read revocation list",
        ),
        (
            "client_ca: ops-ca.pem, client_crl: a-cert.pem",
            "3:74",
            "holds no PEM revocation list",
        ),
        (
            "client_ca: ops-ca.pem, client_crl: garbled.pem",
            "3:74",
            "revocation list 1: ",
        ),
        (
            "client_ca: ops-ca.pem, client_crl: theirs.pem",
            "3:74",
            "revocation list 1 is not signed by a CA in client_ca",
        ),
    ] {
        let errors = match load(tls) {
            Ok(_) => panic!("{tls} should be refused"),
            Err(e) => e.to_string(),
        };
        assert!(
            errors.contains(&format!("chatwarden.yaml:{at}: ")) && errors.contains(want),
            "{tls}: {errors}"
        );
    }
}

#[test]
fn a_client_ca_that_cannot_be_used_is_a_config_error() {
    let dir = tempfile::tempdir().expect("dir");
    harness::make_pki(dir.path());
    std::fs::write(dir.path().join("not-a-cert.pem"), "hello\n").expect("write");
    let env = crate::config_files::placeholder_env();
    for (client_ca, want) in [
        ("missing.pem", "cannot read certificate"),
        ("not-a-cert.pem", "holds no PEM certificate"),
    ] {
        let yaml = format!(
            "admin:\n  addr: 127.0.0.1:1\n  tls: {{cert: cert.pem, key: key.pem, client_ca: {client_ca}}}\n"
        );
        let errors =
            match chatwarden::config::load_str(&yaml, &dir.path().join("chatwarden.yaml"), &env) {
                Ok(_) => panic!("{client_ca} should be refused"),
                Err(e) => e.to_string(),
            };
        assert!(
            errors.contains("chatwarden.yaml:3:50: ") && errors.contains(want),
            "{client_ca}: {errors}"
        );
    }
}

#[tokio::test]
async fn the_admin_listener_has_the_head_deadline_and_caps_of_its_own() {
    use std::time::{Duration, Instant};
    use tokio::io::AsyncReadExt;

    let pki = tempfile::tempdir().expect("dir");
    let ops = TestCa::new();
    let up = EchoUpstream::start().await;
    let server_ca = harness::make_pki(pki.path());
    std::fs::write(pki.path().join("ops-ca.pem"), ops.pem()).expect("write the ops CA");
    let gw = harness::start(
        &format!("{CONFIG}connections: {{head_timeout: 300ms, max_per_client: 2}}\n"),
        &[
            ("UP", up.url()),
            ("PKI", pki.path().display().to_string()),
            ("ADMIN_TOKEN", ADMIN_TOKEN.into()),
        ],
    )
    .await;
    // A new connection for every probe, as a load balancer's.
    let probe = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .tls_built_in_root_certs(false)
        .resolve("localhost", gw.admin)
        .add_root_certificate(
            reqwest::Certificate::from_pem(server_ca.as_bytes()).expect("a CA certificate"),
        )
        .build()
        .expect("client");

    // Two connections that never begin their handshakes fill this
    // client's places on the admin listener…
    let opened = Instant::now();
    let mut stalled = [
        tokio::net::TcpStream::connect(gw.admin)
            .await
            .expect("connect"),
        tokio::net::TcpStream::connect(gw.admin)
            .await
            .expect("connect"),
    ];
    let started = Instant::now();
    while probe.get(url(&gw, "/healthz")).send().await.is_ok() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no cap on the admin listener"
        );
        tokio::task::yield_now().await;
    }
    // …not the proxy's, which counts apart.
    let proxied = gw
        .client()
        .get(gw.url("/contacts"))
        .send()
        .await
        .expect("proxied");
    assert_eq!(proxied.status(), 200);

    // They are cut at the head deadline, and the probe answers again.
    for s in &mut stalled {
        let mut sink = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut sink)).await;
        assert!(read.is_ok(), "a stalled admin handshake was left open");
    }
    assert!(opened.elapsed() >= Duration::from_millis(300));
    let (code, _) = status(probe.get(url(&gw, "/healthz"))).await;
    assert_eq!(code, 200);

    // Counted apart, under names of their own.
    let alice = admin_client(&gw, &server_ca, Some(&ops.client_identity("ops-alice")));
    let (code, metrics) = status(alice.get(url(&gw, "/metrics")).bearer_auth(ADMIN_TOKEN)).await;
    assert_eq!(code, 200);
    for line in [
        "chatwarden_admin_tls_handshakes_failed_total{why=\"timeout\"} 2\n",
        "chatwarden_connections_refused_total{cap=\"max_per_client\"} 0\n",
    ] {
        assert!(metrics.contains(line), "{line}: {metrics}");
    }
    assert!(
        !metrics.contains("chatwarden_admin_connections_refused_total{cap=\"max_per_client\"} 0\n"),
        "the refused probes are counted: {metrics}"
    );
}
