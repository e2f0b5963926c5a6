//! A client's SYN as the kernel saved it (`TCP_SAVED_SYN`): the IP header (IPv4, or IPv6 with
//! its extension headers) followed by the TCP header with its options, no payload.
//!
//! Zero-copy and allocation-free: [`parse`] walks the headers once, bounded by the bytes it
//! was given (never by a length field alone), and returns a small `Copy` value. The option
//! walk stops at the first option whose length is impossible and says so.

use super::reader::Reader;
use std::net::{IpAddr, SocketAddr};

/// TCP options fit in 40 bytes, so there are at most 40 option kinds.
pub const MAX_OPTION_KINDS: usize = 40;
/// IPv6 extension headers walked before giving up (a SYN has none or one in practice).
const MAX_EXTENSION_HEADERS: usize = 8;

const IPPROTO_TCP: u8 = 6;
const TCP_OPT_EOL: u8 = 0;
const TCP_OPT_NOP: u8 = 1;
const TCP_OPT_MSS: u8 = 2;
const TCP_OPT_WSCALE: u8 = 3;

/// TCP flag bits as in the header's 9-bit flags field (`AE` is the former NS bit).
pub const FLAG_SYN: u16 = 0x002;
pub const FLAG_ACK: u16 = 0x010;
pub const FLAG_ECE: u16 = 0x040;
pub const FLAG_CWR: u16 = 0x080;
pub const FLAG_AE: u16 = 0x100;

/// What a client's SYN says about its stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SynFacts {
    /// The client's address and port, as the SYN carried them (what accept(2) would say, so
    /// the socket layer need not ask the kernel again).
    pub source: SocketAddr,
    /// 4 or 6.
    pub ip_version: u8,
    /// IPv4 TTL or IPv6 hop limit, as received.
    pub ttl: u8,
    /// The IP header's ECN codepoint (0 = not ECN-capable; a SYN should carry 0).
    pub ip_ecn: u8,
    /// The 9 TCP flag bits (SYN, and ECE+CWR on an ECN-setup SYN, AE for AccECN).
    pub tcp_flags: u16,
    /// The raw (unscaled) window field.
    pub window: u16,
    pub options: TcpOptions,
}

impl SynFacts {
    /// An ECN-setup SYN (RFC 3168: ECE and CWR set).
    pub fn ecn_setup(&self) -> bool {
        self.tcp_flags & (FLAG_ECE | FLAG_CWR) == FLAG_ECE | FLAG_CWR
    }
}

/// The TCP options of a SYN: every kind in wire order, and the values fingerprints use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpOptions {
    kinds: [u8; MAX_OPTION_KINDS],
    len: u8,
    /// Maximum segment size (option 2; the last one wins if repeated).
    pub mss: Option<u16>,
    /// Window scale shift count (option 3; the last one wins if repeated).
    pub window_scale: Option<u8>,
    /// An option's length was impossible (below 2 or past the header); the walk stopped there.
    pub malformed: bool,
}

impl TcpOptions {
    /// Walks the option bytes of a TCP header. EOL and the zero padding after it are listed as
    /// kind 0 each (as JA4T lists them); the walk ends at the bytes' end or a malformed option.
    pub fn parse(bytes: &[u8]) -> TcpOptions {
        let mut opts = TcpOptions {
            kinds: [0; MAX_OPTION_KINDS],
            len: 0,
            mss: None,
            window_scale: None,
            malformed: false,
        };
        let mut r = Reader::new(bytes);
        while let Some(kind) = r.u8() {
            if usize::from(opts.len) == MAX_OPTION_KINDS {
                break; // only reachable with more than 40 option bytes (not from a header)
            }
            opts.kinds[usize::from(opts.len)] = kind;
            opts.len += 1;
            if kind == TCP_OPT_EOL || kind == TCP_OPT_NOP {
                continue;
            }
            let body = r
                .u8()
                .and_then(|len| usize::from(len).checked_sub(2))
                .and_then(|n| r.take(n));
            let Some(body) = body else {
                opts.malformed = true;
                break;
            };
            match (kind, body) {
                (TCP_OPT_MSS, &[hi, lo]) => opts.mss = Some(u16::from_be_bytes([hi, lo])),
                (TCP_OPT_WSCALE, &[shift]) => opts.window_scale = Some(shift),
                _ => {}
            }
        }
        opts
    }

    /// The option kinds in wire order.
    pub fn kinds(&self) -> &[u8] {
        &self.kinds[..usize::from(self.len)]
    }

    /// The kinds as decimal numbers joined by `-` (`2-1-3-1-1-4`); empty when there are none.
    pub fn kinds_text(&self) -> KindsText {
        let mut text = KindsText {
            buf: [0; KINDS_TEXT_MAX],
            len: 0,
        };
        for (i, &kind) in self.kinds().iter().enumerate() {
            if i > 0 {
                text.push(b'-');
            }
            text.push_decimal(u16::from(kind));
        }
        text
    }
}

/// Room for 40 kinds of up to 3 digits and their separators.
const KINDS_TEXT_MAX: usize = MAX_OPTION_KINDS * 4;

/// Option kinds as text, on the stack.
#[derive(Clone, Copy)]
pub struct KindsText {
    buf: [u8; KINDS_TEXT_MAX],
    len: usize,
}

impl KindsText {
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    fn push(&mut self, b: u8) {
        if let Some(slot) = self.buf.get_mut(self.len) {
            *slot = b;
            self.len += 1;
        }
    }

    fn push_decimal(&mut self, v: u16) {
        let mut digits = [0u8; 5];
        let mut n = 0;
        let mut rest = v;
        loop {
            digits[n] = b'0' + (rest % 10) as u8;
            n += 1;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        for &d in digits[..n].iter().rev() {
            self.push(d);
        }
    }
}

/// Why saved SYN bytes could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SynError {
    /// Shorter than the headers it announces.
    Truncated,
    /// The IP version nibble is neither 4 nor 6.
    NotIp(u8),
    /// The transport is not TCP (or IPv6 extension headers ran on too long).
    NotTcp(u8),
    /// A header length field below its minimum.
    BadHeaderLength,
}

/// Parses the IP and TCP headers of a saved SYN.
pub fn parse(bytes: &[u8]) -> Result<SynFacts, SynError> {
    let first = *bytes.first().ok_or(SynError::Truncated)?;
    let (ip_version, source_ip, ttl, ip_ecn, tcp) = match first >> 4 {
        4 => {
            let header_len = usize::from(first & 0x0f) * 4;
            if header_len < 20 {
                return Err(SynError::BadHeaderLength);
            }
            let header = bytes.get(..header_len).ok_or(SynError::Truncated)?;
            if header[9] != IPPROTO_TCP {
                return Err(SynError::NotTcp(header[9]));
            }
            let source = IpAddr::from([header[12], header[13], header[14], header[15]]);
            (4, source, header[8], header[1] & 0x03, &bytes[header_len..])
        }
        6 => {
            let header = bytes.get(..40).ok_or(SynError::Truncated)?;
            let traffic_class = (header[0] << 4) | (header[1] >> 4);
            let mut source = [0u8; 16];
            source.copy_from_slice(&header[8..24]);
            let tcp = skip_extension_headers(header[6], &bytes[40..])?;
            (
                6,
                IpAddr::from(source),
                header[7],
                traffic_class & 0x03,
                tcp,
            )
        }
        v => return Err(SynError::NotIp(v)),
    };
    let fixed = tcp.get(..20).ok_or(SynError::Truncated)?;
    let header_len = usize::from(fixed[12] >> 4) * 4;
    if header_len < 20 {
        return Err(SynError::BadHeaderLength);
    }
    let options = tcp.get(20..header_len).ok_or(SynError::Truncated)?;
    Ok(SynFacts {
        source: SocketAddr::new(source_ip, u16::from_be_bytes([fixed[0], fixed[1]])),
        ip_version,
        ttl,
        ip_ecn,
        tcp_flags: u16::from_be_bytes([fixed[12] & 0x01, fixed[13]]),
        window: u16::from_be_bytes([fixed[14], fixed[15]]),
        options: TcpOptions::parse(options),
    })
}

/// Skips IPv6 extension headers up to the TCP header.
fn skip_extension_headers(mut next: u8, mut rest: &[u8]) -> Result<&[u8], SynError> {
    for _ in 0..MAX_EXTENSION_HEADERS {
        let len = match next {
            IPPROTO_TCP => return Ok(rest),
            // Hop-by-hop, routing, destination options: 8-octet units after the first 8.
            0 | 43 | 60 => 8 + usize::from(*rest.get(1).ok_or(SynError::Truncated)?) * 8,
            // Fragment: fixed 8 bytes.
            44 => 8,
            // Authentication header: 4-octet units, minus 2.
            51 => (usize::from(*rest.get(1).ok_or(SynError::Truncated)?) + 2) * 4,
            other => return Err(SynError::NotTcp(other)),
        };
        next = *rest.first().ok_or(SynError::Truncated)?;
        rest = rest.get(len..).ok_or(SynError::Truncated)?;
    }
    Err(SynError::NotTcp(next))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        crate::inspect::decode_hex(s).expect("test hex")
    }

    /// SYNs captured with tcpdump in a network namespace (loopback, so MSS 65495 and 65476).
    const CURL_V4: &str = "4500 003c 26fd 4000 4006 15bd 7f00 0001 7f00 0001 a886 1f90 4f48 cb29
        0000 0000 a002 ffd7 fe30 0000 0204 ffd7 0402 080a 8594 a18d 0000 0000 0103 030a";
    const CURL_V6: &str = "600a b1d5 0028 0640 0000 0000 0000 0000 0000 0000 0000 0001
        0000 0000 0000 0000 0000 0000 0000 0001 be2e 1f90 f318 9917 0000 0000 a002 ffc4
        0030 0000 0204 ffc4 0402 080a 3f7d 497f 0000 0000 0103 030a";
    /// `hping3 -S -p 8080 -c 1`: no options.
    const HPING3: &str = "4500 0028 8cda 0000 4006 eff3 7f00 0001 7f00 0001 0870 1f90 2474 1b12
        1568 6173 5002 0200 d17e 0000";
    /// `hping3 -S --tcp-mss 1400 --tcp-timestamp`.
    const HPING3_OPTIONS: &str = "4500 0038 a078 0000 4006 dc45 7f00 0001 7f00 0001 0870 1f90
        2474 1b12 1568 6173 9002 0200 ad34 0000 0204 0578 0101 080a da8c f925 0000 0000";
    /// `nmap -sS`: window 1024, MSS 1460 only, a random TTL.
    const NMAP_SS: &str = "4500 002c a06e 0000 2c06 f05b 7f00 0001 7f00 0001 b94a 1f90 5233 0c7c
        0000 0000 6002 0400 5e9a 0000 0204 05b4";
    /// `nmap -sS --scanflags SYNECECWR`.
    const NMAP_SS_ECN: &str = "4500 002c 6475 0000 3306 2555 7f00 0001 7f00 0001 c07b 1f90
        87b3 e429 0000 0000 60c2 0400 497b 0000 0204 05b4";

    #[test]
    fn real_syns() {
        let curl = parse(&unhex(CURL_V4)).unwrap();
        assert_eq!(curl.source, "127.0.0.1:43142".parse().unwrap());
        assert_eq!((curl.ip_version, curl.ttl, curl.window), (4, 64, 65495));
        assert_eq!(curl.options.kinds(), &[2, 4, 8, 1, 3]);
        assert_eq!(
            (curl.options.mss, curl.options.window_scale),
            (Some(65495), Some(10))
        );
        assert_eq!(
            (curl.tcp_flags, curl.ecn_setup(), curl.ip_ecn),
            (FLAG_SYN, false, 0)
        );

        let curl6 = parse(&unhex(CURL_V6)).unwrap();
        assert_eq!(curl6.source, "[::1]:48686".parse().unwrap());
        assert_eq!((curl6.ip_version, curl6.ttl, curl6.window), (6, 64, 65476));
        assert_eq!(curl6.options.kinds_text().as_bytes(), b"2-4-8-1-3");
        assert_eq!(curl6.options.mss, Some(65476));

        let hping = parse(&unhex(HPING3)).unwrap();
        assert_eq!((hping.ttl, hping.window), (64, 512));
        assert!(hping.options.kinds().is_empty());
        assert_eq!(
            (hping.options.mss, hping.options.window_scale),
            (None, None)
        );

        let hping = parse(&unhex(HPING3_OPTIONS)).unwrap();
        assert_eq!(hping.options.kinds(), &[2, 1, 1, 8]);
        assert_eq!(hping.options.mss, Some(1400));

        let nmap = parse(&unhex(NMAP_SS)).unwrap();
        assert_eq!(
            (nmap.ttl, nmap.window, nmap.options.mss),
            (44, 1024, Some(1460))
        );
        assert_eq!(nmap.options.kinds(), &[2]);

        let ecn = parse(&unhex(NMAP_SS_ECN)).unwrap();
        assert_eq!(ecn.tcp_flags, FLAG_SYN | FLAG_ECE | FLAG_CWR);
        assert!(ecn.ecn_setup());
        assert_eq!(ecn.tcp_flags & (FLAG_ACK | FLAG_AE), 0);
    }

    #[cfg(feature = "ja4plus")]
    #[test]
    fn real_syns_ja4t() {
        use crate::fingerprint::ja4t::ja4t;
        let fp = |hex: &str| {
            let f = parse(&unhex(hex)).unwrap();
            ja4t(f.window, &f.options).as_str().to_string()
        };
        assert_eq!(fp(CURL_V4), "65495_2-4-8-1-3_65495_10");
        assert_eq!(fp(CURL_V6), "65476_2-4-8-1-3_65476_10");
        assert_eq!(fp(HPING3), "512_00_00_00");
        assert_eq!(fp(HPING3_OPTIONS), "512_2-1-1-8_1400_00");
        // The spec's Nmap example, and the ECN-setup SYN masked to the same fingerprint.
        assert_eq!(fp(NMAP_SS), "1024_2_1460_00");
        assert_eq!(fp(NMAP_SS_ECN), "1024_2_1460_00");
    }

    #[test]
    fn options_with_eol_padding() {
        let o = TcpOptions::parse(&unhex("020405b4010303060101080a0000000000000000 04020000"));
        assert_eq!(o.kinds(), &[2, 1, 3, 1, 1, 8, 4, 0, 0]);
        assert_eq!(o.mss, Some(1460));
        assert_eq!(o.window_scale, Some(6));
        assert!(!o.malformed);
        assert_eq!(o.kinds_text().as_bytes(), b"2-1-3-1-1-8-4-0-0");
    }

    #[test]
    fn malformed_options_stop_the_walk() {
        // MSS claims 40 bytes.
        let o = TcpOptions::parse(&unhex("0128 05b4"));
        assert_eq!(o.kinds(), &[1, 40]);
        assert!(o.malformed);
        // Length 0 and 1 are impossible (a zero length would loop forever if trusted).
        for bad in ["0300", "0301", "02"] {
            let o = TcpOptions::parse(&unhex(bad));
            assert!(o.malformed, "{bad}");
            assert_eq!(o.mss, None);
        }
        // An MSS with the wrong length has no value; a later one wins.
        let o = TcpOptions::parse(&unhex("020305 020405b4 02040218"));
        assert_eq!(o.mss, Some(536));
        assert_eq!(o.kinds(), &[2, 2, 2]);
        assert_eq!(TcpOptions::parse(&[]).kinds_text().as_bytes(), b"");
    }

    #[test]
    fn never_more_than_forty_kinds() {
        let o = TcpOptions::parse(&[1; 100]);
        assert_eq!(o.kinds().len(), MAX_OPTION_KINDS);
        assert_eq!(o.kinds_text().as_bytes().len(), 40 * 2 - 1);
        let o = TcpOptions::parse(&[255, 2].repeat(40));
        assert_eq!(
            o.kinds_text().as_bytes(),
            "255-".repeat(40).trim_end_matches('-').as_bytes()
        );
    }

    #[test]
    fn every_prefix_and_byte_flip_is_handled() {
        let syn = unhex(
            "45000034 0000 4000 40 06 0000 7f000001 7f000001
             d431 1f90 00000000 00000000 8002 faf0 0000 0000
             020405b4 01030307 0101 0402",
        );
        assert!(parse(&syn).is_ok());
        for n in 0..syn.len() {
            assert!(parse(&syn[..n]).is_err(), "prefix {n}");
        }
        for i in 0..syn.len() {
            let mut flipped = syn.clone();
            flipped[i] ^= 0xff;
            let _ = parse(&flipped);
        }
    }

    #[test]
    fn ipv6_extension_headers_are_skipped() {
        let tcp = "d431 1f90 00000000 00000000 6002 ffff 0000 0000 020405a0";
        // Hop-by-hop (next = TCP, 8 bytes) before TCP.
        let v6 = unhex(&format!(
            "60000000 0020 00 39 {} {} 06 00 0000 00000000 {tcp}",
            "00000000000000000000000000000001", "00000000000000000000000000000001"
        ));
        let f = parse(&v6).unwrap();
        assert_eq!((f.ip_version, f.ttl, f.window), (6, 0x39, 0xffff));
        assert_eq!(f.options.mss, Some(1440));
        // UDP is refused, and so is an endless chain cut short.
        let mut udp = v6.clone();
        udp[6] = 17;
        assert_eq!(parse(&udp), Err(SynError::NotTcp(17)));
        let mut cut = v6.clone();
        cut.truncate(45);
        assert_eq!(parse(&cut), Err(SynError::Truncated));
    }

    #[test]
    fn header_length_fields_are_not_trusted() {
        let mut syn = unhex(
            "45000028 0000 4000 40 06 0000 7f000001 7f000001
             d431 1f90 00000000 00000000 5002 faf0 0000 0000",
        );
        syn[0] = 0x44; // IHL 16 bytes
        assert_eq!(parse(&syn), Err(SynError::BadHeaderLength));
        syn[0] = 0x4f; // IHL 60 bytes, only 40 there
        assert_eq!(parse(&syn), Err(SynError::Truncated));
        syn[0] = 0x45;
        syn[32] = 0xf0; // TCP data offset 60 bytes
        assert_eq!(parse(&syn), Err(SynError::Truncated));
        syn[32] = 0x40;
        assert_eq!(parse(&syn), Err(SynError::BadHeaderLength));
        syn[32] = 0x50;
        let f = parse(&syn).unwrap();
        assert!(f.options.kinds().is_empty());
        assert_eq!(parse(&[0x55]), Err(SynError::NotIp(5)));
    }
}
