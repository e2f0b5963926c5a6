//! SMB on 445 and 139 (like Windows Server 2019 with SMB1 disabled): an SMB1 NEGOTIATE that
//! offers SMB2 is upgraded, the SMB2 NEGOTIATE gets a dialect (up to 3.1.1) and a SPNEGO blob
//! offering NTLMSSP, the first SESSION_SETUP gets our NTLM CHALLENGE, the second (the NTLM
//! AUTHENTICATE: user, domain, host, NetNTLM response) gets STATUS_LOGON_FAILURE, and the client
//! may try again. Every message is in NetBIOS session framing (4-byte header); on 139 the
//! NetBIOS session request comes first and is accepted.
//!
//! Record: `spip.smb.command`, `spip.smb.dialects` (offered), `spip.smb.client_guid`,
//! `spip.smb.netbios_called` / `netbios_calling` (139), and the NTLM fields (see [`super::ntlm`]).

use super::ntlm::{self, ServerNames};
use super::{After, Context, Detection, Framing, Responder, TurnFields};
use crate::json::{JsonWriter, write_hex};

const SMB2_MAGIC: &[u8; 4] = b"\xfeSMB";
const SMB1_MAGIC: &[u8; 4] = b"\xffSMB";
const HEADER_LEN: usize = 64;

const NEGOTIATE: u16 = 0x0000;
const SESSION_SETUP: u16 = 0x0001;
const LOGOFF: u16 = 0x0002;
const ECHO: u16 = 0x000d;

const STATUS_SUCCESS: u32 = 0;
const STATUS_MORE_PROCESSING_REQUIRED: u32 = 0xc000_0016;
const STATUS_LOGON_FAILURE: u32 = 0xc000_006d;
const STATUS_NOT_SUPPORTED: u32 = 0xc000_00bb;
const STATUS_USER_SESSION_DELETED: u32 = 0xc000_0203;

/// The dialects we speak, oldest first.
const DIALECTS: [u16; 5] = [0x0202, 0x0210, 0x0300, 0x0302, 0x0311];
/// "SMB 2.???" in an SMB2 NEGOTIATE response: the client should negotiate again over SMB2.
const WILDCARD: u16 = 0x02ff;

/// SPNEGO NegTokenInit2 as Windows sends it in the NEGOTIATE response, NTLMSSP only (a
/// standalone server has no Kerberos).
const NEG_TOKEN_INIT: &[u8] = b"\x60\x48\x06\x06\x2b\x06\x01\x05\x05\x02\xa0\x3e\x30\x3c\xa0\x0e\x30\x0c\
\x06\x0a\x2b\x06\x01\x04\x01\x82\x37\x02\x02\x0a\xa3\x2a\x30\x28\xa0\x26\x1b\x24\
not_defined_in_RFC4178@please_ignore";

/// Where the conversation is.
enum State {
    /// Before the SMB2 NEGOTIATE.
    Start,
    /// A dialect is chosen; the next SESSION_SETUP carries the NTLM NEGOTIATE.
    Negotiated,
    /// Our CHALLENGE is out; the next SESSION_SETUP carries the AUTHENTICATE.
    Challenged { challenge: [u8; 8], session_id: u64 },
}

pub struct Smb {
    state: State,
}

/// The request fields a response copies.
#[derive(Debug, Clone, Copy, Default)]
pub struct Header {
    command: u16,
    credit_charge: u16,
    credit_request: u16,
    message_id: u64,
    process_id: u32,
    tree_id: u32,
    session_id: u64,
}

impl Header {
    fn parse(h: &[u8]) -> Option<Header> {
        let h = h.get(..HEADER_LEN)?;
        let u16_at = |at: usize| u16::from_le_bytes([h[at], h[at + 1]]);
        let u32_at = |at: usize| u32::from_le_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]);
        let u64_at = |at: usize| u64::from(u32_at(at)) | (u64::from(u32_at(at + 4)) << 32);
        Some(Header {
            credit_charge: u16_at(6),
            command: u16_at(12),
            credit_request: u16_at(14),
            message_id: u64_at(24),
            process_id: u32_at(32),
            tree_id: u32_at(36),
            session_id: u64_at(40),
        })
    }
}

/// A NetBIOS name from a session request, decoded (first-level encoding, RFC 1001 14.1).
#[derive(Debug, Clone, Copy)]
pub struct NetbiosName {
    bytes: [u8; 16],
}

impl NetbiosName {
    /// The 34-byte encoded label at the start of `b` (length 32, the name, then a scope).
    fn decode(b: &[u8]) -> Option<NetbiosName> {
        let enc = b.get(1..33).filter(|_| b.first() == Some(&32))?;
        let mut bytes = [0u8; 16];
        for (d, pair) in bytes.iter_mut().zip(enc.chunks_exact(2)) {
            let hi = pair[0].wrapping_sub(b'A');
            let lo = pair[1].wrapping_sub(b'A');
            if hi > 15 || lo > 15 {
                return None;
            }
            *d = (hi << 4) | lo;
        }
        Some(NetbiosName { bytes })
    }

    /// The name without its type suffix and padding.
    fn name(&self) -> &[u8] {
        let name = &self.bytes[..15];
        let end = name.iter().rposition(|&b| b != b' ').map_or(0, |i| i + 1);
        &name[..end]
    }
}

/// One client message.
pub enum Message<'a> {
    /// NetBIOS session request (139): the server's and the client's names.
    SessionRequest {
        called: Option<NetbiosName>,
        calling: Option<NetbiosName>,
    },
    Keepalive,
    /// SMB1 NEGOTIATE: the dialect list (`0x02 name NUL` repeated).
    Smb1Negotiate { dialects: &'a [u8] },
    /// Any other SMB1 command (we speak no SMB1).
    Smb1Other,
    Negotiate {
        header: Header,
        /// Little-endian u16 dialect codes.
        dialects: &'a [u8],
        client_guid: &'a [u8],
    },
    SessionSetup {
        header: Header,
        /// The security blob is (or wraps) SPNEGO rather than a bare NTLM message.
        spnego: bool,
        ntlm: Option<ntlm::Message<'a>>,
    },
    Other { header: Header },
    /// Not SMB (or cut short).
    Unknown,
}

pub struct SmbTurn<'a> {
    message: Message<'a>,
    /// The challenge we sent (for the hashcat line of an AUTHENTICATE).
    challenge: Option<[u8; 8]>,
}

fn smb1_dialect_names(list: &[u8]) -> impl Iterator<Item = &[u8]> {
    list.split(|&b| b == 0)
        .filter_map(|d| d.strip_prefix(&[2]))
        .filter(|d| !d.is_empty())
}

fn dialect_codes(list: &[u8]) -> impl Iterator<Item = u16> + '_ {
    list.chunks_exact(2).map(|p| u16::from_le_bytes([p[0], p[1]]))
}

fn parse_smb2(msg: &[u8]) -> Message<'_> {
    let Some(header) = Header::parse(msg) else {
        return Message::Unknown;
    };
    let body = &msg[HEADER_LEN..];
    let u16_at = |b: &[u8], at: usize| b.get(at..at + 2).map(|s| u16::from_le_bytes([s[0], s[1]]));
    match header.command {
        NEGOTIATE => {
            let count = usize::from(u16_at(body, 2).unwrap_or(0));
            let dialects = body.get(36..).unwrap_or(&[]);
            Message::Negotiate {
                header,
                dialects: &dialects[..dialects.len().min(count * 2)],
                client_guid: body.get(12..28).unwrap_or(&[]),
            }
        }
        SESSION_SETUP => {
            let offset = usize::from(u16_at(body, 12).unwrap_or(0));
            let len = usize::from(u16_at(body, 14).unwrap_or(0));
            let blob = msg.get(offset..offset + len).unwrap_or(&[]);
            let at = ntlm::find(blob);
            Message::SessionSetup {
                header,
                spnego: at != Some(0),
                ntlm: at.and_then(|at| ntlm::parse(&blob[at..]).ok()),
            }
        }
        _ => Message::Other { header },
    }
}

impl Smb {
    fn negotiated(&self) -> bool {
        !matches!(self.state, State::Start)
    }
}

impl Responder for Smb {
    const NAME: &'static str = "smb";
    const DEFAULT_PORTS: &'static [u16] = &[445, 139];
    type Turn<'a> = SmbTurn<'a>;

    fn new(_ctx: &Context<'_>) -> Self {
        Smb {
            state: State::Start,
        }
    }

    fn detect(first: &[u8]) -> Detection {
        match first {
            [0x00, _, _, _, a, b, c, d, ..] => {
                let magic = [*a, *b, *c, *d];
                if &magic == SMB2_MAGIC || &magic == SMB1_MAGIC {
                    Detection::Match
                } else {
                    Detection::NoMatch
                }
            }
            // A NetBIOS session request: two encoded names of 32 bytes each.
            [0x81, 0x00, 0x00, 0x44, 32, ..] => Detection::Match,
            [0x00, ..] | [0x81] | [0x81, 0x00] | [0x81, 0x00, 0x00] | [0x81, 0x00, 0x00, 0x44] => {
                Detection::NeedMore
            }
            _ => Detection::NoMatch,
        }
    }

    fn frame(&mut self, pending: &[u8], _new_from: usize) -> Framing {
        // The 4-byte header alone says where the message ends: nothing to remember.
        match pending {
            [0x00 | 0x81 | 0x85, a, b, c, ..] => {
                let len = (usize::from(*a) << 16) | (usize::from(*b) << 8) | usize::from(*c);
                if pending.len() >= 4 + len {
                    Framing::Complete(4 + len)
                } else {
                    Framing::NeedMore
                }
            }
            [0x00 | 0x81 | 0x85, ..] => Framing::NeedMore,
            _ => Framing::AtPause,
        }
    }

    fn parse<'a>(&self, turn: &'a [u8]) -> SmbTurn<'a> {
        let challenge = match self.state {
            State::Challenged { challenge, .. } => Some(challenge),
            _ => None,
        };
        let body = turn.get(4..).unwrap_or(&[]);
        let message = match turn.first() {
            Some(0x85) => Message::Keepalive,
            Some(0x81) => Message::SessionRequest {
                called: NetbiosName::decode(body),
                calling: body.get(34..).and_then(NetbiosName::decode),
            },
            Some(0x00) if body.starts_with(SMB2_MAGIC) => parse_smb2(body),
            Some(0x00) if body.starts_with(SMB1_MAGIC) => match body.get(4) {
                // Header (32), word count (1: zero words), byte count (2), the dialects.
                Some(0x72) => Message::Smb1Negotiate {
                    dialects: body.get(35..).unwrap_or(&[]),
                },
                _ => Message::Smb1Other,
            },
            _ => Message::Unknown,
        };
        SmbTurn { message, challenge }
    }

    fn reply(&mut self, turn: &SmbTurn<'_>, ctx: &Context<'_>, out: &mut Vec<u8>) -> After {
        match &turn.message {
            Message::SessionRequest { .. } => {
                out.extend_from_slice(&[0x82, 0, 0, 0]);
                After::KeepOpen
            }
            Message::Keepalive => After::KeepOpen,
            Message::Smb1Negotiate { dialects } => {
                let offers = |name: &[u8]| smb1_dialect_names(dialects).any(|d| d == name);
                if offers(b"SMB 2.???") {
                    negotiate_response(out, &Header::default(), WILDCARD, ctx);
                    After::KeepOpen
                } else if offers(b"SMB 2.002") {
                    negotiate_response(out, &Header::default(), 0x0202, ctx);
                    self.state = State::Negotiated;
                    After::KeepOpen
                } else {
                    // SMB1 is off (the Windows default since 2017): hang up.
                    After::Close
                }
            }
            Message::Negotiate {
                header, dialects, ..
            } => {
                let chosen = dialect_codes(dialects)
                    .filter(|d| DIALECTS.contains(d))
                    .max();
                match chosen {
                    Some(dialect) => {
                        negotiate_response(out, header, dialect, ctx);
                        self.state = State::Negotiated;
                        After::KeepOpen
                    }
                    None => {
                        error_response(out, header, STATUS_NOT_SUPPORTED, 0);
                        After::Close
                    }
                }
            }
            Message::SessionSetup { header, spnego, ntlm } => {
                if !self.negotiated() {
                    return After::Close;
                }
                match (ntlm, &self.state) {
                    (Some(ntlm::Message::Negotiate(n)), _) => {
                        let challenge = ctx.random_bytes::<8>(0x534d_4243);
                        // A session id is never zero.
                        let session_id =
                            u64::from_le_bytes(ctx.random_bytes::<8>(0x534d_4249)) | 1;
                        challenge_response(out, header, session_id, *spnego, n.flags, &challenge, ctx);
                        self.state = State::Challenged {
                            challenge,
                            session_id,
                        };
                    }
                    (_, State::Challenged { session_id, .. }) => {
                        error_response(out, header, STATUS_LOGON_FAILURE, *session_id);
                        self.state = State::Negotiated;
                    }
                    _ => error_response(out, header, STATUS_LOGON_FAILURE, 0),
                }
                After::KeepOpen
            }
            Message::Other { header } => {
                if !self.negotiated() {
                    return After::Close;
                }
                match header.command {
                    ECHO => {
                        let at = begin_response(out, header, STATUS_SUCCESS, header.session_id);
                        out.extend_from_slice(&[4, 0, 0, 0]);
                        end_response(out, at);
                    }
                    LOGOFF => error_response(out, header, STATUS_USER_SESSION_DELETED, 0),
                    _ => error_response(
                        out,
                        header,
                        STATUS_USER_SESSION_DELETED,
                        header.session_id,
                    ),
                }
                After::KeepOpen
            }
            Message::Smb1Other | Message::Unknown => After::Close,
        }
    }
}

/// Starts a response: the NetBIOS header (length filled by [`end_response`]) and the SMB2
/// header answering `req`. Returns where the NetBIOS header starts.
fn begin_response(out: &mut Vec<u8>, req: &Header, status: u32, session_id: u64) -> usize {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(SMB2_MAGIC);
    out.extend_from_slice(&64u16.to_le_bytes());
    out.extend_from_slice(&req.credit_charge.to_le_bytes());
    out.extend_from_slice(&status.to_le_bytes());
    out.extend_from_slice(&req.command.to_le_bytes());
    out.extend_from_slice(&req.credit_request.clamp(1, 64).to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes()); // SMB2_FLAGS_SERVER_TO_REDIR
    out.extend_from_slice(&0u32.to_le_bytes()); // NextCommand
    out.extend_from_slice(&req.message_id.to_le_bytes());
    out.extend_from_slice(&req.process_id.to_le_bytes());
    out.extend_from_slice(&req.tree_id.to_le_bytes());
    out.extend_from_slice(&session_id.to_le_bytes());
    out.extend_from_slice(&[0; 16]); // signature
    at
}

fn end_response(out: &mut [u8], at: usize) {
    let len = (out.len() - at - 4) as u32;
    out[at + 1..at + 4].copy_from_slice(&len.to_be_bytes()[1..]);
}

/// The SMB2 ERROR response (no error data).
fn error_response(out: &mut Vec<u8>, req: &Header, status: u32, session_id: u64) {
    let at = begin_response(out, req, status, session_id);
    out.extend_from_slice(&[9, 0, 0, 0, 0, 0, 0, 0, 0]);
    end_response(out, at);
}

fn negotiate_response(out: &mut Vec<u8>, req: &Header, dialect: u16, ctx: &Context<'_>) {
    let mut req = *req;
    req.command = NEGOTIATE;
    let at = begin_response(out, &req, STATUS_SUCCESS, 0);
    let body = out.len();
    let contexts = u16::from(dialect == 0x0311);
    out.extend_from_slice(&65u16.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // signing enabled, not required
    out.extend_from_slice(&dialect.to_le_bytes());
    out.extend_from_slice(&contexts.to_le_bytes());
    out.extend_from_slice(&ctx.random_bytes::<16>(0x534d_4247)); // server GUID
    let capabilities: u32 = if dialect == 0x0202 { 0x1 } else { 0x7 }; // DFS, leasing, large MTU
    out.extend_from_slice(&capabilities.to_le_bytes());
    for max in [8_388_608u32; 3] {
        out.extend_from_slice(&max.to_le_bytes()); // transact, read, write
    }
    out.extend_from_slice(&ctx.filetime().to_le_bytes()); // SystemTime
    // ServerStartTime: zero, as Windows 10 / Server 2016 and later send (and Samba).
    out.extend_from_slice(&0u64.to_le_bytes());
    out.extend_from_slice(&128u16.to_le_bytes()); // security buffer: after both headers
    out.extend_from_slice(&(NEG_TOKEN_INIT.len() as u16).to_le_bytes());
    let context_offset_at = out.len();
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(NEG_TOKEN_INIT);
    if contexts == 1 {
        while (out.len() - body) % 8 != 0 {
            out.push(0);
        }
        let offset = (out.len() - at - 4) as u32;
        out[context_offset_at..context_offset_at + 4].copy_from_slice(&offset.to_le_bytes());
        // SMB2_PREAUTH_INTEGRITY_CAPABILITIES: SHA-512 and a 32-byte salt.
        out.extend_from_slice(&1u16.to_le_bytes());
        out.extend_from_slice(&38u16.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&1u16.to_le_bytes());
        out.extend_from_slice(&32u16.to_le_bytes());
        out.extend_from_slice(&1u16.to_le_bytes());
        out.extend_from_slice(&ctx.random_bytes::<32>(0x534d_4253));
    }
    end_response(out, at);
}

fn challenge_response(
    out: &mut Vec<u8>,
    req: &Header,
    session_id: u64,
    spnego: bool,
    client_flags: u32,
    challenge: &[u8; 8],
    ctx: &Context<'_>,
) {
    let mut netbios = [0u8; 15];
    let names = ServerNames {
        netbios: ntlm::netbios_name(&ctx.settings.hostname, &mut netbios),
        dns: ctx.settings.hostname.as_bytes(),
    };
    let at = begin_response(out, req, STATUS_MORE_PROCESSING_REQUIRED, session_id);
    out.extend_from_slice(&9u16.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes()); // session flags
    out.extend_from_slice(&72u16.to_le_bytes()); // the blob follows this 8-byte body
    let len_at = out.len();
    out.extend_from_slice(&0u16.to_le_bytes());
    let blob = out.len();
    if spnego {
        ntlm::write_spnego_challenge_head(out, ntlm::challenge_len(names));
    }
    ntlm::write_challenge(out, client_flags, challenge, names, ctx.filetime());
    let blob_len = (out.len() - blob) as u16;
    out[len_at..len_at + 2].copy_from_slice(&blob_len.to_le_bytes());
    end_response(out, at);
}

fn dialect_name(code: u16) -> Option<&'static str> {
    Some(match code {
        0x0202 => "2.0.2",
        0x0210 => "2.1",
        0x0300 => "3.0",
        0x0302 => "3.0.2",
        0x0311 => "3.1.1",
        0x02ff => "2.???",
        _ => return None,
    })
}

impl TurnFields for SmbTurn<'_> {
    fn summary(&self) -> bool {
        false
    }

    fn protocol(&self) -> Option<&'static str> {
        match self.message {
            Message::Unknown => None,
            _ => Some("smb"),
        }
    }

    fn write_ecs(&self, w: &mut JsonWriter<'_>) {
        if let Message::SessionSetup {
            ntlm: Some(ntlm::Message::Authenticate(a)),
            ..
        } = &self.message
        {
            a.write_ecs(w);
        }
    }

    fn write_spip(&self, w: &mut JsonWriter<'_>) {
        let command: &[u8] = match &self.message {
            Message::SessionRequest { .. } => b"netbios_session_request",
            Message::Keepalive => b"netbios_keepalive",
            Message::Smb1Negotiate { .. } => b"smb1_negotiate",
            Message::Smb1Other => b"smb1",
            Message::Negotiate { .. } => b"negotiate",
            Message::SessionSetup { .. } => b"session_setup",
            Message::Other { .. } => b"other",
            Message::Unknown => return,
        };
        w.begin_object("smb");
        w.str("command", command);
        match &self.message {
            Message::SessionRequest { called, calling } => {
                if let Some(n) = called {
                    w.str("netbios_called", n.name());
                }
                if let Some(n) = calling {
                    w.str("netbios_calling", n.name());
                }
            }
            Message::Smb1Negotiate { dialects } => {
                w.str_array("dialects", smb1_dialect_names(dialects));
            }
            Message::Negotiate {
                dialects,
                client_guid,
                ..
            } => {
                w.key_only("dialects");
                let out = w.buf();
                out.push(b'[');
                for (i, code) in dialect_codes(dialects).enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.push(b'"');
                    match dialect_name(code) {
                        Some(name) => out.extend_from_slice(name.as_bytes()),
                        None => {
                            out.extend_from_slice(b"0x");
                            write_hex(out, &code.to_be_bytes());
                        }
                    }
                    out.push(b'"');
                }
                out.push(b']');
                if client_guid.len() == 16 {
                    w.hex("client_guid", client_guid);
                }
            }
            Message::Other { header } => w.u64("command_code", u64::from(header.command)),
            _ => {}
        }
        w.end_object();
        if let Message::SessionSetup { ntlm: Some(m), .. } = &self.message {
            ntlm::write_spip(m, self.challenge.as_ref(), w);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocols::testing::{NOW_FILETIME, assert_splits_agree, converse, converse_on};

    fn hex(s: &str) -> Vec<u8> {
        crate::inspect::decode_hex(s).expect("test hex")
    }

    /// smbclient 4.17 (`smbclient -L //127.0.0.1 -U USER%pw`): NEGOTIATE, SESSION_SETUP with
    /// the NTLM NEGOTIATE, SESSION_SETUP with the AUTHENTICATE.
    fn smbclient() -> Vec<u8> {
        hex(include_str!("../../tests/data/ntlm/smbclient-session.hex").trim())
    }

    fn status(reply: &[u8]) -> u32 {
        u32::from_le_bytes(reply[12..16].try_into().unwrap())
    }

    #[test]
    fn smbclient_login_is_captured_and_refused() {
        let t = converse::<Smb>(false, &[&smbclient()]);
        assert_eq!(t.turns.len(), 3);
        let [neg, setup1, setup2] = &t.turns[..] else {
            panic!()
        };
        // NEGOTIATE: 3.1.1 with our SPNEGO blob and a preauth context.
        assert_eq!(&neg.reply[4..8], SMB2_MAGIC);
        assert_eq!(status(&neg.reply), STATUS_SUCCESS);
        assert_eq!(&neg.reply[4 + 64 + 4..4 + 64 + 6], &[0x11, 0x03]);
        assert!(neg.reply.windows(NEG_TOKEN_INIT.len()).any(|w| w == NEG_TOKEN_INIT));
        // SystemTime is the clock; ServerStartTime zero, as Windows 10 and later send.
        let times = &neg.reply[4 + 64 + 40..4 + 64 + 56];
        assert_eq!(times[..8], NOW_FILETIME.to_le_bytes());
        assert_eq!(times[8..], [0; 8]);
        assert_eq!(neg.spip["smb"]["command"], "negotiate");
        assert_eq!(
            neg.spip["smb"]["dialects"],
            serde_json::json!(["2.0.2", "2.1", "3.0", "3.0.2", "3.1.1"])
        );
        assert_eq!(neg.protocol, Some("smb"));
        // SESSION_SETUP 1: MORE_PROCESSING_REQUIRED with our CHALLENGE.
        assert_eq!(status(&setup1.reply), STATUS_MORE_PROCESSING_REQUIRED);
        let at = ntlm::find(&setup1.reply).unwrap();
        assert_eq!(
            ntlm::parse(&setup1.reply[at..]),
            Ok(ntlm::Message::Challenge)
        );
        assert_eq!(
            ntlm::challenge_timestamp(&setup1.reply[at..]),
            Some(NOW_FILETIME)
        );
        // The SPNEGO NegTokenResp around it: [1] of exactly the blob's length.
        let blob = &setup1.reply[4 + 64 + 8..];
        assert_eq!(&blob[..2], &[0xa1, 0x81]);
        assert_eq!(usize::from(blob[2]) + 3, blob.len());
        assert_eq!(setup1.spip["ntlm"]["message"], "negotiate");
        assert_eq!(setup1.spip["ntlm"]["version"], "6.1.0");
        // SESSION_SETUP 2: the credentials, refused.
        assert_eq!(status(&setup2.reply), STATUS_LOGON_FAILURE);
        assert_eq!(setup2.ecs["user"]["name"], "USER");
        assert_eq!(setup2.ecs["user"]["domain"], "WORKGROUP");
        let ntlm = &setup2.spip["ntlm"];
        assert_eq!(ntlm["response"], "v2");
        let challenge = &setup1.reply[at + 24..at + 32];
        let challenge_hex: String = challenge.iter().map(|b| format!("{b:02x}")).collect();
        let line = ntlm["hashcat"].as_str().unwrap();
        assert!(
            line.starts_with(&format!("USER::WORKGROUP:{challenge_hex}:")),
            "{line}"
        );
        assert!(!setup2.close);
        // Replies are framed and sized by their NetBIOS header.
        for turn in &t.turns {
            let len = u32::from_be_bytes([0, turn.reply[1], turn.reply[2], turn.reply[3]]);
            assert_eq!(len as usize + 4, turn.reply.len());
        }
    }

    #[test]
    fn splits_agree() {
        assert_splits_agree::<Smb>(false, &smbclient());
    }

    #[test]
    fn smb1_negotiate_offering_smb2_is_upgraded() {
        // nmap's SMB1 NEGOTIATE with "NT LM 0.12", "SMB 2.002" and "SMB 2.???".
        let mut body = b"\xffSMB\x72\0\0\0\0\x18\x53\xc0".to_vec();
        body.resize(32, 0);
        let dialects = b"\x02NT LM 0.12\0\x02SMB 2.002\0\x02SMB 2.???\0";
        body.push(0);
        body.extend_from_slice(&(dialects.len() as u16).to_le_bytes());
        body.extend_from_slice(dialects);
        let mut msg = vec![0, 0, 0, body.len() as u8];
        msg.extend_from_slice(&body);
        assert_eq!(Smb::detect(&msg), Detection::Match);
        let t = converse_on::<Smb>(445, false, &[&msg]);
        let reply = &t.turns[0].reply;
        assert_eq!(&reply[4..8], SMB2_MAGIC);
        assert_eq!(&reply[4 + 64 + 4..4 + 64 + 6], &WILDCARD.to_le_bytes());
        assert_eq!(reply[4 + 64 + 40..4 + 64 + 48], NOW_FILETIME.to_le_bytes());
        assert_eq!(
            t.turns[0].spip["smb"]["dialects"],
            serde_json::json!(["NT LM 0.12", "SMB 2.002", "SMB 2.???"])
        );
        // SMB1 only: hang up, like a server with SMB1 off.
        let only1 = [&msg[..4 + 35], b"\x02NT LM 0.12\0"].concat();
        let t = converse::<Smb>(false, &[&only1]);
        assert!(t.turns[0].close && t.turns[0].reply.is_empty());
    }

    #[test]
    fn netbios_session_request_on_139_is_accepted_with_names() {
        fn encode(name: &[u8], suffix: u8) -> Vec<u8> {
            let mut padded = name.to_vec();
            padded.resize(15, b' ');
            padded.push(suffix);
            let mut out = vec![32];
            for b in padded {
                out.extend_from_slice(&[b'A' + (b >> 4), b'A' + (b & 15)]);
            }
            out.push(0);
            out
        }
        let body = [encode(b"*SMBSERVER", 0x20), encode(b"KALI", 0)].concat();
        let mut msg = vec![0x81, 0, 0, body.len() as u8];
        msg.extend_from_slice(&body);
        assert_eq!(Smb::detect(&msg), Detection::Match);
        let stream = [msg, smbclient()].concat();
        let t = converse_on::<Smb>(139, false, &[&stream]);
        assert_eq!(t.turns[0].reply, [0x82, 0, 0, 0]);
        assert_eq!(t.turns[0].spip["smb"]["netbios_called"], "*SMBSERVER");
        assert_eq!(t.turns[0].spip["smb"]["netbios_calling"], "KALI");
        assert_eq!(t.turns[3].ecs["user"]["name"], "USER");
    }

    #[test]
    fn detection() {
        assert_eq!(Smb::detect(&smbclient()), Detection::Match);
        assert_eq!(Smb::detect(b"\0\0"), Detection::NeedMore);
        assert_eq!(Smb::detect(b"\0\0\0\x10GET "), Detection::NoMatch);
        assert_eq!(Smb::detect(b"GET / HTTP/1.1\r\n"), Detection::NoMatch);
        assert_eq!(Smb::detect(b"\x03\0\0\x2b"), Detection::NoMatch);
    }

    #[test]
    fn every_prefix_and_garbage_never_panic() {
        let input = smbclient();
        for n in 0..=input.len() {
            let _ = converse::<Smb>(false, &[&input[..n]]);
        }
        // Each message with its bytes flipped, in a valid frame.
        let mut flipped = input.clone();
        for b in flipped.iter_mut().skip(4) {
            *b ^= 0x5a;
        }
        let _ = converse::<Smb>(false, &[&flipped]);
        for seed in 0..64u8 {
            let mut msg = input[..230].to_vec();
            for (i, b) in msg.iter_mut().enumerate().skip(4) {
                *b = b.wrapping_mul(seed).wrapping_add(i as u8);
            }
            let _ = converse::<Smb>(false, &[&msg, &input[230..]]);
        }
    }

    #[test]
    fn hostile_input_gets_a_small_reply() {
        // A 64 KB SESSION_SETUP after a NEGOTIATE: the reply is the same few hundred bytes.
        let input = smbclient();
        let mut big = input[230..396].to_vec();
        big.resize(65_536, b'A');
        let len = (big.len() - 4) as u32;
        big[1..4].copy_from_slice(&len.to_be_bytes()[1..]);
        let t = converse::<Smb>(false, &[&input[..230], &big]);
        assert!(t.turns[1].reply.len() < 512, "{}", t.turns[1].reply.len());
        let t = converse::<Smb>(false, &[&vec![0x41; 65_536]]);
        assert!(t.sent().is_empty());
    }
}
