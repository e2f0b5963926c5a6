//! HTTP/1.x: a request (head plus its declared body) is one turn; the answer is Spip's
//! `200 OK` with the client's IP as the body, keep-alive as the client asked.
//!
//! Framing is incremental: the head's end is searched only in new bytes, and a chunked body is
//! walked chunk by chunk from where the last read left off. Header fields are written in one
//! pass over a bounded table of distinct names, so a head of 12,000 headers costs linear time.

use super::{After, Context, Detection, Framing, Responder, TurnFields};
use crate::json::{JsonWriter, write_json_string_content};
use crate::proto::http::{self, BodyLength, Head, MAX_HEAD_LEN, RequestHead};
use crate::record::format_ip;

/// Distinct header names written under `http.request.headers`; the rest are counted.
const MAX_HEADERS_WRITTEN: usize = 64;
/// Header keys are cut to this many bytes in records (and compared so).
const MAX_KEY_LEN: usize = 256;

pub struct Http1 {
    frame: FrameState,
}

/// Where the current request's framing stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FrameState {
    /// Looking for the blank line that ends the head: `line_start` is where the current line
    /// begins, `scanned` how far newlines were searched.
    Head { line_start: usize, scanned: usize },
    /// Head done; the turn ends at `end`.
    Body { end: usize },
    /// Head done; a chunked body: `next` is where the next chunk-size line starts.
    Chunks { next: usize },
    /// After the last chunk: trailer lines until a blank one; `line_start` as in `Head`.
    Trailer { line_start: usize },
    /// Not HTTP (or a head past the limit): the turn ends at the client's pause.
    NotHttp,
}

const FRESH: FrameState = FrameState::Head {
    line_start: 0,
    scanned: 0,
};

/// One request: its parsed head and the body bytes that came with it, or bytes that are not
/// a request (kept as the payload only).
pub struct Request<'a> {
    pub head: Option<RequestHead<'a>>,
    pub body: &'a [u8],
}

impl Responder for Http1 {
    const NAME: &'static str = "http";
    const OVERRIDES_GREETING: bool = true;
    type Turn<'a> = Request<'a>;

    fn new(_ctx: &Context<'_>) -> Self {
        Http1 { frame: FRESH }
    }

    fn detect(first: &[u8]) -> Detection {
        if first.starts_with(b"PRI * HTTP/2") {
            return Detection::NoMatch; // the HTTP/2 preface
        }
        match http::request_line(first) {
            http::RequestLine::Valid => Detection::Match,
            http::RequestLine::Partial => Detection::NeedMore,
            http::RequestLine::NotHttp => Detection::NoMatch,
        }
    }

    fn frame(&mut self, pending: &[u8], new_from: usize) -> Framing {
        if new_from == 0 {
            self.frame = FRESH;
        }
        loop {
            match self.frame {
                FrameState::Head {
                    line_start,
                    scanned,
                } => {
                    let Some(rel) = memchr::memchr(b'\n', &pending[scanned..]) else {
                        if pending.len() > MAX_HEAD_LEN {
                            self.frame = FrameState::NotHttp;
                            continue;
                        }
                        self.frame = FrameState::Head {
                            line_start,
                            scanned: pending.len(),
                        };
                        return Framing::NeedMore;
                    };
                    let nl = scanned + rel;
                    if line_start == 0 {
                        // The request line is complete: is this HTTP at all?
                        if http::request_line(&pending[..=nl]) != http::RequestLine::Valid {
                            self.frame = FrameState::NotHttp;
                            continue;
                        }
                    } else if trim_cr(&pending[line_start..nl]).is_empty() {
                        self.frame = self.after_head(pending, nl + 1);
                        continue;
                    }
                    self.frame = FrameState::Head {
                        line_start: nl + 1,
                        scanned: nl + 1,
                    };
                }
                FrameState::Body { end } => {
                    return if pending.len() >= end {
                        self.frame = FRESH;
                        Framing::Complete(end)
                    } else {
                        Framing::NeedMore
                    };
                }
                FrameState::Chunks { next } => {
                    let Some(rel) = pending.get(next..).and_then(|r| memchr::memchr(b'\n', r))
                    else {
                        return Framing::NeedMore;
                    };
                    let line_end = next + rel;
                    let Some(size) = chunk_size(trim_cr(&pending[next..line_end])) else {
                        self.frame = FrameState::NotHttp;
                        continue;
                    };
                    if size == 0 {
                        self.frame = FrameState::Trailer {
                            line_start: line_end + 1,
                        };
                        continue;
                    }
                    // Chunk data, then its CRLF. Sizes past the buffer just wait (the payload
                    // cap ends a body that never comes).
                    let data_end = (line_end + 1).saturating_add(size);
                    let Some(after) = pending.get(data_end..) else {
                        return Framing::NeedMore;
                    };
                    let eol = if after.starts_with(b"\r\n") {
                        2
                    } else if after.starts_with(b"\n") {
                        1
                    } else if after.len() < 2 {
                        return Framing::NeedMore;
                    } else {
                        self.frame = FrameState::NotHttp;
                        continue;
                    };
                    self.frame = FrameState::Chunks {
                        next: data_end + eol,
                    };
                }
                FrameState::Trailer { line_start } => {
                    let Some(rel) = pending
                        .get(line_start..)
                        .and_then(|r| memchr::memchr(b'\n', r))
                    else {
                        return Framing::NeedMore;
                    };
                    let nl = line_start + rel;
                    if trim_cr(&pending[line_start..nl]).is_empty() {
                        self.frame = FRESH;
                        return Framing::Complete(nl + 1);
                    }
                    self.frame = FrameState::Trailer { line_start: nl + 1 };
                }
                FrameState::NotHttp => return Framing::AtPause,
            }
        }
    }

    fn parse<'a>(&self, turn: &'a [u8]) -> Request<'a> {
        match http::parse_request_head(turn) {
            Head::Complete(head) => Request {
                head: Some(head),
                body: turn.get(head.head_len..).unwrap_or_default(),
            },
            _ => Request {
                head: None,
                body: &[],
            },
        }
    }

    fn reply(&mut self, turn: &Request<'_>, ctx: &Context<'_>, out: &mut Vec<u8>) -> After {
        let (keep_alive, is_head) = turn
            .head
            .as_ref()
            .map_or((false, false), |h| (h.keep_alive(), h.method == b"HEAD"));
        let mut ip = [0u8; 46];
        let ip_len = format_ip(&mut ip, ctx.client.ip());
        out.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: ");
        crate::json::write_u64(out, ip_len as u64);
        out.extend_from_slice(if keep_alive {
            b"\r\nConnection: keep-alive\r\n\r\n"
        } else {
            b"\r\nConnection: close\r\n\r\n"
        });
        if !is_head {
            out.extend_from_slice(&ip[..ip_len]);
        }
        if keep_alive {
            After::KeepOpen
        } else {
            After::Close
        }
    }
}

impl Http1 {
    /// The head ends at `head_len`: how its body is delimited.
    fn after_head(&self, pending: &[u8], head_len: usize) -> FrameState {
        let Head::Complete(head) = http::parse_request_head(&pending[..head_len]) else {
            return FrameState::NotHttp;
        };
        match head.body_length() {
            BodyLength::None => FrameState::Body { end: head_len },
            BodyLength::ContentLength(n) => FrameState::Body {
                end: usize::try_from(n)
                    .map_or(usize::MAX, |n| head_len.saturating_add(n)),
            },
            BodyLength::Chunked => FrameState::Chunks { next: head_len },
        }
    }
}

/// A chunk-size line's value (extensions after `;` ignored); `None` when it is not hex.
fn chunk_size(line: &[u8]) -> Option<usize> {
    let hex = line.split(|&b| b == b';').next().unwrap_or_default();
    let hex = hex.trim_ascii();
    if hex.is_empty() || hex.len() > 15 {
        return None;
    }
    hex.iter().try_fold(0usize, |size, &b| {
        let digit = (b as char).to_digit(16)?;
        Some(size * 16 + digit as usize)
    })
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

impl TurnFields for Request<'_> {
    fn summary(&self) -> bool {
        self.head.is_none()
    }

    fn protocol(&self) -> Option<&'static str> {
        self.head.map(|_| "http")
    }

    fn write_ecs(&self, w: &mut JsonWriter<'_>) {
        if let Some(head) = &self.head {
            write_http(w, head, self.body);
        }
    }

    fn write_spip(&self, w: &mut JsonWriter<'_>) {
        if let Some(head) = &self.head {
            let omitted = HeaderKeys::collect(head).omitted;
            if omitted > 0 {
                w.u64("http_headers_omitted", omitted as u64);
            }
        }
    }
}

/// Writes `http`, `url` and `user_agent` for a request.
pub fn write_http(w: &mut JsonWriter<'_>, head: &RequestHead<'_>, body: &[u8]) {
    w.begin_object("http");
    w.begin_object("request");
    w.str("method", head.method);
    w.begin_object("headers");
    HeaderKeys::collect(head).write(w, head);
    w.end_object();
    if !body.is_empty() {
        w.begin_object("body");
        w.str("content", body);
        w.u64("bytes", body.len() as u64);
        w.end_object();
    }
    #[cfg(feature = "ja4plus")]
    {
        w.begin_object("hash");
        w.str("ja4h", crate::fingerprint::ja4h::ja4h(head).as_bytes());
        w.end_object();
    }
    w.end_object(); // request
    w.str("version", head.version_number());
    w.end_object(); // http

    w.begin_object("url");
    let (path, query) = head.path_and_query();
    w.str("original", head.target);
    w.str("path", path);
    if let Some(q) = query {
        w.str("query", q);
    }
    if let Some(host) = head.header(b"host").filter(|h| !h.is_empty()) {
        let (domain, port) = http::split_host_port(host);
        if !domain.is_empty() {
            w.str("domain", domain);
        }
        if let Some(p) = port {
            w.u64("port", u64::from(p));
        }
    }
    w.end_object();

    if let Some(ua) = head.header(b"user-agent").filter(|v| !v.is_empty()) {
        w.begin_object("user_agent");
        w.str("original", ua);
        w.end_object();
    }
}

/// The distinct header keys of a head, as records write them (first occurrence order), found
/// in one pass: a small open-addressing table keyed by the decoded key's hash.
struct HeaderKeys<'a> {
    /// Distinct keys: name as first sent, first value, and how many fields share the key.
    keys: [(&'a [u8], &'a [u8], u32); MAX_HEADERS_WRITTEN],
    len: usize,
    /// Header fields whose key did not fit (counted, not written).
    omitted: usize,
}

/// Slots of the hash table (twice the keys kept, so probes stay short).
const SLOTS: usize = MAX_HEADERS_WRITTEN * 2;

impl<'a> HeaderKeys<'a> {
    fn collect(head: &RequestHead<'a>) -> Self {
        let mut keys = HeaderKeys {
            keys: [(&[][..], &[][..], 0); MAX_HEADERS_WRITTEN],
            len: 0,
            omitted: 0,
        };
        // Slot -> (hash, key index + 1); 0 = empty.
        let mut table = [(0u64, 0u8); SLOTS];
        for (name, value) in head.headers() {
            let hash = key_hash(name);
            let mut slot = (hash as usize) % SLOTS;
            loop {
                let (h, index) = table[slot];
                if index == 0 {
                    if keys.len < MAX_HEADERS_WRITTEN {
                        keys.keys[keys.len] = (name, value, 1);
                        keys.len += 1;
                        table[slot] = (hash, keys.len as u8);
                    } else {
                        keys.omitted += 1;
                    }
                    break;
                }
                let entry = &mut keys.keys[usize::from(index) - 1];
                if h == hash && same_key(entry.0, name) {
                    entry.2 += 1;
                    break;
                }
                slot = (slot + 1) % SLOTS;
            }
        }
        keys
    }

    /// One member per distinct key; repeated fields joined with `", "` in wire order.
    fn write(&self, w: &mut JsonWriter<'_>, head: &RequestHead<'_>) {
        for &(name, value, count) in &self.keys[..self.len] {
            w.member_lower_key(&name[..name.len().min(MAX_KEY_LEN)], |buf| {
                if count == 1 {
                    write_json_string_content(buf, value);
                    return;
                }
                // A repeated key: one more walk over the fields, bounded by the table size.
                let mut first = true;
                for (n, v) in head.headers() {
                    if n.len() >= name.len().min(MAX_KEY_LEN) && same_key(n, name) {
                        if !first {
                            buf.extend_from_slice(b", ");
                        }
                        first = false;
                        write_json_string_content(buf, v);
                    }
                }
            });
        }
    }
}

/// The characters of a record key: the first [`MAX_KEY_LEN`] bytes, ASCII lower-cased, decoded
/// as lossy UTF-8 (what the JSON reader sees).
fn key_chars(name: &[u8]) -> impl Iterator<Item = char> + '_ {
    name[..name.len().min(MAX_KEY_LEN)]
        .utf8_chunks()
        .flat_map(|chunk| {
            let bad = (!chunk.invalid().is_empty()).then_some('\u{FFFD}');
            chunk
                .valid()
                .chars()
                .map(|c| c.to_ascii_lowercase())
                .chain(bad)
        })
}

fn key_hash(name: &[u8]) -> u64 {
    // FNV-1a over the decoded characters.
    key_chars(name).fold(0xcbf2_9ce4_8422_2325, |h, c| {
        (h ^ u64::from(u32::from(c))).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Whether two header names become the same record key.
fn same_key(a: &[u8], b: &[u8]) -> bool {
    if a.is_ascii() && b.is_ascii() {
        let (a, b) = (&a[..a.len().min(MAX_KEY_LEN)], &b[..b.len().min(MAX_KEY_LEN)]);
        return a.eq_ignore_ascii_case(b);
    }
    key_chars(a).eq(key_chars(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocols::testing::{assert_splits_agree, converse};

    #[test]
    fn request_in_segments_is_one_turn_with_fields() {
        let req: &[u8] = b"POST /login?next=%2F HTTP/1.1\r\nHost: [2001:db8::1]:8443\r\n\
            User-Agent: curl/8.5\r\nX-A: 1\r\nx-a: 2\r\nContent-Length: 3\r\n\r\nabc";
        assert_splits_agree::<Http1>(false, req);
        let t = converse::<Http1>(false, &[req]);
        assert_eq!(t.turns.len(), 1);
        let turn = &t.turns[0];
        assert!(!turn.summary);
        assert_eq!(turn.protocol, Some("http"));
        let v = &turn.ecs;
        assert_eq!(v["http"]["request"]["method"], "POST");
        assert_eq!(v["http"]["request"]["headers"]["x-a"], "1, 2");
        assert_eq!(v["http"]["request"]["body"]["content"], "abc");
        assert_eq!(v["http"]["version"], "1.1");
        assert_eq!(v["url"]["path"], "/login");
        assert_eq!(v["url"]["query"], "next=%2F");
        assert_eq!(v["url"]["domain"], "2001:db8::1");
        assert_eq!(v["url"]["port"], 8443);
        assert_eq!(v["user_agent"]["original"], "curl/8.5");
        let reply = String::from_utf8(turn.reply.clone()).unwrap();
        assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(reply.ends_with("\r\n\r\n192.0.2.7"));
        assert!(!turn.close);
    }

    #[test]
    fn pipelined_requests_are_separate_turns() {
        let t = converse::<Http1>(false, &[b"GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\n"]);
        assert_eq!(t.turns.len(), 2);
        assert_eq!(t.turns[1].ecs["url"]["path"], "/2");
    }

    #[test]
    fn chunked_body_in_any_split() {
        let req = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nX-T: 1\r\n\r\nGET / HTTP/1.0\r\n\r\n";
        assert_splits_agree::<Http1>(false, req);
        let t = converse::<Http1>(false, &[req]);
        assert_eq!(t.turns.len(), 2);
        assert!(t.turns[0].bytes.ends_with(b"X-T: 1\r\n\r\n"));
        assert!(t.turns[1].close, "HTTP/1.0 without keep-alive closes");
    }

    #[test]
    fn head_method_gets_no_body() {
        let t = converse::<Http1>(false, &[b"HEAD / HTTP/1.0\r\n\r\n"]);
        assert!(t.turns[0].reply.ends_with(b"\r\n\r\n"));
        assert!(t.turns[0].close);
    }

    #[test]
    fn bytes_that_are_not_http_wait_for_the_pause() {
        let t = converse::<Http1>(false, &[b"GET /x\r\n", b"more"]);
        assert_eq!(t.turns.len(), 1);
        assert_eq!(t.turns[0].protocol, None);
        assert!(t.turns[0].summary);
    }

    #[test]
    fn detection() {
        assert_eq!(Http1::detect(b"GE"), Detection::NeedMore);
        assert_eq!(Http1::detect(b"GET / HTTP/1.1\r\n"), Detection::Match);
        assert_eq!(Http1::detect(b"EHLO x\r\n"), Detection::NoMatch);
        assert_eq!(Http1::detect(b"\x16\x03\x01"), Detection::NoMatch);
    }

    #[test]
    fn keys_are_unique_after_decoding() {
        // \xff and \xfe both decode to U+FFFD; `A` and `a` are one key; 300-byte names that
        // differ after byte 256 are one key.
        let long_a = format!("{}a", "n".repeat(300));
        let long_b = format!("{}b", "n".repeat(300));
        let req = format!(
            "GET / HTTP/1.1\r\n\u{0}: z\r\nA: 1\r\na: 2\r\n{long_a}: 3\r\n{long_b}: 4\r\n\r\n"
        );
        let mut bytes = req.into_bytes();
        let at = bytes.iter().position(|&b| b == 0).unwrap();
        bytes.splice(at..=at, *b"\xff: x\r\n\xfe");
        let t = converse::<Http1>(false, &[&bytes]);
        let headers = t.turns[0].ecs["http"]["request"]["headers"].as_object().unwrap().clone();
        assert_eq!(headers["\u{FFFD}"], "x, z");
        assert_eq!(headers["a"], "1, 2");
        assert_eq!(headers.len(), 3);
    }

    #[test]
    fn many_headers_are_bounded() {
        let mut req = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..500 {
            req.extend_from_slice(format!("h{i}: v\r\n").as_bytes());
        }
        req.extend_from_slice(b"\r\n");
        let t = converse::<Http1>(false, &[&req]);
        let v = &t.turns[0];
        assert_eq!(
            v.ecs["http"]["request"]["headers"].as_object().unwrap().len(),
            MAX_HEADERS_WRITTEN
        );
        assert_eq!(v.spip["http_headers_omitted"], 500 - MAX_HEADERS_WRITTEN);
    }

    #[test]
    fn prefixes_never_panic() {
        let req = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\nffffffffffffffff\r\nab";
        for cut in 1..=req.len() {
            converse::<Http1>(false, &[&req[..cut]]);
        }
    }
}
