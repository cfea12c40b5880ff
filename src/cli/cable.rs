//! `chatwarden cable`: watch Chatwoot's live updates (its ActionCable
//! WebSocket) through the gateway as one token sees them, one line per
//! event. For the demo's guide, and for checking what a role's stream
//! carries after a policy change.

use std::process::ExitCode;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::limit::tls::{RedisTls, Trust};

/// What to watch and for how long.
pub struct Watch {
    pub url: String,
    pub token: String,
    /// `wss://`: trust only these CAs (PEM), not the system's.
    pub ca_file: Option<std::path::PathBuf>,
    /// Stop after this many events.
    pub count: usize,
    pub seconds: u64,
    /// Print each message as the gateway sent it.
    pub raw: bool,
}

pub fn run(w: &Watch) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("chatwarden cable: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(watch(w)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chatwarden cable: {e}");
            ExitCode::from(1)
        }
    }
}

async fn watch(w: &Watch) -> Result<(), String> {
    let mut req = w
        .url
        .as_str()
        .into_client_request()
        .map_err(|e| format!("{}: {e}", w.url))?;
    let bearer = format!("Bearer {}", w.token);
    req.headers_mut().insert(
        http::header::AUTHORIZATION,
        bearer
            .parse()
            .map_err(|_| "the token is not a header value".to_string())?,
    );
    let uri = req.uri().clone();
    let host = uri
        .host()
        .ok_or_else(|| format!("{}: no host", w.url))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let tls = match uri.scheme_str() {
        Some("ws") => false,
        Some("wss") => true,
        _ => return Err(format!("{}: use ws:// or wss://", w.url)),
    };
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| format!("{}: {e}", w.url))?;
    if !tls {
        return stream(w, req, tcp).await;
    }
    let trust = match &w.ca_file {
        None => Trust::System,
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let certs: Result<Vec<_>, _> = rustls_pemfile::certs(&mut pem.as_slice()).collect();
            Trust::Only(certs.map_err(|e| format!("{}: malformed PEM: {e}", path.display()))?)
        }
    };
    // The client side of TLS the Redis store uses: the system's roots or
    // the given CAs only, never unverified.
    let tls = RedisTls::new(trust, None).map_err(|e| e.to_string())?;
    let secured = tls
        .handshake(&host, tcp)
        .await
        .map_err(|e| format!("{}: TLS: {e}", w.url))?;
    stream(w, req, secured).await
}

/// The stream over `io` (plain or TLS): handshake, subscribe, print.
async fn stream<S>(w: &Watch, req: http::Request<()>, io: S) -> Result<(), String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut ws, _) = match tokio_tungstenite::client_async(req, io).await {
        Ok(opened) => opened,
        Err(WsError::Http(resp)) => {
            let body = resp.body().as_deref().unwrap_or_default();
            return Err(format!(
                "the stream was refused: {} {}",
                resp.status(),
                String::from_utf8_lossy(body).trim()
            ));
        }
        Err(e) => return Err(format!("{}: {e}", w.url)),
    };
    // Chatwoot's RoomChannel wants its user's pubsub token and id: through
    // the gateway (`subscribe_as`) every stream is the CRM key user's, and
    // the gateway puts them in.
    let identifier = json!({"channel": "RoomChannel"}).to_string();
    let subscribe = json!({"command": "subscribe", "identifier": identifier}).to_string();
    ws.send(Message::text(subscribe))
        .await
        .map_err(|e| format!("subscribing: {e}"))?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(w.seconds);
    let mut events = 0;
    while events < w.count {
        let next = match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(next) => next,
            Err(_) => {
                println!("({events} event(s) in {}s)", w.seconds);
                return Ok(());
            }
        };
        let text = match next {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(frame))) => {
                return Err(format!(
                    "the stream was closed{}",
                    frame
                        .map(|f| format!(": {} {}", f.code, f.reason))
                        .unwrap_or_default()
                ))
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(format!("the stream ended: {e}")),
            None => return Err("the stream ended".to_string()),
        };
        let message: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if message["type"] == "reject_subscription" {
            return Err("the subscription was rejected".to_string());
        }
        if message.get("type").is_some() {
            // ActionCable's own: welcome, ping, confirm_subscription.
            if w.raw && message["type"] != "ping" {
                println!("{text}");
            }
            continue;
        }
        events += 1;
        if w.raw {
            println!("{text}");
        } else {
            println!("{}", summary(&message["message"]));
        }
    }
    Ok(())
}

/// One line for one Chatwoot event: what happened, in which conversation,
/// and the personal data it carries (as the gateway let it through).
fn summary(m: &Value) -> String {
    let event = m["event"].as_str().unwrap_or("?");
    let d = &m["data"];
    let text = |v: &Value| {
        v.as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| v.to_string())
    };
    match event {
        "message.created" | "message.updated" => {
            let s = &d["sender"];
            let who = match s["phone_number"].as_str() {
                Some(phone) => format!("{} ({phone})", text(&s["name"])),
                None => text(&s["name"]),
            };
            format!(
                "{event:<27} conversation {:<3} assignee {:<4} {who}: {}",
                text(&d["conversation_id"]),
                text(&d["conversation"]["assignee_id"]),
                text(&d["content"])
            )
        }
        "contact.updated" | "contact.created" => format!(
            "{event:<27} contact {}: {} {}",
            text(&d["id"]),
            text(&d["phone_number"]),
            text(&d["email"])
        ),
        _ => {
            let contact = &d["meta"]["sender"];
            format!(
                "{event:<27} conversation {:<3} assignee {:<4} contact {} ({}, {})",
                text(&d["id"]),
                text(&d["meta"]["assignee"]["id"]),
                text(&contact["name"]),
                text(&contact["phone_number"]),
                text(&contact["email"])
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_event_with_what_it_carries() {
        let created = json!({"event": "message.created", "data": {
            "conversation_id": 7, "content": "Call me on +** **** ***123",
            "sender": {"name": "Sophie", "phone_number": "+*********123"},
            "conversation": {"assignee_id": 3}}});
        assert_eq!(
            summary(&created),
            "message.created             conversation 7   assignee 3    Sophie (+*********123): Call me on +** **** ***123"
        );
        let assigned = json!({"event": "assignee.changed", "data": {"id": 8,
            "meta": {"assignee": {"id": 3}, "sender": {"name": "Lukas", "phone_number": "+49**", "email": "l***@x.de"}}}});
        assert_eq!(
            summary(&assigned),
            "assignee.changed            conversation 8   assignee 3    contact Lukas (+49**, l***@x.de)"
        );
    }
}
