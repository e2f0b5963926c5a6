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
mod tests {
    use super::hpack::{Decoder, FieldList};
    use super::*;
    use crate::protocols::testing::{Transcript, assert_splits_agree, converse};

    fn hex(s: &str) -> Vec<u8> {
        crate::inspect::decode_hex(s).expect("test hex")
    }

    /// `curl --http2-prior-knowledge http://127.0.0.1:8461/SECRET?q=1 -A agent/1.0` (curl
    /// 7.88.1, nghttp2 1.52): preface, SETTINGS, WINDOW_UPDATE, HEADERS, in one write.
    const CURL_GET: &str = "505249202a20485454502f322e300d0a0d0a534d0d0a0d0a0000120400000000000003\
        0000006400040200000000020000000000000408000000000001ff000100002801050000000182048a63760b\
        db706fff3b401f86418a089d5c0b8170dc79a7037a871cc5a92c05707f53032a2f2a";
    /// What curl sends after our first reply: SETTINGS ACK.
    const SETTINGS_ACK: &str = "000000040100000000";
    /// `curl --http2-prior-knowledge http://127.0.0.1:8462/login -d 'user=admin&pass=SECRET'
    /// -A agent/1.0 -H 'Cookie: a=1; b=2' -H 'Accept-Language: en-US,en;q=0.9'`: HEADERS
    /// without END_STREAM, then DATA with it.
    const CURL_POST: &str = "505249202a20485454502f322e300d0a0d0a534d0d0a0d0a000012040000000000\
        00030000006400040200000000020000000000000408000000000001ff00010000580104000000018304856283\
        cc6abf86418a089d5c0b8170dc79a7057a871cc5a92c05707f53032a2f2a1f11861c01fb523805518b2d4b70dd\
        f45abefb4005df0f0d0232325f981d75d0620d263d4c795bc78f0b4a7b295adb282d443c859300001600010000\
        0001757365723d61646d696e26706173733d534543524554";
    /// `nghttp -n http://127.0.0.1:8466/a http://127.0.0.1:8466/b?x=SECRET` (nghttp2 1.52):
    /// SETTINGS, five PRIORITY frames, two requests (the second from the dynamic table).
    const NGHTTP_TWO: &str = "505249202a20485454502f322e300d0a0d0a534d0d0a0d0a00000c040000000000\
        00030000006400040000ffff00000502000000000300000000c800000502000000000500000000640000050200\
        000000070000000000000005020000000009000000070000000502000000000b00000003000000290125000000\
        0d0000000b0f8204022f6186418a089d5c0b8170dc79a71c53032a2f2a907a8aaa69d29ac4c0576c4b83000017\
        01250000000f0000000b0f82048a623ff3cc1bb05edb837f86c0bf90be";
    /// What nghttp sends after our answers: GOAWAY (NO_ERROR).
    const NGHTTP_GOAWAY: &str = "0000080700000000000000000000000000";

    fn response(stream: u8) -> Vec<u8> {
        let mut r = vec![0, 0, 50, 1, 4, 0, 0, 0, stream, 0x88, 0x0f, 0x12, 29];
        // The test clock, as nginx writes the date.
        r.extend_from_slice(b"Tue, 14 Nov 2023 22:13:20 GMT");
        r.extend_from_slice(&[0x0f, 0x10, 10]);
        r.extend_from_slice(b"text/plain");
        r.extend_from_slice(&[0x0f, 0x0d, 1, b'9']);
        r.extend_from_slice(&[0, 0, 9, 0, 1, 0, 0, 0, stream]);
        r.extend_from_slice(b"192.0.2.7");
        r
    }

    fn talk(chunks: &[&[u8]]) -> Transcript {
        converse::<Http2>(false, chunks)
    }

    #[test]
    fn detects_the_preface_only() {
        assert_eq!(Http2::detect(PREFACE), Detection::Match);
        assert_eq!(Http2::detect(&hex(CURL_GET)), Detection::Match);
        assert_eq!(Http2::detect(b"PRI * HTTP/2"), Detection::NeedMore);
        assert_eq!(Http2::detect(b"P"), Detection::NeedMore);
        assert_eq!(Http2::detect(b"POST / HTTP/1.1\r\n"), Detection::NoMatch);
        assert_eq!(Http2::detect(b"PRI * HTTP/1.1\r\n\r\nSM\r\n\r\n"), Detection::NoMatch);
    }

    #[test]
    fn curl_get_is_answered_and_recorded() {
        let (get, ack) = (hex(CURL_GET), hex(SETTINGS_ACK));
        let t = talk(&[&get, &ack]);
        assert_eq!(t.turns.len(), 2);
        let first = &t.turns[0];
        assert_eq!(first.bytes, get);
        let mut want = SERVER_START.to_vec();
        want.extend_from_slice(&hex(SETTINGS_ACK));
        want.extend_from_slice(&response(1));
        assert_eq!(first.reply, want);
        assert!(!first.close && !first.summary);
        assert_eq!(first.protocol, Some("http"));
        let e = &first.ecs;
        assert_eq!(e["http"]["request"]["method"], "GET");
        assert_eq!(e["http"]["version"], "2");
        assert_eq!(e["http"]["request"]["headers"]["user-agent"], "agent/1.0");
        assert_eq!(e["http"]["request"]["headers"]["accept"], "*/*");
        assert!(e["http"]["request"]["headers"].get(":path").is_none());
        assert!(e["http"]["request"].get("body").is_none());
        assert_eq!(e["url"]["original"], "/SECRET?q=1");
        assert_eq!(e["url"]["path"], "/SECRET");
        assert_eq!(e["url"]["query"], "q=1");
        assert_eq!(e["url"]["scheme"], "http");
        assert_eq!(e["url"]["domain"], "127.0.0.1");
        assert_eq!(e["url"]["port"], 8461);
        assert_eq!(e["user_agent"]["original"], "agent/1.0");
        let s = &first.spip["http2"];
        assert_eq!(s["stream_id"], 1);
        assert_eq!(s["frames"], 3);
        assert_eq!(s["akamai_fingerprint"], "3:100;4:33554432;2:0|33488897|0|m,p,s,a");
        // The client's SETTINGS ACK: a turn of its own (at the pause), nothing to answer.
        assert_eq!(t.turns[1].bytes, ack);
        assert!(t.turns[1].reply.is_empty());
        assert_eq!(t.turns[1].ecs, serde_json::json!({}));
        assert!(!t.turns[1].close);
    }

    #[test]
    fn curl_post_body_and_cookies() {
        let post = hex(CURL_POST);
        let t = talk(&[&post]);
        assert_eq!(t.turns.len(), 1);
        let e = &t.turns[0].ecs;
        assert_eq!(e["http"]["request"]["method"], "POST");
        assert_eq!(e["url"]["path"], "/login");
        assert_eq!(
            e["http"]["request"]["body"]["content"],
            "user=admin&pass=SECRET"
        );
        assert_eq!(e["http"]["request"]["body"]["bytes"], 22);
        let h = &e["http"]["request"]["headers"];
        assert_eq!(h["cookie"], "a=1; b=2");
        assert_eq!(h["accept-language"], "en-US,en;q=0.9");
        assert_eq!(h["content-type"], "application/x-www-form-urlencoded");
        assert!(t.turns[0].reply.ends_with(&response(1)));
        #[cfg(feature = "ja4plus")]
        {
            // po 20 c n 06 (user-agent, accept, accept-language, content-length, content-type
            // and cookie left out) enus; the hashes by hand over the lists below.
            use sha2::{Digest, Sha256};
            let h12 = |s: &str| {
                let d = Sha256::digest(s.as_bytes());
                d.iter().take(6).map(|b| format!("{b:02x}")).collect::<String>()
            };
            let want = format!(
                "po20cn05enus_{}_{}_{}",
                h12("user-agent,accept,accept-language,content-length,content-type"),
                h12("a,b"),
                h12("a=1,b=2")
            );
            assert_eq!(e["http"]["request"]["hash"]["ja4h"], want.as_str());
        }
    }

    #[test]
    fn nghttp_two_streams_are_two_turns_then_goaway() {
        let (two, bye) = (hex(NGHTTP_TWO), hex(NGHTTP_GOAWAY));
        let t = talk(&[&two, &bye]);
        assert_eq!(t.turns.len(), 3);
        let (a, b) = (&t.turns[0], &t.turns[1]);
        assert_eq!(a.bytes.len() + b.bytes.len(), two.len());
        assert_eq!(a.ecs["url"]["path"], "/a");
        assert_eq!(a.spip["http2"]["stream_id"], 13);
        assert_eq!(
            a.spip["http2"]["akamai_fingerprint"],
            "3:100;4:65535|00|3:0:0:201,5:0:0:101,7:0:0:1,9:0:7:1,11:0:3:1|m,p,s,a"
        );
        // The second request's fields come from the dynamic table the first one filled.
        assert_eq!(b.ecs["url"]["original"], "/b?x=SECRET");
        assert_eq!(b.ecs["url"]["query"], "x=SECRET");
        assert_eq!(b.ecs["user_agent"]["original"], "nghttp2/1.52.0");
        assert_eq!(
            b.ecs["http"]["request"]["headers"]["accept-encoding"],
            "gzip, deflate"
        );
        assert_eq!(b.spip["http2"]["stream_id"], 15);
        assert!(b.spip["http2"].get("akamai_fingerprint").is_none());
        assert!(a.reply.starts_with(SERVER_START));
        assert!(a.reply.ends_with(&response(13)));
        assert_eq!(b.reply, response(15));
        // GOAWAY from the client: ours (last stream 15, NO_ERROR), and the connection ends.
        let c = &t.turns[2];
        assert_eq!(c.spip["http2"]["client_goaway"], 0);
        assert_eq!(c.reply, hex("000008070000000000 0000000f 00000000"));
        assert!(c.close);
    }

    #[test]
    fn every_split_agrees() {
        let mut get = hex(CURL_GET);
        get.extend_from_slice(&hex(SETTINGS_ACK));
        assert_splits_agree::<Http2>(false, &get);
        assert_splits_agree::<Http2>(false, &hex(CURL_POST));
        let mut two = hex(NGHTTP_TWO);
        two.extend_from_slice(&hex(NGHTTP_GOAWAY));
        assert_splits_agree::<Http2>(false, &two);
    }

    #[test]
    fn a_turn_cut_mid_frame_goes_on_in_the_next() {
        // The engine ends a turn at a client pause; the frame reader keeps its place.
        let get = hex(CURL_GET);
        for cut in 1..get.len() {
            let (a, b) = get.split_at(cut);
            let mut r = Http2::new(&test_ctx());
            let settings = crate::protocols::Settings::default();
            let ctx = Context {
                settings: &settings,
                ..test_ctx()
            };
            assert!(matches!(r.frame(a, 0), Framing::NeedMore | Framing::AtPause));
            let turn = r.parse(a);
            let mut out = Vec::new();
            r.reply(&turn, &ctx, &mut out);
            assert!(turn.request.is_none());
            assert_eq!(r.frame(b, 0), Framing::Complete(b.len()), "cut at {cut}");
            let turn = r.parse(b);
            let req = turn.request.as_ref().unwrap();
            assert_eq!(req.pseudo(b":path"), Some(&b"/SECRET?q=1"[..]));
        }
    }

    #[test]
    fn a_client_waiting_between_frames_gets_an_answer_at_its_pause() {
        let mut r = Http2::new(&test_ctx());
        let mut start = PREFACE.to_vec();
        assert_eq!(r.frame(&start[..10], 0), Framing::NeedMore);
        start.extend_from_slice(&hex("000000040000000000"));
        assert_eq!(r.frame(&start, 10), Framing::AtPause);
        // Inside a frame, a header block or a body: wait for the rest.
        start.extend_from_slice(&hex("000003010400000001 83"));
        assert_eq!(r.frame(&start, start.len() - 13), Framing::NeedMore);
        start.extend_from_slice(&hex("8486"));
        assert_eq!(r.frame(&start, start.len() - 2), Framing::NeedMore);
        let turn = r.parse(&start);
        let mut out = Vec::new();
        r.reply(&turn, &test_ctx(), &mut out);
        // At the pause: our SETTINGS, the ACK of theirs, and the request as it stands.
        assert!(out.starts_with(SERVER_START));
        assert!(out.ends_with(&response(1)));
        assert!(!turn.request.unwrap().complete);
    }

    #[test]
    fn a_request_on_another_stream_ends_an_unfinished_body() {
        let mut input = PREFACE.to_vec();
        input.extend_from_slice(&hex("000003010400000001 838486")); // POST / on 1, a body follows
        input.extend_from_slice(&hex("000002000000000001 6869")); // "hi", no END_STREAM
        let first = input.len();
        input.extend_from_slice(&hex("000003010500000003 828486")); // GET / on 3, complete
        let t = talk(&[&input]);
        assert_eq!(t.turns.len(), 2);
        assert_eq!(t.turns[0].bytes.len(), first);
        assert_eq!(t.turns[0].ecs["http"]["request"]["body"]["content"], "hi");
        assert_eq!(t.turns[0].spip["http2"]["request_incomplete"], true);
        assert!(t.turns[0].reply.ends_with(&response(1)));
        assert_eq!(t.turns[1].ecs["http"]["request"]["method"], "GET");
        assert_eq!(t.turns[1].spip["http2"]["stream_id"], 3);
        assert!(t.turns[1].spip["http2"].get("request_incomplete").is_none());
        assert_eq!(t.turns[1].reply, response(3));
    }

    #[test]
    fn a_turn_shown_again_is_not_read_twice() {
        // The engine frames a closing connection's unfinished turn again from its start.
        let post = hex(CURL_POST);
        let cut = post.len() - 10;
        let mut r = Http2::new(&test_ctx());
        assert_eq!(r.frame(&post[..cut], 0), Framing::NeedMore);
        assert_eq!(r.frame(&post[..cut], 0), Framing::NeedMore);
        assert_eq!(r.frame(&post, cut), Framing::Complete(post.len()));
        let turn = r.parse(&post);
        assert_eq!(turn.facts.frames, 4);
        let req = turn.request.unwrap();
        assert_eq!(req.body, b"user=admin&pass=SECRET");
    }

    fn test_ctx() -> Context<'static> {
        static SETTINGS: std::sync::OnceLock<crate::protocols::Settings> =
            std::sync::OnceLock::new();
        Context {
            client: "192.0.2.7:40000".parse().unwrap(),
            server: "198.51.100.2:80".parse().unwrap(),
            settings: SETTINGS.get_or_init(Default::default),
            random: 1,
            now: crate::protocols::testing::now(),
        }
    }

    #[test]
    fn prefixes_and_garbage_never_panic() {
        for input in [hex(CURL_GET), hex(CURL_POST), hex(NGHTTP_TWO)] {
            for end in 0..=input.len() {
                let t = talk(&[&input[..end]]);
                assert!(t.turns.len() <= 2);
            }
            // Every byte flipped, one at a time.
            for i in 0..input.len() {
                let mut bad = input.clone();
                bad[i] ^= 0xa5;
                talk(&[&bad]);
            }
        }
        let mut x = 0x1234_5678_9abc_def0u64;
        for len in [1usize, 9, 30, 200, 5000] {
            let mut noise = PREFACE.to_vec();
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                noise.push(x as u8);
            }
            talk(&[&noise]);
            talk(&[&noise[PREFACE.len()..]]);
        }
    }

    #[test]
    fn not_a_preface_is_goaway_and_close() {
        let t = talk(&[b"GET / HTTP/1.1\r\n\r\n"]);
        assert_eq!(t.turns.len(), 1);
        let turn = &t.turns[0];
        assert!(turn.close);
        assert_eq!(turn.spip["http2"]["error"], "bad connection preface");
        assert!(turn.reply.ends_with(&hex("000008070000000000 00000000 00000001")));
    }

    #[test]
    fn frame_errors_are_goaway() {
        let mut input = PREFACE.to_vec();
        // HEADERS on stream 0.
        input.extend_from_slice(&hex("000001010500000000 82"));
        let t = talk(&[&input]);
        assert!(t.turns[0].close);
        assert!(t.turns[0].reply.ends_with(&hex("00000001")));
        // A bad HPACK index: COMPRESSION_ERROR.
        let mut input = PREFACE.to_vec();
        input.extend_from_slice(&hex("000001010500000001 ff"));
        let t = talk(&[&input]);
        assert!(t.turns[0].close);
        assert!(t.turns[0].reply.ends_with(&hex("00000009")));
    }

    fn hostile(frames: impl Fn(&mut Vec<u8>)) -> Transcript {
        let mut input = PREFACE.to_vec();
        while input.len() < 64 * 1024 {
            frames(&mut input);
        }
        talk(&[&input])
    }

    #[test]
    fn hostile_64k_gets_a_small_reply() {
        let pings = hostile(|v| v.extend_from_slice(&hex("000008060000000000 0102030405060708")));
        let sent = pings.sent();
        assert_eq!(sent.len(), SERVER_START.len() + MAX_ACKS * 17);
        let settings = hostile(|v| v.extend_from_slice(&hex("000006040000000000 000300000064")));
        assert_eq!(settings.sent().len(), SERVER_START.len() + MAX_ACKS * 9);
        // An endless header block: cut at MAX_BLOCK with ENHANCE_YOUR_CALM.
        let mut block = PREFACE.to_vec();
        block.extend_from_slice(&hex("004000010100000001"));
        block.extend_from_slice(&[0x82; 0x4000]);
        while block.len() < 100 * 1024 {
            block.extend_from_slice(&hex("004000090000000001"));
            block.extend_from_slice(&[0x82; 0x4000]);
        }
        let t = talk(&[&block]);
        assert!(t.sent().len() < 100);
        assert!(t.turns[0].close);
        assert_eq!(t.turns[0].spip["http2"]["error"], "header block too large");
        // Many small requests in one read: one turn each, one answer each (like nginx).
        let reqs = hostile(|v| {
            let stream = (v.len() as u32 / 16) * 2 + 1;
            v.extend_from_slice(&[0, 0, 3, 1, 5]);
            v.extend_from_slice(&stream.to_be_bytes());
            v.extend_from_slice(&[0x82, 0x84, 0x86]);
        });
        // 77 bytes for 12: an answer per request, its `date` (29 bytes) included, as nginx
        // sends one with each (and a `server` field besides).
        let per_request = reqs.sent().len() as f64 / reqs.turns.len() as f64;
        assert!(per_request < 80.0, "{per_request}");
    }

    #[test]
    fn hpack_bomb_is_bounded() {
        // One 4 KB entry (a 4000-byte name, value "v"), then 16 K one-byte references to it:
        // 64 MB if decoded in full.
        let mut block = vec![0x40, 0x7f];
        let mut n = 4000 - 127;
        while n >= 0x80 {
            block.push((n & 0x7f) as u8 | 0x80);
            n >>= 7;
        }
        block.push(n as u8);
        block.extend(std::iter::repeat_n(b'n', 4000));
        block.extend_from_slice(&[0x01, b'v']);
        block.extend(std::iter::repeat_n(0xbe, 16 * 1024)); // index 62: the entry
        let mut out = FieldList::default();
        let start = std::time::Instant::now();
        Decoder::new().decode(&block, &mut out).unwrap();
        assert!(out.truncated());
        assert_eq!(out.iter().count(), 16);
        assert!(start.elapsed() < std::time::Duration::from_millis(200));
        // Re-inserting the big entry by its indexed name, 2 bytes a time: too much work.
        let mut again = block[..block.len() - 16 * 1024].to_vec();
        for _ in 0..8 * 1024 {
            again.extend_from_slice(&[0x7e, 0x00]); // name index 62, empty value, indexed
        }
        let err = Decoder::new().decode(&again, &mut FieldList::default());
        assert_eq!(err, Err(hpack::Error::TooMuchWork));
    }

    fn decode_all(blocks: &[&str]) -> Vec<Vec<(String, String)>> {
        let mut d = Decoder::new();
        blocks
            .iter()
            .map(|b| {
                let mut out = FieldList::default();
                d.decode(&hex(b), &mut out).unwrap();
                out.iter()
                    .map(|(n, v)| {
                        (
                            String::from_utf8(n.to_vec()).unwrap(),
                            String::from_utf8(v.to_vec()).unwrap(),
                        )
                    })
                    .collect()
            })
            .collect()
    }

    fn list(fields: &[(&str, &str)]) -> Vec<(String, String)> {
        fields
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn rfc7541_c4_requests_with_huffman() {
        let got = decode_all(&[
            "828684418cf1e3c2e5f23a6ba0ab90f4ff",
            "828684be5886a8eb10649cbf",
            "828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf",
        ]);
        let req = |extra: &[(&str, &str)], scheme: &str, path: &str| {
            let mut l = list(&[
                (":method", "GET"),
                (":scheme", scheme),
                (":path", path),
                (":authority", "www.example.com"),
            ]);
            l.extend(list(extra));
            l
        };
        assert_eq!(got[0], req(&[], "http", "/"));
        assert_eq!(got[1], req(&[("cache-control", "no-cache")], "http", "/"));
        assert_eq!(
            got[2],
            req(&[("custom-key", "custom-value")], "https", "/index.html")
        );
    }

    #[test]
    fn rfc7541_c6_responses_evict_from_a_256_byte_table() {
        // python3-hpack's encoding of RFC 7541 C.6 (table size 256: a size update first).
        let got = decode_all(&[
            "3fe101488264025885aec3771a4b6196d07abe941054d444a8200595040b8166e082a62d1bff6e919d29\
             ad171863c78f0b97c8e9ae82ae43d3",
            "4883640effc1c0bf",
            "88c16196d07abe941054d444a8200595040b8166e084a62d1bffc05a839bd9ab77ad94e7821dd7f2e6c7\
             b335dfdfcd5b3960d5af27087f3672c1ab270fb5291f9587316065c003ed4ee5b1063d5007",
        ]);
        let resp = |status: &str, date: &str| {
            list(&[
                (":status", status),
                ("cache-control", "private"),
                ("date", date),
                ("location", "https://www.example.com"),
            ])
        };
        assert_eq!(got[0], resp("302", "Mon, 21 Oct 2013 20:13:21 GMT"));
        assert_eq!(got[1], resp("307", "Mon, 21 Oct 2013 20:13:21 GMT"));
        let mut third = resp("200", "Mon, 21 Oct 2013 20:13:22 GMT");
        third.extend(list(&[
            ("content-encoding", "gzip"),
            (
                "set-cookie",
                "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1",
            ),
        ]));
        assert_eq!(got[2], third);
    }

    #[test]
    fn hpack_rejects_bad_input() {
        let mut out = FieldList::default();
        let mut d = Decoder::new();
        // Size update above our limit.
        assert_eq!(
            d.decode(&hex("3fe21f"), &mut out),
            Err(hpack::Error::TableSizeTooLarge)
        );
        // Huffman padding of 8+ bits, and EOS inside a string.
        assert_eq!(
            Decoder::new().decode(&hex("0081ff"), &mut out),
            Err(hpack::Error::BadHuffman)
        );
        assert_eq!(
            Decoder::new().decode(&hex("0084ffffffff"), &mut out),
            Err(hpack::Error::BadHuffman)
        );
        assert_eq!(
            Decoder::new().decode(&hex("ff8080808001"), &mut out),
            Err(hpack::Error::IntegerOverflow)
        );
        assert_eq!(
            Decoder::new().decode(&hex("0003ab"), &mut out),
            Err(hpack::Error::Truncated)
        );
    }

    #[test]
    fn header_names_that_decode_alike_merge() {
        // Literal names "\xff", "\xfe" (both U+FFFD in JSON) and "X-A", "x-a".
        let block = hex("0001ff0161 0001fe0162 0003582d41 0163 0003782d61 0164");
        let mut fields = FieldList::default();
        Decoder::new().decode(&block, &mut fields).unwrap();
        let req = RequestView {
            stream: 1,
            fields,
            body: Vec::new(),
            body_bytes: 0,
            complete: true,
        };
        let turn = Http2Turn {
            request: Some(req),
            facts: TurnFacts::default(),
        };
        let ecs = crate::protocols::testing::fields(|w| turn.write_ecs(w));
        let h = &ecs["http"]["request"]["headers"];
        assert_eq!(h["\u{fffd}"], "a, b");
        assert_eq!(h["x-a"], "c, d");
    }
}
