//! A Chatwoot-like CRM: the subset of Chatwoot's application API the
//! gateway protects, with the paths and JSON shapes of
//! `specs/chatwoot-application-api.json`.
//!
//! Where the spec is silent or self-contradictory, real Chatwoot's behaviour
//! is followed: contact create answers `{"payload":{"contact":…,
//! "contact_inbox":…}}`, contact update answers `{"payload": contact}` with
//! 200, unassigned conversations carry no `meta.assignee` key, and the
//! account labels list lives at `GET …/labels` as `{"payload":[…]}`.
//!
//! Demo extension: `GET /api/v1/accounts/{account_id}/contacts/export`
//! returns every contact in one JSON body (`{"meta":{"count"},"payload"}`).
//! Chatwoot's own export mails a CSV; a single large JSON body is what the
//! gateway's rate limiting and redaction need to be shown against.
//!
//! A customer's photo sent with a message is an attachment whose `data_url`
//! points at the CRM's own host, as Rails' ActiveStorage serves it (see
//! [`storage`]).
//!
//! Lists are in ascending id order; contacts come 15 a page and
//! conversations 25 a page, as in Chatwoot. State lives in memory per
//! server, so writes are visible to later requests of the same server only.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use http::{Method, StatusCode};
use serde_json::{json, Map, Value};
use tokio::net::TcpListener;

use super::data::{self, Direction, Status};
use super::http::{empty, serve_upgrading, Request, Response};
use super::DEMO_CRM_API_TOKEN;

/// Chatwoot's page size for contact lists and searches.
pub const CONTACTS_PER_PAGE: usize = 15;
/// Chatwoot's page size for conversation lists.
pub const CONVERSATIONS_PER_PAGE: usize = 25;

mod cable;
mod storage;

/// Serves the CRM on `listener` until the future is dropped: its API, and
/// its live updates at `/cable` (see [`cable`]).
pub(super) async fn run(listener: TcpListener) {
    let mut seeded = Crm::seeded();
    seeded.origin = listener
        .local_addr()
        .map(|a| format!("http://{a}"))
        .unwrap_or_default();
    let events = seeded.events.clone();
    let crm = Arc::new(Mutex::new(seeded));
    let writing = tokio::spawn(cable::customers_write(Arc::clone(&crm), events.clone()));
    serve_upgrading(
        listener,
        move |req| {
            // A handler that panicked mid-update would poison the lock; the
            // demo state is still usable, so carry on with it.
            let mut crm = crm.lock().unwrap_or_else(PoisonError::into_inner);
            crm.handle(req)
        },
        Some(cable::hook(events)),
    )
    .await;
    writing.abort();
}

/// The CRM's mutable state.
struct Crm {
    contacts: Vec<StoredContact>,
    conversations: Vec<StoredConversation>,
    messages: Vec<StoredMessage>,
    next_contact_id: u64,
    next_message_id: u64,
    /// The account's live events, to every open `/cable` stream.
    events: cable::Events,
    /// `http://127.0.0.1:port`, where its attachments' links point (empty:
    /// paths).
    origin: String,
}

/// A contact as Chatwoot serializes it (without `contact_inboxes`), so that
/// updates are merges of JSON fields.
struct StoredContact {
    id: u64,
    inbox_id: Option<u64>,
    json: Map<String, Value>,
}

struct StoredConversation {
    seed: &'static data::Conversation,
    assignee_id: Option<u64>,
    team_id: Option<u64>,
    status: Status,
    updated_at: i64,
}

struct StoredMessage {
    id: u64,
    conversation_id: u64,
    direction: Direction,
    content: String,
    agent_id: Option<u64>,
    created_at: i64,
}

/// What a handler failed with, rendered in Chatwoot's error shapes.
enum Failure {
    Unauthenticated,
    InvalidToken,
    NotFound,
    BadRequest(&'static str),
    Unprocessable {
        message: String,
        attribute: &'static str,
    },
}

type Outcome = Result<Response, Failure>;

impl Crm {
    fn seeded() -> Self {
        let contacts = data::contacts()
            .iter()
            .map(|c| StoredContact {
                id: c.id,
                inbox_id: Some(c.inbox_id),
                json: seed_contact_json(c),
            })
            .collect();
        let conversations = data::conversations()
            .iter()
            .map(|seed| StoredConversation {
                seed,
                assignee_id: seed.assignee_id,
                team_id: seed.team_id,
                status: seed.status,
                updated_at: last_seed_activity(seed.id).unwrap_or(seed.created_at),
            })
            .collect();
        let messages = data::messages()
            .iter()
            .map(|m| StoredMessage {
                id: m.id,
                conversation_id: m.conversation_id,
                direction: m.direction,
                content: m.content.to_owned(),
                agent_id: m.agent_id,
                created_at: m.created_at,
            })
            .collect();
        Crm {
            contacts,
            conversations,
            messages,
            next_contact_id: data::contacts().len() as u64 + 1,
            next_message_id: data::FIRST_RUNTIME_MESSAGE_ID,
            events: tokio::sync::broadcast::channel(256).0,
            origin: String::new(),
        }
    }

    fn handle(&mut self, req: &Request) -> Response {
        let mut response = self
            .route(req)
            .unwrap_or_else(|failure| failure.into_response());
        if req.method != Method::GET && response.status().is_success() {
            self.announce(req);
        }
        // Chatwoot run with CW_API_ONLY_SERVER answers CORS for every path
        // (rack-cors, `origins '*'`, its session headers exposed): any
        // site's page may read. The gateway drops this and answers for
        // itself.
        if req.header("origin").is_some() {
            let h = response.headers_mut();
            h.insert(
                http::header::ACCESS_CONTROL_ALLOW_ORIGIN,
                http::HeaderValue::from_static("*"),
            );
            h.insert(
                http::header::ACCESS_CONTROL_EXPOSE_HEADERS,
                http::HeaderValue::from_static("access-token, client, uid, expiry"),
            );
        }
        response
    }

    fn route(&mut self, req: &Request) -> Outcome {
        // Stored files are Rails' own: their signed URLs are the
        // capability, no API token.
        if let ["rails", "active_storage", rest @ ..] = req.segments().as_slice() {
            if req.method == Method::GET {
                return Ok(storage::serve(&self.origin, rest));
            }
        }
        // Chatwoot authenticates before routing, so even unknown paths need
        // the token; that also proves the gateway injected it.
        match req.header("api_access_token") {
            None => return Err(Failure::Unauthenticated),
            Some(token) if token != DEMO_CRM_API_TOKEN => return Err(Failure::InvalidToken),
            Some(_) => {}
        }
        let segments = req.segments();
        let rest = match segments.as_slice() {
            ["api", "v1", "accounts", account, rest @ ..] => {
                if parse_id(account) != Some(data::ACCOUNT_ID) {
                    return Err(Failure::NotFound);
                }
                rest
            }
            _ => return Err(Failure::NotFound),
        };
        let method = &req.method;
        match rest {
            ["contacts"] if method == Method::GET => Ok(self.list_contacts(req, None)),
            ["contacts"] if method == Method::POST => self.create_contact(req),
            ["contacts", "search"] if method == Method::GET => {
                let q = req.query("q").unwrap_or("").to_lowercase();
                Ok(self.list_contacts(req, Some(&q)))
            }
            ["contacts", "export"] if method == Method::GET => Ok(self.export_contacts()),
            ["contacts", id] if method == Method::GET => self.show_contact(id_of(id)?),
            ["contacts", id] if method == Method::PUT || method == Method::PATCH => {
                self.update_contact(id_of(id)?, req)
            }
            ["contacts", id] if method == Method::DELETE => self.delete_contact(id_of(id)?),
            ["conversations"] if method == Method::GET => self.list_conversations(req),
            ["conversations", "meta"] if method == Method::GET => self.conversation_counts(req),
            ["conversations", id] if method == Method::GET => {
                let conversation = self.conversation(id_of(id)?)?;
                Ok(ok(self.conversation_json(conversation)))
            }
            ["conversations", id, "messages"] if method == Method::GET => {
                self.list_messages(id_of(id)?)
            }
            ["conversations", id, "messages"] if method == Method::POST => {
                self.create_message(id_of(id)?, req)
            }
            ["conversations", id, "assignments"] if method == Method::POST => {
                self.assign(id_of(id)?, req)
            }
            ["conversations", id, "toggle_status"] if method == Method::POST => {
                self.toggle_status(id_of(id)?, req)
            }
            ["agents"] if method == Method::GET => Ok(ok(Value::Array(
                data::agents().iter().map(agent_json).collect(),
            ))),
            ["teams"] if method == Method::GET => Ok(ok(Value::Array(
                data::teams().iter().map(team_json).collect(),
            ))),
            ["inboxes"] if method == Method::GET => Ok(ok(json!({
                "payload": data::inboxes().iter().map(inbox_json).collect::<Vec<_>>()
            }))),
            ["labels"] if method == Method::GET => Ok(ok(json!({
                "payload": data::labels().iter().map(label_json).collect::<Vec<_>>()
            }))),
            _ => Err(Failure::NotFound),
        }
    }

    /// `GET …/contacts` and, with `search`, `GET …/contacts/search`.
    fn list_contacts(&self, req: &Request, search: Option<&str>) -> Response {
        let matching: Vec<&StoredContact> = self
            .contacts
            .iter()
            .filter(|c| search.is_none_or(|q| contact_matches(&c.json, q)))
            .collect();
        let page = page_param(req);
        let payload: Vec<Value> = page_of(&matching, page, CONTACTS_PER_PAGE)
            .iter()
            .map(|c| contact_with_inboxes(c))
            .collect();
        ok(json!({
            "meta": { "count": matching.len(), "current_page": page.to_string() },
            "payload": payload,
        }))
    }

    fn export_contacts(&self) -> Response {
        let payload: Vec<Value> = self.contacts.iter().map(contact_with_inboxes).collect();
        ok(json!({ "meta": { "count": payload.len() }, "payload": payload }))
    }

    fn show_contact(&self, id: u64) -> Outcome {
        let contact = self.contact(id)?;
        Ok(ok(json!({ "payload": contact_with_inboxes(contact) })))
    }

    fn create_contact(&mut self, req: &Request) -> Outcome {
        let body = json_object(req)?;
        let inbox = match body.get("inbox_id") {
            None | Some(Value::Null) => None,
            Some(value) => Some(
                value
                    .as_u64()
                    .and_then(data::inbox)
                    .ok_or(Failure::NotFound)?,
            ),
        };
        let id = self.next_contact_id;
        let mut fields = into_object(json!({
            "additional_attributes": {},
            "availability_status": "offline",
            "email": null,
            "id": id,
            "name": "",
            "phone_number": null,
            "blocked": false,
            "identifier": null,
            "thumbnail": "",
            "custom_attributes": {},
            "last_activity_at": null,
            "created_at": now(),
        }));
        self.apply_contact_fields(&mut fields, &body, None)?;
        self.next_contact_id += 1;
        let stored = StoredContact {
            id,
            inbox_id: inbox.map(|i| i.id),
            json: fields,
        };
        let response = json!({
            "payload": {
                "contact": contact_with_inboxes(&stored),
                "contact_inbox": {
                    "inbox": inbox.map(inbox_json),
                    "source_id": source_id(&stored),
                },
            }
        });
        self.contacts.push(stored);
        Ok(ok(response))
    }

    fn update_contact(&mut self, id: u64, req: &Request) -> Outcome {
        let body = json_object(req)?;
        let index = self
            .contacts
            .iter()
            .position(|c| c.id == id)
            .ok_or(Failure::NotFound)?;
        let mut fields = self.contacts[index].json.clone();
        self.apply_contact_fields(&mut fields, &body, Some(id))?;
        self.contacts[index].json = fields;
        Ok(ok(
            json!({ "payload": contact_with_inboxes(&self.contacts[index]) }),
        ))
    }

    fn delete_contact(&mut self, id: u64) -> Outcome {
        self.contact(id)?;
        // Chatwoot destroys a contact's conversations with it.
        let gone: Vec<u64> = self
            .conversations
            .iter()
            .filter(|c| c.seed.contact_id == id)
            .map(|c| c.seed.id)
            .collect();
        self.contacts.retain(|c| c.id != id);
        self.conversations.retain(|c| c.seed.contact_id != id);
        self.messages.retain(|m| !gone.contains(&m.conversation_id));
        Ok(empty(StatusCode::OK))
    }

    /// Copies the writable contact fields from `body` into `fields`,
    /// rejecting what Chatwoot's model validations reject.
    fn apply_contact_fields(
        &self,
        fields: &mut Map<String, Value>,
        body: &Map<String, Value>,
        own_id: Option<u64>,
    ) -> Result<(), Failure> {
        for key in ["name", "identifier"] {
            if let Some(value) = body.get(key) {
                fields.insert(key.to_owned(), string_or_null(value, key)?);
            }
        }
        if let Some(value) = body.get("email") {
            let email = string_or_null(value, "email")?;
            if let Some(address) = email.as_str() {
                if !address.contains('@') {
                    return Err(invalid("Email is invalid", "email"));
                }
                if self.taken("email", address, own_id) {
                    // Chatwoot renders `errors.full_messages` of a model
                    // validation; a uniqueness message that interpolates
                    // `%{value}` (common in Rails apps) echoes what the
                    // client sent, which makes this a realistic leak for the
                    // gateway's error-body masking to stop.
                    return Err(invalid(
                        &format!("Email {address} has already been taken"),
                        "email",
                    ));
                }
            }
            fields.insert("email".to_owned(), email);
        }
        if let Some(value) = body.get("phone_number") {
            let phone = string_or_null(value, "phone_number")?;
            if let Some(number) = phone.as_str() {
                if !is_e164(number) {
                    return Err(invalid(
                        "Phone number should be in e164 format",
                        "phone_number",
                    ));
                }
                if self.taken("phone_number", number, own_id) {
                    return Err(invalid(
                        &format!("Phone number {number} has already been taken"),
                        "phone_number",
                    ));
                }
            }
            fields.insert("phone_number".to_owned(), phone);
        }
        if let Some(value) = body.get("blocked") {
            let blocked = value
                .as_bool()
                .ok_or(Failure::BadRequest("blocked must be a boolean"))?;
            fields.insert("blocked".to_owned(), Value::Bool(blocked));
        }
        for key in ["additional_attributes", "custom_attributes"] {
            match body.get(key) {
                None => {}
                Some(Value::Object(update)) => {
                    if let Some(Value::Object(existing)) = fields.get_mut(key) {
                        existing.extend(update.clone());
                    }
                }
                Some(_) => return Err(Failure::BadRequest("attributes must be JSON objects")),
            }
        }
        Ok(())
    }

    /// Whether another contact already uses `value` for `field`.
    fn taken(&self, field: &str, value: &str, own_id: Option<u64>) -> bool {
        self.contacts.iter().any(|c| {
            Some(c.id) != own_id
                && c.json
                    .get(field)
                    .and_then(Value::as_str)
                    .is_some_and(|v| v.eq_ignore_ascii_case(value))
        })
    }

    fn list_conversations(&self, req: &Request) -> Outcome {
        let (in_scope, meta) = self.counted_conversations(req)?;
        let mine = |c: &StoredConversation| c.assignee_id == Some(data::TOKEN_OWNER_AGENT_ID);
        let unassigned = |c: &StoredConversation| c.assignee_id.is_none();
        let tab: Vec<&StoredConversation> = match req.query("assignee_type").unwrap_or("all") {
            "all" => in_scope,
            "me" => in_scope.into_iter().filter(|c| mine(c)).collect(),
            "unassigned" => in_scope.into_iter().filter(|c| unassigned(c)).collect(),
            "assigned" => in_scope.into_iter().filter(|c| !unassigned(c)).collect(),
            _ => return Err(Failure::BadRequest("unknown assignee_type")),
        };
        let payload: Vec<Value> = page_of(&tab, page_param(req), CONVERSATIONS_PER_PAGE)
            .iter()
            .map(|c| self.conversation_json(c))
            .collect();
        Ok(ok(json!({ "data": { "meta": meta, "payload": payload } })))
    }

    /// `GET conversations/meta`: the list's counts alone.
    fn conversation_counts(&self, req: &Request) -> Outcome {
        let (_, meta) = self.counted_conversations(req)?;
        Ok(ok(json!({ "meta": meta })))
    }

    /// The conversations a list's status/inbox/team/label/text filters
    /// select, and Chatwoot's counts of them per assignee tab (counted
    /// before the assignee filter picks one tab; "mine" is the API key's
    /// owner, whoever asks through the gateway).
    fn counted_conversations(
        &self,
        req: &Request,
    ) -> Result<(Vec<&StoredConversation>, Value), Failure> {
        let status = req.query("status").unwrap_or("open");
        let status = match status {
            "all" => None,
            other => Some(Status::parse(other).ok_or(Failure::BadRequest("unknown status"))?),
        };
        let inbox_id = optional_id(req, "inbox_id")?;
        let team_id = optional_id(req, "team_id")?;
        let labels = req.query_all("labels");
        let q = req.query("q").map(str::to_lowercase);
        let in_scope: Vec<&StoredConversation> = self
            .conversations
            .iter()
            .filter(|c| status.is_none_or(|s| c.status == s))
            .filter(|c| inbox_id.is_none_or(|id| c.seed.inbox_id == id))
            .filter(|c| team_id.is_none_or(|id| c.team_id == Some(id)))
            .filter(|c| labels.iter().all(|l| c.seed.labels.contains(l)))
            .filter(|c| {
                q.as_deref().is_none_or(|q| {
                    self.messages_of(c.seed.id)
                        .any(|m| m.content.to_lowercase().contains(q))
                })
            })
            .collect();
        let mine = |c: &StoredConversation| c.assignee_id == Some(data::TOKEN_OWNER_AGENT_ID);
        let unassigned = |c: &StoredConversation| c.assignee_id.is_none();
        let meta = json!({
            "mine_count": in_scope.iter().filter(|c| mine(c)).count(),
            "unassigned_count": in_scope.iter().filter(|c| unassigned(c)).count(),
            "assigned_count": in_scope.iter().filter(|c| !unassigned(c)).count(),
            "all_count": in_scope.len(),
        });
        Ok((in_scope, meta))
    }

    fn list_messages(&self, id: u64) -> Outcome {
        let conversation = self.conversation(id)?;
        let contact = self.contact(conversation.seed.contact_id)?;
        let mut meta = into_object(json!({
            "labels": conversation.seed.labels,
            "additional_attributes": {},
            "contact": contact_detail_json(contact),
            "agent_last_seen_at": conversation.updated_at,
            "assignee_last_seen_at": conversation.updated_at,
        }));
        if let Some(agent) = conversation.assignee_id.and_then(data::agent) {
            meta.insert("assignee".to_owned(), agent_json(agent));
        }
        let payload: Vec<Value> = self
            .messages_of(id)
            .map(|m| self.message_json(m, conversation))
            .collect();
        Ok(ok(json!({ "meta": meta, "payload": payload })))
    }

    fn create_message(&mut self, id: u64, req: &Request) -> Outcome {
        self.conversation(id)?;
        let body = json_object(req)?;
        let content = match body.get("content").and_then(Value::as_str) {
            Some(content) if !content.trim().is_empty() => content.to_owned(),
            _ => return Err(invalid("Content can't be blank", "content")),
        };
        let private = body
            .get("private")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let direction = match body.get("message_type").and_then(Value::as_str) {
            None | Some("outgoing") if private => Direction::PrivateNote,
            None | Some("outgoing") => Direction::Outgoing,
            Some("incoming") => Direction::Incoming,
            Some(_) => {
                return Err(invalid(
                    "Message type is not included in the list",
                    "message_type",
                ))
            }
        };
        let now = now();
        let message = StoredMessage {
            id: self.next_message_id,
            conversation_id: id,
            direction,
            content,
            agent_id: match direction {
                Direction::Incoming => None,
                Direction::Outgoing | Direction::PrivateNote => Some(data::TOKEN_OWNER_AGENT_ID),
            },
            created_at: now,
        };
        self.next_message_id += 1;
        if let Some(conversation) = self.conversations.iter_mut().find(|c| c.seed.id == id) {
            conversation.updated_at = now;
        }
        let conversation = self.conversation(id)?;
        let response = self.message_json(&message, conversation);
        self.messages.push(message);
        Ok(ok(response))
    }

    fn assign(&mut self, id: u64, req: &Request) -> Outcome {
        self.conversation(id)?;
        let body = json_object(req)?;
        let conversation = self
            .conversations
            .iter_mut()
            .find(|c| c.seed.id == id)
            .ok_or(Failure::NotFound)?;
        conversation.updated_at = now();
        // As in Chatwoot, `assignee_id` wins over `team_id`; a null
        // assignee unassigns and the answer is `null`.
        match body.get("assignee_id") {
            Some(Value::Null) => {
                conversation.assignee_id = None;
                return Ok(ok(Value::Null));
            }
            Some(value) => {
                let agent = value
                    .as_u64()
                    .and_then(data::agent)
                    .ok_or(Failure::NotFound)?;
                conversation.assignee_id = Some(agent.id);
                return Ok(ok(agent_json(agent)));
            }
            None => {}
        }
        match body.get("team_id") {
            Some(Value::Null) => {
                conversation.team_id = None;
                Ok(ok(Value::Null))
            }
            Some(value) => {
                let team = value
                    .as_u64()
                    .and_then(data::team)
                    .ok_or(Failure::NotFound)?;
                conversation.team_id = Some(team.id);
                Ok(ok(team_json(team)))
            }
            None => Err(Failure::BadRequest("assignee_id or team_id is required")),
        }
    }

    fn toggle_status(&mut self, id: u64, req: &Request) -> Outcome {
        let conversation = self
            .conversations
            .iter_mut()
            .find(|c| c.seed.id == id)
            .ok_or(Failure::NotFound)?;
        // Chatwoot accepts an empty body and then flips open <-> resolved.
        let requested = if req.body.is_empty() {
            None
        } else {
            json_object(req)?
                .get("status")
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let status = match requested.as_deref() {
            Some(name) => Status::parse(name).ok_or(Failure::Unprocessable {
                message: "Status is not included in the list".to_owned(),
                attribute: "status",
            })?,
            None if conversation.status == Status::Open => Status::Resolved,
            None => Status::Open,
        };
        conversation.status = status;
        conversation.updated_at = now();
        Ok(ok(json!({
            "meta": {},
            "payload": {
                "success": true,
                "current_status": status.as_str(),
                "conversation_id": id,
            }
        })))
    }

    fn contact(&self, id: u64) -> Result<&StoredContact, Failure> {
        self.contacts
            .iter()
            .find(|c| c.id == id)
            .ok_or(Failure::NotFound)
    }

    fn conversation(&self, id: u64) -> Result<&StoredConversation, Failure> {
        self.conversations
            .iter()
            .find(|c| c.seed.id == id)
            .ok_or(Failure::NotFound)
    }

    fn messages_of(&self, conversation_id: u64) -> impl Iterator<Item = &StoredMessage> {
        self.messages
            .iter()
            .filter(move |m| m.conversation_id == conversation_id)
    }

    /// A conversation as Chatwoot's conversation partial renders it.
    fn conversation_json(&self, conversation: &StoredConversation) -> Value {
        let seed = conversation.seed;
        let last = self
            .messages_of(seed.id)
            .last()
            .map(|m| self.message_json(m, conversation));
        let mut meta = Map::new();
        if let Ok(contact) = self.contact(seed.contact_id) {
            meta.insert("sender".to_owned(), Value::Object(contact.json.clone()));
        }
        meta.insert("channel".to_owned(), json!("Channel::Whatsapp"));
        if let Some(agent) = conversation.assignee_id.and_then(data::agent) {
            meta.insert("assignee".to_owned(), agent_json(agent));
        }
        if let Some(team) = conversation.team_id.and_then(data::team) {
            meta.insert("team".to_owned(), team_json(team));
        }
        meta.insert("hmac_verified".to_owned(), json!(false));
        let region = data::inbox(seed.inbox_id).map(|i| i.region.as_str());
        json!({
            "meta": meta,
            "id": seed.id,
            "messages": last.iter().collect::<Vec<_>>(),
            "account_id": data::ACCOUNT_ID,
            "uuid": format!("6f1c2a4e-0000-4000-8000-{:012}", seed.id),
            "additional_attributes": {},
            "agent_last_seen_at": conversation.updated_at,
            "assignee_last_seen_at": conversation.updated_at,
            "can_reply": true,
            "contact_last_seen_at": conversation.updated_at,
            "custom_attributes": { "region": region },
            "inbox_id": seed.inbox_id,
            "labels": seed.labels,
            "muted": false,
            "snoozed_until": null,
            "status": conversation.status.as_str(),
            "created_at": seed.created_at,
            "updated_at": conversation.updated_at,
            "timestamp": conversation.updated_at,
            "first_reply_created_at": self
                .messages_of(seed.id)
                .find(|m| m.direction == Direction::Outgoing)
                .map(|m| m.created_at),
            "unread_count": 0,
            "last_non_activity_message": last,
            "last_activity_at": conversation.updated_at,
            "priority": seed.priority,
            "waiting_since": if conversation.assignee_id.is_none() { seed.created_at } else { 0 },
            "sla_policy_id": null,
            "applied_sla": null,
            "sla_events": [],
        })
    }

    /// A message as Chatwoot's message partial renders it.
    fn message_json(&self, message: &StoredMessage, conversation: &StoredConversation) -> Value {
        let (message_type, sender_type, sender) = match message.direction {
            Direction::Incoming => (
                0,
                "contact",
                self.contact(conversation.seed.contact_id)
                    .map(contact_detail_json)
                    .unwrap_or(Value::Null),
            ),
            Direction::Outgoing | Direction::PrivateNote => (
                1,
                "agent",
                message
                    .agent_id
                    .and_then(data::agent)
                    .map(agent_json)
                    .unwrap_or(Value::Null),
            ),
        };
        let sender_id = sender.get("id").cloned().unwrap_or(Value::Null);
        let mut json = json!({
            "id": message.id,
            "content": message.content,
            "account_id": data::ACCOUNT_ID,
            "inbox_id": conversation.seed.inbox_id,
            "conversation_id": message.conversation_id,
            "message_type": message_type,
            "created_at": message.created_at,
            "updated_at": message.created_at,
            "private": message.direction == Direction::PrivateNote,
            "status": if message.direction == Direction::Incoming { "read" } else { "delivered" },
            "source_id": if message.direction == Direction::PrivateNote {
                Value::Null
            } else {
                let wa_id = self
                    .contact(conversation.seed.contact_id)
                    .ok()
                    .and_then(source_id)
                    .unwrap_or_default();
                json!(wamid(&wa_id, message.id))
            },
            "content_type": "text",
            "content_attributes": {},
            "sender_type": sender_type,
            "sender_id": sender_id,
            "external_source_ids": {},
            "additional_attributes": {},
            "processed_message_content": message.content,
            "sentiment": {},
            "sender": sender,
        });
        let attachments: Vec<Value> = data::attachments_of(message.id)
            .map(|a| storage::attachment_json(&self.origin, a))
            .collect();
        if !attachments.is_empty() {
            // Chatwoot writes the key only for a message that has some.
            json["attachments"] = Value::Array(attachments);
        }
        json
    }
}

impl Failure {
    fn into_response(self) -> Response {
        let (status, body) = match self {
            Failure::Unauthenticated => (
                StatusCode::UNAUTHORIZED,
                json!({ "errors": ["You need to sign in or sign up before continuing."] }),
            ),
            Failure::InvalidToken => (
                StatusCode::UNAUTHORIZED,
                json!({ "error": "Invalid Access Token" }),
            ),
            Failure::NotFound => (
                StatusCode::NOT_FOUND,
                json!({ "error": "Resource could not be found" }),
            ),
            Failure::BadRequest(message) => (StatusCode::BAD_REQUEST, json!({ "error": message })),
            Failure::Unprocessable { message, attribute } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({ "message": message, "attributes": [attribute] }),
            ),
        };
        super::http::json(status, &body)
    }
}

fn ok(body: Value) -> Response {
    super::http::json(StatusCode::OK, &body)
}

fn invalid(message: &str, attribute: &'static str) -> Failure {
    Failure::Unprocessable {
        message: message.to_owned(),
        attribute,
    }
}

fn parse_id(segment: &str) -> Option<u64> {
    if segment.is_empty() || !segment.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    segment.parse().ok()
}

/// A path id; anything but digits is a missing record, as in Rails.
fn id_of(segment: &str) -> Result<u64, Failure> {
    parse_id(segment).ok_or(Failure::NotFound)
}

fn optional_id(req: &Request, name: &str) -> Result<Option<u64>, Failure> {
    req.query(name)
        .map(|v| parse_id(v).ok_or(Failure::BadRequest("ids must be numbers")))
        .transpose()
}

/// The `page` parameter; like Kaminari, anything unusable means page 1.
fn page_param(req: &Request) -> usize {
    req.query("page")
        .and_then(|p| p.parse::<usize>().ok())
        .filter(|p| *p >= 1)
        .unwrap_or(1)
}

fn page_of<T>(items: &[T], page: usize, per_page: usize) -> &[T] {
    let start = (page - 1).saturating_mul(per_page).min(items.len());
    let end = start.saturating_add(per_page).min(items.len());
    &items[start..end]
}

fn json_object(req: &Request) -> Result<Map<String, Value>, Failure> {
    match req.json() {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(Failure::BadRequest("the body must be a JSON object")),
        Err(_) => Err(Failure::BadRequest("the body is not valid JSON")),
    }
}

fn string_or_null(value: &Value, field: &'static str) -> Result<Value, Failure> {
    match value {
        Value::String(_) | Value::Null => Ok(value.clone()),
        _ => Err(invalid(&format!("{field} must be a string"), field)),
    }
}

fn is_e164(number: &str) -> bool {
    number.strip_prefix('+').is_some_and(|digits| {
        (1..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())
    })
}

/// Chatwoot's search: a case-insensitive substring of name, email, phone
/// number or identifier. `q` is already lowercased.
fn contact_matches(contact: &Map<String, Value>, q: &str) -> bool {
    ["name", "email", "phone_number", "identifier"]
        .iter()
        .filter_map(|field| contact.get(*field).and_then(Value::as_str))
        .any(|value| value.to_lowercase().contains(q))
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn last_seed_activity(conversation_id: u64) -> Option<i64> {
    data::messages()
        .iter()
        .filter(|m| m.conversation_id == conversation_id)
        .map(|m| m.created_at)
        .max()
}

fn seed_contact_json(contact: &data::Contact) -> Map<String, Value> {
    let (country, country_code) = match contact.region() {
        data::Region::Uk => ("United Kingdom", "GB"),
        data::Region::De => ("Germany", "DE"),
    };
    let mut additional = into_object(json!({
        "city": contact.city,
        "country": country,
        "country_code": country_code,
    }));
    if let Some(company) = contact.company_name {
        additional.insert("company_name".to_owned(), json!(company));
    }
    if let Some(note) = contact.note {
        additional.insert("description".to_owned(), json!(note));
    }
    let last_activity = data::conversations()
        .iter()
        .filter(|c| c.contact_id == contact.id)
        .filter_map(|c| last_seed_activity(c.id))
        .max();
    into_object(json!({
        "additional_attributes": additional,
        "availability_status": "offline",
        "email": contact.email,
        "id": contact.id,
        "name": contact.name,
        "phone_number": contact.phone_number,
        "blocked": false,
        "identifier": null,
        "thumbnail": "",
        "custom_attributes": { "region": contact.region().as_str() },
        "last_activity_at": last_activity,
        "created_at": contact.created_at,
    }))
}

/// The fields of a `json!({...})` literal, which is always an object.
fn into_object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// A WhatsApp message id as Meta makes them: `wamid.` and base64 of a
/// small record that holds the customer's number (`wa_id`) in clear, then
/// the message's own id. Anyone holding one can read the number out of it.
fn wamid(wa_id: &str, message_id: u64) -> String {
    use base64::Engine as _;
    let mut raw = vec![0x1c, 0x18, u8::try_from(wa_id.len()).unwrap_or(0)];
    raw.extend_from_slice(wa_id.as_bytes());
    raw.extend_from_slice(&[0x15, 0x02, 0x00, 0x11, 0x18, 0x12]);
    raw.extend_from_slice(format!("{message_id:018X}").as_bytes());
    raw.push(0x00);
    format!(
        "wamid.{}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

/// The WhatsApp id Chatwoot keys a contact inbox by: the E.164 digits.
fn source_id(contact: &StoredContact) -> Option<String> {
    contact
        .json
        .get("phone_number")
        .and_then(Value::as_str)
        .map(|p| p.trim_start_matches('+').to_owned())
}

fn contact_with_inboxes(contact: &StoredContact) -> Value {
    let mut fields = contact.json.clone();
    let source_id = source_id(contact);
    let contact_inboxes: Vec<Value> = contact
        .inbox_id
        .and_then(data::inbox)
        .map(|inbox| {
            json!({
                "source_id": source_id,
                "inbox": {
                    "id": inbox.id,
                    "avatar_url": "",
                    "channel_id": inbox.channel_id,
                    "name": inbox.name,
                    "channel_type": "Channel::Whatsapp",
                    "provider": "whatsapp_cloud",
                },
            })
        })
        .into_iter()
        .collect();
    fields.insert("contact_inboxes".to_owned(), Value::Array(contact_inboxes));
    Value::Object(fields)
}

/// The `contact_detail` shape used in message senders and messages' meta.
fn contact_detail_json(contact: &StoredContact) -> Value {
    let mut fields = Map::new();
    for key in [
        "additional_attributes",
        "custom_attributes",
        "email",
        "id",
        "identifier",
        "name",
        "phone_number",
        "thumbnail",
        "blocked",
    ] {
        if let Some(value) = contact.json.get(key) {
            fields.insert(key.to_owned(), value.clone());
        }
    }
    fields.insert("type".to_owned(), json!("contact"));
    Value::Object(fields)
}

fn agent_json(agent: &data::Agent) -> Value {
    json!({
        "id": agent.id,
        "account_id": data::ACCOUNT_ID,
        "availability_status": "online",
        "auto_offline": true,
        "confirmed": true,
        "email": agent.email,
        "available_name": agent.name,
        "name": agent.name,
        "role": agent.role.as_str(),
        "thumbnail": "",
        "custom_role_id": null,
    })
}

fn team_json(team: &data::Team) -> Value {
    let is_member = data::agent(data::TOKEN_OWNER_AGENT_ID).is_some_and(|a| a.team_id == team.id);
    json!({
        "id": team.id,
        "name": team.name,
        "description": team.description,
        "allow_auto_assign": true,
        "account_id": data::ACCOUNT_ID,
        "is_member": is_member,
    })
}

fn inbox_json(inbox: &data::Inbox) -> Value {
    let number = data::business_number(inbox.phone_number_id);
    let timezone = match inbox.region {
        data::Region::Uk => "Europe/London",
        data::Region::De => "Europe/Berlin",
    };
    json!({
        "id": inbox.id,
        "avatar_url": "",
        "channel_id": inbox.channel_id,
        "name": inbox.name,
        "channel_type": "Channel::Whatsapp",
        "greeting_enabled": false,
        "greeting_message": null,
        "working_hours_enabled": true,
        "enable_email_collect": false,
        "csat_survey_enabled": true,
        "enable_auto_assignment": true,
        "out_of_office_message": null,
        "working_hours": [],
        "timezone": timezone,
        "callback_webhook_url": null,
        "allow_messages_after_resolved": true,
        "lock_to_single_conversation": false,
        "sender_name_type": "friendly",
        "business_name": number.map(|n| n.verified_name),
        "phone_number": number.map(|n| n.e164),
        "provider": "whatsapp_cloud",
        "provider_config": {
            "phone_number_id": inbox.phone_number_id,
            "business_account_id": data::WABA_ID,
        },
    })
}

fn label_json(label: &data::Label) -> Value {
    json!({
        "id": label.id,
        "title": label.title,
        "description": label.description,
        "color": label.color,
        "show_on_sidebar": true,
    })
}

#[cfg(test)]
mod tests {
    use http::header::HeaderMap;

    use super::*;
    use crate::demo::upstream::http::test_client::{self, Reply};
    use crate::demo::upstream::serve_crm;

    const AUTH: (&str, &str) = ("api_access_token", DEMO_CRM_API_TOKEN);

    fn call(crm: &mut Crm, method: Method, target: &str, body: &str) -> (StatusCode, Value) {
        let mut headers = HeaderMap::new();
        headers.insert(
            "api_access_token",
            http::HeaderValue::from_static(DEMO_CRM_API_TOKEN),
        );
        let req = Request::new(method, target, headers, body.to_owned().into());
        let response = crm.handle(&req);
        let status = response.status();
        let bytes = body_bytes(response);
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("body should be JSON: {e}"))
        };
        (status, value)
    }

    /// A `Full` body is ready at once, so one poll with a no-op waker takes
    /// it without a runtime.
    fn body_bytes(response: Response) -> bytes::Bytes {
        use std::pin::pin;
        use std::task::{Context, Poll, Waker};

        use hyper::body::Body;

        let mut body = pin!(response.into_body());
        match body
            .as_mut()
            .poll_frame(&mut Context::from_waker(Waker::noop()))
        {
            Poll::Ready(Some(Ok(frame))) => frame.into_data().unwrap_or_default(),
            Poll::Ready(None) => bytes::Bytes::new(),
            Poll::Ready(Some(Err(never))) => match never {},
            Poll::Pending => panic!("a Full body should never be pending"),
        }
    }

    fn ids(items: &Value) -> Vec<u64> {
        items
            .as_array()
            .expect("payload should be an array")
            .iter()
            .map(|item| item["id"].as_u64().expect("every item should have an id"))
            .collect()
    }

    #[test]
    fn contacts_are_paged_by_fifteen() {
        let mut crm = Crm::seeded();
        let (status, page1) = call(&mut crm, Method::GET, "/api/v1/accounts/1/contacts", "");
        assert_eq!(status, StatusCode::OK);
        assert_eq!(page1["meta"], json!({ "count": 40, "current_page": "1" }));
        assert_eq!(
            ids(&page1["payload"]),
            (1..=15).collect::<Vec<_>>(),
            "page 1 should hold contacts 1..=15"
        );
        let (_, page3) = call(
            &mut crm,
            Method::GET,
            "/api/v1/accounts/1/contacts?page=3",
            "",
        );
        assert_eq!(
            ids(&page3["payload"]),
            (31..=40).collect::<Vec<_>>(),
            "page 3 should hold the last ten"
        );
        let (_, page4) = call(
            &mut crm,
            Method::GET,
            "/api/v1/accounts/1/contacts?page=4",
            "",
        );
        assert_eq!(
            ids(&page4["payload"]),
            Vec::<u64>::new(),
            "a page past the end should be empty"
        );
        let first = &page1["payload"][0];
        assert_eq!(first["phone_number"], "+447700900101");
        assert_eq!(
            first["contact_inboxes"][0]["inbox"]["id"], 1,
            "a UK contact should be known to the UK inbox"
        );
        assert_eq!(
            first["additional_attributes"]["description"],
            "Prefers a call back on +44 7700 900123 after 5pm."
        );
    }

    #[test]
    fn search_matches_name_email_and_phone() {
        let mut crm = Crm::seeded();
        let (_, by_name) = call(
            &mut crm,
            Method::GET,
            "/api/v1/accounts/1/contacts/search?q=m%C3%BCller",
            "",
        );
        assert_eq!(
            ids(&by_name["payload"]),
            vec![23],
            "search should be case-insensitive on names"
        );
        let (_, by_domain) = call(
            &mut crm,
            Method::GET,
            "/api/v1/accounts/1/contacts/search?q=example.de",
            "",
        );
        assert_eq!(
            by_domain["meta"]["count"], 15,
            "every German contact with an email should match"
        );
        let (_, by_phone) = call(
            &mut crm,
            Method::GET,
            "/api/v1/accounts/1/contacts/search?q=%2B447700900115",
            "",
        );
        assert_eq!(ids(&by_phone["payload"]), vec![15]);
    }

    #[test]
    fn export_returns_every_contact_at_once() {
        let mut crm = Crm::seeded();
        let (status, export) = call(
            &mut crm,
            Method::GET,
            "/api/v1/accounts/1/contacts/export",
            "",
        );
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            ids(&export["payload"]),
            (1..=40).collect::<Vec<_>>(),
            "export should not paginate"
        );
    }

    #[test]
    fn contact_create_update_delete_round_trip() {
        let mut crm = Crm::seeded();
        let (status, created) = call(
            &mut crm,
            Method::POST,
            "/api/v1/accounts/1/contacts",
            r#"{"inbox_id":1,"name":"Ruby Cole","email":"ruby.cole@example.com","phone_number":"+447700900199"}"#,
        );
        assert_eq!(status, StatusCode::OK, "a valid contact should be created");
        assert_eq!(
            created["payload"]["contact"]["id"], 41,
            "new contacts should get the next id"
        );
        assert_eq!(
            created["payload"]["contact_inbox"]["source_id"],
            "447700900199"
        );

        let (status, duplicate) = call(
            &mut crm,
            Method::POST,
            "/api/v1/accounts/1/contacts",
            r#"{"email":"RUBY.COLE@example.com"}"#,
        );
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "a duplicate email should be refused"
        );
        assert_eq!(duplicate["attributes"], json!(["email"]));

        let (status, updated) = call(
            &mut crm,
            Method::PATCH,
            "/api/v1/accounts/1/contacts/41",
            r#"{"name":"Ruby Cole-Hart","additional_attributes":{"city":"Bath"}}"#,
        );
        assert_eq!(status, StatusCode::OK);
        assert_eq!(updated["payload"]["name"], "Ruby Cole-Hart");
        assert_eq!(updated["payload"]["additional_attributes"]["city"], "Bath");

        let (status, _) = call(
            &mut crm,
            Method::DELETE,
            "/api/v1/accounts/1/contacts/9",
            "",
        );
        assert_eq!(status, StatusCode::OK);
        let (status, _) = call(&mut crm, Method::GET, "/api/v1/accounts/1/contacts/9", "");
        assert_eq!(
            status,
            StatusCode::NOT_FOUND,
            "a deleted contact should be gone"
        );
        let (status, _) = call(
            &mut crm,
            Method::GET,
            "/api/v1/accounts/1/conversations/9",
            "",
        );
        assert_eq!(
            status,
            StatusCode::NOT_FOUND,
            "a deleted contact's conversations should go too"
        );
    }

    #[test]
    fn bad_bodies_are_refused() {
        let mut crm = Crm::seeded();
        let (status, _) = call(
            &mut crm,
            Method::POST,
            "/api/v1/accounts/1/contacts",
            "{not json",
        );
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "malformed JSON should be a 400"
        );
        let (status, _) = call(
            &mut crm,
            Method::POST,
            "/api/v1/accounts/1/contacts",
            r#"{"phone_number":"07700 900000"}"#,
        );
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "a non-E.164 phone should be a 422"
        );
        let (status, _) = call(
            &mut crm,
            Method::POST,
            "/api/v1/accounts/1/conversations/1/messages",
            r#"{"content":"  "}"#,
        );
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "a blank message should be a 422"
        );
    }

    #[test]
    fn conversations_filter_and_count_like_chatwoot() {
        let mut crm = Crm::seeded();
        let (_, open) = call(
            &mut crm,
            Method::GET,
            "/api/v1/accounts/1/conversations",
            "",
        );
        assert_eq!(
            open["data"]["meta"],
            json!({ "mine_count": 2, "unassigned_count": 7, "assigned_count": 12, "all_count": 19 }),
            "the default list should count the open conversations per tab"
        );
        let (_, counts) = call(
            &mut crm,
            Method::GET,
            "/api/v1/accounts/1/conversations/meta?status=all",
            "",
        );
        let (_, listed) = call(
            &mut crm,
            Method::GET,
            "/api/v1/accounts/1/conversations?status=all",
            "",
        );
        assert_eq!(
            counts,
            json!({ "meta": listed["data"]["meta"] }),
            "conversations/meta counts as the list does, with the same filters"
        );
        assert_eq!(counts["meta"]["all_count"], data::conversations().len());
        let (_, all) = call(
            &mut crm,
            Method::GET,
            "/api/v1/accounts/1/conversations?status=all&page=2",
            "",
        );
        assert_eq!(
            ids(&all["data"]["payload"]),
            (26..=30).collect::<Vec<_>>(),
            "page 2 of all should hold 26..=30"
        );
        let (_, mine) = call(
            &mut crm,
            Method::GET,
            "/api/v1/accounts/1/conversations?assignee_type=me&status=all",
            "",
        );
        assert_eq!(
            ids(&mine["data"]["payload"]),
            vec![3, 9],
            "`me` should be the token owner, agent 1"
        );
        let (_, unassigned) = call(
            &mut crm,
            Method::GET,
            "/api/v1/accounts/1/conversations?assignee_type=unassigned&status=all",
            "",
        );
        assert_eq!(
            ids(&unassigned["data"]["payload"]),
            data::unassigned_conversations()
        );
        let (_, confidential) = call(
            &mut crm,
            Method::GET,
            "/api/v1/accounts/1/conversations?status=all&labels[]=confidential",
            "",
        );
        assert_eq!(
            ids(&confidential["data"]["payload"]),
            data::conversations_labelled("confidential")
        );
        let (status, _) = call(
            &mut crm,
            Method::GET,
            "/api/v1/accounts/1/conversations?status=bogus",
            "",
        );
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "an unknown status should be refused"
        );
    }

    #[test]
    fn conversation_carries_assignee_sender_and_team() {
        let mut crm = Crm::seeded();
        let (_, assigned) = call(
            &mut crm,
            Method::GET,
            "/api/v1/accounts/1/conversations/15",
            "",
        );
        assert_eq!(assigned["meta"]["assignee"]["id"], 3);
        assert_eq!(
            assigned["meta"]["assignee"]["email"],
            "amelia.clarke@acme-retail.example.com"
        );
        assert_eq!(assigned["meta"]["sender"]["phone_number"], "+447700900115");
        assert_eq!(assigned["meta"]["team"]["name"], "support");
        assert_eq!(assigned["labels"], json!(["confidential", "delivery"]));
        assert_eq!(assigned["custom_attributes"]["region"], "uk");
        let (_, unassigned) = call(
            &mut crm,
            Method::GET,
            "/api/v1/accounts/1/conversations/30",
            "",
        );
        assert!(
            unassigned["meta"].get("assignee").is_none(),
            "an unassigned conversation should have no assignee key, as in Chatwoot"
        );
    }

    #[test]
    fn messages_assignments_and_status_changes_stick() {
        let mut crm = Crm::seeded();
        let (_, messages) = call(
            &mut crm,
            Method::GET,
            "/api/v1/accounts/1/conversations/9/messages",
            "",
        );
        assert_eq!(ids(&messages["payload"]), vec![901, 902, 903, 904]);
        assert_eq!(
            messages["payload"][2]["private"], true,
            "the third message of 9 is a private note"
        );
        assert_eq!(messages["meta"]["assignee"]["id"], 1);

        let (status, posted) = call(
            &mut crm,
            Method::POST,
            "/api/v1/accounts/1/conversations/9/messages",
            r#"{"content":"Refund sent.","message_type":"outgoing"}"#,
        );
        assert_eq!(status, StatusCode::OK);
        assert_eq!(posted["id"], data::FIRST_RUNTIME_MESSAGE_ID);
        assert_eq!(posted["sender"]["id"], data::TOKEN_OWNER_AGENT_ID);

        let (_, assignee) = call(
            &mut crm,
            Method::POST,
            "/api/v1/accounts/1/conversations/30/assignments",
            r#"{"assignee_id":5}"#,
        );
        assert_eq!(
            assignee["id"], 5,
            "the answer to an assignment should be the agent"
        );
        let (_, conversation) = call(
            &mut crm,
            Method::GET,
            "/api/v1/accounts/1/conversations/30",
            "",
        );
        assert_eq!(
            conversation["meta"]["assignee"]["id"], 5,
            "the assignment should stick"
        );
        let (status, _) = call(
            &mut crm,
            Method::POST,
            "/api/v1/accounts/1/conversations/30/assignments",
            r#"{"assignee_id":99}"#,
        );
        assert_eq!(
            status,
            StatusCode::NOT_FOUND,
            "an unknown agent should be a 404"
        );

        let (_, toggled) = call(
            &mut crm,
            Method::POST,
            "/api/v1/accounts/1/conversations/30/toggle_status",
            "",
        );
        assert_eq!(
            toggled["payload"]["current_status"], "resolved",
            "an empty toggle should resolve an open one"
        );
        let (_, toggled) = call(
            &mut crm,
            Method::POST,
            "/api/v1/accounts/1/conversations/30/toggle_status",
            r#"{"status":"pending"}"#,
        );
        assert_eq!(
            toggled["payload"],
            json!({ "success": true, "current_status": "pending", "conversation_id": 30 })
        );
    }

    #[test]
    fn directories_list_agents_teams_inboxes_labels() {
        let mut crm = Crm::seeded();
        let (_, agents) = call(&mut crm, Method::GET, "/api/v1/accounts/1/agents", "");
        assert_eq!(ids(&agents), (1..=6).collect::<Vec<_>>());
        let (_, teams) = call(&mut crm, Method::GET, "/api/v1/accounts/1/teams", "");
        assert_eq!(ids(&teams), vec![1, 2]);
        let (_, inboxes) = call(&mut crm, Method::GET, "/api/v1/accounts/1/inboxes", "");
        assert_eq!(
            inboxes["payload"][1]["provider_config"]["phone_number_id"],
            data::DE_PHONE_NUMBER_ID
        );
        let (_, labels) = call(&mut crm, Method::GET, "/api/v1/accounts/1/labels", "");
        assert_eq!(
            labels["payload"].as_array().map(Vec::len),
            Some(data::labels().len())
        );
    }

    #[test]
    fn unknown_accounts_paths_and_ids_are_404() {
        let mut crm = Crm::seeded();
        for target in [
            "/api/v1/accounts/2/contacts",
            "/api/v1/accounts/1/contacts/999",
            "/api/v1/accounts/1/contacts/abc",
            "/api/v1/accounts/1/conversations/31",
            "/api/v1/accounts/1/reports",
            "/",
        ] {
            let (status, body) = call(&mut crm, Method::GET, target, "");
            assert_eq!(status, StatusCode::NOT_FOUND, "{target} should be a 404");
            assert_eq!(
                body["error"], "Resource could not be found",
                "{target} should use Chatwoot's error shape"
            );
        }
        let (status, _) = call(&mut crm, Method::DELETE, "/api/v1/accounts/1/agents", "");
        assert_eq!(
            status,
            StatusCode::NOT_FOUND,
            "an unserved method should be a 404"
        );
    }

    #[tokio::test]
    async fn serves_over_http_and_demands_the_token() {
        let addr = test_client::start(serve_crm).await;
        let path = "/api/v1/accounts/1/contacts";

        let missing: Reply = test_client::send(addr, "GET", path, &[], b"").await;
        assert_eq!(
            missing.status, 401,
            "a request without the token should be refused"
        );
        assert_eq!(
            missing.json(),
            json!({ "errors": ["You need to sign in or sign up before continuing."] })
        );
        let wrong =
            test_client::send(addr, "GET", path, &[("api_access_token", "guess")], b"").await;
        assert_eq!(wrong.status, 401, "a wrong token should be refused");
        assert_eq!(wrong.json(), json!({ "error": "Invalid Access Token" }));

        let listed = test_client::send(addr, "GET", &format!("{path}?page=2"), &[AUTH], b"").await;
        assert_eq!(listed.status, 200, "the injected token should be accepted");
        assert!(listed
            .head
            .to_ascii_lowercase()
            .contains("content-type: application/json"));
        assert_eq!(
            ids(&listed.json()["payload"]),
            (16..=30).collect::<Vec<_>>()
        );

        let conversations = test_client::send(
            addr,
            "GET",
            "/api/v1/accounts/1/conversations?status=all&assignee_type=assigned",
            &[AUTH],
            b"",
        )
        .await;
        let payload = &conversations.json()["data"]["payload"];
        assert_eq!(
            ids(payload).len(),
            22,
            "22 of the 30 conversations are assigned"
        );

        let created = test_client::send(
            addr,
            "POST",
            "/api/v1/accounts/1/conversations/1/messages",
            &[AUTH, ("content-type", "application/json")],
            br#"{"content":"Reserved for you."}"#,
        )
        .await;
        assert_eq!(created.status, 200, "posting a message should succeed");
        let messages = test_client::send(
            addr,
            "GET",
            "/api/v1/accounts/1/conversations/1/messages",
            &[AUTH],
            b"",
        )
        .await;
        assert_eq!(
            messages.json()["payload"].as_array().map(Vec::len),
            Some(4),
            "the posted message should be visible to the next request"
        );

        let unknown =
            test_client::send(addr, "GET", "/api/v1/accounts/7/contacts", &[AUTH], b"").await;
        assert_eq!(unknown.status, 404, "only account 1 exists");
    }

    /// The next message that is not a ping, as JSON.
    async fn next<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>) -> Value
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        use futures_util::StreamExt;
        loop {
            let m = tokio::time::timeout(std::time::Duration::from_secs(10), ws.next())
                .await
                .expect("a message within 10 s")
                .expect("open")
                .expect("a frame");
            if let tokio_tungstenite::tungstenite::Message::Text(t) = m {
                let v: Value = serde_json::from_str(&t).expect("JSON");
                if v["type"] != "ping" {
                    return v;
                }
            }
        }
    }

    #[tokio::test]
    async fn the_cable_streams_the_accounts_events_to_a_subscriber() {
        use futures_util::SinkExt;
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        use tokio_tungstenite::tungstenite::Message;

        let addr = test_client::start(serve_crm).await;
        let request = |token: Option<&str>| {
            let mut req = format!("ws://{addr}/cable")
                .into_client_request()
                .expect("request");
            if let Some(t) = token {
                req.headers_mut()
                    .insert("api_access_token", t.parse().expect("value"));
            }
            req
        };
        for token in [None, Some("guess")] {
            match tokio_tungstenite::connect_async(request(token)).await {
                Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                    assert_eq!(resp.status(), 401, "{token:?}");
                }
                other => panic!("{token:?} should be refused: {other:?}"),
            }
        }
        let (mut ws, _) = tokio_tungstenite::connect_async(request(Some(DEMO_CRM_API_TOKEN)))
            .await
            .expect("opened");
        assert_eq!(next(&mut ws).await, json!({"type": "welcome"}));
        // Only the CRM key user's token and id subscribe.
        let guess =
            json!({"channel": "RoomChannel", "pubsub_token": "guess", "user_id": 1}).to_string();
        let identifier = json!({"channel": "RoomChannel", "pubsub_token": crate::demo::upstream::DEMO_CRM_PUBSUB_TOKEN, "user_id": "1"}).to_string();
        for id in [&guess, &identifier] {
            ws.send(Message::text(
                json!({"command": "subscribe", "identifier": id}).to_string(),
            ))
            .await
            .expect("sent");
        }
        assert_eq!(
            next(&mut ws).await,
            json!({"identifier": guess, "type": "reject_subscription"})
        );
        assert_eq!(
            next(&mut ws).await,
            json!({"identifier": identifier, "type": "confirm_subscription"})
        );
        let created = test_client::send(
            addr,
            "POST",
            "/api/v1/accounts/1/conversations/2/messages",
            &[AUTH, ("content-type", "application/json")],
            br#"{"content":"On its way"}"#,
        )
        .await;
        assert_eq!(created.status, 200);
        // Customers write while a stream is open; the reply is among the
        // events, as Chatwoot broadcasts it.
        loop {
            let event = next(&mut ws).await;
            assert_eq!(event["identifier"], identifier);
            let m = &event["message"];
            assert_eq!(m["event"], "message.created", "{event}");
            let data = &m["data"];
            assert!(data["conversation"].get("assignee_id").is_some(), "{data}");
            if data["content"] == "On its way" {
                assert_eq!(data["conversation_id"], 2);
                assert_eq!(data["message_type"], 1);
                break;
            }
            assert_eq!(data["message_type"], 0, "a customer's: {data}");
        }
    }
}
