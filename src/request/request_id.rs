//! Request ids: one per request, in the audit record, the error body and the
//! `X-Request-Id` sent upstream, so one id follows a request everywhere.

/// Longest incoming id kept; longer ones are replaced rather than truncated
/// so two different ids never collapse into one.
pub const MAX_INCOMING_LEN: usize = 128;

/// A fresh id: 128 random bits as 32 lowercase hex characters.
pub fn generate() -> String {
    hex_id(rand::random::<u128>())
}

/// Keeps an id supplied by a client or a trusted proxy only if it is
/// `1..=128` characters of `[A-Za-z0-9._:-]`: nothing that could split a log
/// line, inject a header or carry a payload into the audit file.
pub fn accept_incoming(value: &str) -> Option<&str> {
    let well_formed = !value.is_empty()
        && value.len() <= MAX_INCOMING_LEN
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    well_formed.then_some(value)
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// `bits` as 32 lowercase hex digits, leading zeros kept. Digit by digit
/// into an exactly sized String: one allocation per request and none of the
/// formatting machinery.
fn hex_id(bits: u128) -> String {
    let mut id = [0u8; 32];
    for (i, digit) in id.iter_mut().enumerate() {
        *digit = HEX_DIGITS[(bits >> ((31 - i) * 4)) as usize & 0xf];
    }
    // Hex digits are ASCII, so this never falls back to the empty string;
    // one allocation, where pushing char by char costs twice the time.
    std::str::from_utf8(&id)
        .map(str::to_owned)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_32_lowercase_hex_and_distinct() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1_000 {
            let id = generate();
            assert_eq!(id.len(), 32, "{id} should be 32 characters");
            assert!(
                id.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
                "{id} should be lowercase hex"
            );
            assert!(
                seen.insert(id),
                "1000 ids of 128 random bits should not collide"
            );
        }
    }

    #[test]
    fn hex_ids_match_zero_padded_hex_formatting() {
        for bits in [
            0,
            1,
            0xf,
            0x0123_4567_89ab_cdef_fedc_ba98_7654_3210,
            u128::MAX,
            u128::MAX >> 4,
        ] {
            assert_eq!(
                hex_id(bits),
                format!("{bits:032x}"),
                "{bits:#x} should be 32 lowercase hex digits, most significant first"
            );
        }
    }

    #[test]
    fn generated_ids_are_accepted_as_incoming() {
        let id = generate();
        assert_eq!(
            accept_incoming(&id),
            Some(id.as_str()),
            "our own ids should round-trip"
        );
    }

    #[test]
    fn incoming_ids_are_kept_only_when_harmless() {
        let max = "a".repeat(MAX_INCOMING_LEN);
        let too_long = "a".repeat(MAX_INCOMING_LEN + 1);
        let keep = [
            "a",
            "0f8e-ABCD_12.34:56",
            "req-2024-01-01T00:00:00",
            max.as_str(),
        ];
        for id in keep {
            assert_eq!(accept_incoming(id), Some(id), "{id:?} should be kept");
        }
        let refuse = [
            "",
            too_long.as_str(),
            "a b",
            "a\nb",
            "a\r\nX-Injected: 1",
            "a/b",
            "a\"b",
            "é",
            "a,b",
            "a;b",
            "{\"json\":1}",
            "\0",
        ];
        for id in refuse {
            assert_eq!(accept_incoming(id), None, "{id:?} should be replaced");
        }
    }
}
