use std::collections::BTreeMap;

use serde_json::json;

use super::*;
use crate::identity::RoleName;
use crate::policy::{
    FieldPath, FilterMode, ItemSelector, LabelRule, Permission, RoleDef, RowFilter,
};
use crate::redact::{Detector, Style};

const SECRET: &str = "crm-key-0123456789";

fn perm(text: &str) -> Permission {
    Permission::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

fn roles() -> RoleSet {
    let def = |name: &str, inherits: &[&str], perms: &[&str]| RoleDef {
        name: RoleName(name.to_owned()),
        inherits: inherits.iter().map(|r| RoleName((*r).to_owned())).collect(),
        permissions: perms.iter().map(|p| (*p).to_owned()).collect(),
    };
    RoleSet::compile(vec![
        def("agent", &[], &["conversations.read"]),
        def("supervisor", &["agent"], &["conversations.read_all"]),
        def(
            "admin",
            &["supervisor"],
            &["contacts.read_pii", "conversations.confidential"],
        ),
    ])
    .unwrap_or_else(|e| panic!("{e}"))
}

fn who(role: &str, user_id: &str) -> Identity {
    Identity {
        subject: "staff".to_owned(),
        roles: vec![RoleName(role.to_owned())],
        attributes: BTreeMap::from([("user_id".to_owned(), vec![user_id.to_owned()])]),
        mfa: false,
        auth_time: None,
        token_id: None,
        expires_at: 2_000_000_000,
    }
}

fn field(text: &str) -> FieldPath {
    FieldPath::parse(text).unwrap_or_else(|e| panic!("{e}"))
}

/// Chatwoot's cable: conversation events name the assignee at
/// `meta.assignee.id`, message events at `conversation.assignee_id`.
fn cable_filter(labels: bool) -> MessageFilter {
    let mut filter = RowFilter::new(
        "$.message.data",
        "meta.assignee.id",
        "user_id",
        FilterMode::Object,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    filter.unless_permission = Some(perm("conversations.read_all"));
    if labels {
        filter.labels = vec![LabelRule {
            field: field("labels"),
            label: "confidential".to_owned(),
            permission: perm("conversations.confidential"),
        }];
    }
    MessageFilter {
        filter,
        fields: vec![field("meta.assignee.id"), field("conversation.assignee_id")],
    }
}

fn pii_rule() -> Arc<RedactionRule> {
    let selector = |s: &str| ItemSelector::parse(s).unwrap_or_else(|e| panic!("{e}"));
    Arc::new(RedactionRule {
        name: "cable-pii".to_owned(),
        unless_permission: Some(perm("contacts.read_pii")),
        fields: vec![
            selector("$.message.data.sender.phone_number"),
            selector("$.message.data.meta.sender.phone_number"),
        ],
        detect: vec![Detector::PHONE, Detector::Email],
        style: Style::Partial,
    })
}

fn plan_for(role: &str, labels: bool) -> Option<MessagePlan> {
    MessagePlan::for_caller(
        Some(&cable_filter(labels)),
        Some("type"),
        &[pii_rule()],
        Some(&who(role, "3")),
        &roles(),
        false,
        None,
    )
}

fn creds() -> Credentials {
    Credentials::new([SECRET.as_bytes()])
}

fn frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![opcode | if fin { 0x80 } else { 0 }];
    match payload.len() {
        n if n < 126 => out.push(n as u8),
        n if n <= 0xffff => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
    out
}

fn text(value: &Value) -> Vec<u8> {
    frame(0x1, true, value.to_string().as_bytes())
}

/// The frames in `bytes`: (opcode, FIN, payload); the bytes must be whole
/// frames.
fn frames(mut bytes: &[u8]) -> Vec<(u8, bool, Vec<u8>)> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        assert_eq!(bytes[1] & 0x80, 0, "frames to the client are not masked");
        let (len, at) = match bytes[1] & 0x7f {
            126 => (usize::from(u16::from_be_bytes([bytes[2], bytes[3]])), 4),
            127 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&bytes[2..10]);
                (u64::from_be_bytes(b) as usize, 10)
            }
            n => (usize::from(n), 2),
        };
        out.push((
            bytes[0] & 0x0f,
            bytes[0] & 0x80 != 0,
            bytes[at..at + len].to_vec(),
        ));
        bytes = &bytes[at + len..];
    }
    out
}

/// Sends `input` through a stream in pieces of `size` bytes.
fn through(
    plan: MessagePlan,
    input: &[u8],
    size: usize,
) -> (Result<Vec<u8>, MessageError>, MessageStream) {
    let c = creds();
    let mut stream = MessageStream::new(plan);
    let mut out = Vec::new();
    for piece in input.chunks(size) {
        match stream.piece(&c, piece) {
            Ok(bytes) => out.extend(bytes),
            Err(e) => return (Err(e), stream),
        }
    }
    (Ok(out), stream)
}

fn identifier() -> String {
    json!({"channel": "RoomChannel", "pubsub_token": "tok"}).to_string()
}

fn message_created(assignee: Value, content: &str) -> Value {
    json!({"identifier": identifier(), "message": {"event": "message.created", "data": {
        "id": 501, "content": content, "conversation_id": 7, "message_type": 0,
        "sender": {"id": 12, "name": "Sophie Martin", "phone_number": "+447700900123", "type": "contact"},
        "conversation": {"assignee_id": assignee, "unread_count": 1}
    }}})
}

fn conversation_updated(assignee: Value, labels: &[&str]) -> Value {
    json!({"identifier": identifier(), "message": {"event": "conversation.updated", "data": {
        "id": 8, "labels": labels, "status": "open",
        "meta": {"sender": {"name": "Lukas", "phone_number": "+4915112345678", "email": "lukas@example.de"},
                 "assignee": if assignee.is_null() { Value::Null } else { json!({"id": assignee}) }}
    }}})
}

fn payloads(out: &[u8]) -> Vec<Value> {
    frames(out)
        .into_iter()
        .filter(|(op, ..)| *op == 0x1)
        .map(|(_, fin, p)| {
            assert!(fin, "messages go out whole");
            serde_json::from_slice(&p).unwrap_or_else(|e| panic!("{e}"))
        })
        .collect()
}

#[test]
fn an_agent_gets_her_conversations_masked_and_nothing_of_the_others() {
    let welcome = json!({"type": "welcome"});
    let ping = json!({"type": "ping", "message": 1_764_000_000});
    let confirm = json!({"identifier": identifier(), "type": "confirm_subscription"});
    let mut input = Vec::new();
    for v in [
        &welcome,
        &confirm,
        &message_created(json!(3), "Call me on +44 7700 900123"),
        &ping,
        &message_created(json!(7), "my number is +44 7700 900999"),
        &conversation_updated(json!(3), &["vip"]),
        &conversation_updated(json!(7), &[]),
        &conversation_updated(Value::Null, &[]),
        &message_created(json!("3"), "string ids match as text"),
    ] {
        input.extend(text(v));
    }
    for size in [1, 2, 7, 64, input.len()] {
        let plan = plan_for("agent", false).expect("an agent is filtered");
        let (out, stream) = through(plan, &input, size);
        let got = payloads(&out.unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(got.len(), 6, "pieces of {size}: {got:#?}");
        assert_eq!(got[0], welcome);
        assert_eq!(got[1], confirm);
        assert_eq!(
            got[2]["message"]["data"]["content"],
            "Call me on +** **** ***123"
        );
        assert_eq!(
            got[2]["message"]["data"]["sender"]["phone_number"],
            "+*********123"
        );
        assert_eq!(got[2]["message"]["data"]["sender"]["name"], "Sophie Martin");
        assert_eq!(got[3], ping, "a control message passes, numbers and all");
        assert_eq!(got[4]["message"]["data"]["id"], 8);
        assert_eq!(
            got[4]["message"]["data"]["meta"]["sender"]["email"],
            "l***@example.de"
        );
        assert_eq!(
            got[5]["message"]["data"]["content"],
            "string ids match as text"
        );
        assert_eq!(stream.removed, 3);
        assert_eq!(stream.masked, 5);
    }
}

#[test]
fn a_supervisor_gets_every_message_masked_and_an_admin_the_stream_as_it_is() {
    let ping = json!({"message": "+44 7700 900999", "type": "ping"});
    let input = [
        text(&message_created(json!(7), "+44 7700 900999")),
        text(&conversation_updated(Value::Null, &[])),
        text(&ping),
    ]
    .concat();
    let plan = plan_for("supervisor", false).expect("masks still apply");
    let (out, stream) = through(plan, &input, 5);
    let got = payloads(&out.unwrap_or_else(|e| panic!("{e}")));
    assert_eq!(got.len(), 3);
    assert_eq!(got[0]["message"]["data"]["content"], "+** **** ***999");
    assert_eq!(
        got[2],
        json!({"message": "+** **** ***999", "type": "ping"}),
        "a control message is searched by detect only (a field rule would not fit it)"
    );
    assert_eq!(stream.removed, 0);
    assert!(
        plan_for("admin", true).is_none(),
        "nothing to do: frames pass as they are"
    );
}

#[test]
fn fragments_are_put_together_and_control_frames_between_them_pass_first() {
    let payload = message_created(json!(3), "Call me on +44 7700 900123").to_string();
    let (a, b) = payload.as_bytes().split_at(40);
    let (b, c) = b.split_at(30);
    let input = [
        frame(0x1, false, a),
        frame(0x9, true, b"are you there"),
        frame(0x0, false, b),
        frame(0x0, true, c),
        frame(0x8, true, &[0x03, 0xe8]),
        frame(0x1, true, b"after the close: not a frame of this stream"),
    ]
    .concat();
    for size in [1, 3, input.len()] {
        let plan = plan_for("agent", false).expect("filtered");
        let (out, _) = through(plan, &input, size);
        let got = frames(&out.unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(got.len(), 3, "pieces of {size}");
        assert_eq!(got[0], (0x9, true, b"are you there".to_vec()));
        assert_eq!(got[1].0, 0x1);
        let message: Value = serde_json::from_slice(&got[1].2).expect("json");
        assert_eq!(
            message["message"]["data"]["content"],
            "Call me on +** **** ***123"
        );
        assert_eq!(got[2], (0x8, true, vec![0x03, 0xe8]));
    }
}

#[test]
fn a_hidden_label_drops_its_conversations_and_the_unlabelled_messages_of_other_owners() {
    let input = [
        text(&message_created(json!(3), "no labels in message events")),
        text(&message_created(json!(7), "someone else's")),
        text(&conversation_updated(json!(3), &["vip"])),
        text(&conversation_updated(json!(3), &["confidential"])),
        text(&conversation_updated(json!(7), &[])),
    ]
    .concat();
    let ids = |role: &str| {
        let (out, _) = through(plan_for(role, true).expect("plan"), &input, 9);
        payloads(&out.unwrap_or_else(|e| panic!("{e}")))
            .iter()
            .map(|m| m["message"]["data"]["id"].clone())
            .collect::<Vec<_>>()
    };
    // Her own conversation's message, which does not say its labels,
    // passes; the confidential conversation does not.
    assert_eq!(ids("agent"), [json!(501), json!(8)]);
    // Every owner's conversations but the confidential one, and no message
    // event: any could be from it.
    assert_eq!(ids("supervisor"), [json!(8), json!(8)]);
    assert!(plan_for("admin", true).is_none());
}

#[test]
fn the_upstreams_credential_is_masked_in_what_passes() {
    let input = text(&message_created(
        json!(3),
        &format!("debug: api_access_token={SECRET}"),
    ));
    let (out, stream) = through(plan_for("agent", false).expect("plan"), &input, 4);
    let got = payloads(&out.unwrap_or_else(|e| panic!("{e}")));
    let content = got[0]["message"]["data"]["content"].as_str().expect("text");
    assert!(!content.contains(SECRET), "{content}");
    assert_eq!(stream.credentials_masked, 1);
}

#[test]
fn what_cannot_be_read_ends_the_stream_with_nothing_of_it_sent() {
    let long = vec![b'x'; 200];
    let cases: Vec<(Vec<u8>, MessageError)> = vec![
        (frame(0x2, true, b"\x00\x01"), MessageError::Binary),
        (vec![0xc1, 0x02, b'{', b'}'], MessageError::Encoded),
        (
            vec![0x81, 0x82, 1, 2, 3, 4, b'{', b'}'],
            MessageError::Masked,
        ),
        (
            frame(0x1, true, b"hello +44 7700 900123"),
            MessageError::NotJson("expected value at line 1 column 1".into()),
        ),
        (frame(0x1, true, b"\xff\xfe"), MessageError::NotText),
        (
            text(&json!({"identifier": "x", "message": "+44 7700 900123"})),
            MessageError::NoObject("$.message.data".into()),
        ),
        (
            frame(0x0, true, b"{}"),
            MessageError::Protocol("a continuation frame with no message to continue"),
        ),
        (
            [frame(0x1, false, b"{"), frame(0x1, true, b"}")].concat(),
            MessageError::Protocol("a new message began before the last one ended"),
        ),
        (
            frame(0x9, true, &long),
            MessageError::Protocol("a control frame fragmented or over 125 bytes"),
        ),
        (
            frame(0x3, true, b"{}"),
            MessageError::Protocol("a reserved opcode"),
        ),
        (
            [
                vec![0x81, 127],
                ((MAX_MESSAGE_BYTES + 1) as u64).to_be_bytes().to_vec(),
            ]
            .concat(),
            MessageError::TooLarge,
        ),
    ];
    for (input, want) in cases {
        let (out, _) = through(plan_for("agent", false).expect("plan"), &input, 1);
        assert_eq!(out, Err(want), "{input:?}");
    }
    // A message the masks cannot fit (a list where the rule reads an object).
    let odd = json!({"identifier": "x", "message": {"event": "e", "data": {"meta": {"assignee": {"id": 3}}, "sender": []}}});
    let (out, _) = through(plan_for("agent", false).expect("plan"), &text(&odd), 100);
    assert!(
        matches!(
            out,
            Err(MessageError::Rewrite(
                RewriteError::MaskShapeMismatch { .. }
            ))
        ),
        "{out:?}"
    );
}

#[test]
fn large_messages_are_framed_with_the_length_they_need() {
    for len in [125, 126, 65_535, 65_536, 200_000] {
        let content = "a".repeat(len);
        let input = text(&message_created(json!(3), &content));
        let (out, _) = through(plan_for("agent", false).expect("plan"), &input, 4096);
        let got = payloads(&out.unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(
            got[0]["message"]["data"]["content"].as_str().map(str::len),
            Some(len)
        );
    }
}

#[test]
fn without_an_identity_no_message_is_owned() {
    let plan = MessagePlan::for_caller(
        Some(&cable_filter(false)),
        Some("type"),
        &[],
        None,
        &roles(),
        false,
        None,
    )
    .expect("filtered");
    let input = [
        text(&message_created(json!(3), "hi")),
        text(&json!({"type": "ping", "message": 1})),
    ]
    .concat();
    let (out, stream) = through(plan, &input, 10);
    assert_eq!(payloads(&out.unwrap_or_else(|e| panic!("{e}"))).len(), 1);
    assert_eq!(stream.removed, 1);
}

#[test]
fn a_reload_replans_the_messages_still_to_come() {
    let c = creds();
    let mut stream = MessageStream::new(plan_for("agent", false).expect("plan"));
    let theirs = text(&message_created(json!(7), "theirs"));
    let (a, b) = theirs.split_at(30);
    assert_eq!(stream.piece(&c, a), Ok(Vec::new()));
    // Nothing left to do for this caller: what comes next passes as it is,
    // the message under way and binary ones too.
    stream.replan(None);
    let binary = frame(0x2, true, b"\x00\xff");
    let out = stream.piece(&c, &[b, &binary].concat()).expect("passes");
    let got = frames(&out);
    assert_eq!(got.len(), 2);
    assert_eq!(
        got[0].2,
        message_created(json!(7), "theirs").to_string().into_bytes()
    );
    assert_eq!(got[1], (0x2, true, b"\x00\xff".to_vec()));
    // A binary message under way when a plan arrives cannot be read.
    let (a, b) = binary.split_at(3);
    assert_eq!(stream.piece(&c, a), Ok(Vec::new()));
    stream.replan(plan_for("agent", false));
    assert_eq!(stream.piece(&c, b), Err(MessageError::Binary));
}

/// Random streams: messages cut into random fragments with pings between
/// them, read in random pieces, come out as the same messages whole (each
/// decided as when sent unfragmented); random bytes never panic, and what
/// they yield before an error is whole frames.
#[test]
fn random_fragments_and_pieces_change_nothing_but_the_framing() {
    use rand::{Rng as _, SeedableRng as _};
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let messages: Vec<Value> = (0..40)
        .map(|i| match i % 4 {
            0 => message_created(json!(3), &format!("call +44 7700 900{:03}", i)),
            1 => message_created(json!(7), "not hers"),
            2 => conversation_updated(json!(3), &["vip"]),
            _ => json!({"type": "ping", "message": i}),
        })
        .collect();
    let whole: Vec<u8> = messages.iter().flat_map(text).collect();
    let (want, _) = through(plan_for("agent", false).expect("plan"), &whole, whole.len());
    let want = want.unwrap_or_else(|e| panic!("{e}"));
    for _ in 0..50 {
        let mut input = Vec::new();
        for m in &messages {
            let payload = m.to_string().into_bytes();
            let mut at = 0;
            while at < payload.len() {
                let n = rng.random_range(1..=payload.len() - at);
                let opcode = if at == 0 { 0x1 } else { 0x0 };
                input.extend(frame(opcode, at + n == payload.len(), &payload[at..at + n]));
                at += n;
                if at < payload.len() && rng.random_bool(0.3) {
                    input.extend(frame(0x9, true, b""));
                }
            }
        }
        let c = creds();
        let mut stream = MessageStream::new(plan_for("agent", false).expect("plan"));
        let mut out = Vec::new();
        let mut rest = input.as_slice();
        while !rest.is_empty() {
            let n = rng.random_range(1..=rest.len().min(300));
            out.extend(
                stream
                    .piece(&c, &rest[..n])
                    .unwrap_or_else(|e| panic!("{e}")),
            );
            rest = &rest[n..];
        }
        let texts: Vec<_> = frames(&out).into_iter().filter(|f| f.0 == 0x1).collect();
        assert_eq!(
            texts,
            frames(&want),
            "the same messages, decided the same way"
        );
    }
    for _ in 0..2_000 {
        let len = rng.random_range(0..64);
        let junk: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        let mut stream = MessageStream::new(plan_for("agent", false).expect("plan"));
        if let Ok(out) = stream.piece(&creds(), &junk) {
            let _ = frames(&out);
        }
    }
}

fn crm_links() -> Links {
    Links::new(
        vec![crate::rewrite::Origin::new(true, "crm.acme.example", 443)].into(),
        "https://api.acme.example",
    )
}

#[test]
fn links_in_messages_lead_through_the_gateway() {
    let photo = |assignee: u64| {
        let mut m = message_created(json!(assignee), "here is the photo");
        m["message"]["data"]["attachments"] = json!([{
            "data_url": "https://crm.acme.example/rails/active_storage/blobs/redirect/x/a.png"
        }]);
        m
    };
    // Read for its links alone (an admin: no filter, no masks): relinked,
    // and what cannot be read passes as it is.
    let plan = MessagePlan::for_caller(
        None,
        Some("type"),
        &[],
        Some(&who("admin", "1")),
        &roles(),
        false,
        Some(crm_links()),
    )
    .expect("read for its links");
    let input = [
        text(&photo(9)),
        frame(0x2, true, b"\x00\x01"),
        frame(0x1, true, b"not json https://crm.acme.example/x"),
        text(&json!({"type": "ping", "message": 1})),
    ]
    .concat();
    let (out, stream) = through(plan, &input, 7);
    let out = out.expect("nothing ends the stream");
    let sent = frames(&out);
    assert_eq!(sent.len(), 4, "every message passes: {sent:?}");
    let first: Value = serde_json::from_slice(&sent[0].2).expect("json");
    assert_eq!(
        first["message"]["data"]["attachments"][0]["data_url"],
        "https://api.acme.example/rails/active_storage/blobs/redirect/x/a.png"
    );
    assert_eq!(
        (sent[1].0, &sent[1].2[..]),
        (0x2, &b"\x00\x01"[..]),
        "binary as it is"
    );
    assert_eq!(
        &sent[2].2[..],
        b"not json https://crm.acme.example/x",
        "text as it is"
    );
    assert_eq!(stream.masked, 0);

    // With the agent's filter and masks, links lead through too, and a
    // binary message still ends the stream.
    let plan = MessagePlan::for_caller(
        Some(&cable_filter(false)),
        Some("type"),
        &[pii_rule()],
        Some(&who("agent", "3")),
        &roles(),
        false,
        Some(crm_links()),
    )
    .expect("filtered");
    let (out, _) = through(
        plan.clone(),
        &[text(&photo(3)), text(&photo(9))].concat(),
        5,
    );
    let got = payloads(&out.expect("read"));
    assert_eq!(got.len(), 1, "the other agent's event is dropped");
    assert_eq!(
        got[0]["message"]["data"]["attachments"][0]["data_url"],
        "https://api.acme.example/rails/active_storage/blobs/redirect/x/a.png"
    );
    assert_eq!(
        got[0]["message"]["data"]["sender"]["phone_number"],
        "+*********123"
    );
    let (out, _) = through(plan, &frame(0x2, true, b"\x00"), 5);
    assert_eq!(out, Err(MessageError::Binary));
}
