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
//!
//! Links to the upstreams a route's upstream names in `links` lead
//! through the gateway, as in answers (see [`super::links`]). A stream read
//! for its links alone passes what it cannot read (a binary message, one
//! that is not JSON) as it is: a link left as written hides nothing.

use std::sync::Arc;

use serde_json::Value;
use thiserror::Error;

use super::frames::{push_frame, Found, FrameReader, Sender};
use super::subscriptions::Identifiers;
use super::{rewrite, Links, RewriteError, RewriteOutcome, RewritePlan};
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
        links: Option<Links>,
    ) -> Option<MessagePlan> {
        let mut data = RewritePlan::for_caller(None, redactions, identity, roles);
        data.links = links;
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
            links: data.links.clone(),
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

    /// Whether a message that cannot be read ends the stream: the plan
    /// filters or masks. One that only rewrites links passes it as it is.
    fn fails_closed(&self) -> bool {
        self.filter.is_some() || self.data.fails_closed() || self.control_plan.fails_closed()
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

/// The upstream's half of one stream (see the module docs).
#[derive(Debug)]
pub struct MessageStream {
    /// Subscription identifiers to put back (`subscribe_as`), written by
    /// the client's half of the stream.
    identifiers: Identifiers,
    /// `None`: messages pass as they are, binary ones too (a reload left
    /// nothing to do for this caller).
    plan: Option<MessagePlan>,
    frames: FrameReader,
    /// The message's payload so far, from its first fragment on.
    message: Vec<u8>,
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
            frames: FrameReader::new(Sender::Server, MAX_MESSAGE_BYTES),
            message: Vec::new(),
            sent: 0,
            removed: 0,
            masked: 0,
            credentials_masked: 0,
        }
    }

    /// Whether a message that cannot be read (binary) ends the stream.
    fn fails_closed(&self) -> bool {
        self.plan
            .as_ref()
            .is_some_and(|p| !p.is_empty() && p.fails_closed())
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
        // Out of `self` while it reads (`new` allocates nothing): the
        // finds are handled with the rest of `self`.
        let mut frames = std::mem::replace(&mut self.frames, FrameReader::new(Sender::Server, 0));
        let read = frames.read(piece, |found| match found {
            Found::Control(frame) => {
                out.extend_from_slice(frame);
                Ok(())
            }
            Found::Data {
                opcode,
                bytes,
                last,
            } => {
                if opcode == 0x2 && self.fails_closed() {
                    return Err(MessageError::Binary);
                }
                self.message.extend_from_slice(bytes);
                if last {
                    self.message_done(creds, opcode, &mut out)?;
                }
                Ok(())
            }
        });
        self.frames = frames;
        read.map(|()| out)
    }

    /// A whole message from the upstream: decided, and what passes framed.
    fn message_done(
        &mut self,
        creds: &Credentials,
        opcode: u8,
        out: &mut Vec<u8>,
    ) -> Result<(), MessageError> {
        let mut message = std::mem::take(&mut self.message);
        if !self.identifiers.is_empty() {
            // Before anything reads it: the token never meets a detector.
            self.identifiers.restore(&mut message);
        }
        // A binary message gets here only on a stream read for its links
        // alone (elsewhere it ended the stream): it passes as it is.
        let decided = if opcode == 0x2 {
            Some(message)
        } else {
            self.decide(message)?
        };
        if let Some(mut text) = decided {
            self.credentials_masked += creds.mask(&mut text);
            push_frame(out, opcode, &text, None);
            self.sent += 1;
        }
        Ok(())
    }

    /// One whole message: what to send in its place (`None`: nothing).
    fn decide(&mut self, message: Vec<u8>) -> Result<Option<Vec<u8>>, MessageError> {
        let Some(plan) = self.plan.as_ref().filter(|p| !p.is_empty()) else {
            return Ok(Some(message));
        };
        if !plan.fails_closed() && std::str::from_utf8(&message).is_err() {
            // Read for its links alone: nothing here to hide.
            return Ok(Some(message));
        }
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

#[cfg(test)]
mod tests;
