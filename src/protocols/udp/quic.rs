//! QUIC v1 client Initial packets (RFC 9000 §17.2.2): decrypted with the initial keys
//! (RFC 9001 §5, from rustls) to fingerprint the TLS ClientHello inside (JA4 with the `q`
//! prefix). Never answered: a server's Initial is larger than what provoked it.
//!
//! The ClientHello is reassembled from the CRYPTO frames of the datagram's first packet, which
//! clients split and reorder. Browsers with post-quantum key shares spread it over two
//! datagrams: the caller keeps a [`HelloReassembly`] per flow and hands it to
//! [`QuicInitial::parse_with`]; until the hello is whole, the record says `spip.quic.partial`.

use super::DatagramResponder;
use crate::fingerprint::ja4::{Ja4, ja4};
use crate::json::JsonWriter;
use crate::proto::tls::ClientHello;
use crate::protocols::TurnFields;
use rustls::Side;
use rustls::quic::{Keys, Version};

const VERSION_1: u32 = 1;
/// Clients pad Initial datagrams to at least 1200 bytes (RFC 9000 §14.1).
const MIN_INITIAL: usize = 1200;
/// Longest packet we decrypt (one copy on the stack).
const MAX_PACKET: usize = 2048;
/// Longest ClientHello reassembled.
const MAX_HELLO: usize = 4096;
/// Longest server name kept.
const MAX_SNI: usize = 255;
/// AEAD tag length (AES-128-GCM).
const TAG: usize = 16;

/// A client Initial and what its ClientHello says.
pub struct QuicInitial<'a> {
    dcid: &'a [u8],
    hello: Option<Hello>,
}

/// Facts of the decrypted ClientHello (copied: the plaintext lives on the stack of `parse`).
struct Hello {
    ja4: Ja4,
    sni: [u8; MAX_SNI],
    sni_len: usize,
}

/// A QUIC variable-length integer at `*at`, advancing it.
fn varint(b: &[u8], at: &mut usize) -> Option<u64> {
    let first = *b.get(*at)?;
    let len = 1usize << (first >> 6);
    let bytes = b.get(*at..*at + len)?;
    let mut v = u64::from(first & 0x3f);
    for &x in &bytes[1..] {
        v = (v << 8) | u64::from(x);
    }
    *at += len;
    Some(v)
}

impl<'a> DatagramResponder<'a> for QuicInitial<'a> {
    const NAME: &'static str = "quic";

    fn parse(_port: u16, d: &'a [u8]) -> Option<Self> {
        let mut reassembly = HelloReassembly::new();
        QuicInitial::parse_with(d, &mut reassembly).map(|(q, _)| q)
    }
}

/// What decrypting an Initial added to a [`HelloReassembly`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// The ClientHello is whole (and fingerprinted).
    Complete,
    /// Decrypted, but the ClientHello is not whole yet: keep the reassembly for the next
    /// datagram of the flow.
    Partial,
    /// The packet did not decrypt (not a client Initial for these keys, or damaged).
    Undecrypted,
}

impl<'a> QuicInitial<'a> {
    /// Whether `d` looks like a QUIC v1 client Initial (a few byte checks, no decryption).
    pub fn looks_like(d: &[u8]) -> bool {
        d.len() >= MIN_INITIAL
            && d.first().is_some_and(|b| b & 0xf0 == 0xc0)
            && d.get(1..5) == Some(&VERSION_1.to_be_bytes()[..])
            && d.get(5).is_some_and(|&n| n <= 20)
    }

    /// Parses a client Initial, adding its CRYPTO frames to `reassembly` (which may hold
    /// earlier datagrams' frames of the same flow).
    pub fn parse_with(d: &'a [u8], reassembly: &mut HelloReassembly) -> Option<(Self, Progress)> {
        if !Self::looks_like(d) {
            return None;
        }
        let dcid = d.get(6..6 + usize::from(*d.get(5)?))?;
        let (hello, progress) = match decrypt_into(d, dcid, reassembly) {
            None => (None, Progress::Undecrypted),
            Some(()) => match reassembly.hello() {
                Some(h) => (Some(h), Progress::Complete),
                None => (None, Progress::Partial),
            },
        };
        Some((QuicInitial { dcid, hello }, progress))
    }
}

/// Removes the protection of the first packet of `d` and adds its CRYPTO frames.
fn decrypt_into(d: &[u8], dcid: &[u8], reassembly: &mut HelloReassembly) -> Option<()> {
    let mut at = 6 + dcid.len();
    let scid_len = usize::from(*d.get(at)?);
    at += 1 + scid_len;
    let token_len = usize::try_from(varint(d, &mut at)?).ok()?;
    at = at.checked_add(token_len)?;
    let length = usize::try_from(varint(d, &mut at)?).ok()?;
    let pn_at = at;
    let end = pn_at.checked_add(length)?;
    if end > d.len() || end > MAX_PACKET || length < 4 + TAG {
        return None;
    }
    let mut packet = [0u8; MAX_PACKET];
    let packet = &mut packet[..end];
    packet.copy_from_slice(&d[..end]);

    let suite = rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256.tls13()?;
    let keys = Keys::initial(Version::V1, suite, suite.quic?, dcid, Side::Server);
    let remote = &keys.remote;
    // Header protection: the sample starts 4 bytes after the packet number's start.
    let (head, rest) = packet.split_at_mut(pn_at);
    let sample: [u8; 16] = rest.get(4..4 + remote.header.sample_len())?.try_into().ok()?;
    let (first, _) = head.split_first_mut()?;
    remote
        .header
        .decrypt_in_place(&sample, first, rest.get_mut(..4)?)
        .ok()?;
    let pn_len = usize::from(packet[0] & 3) + 1;
    let pn = packet[pn_at..pn_at + pn_len]
        .iter()
        .fold(0u64, |n, &b| (n << 8) | u64::from(b));
    let (header, payload) = packet.split_at_mut(pn_at + pn_len);
    let plain = remote.packet.decrypt_in_place(pn, header, payload).ok()?;
    reassembly.add_frames(plain);
    Some(())
}

/// CRYPTO stream bytes at offsets below [`MAX_HELLO`], with which of them arrived.
pub struct HelloReassembly {
    buf: [u8; MAX_HELLO],
    have: [u64; MAX_HELLO / 64],
}

impl Default for HelloReassembly {
    fn default() -> Self {
        Self::new()
    }
}

impl HelloReassembly {
    pub fn new() -> Self {
        HelloReassembly {
            buf: [0; MAX_HELLO],
            have: [0; MAX_HELLO / 64],
        }
    }

    /// Adds the CRYPTO frames of a decrypted Initial payload (split and out of order).
    fn add_frames(&mut self, plain: &[u8]) {
        let mut at = 0;
        while at < plain.len() {
            let Some(kind) = varint(plain, &mut at) else {
                return;
            };
            match kind {
                0x00 | 0x01 => {} // PADDING, PING
                0x06 => {
                    let (Some(offset), Some(len)) = (varint(plain, &mut at), varint(plain, &mut at))
                    else {
                        return;
                    };
                    let (Ok(offset), Ok(len)) = (usize::try_from(offset), usize::try_from(len))
                    else {
                        return;
                    };
                    let Some(data) = at.checked_add(len).and_then(|e| plain.get(at..e)) else {
                        return;
                    };
                    at += len;
                    self.add(offset, data);
                }
                // ACK, CONNECTION_CLOSE or anything else: nothing more we use.
                _ => return,
            }
        }
    }

    fn add(&mut self, offset: usize, data: &[u8]) {
        let Some(end) = offset.checked_add(data.len()).filter(|&e| e <= MAX_HELLO) else {
            return; // beyond what we keep
        };
        self.buf[offset..end].copy_from_slice(data);
        for i in offset..end {
            self.have[i / 64] |= 1 << (i % 64);
        }
    }

    fn covered(&self, upto: usize) -> bool {
        (0..upto).all(|i| self.have[i / 64] & (1 << (i % 64)) != 0)
    }

    /// The fingerprinted ClientHello, once it is whole.
    fn hello(&self) -> Option<Hello> {
        if !self.covered(4) {
            return None;
        }
        let b = &self.buf;
        let msg_len = 4 + (usize::from(b[1]) << 16 | usize::from(b[2]) << 8 | usize::from(b[3]));
        if msg_len > MAX_HELLO || !self.covered(msg_len) {
            return None;
        }
        let h = ClientHello::parse(&b[..msg_len]).ok()?;
        let mut sni = [0u8; MAX_SNI];
        let name = h.server_name().unwrap_or(&[]);
        let sni_len = name.len().min(MAX_SNI);
        sni[..sni_len].copy_from_slice(&name[..sni_len]);
        Some(Hello {
            ja4: ja4(&h).for_quic(),
            sni,
            sni_len,
        })
    }
}

impl TurnFields for QuicInitial<'_> {
    fn protocol(&self) -> Option<&'static str> {
        Some(Self::NAME)
    }

    fn write_ecs(&self, w: &mut JsonWriter<'_>) {
        if let Some(h) = &self.hello {
            w.begin_object("tls");
            w.begin_object("client");
            if h.sni_len > 0 {
                w.str("server_name", &h.sni[..h.sni_len]);
            }
            w.begin_object("hash");
            w.str("ja4", h.ja4.as_bytes());
            w.end_object();
            w.end_object();
            w.end_object();
        }
    }

    fn write_spip(&self, w: &mut JsonWriter<'_>) {
        w.begin_object("quic");
        w.u64("version", u64::from(VERSION_1));
        w.hex("dcid", self.dcid);
        if self.hello.is_none() {
            w.bool("partial", true);
        }
        w.end_object();
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const RFC_HEX: &str = include_str!("../../../tests/data/udp/rfc9001_a2_client_initial.hex");

    fn unhex(h: &str) -> Vec<u8> {
        crate::inspect::decode_hex(h).expect("test hex")
    }

    /// A client Initial carrying `frames`, padded to 1200 bytes, protected as a client does.
    pub(crate) fn client_initial(dcid: &[u8], pn: u32, frames: &[u8]) -> Vec<u8> {
        let suite = rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256
            .tls13()
            .unwrap();
        let keys = Keys::initial(Version::V1, suite, suite.quic.unwrap(), dcid, Side::Client);
        let mut header = vec![0xc3];
        header.extend_from_slice(&VERSION_1.to_be_bytes());
        header.push(dcid.len() as u8);
        header.extend_from_slice(dcid);
        header.extend_from_slice(&[0, 0]); // no SCID, no token
        let mut payload = frames.to_vec();
        let pad = 1200usize.saturating_sub(header.len() + 2 + 4 + payload.len() + TAG);
        payload.resize(payload.len() + pad, 0);
        let length = (4 + payload.len() + TAG) as u16;
        header.extend_from_slice(&(0x4000 | length).to_be_bytes());
        let pn_at = header.len();
        header.extend_from_slice(&pn.to_be_bytes());
        let tag = keys
            .local
            .packet
            .encrypt_in_place(u64::from(pn), &header, &mut payload)
            .unwrap();
        let mut packet = header;
        packet.extend_from_slice(&payload);
        packet.extend_from_slice(tag.as_ref());
        let sample: [u8; 16] = packet[pn_at + 4..pn_at + 20].try_into().unwrap();
        let (head, rest) = packet.split_at_mut(pn_at);
        keys.local
            .header
            .encrypt_in_place(&sample, &mut head[0], &mut rest[..4])
            .unwrap();
        packet
    }

    pub(crate) fn crypto_frame(offset: usize, data: &[u8]) -> Vec<u8> {
        let mut f = vec![0x06];
        f.extend_from_slice(&(0x4000 | offset as u16).to_be_bytes());
        f.extend_from_slice(&(0x4000 | data.len() as u16).to_be_bytes());
        f.extend_from_slice(data);
        f
    }

    /// The RFC 9001 ClientHello, taken out of its vector packet, and its JA4.
    pub(crate) fn rfc_hello() -> (Vec<u8>, Ja4) {
        let rfc = unhex(RFC_HEX);
        let mut r = HelloReassembly::new();
        let (q, progress) = QuicInitial::parse_with(&rfc, &mut r).unwrap();
        assert_eq!(progress, Progress::Complete);
        let len = 4 + (usize::from(r.buf[2]) << 8 | usize::from(r.buf[3]));
        (r.buf[..len].to_vec(), q.hello.unwrap().ja4)
    }

    #[test]
    fn a_hello_split_over_two_datagrams_is_fingerprinted_from_both() {
        let (hello, want) = rfc_hello();

        // Second part first (as Chrome reorders), a PING after it; then the first part.
        let dcid = [0x11u8; 8];
        let mut frames = crypto_frame(100, &hello[100..]);
        frames.push(0x01);
        let first = client_initial(&dcid, 0, &frames);
        let second = client_initial(&dcid, 1, &crypto_frame(0, &hello[..100]));
        let mut pending = HelloReassembly::new();
        let (q1, p1) = QuicInitial::parse_with(&first, &mut pending).unwrap();
        assert_eq!(p1, Progress::Partial);
        assert!(q1.hello.is_none());
        let (q2, p2) = QuicInitial::parse_with(&second, &mut pending).unwrap();
        assert_eq!(p2, Progress::Complete);
        assert_eq!(q2.hello.unwrap().ja4, want);
        assert_eq!(want.as_str(), "q13d0211an_62ed6f6ca7ad_4d634acda6c0");

        // Alone, the second datagram is partial too.
        let (_, alone) = QuicInitial::parse_with(&second, &mut HelloReassembly::new()).unwrap();
        assert_eq!(alone, Progress::Partial);
    }
}
