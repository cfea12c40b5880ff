//! Slow and greedy clients at the socket: a request head that stalls is
//! cut at `connections.head_timeout` (pingora alone times out each read,
//! so a head sent a byte at a time would hold the connection forever), and
//! connections over `connections.max` / `max_per_client` are closed on
//! arrival.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{self, TestGateway};
use crate::proxy;
use crate::tls;
use crate::upstream::EchoUpstream;

/// Far above any deadline here: a guard against a hang, never a measure.
const GUARD: Duration = Duration::from_secs(15);

async fn start(connections: &str, trusted: &str) -> (TestGateway, EchoUpstream) {
    let up = EchoUpstream::start().await;
    let yaml = proxy::config().replace(
        "network:\n  trusted_proxies: [10.0.0.0/8]\n",
        &format!("network:\n  trusted_proxies: [{trusted}]\nconnections: {connections}\n"),
    );
    let gw = harness::start(
        &yaml,
        &[
            ("UP_CRM", up.url()),
            ("UP_DEAD", format!("http://{}", harness::free_addr())),
            ("CRM_KEY", proxy::SECRET.to_string()),
        ],
    )
    .await;
    (gw, up)
}

/// Reads one response (head and a `Content-Length` body) off `s`; its status.
async fn read_response(s: &mut TcpStream) -> u16 {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = tokio::time::timeout(GUARD, s.read(&mut chunk))
            .await
            .expect("a response in time")
            .expect("read");
        assert!(
            n > 0,
            "closed before a response: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("responses here have a length: {head}"));
    while buf.len() < head_end + length {
        let n = s.read(&mut chunk).await.expect("read body");
        assert!(n > 0, "closed inside a body");
        buf.extend_from_slice(&chunk[..n]);
    }
    harness::status_of(&head)
}

/// Waits until the gateway closes `s`; how long that took.
async fn closed_within(s: &mut TcpStream) -> Duration {
    let started = Instant::now();
    let mut sink = [0u8; 1024];
    loop {
        match tokio::time::timeout(GUARD, s.read(&mut sink)).await {
            Err(_) => panic!("the gateway left a stalled connection open for {GUARD:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => {}
        }
    }
}

const GET: &[u8] = b"GET /api/v1/accounts/1/contacts HTTP/1.1\r\nHost: x\r\n\r\n";

#[tokio::test]
async fn a_stalled_request_head_is_cut_at_the_deadline_but_idle_and_body_waits_are_not() {
    let (gw, up) = start("{head_timeout: 400ms}", "10.0.0.0/8").await;

    // Half a head, then nothing.
    let mut stalled = TcpStream::connect(gw.addr).await.expect("connect");
    stalled
        .write_all(b"GET /api/v1/accounts/1/contacts HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    let took = closed_within(&mut stalled).await;
    assert!(
        took >= Duration::from_millis(300),
        "closed before the deadline: {took:?}"
    );

    // A byte every 50ms: each read makes progress, so pingora's per-read
    // timeout would never fire; the head deadline does.
    let mut dripping = TcpStream::connect(gw.addr).await.expect("connect");
    dripping
        .write_all(b"GET /api/v1/accounts/1/contacts HTTP/1.1\r\n")
        .await
        .expect("write");
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let mut cut = false;
    while started.elapsed() < GUARD {
        tick.tick().await;
        if dripping.write_all(b"x").await.is_err() {
            cut = true;
            break;
        }
        let mut probe = [0u8; 64];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(1), dripping.read(&mut probe)).await
        {
            cut = true;
            break;
        }
    }
    assert!(cut, "a head dripped a byte at a time was never cut");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "cut before its deadline: {:?}",
        started.elapsed()
    );

    // Keep-alive: the wait for the next request is not a head, and a body
    // that comes after a pause is not under the head deadline.
    let mut steady = TcpStream::connect(gw.addr).await.expect("connect");
    steady.write_all(GET).await.expect("write");
    assert_eq!(read_response(&mut steady).await, 200);
    tokio::time::sleep(Duration::from_millis(900)).await;
    steady
        .write_all(
            b"PATCH /api/v1/accounts/1/contacts/7 HTTP/1.1\r\nHost: x\r\n\
              Content-Type: application/json\r\nContent-Length: 13\r\n\r\n",
        )
        .await
        .expect("write head");
    tokio::time::sleep(Duration::from_millis(900)).await;
    steady
        .write_all(b"{\"name\":\"A\"}\n")
        .await
        .expect("write body");
    assert_eq!(
        read_response(&mut steady).await,
        200,
        "a slow body is not a slow head"
    );
    steady.write_all(GET).await.expect("write");
    assert_eq!(read_response(&mut steady).await, 200);
    // The next head on the same connection is timed afresh.
    steady.write_all(b"GET /api/v1/acc").await.expect("write");
    closed_within(&mut steady).await;

    assert_eq!(
        up.count(),
        3,
        "only the three whole requests reached the upstream"
    );
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains("chatwarden_request_head_timeouts_total 3\n"),
        "every slow head is counted: {metrics}"
    );
}

/// `chatwarden_connections_open` from `/metrics`.
async fn open_connections(gw: &TestGateway) -> u64 {
    let metrics = gw.metrics().await;
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("chatwarden_connections_open "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no open-connections gauge: {metrics}"))
}

/// Polls until the gateway has seen `n` connections open (a close reaches
/// it asynchronously).
async fn until_open(gw: &TestGateway, n: u64) {
    let started = Instant::now();
    while open_connections(gw).await != n {
        assert!(started.elapsed() < GUARD, "never saw {n} open connections");
        tokio::task::yield_now().await;
    }
}

async fn served(gw: &TestGateway) -> TcpStream {
    let mut s = TcpStream::connect(gw.addr).await.expect("connect");
    s.write_all(GET).await.expect("write");
    assert_eq!(read_response(&mut s).await, 200);
    s
}

/// What a new connection gets for a request before the gateway closes it.
async fn answer_to_one_more(gw: &TestGateway) -> Vec<u8> {
    let mut s = TcpStream::connect(gw.addr)
        .await
        .expect("the kernel accepts it");
    let _ = s.write_all(GET).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(GUARD, s.read_to_end(&mut out)).await;
    out
}

#[tokio::test]
async fn connections_over_the_per_client_cap_are_closed_on_arrival() {
    let (gw, up) = start("{max_per_client: 2}", "10.0.0.0/8").await;
    let first = served(&gw).await;
    let _second = served(&gw).await;

    let out = answer_to_one_more(&gw).await;
    assert!(
        out.is_empty(),
        "a connection over the cap gets nothing: {out:?}"
    );
    assert_eq!(up.count(), 2, "and its request never reaches the upstream");

    let metrics = gw.metrics().await;
    assert!(
        metrics.contains("chatwarden_connections_refused_total{cap=\"max_per_client\"} 1\n"),
        "{metrics}"
    );
    assert_eq!(open_connections(&gw).await, 2);

    drop(first);
    until_open(&gw, 1).await;
    let _again = served(&gw).await;
    assert_eq!(up.count(), 3, "a closed connection frees its place");
}

#[tokio::test]
async fn trusted_proxies_are_exempt_from_the_per_client_cap_but_not_from_the_total() {
    let (gw, _up) = start("{max: 3, max_per_client: 1}", "127.0.0.1/32").await;
    let _held = [served(&gw).await, served(&gw).await, served(&gw).await];

    let out = answer_to_one_more(&gw).await;
    assert!(
        out.is_empty(),
        "the fourth connection is over `max`: {out:?}"
    );
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains("chatwarden_connections_refused_total{cap=\"max\"} 1\n")
            && metrics.contains("chatwarden_connections_refused_total{cap=\"max_per_client\"} 0\n"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_refusal_that_leaves_a_request_body_unread_closes_the_connection() {
    // The head deadline counts on it: no request body is ever drained
    // between one request and the next head, where its bytes would pass for
    // that head's. pingora closes a connection whose response began before
    // its request body was read whole, and says so.
    let (gw, up) = start("{head_timeout: 10s}", "10.0.0.0/8").await;
    let mut s = TcpStream::connect(gw.addr).await.expect("connect");
    s.write_all(
        b"POST /api/v1/accounts/1/nowhere HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789",
    )
    .await
    .expect("write");
    let mut out = Vec::new();
    tokio::time::timeout(GUARD, s.read_to_end(&mut out))
        .await
        .expect("closed in time")
        .expect("read");
    let text = String::from_utf8_lossy(&out).to_ascii_lowercase();
    assert_eq!(harness::status_of(&text), 404, "{text}");
    assert!(text.contains("\r\nconnection: close\r\n"), "{text}");
    assert_eq!(text.matches("http/1.1 ").count(), 1, "{text}");

    // Without a body the connection is kept.
    let mut kept = TcpStream::connect(gw.addr).await.expect("connect");
    kept.write_all(b"GET /api/v1/accounts/1/nowhere HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    assert_eq!(read_response(&mut kept).await, 404);
    kept.write_all(GET).await.expect("write");
    assert_eq!(read_response(&mut kept).await, 200);
    assert_eq!(up.count(), 1);
}

#[tokio::test]
async fn over_tls_a_stalled_http1_head_is_cut_and_an_idle_http2_connection_is_not() {
    use std::sync::Arc;
    use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
    use tokio_rustls::rustls::{ClientConfig, RootCertStore};

    let up = EchoUpstream::start().await;
    let pki = tempfile::tempdir().expect("dir");
    let ca_pem = harness::make_pki(pki.path());
    let gw = tls::tls_gateway_with(&up, pki.path(), "connections: {head_timeout: 300ms}\n").await;

    // HTTP/1.1 over TLS: half a head, then nothing.
    let mut roots = RootCertStore::empty();
    let ca: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut ca_pem.as_bytes())
        .collect::<Result<_, _>>()
        .expect("CA PEM");
    roots.add_parsable_certificates(ca);
    let mut config = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = TcpStream::connect(gw.addr).await.expect("connect");
    let name = ServerName::try_from("localhost").expect("name");
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("handshake");
    tls.write_all(b"GET /contacts HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .expect("write");
    let started = Instant::now();
    let mut sink = Vec::new();
    let read = tokio::time::timeout(GUARD, tls.read_to_end(&mut sink)).await;
    assert!(read.is_ok(), "a stalled head over TLS was left open");
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert!(sink.is_empty(), "no answer to half a head: {sink:?}");

    // HTTP/2: one request, then the connection idles past the deadline;
    // its framing is not a head, so nothing is cut.
    let client = tls::client_trusting(Some(&ca_pem), &gw)
        .build()
        .expect("client");
    let url = format!("https://localhost:{}/contacts", gw.addr.port());
    let first = client.get(&url).send().await.expect("h2 request");
    assert_eq!(first.version(), http::Version::HTTP_2);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        client.get(&url).send().await.expect("h2 again").status(),
        200
    );

    let metrics = gw.metrics_as(Some(tls::ADMIN_TOKEN)).await;
    assert!(
        metrics.contains("chatwarden_request_head_timeouts_total 1\n"),
        "only the HTTP/1.1 head timed out: {metrics}"
    );
}

#[tokio::test]
async fn a_reload_applies_new_caps_to_new_connections() {
    let (gw, _up) = start("{max_per_client: 1}", "10.0.0.0/8").await;
    let _held = served(&gw).await;
    assert!(
        answer_to_one_more(&gw).await.is_empty(),
        "over the cap of 1"
    );

    let path = gw.dir.path().join("chatwarden.yaml");
    let text = std::fs::read_to_string(&path).expect("config");
    std::fs::write(
        &path,
        text.replace(
            "connections: {max_per_client: 1}",
            "connections: {max_per_client: 2}",
        ),
    )
    .expect("write");
    let resp = gw
        .client()
        .post(format!("http://{}/reload", gw.admin))
        .send()
        .await
        .expect("reload");
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["reloaded"], true, "{body}");

    let _second = served(&gw).await;
    assert!(
        answer_to_one_more(&gw).await.is_empty(),
        "over the new cap of 2"
    );
}

#[tokio::test]
async fn over_tls_the_caps_come_before_the_handshake_and_a_stalled_one_is_cut() {
    let up = EchoUpstream::start().await;
    let pki = tempfile::tempdir().expect("dir");
    let ca_pem = harness::make_pki(pki.path());
    let gw = tls::tls_gateway_with(
        &up,
        pki.path(),
        "connections: {head_timeout: 300ms, max_per_client: 2}\n",
    )
    .await;
    let metric = |name: &'static str| {
        let gw = &gw;
        async move {
            let metrics = gw.metrics_as(Some(tls::ADMIN_TOKEN)).await;
            metrics
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or_else(|| panic!("no {name} in {metrics}"))
        }
    };

    // Two connections that never begin their handshakes hold both of this
    // client's places.
    let opened = Instant::now();
    let mut stalled = [
        TcpStream::connect(gw.addr).await.expect("connect"),
        TcpStream::connect(gw.addr).await.expect("connect"),
    ];
    let started = Instant::now();
    while metric("chatwarden_connections_open ").await != 2 {
        assert!(
            started.elapsed() < GUARD,
            "the stalled handshakes were never counted"
        );
        tokio::task::yield_now().await;
    }
    // So a third gets no handshake at all.
    let client = tls::client_trusting(Some(&ca_pem), &gw)
        .build()
        .expect("client");
    let url = format!("https://localhost:{}/contacts", gw.addr.port());
    assert!(client.get(&url).send().await.is_err(), "over the cap");
    assert_eq!(
        metric("chatwarden_connections_refused_total{cap=\"max_per_client\"} ").await,
        1
    );

    // The stalled handshakes are cut at the head deadline, not pingora's 60 s.
    for s in &mut stalled {
        closed_within(s).await;
        let took = opened.elapsed();
        assert!(took >= Duration::from_millis(300), "{took:?}");
    }
    // Bytes that are not TLS end the handshake at once.
    let mut plain = TcpStream::connect(gw.addr).await.expect("connect");
    plain.write_all(GET).await.expect("write");
    closed_within(&mut plain).await;
    assert_eq!(
        metric("chatwarden_tls_handshakes_failed_total{why=\"timeout\"} ").await,
        2
    );
    assert_eq!(
        metric("chatwarden_tls_handshakes_failed_total{why=\"error\"} ").await,
        1
    );
    // (The harness's check that the port listens closed one.)
    assert!(metric("chatwarden_tls_handshakes_failed_total{why=\"closed\"} ").await >= 1);

    // With the places free again, a client is served.
    let client = tls::client_trusting(Some(&ca_pem), &gw)
        .build()
        .expect("client");
    assert_eq!(client.get(&url).send().await.expect("served").status(), 200);
    assert_eq!(up.count(), 1);
}
