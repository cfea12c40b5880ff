//! An upstream that echoes its own credential back.
//!
//! The gateway injects each upstream's credential (the CRM's API key,
//! Meta's access token) and staff must never see it. An upstream that
//! echoes request headers (a debug endpoint, an error page that dumps the
//! request, a framework's development mode) would hand it to whoever made
//! the request. Response headers that carry one are dropped; a response
//! body has each occurrence overwritten with `*`, byte for byte, so that
//! its length and framing still hold.
//!
//! A body arrives in pieces, and a credential may straddle two: a piece
//! that ends with what could be the start of one keeps that tail back
//! until the next piece shows whether it is. The body can only be read if
//! it is not encoded, so the gateway asks such upstreams for `identity`
//! and refuses an encoded answer (fail closed).

use bytes::Bytes;
use memchr::memmem;

/// Shorter values are not searched for: a short string would be found by
/// chance (and masked) in ordinary text.
pub const MIN_SECRET: usize = 8;

/// The byte strings of one upstream's credentials that must not reach a
/// client.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// Built once per load: building a searcher costs more than most
    /// searches.
    needles: Vec<memmem::Finder<'static>>,
}

impl Credentials {
    /// From the injected header values: each value, its credential without
    /// an auth scheme (`Bearer EAAG…` → `EAAG…`), and the JSON spelling of
    /// either with `/` escaped (`\/`, as PHP and others write it). Values
    /// under [`MIN_SECRET`] bytes are left out.
    pub fn new<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Credentials {
        let mut needles: Vec<Vec<u8>> = Vec::new();
        let mut add = |n: &[u8]| {
            if n.len() >= MIN_SECRET && !needles.iter().any(|have| have.as_slice() == n) {
                needles.push(n.to_vec());
            }
        };
        for value in values {
            // A scheme is one token before the credential (RFC 9110 §11.4).
            let credential = match value.iter().position(|b| *b == b' ') {
                Some(i) => value[i + 1..].trim_ascii(),
                None => value,
            };
            for v in [value, credential] {
                add(v);
                if v.contains(&b'/') {
                    add(&escape_slashes(v));
                }
            }
        }
        // A needle that contains another is found through the other; only
        // the shortest ones are searched.
        let kept: Vec<Vec<u8>> = needles
            .iter()
            .filter(|n| {
                !needles
                    .iter()
                    .any(|m| m.len() < n.len() && memmem::find(n, m).is_some())
            })
            .cloned()
            .collect();
        Credentials {
            needles: kept
                .into_iter()
                .map(|n| memmem::Finder::new(&n).into_owned())
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.needles.is_empty()
    }

    /// Whether `value` (a header value) contains a credential.
    pub fn found_in(&self, value: &[u8]) -> bool {
        self.needles.iter().any(|n| n.find(value).is_some())
    }

    /// Overwrites every credential in `data` with `*`; how many there were.
    pub fn mask(&self, data: &mut [u8]) -> usize {
        let mut spans = Vec::new();
        for n in &self.needles {
            let len = n.needle().len();
            spans.extend(n.find_iter(data).map(|at| at..at + len));
        }
        for span in &spans {
            data[span.clone()].fill(b'*');
        }
        spans.len()
    }

    /// How many bytes at the end of `data` could begin a credential that
    /// the next piece completes.
    fn open_tail(&self, data: &[u8]) -> usize {
        let mut longest = 0;
        for n in self.needles.iter().map(memmem::Finder::needle) {
            let window = &data[data.len().saturating_sub(n.len() - 1)..];
            for at in memchr::memchr_iter(n[0], window) {
                let tail = &window[at..];
                if tail.len() > longest && n.starts_with(tail) {
                    longest = tail.len();
                    break;
                }
            }
        }
        longest
    }
}

fn escape_slashes(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len() + 4);
    for b in v {
        if *b == b'/' {
            out.push(b'\\');
        }
        out.push(*b);
    }
    out
}

impl Credentials {
    /// Whether `piece` can pass as it is, with nothing held before it: it
    /// contains no credential and (unless it is the last) does not end like
    /// the start of one. The caller then needs no [`Scrub`] yet.
    pub fn passes(&self, piece: Option<&Bytes>, end: bool) -> bool {
        piece.is_none_or(|p| !self.found_in(p) && (end || self.open_tail(p) == 0))
    }
}

/// A body on its way: the tail kept back from the last piece, and how
/// many credentials were masked.
#[derive(Debug, Default)]
pub struct Scrub {
    held: Vec<u8>,
    pub masked: usize,
}

impl Scrub {
    /// Whether a tail is held back, waiting for the next piece.
    pub fn holding(&self) -> bool {
        !self.held.is_empty()
    }

    /// One piece of the body in (`None` at its end), what may leave out.
    /// Untouched pieces are passed on as they are, without a copy.
    pub fn piece(&mut self, creds: &Credentials, piece: Option<Bytes>, end: bool) -> Option<Bytes> {
        if self.held.is_empty() && creds.passes(piece.as_ref(), end) {
            return piece;
        }
        let mut data = std::mem::take(&mut self.held);
        data.extend_from_slice(piece.as_deref().unwrap_or_default());
        self.masked += creds.mask(&mut data);
        let open = if end { 0 } else { creds.open_tail(&data) };
        self.held = data.split_off(data.len() - open);
        (!data.is_empty()).then(|| Bytes::from(data))
    }
}

/// The upstream's half of a WebSocket stream, searched message by
/// message. A credential may straddle two pieces of a frame, or two frames
/// of a fragmented message (RFC 6455 § 5.4: a first frame without FIN, then
/// continuations, with control frames allowed between them): payload bytes
/// that could begin one are held back, and with them everything after them
/// in the stream (the next frame's header, an interleaved ping), until the
/// message's next payload bytes show whether they do. A message's last
/// frame holds nothing back, so a message never waits for the next one.
/// Matches are overwritten byte for byte: frame lengths and order hold.
/// Frames the upstream masked (a server must not) pass as they are, and
/// the client drops the connection on them.
#[derive(Debug, Default)]
pub struct FrameScrub {
    /// The header read so far (at most 14 bytes).
    header: Vec<u8>,
    /// The frame being read, once its header is whole.
    frame: Option<Frame>,
    /// Bytes not yet released: from the first held payload byte on.
    pending: Vec<u8>,
    /// Where in `pending` the current message's payload bytes are.
    payload: Vec<usize>,
    masked: usize,
}

#[derive(Debug, Clone, Copy)]
struct Frame {
    /// Payload bytes still to come.
    left: u64,
    /// Its payload is message text or data to search (a data frame the
    /// upstream did not mask).
    searched: bool,
    /// It ends its message (FIN on a data frame).
    last: bool,
    /// A Close frame: nothing follows, no fragment completes the message.
    close: bool,
}

/// At most this much of the stream is held back while a fragmented
/// message's next fragment is awaited (interleaved control frames count);
/// an upstream that goes past it ends the stream.
pub const MAX_HELD: usize = 64 * 1024;

/// Why a stream could not be searched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("a data frame with RSV bits set (compressed, e.g. permessage-deflate): its payload cannot be searched for the upstream's credential")]
    Encoded,
    #[error("more than {MAX_HELD} bytes arrived while part of a credential was held back for a fragmented message's next fragment")]
    HeldTooLong,
}

impl FrameScrub {
    /// Credentials masked so far.
    pub fn masked(&self) -> usize {
        self.masked
    }

    /// The next bytes from the upstream, as they may go to the client.
    pub fn piece(&mut self, creds: &Credentials, piece: &[u8]) -> Result<Vec<u8>, FrameError> {
        let mut out = Vec::with_capacity(piece.len());
        let mut rest = piece;
        while !rest.is_empty() {
            let Some(frame) = &mut self.frame else {
                let (&byte, after) = rest.split_first().unwrap_or((&0, &[]));
                rest = after;
                self.header.push(byte);
                self.pending.push(byte);
                if let Some(f) = frame_header(&self.header)? {
                    self.header.clear();
                    self.frame = Some(f);
                    if f.left == 0 {
                        self.frame_done(creds, f, &mut out);
                    }
                }
                continue;
            };
            let n = usize::try_from(frame.left)
                .unwrap_or(usize::MAX)
                .min(rest.len());
            let (chunk, after) = rest.split_at(n);
            rest = after;
            frame.left -= n as u64;
            let f = *frame;
            if f.searched {
                let at = self.pending.len();
                self.payload.extend(at..at + n);
            }
            self.pending.extend_from_slice(chunk);
            if f.left == 0 {
                self.frame_done(creds, f, &mut out);
            } else if f.searched {
                self.settle(creds, false, &mut out);
            }
        }
        if self.payload.is_empty() {
            // Nothing held: headers read so far go out too.
            out.append(&mut self.pending);
        } else if self.pending.len() > MAX_HELD {
            return Err(FrameError::HeldTooLong);
        }
        Ok(out)
    }

    fn frame_done(&mut self, creds: &Credentials, f: Frame, out: &mut Vec<u8>) {
        self.frame = None;
        if f.searched {
            self.settle(creds, f.last, out);
        } else if f.close && !self.payload.is_empty() {
            // The message ends unfinished: what was held could be most of
            // a credential, so it goes out masked.
            for &i in &self.payload {
                self.pending[i] = b'*';
            }
            self.payload.clear();
            out.append(&mut self.pending);
        }
    }

    /// Masks what the payload held so far contains, and releases the
    /// stream up to the payload bytes that could still begin a credential
    /// (all of it at the end of a message).
    fn settle(&mut self, creds: &Credentials, message_end: bool, out: &mut Vec<u8>) {
        let mut bytes: Vec<u8> = self.payload.iter().map(|&i| self.pending[i]).collect();
        let masked = creds.mask(&mut bytes);
        if masked > 0 {
            self.masked += masked;
            for (&i, &b) in self.payload.iter().zip(&bytes) {
                self.pending[i] = b;
            }
        }
        let open = if message_end {
            0
        } else {
            creds.open_tail(&bytes)
        };
        let keep_from = match open {
            0 => self.pending.len(),
            n => self.payload[self.payload.len() - n],
        };
        out.extend(self.pending.drain(..keep_from));
        self.payload.drain(..self.payload.len() - open);
        for i in &mut self.payload {
            *i -= keep_from;
        }
    }
}

/// The payload length a frame header declares, once `h` holds the whole
/// header (RFC 6455 § 5.2: two bytes, the extended length, the masking
/// key if the mask bit is set); `None` while it needs more bytes.
pub(crate) fn payload_length(h: &[u8]) -> Option<u64> {
    let second = *h.get(1)?;
    let length_bytes = match second & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let whole = 2 + length_bytes + if second & 0x80 != 0 { 4 } else { 0 };
    if h.len() < whole {
        return None;
    }
    Some(match length_bytes {
        2 => u64::from(u16::from_be_bytes([h[2], h[3]])),
        8 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(&h[2..10]);
            u64::from_be_bytes(b)
        }
        _ => u64::from(second & 0x7f),
    })
}

/// The frame once `h` holds a whole frame header (RFC 6455 § 5.2), `None`
/// while it needs more bytes.
fn frame_header(h: &[u8]) -> Result<Option<Frame>, FrameError> {
    let [first, second, ..] = *h else {
        return Ok(None);
    };
    let data = matches!(first & 0x0f, 0x0..=0x2);
    if data && first & 0x70 != 0 {
        return Err(FrameError::Encoded);
    }
    let masked = second & 0x80 != 0;
    let Some(left) = payload_length(h) else {
        return Ok(None);
    };
    Ok(Some(Frame {
        left,
        searched: data && !masked,
        last: data && first & 0x80 != 0,
        close: first & 0x0f == 0x8,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "EAAGm0PX4ZCpsBAbc123";

    fn creds() -> Credentials {
        let bearer = format!("Bearer {TOKEN}");
        Credentials::new([
            bearer.as_bytes(),
            b"crm-key/with+slash=".as_slice(),
            b"short".as_slice(),
        ])
    }

    /// Sends `body` through a scrub in pieces of `size` bytes.
    fn through(body: &[u8], size: usize) -> (Vec<u8>, usize) {
        let c = creds();
        let mut s = Scrub::default();
        let mut out = Vec::new();
        for piece in body.chunks(size) {
            if let Some(b) = s.piece(&c, Some(Bytes::copy_from_slice(piece)), false) {
                out.extend_from_slice(&b);
            }
        }
        if let Some(b) = s.piece(&c, None, true) {
            out.extend_from_slice(&b);
        }
        (out, s.masked)
    }

    #[test]
    fn credentials_are_the_values_and_what_follows_their_scheme() {
        let c = creds();
        assert!(c.found_in(TOKEN.as_bytes()));
        assert!(c.found_in(format!("x: Bearer {TOKEN}").as_bytes()));
        assert!(c.found_in(br#"{"key":"crm-key\/with+slash="}"#));
        assert!(
            !c.found_in(b"short and Bearer"),
            "short values are not searched"
        );
        assert!(Credentials::new([b"tiny".as_slice()]).is_empty());
    }

    #[test]
    fn a_credential_is_masked_wherever_the_pieces_split_it() {
        let body = format!(
            r#"{{"debug":{{"headers":{{"authorization":"Bearer {TOKEN}","api_access_token":"crm-key\/with+slash="}}}},"again":"{TOKEN}"}}"#
        );
        let want = body
            .replace(TOKEN, &"*".repeat(TOKEN.len()))
            .replace(r"crm-key\/with+slash=", &"*".repeat(20));
        for size in [1, 2, 3, 5, 7, 19, 20, 21, 64, body.len()] {
            let (out, masked) = through(body.as_bytes(), size);
            assert_eq!(String::from_utf8_lossy(&out), want, "pieces of {size}");
            assert_eq!(masked, 3, "pieces of {size}");
        }
    }

    #[test]
    fn clean_pieces_pass_as_they_are() {
        let c = creds();
        let mut s = Scrub::default();
        let piece = Bytes::from_static(b"{\"conversations\":[1,2,3]}");
        let out = s.piece(&c, Some(piece.clone()), false).unwrap();
        assert_eq!(out.as_ptr(), piece.as_ptr(), "not copied");
        // A piece ending like the start of a credential is held back, then
        // let go when the next shows it is not one.
        let out = s.piece(&c, Some(Bytes::from_static(b"tail EAAGm0")), false);
        assert_eq!(out.as_deref(), Some(&b"tail "[..]));
        let out = s.piece(&c, Some(Bytes::from_static(b"-not")), false);
        assert_eq!(out.as_deref(), Some(&b"EAAGm0-not"[..]));
        // What is held at the end leaves with it.
        let _ = s.piece(&c, Some(Bytes::from_static(b" EAAG")), false);
        assert_eq!(s.piece(&c, None, true).as_deref(), Some(&b"EAAG"[..]));
        assert_eq!(s.masked, 0);
    }

    /// A server frame (unmasked) with `opcode` and `payload`.
    fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![first];
        match payload.len() {
            n if n < 126 => f.push(n as u8),
            n if n <= 0xffff => {
                f.push(126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn frames_are_searched_one_by_one_whatever_the_pieces() {
        let c = creds();
        let text = format!(r#"{{"event":"debug","token":"{TOKEN}"}}"#);
        let long = format!("{}{TOKEN}{}", "x".repeat(300), "y".repeat(70_000));
        let mut stream = frame(0x81, text.as_bytes());
        stream.extend(frame(0x89, b"ping"));
        stream.extend(frame(0x81, long.as_bytes()));
        stream.extend(frame(0x81, b"E"));
        let mut want = frame(
            0x81,
            text.replace(TOKEN, &"*".repeat(TOKEN.len())).as_bytes(),
        );
        want.extend(frame(0x89, b"ping"));
        want.extend(frame(
            0x81,
            long.replace(TOKEN, &"*".repeat(TOKEN.len())).as_bytes(),
        ));
        want.extend(frame(0x81, b"E"));
        for size in [1, 2, 3, 7, 64, 1000, stream.len()] {
            let mut s = FrameScrub::default();
            let mut out = Vec::new();
            for piece in stream.chunks(size) {
                out.extend(s.piece(&c, piece).expect("searchable"));
            }
            assert_eq!(out, want, "pieces of {size}");
            assert_eq!(s.masked(), 2);
        }
        // A frame that ends like the start of a credential ("E") is not
        // held for the next one.
        let mut s = FrameScrub::default();
        assert_eq!(
            s.piece(&c, &frame(0x81, b"E")).expect("ok"),
            frame(0x81, b"E")
        );
    }

    #[test]
    fn a_credential_split_across_the_fragments_of_a_message_is_masked() {
        let c = creds();
        let (head, tail) = TOKEN.split_at(7);
        let (middle, end) = tail.split_at(6);
        // A text message in four fragments, the credential across three of
        // them, a ping between two; then a whole message.
        let mut stream = frame(0x01, format!("{{\"token\":\"{head}").as_bytes());
        stream.extend(frame(0x00, middle.as_bytes()));
        stream.extend(frame(0x89, b"ping"));
        stream.extend(frame(0x00, end.as_bytes()));
        stream.extend(frame(0x80, b"\"}"));
        stream.extend(frame(0x81, b"next"));
        let stars = |s: &str| "*".repeat(s.len());
        let mut want = frame(0x01, format!("{{\"token\":\"{}", stars(head)).as_bytes());
        want.extend(frame(0x00, stars(middle).as_bytes()));
        want.extend(frame(0x89, b"ping"));
        want.extend(frame(0x00, stars(end).as_bytes()));
        want.extend(frame(0x80, b"\"}"));
        want.extend(frame(0x81, b"next"));
        for size in [1, 2, 5, 13, stream.len()] {
            let mut s = FrameScrub::default();
            let mut out = Vec::new();
            for piece in stream.chunks(size) {
                out.extend(s.piece(&c, piece).expect("searchable"));
            }
            assert_eq!(out, want, "pieces of {size}");
            assert_eq!(s.masked(), 1);
        }
        // A fragment that only looks like the start of one goes out with
        // the next fragment, unmasked; the ping waits with it.
        let mut s = FrameScrub::default();
        let first = frame(0x01, b"see EAAG");
        let sent = s.piece(&c, &first).expect("ok");
        assert_eq!(sent, first[..first.len() - 4], "EAAG held");
        assert_eq!(s.piece(&c, &frame(0x89, b"")).expect("ok"), b"");
        let rest = s.piece(&c, &frame(0x80, b" docs")).expect("ok");
        let mut all = first.clone();
        all.extend(frame(0x89, b""));
        all.extend(frame(0x80, b" docs"));
        assert_eq!([sent, rest].concat(), all);
        // A Close in the middle of a message: what was held goes out masked.
        let mut s = FrameScrub::default();
        let mut out = s.piece(&c, &frame(0x01, b"key EAAGm0PX")).expect("ok");
        out.extend(s.piece(&c, &frame(0x88, b"")).expect("ok"));
        let mut want = frame(0x01, b"key ********");
        want.extend(frame(0x88, b""));
        assert_eq!(out, want);
    }

    #[test]
    fn a_fragment_held_too_long_ends_the_stream() {
        let c = creds();
        let mut s = FrameScrub::default();
        assert!(s.piece(&c, &frame(0x01, b"EAAG")).is_ok());
        let pings: Vec<u8> = (0..1000).flat_map(|_| frame(0x89, &[b'p'; 100])).collect();
        assert_eq!(s.piece(&c, &pings), Err(FrameError::HeldTooLong));
    }

    #[test]
    fn compressed_frames_cannot_be_searched() {
        let c = creds();
        let mut s = FrameScrub::default();
        assert_eq!(
            s.piece(&c, &frame(0xc1, b"compressed")),
            Err(FrameError::Encoded)
        );
        // RSV bits on a control frame are the client's to refuse: there is
        // no payload encoding to undo there.
        let mut s = FrameScrub::default();
        assert!(s.piece(&c, &frame(0xc9, b"")).is_ok());
    }
}
