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

#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

#[derive(Clone)]
pub struct EchoUpstream {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl EchoUpstream {
    /// Start on port 0. Every request is recorded and answered with a JSON
    /// echo. Special paths: `/leak` echoes the injected credential header
    /// back as a response header; `/hang` never answers.
    pub async fn start() -> Self {
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
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| handle(req, log.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
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
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    log.lock().expect("lock").push(Seen {
        method: method.clone(),
        target: target.clone(),
        headers: headers.clone(),
        body,
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
    }
    let body = serde_json::json!({"method": method, "target": target}).to_string();
    Ok(builder
        .body(Full::new(Bytes::from(body)))
        .expect("response"))
}
