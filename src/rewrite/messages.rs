//! The messages a WebSocket upstream sends, filtered and masked one by one.
//!
//! A stream lives as long as its connection, and Chatwoot's (ActionCable)
//! carries every event of every conversation in the caller's inboxes:
//! each new message with its text, each conversation with its contact's
//! number. So on a route with `message_filter` or `redaction`, the
//! upstream's half of the stream is read frame by frame (RFC 6455 § 5),
//! each text message is put together from its fragments, and then:
//!
//! - a *control message* (one with the route's `control_messages` member:
//!   ActionCable's welcome, ping, subscription confirmation) passes,
//!   searched by the rules' `detect` only;
//! - any other message must carry one object where the filter points;
//!   a caller who may not see it does not get the message at all;
//! - what passes goes through the same rewriter as a 2xx JSON answer
//!   (the rules' `fields` with selectors from the message's root, and
//!   `detect`), then out as one unfragmented text frame.
//!
//! Control frames (ping, pong, close) pass as they come, between the
//! fragments of a message too. Everything that cannot be read fails the
//! stream closed: a binary message, compressed or masked frames, a text
//! message that is not JSON or lacks the filter's object, one over
//! [`MAX_MESSAGE_BYTES`]. The proxy then ends the stream; nothing of the
//! message leaves.

use std::sync::Arc;

use serde_json::Value;
use thiserror::Error;

use super::subscriptions::Identifiers;
use super::{rewrite, RewriteError, RewriteOutcome, RewritePlan};
use crate::echo::Credentials;
use crate::identity::Identity;
use crate::policy::{plan_row_filter, MessageFilter, RoleSet, RowFilterPlan};
use crate::redact::RedactionRule;

/// Largest message put together for reading (ActionCable's are a few KB).
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// What one caller's stream goes through.
#[derive(Debug, Clone)]
pub struct MessagePlan {
    /// Masks and detection for messages that are not control messages.
    data: RewritePlan,
    /// Detection alone, for control messages.
    control_plan: RewritePlan,
    filter: Option<(MessageFilter, RowFilterPlan)>,
    control: Option<Box<str>>,
}

impl MessagePlan {
    /// The plan for one caller: the filter as planned for `identity`, and
    /// each redaction rule whose `unless_permission` the caller lacks.
    /// `None` when nothing applies: the stream passes as it is.
    ///
    /// `always`: the stream is read even so (the route's `subscribe_as`
    /// puts identifiers back in every message).
    pub fn for_caller(
        filter: Option<&MessageFilter>,
        control: Option<&str>,
        redactions: &[Arc<RedactionRule>],
        identity: Option<&Identity>,
        roles: &RoleSet,
        always: bool,
    ) -> Option<MessagePlan> {
        let data = RewritePlan::for_caller(None, redactions, identity, roles);
        let filter = match (filter, identity) {
            (Some(f), Some(identity)) => match plan_row_filter(&f.filter, identity, roles) {
                RowFilterPlan::Skip => None,
                plan => Some((f.clone(), plan)),
            },
            // Without an identity (which a route's `jwt` auth never lets
            // through) no message is anyone's: each is dropped, never
            // passed unfiltered.
            (Some(f), None) => Some((
                f.clone(),
                RowFilterPlan::Keep {
                    owner: Some(crate::policy::OwnerMatch {
                        field: f.filter.field.clone(),
                        allowed_values: Vec::new(),
                    }),
                    hidden_labels: Vec::new(),
                },
            )),
            (None, _) => None,
        };
        if filter.is_none() && data.is_empty() && !always {
            return None;
        }
        let control_plan = RewritePlan {
            detect: data.detect.clone(),
            ..RewritePlan::default()
        };
        Some(MessagePlan {
            data,
            control_plan,
            filter,
            control: control.map(Box::from),
        })
    }
}

impl MessagePlan {
    /// Nothing to filter or mask: messages pass as they are (the stream is
    /// read only for `subscribe_as`).
    fn is_empty(&self) -> bool {
        self.filter.is_none() && self.data.is_empty() && self.control_plan.is_empty()
    }
}

/// Why a stream could not be read; each one ends it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MessageError {
    #[error("a frame with RSV bits set (compressed, e.g. permessage-deflate): its message cannot be read")]
    Encoded,
    #[error("the upstream masked a frame (a server must not): its message cannot be read")]
    Masked,
    #[error("a binary message: only JSON text messages can be filtered and masked")]
    Binary,
    #[error("not a WebSocket stream: {0}")]
    Protocol(&'static str),
    #[error("a message over {MAX_MESSAGE_BYTES} bytes")]
    TooLarge,
    #[error("a text message that is not UTF-8")]
    NotText,
    #[error("a message that is not JSON ({0})")]
    NotJson(String),
    #[error("a message without one object at `{0}` (message_filter.object)")]
    NoObject(String),
    #[error("a message: {0}")]
    Rewrite(#[from] RewriteError),
    #[error("a reload gave the route message rules this caller is under, and the stream was not read until then: ended so the client reconnects under them")]
    Reloaded,
}

/// The frame being read.
#[derive(Debug, Clone, Copy)]
struct Frame {
    opcode: u8,
    fin: bool,
    /// Payload bytes still to come.
    left: u64,
}

/// The upstream's half of one stream (see the module docs).
#[derive(Debug)]
pub struct MessageStream {
    /// Subscription identifiers to put back (`subscribe_as`), written by
    /// the client's half of the stream.
    identifiers: Identifiers,
    /// `None`: messages pass as they are, binary ones too (a reload left
    /// nothing to do for this caller).
    plan: Option<MessagePlan>,
    /// The frame header read so far (at most 10 bytes: servers do not mask).
    header: Vec<u8>,
    frame: Option<Frame>,
    /// A control frame, header and payload, until it is whole.
    control: Vec<u8>,
    /// The text message's payload so far, from its first fragment on.
    message: Vec<u8>,
    /// The opcode of the message being put together (text or binary).
    message_opcode: u8,
    in_message: bool,
    /// A close frame went out: nothing after it is a frame.
    closed: bool,
    /// Messages sent on, messages dropped, and values masked in what
    /// was sent.
    pub sent: u64,
    pub removed: u64,
    pub masked: u64,
    /// The upstream's credential found in messages (masked).
    pub credentials_masked: usize,
}

impl MessageStream {
    pub fn new(plan: MessagePlan) -> MessageStream {
        MessageStream {
            identifiers: Identifiers::default(),
            plan: Some(plan),
            header: Vec::with_capacity(10),
            frame: None,
            control: Vec::new(),
            message: Vec::new(),
            message_opcode: 0x1,
            in_message: false,
            closed: false,
            sent: 0,
            removed: 0,
            masked: 0,
            credentials_masked: 0,
        }
    }

    /// Whether messages are read at all (binary ones cannot be).
    fn reads(&self) -> bool {
        self.plan.as_ref().is_some_and(|p| !p.is_empty())
    }

    /// The identifiers the client's subscriptions were sent upstream with.
    pub fn identifiers_mut(&mut self) -> &mut Identifiers {
        &mut self.identifiers
    }

    /// One whole message, as a caller on this stream would get it
    /// (`None`: dropped); for `chatwarden explain` and `test`.
    pub fn one(&mut self, message: &[u8]) -> Result<Option<Vec<u8>>, MessageError> {
        self.decide(message.to_vec())
    }

    /// The plan for the messages still to come, after a reload (`None`:
    /// they pass as they are).
    pub fn replan(&mut self, plan: Option<MessagePlan>) {
        self.plan = plan;
    }

    /// The next bytes from the upstream, as they may go to the client: the
    /// control frames and whole, rewritten messages they complete.
    pub fn piece(&mut self, creds: &Credentials, piece: &[u8]) -> Result<Vec<u8>, MessageError> {
        let mut out = Vec::new();
        let mut rest = piece;
        while !rest.is_empty() && !self.closed {
            let Some(frame) = &mut self.frame else {
                let (&byte, after) = rest.split_first().unwrap_or((&0, &[]));
                rest = after;
                self.header.push(byte);
                if let Some(f) = self.frame_head()? {
                    if is_control(f.opcode) {
                        self.control.clear();
                        self.control.extend_from_slice(&self.header);
                    }
                    self.header.clear();
                    self.frame = Some(f);
                    if f.left == 0 {
                        self.frame_done(creds, f, &mut out)?;
                    }
                }
                continue;
            };
            let n = usize::try_from(frame.left)
                .unwrap_or(usize::MAX)
                .min(rest.len());
            let (chunk, after) = rest.split_at(n);
            rest = after;
            frame.left -= n as u64;
            let f = *frame;
            if is_control(f.opcode) {
                self.control.extend_from_slice(chunk);
            } else {
                self.message.extend_from_slice(chunk);
            }
            if f.left == 0 {
                self.frame_done(creds, f, &mut out)?;
            }
        }
        Ok(out)
    }

    /// The frame once `header` holds a whole one (RFC 6455 § 5.2), `None`
    /// while it needs more bytes; what cannot be read is an error.
    fn frame_head(&self) -> Result<Option<Frame>, MessageError> {
        let h = &self.header;
        let [first, second, ..] = **h else {
            return Ok(None);
        };
        if first & 0x70 != 0 {
            return Err(MessageError::Encoded);
        }
        if second & 0x80 != 0 {
            return Err(MessageError::Masked);
        }
        let Some(left) = crate::echo::payload_length(h) else {
            return Ok(None);
        };
        let frame = Frame {
            opcode: first & 0x0f,
            fin: first & 0x80 != 0,
            left,
        };
        match frame.opcode {
            0x8..=0xa if !frame.fin || left > 125 => Err(MessageError::Protocol(
                "a control frame fragmented or over 125 bytes",
            )),
            0x8..=0xa => Ok(Some(frame)),
            0x2 if self.reads() => Err(MessageError::Binary),
            0x1 | 0x2 if self.in_message => Err(MessageError::Protocol(
                "a new message began before the last one ended",
            )),
            0x0 if !self.in_message => Err(MessageError::Protocol(
                "a continuation frame with no message to continue",
            )),
            0x0..=0x2 => {
                let total = u64::try_from(self.message.len())
                    .unwrap_or(u64::MAX)
                    .saturating_add(left);
                if total > MAX_MESSAGE_BYTES as u64 {
                    return Err(MessageError::TooLarge);
                }
                Ok(Some(frame))
            }
            _ => Err(MessageError::Protocol("a reserved opcode")),
        }
    }

    fn frame_done(
        &mut self,
        creds: &Credentials,
        f: Frame,
        out: &mut Vec<u8>,
    ) -> Result<(), MessageError> {
        self.frame = None;
        if is_control(f.opcode) {
            out.append(&mut self.control);
            self.closed = f.opcode == 0x8;
            return Ok(());
        }
        if f.opcode != 0x0 {
            self.message_opcode = f.opcode;
        }
        self.in_message = !f.fin;
        if f.fin {
            let mut message = std::mem::take(&mut self.message);
            if !self.identifiers.is_empty() {
                // Before anything reads it: the token never meets a detector.
                self.identifiers.restore(&mut message);
            }
            if self.message_opcode == 0x2 && self.reads() {
                // A reload gave the stream a plan while it was under way.
                return Err(MessageError::Binary);
            }
            if let Some(mut text) = self.decide(message)? {
                self.credentials_masked += creds.mask(&mut text);
                push_frame(out, self.message_opcode, &text);
                self.sent += 1;
            }
        }
        Ok(())
    }

    /// One whole message: what to send in its place (`None`: nothing).
    fn decide(&mut self, message: Vec<u8>) -> Result<Option<Vec<u8>>, MessageError> {
        let Some(plan) = self.plan.as_ref().filter(|p| !p.is_empty()) else {
            return Ok(Some(message));
        };
        let text = std::str::from_utf8(&message).map_err(|_| MessageError::NotText)?;
        // The whole message as a tree only where the filter must look into
        // it; otherwise only its top-level names are read, for the control
        // member (the rewrite validates the rest).
        let value: Option<Value> = match &plan.filter {
            Some(_) => {
                Some(serde_json::from_str(text).map_err(|e| MessageError::NotJson(e.to_string()))?)
            }
            None => None,
        };
        let control = match (plan.control.as_deref(), &value) {
            (None, _) => false,
            (Some(member), Some(value)) => {
                value.as_object().is_some_and(|o| o.contains_key(member))
            }
            (Some(member), None) => has_member(text, member),
        };
        if let (false, Some(value)) = (control, &value) {
            if let Some((filter, filter_plan)) = &plan.filter {
                match filter.allows(value, filter_plan) {
                    Ok(true) => {}
                    Ok(false) => {
                        self.removed += 1;
                        return Ok(None);
                    }
                    Err(_) => {
                        return Err(MessageError::NoObject(
                            filter.filter.items.as_str().to_owned(),
                        ))
                    }
                }
            }
        }
        let rewrite_plan = if control {
            &plan.control_plan
        } else {
            &plan.data
        };
        match rewrite(
            &message,
            Some("application/json"),
            None,
            rewrite_plan,
            MAX_MESSAGE_BYTES,
        )? {
            RewriteOutcome::Rewritten { body, masked, .. } => {
                self.masked += masked;
                Ok(Some(body.to_vec()))
            }
            RewriteOutcome::Unchanged => Ok(Some(message)),
            RewriteOutcome::NotFound => Err(MessageError::Rewrite(RewriteError::Internal)),
        }
    }
}

/// Whether `text` is a JSON object with a top-level `member`; anything
/// else (not an object, not JSON) is not a control message, and the
/// rewrite that follows says what is wrong with it.
fn has_member(text: &str, member: &str) -> bool {
    use std::borrow::Cow;
    use std::collections::HashMap;
    serde_json::from_str::<HashMap<Cow<'_, str>, serde::de::IgnoredAny>>(text)
        .is_ok_and(|names| names.contains_key(member))
}

fn is_control(opcode: u8) -> bool {
    opcode & 0x8 != 0
}

/// Appends one final, unmasked frame of `opcode` carrying `payload`.
fn push_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    out.push(0x80 | opcode);
    let len = payload.len();
    if len < 126 {
        out.push(len as u8);
    } else if let Ok(short) = u16::try_from(len) {
        out.push(126);
        out.extend_from_slice(&short.to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(payload);
}

#[cfg(test)]
mod tests;
