//! QUIC v1 client Initial packets (RFC 9000 §17.2.2): decrypted with the initial keys
//! (RFC 9001 §5, from rustls) to fingerprint the TLS ClientHello inside (JA4 with the `q`
//! prefix). Never answered: a server's Initial is larger than what provoked it.
//!
//! The ClientHello is reassembled from the CRYPTO frames of the datagram's first packet, which
//! clients split and reorder; a ClientHello spread over several datagrams is recorded without
//! a fingerprint (`spip.quic.partial`).

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
        // Long header, fixed bit, type Initial (00), version 1.
        if d.len() < MIN_INITIAL || d.first()? & 0xf0 != 0xc0 {
            return None;
        }
        if u32::from_be_bytes(d.get(1..5)?.try_into().ok()?) != VERSION_1 {
            return None;
        }
        let dcid_len = usize::from(*d.get(5)?);
        if dcid_len > 20 {
            return None;
        }
        let dcid = d.get(6..6 + dcid_len)?;
        Some(QuicInitial {
            dcid,
            hello: decrypt_hello(d, dcid),
        })
    }
}

/// Removes the protection of the first packet of `d` and fingerprints its ClientHello.
fn decrypt_hello(d: &[u8], dcid: &[u8]) -> Option<Hello> {
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
    hello_from_frames(plain)
}

/// Reassembles the CRYPTO frames at offsets below [`MAX_HELLO`] and fingerprints the
/// ClientHello they hold.
fn hello_from_frames(plain: &[u8]) -> Option<Hello> {
    let mut hello = [0u8; MAX_HELLO];
    let mut have = [0u64; MAX_HELLO / 64];
    let mut at = 0;
    while at < plain.len() {
        match varint(plain, &mut at)? {
            0x00 | 0x01 => {} // PADDING, PING
            0x02 | 0x03 => return None, // ACK: not in a client's first Initial
            0x06 => {
                let offset = usize::try_from(varint(plain, &mut at)?).ok()?;
                let len = usize::try_from(varint(plain, &mut at)?).ok()?;
                let data = plain.get(at..at.checked_add(len)?)?;
                at += len;
                let Some(dst) = hello.get_mut(offset..offset.checked_add(len)?) else {
                    continue; // beyond what we keep
                };
                dst.copy_from_slice(data);
                for i in offset..offset + len {
                    have[i / 64] |= 1 << (i % 64);
                }
            }
            _ => break, // CONNECTION_CLOSE or anything else ends what we read
        }
    }
    let covered = |upto: usize| (0..upto).all(|i| have[i / 64] & (1 << (i % 64)) != 0);
    if !covered(4) {
        return None;
    }
    let msg_len = 4 + (usize::from(hello[1]) << 16 | usize::from(hello[2]) << 8 | usize::from(hello[3]));
    if msg_len > MAX_HELLO || !covered(msg_len) {
        return None;
    }
    let h = ClientHello::parse(&hello[..msg_len]).ok()?;
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
