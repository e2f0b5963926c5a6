//! SNMP v1/v2c requests (RFC 1157, RFC 3416): the community string, the PDU type and the
//! requested OIDs are recorded. A get/get-next/get-bulk gets a get-response of the same size:
//! the request with its PDU tag changed and each value saying "no such object" (v2c) or
//! `noSuchName` (v1); the community was accepted, so the client goes on. Anything else gets
//! nothing.

use super::{DatagramContext, DatagramResponder};
use crate::json::JsonWriter;
use crate::protocols::TurnFields;

/// OIDs written to a record at most.
const MAX_OIDS: usize = 16;

const PDU_GET: u8 = 0xa0;
const PDU_GET_NEXT: u8 = 0xa1;
const PDU_RESPONSE: u8 = 0xa2;
const PDU_SET: u8 = 0xa3;
const PDU_GET_BULK: u8 = 0xa5;

/// One BER element: its tag, where its content starts and its content.
#[derive(Clone, Copy)]
struct Tlv<'a> {
    tag: u8,
    start: usize,
    content: &'a [u8],
}

/// Reads the element at `at` of `b` (definite lengths up to 2 length bytes).
fn tlv(b: &[u8], at: usize) -> Option<(Tlv<'_>, usize)> {
    let tag = *b.get(at)?;
    let first = *b.get(at + 1)?;
    let (len, start) = match first {
        0..=0x7f => (usize::from(first), at + 2),
        0x81 => (usize::from(*b.get(at + 2)?), at + 3),
        0x82 => (usize::from(u16::from_be_bytes([*b.get(at + 2)?, *b.get(at + 3)?])), at + 4),
        _ => return None,
    };
    let content = b.get(start..start.checked_add(len)?)?;
    Some((Tlv { tag, start, content }, start + len))
}

/// A v1/v2c message.
pub struct SnmpMessage<'a> {
    /// 0 = v1, 1 = v2c.
    version: u8,
    community: &'a [u8],
    pdu: u8,
    /// The variable bindings' content (a sequence of sequences).
    bindings: &'a [u8],
    /// The whole datagram (what a reply rewrites).
    message: &'a [u8],
    /// Offsets in `message`: the PDU tag, and error-status/error-index contents.
    pdu_at: usize,
    error_status: Tlv<'a>,
    error_index: Tlv<'a>,
    bindings_at: usize,
}

impl<'a> DatagramResponder<'a> for SnmpMessage<'a> {
    const NAME: &'static str = "snmp";

    fn parse(_port: u16, d: &'a [u8]) -> Option<Self> {
        let (outer, end) = tlv(d, 0)?;
        if outer.tag != 0x30 || end != d.len() {
            return None;
        }
        let (version, at) = tlv(d, outer.start)?;
        let (community, at) = tlv(d, at)?;
        if version.tag != 0x02 || version.content.len() != 1 || community.tag != 0x04 {
            return None;
        }
        let v = version.content[0];
        if v > 1 {
            return None;
        }
        let (pdu, _) = tlv(d, at)?;
        if !(0xa0..=0xa7).contains(&pdu.tag) {
            return None;
        }
        let (_request_id, p) = tlv(d, pdu.start)?;
        let (error_status, p) = tlv(d, p)?;
        let (error_index, p) = tlv(d, p)?;
        let (bindings, _) = tlv(d, p)?;
        if bindings.tag != 0x30 {
            return None;
        }
        Some(SnmpMessage {
            version: v,
            community: community.content,
            pdu: pdu.tag,
            bindings: bindings.content,
            message: d,
            pdu_at: at,
            error_status,
            error_index,
            bindings_at: bindings.start,
        })
    }

    fn reply(&self, _ctx: &DatagramContext, out: &mut Vec<u8>) {
        if !matches!(self.pdu, PDU_GET | PDU_GET_NEXT | PDU_GET_BULK) {
            return;
        }
        out.extend_from_slice(self.message);
        out[self.pdu_at] = PDU_RESPONSE;
        // error-status and error-index (get-bulk's non-repeaters and max-repetitions).
        let (status, index) = if self.version == 0 { (2, 1) } else { (0, 0) };
        for (field, value) in [(self.error_status, status), (self.error_index, index)] {
            let range = field.start..field.start + field.content.len();
            if let Some(bytes) = out.get_mut(range) {
                bytes.fill(0);
                if let Some(last) = bytes.last_mut() {
                    *last = value;
                }
            }
        }
        if self.version == 0 {
            return; // v1: the bindings go back unchanged with noSuchName
        }
        // v2c: each NULL value becomes noSuchObject (get) or endOfMibView (next/bulk).
        let exception = if self.pdu == PDU_GET { 0x80 } else { 0x82 };
        let mut at = 0;
        while let Some((binding, next)) = tlv(self.bindings, at) {
            if let Some((_oid, v)) = tlv(self.bindings, binding.start) {
                if self.bindings.get(v..v + 2) == Some(&[0x05, 0x00]) {
                    out[self.bindings_at + v] = exception;
                }
            }
            at = next;
        }
    }
}

/// Writes an OID's content in dotted form into `out`.
fn write_oid(out: &mut Vec<u8>, oid: &[u8]) {
    let mut first = true;
    let mut value: u64 = 0;
    for &b in oid {
        value = (value << 7) | u64::from(b & 0x7f);
        if b & 0x80 != 0 {
            if value > u64::MAX >> 7 {
                return; // an arc too long to mean anything
            }
            continue;
        }
        if first {
            let (x, y) = match value {
                0..40 => (0, value),
                40..80 => (1, value - 40),
                _ => (2, value - 80),
            };
            crate::json::write_u64(out, x);
            out.push(b'.');
            crate::json::write_u64(out, y);
            first = false;
        } else {
            out.push(b'.');
            crate::json::write_u64(out, value);
        }
        value = 0;
    }
}

fn pdu_name(tag: u8) -> &'static str {
    match tag {
        PDU_GET => "get-request",
        PDU_GET_NEXT => "get-next-request",
        PDU_RESPONSE => "get-response",
        PDU_SET => "set-request",
        0xa4 => "trap",
        PDU_GET_BULK => "get-bulk-request",
        0xa6 => "inform-request",
        _ => "snmpv2-trap",
    }
}

impl TurnFields for SnmpMessage<'_> {
    fn protocol(&self) -> Option<&'static str> {
        Some(Self::NAME)
    }

    fn write_spip(&self, w: &mut JsonWriter<'_>) {
        w.begin_object("snmp");
        w.str("version", if self.version == 0 { b"1" } else { b"2c" });
        w.str("community", self.community);
        w.str("pdu_type", pdu_name(self.pdu).as_bytes());
        w.key_only("oids");
        let out = w.buf();
        out.push(b'[');
        let mut at = 0;
        let mut n = 0;
        while let Some((binding, next)) = tlv(self.bindings, at) {
            if n == MAX_OIDS {
                break;
            }
            if let Some((oid, _)) = tlv(self.bindings, binding.start).filter(|(o, _)| o.tag == 0x06)
            {
                if n > 0 {
                    out.push(b',');
                }
                out.push(b'"');
                write_oid(out, oid.content);
                out.push(b'"');
                n += 1;
            }
            at = next;
        }
        out.push(b']');
        w.end_object();
    }
}
