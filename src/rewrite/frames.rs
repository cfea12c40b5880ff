//! WebSocket frames (RFC 6455 § 5) read from one direction of a stream,
//! as the pieces of it arrive: what both halves of a read stream share
//! ([`super::messages`] for the upstream's, [`super::subscriptions`] for
//! the client's).
//!
//! The reader hands out whole control frames as they came, and the
//! payload of data frames, unmasked, with where each message ends. It
//! refuses what a stream between these two peers must not carry: RSV bits
//! (no extension was negotiated: the gateway does not pass the offer on),
//! the wrong masking for the side, fragmented or long control frames,
//! continuations out of place, reserved opcodes, messages over the cap.

use super::messages::MessageError;

/// Which side sent the frames: a server's are not masked, a client's are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    Server,
    Client,
}

/// What the reader found in a piece.
#[derive(Debug)]
pub enum Found<'a> {
    /// A whole control frame (ping, pong, close), header and payload as
    /// they came.
    Control(&'a [u8]),
    /// Payload bytes of the data message under way (`opcode`: its first
    /// frame's, text or binary), unmasked; `last` when they end it.
    Data {
        opcode: u8,
        bytes: &'a [u8],
        last: bool,
    },
}

#[derive(Debug, Clone, Copy)]
struct Frame {
    opcode: u8,
    fin: bool,
    mask: Option<[u8; 4]>,
    left: u64,
    /// Payload bytes read so far (the mask's phase).
    read: usize,
}

/// One direction of a stream, frame by frame.
#[derive(Debug)]
pub struct FrameReader {
    sender: Sender,
    max_message: usize,
    header: Vec<u8>,
    frame: Option<Frame>,
    control: Vec<u8>,
    /// Unmasked payload bytes, reused.
    scratch: Vec<u8>,
    message_opcode: u8,
    message_len: usize,
    in_message: bool,
    closed: bool,
}

impl FrameReader {
    pub fn new(sender: Sender, max_message: usize) -> FrameReader {
        FrameReader {
            sender,
            max_message,
            header: Vec::new(),
            frame: None,
            control: Vec::new(),
            scratch: Vec::new(),
            message_opcode: 0x1,
            message_len: 0,
            in_message: false,
            closed: false,
        }
    }

    /// Reads `piece`, handing each find to `each` in order. After a close
    /// frame nothing more is read. The first error stops the reading.
    pub fn read(
        &mut self,
        piece: &[u8],
        mut each: impl FnMut(Found<'_>) -> Result<(), MessageError>,
    ) -> Result<(), MessageError> {
        let mut rest = piece;
        while !rest.is_empty() && !self.closed {
            let Some(frame) = &mut self.frame else {
                let (&byte, after) = rest.split_first().unwrap_or((&0, &[]));
                rest = after;
                self.header.push(byte);
                if let Some(f) = self.frame_head()? {
                    if is_control(f.opcode) {
                        self.control.clear();
                        self.control.extend_from_slice(&self.header);
                    } else {
                        if f.opcode != 0x0 {
                            self.message_opcode = f.opcode;
                        }
                        self.in_message = !f.fin;
                    }
                    self.header.clear();
                    self.frame = Some(f);
                    if f.left == 0 {
                        self.frame = None;
                        self.frame_done(f, &[], &mut each)?;
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
            let phase = frame.read;
            frame.read += n;
            let f = *frame;
            if f.left == 0 {
                self.frame = None;
            }
            let bytes = match f.mask {
                None => chunk,
                Some(mask) => {
                    self.scratch.clear();
                    self.scratch.extend(
                        chunk
                            .iter()
                            .enumerate()
                            .map(|(i, b)| b ^ mask[(phase + i) % 4]),
                    );
                    &self.scratch
                }
            };
            if is_control(f.opcode) {
                self.control.extend_from_slice(chunk);
                if f.left == 0 {
                    self.frame_done(f, &[], &mut each)?;
                }
            } else {
                let last = f.left == 0 && f.fin;
                each(Found::Data {
                    opcode: self.message_opcode,
                    bytes,
                    last,
                })?;
            }
        }
        Ok(())
    }

    /// A frame with nothing (more) to read: a control frame goes out
    /// whole; an empty data frame still says whether it ends its message.
    fn frame_done(
        &mut self,
        f: Frame,
        bytes: &[u8],
        each: &mut impl FnMut(Found<'_>) -> Result<(), MessageError>,
    ) -> Result<(), MessageError> {
        if is_control(f.opcode) {
            self.closed = f.opcode == 0x8;
            return each(Found::Control(&self.control));
        }
        each(Found::Data {
            opcode: self.message_opcode,
            bytes,
            last: f.fin,
        })
    }

    /// The frame once `header` holds a whole one, `None` while it needs
    /// more bytes; what cannot be read is an error.
    fn frame_head(&mut self) -> Result<Option<Frame>, MessageError> {
        let h = &self.header;
        let [first, second, ..] = **h else {
            return Ok(None);
        };
        if first & 0x70 != 0 {
            return Err(MessageError::Encoded);
        }
        let masked = second & 0x80 != 0;
        match (self.sender, masked) {
            (Sender::Server, true) => return Err(MessageError::Masked),
            (Sender::Client, false) => {
                return Err(MessageError::Protocol("a client frame without a mask"))
            }
            _ => {}
        }
        let Some(left) = crate::echo::payload_length(h) else {
            return Ok(None);
        };
        let mask = masked.then(|| {
            let at = h.len() - 4;
            [h[at], h[at + 1], h[at + 2], h[at + 3]]
        });
        let frame = Frame {
            opcode: first & 0x0f,
            fin: first & 0x80 != 0,
            mask,
            left,
            read: 0,
        };
        match frame.opcode {
            0x8..=0xa if !frame.fin || left > 125 => Err(MessageError::Protocol(
                "a control frame fragmented or over 125 bytes",
            )),
            0x8..=0xa => Ok(Some(frame)),
            0x1 | 0x2 if self.in_message => Err(MessageError::Protocol(
                "a new message began before the last one ended",
            )),
            0x0 if !self.in_message => Err(MessageError::Protocol(
                "a continuation frame with no message to continue",
            )),
            0x0..=0x2 => {
                let so_far = if frame.opcode == 0x0 {
                    self.message_len
                } else {
                    0
                };
                let total = (so_far as u64).saturating_add(left);
                if total > self.max_message as u64 {
                    return Err(MessageError::TooLarge);
                }
                self.message_len = usize::try_from(total).unwrap_or(usize::MAX);
                Ok(Some(frame))
            }
            _ => Err(MessageError::Protocol("a reserved opcode")),
        }
    }
}

/// Appends one final frame of `opcode` carrying `payload`, masked with
/// `mask` when given (a client's frames must be, RFC 6455 § 5.3; a
/// server's must not).
pub fn push_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) {
    let bit = if mask.is_some() { 0x80 } else { 0 };
    out.push(0x80 | opcode);
    let len = payload.len();
    if len < 126 {
        out.push(bit | len as u8);
    } else if let Ok(short) = u16::try_from(len) {
        out.push(bit | 126);
        out.extend_from_slice(&short.to_be_bytes());
    } else {
        out.push(bit | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    match mask {
        None => out.extend_from_slice(payload),
        Some(mask) => {
            out.extend_from_slice(&mask);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        }
    }
}

fn is_control(opcode: u8) -> bool {
    opcode & 0x8 != 0
}
