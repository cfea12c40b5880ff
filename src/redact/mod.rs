//! Masking personal data: what a masked value looks like, and where free
//! text holds a phone number or an e-mail address.
//!
//! Pure functions over text. The response rewriter decides *which* values
//! to mask (configured fields, and every string when a rule detects free
//! text) and calls [`mask_whole`] or [`mask_detected`] here.
//!
//! Detection is deliberately conservative about what counts as a phone
//! number, because over-masking ids breaks clients: an international
//! number (`+` and 8–15 digits, with single spaces, hyphens, dots or
//! parentheses between digit groups), or a national number written with
//! separators (a leading `0`, 9–11 digits, at least one separator). Bare
//! digit runs such as WhatsApp's `phone_number_id` (`106540352242922`) are
//! ids, not phone numbers, and are left alone.

use std::fmt::Write as _;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::policy::{ItemSelector, Permission};

/// A `redaction` rule of the config, compiled: for callers without
/// `unless_permission`, mask the values at `fields` whole and the phone
/// numbers and e-mail addresses `detect` finds in every string.
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
    Phone,
    Email,
    /// A WhatsApp message id (`wamid.HBgL…`): base64 that carries the
    /// customer's phone number in clear (`HBgLMTY0NzM3Nzc3NzUV…` decodes to
    /// `…16473777775…`), in Chatwoot's messages (`source_id`) and Meta's
    /// API alike.
    WhatsAppMessageId,
}

/// What every WhatsApp message id begins with.
const WAMID_PREFIX: &str = "wamid.";

/// Fewer base64 characters after the prefix than this is the word, not an
/// id (a real one has dozens).
const WAMID_MIN_BODY: usize = 12;

/// Text of a masked value.
pub const FULL_MASK: &str = "[redacted]";

impl Detector {
    pub fn parse(name: &str) -> Option<Detector> {
        match name {
            "phone" => Some(Detector::Phone),
            "email" => Some(Detector::Email),
            "wamid" => Some(Detector::WhatsAppMessageId),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Detector::Phone => "phone",
            Detector::Email => "email",
            Detector::WhatsAppMessageId => "wamid",
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
    let kind = if find_wamid(text, 0).is_some_and(|(s, e)| s == 0 && e == text.len()) {
        Some(Detector::WhatsAppMessageId)
    } else if text.contains('@') && find_email(text, 0).is_some() {
        Some(Detector::Email)
    } else if find_phone(text, 0).is_some_and(|(s, e)| s == 0 && e == text.len()) {
        Some(Detector::Phone)
    } else {
        None
    };
    mask_span(text, kind, style, out);
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
    let phone = detectors.contains(&Detector::Phone);
    let email = detectors.contains(&Detector::Email);
    let wamid = detectors.contains(&Detector::WhatsAppMessageId);
    // Cheap gate: no `@`, no digit and no message id means nothing to find.
    let has_at = email && text.contains('@');
    let has_digit = phone && text.bytes().any(|b| b.is_ascii_digit());
    let has_wamid = wamid && text.contains(WAMID_PREFIX);
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
    if has_digit {
        add_disjoint(&mut spans, text, find_phone, Detector::Phone);
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
    find: fn(&str, usize) -> Option<(usize, usize)>,
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
            Some(Detector::Phone) => partial_phone(text, out),
            Some(Detector::Email) => partial_email(text, out),
            // Nothing of the base64 is safe to keep: the number is in it.
            Some(Detector::WhatsAppMessageId) => {
                out.push_str(WAMID_PREFIX);
                out.push_str("***");
            }
            None => partial_text(text, out),
        },
    }
}

/// Every digit but the last three becomes `*`; separators stay.
fn partial_phone(text: &str, out: &mut String) {
    let digits = text.bytes().filter(u8::is_ascii_digit).count();
    let mut seen = 0;
    out.extend(text.chars().map(|c| {
        if c.is_ascii_digit() {
            seen += 1;
            if seen + 3 > digits {
                return c;
            }
            return '*';
        }
        c
    }));
}

fn partial_email(text: &str, out: &mut String) {
    match text.split_once('@') {
        Some((local, domain)) => {
            out.extend(local.chars().take(1));
            out.push_str("***@");
            out.push_str(domain);
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
    let mut at = from;
    loop {
        let start = at + text.get(at..)?.find(WAMID_PREFIX)?;
        let body = start + WAMID_PREFIX.len();
        let len = text.as_bytes()[body..]
            .iter()
            .take_while(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'-' | b'_')
            })
            .count();
        if len >= WAMID_MIN_BODY {
            return Some((start, body + len));
        }
        at = body;
    }
}

/// The first e-mail address at or after byte `from`: `local@domain.tld`
/// with an RFC 5322 dot-atom local part and a dotted domain whose last
/// label is at least two letters.
fn find_email(text: &str, from: usize) -> Option<(usize, usize)> {
    let bytes = text.as_bytes();
    let mut search = from;
    while let Some(rel) = text.get(search..)?.find('@') {
        let at = search + rel;
        let mut start = at;
        while start > 0 && is_local_byte(bytes[start - 1]) {
            start -= 1;
        }
        // A local part does not start or end with a dot.
        while start < at && bytes[start] == b'.' {
            start += 1;
        }
        let mut end = at + 1;
        while end < bytes.len() && is_domain_byte(bytes[end]) {
            end += 1;
        }
        while end > at + 1 && matches!(bytes[end - 1], b'.' | b'-') {
            end -= 1;
        }
        let domain = &text[at + 1..end];
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

fn is_local_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+/=?^_`{|}~.-".contains(&b)
}

fn is_domain_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'.' || b == b'-'
}

/// The first phone number at or after byte `from` (see the module docs).
fn find_phone(text: &str, from: usize) -> Option<(usize, usize)> {
    let bytes = text.as_bytes();
    let mut i = from;
    while i < bytes.len() {
        let b = bytes[i];
        let starts = (b == b'+' || b == b'0' || b == b'(')
            && (i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'+'));
        if starts {
            if let Some(end) = phone_at(bytes, i) {
                return Some((i, end));
            }
        }
        i += 1;
    }
    None
}

/// Where a phone number starting at `start` ends, if one does.
fn phone_at(bytes: &[u8], start: usize) -> Option<usize> {
    let international = bytes[start] == b'+';
    let mut i = start + usize::from(international);
    let mut digits = 0;
    let mut separators = 0;
    let mut first_digit = None;
    let mut end = i;
    let mut open_paren = false;
    while i < bytes.len() {
        let b = bytes[i];
        if b.is_ascii_digit() {
            first_digit.get_or_insert(b);
            digits += 1;
            i += 1;
            end = i;
        } else if b == b'(' && !open_paren && digits <= 4 {
            open_paren = true;
            separators += 1;
            i += 1;
        } else if b == b')' && open_paren {
            open_paren = false;
            separators += 1;
            i += 1;
        } else if matches!(b, b' ' | b'-' | b'.')
            && digits > 0
            && bytes
                .get(i + 1)
                .is_some_and(|n| n.is_ascii_digit() || *n == b'(')
        {
            separators += 1;
            i += 1;
        } else {
            break;
        }
    }
    // A digit or letter right after means this was part of something longer.
    if bytes.get(end).is_some_and(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    let valid = if international {
        (8..=15).contains(&digits)
    } else {
        first_digit == Some(b'0') && (9..=11).contains(&digits) && separators > 0
    };
    valid.then_some(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOTH: &[Detector] = &[Detector::Phone, Detector::Email];

    fn detected(text: &str) -> Option<String> {
        mask_detected(text, BOTH, &Style::Partial).map(|(t, _)| t)
    }

    #[test]
    fn phone_numbers_in_free_text_are_found_and_ids_are_not() {
        let cases: &[(&str, Option<&str>)] = &[
            ("call me on +447700900123", Some("call me on +*********123")),
            ("+44 7700 900123 please", Some("+** **** ***123 please")),
            ("+49 (0)151 555-12345", Some("+** (*)*** ***-**345")),
            ("ring 07700 900123 today", Some("ring ***** ***123 today")),
            ("(0151) 555 1234", Some("(****) *** *234")),
            ("phone_number_id 106540352242922", None),
            ("order 4415 shipped", None),
            ("07700900123", None),
            ("+1234567", None),
            ("v23.0 and 2026-11-30", None),
            ("ref +447700900123x", None),
        ];
        for (text, want) in cases {
            assert_eq!(detected(text).as_deref(), *want, "{text:?}");
        }
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
            Detector::Phone,
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
        let (only_phone, _) = mask_detected(text, &[Detector::Phone], &Style::Full)
            .unwrap_or_else(|| panic!("a phone"));
        assert_eq!(only_phone, "a@example.com [redacted]");
        assert_eq!(mask_detected("nothing here", BOTH, &Style::Full), None);
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
        assert_eq!(mask_whole("Sophie Taylor", &Style::Partial), "S***");
        assert_eq!(mask_whole("S", &Style::Partial), "***");
        assert_eq!(mask_whole("", &Style::Partial), "***");
        assert_eq!(mask_whole("Sophie Taylor", &Style::Full), FULL_MASK);
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
            "wamid.HBgLMTY0NzM3Nzc3@example.com wamid.HBgLMTY0NzM3Nzc3",
        ] {
            let _ = detected(text);
            let all = [
                Detector::Phone,
                Detector::Email,
                Detector::WhatsAppMessageId,
            ];
            let _ = mask_detected(text, &all, &Style::Partial);
            let _ = mask_whole(text, &Style::Partial);
        }
    }
}
