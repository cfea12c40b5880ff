//! The few pieces of HTTP/1.1 serving the demo upstreams share: an accept
//! loop, a request with its body already read, and JSON responses.
//!
//! Handlers are plain synchronous functions from [`Request`] to
//! [`Response`]: the demo state lives in memory, so nothing on the request
//! path needs to await, and handlers stay testable without sockets.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use percent_encoding::percent_decode_str;
use serde_json::Value;
use tokio::net::TcpListener;

/// Request bodies above this are refused: the demo APIs only take small JSON
/// documents, and an unbounded read would let one client exhaust memory.
pub(crate) const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The response type every demo handler returns.
pub(crate) type Response = http::Response<Full<Bytes>>;

/// One request, with its body fully read and its query string decoded.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub(crate) method: Method,
    /// The path exactly as sent, without the query string.
    pub(crate) path: String,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    query: Vec<(String, String)>,
}

impl Request {
    /// Builds a request from its parts; the query string is decoded here.
    pub(crate) fn new(
        method: Method,
        path_and_query: &str,
        headers: HeaderMap,
        body: Bytes,
    ) -> Self {
        let (path, query) = match path_and_query.split_once('?') {
            Some((path, query)) => (path, parse_query(query)),
            None => (path_and_query, Vec::new()),
        };
        Request {
            method,
            path: path.to_owned(),
            headers,
            body,
            query,
        }
    }

    /// The first value of query parameter `name`.
    pub(crate) fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// Every value of query parameter `name`, also accepting Rails' `name[]`
    /// spelling for arrays (Chatwoot clients send `labels[]=vip`).
    pub(crate) fn query_all(&self, name: &str) -> Vec<&str> {
        let array_name = format!("{name}[]");
        self.query
            .iter()
            .filter(|(key, _)| *key == name || *key == array_name)
            .map(|(_, value)| value.as_str())
            .collect()
    }

    /// A header's value, if present and visible ASCII.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The path split on `/`, without the empty segments produced by the
    /// leading slash or a trailing one.
    pub(crate) fn segments(&self) -> Vec<&str> {
        self.path.split('/').filter(|s| !s.is_empty()).collect()
    }

    /// The body parsed as JSON.
    pub(crate) fn json(&self) -> Result<Value, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
}

/// Serves HTTP/1.1 on `listener` with `handler` until this future is
/// dropped. Each connection runs in its own task, so a slow or broken
/// client never holds up the others, and a failed accept never ends the loop.
pub(crate) async fn serve<H>(listener: TcpListener, handler: H)
where
    H: Fn(&Request) -> Response + Send + Sync + 'static,
{
    serve_upgrading(listener, handler, None).await;
}

/// Takes a request that asks to upgrade (a WebSocket handshake) before its
/// body is read: `Some` is the answer (a `101` after which the hook owns
/// the connection), `None` leaves the request to the handler.
pub(crate) type UpgradeHook =
    Arc<dyn Fn(&mut http::Request<hyper::body::Incoming>) -> Option<Response> + Send + Sync>;

/// [`serve`], with `upgrade` offered every request first.
pub(crate) async fn serve_upgrading<H>(
    listener: TcpListener,
    handler: H,
    upgrade: Option<UpgradeHook>,
) where
    H: Fn(&Request) -> Response + Send + Sync + 'static,
{
    let handler = Arc::new(handler);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _peer)) => stream,
            Err(error) => {
                // Accept fails transiently (EMFILE, ECONNABORTED); backing
                // off briefly keeps a full fd table from becoming a busy loop.
                tracing::warn!(%error, "demo upstream: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let handler = Arc::clone(&handler);
        let upgrade = upgrade.clone();
        tokio::spawn(async move {
            let service = service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
                let handler = Arc::clone(&handler);
                let upgraded = upgrade.as_ref().and_then(|hook| hook(&mut req));
                async move {
                    Ok::<_, Infallible>(match upgraded {
                        Some(answer) => answer,
                        None => read_and_handle(req, handler.as_ref()).await,
                    })
                }
            });
            if let Err(error) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await
            {
                tracing::debug!(%error, "demo upstream: connection ended with an error");
            }
        });
    }
}

/// A JSON response with `status`.
pub(crate) fn json(status: StatusCode, body: &Value) -> Response {
    // Serializing a `Value` cannot fail: its keys are always strings.
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut response = http::Response::new(Full::new(Bytes::from(bytes)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}

/// A response with `status` and no body.
pub(crate) fn empty(status: StatusCode) -> Response {
    let mut response = http::Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}

/// Decodes an `application/x-www-form-urlencoded` query string. Pairs that
/// are not valid UTF-8 after decoding are kept lossily: the demo only ever
/// compares them with ASCII values.
pub(crate) fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode_component(key), decode_component(value))
        })
        .collect()
}

async fn read_and_handle<H>(req: http::Request<hyper::body::Incoming>, handler: &H) -> Response
where
    H: Fn(&Request) -> Response,
{
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return json(
                StatusCode::PAYLOAD_TOO_LARGE,
                &serde_json::json!({ "error": "request body too large or unreadable" }),
            )
        }
    };
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|pq| pq.as_str())
        .unwrap_or("/");
    handler(&Request::new(
        parts.method,
        path_and_query,
        parts.headers,
        body,
    ))
}

fn decode_component(raw: &str) -> String {
    let spaced = raw.replace('+', " ");
    percent_decode_str(&spaced).decode_utf8_lossy().into_owned()
}

/// A deliberately dumb HTTP/1.1 client for tests: it writes one request with
/// `Connection: close` and reads to EOF, so tests exercise the real server
/// without depending on an HTTP client crate.
#[cfg(test)]
pub(crate) mod test_client {
    use std::net::SocketAddr;

    use serde_json::Value;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// What came back: status, raw header block and body.
    #[derive(Debug)]
    pub(crate) struct Reply {
        pub(crate) status: u16,
        pub(crate) head: String,
        pub(crate) body: Vec<u8>,
    }

    impl Reply {
        pub(crate) fn json(&self) -> Value {
            serde_json::from_slice(&self.body).unwrap_or_else(|e| {
                panic!(
                    "body should be JSON ({e}): {}",
                    String::from_utf8_lossy(&self.body)
                )
            })
        }
    }

    /// Binds `127.0.0.1:0`, starts `serve` on it and returns the address.
    /// The server task lives as long as the test's runtime.
    pub(crate) async fn start<F, Fut>(serve: F) -> SocketAddr
    where
        F: FnOnce(TcpListener) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding a loopback port should succeed");
        let addr = listener
            .local_addr()
            .expect("a bound listener should have an address");
        tokio::spawn(serve(listener));
        addr
    }

    /// Sends `method target` with `headers` (name, value) and `body`.
    pub(crate) async fn send(
        addr: SocketAddr,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Reply {
        let mut request = format!(
            "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        let mut stream = TcpStream::connect(addr)
            .await
            .expect("the demo upstream should accept connections");
        stream
            .write_all(request.as_bytes())
            .await
            .expect("writing the request head should succeed");
        stream
            .write_all(body)
            .await
            .expect("writing the request body should succeed");
        let mut raw = Vec::new();
        stream
            .read_to_end(&mut raw)
            .await
            .expect("reading the response should succeed");
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("the response should have a header block");
        let head = String::from_utf8_lossy(&raw[..split]).into_owned();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .expect("the status line should carry a numeric code");
        Reply {
            status,
            head,
            body: raw[split + 4..].to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_is_percent_and_plus_decoded() {
        let query = parse_query("q=Anna+M%C3%BCller&page=2&flag&labels%5B%5D=vip");
        assert_eq!(
            query,
            vec![
                ("q".to_owned(), "Anna Müller".to_owned()),
                ("page".to_owned(), "2".to_owned()),
                ("flag".to_owned(), String::new()),
                ("labels[]".to_owned(), "vip".to_owned()),
            ],
            "percent escapes and '+' should decode, a bare key should get an empty value"
        );
    }

    #[test]
    fn request_splits_path_from_query_and_reads_arrays() {
        let req = Request::new(
            Method::GET,
            "/api/v1/accounts/1/conversations/?labels[]=vip&labels=confidential&page=3",
            HeaderMap::new(),
            Bytes::new(),
        );
        assert_eq!(req.path, "/api/v1/accounts/1/conversations/");
        assert_eq!(
            req.segments(),
            vec!["api", "v1", "accounts", "1", "conversations"],
            "empty segments from leading and trailing slashes should be dropped"
        );
        assert_eq!(req.query("page"), Some("3"));
        assert_eq!(
            req.query_all("labels"),
            vec!["vip", "confidential"],
            "both `labels[]` and `labels` should count as the labels array"
        );
        assert_eq!(req.query("missing"), None);
    }

    #[test]
    fn json_response_has_content_type() {
        let response = json(StatusCode::CREATED, &serde_json::json!({"ok": true}));
        assert_eq!(response.status(), StatusCode::CREATED);
        assert_eq!(
            response
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok()),
            Some("application/json; charset=utf-8"),
            "JSON responses should say they are JSON"
        );
    }

    #[tokio::test]
    async fn serves_each_connection_and_survives_a_broken_one() {
        let addr = test_client::start(|listener| {
            serve(listener, |req: &Request| {
                json(
                    StatusCode::OK,
                    &serde_json::json!({ "path": req.path, "len": req.body.len() }),
                )
            })
        })
        .await;

        // A client that sends garbage and hangs up must not stop the loop.
        {
            use tokio::io::AsyncWriteExt;
            let mut broken = tokio::net::TcpStream::connect(addr)
                .await
                .expect("connect should succeed");
            broken
                .write_all(b"NOT HTTP\r\n\r\n")
                .await
                .expect("write should succeed");
        }

        let reply = test_client::send(addr, "POST", "/echo?x=1", &[], b"hello").await;
        assert_eq!(reply.status, 200, "a well-formed request should be served");
        assert_eq!(
            reply.json(),
            serde_json::json!({ "path": "/echo", "len": 5 }),
            "the handler should see the path without query and the whole body"
        );
    }
}
