//! Community ID v1 (corelight/community-id-spec), see `shared/FINGERPRINTS.md` §1.
//!
//! ```text
//! sha1( seed(2 BE) . saddr . daddr . proto . 0x00 [ . sport(2 BE) . dport(2 BE) ] )
//! id = "1:" + base64(digest)
//! ```
//!
//! The endpoints are ordered (smaller address first, then smaller port) unless the flow is a
//! one-way ICMP/ICMPv6 message. ICMP types with a request/response counterpart use
//! (type, counterpart type) as the port pair; other ICMP types use (type, code) and are one-way.
//! Protocols other than TCP, UDP, SCTP, ICMP and ICMPv6 hash without ports.
//!
//! Everything is computed on the stack: no heap allocation.

use sha1::{Digest, Sha1};
use std::net::IpAddr;

/// IP protocol numbers that carry the 4 port bytes in the hash input.
const PROTO_ICMP: u8 = 1;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
const PROTO_ICMP6: u8 = 58;
const PROTO_SCTP: u8 = 132;

/// A fixed-length ASCII identifier held on the stack.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct AsciiId<const N: usize> {
    buf: [u8; N],
}

impl<const N: usize> AsciiId<N> {
    /// The ID as text, e.g. `1:wCb3OG7yAFWelaUydu0D+125CLM=`.
    pub fn as_str(&self) -> &str {
        // The buffer only ever holds "1:" and base64 or hex alphabet bytes (ASCII).
        std::str::from_utf8(&self.buf).unwrap_or("") // ok: always ASCII
    }

    /// The ID as bytes (ASCII).
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }
}

impl<const N: usize> std::fmt::Display for AsciiId<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<const N: usize> std::fmt::Debug for AsciiId<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CommunityId({})", self.as_str())
    }
}

/// A Community ID v1 in its default form: `"1:"` + 28 base64 characters.
pub type CommunityId = AsciiId<30>;

/// A Community ID v1 in the troubleshooting hex form: `"1:"` + 40 lowercase hex characters.
pub type CommunityIdHex = AsciiId<42>;

/// Community ID v1, base64 form (the default).
pub fn community_id_v1(
    seed: u16,
    src: IpAddr,
    sport: u16,
    dst: IpAddr,
    dport: u16,
    proto: u8,
) -> CommunityId {
    let digest = community_id_v1_digest(seed, src, sport, dst, dport, proto);
    let mut buf = [0u8; 30];
    buf[0] = b'1';
    buf[1] = b':';
    base64_20(&digest, &mut buf[2..]);
    AsciiId { buf }
}

/// Community ID v1, hex form (the spec's "base64 disabled" option).
pub fn community_id_v1_hex(
    seed: u16,
    src: IpAddr,
    sport: u16,
    dst: IpAddr,
    dport: u16,
    proto: u8,
) -> CommunityIdHex {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = community_id_v1_digest(seed, src, sport, dst, dport, proto);
    let mut buf = [0u8; 42];
    buf[0] = b'1';
    buf[1] = b':';
    for (pair, b) in buf[2..].chunks_exact_mut(2).zip(digest) {
        pair[0] = HEX[usize::from(b >> 4)];
        pair[1] = HEX[usize::from(b & 0xf)];
    }
    AsciiId { buf }
}

/// Address bytes in network order, on the stack.
struct AddrBytes {
    buf: [u8; 16],
    len: usize,
}

impl AddrBytes {
    fn new(ip: IpAddr) -> Self {
        let mut buf = [0u8; 16];
        match ip {
            IpAddr::V4(v4) => {
                buf[..4].copy_from_slice(&v4.octets());
                AddrBytes { buf, len: 4 }
            }
            IpAddr::V6(v6) => {
                buf = v6.octets();
                AddrBytes { buf, len: 16 }
            }
        }
    }

    fn as_slice(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or(&[])
    }
}

/// ICMP (v4) request/response counterpart types (Zeek mapping).
fn icmp4_counterpart(t: u16) -> Option<u16> {
    Some(match t {
        8 => 0,
        0 => 8,
        13 => 14,
        14 => 13,
        15 => 16,
        16 => 15,
        10 => 9,
        9 => 10,
        17 => 18,
        18 => 17,
        _ => return None,
    })
}

/// ICMPv6 request/response counterpart types (Zeek mapping).
fn icmp6_counterpart(t: u16) -> Option<u16> {
    Some(match t {
        128 => 129,
        129 => 128,
        130 => 131,
        131 => 130,
        133 => 134,
        134 => 133,
        135 => 136,
        136 => 135,
        139 => 140,
        140 => 139,
        144 => 145,
        145 => 144,
        _ => return None,
    })
}

/// The raw SHA-1 digest behind a Community ID v1.
///
/// For ICMP/ICMPv6, `sport` is the ICMP type and `dport` the ICMP code.
pub fn community_id_v1_digest(
    seed: u16,
    src: IpAddr,
    sport: u16,
    dst: IpAddr,
    dport: u16,
    proto: u8,
) -> [u8; 20] {
    let (mut sport, mut dport) = (sport, dport);
    let mut one_way = false;
    let counterpart = match proto {
        PROTO_ICMP => Some(icmp4_counterpart(sport)),
        PROTO_ICMP6 => Some(icmp6_counterpart(sport)),
        _ => None,
    };
    if let Some(c) = counterpart {
        match c {
            Some(other) => dport = other,
            None => one_way = true,
        }
    }
    let has_ports = matches!(
        proto,
        PROTO_TCP | PROTO_UDP | PROTO_SCTP | PROTO_ICMP | PROTO_ICMP6
    );

    let mut a = AddrBytes::new(src);
    let mut b = AddrBytes::new(dst);
    let keep = one_way || (a.as_slice(), sport) < (b.as_slice(), dport);
    if !keep {
        std::mem::swap(&mut a, &mut b);
        std::mem::swap(&mut sport, &mut dport);
    }

    let mut h = Sha1::new();
    h.update(seed.to_be_bytes());
    h.update(a.as_slice());
    h.update(b.as_slice());
    h.update([proto, 0]);
    if has_ports {
        h.update(sport.to_be_bytes());
        h.update(dport.to_be_bytes());
    }
    let mut out = [0u8; 20];
    out.copy_from_slice(h.finalize().as_slice());
    out
}

/// Standard base64 (with `=` padding) of a 20-byte digest into exactly 28 bytes.
fn base64_20(input: &[u8; 20], out: &mut [u8]) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut o = out.iter_mut();
    let mut put = |v: u32| {
        if let Some(slot) = o.next() {
            *slot = ALPHABET[(v & 0x3f) as usize];
        }
    };
    // 20 bytes = 6 full groups of 3 + 2 remaining bytes.
    let mut chunks = input.chunks_exact(3);
    for c in &mut chunks {
        let n = (u32::from(c[0]) << 16) | (u32::from(c[1]) << 8) | u32::from(c[2]);
        put(n >> 18);
        put(n >> 12);
        put(n >> 6);
        put(n);
    }
    let rem = chunks.remainder();
    let n = (u32::from(rem.first().copied().unwrap_or(0)) << 16)
        | (u32::from(rem.get(1).copied().unwrap_or(0)) << 8);
    put(n >> 18);
    put(n >> 12);
    put(n >> 6);
    if let Some(last) = out.get_mut(27) {
        *last = b'=';
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn spec_example() {
        let id = community_id_v1(0, ip("10.0.0.1"), 10, ip("10.0.0.2"), 20, 6);
        assert_eq!(id.as_str(), "1:9j2Dzwrw7T9E+IZi4b4IVT66HBI=");
    }

    #[test]
    fn vector_file() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/vectors/community_id_vectors.json"
        );
        let text =
            std::fs::read_to_string(path).unwrap_or_else(|e| panic!("vector file {path}: {e}"));
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let mut n = 0;
        for row in v["vectors"].as_array().unwrap() {
            let proto = row["proto"].as_u64().unwrap() as u8;
            let s = ip(row["saddr"].as_str().unwrap());
            let d = ip(row["daddr"].as_str().unwrap());
            let sp = row["sport_or_icmp_type"].as_u64().unwrap_or(0) as u16;
            let dp = row["dport_or_icmp_code"].as_u64().unwrap_or(0) as u16;
            if let Some(e) = row["expected_seed0_base64"].as_str() {
                assert_eq!(community_id_v1(0, s, sp, d, dp, proto).as_str(), e, "{row}");
                n += 1;
            }
            if let Some(e) = row["expected_seed1_base64"].as_str() {
                assert_eq!(community_id_v1(1, s, sp, d, dp, proto).as_str(), e, "{row}");
                n += 1;
            }
            if let Some(e) = row["expected_seed0_hex"].as_str() {
                assert_eq!(
                    community_id_v1_hex(0, s, sp, d, dp, proto).as_str(),
                    e,
                    "{row}"
                );
                n += 1;
            }
        }
        assert!(n >= 35, "only {n} checks");
    }

    #[test]
    fn baselines() {
        for (file, seed, hex) in [
            ("baseline_deflt.json", 0u16, false),
            ("baseline_seed1.json", 1, false),
            ("baseline_nob64.json", 0, true),
        ] {
            let path = format!(
                "{}/tests/data/vectors/community-id-spec/{file}",
                env!("CARGO_MANIFEST_DIR")
            );
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("vector file {path}: {e}"));
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            for row in v.as_array().unwrap() {
                let proto = row["proto"].as_u64().unwrap() as u8;
                let s = ip(row["saddr"].as_str().unwrap());
                let d = ip(row["daddr"].as_str().unwrap());
                let sp = row["sport"].as_u64().unwrap_or(0) as u16;
                let dp = row["dport"].as_u64().unwrap_or(0) as u16;
                let e = row["communityid"].as_str().unwrap();
                if hex {
                    assert_eq!(community_id_v1_hex(seed, s, sp, d, dp, proto).as_str(), e);
                } else {
                    assert_eq!(community_id_v1(seed, s, sp, d, dp, proto).as_str(), e);
                }
            }
        }
    }

    #[test]
    fn ordering_is_symmetric() {
        let a = community_id_v1(7, ip("::1"), 5, ip("2001:db8::1"), 443, 6);
        let b = community_id_v1(7, ip("2001:db8::1"), 443, ip("::1"), 5, 6);
        assert_eq!(a, b);
        assert_eq!(a.as_bytes().len(), 30);
    }
}
