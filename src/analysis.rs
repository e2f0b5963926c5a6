//! What one client turn yields as record fields.
//!
//! [`analyze`] runs the parsers over a turn's bytes (borrowed, nothing copied); the `write_*`
//! methods put the results at their record paths. Records ([`crate::record`]) and
//! `spip-agent inspect` both go through here, so a payload always yields the same fields.

use crate::fingerprint;
use crate::json::JsonWriter;
use crate::proto::http::{self, Head, RequestHead};
use crate::session::{Framing, Session, TurnKind};

/// Distinct header names written under `http.request.headers`; the rest are counted.
const MAX_HEADERS_WRITTEN: usize = 64;

/// The parsed view of one turn.
pub struct Analysis<'a> {
    pub payload: &'a [u8],
    pub kind: TurnKind,
    pub http: Option<HttpRequest<'a>>,
    /// ClientHello fingerprints (fingerprint library).
    pub tls: Option<fingerprint::TlsClient<'a>>,
    /// SSH banner / KEXINIT fingerprints (fingerprint library).
    pub ssh: Option<fingerprint::SshClient<'a>>,
    /// TLS mode: what the connection's handshake negotiated (or why it failed). Set on every
    /// record of a TLS connection, with `tls` holding its ClientHello fingerprints.
    pub tls_session: Option<&'a crate::tls::TlsInfo>,
}

/// An HTTP request: head plus the body bytes that came with it (up to the payload cap).
pub struct HttpRequest<'a> {
    pub head: RequestHead<'a>,
    pub body: &'a [u8],
}

/// Analyzes a turn whose kind the session already determined.
pub fn analyze(payload: &[u8], kind: TurnKind) -> Analysis<'_> {
    let http = match kind {
        TurnKind::Http => match http::parse_request_head(payload) {
            Head::Complete(head) => Some(HttpRequest {
                head,
                body: payload.get(head.head_len..).unwrap_or_default(),
            }),
            _ => None,
        },
        _ => None,
    };
    // Fingerprints (TLS ClientHello, SSH banner + KEXINIT).
    let tls = match kind {
        TurnKind::TlsHandshake => fingerprint::tls_client(payload),
        _ => None,
    };
    let ssh = match kind {
        TurnKind::SshBanner | TurnKind::SshPacket => fingerprint::ssh_client(payload),
        // A bare KEXINIT packet (e.g. a later turn re-processed by `inspect`).
        TurnKind::Other => fingerprint::ssh_client(payload).filter(|s| s.hassh.is_some()),
        _ => None,
    };
    Analysis {
        payload,
        kind,
        http,
        tls,
        ssh,
        tls_session: None,
    }
}

/// Analyzes a payload of unknown kind (for `inspect`): frames it as the first turn would be.
pub fn analyze_payload(payload: &[u8]) -> Analysis<'_> {
    let kind = match Session::new().frame(payload, usize::MAX) {
        Framing::Complete { kind, .. } => kind,
        Framing::NeedMore => Session::new().frame(payload, payload.len()).kind_or_other(),
    };
    analyze(payload, kind)
}

impl Framing {
    fn kind_or_other(self) -> TurnKind {
        match self {
            Framing::Complete { kind, .. } => kind,
            Framing::NeedMore => TurnKind::Other,
        }
    }
}

impl Analysis<'_> {
    /// `network.protocol`.
    pub fn protocol(&self) -> Option<&'static str> {
        if self.tls_session.is_some() {
            return Some("tls");
        }
        match self.kind {
            TurnKind::Http if self.http.is_some() => Some("http"),
            TurnKind::SshBanner | TurnKind::SshPacket => Some("ssh"),
            TurnKind::TlsHandshake => Some("tls"),
            TurnKind::Other if self.ssh.is_some() => Some("ssh"),
            _ => None,
        }
    }

    /// Members inside `event`: the payload as text (when not HTTP) and as exact hex.
    pub fn write_event_fields(&self, w: &mut JsonWriter) {
        if self.http.is_none() {
            w.str("summary", self.payload);
        }
        w.hex("original_payload_hex", self.payload);
    }

    /// Top-level protocol objects: `http`, `url`, `user_agent` (and, with the fingerprint
    /// library, `tls` and `ssh`).
    pub fn write_protocol_objects(&self, w: &mut JsonWriter) {
        if let Some(req) = &self.http {
            write_http(w, req);
        }
        // Fingerprint library: `tls.client.*`, `ssh.client.hash.hassh`.
        if self.tls.is_some() || self.tls_session.is_some() {
            w.begin_object("tls");
            if let Some(alpn) = self.tls_session.and_then(|s| s.alpn.as_deref()) {
                w.str("alpn", alpn);
            }
            w.begin_object("client");
            if let Some(t) = &self.tls {
                t.write_client_members(w);
            }
            if let Some(s) = self.tls_session {
                s.write_client_members(w);
            }
            w.end_object();
            w.end_object();
        }
        if let Some(s) = self.ssh.as_ref().filter(|s| s.hassh.is_some()) {
            w.begin_object("ssh");
            s.write_fields(w);
            w.end_object();
        }
    }

    /// Members inside `spip` that come from the payload.
    pub fn write_spip_fields(&self, w: &mut JsonWriter) {
        if let Some(req) = &self.http {
            let distinct = distinct_header_count(&req.head);
            if distinct > MAX_HEADERS_WRITTEN {
                w.u64(
                    "http_headers_omitted",
                    (distinct - MAX_HEADERS_WRITTEN) as u64,
                );
            }
        }
        // Fingerprint library: raw fingerprint strings.
        if let Some(t) = &self.tls {
            t.write_spip_fields(w);
        }
        if let Some(e) = self.tls_session.and_then(|s| s.error.as_deref()) {
            w.str("tls_error", e.as_bytes());
        }
        if let Some(s) = &self.ssh {
            s.write_spip_fields(w);
        }
    }
}

fn write_http(w: &mut JsonWriter, req: &HttpRequest<'_>) {
    let head = &req.head;
    w.begin_object("http");
    w.begin_object("request");
    w.str("method", head.method);
    w.begin_object("headers");
    let mut written = 0;
    for (i, (name, _)) in head.headers().enumerate() {
        // One member per distinct name (first occurrence), repeats joined with ", ".
        if head
            .headers()
            .take(i)
            .any(|(earlier, _)| earlier.eq_ignore_ascii_case(name))
        {
            continue;
        }
        if written == MAX_HEADERS_WRITTEN {
            break;
        }
        written += 1;
        let values = head
            .headers()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v);
        w.str_parts_lower_key(name, values);
    }
    w.end_object();
    if !req.body.is_empty() {
        w.begin_object("body");
        w.str("content", req.body);
        w.u64("bytes", req.body.len() as u64);
        w.end_object();
    }
    #[cfg(feature = "ja4plus")]
    {
        w.begin_object("hash");
        w.str("ja4h", fingerprint::ja4h::ja4h(head).as_bytes());
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

fn distinct_header_count(head: &RequestHead<'_>) -> usize {
    head.headers()
        .enumerate()
        .filter(|(i, (name, _))| {
            !head
                .headers()
                .take(*i)
                .any(|(e, _)| e.eq_ignore_ascii_case(name))
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(payload: &[u8]) -> serde_json::Value {
        let a = analyze_payload(payload);
        let mut out = Vec::new();
        let mut w = JsonWriter::new(&mut out);
        w.begin();
        w.begin_object("event");
        a.write_event_fields(&mut w);
        w.end_object();
        a.write_protocol_objects(&mut w);
        w.finish();
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn http_fields() {
        let v = fields(
            b"POST /login?next=%2F HTTP/1.1\r\nHost: [2001:db8::1]:8443\r\nUser-Agent: curl/8.5\r\n\
              X-A: 1\r\nx-a: 2\r\nContent-Length: 3\r\n\r\nabc",
        );
        assert_eq!(v["http"]["request"]["method"], "POST");
        assert_eq!(v["http"]["request"]["headers"]["x-a"], "1, 2");
        assert_eq!(v["http"]["request"]["headers"]["user-agent"], "curl/8.5");
        assert_eq!(v["http"]["request"]["body"]["content"], "abc");
        assert_eq!(v["http"]["request"]["body"]["bytes"], 3);
        assert_eq!(v["http"]["version"], "1.1");
        assert_eq!(v["url"]["path"], "/login");
        assert_eq!(v["url"]["query"], "next=%2F");
        assert_eq!(v["url"]["domain"], "2001:db8::1");
        assert_eq!(v["url"]["port"], 8443);
        assert_eq!(v["user_agent"]["original"], "curl/8.5");
        assert!(v["event"].get("summary").is_none());
        assert!(
            v["event"]["original_payload_hex"]
                .as_str()
                .unwrap()
                .starts_with("504f5354")
        );
    }

    #[test]
    fn binary_payload_is_summary_and_exact_hex() {
        let v = fields(b"\x00\xff\"\\\x1b[0m");
        assert_eq!(v["event"]["original_payload_hex"], "00ff225c1b5b306d");
        assert_eq!(v["event"]["summary"], "\u{0}\u{FFFD}\"\\\u{1b}[0m");
    }
}
