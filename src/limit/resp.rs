//! The Redis wire protocol (RESP2), as much of it as the shared rate-limit
//! store speaks: commands out as arrays of bulk strings, replies in as any
//! RESP2 value. Pure: bytes in, values out, no sockets. Every malformed,
//! oversized or too deeply nested reply is a typed error, never a panic.

/// One reply from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`
    Simple(String),
    /// `-ERR …`, `-NOSCRIPT …`
    Error(String),
    /// `:42`
    Integer(i64),
    /// `$3\r\nabc`; `None` for the null bulk string (`$-1`).
    Bulk(Option<Vec<u8>>),
    /// `*2\r\n…`; `None` for the null array (`*-1`).
    Array(Option<Vec<Reply>>),
}

/// Why reply bytes could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("unknown reply type byte 0x{0:02x}")]
    UnknownType(u8),
    #[error("malformed reply line")]
    BadLine,
    #[error("reply length {0} out of range")]
    BadLength(i64),
    #[error("reply nested deeper than {MAX_DEPTH}")]
    TooDeep,
}

/// Largest bulk string accepted (a script reply is a few bytes; anything
/// near this is not a reply to a rate-limit command).
pub const MAX_BULK: i64 = 64 * 1024;
/// Most elements in one array (the shared revocation set's reply: two per
/// revocation, see `revocation::MAX_RUNTIME`).
pub const MAX_ITEMS: i64 = 2048;
/// Deepest nesting of arrays.
pub const MAX_DEPTH: usize = 4;
/// Longest simple line (`+…`, `-…`, `:…`, a length).
const MAX_LINE: usize = 4096;

/// Append `args` as one command (an array of bulk strings) to `out`.
pub fn encode(args: &[&[u8]], out: &mut Vec<u8>) {
    out.push(b'*');
    out.extend_from_slice(args.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    for a in args {
        out.push(b'$');
        out.extend_from_slice(a.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// Parse one reply from the start of `buf`: `Ok(None)` if more bytes are
/// needed, else the reply and how many bytes it took.
pub fn parse(buf: &[u8]) -> Result<Option<(Reply, usize)>, ProtocolError> {
    parse_at(buf, 0, 0)
}

fn parse_at(buf: &[u8], at: usize, depth: usize) -> Result<Option<(Reply, usize)>, ProtocolError> {
    let Some(&kind) = buf.get(at) else {
        return Ok(None);
    };
    let Some((line, next)) = line(buf, at + 1)? else {
        return Ok(None);
    };
    match kind {
        b'+' => Ok(Some((Reply::Simple(text(line)?), next))),
        b'-' => Ok(Some((Reply::Error(text(line)?), next))),
        b':' => Ok(Some((Reply::Integer(integer(line)?), next))),
        b'$' => {
            let len = integer(line)?;
            if len == -1 {
                return Ok(Some((Reply::Bulk(None), next)));
            }
            let n = usize::try_from(len)
                .ok()
                .filter(|_| len <= MAX_BULK)
                .ok_or(ProtocolError::BadLength(len))?;
            let end = next + n;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err(ProtocolError::BadLine);
            }
            Ok(Some((Reply::Bulk(Some(buf[next..end].to_vec())), end + 2)))
        }
        b'*' => {
            let len = integer(line)?;
            if len == -1 {
                return Ok(Some((Reply::Array(None), next)));
            }
            let n = usize::try_from(len)
                .ok()
                .filter(|_| len <= MAX_ITEMS)
                .ok_or(ProtocolError::BadLength(len))?;
            if depth >= MAX_DEPTH {
                return Err(ProtocolError::TooDeep);
            }
            let mut items = Vec::with_capacity(n);
            let mut pos = next;
            for _ in 0..n {
                match parse_at(buf, pos, depth + 1)? {
                    Some((item, after)) => {
                        items.push(item);
                        pos = after;
                    }
                    None => return Ok(None),
                }
            }
            Ok(Some((Reply::Array(Some(items)), pos)))
        }
        other => Err(ProtocolError::UnknownType(other)),
    }
}

/// The bytes from `from` to the next CRLF and the position after it.
fn line(buf: &[u8], from: usize) -> Result<Option<(&[u8], usize)>, ProtocolError> {
    let rest = buf.get(from..).unwrap_or_default();
    match rest.windows(2).position(|w| w == b"\r\n") {
        Some(i) if i <= MAX_LINE => Ok(Some((&rest[..i], from + i + 2))),
        Some(_) => Err(ProtocolError::BadLine),
        None if rest.len() > MAX_LINE => Err(ProtocolError::BadLine),
        None => Ok(None),
    }
}

fn text(line: &[u8]) -> Result<String, ProtocolError> {
    String::from_utf8(line.to_vec()).map_err(|_| ProtocolError::BadLine)
}

fn integer(line: &[u8]) -> Result<i64, ProtocolError> {
    std::str::from_utf8(line)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(ProtocolError::BadLine)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        encode(&[b"EVALSHA", b"ab", b"1", b"k:\r\n"], &mut out);
        assert_eq!(
            out,
            b"*4\r\n$7\r\nEVALSHA\r\n$2\r\nab\r\n$1\r\n1\r\n$4\r\nk:\r\n\r\n".to_vec(),
            "a key with CRLF in it travels as bytes, not as a line"
        );
    }

    #[test]
    fn every_reply_type_parses() {
        let cases: [(&[u8], Reply); 7] = [
            (b"+OK\r\n", Reply::Simple("OK".into())),
            (
                b"-NOSCRIPT No matching script\r\n",
                Reply::Error("NOSCRIPT No matching script".into()),
            ),
            (b":-12\r\n", Reply::Integer(-12)),
            (b"$3\r\na\r\n\r\n", Reply::Bulk(Some(b"a\r\n".to_vec()))),
            (b"$-1\r\n", Reply::Bulk(None)),
            (b"*-1\r\n", Reply::Array(None)),
            (
                b"*2\r\n:1\r\n:0\r\n",
                Reply::Array(Some(vec![Reply::Integer(1), Reply::Integer(0)])),
            ),
        ];
        for (bytes, want) in cases {
            assert_eq!(
                parse(bytes),
                Ok(Some((want, bytes.len()))),
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn incomplete_replies_ask_for_more() {
        let whole = b"*2\r\n:1\r\n$5\r\nhello\r\n";
        for cut in 0..whole.len() {
            assert_eq!(parse(&whole[..cut]), Ok(None), "cut at {cut}");
        }
        assert!(matches!(parse(whole), Ok(Some((_, n))) if n == whole.len()));
    }

    #[test]
    fn hostile_bytes_are_errors_not_panics() {
        let bad: [&[u8]; 9] = [
            b"?\r\n",
            b":12x\r\n",
            b"$-2\r\n",
            b"$99999999999999999999\r\n",
            b"$70000\r\n",
            b"*5000\r\n",
            b"$1\r\nab\r\n",
            b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n",
            b"+\xff\r\n",
        ];
        for bytes in bad {
            assert!(
                parse(bytes).is_err(),
                "{:?} should be refused",
                String::from_utf8_lossy(bytes)
            );
        }
        let endless = vec![b'+'; MAX_LINE + 10];
        assert_eq!(parse(&endless), Err(ProtocolError::BadLine));
        // Every prefix of every byte pattern is either more-please or an
        // answer: walk a few thousand generated inputs.
        let alphabet = b"+-:$*\r\n01-9a";
        for seed in 0u32..4000 {
            let mut x = seed.wrapping_mul(2_654_435_761);
            let bytes: Vec<u8> = (0..12)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    alphabet[(x as usize) % alphabet.len()]
                })
                .collect();
            let _ = parse(&bytes);
        }
    }
}
