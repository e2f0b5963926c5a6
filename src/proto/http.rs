//! HTTP/1.x request heads, parsed in place.
//!
//! [`parse_request_head`] looks at the bytes a client has sent so far and says whether they are
//! a complete request head, a plausible prefix of one, or not HTTP at all. Nothing is copied:
//! the head is a set of borrowed slices, and headers are walked lazily each time they are
//! iterated (a head has a few dozen lines, so re-walking beats storing offsets).
//! Line endings may be CRLF or bare LF; header names are kept as sent.

/// Longest request head we wait for; past it the bytes are treated as not HTTP.
pub const MAX_HEAD_LEN: usize = 64 * 1024;
/// Longest method token we accept (WebDAV and friends included).
const MAX_METHOD_LEN: usize = 24;

/// What the bytes so far are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Head<'a> {
    /// A whole head, up to and including the blank line.
    Complete(RequestHead<'a>),
    /// A plausible start of a request whose head has not ended yet.
    Partial,
    /// Not an HTTP/1.x request.
    NotHttp,
}

/// A parsed request head borrowing the client's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHead<'a> {
    pub method: &'a [u8],
    /// The request target as sent (path, query, or absolute URI).
    pub target: &'a [u8],
    /// The protocol token, e.g. `HTTP/1.1`.
    pub version: &'a [u8],
    /// Header lines (after the request line, before the blank line), line endings included.
    header_block: &'a [u8],
    /// Bytes of the whole head, blank line included: the body starts here.
    pub head_len: usize,
}

/// How the request says its body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyLength {
    None,
    ContentLength(u64),
    Chunked,
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// What the start of a client's bytes says about its request line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestLine {
    /// A complete, well-formed request line.
    Valid,
    /// A plausible start of one.
    Partial,
    NotHttp,
}

/// Classifies the request line at the start of `buf` (only the first line is looked at).
pub fn request_line(buf: &[u8]) -> RequestLine {
    match split_request_line(buf) {
        Ok(_) => RequestLine::Valid,
        Err(status) => status,
    }
}

/// The request line's method, target, version and where the next line starts.
type LineParts<'a> = (&'a [u8], &'a [u8], &'a [u8], usize);

fn split_request_line(buf: &[u8]) -> Result<LineParts<'_>, RequestLine> {
    // Request line: METHOD SP TARGET SP HTTP/x.y EOL
    let method_len = buf
        .iter()
        .take(MAX_METHOD_LEN + 1)
        .take_while(|&&b| is_tchar(b))
        .count();
    if method_len == 0 || method_len > MAX_METHOD_LEN {
        return Err(RequestLine::NotHttp);
    }
    if method_len == buf.len() {
        // Only method characters so far: wait only if a known method starts this way.
        return Err(if KNOWN_METHODS.iter().any(|m| m.starts_with(buf)) {
            RequestLine::Partial
        } else {
            RequestLine::NotHttp
        });
    }
    if buf[method_len] != b' ' {
        return Err(RequestLine::NotHttp);
    }
    let Some(line_end) = memchr(b'\n', buf) else {
        return Err(if partial_request_line(buf, method_len) {
            RequestLine::Partial
        } else {
            RequestLine::NotHttp
        });
    };
    let line = trim_cr(&buf[..line_end]);
    let method = &line[..method_len];
    let rest = &line[method_len + 1..];
    let Some(sp) = rest.iter().rposition(|&b| b == b' ') else {
        return Err(RequestLine::NotHttp);
    };
    let target = trim_spaces(&rest[..sp]);
    let version = &rest[sp + 1..];
    if target.is_empty() || !is_http_version(version) || target.iter().any(|&b| b < 0x21) {
        return Err(RequestLine::NotHttp);
    }
    Ok((method, target, version, line_end + 1))
}

/// Classifies `buf` (the client's bytes so far, from the start of a request).
pub fn parse_request_head(buf: &[u8]) -> Head<'_> {
    let (method, target, version, headers_start) = match split_request_line(buf) {
        Ok(parts) => parts,
        Err(RequestLine::Partial) => return Head::Partial,
        Err(_) => return Head::NotHttp,
    };
    // Headers run until an empty line (CRLF or LF).
    let mut pos = headers_start;
    loop {
        let Some(rel) = memchr(b'\n', &buf[pos..]) else {
            return if buf.len() > MAX_HEAD_LEN {
                Head::NotHttp
            } else {
                Head::Partial
            };
        };
        let line = trim_cr(&buf[pos..pos + rel]);
        if line.is_empty() {
            return Head::Complete(RequestHead {
                method,
                target,
                version,
                header_block: &buf[headers_start..pos],
                head_len: pos + rel + 1,
            });
        }
        pos += rel + 1;
        if pos > MAX_HEAD_LEN {
            return Head::NotHttp;
        }
    }
}

/// Methods worth waiting for while the request line has not ended (once a line is complete,
/// any token followed by a target and an HTTP version is accepted).
const KNOWN_METHODS: &[&[u8]] = &[
    b"GET",
    b"POST",
    b"HEAD",
    b"PUT",
    b"DELETE",
    b"OPTIONS",
    b"PATCH",
    b"CONNECT",
    b"TRACE",
    b"PRI",
    b"PROPFIND",
    b"PROPPATCH",
    b"MKCOL",
    b"COPY",
    b"MOVE",
    b"LOCK",
    b"UNLOCK",
    b"SEARCH",
    b"REPORT",
    b"DEBUG",
];

/// An unfinished request line that can still become `METHOD SP target SP HTTP/x.y`.
fn partial_request_line(buf: &[u8], method_len: usize) -> bool {
    if buf.len() > MAX_HEAD_LEN || !KNOWN_METHODS.contains(&&buf[..method_len]) {
        return false;
    }
    let line = trim_cr(&buf[method_len + 1..]);
    if line.iter().any(|&b| b < 0x20) {
        return false;
    }
    match memchr(b' ', line) {
        None => true, // still in the target
        Some(sp) => {
            let version = &line[sp + 1..];
            version.len() <= 8
                && version
                    .iter()
                    .zip(b"HTTP/1.1")
                    .all(|(&v, &p)| v == p || (p.is_ascii_digit() && v.is_ascii_digit()))
        }
    }
}

fn is_http_version(v: &[u8]) -> bool {
    v.len() == 8
        && v.starts_with(b"HTTP/")
        && v[5].is_ascii_digit()
        && v[6] == b'.'
        && v[7].is_ascii_digit()
}

impl<'a> RequestHead<'a> {
    /// Header lines as `(name, value)`, names as sent, values trimmed; in wire order,
    /// repeats included. Lines without a colon and obsolete folded lines are skipped.
    pub fn headers(&self) -> Headers<'a> {
        Headers {
            rest: self.header_block,
        }
    }

    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &[u8]) -> Option<&'a [u8]> {
        self.headers()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// `1.1` from `HTTP/1.1`.
    pub fn version_number(&self) -> &'a [u8] {
        &self.version[5..]
    }

    /// How the body is delimited (Transfer-Encoding wins over Content-Length, per RFC 9112).
    pub fn body_length(&self) -> BodyLength {
        if let Some(te) = self.header(b"transfer-encoding")
            && contains_ignore_case(te, b"chunked")
        {
            return BodyLength::Chunked;
        }
        match self.header(b"content-length").and_then(parse_decimal) {
            Some(0) | None => BodyLength::None,
            Some(n) => BodyLength::ContentLength(n),
        }
    }

    /// Whether the client asked to keep the connection open after the response.
    pub fn keep_alive(&self) -> bool {
        let conn = self.header(b"connection");
        if self.version_number() == b"1.0" {
            conn.is_some_and(|c| contains_ignore_case(c, b"keep-alive"))
        } else {
            !conn.is_some_and(|c| contains_ignore_case(c, b"close"))
        }
    }

    /// The target split into path and query (without `?`); an absolute URI's path is kept as sent.
    pub fn path_and_query(&self) -> (&'a [u8], Option<&'a [u8]>) {
        match memchr(b'?', self.target) {
            Some(q) => (&self.target[..q], Some(&self.target[q + 1..])),
            None => (self.target, None),
        }
    }
}

/// Iterator over header lines; see [`RequestHead::headers`].
#[derive(Debug, Clone)]
pub struct Headers<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Headers<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        while !self.rest.is_empty() {
            let (line, rest) = match memchr(b'\n', self.rest) {
                Some(i) => (&self.rest[..i], &self.rest[i + 1..]),
                None => (self.rest, &[][..]),
            };
            self.rest = rest;
            let line = trim_cr(line);
            if line.first().is_some_and(|&b| b == b' ' || b == b'\t') {
                continue; // obsolete line folding
            }
            if let Some(colon) = memchr(b':', line) {
                let name = trim_spaces(&line[..colon]);
                if !name.is_empty() {
                    return Some((name, trim_spaces(&line[colon + 1..])));
                }
            }
        }
        None
    }
}

/// Splits a Host header value into host and port (`[v6]:port` aware).
pub fn split_host_port(host: &[u8]) -> (&[u8], Option<u16>) {
    if host.first() == Some(&b'[') {
        if let Some(end) = memchr(b']', host) {
            let port = host
                .get(end + 1..)
                .and_then(|r| r.strip_prefix(b":"))
                .and_then(parse_port);
            return (&host[1..end], port);
        }
        return (host, None);
    }
    match host.iter().rposition(|&b| b == b':') {
        // More than one colon without brackets: a bare IPv6 address, no port.
        Some(i) if memchr(b':', &host[..i]).is_none() => (&host[..i], parse_port(&host[i + 1..])),
        _ => (host, None),
    }
}

fn parse_port(s: &[u8]) -> Option<u16> {
    parse_decimal(s)
        .and_then(|n| u16::try_from(n).ok())
        .filter(|&p| p != 0)
}

/// A non-empty run of ASCII digits, no sign, no overflow.
pub fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 {
        return None;
    }
    s.iter().try_fold(0u64, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + u64::from(b - b'0'))
    })
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn trim_spaces(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

fn contains_ignore_case(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

/// SIMD byte search: request heads are scanned line by line several times per request.
fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    memchr::memchr(needle, hay)
}

/// Where a chunked body ends, if it has: the offset just past the last-chunk and trailers.
/// Malformed chunk framing yields `Some(len)` so the caller stops waiting and records it as is.
pub fn chunked_body_end(body: &[u8]) -> Option<usize> {
    let mut pos = 0usize;
    loop {
        let line_end = memchr(b'\n', body.get(pos..)?)? + pos;
        let size_field = trim_cr(&body[pos..line_end]);
        let hex = size_field.split(|&b| b == b';').next().unwrap_or_default();
        let hex = trim_spaces(hex);
        let mut size: u64 = 0;
        if hex.is_empty() || hex.len() > 15 {
            return Some(body.len());
        }
        for &b in hex {
            let d = match b {
                b'0'..=b'9' => b - b'0',
                b'a'..=b'f' => b - b'a' + 10,
                b'A'..=b'F' => b - b'A' + 10,
                _ => return Some(body.len()),
            };
            size = size * 16 + u64::from(d);
        }
        pos = line_end + 1;
        if size == 0 {
            // Trailers until an empty line.
            loop {
                let end = memchr(b'\n', body.get(pos..)?)? + pos;
                let empty = trim_cr(&body[pos..end]).is_empty();
                pos = end + 1;
                if empty {
                    return Some(pos);
                }
            }
        }
        let data_end = pos.checked_add(usize::try_from(size).ok()?)?;
        // Chunk data, then CRLF (or LF).
        let after = body.get(data_end..)?;
        pos = data_end
            + if after.starts_with(b"\r\n") {
                2
            } else if after.starts_with(b"\n") {
                1
            } else if after.len() < 2 {
                return None;
            } else {
                return Some(body.len());
            };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(b: &[u8]) -> RequestHead<'_> {
        match parse_request_head(b) {
            Head::Complete(h) => h,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn simple_get() {
        let req =
            b"GET /a?b=c HTTP/1.1\r\nHost: example.com:8080\r\nUser-Agent: curl/8\r\n\r\nrest";
        let h = complete(req);
        assert_eq!(h.method, b"GET");
        assert_eq!(h.target, b"/a?b=c");
        assert_eq!(h.version, b"HTTP/1.1");
        assert_eq!(h.version_number(), b"1.1");
        assert_eq!(h.head_len, req.len() - 4);
        assert_eq!(h.header(b"host"), Some(&b"example.com:8080"[..]));
        assert_eq!(h.header(b"USER-AGENT"), Some(&b"curl/8"[..]));
        assert_eq!(h.path_and_query(), (&b"/a"[..], Some(&b"b=c"[..])));
        assert_eq!(h.body_length(), BodyLength::None);
        assert!(h.keep_alive());
    }

    #[test]
    fn bare_lf_and_empty_values() {
        let h = complete(b"GET / HTTP/1.0\nUser-Agent:\n\n");
        let hs: Vec<_> = h.headers().collect();
        assert_eq!(hs, vec![(&b"User-Agent"[..], &b""[..])]);
        assert!(!h.keep_alive());
    }

    #[test]
    fn repeated_headers_kept_in_order() {
        let h = complete(b"GET / HTTP/1.1\r\nCookie: a=1\r\nX: y\r\ncookie: b=2\r\n\r\n");
        let names: Vec<_> = h.headers().map(|(n, _)| n).collect();
        assert_eq!(names, vec![&b"Cookie"[..], b"X", b"cookie"]);
    }

    #[test]
    fn partial_and_not_http() {
        assert_eq!(parse_request_head(b"GE"), Head::Partial);
        assert_eq!(parse_request_head(b"GET / HT"), Head::Partial);
        assert_eq!(
            parse_request_head(b"GET / HTTP/1.1\r\nHost: x\r\n"),
            Head::Partial
        );
        assert_eq!(parse_request_head(b""), Head::NotHttp);
        assert_eq!(parse_request_head(b"\x16\x03\x01"), Head::NotHttp);
        assert_eq!(parse_request_head(b"SSH-2.0-x\r\n"), Head::NotHttp);
        assert_eq!(parse_request_head(b"hello\r\n"), Head::NotHttp);
        assert_eq!(parse_request_head(b"GET /\r\n"), Head::NotHttp);
        assert_eq!(parse_request_head(b"GET / FTP/1.0\r\n\r\n"), Head::NotHttp);
        assert_eq!(parse_request_head(b"after the flood"), Head::NotHttp);
        assert_eq!(parse_request_head(b"HELLO"), Head::NotHttp);
        assert_eq!(parse_request_head(b"GET /x y"), Head::NotHttp);
        assert_eq!(parse_request_head(b"GET /x HTTP/1.1\r"), Head::Partial);
        assert_eq!(parse_request_head(b"POST /x HTTP/2"), Head::Partial);
        assert_eq!(parse_request_head(b"GET /x HTTP/1.1 x"), Head::NotHttp);
        assert_eq!(parse_request_head(b"GET /x\x00"), Head::NotHttp);
    }

    #[test]
    fn body_lengths() {
        let h = complete(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n");
        assert_eq!(h.body_length(), BodyLength::ContentLength(5));
        let h =
            complete(b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(h.body_length(), BodyLength::Chunked);
        let h = complete(b"POST / HTTP/1.1\r\nContent-Length: -5\r\n\r\n");
        assert_eq!(h.body_length(), BodyLength::None);
        let h = complete(b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n");
        assert_eq!(h.body_length(), BodyLength::None);
    }

    #[test]
    fn chunked_end() {
        assert_eq!(chunked_body_end(b"5\r\nhello\r\n0\r\n\r\n"), Some(15));
        assert_eq!(
            chunked_body_end(b"5\r\nhello\r\n0\r\nX-T: 1\r\n\r\nGET"),
            Some(23)
        );
        assert_eq!(chunked_body_end(b"5\r\nhel"), None);
        assert_eq!(chunked_body_end(b"5\r\nhello\r\n"), None);
        assert_eq!(chunked_body_end(b"zz\r\n"), Some(4));
        assert_eq!(chunked_body_end(b"ffffffffffffffffffff\r\n"), Some(22));
    }

    #[test]
    fn host_port_split() {
        assert_eq!(split_host_port(b"a.com:8080"), (&b"a.com"[..], Some(8080)));
        assert_eq!(split_host_port(b"a.com"), (&b"a.com"[..], None));
        assert_eq!(split_host_port(b"[::1]:80"), (&b"::1"[..], Some(80)));
        assert_eq!(split_host_port(b"::1"), (&b"::1"[..], None));
        assert_eq!(split_host_port(b"a:99999"), (&b"a"[..], None));
    }

    #[test]
    fn never_panics_on_any_prefix() {
        let req = b"POST /x HTTP/1.1\r\nHost: [::1]:1\r\nContent-Length: 3\r\n\r\nabc";
        for i in 0..=req.len() {
            let _ = parse_request_head(&req[..i]);
            let _ = chunked_body_end(&req[..i]);
        }
    }
}
