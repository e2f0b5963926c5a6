//! SSH client identification line, binary packets and the first KEXINIT (RFC 4253 §4.2, §6,
//! §7.1), as borrowed views. Never panics, never trusts a length field, never allocates.
//!
//! The client stream is `[other lines]* SSH-protoversion-softwareversion [SP comments] CR LF`
//! (a bare LF is accepted) followed by unencrypted binary packets
//! `uint32 packet_length | byte padding_length | payload | padding`. Since a client often waits
//! for the server's banner before sending KEXINIT, the KEXINIT may also be parsed from a stream
//! that starts directly with binary packets (a later client turn): see [`parse_client`].

use super::reader::Reader;

/// Longest identification line we accept (RFC 4253 says 255 bytes incl. CR LF; be lenient).
pub const MAX_LINE: usize = 1024;
/// At most this many bytes of other lines before the identification line.
pub const MAX_PREAMBLE: usize = 8 * 1024;
/// Largest binary packet we accept (OpenSSH's own limit is 256 KiB).
pub const MAX_PACKET: usize = 256 * 1024;
/// Non-KEXINIT packets skipped before giving up.
const MAX_SKIPPED_PACKETS: usize = 4;

/// SSH_MSG_KEXINIT
pub const MSG_KEXINIT: u8 = 20;

/// Why parsing stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// A valid prefix: more bytes are needed.
    Incomplete,
    /// Not SSH, or a length field that cannot be right.
    Invalid,
}

/// The identification line, without the line ending.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Banner<'a> {
    /// The whole line, e.g. `SSH-2.0-OpenSSH_9.6 Ubuntu-3`.
    pub line: &'a [u8],
    /// `2.0`, `1.99`, `1.5` ...
    pub proto_version: &'a [u8],
    /// `OpenSSH_9.6`.
    pub software_version: &'a [u8],
    /// Text after the first space, if any.
    pub comments: Option<&'a [u8]>,
}

impl Banner<'_> {
    /// True for protocol 2 clients (`2.0`, and `1.99` which speaks both).
    pub fn is_ssh2(&self) -> bool {
        self.proto_version == b"2.0" || self.proto_version == b"1.99"
    }
}

/// Parses the identification line; returns it and the number of bytes it (and any lines before
/// it) occupy.
pub fn parse_banner(stream: &[u8]) -> Result<(Banner<'_>, usize), Error> {
    let mut pos = 0usize;
    loop {
        let rest = stream.get(pos..).ok_or(Error::Invalid)?;
        let is_id = rest.starts_with(b"SSH-");
        let could_be_id = b"SSH-".starts_with(rest.get(..rest.len().min(4)).unwrap_or(&[]));
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
            // No line end yet.
            if (is_id || could_be_id) && rest.len() < MAX_LINE
                || !is_id && !could_be_id && pos + rest.len() < MAX_PREAMBLE
            {
                return Err(Error::Incomplete);
            }
            return Err(Error::Invalid);
        };
        let raw = rest.get(..nl).ok_or(Error::Invalid)?;
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        let end = pos + nl + 1;
        if is_id {
            if raw.len() > MAX_LINE {
                return Err(Error::Invalid);
            }
            return split_banner(line).map(|b| (b, end)).ok_or(Error::Invalid);
        }
        if end > MAX_PREAMBLE {
            return Err(Error::Invalid);
        }
        pos = end;
    }
}

fn split_banner(line: &[u8]) -> Option<Banner<'_>> {
    let after = line.strip_prefix(b"SSH-")?;
    let dash = after.iter().position(|&b| b == b'-')?;
    let (proto_version, rest) = after.split_at_checked(dash)?;
    let rest = rest.get(1..)?;
    let (software_version, comments) = match rest.iter().position(|&b| b == b' ') {
        Some(sp) => {
            let (s, c) = rest.split_at_checked(sp)?;
            (s, Some(c.get(1..)?))
        }
        None => (rest, None),
    };
    if proto_version.is_empty() {
        return None;
    }
    Some(Banner {
        line,
        proto_version,
        software_version,
        comments,
    })
}

/// Parses one binary packet at the start of `data`; returns its payload and total size.
pub fn parse_packet(data: &[u8]) -> Result<(&[u8], usize), Error> {
    let mut r = Reader::new(data);
    let Some(len) = r.u32() else {
        return Err(Error::Incomplete);
    };
    let len = len as usize;
    // padding_length byte + at least 4 bytes of padding; RFC minimum packet is 16 bytes total.
    if !(5..=MAX_PACKET).contains(&len) {
        return Err(Error::Invalid);
    }
    let Some(packet) = r.take(len) else {
        return Err(Error::Incomplete);
    };
    let mut p = Reader::new(packet);
    let pad = usize::from(p.u8().ok_or(Error::Invalid)?);
    let payload_len = (len - 1).checked_sub(pad).ok_or(Error::Invalid)?;
    if payload_len == 0 {
        return Err(Error::Invalid);
    }
    let payload = p.take(payload_len).ok_or(Error::Invalid)?;
    Ok((payload, 4 + len))
}

/// Name-lists a KEXINIT must carry (kex .. compression client-to-server).
const REQUIRED_LISTS: usize = 7;

/// A parsed SSH_MSG_KEXINIT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KexInit<'a> {
    /// 16 random bytes.
    pub cookie: [u8; 16],
    /// The 10 name-lists in wire order (see the accessors).
    pub lists: [&'a [u8]; 10],
    /// first_kex_packet_follows
    pub first_kex_packet_follows: bool,
}

impl<'a> KexInit<'a> {
    /// Parses a KEXINIT payload (starting with the message number 20).
    pub fn parse(payload: &'a [u8]) -> Result<Self, Error> {
        let mut r = Reader::new(payload);
        if r.u8() != Some(MSG_KEXINIT) {
            return Err(Error::Invalid);
        }
        let cookie = r.array::<16>().ok_or(Error::Invalid)?;
        let mut lists: [&[u8]; 10] = [&[]; 10];
        // HASSH needs the first seven name-lists; some clients end the packet after them (or
        // after the compression lists), so the languages and the flag are optional.
        for (i, slot) in lists.iter_mut().enumerate() {
            match r.vec32() {
                Some(list) => *slot = list,
                None if i >= REQUIRED_LISTS => break,
                None => return Err(Error::Invalid),
            }
        }
        let first_kex_packet_follows = r.u8().is_some_and(|b| b != 0);
        // The trailing uint32 reserved field is not required.
        Ok(KexInit {
            cookie,
            lists,
            first_kex_packet_follows,
        })
    }

    /// kex_algorithms
    pub fn kex_algorithms(&self) -> &'a [u8] {
        self.lists[0]
    }
    /// server_host_key_algorithms
    pub fn server_host_key_algorithms(&self) -> &'a [u8] {
        self.lists[1]
    }
    /// encryption_algorithms_client_to_server
    pub fn encryption_c2s(&self) -> &'a [u8] {
        self.lists[2]
    }
    /// encryption_algorithms_server_to_client
    pub fn encryption_s2c(&self) -> &'a [u8] {
        self.lists[3]
    }
    /// mac_algorithms_client_to_server
    pub fn mac_c2s(&self) -> &'a [u8] {
        self.lists[4]
    }
    /// mac_algorithms_server_to_client
    pub fn mac_s2c(&self) -> &'a [u8] {
        self.lists[5]
    }
    /// compression_algorithms_client_to_server
    pub fn compression_c2s(&self) -> &'a [u8] {
        self.lists[6]
    }
    /// compression_algorithms_server_to_client
    pub fn compression_s2c(&self) -> &'a [u8] {
        self.lists[7]
    }
    /// languages_client_to_server
    pub fn languages_c2s(&self) -> &'a [u8] {
        self.lists[8]
    }
    /// languages_server_to_client
    pub fn languages_s2c(&self) -> &'a [u8] {
        self.lists[9]
    }
}

/// Finds the first KEXINIT among the binary packets at the start of `data`; returns it and the
/// bytes up to the end of its packet.
pub fn parse_kexinit_packets(data: &[u8]) -> Result<(KexInit<'_>, usize), Error> {
    let mut pos = 0usize;
    for _ in 0..=MAX_SKIPPED_PACKETS {
        let rest = data.get(pos..).ok_or(Error::Invalid)?;
        let (payload, used) = parse_packet(rest)?;
        pos += used;
        if payload.first() == Some(&MSG_KEXINIT) {
            return Ok((KexInit::parse(payload)?, pos));
        }
    }
    Err(Error::Invalid)
}

/// What a client stream yields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientStream<'a> {
    /// The identification line (absent when the stream starts with binary packets).
    pub banner: Option<Banner<'a>>,
    /// The first KEXINIT (absent for SSH-1 clients).
    pub kexinit: Option<KexInit<'a>>,
    /// Stream bytes consumed up to the end of what was parsed.
    pub len: usize,
}

/// Parses a client stream: banner then KEXINIT; or, if the stream does not start with text
/// lines, a KEXINIT packet directly. `Err(Incomplete)` means more bytes could complete it:
/// an SSH-2 banner without its KEXINIT yet is `Incomplete` (see [`parse_banner`] for the banner
/// alone).
pub fn parse_client(stream: &[u8]) -> Result<ClientStream<'_>, Error> {
    match parse_banner(stream) {
        Ok((banner, used)) => {
            if !banner.is_ssh2() {
                return Ok(ClientStream {
                    banner: Some(banner),
                    kexinit: None,
                    len: used,
                });
            }
            let rest = stream.get(used..).ok_or(Error::Invalid)?;
            let (k, n) = parse_kexinit_packets(rest)?;
            Ok(ClientStream {
                banner: Some(banner),
                kexinit: Some(k),
                len: used + n,
            })
        }
        Err(e) => match parse_kexinit_packets(stream) {
            Ok((k, n)) => Ok(ClientStream {
                banner: None,
                kexinit: Some(k),
                len: n,
            }),
            Err(Error::Incomplete) if stream.first() == Some(&0) => Err(Error::Incomplete),
            Err(_) => Err(e),
        },
    }
}

/// Builds a binary packet around `payload` (test helper; padding of zeros).
#[cfg(test)]
pub(crate) fn build_packet(payload: &[u8]) -> Vec<u8> {
    let mut pad = 8 - (payload.len() + 5) % 8;
    if pad < 4 {
        pad += 8;
    }
    let len = 1 + payload.len() + pad;
    let mut out = (len as u32).to_be_bytes().to_vec();
    out.push(pad as u8);
    out.extend_from_slice(payload);
    out.extend(std::iter::repeat_n(0u8, pad));
    out
}

/// An OpenSSH 9.6 client's first flight (banner, then KEXINIT) offering `kex` (test helper).
#[cfg(test)]
pub(crate) fn openssh_client_stream(kex: &[u8]) -> Vec<u8> {
    let lists: [&[u8]; 10] = [
        kex,
        b"ssh-ed25519",
        b"aes128-ctr",
        b"aes128-ctr",
        b"hmac-sha2-256",
        b"hmac-sha2-256",
        b"none",
        b"none",
        b"",
        b"",
    ];
    let mut s = b"SSH-2.0-OpenSSH_9.6\r\n".to_vec();
    s.extend_from_slice(&build_packet(&build_kexinit(&lists)));
    s
}

/// Builds a KEXINIT payload from 10 name-lists (test helper).
#[cfg(test)]
pub(crate) fn build_kexinit(lists: &[&[u8]; 10]) -> Vec<u8> {
    let mut p = vec![MSG_KEXINIT];
    p.extend_from_slice(&[0x42; 16]);
    for l in lists {
        p.extend_from_slice(&(l.len() as u32).to_be_bytes());
        p.extend_from_slice(l);
    }
    p.push(0);
    p.extend_from_slice(&[0; 4]);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn banner_forms() {
        let (b, n) = parse_banner(b"SSH-2.0-OpenSSH_9.6 Ubuntu-3\r\nrest").unwrap();
        assert_eq!(b.proto_version, b"2.0");
        assert_eq!(b.software_version, b"OpenSSH_9.6");
        assert_eq!(b.comments, Some(&b"Ubuntu-3"[..]));
        assert_eq!(n, 30);
        let (b, _) = parse_banner(b"hello\nSSH-1.99-x\n").unwrap();
        assert!(b.is_ssh2());
        assert_eq!(parse_banner(b"SSH-2.0-abc"), Err(Error::Incomplete));
        assert_eq!(parse_banner(b"SS"), Err(Error::Incomplete));
        assert_eq!(parse_banner(b"SSH-\r\n"), Err(Error::Invalid));
    }

    #[test]
    fn client_stream() {
        let lists: [&[u8]; 10] = [
            b"kex", b"hk", b"aes", b"aes", b"mac", b"mac", b"none", b"none", b"", b"",
        ];
        let pkt = build_packet(&build_kexinit(&lists));
        let mut s = b"SSH-2.0-test\r\n".to_vec();
        s.extend_from_slice(&pkt);
        let c = parse_client(&s).unwrap();
        assert_eq!(c.len, s.len());
        assert_eq!(c.kexinit.unwrap().kex_algorithms(), b"kex");
        for cut in 0..s.len() {
            assert_eq!(parse_client(&s[..cut]), Err(Error::Incomplete), "cut {cut}");
        }
        // Later turn: packets only.
        let c = parse_client(&pkt).unwrap();
        assert!(c.banner.is_none());
        assert_eq!(c.kexinit.unwrap().mac_c2s(), b"mac");
        let c = parse_client(b"SSH-1.5-old\n").unwrap();
        assert!(c.kexinit.is_none());
        assert_eq!(
            parse_client(b"SSH-2.0-x\n\xff\xff\xff\xff"),
            Err(Error::Invalid)
        );
    }
}
