//! A real identity provider stand-in: a JWKS endpoint on port 0 whose key
//! set can be rotated mid-test, and token minting with its keys.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use chatwarden::auth::{generate_dev_key, mint, MintKey};
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

pub const ISSUER: &str = "https://idp.acme-retail.test/";
pub const AUDIENCE: &str = "chatwarden";

pub struct Idp {
    pub addr: SocketAddr,
    pub key: Mutex<MintKey>,
    jwks: Arc<Mutex<String>>,
    hits: Arc<AtomicUsize>,
}

impl Idp {
    pub async fn start() -> Arc<Idp> {
        let (key, jwks) = generate_dev_key().expect("dev key");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let jwks = Arc::new(Mutex::new(jwks));
        let hits = Arc::new(AtomicUsize::new(0));
        let (served, counted) = (jwks.clone(), hits.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (served, counted) = (served.clone(), counted.clone());
                tokio::spawn(async move {
                    let svc =
                        hyper::service::service_fn(move |_req: Request<hyper::body::Incoming>| {
                            counted.fetch_add(1, Ordering::SeqCst);
                            let body = served.lock().expect("lock").clone();
                            async move {
                                Ok::<_, Infallible>(
                                    Response::builder()
                                        .header("content-type", "application/json")
                                        .header("cache-control", "max-age=600")
                                        .body(Full::new(Bytes::from(body)))
                                        .expect("response"),
                                )
                            }
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Arc::new(Idp {
            addr,
            key: Mutex::new(key),
            jwks,
            hits,
        })
    }

    pub fn jwks_url(&self) -> String {
        format!("http://{}/.well-known/jwks.json", self.addr)
    }

    /// Rotate: a new signing key; the JWKS now publishes only its public half.
    pub fn rotate(&self) {
        let (key, jwks) = generate_dev_key().expect("dev key");
        *self.key.lock().expect("lock") = key;
        *self.jwks.lock().expect("lock") = jwks;
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// A token for `sub` with `roles`, valid for an hour, MFA done now,
    /// with `extra` claims merged over the defaults.
    pub fn token(&self, sub: &str, roles: &[&str], extra: Value) -> String {
        let now = jiff::Timestamp::now().as_second();
        let mut claims = json!({
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": sub,
            "roles": roles,
            "iat": now,
            "exp": now + 3600,
            "auth_time": now,
            "amr": ["pwd", "otp"],
            "jti": format!("jti-{sub}-{now}"),
        });
        if let (Some(base), Some(more)) = (claims.as_object_mut(), extra.as_object()) {
            for (k, v) in more {
                base.insert(k.clone(), v.clone());
            }
        }
        mint(&claims, &self.key.lock().expect("lock")).expect("mint")
    }
}
