//! Masking personal data: what a masked value looks like, and where free
//! text holds a phone number, an e-mail address, a WhatsApp message id, a
//! payment card number or an IBAN ([`finance`]).
//!
//! Pure functions over text. The response rewriter decides *which* values
//! to mask (configured fields, and every string when a rule detects free
//! text) and calls [`mask_whole`] or [`mask_detected`] here.
//!
//! Detection is deliberately conservative about what counts as a phone
//! number, because over-masking ids breaks clients. A number is written
//! as digit groups with single spaces, hyphens, dots, one `/` or
//! parentheses between them, and is one of: international (`+`, or a
//! percent-encoded `%2B`, and 8–15 digits); international after `00`
//! (8–15 digits more, written with separators); national after a trunk
//! `0` (9–13 digits with separators, 10–12 without; a date such as
//! `01.12.2026 14:00` is not one); North American (`(415) 555-0123`,
//! `415-555-0123`: groups of 3, 3 and 4); or 8–15 digits right after a
//! link's `wa.me/`, `phone=`, `tel:` or `sms:`. Other bare digit runs,
//! such as WhatsApp's `phone_number_id` (`106540352242922`), are ids, not
//! phone numbers, and are left alone, unless a rule names countries whose
//! national numbers have their shape (`countries`, [`national`]).

use std::fmt::Write as _;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::policy::{ItemSelector, Permission};

mod finance;
mod national;
pub mod national_id;

pub use national::{Region, Regions};

/// A `redaction` rule of the config, compiled: for callers without
/// `unless_permission`, mask the values at `fields` whole and the phone
/// numbers, e-mail addresses and the rest `detect` finds in every string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedactionRule {
    pub name: String,
    pub unless_permission: Option<Permission>,
    pub fields: Vec<ItemSelector>,
    pub detect: Vec<Detector>,
    pub style: Style,
}

/// How a masked value is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Style {
    /// Keep enough to recognise, hide enough to protect: a phone number
    /// keeps its last three digits (`+** **** ***123`), an e-mail its first
    /// letter and domain (`s***@example.com`), other text its first
    /// character (`S***`).
    Partial,
    /// `[redacted]`.
    Full,
    /// `#` and 16 hex digits of HMAC-SHA256 under the rule's key: the same
    /// value always masks to the same text, so masked records can still be
    /// joined, and without the key nobody can test a guess.
    Hash(Vec<u8>),
    /// The value becomes JSON `null`: nothing of it is left, and a client
    /// that reads a number gets no made-up one (counts next to a filtered
    /// list). Whole values only: the config refuses it with `detect`, and
    /// text that must be masked in place under it reads `[redacted]`.
    Withhold,
}

impl Style {
    /// How little of a value the style leaves: `withhold` (nothing, not even
    /// its type) over `full` over `hash` (the same value, recognisable
    /// across records) over `partial`. A value several rules mask gets the
    /// strictest of their styles.
    pub fn strictness(&self) -> u8 {
        match self {
            Style::Partial => 0,
            Style::Hash(_) => 1,
            Style::Full => 2,
            Style::Withhold => 3,
        }
    }
}

/// A kind of personal data found in free text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Detector {
    /// Phone numbers, and the national numbers of these countries
    /// (`countries`).
    Phone(Regions),
    Email,
    /// A WhatsApp message id (`wamid.HBgL…`): base64 that carries the
    /// customer's phone number in clear (`HBgLMTY0NzM3Nzc3NzUV…` decodes to
    /// `…16473777775…`), in Chatwoot's messages (`source_id`) and Meta's
    /// API alike.
    WhatsAppMessageId,
    /// A payment card number (13–19 digits passing the Luhn check).
    Card,
    /// An IBAN (passing its mod 97 check).
    Iban,
    /// The identity numbers of these countries (`countries`): Brazil's
    /// CPF, Spain's DNI and NIE, … ([`national_id`]).
    NationalId(Regions),
}

/// What every WhatsApp message id begins with.
const WAMID_PREFIX: &str = "wamid.";

/// Fewer base64 characters after the prefix than this is the word, not an
/// id (a real one has dozens).
const WAMID_MIN_BODY: usize = 12;

/// Text of a masked value.
pub const FULL_MASK: &str = "[redacted]";

impl Detector {
    /// Phone numbers as found everywhere, no country's national numbers
    /// added.
    pub const PHONE: Detector = Detector::Phone(Regions::NONE);

    pub fn parse(name: &str) -> Option<Detector> {
        match name {
            "phone" => Some(Detector::PHONE),
            "email" => Some(Detector::Email),
            "wamid" => Some(Detector::WhatsAppMessageId),
            "card" => Some(Detector::Card),
            "iban" => Some(Detector::Iban),
            "national_id" => Some(Detector::NationalId(Regions::NONE)),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Detector::Phone(_) => "phone",
            Detector::Email => "email",
            Detector::WhatsAppMessageId => "wamid",
            Detector::Card => "card",
            Detector::Iban => "iban",
            Detector::NationalId(_) => "national_id",
        }
    }
}

/// The mask of a whole value (a configured field): its kind is guessed
/// from its shape so a partial mask keeps the right part.
pub fn mask_whole(text: &str, style: &Style) -> String {
    let mut out = String::new();
    mask_whole_into(text, style, &mut out);
    out
}

/// [`mask_whole`], appended to `out` (a rewrite masks many values and
/// reuses one buffer for them all).
pub fn mask_whole_into(text: &str, style: &Style, out: &mut String) {
    // A phone number before a card number: a bare 13–15 digit `wa_id`
    // passes the Luhn check one time in ten, and keeps three digits, not
    // four, as a phone number.
    let kind = if wamid_end(text, 0) == Some(text.len()) {
        Some(Detector::WhatsAppMessageId)
    } else if next_at_sign(text, 0).is_some() && find_email(text, 0).is_some() {
        Some(Detector::Email)
    } else if is_whole_phone(text) || is_bare_number(text) {
        Some(Detector::PHONE)
    } else if finance::is_whole_card(text) {
        Some(Detector::Card)
    } else if finance::is_whole_iban(text) {
        Some(Detector::Iban)
    } else {
        None
    };
    mask_span(text, kind, style, out);
}

/// Whether all of `text` is one phone number (as [`find_phone`] finds
/// them), without looking for one further in.
fn is_whole_phone(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.first().is_some_and(|&b| may_start_number(b))
        && phone_at(bytes, 0, Regions::NONE) == Some((0, bytes.len()))
}

/// A value of 8–15 digits and nothing else: in free text an id, but a field
/// configured as personal data holding one holds a number without its `+`
/// (WhatsApp's `wa_id`, Chatwoot's `source_id` of a WhatsApp contact), so
/// a partial mask keeps its last three digits, as the `phone_number` next
/// to it does.
fn is_bare_number(text: &str) -> bool {
    (8..=15).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit())
}

/// `text` with every phone number and e-mail address the `detectors` find
/// masked, or `None` when there is none (the common case, which allocates
/// nothing). Also returns how many were masked.
pub fn mask_detected(text: &str, detectors: &[Detector], style: &Style) -> Option<(String, u64)> {
    let mut out = String::new();
    let found = mask_detected_into(text, detectors, style, &mut out);
    (found > 0).then_some((out, found))
}

/// [`mask_detected`], appended to `out`: returns how many were masked, and
/// when that is none leaves `out` as it was.
pub fn mask_detected_into(
    text: &str,
    detectors: &[Detector],
    style: &Style,
    out: &mut String,
) -> u64 {
    // What to look for, in one pass over the detectors (this runs for
    // every string of a body). Several rules' phone (and identity number)
    // detectors find the numbers of all their countries.
    let (mut phone, mut national_id) = (None::<Regions>, None::<Regions>);
    let (mut email, mut wamid, mut card, mut iban) = (false, false, false, false);
    for d in detectors {
        match *d {
            Detector::Phone(r) => phone = Some(phone.unwrap_or_default().union(r)),
            Detector::NationalId(r) if !r.is_empty() => {
                national_id = Some(national_id.unwrap_or_default().union(r));
            }
            Detector::NationalId(_) => {}
            Detector::Email => email = true,
            Detector::WhatsAppMessageId => wamid = true,
            Detector::Card => card = true,
            Detector::Iban => iban = true,
        }
    }
    // Cheap gate: no `@`, no digit and no message id means nothing to find.
    let has_at = email && next_at_sign(text, 0).is_some();
    let has_digit = (phone.is_some() || card || iban || national_id.is_some())
        && text.bytes().any(|b| b.is_ascii_digit());
    let has_wamid = wamid && wamid_finder().find(text.as_bytes()).is_some();
    if !has_at && !has_digit && !has_wamid {
        return 0;
    }
    // In this order, a later kind's finding inside an earlier one's (the
    // digits of an address or of a message id, an id inside an address)
    // is the earlier one's: spans never overlap.
    let mut spans: Vec<(usize, usize, Detector)> = Vec::new();
    if has_at {
        add_disjoint(&mut spans, text, find_email, Detector::Email);
    }
    if has_wamid {
        add_disjoint(&mut spans, text, find_wamid, Detector::WhatsAppMessageId);
    }
    if has_digit && card {
        add_disjoint(&mut spans, text, finance::find_card, Detector::Card);
    }
    if has_digit && iban {
        add_disjoint(&mut spans, text, finance::find_iban, Detector::Iban);
    }
    if let (true, Some(regions)) = (has_digit, national_id) {
        add_disjoint(
            &mut spans,
            text,
            |text, from| national_id::find_national_id(text, from, regions),
            Detector::NationalId(regions),
        );
    }
    if let (true, Some(regions)) = (has_digit, phone) {
        add_disjoint(
            &mut spans,
            text,
            |text, from| find_phone(text, from, regions),
            Detector::Phone(regions),
        );
    }
    if spans.is_empty() {
        return 0;
    }
    spans.sort_unstable_by_key(|&(s, _, _)| s);
    out.reserve(text.len());
    let mut at = 0;
    for &(s, e, kind) in &spans {
        out.push_str(&text[at..s]);
        mask_span(&text[s..e], Some(kind), style, out);
        at = e;
    }
    out.push_str(&text[at..]);
    spans.len() as u64
}

/// Every finding of `find` in `text` as a span of `kind`, but those that
/// overlap a span already found.
fn add_disjoint(
    spans: &mut Vec<(usize, usize, Detector)>,
    text: &str,
    find: impl Fn(&str, usize) -> Option<(usize, usize)>,
    kind: Detector,
) {
    let mut from = 0;
    while let Some((s, e)) = find(text, from) {
        if !spans.iter().any(|&(a, b, _)| s < b && a < e) {
            spans.push((s, e, kind));
        }
        from = e;
    }
}

/// Appends the mask of `text` (a value of `kind`, if known) to `out`.
fn mask_span(text: &str, kind: Option<Detector>, style: &Style, out: &mut String) {
    match style {
        Style::Full | Style::Withhold => out.push_str(FULL_MASK),
        Style::Hash(key) => {
            // HMAC accepts keys of any length; an error is impossible.
            let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
                out.push_str(FULL_MASK);
                return;
            };
            mac.update(text.as_bytes());
            let digest = mac.finalize().into_bytes();
            out.push('#');
            for b in digest.iter().take(8) {
                let _ = write!(out, "{b:02x}");
            }
        }
        Style::Partial => match kind {
            Some(Detector::Phone(_)) => partial_phone(text, out),
            Some(Detector::Email) => partial_email(text, out),
            // Nothing of the base64 is safe to keep: the number is in it.
            Some(Detector::WhatsAppMessageId) => {
                out.push_str(WAMID_PREFIX);
                out.push_str("***");
            }
            Some(Detector::Card) => finance::partial_marks(text, 0, 4, out),
            Some(Detector::Iban) => finance::partial_marks(text, 2, 4, out),
            Some(Detector::NationalId(_)) => finance::partial_marks(text, 0, 2, out),
            None => partial_text(text, out),
        },
    }
}

/// Every digit but the last three becomes `*`; separators stay.
fn partial_phone(text: &str, out: &mut String) {
    let digits = text.bytes().filter(u8::is_ascii_digit).count();
    let hidden = digits.saturating_sub(3);
    out.reserve(text.len());
    // Digits are ASCII, so every cut here is at a character boundary.
    let mut seen = 0;
    let mut copied = 0;
    for (i, b) in text.bytes().enumerate() {
        if seen == hidden {
            break;
        }
        if b.is_ascii_digit() {
            out.push_str(&text[copied..i]);
            out.push('*');
            copied = i + 1;
            seen += 1;
        }
    }
    out.push_str(&text[copied..]);
}

fn partial_email(text: &str, out: &mut String) {
    match next_at_sign(text, 0) {
        Some((at, _)) => {
            out.extend(text[..at].chars().take(1));
            out.push_str("***");
            // The `@` as it was written, plain or encoded.
            out.push_str(&text[at..]);
        }
        None => partial_text(text, out),
    }
}

fn partial_text(text: &str, out: &mut String) {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) if chars.next().is_some() => {
            out.push(first);
            out.push_str("***");
        }
        Some(_) | None => out.push_str("***"),
    }
}

/// The first WhatsApp message id at or after byte `from`: `wamid.` and
/// the base64 (standard or URL-safe, padded or not) that follows it.
fn find_wamid(text: &str, from: usize) -> Option<(usize, usize)> {
    let finder = wamid_finder();
    let mut at = from;
    loop {
        let start = at + finder.find(text.as_bytes().get(at..)?)?;
        if let Some(end) = wamid_end(text, start) {
            return Some((start, end));
        }
        at = start + WAMID_PREFIX.len();
    }
}

/// Where the message id that begins at byte `start` ends, if one does.
fn wamid_end(text: &str, start: usize) -> Option<usize> {
    let body = start + WAMID_PREFIX.len();
    if text.as_bytes().get(start..body)? != WAMID_PREFIX.as_bytes() {
        return None;
    }
    let len = text.as_bytes()[body..]
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'-' | b'_'))
        .count();
    (len >= WAMID_MIN_BODY).then_some(body + len)
}

/// The searcher for `wamid.`, built once: building one per string cost a
/// masked page more than searching it.
fn wamid_finder() -> &'static memchr::memmem::Finder<'static> {
    static FINDER: std::sync::OnceLock<memchr::memmem::Finder<'static>> =
        std::sync::OnceLock::new();
    FINDER.get_or_init(|| memchr::memmem::Finder::new(WAMID_PREFIX))
}

/// The first e-mail address at or after byte `from`: `local@domain.tld`
/// with an RFC 5322 dot-atom local part and a dotted domain whose last
/// label is at least two letters. In a URL the `@` may be percent-encoded
/// (`?email=sophie%40example.com`): then the local part is what a URL
/// leaves unencoded, so it stops at the query's `=` or `&`.
fn find_email(text: &str, from: usize) -> Option<(usize, usize)> {
    let bytes = text.as_bytes();
    let mut search = from;
    while let Some((at, width)) = next_at_sign(text, search) {
        let local_byte: fn(u8) -> bool = if width == 1 {
            is_local_byte
        } else {
            is_encoded_local_byte
        };
        let mut start = at;
        while start > 0 && local_byte(bytes[start - 1]) {
            start -= 1;
        }
        // A local part does not start or end with a dot.
        while start < at && bytes[start] == b'.' {
            start += 1;
        }
        let domain_at = at + width;
        let mut end = domain_at;
        while end < bytes.len() && is_domain_byte(bytes[end]) {
            end += 1;
        }
        while end > domain_at && matches!(bytes[end - 1], b'.' | b'-') {
            end -= 1;
        }
        let domain = &text[domain_at..end];
        let tld_ok = domain.rsplit_once('.').is_some_and(|(head, tld)| {
            !head.is_empty() && tld.len() >= 2 && tld.bytes().all(|b| b.is_ascii_alphabetic())
        });
        if start < at && bytes[at - 1] != b'.' && tld_ok {
            return Some((start, end));
        }
        search = at + 1;
    }
    None
}

/// The next `@` at or after `from`, or its percent-encoding `%40`: where
/// it is and how many bytes it takes. One pass over the bytes.
fn next_at_sign(text: &str, from: usize) -> Option<(usize, usize)> {
    let bytes = text.as_bytes();
    let mut at = from;
    loop {
        at += memchr::memchr2(b'@', b'%', bytes.get(at..)?)?;
        if bytes[at] == b'@' {
            return Some((at, 1));
        }
        if bytes.get(at..at + ENCODED_AT.len()) == Some(ENCODED_AT.as_bytes()) {
            return Some((at, ENCODED_AT.len()));
        }
        at += 1;
    }
}

/// `@` as a URL carries it.
const ENCODED_AT: &str = "%40";

/// What an address's local part holds in a URL: letters, digits, `.`,
/// `-`, `_`, `+` and percent-encodings; not the query's `=` and `&`.
fn is_encoded_local_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'+' | b'%')
}

fn is_local_byte(b: u8) -> bool {
    /// RFC 5322's `atext` besides letters and digits, and the dot.
    const SPECIALS: [bool; 128] = byte_set(b"!#$%&'*+/=?^_`{|}~.-");
    b.is_ascii_alphanumeric() || SPECIALS.get(usize::from(b)) == Some(&true)
}

/// A lookup table of ASCII bytes: one load per byte where searching the
/// list took one comparison per entry.
const fn byte_set(bytes: &[u8]) -> [bool; 128] {
    let mut set = [false; 128];
    let mut i = 0;
    while i < bytes.len() {
        set[bytes[i] as usize] = true;
        i += 1;
    }
    set
}

fn is_domain_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'.' || b == b'-'
}

/// The first phone number at or after byte `from` (see the module docs),
/// national numbers of `regions` included.
fn find_phone(text: &str, from: usize, regions: Regions) -> Option<(usize, usize)> {
    let bytes = text.as_bytes();
    let mut i = from;
    while i < bytes.len() {
        if may_start_number(bytes[i]) && begins_number(bytes, i) {
            if let Some(span) = phone_at(bytes, i, regions) {
                return Some(span);
            }
        }
        i += 1;
    }
    None
}

/// A byte a phone number can begin with: a digit, `+`, `(`, or the `%`
/// of an encoded `+`.
fn may_start_number(b: u8) -> bool {
    b == b'+' || b == b'%' || b == b'(' || b.is_ascii_digit()
}

/// Whether a number could begin at `i`: not inside a word or another
/// number. Nothing of a letter, digit or `+` right before; no digit with a
/// space or joining mark between (the groups of an IBAN or an ISBN are not
/// each the start of a number); and, for digits, no word they are joined
/// to (`INV-0123456789`, `key_0151…` are ids). A `+` or a link's key
/// (`wa.me/`) says a number follows whatever comes before.
fn begins_number(bytes: &[u8], i: usize) -> bool {
    let Some(&prev) = i.checked_sub(1).and_then(|p| bytes.get(p)) else {
        return true;
    };
    if prev.is_ascii_alphanumeric() || prev == b'+' {
        return false;
    }
    if after_number_key(bytes, i) {
        return true;
    }
    let Some(&before) = i.checked_sub(2).and_then(|p| bytes.get(p)) else {
        return true;
    };
    let plus = bytes[i] == b'+' || bytes[i] == b'%';
    match prev {
        b' ' | b'-' | b'.' | b'/' if before.is_ascii_digit() => false,
        b'-' | b'.' | b'/' | b'_' if before.is_ascii_alphabetic() => plus,
        _ => true,
    }
}

/// Whether `i` follows one of [`NUMBER_KEYS`], itself a word of its own
/// (`Hotel:` holds no `tel:`).
fn after_number_key(bytes: &[u8], i: usize) -> bool {
    // Every key ends in `/`, `=` or `:`; most digits follow none of them.
    if !matches!(i.checked_sub(1).map(|p| bytes[p]), Some(b'/' | b'=' | b':')) {
        return false;
    }
    NUMBER_KEYS.iter().any(|k| {
        let Some(at) = i.checked_sub(k.len()) else {
            return false;
        };
        bytes[at..i].eq_ignore_ascii_case(k) && (at == 0 || !bytes[at - 1].is_ascii_alphanumeric())
    })
}

/// URL parts after which digits are a phone number without a `+` or a
/// trunk `0`: WhatsApp's click-to-chat links (`wa.me/447700900123`,
/// `api.whatsapp.com/send?phone=…`) and `tel:`/`sms:` links.
const NUMBER_KEYS: &[&[u8]] = &[b"wa.me/", b"phone=", b"tel:", b"sms:"];

/// More digits than any phone number has (15, after a `00` prefix 17):
/// reading stops there, so a long run of digits is read once, not again
/// from each of its groups.
const MAX_DIGITS: usize = 18;

/// Digit groups read from a candidate number: how many digits, the first
/// two, the lengths of the first groups and the separators between them.
#[derive(Default)]
struct Groups {
    end: usize,
    digits: usize,
    first: [u8; 2],
    /// Lengths of the first four groups (a fifth and later are counted in
    /// `count` only).
    lens: [usize; 4],
    count: usize,
    /// The separator before each of the second to fourth groups.
    seps: [u8; 3],
    separators: usize,
    slashes: usize,
}

/// Reads digit groups from `start`: digits with single separators
/// (space, `-`, `.`, one `/`) between them and parentheses around an early
/// group, as numbers are written (`+49 (0)151 555-12345`, `0151/5551234`).
fn read_groups(bytes: &[u8], start: usize) -> Groups {
    let mut g = Groups::default();
    let mut i = start;
    let mut open_paren = false;
    let mut in_group = false;
    let mut pending_sep = 0u8;
    while i < bytes.len() {
        let b = bytes[i];
        if b.is_ascii_digit() {
            // Longer than any number: stop, and the digit that follows
            // makes this no number at all.
            if g.digits == MAX_DIGITS {
                break;
            }
            if !in_group {
                if g.count > 0 && g.count <= 3 {
                    g.seps[g.count - 1] = pending_sep;
                }
                g.count += 1;
                in_group = true;
            }
            if g.digits < 2 {
                g.first[g.digits] = b;
            }
            if g.count <= 4 {
                g.lens[g.count - 1] += 1;
            }
            g.digits += 1;
            i += 1;
            g.end = i;
        } else if b == b'(' && !open_paren && g.digits <= 4 {
            open_paren = true;
            g.separators += 1;
            in_group = false;
            pending_sep = b'(';
            i += 1;
        } else if b == b')' && open_paren {
            open_paren = false;
            g.separators += 1;
            in_group = false;
            pending_sep = b')';
            i += 1;
            // `(415) 555-0123`: a space may follow the closing parenthesis.
            if bytes.get(i) == Some(&b' ') && bytes.get(i + 1).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
        } else if matches!(b, b' ' | b'-' | b'.' | b'/')
            && g.digits > 0
            && in_group
            && (b != b'/' || g.slashes == 0)
            && bytes
                .get(i + 1)
                .is_some_and(|n| n.is_ascii_digit() || *n == b'(')
        {
            g.slashes += usize::from(b == b'/');
            g.separators += 1;
            in_group = false;
            pending_sep = b;
            i += 1;
        } else {
            break;
        }
    }
    g
}

impl Groups {
    /// `01.12.2026 14:00`, `2026-12-01 09`: a date (and an hour), not a
    /// number, though its digits and separators would pass for one.
    fn is_date(&self) -> bool {
        let dated = |sep: u8| matches!(sep, b'.' | b'-' | b'/');
        if self.count < 3 || self.seps[0] != self.seps[1] || !dated(self.seps[0]) {
            return false;
        }
        let [a, b, c, _] = self.lens;
        let day_first = (1..=2).contains(&a) && (1..=2).contains(&b) && c == 4;
        let year_first = a == 4 && (1..=2).contains(&b) && (1..=2).contains(&c);
        day_first || year_first
    }

    /// `99.123.45.67`: an IPv4 address, four dotted groups of one to three
    /// digits.
    fn is_dotted_quad(&self) -> bool {
        self.count == 4 && self.seps == [b'.'; 3] && self.lens.iter().all(|l| (1..=3).contains(l))
    }

    /// A North American number: `(415) 555-0123`, `415-555-0123`,
    /// `1 415 555 0123`: groups of three, three and four digits (after an
    /// optional `1`), an area code and exchange not starting with 0 or 1.
    fn is_north_american(&self, bytes: &[u8], start: usize) -> bool {
        let groups = &self.lens[..self.count.min(4)];
        let (area_at, ok) = match groups {
            [3, 3, 4] => (0, true),
            [1, 3, 3, 4] => (1, self.first[0] == b'1'),
            _ => (0, false),
        };
        if !ok {
            return false;
        }
        // The first digit of the area code and of the exchange.
        let mut leads = bytes[start..self.end]
            .iter()
            .enumerate()
            .filter(|(k, b)| {
                b.is_ascii_digit() && (*k == 0 || !bytes[start + k - 1].is_ascii_digit())
            })
            .map(|(_, b)| *b)
            .skip(area_at);
        let leads_ok = |d: Option<u8>| d.is_some_and(|d| (b'2'..=b'9').contains(&d));
        leads_ok(leads.next()) && leads_ok(leads.next())
    }
}

/// Whether `rest` begins the way a national or North American number
/// does: a trunk `0` (after an optional `(`), or a first group of three
/// digits (`415-`, `(415)`) or a lone `1` (`1 415 …`) before a separator.
/// Most digits in a body (ids, counts, timestamps) fail this at once and
/// are not read any further.
fn may_be_national_or_north_american(rest: &[u8]) -> bool {
    let rest = rest.strip_prefix(b"(").unwrap_or(rest);
    let separator = |b: Option<&u8>| matches!(b, Some(b' ' | b'-' | b'.' | b')'));
    match rest.first() {
        Some(b'0') => true,
        Some(b'1') if separator(rest.get(1)) => true,
        Some(_) => {
            rest.len() > 3 && rest[..3].iter().all(u8::is_ascii_digit) && separator(rest.get(3))
        }
        None => false,
    }
}

/// The phone number starting at `start`, if one does: its span (which
/// leaves out a percent-encoded `+`). National numbers of `regions` count.
fn phone_at(bytes: &[u8], start: usize, regions: Regions) -> Option<(usize, usize)> {
    let rest = &bytes[start..];
    // `%2B447700900123`: a `+` percent-encoded in a URL.
    let encoded_plus =
        rest.len() > 3 && rest[0] == b'%' && rest[1] == b'2' && (rest[2] | 0x20) == b'b';
    let (international, digits_from) = match rest[0] {
        b'+' => (true, start + 1),
        b'%' if encoded_plus => (true, start + 3),
        b'%' => return None,
        _ => (false, start),
    };
    let keyed = after_number_key(bytes, start);
    if !international
        && !keyed
        && !may_be_national_or_north_american(rest)
        && !regions.may_begin(rest)
    {
        return None;
    }
    let g = read_groups(bytes, digits_from);
    // A digit or letter right after means this was part of something longer.
    if g.digits == 0 || bytes.get(g.end).is_some_and(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    let valid = if international || keyed {
        (8..=15).contains(&g.digits)
    } else if g.first == [b'0', b'0'] {
        // `0044 7700 900123`: the international prefix most of the world
        // dials. Written bare, a run of zeros and digits is an id.
        g.separators > 0 && (8..=15).contains(&(g.digits - 2))
    } else if g.first[0] == b'0' {
        // A national number after its trunk `0`: `07700 900123`,
        // `0151 55512345`, `06 12 34 56 78`; bare, `07700900123`.
        if g.separators > 0 {
            (9..=13).contains(&g.digits) && !g.is_date()
        } else {
            (10..=12).contains(&g.digits)
        }
    } else {
        g.is_north_american(bytes, digits_from) || regions.matches(bytes, digits_from, &g)
    };
    let from = if encoded_plus { digits_from } else { start };
    valid.then_some((from, g.end))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOTH: &[Detector] = &[Detector::PHONE, Detector::Email];

    fn detected(text: &str) -> Option<String> {
        mask_detected(text, BOTH, &Style::Partial).map(|(t, _)| t)
    }

    #[test]
    fn phone_numbers_in_free_text_are_found_and_ids_are_not() {
        let cases: &[(&str, Option<&str>)] = &[
            ("call me on +447700900123", Some("call me on +*********123")),
            ("+44 7700 900123 please", Some("+** **** ***123 please")),
            ("+49 (0)151 555-12345", Some("+** (*)*** ***-**345")),
            ("+49 (0) 151 555 12345", Some("+** (*) *** *** **345")),
            ("ring 07700 900123 today", Some("ring ***** ***123 today")),
            ("(0151) 555 1234", Some("(****) *** *234")),
            ("phone_number_id 106540352242922", None),
            ("order 4415 shipped", None),
            ("+1234567", None),
            ("v23.0 and 2026-11-30", None),
            ("ref +447700900123x", None),
        ];
        for (text, want) in cases {
            assert_eq!(detected(text).as_deref(), *want, "{text:?}");
        }
    }

    /// How customers write their numbers in messages, in the demo's two
    /// countries and beyond: national forms, the `00` prefix, North
    /// American groups, and numbers inside links.
    #[test]
    fn numbers_written_the_way_people_write_them_are_found() {
        let cases: &[(&str, &str)] = &[
            // National, bare: how a UK mobile is usually typed.
            ("my number is 07700900123", "my number is ********123"),
            // German mobiles have 11 or 12 digits after the trunk 0.
            ("Handy: 0151 55512345", "Handy: **** *****345"),
            ("Tel. 0151/5551234 bitte", "Tel. ****/****234 bitte"),
            ("015155512345", "*********345"),
            // French groups of two, with spaces or dots.
            ("06 12 34 56 78", "** ** ** *6 78"),
            ("06.12.34.56.78", "**.**.**.*6.78"),
            // The international prefix dialled from most of the world.
            ("call 0044 7700 900123", "call **** **** ***123"),
            ("0049-151-5551-2345", "****-***-****-*345"),
            // North American.
            ("(415) 555-0123", "(***) ***-*123"),
            (
                "text 415-555-0123 or 415.555.0199",
                "text ***-***-*123 or ***.***.*199",
            ),
            ("1 415 555 0123", "* *** *** *123"),
            // In links: WhatsApp click-to-chat, tel:, and a `+` the URL
            // percent-encoded.
            (
                "https://wa.me/447700900123?text=hi",
                "https://wa.me/*********123?text=hi",
            ),
            (
                "https://api.whatsapp.com/send?phone=4915155512345",
                "https://api.whatsapp.com/send?phone=**********345",
            ),
            (
                "<a href=\"tel:07700900123\">",
                "<a href=\"tel:********123\">",
            ),
            ("?to=%2B447700900123&x=1", "?to=%2B*********123&x=1"),
            ("?to=%2b447700900123", "?to=%2b*********123"),
            // After a word and a stop, a `+` still starts a number.
            ("Tel.+44 7700 900123", "Tel.+** **** ***123"),
        ];
        let wrong: Vec<_> = cases
            .iter()
            .filter(|(text, want)| detected(text).as_deref() != Some(*want))
            .map(|(text, _)| (*text, detected(text)))
            .collect();
        assert!(wrong.is_empty(), "found otherwise: {wrong:#?}");
    }

    /// What is not a phone number though it is digits: ids, dates and
    /// times, amounts, versions, addresses, codes, and digits that are one
    /// part of something longer.
    #[test]
    fn digits_that_are_not_phone_numbers_stay() {
        let masked = [
            // WhatsApp's and Chatwoot's ids, bare or zero-padded.
            "106540352242922",
            "phone_number_id=106540352242922",
            "00000012345678",
            "0012 3456",
            // Dates and times, in the forms Europe and ISO write them.
            "am 01.12.2026 14:00 geliefert",
            "2026-12-01 09:30",
            "01/12/2026 10:00",
            "due 3.12.2026 10 Uhr",
            // Amounts, versions, addresses, an ISBN, a postcode.
            "£1,299.00 for 2 items",
            "1.234.567.890",
            "v23.0.1",
            "192.168.100.200",
            "978-3-16-148410-0",
            "978-415-555-0123",
            "IBAN DE89 3704 0044 0532 0130 00",
            "LS6 2AB",
            // Too short or too long to be a number, or fused to a word.
            "0151 555",
            "07700 900123 4567 8901 2345",
            "x07700900123",
            "INV-0123456789",
            "key_07700900123",
            "echo-secret-0123456789",
            "Hotel:12345678 Smartphone=123456789",
            "07700900123b",
            "0.5 and 0.25",
            // North American groups whose exchange cannot start a number,
            // or that are not 3-3-4.
            "415-055-0123",
            "4155-55-0123",
            "12-345-6789",
            // A percent sign that encodes no `+`, and digits after one.
            "50% 0f 2",
            "%2B1234",
        ]
        .iter()
        .map(|t| (*t, detected(t)))
        .filter(|(_, found)| found.is_some())
        .collect::<Vec<_>>();
        assert!(masked.is_empty(), "masked as numbers: {masked:#?}");
    }

    fn national(text: &str, regions: &[Region]) -> Option<String> {
        let regions = regions.iter().fold(Regions::NONE, |r, c| r.with(*c));
        mask_detected(text, &[Detector::Phone(regions)], &Style::Partial).map(|(t, _)| t)
    }

    /// How customers in the countries `countries` names type their
    /// numbers into a chat: national forms without a trunk 0, grouped or
    /// bare, and with the country calling code but no `+`.
    #[test]
    fn national_numbers_of_the_named_countries_are_found() {
        use Region::*;
        let cases: &[(Region, &str, &str)] = &[
            (
                Spain,
                "mi número es 612 345 678",
                "mi número es *** *** 678",
            ),
            (Spain, "llámame al 612345678", "llámame al ******678"),
            (Spain, "fijo 91 123 45 67", "fijo ** *** *5 67"),
            (Spain, "612-34-56-78", "***-**-*6-78"),
            (Spain, "34 612 345 678", "** *** *** 678"),
            (Spain, "34612345678", "********678"),
            (Portugal, "ligue 912 345 678", "ligue *** *** 678"),
            (Portugal, "351 912 345 678", "*** *** *** 678"),
            (Italy, "cell. 333 123 4567", "cell. *** *** *567"),
            (Italy, "3331234567", "*******567"),
            (Italy, "39 333 1234567", "** *** ****567"),
            (India, "call me on 98765 43210", "call me on ***** **210"),
            (India, "9876543210", "*******210"),
            (India, "91 98765 43210", "** ***** **210"),
            (Brazil, "(11) 91234-5678", "(**) *****-*678"),
            (Brazil, "11 91234 5678", "** ***** *678"),
            (Brazil, "11912345678", "********678"),
            (Brazil, "(11) 3456-7890", "(**) ****-*890"),
            (Brazil, "55 11 91234-5678", "** ** *****-*678"),
            (Mexico, "55 1234 5678", "** **** *678"),
            (Mexico, "(33) 1234-5678", "(**) ****-*678"),
            (Mexico, "5512345678", "*******678"),
            (Colombia, "300 123 4567", "*** *** *567"),
            (Colombia, "601 234 5678", "*** *** *678"),
            (Chile, "9 8765 4321", "* **** *321"),
            (Chile, "56 9 8765 4321", "** * **** *321"),
            (Chile, "2 2123 4567", "* **** *567"),
            (Peru, "987 654 321", "*** *** 321"),
            (Peru, "51987654321", "********321"),
            (UnitedKingdom, "text 7700 900123", "text **** ***123"),
            (UnitedKingdom, "447700900123", "*********123"),
            (UnitedKingdom, "44 7700 900123", "** **** ***123"),
            (Germany, "151 2345 6789", "*** **** *789"),
            (Germany, "15123456789", "********789"),
            (Germany, "4915123456789", "**********789"),
            (Germany, "49 151 23456789", "** *** *****789"),
        ];
        let wrong: Vec<_> = cases
            .iter()
            .filter(|(r, text, want)| national(text, &[*r]).as_deref() != Some(*want))
            .map(|(r, text, _)| (*r, *text, national(text, &[*r])))
            .collect();
        assert!(wrong.is_empty(), "found otherwise: {wrong:#?}");
        // Without the country named, only those that also have North
        // America's 3-3-4 shape: the others are digit runs that in most
        // bodies are ids.
        let by_default: Vec<_> = cases
            .iter()
            .filter(|(_, text, _)| detected(text).is_some())
            .map(|(_, text, _)| *text)
            .collect();
        assert_eq!(by_default, ["601 234 5678"]);
    }

    /// A named country adds its numbers, not every digit run: wrong
    /// lengths and leading digits, another country's shape, dates, IP
    /// addresses, timestamps and digits fused to words stay.
    #[test]
    fn national_numbers_keep_to_their_countrys_plan() {
        use Region::*;
        let cases: &[(Region, &str)] = &[
            (Spain, "512 345 678"),
            (Spain, "order 61234567"),
            (Spain, "99.123.45.67"),
            (Spain, "ref-612345678"),
            (Spain, "612345678x"),
            (Spain, "35 612 345 678"),
            (Spain, "3461 234 5678"),
            (Portugal, "812 345 678"),
            (Italy, "433 123 4567"),
            (Italy, "333 123 456"),
            (India, "58765 43210"),
            (India, "1733212345"),
            (Brazil, "1733212345"),
            (Brazil, "11 81234 5678"),
            (Brazil, "(11) 7456-7890"),
            (Mexico, "1512345678"),
            (Mexico, "12.03.2026 10"),
            (Colombia, "700 123 4567"),
            (Chile, "1 2345 6789"),
            (Peru, "887 654 321"),
            (Spain, "2026-12-03 09"),
            (Germany, "1733212345"),
            (Germany, "created 1712300000"),
            (Germany, "141 2345 6789"),
            (UnitedKingdom, "6700 900123"),
            (UnitedKingdom, "77009001234"),
        ];
        let masked: Vec<_> = cases
            .iter()
            .filter_map(|(r, text)| national(text, &[*r]).map(|m| (*r, *text, m)))
            .collect();
        assert!(masked.is_empty(), "masked as numbers: {masked:#?}");
    }

    /// Over many random texts of digits, separators and letters, with every
    /// digit detector on for every country: no panic, and a partial mask
    /// only ever turns letters and digits into `*` (every other byte stays
    /// where it was).
    #[test]
    fn detection_only_ever_masks_letters_and_digits() {
        use rand::{Rng as _, SeedableRng as _};
        const ALPHABET: &[u8] = b"0123456789 0123456789-./()+%2BxKZ";
        let every_region = Region::ALL.into_iter().fold(Regions::NONE, Regions::with);
        let detectors = [
            Detector::Phone(every_region),
            Detector::Card,
            Detector::Iban,
            Detector::NationalId(every_region),
        ];
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut found = 0;
        for _ in 0..20_000 {
            let len = rng.random_range(0..40);
            let text: String = (0..len)
                .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
                .collect();
            let Some((masked, _)) = mask_detected(&text, &detectors, &Style::Partial) else {
                continue;
            };
            found += 1;
            assert_eq!(masked.len(), text.len(), "{text:?} -> {masked:?}");
            for (a, b) in text.bytes().zip(masked.bytes()) {
                assert!(
                    a == b || (a.is_ascii_alphanumeric() && b == b'*'),
                    "{text:?} -> {masked:?}"
                );
            }
        }
        assert!(found > 500, "only {found} texts had a number");
    }

    #[test]
    fn several_countries_find_each_others_numbers_in_one_text() {
        assert_eq!(
            national(
                "ES 612 345 678, IN 98765 43210, UK 07700 900123, id 106540352242922",
                &[Region::Spain, Region::India]
            )
            .as_deref(),
            Some("ES *** *** 678, IN ***** **210, UK ***** ***123, id 106540352242922")
        );
    }

    #[test]
    fn a_long_run_of_digit_groups_is_read_only_as_far_as_a_number_goes() {
        // Each group starts a new read; were each read to go to the end,
        // 100,000 groups would take minutes. It stops after the digits
        // that no number has.
        let text = "1 ".repeat(100_000);
        let g = read_groups(text.as_bytes(), 0);
        assert_eq!(g.digits, MAX_DIGITS);
        assert!(g.end < 2 * MAX_DIGITS, "read to {}", g.end);
        assert_eq!(detected(&text), None);
    }

    #[test]
    fn email_addresses_in_free_text_are_found() {
        let cases: &[(&str, Option<&str>)] = &[
            (
                "mail sophie.taylor@example.com now",
                Some("mail s***@example.com now"),
            ),
            (
                "<a.b+tag@mail.example.co.uk>",
                Some("<a***@mail.example.co.uk>"),
            ),
            ("two: x@y.io, z@w.io.", Some("two: x***@y.io, z***@w.io.")),
            ("not an address: @handle or a@b", None),
            ("user@localhost", None),
            // Percent-encoded in a URL: the local part stops at the query.
            (
                "https://crm.example/c?email=sophie.t%40example.com&x=1",
                Some("https://crm.example/c?email=s***%40example.com&x=1"),
            ),
            (
                "mailto:a.b%2Btag%40mail.example.co.uk",
                Some("mailto:a***%40mail.example.co.uk"),
            ),
            ("100%40 off, 50%40x", None),
        ];
        for (text, want) in cases {
            assert_eq!(detected(text).as_deref(), *want, "{text:?}");
        }
    }

    #[test]
    fn mixed_text_masks_each_finding_once() {
        let (text, n) = mask_detected(
            "reach me at jo+44@example.com or +44 7700 900123",
            BOTH,
            &Style::Full,
        )
        .unwrap_or_else(|| panic!("two findings"));
        assert_eq!(text, "reach me at [redacted] or [redacted]");
        assert_eq!(n, 2, "the digits inside the address are not a phone");
    }

    #[test]
    fn whatsapp_message_ids_carry_the_number_and_are_found_whole() {
        // Meta's own example id: its base64 holds 16473777775 in clear.
        const ID: &str = "wamid.HBgLMTY0NzM3Nzc3NzUVAgARGBI5QTNEQTA2RjdGMEY4RTRGAA==";
        let all = [
            Detector::PHONE,
            Detector::Email,
            Detector::WhatsAppMessageId,
        ];
        let text = format!("reply to {ID}, or call +447700900123");
        let (masked, n) =
            mask_detected(&text, &all, &Style::Partial).unwrap_or_else(|| panic!("two findings"));
        assert_eq!(masked, "reply to wamid.***, or call +*********123");
        assert_eq!(n, 2, "the digits inside the id are the id's");
        let (full, _) = mask_detected(ID, &all, &Style::Full).unwrap_or_else(|| panic!("an id"));
        assert_eq!(full, FULL_MASK);
        // The URL-safe alphabet, and an id that ends the text.
        let (url_safe, _) = mask_detected(
            "id=wamid.HBgNNDQ3NzAwOTAwMTIzFQIAEhgg-_abcdef",
            &all,
            &Style::Partial,
        )
        .unwrap_or_else(|| panic!("an id"));
        assert_eq!(url_safe, "id=wamid.***");
        // The word alone, or a prefix with too little after it, is no id;
        // without the detector nothing is looked for.
        for text in ["what is a wamid. anyway", "wamid.HBgL", "wamid."] {
            assert_eq!(mask_detected(text, &all, &Style::Full), None, "{text:?}");
        }
        assert_eq!(mask_detected(ID, BOTH, &Style::Full), None);
        // A configured field holding one is masked as one.
        assert_eq!(mask_whole(ID, &Style::Partial), "wamid.***");
    }

    #[test]
    fn detectors_only_find_their_kind() {
        let text = "a@example.com +447700900123";
        let (only_phone, _) = mask_detected(text, &[Detector::PHONE], &Style::Full)
            .unwrap_or_else(|| panic!("a phone"));
        assert_eq!(only_phone, "a@example.com [redacted]");
        assert_eq!(mask_detected("nothing here", BOTH, &Style::Full), None);
    }

    /// What a customer types to pay or to be refunded is masked where the
    /// rule names it, each kind in its own way, and left where it does not.
    #[test]
    fn card_numbers_and_ibans_in_free_text_are_masked_when_named() {
        let text = "Card 4111 1111 1111 1111, or refund to DE89 3704 0044 0532 0130 00; call +44 7700 900123";
        let all = [Detector::PHONE, Detector::Card, Detector::Iban];
        let (masked, n) =
            mask_detected(text, &all, &Style::Partial).unwrap_or_else(|| panic!("findings"));
        assert_eq!(
            masked,
            "Card **** **** **** 1111, or refund to DE** **** **** **** **30 00; call +** **** ***123"
        );
        assert_eq!(n, 3);
        let (phone_only, n) = mask_detected(text, &[Detector::PHONE], &Style::Full)
            .unwrap_or_else(|| panic!("a phone"));
        assert_eq!(
            phone_only,
            "Card 4111 1111 1111 1111, or refund to DE89 3704 0044 0532 0130 00; call [redacted]"
        );
        assert_eq!(n, 1);
        assert_eq!(Detector::parse("card"), Some(Detector::Card));
        assert_eq!(Detector::parse("iban"), Some(Detector::Iban));
        assert_eq!(Detector::Iban.as_str(), "iban");
    }

    #[test]
    fn whole_values_mask_by_their_shape() {
        assert_eq!(
            mask_whole("+447700900123", &Style::Partial),
            "+*********123"
        );
        assert_eq!(
            mask_whole("sophie@example.com", &Style::Partial),
            "s***@example.com"
        );
        assert_eq!(
            mask_whole("sophie%40example.com", &Style::Partial),
            "s***%40example.com"
        );
        assert_eq!(mask_whole("447700900101", &Style::Partial), "*********101");
        assert_eq!(
            mask_whole("4111 1111 1111 1111", &Style::Partial),
            "**** **** **** 1111"
        );
        assert_eq!(
            mask_whole("GB82WEST12345698765432", &Style::Partial),
            "GB****************5432"
        );
        // Thirteen to fifteen bare digits are a phone number first (a
        // `wa_id`), whatever their Luhn sum.
        assert_eq!(
            mask_whole("4222222222222", &Style::Partial),
            "**********222"
        );
        assert_eq!(mask_whole("4477", &Style::Partial), "4***");
        assert_eq!(mask_whole("Sophie Taylor", &Style::Partial), "S***");
        assert_eq!(mask_whole("S", &Style::Partial), "***");
        assert_eq!(mask_whole("", &Style::Partial), "***");
        assert_eq!(mask_whole("Sophie Taylor", &Style::Full), FULL_MASK);
    }

    #[test]
    fn a_whole_value_is_a_number_exactly_when_free_text_would_find_it_whole() {
        for text in [
            "+44 7700 900123",
            "07700 900123",
            "(415) 555-0123",
            "%2B447700900123",
            "0044 7700 900123",
            "+44 7700 900123 (mobile)",
            "call +44 7700 900123",
            "01.12.2026",
            "wa.me/447700900123",
            "4477009001",
            "Sophie",
            "+",
            "",
        ] {
            let found_whole =
                find_phone(text, 0, Regions::NONE).is_some_and(|(s, e)| s == 0 && e == text.len());
            assert_eq!(is_whole_phone(text), found_whole, "{text:?}");
        }
        assert!(is_whole_phone("+44 7700 900123"));
        assert!(!is_whole_phone("call +44 7700 900123"));
    }

    #[test]
    fn every_link_key_ends_in_a_byte_the_quick_check_looks_for() {
        // `after_number_key` looks at the keys only after one of these.
        for key in NUMBER_KEYS {
            assert!(
                matches!(key.last(), Some(b'/' | b'=' | b':')),
                "{:?}",
                String::from_utf8_lossy(key)
            );
        }
    }

    #[test]
    fn the_first_at_sign_is_found_plain_or_encoded() {
        assert_eq!(next_at_sign("a%40b@c", 0), Some((1, 3)));
        assert_eq!(next_at_sign("a@b%40c", 0), Some((1, 1)));
        assert_eq!(next_at_sign("%%40", 0), Some((1, 3)));
        assert_eq!(next_at_sign("a@b@c", 2), Some((3, 1)));
        assert_eq!(next_at_sign("100% sure", 0), None);
        assert_eq!(next_at_sign("50%4", 0), None);
        assert_eq!(next_at_sign("x@y", 2), None);
        assert_eq!(next_at_sign("x@y", 9), None);
    }

    #[test]
    fn a_partial_phone_mask_keeps_separators_and_the_last_three_digits() {
        let partial = |text: &str| {
            let mut out = String::new();
            partial_phone(text, &mut out);
            out
        };
        assert_eq!(partial("+44 (0) 7700-900123"), "+** (*) ****-***123");
        assert_eq!(partial("☎ 07700 900123 ☎"), "☎ ***** ***123 ☎");
        assert_eq!(partial("12"), "12");
        assert_eq!(partial("123"), "123");
        assert_eq!(partial("1234"), "*234");
    }

    #[test]
    fn hashes_are_keyed_and_stable() {
        let a = Style::Hash(b"key-one-0123456789abcdef0123456789".to_vec());
        let b = Style::Hash(b"key-two-0123456789abcdef0123456789".to_vec());
        let x = mask_whole("+447700900123", &a);
        assert_eq!(x.len(), 17, "{x}");
        assert!(x.starts_with('#'), "{x}");
        assert_eq!(
            x,
            mask_whole("+447700900123", &a),
            "the same value, the same mask"
        );
        assert_ne!(
            x,
            mask_whole("+447700900124", &a),
            "another value, another mask"
        );
        assert_ne!(
            x,
            mask_whole("+447700900123", &b),
            "another key, another mask"
        );
    }

    #[test]
    fn no_panic_on_any_text() {
        for text in [
            "+",
            "0",
            "(",
            "@",
            "a@",
            "@b.cd",
            "+(",
            "0 ",
            "é@é.éé",
            "+४४७७",
            "0(1)-",
            "wamid.",
            "wamid.wamid.HBgLMTY0NzM3Nzc3",
            "wamid.é",
            "éwamid.HBgLMTY0NzM3Nzc3NzUV",
            "xwamid.HBgLMTY0NzM3Nzc3@example.com",
            "%40",
            "%4",
            "a%40",
            "%40b.cd",
            "a%40é.éé",
            "é%40x.io",
            "wamid.HBgLMTY0NzM3Nzc3@example.com wamid.HBgLMTY0NzM3Nzc3",
            "(1",
            "(11) 9",
            "55",
            "351 ",
            "1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0",
            "(99) 99999-99999999999999",
        ] {
            let _ = detected(text);
            let every_region = Region::ALL.into_iter().fold(Regions::NONE, Regions::with);
            let all = [
                Detector::Phone(every_region),
                Detector::Email,
                Detector::WhatsAppMessageId,
                Detector::Card,
                Detector::Iban,
                Detector::NationalId(every_region),
            ];
            let _ = mask_detected(text, &all, &Style::Partial);
            let _ = mask_whole(text, &Style::Partial);
        }
    }
}
