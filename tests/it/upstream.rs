//! A real HTTP upstream that records what reached it, so tests assert on
//! the upstream side (a denied request never arrived; headers were
//! stripped and injected; the forwarded path is the normalized one).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use pingora_core::tls::{CertificateDer, ServerConfig, TlsAcceptor};

#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub headers: http::HeaderMap,
    pub body: Bytes,
    /// The body arrived whole (its end was seen, not a dropped connection).
    pub complete: bool,
}

#[derive(Clone)]
pub struct EchoUpstream {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl EchoUpstream {
    /// Start on port 0. Every request is recorded and answered with a JSON
    /// echo. Special paths: `/leak` echoes the injected credential header
    /// back as a response header and sets two cookies; `/dump` answers with
    /// a debug dump of the request headers, the credential in it 3,000
    /// times (about 200 KB, so it reaches the gateway in many pieces);
    /// `/gzip` answers with a `Content-Encoding: gzip` body; `/hang` never
    /// answers. A request with an `Origin` gets the answer of a permissive
    /// CORS middleware (any origin, with credentials).
    pub async fn start() -> Self {
        Self::serve(None).await
    }

    /// The same upstream behind TLS, with the `cert.pem`/`key.pem` that
    /// `harness::make_pki` wrote into `pki`.
    pub async fn start_tls(pki: &std::path::Path) -> Self {
        let cert_pem = std::fs::read(pki.join("cert.pem")).expect("cert");
        let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut cert_pem.as_slice())
            .collect::<Result<_, _>>()
            .expect("parse cert");
        let key_pem = std::fs::read(pki.join("key.pem")).expect("key");
        let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
            .expect("parse key")
            .expect("a key");
        pingora_core::tls::install_default_crypto_provider();
        let config = ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("server config");
        Self::serve(Some(TlsAcceptor::from(Arc::new(config)))).await
    }

    async fn serve(tls: Option<TlsAcceptor>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let log = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let log = log.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| handle(req, log.clone()));
                    let http = hyper::server::conn::http1::Builder::new();
                    match tls {
                        Some(acceptor) => {
                            if let Ok(s) = acceptor.accept(stream).await {
                                let _ = http.serve_connection(TokioIo::new(s), svc).await;
                            }
                        }
                        None => {
                            let _ = http.serve_connection(TokioIo::new(stream), svc).await;
                        }
                    }
                });
            }
        });
        EchoUpstream { addr, seen }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }

    pub fn count(&self) -> usize {
        self.seen.lock().expect("lock").len()
    }

    /// Waits (bounded) until `n` requests have arrived, answered or not.
    pub async fn wait_for(&self, n: usize) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while self.count() < n {
            assert!(
                std::time::Instant::now() < deadline,
                "{n} request(s) should have reached the upstream, {} did",
                self.count()
            );
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    }
}

async fn handle(
    req: Request<Incoming>,
    log: Arc<Mutex<Vec<Seen>>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = req.method().to_string();
    let target = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let headers = req.headers().clone();
    let collected = req.into_body().collect().await.map(|b| b.to_bytes());
    let complete = collected.is_ok();
    log.lock().expect("lock").push(Seen {
        method: method.clone(),
        target: target.clone(),
        headers: headers.clone(),
        body: collected.unwrap_or_default(),
        complete,
    });
    if target.starts_with("/hang") {
        std::future::pending::<()>().await;
    }
    let mut builder = Response::builder()
        .status(200)
        .header("content-type", "application/json");
    if target.starts_with("/leak") {
        if let Some(v) = headers.get("x-api-key") {
            builder = builder.header("x-debug-echo", v.clone());
        }
        builder = builder
            .header("set-cookie", "_crm_session=for-the-gateways-key; Path=/")
            .header("set-cookie", "cw_session=fixated; Path=/");
    }
    // A permissive CORS middleware, as some frameworks' defaults are: any
    // origin may read, with credentials. The gateway must not pass it on.
    if let Some(origin) = headers.get("origin") {
        builder = builder
            .header("access-control-allow-origin", origin.clone())
            .header("access-control-allow-credentials", "true")
            .header(
                "access-control-allow-methods",
                "GET, POST, PUT, PATCH, DELETE",
            )
            .header("access-control-allow-headers", "*")
            .header("access-control-expose-headers", "*")
            .header("vary", "Accept-Encoding");
    }
    let mut body = serde_json::json!({"method": method, "target": target}).to_string();
    if target.starts_with("/dump") {
        let key = headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let rows: Vec<String> = (0..3000)
            .map(|i| {
                format!(
                    r#"{{"n":{i},"pad":"{}","x-api-key":"{key}"}}"#,
                    "p".repeat(i % 7)
                )
            })
            .collect();
        body = format!(r#"{{"debug":[{}]}}"#, rows.join(","));
    }
    if target.starts_with("/gzip") {
        builder = builder.header("content-encoding", "gzip");
    }
    Ok(builder
        .body(Full::new(Bytes::from(body)))
        .expect("response"))
}
