//! HTTPS termination with a certificate made at test time; HTTP/2 and
//! HTTP/1.1 via ALPN.

use crate::harness;
use crate::upstream::EchoUpstream;

/// A gateway with one TLS listener on `${PKI}/cert.pem` and `key.pem`, an
/// admin listener (token `ADMIN_TOKEN`) and one open route to `up`.
pub(crate) const TLS_LISTENER: &str = r#"
listeners:
  - name: tls
    addr: "${LISTEN}"
    tls: {cert: "${PKI}/cert.pem", key: "${PKI}/key.pem"}
admin: {addr: "${ADMIN}", token_env: ADMIN_TOKEN}
upstreams:
  crm: {url: "${UP}"}
routes:
  - {name: contacts, upstream: crm, methods: [GET], path: /contacts, auth: none}
audit: {path: "${AUDIT}"}
"#;

pub(crate) const ADMIN_TOKEN: &str = "tls-test-admin-token-0001";

async fn tls_gateway(up: &EchoUpstream, pki: &std::path::Path) -> harness::TestGateway {
    tls_gateway_with(up, pki, "").await
}

/// [`tls_gateway`] with `extra` YAML appended to its config.
pub(crate) async fn tls_gateway_with(
    up: &EchoUpstream,
    pki: &std::path::Path,
    extra: &str,
) -> harness::TestGateway {
    harness::start(
        &format!("{TLS_LISTENER}{extra}"),
        &[
            ("UP", up.url()),
            ("PKI", pki.display().to_string()),
            ("ADMIN_TOKEN", ADMIN_TOKEN.into()),
        ],
    )
    .await
}

/// A client trusting only `ca_pem` (none if `None`), reaching `localhost`
/// at the gateway; every client is a new TLS handshake.
pub(crate) fn client_trusting(
    ca_pem: Option<&str>,
    gw: &harness::TestGateway,
) -> reqwest::ClientBuilder {
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .tls_built_in_root_certs(false)
        .resolve("localhost", gw.addr);
    if let Some(pem) = ca_pem {
        builder = builder.add_root_certificate(
            reqwest::Certificate::from_pem(pem.as_bytes()).expect("a CA certificate"),
        );
    }
    builder
}

#[tokio::test]
async fn terminates_tls_with_http2_and_http1() {
    let up = EchoUpstream::start().await;
    let pki_dir = tempfile::tempdir().expect("dir");
    let ca_pem = harness::make_pki(pki_dir.path());
    let gw = tls_gateway(&up, pki_dir.path()).await;
    let url = format!("https://localhost:{}/contacts", gw.addr.port());
    for (h2, expected) in [
        (true, http::Version::HTTP_2),
        (false, http::Version::HTTP_11),
    ] {
        let builder = client_trusting(Some(&ca_pem), &gw);
        let builder = if h2 { builder } else { builder.http1_only() };
        let client = builder.build().expect("client");
        let resp = client
            .get(&url)
            .send()
            .await
            .expect("TLS request should succeed");
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.version(),
            expected,
            "ALPN should negotiate {expected:?}"
        );
    }
    let seen = up.seen();
    assert_eq!(seen.len(), 2, "both TLS requests reach the upstream");
    assert_eq!(
        seen[0]
            .headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok()),
        Some("https"),
        "the upstream is told the client used TLS"
    );

    // A client that does not trust the CA fails the handshake: the
    // certificate served is the one configured, not some default.
    let untrusting = client_trusting(None, &gw).build().expect("client");
    assert!(
        untrusting.get(&url).send().await.is_err(),
        "an unknown CA must fail verification"
    );
}

#[tokio::test]
async fn upstream_https_is_verified_against_the_configured_ca() {
    let pki = tempfile::tempdir().expect("dir");
    harness::make_pki(pki.path());
    let up = EchoUpstream::start_tls(pki.path()).await;
    let yaml = r#"
listeners:
  - {name: main, addr: "${LISTEN}"}
admin: {addr: "${ADMIN}"}
upstreams:
  private_crm:
    url: "https://127.0.0.1:${PORT}"
    ca_file: "${PKI}/ca.pem"
    headers: {api_access_token: "private-crm-secret-0001"}
  unverifiable:
    url: "https://127.0.0.1:${PORT}"
routes:
  - {name: trusted, upstream: private_crm, methods: [GET], path: /contacts, auth: none}
  - {name: untrusted, upstream: unverifiable, methods: [GET], path: /other, auth: none}
audit: {path: "${AUDIT}"}
"#;
    let gw = harness::start(
        yaml,
        &[
            ("PORT", up.addr.port().to_string()),
            ("PKI", pki.path().display().to_string()),
        ],
    )
    .await;
    let client = gw.client();
    let resp = client
        .get(gw.url("/contacts"))
        .send()
        .await
        .expect("request");
    assert_eq!(
        resp.status(),
        200,
        "an upstream whose certificate chains to ca_file is reachable"
    );
    assert_eq!(up.count(), 1);
    assert_eq!(
        up.seen()[0]
            .headers
            .get("api_access_token")
            .and_then(|v| v.to_str().ok()),
        Some("private-crm-secret-0001"),
        "the credential travels inside TLS"
    );

    let resp = client.get(gw.url("/other")).send().await.expect("request");
    assert_eq!(
        resp.status(),
        502,
        "a certificate the system roots do not trust must fail closed"
    );
    assert_eq!(
        up.count(),
        1,
        "nothing is sent over an unverified connection"
    );
}

/// A certificate renewed in place (same paths, same YAML: what cert-manager
/// does to a mounted secret) is served to new connections after a reload,
/// without a restart; the reload is a new config version, on record.
#[tokio::test]
async fn a_certificate_renewed_in_place_is_served_after_a_reload() {
    let up = EchoUpstream::start().await;
    let pki_dir = tempfile::tempdir().expect("dir");
    let old_ca = harness::make_pki(pki_dir.path());
    let gw = tls_gateway(&up, pki_dir.path()).await;
    let url = format!("https://localhost:{}/contacts", gw.addr.port());
    let trusting = |ca_pem: &str| client_trusting(Some(ca_pem), &gw).build().expect("client");
    let new_ca = harness::TestCa::new();
    let new_ca_pem = new_ca.pem();
    let status = |client: reqwest::Client| {
        let url = url.clone();
        async move { client.get(&url).send().await.map(|r| r.status().as_u16()) }
    };
    assert_eq!(status(trusting(&old_ca)).await.ok(), Some(200));
    assert!(
        status(trusting(&new_ca_pem)).await.is_err(),
        "before the renewal, the new CA's clients do not trust the gateway"
    );

    new_ca.issue(
        &["localhost", "127.0.0.1"],
        &pki_dir.path().join("cert.pem"),
        &pki_dir.path().join("key.pem"),
    );
    let body = gw.reload(ADMIN_TOKEN).await;
    assert_eq!(
        body["reloaded"], true,
        "renewed certificate files are a change to apply, not `unchanged`: {body}"
    );
    assert_ne!(body["from"], body["version"], "a new version: {body}");

    assert_eq!(
        status(trusting(&new_ca_pem)).await.ok(),
        Some(200),
        "new connections get the renewed certificate"
    );
    assert!(
        status(trusting(&old_ca)).await.is_err(),
        "and no longer the old one"
    );

    // A second reload with nothing renewed changes nothing.
    let body = gw.reload(ADMIN_TOKEN).await;
    assert_eq!(body["reloaded"], false, "{body}");
}

/// An HTTP/2 client that cancels a request (a browser navigating away
/// resets the stream) went away like an HTTP/1 client that hangs up: its
/// request is audited as allowed, nothing sent, and says so.
#[tokio::test]
async fn an_http2_request_the_client_cancels_is_audited_as_such() {
    let up = EchoUpstream::start().await;
    let pki_dir = tempfile::tempdir().expect("dir");
    let ca_pem = harness::make_pki(pki_dir.path());
    let yaml = TLS_LISTENER.replace(
        "routes:\n",
        "routes:\n  - {name: abandoned, upstream: crm, methods: [GET], path: /hang/long, auth: none}\n",
    );
    let gw = harness::start(
        &yaml,
        &[
            ("UP", up.url()),
            ("PKI", pki_dir.path().display().to_string()),
            ("ADMIN_TOKEN", ADMIN_TOKEN.into()),
        ],
    )
    .await;
    let client = client_trusting(Some(&ca_pem), &gw).build().expect("client");
    let url = format!("https://localhost:{}/hang/long", gw.addr.port());
    let pending = tokio::spawn({
        let client = client.clone();
        async move { client.get(&url).send().await.map(|r| r.version()) }
    });
    up.wait_for(1).await;
    // Dropping the response future resets the stream.
    pending.abort();
    crate::proxy::assert_client_went_away(&gw, "abandoned").await;
    // The client goes on: its next request is served over HTTP/2.
    let resp = client
        .get(format!("https://localhost:{}/contacts", gw.addr.port()))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
}
