//! NTP client requests (mode 3, RFC 5905): 48 bytes in, a 48-byte server reply out. Control
//! and private modes (6, 7: `monlist`) are never answered (see [`super::Never`]).

use super::{DatagramContext, DatagramResponder};
use crate::json::JsonWriter;
use crate::protocols::TurnFields;
use std::time::UNIX_EPOCH;

const PACKET: usize = 48;
/// Seconds from 1900 (NTP era 0) to 1970.
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// A mode 3 request.
pub struct NtpRequest<'a> {
    version: u8,
    poll: u8,
    /// The client's transmit timestamp (the reply's origin timestamp).
    transmit: &'a [u8],
}

impl<'a> DatagramResponder<'a> for NtpRequest<'a> {
    const NAME: &'static str = "ntp";

    fn parse(port: u16, d: &'a [u8]) -> Option<Self> {
        let first = *d.first()?;
        let version = (first >> 3) & 7;
        // Mode 3, versions 1-4, the fixed header whole. Off port 123 only an exact 48-byte
        // packet counts.
        if first & 7 != 3 || !(1..=4).contains(&version) || d.len() < PACKET {
            return None;
        }
        if port != 123 && d.len() != PACKET {
            return None;
        }
        Some(NtpRequest {
            version,
            poll: *d.get(2)?,
            transmit: d.get(40..48)?,
        })
    }

    fn reply(&self, ctx: &DatagramContext, out: &mut Vec<u8>) {
        let now = ctx.now.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = (now.as_secs() + NTP_UNIX_OFFSET) as u32;
        let frac = ((u64::from(now.subsec_nanos()) << 32) / 1_000_000_000) as u32;
        let mut ts = [0u8; 8];
        ts[..4].copy_from_slice(&secs.to_be_bytes());
        ts[4..].copy_from_slice(&frac.to_be_bytes());
        // LI 0, the client's version, mode 4 (server); stratum 2; its poll; precision 2^-23.
        out.extend_from_slice(&[self.version << 3 | 4, 2, self.poll, 0xe9]);
        out.extend_from_slice(&[0, 0, 0x02, 0x10]); // root delay
        out.extend_from_slice(&[0, 0, 0x04, 0x20]); // root dispersion
        out.extend_from_slice(&[0xc0, 0x00, 0x02, 0x01]); // reference id: an upstream's address
        out.extend_from_slice(&[ts[0], ts[1], ts[2], ts[3].wrapping_sub(16), 0, 0, 0, 0]);
        out.extend_from_slice(self.transmit); // origin
        out.extend_from_slice(&ts); // receive
        out.extend_from_slice(&ts); // transmit
    }
}

impl TurnFields for NtpRequest<'_> {
    fn protocol(&self) -> Option<&'static str> {
        Some(Self::NAME)
    }

    fn write_spip(&self, w: &mut JsonWriter<'_>) {
        w.begin_object("ntp");
        w.u64("version", u64::from(self.version));
        w.u64("mode", 3);
        w.end_object();
    }
}
