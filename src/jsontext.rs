//! JSON string text at byte level: where a string's plain run ends, and how
//! to write one. Shared by the audit line writer and the response-body
//! rewriter, the two places a request's bytes pass through as JSON strings.
//!
//! Both look at every byte of every string, and nearly every byte needs
//! nothing: the same three cases end a plain run when reading (the closing
//! quote, an escape, a control character) as need escaping when writing, so
//! one eight-bytes-at-a-time test serves both.

/// The first byte at or after `from` that is `"`, `\` or below 0x20 (which
/// ends a run of plain string text), or `None`.
pub fn special_from(bytes: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    while let Some(chunk) = bytes.get(at..at + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let found = specials(u64::from_le_bytes(word));
        if found != 0 {
            // The lowest flag is exact (see `specials`); little-endian puts
            // the first byte lowest.
            return Some(at + (found.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    bytes
        .get(at..)?
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        .map(|n| at + n)
}

/// Appends `s` as a JSON string as serde_json writes it: `"` and `\` and
/// control characters escaped (the short forms where JSON has them, else
/// `\u00XX`), everything else, non-ASCII included, as it is.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut start = 0;
    while let Some(at) = special_from(bytes, start) {
        let b = bytes[at];
        out.extend_from_slice(&bytes[start..at]);
        let short: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            _ => b"",
        };
        if short.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(short);
        }
        start = at + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// The high bit of each of the eight bytes that is below 0x20, `"` or `\`
/// is set, and the lowest set bit always marks a true one; bits above it
/// may be false, where a borrow carried up from a matching byte.
fn specials(word: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // A byte of `word` below `n * 0x01` borrows when `n` is subtracted from
    // it, which sets its high bit; a byte that was already 0x80 or above has
    // that bit cleared by `!word`. Equal bytes are zero after the xor.
    let below = |x: u64, n: u64| x.wrapping_sub(ONES * n) & !x & HIGH;
    below(word, 0x20)
        | below(word ^ (ONES * u64::from(b'"')), 1)
        | below(word ^ (ONES * u64::from(b'\\')), 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_from_finds_the_first_quote_escape_or_control_byte_anywhere() {
        // Every position within and across the 8-byte words, every kind.
        for len in 0..40 {
            for pos in 0..len {
                for special in [b'"', b'\\', 0x00, 0x1f, b'\n'] {
                    let mut bytes = vec![b'a'; len];
                    bytes[pos] = special;
                    for from in 0..=pos {
                        assert_eq!(
                            special_from(&bytes, from),
                            Some(pos),
                            "byte {special:#x} at {pos} of {len}, searched from {from}"
                        );
                    }
                    assert_eq!(
                        special_from(&bytes, pos + 1),
                        None,
                        "nothing after {pos} in {len} bytes"
                    );
                }
            }
            assert_eq!(special_from(&vec![b'a'; len], 0), None, "{len} plain bytes");
        }
    }

    #[test]
    fn special_from_agrees_with_a_byte_by_byte_search_on_mixed_words() {
        // Several specials in one word (where borrows could flag bytes above
        // a true one), next to bytes either side of each boundary.
        let alphabet = [b'a', b'"', b'\\', 0x00, 0x1f, 0x20, 0x21, 0x5d, 0x80, 0xff];
        let naive = |bytes: &[u8], from: usize| {
            (from..bytes.len()).find(|&i| matches!(bytes[i], b'"' | b'\\' | 0x00..=0x1f))
        };
        let mut word = [0u8; 10];
        for n in 0..alphabet.len().pow(5) {
            let mut k = n;
            for slot in word.iter_mut().take(5) {
                *slot = alphabet[k % alphabet.len()];
                k /= alphabet.len();
            }
            // The same five bytes at the front of a word and straddling two.
            word.copy_within(0..5, 5);
            for from in 0..word.len() {
                assert_eq!(
                    special_from(&word, from),
                    naive(&word, from),
                    "{word:?} searched from {from}"
                );
            }
        }
    }

    #[test]
    fn bytes_next_to_the_specials_are_plain() {
        // 0x20 (space), 0x21, 0x23, 0x5b, 0x5d, DEL and UTF-8 continuation
        // and lead bytes end nothing.
        let plain = " !#[]\u{7f}é€😀 and more plain text";
        assert_eq!(special_from(plain.as_bytes(), 0), None);
    }

    #[test]
    fn special_from_past_the_end_is_none() {
        assert_eq!(special_from(b"abc", 3), None);
        assert_eq!(special_from(b"abc", 7), None);
    }

    #[test]
    fn written_strings_match_serde_json_byte_for_byte() {
        let mut hostile: Vec<String> = (0u8..0x80).map(|b| char::from(b).to_string()).collect();
        hostile.extend(
            [
                "",
                "plain ascii text longer than eight bytes",
                "quote \" backslash \\ newline \n tab \t cr \r",
                "\u{0}\u{1}\u{8}\u{b}\u{c}\u{1f}\u{7f}",
                "non-ASCII: Zoë, Größe, 東京, 😀 \u{2028}\u{2029}",
                "ends with a backslash \\",
                "\"\"\"\"\"\"\"\"\"",
            ]
            .map(str::to_string),
        );
        for s in &hostile {
            let mut out = Vec::new();
            write_str(&mut out, s);
            let want = serde_json::to_string(s).expect("a string serializes");
            assert_eq!(
                String::from_utf8(out).expect("the output is UTF-8"),
                want,
                "{s:?} should be written as serde_json writes it"
            );
        }
    }
}
