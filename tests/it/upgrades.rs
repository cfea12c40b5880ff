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
                    Ok(text) if text.starts_with("binary:") => {
                        let bytes = text.as_bytes()["binary:".len()..].to_vec();
                        if ws.send(Message::binary(bytes)).await.is_err() {
                            return;
                        }
                    }
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

/// Opens `/cable` with `token`, the client offering compression: the
/// upstream must not get the offer, or its frames could not be read.
async fn open_offering_compression(ws: &WsUpstream, gw: &harness::TestGateway, token: &str) -> Ws {
    let stream = open(
        gw.addr,
        "/cable",
        &[
            ("authorization", &bearer(token)),
            ("sec-websocket-extensions", "permessage-deflate"),
        ],
    )
    .await
    .expect("opened");
    assert!(
        ws.handshakes()
            .iter()
            .all(|h| !h.contains_key("sec-websocket-extensions")),
        "the compression offer is not passed on"
    );
    stream
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
    let mut stream = open_offering_compression(&ws, &gw, &priya).await;
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

/// Chatwoot's cable behind a gateway that filters and masks its messages:
/// an agent gets the events of her own conversations only, with the
/// customers' numbers and addresses masked.
const CABLE_CONFIG: &str = r#"
listeners: [{name: main, addr: "${LISTEN}"}]
admin: {addr: "${ADMIN}", token_env: ADMIN_TOKEN}
upstreams:
  crm: {url: "${UP}"}
  rest: {url: "${REST}"}
auth:
  issuer: https://idp.acme-retail.test/
  audiences: [chatwarden]
  algorithms: [EdDSA]
  jwks_url: "${JWKS}"
  claims: {attributes: {user_id: uid}}
roles:
  agent: {permissions: [conversations.read]}
  supervisor: {inherits: [agent], permissions: [conversations.read_all]}
  admin: {inherits: [supervisor], permissions: [contacts.read_pii, conversations.read_confidential]}
redaction:
  - name: cable-pii
    unless_permission: contacts.read_pii
    fields:
      - $.message.data.sender.phone_number
      - $.message.data.meta.sender.phone_number
      - $.message.data.meta.sender.email
    detect: [phone, email]
routes:
  - name: cable
    upstream: crm
    methods: [GET]
    path: /cable
    permission: conversations.read
    websocket: true
    control_messages: type
    message_filter:
      object: $.message.data
      fields: [meta.assignee.id, conversation.assignee_id]
      claim: user_id
      unless_permission: conversations.read_all
      labels: [{label: confidential, permission: conversations.read_confidential}]
    redaction: [cable-pii]
  - name: conversations.list
    upstream: rest
    methods: [GET]
    path: "/api/v1/accounts/{account_id}/conversations"
    permission: conversations.read
audit: {path: "${AUDIT}"}
"#;

fn cable_identifier() -> String {
    json!({"channel": "RoomChannel", "pubsub_token": "tok-1"}).to_string()
}

/// A new message in conversation 7, as Chatwoot broadcasts it.
fn cable_message(id: u64, assignee: Value, content: &str) -> String {
    json!({"identifier": cable_identifier(), "message": {"event": "message.created", "data": {
        "id": id, "content": content, "conversation_id": 7, "message_type": 0,
        "sender": {"id": 12, "name": "Sophie Martin", "phone_number": "+447700900123", "type": "contact"},
        "conversation": {"assignee_id": assignee, "unread_count": 1}
    }}})
    .to_string()
}

/// A conversation's update, as Chatwoot broadcasts it.
fn cable_conversation(id: u64, assignee: Value, labels: &[&str]) -> String {
    let assignee = if assignee.is_null() {
        Value::Null
    } else {
        json!({"id": assignee})
    };
    json!({"identifier": cable_identifier(), "message": {"event": "conversation.updated", "data": {
        "id": id, "labels": labels, "status": "open",
        "meta": {"sender": {"name": "Lukas Becker", "phone_number": "+4915112345678", "email": "lukas@example.de"},
                 "assignee": assignee}
    }}})
    .to_string()
}

/// Opens the cable as `who` and waits until the upstream streams to it
/// (the upstream echoes the subscription confirmation the client sends).
async fn subscribed(env: &Env, who: &str, roles: &[&str]) -> Ws {
    let token = env.idp.token(who, roles, json!({"uid": 3}));
    let mut stream = open(
        env.gw.addr,
        "/cable",
        &[
            ("authorization", &bearer(&token)),
            ("sec-websocket-extensions", "permessage-deflate"),
        ],
    )
    .await
    .expect("opened");
    let confirm =
        json!({"identifier": cable_identifier(), "type": "confirm_subscription"}).to_string();
    assert_eq!(
        round_trip(&mut stream, &confirm).await.as_deref(),
        Some(confirm.as_str())
    );
    stream
}

#[tokio::test]
async fn an_agents_stream_carries_her_conversations_only_masked() {
    let env = env_with(CABLE_CONFIG).await;
    let mut agent = subscribed(&env, "priya", &["agent"]).await;
    let mut supervisor = subscribed(&env, "marta", &["supervisor"]).await;
    let mut admin = subscribed(&env, "omar", &["admin"]).await;
    // The clients' compression offers were not passed on (the route has
    // no credential to search for): compressed frames could not be read.
    assert!(env
        .ws
        .handshakes()
        .iter()
        .all(|h| !h.contains_key("sec-websocket-extensions")));
    let events = [
        cable_message(501, json!(7), "Anyone there? I'm on +44 7700 900999"),
        cable_conversation(8, json!(7), &[]),
        cable_conversation(9, Value::Null, &[]),
        cable_conversation(10, json!(3), &["confidential"]),
        json!({"type": "ping", "message": 1_764_000_000}).to_string(),
        cable_message(
            502,
            json!(3),
            "Call me on +44 7700 900123 or sophie@example.com",
        ),
        cable_conversation(11, json!(3), &["vip"]),
    ];
    for e in &events[..5] {
        env.ws.push.send(e.clone()).expect("pushed");
    }
    // The last message is sent in fragments, a ping between them.
    let last = &events[5];
    let (a, rest) = last.split_at(last.len() / 3);
    let (b, c) = rest.split_at(rest.len() / 2);
    env.ws
        .push
        .send(format!("fragments:{a}|{b}|{c}"))
        .expect("pushed");
    env.ws.push.send(events[6].clone()).expect("pushed");

    // The agent: the ping, then her two conversations' events, masked.
    let mut got = Vec::new();
    for _ in 0..3 {
        let text = next_text(&mut agent).await.expect("a message");
        got.push(serde_json::from_str::<Value>(&text).expect("JSON"));
    }
    assert_eq!(got[0], json!({"type": "ping", "message": 1_764_000_000}));
    let data = &got[1]["message"]["data"];
    assert_eq!(data["id"], 502);
    assert_eq!(
        data["content"],
        "Call me on +** **** ***123 or s***@example.com"
    );
    assert_eq!(data["sender"]["phone_number"], "+*********123");
    assert_eq!(data["sender"]["name"], "Sophie Martin");
    let data = &got[2]["message"]["data"];
    assert_eq!(data["id"], 11);
    assert_eq!(data["meta"]["sender"]["email"], "l***@example.de");
    assert_eq!(data["meta"]["sender"]["name"], "Lukas Becker");

    // The supervisor: every conversation but the confidential one, and
    // message events (which do not say their conversation's labels) not
    // at all; masked all the same.
    let mut ids = Vec::new();
    for _ in 0..4 {
        let text = next_text(&mut supervisor).await.expect("a message");
        assert!(
            !text.contains("7700 900") && !text.contains("lukas@"),
            "{text}"
        );
        let v: Value = serde_json::from_str(&text).expect("JSON");
        ids.push(v["message"]["data"]["id"].clone());
    }
    assert_eq!(ids, [json!(8), json!(9), Value::Null, json!(11)]);

    // The admin: the stream as the CRM sent it.
    for sent in &events {
        let text = next_text(&mut admin).await.expect("a message");
        assert_eq!(&text, sent);
    }

    // One message that cannot be read (binary) ends each filtered stream,
    // with nothing of it sent; the admin's is not read and goes on.
    env.ws
        .push
        .send("binary:+44 7700 900123".into())
        .expect("pushed");
    assert_eq!(
        next_text(&mut agent).await,
        None,
        "the agent's stream ended"
    );
    assert_eq!(next_text(&mut supervisor).await, None);
    let after = json!({"type": "ping", "message": 1}).to_string();
    env.ws.push.send(after.clone()).expect("pushed");
    assert_eq!(next_binary_then_text(&mut admin).await, after);
    drop(admin);

    let records = env.gw.audit_records(3).await;
    let of = |sub: &str| {
        records
            .iter()
            .find(|r| r["sub"] == sub && r["status"] == 101)
            .unwrap_or_else(|| panic!("{sub}'s stream record in {records:#?}"))
            .clone()
    };
    let agent = of("priya");
    assert_eq!(agent["decision"], "error", "{agent}");
    assert_eq!(agent["reason"], "redaction_failed");
    assert_eq!(
        agent["detail"],
        "WebSocket stream ended on a message it could not filter: a binary message: only JSON text messages can be filtered and masked"
    );
    // Five messages dropped; four values masked in the two that passed.
    assert_eq!(agent["redactions"], 9, "{agent}");
    assert_eq!(of("marta")["reason"], "redaction_failed");
    let admin = of("omar");
    assert_eq!(admin["decision"], "allow", "{admin}");
    assert_eq!(admin["redactions"], 0);

    // The agent's and the supervisor's streams were read (the admin's was
    // not): confirmation, ping and two events sent to her, four dropped;
    // confirmation, ping and three events to him, three dropped.
    let metrics = env.gw.metrics_as(Some(ADMIN_TOKEN)).await;
    for line in [
        "chatwarden_websocket_messages_total{route=\"cable\",outcome=\"sent\"} 9",
        "chatwarden_websocket_messages_total{route=\"cable\",outcome=\"dropped\"} 7",
    ] {
        assert!(metrics.contains(line), "{line} in:\n{metrics}");
    }
}

/// Skips one binary message, then the next text one.
async fn next_binary_then_text(ws: &mut Ws) -> String {
    let next = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("a frame within 10 s");
    assert!(matches!(next, Some(Ok(Message::Binary(_)))), "{next:?}");
    next_text(ws).await.expect("a message")
}

#[tokio::test]
async fn open_streams_follow_a_reload_of_the_message_rules() {
    let rules = "    control_messages: type\n    message_filter:\n      object: $.message.data\n      fields: [meta.assignee.id, conversation.assignee_id]\n      claim: user_id\n      unless_permission: conversations.read_all\n      labels: [{label: confidential, permission: conversations.read_confidential}]\n    redaction: [cable-pii]\n";
    assert!(CABLE_CONFIG.contains(rules));
    let env = env_with(&CABLE_CONFIG.replace(rules, "")).await;
    let write = |config: &str| {
        std::fs::write(env.gw.dir.path().join("chatwarden.yaml"), config).expect("write")
    };

    // A stream opened before its route read messages cannot start reading
    // them mid-frame: the first message after the reload ends it.
    let mut unread = subscribed(&env, "priya", &["agent"]).await;
    write(CABLE_CONFIG);
    env.gw.reload(ADMIN_TOKEN).await;
    env.ws
        .push
        .send(cable_message(501, json!(7), "+44 7700 900999"))
        .expect("pushed");
    assert_eq!(
        next_text(&mut unread).await,
        None,
        "ended, nothing of the message sent"
    );

    // A stream that is read takes the reloaded rules from its next message
    // on: here agents may now see numbers (still only their own
    // conversations).
    let mut read = subscribed(&env, "priya", &["agent"]).await;
    env.ws
        .push
        .send(cable_message(502, json!(3), "+44 7700 900123"))
        .expect("pushed");
    let got: Value =
        serde_json::from_str(&next_text(&mut read).await.expect("a message")).expect("JSON");
    assert_eq!(got["message"]["data"]["content"], "+** **** ***123");
    write(&CABLE_CONFIG.replace(
        "agent: {permissions: [conversations.read]}",
        "agent: {permissions: [conversations.read, contacts.read_pii]}",
    ));
    env.gw.reload(ADMIN_TOKEN).await;
    env.ws
        .push
        .send(cable_message(503, json!(7), "+44 7700 900999"))
        .expect("pushed");
    env.ws
        .push
        .send(cable_message(504, json!(3), "+44 7700 900123"))
        .expect("pushed");
    let got: Value =
        serde_json::from_str(&next_text(&mut read).await.expect("a message")).expect("JSON");
    assert_eq!(got["message"]["data"]["id"], 504);
    assert_eq!(got["message"]["data"]["content"], "+44 7700 900123");
    drop(read);

    let records = env.gw.audit_records(4).await;
    let reloads: Vec<&Value> = records.iter().filter(|r| r["event"] == "reload").collect();
    let streams: Vec<&Value> = records.iter().filter(|r| r["status"] == 101).collect();
    assert_eq!((reloads.len(), streams.len()), (2, 2), "{records:#?}");
    let ended = streams
        .iter()
        .find(|r| r["reason"] == "redaction_failed")
        .expect("the unread stream's record");
    assert_eq!(
        ended["config_version"], reloads[0]["config_version"],
        "{ended}"
    );
    assert!(
        ended["detail"]
            .as_str()
            .is_some_and(|d| d.contains("a reload gave the route message rules")),
        "{ended}"
    );
    let read = streams
        .iter()
        .find(|r| r["decision"] == "allow")
        .expect("the read stream's");
    // 502's two values masked, 503 dropped; 504 passed as it was.
    assert_eq!(read["redactions"], 3, "{read}");
}

/// The CRM user's cable token, which `subscribe_as` puts into every
/// subscription: staff never hold it.
const CABLE_TOKEN: &str = "Tk9xQ2mZ7pLrV4aBcD8eF1gH";

#[tokio::test]
async fn subscriptions_are_made_as_the_crm_user_and_its_token_never_reaches_staff() {
    let config = CABLE_CONFIG.replace(
        "    control_messages: type\n",
        &format!("    control_messages: type\n    subscribe_as: {{pubsub_token: {CABLE_TOKEN}, user_id: \"1\"}}\n"),
    );
    assert_ne!(config, CABLE_CONFIG);
    let env = env_with(&config).await;
    // The client subscribes without the token (it has none); the CRM gets
    // the subscription as its user, and the client's confirmation names
    // the client's own identifier.
    let mut agent = subscribed(&env, "priya", &["agent"]).await;
    let mut admin = subscribed(&env, "omar", &["admin"]).await;
    let received = env.ws.received();
    assert_eq!(received.len(), 2, "{received:?}");
    let command: Value = serde_json::from_str(&received[0]).expect("JSON");
    let upstream_identifier = command["identifier"].as_str().expect("a string").to_owned();
    let identifier: Value = serde_json::from_str(&upstream_identifier).expect("JSON");
    assert_eq!(
        identifier,
        json!({"channel": "RoomChannel", "pubsub_token": CABLE_TOKEN, "user_id": "1"})
    );

    // What the CRM broadcasts names its identifier; each client gets its
    // own, and the token wherever else it shows is masked, for the admin
    // (whose stream is not filtered) too.
    let event = json!({"identifier": upstream_identifier, "message": {"event": "message.created", "data": {
        "id": 601, "content": format!("debug: {CABLE_TOKEN}"), "conversation_id": 7,
        "sender": {"name": "Sophie Martin", "type": "contact"},
        "conversation": {"assignee_id": 3}
    }}});
    env.ws.push.send(event.to_string()).expect("pushed");
    for stream in [&mut agent, &mut admin] {
        let got: Value =
            serde_json::from_str(&next_text(stream).await.expect("a message")).expect("JSON");
        assert_eq!(got["identifier"], cable_identifier(), "{got}");
        assert_eq!(
            got["message"]["data"]["content"],
            format!("debug: {}", "*".repeat(CABLE_TOKEN.len()))
        );
    }
}

/// `chatwarden cable` over HTTPS: the gateway's TLS listener in front of
/// a WebSocket upstream, the test CA given with `--ca-file`.
#[tokio::test]
async fn chatwarden_cable_watches_a_stream_over_tls() {
    let ws = WsUpstream::start().await;
    let pki = tempfile::tempdir().expect("dir");
    harness::make_pki(pki.path());
    let config = r#"
listeners:
  - name: tls
    addr: "${LISTEN}"
    tls: {cert: "${PKI}/cert.pem", key: "${PKI}/key.pem"}
admin: {addr: "${ADMIN}", token_env: ADMIN_TOKEN}
upstreams:
  crm: {url: "${UP}"}
routes:
  - {name: cable, upstream: crm, methods: [GET], path: /cable, auth: none, websocket: true}
audit: {path: "${AUDIT}"}
"#;
    let gw = harness::start(
        config,
        &[
            ("UP", ws.url()),
            ("PKI", pki.path().display().to_string()),
            ("ADMIN_TOKEN", ADMIN_TOKEN.into()),
        ],
    )
    .await;
    let url = format!("wss://localhost:{}/cable", gw.addr.port());
    let ca = pki.path().join("ca.pem");
    let watch = |ca: Option<std::path::PathBuf>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_chatwarden"));
        cmd.args([
            "cable",
            &url,
            "--token",
            "t",
            "--count",
            "1",
            "--seconds",
            "20",
            "--raw",
        ]);
        if let Some(ca) = ca {
            cmd.arg("--ca-file").arg(ca);
        }
        tokio::task::spawn_blocking(move || cmd.output().expect("run chatwarden cable"))
    };
    // The upstream echoes the subscription the command sends.
    let out = watch(Some(ca)).await.expect("ran");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains(r#"\"channel\":\"RoomChannel\""#),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Without the CA the gateway's certificate is not trusted.
    let out = watch(None).await.expect("ran");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("TLS"), "{stderr}");
}

/// With `links` on its upstream, a stream's messages lead through the
/// gateway too; read for its links alone, a stream passes what is not
/// JSON as it is.
#[tokio::test]
async fn links_in_a_streams_messages_lead_through_the_gateway() {
    let config = CONFIG.replace(
        r#"    headers: {api_access_token: "${CRM_KEY}"}
  rest:"#,
        r#"    headers: {api_access_token: "${CRM_KEY}"}
    links: [crm]
  rest:"#,
    );
    assert_ne!(config, CONFIG, "the config gained links");
    let Env { ws, idp, gw, .. } = env_with(&config).await;
    let priya = idp.token("priya", &["agent"], json!({}));
    let mut stream = open_offering_compression(&ws, &gw, &priya).await;
    assert_eq!(
        round_trip(&mut stream, "hello").await.as_deref(),
        Some("hello"),
        "not JSON: passed as it is"
    );
    let event = json!({"message": {"event": "message.created", "data": {
        "attachments": [{"data_url": format!("{}/rails/active_storage/blobs/redirect/x/a.png", ws.url())}]
    }}});
    ws.push.send(event.to_string()).expect("pushed");
    let got: Value =
        serde_json::from_str(&next_text(&mut stream).await.expect("a message")).expect("json");
    assert_eq!(
        got["message"]["data"]["attachments"][0]["data_url"],
        format!(
            "http://{}/rails/active_storage/blobs/redirect/x/a.png",
            gw.addr
        )
    );
}
