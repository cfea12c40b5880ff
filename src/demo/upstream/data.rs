//! The demo dataset: Acme Retail, a UK/German retailer that answers its
//! customers on two WhatsApp numbers through a Chatwoot-like CRM.
//!
//! Everything is fixed at compile time (no randomness, no clock), so tests
//! of the gateway can assert against these values. All personal data is
//! fictional: UK numbers come from Ofcom's drama range (+44 7700 900xxx),
//! German numbers use a `555` block, and every address is on `example.com`
//! or `example.de`. The free-text notes and messages deliberately carry
//! phone numbers, emails, an address, an IBAN and health data, because
//! that is what the gateway's redaction has to catch in real CRMs.

use std::sync::OnceLock;

/// The only account of the demo CRM.
pub const ACCOUNT_ID: u64 = 1;
/// Its display name.
pub const ACCOUNT_NAME: &str = "Acme Retail";
/// The WhatsApp Business Account owning both business numbers.
pub const WABA_ID: &str = "102290129340398";
/// The UK business number's Graph API id.
pub const UK_PHONE_NUMBER_ID: &str = "106540352242922";
/// The German business number's Graph API id.
pub const DE_PHONE_NUMBER_ID: &str = "209876543210987";
/// The agent the demo CRM access token belongs to, as a Chatwoot token
/// belongs to one user: `assignee_type=me` and new outgoing messages mean
/// this agent.
pub const TOKEN_OWNER_AGENT_ID: u64 = 1;
/// First id handed to messages created at runtime; the seeded ones are
/// numbered `conversation_id * 100 + n`, all below this.
pub const FIRST_RUNTIME_MESSAGE_ID: u64 = 10_000;

/// Which market a number, inbox, agent or conversation belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Region {
    Uk,
    De,
}

impl Region {
    /// The lowercase code used in JSON and in policy claims.
    pub fn as_str(self) -> &'static str {
        match self {
            Region::Uk => "uk",
            Region::De => "de",
        }
    }
}

/// A Chatwoot account role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentRole {
    Administrator,
    Agent,
}

impl AgentRole {
    pub fn as_str(self) -> &'static str {
        match self {
            AgentRole::Administrator => "administrator",
            AgentRole::Agent => "agent",
        }
    }
}

/// A member of staff who answers conversations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Agent {
    pub id: u64,
    pub name: &'static str,
    pub email: &'static str,
    pub role: AgentRole,
    pub team_id: u64,
    pub region: Region,
}

/// A Chatwoot team.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Team {
    pub id: u64,
    pub name: &'static str,
    pub description: &'static str,
}

/// One of the business's WhatsApp numbers, as the Graph API knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BusinessNumber {
    pub phone_number_id: &'static str,
    /// As Meta displays it, with spaces.
    pub display_phone_number: &'static str,
    /// E.164, as Chatwoot stores it on the inbox.
    pub e164: &'static str,
    pub verified_name: &'static str,
    pub quality_rating: &'static str,
    pub region: Region,
}

/// A Chatwoot inbox; each is bound to one business number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inbox {
    pub id: u64,
    pub name: &'static str,
    pub channel_id: u64,
    pub phone_number_id: &'static str,
    pub region: Region,
}

/// A customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Contact {
    pub id: u64,
    pub name: &'static str,
    /// E.164.
    pub phone_number: &'static str,
    pub email: Option<&'static str>,
    pub city: &'static str,
    pub company_name: Option<&'static str>,
    /// Free text an agent typed; may hold PII on purpose. Served as
    /// `additional_attributes.description`, Chatwoot's contact bio field.
    pub note: Option<&'static str>,
    pub inbox_id: u64,
    pub created_at: i64,
}

impl Contact {
    /// The contact's region, from the inbox that knows them.
    pub fn region(&self) -> Region {
        if self.inbox_id == DE_INBOX_ID {
            Region::De
        } else {
            Region::Uk
        }
    }
}

/// A conversation's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Open,
    Resolved,
    Pending,
    Snoozed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Resolved => "resolved",
            Status::Pending => "pending",
            Status::Snoozed => "snoozed",
        }
    }

    /// Parses Chatwoot's status names.
    pub fn parse(name: &str) -> Option<Status> {
        match name {
            "open" => Some(Status::Open),
            "resolved" => Some(Status::Resolved),
            "pending" => Some(Status::Pending),
            "snoozed" => Some(Status::Snoozed),
            _ => None,
        }
    }
}

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the customer.
    Incoming,
    /// From the assigned agent.
    Outgoing,
    /// An internal note by the assigned agent, never sent to the customer.
    PrivateNote,
}

/// A message as scripted in a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line {
    pub direction: Direction,
    pub content: &'static str,
}

/// A conversation with one contact in one inbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conversation {
    pub id: u64,
    pub contact_id: u64,
    pub inbox_id: u64,
    pub assignee_id: Option<u64>,
    pub team_id: Option<u64>,
    pub status: Status,
    pub priority: Option<&'static str>,
    pub labels: &'static [&'static str],
    pub created_at: i64,
    pub lines: &'static [Line],
}

impl Conversation {
    /// The conversation's region, from its inbox.
    pub fn region(&self) -> Region {
        if self.inbox_id == DE_INBOX_ID {
            Region::De
        } else {
            Region::Uk
        }
    }
}

/// A message with its id and time, derived from a conversation's script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message {
    pub id: u64,
    pub conversation_id: u64,
    pub direction: Direction,
    pub content: &'static str,
    /// The agent for outgoing messages and notes, `None` for the customer's.
    pub agent_id: Option<u64>,
    pub created_at: i64,
}

/// An account label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Label {
    pub id: u64,
    pub title: &'static str,
    pub description: &'static str,
    pub color: &'static str,
}

/// An approved WhatsApp message template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Template {
    pub id: &'static str,
    pub name: &'static str,
    pub language: &'static str,
    pub category: &'static str,
    pub header: &'static str,
    pub body: &'static str,
    pub body_example: &'static [&'static str],
    pub footer: &'static str,
}

/// The six agents, ids 1..=6.
pub fn agents() -> &'static [Agent] {
    AGENTS
}

/// The two teams: 1 sales, 2 support.
pub fn teams() -> &'static [Team] {
    TEAMS
}

/// The two WhatsApp business numbers, UK first.
pub fn business_numbers() -> &'static [BusinessNumber] {
    BUSINESS_NUMBERS
}

/// The two WhatsApp inboxes: 1 UK, 2 DE.
pub fn inboxes() -> &'static [Inbox] {
    INBOXES
}

/// The forty contacts, ids 1..=40 (1..=22 UK, 23..=40 DE).
pub fn contacts() -> &'static [Contact] {
    CONTACTS
}

/// The thirty conversations, ids 1..=30 (1..=16 UK, 17..=30 DE).
pub fn conversations() -> &'static [Conversation] {
    CONVERSATIONS
}

/// The account labels.
pub fn labels() -> &'static [Label] {
    LABELS
}

/// The approved templates of the WABA.
pub fn templates() -> &'static [Template] {
    TEMPLATES
}

/// A file a customer sent with a message, as the CRM keeps it
/// (ActiveStorage): its JSON links to it on the CRM's own host.
pub struct Attachment {
    pub id: u64,
    /// The message it came with (`conversation_id * 100 + line`).
    pub message_id: u64,
    pub filename: &'static str,
    pub content_type: &'static str,
    pub bytes: &'static [u8],
}

/// The files customers sent with their messages.
pub fn attachments() -> &'static [Attachment] {
    ATTACHMENTS
}

/// The attachments of message `id`.
pub fn attachments_of(message_id: u64) -> impl Iterator<Item = &'static Attachment> {
    ATTACHMENTS
        .iter()
        .filter(move |a| a.message_id == message_id)
}

/// A file a customer sent to one of the business numbers, held by Meta
/// until the business downloads it: `GET /v23.0/{id}` answers a short-lived
/// download URL, which takes the same access token.
pub struct Media {
    pub id: &'static str,
    /// The business number it was sent to.
    pub phone_number_id: &'static str,
    pub mime_type: &'static str,
    pub bytes: &'static [u8],
}

/// The photos customers sent: one to each business number.
pub fn media() -> &'static [Media] {
    MEDIA
}

/// A media item by id.
pub fn media_item(id: &str) -> Option<&'static Media> {
    MEDIA.iter().find(|m| m.id == id)
}

/// Every seeded message, in conversation then script order.
pub fn messages() -> &'static [Message] {
    static MESSAGES: OnceLock<Vec<Message>> = OnceLock::new();
    MESSAGES.get_or_init(|| {
        CONVERSATIONS
            .iter()
            .flat_map(|conversation| {
                conversation
                    .lines
                    .iter()
                    .zip(1u64..)
                    .map(move |(line, n)| Message {
                        id: conversation.id * 100 + n,
                        conversation_id: conversation.id,
                        direction: line.direction,
                        content: line.content,
                        agent_id: match line.direction {
                            Direction::Incoming => None,
                            Direction::Outgoing | Direction::PrivateNote => {
                                conversation.assignee_id
                            }
                        },
                        // Customers and agents answer within minutes.
                        created_at: conversation.created_at + (n as i64 - 1) * 420,
                    })
            })
            .collect()
    })
}

/// The agent with `id`.
pub fn agent(id: u64) -> Option<&'static Agent> {
    AGENTS.iter().find(|a| a.id == id)
}

/// The team with `id`.
pub fn team(id: u64) -> Option<&'static Team> {
    TEAMS.iter().find(|t| t.id == id)
}

/// The inbox with `id`.
pub fn inbox(id: u64) -> Option<&'static Inbox> {
    INBOXES.iter().find(|i| i.id == id)
}

/// The contact with `id`.
pub fn contact(id: u64) -> Option<&'static Contact> {
    CONTACTS.iter().find(|c| c.id == id)
}

/// The business number with Graph id `phone_number_id`.
pub fn business_number(phone_number_id: &str) -> Option<&'static BusinessNumber> {
    BUSINESS_NUMBERS
        .iter()
        .find(|n| n.phone_number_id == phone_number_id)
}

/// Ids of the conversations assigned to agent `agent_id`, ascending. This is
/// what a row filter on `meta.assignee.id` should leave an agent.
pub fn conversations_assigned_to(agent_id: u64) -> Vec<u64> {
    CONVERSATIONS
        .iter()
        .filter(|c| c.assignee_id == Some(agent_id))
        .map(|c| c.id)
        .collect()
}

/// Ids of the conversations nobody is assigned to, ascending.
pub fn unassigned_conversations() -> Vec<u64> {
    CONVERSATIONS
        .iter()
        .filter(|c| c.assignee_id.is_none())
        .map(|c| c.id)
        .collect()
}

/// Ids of the conversations carrying `label`, ascending.
pub fn conversations_labelled(label: &str) -> Vec<u64> {
    CONVERSATIONS
        .iter()
        .filter(|c| c.labels.contains(&label))
        .map(|c| c.id)
        .collect()
}

/// Chatwoot's inbox of the UK number.
pub const UK_INBOX_ID: u64 = 1;
/// Chatwoot's inbox of the German number.
pub const DE_INBOX_ID: u64 = 2;
const SALES: u64 = 1;
const SUPPORT: u64 = 2;
/// 2025-10-01T09:00:00Z: seeded conversations start from here.
const BASE_TIME: i64 = 1_759_309_200;
const DAY: i64 = 86_400;

static AGENTS: &[Agent] = &[
    Agent {
        id: 1,
        name: "Priya Shah",
        email: "priya.shah@acme-retail.example.com",
        role: AgentRole::Administrator,
        team_id: SUPPORT,
        region: Region::Uk,
    },
    Agent {
        id: 2,
        name: "Oliver Bennett",
        email: "oliver.bennett@acme-retail.example.com",
        role: AgentRole::Agent,
        team_id: SALES,
        region: Region::Uk,
    },
    Agent {
        id: 3,
        name: "Amelia Clarke",
        email: "amelia.clarke@acme-retail.example.com",
        role: AgentRole::Agent,
        team_id: SUPPORT,
        region: Region::Uk,
    },
    Agent {
        id: 4,
        name: "Jonas Weber",
        email: "jonas.weber@acme-retail.example.de",
        role: AgentRole::Agent,
        team_id: SALES,
        region: Region::De,
    },
    Agent {
        id: 5,
        name: "Lena Fischer",
        email: "lena.fischer@acme-retail.example.de",
        role: AgentRole::Agent,
        team_id: SUPPORT,
        region: Region::De,
    },
    Agent {
        id: 6,
        name: "Katrin Hoffmann",
        email: "katrin.hoffmann@acme-retail.example.de",
        role: AgentRole::Agent,
        team_id: SALES,
        region: Region::De,
    },
];

static TEAMS: &[Team] = &[
    Team {
        id: SALES,
        name: "sales",
        description: "Orders, quotes and trade accounts in the UK and Germany",
    },
    Team {
        id: SUPPORT,
        name: "support",
        description: "Deliveries, returns, refunds and complaints",
    },
];

static BUSINESS_NUMBERS: &[BusinessNumber] = &[
    BusinessNumber {
        phone_number_id: UK_PHONE_NUMBER_ID,
        display_phone_number: "+44 7700 900100",
        e164: "+447700900100",
        verified_name: "Acme Retail UK",
        quality_rating: "GREEN",
        region: Region::Uk,
    },
    BusinessNumber {
        phone_number_id: DE_PHONE_NUMBER_ID,
        display_phone_number: "+49 1515 5550100",
        e164: "+4915155550100",
        verified_name: "Acme Retail Deutschland",
        quality_rating: "GREEN",
        region: Region::De,
    },
];

static INBOXES: &[Inbox] = &[
    Inbox {
        id: UK_INBOX_ID,
        name: "WhatsApp UK",
        channel_id: 11,
        phone_number_id: UK_PHONE_NUMBER_ID,
        region: Region::Uk,
    },
    Inbox {
        id: DE_INBOX_ID,
        name: "WhatsApp Deutschland",
        channel_id: 12,
        phone_number_id: DE_PHONE_NUMBER_ID,
        region: Region::De,
    },
];

static LABELS: &[Label] = &[
    Label {
        id: 1,
        title: "order",
        description: "New or changed orders",
        color: "#1f93ff",
    },
    Label {
        id: 2,
        title: "delivery",
        description: "Where is my parcel",
        color: "#0fb17a",
    },
    Label {
        id: 3,
        title: "returns",
        description: "Returns and exchanges",
        color: "#f7a400",
    },
    Label {
        id: 4,
        title: "refund",
        description: "Refunds and payment disputes",
        color: "#e0513a",
    },
    Label {
        id: 5,
        title: "invoice",
        description: "Invoices and VAT receipts",
        color: "#8e6bd8",
    },
    Label {
        id: 6,
        title: "wholesale",
        description: "Trade and wholesale customers",
        color: "#5d7592",
    },
    Label {
        id: 7,
        title: "vip",
        description: "Key accounts: reply within the hour",
        color: "#d4af37",
    },
    Label {
        id: 8,
        title: "confidential",
        description: "Disputes, health or payment data: supervisors only",
        color: "#b00020",
    },
];

/// Builds a contact; ids are also the creation order, one a day.
const fn contact_row(
    id: u64,
    name: &'static str,
    phone_number: &'static str,
    email: Option<&'static str>,
    city: &'static str,
    company_name: Option<&'static str>,
    note: Option<&'static str>,
) -> Contact {
    Contact {
        id,
        name,
        phone_number,
        email,
        city,
        company_name,
        note,
        inbox_id: if id <= 22 { UK_INBOX_ID } else { DE_INBOX_ID },
        created_at: BASE_TIME - (41 - id as i64) * DAY,
    }
}

static CONTACTS: &[Contact] = &[
    contact_row(
        1,
        "Harriet Blake",
        "+447700900101",
        Some("harriet.blake@example.com"),
        "London",
        None,
        Some("Prefers a call back on +44 7700 900123 after 5pm."),
    ),
    contact_row(
        2,
        "George Whitfield",
        "+447700900102",
        Some("george.whitfield@example.com"),
        "Manchester",
        Some("Whitfield Joinery Ltd"),
        Some("Trade account; send invoices to accounts@whitfield-joinery.example.com, deliveries via the site foreman on 07700 900222."),
    ),
    contact_row(
        3,
        "Aisha Rahman",
        "+447700900103",
        Some("aisha.rahman@example.com"),
        "Birmingham",
        None,
        None,
    ),
    contact_row(
        4,
        "Daniel Okafor",
        "+447700900104",
        None,
        "Leeds",
        None,
        Some("Deliveries to the side gate, 14 Elm Row, Leeds LS6 2AB."),
    ),
    contact_row(
        5,
        "Charlotte Evans",
        "+447700900105",
        Some("charlotte.evans@example.com"),
        "Bristol",
        None,
        None,
    ),
    contact_row(
        6,
        "Mohammed Iqbal",
        "+447700900106",
        Some("m.iqbal@example.com"),
        "Bradford",
        Some("Iqbal & Sons Grocers"),
        Some("Wholesale key account; direct line +44 7700 900987."),
    ),
    contact_row(
        7,
        "Lucy Harrington",
        "+447700900107",
        Some("lucy.h@example.com"),
        "Edinburgh",
        None,
        None,
    ),
    contact_row(
        8,
        "Thomas Reid",
        "+447700900108",
        None,
        "Glasgow",
        None,
        None,
    ),
    contact_row(
        9,
        "Grace Adeyemi",
        "+447700900109",
        Some("grace.adeyemi@example.com"),
        "London",
        None,
        Some("Card refund disputed with her bank. Personal email grace.a.personal@example.com"),
    ),
    contact_row(
        10,
        "William Carter",
        "+447700900110",
        Some("will.carter@example.com"),
        "Cardiff",
        Some("Carter Interiors"),
        None,
    ),
    contact_row(
        11,
        "Olivia Patel",
        "+447700900111",
        Some("olivia.patel@example.com"),
        "Leicester",
        None,
        None,
    ),
    contact_row(
        12,
        "James Murray",
        "+447700900112",
        None,
        "Aberdeen",
        None,
        None,
    ),
    contact_row(
        13,
        "Freya Lindqvist",
        "+447700900113",
        Some("freya.l@example.com"),
        "London",
        None,
        Some("Prefers WhatsApp over email."),
    ),
    contact_row(
        14,
        "Samuel Osei",
        "+447700900114",
        Some("samuel.osei@example.com"),
        "Nottingham",
        None,
        None,
    ),
    contact_row(
        15,
        "Ella Brooks",
        "+447700900115",
        Some("ella.brooks@example.com"),
        "Brighton",
        None,
        Some("Wheelchair user: ground-floor delivery only. Carer's mobile +44 7700 900456."),
    ),
    contact_row(
        16,
        "Benjamin Ward",
        "+447700900116",
        Some("ben.ward@example.com"),
        "Sheffield",
        Some("Ward & Co Events"),
        None,
    ),
    contact_row(
        17,
        "Isla MacLeod",
        "+447700900117",
        None,
        "Inverness",
        None,
        None,
    ),
    contact_row(
        18,
        "Arjun Mehta",
        "+447700900118",
        Some("arjun.mehta@example.com"),
        "Reading",
        None,
        None,
    ),
    contact_row(
        19,
        "Poppy Sinclair",
        "+447700900119",
        Some("poppy.sinclair@example.com"),
        "York",
        None,
        Some("Buys gifts for her mother; never mention orders if +44 7700 900321 answers."),
    ),
    contact_row(
        20,
        "Henry Douglas",
        "+447700900120",
        Some("henry.douglas@example.com"),
        "Oxford",
        Some("Douglas Estates"),
        None,
    ),
    contact_row(
        21,
        "Zara Hussain",
        "+447700900121",
        Some("zara.hussain@example.com"),
        "Luton",
        None,
        None,
    ),
    contact_row(
        22,
        "Noah Fletcher",
        "+447700900122",
        None,
        "Norwich",
        None,
        None,
    ),
    contact_row(
        23,
        "Anna Müller",
        "+4915155512301",
        Some("anna.mueller@example.de"),
        "Berlin",
        None,
        Some("Rückruf erbeten unter +49 151 55512399 ab 18 Uhr."),
    ),
    contact_row(
        24,
        "Lukas Schneider",
        "+4917655512302",
        Some("lukas.schneider@example.de"),
        "Hamburg",
        Some("Schneider Gastro GmbH"),
        Some("Rechnungen bitte an buchhaltung@schneider-gastro.example.de"),
    ),
    contact_row(
        25,
        "Mia Wagner",
        "+4915155512303",
        Some("mia.wagner@example.de"),
        "München",
        None,
        None,
    ),
    contact_row(
        26,
        "Felix Becker",
        "+4917655512304",
        None,
        "Köln",
        None,
        None,
    ),
    contact_row(
        27,
        "Sophie Schulz",
        "+4915155512305",
        Some("sophie.schulz@example.de"),
        "Frankfurt am Main",
        None,
        None,
    ),
    contact_row(
        28,
        "Maximilian Koch",
        "+4917655512306",
        Some("max.koch@example.de"),
        "Stuttgart",
        Some("Koch Bau AG"),
        Some("Zahlt per Lastschrift: IBAN DE89 3704 0044 0532 0130 00"),
    ),
    contact_row(
        29,
        "Emilia Richter",
        "+4915155512307",
        Some("emilia.richter@example.de"),
        "Düsseldorf",
        None,
        None,
    ),
    contact_row(
        30,
        "Paul Klein",
        "+4917655512308",
        None,
        "Leipzig",
        None,
        None,
    ),
    contact_row(
        31,
        "Hannah Wolf",
        "+4915155512309",
        Some("hannah.wolf@example.de"),
        "Dresden",
        None,
        Some("Bitte nur per WhatsApp kontaktieren, nicht an hannah.wolf@example.de schreiben."),
    ),
    contact_row(
        32,
        "Leon Neumann",
        "+4917655512310",
        Some("leon.neumann@example.de"),
        "Hannover",
        None,
        None,
    ),
    contact_row(
        33,
        "Lea Schwarz",
        "+4915155512311",
        Some("lea.schwarz@example.de"),
        "Nürnberg",
        None,
        None,
    ),
    contact_row(
        34,
        "Elias Zimmermann",
        "+4917655512312",
        Some("elias.zimmermann@example.de"),
        "Bremen",
        Some("Zimmermann Möbel KG"),
        Some("Schlüsselkunde; Einkauf Frau Braun: +49 176 55598765"),
    ),
    contact_row(
        35,
        "Clara Braun",
        "+4915155512313",
        Some("clara.braun@example.de"),
        "Bonn",
        None,
        None,
    ),
    contact_row(
        36,
        "Ben Krüger",
        "+4917655512314",
        None,
        "Essen",
        None,
        None,
    ),
    contact_row(
        37,
        "Marie Hartmann",
        "+4915155512315",
        Some("marie.hartmann@example.de"),
        "Münster",
        None,
        None,
    ),
    contact_row(
        38,
        "Finn Lange",
        "+4917655512316",
        Some("finn.lange@example.de"),
        "Kiel",
        None,
        None,
    ),
    contact_row(
        39,
        "Lina Werner",
        "+4915155512317",
        Some("lina.werner@example.de"),
        "Freiburg",
        None,
        Some("Latexallergie: beim Aufbau keine Latexhandschuhe verwenden."),
    ),
    contact_row(
        40,
        "Jan Krause",
        "+4917655512318",
        Some("jan.krause@example.de"),
        "Augsburg",
        None,
        None,
    ),
];

const fn line_in(content: &'static str) -> Line {
    Line {
        direction: Direction::Incoming,
        content,
    }
}

const fn line_out(content: &'static str) -> Line {
    Line {
        direction: Direction::Outgoing,
        content,
    }
}

const fn note(content: &'static str) -> Line {
    Line {
        direction: Direction::PrivateNote,
        content,
    }
}

/// Builds a conversation; the inbox follows the contact, and conversations
/// start a few hours apart so list order and timestamps are stable.
#[allow(clippy::too_many_arguments)] // a table row: one argument per column
const fn conversation_row(
    id: u64,
    contact_id: u64,
    assignee_id: Option<u64>,
    team_id: Option<u64>,
    status: Status,
    priority: Option<&'static str>,
    labels: &'static [&'static str],
    lines: &'static [Line],
) -> Conversation {
    Conversation {
        id,
        contact_id,
        inbox_id: if contact_id <= 22 {
            UK_INBOX_ID
        } else {
            DE_INBOX_ID
        },
        assignee_id,
        team_id,
        status,
        priority,
        labels,
        created_at: BASE_TIME + id as i64 * 5 * 3_600,
        lines,
    }
}

static CONVERSATIONS: &[Conversation] = &[
    conversation_row(1, 1, Some(2), Some(SALES), Status::Open, None, &["order"], &[
        line_in("Hi, is the Harlow three-seater sofa in sage green back in stock?"),
        line_out("Hi Harriet, it's due in on the 14th. Shall I reserve one for you?"),
        line_in("Yes please. Best to ring me on +44 7700 900123 after 5pm to confirm."),
    ]),
    conversation_row(2, 3, Some(3), Some(SUPPORT), Status::Resolved, None, &["delivery"], &[
        line_in("My parcel UK-100377 was meant to arrive yesterday, nothing yet."),
        line_out("Sorry Aisha, the courier missed the slot. It's booked for tomorrow 8am-12pm."),
        line_in("Arrived, thanks! For the finance agreement on the sofa, my National Insurance number is JG 10 37 59 A."),
    ]),
    conversation_row(3, 2, Some(1), Some(SUPPORT), Status::Open, None, &["invoice"], &[
        line_in("Can you send the VAT invoice for order UK-100402 to accounts@whitfield-joinery.example.com?"),
        line_out("Of course George, it will be with your accounts team within the hour."),
    ]),
    conversation_row(4, 5, Some(2), Some(SALES), Status::Pending, None, &["order"], &[
        line_in("Do you do the oak dining table in 180cm?"),
        line_out("We do, £649. Want me to send a payment link?"),
        line_in("Let me measure the room first and get back to you."),
    ]),
    conversation_row(5, 4, Some(3), Some(SUPPORT), Status::Open, None, &["delivery"], &[
        line_in("Please leave the wardrobe at the side gate, 14 Elm Row, Leeds LS6 2AB, I'm at work."),
        line_out("Noted Daniel, I've added that to the delivery instructions."),
        note("Driver needs a second person for the wardrobe; booked two-man crew."),
        line_in("Can I pay the £40 two-man fee by card? 4539 1488 0343 6467, exp 09/27"),
    ]),
    conversation_row(6, 6, None, Some(SALES), Status::Open, Some("high"), &["vip", "wholesale"], &[
        line_in("Salaam, we need 40 units of the Brixton bar stool for the new shop by Friday."),
        line_in("Call me on 07700 900987 if easier."),
    ]),
    conversation_row(7, 7, Some(3), Some(SUPPORT), Status::Resolved, None, &["returns"], &[
        line_in("The lamp arrived with a cracked shade. Can I return it?"),
        line_out("So sorry Lucy! I've emailed a prepaid label to lucy.h@example.com."),
        line_in("Got it, dropped off today."),
    ]),
    conversation_row(8, 8, None, None, Status::Open, None, &[], &[
        line_in("Hiya, what time does the Glasgow store shut on Sundays?"),
    ]),
    conversation_row(9, 9, Some(1), Some(SUPPORT), Status::Open, Some("high"), &["confidential", "refund"], &[
        line_in("I was charged twice for order UK-100455 and my bank has opened a dispute."),
        line_out("I'm sorry Grace. I can see both payments and have started the refund for the duplicate."),
        note("Bank chargeback ref CB-88231. Card ending 4417. Do not refund twice."),
        line_in("Please email the confirmation to grace.a.personal@example.com, not my work address."),
    ]),
    conversation_row(10, 10, Some(2), Some(SALES), Status::Open, None, &["vip"], &[
        line_in("Will here from Carter Interiors. Can we get trade pricing on 12 Marlow armchairs?"),
        line_out("Hi Will, 12 Marlow at trade is £2,940 + VAT. Quote sent to will.carter@example.com."),
    ]),
    conversation_row(11, 11, None, Some(SUPPORT), Status::Pending, None, &["returns"], &[
        line_in("I want to swap the rug for the larger size, order UK-100468."),
    ]),
    conversation_row(12, 13, Some(3), Some(SUPPORT), Status::Resolved, None, &[], &[
        line_in("Could you change my delivery to next Tuesday?"),
        line_out("Done Freya, Tuesday 12-4pm."),
    ]),
    conversation_row(13, 14, None, None, Status::Open, None, &["order"], &[
        line_in("Is click and collect available in Nottingham for the Ashby bookcase?"),
    ]),
    conversation_row(14, 16, Some(2), Some(SALES), Status::Resolved, None, &["vip", "order"], &[
        line_in("Ben from Ward & Co Events: 60 folding chairs for the 22nd, invoice as usual."),
        line_out("Confirmed Ben, order UK-100490, delivery on the 21st."),
    ]),
    conversation_row(15, 15, Some(3), Some(SUPPORT), Status::Open, Some("urgent"), &["confidential", "delivery"], &[
        line_in("I use a wheelchair, can the bed be brought up to the first floor? My carer is on +44 7700 900456."),
        line_out("Absolutely Ella, I've booked a two-person crew and they'll call your carer first."),
        note("Medical: customer has limited mobility. Keep details off the delivery note."),
    ]),
    conversation_row(16, 19, None, Some(SALES), Status::Open, None, &["order"], &[
        line_in("I'd like to order the Ivy vase as a gift. Please don't call the landline, my mum picks up."),
        line_in("My work phone is on WhatsApp too if this one's off: wa.me/447700900456"),
    ]),
    conversation_row(17, 23, Some(4), Some(SALES), Status::Open, None, &["order"], &[
        line_in("Hallo, ist das Sofa Havel in Grau noch lieferbar?"),
        line_out("Hallo Frau Müller, ja, Lieferung in ca. 10 Tagen. Soll ich es reservieren?"),
        line_in("Gerne. Rufen Sie mich bitte unter 0151 55512399 ab 18 Uhr an."),
    ]),
    conversation_row(18, 25, Some(5), Some(SUPPORT), Status::Resolved, None, &["delivery"], &[
        line_in("Meine Bestellung DE-200512 ist noch nicht da."),
        line_out("Das Paket liegt bei DHL, es wird morgen zugestellt."),
        line_in("Ist angekommen, danke!"),
    ]),
    conversation_row(19, 24, Some(6), Some(SALES), Status::Open, None, &["vip", "invoice"], &[
        line_in("Für die Restaurants brauchen wir 80 Stühle Modell Elbe. Rechnung an buchhaltung@schneider-gastro.example.de"),
        line_out("Gern, Herr Schneider. Angebot folgt heute."),
    ]),
    conversation_row(20, 26, Some(4), Some(SALES), Status::Pending, None, &["order"], &[
        line_in("Gibt es den Esstisch Isar auch in 200 cm?"),
        line_out("Ja, für 799 €. Soll ich einen Zahlungslink schicken?"),
    ]),
    conversation_row(21, 27, Some(5), Some(SUPPORT), Status::Open, None, &["returns"], &[
        line_in("Ich möchte die Lampe zurückgeben, sie ist zu groß."),
        line_out("Kein Problem, das Retourenlabel geht an sophie.schulz@example.de."),
    ]),
    conversation_row(22, 29, None, Some(SUPPORT), Status::Open, None, &["delivery"], &[
        line_in("Können Sie die Lieferung an die Königsallee 12, 40212 Düsseldorf umleiten?"),
    ]),
    conversation_row(23, 31, Some(6), Some(SALES), Status::Resolved, None, &[], &[
        line_in("Haben Sie Gutscheine?"),
        line_out("Ja, ab 25 € im Shop oder hier per WhatsApp."),
    ]),
    conversation_row(24, 34, Some(4), Some(SALES), Status::Open, Some("high"), &["vip"], &[
        line_in("Zimmermann Möbel: Wir möchten 25 Kommoden Weser für die Ausstellung bestellen."),
        line_out("Sehr gern, Herr Zimmermann. Ich melde mich bei Frau Braun unter +49 176 55598765."),
    ]),
    conversation_row(25, 32, Some(5), Some(SUPPORT), Status::Pending, None, &["returns"], &[
        line_in("Der Teppich hat einen Webfehler, Bestellung DE-200588."),
        line_out("Bitte schicken Sie uns ein Foto, dann tauschen wir ihn um."),
    ]),
    conversation_row(26, 33, None, None, Status::Open, None, &[], &[
        line_in("Wann öffnet die Filiale in Nürnberg am Samstag?"),
    ]),
    conversation_row(27, 35, Some(6), Some(SALES), Status::Open, None, &["order"], &[
        line_in("Ich hätte gern zwei Sessel Mosel in Blau."),
        line_out("Gern, Frau Braun. Die Bestätigung geht an clara.braun@example.de."),
    ]),
    conversation_row(28, 28, Some(4), Some(SALES), Status::Open, None, &["confidential", "invoice"], &[
        line_in("Bitte buchen Sie die Rechnung DE-200601 von meinem Konto ab: IBAN DE89 3704 0044 0532 0130 00."),
        line_out("Danke, Herr Koch. Das Lastschriftmandat ist hinterlegt."),
        note("Mandatsreferenz ACME-DE-0028, Kontoinhaber Maximilian Koch."),
    ]),
    conversation_row(29, 37, Some(5), Some(SUPPORT), Status::Resolved, None, &["delivery"], &[
        line_in("Kann der Fahrer vorher anrufen?"),
        line_out("Ja, er ruft 30 Minuten vorher an."),
    ]),
    conversation_row(30, 39, None, Some(SUPPORT), Status::Open, Some("high"), &["confidential"], &[
        line_in("Ich habe eine Latexallergie. Bitte beim Aufbau keine Latexhandschuhe benutzen."),
    ]),
];

static TEMPLATES: &[Template] = &[
    Template {
        id: "1038472913845001",
        name: "order_confirmation",
        language: "en_GB",
        category: "UTILITY",
        header: "Order confirmed",
        body: "Hi {{1}}, thanks for your order {{2}}. We'll message you again when it ships. Total paid: {{3}}.",
        body_example: &["Harriet", "UK-100482", "£249.00"],
        footer: "Acme Retail UK",
    },
    Template {
        id: "1038472913845002",
        name: "order_confirmation",
        language: "de",
        category: "UTILITY",
        header: "Bestellung bestätigt",
        body: "Hallo {{1}}, vielen Dank für deine Bestellung {{2}}. Wir melden uns, sobald sie versandt wird. Gesamtbetrag: {{3}}.",
        body_example: &["Anna", "DE-200731", "219,00 €"],
        footer: "Acme Retail Deutschland",
    },
    Template {
        id: "1038472913845003",
        name: "delivery_update",
        language: "en_GB",
        category: "UTILITY",
        header: "Delivery update",
        body: "Hi {{1}}, your order {{2}} is out for delivery and should arrive between {{3}}.",
        body_example: &["Aisha", "UK-100377", "8am and 12pm"],
        footer: "Acme Retail UK",
    },
    Template {
        id: "1038472913845004",
        name: "delivery_update",
        language: "de",
        category: "UTILITY",
        header: "Lieferstatus",
        body: "Hallo {{1}}, deine Bestellung {{2}} ist in Zustellung und kommt voraussichtlich zwischen {{3}}.",
        body_example: &["Mia", "DE-200512", "8 und 12 Uhr"],
        footer: "Acme Retail Deutschland",
    },
    Template {
        id: "1038472913845005",
        name: "appointment_reminder",
        language: "en_GB",
        category: "UTILITY",
        header: "Your appointment",
        body: "Hi {{1}}, a reminder of your design consultation at our {{2}} store on {{3}}. Reply CHANGE to rebook.",
        body_example: &["Freya", "London Shoreditch", "Tuesday 14 October at 11:00"],
        footer: "Acme Retail UK",
    },
    Template {
        id: "1038472913845006",
        name: "appointment_reminder",
        language: "de",
        category: "UTILITY",
        header: "Ihr Termin",
        body: "Hallo {{1}}, wir erinnern an Ihre Einrichtungsberatung in unserer Filiale {{2}} am {{3}}. Antworten Sie ÄNDERN, um umzubuchen.",
        body_example: &["Anna", "Berlin Mitte", "Dienstag, 14. Oktober um 11:00"],
        footer: "Acme Retail Deutschland",
    },
];

/// A 4×4 PNG in WhatsApp's green: what a customer's photo is here.
static PHOTO: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x04, 0x08, 0x02, 0x00, 0x00, 0x00, 0x26, 0x93, 0x09,
    0x29, 0x00, 0x00, 0x00, 0x10, 0x49, 0x44, 0x41, 0x54, 0x78, 0xda, 0x63, 0x50, 0xbd, 0x9c, 0x06,
    0x47, 0x0c, 0xc4, 0x71, 0x00, 0x35, 0x02, 0x15, 0xe1, 0xfd, 0x88, 0x4f, 0x8c, 0x00, 0x00, 0x00,
    0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

/// Lucy's photo of the cracked lamp shade (conversation 7, Amelia's), and
/// Will's of his showroom (conversation 10, another agent's).
static ATTACHMENTS: &[Attachment] = &[
    Attachment {
        id: 701,
        message_id: 701,
        filename: "cracked-shade.png",
        content_type: "image/png",
        bytes: PHOTO,
    },
    Attachment {
        id: 1001,
        message_id: 1001,
        filename: "showroom.png",
        content_type: "image/png",
        bytes: PHOTO,
    },
];

static MEDIA: &[Media] = &[
    Media {
        id: "1180245637719204",
        phone_number_id: UK_PHONE_NUMBER_ID,
        mime_type: "image/png",
        bytes: PHOTO,
    },
    Media {
        id: "2291356748820315",
        phone_number_id: DE_PHONE_NUMBER_ID,
        mime_type: "image/png",
        bytes: PHOTO,
    },
];

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn ids_are_dense_and_unique() {
        let contact_ids: Vec<u64> = contacts().iter().map(|c| c.id).collect();
        assert_eq!(
            contact_ids,
            (1..=40).collect::<Vec<_>>(),
            "contacts should be 1..=40 in order"
        );
        let conversation_ids: Vec<u64> = conversations().iter().map(|c| c.id).collect();
        assert_eq!(
            conversation_ids,
            (1..=30).collect::<Vec<_>>(),
            "conversations should be 1..=30 in order"
        );
        let agent_ids: Vec<u64> = agents().iter().map(|a| a.id).collect();
        assert_eq!(
            agent_ids,
            (1..=6).collect::<Vec<_>>(),
            "agents should be 1..=6 in order"
        );
        let message_ids: HashSet<u64> = messages().iter().map(|m| m.id).collect();
        assert_eq!(
            message_ids.len(),
            messages().len(),
            "message ids should be unique"
        );
        assert!(
            messages().iter().all(|m| m.id < FIRST_RUNTIME_MESSAGE_ID),
            "seeded message ids should stay below the runtime range"
        );
    }

    #[test]
    fn references_resolve() {
        for conversation in conversations() {
            let contact = contact(conversation.contact_id).unwrap_or_else(|| {
                panic!("conversation {} should have a contact", conversation.id)
            });
            assert_eq!(
                contact.inbox_id, conversation.inbox_id,
                "conversation {} should be in its contact's inbox",
                conversation.id
            );
            if let Some(agent_id) = conversation.assignee_id {
                let agent = agent(agent_id).unwrap_or_else(|| {
                    panic!(
                        "conversation {} should have a known assignee",
                        conversation.id
                    )
                });
                assert_eq!(
                    agent.region,
                    conversation.region(),
                    "conversation {} should be assigned within its region",
                    conversation.id
                );
            } else {
                assert!(
                    conversation
                        .lines
                        .iter()
                        .all(|l| l.direction == Direction::Incoming),
                    "unassigned conversation {} should only hold customer messages",
                    conversation.id
                );
            }
            if let Some(team_id) = conversation.team_id {
                assert!(
                    team(team_id).is_some(),
                    "conversation {} should have a known team",
                    conversation.id
                );
            }
            for label in conversation.labels {
                assert!(
                    labels().iter().any(|l| l.title == *label),
                    "label {label:?} of conversation {} should be an account label",
                    conversation.id
                );
            }
        }
        for inbox in inboxes() {
            assert!(
                business_number(inbox.phone_number_id).is_some(),
                "inbox {} should be bound to a known business number",
                inbox.id
            );
        }
    }

    #[test]
    fn phone_numbers_are_fictional_e164() {
        for contact in contacts() {
            let ok = contact.phone_number.starts_with("+447700900")
                || contact.phone_number.starts_with("+4915155")
                || contact.phone_number.starts_with("+4917655");
            assert!(
                ok,
                "contact {} should use a fictional number range",
                contact.id
            );
            assert!(
                contact.phone_number[1..]
                    .bytes()
                    .all(|b| b.is_ascii_digit()),
                "contact {} phone should be E.164",
                contact.id
            );
            if let Some(email) = contact.email {
                assert!(
                    email.ends_with("@example.com") || email.ends_with("@example.de"),
                    "contact {} email should be on an example domain",
                    contact.id
                );
            }
        }
    }

    #[test]
    fn assignment_table_is_as_documented() {
        let table: Vec<(u64, Vec<u64>)> = agents()
            .iter()
            .map(|a| (a.id, conversations_assigned_to(a.id)))
            .collect();
        assert_eq!(
            table,
            vec![
                (1, vec![3, 9]),
                (2, vec![1, 4, 10, 14]),
                (3, vec![2, 5, 7, 12, 15]),
                (4, vec![17, 20, 24, 28]),
                (5, vec![18, 21, 25, 29]),
                (6, vec![19, 23, 27]),
            ],
            "the documented assignment of conversations to agents should hold"
        );
        assert_eq!(
            unassigned_conversations(),
            vec![6, 8, 11, 13, 16, 22, 26, 30]
        );
        assert_eq!(conversations_labelled("confidential"), vec![9, 15, 28, 30]);
        assert_eq!(conversations_labelled("vip"), vec![6, 10, 14, 19, 24]);
    }

    #[test]
    fn messages_follow_the_scripts() {
        let first = messages()
            .iter()
            .find(|m| m.conversation_id == 9)
            .expect("conversation 9 should have messages");
        assert_eq!(
            first.id, 901,
            "message ids should be conversation_id * 100 + n"
        );
        assert_eq!(first.agent_id, None, "an incoming message has no agent");
        let note = messages()
            .iter()
            .find(|m| m.conversation_id == 9 && m.direction == Direction::PrivateNote)
            .expect("conversation 9 should carry a private note");
        assert_eq!(note.agent_id, Some(1), "a note is written by the assignee");
    }
}
