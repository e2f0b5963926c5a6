//! SIP requests over UDP (RFC 3261): method, URI, `From`, `To`, `Call-ID` and `User-Agent` are
//! recorded. OPTIONS gets `200 OK`, REGISTER `401 Unauthorized` with a digest challenge (so
//! the client sends its credentials next); each reply copies only the request's dialog headers
//! and is dropped if it would be larger than the request.

use super::{DatagramContext, DatagramResponder};
use crate::json::JsonWriter;
use crate::protocols::TurnFields;
use memchr::memmem;

/// A SIP request's line and the headers we use.
pub struct SipRequest<'a> {
    method: &'a [u8],
    uri: &'a [u8],
    via: Option<&'a [u8]>,
    from: Option<&'a [u8]>,
    to: Option<&'a [u8]>,
    call_id: Option<&'a [u8]>,
    cseq: Option<&'a [u8]>,
    user_agent: Option<&'a [u8]>,
    /// The request's size: the reply's bound.
    len: usize,
}

const METHODS: &[&[u8]] = &[
    b"OPTIONS", b"REGISTER", b"INVITE", b"ACK", b"BYE", b"CANCEL", b"SUBSCRIBE", b"NOTIFY",
    b"MESSAGE", b"INFO", b"PRACK", b"UPDATE", b"REFER", b"PUBLISH",
];

fn trim(mut b: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = b {
        if first.is_ascii_whitespace() {
            b = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = b {
        if last.is_ascii_whitespace() {
            b = rest;
        } else {
            break;
        }
    }
    b
}

impl<'a> DatagramResponder<'a> for SipRequest<'a> {
    const NAME: &'static str = "sip";

    fn parse(_port: u16, d: &'a [u8]) -> Option<Self> {
        let line_end = memchr::memchr(b'\n', d)?;
        let line = trim(&d[..line_end]);
        let mut parts = line.splitn(3, |&b| b == b' ');
        let method = parts.next()?;
        let uri = parts.next()?;
        if parts.next()? != b"SIP/2.0" || !METHODS.contains(&method) {
            return None;
        }
        // Headers up to the blank line (or the datagram's end): one pass.
        let head_end = memmem::find(d, b"\r\n\r\n").unwrap_or(d.len());
        let mut req = SipRequest {
            method,
            uri,
            via: None,
            from: None,
            to: None,
            call_id: None,
            cseq: None,
            user_agent: None,
            len: d.len(),
        };
        for line in d.get(line_end + 1..head_end)?.split(|&b| b == b'\n') {
            let Some(colon) = memchr::memchr(b':', line) else {
                continue;
            };
            let name = trim(&line[..colon]);
            let value = Some(trim(&line[colon + 1..]));
            let slot = match name.to_ascii_lowercase_array() {
                Some(n) => match &n[..name.len()] {
                    b"via" | b"v" => &mut req.via,
                    b"from" | b"f" => &mut req.from,
                    b"to" | b"t" => &mut req.to,
                    b"call-id" | b"i" => &mut req.call_id,
                    b"cseq" => &mut req.cseq,
                    b"user-agent" => &mut req.user_agent,
                    _ => continue,
                },
                None => continue,
            };
            // The first occurrence counts (a second Via is a proxy's).
            if slot.is_none() {
                *slot = value;
            }
        }
        Some(req)
    }

    fn reply(&self, ctx: &DatagramContext, out: &mut Vec<u8>) {
        let status: &[u8] = match self.method {
            b"OPTIONS" => b"200 OK",
            b"REGISTER" => b"401 Unauthorized",
            _ => return,
        };
        let (Some(via), Some(from), Some(to), Some(call_id), Some(cseq)) =
            (self.via, self.from, self.to, self.call_id, self.cseq)
        else {
            return; // not a request a server could answer
        };
        let tag = hex8(ctx.random);
        out.extend_from_slice(b"SIP/2.0 ");
        out.extend_from_slice(status);
        for (name, value) in [
            (&b"Via"[..], via),
            (b"From", from),
            (b"To", to),
            (b"Call-ID", call_id),
            (b"CSeq", cseq),
        ] {
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(name);
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            if name == b"To" && memmem::find(value, b";tag=").is_none() {
                out.extend_from_slice(b";tag=");
                out.extend_from_slice(&tag);
            }
        }
        if self.method == b"REGISTER" {
            out.extend_from_slice(b"\r\nWWW-Authenticate: Digest realm=\"asterisk\",nonce=\"");
            out.extend_from_slice(&hex8(ctx.random.rotate_left(32)));
            out.extend_from_slice(b"\",algorithm=MD5");
        }
        const END: &[u8] = b"\r\nContent-Length: 0\r\n\r\n";
        // Optional headers only while the reply stays within the request's size.
        for extra in [
            &b"\r\nAllow: INVITE, ACK, CANCEL, OPTIONS, BYE, REGISTER"[..],
            b"\r\nServer: Asterisk PBX 18.10.0",
        ] {
            if out.len() + extra.len() + END.len() <= self.len {
                out.extend_from_slice(extra);
            }
        }
        out.extend_from_slice(END);
    }
}

/// Eight lowercase hex digits of `v`'s low bits.
fn hex8(v: u64) -> [u8; 8] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 8];
    for (i, o) in out.iter_mut().enumerate() {
        *o = HEX[((v >> (28 - 4 * i)) & 0xf) as usize];
    }
    out
}

/// Lower-cases a short header name on the stack (`None` when longer than any we use).
trait LowerArray {
    fn to_ascii_lowercase_array(&self) -> Option<[u8; 16]>;
}

impl LowerArray for [u8] {
    fn to_ascii_lowercase_array(&self) -> Option<[u8; 16]> {
        let mut out = [0u8; 16];
        out.get_mut(..self.len())?
            .iter_mut()
            .zip(self)
            .for_each(|(o, b)| *o = b.to_ascii_lowercase());
        Some(out)
    }
}

impl TurnFields for SipRequest<'_> {
    fn protocol(&self) -> Option<&'static str> {
        Some(Self::NAME)
    }

    fn write_ecs(&self, w: &mut JsonWriter<'_>) {
        if let Some(ua) = self.user_agent {
            w.begin_object("user_agent");
            w.str("original", ua);
            w.end_object();
        }
    }

    fn write_spip(&self, w: &mut JsonWriter<'_>) {
        w.begin_object("sip");
        w.str("method", self.method);
        w.str("uri", self.uri);
        for (key, value) in [
            ("from", self.from),
            ("to", self.to),
            ("call_id", self.call_id),
        ] {
            if let Some(v) = value {
                w.str(key, v);
            }
        }
        w.end_object();
    }
}
