//! ActionCable subscriptions made as the CRM key's user (a WebSocket
//! route's `subscribe_as`).
//!
//! Chatwoot's `RoomChannel` streams whatever `pubsub_token` a client's
//! `subscribe` command names in its `identifier` (a JSON object written
//! as a string), with `user_id` and `account_id`. Through the gateway
//! every stream is the CRM key user's, and that token is a credential:
//! whoever holds it and reaches Chatwoot reads the account's stream
//! unfiltered. So, as with the API key, the gateway holds it and staff
//! never see it:
//!
//! - **client → upstream** ([`CommandStream`]): each text message that is
//!   a JSON object with a string `identifier` holding a JSON object gets
//!   the configured members set in that identifier (the client's own
//!   values, if any, overwritten). The gateway remembers which identifier
//!   it sent for which the client wrote ([`Identifiers`]). Other messages
//!   and control frames pass as the client sent them.
//! - **upstream → client**: each message's upstream identifier is put back
//!   to the client's ([`Identifiers::restore`], before the message is
//!   filtered and masked), so the client's ActionCable library matches it
//!   to its subscription. The token is then searched for like the upstream's
//!   other credentials and masked wherever else it shows.

use memchr::memmem;
use serde_json::{Map, Value};

use super::frames::{push_frame, Found, FrameReader, Sender};
use super::messages::MessageError;

/// Subscriptions remembered per stream; past this the oldest is forgotten
/// (its messages then reach the client with the token masked, which its
/// library does not match: safe, and no client subscribes this often).
const MAX_SUBSCRIPTIONS: usize = 64;

/// Largest client message put together for rewriting (commands are tiny).
pub const MAX_COMMAND_BYTES: usize = 64 * 1024;

/// The members a route sets in every subscription identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeAs {
    pub members: Vec<(String, String)>,
}

/// Which identifier the gateway sent upstream for which the client wrote,
/// as JSON string literals (what the messages carry).
#[derive(Debug, Default)]
pub struct Identifiers {
    /// (upstream's, client's)
    pairs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Identifiers {
    fn remember(&mut self, upstream: &str, client: &str) {
        let literal = |s: &str| serde_json::to_vec(s).unwrap_or_default();
        let (upstream, client) = (literal(upstream), literal(client));
        if self.pairs.iter().any(|(u, _)| *u == upstream) {
            return;
        }
        if self.pairs.len() == MAX_SUBSCRIPTIONS {
            self.pairs.remove(0);
        }
        self.pairs.push((upstream, client));
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// Puts the client's identifiers back in a message from the upstream.
    pub fn restore(&self, message: &mut Vec<u8>) {
        for (upstream, client) in &self.pairs {
            if memmem::find(message, upstream).is_none() {
                continue;
            }
            let mut out = Vec::with_capacity(message.len());
            let mut rest = message.as_slice();
            while let Some(at) = memmem::find(rest, upstream) {
                out.extend_from_slice(&rest[..at]);
                out.extend_from_slice(client);
                rest = &rest[at + upstream.len()..];
            }
            out.extend_from_slice(rest);
            *message = out;
        }
    }
}

/// The client's half of one stream (see the module docs).
#[derive(Debug)]
pub struct CommandStream {
    frames: FrameReader,
    /// The data message's payload so far.
    message: Vec<u8>,
}

impl Default for CommandStream {
    fn default() -> Self {
        CommandStream {
            frames: FrameReader::new(Sender::Client, MAX_COMMAND_BYTES),
            message: Vec::new(),
        }
    }
}

impl CommandStream {
    /// The next bytes from the client, as they go upstream.
    pub fn piece(
        &mut self,
        subscribe_as: &SubscribeAs,
        identifiers: &mut Identifiers,
        piece: &[u8],
    ) -> Result<Vec<u8>, MessageError> {
        let mut out = Vec::new();
        let message = &mut self.message;
        self.frames.read(piece, |found| {
            match found {
                Found::Control(frame) => out.extend_from_slice(frame),
                Found::Data {
                    opcode,
                    bytes,
                    last,
                } => {
                    message.extend_from_slice(bytes);
                    if last {
                        let whole = std::mem::take(message);
                        let sent = match opcode {
                            0x1 => {
                                rewrite_command(&whole, subscribe_as, identifiers).unwrap_or(whole)
                            }
                            _ => whole,
                        };
                        push_frame(&mut out, opcode, &sent, Some(rand::random()));
                    }
                }
            }
            Ok(())
        })?;
        Ok(out)
    }
}

/// The command with the configured members set in its identifier; `None`
/// when it has no identifier that is a JSON object (sent as it is).
fn rewrite_command(
    message: &[u8],
    subscribe_as: &SubscribeAs,
    identifiers: &mut Identifiers,
) -> Option<Vec<u8>> {
    let mut command: Map<String, Value> = serde_json::from_slice(message).ok()?;
    let client = command.get("identifier")?.as_str()?.to_owned();
    let mut identifier: Map<String, Value> = serde_json::from_str(&client).ok()?;
    for (name, value) in &subscribe_as.members {
        identifier.insert(name.clone(), Value::String(value.clone()));
    }
    let upstream = Value::Object(identifier).to_string();
    identifiers.remember(&upstream, &client);
    command.insert("identifier".to_owned(), Value::String(upstream));
    serde_json::to_vec(&command).ok()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn subscribe_as() -> SubscribeAs {
        SubscribeAs {
            members: vec![
                (
                    "pubsub_token".to_owned(),
                    "Tk9xQ2mZ7pLrV4aBcD8eF1gH".to_owned(),
                ),
                ("user_id".to_owned(), "1".to_owned()),
            ],
        }
    }

    /// A client frame, masked with `mask`.
    fn client_frame(opcode: u8, fin: bool, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut out = vec![opcode | if fin { 0x80 } else { 0 }];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    /// The frames in `bytes`, unmasked: (opcode, FIN, payload).
    fn read_masked(mut bytes: &[u8]) -> Vec<(u8, bool, Vec<u8>)> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            assert_ne!(bytes[1] & 0x80, 0, "frames upstream are masked");
            let (len, at) = match bytes[1] & 0x7f {
                126 => (usize::from(u16::from_be_bytes([bytes[2], bytes[3]])), 4),
                n => (usize::from(n), 2),
            };
            let mask = [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]];
            let payload = bytes[at + 4..at + 4 + len]
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ mask[i % 4])
                .collect();
            out.push((bytes[0] & 0x0f, bytes[0] & 0x80 != 0, payload));
            bytes = &bytes[at + 4 + len..];
        }
        out
    }

    #[test]
    fn a_subscription_is_made_as_the_configured_user_and_mapped_back() {
        let client_id =
            json!({"channel": "RoomChannel", "pubsub_token": "guess", "account_id": 1}).to_string();
        let subscribe = json!({"command": "subscribe", "identifier": client_id}).to_string();
        let (a, b) = subscribe.as_bytes().split_at(20);
        let input = [
            client_frame(0x1, false, a, [1, 2, 3, 4]),
            client_frame(0x9, true, b"hi", [9, 9, 9, 9]),
            client_frame(0x0, true, b, [5, 6, 7, 8]),
            client_frame(0x1, true, b"not json", [0, 1, 0, 1]),
            client_frame(0x2, true, &[0, 255], [7, 7, 7, 7]),
        ]
        .concat();
        for size in [1, 5, input.len()] {
            let mut ids = Identifiers::default();
            let mut stream = CommandStream::default();
            let mut out = Vec::new();
            for piece in input.chunks(size) {
                out.extend(
                    stream
                        .piece(&subscribe_as(), &mut ids, piece)
                        .expect("read"),
                );
            }
            let frames = read_masked(&out);
            assert_eq!(frames.len(), 4, "pieces of {size}");
            assert_eq!(
                frames[0],
                (0x9, true, b"hi".to_vec()),
                "control frames pass first"
            );
            let sent: Value = serde_json::from_slice(&frames[1].2).expect("JSON");
            assert_eq!(sent["command"], "subscribe");
            let upstream_id: Value =
                serde_json::from_str(sent["identifier"].as_str().expect("a string")).expect("JSON");
            assert_eq!(
                upstream_id,
                json!({"channel": "RoomChannel", "pubsub_token": "Tk9xQ2mZ7pLrV4aBcD8eF1gH", "user_id": "1", "account_id": 1})
            );
            assert_eq!(frames[2], (0x1, true, b"not json".to_vec()));
            assert_eq!(frames[3], (0x2, true, vec![0, 255]));

            // The upstream's confirmation names its identifier; the client
            // gets its own back.
            let mut confirm =
                json!({"identifier": sent["identifier"], "type": "confirm_subscription"})
                    .to_string()
                    .into_bytes();
            ids.restore(&mut confirm);
            let confirm: Value = serde_json::from_slice(&confirm).expect("JSON");
            assert_eq!(confirm["identifier"], client_id.as_str());
        }
    }

    #[test]
    fn what_a_client_must_not_send_ends_the_stream() {
        let mut ids = Identifiers::default();
        let unmasked = [0x81, 0x02, b'{', b'}'];
        assert_eq!(
            CommandStream::default().piece(&subscribe_as(), &mut ids, &unmasked),
            Err(MessageError::Protocol("a client frame without a mask"))
        );
        let mut big = vec![0x81, 0x80 | 127];
        big.extend_from_slice(&((MAX_COMMAND_BYTES + 1) as u64).to_be_bytes());
        big.extend_from_slice(&[0; 4]);
        assert_eq!(
            CommandStream::default().piece(&subscribe_as(), &mut ids, &big),
            Err(MessageError::TooLarge)
        );
        assert!(ids.is_empty());
    }
}
