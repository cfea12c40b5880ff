//! Protocol upgrades through the real proxy, with a real WebSocket
//! upstream and client (tungstenite): a WebSocket handshake is forwarded
//! only on a route with `websocket: true`, after the caller is
//! authenticated and authorized; another site's page cannot open one with
//! the token cookie; `h2c` is never forwarded; and an open stream is decided
//! again as its frames pass, so it ends when its subject is revoked or the
//! reloaded policy takes the permission away.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use crate::harness;
use crate::idp::Idp;
use crate::upstream::EchoUpstream;

const CONFIG: &str = r#"
listeners: [{name: main, addr: "${LISTEN}"}]
admin: {addr: "${ADMIN}", token_env: ADMIN_TOKEN}
upstreams:
  crm:
    url: "${UP}"
    headers: {api_access_token: "${CRM_KEY}"}
  rest: {url: "${REST}"}
auth:
  issuer: https://idp.acme-retail.test/
  audiences: [chatwarden]
  algorithms: [EdDSA]
  jwks_url: "${JWKS}"
  cookie: cw_session
roles:
  agent: {permissions: [conversations.read]}
routes:
  - name: cable
    upstream: crm
    methods: [GET]
    path: /cable
    permission: conversations.read
    websocket: true
  - name: conversations.list
    upstream: crm
    methods: [GET]
    path: "/api/v1/accounts/{account_id}/conversations"
    permission: conversations.read
  - name: contacts.list
    upstream: rest
    methods: [GET]
    path: "/api/v1/accounts/{account_id}/contacts"
    permission: conversations.read
audit: {path: "${AUDIT}"}
"#;

const ADMIN_TOKEN: &str = "upgrade-admin-token-0001";
const CRM_KEY: &str = "crm-key-for-upgrade-tests";

/// A WebSocket upstream: it answers every text message with the same
/// text, sends whatever the test broadcasts to every open stream, and
/// records the handshakes and messages it got.
#[derive(Clone)]
struct WsUpstream {
    addr: SocketAddr,
    handshakes: Arc<Mutex<Vec<http::HeaderMap>>>,
    received: Arc<Mutex<Vec<String>>>,
    push: broadcast::Sender<String>,
}

impl WsUpstream {
    async fn start() -> WsUpstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let (push, _) = broadcast::channel(16);
        let up = WsUpstream {
            addr: listener.local_addr().expect("addr"),
            handshakes: Arc::default(),
            received: Arc::default(),
            push,
        };
        let server = up.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(server.clone().serve(socket));
            }
        });
        up
    }

    async fn serve(self, socket: TcpStream) {
        let handshakes = self.handshakes.clone();
        // The error type is tungstenite's (an HTTP response), not ours.
        #[allow(clippy::result_large_err)]
        let record = move |req: &Request, resp: Response| {
            handshakes.lock().expect("lock").push(req.headers().clone());
            Ok(resp)
        };
        let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(socket, record).await else {
            return;
        };
        let mut pushed = self.push.subscribe();
        loop {
            tokio::select! {
                m = ws.next() => match m {
                    Some(Ok(Message::Text(t))) => {
                        self.received.lock().expect("lock").push(t.to_string());
                        if ws.send(Message::text(t.to_string())).await.is_err() {
                            return;
                        }
                    }
                    Some(Ok(_)) => {}
                    _ => return,
                },
                p = pushed.recv() => match p {
                    // `fragments:a|b|c`: one text message sent as fragments
                    // `a`, `b`, `c`, with a ping between every two.
                    Ok(text) if text.starts_with("fragments:") => {
                        if send_fragments(&mut ws, &text["fragments:".len()..]).await.is_err() {
                            return;
                        }
                    }
                    Ok(text) => {
                        if ws.send(Message::text(text)).await.is_err() {
                            return;
                        }
                    }
                    Err(_) => return,
                },
            }
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn handshakes(&self) -> Vec<http::HeaderMap> {
        self.handshakes.lock().expect("lock").clone()
    }

    fn received(&self) -> Vec<String> {
        self.received.lock().expect("lock").clone()
    }
}

/// One text message as the `|`-separated fragments of `parts` (RFC 6455
/// § 5.4), a ping between every two: what a server streaming a long
/// message, or a proxy before it, may send.
async fn send_fragments(ws: &mut WebSocketStream<TcpStream>, parts: &str) -> Result<(), WsError> {
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    let parts: Vec<&str> = parts.split('|').collect();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            ws.send(Message::Frame(Frame::ping(Vec::new()))).await?;
        }
        let opcode = OpCode::Data(if i == 0 { Data::Text } else { Data::Continue });
        let frame = Frame::message(part.as_bytes().to_vec(), opcode, i + 1 == parts.len());
        ws.send(Message::Frame(frame)).await?;
    }
    Ok(())
}

struct Env {
    ws: WsUpstream,
    rest: EchoUpstream,
    idp: Arc<Idp>,
    gw: harness::TestGateway,
}

async fn env() -> Env {
    env_with(CONFIG).await
}

async fn env_with(config: &str) -> Env {
    let ws = WsUpstream::start().await;
    let rest = EchoUpstream::start().await;
    let idp = Idp::start().await;
    let gw = harness::start(
        config,
        &[
            ("UP", ws.url()),
            ("REST", rest.url()),
            ("JWKS", idp.jwks_url()),
            ("ADMIN_TOKEN", ADMIN_TOKEN.into()),
            ("CRM_KEY", CRM_KEY.into()),
        ],
    )
    .await;
    Env { ws, rest, idp, gw }
}

type Ws = WebSocketStream<TcpStream>;

/// Opens a WebSocket to `path` through the gateway with `headers`; the
/// gateway's answer when it refuses the handshake.
async fn open(gw: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Result<Ws, (u16, Value)> {
    let mut req = format!("ws://{gw}{path}")
        .into_client_request()
        .expect("request");
    for (name, value) in headers {
        req.headers_mut().insert(
            http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
            value.parse().expect("value"),
        );
    }
    let socket = TcpStream::connect(gw).await.expect("connect");
    match tokio_tungstenite::client_async(req, socket).await {
        Ok((ws, resp)) => {
            assert_eq!(resp.status(), 101);
            Ok(ws)
        }
        Err(WsError::Http(resp)) => {
            let body = resp.body().as_deref().unwrap_or_default();
            let body = serde_json::from_slice(body).unwrap_or(Value::Null);
            Err((resp.status().as_u16(), body))
        }
        Err(e) => panic!("handshake failed: {e}"),
    }
}

/// The gateway's answer to a handshake it must refuse: status and body.
async fn refused(gw: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    match open(gw, path, headers).await {
        Ok(_) => panic!("the handshake to {path} should be refused"),
        Err(answer) => answer,
    }
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Sends `text` and returns the answer, or `None` once the gateway has
/// ended the stream.
async fn round_trip(ws: &mut Ws, text: &str) -> Option<String> {
    if ws.send(Message::text(text)).await.is_err() {
        return None;
    }
    next_text(ws).await
}

/// The next text message, or `None` when the stream ends first.
async fn next_text(ws: &mut Ws) -> Option<String> {
    loop {
        let next = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("the stream answers or ends within 10 s");
        return match next {
            Some(Ok(Message::Text(t))) => Some(t.to_string()),
            // Pings between fragments (answered by the client itself).
            Some(Ok(Message::Ping(_))) => continue,
            Some(Ok(other)) => panic!("unexpected frame {other:?}"),
            _ => None,
        };
    }
}

#[tokio::test]
async fn a_websocket_is_forwarded_only_where_a_route_carries_one() {
    let Env { ws, rest, idp, gw } = env().await;
    let token = idp.token("priya", &["agent"], json!({}));
    let auth = bearer(&token);

    // Who is asking is settled first.
    let anonymous = refused(gw.addr, "/cable", &[]).await;
    assert_eq!(anonymous.0, 401);
    assert_eq!(anonymous.1["reason"], "token_missing");
    let stranger = idp.token("sam", &["contractor"], json!({}));
    let forbidden = refused(gw.addr, "/cable", &[("authorization", &bearer(&stranger))]).await;
    assert_eq!(forbidden.0, 403);
    assert_eq!(forbidden.1["reason"], "permission_denied");

    // A route that does not carry WebSockets refuses the handshake, even
    // to a caller who may read it, and nothing reaches the upstream.
    let path = "/api/v1/accounts/1/conversations";
    let refused = refused(gw.addr, path, &[("authorization", &auth)]).await;
    assert_eq!(refused.0, 403, "{refused:?}");
    assert_eq!(refused.1["reason"], "upgrade_denied");
    assert!(ws.handshakes().is_empty(), "no handshake reached the CRM");

    // The route that does: the stream works both ways, the token stays
    // here and the CRM gets its own key.
    // A client's copy of the injected credential under the other
    // spelling (`-` for `_`) is dropped too: a CGI-mapping server reads
    // both as one header.
    let mut stream = open(
        gw.addr,
        "/cable",
        &[("authorization", &auth), ("api-access-token", "client-key")],
    )
    .await
    .expect("opened");
    assert_eq!(
        round_trip(&mut stream, "subscribe").await.as_deref(),
        Some("subscribe")
    );
    ws.push.send("conversation.created".into()).expect("pushed");
    assert_eq!(
        next_text(&mut stream).await.as_deref(),
        Some("conversation.created")
    );
    let open_streams = |metrics: String| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("chatwarden_websocket_streams_open "))
            .map(str::to_string)
    };
    assert_eq!(
        open_streams(gw.metrics_as(Some(ADMIN_TOKEN)).await).as_deref(),
        Some("1")
    );
    stream.close(None).await.expect("close");
    while stream.next().await.is_some() {}
    let seen = ws.handshakes();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].get("authorization").is_none(), "{seen:?}");
    assert_eq!(seen[0]["api_access_token"], CRM_KEY);
    assert!(seen[0].get("api-access-token").is_none(), "{seen:?}");
    assert_eq!(seen[0]["x-chatwarden-sub"], "priya");

    // Other upgrades are not forwarded: `h2c` would let a client speak
    // HTTP/2 to the upstream past every check. The request goes on as a
    // plain one.
    let h2c = format!(
        "GET /api/v1/accounts/1/contacts HTTP/1.1\r\nHost: gw\r\nAuthorization: {auth}\r\n\
         Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
    );
    let mut s = TcpStream::connect(gw.addr).await.expect("connect");
    s.write_all(h2c.as_bytes()).await.expect("write");
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .expect("answer")
        .expect("read");
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert_eq!(harness::status_of(&answer), 200, "{answer}");
    let forwarded = rest.seen();
    assert_eq!(forwarded.len(), 1);
    for name in ["upgrade", "http2-settings", "connection"] {
        assert!(
            forwarded[0].headers.get(name).is_none(),
            "{name} forwarded: {:?}",
            forwarded[0].headers
        );
    }

    let records = gw.audit_records(5).await;
    let denied = harness::with_reason(&records, "upgrade_denied");
    assert_eq!(denied.len(), 1, "{records:#?}");
    assert_eq!(denied[0]["decision"], "deny");
    assert_eq!(denied[0]["status"], 403);
    assert_eq!(denied[0]["sub"], "priya");
    assert_eq!(denied[0]["route"], "conversations.list");
    assert_eq!(denied[0]["rules"], json!(["conversations.list.websocket"]));
    assert_eq!(denied[0]["upstream"], Value::Null);
    let streamed: Vec<&Value> = records.iter().filter(|r| r["status"] == 101).collect();
    assert_eq!(streamed.len(), 1, "{records:#?}");
    assert_eq!(
        open_streams(gw.metrics_as(Some(ADMIN_TOKEN)).await).as_deref(),
        Some("0"),
        "the stream's record is written as it ends"
    );
    assert_eq!(streamed[0]["decision"], "allow");
    assert_eq!(streamed[0]["route"], "cable");
    assert_eq!(streamed[0]["upstream"], "crm");
}

#[tokio::test]
async fn another_sites_page_cannot_open_a_stream_with_the_cookie() {
    let Env { ws, idp, gw, .. } = env().await;
    let token = idp.token("priya", &["agent"], json!({}));
    let cookie = format!("cw_session={token}");

    // The browser says where the page came from: another site's page
    // would get a live feed of the CRM (cross-site WebSocket hijacking).
    for headers in [
        vec![
            ("cookie", cookie.as_str()),
            ("origin", "https://evil.example"),
            ("sec-fetch-site", "cross-site"),
        ],
        vec![
            ("cookie", cookie.as_str()),
            ("origin", "https://evil.example"),
        ],
    ] {
        let refused = refused(gw.addr, "/cable", &headers).await;
        assert_eq!(refused.0, 403, "{headers:?}");
        assert_eq!(refused.1["reason"], "origin_denied");
    }
    assert!(ws.handshakes().is_empty());

    // The gateway's own page may.
    let host = gw.addr.to_string();
    let own = format!("http://{host}");
    let mut stream = open(
        gw.addr,
        "/cable",
        &[
            ("cookie", &cookie),
            ("origin", &own),
            ("sec-fetch-site", "same-origin"),
        ],
    )
    .await
    .expect("opened");
    assert_eq!(round_trip(&mut stream, "hi").await.as_deref(), Some("hi"));

    let records = gw.audit_records(2).await;
    let refused = harness::with_reason(&records, "origin_denied");
    assert_eq!(refused.len(), 2);
    assert_eq!(refused[0]["sub"], "priya");
    assert_eq!(refused[0]["rules"], json!(["auth.cookie_origins"]));
}

#[tokio::test]
async fn an_open_stream_ends_when_its_subject_is_revoked() {
    let Env { ws, idp, gw, .. } = env().await;
    let priya = idp.token("priya", &["agent"], json!({}));
    let omar = idp.token("omar", &["agent"], json!({}));
    let mut hers = open(gw.addr, "/cable", &[("authorization", &bearer(&priya))])
        .await
        .expect("opened");
    let mut his = open(gw.addr, "/cable", &[("authorization", &bearer(&omar))])
        .await
        .expect("opened");
    assert_eq!(round_trip(&mut hers, "a").await.as_deref(), Some("a"));
    assert_eq!(round_trip(&mut his, "b").await.as_deref(), Some("b"));

    let client = gw.client();
    for sub in ["priya", "omar"] {
        let resp = client
            .post(format!("http://{}/revoke", gw.admin))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({ "sub": sub }))
            .send()
            .await
            .expect("revoke");
        assert_eq!(resp.status(), 200);
    }

    // Her next frame is not passed on: the stream ends instead.
    assert_eq!(round_trip(&mut hers, "after").await, None);
    // The CRM's next frame to him is not passed on either.
    ws.push.send("new message".into()).expect("pushed");
    assert_eq!(next_text(&mut his).await, None);
    assert_eq!(ws.received(), ["a", "b"], "nothing after the revocation");

    // And a new handshake is refused outright.
    let again = refused(gw.addr, "/cable", &[("authorization", &bearer(&priya))]).await;
    assert_eq!(again.0, 401);
    assert_eq!(again.1["reason"], "token_revoked");

    let records = gw.audit_records(3).await;
    let ended: Vec<&Value> = records.iter().filter(|r| r["status"] == 101).collect();
    assert_eq!(ended.len(), 2, "{records:#?}");
    for r in ended {
        assert_eq!(r["decision"], "deny", "{r}");
        assert_eq!(r["reason"], "token_revoked", "{r}");
        assert_eq!(r["upstream"], "crm", "the stream was forwarded: {r}");
    }
}

#[tokio::test]
async fn an_open_stream_follows_a_reloaded_policy() {
    let Env { ws, idp, gw, .. } = env().await;
    let token = idp.token("priya", &["agent"], json!({}));
    let mut stream = open(gw.addr, "/cable", &[("authorization", &bearer(&token))])
        .await
        .expect("opened");
    assert_eq!(round_trip(&mut stream, "a").await.as_deref(), Some("a"));

    // The ops team takes the permission from agents.
    std::fs::write(
        gw.dir.path().join("chatwarden.yaml"),
        CONFIG.replace(
            "agent: {permissions: [conversations.read]}",
            "agent: {permissions: [messages.send]}",
        ),
    )
    .expect("write");
    gw.reload(ADMIN_TOKEN).await;

    assert_eq!(round_trip(&mut stream, "after").await, None);
    assert_eq!(ws.received(), ["a"]);
    let records = gw.audit_records(2).await;
    let ended = records
        .iter()
        .find(|r| r["status"] == 101)
        .expect("the stream's record");
    assert_eq!(ended["reason"], "permission_denied", "{ended}");
    let reload = records
        .iter()
        .find(|r| r["event"] == "reload")
        .expect("the reload's record");
    assert_eq!(
        ended["config_version"], reload["config_version"],
        "the record names the config that ended the stream"
    );
}

#[tokio::test]
async fn a_quiet_stream_ends_at_the_upstreams_read_timeout_without_an_error() {
    let config = CONFIG.replace(
        "    headers: {api_access_token: \"${CRM_KEY}\"}\n",
        "    headers: {api_access_token: \"${CRM_KEY}\"}\n    timeouts: {read: 1s}\n",
    );
    let Env { idp, gw, .. } = env_with(&config).await;
    let token = idp.token("priya", &["agent"], json!({}));
    let mut stream = open(gw.addr, "/cable", &[("authorization", &bearer(&token))])
        .await
        .expect("opened");
    assert_eq!(round_trip(&mut stream, "a").await.as_deref(), Some("a"));
    // Nobody says anything: the stream ends at the read timeout.
    assert_eq!(next_text(&mut stream).await, None);

    let records = gw.audit_records(1).await;
    let r = &records[0];
    assert_eq!(r["status"], 101, "{r}");
    assert_eq!(r["decision"], "allow", "an idle stream is no failure: {r}");
    assert_eq!(r["reason"], Value::Null);
    assert_eq!(
        r["detail"],
        "WebSocket stream idle for longer than the upstream's timeouts.read"
    );
    let metrics = gw.metrics_as(Some(ADMIN_TOKEN)).await;
    assert!(
        metrics.contains("chatwarden_websocket_streams_open 0"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("chatwarden_upstream_errors_total{"),
        "{metrics}"
    );
}

#[tokio::test]
async fn the_upstreams_credential_is_masked_in_the_frames_it_sends() {
    let Env { ws, idp, gw, .. } = env().await;
    let priya = idp.token("priya", &["agent"], json!({}));
    // The client offers compression; the upstream must not get the offer,
    // or its frames could not be searched.
    let mut stream = open(
        gw.addr,
        "/cable",
        &[
            ("authorization", &bearer(&priya)),
            ("sec-websocket-extensions", "permessage-deflate"),
        ],
    )
    .await
    .expect("opened");
    assert!(ws
        .handshakes()
        .iter()
        .all(|h| !h.contains_key("sec-websocket-extensions")));
    assert_eq!(
        round_trip(&mut stream, "hello").await.as_deref(),
        Some("hello")
    );

    // An upstream that echoes its request's headers into a frame, a small
    // one and one far larger than a read.
    let small = format!(r#"{{"debug":{{"api_access_token":"{CRM_KEY}"}}}}"#);
    let large = format!("{}{CRM_KEY}{}", "x".repeat(100_000), "y".repeat(100));
    for sent in [&small, &large] {
        ws.push.send(sent.clone()).expect("pushed");
        let got = next_text(&mut stream).await.expect("a frame");
        assert_eq!(got.len(), sent.len(), "masked byte for byte");
        assert_eq!(got, sent.replace(CRM_KEY, &"*".repeat(CRM_KEY.len())));
    }
    // A message in fragments, the key split across three of them: the
    // client puts it back together, masked.
    let (a, rest) = CRM_KEY.split_at(5);
    let (b, c) = rest.split_at(rest.len() / 2);
    ws.push
        .send(format!("fragments:{{\"key\":\"{a}|{b}|{c}\"}}"))
        .expect("pushed");
    let got = next_text(&mut stream).await.expect("a message");
    assert_eq!(
        got,
        format!("{{\"key\":\"{}\"}}", "*".repeat(CRM_KEY.len())),
        "masked across fragments"
    );
    // What the client sends is not touched.
    assert_eq!(
        round_trip(&mut stream, CRM_KEY).await.as_deref(),
        Some("*".repeat(CRM_KEY.len()).as_str()),
        "the upstream echoes it back, masked on its way out"
    );
    assert_eq!(ws.received().last().map(String::as_str), Some(CRM_KEY));

    drop(stream);
    let records = gw.audit_records(1).await;
    let streamed = records
        .iter()
        .find(|r| r["status"] == 101)
        .expect("the stream's record");
    assert_eq!(
        streamed["detail"], "the upstream's credential was in the response body 4 time(s): masked",
        "{streamed}"
    );
}
