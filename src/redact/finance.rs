//! Payment card numbers and IBANs in free text: what a customer types into
//! a chat to pay or to be refunded (`my card is 4111 1111 1111 1111`,
//! `IBAN for the refund: GB82 WEST 1234 5698 7654 32`).
//!
//! Both carry a check digit scheme, so a run of digits of the right shape
//! is taken for one only when its check holds: the Luhn checksum for a card
//! number, ISO 7064 mod 97-10 for an IBAN. Ids and references of the same
//! shape pass that check by chance once in ten (cards) or once in 97
//! (IBANs), which is why neither detector is on unless a rule names it.

/// Digits in a card number: 13 (old Visa) to 19.
const CARD_DIGITS: std::ops::RangeInclusive<usize> = 13..=19;

/// Characters in an IBAN without its spaces: 15 (Norway) to 34.
const IBAN_CHARS: std::ops::RangeInclusive<usize> = 15..=34;

/// The first card number at or after byte `from`: 13–19 digits, bare or in
/// groups of four (the last shorter) or American Express's 4-6-5 (Diners'
/// 4-6-4), one kind of separator (space or hyphen) throughout, from a
/// payment network's leading digit (2 to 6: Mastercard, American Express,
/// Diners, JCB, Visa, Discover, UnionPay, Maestro), passing the Luhn check.
/// Ids that start with `1` (Meta's, millisecond timestamps) never match.
pub(super) fn find_card(text: &str, from: usize) -> Option<(usize, usize)> {
    let bytes = text.as_bytes();
    let mut i = from;
    while i < bytes.len() {
        if matches!(bytes[i], b'2'..=b'6') && starts_word(bytes, i) {
            if let Some(end) = card_at(bytes, i) {
                return Some((i, end));
            }
        }
        i += 1;
    }
    None
}

/// Whether all of `text` is one card number, looked for at its start only
/// (a configured field's value, masked whole).
pub(super) fn is_whole_card(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.first().is_some_and(|b| matches!(b, b'2'..=b'6'))
        && card_at(bytes, 0) == Some(bytes.len())
}

/// Whether all of `text` is one IBAN, looked for at its start only.
pub(super) fn is_whole_iban(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() >= *IBAN_CHARS.start()
        && bytes[..2].iter().all(u8::is_ascii_alphabetic)
        && bytes[2..4].iter().all(u8::is_ascii_digit)
        && iban_at(bytes, 0) == Some(bytes.len())
}

/// Whether a number or code may start at `i`: not inside a word, and not a
/// later group of digits already running (`1234 5678` from its `5678`).
/// Card numbers, IBANs and identity numbers alike.
pub(super) fn starts_word(bytes: &[u8], i: usize) -> bool {
    let Some(&prev) = i.checked_sub(1).and_then(|p| bytes.get(p)) else {
        return true;
    };
    if prev.is_ascii_alphanumeric() || matches!(prev, b'_' | b'+' | b'%') {
        return false;
    }
    match (prev, i.checked_sub(2).map(|p| bytes[p])) {
        // The next group of a number already running.
        (b' ' | b'-' | b'.' | b'/', Some(b)) if b.is_ascii_digit() => false,
        // Joined to a word: `ORD-4111…`, `v2.…`.
        (b'-' | b'.' | b'/', Some(b)) if b.is_ascii_alphabetic() => false,
        _ => true,
    }
}

/// Where the card number that starts at `start` ends, if one does.
fn card_at(bytes: &[u8], start: usize) -> Option<usize> {
    let mut digits = [0u8; 19];
    let mut n = 0;
    let mut groups = [0usize; 5];
    let mut count = 0;
    let mut sep = None;
    let mut i = start;
    loop {
        let group_start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            if n == digits.len() {
                return None;
            }
            digits[n] = bytes[i] - b'0';
            n += 1;
            i += 1;
        }
        if count == groups.len() {
            return None;
        }
        groups[count] = i - group_start;
        count += 1;
        // A separator continues the number only when it is the number's
        // one kind and a digit follows it.
        match bytes.get(i) {
            Some(&b @ (b' ' | b'-'))
                if sep.is_none_or(|s| s == b)
                    && bytes.get(i + 1).is_some_and(u8::is_ascii_digit) =>
            {
                sep = Some(b);
                i += 1;
            }
            _ => break,
        }
    }
    if bytes.get(i).is_some_and(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    let groups = &groups[..count];
    let grouped = match groups {
        [_] => true,
        [4, 6, 5] | [4, 6, 4] => true,
        [.., last] => groups[..count - 1].iter().all(|&g| g == 4) && (1..=4).contains(last),
        [] => false,
    };
    (grouped && CARD_DIGITS.contains(&n) && luhn(&digits[..n])).then_some(i)
}

/// The Luhn checksum: from the right, every second digit doubled (less 9
/// past 9); the sum is a multiple of 10.
fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(k, &d)| {
            let d = u32::from(d);
            if k % 2 == 1 {
                if d > 4 {
                    d * 2 - 9
                } else {
                    d * 2
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// The first IBAN at or after byte `from`: a country's two letters, two
/// check digits and 11 to 30 letters and digits, bare or in groups of four
/// with single spaces (the last shorter), in either case, passing the
/// mod 97 check. Where a group of four after it is a word (`… 7034 Gracias`),
/// the longest run of groups that checks out is the IBAN.
pub(super) fn find_iban(text: &str, from: usize) -> Option<(usize, usize)> {
    let bytes = text.as_bytes();
    let mut i = from;
    while i + 4 <= bytes.len() {
        if bytes[i].is_ascii_alphabetic()
            && bytes[i + 1].is_ascii_alphabetic()
            && bytes[i + 2].is_ascii_digit()
            && bytes[i + 3].is_ascii_digit()
            && starts_word(bytes, i)
        {
            if let Some(end) = iban_at(bytes, i) {
                return Some((i, end));
            }
        }
        i += 1;
    }
    None
}

/// Where the IBAN that starts at `start` ends, if one does.
fn iban_at(bytes: &[u8], start: usize) -> Option<usize> {
    // The ends of each group read: bare, one group; grouped, groups of four
    // until one is shorter or the text stops being groups.
    let mut ends = Vec::new();
    let mut chars = 0;
    let mut i = start;
    loop {
        let group_start = i;
        while i < bytes.len() && bytes[i].is_ascii_alphanumeric() {
            i += 1;
        }
        let len = i - group_start;
        chars += len;
        if chars > *IBAN_CHARS.end() {
            // Bare and too long: no IBAN; grouped: the groups so far.
            if ends.is_empty() {
                return None;
            }
            break;
        }
        ends.push(i);
        if len != 4
            || bytes.get(i) != Some(&b' ')
            || !bytes.get(i + 1).is_some_and(u8::is_ascii_alphanumeric)
        {
            break;
        }
        i += 1;
    }
    // A letter or digit right after means part of something longer.
    let last = *ends.last()?;
    if ends.len() == 1 && bytes.get(last).is_some_and(u8::is_ascii_alphanumeric) {
        return None;
    }
    ends.into_iter()
        .rev()
        .find(|&end| iban_checks_out(&bytes[start..end]))
}

/// Whether `text` (an IBAN, spaces allowed) is 15–34 letters and digits,
/// two check digits after the country, that leave 1 modulo 97 once the
/// first four are moved to the end and each letter is read as 10 to 35.
fn iban_checks_out(text: &[u8]) -> bool {
    let chars: Vec<u8> = text
        .iter()
        .filter(|b| **b != b' ')
        .map(u8::to_ascii_uppercase)
        .collect();
    if !IBAN_CHARS.contains(&chars.len())
        || !chars[..2].iter().all(u8::is_ascii_alphabetic)
        || !chars[2..4].iter().all(u8::is_ascii_digit)
    {
        return false;
    }
    let mut rem: u32 = 0;
    for &c in chars[4..].iter().chain(&chars[..4]) {
        rem = match c {
            b'0'..=b'9' => (rem * 10 + u32::from(c - b'0')) % 97,
            b'A'..=b'Z' => (rem * 100 + u32::from(c - b'A') + 10) % 97,
            _ => return false,
        };
    }
    rem == 1
}

/// Every letter and digit becomes `*` but the first `keep_first` and the
/// last `keep_last`; separators stay. A card keeps its last four digits, an
/// IBAN its country too, an identity number its last two characters.
pub(super) fn partial_marks(text: &str, keep_first: usize, keep_last: usize, out: &mut String) {
    let marks = text.bytes().filter(u8::is_ascii_alphanumeric).count();
    let hide_to = marks.saturating_sub(keep_last);
    let mut seen = 0;
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            let shown = seen < keep_first || seen >= hide_to;
            out.push(if shown { c } else { '*' });
            seen += 1;
        } else {
            out.push(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card(text: &str) -> Option<&str> {
        find_card(text, 0).map(|(s, e)| &text[s..e])
    }

    fn iban(text: &str) -> Option<&str> {
        find_iban(text, 0).map(|(s, e)| &text[s..e])
    }

    #[test]
    fn card_numbers_are_found_as_people_write_them() {
        for (text, want) in [
            (
                "my card is 4111 1111 1111 1111, exp 12/28",
                "4111 1111 1111 1111",
            ),
            ("4111111111111111", "4111111111111111"),
            ("5500-0000-0000-0004", "5500-0000-0000-0004"),
            ("amex 3782 822463 10005 thanks", "3782 822463 10005"),
            ("diners 3056 930902 5904", "3056 930902 5904"),
            ("2223 0000 4841 0010", "2223 0000 4841 0010"),
            ("6011 1111 1111 1117.", "6011 1111 1111 1117"),
            ("(4012888888881881)", "4012888888881881"),
            ("visa 4222222222222", "4222222222222"),
            ("6250 9410 0652 8599 339", "6250 9410 0652 8599 339"),
        ] {
            assert_eq!(card(text), Some(want), "{text:?}");
        }
    }

    #[test]
    fn digits_that_fail_the_card_rules_stay() {
        for text in [
            // The Luhn check fails.
            "4111 1111 1111 1112",
            // Meta's ids and millisecond timestamps start with 1.
            "106540352242922",
            "1733212345678",
            // Grouped the wrong way, mixed separators, too short or long.
            "411 1111 1111 1111 1",
            "4111-1111 1111 1111",
            "411111111111",
            "41111111111111111111",
            "4111 1111 1111 1111 1111",
            // Part of something longer.
            "ref4111111111111111",
            "4111111111111111x",
            "ORD-4111111111111111",
            "9 4111 1111 1111 1111",
        ] {
            assert_eq!(card(text), None, "{text:?}");
        }
    }

    #[test]
    fn ibans_are_found_grouped_or_bare_in_either_case() {
        for (text, want) in [
            (
                "IBAN DE89 3704 0044 0532 0130 00 bitte",
                "DE89 3704 0044 0532 0130 00",
            ),
            (
                "refund to GB82 WEST 1234 5698 7654 32.",
                "GB82 WEST 1234 5698 7654 32",
            ),
            ("GB82WEST12345698765432", "GB82WEST12345698765432"),
            ("gb82 west 1234 5698 7654 32", "gb82 west 1234 5698 7654 32"),
            (
                "ES91 2100 0418 4502 0005 1332",
                "ES91 2100 0418 4502 0005 1332",
            ),
            ("BE68 5390 0754 7034 Gracias", "BE68 5390 0754 7034"),
            ("NO93 8601 1117 947", "NO93 8601 1117 947"),
        ] {
            assert_eq!(iban(text), Some(want), "{text:?}");
        }
    }

    #[test]
    fn codes_that_fail_the_iban_rules_stay() {
        for text in [
            // A check digit off.
            "DE88 3704 0044 0532 0130 00",
            "GB82 WEST 1234 5698 7654 33",
            // Too short, or fused to a word.
            "DE89 3704 0044",
            "XDE89370400440532013000",
            "DE89370400440532013000X",
            // Words and numbers of the shape.
            "AB12 is not one",
            "v2 release 2026",
        ] {
            assert_eq!(iban(text), None, "{text:?}");
        }
    }

    #[test]
    fn a_partial_mask_keeps_the_last_four_and_an_ibans_country() {
        let partial = |text: &str, country: bool| {
            let mut out = String::new();
            partial_marks(text, if country { 2 } else { 0 }, 4, &mut out);
            out
        };
        assert_eq!(partial("4111 1111 1111 1111", false), "**** **** **** 1111");
        assert_eq!(partial("3782-822463-10005", false), "****-******-*0005");
        assert_eq!(
            partial("DE89 3704 0044 0532 0130 00", true),
            "DE** **** **** **** **30 00"
        );
        assert_eq!(partial("123", false), "123");
    }

    #[test]
    fn the_check_schemes_hold_for_known_numbers() {
        assert!(luhn(&[7, 9, 9, 2, 7, 3, 9, 8, 7, 1, 3]));
        assert!(!luhn(&[7, 9, 9, 2, 7, 3, 9, 8, 7, 1, 4]));
        assert!(iban_checks_out(b"DE89370400440532013000"));
        assert!(iban_checks_out(b"FR14 2004 1010 0505 0001 3M02 606"));
        assert!(!iban_checks_out(b"DE8937040044053201300"));
    }

    #[test]
    fn no_panic_on_odd_text() {
        for text in [
            "",
            "4",
            "4 ",
            "4-",
            "DE",
            "DE8",
            "DE89",
            "DE89 ",
            "é4111 1111 1111 1111",
            "4111 1111 1111 1111 é",
            "DE89 3704 0044 0532 0130 00 0000 0000 0000 0000",
            "AB12 3456 7890 1234 5678 9012 3456 7890 1234",
        ] {
            let _ = card(text);
            let _ = iban(text);
        }
    }
}
