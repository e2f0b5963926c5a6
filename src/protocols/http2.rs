//! HTTP/2 (RFC 9113) with HPACK (RFC 7541): cleartext h2c with prior knowledge (the client
//! preface) and, chosen by the engine, TLS connections that negotiate ALPN `h2`.
//!
//! Answers like nginx 1.22: its SETTINGS and connection WINDOW_UPDATE, a SETTINGS ACK to the
//! client's SETTINGS, a PING ACK to each PING, and each request answered `200 text/plain` (with
//! nginx's `date`, from the engine's clock) with the client's IP as the body (Spip's HTTP behaviour) on the request's stream; GOAWAY when the
//! client says GOAWAY or breaks the protocol (then the connection closes).
//!
//! A turn is the frames up to and including one request: its header block (HEADERS, then
//! CONTINUATION until END_HEADERS) and, when the request has a body, its DATA frames up to
//! END_STREAM (at most [`MAX_BODY`] bytes). SETTINGS, WINDOW_UPDATE, PING and PRIORITY frames
//! before it belong to the same turn; between frames with no request open, a client pause ends
//! the turn (so a client that waits for our SETTINGS gets them). Frames are read as a stream
//! whose place is kept in `self`, so each byte is looked at once; header blocks and bodies are
//! copied once into bounded buffers, because HPACK and DATA padding need them whole. The HPACK
//! dynamic table lives as long as the connection, bounded by the default
//! SETTINGS_HEADER_TABLE_SIZE (4096) that we leave in place.

use super::{After, Context, Detection, Framing, Responder, TurnFields};
use crate::json::JsonWriter;
use crate::proto::http::split_host_port;
use crate::record::format_ip;
use hpack::FieldList;
use std::time::{SystemTime, UNIX_EPOCH};

/// The client connection preface (RFC 9113 §3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

// Frame types (RFC 9113 §6).
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const PRIORITY: u8 = 0x2;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
const CONTINUATION: u8 = 0x9;

// Frame flags.
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY_FLAG: u8 = 0x20;

/// Compressed header block bytes we accept for one request (nginx's default
/// `large_client_header_buffers` is 4 × 8 KiB); more is a connection error.
const MAX_BLOCK: usize = 64 * 1024;
/// Body bytes kept for the record; the turn ends there (it is also our stream window).
pub const MAX_BODY: usize = 64 * 1024;
/// Control frame payload bytes looked at (16 SETTINGS entries; GOAWAY debug data is skipped).
const MAX_CONTROL: usize = 96;
/// SETTINGS and PING frames acknowledged per reply: a flood of them gets no more.
const MAX_ACKS: usize = 8;
/// SETTINGS entries and PRIORITY frames kept for the Akamai fingerprint.
const MAX_FINGERPRINT_ITEMS: usize = 16;

/// Our SETTINGS (nginx: MAX_CONCURRENT_STREAMS 128, INITIAL_WINDOW_SIZE 65536,
/// MAX_FRAME_SIZE 2^24-1), then its connection WINDOW_UPDATE to 2^31-1.
const SERVER_START: &[u8] = &[
    0, 0, 18, SETTINGS, 0, 0, 0, 0, 0, //
    0, 3, 0, 0, 0, 128, //
    0, 4, 0, 1, 0, 0, //
    0, 5, 0, 0xff, 0xff, 0xff, //
    0, 0, 4, WINDOW_UPDATE, 0, 0, 0, 0, 0, //
    0x7f, 0xff, 0, 0,
];

/// HTTP/2 error codes we send (RFC 9113 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    NoError = 0x0,
    Protocol = 0x1,
    FrameSize = 0x6,
    Compression = 0x9,
    EnhanceYourCalm = 0xb,
}

/// Why we end the connection with GOAWAY.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnError {
    BadPreface,
    /// A frame that the protocol does not allow where it came.
    Protocol(&'static str),
    FrameSize(&'static str),
    Hpack(hpack::Error),
    HeaderBlockTooLarge,
}

impl ConnError {
    fn code(self) -> ErrorCode {
        match self {
            ConnError::BadPreface | ConnError::Protocol(_) => ErrorCode::Protocol,
            ConnError::FrameSize(_) => ErrorCode::FrameSize,
            ConnError::Hpack(_) => ErrorCode::Compression,
            ConnError::HeaderBlockTooLarge => ErrorCode::EnhanceYourCalm,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            ConnError::BadPreface => "bad connection preface",
            ConnError::Protocol(what) | ConnError::FrameSize(what) => what,
            ConnError::Hpack(e) => e.describe(),
            ConnError::HeaderBlockTooLarge => "header block too large",
        }
    }
}

/// A frame header (RFC 9113 §4.1).
#[derive(Debug, Clone, Copy)]
struct Frame {
    len: usize,
    kind: u8,
    flags: u8,
    stream: u32,
}

impl Frame {
    fn parse(h: &[u8; 9]) -> Frame {
        Frame {
            len: u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize,
            kind: h[3],
            flags: h[4],
            stream: u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff,
        }
    }
}

/// Where a frame's payload goes.
#[derive(Debug, Clone, Copy)]
enum Sink {
    /// A header block fragment (HEADERS or CONTINUATION), appended to the block from `start`.
    Block { start: usize },
    /// The request's body (DATA), appended from `start`.
    Body { start: usize },
    /// A control frame, looked at whole at its end (up to [`MAX_CONTROL`] bytes).
    Control,
    Skip,
}

/// Where the reader is in the client's byte stream.
#[derive(Debug, Clone, Copy)]
enum Reader {
    /// `matched` bytes of the preface seen.
    Preface { matched: usize },
    /// `have` bytes of a frame header seen; `start` is where it began in the current turn
    /// (`None` when it began in an earlier turn).
    Head {
        head: [u8; 9],
        have: usize,
        start: Option<usize>,
    },
    /// `left` payload bytes of `frame` to go.
    Payload {
        frame: Frame,
        left: usize,
        sink: Sink,
    },
    /// The connection broke the protocol: nothing more is parsed.
    Failed,
}

impl Reader {
    fn frame_head() -> Reader {
        Reader::Head {
            head: [0; 9],
            have: 0,
            start: None,
        }
    }
}

/// The request being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Request {
    /// Between requests.
    Idle,
    /// Its header block is being read; `end_stream` was set on its HEADERS.
    Head { stream: u32, end_stream: bool },
    /// Headers decoded; its DATA frames up to END_STREAM are its body.
    Body { stream: u32 },
    /// The turn ends with it; `ended`: the client ended it (END_STREAM), rather than the body
    /// bound or the next request.
    Done { stream: u32, ended: bool },
}

/// Where the conversation is, as far as what we have sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// We have sent nothing yet: our SETTINGS go first in the next reply.
    Fresh,
    /// SETTINGS sent; `last_stream` is the last request answered (for GOAWAY).
    Open { last_stream: u32 },
}

/// The client's connection-start facts (SETTINGS, WINDOW_UPDATE, PRIORITY frames), until its
/// first request gives the pseudo-header order and completes the Akamai HTTP/2 fingerprint
/// (Shuster & Segal, Black Hat EU 2017): `S[;]|WU|P[,]|PS[,]`.
#[derive(Debug, Clone)]
enum Akamai {
    Collecting {
        /// `id:value;...` of the first SETTINGS frame, once seen.
        settings: Option<Vec<u8>>,
        window_update: Option<u32>,
        /// `stream:exclusive:dependency:weight,...`.
        priorities: Vec<u8>,
        priority_count: usize,
    },
    Emitted,
}

/// What one turn saw besides its request; reset after each reply.
#[derive(Debug, Clone, Default, PartialEq)]
struct TurnFacts {
    frames: u64,
    /// SETTINGS frames (not ACKs) to acknowledge.
    settings: usize,
    /// Opaque data of PINGs to acknowledge (at most [`MAX_ACKS`]).
    pings: Vec<[u8; 8]>,
    /// The client's GOAWAY error code.
    client_goaway: Option<u32>,
    error: Option<ConnError>,
    /// The Akamai fingerprint, on the connection's first request.
    akamai: Option<Vec<u8>>,
}

/// An HTTP/2 connection, boxed: its buffers and tables would make every responder as large.
pub struct Http2(Box<Conn>);

/// The connection's state.
struct Conn {
    phase: Phase,
    reader: Reader,
    request: Request,
    decoder: hpack::Decoder,
    /// The header block being read (fragments, without padding).
    block: Vec<u8>,
    /// The current request's decoded header fields.
    fields: FieldList,
    /// The current request's body, up to [`MAX_BODY`].
    body: Vec<u8>,
    /// Body bytes the client sent (also beyond what is kept).
    body_bytes: u64,
    /// The current control frame's payload (up to [`MAX_CONTROL`]).
    control: Vec<u8>,
    /// Bytes of the current turn the reader has taken (what `frame` is shown again is skipped).
    turn_seen: usize,
    facts: TurnFacts,
    akamai: Akamai,
}

/// One request as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestView {
    pub stream: u32,
    pub fields: FieldList,
    pub body: Vec<u8>,
    pub body_bytes: u64,
    /// The client ended the request (END_STREAM) within the turn.
    pub complete: bool,
}

impl RequestView {
    fn pseudo(&self, name: &[u8]) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
    }

    /// Regular header fields (pseudo-headers left out), in wire order.
    fn regular(&self) -> impl Iterator<Item = (&[u8], &[u8])> + Clone {
        self.fields.iter().filter(|(n, _)| !n.starts_with(b":"))
    }

    fn header(&self, name: &[u8]) -> Option<&[u8]> {
        self.regular()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }
}

/// What one turn holds: at most one request, and the connection's other frames.
#[derive(Debug, Clone, PartialEq)]
pub struct Http2Turn {
    pub request: Option<RequestView>,
    facts: TurnFacts,
}

impl Conn {
    fn fail(&mut self, error: ConnError) {
        self.facts.error = Some(error);
        self.reader = Reader::Failed;
    }

    /// Decides where a frame's payload goes, once its header is read; an error is a
    /// connection error (GOAWAY).
    fn on_head(&mut self, frame: Frame) -> Result<Sink, ConnError> {
        self.facts.frames += 1;
        if let Request::Head { stream, .. } = self.request
            && (frame.kind != CONTINUATION || frame.stream != stream)
        {
            return Err(ConnError::Protocol("frame inside a header block"));
        }
        Ok(match frame.kind {
            DATA => match self.request {
                Request::Body { stream } if stream == frame.stream => Sink::Body {
                    start: self.body.len(),
                },
                _ => Sink::Skip,
            },
            HEADERS => {
                if frame.stream == 0 || frame.stream % 2 == 0 {
                    return Err(ConnError::Protocol("HEADERS on a stream a client cannot open"));
                }
                let end_stream = frame.flags & END_STREAM != 0;
                match self.request {
                    // Trailers: their fields join the request's.
                    Request::Body { stream } if stream == frame.stream => {}
                    _ => {
                        self.fields.clear();
                        self.body.clear();
                        self.body_bytes = 0;
                    }
                }
                self.request = Request::Head {
                    stream: frame.stream,
                    end_stream,
                };
                self.block.clear();
                Sink::Block { start: 0 }
            }
            CONTINUATION => match self.request {
                Request::Head { .. } => Sink::Block {
                    start: self.block.len(),
                },
                _ => return Err(ConnError::Protocol("CONTINUATION without a header block")),
            },
            SETTINGS => {
                if frame.stream != 0 {
                    return Err(ConnError::Protocol("SETTINGS on a stream"));
                }
                if (frame.flags & ACK != 0 && frame.len != 0) || frame.len % 6 != 0 {
                    return Err(ConnError::FrameSize("SETTINGS of a bad length"));
                }
                Sink::Control
            }
            PING => {
                if frame.len != 8 {
                    return Err(ConnError::FrameSize("PING of a bad length"));
                }
                Sink::Control
            }
            PRIORITY | GOAWAY | WINDOW_UPDATE => Sink::Control,
            // RST_STREAM, PUSH_PROMISE, unknown types: nothing to record.
            _ => Sink::Skip,
        })
    }

    fn take(&mut self, sink: Sink, bytes: &[u8]) -> Result<(), ConnError> {
        match sink {
            Sink::Block { .. } => {
                if self.block.len() + bytes.len() > MAX_BLOCK {
                    return Err(ConnError::HeaderBlockTooLarge);
                }
                self.block.extend_from_slice(bytes);
            }
            Sink::Body { .. } => {
                let room = MAX_BODY.saturating_sub(self.body.len());
                self.body.extend_from_slice(&bytes[..bytes.len().min(room)]);
            }
            Sink::Control => {
                let room = MAX_CONTROL.saturating_sub(self.control.len());
                self.control
                    .extend_from_slice(&bytes[..bytes.len().min(room)]);
            }
            Sink::Skip => {}
        }
        Ok(())
    }

    /// A frame's payload is all in: act on it. `Ok(true)` ends the turn after this frame.
    fn on_end(&mut self, frame: Frame, sink: Sink) -> Result<bool, ConnError> {
        match sink {
            Sink::Block { start } => self.on_block_fragment(frame, start),
            Sink::Body { start } => self.on_data(frame, start),
            Sink::Control => {
                let end = self.on_control(frame);
                self.control.clear();
                Ok(end)
            }
            Sink::Skip => Ok(false),
        }
    }

    fn on_block_fragment(&mut self, frame: Frame, start: usize) -> Result<bool, ConnError> {
        if frame.kind == HEADERS {
            // Strip the pad length and priority fields in front and the padding behind.
            let fragment = self.block.get(start..).unwrap_or_default();
            let padded = frame.flags & PADDED != 0;
            let pad = if padded {
                usize::from(fragment.first().copied().unwrap_or(0))
            } else {
                0
            };
            let front = usize::from(padded) + if frame.flags & PRIORITY_FLAG != 0 { 5 } else { 0 };
            if front + pad > fragment.len() {
                return Err(ConnError::Protocol("HEADERS padding longer than the frame"));
            }
            let end = self.block.len() - pad;
            self.block.truncate(end);
            self.block.drain(start..start + front);
        }
        if frame.flags & END_HEADERS == 0 {
            return Ok(false);
        }
        let Request::Head { stream, end_stream } = self.request else {
            return Ok(false); // ok: on_head put the request in Head for HEADERS/CONTINUATION
        };
        self.decoder
            .decode(&self.block, &mut self.fields)
            .map_err(ConnError::Hpack)?;
        self.block.clear();
        self.note_first_request();
        if end_stream {
            self.request = Request::Done {
                stream,
                ended: true,
            };
            Ok(true)
        } else {
            self.request = Request::Body { stream };
            Ok(false)
        }
    }

    fn on_data(&mut self, frame: Frame, start: usize) -> Result<bool, ConnError> {
        let kept = self.body.len() - start;
        let (front, pad) = if frame.flags & PADDED != 0 {
            (1, usize::from(self.body.get(start).copied().unwrap_or(0)))
        } else {
            (0, 0)
        };
        let Some(data_len) = frame.len.checked_sub(front + pad) else {
            return Err(ConnError::Protocol("DATA padding longer than the frame"));
        };
        self.body.drain(start..start + front.min(kept));
        self.body
            .truncate(start + data_len.min(kept.saturating_sub(front)));
        self.body_bytes += data_len as u64;
        let Request::Body { stream } = self.request else {
            return Ok(false); // ok: on_head sends DATA here only in Body
        };
        let ended = frame.flags & END_STREAM != 0;
        if ended || self.body.len() >= MAX_BODY {
            self.request = Request::Done { stream, ended };
            return Ok(true);
        }
        Ok(false)
    }

    fn on_control(&mut self, frame: Frame) -> bool {
        let p = self.control.as_slice();
        match frame.kind {
            SETTINGS if frame.flags & ACK == 0 => {
                self.facts.settings += 1;
                if let Akamai::Collecting { settings, .. } = &mut self.akamai
                    && settings.is_none()
                {
                    let mut text = Vec::new();
                    for (i, e) in p.chunks_exact(6).take(MAX_FINGERPRINT_ITEMS).enumerate() {
                        if i > 0 {
                            text.push(b';');
                        }
                        crate::json::write_u64(&mut text, u64::from(u16::from_be_bytes([e[0], e[1]])));
                        text.push(b':');
                        crate::json::write_u64(
                            &mut text,
                            u64::from(u32::from_be_bytes([e[2], e[3], e[4], e[5]])),
                        );
                    }
                    *settings = Some(text);
                }
            }
            PING if frame.flags & ACK == 0 => {
                if let Some(opaque) = p.first_chunk::<8>()
                    && self.facts.pings.len() < MAX_ACKS
                {
                    self.facts.pings.push(*opaque);
                }
            }
            GOAWAY => {
                let code = p.get(4..8).map_or(0, |c| {
                    u32::from_be_bytes([c[0], c[1], c[2], c[3]])
                });
                self.facts.client_goaway = Some(code);
                return true;
            }
            WINDOW_UPDATE if frame.stream == 0 => {
                if let Akamai::Collecting { window_update, .. } = &mut self.akamai
                    && window_update.is_none()
                    && let Some(c) = p.first_chunk::<4>()
                {
                    *window_update = Some(u32::from_be_bytes(*c) & 0x7fff_ffff);
                }
            }
            PRIORITY => {
                if let Akamai::Collecting {
                    priorities,
                    priority_count,
                    ..
                } = &mut self.akamai
                    && *priority_count < MAX_FINGERPRINT_ITEMS
                    && let Some(&[a, b, c, d, weight]) = p.first_chunk::<5>()
                {
                    if *priority_count > 0 {
                        priorities.push(b',');
                    }
                    *priority_count += 1;
                    let dep = u32::from_be_bytes([a, b, c, d]);
                    crate::json::write_u64(priorities, u64::from(frame.stream));
                    priorities.extend_from_slice(if dep >> 31 == 1 { b":1:" } else { b":0:" });
                    crate::json::write_u64(priorities, u64::from(dep & 0x7fff_ffff));
                    priorities.push(b':');
                    crate::json::write_u64(priorities, u64::from(weight) + 1);
                }
            }
            _ => {}
        }
        false
    }

    /// On the connection's first request: the Akamai fingerprint is complete.
    fn note_first_request(&mut self) {
        let Akamai::Collecting {
            settings,
            window_update,
            priorities,
            ..
        } = std::mem::replace(&mut self.akamai, Akamai::Emitted)
        else {
            return;
        };
        let mut text = settings.unwrap_or_default();
        text.push(b'|');
        match window_update {
            Some(wu) => crate::json::write_u64(&mut text, u64::from(wu)),
            None => text.extend_from_slice(b"00"),
        }
        text.push(b'|');
        if priorities.is_empty() {
            text.push(b'0');
        } else {
            text.extend_from_slice(&priorities);
        }
        text.push(b'|');
        let mut first = true;
        for (name, _) in self.fields.iter().filter(|(n, _)| n.starts_with(b":")) {
            if !first {
                text.push(b',');
            }
            first = false;
            text.push(name.get(1).copied().unwrap_or(b'?'));
        }
        self.facts.akamai = Some(text);
    }
}

impl Conn {
    fn new() -> Conn {
        Conn {
            phase: Phase::Fresh,
            reader: Reader::Preface { matched: 0 },
            request: Request::Idle,
            decoder: hpack::Decoder::new(),
            block: Vec::new(),
            fields: FieldList::default(),
            body: Vec::new(),
            body_bytes: 0,
            control: Vec::new(),
            turn_seen: 0,
            facts: TurnFacts::default(),
            akamai: Akamai::Collecting {
                settings: None,
                window_update: None,
                priorities: Vec::new(),
                priority_count: 0,
            },
        }
    }

    /// Reads the turn's bytes not read yet; bytes shown again (a caller that re-frames the
    /// turn from its start) are not read twice.
    fn frame(&mut self, pending: &[u8], new_from: usize) -> Framing {
        let from = new_from.max(self.turn_seen).min(pending.len());
        if from == 0
            && let Reader::Head { start, .. } = &mut self.reader
        {
            // A new turn: a frame header begun before it started in an earlier turn.
            *start = None;
        }
        let mut framing = self.read(pending, from);
        // Between frames with no request open (the preface and SETTINGS of a client that
        // waits for ours, a PING, a SETTINGS ACK): if the client pauses here, that is a turn.
        if framing == Framing::NeedMore
            && self.request == Request::Idle
            && matches!(self.reader, Reader::Head { have: 0, .. })
        {
            framing = Framing::AtPause;
        }
        // NeedMore and AtPause: every byte was read.
        self.turn_seen = match framing {
            Framing::Complete(_) => 0,
            Framing::NeedMore | Framing::AtPause => pending.len(),
        };
        framing
    }

    fn read(&mut self, pending: &[u8], from: usize) -> Framing {
        let mut pos = from;
        loop {
            let rest = &pending[pos..];
            match self.reader {
                Reader::Failed => return Framing::Complete(pending.len().max(1)),
                Reader::Preface { matched } => {
                    let want = &PREFACE[matched..];
                    let n = want.len().min(rest.len());
                    if rest[..n] != want[..n] {
                        self.fail(ConnError::BadPreface);
                        continue;
                    }
                    pos += n;
                    if matched + n < PREFACE.len() {
                        self.reader = Reader::Preface {
                            matched: matched + n,
                        };
                        return Framing::NeedMore;
                    }
                    self.reader = Reader::frame_head();
                }
                Reader::Head {
                    mut head,
                    have,
                    start,
                } => {
                    if rest.is_empty() {
                        return Framing::NeedMore;
                    }
                    let start = if have == 0 { Some(pos) } else { start };
                    let n = (9 - have).min(rest.len());
                    head[have..have + n].copy_from_slice(&rest[..n]);
                    pos += n;
                    if have + n < 9 {
                        self.reader = Reader::Head {
                            head,
                            have: have + n,
                            start,
                        };
                        return Framing::NeedMore;
                    }
                    let frame = Frame::parse(&head);
                    // A request on another stream while a body is read: it starts the next
                    // turn (one request per turn).
                    if let Request::Body { stream } = self.request
                        && frame.kind == HEADERS
                        && frame.stream != stream
                        && let Some(start) = start.filter(|&s| s > 0)
                    {
                        self.request = Request::Done {
                            stream,
                            ended: false,
                        };
                        self.reader = Reader::frame_head();
                        return Framing::Complete(start);
                    }
                    match self.on_head(frame) {
                        Ok(sink) => {
                            self.reader = Reader::Payload {
                                frame,
                                left: frame.len,
                                sink,
                            }
                        }
                        Err(e) => self.fail(e),
                    }
                }
                Reader::Payload { frame, left, sink } => {
                    let n = left.min(rest.len());
                    if let Err(e) = self.take(sink, &rest[..n]) {
                        self.fail(e);
                        continue;
                    }
                    pos += n;
                    if n < left {
                        self.reader = Reader::Payload {
                            frame,
                            left: left - n,
                            sink,
                        };
                        return Framing::NeedMore;
                    }
                    self.reader = Reader::frame_head();
                    match self.on_end(frame, sink) {
                        Ok(true) => return Framing::Complete(pos.max(1)),
                        Ok(false) => {}
                        Err(e) => self.fail(e),
                    }
                }
            }
        }
    }

    fn parse(&self) -> Http2Turn {
        let request = match self.request {
            Request::Body { stream } => Some(self.view(stream, false)),
            Request::Done { stream, ended } => Some(self.view(stream, ended)),
            Request::Idle | Request::Head { .. } => None,
        };
        Http2Turn {
            request,
            facts: self.facts.clone(),
        }
    }

    fn view(&self, stream: u32, complete: bool) -> RequestView {
        RequestView {
            stream,
            fields: self.fields.clone(),
            body: self.body.clone(),
            body_bytes: self.body_bytes,
            complete,
        }
    }

    fn reply(&mut self, turn: &Http2Turn, ctx: &Context<'_>, out: &mut Vec<u8>) -> After {
        let mut last_stream = match self.phase {
            Phase::Fresh => {
                out.extend_from_slice(SERVER_START);
                0
            }
            Phase::Open { last_stream } => last_stream,
        };
        for _ in 0..turn.facts.settings.min(MAX_ACKS) {
            write_frame(out, SETTINGS, ACK, 0, &[]);
        }
        for opaque in &turn.facts.pings {
            write_frame(out, PING, ACK, 0, opaque);
        }
        if let Some(req) = &turn.request {
            let head_only = req.pseudo(b":method") == Some(b"HEAD");
            write_response(out, req.stream, ctx, head_only);
            last_stream = last_stream.max(req.stream);
        }
        self.phase = Phase::Open { last_stream };
        // A request cut short (a pause, the connection's end) is answered as it stands; the
        // rest of its body is ignored.
        if matches!(self.request, Request::Body { .. } | Request::Done { .. }) {
            self.request = Request::Idle;
        }
        self.facts = TurnFacts::default();
        self.turn_seen = 0;
        let goaway = match (turn.facts.error, turn.facts.client_goaway) {
            (Some(e), _) => e.code(),
            (None, Some(_)) => ErrorCode::NoError,
            (None, None) => return After::KeepOpen,
        };
        let mut payload = [0u8; 8];
        payload[..4].copy_from_slice(&last_stream.to_be_bytes());
        payload[4..].copy_from_slice(&(goaway as u32).to_be_bytes());
        write_frame(out, GOAWAY, 0, 0, &payload);
        After::Close
    }
}

impl Responder for Http2 {
    const NAME: &'static str = "http2";
    /// The preface is sent by no client of another protocol.
    const OVERRIDES_GREETING: bool = true;
    type Turn<'a> = Http2Turn;

    fn new(_ctx: &Context<'_>) -> Self {
        Http2(Box::new(Conn::new()))
    }

    fn detect(first: &[u8]) -> Detection {
        let n = first.len().min(PREFACE.len());
        if first[..n] != PREFACE[..n] {
            Detection::NoMatch
        } else if n < PREFACE.len() {
            Detection::NeedMore
        } else {
            Detection::Match
        }
    }

    fn frame(&mut self, pending: &[u8], new_from: usize) -> Framing {
        self.0.frame(pending, new_from)
    }

    fn parse(&self, _turn: &[u8]) -> Http2Turn {
        self.0.parse()
    }

    fn reply(&mut self, turn: &Http2Turn, ctx: &Context<'_>, out: &mut Vec<u8>) -> After {
        self.0.reply(turn, ctx, out)
    }
}

fn write_frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = (payload.len() as u32).to_be_bytes();
    out.extend_from_slice(&len[1..]);
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}

/// `200`, `date`, `content-type: text/plain`, `content-length`, then the client's IP as the
/// body.
fn write_response(out: &mut Vec<u8>, stream: u32, ctx: &Context<'_>, head_only: bool) {
    let mut ip = [0u8; 46];
    let ip_len = format_ip(&mut ip, ctx.client.ip());
    // HPACK: `:status: 200` indexed (static 8); the others literal without indexing with an
    // indexed name (static 33 date, 31 content-type, 28 content-length), no Huffman.
    let mut block = Vec::with_capacity(64);
    block.push(0x88);
    write_date(&mut block, ctx.now);
    block.extend_from_slice(&[0x0f, 0x10, 10]);
    block.extend_from_slice(b"text/plain");
    let mut digits = Vec::with_capacity(2);
    crate::json::write_u64(&mut digits, ip_len as u64);
    block.extend_from_slice(&[0x0f, 0x0d, digits.len() as u8]);
    block.extend_from_slice(&digits);
    if head_only {
        write_frame(out, HEADERS, END_HEADERS | END_STREAM, stream, &block);
    } else {
        write_frame(out, HEADERS, END_HEADERS, stream, &block);
        write_frame(out, DATA, END_STREAM, stream, &ip[..ip_len]);
    }
}

/// The `date` header field at `now`, in the IMF-fixdate form nginx sends (RFC 9110 5.6.7:
/// `Tue, 14 Nov 2023 22:13:20 GMT`).
fn write_date(block: &mut Vec<u8>, now: SystemTime) {
    use std::io::Write;
    let secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let Some(date) = i64::try_from(secs)
        .ok()
        .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
    else {
        return; // a clock past the year 262143: no date rather than a wrong one
    };
    block.extend_from_slice(&[0x0f, 0x12]);
    let len_at = block.len();
    block.push(0);
    // ok to ignore: writing to a Vec cannot fail.
    let _ = write!(block, "{}", date.format("%a, %d %b %Y %H:%M:%S GMT"));
    // 29 bytes until the year 10000: within the 7-bit length prefix.
    block[len_at] = (block.len() - len_at - 1) as u8;
}

impl TurnFields for Http2Turn {
    fn summary(&self) -> bool {
        false // binary frames; the hex has them
    }

    fn protocol(&self) -> Option<&'static str> {
        Some("http")
    }

    fn write_ecs(&self, w: &mut JsonWriter<'_>) {
        let Some(req) = &self.request else {
            return;
        };
        w.begin_object("http");
        w.begin_object("request");
        if let Some(method) = req.pseudo(b":method") {
            w.str("method", method);
        }
        w.begin_object("headers");
        write_headers(w, req);
        w.end_object();
        if req.body_bytes > 0 {
            w.begin_object("body");
            w.str("content", &req.body);
            w.u64("bytes", req.body_bytes);
            w.end_object();
        }
        #[cfg(feature = "ja4plus")]
        {
            use crate::fingerprint::ja4h;
            let fp = ja4h::ja4h_of(&ja4h::Request {
                method: req.pseudo(b":method").unwrap_or_default(),
                version: *b"20",
                headers: req.regular(),
            });
            w.begin_object("hash");
            w.str("ja4h", fp.as_bytes());
            w.end_object();
        }
        w.end_object(); // request
        w.str("version", b"2");
        w.end_object(); // http

        w.begin_object("url");
        if let Some(target) = req.pseudo(b":path") {
            w.str("original", target);
            let (path, query) = match memchr::memchr(b'?', target) {
                Some(q) => (&target[..q], Some(&target[q + 1..])),
                None => (target, None),
            };
            w.str("path", path);
            if let Some(q) = query {
                w.str("query", q);
            }
        }
        if let Some(scheme) = req.pseudo(b":scheme") {
            w.str("scheme", scheme);
        }
        let authority = req.pseudo(b":authority").or_else(|| req.header(b"host"));
        if let Some(host) = authority.filter(|h| !h.is_empty()) {
            let (domain, port) = split_host_port(host);
            if !domain.is_empty() {
                w.str("domain", domain);
            }
            if let Some(p) = port {
                w.u64("port", u64::from(p));
            }
        }
        w.end_object();

        if let Some(ua) = req.header(b"user-agent").filter(|v| !v.is_empty()) {
            w.begin_object("user_agent");
            w.str("original", ua);
            w.end_object();
        }
    }

    fn write_spip(&self, w: &mut JsonWriter<'_>) {
        w.begin_object("http2");
        w.u64("frames", self.facts.frames);
        if let Some(req) = &self.request {
            w.u64("stream_id", u64::from(req.stream));
            if !req.complete {
                w.bool("request_incomplete", true);
            }
            if req.fields.truncated() {
                w.bool("headers_truncated", true);
            }
            if req.body_bytes > req.body.len() as u64 {
                w.bool("body_truncated", true);
            }
        }
        if let Some(fp) = &self.facts.akamai {
            w.str("akamai_fingerprint", fp);
        }
        if let Some(code) = self.facts.client_goaway {
            w.u64("client_goaway", u64::from(code));
        }
        if let Some(e) = self.facts.error {
            w.str("error", e.describe().as_bytes());
        }
        w.end_object();
    }
}

/// `http.request.headers`: one member per header name as it reads after JSON decoding
/// (lower-cased, invalid UTF-8 replaced, at most 256 bytes), repeats joined with ", " in wire
/// order. Names that decode alike merge, so the keys are unique. Linear: a hash map groups
/// the names, a chain links each field to the next of its group.
fn write_headers(w: &mut JsonWriter<'_>, req: &RequestView) {
    const NONE: usize = usize::MAX;
    let values: Vec<&[u8]> = req.regular().map(|(_, v)| v).collect();
    let mut keys = String::new();
    let mut key_ranges = Vec::with_capacity(values.len());
    for (name, _) in req.regular() {
        let start = keys.len();
        for chunk in name.utf8_chunks() {
            keys.extend(chunk.valid().chars().map(|c| c.to_ascii_lowercase()));
            if !chunk.invalid().is_empty() {
                keys.push(char::REPLACEMENT_CHARACTER);
            }
            if keys.len() - start >= 256 {
                break;
            }
        }
        let mut end = keys.len().min(start + 256);
        while !keys.is_char_boundary(end) {
            end -= 1;
        }
        keys.truncate(end);
        key_ranges.push(start..end);
    }
    let mut next = vec![NONE; values.len()];
    let mut first_of_group = vec![false; values.len()];
    let mut last_in_group: ahash::AHashMap<&str, usize> = ahash::AHashMap::new();
    for (i, range) in key_ranges.iter().enumerate() {
        let key = keys.get(range.clone()).unwrap_or_default();
        match last_in_group.get_mut(key) {
            Some(last) => {
                next[*last] = i;
                *last = i;
            }
            None => {
                last_in_group.insert(key, i);
                first_of_group[i] = true;
            }
        }
    }
    for (i, range) in key_ranges.iter().enumerate() {
        if !first_of_group[i] {
            continue;
        }
        let key = keys.get(range.clone()).unwrap_or_default();
        let group = std::iter::successors(Some(i), |&j| Some(next[j]).filter(|&n| n != NONE));
        w.str_parts_lower_key(key.as_bytes(), group.map(|j| values[j]));
    }
}

pub mod hpack;


#[cfg(test)]
mod tests;
