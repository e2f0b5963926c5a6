//! DNS queries (RFC 1035): the question is recorded under ECS `dns.*`; an `A` question gets a
//! minimal answer (the address it was sent to) when that fits in the query's size, anything
//! else REFUSED (the header and question echoed, never more than the query).

use super::{DatagramContext, DatagramResponder, be16};
use crate::json::JsonWriter;
use crate::protocols::TurnFields;
use std::net::IpAddr;

const HEADER: usize = 12;
const TYPE_A: u16 = 1;
const CLASS_IN: u16 = 1;
/// Longest name on the wire (RFC 1035 §2.3.4).
const MAX_NAME: usize = 255;

/// A standard query's header and first question.
pub struct DnsQuery<'a> {
    id: u16,
    flags: u16,
    /// The question's name on the wire (length-prefixed labels, final zero included).
    name: &'a [u8],
    qtype: u16,
    qclass: u16,
    /// The header and question (what a reply echoes).
    head: &'a [u8],
}

impl<'a> DatagramResponder<'a> for DnsQuery<'a> {
    const NAME: &'static str = "dns";

    fn parse(port: u16, d: &'a [u8]) -> Option<Self> {
        let flags = be16(d, 2)?;
        let (qd, an, ns, ar) = (be16(d, 4)?, be16(d, 6)?, be16(d, 8)?, be16(d, 10)?);
        // A query (QR 0), opcode QUERY, one question.
        if flags & 0x8000 != 0 || (flags >> 11) & 0xf != 0 || qd != 1 {
            return None;
        }
        let mut at = HEADER;
        loop {
            let len = usize::from(*d.get(at)?);
            if len == 0 {
                at += 1;
                break;
            }
            // Queries carry no compression pointers; labels are at most 63 bytes.
            if len > 63 || at + 1 + len - HEADER > MAX_NAME {
                return None;
            }
            at += 1 + len;
        }
        let name = d.get(HEADER..at)?;
        let (qtype, qclass) = (be16(d, at)?, be16(d, at + 2)?);
        let head = d.get(..at + 4)?;
        // Off the DNS ports, only a datagram that is exactly a query (an OPT record at most)
        // counts, so random bytes are not taken for DNS.
        let dns_port = matches!(port, 53 | 5353 | 5355);
        if !dns_port && (an != 0 || ns != 0 || ar > 1 || qclass != CLASS_IN) {
            return None;
        }
        Some(DnsQuery {
            id: be16(d, 0)?,
            flags,
            name,
            qtype,
            qclass,
            head,
        })
    }

    fn reply(&self, ctx: &DatagramContext, out: &mut Vec<u8>) {
        let answer_ip = match ctx.server.ip().to_canonical() {
            IpAddr::V4(v4) if self.qtype == TYPE_A && self.qclass == CLASS_IN => Some(v4),
            _ => None,
        };
        // QR, the client's RD, RA; RCODE 0 (answer) or 5 (REFUSED).
        let rd = self.flags & 0x0100;
        let rcode = if answer_ip.is_some() { 0 } else { 5 };
        let flags = 0x8000 | rd | 0x0080 | rcode;
        out.extend_from_slice(&self.id.to_be_bytes());
        out.extend_from_slice(&flags.to_be_bytes());
        out.extend_from_slice(&[0, 1, 0, u8::from(answer_ip.is_some()), 0, 0, 0, 0]);
        out.extend_from_slice(self.head.get(HEADER..).unwrap_or(&[]));
        if let Some(ip) = answer_ip {
            // The name by pointer to the question, A, IN, TTL 300, 4 bytes of address.
            out.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 1, 0x2c, 0, 4]);
            out.extend_from_slice(&ip.octets());
        }
    }
}

/// The wire name as dotted text (`example.com`; the root is `.`) in `buf`. The dotted form
/// is shorter than the wire form, which `parse` bounded to 255 bytes.
fn dotted_name<'b>(buf: &'b mut [u8; MAX_NAME + 1], mut name: &[u8]) -> &'b [u8] {
    let mut n = 0;
    while let Some((&len, rest)) = name.split_first() {
        let len = usize::from(len);
        let Some(label) = rest.get(..len) else { break };
        if len == 0 || n + 1 + len > buf.len() {
            break;
        }
        if n > 0 {
            buf[n] = b'.';
            n += 1;
        }
        buf[n..n + len].copy_from_slice(label);
        n += len;
        name = &rest[len..];
    }
    if n == 0 {
        buf[0] = b'.';
        n = 1;
    }
    &buf[..n]
}

fn type_name(t: u16) -> Option<&'static str> {
    Some(match t {
        1 => "A",
        2 => "NS",
        5 => "CNAME",
        6 => "SOA",
        12 => "PTR",
        15 => "MX",
        16 => "TXT",
        28 => "AAAA",
        33 => "SRV",
        35 => "NAPTR",
        43 => "DS",
        48 => "DNSKEY",
        64 => "SVCB",
        65 => "HTTPS",
        252 => "AXFR",
        255 => "ANY",
        _ => return None,
    })
}

fn class_name(c: u16) -> Option<&'static str> {
    Some(match c {
        1 => "IN",
        3 => "CH",
        4 => "HS",
        255 => "ANY",
        _ => return None,
    })
}

impl TurnFields for DnsQuery<'_> {
    fn protocol(&self) -> Option<&'static str> {
        Some(Self::NAME)
    }

    fn write_ecs(&self, w: &mut JsonWriter<'_>) {
        let mut text = [0u8; 8];
        w.begin_object("dns");
        w.str("type", b"query");
        w.str("id", number(&mut text, self.id));
        w.begin_object("question");
        let mut dotted = [0u8; MAX_NAME + 1];
        w.str("name", dotted_name(&mut dotted, self.name));
        match type_name(self.qtype) {
            Some(t) => w.str("type", t.as_bytes()),
            None => w.str("type", number(&mut text, self.qtype)),
        }
        match class_name(self.qclass) {
            Some(c) => w.str("class", c.as_bytes()),
            None => w.str("class", number(&mut text, self.qclass)),
        }
        w.end_object();
        w.end_object();
    }
}

/// `v` in decimal, in `buf`.
fn number(buf: &mut [u8; 8], v: u16) -> &[u8] {
    let mut n = buf.len();
    let mut v = v;
    loop {
        n -= 1;
        buf[n] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    &buf[n..]
}
