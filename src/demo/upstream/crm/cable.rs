//! Chatwoot's live updates as the demo CRM serves them: ActionCable's
//! protocol on a WebSocket at `/cable`.
//!
//! A client subscribes to `RoomChannel` naming the CRM key user's
//! `pubsub_token` and id, as Chatwoot requires (anything else gets
//! `reject_subscription`; through the gateway, `subscribe_as` puts them
//! in), and then gets JSON
//! text messages: `{"type":"welcome"}` on connect, `confirm_subscription`,
//! `{"type":"ping","message":<unix time>}` every 3 s, and each event of
//! the account as Chatwoot broadcasts it: `{"identifier": …, "message":
//! {"event": "message.created", "data": {…}}}`. Every stream hears every
//! conversation, as the CRM key's user would: telling staff apart is the
//! gateway's job.
//!
//! Events: `message.created` (a message's JSON and its conversation's
//! `assignee_id`, as Chatwoot's `push_event_data`), `assignee.changed` and
//! `conversation.status_changed` (the conversation's JSON),
//! `contact.updated` (the contact's). While anyone is connected, a
//! customer writes every [`ACTIVITY_EVERY`] (a scripted line, stored like
//! any incoming message), so the demo has live traffic to show; with
//! nobody listening the data stays as seeded.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http::{Method, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::super::http::{empty, json as json_response, UpgradeHook};
use super::{now, source_id, Crm, Direction, Failure, Request, StoredMessage};
use crate::demo::upstream::{data, DEMO_CRM_API_TOKEN, DEMO_CRM_PUBSUB_TOKEN};

/// How often a customer writes while a stream is open.
pub(super) const ACTIVITY_EVERY: Duration = Duration::from_secs(2);

/// ActionCable's server pings every 3 s; a client that hears nothing for
/// twice that reconnects.
const PING_EVERY: Duration = Duration::from_secs(3);

/// The account's events, to every open stream.
pub(super) type Events = broadcast::Sender<Value>;

/// Answers WebSocket handshakes to `/cable` (after the CRM's own token
/// check) and serves each stream in a task of its own.
pub(super) fn hook(events: Events) -> UpgradeHook {
    Arc::new(move |req: &mut http::Request<hyper::body::Incoming>| {
        let websocket = req
            .headers()
            .get(http::header::UPGRADE)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
        if req.uri().path() != "/cable" || !websocket || req.method() != Method::GET {
            return None;
        }
        match req
            .headers()
            .get("api_access_token")
            .and_then(|v| v.to_str().ok())
        {
            None => return Some(Failure::Unauthenticated.into_response()),
            Some(token) if token != DEMO_CRM_API_TOKEN => {
                return Some(Failure::InvalidToken.into_response())
            }
            Some(_) => {}
        }
        let Some(key) = req.headers().get(http::header::SEC_WEBSOCKET_KEY) else {
            return Some(json_response(
                StatusCode::BAD_REQUEST,
                &json!({"error": "Sec-WebSocket-Key is required"}),
            ));
        };
        let accept = derive_accept_key(key.as_bytes());
        let upgraded = hyper::upgrade::on(req);
        let heard = events.subscribe();
        tokio::spawn(async move {
            if let Ok(io) = upgraded.await {
                let ws =
                    WebSocketStream::from_raw_socket(TokioIo::new(io), Role::Server, None).await;
                stream(ws, heard).await;
            }
        });
        let mut answer = empty(StatusCode::SWITCHING_PROTOCOLS);
        let h = answer.headers_mut();
        h.insert(
            http::header::UPGRADE,
            http::HeaderValue::from_static("websocket"),
        );
        h.insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("Upgrade"),
        );
        if let Ok(v) = http::HeaderValue::from_str(&accept) {
            h.insert(http::header::SEC_WEBSOCKET_ACCEPT, v);
        }
        Some(answer)
    })
}

/// One stream: welcome, then subscriptions, pings and the account's events
/// until either side closes.
async fn stream<S>(mut ws: WebSocketStream<S>, mut heard: broadcast::Receiver<Value>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut identifier: Option<String> = None;
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
    if send(&mut ws, &json!({"type": "welcome"})).await.is_err() {
        return;
    }
    loop {
        let out = tokio::select! {
            m = ws.next() => match m {
                Some(Ok(Message::Text(text))) => {
                    let Ok(command) = serde_json::from_str::<Value>(&text) else { continue };
                    match (command["command"].as_str(), command["identifier"].as_str()) {
                        (Some("subscribe"), Some(id)) if is_token_owner(id) => {
                            identifier = Some(id.to_owned());
                            json!({"identifier": id, "type": "confirm_subscription"})
                        }
                        (Some("subscribe"), Some(id)) => {
                            json!({"identifier": id, "type": "reject_subscription"})
                        }
                        _ => continue,
                    }
                }
                Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                Some(Ok(_)) => continue,
            },
            _ = ping.tick() => json!({"type": "ping", "message": now()}),
            event = heard.recv() => match (event, &identifier) {
                (Ok(event), Some(id)) => json!({"identifier": id, "message": event}),
                (Ok(_), None) | (Err(broadcast::error::RecvError::Lagged(_)), _) => continue,
                (Err(broadcast::error::RecvError::Closed), _) => return,
            },
        };
        if send(&mut ws, &out).await.is_err() {
            return;
        }
    }
}

/// Whether a subscription names the CRM key user's cable token and id, as
/// Chatwoot's `RoomChannel` requires (`User.find_by!(pubsub_token:, id:)`).
fn is_token_owner(identifier: &str) -> bool {
    let Ok(id) = serde_json::from_str::<Value>(identifier) else {
        return false;
    };
    let user = match &id["user_id"] {
        Value::String(s) => s.parse::<u64>().ok(),
        other => other.as_u64(),
    };
    id["pubsub_token"] == DEMO_CRM_PUBSUB_TOKEN && user == Some(data::TOKEN_OWNER_AGENT_ID)
}

async fn send<S>(ws: &mut WebSocketStream<S>, message: &Value) -> Result<(), ()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    ws.send(Message::text(message.to_string()))
        .await
        .map_err(|_| ())
}

/// While any stream is open, a customer writes every [`ACTIVITY_EVERY`]:
/// alternately in a conversation of the demo agent's and in someone
/// else's, so her stream and a supervisor's differ at a glance.
pub(super) async fn customers_write(crm: Arc<Mutex<Crm>>, events: Events) {
    let mut tick = tokio::time::interval(ACTIVITY_EVERY);
    let mut step = 0usize;
    loop {
        tick.tick().await;
        if events.receiver_count() == 0 {
            continue;
        }
        let mut crm = crm.lock().unwrap_or_else(PoisonError::into_inner);
        crm.customer_writes(step);
        step += 1;
    }
}

/// The demo agent (Amelia, `uid` 3 in the demo IdP).
const DEMO_AGENT_ID: u64 = 3;

impl Crm {
    /// One scripted line from a customer, stored and announced.
    pub(super) fn customer_writes(&mut self, step: usize) {
        let open = |c: &&super::StoredConversation| c.status != data::Status::Resolved;
        let (hers, others): (Vec<u64>, Vec<u64>) = {
            let mut hers = Vec::new();
            let mut others = Vec::new();
            for c in self.conversations.iter().filter(open) {
                if c.assignee_id == Some(DEMO_AGENT_ID) {
                    hers.push(c.seed.id);
                } else {
                    others.push(c.seed.id);
                }
            }
            (hers, others)
        };
        let pool = if step.is_multiple_of(2) {
            &hers
        } else {
            &others
        };
        let Some(&conversation_id) = pool.get((step / 2) % pool.len().max(1)) else {
            return;
        };
        let Ok(conversation) = self.conversation(conversation_id) else {
            return;
        };
        let contact = self.contact(conversation.seed.contact_id).ok();
        let field = |name: &str| {
            contact
                .and_then(|c| c.json.get(name))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let content = match (step / 2) % 4 {
            0 => format!("Any news on my order? Call me on {}", field("phone_number")),
            1 => format!("Please send the invoice to {}", field("email")),
            2 => "Thanks, that's all I needed".to_owned(),
            _ => format!(
                "I'm at work until 6, text me on {} instead",
                field("phone_number")
            ),
        };
        let at = now();
        self.messages.push(StoredMessage {
            id: self.next_message_id,
            conversation_id,
            direction: Direction::Incoming,
            content,
            agent_id: None,
            created_at: at,
        });
        self.next_message_id += 1;
        if let Some(c) = self
            .conversations
            .iter_mut()
            .find(|c| c.seed.id == conversation_id)
        {
            c.updated_at = at;
        }
        self.announce_message(conversation_id);
    }

    /// After a write through the API succeeded: what Chatwoot would
    /// broadcast for it.
    pub(super) fn announce(&self, req: &Request) {
        let segments = req.segments();
        let rest = match segments.as_slice() {
            ["api", "v1", "accounts", _, rest @ ..] => rest,
            _ => return,
        };
        let id = |s: &str| s.parse::<u64>().ok();
        match (&req.method, rest) {
            (&Method::POST, ["conversations", c, "messages"]) => {
                if let Some(c) = id(c) {
                    self.announce_message(c);
                }
            }
            (&Method::POST, ["conversations", c, "assignments"]) => {
                self.announce_conversation("assignee.changed", id(c));
            }
            (&Method::POST, ["conversations", c, "toggle_status"]) => {
                self.announce_conversation("conversation.status_changed", id(c));
            }
            (&Method::PUT | &Method::PATCH, ["contacts", c]) => {
                if let Some(contact) = id(c).and_then(|c| self.contact(c).ok()) {
                    self.broadcast("contact.updated", super::contact_with_inboxes(contact));
                }
            }
            _ => {}
        }
    }

    /// `message.created` for the conversation's latest message.
    fn announce_message(&self, conversation_id: u64) {
        let Ok(conversation) = self.conversation(conversation_id) else {
            return;
        };
        let Some(message) = self.messages_of(conversation_id).last() else {
            return;
        };
        let mut data = self.message_json(message, conversation);
        let source_id = self
            .contact(conversation.seed.contact_id)
            .ok()
            .and_then(source_id);
        data["conversation"] = json!({
            "assignee_id": conversation.assignee_id,
            "unread_count": 1,
            "last_activity_at": conversation.updated_at,
            "contact_inbox": {"source_id": source_id},
        });
        self.broadcast("message.created", data);
    }

    fn announce_conversation(&self, event: &str, id: Option<u64>) {
        if let Some(conversation) = id.and_then(|c| self.conversation(c).ok()) {
            self.broadcast(event, self.conversation_json(conversation));
        }
    }

    fn broadcast(&self, event: &str, data: Value) {
        // Nobody listening is not an error.
        let _ = self.events.send(json!({"event": event, "data": data}));
    }
}
