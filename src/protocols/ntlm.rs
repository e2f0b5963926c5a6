//! NTLM ([MS-NLMP]) inside SMB, MSSQL and RDP: the client's NEGOTIATE and AUTHENTICATE parsed
//! as borrowed views, and the CHALLENGE we answer with (a standalone Windows Server 2019).
//!
//! What an AUTHENTICATE gives a record: the user (`user.name`), its domain (`user.domain`) and,
//! under `spip.ntlm`: `workstation` (the client's host name), `version` (the client's OS
//! version, `major.minor.build`), `ntlm_revision`, `response` (`anonymous`, `v1`, `v1-ess`
//! or `v2`) and `hashcat`: the captured response in the format hashcat cracks, with the
//! server challenge we sent:
//! - NetNTLMv2 (hashcat mode 5600): `user::domain:challenge:ntproofstr:blob`,
//! - NetNTLMv1 and v1-ESS (mode 5500): `user::domain:lm_response:nt_response:challenge`,
//!
//! all hex in lower case, user and domain as UTF-8.

use super::der;
use crate::json::{JsonWriter, write_hex, write_json_string_content};

/// `NTLMSSP\0`: every NTLM message starts with it.
pub const SIGNATURE: &[u8; 8] = b"NTLMSSP\0";

// Negotiate flags ([MS-NLMP] 2.2.2.5).
const UNICODE: u32 = 0x0000_0001;
const REQUEST_TARGET: u32 = 0x0000_0004;
const SIGN: u32 = 0x0000_0010;
const SEAL: u32 = 0x0000_0020;
const NTLM: u32 = 0x0000_0200;
const ALWAYS_SIGN: u32 = 0x0000_8000;
const TARGET_TYPE_SERVER: u32 = 0x0002_0000;
const EXTENDED_SESSIONSECURITY: u32 = 0x0008_0000;
const TARGET_INFO: u32 = 0x0080_0000;
const VERSION: u32 = 0x0200_0000;
const KEY_128: u32 = 0x2000_0000;
const KEY_EXCH: u32 = 0x4000_0000;
const KEY_56: u32 = 0x8000_0000;

/// The flags we grant when the client asks for them; the rest we always set.
const GRANTED_IF_ASKED: u32 =
    SIGN | SEAL | ALWAYS_SIGN | EXTENDED_SESSIONSECURITY | KEY_128 | KEY_EXCH | KEY_56;
const ALWAYS_SET: u32 =
    UNICODE | REQUEST_TARGET | NTLM | TARGET_TYPE_SERVER | TARGET_INFO | VERSION;

/// Windows Server 2019 (10.0.17763), NTLM revision 15: the VERSION we send.
const SERVER_VERSION: [u8; 8] = [10, 0, 0x63, 0x45, 0, 0, 0, 15];

/// A string field: UTF-16LE when the client negotiated Unicode, else OEM (taken as UTF-8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Text<'a> {
    pub bytes: &'a [u8],
    pub unicode: bool,
}

impl Text<'_> {
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Appends the text escaped as the inside of a JSON string (lossy: bad UTF-16 is U+FFFD).
    pub fn write_json_content(&self, out: &mut Vec<u8>) {
        if !self.unicode {
            write_json_string_content(out, self.bytes);
            return;
        }
        let units = self
            .bytes
            .chunks_exact(2)
            .map(|p| u16::from_le_bytes([p[0], p[1]]));
        for c in char::decode_utf16(units) {
            let mut utf8 = [0u8; 4];
            let s = c
                .unwrap_or(char::REPLACEMENT_CHARACTER)
                .encode_utf8(&mut utf8);
            write_json_string_content(out, s.as_bytes());
        }
    }

    /// `key: "<text>"`.
    pub fn write(&self, w: &mut JsonWriter<'_>, key: &str) {
        w.key_only(key);
        let out = w.buf();
        out.push(b'"');
        self.write_json_content(out);
        out.push(b'"');
    }
}

/// The OS version a client (or server) states in its NTLM messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version {
    pub major: u8,
    pub minor: u8,
    pub build: u16,
    pub ntlm_revision: u8,
}

impl Version {
    fn parse(b: &[u8]) -> Option<Version> {
        let v = b.get(..8)?;
        Some(Version {
            major: v[0],
            minor: v[1],
            build: u16::from_le_bytes([v[2], v[3]]),
            ntlm_revision: v[7],
        })
    }
}

/// The first NTLM message: what the client offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiate<'a> {
    pub flags: u32,
    /// Domain and workstation as the client supplied them (OEM; usually empty).
    pub domain: &'a [u8],
    pub workstation: &'a [u8],
    pub version: Option<Version>,
}

/// How the client answered the challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseKind {
    /// No user and no NT response (a null session).
    Anonymous,
    /// NTLMv1: a 24-byte NT response over the server challenge alone.
    V1,
    /// NTLMv1 with extended session security: a client challenge in the LM field.
    V1Ess,
    /// NTLMv2: NTProofStr (16 bytes) plus the client's blob.
    V2,
}

impl ResponseKind {
    pub fn name(self) -> &'static str {
        match self {
            ResponseKind::Anonymous => "anonymous",
            ResponseKind::V1 => "v1",
            ResponseKind::V1Ess => "v1-ess",
            ResponseKind::V2 => "v2",
        }
    }
}

/// The third NTLM message: who the client is, and its answer to our challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Authenticate<'a> {
    pub flags: u32,
    pub lm_response: &'a [u8],
    pub nt_response: &'a [u8],
    pub domain: Text<'a>,
    pub user: Text<'a>,
    pub workstation: Text<'a>,
    pub version: Option<Version>,
}

impl Authenticate<'_> {
    pub fn kind(&self) -> ResponseKind {
        match self.nt_response.len() {
            // A null session: no user, no NT response (the LM response is empty or one zero).
            0 if self.user.is_empty() => ResponseKind::Anonymous,
            24 if self.flags & EXTENDED_SESSIONSECURITY != 0 && self.lm_response.len() == 24 => {
                ResponseKind::V1Ess
            }
            0..=24 => ResponseKind::V1,
            _ => ResponseKind::V2,
        }
    }

    /// Appends the hashcat line for this response to `out` (nothing for anonymous).
    pub fn write_hashcat(&self, challenge: &[u8; 8], out: &mut Vec<u8>) {
        let kind = self.kind();
        if kind == ResponseKind::Anonymous {
            return;
        }
        self.user.write_json_content(out);
        out.extend_from_slice(b"::");
        self.domain.write_json_content(out);
        out.push(b':');
        if kind == ResponseKind::V2 {
            let (proof, blob) = self.nt_response.split_at(16);
            write_hex(out, challenge);
            out.push(b':');
            write_hex(out, proof);
            out.push(b':');
            write_hex(out, blob);
        } else {
            write_hex(out, self.lm_response);
            out.push(b':');
            write_hex(out, self.nt_response);
            out.push(b':');
            write_hex(out, challenge);
        }
    }

    /// `user`: `name`, `domain` (the ECS user object); nothing for a null session.
    pub fn write_ecs(&self, w: &mut JsonWriter<'_>) {
        if self.user.is_empty() && self.domain.is_empty() {
            return;
        }
        w.begin_object("user");
        if !self.user.is_empty() {
            self.user.write(w, "name");
        }
        if !self.domain.is_empty() {
            self.domain.write(w, "domain");
        }
        w.end_object();
    }
}

/// A parsed NTLM message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    Negotiate(Negotiate<'a>),
    /// A CHALLENGE from the client's side is not something clients send; kept to be recorded.
    Challenge,
    Authenticate(Authenticate<'a>),
}

/// Why bytes are not an NTLM message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    NoSignature,
    Truncated,
    UnknownType(u32),
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_le_bytes([s[0], s[1]]))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// A `(len, maxlen, offset)` field descriptor at `at`, resolved against the message; a field
/// pointing outside the message reads as empty rather than failing the whole message.
fn field(msg: &[u8], at: usize) -> Option<&[u8]> {
    let len = usize::from(u16_at(msg, at)?);
    let offset = u32_at(msg, at + 4)? as usize;
    Some(
        offset
            .checked_add(len)
            .and_then(|end| msg.get(offset..end))
            .unwrap_or(&[]),
    )
}

/// The version block at `at`, when the flags say there is one and the payload does not start
/// before it (old clients omit it and put the payload there).
fn version_at(msg: &[u8], flags: u32, at: usize, payload_start: usize) -> Option<Version> {
    if flags & VERSION == 0 || payload_start < at + 8 {
        return None;
    }
    Version::parse(msg.get(at..)?)
}

/// Where the NTLM message in `blob` starts (it is wrapped in SPNEGO or sent bare).
pub fn find(blob: &[u8]) -> Option<usize> {
    memchr::memmem::find(blob, SIGNATURE)
}

/// Parses the NTLM message at the start of `msg` (its fields' offsets count from there).
pub fn parse(msg: &[u8]) -> Result<Message<'_>, Error> {
    if msg.len() < 12 {
        return if SIGNATURE.starts_with(msg) || msg.starts_with(SIGNATURE) {
            Err(Error::Truncated)
        } else {
            Err(Error::NoSignature)
        };
    }
    if !msg.starts_with(SIGNATURE) {
        return Err(Error::NoSignature);
    }
    match u32_at(msg, 8).ok_or(Error::Truncated)? {
        1 => {
            let flags = u32_at(msg, 12).ok_or(Error::Truncated)?;
            let domain = field(msg, 16).unwrap_or(&[]);
            let workstation = field(msg, 24).unwrap_or(&[]);
            let payload_start = [16, 24]
                .iter()
                .filter_map(|&at| u32_at(msg, at + 4).filter(|_| u16_at(msg, at) != Some(0)))
                .map(|o| o as usize)
                .min()
                .unwrap_or(usize::MAX);
            Ok(Message::Negotiate(Negotiate {
                flags,
                domain,
                workstation,
                version: version_at(msg, flags, 32, payload_start),
            }))
        }
        2 => Ok(Message::Challenge),
        3 => {
            // Six field descriptors, then the flags: 64 bytes before the optional version.
            if msg.len() < 64 {
                return Err(Error::Truncated);
            }
            let flags = u32_at(msg, 60).ok_or(Error::Truncated)?;
            let unicode = flags & UNICODE != 0;
            let text = |at| Text {
                bytes: field(msg, at).unwrap_or(&[]),
                unicode,
            };
            let payload_start = [12, 20, 28, 36, 44, 52]
                .iter()
                .filter(|&&at| u16_at(msg, at) != Some(0))
                .filter_map(|&at| u32_at(msg, at + 4))
                .map(|o| o as usize)
                .min()
                .unwrap_or(usize::MAX);
            Ok(Message::Authenticate(Authenticate {
                flags,
                lm_response: field(msg, 12).unwrap_or(&[]),
                nt_response: field(msg, 20).unwrap_or(&[]),
                domain: text(28),
                user: text(36),
                workstation: text(44),
                version: version_at(msg, flags, 64, payload_start),
            }))
        }
        t => Err(Error::UnknownType(t)),
    }
}

/// Writes `spip.ntlm` for a message (with the challenge we sent, for the hashcat line).
pub fn write_spip(msg: &Message<'_>, challenge: Option<&[u8; 8]>, w: &mut JsonWriter<'_>) {
    w.begin_object("ntlm");
    match msg {
        Message::Negotiate(n) => {
            w.str("message", b"negotiate");
            w.u64("flags", u64::from(n.flags));
            if !n.domain.is_empty() {
                w.str("domain", n.domain);
            }
            if !n.workstation.is_empty() {
                w.str("workstation", n.workstation);
            }
            write_version(w, n.version);
        }
        Message::Challenge => w.str("message", b"challenge"),
        Message::Authenticate(a) => {
            w.str("message", b"authenticate");
            w.u64("flags", u64::from(a.flags));
            if !a.workstation.is_empty() {
                a.workstation.write(w, "workstation");
            }
            write_version(w, a.version);
            let kind = a.kind();
            w.str("response", kind.name().as_bytes());
            if let (Some(challenge), false) = (challenge, kind == ResponseKind::Anonymous) {
                w.key_only("hashcat");
                let out = w.buf();
                out.push(b'"');
                a.write_hashcat(challenge, out);
                out.push(b'"');
            }
        }
    }
    w.end_object();
}

fn write_version(w: &mut JsonWriter<'_>, version: Option<Version>) {
    if let Some(v) = version {
        w.key_only("version");
        let out = w.buf();
        out.push(b'"');
        crate::json::write_u64(out, u64::from(v.major));
        out.push(b'.');
        crate::json::write_u64(out, u64::from(v.minor));
        out.push(b'.');
        crate::json::write_u64(out, u64::from(v.build));
        out.push(b'"');
        w.u64("ntlm_revision", u64::from(v.ntlm_revision));
    }
}

/// The names a CHALLENGE announces (a standalone server: every name is the computer's).
#[derive(Debug, Clone, Copy)]
pub struct ServerNames<'a> {
    /// NetBIOS computer name (upper case, at most 15 bytes of ASCII).
    pub netbios: &'a [u8],
    /// DNS host name.
    pub dns: &'a [u8],
}

/// An upper-case NetBIOS name (at most 15 bytes) from a host name: `buf` holds it.
pub fn netbios_name<'b>(hostname: &str, buf: &'b mut [u8; 15]) -> &'b [u8] {
    let first = hostname.split('.').next().unwrap_or(hostname);
    let mut n = 0;
    for (d, s) in buf
        .iter_mut()
        .zip(first.bytes().filter(u8::is_ascii_graphic))
    {
        *d = s.to_ascii_uppercase();
        n += 1;
    }
    if n == 0 {
        buf[..6].copy_from_slice(b"SERVER");
        n = 6;
    }
    &buf[..n]
}

fn put_utf16(out: &mut Vec<u8>, ascii: &[u8]) {
    for &b in ascii {
        out.extend_from_slice(&[b, 0]);
    }
}

fn put_av(out: &mut Vec<u8>, id: u16, ascii: &[u8]) {
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&((ascii.len() * 2) as u16).to_le_bytes());
    put_utf16(out, ascii);
}

/// The length of the CHALLENGE [`write_challenge`] writes for `names` (wrappers put it first).
pub fn challenge_len(names: ServerNames<'_>) -> usize {
    let (netbios, dns) = (names.netbios.len() * 2, names.dns.len() * 2);
    // Header and version, target name, four name AV pairs, the timestamp and the end of the
    // list.
    56 + netbios + (4 + netbios) * 2 + (4 + dns) * 2 + (4 + 8) + 4
}

/// Appends our CHALLENGE to `out`, answering the client's NEGOTIATE flags. `filetime` is the
/// server's current time (MsvAvTimestamp, which Windows sends since Vista and which NTLMv2
/// clients copy into their response).
pub fn write_challenge(
    out: &mut Vec<u8>,
    client_flags: u32,
    challenge: &[u8; 8],
    names: ServerNames<'_>,
    filetime: u64,
) {
    let flags = (client_flags & GRANTED_IF_ASKED) | ALWAYS_SET;
    let start = out.len();
    let target_name_len = names.netbios.len() * 2;
    let header = 56usize;
    out.extend_from_slice(SIGNATURE);
    out.extend_from_slice(&2u32.to_le_bytes());
    out.extend_from_slice(&(target_name_len as u16).to_le_bytes());
    out.extend_from_slice(&(target_name_len as u16).to_le_bytes());
    out.extend_from_slice(&(header as u32).to_le_bytes());
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(challenge);
    out.extend_from_slice(&[0; 8]);
    // Target info fields, filled in once its length is known.
    let info_desc = out.len();
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&SERVER_VERSION);
    put_utf16(out, names.netbios);
    let info_start = out.len();
    put_av(out, 2, names.netbios); // MsvAvNbDomainName
    put_av(out, 1, names.netbios); // MsvAvNbComputerName
    put_av(out, 4, names.dns); // MsvAvDnsDomainName
    put_av(out, 3, names.dns); // MsvAvDnsComputerName
    out.extend_from_slice(&[7, 0, 8, 0]); // MsvAvTimestamp
    out.extend_from_slice(&filetime.to_le_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]); // MsvAvEOL
    let info_len = (out.len() - info_start) as u16;
    let info_offset = (info_start - start) as u32;
    let desc = &mut out[info_desc..info_desc + 8];
    desc[..2].copy_from_slice(&info_len.to_le_bytes());
    desc[2..4].copy_from_slice(&info_len.to_le_bytes());
    desc[4..].copy_from_slice(&info_offset.to_le_bytes());
}

/// The MsvAvTimestamp in a CHALLENGE's target info (for the tests of the responders that
/// send one).
#[cfg(test)]
pub fn challenge_timestamp(msg: &[u8]) -> Option<u64> {
    let mut info = field(msg, 40)?;
    while let [a, b, c, d, rest @ ..] = info {
        let len = usize::from(u16::from_le_bytes([*c, *d]));
        let value = rest.get(..len)?;
        match u16::from_le_bytes([*a, *b]) {
            0 => return None,
            7 => return Some(u64::from_le_bytes(value.try_into().ok()?)),
            _ => info = &rest[len..],
        }
    }
    None
}

/// The NTLMSSP mechanism OID, DER.
const NTLMSSP_OID: &[u8] = b"\x06\x0a\x2b\x06\x01\x04\x01\x82\x37\x02\x02\x0a";
/// negState accept-incomplete: `[0] ENUMERATED 1`.
const NEG_STATE_INCOMPLETE: &[u8] = &[0xa0, 0x03, 0x0a, 0x01, 0x01];

/// The members of a SPNEGO NegTokenResp carrying a CHALLENGE of `token_len` bytes.
fn spnego_fields_len(token_len: usize) -> usize {
    NEG_STATE_INCOMPLETE.len() + der::size(NTLMSSP_OID.len()) + der::size(der::size(token_len))
}

/// The size of the SPNEGO NegTokenResp (accept-incomplete, NTLMSSP) around a CHALLENGE of
/// `token_len` bytes, the CHALLENGE included: for clients that wrapped their NEGOTIATE.
pub fn spnego_challenge_len(token_len: usize) -> usize {
    der::size(der::size(spnego_fields_len(token_len)))
}

/// Writes that NegTokenResp up to its response token; the caller writes the CHALLENGE
/// (`token_len` bytes) next.
pub fn write_spnego_challenge_head(out: &mut Vec<u8>, token_len: usize) {
    let fields = spnego_fields_len(token_len);
    der::write_header(out, der::context(1), der::size(fields));
    der::write_header(out, der::SEQUENCE, fields);
    out.extend_from_slice(NEG_STATE_INCOMPLETE);
    der::write_header(out, der::context(1), NTLMSSP_OID.len());
    out.extend_from_slice(NTLMSSP_OID);
    der::write_header(out, der::context(2), der::size(token_len));
    der::write_header(out, der::OCTET_STRING, token_len);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocols::testing::fields;

    fn hex(s: &str) -> Vec<u8> {
        crate::inspect::decode_hex(s).expect("test hex")
    }

    /// smbclient 4.17's AUTHENTICATE, from tests/data/ntlm/smbclient-authenticate.hex.
    fn smbclient_authenticate() -> Vec<u8> {
        hex(include_str!("../../tests/data/ntlm/smbclient-authenticate.hex").trim())
    }

    #[test]
    fn smbclient_authenticate_gives_user_domain_host_and_v2_hash() {
        let msg = smbclient_authenticate();
        let Ok(Message::Authenticate(a)) = parse(&msg) else {
            panic!("not an AUTHENTICATE")
        };
        assert_eq!(a.kind(), ResponseKind::V2);
        let ecs = fields(|w| a.write_ecs(w));
        assert_eq!(ecs["user"]["name"], "USER");
        assert_eq!(ecs["user"]["domain"], "WORKGROUP");
        let challenge = [1, 2, 3, 4, 5, 6, 7, 8];
        let spip = fields(|w| write_spip(&Message::Authenticate(a), Some(&challenge), w));
        let ntlm = &spip["ntlm"];
        assert_eq!(ntlm["message"], "authenticate");
        assert_eq!(ntlm["response"], "v2");
        assert_eq!(ntlm["workstation"], "VM");
        assert_eq!(ntlm["version"], "6.1.0");
        let line = ntlm["hashcat"].as_str().unwrap();
        let parts: Vec<&str> = line.split(':').collect();
        assert_eq!(parts.len(), 6, "{line}");
        assert_eq!(&parts[..4], ["USER", "", "WORKGROUP", "0102030405060708"]);
        assert_eq!(parts[4].len(), 32);
        let blob: String = a.nt_response[16..]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(parts[5], blob);
    }

    #[test]
    fn v1_and_anonymous_are_told_apart() {
        let msg = smbclient_authenticate();
        let mut a = match parse(&msg) {
            Ok(Message::Authenticate(a)) => a,
            other => panic!("{other:?}"),
        };
        let nt = [0x11u8; 24];
        let lm = [0x22u8; 24];
        a.nt_response = &nt;
        a.lm_response = &lm;
        a.flags &= !EXTENDED_SESSIONSECURITY;
        assert_eq!(a.kind(), ResponseKind::V1);
        let mut line = Vec::new();
        a.write_hashcat(&[0xaa; 8], &mut line);
        assert_eq!(
            String::from_utf8(line).unwrap(),
            format!(
                "USER::WORKGROUP:{}:{}:aaaaaaaaaaaaaaaa",
                "22".repeat(24),
                "11".repeat(24)
            )
        );
        a.flags |= EXTENDED_SESSIONSECURITY;
        assert_eq!(a.kind(), ResponseKind::V1Ess);
        a.nt_response = &[];
        a.user = Text {
            bytes: &[],
            unicode: true,
        };
        assert_eq!(a.kind(), ResponseKind::Anonymous);
        let spip = fields(|w| write_spip(&Message::Authenticate(a), Some(&[0; 8]), w));
        assert!(spip["ntlm"].get("hashcat").is_none());
    }

    #[test]
    fn our_challenge_parses_back_with_names() {
        let mut out = Vec::new();
        let names = ServerNames {
            netbios: b"FILESRV",
            dns: b"filesrv",
        };
        write_challenge(&mut out, 0xe2088297, &[9; 8], names, 0x01dc_1234_5678_9abc);
        assert_eq!(out.len(), challenge_len(names));
        assert_eq!(parse(&out), Ok(Message::Challenge));
        assert_eq!(&out[24..32], &[9; 8]);
        let flags = u32_at(&out, 20).unwrap();
        assert_eq!(
            flags & (UNICODE | TARGET_INFO | EXTENDED_SESSIONSECURITY),
            UNICODE | TARGET_INFO | EXTENDED_SESSIONSECURITY
        );
        let name = field(&out, 12).unwrap();
        assert_eq!(name, b"F\0I\0L\0E\0S\0R\0V\0");
        let info = field(&out, 40).unwrap();
        // Windows' order: NetBIOS domain and computer, DNS domain and computer, timestamp.
        assert_eq!(&info[..4], &[2, 0, 14, 0]);
        assert_eq!(
            &info[info.len() - 16..],
            &[
                7, 0, 8, 0, 0xbc, 0x9a, 0x78, 0x56, 0x34, 0x12, 0xdc, 0x01, 0, 0, 0, 0
            ]
        );
        assert_eq!(challenge_timestamp(&out), Some(0x01dc_1234_5678_9abc));
    }

    #[test]
    fn spnego_lengths_hold_for_any_challenge_size() {
        for token_len in [10, 100, 120, 200, 300, 4000] {
            let mut out = Vec::new();
            write_spnego_challenge_head(&mut out, token_len);
            out.resize(out.len() + token_len, 0);
            assert_eq!(
                out.len(),
                spnego_challenge_len(token_len),
                "token of {token_len}"
            );
            let (resp, rest) = der::Element::read(&out).unwrap();
            assert!(rest.is_empty(), "token of {token_len}");
            let seq = der::Element::read_tagged(resp.contents, der::SEQUENCE).unwrap();
            let tags: Vec<u8> = seq.children().map(|e| e.tag).collect();
            assert_eq!(tags, [0xa0, 0xa1, 0xa2], "token of {token_len}");
            let token = seq.children().nth(2).unwrap();
            let octets = der::Element::read_tagged(token.contents, der::OCTET_STRING).unwrap();
            assert_eq!(octets.contents.len(), token_len);
        }
    }

    #[test]
    fn netbios_names_are_upper_case_and_short() {
        let mut buf = [0; 15];
        assert_eq!(netbios_name("ubuntu", &mut buf), b"UBUNTU");
        assert_eq!(
            netbios_name("a-very-long-host-name.example", &mut buf),
            b"A-VERY-LONG-HOS"
        );
        assert_eq!(netbios_name("", &mut buf), b"SERVER");
    }

    #[test]
    fn every_prefix_and_hostile_offsets_never_panic() {
        let msg = smbclient_authenticate();
        for n in 0..=msg.len() {
            let _ = parse(&msg[..n]);
        }
        let mut bad = msg.clone();
        for at in [12, 20, 28, 36, 44, 52] {
            bad[at..at + 2].copy_from_slice(&[0xff, 0xff]);
            bad[at + 4..at + 8].copy_from_slice(&[0xff, 0xff, 0xff, 0xff]);
        }
        let Ok(Message::Authenticate(a)) = parse(&bad) else {
            panic!()
        };
        assert_eq!(a.kind(), ResponseKind::Anonymous);
        let _ = fields(|w| write_spip(&Message::Authenticate(a), Some(&[0; 8]), w));
        assert_eq!(parse(b"NTLMSSP\0\x09\0\0\0"), Err(Error::UnknownType(9)));
        assert_eq!(parse(b"NTLM"), Err(Error::Truncated));
        assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Err(Error::NoSignature));
    }
}
